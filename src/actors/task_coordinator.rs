//! `TaskCoordinator`: one per live session, started by it. It holds the session's task DAG and
//! the assignment strategies' state (the round-robin position), plans task commands against
//! them (`domain::task_rules`, with the session's roster), and applies what the session
//! committed.
//!
//! The session writes: a plan comes back to it, it commits the task rows and events (and, for
//! a completed task, the release of its locks, planned with the project's lock table) in one
//! transaction, then sends `ApplyTasks`. Only its session talks to a coordinator, and the
//! session runs one task command at a time, so a plan is never stale when it is applied; a
//! commit that fails applies nothing. After a restart the board is loaded from the task rows.

use actix::prelude::*;

use super::messages::ListTasks;
use crate::domain::auth::Caller;
use crate::domain::task::{Task, TaskBoard};
use crate::domain::task_rules::{Roster, TaskOp, TaskPlan};
use crate::error::HubError;

pub struct TaskCoordinator {
    board: TaskBoard,
}

impl TaskCoordinator {
    pub fn new(board: TaskBoard) -> Self {
        TaskCoordinator { board }
    }
}

impl Actor for TaskCoordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
    }
}

/// Plan `op` by `caller`.
#[derive(Debug, Message)]
#[rtype(result = "Result<TaskPlan, HubError>")]
pub struct PlanTasks {
    pub roster: Roster,
    pub caller: Caller,
    pub op: TaskOp,
    pub at: chrono::NaiveDateTime,
    pub seed: u64,
}

impl Handler<PlanTasks> for TaskCoordinator {
    type Result = Result<TaskPlan, HubError>;

    fn handle(&mut self, msg: PlanTasks, _: &mut Self::Context) -> Self::Result {
        Ok(msg
            .roster
            .plan_task(&self.board, &msg.caller, msg.op, msg.at, msg.seed)?)
    }
}

/// Plan several operations by `caller` in order (a batch), each against the board the ones
/// before it left. New tasks get stand-in ids (negative) on that scratch board; their real ids
/// come from their events when the batch commits. The first failure is returned with the
/// operation's position in `ops`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<TaskPlan>, (usize, HubError)>")]
pub struct PlanTaskBatch {
    pub roster: Roster,
    pub caller: Caller,
    pub ops: Vec<TaskOp>,
    pub at: chrono::NaiveDateTime,
    pub seed: u64,
}

impl Handler<PlanTaskBatch> for TaskCoordinator {
    type Result = Result<Vec<TaskPlan>, (usize, HubError)>;

    fn handle(&mut self, msg: PlanTaskBatch, _: &mut Self::Context) -> Self::Result {
        let mut scratch = self.board.clone();
        let mut stand_in = 0;
        let mut plans = Vec::with_capacity(msg.ops.len());
        for (i, op) in msg.ops.into_iter().enumerate() {
            let plan = msg
                .roster
                .plan_task(
                    &scratch,
                    &msg.caller,
                    op,
                    msg.at,
                    msg.seed.wrapping_add(i as u64),
                )
                .map_err(|e| (i, HubError::from(e)))?;
            let mut first = None;
            for w in &plan.writes {
                let mut task = w.task.clone();
                if w.new {
                    stand_in -= 1;
                    task.id = stand_in;
                    if w.parent_is_first {
                        task.parent = first;
                    }
                }
                first.get_or_insert(task.id);
                scratch.put(task);
            }
            if let Some(rr) = &plan.round_robin {
                scratch.note_round_robin(rr);
            }
            plans.push(plan);
        }
        Ok(plans)
    }
}

/// What the session committed: the tasks as written, and whom round-robin picked.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ApplyTasks {
    pub tasks: Vec<Task>,
    pub round_robin: Option<String>,
}

impl Handler<ApplyTasks> for TaskCoordinator {
    type Result = ();

    fn handle(&mut self, msg: ApplyTasks, _: &mut Self::Context) {
        for task in msg.tasks {
            self.board.put(task);
        }
        if let Some(rr) = &msg.round_robin {
            self.board.note_round_robin(rr);
        }
    }
}

/// One task (for the checks of commands that name one: a lock, a change, a suggestion).
#[derive(Debug, Message)]
#[rtype(result = "Result<Task, HubError>")]
pub struct FindTask(pub i64);

impl Handler<FindTask> for TaskCoordinator {
    type Result = Result<Task, HubError>;

    fn handle(&mut self, msg: FindTask, _: &mut Self::Context) -> Self::Result {
        Ok(self.board.get(msg.0)?.clone())
    }
}

/// Tasks by the filters of `ListTasks` (the credential was checked by the session).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Task>, HubError>")]
pub struct SelectTasks(pub ListTasks);

impl Handler<SelectTasks> for TaskCoordinator {
    type Result = Result<Vec<Task>, HubError>;

    fn handle(&mut self, msg: SelectTasks, _: &mut Self::Context) -> Self::Result {
        let q = msg.0;
        if let Some(id) = q.id {
            return Ok(vec![self.board.get(id)?.clone()]);
        }
        Ok(self
            .board
            .iter()
            .filter(|t| q.status.is_none_or(|st| t.status == st))
            .filter(|t| {
                q.assigned_to
                    .as_ref()
                    .is_none_or(|a| t.assigned_to.as_ref() == Some(a))
            })
            .filter(|t| q.parent.is_none_or(|p| t.parent == Some(p)))
            .cloned()
            .collect())
    }
}
