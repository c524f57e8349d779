//! Tasks: the commands of the task DAG, and listing.

#[allow(unused_imports)]
use super::imports::*;

/// Create, update, assign, hand off or claim tasks.
#[derive(Debug, Message)]
#[rtype(result = "Result<TasksWritten, HubError>")]
pub struct TaskCommand {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub op: TaskOp,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TasksWritten {
    /// The tasks as they are now (a created task and its subtasks, or the changed task).
    pub tasks: Vec<Task>,
}

/// Tasks, filtered (from memory).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Task>, HubError>")]
pub struct ListTasks {
    pub credential: Credential,
    pub status: Option<TaskStatus>,
    pub assigned_to: Option<String>,
    pub parent: Option<i64>,
    pub id: Option<i64>,
}
