//! Checkpoints: a participant says "I am busy with this for about that long". In a
//! non-interruptible checkpoint its important and routine events wait (on its streams and in
//! its polls) while critical ones still reach it at once. A checkpoint that outlives its
//! estimate by a grace period ends by itself and says so, so a crashed agent cannot hold its
//! events back forever.

use chrono::{NaiveDateTime, TimeDelta};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::DomainError;
use super::event::{NewEvent, Priority};

pub const CHECKPOINT_BEGUN: &str = "checkpoint_begun";
pub const CHECKPOINT_ENDED: &str = "checkpoint_ended";
/// Longest estimate accepted: four hours.
pub const MAX_ESTIMATE_SECS: u32 = 4 * 3600;
const MAX_TASK_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub task: String,
    pub estimated_secs: u32,
    pub interruptible: bool,
    #[serde(with = "crate::domain::utc")]
    pub started_at: NaiveDateTime,
    /// The `checkpoint_begun` event: everything up to it was deliverable before the hold.
    pub begun_event: i64,
}

/// Why a checkpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndReason {
    /// The participant ended it.
    Done,
    /// It outlived its estimate plus the grace period.
    Overran,
    /// The participant left the session.
    Left,
}

impl Checkpoint {
    /// Does it hold non-critical events back?
    pub fn holds(&self) -> bool {
        !self.interruptible
    }

    /// How long past the estimate it may run before it ends by itself: half the estimate,
    /// at least 2 s, at most 5 min.
    pub fn grace_secs(&self) -> u32 {
        (self.estimated_secs / 2).clamp(2, 300)
    }

    pub fn overrun_at(&self) -> NaiveDateTime {
        self.started_at + TimeDelta::seconds(i64::from(self.estimated_secs + self.grace_secs()))
    }
}

/// A checkpoint's (or a task's) estimate in seconds, in any form `duration` reads.
pub fn parse_duration(v: &Value) -> Result<u32, DomainError> {
    super::duration::parse(v, "estimatedDuration", MAX_ESTIMATE_SECS)
}

/// Starts a checkpoint for `ai_id` unless one is open. The returned checkpoint gets its
/// `begun_event` once the event is committed.
pub fn plan_begin(
    ai_id: &str,
    open: Option<&Checkpoint>,
    task: &str,
    estimated_secs: u32,
    interruptible: bool,
    at: NaiveDateTime,
) -> Result<(Checkpoint, NewEvent), DomainError> {
    if let Some(open) = open {
        return Err(DomainError::conflict(
            "checkpoint_open",
            format!(
                "{ai_id} is already in checkpoint {:?} (since {}); end it first",
                open.task,
                open.started_at.and_utc()
            ),
        ));
    }
    let task = task.trim();
    if task.is_empty() || task.chars().count() > MAX_TASK_CHARS {
        return Err(DomainError::invalid(
            "task",
            format!("name the task in 1 to {MAX_TASK_CHARS} characters"),
        ));
    }
    if estimated_secs == 0 || estimated_secs > MAX_ESTIMATE_SECS {
        return Err(DomainError::invalid(
            "estimatedDuration",
            format!("between 1 and {MAX_ESTIMATE_SECS} seconds"),
        ));
    }
    let checkpoint = Checkpoint {
        task: task.to_owned(),
        estimated_secs,
        interruptible,
        started_at: at,
        begun_event: 0,
    };
    let event = NewEvent {
        kind: CHECKPOINT_BEGUN,
        actor: Some(ai_id.to_owned()),
        priority: Priority::Routine,
        payload: json!({
            "aiId": ai_id,
            "task": checkpoint.task,
            "estimatedSecs": estimated_secs,
            "interruptible": interruptible,
            "endsBy": checkpoint.overrun_at().and_utc(),
        }),
        to: None,
    };
    Ok((checkpoint, event))
}

/// Ends `ai_id`'s open checkpoint.
pub fn plan_end(
    ai_id: &str,
    open: Option<&Checkpoint>,
    reason: EndReason,
    at: NaiveDateTime,
) -> Result<NewEvent, DomainError> {
    let Some(open) = open else {
        return Err(DomainError::conflict(
            "no_checkpoint",
            format!("{ai_id} is not in a checkpoint"),
        ));
    };
    Ok(NewEvent {
        kind: CHECKPOINT_ENDED,
        actor: Some(ai_id.to_owned()),
        priority: Priority::Routine,
        payload: json!({
            "aiId": ai_id,
            "task": open.task,
            "reason": reason,
            "ranSecs": (at - open.started_at).num_seconds().max(0),
            "estimatedSecs": open.estimated_secs,
        }),
        to: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration(&json!(30)).unwrap(), 30);
        assert_eq!(parse_duration(&json!("30s")).unwrap(), 30);
        assert_eq!(parse_duration(&json!("5m")).unwrap(), 300);
        assert_eq!(parse_duration(&json!("1h")).unwrap(), 3600);
        assert_eq!(parse_duration(&json!("45")).unwrap(), 45);
        for bad in [
            json!(0),
            json!("0s"),
            json!("5d"),
            json!("abc"),
            json!(-3),
            json!("99h"),
            json!(null),
        ] {
            assert!(parse_duration(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_open_checkpoint_at_a_time() {
        let at = crate::domain::now();
        let (cp, ev) = plan_begin("claude", None, "refactor", 30, false, at).unwrap();
        assert!(cp.holds());
        assert_eq!(ev.kind, CHECKPOINT_BEGUN);
        assert!(plan_begin("claude", Some(&cp), "again", 30, false, at).is_err());
        assert!(plan_begin("claude", None, " ", 30, false, at).is_err());
        assert!(plan_end("claude", None, EndReason::Done, at).is_err());
        let end = plan_end("claude", Some(&cp), EndReason::Overran, at).unwrap();
        assert_eq!(end.payload["reason"], "overran");
    }

    #[test]
    fn grace_is_bounded() {
        let at = crate::domain::now();
        let (short, _) = plan_begin("a", None, "t", 1, false, at).unwrap();
        assert_eq!(short.grace_secs(), 2);
        assert_eq!(short.overrun_at(), at + TimeDelta::seconds(3));
        let (long, _) = plan_begin("a", None, "t", 4 * 3600, false, at).unwrap();
        assert_eq!(long.grace_secs(), 300);
    }
}
