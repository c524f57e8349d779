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
use crate::store::lease::{HeldProjects, HubRow, ProjectLeases, ProjectOwner};
use crate::store::{ProjectFence, Store, applied, queries};

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
    /// The projects served here, each loaded with the first session of it that needs it.
    projects: HashMap<String, Served>,
    /// When several hubs share one PostgreSQL database: a project is served here only under
    /// its lease, and its actors write through a store fenced with the lease's generation
    /// (docs/multi-hub.md). None on SQLite, where one hub holds the file.
    leases: Option<ProjectLeases>,
    /// Session → its project (fixed at create), so that a session loading again joins its
    /// project before it reads anything. Bounded like `tokens`.
    known: HashMap<Uuid, String>,
    /// Sessions created since (project, id), for watchers of a whole project.
    opened: tokio::sync::broadcast::Sender<(String, Uuid)>,
    /// Sessions whose actors were stopped with a project let go: the MCP registry ends their
    /// streams, so that their clients open them again and load the session where it is served.
    retired: tokio::sync::broadcast::Sender<Vec<Uuid>>,
    /// The populations' owner: draws genomes for new sessions, scores completed ones.
    evolution: Addr<EvolutionActor>,
    /// A project nobody used for this long, and that nothing watches, is let go (`idle.rs`);
    /// None keeps every project loaded.
    idle: Option<std::time::Duration>,
    /// Projects let go while idle whose lease is being handed back, with the generation handed
    /// back: a request meanwhile asks the keeper, behind the hand-back, and takes it anew.
    handing_back: HashMap<String, i64>,
    /// Sessions whose actors joined a project served here: their project, and when a request
    /// last reached them (`idle.rs`). Emptied of a session when its actor stops while idle, of
    /// a project's when the project is let go.
    serving: HashMap<Uuid, idle::Using>,
    /// Sessions the idle sweep is asking to stop, each with what waits for the answer, in the
    /// order the hub took it (`being_asked`, `defer`).
    asking: HashMap<Uuid, Vec<idle::Deferred>>,
    /// Projects the idle sweep is asking as a whole.
    asking_projects: std::collections::HashSet<String>,
    /// Whether this hub holds the `hub` row, which the vacuum runs under (once per database).
    hub_row: HubRow,
    /// How sessions another hub serves are followed here (`followed.rs`); None on SQLite.
    following: Option<followed::Following>,
}

mod followed;
mod idle;
pub use followed::{FollowElsewhere, Followed, LISTED_FOR, ProjectSessions};
pub use idle::{Loaded, Quiet, StopIfQuiet};

/// A project served here.
struct Served {
    /// The generation of its lease it was loaded under (None without project leases).
    generation: Option<i64>,
    /// The store its actors write through: fenced with that generation.
    store: Store,
    table: Addr<LockTableActor>,
    /// Its sessions' actors, stopped with it when this hub lets it go.
    sessions: HashMap<Uuid, Addr<SessionActor>>,
    /// When a request last reached one of its sessions (or its lock table asked for one).
    last_used: std::time::Instant,
}

/// What a session's actor needs of its project (`JoinProject`): the project's lock table, and
/// the store to write through (fenced with the project's lease, where there are leases).
#[derive(Clone)]
pub struct ProjectHere {
    pub table: Addr<LockTableActor>,
    pub store: Store,
}

/// A session's actor joins its project here before it reads its session: the project's lease
/// is taken first (so that nothing its previous holder commits can follow the read), the
/// actor is stopped with the project if this hub lets it go, and it writes through the
/// project's store. Answers `Elsewhere` while another hub serves the project.
#[derive(Message)]
#[rtype(result = "Result<ProjectHere, HubError>")]
pub struct JoinProject {
    pub project: String,
    pub session: Uuid,
    pub actor: Addr<SessionActor>,
}

/// The store to write a project's sessions' rows through outside their actors (the retention
/// sweep's compaction), fenced with the lease this hub holds the project under, the project
/// taken if it is free; `Elsewhere` at once while another hub holds it (the sweep comes
/// back to it).
#[derive(Message)]
#[rtype(result = "Result<Store, HubError>")]
pub struct ProjectStore(pub String);

/// Serve `project` here (its lease taken if it is free), as a request for one of its sessions
/// would; `Elsewhere` while another hub serves it. What a create checks before it draws a genome.
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct ServeProject(pub String);

/// Whether `session`'s project is served here (taken if it is free, as a request for the session
/// would take it), or `Elsewhere`: what an MCP session bound to it asks before this hub serves
/// its requests (`mcp::registry`, `Lookup`). Answered at once for a session whose actor serves
/// here, and without leases; `Ok` for no such session (its request says so).
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct ServesSession(pub Uuid);

/// A session's project, from memory or the database (None: no such session).
#[derive(Message)]
#[rtype(result = "Result<Option<String>, HubError>")]
pub struct ProjectOf(pub Uuid);

/// A receiver of the sessions whose actors are stopped with a project let go, from now on.
#[derive(Message)]
#[rtype(result = "tokio::sync::broadcast::Receiver<Vec<Uuid>>")]
pub struct WatchRetired;

/// Stop now: what the hub sends the actors of a project it let go (their memory may be stale,
/// and their writes are refused by the fence they carry). A request for the project loads it
/// again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

/// What the project leases held changed (the keeper renewed, took or lost some).
#[derive(Message)]
#[rtype(result = "()")]
struct ProjectsHeld(HeldProjects);

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

/// How often the hub looks for projects whose lease ran out unannounced (`let_go_lapsed`).
const LAPSE_CHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// How often the hub vacuums and analyzes a PostgreSQL that runs without autovacuum.
const VACUUM_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Most token digests the hub remembers.
const MAX_TOKEN_INDEX: usize = 100_000;

impl Hub {
    /// Must be called inside a running actix system (it starts the session threads). `leases`:
    /// the project leases, on a PostgreSQL database several hubs may share.
    pub fn new(
        store: Store,
        policy: AccessPolicy,
        evolution: EvolutionSettings,
        leases: Option<ProjectLeases>,
        idle: Option<std::time::Duration>,
        tail: Option<String>,
        hub_row: HubRow,
    ) -> Self {
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
            retired: tokio::sync::broadcast::channel(64).0,
            known: HashMap::new(),
            projects: HashMap::new(),
            leases,
            idle,
            handing_back: HashMap::new(),
            serving: HashMap::new(),
            asking: HashMap::new(),
            asking_projects: Default::default(),
            following: tail.map(followed::Following::new),
            hub_row,
        }
    }

    fn remember_project(&mut self, session: Uuid, project: String) {
        if self.known.len() >= MAX_TOKEN_INDEX {
            self.known.clear();
        }
        self.known.insert(session, project);
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

    /// `project` as served here, under its lease's `generation` (None without leases): loaded
    /// now (its lock table started) if it was not, or if it was under another generation (then
    /// what was loaded is let go first: its memory may be stale).
    fn serve(
        &mut self,
        project: &str,
        generation: Option<i64>,
        ctx: &mut Context<Self>,
    ) -> ProjectHere {
        if self
            .projects
            .get(project)
            .is_some_and(|served| served.generation != generation)
        {
            self.let_go(project);
        }
        if !self.projects.contains_key(project) {
            let store = match (&self.leases, generation) {
                (Some(leases), Some(generation)) => self.store.fenced_by(ProjectFence {
                    holder: leases.holder().clone(),
                    project: project.into(),
                    generation,
                }),
                _ => self.store.clone(),
            };
            let table = self.start_lock_table(project, &store, ctx);
            self.projects.insert(
                project.to_owned(),
                Served {
                    generation,
                    store,
                    table,
                    sessions: HashMap::new(),
                    last_used: std::time::Instant::now(),
                },
            );
        }
        if let Some(served) = self.projects.get_mut(project) {
            served.last_used = std::time::Instant::now();
        }
        let store = self.projects[project].store.clone();
        if !self.projects[project].table.connected() {
            let table = self.start_lock_table(project, &store, ctx);
            if let Some(served) = self.projects.get_mut(project) {
                served.table = table;
            }
        }
        ProjectHere {
            table: self.projects[project].table.clone(),
            store,
        }
    }

    fn start_lock_table(
        &mut self,
        project: &str,
        store: &Store,
        ctx: &mut Context<Self>,
    ) -> Addr<LockTableActor> {
        let (store, hub, key) = (store.clone(), ctx.address(), project.to_owned());
        LockTableActor::start_in_arbiter(&self.next_arbiter(), move |_| {
            LockTableActor::new(key, store, hub)
        })
    }

    /// Where `project` is served now: here (loaded, under its lease if there are leases), or
    /// by another hub (`Elsewhere`, with its url: the request is passed on there, `http::hop`).
    fn project_here(
        &mut self,
        project: String,
        ctx: &mut Context<Self>,
    ) -> fut::LocalBoxActorFuture<Self, Result<ProjectHere, HubError>> {
        let Some(leases) = self.leases.clone() else {
            let here = self.serve(&project, None, ctx);
            return Box::pin(fut::ready(Ok(here)));
        };
        // A request on its way counts as use: the idle sweep does not let it go meanwhile.
        if let Some(served) = self.projects.get_mut(&project) {
            served.last_used = std::time::Instant::now();
        }
        let handed_back = self.handing_back.contains_key(&project);
        Box::pin(
            async move {
                // Let go while idle a moment ago: asked of the keeper itself, whose queue
                // runs the hand-back first (what it last published may still name it held).
                let owner = if handed_back {
                    leases.take_anew(&project).await
                } else {
                    leases.project(&project).await
                };
                (project, owner)
            }
            .into_actor(self)
            .map(move |(project, owner), act, ctx| match owner? {
                ProjectOwner::Here { .. } => {
                    // What counts is what is held now: the answer may be older.
                    let Some(generation) = act.held_generation(&project) else {
                        return Err(HubError::Unavailable(format!(
                            "this hub lost the lease of project {project} meanwhile; retry"
                        )));
                    };
                    match act.handing_back.get(&project) {
                        Some(back) if *back == generation => {
                            return Err(HubError::Unavailable(format!(
                                "project {project} is being handed back after a quiet spell; retry"
                            )));
                        }
                        Some(_) => {
                            act.handing_back.remove(&project);
                        }
                        None => {}
                    }
                    Ok(act.serve(&project, Some(generation), ctx))
                }
                ProjectOwner::Elsewhere { url } => Err(HubError::Elsewhere { project, url }),
            }),
        )
    }

    /// Lets go, and hands back, the projects whose lease ran out while the keeper could not say
    /// so (its call to a database gone silent holds it): none is served past its lease, and
    /// none again under the generation let go (the next request takes it anew, as after an idle
    /// hand-back). Until stop 39 the owner's step-down at the `hub` row's deadline did this.
    fn let_go_lapsed(&mut self) {
        let Some(leases) = &self.leases else {
            return;
        };
        let held = leases.held().borrow().clone();
        let lapsed: Vec<(String, i64)> = self
            .projects
            .iter()
            .filter_map(|(project, served)| {
                let generation = served.generation?;
                (held.published_generation(project) == Some(generation)
                    && held.generation(project).is_none())
                .then(|| (project.clone(), generation))
            })
            .collect();
        for (project, generation) in lapsed {
            self.let_go(&project);
            self.hand_back(&project, generation);
        }
    }

    /// Hands `project`'s lease back (held under `generation`, and let go here): the next request
    /// for it, here or at another hub, takes it anew, under a newer generation.
    fn hand_back(&mut self, project: &str, generation: i64) {
        if let Some(leases) = &self.leases {
            leases.hand_back(project, generation);
            self.handing_back.insert(project.to_owned(), generation);
        }
    }

    fn held_generation(&self, project: &str) -> Option<i64> {
        let leases = self.leases.as_ref()?;
        leases.held().borrow().generation(project)
    }

    /// Stops what was loaded of `project` (its sessions' actors, its lock table): this hub no
    /// longer holds its lease, or holds it under a newer generation. Their writes were refused
    /// from the moment the lease moved (they carry the old generation); a request for one of
    /// its sessions loads it again, under the lease held then.
    fn let_go(&mut self, project: &str) {
        if let Some(served) = self.projects.get(project) {
            log::warn!(
                "project {project}: this hub no longer holds it under the lease it loaded it with; stopping its {} session actors and its lock table",
                served.sessions.len()
            );
        }
        self.stop_serving(project, true);
    }

    /// Stops a served project's session actors, their agents and its lock table, and forgets
    /// it; `announce`: the MCP streams bound to its sessions are ended (`retired`). With leases
    /// they always are (an idle project has none), so that their copies are checked.
    fn stop_serving(&mut self, project: &str, announce: bool) {
        let Some(served) = self.projects.remove(project) else {
            return;
        };
        let mut retired: Vec<Uuid> = served.sessions.keys().copied().collect();
        // With leases another hub may serve the project next, and change the MCP sessions
        // bound to any of its sessions, also those whose actors stopped while idle: the MCP
        // registry checks their copies against their rows (`mcp::registry`; it takes the
        // sessions as a set, so one named twice costs nothing).
        if self.leases.is_some() {
            retired.extend(
                self.known
                    .iter()
                    .filter(|(_, of)| of.as_str() == project)
                    .map(|(id, _)| *id),
            );
        }
        for (id, addr) in served.sessions {
            // The map may already name a newer actor of the session (one that replaced a
            // stopped one): that one is not this project's to stop.
            if self.sessions.get(&id) == Some(&addr) {
                self.sessions.remove(&id);
            }
            if self.serving.get(&id).is_some_and(|u| u.project == project) {
                self.serving.remove(&id);
            }
            addr.do_send(Retire);
        }
        if (announce || self.leases.is_some()) && !retired.is_empty() {
            let _ = self.retired.send(retired);
        }
        served.table.do_send(Retire);
    }

    /// Runs `start` with the actor of `session` (started and loading if need be), and answers
    /// what it yields: at once, so that what it sends the actor is queued in the order the hub
    /// handles commands; or, while the idle sweep asks that actor to stop, once the answer is in
    /// and in the order they came (`idle.rs`, `defer`). None: the hub stopped first.
    fn with_session<T, F>(
        &mut self,
        session: Uuid,
        ctx: &mut Context<Self>,
        start: impl FnOnce(Addr<SessionActor>) -> F + 'static,
    ) -> futures::future::LocalBoxFuture<'static, Option<T>>
    where
        F: std::future::Future<Output = T> + 'static,
        T: 'static,
    {
        if self.being_asked(session) {
            let (reply, replied) = tokio::sync::oneshot::channel();
            self.defer(session, move |hub, ctx| {
                let started = start(hub.session_actor(session, ctx));
                actix::spawn(async move {
                    let _ = reply.send(started.await);
                });
            });
            return Box::pin(async move { replied.await.ok() });
        }
        let started = start(self.session_actor(session, ctx));
        Box::pin(async move { Some(started.await) })
    }

    /// The live actor for `id`, started (and loading) if there is none.
    fn session_actor(&mut self, id: Uuid, ctx: &mut Context<Self>) -> Addr<SessionActor> {
        self.note_use(id);
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

/// The session threads go with the hub: a stopping hub (`src/app/lives.rs`) stops the thread its
/// hub runs on, and nothing of its sessions may run on after it.
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
        if let Some(leases) = &self.leases {
            let changes = futures::stream::unfold(leases.held(), |mut held| async move {
                held.changed().await.ok()?;
                let now = held.borrow_and_update().clone();
                Some((ProjectsHeld(now), held))
            });
            ctx.add_message_stream(changes);
            ctx.run_interval(LAPSE_CHECK, |act, _| act.let_go_lapsed());
        }
        self.start_idle_sweep(ctx);
        // Vacuum and statistics where the database server does not keep them.
        ctx.run_interval(VACUUM_EVERY, |act, _| {
            if !act.hub_row.held() {
                return;
            }
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

    fn handle(&mut self, msg: CreateSession, ctx: &mut Self::Context) -> Self::Result {
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
        // With whom it made: sent again, the create answers them new tokens.
        let made: Vec<&str> = tokens.iter().map(|(ai_id, _)| ai_id.as_str()).collect();
        let key = msg.key.map(|k| (k, serde_json::json!(made).to_string()));
        let project = session.project.clone();
        // The project first: the session's first write is fenced with its lease.
        Box::pin(
            self.project_here(project.clone(), ctx)
                .then(move |here, act, _| {
                    async move {
                        let here = here?;
                        let event = here
                            .store
                            .write_for(row.id, move |c| {
                                let event = queries::insert_session(c, &row, &created)?;
                                if let Some((key, made)) = &key {
                                    let events = std::slice::from_ref(&event);
                                    applied::record_with(c, *key, row.id, events, Some(made))?;
                                }
                                Ok(event)
                            })
                            .await?;
                        Ok::<_, HubError>((here, event))
                    }
                    .into_actor(act)
                })
                .map(move |result, act, ctx| {
                    let (here, event) = result?;
                    session.last_event_id = event.id;
                    let view = session.view();
                    let id = view.session_id;
                    // Its actor starts with the project as it was written under; a project let
                    // go meanwhile loads the session again on its next request.
                    let current = act
                        .projects
                        .get(&project)
                        .is_some_and(|served| served.table == here.table);
                    if current {
                        let (policy, hub) = (act.policy.clone(), ctx.address());
                        let ProjectHere { table, store } = here;
                        let actor =
                            SessionActor::start_in_arbiter(&act.next_arbiter(), move |_| {
                                SessionActor::created(session, store, policy, hub, table)
                            });
                        if let Some(served) = act.projects.get_mut(&project) {
                            served.sessions.insert(id, actor.clone());
                            act.serving.insert(id, idle::Using::now(&project));
                        }
                        act.sessions.insert(id, actor);
                    }
                    act.remember_project(id, project);
                    let _ = act.opened.send((view.project.clone(), id));
                    for digest in digests {
                        act.remember_token(digest, id);
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
        let ToSession {
            session_id,
            command,
        } = msg;
        let reply = self.with_session(session_id, ctx, move |addr| addr.send(command));
        Box::pin(async move { reply.await.ok_or_else(hub_stopped)?? })
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
        let ToSessionReporting {
            session_id,
            command,
            critical_for,
        } = msg;
        let reported = self.with_session(session_id, ctx, move |addr| {
            reporting(addr, command, critical_for)
        });
        Box::pin(async move {
            reported
                .await
                .unwrap_or_else(|| (Err(hub_stopped()), Default::default()))
        })
    }
}

/// `command`'s reply, then what is pending for `ai_id` once it ran. The command is queued at
/// once (in the order the hub handles commands).
fn reporting<M, R>(
    addr: Addr<SessionActor>,
    command: M,
    ai_id: String,
) -> impl std::future::Future<Output = (Result<R, HubError>, crate::domain::digest::Pending)>
where
    M: Message<Result = Result<R, HubError>> + Send + 'static,
    R: Send + 'static,
    SessionActor: Handler<M>,
{
    let request = addr.send(command);
    async move {
        let reply = match request.await {
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
    }
}

fn hub_stopped() -> HubError {
    HubError::Unavailable("the hub stopped before this reached its session; retry".into())
}

/// The actor of a session (started and loading if need be), for the lock table `from`, which
/// tells sessions about grants and expiries. None when `from` is not the lock table of a
/// project served here: a table stopped with its project may still be deciding from its memory,
/// and the session's current actor, loaded under a newer lease, would write its decisions.
#[derive(Message)]
#[rtype(result = "Option<Addr<SessionActor>>")]
pub struct SessionAddr {
    pub session: Uuid,
    pub from: Addr<LockTableActor>,
}

impl Handler<SessionAddr> for Hub {
    type Result = ResponseFuture<Option<Addr<SessionActor>>>;

    fn handle(&mut self, msg: SessionAddr, ctx: &mut Self::Context) -> Self::Result {
        if !self
            .projects
            .values()
            .any(|served| served.table == msg.from)
        {
            return Box::pin(std::future::ready(None));
        }
        // Not while the idle sweep asks the session to stop: a grant told to an actor that then
        // stops would be dropped with it.
        self.with_session(msg.session, ctx, std::future::ready)
    }
}

impl Handler<JoinProject> for Hub {
    type Result = ResponseActFuture<Self, Result<ProjectHere, HubError>>;

    fn handle(&mut self, msg: JoinProject, ctx: &mut Self::Context) -> Self::Result {
        let JoinProject {
            project,
            session,
            actor,
        } = msg;
        Box::pin(
            self.project_here(project.clone(), ctx)
                .map(move |here, act, _| {
                    let here = here?;
                    if let Some(served) = act.projects.get_mut(&project) {
                        served.sessions.insert(session, actor);
                        act.serving.insert(session, idle::Using::now(&project));
                    }
                    Ok(here)
                }),
        )
    }
}

impl Handler<ProjectStore> for Hub {
    type Result = ResponseActFuture<Self, Result<Store, HubError>>;

    fn handle(&mut self, msg: ProjectStore, ctx: &mut Self::Context) -> Self::Result {
        Box::pin(
            self.project_here(msg.0, ctx)
                .map(|here, _, _| here.map(|here| here.store)),
        )
    }
}

impl Handler<ServeProject> for Hub {
    type Result = ResponseActFuture<Self, Result<(), HubError>>;

    fn handle(&mut self, msg: ServeProject, ctx: &mut Self::Context) -> Self::Result {
        Box::pin(
            self.project_here(msg.0, ctx)
                .map(|here, _, _| here.map(|_| ())),
        )
    }
}

impl Handler<ServesSession> for Hub {
    type Result = ResponseActFuture<Self, Result<(), HubError>>;

    fn handle(&mut self, msg: ServesSession, ctx: &mut Self::Context) -> Self::Result {
        let id = msg.0;
        if self.leases.is_none() || self.serving.contains_key(&id) {
            return Box::pin(fut::ready(Ok(())));
        }
        let project = self.handle(ProjectOf(id), ctx);
        Box::pin(project.then(move |project, act, ctx| match project {
            Ok(Some(project)) => act.handle(ServeProject(project), ctx),
            Ok(None) => Box::pin(fut::ready(Ok(()))),
            Err(e) => Box::pin(fut::ready(Err(e))),
        }))
    }
}

impl Handler<ProjectOf> for Hub {
    type Result = ResponseActFuture<Self, Result<Option<String>, HubError>>;

    fn handle(&mut self, msg: ProjectOf, _: &mut Self::Context) -> Self::Result {
        let id = msg.0;
        if let Some(project) = self.known.get(&id) {
            return Box::pin(fut::ready(Ok(Some(project.clone()))));
        }
        let store = self.store.clone();
        Box::pin(
            async move { store.read(move |c| queries::project_of(c, id)).await }
                .into_actor(self)
                .map(move |found, act, _| {
                    if let Ok(Some(project)) = &found {
                        act.remember_project(id, project.clone());
                    }
                    found
                }),
        )
    }
}

impl Handler<WatchRetired> for Hub {
    type Result = actix::MessageResult<WatchRetired>;

    fn handle(&mut self, _: WatchRetired, _: &mut Self::Context) -> Self::Result {
        actix::MessageResult(self.retired.subscribe())
    }
}

impl Handler<ProjectsHeld> for Hub {
    type Result = ();

    fn handle(&mut self, msg: ProjectsHeld, _: &mut Self::Context) {
        let lost: Vec<String> = self
            .projects
            .iter()
            .filter(|(project, served)| {
                // Not `generation`, which also counts validity: a message read late would look
                // like a lease that ran out, and a project let go and served again under the
                // same generation would have two lock tables for a moment.
                served.generation.is_some()
                    && msg.0.published_generation(project) != served.generation
            })
            .map(|(project, _)| project.clone())
            .collect();
        for project in lost {
            self.let_go(&project);
        }
        // Handed back once the keeper no longer publishes the generation let go.
        self.handing_back
            .retain(|project, back| msg.0.published_generation(project) == Some(*back));
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
        if let Some(using) = self.serving.remove(&msg.0)
            && let Some(served) = self.projects.get_mut(&using.project)
        {
            served.sessions.remove(&msg.0);
        }
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
