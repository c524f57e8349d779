//! A write sent again with its request key (`x-collab-hub-request`) is applied once: what a
//! hub relies on when it runs a write it passed on again, where the project is served next,
//! after the hub serving it died before answering (`mcp::resend::resent_with_key`,
//! `http::hop`). Each write a hub may run again with its key is
//! here, on the surface it is sent on: the second send is answered `already_applied` (409, or
//! an MCP tool error) and the session's log does not grow. Some of them queue their write in a
//! later turn than the one they are handled in (a reply's parent lookup, a lock table's
//! answer, an acknowledgement's lookup): the key must reach the write all the same.

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_error, both_backends, client, spawn_app};
use crate::mcp_protocol::Mcp;

both_backends!(
    every_write_sent_again_with_its_key_is_applied_once,
    a_tool_call_sent_again_with_its_key_is_applied_once,
    a_key_that_is_not_a_uuid_is_refused,
    one_key_sent_at_once_many_times_is_applied_once,
    a_read_of_messages_sent_again_gets_its_page_again,
    coordination_and_membership_writes_are_applied_once,
    a_create_or_join_sent_again_answers_new_tokens,
    a_join_sent_again_through_mcp_binds_with_a_new_token,
    a_leave_sent_again_through_mcp_unbinds,
    a_keyed_tool_call_is_answered_in_one_piece,
    a_create_or_join_resent_on_the_mcp_session_it_bound_answers_what_it_did,
    a_stateless_leave_sent_again_is_answered_already_applied,
);

const KEY: &str = "x-collab-hub-request";

/// POSTs `body` to `path` as `token` (the operator, on loopback, without one) with request key
/// `key`, as a hub passing it on sends it (`x-collab-hub-hop`): the first time as a first send
/// (no lookup), then as a resend (`x-collab-hub-resent`).
async fn post_keyed(
    app: &TestApp,
    token: Option<&str>,
    key: &str,
    path: &str,
    body: &Value,
    resent: bool,
) -> (StatusCode, Value) {
    let mut req = client().post(format!("{}{path}", app.address));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req = req
        .insert_header((KEY, key))
        .insert_header(("x-collab-hub-hop", "1"));
    if resent {
        req = req.insert_header(("x-collab-hub-resent", "1"));
    }
    let mut res = req.send_json(body).await.expect("an answer");
    let status = res.status();
    (status, res.json::<Value>().await.unwrap_or_default())
}

async fn last_event(app: &TestApp, session: &str) -> i64 {
    let (status, view) = app.get(&format!("/mcp/session/{session}")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    view["lastEventId"].as_i64().expect("lastEventId")
}

/// How many participants named `ai_id` the session lists (a join applied twice would list two).
async fn seats(app: &TestApp, session: &str, ai_id: &str) -> usize {
    let (status, view) = app.get(&format!("/mcp/session/{session}")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    view["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["aiId"] == ai_id)
        .count()
}

/// How many messages of `page` carry `body`.
fn copies(page: &Value, body: &str) -> usize {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["body"] == body)
        .count()
}

/// Sends the write twice with one key: the first is applied and answered, the second is
/// answered `already_applied` and changes nothing. Returns the first answer.
async fn twice(app: &TestApp, session: &str, token: &str, path: &str, body: Value) -> Value {
    let key = uuid::Uuid::new_v4().to_string();
    let before = last_event(app, session).await;
    let (status, first) = post_keyed(app, Some(token), &key, path, &body, false).await;
    assert_eq!(status, StatusCode::OK, "{path}: {first}");
    let applied = last_event(app, session).await;
    assert!(applied > before, "{path} wrote events: {first}");
    let (status, second) = post_keyed(app, Some(token), &key, path, &body, true).await;
    let err = assert_error(status, &second, StatusCode::CONFLICT, "already_applied");
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains(&before.saturating_add(1).to_string())),
        "{path}: the answer names the events written: {second}"
    );
    assert_eq!(
        last_event(app, session).await,
        applied,
        "{path}: sent again, nothing was written"
    );
    // What the lost answer said is in the events the write committed, which come with it;
    // except to one who left: its token no longer reads the session.
    let events = err["events"].as_array().cloned().unwrap_or_default();
    let left = path == "/mcp/session/leave";
    assert!(
        left == events.is_empty(),
        "{path}: the write's events: {second}"
    );
    assert!(
        events.iter().all(|e| e["id"]
            .as_i64()
            .is_some_and(|id| id > before && id <= applied)),
        "{path}: only the write's own events: {second}"
    );
    first
}

async fn every_write_sent_again_with_its_key_is_applied_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (session, claude, gemini) = app.create_pair("resend").await;

    let sent = twice(
        &app,
        &session,
        &claude,
        "/mcp/messages/send",
        json!({"to": "gemini", "body": "once", "priority": "important", "requiresAck": true}),
    )
    .await;
    // A reply: its parent is looked up before the write is queued.
    let reply = json!({"to": "claude", "body": "reply once", "replyTo": sent["id"]});
    twice(&app, &session, &gemini, "/mcp/messages/send", reply).await;
    let (status, page) = app
        .get_as(&gemini, "/mcp/messages?unreadOnly=false&limit=50")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(copies(&page, "once"), 1, "{page}");
    // An acknowledgement: its targets are looked up before the write.
    twice(
        &app,
        &session,
        &gemini,
        "/mcp/messages/ack",
        json!({"ids": [sent["id"]]}),
    )
    .await;

    twice(
        &app,
        &session,
        &claude,
        "/mcp/context/set",
        json!({"path": "plan", "value": {"step": 1}}),
    )
    .await;
    twice(
        &app,
        &session,
        &claude,
        "/mcp/context/append/notes",
        json!({"value": "one line"}),
    )
    .await;
    let (status, notes) = app.get_as(&claude, "/mcp/context/get/notes").await;
    assert_eq!(status, StatusCode::OK, "{notes}");
    assert_eq!(notes["value"], json!(["one line"]), "appended once");
    twice(
        &app,
        &session,
        &claude,
        "/mcp/context/delete/plan",
        json!({}),
    )
    .await;

    // A lock: the project's lock table answers before the write is queued.
    let held = twice(
        &app,
        &session,
        &claude,
        "/mcp/collaborate/lock",
        json!({"resource": "/src/once.rs", "duration": 60}),
    )
    .await;
    let lock_id = held["id"].clone();
    twice(
        &app,
        &session,
        &claude,
        "/mcp/collaborate/lock/renew",
        json!({"lockId": lock_id, "duration": 120}),
    )
    .await;
    twice(
        &app,
        &session,
        &claude,
        "/mcp/collaborate/lock/release",
        json!({"lockId": lock_id}),
    )
    .await;
    // Coordination: a status report (a context write), a focus period, tasks (the session's
    // task coordinator plans before the write), a change and a suggestion.
    let report = json!({"kind": "test", "status": "pass", "summary": "green"});
    twice(&app, &session, &claude, "/mcp/collaborate/status", report).await;
    let focus = json!({"task": "reading", "estimatedDuration": "1h"});
    twice(
        &app,
        &session,
        &claude,
        "/mcp/collaborate/checkpoint",
        focus,
    )
    .await;
    twice(
        &app,
        &session,
        &claude,
        "/mcp/collaborate/checkpoint/end",
        json!({}),
    )
    .await;
    let task = json!({"description": "split the module", "assignedTo": "claude"});
    let made = twice(&app, &session, &claude, "/mcp/collaborate/task", task).await;
    let update = json!({"taskId": made["tasks"][0]["id"], "status": "in_progress"});
    twice(
        &app,
        &session,
        &claude,
        "/mcp/collaborate/task/update",
        update,
    )
    .await;
    let (status, tasks) = app.get_as(&claude, "/mcp/collaborate/tasks").await;
    assert_eq!(status, StatusCode::OK, "{tasks}");
    assert_eq!(
        tasks["tasks"].as_array().map(Vec::len),
        Some(1),
        "created once: {tasks}"
    );
    let task = json!({"description": "hand it on", "assignedTo": "claude"});
    let made = twice(&app, &session, &claude, "/mcp/collaborate/task", task).await;
    let id = made["tasks"][0]["id"].clone();
    let assign = json!({"taskId": id, "assignedTo": "gemini"});
    twice(
        &app,
        &session,
        &claude,
        "/mcp/collaborate/task/assign",
        assign,
    )
    .await;
    // Handed off to nobody: pending, for anyone to claim.
    let handoff = json!({"taskId": id, "context": {"notes": "step 2"}});
    twice(
        &app,
        &session,
        &gemini,
        "/mcp/collaborate/task/handoff",
        handoff,
    )
    .await;
    let claim = json!({"taskId": id});
    twice(
        &app,
        &session,
        &claude,
        "/mcp/collaborate/task/claim",
        claim,
    )
    .await;
    // Roles: the navigator asks to drive, the driver declines.
    let ask = json!({"action": "request", "role": "driver", "reason": "I know this part"});
    let asked = twice(&app, &session, &gemini, "/mcp/collaborate/role", ask).await;
    let answer = json!({"action": "respond", "requestId": asked["eventId"], "grant": false});
    twice(&app, &session, &claude, "/mcp/collaborate/role", answer).await;
    let change = json!({"filePath": "/src/once.rs", "before": "a\n", "after": "b\n"});
    let changed = twice(&app, &session, &claude, "/mcp/collaborate/change", change).await;
    // A dispute over it, settled by the navigator (the genome's rule).
    let dispute = json!({"on": {"kind": "change", "id": changed["id"]}, "reason": "keep a"});
    let raised = twice(&app, &session, &gemini, "/mcp/collaborate/dispute", dispute).await;
    let settle = json!({"disputeId": raised["disputeId"], "outcome": "accept"});
    twice(
        &app,
        &session,
        &gemini,
        "/mcp/collaborate/dispute/resolve",
        settle,
    )
    .await;
    let suggestion = json!({"filePath": "/src/once.rs", "before": "b\n", "after": "c\n"});
    let made = twice(
        &app,
        &session,
        &gemini,
        "/mcp/collaborate/suggestion",
        suggestion,
    )
    .await;
    let resolve = json!({"id": made["id"], "accept": true});
    twice(
        &app,
        &session,
        &claude,
        "/mcp/collaborate/suggestion/resolve",
        resolve,
    )
    .await;

    // A note in the session's memory, a discovery, and a batch (all its operations, or none).
    let memory = json!({"kind": "file", "value": "/src/once.rs"});
    twice(&app, &session, &claude, "/mcp/context/memory/push", memory).await;
    let clear = json!({"kind": "file"});
    twice(&app, &session, &claude, "/mcp/context/memory/clear", clear).await;
    let notes = json!({"observations": ["reads the tests first"]});
    twice(&app, &session, &claude, "/mcp/context/notes/claude", notes).await;
    let finding = json!({"finding": "the cache is never invalidated", "severity": "high"});
    twice(&app, &session, &claude, "/mcp/context/discovery", finding).await;
    let batch = json!({"operations": [
        {"op": "context_set", "args": {"path": "batched", "value": 1}},
        {"op": "message_send", "args": {"to": "gemini", "body": "batched once"}},
    ]});
    twice(&app, &session, &claude, "/mcp/batch", batch).await;

    let (status, locks) = app.get_as(&claude, "/mcp/collaborate/locks").await;
    assert_eq!(status, StatusCode::OK, "{locks}");
    assert!(
        locks.to_string().find("/src/once.rs").is_none(),
        "released, and not taken again: {locks}"
    );
}

/// The MCP surface carries the key to the tool's command too, grouped tools included.
async fn a_tool_call_sent_again_with_its_key_is_applied_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (session, claude, _) = app.create_pair("resend-mcp").await;
    let mut agent = Mcp::new(&app);
    agent.token = Some(claude);
    agent.initialize("2025-11-25").await;
    for (name, arguments) in [
        ("message_send", json!({"to": "gemini", "body": "once"})),
        (
            "lock",
            json!({"action": "acquire", "resource": "/src/mcp.rs"}),
        ),
    ] {
        let key = uuid::Uuid::new_v4().to_string();
        let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                          "params": {"name": name, "arguments": arguments}});
        let before = last_event(&app, &session).await;
        let (status, _, first) = agent
            .raw(call.to_string().into_bytes(), &[(KEY, &key)])
            .await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert_ne!(first["result"]["isError"], true, "{name}: {first}");
        let applied = last_event(&app, &session).await;
        assert!(applied > before, "{name} wrote: {first}");
        let (status, _, second) = agent
            .raw(call.to_string().into_bytes(), &[(KEY, &key)])
            .await;
        assert_eq!(status, StatusCode::OK, "{second}");
        assert_eq!(second["result"]["isError"], true, "{name}: {second}");
        assert!(
            second.to_string().contains("already_applied"),
            "{name}: {second}"
        );
        assert_eq!(last_event(&app, &session).await, applied, "{name}");
        // What the lost answer said comes with it: here the lock's id and fencing token.
        let answered = &second["result"]["structuredContent"]["error"]["events"][0];
        let done = &first["result"]["structuredContent"];
        if name == "lock" {
            assert_eq!(answered["payload"]["lockId"], done["id"], "{second}");
            assert_eq!(answered["payload"]["token"], done["token"], "{second}");
        } else {
            assert_eq!(answered["id"], done["id"], "{second}");
        }
    }
}

async fn a_key_that_is_not_a_uuid_is_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (session, claude, _) = app.create_pair("resend-bad-key").await;
    let before = last_event(&app, &session).await;
    let (status, body) = post_keyed(
        &app,
        Some(&claude),
        "not-a-uuid",
        "/mcp/messages/send",
        &json!({"to": "gemini", "body": "never"}),
        false,
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(last_event(&app, &session).await, before, "nothing written");
}

/// A hub's first send of its own key is not looked up (nothing can be on record yet): the write
/// records the key, and a second write of it fails alone. Eight sends of one key at once, as
/// a hub's first sends: they may share one batch (on PostgreSQL one statement, which the
/// duplicate key fails; the batch then runs one write at a time). Exactly one is applied.
async fn one_key_sent_at_once_many_times_is_applied_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (session, claude, gemini) = app.create_pair("resend-at-once").await;
    for (path, body) in [
        (
            "/mcp/messages/send",
            json!({"to": "gemini", "body": "at once"}),
        ),
        ("/mcp/context/set", json!({"path": "once", "value": 1})),
    ] {
        let key = uuid::Uuid::new_v4().to_string();
        let before = last_event(&app, &session).await;
        let sends = (0..8).map(|_| {
            let (url, token, key, body) = (
                format!("{}{path}", app.address),
                claude.clone(),
                key.clone(),
                body.clone(),
            );
            async move {
                let mut res = client()
                    .post(url)
                    .bearer_auth(token)
                    .insert_header((KEY, key))
                    .insert_header(("x-collab-hub-hop", "1"))
                    .send_json(&body)
                    .await
                    .expect("an answer");
                let status = res.status();
                (status, res.json::<Value>().await.unwrap_or_default())
            }
        });
        let answers = futures::future::join_all(sends).await;
        let applied = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
        assert_eq!(applied, 1, "{path}: {answers:?}");
        for (status, body) in answers.iter().filter(|(s, _)| *s != StatusCode::OK) {
            assert_error(*status, body, StatusCode::CONFLICT, "already_applied");
        }
        assert_eq!(
            last_event(&app, &session).await,
            before + 1,
            "{path}: one event"
        );
    }
    let (status, page) = app.get_as(&gemini, "/mcp/messages?limit=50").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(copies(&page, "at once"), 1, "{page}");
}

/// Reading messages marks them read, so a page lost with its owner would leave them read and
/// never seen. Sent again with its key, the read gets the page it first answered, the messages
/// it marked read shown unread as they were; a read without the key sees them read.
async fn a_read_of_messages_sent_again_gets_its_page_again(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, claude, gemini) = app.create_pair("resend-read").await;
    for body in ["first", "second"] {
        let sent = json!({"to": "gemini", "body": body});
        let (status, answer) = app.post_as(&claude, "/mcp/messages/send", &sent).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let get = |key: Option<String>| {
        let (address, token) = (app.address.clone(), gemini.clone());
        async move {
            let mut req = client()
                .get(format!("{address}/mcp/messages?unreadOnly=true"))
                .bearer_auth(token);
            if let Some(key) = key {
                req = req.insert_header((KEY, key));
            }
            let mut res = req.send().await.expect("an answer");
            assert_eq!(res.status(), StatusCode::OK);
            res.json::<Value>().await.expect("a page")
        }
    };
    let summary = |page: &Value| -> Vec<(Value, Value)> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["body"].clone(), m["read"].clone()))
            .collect()
    };
    let key = uuid::Uuid::new_v4().to_string();
    let first = get(Some(key.clone())).await;
    let unread = vec![
        (json!("first"), json!(false)),
        (json!("second"), json!(false)),
    ];
    assert_eq!(summary(&first), unread, "{first}");
    let again = get(Some(key)).await;
    assert_eq!(summary(&again), unread, "the same page: {again}");
    assert_eq!(again["unread"], first["unread"], "{again}");
    let fresh = get(None).await;
    assert_eq!(summary(&fresh), vec![], "read by the first: {fresh}");

    // The same through the MCP tool.
    let (status, _) = app
        .post_as(
            &claude,
            "/mcp/messages/send",
            &json!({"to": "gemini", "body": "third"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut agent = Mcp::new(&app);
    agent.token = Some(gemini.clone());
    agent.initialize("2025-11-25").await;
    let key = uuid::Uuid::new_v4().to_string();
    let call = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                      "params": {"name": "messages_read", "arguments": {"unreadOnly": true}}});
    let mut pages = Vec::new();
    for _ in 0..2 {
        let (status, _, answer) = agent
            .raw(call.to_string().into_bytes(), &[(KEY, &key)])
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        pages.push(answer["result"]["structuredContent"].clone());
    }
    assert_eq!(
        summary(&pages[0]),
        vec![(json!("third"), json!(false))],
        "{}",
        pages[0]
    );
    assert_eq!(summary(&pages[1]), summary(&pages[0]), "{}", pages[1]);
}

/// The writes answered 503 when the hub serving them died, until stop 31: a context sync, a role assignment, a
/// handshake step, a vote, a session's status, leaving.
async fn coordination_and_membership_writes_are_applied_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // A majority settles disputes here, so that a vote is a write of its own.
    let (status, created) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "resend-more", "participants": ["claude", "gemini", "codex"],
                    "genome": {"conflictResolution": "consensus"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let session = created["sessionId"].as_str().unwrap().to_owned();
    let token = |who: &str| created["tokens"][who].as_str().unwrap().to_owned();
    let (claude, gemini, codex) = (token("claude"), token("gemini"), token("codex"));

    // The events an `already_applied` carries are those its caller sees: a directed message
    // is not shown to a third participant who sends its key.
    let key = uuid::Uuid::new_v4().to_string();
    let private = json!({"to": "gemini", "body": "between us"});
    let send = "/mcp/messages/send";
    let (status, sent) = post_keyed(&app, Some(&claude), &key, send, &private, false).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let (status, seen) = post_keyed(&app, Some(&codex), &key, send, &private, true).await;
    let err = assert_error(status, &seen, StatusCode::CONFLICT, "already_applied");
    assert!(err.get("events").is_none(), "{seen}");
    assert!(!seen.to_string().contains("between us"), "{seen}");
    let (status, seen) = post_keyed(&app, Some(&gemini), &key, send, &private, true).await;
    let err = assert_error(status, &seen, StatusCode::CONFLICT, "already_applied");
    assert_eq!(err["events"][0]["id"], sent["id"], "{seen}");
    // Nor to a participant of another session.
    let (_, stranger, _) = app.create_pair("resend-stranger").await;
    let (status, seen) = post_keyed(&app, Some(&stranger), &key, send, &private, true).await;
    let err = assert_error(status, &seen, StatusCode::CONFLICT, "already_applied");
    assert!(err.get("events").is_none(), "{seen}");
    // A batch of many events: at most 20 come back, and past 16 KiB only their ids and kinds.
    let big = "x".repeat(4096);
    let operations: Vec<Value> = (0..25)
        .map(|i| json!({"op": "message_send", "args": {"to": "gemini", "body": format!("{i}{big}")}}))
        .collect();
    let batch = json!({"operations": operations});
    let key = uuid::Uuid::new_v4().to_string();
    let (status, done) = post_keyed(&app, Some(&claude), &key, "/mcp/batch", &batch, false).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (status, again) = post_keyed(&app, Some(&claude), &key, "/mcp/batch", &batch, true).await;
    let err = assert_error(status, &again, StatusCode::CONFLICT, "already_applied");
    let events = err["events"].as_array().unwrap();
    assert_eq!(events.len(), 20, "{err}");
    assert!(events[0]["payload"]["body"].is_string(), "{}", events[0]);
    assert_eq!(events[19]["payloadOmitted"], true, "{}", events[19]);
    assert!(again.to_string().len() < 24 * 1024, "bounded");

    let sync = json!({"updates": {"projectUnderstanding": {"pattern": "actors"}}});
    twice(&app, &session, &claude, "/mcp/context/sync", sync).await;
    let assign = json!({"action": "assign", "roles": {"codex": "observer"}, "reason": "watch"});
    twice(&app, &session, &claude, "/mcp/collaborate/role", assign).await;
    let (status, view) = app.get(&format!("/mcp/session/{session}")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert!(
        view["participants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["aiId"] == "codex" && p["role"] == "observer"),
        "{view}"
    );
    let change = json!({"filePath": "/src/vote.rs", "before": "a\n", "after": "b\n"});
    let (status, changed) = app
        .post_as(&claude, "/mcp/collaborate/change", &change)
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let dispute = json!({"on": {"kind": "change", "id": changed["id"]}, "reason": "keep a"});
    let (status, raised) = app
        .post_as(&gemini, "/mcp/collaborate/dispute", &dispute)
        .await;
    assert_eq!(status, StatusCode::OK, "{raised}");
    let vote = json!({"disputeId": raised["disputeId"], "vote": "accept"});
    let one = twice(
        &app,
        &session,
        &claude,
        "/mcp/collaborate/dispute/vote",
        vote,
    )
    .await;
    assert_eq!(one["needed"], 2, "one vote so far, counted once: {one}");

    let work =
        json!({"step": "work_complete", "changes": ["split the module"], "needsReview": true});
    let done = twice(&app, &session, &claude, "/mcp/collaborate/handshake", work).await;
    let review = json!({"step": "review_start", "acknowledgeId": done["eventId"]});
    let started = twice(
        &app,
        &session,
        &gemini,
        "/mcp/collaborate/handshake",
        review,
    )
    .await;
    assert_eq!(started["handshake"]["state"], "reviewing", "{started}");

    let status_route = format!("/mcp/session/{session}/status");
    let paused = twice(
        &app,
        &session,
        &claude,
        &status_route,
        json!({"action": "pause"}),
    )
    .await;
    assert_eq!(paused["status"], "paused", "{paused}");
    twice(
        &app,
        &session,
        &claude,
        &status_route,
        json!({"action": "resume"}),
    )
    .await;
    let left = twice(
        &app,
        &session,
        &codex,
        "/mcp/session/leave",
        json!({"participant": "codex"}),
    )
    .await;
    let codex_left = left["participants"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["aiId"] == "codex" && p["leftAt"].is_string());
    assert!(codex_left, "{left}");
}

/// A create or a join answers tokens, which `already_applied` would lose: sent again after it
/// was applied, it answers new ones for the participants it made (the first ones, which nobody
/// received, stop working), and writes nothing else.
async fn a_create_or_join_sent_again_answers_new_tokens(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = uuid::Uuid::new_v4().to_string();
    let create = json!({"name": "resend-create", "participants": ["claude", "gemini"]});
    let (status, first) = post_keyed(&app, None, &key, "/mcp/session/create", &create, false).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let session = first["sessionId"].as_str().unwrap().to_owned();
    let made = last_event(&app, &session).await;
    let view = format!("/mcp/session/{session}");
    let works = |token: &Value| {
        let (app, view, token) = (&app, &view, token.as_str().unwrap_or("none").to_owned());
        async move { app.get_as(&token, view).await.0 }
    };
    let (status, again) = post_keyed(&app, None, &key, "/mcp/session/create", &create, true).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_eq!(
        again["sessionId"], first["sessionId"],
        "the same session: {again}"
    );
    assert_eq!(
        last_event(&app, &session).await,
        made + 2,
        "one token_reissued event per participant, nothing else"
    );
    for who in ["claude", "gemini"] {
        let (old, new) = (&first["tokens"][who], &again["tokens"][who]);
        assert!(new.is_string() && new != old, "{who}: {again}");
        assert_eq!(
            works(old).await,
            StatusCode::UNAUTHORIZED,
            "{who}'s first token"
        );
        assert_eq!(works(new).await, StatusCode::OK, "{who}'s new token");
    }
    let (status, list) = app.get("/mcp/session/list?text=resend-create").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["sessions"].as_array().map(Vec::len), Some(1), "{list}");

    // A join, invited by claude.
    let claude = again["tokens"]["claude"].as_str().unwrap().to_owned();
    let key = uuid::Uuid::new_v4().to_string();
    let join = json!({"sessionId": session, "participant": "codex", "role": "navigator"});
    let (status, joined) =
        post_keyed(&app, Some(&claude), &key, "/mcp/session/join", &join, false).await;
    assert_eq!(status, StatusCode::CREATED, "{joined}");
    let at = last_event(&app, &session).await;
    let (status, rejoined) =
        post_keyed(&app, Some(&claude), &key, "/mcp/session/join", &join, true).await;
    assert_eq!(status, StatusCode::CREATED, "{rejoined}");
    assert_eq!(
        rejoined["eventId"], joined["eventId"],
        "the join's answer: {rejoined}"
    );
    assert_eq!(rejoined["participant"]["role"], "navigator", "{rejoined}");
    assert!(rejoined["onboarding"].is_object(), "{rejoined}");
    assert_eq!(
        last_event(&app, &session).await,
        at + 1,
        "a token_reissued event"
    );
    let (old, new) = (&joined["token"], &rejoined["token"]);
    assert!(new.is_string() && new != old, "{rejoined}");
    assert_eq!(
        works(old).await,
        StatusCode::UNAUTHORIZED,
        "the first token"
    );
    assert_eq!(works(new).await, StatusCode::OK, "the new token");
    // Outside the budget: refused as the first send would be.
    let (status, refused) = post_keyed(
        &app,
        Some(&claude),
        &key,
        "/mcp/session/join",
        &json!({"sessionId": session, "participant": "codex", "role": "navigator", "maxTokens": 0}),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(seats(&app, &session, "codex").await, 1, "joined once");

    // Sent again once more (that answer lost too): the token answered last was never used.
    let (status, third) =
        post_keyed(&app, Some(&claude), &key, "/mcp/session/join", &join, true).await;
    assert_eq!(status, StatusCode::CREATED, "{third}");
    assert_eq!(works(&rejoined["token"]).await, StatusCode::UNAUTHORIZED);
    assert_eq!(works(&third["token"]).await, StatusCode::OK);
    // Only for the one who sent it, in its session, while the token it answered is unused:
    // otherwise only `already_applied`, and nothing changes.
    let (status, gemini_sends) = post_keyed(
        &app,
        again["tokens"]["gemini"].as_str(),
        &key,
        "/mcp/session/join",
        &join,
        true,
    )
    .await;
    assert_error(
        status,
        &gemini_sends,
        StatusCode::CONFLICT,
        "already_applied",
    );
    let (elsewhere, other_claude, _) = app.create_pair("resend-elsewhere").await;
    let there = json!({"sessionId": elsewhere, "participant": "codex", "role": "navigator"});
    let (status, refused) = post_keyed(
        &app,
        Some(&other_claude),
        &key,
        "/mcp/session/join",
        &there,
        true,
    )
    .await;
    assert_error(status, &refused, StatusCode::CONFLICT, "already_applied");
    let reissue = json!({"participant": "codex"});
    let (status, reissued) = app
        .post(&format!("/mcp/session/{session}/token"), &reissue)
        .await;
    assert_eq!(status, StatusCode::OK, "{reissued}");
    let (status, refused) =
        post_keyed(&app, Some(&claude), &key, "/mcp/session/join", &join, true).await;
    assert_error(status, &refused, StatusCode::CONFLICT, "already_applied");
    assert_eq!(
        works(&reissued["token"]).await,
        StatusCode::OK,
        "left as it was"
    );

    // A key on record for another request is not a join: answered as applied, nothing new.
    let (status, sent) = post_keyed(
        &app,
        Some(&claude),
        &key,
        "/mcp/messages/send",
        &json!({"to": "gemini", "body": "x"}),
        true,
    )
    .await;
    assert_error(status, &sent, StatusCode::CONFLICT, "already_applied");
    let other = json!({"sessionId": session, "participant": "cursor", "role": "navigator"});
    let (status, refused) =
        post_keyed(&app, Some(&claude), &key, "/mcp/session/join", &other, true).await;
    assert_error(status, &refused, StatusCode::CONFLICT, "already_applied");
    let (status, refused) =
        post_keyed(&app, None, &key, "/mcp/session/create", &create, true).await;
    assert_error(status, &refused, StatusCode::CONFLICT, "already_applied");
}

/// Through MCP: the join binds the MCP session that sent it (the operator's, here). Sent again (by a second MCP
/// session, as a hub running it again would after the first answer was lost), it binds that one with the
/// new token; the first binding's token no longer works.
async fn a_join_sent_again_through_mcp_binds_with_a_new_token(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (session, _, _) = app.create_pair("resend-mcp-join").await;
    let key = uuid::Uuid::new_v4().to_string();
    let call = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                      "params": {"name": "session_join", "arguments":
                          {"sessionId": session, "participant": "codex", "role": "navigator"}}});
    let mut agents = Vec::new();
    for _ in 0..2 {
        // The operator's client, on loopback.
        let mut agent = Mcp::new(&app);
        agent.initialize("2025-11-25").await;
        let (status, _, answer) = agent
            .raw(call.to_string().into_bytes(), &[(KEY, &key)])
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_ne!(answer["result"]["isError"], true, "{answer}");
        assert!(
            !answer.to_string().contains("token\\\":"),
            "no token in a tool result"
        );
        agents.push(agent);
    }
    let (err, me) = agents[1].tool("whoami", json!({})).await;
    assert!(!err, "{me}");
    assert_eq!(me["aiId"], "codex", "{me}");
    let (err, stale) = agents[0].tool("whoami", json!({})).await;
    assert!(err, "the first binding's token was replaced: {stale}");
    assert_eq!(seats(&app, &session, "codex").await, 1, "joined once");
}

/// A leave sent again after it was applied is answered `already_applied`; the MCP session
/// that sent it is unbound all the same, not left acting as a participant who is gone.
async fn a_leave_sent_again_through_mcp_unbinds(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (session, _, _) = app.create_pair("resend-mcp-leave").await;
    let tool = |id: i64, name: &str, arguments: Value| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": name, "arguments": arguments}})
        .to_string()
        .into_bytes()
    };
    // Two operator clients in gemini's seat (as a first send and the client it came back to).
    let mut agents = Vec::new();
    for _ in 0..2 {
        let mut agent = Mcp::new(&app);
        agent.initialize("2025-11-25").await;
        let seat = json!({"sessionId": session, "participant": "gemini"});
        let (err, joined) = agent.tool("session_join", seat).await;
        assert!(!err, "{joined}");
        agents.push(agent);
    }
    let key = uuid::Uuid::new_v4().to_string();
    let mut answers = Vec::new();
    for agent in &agents {
        let leave = tool(6, "session_leave", json!({}));
        let (status, _, answer) = agent.raw(leave, &[(KEY, &key)]).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answers.push(answer);
    }
    assert_ne!(answers[0]["result"]["isError"], true, "{}", answers[0]);
    assert!(
        answers[1].to_string().contains("already_applied"),
        "{}",
        answers[1]
    );
    for agent in &agents {
        let other = json!({"sessionId": session, "participant": "cursor", "role": "observer"});
        let (status, _, answer) = agent.raw(tool(7, "session_join", other), &[]).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let text = answer.to_string();
        assert!(!text.contains("already_bound"), "unbound: {text}");
    }
}

/// A tool call whose client asks for progress is answered as an event stream, whose head goes
/// out at once; a hub that passed that head on could not run the call again if the hub serving
/// it died. A keyed call (a write a hub may run again) is answered in one piece instead.
async fn a_keyed_tool_call_is_answered_in_one_piece(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, claude, _) = app.create_pair("resend-one-piece").await;
    let mut agent = Mcp::new(&app);
    agent.token = Some(claude);
    agent.initialize("2025-11-25").await;
    let call = |id: i64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "message_send", "_meta": {"progressToken": "p"},
                          "arguments": {"to": "gemini", "body": format!("send {id}")}}})
        .to_string()
        .into_bytes()
    };
    // Not keyed: a stream (not one JSON document).
    let (status, _, streamed) = agent.raw(call(1), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(streamed, Value::Null, "an event stream: {streamed}");
    let key = uuid::Uuid::new_v4().to_string();
    let (status, _, whole) = agent.raw(call(2), &[(KEY, &key)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(whole["id"], 2, "one JSON answer: {whole}");
    assert_ne!(whole["result"]["isError"], true, "{whole}");
}

/// The serving hub stores a create's or a join's binding of the MCP session before it answers;
/// if it dies in between, the hub that passed it on runs the call again on the same MCP
/// session, now bound. It is
/// answered with what it did (not `already_bound`), and the seat's token stays as it is.
async fn a_create_or_join_resent_on_the_mcp_session_it_bound_answers_what_it_did(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (session, _, _) = app.create_pair("resend-bound").await;
    let join = json!({"sessionId": session, "participant": "codex", "role": "navigator"});
    let create = json!({"name": "resend-bound-create", "participants": ["cursor"]});
    for (name, arguments) in [("session_join", join), ("session_create", create)] {
        let mut agent = Mcp::new(&app);
        agent.initialize("2025-11-25").await;
        let key = uuid::Uuid::new_v4().to_string();
        let call = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                          "params": {"name": name, "arguments": arguments}});
        let mut answers = Vec::new();
        for _ in 0..2 {
            let (status, _, answer) = agent
                .raw(call.to_string().into_bytes(), &[(KEY, &key)])
                .await;
            assert_eq!(status, StatusCode::OK, "{answer}");
            assert_ne!(answer["result"]["isError"], true, "{name}: {answer}");
            answers.push(answer["result"]["structuredContent"].clone());
        }
        assert_eq!(
            answers[1]["sessionId"], answers[0]["sessionId"],
            "{answers:?}"
        );
        let (err, me) = agent.tool("whoami", json!({})).await;
        assert!(!err, "{name}: the seat's token still works: {me}");
    }
    let (status, list) = app.get("/mcp/session/list?text=resend-bound-create").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["sessions"].as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(seats(&app, &session, "codex").await, 1, "joined once");
}

/// On the stateless transport (2026-07-28) the bearer token is checked before the tool runs,
/// and a leave's token goes with the seat: sent again after it was applied, the leave is
/// answered the tool's `already_applied` failure, not 401.
async fn a_stateless_leave_sent_again_is_answered_already_applied(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, _, gemini) = app.create_pair("resend-stateless-leave").await;
    let key = uuid::Uuid::new_v4().to_string();
    let leave = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "session_leave", "arguments": {},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                  "io.modelcontextprotocol/clientCapabilities": {}}}});
    let send = |key: Option<&str>| {
        let mut req = client()
            .post(format!("{}/mcp", app.address))
            .bearer_auth(&gemini)
            .insert_header(("accept", "application/json, text/event-stream"))
            .insert_header(("mcp-protocol-version", "2026-07-28"))
            .insert_header(("mcp-method", "tools/call"))
            .insert_header(("mcp-name", "session_leave"));
        if let Some(key) = key {
            req = req.insert_header((KEY, key.to_owned()));
        }
        let leave = leave.clone();
        async move {
            let mut res = req.send_json(&leave).await.expect("an answer");
            (res.status(), res.json::<Value>().await.unwrap_or_default())
        }
    };
    let (status, left) = send(Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{left}");
    assert_ne!(left["result"]["isError"], true, "{left}");
    let (status, again) = send(Some(&key)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["result"]["isError"], true, "{again}");
    assert_eq!(
        again["result"]["structuredContent"]["error"]["code"], "already_applied",
        "{again}"
    );
    // Without the key it is what it is: a token that no longer works.
    let (status, refused) = send(None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
}
