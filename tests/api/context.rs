//! The shared context through the MCP tools: versioned writes, compare-and-set races, merge,
//! append, delete, diff, roles, and survival across a restart.

use collab_hub::Settings;
use serde_json::json;

use crate::helpers::{Backend, both_backends, spawn_app, start_on};
use crate::mcp_protocol::Mcp;

both_backends!(context_is_versioned_shared_and_durable);

async fn context_is_versioned_shared_and_durable(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = app.create_pair("context").await;
    let mut a = Mcp::new(&app);
    a.token = Some(claude.clone());
    a.initialize("2025-11-25").await;
    let mut b = Mcp::new(&app);
    b.token = Some(gemini.clone());
    b.initialize("2025-11-25").await;

    let (err, w) = a
        .tool(
            "context_set",
            json!({"path": "activeWork.currentRefactoring.status", "value": "in_progress"}),
        )
        .await;
    assert!(!err, "{w}");
    let v1 = w["eventId"].as_i64().unwrap();
    let (_, got) = b
        .tool(
            "context_get",
            json!({"path": "activeWork.currentRefactoring"}),
        )
        .await;
    assert_eq!(got["value"], json!({"status": "in_progress"}));
    assert_eq!(got["version"], v1);

    // Two AIs race with the same expected version: exactly one wins.
    let args = |value: &str| json!({"path": "activeWork.currentRefactoring.status", "value": value, "expectedVersion": v1});
    let ((ea, ra), (eb, rb)) = futures::join!(
        a.tool("context_set", args("done")),
        b.tool("context_set", args("blocked"))
    );
    assert!(ea ^ eb, "exactly one conflict: {ra} / {rb}");
    let loser = if ea { &ra } else { &rb };
    assert!(
        loser.as_str().unwrap().contains("version_conflict"),
        "{loser}"
    );

    // Merge, append, delete, and refusals that change nothing.
    let (err, _) = b
        .tool("context_sync", json!({"updates": {"projectUnderstanding": {"conventions": {"testing": "Jest with RTL"}}}}))
        .await;
    assert!(!err);
    for finding in ["memory leak in ws handler", "N+1 in user loader"] {
        let (err, _) = a
            .tool(
                "context_append",
                json!({"path": "activeWork.recentDiscoveries", "value": {"finding": finding}}),
            )
            .await;
        assert!(!err);
    }
    let (_, got) = a
        .tool(
            "context_get",
            json!({"path": "activeWork.recentDiscoveries[1].finding"}),
        )
        .await;
    assert_eq!(got["value"], "N+1 in user loader");
    let (err, msg) = a
        .tool(
            "context_append",
            json!({"path": "projectUnderstanding.conventions.testing", "value": 1}),
        )
        .await;
    assert!(
        err && msg.as_str().unwrap().contains("not an array"),
        "{msg}"
    );
    let (err, msg) = a
        .tool("context_set", json!({"path": "a..b", "value": 1}))
        .await;
    assert!(err && msg.as_str().unwrap().contains("path"), "{msg}");
    let (err, _) = a
        .tool("context_delete", json!({"path": "nothing.here"}))
        .await;
    assert!(err);
    let (err, _) = a
        .tool(
            "context_delete",
            json!({"path": "projectUnderstanding.conventions"}),
        )
        .await;
    assert!(!err);

    // Diff since the first write: who changed what.
    let (_, diff) = b.tool("context_diff", json!({"since": v1})).await;
    assert!(
        diff["added"]["activeWork.recentDiscoveries"].is_object(),
        "{diff}"
    );
    assert!(
        diff["modified"]["activeWork.currentRefactoring.status"]["by"].is_string(),
        "{diff}"
    );
    // The conventions came with the sync and went with the delete, both after v1: only the
    // (now empty) projectUnderstanding object is new, and nothing was removed.
    assert_eq!(
        diff["added"]["projectUnderstanding"]["new"],
        json!({}),
        "{diff}"
    );
    assert_eq!(diff["removed"], json!({}), "{diff}");

    // Observers read but do not write.
    let (_, joined) = app
        .post(
            "/mcp/session/join",
            &json!({"sessionId": id, "participant": "cursor", "role": "observer"}),
        )
        .await;
    let mut o = Mcp::new(&app);
    o.token = Some(joined["token"].as_str().unwrap().to_owned());
    o.initialize("2025-11-25").await;
    let (err, msg) = o
        .tool("context_set", json!({"path": "x", "value": 1}))
        .await;
    assert!(err && msg.as_str().unwrap().contains("observer"), "{msg}");
    let (_, before) = o.tool("context_get", json!({})).await;

    // Everything acknowledged survives a restart, versions included.
    let db = app.stop().await;
    let app = start_on(db, Settings::for_database("unused")).await;
    let mut again = Mcp::new(&app);
    again.token = Some(claude);
    again.initialize("2025-11-25").await;
    let (_, after) = again.tool("context_get", json!({})).await;
    assert_eq!(after, before);
    assert!(
        after["value"]["activeWork"]["recentDiscoveries"]
            .as_array()
            .unwrap()
            .len()
            == 2
    );
}

both_backends!(rest_context_endpoints_follow_the_concept);

async fn rest_context_endpoints_follow_the_concept(backend: Backend) {
    use actix_web::http::StatusCode;

    use crate::helpers::assert_error;

    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = app.create_pair("rest context").await;
    let start = chrono::Utc::now() - chrono::Duration::seconds(5);
    let (s, b) = app
        .post("/mcp/context/set", &json!({"sessionId": id, "path": "projectUnderstanding.architecture", "value": "Microservices"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["eventId"].as_i64().unwrap() > 1);
    // The concept's sync: the bearer token names the session, aiId the author.
    let (s, b) = app
        .post_as(&claude, "/mcp/context/sync", &json!({"aiId": "claude", "updates": {"projectUnderstanding": {"newPattern": "Repository pattern"}}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["changed"], json!(["projectUnderstanding.newPattern"]));
    let (s, b) = app
        .post_as(
            &gemini,
            "/mcp/context/sync",
            &json!({"aiId": "claude", "updates": {"x": 1}}),
        )
        .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, b) = app
        .post_as(
            &gemini,
            "/mcp/context/append/activeWork.recentDiscoveries",
            &json!({"value": {"finding": "leak", "severity": "high"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, got) = app
        .get_as(
            &gemini,
            "/mcp/context/get/projectUnderstanding.architecture",
        )
        .await;
    assert_eq!(
        (s, &got["value"]),
        (StatusCode::OK, &json!("Microservices"))
    );
    let (_, all) = app.get(&format!("/mcp/context/get?sessionId={id}")).await;
    assert_eq!(
        all["value"]["activeWork"]["recentDiscoveries"][0]["finding"],
        "leak"
    );

    let (s, diff) = app
        .get(&format!("/mcp/context/diff/claude/0?sessionId={id}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{diff}");
    // Both branches were new since event 0: each is one added entry at its top.
    assert_eq!(
        diff["added"]["projectUnderstanding"]["new"]["newPattern"], "Repository pattern",
        "{diff}"
    );
    assert_eq!(
        diff["added"]["projectUnderstanding"]["by"], "claude",
        "{diff}"
    );
    assert_eq!(diff["added"]["activeWork"]["by"], "gemini", "{diff}");
    let since = start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (s, by_time) = app
        .get(&format!("/mcp/context/diff/claude/{since}?sessionId={id}"))
        .await;
    assert_eq!((s, &by_time), (StatusCode::OK, &diff));

    let (s, b) = app
        .get(&format!(
            "/mcp/context/diff/claude/yesterday?sessionId={id}"
        ))
        .await;
    assert_eq!(
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field")["field"],
        "since"
    );
    let (s, b) = app
        .post(
            "/mcp/context/set",
            &json!({"sessionId": id, "path": "a..b", "value": 1}),
        )
        .await;
    assert_eq!(
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field")["field"],
        "path"
    );
    let (s, b) = app
        .post("/mcp/context/set", &json!({"path": "a", "value": 1}))
        .await;
    assert_eq!(
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field")["field"],
        "sessionId"
    );
    let (s, b) = app
        .post("/mcp/context/set", &json!({"sessionId": id, "path": "projectUnderstanding.architecture", "value": "Monolith", "expectedVersion": 1}))
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "version_conflict");

    let (s, _) = app
        .post_as(
            &claude,
            "/mcp/context/delete/projectUnderstanding",
            &json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, gone) = app
        .get_as(&claude, "/mcp/context/get/projectUnderstanding")
        .await;
    assert_eq!(gone["exists"], false);
}

both_backends!(snapshots_bound_the_replay_and_lose_nothing);

/// Past SNAPSHOT_EVERY changes the context is snapshotted with the change (zstd-compressed
/// when large); a restart loads the snapshot plus the changes after it and ends up exactly
/// where it was, versions included.
async fn snapshots_bound_the_replay_and_lose_nothing(backend: Backend) {
    use collab_hub::domain::context::SNAPSHOT_EVERY;
    use collab_hub::store::{
        ConnRole, DbTarget,
        schema::{context_snapshots, events},
    };
    use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl, TextExpressionMethods};

    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let total = SNAPSHOT_EVERY as i64 + 7;
    // One session with small values (plain JSON snapshot), one with ~1 KiB values (compressed).
    let mut sessions = Vec::new();
    for (name, pad) in [("small", 0), ("large", 1000)] {
        let (id, claude, _) = app.create_pair(name).await;
        for i in 0..total {
            let value = format!("{i}{}", "x".repeat(pad));
            let body =
                json!({"sessionId": id, "path": format!("items.k{}", i % 90), "value": value});
            let (s, b) = app.post("/mcp/context/set", &body).await;
            assert_eq!(s.as_u16(), 200, "{b}");
        }
        if pad > 0 {
            // A value above the compression threshold: its change event is stored compressed.
            let body = json!({"sessionId": id, "path": "big.blob", "value": "abc ".repeat(30_000)});
            let (s, b) = app.post("/mcp/context/set", &body).await;
            assert_eq!(s.as_u16(), 200, "{b}");
        }
        let (_, before) = app.get(&format!("/mcp/context/get?sessionId={id}")).await;
        let (_, k3) = app
            .get(&format!("/mcp/context/get/items.k3?sessionId={id}"))
            .await;
        sessions.push((id, claude, before, k3));
    }
    let db = app.stop().await;

    let mut conn = DbTarget::parse(&db.url)
        .unwrap()
        .connect(ConnRole::Reader)
        .unwrap();
    for ((id, ..), expected) in sessions.iter().zip(["json", "zstd"]) {
        let encodings: Vec<String> = context_snapshots::table
            .filter(context_snapshots::session_id.eq(id))
            .select(context_snapshots::encoding)
            .load(&mut conn)
            .unwrap();
        assert_eq!(encodings, [expected], "one snapshot after {total} changes");
        let compressed: i64 = events::table
            .filter(events::session_id.eq(id))
            .filter(events::payload.like("zstd:%"))
            .count()
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(
            compressed,
            i64::from(expected == "zstd"),
            "large change events are compressed"
        );
    }
    drop(conn);

    let app = start_on(db, Settings::for_database("unused")).await;
    for (_, claude, before, k3) in &sessions {
        let (_, after) = app.get_as(claude, "/mcp/context/get").await;
        // (Compared without printing: the large document runs to ~100 KB.)
        assert!(&after == before, "context differs after the restart");
        let (_, k3_after) = app.get_as(claude, "/mcp/context/get/items.k3").await;
        assert_eq!(k3_after["version"], k3["version"]);
    }
}

both_backends!(a_large_context_is_not_stored_every_hundred_small_writes);

/// A snapshot copies, serializes and compresses the whole context while the session waits: a
/// large one is stored once the changes logged since the last weigh half of it, not every 100
/// small writes (`Session::snapshot_due_after`). A 200 KB value, then 350 small writes: one
/// snapshot (at the 100th write, which the value's own weight makes due), where every 100
/// writes would make three; and the restart, which now replays 250 changes, loses nothing.
async fn a_large_context_is_not_stored_every_hundred_small_writes(backend: Backend) {
    use collab_hub::store::{ConnRole, DbTarget, schema::context_snapshots};
    use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};

    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, _) = app.create_pair("large").await;
    let big = json!({"sessionId": id, "path": "big", "value": "x".repeat(200_000)});
    let (s, b) = app.post("/mcp/context/set", &big).await;
    assert_eq!(s.as_u16(), 200, "{b}");
    for i in 0..350 {
        let body = json!({"sessionId": id, "path": format!("small.k{}", i % 20), "value": i});
        let (s, b) = app.post("/mcp/context/set", &body).await;
        assert_eq!(s.as_u16(), 200, "{b}");
    }
    let (_, before) = app.get_as(&claude, "/mcp/context/get").await;
    let (_, k7) = app.get_as(&claude, "/mcp/context/get/small.k7").await;
    let db = app.stop().await;
    let mut conn = DbTarget::parse(&db.url)
        .unwrap()
        .connect(ConnRole::Reader)
        .unwrap();
    let stored: i64 = context_snapshots::table
        .filter(context_snapshots::session_id.eq(&id))
        .count()
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(
        stored, 1,
        "snapshots after a 200 KB value and 350 small writes"
    );
    drop(conn);
    let app = start_on(db, Settings::for_database("unused")).await;
    let (_, after) = app.get_as(&claude, "/mcp/context/get").await;
    assert!(after == before, "context differs after the restart");
    let (_, k7_after) = app.get_as(&claude, "/mcp/context/get/small.k7").await;
    assert_eq!(k7_after, k7);
    app.stop().await;
}

both_backends!(memory_notes_and_discoveries);

async fn memory_notes_and_discoveries(backend: Backend) {
    use actix_web::http::StatusCode;

    use crate::helpers::assert_error;

    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = app.create_pair("memory").await;
    let (_, joined) = app
        .post(
            "/mcp/session/join",
            &json!({"sessionId": id, "participant": "cursor", "role": "observer"}),
        )
        .await;
    let cursor = joined["token"].as_str().unwrap().to_owned();
    let mut a = Mcp::new(&app);
    a.token = Some(claude);
    a.initialize("2025-11-25").await;
    let mut b = Mcp::new(&app);
    b.token = Some(gemini.clone());
    b.initialize("2025-11-25").await;
    let mut o = Mcp::new(&app);
    o.token = Some(cursor);
    o.initialize("2025-11-25").await;

    // Working memory is bounded: the newest entries stay.
    for i in 0..55 {
        let (err, w) = a
            .tool(
                "memory",
                json!({"action": "push", "kind": "symbol", "value": format!("Sym{i}")}),
            )
            .await;
        assert!(!err, "{w}");
    }
    let (err, _) = a
        .tool("memory", json!({"action": "push", "kind": "breakpoint", "value": {"file": "/src/api/users.ts", "line": 45}}))
        .await;
    assert!(!err);
    let (_, recent) = b
        .tool("memory", json!({"action": "recent", "limit": 3}))
        .await;
    assert_eq!(
        recent["recentSymbols"],
        json!(["Sym52", "Sym53", "Sym54"]),
        "{recent}"
    );
    assert_eq!(recent["breakpoints"][0]["line"], 45);
    let (_, all) = a
        .tool(
            "context_get",
            json!({"path": "workingMemory.recentSymbols"}),
        )
        .await;
    assert_eq!(all["value"].as_array().unwrap().len(), 50);
    assert_eq!(all["value"][0], "Sym5");
    let (err, msg) = a
        .tool("memory", json!({"action": "push", "kind": "symbol"}))
        .await;
    assert!(err && msg.as_str().unwrap().contains("value"), "{msg}");
    let (err, _) = a
        .tool("memory", json!({"action": "clear", "kind": "symbol"}))
        .await;
    assert!(!err);
    let (_, recent) = a.tool("memory", json!({"action": "recent"})).await;
    assert_eq!(recent["recentSymbols"], json!([]));
    // Observers read memory but do not change it.
    let (err, _) = o
        .tool(
            "memory",
            json!({"action": "push", "kind": "file", "value": "/x"}),
        )
        .await;
    assert!(err);

    // Notes: each AI writes its own, everyone reads; observers too.
    let (err, _) = a
        .tool("notes", json!({"observations": ["Database queries need optimization"], "preferences": ["Functional patterns"]}))
        .await;
    assert!(!err);
    let (_, read) = b.tool("notes", json!({"aiId": "claude"})).await;
    assert_eq!(
        read["value"]["observations"][0],
        "Database queries need optimization"
    );
    let (err, msg) = b
        .tool(
            "notes",
            json!({"aiId": "claude", "observations": ["hijack"]}),
        )
        .await;
    assert!(err && msg.as_str().unwrap().contains("forbidden"), "{msg}");
    let (err, _) = o
        .tool("notes", json!({"observations": ["watching perf"]}))
        .await;
    assert!(!err);

    // A critical discovery is announced: it leads the others' next tool result.
    let (err, _) = o
        .tool("discovery_report", json!({"finding": "Memory leak in websocket handler", "location": "/src/ws/handler.ts:145", "severity": "critical"}))
        .await;
    assert!(!err);
    let (_, res) = a
        .call(9, "tools/call", json!({"name": "whoami", "arguments": {}}))
        .await;
    let first = res["result"]["content"][0]["text"].as_str().unwrap();
    assert!(first.contains("discovery_reported by cursor"), "{first}");
    let (_, found) = a
        .tool(
            "context_get",
            json!({"path": "activeWork.recentDiscoveries[0]"}),
        )
        .await;
    assert_eq!(found["value"]["by"], "cursor");
    assert_eq!(found["value"]["severity"], "critical");

    // The same over REST.
    let (s, b2) = app
        .post("/mcp/context/memory/push", &json!({"sessionId": id, "aiId": "claude", "kind": "file", "value": "/src/services/user.ts"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b2}");
    let (_, recent) = app
        .get(&format!(
            "/mcp/context/memory/recent?sessionId={id}&kind=file"
        ))
        .await;
    assert_eq!(recent, json!({"openFiles": ["/src/services/user.ts"]}));
    let (s, _) = app
        .post_as(
            &gemini,
            "/mcp/context/notes/gemini",
            &json!({"observations": ["Test coverage below 60% in payments"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, notes) = app
        .get(&format!("/mcp/context/notes/gemini?sessionId={id}"))
        .await;
    assert_eq!(
        notes["value"]["observations"][0],
        "Test coverage below 60% in payments"
    );
    let (s, b2) = app
        .post_as(
            &gemini,
            "/mcp/context/notes/claude",
            &json!({"observations": ["no"]}),
        )
        .await;
    assert_error(s, &b2, StatusCode::FORBIDDEN, "forbidden");
    let (s, _) = app
        .post("/mcp/context/memory/clear", &json!({"sessionId": id}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, recent) = app
        .get(&format!("/mcp/context/memory/recent?sessionId={id}"))
        .await;
    assert_eq!(
        recent,
        json!({"recentSymbols": [], "openFiles": [], "breakpoints": []})
    );
}

both_backends!(logs_written_before_compact_appends_still_load);

/// A log written by a hub from before appends were stored compactly (each change as the whole
/// value before and after, an append as the whole array) loads into the same context, versions
/// included, and gives the same diff.
async fn logs_written_before_compact_appends_still_load(backend: Backend) {
    use actix_web::http::StatusCode;
    use collab_hub::domain::context::{Context, Edit};
    use collab_hub::domain::context_log::changes_from_json;
    use collab_hub::domain::session::CONTEXT_KINDS;
    use collab_hub::store::codec::{decode_payload, encode_payload};
    use collab_hub::store::{ConnRole, DbTarget, schema::events};
    use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
    use serde_json::{Map, Value};

    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, _) = app.create_pair("old log").await;
    let mut since = None;
    for i in 0..3 {
        let (s, b) = app
            .post_as(
                &claude,
                "/mcp/context/append/activeWork.log",
                &json!({"value": {"n": i}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        since.get_or_insert(b["eventId"].as_i64().unwrap());
    }
    // Past the 50 a list keeps, so that pushes drop their oldest entries.
    for i in 0..55 {
        let (s, b) = app
            .post_as(
                &claude,
                "/mcp/context/memory/push",
                &json!({"kind": "symbol", "value": format!("S{i}")}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let since = since.unwrap();
    let (_, before) = app.get_as(&claude, "/mcp/context/get").await;
    let (_, log_before) = app.get_as(&claude, "/mcp/context/get/activeWork.log").await;
    let diff_url = format!("/mcp/context/diff/claude/{since}?sessionId={id}");
    let (s, diff_before) = app.get(&diff_url).await;
    assert_eq!(s, StatusCode::OK, "{diff_before}");
    let db = app.stop().await;

    // Rewrite every context change of the session as the older hub wrote it.
    let mut conn = DbTarget::parse(&db.url)
        .unwrap()
        .connect(ConnRole::Writer)
        .unwrap();
    let rows: Vec<(i64, String)> = events::table
        .filter(events::session_id.eq(&id))
        .filter(events::kind.eq_any(CONTEXT_KINDS))
        .order(events::id.asc())
        .select((events::id, events::payload))
        .load(&mut conn)
        .unwrap();
    let (mut context, mut rewritten) = (Context::new(), 0);
    for (event_id, text) in rows {
        let mut payload = decode_payload(&text).unwrap();
        let mut legacy = Vec::new();
        for change in changes_from_json(&payload["changes"]).unwrap() {
            let old = context.get(&change.path).cloned();
            context.apply(&change, event_id);
            let (old, new) = match change.edit {
                Edit::Replace { old, new } => (old, new),
                Edit::Append { .. } => {
                    rewritten += 1;
                    (old, context.get(&change.path).cloned())
                }
            };
            let mut entry = Map::new();
            entry.insert("path".into(), json!(change.path.to_string()));
            if let Some(v) = old {
                entry.insert("old".into(), v);
            }
            if let Some(v) = new {
                entry.insert("new".into(), v);
            }
            if let Some(n) = change.created_from {
                entry.insert("createdFrom".into(), json!(n));
            }
            legacy.push(Value::Object(entry));
        }
        payload["changes"] = Value::Array(legacy);
        diesel::update(
            events::table
                .filter(events::session_id.eq(&id))
                .filter(events::id.eq(event_id)),
        )
        .set(events::payload.eq(encode_payload(&payload).unwrap()))
        .execute(&mut conn)
        .unwrap();
    }
    // All but the first append to each list were stored compactly, and are now whole arrays.
    assert_eq!(rewritten, 2 + 54);
    drop(conn);

    let app = start_on(db, Settings::for_database("unused")).await;
    let (_, after) = app.get_as(&claude, "/mcp/context/get").await;
    assert_eq!(after, before);
    let (_, log_after) = app.get_as(&claude, "/mcp/context/get/activeWork.log").await;
    assert_eq!(log_after, log_before, "versions too");
    let (_, diff_after) = app.get(&diff_url).await;
    assert_eq!(diff_after, diff_before);
}
