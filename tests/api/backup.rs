//! `collab-hub backup` and `collab-hub restore`, run as the real binary: a busy session moved
//! from SQLite to PostgreSQL (and one back) answers every view as before; damaged files are
//! refused with one line and change nothing; existing sessions need `--replace`; a restore
//! never runs beside a hub.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use actix_web::http::StatusCode;
use collab_hub::Settings;
use collab_hub::store::backup::count_rows;
use collab_hub::store::{ConnRole, DbTarget};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Backend, TestApp, TestDb, both_backends, spawn_app, start_on};

both_backends!(
    damaged_backups_are_refused_and_change_nothing,
    existing_sessions_are_replaced_only_with_replace,
    restore_is_refused_while_a_hub_runs,
    a_backup_under_load_is_one_consistent_snapshot,
    a_restored_lock_may_not_collide_with_one_held_in_its_project,
    a_backup_carries_the_presence_last_announced,
);

/// A directory for backup files, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "collab-hub-backup-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary off the async workers (a hub of this test may be serving meanwhile).
async fn cli(args: Vec<String>) -> Output {
    actix_web::rt::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_collab-hub"))
            .args(&args)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run collab-hub")
    })
    .await
    .unwrap()
}

pub(crate) async fn backup(url: &str, file: &Path, sessions: &[&str]) -> Output {
    let mut args = vec![
        "backup".to_owned(),
        file.display().to_string(),
        "--database-url".to_owned(),
        url.to_owned(),
    ];
    for s in sessions {
        args.extend(["--session".to_owned(), (*s).to_owned()]);
    }
    cli(args).await
}

pub(crate) async fn restore(url: &str, file: &Path, replace: bool) -> Output {
    let mut args = vec![
        "restore".to_owned(),
        file.display().to_string(),
        "--database-url".to_owned(),
        url.to_owned(),
    ];
    if replace {
        args.push("--replace".to_owned());
    }
    cli(args).await
}

/// Asserts success; returns stdout's one line.
pub(crate) fn succeeded(out: &Output) -> String {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "failed: {stderr}{stdout}");
    assert_eq!(stdout.lines().count(), 1, "one summary line: {stdout}");
    stdout.trim().to_owned()
}

/// Asserts exit code 1, nothing on stdout and exactly one line on stderr; returns that line.
fn refused(out: &Output) -> String {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr.trim().to_owned()
}

fn counts(url: &str) -> BTreeMap<String, i64> {
    count_rows(&DbTarget::parse(url).unwrap()).unwrap()
}

/// Hubs of these tests: no lock is released for want of a connection while a test runs.
fn settings() -> Settings {
    let mut s = Settings::for_database("unused");
    s.disconnect_grace_secs = 3600;
    s
}

/// One session's participants and their tokens.
struct Team {
    id: String,
    tokens: BTreeMap<String, String>,
}

impl Team {
    fn token(&self, who: &str) -> &str {
        &self.tokens[who]
    }
}

async fn ok(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let (status, answer) = app.post_as(token, path, &body).await;
    assert!(status.is_success(), "{path} {body}: {status} {answer}");
    answer
}

/// A session with a bit of everything: four participants (one joined later, one in a
/// checkpoint), context writes with versions, a >64 KiB value and enough writes for a
/// compressed context snapshot, directed, broadcast and threaded messages with receipts and
/// acknowledgements, tasks with subtasks, a held lock and a queued one, recorded changes with
/// diffs, suggestions (one accepted), and a whole-session snapshot.
async fn busy_session(app: &TestApp, name: &str) -> Team {
    let (status, created) = app
        .post(
            "/mcp/session/create",
            &json!({"name": name, "participants": ["claude", "gemini", "cursor"],
                    "handshakeMode": "loose", "saveInterval": 0,
                    "metadata": {"repo": "payments", "ticket": 42}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["sessionId"].as_str().unwrap().to_owned();
    let mut tokens: BTreeMap<String, String> = created["tokens"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let claude = tokens["claude"].clone();
    let (status, joined) = app
        .post_as(
            &claude,
            "/mcp/session/join",
            &json!({"sessionId": id, "participant": "human:alice", "role": "observer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{joined}");
    tokens.insert(
        "human:alice".into(),
        joined["token"].as_str().unwrap().to_owned(),
    );
    let team = Team { id, tokens };
    let (claude, gemini, cursor) = (
        team.token("claude"),
        team.token("gemini"),
        team.token("cursor"),
    );

    // Context: versions, an append, working memory, a large value, then enough writes for a
    // snapshot (every 100 changes), which holds the large value and so is compressed.
    let set = ok(
        app,
        claude,
        "/mcp/context/set",
        json!({"path": "plan.step", "value": 1}),
    )
    .await;
    ok(
        app,
        gemini,
        "/mcp/context/set",
        json!({"path": "plan.step", "value": 2, "expectedVersion": set["version"]}),
    )
    .await;
    ok(
        app,
        claude,
        "/mcp/context/append/activeWork.log",
        json!({"value": {"did": "start"}}),
    )
    .await;
    ok(
        app,
        claude,
        "/mcp/context/memory/push",
        json!({"kind": "file", "value": "/src/pay.rs"}),
    )
    .await;
    let big: String = (0..12_000).map(|i| format!("line{i} ")).collect();
    assert!(big.len() > 64 * 1024);
    ok(
        app,
        claude,
        "/mcp/context/set",
        json!({"path": "docs.spec", "value": big}),
    )
    .await;
    for i in 0..105 {
        ok(
            app,
            gemini,
            "/mcp/context/set",
            json!({"path": "counter.n", "value": i}),
        )
        .await;
    }
    ok(
        app,
        cursor,
        "/mcp/context/notes/cursor",
        json!({"observations": ["pay.rs is hot"]}),
    )
    .await;

    // Messages: directed with an acknowledgement, a broadcast, a reply; read and acked.
    let asked = ok(app, claude, "/mcp/messages/send", json!({"to": "gemini", "body": "review pay.rs", "requiresAck": true, "priority": "important"})).await;
    ok(
        app,
        claude,
        "/mcp/messages/send",
        json!({"body": "standup in 5"}),
    )
    .await;
    ok(
        app,
        gemini,
        "/mcp/messages/send",
        json!({"to": "claude", "body": "on it", "replyTo": asked["id"]}),
    )
    .await;
    let (s, _) = app.get_as(gemini, "/mcp/messages").await;
    assert_eq!(s, StatusCode::OK);
    ok(
        app,
        gemini,
        "/mcp/messages/ack",
        json!({"ids": [asked["id"]]}),
    )
    .await;

    // Tasks, locks (one held, one queued behind it), changes, suggestions, a checkpoint.
    let made = ok(app, claude, "/mcp/collaborate/task", json!({"description": "Refactor payments", "assignedTo": "claude",
        "subtasks": ["Split module", "Add tests"], "estimatedDuration": "30m", "metadata": {"priority": "high"}})).await;
    let sub = made["tasks"][1]["id"].clone();
    ok(
        app,
        claude,
        "/mcp/collaborate/task/update",
        json!({"taskId": sub, "status": "in_progress"}),
    )
    .await;
    ok(
        app,
        claude,
        "/mcp/collaborate/lock",
        json!({"resource": "/src/pay.rs", "duration": 3600}),
    )
    .await;
    let queued = ok(
        app,
        gemini,
        "/mcp/collaborate/lock",
        json!({"resource": "/src/pay.rs", "wait": true, "duration": 600}),
    )
    .await;
    assert_eq!(queued["state"], "waiting", "{queued}");
    ok(app, claude, "/mcp/collaborate/change", json!({"filePath": "/src/pay.rs",
        "diff": "--- a\n+++ b\n@@ -10,2 +10,3 @@\n a\n-b\n+c\n+d\n", "symbols": ["Pay.run"], "reason": "split"})).await;
    let first = ok(
        app,
        gemini,
        "/mcp/collaborate/suggestion",
        json!({"filePath": "/src/pay.rs", "diff": "@@ -1 +1 @@\n-x\n+y\n", "reason": "naming"}),
    )
    .await;
    ok(
        app,
        cursor,
        "/mcp/collaborate/suggestion",
        json!({"filePath": "/src/api.rs", "before": "a\n", "after": "b\n"}),
    )
    .await;
    ok(
        app,
        claude,
        "/mcp/collaborate/suggestion/resolve",
        json!({"id": first["id"], "accept": true, "note": "good"}),
    )
    .await;
    ok(
        app,
        cursor,
        "/mcp/collaborate/checkpoint",
        json!({"task": "reading", "estimatedDuration": "1h", "interruptible": false}),
    )
    .await;

    // A whole-session snapshot (session_snapshots).
    ok(
        app,
        gemini,
        "/mcp/session/save",
        json!({"sessionId": team.id}),
    )
    .await;
    team
}

/// Removes what differs between two answers by nature (when they were generated).
fn timeless(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("generatedAt");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// Every view of `team`'s session, in one fixed order (reading messages marks them read, so
/// both hubs must be asked the same things in the same order).
async fn views(app: &TestApp, team: &Team) -> Vec<(String, Value)> {
    let id = &team.id;
    let claude = team.token("claude");
    let mut out = Vec::new();
    for path in [
        format!("/mcp/session/{id}"),
        format!("/mcp/context/get?sessionId={id}"),
        format!("/mcp/context/get/docs.spec?sessionId={id}"),
        format!("/mcp/context/get/plan.step?sessionId={id}"),
        format!("/mcp/context/diff/claude/0?sessionId={id}"),
        format!("/mcp/context/memory/recent?sessionId={id}"),
        format!("/mcp/context/notes/cursor?sessionId={id}"),
        format!("/mcp/collaborate/tasks?sessionId={id}"),
        format!("/mcp/collaborate/changes?sessionId={id}&file=/src/pay.rs&withDiff=true"),
        format!("/mcp/collaborate/changes?sessionId={id}"),
        format!("/mcp/collaborate/locks?sessionId={id}"),
        format!("/mcp/collaborate/suggestions?sessionId={id}&all=true"),
    ] {
        let (status, body) = app.get_as(claude, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        out.push((path, body));
    }
    for (who, token) in &team.tokens {
        let (status, body) = app.get_as(token, "/mcp/messages?limit=100").await;
        assert_eq!(status, StatusCode::OK, "{who}: {body}");
        out.push((format!("messages of {who}"), body));
    }
    // The session export (its JSON form), which reads every table of the session.
    let (status, body) = app
        .post_as(claude, "/mcp/session/export", &json!({"format": "json"}))
        .await;
    assert_eq!(status, StatusCode::OK, "export: {body}");
    out.push(("export".into(), timeless(body)));
    out
}

async fn assert_same_views(before: &TestApp, after: &TestApp, team: &Team) {
    let (a, b) = (views(before, team).await, views(after, team).await);
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert_eq!(x, y, "{name} differs after the restore");
    }
    let session = &a[0].1;
    assert!(session["lastEventId"].as_i64().unwrap() > 100, "{session}");
    assert_eq!(
        session["participants"].as_array().unwrap().len(),
        4,
        "{session}"
    );
}

#[actix_web::test]
async fn sqlite_to_postgres_keeps_every_view() {
    let Some(target) = TestDb::fresh(Backend::Postgres) else {
        return;
    };
    let source = TestDb::fresh(Backend::Sqlite).unwrap();
    let scratch = Scratch::new();
    let file = scratch.file("hub.backup");
    let app = start_on(source, settings()).await;
    let team = busy_session(&app, "payments").await;
    let source = app.stop().await;

    let line = succeeded(&backup(&source.url, &file, &[]).await);
    assert!(
        line.starts_with("backed up 1 session (")
            && line.ends_with(&format!("to {}", file.display())),
        "{line}"
    );
    let line = succeeded(&restore(&target.url, &file, false).await);
    assert!(line.starts_with("restored 1 session ("), "{line}");
    // Every row of every table arrived.
    let rows = counts(&source.url);
    assert_eq!(rows, counts(&target.url));
    for table in [
        "context_snapshots",
        "session_snapshots",
        "message_receipts",
        "locks",
        "suggestions",
        "code_changes",
        "tasks",
    ] {
        assert!(rows[table] > 0, "the session has {table}: {rows:?}");
    }
    // Compressed payloads and snapshots travelled (as base64 of the stored bytes).
    let (header, body) = unpack(&file);
    assert_eq!(header["format"], "collab-hub-backup");
    assert_eq!(
        (header["version"].as_u64(), header["source"].as_str()),
        (Some(1), Some("sqlite"))
    );
    assert!(
        body.contains("\"payload\":\"zstd:"),
        "a compressed event payload"
    );
    assert!(
        body.contains("\"encoding\":\"zstd\",\"context\":\""),
        "a compressed context snapshot"
    );

    let before = start_on(source, settings()).await;
    let after = start_on(target, settings()).await;
    assert_same_views(&before, &after, &team).await;
    // The restored hub works on: tokens, versions and the lock queue carry on.
    let next = ok(
        &after,
        team.token("gemini"),
        "/mcp/context/set",
        json!({"path": "plan.step", "value": 3}),
    )
    .await;
    assert!(next["version"].as_i64().unwrap() > 100, "{next}");
    before.stop().await;
    after.stop().await;
}

#[actix_web::test]
async fn postgres_to_sqlite_moves_one_chosen_session() {
    let Some(source) = TestDb::fresh(Backend::Postgres) else {
        return;
    };
    let target = TestDb::fresh(Backend::Sqlite).unwrap();
    let scratch = Scratch::new();
    let file = scratch.file("one.backup");
    let app = start_on(source, settings()).await;
    let team = busy_session(&app, "moved").await;
    let (other, _, _) = app.create_pair("stays").await;
    let source = app.stop().await;

    let line = succeeded(&backup(&source.url, &file, &[&team.id]).await);
    assert!(line.starts_with("backed up 1 session ("), "{line}");
    let err = refused(&backup(&source.url, &scratch.file("x"), &["no-such-session"]).await);
    assert!(err.contains("no session no-such-session"), "{err}");
    assert!(!scratch.file("x").exists());
    succeeded(&restore(&target.url, &file, false).await);

    let before = start_on(source, settings()).await;
    let after = start_on(target, settings()).await;
    assert_same_views(&before, &after, &team).await;
    let (status, _) = after.get(&format!("/mcp/session/{other}")).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "only the chosen session moved"
    );
    let (_, list) = after.get("/mcp/session/list").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1, "{list}");
    before.stop().await;
    after.stop().await;
}

/// Splits a backup into its header and decompressed body.
fn unpack(file: &Path) -> (Value, String) {
    let bytes = std::fs::read(file).unwrap();
    let at = bytes.iter().position(|b| *b == b'\n').unwrap();
    let header = serde_json::from_slice(&bytes[..at]).unwrap();
    let body = zstd::stream::decode_all(&bytes[at + 1..]).unwrap();
    (header, String::from_utf8(body).unwrap())
}

/// Writes a backup with a consistent digest and size (a well-formed file whose content is bad).
fn pack(file: &Path, mut header: Value, body: &str) {
    let z = zstd::stream::encode_all(body.as_bytes(), 3).unwrap();
    let digest: String = Sha256::digest(&z)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    header["sha256"] = digest.into();
    header["bodyBytes"] = z.len().into();
    let mut out = serde_json::to_vec(&header).unwrap();
    out.push(b'\n');
    out.extend(z);
    std::fs::write(file, out).unwrap();
}

async fn damaged_backups_are_refused_and_change_nothing(backend: Backend) {
    let Some(target) = TestDb::fresh(backend) else {
        return;
    };
    let scratch = Scratch::new();
    let good = scratch.file("good.backup");
    // The backup: a session with a change (code_changes comes late in the file).
    let source = spawn_app(Backend::Sqlite).await.unwrap();
    let team = busy_session(&source, "to restore").await;
    let source_db = source.stop().await;
    succeeded(&backup(&source_db.url, &good, &[]).await);
    // The target holds a session of its own.
    let app = start_on(target, settings()).await;
    let (kept, _, _) = app.create_pair("already here").await;
    let target = app.stop().await;
    let before = counts(&target.url);

    let bytes = std::fs::read(&good).unwrap();
    let header_len = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    let (header, body) = unpack(&good);
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let mut flipped = bytes.clone();
    let middle = header_len + (bytes.len() - header_len) / 2;
    for b in &mut flipped[middle..middle + 8] {
        *b ^= 0x5a;
    }
    cases.push(("flipped", flipped, "is damaged"));
    cases.push((
        "truncated",
        bytes[..bytes.len() - 100].to_vec(),
        "is truncated",
    ));
    cases.push(("header only", bytes[..header_len].to_vec(), "is truncated"));
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"junk");
    cases.push(("trailing", longer, "is damaged"));
    let mut v2 = header.clone();
    v2["version"] = 2.into();
    let mut future = serde_json::to_vec(&v2).unwrap();
    future.extend_from_slice(&bytes[header_len - 1..]);
    cases.push(("version 2", future, "version 2 is not supported"));
    cases.push((
        "not a backup",
        b"hello\nworld\n".to_vec(),
        "is not a collab-hub backup",
    ));
    cases.push(("empty", Vec::new(), "is not a collab-hub backup"));
    for (name, content, expected) in cases {
        let file = scratch.file(name);
        std::fs::write(&file, content).unwrap();
        let err = refused(&restore(&target.url, &file, false).await);
        assert!(err.contains(expected), "{name}: {err}");
        assert_eq!(counts(&target.url), before, "{name} changed the database");
    }

    // Well-formed files whose rows do not fit: one is caught while reading, one (a CHECK
    // constraint) only by the database, after every earlier table was inserted.
    let missing_column = body.replacen("\"trigger\":", "\"trigger_\":", 1);
    let bad_operation = body.replace("\"operation\":\"edit\"", "\"operation\":\"explode\"");
    assert_ne!(bad_operation, body);
    let foreign = body.replacen(
        &format!("{{\"session_id\":\"{}\"", team.id),
        "{\"session_id\":\"elsewhere\"",
        1,
    );
    for (name, content, expected) in [
        ("missing column", missing_column, "does not fit the schema"),
        ("bad operation", bad_operation, "does not fit"),
        ("foreign row", foreign, "which the file does not hold"),
    ] {
        let file = scratch.file(name);
        pack(&file, header.clone(), &content);
        let err = refused(&restore(&target.url, &file, false).await);
        assert!(err.contains(expected), "{name}: {err}");
        assert_eq!(counts(&target.url), before, "{name} changed the database");
    }
    // A file from a newer schema waits for a newer collab-hub.
    let newer = scratch.file("newer");
    let mut future = header.clone();
    future["schema"] = "99991231000001".into();
    pack(&newer, future, &body);
    let err = refused(&restore(&target.url, &newer, false).await);
    assert!(err.contains("newer collab-hub"), "{err}");
    assert_eq!(counts(&target.url), before);
    // A failed restore into a new SQLite file leaves no database behind.
    if backend == Backend::Sqlite {
        let file = scratch.file("bad operation");
        let fresh = scratch.file("fresh.db");
        let url = format!("sqlite://{}", fresh.display());
        refused(&restore(&url, &file, false).await);
        assert!(!fresh.exists(), "an empty database was left behind");
    }
    // The good file still restores, beside the session that was there.
    succeeded(&restore(&target.url, &good, false).await);
    let app = start_on(target, settings()).await;
    let (status, _) = app.get(&format!("/mcp/session/{kept}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get(&format!("/mcp/session/{}", team.id)).await;
    assert_eq!(status, StatusCode::OK);
    app.stop().await;
}

async fn existing_sessions_are_replaced_only_with_replace(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let scratch = Scratch::new();
    let file = scratch.file("s.backup");
    let (id, claude, _) = app.create_pair("replace me").await;
    ok(
        &app,
        &claude,
        "/mcp/context/set",
        json!({"sessionId": id, "path": "a", "value": 1}),
    )
    .await;
    let (_, then) = app.get_as(&claude, &format!("/mcp/session/{id}")).await;
    let db = app.stop().await;
    succeeded(&backup(&db.url, &file, &[&id]).await);

    // The session moves on after the backup; another one appears.
    let app = start_on(db, settings()).await;
    ok(
        &app,
        &claude,
        "/mcp/context/set",
        json!({"sessionId": id, "path": "a", "value": 2}),
    )
    .await;
    ok(
        &app,
        &claude,
        "/mcp/context/set",
        json!({"sessionId": id, "path": "b", "value": 3}),
    )
    .await;
    ok(
        &app,
        &claude,
        "/mcp/messages/send",
        json!({"sessionId": id, "body": "after the backup"}),
    )
    .await;
    let (other, _, _) = app.create_pair("other").await;
    let db = app.stop().await;
    let before = counts(&db.url);

    let err = refused(&restore(&db.url, &file, false).await);
    assert!(err.contains(&id) && err.contains("--replace"), "{err}");
    assert_eq!(counts(&db.url), before, "nothing written");

    let line = succeeded(&restore(&db.url, &file, true).await);
    assert!(line.contains("replacing 1"), "{line}");
    let after = counts(&db.url);
    assert_eq!(after["sessions"], 2);
    assert!(after["events"] < before["events"], "{before:?} {after:?}");
    assert_eq!(
        after["messages"], 0,
        "the message sent after the backup is gone"
    );

    let app = start_on(db, settings()).await;
    let (_, now) = app.get_as(&claude, &format!("/mcp/session/{id}")).await;
    assert_eq!(now, then, "the session is as it was backed up");
    let (_, a) = app
        .get_as(&claude, &format!("/mcp/context/get/a?sessionId={id}"))
        .await;
    assert_eq!(a["value"], 1, "{a}");
    let (_, b) = app
        .get_as(&claude, &format!("/mcp/context/get/b?sessionId={id}"))
        .await;
    assert_eq!(b["exists"], false, "{b}");
    let (status, _) = app.get(&format!("/mcp/session/{other}")).await;
    assert_eq!(status, StatusCode::OK, "other sessions are left alone");
    app.stop().await;
}

async fn restore_is_refused_while_a_hub_runs(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let scratch = Scratch::new();
    let file = scratch.file("live.backup");
    let (id, claude, _) = app.create_pair("live").await;
    ok(
        &app,
        &claude,
        "/mcp/context/set",
        json!({"sessionId": id, "path": "a", "value": 1}),
    )
    .await;
    // A backup needs no pause: it reads beside the running hub.
    let line = succeeded(&backup(&app.db.url, &file, &[]).await);
    assert!(line.starts_with("backed up 1 session ("), "{line}");
    let before = counts(&app.db.url);
    for replace in [false, true] {
        let err = refused(&restore(&app.db.url, &file, replace).await);
        assert!(err.contains("in use by another hub"), "{err}");
    }
    // The hub goes on, and nothing changed underneath it.
    ok(
        &app,
        &claude,
        "/mcp/context/set",
        json!({"sessionId": id, "path": "a", "value": 2}),
    )
    .await;
    let db = app.stop().await;
    let mut expected = before;
    *expected.get_mut("events").unwrap() += 1;
    assert_eq!(counts(&db.url), expected);
    // The live backup restores elsewhere.
    let Some(elsewhere) = TestDb::fresh(backend) else {
        return;
    };
    succeeded(&restore(&elsewhere.url, &file, false).await);
    let app = start_on(elsewhere, settings()).await;
    let (_, a) = app
        .get_as(&claude, &format!("/mcp/context/get/a?sessionId={id}"))
        .await;
    assert_eq!(a["value"], 1, "{a}");
    app.stop().await;
}

#[derive(diesel::QueryableByName, Debug)]
struct Tally {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    last: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    events: i64,
}

/// Each session's `last_event_id` and the number of its events.
fn tallies(url: &str) -> Vec<Tally> {
    use diesel::RunQueryDsl;
    let mut conn = DbTarget::parse(url)
        .unwrap()
        .connect(collab_hub::store::ConnRole::Reader)
        .unwrap();
    diesel::sql_query(
        "SELECT s.id AS id, s.last_event_id AS last,
                (SELECT COUNT(*) FROM events e WHERE e.session_id = s.id) AS events
           FROM sessions s",
    )
    .load(&mut conn)
    .unwrap()
}

async fn a_backup_under_load_is_one_consistent_snapshot(backend: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let scratch = Scratch::new();
    let mut sessions = Vec::new();
    for i in 0..3 {
        let (id, claude, _) = app.create_pair(&format!("busy {i}")).await;
        sessions.push((id, claude));
    }
    // Writers append to every session while backups are taken: sessions are read before
    // events, so a backup that is not one snapshot would find more events than a session
    // says it has.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = sessions
        .iter()
        .map(|(id, token)| {
            let (url, id, token) = (app.address.clone(), id.clone(), token.clone());
            let (stop, written) = (stop.clone(), written.clone());
            actix_web::rt::spawn(async move {
                let http = crate::helpers::client();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let res = http
                        .post(format!("{url}/mcp/context/set"))
                        .bearer_auth(&token)
                        .send_json(&json!({"sessionId": id, "path": "n", "value": i}))
                        .await
                        .expect("hub answers");
                    assert!(res.status().is_success());
                    written.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut files = Vec::new();
    for n in 0..2 {
        let file = scratch.file(&format!("load-{n}.backup"));
        let at_start = written.load(Ordering::Relaxed);
        succeeded(&backup(&app.db.url, &file, &[]).await);
        assert!(
            written.load(Ordering::Relaxed) > at_start,
            "writes went on during the backup"
        );
        files.push(file);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    app.stop().await;
    for file in files {
        let Some(target) = TestDb::fresh(backend) else {
            return;
        };
        succeeded(&restore(&target.url, &file, false).await);
        let tallies = tallies(&target.url);
        assert_eq!(tallies.len(), 3);
        for t in tallies {
            assert_eq!(
                t.last, t.events,
                "session {} is not one snapshot: {t:?}",
                t.id
            );
            assert!(t.events > 1, "{t:?}");
        }
    }
}

async fn a_restored_lock_may_not_collide_with_one_held_in_its_project(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let scratch = Scratch::new();
    let file = scratch.file("locks.backup");
    let shop =
        |name: &str| json!({"name": name, "participants": ["claude", "gemini"], "project": "shop"});
    let (_, created) = app.post("/mcp/session/create", &shop("feature")).await;
    let claude = created["tokens"]["claude"].as_str().unwrap().to_owned();
    ok(
        &app,
        &claude,
        "/mcp/collaborate/lock",
        json!({"resource": "/src/cart.rs", "duration": 3600}),
    )
    .await;
    let source = app.stop().await;
    succeeded(&backup(&source.url, &file, &[]).await);

    // Elsewhere, another session of the same project holds the same file.
    let Some(target) = TestDb::fresh(backend) else {
        return;
    };
    let app = start_on(target, settings()).await;
    let (_, created) = app.post("/mcp/session/create", &shop("bugfix")).await;
    let gemini = created["tokens"]["gemini"].as_str().unwrap().to_owned();
    ok(
        &app,
        &gemini,
        "/mcp/collaborate/lock",
        json!({"resource": "/src/*", "duration": 3600}),
    )
    .await;
    let target = app.stop().await;
    let before = counts(&target.url);
    let err = refused(&restore(&target.url, &file, false).await);
    assert!(
        err.contains("/src/cart.rs") && err.contains("conflicts with"),
        "{err}"
    );
    assert_eq!(counts(&target.url), before, "nothing written");
}

/// The presence last announced of each participant (`store::presence`) travels with its
/// session: a restored session loaded for the first time does not announce its gone
/// participants gone again. (A compacted session's `presence_changed` events are gone, so it
/// could not be read back from the log.)
async fn a_backup_carries_the_presence_last_announced(backend: Backend) {
    let (Some(source), Some(target)) = (TestDb::fresh(backend), TestDb::fresh(backend)) else {
        return;
    };
    let scratch = Scratch::new();
    let file = scratch.file("presence.backup");
    let mut s = settings();
    s.disconnect_grace_secs = 1;
    let app = start_on(source, s).await;
    let (id, claude, _) = crate::project_serving::session_in(&app, "alpha").await;
    let (status, body) = crate::project_serving::send(&app, &claude, "hello").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let last = |url: &str| {
        let mut conn = DbTarget::parse(url)
            .unwrap()
            .connect(ConnRole::Reader)
            .unwrap();
        collab_hub::store::presence::last_announced(&mut conn, id.parse().unwrap()).unwrap()
    };
    let start = std::time::Instant::now();
    while last(&app.db.url).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nobody announced gone"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let source = app.stop().await;
    let announced = last(&source.url);
    assert!(
        announced
            .values()
            .all(|a| a.state == collab_hub::domain::presence::Presence::Disconnected),
        "{announced:?}"
    );
    assert!(announced["claude"].last_seen.is_some(), "{announced:?}");
    // As compaction would: the log no longer says it.
    {
        use collab_hub::store::schema::events;
        use diesel::prelude::*;
        let mut conn = DbTarget::parse(&source.url)
            .unwrap()
            .connect(ConnRole::Writer)
            .unwrap();
        let gone = diesel::delete(events::table.filter(events::kind.eq("presence_changed")))
            .execute(&mut conn)
            .unwrap();
        assert!(gone >= 2, "{gone}");
    }
    succeeded(&backup(&source.url, &file, &[]).await);
    succeeded(&restore(&target.url, &file, false).await);
    assert_eq!(last(&target.url), announced);
}
