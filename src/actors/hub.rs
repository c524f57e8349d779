//! `Hub`: the registry of live sessions. It creates sessions, lists them, and routes every
//! session command to that session's actor, loading the session from the database on first use
//! after a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::prelude::*;
use uuid::Uuid;

use super::evolution::{EvolutionActor, EvolutionSettings};
use super::lock_table::LockTableActor;
use super::messages::{
    CreateAnsweredAgain, CreateSession, DrawGenome, ListSessions, PendingCritical, ScoreOutcomes,
    SessionCreated, ToSession, ToSessionReporting, TokensAgain, Whoami,
};
use super::session::SessionActor;
use crate::domain::auth::{Credential, new_token, token_digest};
use crate::domain::evolution::Assignment;
use crate::domain::now;
use crate::domain::session::{AccessPolicy, Session, SessionSummary};
use crate::error::HubError;
use crate::store::{Store, applied, queries};

pub struct Hub {
    store: Store,
    policy: Arc<AccessPolicy>,
    sessions: HashMap<Uuid, Addr<SessionActor>>,
    /// Threads the session actors (and their agents) run on, one per core, handed out in turn:
    /// a busy session does not stall the others, and sessions use every core.
    arbiters: Vec<Arbiter>,
    next: usize,
    /// Token digest → its session, so a REST call with a bearer token finds its session
    /// without reading the database. Only a hint: the session actor still checks the token
    /// (it may have been reissued, or its participant may have left), and a miss falls back to
    /// the database. Bounded: cleared when it grows past `MAX_TOKEN_INDEX`.
    tokens: HashMap<String, Uuid>,
    /// One lock table per project, started with the first session of the project that needs it.
    tables: HashMap<String, Addr<LockTableActor>>,
    /// Sessions created since (project, id), for watchers of a whole project.
    opened: tokio::sync::broadcast::Sender<(String, Uuid)>,
    /// The populations' owner: draws genomes for new sessions, scores completed ones.
    evolution: Addr<EvolutionActor>,
}

/// Is this credential the hub operator's? (What creating a session asks first.)
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct CheckOperator(pub Credential);

impl Handler<CheckOperator> for Hub {
    type Result = Result<(), HubError>;

    fn handle(&mut self, msg: CheckOperator, _: &mut Self::Context) -> Self::Result {
        self.policy.operator(&msg.0)?;
        Ok(())
    }
}

/// The evolution actor, for the operations that read populations and insights.
#[derive(Message)]
#[rtype(result = "Addr<EvolutionActor>")]
pub struct GetEvolution;

impl Handler<GetEvolution> for Hub {
    type Result = actix::MessageResult<GetEvolution>;

    fn handle(&mut self, _: GetEvolution, _: &mut Self::Context) -> Self::Result {
        actix::MessageResult(self.evolution.clone())
    }
}

impl Handler<DrawGenome> for Hub {
    type Result = ResponseFuture<Result<Assignment, HubError>>;

    fn handle(&mut self, msg: DrawGenome, _: &mut Self::Context) -> Self::Result {
        let evolution = self.evolution.clone();
        Box::pin(async move { evolution.send(msg).await? })
    }
}

impl Handler<ScoreOutcomes> for Hub {
    type Result = ();

    fn handle(&mut self, msg: ScoreOutcomes, _: &mut Self::Context) {
        self.evolution.do_send(msg);
    }
}

/// A receiver of the sessions created from now on, `(project, session)`. Bounded: a watcher
/// that falls behind is told (`Lagged`).
#[derive(Message)]
#[rtype(result = "tokio::sync::broadcast::Receiver<(String, Uuid)>")]
pub struct WatchOpened;

impl Handler<WatchOpened> for Hub {
    type Result = actix::MessageResult<WatchOpened>;

    fn handle(&mut self, _: WatchOpened, _: &mut Self::Context) -> Self::Result {
        actix::MessageResult(self.opened.subscribe())
    }
}

/// How often the hub vacuums and analyzes a PostgreSQL that runs without autovacuum.
const VACUUM_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Most token digests the hub remembers.
const MAX_TOKEN_INDEX: usize = 100_000;

impl Hub {
    /// Must be called inside a running actix system (it starts the session threads).
    pub fn new(store: Store, policy: AccessPolicy, evolution: EvolutionSettings) -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hub {
            evolution: EvolutionActor::new(store.clone(), evolution).start(),
            store,
            policy: Arc::new(policy),
            sessions: HashMap::new(),
            arbiters: (0..threads).map(|_| Arbiter::new()).collect(),
            next: 0,
            tokens: HashMap::new(),
            opened: tokio::sync::broadcast::channel(64).0,
            tables: HashMap::new(),
        }
    }

    fn remember_token(&mut self, digest: String, session: Uuid) {
        if self.tokens.len() >= MAX_TOKEN_INDEX {
            self.tokens.clear();
        }
        self.tokens.insert(digest, session);
    }

    fn next_arbiter(&mut self) -> ArbiterHandle {
        self.next = (self.next + 1) % self.arbiters.len();
        self.arbiters[self.next].handle()
    }

    /// The lock table of `project`, started (and loading) if there is none.
    fn lock_table(&mut self, project: &str, ctx: &mut Context<Self>) -> Addr<LockTableActor> {
        if let Some(addr) = self.tables.get(project).filter(|a| a.connected()) {
            return addr.clone();
        }
        let (store, hub, key) = (self.store.clone(), ctx.address(), project.to_owned());
        let addr = LockTableActor::start_in_arbiter(&self.next_arbiter(), move |_| {
            LockTableActor::new(key, store, hub)
        });
        self.tables.insert(project.to_owned(), addr.clone());
        addr
    }

    /// The live actor for `id`, started (and loading) if there is none.
    fn session_actor(&mut self, id: Uuid, ctx: &mut Context<Self>) -> Addr<SessionActor> {
        if let Some(addr) = self.sessions.get(&id).filter(|a| a.connected()) {
            return addr.clone();
        }
        let (store, policy, hub) = (self.store.clone(), self.policy.clone(), ctx.address());
        let addr = SessionActor::start_in_arbiter(&self.next_arbiter(), move |_| {
            SessionActor::load(id, store, policy, hub)
        });
        self.sessions.insert(id, addr.clone());
        addr
    }
}

/// The session threads go with the hub: an owner that steps down (`src/app/lives.rs`) stops the
/// thread its hub runs on, and nothing of its sessions may run on after it.
impl Drop for Hub {
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

impl Actor for Hub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        // Vacuum and statistics where the database server does not keep them.
        ctx.run_interval(VACUUM_EVERY, |act, _| {
            let store = act.store.clone();
            actix::spawn(async move {
                if let Err(e) = store.vacuum_where_autovacuum_is_off().await {
                    log::warn!("cannot vacuum or analyze the database: {e}");
                }
            });
        });
    }
}

impl Handler<CreateSession> for Hub {
    type Result = ResponseActFuture<Self, Result<SessionCreated, HubError>>;

    fn handle(&mut self, msg: CreateSession, _: &mut Self::Context) -> Self::Result {
        let planned = self
            .policy
            .operator(&msg.credential)
            .and_then(|_| msg.spec.validate())
            .map_err(HubError::from);
        if let Err(e) = planned {
            return Box::pin(fut::ready(Err(e)));
        }
        let tokens: Vec<(String, String)> = msg
            .spec
            .participants
            .iter()
            .map(|p| (p.ai_id.clone(), new_token()))
            .collect();
        let digests: Vec<String> = tokens.iter().map(|(_, t)| token_digest(t)).collect();
        let mut session = Session::new(Uuid::new_v4(), &msg.spec, digests.clone(), now());
        let created = session.created_event();
        let row = session.clone();
        let store = self.store.clone();
        // With whom it made: sent again, the create answers them new tokens.
        let made: Vec<&str> = tokens.iter().map(|(ai_id, _)| ai_id.as_str()).collect();
        let key = msg.key.map(|k| (k, serde_json::json!(made).to_string()));
        Box::pin(
            async move {
                store
                    .write_for(row.id, move |c| {
                        let event = queries::insert_session(c, &row, &created)?;
                        if let Some((key, made)) = &key {
                            let events = std::slice::from_ref(&event);
                            applied::record_with(c, *key, row.id, events, Some(made))?;
                        }
                        Ok(event)
                    })
                    .await
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                let event = result?;
                session.last_event_id = event.id;
                let view = session.view();
                let (store, policy, hub) = (act.store.clone(), act.policy.clone(), ctx.address());
                let table = act.lock_table(&session.project, ctx);
                let actor = SessionActor::start_in_arbiter(&act.next_arbiter(), move |_| {
                    SessionActor::created(session, store, policy, hub, table)
                });
                act.sessions.insert(view.session_id, actor);
                let _ = act.opened.send((view.project.clone(), view.session_id));
                for digest in digests {
                    act.remember_token(digest, view.session_id);
                }
                Ok(SessionCreated {
                    session: view,
                    tokens: tokens.into_iter().collect::<BTreeMap<_, _>>(),
                })
            }),
        )
    }
}

impl Handler<CreateAnsweredAgain> for Hub {
    type Result = ResponseFuture<Result<Option<SessionCreated>, HubError>>;

    fn handle(&mut self, msg: CreateAnsweredAgain, ctx: &mut Self::Context) -> Self::Result {
        let allowed = self.policy.operator(&msg.credential);
        let (store, hub, key) = (self.store.clone(), ctx.address(), msg.key);
        Box::pin(async move {
            allowed?;
            let Some(applied) = store.read(move |c| applied::find(c, key)).await? else {
                return Ok(None);
            };
            let made: Option<Vec<String>> = applied
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok());
            // A key of some other request, sent again as a create.
            let Some(ai_ids) = made else {
                return Err(applied.error());
            };
            let (session, tokens) = hub
                .send(ToSession {
                    session_id: applied.session,
                    command: TokensAgain { ai_ids },
                })
                .await??;
            Ok(Some(SessionCreated { session, tokens }))
        })
    }
}

impl Handler<ListSessions> for Hub {
    type Result = ResponseFuture<Result<Vec<SessionSummary>, HubError>>;

    fn handle(&mut self, msg: ListSessions, _: &mut Self::Context) -> Self::Result {
        let allowed = self.policy.operator(&msg.credential);
        let store = self.store.clone();
        Box::pin(async move {
            allowed?;
            store
                .read(move |c| queries::list_sessions(c, &msg.filter, msg.limit, msg.offset))
                .await
        })
    }
}

impl<M, R> Handler<ToSession<M>> for Hub
where
    M: Message<Result = Result<R, HubError>> + Send + 'static,
    R: Send + 'static,
    SessionActor: Handler<M>,
{
    type Result = ResponseFuture<Result<R, HubError>>;

    fn handle(&mut self, msg: ToSession<M>, ctx: &mut Self::Context) -> Self::Result {
        let addr = self.session_actor(msg.session_id, ctx);
        Box::pin(async move { addr.send(msg.command).await? })
    }
}

impl<M, R> Handler<ToSessionReporting<M>> for Hub
where
    M: Message<Result = Result<R, HubError>> + Send + 'static,
    R: Send + 'static,
    SessionActor: Handler<M>,
{
    type Result = ResponseFuture<(Result<R, HubError>, crate::domain::digest::Pending)>;

    fn handle(&mut self, msg: ToSessionReporting<M>, ctx: &mut Self::Context) -> Self::Result {
        let addr = self.session_actor(msg.session_id, ctx);
        let ai_id = msg.critical_for;
        Box::pin(async move {
            let reply = match addr.send(msg.command).await {
                Ok(r) => r,
                Err(e) => Err(e.into()),
            };
            // The session handles this after the command: it reflects what the command did.
            let pending =
                Addr::<SessionActor>::send::<PendingCritical>(&addr, PendingCritical { ai_id })
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
            (reply, pending)
        })
    }
}

/// The actor of a session (started and loading if need be): for the lock tables, which tell
/// sessions about grants and expiries.
#[derive(Message)]
#[rtype(result = "Addr<SessionActor>")]
pub struct SessionAddr(pub Uuid);

impl Handler<SessionAddr> for Hub {
    type Result = Addr<SessionActor>;

    fn handle(&mut self, msg: SessionAddr, ctx: &mut Self::Context) -> Self::Result {
        self.session_actor(msg.0, ctx)
    }
}

/// The lock table of a project, for a session that has just loaded.
#[derive(Message)]
#[rtype(result = "Addr<LockTableActor>")]
pub struct LockTableFor(pub String);

impl Handler<LockTableFor> for Hub {
    type Result = Addr<LockTableActor>;

    fn handle(&mut self, msg: LockTableFor, ctx: &mut Self::Context) -> Self::Result {
        self.lock_table(&msg.0, ctx)
    }
}

/// A session actor found no session (or could not load it): forget it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionGone(pub Uuid);

impl Handler<SessionGone> for Hub {
    type Result = ();

    fn handle(&mut self, msg: SessionGone, _: &mut Self::Context) {
        self.sessions.remove(&msg.0);
    }
}

/// What the request of `key` applied, if it was (`store::applied`).
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<applied::Applied>, HubError>")]
pub struct FindApplied(pub Uuid);

impl Handler<FindApplied> for Hub {
    type Result = ResponseFuture<Result<Option<applied::Applied>, HubError>>;

    fn handle(&mut self, msg: FindApplied, _: &mut Self::Context) -> Self::Result {
        let (store, key) = (self.store.clone(), msg.0);
        Box::pin(async move { store.read(move |c| applied::find(c, key)).await })
    }
}

/// Who a credential belongs to, hub-wide: the operator, or one participant of one session.
#[derive(Debug, Message)]
#[rtype(result = "Result<Identity, HubError>")]
pub struct Identify(pub Credential);

#[derive(Debug, Clone, PartialEq)]
pub enum Identity {
    Operator,
    Participant { session_id: Uuid, ai_id: String },
}

impl Handler<Identify> for Hub {
    type Result = ResponseActFuture<Self, Result<Identity, HubError>>;

    fn handle(&mut self, msg: Identify, ctx: &mut Self::Context) -> Self::Result {
        let digest = match &msg.0 {
            Credential::None => {
                let r = self.policy.operator(&msg.0).map(|_| Identity::Operator);
                return Box::pin(fut::ready(r.map_err(HubError::from)));
            }
            Credential::Bearer(d) => d.clone(),
            Credential::OperatorAs { .. } => {
                return Box::pin(fut::ready(Err(HubError::Unauthorized(
                    "a bound MCP identity is not a bearer token".into(),
                ))));
            }
        };
        if self.policy.operator(&msg.0).is_ok() {
            return Box::pin(fut::ready(Ok(Identity::Operator)));
        }
        let credential = msg.0;
        // The session actor has the last word: the token may have been reissued, or its
        // participant may have just left.
        let confirm = move |session_id: Uuid, addr: Addr<SessionActor>, credential: Credential| async move {
            let me = addr.send(Whoami { credential }).await??;
            Ok::<_, HubError>(Identity::Participant {
                session_id,
                ai_id: me.ai_id,
            })
        };
        if let Some(&session_id) = self.tokens.get(&digest) {
            let addr = self.session_actor(session_id, ctx);
            let first_try = credential.clone();
            return Box::pin(
                async move { confirm(session_id, addr, first_try).await }
                    .into_actor(self)
                    .then(move |known, act, ctx| {
                        let answer: futures::future::LocalBoxFuture<'static, _> = match known {
                            Ok(identity) => Box::pin(fut::ready(Ok(identity))),
                            // Reissued or gone: forget the hint, ask the database.
                            Err(_) => {
                                act.tokens.remove(&digest);
                                act.lookup_token(digest, credential, ctx)
                            }
                        };
                        answer.into_actor(act)
                    }),
            );
        }
        let lookup = self.lookup_token(digest, credential, ctx);
        Box::pin(lookup.into_actor(self))
    }
}

impl Hub {
    /// Finds a token's session in the database, confirms it with the session actor, and
    /// remembers it.
    fn lookup_token(
        &mut self,
        digest: String,
        credential: Credential,
        ctx: &mut Context<Self>,
    ) -> futures::future::LocalBoxFuture<'static, Result<Identity, HubError>> {
        let (store, hub) = (self.store.clone(), ctx.address());
        Box::pin(async move {
            let key = digest.clone();
            let found = store.read(move |c| queries::find_by_token(c, &key)).await?;
            let Some((session_id, _)) = found else {
                return Err(HubError::Unauthorized(
                    "unknown bearer token (or its participant left)".into(),
                ));
            };
            let me = hub
                .send(ToSession {
                    session_id,
                    command: Whoami { credential },
                })
                .await??;
            hub.do_send(RememberToken { digest, session_id });
            Ok(Identity::Participant {
                session_id,
                ai_id: me.ai_id,
            })
        })
    }
}

/// A token proved to belong to a session (after a database lookup).
#[derive(Message)]
#[rtype(result = "()")]
struct RememberToken {
    digest: String,
    session_id: Uuid,
}

impl Handler<RememberToken> for Hub {
    type Result = ();

    fn handle(&mut self, msg: RememberToken, _: &mut Self::Context) {
        self.remember_token(msg.digest, msg.session_id);
    }
}

/// Is the hub's database answering? Replies with the backend's name and the probe's outcome.
#[derive(Debug, Message)]
#[rtype(result = "(&'static str, Result<(), HubError>)")]
pub struct Health;

impl Handler<Health> for Hub {
    type Result = ResponseFuture<(&'static str, Result<(), HubError>)>;

    fn handle(&mut self, _: Health, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { (store.backend(), store.ping().await) })
    }
}
