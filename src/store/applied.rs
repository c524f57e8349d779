//! Keys of applied writes (`applied_requests`), so that a write sent again after its owner
//! died answering it is not applied twice (docs/multi-hub.md, "A write in flight on a killed
//! owner"). A keyed write records its key in its own transaction: the row exists exactly when
//! the write committed.

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::DbConn;
use super::schema::applied_requests;
use crate::domain::event::Event;
use crate::error::HubError;

/// The events a keyed write committed (none for a write that only changed rows).
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The session it wrote (a create: the session it made).
    pub session: Uuid,
    pub first_event: Option<i64>,
    pub last_event: Option<i64>,
    /// What the write kept to answer a resend with (a read's page: `messages::Replay`).
    pub detail: Option<String>,
}

impl Applied {
    /// What a request sent again is answered: it was applied, and where to read its effects.
    pub fn error(self) -> HubError {
        self.answer(Vec::new())
    }

    /// `error`, carrying `events` (those it committed, as the caller may see them): what the
    /// lost answer said is in them (a lock's id and fencing token, a task's or message's id).
    pub fn answer(self, events: Vec<Event>) -> HubError {
        let range = match (self.first_event, self.last_event) {
            (Some(a), Some(b)) if a == b => format!(" (event {a})"),
            (Some(a), Some(b)) => format!(" (events {a}–{b})"),
            _ => String::new(),
        };
        HubError::AlreadyApplied {
            message: format!(
                "this request was already applied{range}; its answer was lost with the hub that applied it"
            ),
            events: within_budget(&events),
        }
    }
}

/// Most events an `already_applied` answer carries (a batch may have written many).
pub const ANSWERED_EVENTS: i64 = 20;

/// Most bytes of event payloads one `already_applied` answer carries: a context value or a
/// change's text may be hundreds of KiB, and an MCP answer carries its error twice.
pub const ANSWERED_BYTES: usize = 16 * 1024;

/// `events` as JSON; past `ANSWERED_BYTES` of them, only their ids and kinds.
fn within_budget(events: &[Event]) -> Vec<serde_json::Value> {
    let mut spent = 0;
    events
        .iter()
        .filter_map(|e| {
            let full = serde_json::to_value(e).ok()?;
            spent += full.to_string().len();
            Some(if spent <= ANSWERED_BYTES {
                full
            } else {
                serde_json::json!({"id": e.id, "kind": e.kind, "payloadOmitted": true})
            })
        })
        .collect()
}

/// The write `key` committed, if it did, answered as `already_applied` with its events that
/// `viewer` may see (`None`: the operator, who sees all; the caller is known to belong to
/// `session`, and the events are only read if the write was in it). The events addressed to
/// others are left out; a checkpoint's hold does not apply (they are the caller's own write's).
pub fn find_answered(
    conn: &mut DbConn,
    key: Uuid,
    session: Uuid,
    viewer: Option<&str>,
) -> Result<Option<HubError>, HubError> {
    let Some(applied) = find(conn, key)? else {
        return Ok(None);
    };
    let events = match (applied.first_event, applied.last_event) {
        (Some(first), Some(last)) if applied.session == session => {
            let filter = super::queries::EventFilter {
                viewer,
                kinds: None,
                critical_only: false,
            };
            let limit = (last - first + 1).clamp(0, ANSWERED_EVENTS);
            super::queries::events_after(conn, session, filter, first - 1, limit)?
                .into_iter()
                .filter(|e| e.id <= last)
                .collect()
        }
        _ => Vec::new(),
    };
    Ok(Some(applied.answer(events)))
}

/// Records that the write of `key` committed `events`, in the write's own transaction. A key
/// already there (the same request, sent again while its first send was being committed)
/// fails the write, which is then rolled back alone.
pub fn record(
    conn: &mut DbConn,
    key: Uuid,
    session: Uuid,
    events: &[Event],
) -> Result<(), HubError> {
    record_with(conn, key, session, events, None)
}

/// `record`, keeping `detail` to answer a resend with.
pub fn record_with(
    conn: &mut DbConn,
    key: Uuid,
    session: Uuid,
    events: &[Event],
    detail: Option<&str>,
) -> Result<(), HubError> {
    if let Some(applied) = find(conn, key)? {
        return Err(applied.error());
    }
    diesel::insert_into(applied_requests::table)
        .values((
            applied_requests::key.eq(key.to_string()),
            applied_requests::session_id.eq(session.to_string()),
            applied_requests::first_event.eq(events.first().map(|e| e.id)),
            applied_requests::last_event.eq(events.last().map(|e| e.id)),
            applied_requests::detail.eq(detail),
            applied_requests::created_at.eq(Utc::now().naive_utc()),
        ))
        .execute(conn)
        .map_err(|e| match e {
            // Recorded meanwhile by a send of the same request in another transaction.
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ) => Applied {
                session,
                first_event: None,
                last_event: None,
                detail: None,
            }
            .error(),
            e => e.into(),
        })?;
    Ok(())
}

/// Replaces what the write of `key` kept to answer a resend with.
pub fn set_detail(conn: &mut DbConn, key: Uuid, detail: &str) -> Result<(), HubError> {
    diesel::update(applied_requests::table.find(key.to_string()))
        .set(applied_requests::detail.eq(detail))
        .execute(conn)?;
    Ok(())
}

/// The write `key` committed, if it did.
pub fn find(conn: &mut DbConn, key: Uuid) -> Result<Option<Applied>, HubError> {
    type Row = (String, Option<i64>, Option<i64>, Option<String>);
    let found: Option<Row> = applied_requests::table
        .find(key.to_string())
        .select((
            applied_requests::session_id,
            applied_requests::first_event,
            applied_requests::last_event,
            applied_requests::detail,
        ))
        .first(conn)
        .optional()?;
    let Some((session, first_event, last_event, detail)) = found else {
        return Ok(None);
    };
    Ok(Some(Applied {
        session: Uuid::parse_str(&session)
            .map_err(|e| HubError::Internal(format!("applied_requests.session_id: {e}")))?,
        first_event,
        last_event,
        detail,
    }))
}

/// How long a key is kept: a hub runs a request it passed on again within its patience (two
/// leases and 10 s), so minutes; kept longer for a client's own retries.
pub const KEPT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Most keys one prune deletes: each is a write of its own, so that the writer it shares with
/// sessions is never held long (a busy hub records thousands of keys a second).
pub const PRUNE_CHUNK: i64 = 5_000;

/// Forgets at most `PRUNE_CHUNK` keys recorded before `before`; how many it did.
pub fn prune(conn: &mut DbConn, before: NaiveDateTime) -> Result<usize, HubError> {
    let old: Vec<String> = applied_requests::table
        .filter(applied_requests::created_at.lt(before))
        .select(applied_requests::key)
        .limit(PRUNE_CHUNK)
        .load(conn)?;
    if old.is_empty() {
        return Ok(0);
    }
    Ok(
        diesel::delete(applied_requests::table.filter(applied_requests::key.eq_any(&old)))
            .execute(conn)?,
    )
}
