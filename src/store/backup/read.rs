//! Reading a backup file (header, digest, every row against the schema) and restoring it in one
//! transaction.

use super::rows::{Batch, Table};
use super::*;

// ---------------------------------------------------------------------------------------------
// Reading a file.

/// Takes each batch of parsed rows (and must empty it).
pub(super) type Sink<'a> = dyn FnMut(&dyn Table, &mut dyn Batch) -> Result<(), String> + 'a;

/// Counts and hashes what is read through it.
pub(super) struct HashReader<R> {
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
pub(super) fn open(file: &Path) -> Result<(Header, BufReader<File>), String> {
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
pub(super) struct Scanned {
    header: Header,
    /// Session ids, in file order.
    sessions: Vec<String>,
}

/// Reads the body of `file`, handing each table's parsed rows to `sink` in batches (it must
/// empty them). Checks the digest, the row counts against the header, that the tables come in
/// order, and that every row fits its table and belongs to a session of the file.
pub(super) fn scan(file: &Path, sink: &mut Sink<'_>) -> Result<Scanned, String> {
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
pub(super) struct Marker {
    table: String,
}

pub(super) type Parsed = (Vec<String>, BTreeMap<&'static str, u64>);

pub(super) fn read_body(
    raw: &mut dyn Read,
    shown: &str,
    sink: &mut Sink<'_>,
) -> Result<Parsed, String> {
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

pub(super) fn restore_inner(
    target: &DbTarget,
    file: &Path,
    replace: bool,
) -> Result<RestoreSummary, String> {
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
    let claim = crate::store::claim::claim_exclusive(target, "restore")
        .map_err(|e| format!("cannot restore: {e}"))?;
    let fresh_file = match target {
        DbTarget::Sqlite(path) if !path.exists() => Some(path.clone()),
        _ => None,
    };
    let restored = (|| {
        let mut conn = target.connect(ConnRole::Writer)?;
        crate::store::conn::run_migrations(&mut conn)?;
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

pub(super) fn restore_rows(
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
    // What each participant has not read is derived, not carried: rebuilt from what came in.
    for chunk in checked.sessions.chunks(ID_CHUNK) {
        crate::store::messages::clear_unread(conn, chunk)
            .and_then(|_| crate::store::messages::rebuild_unread(conn, chunk, None))
            .map_err(|e| format!("{db}: cannot rebuild the unread messages: {e}"))?;
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
pub(super) fn check_lock_conflicts(
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
