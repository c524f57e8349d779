//! The facts a briefing is built from, read with bounded queries: counts and sums in SQL, and
//! only the newest rows of each kind, so a session with 100,000 events briefs as fast as one
//! with 100 (BENCHMARKS.md, "Briefing").

use chrono::NaiveDateTime;
use diesel::dsl::{count_star, sql};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use uuid::Uuid;

use super::DbConn;
use super::models::EventRow;
use super::schema::{code_changes, events, message_receipts, messages};
use crate::domain::activity::{Activity, Counts, Tally};
use crate::domain::briefing::{Collaborator, RawHistory};
use crate::domain::event::Event;
use crate::domain::message::{MessageQuery, MessageView};
use crate::error::HubError;

/// Newest discoveries and conflicts read at most.
const NEWEST: i64 = 25;
/// Files of the participant's own considered at most (for "a failing test in a file you
/// changed").
const MY_FILES: i64 = 100;
/// Ack-required messages listed at most.
const UNACKED: i64 = 20;

/// What the store knows for one participant's briefing.
pub struct Gathered {
    pub horizon: i64,
    pub my_last: Option<Event>,
    pub raw: RawHistory,
    pub collaborators: Vec<Collaborator>,
    pub my_files: Vec<String>,
    pub messages: Vec<MessageView>,
    pub unacked: Vec<MessageView>,
    pub discoveries: Vec<Event>,
    pub conflicts: Vec<Event>,
    pub handoffs: Vec<Event>,
}

/// What the session actor already knows from its [`Activity`] index: the horizon, the
/// participant's newest event, the counts of whole buckets after the horizon (from
/// `counted_from` on), and each actor's newest event.
pub struct Known {
    pub horizon: i64,
    pub my_last: Option<i64>,
    pub counted: Counts,
    pub counted_from: i64,
    pub last_of: Vec<(String, i64)>,
    /// The newest discoveries, conflicts and handoffs `me` sees (ids, newest first).
    pub discoveries: Vec<i64>,
    pub conflicts: Vec<i64>,
    pub handoffs: Vec<i64>,
}

/// Reads the rest of the facts for `me`: the few events between the horizon and the counted
/// buckets, the rows behind the counts, and the newest of each kind of row.
pub fn gather(
    conn: &mut DbConn,
    session_id: Uuid,
    me: &str,
    known: Known,
    messages_wanted: i64,
    conflicts_after: NaiveDateTime,
) -> Result<Gathered, HubError> {
    let sid = session_id.to_string();
    let Known {
        horizon,
        my_last,
        counted,
        counted_from,
        last_of,
        discoveries,
        conflicts,
        handoffs,
    } = known;
    let by_id = |conn: &mut DbConn, id: i64| -> Result<Option<Event>, HubError> {
        events::table
            .find((&sid, id))
            .select(EventRow::as_select())
            .first(conn)
            .optional()?
            .map(EventRow::into_event)
            .transpose()
    };
    let my_last = match my_last {
        Some(id) => by_id(conn, id)?,
        None => None,
    };
    // Events after the horizon that `me` can see.
    macro_rules! news {
        () => {
            events::table
                .filter(events::session_id.eq(&sid))
                .filter(events::id.gt(horizon))
                .filter(
                    events::recipient
                        .is_null()
                        .or(events::recipient.eq(me))
                        .or(events::actor.eq(me)),
                )
        };
    }
    // The whole buckets are counted already; the log adds the events before them.
    let rest: Vec<(Option<String>, String, i64, i64)> = news!()
        .filter(events::id.lt(counted_from))
        .group_by((events::actor, events::kind))
        .select((
            events::actor,
            events::kind,
            count_star(),
            sql::<BigInt>("COALESCE(SUM(LENGTH(payload)), 0)"),
        ))
        .load(conn)?;
    let mut counts: Counts = counted;
    for (actor, kind, count, bytes) in rest {
        counts
            .entry((actor, kind))
            .or_default()
            .add(Tally { count, bytes });
    }
    let total = counts.values().fold(Tally::default(), |mut t, c| {
        t.add(*c);
        t
    });
    let by_kind: Vec<(Option<String>, String, i64)> = counts
        .into_iter()
        .filter(|((actor, _), _)| actor.is_some())
        .map(|((actor, kind), t)| (actor, kind, t.count))
        .collect();
    let (count, bytes) = (total.count, total.bytes);
    let (changes, diff_bytes): (i64, i64) = code_changes::table
        .filter(code_changes::session_id.eq(&sid))
        .filter(code_changes::id.gt(horizon))
        .select(sql::<(BigInt, BigInt)>(
            "COUNT(*), COALESCE(SUM(LENGTH(diff)), 0)",
        ))
        .get_result(conn)?;
    let raw = RawHistory {
        events: count,
        bytes,
        messages: by_kind
            .iter()
            .filter(|(_, kind, _)| kind == "message_sent")
            .map(|(_, _, n)| n)
            .sum(),
        changes,
        diff_bytes,
    };
    let files: Vec<(String, String, i64)> = code_changes::table
        .filter(code_changes::session_id.eq(&sid))
        .filter(code_changes::id.gt(horizon))
        .filter(code_changes::ai_id.ne(me))
        .group_by((code_changes::ai_id, code_changes::file_path))
        .select((code_changes::ai_id, code_changes::file_path, count_star()))
        .load(conn)?;
    let mut collaborators = Vec::new();
    let mut others: Vec<&str> = by_kind
        .iter()
        .filter_map(|(actor, _, _)| actor.as_deref())
        .filter(|a| *a != me)
        .collect();
    others.sort_unstable();
    others.dedup();
    for who in others {
        // Its newest event, or (if that one is not for `me`) the newest before it that is.
        let newest = last_of
            .iter()
            .find(|(a, _)| a == who)
            .map_or(i64::MAX, |(_, id)| *id);
        let last = news!()
            .filter(events::actor.eq(who))
            .filter(events::id.le(newest))
            .order(events::id.desc())
            .select(EventRow::as_select())
            .first(conn)?
            .into_event()?;
        let mut counts: Vec<(String, i64)> = by_kind
            .iter()
            .filter(|(a, _, _)| a.as_deref() == Some(who))
            .map(|(_, k, n)| (k.clone(), *n))
            .collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut touched: Vec<(String, i64)> = files
            .iter()
            .filter(|(a, _, _)| a == who)
            .map(|(_, f, n)| (f.clone(), *n))
            .collect();
        touched.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        collaborators.push(Collaborator {
            ai_id: who.to_owned(),
            last,
            counts,
            files: touched,
        });
    }
    let my_files: Vec<(String, Option<i64>)> = code_changes::table
        .filter(code_changes::session_id.eq(&sid))
        .filter(code_changes::ai_id.eq(me))
        .group_by(code_changes::file_path)
        .select((code_changes::file_path, diesel::dsl::max(code_changes::id)))
        .order(diesel::dsl::max(code_changes::id).desc())
        .limit(MY_FILES)
        .load(conn)?;
    let newest_of = |rows: Vec<EventRow>| -> Result<Vec<Event>, HubError> {
        rows.into_iter().map(EventRow::into_event).collect()
    };
    // By id: the activity index knows the newest of each; no scan of the log.
    let mut discoveries = newest_of(
        events::table
            .filter(events::session_id.eq(&sid))
            .filter(events::id.eq_any(discoveries))
            .filter(events::id.gt(horizon))
            .order(events::id.desc())
            .select(EventRow::as_select())
            .load(conn)?,
    )?;
    discoveries.truncate(NEWEST as usize);
    let handoffs = newest_of(
        events::table
            .filter(events::session_id.eq(&sid))
            .filter(events::id.eq_any(handoffs))
            .filter(events::id.gt(horizon))
            .order(events::id.desc())
            .select(EventRow::as_select())
            .load(conn)?,
    )?;
    let conflicts = newest_of(
        events::table
            .filter(events::session_id.eq(&sid))
            .filter(events::id.eq_any(conflicts))
            .filter(events::recipient.eq(me))
            .filter(events::created_at.ge(conflicts_after))
            .order(events::id.desc())
            .select(EventRow::as_select())
            .load(conn)?,
    )?;
    let mut page = super::messages::read_messages(
        conn,
        session_id,
        &MessageQuery {
            viewer: Some(me.to_owned()),
            unread_only: false,
            since: None,
            priority: None,
            thread: None,
            limit: messages_wanted,
        },
    )?;
    page.messages.reverse();
    Ok(Gathered {
        horizon,
        my_last,
        raw,
        collaborators,
        my_files: my_files.into_iter().map(|(f, _)| f).collect(),
        messages: page.messages,
        unacked: unacked(conn, session_id, me)?,
        discoveries,
        conflicts,
        handoffs,
    })
}

/// Ack-required messages to `me` (directly or to everyone) it has not acknowledged.
fn unacked(conn: &mut DbConn, session_id: Uuid, me: &str) -> Result<Vec<MessageView>, HubError> {
    let sid = session_id.to_string();
    let ids: Vec<i64> = messages::table
        .filter(messages::session_id.eq(&sid))
        .filter(messages::requires_ack.eq(true))
        .filter(messages::to_ai.is_null().or(messages::to_ai.eq(me)))
        .filter(messages::from_ai.ne(me))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            message_receipts::table
                .filter(message_receipts::session_id.eq(messages::session_id))
                .filter(message_receipts::message_id.eq(messages::id))
                .filter(message_receipts::ai_id.eq(me))
                .filter(message_receipts::acked_at.is_not_null()),
        )))
        .order(messages::id.asc())
        .limit(UNACKED)
        .select(messages::id)
        .load(conn)?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        // One thread-sized read per message keeps one decoding path (receipts included).
        let page = super::messages::read_messages(
            conn,
            session_id,
            &MessageQuery {
                viewer: Some(me.to_owned()),
                unread_only: false,
                since: Some(id - 1),
                priority: None,
                thread: None,
                limit: 1,
            },
        )?;
        out.extend(page.messages.into_iter().filter(|m| m.id == id));
    }
    Ok(out)
}

/// id, actor, kind, recipient, payload length.
type ActivityRow = (i64, Option<String>, String, Option<String>, i64);

/// The activity index of a session, built from its log (once, when the session loads).
pub fn activity(conn: &mut DbConn, session_id: Uuid) -> Result<Activity, HubError> {
    let rows: Vec<ActivityRow> = events::table
        .filter(events::session_id.eq(session_id.to_string()))
        .order(events::id.asc())
        .select((
            events::id,
            events::actor,
            events::kind,
            events::recipient,
            sql::<BigInt>("CAST(LENGTH(payload) AS BIGINT)"),
        ))
        .load(conn)?;
    let mut a = Activity::default();
    for (id, actor, kind, to, bytes) in rows {
        a.record(id, actor.as_deref(), &kind, to.as_deref(), bytes);
    }
    Ok(a)
}

/// The headers of the log's newest events, for the digests on tool results (once, when the
/// session loads).
pub fn recent(
    conn: &mut DbConn,
    session_id: Uuid,
) -> Result<crate::domain::digest::Recent, HubError> {
    let rows: Vec<(i64, String, Option<String>, Option<String>)> = events::table
        .filter(events::session_id.eq(session_id.to_string()))
        .order(events::id.desc())
        .limit(crate::domain::digest::RECENT_EVENTS as i64)
        .select((
            events::id,
            events::priority,
            events::actor,
            events::recipient,
        ))
        .load(conn)?;
    let mut recent = crate::domain::digest::Recent::default();
    // Critical events older than those: counted apart, so what waits is counted whole.
    if let Some(oldest) = rows.last().map(|r| r.0) {
        let older: Vec<(i64, Option<String>, Option<String>)> = events::table
            .filter(events::session_id.eq(session_id.to_string()))
            .filter(events::priority.eq(crate::domain::event::Priority::Critical.as_str()))
            .filter(events::id.lt(oldest))
            .order(events::id.desc())
            .limit(crate::domain::digest::RECENT_EVENTS as i64)
            .select((events::id, events::actor, events::recipient))
            .load(conn)?;
        for (id, actor, to) in older.into_iter().rev() {
            recent.push_critical(id, actor.as_deref(), to.as_deref());
        }
    }
    for (id, priority, actor, to) in rows.into_iter().rev() {
        let priority = crate::domain::event::Priority::parse(&priority)
            .unwrap_or(crate::domain::event::Priority::Routine);
        recent.push(id, priority, actor.as_deref(), to.as_deref());
    }
    Ok(recent)
}
