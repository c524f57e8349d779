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
}

/// Reads the facts for `me`, whose acknowledged cursor is `acked`: news is what came after
/// `since` if given (0 for a newcomer's onboarding), else after the newer of its own last
/// event and that cursor.
pub fn gather(
    conn: &mut DbConn,
    session_id: Uuid,
    me: &str,
    acked: i64,
    since: Option<i64>,
    messages_wanted: i64,
    conflicts_after: NaiveDateTime,
) -> Result<Gathered, HubError> {
    let sid = session_id.to_string();
    let my_last = events::table
        .filter(events::session_id.eq(&sid))
        .filter(events::actor.eq(me))
        .order(events::id.desc())
        .select(EventRow::as_select())
        .first(conn)
        .optional()?
        .map(EventRow::into_event)
        .transpose()?;
    let horizon = since.unwrap_or_else(|| my_last.as_ref().map_or(0, |e| e.id).max(acked));
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
    let (count, bytes): (i64, i64) = news!()
        .select(sql::<(BigInt, BigInt)>(
            "COUNT(*), COALESCE(SUM(LENGTH(payload)), 0)",
        ))
        .get_result(conn)?;
    let by_kind: Vec<(Option<String>, String, i64)> = news!()
        .filter(events::actor.is_not_null())
        .group_by((events::actor, events::kind))
        .select((events::actor, events::kind, count_star()))
        .load(conn)?;
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
        let last = news!()
            .filter(events::actor.eq(who))
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
    let discoveries = newest_of(
        news!()
            .filter(events::kind.eq("discovery_reported"))
            .order(events::id.desc())
            .limit(NEWEST)
            .select(EventRow::as_select())
            .load(conn)?,
    )?;
    let conflicts = newest_of(
        events::table
            .filter(events::session_id.eq(&sid))
            .filter(events::kind.eq("change_conflict"))
            .filter(events::recipient.eq(me))
            .filter(events::created_at.ge(conflicts_after))
            .order(events::id.desc())
            .limit(NEWEST)
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
