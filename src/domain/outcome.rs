//! Measuring how a session went from its own event log, for the fitness the genetic algorithm
//! breeds on. Everything counted here is something the hub saw happen; nothing is asked of the
//! agents except what only they know (tests written, tokens), which they report through
//! `status_report` details.
//!
//! | measure | from the log |
//! |---|---|
//! | duration | creation to the completion event |
//! | tasksCompleted | `task_status` events moving a task to `completed` |
//! | handoffs | handshakes that handed work to review (`work_complete` with `needsReview`) and task hand-offs |
//! | successfulHandoffs | of those, handshakes that ended in `control_received` (the reviewed work came back) and task hand-offs whose task was later completed |
//! | conflictsRaised | conflicting changes (one per change, whoever was alerted) and disputes raised |
//! | conflictsResolved | disputes settled (a conflicting change is resolved by settling a dispute on it) |
//! | disputes | disputes raised |
//! | messages | messages sent |
//! | testsWritten, testsPassing | the latest `test` report's details `testsWritten` / `testsPassing` (or `total` / `passed`) |
//! | buildFailures | `build` reports that failed |
//! | errors | failing `test`, `lint` and `merge` reports, plus any `errors` count in report details |
//! | tokensUsed | the sum over participants of the latest `tokensUsed` each reported in status details; if nobody reported, estimated as payload bytes ÷ 4 over the whole log (`tokensEstimated`) |

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::dispute::{DISPUTE_RAISED, DISPUTE_RESOLVED};
use super::event::Event;
use super::fitness::SessionOutcome;
use super::handshake::HANDSHAKE_EVENT;
use super::ledger::CHANGE_CONFLICT;
use super::monitor::STATUS_REPORTED;
use super::task::{TASK_HANDED_OFF, TASK_STATUS};

/// Bytes of event payload per estimated token (a common rule of thumb for English and code).
pub const BYTES_PER_TOKEN: u64 = 4;

/// Event kinds `measure` reads; a store may read only these (plus payload sizes of all).
pub const MEASURED_KINDS: [&str; 7] = [
    TASK_STATUS,
    TASK_HANDED_OFF,
    HANDSHAKE_EVENT,
    CHANGE_CONFLICT,
    DISPUTE_RAISED,
    DISPUTE_RESOLVED,
    STATUS_REPORTED,
];

fn count(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// An agent's count as a u32, saturating (a huge report must not wrap to a small one).
fn small(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The `details` a status report carried, wherever the event's payload holds it.
fn details(payload: &Value) -> Option<&Value> {
    match payload {
        Value::Object(m) => m
            .get("details")
            .filter(|d| d.is_object())
            .or_else(|| m.values().find_map(details)),
        Value::Array(a) => a.iter().find_map(details),
        _ => None,
    }
}

/// Measures a session from its log. `events` need only the kinds in [`MEASURED_KINDS`] and
/// `messages` (the count of messages sent); `payload_bytes` is the size of every payload in the
/// log, for the token estimate.
pub fn measure(
    events: &[Event],
    messages: u32,
    payload_bytes: u64,
    created: DateTime<Utc>,
    completed: DateTime<Utc>,
) -> SessionOutcome {
    let mut o = SessionOutcome {
        duration_secs: (completed - created).num_seconds().max(0) as u64,
        messages,
        ..Default::default()
    };
    let mut completed_tasks = BTreeSet::new();
    let mut handed_tasks = BTreeSet::new();
    let mut conflicting_changes = BTreeSet::new();
    let mut tokens: BTreeMap<String, u64> = BTreeMap::new();
    let mut latest_tests: Option<(u32, u32)> = None;
    for e in events {
        let p = &e.payload;
        match e.kind.as_str() {
            TASK_STATUS if p["to"] == "completed" && p["from"] != "completed" => {
                if let Some(id) = p["taskId"].as_i64() {
                    completed_tasks.insert(id);
                }
            }
            TASK_HANDED_OFF => {
                if let Some(id) = p["taskId"].as_i64() {
                    handed_tasks.insert(id);
                }
            }
            HANDSHAKE_EVENT => match p["step"].as_str() {
                Some("work_complete") if p["needsReview"] == true => o.handoffs += 1,
                Some("control_received") => o.successful_handoffs += 1,
                _ => {}
            },
            // A conflict between changes (alerts about permissions or locks name no changes).
            // One alert per recipient of one change: the change ids it conflicts with and the
            // file name the change.
            CHANGE_CONFLICT if p["changes"].as_array().is_some_and(|c| !c.is_empty()) => {
                conflicting_changes.insert((p["filePath"].to_string(), p["changes"].to_string()));
            }
            DISPUTE_RAISED => o.disputes += 1,
            DISPUTE_RESOLVED => o.conflicts_resolved += 1,
            STATUS_REPORTED => {
                let d = details(p);
                let failed = p["status"] == "fail";
                match p["kind"].as_str() {
                    Some("build") if failed => {
                        o.build_failures = o.build_failures.saturating_add(1)
                    }
                    Some("test" | "lint" | "merge") if failed => {
                        o.errors = o.errors.saturating_add(1)
                    }
                    _ => {}
                }
                if let Some(d) = d {
                    if let Some(n) = count(&d["errors"]) {
                        o.errors = o.errors.saturating_add(small(n));
                    }
                    if let (Some(who), Some(n)) = (&e.actor, count(&d["tokensUsed"])) {
                        tokens.insert(who.clone(), n);
                    }
                    if p["kind"] == "test" {
                        let written = count(&d["testsWritten"]).or_else(|| count(&d["total"]));
                        let passing = count(&d["testsPassing"]).or_else(|| count(&d["passed"]));
                        if let (Some(w), Some(p)) = (written, passing) {
                            latest_tests = Some((small(w), small(p.min(w))));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    o.tasks_completed = completed_tasks.len() as u32;
    // A task hand-off is a hand-off; it succeeded when the task was then completed.
    o.handoffs += handed_tasks.len() as u32;
    o.successful_handoffs += handed_tasks.intersection(&completed_tasks).count() as u32;
    o.successful_handoffs = o.successful_handoffs.min(o.handoffs);
    o.conflicts_raised = small(conflicting_changes.len() as u64).saturating_add(o.disputes);
    o.conflicts_resolved = o.conflicts_resolved.min(o.conflicts_raised);
    if let Some((w, p)) = latest_tests {
        o.tests_written = w;
        o.tests_passing = p;
    }
    if tokens.is_empty() {
        o.tokens_used = payload_bytes / BYTES_PER_TOKEN;
        o.tokens_estimated = true;
    } else {
        o.tokens_used = tokens.values().fold(0u64, |a, b| a.saturating_add(*b));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::Priority;
    use serde_json::json;

    fn ev(kind: &str, actor: &str, payload: Value) -> Event {
        Event {
            id: 0,
            session_id: uuid::Uuid::nil(),
            kind: kind.into(),
            actor: Some(actor.into()),
            priority: Priority::Routine,
            payload,
            at: Utc::now(),
            to: None,
        }
    }

    #[test]
    fn counts_what_the_log_shows() {
        let t0 = Utc::now();
        let events = vec![
            ev(
                TASK_STATUS,
                "a",
                json!({"taskId": 1, "from": "in_progress", "to": "completed"}),
            ),
            ev(
                TASK_STATUS,
                "a",
                json!({"taskId": 2, "from": "pending", "to": "in_progress"}),
            ),
            ev(TASK_HANDED_OFF, "a", json!({"taskId": 2})),
            ev(TASK_HANDED_OFF, "a", json!({"taskId": 1})),
            ev(
                HANDSHAKE_EVENT,
                "a",
                json!({"step": "work_complete", "needsReview": true}),
            ),
            ev(
                HANDSHAKE_EVENT,
                "a",
                json!({"step": "work_complete", "needsReview": false}),
            ),
            ev(HANDSHAKE_EVENT, "a", json!({"step": "control_received"})),
            ev(
                CHANGE_CONFLICT,
                "a",
                json!({"filePath": "x", "changes": [3]}),
            ),
            ev(
                CHANGE_CONFLICT,
                "b",
                json!({"filePath": "x", "changes": [3]}),
            ),
            ev(DISPUTE_RAISED, "a", json!({})),
            ev(DISPUTE_RESOLVED, "b", json!({})),
            ev(
                STATUS_REPORTED,
                "a",
                json!({"kind": "build", "status": "fail"}),
            ),
            ev(
                STATUS_REPORTED,
                "a",
                json!({"kind": "test", "status": "fail", "changes": [{"value": {"details": {"testsWritten": 5, "testsPassing": 3, "tokensUsed": 1000}}}]}),
            ),
            ev(
                STATUS_REPORTED,
                "b",
                json!({"kind": "test", "status": "pass", "changes": [{"value": {"details": {"total": 6, "passed": 6, "tokensUsed": 500}}}]}),
            ),
        ];
        let o = measure(&events, 7, 4000, t0, t0 + chrono::TimeDelta::seconds(90));
        assert_eq!(o.duration_secs, 90);
        assert_eq!(o.tasks_completed, 1);
        assert_eq!((o.handoffs, o.successful_handoffs), (3, 2));
        assert_eq!(
            (o.conflicts_raised, o.conflicts_resolved, o.disputes),
            (2, 1, 1)
        );
        assert_eq!(o.messages, 7);
        assert_eq!((o.tests_written, o.tests_passing), (6, 6));
        assert_eq!((o.build_failures, o.errors), (1, 1));
        assert_eq!((o.tokens_used, o.tokens_estimated), (1500, false));
        o.validate().unwrap();
    }

    #[test]
    fn tokens_are_estimated_when_nobody_reported() {
        let t0 = Utc::now();
        let o = measure(&[], 0, 40_000, t0, t0);
        assert_eq!((o.tokens_used, o.tokens_estimated), (10_000, true));
        assert_eq!(o.collaboration_smoothness(), 1.0);
    }
}
