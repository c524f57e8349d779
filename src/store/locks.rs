//! Statements for locks (leases), for both backends. A row is a request: waiting, held, or
//! released (kept as history).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use uuid::Uuid;

use super::DbConn;
use super::queries::append_event_with;
use super::schema::locks;
use crate::domain::event::{Event, NewEvent};
use crate::domain::lock::{Lock, Mode, Release, Request, Resource, State};
use crate::error::HubError;

/// A request's row as first written: waiting, or held from `requested_at` (its id its token).
/// Built once, so that the single write (`append_request`) and the batched one
/// (`event_writes::write_many`) store the same thing.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = locks)]
pub struct RequestRow {
    pub session_id: String,
    pub id: i64,
    pub resource: String,
    pub holder: String,
    pub mode: &'static str,
    pub operation: Option<String>,
    pub state: &'static str,
    pub lease_secs: i32,
    pub fencing_token: Option<i64>,
    pub requested_at: NaiveDateTime,
    pub task_id: Option<i64>,
    pub expires_at: Option<NaiveDateTime>,
}

impl RequestRow {
    pub fn new(session_id: Uuid, id: i64, r: &Request, granted: bool, at: NaiveDateTime) -> Self {
        RequestRow {
            session_id: session_id.to_string(),
            id,
            resource: r.resource.to_string(),
            holder: r.holder.clone(),
            mode: r.mode.as_str(),
            operation: r.operation.clone(),
            state: if granted { "held" } else { "waiting" },
            lease_secs: i32::try_from(r.lease_secs).unwrap_or(i32::MAX),
            fencing_token: granted.then_some(id),
            requested_at: at,
            task_id: r.task_id,
            expires_at: granted.then(|| at + chrono::TimeDelta::seconds(i64::from(r.lease_secs))),
        }
    }
}

/// Appends `event` (the request's `lock_queued` or `resource_locked`) with the request's row,
/// waiting or held from `at`: one round trip on PostgreSQL.
pub fn append_request(
    conn: &mut DbConn,
    session_id: Uuid,
    event: &NewEvent,
    id: i64,
    r: &Request,
    granted: bool,
    at: NaiveDateTime,
) -> Result<Event, HubError> {
    use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamp};
    let row = RequestRow::new(session_id, id, r, granted, at);
    let bound = row.clone();
    append_event_with(
        conn,
        session_id,
        event,
        at,
        ", l AS (INSERT INTO locks (session_id, id, resource, holder, mode, operation, state, \
                 lease_secs, fencing_token, requested_at, task_id, expires_at) \
                 SELECT $2, $8, $9, $10, $11, $12, $13, $14, $15, $1, $16, $17 FROM e)",
        |q| {
            q.bind::<BigInt, _>(bound.id)
                .bind::<Text, _>(bound.resource)
                .bind::<Text, _>(bound.holder)
                .bind::<Text, _>(bound.mode)
                .bind::<Nullable<Text>, _>(bound.operation)
                .bind::<Text, _>(bound.state)
                .bind::<Integer, _>(bound.lease_secs)
                .bind::<Nullable<BigInt>, _>(bound.fencing_token)
                .bind::<Nullable<BigInt>, _>(bound.task_id)
                .bind::<Nullable<Timestamp>, _>(bound.expires_at)
        },
        |c, _| {
            diesel::insert_into(locks::table).values(&row).execute(c)?;
            Ok(())
        },
    )
}

/// A waiter is granted: held from `at` with `token`. False when it is no longer waiting (it
/// was cancelled, or its holder left, before the grant reached its session).
pub fn set_held(
    conn: &mut DbConn,
    session_id: Uuid,
    id: i64,
    token: i64,
    expires_at: NaiveDateTime,
) -> Result<bool, HubError> {
    let n = diesel::update(
        locks::table
            .find((session_id.to_string(), id))
            .filter(locks::state.eq("waiting")),
    )
    .set((
        locks::state.eq("held"),
        locks::fencing_token.eq(Some(token)),
        locks::expires_at.eq(Some(expires_at)),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Appends `event` (`lock_renewed`) with the new lease on the lock's row: one round trip on
/// PostgreSQL.
pub fn append_renewal(
    conn: &mut DbConn,
    session_id: Uuid,
    event: &NewEvent,
    id: i64,
    lease_secs: u32,
    expires_at: NaiveDateTime,
    at: NaiveDateTime,
) -> Result<Event, HubError> {
    use diesel::sql_types::{BigInt, Integer, Timestamp};
    let secs = i32::try_from(lease_secs).unwrap_or(i32::MAX);
    append_event_with(
        conn,
        session_id,
        event,
        at,
        ", l AS (UPDATE locks SET lease_secs = $9, expires_at = $10 \
                 WHERE session_id = $2 AND id = $8)",
        |q| {
            q.bind::<BigInt, _>(id)
                .bind::<Integer, _>(secs)
                .bind::<Timestamp, _>(expires_at)
        },
        |c, _| {
            diesel::update(locks::table.find((session_id.to_string(), id)))
                .set((
                    locks::lease_secs.eq(secs),
                    locks::expires_at.eq(Some(expires_at)),
                ))
                .execute(c)?;
            Ok(())
        },
    )
}

pub(super) fn reason_text(r: Release) -> &'static str {
    match r {
        Release::Released => "released",
        Release::Expired => "expired",
        Release::Left => "left",
        Release::Forced => "forced",
        Release::Cancelled => "cancelled",
        Release::TaskDone => "task_done",
        Release::Disconnected => "disconnected",
        Release::SessionEnded => "session_ended",
    }
}

/// Appends `event` (`resource_released`) and marks the lock's row released for `reason`: one
/// round trip on PostgreSQL.
pub fn append_release(
    conn: &mut DbConn,
    session_id: Uuid,
    event: &NewEvent,
    id: i64,
    reason: Release,
    at: NaiveDateTime,
) -> Result<Event, HubError> {
    use diesel::sql_types::{BigInt, Text};
    append_event_with(
        conn,
        session_id,
        event,
        at,
        ", l AS (UPDATE locks SET state = 'released', released_at = $1, release_reason = $9 \
                 WHERE session_id = $2 AND id = $8)",
        |q| q.bind::<BigInt, _>(id).bind::<Text, _>(reason_text(reason)),
        |c, _| {
            diesel::update(locks::table.find((session_id.to_string(), id)))
                .set((
                    locks::state.eq("released"),
                    locks::released_at.eq(Some(at)),
                    locks::release_reason.eq(Some(reason_text(reason))),
                ))
                .execute(c)?;
            Ok(())
        },
    )
}

type LockRow = (
    String,
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

/// What a project's lock table starts from.
pub struct ProjectLocks {
    /// Held or waiting, from every session of the project.
    pub locks: Vec<Lock>,
    /// The largest lock id or fencing token ever given in the project (released ones too).
    pub last_seq: i64,
    /// The names of the sessions those locks belong to.
    pub labels: Vec<(Uuid, String)>,
}

/// The locks of every session of `project` that are held or waiting, for its lock table.
pub fn load_project(conn: &mut DbConn, project: &str) -> Result<ProjectLocks, HubError> {
    use super::schema::sessions;
    let of_project = || {
        sessions::table
            .filter(sessions::project.eq(project.to_owned()))
            .select(sessions::id)
    };
    let rows: Vec<LockRow> = locks::table
        .filter(locks::session_id.eq_any(of_project()))
        .filter(locks::state.ne("released"))
        .order((locks::id.asc(), locks::session_id.asc()))
        .select((
            locks::session_id,
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
    let max_id: Option<i64> = locks::table
        .filter(locks::session_id.eq_any(of_project()))
        .select(diesel::dsl::max(locks::id))
        .first(conn)?;
    let max_token: Option<i64> = locks::table
        .filter(locks::session_id.eq_any(of_project()))
        .select(diesel::dsl::max(locks::fencing_token))
        .first(conn)?;
    // A release takes a sequence number too, kept only in its event: without it a table
    // loaded after its last decision was a release (a restart, a takeover by another hub)
    // would hand that number out again.
    let max_release = last_release_seq(conn, project)?;
    let locks = rows
        .into_iter()
        .map(read_row)
        .collect::<Result<Vec<_>, _>>()?;
    let mut ids: Vec<String> = locks.iter().map(|l| l.session_id.to_string()).collect();
    ids.sort();
    ids.dedup();
    let labels: Vec<(String, String)> = sessions::table
        .filter(sessions::id.eq_any(ids))
        .select((sessions::id, sessions::name))
        .load(conn)?;
    Ok(ProjectLocks {
        locks,
        last_seq: max_id
            .unwrap_or(0)
            .max(max_token.unwrap_or(0))
            .max(max_release.unwrap_or(0)),
        labels: labels
            .into_iter()
            .filter_map(|(id, name)| Some((id.parse().ok()?, name)))
            .collect(),
    })
}

#[derive(diesel::QueryableByName)]
struct Seq {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    seq: Option<i64>,
}

/// The largest `seq` of a `resource_released` event in the project.
fn last_release_seq(conn: &mut DbConn, project: &str) -> Result<Option<i64>, HubError> {
    use diesel::sql_types::Text;
    const OF_PROJECT: &str = "FROM events WHERE kind = 'resource_released'
          AND session_id IN (SELECT id FROM sessions WHERE project = $1)";
    let found = match conn {
        DbConn::Pg(c) => diesel::sql_query(format!(
            "SELECT max((payload::jsonb ->> 'seq')::bigint) AS seq {OF_PROJECT}"
        ))
        .bind::<Text, _>(project)
        .get_result::<Seq>(c)?,
        DbConn::Sqlite(c) => diesel::sql_query(format!(
            "SELECT max(CAST(json_extract(payload, '$.seq') AS INTEGER)) AS seq {OF_PROJECT}"
        ))
        .bind::<Text, _>(project)
        .get_result::<Seq>(c)?,
    };
    Ok(found.seq)
}

fn read_row(row: LockRow) -> Result<Lock, HubError> {
    let (session, id, resource, holder, mode, operation, state, lease, token, expires_at, task_id) =
        row;
    let bad = |what: &str| HubError::Internal(format!("a stored lock's {what} is unreadable"));
    Ok(Lock {
        id,
        session_id: session.parse().map_err(|_| bad("session"))?,
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
}
