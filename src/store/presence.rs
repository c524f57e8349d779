//! Each participant's presence as last announced (`presence_changed`), kept with the event that
//! announces it, so that a session loaded again (after a restart, or after it was let go while
//! idle) starts from what it last said. Without it a loaded session assumed everyone idle and,
//! one grace period later, announced the participants who had long been gone as gone again:
//! one event per participant and load, which every agent's stream carried.
//!
//! A backup carries it: it could be read back from each participant's last `presence_changed`,
//! but a compacted session's events are gone (`store::retention`). A session restored from a
//! backup written before it existed gives everyone a grace period at its first load.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use uuid::Uuid;

use super::DbConn;
use super::schema::presence;
use crate::domain::presence::Presence;
use crate::error::HubError;

/// A participant's presence as last announced, and when it was last heard from then.
#[derive(Debug, Clone, PartialEq)]
pub struct Announced {
    pub state: Presence,
    pub last_seen: Option<NaiveDateTime>,
}

/// Records what was just announced (with the events, in their transaction).
pub fn record(
    conn: &mut DbConn,
    session: Uuid,
    announced: &[(String, Announced)],
) -> QueryResult<()> {
    if announced.is_empty() {
        return Ok(());
    }
    let sid = session.to_string();
    let ids: Vec<&str> = announced.iter().map(|(ai, _)| ai.as_str()).collect();
    diesel::delete(
        presence::table
            .filter(presence::session_id.eq(&sid))
            .filter(presence::ai_id.eq_any(&ids)),
    )
    .execute(conn)?;
    // One insert per participant: a change rarely names more than one, and a batch insert does
    // not build for both backends at once.
    for (ai, a) in announced {
        diesel::insert_into(presence::table)
            .values((
                presence::session_id.eq(&sid),
                presence::ai_id.eq(ai.as_str()),
                presence::state.eq(a.state.as_str()),
                presence::last_seen.eq(a.last_seen),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// What was last announced of each participant of `session` (none for one never announced).
pub fn last_announced(
    conn: &mut DbConn,
    session: Uuid,
) -> Result<HashMap<String, Announced>, HubError> {
    let rows: Vec<(String, String, Option<NaiveDateTime>)> = presence::table
        .filter(presence::session_id.eq(session.to_string()))
        .select((presence::ai_id, presence::state, presence::last_seen))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(ai, state, last_seen)| {
            let state = Presence::parse(&state)?;
            Some((ai, Announced { state, last_seen }))
        })
        .collect())
}
