//! Talking and pacing: messages, checkpoints, status reports.

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::context::{Addressed, AsContextWrite, write};
use super::{Call, Operation};
use crate::actors::messages::{
    AckMessages, BeginCheckpoint, EndCheckpoint, ReadMessages, SendMessage,
};
use crate::domain::checkpoint::parse_duration;
use crate::domain::context::ContextRequest;
use crate::domain::event::Priority;
use crate::domain::message::MessageQuery;
use crate::domain::message::{AckSelection, MessageSpec};
use crate::domain::monitor::{CheckKind, CheckStatus, StatusReport};
use crate::error::HubError;

fn json<T: serde::Serialize>(reply: T) -> Value {
    serde_json::to_value(reply).unwrap_or(Value::Null)
}

/// `message_send` / `POST /mcp/messages/send`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Send {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    #[schemars(skip)]
    pub ai_id: Option<String>,
    /// Recipient aiId; omit to broadcast.
    pub to: Option<String>,
    /// Default routine; critical interrupts checkpoints.
    pub priority: Option<Priority>,
    /// Text or JSON.
    pub body: Value,
    /// Message id this answers (joins its thread).
    pub reply_to: Option<i64>,
    pub requires_ack: Option<bool>,
    /// Ack deadline, default 300; the sender is alerted when it passes.
    pub ack_within_secs: Option<u32>,
}

impl Send {
    /// The message as a spec, with the session and sender the request names.
    pub fn into_spec(self) -> (Option<Uuid>, Option<String>, MessageSpec) {
        let spec = MessageSpec {
            to: self.to,
            priority: self.priority.unwrap_or(Priority::Routine),
            body: self.body,
            reply_to: self.reply_to,
            requires_ack: self.requires_ack.unwrap_or(false),
            ack_within_secs: self.ack_within_secs,
        };
        (self.session_id, self.ai_id, spec)
    }
}

impl Operation for Send {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let (session, as_participant, spec) = self.into_spec();
            let session = call.session(session).await?;
            let command = SendMessage {
                credential: call.credential.clone(),
                as_participant,
                spec,
            };
            Ok(json(call.send(session, command).await?))
        })
    }
}

/// Most messages one read returns.
pub const MAX_READ: i64 = 200;

/// `messages_read` / `GET /mcp/messages`: messages you can see; marks what it returns read.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Read {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    #[schemars(skip)]
    pub ai_id: Option<String>,
    pub unread_only: Option<bool>,
    /// Message id to read after (default: the newest).
    pub since: Option<i64>,
    pub priority: Option<Priority>,
    /// Thread id (its first message).
    pub thread: Option<i64>,
    /// 1–200, default 20.
    pub limit: Option<i64>,
}

impl Read {
    fn query(&self) -> Result<MessageQuery, HubError> {
        let limit = self.limit.unwrap_or(20);
        if !(1..=MAX_READ).contains(&limit) {
            return Err(HubError::invalid(
                "limit",
                format!("limit must be between 1 and {MAX_READ}"),
            ));
        }
        if self.since.is_some_and(|s| s < 0) {
            return Err(HubError::invalid("since", "since must not be negative"));
        }
        Ok(MessageQuery {
            viewer: None,
            unread_only: self.unread_only.unwrap_or(false),
            since: self.since,
            priority: self.priority,
            thread: self.thread,
            limit,
        })
    }
}

impl Operation for Read {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let query = self.query()?;
            let session = call.session(self.session_id).await?;
            let command = ReadMessages {
                credential: call.credential.clone(),
                as_participant: self.ai_id,
                query,
                // Kept by the read itself (with its page), not by the generic `Keyed`.
                key: call.request_key.take(),
            };
            Ok(json(call.send(session, command).await?))
        })
    }
}

/// `message_ack` / `POST /mcp/messages/ack`: by `ids`, or everything to you `upTo` an id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ack {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    #[schemars(skip)]
    pub ai_id: Option<String>,
    pub ids: Option<Vec<i64>>,
    /// Or: everything to you up to this id.
    pub up_to: Option<i64>,
}

impl Operation for Ack {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let selection = match (self.ids, self.up_to) {
                (Some(ids), None) => AckSelection::Ids(ids),
                (None, Some(n)) if n >= 0 => AckSelection::UpTo(n),
                (None, Some(_)) => {
                    return Err(HubError::invalid("upTo", "upTo must not be negative"));
                }
                _ => return Err(HubError::invalid("ids", "give either ids or upTo")),
            };
            let session = call.session(self.session_id).await?;
            let command = AckMessages {
                credential: call.credential.clone(),
                as_participant: self.ai_id,
                selection,
            };
            Ok(json(call.send(session, command).await?))
        })
    }
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointAction {
    Begin,
    End,
}

/// `checkpoint` / `POST /mcp/collaborate/checkpoint[/end]`: a focus period. The concept's body
/// `{ai, task, estimatedDuration: "30s", interruptible}` works as it is.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checkpoint {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    #[schemars(skip)]
    #[serde(alias = "ai")]
    pub ai_id: Option<String>,
    pub action: CheckpointAction,
    /// begin: what you are doing.
    pub task: Option<String>,
    /// begin: seconds or "30s"/"5m"/"1h".
    pub estimated_duration: Option<Value>,
    /// begin: default false (non-critical events wait until end).
    pub interruptible: Option<bool>,
}

impl Operation for Checkpoint {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let session = call.session(self.session_id).await?;
            let (credential, as_participant) = (call.credential.clone(), self.ai_id);
            let view = match self.action {
                CheckpointAction::Begin => {
                    let task = self
                        .task
                        .ok_or_else(|| HubError::invalid("task", "begin needs the task"))?;
                    let estimate = self.estimated_duration.ok_or_else(|| {
                        HubError::invalid(
                            "estimatedDuration",
                            "begin needs an estimate, e.g. \"30s\"",
                        )
                    })?;
                    let command = BeginCheckpoint {
                        credential,
                        as_participant,
                        task,
                        estimated_secs: parse_duration(&estimate)?,
                        interruptible: self.interruptible.unwrap_or(false),
                    };
                    call.send(session, command).await?
                }
                CheckpointAction::End => {
                    if self.task.is_some()
                        || self.estimated_duration.is_some()
                        || self.interruptible.is_some()
                    {
                        return Err(HubError::invalid("action", "end takes no other arguments"));
                    }
                    let command = EndCheckpoint {
                        credential,
                        as_participant,
                    };
                    call.send(session, command).await?
                }
            };
            Ok(json(view))
        })
    }
}

/// `status_report` / `POST /mcp/collaborate/status`: a test/build/merge/lint result (CI jobs:
/// operator token + `sessionId`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Report {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    #[schemars(skip)]
    pub ai_id: Option<String>,
    pub kind: CheckKind,
    pub status: CheckStatus,
    pub summary: String,
    pub details: Option<Value>,
}

impl AsContextWrite for Report {
    fn into_write(self) -> Result<Addressed, HubError> {
        let report = StatusReport {
            kind: self.kind,
            status: self.status,
            summary: self.summary,
            details: self.details,
        };
        Ok((
            self.session_id,
            self.ai_id,
            ContextRequest::StatusReport(report),
        ))
    }
}

impl Operation for Report {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let (session, ai_id, request) = self.into_write()?;
            Ok(json(write(&call, session, ai_id, request).await?))
        })
    }
}
