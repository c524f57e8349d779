//! Messages, checkpoints and status reports at the wire level (REST and MCP tools): who sees
//! what, receipts, threads, acknowledgements with deadlines, rate limits, holds, and what
//! survives a restart.

use std::time::Duration;

use actix_web::http::StatusCode;
use collab_hub::Settings;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_error, both_backends, spawn_app, start_on};
use crate::mcp_protocol::Mcp;

both_backends!(
    directed_messages_reach_only_their_recipient,
    acknowledgements_receipts_and_deadlines,
    bad_messages_change_nothing,
    sends_are_rate_limited,
    checkpoints_hold_non_critical_events,
    status_reports_alert_and_recover,
    deadlines_and_checkpoints_survive_a_restart,
    delivered_read_and_acknowledged_are_three_receipts,
    unread_state_is_kept_on_write_and_survives_a_restart,
);

/// A session with claude (driver), gemini and cursor; returns (id, tokens by name).
async fn trio(app: &TestApp) -> (String, Value) {
    let (status, body) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "trio", "participants": ["claude", "gemini", "cursor"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["sessionId"].as_str().unwrap().to_owned(),
        body["tokens"].clone(),
    )
}

fn tok(tokens: &Value, who: &str) -> String {
    tokens[who].as_str().unwrap().to_owned()
}

async fn send(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, sent) = app.post_as(token, "/mcp/messages/send", &body).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    sent
}

async fn read(app: &TestApp, token: &str, query: &str) -> Value {
    let (status, page) = app.get_as(token, &format!("/mcp/messages?{query}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

async fn mcp_as(app: &TestApp, token: &str) -> Mcp {
    let mut m = Mcp::new(app);
    m.token = Some(token.to_owned());
    m.initialize("2025-11-25").await;
    m
}

/// Kinds and ids of the events `m`'s participant sees after `after`.
async fn poll(m: &Mcp, after: i64) -> Value {
    let (err, page) = m
        .tool("events_poll", json!({"after": after, "limit": 200}))
        .await;
    assert!(!err, "{page}");
    page
}

fn ids_of(page: &Value, kind: &str) -> Vec<i64> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

/// The first event of `kind` after `after` that `m` sees, waiting up to 8 s (`null`: none).
async fn wait_for_event(m: &Mcp, after: i64, kind: &str) -> Value {
    for _ in 0..80 {
        let page = poll(m, after).await;
        if let Some(e) = page["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == kind)
        {
            return e.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Value::Null
}

async fn last_event_id(app: &TestApp, id: &str) -> i64 {
    let (_, s) = app.get(&format!("/mcp/session/{id}")).await;
    s["lastEventId"].as_i64().expect("lastEventId")
}

async fn directed_messages_reach_only_their_recipient(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, tokens) = trio(&app).await;
    let (claude, gemini, cursor) = (
        tok(&tokens, "claude"),
        tok(&tokens, "gemini"),
        tok(&tokens, "cursor"),
    );
    let direct = send(
        &app,
        &claude,
        json!({"to": "gemini", "body": "review auth.ts please"}),
    )
    .await;
    let all = send(
        &app,
        &claude,
        json!({"body": {"note": "lunch at noon"}, "priority": "important"}),
    )
    .await;
    let (d, b) = (direct["id"].as_i64().unwrap(), all["id"].as_i64().unwrap());
    assert_eq!(direct["thread"], d, "a first message starts its thread");

    // The event log as each participant sees it.
    let g = mcp_as(&app, &gemini).await;
    let c = mcp_as(&app, &cursor).await;
    assert_eq!(ids_of(&poll(&g, 0).await, "message_sent"), vec![d, b]);
    assert_eq!(ids_of(&poll(&c, 0).await, "message_sent"), vec![b]);

    // messages_read: visibility, unread counts, receipts.
    let page = read(&app, &cursor, "unreadOnly=true").await;
    assert_eq!(page["unread"], 1, "{page}");
    let seen: Vec<i64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(seen, vec![b]);
    let page = read(&app, &gemini, "").await;
    assert_eq!(page["unread"], 2, "{page}");
    assert_eq!(page["messages"][0]["body"], "review auth.ts please");
    assert_eq!(
        page["messages"][0]["read"], false,
        "first read: not read before"
    );
    let again = read(&app, &gemini, "unreadOnly=true").await;
    assert_eq!(
        (
            again["unread"].as_i64(),
            again["messages"].as_array().unwrap().len()
        ),
        (Some(0), 0),
        "{again}"
    );
    let mine = read(&app, &claude, "").await;
    let directed = mine["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == d)
        .unwrap();
    assert_eq!(directed["readBy"], json!(["gemini"]), "{mine}");
    assert_eq!(mine["unread"], 0, "own messages are never unread");

    // Threads: gemini answers the directed message; cursor cannot answer what it cannot see.
    let reply = send(
        &app,
        &gemini,
        json!({"to": "claude", "body": "on it", "replyTo": d}),
    )
    .await;
    assert_eq!(reply["thread"], d);
    let (status, body) = app
        .post_as(
            &cursor,
            "/mcp/messages/send",
            &json!({"body": "me too", "replyTo": d}),
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_field");
    let thread = read(&app, &claude, &format!("thread={d}")).await;
    assert_eq!(thread["messages"].as_array().unwrap().len(), 2, "{thread}");

    // The same through the tools.
    let (err, sent) = c
        .tool("message_send", json!({"to": "claude", "body": "ping"}))
        .await;
    assert!(!err, "{sent}");
    let a = mcp_as(&app, &claude).await;
    let (err, page) = a.tool("messages_read", json!({"unreadOnly": true})).await;
    assert!(!err, "{page}");
    // Reading the thread above marked gemini's reply read: only cursor's ping is new.
    assert_eq!(page["unread"], 1, "{page}");
    assert_eq!(page["messages"][0]["body"], "ping");
}

async fn acknowledgements_receipts_and_deadlines(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, tokens) = trio(&app).await;
    let (claude, gemini, cursor) = (
        tok(&tokens, "claude"),
        tok(&tokens, "gemini"),
        tok(&tokens, "cursor"),
    );
    let sent = send(
        &app,
        &claude,
        json!({"body": "freeze main", "requiresAck": true, "ackWithinSecs": 1}),
    )
    .await;
    let id = sent["id"].as_i64().unwrap();
    assert!(sent["ackDeadline"].is_string(), "{sent}");

    // gemini acknowledges; claude is told (a directed event only claude and gemini see).
    let (status, acked) = app
        .post_as(&gemini, "/mcp/messages/ack", &json!({"ids": [id]}))
        .await;
    assert_eq!(
        (status, &acked["acked"]),
        (StatusCode::OK, &json!([id])),
        "{acked}"
    );
    let (_, again) = app
        .post_as(&gemini, "/mcp/messages/ack", &json!({"upTo": id}))
        .await;
    assert_eq!(
        again["acked"],
        json!([]),
        "acknowledging twice changes nothing"
    );
    let a = mcp_as(&app, &claude).await;
    let c = mcp_as(&app, &cursor).await;
    assert_eq!(ids_of(&poll(&a, id).await, "message_acked").len(), 1);
    assert!(ids_of(&poll(&c, id).await, "message_acked").is_empty());

    // cursor stays silent past the deadline: claude gets an alert naming cursor.
    let alert = wait_for_event(&a, id, "message_ack_overdue").await;
    assert_eq!(
        alert["payload"]["notAcknowledgedBy"],
        json!(["cursor"]),
        "{alert}"
    );
    assert_eq!(alert["to"], "claude");
    assert!(
        ids_of(&poll(&c, id).await, "message_ack_overdue").is_empty(),
        "the alert is the sender's"
    );

    // Receipts as the sender sees them.
    let mine = read(&app, &claude, "").await;
    let m = &mine["messages"][0];
    assert_eq!(
        (m["readBy"].clone(), m["ackedBy"].clone()),
        (json!(["gemini"]), json!(["gemini"])),
        "{mine}"
    );

    // Through the tool: cursor acknowledges late, by upTo.
    let (err, late) = c.tool("message_ack", json!({"upTo": id})).await;
    assert!(!err, "{late}");
    assert_eq!(late["acked"], json!([id]));
}

async fn bad_messages_change_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, tokens) = trio(&app).await;
    let claude = tok(&tokens, "claude");
    let gemini = tok(&tokens, "gemini");
    let before = last_event_id(&app, &id).await;
    let cases = [
        ("/mcp/messages/send", json!({"body": ""}), "invalid_field"),
        ("/mcp/messages/send", json!({"body": null}), "invalid_field"),
        (
            "/mcp/messages/send",
            json!({"to": "nobody", "body": "hi"}),
            "invalid_field",
        ),
        (
            "/mcp/messages/send",
            json!({"to": "claude", "body": "hi"}),
            "invalid_field",
        ),
        (
            "/mcp/messages/send",
            json!({"body": "hi", "priority": "urgent"}),
            "invalid_field",
        ),
        (
            "/mcp/messages/send",
            json!({"body": "hi", "replyTo": 999}),
            "invalid_field",
        ),
        (
            "/mcp/messages/send",
            json!({"body": "hi", "ackWithinSecs": 5}),
            "invalid_field",
        ),
        (
            "/mcp/messages/send",
            json!({"body": "x".repeat(70 * 1024)}),
            "invalid_field",
        ),
        (
            "/mcp/messages/send",
            json!({"body": "hi", "aiId": "gemini"}),
            "forbidden",
        ),
        (
            "/mcp/messages/ack",
            json!({"ids": [12345]}),
            "invalid_field",
        ),
        (
            "/mcp/messages/ack",
            json!({"ids": [1], "upTo": 3}),
            "invalid_field",
        ),
        ("/mcp/messages/ack", json!({}), "invalid_field"),
        (
            "/mcp/collaborate/checkpoint",
            json!({"task": "x", "estimatedDuration": "5 weeks"}),
            "invalid_field",
        ),
        (
            "/mcp/collaborate/checkpoint",
            json!({"task": "", "estimatedDuration": "5s"}),
            "invalid_field",
        ),
        (
            "/mcp/collaborate/checkpoint/end",
            json!({}),
            "no_checkpoint",
        ),
        (
            "/mcp/collaborate/status",
            json!({"kind": "deploy", "status": "fail", "summary": "x"}),
            "invalid_field",
        ),
        (
            "/mcp/collaborate/status",
            json!({"kind": "test", "status": "fail", "summary": " "}),
            "invalid_field",
        ),
    ];
    for (path, body, code) in cases {
        let (status, answer) = app.post_as(&claude, path, &body).await;
        assert!(status.is_client_error(), "{path} {body}: {status} {answer}");
        assert_eq!(answer["error"]["code"], code, "{path} {body}: {answer}");
    }
    // Acknowledging your own message is refused too.
    let own = send(&app, &gemini, json!({"body": "mine"})).await;
    let (status, answer) = app
        .post_as(&gemini, "/mcp/messages/ack", &json!({"ids": [own["id"]]}))
        .await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(
        last_event_id(&app, &id).await,
        before + 1,
        "only the one good send was written"
    );
    let page = read(&app, &claude, "").await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1, "{page}");
    // Query errors name the parameter.
    let (status, answer) = app.get_as(&claude, "/mcp/messages?limit=0").await;
    assert_error(status, &answer, StatusCode::BAD_REQUEST, "invalid_field");
}

async fn sends_are_rate_limited(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, tokens) = trio(&app).await;
    let claude = tok(&tokens, "claude");
    let before = last_event_id(&app, &id).await;
    let (mut ok, mut limited) = (0, 0);
    for n in 0..80 {
        let (status, answer) = app
            .post_as(
                &claude,
                "/mcp/messages/send",
                &json!({"body": format!("spam {n}")}),
            )
            .await;
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(answer["error"]["code"], "rate_limited", "{answer}");
                assert!(
                    answer["error"]["retryAfterSecs"].as_u64().is_some(),
                    "{answer}"
                );
                limited += 1;
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    assert!(
        limited > 0,
        "80 sends in a burst must hit the limit (ok {ok})"
    );
    assert_eq!(
        last_event_id(&app, &id).await,
        before + ok,
        "refused sends wrote nothing"
    );
    // Other participants have their own budget.
    send(&app, &tok(&tokens, "gemini"), json!({"body": "still fine"})).await;
}

async fn checkpoints_hold_non_critical_events(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, tokens) = trio(&app).await;
    let (claude, cursor) = (tok(&tokens, "claude"), tok(&tokens, "cursor"));
    let c = mcp_as(&app, &cursor).await;
    let start = poll(&c, 0).await["lastEventId"].as_i64().unwrap();
    let (err, cp) = c
        .tool(
            "checkpoint",
            json!({"action": "begin", "task": "big refactor", "estimatedDuration": "60s"}),
        )
        .await;
    assert!(!err, "{cp}");
    assert_eq!(cp["holding"], true);
    let (err, twice) = c
        .tool(
            "checkpoint",
            json!({"action": "begin", "task": "another", "estimatedDuration": 5}),
        )
        .await;
    assert!(
        err && twice.as_str().unwrap().contains("checkpoint_open"),
        "{twice}"
    );

    let routine = send(&app, &claude, json!({"body": "fyi: renamed a file"})).await["id"]
        .as_i64()
        .unwrap();
    let critical = send(
        &app,
        &claude,
        json!({"body": "tests broken on main", "priority": "critical"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let held = poll(&c, start).await;
    assert_eq!(held["held"], true, "{held}");
    assert_eq!(
        ids_of(&held, "message_sent"),
        vec![critical],
        "only the critical one passes: {held}"
    );
    // Acknowledging during the hold does not skip the held events.
    let (_, acked) = c.tool("events_ack", json!({"upTo": critical})).await;
    assert!(acked["ackedEventId"].as_i64().unwrap() < routine, "{acked}");

    // The checkpoint ends: everything follows, in order.
    let (err, _) = c.tool("checkpoint", json!({"action": "end"})).await;
    assert!(!err);
    let after = poll(&c, start).await;
    assert!(after.get("held").is_none(), "{after}");
    assert_eq!(ids_of(&after, "message_sent"), vec![routine, critical]);
    let kinds: Vec<&str> = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"checkpoint_begun"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"checkpoint_ended"), "{kinds:?}");

    // An interruptible checkpoint holds nothing; an overrun one ends by itself and says so.
    let (_, soft) = c
        .tool("checkpoint", json!({"action": "begin", "task": "reading", "estimatedDuration": 1, "interruptible": true}))
        .await;
    assert_eq!(soft["holding"], false, "{soft}");
    let begun = soft["eventId"].as_i64().unwrap();
    let ended = wait_for_event(&c, begun, "checkpoint_ended").await;
    assert_eq!(ended["payload"]["reason"], "overran", "{ended}");

    // The concept's REST shape, by the operator for a participant.
    let (status, body) = app
        .post(
            "/mcp/collaborate/checkpoint",
            &json!({"sessionId": soft_session(&app, &cursor).await, "ai": "cursor", "task": "large_refactoring", "estimatedDuration": "30s", "interruptible": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["holding"], true);
}

async fn soft_session(app: &TestApp, token: &str) -> String {
    let m = mcp_as(app, token).await;
    let (_, me) = m.tool("whoami", json!({})).await;
    me["sessionId"].as_str().unwrap().to_owned()
}

async fn status_reports_alert_and_recover(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, tokens) = trio(&app).await;
    let (claude, gemini) = (tok(&tokens, "claude"), tok(&tokens, "gemini"));
    let g = mcp_as(&app, &gemini).await;
    // A CI job reports with the operator's access and the session id.
    let (status, body) = app
        .post(
            "/mcp/collaborate/status",
            &json!({"sessionId": id, "kind": "test", "status": "fail", "summary": "3 failed in auth.spec.ts", "details": {"failed": 3}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let failed = body["eventId"].as_i64().unwrap();
    let page = poll(&g, failed - 1).await;
    assert_eq!(page["events"][0]["priority"], "critical", "{page}");
    assert_eq!(page["events"][0]["kind"], "status_reported");
    // Critical: on top of gemini's next tool result until acknowledged.
    let (_, raw) = g
        .call(7, "tools/call", json!({"name": "whoami", "arguments": {}}))
        .await;
    let text = raw["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("3 failed in auth.spec.ts"), "{raw}");

    // A critical message acknowledged with message_ack stops leading the results too.
    let alarm = send(
        &app,
        &claude,
        json!({"to": "gemini", "body": "stop pushing", "priority": "critical"}),
    )
    .await;
    let (_, raw) = g
        .call(8, "tools/call", json!({"name": "whoami", "arguments": {}}))
        .await;
    assert!(
        raw["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("stop pushing"),
        "{raw}"
    );
    let (err, _) = g.tool("message_ack", json!({"ids": [alarm["id"]]})).await;
    assert!(!err);
    let (_, raw) = g
        .call(9, "tools/call", json!({"name": "whoami", "arguments": {}}))
        .await;
    let text = raw["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        !text.contains("stop pushing") && text.contains("3 failed"),
        "{raw}"
    );

    let (err, got) = g
        .tool("context_get", json!({"path": "monitoring.test"}))
        .await;
    assert!(!err);
    assert_eq!(got["value"]["status"], "fail", "{got}");
    assert_eq!(got["value"]["details"], json!({"failed": 3}));

    // Recovery through the tool: important, marked as a recovery.
    let a = mcp_as(&app, &claude).await;
    let (err, w) = a
        .tool(
            "status_report",
            json!({"kind": "test", "status": "pass", "summary": "all green"}),
        )
        .await;
    assert!(!err, "{w}");
    let page = poll(&g, alarm["id"].as_i64().unwrap()).await;
    let e = &page["events"][0];
    assert_eq!(
        (e["priority"].as_str(), e["payload"]["recovered"].as_bool()),
        (Some("important"), Some(true)),
        "{page}"
    );
    // Another pass is routine.
    let (_, w) = a
        .tool(
            "status_report",
            json!({"kind": "test", "status": "pass", "summary": "still green"}),
        )
        .await;
    let page = poll(&g, w["eventId"].as_i64().unwrap() - 1).await;
    assert_eq!(page["events"][0]["priority"], "routine", "{page}");
    let (_, got) = g
        .tool("context_get", json!({"path": "monitoring.test.summary"}))
        .await;
    assert_eq!(got["value"], "still green");
}

async fn deadlines_and_checkpoints_survive_a_restart(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, tokens) = trio(&app).await;
    let (claude, cursor) = (tok(&tokens, "claude"), tok(&tokens, "cursor"));
    let sent = send(
        &app,
        &claude,
        json!({"to": "cursor", "body": "ack me", "requiresAck": true, "ackWithinSecs": 2}),
    )
    .await;
    let msg = sent["id"].as_i64().unwrap();
    let (status, cp) = app
        .post_as(
            &cursor,
            "/mcp/collaborate/checkpoint",
            &json!({"task": "migration", "estimatedDuration": "10m"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cp}");
    let db = app.stop().await;
    let app = start_on(db, Settings::for_database("unused")).await;

    // The checkpoint still holds: a routine message waits, a critical one passes.
    let routine = send(&app, &claude, json!({"body": "after restart"})).await["id"]
        .as_i64()
        .unwrap();
    let c = mcp_as(&app, &cursor).await;
    let page = poll(&c, msg).await;
    assert_eq!(page["held"], true, "{page}");
    assert!(!ids_of(&page, "message_sent").contains(&routine), "{page}");

    // The deadline set before the restart still fires.
    let a = mcp_as(&app, &claude).await;
    let overdue = wait_for_event(&a, msg, "message_ack_overdue").await;
    assert!(!overdue.is_null(), "no overdue alert after the restart");
    assert!(last_event_id(&app, &id).await > routine);
}

/// A message handed to the recipient's event stream is delivered, not read: the model may not
/// have seen it (stock MCP clients do not show notifications). Returned by messages_read it is
/// read; acknowledged only when the recipient says so. The sender sees all three.
async fn delivered_read_and_acknowledged_are_three_receipts(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, tokens) = trio(&app).await;
    let (claude, gemini) = (tok(&tokens, "claude"), tok(&tokens, "gemini"));
    let mut stream = Mcp::new(&app);
    stream.token = Some(gemini.clone());
    stream.initialize("2025-11-25").await;
    let session = stream.session.clone().unwrap();
    let sent = async {
        let (s, b) = app
            .post_as(
                &claude,
                "/mcp/messages/send",
                &json!({"to": "gemini", "body": "on the wire", "requiresAck": true}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    };
    assert!(
        crate::coordination::stream_shows(&app, (&session, Some(&gemini)), "on the wire", sent)
            .await,
        "the message reaches gemini's stream"
    );
    let receipts = || async {
        let (_, page) = app.get_as(&claude, "/mcp/messages").await;
        page["messages"][0].clone()
    };
    let mut m = receipts().await;
    for _ in 0..50 {
        if m["deliveredTo"] == json!(["gemini"]) {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        m = receipts().await;
    }
    assert_eq!(m["deliveredTo"], json!(["gemini"]), "{m}");
    assert_eq!(m["readBy"], json!([]), "delivered is not read: {m}");
    // Still unread for gemini; reading it is the second receipt, acknowledging the third.
    let (_, unread) = app.get_as(&gemini, "/mcp/messages?unreadOnly=true").await;
    assert_eq!(unread["messages"][0]["body"], "on the wire", "{unread}");
    let m = receipts().await;
    assert_eq!(
        (&m["readBy"], &m["ackedBy"]),
        (&json!(["gemini"]), &json!([])),
        "{m}"
    );
    let (s, _) = app
        .post_as(&gemini, "/mcp/messages/ack", &json!({"ids": [m["id"]]}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let m = receipts().await;
    assert_eq!(m["ackedBy"], json!(["gemini"]), "{m}");
    assert_eq!(m["deliveredTo"], json!(["gemini"]));

    // A result delivers too: an events_poll page (cursor), a briefing (gemini, no stream now).
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/messages/send",
            &json!({"body": "to everyone"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let broadcast = b["id"].clone();
    let mut cursor = Mcp::new(&app);
    cursor.token = Some(tok(&tokens, "cursor"));
    cursor.initialize("2025-11-25").await;
    let (err, page) = cursor.tool("events_poll", json!({"after": 0})).await;
    assert!(!err, "{page}");
    let (s, _) = app
        .post_as(&gemini, "/mcp/session/resume", &json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, page) = app.get_as(&claude, "/mcp/messages").await;
    let m = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == broadcast)
        .unwrap()
        .clone();
    let mut delivered: Vec<String> = serde_json::from_value(m["deliveredTo"].clone()).unwrap();
    delivered.sort();
    assert_eq!(delivered, ["cursor", "gemini"], "{m}");
    assert_eq!(
        m["readBy"],
        json!([]),
        "polls and briefings do not read: {m}"
    );
}

both_backends!(every_tool_result_carries_what_waits_within_its_budget);

/// The digest on tool results (`domain::digest`): nothing when nothing waits; counts after the
/// answer; critical events in full ahead of it; never more than its byte budget, however many
/// events wait; gone once acknowledged.
async fn every_tool_result_carries_what_waits_within_its_budget(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (session, tokens) = trio(&app).await;
    let (claude, gemini) = (tok(&tokens, "claude"), tok(&tokens, "gemini"));
    let g = mcp_as(&app, &gemini).await;
    let content = async |g: &Mcp| -> Vec<String> {
        let (_, b) = g
            .call(7, "tools/call", json!({"name": "whoami", "arguments": {}}))
            .await;
        b["result"]["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap().to_owned())
            .collect()
    };
    // Catch up first: then nothing waits, and the answer comes alone.
    let (_, me) = app
        .get_as(&gemini, &format!("/mcp/session/{session}"))
        .await;
    let last = me["lastEventId"].as_i64().unwrap();
    let (err, b) = g.tool("events_ack", json!({"upTo": last})).await;
    assert!(!err, "{b}");
    let quiet = content(&g).await;
    assert_eq!(quiet.len(), 1, "{quiet:?}");

    // Routine and important news: counted after the answer.
    send(&app, &claude, json!({"body": "fyi", "priority": "routine"})).await;
    let important = send(
        &app,
        &claude,
        json!({"body": "look", "priority": "important"}),
    )
    .await;
    // Someone else's private message does not wait for gemini.
    send(&app, &claude, json!({"to": "cursor", "body": "psst"})).await;
    let news = content(&g).await;
    assert_eq!(news.len(), 2, "{news:?}");
    assert!(news[0].starts_with('{'), "the answer comes first: {news:?}");
    assert_eq!(
        news[1],
        format!(
            "Waiting after #{last}: 1 important (newest #{}), 1 routine (newest #{}).\n\
             events_poll to read; events_ack {{\"upTo\": {}}} to clear.",
            important["id"],
            last + 1,
            important["id"]
        )
    );

    // The same over REST, for clients' hooks.
    let (s, waiting) = app.get_as(&gemini, "/mcp/events/waiting").await;
    assert_eq!(s, StatusCode::OK, "{waiting}");
    assert_eq!(waiting["digest"], news[1].as_str(), "{waiting}");
    assert_eq!(waiting["important"]["count"], 1, "{waiting}");
    assert_eq!(waiting["routine"]["newest"], last + 1, "{waiting}");
    assert_eq!(waiting["cursor"], last, "{waiting}");
    let (s, b) = app.get_as(&gemini, "/mcp/events/waiting?maxBytes=5").await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");

    // A flood of critical messages: in full ahead of the answer, within the budget.
    let mut newest = 0;
    for i in 0..25 {
        let body = format!("stop #{i}: {}", "the build is red ".repeat(8));
        newest = send(&app, &claude, json!({"body": body, "priority": "critical"})).await["id"]
            .as_i64()
            .unwrap();
    }
    let flood = content(&g).await;
    assert!(
        flood[0].starts_with("⚠ 25 critical not acknowledged:"),
        "{flood:?}"
    );
    assert!(
        flood[0].len() <= collab_hub::domain::digest::DIGEST_BYTES,
        "{} bytes",
        flood[0].len()
    );
    assert!(flood[0].contains("more critical"), "{}", flood[0]);
    assert!(flood[1].starts_with('{'), "{flood:?}");
    // Acknowledged: nothing waits any more.
    let (_, waiting) = app
        .get_as(&gemini, "/mcp/events/waiting?maxBytes=200")
        .await;
    assert_eq!(
        waiting["critical"].as_array().unwrap().len(),
        25,
        "{waiting}"
    );
    let text = waiting["digest"].as_str().unwrap();
    assert!(
        text.starts_with("⚠ 25 critical") && text.len() <= 200,
        "{text}"
    );
    let (err, b) = g.tool("events_ack", json!({"upTo": newest})).await;
    assert!(!err, "{b}");
    assert_eq!(content(&g).await.len(), 1);
    let (_, waiting) = app.get_as(&gemini, "/mcp/events/waiting").await;
    assert!(waiting["digest"].is_null(), "{waiting}");
    // The operator names whose; without a name it is refused.
    let (s, b) = app
        .get(&format!("/mcp/events/waiting?sessionId={session}"))
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    let (s, b) = app
        .get(&format!(
            "/mcp/events/waiting?sessionId={session}&aiId=gemini"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    app.stop().await;
}

/// Ids of a message page, in order.
fn message_ids(page: &Value) -> Vec<i64> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

/// What each participant has not read is kept as messages are sent, read and acknowledged
/// (`message_unread`), not worked out from the whole history: directed messages count for
/// their recipient, broadcasts for everyone but the sender (one who joins later included),
/// reads and acknowledgements take them off, and the counts and unread pages are the same
/// after a restart.
async fn unread_state_is_kept_on_write_and_survives_a_restart(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, tokens) = trio(&app).await;
    let (claude, gemini, cursor) = (
        tok(&tokens, "claude"),
        tok(&tokens, "gemini"),
        tok(&tokens, "cursor"),
    );
    let mut to_gemini = Vec::new();
    for n in 0..3 {
        let sent = send(
            &app,
            &claude,
            json!({"to": "gemini", "body": format!("g{n}")}),
        )
        .await;
        to_gemini.push(sent["id"].as_i64().unwrap());
    }
    let b1 = send(&app, &claude, json!({"body": "everyone 1"})).await["id"]
        .as_i64()
        .unwrap();
    let to_cursor = send(&app, &claude, json!({"to": "cursor", "body": "c"})).await["id"]
        .as_i64()
        .unwrap();
    let b2 = send(&app, &gemini, json!({"body": "everyone 2"})).await["id"]
        .as_i64()
        .unwrap();
    let unread_of = async |app: &TestApp, token: &str| -> Value {
        read(app, token, "unreadOnly=true&limit=50").await
    };
    // Reading unread ones returns them oldest first (and marks them read); the count is what
    // waited before this read.
    let g = read(&app, &gemini, "unreadOnly=true&limit=2").await;
    assert_eq!(g["unread"], 4, "{g}");
    assert_eq!(message_ids(&g), to_gemini[..2].to_vec(), "{g}");
    assert_eq!(g["more"], true, "{g}");
    // Acknowledging reads too.
    let (status, acked) = app
        .post_as(&gemini, "/mcp/messages/ack", &json!({"ids": [b1]}))
        .await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    // The sender's own broadcast is not unread for it; claude has gemini's broadcast waiting.
    let c = read(&app, &claude, "unreadOnly=true&limit=1").await;
    assert_eq!(
        (c["unread"].clone(), message_ids(&c)),
        (json!(1), vec![b2]),
        "{c}"
    );

    // A participant who joins later finds the broadcasts so far unread.
    let (status, joined) = app
        .post(
            "/mcp/session/join",
            &json!({"sessionId": id, "participant": "codex", "role": "navigator"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{joined}");
    let codex = joined["token"].as_str().unwrap().to_owned();
    let b3 = send(&app, &cursor, json!({"body": "everyone 3"})).await["id"]
        .as_i64()
        .unwrap();

    // After a restart: the same counts and pages (reading nothing first: `limit=1` pages of
    // `since` the newest id are empty and mark nothing).
    let newest = b3;
    let counts = async |app: &TestApp| -> Vec<Value> {
        let mut out = Vec::new();
        for t in [&claude, &gemini, &cursor, &codex] {
            let page = read(app, t, &format!("since={newest}&limit=1")).await;
            assert!(page["messages"].as_array().unwrap().is_empty(), "{page}");
            out.push(page["unread"].clone());
        }
        out
    };
    let before = counts(&app).await;
    assert_eq!(before, vec![json!(1), json!(2), json!(3), json!(3)]);
    let db = app.stop().await;
    let app = start_on(db, Settings::for_database("unused")).await;
    assert_eq!(counts(&app).await, before);

    let g = unread_of(&app, &gemini).await;
    assert_eq!(message_ids(&g), vec![to_gemini[2], b3], "{g}");
    assert_eq!(g["more"], false, "{g}");
    let c = unread_of(&app, &cursor).await;
    assert_eq!(message_ids(&c), vec![b1, to_cursor, b2], "{c}");
    let x = unread_of(&app, &codex).await;
    assert_eq!(message_ids(&x), vec![b1, b2, b3], "{x}");
    // Read now: nothing waits, for anyone who read.
    for t in [&gemini, &cursor, &codex] {
        let page = unread_of(&app, t).await;
        assert_eq!(
            (page["unread"].clone(), message_ids(&page)),
            (json!(0), vec![]),
            "{page}"
        );
    }
    // What was read stays read for the sender's receipts too.
    let mine = read(&app, &claude, &format!("since={}&limit=1", b1 - 1)).await;
    let mut read_by: Vec<&str> = mine["messages"][0]["readBy"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    read_by.sort_unstable();
    assert_eq!(read_by, vec!["codex", "cursor", "gemini"], "{mine}");
    app.stop().await;
}
