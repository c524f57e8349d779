//! Several hubs on one PostgreSQL: the leases that say which hub serves what.
//!
//! Every hub process on a PostgreSQL database runs a `LeaseKeeper` thread with a connection of
//! its own. It holds this process's project leases (`projects`: each project's sessions and
//! lock table are served by the hub holding its row, and every write of a project is fenced
//! with its row's generation), and takes or renews the `owners` row of kind `hub` (key `''`)
//! in one statement, against the database's clock:
//!
//! - free, expired, or already ours: it becomes (or stays) ours, until `now() + ttl`; taking it
//!   from someone else raises `generation`;
//! - held by another live process: this process is a standby of that row (`Role::Standby`).
//!
//! The `hub` row decides only what runs once per database (`HubRow`: the vacuum); every hub
//! serves either way (docs/multi-hub.md, "The switch"). The holder renews every ttl/3. It counts
//! its lease from the instant it *sent* the renewal, so its own idea of the deadline always
//! falls before the database's. Once that deadline passes without a renewal, or a renewal
//! finds the row taken, the keeper *steps down* (`Keeper::step_down`): it goes on as a
//! standby's does under a new holder id, and a lease it takes again comes with a new
//! generation.
//!
//! Hand-overs are announced: the keepers `LISTEN` on `OWNER_CHANNEL`, and a hub that hands its
//! lease back (graceful stop) or takes one `NOTIFY`s it, so a standby takes over, and the
//! others re-target their forwarding, at once rather than at their next poll (a deploy that
//! restarts the owner then stalls requests for its drain, not for a fifth of the lease). A
//! notice only wakes a keeper: what it then does is decided by the same statement as a poll,
//! so a lost notice (a dropped connection, which the keeper re-opens and listens on again)
//! costs time, never safety.
//!
//! A hub that successfully bound the address the holder advertises takes the lease at once:
//! two live processes cannot listen on one address, so the holder is gone (restarted in place
//! after `kill -9`). Hence every hub must advertise an address of its own (`--advertise-url`).
//!
//! A dead owner is replaced at once, not when its lease expires. The owner's keeper connection
//! holds a session-level advisory lock named after its generation (`LIFE_LOCK_CLASS`,
//! generation), exclusive: PostgreSQL releases it when that connection ends, which it does when
//! the process dies (`kill -9`, a panic, the OOM killer: the kernel closes the socket). Each
//! standby looks every `NOTICE_POLL`, trying the lock *shared* (so that the standbys' looks never
//! stand in each other's way) and reading the lease's expiry in the same statement (`LOOK`).
//! Once it has seen the lock held on its current connection, getting it means the owner's
//! connection is gone. It holds it `CONFIRM` (100 ms), and then, its own connection still up,
//! takes the lease from that generation if the row was not renewed since (`STEAL`: a
//! compare-and-set on the generation and the expiry, so of several standbys one wins).
//!
//! - Safety does not rest on this: a taken-over owner's writer is fenced as after an expiry.
//! - An owner alive but cut from its lease connection (a terminated backend) notices at its next
//!   look (within `NOTICE_POLL`), reconnects, tries its lock and renews the lease at once, and
//!   goes on renewing every look until it holds the lock again. A standby that found the lock
//!   free in between sees the renewal: its `STEAL` takes nothing, and it waits to see the lock
//!   held again. Only an owner that stays silent for `CONFIRM` (dead, or frozen) loses its
//!   lease, and then its keeper finds the row taken and steps down.
//! - A database restart ends every connection: a standby must see the lock held again on its new
//!   connection, and the owner reconnects and takes it; a standby whose connection outlived the
//!   owner's by a moment loses its own within `CONFIRM`, and its takeover with it (and the
//!   owner's renewal would defeat its `STEAL` anyway).
//! - A lock never seen held is let go at once: an owner of an older version takes none, and is
//!   not replaced before its lease expires (a rolling deploy must not dethrone it).
//! - A hub that started after the owner died never saw the lock held. On its first connection
//!   it also counts the owner gone when the lock is free and the lease connection the owner's
//!   row names (`owners.life`: holder and backend pid, written by every take and renewal) is
//!   not connected; then the same wait and compare-and-set follow. An owner of an older version
//!   writes no `life` (the row names another holder's, or none), so this never applies to it;
//!   nor after a reconnect (a database restart ended the owner's connection too, and it comes
//!   back on its own time).
//! - What still waits for the expiry: an owner whose connection the database has not seen close
//!   (its machine or the network gone silent, until TCP keepalives end the backend).

mod deadline;
mod projects;
mod seen;

pub use projects::{
    HeldProject, HeldProjects, PROCESS_LIFE_CLASS, ProjectOwner, fence as project_fence,
};
pub use seen::{SEEN_FOR, SeenElsewhere};

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Bool, Integer, Text};
use diesel::{Connection, OptionalExtension, QueryableByName, RunQueryDsl};
use tokio::sync::watch;

use crate::error::HubError;

/// What the keeper thread is told.
enum Command {
    /// Hand a held lease back and end.
    Stop,
    /// Take a project's lease, or say who holds it (`LeaseKeeper::project`).
    Project { key: String, reply: projects::Reply },
    /// Hand one project's lease back if it is still held under this generation
    /// (`ProjectLeases::hand_back`).
    HandBack { key: String, generation: i64 },
}

/// How many project takes may wait for the keeper: one beyond is refused as busy rather than
/// queued without bound. (A stop is never refused.)
const PROJECT_TAKES: usize = 256;

/// The least a take waits for the keeper's answer (a gone holder's row is taken within about a
/// second); it waits up to `ProjectLeases::patience` in all.
const TAKE_WAIT: Duration = Duration::from_secs(5);

/// What this process is, as the keeper last found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Not known yet (before the first round, or past the deadline while the keeper waits on
    /// the database): this process does not act as the holder.
    Unknown,
    /// This process holds the lease with this generation, as `holder` (its id until it steps
    /// down: then it takes a new one, so that its next lease has a new generation).
    Owner { generation: i64, holder: String },
    /// Another process holds it (at `url`).
    Standby { url: String, holder: String },
}

/// Whether this process holds the `hub` row, as its keeper last found it. What runs once per
/// database rather than once per hub (the vacuum) runs only while it does; on SQLite (no
/// keeper) the one hub always does.
#[derive(Clone)]
pub struct HubRow(Option<watch::Receiver<Role>>);

impl HubRow {
    pub fn of(lease: Option<&LeaseKeeper>) -> HubRow {
        HubRow(lease.map(LeaseKeeper::watch))
    }

    pub fn held(&self) -> bool {
        self.0
            .as_ref()
            .is_none_or(|role| matches!(*role.borrow(), Role::Owner { .. }))
    }
}

/// Who this process is to the other hubs.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The database URL (PostgreSQL).
    pub database_url: String,
    /// Where the other hubs reach this one (`--advertise-url`).
    pub url: String,
    /// Whether this hub trusts loopback callers: every hub sharing a database must agree, or a
    /// hub bound beyond loopback would pass strangers' requests on to a hub that trusts them.
    pub trusts_loopback: bool,
    /// How long a lease lasts without renewal (`--lease-secs`).
    pub ttl: Duration,
}

/// The keeper thread and what it found. Dropping it stops the thread; the leases held are handed
/// back (the `hub` row's announced), so that other hubs take them at once.
pub struct LeaseKeeper {
    role: watch::Receiver<Role>,
    leases: ProjectLeases,
    stop: Option<(mpsc::Sender<Command>, JoinHandle<()>)>,
}

/// The project half of a `LeaseKeeper`, for the application: takes a project's lease or says
/// who holds it, and shows what this process holds. Cheap to clone; once the keeper is gone its
/// takes answer `Unavailable`.
#[derive(Clone)]
pub struct ProjectLeases {
    projects: watch::Receiver<HeldProjects>,
    /// This process's holder id in project rows (what `project_fence` checks).
    holder: std::sync::Arc<str>,
    /// Project takes sent and not yet taken up by the keeper (at most `PROJECT_TAKES`).
    takes_queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    commands: mpsc::Sender<Command>,
    /// How long a take the keeper cannot answer (the database out of reach) is asked again
    /// before it is answered `Unavailable`: a request waits through a short outage.
    patience: Duration,
    /// Where other hubs served projects when the keeper last said (`project`).
    seen: SeenElsewhere,
    /// How long a lease lasts unrenewed.
    ttl: Duration,
}

/// Why a take was not answered: for a while (`Unanswered`: the database), or for good.
enum Asked {
    Unanswered(HubError),
    Refused(HubError),
}

#[derive(QueryableByName)]
struct Generation {
    #[diesel(sql_type = BigInt)]
    generation: i64,
}

#[derive(QueryableByName)]
struct Holder {
    #[diesel(sql_type = Text)]
    holder: String,
    #[diesel(sql_type = BigInt)]
    generation: i64,
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = Bool)]
    trusts_loopback: bool,
}

/// Where keepers announce a lease handed back or taken over (no payload: the `owners` row says
/// what happened).
const OWNER_CHANNEL: &str = "collab_hub_owner";

/// How often a waiting keeper looks for a notice (reading what the socket already holds: no
/// round trip), and a standby tries the owner's life lock (one round trip).
const NOTICE_POLL: Duration = Duration::from_millis(25);

/// How soon a keeper whose round did not renew the project leases it holds tries again.
const PROJECT_RETRY: Duration = Duration::from_secs(1);

/// How often a keeper asks its connection whether it is still there (`Keeper::heartbeat`).
const HEARTBEAT: Duration = Duration::from_millis(250);

/// How often a keeper that cannot reach the database says so.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// How often a keeper whose last connection was refused at once tries again (at most: a
/// shorter lease's rounds come sooner anyway). The rounds' own pace (a third of the lease, a
/// fifth for a standby) left a database that came back unused for up to a second with a 5 s
/// lease, and an owner that lost its connection for a moment closer to its deadline; a
/// refused connection costs the database next to nothing. Not after other failures: an
/// error once connected (a timeout, a permission) costs a backend's start each time, and a
/// connection that times out (a host out of reach) would keep the keeper in `connect` and
/// deaf to a stop.
const RECONNECT_EVERY: Duration = Duration::from_millis(200);

/// How long a standby holds a dead owner's life lock before it takes the lease: if the
/// database is ending every connection (a restart), its own ends meanwhile, and with it the
/// lock and the takeover; an owner that only lost its connection renews meanwhile. Without
/// this wait, a standby whose connection outlived the owner's by a moment took the lease from
/// an owner that was about to reconnect (and then stopped).
const CONFIRM: Duration = Duration::from_millis(100);

/// The first key of the owner's life lock (two-key advisory locks are a key space apart from
/// the one-key locks of `claim.rs` and the migrations); the second is its generation.
pub const LIFE_LOCK_CLASS: i32 = 7300;

/// The second key of the life lock of `generation`.
pub fn life_lock_key(generation: i64) -> i32 {
    (generation & 0x7fff_ffff) as i32
}

/// Takes or renews the lease; the generation if it is ours afterwards.
const TAKE: &str = "INSERT INTO owners
         (kind, key, holder, url, trusts_loopback, generation, expires_at, life)
     VALUES ('hub', '', $1, $2, $3, 1, now() + $4 * interval '1 millisecond',
             $1 || ':' || pg_backend_pid())
     ON CONFLICT (kind, key) DO UPDATE SET
         holder = excluded.holder, url = excluded.url, trusts_loopback = excluded.trusts_loopback,
         generation = owners.generation + CASE WHEN owners.holder = excluded.holder THEN 0 ELSE 1 END,
         expires_at = excluded.expires_at, life = excluded.life
     WHERE owners.holder = excluded.holder OR owners.expires_at < now() OR owners.url = excluded.url
     RETURNING generation";

/// Takes the lease from the generation whose owner's connection ended: its life lock was free
/// (this keeper holds it shared now) and the row was not renewed since (an owner that
/// reconnected renews at once, and so keeps its lease). Nothing if another hub moved first.
const STEAL: &str = "UPDATE owners SET holder = $1, url = $2, trusts_loopback = $3,
         generation = generation + 1, expires_at = now() + $4 * interval '1 millisecond',
         life = $1 || ':' || pg_backend_pid()
     WHERE kind = 'hub' AND key = '' AND generation = $5 AND expires_at::text = $6
       AND holder <> $1
     RETURNING generation";

/// A standby's look at the owner's life lock: tried *shared*, so that the standbys' looks never
/// stand in each other's way (only the owner's exclusive hold makes it fail), and the lease's
/// expiry as it stood just before (one statement: one snapshot, taken before the lock); and
/// whether the owner's lease connection, as its row names it (`life`: holder and backend pid),
/// is gone from the database (asked only while it matters, `$4`: a look at `pg_stat_activity`
/// every 25 ms would be wasted once the lock was seen held).
const LOOK: &str = "SELECT pg_try_advisory_lock_shared($1, $2) AS locked,
     (SELECT expires_at::text FROM owners
       WHERE kind = 'hub' AND key = '' AND generation = $3) AS expires,
     CASE WHEN $4 THEN coalesce((SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity a
                                   WHERE a.pid = split_part(o.life, ':', 2)::int)
                 FROM owners o
                WHERE o.kind = 'hub' AND o.key = '' AND o.generation = $3
                  AND split_part(o.life, ':', 1) = o.holder), false)
          ELSE false END AS disconnected";

impl LeaseKeeper {
    /// Starts the keeper and waits for its first round (blocking: call it where a thread may
    /// block). Fails only if the database cannot be reached at all, or its owner trusts
    /// loopback callers differently from this hub.
    pub fn start(config: LeaseConfig) -> Result<LeaseKeeper, String> {
        let me = uuid::Uuid::new_v4().to_string();
        let (tx, mut role) = watch::channel(Role::Unknown);
        let (stop, stopped) = mpsc::channel();
        let (first_tx, first_rx) = mpsc::channel();
        let tx = std::sync::Arc::new(tx);
        let grace = (config.ttl / 10).min(Duration::from_secs(1));
        let patience = config.ttl * 2 + Duration::from_secs(10);
        let ttl = config.ttl;
        let deadline = deadline::Deadline::start(tx.clone(), grace)?;
        let (projects, held) = projects::Projects::new(projects::Identity {
            url: config.url.clone(),
            trusts_loopback: config.trusts_loopback,
            ttl: config.ttl,
        });
        let project_holder = projects.holder().to_owned();
        let takes_queued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let keeper = Keeper {
            beat: Instant::now(),
            projects,
            takes_queued: takes_queued.clone(),
            me,
            config,
            conn: None,
            role: tx,
            deadline,
            life: None,
            watched: None,
            dead: None,
            connections: 0,
            quiet_until: None,
            refused_at_once: false,
        };
        let thread = std::thread::Builder::new()
            .name("hub-lease".into())
            .spawn(move || keeper.run(stopped, first_tx))
            .map_err(|e| format!("cannot start the lease thread: {e}"))?;
        let first = first_rx
            .recv()
            .unwrap_or_else(|_| Err("the lease thread ended during start".into()));
        if let Err(e) = first {
            let _ = stop.send(Command::Stop);
            let _ = thread.join();
            return Err(e);
        }
        role.mark_changed();
        Ok(LeaseKeeper {
            role,
            leases: ProjectLeases {
                projects: held,
                holder: project_holder.into(),
                takes_queued,
                commands: stop.clone(),
                patience,
                seen: SeenElsewhere::default(),
                ttl,
            },
            stop: Some((stop, thread)),
        })
    }

    /// What the keeper last found; changes are seen through `watch`.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Where `project` is served (`ProjectLeases::project`).
    pub async fn project(&self, project: &str) -> Result<ProjectOwner, HubError> {
        self.leases.project(project).await
    }

    /// The projects this process holds, as they change.
    pub fn projects(&self) -> watch::Receiver<HeldProjects> {
        self.leases.held()
    }

    /// This process's holder id in project rows, for `project_fence`.
    pub fn project_holder(&self) -> &str {
        &self.leases.holder
    }

    /// The project half, for the application.
    pub fn project_leases(&self) -> ProjectLeases {
        self.leases.clone()
    }
}

impl ProjectLeases {
    /// Where `project` is served: here (its lease taken now if it was free, expired, or held by
    /// a process that is gone), or by the hub at the answer's url.
    /// Another hub seen serving it a moment ago (`SeenElsewhere`) is not asked about again.
    pub async fn project(&self, project: &str) -> Result<ProjectOwner, HubError> {
        if let Some(generation) = self.projects.borrow().generation(project) {
            return Ok(ProjectOwner::Here { generation });
        }
        if let Some(url) = self.seen.get(project) {
            return Ok(ProjectOwner::Elsewhere { url });
        }
        self.take_anew(project).await
    }

    /// `project`, asked of the keeper itself rather than of what it last published: a hand-back
    /// sent before (`hand_back`) runs first, so a project this process just handed back is
    /// taken anew, under a newer generation.
    pub async fn take_anew(&self, project: &str) -> Result<ProjectOwner, HubError> {
        self.seen.asked();
        let owner = self.ask_keeper(project).await?;
        match &owner {
            ProjectOwner::Elsewhere { url } => self.seen.note(project, url),
            ProjectOwner::Here { .. } => self.seen.forget(project),
        }
        Ok(owner)
    }

    /// How long a request is kept waiting for its project to be served: through a short
    /// database outage, or until a holder that is gone has lost its lease (twice the lease,
    /// and ten seconds more). The hop runs a request here again for as long (`http::hop`).
    pub fn patience(&self) -> Duration {
        self.patience
    }

    /// How long a lease lasts unrenewed: a hub that stopped renewing (frozen, or cut from the
    /// database) holds its projects this long at most.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Where other hubs served projects when last asked; the hop forgets a hub that did not
    /// serve a request sent to it.
    pub fn seen_elsewhere(&self) -> SeenElsewhere {
        self.seen.clone()
    }

    /// The keeper's answer. One take is queued and waited for, up to `patience` (a keeper stuck
    /// in a call to a database gone silent answers late; asking it again would only queue more
    /// takes behind it); one the keeper answers at once for lack of a connection is asked
    /// again every `PROJECT_RETRY` until then. So a request waits through a short outage.
    async fn ask_keeper(&self, project: &str) -> Result<ProjectOwner, HubError> {
        let until = Instant::now() + self.patience;
        loop {
            match self.ask_keeper_once(project, until).await {
                Err(Asked::Unanswered(_)) if Instant::now() + PROJECT_RETRY < until => {
                    tokio::time::sleep(PROJECT_RETRY).await;
                }
                Ok(owner) => return Ok(owner),
                Err(Asked::Unanswered(e) | Asked::Refused(e)) => return Err(e),
            }
        }
    }

    async fn ask_keeper_once(&self, project: &str, until: Instant) -> Result<ProjectOwner, Asked> {
        use std::sync::atomic::Ordering;
        if self.takes_queued.fetch_add(1, Ordering::AcqRel) >= PROJECT_TAKES {
            self.takes_queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Asked::Refused(HubError::Unavailable(
                "the lease thread is busy; retry".into(),
            )));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self
            .commands
            .send(Command::Project {
                key: project.to_owned(),
                reply,
            })
            .is_err()
        {
            self.takes_queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Asked::Refused(HubError::Unavailable(
                "the lease thread has stopped".into(),
            )));
        }
        let wait = until
            .saturating_duration_since(Instant::now())
            .max(TAKE_WAIT);
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(Ok(owner))) => Ok(owner),
            // The database's words stay in the log (the keeper wrote them there).
            Ok(Ok(Err(_))) => Err(Asked::Unanswered(HubError::Unavailable(format!(
                "this hub cannot take the lease of project {project} right now; retry"
            )))),
            Ok(Err(_)) => Err(Asked::Refused(HubError::Unavailable(
                "the lease thread has stopped".into(),
            ))),
            Err(_) => Err(Asked::Unanswered(HubError::Unavailable(
                "no answer about the project's lease in time (is the database reachable?); retry"
                    .into(),
            ))),
        }
    }

    /// The projects this process holds, as they change.
    pub fn held(&self) -> watch::Receiver<HeldProjects> {
        self.projects.clone()
    }

    /// This process's holder id in project rows.
    pub fn holder(&self) -> &std::sync::Arc<str> {
        &self.holder
    }

    /// Hands `project`'s lease back if this process still holds it under `generation` (a
    /// project it stopped serving while idle): the next request for it, here or at another
    /// hub, takes it again. Not waited for; the change is published (`held`).
    pub fn hand_back(&self, project: &str, generation: i64) {
        let _ = self.commands.send(Command::HandBack {
            key: project.to_owned(),
            generation,
        });
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.deadline.stop();
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.stop.take() {
            let _ = stop.send(Command::Stop);
            let _ = thread.join();
        }
    }
}

struct Keeper {
    /// The project leases this process holds (renewed with each round).
    projects: projects::Projects,
    /// When `heartbeat` last asked the connection.
    beat: Instant,
    /// Shared with `LeaseKeeper::takes_queued`: counted down as each take is taken up.
    takes_queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The holder id: a fresh UUID per process, and a new one each time it steps down.
    me: String,
    config: LeaseConfig,
    conn: Option<PgConnection>,
    role: std::sync::Arc<watch::Sender<Role>>,
    /// The owner's deadline, enforced by a watchdog while a call to the database hangs.
    deadline: std::sync::Arc<deadline::Deadline>,
    /// The owner's side: the generation whose life lock this keeper's connection holds.
    life: Option<i64>,
    /// A standby's side: the owner's generation, and whether its life lock was seen held.
    watched: Option<(i64, bool)>,
    /// A standby holds (shared) the life lock of an owner whose connection ended.
    dead: Option<Dead>,
    /// Connections opened so far (the first is the one that may find an owner dead before
    /// this process started).
    connections: u32,
    /// The last try to connect was refused at once (the database is down or closed to
    /// connections, its host up): worth trying again soon (`RECONNECT_EVERY`).
    refused_at_once: bool,
    /// While the database cannot be reached: when the failure may be logged again (once
    /// every `FAILURE_LOG_EVERY`, not every round).
    quiet_until: Option<Instant>,
}

/// An owner found gone: its life lock was free, seen held before on this connection.
struct Dead {
    generation: i64,
    /// The lease's expiry when the lock was found free: `STEAL` takes the lease only if the
    /// owner has not renewed it since.
    expires: String,
    /// When: the first round `CONFIRM` later takes the lease.
    since: Instant,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct Look {
    #[diesel(sql_type = Bool)]
    locked: bool,
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    expires: Option<String>,
    /// The owner's lease connection, as its row names it, is not connected.
    #[diesel(sql_type = Bool)]
    disconnected: bool,
}

/// What a standby's look found.
enum Found {
    /// The owner holds its life lock.
    Held,
    /// Free, but it means nothing (never seen held on this connection, or the row moved on).
    Free,
    /// Free after it was seen held, or free while the owner's lease connection is gone: the
    /// owner's connection ended (the lease's expiry then).
    Gone(String),
}

/// A standby's look (`LOOK`), letting the lock go again unless the owner is gone. `fresh`: this
/// is the process's first connection, so a lock it never saw held may be an owner that died
/// before it started; it is gone if its lease connection, as its row names it, is.
fn look_at_life_lock(
    conn: &mut PgConnection,
    generation: i64,
    seen_held: bool,
    fresh: bool,
) -> Result<Found, String> {
    let look = diesel::sql_query(LOOK)
        .bind::<Integer, _>(LIFE_LOCK_CLASS)
        .bind::<Integer, _>(life_lock_key(generation))
        .bind::<BigInt, _>(generation)
        .bind::<Bool, _>(fresh && !seen_held)
        .get_result::<Look>(conn)
        .map_err(|e| e.to_string())?;
    match (look.locked, look.expires) {
        (false, _) => Ok(Found::Held),
        (true, Some(expires)) if seen_held || (fresh && look.disconnected) => {
            Ok(Found::Gone(expires))
        }
        // Never seen held: an owner that takes no life lock (an older version: its row does not
        // name its connection), has not taken it yet, or lost it in a restart of the database
        // (after which a standby is not fresh), which is not replaced before its lease expires;
        // or the row moved on.
        (true, _) => unlock_shared_life_lock(conn, generation).map(|()| Found::Free),
    }
}

/// Runs one of PostgreSQL's advisory lock functions (`pg_try_advisory_lock`,
/// `pg_advisory_unlock`, their `_shared` forms) on the life lock of `generation`.
fn life_lock(conn: &mut PgConnection, function: &str, generation: i64) -> Result<bool, String> {
    diesel::sql_query(format!("SELECT {function}($1, $2) AS locked"))
        .bind::<Integer, _>(LIFE_LOCK_CLASS)
        .bind::<Integer, _>(life_lock_key(generation))
        .get_result::<Locked>(conn)
        .map(|l| l.locked)
        .map_err(|e| e.to_string())
}

fn unlock_shared_life_lock(conn: &mut PgConnection, generation: i64) -> Result<(), String> {
    life_lock(conn, "pg_advisory_unlock_shared", generation).map(drop)
}

/// The owner's side: tries (without waiting) its life lock, exclusive, on `conn`.
fn try_life_lock(conn: &mut PgConnection, generation: i64) -> Result<bool, String> {
    life_lock(conn, "pg_try_advisory_lock", generation)
}

fn unlock_life_lock(conn: &mut PgConnection, generation: i64) -> Result<(), String> {
    life_lock(conn, "pg_advisory_unlock", generation).map(drop)
}

impl Keeper {
    fn run(mut self, stop: mpsc::Receiver<Command>, first: mpsc::Sender<Result<(), String>>) {
        let ttl = self.config.ttl;
        // The instant before which this process may still act as the owner.
        let mut valid_until: Option<Instant> = None;
        let mut first = Some(first);
        loop {
            let sent = Instant::now();
            let found = self.round();
            self.renew_projects(sent);
            if self.deadline.take_passed() {
                // The watchdog stepped down while this call hung: whatever it found comes too
                // late. The step-down completes, and the next round runs under a new holder id.
                valid_until = None;
                self.step_down();
                continue;
            }
            match found {
                Ok(role) => {
                    if self.quiet_until.take().is_some() {
                        log::info!("the hub's lease connection works again");
                    }
                    if !matches!(role, Role::Owner { .. }) && valid_until.take().is_some() {
                        log::error!(
                            "another hub took the hub lease on this database; this hub steps down from it (it serves its projects on)"
                        );
                        self.step_down();
                    }
                    if let Role::Owner { generation, .. } = role {
                        if valid_until.is_none() {
                            log::info!("this hub holds the hub lease (generation {generation})");
                            // The others stop trying to take it.
                            self.announce();
                        }
                        valid_until = Some(sent + ttl);
                    }
                    self.publish(role);
                    if let Some(f) = first.take() {
                        let _ = f.send(Ok(()));
                    }
                }
                Err(e) => {
                    // Its advisory locks went with it.
                    self.conn = None;
                    self.life = None;
                    self.dead = None;
                    if let Some(f) = first.take() {
                        let _ = f.send(Err(e));
                        return;
                    }
                    if self.quiet_until.is_none_or(|until| Instant::now() >= until) {
                        log::warn!(
                            "the hub's lease cannot be renewed: {e} (said again every {} s while it lasts)",
                            FAILURE_LOG_EVERY.as_secs()
                        );
                        self.quiet_until = Some(Instant::now() + FAILURE_LOG_EVERY);
                    }
                }
            }
            self.deadline.set(valid_until);
            // Renew well before the end; a standby polls a little more often, so that a
            // takeover follows an expiry closely.
            let every = match &*self.role.borrow() {
                Role::Owner { .. } => ttl / 3,
                _ => ttl / 5,
            };
            let every = match (&self.conn, self.refused_at_once) {
                (None, true) => every.min(RECONNECT_EVERY),
                _ => every,
            };
            // Project leases held and not renewed this round (no connection, or the renewal
            // failed): again soon, not a third of a lease later. Until renewed, this process
            // may believe it holds a project another hub has taken meanwhile (its writes are
            // fenced; its memory would be read).
            let every = if self.projects.unrenewed() {
                every.min(PROJECT_RETRY)
            } else {
                every
            };
            let wake = match valid_until {
                Some(until) => (Instant::now() + every).min(until),
                None => Instant::now() + every,
            };
            // Until then, or until a notice says the lease changed hands. The looks run every
            // `NOTICE_POLL` however many project takes arrive meanwhile.
            let mut looked = Instant::now();
            let stopped = loop {
                let left = wake.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break false;
                }
                let next_look = NOTICE_POLL.saturating_sub(looked.elapsed());
                match stop.recv_timeout(left.min(next_look)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Ok(Command::Project { key, reply }) => {
                        self.takes_queued
                            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
                        self.take_project(key, reply);
                    }
                    Ok(Command::HandBack { key, generation }) => {
                        self.hand_back_project(&key, generation)
                    }
                    Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break true,
                }
                if looked.elapsed() >= NOTICE_POLL {
                    looked = Instant::now();
                    if self.noticed() || self.heartbeat() || self.owner_gone() || self.keep_life() {
                        break false;
                    }
                }
                self.projects.tick(self.conn.as_mut());
            };
            if stopped {
                self.release();
                return;
            }
            if valid_until.is_some_and(|until| Instant::now() >= until) {
                // One last try before giving up: the renewal may merely have been slow. (If it
                // hangs, the watchdog steps down meanwhile.)
                let found = match self.round() {
                    _ if self.deadline.take_passed() => {
                        Err("no answer from the database before the deadline".to_owned())
                    }
                    found => found,
                };
                match found {
                    Ok(role @ Role::Owner { .. }) => {
                        valid_until = Some(Instant::now() + ttl / 3);
                        // Taken again under a new generation (a lease that expired while this
                        // process was frozen, taken back by its address): the application
                        // must see it, and load again.
                        self.publish(role);
                    }
                    found => {
                        log::error!(
                            "this hub could not renew its lease in time ({}); it steps down, so that two hubs never act as owner, and serves again once it holds the lease",
                            match &found {
                                Ok(_) => "another hub holds it".to_owned(),
                                Err(e) => e.clone(),
                            }
                        );
                        valid_until = None;
                        self.step_down();
                        // Requests wait for the next owner, which may be this hub again.
                        let role = found.unwrap_or(Role::Unknown);
                        self.role.send_replace(role);
                    }
                }
                self.deadline.set(valid_until);
            }
        }
    }

    fn connection(&mut self) -> Result<&mut PgConnection, String> {
        if self.conn.is_none() {
            let url = super::conn::with_timeouts(&self.config.database_url);
            let trying = Instant::now();
            let established = PgConnection::establish(&url);
            self.refused_at_once = established.is_err() && trying.elapsed() < RECONNECT_EVERY;
            let mut conn =
                established.map_err(|e| format!("cannot connect: {}", one_line(&e.to_string())))?;
            // A renewal that hangs must not outlive the lease it renews.
            let timeout = (self.config.ttl / 3).as_millis().max(100);
            diesel::sql_query(format!("SET statement_timeout = {timeout}"))
                .execute(&mut conn)
                .map_err(|e| e.to_string())?;
            // The owner's connection sits idle between renewals: a database set to end idle
            // sessions must not end it (and with it the owner's life lock). Before PostgreSQL
            // 14 there is no such setting, and nothing to undo.
            let _ = diesel::sql_query("SET idle_session_timeout = 0").execute(&mut conn);
            // Says whose it is in `pg_stat_activity` (63 characters at most).
            let name: String = format!("collab-hub lease {}", self.config.url)
                .chars()
                .take(63)
                .collect();
            diesel::sql_query("SELECT set_config('application_name', $1, false)")
                .bind::<Text, _>(name)
                .execute(&mut conn)
                .map_err(|e| e.to_string())?;
            diesel::sql_query(format!("LISTEN {OWNER_CHANNEL}"))
                .execute(&mut conn)
                .map_err(|e| e.to_string())?;
            // Advisory locks went with the connection before. And a standby must see the
            // owner's life lock held again on this one before its being free means anything:
            // when the database restarted, every connection ended, the owner's too, and the
            // owner, alive, takes its lock again (it would lose its lease to a standby that
            // looked first, and stop).
            self.life = None;
            self.dead = None;
            self.projects.connected();
            self.watched = self.watched.map(|(generation, _)| (generation, false));
            self.connections += 1;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }

    /// One take-or-renew; what this process is afterwards.
    fn round(&mut self) -> Result<Role, String> {
        let (me, url, trusts, ttl) = (
            self.me.clone(),
            self.config.url.clone(),
            self.config.trusts_loopback,
            self.config.ttl.as_millis() as i64,
        );
        self.connection()?;
        let dead = match &self.dead {
            Some(d) if d.since.elapsed() >= CONFIRM => self.dead.take(),
            _ => None,
        };
        let owner_of = match &*self.role.borrow() {
            Role::Owner { generation, .. } => Some(*generation),
            _ => None,
        };
        let conn = self.conn.as_mut().expect("just opened");
        // An owner without its life lock (on a new connection) tries it before it renews: a
        // standby that found it free in between sees the renewal, and lets the lease be.
        if let Some(generation) = owner_of
            && self.life != Some(generation)
            && try_life_lock(conn, generation)?
        {
            self.life = Some(generation);
        }
        let mut taken = None;
        if let Some(dead) = dead {
            let stolen = diesel::sql_query(STEAL)
                .bind::<Text, _>(&me)
                .bind::<Text, _>(&url)
                .bind::<Bool, _>(trusts)
                .bind::<BigInt, _>(ttl)
                .bind::<BigInt, _>(dead.generation)
                .bind::<Text, _>(&dead.expires)
                .get_result::<Generation>(conn)
                .optional()
                .map_err(|e| e.to_string())?;
            let unlocked = unlock_shared_life_lock(conn, dead.generation);
            match (&stolen, unlocked) {
                (None, unlocked) => {
                    log::info!(
                        "the lease of generation {} was renewed or taken meanwhile: not taking it",
                        dead.generation
                    );
                    // Gone only once seen held again.
                    self.watched = Some((dead.generation, false));
                    unlocked?;
                }
                (Some(Generation { generation }), Err(e)) => {
                    // Ours now: the lock goes with the connection, opened again next round.
                    log::warn!("the hub's lease connection: {e}");
                    self.conn = None;
                    return Ok(self.owned(*generation));
                }
                (Some(_), Ok(())) => {}
            }
            taken = stolen;
        }
        if taken.is_none() {
            taken = diesel::sql_query(TAKE)
                .bind::<Text, _>(&me)
                .bind::<Text, _>(&url)
                .bind::<Bool, _>(trusts)
                .bind::<BigInt, _>(ttl)
                .get_result::<Generation>(conn)
                .optional()
                .map_err(|e| e.to_string())?;
        }
        if let Some(Generation { generation }) = taken {
            return Ok(self.owned(generation));
        }
        let conn = self.conn.as_mut().expect("just opened");
        let holder = diesel::sql_query(
            "SELECT holder, generation, url, trusts_loopback FROM owners
              WHERE kind = 'hub' AND key = ''",
        )
        .get_result::<Holder>(conn)
        .optional()
        .map_err(|e| e.to_string())?;
        if let Some(h) = &holder
            && self.watched.map(|(generation, _)| generation) != Some(h.generation)
        {
            self.watched = Some((h.generation, false));
        }
        match holder {
            Some(h) if h.trusts_loopback != trusts => Err(format!(
                "the hub that owns this database ({}) {} loopback callers and this one would {}; give every hub the same kind of --bind",
                h.url,
                if h.trusts_loopback {
                    "trusts"
                } else {
                    "does not trust"
                },
                if trusts { "trust them" } else { "not" }
            )),
            Some(h) => Ok(Role::Standby {
                url: h.url,
                holder: h.holder,
            }),
            // Deleted between the two statements: the next round takes it.
            None => Ok(Role::Unknown),
        }
    }

    /// Asks the connection whether it is still there, every `HEARTBEAT`. Reading notices does
    /// not always find a connection the database ended: over TLS the closed socket can read as
    /// nothing to read, and then an owner cut from its connection (and with it its life locks)
    /// found out only at its next round, a third of a lease later. True: the connection was
    /// dropped, a round at once (which reconnects, takes the life locks and renews).
    fn heartbeat(&mut self) -> bool {
        if self.beat.elapsed() < HEARTBEAT {
            return false;
        }
        self.beat = Instant::now();
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        match diesel::sql_query("SELECT 1").execute(conn) {
            Ok(_) => false,
            Err(e) => {
                log::warn!("the hub's lease connection: {e}");
                self.conn = None;
                true
            }
        }
    }

    /// Whether a notice came on `OWNER_CHANNEL` since the last look (its own included). A
    /// broken connection is dropped, to be opened again by the next round.
    fn noticed(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let drained = conn
            .notifications_iter()
            .try_fold(0usize, |n, notice| notice.map(|_| n + 1));
        match drained {
            Ok(n) => n > 0,
            Err(e) => {
                // A round at once: an owner's life lock went with the connection, and a
                // standby may have taken the lease since (then this process must stop).
                log::warn!("the hub's lease connection: {e}");
                self.conn = None;
                true
            }
        }
    }

    /// The lease is ours (of `generation`): the life lock of that generation is taken if it is
    /// not held yet. A failure to take it does not change that the lease is ours: it is logged,
    /// the connection dropped, and the next round or look takes it.
    fn owned(&mut self, generation: i64) -> Role {
        self.watched = None;
        if self.life != Some(generation)
            && let Some(conn) = self.conn.as_mut()
        {
            let old = self.life.take();
            let locked = old
                .map_or(Ok(()), |old| unlock_life_lock(conn, old))
                .and_then(|()| try_life_lock(conn, generation));
            match locked {
                Ok(true) => self.life = Some(generation),
                // A standby's look holds it this instant: `keep_life` tries again.
                Ok(false) => {}
                Err(e) => {
                    log::warn!("the hub's lease connection: {e}");
                    self.conn = None;
                }
            }
        }
        Role::Owner {
            generation,
            holder: self.me.clone(),
        }
    }

    /// Tells the application what this process is now, if that changed (a role it already
    /// has wakes nobody).
    fn publish(&self, role: Role) {
        self.role.send_if_modified(|r| {
            let changed = *r != role;
            *r = role;
            changed
        });
    }

    /// Leaves the lease this process held: its owner's parts are dropped by the application
    /// (it watches the role), and from now on it is a standby like any other. Its life lock is
    /// let go (a standby that watched it takes over at once), and it takes a new holder id, so
    /// that a lease it takes again comes with a new generation: its writer from before cannot
    /// pass the fence of the parts built then.
    fn step_down(&mut self) {
        if let (Some(conn), Some(generation)) = (self.conn.as_mut(), self.life.take())
            && let Err(e) = unlock_life_lock(conn, generation)
        {
            log::warn!("the hub's lease connection: {e}");
            self.conn = None;
        }
        self.me = uuid::Uuid::new_v4().to_string();
        self.watched = None;
        self.dead = None;
    }

    /// A standby's look at the owner's life lock. True: a round at once (the lease can be taken
    /// from a dead owner, or the connection broke and must be opened again).
    fn owner_gone(&mut self) -> bool {
        if let Some(dead) = &self.dead {
            return self.conn.is_some() && dead.since.elapsed() >= CONFIRM;
        }
        let (Some((generation, seen_held)), Some(conn)) = (self.watched, self.conn.as_mut()) else {
            return false;
        };
        match look_at_life_lock(conn, generation, seen_held, self.connections == 1) {
            Ok(Found::Held) => {
                self.watched = Some((generation, true));
                false
            }
            Ok(Found::Free) => false,
            Ok(Found::Gone(expires)) => {
                log::warn!(
                    "the owning hub's connection to the database ended (lease generation {generation}): taking over"
                );
                self.dead = Some(Dead {
                    generation,
                    expires,
                    since: Instant::now(),
                });
                false
            }
            Err(e) => {
                log::warn!("the hub's lease connection: {e}");
                self.conn = None;
                true
            }
        }
    }

    /// The owner's side: takes its life lock if it does not hold it. True: a round at once,
    /// which renews the lease (a standby holding the free lock then lets the lease be) or opens
    /// a broken connection again.
    fn keep_life(&mut self) -> bool {
        let Role::Owner { generation, .. } = self.role.borrow().clone() else {
            return false;
        };
        if self.life == Some(generation) {
            return false;
        }
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        match try_life_lock(conn, generation) {
            Ok(true) => {
                self.life = Some(generation);
                false
            }
            Ok(false) => true,
            Err(e) => {
                log::warn!("the hub's lease connection: {e}");
                self.conn = None;
                true
            }
        }
    }

    /// Tells the other keepers that the lease changed hands.
    fn announce(&mut self) {
        self.notify("");
    }

    /// One notice on `OWNER_CHANNEL`. A lost one costs time, never safety: only a warning.
    fn notify(&mut self, payload: &str) {
        if let Ok(conn) = self.connection()
            && let Err(e) = diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<Text, _>(OWNER_CHANNEL)
                .bind::<Text, _>(payload)
                .execute(conn)
        {
            log::warn!("cannot announce on {OWNER_CHANNEL}: {e}");
        }
    }

    /// Renews the project leases held, after a round (`sent`: when it began). A failure leaves
    /// the connection (dropping it would drop the hub lease's life lock for a project's
    /// timeout; a broken one is found by the next look): what is held stays valid until its own
    /// time runs out, and the next round renews it.
    fn renew_projects(&mut self, sent: Instant) {
        if let Err(e) = self.projects.renew(self.conn.as_mut(), sent) {
            log::warn!("the project leases were not renewed: {e}");
        }
    }

    /// Takes a project's lease (or says who holds it), on the lease connection. Without one it
    /// answers at once: the next round connects (trying here would hold a stop behind a
    /// connect's timeout per queued take).
    fn take_project(&mut self, key: String, reply: projects::Reply) {
        match self.conn.as_mut() {
            Some(conn) => self.projects.take(conn, key, reply),
            None => {
                let _ = reply.send(Err("the database is out of reach".into()));
            }
        }
    }

    /// Hands the project leases held back (an owner that stepped down).
    fn let_go_projects(&mut self) {
        if !self.projects.holds_any() {
            return;
        }
        let connected = self.connection().is_ok();
        match self.conn.as_mut() {
            Some(conn) if connected => self.projects.release(conn),
            // Forgotten all the same, never renewed again: each is taken once it expires (at
            // once where this process's life lock went with its connection).
            _ => self.projects.forget(),
        }
    }

    /// Hands one project's lease back (a project this hub stopped serving while idle); without
    /// a connection it is forgotten, never renewed again, and taken by the next hub once it
    /// expires.
    fn hand_back_project(&mut self, key: &str, generation: i64) {
        let connected = self.connection().is_ok();
        let conn = self.conn.as_mut().filter(|_| connected);
        self.projects.hand_back(conn, key, generation);
    }

    /// Hands a held lease back (graceful stop) and announces it: a standby takes it at once
    /// instead of waiting for the expiry. Project leases are handed back too.
    fn release(&mut self) {
        self.let_go_projects();
        if !matches!(&*self.role.borrow(), Role::Owner { .. }) {
            return;
        }
        let me = self.me.clone();
        if let Ok(conn) = self.connection() {
            let _ = diesel::sql_query(
                "UPDATE owners SET expires_at = now() - interval '1 second'
                  WHERE kind = 'hub' AND key = '' AND holder = $1",
            )
            .bind::<Text, _>(&me)
            .execute(conn);
        }
        self.announce();
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
