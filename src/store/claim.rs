//! Who may use a database beside whom.
//!
//! - SQLite: one hub per file. An exclusive `flock` on `<database>.hub-lock`, a file that also
//!   says who holds it; a second hub (or a restore) refuses to start with a line naming the first.
//! - PostgreSQL: several hubs may share one database (each serves the projects whose leases it
//!   holds, `lease.rs`). Each holds a *shared* session-level advisory lock
//!   on a dedicated connection whose `application_name` says who holds it; a restore takes it
//!   *exclusive*, so it never runs beside a hub and no hub starts during one. A watchdog pings
//!   the connection; if it is lost (a database restart) it takes the lock again, and if a
//!   restore took it meanwhile this process stops rather than write beside it.
//!
//! Either way a crashed hub's claim goes with its process (the OS closes the file or the socket).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::pg::PgConnection;
use diesel::sql_types::{Bool, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};

use super::conn::DbTarget;

/// The advisory lock key of the claim (the migration lock is 7300001).
const CLAIM_KEY: i64 = 7_300_002;
/// How long a start waits for a claim that is held: a hub killed a moment ago may still hold
/// it until the database notices the closed connection.
const WAIT_FOR_RELEASE: Duration = Duration::from_secs(3);
/// How often the PostgreSQL watchdog checks that its connection (and so the lock) is alive.
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// Held while the hub runs; dropping it releases the database for another hub.
pub struct Claim {
    _file: Option<File>,
    watchdog: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.watchdog.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

/// Who holds the claim, written where a second hub can read it.
fn holder_label(listening: &str) -> String {
    format!(
        "collab-hub pid {} on {listening} since {}",
        std::process::id(),
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// Takes the claim on `target` for a hub listening on `listening`. Blocking: call it from a
/// thread that may block (start-up, before the server runs).
pub fn claim(target: &DbTarget, listening: &str) -> Result<Claim, String> {
    claim_as(target, listening, false)
}

/// The claim of a process that must be alone on the database even on PostgreSQL (a restore).
pub fn claim_exclusive(target: &DbTarget, who: &str) -> Result<Claim, String> {
    claim_as(target, who, true)
}

fn claim_as(target: &DbTarget, listening: &str, exclusive: bool) -> Result<Claim, String> {
    let label = holder_label(listening);
    let deadline = Instant::now() + WAIT_FOR_RELEASE;
    loop {
        let attempt = match target {
            DbTarget::Sqlite(path) => claim_file(path, &label),
            DbTarget::Postgres(url) => claim_pg(url, target, &label, exclusive),
        };
        match attempt {
            Ok(claim) => return Ok(claim),
            Err(Refused::Held(by)) if Instant::now() >= deadline => {
                return Err(format!(
                    "{} is in use by another hub ({by}); stop it first: {}",
                    target.redacted(),
                    match target {
                        DbTarget::Sqlite(_) => "one hub per SQLite file",
                        DbTarget::Postgres(_) => "a restore runs alone",
                    }
                ));
            }
            Err(Refused::Held(_)) => std::thread::sleep(Duration::from_millis(100)),
            Err(Refused::Failed(e)) => return Err(e),
        }
    }
}

enum Refused {
    /// Another process holds it; who.
    Held(String),
    Failed(String),
}

fn lock_path(db: &std::path::Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".hub-lock");
    PathBuf::from(name)
}

fn claim_file(db: &std::path::Path, label: &str) -> Result<Claim, Refused> {
    let path = lock_path(db);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Refused::Failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Refused::Failed(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut by = String::new();
            let _ = file.read_to_string(&mut by);
            let by = by.trim();
            return Err(Refused::Held(if by.is_empty() {
                format!("lock file {}", path.display())
            } else {
                by.to_owned()
            }));
        }
        Err(TryLockError::Error(e)) => {
            return Err(Refused::Failed(format!(
                "cannot lock {}: {e}",
                path.display()
            )));
        }
    }
    // Ours now: say who holds it.
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| file.write_all(label.as_bytes()));
    if let Err(e) = written {
        log::warn!("cannot write {}: {e}", path.display());
    }
    Ok(Claim {
        _file: Some(file),
        watchdog: None,
    })
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

#[derive(QueryableByName)]
struct Holder {
    #[diesel(sql_type = Text)]
    who: String,
}

/// Connects, names the connection and tries the advisory lock. `Ok(None)`: someone else has it.
fn try_pg_lock(
    url: &str,
    target: &DbTarget,
    label: &str,
    exclusive: bool,
) -> Result<(PgConnection, bool), Refused> {
    let mut conn = PgConnection::establish(&super::conn::with_timeouts(url)).map_err(|e| {
        Refused::Failed(format!(
            "cannot connect to {}: {}",
            target.redacted(),
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        ))
    })?;
    let failed =
        |e: diesel::result::Error| Refused::Failed(format!("cannot claim the database: {e}"));
    diesel::sql_query("SELECT set_config('application_name', $1, false)")
        .bind::<Text, _>(label)
        .execute(&mut conn)
        .map_err(failed)?;
    let Locked { locked } = diesel::sql_query(if exclusive {
        "SELECT pg_try_advisory_lock($1) AS locked"
    } else {
        "SELECT pg_try_advisory_lock_shared($1) AS locked"
    })
    .bind::<diesel::sql_types::BigInt, _>(CLAIM_KEY)
    .get_result(&mut conn)
    .map_err(failed)?;
    Ok((conn, locked))
}

/// The `application_name` of whoever holds the claim on this database.
fn pg_holder(conn: &mut PgConnection) -> String {
    diesel::sql_query(
        "SELECT coalesce(nullif(a.application_name, ''), 'pid ' || a.pid::text) AS who
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted
            AND l.classid = 0 AND l.objid = $1 AND l.objsubid = 1
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          LIMIT 1",
    )
    .bind::<diesel::sql_types::Oid, _>(CLAIM_KEY as u32)
    .get_result::<Holder>(conn)
    .map(|h| h.who)
    .unwrap_or_else(|_| "another process".into())
}

fn claim_pg(url: &str, target: &DbTarget, label: &str, exclusive: bool) -> Result<Claim, Refused> {
    let (mut conn, locked) = try_pg_lock(url, target, label, exclusive)?;
    if !locked {
        return Err(Refused::Held(pg_holder(&mut conn)));
    }
    let (stop, stopped) = mpsc::channel();
    let (url, target, label) = (url.to_owned(), target.clone(), label.to_owned());
    let thread = std::thread::Builder::new()
        .name("db-claim".into())
        .spawn(move || watch_pg(conn, stopped, &url, &target, &label, exclusive))
        .map_err(|e| Refused::Failed(format!("cannot start the claim watchdog: {e}")))?;
    Ok(Claim {
        _file: None,
        watchdog: Some((stop, thread)),
    })
}

/// Keeps the claim's connection alive; takes the claim again after a lost connection, and
/// stops the process if another hub took it meanwhile.
fn watch_pg(
    mut conn: PgConnection,
    stop: mpsc::Receiver<()>,
    url: &str,
    target: &DbTarget,
    label: &str,
    exclusive: bool,
) {
    let mut alive = true;
    loop {
        match stop.recv_timeout(WATCH_EVERY) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return, // released: the connection closes with this thread
        }
        if alive && diesel::sql_query("SELECT 1").execute(&mut conn).is_ok() {
            continue;
        }
        alive = false;
        match try_pg_lock(url, target, label, exclusive) {
            Ok((c, true)) => {
                log::warn!("database connection was lost; the hub's claim is taken again");
                conn = c;
                alive = true;
            }
            Ok((mut c, false)) => {
                let holder = pg_holder(&mut c);
                if holder == label {
                    // Our own old connection still holds it (the server has not noticed it is
                    // gone): end that backend and take the claim again at the next check.
                    let _ = diesel::sql_query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                          WHERE application_name = $1 AND pid <> pg_backend_pid()",
                    )
                    .bind::<Text, _>(label)
                    .execute(&mut c);
                    log::warn!("ended this hub's stale claim connection; claiming again");
                    continue;
                }
                log::error!(
                    "{holder} took {} while this process's connection was lost; stopping so that it never writes beside a restore",
                    target.redacted()
                );
                std::process::exit(1);
            }
            Err(Refused::Failed(e) | Refused::Held(e)) => {
                log::warn!("the hub's database claim cannot be checked: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_on_one_sqlite_file_is_refused_until_the_first_ends() {
        let dir = std::env::temp_dir().join(format!("claim-{}", uuid::Uuid::new_v4().simple()));
        let target = DbTarget::Sqlite(dir.join("hub.db"));
        let first = claim(&target, "127.0.0.1:1").expect("first claim");
        let started = Instant::now();
        let second = claim(&target, "127.0.0.1:2").err().expect("second refused");
        assert!(
            started.elapsed() >= WAIT_FOR_RELEASE,
            "waited for a release"
        );
        assert!(second.contains("in use by another hub"), "{second}");
        assert!(second.contains("127.0.0.1:1"), "names the first: {second}");
        assert!(!second.contains('\n'), "one line: {second}");
        drop(first);
        let third = claim(&target, "127.0.0.1:3");
        assert!(third.is_ok(), "released with the first");
        drop(third);
        let _ = std::fs::remove_dir_all(dir);
    }
}
