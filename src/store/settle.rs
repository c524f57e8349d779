//! The events that may have settled a session's kept critical alerts (`domain::settle`), read
//! when the session loads so that an alert its reader already acted on does not lead again
//! after a restart.

use std::collections::VecDeque;

use diesel::prelude::*;
use uuid::Uuid;

use super::DbConn;
use super::models::EventRow;
use super::schema::{events, messages};
use crate::domain::event::Event;
use crate::domain::handshake::HANDSHAKE_EVENT;
use crate::domain::message::MESSAGE_SENT;
use crate::error::HubError;

/// Most handshake steps read after the oldest kept alert (the newest ones).
const MAX_STEPS: i64 = 2000;

/// Events after the oldest of `alerts` that may settle one: handshake steps, and replies to the
/// alerts that are messages. Oldest first.
pub fn settling(
    conn: &mut DbConn,
    session_id: Uuid,
    alerts: &VecDeque<Event>,
) -> Result<Vec<Event>, HubError> {
    let Some(oldest) = alerts.front().map(|e| e.id) else {
        return Ok(Vec::new());
    };
    let sid = session_id.to_string();
    let mut rows: Vec<EventRow> = events::table
        .filter(events::session_id.eq(&sid))
        .filter(events::kind.eq(HANDSHAKE_EVENT))
        .filter(events::id.gt(oldest))
        .order(events::id.desc())
        .limit(MAX_STEPS)
        .select(EventRow::as_select())
        .load(conn)?;
    let asked: Vec<i64> = alerts
        .iter()
        .filter(|e| e.kind == MESSAGE_SENT)
        .map(|e| e.id)
        .collect();
    if !asked.is_empty() {
        let replies: Vec<i64> = messages::table
            .filter(messages::session_id.eq(&sid))
            .filter(messages::reply_to.eq_any(asked))
            .select(messages::id)
            .load(conn)?;
        if !replies.is_empty() {
            rows.extend(
                events::table
                    .filter(events::session_id.eq(&sid))
                    .filter(events::id.eq_any(replies))
                    .select(EventRow::as_select())
                    .load::<EventRow>(conn)?,
            );
        }
    }
    let mut events = rows
        .into_iter()
        .map(EventRow::into_event)
        .collect::<Result<Vec<_>, _>>()?;
    events.sort_by_key(|e| e.id);
    Ok(events)
}
