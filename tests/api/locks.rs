//! Locks at the wire level: the concept's request, conflicts by containment, queues, fencing
//! tokens on changes, expiry, force release, release on leave, and a restart; and locks shared
//! by the sessions of one project (and not by different projects).

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
    sessions_of_one_project_share_one_lock_table,
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
    // Others hear about it (ids and tokens are the project's, not event ids).
    let seen = events(&app, &gemini, 0).await;
    let locked = seen
        .iter()
        .find(|e| e["kind"] == "resource_locked")
        .expect("a resource_locked event");
    assert_eq!(
        (
            locked["payload"]["by"].as_str(),
            locked["payload"]["resource"].as_str(),
            locked["payload"]["lockId"].as_i64(),
            locked["payload"]["token"].as_i64(),
        ),
        (
            Some("claude"),
            Some("/src/auth/"),
            Some(first_token),
            Some(first_token)
        )
    );
    assert!(locked["payload"]["until"].is_string());

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

/// The project's locks as `session` lists them: `(sessionId, holder, resource, state, token)`.
async fn project_locks(app: &TestApp, token: &str, session: &str) -> Vec<Value> {
    let (status, list) = app
        .get_as(
            token,
            &format!("/mcp/collaborate/locks?sessionId={session}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["locks"].as_array().unwrap().clone()
}

async fn sessions_of_one_project_share_one_lock_table(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let app = start_on(db, Settings::for_database("unused")).await;
    // A feature and a bug fix on one repository, both with a "claude".
    let mut made = Vec::new();
    for (name, team) in [
        ("feature", ["claude", "gemini"]),
        ("bugfix", ["claude", "codex"]),
    ] {
        let (status, created) = app
            .post(
                "/mcp/session/create",
                &json!({"name": name, "project": "/repos/shop", "participants": team}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        made.push(created);
    }
    let (a, b) = (
        made[0]["sessionId"].as_str().unwrap(),
        made[1]["sessionId"].as_str().unwrap(),
    );
    let (a_claude, a_gemini) = (
        t(&made[0]["tokens"], "claude"),
        t(&made[0]["tokens"], "gemini"),
    );
    let (b_claude, b_codex) = (
        t(&made[1]["tokens"], "claude"),
        t(&made[1]["tokens"], "codex"),
    );

    let (_, held) = lock(
        &app,
        &a_claude,
        json!({"resource": "/src/auth/", "duration": 60}),
    )
    .await;
    assert_eq!(held["state"], "held", "{held}");
    assert_eq!(held["sessionId"], a);
    // The other session's claude is another holder: refused, and told whose lock it is.
    let (status, body) = lock(&app, &b_claude, json!({"resource": "/src/auth/jwt.ts"})).await;
    let e = assert_error(status, &body, StatusCode::CONFLICT, "resource_locked");
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("claude of session 'feature'") && message.contains(a),
        "{message}"
    );
    // Queued behind it, with the next number of the project's sequence.
    let (_, waiting) = lock(
        &app,
        &b_codex,
        json!({"resource": "/src/auth/jwt.ts", "wait": true, "duration": 60}),
    )
    .await;
    assert_eq!(waiting["state"], "waiting", "{waiting}");
    assert_eq!(waiting["behind"], json!([held["id"]]));
    assert!(waiting["id"].as_i64() > held["id"].as_i64());
    // Both sessions list both locks, each with its session.
    for (token, session) in [(&a_gemini, a), (&b_codex, b)] {
        let all = project_locks(&app, token, session).await;
        let owners: Vec<(&str, &str)> = all
            .iter()
            .map(|l| {
                (
                    l["sessionId"].as_str().unwrap(),
                    l["holder"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(owners, vec![(a, "claude"), (b, "codex")], "{all:?}");
    }
    // A change in the bug fix under the feature's lock: recorded, and its author is told whose
    // lock it is.
    let (status, rec) = app
        .post_as(
            &b_claude,
            "/mcp/collaborate/change",
            &json!({"filePath": "/src/auth/jwt.ts", "diff": "@@ -1 +1 @@\n-a\n+b\n"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rec}");
    let alerts = events(&app, &b_claude, rec["id"].as_i64().unwrap()).await;
    assert!(
        alerts.iter().any(|e| e["kind"] == "change_conflict"
            && e["payload"].to_string().contains("session 'feature'")),
        "{alerts:?}"
    );
    // A fencing token of the other session's holder is not ours.
    let (status, body) = app
        .post_as(
            &b_claude,
            "/mcp/collaborate/change",
            &json!({"filePath": "/src/auth/jwt.ts", "diff": "@@ -2 +2 @@\n-c\n+d\n",
                "lockToken": held["token"]}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "stale_fencing_token");
    // Nobody releases another session's lock through their own session, not even by force.
    let (status, body) = app
        .post_as(
            &b_claude,
            "/mcp/collaborate/lock/release",
            &json!({"lockId": held["id"], "force": true}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_field");

    // The holder releases: the waiter in the other session is granted there, with a newer token.
    let (status, released) = app
        .post_as(
            &a_claude,
            "/mcp/collaborate/lock/release",
            &json!({"lockId": held["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(
        state_within(&app, &b_codex, b, &waiting["id"], "held").await,
        "held"
    );
    let granted = project_locks(&app, &b_codex, b)
        .await
        .into_iter()
        .find(|l| l["id"] == waiting["id"])
        .unwrap();
    assert!(released["eventId"].is_i64(), "{released}");
    assert!(
        granted["token"].as_i64() > held["token"].as_i64(),
        "{granted}"
    );
    let seen = events(&app, &b_codex, 0).await;
    assert!(
        seen.iter().any(|e| e["kind"] == "resource_locked"
            && e["payload"]["lockId"] == waiting["id"]
            && e["payload"]["token"] == granted["token"]),
        "the grant is in the waiter's session log: {seen:?}"
    );

    // A lease that runs out in one session lets the other session's waiter in.
    let (_, short) = lock(
        &app,
        &a_gemini,
        json!({"resource": "/src/pay.ts", "duration": "1s"}),
    )
    .await;
    assert_eq!(short["state"], "held", "{short}");
    let (_, after) = lock(
        &app,
        &b_claude,
        json!({"resource": "/src/pay.ts", "wait": true}),
    )
    .await;
    assert_eq!(after["state"], "waiting", "{after}");
    assert_eq!(
        state_within(&app, &b_claude, b, &after["id"], "held").await,
        "held"
    );
    let expired = events(&app, &a_gemini, 0).await;
    assert!(
        expired.iter().any(|e| e["kind"] == "resource_released"
            && e["payload"]["lockId"] == short["id"]
            && e["payload"]["reason"] == "expired"),
        "the expiry is in the holder's session log: {expired:?}"
    );

    // Across a restart: a held lock in the bug fix, a waiter in the feature; leaving releases.
    let (_, queued) = lock(
        &app,
        &a_claude,
        json!({"resource": "/src/pay.ts", "wait": true}),
    )
    .await;
    assert_eq!(queued["state"], "waiting", "{queued}");
    let db = app.stop().await;
    let app = start_on(db, Settings::for_database("unused")).await;
    let all = project_locks(&app, &a_claude, a).await;
    let states: Vec<(i64, &str)> = all
        .iter()
        .map(|l| (l["id"].as_i64().unwrap(), l["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        vec![
            (waiting["id"].as_i64().unwrap(), "held"),
            (after["id"].as_i64().unwrap(), "held"),
            (queued["id"].as_i64().unwrap(), "waiting"),
        ]
    );
    let (status, _) = app
        .post_as(
            &b_claude,
            "/mcp/session/leave",
            &json!({"sessionId": b, "participant": "claude"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        state_within(&app, &a_claude, a, &queued["id"], "held").await,
        "held"
    );
    // Ids and tokens kept growing across the restart.
    let last = project_locks(&app, &a_claude, a)
        .await
        .into_iter()
        .find(|l| l["id"] == queued["id"])
        .unwrap();
    assert!(last["token"].as_i64() > granted["token"].as_i64(), "{last}");
}
