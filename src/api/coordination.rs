//! Working as a team on code: the handshake, roles and the change ledger. Each is one operation
//! grouped by `action` (one MCP tool each, to keep `tools/list` small); the REST routes
//! (`/mcp/collaborate/*`) set the action from their path. Locks, suggestions and tasks follow
//! the same pattern in their own modules.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use futures::future::LocalBoxFuture;
use uuid::Uuid;

use super::{Call, Operation as Op};
use crate::actors::messages::{
    AssignRoles, HandshakeStep, ListChanges, RecordChange, RequestRole, RespondRole,
};
use crate::domain::auth::Credential;
use crate::domain::handshake::{Feedback, Step};
use crate::domain::ledger::ChangeQuery;
use crate::domain::ledger::{ChangeSpec, Operation};
use crate::domain::role::Role;
use crate::error::HubError;

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepName {
    WorkComplete,
    #[serde(alias = "reviewing")]
    ReviewStart,
    ReviewComplete,
    ControlReceived,
    Cancel,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HandshakeArgs {
    #[schemars(skip)]
    session_id: Option<Uuid>,
    #[schemars(skip)]
    #[serde(alias = "from")]
    ai_id: Option<String>,
    /// The concept's handshake messages carry the sender's role; the session knows it.
    #[schemars(skip)]
    #[serde(rename = "role")]
    _role: Option<Value>,
    #[serde(alias = "status")]
    step: StepName,
    changes: Option<Vec<String>>,
    /// Default true.
    needs_review: Option<bool>,
    message: Option<String>,
    acknowledge_id: Option<Value>,
    feedback: Option<Feedback>,
    /// Default true.
    pass_control: Option<bool>,
    next_action: Option<String>,
    reason: Option<String>,
}

/// `123`, `"123"` or the concept's `"handshake_123"`.
fn handshake_id(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim_start_matches("handshake_").parse().ok(),
        _ => None,
    }
}

impl HandshakeArgs {
    pub fn into_step(self) -> Result<Step, HubError> {
        Ok(match self.step {
            StepName::WorkComplete => Step::WorkComplete {
                changes: self.changes.unwrap_or_default(),
                needs_review: self.needs_review.unwrap_or(true),
                message: self.message,
            },
            StepName::ReviewStart => {
                let raw = self.acknowledge_id.ok_or_else(|| {
                    HubError::invalid(
                        "acknowledgeId",
                        "review_start names the handshake it reviews",
                    )
                })?;
                Step::ReviewStart {
                    acknowledge_id: handshake_id(&raw).ok_or_else(|| {
                        HubError::invalid(
                            "acknowledgeId",
                            "a handshake id like 12 or \"handshake_12\"",
                        )
                    })?,
                }
            }
            StepName::ReviewComplete => Step::ReviewComplete {
                feedback: self.feedback.ok_or_else(|| {
                    HubError::invalid(
                        "feedback",
                        "review_complete needs feedback {approved, suggestions, issues}",
                    )
                })?,
                pass_control: self.pass_control.unwrap_or(true),
            },
            StepName::ControlReceived => Step::ControlReceived {
                next_action: self.next_action,
            },
            StepName::Cancel => Step::Cancel {
                reason: self.reason,
            },
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum RoleAction {
    Request,
    Respond,
    Assign,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleArgs {
    #[schemars(skip)]
    session_id: Option<Uuid>,
    #[schemars(skip)]
    ai_id: Option<String>,
    action: RoleAction,
    role: Option<Role>,
    reason: Option<String>,
    /// respond
    request_id: Option<i64>,
    /// respond
    grant: Option<bool>,
    /// assign: {aiId: role}
    roles: Option<BTreeMap<String, Role>>,
}

/// Which role command the arguments ask for (shared with REST).
pub enum RoleCommand {
    Request(RequestRole),
    Respond(RespondRole),
    Assign(AssignRoles),
}

impl RoleArgs {
    pub fn into_command(
        self,
        credential: Credential,
        as_participant: Option<String>,
    ) -> Result<RoleCommand, HubError> {
        Ok(match self.action {
            RoleAction::Request => RoleCommand::Request(RequestRole {
                credential,
                as_participant,
                role: self
                    .role
                    .ok_or_else(|| HubError::invalid("role", "request needs the role you want"))?,
                reason: self.reason,
            }),
            RoleAction::Respond => RoleCommand::Respond(RespondRole {
                credential,
                as_participant,
                request_id: self
                    .request_id
                    .ok_or_else(|| HubError::invalid("requestId", "respond names the request"))?,
                grant: self.grant.ok_or_else(|| {
                    HubError::invalid("grant", "respond says grant: true or false")
                })?,
                note: self.reason,
            }),
            RoleAction::Assign => RoleCommand::Assign(AssignRoles {
                credential,
                as_participant,
                roles: self
                    .roles
                    .filter(|r| !r.is_empty())
                    .ok_or_else(|| HubError::invalid("roles", "assign needs {aiId: role}"))?,
                reason: self.reason,
            }),
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum ChangesAction {
    Record,
    List,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangesArgs {
    #[schemars(skip)]
    session_id: Option<Uuid>,
    #[schemars(skip)]
    ai_id: Option<String>,
    action: ChangesAction,
    #[serde(alias = "file")]
    file_path: Option<String>,
    /// Default edit.
    operation: Option<Operation>,
    /// Unified diff, or before + after.
    diff: Option<String>,
    before: Option<String>,
    after: Option<String>,
    new_path: Option<String>,
    symbols: Option<Vec<String>>,
    reason: Option<String>,
    /// Your lock's fencing token.
    lock_token: Option<i64>,
    task_id: Option<i64>,
    /// list: by this aiId.
    ai: Option<String>,
    /// list: after this change id.
    since: Option<i64>,
    limit: Option<i64>,
    with_diff: Option<bool>,
}

/// What `changes` asks for (shared with REST).
pub enum ChangesCommand {
    Record(ChangeSpec),
    List(ChangeQuery),
}

impl ChangesArgs {
    pub fn into_command(self) -> Result<ChangesCommand, HubError> {
        Ok(match self.action {
            ChangesAction::Record => ChangesCommand::Record(ChangeSpec {
                file_path: self
                    .file_path
                    .ok_or_else(|| HubError::invalid("filePath", "record names the file"))?,
                operation: self.operation,
                diff: self.diff,
                before: self.before,
                after: self.after,
                new_path: self.new_path,
                symbols: self.symbols.unwrap_or_default(),
                reason: self.reason,
                lock_token: self.lock_token,
                task_id: self.task_id,
            }),
            ChangesAction::List => {
                let limit = self.limit.unwrap_or(50);
                if !(1..=200).contains(&limit) {
                    return Err(HubError::invalid(
                        "limit",
                        "limit must be between 1 and 200",
                    ));
                }
                ChangesCommand::List(ChangeQuery {
                    file: self.file_path,
                    ai_id: self.ai,
                    since: self.since,
                    limit,
                    with_diff: self.with_diff.unwrap_or(false),
                })
            }
        })
    }
}

/// Answers a command's reply as JSON.
pub(super) fn json<T: serde::Serialize>(reply: T) -> Value {
    serde_json::to_value(reply).unwrap_or(Value::Null)
}

impl Op for HandshakeArgs {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let session = call.session(self.session_id).await?;
            let as_participant = self.ai_id.clone();
            let command = HandshakeStep {
                credential: call.credential.clone(),
                as_participant,
                step: self.into_step()?,
            };
            Ok(json(call.send(session, command).await?))
        })
    }
}

impl Op for RoleArgs {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let session = call.session(self.session_id).await?;
            let ai_id = self.ai_id.clone();
            Ok(match self.into_command(call.credential.clone(), ai_id)? {
                RoleCommand::Request(c) => json(call.send(session, c).await?),
                RoleCommand::Respond(c) => json(call.send(session, c).await?),
                RoleCommand::Assign(c) => json(call.send(session, c).await?),
            })
        })
    }
}

impl Op for ChangesArgs {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let session = call.session(self.session_id).await?;
            let (credential, as_participant) = (call.credential.clone(), self.ai_id.clone());
            Ok(match self.into_command()? {
                ChangesCommand::Record(spec) => {
                    let command = RecordChange {
                        credential,
                        as_participant,
                        spec,
                    };
                    json(call.send(session, command).await?)
                }
                ChangesCommand::List(query) => {
                    let list = call
                        .send(session, ListChanges { credential, query })
                        .await?;
                    json!({ "changes": list })
                }
            })
        })
    }
}
