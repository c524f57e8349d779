//! Messages between participants: who may send what to whom, threads, acknowledgements with
//! deadlines, and the per-sender rate limit.
//!
//! A message is carried by an event (`message_sent`), and its id *is* that event's id, so
//! messages sort in log order and `message_ack {upTo}` means "everything up to here". A
//! directed message's event is directed too (`NewEvent::to`): only its sender and recipient
//! ever see it, on streams, in polls and in `messages_read`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::{Value, json};

use super::DomainError;
use super::event::{NewEvent, Priority};

pub const MESSAGE_SENT: &str = "message_sent";
/// Told to a sender when recipients acknowledge its ack-required message.
pub const MESSAGE_ACKED: &str = "message_acked";
/// Told to a sender when an ack-required message is still unacknowledged at its deadline.
pub const ACK_OVERDUE: &str = "message_ack_overdue";

/// Largest message body (serialized JSON).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Deadline for ack-required messages unless the sender names one.
pub const DEFAULT_ACK_WITHIN_SECS: u32 = 300;
pub const ACK_WITHIN_RANGE: std::ops::RangeInclusive<u32> = 1..=86_400;
/// Most ids one `message_ack` may name.
pub const MAX_ACK_IDS: usize = 500;

/// What a sender asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageSpec {
    /// `None`: broadcast to every participant.
    pub to: Option<String>,
    pub priority: Priority,
    /// Text or any JSON value.
    pub body: Value,
    pub reply_to: Option<i64>,
    pub requires_ack: bool,
    /// Seconds the recipients have to acknowledge (only with `requires_ack`).
    pub ack_within_secs: Option<u32>,
}

/// The message a reply answers, as the store found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parent {
    pub id: i64,
    pub from: String,
    pub to: Option<String>,
    pub thread: i64,
}

impl Parent {
    fn visible_to(&self, ai_id: &str) -> bool {
        self.to.is_none() || self.to.as_deref() == Some(ai_id) || self.from == ai_id
    }
}

/// A send the session accepted: the event that carries it and what the `messages` row holds.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMessage {
    pub event: NewEvent,
    pub from: String,
    pub to: Option<String>,
    pub priority: Priority,
    pub body: Value,
    pub reply_to: Option<i64>,
    /// Root of the thread; `None` starts a new thread rooted at this message.
    pub thread: Option<i64>,
    pub requires_ack: bool,
    pub ack_deadline: Option<NaiveDateTime>,
    /// Who must acknowledge (the recipient, or every other active participant).
    pub awaiting: BTreeSet<String>,
}

/// Checks a send by `from` (an active participant) to `to` (`active` lists who is in the
/// session now) and builds the event.
pub fn plan_send(
    from: &str,
    active: &BTreeSet<String>,
    spec: MessageSpec,
    parent: Option<Parent>,
    at: NaiveDateTime,
) -> Result<PlannedMessage, DomainError> {
    check_body(&spec.body)?;
    if let Some(to) = &spec.to {
        if to == from {
            return Err(DomainError::invalid(
                "to",
                "a message to yourself; leave `to` out to broadcast",
            ));
        }
        if !active.contains(to) {
            return Err(DomainError::invalid(
                "to",
                format!(
                    "{to:?} is not a participant of this session (participants: {})",
                    active.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    let thread = match (spec.reply_to, &parent) {
        (None, _) => None,
        (Some(id), Some(p)) if p.id == id && p.visible_to(from) => Some(p.thread),
        (Some(id), _) => {
            return Err(DomainError::invalid(
                "replyTo",
                format!("no message {id} that you can see"),
            ));
        }
    };
    if spec.ack_within_secs.is_some() && !spec.requires_ack {
        return Err(DomainError::invalid(
            "ackWithinSecs",
            "only with requiresAck: true",
        ));
    }
    let within = spec.ack_within_secs.unwrap_or(DEFAULT_ACK_WITHIN_SECS);
    if !ACK_WITHIN_RANGE.contains(&within) {
        return Err(DomainError::invalid(
            "ackWithinSecs",
            format!(
                "between {} and {} seconds",
                ACK_WITHIN_RANGE.start(),
                ACK_WITHIN_RANGE.end()
            ),
        ));
    }
    let awaiting: BTreeSet<String> = match (&spec.to, spec.requires_ack) {
        (_, false) => BTreeSet::new(),
        (Some(to), true) => [to.clone()].into(),
        (None, true) => active.iter().filter(|a| *a != from).cloned().collect(),
    };
    if spec.requires_ack && awaiting.is_empty() {
        return Err(DomainError::invalid(
            "requiresAck",
            "nobody else is in the session to acknowledge it",
        ));
    }
    let ack_deadline = spec
        .requires_ack
        .then(|| at + chrono::TimeDelta::seconds(i64::from(within)));
    let event = NewEvent {
        kind: MESSAGE_SENT,
        actor: Some(from.to_owned()),
        priority: spec.priority,
        payload: json!({
            "from": from,
            "to": spec.to,
            "body": spec.body,
            "replyTo": spec.reply_to,
            "thread": thread,
            "requiresAck": spec.requires_ack,
            "ackDeadline": ack_deadline.map(|d| d.and_utc()),
        }),
        to: spec.to.clone(),
    };
    Ok(PlannedMessage {
        event,
        from: from.to_owned(),
        to: spec.to,
        priority: spec.priority,
        body: spec.body,
        reply_to: spec.reply_to,
        thread,
        requires_ack: spec.requires_ack,
        ack_deadline,
        awaiting,
    })
}

fn check_body(body: &Value) -> Result<(), DomainError> {
    let empty = match body {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    if empty {
        return Err(DomainError::invalid("body", "the message body is empty"));
    }
    let size = body.to_string().len();
    if size > MAX_BODY_BYTES {
        return Err(DomainError::invalid(
            "body",
            format!("the body is {size} bytes; the limit is {MAX_BODY_BYTES}"),
        ));
    }
    Ok(())
}

/// A message as an acknowledgement needs to see it.
#[derive(Debug, Clone, PartialEq)]
pub struct AckTarget {
    pub id: i64,
    pub from: String,
    pub requires_ack: bool,
    pub acked: bool,
}

/// Which ids an acknowledgement names.
#[derive(Debug, Clone, PartialEq)]
pub enum AckSelection {
    Ids(Vec<i64>),
    UpTo(i64),
}

/// An acknowledgement the session accepted.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlannedAck {
    /// Messages whose receipt gets `acked_at` now (not acknowledged before).
    pub newly_acked: Vec<i64>,
    /// Sender → its ack-required messages among them: each sender is told.
    pub notify: BTreeMap<String, Vec<i64>>,
}

/// Checks that `by` may acknowledge `selection`; `found` are the messages the store found for
/// it, already limited to what `by` can see.
pub fn plan_ack(
    by: &str,
    selection: &AckSelection,
    found: &[AckTarget],
) -> Result<PlannedAck, DomainError> {
    if let AckSelection::Ids(ids) = selection {
        if ids.is_empty() {
            return Err(DomainError::invalid(
                "ids",
                "name at least one message, or use upTo",
            ));
        }
        if ids.len() > MAX_ACK_IDS {
            return Err(DomainError::invalid(
                "ids",
                format!("at most {MAX_ACK_IDS} ids at once; use upTo"),
            ));
        }
        let known: BTreeSet<i64> = found.iter().map(|m| m.id).collect();
        let unknown: Vec<String> = ids
            .iter()
            .filter(|id| !known.contains(id))
            .map(i64::to_string)
            .collect();
        if !unknown.is_empty() {
            return Err(DomainError::invalid(
                "ids",
                format!("no message {} that you can see", unknown.join(", ")),
            ));
        }
        if let Some(own) = found.iter().find(|m| m.from == by) {
            return Err(DomainError::invalid(
                "ids",
                format!(
                    "message {} is your own; only its recipients acknowledge it",
                    own.id
                ),
            ));
        }
    }
    let mut plan = PlannedAck::default();
    for m in found.iter().filter(|m| m.from != by && !m.acked) {
        plan.newly_acked.push(m.id);
        if m.requires_ack {
            plan.notify.entry(m.from.clone()).or_default().push(m.id);
        }
    }
    Ok(plan)
}

/// The event that tells `sender` that `by` acknowledged `ids`.
pub fn acked_event(by: &str, sender: &str, ids: &[i64]) -> NewEvent {
    NewEvent {
        kind: MESSAGE_ACKED,
        actor: Some(by.to_owned()),
        priority: Priority::Routine,
        payload: json!({ "by": by, "ids": ids }),
        to: Some(sender.to_owned()),
    }
}

/// An ack-required message still waiting for some recipients.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingAck {
    pub id: i64,
    pub from: String,
    #[serde(with = "crate::domain::utc")]
    pub deadline: NaiveDateTime,
    pub awaiting: BTreeSet<String>,
}

impl PendingAck {
    /// The alert the sender gets when the deadline passes with recipients still silent.
    pub fn overdue_event(&self) -> NewEvent {
        NewEvent {
            kind: ACK_OVERDUE,
            actor: None,
            priority: Priority::Important,
            payload: json!({
                "id": self.id,
                "deadline": self.deadline.and_utc(),
                "notAcknowledgedBy": self.awaiting,
            }),
            to: Some(self.from.clone()),
        }
    }
}

/// Ack-required messages whose deadline has not been dealt with, by message id. Bounded by the
/// send rate limit and the deadline range: each entry leaves when acknowledged by everyone or
/// when its overdue alert is written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PendingAcks(BTreeMap<i64, PendingAck>);

impl PendingAcks {
    pub fn insert(&mut self, pending: PendingAck) {
        if !pending.awaiting.is_empty() {
            self.0.insert(pending.id, pending);
        }
    }

    /// `by` acknowledged `id`; the entry goes once nobody is awaited.
    pub fn acked(&mut self, id: i64, by: &str) {
        if let Some(p) = self.0.get_mut(&id) {
            p.awaiting.remove(by);
            if p.awaiting.is_empty() {
                self.0.remove(&id);
            }
        }
    }

    /// A participant left: it can no longer acknowledge anything.
    pub fn forget_participant(&mut self, ai_id: &str) {
        self.0.retain(|_, p| {
            p.awaiting.remove(ai_id);
            !p.awaiting.is_empty()
        });
    }

    /// The entry for `id` if it is due at `now`.
    pub fn due(&self, id: i64, now: NaiveDateTime) -> Option<&PendingAck> {
        self.0.get(&id).filter(|p| p.deadline <= now)
    }

    pub fn remove(&mut self, id: i64) -> Option<PendingAck> {
        self.0.remove(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &PendingAck> {
        self.0.values()
    }
}

/// A token bucket: `burst` sends at once, then one every `1/per_sec` seconds.
#[derive(Debug, Clone)]
pub struct RateLimit {
    burst: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

/// How many messages a participant may send at once (`burst`), and how many per second after
/// that. Set per hub (`--message-burst`, `--message-rate`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendRate {
    pub burst: u32,
    pub per_sec: f64,
}

impl Default for SendRate {
    fn default() -> Self {
        SendRate {
            burst: 30,
            per_sec: 5.0,
        }
    }
}

impl RateLimit {
    pub fn new(burst: u32, per_sec: f64, now: Instant) -> Self {
        RateLimit {
            burst: f64::from(burst),
            per_sec,
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
        }
    }

    /// Gives back a token taken for a send that was then refused.
    pub fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }
}

/// What `messages_read` asks for.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    /// Who reads: only messages it can see, with its own read/ack state. `None`: the operator
    /// (everything).
    pub viewer: Option<String>,
    pub unread_only: bool,
    /// After this message id, oldest first; without it, the newest `limit` (unread ones: the
    /// oldest `limit`).
    pub since: Option<i64>,
    pub priority: Option<Priority>,
    pub thread: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub id: i64,
    pub from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub priority: Priority,
    pub body: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    pub thread: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub requires_ack: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_deadline: Option<chrono::DateTime<chrono::Utc>>,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The reader's own state (messages it received).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked: Option<bool>,
    /// Receipts of the reader's own messages (and of every message, for the operator).
    /// Receipts of the reader's own messages: delivered (handed to a stream or returned in a
    /// result), read (returned by messages_read), acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_to: Option<Vec<String>>,
    /// Receipts of the reader's own messages: shown to the recipient's model (listed in full
    /// in a tool result's digest, printed by its client's hook, or listed in its briefing),
    /// with when and how. Apart from delivered (a stream is not the model) and from read and
    /// acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shown_to: Option<Vec<Shown>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_by: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_by: Option<Vec<String>>,
}

/// A message shown to a participant's model: who, when, how (`digest`, `hook`, `briefing`,
/// `channel`: the first way it was shown).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shown {
    pub ai_id: String,
    pub at: chrono::DateTime<chrono::Utc>,
    pub via: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    pub messages: Vec<MessageView>,
    /// Messages to the reader it has not read, counted before this read marked any.
    pub unread: i64,
    /// More messages match after the last one returned.
    pub more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active() -> BTreeSet<String> {
        ["claude", "gemini", "cursor"].map(String::from).into()
    }

    fn spec(to: Option<&str>) -> MessageSpec {
        MessageSpec {
            to: to.map(String::from),
            priority: Priority::Routine,
            body: json!("hello"),
            reply_to: None,
            requires_ack: false,
            ack_within_secs: None,
        }
    }

    fn at() -> NaiveDateTime {
        crate::domain::now()
    }

    #[test]
    fn directed_event_names_its_recipient() {
        let p = plan_send("claude", &active(), spec(Some("gemini")), None, at()).unwrap();
        assert_eq!(p.event.to.as_deref(), Some("gemini"));
        let b = plan_send("claude", &active(), spec(None), None, at()).unwrap();
        assert_eq!(b.event.to, None);
    }

    #[test]
    fn refuses_bad_sends() {
        let err = |r: Result<PlannedMessage, DomainError>| match r.unwrap_err() {
            DomainError::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            err(plan_send(
                "claude",
                &active(),
                spec(Some("nobody")),
                None,
                at()
            )),
            "to"
        );
        assert_eq!(
            err(plan_send(
                "claude",
                &active(),
                spec(Some("claude")),
                None,
                at()
            )),
            "to"
        );
        let mut empty = spec(None);
        empty.body = json!("  ");
        assert_eq!(
            err(plan_send("claude", &active(), empty, None, at())),
            "body"
        );
        let mut big = spec(None);
        big.body = json!("x".repeat(MAX_BODY_BYTES));
        assert_eq!(err(plan_send("claude", &active(), big, None, at())), "body");
        let mut reply = spec(None);
        reply.reply_to = Some(9);
        assert_eq!(
            err(plan_send("claude", &active(), reply, None, at())),
            "replyTo"
        );
    }

    #[test]
    fn replies_join_the_parent_thread_only_if_visible() {
        let parent = Parent {
            id: 7,
            from: "gemini".into(),
            to: Some("cursor".into()),
            thread: 3,
        };
        let mut reply = spec(None);
        reply.reply_to = Some(7);
        assert!(
            plan_send(
                "claude",
                &active(),
                reply.clone(),
                Some(parent.clone()),
                at()
            )
            .is_err()
        );
        let p = plan_send("cursor", &active(), reply, Some(parent), at()).unwrap();
        assert_eq!(p.thread, Some(3));
    }

    #[test]
    fn broadcast_ack_awaits_everyone_else() {
        let mut s = spec(None);
        s.requires_ack = true;
        s.ack_within_secs = Some(10);
        let p = plan_send("claude", &active(), s, None, at()).unwrap();
        assert_eq!(p.awaiting, ["cursor", "gemini"].map(String::from).into());
        assert!(p.ack_deadline.is_some());
        let mut pending = PendingAcks::default();
        pending.insert(PendingAck {
            id: 5,
            from: "claude".into(),
            deadline: p.ack_deadline.unwrap(),
            awaiting: p.awaiting,
        });
        pending.acked(5, "gemini");
        assert!(
            pending
                .due(5, at() + chrono::TimeDelta::seconds(11))
                .is_some()
        );
        pending.acked(5, "cursor");
        assert!(pending.iter().next().is_none());
    }

    #[test]
    fn acks_name_only_visible_foreign_messages() {
        let found = vec![
            AckTarget {
                id: 4,
                from: "gemini".into(),
                requires_ack: true,
                acked: false,
            },
            AckTarget {
                id: 6,
                from: "cursor".into(),
                requires_ack: false,
                acked: true,
            },
        ];
        assert!(plan_ack("claude", &AckSelection::Ids(vec![4, 5]), &found).is_err());
        assert!(plan_ack("gemini", &AckSelection::Ids(vec![4]), &found).is_err());
        let plan = plan_ack("claude", &AckSelection::Ids(vec![4, 6]), &found).unwrap();
        assert_eq!(plan.newly_acked, vec![4]);
        assert_eq!(plan.notify["gemini"], vec![4]);
        let up_to = plan_ack("claude", &AckSelection::UpTo(10), &found).unwrap();
        assert_eq!(up_to.newly_acked, vec![4]);
    }

    #[test]
    fn rate_limit_refills() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(2, 1.0, t0);
        assert!(r.take(t0).is_ok());
        assert!(r.take(t0).is_ok());
        let wait = r.take(t0).unwrap_err();
        assert!(wait > Duration::from_millis(900));
        assert!(r.take(t0 + Duration::from_millis(1100)).is_ok());
    }
}
