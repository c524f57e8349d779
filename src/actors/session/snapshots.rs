//! Whole-session snapshots: on request (`session_save`), every `saveInterval` seconds when
//! something changed, and at milestones (noticed in `commit_events`).

use super::*;
use crate::actors::messages::{SaveSession, Saved};
use crate::domain::snapshot::{Includes, Trigger, auto_save_due};
use crate::store::snapshots::{self, Planned};

/// A save the actor asks of itself (auto-save, milestone).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct AutoSave(pub Trigger);

impl SessionActor {
    /// Plans, writes and records a snapshot once the writes in flight are applied; the actor
    /// handles nothing else meanwhile, so the snapshot stands exactly at the session's last
    /// event.
    fn save(
        &mut self,
        trigger: Trigger,
        includes: Includes,
    ) -> ResponseActFuture<Self, Result<Saved, HubError>> {
        self.after_in_flight(move |act, _| act.save_now(trigger, includes))
    }

    fn save_now(
        &mut self,
        trigger: Trigger,
        includes: Includes,
    ) -> ResponseActFuture<Self, Result<Saved, HubError>> {
        let planned = self.session().map(|s| Planned {
            session: s.view(),
            project: s.project.clone(),
            cursors: s
                .active_participants()
                .map(|p| (p.ai_id.clone(), p.acked_event_id))
                .collect(),
            context: includes.context.then(|| s.context.clone()),
            trigger,
            includes,
            at: now(),
        });
        let planned = match planned {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let (store, id) = (self.store.clone(), self.id);
        let fut = async move {
            store
                .write_for(id, move |c| snapshots::save(c, id, planned))
                .await
        }
        .into_actor(self)
        .map(|result, act, _| {
            let saved = result?;
            act.saved_event_id = act.saved_event_id.max(saved.event_id);
            Ok(saved)
        });
        Box::pin(fut)
    }

    /// Checks every `saveInterval` seconds whether an auto-save is due.
    pub(super) fn schedule_auto_save(&mut self, ctx: &mut Context<Self>) {
        let secs = match self.session() {
            Ok(s) if s.save_interval > 0 => u64::from(s.save_interval),
            _ => return,
        };
        ctx.run_interval(Duration::from_secs(secs), |act, ctx| {
            let due = act
                .session()
                .is_ok_and(|s| auto_save_due(s.last_event_id, act.saved_event_id));
            if due {
                ctx.notify(AutoSave(Trigger::Auto));
            }
        });
    }
}

impl Handler<SaveSession> for SessionActor {
    type Result = Reply<Saved>;

    fn handle(&mut self, msg: SaveSession, _: &mut Self::Context) -> Self::Result {
        let allowed = self
            .session()
            .and_then(|s| Ok(self.authorized(s, &msg.credential)?));
        if let Err(e) = allowed {
            return reply(Err(e));
        }
        AtomicResponse::new(self.save(msg.trigger, msg.includes))
    }
}

impl Handler<AutoSave> for SessionActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, msg: AutoSave, _: &mut Self::Context) -> Self::Result {
        let id = self.id;
        let saving = self.save(msg.0, Includes::ALL);
        // A failed background save is logged; the next interval or milestone tries again.
        AtomicResponse::new(Box::pin(saving.map(
            move |result: Result<Saved, HubError>, _, _| {
                if let Err(e) = result {
                    log::warn!("session {id}: {} snapshot failed: {e}", msg.0.as_str());
                }
            },
        )))
    }
}
