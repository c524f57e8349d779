//! Server-sent events framing for MCP streams.

use std::time::Duration;

use actix_web::web::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use actix::Addr;

use super::protocol::notification;
use super::push::{self, ChannelOptIn};
use super::registry::{McpRegistry, ShownOnChannel, Subscriptions};
use super::resources::updated_by;
use crate::actors::messages::Delivery;
use crate::domain::event::Priority;

/// A comment line every so often keeps proxies and clients from timing the stream out.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Sent before a stream ends by its lifetime: reconnect after half a second.
const RECONNECT: &[u8] = b"retry: 500\n\n";

/// Method of the notification that carries a session event.
pub const EVENT_NOTIFICATION: &str = "notifications/collab/event";

/// What a GET stream sends besides the event itself (`push`): what the client asked for.
pub struct Forms {
    pub subscriptions: watch::Receiver<Subscriptions>,
    /// `logging/setLevel`, as it stands.
    pub log_level: watch::Receiver<Option<String>>,
    pub channel: Option<ChannelOptIn>,
    /// Where channel receipts go, for the MCP session `mcp_id`.
    pub registry: Addr<McpRegistry>,
    pub mcp_id: String,
    /// The last in-order event this stream wrote, which the registry resumes after when the
    /// stream attaches again (its participant left and joined again).
    pub written: Written,
}

/// The last in-order event an MCP GET stream wrote: its session, the participant it was for,
/// and its id. Shared by the stream's body, which writes, and the registry, which attaches the
/// stream to an agent again after a leave and a join: it resumes after what the stream wrote
/// for that same participant of that same session (ids count per session, and what one
/// participant saw says nothing of another's), and the body drops what a resumed agent sends
/// again that it already wrote (events the old agent had queued to it).
#[derive(Clone, Default)]
pub struct Written(std::sync::Arc<std::sync::Mutex<Option<LastWritten>>>);

/// (session, participant, event id).
type LastWritten = (uuid::Uuid, std::sync::Arc<str>, i64);

impl Written {
    fn last(&self) -> std::sync::MutexGuard<'_, Option<LastWritten>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `event`, in order for `viewer`, is new on this stream; noted as written if so.
    fn first_time(
        &self,
        event: &crate::domain::event::Event,
        viewer: &std::sync::Arc<str>,
    ) -> bool {
        let mut last = self.last();
        if let Some((session, who, id)) = &*last
            && *session == event.session_id
            && **who == **viewer
            && event.id <= *id
        {
            return false;
        }
        *last = Some((event.session_id, viewer.clone(), event.id));
        true
    }

    /// The id written last, if it was written for `ai_id` in `session`.
    pub fn for_participant(&self, session: uuid::Uuid, ai_id: &str) -> Option<i64> {
        match &*self.last() {
            Some((s, who, id)) if *s == session && &**who == ai_id => Some(*id),
            _ => None,
        }
    }

    /// Whom the last event written was for: (session, participant).
    pub fn participant(&self) -> Option<(uuid::Uuid, String)> {
        self.last()
            .as_ref()
            .map(|(session, who, _)| (*session, who.to_string()))
    }
}

pub fn frame(id: Option<i64>, message: &Value) -> Bytes {
    let mut out = String::with_capacity(128);
    if let Some(id) = id {
        out.push_str(&format!("id: {id}\n"));
    }
    out.push_str("event: message\ndata: ");
    out.push_str(&message.to_string());
    out.push_str("\n\n");
    Bytes::from(out)
}

/// The GET stream: session events (with their log id as SSE id, so `Last-Event-ID` resumes
/// exactly) followed by the forms a stock client surfaces (`push`: resource updates, log
/// entries, channel notifications), other notifications, and keep-alives. Ends when the MCP
/// session ends.
///
/// With a `lifetime`, the stream ends after it with a `retry:` hint, and the client reconnects
/// with `Last-Event-ID` (SSE polling, MCP 2025-11-25): events still in flight are replayed then
/// from the log, so none is lost.
pub fn get_stream(
    forms: Forms,
    control: mpsc::Receiver<Value>,
    events: mpsc::Receiver<Delivery>,
    lifetime: Option<Duration>,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    struct State {
        forms: Forms,
        control: mpsc::Receiver<Value>,
        events: Option<mpsc::Receiver<Delivery>>,
        tick: tokio::time::Interval,
        deadline: Option<tokio::time::Instant>,
        ending: bool,
    }
    let mut tick = tokio::time::interval(KEEP_ALIVE);
    tick.reset(); // the first tick would fire at once
    let state = State {
        forms,
        control,
        events: Some(events),
        tick,
        deadline: lifetime.map(|l| tokio::time::Instant::now() + l),
        ending: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        if s.ending {
            return None;
        }
        let deadline = s.deadline;
        loop {
            let bytes = tokio::select! {
                biased;
                _ = async { tokio::time::sleep_until(deadline?).await; Some(()) }, if deadline.is_some() => {
                    s.ending = true;
                    Bytes::from_static(RECONNECT)
                }
                msg = s.control.recv() => match msg {
                    Some(m) => frame(None, &m),
                    None => return None, // the MCP session ended
                },
                ev = async { s.events.as_mut()?.recv().await }, if s.events.is_some() => match ev {
                    Some(delivery) => {
                        let list_changed = delivery.changes_my_role();
                        let Delivery { event: e, early, viewer, verbosity } = delivery;
                        let params = serde_json::to_value(&*e).unwrap_or(Value::Null);
                        // An early (critical, during a hold) event carries no SSE id, so a
                        // reconnect still resumes from the last in-order event.
                        let sse_id = (!early).then_some(e.id);
                        if !early && !s.forms.written.first_time(&e, &viewer) {
                            continue; // written already: an agent attached again resends it
                        }
                        let mut out = frame(sse_id, &notification(EVENT_NOTIFICATION, params)).to_vec();
                        let subs = s.forms.subscriptions.borrow().clone();
                        for uri in updated_by(&e, &viewer).into_iter().filter(|u| subs.contains(u)) {
                            let n = notification("notifications/resources/updated", json!({ "uri": uri }));
                            out.extend_from_slice(&frame(None, &n));
                        }
                        // (The agent hands a stream each event once: one sent early, during a
                        // hold, is not repeated in order.)
                        if push::waits_for(&e, &viewer) {
                            let level = push::level_of(e.priority);
                            if push::log_wanted(s.forms.log_level.borrow().as_deref(), level) {
                                out.extend_from_slice(&frame(None, &push::log_entry(&e, verbosity)));
                            }
                            if e.priority == Priority::Critical && let Some(opt_in) = s.forms.channel {
                                out.extend_from_slice(&frame(None, &push::channel_message(&e, verbosity)));
                                if opt_in == ChannelOptIn::Declared
                                    && e.kind == crate::domain::message::MESSAGE_SENT
                                {
                                    s.forms.registry.do_send(ShownOnChannel {
                                        id: s.forms.mcp_id.clone(),
                                        ids: vec![e.id],
                                    });
                                }
                            }
                        }
                        if list_changed {
                            // A new role shows other tools (MCP tools/list_changed).
                            let n = notification("notifications/tools/list_changed", Value::Null);
                            out.extend_from_slice(&frame(None, &n));
                        }
                        Bytes::from(out)
                    }
                    None => {
                        s.events = None; // the agent let go (participant left); keep the rest
                        continue;
                    }
                },
                _ = s.tick.tick() => Bytes::from_static(b": keep-alive\n\n"),
            };
            return Some((Ok(bytes), s));
        }
    })
}

/// Ends a call's stream that has no reply (the client cancelled it): an SSE comment, which
/// clients skip, telling a hub relaying the stream that it ended on purpose and is not to be
/// run again (`http::splice`).
pub const CANCELLED: &[u8] = b": cancelled\n\n";

/// The SSE answer to one request: its notifications as they come, then the response (or
/// `CANCELLED` if the request was cancelled), then the end.
pub fn call_stream<F>(
    notifications: mpsc::Receiver<Value>,
    done: F,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>>
where
    F: std::future::Future<Output = Option<Value>> + 'static,
{
    let state = (Some(notifications), Some(Box::pin(done)));
    futures::stream::unfold(state, |(mut notes, mut done)| async move {
        let fut = done.as_mut()?;
        let bytes = match notes.as_mut() {
            Some(rx) => tokio::select! {
                biased;
                n = rx.recv() => match n {
                    Some(n) => frame(None, &n),
                    None => {
                        notes = None;
                        return Some((Ok(Bytes::new()), (notes, done)));
                    }
                },
                reply = fut => {
                    // Notifications sent before the answer go out first.
                    let mut out = Vec::new();
                    while let Ok(n) = rx.try_recv() {
                        out.extend_from_slice(&frame(None, &n));
                    }
                    match reply {
                        Some(r) => out.extend_from_slice(&frame(None, &r)),
                        None => out.extend_from_slice(CANCELLED),
                    }
                    return Some((Ok(Bytes::from(out)), (None, None)));
                }
            },
            None => {
                let reply = fut.await;
                let out = reply.map_or(Bytes::from_static(CANCELLED), |r| frame(None, &r));
                return Some((Ok(out), (None, None)));
            }
        };
        Some((Ok(bytes), (notes, done)))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Written;
    use crate::domain::event::{Event, Priority};

    fn event(session: uuid::Uuid, id: i64) -> Event {
        Event {
            id,
            session_id: session,
            kind: "message_sent".into(),
            actor: Some("claude".into()),
            priority: Priority::Routine,
            payload: serde_json::Value::Null,
            at: chrono::Utc::now(),
            to: None,
        }
    }

    /// What an agent attached again resends of what the stream wrote for the same participant
    /// of the same session is dropped; another participant's or another session's events,
    /// whatever their ids, are not.
    #[test]
    fn written_drops_only_what_it_wrote_for_the_same_participant() {
        let (s1, s2) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let (codex, devin): (Arc<str>, Arc<str>) = (Arc::from("codex"), Arc::from("devin"));
        let written = Written::default();
        assert_eq!(written.participant(), None);
        assert!(written.first_time(&event(s1, 5), &codex));
        assert!(written.first_time(&event(s1, 6), &codex));
        assert!(!written.first_time(&event(s1, 6), &codex), "written twice");
        assert!(!written.first_time(&event(s1, 4), &codex), "an older one");
        assert_eq!(written.for_participant(s1, "codex"), Some(6));
        assert_eq!(written.for_participant(s1, "devin"), None);
        assert_eq!(written.for_participant(s2, "codex"), None);
        // Joined again as devin: ids up to 6 may be new to devin.
        assert!(written.first_time(&event(s1, 3), &devin));
        assert_eq!(written.participant(), Some((s1, "devin".to_owned())));
        // And in another session, ids start again.
        assert!(written.first_time(&event(s2, 1), &devin));
        assert_eq!(written.for_participant(s2, "devin"), Some(1));
    }
}
