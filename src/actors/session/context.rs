//! The session actor's shared context: write (set, append, delete, sync), read, and diff.

use super::*;

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

impl Handler<crate::actors::messages::WriteBatch> for SessionActor {
    type Result = Reply<Vec<ContextWritten>>;

    /// Plans every write against a scratch copy of the session that the writes before it
    /// changed (with the event ids the log will give them: this actor is the log's only
    /// writer), then commits all the events in one transaction and applies them in order.
    fn handle(
        &mut self,
        msg: crate::actors::messages::WriteBatch,
        _: &mut Self::Context,
    ) -> Self::Result {
        let planned = self
            .caller_as(&msg.credential, msg.as_participant.as_deref())
            .and_then(|caller| {
                let mut scratch = self.session()?.clone();
                let mut plan = Vec::with_capacity(msg.requests.len());
                for (i, request) in msg.requests.iter().enumerate() {
                    let (changes, event) = scratch
                        .check_context(&caller, request)
                        .map_err(|e| HubError::from(e).in_operation(i))?;
                    if changes.is_empty() {
                        plan.push((changes, None));
                        continue;
                    }
                    let id = scratch.last_event_id + 1;
                    scratch.apply_context(&changes, id);
                    plan.push((changes, Some((id, event))));
                }
                let snapshot = (scratch.context_since_snapshot
                    >= crate::domain::context::SNAPSHOT_EVERY)
                    .then(|| (scratch.context.clone(), scratch.last_event_id));
                Ok((plan, snapshot))
            });
        let (plan, snapshot) = match planned {
            Ok(p) => p,
            Err(e) => return reply(Err(e)),
        };
        let (id, at) = (self.id, now());
        let to_write: Vec<(i64, crate::domain::event::NewEvent)> =
            plan.iter().filter_map(|(_, e)| e.clone()).collect();
        let snapshotted = snapshot.is_some();
        AtomicResponse::new(self.commit_events(
            move |c| {
                let mut events = Vec::with_capacity(to_write.len());
                for (expected, event) in &to_write {
                    let e = queries::append_event(c, id, event, at)?;
                    if e.id != *expected {
                        // Someone else wrote to this log: roll the whole batch back.
                        return Err(HubError::Internal(format!(
                            "batch planned event {expected}, the log gave {}",
                            e.id
                        )));
                    }
                    events.push(e);
                }
                if let Some((context, through)) = &snapshot {
                    queries::insert_snapshot(c, id, *through, context, "auto", at)?;
                }
                Ok(events)
            },
            move |act, events, _| {
                let mut events = events.into_iter();
                let mut results = Vec::with_capacity(plan.len());
                for (changes, event) in plan {
                    if event.is_none() {
                        results.push(ContextWritten {
                            event_id: None,
                            version: None,
                            changed: Vec::new(),
                        });
                        continue;
                    }
                    let e = events.next().expect("one committed event per planned one");
                    act.session_mut().apply_context(&changes, e.id);
                    results.push(ContextWritten {
                        event_id: Some(e.id),
                        version: Some(e.id),
                        changed: changes.iter().map(|c| c.path.to_string()).collect(),
                    });
                }
                if snapshotted {
                    act.session_mut().context_since_snapshot = 0;
                }
                results
            },
        ))
    }
}
