//! The session actor's side of locking. The project's `LockTableActor` decides (conflicts
//! across every session of the project, queues, ids and tokens); this session writes what the
//! table decided for its participants into its own log, in one transaction with whatever else
//! the command writes (a leave, a task completing), then settles with the table. Grants for its
//! waiters and expiries of its leases arrive from the table as `GrantLocks` / `ExpireLocks`.

use actix::prelude::*;

use super::{Reply, SessionActor, reply};
use crate::actors::lock_table::LockTableActor;
use crate::actors::messages::{
    AcquireLock, ExpireLocks, GrantLocks, HoldersIn, ListLocks, LockReleased, LockView,
    PlanRelease, ProjectLocks, ReleaseLock, ReleasePlan, RenewInTable, RenewLock, ReserveLock,
    Select, Settle,
};
use crate::domain::auth::Caller;
use crate::domain::event::Event;
use crate::domain::lock::{Lock, RESOURCE_LOCKED, Release, State, parse_lease};
use crate::domain::lock_rules::{
    LockAsk, force_notice, locked_event, queued_event, released_event, renewed_event,
};
use crate::domain::now;
use crate::domain::task_rules::check_task_lock;
use crate::error::HubError;
use crate::store::event_writes::{EventWrite, LockChange, LockWrite};
use crate::store::{DbConn, locks as lock_store, queries};

/// Internal: are the holders of locks still here?
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub(super) struct PresenceSweep;

fn lease_end(at: chrono::NaiveDateTime, secs: u32) -> chrono::NaiveDateTime {
    at + chrono::TimeDelta::seconds(i64::from(secs))
}

/// The row a reserved lock goes in as (the table's first decision; a grant that raced in
/// meanwhile arrives as `GrantLocks` and is written after it).
pub(super) fn request_row(session_id: uuid::Uuid, lock: &Lock) -> crate::domain::lock::Request {
    crate::domain::lock::Request {
        session_id,
        resource: lock.resource.clone(),
        holder: lock.holder.clone(),
        mode: lock.mode,
        operation: lock.operation.clone(),
        lease_secs: lock.lease_secs,
        wait: true,
        task_id: lock.task_id,
    }
}

/// A lock the table granted, as it stands once written at `at`: its lease runs from then.
pub(super) fn held_from(
    mut lock: Lock,
    at: chrono::NaiveDateTime,
) -> (Lock, crate::domain::event::NewEvent) {
    let event = locked_event(&lock, at);
    lock.expires_at = Some(lease_end(at, lock.lease_secs));
    (lock, event)
}

/// Writes the grants the table reserved (held from `at`, with their tokens) and their
/// `resource_locked` events; a request no longer waiting (cancelled, or its holder left first)
/// is skipped.
fn write_grants(
    c: &mut DbConn,
    id: uuid::Uuid,
    at: chrono::NaiveDateTime,
    grants: &[Lock],
) -> Result<Vec<Event>, HubError> {
    let mut events = Vec::new();
    for g in grants {
        let token = g.token.unwrap_or(g.id);
        if lock_store::set_held(c, id, g.id, token, lease_end(at, g.lease_secs))? {
            events.push(queries::append_event(c, id, &locked_event(g, at), at)?);
        }
    }
    Ok(events)
}

/// The locks `events` granted.
fn granted_ids(events: &[Event]) -> Vec<i64> {
    events
        .iter()
        .filter(|e| e.kind == RESOURCE_LOCKED)
        .filter_map(|e| e.payload["lockId"].as_i64())
        .collect()
}

impl ReleasePlan {
    /// Writes the releases (with a critical notice to the holder of a forced one) and the
    /// grants, inside the caller's transaction. `actor` is who released.
    fn write(
        &self,
        c: &mut DbConn,
        id: uuid::Uuid,
        at: chrono::NaiveDateTime,
        actor: Option<String>,
    ) -> Result<Vec<Event>, HubError> {
        let mut events = Vec::new();
        for r in &self.released {
            let (l, why) = (&r.lock, r.why);
            let event = released_event(l, why, r.seq, actor.clone());
            events.push(lock_store::append_release(c, id, &event, l.id, why, at)?);
            if why == Release::Forced {
                events.push(queries::append_event(
                    c,
                    id,
                    &force_notice(l, actor.as_deref()),
                    at,
                )?);
            }
        }
        events.extend(write_grants(c, id, at, &self.grants)?);
        Ok(events)
    }

    /// The plan as one write kept as data, which a PostgreSQL batch may combine with its
    /// neighbours: a single release of one's own lock (or cancel) that grants nothing.
    fn as_event_write(
        &self,
        id: uuid::Uuid,
        at: chrono::NaiveDateTime,
        actor: Option<String>,
    ) -> Option<EventWrite> {
        let [r] = self.released.as_slice() else {
            return None;
        };
        (self.grants.is_empty() && r.why != Release::Forced).then(|| {
            EventWrite::Lock(LockWrite {
                session_id: id,
                event: released_event(&r.lock, r.why, r.seq, actor),
                at,
                change: LockChange::Release {
                    id: r.lock.id,
                    reason: r.why,
                },
            })
        })
    }

    fn settle(&self, session: uuid::Uuid, committed: bool) -> Settle {
        Settle {
            session,
            committed,
            released: self.released.iter().map(|r| r.lock.id).collect(),
            granted: self.grants.iter().map(|g| g.id).collect(),
            ..Settle::default()
        }
    }
}

impl SessionActor {
    /// The project's lock table (known once the session is loaded).
    pub(super) fn lock_table(&self) -> Result<Addr<LockTableActor>, HubError> {
        self.lock_table
            .clone()
            .ok_or_else(|| HubError::Internal("the session has no lock table yet".into()))
    }

    /// Every `grace / 2`: releases the locks of participants gone longer than the grace period.
    pub(super) fn schedule_presence_sweep(&mut self, ctx: &mut Context<Self>) {
        if self.sweeping {
            return;
        }
        self.sweeping = true;
        let every =
            std::time::Duration::from_secs(self.policy.disconnect_grace_secs.div_ceil(2).max(1));
        ctx.notify_later(PresenceSweep, every);
    }

    /// Asks the table to release what `select` picks (and to grant what that lets go).
    fn plan_release(
        &mut self,
        select: Select,
    ) -> Result<impl Future<Output = Result<ReleasePlan, HubError>> + 'static, HubError> {
        let table = self.lock_table()?;
        let ask = PlanRelease {
            session: self.id,
            select,
        };
        Ok(async move { table.send(ask).await.map_err(HubError::from)? })
    }

    /// Has the table release what `select` picks, and commits `write` (the command's own rows
    /// and events, if any) with those releases and the grants they allow in one transaction;
    /// then `apply` runs and the table learns how it went.
    pub(super) fn commit_with_release<T, W, A>(
        &mut self,
        select: Select,
        actor: Option<String>,
        write: W,
        apply: A,
    ) -> ResponseActFuture<Self, Result<T, HubError>>
    where
        T: 'static,
        W: FnOnce(&mut DbConn) -> Result<Vec<Event>, HubError> + Send + 'static,
        A: FnOnce(&mut SessionActor, &ReleasePlan, Vec<Event>, &mut Context<Self>) -> T + 'static,
    {
        // Nothing to release (a task command that completes no task): the plan, a lazy future,
        // is never polled, so there is no trip to the table.
        let asked = !matches!(&select, Select::Tasks(t) if t.is_empty());
        let planned = match self.plan_release(select) {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let id = self.id;
        let planned = async move {
            if asked {
                planned.await
            } else {
                Ok(ReleasePlan::default())
            }
        };
        Box::pin(planned.into_actor(self).then(move |planned, act, _| {
            let plan = match planned {
                Ok(p) => p,
                Err(e) => {
                    return Box::pin(fut::ready(Err(e))) as ResponseActFuture<Self, _>;
                }
            };
            // Timed after the table's answer: a release is never stamped earlier than
            // the decisions it follows.
            let at = now();
            let (stored, applied) = (plan.clone(), plan.clone());
            Box::pin(
                act.commit_events(
                    move |c| {
                        let mut events = write(c)?;
                        events.extend(stored.write(c, id, at, actor)?);
                        Ok(events)
                    },
                    move |act, events, ctx| apply(act, &applied, events, ctx),
                )
                .map(move |result, act, _| {
                    if let Some(t) = act.lock_table.as_ref().filter(|_| asked) {
                        t.do_send(plan.settle(id, result.is_ok()));
                    }
                    result
                }),
            )
        }))
    }

    /// Releases what `select` picks (and grants what that lets go), nothing else. Pipelined
    /// (`pipeline.rs`): the table decides while the session is held; the commit is not held,
    /// and the table settles once it is in, before the reply leaves.
    fn release(
        &mut self,
        ctx: &mut Context<Self>,
        select: Select,
        actor: Option<String>,
    ) -> ResponseFuture<Result<LockReleased, HubError>> {
        let planned = match self.plan_release(select) {
            Ok(p) => p,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let id = self.id;
        let step = planned.into_actor(self).map(move |planned, act, ctx| {
            let plan = match planned {
                Ok(p) => p,
                Err(e) => return Box::pin(std::future::ready(Err(e))) as ResponseFuture<_>,
            };
            let at = now();
            let stored = plan.clone();
            // Grants of this session's own waiters ride on this release; the table counts them
            // as waiting until it settles, so a later command of this session planned before
            // that would be planned against a state the log no longer has: held until settled.
            let hold = !plan.grants.is_empty();
            let combinable = plan.as_event_write(id, at, actor.clone());
            let write = move |c: &mut DbConn| stored.write(c, id, at, actor.clone());
            let apply = move |act: &mut SessionActor,
                              outcome: Result<Vec<Event>, HubError>,
                              ctx: &mut Context<SessionActor>| {
                if let Some(t) = &act.lock_table {
                    t.do_send(plan.settle(id, outcome.is_ok()));
                }
                let events = outcome?;
                Ok(act.applied(events, ctx, |_, events, _| LockReleased {
                    event_id: events.first().map_or(0, |e| e.id),
                    granted: granted_ids(&events),
                }))
            };
            if hold {
                act.held(ctx, write, apply)
            } else if let Some(combinable) = combinable {
                act.pipelined(ctx, act.submit_event(combinable), apply)
            } else {
                act.pipelined(ctx, act.submit(write), apply)
            }
        });
        self.hold_then_pipeline(ctx, step)
    }

    /// The participant acting, for lock commands.
    fn lock_caller(
        &self,
        credential: &crate::domain::auth::Credential,
        named: Option<&str>,
    ) -> Result<String, HubError> {
        let caller = self.caller_as(credential, named)?;
        Ok(self.session()?.lock_holder(&caller)?.0)
    }
}

impl Handler<AcquireLock> for SessionActor {
    type Result = ResponseFuture<Result<LockView, HubError>>;

    /// Pipelined (`pipeline.rs`): the table reserves while the session is held (it alone
    /// decides conflicts, across sessions); the commit is not held, and the table settles once
    /// it is in, before the reply leaves.
    fn handle(&mut self, msg: AcquireLock, ctx: &mut Self::Context) -> Self::Result {
        let planned = self
            .caller_as(&msg.credential, msg.as_participant.as_deref())
            .and_then(|caller| {
                let ask = LockAsk {
                    resource: msg.resource,
                    operation: msg.operation,
                    duration: msg.duration,
                    mode: msg.mode,
                    wait: msg.wait,
                    task_id: msg.task_id,
                };
                let s = self.session()?;
                Ok((
                    s.check_lock(&caller, ask)?,
                    s.name.clone(),
                    self.lock_table()?,
                ))
            });
        let (request, label, table) = match planned {
            Ok(p) => p,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let id = self.id;
        // A lock for a task is its assignee's: the session's task coordinator has the task.
        let task = request.task_id.map(|t| self.find_task(t));
        let holder = request.holder.clone();
        let reserve = async move {
            if let Some(task) = task {
                check_task_lock(&task.await?, &holder)?;
            }
            table
                .send(ReserveLock { request, label })
                .await
                .map_err(HubError::from)?
        };
        let step = reserve.into_actor(self).map(move |reserved, act, ctx| {
            let reserved = match reserved {
                Ok(r) => r,
                Err(e) => return Box::pin(std::future::ready(Err(e))) as ResponseFuture<_>,
            };
            // The lease starts when the table granted it, not when it was asked.
            let at = now();
            let granted = reserved.lock.state == State::Held;
            let request = request_row(id, &reserved.lock);
            let lock_id = reserved.lock.id;
            let (lock, event) = if granted {
                held_from(reserved.lock, at)
            } else {
                let mut lock = reserved.lock;
                let event = queued_event(&request, lock.id, &reserved.behind);
                lock.state = State::Waiting;
                lock.token = None;
                lock.expires_at = None;
                (lock, event)
            };
            let behind = reserved.behind;
            let write = act.submit_event(EventWrite::Lock(LockWrite {
                session_id: id,
                event,
                at,
                change: LockChange::Request {
                    id: lock_id,
                    request,
                    granted,
                },
            }));
            act.pipelined(ctx, write, move |act, outcome, ctx| {
                if let Some(t) = &act.lock_table {
                    t.do_send(Settle {
                        session: id,
                        committed: outcome.is_ok(),
                        acquired: vec![lock_id],
                        ..Settle::default()
                    });
                }
                Ok(act.applied(outcome?, ctx, |_, _, _| LockView { lock, behind }))
            })
        });
        self.hold_then_pipeline(ctx, step)
    }
}

impl Handler<RenewLock> for SessionActor {
    type Result = ResponseFuture<Result<LockView, HubError>>;

    /// Pipelined (`pipeline.rs`), as an acquire: the table renews while the session is held.
    fn handle(&mut self, msg: RenewLock, ctx: &mut Self::Context) -> Self::Result {
        let planned = self
            .lock_caller(&msg.credential, msg.as_participant.as_deref())
            .and_then(|holder| {
                let lease_secs = parse_lease(msg.duration.as_ref())?;
                Ok((holder, lease_secs, self.lock_table()?))
            });
        let (holder, lease_secs, table) = match planned {
            Ok(p) => p,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let (id, at, lock_id) = (self.id, now(), msg.lock_id);
        let renew = RenewInTable {
            session: id,
            holder,
            id: lock_id,
            lease_secs,
        };
        let step = async move { table.send(renew).await }.into_actor(self).map(
            move |renewed, act, ctx| {
                let lock = match renewed.map_err(HubError::from).and_then(|r| r) {
                    Ok(l) => l,
                    Err(e) => return Box::pin(std::future::ready(Err(e))) as ResponseFuture<_>,
                };
                let expires = lock.expires_at.unwrap_or_else(|| lease_end(at, lease_secs));
                let event = renewed_event(&lock, expires);
                let write = act.submit_event(EventWrite::Lock(LockWrite {
                    session_id: id,
                    event,
                    at,
                    change: LockChange::Renew {
                        id: lock_id,
                        lease_secs,
                        expires_at: expires,
                    },
                }));
                act.pipelined_events(ctx, write, move |_, _, _| LockView {
                    lock,
                    behind: Vec::new(),
                })
            },
        );
        self.hold_then_pipeline(ctx, step)
    }
}

impl Handler<ReleaseLock> for SessionActor {
    type Result = ResponseFuture<Result<LockReleased, HubError>>;

    fn handle(&mut self, msg: ReleaseLock, ctx: &mut Self::Context) -> Self::Result {
        let planned = self.session().and_then(|s| {
            let caller = self.caller_as(&msg.credential, msg.as_participant.as_deref())?;
            let by = match &caller {
                Caller::Participant(id) => Some(id.clone()),
                Caller::Operator => None,
            };
            // Someone else's lock: only by force, by the driver or the operator.
            let may_force = match &by {
                None => true,
                Some(id) => s.driver().is_some_and(|d| &d.ai_id == id),
            };
            Ok((by, may_force))
        });
        let (by, may_force) = match planned {
            Ok(p) => p,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let select = Select::One {
            id: msg.lock_id,
            by: by.clone(),
            force: msg.force,
            may_force,
        };
        self.release(ctx, select, by)
    }
}

impl Handler<GrantLocks> for SessionActor {
    type Result = ();

    /// Writes the grants the table made for this session's waiters. A waiter that is no longer
    /// waiting (cancelled, or its holder left, before the grant arrived) is reported gone.
    fn handle(&mut self, msg: GrantLocks, ctx: &mut Self::Context) {
        let (id, at) = (self.id, now());
        let (grants, table) = (msg.grants, msg.table);
        let stored = grants.clone();
        let ids: Vec<i64> = grants.iter().map(|g| g.id).collect();
        if let Err(e) = self.session() {
            // Not loadable: the table tries again later.
            log::warn!("session {id}: cannot write lock grants {ids:?}: {e}");
            table.do_send(Settle {
                session: id,
                committed: false,
                granted: ids,
                ..Settle::default()
            });
            return;
        }
        let written = self.commit_events(
            move |c| write_grants(c, id, at, &stored),
            |_, events, _| granted_ids(&events),
        );
        ctx.wait(written.map(move |result, _, _| {
            let settle = match result {
                Ok(granted) => Settle {
                    session: id,
                    committed: true,
                    gone: ids
                        .iter()
                        .filter(|i| !granted.contains(i))
                        .copied()
                        .collect(),
                    granted,
                    ..Settle::default()
                },
                Err(e) => {
                    log::warn!("session {id}: could not write lock grants {ids:?}: {e}");
                    Settle {
                        session: id,
                        committed: false,
                        granted: ids,
                        ..Settle::default()
                    }
                }
            };
            table.do_send(settle);
        }));
    }
}

impl Handler<ExpireLocks> for SessionActor {
    type Result = ();

    fn handle(&mut self, msg: ExpireLocks, ctx: &mut Self::Context) {
        let released = self.commit_with_release(
            Select::Expired(msg.0),
            None,
            |_| Ok(Vec::new()),
            |_, _, _, _| (),
        );
        let id = self.id;
        ctx.wait(released.map(move |r, _, _| {
            if let Err(e) = r {
                log::warn!("session {id}: could not release expired locks: {e}");
            }
        }));
    }
}

impl Handler<ListLocks> for SessionActor {
    type Result = ResponseFuture<Result<Vec<Lock>, HubError>>;

    /// Every lock of the project, this session's and its sibling sessions' (each names its
    /// `sessionId`): files belong to the codebase.
    fn handle(&mut self, msg: ListLocks, _: &mut Self::Context) -> Self::Result {
        let table = self.session().and_then(|s| {
            self.authorized(s, &msg.credential)?;
            self.lock_table()
        });
        Box::pin(async move { Ok(table?.send(ProjectLocks).await?) })
    }
}

impl Handler<PresenceSweep> for SessionActor {
    type Result = Reply<()>;

    /// Releases the locks of holders gone longer than the grace period: no request since, and
    /// no open event stream now.
    fn handle(&mut self, _: PresenceSweep, ctx: &mut Self::Context) -> Self::Result {
        self.sweeping = false;
        self.schedule_presence_sweep(ctx);
        ctx.notify(super::live::PresenceCheck);
        let Ok(table) = self.lock_table() else {
            return reply(Ok(()));
        };
        let grace = std::time::Duration::from_secs(self.policy.disconnect_grace_secs);
        let (id, now) = (self.id, std::time::Instant::now());
        // Who was heard from lately, and who has an agent that may hold a stream open.
        let recent: std::collections::HashSet<String> = self
            .seen
            .borrow()
            .iter()
            .filter(|(_, t)| now.duration_since(**t) <= grace)
            .map(|(h, _)| h.clone())
            .collect();
        let agents: std::collections::HashMap<String, Addr<crate::actors::agent::AgentActor>> =
            self.agents
                .iter()
                .map(|(h, a)| (h.clone(), a.addr.clone()))
                .collect();
        let fut = async move {
            let holders = table.send(HoldersIn(id)).await.unwrap_or_default();
            let mut gone = Vec::new();
            for holder in holders {
                if recent.contains(&holder) {
                    continue;
                }
                let streaming = match agents.get(&holder) {
                    Some(a) => a
                        .send(crate::actors::agent::HasStreams)
                        .await
                        .unwrap_or(false),
                    None => false,
                };
                if !streaming {
                    gone.push(holder);
                }
            }
            gone
        }
        .into_actor(self)
        .then(|gone, act, _| {
            if gone.is_empty() {
                return Box::pin(fut::ready(Ok(()))) as ResponseActFuture<Self, _>;
            }
            for h in &gone {
                log::info!(
                    "releasing the locks of {h}: gone longer than the disconnect grace period"
                );
            }
            Box::pin(
                act.commit_with_release(
                    Select::Gone(gone),
                    None,
                    |_| Ok(Vec::new()),
                    |_, _, _, _| (),
                )
                .map(|r, _, _| r.map(|_| ())),
            )
        });
        AtomicResponse::new(Box::pin(fut))
    }
}
