//! Writing a backup: the chosen sessions' rows, read in one transaction, streamed through zstd
//! into a partial file that takes its name once complete.

use super::*;

// ---------------------------------------------------------------------------------------------
// Backup.

/// Counts and hashes what passes through.
pub(super) struct HashWriter<W> {
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
pub(super) fn partial_path(file: &Path) -> PathBuf {
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
pub(super) fn chosen_sessions(
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

pub(super) fn write_file(
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

pub(super) fn write_partial(
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
