//! The driver/navigator handshake (concept §4) as a state machine. "Control" is the right to
//! change code:
//!
//! ```text
//! Idle ──work_complete{needsReview}──▶ AwaitingReview ──review_start──▶ Reviewing
//!   ▲        (driver; control goes to the review)       (a navigator)      │
//!   │                                                                review_complete
//!   │                                                 {feedback, passControl}
//!   └──control_received{nextAction}── ControlPassed ◀──passControl: true──┤
//!        (driver; control is back)                                        ▼
//!                                                 Reviewed (control stays with the reviewer
//!                                                 until a later review_complete passes it)
//! ```
//!
//! `cancel` by the driver ends a pending handshake (awaiting or under review). A review not
//! started within the session's review timeout raises one alert. Each step is an event; the
//! step that hands control to someone is critical for them.

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::DomainError;
use super::event::{NewEvent, Priority};
use super::genome::Genome;
use super::role::Role;

pub const HANDSHAKE_EVENT: &str = "handshake";
/// Directed to the driver when a reviewer hands control back: critical for it.
pub const CONTROL_PASSED: &str = "control_passed";
pub const REVIEW_OVERDUE: &str = "review_overdue";
const MAX_TEXT_CHARS: usize = 2000;
const MAX_ITEMS: usize = 100;

/// Where the handshake stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    /// The driver has control.
    #[default]
    Idle,
    /// The driver finished work; control is with the review, which nobody started yet.
    AwaitingReview {
        id: i64,
        driver: String,
        #[serde(with = "crate::domain::utc")]
        since: NaiveDateTime,
    },
    Reviewing {
        id: i64,
        driver: String,
        reviewer: String,
        #[serde(with = "crate::domain::utc")]
        since: NaiveDateTime,
    },
    /// Reviewed without passing control: the reviewer holds it.
    Reviewed {
        id: i64,
        driver: String,
        reviewer: String,
    },
    /// Control handed back; the driver confirms with `control_received`.
    ControlPassed {
        id: i64,
        driver: String,
        reviewer: String,
    },
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::AwaitingReview { .. } => "awaiting_review",
            Phase::Reviewing { .. } => "reviewing",
            Phase::Reviewed { .. } => "reviewed",
            Phase::ControlPassed { .. } => "control_passed",
        }
    }

    /// The handshake id (the event id of its `work_complete`), when one is open.
    pub fn id(&self) -> Option<i64> {
        match self {
            Phase::Idle => None,
            Phase::AwaitingReview { id, .. }
            | Phase::Reviewing { id, .. }
            | Phase::Reviewed { id, .. }
            | Phase::ControlPassed { id, .. } => Some(*id),
        }
    }

    /// Does the driver hold control (may it change code)?
    pub fn driver_has_control(&self) -> bool {
        matches!(self, Phase::Idle)
    }

    /// Is this a boundary where roles may change (no handshake open)?
    pub fn at_boundary(&self) -> bool {
        matches!(self, Phase::Idle)
    }

    /// What may happen next, for refusals that say so.
    pub fn allowed_next(&self) -> &'static str {
        match self {
            Phase::Idle => "the driver's work_complete",
            Phase::AwaitingReview { .. } => "a navigator's review_start, or the driver's cancel",
            Phase::Reviewing { .. } => "the reviewer's review_complete, or the driver's cancel",
            Phase::Reviewed { .. } => "the reviewer's review_complete with passControl: true",
            Phase::ControlPassed { .. } => "the driver's control_received",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Feedback {
    pub approved: bool,
    #[serde(default)]
    pub suggestions: Vec<String>,
    #[serde(default)]
    pub issues: Vec<String>,
}

/// A handshake step as a participant asks for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    WorkComplete {
        changes: Vec<String>,
        needs_review: bool,
        message: Option<String>,
    },
    ReviewStart {
        acknowledge_id: i64,
    },
    ReviewComplete {
        feedback: Feedback,
        pass_control: bool,
    },
    ControlReceived {
        next_action: Option<String>,
    },
    Cancel {
        reason: Option<String>,
    },
}

impl Step {
    pub fn name(&self) -> &'static str {
        match self {
            Step::WorkComplete { .. } => "work_complete",
            Step::ReviewStart { .. } => "review_start",
            Step::ReviewComplete { .. } => "review_complete",
            Step::ControlReceived { .. } => "control_received",
            Step::Cancel { .. } => "cancel",
        }
    }
}

/// A step the machine accepted: the events to write and the phase after them. `next` may need
/// the id of the first event (a new handshake is named by its `work_complete` event):
/// `Planned::phase_for` fills it in.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub events: Vec<NewEvent>,
    next: Phase,
}

impl Planned {
    /// The phase once the first event got `first_event_id`.
    pub fn phase_for(&self, first_event_id: i64) -> Phase {
        match &self.next {
            Phase::AwaitingReview {
                id: 0,
                driver,
                since,
            } => Phase::AwaitingReview {
                id: first_event_id,
                driver: driver.clone(),
                since: *since,
            },
            other => other.clone(),
        }
    }
}

impl Step {
    /// A `work_complete` that asks for no review: the session's review requirement may
    /// overrule it (`Unreviewed::review_required`).
    pub fn skips_review(&self) -> bool {
        matches!(
            self,
            Step::WorkComplete {
                needs_review: false,
                ..
            }
        )
    }

    /// This `work_complete`, asking for review.
    pub fn with_review(self) -> Step {
        match self {
            Step::WorkComplete {
                changes, message, ..
            } => Step::WorkComplete {
                changes,
                needs_review: true,
                message,
            },
            other => other,
        }
    }
}

impl Planned {
    /// Says on the step's event why the hub made it ask for review.
    pub fn note_review_required(&mut self, why: &str) {
        if let Some(e) = self.events.first_mut() {
            e.payload["reviewRequired"] = json!(why);
        }
    }
}

/// Does this handshake event end a review? Work recorded before the last such step counts as
/// reviewed.
pub fn ends_review(payload: &Value) -> bool {
    matches!(
        payload["step"].as_str(),
        Some("review_complete" | "control_received")
    )
}

/// The driver's work since the last review: its changes in the ledger after the last
/// `review_complete` or `control_received` (or since the session began).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unreviewed {
    pub files: BTreeSet<String>,
    pub lines: u64,
}

fn count(n: u64, one: &str) -> String {
    format!("{n} {one}{}", if n == 1 { "" } else { "s" })
}

impl Unreviewed {
    pub fn add(&mut self, file: &str, ranges: &[(u32, u32)]) {
        self.files.insert(file.to_owned());
        self.lines += super::ledger::lines_touched(ranges);
    }

    /// Why `genome`'s `reviewRequirement` wants this work reviewed; `None` when it does not.
    pub fn review_required(&self, genome: &Genome) -> Option<String> {
        let files = self.files.len();
        if !genome.review_required(files, self.lines) {
            return None;
        }
        let (f, l) = genome.review_thresholds()?;
        let threshold = if (f, l) == (1, 1) {
            "every change".to_owned()
        } else {
            format!("{} or {}", count(f as u64, "file"), count(l, "line"))
        };
        Some(format!(
            "{}, {} since the last review ≥ reviewRequirement {} threshold ({threshold})",
            count(files as u64, "file"),
            count(self.lines, "line"),
            genome.review_requirement
        ))
    }
}

fn refuse(phase: &Phase, step: &Step, why: impl std::fmt::Display) -> DomainError {
    DomainError::conflict(
        "handshake_refused",
        format!(
            "{} refused: {why}. The handshake is {}; allowed next: {}",
            step.name(),
            phase.name(),
            phase.allowed_next()
        ),
    )
}

fn check_text(field: &'static str, text: &str) -> Result<(), DomainError> {
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(DomainError::invalid(
            field,
            format!("at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    Ok(())
}

fn check_list(field: &'static str, items: &[String]) -> Result<(), DomainError> {
    if items.len() > MAX_ITEMS {
        return Err(DomainError::invalid(
            field,
            format!("at most {MAX_ITEMS} items"),
        ));
    }
    items.iter().try_for_each(|i| check_text(field, i))
}

/// Checks `step` by `who` (with `role`) against `phase`; `driver` is the session's driver.
pub fn plan(
    phase: &Phase,
    step: &Step,
    who: &str,
    role: Role,
    driver: Option<&str>,
    at: NaiveDateTime,
) -> Result<Planned, DomainError> {
    let event = |priority, payload: Value| NewEvent {
        kind: HANDSHAKE_EVENT,
        actor: Some(who.to_owned()),
        priority,
        payload,
        to: None,
    };
    match (phase, step) {
        (
            Phase::Idle,
            Step::WorkComplete {
                changes,
                needs_review,
                message,
            },
        ) => {
            if role != Role::Driver {
                return Err(refuse(phase, step, format!("{who} is not the driver")));
            }
            check_list("changes", changes)?;
            check_text("message", message.as_deref().unwrap_or(""))?;
            let payload = json!({
                "step": "work_complete",
                "changes": changes,
                "needsReview": needs_review,
                "message": message,
            });
            if !needs_review {
                // Announced, no review: control stays with the driver.
                return Ok(Planned {
                    events: vec![event(Priority::Routine, payload)],
                    next: Phase::Idle,
                });
            }
            Ok(Planned {
                events: vec![event(Priority::Important, payload)],
                next: Phase::AwaitingReview {
                    id: 0,
                    driver: who.to_owned(),
                    since: at,
                },
            })
        }
        (Phase::AwaitingReview { id, driver, .. }, Step::ReviewStart { acknowledge_id }) => {
            if role != Role::Navigator {
                return Err(refuse(phase, step, format!("{who} is not a navigator")));
            }
            if acknowledge_id != id {
                return Err(DomainError::invalid(
                    "acknowledgeId",
                    format!("the open handshake is {id}, not {acknowledge_id}"),
                ));
            }
            Ok(Planned {
                events: vec![event(
                    Priority::Important,
                    json!({"step": "review_start", "handshakeId": id, "reviewer": who}),
                )],
                next: Phase::Reviewing {
                    id: *id,
                    driver: driver.clone(),
                    reviewer: who.to_owned(),
                    since: at,
                },
            })
        }
        (
            Phase::Reviewing {
                id,
                driver,
                reviewer,
                ..
            }
            | Phase::Reviewed {
                id,
                driver,
                reviewer,
            },
            Step::ReviewComplete {
                feedback,
                pass_control,
            },
        ) => {
            if who != reviewer {
                return Err(refuse(
                    phase,
                    step,
                    format!("{reviewer} is reviewing, not {who}"),
                ));
            }
            check_list("feedback.suggestions", &feedback.suggestions)?;
            check_list("feedback.issues", &feedback.issues)?;
            let mut events = vec![event(
                Priority::Important,
                json!({
                    "step": "review_complete",
                    "handshakeId": id,
                    "feedback": feedback,
                    "passControl": pass_control,
                }),
            )];
            let next = if *pass_control {
                // Control handed to the driver: critical for it, and for it alone.
                events.push(NewEvent {
                    kind: CONTROL_PASSED,
                    // Said by the hub: a directed event is also seen by its actor, and this one
                    // is for the driver alone.
                    actor: None,
                    priority: Priority::Critical,
                    payload: json!({
                        "by": who,
                        "handshakeId": id,
                        "approved": feedback.approved,
                        "summary": format!(
                            "{who} passed control back ({}): confirm with control_received",
                            if feedback.approved { "approved" } else { "changes requested" }
                        ),
                    }),
                    to: Some(driver.clone()),
                });
                Phase::ControlPassed {
                    id: *id,
                    driver: driver.clone(),
                    reviewer: reviewer.clone(),
                }
            } else {
                Phase::Reviewed {
                    id: *id,
                    driver: driver.clone(),
                    reviewer: reviewer.clone(),
                }
            };
            Ok(Planned { events, next })
        }
        (Phase::ControlPassed { id, driver: d, .. }, Step::ControlReceived { next_action }) => {
            if who != d || driver != Some(who) {
                return Err(refuse(
                    phase,
                    step,
                    format!("control was passed to {d}, not {who}"),
                ));
            }
            check_text("nextAction", next_action.as_deref().unwrap_or(""))?;
            Ok(Planned {
                events: vec![event(
                    Priority::Important,
                    json!({"step": "control_received", "handshakeId": id, "nextAction": next_action}),
                )],
                next: Phase::Idle,
            })
        }
        (
            Phase::AwaitingReview { id, driver: d, .. } | Phase::Reviewing { id, driver: d, .. },
            Step::Cancel { reason },
        ) => {
            if who != d {
                return Err(refuse(
                    phase,
                    step,
                    format!("only {d}, who started it, may cancel"),
                ));
            }
            check_text("reason", reason.as_deref().unwrap_or(""))?;
            Ok(Planned {
                events: vec![event(
                    Priority::Important,
                    json!({"step": "cancel", "handshakeId": id, "reason": reason}),
                )],
                next: Phase::Idle,
            })
        }
        _ => Err(refuse(phase, step, "not a step from here")),
    }
}

/// The alert when a handshake waits for a reviewer longer than the timeout.
pub fn review_overdue(phase: &Phase, timeout_secs: u32) -> Option<NewEvent> {
    let Phase::AwaitingReview { id, driver, .. } = phase else {
        return None;
    };
    Some(NewEvent {
        kind: REVIEW_OVERDUE,
        actor: None,
        priority: Priority::Important,
        payload: json!({
            "handshakeId": id,
            "driver": driver,
            "summary": format!("{driver}'s work has waited {timeout_secs}s for a review: a navigator should review_start {id}"),
        }),
        to: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> NaiveDateTime {
        crate::domain::now()
    }

    fn work(needs_review: bool) -> Step {
        Step::WorkComplete {
            changes: vec!["refactored auth module".into()],
            needs_review,
            message: Some("please review".into()),
        }
    }

    /// Runs `step` and returns the phase after it (the first event gets id `id`).
    fn go(phase: &Phase, step: Step, who: &str, role: Role, id: i64) -> Result<Phase, DomainError> {
        plan(phase, &step, who, role, Some("claude"), at()).map(|p| p.phase_for(id))
    }

    #[test]
    fn the_concepts_four_steps() {
        let p = go(&Phase::Idle, work(true), "claude", Role::Driver, 10).unwrap();
        assert!(matches!(p, Phase::AwaitingReview { id: 10, .. }));
        assert!(!p.driver_has_control());
        let p = go(
            &p,
            Step::ReviewStart { acknowledge_id: 10 },
            "gemini",
            Role::Navigator,
            11,
        )
        .unwrap();
        let done = Step::ReviewComplete {
            feedback: Feedback {
                approved: true,
                suggestions: vec!["Add null check on line 45".into()],
                issues: vec![],
            },
            pass_control: true,
        };
        let planned = plan(&p, &done, "gemini", Role::Navigator, Some("claude"), at()).unwrap();
        assert_eq!(planned.events.len(), 2);
        assert_eq!(planned.events[1].priority, Priority::Critical);
        assert_eq!(planned.events[1].to.as_deref(), Some("claude"));
        let p = planned.phase_for(12);
        let p = go(
            &p,
            Step::ControlReceived {
                next_action: Some("implementing suggestions".into()),
            },
            "claude",
            Role::Driver,
            14,
        )
        .unwrap();
        assert_eq!(p, Phase::Idle);
        assert!(p.driver_has_control());
    }

    #[test]
    fn invalid_steps_say_what_is_allowed() {
        let err = go(&Phase::Idle, work(true), "gemini", Role::Navigator, 1).unwrap_err();
        assert!(err.to_string().contains("driver's work_complete"), "{err}");
        let p = go(&Phase::Idle, work(true), "claude", Role::Driver, 1).unwrap();
        let err = go(
            &p,
            Step::ReviewStart { acknowledge_id: 1 },
            "cursor",
            Role::Observer,
            2,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a navigator"), "{err}");
        assert!(
            go(
                &p,
                Step::ReviewStart { acknowledge_id: 9 },
                "gemini",
                Role::Navigator,
                2
            )
            .is_err()
        );
        let err = go(
            &p,
            Step::ControlReceived { next_action: None },
            "claude",
            Role::Driver,
            2,
        )
        .unwrap_err();
        assert!(err.to_string().contains("awaiting_review"), "{err}");
        // Only the reviewer completes; only the initiator cancels.
        let r = go(
            &p,
            Step::ReviewStart { acknowledge_id: 1 },
            "gemini",
            Role::Navigator,
            2,
        )
        .unwrap();
        let complete = Step::ReviewComplete {
            feedback: Feedback::default(),
            pass_control: false,
        };
        assert!(go(&r, complete.clone(), "codex", Role::Navigator, 3).is_err());
        assert!(
            go(
                &r,
                Step::Cancel { reason: None },
                "gemini",
                Role::Navigator,
                3
            )
            .is_err()
        );
        assert_eq!(
            go(&r, Step::Cancel { reason: None }, "claude", Role::Driver, 3).unwrap(),
            Phase::Idle
        );
        // Reviewed without passing control: the reviewer passes it later.
        let kept = go(&r, complete, "gemini", Role::Navigator, 3).unwrap();
        assert!(matches!(kept, Phase::Reviewed { .. }));
        let passed = go(
            &kept,
            Step::ReviewComplete {
                feedback: Feedback::default(),
                pass_control: true,
            },
            "gemini",
            Role::Navigator,
            4,
        )
        .unwrap();
        assert!(matches!(passed, Phase::ControlPassed { .. }));
    }

    #[test]
    fn work_without_review_keeps_control() {
        let p = go(&Phase::Idle, work(false), "claude", Role::Driver, 1).unwrap();
        assert_eq!(p, Phase::Idle);
    }

    #[test]
    fn review_requirement_overrules_work_without_review() {
        let genome = |r| Genome {
            review_requirement: r,
            ..Genome::default()
        };
        let mut done = Unreviewed::default();
        assert_eq!(done.review_required(&genome(1.0)), None, "nothing done");
        done.add("/a.rs", &[(1, 1)]);
        assert_eq!(
            done.review_required(&genome(1.0)).as_deref(),
            Some(
                "1 file, 1 line since the last review ≥ reviewRequirement 1 threshold (every change)"
            )
        );
        assert_eq!(done.review_required(&genome(0.0)), None);
        for (i, f) in ["/b.rs", "/c.rs", "/d.rs"].into_iter().enumerate() {
            done.add(f, &[(1, 50 + i as u32 * 10)]);
        }
        assert_eq!(done.lines, 1 + 50 + 60 + 70);
        assert_eq!(
            done.review_required(&genome(0.6)).as_deref(),
            Some(
                "4 files, 181 lines since the last review ≥ reviewRequirement 0.6 threshold (4 files or 160 lines)"
            )
        );
        // The step asks for review, and its event says why.
        let step = work(false);
        assert!(step.skips_review() && !work(true).skips_review());
        let mut planned = plan(
            &Phase::Idle,
            &step.with_review(),
            "claude",
            Role::Driver,
            Some("claude"),
            at(),
        )
        .unwrap();
        planned.note_review_required("why");
        assert!(matches!(planned.phase_for(3), Phase::AwaitingReview { .. }));
        assert_eq!(planned.events[0].payload["needsReview"], true);
        assert_eq!(planned.events[0].payload["reviewRequired"], "why");
        assert!(ends_review(&json!({"step": "control_received"})));
        assert!(!ends_review(&json!({"step": "work_complete"})));
    }

    #[test]
    fn overdue_only_while_awaiting() {
        assert!(review_overdue(&Phase::Idle, 60).is_none());
        let p = go(&Phase::Idle, work(true), "claude", Role::Driver, 5).unwrap();
        assert_eq!(review_overdue(&p, 60).unwrap().kind, REVIEW_OVERDUE);
    }
}
