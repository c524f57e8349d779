//! Statements for locks (leases), for both backends. A row is a request: waiting, held, or
//! released (kept as history).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use uuid::Uuid;

use super::DbConn;
use super::schema::locks;
use crate::domain::lock::{Lock, Mode, Release, Request, Resource, State};
use crate::error::HubError;

pub fn insert_request(
    conn: &mut DbConn,
    session_id: Uuid,
    id: i64,
    r: &Request,
    granted: bool,
    at: NaiveDateTime,
) -> Result<(), HubError> {
    diesel::insert_into(locks::table)
        .values((
            locks::session_id.eq(session_id.to_string()),
            locks::id.eq(id),
            locks::resource.eq(r.resource.to_string()),
            locks::holder.eq(&r.holder),
            locks::mode.eq(r.mode.as_str()),
            locks::operation.eq(&r.operation),
            locks::state.eq(if granted { "held" } else { "waiting" }),
            locks::lease_secs.eq(i32::try_from(r.lease_secs).unwrap_or(i32::MAX)),
            locks::fencing_token.eq(granted.then_some(id)),
            locks::requested_at.eq(at),
            locks::task_id.eq(r.task_id),
            locks::expires_at
                .eq(granted.then(|| at + chrono::TimeDelta::seconds(i64::from(r.lease_secs)))),
        ))
        .execute(conn)?;
    Ok(())
}

/// A waiter is granted: held from `at` with `token`.
pub fn set_held(
    conn: &mut DbConn,
    session_id: Uuid,
    id: i64,
    token: i64,
    expires_at: NaiveDateTime,
) -> Result<(), HubError> {
    diesel::update(locks::table.find((session_id.to_string(), id)))
        .set((
            locks::state.eq("held"),
            locks::fencing_token.eq(Some(token)),
            locks::expires_at.eq(Some(expires_at)),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn renew(
    conn: &mut DbConn,
    session_id: Uuid,
    id: i64,
    lease_secs: u32,
    expires_at: NaiveDateTime,
) -> Result<(), HubError> {
    diesel::update(locks::table.find((session_id.to_string(), id)))
        .set((
            locks::lease_secs.eq(i32::try_from(lease_secs).unwrap_or(i32::MAX)),
            locks::expires_at.eq(Some(expires_at)),
        ))
        .execute(conn)?;
    Ok(())
}

fn reason_text(r: Release) -> &'static str {
    match r {
        Release::Released => "released",
        Release::Expired => "expired",
        Release::Left => "left",
        Release::Forced => "forced",
        Release::Cancelled => "cancelled",
        Release::TaskDone => "task_done",
        Release::Disconnected => "disconnected",
    }
}

pub fn release(
    conn: &mut DbConn,
    session_id: Uuid,
    id: i64,
    reason: Release,
    at: NaiveDateTime,
) -> Result<(), HubError> {
    diesel::update(locks::table.find((session_id.to_string(), id)))
        .set((
            locks::state.eq("released"),
            locks::released_at.eq(Some(at)),
            locks::release_reason.eq(Some(reason_text(reason))),
        ))
        .execute(conn)?;
    Ok(())
}

type LockRow = (
    i64,
    String,
    String,
    String,
    Option<String>,
    String,
    i32,
    Option<i64>,
    Option<NaiveDateTime>,
    Option<i64>,
);

/// The locks held or waiting, for a session being loaded.
pub fn open_locks(conn: &mut DbConn, session_id: Uuid) -> Result<Vec<Lock>, HubError> {
    let rows: Vec<LockRow> = locks::table
        .filter(locks::session_id.eq(session_id.to_string()))
        .filter(locks::state.ne("released"))
        .order(locks::id.asc())
        .select((
            locks::id,
            locks::resource,
            locks::holder,
            locks::mode,
            locks::operation,
            locks::state,
            locks::lease_secs,
            locks::fencing_token,
            locks::expires_at,
            locks::task_id,
        ))
        .load(conn)?;
    let bad = |what: &str| HubError::Internal(format!("a stored lock's {what} is unreadable"));
    rows.into_iter()
        .map(
            |(id, resource, holder, mode, operation, state, lease, token, expires_at, task_id)| {
                Ok(Lock {
                    id,
                    resource: Resource::parse(&resource).map_err(|_| bad("resource"))?,
                    holder,
                    mode: match mode.as_str() {
                        "shared" => Mode::Shared,
                        "exclusive" => Mode::Exclusive,
                        _ => return Err(bad("mode")),
                    },
                    operation,
                    state: if state == "held" {
                        State::Held
                    } else {
                        State::Waiting
                    },
                    lease_secs: u32::try_from(lease).map_err(|_| bad("lease"))?,
                    token,
                    task_id,
                    expires_at,
                })
            },
        )
        .collect()
}
