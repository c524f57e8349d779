//! Compaction of completed sessions, in steps small enough not to stall live sessions: first a
//! final snapshot (one short transaction), then the events before it in chunks, then the older
//! snapshots. A crash between steps leaves a session that loads: the final snapshot plus
//! whatever events are left after it.

use chrono::NaiveDateTime;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use uuid::Uuid;

use super::DbConn;
use super::schema::{context_snapshots, events, session_snapshots, sessions};
use crate::domain::retention::RetentionPolicy;
use crate::domain::snapshot::{Includes, Trigger};
use crate::error::HubError;

/// Events deleted per transaction.
pub const CHUNK: i64 = 2_000;
/// Sessions looked at per sweep.
const SWEEP: i64 = 100;

/// Completed sessions with events left that the policy says to compact, with their projects
/// (each is compacted under its project's lease).
pub fn candidates(
    conn: &mut DbConn,
    policy: &RetentionPolicy,
    now: NaiveDateTime,
) -> Result<Vec<(Uuid, String)>, HubError> {
    let completed: Vec<(String, String, NaiveDateTime)> = sessions::table
        .filter(sessions::status.eq("completed"))
        .filter(diesel::dsl::exists(
            events::table.filter(events::session_id.eq(sessions::id)),
        ))
        .order(sessions::updated_at.asc())
        .limit(SWEEP)
        .select((sessions::id, sessions::project, sessions::updated_at))
        .load(conn)?;
    let mut due = Vec::new();
    for (id, project, last_active) in completed {
        let bytes: i64 = match policy.max_bytes {
            Some(_) => events::table
                .filter(events::session_id.eq(&id))
                .select(sql::<BigInt>("COALESCE(SUM(LENGTH(payload)), 0)"))
                .get_result(conn)?,
            None => 0,
        };
        if policy.due(now, last_active, bytes.max(0) as u64)
            && let Ok(id) = id.parse()
        {
            due.push((id, project));
        }
    }
    Ok(due)
}

/// Writes the final snapshots (context and whole session) at the session's last event and
/// returns that event: everything up to it may go.
pub fn seal(conn: &mut DbConn, session_id: Uuid, at: NaiveDateTime) -> Result<i64, HubError> {
    let session = super::queries::load_session(conn, session_id)?
        .ok_or_else(|| HubError::session_not_found(session_id))?;
    let last = session.last_event_id;
    super::queries::insert_snapshot(conn, session_id, last, &session.context, "auto", at)?;
    super::snapshots::save(
        conn,
        session_id,
        super::snapshots::Planned {
            session: session.view(),
            project: session.project.clone(),
            cursors: session
                .active_participants()
                .map(|p| (p.ai_id.clone(), p.acked_event_id))
                .collect(),
            context: Some(session.context.clone()),
            trigger: Trigger::Auto,
            includes: Includes::ALL,
            at,
        },
    )?;
    Ok(last)
}

/// Deletes up to `CHUNK` of the session's oldest events at or before `through`; returns how
/// many went.
pub fn delete_chunk(conn: &mut DbConn, session_id: Uuid, through: i64) -> Result<usize, HubError> {
    let sid = session_id.to_string();
    let oldest: Option<i64> = events::table
        .filter(events::session_id.eq(&sid))
        .select(diesel::dsl::min(events::id))
        .first(conn)?;
    let Some(oldest) = oldest.filter(|o| *o <= through) else {
        return Ok(0);
    };
    let upto = through.min(oldest + CHUNK - 1);
    Ok(diesel::delete(
        events::table
            .filter(events::session_id.eq(&sid))
            .filter(events::id.le(upto)),
    )
    .execute(conn)?)
}

/// Deletes the snapshots older than the final ones.
pub fn prune_snapshots(conn: &mut DbConn, session_id: Uuid, through: i64) -> Result<(), HubError> {
    let sid = session_id.to_string();
    diesel::delete(
        context_snapshots::table
            .filter(context_snapshots::session_id.eq(&sid))
            .filter(context_snapshots::event_id.lt(through)),
    )
    .execute(conn)?;
    let newest: Option<i64> = session_snapshots::table
        .filter(session_snapshots::session_id.eq(&sid))
        .select(diesel::dsl::max(session_snapshots::id))
        .first(conn)?;
    if let Some(newest) = newest {
        diesel::delete(
            session_snapshots::table
                .filter(session_snapshots::session_id.eq(&sid))
                .filter(session_snapshots::id.lt(newest)),
        )
        .execute(conn)?;
    }
    Ok(())
}

/// The oldest event the session still has (0: none), to refuse what needs earlier history.
pub fn oldest_event(conn: &mut DbConn, session_id: Uuid) -> Result<i64, HubError> {
    Ok(events::table
        .filter(events::session_id.eq(session_id.to_string()))
        .select(diesel::dsl::min(events::id))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0))
}
