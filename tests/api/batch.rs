//! `batch`: several writes of one participant, in order, in one round trip; all or nothing.

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, assert_error, both_backends, spawn_app};

both_backends!(a_batch_commits_all_its_writes_or_none);

async fn a_batch_commits_all_its_writes_or_none(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = app.create_pair("batch").await;
    let last = |v: &Value| v["lastEventId"].as_i64().unwrap();
    let (_, before) = app.get_as(&claude, &format!("/mcp/session/{id}")).await;

    // In order, each seeing what the ones before it did: the append lands in the list the
    // first operation created.
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/batch",
            &json!({"operations": [
                {"op": "context_set", "args": {"path": "plan", "value": {"steps": []}}},
                {"op": "context_append", "args": {"path": "plan.steps", "value": "design"}},
                {"op": "context_sync", "args": {"updates": {"owner": "claude"}}},
                {"op": "memory", "args": {"action": "push", "kind": "file", "value": "/src/a.rs"}},
                {"op": "discovery_report", "args": {"finding": "cache is cold", "severity": "low"}},
                {"op": "status_report", "args": {"kind": "build", "status": "pass", "summary": "ok"}},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let ids: Vec<i64> = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["eventId"].as_i64().unwrap())
        .collect();
    let first = last(&before) + 1;
    assert_eq!(ids, (first..first + 6).collect::<Vec<_>>(), "{b}");
    let (_, plan) = app.get_as(&gemini, "/mcp/context/get/plan.steps").await;
    assert_eq!(plan["value"], json!(["design"]));
    let (_, owner) = app.get_as(&gemini, "/mcp/context/get/owner").await;
    assert_eq!(owner["value"], "claude");

    // One bad operation: the answer names it, and nothing of the batch is written.
    let (_, mid) = app.get_as(&claude, &format!("/mcp/session/{id}")).await;
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/batch",
            &json!({"operations": [
                {"op": "context_set", "args": {"path": "written", "value": 1}},
                {"op": "context_set", "args": {"path": "a..b", "value": 2}},
            ]}),
        )
        .await;
    let e = assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(e["field"], "operations[1].path", "{b}");
    let version = plan["version"].as_i64().unwrap();
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/batch",
            &json!({"operations": [
                {"op": "context_set", "args": {"path": "written", "value": 1}},
                {"op": "context_append", "args": {"path": "plan.steps", "value": "x", "expectedVersion": version - 1}},
            ]}),
        )
        .await;
    let e = assert_error(s, &b, StatusCode::CONFLICT, "version_conflict");
    assert!(
        e["message"].as_str().unwrap().starts_with("operations[1]"),
        "{e}"
    );
    let (_, after) = app.get_as(&claude, &format!("/mcp/session/{id}")).await;
    assert_eq!(last(&after), last(&mid), "no event from a failed batch");
    let (_, written) = app.get_as(&claude, "/mcp/context/get/written").await;
    assert_eq!(written["exists"], false, "{written}");

    // Messages too: a context write and the messages announcing it, or none of them.
    let (_, inbox) = app.get_as(&gemini, "/mcp/messages").await;
    let before_msgs = inbox["messages"].as_array().unwrap().len();
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/batch",
            &json!({"operations": [
                {"op": "context_set", "args": {"path": "release", "value": "1.2"}},
                {"op": "message_send", "args": {"to": "gemini", "body": "1.2 is set", "requiresAck": true}},
                {"op": "message_send", "args": {"body": "release notes next"}},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let r = &b["results"];
    assert!(
        r[0]["eventId"].is_i64() && r[1]["id"].is_i64() && r[1]["ackDeadline"].is_string(),
        "{b}"
    );
    assert_eq!(r[2]["thread"], r[2]["id"]);
    // A reply to a message of an earlier round trip joins its thread.
    let (s, b) = app
        .post_as(
            &gemini,
            "/mcp/batch",
            &json!({"operations": [{"op": "message_send", "args": {"to": "claude", "body": "ack soon", "replyTo": r[1]["id"]}}]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["results"][0]["thread"], r[1]["id"], "{b}");
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/batch",
            &json!({"operations": [
                {"op": "message_send", "args": {"body": "this must not go out"}},
                {"op": "context_set", "args": {"path": "", "value": 1}},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (_, inbox) = app.get_as(&gemini, "/mcp/messages").await;
    let bodies: Vec<&str> = inbox["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(bodies.len(), before_msgs + 3, "{bodies:?}");
    assert!(!bodies.contains(&"this must not go out"));
    // The send budget counts every message of a batch: more than a burst is refused whole.
    let flood: Vec<Value> = (0..31)
        .map(|i| json!({"op": "message_send", "args": {"body": format!("flood {i}")}}))
        .collect();
    let (s, b) = app
        .post_as(&claude, "/mcp/batch", &json!({"operations": flood}))
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");

    // Shapes: unknown op, a read, another session, empty, too many.
    for (body, field) in [
        (
            json!({"operations": [{"op": "events_ack", "args": {}}]}),
            "operations[0].op",
        ),
        (
            json!({"operations": [{"op": "memory", "args": {"action": "recent"}}]}),
            "operations[0].action",
        ),
        (
            json!({"operations": [{"op": "context_set", "args": {"path": "x", "value": 1, "sessionId": "00000000-0000-0000-0000-000000000000"}}]}),
            "operations[0].sessionId",
        ),
        (json!({"operations": []}), "operations"),
        (
            json!({"operations": vec![json!({"op": "context_set", "args": {"path": "x", "value": 1}}); 101]}),
            "operations",
        ),
    ] {
        let (s, b) = app.post_as(&claude, "/mcp/batch", &body).await;
        let e = assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
        assert_eq!(e["field"], field, "{b}");
    }
    // The session's rules hold inside a batch: a paused session refuses it whole.
    app.post_as(
        &claude,
        &format!("/mcp/session/{id}/status"),
        &json!({"action": "pause"}),
    )
    .await;
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/batch",
            &json!({"operations": [{"op": "context_set", "args": {"path": "y", "value": 1}}]}),
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "session_paused");
}

both_backends!(task_writes_join_a_batch);

/// Tasks in a batch: created, announced and noted in one commit; a failure anywhere writes
/// none of it; completing a task in a batch releases its locks in the same transaction.
async fn task_writes_join_a_batch(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = app.create_pair("batch-tasks").await;
    let path = format!("/mcp/session/{id}");
    let session = async |app: &crate::helpers::TestApp| app.get_as(&claude, &path).await.1;
    let before = session(&app).await["lastEventId"].as_i64().unwrap();
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/batch",
            &json!({"operations": [
                {"op": "task", "args": {"action": "create", "description": "split the cache", "assignedTo": "gemini", "subtasks": ["read", "write"]}},
                {"op": "message_send", "args": {"to": "gemini", "body": "the cache split is yours"}},
                {"op": "context_set", "args": {"path": "focus", "value": "cache"}},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let results = b["results"].as_array().unwrap();
    let tasks = results[0]["tasks"].as_array().expect("the task result");
    assert_eq!(tasks.len(), 3, "{b}");
    let parent = tasks[0]["id"].as_i64().unwrap();
    assert_eq!(parent, before + 1, "a new task's id is its event's: {b}");
    assert!(tasks[1..].iter().all(|t| t["parent"] == parent), "{b}");
    // The message and the context write come right after the task's events, in order.
    let message = results[1]["id"].as_i64().unwrap();
    assert!(message > tasks[2]["id"].as_i64().unwrap(), "{b}");
    assert_eq!(results[2]["eventId"].as_i64().unwrap(), message + 1, "{b}");
    let after = session(&app).await["lastEventId"].as_i64().unwrap();
    assert_eq!(after, message + 1, "nothing else was written");
    let (_, listed) = app
        .get_as(&gemini, "/mcp/collaborate/tasks?assignedTo=gemini")
        .await;
    assert!(
        listed["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == parent && t["description"] == "split the cache"),
        "{listed}"
    );

    // A bad task operation fails the batch, names its place, and nothing is written.
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/batch",
            &json!({"operations": [
                {"op": "task", "args": {"action": "create", "description": "never"}},
                {"op": "context_set", "args": {"path": "never", "value": 1}},
                {"op": "task", "args": {"action": "update", "taskId": 999_999, "status": "completed"}},
            ]}),
        )
        .await;
    assert!(s.is_client_error(), "{s} {b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("operations[2]"),
        "{b}"
    );
    assert_eq!(session(&app).await["lastEventId"].as_i64().unwrap(), after);
    let (_, all) = app.get_as(&claude, "/mcp/collaborate/tasks").await;
    assert!(!all.to_string().contains("never"), "{all}");
    let (_, never) = app.get_as(&claude, "/mcp/context/get/never").await;
    assert_eq!(never["exists"], false, "{never}");
    // Reading is not a write.
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/batch",
            &json!({"operations": [{"op": "task", "args": {"action": "list"}}]}),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");

    // Completing a task in a batch releases the locks taken for it, in the same commit.
    let write = tasks[2]["id"].as_i64().unwrap();
    for step in ["in_progress"] {
        let (s, b) = app
            .post_as(
                &gemini,
                "/mcp/collaborate/task/update",
                &json!({"taskId": write, "status": step}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let (s, lock) = app
        .post_as(
            &gemini,
            "/mcp/collaborate/lock",
            &json!({"resource": "/src/cache.rs", "taskId": write}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{lock}");
    let (_, locks) = app.get_as(&claude, "/mcp/collaborate/locks").await;
    assert!(locks.to_string().contains("/src/cache.rs"), "{locks}");
    let (s, b) = app
        .post_as(
            &gemini,
            "/mcp/batch",
            &json!({"operations": [
                {"op": "task", "args": {"action": "update", "taskId": write, "status": "completed"}},
                {"op": "status_report", "args": {"kind": "test", "status": "pass", "summary": "cache tests green"}},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["results"][0]["tasks"][0]["status"], "completed", "{b}");
    let (_, locks) = app.get_as(&claude, "/mcp/collaborate/locks").await;
    assert!(
        !locks.to_string().contains("/src/cache.rs"),
        "the task's lock went with it: {locks}"
    );
    app.stop().await;
}

both_backends!(a_batch_takes_free_locks_or_nothing);

/// Locks in a batch: taken, announced and noted in one commit; a lock someone holds fails the
/// batch (it does not queue); a batch that fails after reserving a lock gives it back.
async fn a_batch_takes_free_locks_or_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, claude, gemini) = app.create_pair("batch-locks").await;
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/batch",
            &json!({"operations": [
                {"op": "lock", "args": {"action": "acquire", "resource": "/src/a.rs", "duration": "5m"}},
                {"op": "context_set", "args": {"path": "owners.a", "value": "claude"}},
                {"op": "message_send", "args": {"to": "gemini", "body": "taking a.rs"}},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let lock = &b["results"][0];
    assert_eq!(lock["state"], "held", "{b}");
    assert_eq!(lock["holder"], "claude", "{b}");
    assert!(lock["expiresAt"].is_string(), "{b}");
    let (_, locks) = app.get_as(&gemini, "/mcp/collaborate/locks").await;
    assert!(locks.to_string().contains("/src/a.rs"), "{locks}");

    // Held by claude: gemini's batch fails on it, naming it, and writes nothing.
    let (s, b) = app
        .post_as(
            &gemini,
            "/mcp/batch",
            &json!({"operations": [
                {"op": "context_set", "args": {"path": "owners.b", "value": "gemini"}},
                {"op": "lock", "args": {"action": "acquire", "resource": "/src/a.rs"}},
            ]}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("operations[1]"),
        "{b}"
    );
    let (_, owner) = app.get_as(&gemini, "/mcp/context/get/owners.b").await;
    assert_eq!(owner["exists"], false, "{owner}");
    // A batch does not queue.
    let (s, b) = app
        .post_as(
            &gemini,
            "/mcp/batch",
            &json!({"operations": [{"op": "lock", "args": {"action": "acquire", "resource": "/src/a.rs", "wait": true}}]}),
        )
        .await;
    let e = assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(e["field"], "operations[0].wait", "{b}");
    let (s, b) = app
        .post_as(
            &gemini,
            "/mcp/batch",
            &json!({"operations": [{"op": "lock", "args": {"action": "list"}}]}),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");

    // A batch that fails after its lock was reserved gives the lock back.
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/batch",
            &json!({"operations": [
                {"op": "lock", "args": {"action": "acquire", "resource": "/src/b.rs"}},
                {"op": "context_set", "args": {"path": "a..b", "value": 1}},
            ]}),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    let (_, locks) = app.get_as(&gemini, "/mcp/collaborate/locks").await;
    assert!(!locks.to_string().contains("/src/b.rs"), "{locks}");
    let (s, b) = app
        .post_as(
            &gemini,
            "/mcp/collaborate/lock",
            &json!({"resource": "/src/b.rs"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "free again: {b}");
    assert_eq!(b["state"], "held", "{b}");
    app.stop().await;
}
