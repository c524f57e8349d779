//! `SessionActor`: the one place a live session's state lives.
//!
//! Commands run one at a time (`AtomicResponse`): check against the domain rules, let the store
//! commit the event with its projection, then apply the change in memory, reply, and fan the
//! event out. A reply therefore never describes a state that is not on disk.

mod context;
mod context_sync;
mod coordination;
mod disputes;
mod export;
mod keyed;
pub use keyed::Keyed;
mod live;
mod locks;
mod membership;
mod messaging;
mod over_time;
mod pipeline;
mod snapshots;
mod suggestions;
mod tasks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use uuid::Uuid;

use super::agent::{AgentActor, Attach, Deliver};
use super::hub::{Hub, JoinProject, ProjectOf, Retire, SessionGone};
use super::lock_table::LockTableActor;
use super::messages::{
    AckEvents, AttachStream, ChangeStatus, ContextValue, ContextWritten, DiffContext, EventPage,
    GetSession, JoinSession, Joined, LeaveSession, PendingCritical, PollEvents, ReadContext,
    ReissueToken, Since, TokensAgain, Whoami, WhoamiView, WriteContext,
};
use super::task_coordinator::TaskCoordinator;
use crate::domain::auth::{Caller, new_token, token_digest};
use crate::domain::context::{Diff, diff_since};
use crate::domain::context_log::changes_from_json;
use crate::domain::event::Event;
use crate::domain::message::RateLimit;
use crate::domain::now;
use crate::domain::session::CONTEXT_KINDS;
use crate::domain::session::{AccessPolicy, Session, SessionStatus, SessionView};
use crate::domain::task::TaskBoard;
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
    rotation_timer: Option<(SpawnHandle, std::time::Instant)>,
    /// The pending review-deadline check of the open handshake.
    review_timer: Option<SpawnHandle>,
    /// The project's lock table (set once the session is loaded).
    lock_table: Option<Addr<LockTableActor>>,
    /// The session's task DAG (started once the session is loaded).
    tasks: Option<Addr<TaskCoordinator>>,
    /// When each participant last called the hub (for releasing the locks of those who are
    /// gone). Interior mutability: noted while the session is borrowed to authorize.
    seen: std::cell::RefCell<HashMap<String, std::time::Instant>>,
    /// A presence sweep is scheduled.
    sweeping: bool,
    /// The event the newest whole-session snapshot stands at (auto-save only after it).
    saved_event_id: i64,
    /// Who did what in the log, by buckets (briefings count from it).
    activity: crate::domain::activity::Activity,
    /// The viewers' feed and everyone's presence.
    live: live::Live,
    /// The newest events' headers: what waits for whom, for the digests on tool results.
    recent: crate::domain::digest::Recent,
    /// Critical alerts whose reader has taken the action they asked for (`domain::settle`):
    /// they stop leading its results. Rebuilt from the log when the session loads.
    settled: crate::domain::settle::Settled,
    /// Critical messages each participant's tool-result digest showed in full and whose
    /// `shown` receipt is already on its way to the store (no second write per tool call).
    shown: HashMap<String, std::collections::BTreeSet<i64>>,
    /// When each active participant last wrote the context, for the sync reminders (in
    /// memory: a restart starts every clock afresh).
    sync: crate::domain::context_sync::SyncClocks,
    /// Writes queued to the store whose commit is not applied here yet, oldest first.
    in_flight: pipeline::InFlight,
    /// The key of the keyed command being handled, until its first write records it
    /// (`keyed`).
    request_key: std::cell::Cell<Option<Uuid>>,
    /// The context writes among them, for planning the next beside them (`domain::
    /// context_in_flight`).
    context_in_flight: crate::domain::context_in_flight::InFlight,
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
            lock_table: None,
            tasks: None,
            seen: Default::default(),
            sweeping: false,
            saved_event_id: 0,
            activity: Default::default(),
            live: Default::default(),
            recent: Default::default(),
            settled: Default::default(),
            shown: HashMap::new(),
            sync: Default::default(),
            in_flight: Default::default(),
            request_key: Default::default(),
            context_in_flight: Default::default(),
        }
    }

    /// An actor for a session that was just created and committed.
    pub fn created(
        session: Session,
        store: Store,
        policy: Arc<AccessPolicy>,
        hub: Addr<Hub>,
        lock_table: Addr<LockTableActor>,
    ) -> Self {
        // Its log so far: the creation (event 1), committed by the hub.
        let mut activity = crate::domain::activity::Activity::default();
        let created = session.created_event();
        let mut recent = crate::domain::digest::Recent::default();
        recent.push(session.last_event_id, created.priority, None, None);
        activity.record(
            session.last_event_id,
            None,
            created.kind,
            None,
            crate::store::codec::stored_length(&created.payload),
        );
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
            lock_table: Some(lock_table),
            tasks: None,
            seen: Default::default(),
            sweeping: false,
            saved_event_id: 0,
            activity,
            live: Default::default(),
            recent,
            settled: Default::default(),
            shown: HashMap::new(),
            sync: Default::default(),
            in_flight: Default::default(),
            request_key: Default::default(),
            context_in_flight: Default::default(),
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
            // Heard from: no longer only as gone as it was last announced (`live`).
            if !self.live.gone_at_load.borrow().is_empty() {
                self.live.gone_at_load.borrow_mut().remove(id);
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

    /// `presence`: what was last announced of each participant (none for a new session).
    fn start_agents(&mut self, presence: &HashMap<String, crate::store::presence::Announced>) {
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
        self.assume_idle(presence);
    }

    fn start_agent(&mut self, ai_id: String) {
        self.sync.start(&ai_id, std::time::Instant::now());
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
        self.sync.forget(ai_id);
        // Told, not only dropped: its timer would keep it running, and its streams open.
        if let Some(slot) = self.agents.remove(ai_id) {
            slot.addr.do_send(Retire);
        }
    }

    /// Hands a committed event to every agent without waiting and without unbounded queues.
    fn fan_out(&mut self, event: Event) {
        let event = Arc::new(event);
        self.live.publish(&event);
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

    /// Commits the hub's own announcements (reminders, context sync): the events alone, in one
    /// transaction, fanned out after the commit.
    fn announce(
        &mut self,
        events: Vec<crate::domain::event::NewEvent>,
    ) -> ResponseActFuture<Self, Result<(), HubError>> {
        let (id, at) = (self.id, now());
        self.commit_unkeyed(
            move |c| {
                events
                    .iter()
                    .map(|e| queries::append_event(c, id, e, at))
                    .collect()
            },
            |_, _, _| (),
        )
    }

    /// Commits `write` (any number of events, in one transaction), then runs `apply` and fans
    /// the events out. For handlers that chain it after other steps. The write of a keyed
    /// command records its key (`keyed`).
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
        let write = keyed::recording(self.take_request_key(), self.id, write);
        self.commit_unkeyed(write, apply)
    }

    /// `commit_events` for what the hub writes of its own accord (announcements), which is
    /// never a keyed command's write even when one is being handled.
    fn commit_unkeyed<T, W, A>(
        &mut self,
        write: W,
        apply: A,
    ) -> ResponseActFuture<Self, Result<T, HubError>>
    where
        T: 'static,
        W: FnOnce(&mut crate::store::DbConn) -> Result<Vec<Event>, HubError> + Send + 'static,
        A: FnOnce(&mut SessionActor, Vec<Event>, &mut Context<Self>) -> T + 'static,
    {
        let (store, id) = (self.store.clone(), self.id);
        let fut = async move { store.write_for(id, write).await }
            .into_actor(self)
            .map(move |result, act, ctx| {
                // Pipelined writes queued before this one committed before it: apply them first.
                act.drain_in_flight(ctx);
                Ok(act.applied(result?, ctx, apply))
            });
        Box::pin(fut)
    }

    /// Takes committed `events` into the session's state, runs `apply`, then fans the events
    /// out (and saves a snapshot after a milestone).
    fn applied<T>(
        &mut self,
        events: Vec<Event>,
        ctx: &mut Context<Self>,
        apply: impl FnOnce(&mut SessionActor, Vec<Event>, &mut Context<Self>) -> T,
    ) -> T {
        for event in &events {
            self.session_mut().record(event);
            self.recent.record(event);
            self.settle(event);
            self.sync.record(
                &event.kind,
                event.actor.as_deref(),
                std::time::Instant::now(),
            );
            self.activity.record(
                event.id,
                event.actor.as_deref(),
                &event.kind,
                event.to.as_deref(),
                crate::store::codec::stored_length(&event.payload),
            );
        }
        let out = apply(self, events.clone(), ctx);
        let milestone = events
            .iter()
            .any(|e| crate::domain::snapshot::is_milestone(&e.kind, &e.payload));
        for event in events {
            self.fan_out(event);
        }
        if milestone {
            ctx.notify(snapshots::AutoSave(
                crate::domain::snapshot::Trigger::Milestone,
            ));
        }
        out
    }
}

impl Actor for SessionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
        if !matches!(self.state, State::Loading) {
            self.tasks = Some(TaskCoordinator::new(TaskBoard::default()).start());
            self.start_agents(&HashMap::new());
            self.schedule_coordination_timers(ctx);
            self.schedule_presence_sweep(ctx);
            self.schedule_auto_save(ctx);
            self.schedule_context_sync(ctx);
            return;
        }
        let (hub, id, actor) = (self.hub.clone(), self.id, ctx.address());
        // `wait` holds every command back until the session and its project's lock table are
        // known. The project is joined first (its lease taken, where there are leases), then
        // the session read: whatever the project's previous holder committed is in the read.
        let load = async move {
            let Some(project) = hub.send(ProjectOf(id)).await?? else {
                return Ok(None);
            };
            let here = hub
                .send(JoinProject {
                    project,
                    session: id,
                    actor,
                })
                .await??;
            let loaded = here
                .store
                .read(move |c| {
                    let Some(session) = queries::load_session(c, id)? else {
                        return Ok(None);
                    };
                    let tasks = crate::store::tasks::load(c, id)?;
                    let saved = crate::store::snapshots::latest_event(c, id)?;
                    let activity = crate::store::briefing::activity(c, id)?;
                    let recent = crate::store::briefing::recent(c, id)?;
                    let presence = crate::store::presence::last_announced(c, id)?;
                    // What settled the critical alerts it keeps (alerts that clear themselves).
                    let mut settled = crate::domain::settle::Settled::default();
                    for later in crate::store::settle::settling(c, id, &session.recent_critical)? {
                        settled.record(&later, &session.recent_critical);
                    }
                    Ok(Some((
                        session,
                        tasks,
                        (saved, activity, recent, settled, presence),
                    )))
                })
                .await?;
            let Some((session, tasks, extra)) = loaded else {
                return Ok(None);
            };
            Ok::<_, HubError>(Some((session, TaskBoard::from_tasks(tasks), here, extra)))
        };
        ctx.wait(load.into_actor(self).map(|result, act, ctx| {
            let mut last_presence = HashMap::new();
            act.state = match result {
                Ok(Some((session, board, here, (saved, activity, recent, settled, presence)))) => {
                    act.lock_table = Some(here.table);
                    // Fenced with its project's lease: every write from now on.
                    act.store = here.store;
                    act.saved_event_id = saved;
                    act.activity = activity;
                    act.recent = recent;
                    act.settled = settled;
                    act.tasks = Some(TaskCoordinator::new(board).start());
                    last_presence = presence;
                    State::Live(Box::new(session))
                }
                Ok(None) => State::Unusable(HubError::session_not_found(act.id)),
                Err(e) => State::Unusable(e),
            };
            if matches!(act.state, State::Live(_)) {
                act.start_agents(&last_presence);
                act.schedule_loaded_timers(ctx);
                act.schedule_coordination_timers(ctx);
                act.schedule_presence_sweep(ctx);
                act.schedule_auto_save(ctx);
                act.schedule_context_sync(ctx);
            } else {
                act.hub.do_send(SessionGone(act.id));
                ctx.run_later(LINGER, |_, ctx| ctx.stop());
            }
        }));
    }
}

impl Handler<Retire> for SessionActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        self.retire(ctx);
    }
}

impl SessionActor {
    /// Stops, its agents with it: their streams end, and their clients open them again.
    fn retire(&mut self, ctx: &mut Context<Self>) {
        for (_, slot) in self.agents.drain() {
            slot.addr.do_send(Retire);
        }
        ctx.stop();
    }
}

impl Handler<super::messages::WaitingFor> for SessionActor {
    type Result = Result<crate::domain::digest::Pending, HubError>;

    fn handle(&mut self, msg: super::messages::WaitingFor, _: &mut Self::Context) -> Self::Result {
        let caller = self.caller_as(&msg.credential, msg.as_participant.as_deref())?;
        let ai_id = participant_of(caller).map_err(|_| {
            HubError::invalid("aiId", "name the participant whose waiting events to read")
        })?;
        // Read, not shown: the hook confirms what it printed (`POST /mcp/events/shown`).
        self.pending(&ai_id)
    }
}

impl SessionActor {
    /// What waits for `ai_id`, as a digest says it: its unacknowledged critical events that
    /// still ask something of it (settled ones stop leading: `domain::settle`), the older ones
    /// counted, then the counts of the rest.
    fn pending(&self, ai_id: &str) -> Result<crate::domain::digest::Pending, HubError> {
        let s = self.session()?;
        let p = s.active(ai_id)?;
        let cursor = p.acked_event_id;
        let critical: Vec<Event> = s
            .unacked_critical(ai_id)
            .into_iter()
            .filter(|e| !self.settled.is_settled(e.id, ai_id))
            .cloned()
            .collect();
        // The session keeps the newest critical events in full; when it keeps as many as it
        // can, older unacknowledged ones may wait beyond them: count those from the ring.
        let older_critical = match s.recent_critical.front() {
            Some(oldest) if s.recent_critical.len() == crate::domain::session::RECENT_CRITICAL => {
                self.recent
                    .critical_between(ai_id, cursor.max(p.acked_critical), oldest.id, |id| {
                        p.acked_critical_ids.contains(&id)
                    })
            }
            _ => 0,
        };
        Ok(crate::domain::digest::Pending {
            critical,
            older_critical,
            counts: self.recent.waiting(ai_id, cursor),
            cursor,
            verbosity: s.genome.genome.verbosity(),
        })
    }

    /// Applies a committed event to the alerts it may settle.
    fn settle(&mut self, event: &Event) {
        let State::Live(s) = &self.state else {
            return;
        };
        self.settled.record(event, &s.recent_critical);
        if let Some(oldest) = s.recent_critical.front() {
            self.settled.forget_before(oldest.id);
            let oldest = oldest.id;
            for ids in self.shown.values_mut() {
                *ids = ids.split_off(&oldest);
            }
        }
    }

    /// The critical messages a tool result's digest lists in full were shown to the model:
    /// hands the new ones to the participant's agent, which stores the receipts in batches.
    fn note_shown(&mut self, ai_id: &str, pending: &crate::domain::digest::Pending) {
        let listed = crate::domain::digest::listed(pending, crate::domain::digest::DIGEST_BYTES);
        if listed.is_empty() {
            return;
        }
        let seen = self.shown.entry(ai_id.to_owned()).or_default();
        let fresh: Vec<i64> = pending
            .critical
            .iter()
            .filter(|e| {
                listed.contains(&e.id)
                    && e.kind == crate::domain::message::MESSAGE_SENT
                    && e.actor.as_deref() != Some(ai_id)
                    && !seen.contains(&e.id)
            })
            .map(|e| e.id)
            .collect();
        if fresh.is_empty() {
            return;
        }
        if let Some(slot) = self.agents.get(ai_id) {
            let sent = slot.addr.try_send(super::agent::Shown {
                ids: fresh.clone(),
                via: crate::store::messages::ShownVia::Digest,
            });
            if sent.is_ok() {
                seen.extend(fresh);
            }
        }
    }
}

impl Handler<super::messages::MarkShown> for SessionActor {
    type Result = ResponseFuture<Result<Vec<i64>, HubError>>;

    /// Stores the receipts before it answers: a receipt reported is a receipt kept.
    fn handle(&mut self, msg: super::messages::MarkShown, _: &mut Self::Context) -> Self::Result {
        let planned = self
            .caller_as(&msg.credential, msg.as_participant.as_deref())
            .and_then(|caller| {
                participant_of(caller).map_err(|_| {
                    HubError::invalid("aiId", "name the participant whose model was shown them")
                })
            });
        let (store, id) = (self.store.clone(), self.id);
        Box::pin(async move {
            let ai_id = planned?;
            let (ids, via, at) = (msg.ids, msg.via, now());
            store
                .write_for(id, move |c| {
                    crate::store::messages::stamp_shown(c, id, &ai_id, &ids, via, at)
                })
                .await
        })
    }
}

impl Handler<PendingCritical> for SessionActor {
    type Result = Result<crate::domain::digest::Pending, HubError>;

    /// For an MCP tool result's digest: what it lists in full is shown to the model.
    fn handle(&mut self, msg: PendingCritical, _: &mut Self::Context) -> Self::Result {
        let pending = self.pending(&msg.ai_id)?;
        self.note_shown(&msg.ai_id, &pending);
        Ok(pending)
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
            let reader = ai_id.clone();
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
            // The messages in this result reached the participant: delivered (not read).
            let messages: Vec<i64> = events
                .iter()
                .filter(|e| {
                    e.kind == crate::domain::message::MESSAGE_SENT
                        && e.actor.as_deref() != Some(reader.as_str())
                })
                .map(|e| e.id)
                .collect();
            stamp_delivered(&store, id, reader, messages).await;
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
                .write_for(id, move |c| queries::set_cursor(c, id, &who, cursor))
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
                verbosity: s.genome.genome.verbosity(),
            })
            .map_err(|_| HubError::Unavailable("the participant's agent is busy; retry".into()))
    }
}

/// Stamps messages a briefing listed for `ai_id` as delivered and shown to its model (the
/// briefing is made for the model), in one write. A failure is logged, as for
/// `stamp_delivered`.
pub(crate) async fn stamp_briefed(store: &Store, session: Uuid, ai_id: String, ids: Vec<i64>) {
    if ids.is_empty() {
        return;
    }
    let who = ai_id.clone();
    let at = now();
    let via = crate::store::messages::ShownVia::Briefing;
    if let Err(e) = store
        .write_for(session, move |c| {
            crate::store::messages::stamp_delivered(c, session, &who, &ids, at)?;
            crate::store::messages::stamp_shown(c, session, &who, &ids, via, at).map(|_| ())
        })
        .await
    {
        log::warn!("{ai_id}: briefing receipts not stored: {e}");
    }
}

/// Stamps messages that reached `ai_id` in a result as delivered. A failure is logged: a receipt,
/// not the answer, is what is lost.
pub(crate) async fn stamp_delivered(store: &Store, session: Uuid, ai_id: String, ids: Vec<i64>) {
    if ids.is_empty() {
        return;
    }
    let who = ai_id.clone();
    let at = now();
    if let Err(e) = store
        .write_for(session, move |c| {
            crate::store::messages::stamp_delivered(c, session, &who, &ids, at)
        })
        .await
    {
        log::warn!("{ai_id}: delivery receipts not stored: {e}");
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
