//! Events: one per state change, appended to the session's log before anyone is told "ok".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How urgently the participants should see an event (DESIGN "Delivery semantics").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Critical,
    Important,
    Routine,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::Important => "important",
            Priority::Routine => "routine",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "critical" => Some(Priority::Critical),
            "important" => Some(Priority::Important),
            "routine" => Some(Priority::Routine),
            _ => None,
        }
    }
}

/// A change about to be written: the session actor builds it, the store gives it its sequence
/// number inside the same transaction as the projection update.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: &'static str,
    /// Participant that caused it; `None` for the hub itself or an operator without identity.
    pub actor: Option<String>,
    pub priority: Priority,
    pub payload: Value,
}

/// An event as it stands in the log.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Monotonic per session, starting at 1; the delivery cursor of every participant.
    pub id: i64,
    pub session_id: uuid::Uuid,
    pub kind: String,
    pub actor: Option<String>,
    pub priority: Priority,
    pub payload: Value,
    pub at: DateTime<Utc>,
}
