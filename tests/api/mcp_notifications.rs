//! What stock MCP clients surface of the events meant for their participant
//! (docs/mcp-notifications.md): a stock Python SDK `ClientSession` gets log entries and inbox
//! resource updates; TypeScript SDK clients that take Claude Code channel notifications get
//! critical events as `notifications/claude/channel`, others do not. Plus the wire forms on a
//! raw GET stream.

use std::path::PathBuf;
use std::time::Duration;

use actix_web::http::StatusCode;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, both_backends, client, clients_dir, spawn_app};
use crate::mcp_sdk::{node_clients, python_clients, run_script};

both_backends!(
    stock_python_session_sees_logs_and_inbox_updates,
    channel_clients_get_critical_events_as_channel_notifications,
    raw_stream_carries_each_form_once,
    a_stream_carries_on_after_leaving_and_joining_again,
);

async fn stock_python_session_sees_logs_and_inbox_updates(backend: Backend) {
    let python = python_clients()
        .as_ref()
        .expect("Python SDK installs")
        .clone();
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = app.create_pair("py notifications").await;
    let script = clients_dir()
        .join("py_notifications.py")
        .display()
        .to_string();
    run_script(
        python,
        vec![script, app.address.clone(), id, claude, gemini],
    )
    .await;
}

async fn channel_clients_get_critical_events_as_channel_notifications(backend: Backend) {
    let dir = node_clients()
        .as_ref()
        .expect("TypeScript SDK installs")
        .clone();
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = app.create_pair("ts channel").await;
    let args = vec![
        dir.join("ts_channel.mjs").display().to_string(),
        app.address.clone(),
        id,
        claude,
        gemini,
    ];
    run_script(PathBuf::from("node"), args).await;
}

/// An MCP session of `token` on the raw wire (initialize params `init`): its id.
async fn initialize(app: &TestApp, token: &str, init: Value) -> (String, Value) {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init});
    let mut res = client()
        .post(format!("{}/mcp", app.address))
        .insert_header(("authorization", format!("Bearer {token}")))
        .insert_header(("accept", "application/json, text/event-stream"))
        .send_json(&body)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mcp = res
        .headers()
        .get("mcp-session-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let v: Value = res.json().await.unwrap();
    (mcp, v)
}

async fn rpc(app: &TestApp, token: &str, mcp: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": method, "params": params});
    let mut res = client()
        .post(format!("{}/mcp", app.address))
        .insert_header(("authorization", format!("Bearer {token}")))
        .insert_header(("mcp-session-id", mcp))
        .insert_header(("mcp-protocol-version", "2025-11-25"))
        .insert_header(("accept", "application/json"))
        .send_json(&body)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// Reads the GET stream of `mcp` until `until` holds for the JSON-RPC messages read so far
/// (or 10 s pass); returns them.
async fn read_stream(
    app: &TestApp,
    token: &str,
    mcp: &str,
    until: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let mut res = client()
        .get(format!("{}/mcp", app.address))
        .insert_header(("authorization", format!("Bearer {token}")))
        .insert_header(("mcp-session-id", mcp))
        .insert_header(("accept", "text/event-stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut text = String::new();
    let mut messages = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !until(&messages) {
        let chunk = tokio::time::timeout_at(deadline, res.next()).await;
        let Ok(Some(Ok(bytes))) = chunk else { break };
        text.push_str(&String::from_utf8_lossy(&bytes));
        messages = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect();
    }
    messages
}

/// One critical message to a client that set a level, subscribed to its inbox and declared the
/// channel capability: the event, one inbox update, one log entry, one channel notification;
/// and its own message: the event only.
async fn raw_stream_carries_each_form_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = app.create_pair("raw forms").await;
    let init = json!({"protocolVersion": "2025-11-25", "clientInfo": {"name": "raw", "version": "1"},
        "capabilities": {"experimental": {"claude/channel": {}}}});
    let (mcp, answer) = initialize(&app, &claude, init).await;
    let result = &answer["result"];
    assert_eq!(
        result["capabilities"]["experimental"]["claude/channel"],
        json!({}),
        "{answer}"
    );
    assert!(
        result["instructions"]
            .as_str()
            .unwrap()
            .contains("<channel>"),
        "{answer}"
    );
    let inbox = format!("collab://session/{id}/inbox");
    let r = rpc(
        &app,
        &claude,
        &mcp,
        "logging/setLevel",
        json!({"level": "notice"}),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");
    let r = rpc(
        &app,
        &claude,
        &mcp,
        "resources/subscribe",
        json!({"uri": inbox}),
    )
    .await;
    assert_eq!(r["result"], json!({}), "{r}");
    let whoami = json!({"name": "whoami", "arguments": {}});
    let me = rpc(&app, &claude, &mcp, "tools/call", whoami).await;
    let newest = me["result"]["structuredContent"]["lastEventId"]
        .as_i64()
        .unwrap();
    let ack = json!({"name": "events_ack", "arguments": {"upTo": newest}});
    rpc(&app, &claude, &mcp, "tools/call", ack).await;

    let (status, sent) = app
        .post_as(
            &gemini,
            "/mcp/messages/send",
            &json!({"to": "claude", "priority": "critical", "body": "main is red"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let critical = sent["id"].as_i64().unwrap();
    let (status, mine) = app
        .post_as(
            &claude,
            "/mcp/messages/send",
            &json!({"to": "gemini", "priority": "critical", "body": "looking"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    let own = mine["id"].as_i64().unwrap();
    let messages = read_stream(&app, &claude, &mcp, |m| {
        m.iter()
            .any(|m| m["method"] == "notifications/collab/event" && m["params"]["id"] == own)
    })
    .await;
    // Each event frame, then what followed it (the forms of that event), in stream order.
    let mut forms: Vec<(i64, Vec<&Value>)> = Vec::new();
    for m in &messages {
        if m["method"] == "notifications/collab/event" {
            forms.push((m["params"]["id"].as_i64().unwrap(), Vec::new()));
        } else if let Some((_, after)) = forms.last_mut() {
            after.push(m);
        }
    }
    let of = |id: i64| {
        let found: Vec<_> = forms.iter().filter(|(e, _)| *e == id).collect();
        assert_eq!(found.len(), 1, "event {id} once: {messages:?}");
        found[0].1.clone()
    };
    let methods = |f: &[&Value]| {
        f.iter()
            .map(|m| m["method"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };

    let gemini_forms = of(critical);
    assert_eq!(
        methods(&gemini_forms),
        vec![
            "notifications/resources/updated",
            "notifications/message",
            "notifications/claude/channel"
        ],
        "{messages:?}"
    );
    assert_eq!(gemini_forms[0]["params"], json!({"uri": inbox}));
    assert_eq!(
        gemini_forms[1]["params"],
        json!({"level": "alert", "logger": "collab-hub", "data": {"id": critical, "kind": "message_sent",
            "priority": "critical", "from": "gemini", "to": "claude", "gist": "main is red"}})
    );
    assert_eq!(
        gemini_forms[2]["params"],
        json!({"content": format!("#{critical} message_sent by gemini: main is red"),
            "meta": {"event_id": critical.to_string(), "kind": "message_sent", "from": "gemini"}})
    );
    // Its own message is not news to it: the event and nothing else.
    assert!(of(own).is_empty(), "{messages:?}");

    // The inbox resource holds what waits: gemini's message (and claude's own, which it may see).
    let r = rpc(&app, &claude, &mcp, "resources/read", json!({"uri": inbox})).await;
    let doc: Value =
        serde_json::from_str(r["result"]["contents"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(doc["ackedEventId"], newest, "{doc}");
    assert!(
        doc["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == critical && e["payload"]["body"] == "main is red"),
        "{doc}"
    );

    // Only a participant has an inbox: the operator (no token, on loopback) gets -32002.
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "op", "version": "1"}}});
    let res = client()
        .post(format!("{}/mcp", app.address))
        .insert_header(("accept", "application/json"))
        .send_json(&body)
        .await
        .unwrap();
    let op = res
        .headers()
        .get("mcp-session-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body =
        json!({"jsonrpc": "2.0", "id": 2, "method": "resources/read", "params": {"uri": inbox}});
    let mut res = client()
        .post(format!("{}/mcp", app.address))
        .insert_header(("mcp-session-id", op))
        .insert_header(("accept", "application/json"))
        .send_json(&body)
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32002, "{v}");
}

/// A client that leaves its session and joins again on the same MCP session (a seat taken on
/// loopback) keeps its GET stream: the events meant for it after the new join arrive on it,
/// and those it had already received are not sent again. (Leaving used to drop the stream's
/// sink: the stream stayed open, silent, until the client opened it again.)
async fn a_stream_carries_on_after_leaving_and_joining_again(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, _) = app.create_pair("leave and join").await;
    let mut seated = crate::mcp_protocol::Mcp::new(&app);
    seated.initialize("2025-11-25").await;
    let join = json!({"sessionId": id, "participant": "codex"});
    let (err, out) = seated.tool("session_join", join.clone()).await;
    assert!(!err, "{out}");
    // Opened as a reconnect is (`Last-Event-ID`): the cursor it asked for is older than what it
    // will have received by the time it joins again.
    let (err, out) = seated.tool("events_poll", json!({})).await;
    assert!(!err, "{out}");
    let newest = out["lastEventId"].as_i64().unwrap().to_string();
    let mut res = client()
        .get(format!("{}/mcp", app.address))
        .insert_header(("mcp-session-id", seated.session.clone().unwrap()))
        .insert_header(("last-event-id", newest))
        .insert_header(("accept", "text/event-stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<Value>();
    actix_web::rt::spawn(async move {
        let mut text = String::new();
        while let Some(Ok(bytes)) = res.next().await {
            text.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = text.find("\n\n") {
                let frame: String = text.drain(..end + 2).collect();
                for data in frame.lines().filter_map(|l| l.strip_prefix("data: ")) {
                    let Ok(message) = serde_json::from_str::<Value>(data) else {
                        continue;
                    };
                    if message["method"] == "notifications/collab/event" {
                        let _ = tx.send(message["params"].clone());
                    }
                }
            }
        }
    });
    // The bodies of the messages sent to codex that the stream carried, until `body` came.
    let mut carried = Vec::new();
    let mut wait_for = async |body: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let event = tokio::time::timeout_at(deadline, seen.recv())
                .await
                .unwrap_or_else(|_| panic!("{body:?} not on the stream; it carried {carried:?}"))
                .expect("the stream ended");
            if event["kind"] == "message_sent" {
                let text = event["payload"]["body"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                carried.push(text.clone());
                if text == body {
                    return carried.clone();
                }
            }
        }
    };
    let send = |body: &'static str| {
        let (app, claude) = (&app, &claude);
        async move {
            let message = json!({"to": "codex", "body": body});
            let (status, answer) = app.post_as(claude, "/mcp/messages/send", &message).await;
            assert_eq!(status, StatusCode::OK, "{answer}");
        }
    };
    send("before leaving").await;
    wait_for("before leaving").await;
    let (err, out) = seated.tool("session_leave", json!({})).await;
    assert!(!err, "{out}");
    let (err, out) = seated.tool("session_join", join).await;
    assert!(!err, "{out}");
    send("after joining again").await;
    let carried = wait_for("after joining again").await;
    assert_eq!(carried, ["before leaving", "after joining again"]);
    // Leaving again and joining as someone else: the stream carries the newcomer's events.
    let (err, out) = seated.tool("session_leave", json!({})).await;
    assert!(!err, "{out}");
    let join = json!({"sessionId": id, "participant": "devin"});
    let (err, out) = seated.tool("session_join", join).await;
    assert!(!err, "{out}");
    let message = json!({"to": "devin", "body": "to the newcomer"});
    let (status, answer) = app.post_as(&claude, "/mcp/messages/send", &message).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let carried = wait_for("to the newcomer").await;
    assert_eq!(
        carried,
        ["before leaving", "after joining again", "to the newcomer"]
    );
}
