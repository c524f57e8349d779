//! The session actor's shared context: write (set, append, delete, sync), read, and diff.

use super::*;
use crate::domain::context::Change;
use crate::store::event_writes::{EventWrite, PlainWrite};

/// Context changes a diff rewinds at most. A diff rewinds the log from the current document
/// back to `since`, newest first, so it needs every change in between: a longer span is
/// refused (diff from a later point) rather than answered wrongly.
const MAX_DIFF_CHANGES: i64 = 10_000;

impl Handler<WriteContext> for SessionActor {
    type Result = ResponseFuture<Result<ContextWritten, HubError>>;

    /// Pipelined (`pipeline.rs`) unless a write still in flight overlaps it
    /// (`domain::context_in_flight`): then it is planned again once they are applied. A write
    /// that takes the context's snapshot holds the session through its commit.
    fn handle(&mut self, msg: WriteContext, ctx: &mut Self::Context) -> Self::Result {
        let planned = self
            .caller_as(&msg.credential, msg.as_participant.as_deref())
            .and_then(|caller| Ok(self.session()?.check_context(&caller, &msg.request)?));
        let (changes, event) = match planned {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        if changes.is_empty() {
            return Box::pin(fut::ready(Ok(ContextWritten {
                event_id: None,
                version: None,
                changed: Vec::new(),
            })));
        }
        let due = match self.session() {
            Ok(s) => s.snapshot_is_due(),
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        // Pipelined if independent of the context writes in flight (and from here on noted
        // among them); a write that takes the snapshot goes alone.
        let admitted = !due
            && match &self.state {
                State::Live(s) => self.context_in_flight.admit(&s.context, &changes),
                _ => false,
            };
        if !admitted && !self.context_in_flight.is_empty() {
            // Planned against a context the writes in flight change: plan it again after them.
            let again =
                self.after_in_flight(move |act, ctx| Box::pin(fut::ready(act.handle(msg, ctx))));
            return self.hold_then_pipeline(ctx, again);
        }
        let (id, at) = (self.id, now());
        let written = |act: &mut SessionActor, changes: &[Change], event: &Event| {
            act.session_mut().apply_context(changes, event.id);
            ContextWritten {
                event_id: Some(event.id),
                version: Some(event.id),
                changed: changes.iter().map(|c| c.path.to_string()).collect(),
            }
        };
        if !admitted {
            // Now and then (`Session::snapshot_due_after`) the whole context is stored with the
            // change, so that a restart replays a bounded part of the log (nothing is in
            // flight here).
            let snapshot = self.session_mut().snapshot_due(&changes);
            return self.held(
                ctx,
                move |c| {
                    let event = queries::append_event(c, id, &event, at)?;
                    if let Some((mut context, changes)) = snapshot {
                        for ch in &changes {
                            context.apply(ch, event.id);
                        }
                        queries::insert_snapshot(c, id, event.id, &context, "auto", at)?;
                    }
                    Ok(vec![event])
                },
                move |act, outcome, ctx| {
                    Ok(act.applied(outcome?, ctx, move |act, events, _| {
                        let w = written(act, &changes, &events[0]);
                        act.session_mut().snapshot_taken();
                        w
                    }))
                },
            );
        }
        let submitted = self.submit_event(EventWrite::Event(PlainWrite {
            session_id: id,
            event,
            at,
        }));
        self.pipelined(ctx, submitted, move |act, outcome, ctx| {
            act.context_in_flight.pop();
            Ok(act.applied(outcome?, ctx, move |act, events, _| {
                written(act, &changes, &events[0])
            }))
        })
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
                    // A compacted session has no history before its final snapshot.
                    let kept = match crate::store::retention::oldest_event(c, id)? {
                        0 => reflected + 1,
                        oldest => oldest,
                    };
                    if since + 1 < kept {
                        return Err(HubError::Conflict {
                            code: "history_compacted",
                            message: format!(
                                "the history before event {kept} was compacted (retention); diff from event {} or later",
                                kept - 1
                            ),
                        });
                    }
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

/// One planned write of a batch: a context change, a message or a task operation, with the
/// event id it will get (a task operation's first).
enum Staged {
    Context(
        Vec<crate::domain::context::Change>,
        Option<(i64, crate::domain::event::NewEvent)>,
    ),
    Message(crate::domain::message::PlannedMessage, i64),
    Task(crate::domain::task_rules::TaskPlan, i64),
    /// A lock the project's table reserved (granted) for the batch.
    Lock(crate::domain::lock::Lock, i64),
}

/// What a batch appends, in order.
enum Append {
    One(
        i64,
        crate::domain::event::NewEvent,
        Option<Box<crate::domain::message::PlannedMessage>>,
    ),
    Tasks(i64, crate::domain::task_rules::TaskPlan),
    Lock(
        i64,
        crate::domain::event::NewEvent,
        crate::domain::lock::Request,
        i64,
    ),
}

impl Handler<crate::actors::messages::WriteBatch> for SessionActor {
    type Result = Reply<Vec<crate::actors::messages::BatchResult>>;

    /// Once the pipelined writes in flight are applied (the batch plans its events' ids from
    /// the session's last one), holding the session through its commit.
    fn handle(
        &mut self,
        msg: crate::actors::messages::WriteBatch,
        _: &mut Self::Context,
    ) -> Self::Result {
        AtomicResponse::new(self.after_in_flight(move |act, _| act.write_batch(msg)))
    }
}

impl SessionActor {
    /// Plans every write against a scratch copy of the session that the writes before it
    /// changed (with the event ids the log will give them: this actor is the log's only
    /// writer, and nothing of this session is in flight), then commits all the events in one
    /// transaction and applies them in order. Messages take their send budget up front and
    /// give it back if the batch fails. Task operations are planned by the task coordinator on
    /// a scratch board, all at once; a task they complete has its locks released in the same
    /// transaction.
    fn write_batch(
        &mut self,
        msg: crate::actors::messages::WriteBatch,
    ) -> ResponseActFuture<Self, Result<Vec<crate::actors::messages::BatchResult>, HubError>> {
        use crate::actors::messages::{BatchRequest, BatchResult, MessageSent, ReserveLock};
        let caller = match self.caller_as(&msg.credential, msg.as_participant.as_deref()) {
            Ok(c) => c,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let at = now();
        let (positions, ops): (Vec<usize>, Vec<_>) = msg
            .requests
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match r {
                BatchRequest::Task(op) => Some((i, op.clone())),
                _ => None,
            })
            .unzip();
        let task_ask = if ops.is_empty() {
            None
        } else {
            let asked = self.session().and_then(|s| {
                let ask = crate::actors::task_coordinator::PlanTaskBatch {
                    roster: s.roster(),
                    caller: caller.clone(),
                    ops,
                    at,
                    seed: super::tasks::seed(),
                };
                Ok((self.task_coordinator()?, ask))
            });
            match asked {
                Ok(a) => Some(a),
                Err(e) => return Box::pin(fut::ready(Err(e))),
            }
        };
        // Locks: checked now, reserved in the project's table before anything is staged.
        let mut lock_asks = Vec::new();
        for (i, r) in msg.requests.iter().enumerate() {
            if let BatchRequest::Lock(ask) = r {
                let checked = self.session().and_then(|s| {
                    let request = s.check_lock(&caller, ask.clone())?;
                    let task = request.task_id.map(|t| self.find_task(t));
                    Ok((i, request, task))
                });
                match checked {
                    Ok(c) => lock_asks.push(c),
                    Err(e) => return Box::pin(fut::ready(Err(e.in_operation(i)))),
                }
            }
        }
        let table = if lock_asks.is_empty() {
            None
        } else {
            match self
                .lock_table()
                .and_then(|t| Ok((t, self.session()?.name.clone())))
            {
                Ok(t) => Some(t),
                Err(e) => return Box::pin(fut::ready(Err(e))),
            }
        };
        let table_addr = table.as_ref().map(|(t, _)| t.clone());
        let acquired = std::rc::Rc::new(std::cell::RefCell::new(Vec::<i64>::new()));
        let reserved_ids = acquired.clone();
        let sends = msg
            .requests
            .iter()
            .filter(|r| matches!(r, BatchRequest::Message(_)))
            .count();
        let sender = match (sends, &caller) {
            (0, _) => None,
            (_, Caller::Participant(id)) => Some(id.clone()),
            (_, Caller::Operator) => {
                return Box::pin(fut::ready(Err(HubError::invalid(
                    "aiId",
                    "the operator sends as a participant: name it in aiId",
                ))));
            }
        };
        if let Some(from) = &sender
            && let Err(e) = self.take_sends(from, sends)
        {
            return Box::pin(fut::ready(Err(e)));
        }
        let parents: Vec<i64> = msg
            .requests
            .iter()
            .filter_map(|r| match r {
                BatchRequest::Message(spec) => spec.reply_to,
                _ => None,
            })
            .collect();
        let (store, id) = (self.store.clone(), self.id);
        let refund = move |act: &mut SessionActor| {
            if let Some(from) = &sender
                && let Some(b) = act.send_limits.get_mut(from)
            {
                (0..sends).for_each(|_| b.refund());
            }
        };
        let fut = async move {
            let parents = store
                .read(move |c| {
                    let mut found = std::collections::HashMap::new();
                    for p in parents {
                        if let Some(parent) = crate::store::messages::find_parent(c, id, p)? {
                            found.insert(p, parent);
                        }
                    }
                    Ok(found)
                })
                .await?;
            let plans = match task_ask {
                None => Vec::new(),
                Some((coordinator, ask)) => coordinator
                    .send(ask)
                    .await?
                    .map_err(|(i, e)| e.in_operation(positions[i]))?,
            };
            let mut locks = Vec::with_capacity(lock_asks.len());
            if let Some((table, label)) = table {
                for (i, request, task) in lock_asks {
                    let holder = request.holder.clone();
                    let reserved = async {
                        if let Some(task) = task {
                            crate::domain::task_rules::check_task_lock(&task.await?, &holder)?;
                        }
                        let label = label.clone();
                        table.send(ReserveLock { request, label }).await?
                    }
                    .await
                    .map_err(|e| e.in_operation(i))?;
                    // Given back below (settled as not committed) if the batch fails.
                    reserved_ids.borrow_mut().push(reserved.lock.id);
                    locks.push(reserved.lock);
                }
            }
            Ok::<_, HubError>((parents, plans, locks))
        }
        .into_actor(self)
        .then(move |planned, act, _| {
            let planned = planned.and_then(|(parents, plans, locks)| {
                act.stage(&caller, msg.requests, &parents, plans, locks, at)
            });
            let (plan, snapshot) = match planned {
                Ok(p) => p,
                // The budget goes back below, with every other failure.
                Err(e) => return Box::pin(fut::ready(Err(e))) as ResponseActFuture<Self, _>,
            };
            let to_write: Vec<Append> = plan
                .iter()
                .filter_map(|s| match s {
                    Staged::Context(_, Some((id, e))) => Some(Append::One(*id, e.clone(), None)),
                    Staged::Context(_, None) => None,
                    Staged::Message(m, id) => {
                        Some(Append::One(*id, m.event.clone(), Some(Box::new(m.clone()))))
                    }
                    Staged::Task(p, first) => Some(Append::Tasks(*first, p.clone())),
                    Staged::Lock(lock, expected) => {
                        let (_, event) = super::locks::held_from(lock.clone(), at);
                        let row = super::locks::request_row(id, lock);
                        Some(Append::Lock(*expected, event, row, lock.id))
                    }
                })
                .collect();
            let completed: Vec<i64> = plan
                .iter()
                .flat_map(|s| match s {
                    Staged::Task(p, _) => p.completed.clone(),
                    _ => Vec::new(),
                })
                .collect();
            let snapshotted = snapshot.is_some();
            // Someone else wrote to this log: roll the whole batch back.
            let unexpected = |expected: i64, got: i64| {
                HubError::Internal(format!(
                    "batch planned event {expected}, the log gave {got}"
                ))
            };
            act.commit_with_release(
                crate::actors::messages::Select::Tasks(completed),
                None,
                move |c| {
                    let mut events = Vec::with_capacity(to_write.len());
                    for append in &to_write {
                        match append {
                            Append::One(expected, event, message) => {
                                let e = queries::append_event(c, id, event, at)?;
                                if e.id != *expected {
                                    return Err(unexpected(*expected, e.id));
                                }
                                if let Some(m) = message {
                                    crate::store::messages::insert_message(c, id, e.id, m, at)?;
                                }
                                events.push(e);
                            }
                            Append::Lock(expected, event, row, lock_id) => {
                                let e = crate::store::locks::append_request(
                                    c, id, event, *lock_id, row, true, at,
                                )?;
                                if e.id != *expected {
                                    return Err(unexpected(*expected, e.id));
                                }
                                events.push(e);
                            }
                            Append::Tasks(first, p) => {
                                let written = super::tasks::store_task_plan(c, id, p, at)?;
                                match written.first() {
                                    Some(e) if e.id != *first => {
                                        return Err(unexpected(*first, e.id));
                                    }
                                    _ => events.extend(written),
                                }
                            }
                        }
                    }
                    if let Some((context, through)) = &snapshot {
                        queries::insert_snapshot(c, id, *through, context, "auto", at)?;
                    }
                    Ok(events)
                },
                move |act, _, events, ctx| {
                    let mut events = events.into_iter();
                    let mut results = Vec::with_capacity(plan.len());
                    for staged in plan {
                        match staged {
                            Staged::Context(_, None) => {
                                results.push(BatchResult::Context(ContextWritten {
                                    event_id: None,
                                    version: None,
                                    changed: Vec::new(),
                                }));
                            }
                            Staged::Context(changes, Some(_)) => {
                                let e = events.next().expect("one event per planned write");
                                act.session_mut().apply_context(&changes, e.id);
                                results.push(BatchResult::Context(ContextWritten {
                                    event_id: Some(e.id),
                                    version: Some(e.id),
                                    changed: changes.iter().map(|c| c.path.to_string()).collect(),
                                }));
                            }
                            Staged::Message(planned, _) => {
                                let e = events.next().expect("one event per planned write");
                                act.session_mut().apply_send(&planned, e.id);
                                if let Some(deadline) = planned.ack_deadline {
                                    ctx.notify_later(
                                        super::messaging::AckDeadline(e.id),
                                        super::messaging::until(deadline),
                                    );
                                }
                                results.push(BatchResult::Message(MessageSent {
                                    id: e.id,
                                    thread: planned.thread.unwrap_or(e.id),
                                    ack_deadline: planned.ack_deadline.map(|d| d.and_utc()),
                                }));
                            }
                            Staged::Lock(lock, _) => {
                                events.next().expect("one event per planned write");
                                let (lock, _) = super::locks::held_from(lock, at);
                                results.push(BatchResult::Lock(
                                    crate::actors::messages::LockView {
                                        lock,
                                        behind: Vec::new(),
                                    },
                                ));
                            }
                            Staged::Task(p, _) => {
                                let n = super::tasks::plan_events(&p);
                                let written: Vec<_> = events.by_ref().take(n).collect();
                                let tasks = super::tasks::written_tasks(&p, &written);
                                act.apply_tasks(&p, &tasks);
                                results.push(BatchResult::Task(
                                    crate::actors::messages::TasksWritten { tasks },
                                ));
                            }
                        }
                    }
                    if snapshotted {
                        act.session_mut().snapshot_taken();
                    }
                    results
                },
            )
        })
        .map(move |result, act, _| {
            if result.is_err() {
                refund(act);
            }
            // The table learns whether the locks it reserved for the batch were written.
            let acquired = std::mem::take(&mut *acquired.borrow_mut());
            if let Some(table) = table_addr.filter(|_| !acquired.is_empty()) {
                table.do_send(crate::actors::messages::Settle {
                    session: act.id,
                    committed: result.is_ok(),
                    acquired,
                    ..Default::default()
                });
            }
            result
        });
        Box::pin(fut)
    }
}

/// A staged batch, and the context snapshot due at its end (the context and its event).
type StagedBatch = (Vec<Staged>, Option<(crate::domain::context::Context, i64)>);

impl SessionActor {
    /// Plans each request against a scratch session the ones before it changed.
    fn stage(
        &self,
        caller: &Caller,
        requests: Vec<crate::actors::messages::BatchRequest>,
        parents: &std::collections::HashMap<i64, crate::domain::message::Parent>,
        task_plans: Vec<crate::domain::task_rules::TaskPlan>,
        locks: Vec<crate::domain::lock::Lock>,
        at: chrono::NaiveDateTime,
    ) -> Result<StagedBatch, HubError> {
        use crate::actors::messages::BatchRequest;
        let mut scratch = self.session()?.clone();
        let mut task_plans = task_plans.into_iter();
        let mut locks = locks.into_iter();
        let mut plan = Vec::with_capacity(requests.len());
        for (i, request) in requests.into_iter().enumerate() {
            let at_op = |e: crate::domain::DomainError| HubError::from(e).in_operation(i);
            match request {
                BatchRequest::Context(request) => {
                    let (changes, event) =
                        scratch.check_context(caller, &request).map_err(at_op)?;
                    if changes.is_empty() {
                        plan.push(Staged::Context(changes, None));
                        continue;
                    }
                    let id = scratch.last_event_id + 1;
                    scratch.apply_context(&changes, id);
                    plan.push(Staged::Context(changes, Some((id, event))));
                }
                BatchRequest::Message(spec) => {
                    let parent = spec.reply_to.and_then(|r| parents.get(&r).cloned());
                    let planned = scratch
                        .check_send(caller, spec, parent, at)
                        .map_err(at_op)?;
                    let id = scratch.last_event_id + 1;
                    scratch.apply_send(&planned, id);
                    scratch.last_event_id = id;
                    plan.push(Staged::Message(planned, id));
                }
                BatchRequest::Task(_) => {
                    let planned = task_plans.next().ok_or_else(|| {
                        HubError::Internal("a task operation went unplanned".into())
                    })?;
                    let first = scratch.last_event_id + 1;
                    scratch.last_event_id += super::tasks::plan_events(&planned) as i64;
                    plan.push(Staged::Task(planned, first));
                }
                BatchRequest::Lock(_) => {
                    let lock = locks
                        .next()
                        .ok_or_else(|| HubError::Internal("a lock went unreserved".into()))?;
                    scratch.last_event_id += 1;
                    plan.push(Staged::Lock(lock, scratch.last_event_id));
                }
            }
        }
        let snapshot = scratch
            .snapshot_due_after(0)
            .then(|| (scratch.context.clone(), scratch.last_event_id));
        Ok((plan, snapshot))
    }
}
