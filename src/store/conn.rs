//! Database connections: which backend, how to open it, and the settings each one needs.

use std::path::{Path, PathBuf};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// One diesel connection type over both backends; every query in `store` is written once for it.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

pub(super) const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub(super) const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// How long a SQLite connection waits for a lock held by another process (a backup, a second
/// hub by mistake) before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5_000;

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbTarget {
    Sqlite(PathBuf),
    Postgres(String),
}

/// Whether a connection may write. SQLite gets exactly one writer; readers are `query_only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnRole {
    Writer,
    Reader,
}

impl DbTarget {
    /// Accepts `sqlite:///abs/path`, `sqlite://rel/path`, `sqlite:path`, a plain file path, or
    /// `postgres://…` / `postgresql://…`.
    pub fn parse(url: &str) -> Result<DbTarget, String> {
        let url = url.trim();
        if url.is_empty() {
            return Err("database URL is empty".into());
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DbTarget::Postgres(url.to_owned()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        if path.is_empty() || path == ":memory:" {
            return Err(format!(
                "{url:?}: the hub needs a database file (an in-memory SQLite database would lose every acknowledged write)"
            ));
        }
        if let Some((scheme, _)) = path.split_once("://") {
            return Err(format!(
                "unsupported database URL scheme {scheme:?}: use sqlite://PATH, a file path, or postgres://…"
            ));
        }
        Ok(DbTarget::Sqlite(PathBuf::from(path)))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            DbTarget::Sqlite(_) => "sqlite",
            DbTarget::Postgres(_) => "postgres",
        }
    }

    /// The URL with any password replaced by `***`, safe for logs and error lines.
    pub fn redacted(&self) -> String {
        match self {
            DbTarget::Sqlite(p) => format!("sqlite://{}", p.display()),
            DbTarget::Postgres(url) => redact_url(url),
        }
    }

    /// Opens a connection and applies the per-connection settings.
    pub fn connect(&self, role: ConnRole) -> Result<DbConn, String> {
        match self {
            DbTarget::Sqlite(path) => {
                ensure_parent_dir(path)?;
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())
                    .map_err(|e| format!("cannot open {}: {e}", self.redacted()))?;
                // WAL lets readers run beside the single writer. synchronous=FULL makes every
                // acknowledged commit survive power loss, not only a crash of the hub.
                let mut pragmas = format!(
                    "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};
                     PRAGMA journal_mode = WAL;
                     PRAGMA synchronous = FULL;
                     PRAGMA foreign_keys = ON;"
                );
                if role == ConnRole::Reader {
                    pragmas.push_str("PRAGMA query_only = ON;");
                }
                conn.batch_execute(&pragmas)
                    .map_err(|e| format!("cannot configure {}: {e}", self.redacted()))?;
                Ok(DbConn::Sqlite(conn))
            }
            // A connect that cannot reach the database gives up in seconds (the writer connects
            // again on its own thread), and keepalives end a connection to a host gone silent.
            DbTarget::Postgres(url) => PgConnection::establish(&with_timeouts(url))
                .map(DbConn::Pg)
                .map_err(|e| {
                    format!(
                        "cannot connect to {}: {}",
                        self.redacted(),
                        one_line(&e.to_string())
                    )
                }),
        }
    }
}

/// `url` with a connect timeout and TCP keepalives (unless it sets them), so that no connect
/// hangs on a database that stopped answering, and a connection to a host gone silent ends:
/// data or a keepalive probe unacknowledged for 10 s (`tcp_user_timeout`) ends it, where the
/// system's defaults waited minutes. Every PostgreSQL connection of the hub (writer, readers,
/// claim, lease) is opened with it.
pub(super) fn with_timeouts(url: &str) -> String {
    let mut url = url.to_owned();
    for (key, value) in [
        ("connect_timeout", "5"),
        ("keepalives", "1"),
        ("keepalives_idle", "10"),
        ("keepalives_interval", "2"),
        ("tcp_user_timeout", "10000"),
    ] {
        if !url.contains(&format!("{key}=")) {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&format!("{key}={value}"));
        }
    }
    url
}

/// libpq's messages span lines; a start-up error must be one.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn ensure_parent_dir(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create directory {}: {e}", dir.display())),
        _ => Ok(()),
    }
}

fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Applies pending migrations for the connection's backend; returns the versions applied.
pub fn run_migrations(conn: &mut DbConn) -> Result<Vec<String>, String> {
    let applied = match conn {
        DbConn::Sqlite(c) => c
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map(|v| v.iter().map(ToString::to_string).collect()),
        DbConn::Pg(c) => {
            // Several hubs may share one PostgreSQL and start together: migrate one at a time.
            diesel::sql_query("SELECT pg_advisory_lock(7300001)")
                .execute(c)
                .map_err(|e| format!("cannot take the migration lock: {e}"))?;
            let result = c
                .run_pending_migrations(PG_MIGRATIONS)
                .map(|v| v.iter().map(ToString::to_string).collect());
            let _ = diesel::sql_query("SELECT pg_advisory_unlock(7300001)").execute(c);
            result
        }
    };
    applied.map_err(|e| format!("migration failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        assert_eq!(
            DbTarget::parse("sqlite:///abs/hub.db").unwrap(),
            DbTarget::Sqlite("/abs/hub.db".into())
        );
        assert_eq!(
            DbTarget::parse("sqlite://rel/hub.db").unwrap(),
            DbTarget::Sqlite("rel/hub.db".into())
        );
        assert_eq!(
            DbTarget::parse("data/hub.db").unwrap(),
            DbTarget::Sqlite("data/hub.db".into())
        );
        assert_eq!(
            DbTarget::parse("postgres://u@h/db").unwrap().backend(),
            "postgres"
        );
        assert_eq!(
            DbTarget::parse("postgresql://u@h/db").unwrap().backend(),
            "postgres"
        );
        assert!(DbTarget::parse("mysql://u@h/db").is_err());
        assert!(DbTarget::parse("sqlite::memory:").is_err());
        assert!(DbTarget::parse("").is_err());
    }

    #[test]
    fn redacts_passwords() {
        let t =
            DbTarget::parse("postgres://bob:s3cret@db.local:5432/hub?sslmode=require&password=x")
                .unwrap();
        let r = t.redacted();
        assert!(!r.contains("s3cret") && !r.contains("password=x"), "{r}");
        assert_eq!(
            r,
            "postgres://bob:***@db.local:5432/hub?sslmode=require&password=***"
        );
        assert_eq!(
            DbTarget::parse("postgres://h/db").unwrap().redacted(),
            "postgres://h/db"
        );
    }
}
