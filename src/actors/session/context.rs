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
