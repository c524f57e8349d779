//! Who may lock what in a session, as plain rules (the lock table's own conflict and queue
//! rules are in `lock`): the session is open, the holder is an active participant, observers
//! take shared (read) locks only, and an operation note is short. (A lock tied to a task is the
//! task's assignee's: `task_rules::check_task_lock`, with the task from the task coordinator.)

use serde_json::Value;

use super::DomainError;
use super::auth::Caller;
use chrono::NaiveDateTime;

use super::event::{NewEvent, Priority};
use super::lock::{
    LOCK_QUEUED, Lock, Mode, RESOURCE_LOCKED, RESOURCE_RELEASED, Release, Request, Resource, State,
    parse_lease,
};
use super::role::Role;
use super::session::Session;

/// Longest operation note on a lock, in characters.
pub const MAX_OPERATION_CHARS: usize = 200;

/// A lock request as asked (the transport's fields, not yet checked).
#[derive(Debug, Clone, PartialEq)]
pub struct LockAsk {
    pub resource: String,
    pub operation: Option<String>,
    pub duration: Option<Value>,
    pub mode: Mode,
    pub wait: bool,
    pub task_id: Option<i64>,
}

impl Session {
    /// The participant a lock command acts for: an active participant of an open session (the
    /// operator must name one).
    pub fn lock_holder(&self, caller: &Caller) -> Result<(String, Role), DomainError> {
        let Caller::Participant(who) = caller else {
            return Err(DomainError::invalid(
                "aiId",
                "name the participant the lock is for",
            ));
        };
        self.check_open("locks")?;
        Ok((who.clone(), self.active(who)?.role))
    }

    /// Checks `ask` for `caller` against the session's rules: the request it becomes. Whether
    /// it is granted, queued or refused is the project's lock table's to say.
    pub fn check_lock(&self, caller: &Caller, ask: LockAsk) -> Result<Request, DomainError> {
        let (holder, role) = self.lock_holder(caller)?;
        self.check_writable("new locks")?;
        if role == Role::Observer && ask.mode == Mode::Exclusive {
            return Err(DomainError::Forbidden(format!(
                "{holder} is an observer: it may take shared (read) locks only"
            )));
        }
        if ask
            .operation
            .as_ref()
            .is_some_and(|o| o.chars().count() > MAX_OPERATION_CHARS)
        {
            return Err(DomainError::invalid(
                "operation",
                format!("at most {MAX_OPERATION_CHARS} characters"),
            ));
        }
        Ok(Request {
            session_id: self.id,
            resource: Resource::parse(&ask.resource)?,
            holder,
            mode: ask.mode,
            operation: ask.operation,
            lease_secs: parse_lease(ask.duration.as_ref())?,
            wait: ask.wait,
            task_id: ask.task_id,
        })
    }
}

/// What the lock events carry, typed: the actor writes these and nothing else.
mod payloads {
    use chrono::{DateTime, Utc};
    use serde::Serialize;

    use crate::domain::lock::{Mode, Release};

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Locked<'a> {
        pub lock_id: i64,
        /// The fencing token: the lock's id when granted as asked.
        pub token: i64,
        pub by: &'a str,
        pub resource: String,
        pub mode: Mode,
        pub operation: &'a Option<String>,
        pub until: DateTime<Utc>,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Queued<'a> {
        pub lock_id: i64,
        pub by: &'a str,
        pub resource: String,
        pub mode: Mode,
        pub operation: &'a Option<String>,
        pub behind: &'a [i64],
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Released<'a> {
        pub lock_id: i64,
        /// The project's sequence number of this release (ids and tokens share it).
        pub seq: i64,
        pub by: &'a str,
        pub resource: String,
        pub reason: Release,
        pub was_held: bool,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct Renewed {
        pub lock_id: i64,
        pub resource: String,
        pub until: DateTime<Utc>,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ForceReleased<'a> {
        pub lock_id: i64,
        pub resource: String,
        pub by: Option<&'a str>,
        pub summary: String,
    }
}

fn event(
    kind: &'static str,
    actor: Option<String>,
    priority: Priority,
    payload: impl serde::Serialize,
    to: Option<String>,
) -> NewEvent {
    NewEvent {
        kind,
        actor,
        priority,
        payload: serde_json::to_value(payload).unwrap_or(Value::Null),
        to,
    }
}

fn lease_end(at: NaiveDateTime, lease_secs: u32) -> NaiveDateTime {
    at + chrono::TimeDelta::seconds(i64::from(lease_secs))
}

/// `resource_locked`: a lock granted at `at` with its fencing token.
pub fn locked_event(l: &Lock, at: NaiveDateTime) -> NewEvent {
    let payload = payloads::Locked {
        lock_id: l.id,
        token: l.token.unwrap_or(l.id),
        by: &l.holder,
        resource: l.resource.to_string(),
        mode: l.mode,
        operation: &l.operation,
        until: lease_end(at, l.lease_secs).and_utc(),
    };
    event(
        RESOURCE_LOCKED,
        Some(l.holder.clone()),
        Priority::Important,
        payload,
        None,
    )
}

/// `lock_queued`: request `id` waiting behind `behind`.
pub fn queued_event(r: &Request, id: i64, behind: &[i64]) -> NewEvent {
    let payload = payloads::Queued {
        lock_id: id,
        by: &r.holder,
        resource: r.resource.to_string(),
        mode: r.mode,
        operation: &r.operation,
        behind,
    };
    event(
        LOCK_QUEUED,
        Some(r.holder.clone()),
        Priority::Routine,
        payload,
        None,
    )
}

/// `resource_released`: a lock that stopped being held or waiting, and why; `seq` is the
/// project sequence number the lock table gave the release.
pub fn released_event(l: &Lock, why: Release, seq: i64, actor: Option<String>) -> NewEvent {
    let payload = payloads::Released {
        lock_id: l.id,
        seq,
        by: &l.holder,
        resource: l.resource.to_string(),
        reason: why,
        was_held: l.state == State::Held,
    };
    event(RESOURCE_RELEASED, actor, Priority::Routine, payload, None)
}

/// `lock_renewed`: a lease extended to `until`.
pub fn renewed_event(l: &Lock, until: NaiveDateTime) -> NewEvent {
    let payload = payloads::Renewed {
        lock_id: l.id,
        resource: l.resource.to_string(),
        until: until.and_utc(),
    };
    event(
        "lock_renewed",
        Some(l.holder.clone()),
        Priority::Routine,
        payload,
        None,
    )
}

/// `lock_force_released`: critical, for the holder alone.
pub fn force_notice(l: &Lock, by: Option<&str>) -> NewEvent {
    let payload = payloads::ForceReleased {
        lock_id: l.id,
        resource: l.resource.to_string(),
        by,
        summary: format!(
            "your lock on {} was force-released by {}",
            l.resource,
            by.unwrap_or("the operator")
        ),
    };
    event(
        "lock_force_released",
        None,
        Priority::Critical,
        payload,
        Some(l.holder.clone()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::session::SessionStatus;
    use crate::domain::session::tests_support::session_of as session;

    fn ask(resource: &str, mode: Mode) -> LockAsk {
        LockAsk {
            resource: resource.into(),
            operation: None,
            duration: None,
            mode,
            wait: false,
            task_id: None,
        }
    }

    #[test]
    fn who_may_lock_what() {
        let mut s = session(&[("claude", Role::Driver), ("cursor", Role::Observer)]);
        let claude = Caller::Participant("claude".into());
        let cursor = Caller::Participant("cursor".into());
        assert!(s.check_lock(&claude, ask("/a.rs", Mode::Exclusive)).is_ok());
        assert!(matches!(
            s.check_lock(&cursor, ask("/a.rs", Mode::Exclusive)),
            Err(DomainError::Forbidden(_))
        ));
        assert!(s.check_lock(&cursor, ask("/a.rs", Mode::Shared)).is_ok());
        assert!(matches!(
            s.check_lock(&Caller::Operator, ask("/a.rs", Mode::Shared)),
            Err(DomainError::Invalid { field: "aiId", .. })
        ));
        let mut long = ask("/a.rs", Mode::Shared);
        long.operation = Some("x".repeat(MAX_OPERATION_CHARS + 1));
        assert!(s.check_lock(&claude, long).is_err());
        let mut bad = ask("/a.rs", Mode::Shared);
        bad.duration = Some(serde_json::json!("forever"));
        assert!(matches!(
            s.check_lock(&claude, bad),
            Err(DomainError::Invalid {
                field: "duration",
                ..
            })
        ));
        s.status = SessionStatus::Completed;
        assert!(matches!(
            s.check_lock(&claude, ask("/a.rs", Mode::Shared)),
            Err(DomainError::Conflict {
                code: "session_completed",
                ..
            })
        ));
    }
}
