//! The session actor's suggestions: submitted by those who may suggest, resolved by the driver;
//! an accepted one becomes a change in the ledger attributed to both.

use actix::prelude::*;
use serde_json::json;

use super::{Reply, SessionActor, reply};
use crate::actors::messages::{
    ListSuggestions, ResolveSuggestion, SubmitSuggestion, SuggestionResolved, SuggestionSubmitted,
};
use crate::domain::auth::Caller;
use crate::domain::event::{NewEvent, Priority};
use crate::domain::ledger::{self, CHANGE_RECORDED, Operation};
use crate::domain::now;
use crate::error::HubError;
use crate::store::{ledger as ledger_store, queries, suggestions as store};

pub const SUGGESTION_SUBMITTED: &str = "suggestion_submitted";
pub const SUGGESTION_RESOLVED: &str = "suggestion_resolved";

impl Handler<SubmitSuggestion> for SessionActor {
    type Result = Reply<SuggestionSubmitted>;

    fn handle(&mut self, msg: SubmitSuggestion, _: &mut Self::Context) -> Self::Result {
        let at = now();
        let planned = self.session().and_then(|s| {
            let caller = self.caller_as(&msg.credential, msg.as_participant.as_deref())?;
            let Caller::Participant(who) = caller else {
                return Err(HubError::invalid("aiId", "name the participant suggesting"));
            };
            s.check_suggest(&who)?;
            let mut spec = msg.spec;
            if spec.operation.is_some_and(|o| o != Operation::Edit) || spec.new_path.is_some() {
                return Err(HubError::invalid(
                    "operation",
                    "a suggestion is an edit: a diff or before/after",
                ));
            }
            spec.operation = Some(Operation::Edit);
            let change = ledger::plan_change(spec)?;
            Ok((who, change))
        });
        let (who, change) = match planned {
            Ok(p) => p,
            Err(e) => return reply(Err(e)),
        };
        let event = NewEvent {
            kind: SUGGESTION_SUBMITTED,
            actor: Some(who.clone()),
            priority: Priority::Important,
            payload: json!({
                "by": who,
                "filePath": change.file_path,
                "lines": change.lines,
                "reason": change.reason,
                "taskId": msg.task_id,
                "summary": format!("{who} suggests a change to {}: accept or reject it (suggestion resolve)", change.file_path),
            }),
            to: None,
        };
        let (id, task) = (self.id, msg.task_id);
        // The task it is for must exist (the session's task coordinator knows).
        let found = task.map(|t| self.find_task(t));
        let stored = change.clone();
        let checked = async move {
            if let Some(found) = found {
                found.await?;
            }
            Ok::<_, HubError>(())
        };
        AtomicResponse::new(Box::pin(checked.into_actor(self).then(
            move |ok, act, _| {
                if let Err(e) = ok {
                    return Box::pin(fut::ready(Err(e))) as ResponseActFuture<Self, _>;
                }
                act.commit_events(
                    move |c| {
                        let e = queries::append_event(c, id, &event, at)?;
                        store::insert(c, id, e.id, &who, &stored, task, at)?;
                        Ok(vec![e])
                    },
                    move |_, events, _| SuggestionSubmitted {
                        id: events[0].id,
                        lines: change.lines,
                    },
                )
            },
        )))
    }
}

impl Handler<ResolveSuggestion> for SessionActor {
    type Result = Reply<SuggestionResolved>;

    fn handle(&mut self, msg: ResolveSuggestion, _: &mut Self::Context) -> Self::Result {
        let resolver = self.session().and_then(|s| {
            let caller = self.caller_as(&msg.credential, msg.as_participant.as_deref())?;
            Ok(s.check_resolve(&caller, msg.accept)?)
        });
        let resolver = match resolver {
            Ok(r) => r,
            Err(e) => return reply(Err(e)),
        };
        if msg.note.as_ref().is_some_and(|n| n.chars().count() > 2000) {
            return reply(Err(HubError::invalid("note", "at most 2000 characters")));
        }
        let (store_handle, id, sid) = (self.store.clone(), self.id, msg.id);
        let fut = async move { store_handle.read(move |c| store::get(c, id, sid)).await }
            .into_actor(self)
            .then(move |found, act, _| {
                let found = match found {
                    Ok(Some(s)) if s.status == "pending" => s,
                    Ok(Some(s)) => {
                        return Box::pin(fut::ready(Err(HubError::Conflict {
                            code: "already_resolved",
                            message: format!("suggestion {} was {} already", s.id, s.status),
                        }))) as ResponseActFuture<Self, _>;
                    }
                    Ok(None) => {
                        return Box::pin(fut::ready(Err(HubError::invalid(
                            "id",
                            format!("no suggestion {sid}"),
                        ))));
                    }
                    Err(e) => return Box::pin(fut::ready(Err(e))),
                };
                let at = now();
                let resolved = NewEvent {
                    kind: SUGGESTION_RESOLVED,
                    actor: resolver.clone(),
                    priority: Priority::Important,
                    payload: json!({
                        "id": found.id,
                        "accepted": msg.accept,
                        "note": msg.note,
                        "summary": format!("suggestion {} for {} was {}", found.id, found.file_path, if msg.accept { "accepted" } else { "rejected" }),
                    }),
                    to: Some(found.ai_id.clone()),
                };
                let accepted = msg.accept.then(|| {
                    (
                        ledger::PlannedChange {
                            file_path: found.file_path.clone(),
                            operation: Operation::Edit,
                            new_path: None,
                            diff: Some(found.diff.clone()),
                            lines: found.lines.clone(),
                            symbols: Vec::new(),
                            reason: found.reason.clone(),
                            task_id: found.task_id,
                        },
                        NewEvent {
                            kind: CHANGE_RECORDED,
                            actor: Some(found.ai_id.clone()),
                            priority: Priority::Routine,
                            payload: json!({
                                "filePath": found.file_path,
                                "operation": "edit",
                                "lines": found.lines,
                                "suggestion": found.id,
                                "coAuthor": resolver,
                            }),
                            to: None,
                        },
                    )
                });
                let note = msg.note.clone();
                let (author, co_author) = (found.ai_id.clone(), resolver.clone());
                act.commit_events(
                    move |c| {
                        let mut events = Vec::new();
                        let mut change_id = None;
                        if let Some((change, event)) = &accepted {
                            let e = queries::append_event(c, id, event, at)?;
                            ledger_store::insert_change(c, id, e.id, &author, co_author.as_deref(), change, at)?;
                            change_id = Some(e.id);
                            events.push(e);
                        }
                        let resolution = store::Resolution {
                            accepted: accepted.is_some(),
                            by: co_author.as_deref(),
                            note: note.as_deref(),
                            change_id,
                            at,
                        };
                        store::resolve(c, id, sid, resolution)?;
                        events.push(queries::append_event(c, id, &resolved, at)?);
                        Ok(events)
                    },
                    move |_, events, _| SuggestionResolved {
                        event_id: events.last().map_or(0, |e| e.id),
                        change_id: events.iter().find(|e| e.kind == CHANGE_RECORDED).map(|e| e.id),
                    },
                )
            });
        AtomicResponse::new(Box::pin(fut))
    }
}

impl Handler<ListSuggestions> for SessionActor {
    type Result = ResponseFuture<Result<Vec<crate::domain::ledger::SuggestionView>, HubError>>;

    fn handle(&mut self, msg: ListSuggestions, _: &mut Self::Context) -> Self::Result {
        let allowed = self
            .session()
            .and_then(|s| Ok(self.authorized(s, &msg.credential)?));
        let (handle, id) = (self.store.clone(), self.id);
        Box::pin(async move {
            allowed?;
            handle
                .read(move |c| store::list(c, id, msg.pending_only, msg.limit))
                .await
        })
    }
}
