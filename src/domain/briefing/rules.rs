//! The explicit rules behind a briefing's alerts and suggestions. Each rule reads only
//! [`Facts`]; each suggestion names its rule and says why it fired.
//!
//! Alerts (never cut by a token budget):
//! - `critical`: a critical event the participant has not acknowledged (events_ack).
//! - `failing`: the latest status report of a kind (test, build, merge, lint) is a failure.
//! - `conflict`: a conflict alert addressed to it within the conflict window.
//! - `lock_expiring`: a lock it holds runs out within [`EXPIRY_WARNING_SECS`] (or a fifth of
//!   its lease, if longer).
//! - `review`: a review waits on it (work complete and nobody reviewing, and it is a
//!   navigator; or it is the reviewer of an open review).
//! - `ack`: an ack-required message to it that it has not acknowledged (message_ack).
//!
//! Suggestions, in this order:
//! 1. `review_waiting`: a review waits on it → start or finish that review; control handed
//!    back to it → confirm with `control_received`.
//! 2. `ack_required`: an ack-required message it has not acknowledged → acknowledge it.
//! 3. `failing_test_in_your_file`: a failing report whose summary or details name a file it
//!    changed (its path or file name) → fix it.
//! 4. `ready_task`: a task assigned to it, pending or in progress, whose dependencies are all
//!    completed → start (or continue) it.
//! 5. `claimable_handoff`: a task someone handed off, unassigned and open, whose skills (if
//!    any) it has, handed off by someone else, and it is not an observer → claim it. Newest
//!    handoff first.

use super::describe::clip;
use super::{Facts, Suggestion, describe};

use crate::domain::handshake::Phase;
use crate::domain::role::Role;
use crate::domain::task::Status;

/// A held lock closer than this to its expiry is an alert.
pub const EXPIRY_WARNING_SECS: i64 = 120;
/// Longest quote in an alert.
const ALERT_CHARS: usize = 100;

/// The alerts, most urgent kinds first.
pub fn alerts(f: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    for e in &f.critical {
        // Conflicts and failures addressed below say more than the generic line.
        if e.kind == "change_conflict" || e.kind == "status_reported" {
            continue;
        }
        out.push(format!(
            "critical #{} from {}: {}",
            e.id,
            e.actor.as_deref().unwrap_or("hub"),
            describe(e)
        ));
    }
    for r in f.reports.iter().filter(|r| r.failing) {
        out.push(format!(
            "{} failing: {}",
            r.kind,
            clip(&r.summary, ALERT_CHARS)
        ));
    }
    for c in &f.conflicts {
        out.push(format!(
            "conflict #{} on {}: {}",
            c.id,
            c.payload["filePath"].as_str().unwrap_or("?"),
            clip(c.payload["summary"].as_str().unwrap_or(""), ALERT_CHARS)
        ));
    }
    for l in &f.locks {
        let Some(expires) = l.expires_at else {
            continue;
        };
        let left = (expires - f.now).num_seconds();
        let warn = EXPIRY_WARNING_SECS.max(i64::from(l.lease_secs) / 5);
        if left <= warn {
            out.push(format!(
                "your lock #{} on {} expires in {}s (renew it)",
                l.id,
                l.resource,
                left.max(0)
            ));
        }
    }
    if let Some(text) = review_alert(f) {
        out.push(text);
    }
    for m in &f.unacked {
        out.push(format!(
            "ack needed: message #{} from {}{}",
            m.id,
            m.from,
            m.ack_deadline
                .map(|d| format!(" by {}", d.format("%Y-%m-%dT%H:%M:%SZ")))
                .unwrap_or_default()
        ));
    }
    out
}

fn review_alert(f: &Facts) -> Option<String> {
    let me = &f.me.ai_id;
    match &f.session.phase {
        Phase::AwaitingReview { id, driver, .. }
            if driver != me && f.me.role == Role::Navigator =>
        {
            Some(format!("review waiting: {driver}'s work (handshake #{id})"))
        }
        Phase::Reviewing {
            id,
            driver,
            reviewer,
            ..
        } if reviewer == me => Some(format!(
            "your review of {driver}'s work is open (handshake #{id})"
        )),
        _ => None,
    }
}

/// The suggestions, by rule order.
pub fn suggestions(f: &Facts) -> Vec<Suggestion> {
    let mut out = Vec::new();
    review_waiting(f, &mut out);
    ack_required(f, &mut out);
    failing_in_my_files(f, &mut out);
    ready_tasks(f, &mut out);
    claimable_handoffs(f, &mut out);
    out
}

fn review_waiting(f: &Facts, out: &mut Vec<Suggestion>) {
    let me = &f.me.ai_id;
    let s = match &f.session.phase {
        Phase::AwaitingReview { id, driver, .. }
            if driver != me && f.me.role == Role::Navigator =>
        {
            Suggestion {
                action: format!("start the review: handshake review_start {{acknowledgeId: {id}}}"),
                reason: format!("{driver} finished work and nobody is reviewing it"),
                rule: "review_waiting",
            }
        }
        Phase::Reviewing {
            id,
            driver,
            reviewer,
            ..
        } if reviewer == me => Suggestion {
            action: format!("finish your review: handshake review_complete (#{id})"),
            reason: format!("you started reviewing {driver}'s work"),
            rule: "review_waiting",
        },
        Phase::ControlPassed { driver, .. } if driver == me => Suggestion {
            action: "confirm control: handshake control_received".into(),
            reason: "the review handed control back to you".into(),
            rule: "review_waiting",
        },
        _ => return,
    };
    out.push(s);
}

fn ack_required(f: &Facts, out: &mut Vec<Suggestion>) {
    for m in &f.unacked {
        out.push(Suggestion {
            action: format!(
                "acknowledge message #{}: message_ack {{ids: [{}]}}",
                m.id, m.id
            ),
            reason: format!("{} asked for your acknowledgement", m.from),
            rule: "ack_required",
        });
    }
}

fn failing_in_my_files(f: &Facts, out: &mut Vec<Suggestion>) {
    for r in f.reports.iter().filter(|r| r.failing) {
        let hit = f.my_files.iter().find(|path| {
            let name = path.rsplit('/').next().unwrap_or(path);
            [&r.summary, &r.details].iter().any(|text| {
                text.contains(path.as_str()) || (!name.is_empty() && text.contains(name))
            })
        });
        if let Some(path) = hit {
            out.push(Suggestion {
                action: format!("fix the failing {}: {}", r.kind, clip(&r.summary, 80)),
                reason: format!("the failure names {path}, which you changed"),
                rule: "failing_test_in_your_file",
            });
        }
    }
}

fn ready_tasks(f: &Facts, out: &mut Vec<Suggestion>) {
    let done = |id: &i64| {
        f.tasks
            .iter()
            .any(|t| t.id == *id && t.status == Status::Completed)
    };
    for t in &f.tasks {
        let mine = t.assigned_to.as_deref() == Some(f.me.ai_id.as_str());
        let open = matches!(t.status, Status::Pending | Status::InProgress);
        if !(mine && open && t.dependencies.iter().all(done)) {
            continue;
        }
        let (verb, why) = if t.status == Status::InProgress {
            ("continue", "it is yours and in progress")
        } else if t.dependencies.is_empty() {
            ("start", "it is assigned to you")
        } else {
            (
                "start",
                "it is assigned to you and its dependencies are done",
            )
        };
        out.push(Suggestion {
            action: format!("{verb} task #{}: {}", t.id, clip(&t.description, 80)),
            reason: why.into(),
            rule: "ready_task",
        });
    }
}

fn claimable_handoffs(f: &Facts, out: &mut Vec<Suggestion>) {
    if f.me.role == Role::Observer {
        return;
    }
    let mut handed: Vec<_> = f
        .tasks
        .iter()
        .filter(|t| t.handoff.is_some() && t.assigned_to.is_none() && t.status.is_open())
        .filter(|t| t.skills.is_empty() || t.skills.iter().any(|s| f.me.skills.contains(s)))
        .filter(|t| {
            t.handoff
                .as_ref()
                .is_some_and(|h| h["from"] != f.me.ai_id.as_str())
        })
        .collect();
    handed.sort_by_key(|t| std::cmp::Reverse(t.updated_at));
    for t in handed {
        let h = t.handoff.as_ref().expect("filtered on handoff");
        let from = h["from"].as_str().unwrap_or("someone");
        out.push(Suggestion {
            action: format!("claim task #{}: task claim {{taskId: {}}}", t.id, t.id),
            reason: format!("{from} handed it off: {}", clip(&t.description, 80)),
            rule: "claimable_handoff",
        });
    }
}
