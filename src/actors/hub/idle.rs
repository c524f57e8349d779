//! Letting idle sessions and projects go. A hub kept every session it served loaded (its actor,
//! its agents) and every project (its lock table, its lease) until the project's lease moved;
//! over weeks that is every session ever touched. A session that no request reached for
//! `--idle-secs`, and in which nothing runs over time, now stops; a project none of
//! whose sessions was used for that long is stopped as a whole and its lease handed back. The
//! next request for either, at this hub or another, loads it again from the database.
//!
//! "Nothing runs over time": each session actor, asked at the end of the period, stops itself
//! if nobody watches it (no viewer, no WebSocket, no agent stream or long poll), no write of it
//! is in flight and nothing of it is due later (an acknowledgement deadline, a checkpoint's
//! overrun, a review deadline, a rotation, an auto-save, a change of presence not announced
//! yet): atomically, so that nothing it would
//! write is left half done (`StopIfQuiet`). A stopped session is loaded again by its next
//! request. Once every session of an idle project stopped, the lock table is
//! asked whether a decision of it is on its way to a session's log (`Quiet`), and a project no
//! request reached meanwhile is let go. What a loaded session held in memory only is rebuilt
//! at load, as after a restart (presence starts from what was last announced: those gone stay
//! gone, everyone else gets a fresh grace period; lock leases that ran
//! out meanwhile are expired as the table loads, send budgets refill, round-robin assignment
//! starts again from the first candidate).

use std::time::{Duration, Instant};

use actix::prelude::*;
use uuid::Uuid;

use super::Hub;

/// Stop if nothing runs over time here (a session actor: see the module comment); answers
/// whether it stopped.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct StopIfQuiet;

/// Is no decision of this lock table on its way to a session's log?
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Quiet;

/// How many projects and session actors this hub holds loaded (`GET /metrics`).
#[derive(Message)]
#[rtype(result = "(usize, usize)")]
pub struct Loaded;

/// The sweep looks at least this often, and about four times per idle period.
const LOOK_EVERY_AT_MOST: Duration = Duration::from_secs(60);

/// A session whose actor joined a project served here.
pub(super) struct Using {
    pub(super) project: String,
    /// When a request last reached it (or its project's lock table asked for it).
    last_used: Instant,
}

impl Using {
    pub(super) fn now(project: &str) -> Using {
        Using {
            project: project.to_owned(),
            last_used: Instant::now(),
        }
    }
}

/// What one sweep asks of one project: `whole`, whether it may be let go (no request reached
/// any of its sessions for the idle period: `asked_at` is when the last did), and the session
/// actors asked to stop.
struct Ask {
    project: String,
    whole: bool,
    asked_at: Instant,
    table: Addr<crate::actors::lock_table::LockTableActor>,
    sessions: Vec<(Uuid, Addr<crate::actors::session::SessionActor>)>,
}

impl Hub {
    /// A request reached session `id` (or its project's lock table asked for it).
    pub(super) fn note_use(&mut self, id: Uuid) {
        if self.idle.is_none() {
            return;
        }
        let now = Instant::now();
        if let Some(using) = self.serving.get_mut(&id) {
            using.last_used = now;
            if let Some(served) = self.projects.get_mut(&using.project) {
                served.last_used = now;
            }
        }
    }

    /// Whether the sweep is asking session `id` to stop. A command for it then waits at the hub
    /// for the answer (`defer`), and counts as use: sent at once, it could queue behind the ask
    /// in an actor that then stops, and be dropped with it.
    pub(super) fn being_asked(&mut self, id: Uuid) -> bool {
        if self.asking.is_empty() || !self.asking.contains_key(&id) {
            return false;
        }
        self.note_use(id);
        true
    }

    /// Runs `then` once the ask of session `id` is answered, after what waited before it: the
    /// session's actor (loaded again if it stopped) gets them in the order the hub took them.
    pub(super) fn defer(
        &mut self,
        id: Uuid,
        then: impl FnOnce(&mut Hub, &mut Context<Hub>) + 'static,
    ) {
        match self.asking.get_mut(&id) {
            Some(waiting) => waiting.push(Box::new(then)),
            None => log::error!("session {id}: deferred while not being asked; dropped"),
        }
    }

    pub(super) fn start_idle_sweep(&self, ctx: &mut Context<Self>) {
        let Some(idle) = self.idle else { return };
        let every = (idle / 4).clamp(Duration::from_millis(100), LOOK_EVERY_AT_MOST);
        ctx.run_interval(every, move |act, ctx| act.sweep_idle(idle, ctx));
    }

    /// Asks the session actors no request reached for `idle` to stop; a project none of whose
    /// sessions was used for that long is asked as a whole, and let go if they all stopped,
    /// its lock table is quiet and no request reached it meanwhile.
    fn sweep_idle(&mut self, idle: Duration, ctx: &mut Context<Self>) {
        let mut asks = Vec::new();
        for (project, served) in &self.projects {
            if self.asking_projects.contains(project) {
                continue;
            }
            let whole = served.last_used.elapsed() >= idle;
            // A project is asked as a whole once none of its sessions is still being asked
            // alone: every one of them must have stopped before it is let go.
            if whole
                && served
                    .sessions
                    .keys()
                    .any(|id| self.asking.contains_key(id))
            {
                continue;
            }
            let sessions: Vec<_> = served
                .sessions
                .iter()
                .filter(|(id, addr)| {
                    // A stopped actor is asked only with its whole project (it answers at once).
                    whole
                        || (addr.connected()
                            && !self.asking.contains_key(id)
                            && self
                                .serving
                                .get(id)
                                .is_none_or(|u| u.last_used.elapsed() >= idle))
                })
                .map(|(id, addr)| (*id, addr.clone()))
                .collect();
            if whole || !sessions.is_empty() {
                asks.push(Ask {
                    project: project.clone(),
                    whole,
                    asked_at: served.last_used,
                    table: served.table.clone(),
                    sessions,
                });
            }
        }
        for ask in asks {
            self.ask(ask, idle, ctx);
        }
    }

    fn ask(&mut self, ask: Ask, idle: Duration, ctx: &mut Context<Self>) {
        for (id, _) in &ask.sessions {
            self.asking.insert(*id, Vec::new());
        }
        if ask.whole {
            self.asking_projects.insert(ask.project.clone());
        }
        let (table, sessions, whole) = (ask.table.clone(), ask.sessions.clone(), ask.whole);
        ctx.spawn(
            async move {
                // A lock decision on its way keeps a project: its sessions are not asked.
                if whole && !table.send(Quiet).await.unwrap_or(true) {
                    return (Vec::new(), false);
                }
                // Each that can stops, all asked at once (their commands wait meanwhile); a stopped
                // actor has nothing left to do.
                let answers = futures::future::join_all(
                    sessions
                        .iter()
                        .map(|(_, session)| session.send(StopIfQuiet)),
                )
                .await;
                let stopped: Vec<_> = sessions
                    .iter()
                    .zip(answers)
                    .filter(|(_, answer)| *answer.as_ref().unwrap_or(&true))
                    .map(|((id, session), _)| (*id, session.clone()))
                    .collect();
                let all = stopped.len() == sessions.len();
                let quiet = whole && all && table.send(Quiet).await.unwrap_or(true);
                (stopped, quiet)
            }
            .into_actor(self)
            .map(move |(stopped, quiet), act, ctx| {
                act.asking_projects.remove(&ask.project);
                for (id, addr) in stopped {
                    act.forget_stopped(&ask.project, id, &addr);
                }
                // Used while it was asked, or loaded again: not idle after all.
                if act.projects.get(&ask.project).is_some_and(|served| {
                    quiet && served.last_used == ask.asked_at && served.table == ask.table
                }) {
                    act.let_idle_go(&ask.project, idle);
                }
                // What waited goes on, in order, to the actors loaded now.
                for (id, _) in &ask.sessions {
                    for then in act.asking.remove(id).unwrap_or_default() {
                        then(act, ctx);
                    }
                }
            }),
        );
    }

    /// Forgets a session actor that stopped while idle (its next request loads it again).
    fn forget_stopped(
        &mut self,
        project: &str,
        id: Uuid,
        addr: &Addr<crate::actors::session::SessionActor>,
    ) {
        if self.sessions.get(&id) == Some(addr) {
            self.sessions.remove(&id);
        }
        if let Some(served) = self.projects.get_mut(project)
            && served.sessions.get(&id) == Some(addr)
        {
            served.sessions.remove(&id);
            self.serving.remove(&id);
        }
    }

    fn let_idle_go(&mut self, project: &str, idle: Duration) {
        let Some(served) = self.projects.get(project) else {
            return;
        };
        log::info!(
            "project {project}: unused for {}s and nothing runs in it; stopping its lock table and handing it back",
            idle.as_secs()
        );
        let generation = served.generation;
        // Its sessions stopped themselves and had no stream: none to end.
        self.stop_serving(project, false);
        if let Some(generation) = generation {
            self.hand_back(project, generation);
        }
    }
}

impl Handler<Loaded> for Hub {
    type Result = actix::MessageResult<Loaded>;

    fn handle(&mut self, _: Loaded, _: &mut Self::Context) -> Self::Result {
        let sessions = self.sessions.values().filter(|a| a.connected()).count();
        actix::MessageResult((self.projects.len(), sessions))
    }
}

/// What waits at the hub for a session's ask to be answered (`Hub::defer`).
pub(super) type Deferred = Box<dyn FnOnce(&mut Hub, &mut Context<Hub>)>;
