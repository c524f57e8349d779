//! MCP Streamable HTTP at the wire level: status codes, JSON-RPC errors, sessions, batches,
//! identity, and hostile input. The SDK tests (mcp_sdk.rs) cover the happy paths.

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, both_backends, client, spawn_app};

both_backends!(
    wire_rules_hold,
    bad_input_gets_the_right_error_and_the_session_survives,
    batches_only_for_2025_03_26,
    bearer_token_binds_and_cannot_be_switched,
    a_cancelled_call_gets_no_answer,
);

pub struct Mcp {
    address: String,
    pub session: Option<String>,
    pub token: Option<String>,
}

impl Mcp {
    pub fn new(app: &TestApp) -> Self {
        Mcp::at(&app.address)
    }

    /// A client of the hub at `address` (another process, or one of several hubs).
    pub fn at(address: &str) -> Self {
        Mcp {
            address: address.to_owned(),
            session: None,
            token: None,
        }
    }

    pub async fn raw(
        &self,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Option<String>, Value) {
        let mut req = client()
            .post(format!("{}/mcp", self.address))
            .insert_header(("accept", "application/json, text/event-stream"))
            .insert_header(("content-type", "application/json"));
        if let Some(s) = &self.session {
            req = req.insert_header(("mcp-session-id", s.as_str()));
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let mut res = req.send_body(body).await.expect("request");
        let sid = res
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = res.body().limit(8 << 20).await.unwrap();
        (
            res.status(),
            sid,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn send(&self, message: Value) -> (StatusCode, Value) {
        let (s, _, v) = self.raw(message.to_string().into_bytes(), &[]).await;
        (s, v)
    }

    pub async fn initialize(&mut self, version: &str) -> Value {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
        let (status, sid, body) = self.raw(init.to_string().into_bytes(), &[]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let sid = sid.expect("Mcp-Session-Id issued");
        assert!(
            sid.len() >= 32 && sid.bytes().all(|b| (0x21..=0x7e).contains(&b)),
            "{sid}"
        );
        self.session = Some(sid);
        let (s, _) = self
            .send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        body
    }

    pub async fn call(&self, id: i64, method: &str, params: Value) -> (StatusCode, Value) {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await
    }
}

fn rpc_code(body: &Value) -> i64 {
    body["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no JSON-RPC error in {body}"))
}

async fn wire_rules_hold(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut mcp = Mcp::new(&app);
    let init = mcp.initialize("2025-06-18").await;
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(init["result"]["serverInfo"]["name"], "collab-hub");
    // An unknown version is countered with ours, not refused.
    let mut other = Mcp::new(&app);
    assert_eq!(
        other.initialize("2024-01-01").await["result"]["protocolVersion"],
        "2025-11-25"
    );

    let (s, b) = mcp.call(1, "ping", json!({})).await;
    assert_eq!((s, &b["result"]), (StatusCode::OK, &json!({})));
    let (s, b) = mcp
        .call(2, "logging/setLevel", json!({"level": "warning"}))
        .await;
    assert_eq!((s, &b["result"]), (StatusCode::OK, &json!({})));

    // No session id: 400. Unknown: 404. Ended (DELETE): 404.
    let anon = Mcp::new(&app);
    let (s, b) = anon.call(3, "ping", json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let ghost = Mcp {
        session: Some("nope".into()),
        ..Mcp::new(&app)
    };
    assert_eq!(
        ghost.call(4, "ping", json!({})).await.0,
        StatusCode::NOT_FOUND
    );
    let del = client()
        .delete(format!("{}/mcp", app.address))
        .insert_header(("mcp-session-id", other.session.clone().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), StatusCode::OK);
    assert_eq!(
        other.call(5, "ping", json!({})).await.0,
        StatusCode::NOT_FOUND
    );
    other.session = None;

    // Protocol version header: any supported one is fine, others are 400.
    let (s, _, _) = mcp
        .raw(
            json!({"jsonrpc":"2.0","id":6,"method":"ping"})
                .to_string()
                .into_bytes(),
            &[("mcp-protocol-version", "2025-03-26")],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = mcp
        .raw(
            json!({"jsonrpc":"2.0","id":7,"method":"ping"})
                .to_string()
                .into_bytes(),
            &[("mcp-protocol-version", "1999-01-01")],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Unknown versions get the 2026-07-28 answer, listing every version we speak.
    assert_eq!(rpc_code(&b), -32022);
    assert!(
        b["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!("2025-11-25"))
    );

    // The aliases serve the same endpoint; other methods get 405 with Allow.
    for path in ["/mcp-gemini", "/mcp-streaming"] {
        let mut res = client()
            .post(format!("{}{path}", app.address))
            .insert_header(("content-type", "application/json"))
            .insert_header(("mcp-session-id", mcp.session.clone().unwrap()))
            .send_body(json!({"jsonrpc":"2.0","id":8,"method":"ping"}).to_string())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        let _ = res.body().await;
    }
    let res = client()
        .put(format!("{}/mcp", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers().get("allow").unwrap(), "GET, POST, DELETE");

    // GET stream: SSE with the session header.
    let res = client()
        .get(format!("{}/mcp", app.address))
        .insert_header(("accept", "text/event-stream"))
        .insert_header(("mcp-session-id", mcp.session.clone().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    drop(res);
    let res = client()
        .get(format!("{}/mcp", app.address))
        .insert_header(("accept", "application/json"))
        .insert_header(("mcp-session-id", mcp.session.clone().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_ACCEPTABLE);
}

async fn bad_input_gets_the_right_error_and_the_session_survives(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut mcp = Mcp::new(&app);
    mcp.initialize("2025-11-25").await;

    let (s, _, b) = mcp.raw(b"{\"jsonrpc\":\"2.0\",".to_vec(), &[]).await;
    assert_eq!((s, rpc_code(&b)), (StatusCode::BAD_REQUEST, -32700));
    let (_, b) = mcp
        .send(json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}))
        .await;
    assert_eq!(rpc_code(&b), -32600);
    let (_, b) = mcp
        .send(json!({"jsonrpc": "2.0", "id": 2, "method": 42}))
        .await;
    assert_eq!(rpc_code(&b), -32600);
    let (_, b) = mcp.call(3, "no/such/method", json!({})).await;
    assert_eq!((rpc_code(&b), &b["id"]), (-32601, &json!(3)));
    let (_, b) = mcp
        .call(
            4,
            "tools/call",
            json!({"name": "no_such_tool", "arguments": {}}),
        )
        .await;
    assert_eq!(rpc_code(&b), -32602);
    let (_, b) = mcp.call(5, "tools/call", json!({"arguments": {}})).await;
    assert_eq!(rpc_code(&b), -32602);
    let (_, b) = mcp.call(6, "tools/list", json!({"cursor": "bogus"})).await;
    assert_eq!(rpc_code(&b), -32602);
    let (_, b) = mcp
        .call(7, "logging/setLevel", json!({"level": "loud"}))
        .await;
    assert_eq!(rpc_code(&b), -32602);
    // Domain failures are tool results the model can read, not protocol errors.
    let (_, b) = mcp
        .call(
            8,
            "tools/call",
            json!({"name": "session_join", "arguments": {"sessionId": "x", "participant": "a"}}),
        )
        .await;
    assert_eq!(b["result"]["isError"], true, "{b}");
    assert!(
        b["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("sessionId")
    );
    let (_, b) = mcp
        .call(9, "tools/call", json!({"name": "whoami", "arguments": {}}))
        .await;
    assert_eq!(b["result"]["isError"], true, "{b}");
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":10,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(2 << 20)
    );
    let (s, _, _) = mcp.raw(huge.into_bytes(), &[]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _, _) = mcp
        .raw(b"{}".to_vec(), &[("content-type", "text/plain")])
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, _, b) = mcp
        .raw(
            json!({"jsonrpc":"2.0","id":11,"method":"ping"})
                .to_string()
                .into_bytes(),
            &[("origin", "http://evil.example")],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(b["id"], Value::Null);
    let (s, _, _) = mcp
        .raw(
            json!({"jsonrpc":"2.0","id":12,"method":"ping"})
                .to_string()
                .into_bytes(),
            &[("host", "evil.example:9700")],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // After all that, the session still works and the hub is healthy.
    let (s, b) = mcp.call(13, "ping", json!({})).await;
    assert_eq!((s, &b["result"]), (StatusCode::OK, &json!({})));
    assert_eq!(app.get("/healthz").await.0, StatusCode::OK);
}

async fn batches_only_for_2025_03_26(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut old = Mcp::new(&app);
    old.initialize("2025-03-26").await;
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    ]);
    let (s, b) = old.send(batch.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let replies = b.as_array().unwrap();
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0]["id"], 1);
    assert!(replies[1]["result"]["tools"].is_array());
    let (s, _) = old
        .send(json!([{"jsonrpc": "2.0", "method": "notifications/initialized"}]))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);

    let mut new = Mcp::new(&app);
    new.initialize("2025-11-25").await;
    let (s, b) = new.send(batch).await;
    assert_eq!((s, rpc_code(&b)), (StatusCode::BAD_REQUEST, -32600));
}

async fn bearer_token_binds_and_cannot_be_switched(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = app.create_pair("bound").await;
    let mut mcp = Mcp::new(&app);
    mcp.token = Some(claude.clone());
    mcp.initialize("2025-11-25").await;
    let (_, b) = mcp
        .call(1, "tools/call", json!({"name": "whoami", "arguments": {}}))
        .await;
    assert_eq!(b["result"]["structuredContent"]["aiId"], "claude", "{b}");
    assert_eq!(b["result"]["structuredContent"]["sessionId"], id.as_str());
    // The same MCP session cannot suddenly speak as gemini.
    mcp.token = Some(gemini);
    let (s, _) = mcp.call(2, "ping", json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A forged token cannot initialize.
    let mut forged = Mcp::new(&app);
    forged.token = Some("chp_forged".into());
    let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}});
    let (s, _, _) = forged.raw(init.to_string().into_bytes(), &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // No tool result carries a token.
    mcp.token = Some(claude);
    let (_, b) = mcp
        .call(
            3,
            "tools/call",
            json!({"name": "events_poll", "arguments": {"after": 0}}),
        )
        .await;
    assert!(!b.to_string().contains("chp_"), "{b}");
    // A critical event (the driver leaving) leads gemini's next tool result until acknowledged.
    let (_, joined) = app
        .post(
            "/mcp/session/join",
            &json!({"sessionId": id, "participant": "codex"}),
        )
        .await;
    let codex = joined["token"].as_str().unwrap().to_owned();
    let mut other = Mcp::new(&app);
    other.token = Some(codex);
    other.initialize("2025-11-25").await;
    let (_, b) = mcp
        .call(
            4,
            "tools/call",
            json!({"name": "session_leave", "arguments": {}}),
        )
        .await;
    assert_eq!(b["result"]["isError"], false, "{b}");
    let (_, b) = other
        .call(5, "tools/call", json!({"name": "whoami", "arguments": {}}))
        .await;
    let first = b["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        first.contains("critical") && first.contains("participant_left"),
        "{first}"
    );
    // Every tool, not only whoami: an operation brings them back with its own command.
    let (_, g) = other
        .call(
            8,
            "tools/call",
            json!({"name": "context_get", "arguments": {}}),
        )
        .await;
    let first = g["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        first.contains("critical") && first.contains("participant_left"),
        "{first}"
    );
    let newest = b["result"]["structuredContent"]["lastEventId"]
        .as_i64()
        .unwrap();
    other
        .call(
            6,
            "tools/call",
            json!({"name": "events_ack", "arguments": {"upTo": newest}}),
        )
        .await;
    let (_, b) = other
        .call(7, "tools/call", json!({"name": "whoami", "arguments": {}}))
        .await;
    assert_eq!(b["result"]["content"].as_array().unwrap().len(), 1, "{b}");
    let (_, g) = other
        .call(
            9,
            "tools/call",
            json!({"name": "context_get", "arguments": {}}),
        )
        .await;
    assert_eq!(g["result"]["content"].as_array().unwrap().len(), 1, "{g}");
}

async fn a_cancelled_call_gets_no_answer(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, claude, _) = app.create_pair("cancel").await;
    let mut mcp = Mcp::new(&app);
    mcp.token = Some(claude);
    mcp.initialize("2025-11-25").await;
    let long = mcp.call(
        41,
        "tools/call",
        json!({"name": "events_poll", "arguments": {"after": 1, "waitSecs": 30}}),
    );
    let cancel = async {
        actix_web::rt::time::sleep(std::time::Duration::from_millis(300)).await;
        let note = json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 41, "reason": "test"}});
        mcp.send(note).await
    };
    let ((status, body), (cancel_status, _)) = futures::join!(long, cancel);
    assert_eq!(cancel_status, StatusCode::ACCEPTED);
    // JSON mode: the POST ends with an empty 202 instead of a response.
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (_, b) = mcp
        .call(
            42,
            "tools/call",
            json!({"name": "events_poll", "arguments": {"limit": 0}}),
        )
        .await;
    assert_eq!(b["result"]["isError"], true, "{b}");
    let (s, b) = mcp.call(43, "ping", json!({})).await;
    assert_eq!((s, &b["result"]), (StatusCode::OK, &json!({})));
}

impl Mcp {
    /// The text blocks of a raw tool call: the digest (if any) and the answer.
    pub async fn blocks(&self, name: &str, args: Value) -> Vec<String> {
        let (_, raw) = self
            .call(9, "tools/call", json!({"name": name, "arguments": args}))
            .await;
        raw["result"]["content"]
            .as_array()
            .unwrap_or_else(|| panic!("{raw}"))
            .iter()
            .map(|c| c["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The events of the first page of this participant's log whose kind `keep` accepts.
    pub async fn events_where(&self, keep: impl Fn(&str) -> bool) -> Vec<Value> {
        let (err, page) = self
            .tool("events_poll", json!({"after": 0, "limit": 200}))
            .await;
        assert!(!err, "{page}");
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| keep(e["kind"].as_str().unwrap_or_default()))
            .cloned()
            .collect()
    }

    /// Calls a tool; returns (isError, structuredContent or the error text).
    pub async fn tool(&self, name: &str, arguments: Value) -> (bool, Value) {
        let (_, b) = self
            .call(
                1,
                "tools/call",
                json!({"name": name, "arguments": arguments}),
            )
            .await;
        let r = &b["result"];
        let is_error = r["isError"] == true;
        let out = if is_error {
            // The digest of what waits may come before or after it: the error is the block
            // that is a JSON object.
            let blocks = r["content"].as_array().cloned().unwrap_or_default();
            blocks
                .iter()
                .find(|c| c["text"].as_str().is_some_and(|t| t.starts_with('{')))
                .or(blocks.last())
                .map_or(Value::Null, |c| c["text"].clone())
        } else {
            r["structuredContent"].clone()
        };
        (is_error, out)
    }
}
