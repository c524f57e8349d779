//! Context-sync reminders (the genome's `contextSyncFrequency`): a participant that has not
//! written the shared context (any event of `session::CONTEXT_KINDS` it is the actor of) for
//! one interval while the session is active gets one directed, important `context_sync_due`
//! event, then another only after another interval of silence.
//!
//! The clocks live in memory in the session actor: they start when the session loads or the
//! participant joins (nobody is reminded right after a restart), and time while the session is
//! paused does not count (every clock restarts on a status change). Observers owe nothing;
//! their clock just keeps restarting, so a promoted observer gets a whole interval.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::event::{NewEvent, Priority};
use super::role::Role;
use super::session::{CONTEXT_KINDS, SessionStatus};

pub const CONTEXT_SYNC_DUE: &str = "context_sync_due";
const STATUS_CHANGED: &str = "session_status_changed";

/// When each active participant last wrote the context (or its clock last restarted).
#[derive(Debug, Clone, Default)]
pub struct SyncClocks {
    last: HashMap<String, Instant>,
}

impl SyncClocks {
    /// `ai_id` is (again) active: its clock starts now.
    pub fn start(&mut self, ai_id: &str, at: Instant) {
        self.last.insert(ai_id.to_owned(), at);
    }

    /// `ai_id` left: it is reminded of nothing.
    pub fn forget(&mut self, ai_id: &str) {
        self.last.remove(ai_id);
    }

    /// `ai_id` wrote the context. Only tracked (active) participants count.
    pub fn wrote(&mut self, ai_id: &str, at: Instant) {
        if let Some(t) = self.last.get_mut(ai_id) {
            *t = at;
        }
    }

    /// Applies a committed event: a context write restarts its actor's clock, a session
    /// status change everyone's.
    pub fn record(&mut self, kind: &str, actor: Option<&str>, at: Instant) {
        if CONTEXT_KINDS.contains(&kind) {
            if let Some(ai_id) = actor {
                self.wrote(ai_id, at);
            }
        } else if kind == STATUS_CHANGED {
            self.restart_all(at);
        }
    }

    /// Everyone's clock restarts (the session paused or resumed: a pause is not silence).
    pub fn restart_all(&mut self, at: Instant) {
        self.last.values_mut().for_each(|t| *t = at);
    }

    /// Who is due a reminder at `at` among `members` (the active participants with their
    /// roles), restarting their clocks so the next one waits a whole interval. Nobody is due
    /// unless the session is active.
    pub fn due<'a>(
        &mut self,
        members: impl IntoIterator<Item = (&'a str, Role)>,
        status: SessionStatus,
        interval: Duration,
        at: Instant,
    ) -> Vec<String> {
        if status != SessionStatus::Active {
            self.restart_all(at);
            return Vec::new();
        }
        let mut due = Vec::new();
        for (ai_id, role) in members {
            let Some(last) = self.last.get_mut(ai_id) else {
                continue;
            };
            if role == Role::Observer {
                *last = at;
            } else if at.saturating_duration_since(*last) >= interval {
                *last = at;
                due.push(ai_id.to_owned());
            }
        }
        due
    }

    /// How long until the next participant may be due (an interval when nobody is tracked).
    /// Waking early is harmless: `due` finds nobody and the wait is asked again.
    pub fn next_check(&self, interval: Duration, at: Instant) -> Duration {
        self.last
            .values()
            .map(|t| (*t + interval).saturating_duration_since(at))
            .min()
            .unwrap_or(interval)
            .max(Duration::from_secs(1))
    }
}

/// The reminder for `ai_id`: directed, important, with a line the digest and summaries show.
pub fn reminder(ai_id: &str, interval: Duration) -> NewEvent {
    let minutes = (interval.as_secs() as f64 / 60.0).round().max(1.0) as u64;
    NewEvent {
        kind: CONTEXT_SYNC_DUE,
        actor: None,
        priority: Priority::Important,
        payload: json!({
            "aiId": ai_id,
            "intervalSecs": interval.as_secs(),
            "summary": format!(
                "no context update from you for {minutes} min: context_set what you know"
            ),
        }),
        to: Some(ai_id.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn the_silent_are_reminded_once_per_interval() {
        let t0 = Instant::now();
        let mut c = SyncClocks::default();
        for who in ["claude", "gemini", "cursor"] {
            c.start(who, t0);
        }
        let members = || {
            [
                ("claude", Role::Driver),
                ("gemini", Role::Navigator),
                ("cursor", Role::Observer),
            ]
        };
        assert_eq!(c.next_check(MIN, t0), MIN);
        assert!(
            c.due(members(), SessionStatus::Active, MIN, t0 + MIN / 2)
                .is_empty()
        );
        c.record("memory_pushed", Some("claude"), t0 + MIN / 2);
        c.record("message_sent", Some("gemini"), t0 + MIN / 2); // not a context write
        // Gemini was silent a whole interval; claude wrote; cursor observes.
        assert_eq!(
            c.due(members(), SessionStatus::Active, MIN, t0 + MIN),
            ["gemini"]
        );
        // Once per interval: not again right away, and claude's turn comes from its write.
        assert_eq!(c.next_check(MIN, t0 + MIN), MIN / 2);
        assert_eq!(
            c.due(members(), SessionStatus::Active, MIN, t0 + MIN * 3 / 2),
            ["claude"]
        );
        assert_eq!(
            c.due(members(), SessionStatus::Active, MIN, t0 + MIN * 2),
            ["gemini"]
        );
    }

    #[test]
    fn no_reminders_while_paused_for_the_departed_or_right_after_a_start() {
        let t0 = Instant::now();
        let mut c = SyncClocks::default();
        c.start("claude", t0);
        c.start("gemini", t0);
        let members = [("claude", Role::Driver), ("gemini", Role::Navigator)];
        // Paused through the interval: nobody, and the pause does not count afterwards.
        c.record(STATUS_CHANGED, None, t0 + MIN / 2);
        assert_eq!(c.next_check(MIN, t0 + MIN / 2), MIN);
        assert!(
            c.due(members, SessionStatus::Paused, MIN, t0 + MIN * 5)
                .is_empty()
        );
        assert!(
            c.due(members, SessionStatus::Active, MIN, t0 + MIN * 5)
                .is_empty()
        );
        assert!(
            c.due(members, SessionStatus::Completed, MIN, t0 + MIN * 7)
                .is_empty()
        );
        // Left: forgotten; a write by someone untracked starts nothing.
        c.forget("gemini");
        c.wrote("gemini", t0 + MIN * 8);
        assert_eq!(
            c.due(members, SessionStatus::Active, MIN, t0 + MIN * 9),
            ["claude"]
        );
        // A (re)start gives a whole interval.
        c.start("gemini", t0 + MIN * 9);
        assert!(
            c.due(members, SessionStatus::Active, MIN, t0 + MIN * 9 + MIN / 2)
                .is_empty()
        );
        assert_eq!(c.next_check(MIN, t0 + MIN * 9 + MIN / 2), MIN / 2);
        assert_eq!(SyncClocks::default().next_check(MIN, t0), MIN);
    }

    #[test]
    fn the_reminder_is_directed_and_important() {
        let e = reminder("gemini", Duration::from_secs(300));
        assert_eq!(e.kind, CONTEXT_SYNC_DUE);
        assert_eq!(e.to.as_deref(), Some("gemini"));
        assert_eq!(e.priority, Priority::Important);
        assert_eq!(
            e.payload["summary"],
            "no context update from you for 5 min: context_set what you know"
        );
    }
}
