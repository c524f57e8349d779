//! MCP sessions as rows (`mcp_sessions`), so that an `Mcp-Session-Id` outlives the process that
//! handed it out: after a restart the registry finds the row and serves the request as if
//! nothing happened. What a row holds is the registry's business (`mcp::registry::Persisted`);
//! here it is an opaque JSON text with a revision and the name of its last writer (a copy held
//! by one hub's registry).

use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;

use super::DbConn;
use super::schema::mcp_sessions;
use crate::error::HubError;

/// What became of a write of an MCP session's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// The row now holds this revision.
    Written,
    /// The row already holds this revision or a later one, written by the same writer (its
    /// writes may reach the database out of order): nothing is lost, the later one holds this
    /// one's change too.
    Superseded,
    /// Another writer (another hub, or an earlier life of this one) wrote a revision since this
    /// writer read the row: what it holds in memory is stale, and this write is not applied.
    Moved,
    /// The row is gone: the session was ended (here or on another hub) or swept as idle.
    Gone,
}

/// Writes the first revision of a new MCP session `id`, by `writer`.
pub fn create(conn: &mut DbConn, id: &str, state: &str, writer: &str) -> Result<(), HubError> {
    let now = Utc::now().naive_utc();
    diesel::insert_into(mcp_sessions::table)
        .values((
            mcp_sessions::id.eq(id),
            mcp_sessions::state.eq(state),
            mcp_sessions::rev.eq(1),
            mcp_sessions::writer.eq(writer),
            mcp_sessions::created_at.eq(now),
            mcp_sessions::last_seen_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Writes `state` as revision `rev` of MCP session `id`, by `writer`, which read the row at
/// revision `base` (0: it created it). Applied only if the row holds an earlier revision, and
/// that revision is either the writer's own or one it had read: a write never overwrites a
/// revision another writer made since (one statement, so two hubs cannot both pass the check).
pub fn save(
    conn: &mut DbConn,
    id: &str,
    state: &str,
    rev: i64,
    writer: &str,
    base: i64,
) -> Result<Saved, HubError> {
    let now = Utc::now().naive_utc();
    let written = diesel::update(
        mcp_sessions::table
            .find(id)
            .filter(mcp_sessions::rev.lt(rev))
            .filter(
                mcp_sessions::writer
                    .eq(writer)
                    .or(mcp_sessions::rev.le(base)),
            ),
    )
    .set((
        mcp_sessions::state.eq(state),
        mcp_sessions::rev.eq(rev),
        mcp_sessions::writer.eq(writer),
        mcp_sessions::last_seen_at.eq(now),
    ))
    .execute(conn)?;
    if written > 0 {
        return Ok(Saved::Written);
    }
    let stored: Option<String> = mcp_sessions::table
        .find(id)
        .select(mcp_sessions::writer)
        .first(conn)
        .optional()?;
    Ok(match stored {
        None => Saved::Gone,
        Some(w) if w == writer => Saved::Superseded,
        Some(_) => Saved::Moved,
    })
}

/// A stored MCP session: its state, revision and last writer.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct Stored {
    pub state: String,
    pub rev: i64,
    pub writer: String,
}

/// The stored MCP session `id`, if it exists and was seen since `fresh`.
pub fn load(conn: &mut DbConn, id: &str, fresh: NaiveDateTime) -> Result<Option<Stored>, HubError> {
    Ok(mcp_sessions::table
        .find(id)
        .filter(mcp_sessions::last_seen_at.ge(fresh))
        .select((mcp_sessions::state, mcp_sessions::rev, mcp_sessions::writer))
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
