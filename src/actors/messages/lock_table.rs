//! Between the session actors and their project's lock table (not a transport's business).
//!
//! The table decides and reserves; the session writes. A session asks the table (which answers
//! at once, never waiting on anyone), commits the rows and events in its own log, then `Settle`s
//! with the table: committed, or not. Until then the table counts the reservation in every
//! decision (a lock may look held a moment longer than it is, never shorter). Grants for waiters
//! and lease expiries go the other way: the table tells the holder's session (`GrantLocks`,
//! `ExpireLocks`), which writes them and settles the same way.

#[allow(unused_imports)]
use super::imports::*;
use crate::domain::lock::{Release, Request};

/// Take (or queue for) a checked request: the table gives it the project's next id.
#[derive(Debug, Message)]
#[rtype(result = "Result<Reserved, HubError>")]
pub struct ReserveLock {
    pub request: Request,
    /// The session's name, for refusals others get.
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct Reserved {
    pub lock: Lock,
    /// Queued: the locks ahead of it.
    pub behind: Vec<i64>,
}

/// Which of a session's locks to release.
#[derive(Debug, Clone)]
pub enum Select {
    /// One lock, by its holder (released, or cancelled while queued) or, with `force`, by
    /// someone the session allows to force (`may_force`: the driver, the operator).
    One {
        id: i64,
        by: Option<String>,
        force: bool,
        may_force: bool,
    },
    /// Everything a participant holds or awaits (it left).
    Holder(String),
    /// Everything these participants hold or await (gone past the grace period).
    Gone(Vec<String>),
    /// The locks taken for these tasks (they completed).
    Tasks(Vec<i64>),
    /// These locks, if their lease has run out.
    Expired(Vec<i64>),
    /// All of the session's locks (it completed).
    Session,
}

/// Plan the release of `select` in `session`: what to write.
#[derive(Debug, Message)]
#[rtype(result = "Result<ReleasePlan, HubError>")]
pub struct PlanRelease {
    pub session: Uuid,
    pub select: Select,
}

/// Locks to release and the session's own waiters granted with them (tokens reserved), written
/// in one transaction by the session. Waiters of other sessions are granted once it settles.
#[derive(Debug, Clone, Default)]
pub struct ReleasePlan {
    pub released: Vec<Releasing>,
    pub grants: Vec<Lock>,
}

/// A lock on its way out: as its session last wrote it (a grant not written yet is still
/// waiting), why, and the project sequence number of this release (so one order covers every
/// acquire, grant and release of the project, whichever session's log holds them).
#[derive(Debug, Clone)]
pub struct Releasing {
    pub lock: Lock,
    pub why: Release,
    pub seq: i64,
}

/// Extend a held lease.
#[derive(Debug, Message)]
#[rtype(result = "Result<Lock, HubError>")]
pub struct RenewInTable {
    pub session: Uuid,
    pub holder: String,
    pub id: i64,
    pub lease_secs: u32,
}

/// Before a change to `file` is recorded: is `token` (if given) a current fencing token of the
/// author's, and who else holds an exclusive lock covering the file?
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Covering>, HubError>")]
pub struct FenceCheck {
    pub session: Uuid,
    pub holder: String,
    pub file: String,
    pub token: Option<i64>,
}

/// Someone else's exclusive lock over a file.
#[derive(Debug, Clone)]
pub struct Covering {
    pub holder: String,
    /// The holder works in the asking session (else in a sibling session of the project).
    pub same_session: bool,
    /// The holder as people read it (`claude`, or `claude of session 'fix' (id)`).
    pub who: String,
    pub resource: String,
}

/// Every lock of the project, held or waiting (committed ones only).
#[derive(Debug, Message)]
#[rtype(result = "Vec<Lock>")]
pub struct ProjectLocks;

/// The participants of `session` that hold or await a lock.
#[derive(Debug, Message)]
#[rtype(result = "Vec<String>")]
pub struct HoldersIn(pub Uuid);

/// How a session's write of a plan went.
#[derive(Debug, Message, Default)]
#[rtype(result = "()")]
pub struct Settle {
    pub session: Uuid,
    pub committed: bool,
    /// A reserved acquire.
    pub acquired: Vec<i64>,
    pub released: Vec<i64>,
    pub granted: Vec<i64>,
    /// Grants whose request was no longer waiting (cancelled or its holder left first).
    pub gone: Vec<i64>,
}

/// From the table: these waiters of the session are granted (tokens reserved); write them,
/// and settle with `table` (the session may not know its table yet, if it cannot load).
#[derive(Message)]
#[rtype(result = "()")]
pub struct GrantLocks {
    pub grants: Vec<Lock>,
    pub table: actix::Addr<crate::actors::lock_table::LockTableActor>,
}

/// From the table: these leases have run out; release them.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ExpireLocks(pub Vec<i64>);
