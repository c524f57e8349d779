//! Who may do what with tasks, and the events each operation writes (the DAG rules themselves
//! are in `task`).

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use serde_json::{Value, json};

use super::DomainError;
use super::auth::Caller;
use super::event::{NewEvent, Priority};
use super::role::Role;
use super::session::{Session, SessionStatus, caller_id};
use super::task::{
    Status, Strategy, TASK_ASSIGNED, TASK_CLAIMED, TASK_CREATED, TASK_HANDED_OFF, TASK_STATUS,
    Task, TaskBoard, TaskSpec, TaskSpecOrTask,
};

/// A task operation as asked.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOp {
    /// Creates the task and its subtasks; assigns it to `spec.assigned_to`, or by `strategy`
    /// (`None` and no assignee: unassigned).
    Create {
        spec: TaskSpec,
        strategy: Option<Strategy>,
    },
    Update {
        id: i64,
        status: Option<Status>,
        reason: Option<String>,
        dependencies: Option<Vec<i64>>,
    },
    Assign {
        id: i64,
        to: Option<String>,
        strategy: Option<Strategy>,
    },
    Handoff {
        id: i64,
        context: Value,
    },
    Claim {
        id: i64,
    },
}

/// One task written by an operation, with the event that records it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskWrite {
    pub event: NewEvent,
    pub task: Task,
    /// A new task: its id (and, for subtasks, `parent_is_first`'s parent) come from the events.
    pub new: bool,
    pub parent_is_first: bool,
}

/// What an operation writes: tasks with their events, then notices (e.g. assignment).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskPlan {
    pub writes: Vec<TaskWrite>,
    /// Directed notices after the writes; `{task}` in their payload's `taskId` is patched with
    /// the id of the write at the same index when it was new.
    pub notices: Vec<(usize, NewEvent)>,
    /// Completed tasks (their locks are released).
    pub completed: Vec<i64>,
    /// Round-robin picked this participant.
    pub round_robin: Option<String>,
}

const MAX_HANDOFF_BYTES: usize = 64 * 1024;

/// What the task rules need to know of a session: whether it is open, who is in it (active
/// participants with their role and skills), who drives, and its default strategy. The session
/// hands a copy to its task coordinator with each task command.
#[derive(Debug, Clone, PartialEq)]
pub struct Roster {
    pub status: SessionStatus,
    pub allocation: Strategy,
    pub members: BTreeMap<String, (Role, Vec<String>)>,
    pub driver: Option<String>,
    pub parallel: ParallelLimit,
}

/// Most tasks one participant may have in progress at once, from the genome's
/// `parallelWorkThreshold` (kept with the limit so a refusal can name it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParallelLimit {
    pub max: usize,
    pub threshold: f64,
}

impl Session {
    pub fn roster(&self) -> Roster {
        Roster {
            status: self.status,
            allocation: self.task_allocation,
            members: self
                .active_participants()
                .map(|p| (p.ai_id.clone(), (p.role, p.skills.clone())))
                .collect(),
            driver: self.driver().map(|d| d.ai_id.clone()),
            parallel: ParallelLimit {
                max: self.genome.genome.max_tasks_in_progress(),
                threshold: self.genome.genome.parallel_work_threshold,
            },
        }
    }
}

/// A lock taken for task `task` must be its assignee's (anyone's while it is unassigned).
pub fn check_task_lock(task: &Task, holder: &str) -> Result<(), DomainError> {
    match task.assigned_to.as_ref().filter(|a| **a != holder) {
        Some(owner) => Err(DomainError::Forbidden(format!(
            "task {} is {owner}'s; lock for your own tasks",
            task.id
        ))),
        None => Ok(()),
    }
}

impl Roster {
    fn check_open(&self) -> Result<(), DomainError> {
        if self.status == SessionStatus::Completed {
            return Err(DomainError::conflict(
                "session_completed",
                "the session is completed; tasks are closed",
            ));
        }
        if self.status == SessionStatus::Paused {
            return Err(super::session::paused("task changes"));
        }
        Ok(())
    }

    fn role(&self, ai_id: &str) -> Result<Role, DomainError> {
        self.members.get(ai_id).map(|(r, _)| *r).ok_or_else(|| {
            DomainError::NotFound(format!("{ai_id:?} is not a participant of this session"))
        })
    }

    fn may_steer(&self, caller: &Caller) -> Result<Option<String>, DomainError> {
        self.check_open()?;
        let me = caller_id(caller);
        if let Some(me) = &me
            && self.role(me)? == Role::Observer
        {
            return Err(DomainError::Forbidden(format!(
                "{me} is an observer: it reads tasks, nothing else"
            )));
        }
        Ok(me)
    }

    fn is_driver_or_operator(&self, me: &Option<String>) -> bool {
        me.is_none() || self.driver.as_ref() == me.as_ref()
    }

    /// Who may get work: active participants that are not observers, with their skills.
    fn workers(&self) -> BTreeMap<String, Vec<String>> {
        self.members
            .iter()
            .filter(|(_, (role, _))| *role != Role::Observer)
            .map(|(id, (_, skills))| (id.clone(), skills.clone()))
            .collect()
    }

    fn check_assignee(&self, to: &str) -> Result<(), DomainError> {
        if self.role(to)? == Role::Observer {
            return Err(DomainError::invalid(
                "assignedTo",
                format!("{to} is an observer and takes no tasks"),
            ));
        }
        Ok(())
    }

    /// `who` starting task `id` must stay within the parallel limit; the refusal names the
    /// limit, the gene and the tasks already in progress, so the agent knows what to finish.
    fn check_parallel(&self, board: &TaskBoard, who: &str, id: i64) -> Result<(), DomainError> {
        let busy = board.in_progress_of(who, id);
        if busy.len() < self.parallel.max {
            return Ok(());
        }
        let ids: Vec<String> = busy.iter().map(i64::to_string).collect();
        let n = busy.len();
        Err(DomainError::conflict(
            "parallel_limit",
            format!(
                "{who} has {n} task{} in progress ({}): parallelWorkThreshold {} allows {} at once; complete, block or hand one off before starting task {id}",
                if n == 1 { "" } else { "s" },
                ids.join(", "),
                self.parallel.threshold,
                self.parallel.max,
            ),
        ))
    }

    fn assigned_notice(task: &Task, by: &Option<String>, how: &str) -> Option<NewEvent> {
        let to = task.assigned_to.clone()?;
        (by.as_ref() != Some(&to)).then(|| NewEvent {
            kind: TASK_ASSIGNED,
            actor: by.clone(),
            priority: Priority::Important,
            payload: json!({
                "taskId": task.id,
                "description": task.description,
                "how": how,
                "handoff": task.handoff,
                "summary": format!("task {}: {}", task.id, task.description),
            }),
            to: Some(to),
        })
    }

    /// Checks `op` by `caller` against `board` and plans its writes. `seed` feeds the random
    /// strategy.
    pub fn plan_task(
        &self,
        board: &TaskBoard,
        caller: &Caller,
        op: TaskOp,
        at: NaiveDateTime,
        seed: u64,
    ) -> Result<TaskPlan, DomainError> {
        let me = self.may_steer(caller)?;
        let mut plan = TaskPlan::default();
        let event = |kind: &'static str, priority, payload: Value| NewEvent {
            kind,
            actor: me.clone(),
            priority,
            payload,
            to: None,
        };
        match op {
            TaskOp::Create { spec, strategy } => {
                board.check_create(&spec)?;
                if let Some(to) = &spec.assigned_to {
                    self.check_assignee(to)?;
                }
                let assignee = match (&spec.assigned_to, strategy) {
                    (Some(to), _) => Some(to.clone()),
                    (None, Some(s)) => {
                        let picked =
                            board.pick(s, &TaskSpecOrTask::Spec(&spec), &self.workers(), seed);
                        if s == Strategy::RoundRobin {
                            plan.round_robin = picked.clone();
                        }
                        picked
                    }
                    (None, None) => None,
                };
                let template =
                    |description: String, parent: Option<i64>, assigned_to: Option<String>| Task {
                        id: 0,
                        parent,
                        description: description.trim().to_owned(),
                        assigned_to,
                        status: Status::Pending,
                        blocked_reason: None,
                        dependencies: Vec::new(),
                        skills: Vec::new(),
                        estimated_secs: None,
                        metadata: Value::Null,
                        handoff: None,
                        created_by: me.clone(),
                        created_at: at,
                        updated_at: at,
                        completed_at: None,
                    };
                let mut main = template(spec.description.clone(), spec.parent, assignee.clone());
                main.dependencies = spec.dependencies.clone();
                main.skills = spec.skills.clone();
                main.estimated_secs = spec.estimated_secs;
                main.metadata = spec.metadata.clone();
                let how = strategy.map_or("assigned", Strategy::as_str);
                plan.writes.push(TaskWrite {
                    event: event(TASK_CREATED, Priority::Routine, json!({"task": main})),
                    task: main.clone(),
                    new: true,
                    parent_is_first: false,
                });
                if let Some(n) = Self::assigned_notice(&main, &me, how) {
                    plan.notices.push((0, n));
                }
                for sub in &spec.subtasks {
                    let t = template(sub.clone(), None, assignee.clone());
                    plan.writes.push(TaskWrite {
                        event: event(TASK_CREATED, Priority::Routine, json!({"task": t})),
                        task: t,
                        new: true,
                        parent_is_first: true,
                    });
                }
            }
            TaskOp::Update {
                id,
                status,
                reason,
                dependencies,
            } => {
                if status.is_none() && dependencies.is_none() {
                    return Err(DomainError::invalid(
                        "status",
                        "nothing to change: give status or dependencies",
                    ));
                }
                let t = board.get(id)?.clone();
                let mine = t.assigned_to.is_some() && t.assigned_to == me;
                let mut next = t.clone();
                next.updated_at = at;
                if let Some(deps) = dependencies {
                    if !(mine || t.created_by == me || self.is_driver_or_operator(&me)) {
                        return Err(DomainError::Forbidden("only the task's creator, assignee, the driver or the operator changes its dependencies".into()));
                    }
                    board.check_dependencies(id, &deps)?;
                    next.dependencies = deps;
                }
                // A status change in the same update is judged against the new dependencies.
                let revised;
                let board = if next.dependencies != t.dependencies {
                    let mut b = board.clone();
                    if let Some(task) = b.get_mut(id) {
                        task.dependencies = next.dependencies.clone();
                    }
                    revised = b;
                    &revised
                } else {
                    board
                };
                if let Some(to) = status {
                    if !(mine || self.is_driver_or_operator(&me) || t.assigned_to.is_none()) {
                        return Err(DomainError::Forbidden(format!(
                            "task {id} is {}'s: only it, the driver or the operator changes its status",
                            t.assigned_to.as_deref().unwrap_or("nobody")
                        )));
                    }
                    board.check_status(id, to, reason.as_deref())?;
                    next.status = to;
                    next.blocked_reason =
                        (to == Status::Blocked).then(|| reason.clone().unwrap_or_default());
                    if to == Status::InProgress && next.assigned_to.is_none() {
                        next.assigned_to = me.clone(); // starting unassigned work takes it
                    }
                    if to == Status::InProgress
                        && let Some(who) = &next.assigned_to
                    {
                        self.check_parallel(board, who, id)?;
                    }
                    if to == Status::Completed {
                        next.completed_at = Some(at);
                        plan.completed.push(id);
                    }
                }
                let priority = if next.status == Status::Blocked {
                    Priority::Important
                } else {
                    Priority::Routine
                };
                plan.writes.push(TaskWrite {
                    event: event(
                        TASK_STATUS,
                        priority,
                        json!({"taskId": id, "description": t.description, "from": t.status, "to": next.status, "reason": reason, "dependencies": next.dependencies, "assignedTo": next.assigned_to}),
                    ),
                    task: next,
                    new: false,
                    parent_is_first: false,
                });
            }
            TaskOp::Assign { id, to, strategy } => {
                let t = board.get(id)?.clone();
                if t.status == Status::Completed {
                    return Err(DomainError::conflict(
                        "task_completed",
                        format!("task {id} is completed"),
                    ));
                }
                if !self.is_driver_or_operator(&me) {
                    return Err(DomainError::Forbidden("only the driver or the operator assigns tasks; take unassigned work with claim".into()));
                }
                let strategy = match (&to, strategy) {
                    (Some(_), _) => None,
                    (None, s) => Some(s.unwrap_or(self.allocation)),
                };
                let who = match (&to, strategy) {
                    (Some(to), _) => {
                        self.check_assignee(to)?;
                        to.clone()
                    }
                    (None, Some(s)) => {
                        let picked = board
                            .pick(s, &TaskSpecOrTask::Task(&t), &self.workers(), seed)
                            .ok_or_else(|| {
                                DomainError::conflict(
                                    "nobody_to_assign",
                                    "no participant can take tasks",
                                )
                            })?;
                        if s == Strategy::RoundRobin {
                            plan.round_robin = Some(picked.clone());
                        }
                        picked
                    }
                    (None, None) => unreachable!("a strategy is always chosen without `to`"),
                };
                // Work already under way moves with it: it counts against the new assignee.
                if t.status == Status::InProgress && t.assigned_to.as_ref() != Some(&who) {
                    self.check_parallel(board, &who, id)?;
                }
                let mut next = t.clone();
                next.assigned_to = Some(who.clone());
                next.updated_at = at;
                let how = strategy.map_or("assigned", Strategy::as_str);
                plan.writes.push(TaskWrite {
                    event: event(TASK_STATUS, Priority::Routine, json!({"taskId": id, "from": t.status, "to": t.status, "assignedTo": who, "how": how})),
                    task: next.clone(),
                    new: false,
                    parent_is_first: false,
                });
                if let Some(n) = Self::assigned_notice(&next, &me, how) {
                    plan.notices.push((0, n));
                }
            }
            TaskOp::Handoff { id, context } => {
                let t = board.get(id)?.clone();
                if t.status == Status::Completed {
                    return Err(DomainError::conflict(
                        "task_completed",
                        format!("task {id} is completed"),
                    ));
                }
                if !(t.assigned_to == me || self.is_driver_or_operator(&me)) {
                    return Err(DomainError::Forbidden(format!(
                        "only {} (its assignee), the driver or the operator hands task {id} off",
                        t.assigned_to.as_deref().unwrap_or("nobody")
                    )));
                }
                if !context.is_object() || context.to_string().len() > MAX_HANDOFF_BYTES {
                    return Err(DomainError::invalid(
                        "context",
                        format!(
                            "an object {{notes, files, state}} of at most {MAX_HANDOFF_BYTES} bytes"
                        ),
                    ));
                }
                let mut next = t.clone();
                next.assigned_to = None;
                next.status = Status::Pending;
                next.blocked_reason = None;
                next.handoff = Some(json!({"from": me, "at": at.and_utc(), "context": context}));
                next.updated_at = at;
                plan.writes.push(TaskWrite {
                    event: event(TASK_HANDED_OFF, Priority::Important, json!({
                        "taskId": id,
                        "description": t.description,
                        "summary": format!("task {id} is up for grabs: {} (claim it)", t.description),
                    })),
                    task: next,
                    new: false,
                    parent_is_first: false,
                });
            }
            TaskOp::Claim { id } => {
                let t = board.get(id)?.clone();
                let Some(who) = me.clone() else {
                    return Err(DomainError::invalid(
                        "aiId",
                        "name the participant claiming",
                    ));
                };
                if t.status == Status::Completed {
                    return Err(DomainError::conflict(
                        "task_completed",
                        format!("task {id} is completed"),
                    ));
                }
                if let Some(holder) = &t.assigned_to {
                    return Err(DomainError::conflict(
                        "task_assigned",
                        format!("task {id} is {holder}'s; it can hand it off"),
                    ));
                }
                let mut next = t.clone();
                next.assigned_to = Some(who.clone());
                next.updated_at = at;
                // Picking it up starts it when nothing it depends on is open.
                if board.check_status(id, Status::InProgress, None).is_ok()
                    && t.status == Status::Pending
                {
                    next.status = Status::InProgress;
                    self.check_parallel(board, &who, id)?;
                }
                plan.writes.push(TaskWrite {
                    event: event(
                        TASK_CLAIMED,
                        Priority::Routine,
                        json!({"taskId": id, "by": who, "status": next.status}),
                    ),
                    task: next,
                    new: false,
                    parent_is_first: false,
                });
            }
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::session::tests_support::session_of;

    /// A session's roster and its task board, as the task coordinator holds them.
    struct Team {
        roster: Roster,
        tasks: TaskBoard,
    }

    impl Team {
        fn of(members: &[(&str, Role)]) -> Team {
            Team {
                roster: session_of(members).roster(),
                tasks: TaskBoard::default(),
            }
        }

        fn plan_task(
            &self,
            caller: &Caller,
            op: TaskOp,
            at: NaiveDateTime,
            seed: u64,
        ) -> Result<TaskPlan, DomainError> {
            self.roster.plan_task(&self.tasks, caller, op, at, seed)
        }
    }

    fn me(id: &str) -> Caller {
        Caller::Participant(id.into())
    }

    fn apply(s: &mut Team, plan: TaskPlan, first_id: i64) -> Vec<i64> {
        let mut ids = Vec::new();
        for (i, mut w) in plan.writes.into_iter().enumerate() {
            if w.new {
                w.task.id = first_id + i as i64;
                if w.parent_is_first {
                    w.task.parent = Some(first_id);
                }
            }
            ids.push(w.task.id);
            s.tasks.put(w.task);
        }
        ids
    }

    #[test]
    fn create_start_block_complete_and_handoff() {
        let mut s = Team::of(&[
            ("claude", Role::Driver),
            ("gemini", Role::Navigator),
            ("cursor", Role::Observer),
        ]);
        let at = crate::domain::now();
        let spec = TaskSpec {
            description: "Refactor authentication module".into(),
            assigned_to: Some("claude".into()),
            subtasks: vec!["Update auth service".into(), "Add tests".into()],
            ..Default::default()
        };
        assert!(
            s.plan_task(
                &me("cursor"),
                TaskOp::Create {
                    spec: spec.clone(),
                    strategy: None
                },
                at,
                0
            )
            .is_err(),
            "observers read"
        );
        let plan = s
            .plan_task(
                &me("gemini"),
                TaskOp::Create {
                    spec,
                    strategy: None,
                },
                at,
                0,
            )
            .unwrap();
        assert_eq!(plan.notices.len(), 1, "claude is told");
        let ids = apply(&mut s, plan, 10);
        assert_eq!(ids, vec![10, 11, 12]);
        let done = |id| TaskOp::Update {
            id,
            status: Some(Status::Completed),
            reason: None,
            dependencies: None,
        };
        let err = s.plan_task(&me("claude"), done(10), at, 0).unwrap_err();
        assert!(err.to_string().contains("open subtasks: 11, 12"), "{err}");
        assert!(
            s.plan_task(&me("gemini"), done(11), at, 0).is_err(),
            "not gemini's task"
        );
        for id in [11, 12] {
            let plan = s.plan_task(&me("claude"), done(id), at, 0).unwrap();
            apply(&mut s, plan, 0);
        }
        let plan = s.plan_task(&me("claude"), done(10), at, 0).unwrap();
        assert_eq!(plan.completed, vec![10]);
        // Handoff and claim carry the context to the next worker.
        let spec = TaskSpec {
            description: "Write docs".into(),
            assigned_to: Some("claude".into()),
            ..Default::default()
        };
        let plan = s
            .plan_task(
                &me("claude"),
                TaskOp::Create {
                    spec,
                    strategy: None,
                },
                at,
                0,
            )
            .unwrap();
        apply(&mut s, plan, 20);
        let plan = s
            .plan_task(
                &me("claude"),
                TaskOp::Handoff {
                    id: 20,
                    context: json!({"notes": "half done", "files": ["/docs/a.md"]}),
                },
                at,
                0,
            )
            .unwrap();
        apply(&mut s, plan, 0);
        assert!(
            s.plan_task(&me("cursor"), TaskOp::Claim { id: 20 }, at, 0)
                .is_err()
        );
        let plan = s
            .plan_task(&me("gemini"), TaskOp::Claim { id: 20 }, at, 0)
            .unwrap();
        let t = &plan.writes[0].task;
        assert_eq!(
            (t.assigned_to.as_deref(), t.status),
            (Some("gemini"), Status::InProgress)
        );
        assert_eq!(t.handoff.as_ref().unwrap()["context"]["notes"], "half done");
    }

    #[test]
    fn the_parallel_limit_refuses_one_task_too_many_in_progress() {
        let mut s = Team::of(&[("claude", Role::Driver), ("gemini", Role::Navigator)]);
        assert_eq!(s.roster.parallel.max, 5, "the default genome's 0.8");
        s.roster.parallel = ParallelLimit {
            max: 2,
            threshold: 0.2,
        };
        let at = crate::domain::now();
        for (n, to) in [
            (1, Some("claude")),
            (2, Some("claude")),
            (3, Some("claude")),
            (4, None),
        ] {
            let spec = TaskSpec {
                description: format!("task {n}"),
                assigned_to: to.map(Into::into),
                ..Default::default()
            };
            let plan = s
                .plan_task(
                    &me("claude"),
                    TaskOp::Create {
                        spec,
                        strategy: None,
                    },
                    at,
                    0,
                )
                .unwrap();
            apply(&mut s, plan, n);
        }
        let set = |id, status| TaskOp::Update {
            id,
            status: Some(status),
            reason: Some("waiting on review".into()),
            dependencies: None,
        };
        let run = |s: &mut Team, who: &Caller, op| {
            let plan = s.plan_task(who, op, at, 0)?;
            apply(s, plan, 0);
            Ok::<_, DomainError>(())
        };
        run(&mut s, &me("claude"), set(1, Status::InProgress)).unwrap();
        run(&mut s, &me("claude"), set(2, Status::InProgress)).unwrap();
        // A third, by any path (the operator starting it, claude claiming), is refused.
        for (who, op) in [
            (me("claude"), set(3, Status::InProgress)),
            (Caller::Operator, set(3, Status::InProgress)),
            (me("claude"), TaskOp::Claim { id: 4 }),
        ] {
            let err = run(&mut s, &who, op).unwrap_err();
            let DomainError::Conflict { code, message } = &err else {
                panic!("{err:?}")
            };
            assert_eq!(*code, "parallel_limit");
            assert!(
                message.starts_with("claude has 2 tasks in progress (1, 2): parallelWorkThreshold 0.2 allows 2 at once"),
                "{message}"
            );
        }
        assert_eq!(s.tasks.get(4).unwrap().assigned_to, None, "nothing changed");
        // Others have their own allowance; blocking one frees a slot.
        run(&mut s, &me("gemini"), TaskOp::Claim { id: 4 }).unwrap();
        run(&mut s, &me("claude"), set(2, Status::Blocked)).unwrap();
        run(&mut s, &me("claude"), set(3, Status::InProgress)).unwrap();
        // Reassigning work under way counts against the new assignee.
        let assign = |id, to: &str| TaskOp::Assign {
            id,
            to: Some(to.into()),
            strategy: None,
        };
        run(&mut s, &me("claude"), assign(1, "gemini")).unwrap();
        let err = run(&mut s, &me("claude"), assign(3, "gemini")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("gemini has 2 tasks in progress (1, 4)"),
            "{err}"
        );
        // A pending task moves freely.
        run(&mut s, &me("claude"), assign(2, "gemini")).unwrap();
    }
}
