//! Who may lock what in a session, as plain rules (the lock table's own conflict and queue
//! rules are in `lock`): the session is open, the holder is an active participant, observers
//! take shared (read) locks only, an operation note is short, and a lock tied to a task is the
//! task's assignee's (or anyone's while it is unassigned).

use serde_json::Value;

use super::DomainError;
use super::auth::Caller;
use super::lock::{Mode, Outcome, Request, Resource, parse_lease};
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

    /// Checks `ask` for `caller`: the request it becomes and whether it is granted now or
    /// queued (or why not).
    pub fn check_lock(
        &self,
        caller: &Caller,
        ask: LockAsk,
    ) -> Result<(Request, Outcome), DomainError> {
        let (holder, role) = self.lock_holder(caller)?;
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
        if let Some(t) = ask.task_id {
            let task = self.tasks.get(t)?;
            if let Some(owner) = task.assigned_to.as_ref().filter(|a| **a != holder) {
                return Err(DomainError::Forbidden(format!(
                    "task {t} is {owner}'s; lock for your own tasks"
                )));
            }
        }
        let request = Request {
            resource: Resource::parse(&ask.resource)?,
            holder,
            mode: ask.mode,
            operation: ask.operation,
            lease_secs: parse_lease(ask.duration.as_ref())?,
            wait: ask.wait,
            task_id: ask.task_id,
        };
        let outcome = self.locks.check(&request)?;
        Ok((request, outcome))
    }
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
