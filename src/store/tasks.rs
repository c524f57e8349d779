//! Statements for tasks, for both backends. A task row is written whole: the session actor
//! holds the board and stores each task as it changes.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use uuid::Uuid;

use super::DbConn;
use super::schema::tasks;
use crate::domain::task::{Status, Task};
use crate::error::HubError;

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

pub fn insert(conn: &mut DbConn, session_id: Uuid, t: &Task) -> Result<(), HubError> {
    diesel::insert_into(tasks::table)
        .values((
            tasks::session_id.eq(session_id.to_string()),
            tasks::id.eq(t.id),
            tasks::parent_id.eq(t.parent),
            tasks::description.eq(&t.description),
            tasks::assigned_to.eq(&t.assigned_to),
            tasks::status.eq(t.status.as_str()),
            tasks::blocked_reason.eq(&t.blocked_reason),
            tasks::dependencies.eq(json(&t.dependencies)),
            tasks::skills.eq(json(&t.skills)),
            tasks::estimated_secs.eq(t
                .estimated_secs
                .map(|s| i32::try_from(s).unwrap_or(i32::MAX))),
            tasks::metadata.eq(json(&t.metadata)),
            tasks::handoff.eq(t.handoff.as_ref().map(json)),
            tasks::created_by.eq(&t.created_by),
            tasks::created_at.eq(t.created_at),
            tasks::updated_at.eq(t.updated_at),
            tasks::completed_at.eq(t.completed_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Stores what may change on a task.
pub fn update(conn: &mut DbConn, session_id: Uuid, t: &Task) -> Result<(), HubError> {
    diesel::update(tasks::table.find((session_id.to_string(), t.id)))
        .set((
            tasks::assigned_to.eq(&t.assigned_to),
            tasks::status.eq(t.status.as_str()),
            tasks::blocked_reason.eq(&t.blocked_reason),
            tasks::dependencies.eq(json(&t.dependencies)),
            tasks::handoff.eq(t.handoff.as_ref().map(json)),
            tasks::updated_at.eq(t.updated_at),
            tasks::completed_at.eq(t.completed_at),
        ))
        .execute(conn)?;
    Ok(())
}

type Row = (
    i64,
    Option<i64>,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    String,
    Option<i32>,
    String,
    Option<String>,
    Option<String>,
    NaiveDateTime,
    NaiveDateTime,
    Option<NaiveDateTime>,
);

/// Every task of a session, for a session being loaded.
pub fn load(conn: &mut DbConn, session_id: Uuid) -> Result<Vec<Task>, HubError> {
    let rows: Vec<Row> = tasks::table
        .filter(tasks::session_id.eq(session_id.to_string()))
        .order(tasks::id.asc())
        .select((
            tasks::id,
            tasks::parent_id,
            tasks::description,
            tasks::assigned_to,
            tasks::status,
            tasks::blocked_reason,
            tasks::dependencies,
            tasks::skills,
            tasks::estimated_secs,
            tasks::metadata,
            tasks::handoff,
            tasks::created_by,
            tasks::created_at,
            tasks::updated_at,
            tasks::completed_at,
        ))
        .load(conn)?;
    let bad = || HubError::Internal("a stored task is unreadable".into());
    rows.into_iter()
        .map(|r| {
            let (
                id,
                parent,
                description,
                assigned_to,
                status,
                blocked_reason,
                deps,
                skills,
                est,
                meta,
                handoff,
                created_by,
                created_at,
                updated_at,
                completed_at,
            ) = r;
            Ok(Task {
                id,
                parent,
                description,
                assigned_to,
                status: Status::parse(&status).ok_or_else(bad)?,
                blocked_reason,
                dependencies: serde_json::from_str(&deps).map_err(|_| bad())?,
                skills: serde_json::from_str(&skills).map_err(|_| bad())?,
                estimated_secs: est.and_then(|e| u32::try_from(e).ok()),
                metadata: serde_json::from_str(&meta).map_err(|_| bad())?,
                handoff: handoff
                    .map(|h| serde_json::from_str(&h))
                    .transpose()
                    .map_err(|_| bad())?,
                created_by,
                created_at,
                updated_at,
                completed_at,
            })
        })
        .collect()
}
