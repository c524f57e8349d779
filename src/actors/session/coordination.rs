//! The session actor's coordination side: the handshake, roles (request, answer, assign,
//! automatic rotation, all at handshake boundaries), and the change ledger with its write gate
//! and conflict alerts.

use std::collections::BTreeMap;

use actix::prelude::*;

use super::messaging::until;
use super::{Reply, SessionActor, reply};
use crate::actors::messages::{
    AssignRoles, ChangeRecorded, FenceCheck, HandshakeStep, HandshakeView, ListChanges,
    RecordChange, RequestRole, RespondRole, RoleOutcome, RoleStatus,
};
use crate::domain::auth::Caller;
use crate::domain::coordination::{PlannedRoles, RoleDecision};
use crate::domain::event::{Event, NewEvent, Priority};
use crate::domain::handshake::{self, Phase, Step};
use crate::domain::ledger::{self, CHANGE_RECORDED};
use crate::domain::now;
use crate::error::HubError;
use crate::store::{ledger as ledger_store, queries};

/// Internal: is handshake `0` still waiting for a reviewer?
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub(super) struct ReviewTimeout(i64);

/// Internal: time to look at the automatic rotation.
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub(super) struct RotationCheck;

impl SessionActor {
    /// Timers that follow the coordination state: the review deadline of an open handshake,
    /// and the next automatic rotation.
    pub(super) fn schedule_coordination_timers(&mut self, ctx: &mut Context<Self>) {
        let Ok(s) = self.session() else { return };
        // One review timer at a time, for the handshake's current wait (a reviewer leaving
        // restarts the wait).
        let review = match &s.coordination.handshake {
            Phase::AwaitingReview { id, since, .. }
                if s.coordination.overdue_alerted != Some(*id) =>
            {
                Some((
                    *id,
                    *since + chrono::TimeDelta::seconds(i64::from(s.review_timeout_secs)),
                ))
            }
            _ => None,
        };
        if let Some(old) = self.review_timer.take() {
            ctx.cancel_future(old);
        }
        if let Some((id, due)) = review {
            self.review_timer = Some(ctx.notify_later(ReviewTimeout(id), until(due)));
        }
        let Ok(s) = self.session() else { return };
        let rotation = s
            .next_rotation_at()
            .map(|at| (at, s.rotation_interval_secs));
        // Disarmed when none can happen (paused, completed, nobody to swap with): a session
        // with nothing due may leave memory while idle. Due but not taken (a handshake in
        // progress), or due the moment one became possible again (a resume, a join after the
        // driver was alone): one interval from now, so the newcomer has a turn to catch up
        // and a check never spins. A check armed sooner is kept, so that joins or status
        // changes do not put a turn off again and again (it was armed only by checks before
        // stop 35, and always armed).
        let fires = rotation.map(|(at, interval_secs)| {
            let wait = match until(at) {
                d if d.is_zero() => std::time::Duration::from_secs(u64::from(interval_secs)),
                d => d,
            };
            (wait, std::time::Instant::now() + wait)
        });
        match (fires, self.rotation_timer) {
            (Some((_, fires)), Some((_, armed))) if armed <= fires => {}
            (fires, old) => {
                if let Some((old, _)) = old {
                    ctx.cancel_future(old);
                }
                self.rotation_timer =
                    fires.map(|(wait, at)| (ctx.notify_later(RotationCheck, wait), at));
            }
        }
    }

    /// Commits a role decision: its event, the participants' new roles, the coordination state.
    fn commit_roles(
        &mut self,
        planned: PlannedRoles,
        status: RoleStatus,
    ) -> ResponseActFuture<Self, Result<RoleOutcome, HubError>> {
        let (id, at) = (self.id, now());
        let coordination = match self.session() {
            Ok(s) => {
                let driver_changes = planned.apply.as_ref().is_some_and(|c| s.changes_driver(c));
                s.coordination.after_roles(&planned, driver_changes, at)
            }
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let stored = coordination.clone();
        let (event, apply) = (planned.event.clone(), planned.apply.clone());
        let roles = planned
            .apply
            .as_ref()
            .or(planned.pending.as_ref())
            .map(|c| c.roles.clone())
            .unwrap_or_default();
        self.commit_events(
            move |c| {
                let event = queries::append_event(c, id, &event, at)?;
                if let Some(change) = &apply {
                    ledger_store::set_roles(c, id, change)?;
                }
                ledger_store::set_coordination(c, id, &stored)?;
                Ok(vec![event])
            },
            move |act, events, ctx| {
                let s = act.session_mut();
                if let Some(change) = &planned.apply {
                    s.apply_roles(change);
                }
                s.coordination = coordination;
                act.schedule_coordination_timers(ctx);
                RoleOutcome {
                    event_id: events[0].id,
                    status,
                    roles,
                }
            },
        )
    }

    /// Commits a plain event that only changes the coordination state.
    fn commit_coordination_event(
        &mut self,
        event: NewEvent,
        coordination: crate::domain::coordination::Coordination,
    ) -> ResponseActFuture<Self, Result<Event, HubError>> {
        let (id, at) = (self.id, now());
        let stored = coordination.clone();
        self.commit_events(
            move |c| {
                let event = queries::append_event(c, id, &event, at)?;
                ledger_store::set_coordination(c, id, &stored)?;
                Ok(vec![event])
            },
            move |act, mut events, _| {
                act.session_mut().coordination = coordination;
                events.remove(0)
            },
        )
    }
}

fn roles_outcome(
    act: &mut SessionActor,
    planned: Result<RoleDecision, HubError>,
) -> ResponseActFuture<SessionActor, Result<RoleOutcome, HubError>> {
    let decision = match planned {
        Err(e) => return Box::pin(fut::ready(Err(e))),
        Ok(RoleDecision::Roles(p)) => {
            let status = if p.apply.is_some() {
                RoleStatus::Changed
            } else {
                RoleStatus::Pending
            };
            return act.commit_roles(p, status);
        }
        Ok(d) => d,
    };
    let (event, status) = match &decision {
        RoleDecision::Asked { event, .. } => (event.clone(), RoleStatus::Requested),
        RoleDecision::Refused { event, .. } => (event.clone(), RoleStatus::Refused),
        RoleDecision::Roles(_) => unreachable!("handled above"),
    };
    let current = match act.session() {
        Ok(s) => s.coordination.clone(),
        Err(e) => return Box::pin(fut::ready(Err(e))),
    };
    let (id, at) = (act.id, now());
    let (stored_base, stored_decision) = (current.clone(), decision.clone());
    act.commit_events(
        move |c| {
            let written = queries::append_event(c, id, &event, at)?;
            let next = stored_base.after_request(&stored_decision, written.id);
            ledger_store::set_coordination(c, id, &next)?;
            Ok(vec![written])
        },
        move |act, events, _| {
            let event_id = events[0].id;
            act.session_mut().coordination = current.after_request(&decision, event_id);
            RoleOutcome {
                event_id,
                status,
                roles: BTreeMap::new(),
            }
        },
    )
}

impl Handler<RequestRole> for SessionActor {
    type Result = Reply<RoleOutcome>;

    fn handle(&mut self, msg: RequestRole, _: &mut Self::Context) -> Self::Result {
        let planned = self
            .caller_as(&msg.credential, msg.as_participant.as_deref())
            .and_then(|caller| {
                Ok(self
                    .session()?
                    .check_role_request(&caller, msg.role, msg.reason)?)
            });
        AtomicResponse::new(roles_outcome(self, planned))
    }
}

impl Handler<RespondRole> for SessionActor {
    type Result = Reply<RoleOutcome>;

    fn handle(&mut self, msg: RespondRole, _: &mut Self::Context) -> Self::Result {
        let planned = self
            .caller_as(&msg.credential, msg.as_participant.as_deref())
            .and_then(|caller| {
                Ok(self.session()?.check_role_respond(
                    &caller,
                    msg.request_id,
                    msg.grant,
                    msg.note,
                )?)
            });
        AtomicResponse::new(roles_outcome(self, planned))
    }
}

impl Handler<AssignRoles> for SessionActor {
    type Result = Reply<RoleOutcome>;

    fn handle(&mut self, msg: AssignRoles, _: &mut Self::Context) -> Self::Result {
        let planned = self
            .caller_as(&msg.credential, msg.as_participant.as_deref())
            .and_then(|caller| {
                Ok(self
                    .session()?
                    .check_role_assign(&caller, msg.roles, msg.reason)?)
            });
        AtomicResponse::new(roles_outcome(self, planned.map(RoleDecision::Roles)))
    }
}

impl SessionActor {
    /// Commits handshake step `step` by `caller`; `review_required` says why the hub made a
    /// `work_complete` await review.
    fn commit_handshake(
        &mut self,
        caller: Caller,
        step: Step,
        at: chrono::NaiveDateTime,
        review_required: Option<String>,
    ) -> ResponseActFuture<Self, Result<HandshakeView, HubError>> {
        let planned = self.session().and_then(|s| {
            let (mut planned, boundary) = s.check_handshake(&caller, &step, at)?;
            if let Some(why) = &review_required {
                planned.note_review_required(why);
            }
            let driver_changes = boundary.as_ref().is_some_and(|(_, c)| s.changes_driver(c));
            Ok((planned, boundary, driver_changes, s.coordination.clone()))
        });
        let (planned, boundary, driver_changes, current) = match planned {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let id = self.id;
        let (to_write, roles_event) = (
            planned.events.clone(),
            boundary.as_ref().map(|(e, _)| e.clone()),
        );
        let change = boundary.map(|(_, c)| c);
        let (stored_current, stored_planned, stored_change) =
            (current.clone(), planned.clone(), change.clone());
        self.commit_events(
            move |c| {
                let mut events = Vec::new();
                for e in &to_write {
                    events.push(queries::append_event(c, id, e, at)?);
                }
                if let (Some(e), Some(change)) = (&roles_event, &stored_change) {
                    events.push(queries::append_event(c, id, e, at)?);
                    ledger_store::set_roles(c, id, change)?;
                }
                let next = stored_current.after_handshake(
                    &stored_planned,
                    events[0].id,
                    stored_change.as_ref().map(|c| (c, driver_changes)),
                    at,
                );
                ledger_store::set_coordination(c, id, &next)?;
                Ok(events)
            },
            move |act, events, ctx| {
                let next = current.after_handshake(
                    &planned,
                    events[0].id,
                    change.as_ref().map(|c| (c, driver_changes)),
                    at,
                );
                let s = act.session_mut();
                if let Some(change) = &change {
                    s.apply_roles(change);
                }
                s.coordination = next;
                act.schedule_coordination_timers(ctx);
                HandshakeView {
                    event_id: events[0].id,
                    handshake: act.session_mut().coordination.handshake.clone(),
                    roles_changed: change.map(|c| c.roles).unwrap_or_default(),
                    review_required,
                }
            },
        )
    }
}

impl Handler<HandshakeStep> for SessionActor {
    type Result = Reply<HandshakeView>;

    fn handle(&mut self, msg: HandshakeStep, _: &mut Self::Context) -> Self::Result {
        let at = now();
        let checked = self
            .caller_as(&msg.credential, msg.as_participant.as_deref())
            .and_then(|caller| {
                let s = self.session()?;
                // Refusals first, before any read.
                s.check_handshake(&caller, &msg.step, at)?;
                // The driver's work_complete without review: the genome's reviewRequirement
                // may want one after all, by the size of the work since the last review.
                let probe = match &caller {
                    Caller::Participant(me) if msg.step.skips_review() => s
                        .review_requirement_for(me)
                        .map(|g| (me.clone(), g.clone())),
                    _ => None,
                };
                Ok((caller, probe))
            });
        let (caller, probe) = match checked {
            Ok(c) => c,
            Err(e) => return reply(Err(e)),
        };
        let Some((driver, genome)) = probe else {
            return AtomicResponse::new(self.commit_handshake(caller, msg.step, at, None));
        };
        let (store, id, step) = (self.store.clone(), self.id, msg.step);
        // Read off the actor's thread; the atomic response keeps other messages out meanwhile.
        let fut = async move {
            store
                .read(move |c| ledger_store::unreviewed_work(c, id, &driver))
                .await
        }
        .into_actor(self)
        .then(move |work, act, _| match work {
            Ok(work) => {
                let why = work.review_required(&genome);
                let step = if why.is_some() {
                    step.with_review()
                } else {
                    step
                };
                act.commit_handshake(caller, step, at, why)
            }
            Err(e) => Box::pin(fut::ready(Err(e))),
        });
        AtomicResponse::new(Box::pin(fut))
    }
}

impl Handler<ReviewTimeout> for SessionActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: ReviewTimeout, _: &mut Self::Context) -> Self::Result {
        self.review_timer = None;
        let Ok(s) = self.session() else {
            return reply(Ok(()));
        };
        if s.coordination.handshake.id() != Some(msg.0)
            || s.coordination.overdue_alerted == Some(msg.0)
        {
            return reply(Ok(()));
        }
        let Some(event) =
            handshake::review_overdue(&s.coordination.handshake, s.review_timeout_secs)
        else {
            return reply(Ok(())); // review started meanwhile
        };
        let mut next = s.coordination.clone();
        next.overdue_alerted = Some(msg.0);
        AtomicResponse::new(Box::pin(
            self.commit_coordination_event(event, next)
                .map(|r, _, _| r.map(|_| ())),
        ))
    }
}

impl Handler<RotationCheck> for SessionActor {
    type Result = Reply<()>;

    fn handle(&mut self, _: RotationCheck, ctx: &mut Self::Context) -> Self::Result {
        self.rotation_timer = None;
        let at = now();
        let Ok(s) = self.session() else {
            return reply(Ok(()));
        };
        let Some((event, change)) = s.rotation_due(at) else {
            self.schedule_coordination_timers(ctx);
            return reply(Ok(()));
        };
        let at_boundary = s.coordination.handshake.at_boundary();
        if !at_boundary && s.coordination.pending_roles.is_some() {
            return reply(Ok(())); // already waiting for the boundary
        }
        let planned = PlannedRoles {
            event: if at_boundary {
                event
            } else {
                NewEvent {
                    kind: crate::domain::coordination::ROLE_CHANGE_PENDING,
                    actor: None,
                    priority: Priority::Routine,
                    payload: serde_json::json!({"roles": change.roles, "reason": change.reason}),
                    to: None,
                }
            },
            apply: at_boundary.then(|| change.clone()),
            pending: (!at_boundary).then_some(change),
            answers: None,
        };
        AtomicResponse::new(Box::pin(
            self.commit_roles(planned, RoleStatus::Changed)
                .map(|r, _, _| r.map(|_| ())),
        ))
    }
}

impl Handler<RecordChange> for SessionActor {
    type Result = Reply<ChangeRecorded>;

    fn handle(&mut self, msg: RecordChange, _: &mut Self::Context) -> Self::Result {
        let checked = self
            .caller_as(&msg.credential, msg.as_participant.as_deref())
            .and_then(|caller| {
                let who = match caller {
                    Caller::Participant(id) => id,
                    Caller::Operator => {
                        return Err(HubError::invalid(
                            "aiId",
                            "name the participant who changed the file",
                        ));
                    }
                };
                let s = self.session()?;
                let outside = s.check_code_write(&who)?;
                let fence = FenceCheck {
                    session: self.id,
                    holder: who.clone(),
                    file: msg.spec.file_path.clone(),
                    token: msg.spec.lock_token,
                };
                let change = ledger::plan_change(msg.spec)?;
                s.check_navigator_change(&who, ledger::lines_touched(&change.lines))?;
                Ok((who, outside, change, fence, self.lock_table()?))
            });
        let task = checked
            .as_ref()
            .ok()
            .and_then(|(_, _, change, _, _)| change.task_id)
            .map(|t| self.find_task(t));
        let (who, outside, change, fence, table) = match checked {
            Ok(c) => c,
            Err(e) => return reply(Err(e)),
        };
        let (store, id, at) = (self.store.clone(), self.id, now());
        let file = change.file_path.clone();
        let window = self.policy.conflict_window_secs;
        let since = at - chrono::TimeDelta::seconds(i64::try_from(window).unwrap_or(i64::MAX));
        let driver = self
            .session()
            .ok()
            .and_then(|s| s.driver().map(|d| d.ai_id.clone()));
        // The driver learns as soon as its unreviewed work needs review (`reviewRequirement`):
        // one more read in the same store call, only where a size can require review.
        let genome = self
            .session()
            .ok()
            .and_then(|s| s.review_requirement_for(&who).cloned());
        let unreviewed_of = genome.as_ref().map(|_| who.clone());
        // The project's lock table checks the fencing token and says whose locks cover the file.
        let fut = async move {
            if let Some(task) = task {
                task.await?;
            }
            let foreign = table.send(fence).await??;
            let (recent, unreviewed) = store
                .read(move |c| {
                    let recent = ledger_store::recent_changes(c, id, &file, since)?;
                    let unreviewed = match &unreviewed_of {
                        Some(driver) => Some(ledger_store::unreviewed_work(c, id, driver)?),
                        None => None,
                    };
                    Ok((recent, unreviewed))
                })
                .await?;
            Ok::<_, HubError>((foreign, recent, unreviewed))
        }
        .into_actor(self)
        .then(move |found, act, _| {
            let (foreign, recent, unreviewed) = match found {
                Ok(r) => r,
                Err(e) => return Box::pin(fut::ready(Err(e))) as ResponseActFuture<Self, _>,
            };
            let review_required = unreviewed.zip(genome.as_ref()).and_then(|(mut work, g)| {
                work.add(&change.file_path, &change.lines);
                work.review_required(g)
            });
            let hits = ledger::conflicts(&change, &who, &recent, at, window);
            let conflict_ids: Vec<i64> = hits.iter().map(|r| r.id).collect();
            let mut others: Vec<String> = hits.iter().map(|r| r.ai_id.clone()).collect();
            others.sort();
            others.dedup();
            let recorded = NewEvent {
                kind: CHANGE_RECORDED,
                actor: Some(who.clone()),
                priority: Priority::Routine,
                payload: serde_json::json!({
                    "filePath": change.file_path,
                    "operation": change.operation,
                    "newPath": change.new_path,
                    "lines": change.lines,
                    "symbols": change.symbols,
                    "reason": change.reason,
                    "taskId": change.task_id,
                }),
                to: None,
            };
            // One critical alert per recipient, saying every reason that concerns it.
            let mut reasons: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            let mut note = |to: &str, why: String| reasons.entry(to.to_owned()).or_default().push(why);
            for other in &others {
                let why = format!(
                    "{who} changed {} where {other} changed it recently (overlapping lines or symbols)",
                    change.file_path
                );
                note(other, why.clone());
                note(&who, why);
            }
            for c in &foreign {
                let why = format!("{who} changed {} while {} holds the lock on {}", change.file_path, c.who, c.resource);
                // A holder in a sibling session hears of it there, when its own tools look.
                if c.same_session {
                    note(&c.holder, why.clone());
                }
                note(&who, why);
            }
            if outside {
                let why = format!(
                    "{who} changed {} without the write permission (loose mode: recorded)",
                    change.file_path
                );
                if let Some(d) = driver.as_ref().filter(|d| **d != who) {
                    note(d, why.clone());
                }
                note(&who, why);
            }
            let alerts: Vec<NewEvent> = reasons
                .iter()
                .map(|(to, why)| ledger::conflict_event(to, &change.file_path, &why.join("; "), &conflict_ids))
                .collect();
            let stored = change.clone();
            let author = who.clone();
            act.commit_events(
                move |c| {
                    let event = queries::append_event(c, id, &recorded, at)?;
                    ledger_store::insert_change(c, id, event.id, &author, None, &stored, at)?;
                    let mut events = vec![event];
                    for a in &alerts {
                        events.push(queries::append_event(c, id, a, at)?);
                    }
                    Ok(events)
                },
                move |_, events, _| ChangeRecorded {
                    id: events[0].id,
                    lines: change.lines,
                    conflicts: conflict_ids,
                    outside_permissions: outside,
                    needs_review: review_required.is_some(),
                    review_required,
                },
            )
        });
        AtomicResponse::new(Box::pin(fut))
    }
}

impl Handler<ListChanges> for SessionActor {
    type Result = ResponseFuture<Result<Vec<crate::domain::ledger::ChangeView>, HubError>>;

    fn handle(&mut self, msg: ListChanges, _: &mut Self::Context) -> Self::Result {
        let allowed = self
            .session()
            .and_then(|s| Ok(self.authorized(s, &msg.credential)?));
        let (store, id, query) = (self.store.clone(), self.id, msg.query);
        Box::pin(async move {
            allowed?;
            store
                .read(move |c| ledger_store::list_changes(c, id, &query))
                .await
        })
    }
}
