//! The tools whose behaviour belongs to MCP itself: taking on an identity (create, join,
//! leave bind and unbind this MCP session), and reading the event cursor (`whoami`,
//! `events_poll` with its long poll and progress notifications, `events_ack`). Everything else
//! is a generic adapter over an `api` operation.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{NoArgs, ToolCtx, ToolOutput, args, call_of, in_session, not_bound, plain, value};
use crate::actors::hub::{FindApplied, WatchRetired};
use crate::actors::messages::{AckEvents, AttachStream, GetSession, Joined, PollEvents, Whoami};
use crate::api::{self, Operation};
use crate::domain::auth::{Credential, token_digest};
use crate::error::HubError;
use crate::mcp::registry::{Binding, ReleaseBind, ReserveBind, WhenClosing};

/// `session_create`: the operation, then this MCP session acts as `me`. Tokens never go into a
/// tool result (they would sit in the model's transcript); the others get theirs via REST or
/// the CLI.
pub(super) async fn session_create(ctx: ToolCtx, raw: Value) -> Result<ToolOutput, HubError> {
    binding(ctx, raw, Makes::Session, create).await
}

/// What a binding tool makes: a session (create) or a seat in one (join).
#[derive(Clone, Copy)]
enum Makes {
    Session,
    Seat,
}

/// Runs a create or join that will bind this MCP session, holding the registry's reservation
/// so that a second one at once is refused; the reservation ends with the bind or the failure.
async fn binding<F>(
    ctx: ToolCtx,
    raw: Value,
    makes: Makes,
    run: fn(ToolCtx, Value) -> F,
) -> Result<ToolOutput, HubError>
where
    F: std::future::Future<Output = Result<ToolOutput, HubError>>,
{
    if let Some(answered) = bound_by_this_request(&ctx, makes).await? {
        return Ok(answered);
    }
    not_bound(&ctx)?;
    let (registry, id) = (ctx.registry.clone(), ctx.mcp_id.clone());
    registry.send(ReserveBind(id.clone())).await??;
    // Released on failure, and when a cancelled call drops this future half way.
    let mut reservation = Reservation {
        registry,
        id,
        held: true,
    };
    let outcome = run(ctx, raw).await;
    if outcome.as_ref().is_ok_and(|o| o.bind.is_some()) {
        reservation.held = false; // the Bind that follows ends it
    }
    outcome
}

/// A create or join run again by the hub that passed it on (the hub serving it died before
/// answering) whose first send
/// was applied and bound this very MCP session (the binding is stored before the answer): it
/// is answered with what it did, not `already_bound`. A join's answer as the first had it, but
/// without the onboarding; a create's, the session.
async fn bound_by_this_request(
    ctx: &ToolCtx,
    makes: Makes,
) -> Result<Option<ToolOutput>, HubError> {
    let (Some(seat), Some(key)) = (
        &ctx.session.binding,
        ctx.request_key.filter(|k| k.maybe_sent),
    ) else {
        return Ok(None);
    };
    let found = ctx.hub.send(FindApplied(key.id)).await??;
    let Some(applied) = found.filter(|a| a.session == seat.session_id) else {
        return Ok(None);
    };
    let credential = ctx.session.credential.clone();
    let session = in_session(ctx, GetSession { credential }).await?;
    let value = match makes {
        Makes::Session => value(&session),
        Makes::Seat => {
            let participant = session
                .participants
                .iter()
                .find(|p| p.ai_id == seat.ai_id)
                .cloned();
            json!({"sessionId": seat.session_id, "participant": participant,
                   "session": session, "eventId": applied.first_event})
        }
    };
    Ok(Some(ToolOutput { value, bind: None }))
}

struct Reservation {
    registry: actix::Addr<crate::mcp::McpRegistry>,
    id: String,
    held: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held {
            self.registry
                .do_send(ReleaseBind(std::mem::take(&mut self.id)));
        }
    }
}

async fn create(ctx: ToolCtx, raw: Value) -> Result<ToolOutput, HubError> {
    let request: api::sessions::Create = args(raw)?;
    // Checked before anything is written: this client must be among the participants.
    if request.participants.clone().specs()?.is_empty() {
        return Err(HubError::invalid(
            "participants",
            "name at least one participant: you",
        ));
    }
    let created = request.run(call_of(&ctx)).await?;
    let session = created.created.session;
    let me = created
        .me
        .ok_or_else(|| HubError::invalid("participants", "name at least one participant: you"))?;
    // Absent only when a create sent again finds `me` gone since (no seat to take).
    let token =
        created
            .created
            .tokens
            .get(&me)
            .cloned()
            .ok_or_else(|| HubError::AlreadyApplied {
                message: format!("this session was already created, and {me:?} has left it since"),
                events: Vec::new(),
            })?;
    Ok(ToolOutput {
        value: value(&session),
        bind: Some((
            Credential::Bearer(token_digest(&token)),
            Binding {
                session_id: session.session_id,
                ai_id: me,
            },
        )),
    })
}

/// `session_join`: the operation, then this MCP session acts as the participant. Naming no
/// role, the operator's client (loopback, or the operator token) takes the seat of a participant
/// listed at create instead of being refused as a duplicate.
pub(super) async fn session_join(ctx: ToolCtx, raw: Value) -> Result<ToolOutput, HubError> {
    binding(ctx, raw, Makes::Seat, join).await
}

async fn join(ctx: ToolCtx, raw: Value) -> Result<ToolOutput, HubError> {
    let request: api::sessions::Join = args(raw)?;
    let call = call_of(&ctx);
    let target = request.session_id;
    let connect_existing = request.names_no_role();
    let command = request.command(&call, connect_existing);
    let mut joined: Joined = call.send(target, command).await?;
    let credential = match joined.token.take() {
        Some(token) => Credential::Bearer(token_digest(&token)),
        None => Credential::OperatorAs {
            session: joined.session_id,
            ai_id: joined.participant.ai_id.clone(),
        },
    };
    let binding = Binding {
        session_id: joined.session_id,
        ai_id: joined.participant.ai_id.clone(),
    };
    // The REST answer without the token.
    Ok(ToolOutput {
        value: value(&joined),
        bind: Some((credential, binding)),
    })
}

pub(super) async fn whoami(ctx: ToolCtx, raw: Value) -> Result<ToolOutput, HubError> {
    let _: NoArgs = args(raw)?;
    let credential = ctx.session.credential.clone();
    let view = in_session(&ctx, Whoami { credential }).await?;
    Ok(plain(value(&view)))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct PollArgs {
    /// Event id to read after (default: your acknowledged cursor).
    after: Option<i64>,
    /// 1–200, default 50.
    limit: Option<i64>,
    /// If nothing is new, wait up to this many seconds (at most 50) for the next event.
    wait_secs: Option<u64>,
}

/// Longest `events_poll` wait: below the 60 s most MCP clients give a request before they give
/// up on it, so a waiting agent gets an answer (empty) rather than a timeout. A longer wait is
/// cut to this, not refused.
pub const MAX_WAIT_SECS: u64 = 50;

pub(super) async fn events_poll(ctx: ToolCtx, raw: Value) -> Result<ToolOutput, HubError> {
    let a: PollArgs = args(raw)?;
    let limit = a.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(HubError::invalid(
            "limit",
            "limit must be between 1 and 200",
        ));
    }
    if a.after.is_some_and(|n| n < 0) {
        return Err(HubError::invalid("after", "after must not be negative"));
    }
    let wait = a.wait_secs.unwrap_or(0).min(MAX_WAIT_SECS);
    let poll = |after| PollEvents {
        credential: ctx.session.credential.clone(),
        after,
        limit,
    };
    let mut page = in_session(&ctx, poll(a.after)).await?;
    if page.events.is_empty() && wait > 0 {
        let newest = page.last_event_id;
        match wait_for_event(&ctx, newest, Duration::from_secs(wait)).await? {
            Woken::Event | Woken::TimedOut => {
                page = in_session(&ctx, poll(Some(a.after.unwrap_or(newest).min(newest)))).await?;
            }
            // The empty page already read: the parts that would read again are going (a stop,
            // a project let go, its database maybe out of reach). The agent's
            // cursor did not move, so its next poll, to whichever hub serves then, misses
            // nothing. Nor is the session asked what waits for the caller: loading it again
            // here would wait for a project this hub may no longer get.
            Woken::Closing => {
                ctx.critical
                    .borrow_mut()
                    .get_or_insert_with(Default::default);
            }
        }
    }
    Ok(plain(value(&page)))
}

/// Why a long poll's wait ended.
enum Woken {
    Event,
    TimedOut,
    /// This hub stops, or the session's actor stopped (its project let go).
    Closing,
}

/// Waits until an event after `newest` is committed, `wait` passes, or the hub stops serving,
/// reporting progress once a second. A cancelled call drops this future, and with it the
/// temporary stream.
async fn wait_for_event(ctx: &ToolCtx, newest: i64, wait: Duration) -> Result<Woken, HubError> {
    let mut closing = ctx.registry.send(WhenClosing).await?;
    // Subscribed before the stream is attached: a retirement after it is seen. The session's
    // actor may be unable to take its own retirement for a while (a write waiting for a
    // database out of reach holds it), so the wait does not count on its stream ending.
    let mut retired = ctx.hub.send(WatchRetired).await?;
    let session = ctx.session.binding.as_ref().map(|b| b.session_id);
    if *closing.borrow_and_update() {
        // Not an empty answer at once: the agent would poll again at once, in a loop, for as
        // long as this hub finishes its requests.
        return Err(HubError::Unavailable(
            "this hub is stopping; poll again".into(),
        ));
    }
    let (sink, mut events) = tokio::sync::mpsc::channel(8);
    let attach = AttachStream {
        credential: ctx.session.credential.clone(),
        key: format!("poll:{}", Uuid::new_v4()),
        after: Some(newest),
        sink,
    };
    in_session(ctx, attach).await?;
    if let Some(n) = &ctx.notify {
        n.log(
            "debug",
            json!(format!(
                "events_poll: waiting up to {}s for an event after #{newest}",
                wait.as_secs()
            )),
        );
    }
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.reset();
    loop {
        tokio::select! {
            event = events.recv() => {
                // None: the stream was ended, not woken: the session's actor stopped (its
                // project let go, or this hub stopping), and reading again would load it
                // where it may not be served. Answered as a closing hub's wait is.
                return Ok(if event.is_some() { Woken::Event } else { Woken::Closing });
            }
            _ = tokio::time::sleep_until(started + wait) => return Ok(Woken::TimedOut),
            _ = closing.wait_for(|closing| *closing) => return Ok(Woken::Closing),
            gone = retired.recv() => {
                use tokio::sync::broadcast::error::RecvError;
                match gone {
                    Ok(sessions) if !session.is_some_and(|s| sessions.contains(&s)) => {}
                    // Its project let go (or which sessions went was lost).
                    Ok(_) | Err(RecvError::Lagged(_) | RecvError::Closed) => {
                        return Ok(Woken::Closing);
                    }
                }
            }
            _ = tick.tick() => {
                if let Some(n) = &ctx.notify {
                    let waited = started.elapsed().as_secs_f64().round();
                    n.progress(waited, Some(wait.as_secs_f64()), "waiting for events");
                }
            }
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct AckArgs {
    /// Newest event id you have seen.
    up_to: i64,
}

pub(super) async fn events_ack(ctx: ToolCtx, raw: Value) -> Result<ToolOutput, HubError> {
    let a: AckArgs = args(raw)?;
    if a.up_to < 0 {
        return Err(HubError::invalid("upTo", "upTo must not be negative"));
    }
    let command = AckEvents {
        credential: ctx.session.credential.clone(),
        up_to: a.up_to,
    };
    let cursor = in_session(&ctx, command).await?;
    Ok(plain(json!({ "ackedEventId": cursor })))
}

pub(super) async fn session_leave(ctx: ToolCtx, raw: Value) -> Result<ToolOutput, HubError> {
    let request: api::sessions::Leave = args(raw)?;
    let call = call_of(&ctx);
    // The operator's client may remove someone else; it stays who it is then.
    let me_leaving = match (&request.participant, &call.seat) {
        (Some(named), Some(seat)) => *named == seat.ai_id,
        _ => true,
    };
    let left = request.run(call).await;
    // Sent again after the hub that applied it died (`already_applied`): it has left all
    // the same, and this MCP session must not stay bound to a seat that is gone.
    let gone = matches!(&left, Ok(_) | Err(HubError::AlreadyApplied { .. }));
    if me_leaving && gone {
        ctx.registry
            .do_send(crate::mcp::registry::Unbind(ctx.mcp_id.clone()));
    }
    Ok(plain(value(&left?)))
}
