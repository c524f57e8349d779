//! Tools for talking and pacing: messages, checkpoints, status reports. Same shape as the rest
//! of the catalogue: parse the arguments, send one actor message, return its reply.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{ToolCtx, ToolOutput, args, in_session, plain, value, write_request};
use crate::actors::messages::{
    AckMessages, BeginCheckpoint, EndCheckpoint, ReadMessages, SendMessage,
};
use crate::domain::checkpoint::parse_duration;
use crate::domain::context::ContextRequest;
use crate::domain::event::Priority;
use crate::domain::message::{AckSelection, MessageSpec};
use crate::domain::monitor::{CheckKind, CheckStatus, StatusReport};
use crate::error::HubError;
use crate::store::messages::MessageQuery;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct SendArgs {
    /// Recipient aiId; omit to broadcast.
    to: Option<String>,
    /// Default routine; critical interrupts checkpoints.
    priority: Option<Priority>,
    /// Text or JSON.
    body: Value,
    /// Message id this answers (joins its thread).
    reply_to: Option<i64>,
    requires_ack: Option<bool>,
    /// Ack deadline, default 300; the sender is alerted when it passes.
    ack_within_secs: Option<u32>,
}

pub(super) async fn message_send(ctx: ToolCtx, raw: Value) -> Result<ToolOutput, HubError> {
    let a: SendArgs = args(raw)?;
    let command = SendMessage {
        credential: ctx.session.credential.clone(),
        as_participant: None,
        spec: MessageSpec {
            to: a.to,
            priority: a.priority.unwrap_or(Priority::Routine),
            body: a.body,
            reply_to: a.reply_to,
            requires_ack: a.requires_ack.unwrap_or(false),
            ack_within_secs: a.ack_within_secs,
        },
    };
    let sent = in_session(&ctx, command).await?;
    Ok(plain(value(&sent)))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ReadArgs {
    unread_only: Option<bool>,
    /// Message id to read after (default: the newest).
    since: Option<i64>,
    priority: Option<Priority>,
    /// Thread id (its first message).
    thread: Option<i64>,
    /// 1–200, default 20.
    limit: Option<i64>,
}

/// Checks and builds a `messages_read` query (shared with REST).
pub fn message_query(
    unread_only: Option<bool>,
    since: Option<i64>,
    priority: Option<Priority>,
    thread: Option<i64>,
    limit: Option<i64>,
) -> Result<MessageQuery, HubError> {
    let limit = limit.unwrap_or(20);
    if !(1..=200).contains(&limit) {
        return Err(HubError::invalid(
            "limit",
            "limit must be between 1 and 200",
        ));
    }
    if since.is_some_and(|s| s < 0) {
        return Err(HubError::invalid("since", "since must not be negative"));
    }
    Ok(MessageQuery {
        viewer: None,
        unread_only: unread_only.unwrap_or(false),
        since,
        priority,
        thread,
        limit,
    })
}

pub(super) async fn messages_read(ctx: ToolCtx, raw: Value) -> Result<ToolOutput, HubError> {
    let a: ReadArgs = args(raw)?;
    let query = message_query(a.unread_only, a.since, a.priority, a.thread, a.limit)?;
    let command = ReadMessages {
        credential: ctx.session.credential.clone(),
        as_participant: None,
        query,
    };
    let page = in_session(&ctx, command).await?;
    Ok(plain(value(&page)))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AckArgs {
    ids: Option<Vec<i64>>,
    /// Or: everything to you up to this id.
    up_to: Option<i64>,
}

/// `ids` or `upTo`, exactly one (shared with REST).
pub fn ack_selection(ids: Option<Vec<i64>>, up_to: Option<i64>) -> Result<AckSelection, HubError> {
    match (ids, up_to) {
        (Some(ids), None) => Ok(AckSelection::Ids(ids)),
        (None, Some(n)) if n >= 0 => Ok(AckSelection::UpTo(n)),
        (None, Some(_)) => Err(HubError::invalid("upTo", "upTo must not be negative")),
        _ => Err(HubError::invalid("ids", "give either ids or upTo")),
    }
}

pub(super) async fn message_ack(ctx: ToolCtx, raw: Value) -> Result<ToolOutput, HubError> {
    let a: AckArgs = args(raw)?;
    let command = AckMessages {
        credential: ctx.session.credential.clone(),
        as_participant: None,
        selection: ack_selection(a.ids, a.up_to)?,
    };
    let acked = in_session(&ctx, command).await?;
    Ok(plain(value(&acked)))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum CheckpointAction {
    Begin,
    End,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CheckpointArgs {
    action: CheckpointAction,
    /// begin: what you are doing.
    task: Option<String>,
    /// begin: seconds or "30s"/"5m"/"1h".
    estimated_duration: Option<Value>,
    /// begin: default false (non-critical events wait until end).
    interruptible: Option<bool>,
}

pub(super) async fn checkpoint(ctx: ToolCtx, raw: Value) -> Result<ToolOutput, HubError> {
    let a: CheckpointArgs = args(raw)?;
    let credential = ctx.session.credential.clone();
    let view = match a.action {
        CheckpointAction::Begin => {
            let task = a
                .task
                .ok_or_else(|| HubError::invalid("task", "begin needs the task"))?;
            let estimate = a.estimated_duration.ok_or_else(|| {
                HubError::invalid("estimatedDuration", "begin needs an estimate, e.g. \"30s\"")
            })?;
            let command = BeginCheckpoint {
                credential,
                as_participant: None,
                task,
                estimated_secs: parse_duration(&estimate)?,
                interruptible: a.interruptible.unwrap_or(false),
            };
            in_session(&ctx, command).await?
        }
        CheckpointAction::End => {
            if a.task.is_some() || a.estimated_duration.is_some() || a.interruptible.is_some() {
                return Err(HubError::invalid("action", "end takes no other arguments"));
            }
            let command = EndCheckpoint {
                credential,
                as_participant: None,
            };
            in_session(&ctx, command).await?
        }
    };
    Ok(plain(value(&view)))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct StatusReportArgs {
    kind: CheckKind,
    status: CheckStatus,
    summary: String,
    details: Option<Value>,
}

pub(super) async fn status_report(ctx: ToolCtx, raw: Value) -> Result<ToolOutput, HubError> {
    let a: StatusReportArgs = args(raw)?;
    let report = StatusReport {
        kind: a.kind,
        status: a.status,
        summary: a.summary,
        details: a.details,
    };
    write_request(&ctx, ContextRequest::StatusReport(report)).await
}
