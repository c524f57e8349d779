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
//!   project, suggestions. It is read in one read transaction (a snapshot: REPEATABLE READ on
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

// ---------------------------------------------------------------------------------------------
// Column encodings (every column is required: a missing one is a row that does not fit).

mod plain {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        T::deserialize(d)
    }
}

/// Timestamps: `2026-12-03T10:11:12.123456Z`.
mod ts {
    use chrono::{DateTime, DurationRound, NaiveDateTime, TimeDelta};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn text(t: &NaiveDateTime) -> String {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }

    pub fn parse(text: &str) -> Option<NaiveDateTime> {
        let t = DateTime::parse_from_rfc3339(text).ok()?.naive_utc();
        // Both backends keep microseconds; a finer time would read back differently.
        t.duration_trunc(TimeDelta::microseconds(1)).ok()
    }

    pub fn serialize<S: Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&text(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDateTime, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time")))
    }
}

mod ts_opt {
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<NaiveDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::ts::text(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDateTime>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => super::ts::parse(&text).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time"))
            }),
        }
    }
}

/// Binary columns: standard base64.
mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("not base64: {e}")))
    }
}

// ---------------------------------------------------------------------------------------------
// The tables.

/// A table's row, typed, with what backup and restore do with it.
trait Row: Serialize + DeserializeOwned + 'static {
    const TABLE: &'static str;
    #[cfg(test)]
    const COLUMNS: &'static [&'static str];
    /// The session the row belongs to.
    fn session(&self) -> &str;
    /// Every row (of `session`, or of all sessions) in key order, one at a time.
    fn each(
        conn: &mut DbConn,
        session: Option<&str>,
        f: &mut dyn FnMut(Self) -> Result<(), String>,
    ) -> Result<(), String>;
    fn insert(conn: &mut DbConn, rows: &[Self]) -> QueryResult<usize>;
    fn delete(conn: &mut DbConn, sessions: &[String]) -> QueryResult<usize>;
    fn count(conn: &mut DbConn) -> QueryResult<i64>;
}

/// `tables! { table (session column; order columns) RowType { column: type = "encoding", … } … }`
/// in insert order (parents first). The `check_schema_covers_every_table` test compares this
/// list with `schema.rs`, so a new table or column cannot be left out of backups silently.
macro_rules! tables {
    ($( $table:ident ($scol:ident; $($ord:ident),+) $row:ident {
        $( $col:ident : $ty:ty = $codec:tt ),+ $(,)?
    } )+) => {
        $(
            #[derive(Debug, Queryable, Selectable, Insertable, Serialize, Deserialize)]
            #[diesel(table_name = schema::$table)]
            #[diesel(check_for_backend(diesel::pg::Pg, diesel::sqlite::Sqlite))]
            #[serde(deny_unknown_fields)]
            struct $row {
                $( #[serde(with = $codec)] $col: $ty, )+
            }

            impl Row for $row {
                const TABLE: &'static str = stringify!($table);
                #[cfg(test)]
                const COLUMNS: &'static [&'static str] = &[$(stringify!($col)),+];

                fn session(&self) -> &str {
                    &self.$scol
                }

                fn each(
                    conn: &mut DbConn,
                    session: Option<&str>,
                    f: &mut dyn FnMut(Self) -> Result<(), String>,
                ) -> Result<(), String> {
                    use schema::$table as t;
                    // Built once per backend: `as_select` is typed by the backend.
                    macro_rules! query {
                        () => {
                            t::table.select(<$row>::as_select()).order(($(t::$ord.asc(),)+))
                        };
                    }
                    let db = |e: diesel::result::Error| {
                        format!("cannot read table {}: {e}", stringify!($table))
                    };
                    // Row by row on both backends: PostgreSQL's default would first load the
                    // whole result into memory.
                    match (conn, session) {
                        (DbConn::Pg(c), Some(sid)) => {
                            for row in query!()
                                .filter(t::$scol.eq(sid))
                                .load_iter::<$row, PgRowByRowLoadingMode>(c)
                                .map_err(db)?
                            {
                                f(row.map_err(db)?)?;
                            }
                        }
                        (DbConn::Pg(c), None) => {
                            for row in query!()
                                .load_iter::<$row, PgRowByRowLoadingMode>(c)
                                .map_err(db)?
                            {
                                f(row.map_err(db)?)?;
                            }
                        }
                        (DbConn::Sqlite(c), Some(sid)) => {
                            for row in query!()
                                .filter(t::$scol.eq(sid))
                                .load_iter::<$row, DefaultLoadingMode>(c)
                                .map_err(db)?
                            {
                                f(row.map_err(db)?)?;
                            }
                        }
                        (DbConn::Sqlite(c), None) => {
                            for row in query!()
                                .load_iter::<$row, DefaultLoadingMode>(c)
                                .map_err(db)?
                            {
                                f(row.map_err(db)?)?;
                            }
                        }
                    }
                    Ok(())
                }

                fn insert(conn: &mut DbConn, rows: &[Self]) -> QueryResult<usize> {
                    match conn {
                        DbConn::Pg(c) => diesel::insert_into(schema::$table::table)
                            .values(rows)
                            .execute(c),
                        DbConn::Sqlite(c) => diesel::insert_into(schema::$table::table)
                            .values(rows)
                            .execute(c),
                    }
                }

                fn delete(conn: &mut DbConn, sessions: &[String]) -> QueryResult<usize> {
                    use schema::$table as t;
                    diesel::delete(t::table.filter(t::$scol.eq_any(sessions))).execute(conn)
                }

                fn count(conn: &mut DbConn) -> QueryResult<i64> {
                    schema::$table::table.count().get_result(conn)
                }
            }
        )+

        /// Every table, in insert order.
        static TABLES: &[&dyn Table] = &[$( &Typed::<$row>(PhantomData) ),+];
    };
}

tables! {
    sessions (id; id) SessionRow {
        id: String = "plain",
        name: String = "plain",
        status: String = "plain",
        handshake_mode: String = "plain",
        rotation_policy: String = "plain",
        save_interval: i32 = "plain",
        metadata: String = "plain",
        last_event_id: i64 = "plain",
        created_at: NaiveDateTime = "ts",
        updated_at: NaiveDateTime = "ts",
        coordination: String = "plain",
        rotation_interval_secs: i32 = "plain",
        review_timeout_secs: i32 = "plain",
        task_allocation: String = "plain",
        project: String = "plain",
    }
    participants (session_id; session_id, ai_id) ParticipantRow {
        session_id: String = "plain",
        ai_id: String = "plain",
        role: String = "plain",
        permissions: String = "plain",
        token_digest: String = "plain",
        joined_at: NaiveDateTime = "ts",
        left_at: Option<NaiveDateTime> = "ts_opt",
        acked_event_id: i64 = "plain",
        checkpoint: Option<String> = "plain",
        skills: String = "plain",
    }
    events (session_id; session_id, id) EventRow {
        session_id: String = "plain",
        id: i64 = "plain",
        actor: Option<String> = "plain",
        kind: String = "plain",
        priority: String = "plain",
        payload: String = "plain",
        created_at: NaiveDateTime = "ts",
        recipient: Option<String> = "plain",
    }
    context_snapshots (session_id; session_id, event_id, id) ContextSnapshotRow {
        id: String = "plain",
        session_id: String = "plain",
        event_id: i64 = "plain",
        created_at: NaiveDateTime = "ts",
        encoding: String = "plain",
        context: Vec<u8> = "b64",
        trigger: String = "plain",
    }
    session_snapshots (session_id; session_id, id) SessionSnapshotRow {
        session_id: String = "plain",
        id: i64 = "plain",
        event_id: i64 = "plain",
        created_at: NaiveDateTime = "ts",
        trigger: String = "plain",
        encoding: String = "plain",
        bytes: i64 = "plain",
        state: Vec<u8> = "b64",
    }
    messages (session_id; session_id, id) MessageRow {
        session_id: String = "plain",
        id: i64 = "plain",
        from_ai: String = "plain",
        to_ai: Option<String> = "plain",
        priority: String = "plain",
        body: String = "plain",
        reply_to: Option<i64> = "plain",
        thread_id: i64 = "plain",
        requires_ack: bool = "plain",
        ack_deadline: Option<NaiveDateTime> = "ts_opt",
        overdue_alerted: bool = "plain",
        created_at: NaiveDateTime = "ts",
    }
    message_receipts (session_id; session_id, message_id, ai_id) ReceiptRow {
        session_id: String = "plain",
        message_id: i64 = "plain",
        ai_id: String = "plain",
        read_at: Option<NaiveDateTime> = "ts_opt",
        acked_at: Option<NaiveDateTime> = "ts_opt",
        delivered_at: Option<NaiveDateTime> = "ts_opt",
        shown_at: Option<NaiveDateTime> = "ts_opt",
        shown_via: Option<String> = "plain",
    }
    tasks (session_id; session_id, id) TaskRow {
        session_id: String = "plain",
        id: i64 = "plain",
        parent_id: Option<i64> = "plain",
        description: String = "plain",
        assigned_to: Option<String> = "plain",
        status: String = "plain",
        blocked_reason: Option<String> = "plain",
        dependencies: String = "plain",
        skills: String = "plain",
        estimated_secs: Option<i32> = "plain",
        metadata: String = "plain",
        handoff: Option<String> = "plain",
        created_by: Option<String> = "plain",
        created_at: NaiveDateTime = "ts",
        updated_at: NaiveDateTime = "ts",
        completed_at: Option<NaiveDateTime> = "ts_opt",
    }
    code_changes (session_id; session_id, id) ChangeRow {
        session_id: String = "plain",
        id: i64 = "plain",
        ai_id: String = "plain",
        co_author: Option<String> = "plain",
        operation: String = "plain",
        file_path: String = "plain",
        new_path: Option<String> = "plain",
        diff: Option<String> = "plain",
        lines: String = "plain",
        symbols: String = "plain",
        reason: Option<String> = "plain",
        created_at: NaiveDateTime = "ts",
        task_id: Option<i64> = "plain",
    }
    locks (session_id; session_id, id) LockRow {
        session_id: String = "plain",
        id: i64 = "plain",
        resource: String = "plain",
        holder: String = "plain",
        mode: String = "plain",
        operation: Option<String> = "plain",
        state: String = "plain",
        lease_secs: i32 = "plain",
        fencing_token: Option<i64> = "plain",
        requested_at: NaiveDateTime = "ts",
        expires_at: Option<NaiveDateTime> = "ts_opt",
        released_at: Option<NaiveDateTime> = "ts_opt",
        release_reason: Option<String> = "plain",
        task_id: Option<i64> = "plain",
    }
    suggestions (session_id; session_id, id) SuggestionRow {
        session_id: String = "plain",
        id: i64 = "plain",
        ai_id: String = "plain",
        file_path: String = "plain",
        diff: String = "plain",
        lines: String = "plain",
        reason: Option<String> = "plain",
        task_id: Option<i64> = "plain",
        status: String = "plain",
        resolved_by: Option<String> = "plain",
        note: Option<String> = "plain",
        change_id: Option<i64> = "plain",
        created_at: NaiveDateTime = "ts",
        resolved_at: Option<NaiveDateTime> = "ts_opt",
    }
}

/// The tables a backup holds, in the order they are written and restored (parents first).
pub fn table_names() -> Vec<&'static str> {
    TABLES.iter().map(|t| t.name()).collect()
}

/// A table, whatever its row type.
trait Table: Sync {
    fn name(&self) -> &'static str;
    #[cfg(test)]
    fn columns(&self) -> &'static [&'static str];
    /// Hands each row to `out` as one line of JSON (with its `\n`).
    fn dump(
        &self,
        conn: &mut DbConn,
        session: Option<&str>,
        out: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String>;
    fn batch(&self) -> Box<dyn Batch>;
    fn delete(&self, conn: &mut DbConn, sessions: &[String]) -> QueryResult<usize>;
    fn count(&self, conn: &mut DbConn) -> QueryResult<i64>;
}

/// Rows of one table parsed from a file, waiting to be inserted.
trait Batch {
    /// Parses one row; returns the session it belongs to.
    fn push(&mut self, line: &[u8]) -> Result<String, String>;
    fn full(&self) -> bool;
    /// Inserts what is gathered and empties the batch.
    fn insert(&mut self, conn: &mut DbConn) -> QueryResult<usize>;
    fn clear(&mut self);
}

struct Typed<R>(PhantomData<fn() -> R>);

impl<R: Row> Table for Typed<R> {
    fn name(&self) -> &'static str {
        R::TABLE
    }

    #[cfg(test)]
    fn columns(&self) -> &'static [&'static str] {
        R::COLUMNS
    }

    fn dump(
        &self,
        conn: &mut DbConn,
        session: Option<&str>,
        out: &mut dyn FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut line = Vec::new();
        R::each(conn, session, &mut |row| {
            line.clear();
            serde_json::to_writer(&mut line, &row)
                .map_err(|e| format!("a row of {} does not serialize: {e}", R::TABLE))?;
            line.push(b'\n');
            out(&line)
        })
    }

    fn batch(&self) -> Box<dyn Batch> {
        Box::new(Rows::<R> {
            rows: Vec::new(),
            bytes: 0,
        })
    }

    fn delete(&self, conn: &mut DbConn, sessions: &[String]) -> QueryResult<usize> {
        R::delete(conn, sessions)
    }

    fn count(&self, conn: &mut DbConn) -> QueryResult<i64> {
        R::count(conn)
    }
}

struct Rows<R> {
    rows: Vec<R>,
    bytes: usize,
}

impl<R: Row> Batch for Rows<R> {
    fn push(&mut self, line: &[u8]) -> Result<String, String> {
        let row: R = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        let session = row.session().to_owned();
        self.rows.push(row);
        self.bytes += line.len();
        Ok(session)
    }

    fn full(&self) -> bool {
        self.rows.len() >= BATCH_ROWS || self.bytes >= BATCH_BYTES
    }

    fn insert(&mut self, conn: &mut DbConn) -> QueryResult<usize> {
        let n = if self.rows.is_empty() {
            0
        } else {
            R::insert(conn, &self.rows)?
        };
        self.clear();
        Ok(n)
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.bytes = 0;
    }
}

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

// ---------------------------------------------------------------------------------------------
// Backup.

/// Counts and hashes what passes through.
struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `dir/.name.partial-<pid>`: where the file is written before it takes its name.
fn partial_path(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    file.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Writes the chosen sessions (all when `only` is empty) of `source` to `file`. Works while a
/// hub runs on `source`: one read transaction, no claim.
pub fn backup(source: &DbTarget, file: &Path, only: &[String]) -> Result<BackupSummary, String> {
    let db = source.redacted();
    if let DbTarget::Sqlite(path) = source
        && !path.is_file()
    {
        return Err(format!("{db}: no such database file"));
    }
    if file.is_dir() {
        return Err(format!("{} is a directory", file.display()));
    }
    let mut conn = source.connect(ConnRole::Reader)?;
    begin(&mut conn, false).map_err(|e| format!("{db}: cannot begin a read: {e}"))?;
    let written = (|| {
        let schema = check_schema(&mut conn, &db)?;
        let sessions = chosen_sessions(&mut conn, &db, only)?;
        write_file(&mut conn, file, sessions.as_deref(), &db, schema)
    })();
    rollback(&mut conn);
    written.map_err(one_line)
}

/// `None`: every session. Otherwise the named ones, each checked to exist.
fn chosen_sessions(
    conn: &mut DbConn,
    db: &str,
    only: &[String],
) -> Result<Option<Vec<String>>, String> {
    if only.is_empty() {
        return Ok(None);
    }
    let wanted: BTreeSet<String> = only.iter().map(|s| s.trim().to_owned()).collect();
    let mut found = HashSet::new();
    let wanted_list: Vec<String> = wanted.iter().cloned().collect();
    for chunk in wanted_list.chunks(ID_CHUNK) {
        let ids: Vec<String> = schema::sessions::table
            .filter(schema::sessions::id.eq_any(chunk))
            .select(schema::sessions::id)
            .load(conn)
            .map_err(|e| format!("{db}: cannot read sessions: {e}"))?;
        found.extend(ids);
    }
    if let Some(missing) = wanted.iter().find(|id| !found.contains(*id)) {
        return Err(format!("{db} has no session {missing}"));
    }
    Ok(Some(wanted_list))
}

fn write_file(
    conn: &mut DbConn,
    file: &Path,
    sessions: Option<&[String]>,
    db: &str,
    schema: String,
) -> Result<BackupSummary, String> {
    let partial = partial_path(file);
    let shown = file.display().to_string();
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(format!(
            "cannot write {shown}: directory {} does not exist",
            dir.display()
        ));
    }
    let written = write_partial(conn, &partial, sessions, db, schema).and_then(|summary| {
        std::fs::rename(&partial, file)
            .map_err(|e| format!("cannot write {shown}: {e}"))
            .map(|()| summary)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    } else if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all(); // the rename itself survives a crash
    }
    written
}

fn write_partial(
    conn: &mut DbConn,
    partial: &Path,
    sessions: Option<&[String]>,
    db: &str,
    schema: String,
) -> Result<BackupSummary, String> {
    let io_err = |e: io::Error| format!("cannot write {}: {e}", partial.display());
    let mut out = BufWriter::with_capacity(1 << 16, File::create(partial).map_err(io_err)?);
    // The header goes here once the body's digest is known.
    out.write_all(&[b' '; HEADER_BYTES]).map_err(io_err)?;
    let body = HashWriter {
        inner: out,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut z = zstd::stream::Encoder::new(body, ZSTD_LEVEL).map_err(io_err)?;
    let mut tables = BTreeMap::new();
    for table in TABLES {
        let name = table.name();
        let mut rows = 0u64;
        writeln!(z, "{}", serde_json::json!({ "table": name })).map_err(io_err)?;
        let mut emit = |line: &[u8]| -> Result<(), String> {
            rows += 1;
            z.write_all(line).map_err(io_err)
        };
        match sessions {
            None => table.dump(conn, None, &mut emit)?,
            Some(ids) => {
                for id in ids {
                    table.dump(conn, Some(id), &mut emit)?;
                }
            }
        }
        tables.insert(name.to_owned(), rows);
    }
    let body = z.finish().map_err(io_err)?;
    let (mut out, digest, body_bytes) = (body.inner, body.hasher.finalize(), body.bytes);
    let rows = tables.values().sum();
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        created_at: ts::text(&crate::domain::now()),
        created_by: format!("collab-hub {}", env!("CARGO_PKG_VERSION")),
        source: match conn {
            DbConn::Sqlite(_) => "sqlite".into(),
            DbConn::Pg(_) => "postgres".into(),
        },
        schema,
        compression: "zstd".into(),
        sessions: tables.get("sessions").copied().unwrap_or(0),
        rows,
        tables,
        body_bytes,
        sha256: hex(&digest),
    };
    let mut line = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    if line.len() >= HEADER_BYTES {
        return Err(format!(
            "{db}: the backup header outgrew {HEADER_BYTES} bytes"
        ));
    }
    line.resize(HEADER_BYTES - 1, b' ');
    line.push(b'\n');
    out.flush().map_err(io_err)?;
    let mut f = out.into_inner().map_err(|e| io_err(e.into_error()))?;
    f.seek(SeekFrom::Start(0)).map_err(io_err)?;
    f.write_all(&line).map_err(io_err)?;
    f.sync_all().map_err(io_err)?;
    Ok(BackupSummary {
        sessions: header.sessions,
        rows: header.rows,
        bytes: HEADER_BYTES as u64 + body_bytes,
        header,
    })
}

// ---------------------------------------------------------------------------------------------
// Reading a file.

/// Takes each batch of parsed rows (and must empty it).
type Sink<'a> = dyn FnMut(&dyn Table, &mut dyn Batch) -> Result<(), String> + 'a;

/// Counts and hashes what is read through it.
struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Opens `file` and reads its header; the reader is left at the body.
fn open(file: &Path) -> Result<(Header, BufReader<File>), String> {
    let shown = file.display();
    let f = File::open(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let size = f
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?
        .len();
    let mut reader = BufReader::with_capacity(1 << 16, f);
    let mut line = Vec::new();
    reader
        .by_ref()
        .take(MAX_HEADER_BYTES)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let not_backup = || format!("{shown} is not a collab-hub backup");
    if !line.ends_with(b"\n") {
        return Err(not_backup());
    }
    let value: serde_json::Value = serde_json::from_slice(&line).map_err(|_| not_backup())?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(not_backup());
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(VERSION) => {}
        Some(other) => {
            return Err(format!(
                "{shown}: backup format version {other} is not supported (this collab-hub reads version {VERSION})"
            ));
        }
        None => return Err(not_backup()),
    }
    let header: Header = serde_json::from_value(value)
        .map_err(|e| format!("{shown}: the backup header is damaged: {e}"))?;
    if header.compression != "zstd" {
        return Err(format!(
            "{shown}: unknown compression {:?}",
            header.compression
        ));
    }
    let body = size - line.len() as u64;
    if body < header.body_bytes {
        return Err(format!(
            "{shown} is truncated: its body has {} of {} bytes",
            grouped(body),
            grouped(header.body_bytes)
        ));
    }
    if body > header.body_bytes {
        return Err(format!(
            "{shown} is damaged: {} bytes follow its body",
            grouped(body - header.body_bytes)
        ));
    }
    Ok((header, reader))
}

/// What a file holds, once read to the end and checked.
struct Scanned {
    header: Header,
    /// Session ids, in file order.
    sessions: Vec<String>,
}

/// Reads the body of `file`, handing each table's parsed rows to `sink` in batches (it must
/// empty them). Checks the digest, the row counts against the header, that the tables come in
/// order, and that every row fits its table and belongs to a session of the file.
fn scan(file: &Path, sink: &mut Sink<'_>) -> Result<Scanned, String> {
    let shown = file.display().to_string();
    let (header, reader) = open(file)?;
    let mut raw = HashReader {
        inner: reader,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let parsed = read_body(&mut raw, &shown, sink);
    // A damaged body usually shows up as bad zstd or bad JSON first: the digest names it.
    let rest = io::copy(&mut raw, &mut io::sink());
    if rest.is_err()
        || raw.bytes != header.body_bytes
        || hex(&raw.hasher.finalize()) != header.sha256
    {
        return Err(format!(
            "{shown} is damaged: its body does not match the header's sha256"
        ));
    }
    let (sessions, counts) = parsed?;
    for (name, expected) in &header.tables {
        let got = counts.get(name.as_str()).copied().unwrap_or(0);
        if !TABLES.iter().any(|t| t.name() == name) && *expected > 0 {
            return Err(format!(
                "{shown} holds table {name}, which this collab-hub does not know (written by a newer one?)"
            ));
        }
        if got != *expected {
            return Err(format!(
                "{shown} is inconsistent: its header says {expected} rows of {name}, its body has {got}"
            ));
        }
    }
    if let Some((name, got)) = counts
        .iter()
        .find(|(name, got)| **got > 0 && !header.tables.contains_key(**name))
    {
        return Err(format!(
            "{shown} is inconsistent: its body has {got} rows of {name}, its header none"
        ));
    }
    if header.sessions != sessions.len() as u64 || header.rows != counts.values().sum::<u64>() {
        return Err(format!(
            "{shown} is inconsistent: its header's session or row count does not match its body"
        ));
    }
    Ok(Scanned { header, sessions })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Marker {
    table: String,
}

type Parsed = (Vec<String>, BTreeMap<&'static str, u64>);

fn read_body(raw: &mut dyn Read, shown: &str, sink: &mut Sink<'_>) -> Result<Parsed, String> {
    let damaged = |e: io::Error| format!("{shown} is damaged: {e}");
    let decoder = zstd::stream::read::Decoder::new(raw).map_err(damaged)?;
    let mut lines = BufReader::with_capacity(1 << 16, decoder);
    let mut line = Vec::new();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut sessions = Vec::new();
    let mut known_sessions = HashSet::new();
    let mut next_table = 0;
    let mut current: Option<(&'static dyn Table, Box<dyn Batch>)> = None;
    loop {
        line.clear();
        let n = lines
            .by_ref()
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut line)
            .map_err(damaged)?;
        if n == 0 {
            break;
        }
        if !line.ends_with(b"\n") {
            return Err(if n as u64 > MAX_LINE_BYTES {
                format!("{shown} holds a row over {} MiB", MAX_LINE_BYTES >> 20)
            } else {
                format!("{shown} is damaged: its last line is cut short")
            });
        }
        if let Ok(Marker { table }) = serde_json::from_slice::<Marker>(&line) {
            if let Some((t, mut batch)) = current.take() {
                sink(t, batch.as_mut())?;
            }
            let Some(at) = TABLES.iter().position(|t| t.name() == table) else {
                return Err(format!(
                    "{shown} holds table {table:?}, which this collab-hub does not know (written by a newer one?)"
                ));
            };
            if at < next_table {
                return Err(format!(
                    "{shown} is inconsistent: table {table} is out of order or repeated"
                ));
            }
            next_table = at + 1;
            current = Some((TABLES[at], TABLES[at].batch()));
            counts.insert(TABLES[at].name(), 0);
            continue;
        }
        let Some((table, batch)) = current.as_mut() else {
            return Err(format!(
                "{shown} is damaged: its body does not start with a table"
            ));
        };
        let name = table.name();
        let count = counts.entry(name).or_default();
        *count += 1;
        let session = batch.push(&line).map_err(|e| {
            format!("{shown}: row {count} of table {name} does not fit the schema: {e}")
        })?;
        if name == "sessions" {
            if !known_sessions.insert(session.clone()) {
                return Err(format!("{shown} holds session {session} twice"));
            }
            sessions.push(session);
        } else if !known_sessions.contains(&session) {
            return Err(format!(
                "{shown}: row {count} of table {name} belongs to session {session}, which the file does not hold"
            ));
        }
        if batch.full() {
            sink(*table, batch.as_mut())?;
        }
    }
    if let Some((t, mut batch)) = current.take() {
        sink(t, batch.as_mut())?;
    }
    Ok((sessions, counts))
}

// ---------------------------------------------------------------------------------------------
// Restore.

/// Restores `file` into `target` in one transaction (see the module documentation). Refuses
/// while a hub runs on `target`.
pub fn restore(target: &DbTarget, file: &Path, replace: bool) -> Result<RestoreSummary, String> {
    restore_inner(target, file, replace).map_err(one_line)
}

fn restore_inner(target: &DbTarget, file: &Path, replace: bool) -> Result<RestoreSummary, String> {
    let shown = file.display().to_string();
    let db = target.redacted();
    // 1. The whole file, before the database is touched.
    let checked = scan(file, &mut |_, batch| {
        batch.clear();
        Ok(())
    })?;
    if checked.header.schema > latest_known(matches!(target, DbTarget::Postgres(_)))? {
        return Err(format!(
            "{shown} was written by a newer collab-hub (schema {}); restore it with that one",
            checked.header.schema
        ));
    }
    // 2. No hub may run on the target meanwhile, and none may start.
    let claim =
        super::claim::claim(target, "restore").map_err(|e| format!("cannot restore: {e}"))?;
    let fresh_file = match target {
        DbTarget::Sqlite(path) if !path.exists() => Some(path.clone()),
        _ => None,
    };
    let restored = (|| {
        let mut conn = target.connect(ConnRole::Writer)?;
        super::conn::run_migrations(&mut conn)?;
        // 3. All or nothing.
        begin(&mut conn, true).map_err(|e| format!("{db}: cannot begin a transaction: {e}"))?;
        match restore_rows(&mut conn, file, &checked, replace, &db) {
            Ok(summary) => commit(&mut conn).map(|()| summary).map_err(|e| {
                format!("{db}: the restore did not commit (nothing was restored): {e}")
            }),
            Err(e) => {
                rollback(&mut conn);
                Err(e)
            }
        }
    })();
    // A restore that failed into a database it created leaves no empty database behind.
    if restored.is_err()
        && let Some(path) = fresh_file
    {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(name);
        }
    }
    drop(claim);
    restored
}

fn restore_rows(
    conn: &mut DbConn,
    file: &Path,
    checked: &Scanned,
    replace: bool,
    db: &str,
) -> Result<RestoreSummary, String> {
    let shown = file.display().to_string();
    let mut existing = Vec::new();
    for chunk in checked.sessions.chunks(ID_CHUNK) {
        let found: Vec<String> = schema::sessions::table
            .filter(schema::sessions::id.eq_any(chunk))
            .select(schema::sessions::id)
            .load(conn)
            .map_err(|e| format!("{db}: cannot read sessions: {e}"))?;
        existing.extend(found);
    }
    existing.sort();
    if !existing.is_empty() && !replace {
        let mut named = existing
            .iter()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if existing.len() > 3 {
            named.push_str(", …");
        }
        return Err(format!(
            "{db} already has {} of the sessions in {shown} ({named}); nothing was restored; add --replace to replace them",
            existing.len()
        ));
    }
    // Children first: nothing may point at a deleted row, even for a moment.
    for table in TABLES.iter().rev() {
        for chunk in existing.chunks(ID_CHUNK) {
            table
                .delete(conn, chunk)
                .map_err(|e| format!("{db}: cannot delete from {}: {e}", table.name()))?;
        }
    }
    let mut rows = 0u64;
    let again = scan(file, &mut |table, batch| {
        rows += batch.insert(conn).map_err(|e| {
            format!(
                "{db}: a row of {} from {shown} does not fit (nothing was restored): {e}",
                table.name()
            )
        })? as u64;
        Ok(())
    })?;
    if again.header.sha256 != checked.header.sha256 {
        return Err(format!(
            "{shown} changed while it was restored; nothing was restored"
        ));
    }
    check_lock_conflicts(conn, &checked.sessions, &shown, db)?;
    Ok(RestoreSummary {
        sessions: checked.sessions.len() as u64,
        rows,
        replaced: existing.len() as u64,
    })
}

/// A held lock restored into a project where another session of the target holds a
/// conflicting one would give one file two holders: refused.
fn check_lock_conflicts(
    conn: &mut DbConn,
    restored: &[String],
    shown: &str,
    db: &str,
) -> Result<(), String> {
    use crate::domain::lock::Resource;
    use schema::{locks, sessions};
    let failed = |e: diesel::result::Error| format!("{db}: cannot check locks: {e}");
    let restored_set: HashSet<&str> = restored.iter().map(String::as_str).collect();
    let mut projects = BTreeSet::new();
    for chunk in restored.chunks(ID_CHUNK) {
        let found: Vec<String> = sessions::table
            .filter(sessions::id.eq_any(chunk))
            .select(sessions::project)
            .distinct()
            .load(conn)
            .map_err(failed)?;
        projects.extend(found);
    }
    for project in projects {
        let held: Vec<(String, i64, String, String, String)> = locks::table
            .inner_join(sessions::table.on(sessions::id.eq(locks::session_id)))
            .filter(sessions::project.eq(&project))
            .filter(locks::state.eq("held"))
            .select((
                locks::session_id,
                locks::id,
                locks::resource,
                locks::holder,
                locks::mode,
            ))
            .load(conn)
            .map_err(failed)?;
        let (mine, theirs): (Vec<_>, Vec<_>) = held
            .iter()
            .partition(|l| restored_set.contains(l.0.as_str()));
        for a in &mine {
            let Ok(ra) = Resource::parse(&a.2) else {
                continue;
            };
            for b in &theirs {
                let both_shared = a.4 == "shared" && b.4 == "shared";
                if both_shared || !Resource::parse(&b.2).is_ok_and(|rb| ra.conflicts_with(&rb)) {
                    continue;
                }
                return Err(format!(
                    "{shown}: {} of session {} holds {} (lock {}), which conflicts with {} held by {} of session {} in project {project:?} of {db}; release it there first (nothing was restored)",
                    a.3, a.0, a.2, a.1, b.2, b.3, b.0
                ));
            }
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `schema.rs` as diesel sees it: table → columns.
    fn schema_tables() -> BTreeMap<String, Vec<String>> {
        let text = include_str!("schema.rs");
        let mut tables = BTreeMap::new();
        let mut current: Option<(String, Vec<String>)> = None;
        for line in text.lines().map(str::trim) {
            if let Some((name, cols)) = current.as_mut() {
                if line == "}" {
                    tables.insert(name.clone(), std::mem::take(cols));
                    current = None;
                } else if let Some((col, _)) = line.split_once("->") {
                    cols.push(col.trim().to_owned());
                }
                continue;
            }
            if line.ends_with('{')
                && line.contains('(')
                && let Some(name) = line.split_whitespace().next()
            {
                current = Some((name.to_owned(), Vec::new()));
            }
        }
        tables
    }

    #[test]
    fn check_schema_covers_every_table() {
        let schema = schema_tables();
        assert!(schema.len() >= 11, "parsed schema.rs: {schema:?}");
        let ours: BTreeMap<String, Vec<String>> = TABLES
            .iter()
            .map(|t| {
                (
                    t.name().to_owned(),
                    t.columns().iter().map(|c| (*c).to_owned()).collect(),
                )
            })
            .collect();
        for (table, columns) in &schema {
            assert_eq!(
                ours.get(table),
                Some(columns),
                "backup.rs must carry table {table} with exactly the columns of schema.rs"
            );
        }
        assert_eq!(
            ours.len(),
            schema.len(),
            "backup.rs names a table schema.rs lacks"
        );
        assert_eq!(TABLES[0].name(), "sessions", "parents first");
    }

    #[test]
    fn timestamps_are_microsecond_rfc3339() {
        let t = chrono::NaiveDate::from_ymd_opt(2026, 12, 3)
            .unwrap()
            .and_hms_micro_opt(10, 11, 12, 5)
            .unwrap();
        assert_eq!(ts::text(&t), "2026-12-03T10:11:12.000005Z");
        assert_eq!(ts::parse("2026-12-03T10:11:12.000005Z"), Some(t));
        assert_eq!(ts::parse("2026-12-03T11:11:12.000005999+01:00"), Some(t));
        assert_eq!(ts::parse("2026-12-03 10:11:12"), None);
    }

    #[test]
    fn rows_must_carry_every_column_and_no_other() {
        let good = serde_json::json!({"session_id": "s", "message_id": 1, "ai_id": "a", "read_at": null, "acked_at": "2026-12-03T10:11:12.000000Z", "delivered_at": null, "shown_at": null, "shown_via": null});
        assert!(serde_json::from_value::<ReceiptRow>(good.clone()).is_ok());
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("read_at");
        let err = serde_json::from_value::<ReceiptRow>(missing).unwrap_err();
        assert!(err.to_string().contains("read_at"), "{err}");
        let mut extra = good;
        extra["x"] = 1.into();
        assert!(serde_json::from_value::<ReceiptRow>(extra).is_err());
        let blob = serde_json::json!({"id": "x", "session_id": "s", "event_id": 1, "created_at": "2026-12-03T10:11:12.000000Z", "encoding": "json", "context": "e30=", "trigger": "auto"});
        let row: ContextSnapshotRow = serde_json::from_value(blob.clone()).unwrap();
        assert_eq!(row.context, b"{}");
        assert_eq!(serde_json::to_value(&row).unwrap(), blob);
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(12_345), "12,345");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}
