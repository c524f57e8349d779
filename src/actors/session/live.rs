//! What people and programs watching a session see live: the viewers' feed (every event, for
//! the dashboard) and each participant's presence (`domain::presence`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{Reply, SessionActor, reply};
use crate::actors::agent::HasStreams;
use crate::actors::messages::{LogPage, Published, ReadLog, StreamPresence, Watch, WatchSession};
use crate::domain::auth::Caller;
use crate::domain::event::Event;
use crate::domain::now;
use crate::domain::presence::{self, Presence};
use crate::error::HubError;
use crate::store::presence::{self as store_presence, Announced};
use crate::store::queries::{self, EventFilter};

/// Events a viewer may be behind the live edge before it must go back to the log.
pub const WATCH_CAPACITY: usize = 1024;

/// The viewers' side of a session: one bounded broadcast, and who is here.
pub(super) struct Live {
    pub(super) viewers: tokio::sync::broadcast::Sender<Arc<Published>>,
    /// Open WebSocket connections per participant.
    connections: HashMap<String, usize>,
    /// Participants whose agent held an MCP stream at the last check.
    mcp_streaming: std::collections::HashSet<String>,
    /// The presence last announced (or taken at load: the one last announced of those gone,
    /// idle for everyone else, see `assume_idle`).
    presence: HashMap<String, Presence>,
    /// Those loaded as last announced gone, not heard from since (`authorized` and a stream's
    /// opening take them out). Their locks keep a full grace period from the load (their
    /// `seen` is the load's, as everyone's), but they are not announced back before they call
    /// or listen again. Interior mutability: taken out while the session is borrowed.
    pub(super) gone_at_load: std::cell::RefCell<std::collections::HashSet<String>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            viewers: tokio::sync::broadcast::channel(WATCH_CAPACITY).0,
            connections: HashMap::new(),
            mcp_streaming: Default::default(),
            presence: HashMap::new(),
            gone_at_load: Default::default(),
        }
    }
}

impl Live {
    /// Hands a committed event to the viewers, if any watch.
    pub(super) fn publish(&self, event: &Arc<Event>) {
        if self.viewers.receiver_count() > 0 {
            let _ = self.viewers.send(Arc::new(Published::new(event.clone())));
        }
    }
}

impl SessionActor {
    /// `ai_id`'s presence as it is now (its MCP streams as of the last check).
    fn presence_now(&self, ai_id: &str, now: Instant) -> Presence {
        let grace = Duration::from_secs(self.policy.disconnect_grace_secs);
        let streams = self.live.connections.get(ai_id).copied().unwrap_or(0)
            + usize::from(self.live.mcp_streaming.contains(ai_id));
        let heard = self
            .seen
            .borrow()
            .get(ai_id)
            .filter(|_| !self.live.gone_at_load.borrow().contains(ai_id))
            .map(|t| now.duration_since(*t));
        Presence::of(streams, heard, grace)
    }

    /// Presence as it is now, for `ai_ids`: the ones that changed, as (who, before, now).
    fn presence_changes(&mut self, ai_ids: Vec<String>) -> Vec<(String, Presence, Presence)> {
        let now = Instant::now();
        let mut changed = Vec::new();
        for ai_id in ai_ids {
            let state = self.presence_now(&ai_id, now);
            let before = self
                .live
                .presence
                .insert(ai_id.clone(), state)
                .unwrap_or(Presence::Idle);
            if before != state {
                changed.push((ai_id, before, state));
            }
        }
        changed
    }

    /// Whether someone's presence changed since it was last announced: then the session must
    /// announce it before it stops, or it would be loaded again with a stale one.
    pub(super) fn presence_behind(&self) -> bool {
        let now = Instant::now();
        self.active_ids()
            .iter()
            .any(|ai_id| self.live.presence.get(ai_id) != Some(&self.presence_now(ai_id, now)))
    }

    /// When `ai_id` was last heard from, as a time of day.
    /// (Not heard from since a load that found it gone: unknown. Microseconds, as every time
    /// the hub stores.)
    fn last_seen(&self, ai_id: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::{DurationRound, TimeDelta};
        let t = *self.seen.borrow().get(ai_id)?;
        if self.live.gone_at_load.borrow().contains(ai_id) {
            return None;
        }
        let ago = chrono::Duration::from_std(Instant::now().duration_since(t)).ok()?;
        let at = now().and_utc() - ago;
        Some(at.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(at))
    }

    /// Commits one `presence_changed` event per change, and what it announced
    /// (`store::presence`, read back when the session is loaded again), in one transaction. A
    /// write that fails puts the states back, so that the next check announces them again.
    fn announce_presence(
        &mut self,
        changed: Vec<(String, Presence, Presence)>,
    ) -> ResponseActFuture<Self, Result<(), HubError>> {
        if changed.is_empty() {
            return Box::pin(fut::ready(Ok(())));
        }
        let before: Vec<(String, Presence)> = changed
            .iter()
            .map(|(ai_id, before, _)| (ai_id.clone(), *before))
            .collect();
        let announced: Vec<(String, Announced)> = changed
            .into_iter()
            .map(|(ai_id, _, state)| {
                let a = Announced {
                    state,
                    last_seen: self.last_seen(&ai_id).map(|t| t.naive_utc()),
                };
                (ai_id, a)
            })
            .collect();
        let events: Vec<_> = announced
            .iter()
            .map(|(ai_id, a)| presence::changed(ai_id, a.state, a.last_seen.map(|t| t.and_utc())))
            .collect();
        let (id, at) = (self.id, now());
        let write = self.commit_unkeyed(
            move |c| {
                let written = events
                    .iter()
                    .map(|e| queries::append_event(c, id, e, at))
                    .collect::<Result<Vec<_>, _>>()?;
                store_presence::record(c, id, &announced)?;
                Ok(written)
            },
            |_, _, _| (),
        );
        Box::pin(write.map(move |result, act, _| {
            if let Err(e) = &result {
                let who: Vec<&str> = before.iter().map(|(ai, _)| ai.as_str()).collect();
                log::warn!(
                    "session {}: presence of {who:?} not recorded ({e}); announced again at the next check",
                    act.id
                );
                act.live.presence.extend(before);
            }
            result
        }))
    }

    /// The active participants, by id.
    fn active_ids(&self) -> Vec<String> {
        self.session()
            .map(|s| s.active_participants().map(|p| p.ai_id.clone()).collect())
            .unwrap_or_default()
    }

    /// Everyone starts idle (a (re)loaded session has just given them a full grace period),
    /// but for those last announced gone (`last`: what was last announced, `store::presence`):
    /// they stay gone until they call or open a stream again. Their `seen` stays (given at
    /// load): their locks keep the full grace period everyone's get.
    pub(super) fn assume_idle(&mut self, last: &HashMap<String, Announced>) {
        for ai_id in self.active_ids() {
            let state = match last.get(&ai_id) {
                Some(a) if a.state == Presence::Disconnected => {
                    self.live.gone_at_load.get_mut().insert(ai_id.clone());
                    Presence::Disconnected
                }
                _ => Presence::Idle,
            };
            self.live.presence.insert(ai_id, state);
        }
    }
}

impl Handler<WatchSession> for SessionActor {
    type Result = Result<Watch, HubError>;

    /// The operator (a loopback viewer, or the operator token) may watch everything.
    fn handle(&mut self, msg: WatchSession, _: &mut Self::Context) -> Self::Result {
        let s = self.session()?;
        match self.authorized(s, &msg.credential)? {
            Caller::Operator => Ok(Watch {
                events: self.live.viewers.subscribe(),
                last_event_id: s.last_event_id,
            }),
            Caller::Participant(_) => Err(HubError::Forbidden(
                "a participant subscribes to its own stream; watching every event takes the operator"
                    .into(),
            )),
        }
    }
}

impl Handler<StreamPresence> for SessionActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: StreamPresence, _: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.session() {
            return reply(Err(e));
        }
        let count = self.live.connections.entry(msg.ai_id.clone()).or_default();
        if msg.open {
            *count += 1;
            // A connection is being heard from.
            self.seen
                .borrow_mut()
                .insert(msg.ai_id.clone(), Instant::now());
            self.live.gone_at_load.get_mut().remove(&msg.ai_id);
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.live.connections.remove(&msg.ai_id);
                // Its subscriptions were streams of the agent too; the next check re-counts
                // any MCP stream still open.
                self.live.mcp_streaming.remove(&msg.ai_id);
            }
        }
        let changed = self.presence_changes(vec![msg.ai_id]);
        AtomicResponse::new(self.announce_presence(changed))
    }
}

/// Re-evaluates everyone's presence (part of the periodic presence sweep).
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub(super) struct PresenceCheck;

impl Handler<PresenceCheck> for SessionActor {
    type Result = Reply<()>;

    fn handle(&mut self, _: PresenceCheck, _: &mut Self::Context) -> Self::Result {
        let ids = self.active_ids();
        let agents: Vec<_> = self
            .agents
            .iter()
            .map(|(h, a)| (h.clone(), a.addr.clone()))
            .collect();
        let fut = async move {
            let mut streaming = std::collections::HashSet::new();
            for (ai_id, agent) in agents {
                if agent.send(HasStreams).await.unwrap_or(false) {
                    streaming.insert(ai_id);
                }
            }
            streaming
        }
        .into_actor(self)
        .then(move |streaming, act, _| {
            // An agent's streams include this hub's WebSocket subscriptions; counted once.
            act.live.mcp_streaming = streaming;
            let changed = act.presence_changes(ids);
            act.announce_presence(changed)
        });
        AtomicResponse::new(Box::pin(fut))
    }
}

impl Handler<ReadLog> for SessionActor {
    type Result = ResponseFuture<Result<LogPage, HubError>>;

    fn handle(&mut self, msg: ReadLog, _: &mut Self::Context) -> Self::Result {
        let planned = self.session().and_then(|s| {
            let viewer = match self.authorized(s, &msg.credential)? {
                Caller::Operator => None,
                Caller::Participant(ai_id) => Some(ai_id),
            };
            Ok((viewer, s.last_event_id))
        });
        let (store, id, after, limit) = (self.store.clone(), self.id, msg.after, msg.limit);
        Box::pin(async move {
            let (viewer, last_event_id) = planned?;
            let events = store
                .read(move |c| {
                    let filter = EventFilter {
                        viewer: viewer.as_deref(),
                        kinds: None,
                        critical_only: false,
                    };
                    queries::events_after(c, id, filter, after, limit)
                })
                .await?;
            Ok(LogPage {
                events,
                last_event_id,
            })
        })
    }
}

impl SessionActor {
    /// Nothing of this session runs over time here: nobody watches it (no viewer, no
    /// WebSocket connection), no write of it is in flight, and nothing is due later (a message's
    /// acknowledgement deadline, a checkpoint's overrun, a handshake review deadline, a
    /// rotation). Whether its agents hold streams is asked apart.
    fn at_rest(&self) -> bool {
        let due_later = match &self.state {
            super::State::Live(s) => {
                s.pending_acks.iter().next().is_some()
                    || s.active_participants().any(|p| p.checkpoint.is_some())
            }
            super::State::Loading => true,
            super::State::Unusable(_) => false,
        };
        !due_later
            && self.live.viewers.receiver_count() == 0
            && self.live.connections.values().all(|n| *n == 0)
            && self.in_flight.is_empty()
            && self.review_timer.is_none()
            && self.rotation_timer.is_none()
    }
}

impl Handler<crate::actors::hub::StopIfQuiet> for SessionActor {
    type Result = AtomicResponse<Self, bool>;

    /// Stops (its agents with it) and answers true when it is at rest, none of its agents
    /// holds a stream or a long poll, and every change of presence was announced (else it
    /// announces them, and answers false); atomically: nothing else is handled between the check and
    /// the stop, so nothing it would write is left half done.
    fn handle(
        &mut self,
        _: crate::actors::hub::StopIfQuiet,
        ctx: &mut Self::Context,
    ) -> Self::Result {
        if !self.at_rest() {
            return AtomicResponse::new(Box::pin(fut::ready(false)));
        }
        // Someone came back (or left) since the last check: announced first, so that the
        // session is loaded again with the presence it has now; the next ask finds it done.
        if self.presence_behind() {
            ctx.notify(PresenceCheck);
            return AtomicResponse::new(Box::pin(fut::ready(false)));
        }
        // Its auto-save first, if one is due: the next ask finds it taken.
        if let super::State::Live(s) = &self.state
            && s.save_interval > 0
            && crate::domain::snapshot::auto_save_due(s.last_event_id, self.saved_event_id)
        {
            ctx.notify(super::snapshots::AutoSave(
                crate::domain::snapshot::Trigger::Auto,
            ));
            return AtomicResponse::new(Box::pin(fut::ready(false)));
        }
        let agents: Vec<_> = self.agents.values().map(|a| a.addr.clone()).collect();
        let streaming = async move {
            for agent in agents {
                if agent.send(HasStreams).await.unwrap_or(false) {
                    return true;
                }
            }
            false
        };
        AtomicResponse::new(Box::pin(streaming.into_actor(self).map(
            |streaming, act, ctx| {
                if streaming || !act.at_rest() {
                    return false;
                }
                // No stream now: one that closed since the last check is announced first.
                act.live.mcp_streaming.clear();
                if act.presence_behind() {
                    ctx.notify(PresenceCheck);
                    return false;
                }
                act.retire(ctx);
                true
            },
        )))
    }
}
