//! Coordination at the wire level: the concept's handshake with two MCP clients in strict mode,
//! refusals in both modes, roles (request, grant, assign, boundary, rotation, tools/list_changed),
//! the change ledger with conflict alerts, and what survives a restart.

use std::time::Duration;

use actix_web::http::StatusCode;
use collab_hub::Settings;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_error, both_backends, client, spawn_app, start_on};
use crate::mcp_protocol::Mcp;

both_backends!(
    the_concepts_handshake_in_strict_mode,
    loose_mode_records_and_alerts,
    roles_change_at_handshake_boundaries,
    automatic_rotation_and_review_timeout,
    the_ledger_keeps_history_and_refuses_bad_diffs,
    suggestions_become_changes_or_stay_rejected,
    leaving_mid_handshake_does_not_wedge_it,
);

async fn session(app: &TestApp, body: Value) -> (String, Value) {
    let (status, created) = app.post("/mcp/session/create", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["sessionId"].as_str().unwrap().to_owned(),
        created["tokens"].clone(),
    )
}

async fn mcp(app: &TestApp, tokens: &Value, who: &str) -> Mcp {
    let mut m = Mcp::new(app);
    m.token = Some(tokens[who].as_str().unwrap().to_owned());
    m.initialize("2025-11-25").await;
    m
}

/// The text content of a raw tool call (critical alerts lead it).
async fn call_text(m: &Mcp, name: &str, args: Value) -> String {
    let (_, raw) = m
        .call(9, "tools/call", json!({"name": name, "arguments": args}))
        .await;
    raw["result"]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

fn edit(file: &str, line: usize, text: &str) -> Value {
    let before: String = (1..=30).map(|i| format!("line {i}\n")).collect();
    let after = before.replace(&format!("line {line}\n"), &format!("{text}\n"));
    json!({"action": "record", "filePath": file, "before": before, "after": after})
}

async fn last_event(app: &TestApp, id: &str) -> i64 {
    app.get(&format!("/mcp/session/{id}")).await.1["lastEventId"]
        .as_i64()
        .unwrap()
}

async fn the_concepts_handshake_in_strict_mode(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, tokens) = session(
        &app,
        json!({"name": "pair", "handshakeMode": "strict", "participants": {
            "claude": {"role": "driver"}, "gemini": {"role": "navigator"}, "cursor": {"role": "observer"}}}),
    )
    .await;
    let claude = mcp(&app, &tokens, "claude").await;
    let gemini = mcp(&app, &tokens, "gemini").await;
    let cursor = mcp(&app, &tokens, "cursor").await;

    // The driver writes; the navigator may not, and is told who drives and what to do.
    let (err, rec) = claude
        .tool("changes", edit("/src/auth.ts", 5, "fn login()"))
        .await;
    assert!(!err, "{rec}");
    let (err, refused) = gemini
        .tool("changes", edit("/src/auth.ts", 20, "oops"))
        .await;
    assert!(
        err && refused
            .as_str()
            .unwrap()
            .contains("write_permission_denied"),
        "{refused}"
    );
    let (status, body) = app
        .post_as(
            tokens["gemini"].as_str().unwrap(),
            "/mcp/collaborate/change",
            &json!({"filePath": "/a", "diff": "@@ -1 +1 @@\n-a\n+b\n"}),
        )
        .await;
    let e = assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "write_permission_denied",
    );
    assert_eq!(
        (e["currentDriver"].as_str(), e["suggestion"].as_str()),
        (
            Some("claude"),
            Some("Request driver role or submit as suggestion")
        ),
        "{body}"
    );

    // Step 1: the driver completes work; its writes freeze while the review is open.
    let (err, done) = claude
        .tool("handshake", json!({"step": "work_complete", "changes": ["refactored auth module", "updated tests"], "needsReview": true, "message": "Auth refactoring complete, please review for type safety"}))
        .await;
    assert!(!err, "{done}");
    let hs = done["eventId"].as_i64().unwrap();
    assert_eq!(done["handshake"]["state"], "awaiting_review");
    let (err, frozen) = claude
        .tool("changes", edit("/src/auth.ts", 6, "during review"))
        .await;
    assert!(
        err && frozen.as_str().unwrap().contains("write_permission_denied"),
        "{frozen}"
    );
    // Refusals name the state and what may come next.
    let (err, r) = claude
        .tool("handshake", json!({"step": "control_received"}))
        .await;
    assert!(
        err && r.as_str().unwrap().contains("awaiting_review")
            && r.as_str().unwrap().contains("review_start"),
        "{r}"
    );
    let (err, r) = cursor
        .tool(
            "handshake",
            json!({"step": "review_start", "acknowledgeId": hs}),
        )
        .await;
    assert!(err, "an observer does not even see the tool: {r}");
    let (err, r) = gemini
        .tool(
            "handshake",
            json!({"step": "review_start", "acknowledgeId": hs + 100}),
        )
        .await;
    assert!(err && r.as_str().unwrap().contains("acknowledgeId"), "{r}");

    // Steps 2 and 3 by the navigator, through the concept's REST shape for step 2.
    let (status, started) = app
        .post_as(
            tokens["gemini"].as_str().unwrap(),
            "/mcp/collaborate/handshake",
            &json!({"from": "gemini", "role": "navigator", "status": "reviewing", "acknowledgeId": format!("handshake_{hs}")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{started}");
    assert_eq!(started["handshake"]["state"], "reviewing");
    let (err, reviewed) = gemini
        .tool("handshake", json!({"step": "review_complete", "feedback": {"approved": true, "suggestions": ["Add null check on line 45"], "issues": []}, "passControl": true}))
        .await;
    assert!(!err, "{reviewed}");
    // Control handed to the driver: critical for it, on top of its next tool result.
    let text = call_text(&claude, "whoami", json!({})).await;
    assert!(
        text.contains("control_passed") && text.contains("confirm with control_received"),
        "{text}"
    );
    let (_, still) = claude
        .tool("changes", edit("/src/auth.ts", 7, "not yet"))
        .await;
    assert!(
        still.as_str().unwrap().contains("write_permission_denied"),
        "frozen until confirmed"
    );

    // Step 4: control received; writes work again.
    let (err, back) = claude
        .tool(
            "handshake",
            json!({"step": "control_received", "nextAction": "implementing suggestions"}),
        )
        .await;
    assert!(!err, "{back}");
    assert_eq!(back["handshake"]["state"], "idle");
    let (err, rec) = claude
        .tool(
            "changes",
            edit("/src/auth.ts", 25, "if (!user) return null;"),
        )
        .await;
    assert!(!err, "{rec}");

    // The whole exchange is in the log, in order.
    let (_, page) = cursor
        .tool("events_poll", json!({"after": 0, "limit": 200}))
        .await;
    let steps: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "handshake")
        .map(|e| e["payload"]["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "work_complete",
            "review_start",
            "review_complete",
            "control_received"
        ]
    );

    // It survives a restart: a new handshake left open stays open.
    let (_, open) = claude
        .tool(
            "handshake",
            json!({"step": "work_complete", "changes": ["x"]}),
        )
        .await;
    let open_id = open["eventId"].as_i64().unwrap();
    drop((claude, gemini, cursor));
    let db = app.stop().await;
    let app = start_on(db, Settings::for_database("unused")).await;
    let claude = mcp(&app, &tokens, "claude").await;
    let (_, me) = claude.tool("whoami", json!({})).await;
    assert_eq!(
        (
            me["handshake"]["state"].as_str(),
            me["handshake"]["id"].as_i64()
        ),
        (Some("awaiting_review"), Some(open_id)),
        "{me}"
    );
    let (err, _) = claude
        .tool("changes", edit("/src/auth.ts", 9, "after restart"))
        .await;
    assert!(err, "still frozen after the restart");
    let (err, _) = claude
        .tool(
            "handshake",
            json!({"step": "cancel", "reason": "wrong branch"}),
        )
        .await;
    assert!(!err);
    let (err, _) = claude
        .tool("changes", edit("/src/auth.ts", 9, "after cancel"))
        .await;
    assert!(!err);
    assert!(last_event(&app, &id).await > open_id);
}

async fn loose_mode_records_and_alerts(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, tokens) = session(
        &app,
        json!({"name": "loose", "handshakeMode": "loose", "participants": ["claude", "gemini"]}),
    )
    .await;
    let claude = mcp(&app, &tokens, "claude").await;
    let gemini = mcp(&app, &tokens, "gemini").await;
    let (err, first) = claude
        .tool("changes", edit("/src/pay.ts", 10, "charge()"))
        .await;
    assert!(!err, "{first}");
    // The navigator writes without the permission and onto claude's lines: recorded, alerted.
    let (err, second) = gemini
        .tool("changes", edit("/src/pay.ts", 11, "refund()"))
        .await;
    assert!(!err, "{second}");
    assert_eq!(second["outsidePermissions"], true);
    assert_eq!(second["conflicts"], json!([first["id"]]));
    let text = call_text(&claude, "whoami", json!({})).await;
    assert!(text.contains("change_conflict"), "{text}");
    // One alert per recipient, with every reason that concerns it.
    let (_, page) = claude
        .tool("events_poll", json!({"after": first["id"], "limit": 50}))
        .await;
    let alert = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "change_conflict")
        .unwrap()
        .clone();
    let summary = alert["payload"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("overlapping lines") && summary.contains("without the write permission"),
        "{alert}"
    );
    let text = call_text(&gemini, "whoami", json!({})).await;
    assert!(text.contains("change_conflict"), "{text}");
    // The handshake is advisory: the driver writes while its work awaits review.
    let (err, _) = claude
        .tool("handshake", json!({"step": "work_complete"}))
        .await;
    assert!(!err);
    let (err, r) = claude.tool("changes", edit("/src/other.ts", 1, "x")).await;
    assert!(!err, "{r}");
}

/// Reads `mcp`'s GET stream until `needle` shows up (or 10 s pass).
pub(crate) async fn stream_shows(
    app: &TestApp,
    (session, token): (&str, Option<&str>),
    needle: &str,
    act: impl std::future::Future<Output = ()>,
) -> bool {
    let mut req = client()
        .get(format!("{}/mcp", app.address))
        .insert_header(("accept", "text/event-stream"))
        .insert_header(("mcp-session-id", session));
    // Every request carries its credential, the stream too.
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let mut res = req.send().await.expect("GET stream");
    assert_eq!(res.status(), StatusCode::OK);
    act.await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), res.next()).await {
            Ok(Some(Ok(chunk))) => {
                seen.push_str(&String::from_utf8_lossy(&chunk));
                if seen.contains(needle) {
                    return true;
                }
            }
            Ok(_) => return false,
            Err(_) => {}
        }
    }
    false
}

async fn roles_change_at_handshake_boundaries(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, tokens) = session(&app, json!({"name": "roles", "participants": {
        "claude": {"role": "driver"}, "gemini": {"role": "navigator"}, "cursor": {"role": "observer"}}})).await;
    let claude = mcp(&app, &tokens, "claude").await;
    let gemini = mcp(&app, &tokens, "gemini").await;
    let cursor = mcp(&app, &tokens, "cursor").await;

    // An observer asks to navigate; the driver grants; its tool list grows and it is told so.
    let (err, asked) = cursor
        .tool(
            "role",
            json!({"action": "request", "role": "navigator", "reason": "I know this module"}),
        )
        .await;
    assert!(!err, "{asked}");
    assert_eq!(asked["status"], "requested");
    let request = asked["eventId"].as_i64().unwrap();
    let (err, r) = gemini
        .tool(
            "role",
            json!({"action": "respond", "requestId": request, "grant": true}),
        )
        .await;
    assert!(
        err && r.as_str().unwrap().contains("only the driver"),
        "{r}"
    );
    let before = cursor.call(2, "tools/list", json!({})).await.1["result"]["tools"]
        .as_array()
        .unwrap()
        .len();
    let session_id = cursor.session.clone().unwrap();
    let granted = stream_shows(
        &app,
        (&session_id, cursor.token.as_deref()),
        "notifications/tools/list_changed",
        async {
            let (err, g) = claude
                .tool(
                    "role",
                    json!({"action": "respond", "requestId": request, "grant": true}),
                )
                .await;
            assert!(!err && g["status"] == "changed", "{g}");
        },
    )
    .await;
    assert!(granted, "cursor's stream got tools/list_changed");
    let after = cursor.call(3, "tools/list", json!({})).await.1["result"]["tools"]
        .as_array()
        .unwrap()
        .len();
    assert!(after > before, "{before} → {after} tools");
    let (_, me) = cursor.tool("whoami", json!({})).await;
    assert_eq!(me["role"], "navigator");
    assert_eq!(
        me["permissions"],
        json!(["read", "execute", "suggest", "review"])
    );

    // A driver change decided mid-handshake waits for the boundary.
    let (_, work) = claude
        .tool("handshake", json!({"step": "work_complete"}))
        .await;
    let hs = work["eventId"].as_i64().unwrap();
    let (err, pending) = claude
        .tool(
            "role",
            json!({"action": "assign", "roles": {"gemini": "driver"}, "reason": "role swap"}),
        )
        .await;
    assert!(!err, "{pending}");
    assert_eq!(pending["status"], "pending");
    let (_, me) = gemini.tool("whoami", json!({})).await;
    assert_eq!(me["role"], "navigator", "not mid-work");
    gemini
        .tool(
            "handshake",
            json!({"step": "review_start", "acknowledgeId": hs}),
        )
        .await;
    gemini
        .tool(
            "handshake",
            json!({"step": "review_complete", "feedback": {"approved": true}}),
        )
        .await;
    let (err, closed) = claude
        .tool("handshake", json!({"step": "control_received"}))
        .await;
    assert!(!err, "{closed}");
    assert_eq!(
        closed["rolesChanged"],
        json!({"claude": "navigator", "gemini": "driver"})
    );
    let (_, me) = gemini.tool("whoami", json!({})).await;
    assert_eq!(
        (me["role"].as_str(), me["driver"].as_str()),
        (Some("driver"), Some("gemini"))
    );
    let (err, _) = gemini
        .tool("changes", edit("/src/docs.md", 3, "new driver"))
        .await;
    assert!(!err);

    // The operator assigns over REST; two drivers are refused; nothing changes then.
    let before = last_event(&app, &id).await;
    let (status, body) = app
        .post("/mcp/collaborate/role", &json!({"sessionId": id, "action": "assign", "roles": {"claude": "driver", "cursor": "driver"}}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "driver_taken");
    let (status, body) = app
        .post(
            "/mcp/collaborate/role",
            &json!({"sessionId": id, "action": "assign", "roles": {"nobody": "driver"}}),
        )
        .await;
    assert!(status.is_client_error(), "{body}");
    assert_eq!(last_event(&app, &id).await, before);
    let (status, body) = app
        .post(
            "/mcp/collaborate/role",
            &json!({"sessionId": id, "action": "assign", "roles": {"claude": "driver"}}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("changed")),
        "{body}"
    );
    let (_, s) = app.get(&format!("/mcp/session/{id}")).await;
    assert_eq!(s["driver"], "claude");
}

async fn automatic_rotation_and_review_timeout(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // Two-second turns (0.0333 minutes), one-second review timeout.
    let (id, tokens) = session(&app, json!({"name": "mob", "rotationPolicy": "automatic", "roleRotationInterval": 0.0333, "reviewTimeoutSecs": 1,
        "participants": ["claude", "gemini"]})).await;
    let claude = mcp(&app, &tokens, "claude").await;
    // A handshake is open: the rotation waits for its end, and the review deadline alerts.
    let (_, work) = claude
        .tool(
            "handshake",
            json!({"step": "work_complete", "changes": ["a"]}),
        )
        .await;
    let hs = work["eventId"].as_i64().unwrap();
    let mut kinds = Vec::new();
    for _ in 0..60 {
        let (_, page) = claude
            .tool("events_poll", json!({"after": hs, "limit": 100}))
            .await;
        kinds = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_owned())
            .collect();
        if kinds.contains(&"review_overdue".to_owned())
            && kinds.contains(&"role_change_pending".to_owned())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(kinds.contains(&"review_overdue".to_owned()), "{kinds:?}");
    assert!(
        kinds.contains(&"role_change_pending".to_owned()),
        "{kinds:?}"
    );
    let (_, s) = app.get(&format!("/mcp/session/{id}")).await;
    assert_eq!(s["driver"], "claude", "no swap mid-handshake");
    let (_, closed) = claude.tool("handshake", json!({"step": "cancel"})).await;
    assert_eq!(closed["rolesChanged"]["gemini"], "driver", "{closed}");
    // And it keeps rotating at the interval.
    let mut driver = String::new();
    for _ in 0..60 {
        let (_, s) = app.get(&format!("/mcp/session/{id}")).await;
        driver = s["driver"].as_str().unwrap_or_default().to_owned();
        if driver == "claude" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(driver, "claude", "rotated back after the next interval");
}

async fn the_ledger_keeps_history_and_refuses_bad_diffs(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, tokens) = session(
        &app,
        json!({"name": "ledger", "participants": ["claude", "gemini"]}),
    )
    .await;
    let claude = mcp(&app, &tokens, "claude").await;
    let (_, a) = claude.tool("changes", edit("/src/a.ts", 3, "x")).await;
    let (_, b) = claude
        .tool("changes", json!({"action": "record", "filePath": "/src/b.ts", "diff": "--- a\n+++ b\n@@ -10,2 +10,3 @@\n a\n-b\n+c\n+d\n", "symbols": ["B.run"]}))
        .await;
    assert_eq!(b["lines"], json!([[10, 12]]), "{b}");
    let (_, r) = claude.tool("changes", json!({"action": "record", "filePath": "/src/b.ts", "operation": "rename", "newPath": "/src/c.ts"})).await;
    assert!(r["id"].is_i64(), "{r}");
    let before = last_event(&app, &id).await;
    for bad in [
        json!({"action": "record", "filePath": "/x", "diff": "not a diff"}),
        json!({"action": "record", "filePath": "/x", "diff": "@@ what @@\n"}),
        json!({"action": "record", "filePath": "/x"}),
        json!({"action": "record", "filePath": "/x", "operation": "rename"}),
        json!({"action": "record", "filePath": "", "before": "a", "after": "b"}),
        json!({"action": "record", "filePath": "/x", "diff": "@@ -1 +1 @@\n", "before": "a"}),
        json!({"action": "record", "filePath": "/x", "operation": "teleport"}),
        json!({"action": "list", "limit": 0}),
    ] {
        let (err, msg) = claude.tool("changes", bad.clone()).await;
        assert!(err, "{bad} was accepted: {msg}");
    }
    assert_eq!(
        last_event(&app, &id).await,
        before,
        "refusals wrote nothing"
    );
    let (_, list) = claude.tool("changes", json!({"action": "list"})).await;
    let ids: Vec<i64> = list["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            a["id"].as_i64().unwrap(),
            b["id"].as_i64().unwrap(),
            r["id"].as_i64().unwrap()
        ]
    );
    assert!(
        list["changes"][0].get("diff").is_none(),
        "summaries only by default"
    );
    let (status, history) = app
        .get_as(
            tokens["gemini"].as_str().unwrap(),
            "/mcp/collaborate/changes?file=/src/b.ts&withDiff=true",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let history = history["changes"].as_array().unwrap();
    assert_eq!(history.len(), 2, "the edit and the rename");
    assert!(history[0]["diff"].as_str().unwrap().contains("+d"));
    assert_eq!(history[1]["newPath"], "/src/c.ts");
    let (_, computed) = app
        .get_as(
            tokens["gemini"].as_str().unwrap(),
            "/mcp/collaborate/changes?file=/src/a.ts&withDiff=true",
        )
        .await;
    assert!(
        computed["changes"][0]["diff"]
            .as_str()
            .unwrap()
            .contains("-line 3\n+x"),
        "{computed}"
    );
}

async fn suggestions_become_changes_or_stay_rejected(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, tokens) = session(&app, json!({"name": "suggest", "participants": {
        "claude": {"role": "driver"}, "gemini": {"role": "navigator"}, "cursor": {"role": "observer"}}})).await;
    let claude = mcp(&app, &tokens, "claude").await;
    let gemini = mcp(&app, &tokens, "gemini").await;
    let cursor = mcp(&app, &tokens, "cursor").await;
    // The concept's answer to a refused write: submit it as a suggestion.
    let mut proposal = edit("/src/auth.ts", 25, "if (!user) return null;");
    proposal["action"] = json!("submit");
    proposal["reason"] = json!("null check on line 25");
    let (err, first) = gemini.tool("suggestion", proposal.clone()).await;
    assert!(!err, "{first}");
    let (err, r) = cursor.tool("suggestion", proposal.clone()).await;
    assert!(
        err && r.as_str().unwrap().contains("suggest permission"),
        "{r}"
    );
    let (_, page) = claude
        .tool(
            "events_poll",
            json!({"after": first["id"].as_i64().unwrap() - 1}),
        )
        .await;
    assert_eq!(
        (
            page["events"][0]["kind"].as_str(),
            page["events"][0]["priority"].as_str()
        ),
        (Some("suggestion_submitted"), Some("important"))
    );

    // Only the driver resolves; accepting writes a change attributed to both.
    let (err, r) = gemini
        .tool(
            "suggestion",
            json!({"action": "resolve", "id": first["id"], "accept": true}),
        )
        .await;
    assert!(
        err && r.as_str().unwrap().contains("only the driver"),
        "{r}"
    );
    let (err, accepted) = claude
        .tool(
            "suggestion",
            json!({"action": "resolve", "id": first["id"], "accept": true, "note": "good catch"}),
        )
        .await;
    assert!(!err, "{accepted}");
    let change = accepted["changeId"].as_i64().unwrap();
    let (_, ledger) = claude
        .tool(
            "changes",
            json!({"action": "list", "filePath": "/src/auth.ts", "withDiff": true}),
        )
        .await;
    let c = &ledger["changes"][0];
    assert_eq!(
        (c["id"].as_i64(), c["aiId"].as_str(), c["coAuthor"].as_str()),
        (Some(change), Some("gemini"), Some("claude")),
        "{ledger}"
    );
    assert!(
        c["diff"]
            .as_str()
            .unwrap()
            .contains("+if (!user) return null;")
    );
    let (_, told) = gemini.tool("events_poll", json!({"after": change})).await;
    assert!(
        told["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "suggestion_resolved" && e["to"] == "gemini"),
        "{told}"
    );
    let (err, r) = claude
        .tool(
            "suggestion",
            json!({"action": "resolve", "id": first["id"], "accept": false}),
        )
        .await;
    assert!(err && r.as_str().unwrap().contains("already"), "{r}");

    // While its work awaits review the driver cannot accept (that would be a write), but may reject.
    let (err, second) = gemini.tool("suggestion", proposal).await;
    assert!(!err);
    claude
        .tool("handshake", json!({"step": "work_complete"}))
        .await;
    let (err, r) = claude
        .tool(
            "suggestion",
            json!({"action": "resolve", "id": second["id"], "accept": true}),
        )
        .await;
    assert!(
        err && r.as_str().unwrap().contains("write_permission_denied"),
        "{r}"
    );
    let (err, rejected) = claude.tool("suggestion", json!({"action": "resolve", "id": second["id"], "accept": false, "note": "out of scope"})).await;
    assert!(!err, "{rejected}");
    let (status, all) = app
        .get(&format!(
            "/mcp/collaborate/suggestions?sessionId={id}&all=true"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let statuses: Vec<(&str, Option<&str>)> = all["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["status"].as_str().unwrap(), s["note"].as_str()))
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("accepted", Some("good catch")),
            ("rejected", Some("out of scope"))
        ]
    );
    let (_, pending) = app
        .get(&format!("/mcp/collaborate/suggestions?sessionId={id}"))
        .await;
    assert_eq!(pending, json!({"suggestions": []}));
    let (status, body) = app
        .post(
            "/mcp/collaborate/suggestion/resolve",
            &json!({"sessionId": id, "id": 424242, "accept": true}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_field");
}

async fn leaving_mid_handshake_does_not_wedge_it(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, tokens) = session(&app, json!({"name": "leavers", "participants": {
        "claude": {"role": "driver"}, "gemini": {"role": "navigator"}, "codex": {"role": "navigator"}}})).await;
    let claude = mcp(&app, &tokens, "claude").await;
    let gemini = mcp(&app, &tokens, "gemini").await;
    let codex = mcp(&app, &tokens, "codex").await;
    let (_, work) = claude
        .tool("handshake", json!({"step": "work_complete"}))
        .await;
    let hs = work["eventId"].as_i64().unwrap();
    gemini
        .tool(
            "handshake",
            json!({"step": "review_start", "acknowledgeId": hs}),
        )
        .await;
    // The reviewer leaves: the work awaits another review, which codex takes.
    let (status, _) = app
        .post(
            "/mcp/session/leave",
            &json!({"sessionId": id, "participant": "gemini"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, me) = claude.tool("whoami", json!({})).await;
    assert_eq!(me["handshake"]["state"], "awaiting_review", "{me}");
    let (err, r) = codex
        .tool(
            "handshake",
            json!({"step": "review_start", "acknowledgeId": hs}),
        )
        .await;
    assert!(!err, "{r}");
    // The driver leaves: the handshake ends, and a pending role change naming it is dropped.
    let (err, pending) = claude
        .tool(
            "role",
            json!({"action": "assign", "roles": {"codex": "driver"}}),
        )
        .await;
    assert!(!err && pending["status"] == "pending", "{pending}");
    let (status, _) = app
        .post(
            "/mcp/session/leave",
            &json!({"sessionId": id, "participant": "claude"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, s) = app.get(&format!("/mcp/session/{id}")).await;
    assert_eq!(s["coordination"]["handshake"]["state"], "idle", "{s}");
    // With nobody driving, codex asks and the session grants at once.
    let (err, granted) = codex
        .tool("role", json!({"action": "request", "role": "driver"}))
        .await;
    assert!(!err && granted["status"] == "changed", "{granted}");
    let (err, _) = codex.tool("changes", edit("/src/a.ts", 3, "x")).await;
    assert!(!err, "the new driver writes");
}
