//! Statements for suggestions, for both backends.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use uuid::Uuid;

use super::DbConn;
use super::schema::suggestions;
use crate::domain::ledger::PlannedChange;
use crate::domain::ledger::SuggestionView;
use crate::error::HubError;

pub fn insert(
    conn: &mut DbConn,
    session_id: Uuid,
    id: i64,
    by: &str,
    c: &PlannedChange,
    task_id: Option<i64>,
    at: NaiveDateTime,
) -> Result<(), HubError> {
    diesel::insert_into(suggestions::table)
        .values((
            suggestions::session_id.eq(session_id.to_string()),
            suggestions::id.eq(id),
            suggestions::ai_id.eq(by),
            suggestions::file_path.eq(&c.file_path),
            suggestions::diff.eq(c.diff.clone().unwrap_or_default()),
            suggestions::lines.eq(serde_json::to_string(&c.lines).unwrap_or_else(|_| "[]".into())),
            suggestions::reason.eq(&c.reason),
            suggestions::task_id.eq(task_id),
            suggestions::status.eq("pending"),
            suggestions::created_at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

type Row = (
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    NaiveDateTime,
);

fn view(r: Row) -> Result<SuggestionView, HubError> {
    let (
        id,
        ai_id,
        file_path,
        diff,
        lines,
        reason,
        task_id,
        status,
        resolved_by,
        note,
        change_id,
        at,
    ) = r;
    Ok(SuggestionView {
        id,
        ai_id,
        file_path,
        diff,
        lines: serde_json::from_str(&lines)
            .map_err(|_| HubError::Internal("a stored suggestion is unreadable".into()))?,
        reason,
        task_id,
        status,
        resolved_by,
        note,
        change_id,
        at: at.and_utc(),
    })
}

macro_rules! columns {
    () => {
        (
            suggestions::id,
            suggestions::ai_id,
            suggestions::file_path,
            suggestions::diff,
            suggestions::lines,
            suggestions::reason,
            suggestions::task_id,
            suggestions::status,
            suggestions::resolved_by,
            suggestions::note,
            suggestions::change_id,
            suggestions::created_at,
        )
    };
}

pub fn get(
    conn: &mut DbConn,
    session_id: Uuid,
    id: i64,
) -> Result<Option<SuggestionView>, HubError> {
    let row: Option<Row> = suggestions::table
        .find((session_id.to_string(), id))
        .select(columns!())
        .first(conn)
        .optional()?;
    row.map(view).transpose()
}

/// Pending first-come-first-listed, or all (`pending_only: false`), oldest first, at most `limit`.
pub fn list(
    conn: &mut DbConn,
    session_id: Uuid,
    pending_only: bool,
    limit: i64,
) -> Result<Vec<SuggestionView>, HubError> {
    let mut q = suggestions::table
        .filter(suggestions::session_id.eq(session_id.to_string()))
        .select(columns!())
        .order(suggestions::id.asc())
        .limit(limit)
        .into_boxed();
    if pending_only {
        q = q.filter(suggestions::status.eq("pending"));
    }
    q.load::<Row>(conn)?.into_iter().map(view).collect()
}

/// How a suggestion was resolved.
pub struct Resolution<'a> {
    pub accepted: bool,
    pub by: Option<&'a str>,
    pub note: Option<&'a str>,
    /// Accepted: the change record it became.
    pub change_id: Option<i64>,
    pub at: NaiveDateTime,
}

pub fn resolve(
    conn: &mut DbConn,
    session_id: Uuid,
    id: i64,
    r: Resolution<'_>,
) -> Result<(), HubError> {
    let Resolution {
        accepted,
        by,
        note,
        change_id,
        at,
    } = r;
    // Only a pending suggestion is resolved: a race between two resolvers leaves one winner.
    let updated = diesel::update(
        suggestions::table
            .find((session_id.to_string(), id))
            .filter(suggestions::status.eq("pending")),
    )
    .set((
        suggestions::status.eq(if accepted { "accepted" } else { "rejected" }),
        suggestions::resolved_by.eq(by),
        suggestions::note.eq(note),
        suggestions::change_id.eq(change_id),
        suggestions::resolved_at.eq(Some(at)),
    ))
    .execute(conn)?;
    if updated != 1 {
        return Err(HubError::Conflict {
            code: "already_resolved",
            message: format!("suggestion {id} is no longer pending"),
        });
    }
    Ok(())
}
