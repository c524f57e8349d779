//! Statements for messages and their receipts (read / acknowledged), for both backends.
//!
//! A message row is written in the same transaction as the `message_sent` event that carries it
//! (its id is that event's id). Receipts are one row per (message, reader), created on first
//! read or acknowledgement.
//!
//! What each participant has not read yet is kept as rows of `message_unread` (one per
//! participant and message it received and has not read), written with the message and deleted
//! by the read stamp, so an unread count or an unread page costs that participant's backlog,
//! not the session's history. It is derived from messages, read receipts and participants
//! ([`rebuild_unread`] says how), which is how the migration fills it and a restore rebuilds it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::DbConn;
use super::schema::{message_receipts, message_unread, messages, participants};
use crate::domain::event::Priority;
use crate::domain::message::{AckSelection, AckTarget, Parent, PendingAck, PlannedMessage};
use crate::domain::message::{MessagePage, MessageQuery, MessageView, Shown};
use crate::error::HubError;

/// Most messages an `upTo` acknowledgement covers at once.
const MAX_UP_TO: i64 = 10_000;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = messages)]
struct MessageRow {
    session_id: String,
    id: i64,
    from_ai: String,
    to_ai: Option<String>,
    priority: String,
    body: String,
    reply_to: Option<i64>,
    thread_id: i64,
    requires_ack: bool,
    ack_deadline: Option<NaiveDateTime>,
    overdue_alerted: bool,
    created_at: NaiveDateTime,
}

pub fn insert_message(
    conn: &mut DbConn,
    session_id: Uuid,
    id: i64,
    m: &PlannedMessage,
    at: NaiveDateTime,
) -> Result<(), HubError> {
    let row = MessageRow {
        session_id: session_id.to_string(),
        id,
        from_ai: m.from.clone(),
        to_ai: m.to.clone(),
        priority: m.priority.as_str().into(),
        body: m.body.to_string(),
        reply_to: m.reply_to,
        thread_id: m.thread.unwrap_or(id),
        requires_ack: m.requires_ack,
        ack_deadline: m.ack_deadline,
        overdue_alerted: false,
        created_at: at,
    };
    diesel::insert_into(messages::table)
        .values(&row)
        .execute(conn)?;
    // Unread by whom it reaches: its recipient, or (a broadcast) every participant the session
    // has had but the sender (one who left and comes back finds it unread).
    let sid = session_id.to_string();
    match &m.to {
        Some(to) => {
            diesel::insert_into(message_unread::table)
                .values((
                    message_unread::session_id.eq(&sid),
                    message_unread::ai_id.eq(to),
                    message_unread::message_id.eq(id),
                ))
                .execute(conn)?;
        }
        None => {
            let readers = participants::table
                .filter(participants::session_id.eq(&sid))
                .filter(participants::ai_id.ne(&m.from))
                .select((
                    participants::session_id,
                    participants::ai_id,
                    id.into_sql::<diesel::sql_types::BigInt>(),
                ));
            diesel::insert_into(message_unread::table)
                .values(readers)
                .into_columns((
                    message_unread::session_id,
                    message_unread::ai_id,
                    message_unread::message_id,
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// A message's event and the message itself (with its unread rows): what a send writes. On
/// PostgreSQL in ONE statement, since the writer's connection is bound by round trips (a send
/// was four: savepoint, event, message, unread rows); on SQLite, in process, as two calls.
pub fn append_sent(
    conn: &mut DbConn,
    session_id: Uuid,
    m: &PlannedMessage,
    at: NaiveDateTime,
) -> Result<crate::domain::event::Event, HubError> {
    use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamp};
    let (from, to, body) = (m.from.clone(), m.to.clone(), m.body.to_string());
    // `$1`…`$7`: the event (`queries::bind_event`); `$8`…: the message. Unread by whom the
    // message reaches: its recipient, or (a broadcast, `$9` null) every participant the session
    // has had but the sender (one who left and comes back finds it unread).
    super::queries::append_event_with(
        conn,
        session_id,
        &m.event,
        at,
        ", m AS (INSERT INTO messages (session_id, id, from_ai, to_ai, priority, body, \
                 reply_to, thread_id, requires_ack, ack_deadline, overdue_alerted, created_at) \
                 SELECT $2, e.id, $8, $9, $15, $10, $11, COALESCE($12, e.id), $13, $14, false, $1 \
                 FROM e RETURNING id), \
           u AS (INSERT INTO message_unread (session_id, ai_id, message_id) \
                 SELECT $2, $9, m.id FROM m WHERE $9 IS NOT NULL \
                 UNION ALL \
                 SELECT p.session_id, p.ai_id, m.id FROM participants p, m \
                 WHERE $9 IS NULL AND p.session_id = $2 AND p.ai_id <> $8)",
        |q| {
            q.bind::<Text, _>(from)
                .bind::<Nullable<Text>, _>(to)
                .bind::<Text, _>(body)
                .bind::<Nullable<BigInt>, _>(m.reply_to)
                .bind::<Nullable<BigInt>, _>(m.thread)
                .bind::<Bool, _>(m.requires_ack)
                .bind::<Nullable<Timestamp>, _>(m.ack_deadline)
                .bind::<Text, _>(m.priority.as_str())
        },
        |c, id| insert_message(c, session_id, id, m, at),
    )
}

/// A send queued on the session pipeline (`Store::submit_event_write`): what `append_sent`
/// writes, kept as data so that a PostgreSQL batch can write it in one statement with its
/// neighbours (`event_writes::write_many`).
pub struct SendWrite {
    pub session_id: Uuid,
    pub message: PlannedMessage,
    pub at: NaiveDateTime,
}

impl SendWrite {
    /// This send on its own.
    pub fn write(&self, conn: &mut DbConn) -> Result<crate::domain::event::Event, HubError> {
        append_sent(conn, self.session_id, &self.message, self.at)
    }
}

/// Fills `message_unread` from the messages, read receipts and participants: for the sessions
/// `sessions`, or only for participant `only` of one of them (a participant who joins finds the
/// broadcasts so far unread). The rows it writes must not exist yet (a restore clears them
/// first with [`clear_unread`]; a new participant has none).
pub fn rebuild_unread(
    conn: &mut DbConn,
    sessions: &[String],
    only: Option<&str>,
) -> QueryResult<usize> {
    let mut query = messages::table
        .inner_join(participants::table.on(participants::session_id.eq(messages::session_id)))
        .filter(messages::session_id.eq_any(sessions))
        .filter(
            messages::to_ai
                .is_null()
                .or(messages::to_ai.eq(participants::ai_id.nullable())),
        )
        .filter(messages::from_ai.ne(participants::ai_id))
        .filter(diesel::dsl::not(diesel::dsl::exists(
            message_receipts::table
                .filter(message_receipts::session_id.eq(messages::session_id))
                .filter(message_receipts::message_id.eq(messages::id))
                .filter(message_receipts::ai_id.eq(participants::ai_id))
                .filter(message_receipts::read_at.is_not_null()),
        )))
        .select((messages::session_id, participants::ai_id, messages::id))
        .into_boxed();
    if let Some(ai_id) = only {
        query = query.filter(participants::ai_id.eq(ai_id));
    }
    diesel::insert_into(message_unread::table)
        .values(query)
        .into_columns((
            message_unread::session_id,
            message_unread::ai_id,
            message_unread::message_id,
        ))
        .execute(conn)
}

/// Deletes the `message_unread` rows of `sessions` (before a restore writes them again).
pub fn clear_unread(conn: &mut DbConn, sessions: &[String]) -> QueryResult<usize> {
    diesel::delete(message_unread::table.filter(message_unread::session_id.eq_any(sessions)))
        .execute(conn)
}

/// The message `id`, as a reply needs it.
pub fn find_parent(
    conn: &mut DbConn,
    session_id: Uuid,
    id: i64,
) -> Result<Option<Parent>, HubError> {
    let row: Option<(String, Option<String>, i64)> = messages::table
        .find((session_id.to_string(), id))
        .select((messages::from_ai, messages::to_ai, messages::thread_id))
        .first(conn)
        .optional()?;
    Ok(row.map(|(from, to, thread)| Parent {
        id,
        from,
        to,
        thread,
    }))
}

/// Messages `viewer` can see (sent by it, to it, or broadcast), by `selection`, with whether
/// `viewer` acknowledged each already.
pub fn ack_targets(
    conn: &mut DbConn,
    session_id: Uuid,
    viewer: &str,
    selection: &AckSelection,
) -> Result<Vec<AckTarget>, HubError> {
    let sid = session_id.to_string();
    let mut query = messages::table
        .filter(messages::session_id.eq(&sid))
        .filter(
            messages::to_ai
                .is_null()
                .or(messages::to_ai.eq(viewer))
                .or(messages::from_ai.eq(viewer)),
        )
        .select((messages::id, messages::from_ai, messages::requires_ack))
        .order(messages::id.asc())
        .into_boxed();
    query = match selection {
        AckSelection::Ids(ids) => query.filter(messages::id.eq_any(ids.clone())),
        AckSelection::UpTo(n) => query
            .filter(messages::id.le(*n))
            .filter(messages::from_ai.ne(viewer))
            .limit(MAX_UP_TO),
    };
    let rows: Vec<(i64, String, bool)> = query.load(conn)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let acked: BTreeSet<i64> = message_receipts::table
        .filter(message_receipts::session_id.eq(&sid))
        .filter(message_receipts::ai_id.eq(viewer))
        .filter(message_receipts::message_id.eq_any(ids))
        .filter(message_receipts::acked_at.is_not_null())
        .select(message_receipts::message_id)
        .load::<i64>(conn)?
        .into_iter()
        .collect();
    Ok(rows
        .into_iter()
        .map(|(id, from, requires_ack)| AckTarget {
            acked: acked.contains(&id),
            id,
            from,
            requires_ack,
        })
        .collect())
}

/// The receipt row of message `id` for `ai_id`, created without stamps if there is none yet:
/// each stamp then sets only its own column where it is still empty, so an earlier stamp is
/// kept (the row is never seen bare: it is written in the same transaction as its stamp).
fn receipt_row<'a>(
    conn: &mut DbConn,
    sid: &'a str,
    id: i64,
    ai_id: &'a str,
) -> QueryResult<diesel::dsl::Find<message_receipts::table, (&'a str, i64, &'a str)>> {
    let mine = message_receipts::table.find((sid, id, ai_id));
    if !diesel::select(diesel::dsl::exists(mine)).get_result::<bool>(conn)? {
        diesel::insert_into(message_receipts::table)
            .values((
                message_receipts::session_id.eq(sid),
                message_receipts::message_id.eq(id),
                message_receipts::ai_id.eq(ai_id),
            ))
            .execute(conn)?;
    }
    Ok(mine)
}

/// Stamps `ids` as read (and acknowledged, with `ack`) by `ai_id`, keeping earlier stamps.
pub fn stamp_receipts(
    conn: &mut DbConn,
    session_id: Uuid,
    ai_id: &str,
    ids: &[i64],
    ack: bool,
    at: NaiveDateTime,
) -> Result<(), HubError> {
    let sid = session_id.to_string();
    // Read now (an acknowledgement reads too): no longer unread.
    diesel::delete(
        message_unread::table
            .filter(message_unread::session_id.eq(&sid))
            .filter(message_unread::ai_id.eq(ai_id))
            .filter(message_unread::message_id.eq_any(ids)),
    )
    .execute(conn)?;
    for &id in ids {
        let mine = receipt_row(conn, &sid, id, ai_id)?;
        diesel::update(mine.filter(message_receipts::read_at.is_null()))
            .set(message_receipts::read_at.eq(Some(at)))
            .execute(conn)?;
        if ack {
            diesel::update(mine.filter(message_receipts::acked_at.is_null()))
                .set(message_receipts::acked_at.eq(Some(at)))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Stamps `ids` as delivered to `ai_id` (handed to one of its event streams), keeping earlier
/// stamps and leaving read and acknowledged alone.
pub fn stamp_delivered(
    conn: &mut DbConn,
    session_id: Uuid,
    ai_id: &str,
    ids: &[i64],
    at: NaiveDateTime,
) -> Result<(), HubError> {
    let sid = session_id.to_string();
    for &id in ids {
        let mine = receipt_row(conn, &sid, id, ai_id)?;
        diesel::update(mine.filter(message_receipts::delivered_at.is_null()))
            .set(message_receipts::delivered_at.eq(Some(at)))
            .execute(conn)?;
    }
    Ok(())
}

/// How a message was shown to a participant's model (the `shown` receipt's `via`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ShownVia {
    /// Listed in full in the digest on one of its MCP tool results.
    Digest,
    /// Printed into its context by `collab-hub hook`, which confirmed it.
    Hook,
    /// Listed in a briefing it was given (`session resume`, onboarding).
    Briefing,
    /// Sent as a Claude Code channel notification, which the client puts before the model.
    Channel,
}

impl ShownVia {
    pub fn as_str(self) -> &'static str {
        match self {
            ShownVia::Digest => "digest",
            ShownVia::Hook => "hook",
            ShownVia::Briefing => "briefing",
            ShownVia::Channel => "channel",
        }
    }
}

/// Stamps `ids` as shown to `ai_id`'s model (`via` how), keeping an earlier stamp and leaving
/// delivered, read and acknowledged alone. Only messages `ai_id` received count: its own, ones
/// directed to someone else and ids that are no message are left out. Returns the ids stamped
/// now or before (the receipts that exist once this commits).
pub fn stamp_shown(
    conn: &mut DbConn,
    session_id: Uuid,
    ai_id: &str,
    ids: &[i64],
    via: ShownVia,
    at: NaiveDateTime,
) -> Result<Vec<i64>, HubError> {
    let sid = session_id.to_string();
    let theirs: Vec<i64> = messages::table
        .filter(messages::session_id.eq(&sid))
        .filter(messages::id.eq_any(ids))
        .filter(messages::from_ai.ne(ai_id))
        .filter(messages::to_ai.is_null().or(messages::to_ai.eq(ai_id)))
        .select(messages::id)
        .load(conn)?;
    for &id in &theirs {
        let mine = receipt_row(conn, &sid, id, ai_id)?;
        diesel::update(mine.filter(message_receipts::shown_at.is_null()))
            .set((
                message_receipts::shown_at.eq(Some(at)),
                message_receipts::shown_via.eq(Some(via.as_str())),
            ))
            .execute(conn)?;
    }
    Ok(theirs)
}

/// Ack-required messages whose deadline has not been dealt with, for a session being loaded.
/// Who is awaited is worked out again: the recipient, or (broadcasts) every participant active
/// now other than the sender, minus those who acknowledged.
pub fn pending_acks(conn: &mut DbConn, session_id: Uuid) -> Result<Vec<PendingAck>, HubError> {
    let sid = session_id.to_string();
    let rows: Vec<(i64, String, Option<String>, Option<NaiveDateTime>)> = messages::table
        .filter(messages::session_id.eq(&sid))
        .filter(messages::requires_ack.eq(true))
        .filter(messages::overdue_alerted.eq(false))
        .select((
            messages::id,
            messages::from_ai,
            messages::to_ai,
            messages::ack_deadline,
        ))
        .load(conn)?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let active: Vec<String> = participants::table
        .filter(participants::session_id.eq(&sid))
        .filter(participants::left_at.is_null())
        .select(participants::ai_id)
        .load(conn)?;
    let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
    let mut acked: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    let receipts: Vec<(i64, String)> = message_receipts::table
        .filter(message_receipts::session_id.eq(&sid))
        .filter(message_receipts::message_id.eq_any(ids))
        .filter(message_receipts::acked_at.is_not_null())
        .select((message_receipts::message_id, message_receipts::ai_id))
        .load(conn)?;
    for (id, who) in receipts {
        acked.entry(id).or_default().insert(who);
    }
    Ok(rows
        .into_iter()
        .filter_map(|(id, from, to, deadline)| {
            let done = acked.remove(&id).unwrap_or_default();
            let awaiting: BTreeSet<String> = match to {
                Some(to) => vec![to],
                None => active
                    .iter()
                    .filter(|a| **a != from)
                    .cloned()
                    .collect::<Vec<_>>(),
            }
            .into_iter()
            .filter(|a| active.contains(a) && !done.contains(a))
            .collect();
            Some(PendingAck {
                id,
                from,
                deadline: deadline?,
                awaiting,
            })
        })
        .collect())
}

/// Records that the overdue alert for message `id` was sent (it is not sent again).
pub fn mark_overdue_alerted(conn: &mut DbConn, session_id: Uuid, id: i64) -> Result<(), HubError> {
    diesel::update(messages::table.find((session_id.to_string(), id)))
        .set(messages::overdue_alerted.eq(true))
        .execute(conn)?;
    Ok(())
}

/// message, reader, read, acknowledged, delivered, shown, shown how.
type Receipt = (
    i64,
    String,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
    Option<String>,
);

pub fn read_messages(
    conn: &mut DbConn,
    session_id: Uuid,
    q: &MessageQuery,
) -> Result<MessagePage, HubError> {
    let sid = session_id.to_string();
    let viewer = q.viewer.as_deref();
    // Unread = a `message_unread` row of `me`: what it received (addressed to it or broadcast,
    // not its own) and has not read. Counting them costs its backlog, not the history.
    let unread = match viewer {
        Some(me) => message_unread::table
            .filter(message_unread::session_id.eq(&sid))
            .filter(message_unread::ai_id.eq(me))
            .count()
            .get_result(conn)?,
        None => 0,
    };
    // The filters every page takes, on whichever rows it walks.
    macro_rules! narrowed {
        ($query:expr) => {{
            let mut query = $query;
            if let Some(p) = q.priority {
                query = query.filter(messages::priority.eq(p.as_str()));
            }
            if let Some(t) = q.thread {
                query = query.filter(messages::thread_id.eq(t));
            }
            query
        }};
    }
    let fetch = q.limit + 1;
    // After `since`, or unread ones: oldest first, so repeated reads drain them in order.
    // Otherwise the newest `limit`, still listed oldest first.
    let oldest_first = q.since.is_some() || q.unread_only;
    let mut rows: Vec<MessageRow> = match viewer {
        // Unread ones: walk the reader's unread rows in id order, not the whole history.
        Some(me) if q.unread_only => {
            let mut query = message_unread::table
                .inner_join(
                    messages::table.on(messages::session_id
                        .eq(message_unread::session_id)
                        .and(messages::id.eq(message_unread::message_id))),
                )
                .filter(message_unread::session_id.eq(&sid))
                .filter(message_unread::ai_id.eq(me))
                .filter(message_unread::message_id.gt(q.since.unwrap_or(0)))
                .select(MessageRow::as_select())
                .into_boxed();
            query = narrowed!(query);
            query
                .order(message_unread::message_id.asc())
                .limit(fetch)
                .load(conn)?
        }
        _ => {
            let mut query = messages::table
                .filter(messages::session_id.eq(&sid))
                .select(MessageRow::as_select())
                .into_boxed();
            if let Some(me) = viewer {
                query = query.filter(
                    messages::to_ai
                        .is_null()
                        .or(messages::to_ai.eq(me))
                        .or(messages::from_ai.eq(me)),
                );
            }
            query = narrowed!(query);
            if oldest_first {
                query
                    .filter(messages::id.gt(q.since.unwrap_or(0)))
                    .order(messages::id.asc())
                    .limit(fetch)
                    .load(conn)?
            } else {
                let mut newest: Vec<MessageRow> =
                    query.order(messages::id.desc()).limit(fetch).load(conn)?;
                newest.reverse();
                newest
            }
        }
    };
    let more = rows.len() as i64 > q.limit;
    if more {
        if oldest_first {
            rows.truncate(q.limit as usize);
        } else {
            rows.remove(0); // newest-first: the extra row is the oldest one
        }
    }
    page_of(conn, &sid, viewer, rows, unread, more)
}

/// A read's page as it was answered, kept with its request key (`applied_requests.detail`):
/// a page whose answer was lost with its owner is answered again from it, although the read
/// marked its messages read.
#[derive(Debug, Serialize, Deserialize)]
pub struct Replay {
    pub ids: Vec<i64>,
    /// Those the read marked read: answered again as unread, as they were.
    pub newly_read: Vec<i64>,
    pub unread: i64,
    pub more: bool,
}

impl Replay {
    pub fn of(page: &MessagePage, newly_read: &[i64]) -> Replay {
        Replay {
            ids: page.messages.iter().map(|m| m.id).collect(),
            newly_read: newly_read.to_vec(),
            unread: page.unread,
            more: page.more,
        }
    }
}

/// The page `replay` describes, for `viewer`, as it was first answered.
pub fn replay(
    conn: &mut DbConn,
    session_id: Uuid,
    viewer: Option<&str>,
    replay: &Replay,
) -> Result<MessagePage, HubError> {
    let sid = session_id.to_string();
    let rows: Vec<MessageRow> = messages::table
        .filter(messages::session_id.eq(&sid))
        .filter(messages::id.eq_any(&replay.ids))
        .select(MessageRow::as_select())
        .order(messages::id.asc())
        .load(conn)?;
    let mut page = page_of(conn, &sid, viewer, rows, replay.unread, replay.more)?;
    for m in &mut page.messages {
        if replay.newly_read.contains(&m.id) {
            m.read = Some(false);
        }
    }
    Ok(page)
}

/// `rows` as the page `viewer` reads: each with its receipts.
fn page_of(
    conn: &mut DbConn,
    sid: &str,
    viewer: Option<&str>,
    rows: Vec<MessageRow>,
    unread: i64,
    more: bool,
) -> Result<MessagePage, HubError> {
    // Receipts: the viewer's own state, and who read/acknowledged what the viewer sent.
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let receipts: Vec<Receipt> = message_receipts::table
        .filter(message_receipts::session_id.eq(sid))
        .filter(message_receipts::message_id.eq_any(ids))
        .select((
            message_receipts::message_id,
            message_receipts::ai_id,
            message_receipts::read_at,
            message_receipts::acked_at,
            message_receipts::delivered_at,
            message_receipts::shown_at,
            message_receipts::shown_via,
        ))
        .load(conn)?;
    let mut by_message: BTreeMap<i64, Vec<&Receipt>> = BTreeMap::new();
    for r in &receipts {
        by_message.entry(r.0).or_default().push(r);
    }
    let messages = rows
        .into_iter()
        .map(|row| {
            let here = by_message.get(&row.id).map(Vec::as_slice).unwrap_or(&[]);
            let own = viewer.is_none_or(|me| me == row.from_ai);
            let mine = viewer.and_then(|me| here.iter().find(|r| r.1 == me));
            let who = |pick: fn(&Receipt) -> bool| -> Vec<String> {
                here.iter()
                    .filter(|r| pick(r))
                    .map(|r| r.1.clone())
                    .collect()
            };
            Ok(MessageView {
                id: row.id,
                priority: Priority::parse(&row.priority).ok_or_else(|| {
                    HubError::Internal("stored message priority is unreadable".into())
                })?,
                body: serde_json::from_str(&row.body)
                    .map_err(|_| HubError::Internal("stored message body is unreadable".into()))?,
                from: row.from_ai,
                to: row.to_ai,
                reply_to: row.reply_to,
                thread: row.thread_id,
                requires_ack: row.requires_ack,
                ack_deadline: row.ack_deadline.map(|d| d.and_utc()),
                at: row.created_at.and_utc(),
                read: (!own).then(|| mine.is_some_and(|r| r.2.is_some())),
                acked: (!own).then(|| mine.is_some_and(|r| r.3.is_some())),
                read_by: own.then(|| who(|r| r.2.is_some())),
                acked_by: own.then(|| who(|r| r.3.is_some())),
                // Handed to a stream, or read (a result reached it), acknowledged or shown.
                delivered_to: own.then(|| {
                    who(|r| r.4.is_some() || r.2.is_some() || r.3.is_some() || r.5.is_some())
                }),
                shown_to: own.then(|| {
                    here.iter()
                        .filter_map(|r| {
                            Some(Shown {
                                ai_id: r.1.clone(),
                                at: r.5?.and_utc(),
                                via: r.6.clone().unwrap_or_default(),
                            })
                        })
                        .collect()
                }),
            })
        })
        .collect::<Result<Vec<_>, HubError>>()?;
    Ok(MessagePage {
        messages,
        unread,
        more,
    })
}
