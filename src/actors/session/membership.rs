//! The session actor's membership commands: get, join, leave, status, whoami, token reissue.
//! Leaving (and completing the session) also releases locks, through the project's lock table,
//! in the same transaction.

use super::*;
use crate::actors::messages::Select;
use crate::domain::session::caller_id;
use crate::store::applied::{self, Applied};
use std::collections::BTreeMap;

impl Handler<GetSession> for SessionActor {
    type Result = Result<SessionView, HubError>;

    fn handle(&mut self, msg: GetSession, _: &mut Self::Context) -> Self::Result {
        let s = self.session()?;
        self.authorized(s, &msg.credential)?;
        Ok(s.view())
    }
}

impl Handler<JoinSession> for SessionActor {
    type Result = Reply<Joined>;

    fn handle(&mut self, msg: JoinSession, _: &mut Self::Context) -> Self::Result {
        let Some(key) = msg.key.filter(|k| k.maybe_sent) else {
            return AtomicResponse::new(self.join(msg));
        };
        let store = self.store.clone();
        // Held: a second send of the key must not run beside the first.
        let found = async move { store.read(move |c| applied::find(c, key.id)).await };
        AtomicResponse::new(Box::pin(found.into_actor(self).then(
            move |found, act, _| match found {
                Ok(Some(applied)) => act.join_answered_again(msg, applied),
                Ok(None) => act.join(msg),
                Err(e) => Box::pin(fut::ready(Err(e))),
            },
        )))
    }
}

impl SessionActor {
    fn join(&mut self, msg: JoinSession) -> ResponseActFuture<Self, Result<Joined, HubError>> {
        let token = new_token();
        let at = now();
        let planned = self.session().and_then(|s| {
            let caller = self.authorized(s, &msg.credential)?;
            let ai_id = &msg.participant.ai_id;
            if msg.connect_existing
                && caller == Caller::Operator
                && let Ok(existing) = s.active(ai_id)
            {
                // Nothing changes: the operator's MCP session takes this participant's seat.
                return Ok(Err(Joined {
                    session_id: s.id,
                    participant: existing.into(),
                    token: None,
                    session: s.view(),
                    event_id: s.last_event_id,
                    onboarding: None,
                }));
            }
            let joined = s.check_join(&caller, &msg.participant, token_digest(&token), at)?;
            Ok(Ok((joined, caller_id(&caller))))
        });
        let planned = planned.and_then(|p| {
            super::over_time::check_budget(msg.max_tokens)?;
            Ok(p)
        });
        let ((participant, event), by) = match planned {
            Ok(Ok(p)) => p,
            Ok(Err(existing)) => return Box::pin(fut::ready(Ok(existing))),
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let (id, key) = (self.id, msg.key);
        let record = JoinRecord {
            ai_id: participant.ai_id.clone(),
            by,
            digest: participant.token_digest.clone(),
        };
        let mut row = participant.clone();
        let committed = self.commit_events(
            move |c| {
                let event = queries::append_event(c, id, &event, at)?;
                // Its own join is the first event the newcomer knows about.
                row.acked_event_id = event.id;
                queries::upsert_participant(c, id, &row)?;
                let events = vec![event];
                // Whom it made, for whom: sent again, the join answers that participant a new
                // token (`join_answered_again`).
                if let Some(key) = key {
                    let record = serde_json::to_string(&record).unwrap_or_default();
                    applied::record_with(c, key.id, id, &events, Some(&record))?;
                }
                Ok(events)
            },
            move |act, mut events, ctx| {
                let event = events.remove(0);
                let ai_id = participant.ai_id.clone();
                let session = act.session_mut();
                let mut participant = participant;
                participant.acked_event_id = event.id;
                session.apply_join(participant, event.id);
                let view = session.view();
                let participant = session.participants[&ai_id].clone();
                act.start_agent(ai_id);
                // Someone to rotate with, maybe.
                act.schedule_coordination_timers(ctx);
                Joined {
                    session_id: id,
                    participant: (&participant).into(),
                    token: Some(token),
                    session: view,
                    event_id: event.id,
                    onboarding: None,
                }
            },
        );
        with_onboarding(committed, msg.max_tokens)
    }

    /// A join sent again after it was applied, its answer lost with the hub that applied it
    /// (`applied` is its record): the participant it made gets a new token, and the answer is
    /// the join's again. The first token, which nobody received, stops working; nothing else
    /// is written.
    fn join_answered_again(
        &mut self,
        msg: JoinSession,
        applied: Applied,
    ) -> ResponseActFuture<Self, Result<Joined, HubError>> {
        let ai_id = msg.participant.ai_id;
        let joined_at = applied.first_event.unwrap_or_default();
        let record: Option<JoinRecord> = applied
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok());
        let planned = self.session().and_then(|s| {
            let caller = self.authorized(s, &msg.credential)?;
            super::over_time::check_budget(msg.max_tokens)?;
            // The key names a join of this participant, in this session, by this caller; and
            // the token it answered was never used: not replaced since, and nothing acked
            // past the join. Otherwise it is only `already_applied`.
            let first = record.filter(|r| {
                applied.session == s.id
                    && r.ai_id == ai_id
                    && r.by == caller_id(&caller)
                    && s.active(&ai_id)
                        .is_ok_and(|p| p.token_digest == r.digest && p.acked_event_id <= joined_at)
            });
            let Some(mut record) = first else {
                return Err(applied.clone().error());
            };
            let token = new_token();
            record.digest = token_digest(&token);
            Ok((s.check_reissue(&ai_id, &Caller::Operator)?, token, record))
        });
        let (event, token, record) = match planned {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let (id, at, key) = (self.id, now(), msg.key);
        let digest = record.digest.clone();
        let (who, stored) = (ai_id.clone(), digest.clone());
        let committed = self.commit_events(
            move |c| {
                queries::set_token_digest(c, id, &who, &stored)?;
                // Sent again once more, it may answer again (the token it answers now is the
                // one not to have been used).
                if let Some(key) = key {
                    let record = serde_json::to_string(&record).unwrap_or_default();
                    applied::set_detail(c, key.id, &record)?;
                }
                Ok(vec![queries::append_event(c, id, &event, at)?])
            },
            move |act, events, _| {
                let session = act.session_mut();
                session.apply_reissue(&ai_id, digest, at, events[0].id);
                Joined {
                    session_id: id,
                    participant: (&session.participants[&ai_id]).into(),
                    token: Some(token),
                    session: session.view(),
                    event_id: joined_at,
                    onboarding: None,
                }
            },
        );
        with_onboarding(committed, msg.max_tokens)
    }
}

/// What a keyed join records with its key: whom it made, who asked (`None`: the operator), and
/// the digest of the token it answered.
#[derive(serde::Serialize, serde::Deserialize)]
struct JoinRecord {
    ai_id: String,
    by: Option<String>,
    digest: String,
}

/// A committed join, then the newcomer's onboarding: everything since the session began is
/// news to it.
fn with_onboarding(
    committed: ResponseActFuture<SessionActor, Result<Joined, HubError>>,
    max_tokens: Option<usize>,
) -> ResponseActFuture<SessionActor, Result<Joined, HubError>> {
    Box::pin(committed.then(move |joined, act, _| {
        let id = act.id;
        let gathering = joined.as_ref().ok().map(|j| {
            act.gathering(&j.participant.ai_id, Some(0), 0)
                .map(|(g, _)| g)
        });
        async move {
            let mut joined = joined?;
            if let Some(gathering) = gathering {
                // The join is committed: an onboarding that cannot be built is left out,
                // not turned into a failed join.
                match async { gathering?.run().await }.await {
                    Ok(facts) => {
                        joined.onboarding =
                            Some(crate::domain::briefing::onboard(&facts, max_tokens));
                    }
                    Err(e) => log::warn!("session {id}: no onboarding for the newcomer: {e}"),
                }
            }
            Ok(joined)
        }
        .into_actor(act)
    }))
}

impl Handler<LeaveSession> for SessionActor {
    type Result = Reply<SessionView>;

    fn handle(&mut self, msg: LeaveSession, _: &mut Self::Context) -> Self::Result {
        let at = now();
        let planned = self.session().and_then(|s| {
            let caller = self.authorized(s, &msg.credential)?;
            let event = s.check_leave(&msg.ai_id, &caller)?;
            let coordination = s.coordination.after_leave(&msg.ai_id, at);
            Ok((event, coordination))
        });
        let (event, coordination) = match planned {
            Ok(p) => p,
            Err(e) => return reply(Err(e)),
        };
        let (id, ai_id) = (self.id, msg.ai_id);
        let leaving = ai_id.clone();
        let stored_coordination = coordination.clone();
        // What leaving also ends, written in the same transaction: the leaver's locks (waiters
        // move up), and its part in an open handshake.
        AtomicResponse::new(self.commit_with_release(
            Select::Holder(ai_id.clone()),
            None,
            move |c| {
                queries::mark_left(c, id, &leaving, at)?;
                let mut events = vec![queries::append_event(c, id, &event, at)?];
                if let Some((next, announce)) = &stored_coordination {
                    crate::store::ledger::set_coordination(c, id, next)?;
                    if let Some(e) = announce {
                        events.push(queries::append_event(c, id, e, at)?);
                    }
                }
                Ok(events)
            },
            move |act, _, events, ctx| {
                let s = act.session_mut();
                s.apply_leave(&ai_id, at, events[0].id);
                if let Some((next, _)) = coordination {
                    s.coordination = next;
                }
                act.stop_agent(&ai_id);
                act.schedule_coordination_timers(ctx);
                act.session_mut().view()
            },
        ))
    }
}

impl Handler<ChangeStatus> for SessionActor {
    type Result = Reply<SessionView>;

    fn handle(&mut self, msg: ChangeStatus, _: &mut Self::Context) -> Self::Result {
        let planned = self.session().and_then(|s| {
            let caller = self.authorized(s, &msg.credential)?;
            Ok(s.check_status(msg.to, &caller)?)
        });
        let event = match planned {
            Ok(e) => e,
            Err(e) => return reply(Err(e)),
        };
        let (id, at, to) = (self.id, now(), msg.to);
        // A completed session lets go of its locks (with the status change, in one
        // transaction): its project's other sessions must not wait for leases to run out.
        let select = match to {
            SessionStatus::Completed => Select::Session,
            _ => Select::Tasks(Vec::new()),
        };
        // Completing measures the session from its log in the same transaction, so its
        // outcome is as durable as the completion; the evolution actor scores it after.
        let measure = (to == SessionStatus::Completed)
            .then(|| self.session().ok())
            .flatten()
            .map(|s| (s.genome.clone(), s.created_at));
        AtomicResponse::new(self.commit_with_release(
            select,
            None,
            move |c| {
                queries::set_status(c, id, to)?;
                let events = vec![queries::append_event(c, id, &event, at)?];
                if let Some((genome, created)) = &measure {
                    crate::store::evolution::record_outcome(c, id, genome, *created, at)?;
                }
                Ok(events)
            },
            move |act, _, events, ctx| {
                if to == SessionStatus::Completed {
                    act.hub.do_send(crate::actors::messages::ScoreOutcomes);
                }
                act.session_mut().apply_status(to, at, events[0].id);
                // Paused or completed, no rotation is armed; resumed, it is again.
                act.schedule_coordination_timers(ctx);
                act.session_mut().view()
            },
        ))
    }
}

impl Handler<TokensAgain> for SessionActor {
    type Result = Reply<(SessionView, BTreeMap<String, String>)>;

    fn handle(&mut self, msg: TokensAgain, _: &mut Self::Context) -> Self::Result {
        let planned = self.session().map(|s| {
            // Those who left since have no seat to take: no token for them.
            msg.ai_ids
                .iter()
                .filter_map(|ai_id| {
                    let event = s.check_reissue(ai_id, &Caller::Operator).ok()?;
                    Some((ai_id.clone(), new_token(), event))
                })
                .collect::<Vec<_>>()
        });
        let reissued = match planned {
            Ok(r) => r,
            Err(e) => return reply(Err(e)),
        };
        let (id, at) = (self.id, now());
        let stored: Vec<_> = reissued
            .iter()
            .map(|(ai_id, token, event)| (ai_id.clone(), token_digest(token), event.clone()))
            .collect();
        AtomicResponse::new(self.commit_events(
            move |c| {
                let mut events = Vec::with_capacity(stored.len());
                for (ai_id, digest, event) in &stored {
                    queries::set_token_digest(c, id, ai_id, digest)?;
                    events.push(queries::append_event(c, id, event, at)?);
                }
                Ok(events)
            },
            move |act, events, _| {
                let session = act.session_mut();
                let mut tokens = BTreeMap::new();
                for ((ai_id, token, _), event) in reissued.into_iter().zip(&events) {
                    session.apply_reissue(&ai_id, token_digest(&token), at, event.id);
                    tokens.insert(ai_id, token);
                }
                (session.view(), tokens)
            },
        ))
    }
}

impl Handler<Whoami> for SessionActor {
    type Result = Result<WhoamiView, HubError>;

    fn handle(&mut self, msg: Whoami, _: &mut Self::Context) -> Self::Result {
        let s = self.session()?;
        let ai_id = participant_of(self.authorized(s, &msg.credential)?)?;
        Ok(WhoamiView::new(s, s.active(&ai_id)?))
    }
}

impl Handler<ReissueToken> for SessionActor {
    type Result = Reply<String>;

    fn handle(&mut self, msg: ReissueToken, _: &mut Self::Context) -> Self::Result {
        let planned = self.session().and_then(|s| {
            let caller = self.authorized(s, &msg.credential)?;
            Ok(s.check_reissue(&msg.ai_id, &caller)?)
        });
        let event = match planned {
            Ok(e) => e,
            Err(e) => return reply(Err(e)),
        };
        let (id, at, ai_id, token) = (self.id, now(), msg.ai_id, new_token());
        let digest = token_digest(&token);
        let (who, stored) = (ai_id.clone(), digest.clone());
        self.commit(
            move |c| {
                queries::set_token_digest(c, id, &who, &stored)?;
                queries::append_event(c, id, &event, at)
            },
            move |act, event| {
                act.session_mut()
                    .apply_reissue(&ai_id, digest, at, event.id);
                token
            },
        )
    }
}
