//! The briefing a participant gets when it comes back (`session_resume`, the `resume` prompt):
//! its bearings in a few hundred tokens instead of a re-read of the whole history.
//!
//! Deterministic and built only from recorded facts: the store gathers [`Facts`] with bounded
//! queries (counts and the newest rows, never the whole log), [`brief`] turns them into a
//! [`Briefing`], and [`budget::fit`] cuts it to the caller's token budget, least important
//! parts first, never the alerts. The rules that raise alerts and suggestions are in
//! [`rules`], each documented with when it fires.
//!
//! "Since you were last active" means after the newer of the participant's own last event and
//! its acknowledged cursor: what it did itself, or already acknowledged, is never news.
//!
//! A briefing is a pure read: it marks nothing read or acknowledged.

pub mod budget;
mod describe;
pub mod onboarding;
pub mod rules;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::event::Event;
use super::handshake::Phase;
use super::lock::Lock;
use super::message::MessageView;
use super::role::Role;
use super::session::SessionStatus;
use super::task::{Status, Task};
pub use describe::{describe, humanize_ago, humanize_span};
pub use onboarding::{Onboarding, onboard};

/// How much to rebuild and say (the concept's resume strategies).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Short breaks: the latest context, the last 10 messages, a minimal briefing.
    Quick,
    /// Day-to-day: 50 messages, a detailed briefing with the latest status reports.
    #[default]
    Standard,
    /// Long breaks: 100 messages, everything, with change analysis and every suggestion.
    Deep,
}

impl Strategy {
    /// The default for a participant away this long: under an hour quick, under a day
    /// standard, longer deep.
    pub fn for_absence(secs: i64) -> Strategy {
        match secs {
            s if s < 3_600 => Strategy::Quick,
            s if s < 86_400 => Strategy::Standard,
            _ => Strategy::Deep,
        }
    }

    /// Messages the briefing lists at most.
    pub fn messages(self) -> i64 {
        match self {
            Strategy::Quick => 10,
            Strategy::Standard => 50,
            Strategy::Deep => 100,
        }
    }

    /// Items per list (tasks, discoveries, files per collaborator) before the budget applies.
    fn list_len(self) -> usize {
        match self {
            Strategy::Quick => 5,
            Strategy::Standard => 10,
            Strategy::Deep => 25,
        }
    }
}

/// The participant being briefed.
#[derive(Debug, Clone)]
pub struct Me {
    pub ai_id: String,
    pub role: Role,
    pub skills: Vec<String>,
    pub joined_at: NaiveDateTime,
}

/// The session as the briefing describes it.
#[derive(Debug, Clone)]
pub struct SessionFacts {
    pub id: uuid::Uuid,
    pub name: String,
    pub project: String,
    pub status: SessionStatus,
    pub created_at: NaiveDateTime,
    pub driver: Option<String>,
    pub phase: Phase,
    /// What the shared context says the work is (`summary`, `projectContext` or
    /// `activeWork.currentFocus`, the first that is a string).
    pub focus: Option<String>,
}

/// Size of the history a briefing stands for: what the participant would otherwise read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawHistory {
    /// Events after the horizon the participant can see, and their payload bytes.
    pub events: i64,
    pub bytes: i64,
    /// Of them, messages.
    pub messages: i64,
    /// File changes after the horizon, and the bytes of their diffs.
    pub changes: i64,
    pub diff_bytes: i64,
}

/// What another participant did after the horizon.
#[derive(Debug, Clone)]
pub struct Collaborator {
    pub ai_id: String,
    /// Its newest event after the horizon.
    pub last: Event,
    /// Events by kind (count), most frequent first.
    pub counts: Vec<(String, i64)>,
    /// Files it changed (path, times), most changed first.
    pub files: Vec<(String, i64)>,
}

/// One latest status report (`monitoring.<kind>` in the shared context).
#[derive(Debug, Clone)]
pub struct Report {
    pub kind: String,
    pub failing: bool,
    pub summary: String,
    pub by: Option<String>,
    /// Its details, as text, for matching file names.
    pub details: String,
}

/// Everything the briefing is built from, gathered by the store and the session actor.
#[derive(Debug, Clone)]
pub struct Facts {
    pub now: NaiveDateTime,
    pub me: Me,
    pub session: SessionFacts,
    /// Events after this id are news.
    pub horizon: i64,
    /// When the participant last did something itself (its newest event), if ever.
    pub last_active: Option<NaiveDateTime>,
    /// That event.
    pub my_last: Option<Event>,
    pub raw: RawHistory,
    pub collaborators: Vec<Collaborator>,
    /// Files the participant changed in this session, most recent first.
    pub my_files: Vec<String>,
    pub tasks: Vec<Task>,
    /// Messages the participant can see, newest first (at most the strategy's count).
    pub messages: Vec<MessageView>,
    /// Ack-required messages to the participant it has not acknowledged, oldest first.
    pub unacked: Vec<MessageView>,
    pub reports: Vec<Report>,
    /// Discoveries after the horizon, newest first.
    pub discoveries: Vec<Event>,
    /// Conflict alerts addressed to the participant within the conflict window, newest first.
    pub conflicts: Vec<Event>,
    /// Task handoffs after the horizon, newest first.
    pub handoffs: Vec<Event>,
    /// Critical events it has not acknowledged and that still ask something of it (settled
    /// alerts left out: `domain::settle`), oldest first.
    pub critical: Vec<Event>,
    /// Locks it holds in this session.
    pub locks: Vec<Lock>,
}

/// A next action with the rule that suggested it and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    pub action: String,
    pub reason: String,
    pub rule: &'static str,
}

/// What one collaborator did while the participant was away.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Update {
    pub last_action: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

/// One handoff, newest first; an older handoff of a task handed off again is superseded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HandoffLine {
    pub task_id: i64,
    pub from: String,
    pub text: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub superseded: bool,
}

/// One message line, newest first; an older one in a thread with a newer is superseded.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageLine {
    pub id: i64,
    pub from: String,
    pub text: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub superseded: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub needs_ack: bool,
}

/// How big the briefing is and how big the history it replaces (tokens ≈ UTF-8 bytes / 4).
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Size {
    pub tokens: usize,
    pub raw_tokens: i64,
    pub raw_events: i64,
    pub raw_messages: i64,
    pub raw_changes: i64,
    pub saved_tokens: i64,
    /// Parts cut to fit the budget, in the order they were cut.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub omitted: Vec<&'static str>,
}

/// The briefing, in the concept's fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Briefing {
    pub strategy: Strategy,
    pub last_active: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session_duration: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub your_last_activity: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<Suggestion>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub collaborator_updates: BTreeMap<String, Update>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_tasks: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub in_progress: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub completed: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub new_issues: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub handoffs: Vec<HandoffLine>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageLine>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub status_reports: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub change_analysis: Vec<String>,
    pub size: Size,
}

/// Builds the briefing for `strategy`, then fits it into `max_tokens` if given.
pub fn brief(facts: &Facts, strategy: Strategy, max_tokens: Option<usize>) -> Briefing {
    let n = strategy.list_len();
    let me = &facts.me.ai_id;
    let since = facts.last_active.unwrap_or(facts.me.joined_at);
    let task_line = |t: &Task| describe::task_line(t);
    let tasks = |status: Status| facts.tasks.iter().filter(move |t| t.status == status);
    // Pending: the participant's own first, then unassigned, then the rest.
    let mut pending: Vec<&Task> = tasks(Status::Pending).collect();
    pending.sort_by_key(|t| match t.assigned_to.as_deref() {
        Some(a) if a == me => 0,
        None => 1,
        Some(_) => 2,
    });
    let completed_since: Vec<String> = {
        let mut done: Vec<&Task> = tasks(Status::Completed)
            .filter(|t| t.completed_at.is_some_and(|c| c > since))
            .collect();
        done.sort_by_key(|t| std::cmp::Reverse(t.completed_at));
        done.into_iter().take(n).map(task_line).collect()
    };
    let detailed = strategy != Strategy::Quick;
    let mut briefing = Briefing {
        strategy,
        last_active: facts
            .last_active
            .map(|t| humanize_ago(facts.now, t))
            .unwrap_or_else(|| "never".into()),
        session_duration: format!(
            "{} total",
            humanize_span((facts.now - facts.session.created_at).num_seconds())
        ),
        summary: describe::summary(facts),
        your_last_activity: facts.my_last.as_ref().map(|e| {
            format!(
                "{} ({})",
                describe(e),
                humanize_ago(facts.now, e.at.naive_utc())
            )
        }),
        alerts: rules::alerts(facts),
        suggestions: rules::suggestions(facts),
        collaborator_updates: facts
            .collaborators
            .iter()
            .map(|c| (c.ai_id.clone(), describe::update(c, n)))
            .collect(),
        pending_tasks: pending.into_iter().take(n).map(task_line).collect(),
        in_progress: tasks(Status::InProgress).take(n).map(task_line).collect(),
        blocked: tasks(Status::Blocked).take(n).map(task_line).collect(),
        completed: if detailed { completed_since } else { vec![] },
        new_issues: facts.discoveries.iter().take(n).map(describe).collect(),
        handoffs: handoff_lines(facts),
        messages: message_lines(facts),
        status_reports: if detailed {
            facts.reports.iter().map(describe::report).collect()
        } else {
            vec![]
        },
        change_analysis: if strategy == Strategy::Deep {
            describe::change_analysis(facts, n)
        } else {
            vec![]
        },
        size: Size {
            raw_tokens: raw_tokens(&facts.raw),
            raw_events: facts.raw.events,
            raw_messages: facts.raw.messages,
            raw_changes: facts.raw.changes,
            ..Size::default()
        },
    };
    if strategy != Strategy::Deep {
        briefing.suggestions.truncate(if detailed { 5 } else { 3 });
    }
    budget::fit(&mut briefing, max_tokens);
    briefing
}

/// The history's size in tokens: its events' payloads and its diffs.
pub(super) fn raw_tokens(raw: &RawHistory) -> i64 {
    let per = budget::BYTES_PER_TOKEN as i64;
    (raw.bytes + raw.diff_bytes + per - 1) / per
}

/// Messages newest first; an older message of a thread that has a newer one listed is
/// superseded, so the reader acts on the latest word.
fn message_lines(facts: &Facts) -> Vec<MessageLine> {
    let mut seen_threads = std::collections::BTreeSet::new();
    facts
        .messages
        .iter()
        .map(|m| MessageLine {
            id: m.id,
            from: m.from.clone(),
            text: describe::message_text(&m.body),
            superseded: !seen_threads.insert(m.thread),
            needs_ack: m.requires_ack && m.acked == Some(false),
        })
        .collect()
}

/// Handoffs newest first; an older handoff of a task listed again is superseded, so the reader
/// acts on the latest. The latest of each task carries the notes its task holds.
fn handoff_lines(facts: &Facts) -> Vec<HandoffLine> {
    let mut seen = std::collections::BTreeSet::new();
    facts
        .handoffs
        .iter()
        .map(|e| {
            let task_id = e.payload["taskId"].as_i64().unwrap_or(0);
            let latest = seen.insert(task_id);
            let notes = facts
                .tasks
                .iter()
                .find(|t| t.id == task_id && latest)
                .and_then(|t| t.handoff.as_ref())
                .and_then(|h| h["context"]["notes"].as_str())
                .map(|n| format!(": {}", describe::clip(n, 100)))
                .unwrap_or_default();
            HandoffLine {
                task_id,
                from: e.actor.clone().unwrap_or_default(),
                text: format!(
                    "{}{notes}",
                    describe::clip(e.payload["description"].as_str().unwrap_or(""), 80)
                ),
                superseded: !latest,
            }
        })
        .collect()
}

/// The first string among the context's usual summary places.
pub fn focus_of(context: &Value) -> Option<String> {
    [
        &context["summary"],
        &context["projectContext"],
        &context["activeWork"]["currentFocus"],
    ]
    .into_iter()
    .find_map(|v| v.as_str().map(str::to_owned))
}
