//! The session actor's membership commands: get, join, leave, status, whoami, token reissue.
//! Leaving (and completing the session) also releases locks, through the project's lock table,
//! in the same transaction.

use super::*;
use crate::actors::messages::Select;

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
            Ok(Ok(s.check_join(
                &caller,
                &msg.participant,
                token_digest(&token),
                at,
            )?))
        });
        let planned = planned.and_then(|p| {
            super::over_time::check_budget(msg.max_tokens)?;
            Ok(p)
        });
        let (participant, event) = match planned {
            Ok(Ok(p)) => p,
            Ok(Err(existing)) => return reply(Ok(existing)),
            Err(e) => return reply(Err(e)),
        };
        let (id, max_tokens) = (self.id, msg.max_tokens);
        let mut row = participant.clone();
        let committed = self.commit_events(
            move |c| {
                let event = queries::append_event(c, id, &event, at)?;
                // Its own join is the first event the newcomer knows about.
                row.acked_event_id = event.id;
                queries::upsert_participant(c, id, &row)?;
                Ok(vec![event])
            },
            move |act, mut events, _| {
                let event = events.remove(0);
                let ai_id = participant.ai_id.clone();
                let session = act.session_mut();
                let mut participant = participant;
                participant.acked_event_id = event.id;
                session.apply_join(participant, event.id);
                let view = session.view();
                let participant = session.participants[&ai_id].clone();
                act.start_agent(ai_id);
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
        // Then the newcomer's onboarding: everything since the session began is news to it.
        let onboarded = committed.then(move |joined, act, _| {
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
        });
        AtomicResponse::new(Box::pin(onboarded))
    }
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
            move |act, _, events, _| {
                if to == SessionStatus::Completed {
                    act.hub.do_send(crate::actors::messages::ScoreOutcomes);
                }
                let session = act.session_mut();
                session.apply_status(to, at, events[0].id);
                session.view()
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
