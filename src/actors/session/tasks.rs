//! The session actor's tasks: each operation is planned by the domain rules, written (task rows
//! and events in one transaction; a new task's id is its `task_created` event's id), applied to
//! the board, and, when a task completes, the locks taken for it are released.

use actix::prelude::*;

use super::{Reply, SessionActor, reply};
use crate::actors::messages::{ListTasks, TaskCommand, TasksWritten};
use crate::domain::lock::Release;
use crate::domain::now;
use crate::domain::task::Task;
use crate::error::HubError;
use crate::store::{queries, tasks as store};

/// A seed for the random strategy: different per call, no dependency needed.
fn seed() -> u64 {
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
        let planned = self.session().and_then(|s| {
            let caller = self.caller_as(&msg.credential, msg.as_participant.as_deref())?;
            Ok(s.plan_task(&caller, msg.op, at, seed())?)
        });
        // A completed task's locks are released (and waiters move up) in the same transaction.
        let planned = planned.and_then(|plan| {
            let s = self.session()?;
            let releases: Vec<_> = plan
                .completed
                .iter()
                .flat_map(|t| s.locks.of_task(*t))
                .map(|l| (l, Release::TaskDone))
                .collect();
            Ok((plan, self.plan_release(&releases, None, Vec::new())?))
        });
        let (plan, release) = match planned {
            Ok(p) => p,
            Err(e) => return reply(Err(e)),
        };
        let stored_release = release.clone();
        let id = self.id;
        let stored = plan.clone();
        let written = self.commit_events(
            move |c| {
                let mut events = Vec::new();
                let mut ids = Vec::new();
                for w in &stored.writes {
                    let mut event = w.event.clone();
                    let mut task = w.task.clone();
                    if w.new {
                        // The id is this event's; a subtask's parent is the first task's.
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
                for (i, notice) in &stored.notices {
                    let mut n = notice.clone();
                    n.payload["taskId"] = ids.get(*i).copied().into();
                    events.push(queries::append_event(c, id, &n, at)?);
                }
                events.extend(stored_release.write(c, id, at)?);
                Ok(events)
            },
            move |act, events, ctx| {
                let s = act.session_mut();
                let mut tasks: Vec<Task> = Vec::new();
                for (w, e) in plan.writes.iter().zip(&events) {
                    let mut task = w.task.clone();
                    if w.new {
                        task.id = e.id;
                        if w.parent_is_first {
                            task.parent = tasks.first().map(|t| t.id);
                        }
                    }
                    s.tasks.put(task.clone());
                    tasks.push(task);
                }
                if let Some(rr) = &plan.round_robin {
                    s.tasks.note_round_robin(rr);
                }
                release.apply(s, &events, at);
                act.schedule_lease_timer(ctx);
                TasksWritten { tasks }
            },
        );
        AtomicResponse::new(written)
    }
}

impl Handler<ListTasks> for SessionActor {
    type Result = Result<Vec<Task>, HubError>;

    fn handle(&mut self, msg: ListTasks, _: &mut Self::Context) -> Self::Result {
        let s = self.session()?;
        self.authorized(s, &msg.credential)?;
        if let Some(id) = msg.id {
            return Ok(vec![s.tasks.get(id)?.clone()]);
        }
        Ok(s.tasks
            .iter()
            .filter(|t| msg.status.is_none_or(|st| t.status == st))
            .filter(|t| {
                msg.assigned_to
                    .as_ref()
                    .is_none_or(|a| t.assigned_to.as_ref() == Some(a))
            })
            .filter(|t| msg.parent.is_none_or(|p| t.parent == Some(p)))
            .cloned()
            .collect())
    }
}
