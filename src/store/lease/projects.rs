//! Project leases: a project's sessions and lock table owned by one hub process at a time, so
//! that several hubs share the load (docs/multi-hub.md, "The switch"). A request for a project
//! another hub holds is passed on to it (`http::hop`). Tested at the store's level in
//! `tests/api/project_leases.rs`.
//!
//! - A project's row in `owners` has kind `project` and the project as key. The keeper takes it
//!   on demand (`LeaseKeeper::project`): free, expired, already this process's, or left by a
//!   process at this address (restarted in place), it becomes ours. Taking a row always raises
//!   its generation, even from ourselves: a process that let a project go (its validity passed,
//!   it dropped what it held) and takes it again must not let a write queued under the old
//!   generation pass the fence.
//! - Asking where a project is served reads its row first: one held by another live process
//!   answers that process's url, locking and writing nothing; only a row that can be taken is
//!   written.
//! - Every row this process holds is renewed in one statement each round of the keeper (a third
//!   of the lease at most); a row missing from its answer was lost (taken over, or expired), and
//!   is dropped from what this process holds.
//! - Validity is counted from the instant the take or renewal was *sent*, so it always ends
//!   before the database's expiry, and it is checked where it is used
//!   (`HeldProjects::generation`): a keeper stuck in a call cannot stretch it.
//! - A process's life: its keeper connection holds the advisory lock (`PROCESS_LIFE_CLASS`, its
//!   backend pid) while it is open, and each take and renewal writes `<holder>:<pid>` into
//!   `life`. A row whose `life` names a pid without that lock belongs to a process whose lease
//!   connection ended (dead, or cut). It is taken `CONFIRM` later if the row did not change
//!   meanwhile: a live holder that lost its connection reconnects and renews at once (a
//!   notice or a broken socket wakes its keeper), and its renewal defeats the take. One lock per
//!   process, not per row: a process that died loses all its rows at once, and the others take
//!   each on its next request. No keeper takes a row from a holder that looks gone in the
//!   first `RESTART_GRACE` of its own connection: after a restart of the database every life
//!   lock is free, and the holders, alive, reconnect and renew. A holder whose row was taken
//!   while it was cut finds out at its renewal, which it runs as soon as it has reconnected.
//!   Until then it may still answer reads of that project from memory, until the validity it
//!   counted runs out (`Hub::let_go_lapsed`); its writes are fenced.
//! - The fence (`fence`): a writer's batch first reads, `FOR SHARE`, the rows of the projects
//!   it writes with the generations it loaded them under. A take is an `UPDATE` of the row, so
//!   it waits for that batch to commit, and a batch after it finds the generation changed: the
//!   writes of that project fail, the others of the batch do not.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::pg::PgConnection;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Text};
use diesel::{OptionalExtension, QueryableByName, RunQueryDsl};
use tokio::sync::{oneshot, watch};

use super::{CONFIRM, Generation, Locked};
use crate::error::HubError;
use crate::store::DbConn;

/// The first key of a process's life lock; the second is its lease connection's backend pid
/// (unique among live connections). Apart from the hub lease's `LIFE_LOCK_CLASS`.
pub const PROCESS_LIFE_CLASS: i32 = 7301;

/// Where a project is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectOwner {
    /// By this process, under this generation (the fencing token of its writes).
    Here { generation: i64 },
    /// By the process that advertises `url`.
    Elsewhere { url: String },
}

/// A project this process holds.
#[derive(Clone, Copy, Debug)]
pub struct HeldProject {
    pub generation: i64,
    /// Until when this process may act for it, unless renewed.
    pub valid_until: Instant,
}

/// The projects this process holds, as its keeper last published them.
#[derive(Clone, Debug, Default)]
pub struct HeldProjects(Arc<BTreeMap<String, HeldProject>>);

impl HeldProjects {
    /// The generation under which this process holds `project` now, if it does.
    pub fn generation(&self, project: &str) -> Option<i64> {
        self.0
            .get(project)
            .filter(|held| Instant::now() < held.valid_until)
            .map(|held| held.generation)
    }

    /// The generation `project` was held under when the keeper published this, whether or not
    /// its validity ran out since: for telling a lease that moved from one merely read late
    /// (the keeper lets a lease whose validity ran out go itself, and publishes that).
    pub fn published_generation(&self, project: &str) -> Option<i64> {
        self.0.get(project).map(|held| held.generation)
    }

    /// The projects held now.
    pub fn projects(&self) -> Vec<String> {
        let now = Instant::now();
        self.0
            .iter()
            .filter(|(_, held)| now < held.valid_until)
            .map(|(project, _)| project.clone())
            .collect()
    }
}

/// Where the answer to a take goes.
pub(super) type Reply = oneshot::Sender<Result<ProjectOwner, String>>;

/// Whether the process named by a row's `life` still holds its life lock: false once its lease
/// connection ended. `o` is the row. A row whose `life` names another holder than its own (none
/// of ours) counts as alive: it is taken only once it expires.
fn alive() -> String {
    format!(
        "coalesce(split_part(o.life, ':', 1) <> o.holder OR EXISTS (
            SELECT 1 FROM pg_locks l
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.classid = {PROCESS_LIFE_CLASS}::oid
               AND l.objid = nullif(split_part(o.life, ':', 2), '')::bigint::oid), true)"
    )
}

/// Takes a project's row: free, expired, ours, or left by a process at our address (two live
/// processes cannot listen on one). Always a new generation.
const TAKE: &str = "INSERT INTO owners AS o
         (kind, key, holder, url, trusts_loopback, generation, expires_at, life)
     VALUES ('project', $5, $1, $2, $3, 1, now() + $4 * interval '1 millisecond',
             $1 || ':' || pg_backend_pid())
     ON CONFLICT (kind, key) DO UPDATE SET
         holder = excluded.holder, url = excluded.url, trusts_loopback = excluded.trusts_loopback,
         generation = o.generation + 1, expires_at = excluded.expires_at, life = excluded.life
     WHERE o.holder = excluded.holder OR o.expires_at < now() OR o.url = excluded.url
     RETURNING generation";

/// A project's row: where it is served, whether `TAKE` would take it (`$2`: our holder id, `$3`:
/// our url), and whether its holder is gone. A plain read, so that asking where a project held
/// elsewhere is served locks and writes nothing.
fn look() -> String {
    format!(
        "SELECT o.url, o.generation, o.expires_at::text AS expires,
                (o.holder = $2 OR o.expires_at < now() OR o.url = $3) AS takeable,
                NOT {} AS gone
           FROM owners o WHERE o.kind = 'project' AND o.key = $1",
        alive()
    )
}

/// Takes a row whose holder's lease connection ended, if it did not change since it was seen
/// so (a compare-and-set on generation and expiry: of several takers one wins, and a holder
/// that reconnected and renewed keeps it).
fn steal() -> String {
    format!(
        "UPDATE owners o SET holder = $1, url = $2, trusts_loopback = $3,
                generation = o.generation + 1,
                expires_at = now() + $4 * interval '1 millisecond',
                life = $1 || ':' || pg_backend_pid()
          WHERE o.kind = 'project' AND o.key = $5 AND o.generation = $6
            AND o.expires_at::text = $7 AND NOT {}
          RETURNING o.generation",
        alive()
    )
}

/// Renews every row this process holds, each with the generation it holds it under; the rows
/// it still holds come back. The rows are locked in key order first, as the fence locks them:
/// a renewal waits for the batches that passed the fence, and never deadlocks with one.
const RENEW: &str = "WITH held AS (
         SELECT key FROM owners
          WHERE kind = 'project' AND holder = $1 AND expires_at >= now()
            AND (key, generation) IN (SELECT * FROM unnest($3::text[], $4::bigint[]))
          ORDER BY key FOR NO KEY UPDATE)
     UPDATE owners SET expires_at = now() + $2 * interval '1 millisecond',
         life = $1 || ':' || pg_backend_pid()
     WHERE kind = 'project' AND key IN (SELECT key FROM held)
     RETURNING key, generation";

/// The fence: the rows of the given projects (with their generations) this process holds,
/// locked until the transaction ends.
const FENCE: &str = "SELECT key, generation FROM owners
     WHERE kind = 'project' AND holder = $1
       AND (key, generation) IN (SELECT * FROM unnest($2::text[], $3::bigint[]))
     ORDER BY key
     FOR SHARE OF owners";

/// How long a take or a renewal waits for a row's lock: the batches that passed the fence hold
/// it `FOR SHARE` until they commit (milliseconds). Longer means a batch is stuck, and the
/// keeper's thread, which also renews the hub lease, must not wait for it: the statement
/// fails (a take answers "retry"; a renewal is tried again next round, and what it renews
/// stays valid until then). Found when a test held a fenced batch open: the renewal waited
/// behind it with a row of another project locked, and that project's writes behind the
/// renewal, for the whole statement timeout.
const LOCK_WAIT: Duration = Duration::from_secs(1);

/// Runs `statement` in a transaction whose lock waits end after `LOCK_WAIT`.
fn waiting_briefly<T>(
    conn: &mut PgConnection,
    statement: impl FnOnce(&mut PgConnection) -> diesel::QueryResult<T>,
) -> Result<T, String> {
    use diesel::Connection;
    conn.transaction(|c| {
        diesel::sql_query(format!(
            "SET LOCAL lock_timeout = {}",
            LOCK_WAIT.as_millis()
        ))
        .execute(c)?;
        statement(c)
    })
    .map_err(|e| e.to_string())
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    generation: i64,
}

#[derive(QueryableByName)]
struct Seen {
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = BigInt)]
    generation: i64,
    #[diesel(sql_type = Text)]
    expires: String,
    #[diesel(sql_type = Bool)]
    takeable: bool,
    #[diesel(sql_type = Bool)]
    gone: bool,
}

/// The batch's fence on PostgreSQL: of `projects` (each with the generation its sessions were
/// loaded under), those this process (`holder`) no longer holds so, with that generation (two
/// generations of one project may be asked: only the stale one is refused). The others' rows
/// stay locked `FOR SHARE` until the transaction ends, so none of them moves before it commits.
/// Call it first in the transaction.
pub fn fence(
    conn: &mut DbConn,
    holder: &str,
    projects: &[(String, i64)],
) -> Result<Vec<(String, i64)>, HubError> {
    let DbConn::Pg(c) = conn else {
        return Ok(Vec::new());
    };
    let (keys, generations): (Vec<String>, Vec<i64>) = projects.iter().cloned().unzip();
    let held = diesel::sql_query(FENCE)
        .bind::<Text, _>(holder)
        .bind::<Array<Text>, _>(keys)
        .bind::<Array<BigInt>, _>(generations)
        .load::<Row>(c)?
        .into_iter()
        .map(|r| (r.key, r.generation))
        .collect::<Vec<_>>();
    Ok(not_held(projects, &held))
}

/// The pairs of `asked` missing from `held`.
fn not_held(asked: &[(String, i64)], held: &[(String, i64)]) -> Vec<(String, i64)> {
    asked
        .iter()
        .filter(|pair| !held.contains(pair))
        .cloned()
        .collect()
}

/// Who this process is in its project rows.
pub(super) struct Identity {
    pub(super) url: String,
    pub(super) trusts_loopback: bool,
    pub(super) ttl: Duration,
}

/// A row found held by a process whose lease connection ended, and the takes waiting for it.
struct Gone {
    generation: i64,
    expires: String,
    /// When it may be taken: `CONFIRM` after it was seen so, and not before `RESTART_GRACE`
    /// after this keeper's connection was opened.
    due: Instant,
    waiting: Vec<Reply>,
}

/// How long after its connection was opened a keeper takes no row from a holder that looks
/// gone. When the database restarted, every connection ended and every life lock is free, and
/// the holders, alive, reconnect and renew: a keeper that looked first would take their
/// projects from them (safe, but a needless move of each).
const RESTART_GRACE: Duration = Duration::from_secs(1);

/// The keeper's side: what this process holds, renewed each round.
pub(super) struct Projects {
    /// This process's holder id in project rows, for its whole life (a row taken again comes
    /// with a new generation anyway).
    holder: String,
    who: Identity,
    held: BTreeMap<String, HeldProject>,
    /// Rows found held by a gone process, taken `CONFIRM` later.
    gone: HashMap<String, Gone>,
    /// Takes to run again: their look came from a connection that has since ended.
    again: Vec<(String, Reply)>,
    /// This process's life lock is held on the current connection.
    life_locked: bool,
    /// When the current connection was opened.
    connected_at: Instant,
    /// The last round renewed what is held (or nothing was held).
    renewed: bool,
    published: watch::Sender<HeldProjects>,
}

impl Projects {
    pub(super) fn new(who: Identity) -> (Projects, watch::Receiver<HeldProjects>) {
        let (published, held) = watch::channel(HeldProjects::default());
        let projects = Projects {
            holder: uuid::Uuid::new_v4().to_string(),
            who,
            held: BTreeMap::new(),
            gone: HashMap::new(),
            again: Vec::new(),
            life_locked: false,
            connected_at: Instant::now(),
            renewed: true,
            published,
        };
        (projects, held)
    }

    pub(super) fn holds_any(&self) -> bool {
        !self.held.is_empty()
    }

    /// Something is held that the last round did not renew (no connection, or the renewal
    /// failed): the keeper tries again soon.
    pub(super) fn unrenewed(&self) -> bool {
        !self.renewed
    }

    pub(super) fn holder(&self) -> &str {
        &self.holder
    }

    /// The keeper opened a new connection: the life lock went with the old one, and what was
    /// seen through it may be a database restart, which ended every connection (a holder that
    /// is alive comes back): the takes waiting for a gone holder look again.
    pub(super) fn connected(&mut self) {
        self.life_locked = false;
        self.connected_at = Instant::now();
        for (key, gone) in self.gone.drain() {
            self.again
                .extend(gone.waiting.into_iter().map(|reply| (key.clone(), reply)));
        }
    }

    /// Answers a take of `key`: at once, or once a gone holder's row was confirmed. A failure
    /// is the take's answer; the connection stays (a broken one is found by the keeper's own
    /// looks and rounds, which must not lose the hub lease's life lock to a project's timeout).
    pub(super) fn take(&mut self, conn: &mut PgConnection, key: String, reply: Reply) {
        if let Some(held) = self.held.get(&key)
            && Instant::now() < held.valid_until
        {
            let _ = reply.send(Ok(ProjectOwner::Here {
                generation: held.generation,
            }));
            return;
        }
        if let Some(gone) = self.gone.get_mut(&key) {
            gone.waiting.push(reply);
            return;
        }
        match self.try_take(conn, &key) {
            Ok(Some(owner)) => {
                let _ = reply.send(Ok(owner));
            }
            Ok(None) => {
                if let Some(gone) = self.gone.get_mut(&key) {
                    gone.waiting.push(reply);
                }
            }
            Err(e) => {
                log::warn!("project lease of {key}: {e}");
                let _ = reply.send(Err(e));
            }
        }
    }

    /// One try: the owner, or None when the holder is gone (then `gone` has the row).
    fn try_take(
        &mut self,
        conn: &mut PgConnection,
        key: &str,
    ) -> Result<Option<ProjectOwner>, String> {
        self.keep_life(conn)?;
        // A row taken or released between the look and the take is looked at again.
        for _ in 0..3 {
            let seen = diesel::sql_query(look())
                .bind::<Text, _>(key)
                .bind::<Text, _>(&self.holder)
                .bind::<Text, _>(&self.who.url)
                .get_result::<Seen>(conn)
                .optional()
                .map_err(|e| e.to_string())?;
            match seen {
                Some(seen) if seen.gone && !seen.takeable => {
                    log::warn!(
                        "the hub holding project {key} lost its lease connection: taking it over"
                    );
                    let due = (Instant::now() + CONFIRM).max(self.connected_at + RESTART_GRACE);
                    self.gone.insert(
                        key.to_owned(),
                        Gone {
                            generation: seen.generation,
                            expires: seen.expires,
                            due,
                            waiting: Vec::new(),
                        },
                    );
                    return Ok(None);
                }
                Some(seen) if !seen.takeable => {
                    return Ok(Some(ProjectOwner::Elsewhere { url: seen.url }));
                }
                // Free (no row yet) or takeable.
                _ => {}
            }
            let sent = Instant::now();
            let taken = waiting_briefly(conn, |c| {
                diesel::sql_query(TAKE)
                    .bind::<Text, _>(&self.holder)
                    .bind::<Text, _>(&self.who.url)
                    .bind::<Bool, _>(self.who.trusts_loopback)
                    .bind::<BigInt, _>(self.who.ttl.as_millis() as i64)
                    .bind::<Text, _>(key)
                    .get_result::<Generation>(c)
                    .optional()
            })?;
            if let Some(Generation { generation }) = taken {
                return Ok(Some(self.hold(key, generation, sent)));
            }
        }
        Err(format!("the lease of project {key} keeps changing; retry"))
    }

    /// The row of `key` is ours under `generation`, taken or renewed at `sent`.
    fn hold(&mut self, key: &str, generation: i64, sent: Instant) -> ProjectOwner {
        self.held.insert(
            key.to_owned(),
            HeldProject {
                generation,
                valid_until: sent + self.who.ttl,
            },
        );
        self.publish();
        ProjectOwner::Here { generation }
    }

    /// Renews every row held (one statement); a row missing from the answer is dropped.
    pub(super) fn renew(
        &mut self,
        conn: Option<&mut PgConnection>,
        sent: Instant,
    ) -> Result<(), String> {
        self.renewed = self.held.is_empty();
        let Some(conn) = conn.filter(|_| !self.renewed) else {
            return Ok(());
        };
        self.keep_life(conn)?;
        let (keys, generations): (Vec<String>, Vec<i64>) = self
            .held
            .iter()
            .map(|(key, held)| (key.clone(), held.generation))
            .unzip();
        let renewed = waiting_briefly(conn, |c| {
            diesel::sql_query(RENEW)
                .bind::<Text, _>(&self.holder)
                .bind::<BigInt, _>(self.who.ttl.as_millis() as i64)
                .bind::<Array<Text>, _>(&keys)
                .bind::<Array<BigInt>, _>(&generations)
                .load::<Row>(c)
        })?;
        let until = sent + self.who.ttl;
        self.held.retain(|key, held| {
            let kept = renewed
                .iter()
                .any(|row| row.key == *key && row.generation == held.generation);
            if kept {
                held.valid_until = until;
            } else {
                log::error!(
                    "another hub took project {key} (generation {}): this hub lets it go",
                    held.generation
                );
            }
            kept
        });
        // Published even when no project was let go: the new validity is the application's to
        // read (`HeldProjects::generation`).
        self.publish();
        self.renewed = true;
        Ok(())
    }

    /// Between rounds: lets go what is no longer valid, takes the rows of gone holders once
    /// due, and runs again the takes a new connection sent back. Failures are the waiting
    /// takes' answers.
    pub(super) fn tick(&mut self, conn: Option<&mut PgConnection>) {
        let now = Instant::now();
        let before = self.held.len();
        self.held.retain(|key, held| {
            let valid = now < held.valid_until;
            if !valid {
                log::error!(
                    "the lease of project {key} was not renewed in time: this hub lets it go"
                );
            }
            valid
        });
        if self.held.len() != before {
            self.publish();
        }
        // Without a connection the takes wait for the keeper's next one (`LeaseKeeper::project`
        // gives up on them after `TAKE_WAIT`).
        let Some(conn) = conn else {
            return;
        };
        for (key, reply) in std::mem::take(&mut self.again) {
            self.take(conn, key, reply);
        }
        let due: Vec<String> = self
            .gone
            .iter()
            .filter(|(_, gone)| now >= gone.due)
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            let gone = self.gone.remove(&key).expect("listed above");
            let sent = Instant::now();
            let stolen = waiting_briefly(conn, |c| {
                diesel::sql_query(steal())
                    .bind::<Text, _>(&self.holder)
                    .bind::<Text, _>(&self.who.url)
                    .bind::<Bool, _>(self.who.trusts_loopback)
                    .bind::<BigInt, _>(self.who.ttl.as_millis() as i64)
                    .bind::<Text, _>(&key)
                    .bind::<BigInt, _>(gone.generation)
                    .bind::<Text, _>(&gone.expires)
                    .get_result::<Generation>(c)
                    .optional()
            });
            match stolen {
                Ok(Some(Generation { generation })) => {
                    let owner = self.hold(&key, generation, sent);
                    for reply in gone.waiting {
                        let _ = reply.send(Ok(owner.clone()));
                    }
                }
                // Renewed, or taken by another hub, meanwhile: each waiting take looks again.
                Ok(None) => {
                    log::info!("project {key} was renewed or taken meanwhile: not taking it");
                    for reply in gone.waiting {
                        self.take(conn, key.clone(), reply);
                    }
                }
                Err(e) => {
                    log::warn!("project lease of {key}: {e}");
                    for reply in gone.waiting {
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
        }
    }

    /// Hands every held row back (a graceful stop), so that the next process takes each at
    /// once.
    pub(super) fn release(&mut self, conn: &mut PgConnection) {
        let keys: Vec<String> = self.held.keys().cloned().collect();
        if let Err(e) = diesel::sql_query(
            "UPDATE owners SET expires_at = now() - interval '1 second'
              WHERE kind = 'project' AND holder = $1 AND key = ANY($2::text[])",
        )
        .bind::<Text, _>(&self.holder)
        .bind::<Array<Text>, _>(&keys)
        .execute(conn)
        {
            log::warn!("cannot hand the project leases back: {e}");
        }
        self.held.clear();
        self.publish();
    }

    /// Hands `key`'s row back if it is held under `generation` (a later take's generation is
    /// not this caller's to give up). Without a connection the row is only forgotten: never
    /// renewed again, it is taken once it expires.
    pub(super) fn hand_back(
        &mut self,
        conn: Option<&mut PgConnection>,
        key: &str,
        generation: i64,
    ) {
        if self
            .held
            .get(key)
            .is_none_or(|held| held.generation != generation)
        {
            return;
        }
        // Briefly, as a take: the row waits for this hub's own fenced batches, and a stuck one
        // must not hold the keeper's thread (the row then simply expires).
        if let Some(conn) = conn
            && let Err(e) = waiting_briefly(conn, |c| {
                diesel::sql_query(
                    "UPDATE owners SET expires_at = now() - interval '1 second'
                      WHERE kind = 'project' AND key = $1 AND holder = $2 AND generation = $3",
                )
                .bind::<Text, _>(key)
                .bind::<Text, _>(&self.holder)
                .bind::<BigInt, _>(generation)
                .execute(c)
            })
        {
            log::warn!("cannot hand the lease of project {key} back: {e}");
        }
        self.held.remove(key);
        self.publish();
    }

    /// Stops holding every row without handing it back (the database is out of reach).
    pub(super) fn forget(&mut self) {
        self.held.clear();
        self.publish();
    }

    /// Takes this process's life lock on `conn` if it does not hold it yet. No other process
    /// asks for it (its key is this connection's pid), so it is granted.
    fn keep_life(&mut self, conn: &mut PgConnection) -> Result<(), String> {
        if self.life_locked {
            return Ok(());
        }
        let locked =
            diesel::sql_query("SELECT pg_try_advisory_lock($1, pg_backend_pid()) AS locked")
                .bind::<Integer, _>(PROCESS_LIFE_CLASS)
                .get_result::<Locked>(conn)
                .map_err(|e| e.to_string())?;
        if !locked.locked {
            return Err("this process's life lock is held by another session".into());
        }
        self.life_locked = true;
        Ok(())
    }

    fn publish(&self) {
        self.published
            .send_replace(HeldProjects(Arc::new(self.held.clone())));
    }
}
