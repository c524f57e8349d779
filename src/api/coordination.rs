//! Working as a team on code: the handshake, roles, the change ledger, locks, suggestions and
//! tasks. Each is one operation grouped by `action` (one MCP tool each, to keep `tools/list`
//! small); the REST routes (`/mcp/collaborate/*`) set the action from their path.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use futures::future::LocalBoxFuture;
use uuid::Uuid;

use super::{Call, Operation as Op};
use crate::actors::messages::{
    AcquireLock, AssignRoles, HandshakeStep, ListChanges, ListLocks, ListSuggestions, ListTasks,
    RecordChange, ReleaseLock, RenewLock, RequestRole, ResolveSuggestion, RespondRole,
    SubmitSuggestion, TaskCommand,
};
use crate::domain::auth::Credential;
use crate::domain::handshake::{Feedback, Step};
use crate::domain::ledger::{ChangeSpec, Operation};
use crate::domain::lock::Mode;
use crate::domain::role::Role;
use crate::domain::task::{Status as TaskStatus, Strategy, TaskSpec};
use crate::domain::task_rules::TaskOp;
use crate::error::HubError;
use crate::store::ledger::ChangeQuery;

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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum LockAction {
    Acquire,
    Renew,
    Release,
    List,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockArgs {
    #[schemars(skip)]
    session_id: Option<Uuid>,
    #[schemars(skip)]
    #[serde(alias = "ai")]
    ai_id: Option<String>,
    action: LockAction,
    /// acquire: /file, /dir/, /glob/*, optionally #Symbol.
    resource: Option<String>,
    operation: Option<String>,
    /// "30s", "5m", seconds; default 300.
    duration: Option<Value>,
    /// Default exclusive.
    mode: Option<Mode>,
    /// acquire: queue if taken.
    wait: Option<bool>,
    /// acquire: released when this task completes.
    task_id: Option<i64>,
    /// renew, release (also cancels a queued request).
    lock_id: Option<i64>,
    /// release: someone else's (driver).
    force: Option<bool>,
}

/// What `lock` asks for (shared with REST).
pub enum LockCommand {
    Acquire(AcquireLock),
    Renew(RenewLock),
    Release(ReleaseLock),
    List(ListLocks),
}

impl LockArgs {
    pub fn into_command(
        self,
        credential: Credential,
        as_participant: Option<String>,
    ) -> Result<LockCommand, HubError> {
        let lock_id = |id: Option<i64>| {
            id.ok_or_else(|| HubError::invalid("lockId", "name the lock (lockId)"))
        };
        Ok(match self.action {
            LockAction::Acquire => LockCommand::Acquire(AcquireLock {
                credential,
                as_participant,
                resource: self
                    .resource
                    .ok_or_else(|| HubError::invalid("resource", "acquire names the resource"))?,
                operation: self.operation,
                duration: self.duration,
                mode: self.mode.unwrap_or_default(),
                wait: self.wait.unwrap_or(false),
                task_id: self.task_id,
            }),
            LockAction::Renew => LockCommand::Renew(RenewLock {
                credential,
                as_participant,
                lock_id: lock_id(self.lock_id)?,
                duration: self.duration,
            }),
            LockAction::Release => LockCommand::Release(ReleaseLock {
                credential,
                as_participant,
                lock_id: lock_id(self.lock_id)?,
                force: self.force.unwrap_or(false),
            }),
            LockAction::List => LockCommand::List(ListLocks { credential }),
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum SuggestionAction {
    Submit,
    Resolve,
    List,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuggestionArgs {
    #[schemars(skip)]
    session_id: Option<Uuid>,
    #[schemars(skip)]
    ai_id: Option<String>,
    action: SuggestionAction,
    file_path: Option<String>,
    /// Unified diff, or before + after.
    diff: Option<String>,
    before: Option<String>,
    after: Option<String>,
    reason: Option<String>,
    task_id: Option<i64>,
    /// resolve
    id: Option<i64>,
    /// resolve
    accept: Option<bool>,
    note: Option<String>,
    /// list: all, not only pending.
    all: Option<bool>,
}

/// What `suggestion` asks for (shared with REST).
pub enum SuggestionCommand {
    Submit(SubmitSuggestion),
    Resolve(ResolveSuggestion),
    List(ListSuggestions),
}

impl SuggestionArgs {
    pub fn into_command(
        self,
        credential: Credential,
        as_participant: Option<String>,
    ) -> Result<SuggestionCommand, HubError> {
        Ok(match self.action {
            SuggestionAction::Submit => SuggestionCommand::Submit(SubmitSuggestion {
                credential,
                as_participant,
                spec: ChangeSpec {
                    file_path: self
                        .file_path
                        .ok_or_else(|| HubError::invalid("filePath", "submit names the file"))?,
                    operation: None,
                    diff: self.diff,
                    before: self.before,
                    after: self.after,
                    new_path: None,
                    symbols: Vec::new(),
                    reason: self.reason,
                    lock_token: None,
                    task_id: self.task_id,
                },
                task_id: self.task_id,
            }),
            SuggestionAction::Resolve => SuggestionCommand::Resolve(ResolveSuggestion {
                credential,
                as_participant,
                id: self
                    .id
                    .ok_or_else(|| HubError::invalid("id", "resolve names the suggestion"))?,
                accept: self.accept.ok_or_else(|| {
                    HubError::invalid("accept", "resolve says accept: true or false")
                })?,
                note: self.note,
            }),
            SuggestionAction::List => SuggestionCommand::List(ListSuggestions {
                credential,
                pending_only: !self.all.unwrap_or(false),
                limit: 100,
            }),
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum TaskAction {
    Create,
    Update,
    Assign,
    Handoff,
    Claim,
    List,
    Get,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskArgs {
    #[schemars(skip)]
    session_id: Option<Uuid>,
    #[schemars(skip)]
    ai_id: Option<String>,
    action: TaskAction,
    #[serde(alias = "id")]
    task_id: Option<i64>,
    description: Option<String>,
    /// create/assign; list: filter.
    assigned_to: Option<String>,
    /// create: subtask descriptions.
    subtasks: Option<Vec<String>>,
    /// create/update: task ids that must complete first.
    dependencies: Option<Vec<i64>>,
    skills: Option<Vec<String>>,
    estimated_duration: Option<Value>,
    metadata: Option<Value>,
    /// create: as a subtask of this task; list: filter.
    parent: Option<i64>,
    /// create/assign without assignedTo.
    strategy: Option<Strategy>,
    /// update; list: filter.
    status: Option<TaskStatus>,
    reason: Option<String>,
    /// handoff: {notes, files, state}.
    context: Option<Value>,
}

/// What `task` asks for (shared with REST).
pub enum TaskRequest {
    Write(TaskCommand),
    List(ListTasks),
}

impl TaskArgs {
    pub fn into_request(
        self,
        credential: Credential,
        as_participant: Option<String>,
    ) -> Result<TaskRequest, HubError> {
        let id = |id: Option<i64>| {
            id.ok_or_else(|| HubError::invalid("taskId", "name the task (taskId)"))
        };
        let op = match self.action {
            TaskAction::List | TaskAction::Get => {
                return Ok(TaskRequest::List(ListTasks {
                    credential,
                    status: self.status,
                    assigned_to: self.assigned_to,
                    parent: self.parent,
                    id: match self.action {
                        TaskAction::Get => Some(id(self.task_id)?),
                        _ => self.task_id,
                    },
                }));
            }
            TaskAction::Create => TaskOp::Create {
                spec: TaskSpec {
                    description: self.description.ok_or_else(|| {
                        HubError::invalid("description", "create needs a description")
                    })?,
                    assigned_to: self.assigned_to,
                    subtasks: self.subtasks.unwrap_or_default(),
                    dependencies: self.dependencies.unwrap_or_default(),
                    skills: self.skills.unwrap_or_default(),
                    estimated_secs: self
                        .estimated_duration
                        .as_ref()
                        .map(crate::domain::checkpoint::parse_duration)
                        .transpose()?,
                    metadata: self.metadata.unwrap_or(Value::Null),
                    parent: self.parent,
                },
                strategy: self.strategy,
            },
            TaskAction::Update => TaskOp::Update {
                id: id(self.task_id)?,
                status: self.status,
                reason: self.reason,
                dependencies: self.dependencies,
            },
            TaskAction::Assign => TaskOp::Assign {
                id: id(self.task_id)?,
                to: self.assigned_to,
                strategy: self.strategy,
            },
            TaskAction::Handoff => TaskOp::Handoff {
                id: id(self.task_id)?,
                context: self.context.ok_or_else(|| {
                    HubError::invalid(
                        "context",
                        "handoff leaves {notes, files, state} for the next worker",
                    )
                })?,
            },
            TaskAction::Claim => TaskOp::Claim {
                id: id(self.task_id)?,
            },
        };
        Ok(TaskRequest::Write(TaskCommand {
            credential,
            as_participant,
            op,
        }))
    }
}

/// Answers a command's reply as JSON.
fn json<T: serde::Serialize>(reply: T) -> Value {
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

impl Op for LockArgs {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let session = call.session(self.session_id).await?;
            let ai_id = self.ai_id.clone();
            Ok(match self.into_command(call.credential.clone(), ai_id)? {
                LockCommand::Acquire(c) => json(call.send(session, c).await?),
                LockCommand::Renew(c) => json(call.send(session, c).await?),
                LockCommand::Release(c) => json(call.send(session, c).await?),
                LockCommand::List(c) => json!({ "locks": call.send(session, c).await? }),
            })
        })
    }
}

impl Op for SuggestionArgs {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let session = call.session(self.session_id).await?;
            let ai_id = self.ai_id.clone();
            Ok(match self.into_command(call.credential.clone(), ai_id)? {
                SuggestionCommand::Submit(c) => json(call.send(session, c).await?),
                SuggestionCommand::Resolve(c) => json(call.send(session, c).await?),
                SuggestionCommand::List(c) => {
                    json!({ "suggestions": call.send(session, c).await? })
                }
            })
        })
    }
}

impl Op for TaskArgs {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let session = call.session(self.session_id).await?;
            let ai_id = self.ai_id.clone();
            Ok(match self.into_request(call.credential.clone(), ai_id)? {
                TaskRequest::Write(c) => json(call.send(session, c).await?),
                TaskRequest::List(c) => json!({ "tasks": call.send(session, c).await? }),
            })
        })
    }
}
