//! `AgentActor`: one per active participant of a live session. It pushes the session's events to
//! each live stream the participant has open (an MCP GET stream per MCP session, a 2026-07-28
//! `subscriptions/listen` stream, WebSocket later), each in log order from its own cursor. A
//! stream that attaches, or falls behind, is fed from the event log first, then live: nothing
//! skipped, nothing sent twice.
//!
//! While the participant is in a non-interruptible checkpoint (`SetHold`), only critical events
//! go out, ahead of log order and marked `early`; the rest wait in the log and follow in order
//! once the hold ends (the in-order pass skips nothing and does not resend what went early).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc::error::TrySendError;
use uuid::Uuid;

use super::messages::{Delivery, EventSink};
use crate::domain::event::{Event, Priority};
use crate::domain::outbox::{Next, Outbox};
use crate::store::queries::EventFilter;
use crate::store::{Store, queries};

/// Events one stream may have waiting in memory (while it replays) before it must go back to
/// the log.
pub const OUTBOX_CAPACITY: usize = 1024;
/// Events read from the log per replay step.
const REPLAY_PAGE: i64 = 500;
/// Pause before pushing again to a stream whose buffer was full.
const BACKOFF: Duration = Duration::from_millis(50);
/// How often the messages handed to streams are stamped as delivered (a receipt the sender
/// sees as `deliveredTo`), in one write.
const DELIVERED_EVERY: Duration = Duration::from_millis(200);
/// Most live streams one participant may hold; the oldest is dropped beyond.
const MAX_STREAMS: usize = 16;

struct Stream {
    sink: EventSink,
    /// The participant this stream belongs to.
    viewer: Arc<str>,
    /// Every event up to here that this participant sees was handed to this stream in order.
    last_sent: i64,
    /// Critical events after `last_sent` that went out early (during a hold).
    early: BTreeSet<i64>,
    /// Live events that arrived while the stream was replaying.
    outbox: Outbox,
    replaying: bool,
    /// A critical event arrived during a held replay: read the log for critical ones again.
    recheck: bool,
    /// Bumped on every (re)attach, so a replay that finishes late throws its page away.
    generation: u64,
    attached: u64,
    /// Messages to this participant handed to the stream since the last flush: delivered.
    delivered: Vec<i64>,
    verbosity: crate::domain::genome::MessageVerbosity,
}

enum Push {
    Sent,
    Full,
    Closed,
}

impl Stream {
    /// The id of a message someone else sent, if `event` is one: handing it over delivers it.
    fn message_for_viewer(&self, event: &Event) -> Option<i64> {
        (event.kind == crate::domain::message::MESSAGE_SENT
            && event.actor.as_deref() != Some(&*self.viewer))
        .then_some(event.id)
    }

    /// Hands `event` over in log order.
    fn push(&mut self, event: Arc<Event>) -> Push {
        let id = event.id;
        if id <= self.last_sent {
            return Push::Sent;
        }
        if !self.early.remove(&id) {
            let message = self.message_for_viewer(&event);
            match self.sink.try_send(Delivery {
                event,
                early: false,
                viewer: self.viewer.clone(),
                verbosity: self.verbosity,
            }) {
                Ok(()) => self.delivered.extend(message),
                Err(TrySendError::Full(_)) => return Push::Full,
                Err(TrySendError::Closed(_)) => return Push::Closed,
            }
        }
        self.last_sent = id;
        self.early.retain(|&e| e > id);
        Push::Sent
    }

    /// Hands a critical `event` over ahead of the events held before it.
    fn push_early(&mut self, event: Arc<Event>) -> Push {
        let id = event.id;
        if id <= self.last_sent || self.early.contains(&id) {
            return Push::Sent;
        }
        let viewer = self.viewer.clone();
        let message = self.message_for_viewer(&event);
        match self.sink.try_send(Delivery {
            event,
            early: true,
            viewer,
            verbosity: self.verbosity,
        }) {
            Ok(()) => {
                self.early.insert(id);
                self.delivered.extend(message);
                Push::Sent
            }
            // It still comes in order after the hold, and on top of the next tool result.
            Err(TrySendError::Full(_)) => Push::Full,
            Err(TrySendError::Closed(_)) => Push::Closed,
        }
    }

    /// While held: remember to read the log from the in-order mark once the hold ends.
    fn defer(&mut self) {
        self.outbox.mark_missed(self.last_sent);
    }
}

pub struct AgentActor {
    session_id: Uuid,
    pub ai_id: String,
    store: Store,
    streams: HashMap<String, Stream>,
    generation: u64,
    /// In a non-interruptible checkpoint: only critical events go out.
    held: bool,
    /// Messages shown to the model since the last flush (listed in full in a tool result's
    /// digest), stamped with the delivered ones.
    shown: BTreeMap<crate::store::messages::ShownVia, Vec<i64>>,
    /// Delivered on streams since closed, not stamped yet.
    left_delivered: Vec<i64>,
}

impl AgentActor {
    pub fn new(session_id: Uuid, ai_id: String, store: Store, held: bool) -> Self {
        AgentActor {
            session_id,
            ai_id,
            store,
            streams: HashMap::new(),
            generation: 0,
            held,
            shown: BTreeMap::new(),
            left_delivered: Vec::new(),
        }
    }

    /// Forgets a stream; what it delivered is still stamped at the next flush.
    fn forget_stream(&mut self, key: &str) {
        if let Some(mut stream) = self.streams.remove(key) {
            self.left_delivered.append(&mut stream.delivered);
        }
    }

    /// Forgets the streams whose clients went; what they delivered is still stamped at the
    /// next flush.
    fn drop_closed_streams(&mut self) {
        let left = &mut self.left_delivered;
        self.streams.retain(|_, s| {
            let open = !s.sink.is_closed();
            if !open {
                left.append(&mut s.delivered);
            }
            open
        });
    }

    /// Stamps the messages its streams were handed since the last time as delivered (not read:
    /// a stream reaching the client does not mean the model saw it). A failed
    /// stamp is logged: a receipt, not the message, is what is lost.
    fn flush_delivered(&mut self) {
        self.flush_shown();
        let mut ids: Vec<i64> = std::mem::take(&mut self.left_delivered);
        ids.extend(
            self.streams
                .values_mut()
                .flat_map(|s| std::mem::take(&mut s.delivered)),
        );
        if ids.is_empty() {
            return;
        }
        ids.sort_unstable();
        ids.dedup();
        let (store, session_id, ai_id) = (self.store.clone(), self.session_id, self.ai_id.clone());
        // Not the actor's: a retiring agent's last receipts are written after it stopped.
        spawn_detached(async move {
            let who = ai_id.clone();
            let at = crate::domain::now();
            if let Err(e) = store
                .write_for(session_id, move |c| {
                    crate::store::messages::stamp_delivered(c, session_id, &who, &ids, at)
                })
                .await
            {
                log::warn!("{ai_id}: delivery receipts not stored: {e}");
            }
        });
    }

    /// Stamps the messages shown to the model since the last time (one write for all of them;
    /// none when nothing was shown). A failed stamp is logged, like a delivery receipt.
    fn flush_shown(&mut self) {
        if self.shown.is_empty() {
            return;
        }
        let shown = std::mem::take(&mut self.shown);
        let (store, session_id, ai_id) = (self.store.clone(), self.session_id, self.ai_id.clone());
        spawn_detached(async move {
            let who = ai_id.clone();
            let at = crate::domain::now();
            let stamped = store
                .write_for(session_id, move |c| {
                    for (via, mut ids) in shown {
                        ids.sort_unstable();
                        ids.dedup();
                        crate::store::messages::stamp_shown(c, session_id, &who, &ids, via, at)?;
                    }
                    Ok(())
                })
                .await;
            if let Err(e) = stamped {
                log::warn!("{ai_id}: shown receipts not stored: {e}");
            }
        });
    }

    /// Hands what `key`'s outbox holds to its sink, in log order.
    fn pump(&mut self, key: &str, ctx: &mut Context<Self>) {
        let Some(stream) = self.streams.get_mut(key) else {
            return;
        };
        if stream.replaying || self.held {
            return;
        }
        loop {
            match stream.outbox.next(true) {
                Next::Empty => return,
                Next::ReplayAfter(after) => {
                    let from = after.max(stream.last_sent);
                    return self.replay(key.to_owned(), from, ctx);
                }
                Next::Event(e) => match stream.push(e) {
                    Push::Sent => {}
                    Push::Full => return self.fall_behind(key.to_owned(), ctx),
                    Push::Closed => {
                        self.forget_stream(key);
                        return;
                    }
                },
            }
        }
    }

    /// The consumer is slow: forget what is queued and read the log again a little later.
    fn fall_behind(&mut self, key: String, ctx: &mut Context<Self>) {
        if let Some(stream) = self.streams.get_mut(&key) {
            stream.outbox.mark_missed(stream.last_sent);
            ctx.run_later(BACKOFF, move |act, ctx| act.pump(&key, ctx));
        }
    }

    /// Feeds `key`'s stream from the log after `after`, page by page, then goes back to live.
    /// During a hold only critical events are read (and sent early); the rest wait.
    fn replay(&mut self, key: String, after: i64, ctx: &mut Context<Self>) {
        let Some(stream) = self.streams.get_mut(&key) else {
            return;
        };
        stream.replaying = true;
        let generation = stream.generation;
        let critical_only = self.held;
        let (store, session_id, viewer) = (self.store.clone(), self.session_id, self.ai_id.clone());
        ctx.spawn(
            async move {
                store
                    .read(move |c| {
                        let filter = EventFilter {
                            viewer: Some(&viewer),
                            kinds: None,
                            critical_only,
                        };
                        queries::events_after(c, session_id, filter, after, REPLAY_PAGE)
                    })
                    .await
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                let held = act.held;
                let Some(stream) = act.streams.get_mut(&key) else {
                    return;
                };
                if stream.generation != generation {
                    return; // replaced meanwhile; the new stream runs its own replay
                }
                stream.replaying = false;
                let events = match result {
                    Ok(events) => events,
                    Err(e) => {
                        log::warn!("replay for {} failed: {e}; retrying", act.ai_id);
                        stream.outbox.mark_missed(after);
                        ctx.run_later(BACKOFF * 10, move |act, ctx| act.pump(&key, ctx));
                        return;
                    }
                };
                let page_full = events.len() as i64 == REPLAY_PAGE;
                let read_up_to = events.last().map_or(after, |e| e.id);
                // A critical-only page must not be pushed in order even if the hold ended
                // meanwhile: it skipped the held events.
                let early_mode = held || critical_only;
                for event in events {
                    let pushed = if early_mode {
                        if event.priority != Priority::Critical {
                            stream.defer();
                            continue;
                        }
                        stream.push_early(Arc::new(event))
                    } else {
                        stream.push(Arc::new(event))
                    };
                    match pushed {
                        Push::Sent => {}
                        Push::Full if early_mode => {}
                        Push::Full => return act.fall_behind(key, ctx),
                        Push::Closed => {
                            act.forget_stream(&key);
                            return;
                        }
                    }
                }
                if early_mode {
                    // The in-order pass reads the log once the hold is over.
                    stream.defer();
                    if !held {
                        act.pump(&key, ctx);
                    } else if page_full || std::mem::take(&mut stream.recheck) {
                        act.replay(key, read_up_to, ctx);
                    }
                } else if page_full {
                    let from = stream.last_sent;
                    act.replay(key, from, ctx);
                } else {
                    act.pump(&key, ctx);
                }
            }),
        );
    }
}

/// Runs a receipt's write on this thread's arbiter, outliving the agent; dropped (a receipt,
/// not a message) when the thread is shutting down.
fn spawn_detached(write: impl std::future::Future<Output = ()> + Send + 'static) {
    if !actix::Arbiter::try_current().is_some_and(|a| a.spawn(write)) {
        log::debug!("receipts not stored: the agent's thread is stopping");
    }
}

impl Handler<super::hub::Retire> for AgentActor {
    type Result = ();

    fn handle(&mut self, _: super::hub::Retire, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Actor for AgentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Bounded: the session actor uses try_send and falls back to "replay from the log".
        ctx.set_mailbox_capacity(256);
        ctx.run_interval(DELIVERED_EVERY, |act, _| act.flush_delivered());
    }

    /// What its streams delivered since the last flush (up to `DELIVERED_EVERY` of it) is
    /// stamped even so: the writes are not the actor's.
    fn stopped(&mut self, _: &mut Self::Context) {
        self.flush_delivered();
    }
}

/// A committed event this participant should see. `missed_after` is set when earlier events
/// could not be handed over (the mailbox was full): every stream then replays from the log.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub event: Arc<Event>,
    pub missed_after: Option<i64>,
}

impl Handler<Deliver> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let keys: Vec<String> = self.streams.keys().cloned().collect();
        for key in keys {
            let Some(stream) = self.streams.get_mut(&key) else {
                continue;
            };
            if let Some(after) = msg.missed_after {
                stream.outbox.mark_missed(after);
            }
            if self.held {
                if msg.event.priority == Priority::Critical && stream.replaying {
                    // The replay in flight may have read the log before this commit.
                    stream.recheck = true;
                }
                if msg.event.priority == Priority::Critical
                    && !stream.replaying
                    && let Push::Closed = stream.push_early(msg.event.clone())
                {
                    self.forget_stream(&key);
                    continue;
                }
                stream.defer();
                continue;
            }
            stream.outbox.push(msg.event.clone());
            self.pump(&key, ctx);
        }
    }
}

/// Messages shown to this participant's model (`via` how): stamped with the next flush of
/// receipts, in one write.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shown {
    pub ids: Vec<i64>,
    pub via: crate::store::messages::ShownVia,
}

impl Handler<Shown> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Shown, _: &mut Self::Context) {
        self.shown.entry(msg.via).or_default().extend(msg.ids);
    }
}

/// A live stream for this participant, named by `key` (e.g. the MCP session id); replaces an
/// earlier stream with the same key, leaves the others alone.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub key: String,
    pub sink: EventSink,
    pub after: i64,
    /// The session's `messageVerbosity`, for the stream's event summaries.
    pub verbosity: crate::domain::genome::MessageVerbosity,
}

impl Handler<Attach> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Attach, ctx: &mut Self::Context) {
        self.drop_closed_streams();
        if self.streams.len() >= MAX_STREAMS && !self.streams.contains_key(&msg.key) {
            let oldest = self
                .streams
                .iter()
                .min_by_key(|(_, s)| s.attached)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.forget_stream(&k);
            }
        }
        self.generation += 1;
        // The stream it replaces (the client reconnected) may have delivered receipts to write.
        self.forget_stream(&msg.key);
        self.streams.insert(
            msg.key.clone(),
            Stream {
                sink: msg.sink,
                viewer: Arc::from(self.ai_id.as_str()),
                last_sent: msg.after,
                early: BTreeSet::new(),
                outbox: Outbox::new(OUTBOX_CAPACITY),
                replaying: false,
                recheck: false,
                generation: self.generation,
                attached: self.generation,
                delivered: Vec::new(),
                verbosity: msg.verbosity,
            },
        );
        self.replay(msg.key, msg.after, ctx);
    }
}

/// The participant entered (`true`) or left (`false`) a non-interruptible checkpoint.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetHold(pub bool);

impl Handler<SetHold> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: SetHold, ctx: &mut Self::Context) {
        if self.held == msg.0 {
            return;
        }
        self.held = msg.0;
        let keys: Vec<String> = self.streams.keys().cloned().collect();
        for key in keys {
            if let Some(stream) = self.streams.get_mut(&key) {
                // Held: what the outbox holds goes back to the log. Released: the in-order
                // pass reads it from there.
                stream.defer();
            }
            self.pump(&key, ctx);
        }
    }
}

/// Does this participant hold a live stream right now?
#[derive(Message)]
#[rtype(result = "bool")]
pub struct HasStreams;

impl Handler<HasStreams> for AgentActor {
    type Result = bool;

    fn handle(&mut self, _: HasStreams, _: &mut Self::Context) -> bool {
        self.drop_closed_streams();
        !self.streams.is_empty()
    }
}
