//! The session actor's locks: acquire (or queue), renew, release/cancel/force, expiry, release
//! on leave, and granting waiters whenever something is released. Every release and every grant
//! is an event written in the same transaction as the lock rows; a grant's fencing token is the
//! id of its `resource_locked` event.

use actix::prelude::*;

use super::messaging::until;
use super::{Reply, SessionActor, reply};
use crate::actors::messages::{
    AcquireLock, ListLocks, LockReleased, LockView, ReleaseLock, RenewLock,
};
use crate::domain::auth::Caller;
use crate::domain::event::{Event, NewEvent};
use crate::domain::lock::{Lock, Outcome, RESOURCE_LOCKED, Release, parse_lease};
use crate::domain::lock_rules::{
    LockAsk, force_notice, locked_event, queued_event, released_event, renewed_event,
};
use crate::domain::now;
use crate::domain::role::Role;
use crate::error::HubError;
use crate::store::{locks as lock_store, queries};
use actix::Addr;

/// Internal: leases may have run out.
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub(super) struct LeaseCheck;

/// Internal: are the holders of locks still here?
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub(super) struct PresenceSweep;

/// Locks to release and waiters to grant, decided before the transaction that writes them
/// (which may also hold other writes: a participant leaving, a task completing).
#[derive(Clone)]
pub(super) struct ReleasePlan {
    released: Vec<(Lock, Release)>,
    actor: Option<String>,
    notices: Vec<NewEvent>,
    grants: Vec<Lock>,
}

impl ReleasePlan {
    /// Writes the releases, the notices and the grants (inside the caller's transaction).
    pub(super) fn write(
        &self,
        c: &mut crate::store::DbConn,
        id: uuid::Uuid,
        at: chrono::NaiveDateTime,
    ) -> Result<Vec<Event>, HubError> {
        let mut events = Vec::new();
        for (l, why) in &self.released {
            let event = released_event(l, *why, self.actor.clone());
            events.push(queries::append_event(c, id, &event, at)?);
            lock_store::release(c, id, l.id, *why, at)?;
        }
        for n in &self.notices {
            events.push(queries::append_event(c, id, n, at)?);
        }
        for w in &self.grants {
            let e = queries::append_event(c, id, &locked_event(w, at, false), at)?;
            let expires = at + chrono::TimeDelta::seconds(i64::from(w.lease_secs));
            lock_store::set_held(c, id, w.id, e.id, expires)?;
            events.push(e);
        }
        Ok(events)
    }

    /// Mirrors what `write` stored: releases gone, waiters held with their tokens.
    pub(super) fn apply(
        &self,
        s: &mut crate::domain::session::Session,
        events: &[Event],
        at: chrono::NaiveDateTime,
    ) {
        for (l, _) in &self.released {
            s.locks.remove(l.id);
        }
        for e in events.iter().filter(|e| e.kind == RESOURCE_LOCKED) {
            if let Some(lock_id) = e.payload["lockId"].as_i64() {
                s.locks.grant(lock_id, e.id, at);
            }
        }
    }
}

impl SessionActor {
    /// Re-arms the lease timer for the next expiry, and the presence sweep while locks exist.
    pub(super) fn schedule_lease_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(old) = self.lease_timer.take() {
            ctx.cancel_future(old);
        }
        if let Some(at) = self.session().ok().and_then(|s| s.locks.next_expiry()) {
            self.lease_timer = Some(ctx.notify_later(LeaseCheck, until(at)));
        }
        let any = self
            .session()
            .is_ok_and(|s| s.locks.iter().next().is_some());
        if any && !self.sweeping {
            self.sweeping = true;
            let every = std::time::Duration::from_secs(
                self.policy.disconnect_grace_secs.div_ceil(2).max(1),
            );
            ctx.notify_later(PresenceSweep, every);
        }
    }

    /// What releasing `releases` (with why) means now: the rows and events to write, and the
    /// waiters that can then be granted. Planned while the actor is busy with one command, so
    /// it still holds when that command's transaction runs.
    pub(super) fn plan_release(
        &self,
        releases: &[(i64, Release)],
        actor: Option<String>,
        notices: Vec<NewEvent>,
    ) -> Result<ReleasePlan, HubError> {
        let mut table = self.session()?.locks.clone();
        let mut released = Vec::new();
        for (id, why) in releases {
            if let Some(l) = table.remove(*id) {
                released.push((l, *why));
            }
        }
        let grants: Vec<Lock> = table
            .grantable()
            .iter()
            .filter_map(|id| table.get(*id).cloned())
            .collect();
        Ok(ReleasePlan {
            released,
            actor,
            notices,
            grants,
        })
    }

    /// Releases `releases`, grants every waiter that can go now, in one transaction.
    /// `notices` are extra events written with them (a forced release's critical notice).
    pub(super) fn release_and_grant(
        &mut self,
        releases: Vec<(i64, Release)>,
        actor: Option<String>,
        notices: Vec<NewEvent>,
    ) -> ResponseActFuture<Self, Result<Vec<Event>, HubError>> {
        let plan = match self.plan_release(&releases, actor, notices) {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let (id, at, stored) = (self.id, now(), plan.clone());
        self.commit_events(
            move |c| stored.write(c, id, at),
            move |act, events, ctx| {
                plan.apply(act.session_mut(), &events, at);
                act.schedule_lease_timer(ctx);
                events
            },
        )
    }

    /// The participant acting, for lock commands.
    fn lock_caller(
        &self,
        credential: &crate::domain::auth::Credential,
        named: Option<&str>,
    ) -> Result<(String, Role), HubError> {
        let caller = self.caller_as(credential, named)?;
        Ok(self.session()?.lock_holder(&caller)?)
    }
}

impl Handler<AcquireLock> for SessionActor {
    type Result = Reply<LockView>;

    fn handle(&mut self, msg: AcquireLock, _: &mut Self::Context) -> Self::Result {
        let at = now();
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
                Ok(self.session()?.check_lock(&caller, ask)?)
            });
        let (request, outcome) = match planned {
            Ok(p) => p,
            Err(e) => return reply(Err(e)),
        };
        let granted = outcome == Outcome::Granted;
        let behind = match &outcome {
            Outcome::Queued { behind } => behind.clone(),
            Outcome::Granted => Vec::new(),
        };
        let probe = Lock {
            id: 0,
            resource: request.resource.clone(),
            holder: request.holder.clone(),
            mode: request.mode,
            operation: request.operation.clone(),
            state: crate::domain::lock::State::Waiting,
            lease_secs: request.lease_secs,
            token: None,
            task_id: request.task_id,
            expires_at: None,
        };
        let event = if granted {
            // Granted at once: this event's id is the lock's id and its fencing token.
            locked_event(&probe, at, true)
        } else {
            queued_event(&request, &behind)
        };
        let (id, stored) = (self.id, request.clone());
        AtomicResponse::new(self.commit_events(
            move |c| {
                let e = queries::append_event(c, id, &event, at)?;
                lock_store::insert_request(c, id, e.id, &stored, granted, at)?;
                Ok(vec![e])
            },
            move |act, events, ctx| {
                let lock_id = events[0].id;
                let s = act.session_mut();
                s.locks.insert(lock_id, request, granted, at);
                let lock = s.locks.get(lock_id).cloned().expect("just inserted");
                act.schedule_lease_timer(ctx);
                LockView { lock, behind }
            },
        ))
    }
}

impl Handler<RenewLock> for SessionActor {
    type Result = Reply<LockView>;

    fn handle(&mut self, msg: RenewLock, _: &mut Self::Context) -> Self::Result {
        let at = now();
        let planned = self
            .lock_caller(&msg.credential, msg.as_participant.as_deref())
            .and_then(|(who, _)| {
                let lease = parse_lease(msg.duration.as_ref())?;
                let lock = self.session()?.locks.get(msg.lock_id).cloned();
                match lock {
                    Some(l) if l.holder == who && l.state == crate::domain::lock::State::Held => {
                        Ok((l, lease))
                    }
                    Some(l) if l.holder == who => Err(HubError::Conflict {
                        code: "lock_waiting",
                        message: format!("lock {} is still queued; nothing to renew", l.id),
                    }),
                    _ => Err(HubError::invalid(
                        "lockId",
                        format!(
                            "{who} holds no lock {} (expired, released, or someone else's)",
                            msg.lock_id
                        ),
                    )),
                }
            });
        let (lock, lease) = match planned {
            Ok(p) => p,
            Err(e) => return reply(Err(e)),
        };
        let expires = at + chrono::TimeDelta::seconds(i64::from(lease));
        let event = renewed_event(&lock, expires);
        let (id, lock_id) = (self.id, lock.id);
        AtomicResponse::new(self.commit_events(
            move |c| {
                let e = queries::append_event(c, id, &event, at)?;
                lock_store::renew(c, id, lock_id, lease, expires)?;
                Ok(vec![e])
            },
            move |act, _, ctx| {
                let s = act.session_mut();
                s.locks.renew(lock_id, lease, at);
                let lock = s.locks.get(lock_id).cloned().expect("held");
                act.schedule_lease_timer(ctx);
                LockView {
                    lock,
                    behind: Vec::new(),
                }
            },
        ))
    }
}

impl Handler<ReleaseLock> for SessionActor {
    type Result = Reply<LockReleased>;

    fn handle(&mut self, msg: ReleaseLock, _: &mut Self::Context) -> Self::Result {
        let planned = self.session().and_then(|s| {
            let caller = self.caller_as(&msg.credential, msg.as_participant.as_deref())?;
            let lock = s.locks.get(msg.lock_id).cloned().ok_or_else(|| {
                HubError::invalid(
                    "lockId",
                    format!("no lock {} is held or queued", msg.lock_id),
                )
            })?;
            let me = match &caller {
                Caller::Participant(id) => Some(id.clone()),
                Caller::Operator => None,
            };
            if me.as_deref() == Some(lock.holder.as_str()) {
                let why = if lock.state == crate::domain::lock::State::Held {
                    Release::Released
                } else {
                    Release::Cancelled
                };
                return Ok((lock, why, me, Vec::new()));
            }
            // Someone else's: only by force, by the driver or the operator.
            let may_force = match &me {
                None => true,
                Some(id) => s.driver().is_some_and(|d| &d.ai_id == id),
            };
            if !msg.force || !may_force {
                return Err(HubError::Forbidden(format!(
                    "lock {} is {}'s; only it releases it, or the driver/operator with force: true",
                    lock.id, lock.holder
                )));
            }
            let notice = force_notice(&lock, me.as_deref());
            Ok((lock, Release::Forced, me, vec![notice]))
        });
        let (lock, why, actor, notices) = match planned {
            Ok(p) => p,
            Err(e) => return reply(Err(e)),
        };
        AtomicResponse::new(Box::pin(
            self.release_and_grant(vec![(lock.id, why)], actor, notices)
                .map(|r, _, _| {
                    r.map(|events| LockReleased {
                        event_id: events.first().map_or(0, |e| e.id),
                        granted: events
                            .iter()
                            .filter(|e| e.kind == RESOURCE_LOCKED)
                            .filter_map(|e| e.payload["lockId"].as_i64())
                            .collect(),
                    })
                }),
        ))
    }
}

impl Handler<LeaseCheck> for SessionActor {
    type Result = Reply<()>;

    fn handle(&mut self, _: LeaseCheck, ctx: &mut Self::Context) -> Self::Result {
        self.lease_timer = None;
        let expired = self
            .session()
            .map(|s| s.locks.expired(now()))
            .unwrap_or_default();
        if expired.is_empty() {
            self.schedule_lease_timer(ctx);
            return reply(Ok(()));
        }
        let releases = expired
            .into_iter()
            .map(|id| (id, Release::Expired))
            .collect();
        AtomicResponse::new(Box::pin(
            self.release_and_grant(releases, None, Vec::new())
                .map(|r, _, _| r.map(|_| ())),
        ))
    }
}

impl Handler<ListLocks> for SessionActor {
    type Result = Result<Vec<Lock>, HubError>;

    fn handle(&mut self, msg: ListLocks, _: &mut Self::Context) -> Self::Result {
        let s = self.session()?;
        self.authorized(s, &msg.credential)?;
        Ok(s.locks.iter().cloned().collect())
    }
}

impl Handler<PresenceSweep> for SessionActor {
    type Result = Reply<()>;

    /// Releases the locks of holders gone longer than the grace period: no request since, and
    /// no open event stream now.
    fn handle(&mut self, _: PresenceSweep, ctx: &mut Self::Context) -> Self::Result {
        self.sweeping = false;
        let grace = std::time::Duration::from_secs(self.policy.disconnect_grace_secs);
        let now = std::time::Instant::now();
        let quiet: Vec<String> = match self.session() {
            Ok(s) => {
                let mut holders: Vec<String> = s.locks.iter().map(|l| l.holder.clone()).collect();
                holders.sort();
                holders.dedup();
                let seen = self.seen.borrow();
                holders
                    .into_iter()
                    .filter(|h| seen.get(h).is_none_or(|t| now.duration_since(*t) > grace))
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        let agents: Vec<(String, Option<Addr<crate::actors::agent::AgentActor>>)> = quiet
            .into_iter()
            .map(|h| {
                let addr = self.agents.get(&h).map(|a| a.addr.clone());
                (h, addr)
            })
            .collect();
        let fut = async move {
            let mut gone = Vec::new();
            for (holder, addr) in agents {
                let streaming = match addr {
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
        .then(|gone, act, ctx| {
            let releases: Vec<(i64, Release)> = match act.session() {
                Ok(s) => gone
                    .iter()
                    .flat_map(|h| s.locks.of(h))
                    .map(|id| (id, Release::Disconnected))
                    .collect(),
                Err(_) => Vec::new(),
            };
            if releases.is_empty() {
                act.schedule_lease_timer(ctx);
                return Box::pin(fut::ready(Ok(()))) as ResponseActFuture<Self, _>;
            }
            for h in &gone {
                log::info!(
                    "releasing the locks of {h}: gone longer than the disconnect grace period"
                );
            }
            Box::pin(
                act.release_and_grant(releases, None, Vec::new())
                    .map(|r, _, _| r.map(|_| ())),
            )
        });
        let _ = ctx;
        AtomicResponse::new(Box::pin(fut))
    }
}
