//! Whole-session snapshots: `session_save` stores the full state; milestones and the auto-save
//! interval save on their own; after `kill -9` the reloaded session is, field by field, the
//! session that was saved before the crash.

use std::time::Duration;

use actix_web::http::StatusCode;
use collab_hub::store::{ConnRole, DbTarget};
use serde_json::{Value, json};

use crate::crash::{KillOnDrop, rest, start_hub};
use crate::helpers::{Backend, TestApp, TestDb, both_backends, client, spawn_app};

both_backends!(
    a_save_holds_the_whole_session,
    milestones_and_the_interval_save_on_their_own,
    after_kill_9_the_reloaded_session_equals_the_saved_one,
);

/// The newest snapshot of `session`, read straight from the database.
pub(crate) fn latest(db_url: &str, session: &str) -> Option<Value> {
    let mut conn = DbTarget::parse(db_url)
        .unwrap()
        .connect(ConnRole::Reader)
        .unwrap();
    collab_hub::store::snapshots::latest(&mut conn, session.parse().unwrap()).unwrap()
}

/// Waits up to 15 s for a snapshot that `pred` accepts.
async fn wait_for(db_url: &str, session: &str, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..150 {
        if let Some(s) = latest(db_url, session).filter(|s| pred(s)) {
            return s;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no such snapshot; latest: {:?}", latest(db_url, session));
}

/// A loose session with a bit of everything: context, a message to ack, a task, a lock, a
/// change. Returns (id, claude, gemini).
async fn busy_session(app: &TestApp, save_interval: u32) -> (String, String, String) {
    let (s, created) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "snapshots", "participants": ["claude", "gemini"],
                    "handshakeMode": "loose", "saveInterval": save_interval}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let token = |ai: &str| created["tokens"][ai].as_str().unwrap().to_owned();
    let (id, claude, gemini) = (
        created["sessionId"].as_str().unwrap().to_owned(),
        token("claude"),
        token("gemini"),
    );
    for (who, path, body) in [
        (
            &claude,
            "/mcp/context/set",
            json!({"path": "plan.step", "value": 2}),
        ),
        (
            &claude,
            "/mcp/messages/send",
            json!({"to": "gemini", "body": "ack this", "requiresAck": true}),
        ),
        (
            &claude,
            "/mcp/collaborate/task",
            json!({"description": "tests", "assignedTo": "gemini"}),
        ),
        (
            &claude,
            "/mcp/collaborate/lock",
            json!({"resource": "/src/pay.rs", "duration": 600}),
        ),
        (
            &claude,
            "/mcp/collaborate/change",
            json!({"filePath": "/src/pay.rs", "before": "a\n", "after": "b\n"}),
        ),
    ] {
        let (s, b) = app.post_as(who, path, &body).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
    }
    (id, claude, gemini)
}

async fn a_save_holds_the_whole_session(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = busy_session(&app, 0).await;
    let (_, view) = app.get_as(&claude, &format!("/mcp/session/{id}")).await;
    let (s, saved) = app
        .post_as(
            &gemini,
            "/mcp/session/save",
            &json!({"sessionId": id, "trigger": "manual"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{saved}");
    assert_eq!(saved["snapshotId"], 1);
    assert_eq!(saved["eventId"], view["lastEventId"]);
    assert_eq!(saved["trigger"], "manual");
    let state = latest(&app.db.url, &id).expect("stored");
    assert_eq!(state["eventId"], view["lastEventId"]);
    assert_eq!(state["session"]["driver"], "claude");
    assert_eq!(
        state["participants"]["gemini"]["unreadMessages"], 1,
        "{state}"
    );
    assert_eq!(state["participants"]["claude"]["unreadMessages"], 0);
    assert_eq!(state["tasks"][0]["assignedTo"], "gemini");
    assert_eq!(state["locks"][0]["holder"], "claude");
    assert_eq!(state["locks"][0]["resource"], "/src/pay.rs");
    assert_eq!(state["context"]["doc"]["plan"]["step"], 2);
    assert_eq!(state["messages"][0]["body"], "ack this");
    assert!(
        state["changes"][0]["diff"].as_str().unwrap().contains("+b"),
        "{state}"
    );
    // Leaner on request; a bad trigger changes nothing.
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/session/save",
            &json!({"includeContext": false, "includeMessages": false, "includeChanges": false}),
        )
        .await;
    assert_eq!(
        (s, b["snapshotId"].as_i64()),
        (StatusCode::OK, Some(2)),
        "{b}"
    );
    let lean = latest(&app.db.url, &id).unwrap();
    assert!(
        lean.get("context").is_none()
            && lean.get("messages").is_none()
            && lean.get("changes").is_none()
    );
    assert_eq!(lean["tasks"], state["tasks"]);
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/session/save",
            &json!({"trigger": "sometimes"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(latest(&app.db.url, &id).unwrap()["trigger"], "manual");
}

async fn milestones_and_the_interval_save_on_their_own(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // The shortest interval the hub accepts: 10 s.
    let (id, claude, gemini) = busy_session(&app, 10).await;
    // A completed task is a milestone.
    let (_, tasks) = app.get_as(&gemini, "/mcp/collaborate/tasks").await;
    let task = tasks["tasks"][0]["id"].clone();
    let (s, b) = app
        .post_as(
            &gemini,
            "/mcp/collaborate/task/update",
            &json!({"taskId": task, "status": "completed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, view) = app.get_as(&claude, &format!("/mcp/session/{id}")).await;
    let done = view["lastEventId"].as_i64().unwrap();
    let m = wait_for(&app.db.url, &id, |s| s["trigger"] == "milestone").await;
    assert!(m["eventId"].as_i64().unwrap() >= done, "{m}");
    assert_eq!(m["tasks"][0]["status"], "completed");
    // Pausing saves at once.
    let (s, _) = app
        .post_as(
            &claude,
            &format!("/mcp/session/{id}/status"),
            &json!({"action": "pause"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let p = wait_for(&app.db.url, &id, |s| s["session"]["status"] == "paused").await;
    assert_eq!(p["trigger"], "milestone");
    // The interval: a change, then an auto snapshot within one interval.
    app.post_as(
        &claude,
        &format!("/mcp/session/{id}/status"),
        &json!({"action": "resume"}),
    )
    .await;
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/context/set",
            &json!({"path": "plan.step", "value": 3}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let auto = wait_for(&app.db.url, &id, |s| s["trigger"] == "auto").await;
    assert_eq!(auto["context"]["doc"]["plan"]["step"], 3);
}

/// The state without what differs between two saves of the same session: when and why.
fn comparable(mut state: Value) -> Value {
    let o = state.as_object_mut().unwrap();
    o.remove("at");
    o.remove("trigger");
    state
}

async fn after_kill_9_the_reloaded_session_equals_the_saved_one(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let (child, url) = start_hub(&db);
    let mut child = KillOnDrop(child);
    let http = client();
    let post = |token: &str, path: &str, body: Value| {
        let (http, url, token, path) =
            (http.clone(), url.clone(), token.to_owned(), path.to_owned());
        async move { rest(&http, &url, &token, &path, Some(&body)).await }
    };
    let (s, created) = post(
        "",
        "/mcp/session/create",
        json!({"name": "crash", "participants": ["claude", "gemini", "cursor"], "handshakeMode": "loose"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["sessionId"].as_str().unwrap().to_owned();
    let token = |ai: &str| created["tokens"][ai].as_str().unwrap().to_owned();
    let (claude, gemini) = (token("claude"), token("gemini"));
    // Mid-work: context, messages read and acknowledged, a task DAG, locks held and queued,
    // a change, an open handshake.
    let (s, made) = post(
        &claude,
        "/mcp/collaborate/task",
        json!({"description": "parent", "subtasks": ["a", "b"], "assignedTo": "gemini"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{made}");
    let sub = made["tasks"][1]["id"].clone();
    let steps = [
        (
            &claude,
            "/mcp/context/set",
            json!({"path": "activeWork.status", "value": "refactoring"}),
        ),
        (
            &claude,
            "/mcp/context/append/activeWork.log",
            json!({"value": {"step": 1}}),
        ),
        (
            &gemini,
            "/mcp/messages/send",
            json!({"to": "claude", "body": "look", "requiresAck": true}),
        ),
        (&gemini, "/mcp/messages/send", json!({"body": "to all"})),
        (
            &gemini,
            "/mcp/collaborate/task/update",
            json!({"taskId": sub, "status": "in_progress"}),
        ),
        (
            &claude,
            "/mcp/collaborate/lock",
            json!({"resource": "/src/a.rs", "duration": 900}),
        ),
        (
            &gemini,
            "/mcp/collaborate/lock",
            json!({"resource": "/src/a.rs", "duration": 900, "wait": true}),
        ),
        (
            &gemini,
            "/mcp/collaborate/change",
            json!({"filePath": "/src/b.rs", "before": "x\n", "after": "y\n"}),
        ),
        (&claude, "/mcp/messages/ack", json!({"upTo": 3})),
        (
            &claude,
            "/mcp/collaborate/handshake",
            json!({"status": "work_complete", "changes": ["a"]}),
        ),
    ];
    for (who, path, body) in steps {
        let (s, b) = post(who, path, body).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
    }
    let (s, saved) = post(&claude, "/mcp/session/save", json!({})).await;
    assert_eq!(s, StatusCode::OK, "{saved}");
    let before = latest(&db.url, &id).expect("saved");
    child.0.kill().expect("SIGKILL");
    child.0.wait().unwrap();

    let (restarted, url) = start_hub(&db);
    let _restarted = KillOnDrop(restarted);
    let (s, again) = rest(&http, &url, &claude, "/mcp/session/save", Some(&json!({}))).await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(
        again["eventId"], saved["eventId"],
        "no event was lost or added"
    );
    let after = latest(&db.url, &id).unwrap();
    let (b, a) = (comparable(before), comparable(after));
    for key in b.as_object().unwrap().keys() {
        assert_eq!(b[key], a[key], "{key} differs after the reload");
    }
    assert_eq!(b, a);
}
