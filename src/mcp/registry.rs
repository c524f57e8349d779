//! `McpRegistry`: the MCP sessions (`Mcp-Session-Id`) this hub has open, what each is bound to,
//! and its server-to-client stream. Every MCP session is owned here and nowhere else.
//!
//! Each session is also a row in `mcp_sessions` (`Persisted`: version, credentials, binding,
//! log level, channel opt-in, subscriptions), written before the client hears of the change:
//! before `initialize` answers with the id, before a `session_join` answers, before a
//! subscription is confirmed. A request naming a session this process does not hold (it
//! restarted, or another hub handed the id out) loads the row, so a hub restart is invisible
//! to clients: their next request, and their stream resumed with `Last-Event-ID`, simply work.
//! What is not persisted is what a connection owns: the open stream and requests in progress.
//!
//! The row is the truth and memory a copy of it (docs/multi-hub.md, "MCP sessions are rows"):
//! - A copy not bound to a participant is checked against its row at every request (one
//!   primary-key read; such requests are few: those of `initialize` up to the join). Another
//!   hub may have run its `session_join`: a copy older than the row is read again, and a row
//!   that is gone (ended on another hub) ends it here.
//! - A bound copy is served from memory, once its collab session's project is found served
//!   here (`placed`: asked of the hub at its first request but a `ping`, taken if free): a bound MCP
//!   session's requests need its collab session, which only the hub holding its project
//!   serves. One whose project another hub serves is answered `Elsewhere`, and its request is
//!   passed on there (`http::hop`), as is a tool's request that finds it so (the join of a copy
//!   not bound yet). Where another hub may have served it since, the copy is marked, and
//!   checked like an unbound one (and placed again) at its next request: when this hub lets
//!   its project go (`EndStreams`, also when an idle project is handed back), when its stream
//!   cannot be attached (`AttachFailed`), and when a request of it was passed on
//!   (`FoundElsewhere`). Reading the row at every request was measured: it cost PostgreSQL two
//!   thirds or more of the MCP request throughput (BENCHMARKS.md, "an MCP session's row, read
//!   per request or not"). A copy marked because its project was served elsewhere
//!   (`Entry::elsewhere`) asks first where the project is served, and while that is still
//!   another hub its request goes there without the row being read (stop 40); a request that
//!   hub did not serve comes back marked (`Lookup::reread`) and reads the row.
//! - Whatever slips past, a write catches: each names its writer (the copy: its registry's
//!   name and a number) and the revision it read, and is applied only over that revision or
//!   over its own (`mcp_sessions::save`). A stale copy never overwrites another hub's change,
//!   nor does a write still on its way from a copy read again since; the copy is marked, its
//!   stream ended, and the client told to send its change again (`mcp_session_changed`), which
//!   is then served from the row.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use serde::{Deserialize, Serialize};

use super::push::ChannelOptIn;
use crate::actors::Hub;
use crate::actors::messages::{AttachStream, EventSink, MarkShown, ToSession};
use crate::domain::auth::Credential;
use crate::error::HubError;
use crate::store::mcp_sessions::{Saved, Stored};
use crate::store::{Store, mcp_sessions};

/// Most MCP sessions open at once. Beyond it the least recently used session without an open
/// stream is ended to make room; only when every one has a stream is `initialize` refused (503).
pub const MAX_SESSIONS: usize = 10_000;
/// Most MCP sessions one owner may hold: a participant (however many tokens were issued to it),
/// or else one credential (the operator token, or all token-less clients on loopback). Beyond it
/// that owner's least recently used session without an open stream is ended, so a client
/// opening sessions in a loop crowds out its own.
pub const MAX_SESSIONS_PER_CREDENTIAL: usize = 64;

/// Who an MCP session counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Owner {
    Participant(Uuid, String),
    Credential(Credential),
}

impl McpSession {
    fn owner(&self) -> Owner {
        match &self.binding {
            Some(b) => Owner::Participant(b.session_id, b.ai_id.clone()),
            None => Owner::Credential(self.credential_at_start.clone()),
        }
    }
}
/// An MCP session with no request and no open stream for this long ends by itself.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often idle sessions are ended and the rows of used ones marked seen.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A row last seen before this belongs to a session ended by its idleness.
fn idle_since() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc() - chrono::Duration::from_std(IDLE_TIMEOUT).unwrap_or_default()
}
/// Notifications waiting for one session's GET stream.
pub const CONTROL_QUEUE: usize = 64;

/// The resource URIs one MCP session subscribed to.
pub type Subscriptions = std::sync::Arc<std::collections::BTreeSet<String>>;

/// Most resources one MCP session may subscribe to.
pub const MAX_SUBSCRIPTIONS: usize = 64;

/// The participant an MCP session acts as.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    pub session_id: Uuid,
    pub ai_id: String,
}

/// What a request needs to know about its MCP session.
#[derive(Debug, Clone)]
pub struct McpSession {
    pub version: &'static str,
    /// The `Authorization` the session was initialized with; later requests may not switch.
    pub credential_at_start: Credential,
    /// Presented on every actor message this MCP session sends.
    pub credential: Credential,
    pub binding: Option<Binding>,
    /// Minimum level of `notifications/message` the client asked for (`None`: none sent).
    pub log_level: Option<String>,
    /// A 2026-07-28 request: no session to bind, so tools that would bind are not offered.
    pub stateless: bool,
    /// Critical events also go out as Claude Code channel notifications (`push`), and why.
    pub channel: Option<ChannelOptIn>,
}

/// What an MCP session's row holds: everything a request needs that outlives a connection.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Persisted {
    version: String,
    credential_at_start: Credential,
    credential: Credential,
    binding: Option<Binding>,
    log_level: Option<String>,
    channel: Option<ChannelOptIn>,
    subscriptions: Vec<String>,
}

impl Persisted {
    fn of(entry: &Entry) -> Persisted {
        let s = &entry.session;
        Persisted {
            version: s.version.to_owned(),
            credential_at_start: s.credential_at_start.clone(),
            credential: s.credential.clone(),
            binding: s.binding.clone(),
            log_level: s.log_level.clone(),
            channel: s.channel,
            subscriptions: entry.subscriptions.borrow().iter().cloned().collect(),
        }
    }

    /// The entry a loaded row stands for; `None` for a version this build no longer speaks.
    fn into_entry(self, rev: i64) -> Option<Entry> {
        let version = super::protocol::SUPPORTED_VERSIONS
            .into_iter()
            .find(|v| *v == self.version)?;
        let subscriptions: Subscriptions = std::sync::Arc::new(
            self.subscriptions
                .into_iter()
                .take(MAX_SUBSCRIPTIONS)
                .collect(),
        );
        let mut entry = Entry::new(McpSession {
            version,
            credential_at_start: self.credential_at_start,
            credential: self.credential,
            binding: self.binding,
            log_level: self.log_level,
            stateless: false,
            channel: self.channel,
        });
        entry.subscriptions.send_replace(subscriptions);
        entry.rev = rev;
        entry.base = rev;
        Some(entry)
    }
}

struct Entry {
    session: McpSession,
    /// The revision of the row last written for it.
    rev: i64,
    /// The revision of the row as this copy was read (0: made here): another writer's revision
    /// above it means this copy is stale.
    base: i64,
    /// This copy's name on the rows it writes: its registry's and a number of its own, so that
    /// a write still on its way from a copy dropped and read again is another writer's.
    writer: String,
    /// To be checked against its row at its next request before it is served from memory: its
    /// project was let go here, its stream could not be attached, or a write of it met a row
    /// changed elsewhere.
    check: bool,
    /// How many times it was marked: a check whose read started before the last mark does
    /// not clear it.
    marks: u64,
    /// Bound, and its collab session's project found served here since it was last marked:
    /// its requests are served here without asking the hub (`Lookup`).
    placed: bool,
    /// Bound, and marked because its collab session's project was found served by another
    /// hub: its next request asks where the project is served before the row is read, and
    /// goes there unread if it is still elsewhere (`Lookup`).
    elsewhere: bool,
    /// Resource URIs the client subscribed to; the GET stream watches this set.
    subscriptions: watch::Sender<Subscriptions>,
    /// The `logging/setLevel` level, watched by the GET stream (log entries for events).
    log_level: watch::Sender<Option<String>>,
    last_seen: Instant,
    control: Option<mpsc::Sender<Value>>,
    events: Option<EventSink>,
    /// Cursor the open stream asked for (`Last-Event-ID`), used when it attaches later, and
    /// whose it is: (session, participant). Ids count per session, and what one participant
    /// saw says nothing of what another may see.
    after: Option<i64>,
    after_of: Option<(Uuid, String)>,
    /// What the open stream wrote last (`sse::Written`): a stream attached again after its
    /// participant left and joined again resumes after it.
    written: crate::mcp::sse::Written,
    /// Requests in progress, by JSON-RPC id, with the switch that cancels each.
    calls: HashMap<String, tokio::sync::oneshot::Sender<()>>,
    /// A create or join is running that will bind this session: a second one must not.
    binding_pending: bool,
}

impl Entry {
    fn new(session: McpSession) -> Entry {
        let level = session.log_level.clone();
        Entry {
            session,
            rev: 0,
            base: 0,
            writer: String::new(),
            check: false,
            marks: 0,
            placed: false,
            elsewhere: false,
            subscriptions: watch::channel(Subscriptions::default()).0,
            log_level: watch::channel(level).0,
            last_seen: Instant::now(),
            control: None,
            events: None,
            after: None,
            after_of: None,
            written: Default::default(),
            calls: HashMap::new(),
            binding_pending: false,
        }
    }

    fn stream_open(&self) -> bool {
        self.control.as_ref().is_some_and(|c| !c.is_closed())
    }
}

pub struct McpRegistry {
    hub: Addr<Hub>,
    store: Store,
    /// This registry's name (one per process life), and how many copies it has named after it.
    name: String,
    copies: u64,
    sessions: HashMap<String, Entry>,
    /// Sessions ended here whose rows are still being deleted: not to be loaded back meanwhile.
    ending: std::collections::HashSet<String>,
    /// True once the hub stops serving (`CloseStreams`): long polls answer at once.
    closing: tokio::sync::watch::Sender<bool>,
}

impl McpRegistry {
    pub fn new(hub: Addr<Hub>, store: Store) -> Self {
        McpRegistry {
            hub,
            store,
            name: Uuid::new_v4().to_string(),
            copies: 0,
            sessions: HashMap::new(),
            ending: Default::default(),
            closing: tokio::sync::watch::channel(false).0,
        }
    }
}

/// What a client hears whose change met a row another hub changed since this copy was read.
fn changed_elsewhere() -> HubError {
    HubError::Conflict {
        code: "mcp_session_changed",
        message: "this MCP session was changed by another hub meanwhile; send the request again"
            .into(),
    }
}

/// What a client hears whose MCP session ended (here, on another hub, or by its idleness).
fn ended() -> HubError {
    HubError::NotFound {
        code: "mcp_session_not_found",
        message: "MCP session not found or ended; initialize a new one".into(),
    }
}

impl McpRegistry {
    /// Writes the session's current state as its next revision; resolves after the commit.
    /// Revisions let this registry's updates reach the writer in any order: the row keeps the
    /// newest. A copy found stale by the write (another hub changed the row since it was read)
    /// is marked, one whose row is gone dropped, and the change refused: the client sends it
    /// again, and that is served from the row.
    fn persist(
        &mut self,
        id: &str,
    ) -> impl ActorFuture<Self, Output = Result<(), HubError>> + 'static {
        let state = self.sessions.get_mut(id).map(|entry| {
            entry.rev += 1;
            (
                serde_json::to_string(&Persisted::of(entry)).unwrap_or_default(),
                entry.rev,
                entry.base,
                entry.writer.clone(),
            )
        });
        let (store, key) = (self.store.clone(), id.to_owned());
        let id = id.to_owned();
        async move {
            match state {
                Some((state, rev, base, writer)) => {
                    let copy = writer.clone();
                    store
                        .write(move |c| mcp_sessions::save(c, &key, &state, rev, &writer, base))
                        .await
                        .map(|saved| Some((saved, copy)))
                }
                None => Ok(None),
            }
        }
        .into_actor(self)
        .map(move |saved, act, _| match saved? {
            // Dropped meanwhile (a bind that found its copy gone must not answer "bound").
            None => Err(ended()),
            Some((Saved::Written | Saved::Superseded, _)) => Ok(()),
            Some((Saved::Gone, _)) => {
                act.sessions.remove(&id);
                Err(ended())
            }
            Some((_moved, copy)) => {
                // Only the copy that wrote: one read again since is another copy. It is checked
                // at its next request (read again from the row then) and its stream ends,
                // which may carry the identity the row no longer holds.
                if let Some(entry) = act.sessions.get_mut(&id).filter(|e| e.writer == copy) {
                    entry.mark();
                }
                Err(changed_elsewhere())
            }
        })
    }

    /// `persist` for changes the client is not waiting on (a failure is logged).
    fn persist_later(&mut self, id: &str, ctx: &mut Context<Self>) {
        let write = self.persist(id).map(|saved, _, _| {
            if let Err(e) = saved {
                log::warn!("cannot save an MCP session: {e}");
            }
        });
        ctx.spawn(write);
    }

    /// Deletes the row of a session this process ended; resolves after the commit. Until then
    /// the id is in `ending`, so that no request loads it back.
    fn forget(
        &mut self,
        id: String,
    ) -> impl ActorFuture<Self, Output = Result<(), HubError>> + 'static {
        self.ending.insert(id.clone());
        let (store, key) = (self.store.clone(), id.clone());
        async move { store.write(move |c| mcp_sessions::delete(c, &[key])).await }
            .into_actor(self)
            .map(move |deleted, act, _| {
                act.ending.remove(&id);
                deleted
            })
    }

    /// `forget` without waiting (a failure is logged: the idle sweep deletes the row later).
    fn forget_later(&mut self, id: String, ctx: &mut Context<Self>) {
        let forget = self.forget(id).map(|deleted, _, _| {
            if let Err(e) = deleted {
                log::warn!("cannot delete an ended MCP session: {e}");
            }
        });
        ctx.spawn(forget);
    }

    /// Room for one more session of `owner`: ends its least recently used idle session when it
    /// holds its limit, and the biggest owner's when the hub is full.
    fn make_room(&mut self, owner: &Owner, ctx: &mut Context<Self>) -> Result<(), HubError> {
        let mine = self
            .sessions
            .values()
            .filter(|e| &e.session.owner() == owner)
            .count();
        if mine >= MAX_SESSIONS_PER_CREDENTIAL {
            self.evict_idle(owner, ctx).ok_or_else(|| {
                HubError::Unavailable(format!(
                    "you hold {MAX_SESSIONS_PER_CREDENTIAL} MCP sessions with open streams; end one (DELETE) first"
                ))
            })?;
        }
        if self.sessions.len() >= MAX_SESSIONS {
            // Full: the owner holding the most sessions makes room, not a bystander.
            let mut counts: HashMap<Owner, usize> = HashMap::new();
            for e in self.sessions.values().filter(|e| !e.stream_open()) {
                *counts.entry(e.session.owner()).or_default() += 1;
            }
            let biggest = counts.into_iter().max_by_key(|(_, n)| *n).map(|(o, _)| o);
            biggest
                .and_then(|o| self.evict_idle(&o, ctx))
                .ok_or_else(|| {
                    HubError::Unavailable(format!(
                        "{MAX_SESSIONS} MCP sessions are open; end one (DELETE) or retry later"
                    ))
                })?;
        }
        Ok(())
    }

    /// Connects the open stream of `id` to its participant's agent, if both exist.
    /// Attaches the open stream of MCP session `id` to its collab session's agent. If that
    /// fails (the session is not served here now: its project is held elsewhere, or being
    /// taken), the stream is ended rather than left open and silent: its client opens it
    /// again, and that tries again.
    fn attach(&self, id: &str, ctx: &Context<Self>) {
        let Some(entry) = self.sessions.get(id) else {
            return;
        };
        let (Some(binding), Some(sink)) = (&entry.session.binding, &entry.events) else {
            return;
        };
        // Cursors of this participant in this session only; none: the participant's own
        // acknowledged cursor.
        let (session, ai_id) = (binding.session_id, binding.ai_id.as_str());
        let asked = entry.after.filter(|_| {
            entry
                .after_of
                .as_ref()
                .is_some_and(|(s, a)| *s == session && a == ai_id)
        });
        let after = asked.max(entry.written.for_participant(session, ai_id));
        let msg = ToSession {
            session_id: binding.session_id,
            command: AttachStream {
                credential: entry.session.credential.clone(),
                key: id.to_owned(),
                after,
                sink: sink.clone(),
            },
        };
        let (hub, registry) = (self.hub.clone(), ctx.address());
        let (id, sink) = (id.to_owned(), sink.clone());
        actix::spawn(async move {
            let failed = match hub.send(msg).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            log::warn!("cannot attach MCP stream: {failed}; ending it");
            registry.do_send(AttachFailed { id, sink });
        });
    }
}

impl McpRegistry {
    /// Ends `owner`'s least recently used session without an open stream; `None` when there is
    /// none.
    fn evict_idle(&mut self, owner: &Owner, ctx: &mut Context<Self>) -> Option<()> {
        let victim = self
            .sessions
            .iter()
            .filter(|(_, e)| !e.stream_open())
            .filter(|(_, e)| &e.session.owner() == owner)
            .min_by_key(|(_, e)| e.last_seen)
            .map(|(id, _)| id.clone())?;
        log::debug!("MCP session {victim} ended to make room");
        self.sessions.remove(&victim);
        self.forget_later(victim, ctx);
        Some(())
    }
}

impl Actor for McpRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        // Streams of sessions whose actors stopped with a project let go end here: their
        // clients open them again, and that loads the session where it is served.
        let hub = self.hub.clone();
        ctx.wait(
            async move { hub.send(crate::actors::hub::WatchRetired).await.ok() }
                .into_actor(self)
                .map(|retired, _, ctx| {
                    let Some(retired) = retired else { return };
                    let retired = futures::stream::unfold(retired, |mut rx| async move {
                        use tokio::sync::broadcast::error::RecvError;
                        let sessions = match rx.recv().await {
                            Ok(sessions) => Some(sessions),
                            // Which ones is lost: every stream ends.
                            Err(RecvError::Lagged(_)) => None,
                            Err(RecvError::Closed) => return None,
                        };
                        Some((EndStreams(sessions), rx))
                    });
                    ctx.add_message_stream(retired);
                }),
        );
        ctx.run_interval(SWEEP_EVERY, |act, _| {
            let now = Instant::now();
            act.sessions
                .retain(|_, e| e.stream_open() || now.duration_since(e.last_seen) < IDLE_TIMEOUT);
            // Rows of sessions used since the last sweep are marked seen; rows nobody used for
            // the idle timeout (here or on another process) go.
            let seen: Vec<String> = act
                .sessions
                .iter()
                .filter(|(_, e)| {
                    e.stream_open() || now.duration_since(e.last_seen) <= SWEEP_EVERY * 2
                })
                .map(|(id, _)| id.clone())
                .collect();
            let stale = idle_since();
            let store = act.store.clone();
            actix::spawn(async move {
                match store
                    .write(move |c| mcp_sessions::sweep(c, &seen, stale))
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => log::debug!("{n} idle MCP sessions ended"),
                    Err(e) => log::warn!("cannot sweep MCP sessions: {e}"),
                }
            });
            // The keys of requests passed on between hubs (`store::applied`), a chunk per write.
            let store = act.store.clone();
            actix::spawn(async move {
                use crate::store::applied::{KEPT, PRUNE_CHUNK, prune};
                let before = chrono::Utc::now().naive_utc()
                    - chrono::Duration::from_std(KEPT).unwrap_or_default();
                loop {
                    match store.write(move |c| prune(c, before)).await {
                        Ok(n) if (n as i64) < PRUNE_CHUNK => break,
                        Ok(_) => {}
                        Err(e) => {
                            log::warn!("cannot forget old request keys: {e}");
                            break;
                        }
                    }
                }
            });
        });
    }
}

/// Opens an MCP session after `initialize`; replies with its new id.
#[derive(Message)]
#[rtype(result = "Result<String, HubError>")]
pub struct Open(pub McpSession);

impl Handler<Open> for McpRegistry {
    type Result = ResponseActFuture<Self, Result<String, HubError>>;

    fn handle(&mut self, msg: Open, ctx: &mut Self::Context) -> Self::Result {
        if let Err(e) = self.make_room(&msg.0.owner(), ctx) {
            return Box::pin(fut::ready(Err(e)));
        }
        // 122 random bits, visible ASCII as the spec asks.
        let id = Uuid::new_v4().to_string();
        let mut entry = Entry::new(msg.0);
        entry.rev = 1;
        entry.writer = self.next_writer();
        let writer = entry.writer.clone();
        let state = serde_json::to_string(&Persisted::of(&entry)).unwrap_or_default();
        self.sessions.insert(id.clone(), entry);
        // The id is handed out only once its row is committed: a restart cannot forget it.
        let (store, key) = (self.store.clone(), id.clone());
        let write = async move {
            store
                .write(move |c| mcp_sessions::create(c, &key, &state, &writer))
                .await
        };
        Box::pin(
            write
                .into_actor(self)
                .map(move |saved, act, _| match saved {
                    Ok(()) => Ok(id),
                    Err(e) => {
                        act.sessions.remove(&id);
                        Err(e)
                    }
                }),
        )
    }
}

/// Fires when the client cancels the request it was handed out for.
pub type Cancellation = tokio::sync::oneshot::Receiver<()>;

/// The session behind an `Mcp-Session-Id`, if it is open. With `track` (a JSON-RPC request
/// id), the request is also registered for cancellation, in the same round trip.
#[derive(Message)]
#[rtype(result = "Result<Option<(McpSession, Option<Cancellation>)>, HubError>")]
pub struct Lookup {
    pub id: String,
    pub track: Option<String>,
    /// A bound copy is placed before it serves (module doc); not for a `ping`, which needs
    /// nothing of its collab session, and must not take its project (an idle one let go
    /// would be taken again by every ping of its clients).
    pub place: bool,
    /// Run here again after the hub it was passed on to did not serve it (`http::hop::RunAgain`):
    /// a copy passed on unread is read from its row first (its MCP session may have left its
    /// collab session there, and joined one of another project).
    pub reread: bool,
}

impl McpRegistry {
    fn found(
        &mut self,
        id: &str,
        track: Option<String>,
    ) -> Option<(McpSession, Option<Cancellation>)> {
        let entry = self.sessions.get_mut(id)?;
        entry.last_seen = Instant::now();
        let cancel = track.and_then(|request| {
            // Calls whose receiver is gone (answered, or abandoned) are forgotten here.
            entry.calls.retain(|_, tx| !tx.is_closed());
            if entry.calls.len() >= MAX_CALLS {
                return None; // still served, just not cancellable
            }
            let (tx, rx) = tokio::sync::oneshot::channel();
            entry.calls.insert(request, tx);
            Some(rx)
        });
        Some((entry.session.clone(), cancel))
    }
}

impl Handler<Lookup> for McpRegistry {
    type Result =
        ResponseActFuture<Self, Result<Option<(McpSession, Option<Cancellation>)>, HubError>>;

    fn handle(&mut self, msg: Lookup, _: &mut Self::Context) -> Self::Result {
        if !msg.place {
            return self.copy(msg);
        }
        let id = msg.id.clone();
        if msg.reread
            && let Some(entry) = self.sessions.get_mut(&id)
        {
            entry.elsewhere = false;
        }
        if let Some(session) = self.passed_on_unread(&id) {
            // Where its project is served first: a request that goes on to another hub is
            // served there from the row, and reading it here first cost every such request
            // a round trip (BENCHMARKS.md, "every hub serves (stop 39)").
            let ask = self.hub.send(crate::actors::hub::ServesSession(session));
            return Box::pin(ask.into_actor(self).then(move |served, act, _| {
                match served.map_err(HubError::from).and_then(|served| served) {
                    // Still elsewhere, or the hub cannot say now (asking again after reading
                    // the row would only wait twice).
                    Err(e) => Box::pin(fut::ready(Err(e))) as fut::LocalBoxActorFuture<Self, Found>,
                    // Served here now: read and placed as usual.
                    Ok(()) => {
                        if let Some(entry) = act.sessions.get_mut(&id) {
                            entry.elsewhere = false;
                        }
                        Box::pin(
                            act.copy(msg)
                                .then(move |found, act, _| act.placed(id, found)),
                        )
                    }
                }
            }));
        }
        Box::pin(
            self.copy(msg)
                .then(move |found, act, _| act.placed(id, found)),
        )
    }
}

type Found = Result<Option<(McpSession, Option<Cancellation>)>, HubError>;

impl McpRegistry {
    /// The collab session of copy `id` if it was marked only because its project was served by
    /// another hub (`Entry::elsewhere`); counted as used, as a request served from it would be
    /// (the idle sweep must not end a session whose requests all go on to another hub).
    fn passed_on_unread(&mut self, id: &str) -> Option<Uuid> {
        let entry = self
            .sessions
            .get_mut(id)
            .filter(|e| e.check && e.elsewhere)?;
        entry.last_seen = Instant::now();
        entry.session.binding.as_ref().map(|b| b.session_id)
    }

    /// A bound copy found is served here only once its collab session's project is found
    /// served here (taken if free), which is remembered until the copy is marked. One whose
    /// project another hub serves is answered `Elsewhere` (its request goes there, `http::hop`)
    /// and marked: its row may change there.
    fn placed(&mut self, id: String, found: Found) -> fut::LocalBoxActorFuture<Self, Found> {
        let session = match &found {
            Ok(Some((session, _))) => session.binding.as_ref().map(|b| b.session_id),
            _ => None,
        };
        let Some((session, entry)) = session.zip(self.sessions.get(&id)) else {
            return Box::pin(fut::ready(found));
        };
        if entry.placed {
            return Box::pin(fut::ready(found));
        }
        let marks = entry.marks;
        let ask = self.hub.send(crate::actors::hub::ServesSession(session));
        Box::pin(ask.into_actor(self).map(move |served, act, _| {
            let entry = act.sessions.get_mut(&id);
            match served.map_err(HubError::from).and_then(|served| served) {
                Ok(()) => {
                    if let Some(entry) = entry.filter(|e| e.marks == marks) {
                        entry.placed = true;
                    }
                    found
                }
                Err(e) => {
                    if let (HubError::Elsewhere { .. }, Some(entry)) = (&e, entry) {
                        entry.mark_elsewhere();
                    }
                    Err(e)
                }
            }
        }))
    }

    /// The copy of `msg.id` to serve a request from: from memory if it is current, else read
    /// again from its row.
    fn copy(&mut self, mut msg: Lookup) -> fut::LocalBoxActorFuture<Self, Found> {
        // A copy bound to a participant is current (module doc): served from memory.
        if self
            .sessions
            .get(&msg.id)
            .is_some_and(|e| e.session.binding.is_some() && !e.check)
        {
            return Box::pin(fut::ready(Ok(self.found(&msg.id, msg.track))));
        }
        // An unbound copy, or one marked, is checked against the row: a request of one held here
        // is registered for cancellation at once, as before the row is read, so that a
        // `notifications/cancelled` sent right after it finds it.
        let early = self
            .sessions
            .contains_key(&msg.id)
            .then(|| self.found(&msg.id, msg.track.take()))
            .flatten()
            .and_then(|(_, cancel)| cancel);
        let marks = self.sessions.get(&msg.id).map(|e| e.marks);
        // The row: handed out before a restart or by another hub, or bound by another hub since
        // it was read here.
        let (store, id) = (self.store.clone(), msg.id.clone());
        // A copy held here was used since its row was last marked seen, which may be a sweep
        // away: any row of it counts (the sweep deletes the abandoned ones).
        let fresh = match marks {
            Some(_) => chrono::DateTime::UNIX_EPOCH.naive_utc(),
            None => idle_since(),
        };
        let load = async move { store.read(move |c| mcp_sessions::load(c, &id, fresh)).await };
        Box::pin(load.into_actor(self).map(move |loaded, act, ctx| {
            let Some(row) = loaded? else {
                // Ended on another hub (or swept as idle): ended here too.
                act.sessions.remove(&msg.id);
                return Ok(None);
            };
            if act.ending.contains(&msg.id) {
                return Ok(None);
            }
            // Requests in progress keep their cancellation across a copy read again.
            let mut calls = HashMap::new();
            if let Some(copy) = act.sessions.get_mut(&msg.id)
                && current(copy, &row)
                && Some(copy.marks) == marks
            {
                copy.check = false;
            }
            if let Some(stale) = act.sessions.get(&msg.id).filter(|e| !current(e, &row)) {
                if stale.binding_pending {
                    // Bound elsewhere while a join runs here: that join's write is refused.
                    return Err(changed_elsewhere());
                }
                log::debug!("MCP session {} changed on another hub; read again", msg.id);
                calls = act
                    .sessions
                    .remove(&msg.id)
                    .map(|e| e.calls)
                    .unwrap_or_default();
            }
            if !act.sessions.contains_key(&msg.id) {
                let Some(mut entry) = serde_json::from_str::<Persisted>(&row.state)
                    .ok()
                    .and_then(|p| p.into_entry(row.rev))
                else {
                    log::warn!(
                        "MCP session {} has an unreadable row; treated as ended",
                        msg.id
                    );
                    return Ok(None);
                };
                entry.calls = calls;
                entry.writer = act.next_writer();
                act.make_room(&entry.session.owner(), ctx)?;
                act.sessions.insert(msg.id.clone(), entry);
                log::debug!("MCP session {} loaded from the database", msg.id);
            }
            Ok(act
                .found(&msg.id, msg.track)
                .map(|(session, cancel)| (session, cancel.or(early))))
        }))
    }
}

impl Entry {
    /// To be checked against its row at its next request; its streams end (they may carry an
    /// identity the row no longer holds; the client opens them again with its last event id).
    fn mark(&mut self) {
        self.check = true;
        self.placed = false;
        self.elsewhere = false;
        self.marks += 1;
        self.control = None;
        self.events = None;
    }

    /// Marked because its collab session's project was found served by another hub, where
    /// its row may change. Its binding changes only by a leave (and a join after it), which
    /// that hub serves; so while the project stays there its requests are passed on without
    /// the row being read (`Lookup`), and one that hub did not serve (the MCP session left,
    /// and joined a session of another project) runs here again with the row read
    /// (`Lookup::reread`).
    fn mark_elsewhere(&mut self) {
        self.mark();
        self.elsewhere = self.session.binding.is_some();
    }
}

impl McpRegistry {
    /// A name for a new copy's writes.
    fn next_writer(&mut self) -> String {
        self.copies += 1;
        format!("{}/{}", self.name, self.copies)
    }
}

/// Whether a copy still stands for `row`: the row was last written by this copy (its own writes
/// may still be on their way), or holds the revision the copy was read at or an older one (a
/// read that started before the copy was read again).
fn current(entry: &Entry, row: &Stored) -> bool {
    row.writer == entry.writer || row.rev <= entry.base
}

/// Binds the MCP session to a participant (after `session_join`/`session_create`); answers
/// once the binding is stored.
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct Bind {
    pub id: String,
    pub credential: Credential,
    pub binding: Binding,
}

impl Handler<Bind> for McpRegistry {
    type Result = ResponseActFuture<Self, Result<(), HubError>>;

    fn handle(&mut self, msg: Bind, ctx: &mut Self::Context) -> Self::Result {
        let mut copy = None;
        if let Some(entry) = self.sessions.get_mut(&msg.id) {
            copy = Some(entry.writer.clone());
            entry.binding_pending = false;
            entry.session.credential = msg.credential;
            entry.session.binding = Some(msg.binding);
            // The tools this session may use changed with its identity.
            if let Some(control) = &entry.control {
                let _ = control.try_send(crate::mcp::protocol::notification(
                    "notifications/tools/list_changed",
                    Value::Null,
                ));
            }
            self.attach(&msg.id, ctx);
        }
        let id = msg.id;
        Box::pin(self.persist(&id).map(move |saved, act, _| {
            // Not stored: the copy takes back the identity it started with (that copy only),
            // so that no later request acts as a participant its row does not name.
            if saved.is_err()
                && let Some(entry) = act
                    .sessions
                    .get_mut(&id)
                    .filter(|e| Some(&e.writer) == copy.as_ref())
            {
                entry.session.binding = None;
                entry.session.credential = entry.session.credential_at_start.clone();
                entry.mark();
            }
            saved
        }))
    }
}

/// Claims the right to bind an MCP session before a create or join runs, so that two calls at
/// once on one unbound session cannot both take an identity. Cleared by `Bind`, or by
/// `ReleaseBind` when the call fails.
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct ReserveBind(pub String);

impl Handler<ReserveBind> for McpRegistry {
    type Result = Result<(), HubError>;

    fn handle(&mut self, msg: ReserveBind, _: &mut Self::Context) -> Self::Result {
        let entry = self.sessions.get_mut(&msg.0).ok_or_else(ended)?;
        if entry.binding_pending || entry.session.binding.is_some() {
            return Err(HubError::Conflict {
                code: "already_bound",
                message: "this MCP session is taking on (or has) an identity already; open another MCP session to act as someone else".into(),
            });
        }
        entry.binding_pending = true;
        Ok(())
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct ReleaseBind(pub String);

impl Handler<ReleaseBind> for McpRegistry {
    type Result = ();

    fn handle(&mut self, msg: ReleaseBind, _: &mut Self::Context) {
        if let Some(entry) = self.sessions.get_mut(&msg.0) {
            entry.binding_pending = false;
        }
    }
}

/// Drops the binding (after `session_leave`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unbind(pub String);

impl Handler<Unbind> for McpRegistry {
    type Result = ();

    fn handle(&mut self, msg: Unbind, ctx: &mut Self::Context) {
        if let Some(entry) = self.sessions.get_mut(&msg.0) {
            entry.session.binding = None;
            // Back to what its requests prove (never to "no credential", which on loopback
            // would be the operator).
            entry.session.credential = entry.session.credential_at_start.clone();
            // The stream stays open with its sink: joining again attaches it to the new
            // identity's agent, after the last event it wrote (`attach`).
            self.persist_later(&msg.0, ctx);
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct SetLogLevel {
    pub id: String,
    pub level: String,
}

impl Handler<SetLogLevel> for McpRegistry {
    type Result = ();

    fn handle(&mut self, msg: SetLogLevel, ctx: &mut Self::Context) {
        if let Some(entry) = self.sessions.get_mut(&msg.id) {
            entry.log_level.send_replace(Some(msg.level.clone()));
            entry.session.log_level = Some(msg.level);
            self.persist_later(&msg.id, ctx);
        }
    }
}

/// Opens the session's GET stream, replacing (and so ending) any earlier one: a client that
/// reconnects with `Last-Event-ID` may do so before the hub noticed the old connection died.
/// Each message still goes to exactly one stream.
#[derive(Message)]
#[rtype(result = "Result<StreamReceivers, HubError>")]
pub struct OpenStream {
    pub id: String,
    pub after: Option<i64>,
}

pub struct StreamReceivers {
    pub subscriptions: watch::Receiver<Subscriptions>,
    pub log_level: watch::Receiver<Option<String>>,
    pub channel: Option<ChannelOptIn>,
    pub control: mpsc::Receiver<Value>,
    pub events: mpsc::Receiver<crate::actors::messages::Delivery>,
    pub written: crate::mcp::sse::Written,
}

/// Events waiting for one stream before the agent falls back to the log.
pub const EVENT_QUEUE: usize = 256;

impl Handler<OpenStream> for McpRegistry {
    type Result = Result<StreamReceivers, HubError>;

    fn handle(&mut self, msg: OpenStream, ctx: &mut Self::Context) -> Self::Result {
        if *self.closing.borrow() {
            // It would be served by parts about to go (a stop) and hold their stop.
            return Err(HubError::Unavailable(
                "this hub is stopping; open the stream again".into(),
            ));
        }
        let entry = self.sessions.get_mut(&msg.id).ok_or_else(ended)?;
        let (control_tx, control) = mpsc::channel(CONTROL_QUEUE);
        let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
        entry.control = Some(control_tx);
        entry.events = Some(events_tx);
        entry.after = msg.after;
        // Last-Event-ID is what the client received of the stream before: whose the last event
        // it wrote was, or (none written) the identity bound now.
        entry.after_of = entry.written.participant().or_else(|| {
            entry
                .session
                .binding
                .as_ref()
                .map(|b| (b.session_id, b.ai_id.clone()))
        });
        entry.written = Default::default();
        let written = entry.written.clone();
        entry.last_seen = Instant::now();
        let subscriptions = entry.subscriptions.subscribe();
        let log_level = entry.log_level.subscribe();
        let channel = entry.session.channel;
        self.attach(&msg.id, ctx);
        Ok(StreamReceivers {
            subscriptions,
            log_level,
            channel,
            control,
            events,
            written,
        })
    }
}

/// Ends an MCP session (DELETE); replies whether it existed.
#[derive(Message)]
#[rtype(result = "Result<bool, HubError>")]
pub struct Close(pub String);

impl Handler<Close> for McpRegistry {
    type Result = ResponseActFuture<Self, Result<bool, HubError>>;

    fn handle(&mut self, msg: Close, _: &mut Self::Context) -> Self::Result {
        let existed = self.sessions.remove(&msg.0).is_some();
        // Ended means ended everywhere: the row goes before the client hears so.
        Box::pin(
            self.forget(msg.0)
                .map(move |deleted, _, _| deleted.map(|()| existed)),
        )
    }
}

/// Adds (`on`) or removes a resource subscription.
#[derive(Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct Subscribe {
    pub id: String,
    pub uri: String,
    pub on: bool,
}

impl Handler<Subscribe> for McpRegistry {
    type Result = ResponseActFuture<Self, Result<(), HubError>>;

    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) -> Self::Result {
        let Some(entry) = self.sessions.get_mut(&msg.id) else {
            return Box::pin(fut::ready(Err(ended())));
        };
        let mut result = Ok(());
        let changed = entry.subscriptions.send_if_modified(|subs| {
            if !msg.on {
                return std::sync::Arc::make_mut(subs).remove(&msg.uri);
            }
            if subs.len() >= MAX_SUBSCRIPTIONS && !subs.contains(&msg.uri) {
                result = Err(HubError::invalid(
                    "uri",
                    format!("at most {MAX_SUBSCRIPTIONS} subscriptions per MCP session"),
                ));
                return false;
            }
            std::sync::Arc::make_mut(subs).insert(msg.uri.clone())
        });
        if result.is_err() || !changed {
            return Box::pin(fut::ready(result));
        }
        Box::pin(self.persist(&msg.id))
    }
}

/// Ends every open stream and answers every waiting long poll (the hub is stopping, or
/// stepping down); the MCP sessions themselves stay.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseStreams;

impl Handler<CloseStreams> for McpRegistry {
    type Result = ();

    fn handle(&mut self, _: CloseStreams, _: &mut Self::Context) {
        for entry in self.sessions.values_mut() {
            entry.control = None;
            entry.events = None;
        }
        self.closing.send_replace(true);
    }
}

/// Ends the open streams of MCP sessions bound to these collab sessions (all: None), whose
/// actors stopped with a project this hub let go, and marks their copies to be checked against
/// their rows. Nothing is lost: a client opens its stream again with its last event id.
#[derive(Message)]
#[rtype(result = "()")]
struct EndStreams(Option<Vec<Uuid>>);

impl Handler<EndStreams> for McpRegistry {
    type Result = ();

    fn handle(&mut self, msg: EndStreams, _: &mut Self::Context) {
        let sessions: Option<std::collections::HashSet<Uuid>> =
            msg.0.map(|s| s.into_iter().collect());
        let ended = |entry: &Entry| match (&sessions, &entry.session.binding) {
            (None, _) => true,
            (Some(sessions), Some(binding)) => sessions.contains(&binding.session_id),
            (Some(_), None) => false,
        };
        // Another hub may serve their sessions from now on, and change their rows: each copy
        // is checked against its row at its next request.
        for entry in self.sessions.values_mut().filter(|e| ended(e)) {
            entry.mark();
        }
    }
}

/// A request of MCP session `id` found its collab session's project served by another hub, and
/// goes there (`http::hop`): the copy is marked, to be checked against its row (which may
/// change there) and its placement at its next request here.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FoundElsewhere(pub String);

impl Handler<FoundElsewhere> for McpRegistry {
    type Result = ();

    fn handle(&mut self, msg: FoundElsewhere, _: &mut Self::Context) {
        if let Some(entry) = self.sessions.get_mut(&msg.0) {
            entry.mark_elsewhere();
        }
    }
}

/// The stream of MCP session `id` could not be attached: ended, and the copy marked to be
/// checked, if it is still the one that failed (a stream opened since keeps going).
#[derive(Message)]
#[rtype(result = "()")]
struct AttachFailed {
    id: String,
    sink: EventSink,
}

impl Handler<AttachFailed> for McpRegistry {
    type Result = ();

    fn handle(&mut self, msg: AttachFailed, _: &mut Self::Context) {
        // Its session may not be served here (held by another hub, or being taken), and
        // another hub may change its row meanwhile: the copy is checked at its next request.
        if let Some(entry) = self.sessions.get_mut(&msg.id)
            && entry
                .events
                .as_ref()
                .is_some_and(|open| open.same_channel(&msg.sink))
        {
            entry.mark();
        }
    }
}

/// What turns true when the hub stops serving: a long poll (`events_poll {waitSecs}`) answers
/// then, instead of holding the stop for up to its grace period; the agent polls again, at
/// the next owner.
#[derive(Message)]
#[rtype(result = "tokio::sync::watch::Receiver<bool>")]
pub struct WhenClosing;

impl Handler<WhenClosing> for McpRegistry {
    type Result = actix::MessageResult<WhenClosing>;

    fn handle(&mut self, _: WhenClosing, _: &mut Self::Context) -> Self::Result {
        actix::MessageResult(self.closing.subscribe())
    }
}

/// Most cancellable requests one MCP session may have in progress at once.
pub const MAX_CALLS: usize = 64;

/// `notifications/cancelled`: stops the request if it is still running.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelCall {
    pub id: String,
    pub request: String,
}

impl Handler<CancelCall> for McpRegistry {
    type Result = ();

    fn handle(&mut self, msg: CancelCall, _: &mut Self::Context) {
        if let Some(tx) = self
            .sessions
            .get_mut(&msg.id)
            .and_then(|e| e.calls.remove(&msg.request))
        {
            let _ = tx.send(());
        }
    }
}

/// Messages a GET stream sent as channel notifications to a client that declared it puts them
/// before its model: their `shown` receipts (`via: channel`), as its participant.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ShownOnChannel {
    pub id: String,
    pub ids: Vec<i64>,
}

impl Handler<ShownOnChannel> for McpRegistry {
    type Result = ();

    fn handle(&mut self, msg: ShownOnChannel, _: &mut Self::Context) {
        let Some(entry) = self.sessions.get(&msg.id) else {
            return;
        };
        let Some(binding) = &entry.session.binding else {
            return;
        };
        let command = ToSession {
            session_id: binding.session_id,
            command: MarkShown {
                credential: entry.session.credential.clone(),
                as_participant: None,
                ids: msg.ids,
                via: crate::store::messages::ShownVia::Channel,
            },
        };
        let hub = self.hub.clone();
        actix::spawn(async move {
            match hub.send(command).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => log::warn!("cannot record channel receipts: {e}"),
                Err(e) => log::warn!("cannot record channel receipts: {e}"),
            }
        });
    }
}
