//! `task` / `/mcp/collaborate/task*`: the task DAG, assignment, handoff and claim.

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::coordination::json as reply_json;
use super::{Call, Operation as Op};
use crate::actors::messages::{ListTasks, TaskCommand};
use crate::domain::auth::Credential;
use crate::domain::task::{Status as TaskStatus, Strategy, TaskSpec};
use crate::domain::task_rules::TaskOp;
use crate::error::HubError;

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
    /// A write for a batch, with the session and participant it names.
    pub fn into_batch(self) -> Result<(Option<Uuid>, Option<String>, TaskOp), HubError> {
        let (session, ai_id) = (self.session_id, self.ai_id.clone());
        match self.into_request(Credential::None, None)? {
            TaskRequest::Write(c) => Ok((session, ai_id, c.op)),
            TaskRequest::List(_) => Err(HubError::invalid(
                "action",
                "a batch holds writes: create, update, assign, handoff or claim",
            )),
        }
    }

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
impl Op for TaskArgs {
    type Output = Value;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Value, HubError>> {
        Box::pin(async move {
            let session = call.session(self.session_id).await?;
            let ai_id = self.ai_id.clone();
            Ok(match self.into_request(call.credential.clone(), ai_id)? {
                TaskRequest::Write(c) => reply_json(call.send(session, c).await?),
                TaskRequest::List(c) => json!({ "tasks": call.send(session, c).await? }),
            })
        })
    }
}
