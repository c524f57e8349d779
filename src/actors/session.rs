//! `SessionActor`: the one place a live session's state lives.
//!
//! Commands run one at a time (`AtomicResponse`): check against the domain rules, let the store
//! commit the event with its projection, then apply the change in memory, reply, and fan the
//! event out. A reply therefore never describes a state that is not on disk.

mod coordination;
mod locks;
mod messaging;
mod suggestions;
mod tasks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use uuid::Uuid;

use super::agent::{AgentActor, Attach, Deliver};
use super::hub::{Hub, SessionGone};
use super::messages::{
    AckEvents, AttachStream, ChangeStatus, ContextValue, ContextWritten, DiffContext, EventPage,
    GetSession, JoinSession, Joined, LeaveSession, PendingCritical, PollEvents, ReadContext,
    ReissueToken, Since, Whoami, WhoamiView, WriteContext,
};
use crate::domain::auth::{Caller, new_token, token_digest};
use crate::domain::context::{Diff, diff_since};
use crate::domain::context_log::changes_from_json;
use crate::domain::event::Event;
use crate::domain::message::RateLimit;
use crate::domain::now;
use crate::domain::session::CONTEXT_KINDS;
use crate::domain::session::{AccessPolicy, Session, SessionView};
use crate::error::HubError;
use crate::store::queries::EventFilter;
use crate::store::{Store, queries};

/// How long an actor whose session could not be loaded keeps answering queued commands before
/// it stops (the hub has already forgotten it, so new commands go to a fresh actor).
const LINGER: Duration = Duration::from_secs(5);

enum State {
    Loading,
    Live(Box<Session>),
    /// Not in the database, or the load failed: every command gets this error.
    Unusable(HubError),
}

struct AgentSlot {
    addr: Addr<AgentActor>,
    /// First event this agent did not receive because its mailbox was full.
    missed_after: Option<i64>,
}

pub struct SessionActor {
    id: Uuid,
    store: Store,
    policy: Arc<AccessPolicy>,
    hub: Addr<Hub>,
    state: State,
    agents: HashMap<String, AgentSlot>,
    /// Per-participant send budget (not persisted: a restart refills it).
    send_limits: HashMap<String, RateLimit>,
    /// The pending automatic-rotation check, replaced when the rotation clock moves.
    rotation_timer: Option<SpawnHandle>,
    /// The pending review-deadline check of the open handshake.
    review_timer: Option<SpawnHandle>,
    /// The pending check for the next lease expiry.
    lease_timer: Option<SpawnHandle>,
    /// When each participant last called the hub (for releasing the locks of those who are
    /// gone). Interior mutability: noted while the session is borrowed to authorize.
    seen: std::cell::RefCell<HashMap<String, std::time::Instant>>,
    /// A presence sweep is scheduled.
    sweeping: bool,
}

type Reply<T> = AtomicResponse<SessionActor, Result<T, HubError>>;

fn reply<T: 'static>(result: Result<T, HubError>) -> Reply<T> {
    AtomicResponse::new(Box::pin(fut::ready(result)))
}

impl SessionActor {
    /// An actor that loads its session from the store before it handles any command.
    pub fn load(id: Uuid, store: Store, policy: Arc<AccessPolicy>, hub: Addr<Hub>) -> Self {
        SessionActor {
            id,
            store,
            policy,
            hub,
            state: State::Loading,
            agents: HashMap::new(),
            send_limits: HashMap::new(),
            rotation_timer: None,
            review_timer: None,
            lease_timer: None,
            seen: Default::default(),
            sweeping: false,
        }
    }

    /// An actor for a session that was just created and committed.
    pub fn created(
        session: Session,
        store: Store,
        policy: Arc<AccessPolicy>,
        hub: Addr<Hub>,
    ) -> Self {
        SessionActor {
            id: session.id,
            store,
            policy,
            hub,
            state: State::Live(Box::new(session)),
            agents: HashMap::new(),
            send_limits: HashMap::new(),
            rotation_timer: None,
            review_timer: None,
            lease_timer: None,
            seen: Default::default(),
            sweeping: false,
        }
    }

    fn session(&self) -> Result<&Session, HubError> {
        match &self.state {
            State::Live(s) => Ok(s),
            State::Unusable(e) => Err(e.clone()),
            State::Loading => Err(HubError::Internal(
                "session used before it was loaded".into(),
            )),
        }
    }

    /// Who the credential speaks for, noting that a participant was seen.
    fn authorized(
        &self,
        s: &Session,
        credential: &crate::domain::auth::Credential,
    ) -> Result<Caller, crate::domain::DomainError> {
        let caller = s.authorize(credential, &self.policy)?;
        if let Caller::Participant(id) = &caller {
            // On every command: update in place, allocate only for a first sighting.
            let now = std::time::Instant::now();
            let mut seen = self.seen.borrow_mut();
            match seen.get_mut(id) {
                Some(t) => *t = now,
                None => {
                    seen.insert(id.clone(), now);
                }
            }
        }
        Ok(caller)
    }

    /// Who a command speaks for: the credential's participant, or (operator only) the
    /// participant it names (`aiId`).
    fn caller_as(
        &self,
        credential: &crate::domain::auth::Credential,
        named: Option<&str>,
    ) -> Result<Caller, HubError> {
        let s = self.session()?;
        let caller = self.authorized(s, credential)?;
        Ok(s.speaking_as(caller, named)?)
    }

    fn session_mut(&mut self) -> &mut Session {
        match &mut self.state {
            State::Live(s) => s,
            _ => unreachable!("writes are only planned on a live session"),
        }
    }

    fn start_agents(&mut self) {
        let ids: Vec<String> = match &self.state {
            State::Live(s) => s.active_participants().map(|p| p.ai_id.clone()).collect(),
            _ => return,
        };
        // A (re)started session gives everyone a full grace period before it judges absence.
        let now = std::time::Instant::now();
        self.seen
            .borrow_mut()
            .extend(ids.iter().map(|id| (id.clone(), now)));
        for id in ids {
            self.start_agent(id);
        }
    }

    fn start_agent(&mut self, ai_id: String) {
        let (store, session_id) = (self.store.clone(), self.id);
        let held = self.session().is_ok_and(|s| s.holding(&ai_id));
        self.agents
            .entry(ai_id.clone())
            .or_insert_with(|| AgentSlot {
                addr: AgentActor::new(session_id, ai_id, store, held).start(),
                missed_after: None,
            });
    }

    fn stop_agent(&mut self, ai_id: &str) {
        // Dropping the last address stops the agent once its mailbox is empty.
        self.agents.remove(ai_id);
    }

    /// Hands a committed event to every agent without waiting and without unbounded queues.
    fn fan_out(&mut self, event: Event) {
        let event = Arc::new(event);
        for (ai_id, slot) in &mut self.agents {
            if !event.visible_to(ai_id) {
                continue;
            }
            let msg = Deliver {
                event: event.clone(),
                missed_after: slot.missed_after,
            };
            match slot.addr.try_send(msg) {
                Ok(()) => slot.missed_after = None,
                Err(_) => {
                    log::warn!(
                        "participant {ai_id} is not keeping up; it will replay from the log"
                    );
                    slot.missed_after.get_or_insert(event.id - 1);
                }
            }
        }
    }

    /// Commits `write`, then runs `apply` on the actor; the reply waits for both.
    fn commit<T, W, A>(&mut self, write: W, apply: A) -> Reply<T>
    where
        T: 'static,
        W: FnOnce(&mut crate::store::DbConn) -> Result<Event, HubError> + Send + 'static,
        A: FnOnce(&mut SessionActor, Event) -> T + 'static,
    {
        AtomicResponse::new(self.commit_events(
            move |c| write(c).map(|e| vec![e]),
            move |act, mut events, _| apply(act, events.remove(0)),
        ))
    }

    /// Commits `write` (any number of events, in one transaction), then runs `apply` and fans
    /// the events out. For handlers that chain it after other steps.
    fn commit_events<T, W, A>(
        &mut self,
        write: W,
        apply: A,
    ) -> ResponseActFuture<Self, Result<T, HubError>>
    where
        T: 'static,
        W: FnOnce(&mut crate::store::DbConn) -> Result<Vec<Event>, HubError> + Send + 'static,
        A: FnOnce(&mut SessionActor, Vec<Event>, &mut Context<Self>) -> T + 'static,
    {
        let store = self.store.clone();
        let fut = async move { store.write(write).await }
            .into_actor(self)
            .map(move |result, act, ctx| {
                let events = result?;
                for event in &events {
                    act.session_mut().record(event);
                }
                let out = apply(act, events.clone(), ctx);
                for event in events {
                    act.fan_out(event);
                }
                Ok(out)
            });
        Box::pin(fut)
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
        if !matches!(self.state, State::Loading) {
            self.start_agents();
            self.schedule_coordination_timers(ctx);
            return;
        }
        let store = self.store.clone();
        let id = self.id;
        // `wait` holds every command back until the session is loaded.
        ctx.wait(
            async move { store.read(move |c| queries::load_session(c, id)).await }
                .into_actor(self)
                .map(|result, act, ctx| {
                    act.state = match result {
                        Ok(Some(session)) => State::Live(Box::new(session)),
                        Ok(None) => State::Unusable(HubError::session_not_found(act.id)),
                        Err(e) => State::Unusable(e),
                    };
                    if matches!(act.state, State::Live(_)) {
                        act.start_agents();
                        act.schedule_loaded_timers(ctx);
                        act.schedule_coordination_timers(ctx);
                        act.schedule_lease_timer(ctx);
                    } else {
                        act.hub.do_send(SessionGone(act.id));
                        ctx.run_later(LINGER, |_, ctx| ctx.stop());
                    }
                }),
        );
    }
}

impl Handler<GetSession> for SessionActor {
    type Result = Result<SessionView, HubError>;

    fn handle(&mut self, msg: GetSession, _: &mut Self::Context) -> Self::Result {
        let s = self.session()?;
        self.authorized(s, &msg.credential)?;
        Ok(s.view())
    }
}

impl Handler<JoinSession> for SessionActor {
    type Result = Reply<Joined>;

    fn handle(&mut self, msg: JoinSession, _: &mut Self::Context) -> Self::Result {
        let token = new_token();
        let at = now();
        let planned = self.session().and_then(|s| {
            let caller = self.authorized(s, &msg.credential)?;
            let ai_id = &msg.participant.ai_id;
            if msg.connect_existing
                && caller == Caller::Operator
                && let Ok(existing) = s.active(ai_id)
            {
                // Nothing changes: the operator's MCP session takes this participant's seat.
                return Ok(Err(Joined {
                    session_id: s.id,
                    participant: existing.into(),
                    token: None,
                    session: s.view(),
                    event_id: s.last_event_id,
                }));
            }
            Ok(Ok(s.check_join(
                &caller,
                &msg.participant,
                token_digest(&token),
                at,
            )?))
        });
        let (participant, event) = match planned {
            Ok(Ok(p)) => p,
            Ok(Err(existing)) => return reply(Ok(existing)),
            Err(e) => return reply(Err(e)),
        };
        let id = self.id;
        let mut row = participant.clone();
        self.commit(
            move |c| {
                let event = queries::append_event(c, id, &event, at)?;
                // Its own join is the first event the newcomer knows about.
                row.acked_event_id = event.id;
                queries::upsert_participant(c, id, &row)?;
                Ok(event)
            },
            move |act, event| {
                let ai_id = participant.ai_id.clone();
                let session = act.session_mut();
                let mut participant = participant;
                participant.acked_event_id = event.id;
                session.apply_join(participant, event.id);
                let view = session.view();
                let participant = session.participants[&ai_id].clone();
                act.start_agent(ai_id);
                Joined {
                    session_id: id,
                    participant: (&participant).into(),
                    token: Some(token),
                    session: view,
                    event_id: event.id,
                }
            },
        )
    }
}

impl Handler<LeaveSession> for SessionActor {
    type Result = Reply<SessionView>;

    fn handle(&mut self, msg: LeaveSession, _: &mut Self::Context) -> Self::Result {
        let at = now();
        let planned = self.session().and_then(|s| {
            let caller = self.authorized(s, &msg.credential)?;
            let event = s.check_leave(&msg.ai_id, &caller)?;
            // What leaving also ends, written in the same transaction: the leaver's locks
            // (waiters move up), and its part in an open handshake.
            let releases: Vec<_> = s
                .locks
                .of(&msg.ai_id)
                .into_iter()
                .map(|id| (id, crate::domain::lock::Release::Left))
                .collect();
            let release = self.plan_release(&releases, None, Vec::new())?;
            let coordination = s.coordination.after_leave(&msg.ai_id, at);
            Ok((event, release, coordination))
        });
        let (event, release, coordination) = match planned {
            Ok(p) => p,
            Err(e) => return reply(Err(e)),
        };
        let (id, ai_id) = (self.id, msg.ai_id);
        let leaving = ai_id.clone();
        let (stored_release, stored_coordination) = (release.clone(), coordination.clone());
        AtomicResponse::new(Box::pin(self.commit_events(
            move |c| {
                queries::mark_left(c, id, &leaving, at)?;
                let mut events = vec![queries::append_event(c, id, &event, at)?];
                if let Some((next, announce)) = &stored_coordination {
                    crate::store::ledger::set_coordination(c, id, next)?;
                    if let Some(e) = announce {
                        events.push(queries::append_event(c, id, e, at)?);
                    }
                }
                events.extend(stored_release.write(c, id, at)?);
                Ok(events)
            },
            move |act, events, ctx| {
                let s = act.session_mut();
                s.apply_leave(&ai_id, at, events[0].id);
                if let Some((next, _)) = coordination {
                    s.coordination = next;
                }
                release.apply(s, &events, at);
                act.stop_agent(&ai_id);
                act.schedule_lease_timer(ctx);
                act.schedule_coordination_timers(ctx);
                act.session_mut().view()
            },
        )))
    }
}

impl Handler<ChangeStatus> for SessionActor {
    type Result = Reply<SessionView>;

    fn handle(&mut self, msg: ChangeStatus, _: &mut Self::Context) -> Self::Result {
        let planned = self.session().and_then(|s| {
            let caller = self.authorized(s, &msg.credential)?;
            Ok(s.check_status(msg.to, &caller)?)
        });
        let event = match planned {
            Ok(e) => e,
            Err(e) => return reply(Err(e)),
        };
        let (id, at, to) = (self.id, now(), msg.to);
        self.commit(
            move |c| {
                queries::set_status(c, id, to)?;
                queries::append_event(c, id, &event, at)
            },
            move |act, event| {
                let session = act.session_mut();
                session.apply_status(to, at, event.id);
                session.view()
            },
        )
    }
}

impl Handler<Whoami> for SessionActor {
    type Result = Result<WhoamiView, HubError>;

    fn handle(&mut self, msg: Whoami, _: &mut Self::Context) -> Self::Result {
        let s = self.session()?;
        let ai_id = participant_of(self.authorized(s, &msg.credential)?)?;
        Ok(WhoamiView::new(s, s.active(&ai_id)?))
    }
}

impl Handler<PendingCritical> for SessionActor {
    type Result = Result<Vec<Event>, HubError>;

    fn handle(&mut self, msg: PendingCritical, _: &mut Self::Context) -> Self::Result {
        let s = self.session()?;
        Ok(s.unacked_critical(&msg.ai_id)
            .into_iter()
            .cloned()
            .collect())
    }
}

impl Handler<PollEvents> for SessionActor {
    type Result = ResponseFuture<Result<EventPage, HubError>>;

    fn handle(&mut self, msg: PollEvents, _: &mut Self::Context) -> Self::Result {
        let planned = self.session().and_then(|s| {
            let ai_id = participant_of(self.authorized(s, &msg.credential)?)?;
            let p = s.active(&ai_id)?;
            Ok((
                msg.after.unwrap_or(p.acked_event_id),
                p.acked_event_id,
                s.last_event_id,
                s.holding(&ai_id),
                ai_id,
            ))
        });
        let (store, id, limit) = (self.store.clone(), self.id, msg.limit);
        Box::pin(async move {
            let (after, acked, last, held, ai_id) = planned?;
            let events = store
                .read(move |c| {
                    let filter = EventFilter {
                        viewer: Some(&ai_id),
                        kinds: None,
                        critical_only: held,
                    };
                    queries::events_after(c, id, filter, after, limit)
                })
                .await?;
            Ok(EventPage {
                more: events.len() as i64 == limit,
                events,
                acked_event_id: acked,
                last_event_id: last,
                held,
            })
        })
    }
}

impl Handler<AckEvents> for SessionActor {
    type Result = Reply<i64>;

    fn handle(&mut self, msg: AckEvents, _: &mut Self::Context) -> Self::Result {
        let planned = self.session().and_then(|s| {
            let ai_id = participant_of(self.authorized(s, &msg.credential)?)?;
            let cursor = s.check_ack(&ai_id, msg.up_to)?;
            Ok((ai_id, cursor))
        });
        let up_to = msg.up_to;
        let (ai_id, cursor) = match planned {
            Ok(p) => p,
            Err(e) => return reply(Err(e)),
        };
        let (store, id) = (self.store.clone(), self.id);
        let who = ai_id.clone();
        let fut = async move {
            store
                .write(move |c| queries::set_cursor(c, id, &who, cursor))
                .await
        }
        .into_actor(self)
        .map(move |result, act, _| {
            result?;
            act.session_mut().apply_ack(&ai_id, cursor, up_to);
            Ok(cursor)
        });
        AtomicResponse::new(Box::pin(fut))
    }
}

impl Handler<AttachStream> for SessionActor {
    type Result = Result<(), HubError>;

    fn handle(&mut self, msg: AttachStream, _: &mut Self::Context) -> Self::Result {
        let s = self.session()?;
        let ai_id = participant_of(self.authorized(s, &msg.credential)?)?;
        let after = msg.after.unwrap_or(s.active(&ai_id)?.acked_event_id);
        let slot = self
            .agents
            .get(&ai_id)
            .ok_or_else(|| HubError::Internal("participant has no agent".into()))?;
        slot.addr
            .try_send(Attach {
                key: msg.key,
                sink: msg.sink,
                after,
            })
            .map_err(|_| HubError::Unavailable("the participant's agent is busy; retry".into()))
    }
}

/// The participant a caller speaks for; the operator is nobody in particular.
fn participant_of(caller: Caller) -> Result<String, HubError> {
    match caller {
        Caller::Participant(id) => Ok(id),
        Caller::Operator => Err(HubError::Forbidden(
            "this needs a participant's identity: send its bearer token, or join the session first"
                .into(),
        )),
    }
}

impl Handler<ReissueToken> for SessionActor {
    type Result = Reply<String>;

    fn handle(&mut self, msg: ReissueToken, _: &mut Self::Context) -> Self::Result {
        let planned = self.session().and_then(|s| {
            let caller = self.authorized(s, &msg.credential)?;
            Ok(s.check_reissue(&msg.ai_id, &caller)?)
        });
        let event = match planned {
            Ok(e) => e,
            Err(e) => return reply(Err(e)),
        };
        let (id, at, ai_id, token) = (self.id, now(), msg.ai_id, new_token());
        let digest = token_digest(&token);
        let (who, stored) = (ai_id.clone(), digest.clone());
        self.commit(
            move |c| {
                queries::set_token_digest(c, id, &who, &stored)?;
                queries::append_event(c, id, &event, at)
            },
            move |act, event| {
                act.session_mut()
                    .apply_reissue(&ai_id, digest, at, event.id);
                token
            },
        )
    }
}

/// Context changes a diff rewinds at most. A diff rewinds the log from the current document
/// back to `since`, newest first, so it needs every change in between: a longer span is
/// refused (diff from a later point) rather than answered wrongly.
const MAX_DIFF_CHANGES: i64 = 10_000;

impl Handler<WriteContext> for SessionActor {
    type Result = Reply<ContextWritten>;

    fn handle(&mut self, msg: WriteContext, _: &mut Self::Context) -> Self::Result {
        let planned = self
            .caller_as(&msg.credential, msg.as_participant.as_deref())
            .and_then(|caller| Ok(self.session()?.check_context(&caller, &msg.request)?));
        let (changes, event) = match planned {
            Ok(p) => p,
            Err(e) => return reply(Err(e)),
        };
        if changes.is_empty() {
            return reply(Ok(ContextWritten {
                event_id: None,
                version: None,
                changed: Vec::new(),
            }));
        }
        let (id, at) = (self.id, now());
        let snapshot = self.session_mut().snapshot_due(&changes);
        let snapshotted = snapshot.is_some();
        self.commit(
            move |c| {
                let event = queries::append_event(c, id, &event, at)?;
                // Every SNAPSHOT_EVERY context changes, the whole context is stored with the
                // change, so a restart replays at most that many.
                if let Some((mut context, changes)) = snapshot {
                    for ch in &changes {
                        context.apply(ch, event.id);
                    }
                    queries::insert_snapshot(c, id, event.id, &context, "auto", at)?;
                }
                Ok(event)
            },
            move |act, event| {
                act.session_mut().apply_context(&changes, event.id);
                if snapshotted {
                    act.session_mut().context_since_snapshot = 0;
                }
                ContextWritten {
                    event_id: Some(event.id),
                    version: Some(event.id),
                    changed: changes.iter().map(|c| c.path.to_string()).collect(),
                }
            },
        )
    }
}

impl Handler<ReadContext> for SessionActor {
    type Result = Result<ContextValue, HubError>;

    fn handle(&mut self, msg: ReadContext, _: &mut Self::Context) -> Self::Result {
        let s = self.session()?;
        self.authorized(s, &msg.credential)?;
        let value = s.context.get(&msg.path).cloned();
        Ok(ContextValue {
            path: msg.path.to_string(),
            exists: value.is_some(),
            value: value.unwrap_or(serde_json::Value::Null),
            version: s.context.version(&msg.path),
        })
    }
}

impl Handler<DiffContext> for SessionActor {
    type Result = ResponseFuture<Result<Diff, HubError>>;

    fn handle(&mut self, msg: DiffContext, _: &mut Self::Context) -> Self::Result {
        let caller = self.caller_as(&msg.credential, msg.as_participant.as_deref());
        let (store, id) = (self.store.clone(), self.id);
        // The document now, and the newest event it reflects; the log says how it got here
        // from `since`. Events committed after this moment are left out of the rewind.
        let current = self
            .session()
            .map(|s| (s.context.document().clone(), s.last_event_id));
        Box::pin(async move {
            let caller = caller?;
            let (current, reflected) = current?;
            let events = store
                .read(move |c| {
                    let since = match (msg.since, &caller) {
                        (Since::Event(n), _) => n,
                        (Since::Time(t), _) => queries::last_event_at(c, id, t.naive_utc())?,
                        (Since::MyLastWrite, Caller::Participant(me)) => {
                            queries::last_event_by(c, id, &CONTEXT_KINDS, me)?
                        }
                        (Since::MyLastWrite, Caller::Operator) => 0,
                    };
                    let filter = EventFilter {
                        viewer: None,
                        kinds: Some(&CONTEXT_KINDS),
                        critical_only: false,
                    };
                    queries::events_after(c, id, filter, since, MAX_DIFF_CHANGES + 1)
                })
                .await?;
            if events.len() as i64 > MAX_DIFF_CHANGES {
                return Err(HubError::Conflict {
                    code: "diff_too_long",
                    message: format!(
                        "more than {MAX_DIFF_CHANGES} context changes since then; diff from a later event or time"
                    ),
                });
            }
            let mut logged = Vec::new();
            for e in events.into_iter().filter(|e| e.id <= reflected) {
                match changes_from_json(&e.payload["changes"]) {
                    Ok(changes) => {
                        logged.extend(changes.into_iter().map(|c| (c, e.actor.clone(), e.id)))
                    }
                    // Skipped at load too (written before every write checked its keys).
                    Err(why) => log::warn!(
                        "session {id}: diff skips unreadable context change #{}: {why}",
                        e.id
                    ),
                }
            }
            Ok(diff_since(&current, &logged))
        })
    }
}
