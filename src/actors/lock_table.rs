//! `LockTableActor`: one per project. Files belong to the codebase, not to a session, so every
//! session working on one repository takes its locks here: a lock in the feature session
//! conflicts with a request from the bug-fix session, the refusal says whose it is, and ids and
//! fencing tokens come from one sequence per project.
//!
//! The table decides; the holder's session writes (its rows and events live in its log, in
//! order). Every handler answers at once and never waits on a session, so a session may wait on
//! the table inside its own atomic handlers without any cycle. See `messages::lock_table` for
//! the protocol. What is durable is what the sessions committed: at start the table loads the
//! project's open locks, grants the waiters nothing blocks (a crash between a release and its
//! grants is repaired here) and expires the leases that ran out meanwhile.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use actix::prelude::*;
use uuid::Uuid;

use super::hub::{Hub, Quiet, Retire, SessionAddr};
use super::messages::{
    Covering, ExpireLocks, FenceCheck, GrantLocks, HoldersIn, PlanRelease, ProjectLocks,
    ReleasePlan, Releasing, RenewInTable, ReserveLock, Reserved, Select, Settle,
};
use crate::domain::lock::{Lock, LockKey, LockTable, Outcome, Release, State};
use crate::domain::now;
use crate::error::HubError;
use crate::store::{Store, locks as lock_store};

/// How long a session has to release an expired lease before it is asked again, and how long
/// a grant that could not be written waits before it is tried again.
const RETRY: Duration = Duration::from_secs(5);

pub struct LockTableActor {
    project: String,
    store: Store,
    hub: Addr<Hub>,
    table: LockTable,
    /// The largest id or token given so far in the project.
    last_seq: i64,
    /// Reserved by an acquire its session has not committed yet: counted in every decision,
    /// listed nowhere.
    unconfirmed: HashSet<LockKey>,
    /// Being released by its session: still counted until the session settles.
    releasing: HashSet<LockKey>,
    /// Granted here, not yet written by the holder's session.
    granting: HashSet<LockKey>,
    /// Expired leases whose session was asked to release them, and when.
    expiry_asked: HashMap<LockKey, Instant>,
    /// Grants that could not be written, and when they may be tried again.
    grant_backoff: HashMap<LockKey, Instant>,
    /// The pending expiry check, and when it fires.
    timer: Option<(SpawnHandle, Instant)>,
    /// The load failed: every request is answered with this.
    broken: Option<HubError>,
}

impl LockTableActor {
    pub fn new(project: String, store: Store, hub: Addr<Hub>) -> Self {
        LockTableActor {
            project,
            store,
            hub,
            table: LockTable::default(),
            last_seq: 0,
            unconfirmed: HashSet::new(),
            releasing: HashSet::new(),
            granting: HashSet::new(),
            expiry_asked: HashMap::new(),
            grant_backoff: HashMap::new(),
            timer: None,
            broken: None,
        }
    }

    fn next_seq(&mut self) -> i64 {
        self.last_seq += 1;
        self.last_seq
    }

    fn usable(&self) -> Result<(), HubError> {
        match &self.broken {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Sends `msg` to the actor of `session` (started and loaded if need be), without waiting
    /// for it to be handled.
    fn tell<M>(&self, session: Uuid, msg: M, ctx: &mut Context<Self>)
    where
        M: Message<Result = ()> + Send + 'static,
        super::session::SessionActor: Handler<M>,
    {
        let (hub, from) = (self.hub.clone(), ctx.address());
        ctx.spawn(
            async move {
                match hub.send(SessionAddr { session, from }).await {
                    Ok(Some(addr)) => addr.do_send(msg),
                    // This table was stopped with its project: what it decided is dropped.
                    Ok(None) => {
                        log::debug!("lock table of a project let go: not telling {session}")
                    }
                    Err(e) => log::warn!("lock table: session {session} unreachable: {e}"),
                }
            }
            .into_actor(self),
        );
    }

    /// Grants every waiter nothing blocks any more, each through its own session.
    fn dispatch_grants(&mut self, ctx: &mut Context<Self>) {
        let at = now();
        let ready = Instant::now();
        let mut by_session: HashMap<Uuid, Vec<Lock>> = HashMap::new();
        for key in self.table.grantable() {
            if self
                .grant_backoff
                .get(&key)
                .is_some_and(|until| *until > ready)
            {
                continue;
            }
            self.grant_backoff.remove(&key);
            let token = self.next_seq();
            self.table.grant(key, token, at);
            self.granting.insert(key);
            if let Some(l) = self.table.get(key) {
                by_session.entry(key.1).or_default().push(l.clone());
            }
        }
        for (session, grants) in by_session {
            let table = ctx.address();
            self.tell(session, GrantLocks { grants, table }, ctx);
        }
    }

    /// Asks the sessions of expired leases to release them, and re-arms the timer for the next
    /// lease to run out (or the next retry).
    fn check_expiry(&mut self, ctx: &mut Context<Self>) {
        let (at, ready) = (now(), Instant::now());
        let mut by_session: HashMap<Uuid, Vec<i64>> = HashMap::new();
        for key in self.table.expired(at) {
            if self.releasing.contains(&key) || self.granting.contains(&key) {
                continue;
            }
            if self
                .expiry_asked
                .get(&key)
                .is_some_and(|t| ready.duration_since(*t) < RETRY)
            {
                continue;
            }
            self.expiry_asked.insert(key, ready);
            by_session.entry(key.1).or_default().push(key.0);
        }
        for (session, ids) in by_session {
            self.tell(session, ExpireLocks(ids), ctx);
        }
        let next_lease = self
            .table
            .iter()
            .filter(|l| l.state == State::Held && !self.expiry_asked.contains_key(&l.key()))
            .filter_map(|l| l.expires_at)
            .min()
            .map(|t| (t - at).to_std().unwrap_or(Duration::ZERO));
        let retry =
            (!self.expiry_asked.is_empty() || !self.grant_backoff.is_empty()).then_some(RETRY);
        let wait = match (next_lease, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(wait) = wait else { return };
        // A check already due no later is kept (it looks again when it fires): most calls come
        // from acquires and releases, and need not re-arm anything.
        let fires = ready + wait;
        if self.timer.is_some_and(|(_, armed)| armed <= fires) {
            return;
        }
        if let Some((old, _)) = self.timer.take() {
            ctx.cancel_future(old);
        }
        let handle = ctx.run_later(wait, |act, ctx| {
            act.timer = None;
            act.dispatch_grants(ctx);
            act.check_expiry(ctx);
        });
        self.timer = Some((handle, fires));
    }

    /// A lock as its session has written it: a grant still on its way is waiting there.
    fn as_written(&self, l: &Lock) -> Lock {
        let mut l = l.clone();
        if self.granting.contains(&l.key()) {
            l.state = State::Waiting;
            l.token = None;
            l.expires_at = None;
        }
        l
    }

    /// The locks `select` picks in `session`, with why they go.
    fn select(&self, session: Uuid, select: Select) -> Result<Vec<(Lock, Release)>, HubError> {
        let mine = |l: &&Lock| l.session_id == session && !self.releasing.contains(&l.key());
        let pick = |keys: Vec<LockKey>, why: Release| -> Vec<(Lock, Release)> {
            keys.into_iter()
                .filter_map(|k| self.table.get(k))
                .filter(|l| mine(l))
                .map(|l| (self.as_written(l), why))
                .collect()
        };
        Ok(match select {
            Select::One {
                id,
                by,
                force,
                may_force,
            } => {
                let lock = self
                    .table
                    .get((id, session))
                    .filter(mine)
                    .filter(|l| !self.unconfirmed.contains(&l.key()))
                    .ok_or_else(|| {
                        HubError::invalid(
                            "lockId",
                            format!("no lock {id} is held or queued in this session"),
                        )
                    })?;
                let lock = &self.as_written(lock);
                if by.as_deref() == Some(lock.holder.as_str()) {
                    let why = match lock.state {
                        State::Held => Release::Released,
                        State::Waiting => Release::Cancelled,
                    };
                    return Ok(vec![(lock.clone(), why)]);
                }
                if !force || !may_force {
                    return Err(HubError::Forbidden(format!(
                        "lock {} is {}'s; only it releases it, or the driver/operator with force: true",
                        lock.id, lock.holder
                    )));
                }
                vec![(lock.clone(), Release::Forced)]
            }
            Select::Holder(ai) => pick(self.table.of(session, &ai), Release::Left),
            Select::Gone(ais) => {
                let keys = ais.iter().flat_map(|a| self.table.of(session, a)).collect();
                pick(keys, Release::Disconnected)
            }
            Select::Tasks(tasks) => {
                let keys = tasks
                    .iter()
                    .flat_map(|t| self.table.of_task(session, *t))
                    .collect();
                pick(keys, Release::TaskDone)
            }
            Select::Session => {
                let keys = self
                    .table
                    .iter()
                    .filter(|l| l.session_id == session)
                    .map(Lock::key)
                    .collect();
                pick(keys, Release::SessionEnded)
            }
            Select::Expired(ids) => {
                let due: HashSet<LockKey> = self.table.expired(now()).into_iter().collect();
                let keys = ids
                    .into_iter()
                    .map(|id| (id, session))
                    .filter(|k| due.contains(k) && !self.granting.contains(k))
                    .collect();
                pick(keys, Release::Expired)
            }
        })
    }
}

impl Handler<Retire> for LockTableActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Quiet> for LockTableActor {
    type Result = bool;

    /// Quiet: no acquire, release or grant of its sessions on its way to their logs.
    fn handle(&mut self, _: Quiet, _: &mut Self::Context) -> bool {
        self.unconfirmed.is_empty() && self.releasing.is_empty() && self.granting.is_empty()
    }
}

impl Actor for LockTableActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        let (store, project) = (self.store.clone(), self.project.clone());
        // `wait`: nothing is decided before the project's locks are in.
        ctx.wait(
            async move {
                store
                    .read(move |c| lock_store::load_project(c, &project))
                    .await
            }
            .into_actor(self)
            .map(|loaded, act, ctx| match loaded {
                Ok(p) => {
                    act.table = LockTable::from_locks(p.locks);
                    for (session, name) in p.labels {
                        act.table.label(session, &name);
                    }
                    act.last_seq = p.last_seq;
                    // What a crash may have left undone: waiters nothing blocks, leases out.
                    act.dispatch_grants(ctx);
                    act.check_expiry(ctx);
                }
                Err(e) => {
                    log::error!("lock table of project {:?}: {e}", act.project);
                    act.broken = Some(e);
                }
            }),
        );
    }
}

impl Handler<ReserveLock> for LockTableActor {
    type Result = Result<Reserved, HubError>;

    fn handle(&mut self, msg: ReserveLock, ctx: &mut Self::Context) -> Self::Result {
        self.usable()?;
        let session = msg.request.session_id;
        self.table.label(session, &msg.label);
        let outcome = self.table.check(&msg.request)?;
        let id = self.next_seq();
        let (granted, behind) = match outcome {
            Outcome::Granted => (true, Vec::new()),
            Outcome::Queued { behind } => (false, behind),
        };
        self.table.insert(id, msg.request, granted, now());
        self.unconfirmed.insert((id, session));
        let lock = self
            .table
            .get((id, session))
            .cloned()
            .expect("just inserted");
        if granted {
            self.check_expiry(ctx);
        }
        Ok(Reserved { lock, behind })
    }
}

impl Handler<PlanRelease> for LockTableActor {
    type Result = Result<ReleasePlan, HubError>;

    fn handle(&mut self, msg: PlanRelease, _: &mut Self::Context) -> Self::Result {
        self.usable()?;
        let mut released = Vec::new();
        for (lock, why) in self.select(msg.session, msg.select)? {
            self.releasing.insert(lock.key());
            let seq = self.next_seq();
            released.push(Releasing { lock, why, seq });
        }
        // The session's own waiters that these releases let go are written with them (one
        // transaction, one reply that names them); other sessions' once this one settles.
        let mut after = self.table.clone();
        for r in &released {
            after.remove(r.lock.key());
        }
        let at = now();
        let mut grants = Vec::new();
        for key in after.grantable() {
            if key.1 != msg.session || self.grant_backoff.contains_key(&key) {
                continue;
            }
            let token = self.next_seq();
            self.table.grant(key, token, at);
            self.granting.insert(key);
            grants.extend(self.table.get(key).cloned());
        }
        Ok(ReleasePlan { released, grants })
    }
}

impl Handler<Settle> for LockTableActor {
    type Result = ();

    fn handle(&mut self, msg: Settle, ctx: &mut Self::Context) {
        let key = |id: &i64| (*id, msg.session);
        for k in msg.acquired.iter().map(key) {
            self.unconfirmed.remove(&k);
            if !msg.committed {
                self.table.remove(k);
            }
        }
        for k in msg.released.iter().map(key) {
            self.releasing.remove(&k);
            self.expiry_asked.remove(&k);
            if msg.committed {
                self.table.remove(k);
                self.granting.remove(&k);
            }
        }
        for k in msg.granted.iter().map(key) {
            self.granting.remove(&k);
            if !msg.committed {
                self.table.ungrant(k);
                self.grant_backoff.insert(k, Instant::now() + RETRY);
            }
        }
        for k in msg.gone.iter().map(key) {
            self.granting.remove(&k);
            self.table.remove(k);
        }
        self.dispatch_grants(ctx);
        self.check_expiry(ctx);
    }
}

impl Handler<RenewInTable> for LockTableActor {
    type Result = Result<Lock, HubError>;

    fn handle(&mut self, msg: RenewInTable, ctx: &mut Self::Context) -> Self::Result {
        self.usable()?;
        let key = (msg.id, msg.session);
        let gone = || {
            HubError::invalid(
                "lockId",
                format!(
                    "{} holds no lock {} (expired, released, or someone else's)",
                    msg.holder, msg.id
                ),
            )
        };
        let lock = self
            .table
            .get(key)
            .filter(|l| l.holder == msg.holder && !self.releasing.contains(&key))
            .ok_or_else(gone)?;
        if lock.state != State::Held || self.granting.contains(&key) {
            return Err(HubError::Conflict {
                code: "lock_waiting",
                message: format!("lock {} is still queued; nothing to renew", msg.id),
            });
        }
        if lock.expires_at.is_some_and(|e| e <= now()) {
            return Err(gone());
        }
        self.table.renew(key, msg.lease_secs, now());
        self.expiry_asked.remove(&key);
        self.check_expiry(ctx);
        Ok(self.table.get(key).cloned().expect("renewed"))
    }
}

impl Handler<FenceCheck> for LockTableActor {
    type Result = Result<Vec<Covering>, HubError>;

    fn handle(&mut self, msg: FenceCheck, _: &mut Self::Context) -> Self::Result {
        self.usable()?;
        if let Some(token) = msg.token {
            self.table
                .check_fence(msg.session, &msg.holder, &msg.file, token, now())?;
        }
        Ok(self
            .table
            .others_covering(msg.session, &msg.holder, &msg.file)
            .into_iter()
            .map(|(who, l)| Covering {
                holder: l.holder.clone(),
                same_session: l.session_id == msg.session,
                who,
                resource: l.resource.to_string(),
            })
            .collect())
    }
}

impl Handler<ProjectLocks> for LockTableActor {
    type Result = Vec<Lock>;

    fn handle(&mut self, _: ProjectLocks, _: &mut Self::Context) -> Self::Result {
        self.table
            .iter()
            .filter(|l| !self.unconfirmed.contains(&l.key()))
            .map(|l| self.as_written(l))
            .collect()
    }
}

impl Handler<HoldersIn> for LockTableActor {
    type Result = Vec<String>;

    fn handle(&mut self, msg: HoldersIn, _: &mut Self::Context) -> Self::Result {
        let mut holders: Vec<String> = self
            .table
            .iter()
            .filter(|l| l.session_id == msg.0)
            .map(|l| l.holder.clone())
            .collect();
        holders.sort();
        holders.dedup();
        holders
    }
}
