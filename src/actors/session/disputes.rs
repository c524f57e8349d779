//! The session actor's disputes: the domain plans (who may, what is announced, whether a vote
//! made a majority), then one commit writes the events with the open disputes in the
//! coordination column, so an open dispute survives a restart and a settled one is exactly
//! its `dispute_resolved` event.

use actix::prelude::*;

use super::{Reply, SessionActor, reply};
use crate::actors::messages::{
    DisputeRaised, DisputeSettled, ListDisputes, RaiseDispute, ResolveDispute, VoteDispute,
};
use crate::domain::auth::Caller;
use crate::domain::dispute::{Dispute, Planned};
use crate::domain::event::Event;
use crate::domain::now;
use crate::error::HubError;
use crate::store::{ledger as ledger_store, queries};

impl SessionActor {
    /// Writes a dispute plan's events and the coordination state with its open disputes in one
    /// transaction, then applies the same state in memory.
    fn commit_disputes<T: 'static>(
        &mut self,
        planned: Result<Planned, HubError>,
        answer: impl FnOnce(&Planned, &[Event]) -> T + 'static,
    ) -> Reply<T> {
        let planned = match planned {
            Ok(p) => p,
            Err(e) => return reply(Err(e)),
        };
        let mut next = match self.session() {
            Ok(s) => s.coordination.clone(),
            Err(e) => return reply(Err(e)),
        };
        next.disputes = planned.next.clone();
        let (id, at) = (self.id, now());
        let events = planned.events.clone();
        AtomicResponse::new(self.commit_events(
            move |c| {
                let mut written = Vec::with_capacity(events.len());
                for e in &events {
                    written.push(queries::append_event(c, id, e, at)?);
                }
                ledger_store::set_coordination(c, id, &next)?;
                Ok(written)
            },
            move |act, events, _| {
                act.session_mut().coordination.disputes = planned.next.clone();
                answer(&planned, &events)
            },
        ))
    }

    fn caller_for_dispute(
        &self,
        credential: &crate::domain::auth::Credential,
        named: Option<&str>,
    ) -> Result<(Caller, &crate::domain::session::Session), HubError> {
        let caller = self.caller_as(credential, named)?;
        Ok((caller, self.session()?))
    }
}

impl Handler<RaiseDispute> for SessionActor {
    type Result = Reply<DisputeRaised>;

    fn handle(&mut self, msg: RaiseDispute, _: &mut Self::Context) -> Self::Result {
        let planned = self
            .caller_for_dispute(&msg.credential, msg.as_participant.as_deref())
            .and_then(|(caller, s)| {
                let planned = s.plan_dispute_raise(&caller, msg.raise)?;
                let rule = s.genome.genome.resolver();
                Ok((planned, rule, s.dispute_settlers(rule)))
            });
        let (planned, rule, settlers) = match planned {
            Ok(p) => p,
            Err(e) => return reply(Err(e)),
        };
        self.commit_disputes(Ok(planned), move |p, events| DisputeRaised {
            dispute_id: p.dispute_id,
            event_id: events[0].id,
            settled_by: rule,
            settlers,
        })
    }
}

fn settled(p: &Planned, events: &[Event]) -> DisputeSettled {
    DisputeSettled {
        dispute_id: p.dispute_id,
        event_id: events.last().map_or(0, |e| e.id),
        outcome: p.outcome,
        votes: p.votes.clone(),
        needed: p.needed,
    }
}

impl Handler<ResolveDispute> for SessionActor {
    type Result = Reply<DisputeSettled>;

    fn handle(&mut self, msg: ResolveDispute, _: &mut Self::Context) -> Self::Result {
        let planned = self
            .caller_for_dispute(&msg.credential, msg.as_participant.as_deref())
            .and_then(|(caller, s)| {
                Ok(s.plan_dispute_resolve(&caller, msg.dispute_id, msg.outcome, msg.note)?)
            });
        self.commit_disputes(planned, settled)
    }
}

impl Handler<VoteDispute> for SessionActor {
    type Result = Reply<DisputeSettled>;

    fn handle(&mut self, msg: VoteDispute, _: &mut Self::Context) -> Self::Result {
        let planned = self
            .caller_for_dispute(&msg.credential, msg.as_participant.as_deref())
            .and_then(|(caller, s)| Ok(s.plan_dispute_vote(&caller, msg.dispute_id, msg.vote)?));
        self.commit_disputes(planned, settled)
    }
}

impl Handler<ListDisputes> for SessionActor {
    type Result = Result<Vec<Dispute>, HubError>;

    /// In memory: the open set is small and bounded (`dispute::MAX_OPEN`).
    fn handle(&mut self, msg: ListDisputes, _: &mut Self::Context) -> Self::Result {
        let s = self.session()?;
        self.authorized(s, &msg.credential)?;
        Ok(s.coordination.disputes.open.clone())
    }
}
