//! The session actor's messaging side: messages (send, read, acknowledge, ack deadlines) and
//! checkpoints (begin, end, end by overrun). Same pattern as the rest of the actor: check with
//! the domain rules, commit, apply, fan out.

use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{Reply, SessionActor, participant_of, reply};
use crate::actors::agent::SetHold;
use crate::actors::messages::{
    AckMessages, BeginCheckpoint, CheckpointView, EndCheckpoint, MessageSent, MessagesAcked,
    ReadMessages, SendMessage,
};
use crate::domain::auth::Caller;
use crate::domain::checkpoint::EndReason;
use crate::domain::message::{self, RateLimit};
use crate::domain::now;
use crate::error::HubError;
use crate::store::event_writes::EventWrite;
use crate::store::{applied, messages, queries};

/// Internal: the ack deadline of message `0` has come.
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub(super) struct AckDeadline(pub(super) i64);

/// Internal: `ai_id`'s checkpoint begun at event `begun_event` may have overrun.
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub(super) struct CheckpointOverrun {
    ai_id: String,
    begun_event: i64,
}

/// Time from now until `at` (zero if it has passed).
pub(super) fn until(at: chrono::NaiveDateTime) -> Duration {
    (at - now()).to_std().unwrap_or(Duration::ZERO)
}

impl SessionActor {
    /// After a load: the deadlines and checkpoints that were running before the restart.
    pub(super) fn schedule_loaded_timers(&mut self, ctx: &mut Context<Self>) {
        let Ok(s) = self.session() else { return };
        let deadlines: Vec<_> = s.pending_acks.iter().map(|p| (p.id, p.deadline)).collect();
        let checkpoints: Vec<_> = s
            .active_participants()
            .filter_map(|p| p.checkpoint.as_ref().map(|c| (p.ai_id.clone(), c.clone())))
            .collect();
        for (id, deadline) in deadlines {
            ctx.notify_later(AckDeadline(id), until(deadline));
        }
        for (ai_id, cp) in checkpoints {
            let begun_event = cp.begun_event;
            ctx.notify_later(
                CheckpointOverrun { ai_id, begun_event },
                until(cp.overrun_at()),
            );
        }
    }

    pub(super) fn set_hold(&self, ai_id: &str, held: bool) {
        if let Some(slot) = self.agents.get(ai_id) {
            // A full mailbox must not lose the hold change: the agent is ours, so wait for room.
            if slot.addr.try_send(SetHold(held)).is_err() {
                slot.addr.do_send(SetHold(held));
            }
        }
    }

    /// Takes `n` sends from `from`'s budget at once, or none.
    pub(super) fn take_sends(&mut self, from: &str, n: usize) -> Result<(), HubError> {
        let rate = self.policy.send_rate;
        let bucket = self
            .send_limits
            .entry(from.to_owned())
            .or_insert_with(|| RateLimit::new(rate.burst, rate.per_sec, Instant::now()));
        for taken in 0..n {
            if let Err(wait) = bucket.take(Instant::now()) {
                (0..taken).for_each(|_| bucket.refund());
                return Err(HubError::RateLimited {
                    message: format!(
                        "{from} is sending faster than {} messages/s (bursts of {}){}; retry in {} ms",
                        rate.per_sec,
                        rate.burst,
                        if n > 1 {
                            format!("; this batch holds {n}")
                        } else {
                            String::new()
                        },
                        wait.as_millis().max(1)
                    ),
                    retry_after_secs: wait.as_secs() + 1,
                });
            }
        }
        Ok(())
    }

    /// The participant a caller acts as, when only a participant can do this.
    pub(super) fn acting_participant(
        &self,
        credential: &crate::domain::auth::Credential,
        named: Option<&str>,
    ) -> Result<String, HubError> {
        participant_of(self.caller_as(credential, named)?)
    }
}

/// Pipelined (`pipeline.rs`): a send's checks read the membership and the session's status,
/// which only held commands change, so sends of one session group-commit.
impl Handler<SendMessage> for SessionActor {
    type Result = ResponseFuture<Result<MessageSent, HubError>>;

    fn handle(&mut self, msg: SendMessage, ctx: &mut Self::Context) -> Self::Result {
        let from = match self.acting_participant(&msg.credential, msg.as_participant.as_deref()) {
            Ok(f) => f,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        if let Err(e) = self.take_sends(&from, 1) {
            return Box::pin(std::future::ready(Err(e)));
        }
        let spec = msg.spec;
        match spec.reply_to {
            None => self.send_checked(ctx, from, spec, None),
            // The parent's lookup holds the session, as the checks do.
            Some(p) => {
                let (store, id) = (self.store.clone(), self.id);
                let lookup =
                    async move { store.read(move |c| messages::find_parent(c, id, p)).await }
                        .into_actor(self)
                        .map(move |parent, act, ctx| match parent {
                            Ok(parent) => act.send_checked(ctx, from, spec, parent),
                            Err(e) => {
                                act.refund_send(&from);
                                Box::pin(std::future::ready(Err(e))) as ResponseFuture<_>
                            }
                        });
                self.hold_then_pipeline(ctx, lookup)
            }
        }
    }
}

impl SessionActor {
    /// A refused send does not count against the sender's budget.
    fn refund_send(&mut self, from: &str) {
        if let Some(b) = self.send_limits.get_mut(from) {
            b.refund();
        }
    }

    /// Checks a send against the session and queues its write.
    fn send_checked(
        &mut self,
        ctx: &mut Context<Self>,
        from: String,
        spec: crate::domain::message::MessageSpec,
        parent: Option<crate::domain::message::Parent>,
    ) -> ResponseFuture<Result<MessageSent, HubError>> {
        let at = now();
        let caller = Caller::Participant(from.clone());
        let planned = match self
            .session()
            .and_then(|s| Ok(s.check_send(&caller, spec, parent, at)?))
        {
            Ok(p) => p,
            Err(e) => {
                self.refund_send(&from);
                return Box::pin(std::future::ready(Err(e)));
            }
        };
        let write = self.submit_event(EventWrite::Send(messages::SendWrite {
            session_id: self.id,
            message: planned.clone(),
            at,
        }));
        self.pipelined_events(ctx, write, move |act, events, ctx| {
            let event_id = events[0].id;
            act.session_mut().apply_send(&planned, event_id);
            if let Some(deadline) = planned.ack_deadline {
                ctx.notify_later(AckDeadline(event_id), until(deadline));
            }
            MessageSent {
                id: event_id,
                thread: planned.thread.unwrap_or(event_id),
                ack_deadline: planned.ack_deadline.map(|d| d.and_utc()),
            }
        })
    }
}

impl Handler<ReadMessages> for SessionActor {
    type Result = ResponseFuture<Result<crate::domain::message::MessagePage, HubError>>;

    fn handle(&mut self, msg: ReadMessages, _: &mut Self::Context) -> Self::Result {
        let viewer = self
            .caller_as(&msg.credential, msg.as_participant.as_deref())
            .map(|caller| match caller {
                Caller::Participant(id) => Some(id),
                Caller::Operator => None,
            });
        let (store, id) = (self.store.clone(), self.id);
        let mut query = msg.query;
        let key = msg.key;
        Box::pin(async move {
            query.viewer = viewer?;
            let viewer = query.viewer.clone();
            // Sent again: the page it answered the first time, if that read marked any (one
            // trip to the store: the key, and the page it kept).
            if let Some(key) = key.filter(|k| k.maybe_sent) {
                let reader = viewer.clone();
                let replayed = store
                    .read(move |c| {
                        let Some(applied) = applied::find(c, key.id)? else {
                            return Ok(None);
                        };
                        let replay: messages::Replay = applied
                            .detail
                            .as_deref()
                            .and_then(|d| serde_json::from_str(d).ok())
                            .ok_or_else(|| applied.clone().error())?;
                        messages::replay(c, id, reader.as_deref(), &replay).map(Some)
                    })
                    .await?;
                if let Some(page) = replayed {
                    return Ok(page);
                }
            }
            let page = store
                .read(move |c| messages::read_messages(c, id, &query))
                .await?;
            // Receipts: what this read handed to its recipient counts as read.
            if let Some(me) = viewer {
                let newly_read: Vec<i64> = page
                    .messages
                    .iter()
                    .filter(|m| m.read == Some(false))
                    .map(|m| m.id)
                    .collect();
                if !newly_read.is_empty() {
                    let at = now();
                    // With its page, should the answer be lost (`applied::record_with`).
                    let kept = key.map(|k| {
                        let replay = messages::Replay::of(&page, &newly_read);
                        (k.id, serde_json::to_string(&replay).unwrap_or_default())
                    });
                    store
                        .write_for(id, move |c| {
                            messages::stamp_receipts(c, id, &me, &newly_read, false, at)?;
                            match &kept {
                                Some((key, replay)) => {
                                    applied::record_with(c, *key, id, &[], Some(replay))
                                }
                                None => Ok(()),
                            }
                        })
                        .await?;
                }
            }
            Ok(page)
        })
    }
}

impl Handler<AckMessages> for SessionActor {
    type Result = Reply<MessagesAcked>;

    fn handle(&mut self, msg: AckMessages, _: &mut Self::Context) -> Self::Result {
        let by = match self.acting_participant(&msg.credential, msg.as_participant.as_deref()) {
            Ok(b) => b,
            Err(e) => return reply(Err(e)),
        };
        let (store, id) = (self.store.clone(), self.id);
        let selection = msg.selection;
        let (reader, lookup) = (by.clone(), selection.clone());
        let fut = async move {
            store
                .read(move |c| messages::ack_targets(c, id, &reader, &lookup))
                .await
        }
        .into_actor(self)
        .then(move |found, act, _| {
            let plan = found.and_then(|found| Ok(message::plan_ack(&by, &selection, &found)?));
            let plan = match plan {
                Ok(p) if !p.newly_acked.is_empty() => p,
                Ok(_) => {
                    return Box::pin(fut::ready(Ok(MessagesAcked { acked: Vec::new() })))
                        as ResponseActFuture<Self, _>;
                }
                Err(e) => return Box::pin(fut::ready(Err(e))),
            };
            let at = now();
            let (who, stored) = (by.clone(), plan.clone());
            act.commit_events(
                move |c| {
                    messages::stamp_receipts(c, id, &who, &stored.newly_acked, true, at)?;
                    stored
                        .notify
                        .iter()
                        .map(|(sender, ids)| {
                            queries::append_event(
                                c,
                                id,
                                &message::acked_event(&who, sender, ids),
                                at,
                            )
                        })
                        .collect()
                },
                move |act, _, _| {
                    act.session_mut().apply_message_acks(&by, &plan.newly_acked);
                    MessagesAcked {
                        acked: plan.newly_acked,
                    }
                },
            )
        });
        AtomicResponse::new(Box::pin(fut))
    }
}

impl Handler<AckDeadline> for SessionActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: AckDeadline, _: &mut Self::Context) -> Self::Result {
        let Ok(s) = self.session() else {
            return reply(Ok(()));
        };
        let Some(pending) = s.pending_acks.due(msg.0, now()).cloned() else {
            return reply(Ok(())); // acknowledged by everyone meanwhile
        };
        let (id, at, event) = (self.id, now(), pending.overdue_event());
        self.commit(
            move |c| {
                messages::mark_overdue_alerted(c, id, pending.id)?;
                queries::append_event(c, id, &event, at)
            },
            move |act, _| {
                act.session_mut().pending_acks.remove(msg.0);
            },
        )
    }
}

impl Handler<BeginCheckpoint> for SessionActor {
    type Result = Reply<CheckpointView>;

    fn handle(&mut self, msg: BeginCheckpoint, _: &mut Self::Context) -> Self::Result {
        let at = now();
        let planned = self
            .acting_participant(&msg.credential, msg.as_participant.as_deref())
            .and_then(|ai_id| {
                let s = self.session()?;
                let caller = Caller::Participant(ai_id.clone());
                let (cp, event) = s.check_checkpoint_begin(
                    &caller,
                    &msg.task,
                    msg.estimated_secs,
                    msg.interruptible,
                    at,
                )?;
                Ok((ai_id, cp, event))
            });
        let (ai_id, checkpoint, event) = match planned {
            Ok(p) => p,
            Err(e) => return reply(Err(e)),
        };
        let id = self.id;
        let who = ai_id.clone();
        let stored = checkpoint.clone();
        let fut = self.commit_events(
            move |c| {
                let event = queries::append_event(c, id, &event, at)?;
                let stored = crate::domain::checkpoint::Checkpoint {
                    begun_event: event.id,
                    ..stored
                };
                queries::set_checkpoint(c, id, &who, Some(&stored))?;
                Ok(vec![event])
            },
            move |act, events, ctx| {
                let begun_event = events[0].id;
                let cp = crate::domain::checkpoint::Checkpoint {
                    begun_event,
                    ..checkpoint
                };
                let (holding, ends_by) = (cp.holds(), cp.overrun_at());
                let task = cp.task.clone();
                act.session_mut()
                    .apply_checkpoint(&ai_id, Some(cp), begun_event);
                if holding {
                    act.set_hold(&ai_id, true);
                }
                ctx.notify_later(CheckpointOverrun { ai_id, begun_event }, until(ends_by));
                CheckpointView {
                    event_id: begun_event,
                    task: Some(task),
                    holding,
                    ends_by: Some(ends_by.and_utc()),
                }
            },
        );
        AtomicResponse::new(fut)
    }
}

impl SessionActor {
    fn end_checkpoint(
        &mut self,
        ai_id: String,
        reason: EndReason,
    ) -> ResponseActFuture<Self, Result<CheckpointView, HubError>> {
        let at = now();
        let event = match self
            .session()
            .and_then(|s| Ok(s.check_checkpoint_end(&ai_id, reason, at)?))
        {
            Ok(e) => e,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let id = self.id;
        let who = ai_id.clone();
        self.commit_events(
            move |c| {
                queries::set_checkpoint(c, id, &who, None)?;
                Ok(vec![queries::append_event(c, id, &event, at)?])
            },
            move |act, events, _| {
                let event_id = events[0].id;
                act.session_mut().apply_checkpoint(&ai_id, None, event_id);
                act.set_hold(&ai_id, false);
                CheckpointView {
                    event_id,
                    task: None,
                    holding: false,
                    ends_by: None,
                }
            },
        )
    }
}

impl Handler<EndCheckpoint> for SessionActor {
    type Result = Reply<CheckpointView>;

    fn handle(&mut self, msg: EndCheckpoint, _: &mut Self::Context) -> Self::Result {
        match self.acting_participant(&msg.credential, msg.as_participant.as_deref()) {
            Ok(ai_id) => AtomicResponse::new(self.end_checkpoint(ai_id, EndReason::Done)),
            Err(e) => reply(Err(e)),
        }
    }
}

impl Handler<CheckpointOverrun> for SessionActor {
    type Result = Reply<()>;

    fn handle(&mut self, msg: CheckpointOverrun, _: &mut Self::Context) -> Self::Result {
        let still_open = self.session().is_ok_and(|s| {
            s.participants
                .get(&msg.ai_id)
                .and_then(|p| p.checkpoint.as_ref())
                .is_some_and(|c| c.begun_event == msg.begun_event)
        });
        if !still_open {
            return reply(Ok(()));
        }
        let ended = self.end_checkpoint(msg.ai_id, EndReason::Overran);
        AtomicResponse::new(Box::pin(ended.map(|r, _, _| r.map(|_| ()))))
    }
}
