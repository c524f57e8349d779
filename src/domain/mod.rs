//! Pure domain types and rules: no actors, no HTTP, no database.
//!
//! Everything here is unit-testable on its own; the actors call into it to decide whether a
//! command is allowed and what event it produces, then apply the committed change.

pub mod activity;
pub mod auth;
pub mod briefing;
pub mod checkpoint;
pub mod context;
mod context_diff;
#[cfg(test)]
mod context_diff_props;
pub mod context_in_flight;
pub mod context_log;
mod context_ops;
mod context_path;
pub mod context_rules;
pub mod context_sync;
pub mod coordination;
pub mod digest;
pub mod dispute;
pub mod duration;
pub mod event;
pub mod evolution;
pub mod export;
pub mod fitness;
pub mod genes;
pub mod genome;
pub mod handshake;
pub mod ids;
pub mod insights;
pub mod ledger;
pub mod lock;
mod lock_index;
#[cfg(test)]
mod lock_index_props;
#[cfg(test)]
mod lock_props;
pub mod lock_rules;
pub mod lock_table;
pub mod membership;
pub mod message;
pub mod message_rules;
pub mod monitor;
pub mod outbox;
pub mod outcome;
pub mod presence;
#[cfg(test)]
mod resource_props;
pub mod retention;
pub mod role;
pub mod seeded_rng;
pub mod session;
pub mod session_spec;
pub mod settle;
pub mod snapshot;
pub mod task;
pub mod task_rules;
#[cfg(test)]
mod test_rng;
pub mod utc;
pub mod views;

use thiserror::Error;

/// A rule the command broke. Transports turn it into a 4xx answer through `HubError`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// The input itself is wrong (bad id, empty name, unknown permission…).
    #[error("{message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The input is fine but clashes with the current state (duplicate participant, second driver…).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Unknown participant in this session.
    #[error("{0}")]
    NotFound(String),
    /// A credential was presented and is not valid for this session.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller is known but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// A code write by someone who may not write now (concept §6 "Write Protection").
    #[error("{message}")]
    WriteDenied {
        message: String,
        current_driver: Option<String>,
    },
}

impl DomainError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        DomainError::Conflict {
            code,
            message: message.into(),
        }
    }
}

/// Current UTC time, truncated to microseconds so that it reads back identically from
/// PostgreSQL (microsecond timestamps) and SQLite (text).
pub fn now() -> chrono::NaiveDateTime {
    use chrono::{DurationRound, TimeDelta};
    let t = chrono::Utc::now().naive_utc();
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}
