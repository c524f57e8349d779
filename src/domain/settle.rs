//! Alerts that clear themselves: which later event settles an alert that asks someone for an
//! action.
//!
//! A critical event that asks its reader to *do* something stops leading that reader's tool
//! results (the digest's critical block, `GET /mcp/events/waiting`, the hooks' stop guard, a
//! briefing's alerts) once the log shows the reader did it, without a separate `events_ack`.
//! It is not acknowledged: the cursor does not move, `events_poll` still returns it and it
//! still counts as unread where messages do. It merely stops leading.
//!
//! The rule, alert → the later event that settles it (and for whom):
//!
//! | alert | settled by | for |
//! |---|---|---|
//! | `control_passed` (critical, to the driver) for handshake H | that driver's `handshake` `control_received` of H | the driver |
//! | a review waiting: `handshake` `work_complete` with `needsReview` (its id is H), or `review_overdue` of H | a `handshake` `review_start` or `cancel` of H, by anyone | everyone (the review no longer waits) |
//! | a `message_sent` (e.g. a critical question) | a `message_sent` by a reader that sees it, with `replyTo` its id | that reader (it answered) |
//!
//! Only critical events lead tool results today, so the review row matters once a review
//! request is raised as critical; it is part of the rule so that every surface agrees.
//! A critical message acknowledged with `message_ack` stops leading anyway (that *is* an
//! acknowledgement).

use std::collections::{BTreeMap, BTreeSet};

use super::event::Event;
use super::handshake::{CONTROL_PASSED, HANDSHAKE_EVENT, REVIEW_OVERDUE};
use super::message::MESSAGE_SENT;

/// Whom a later event settles an alert for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettledFor {
    /// The participant who took the action.
    One(String),
    /// Everyone: what the alert asked for is done.
    Everyone,
}

/// Event kinds that can settle an alert: only events of these kinds need checking.
pub const SETTLING_KINDS: [&str; 2] = [HANDSHAKE_EVENT, MESSAGE_SENT];

/// Could `later` settle anything? A cheap filter before `settles`.
pub fn may_settle(later: &Event) -> bool {
    match later.kind.as_str() {
        HANDSHAKE_EVENT => matches!(
            step(later),
            Some("control_received" | "review_start" | "cancel")
        ),
        MESSAGE_SENT => later.payload["replyTo"].as_i64().is_some(),
        _ => false,
    }
}

fn step(e: &Event) -> Option<&str> {
    e.payload["step"].as_str()
}

fn handshake_of(e: &Event) -> Option<i64> {
    e.payload["handshakeId"].as_i64()
}

/// The handshake a review-waiting alert is about, if `alert` is one.
fn review_waiting(alert: &Event) -> Option<i64> {
    match alert.kind.as_str() {
        HANDSHAKE_EVENT
            if step(alert) == Some("work_complete")
                && alert.payload["needsReview"].as_bool() == Some(true) =>
        {
            Some(alert.id)
        }
        REVIEW_OVERDUE => handshake_of(alert),
        _ => None,
    }
}

/// Does `later` settle the action `alert` asks for, and for whom? `None`: it does not.
pub fn settles(alert: &Event, later: &Event) -> Option<SettledFor> {
    if later.id <= alert.id {
        return None;
    }
    let actor = later.actor.as_deref();
    match (alert.kind.as_str(), later.kind.as_str()) {
        (CONTROL_PASSED, HANDSHAKE_EVENT) => {
            let driver = alert.to.as_deref()?;
            (step(later) == Some("control_received")
                && handshake_of(later).is_some()
                && handshake_of(later) == handshake_of(alert)
                && actor == Some(driver))
            .then(|| SettledFor::One(driver.to_owned()))
        }
        (MESSAGE_SENT, MESSAGE_SENT) => {
            let by = actor?;
            (later.payload["replyTo"].as_i64() == Some(alert.id)
                && alert.actor.as_deref() != Some(by)
                && alert.visible_to(by))
            .then(|| SettledFor::One(by.to_owned()))
        }
        (_, HANDSHAKE_EVENT) => {
            let h = review_waiting(alert)?;
            (matches!(step(later), Some("review_start" | "cancel"))
                && handshake_of(later) == Some(h))
            .then_some(SettledFor::Everyone)
        }
        _ => None,
    }
}

/// Alerts settled so far, by alert id: the session actor's memory of the rule's outcomes
/// (bounded by the alerts it still keeps: `forget_before`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settled {
    everyone: BTreeSet<i64>,
    by: BTreeMap<i64, BTreeSet<String>>,
}

impl Settled {
    /// Applies `later` to the `alerts` it may settle.
    pub fn record<'a>(&mut self, later: &Event, alerts: impl IntoIterator<Item = &'a Event>) {
        if !may_settle(later) {
            return;
        }
        for alert in alerts {
            match settles(alert, later) {
                Some(SettledFor::Everyone) => {
                    self.everyone.insert(alert.id);
                }
                Some(SettledFor::One(who)) => {
                    self.by.entry(alert.id).or_default().insert(who);
                }
                None => {}
            }
        }
    }

    /// Has `ai_id` (or everyone) taken the action alert `id` asked for?
    pub fn is_settled(&self, id: i64, ai_id: &str) -> bool {
        self.everyone.contains(&id) || self.by.get(&id).is_some_and(|w| w.contains(ai_id))
    }

    /// Forgets alerts older than `id` (no longer kept to lead anyone's results).
    pub fn forget_before(&mut self, id: i64) {
        self.everyone = self.everyone.split_off(&id);
        self.by = self.by.split_off(&id);
    }

    pub fn len(&self) -> usize {
        self.everyone.len() + self.by.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::event::Priority;
    use serde_json::{Value, json};

    fn ev(id: i64, kind: &str, actor: Option<&str>, to: Option<&str>, payload: Value) -> Event {
        Event {
            id,
            session_id: uuid::Uuid::nil(),
            kind: kind.into(),
            actor: actor.map(Into::into),
            priority: Priority::Critical,
            payload,
            at: chrono::Utc::now(),
            to: to.map(Into::into),
        }
    }

    fn passed(id: i64, handshake: i64) -> Event {
        ev(
            id,
            CONTROL_PASSED,
            None,
            Some("claude"),
            json!({"by": "gemini", "handshakeId": handshake}),
        )
    }

    fn step_of(id: i64, who: &str, step: &str, handshake: i64) -> Event {
        ev(
            id,
            HANDSHAKE_EVENT,
            Some(who),
            None,
            json!({"step": step, "handshakeId": handshake}),
        )
    }

    fn message(id: i64, from: &str, to: Option<&str>, reply_to: Option<i64>) -> Event {
        ev(
            id,
            MESSAGE_SENT,
            Some(from),
            to,
            json!({"from": from, "to": to, "body": "?", "replyTo": reply_to}),
        )
    }

    #[test]
    fn control_passed_is_settled_by_the_drivers_control_received_of_that_handshake() {
        let alert = passed(10, 4);
        assert_eq!(
            settles(&alert, &step_of(11, "claude", "control_received", 4)),
            Some(SettledFor::One("claude".into()))
        );
        // Another handshake, another participant, another step, or an earlier event: no.
        assert_eq!(
            settles(&alert, &step_of(11, "claude", "control_received", 3)),
            None
        );
        assert_eq!(
            settles(&alert, &step_of(11, "gemini", "control_received", 4)),
            None
        );
        assert_eq!(
            settles(&alert, &step_of(11, "claude", "work_complete", 4)),
            None
        );
        assert_eq!(
            settles(&alert, &step_of(9, "claude", "control_received", 4)),
            None
        );
    }

    #[test]
    fn a_review_waiting_is_settled_for_everyone_once_a_review_starts_or_is_cancelled() {
        let work = ev(
            20,
            HANDSHAKE_EVENT,
            Some("claude"),
            None,
            json!({"step": "work_complete", "needsReview": true}),
        );
        let overdue = ev(25, REVIEW_OVERDUE, None, None, json!({"handshakeId": 20}));
        for alert in [&work, &overdue] {
            assert_eq!(
                settles(alert, &step_of(30, "gemini", "review_start", 20)),
                Some(SettledFor::Everyone)
            );
            assert_eq!(
                settles(alert, &step_of(30, "claude", "cancel", 20)),
                Some(SettledFor::Everyone)
            );
            assert_eq!(
                settles(alert, &step_of(30, "gemini", "review_start", 19)),
                None
            );
        }
        // Work announced without a review asks nothing of anyone.
        let announced = ev(
            20,
            HANDSHAKE_EVENT,
            Some("claude"),
            None,
            json!({"step": "work_complete", "needsReview": false}),
        );
        assert_eq!(
            settles(&announced, &step_of(30, "gemini", "review_start", 20)),
            None
        );
    }

    #[test]
    fn a_message_is_settled_for_whoever_answers_it() {
        let question = message(40, "gemini", Some("claude"), None);
        assert_eq!(
            settles(&question, &message(41, "claude", Some("gemini"), Some(40))),
            Some(SettledFor::One("claude".into()))
        );
        // A reply to another message, the sender answering itself, or someone who never saw
        // the (directed) message: no.
        assert_eq!(
            settles(&question, &message(41, "claude", None, Some(39))),
            None
        );
        assert_eq!(
            settles(&question, &message(41, "gemini", None, Some(40))),
            None
        );
        assert_eq!(
            settles(&question, &message(41, "cursor", None, Some(40))),
            None
        );
        // A broadcast question: each reader settles it for itself.
        let broadcast = message(50, "gemini", None, None);
        assert_eq!(
            settles(&broadcast, &message(51, "cursor", None, Some(50))),
            Some(SettledFor::One("cursor".into()))
        );
    }

    #[test]
    fn other_critical_events_ask_nothing_that_a_later_event_settles() {
        let failure = ev(
            60,
            "status_reported",
            Some("ci"),
            None,
            json!({"status": "fail"}),
        );
        for later in [
            step_of(61, "claude", "control_received", 60),
            message(62, "claude", None, Some(60)),
            step_of(63, "gemini", "review_start", 60),
        ] {
            assert_eq!(settles(&failure, &later), None);
        }
    }

    #[test]
    fn settled_remembers_for_whom_and_forgets_old_alerts() {
        let alerts = [passed(10, 4), message(12, "gemini", None, None)];
        let mut s = Settled::default();
        // Events that cannot settle anything are skipped before any comparison.
        let routine = ev(11, "context_changed", Some("claude"), None, json!({}));
        assert!(!may_settle(&routine));
        s.record(&routine, &alerts);
        assert!(s.is_empty());
        s.record(&step_of(13, "claude", "control_received", 4), &alerts);
        s.record(&message(14, "cursor", None, Some(12)), &alerts);
        assert!(s.is_settled(10, "claude"));
        assert!(!s.is_settled(10, "gemini"));
        assert!(s.is_settled(12, "cursor"));
        assert!(!s.is_settled(12, "claude"));
        s.forget_before(11);
        assert!(!s.is_settled(10, "claude"));
        assert!(s.is_settled(12, "cursor"));
        assert_eq!(s.len(), 1);
    }
}
