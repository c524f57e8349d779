//! Writes kept as data rather than closures, so that the PostgreSQL writer can put the
//! consecutive ones of a batch, whatever their sessions, in ONE statement ([`write_many`]):
//! message sends, a lock's acquire, renewal and release, and context writes. Each is an event
//! plus the row it carries (the message, the lock's row; a context write carries none). Alone, or on SQLite, each is written by its own
//! function (`messages::append_sent`, `locks::append_*`), which says the same thing.
//!
//! Why: one session's writes all go to one writer connection (its log commits in id order), and
//! that connection is bound by round trips and by the session row: one statement per write
//! updates the session's counter once per write, and in one transaction each update of the same
//! row walks every earlier version of it. Here the counter goes up once per session per batch.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use uuid::Uuid;

use super::DbConn;
use super::locks;
use super::messages::SendWrite;
use crate::domain::event::{Event, NewEvent};
use crate::domain::lock::{Release, Request};
use crate::error::HubError;

/// A write the PostgreSQL writer may combine with its neighbours (`Store::submit_event_write`).
pub enum EventWrite {
    Send(SendWrite),
    Lock(LockWrite),
    /// An event alone (a context write: its changes are in its payload).
    Event(PlainWrite),
    /// A keyed command's write: it records its request key (`applied_requests`) with it.
    Keyed(Box<EventWrite>, Uuid),
}

/// An event that carries no row of its own.
pub struct PlainWrite {
    pub session_id: Uuid,
    pub event: NewEvent,
    pub at: NaiveDateTime,
}

/// A lock's event and the change to its row that goes with it.
pub struct LockWrite {
    pub session_id: Uuid,
    pub event: NewEvent,
    pub at: NaiveDateTime,
    pub change: LockChange,
}

pub enum LockChange {
    /// A new request's row, held from `at` (its id its token) or waiting.
    Request {
        id: i64,
        request: Request,
        granted: bool,
    },
    /// A held lock's new lease.
    Renew {
        id: i64,
        lease_secs: u32,
        expires_at: NaiveDateTime,
    },
    /// The lock's row released, for `reason`.
    Release { id: i64, reason: Release },
}

impl LockChange {
    fn id(&self) -> i64 {
        match self {
            LockChange::Request { id, .. }
            | LockChange::Renew { id, .. }
            | LockChange::Release { id, .. } => *id,
        }
    }
}

impl LockWrite {
    /// This write on its own.
    pub fn write(&self, conn: &mut DbConn) -> Result<Event, HubError> {
        let (s, e, at) = (self.session_id, &self.event, self.at);
        match &self.change {
            LockChange::Request {
                id,
                request,
                granted,
            } => locks::append_request(conn, s, e, *id, request, *granted, at),
            LockChange::Renew {
                id,
                lease_secs,
                expires_at,
            } => locks::append_renewal(conn, s, e, *id, *lease_secs, *expires_at, at),
            LockChange::Release { id, reason } => {
                locks::append_release(conn, s, e, *id, *reason, at)
            }
        }
    }
}

impl EventWrite {
    pub fn session_id(&self) -> Uuid {
        match self {
            EventWrite::Send(s) => s.session_id,
            EventWrite::Lock(l) => l.session_id,
            EventWrite::Event(e) => e.session_id,
            EventWrite::Keyed(w, _) => w.session_id(),
        }
    }

    /// This write on its own.
    pub fn write(&self, conn: &mut DbConn) -> Result<Event, HubError> {
        match self {
            EventWrite::Send(s) => s.write(conn),
            EventWrite::Lock(l) => l.write(conn),
            EventWrite::Event(e) => {
                super::queries::append_event(conn, e.session_id, &e.event, e.at)
            }
            EventWrite::Keyed(w, key) => {
                let event = w.write(conn)?;
                super::applied::record(conn, *key, w.session_id(), std::slice::from_ref(&event))?;
                Ok(event)
            }
        }
    }

    /// The lock row it changes. One statement must not change a row twice (PostgreSQL would
    /// apply one of the changes), so two writes of one lock never share a statement.
    pub fn lock_row(&self) -> Option<(Uuid, i64)> {
        match self {
            EventWrite::Send(_) | EventWrite::Event(_) => None,
            EventWrite::Lock(l) => Some((l.session_id, l.change.id())),
            EventWrite::Keyed(w, _) => w.lock_row(),
        }
    }

    fn event(&self) -> &NewEvent {
        match self {
            EventWrite::Send(s) => &s.message.event,
            EventWrite::Lock(l) => &l.event,
            EventWrite::Event(e) => &e.event,
            EventWrite::Keyed(w, _) => w.event(),
        }
    }

    fn at(&self) -> NaiveDateTime {
        match self {
            EventWrite::Send(s) => s.at,
            EventWrite::Lock(l) => l.at,
            EventWrite::Event(e) => e.at,
            EventWrite::Keyed(w, _) => w.at(),
        }
    }
}

/// What `write_many`'s statement binds for one write beside its event: each column is null
/// where the write has no such thing.
#[derive(Default)]
struct Columns {
    op: &'static str,
    from_ai: Option<String>,
    to_ai: Option<String>,
    body: Option<String>,
    reply_to: Option<i64>,
    thread_id: Option<i64>,
    requires_ack: Option<bool>,
    ack_deadline: Option<NaiveDateTime>,
    mpriority: Option<String>,
    lock_id: Option<i64>,
    resource: Option<String>,
    holder: Option<String>,
    mode: Option<String>,
    operation: Option<String>,
    lstate: Option<String>,
    lease_secs: Option<i32>,
    token: Option<i64>,
    task_id: Option<i64>,
    expires_at: Option<NaiveDateTime>,
    reason: Option<String>,
    request_key: Option<String>,
}

fn columns(w: &EventWrite) -> Columns {
    match w {
        EventWrite::Keyed(w, key) => Columns {
            request_key: Some(key.to_string()),
            ..columns(w)
        },
        EventWrite::Event(_) => Columns {
            op: "event",
            ..Columns::default()
        },
        EventWrite::Send(s) => {
            let m = &s.message;
            Columns {
                op: "send",
                from_ai: Some(m.from.clone()),
                to_ai: m.to.clone(),
                body: Some(m.body.to_string()),
                reply_to: m.reply_to,
                thread_id: m.thread,
                requires_ack: Some(m.requires_ack),
                ack_deadline: m.ack_deadline,
                mpriority: Some(m.priority.as_str().to_owned()),
                ..Columns::default()
            }
        }
        EventWrite::Lock(l) => match &l.change {
            LockChange::Request {
                id,
                request,
                granted,
            } => {
                let row = locks::RequestRow::new(l.session_id, *id, request, *granted, l.at);
                Columns {
                    op: "request",
                    lock_id: Some(row.id),
                    resource: Some(row.resource),
                    holder: Some(row.holder),
                    mode: Some(row.mode.to_owned()),
                    operation: row.operation,
                    lstate: Some(row.state.to_owned()),
                    lease_secs: Some(row.lease_secs),
                    token: row.fencing_token,
                    task_id: row.task_id,
                    expires_at: row.expires_at,
                    ..Columns::default()
                }
            }
            LockChange::Renew {
                id,
                lease_secs,
                expires_at,
            } => Columns {
                op: "renew",
                lock_id: Some(*id),
                lease_secs: Some(i32::try_from(*lease_secs).unwrap_or(i32::MAX)),
                expires_at: Some(*expires_at),
                ..Columns::default()
            },
            LockChange::Release { id, reason } => Columns {
                op: "release",
                lock_id: Some(*id),
                reason: Some(locks::reason_text(*reason).to_owned()),
                ..Columns::default()
            },
        },
    }
}

/// `writes`, in order, in ONE statement on PostgreSQL (one at a time on SQLite). Each session's
/// counter is bumped once by its number of writes and the ids are handed out in queue order,
/// so the log is what the writes one by one would have written. No two of `writes` may change
/// the same lock row (`EventWrite::lock_row`). `Err`: the statement failed (the transaction is
/// then aborted); a write whose session row is gone gets its own error.
pub fn write_many(
    conn: &mut DbConn,
    writes: &[&EventWrite],
) -> Result<Vec<Result<Event, HubError>>, HubError> {
    use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamp};
    let DbConn::Pg(c) = conn else {
        return Ok(writes.iter().map(|w| w.write(conn)).collect());
    };
    #[derive(QueryableByName)]
    struct Numbered {
        #[diesel(sql_type = BigInt)]
        ord: i64,
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    // One slot per write, in order; a row whose payload cannot be encoded keeps its error and
    // never reaches the statement, the others are "session gone" until the statement numbers
    // them.
    let mut answers = Vec::with_capacity(writes.len());
    let mut rows = Vec::with_capacity(writes.len());
    for w in writes {
        match super::queries::event_row(w.session_id().to_string(), w.event(), w.at()) {
            Ok(row) => {
                rows.push((answers.len(), row, columns(w)));
                answers.push(Err(HubError::session_not_found(w.session_id())));
            }
            Err(e) => answers.push(Err(e)),
        }
    }
    macro_rules! column {
        ($f:expr) => {
            rows.iter().map($f).collect::<Vec<_>>()
        };
    }
    // `i`: the writes, `ord` their place; `c`: how many each session gets; `n`: each session's
    // counter bumped by that many; `r`: the writes numbered in order within their session. Then
    // the events, and what each kind of write carries: a send its message and unread rows (as
    // `messages::append_sent`), a lock request its row, a renewal or release its row's change
    // (as `locks::append_*`). Only the kinds the batch holds are in the statement: it is planned
    // anew for every batch, and a send-only batch was 5–12 % slower with the lock parts in.
    let sends = rows.iter().any(|(_, _, w)| w.op == "send");
    let locks = rows
        .iter()
        .any(|(_, _, w)| matches!(w.op, "request" | "renew" | "release"));
    let keyed = rows.iter().any(|(_, _, w)| w.request_key.is_some());
    let mut columns: Vec<(&str, &str)> = vec![
        ("ord", "int8"),
        ("session_id", "text"),
        ("actor", "text"),
        ("kind", "text"),
        ("priority", "text"),
        ("payload", "text"),
        ("created_at", "timestamp"),
        ("recipient", "text"),
        ("op", "text"),
    ];
    if sends {
        columns.extend([
            ("from_ai", "text"),
            ("to_ai", "text"),
            ("body", "text"),
            ("reply_to", "int8"),
            ("thread_id", "int8"),
            ("requires_ack", "bool"),
            ("ack_deadline", "timestamp"),
            ("mpriority", "text"),
        ]);
    }
    if locks {
        columns.extend([
            ("lock_id", "int8"),
            ("resource", "text"),
            ("holder", "text"),
            ("mode", "text"),
            ("operation", "text"),
            ("lstate", "text"),
            ("lease_secs", "int4"),
            ("token", "int8"),
            ("task_id", "int8"),
            ("expires_at", "timestamp"),
            ("reason", "text"),
        ]);
    }
    if keyed {
        columns.push(("request_key", "text"));
    }
    let arrays: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(n, (_, ty))| format!("${}::{ty}[]", n + 1))
        .collect();
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let mut sql = format!(
        "WITH i AS (SELECT * FROM unnest({}) AS t({})), \
              c AS (SELECT session_id, count(*) AS k, max(created_at) AS last_at FROM i GROUP BY session_id), \
              n AS (UPDATE sessions s SET last_event_id = s.last_event_id + c.k, updated_at = c.last_at \
                    FROM c WHERE s.id = c.session_id RETURNING s.id, s.last_event_id - c.k AS base), \
              r AS (SELECT i.*, n.base + row_number() OVER (PARTITION BY i.session_id ORDER BY i.ord) AS id \
                    FROM i JOIN n ON n.id = i.session_id), \
              e AS (INSERT INTO events (session_id, id, actor, kind, priority, payload, created_at, recipient) \
                    SELECT session_id, id, actor, kind, priority, payload, created_at, recipient FROM r)",
        arrays.join(", "),
        names.join(", ")
    );
    if sends {
        sql.push_str(
            ", m AS (INSERT INTO messages (session_id, id, from_ai, to_ai, priority, body, reply_to, \
                    thread_id, requires_ack, ack_deadline, overdue_alerted, created_at) \
                    SELECT session_id, id, from_ai, to_ai, mpriority, body, reply_to, \
                    COALESCE(thread_id, id), requires_ack, ack_deadline, false, created_at \
                    FROM r WHERE op = 'send'), \
              u AS (INSERT INTO message_unread (session_id, ai_id, message_id) \
                    SELECT session_id, to_ai, id FROM r WHERE op = 'send' AND to_ai IS NOT NULL \
                    UNION ALL \
                    SELECT r.session_id, p.ai_id, r.id FROM r JOIN participants p \
                    ON p.session_id = r.session_id AND p.ai_id <> r.from_ai \
                    WHERE r.op = 'send' AND r.to_ai IS NULL)",
        );
    }
    if locks {
        sql.push_str(
            ", lq AS (INSERT INTO locks (session_id, id, resource, holder, mode, operation, state, \
                    lease_secs, fencing_token, requested_at, task_id, expires_at) \
                    SELECT session_id, lock_id, resource, holder, mode, operation, lstate, \
                    lease_secs, token, created_at, task_id, expires_at FROM r WHERE op = 'request'), \
              lr AS (UPDATE locks l SET lease_secs = r.lease_secs, expires_at = r.expires_at \
                    FROM r WHERE r.op = 'renew' AND l.session_id = r.session_id AND l.id = r.lock_id), \
              lx AS (UPDATE locks l SET state = 'released', released_at = r.created_at, \
                    release_reason = r.reason \
                    FROM r WHERE r.op = 'release' AND l.session_id = r.session_id AND l.id = r.lock_id)",
        );
    }
    if keyed {
        // A key already there (the same write sent twice) fails the statement: the batch runs
        // again one write at a time, where that write alone is refused (`applied::record`).
        sql.push_str(
            ", ak AS (INSERT INTO applied_requests (key, session_id, first_event, last_event, \
                    created_at) \
                    SELECT request_key, session_id, id, id, created_at FROM r \
                    WHERE request_key IS NOT NULL)",
        );
    }
    sql.push_str(" SELECT ord, id FROM r");
    let mut query = diesel::sql_query(sql)
        .into_boxed::<diesel::pg::Pg>()
        .bind::<Array<BigInt>, _>(column!(|(slot, _, _)| *slot as i64))
        .bind::<Array<Text>, _>(column!(|(_, row, _)| row.session_id.clone()))
        .bind::<Array<Nullable<Text>>, _>(column!(|(_, row, _)| row.actor.clone()))
        .bind::<Array<Text>, _>(column!(|(_, row, _)| row.kind.clone()))
        .bind::<Array<Text>, _>(column!(|(_, row, _)| row.priority.clone()))
        .bind::<Array<Text>, _>(column!(|(_, row, _)| row.payload.clone()))
        .bind::<Array<Timestamp>, _>(column!(|(_, row, _)| row.created_at))
        .bind::<Array<Nullable<Text>>, _>(column!(|(_, row, _)| row.recipient.clone()))
        .bind::<Array<Text>, _>(column!(|(_, _, w)| w.op.to_owned()));
    if sends {
        query = query
            .bind::<Array<Nullable<Text>>, _>(column!(|(_, _, w)| w.from_ai.clone()))
            .bind::<Array<Nullable<Text>>, _>(column!(|(_, _, w)| w.to_ai.clone()))
            .bind::<Array<Nullable<Text>>, _>(column!(|(_, _, w)| w.body.clone()))
            .bind::<Array<Nullable<BigInt>>, _>(column!(|(_, _, w)| w.reply_to))
            .bind::<Array<Nullable<BigInt>>, _>(column!(|(_, _, w)| w.thread_id))
            .bind::<Array<Nullable<Bool>>, _>(column!(|(_, _, w)| w.requires_ack))
            .bind::<Array<Nullable<Timestamp>>, _>(column!(|(_, _, w)| w.ack_deadline))
            .bind::<Array<Nullable<Text>>, _>(column!(|(_, _, w)| w.mpriority.clone()));
    }
    if locks {
        query = query
            .bind::<Array<Nullable<BigInt>>, _>(column!(|(_, _, w)| w.lock_id))
            .bind::<Array<Nullable<Text>>, _>(column!(|(_, _, w)| w.resource.clone()))
            .bind::<Array<Nullable<Text>>, _>(column!(|(_, _, w)| w.holder.clone()))
            .bind::<Array<Nullable<Text>>, _>(column!(|(_, _, w)| w.mode.clone()))
            .bind::<Array<Nullable<Text>>, _>(column!(|(_, _, w)| w.operation.clone()))
            .bind::<Array<Nullable<Text>>, _>(column!(|(_, _, w)| w.lstate.clone()))
            .bind::<Array<Nullable<Integer>>, _>(column!(|(_, _, w)| w.lease_secs))
            .bind::<Array<Nullable<BigInt>>, _>(column!(|(_, _, w)| w.token))
            .bind::<Array<Nullable<BigInt>>, _>(column!(|(_, _, w)| w.task_id))
            .bind::<Array<Nullable<Timestamp>>, _>(column!(|(_, _, w)| w.expires_at))
            .bind::<Array<Nullable<Text>>, _>(column!(|(_, _, w)| w.reason.clone()));
    }
    if keyed {
        query = query.bind::<Array<Nullable<Text>>, _>(column!(|(_, _, w)| w.request_key.clone()));
    }
    let numbered: Vec<Numbered> = query.load(c)?;
    let mut rows: BTreeMap<usize, super::models::EventRow> =
        rows.into_iter().map(|(slot, row, _)| (slot, row)).collect();
    for Numbered { ord, id } in numbered {
        let slot = ord as usize;
        if let Some(mut row) = rows.remove(&slot) {
            row.id = id;
            answers[slot] = row.into_event();
        }
    }
    Ok(answers)
}
