//! Pipelined commands: one session's writes group-commit too.
//!
//! A command that goes through `commit_events` holds the session from its checks to its commit
//! (`AtomicResponse`), so one session commits one command per round trip to the store however
//! many clients share it. A *pipelined* command holds it only for its checks: it queues its
//! write on the session's store writer at once and lets the next command in; its reply waits.
//!
//! Why the order holds:
//! - A session's writes all go to one writer thread, which commits them in queue order and
//!   answers them in that order; `in_flight` keeps the same order, and an outcome is applied
//!   (state, reply, fan-out) only once every earlier one was. Replies therefore leave strictly
//!   after their commit, in commit order, and agents see event ids in order.
//! - A held command (`commit_events`) queues its write behind every pipelined one, so when its
//!   own outcome arrives theirs are there too: it applies them first (`drain_in_flight`).
//! - What may be pipelined: a command whose checks cannot be changed by the effects of another
//!   command still in flight. Its checks then hold against "the applied state plus the writes
//!   in flight", as the commit-one-at-a-time path would have it. Nothing is applied before its
//!   commit, so a failed commit leaves nothing to undo: its caller gets the error, later
//!   writes stand on their own (each write has its own savepoint).
//! - Context writes change what later context writes check, but only at their paths: a context
//!   write is pipelined beside the ones in flight when its paths are apart from theirs
//!   (`domain::context_in_flight`), and otherwise planned again once they are applied
//!   (`after_in_flight`). So is any command that must see every write in flight: a batch plans
//!   its events' ids from the session's last one (before, a batch amid pipelined sends failed
//!   with "batch planned event 8, the log gave 14"), and a snapshot stands at the last event.

use std::collections::VecDeque;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{SessionActor, keyed};
use crate::domain::event::Event;
use crate::error::HubError;
use crate::store::event_writes::EventWrite;
use crate::store::{DbConn, Submitted, shutting_down};

type Outcome = Result<Vec<Event>, HubError>;
type Apply = Box<dyn FnOnce(&mut SessionActor, Outcome, &mut Context<SessionActor>)>;

/// Writes queued to the store and not applied yet, oldest first.
#[derive(Default)]
pub(super) struct InFlight(VecDeque<(oneshot::Receiver<Outcome>, Apply)>);

impl InFlight {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl SessionActor {
    /// Answers once `submitted` (a write queued behind this session's earlier ones, by
    /// `Store::submit_for` or `submit_event_write`) committed and `apply` ran, in queue order. The
    /// caller has run the command's checks; see the module comment for which commands may come
    /// this way.
    pub(super) fn pipelined<T, A>(
        &mut self,
        ctx: &mut Context<Self>,
        submitted: Submitted<Vec<Event>>,
        apply: A,
    ) -> ResponseFuture<Result<T, HubError>>
    where
        T: 'static,
        A: FnOnce(&mut SessionActor, Outcome, &mut Context<Self>) -> Result<T, HubError> + 'static,
    {
        let Submitted {
            outcome,
            ready,
            queue_full,
        } = submitted;
        if let Some(queued) = queue_full {
            // Backpressure, and nothing else of this session may queue before it.
            ctx.wait(fut::wrap_future(queued));
        }
        let (reply, replied) = oneshot::channel();
        let apply: Apply = Box::new(move |act, outcome, ctx| {
            let _ = reply.send(apply(act, outcome, ctx));
        });
        self.in_flight.0.push_back((outcome, apply));
        ctx.spawn(fut::wrap_future(ready).map(|_, act: &mut Self, ctx| act.drain_in_flight(ctx)));
        answer(replied)
    }

    /// Queues `write` behind this session's earlier writes, for `pipelined`.
    pub(super) fn submit<W>(&self, write: W) -> Submitted<Vec<Event>>
    where
        // `Fn`: the store may run it again (`store::Rerunnable`).
        W: Fn(&mut DbConn) -> Outcome + Send + 'static,
    {
        let key = self.take_request_key();
        self.store
            .submit_for(self.id, keyed::recording_again(key, self.id, write))
    }

    /// Queues a write kept as data (which a PostgreSQL batch may combine with its neighbours)
    /// behind this session's earlier writes, for `pipelined`. A keyed command's records its key
    /// with it.
    pub(super) fn submit_event(&self, write: EventWrite) -> Submitted<Vec<Event>> {
        self.store
            .submit_event_write(match self.take_request_key() {
                None => write,
                Some(key) => EventWrite::Keyed(Box::new(write), key),
            })
    }

    /// `pipelined`'s signature, but holding the session until the commit is applied, as
    /// `commit_events` does: for a command whose effects later commands' checks must see.
    pub(super) fn held<T, W, A>(
        &mut self,
        ctx: &mut Context<Self>,
        write: W,
        apply: A,
    ) -> ResponseFuture<Result<T, HubError>>
    where
        T: 'static,
        W: FnOnce(&mut DbConn) -> Outcome + Send + 'static,
        A: FnOnce(&mut SessionActor, Outcome, &mut Context<Self>) -> Result<T, HubError> + 'static,
    {
        let (reply, replied) = oneshot::channel();
        let (store, id) = (self.store.clone(), self.id);
        let write = keyed::recording(self.take_request_key(), id, write);
        let committed = async move { store.write_for(id, write).await }
            .into_actor(self)
            .map(move |outcome, act, ctx| {
                act.drain_in_flight(ctx);
                let _ = reply.send(apply(act, outcome, ctx));
            });
        ctx.wait(committed);
        answer(replied)
    }

    /// Runs `command` once every write queued before now is applied, holding the session from
    /// now on (the caller waits on the result, as `AtomicResponse` does): for a command whose
    /// checks must see the effects of the writes in flight (a batch, which plans its events'
    /// ids; a snapshot; a context write beside an overlapping one). It queues an empty write
    /// behind them: the writer answers in queue order, so once its outcome is in, theirs are.
    pub(super) fn after_in_flight<O: 'static>(
        &mut self,
        command: impl FnOnce(&mut SessionActor, &mut Context<Self>) -> ResponseActFuture<Self, O>
        + 'static,
    ) -> ResponseActFuture<Self, O> {
        if self.in_flight.0.is_empty() {
            return Box::pin(fut::ready(()).then(move |_, act, ctx| command(act, ctx)));
        }
        let Submitted {
            outcome,
            queue_full,
            ..
        } = self.store.submit_for(self.id, |_| Ok(Vec::<Event>::new()));
        let behind = async move {
            if let Some(queued) = queue_full {
                queued.await;
            }
            // Its own outcome does not matter (a failed batch fails theirs too): only when.
            let _ = outcome.await;
        };
        Box::pin(behind.into_actor(self).then(move |_, act, ctx| {
            act.drain_in_flight(ctx);
            command(act, ctx)
        }))
    }

    /// Applies, oldest first, every queued write whose outcome is in; stops at the first that
    /// is still out.
    pub(super) fn drain_in_flight(&mut self, ctx: &mut Context<Self>) {
        while let Some((outcome, _)) = self.in_flight.0.front_mut() {
            let outcome = match outcome.try_recv() {
                Ok(o) => o,
                Err(oneshot::error::TryRecvError::Closed) => Err(shutting_down()),
                Err(oneshot::error::TryRecvError::Empty) => return,
            };
            let (_, apply) = self.in_flight.0.pop_front().expect("front exists");
            apply(self, outcome, ctx);
        }
    }

    /// `pipelined` for a command that commits events and answers from them, as
    /// `commit_events` does: the events enter the state and fan out before `apply` answers.
    pub(super) fn pipelined_events<T, A>(
        &mut self,
        ctx: &mut Context<Self>,
        submitted: Submitted<Vec<Event>>,
        apply: A,
    ) -> ResponseFuture<Result<T, HubError>>
    where
        T: 'static,
        A: FnOnce(&mut SessionActor, Vec<Event>, &mut Context<Self>) -> T + 'static,
    {
        self.pipelined(ctx, submitted, move |act, outcome, ctx| {
            Ok(act.applied(outcome?, ctx, apply))
        })
    }

    /// Runs `step` (a lookup before the checks, say) holding the session, as a held command
    /// would, then lets the pipelined command it yields answer.
    pub(super) fn hold_then_pipeline<T: 'static>(
        &mut self,
        ctx: &mut Context<Self>,
        step: impl ActorFuture<Self, Output = ResponseFuture<Result<T, HubError>>> + 'static,
    ) -> ResponseFuture<Result<T, HubError>> {
        let (tx, rx) = oneshot::channel();
        ctx.wait(step.map(move |answer, _, _| {
            let _ = tx.send(answer);
        }));
        Box::pin(async move {
            match rx.await {
                Ok(answer) => answer.await,
                Err(_) => Err(shutting_down()),
            }
        })
    }
}

/// The reply a command waits for; a dropped sender (the actor stopped) answers `Unavailable`.
fn answer<T: 'static>(
    replied: oneshot::Receiver<Result<T, HubError>>,
) -> ResponseFuture<Result<T, HubError>> {
    Box::pin(async move { replied.await.unwrap_or_else(|_| Err(shutting_down())) })
}
