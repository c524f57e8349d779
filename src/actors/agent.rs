//! `AgentActor`: one per active participant of a live session. It holds the participant's
//! bounded, priority-ordered outbox. Transports (MCP SSE in step 2, WebSocket in step 6) attach
//! to it to receive events; until one is attached, events wait here or, past the bound, in the
//! log.

use std::sync::Arc;

use actix::prelude::*;

use crate::domain::event::Event;
use crate::domain::outbox::{Next, Outbox};

/// Events one participant may have waiting in memory before it must replay from the log.
pub const OUTBOX_CAPACITY: usize = 1024;

pub struct AgentActor {
    pub ai_id: String,
    outbox: Outbox,
}

impl AgentActor {
    pub fn new(ai_id: String) -> Self {
        AgentActor {
            ai_id,
            outbox: Outbox::new(OUTBOX_CAPACITY),
        }
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

    fn handle(&mut self, msg: Deliver, _: &mut Self::Context) {
        if let Some(after) = msg.missed_after {
            self.outbox.mark_missed(after);
        }
        self.outbox.push(msg.event);
    }
}

/// Takes the next event to hand over, critical first.
#[derive(Message)]
#[rtype(result = "Next")]
pub struct TakeNext {
    pub allow_non_critical: bool,
}

impl Handler<TakeNext> for AgentActor {
    type Result = MessageResult<TakeNext>;

    fn handle(&mut self, msg: TakeNext, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.outbox.next(msg.allow_non_critical))
    }
}
