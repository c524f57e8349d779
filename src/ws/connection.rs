//! `Connection`: the actor behind one WebSocket. It reads client frames, answers them through
//! the same operations as every other surface, runs one task per subscribed session
//! (`subscription`), and keeps the peer honest with heartbeats. Everything it writes goes
//! through two bounded queues drained by one writer task: replies and interrupts first, then
//! events in log order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, ProtocolError};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use super::WsConfig;
use super::budget::ViewerBudget;
use super::frames::{
    self, Ack, Auth, CallFrame, ClientFrame, Filter, Ping, Subscribe, Unsubscribe,
};
use super::stats::Queued;
use super::subscription::{Live, Outbound, Subscription};
use super::{calls, relay};
use crate::actors::Hub;
use crate::actors::hub::{FollowElsewhere, LISTED_FOR, ProjectSessions, WatchOpened};
use crate::actors::messages::{StreamPresence, ToSession, WatchSession, Whoami};
use crate::api::{Call, Operation, Seat};
use crate::domain::auth::{Credential, token_digest};
use crate::domain::message::RateLimit;
use crate::error::HubError;

/// Events queued for the client in log order before a subscription must `resync`.
pub const OUTBOUND_FRAMES: usize = 256;
/// Replies and interrupts queued before the connection is deemed stuck and closed.
const URGENT_FRAMES: usize = 64;
/// Commands one connection may have running at once.
const MAX_IN_FLIGHT: usize = 32;
/// Subscriptions one connection may hold.
const MAX_SUBSCRIPTIONS: usize = 32;
/// How far apart two hubs' clocks may be for a project subscription to take a session created
/// at the other one for new.
const CLOCKS_APART: chrono::Duration = chrono::Duration::seconds(60);
/// Sessions one project subscription covers.
const MAX_PROJECT_SESSIONS: i64 = 100;

static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// One subscription: a task per session it covers.
struct Sub {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sessions: std::collections::HashSet<Uuid>,
    filter: Filter,
    /// A project subscription follows the project's new sessions through the hub's feed of
    /// those created here, and through the project's list (those created at another hub).
    follows: Option<SpawnHandle>,
    polls: Option<SpawnHandle>,
}

impl Sub {
    fn end(self, ctx: &mut Context<Connection>) {
        self.tasks.iter().for_each(|t| t.abort());
        for h in self.follows.into_iter().chain(self.polls) {
            ctx.cancel_future(h);
        }
    }
}

/// A session created in a project a subscription covers.
struct NewSession {
    subscription: Arc<str>,
    session_id: Uuid,
}

pub struct Connection {
    id: u64,
    hub: Addr<Hub>,
    ws: actix_ws::Session,
    out: Outbound,
    credential: Credential,
    /// The token `credential` is the digest of, kept to act as its caller at the hub serving a
    /// session held elsewhere (`relay`); None: the connection came without one.
    token: Option<Arc<str>>,
    /// The participant this connection acts as; `None`: a viewer.
    seat: Option<Seat>,
    /// The seat was taken with an `auth` frame (a dashboard), not on the upgrade (an agent):
    /// its subscription to its session held elsewhere follows the tail (`seat_elsewhere`).
    seat_by_frame: bool,
    subscriptions: HashMap<String, Sub>,
    next_subscription: u64,
    heartbeat: Duration,
    last_heard: Instant,
    ping_pending: bool,
    /// The seat's presence counts this connection (it holds a subscription).
    streaming: bool,
    /// Commands (`call`, `ack`) running now.
    in_flight: usize,
    /// Paces this connection's calls while it is a viewer (`budget`).
    budget: Arc<ViewerBudget>,
    reads: Arc<Mutex<RateLimit>>,
}

impl Connection {
    /// Starts the actor for an upgraded request and its writer task.
    pub fn start(
        hub: Addr<Hub>,
        ws: actix_ws::Session,
        incoming: actix_ws::AggregatedMessageStream,
        (credential, token): (Credential, Option<Arc<str>>),
        seat: Option<Seat>,
        config: &WsConfig,
    ) {
        let (heartbeat, stats) = (config.heartbeat, config.stats.clone());
        let budget = config.viewer_budget.clone();
        let reads = Arc::new(budget.connection());
        let (urgent_tx, urgent_rx) = mpsc::channel(URGENT_FRAMES);
        let (routine_tx, routine_rx) = mpsc::channel(OUTBOUND_FRAMES);
        let queued = Arc::new(Queued::new(stats.clone()));
        actix_web::rt::spawn(write(ws.clone(), urgent_rx, routine_rx, queued.clone()));
        Connection::create(move |ctx| {
            ctx.add_stream(incoming);
            Connection {
                id: CONNECTIONS.fetch_add(1, Ordering::Relaxed),
                hub,
                ws,
                out: Outbound {
                    urgent: urgent_tx,
                    routine: routine_tx,
                    queued,
                    stats,
                },
                credential,
                token,
                seat,
                seat_by_frame: false,
                subscriptions: HashMap::new(),
                next_subscription: 1,
                heartbeat,
                last_heard: Instant::now(),
                ping_pending: false,
                streaming: false,
                in_flight: 0,
                budget,
                reads,
            }
        });
    }

    fn call(&self) -> Call {
        Call {
            hub: self.hub.clone(),
            credential: self.credential.clone(),
            seat: self.seat.clone(),
            critical: None,
            request_key: Default::default(),
        }
    }

    /// Queues a reply (ahead of events). A client that leaves its replies unread this long is
    /// stuck: the connection closes.
    fn answer(&mut self, frame: String, ctx: &mut Context<Self>) {
        if self.out.urgent.try_send(frame).is_err() {
            self.close(CloseCode::Policy, "replies left unread", ctx);
        }
    }

    fn reply(&mut self, id: &Value, result: Result<Value, HubError>, ctx: &mut Context<Self>) {
        let frame = match result {
            Ok(ok) => frames::reply_ok(id, ok),
            Err(e) => frames::reply_error(Some(id), &e),
        };
        self.answer(frame, ctx);
    }

    fn close(&mut self, code: CloseCode, why: &str, ctx: &mut Context<Self>) {
        let ws = self.ws.clone();
        let reason = CloseReason {
            code,
            description: Some(why.to_owned()),
        };
        actix_web::rt::spawn(async move {
            let _ = ws.close(Some(reason)).await;
        });
        ctx.stop();
    }

    /// A participant is connected while it listens: the first subscription of its connection
    /// opens a live stream for its presence, the last one ending closes it.
    fn set_streaming(&mut self, on: bool) {
        if self.streaming == on || self.seat.is_none() {
            return;
        }
        self.streaming = on;
        if let Some(seat) = &self.seat {
            self.hub.do_send(ToSession {
                session_id: seat.session_id,
                command: StreamPresence {
                    ai_id: seat.ai_id.clone(),
                    open: on,
                },
            });
        }
    }

    fn end_subscriptions(&mut self, ctx: &mut Context<Self>) {
        let n = self.subscriptions.len() as i64;
        self.out.stats.subscriptions.fetch_sub(n, Ordering::Relaxed);
        for (_, sub) in self.subscriptions.drain() {
            sub.end(ctx);
        }
        self.set_streaming(false);
    }

    fn handle_frame(&mut self, frame: ClientFrame, ctx: &mut Context<Self>) {
        match frame {
            ClientFrame::Ping(Ping { id }) => self.reply(&id, Ok(json!({})), ctx),
            ClientFrame::Auth(Auth { id, token }) => self.auth(id, token, ctx),
            ClientFrame::Subscribe(Subscribe {
                id,
                session_id,
                project,
                since,
                min_priority,
                kinds,
            }) => {
                let filter = Filter {
                    min_priority,
                    kinds,
                };
                self.subscribe(id, session_id, project, since, filter, ctx)
            }
            ClientFrame::Unsubscribe(Unsubscribe { id, subscription }) => {
                let result = match self.subscriptions.remove(&subscription) {
                    Some(sub) => {
                        self.out.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
                        sub.end(ctx);
                        if self.subscriptions.is_empty() {
                            self.set_streaming(false);
                        }
                        Ok(json!({}))
                    }
                    None => Err(HubError::NotFound {
                        code: "subscription_not_found",
                        message: format!("no subscription {subscription:?} on this connection"),
                    }),
                };
                self.reply(&id, result, ctx);
            }
            ClientFrame::Ack(Ack {
                id,
                up_to,
                session_id,
            }) => {
                let (call, token) = (self.call(), self.token.clone());
                let fut = async move {
                    match calls::ack(call, up_to, session_id).await {
                        Err(HubError::Elsewhere { url, .. }) => {
                            let frame = relay::ack_frame(up_to, session_id);
                            relay::relay(&url, token.as_deref(), frame).await
                        }
                        done => done,
                    }
                };
                self.run(id, fut, ctx);
            }
            ClientFrame::Call(CallFrame {
                id,
                operation,
                arguments,
            }) => {
                let (call, viewer) = (self.call(), self.seat.is_none());
                let token = self.token.clone();
                let arguments = arguments.unwrap_or(Value::Null);
                let pace = viewer.then(|| (self.budget.clone(), self.reads.clone()));
                let fut = async move {
                    if let Some((budget, reads)) = pace {
                        budget.admit(&reads).await;
                    }
                    let frame = relay::call_frame(&operation, &arguments);
                    match calls::run(call, &operation, arguments, viewer).await {
                        Err(HubError::Elsewhere { url, .. }) => {
                            relay::relay(&url, token.as_deref(), frame).await
                        }
                        done => done,
                    }
                };
                self.run(id, fut, ctx);
            }
        }
    }

    /// Runs a frame's command alongside others (replies may come in any order: ids tell them
    /// apart), at most `MAX_IN_FLIGHT` at once: one more is refused, not queued.
    fn run(
        &mut self,
        id: Value,
        command: impl std::future::Future<Output = Result<Value, HubError>> + 'static,
        ctx: &mut Context<Self>,
    ) {
        if self.in_flight >= MAX_IN_FLIGHT {
            let e = HubError::RateLimited {
                message: format!(
                    "{MAX_IN_FLIGHT} commands of this connection are still running; wait for their replies"
                ),
                retry_after_secs: 1,
            };
            return self.reply(&id, Err(e), ctx);
        }
        self.in_flight += 1;
        ctx.spawn(command.into_actor(self).map(move |r, act, ctx| {
            act.in_flight -= 1;
            act.reply(&id, r, ctx)
        }));
    }

    /// Takes on the token's participant. Later frames wait for it (`ctx.wait`), so a subscribe
    /// sent right after an auth acts as the participant.
    fn auth(&mut self, id: Value, token: String, ctx: &mut Context<Self>) {
        let token: Arc<str> = token.trim().into();
        let credential = Credential::Bearer(token_digest(&token));
        let hub = self.hub.clone();
        let fut = async move {
            let (seat, role) = relay::identify(&hub, &credential, Some(&token)).await?;
            let Some(seat) = seat else {
                return Ok((credential, None, json!({ "viewer": true }), token));
            };
            let role = match role {
                Some(role) => role,
                None => {
                    let command = Whoami {
                        credential: credential.clone(),
                    };
                    let asked = hub
                        .send(ToSession {
                            session_id: seat.session_id,
                            command,
                        })
                        .await?;
                    match asked {
                        Ok(me) => json!(me.role),
                        // Its project moved since.
                        Err(HubError::Elsewhere { url, .. }) => {
                            relay::whoami(&url, Some(&token)).await?["role"].take()
                        }
                        Err(e) => return Err(e),
                    }
                }
            };
            let ok = json!({ "sessionId": seat.session_id, "aiId": seat.ai_id, "role": role });
            Ok((credential, Some(seat), ok, token))
        };
        ctx.wait(fut.into_actor(self).map(move |r, act, ctx| {
            let r = r.map(|(credential, seat, ok, token)| {
                act.end_subscriptions(ctx);
                act.credential = credential;
                act.seat_by_frame = seat.is_some();
                act.seat = seat;
                act.token = Some(token);
                ok
            });
            act.reply(&id, r, ctx);
        }));
    }

    fn subscribe(
        &mut self,
        id: Value,
        session_id: Option<Uuid>,
        project: Option<String>,
        since: Option<i64>,
        filter: Filter,
        ctx: &mut Context<Self>,
    ) {
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            let e = HubError::Conflict {
                code: "too_many_subscriptions",
                message: format!("at most {MAX_SUBSCRIPTIONS} subscriptions per connection"),
            };
            return self.reply(&id, Err(e), ctx);
        }
        let name: Arc<str> = format!("s{}", self.next_subscription).into();
        self.next_subscription += 1;
        let (call, conn) = (self.call(), self.id);
        let fut = plan(
            call,
            self.token.clone(),
            self.seat_by_frame,
            session_id,
            project,
            since,
        );
        ctx.wait(fut.into_actor(self).map(move |planned, act, ctx| {
            let (planned, opened) = match planned {
                Ok(p) => p,
                Err(e) => return act.reply(&id, Err(e), ctx),
            };
            let sessions: Vec<Value> = planned
                .iter()
                .map(|p| json!({ "sessionId": p.session_id, "lastEventId": p.last_event_id }))
                .collect();
            act.reply(
                &id,
                Ok(json!({ "subscription": &*name, "sessions": sessions })),
                ctx,
            );
            // A seat followed through the tail streams nothing at this hub: its presence is
            // not this hub's to count.
            let counted = planned
                .iter()
                .any(|p| !matches!(p.live, Some(Live::Tail { seat: Some(_), .. })));
            let mut tasks = Vec::with_capacity(planned.len());
            let sessions = planned.iter().map(|p| p.session_id).collect();
            for p in planned {
                let live = p.live.unwrap_or_else(|| Live::Participant {
                    key: format!("ws{conn}-{name}"),
                });
                let task = Subscription {
                    name: name.clone(),
                    hub: act.hub.clone(),
                    credential: act.credential.clone(),
                    session_id: p.session_id,
                    cursor: p.cursor,
                    filter: filter.clone(),
                    out: act.out.clone(),
                };
                tasks.push(actix_web::rt::spawn(task.run(live)));
            }
            let polls = opened
                .as_ref()
                .map(|(project, _)| act.poll_project(project.clone(), name.clone(), ctx));
            let follows = opened.map(|(project, opened)| {
                let subscription = name.clone();
                let new_sessions = futures::stream::unfold(opened, move |mut opened| {
                    let (project, subscription) = (project.clone(), subscription.clone());
                    async move {
                        loop {
                            match opened.recv().await {
                                Ok((p, session_id)) if p == project => {
                                    let item = NewSession {
                                        subscription,
                                        session_id,
                                    };
                                    return Some((item, opened));
                                }
                                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                                Err(broadcast::error::RecvError::Closed) => return None,
                            }
                        }
                    }
                });
                ctx.add_stream(new_sessions)
            });
            act.out.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
            let sub = Sub {
                tasks,
                sessions,
                filter,
                follows,
                polls,
            };
            act.subscriptions.insert(name.to_string(), sub);
            if counted {
                act.set_streaming(true);
            }
        }));
    }
}

impl Connection {
    /// Looks at `project`'s list of sessions every `LISTED_FOR` for sessions another hub
    /// created since the subscription began, each followed from its first event (those created
    /// here come through the hub's feed at once). Stops where no other hub serves sessions of
    /// the database.
    fn poll_project(
        &mut self,
        project: String,
        subscription: Arc<str>,
        ctx: &mut Context<Self>,
    ) -> SpawnHandle {
        // Created since, by any hub's clock within a minute of this one's: an older session is
        // one the subscription covered when it began, or chose not to (past the 100 it covers).
        let since = chrono::Utc::now() - CLOCKS_APART;
        ctx.run_interval(LISTED_FOR, move |act, ctx| {
            let (hub, project, subscription) =
                (act.hub.clone(), project.clone(), subscription.clone());
            let listed = async move { hub.send(ProjectSessions(project)).await };
            ctx.spawn(listed.into_actor(act).map(move |listed, act, ctx| {
                let Some(sub) = act.subscriptions.get_mut(&*subscription) else {
                    return;
                };
                let listed = match listed {
                    Ok(Ok(Some(listed))) => listed,
                    Ok(Ok(None)) => {
                        // Every session is created here: the hub's feed has them all.
                        if let Some(h) = sub.polls.take() {
                            ctx.cancel_future(h);
                        }
                        return;
                    }
                    Ok(Err(_)) | Err(_) => return,
                };
                let new: Vec<Uuid> = listed
                    .iter()
                    .filter(|(id, created)| *created >= since && !sub.sessions.contains(id))
                    .map(|(id, _)| *id)
                    .collect();
                for session_id in new {
                    let item = NewSession {
                        subscription: subscription.clone(),
                        session_id,
                    };
                    StreamHandler::handle(act, item, ctx);
                }
            }));
        })
    }
}

impl StreamHandler<NewSession> for Connection {
    /// A session created in a project a subscription covers: followed from its first event.
    fn handle(&mut self, item: NewSession, ctx: &mut Context<Self>) {
        let NewSession {
            subscription,
            session_id,
        } = item;
        if self
            .subscriptions
            .get(&*subscription)
            .is_none_or(|s| s.sessions.contains(&session_id))
        {
            return;
        }
        let watch = watch_or_follow(self.call(), session_id, false);
        ctx.spawn(watch.into_actor(self).map(move |watched, act, _| {
            let (hub, credential, out) = (act.hub.clone(), act.credential.clone(), act.out.clone());
            let (Ok((_, live)), Some(sub)) = (watched, act.subscriptions.get_mut(&*subscription))
            else {
                return;
            };
            if !sub.sessions.insert(session_id) {
                return;
            }
            let task = Subscription {
                name: subscription,
                hub,
                credential,
                session_id,
                cursor: 0,
                filter: sub.filter.clone(),
                out,
            };
            sub.tasks.push(actix_web::rt::spawn(task.run(live)));
        }));
    }

    /// The hub's feed of new sessions ending does not end the connection.
    fn finished(&mut self, _: &mut Context<Self>) {}
}

/// A project subscription's feed of the sessions created from now on.
type Opened = (String, broadcast::Receiver<(String, Uuid)>);

/// One session a subscription covers.
struct Planned {
    session_id: Uuid,
    last_event_id: i64,
    /// Where the task starts reading.
    cursor: i64,
    /// A viewer's feed (joined now, so nothing falls between it and the replay), or the tail
    /// of a session another hub serves; None: a participant's, attached after the replay.
    live: Option<Live>,
}

/// Works out which sessions a `subscribe` covers and where each starts.
async fn plan(
    call: Call,
    token: Option<Arc<str>>,
    seat_by_frame: bool,
    session_id: Option<Uuid>,
    project: Option<String>,
    since: Option<i64>,
) -> Result<(Vec<Planned>, Option<Opened>), HubError> {
    if since.is_some_and(|s| s < 0) {
        return Err(HubError::invalid("since", "an event id, 0 or more"));
    }
    let mut opened = None;
    let ids = match (session_id, project) {
        (Some(_), Some(_)) => {
            return Err(HubError::invalid(
                "project",
                "subscribe to a sessionId or to a project, not both",
            ));
        }
        (None, Some(project)) => {
            if since.is_some() {
                return Err(HubError::invalid(
                    "since",
                    "since goes with one sessionId (each session has its own log)",
                ));
            }
            if call.seat.is_some() {
                return Err(HubError::Forbidden(
                    "a participant subscribes to its own session; a project takes a viewer".into(),
                ));
            }
            // Joined before the list is read: a session created in between is in both (and
            // followed once).
            opened = Some((project.clone(), call.hub.send(WatchOpened).await?));
            project_sessions(&call, project).await?
        }
        (named, None) => vec![call.session(named).await?],
    };
    let mut planned = Vec::with_capacity(ids.len());
    // The project of a project subscription's sessions is served by another hub: the rest of
    // them are followed through the tail without asking again (each ask waits about 2 s for a
    // hand-over). The tail serves any session, wherever it is held.
    let mut elsewhere = false;
    for session_id in ids {
        planned.push(match &call.seat {
            Some(seat) => {
                let command = Whoami {
                    credential: call.credential.clone(),
                };
                match call.send(session_id, command).await {
                    Ok(me) => Planned {
                        session_id,
                        last_event_id: me.last_event_id,
                        cursor: since.unwrap_or(me.acked_event_id),
                        live: None,
                    },
                    // A seat taken with the `auth` frame; an agent's socket (its token on the
                    // upgrade) is refused, and bridged where its session is when it connects
                    // again (`ws::endpoint`).
                    Err(HubError::Elsewhere { url, .. }) if seat_by_frame => {
                        let token = token.as_deref();
                        seat_elsewhere(&call, &url, token, &seat.ai_id, session_id, since).await?
                    }
                    Err(e) => return Err(e),
                }
            }
            None => {
                let (last_event_id, live) =
                    watch_or_follow(call.clone(), session_id, elsewhere).await?;
                elsewhere = matches!(live, Live::Tail { .. });
                Planned {
                    session_id,
                    last_event_id,
                    cursor: since.unwrap_or(last_event_id),
                    live: Some(live),
                }
            }
        });
    }
    Ok((planned, opened))
}

/// A viewer's feed of a session: the session's own (here), or the event tail when another hub
/// serves it (`elsewhere`: known so already, not asked again); and its last event id now.
async fn watch_or_follow(
    call: Call,
    session_id: Uuid,
    elsewhere: bool,
) -> Result<(i64, Live), HubError> {
    if !elsewhere {
        let command = WatchSession {
            credential: call.credential.clone(),
        };
        match call.send(session_id, command).await {
            Ok(watch) => return Ok((watch.last_event_id, Live::Viewer(watch))),
            Err(HubError::Elsewhere { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let follow = FollowElsewhere {
        session: session_id,
        credential: call.credential.clone(),
        seat_confirmed: false,
    };
    let followed = call.hub.send(follow).await??;
    let live = Live::Tail {
        tail: followed.tail,
        replay_to: followed.last_event_id,
        seat: None,
    };
    Ok((followed.last_event_id, live))
}

/// A participant's own subscription to its session, which the hub at `url` serves: its seat
/// and cursors read there (`whoami`, with the connection's token), then the session followed
/// through the tail from its acknowledged cursor, filtered to what it may see. Its presence is
/// not announced there (no stream of it runs at that hub).
async fn seat_elsewhere(
    call: &Call,
    url: &str,
    token: Option<&str>,
    ai_id: &str,
    session_id: Uuid,
    since: Option<i64>,
) -> Result<Planned, HubError> {
    let me = relay::whoami(url, token).await?;
    let read = |field: &str| {
        me[field].as_i64().ok_or_else(|| {
            HubError::Unavailable(format!(
                "the hub serving this session answered whoami without {field}: {me}"
            ))
        })
    };
    let (last_event_id, acked) = (read("lastEventId")?, read("ackedEventId")?);
    if me["aiId"] != ai_id || me["sessionId"] != session_id.to_string().as_str() {
        return Err(HubError::Unavailable(
            "the hub serving this session answered whoami for another seat; retry".into(),
        ));
    }
    let follow = FollowElsewhere {
        session: session_id,
        credential: call.credential.clone(),
        seat_confirmed: true,
    };
    let followed = call.hub.send(follow).await??;
    Ok(Planned {
        session_id,
        last_event_id,
        cursor: since.unwrap_or(acked),
        live: Some(Live::Tail {
            tail: followed.tail,
            replay_to: last_event_id,
            seat: Some(ai_id.to_owned()),
        }),
    })
}

/// The project's sessions that are not completed, newest activity first.
async fn project_sessions(call: &Call, project: String) -> Result<Vec<Uuid>, HubError> {
    let list = crate::api::sessions::List {
        status: None,
        project: Some(project),
        participant: None,
        text: None,
        limit: Some(MAX_PROJECT_SESSIONS),
        offset: None,
    };
    let found = list.run(call.clone()).await?;
    Ok(found
        .sessions
        .into_iter()
        .filter(|s| s.status != crate::domain::session::SessionStatus::Completed)
        .map(|s| s.session_id)
        .collect())
}

/// The writer: replies and interrupts first, then events, each as the socket takes it.
async fn write(
    mut ws: actix_ws::Session,
    mut urgent: mpsc::Receiver<String>,
    mut routine: mpsc::Receiver<String>,
    queued: Arc<Queued>,
) {
    loop {
        let frame = tokio::select! {
            biased;
            Some(f) = urgent.recv() => f,
            Some(f) = routine.recv() => {
                queued.sub(f.len());
                f
            }
            else => break,
        };
        if ws.text(frame).await.is_err() {
            break;
        }
    }
    drop(routine);
    queued.forget();
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.out.stats.connections.fetch_add(1, Ordering::Relaxed);
        let mut closing = self.out.stats.closing.subscribe();
        ctx.spawn(
            async move {
                let _ = closing.wait_for(|c| *c).await;
            }
            .into_actor(self)
            .map(|_, act, ctx| act.close(CloseCode::Away, "the hub is stopping", ctx)),
        );
        ctx.run_interval(self.heartbeat, |act, ctx| {
            if act.last_heard.elapsed() > act.heartbeat * 3 {
                return act.close(CloseCode::Away, "no heartbeat", ctx);
            }
            if act.ping_pending {
                return;
            }
            act.ping_pending = true;
            let mut ws = act.ws.clone();
            ctx.spawn(
                async move { ws.ping(b"").await.is_ok() }
                    .into_actor(act)
                    .map(|sent, act, ctx| {
                        act.ping_pending = false;
                        if !sent {
                            ctx.stop();
                        }
                    }),
            );
        });
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.out.stats.connections.fetch_sub(1, Ordering::Relaxed);
        self.end_subscriptions(ctx);
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for Connection {
    fn handle(&mut self, item: Result<AggregatedMessage, ProtocolError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        match item {
            Ok(AggregatedMessage::Text(text)) => match frames::read(&text) {
                Ok(frame) => self.handle_frame(frame, ctx),
                Err((e, id)) => self.answer(frames::reply_error(id.as_ref(), &e), ctx),
            },
            Ok(AggregatedMessage::Binary(_)) => {
                let e = HubError::invalid("", "binary frames are not read: send JSON as text");
                self.answer(frames::reply_error(None, &e), ctx);
            }
            Ok(AggregatedMessage::Ping(bytes)) => {
                let mut ws = self.ws.clone();
                actix_web::rt::spawn(async move {
                    let _ = ws.pong(&bytes).await;
                });
            }
            Ok(AggregatedMessage::Pong(_)) => {}
            Ok(AggregatedMessage::Close(_)) => ctx.stop(),
            Err(ProtocolError::Overflow) => {
                self.close(CloseCode::Size, "frame larger than the hub accepts", ctx)
            }
            Err(e) => self.close(CloseCode::Protocol, &e.to_string(), ctx),
        }
    }
}
