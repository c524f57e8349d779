//! The event log as a participant reads it: polls, acks, critical events, live streams.

#[allow(unused_imports)]
use super::imports::*;

/// Events for the caller after `after` (default: its acknowledged cursor), oldest first.
#[derive(Debug, Message)]
#[rtype(result = "Result<EventPage, HubError>")]
pub struct PollEvents {
    pub credential: Credential,
    pub after: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub events: Vec<Event>,
    /// More events exist after the last one returned.
    pub more: bool,
    pub acked_event_id: i64,
    pub last_event_id: i64,
    /// The caller is in a non-interruptible checkpoint: only critical events were returned;
    /// the others follow once it ends.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// Moves the caller's delivery cursor to `up_to`; replies with the cursor now stored.
#[derive(Debug, Message)]
#[rtype(result = "Result<i64, HubError>")]
pub struct AckEvents {
    pub credential: Credential,
    pub up_to: i64,
}

/// A command for one session, and in the same trip through the hub what waits for
/// `critical_for` once the command is done (its unacknowledged critical events, counts of the
/// rest): the digest an MCP tool result carries on top, without a second request.
#[derive(Debug)]
pub struct ToSessionReporting<M> {
    pub session_id: Uuid,
    pub command: M,
    pub critical_for: String,
}

impl<M> Message for ToSessionReporting<M>
where
    M: Message,
    M::Result: 'static,
{
    type Result = (M::Result, crate::domain::digest::Pending);
}

/// What waits for the caller (a participant, or the one the operator names), as a tool
/// result's digest tells it: for clients' hooks (`GET /mcp/events/waiting`).
#[derive(Debug, Message)]
#[rtype(result = "Result<crate::domain::digest::Pending, HubError>")]
pub struct WaitingFor {
    pub credential: Credential,
    pub as_participant: Option<String>,
}

/// What waits for this participant: unacknowledged critical events, counts of the rest (in
/// memory; cheap).
#[derive(Debug, Message)]
#[rtype(result = "Result<crate::domain::digest::Pending, HubError>")]
pub struct PendingCritical {
    pub ai_id: String,
}

/// Connects a live stream (MCP GET SSE, WebSocket) to the caller's agent: events after `after`
/// (default: its acknowledged cursor) are replayed from the log, then new ones follow.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct AttachStream {
    pub credential: Credential,
    /// Names the stream (e.g. the MCP session id): a later attach with the same key replaces it.
    pub key: String,
    pub after: Option<i64>,
    pub sink: EventSink,
}

/// Where an agent pushes events for one live stream. Bounded: a consumer that falls behind is
/// switched to replay from the log.
pub type EventSink = tokio::sync::mpsc::Sender<Delivery>;

/// One event handed to a live stream.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: std::sync::Arc<Event>,
    /// Sent ahead of log order: a critical event passing a checkpoint's hold. Transports must
    /// not advance a resume cursor (SSE id) with it; it comes again in order after the hold.
    pub early: bool,
    /// The participant receiving it.
    pub viewer: std::sync::Arc<str>,
    /// How much its one-line summaries say (the session genome's `messageVerbosity`).
    pub verbosity: crate::domain::genome::MessageVerbosity,
}

impl Delivery {
    /// Did this event change the receiver's role (so its tool list changed)?
    pub fn changes_my_role(&self) -> bool {
        self.event.kind == crate::domain::coordination::ROLE_CHANGED
            && self.event.payload["changes"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["aiId"] == *self.viewer))
    }
}

/// Every event of a session, live, for a viewer (the dashboard, an operator): no participant's
/// visibility rules apply. Participants attach a stream instead (`AttachStream`).
#[derive(Debug, Message)]
#[rtype(result = "Result<Watch, HubError>")]
pub struct WatchSession {
    pub credential: Credential,
}

/// A viewer's feed: every event after `last_event_id` arrives on `events`, in log order. The
/// channel is bounded; a receiver that falls behind is told how far (`Lagged`) and must read
/// the log from where it was.
#[derive(Debug)]
pub struct Watch {
    pub events: tokio::sync::broadcast::Receiver<std::sync::Arc<Published>>,
    pub last_event_id: i64,
}

/// A committed event as the viewers' feed carries it: one copy for all of them, its JSON
/// written once, by the first watcher that needs it (at ten thousand dashboards, writing each
/// event ten thousand times was most of the hub's work).
#[derive(Debug)]
pub struct Published {
    pub event: std::sync::Arc<Event>,
    json: std::sync::OnceLock<String>,
}

impl Published {
    pub fn new(event: std::sync::Arc<Event>) -> Self {
        Published {
            event,
            json: std::sync::OnceLock::new(),
        }
    }

    /// The event as a JSON object (`Event`'s own fields and names).
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| {
            serde_json::to_string(&*self.event).expect("an event serializes: its payload is JSON")
        })
    }
}

/// A live connection of `ai_id` opened (`open`) or closed: its presence may change.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct StreamPresence {
    pub ai_id: String,
    pub open: bool,
}

/// A page of the log after `after`, as the caller may see it: every event for the operator
/// (a viewer), a participant's own view otherwise. Reading changes nothing (no receipts).
#[derive(Debug, Message)]
#[rtype(result = "Result<LogPage, HubError>")]
pub struct ReadLog {
    pub credential: Credential,
    pub after: i64,
    pub limit: i64,
}

#[derive(Debug)]
pub struct LogPage {
    pub events: Vec<Event>,
    pub last_event_id: i64,
}

/// Messages the caller's client put before its model (a hook that printed them, a channel
/// notification): the `shown` receipt, stored before the reply.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<i64>, HubError>")]
pub struct MarkShown {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub ids: Vec<i64>,
    pub via: crate::store::messages::ShownVia,
}
