//! Locks at the wire level: the concept's request, conflicts by containment, queues, fencing
//! tokens on changes, expiry, force release, release on leave, and a restart.

use std::time::Duration;

use actix_web::http::StatusCode;
use collab_hub::Settings;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, TestApp, TestDb, assert_error, both_backends, client, spawn_app, start_on,
};
use crate::mcp_protocol::Mcp;

both_backends!(
    locks_conflict_queue_and_fence,
    leases_expire_are_forced_and_follow_leavers,
    locks_survive_a_restart_and_refuse_bad_input,
    locks_of_the_departed_are_released,
    sessions_of_different_projects_never_conflict,
);

async fn trio(app: &TestApp) -> (String, Value) {
    let (status, body) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "locks", "participants": ["claude", "gemini", "cursor"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["sessionId"].as_str().unwrap().to_owned(),
        body["tokens"].clone(),
    )
}

fn t(tokens: &Value, who: &str) -> String {
    tokens[who].as_str().unwrap().to_owned()
}

async fn lock(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.post_as(token, "/mcp/collaborate/lock", &body).await
}

/// Lock `lock`'s state once it is `wanted`, or whatever it is after 6 s (`null`: gone).
async fn state_within(
    app: &TestApp,
    token: &str,
    session: &str,
    lock: &Value,
    wanted: &str,
) -> Value {
    let mut state = Value::Null;
    for _ in 0..60 {
        let (_, list) = app
            .get_as(
                token,
                &format!("/mcp/collaborate/locks?sessionId={session}"),
            )
            .await;
        state = list["locks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == *lock)
            .map_or(Value::Null, |l| l["state"].clone());
        if state == wanted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    state
}

async fn events(app: &TestApp, token: &str, after: i64) -> Vec<Value> {
    let mut m = Mcp::new(app);
    m.token = Some(token.to_owned());
    m.initialize("2025-11-25").await;
    let (_, page) = m
        .tool("events_poll", json!({"after": after, "limit": 200}))
        .await;
    page["events"].as_array().unwrap().clone()
}

async fn locks_conflict_queue_and_fence(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, tokens) = trio(&app).await;
    let (claude, gemini, cursor) = (
        t(&tokens, "claude"),
        t(&tokens, "gemini"),
        t(&tokens, "cursor"),
    );
    // The concept's request.
    let (status, held) = lock(&app, &claude, json!({"ai": "claude", "resource": "/src/auth/", "operation": "refactor", "duration": "estimated_30s"})).await;
    assert_eq!(status, StatusCode::OK, "{held}");
    assert_eq!(
        (held["state"].as_str(), held["holder"].as_str()),
        (Some("held"), Some("claude"))
    );
    let first_token = held["token"].as_i64().unwrap();
    assert_eq!(held["id"], held["token"]);
    // Others hear about it.
    let seen = events(&app, &gemini, first_token - 1).await;
    assert_eq!(seen[0]["kind"], "resource_locked");
    assert_eq!(
        (
            seen[0]["payload"]["by"].as_str(),
            seen[0]["payload"]["resource"].as_str()
        ),
        (Some("claude"), Some("/src/auth/"))
    );
    assert!(seen[0]["payload"]["until"].is_string());

    // Containment: a file inside is taken; a sibling directory is not.
    let (status, body) = lock(&app, &gemini, json!({"resource": "/src/auth/jwt.ts"})).await;
    let e = assert_error(status, &body, StatusCode::CONFLICT, "resource_locked");
    assert!(e["message"].as_str().unwrap().contains("claude"), "{body}");
    let (status, other) = lock(&app, &gemini, json!({"resource": "/src/authz/x.ts"})).await;
    assert_eq!(status, StatusCode::OK, "{other}");
    // Queue: gemini first, then cursor (shared); first come, first served.
    let (_, g) = lock(
        &app,
        &gemini,
        json!({"resource": "/src/auth/jwt.ts", "wait": true, "duration": 60}),
    )
    .await;
    assert_eq!(
        (g["state"].as_str(), g["behind"].clone()),
        (Some("waiting"), json!([first_token])),
        "{g}"
    );
    let (_, c) = lock(
        &app,
        &cursor,
        json!({"resource": "/src/auth/*", "mode": "shared", "wait": true}),
    )
    .await;
    assert_eq!(c["state"], "waiting");

    // Fencing: claude cites its token on a change; a wrong token is refused.
    let change = |token: i64| json!({"filePath": "/src/auth/jwt.ts", "diff": "@@ -1 +1 @@\n-a\n+b\n", "lockToken": token});
    let (status, ok) = app
        .post_as(&claude, "/mcp/collaborate/change", &change(first_token))
        .await;
    assert_eq!(status, StatusCode::OK, "{ok}");
    let (status, body) = app
        .post_as(&claude, "/mcp/collaborate/change", &change(first_token - 1))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "stale_fencing_token");

    // Release: gemini's waiter is granted with a newer token; cursor still waits behind it.
    let (status, released) = app
        .post_as(
            &claude,
            "/mcp/collaborate/lock/release",
            &json!({"lockId": first_token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(released["granted"], json!([g["id"]]));
    let (_, list) = app
        .get_as(&claude, &format!("/mcp/collaborate/locks?sessionId={id}"))
        .await;
    let gemini_lock = list["locks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == g["id"])
        .unwrap()
        .clone();
    assert_eq!(gemini_lock["state"], "held");
    assert!(
        gemini_lock["token"].as_i64().unwrap() > first_token,
        "tokens only grow"
    );
    let cursor_lock = list["locks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == c["id"])
        .unwrap();
    assert_eq!(cursor_lock["state"], "waiting");
    // The old holder's token is stale now.
    let (status, body) = app
        .post_as(&claude, "/mcp/collaborate/change", &change(first_token))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "stale_fencing_token");
    // A change under someone else's lock is recorded but alerts both.
    let (status, rec) = app
        .post_as(
            &claude,
            "/mcp/collaborate/change",
            &json!({"filePath": "/src/auth/jwt.ts", "diff": "@@ -5 +5 @@\n-x\n+y\n"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rec}");
    let alerts = events(&app, &gemini, rec["id"].as_i64().unwrap()).await;
    assert!(
        alerts
            .iter()
            .any(|e| e["kind"] == "change_conflict" && e["priority"] == "critical"),
        "{alerts:?}"
    );

    // The tool: renew, then release via MCP; cursor's shared request goes through.
    let mut m = Mcp::new(&app);
    m.token = Some(gemini.clone());
    m.initialize("2025-11-25").await;
    let (err, renewed) = m
        .tool(
            "lock",
            json!({"action": "renew", "lockId": g["id"], "duration": "2m"}),
        )
        .await;
    assert!(!err, "{renewed}");
    assert_eq!(renewed["leaseSecs"], 120);
    let (err, done) = m
        .tool("lock", json!({"action": "release", "lockId": g["id"]}))
        .await;
    assert!(!err, "{done}");
    assert_eq!(done["granted"], json!([c["id"]]));
    let (_, listed) = m.tool("lock", json!({"action": "list"})).await;
    let states: Vec<(i64, String)> = listed["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["id"].as_i64().unwrap(),
                l["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&(c["id"].as_i64().unwrap(), "held".into())),
        "{states:?}"
    );
}

async fn leases_expire_are_forced_and_follow_leavers(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, tokens) = trio(&app).await;
    let (claude, gemini, cursor) = (
        t(&tokens, "claude"),
        t(&tokens, "gemini"),
        t(&tokens, "cursor"),
    );
    let (_, short) = lock(
        &app,
        &gemini,
        json!({"resource": "/a.ts", "duration": "1s"}),
    )
    .await;
    let (_, waiter) = lock(
        &app,
        &cursor,
        json!({"resource": "/a.ts", "wait": true, "mode": "shared"}),
    )
    .await;
    assert_eq!(waiter["state"], "waiting");
    // Expiry hands the resource on.
    let state = state_within(&app, &claude, &id, &waiter["id"], "held").await;
    assert_eq!(state, "held", "granted after the lease expired");
    let log = events(&app, &claude, short["id"].as_i64().unwrap()).await;
    assert!(
        log.iter()
            .any(|e| e["kind"] == "resource_released" && e["payload"]["reason"] == "expired"),
        "{log:?}"
    );

    // Force: only the driver (or operator); the holder gets a critical notice.
    let (_, held) = lock(&app, &gemini, json!({"resource": "/b.ts"})).await;
    let (status, body) = app
        .post_as(
            &cursor,
            "/mcp/collaborate/lock/release",
            &json!({"lockId": held["id"], "force": true}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, _) = app
        .post_as(
            &claude,
            "/mcp/collaborate/lock/release",
            &json!({"lockId": held["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not without force");
    let (status, forced) = app
        .post_as(
            &claude,
            "/mcp/collaborate/lock/release",
            &json!({"lockId": held["id"], "force": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{forced}");
    let notice = events(&app, &gemini, held["id"].as_i64().unwrap()).await;
    assert!(
        notice.iter().any(|e| e["kind"] == "lock_force_released"
            && e["priority"] == "critical"
            && e["to"] == "gemini"),
        "{notice:?}"
    );

    // Leaving releases what the leaver held.
    let (_, kept) = lock(&app, &cursor, json!({"resource": "/c.ts"})).await;
    assert_eq!(kept["state"], "held");
    let (status, _) = app
        .post_as(
            &cursor,
            "/mcp/session/leave",
            &json!({"sessionId": id, "participant": "cursor"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = app
        .get_as(&claude, &format!("/mcp/collaborate/locks?sessionId={id}"))
        .await;
    assert!(
        list["locks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["holder"] != "cursor"),
        "{list}"
    );
    let (status, mine) = lock(&app, &claude, json!({"resource": "/c.ts"})).await;
    assert_eq!(
        (status, mine["state"].as_str()),
        (StatusCode::OK, Some("held"))
    );
}

async fn locks_survive_a_restart_and_refuse_bad_input(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, tokens) = trio(&app).await;
    let (claude, gemini) = (t(&tokens, "claude"), t(&tokens, "gemini"));
    let before = app.get(&format!("/mcp/session/{id}")).await.1["lastEventId"]
        .as_i64()
        .unwrap();
    for (body, code) in [
        (json!({"resource": ""}), "invalid_field"),
        (json!({"resource": "/a/../b"}), "invalid_field"),
        (json!({"resource": "/dir/#Sym"}), "invalid_field"),
        (
            json!({"resource": "/a", "duration": "forever"}),
            "invalid_field",
        ),
        (json!({"resource": "/a", "duration": "9h"}), "invalid_field"),
        (json!({"resource": "/a", "mode": "sneaky"}), "invalid_field"),
        (
            json!({"resource": "/a", "action": "release"}),
            "invalid_field",
        ),
        (json!({"resource": "/a", "bogus": 1}), "invalid_field"),
    ] {
        let (status, answer) = lock(&app, &claude, body.clone()).await;
        assert_error(status, &answer, StatusCode::BAD_REQUEST, code);
    }
    let (status, answer) = app
        .post_as(
            &claude,
            "/mcp/collaborate/lock/release",
            &json!({"lockId": 99999}),
        )
        .await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_field");
    let (status, answer) = app
        .post_as(
            &claude,
            "/mcp/collaborate/lock/renew",
            &json!({"lockId": 99999}),
        )
        .await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(
        app.get(&format!("/mcp/session/{id}")).await.1["lastEventId"]
            .as_i64()
            .unwrap(),
        before,
        "nothing written"
    );

    let (_, held) = lock(
        &app,
        &claude,
        json!({"resource": "/src/x.ts#Parser.parse", "duration": "2s"}),
    )
    .await;
    let (_, other_symbol) = lock(&app, &gemini, json!({"resource": "/src/x.ts#Parser.emit"})).await;
    assert_eq!(
        other_symbol["state"], "held",
        "different symbols of one file do not conflict"
    );
    let (_, waiting) = lock(
        &app,
        &gemini,
        json!({"resource": "/src/x.ts#Parser", "wait": true}),
    )
    .await;
    assert_eq!(waiting["state"], "waiting");
    let db = app.stop().await;
    let app = start_on(db, Settings::for_database("unused")).await;
    // After the restart the queue is intact and the lease still runs out.
    let (_, list) = app
        .get_as(&claude, &format!("/mcp/collaborate/locks?sessionId={id}"))
        .await;
    let ids: Vec<i64> = list["locks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            held["id"].as_i64().unwrap(),
            other_symbol["id"].as_i64().unwrap(),
            waiting["id"].as_i64().unwrap()
        ]
    );
    // gemini's own Parser.emit lock does not block its Parser request; claude's does until expiry.
    let state = state_within(&app, &claude, &id, &waiting["id"], "held").await;
    assert_eq!(state, "held");
}

async fn locks_of_the_departed_are_released(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let mut settings = Settings::for_database("unused");
    settings.disconnect_grace_secs = 1;
    let app = start_on(db, settings).await;
    let (id, tokens) = trio(&app).await;
    let (claude, gemini) = (t(&tokens, "claude"), t(&tokens, "gemini"));
    // claude keeps its event stream open; gemini takes a lock over REST and goes quiet.
    let mut m = Mcp::new(&app);
    m.token = Some(claude.clone());
    m.initialize("2025-11-25").await;
    let stream = client()
        .get(format!("{}/mcp", app.address))
        .insert_header(("accept", "text/event-stream"))
        .insert_header(("mcp-session-id", m.session.clone().unwrap().as_str()))
        .bearer_auth(&claude)
        .send()
        .await
        .expect("GET stream");
    assert_eq!(stream.status(), StatusCode::OK);
    let (_, mine) = lock(
        &app,
        &claude,
        json!({"resource": "/kept.ts", "duration": "10m"}),
    )
    .await;
    let (_, theirs) = lock(
        &app,
        &gemini,
        json!({"resource": "/dropped.ts", "duration": "10m"}),
    )
    .await;
    assert_eq!(
        (mine["state"].as_str(), theirs["state"].as_str()),
        (Some("held"), Some("held"))
    );
    let mut ids = Vec::new();
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, list) = app
            .get(&format!("/mcp/collaborate/locks?sessionId={id}"))
            .await;
        ids = list["locks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_i64().unwrap())
            .collect();
        if !ids.contains(&theirs["id"].as_i64().unwrap()) {
            break;
        }
    }
    assert_eq!(
        ids,
        vec![mine["id"].as_i64().unwrap()],
        "gemini's lock went, claude's (with a stream) stayed"
    );
    let log = events(&app, &claude, theirs["id"].as_i64().unwrap()).await;
    assert!(
        log.iter()
            .any(|e| e["kind"] == "resource_released" && e["payload"]["reason"] == "disconnected"),
        "{log:?}"
    );
    drop(stream);
}

/// Files belong to a codebase: sessions on different projects lock the same paths without
/// ever meeting. (Sessions of one project will share one lock table; see the README's notes.)
async fn sessions_of_different_projects_never_conflict(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut held = Vec::new();
    for project in ["/repos/shop", "/repos/blog"] {
        let (status, created) = app
            .post(
                "/mcp/session/create",
                &json!({"name": project, "project": project, "participants": ["claude"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let token = created["tokens"]["claude"].as_str().unwrap().to_owned();
        for resource in ["/src/auth.ts", "/src/"] {
            let (status, got) = lock(&app, &token, json!({"resource": resource})).await;
            assert_eq!(status, StatusCode::OK, "{project} {resource}: {got}");
            assert_eq!(got["state"], "held", "{got}");
            held.push(got);
        }
    }
    assert_eq!(held.len(), 4);
}
