//! Events: one per state change, appended to the session's log before anyone is told "ok".

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How urgently the participants should see an event (DESIGN "Delivery semantics").
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
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
    /// `None`: every participant sees it. `Some(id)`: only the actor and `id` do (a directed
    /// message, an alert for one participant).
    pub to: Option<String>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// Longest gist of an event shown in a one-line summary.
const GIST_CHARS: usize = 120;

impl Event {
    /// What the event says in a few words, for one-line summaries (critical alerts on top of a
    /// tool result): a message's body, a report's summary, a discovery's finding.
    pub fn gist(&self) -> Option<String> {
        let text = self.text()?;
        let mut gist: String = text.chars().take(GIST_CHARS).collect();
        if gist.len() < text.len() {
            gist.push('…');
        }
        Some(gist)
    }

    /// What `gist` clips, whole: a message's body, a report's summary, a discovery's finding
    /// (for `messageVerbosity` detailed).
    pub fn text(&self) -> Option<String> {
        let p = &self.payload;
        let text = [&p["summary"], &p["body"], &p["discovery"]["finding"]]
            .into_iter()
            .find(|v| !v.is_null())?;
        Some(match text {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// Does `ai_id` see this event? Broadcasts: everyone; directed: its actor and recipient.
    pub fn visible_to(&self, ai_id: &str) -> bool {
        match &self.to {
            None => true,
            Some(to) => to == ai_id || self.actor.as_deref() == Some(ai_id),
        }
    }
}
