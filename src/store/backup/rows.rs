//! The tables a backup holds, how each column is written (`plain`, `ts`, `ts_opt`, `b64`) and
//! how rows are read from and written to the database in batches.

use super::*;

// ---------------------------------------------------------------------------------------------
// Column encodings (every column is required: a missing one is a row that does not fit).

pub(super) mod plain {
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
pub(super) mod ts {
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

pub(super) mod ts_opt {
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
pub(super) mod b64 {
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
pub(super) trait Row: Serialize + DeserializeOwned + 'static {
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
            pub(super) struct $row {
                $( #[serde(with = $codec)] pub(super) $col: $ty, )+
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
        pub(super) static TABLES: &[&dyn Table] = &[$( &Typed::<$row>(PhantomData) ),+];
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
        genome: String = "plain",
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
    presence (session_id; session_id, ai_id) PresenceRow {
        session_id: String = "plain",
        ai_id: String = "plain",
        state: String = "plain",
        last_seen: Option<NaiveDateTime> = "ts_opt",
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
    session_outcomes (session_id; session_id) OutcomeRow {
        session_id: String = "plain",
        task_type: String = "plain",
        member_id: Option<i64> = "plain",
        generation: Option<i32> = "plain",
        genome: String = "plain",
        outcome: String = "plain",
        fitness: Option<f64> = "plain",
        terms: Option<String> = "plain",
        completed_at: NaiveDateTime = "ts",
    }
}

/// Hub-wide tables that belong to no session and so are in no session backup: the
/// populations are bred from many sessions' outcomes (which do travel with their sessions);
/// `mcp_sessions` are the live connections' state of the hub that wrote them (a client of a
/// restored database initializes again); `applied_requests` are the keys of writes a hub may
/// send again within seconds (none reaches a restored database).
#[cfg_attr(not(test), allow(dead_code))]
pub const HUB_WIDE_TABLES: [&str; 3] = ["populations", "mcp_sessions", "applied_requests"];

/// Tables derived from the ones a backup holds, so not carried: a restore rebuilds them for
/// the sessions it restores (`message_unread` from messages, receipts and participants).
#[cfg_attr(not(test), allow(dead_code))]
pub const DERIVED_TABLES: [&str; 1] = ["message_unread"];

/// The tables a backup holds, in the order they are written and restored (parents first).
pub fn table_names() -> Vec<&'static str> {
    TABLES.iter().map(|t| t.name()).collect()
}

/// A table, whatever its row type.
pub(super) trait Table: Sync {
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
pub(super) trait Batch {
    /// Parses one row; returns the session it belongs to.
    fn push(&mut self, line: &[u8]) -> Result<String, String>;
    fn full(&self) -> bool;
    /// Inserts what is gathered and empties the batch.
    fn insert(&mut self, conn: &mut DbConn) -> QueryResult<usize>;
    fn clear(&mut self);
}

pub(super) struct Typed<R>(PhantomData<fn() -> R>);

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

pub(super) struct Rows<R> {
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
