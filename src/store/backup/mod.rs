//! `collab-hub backup` and `collab-hub restore`: whole sessions to and from one portable file.
//!
//! # The file (format version 1)
//!
//! ```text
//! {"format":"collab-hub-backup","version":1,"createdAt":…,"sha256":"…"}␠␠␠…␠\n   header
//! <zstd-compressed body>                                                             body
//! ```
//!
//! - **Header**: the first line, one JSON object (padded with spaces to 4 KiB, so that it can be
//!   written after the body without copying the body): `format` (`"collab-hub-backup"`),
//!   `version` (1), `createdAt`, `createdBy` (the collab-hub version), `source` (`sqlite` or
//!   `postgres`), `schema` (the newest migration the source database had), `compression`
//!   (`"zstd"`), `sessions` (how many), `rows` (in all), `tables` (`{table: rows}`), `bodyBytes`
//!   and `sha256` (hex) of the body: every byte after the header line.
//! - **Body**: one zstd stream. Decompressed, it is JSON lines: for each table, parents first
//!   (the order of [`table_names`]), a line `{"table": NAME}`, then one line per row: an object
//!   with exactly that table's columns, named as in `schema.rs`. Text columns (JSON ones
//!   included, byte for byte) are strings, integers numbers, booleans booleans, NULL `null`;
//!   timestamps are RFC 3339 in UTC with microseconds (`2026-12-03T10:11:12.123456Z`, the
//!   hub's precision, which SQLite and PostgreSQL both store and read back identically); binary
//!   columns (snapshots, already compressed by the hub when large) are standard base64. Nothing
//!   in it depends on the backend, so a SQLite backup restores into PostgreSQL and back.
//!
//! # Guarantees
//!
//! - A backup holds every row of every table that belongs to the chosen sessions (all by
//!   default): the session, its participants, its event log, its context and session
//!   snapshots, messages and receipts, tasks, changes, the locks it holds or waits for in its
//!   project, suggestions, and its measured outcome once completed (the hub-wide populations
//!   are not in a session backup). It is read in one read transaction (a snapshot: REPEATABLE READ on
//!   PostgreSQL, a WAL read transaction on SQLite), so it is consistent even while a hub writes;
//!   it never takes the hub's claim. Rows are streamed table by table, one row in memory at a
//!   time, and the file appears under its name (atomic rename) only once it is complete.
//! - A restore first reads the whole file: header, size, digest and every row against the
//!   schema, before it touches the database. Then it takes the claim a hub takes (refusing
//!   while a hub runs on the database), applies migrations, and writes in one transaction: all
//!   or nothing. Sessions that already exist are refused unless `replace`, which deletes all of
//!   their rows first. A held lock that would conflict with one held by another session of the
//!   same project in the target is refused too (two holders of one file).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use diesel::connection::{AnsiTransactionManager, DefaultLoadingMode, TransactionManager};
use diesel::pg::PgRowByRowLoadingMode;
use diesel::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::conn::{ConnRole, DbConn, DbTarget};
use super::schema;

/// The header's `format`.
pub const FORMAT: &str = "collab-hub-backup";
/// The format version this build writes and reads.
pub const VERSION: u64 = 1;
/// The header line's length (JSON, spaces, `\n`) as written. Readers take the first line,
/// whatever its length (up to `MAX_HEADER_BYTES`).
const HEADER_BYTES: usize = 4096;
const MAX_HEADER_BYTES: u64 = 64 * 1024;
/// A row larger than this (decompressed JSON) is refused: a session snapshot is at most 64 MiB,
/// which is about 86 MiB of base64.
const MAX_LINE_BYTES: u64 = 256 * 1024 * 1024;
/// Rows inserted per statement, and bytes of JSON gathered before a batch is inserted.
const BATCH_ROWS: usize = 256;
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Session ids per `IN (…)` list.
const ID_CHUNK: usize = 500;
const ZSTD_LEVEL: i32 = 3;

mod read;
mod rows;
#[cfg(test)]
mod tests;
mod write;

pub use read::restore;
pub use rows::table_names;
use rows::*;
pub use write::backup;

// ---------------------------------------------------------------------------------------------
// The header.

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub format: String,
    pub version: u64,
    pub created_at: String,
    pub created_by: String,
    pub source: String,
    pub schema: String,
    pub compression: String,
    pub sessions: u64,
    pub rows: u64,
    pub tables: BTreeMap<String, u64>,
    pub body_bytes: u64,
    pub sha256: String,
}

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    pub sessions: u64,
    pub rows: u64,
    /// The file's size.
    pub bytes: u64,
    pub header: Header,
}

/// What a restore wrote.
#[derive(Debug, Clone)]
pub struct RestoreSummary {
    pub sessions: u64,
    pub rows: u64,
    /// Sessions that existed and were replaced (`--replace`).
    pub replaced: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `12345` → `12,345`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Error lines are one line, whatever the database said.
fn one_line(text: impl std::fmt::Display) -> String {
    text.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// Transactions and the schema version.

fn begin(conn: &mut DbConn, write: bool) -> QueryResult<()> {
    match conn {
        // IMMEDIATE: the write lock up front, so nothing can slip in between check and write.
        DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(
            c,
            if write { "BEGIN IMMEDIATE" } else { "BEGIN" },
        ),
        // One snapshot for every table the backup reads.
        DbConn::Pg(c) => AnsiTransactionManager::begin_transaction_sql(
            c,
            if write {
                "BEGIN"
            } else {
                "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
            },
        ),
    }
}

fn commit(conn: &mut DbConn) -> QueryResult<()> {
    match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::commit_transaction(c),
        DbConn::Pg(c) => AnsiTransactionManager::commit_transaction(c),
    }
}

fn rollback(conn: &mut DbConn) {
    let _ = match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::rollback_transaction(c),
        DbConn::Pg(c) => AnsiTransactionManager::rollback_transaction(c),
    };
}

/// The migration versions this build carries for a backend.
fn known_versions(postgres: bool) -> Result<BTreeSet<String>, String> {
    use diesel::migration::MigrationSource;
    let versions = |names: Vec<String>| names.into_iter().collect();
    if postgres {
        MigrationSource::<diesel::pg::Pg>::migrations(&super::conn::PG_MIGRATIONS)
            .map(|ms| versions(ms.iter().map(|m| m.name().version().to_string()).collect()))
    } else {
        MigrationSource::<diesel::sqlite::Sqlite>::migrations(&super::conn::SQLITE_MIGRATIONS)
            .map(|ms| versions(ms.iter().map(|m| m.name().version().to_string()).collect()))
    }
    .map_err(|e| format!("cannot list the embedded migrations: {e}"))
}

#[derive(QueryableByName)]
struct Applied {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

/// The newest migration this build knows (the `schema` a backup of a current database has).
fn latest_known(postgres: bool) -> Result<String, String> {
    known_versions(postgres)?
        .into_iter()
        .next_back()
        .ok_or_else(|| "this build carries no migrations".into())
}

/// Checks, without writing, that the database has exactly the migrations this build knows;
/// returns the newest.
fn check_schema(conn: &mut DbConn, db: &str) -> Result<String, String> {
    let applied: BTreeSet<String> =
        diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
            .load::<Applied>(conn)
            .map_err(|_| format!("{db} is not a collab-hub database (no migrations applied)"))?
            .into_iter()
            .map(|a| a.version)
            .collect();
    let postgres = matches!(conn, DbConn::Pg(_));
    let known = known_versions(postgres)?;
    if let Some(newer) = applied.difference(&known).last() {
        return Err(format!(
            "{db} has migration {newer}, which this collab-hub does not know: back it up with the collab-hub that serves it"
        ));
    }
    if let Some(missing) = known.difference(&applied).next() {
        return Err(format!(
            "{db} lacks migration {missing}: run `collab-hub migrate` on it first (or back it up with the collab-hub that serves it)"
        ));
    }
    latest_known(postgres)
}

/// Rows per table in `target` (every session), for checks and tests.
pub fn count_rows(target: &DbTarget) -> Result<BTreeMap<String, i64>, String> {
    let mut conn = target.connect(ConnRole::Reader)?;
    TABLES
        .iter()
        .map(|t| {
            t.count(&mut conn)
                .map(|n| (t.name().to_owned(), n))
                .map_err(|e| format!("cannot count {}: {e}", t.name()))
        })
        .collect()
}
