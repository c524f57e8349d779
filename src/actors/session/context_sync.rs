//! The session actor's side of context-sync reminders (`domain::context_sync`): one timer per
//! session, set for the earliest participant that may be due, so a session where everyone
//! writes wakes about once per interval and finds nothing to do.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::SessionActor;
use crate::domain::context_sync::reminder;
use crate::domain::session::SessionStatus;

/// Internal: remind whoever has been silent for an interval.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct ContextSyncCheck;

impl SessionActor {
    fn sync_interval(&self) -> Option<Duration> {
        let s = self.session().ok()?;
        // A completed session takes no more context: the timer stops.
        (s.status != SessionStatus::Completed)
            .then(|| Duration::from_secs(s.genome.genome.context_sync_secs()))
    }

    /// Sets the next check (one chain per session: started at load, renewed by each check).
    pub(super) fn schedule_context_sync(&mut self, ctx: &mut Context<Self>) {
        if let Some(interval) = self.sync_interval() {
            let wait = self.sync.next_check(interval, Instant::now());
            ctx.notify_later(ContextSyncCheck, wait);
        }
    }
}

impl Handler<ContextSyncCheck> for SessionActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: ContextSyncCheck, ctx: &mut Self::Context) -> Self::Result {
        let (Some(interval), Ok(s)) = (self.sync_interval(), self.session()) else {
            return AtomicResponse::new(Box::pin(fut::ready(())));
        };
        let status = s.status;
        let members: Vec<_> = s
            .active_participants()
            .map(|p| (p.ai_id.clone(), p.role))
            .collect();
        let due = self.sync.due(
            members.iter().map(|(id, role)| (id.as_str(), *role)),
            status,
            interval,
            Instant::now(),
        );
        if due.is_empty() {
            self.schedule_context_sync(ctx);
            return AtomicResponse::new(Box::pin(fut::ready(())));
        }
        let events: Vec<_> = due.iter().map(|ai_id| reminder(ai_id, interval)).collect();
        let id = self.id;
        let committed = self.announce(events);
        AtomicResponse::new(Box::pin(committed.map(move |result, act, ctx| {
            // A lost reminder is not worth a retry storm: the next interval tries again.
            if let Err(e) = result {
                log::warn!("session {id}: context-sync reminders not written: {e}");
            }
            act.schedule_context_sync(ctx);
        })))
    }
}
