//! Tasks: a dependency DAG with subtasks, statuses, assignment strategies, and asynchronous
//! handoff (concept §7 and "Asynchronous Handoffs").
//!
//! A task cannot start while a dependency is unfinished, cannot complete while a subtask is
//! open, and dependencies never form a cycle. A task's id is the id of the event that created it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DomainError;

pub const TASK_CREATED: &str = "task_created";
pub const TASK_ASSIGNED: &str = "task_assigned";
pub const TASK_STATUS: &str = "task_status_changed";
pub const TASK_HANDED_OFF: &str = "task_handed_off";
pub const TASK_CLAIMED: &str = "task_claimed";
/// Most tasks one session holds (all are kept in memory for the DAG rules).
pub const MAX_TASKS: usize = 5000;
const MAX_TEXT_CHARS: usize = 2000;
const MAX_LIST: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    InProgress,
    Completed,
    Blocked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Blocked => "blocked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::InProgress,
            Self::Completed,
            Self::Blocked,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    pub fn is_open(self) -> bool {
        self != Status::Completed
    }
}

/// How unassigned work finds a participant (the concept's `taskAllocation`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    RoundRobin,
    #[default]
    LoadBalanced,
    SkillBased,
    Random,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "roundRobin",
            Strategy::LoadBalanced => "loadBalanced",
            Strategy::SkillBased => "skillBased",
            Strategy::Random => "random",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::RoundRobin,
            Self::LoadBalanced,
            Self::SkillBased,
            Self::Random,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<i64>,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_to: Option<String>,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skills: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_secs: Option<u32>,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
    /// What the last worker left for the next one (`notes`, `files`, `state`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(with = "crate::domain::utc")]
    pub created_at: NaiveDateTime,
    #[serde(with = "crate::domain::utc")]
    pub updated_at: NaiveDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "crate::domain::utc::option", default)]
    pub completed_at: Option<NaiveDateTime>,
}

/// A task as asked for (subtasks are tasks with this one as parent).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskSpec {
    pub description: String,
    pub assigned_to: Option<String>,
    pub subtasks: Vec<String>,
    pub dependencies: Vec<i64>,
    pub skills: Vec<String>,
    pub estimated_secs: Option<u32>,
    pub metadata: Value,
    pub parent: Option<i64>,
}

fn check_text(field: &'static str, text: &str, required: bool) -> Result<(), DomainError> {
    let n = text.trim().chars().count();
    if (required && n == 0) || n > MAX_TEXT_CHARS {
        return Err(DomainError::invalid(
            field,
            format!(
                "{} 1 to {MAX_TEXT_CHARS} characters",
                if required { "say it in" } else { "at most" }
            ),
        ));
    }
    Ok(())
}

/// Every task of a session.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskBoard {
    tasks: BTreeMap<i64, Task>,
    /// Last participant round-robin gave work to.
    last_round_robin: Option<String>,
}

impl TaskBoard {
    pub fn from_tasks(tasks: impl IntoIterator<Item = Task>) -> TaskBoard {
        TaskBoard {
            tasks: tasks.into_iter().map(|t| (t.id, t)).collect(),
            last_round_robin: None,
        }
    }

    pub fn get(&self, id: i64) -> Result<&Task, DomainError> {
        self.tasks
            .get(&id)
            .ok_or_else(|| DomainError::invalid("taskId", format!("no task {id} in this session")))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    pub fn children(&self, id: i64) -> impl Iterator<Item = &Task> {
        self.tasks.values().filter(move |t| t.parent == Some(id))
    }

    /// Open tasks assigned to `ai_id`.
    pub fn load_of(&self, ai_id: &str) -> usize {
        self.tasks
            .values()
            .filter(|t| t.status.is_open() && t.assigned_to.as_deref() == Some(ai_id))
            .count()
    }

    /// Ids of the tasks `ai_id` has in progress, apart from `except` (the task about to move).
    pub fn in_progress_of(&self, ai_id: &str, except: i64) -> Vec<i64> {
        self.tasks
            .values()
            .filter(|t| {
                t.id != except
                    && t.status == Status::InProgress
                    && t.assigned_to.as_deref() == Some(ai_id)
            })
            .map(|t| t.id)
            .collect()
    }

    /// Checks a new task (and its subtasks) against the board.
    pub fn check_create(&self, spec: &TaskSpec) -> Result<(), DomainError> {
        check_text("description", &spec.description, true)?;
        if spec.subtasks.len() > MAX_LIST
            || spec.dependencies.len() > MAX_LIST
            || spec.skills.len() > MAX_LIST
        {
            return Err(DomainError::invalid(
                "subtasks",
                format!("at most {MAX_LIST} subtasks, dependencies, skills"),
            ));
        }
        for (i, s) in spec.subtasks.iter().enumerate() {
            check_text("subtasks", s, true).map_err(|_| {
                DomainError::invalid(
                    "subtasks",
                    format!("subtask {i} needs a description of 1 to {MAX_TEXT_CHARS} characters"),
                )
            })?;
        }
        if self.tasks.len() + 1 + spec.subtasks.len() > MAX_TASKS {
            return Err(DomainError::conflict(
                "too_many_tasks",
                format!("a session holds at most {MAX_TASKS} tasks"),
            ));
        }
        if let Some(p) = spec.parent {
            let parent = self.get(p)?;
            if parent.status == Status::Completed {
                return Err(DomainError::conflict(
                    "task_completed",
                    format!("task {p} is completed; it takes no new subtasks"),
                ));
            }
        }
        let missing: Vec<String> = spec
            .dependencies
            .iter()
            .filter(|d| !self.tasks.contains_key(d))
            .map(i64::to_string)
            .collect();
        if !missing.is_empty() {
            return Err(DomainError::invalid(
                "dependencies",
                format!("dependency on missing task {}", missing.join(", ")),
            ));
        }
        Ok(())
    }

    /// Would `task` depending on `deps` close a cycle?
    pub fn check_dependencies(&self, task: i64, deps: &[i64]) -> Result<(), DomainError> {
        for d in deps {
            self.get(*d).map_err(|_| {
                DomainError::invalid("dependencies", format!("dependency on missing task {d}"))
            })?;
        }
        if deps.contains(&task) {
            return Err(DomainError::invalid(
                "dependencies",
                "a task cannot depend on itself",
            ));
        }
        // Walk from each dependency: reaching `task` again is a cycle.
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(i64, Vec<i64>)> = deps.iter().map(|d| (*d, vec![task, *d])).collect();
        while let Some((at, path)) = stack.pop() {
            if !seen.insert(at) {
                continue;
            }
            for next in self
                .tasks
                .get(&at)
                .map(|t| t.dependencies.clone())
                .unwrap_or_default()
            {
                let mut p = path.clone();
                p.push(next);
                if next == task {
                    let cycle: Vec<String> = p.iter().map(i64::to_string).collect();
                    return Err(DomainError::conflict(
                        "dependency_cycle",
                        format!("that would make a cycle: {}", cycle.join(" → ")),
                    ));
                }
                stack.push((next, p));
            }
        }
        Ok(())
    }

    /// May task `id` move to `to`? Says what blocks it when not.
    pub fn check_status(
        &self,
        id: i64,
        to: Status,
        reason: Option<&str>,
    ) -> Result<(), DomainError> {
        let t = self.get(id)?;
        if t.status == Status::Completed {
            return Err(DomainError::conflict(
                "task_completed",
                format!("task {id} is completed"),
            ));
        }
        if t.status == to {
            return Err(DomainError::invalid(
                "status",
                format!("task {id} already is {}", to.as_str()),
            ));
        }
        match to {
            Status::Blocked => {
                let r = reason.unwrap_or("").trim();
                if r.is_empty() {
                    return Err(DomainError::invalid(
                        "reason",
                        "say why the task is blocked",
                    ));
                }
                check_text("reason", r, true)?;
            }
            Status::InProgress | Status::Completed => {
                let open: Vec<String> = t
                    .dependencies
                    .iter()
                    .filter(|d| {
                        self.tasks
                            .get(d)
                            .is_some_and(|d| d.status != Status::Completed)
                    })
                    .map(i64::to_string)
                    .collect();
                if !open.is_empty() {
                    return Err(DomainError::conflict(
                        "dependencies_open",
                        format!("task {id} waits for task {} to complete", open.join(", ")),
                    ));
                }
                if to == Status::Completed {
                    let open: Vec<String> = self
                        .children(id)
                        .filter(|c| c.status != Status::Completed)
                        .map(|c| c.id.to_string())
                        .collect();
                    if !open.is_empty() {
                        return Err(DomainError::conflict(
                            "subtasks_open",
                            format!("task {id} has open subtasks: {}", open.join(", ")),
                        ));
                    }
                }
            }
            Status::Pending => {}
        }
        Ok(())
    }

    /// Picks a participant for `task` among `candidates` (id → skills) by `strategy`.
    pub fn pick(
        &self,
        strategy: Strategy,
        task: &TaskSpecOrTask<'_>,
        candidates: &BTreeMap<String, Vec<String>>,
        seed: u64,
    ) -> Option<String> {
        if candidates.is_empty() {
            return None;
        }
        let by_load = |ids: Vec<&String>| {
            ids.into_iter()
                .min_by_key(|id| (self.load_of(id), (*id).clone()))
                .cloned()
        };
        match strategy {
            Strategy::RoundRobin => {
                let after = self.last_round_robin.as_deref().unwrap_or("");
                candidates
                    .keys()
                    .find(|id| id.as_str() > after)
                    .or_else(|| candidates.keys().next())
                    .cloned()
            }
            Strategy::LoadBalanced => by_load(candidates.keys().collect()),
            Strategy::SkillBased => {
                let wanted = task.skills();
                let score =
                    |skills: &Vec<String>| skills.iter().filter(|s| wanted.contains(s)).count();
                let best = candidates.values().map(score).max().unwrap_or(0);
                by_load(
                    candidates
                        .iter()
                        .filter(|(_, s)| score(s) == best)
                        .map(|(id, _)| id)
                        .collect(),
                )
            }
            Strategy::Random => candidates
                .keys()
                .nth((seed % candidates.len() as u64) as usize)
                .cloned(),
        }
    }

    pub fn note_round_robin(&mut self, ai_id: &str) {
        self.last_round_robin = Some(ai_id.to_owned());
    }

    pub fn put(&mut self, task: Task) {
        self.tasks.insert(task.id, task);
    }

    pub fn get_mut(&mut self, id: i64) -> Option<&mut Task> {
        self.tasks.get_mut(&id)
    }
}

/// Either a task being created or one that exists, for picking an assignee.
pub enum TaskSpecOrTask<'a> {
    Spec(&'a TaskSpec),
    Task(&'a Task),
}

impl TaskSpecOrTask<'_> {
    fn skills(&self) -> &[String] {
        match self {
            TaskSpecOrTask::Spec(s) => &s.skills,
            TaskSpecOrTask::Task(t) => &t.skills,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: i64, parent: Option<i64>, deps: &[i64], status: Status, who: Option<&str>) -> Task {
        let at = crate::domain::now();
        Task {
            id,
            parent,
            description: format!("t{id}"),
            assigned_to: who.map(String::from),
            status,
            blocked_reason: None,
            dependencies: deps.to_vec(),
            skills: vec![],
            estimated_secs: None,
            metadata: Value::Null,
            handoff: None,
            created_by: None,
            created_at: at,
            updated_at: at,
            completed_at: None,
        }
    }

    #[test]
    fn dependencies_and_subtasks_gate_the_status() {
        let b = TaskBoard::from_tasks([
            task(1, None, &[], Status::InProgress, Some("claude")),
            task(2, None, &[1], Status::Pending, None),
            task(3, Some(1), &[], Status::Pending, None),
        ]);
        assert!(
            b.check_status(2, Status::InProgress, None)
                .unwrap_err()
                .to_string()
                .contains("waits for task 1")
        );
        assert!(
            b.check_status(1, Status::Completed, None)
                .unwrap_err()
                .to_string()
                .contains("open subtasks: 3")
        );
        assert!(
            b.check_status(3, Status::Blocked, None).is_err(),
            "blocked needs a reason"
        );
        assert!(
            b.check_status(3, Status::Blocked, Some("waiting for API keys"))
                .is_ok()
        );
        assert!(b.check_status(3, Status::InProgress, None).is_ok());
    }

    #[test]
    fn cycles_are_refused() {
        let b = TaskBoard::from_tasks([
            task(1, None, &[], Status::Pending, None),
            task(2, None, &[1], Status::Pending, None),
            task(3, None, &[2], Status::Pending, None),
        ]);
        assert!(
            b.check_dependencies(1, &[3])
                .unwrap_err()
                .to_string()
                .contains("1 → 3 → 2 → 1")
        );
        assert!(b.check_dependencies(1, &[1]).is_err());
        assert!(b.check_dependencies(3, &[1]).is_ok());
        assert!(b.check_dependencies(3, &[99]).is_err());
    }

    #[test]
    fn strategies() {
        let mut b = TaskBoard::from_tasks([
            task(1, None, &[], Status::InProgress, Some("claude")),
            task(2, None, &[], Status::Pending, Some("claude")),
            task(3, None, &[], Status::Completed, Some("gemini")),
        ]);
        let people: BTreeMap<String, Vec<String>> = [
            ("claude".to_owned(), vec!["rust".to_owned()]),
            (
                "gemini".to_owned(),
                vec!["docs".to_owned(), "ts".to_owned()],
            ),
            ("cursor".to_owned(), vec!["ts".to_owned()]),
        ]
        .into();
        let spec = TaskSpec {
            description: "x".into(),
            skills: vec!["ts".into(), "docs".into()],
            ..Default::default()
        };
        let s = TaskSpecOrTask::Spec(&spec);
        assert_eq!(
            b.pick(Strategy::LoadBalanced, &s, &people, 0).as_deref(),
            Some("cursor"),
            "ties by id among the idle"
        );
        assert_eq!(
            b.pick(Strategy::SkillBased, &s, &people, 0).as_deref(),
            Some("gemini")
        );
        assert_eq!(
            b.pick(Strategy::RoundRobin, &s, &people, 0).as_deref(),
            Some("claude")
        );
        b.note_round_robin("claude");
        assert_eq!(
            b.pick(Strategy::RoundRobin, &s, &people, 0).as_deref(),
            Some("cursor")
        );
        b.note_round_robin("gemini");
        assert_eq!(
            b.pick(Strategy::RoundRobin, &s, &people, 0).as_deref(),
            Some("claude"),
            "wraps"
        );
        let picked = b.pick(Strategy::Random, &s, &people, 7).unwrap();
        assert!(people.contains_key(&picked));
    }
}
