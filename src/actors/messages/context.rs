//! The shared context: writes, reads, diffs.

#[allow(unused_imports)]
use super::imports::*;

/// A write to the shared context (set, append, delete, merge).
#[derive(Debug, Message)]
#[rtype(result = "Result<ContextWritten, HubError>")]
pub struct WriteContext {
    pub credential: Credential,
    /// The participant the write is attributed to when the operator makes it (REST `aiId`).
    pub as_participant: Option<String>,
    pub request: ContextRequest,
}

/// Several writes of one participant, committed together or not at all (`batch`).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<BatchResult>, HubError>")]
pub struct WriteBatch {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub requests: Vec<BatchRequest>,
}

/// One write of a batch.
#[derive(Debug)]
pub enum BatchRequest {
    Context(ContextRequest),
    Message(crate::domain::message::MessageSpec),
    Task(TaskOp),
    Lock(crate::domain::lock_rules::LockAsk),
}

/// What one write of a batch answered: as the tool of the same name does.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum BatchResult {
    Context(ContextWritten),
    Message(super::MessageSent),
    Task(super::TasksWritten),
    Lock(super::LockView),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextWritten {
    /// The event that recorded the write; `None` when nothing changed.
    pub event_id: Option<i64>,
    /// The new version of every path it changed (the same number as `eventId`): pass it as the
    /// next write's `expectedVersion`.
    pub version: Option<i64>,
    pub changed: Vec<String>,
}

/// Reads one path of the shared context (the whole document for the empty path).
#[derive(Debug, Message)]
#[rtype(result = "Result<ContextValue, HubError>")]
pub struct ReadContext {
    pub credential: Credential,
    pub path: Path,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextValue {
    pub path: String,
    /// `null` when nothing is stored there (`exists` tells the two apart).
    pub value: serde_json::Value,
    pub exists: bool,
    /// Pass as `expectedVersion` to make the next write compare-and-set.
    pub version: i64,
}

/// What changed in the shared context after event `since` (default: after the caller's own
/// last context write).
#[derive(Debug, Message)]
#[rtype(result = "Result<Diff, HubError>")]
pub struct DiffContext {
    pub credential: Credential,
    /// Who asks, when the operator asks for a participant (REST `aiId`).
    pub as_participant: Option<String>,
    pub since: Since,
}

/// Where a diff starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Since {
    /// After this event id.
    Event(i64),
    /// After the last event at or before this time.
    Time(chrono::DateTime<chrono::Utc>),
    /// After the caller's own last context write.
    MyLastWrite,
}
