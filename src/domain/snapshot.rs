//! Whole-session snapshots: the session's full state as of one event, saved on request
//! (`session_save`), every `saveInterval` seconds when something changed, and at milestones
//! (a task completed, control passed, the session paused).
//!
//! The live session does not need them to survive a crash: every event is committed together
//! with its projection rows, and a load rebuilds the session from those rows plus the context's
//! latest snapshot and the context events after it. Whole-session snapshots are the point-in-
//! time record a resume, an export or a compaction of an old session starts from.

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ledger::ChangeView;
use super::lock::Lock;
use super::message::MessageView;
use super::task::Task;
use super::views::SessionView;

/// Messages and changes a snapshot carries at most (the newest).
pub const MAX_SNAPSHOT_ITEMS: i64 = 1_000;

/// What caused a snapshot (the concept's triggers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Manual,
    Auto,
    Milestone,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Auto => "auto",
            Trigger::Milestone => "milestone",
        }
    }
}

/// Which optional parts a snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Includes {
    pub context: bool,
    pub messages: bool,
    pub changes: bool,
}

impl Includes {
    pub const ALL: Includes = Includes {
        context: true,
        messages: true,
        changes: true,
    };
}

/// Where one participant stands: its delivery cursor and what it has not read yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Standing {
    pub acked_event_id: i64,
    pub unread_messages: i64,
}

/// The session's full state as of `event_id`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionState {
    pub version: u32,
    pub event_id: i64,
    #[serde(with = "super::utc")]
    pub at: NaiveDateTime,
    pub trigger: Trigger,
    /// Participants and roles, handshake and role requests, configuration.
    pub session: SessionView,
    pub participants: BTreeMap<String, Standing>,
    pub tasks: Vec<Task>,
    /// Held and queued locks of this session's participants (in their project's table).
    pub locks: Vec<Lock>,
    /// The shared context with its versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    /// The newest messages, oldest first, with every receipt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<MessageView>>,
    /// The newest entries of the change ledger, with their diffs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<ChangeView>>,
}

pub const STATE_VERSION: u32 = 1;

/// Is an auto-save due? Only when something happened since the last snapshot.
pub fn auto_save_due(last_event_id: i64, saved_event_id: i64) -> bool {
    last_event_id > saved_event_id
}

/// The event kinds (and payloads) that are milestones: a task completed, control passed,
/// the session paused.
pub fn is_milestone(kind: &str, payload: &Value) -> bool {
    match kind {
        super::task::TASK_STATUS => payload["to"] == "completed",
        super::handshake::CONTROL_PASSED => true,
        "session_status_changed" => payload["to"] == "paused",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn milestones_are_completions_control_and_pauses() {
        assert!(is_milestone(
            "task_status_changed",
            &json!({"to": "completed"})
        ));
        assert!(!is_milestone(
            "task_status_changed",
            &json!({"to": "blocked"})
        ));
        assert!(is_milestone("control_passed", &json!({})));
        assert!(is_milestone(
            "session_status_changed",
            &json!({"to": "paused"})
        ));
        assert!(!is_milestone(
            "session_status_changed",
            &json!({"to": "active"})
        ));
        assert!(!is_milestone("context_changed", &json!({})));
    }

    #[test]
    fn auto_save_only_after_a_change() {
        assert!(!auto_save_due(10, 10));
        assert!(auto_save_due(11, 10));
    }
}
