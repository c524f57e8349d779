//! Statements for the change ledger and the session's coordination state, for both backends.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use uuid::Uuid;

use super::DbConn;
use super::codec::decode_payload;
use super::models::coordination_json;
use super::schema::{code_changes, events, participants, sessions};
use crate::domain::coordination::{Coordination, RoleChange};
use crate::domain::handshake::{HANDSHAKE_EVENT, Unreviewed, ends_review};
use crate::domain::ledger::{ChangeQuery, ChangeView};
use crate::domain::ledger::{Operation, PlannedChange, RecentChange};
use crate::error::HubError;

/// Stores the session's handshake phase, role requests and rotation clock.
pub fn set_coordination(
    conn: &mut DbConn,
    session_id: Uuid,
    c: &Coordination,
) -> Result<(), HubError> {
    diesel::update(sessions::table.find(session_id.to_string()))
        .set(sessions::coordination.eq(coordination_json(c)))
        .execute(conn)?;
    Ok(())
}

/// Gives participants their new roles, with the new role's default permissions.
pub fn set_roles(conn: &mut DbConn, session_id: Uuid, change: &RoleChange) -> Result<(), HubError> {
    let sid = session_id.to_string();
    for (ai_id, role) in &change.roles {
        let permissions = serde_json::to_string(&role.default_permissions())
            .map_err(|e| HubError::Internal(format!("permissions do not serialize: {e}")))?;
        diesel::update(participants::table.find((&sid, ai_id)))
            .set((
                participants::role.eq(role.as_str()),
                participants::permissions.eq(permissions),
            ))
            .execute(conn)?;
    }
    Ok(())
}

fn json_text<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

pub fn insert_change(
    conn: &mut DbConn,
    session_id: Uuid,
    id: i64,
    by: &str,
    co_author: Option<&str>,
    c: &PlannedChange,
    at: NaiveDateTime,
) -> Result<(), HubError> {
    diesel::insert_into(code_changes::table)
        .values((
            code_changes::session_id.eq(session_id.to_string()),
            code_changes::id.eq(id),
            code_changes::ai_id.eq(by),
            code_changes::co_author.eq(co_author),
            code_changes::operation.eq(c.operation.as_str()),
            code_changes::file_path.eq(&c.file_path),
            code_changes::new_path.eq(&c.new_path),
            code_changes::diff.eq(&c.diff),
            code_changes::lines.eq(json_text(&c.lines)),
            code_changes::symbols.eq(json_text(&c.symbols)),
            code_changes::reason.eq(&c.reason),
            code_changes::task_id.eq(c.task_id),
            code_changes::created_at.eq(at),
        ))
        .execute(conn)?;
    Ok(())
}

type ChangeRow = (
    i64,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
    NaiveDateTime,
    Option<i64>,
);

fn unreadable() -> HubError {
    HubError::Internal("a stored change is unreadable".into())
}

/// Changes to `file` since `since` (conflict detection's window).
pub fn recent_changes(
    conn: &mut DbConn,
    session_id: Uuid,
    file: &str,
    since: NaiveDateTime,
) -> Result<Vec<RecentChange>, HubError> {
    let rows: Vec<(i64, String, String, String, NaiveDateTime)> = code_changes::table
        .filter(code_changes::session_id.eq(session_id.to_string()))
        .filter(code_changes::file_path.eq(file))
        .filter(code_changes::created_at.ge(since))
        .select((
            code_changes::id,
            code_changes::ai_id,
            code_changes::lines,
            code_changes::symbols,
            code_changes::created_at,
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|(id, ai_id, lines, symbols, at)| {
            Ok(RecentChange {
                id,
                ai_id,
                lines: serde_json::from_str(&lines).map_err(|_| unreadable())?,
                symbols: serde_json::from_str(&symbols).map_err(|_| unreadable())?,
                at,
            })
        })
        .collect()
}

/// Handshake events read per query while looking back for the last review.
const REVIEW_PAGE: i64 = 200;

/// `driver`'s work since the session's last review (the last handshake step that
/// `handshake::ends_review`, or the session's start), as the ledger has it.
pub fn unreviewed_work(
    conn: &mut DbConn,
    session_id: Uuid,
    driver: &str,
) -> Result<Unreviewed, HubError> {
    let sid = session_id.to_string();
    let mut boundary = 0;
    let mut before = i64::MAX;
    'scan: loop {
        let page: Vec<(i64, String)> = events::table
            .filter(events::session_id.eq(&sid))
            .filter(events::kind.eq(HANDSHAKE_EVENT))
            .filter(events::id.lt(before))
            .order(events::id.desc())
            .limit(REVIEW_PAGE)
            .select((events::id, events::payload))
            .load(conn)?;
        for (id, payload) in &page {
            let payload = decode_payload(payload)
                .map_err(|e| HubError::Internal(format!("event {id} is unreadable: {e}")))?;
            if ends_review(&payload) {
                boundary = *id;
                break 'scan;
            }
        }
        match page.last() {
            Some((oldest, _)) if page.len() as i64 == REVIEW_PAGE => before = *oldest,
            _ => break,
        }
    }
    let rows: Vec<(String, String)> = code_changes::table
        .filter(code_changes::session_id.eq(&sid))
        .filter(code_changes::ai_id.eq(driver))
        .filter(code_changes::id.gt(boundary))
        .select((code_changes::file_path, code_changes::lines))
        .load(conn)?;
    let mut work = Unreviewed::default();
    for (file, lines) in rows {
        let ranges: Vec<(u32, u32)> = serde_json::from_str(&lines).map_err(|_| unreadable())?;
        work.add(&file, &ranges);
    }
    Ok(work)
}

/// Changes oldest first after `since` (or the newest `limit` without it).
pub fn list_changes(
    conn: &mut DbConn,
    session_id: Uuid,
    q: &ChangeQuery,
) -> Result<Vec<ChangeView>, HubError> {
    let mut query = code_changes::table
        .filter(code_changes::session_id.eq(session_id.to_string()))
        .select((
            code_changes::id,
            code_changes::ai_id,
            code_changes::co_author,
            code_changes::operation,
            code_changes::file_path,
            code_changes::new_path,
            code_changes::diff,
            code_changes::lines,
            code_changes::symbols,
            code_changes::reason,
            code_changes::created_at,
            code_changes::task_id,
        ))
        .into_boxed();
    if let Some(f) = &q.file {
        query = query.filter(
            code_changes::file_path
                .eq(f.clone())
                .or(code_changes::new_path.eq(f.clone())),
        );
    }
    if let Some(a) = &q.ai_id {
        query = query.filter(code_changes::ai_id.eq(a.clone()));
    }
    let mut rows: Vec<ChangeRow> = match q.since {
        Some(after) => query
            .filter(code_changes::id.gt(after))
            .order(code_changes::id.asc())
            .limit(q.limit)
            .load(conn)?,
        None => {
            let mut rows: Vec<ChangeRow> = query
                .order(code_changes::id.desc())
                .limit(q.limit)
                .load(conn)?;
            rows.reverse();
            rows
        }
    };
    rows.drain(..)
        .map(
            |(
                id,
                ai_id,
                co_author,
                op,
                file_path,
                new_path,
                diff,
                lines,
                symbols,
                reason,
                at,
                task_id,
            )| {
                Ok(ChangeView {
                    id,
                    ai_id,
                    co_author,
                    operation: Operation::parse(&op).ok_or_else(unreadable)?,
                    file_path,
                    new_path,
                    diff: if q.with_diff { diff } else { None },
                    lines: serde_json::from_str(&lines).map_err(|_| unreadable())?,
                    symbols: serde_json::from_str(&symbols).map_err(|_| unreadable())?,
                    reason,
                    task_id,
                    at: at.and_utc(),
                })
            },
        )
        .collect()
}
