//! Keyed commands: a write a hub passed on and runs again, after the hub serving it died
//! answering it, is applied once (docs/multi-hub.md, "A write in flight on a killed owner").
//!
//! A command that arrives with a request key (`Keyed`) is first looked up: a key on record
//! means its write committed before, and it is answered `already_applied` (409) without running
//! again. Otherwise it runs as usual, and the first write it queues records the key in the
//! same transaction (`applied::record`), so the record exists exactly when the write committed.
//!
//! How the write finds the key, whatever turn it is queued in: the key is set on the actor
//! from the moment the command is handled until the actor's wait queue, as the command left
//! it, has drained. Every session command that writes in a later turn does so while it holds
//! the session (`AtomicResponse`, `held`, `hold_then_pipeline`, `after_in_flight`: all
//! `ctx.wait`), and actix polls the futures a handler waits on before any other message or
//! spawned future, last pushed first. So the reset is pushed *before* the command runs: it
//! runs once everything the command waits on is done, and no other command's write can see
//! the key. The command itself runs from the wait queue too (after the lookup, or as a
//! ready future): run from the mailbox handler, its waits would only be merged after actix
//! polled the actor's other items once, and an expired timer's handler (an ack deadline, a
//! presence sweep) would have written with the key set (found by a review, stop 30). A write queued outside that window (a command that spawned its work instead of
//! waiting on it) would not record it; the operations sent again are tested one by one
//! (`tests/api/resend_writes.rs`).

use actix::dev::MessageResponse;
use actix::prelude::*;
use tokio::sync::oneshot;
use uuid::Uuid;

use super::SessionActor;
use crate::api::RequestKey;
use crate::domain::event::Event;
use crate::domain::session::caller_id;
use crate::error::HubError;
use crate::store::applied;
use crate::store::shutting_down;

/// `command`, sent with the key its sender gave it.
pub struct Keyed<M> {
    pub key: RequestKey,
    pub command: M,
    /// The caller's credential (the command's own): an `already_applied` answer carries the
    /// write's events that this caller may see, and none to a caller the session refuses.
    pub credential: crate::domain::auth::Credential,
}

impl<M: Message> Message for Keyed<M> {
    type Result = M::Result;
}

impl<M, R> Handler<Keyed<M>> for SessionActor
where
    M: Message<Result = Result<R, HubError>> + 'static,
    R: 'static,
    SessionActor: Handler<M>,
{
    type Result = ResponseFuture<Result<R, HubError>>;

    fn handle(&mut self, msg: Keyed<M>, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let Keyed {
            key,
            command,
            credential,
        } = msg;
        let answer = Box::pin(async move { rx.await.unwrap_or_else(|_| Err(shutting_down())) });
        if !key.maybe_sent {
            // A hub's first send of its own key: nothing can be on record yet. Run from the wait queue
            // all the same, not from here: actix merges the waits a handler pushes only after
            // it polled the actor's other items once, and an expired timer among them (an ack
            // deadline, a presence sweep) would write with the key set.
            ctx.wait(
                fut::ready(())
                    .map(move |_, act: &mut Self, ctx| act.run_keyed(key.id, command, tx, ctx)),
            );
            return answer;
        }
        // Who may see what the write did: the operator all of it, a participant what it sees
        // of the log; a caller the session refuses, none of it (the command refuses it too).
        let viewer = self
            .session()
            .ok()
            .and_then(|s| self.authorized(s, &credential).ok())
            .map(|caller| caller_id(&caller));
        let (store, session, id) = (self.store.clone(), self.id, key.id);
        // Held: a second send of the key must not run beside the first.
        let lookup = async move {
            store
                .read(move |c| match viewer {
                    Some(viewer) => applied::find_answered(c, id, session, viewer.as_deref()),
                    None => Ok(applied::find(c, id)?.map(applied::Applied::error)),
                })
                .await
        }
        .into_actor(self)
        .map(move |found, act, ctx| match found {
            Err(e) => {
                let _ = tx.send(Err(e));
            }
            Ok(Some(applied)) => {
                let _ = tx.send(Err(applied));
            }
            Ok(None) => act.run_keyed(key.id, command, tx, ctx),
        });
        ctx.wait(lookup);
        answer
    }
}

impl SessionActor {
    /// Runs `command` with `key` set for its writes until what it waits on is done.
    fn run_keyed<M, R>(
        &mut self,
        key: Uuid,
        command: M,
        tx: oneshot::Sender<Result<R, HubError>>,
        ctx: &mut Context<Self>,
    ) where
        M: Message<Result = Result<R, HubError>> + 'static,
        R: 'static,
        SessionActor: Handler<M>,
    {
        // Pushed first, so polled last: see the module comment.
        ctx.wait(fut::ready(()).map(|_, act: &mut Self, _| {
            act.request_key.set(None);
        }));
        self.request_key.set(Some(key));
        let response = <Self as Handler<M>>::handle(self, command, ctx);
        response.handle(ctx, Some(tx));
    }

    /// The key of the command being handled, for its first write to record (later writes of
    /// the same command record nothing: one record says it was applied).
    pub(super) fn take_request_key(&self) -> Option<Uuid> {
        self.request_key.take()
    }
}

/// `write`, recording `key` (if any) in its transaction once it wrote its events.
pub(super) fn recording<W>(
    key: Option<Uuid>,
    session: Uuid,
    write: W,
) -> impl FnOnce(&mut crate::store::DbConn) -> Result<Vec<Event>, HubError> + Send + 'static
where
    W: FnOnce(&mut crate::store::DbConn) -> Result<Vec<Event>, HubError> + Send + 'static,
{
    move |c| {
        let events = write(c)?;
        recorded(c, key, session, events)
    }
}

/// `recording` for a write the store may run again (`Fn`).
pub(super) fn recording_again<W>(
    key: Option<Uuid>,
    session: Uuid,
    write: W,
) -> impl Fn(&mut crate::store::DbConn) -> Result<Vec<Event>, HubError> + Send + 'static
where
    W: Fn(&mut crate::store::DbConn) -> Result<Vec<Event>, HubError> + Send + 'static,
{
    move |c| {
        let events = write(c)?;
        recorded(c, key, session, events)
    }
}

fn recorded(
    c: &mut crate::store::DbConn,
    key: Option<Uuid>,
    session: Uuid,
    events: Vec<Event>,
) -> Result<Vec<Event>, HubError> {
    if let Some(key) = key {
        applied::record(c, key, session, &events)?;
    }
    Ok(events)
}
