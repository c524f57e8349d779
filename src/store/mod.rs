//! The `Store`: the only code that touches the database.
//!
//! Writes go to a writer thread through a bounded queue (on PostgreSQL one of `PG_WRITERS`,
//! chosen by session: see `write_for`). The writer drains whatever is queued
//! (up to `MAX_BATCH`) into a single transaction, each write in its own savepoint, and commits
//! once: N concurrent writes cost about one commit (group commit). Every caller is answered only
//! after that commit, so "ok" means durable. A write that fails rolls back its savepoint and
//! leaves the rest of the batch alone. (On PostgreSQL a batch of writes that may run twice —
//! `submit_for`, the session pipeline's — skips the savepoints and, should one fail, runs again
//! with them: `Rerunnable`. In such a batch, consecutive message sends and lock writes, whatever
//! their sessions, are written by one statement: `submit_event_write`, `event_writes`.)
//!
//! Why a thread and not a `SyncArbiter` actor for the writer: group commit needs to see the whole
//! queue and drain it, and an actor mailbox hands out one message at a time. Reads do go through
//! a `SyncArbiter` of `StoreReader` actors sharing an r2d2 pool of reader connections (on
//! SQLite in WAL mode they run beside the writer without taking its lock).

pub mod applied;
pub mod backup;
pub mod briefing;
pub mod claim;
pub mod codec;
pub mod conn;
pub mod event_writes;
pub mod evolution;
pub mod export;
pub mod lease;
pub mod ledger;
pub mod locks;
pub mod mcp_sessions;
pub mod messages;
pub mod models;
pub mod presence;
pub mod queries;
pub mod retention;
pub mod schema;
pub mod settle;
pub mod snapshots;
pub mod suggestions;
pub mod tail;
pub mod tasks;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread;

use actix::prelude::*;
use diesel::Connection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::r2d2;
use tokio::sync::{mpsc, oneshot};

pub use conn::{ConnRole, DbConn, DbTarget};

use crate::domain::event::Event;
use crate::error::HubError;
use event_writes::EventWrite;

/// Writes waiting for the writer; callers wait (backpressure) once it is full.
const WRITE_QUEUE: usize = 4096;
/// Most writes folded into one transaction.
const MAX_BATCH: usize = 512;
/// Reader threads (and connections).
const READERS: usize = 2;
/// Writer threads (and connections) on PostgreSQL. A session's writes always go to the same one
/// (`write_for`), so that its log still commits in id order and no two writers ever lock the
/// same session's rows. Why two: a writer of one-statement-per-write commands (status, context)
/// is bound by round trips, and a second writer doubled their throughput across 32 sessions;
/// but sends are written one statement per batch (`event_writes::write_many`), so fewer
/// writers make bigger batches: 32 sessions' sends ran at 6,200/s on one writer, 5,060–5,290 on
/// two and 2,400–3,570 on four, while the status writes ran at 440–460/s on one and 940–1,030
/// on two or four (BENCHMARKS.md). SQLite has one writer: it allows no more.
const PG_WRITERS: usize = 2;

type Completion = Box<dyn FnOnce(Result<(), HubError>) + Send>;
/// A write run in the batch's transaction: its completion, and whether the transaction is still
/// sound afterwards (false: a failed write could not be rolled back on its own).
type WriteFn = Box<dyn FnOnce(&mut DbConn) -> (Completion, bool) + Send>;
type ReadFn = Box<dyn FnOnce(Result<&mut DbConn, HubError>) + Send>;

enum WriteJob {
    Run(WriteFn, Fenced),
    Rerun(Box<dyn Rerunnable>, Fenced),
    /// Finish what is queued before this, then stop.
    Shutdown(oneshot::Sender<()>),
}

/// A write that may run more than once (its function is `Fn`). On PostgreSQL a batch made only
/// of these runs without a savepoint per write: a savepoint is one more round trip per write
/// on a connection that is bound by round trips. If one of them fails, the batch is rolled
/// back and run again with savepoints, so that a failing write still takes no other down.
trait Rerunnable: Send {
    /// Runs the write (in a savepoint or not) and keeps its result; returns whether the
    /// transaction is still usable.
    fn run(&mut self, conn: &mut DbConn, savepoint: bool) -> bool;
    /// Answers the caller once the batch's fate is known.
    fn finish(self: Box<Self>, committed: Result<(), HubError>);
    /// A write kept as data, which a PostgreSQL batch writes in one statement with the ones
    /// queued next to it (`event_writes::write_many`).
    fn event_write(&self) -> Option<&EventWrite> {
        None
    }
    /// Keeps the result that statement wrote for this job.
    fn written(&mut self, _: Result<Event, HubError>) {}
}

/// The caller's side of a re-runnable write: its result so far, then its answer and the wake.
struct Reply<T> {
    result: Option<Result<T, HubError>>,
    tx: oneshot::Sender<Result<T, HubError>>,
    wake: oneshot::Sender<()>,
}

impl<T> Reply<T> {
    /// Runs `f`, in its savepoint or bare, and keeps its result; returns whether the
    /// transaction is still usable.
    fn run(
        &mut self,
        conn: &mut DbConn,
        savepoint: bool,
        f: impl Fn(&mut DbConn) -> Result<T, HubError>,
    ) -> bool {
        let (result, sound) = if savepoint {
            in_savepoint(conn, f)
        } else {
            let r = f(conn);
            // PostgreSQL aborts the whole transaction on any error.
            let sound = r.is_ok();
            (r, sound)
        };
        self.result = Some(result);
        sound
    }

    /// Answers the caller, then wakes whoever reads the answer.
    fn finish(self, committed: Result<(), HubError>) {
        let result = self.result.unwrap_or_else(|| Err(shutting_down()));
        let _ = self.tx.send(committed.and(result));
        let _ = self.wake.send(());
    }
}

struct Again<T, F> {
    f: F,
    reply: Reply<T>,
}

impl<T, F> Rerunnable for Again<T, F>
where
    T: Send + 'static,
    F: Fn(&mut DbConn) -> Result<T, HubError> + Send + 'static,
{
    fn run(&mut self, conn: &mut DbConn, savepoint: bool) -> bool {
        self.reply.run(conn, savepoint, &self.f)
    }

    fn finish(self: Box<Self>, committed: Result<(), HubError>) {
        self.reply.finish(committed);
    }
}

/// An `EventWrite` on the pipeline: `Again` for `EventWrite::write`, kept as data.
struct EventAgain {
    write: EventWrite,
    reply: Reply<Vec<Event>>,
}

impl Rerunnable for EventAgain {
    fn run(&mut self, conn: &mut DbConn, savepoint: bool) -> bool {
        let write = &self.write;
        self.reply
            .run(conn, savepoint, |c| Ok(vec![write.write(c)?]))
    }

    fn finish(self: Box<Self>, committed: Result<(), HubError>) {
        self.reply.finish(committed);
    }

    fn event_write(&self) -> Option<&EventWrite> {
        Some(&self.write)
    }

    fn written(&mut self, result: Result<Event, HubError>) {
        self.reply.result = Some(result.map(|e| vec![e]));
    }
}

/// What a batch runs: a write that runs once, or one that may run again, each with the
/// project lease its session's writes are fenced with, if any.
enum Job {
    Once(WriteFn, Fenced),
    Again(Box<dyn Rerunnable>, Fenced),
}

impl Job {
    fn fenced(&self) -> Option<&ProjectFence> {
        match self {
            Job::Once(_, fenced) | Job::Again(_, fenced) => fenced.as_ref(),
        }
    }
}

/// The project lease a session's writes are fenced with, when several hubs own projects of one
/// PostgreSQL database apart (docs/multi-hub.md, "Next"): each batch first checks, in its own
/// transaction, that the lease still names `holder` with the generation the session was
/// loaded under (`lease::project_fence`); the writes of a project that moved are left out,
/// unrun, and the rest of the batch commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectFence {
    pub holder: std::sync::Arc<str>,
    pub project: std::sync::Arc<str>,
    pub generation: i64,
}

type Fenced = Option<ProjectFence>;

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// One queue per writer thread; writes of no session go to the first.
    writes: std::sync::Arc<[mpsc::Sender<WriteJob>]>,
    readers: Addr<StoreReader>,
    backend: &'static str,
    /// The project lease every write through this handle is fenced with (`fenced_by`); None
    /// for the hub's own handle.
    fenced: Fenced,
}

impl Store {
    /// Connects, applies migrations and starts the writer and readers. Must run inside an actix
    /// system. The connecting happens on the writer thread, never on the caller's async worker.
    pub async fn open(target: DbTarget) -> Result<Store, String> {
        let count = match target {
            DbTarget::Postgres(_) => PG_WRITERS,
            DbTarget::Sqlite(_) => 1,
        };
        let mut writes = Vec::with_capacity(count);
        for i in 0..count {
            // The first writer migrates; the others start once it has.
            writes.push(start_writer(i, target.clone()).await?);
        }
        let backend = target.backend();
        // Built lazily: the writer just proved the database is there, and a pool that fails
        // to fill must not fail the start (reads report `Unavailable` and retry instead).
        let pool = r2d2::Pool::builder()
            .max_size(READERS as u32)
            .min_idle(Some(0))
            .connection_timeout(std::time::Duration::from_secs(5))
            .test_on_check_out(true)
            .build_unchecked(ReaderConnections(target));
        let readers = SyncArbiter::start(READERS, move || StoreReader { pool: pool.clone() });
        Ok(Store {
            writes: writes.into(),
            readers,
            backend,
            fenced: None,
        })
    }

    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// A handle whose writes (`write`, `write_for`, `submit_for`, `submit_event_write`) are
    /// fenced by `fence`: what the hub gives the actors of a project it loaded under that
    /// project's lease. The fence travels with the handle, so whatever an actor loaded under one
    /// generation still has in flight (a spawned future, a queued write) is refused once the
    /// project moved, even after the hub took it again under a newer one. On SQLite (one hub
    /// per file) nothing is checked.
    pub fn fenced_by(&self, fence: ProjectFence) -> Store {
        Store {
            fenced: Some(fence),
            ..self.clone()
        }
    }

    /// Does the database answer? (`SELECT 1` on a reader connection.)
    pub async fn ping(&self) -> Result<(), HubError> {
        self.read(|c| {
            diesel::RunQueryDsl::execute(diesel::sql_query("SELECT 1"), c)?;
            Ok(())
        })
        .await
    }

    /// On PostgreSQL with autovacuum off (some test and CI installations), does what the
    /// server's daemon would: vacuums and analyzes the tables that grow or churn with a
    /// session's history. Without statistics the planner takes a young table for empty and
    /// reads a session's whole history for a page of messages or events (a 10-minute soak fell
    /// to 0.42 of its first minute that way; with one `ANALYZE` the same queries walk the
    /// primary key). Without vacuum the churning tables keep every dead row: `message_unread`
    /// (a row per send, deleted by the read) held 41 live rows and 83,000 dead ones after nine
    /// minutes of soak, the planner rightly scanned it whole for 41 rows, and every scan read
    /// the dead ones too (the soak fell to 0.86 of its first minute); `sessions` keeps a dead
    /// version per event. With autovacuum on it does nothing.
    pub async fn vacuum_where_autovacuum_is_off(&self) -> Result<(), HubError> {
        if self.backend != "postgres" {
            return Ok(());
        }
        self.read(|c| {
            #[derive(diesel::QueryableByName)]
            struct Setting {
                #[diesel(sql_type = diesel::sql_types::Text)]
                value: String,
            }
            let DbConn::Pg(pg) = c else { return Ok(()) };
            use diesel::RunQueryDsl;
            let autovacuum: Setting =
                diesel::sql_query("SELECT current_setting('autovacuum') AS value")
                    .get_result(pg)?;
            if autovacuum.value != "on" {
                // Not inside a transaction: a reader's statements run in autocommit.
                diesel::sql_query(
                    "VACUUM (ANALYZE) events, messages, message_unread, message_receipts, locks, \
                     sessions, participants",
                )
                .execute(pg)?;
            }
            Ok(())
        })
        .await
    }

    /// Runs `f` in the next group-committed transaction and answers after the commit.
    /// `f` must not open its own transaction; it runs inside a savepoint already. For writes
    /// that belong to no session (MCP sessions, populations); a session's go through
    /// `write_for`.
    pub async fn write<T, F>(&self, f: F) -> Result<T, HubError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, HubError> + Send + 'static,
    {
        self.write_on(0, self.fenced.clone(), f).await
    }

    /// `write`, for a write that touches `session`'s rows only: on that session's writer.
    pub async fn write_for<T, F>(&self, session: uuid::Uuid, f: F) -> Result<T, HubError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, HubError> + Send + 'static,
    {
        self.write_on(self.writer_of(session), self.fenced.clone(), f)
            .await
    }

    /// The writer a session's writes go to, always the same one (sessions that share it share
    /// batches).
    pub fn writer_of(&self, session: uuid::Uuid) -> usize {
        (session.as_u128() % self.writes.len() as u128) as usize
    }

    async fn write_on<T, F>(&self, writer: usize, fenced: Fenced, f: F) -> Result<T, HubError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, HubError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        // A run-once write left out by the project fence is dropped unanswered.
        let project = fenced.as_ref().map(|f| f.project.clone());
        self.writes[writer]
            .send(write_job(f, tx, fenced))
            .await
            .map_err(|_| shutting_down())?;
        rx.await.map_err(|_| match project {
            Some(project) => HubError::Unavailable(format!(
                "this hub no longer holds project {project} (or its store stopped); retry"
            )),
            None => shutting_down(),
        })?
    }

    /// `write_for`, queued at once behind every write of `session` queued before it, without
    /// waiting for the commit: the caller goes on and reads the outcome later (the session
    /// actor's pipeline). See `Submitted::queue_full` for the one thing it must await.
    pub fn submit_for<T, F>(&self, session: uuid::Uuid, f: F) -> Submitted<T>
    where
        T: Send + 'static,
        F: Fn(&mut DbConn) -> Result<T, HubError> + Send + 'static,
    {
        self.submit(session, |reply| Box::new(Again { f, reply }))
    }

    /// `submit_for` of a write kept as data (a message send, a lock's acquire, renewal or
    /// release): on PostgreSQL, such writes queued together are written in one statement.
    pub fn submit_event_write(&self, write: EventWrite) -> Submitted<Vec<Event>> {
        self.submit(write.session_id(), |reply| {
            Box::new(EventAgain { write, reply })
        })
    }

    fn submit<T>(
        &self,
        session: uuid::Uuid,
        job: impl FnOnce(Reply<T>) -> Box<dyn Rerunnable>,
    ) -> Submitted<T> {
        let (tx, outcome) = oneshot::channel();
        let (wake, ready) = oneshot::channel();
        let reply = Reply {
            result: None,
            tx,
            wake,
        };
        let writer = self.writes[self.writer_of(session)].clone();
        let job = WriteJob::Rerun(job(reply), self.fenced.clone());
        let queue_full = match writer.try_send(job) {
            Ok(()) => None,
            // Dropping the job answers `Unavailable` through `outcome`.
            Err(mpsc::error::TrySendError::Closed(_)) => None,
            Err(mpsc::error::TrySendError::Full(job)) => Some(Box::pin(async move {
                let _ = writer.send(job).await;
            })
                as std::pin::Pin<Box<dyn Future<Output = ()>>>),
        };
        Submitted {
            outcome,
            ready,
            queue_full,
        }
    }

    /// Runs `f` on a reader connection.
    pub async fn read<T, F>(&self, f: F) -> Result<T, HubError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, HubError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: ReadFn = Box::new(move |conn| {
            let _ = tx.send(conn.and_then(f));
        });
        self.readers.send(Read(job)).await?;
        rx.await.map_err(|_| shutting_down())?
    }

    /// Lets every queued write commit, then stops the writer. Writes sent afterwards fail with
    /// `Unavailable`.
    pub async fn shutdown(&self) {
        for writes in self.writes.iter() {
            let (tx, rx) = oneshot::channel();
            if writes.send(WriteJob::Shutdown(tx)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }
}

/// Starts writer `i` (the first one applies the migrations) and waits until it is connected.
async fn start_writer(i: usize, target: DbTarget) -> Result<mpsc::Sender<WriteJob>, String> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let (writes, rx) = mpsc::channel(WRITE_QUEUE);
    thread::Builder::new()
        .name(format!("store-writer-{i}"))
        .spawn(move || {
            let conn = writer_connection(&target).and_then(|mut c| {
                if i == 0 {
                    conn::run_migrations(&mut c)?;
                }
                Ok(c)
            });
            match conn {
                Ok(c) => {
                    let _ = ready_tx.send(Ok(()));
                    writer_loop(target, Some(c), rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })
        .map_err(|e| format!("cannot start the store writer thread: {e}"))?;
    ready_rx
        .await
        .map_err(|_| "the store writer thread died during start".to_owned())??;
    Ok(writes)
}

/// A write `submit_for` queued.
pub struct Submitted<T> {
    /// The write's outcome, there once its batch committed or failed; closed (= `Unavailable`)
    /// when the write was dropped unrun.
    pub outcome: oneshot::Receiver<Result<T, HubError>>,
    /// Fires, or closes, once `outcome` can be read: for waking whoever reads it.
    pub ready: oneshot::Receiver<()>,
    /// `Some` when the writer's queue was full: the write is queued once this finishes, and the
    /// caller must await it before it queues anything else for the session, to keep the order.
    pub queue_full: Option<std::pin::Pin<Box<dyn Future<Output = ()>>>>,
}

/// The job that runs `f` in its savepoint and, after the batch's commit, sends the outcome to
/// `tx`.
fn write_job<T, F>(f: F, tx: oneshot::Sender<Result<T, HubError>>, fenced: Fenced) -> WriteJob
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn) -> Result<T, HubError> + Send + 'static,
{
    let run: WriteFn = Box::new(move |conn: &mut DbConn| {
        let (result, sound) = in_savepoint(conn, f);
        let done: Completion = Box::new(move |committed: Result<(), HubError>| {
            let _ = tx.send(committed.and(result));
        });
        (done, sound)
    });
    WriteJob::Run(run, fenced)
}

/// Runs one write in its own savepoint, so that its failure leaves the rest of the batch alone.
/// Hand-written rather than diesel's nested `transaction`: on PostgreSQL the savepoint is not
/// released (the commit releases them all), which saves a round trip per write; SQLite, in
/// process, releases it. Returns whether the transaction is still usable.
fn in_savepoint<T>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, HubError>,
) -> (Result<T, HubError>, bool) {
    use diesel::connection::SimpleConnection;
    if let Err(e) = conn.batch_execute("SAVEPOINT w") {
        return (Err(e.into()), false);
    }
    match f(conn) {
        Ok(v) => match conn {
            DbConn::Pg(_) => (Ok(v), true),
            DbConn::Sqlite(c) => match c.batch_execute("RELEASE SAVEPOINT w") {
                Ok(()) => (Ok(v), true),
                Err(e) => (Err(e.into()), false),
            },
        },
        Err(e) => {
            let sound = conn.batch_execute("ROLLBACK TO SAVEPOINT w").is_ok();
            (Err(e), sound)
        }
    }
}

/// The error of a write the store dropped unrun (shutting down, or its database gone).
pub fn shutting_down() -> HubError {
    HubError::Unavailable("the store is shutting down or lost its database; retry".into())
}

/// Longest a writer's transaction may sit waiting for the hub (PostgreSQL ends the connection
/// after it, rolling back). A batch runs its statements back to back, so only a stalled hub
/// (stopped, its machine frozen) waits that long, and meanwhile it holds its projects' rows
/// `FOR SHARE` (the fence): no other hub could take them over once their leases expire.
/// Well under the default lease (15 s); with a lease of 5 s or less, a hub frozen inside a
/// batch keeps its projects from the others up to 5 s rather than its lease (shorter would
/// risk ending a live batch on a loaded machine). The hub finds its connection gone when it
/// thaws and connects again (its batch, uncommitted, is answered `Unavailable`).
const STALLED_TRANSACTION: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether the writer's connection no longer answers (PostgreSQL; a SQLite file does not go
/// away).
fn connection_lost(conn: &mut DbConn) -> bool {
    use diesel::RunQueryDsl;
    match conn {
        DbConn::Pg(c) => diesel::sql_query("SELECT 1").execute(c).is_err(),
        DbConn::Sqlite(_) => false,
    }
}

/// A writer's connection: on PostgreSQL, with `STALLED_TRANSACTION`.
fn writer_connection(target: &DbTarget) -> Result<DbConn, String> {
    let mut conn = target.connect(ConnRole::Writer)?;
    if let DbConn::Pg(c) = &mut conn {
        use diesel::RunQueryDsl;
        diesel::sql_query(format!(
            "SET idle_in_transaction_session_timeout = {}",
            STALLED_TRANSACTION.as_millis()
        ))
        .execute(c)
        .map_err(|e| format!("cannot configure the writer's connection: {e}"))?;
    }
    Ok(conn)
}

fn writer_loop(target: DbTarget, mut conn: Option<DbConn>, mut rx: mpsc::Receiver<WriteJob>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        let mut stop = None;
        match first {
            WriteJob::Run(f, fenced) => batch.push(Job::Once(f, fenced)),
            WriteJob::Rerun(j, fenced) => batch.push(Job::Again(j, fenced)),
            WriteJob::Shutdown(done) => stop = Some(done),
        }
        while stop.is_none() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(WriteJob::Run(f, fenced)) => batch.push(Job::Once(f, fenced)),
                Ok(WriteJob::Rerun(j, fenced)) => batch.push(Job::Again(j, fenced)),
                Ok(WriteJob::Shutdown(done)) => stop = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            if conn.is_none() {
                conn = writer_connection(&target)
                    .inspect_err(|e| log::error!("store writer: {e}"))
                    .ok();
            }
            match conn.as_mut() {
                Some(c) => {
                    if !commit_batch(c, std::mem::take(&mut batch), &target) {
                        conn = None; // reconnect before the next batch
                    }
                }
                // Dropping the jobs answers their callers with `Unavailable`; nothing was written.
                None => batch.clear(),
            }
        }
        if let Some(done) = stop {
            rx.close();
            while rx.try_recv().is_ok() {}
            // Closed before the stop is acknowledged: the process may exit right after, and a
            // PostgreSQL connection still closing on this thread then crashed it (SIGSEGV
            // after SIGTERM, seen with four writers).
            drop(conn.take());
            let _ = done.send(());
            break;
        }
    }
    log::debug!("store writer stopped");
}

type Tm = <DbConn as Connection>::TransactionManager;

/// One transaction for the whole batch. Returns false when the connection looks broken.
fn commit_batch(conn: &mut DbConn, mut batch: Vec<Job>, target: &DbTarget) -> bool {
    let fast = matches!(conn, DbConn::Pg(_)) && batch.iter().all(|j| matches!(j, Job::Again(..)));
    if !fast {
        return commit_in_savepoints(conn, batch, target);
    }
    if let Err(healthy) = begin(conn, target, &mut batch) {
        return healthy; // dropped: their callers hear `Unavailable`
    }
    let mut jobs: Vec<(Box<dyn Rerunnable>, Fenced)> = batch
        .into_iter()
        .map(|j| match j {
            Job::Again(j, fenced) => (j, fenced),
            Job::Once(..) => unreachable!("a batch with a run-once write takes the savepoints"),
        })
        .collect();
    let mut failed = false;
    let mut next = 0;
    while next < jobs.len() {
        // Consecutive event writes go in one statement (but never two of one lock row);
        // anything else runs on its own.
        let mut rows = std::collections::HashSet::new();
        let combined = jobs[next..]
            .iter()
            .map_while(|(j, _)| j.event_write())
            .take_while(|w| w.lock_row().is_none_or(|row| rows.insert(row)))
            .count();
        let run = &mut jobs[next..next + combined.max(1)];
        next += run.len();
        let ran = catch_unwind(AssertUnwindSafe(|| {
            if run.len() == 1 {
                return run[0].0.run(conn, false);
            }
            let writes: Vec<_> = run.iter().filter_map(|(j, _)| j.event_write()).collect();
            match event_writes::write_many(conn, &writes) {
                Ok(results) => {
                    for ((job, _), result) in run.iter_mut().zip(results) {
                        job.written(result);
                    }
                    true
                }
                Err(_) => false,
            }
        }));
        match ran {
            Ok(true) => {}
            Ok(false) => {
                failed = true;
                break;
            }
            Err(_) => {
                log::error!("a store write panicked; rolling back its whole batch");
                let _ = Tm::rollback_transaction(conn);
                return true; // dropped: their callers hear `Unavailable`
            }
        }
    }
    if failed {
        // One write failed and took the transaction with it: again, each in its savepoint.
        let _ = Tm::rollback_transaction(conn);
        let again = jobs
            .into_iter()
            .map(|(job, fenced)| Job::Again(job, fenced))
            .collect();
        return commit_in_savepoints(conn, again, target);
    }
    let outcome = commit(conn);
    let healthy = outcome.is_ok();
    for (job, _) in jobs {
        job.finish(outcome.clone());
    }
    healthy
}

/// Begins the batch's transaction and checks the project leases the batch's sessions are fenced
/// with (the writes of a project that moved are taken out of `batch`, unrun: their callers
/// hear `Unavailable`). `Err(healthy)`: nothing may run.
///
/// On PostgreSQL a connection the database ended while it sat idle (a restart of the database,
/// a terminated backend) fails its next statement, this `BEGIN`: it is replaced once here, so
/// that the batch's writes are not refused for it (they were, one batch per writer connection,
/// after every restart of the database). Nothing was committed on the broken connection (a
/// batch retried in savepoints after a failed transaction was rolled back first), so the writes
/// run on the new one as if for the first time.
fn begin(conn: &mut DbConn, target: &DbTarget, batch: &mut Vec<Job>) -> Result<(), bool> {
    let begin_transaction = |conn: &mut DbConn| match conn {
        // IMMEDIATE takes the write lock up front, so a transaction never fails half-way on an
        // upgrade from read to write.
        DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE"),
        DbConn::Pg(c) => AnsiTransactionManager::begin_transaction(c),
    };
    let mut begun = begin_transaction(conn);
    if let (Err(e), DbConn::Pg(_)) = (&begun, &conn) {
        log::warn!("store writer cannot begin a transaction ({e}); connecting again");
        match writer_connection(target) {
            Ok(fresh) => {
                *conn = fresh;
                begun = begin_transaction(conn);
            }
            Err(e) => log::error!("store writer: {e}"),
        }
    }
    if let Err(e) = begun {
        log::error!("store writer cannot begin a transaction: {e}");
        return Err(false);
    }
    if let Err(refused) = fence_projects(conn, batch) {
        // The check failed: nothing of this batch may commit. Dropping the jobs unanswered
        // tells their callers `Unavailable`; the connection is kept after a refusal, dropped
        // after an error.
        log::error!("store writer: {refused}");
        let _ = Tm::rollback_transaction(conn);
        return Err(matches!(refused, HubError::Unavailable(_)));
    }
    Ok(())
}

/// Leaves out of `batch` the writes of sessions whose project lease moved (or whose generation
/// is stale), after locking the rows of the others until the batch commits (`project_fence`).
/// Errs, with nothing left out, when the check failed.
fn fence_projects(conn: &mut DbConn, batch: &mut Vec<Job>) -> Result<(), HubError> {
    type Pairs = std::collections::BTreeSet<(String, i64)>;
    let mut asked: std::collections::BTreeMap<&str, Pairs> = Default::default();
    for fenced in batch.iter().filter_map(Job::fenced) {
        asked
            .entry(&fenced.holder)
            .or_default()
            .insert((fenced.project.to_string(), fenced.generation));
    }
    let mut refused: std::collections::BTreeMap<String, Pairs> = Default::default();
    for (holder, projects) in asked {
        let projects: Vec<(String, i64)> = projects.into_iter().collect();
        let moved = lease::project_fence(conn, holder, &projects)?;
        if !moved.is_empty() {
            refused.insert(holder.to_owned(), moved.into_iter().collect());
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    log::warn!(
        "store writer: leaving out the writes of project leases this hub no longer holds: {refused:?}"
    );
    let is_refused = |f: &ProjectFence| {
        refused
            .get(&*f.holder)
            .is_some_and(|moved| moved.contains(&(f.project.to_string(), f.generation)))
    };
    // Unrun, answered `Unavailable`: a request sent again reaches the project's new holder.
    let (moved, kept): (Vec<Job>, Vec<Job>) = std::mem::take(batch)
        .into_iter()
        .partition(|job| job.fenced().is_some_and(is_refused));
    *batch = kept;
    for job in moved {
        let project = job
            .fenced()
            .map(|f| f.project.to_string())
            .unwrap_or_default();
        let moved = HubError::Unavailable(format!(
            "this hub no longer holds project {project} (another hub took it over); retry"
        ));
        match job {
            Job::Again(job, _) => job.finish(Err(moved)),
            // A run-once write answers only by running: dropped, its caller hears
            // `Unavailable` all the same (`write_on` names the project).
            Job::Once(..) => {}
        }
    }
    Ok(())
}

fn commit(conn: &mut DbConn) -> Result<(), HubError> {
    Tm::commit_transaction(conn).map_err(|e| {
        log::error!("store commit failed: {e}");
        let _ = Tm::rollback_transaction(conn);
        HubError::Unavailable(
            "the database did not commit this write; nothing was stored, retry".into(),
        )
    })
}

/// The batch in one transaction, each write in its own savepoint.
fn commit_in_savepoints(conn: &mut DbConn, mut batch: Vec<Job>, target: &DbTarget) -> bool {
    if let Err(healthy) = begin(conn, target, &mut batch) {
        return healthy;
    }
    enum Done {
        Once(Completion),
        Again(Box<dyn Rerunnable>),
    }
    let mut completions = Vec::new();
    let mut broken = false;
    for job in batch {
        if broken {
            continue; // dropped: its caller hears `Unavailable`
        }
        let ran = catch_unwind(AssertUnwindSafe(|| match job {
            Job::Once(job, _) => {
                let (done, sound) = job(conn);
                (Done::Once(done), sound)
            }
            Job::Again(mut job, _) => {
                let sound = job.run(conn, true);
                (Done::Again(job), sound)
            }
        }));
        match ran {
            Ok((done, sound)) => {
                if !sound {
                    log::error!(
                        "a failed store write could not be undone alone; rolling back its whole batch"
                    );
                    broken = true;
                }
                completions.push(done);
            }
            Err(_) => {
                log::error!("a store write panicked; rolling back its whole batch");
                broken = true;
            }
        }
    }
    let outcome = if broken {
        let _ = Tm::rollback_transaction(conn);
        // A connection the database ended (a restart, or `STALLED_TRANSACTION` after the hub
        // was stopped) is no fault of the write: worth a retry, not a 500.
        Err(match connection_lost(conn) {
            true => HubError::Unavailable(
                "the connection to the database was lost; nothing in this write's batch was stored, retry"
                    .into(),
            ),
            false => HubError::Internal(
                "a write failed unexpectedly; nothing in its batch was stored".into(),
            ),
        })
    } else {
        commit(conn)
    };
    let healthy = outcome.is_ok();
    for done in completions {
        match done {
            Done::Once(done) => done(outcome.clone()),
            Done::Again(job) => job.finish(outcome.clone()),
        }
    }
    healthy
}

/// Opens reader connections for the r2d2 pool, with the same per-connection settings as the
/// writer (and `query_only` on SQLite).
#[derive(Debug)]
struct ReaderConnections(DbTarget);

impl r2d2::ManageConnection for ReaderConnections {
    type Connection = DbConn;
    type Error = HubError;

    fn connect(&self) -> Result<DbConn, HubError> {
        self.0.connect(ConnRole::Reader).map_err(|e| {
            log::error!("store reader: {e}");
            HubError::Unavailable("the database is unreachable; retry".into())
        })
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), HubError> {
        use diesel::connection::SimpleConnection;
        conn.batch_execute("SELECT 1").map_err(HubError::from)
    }

    fn has_broken(&self, _: &mut DbConn) -> bool {
        false // is_valid runs on checkout and catches a dead connection
    }
}

/// A reader thread: takes a connection from the pool for each read.
pub struct StoreReader {
    pool: r2d2::Pool<ReaderConnections>,
}

impl Actor for StoreReader {
    type Context = SyncContext<Self>;
}

struct Read(ReadFn);

impl Message for Read {
    type Result = ();
}

impl Handler<Read> for StoreReader {
    type Result = ();

    fn handle(&mut self, msg: Read, _: &mut Self::Context) {
        let mut conn = match self.pool.get() {
            Ok(c) => c,
            Err(e) => {
                log::error!("store reader: no connection: {e}");
                (msg.0)(Err(HubError::Unavailable(
                    "the database is unreachable; retry".into(),
                )));
                return;
            }
        };
        if catch_unwind(AssertUnwindSafe(|| (msg.0)(Ok(&mut conn)))).is_err() {
            log::error!("a store read panicked");
        }
    }
}

/// Applies migrations and returns the versions applied (for `collab-hub migrate`).
pub fn migrate(target: &DbTarget) -> Result<Vec<String>, String> {
    let mut conn = target.connect(ConnRole::Writer)?;
    conn::run_migrations(&mut conn)
}
