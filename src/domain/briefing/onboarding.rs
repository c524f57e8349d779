//! The onboarding a newcomer gets with `session_join`: the project, the work done, the current
//! focus, the files changed (by whom, how often) and the open tasks that fit its skills and
//! role. Built from the same facts as a briefing, with everything since the session began as
//! news, and under the same token budget rules.

use serde::Serialize;

use super::budget::{Budgeted, fit_by, shorten, shrink, take};
use super::describe::{self, clip};
use super::{Facts, Size, Suggestion};
use crate::domain::role::Role;
use crate::domain::task::Status;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Onboarding {
    pub project_context: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub completed_work: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub current_focus: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub codebase_changes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggested_tasks: Vec<Suggestion>,
    pub size: Size,
}

impl Budgeted for Onboarding {
    fn size_mut(&mut self) -> &mut Size {
        &mut self.size
    }
}

/// Items per list before the budget applies.
const LIST: usize = 10;

type Cut = fn(&mut Onboarding) -> bool;

const CUTS: &[(&str, Cut)] = &[
    ("codebaseChanges", |o| shorten(&mut o.codebase_changes, 3)),
    ("completedWork", |o| shorten(&mut o.completed_work, 3)),
    ("currentFocus", |o| shorten(&mut o.current_focus, 2)),
    ("suggestedTasks", |o| shorten(&mut o.suggested_tasks, 2)),
    ("codebaseChanges", |o| take(&mut o.codebase_changes)),
    ("completedWork", |o| take(&mut o.completed_work)),
    ("suggestedTasks", |o| shorten(&mut o.suggested_tasks, 1)),
    ("currentFocus", |o| shorten(&mut o.current_focus, 1)),
    ("projectContext", |o| shrink(&mut o.project_context, 60)),
    ("all", |o| {
        o.current_focus.clear();
        o.suggested_tasks.clear();
        shrink(&mut o.project_context, 30);
        true
    }),
];

/// The onboarding for the participant in `facts` (gathered with everything as news).
pub fn onboard(facts: &Facts, max_tokens: Option<usize>) -> Onboarding {
    let tasks = |status: Status| facts.tasks.iter().filter(move |t| t.status == status);
    let mut done: Vec<_> = tasks(Status::Completed).collect();
    done.sort_by_key(|t| std::cmp::Reverse(t.completed_at));
    let mut focus: Vec<String> = tasks(Status::InProgress)
        .take(LIST)
        .map(describe::task_line)
        .collect();
    if let Some(d) = &facts.session.driver {
        focus.push(format!("{d} drives"));
    }
    let mut o = Onboarding {
        project_context: project_context(facts),
        completed_work: done
            .into_iter()
            .take(LIST)
            .map(describe::task_line)
            .collect(),
        current_focus: focus,
        codebase_changes: describe::change_analysis(facts, LIST),
        suggested_tasks: suggested(facts),
        size: Size {
            raw_tokens: super::raw_tokens(&facts.raw),
            raw_events: facts.raw.events,
            raw_messages: facts.raw.messages,
            raw_changes: facts.raw.changes,
            ..Size::default()
        },
    };
    fit_by(&mut o, CUTS, max_tokens);
    o
}

fn project_context(f: &Facts) -> String {
    let mut text = format!("{} (project {})", f.session.name, f.session.project);
    if let Some(focus) = &f.session.focus {
        text.push_str(&format!(": {}", clip(focus, 100)));
    }
    text
}

/// Open, unassigned tasks whose skills the newcomer has (or that ask for none), those with
/// done dependencies first. An observer takes no tasks: its suggestions say to ask for a role.
fn suggested(f: &Facts) -> Vec<Suggestion> {
    let done = |id: &i64| {
        f.tasks
            .iter()
            .any(|t| t.id == *id && t.status == Status::Completed)
    };
    let mut fit: Vec<_> = f
        .tasks
        .iter()
        .filter(|t| t.assigned_to.is_none() && t.status == Status::Pending)
        .filter(|t| t.skills.is_empty() || t.skills.iter().any(|s| f.me.skills.contains(s)))
        .collect();
    fit.sort_by_key(|t| (!t.dependencies.iter().all(done), t.id));
    fit.into_iter()
        .take(LIST)
        .map(|t| {
            let skills = t
                .skills
                .iter()
                .filter(|s| f.me.skills.contains(s))
                .cloned()
                .collect::<Vec<_>>();
            let why = if skills.is_empty() {
                "unassigned and open".to_owned()
            } else {
                format!("unassigned; you have {}", skills.join(", "))
            };
            let (action, reason) = if f.me.role == Role::Observer {
                (
                    format!(
                        "ask for a role to take task #{}: {}",
                        t.id,
                        clip(&t.description, 80)
                    ),
                    format!("{why}; observers take no tasks"),
                )
            } else {
                (
                    format!("claim task #{}: {}", t.id, clip(&t.description, 80)),
                    why,
                )
            };
            Suggestion {
                action,
                reason,
                rule: "fits_your_skills",
            }
        })
        .collect()
}
