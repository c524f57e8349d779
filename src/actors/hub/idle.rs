//! Letting an idle project go. A hub kept every project it served loaded (its session actors,
//! their agents, its lock table) until its lease moved; over weeks that is every project ever
//! touched. A project that no request reached for `--project-idle-secs`, and in which nothing
//! runs over time, is stopped here and its lease handed back: the next request for it, at this
//! hub or another, loads it again from the database.
//!
//! "Nothing runs over time": each session actor, asked at the end of the period, stops itself
//! if nobody watches it (no viewer, no WebSocket, no agent stream or long poll), no write of it
//! is in flight and nothing of it is due later (an acknowledgement deadline, a checkpoint's
//! overrun, a review deadline, a rotation, an auto-save): atomically, so that nothing it would
//! write is left half done (`StopIfQuiet`). A session that stopped while another of its project
//! did not is loaded again by its next request. Once every session stopped, the lock table is
//! asked whether a decision of it is on its way to a session's log (`Quiet`), and a project no
//! request reached meanwhile is let go. What a loaded session held in memory only is rebuilt
//! at load, as after a restart (presence starts a fresh grace period, lock leases that ran
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

impl Hub {
    /// A request reached session `id` (or its project's lock table asked for it).
    pub(super) fn note_use(&mut self, id: Uuid) {
        if self.idle.is_none() {
            return;
        }
        if let Some(served) = self
            .serving
            .get(&id)
            .and_then(|project| self.projects.get_mut(project))
        {
            served.last_used = Instant::now();
        }
    }

    /// While the sweep asks a project's sessions to stop, a command for one of them waits for
    /// the answer (and then counts as use): sent at once, it could queue behind the ask in an
    /// actor that then stops, and be dropped with it.
    pub(super) fn idle_gate(&mut self, id: Uuid) -> Option<tokio::sync::watch::Receiver<()>> {
        if self.asking_idle.is_empty() {
            return None;
        }
        let gate = self
            .serving
            .get(&id)
            .and_then(|project| self.asking_idle.get(project))
            .map(tokio::sync::watch::Sender::subscribe)?;
        self.note_use(id);
        Some(gate)
    }

    pub(super) fn start_idle_sweep(&self, ctx: &mut Context<Self>) {
        let Some(idle) = self.idle else { return };
        let every = (idle / 4).clamp(Duration::from_millis(100), LOOK_EVERY_AT_MOST);
        ctx.run_interval(every, move |act, ctx| act.sweep_idle(idle, ctx));
    }

    /// Asks each project unused for `idle` (and not being asked already) to stop, and lets go
    /// those whose sessions all stopped, whose lock table is quiet, and that no request reached
    /// meanwhile.
    fn sweep_idle(&mut self, idle: Duration, ctx: &mut Context<Self>) {
        for (project, served) in &self.projects {
            if served.last_used.elapsed() < idle || self.asking_idle.contains_key(project) {
                continue;
            }
            let (project, asked_at, table) =
                (project.clone(), served.last_used, served.table.clone());
            let sessions: Vec<_> = served.sessions.values().cloned().collect();
            self.asking_idle
                .insert(project.clone(), tokio::sync::watch::channel(()).0);
            let asking = table.clone();
            ctx.spawn(
                async move {
                    // A lock decision on its way keeps the project: its sessions are not asked.
                    if !asking.send(Quiet).await.unwrap_or(true) {
                        return false;
                    }
                    // Every session is asked (each that can stops); a stopped actor has
                    // nothing left to do.
                    let mut all_stopped = true;
                    for session in sessions {
                        all_stopped &= session.send(StopIfQuiet).await.unwrap_or(true);
                    }
                    all_stopped && asking.send(Quiet).await.unwrap_or(true)
                }
                .into_actor(self)
                .map(move |quiet, act, _| {
                    act.asking_idle.remove(&project);
                    let Some(served) = act.projects.get(&project) else {
                        return;
                    };
                    // Used while it was asked, or loaded again: not idle after all.
                    if !quiet || served.last_used != asked_at || served.table != table {
                        return;
                    }
                    act.let_idle_go(&project, idle);
                }),
            );
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
        if let (Some(leases), Some(generation)) = (&self.leases, generation) {
            leases.hand_back(project, generation);
            self.handing_back.insert(project.to_owned(), generation);
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

/// Sends `msg` to the hub again once the idle ask behind `asked` is answered.
pub(super) async fn after_ask<M>(
    mut asked: tokio::sync::watch::Receiver<()>,
    hub: Addr<Hub>,
    msg: M,
) -> Result<M::Result, actix::MailboxError>
where
    M: Message + Send + 'static,
    M::Result: Send,
    Hub: Handler<M>,
{
    // Ends with an error once the sender is dropped: the answer is in.
    let _ = asked.changed().await;
    hub.send(msg).await
}
