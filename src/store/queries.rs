//! The statements the actors need, written once for both backends. Each runs inside a store
//! transaction (see `Store::write` / `Store::read`); none opens its own.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use uuid::Uuid;

use super::DbConn;
use super::codec::{decode_snapshot, encode_payload, encode_snapshot};
use super::models::{EventRow, ParticipantRow, SessionRow};
use super::schema::{context_snapshots, events, participants, sessions};
use crate::domain::context::Context;
use crate::domain::context_log::changes_from_json;
use crate::domain::event::{Event, NewEvent, Priority};
use crate::domain::session::{
    CONTEXT_KINDS, Participant, ParticipantBrief, RECENT_CRITICAL, Session, SessionStatus,
    SessionSummary,
};
use crate::error::HubError;

/// The row `event` is stored as, before it has its id.
pub(super) fn event_row(
    session_id: String,
    event: &NewEvent,
    at: NaiveDateTime,
) -> Result<EventRow, HubError> {
    Ok(EventRow {
        session_id,
        id: 0,
        actor: event.actor.clone(),
        kind: event.kind.to_owned(),
        priority: event.priority.as_str().to_owned(),
        payload: encode_payload(&event.payload)?,
        created_at: at,
        recipient: event.to.clone(),
    })
}

/// PostgreSQL: the head of a statement that takes the session's next event id and inserts the
/// event, as CTEs `n` (the id) and `e` (the event, `RETURNING id`); its parameters are bound by
/// `bind_event`. `append_event_with` adds what goes with the event (a message, a lock's row).
macro_rules! pg_append_event {
    () => {
        "WITH n AS (UPDATE sessions SET last_event_id = last_event_id + 1, updated_at = $1 \
                    WHERE id = $2 RETURNING last_event_id), \
              e AS (INSERT INTO events (session_id, id, actor, kind, priority, payload, \
                    created_at, recipient) \
                    SELECT $2, last_event_id, $3, $4, $5, $6, $1, $7 FROM n RETURNING id)"
    };
}

/// Binds `pg_append_event!`'s parameters `$1`…`$7` from the event's row.
fn bind_event<'a>(query: PgQuery<'a>, row: &'a EventRow) -> PgQuery<'a> {
    use diesel::sql_types::{Nullable, Text, Timestamp};
    query
        .bind::<Timestamp, _>(row.created_at)
        .bind::<Text, _>(&row.session_id)
        .bind::<Nullable<Text>, _>(&row.actor)
        .bind::<Text, _>(&row.kind)
        .bind::<Text, _>(&row.priority)
        .bind::<Text, _>(&row.payload)
        .bind::<Nullable<Text>, _>(&row.recipient)
}

/// Appends `event` to the session's log with the next id and bumps the session's activity time.
/// The id is taken from `sessions.last_event_id` inside the writing transaction, so ids are
/// gap-free and monotonic per session whatever else runs.
pub fn append_event(
    conn: &mut DbConn,
    session_id: Uuid,
    event: &NewEvent,
    at: NaiveDateTime,
) -> Result<Event, HubError> {
    append_event_with(conn, session_id, event, at, "", |q| q, |_, _| Ok(()))
}

/// A PostgreSQL statement as `bind_event` takes and gives it.
pub(super) type PgQuery<'a> =
    diesel::query_builder::BoxedSqlQuery<'a, diesel::pg::Pg, diesel::query_builder::SqlQuery>;

/// `append_event`, and with it a change that belongs to the event (a lock's row, say). On
/// PostgreSQL both are one statement, one round trip: `tail` adds CTEs after `e` (each
/// `, name AS (…)`, reading the new id as `e.id` if needed), whose parameters from `$8` on
/// `bind` binds. On SQLite (in process) `sqlite` runs after the event, given its id. Nothing
/// of either is written when the session does not exist.
pub(super) fn append_event_with(
    conn: &mut DbConn,
    session_id: Uuid,
    event: &NewEvent,
    at: NaiveDateTime,
    tail: &str,
    bind: impl for<'a> FnOnce(PgQuery<'a>) -> PgQuery<'a>,
    sqlite: impl FnOnce(&mut DbConn, i64) -> Result<(), HubError>,
) -> Result<Event, HubError> {
    let sid = session_id.to_string();
    #[derive(QueryableByName)]
    struct Next {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        last_event_id: i64,
    }
    use diesel::sql_types::{Text, Timestamp};
    let mut row = event_row(sid, event, at)?;
    // The next id is the session row's counter, bumped with the activity time; its row lock
    // keeps ids in commit order. PostgreSQL takes the id and inserts the event in one round
    // trip (a data-modifying CTE); SQLite, in process, in two statements.
    let next: Option<Next> = match conn {
        DbConn::Pg(c) => bind(bind_event(
            diesel::sql_query(format!(
                "{}{tail} SELECT id AS last_event_id FROM e",
                pg_append_event!()
            ))
            .into_boxed(),
            &row,
        ))
        .get_result(c)
        .optional()?,
        DbConn::Sqlite(c) => {
            let next: Option<Next> = diesel::sql_query(
                "UPDATE sessions SET last_event_id = last_event_id + 1, updated_at = $1 \
                 WHERE id = $2 RETURNING last_event_id",
            )
            .bind::<Timestamp, _>(at)
            .bind::<Text, _>(&row.session_id)
            .get_result(c)
            .optional()?;
            if let Some(n) = &next {
                row.id = n.last_event_id;
                diesel::insert_into(events::table).values(&row).execute(c)?;
                sqlite(conn, n.last_event_id)?;
            }
            next
        }
    };
    let Some(Next { last_event_id: id }) = next else {
        return Err(HubError::session_not_found(session_id));
    };
    row.id = id;
    row.into_event()
}

/// Stores a brand-new session with its participants and its `session_created` event.
pub fn insert_session(
    conn: &mut DbConn,
    session: &Session,
    created: &NewEvent,
) -> Result<Event, HubError> {
    diesel::insert_into(sessions::table)
        .values(SessionRow::from_session(session))
        .execute(conn)?;
    let sid = session.id.to_string();
    for p in session.participants.values() {
        diesel::insert_into(participants::table)
            .values(ParticipantRow::from_participant(&sid, p))
            .execute(conn)?;
    }
    append_event(conn, session.id, created, session.created_at)
}

/// Adds a participant, or revives one that left (new role, permissions and token).
pub fn upsert_participant(
    conn: &mut DbConn,
    session_id: Uuid,
    p: &Participant,
) -> Result<(), HubError> {
    let sid = session_id.to_string();
    let row = ParticipantRow::from_participant(&sid, p);
    let revived = diesel::update(participants::table.find((&sid, &p.ai_id)))
        .set((
            participants::role.eq(&row.role),
            participants::permissions.eq(&row.permissions),
            participants::token_digest.eq(&row.token_digest),
            participants::joined_at.eq(row.joined_at),
            participants::left_at.eq(None::<NaiveDateTime>),
            participants::acked_event_id.eq(row.acked_event_id),
            participants::checkpoint.eq(None::<String>),
            participants::skills.eq(&row.skills),
        ))
        .execute(conn)?;
    if revived == 0 {
        diesel::insert_into(participants::table)
            .values(&row)
            .execute(conn)?;
        // Broadcasts reach those who join later: the ones so far are unread for it.
        super::messages::rebuild_unread(conn, std::slice::from_ref(&sid), Some(&p.ai_id))?;
    }
    Ok(())
}

pub fn mark_left(
    conn: &mut DbConn,
    session_id: Uuid,
    ai_id: &str,
    at: NaiveDateTime,
) -> Result<(), HubError> {
    diesel::update(participants::table.find((session_id.to_string(), ai_id)))
        .set((
            participants::left_at.eq(Some(at)),
            participants::checkpoint.eq(None::<String>),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn set_status(
    conn: &mut DbConn,
    session_id: Uuid,
    status: SessionStatus,
) -> Result<(), HubError> {
    diesel::update(sessions::table.find(session_id.to_string()))
        .set(sessions::status.eq(status.as_str()))
        .execute(conn)?;
    Ok(())
}

/// A session's project (fixed when it was created), if the session exists.
pub fn project_of(conn: &mut DbConn, session_id: Uuid) -> Result<Option<String>, HubError> {
    Ok(sessions::table
        .find(session_id.to_string())
        .select(sessions::project)
        .first::<String>(conn)
        .optional()?)
}

/// The whole session as the actor needs it, or `None` if it does not exist.
pub fn load_session(conn: &mut DbConn, session_id: Uuid) -> Result<Option<Session>, HubError> {
    let sid = session_id.to_string();
    let Some(row) = sessions::table
        .find(&sid)
        .select(SessionRow::as_select())
        .first(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let people = participants::table
        .filter(participants::session_id.eq(&sid))
        .select(ParticipantRow::as_select())
        .load(conn)?;
    let mut session = row.into_session(people)?;
    let mut critical: Vec<EventRow> = events::table
        .filter(events::session_id.eq(&sid))
        .filter(events::priority.eq(Priority::Critical.as_str()))
        .order(events::id.desc())
        .limit(RECENT_CRITICAL as i64)
        .select(EventRow::as_select())
        .load(conn)?;
    critical.reverse();
    for row in critical {
        session.record(&row.into_event()?);
    }
    // The shared context: the latest snapshot, then the changes logged after it.
    let snapshot: Option<(i64, String, Vec<u8>)> = context_snapshots::table
        .filter(context_snapshots::session_id.eq(&sid))
        .order(context_snapshots::event_id.desc())
        .select((
            context_snapshots::event_id,
            context_snapshots::encoding,
            context_snapshots::context,
        ))
        .first(conn)
        .optional()?;
    let mut replay_after = 0;
    if let Some((event_id, encoding, bytes)) = snapshot {
        let value = decode_snapshot(&encoding, &bytes)?;
        session.context = Context::from_snapshot(&value)
            .map_err(|e| HubError::Internal(format!("stored context snapshot: {e}")))?;
        replay_after = event_id;
    }
    let changes: Vec<EventRow> = events::table
        .filter(events::session_id.eq(&sid))
        .filter(events::kind.eq_any(CONTEXT_KINDS))
        .filter(events::id.gt(replay_after))
        .order(events::id.asc())
        .select(EventRow::as_select())
        .load(conn)?;
    for row in changes {
        let id = row.id;
        // One unreadable change (written before every write path checked its keys) is skipped
        // with a warning: it must not make the whole session unreadable.
        match row
            .into_event()
            .and_then(|event| changes_from_json(&event.payload["changes"]).map_err(Into::into))
        {
            Ok(applied) => session.apply_context(&applied, id),
            Err(e) => {
                log::warn!("session {session_id}: skipping unreadable context change #{id}: {e}")
            }
        }
    }
    for pending in super::messages::pending_acks(conn, session_id)? {
        session.pending_acks.insert(pending);
    }
    Ok(Some(session))
}

/// Stores (or clears) a participant's open checkpoint.
pub fn set_checkpoint(
    conn: &mut DbConn,
    session_id: Uuid,
    ai_id: &str,
    checkpoint: Option<&crate::domain::checkpoint::Checkpoint>,
) -> Result<(), HubError> {
    let json = checkpoint
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| HubError::Internal(format!("checkpoint does not serialize: {e}")))?;
    diesel::update(participants::table.find((session_id.to_string(), ai_id)))
        .set(participants::checkpoint.eq(json))
        .execute(conn)?;
    Ok(())
}

/// Stores the whole context as of event `event_id`.
pub fn insert_snapshot(
    conn: &mut DbConn,
    session_id: Uuid,
    event_id: i64,
    context: &Context,
    trigger: &str,
    at: NaiveDateTime,
) -> Result<(), HubError> {
    let (encoding, bytes) = encode_snapshot(&context.to_snapshot())?;
    diesel::insert_into(context_snapshots::table)
        .values((
            context_snapshots::id.eq(Uuid::new_v4().to_string()),
            context_snapshots::session_id.eq(session_id.to_string()),
            context_snapshots::event_id.eq(event_id),
            context_snapshots::created_at.eq(at),
            context_snapshots::encoding.eq(encoding),
            context_snapshots::context.eq(bytes),
            context_snapshots::trigger.eq(trigger),
        ))
        .execute(conn)?;
    Ok(())
}

/// Which sessions a list shows.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub status: Option<SessionStatus>,
    /// Only this project's sessions.
    pub project: Option<String>,
    /// Only sessions this participant is in (and has not left).
    pub participant: Option<String>,
    /// Only sessions whose name or project contains this text (any case).
    pub text: Option<String>,
}

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// Sessions, most recently active first, with their current participants.
pub fn list_sessions(
    conn: &mut DbConn,
    filter: &SessionFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<SessionSummary>, HubError> {
    let mut query = sessions::table
        .select(SessionRow::as_select())
        .order((sessions::updated_at.desc(), sessions::id.asc()))
        .limit(limit)
        .offset(offset)
        .into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(sessions::status.eq(status.as_str()));
    }
    if let Some(project) = &filter.project {
        query = query.filter(sessions::project.eq(project.clone()));
    }
    if let Some(who) = &filter.participant {
        query = query.filter(
            sessions::id.eq_any(
                participants::table
                    .filter(participants::ai_id.eq(who.clone()))
                    .filter(participants::left_at.is_null())
                    .select(participants::session_id),
            ),
        );
    }
    if let Some(text) = &filter.text {
        // LIKE with its wildcards escaped: the text is matched literally, in any case.
        let escaped: String = text
            .to_lowercase()
            .chars()
            .flat_map(|c| match c {
                '%' | '_' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        let pattern = format!("%{escaped}%");
        query = query.filter(
            lower(sessions::name)
                .like(pattern.clone())
                .escape('\\')
                .or(lower(sessions::project).like(pattern).escape('\\')),
        );
    }
    let rows: Vec<SessionRow> = query.load(conn)?;
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let people: Vec<(String, String, String)> = participants::table
        .filter(participants::session_id.eq_any(&ids))
        .filter(participants::left_at.is_null())
        .order((
            participants::session_id,
            participants::joined_at,
            participants::ai_id,
        ))
        .select((
            participants::session_id,
            participants::ai_id,
            participants::role,
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|r| {
            let participants = people
                .iter()
                .filter(|(sid, _, _)| *sid == r.id)
                .map(|(_, ai_id, role)| {
                    Ok(ParticipantBrief {
                        ai_id: ai_id.clone(),
                        role: role.parse().map_err(|e: String| HubError::Internal(e))?,
                    })
                })
                .collect::<Result<_, HubError>>()?;
            Ok(SessionSummary {
                session_id: r
                    .id
                    .parse()
                    .map_err(|_| HubError::Internal("stored session id is unreadable".into()))?,
                name: r.name,
                project: r.project,
                status: SessionStatus::parse(&r.status).ok_or_else(|| {
                    HubError::Internal("stored session status is unreadable".into())
                })?,
                participants,
                created_at: r.created_at.and_utc(),
                last_activity: r.updated_at.and_utc(),
            })
        })
        .collect()
}

/// Moves a participant's delivery cursor.
pub fn set_cursor(
    conn: &mut DbConn,
    session_id: Uuid,
    ai_id: &str,
    cursor: i64,
) -> Result<(), HubError> {
    diesel::update(participants::table.find((session_id.to_string(), ai_id)))
        .set(participants::acked_event_id.eq(cursor))
        .execute(conn)?;
    Ok(())
}

/// Which events a page holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventFilter<'a> {
    /// Only events this participant sees (broadcasts, and directed events it sent or received);
    /// `None` reads the whole log (the operator, the hub itself).
    pub viewer: Option<&'a str>,
    /// Only these kinds.
    pub kinds: Option<&'a [&'a str]>,
    /// Only critical events (what passes a checkpoint's hold).
    pub critical_only: bool,
}

/// Events of a session after `after_id` that `filter` lets through, oldest first, at most `limit`.
pub fn events_after(
    conn: &mut DbConn,
    session_id: Uuid,
    filter: EventFilter<'_>,
    after_id: i64,
    limit: i64,
) -> Result<Vec<Event>, HubError> {
    let mut query = events::table
        .filter(events::session_id.eq(session_id.to_string()))
        .filter(events::id.gt(after_id))
        .order(events::id.asc())
        .limit(limit)
        .select(EventRow::as_select())
        .into_boxed();
    if let Some(kinds) = filter.kinds {
        query = query.filter(events::kind.eq_any(kinds));
    }
    if let Some(me) = filter.viewer {
        query = query.filter(
            events::recipient
                .is_null()
                .or(events::recipient.eq(me))
                .or(events::actor.eq(me)),
        );
    }
    if filter.critical_only {
        query = query.filter(events::priority.eq(Priority::Critical.as_str()));
    }
    query
        .load(conn)?
        .into_iter()
        .map(EventRow::into_event)
        .collect()
}

/// The active participant holding the token with this digest, as (session id, ai id).
pub fn find_by_token(conn: &mut DbConn, digest: &str) -> Result<Option<(Uuid, String)>, HubError> {
    let found: Option<(String, String)> = participants::table
        .filter(participants::token_digest.eq(digest))
        .filter(participants::left_at.is_null())
        .select((participants::session_id, participants::ai_id))
        .first(conn)
        .optional()?;
    found
        .map(|(sid, ai)| {
            sid.parse()
                .map(|sid| (sid, ai))
                .map_err(|_| HubError::Internal("stored session id is unreadable".into()))
        })
        .transpose()
}

pub fn set_token_digest(
    conn: &mut DbConn,
    session_id: Uuid,
    ai_id: &str,
    digest: &str,
) -> Result<(), HubError> {
    diesel::update(participants::table.find((session_id.to_string(), ai_id)))
        .set(participants::token_digest.eq(digest))
        .execute(conn)?;
    Ok(())
}

/// The newest event of the given kinds that `actor` caused (0 if none).
pub fn last_event_by(
    conn: &mut DbConn,
    session_id: Uuid,
    kinds: &[&str],
    actor: &str,
) -> Result<i64, HubError> {
    let id: Option<i64> = events::table
        .filter(events::session_id.eq(session_id.to_string()))
        .filter(events::kind.eq_any(kinds))
        .filter(events::actor.eq(actor))
        .select(diesel::dsl::max(events::id))
        .first(conn)?;
    Ok(id.unwrap_or(0))
}

/// The newest event at or before `at` (0 if none): a point in time as a log position.
pub fn last_event_at(
    conn: &mut DbConn,
    session_id: Uuid,
    at: NaiveDateTime,
) -> Result<i64, HubError> {
    let id: Option<i64> = events::table
        .filter(events::session_id.eq(session_id.to_string()))
        .filter(events::created_at.le(at))
        .select(diesel::dsl::max(events::id))
        .first(conn)?;
    Ok(id.unwrap_or(0))
}
