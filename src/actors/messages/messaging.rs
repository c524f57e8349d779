//! Messages and checkpoints.

#[allow(unused_imports)]
use super::imports::*;

/// Send a message (`to: None` broadcasts).
#[derive(Debug, Message)]
#[rtype(result = "Result<MessageSent, HubError>")]
pub struct SendMessage {
    pub credential: Credential,
    /// The sender when the operator sends for a participant (REST `aiId`).
    pub as_participant: Option<String>,
    pub spec: MessageSpec,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSent {
    /// The message id (= the id of the event that carried it).
    pub id: i64,
    pub thread: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_deadline: Option<chrono::DateTime<chrono::Utc>>,
}

/// Read messages the caller can see; messages to it that come back are marked read.
#[derive(Debug, Message)]
#[rtype(result = "Result<MessagePage, HubError>")]
pub struct ReadMessages {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub query: MessageQuery,
    /// The request's key: a read sent again with it gets the page it first answered (which
    /// marked those messages read), not the page of what is unread now.
    pub key: Option<crate::api::RequestKey>,
}

/// Acknowledge messages by id or everything up to an id.
#[derive(Debug, Message)]
#[rtype(result = "Result<MessagesAcked, HubError>")]
pub struct AckMessages {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub selection: AckSelection,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagesAcked {
    /// Newly acknowledged by this call (earlier acknowledgements are kept, not repeated).
    pub acked: Vec<i64>,
}

/// Start a checkpoint for the caller.
#[derive(Debug, Message)]
#[rtype(result = "Result<CheckpointView, HubError>")]
pub struct BeginCheckpoint {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub task: String,
    pub estimated_secs: u32,
    pub interruptible: bool,
}

/// End the caller's checkpoint.
#[derive(Debug, Message)]
#[rtype(result = "Result<CheckpointView, HubError>")]
pub struct EndCheckpoint {
    pub credential: Credential,
    pub as_participant: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointView {
    pub event_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Non-critical events wait while this is true.
    pub holding: bool,
    /// When the hub ends the checkpoint by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_by: Option<chrono::DateTime<chrono::Utc>>,
}
