//! `AgentActor`: one per active participant of a live session. It holds the participant's
//! bounded outbox and pushes events to the participant's live stream (MCP GET SSE now,
//! WebSocket later) in log order. A stream that attaches, or falls behind, is first fed from the
//! event log, then live: nothing skipped, nothing sent twice.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc::error::TrySendError;
use uuid::Uuid;

use super::messages::EventSink;
use crate::domain::event::Event;
use crate::domain::outbox::{Next, Outbox};
use crate::store::{Store, queries};

/// Events one participant may have waiting in memory before it must replay from the log.
pub const OUTBOX_CAPACITY: usize = 1024;
/// Events read from the log per replay step.
const REPLAY_PAGE: i64 = 500;
/// Pause before pushing again to a stream whose buffer was full.
const BACKOFF: Duration = Duration::from_millis(50);

struct Stream {
    sink: EventSink,
    /// Highest event id handed to this stream.
    last_sent: i64,
}

pub struct AgentActor {
    session_id: Uuid,
    pub ai_id: String,
    store: Store,
    outbox: Outbox,
    stream: Option<Stream>,
    /// A replay from the log is running; live events wait in the outbox meanwhile.
    replaying: bool,
    /// Bumped on every attach, so a replay that finishes after its stream was replaced throws
    /// its page away.
    generation: u64,
}

impl AgentActor {
    pub fn new(session_id: Uuid, ai_id: String, store: Store) -> Self {
        AgentActor {
            session_id,
            ai_id,
            store,
            outbox: Outbox::new(OUTBOX_CAPACITY),
            stream: None,
            replaying: false,
            generation: 0,
        }
    }

    /// Hands queued events to the stream, in log order, until it is full or the queue empty.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.replaying {
            return;
        }
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        loop {
            match self.outbox.next(true) {
                Next::Empty => return,
                Next::ReplayAfter(after) => {
                    let from = after.max(stream.last_sent);
                    self.replay(from, ctx);
                    return;
                }
                Next::Event(e) if e.id <= stream.last_sent => continue,
                Next::Event(e) => {
                    let id = e.id;
                    match stream.sink.try_send(e) {
                        Ok(()) => stream.last_sent = id,
                        Err(TrySendError::Full(_)) => {
                            // The consumer is slow: forget the queue, read the log later.
                            self.outbox.mark_missed(stream.last_sent);
                            ctx.run_later(BACKOFF, |act, ctx| act.pump(ctx));
                            return;
                        }
                        Err(TrySendError::Closed(_)) => {
                            self.stream = None;
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Feeds the stream from the log after `after`, page by page, then goes back to live.
    fn replay(&mut self, after: i64, ctx: &mut Context<Self>) {
        self.replaying = true;
        let (store, session_id, generation) =
            (self.store.clone(), self.session_id, self.generation);
        ctx.spawn(
            async move {
                store
                    .read(move |c| queries::events_after(c, session_id, after, REPLAY_PAGE))
                    .await
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                act.replaying = false;
                if act.generation != generation {
                    return act.pump(ctx); // a new stream attached meanwhile: start over for it
                }
                let events = match result {
                    Ok(events) => events,
                    Err(e) => {
                        log::warn!("replay for {} failed: {e}; retrying", act.ai_id);
                        act.outbox.mark_missed(after);
                        ctx.run_later(BACKOFF * 10, |act, ctx| act.pump(ctx));
                        return;
                    }
                };
                let page_full = events.len() as i64 == REPLAY_PAGE;
                for event in events {
                    let Some(stream) = act.stream.as_mut() else {
                        return;
                    };
                    if event.id <= stream.last_sent {
                        continue;
                    }
                    let id = event.id;
                    match stream.sink.try_send(Arc::new(event)) {
                        Ok(()) => stream.last_sent = id,
                        Err(TrySendError::Full(_)) => {
                            act.outbox.mark_missed(stream.last_sent);
                            ctx.run_later(BACKOFF, |act, ctx| act.pump(ctx));
                            return;
                        }
                        Err(TrySendError::Closed(_)) => {
                            act.stream = None;
                            return;
                        }
                    }
                }
                if page_full && let Some(stream) = act.stream.as_ref() {
                    let from = stream.last_sent;
                    act.replay(from, ctx);
                } else {
                    act.pump(ctx);
                }
            }),
        );
    }
}

impl Actor for AgentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Bounded: the session actor uses try_send and falls back to "replay from the log".
        ctx.set_mailbox_capacity(256);
    }
}

/// A committed event this participant should see. `missed_after` is set when earlier events
/// could not be handed over (the mailbox was full): the outbox then replays from the log.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub event: Arc<Event>,
    pub missed_after: Option<i64>,
}

impl Handler<Deliver> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        if let Some(after) = msg.missed_after {
            self.outbox.mark_missed(after);
        }
        self.outbox.push(msg.event);
        self.pump(ctx);
    }
}

/// A live stream for this participant; replaces any earlier one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub sink: EventSink,
    pub after: i64,
}

impl Handler<Attach> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Attach, ctx: &mut Self::Context) {
        self.generation += 1;
        self.stream = Some(Stream {
            sink: msg.sink,
            last_sent: msg.after,
        });
        // Whatever waited in memory is in the log too; read it from there in order.
        self.outbox.mark_missed(msg.after);
        if !self.replaying {
            self.pump(ctx);
        }
    }
}
