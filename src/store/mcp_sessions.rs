//! MCP sessions as rows (`mcp_sessions`), so that an `Mcp-Session-Id` outlives the process that
//! handed it out: after a restart the registry finds the row and serves the request as if
//! nothing happened. What a row holds is the registry's business (`mcp::registry::Persisted`);
//! here it is an opaque JSON text with a revision.

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;

use super::DbConn;
use super::schema::mcp_sessions;
use crate::error::HubError;

/// Writes `state` as revision `rev` of MCP session `id`, unless the row already holds that
/// revision or a later one (updates may reach the writer out of order).
pub fn save(conn: &mut DbConn, id: &str, state: &str, rev: i64) -> Result<(), HubError> {
    let now = Utc::now().naive_utc();
    let stored: Option<i64> = mcp_sessions::table
        .find(id)
        .select(mcp_sessions::rev)
        .first(conn)
        .optional()?;
    match stored {
        None => {
            diesel::insert_into(mcp_sessions::table)
                .values((
                    mcp_sessions::id.eq(id),
                    mcp_sessions::state.eq(state),
                    mcp_sessions::rev.eq(rev),
                    mcp_sessions::created_at.eq(now),
                    mcp_sessions::last_seen_at.eq(now),
                ))
                .execute(conn)?;
        }
        Some(r) if r < rev => {
            diesel::update(mcp_sessions::table.find(id))
                .set((
                    mcp_sessions::state.eq(state),
                    mcp_sessions::rev.eq(rev),
                    mcp_sessions::last_seen_at.eq(now),
                ))
                .execute(conn)?;
        }
        Some(_) => {}
    }
    Ok(())
}

/// The stored state and revision of MCP session `id`, if it exists and was seen since `fresh`.
pub fn load(
    conn: &mut DbConn,
    id: &str,
    fresh: NaiveDateTime,
) -> Result<Option<(String, i64)>, HubError> {
    Ok(mcp_sessions::table
        .find(id)
        .filter(mcp_sessions::last_seen_at.ge(fresh))
        .select((mcp_sessions::state, mcp_sessions::rev))
        .first(conn)
        .optional()?)
}

/// Deletes MCP sessions (ended, or made room for).
pub fn delete(conn: &mut DbConn, ids: &[String]) -> Result<(), HubError> {
    if !ids.is_empty() {
        diesel::delete(mcp_sessions::table.filter(mcp_sessions::id.eq_any(ids))).execute(conn)?;
    }
    Ok(())
}

/// Marks `ids` as seen now and deletes every session unseen since `stale` (on any hub).
pub fn sweep(conn: &mut DbConn, ids: &[String], stale: NaiveDateTime) -> Result<usize, HubError> {
    let now = Utc::now().naive_utc();
    for chunk in ids.chunks(500) {
        diesel::update(mcp_sessions::table.filter(mcp_sessions::id.eq_any(chunk)))
            .set(mcp_sessions::last_seen_at.eq(now))
            .execute(conn)?;
    }
    Ok(
        diesel::delete(mcp_sessions::table.filter(mcp_sessions::last_seen_at.lt(stale)))
            .execute(conn)?,
    )
}
