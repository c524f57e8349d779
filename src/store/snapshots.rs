//! Whole-session snapshots (`session_snapshots`): written in one transaction with the reads
//! that complete them (tasks, locks, unread counts, messages, changes), so a snapshot is
//! consistent as of its event.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use uuid::Uuid;

use super::DbConn;
use super::codec::{decode_bounded, encode_snapshot};
use super::schema::session_snapshots;
use crate::domain::context::Context;
use crate::domain::ledger::ChangeQuery;
use crate::domain::lock::Lock;
use crate::domain::message::MessageQuery;
use crate::domain::snapshot::{
    Includes, MAX_SNAPSHOT_ITEMS, STATE_VERSION, SessionState, Standing, Trigger,
};
use crate::domain::views::SessionView;
use crate::error::HubError;

/// Diff bytes one snapshot carries at most (the newest changes' diffs).
const MAX_DIFF_BYTES: usize = 8 * 1024 * 1024;
/// Largest snapshot JSON read back: the context's bound plus the diffs plus messages.
const MAX_STATE_BYTES: usize = 64 * 1024 * 1024;

/// What the session actor hands over from memory.
pub struct Planned {
    pub session: SessionView,
    pub project: String,
    pub cursors: Vec<(String, i64)>,
    pub context: Option<Context>,
    pub trigger: Trigger,
    pub includes: Includes,
    pub at: NaiveDateTime,
}

/// A stored snapshot's number, event and size.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    pub snapshot_id: i64,
    pub event_id: i64,
    pub trigger: Trigger,
    pub bytes: i64,
    pub compressed: bool,
}

/// Completes the state from the projections and stores it.
pub fn save(conn: &mut DbConn, session_id: Uuid, p: Planned) -> Result<Stored, HubError> {
    let state = state(conn, session_id, p)?;
    let value = serde_json::to_value(&state)
        .map_err(|e| HubError::Internal(format!("a snapshot does not serialize: {e}")))?;
    let (encoding, bytes) = encode_snapshot(&value)?;
    let sid = session_id.to_string();
    let next: i64 = session_snapshots::table
        .filter(session_snapshots::session_id.eq(&sid))
        .select(diesel::dsl::max(session_snapshots::id))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0)
        + 1;
    let size = bytes.len() as i64;
    diesel::insert_into(session_snapshots::table)
        .values((
            session_snapshots::session_id.eq(&sid),
            session_snapshots::id.eq(next),
            session_snapshots::event_id.eq(state.event_id),
            session_snapshots::created_at.eq(state.at),
            session_snapshots::trigger.eq(state.trigger.as_str()),
            session_snapshots::encoding.eq(encoding),
            session_snapshots::bytes.eq(size),
            session_snapshots::state.eq(bytes),
        ))
        .execute(conn)?;
    Ok(Stored {
        snapshot_id: next,
        event_id: state.event_id,
        trigger: state.trigger,
        bytes: size,
        compressed: encoding == "zstd",
    })
}

fn state(conn: &mut DbConn, session_id: Uuid, p: Planned) -> Result<SessionState, HubError> {
    let mut participants = std::collections::BTreeMap::new();
    for (ai_id, acked) in p.cursors {
        let unread = super::messages::read_messages(conn, session_id, &viewer(&ai_id, 1))?.unread;
        participants.insert(
            ai_id,
            Standing {
                acked_event_id: acked,
                unread_messages: unread,
            },
        );
    }
    let locks: Vec<Lock> = super::locks::load_project(conn, &p.project)?
        .locks
        .into_iter()
        .filter(|l| l.session_id == session_id)
        .collect();
    let messages = if p.includes.messages {
        let mut q = viewer("", MAX_SNAPSHOT_ITEMS);
        q.viewer = None;
        Some(super::messages::read_messages(conn, session_id, &q)?.messages)
    } else {
        None
    };
    let changes = if p.includes.changes {
        let q = ChangeQuery {
            file: None,
            ai_id: None,
            since: None,
            limit: MAX_SNAPSHOT_ITEMS,
            with_diff: true,
        };
        let mut changes = super::ledger::list_changes(conn, session_id, &q)?;
        // Newest diffs first until the budget is spent; older entries keep their summary.
        let mut budget = MAX_DIFF_BYTES;
        for c in changes.iter_mut().rev() {
            let len = c.diff.as_ref().map_or(0, String::len);
            if len > budget {
                c.diff = None;
            } else {
                budget -= len;
            }
        }
        Some(changes)
    } else {
        None
    };
    Ok(SessionState {
        version: STATE_VERSION,
        event_id: p.session.last_event_id,
        at: p.at,
        trigger: p.trigger,
        session: p.session,
        participants,
        tasks: super::tasks::load(conn, session_id)?,
        locks,
        context: p.context.map(|c| c.to_snapshot()),
        messages,
        changes,
    })
}

fn viewer(ai_id: &str, limit: i64) -> MessageQuery {
    MessageQuery {
        viewer: Some(ai_id.to_owned()),
        unread_only: false,
        since: None,
        priority: None,
        thread: None,
        limit,
    }
}

/// The event the newest snapshot of the session stands at (0: none).
pub fn latest_event(conn: &mut DbConn, session_id: Uuid) -> Result<i64, HubError> {
    Ok(session_snapshots::table
        .filter(session_snapshots::session_id.eq(session_id.to_string()))
        .select(diesel::dsl::max(session_snapshots::event_id))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0))
}

/// The newest snapshot's state as stored (JSON), if any.
pub fn latest(conn: &mut DbConn, session_id: Uuid) -> Result<Option<serde_json::Value>, HubError> {
    let row: Option<(String, Vec<u8>)> = session_snapshots::table
        .filter(session_snapshots::session_id.eq(session_id.to_string()))
        .order(session_snapshots::id.desc())
        .select((session_snapshots::encoding, session_snapshots::state))
        .first(conn)
        .optional()?;
    row.map(|(encoding, bytes)| decode_bounded(&encoding, &bytes, MAX_STATE_BYTES))
        .transpose()
}
