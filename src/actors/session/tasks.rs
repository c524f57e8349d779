//! The session actor's side of tasks: its `TaskCoordinator` plans each operation against the
//! DAG; the session writes it (task rows and events in one transaction; a new task's id is its
//! `task_created` event's id; a completed task's locks are released in that same transaction)
//! and hands the written tasks back to the coordinator.

use actix::prelude::*;

use super::{Reply, SessionActor, reply};
use crate::actors::messages::{ListTasks, Select, TaskCommand, TasksWritten};
use crate::actors::task_coordinator::{
    ApplyTasks, FindTask, PlanTasks, SelectTasks, TaskCoordinator,
};
use crate::domain::now;
use crate::domain::task::Task;
use crate::domain::task_rules::TaskPlan;
use crate::error::HubError;
use crate::store::{queries, tasks as store};

/// A seed for the random strategy: different per call, no dependency needed.
pub(super) fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

impl Handler<TaskCommand> for SessionActor {
    type Result = Reply<TasksWritten>;

    fn handle(&mut self, msg: TaskCommand, _: &mut Self::Context) -> Self::Result {
        let at = now();
        let asked = self.session().and_then(|s| {
            let caller = self.caller_as(&msg.credential, msg.as_participant.as_deref())?;
            Ok(PlanTasks {
                roster: s.roster(),
                caller,
                op: msg.op,
                at,
                seed: seed(),
            })
        });
        let (ask, coordinator) = match asked.and_then(|a| Ok((a, self.task_coordinator()?))) {
            Ok(p) => p,
            Err(e) => return reply(Err(e)),
        };
        let planned = async move { coordinator.send(ask).await };
        AtomicResponse::new(Box::pin(planned.into_actor(self).then(
            move |plan, act, _| match plan.map_err(HubError::from).and_then(|p| p) {
                Ok(plan) => act.write_tasks(plan, at),
                Err(e) => Box::pin(fut::ready(Err(e))),
            },
        )))
    }
}

impl SessionActor {
    pub(super) fn task_coordinator(&self) -> Result<Addr<TaskCoordinator>, HubError> {
        self.tasks
            .clone()
            .ok_or_else(|| HubError::Internal("the session has no task coordinator yet".into()))
    }

    /// The task a command names, from the coordinator.
    pub(super) fn find_task(
        &self,
        id: i64,
    ) -> impl std::future::Future<Output = Result<Task, HubError>> + 'static {
        let coordinator = self.task_coordinator();
        async move { coordinator?.send(FindTask(id)).await? }
    }

    /// Writes a planned task operation; then the coordinator applies it.
    fn write_tasks(
        &mut self,
        plan: TaskPlan,
        at: chrono::NaiveDateTime,
    ) -> ResponseActFuture<Self, Result<TasksWritten, HubError>> {
        let id = self.id;
        let stored = plan.clone();
        // A completed task's locks are released (and waiters move up) in the same transaction:
        // no crash can leave the task done and its locks held.
        self.commit_with_release(
            Select::Tasks(plan.completed.clone()),
            None,
            move |c| store_task_plan(c, id, &stored, at),
            move |act, _, events, _| {
                let tasks = written_tasks(&plan, &events);
                act.apply_tasks(&plan, &tasks);
                TasksWritten { tasks }
            },
        )
    }

    /// Hands written tasks to the coordinator.
    pub(super) fn apply_tasks(&self, plan: &TaskPlan, tasks: &[Task]) {
        if let Some(c) = &self.tasks {
            c.do_send(ApplyTasks {
                tasks: tasks.to_vec(),
                round_robin: plan.round_robin.clone(),
            });
        }
    }
}

/// Events a plan appends: one per write, then its notices.
pub(super) fn plan_events(plan: &TaskPlan) -> usize {
    plan.writes.len() + plan.notices.len()
}

/// Appends a plan's events and task rows (a new task's id is its event's; a subtask's parent is
/// the first task of the plan).
pub(super) fn store_task_plan(
    c: &mut crate::store::DbConn,
    id: uuid::Uuid,
    plan: &TaskPlan,
    at: chrono::NaiveDateTime,
) -> Result<Vec<crate::domain::event::Event>, HubError> {
    let mut events = Vec::new();
    let mut ids = Vec::new();
    for w in &plan.writes {
        let mut event = w.event.clone();
        let mut task = w.task.clone();
        if w.new {
            if w.parent_is_first {
                task.parent = ids.first().copied();
            }
            event.payload["task"] = serde_json::to_value(&task).unwrap_or_default();
            if let Some(t) = event.payload["task"].as_object_mut() {
                t.remove("id");
            }
        }
        let e = queries::append_event(c, id, &event, at)?;
        if w.new {
            task.id = e.id;
            store::insert(c, id, &task)?;
        } else {
            store::update(c, id, &task)?;
        }
        ids.push(task.id);
        events.push(e);
    }
    for (i, notice) in &plan.notices {
        let mut n = notice.clone();
        n.payload["taskId"] = ids.get(*i).copied().into();
        events.push(queries::append_event(c, id, &n, at)?);
    }
    Ok(events)
}

/// The tasks as `store_task_plan` wrote them, from the plan and its events (in order).
pub(super) fn written_tasks(plan: &TaskPlan, events: &[crate::domain::event::Event]) -> Vec<Task> {
    let mut tasks: Vec<Task> = Vec::new();
    for (w, e) in plan.writes.iter().zip(events) {
        let mut task = w.task.clone();
        if w.new {
            task.id = e.id;
            if w.parent_is_first {
                task.parent = tasks.first().map(|t| t.id);
            }
        }
        tasks.push(task);
    }
    tasks
}

impl Handler<ListTasks> for SessionActor {
    type Result = ResponseFuture<Result<Vec<Task>, HubError>>;

    fn handle(&mut self, msg: ListTasks, _: &mut Self::Context) -> Self::Result {
        let coordinator = self.session().and_then(|s| {
            self.authorized(s, &msg.credential)?;
            self.task_coordinator()
        });
        Box::pin(async move { coordinator?.send(SelectTasks(msg)).await? })
    }
}
