//! One operation, every surface: the same calls, good and bad, over MCP, over REST and as a
//! WebSocket `call` frame give the same answer. Three sessions are built the same way, one
//! driven only through MCP tools, one only through REST and one only over WebSockets, so their
//! event ids line up and every result can be compared whole (with the session id and the clock
//! taken out; the three projects' names are equally long, since sizes are counted). A failure
//! names the operation and the answers.

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, both_backends, spawn_app};
use crate::mcp_protocol::Mcp;
use crate::ws::Ws;

both_backends!(every_operation_answers_alike_over_mcp_rest_and_websocket);

/// One participant on every surface: an MCP client in session A, a token in session B, a
/// WebSocket authenticated with its token in session C.
struct Both<'a> {
    app: &'a TestApp,
    mcp: Mcp,
    token: Option<String>,
    ws: Option<tokio::sync::Mutex<Ws>>,
    sessions: (String, String, String),
}

impl Both<'_> {
    /// Runs `tool` with `args` over MCP and `rest` (`"GET /path"` or `"POST /path"`, `{s}` for
    /// the session id) with the same arguments, and asserts the two answers are the same.
    async fn same(&self, tool: &str, args: Value, rest: &str) -> Value {
        let over_mcp = self.tool(tool, args.clone()).await;
        assert!(
            !over_mcp.to_string().contains("chp_"),
            "{tool}: a token in a tool result: {over_mcp}"
        );
        let over_rest = self.rest(rest, &args).await;
        let (a, b) = (self.normal(&over_mcp), self.normal(&over_rest));
        assert_eq!(
            a, b,
            "{tool} {args} answers differently\n  MCP:  {over_mcp}\n  REST: {over_rest}"
        );
        if let Some(ws) = &self.ws {
            let reply = ws
                .lock()
                .await
                .request(json!({"type": "call", "operation": tool, "arguments": args}))
                .await;
            let over_ws = match reply.get("ok") {
                Some(ok) => ok.clone(),
                None => json!({ "error": reply["error"] }),
            };
            assert_eq!(
                a,
                self.normal(&over_ws),
                "{tool} {args} answers differently\n  MCP: {over_mcp}\n  WS:  {over_ws}"
            );
        }
        over_mcp
    }

    /// The same, for a call that must fail: same error code, field and message.
    async fn same_error(&self, tool: &str, args: Value, rest: &str) -> Value {
        let answer = self.same(tool, args.clone(), rest).await;
        assert!(
            answer["error"]["code"].is_string(),
            "{tool} {args} should fail: {answer}"
        );
        answer
    }

    async fn tool(&self, name: &str, args: Value) -> Value {
        let (_, b) = self
            .mcp
            .call(9, "tools/call", json!({"name": name, "arguments": args}))
            .await;
        let r = &b["result"];
        assert!(r.is_object(), "{name}: no tool result: {b}");
        if r["isError"] == true {
            json!({ "error": r["structuredContent"]["error"] })
        } else {
            r["structuredContent"].clone()
        }
    }

    async fn rest(&self, route: &str, args: &Value) -> Value {
        let (method, path) = route.split_once(' ').expect("METHOD /path");
        let path = path.replace("{s}", &self.sessions.1);
        let (status, body) = match (method, &self.token) {
            ("GET", token) => {
                let query: Vec<String> = args
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| {
                        let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                        format!("{k}={}", encode(&text))
                    })
                    .collect();
                let sep = if path.contains('?') { '&' } else { '?' };
                let url = format!("{path}{sep}{}", query.join("&"));
                match token {
                    Some(t) => self.app.get_as(t, &url).await,
                    None => self.app.get(&url).await,
                }
            }
            (_, Some(t)) => self.app.post_as(t, &path, args).await,
            (_, None) => self.app.post(&path, args).await,
        };
        if status.is_success() {
            body
        } else {
            assert!(status.is_client_error(), "{route}: {status} {body}");
            body
        }
    }

    /// Takes out what differs by construction: the session ids, their projects (two, so that
    /// the two sessions' locks do not meet in one lock table) and the clock. Token counts go
    /// too: they are bytes / 4 of text that holds timestamps, and a timestamp's length varies
    /// with its fraction of a second (`…:05.12Z` vs `…:05.123456Z`).
    fn normal(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => {
                if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
                    return json!("<time>");
                }
                Value::String(without_times(
                    &s.replace(&self.sessions.0, "<session>")
                        .replace(&self.sessions.1, "<session>")
                        .replace(&self.sessions.2, "<session>")
                        .replace(PROJECTS.0, "<project>")
                        .replace(PROJECTS.1, "<project>")
                        .replace(PROJECTS.2, "<project>"),
                ))
            }
            Value::Array(items) => Value::Array(items.iter().map(|i| self.normal(i)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_str(), "tokens" | "token" | "rawTokens" | "savedTokens")
                    })
                    .map(|(k, v)| (k.clone(), self.normal(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// `… until 2026-12-02T10:00:00Z; …` → `… until <time>; …` (times inside messages).
fn without_times(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.' | '+')))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        if chrono::DateTime::parse_from_rfc3339(word).is_ok() {
            out.push_str("<time>");
        } else {
            out.push_str(word);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// An export without what the clock decides: durations (the two sessions' differ by a moment)
/// and how long a checkpoint ran.
fn steady(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "durationSecs" | "ranSecs"))
                .map(|(k, v)| (k.clone(), steady(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(steady).collect()),
        Value::String(s) => Value::String(
            s.lines()
                .filter(|l| !l.contains("Duration"))
                .map(|l| match l.find(" after ") {
                    Some(i) => {
                        let rest = &l[i + 7..];
                        let digits = rest.chars().take_while(char::is_ascii_digit).count();
                        format!("{} after <n>{}", &l[..i], &rest[digits..])
                    }
                    None => l.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        other => other.clone(),
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The MCP session's project and the REST session's.
const PROJECTS: (&str, &str, &str) = ("/parity/over-mcp", "/parity/over-rst", "/parity/over-wss");

async fn every_operation_answers_alike_over_mcp_rest_and_websocket(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // session_create: the concept's shape on both surfaces.
    let create = |project: &str| json!({"name": "parity", "participants": ["claude", "gemini"], "saveInterval": 300, "project": project});
    let mut claude_mcp = Mcp::new(&app);
    claude_mcp.initialize("2025-11-25").await;
    let (err, a) = claude_mcp.tool("session_create", create(PROJECTS.0)).await;
    assert!(!err, "{a}");
    let (status, b) = app.post("/mcp/session/create", &create(PROJECTS.1)).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let (status, c) = app.post("/mcp/session/create", &create(PROJECTS.2)).await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let sessions = (
        a["sessionId"].as_str().unwrap().to_owned(),
        b["sessionId"].as_str().unwrap().to_owned(),
        c["sessionId"].as_str().unwrap().to_owned(),
    );
    let socket = |who: &str| {
        let token = c["tokens"][who].as_str().unwrap().to_owned();
        let app = &app;
        async move { tokio::sync::Mutex::new(Ws::connect(app, Some(&token)).await) }
    };
    let claude = Both {
        app: &app,
        mcp: claude_mcp,
        token: b["tokens"]["claude"].as_str().map(str::to_owned),
        ws: Some(socket("claude").await),
        sessions: sessions.clone(),
    };
    assert_eq!(claude.normal(&a), claude.normal(&b), "session_create");
    // gemini takes its listed seat over MCP (loopback) and uses its token over REST.
    let mut gemini_mcp = Mcp::new(&app);
    gemini_mcp.initialize("2025-11-25").await;
    let (err, joined) = gemini_mcp
        .tool(
            "session_join",
            json!({"sessionId": sessions.0, "participant": "gemini"}),
        )
        .await;
    assert!(!err, "{joined}");
    let gemini = Both {
        app: &app,
        mcp: gemini_mcp,
        token: b["tokens"]["gemini"].as_str().map(str::to_owned),
        ws: Some(socket("gemini").await),
        sessions: sessions.clone(),
    };
    // A newcomer joins both sessions the same way.
    let mut cursor_mcp = Mcp::new(&app);
    cursor_mcp.initialize("2025-11-25").await;
    let (err, over_mcp) = cursor_mcp
        .tool(
            "session_join",
            json!({"sessionId": sessions.0, "participant": "cursor", "role": "observer"}),
        )
        .await;
    assert!(!err, "{over_mcp}");
    let (status, over_rest) = app
        .post(
            "/mcp/session/join",
            &json!({"sessionId": sessions.1, "participant": "cursor", "role": "observer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{over_rest}");
    assert_eq!(
        claude.normal(&over_mcp),
        claude.normal(&over_rest),
        "session_join"
    );
    let mut newcomer = Ws::connect(&app, None).await;
    let over_ws = newcomer
        .call(
            "session_join",
            json!({"sessionId": sessions.2, "participant": "cursor", "role": "observer"}),
        )
        .await;
    assert_eq!(
        claude.normal(&over_mcp),
        claude.normal(&over_ws),
        "session_join over a WebSocket"
    );

    // The shared context.
    let set = claude
        .same(
            "context_set",
            json!({"path": "a.b", "value": 1}),
            "POST /mcp/context/set",
        )
        .await;
    assert_eq!(set["version"], set["eventId"], "{set}");
    claude
        .same(
            "context_get",
            json!({"path": "a.b"}),
            "GET /mcp/context/get",
        )
        .await;
    claude
        .same(
            "context_get",
            json!({"path": "a.b"}),
            "GET /mcp/context/get/a.b",
        )
        .await;
    claude
        .same(
            "context_append",
            json!({"path": "list", "value": {"x": 1}}),
            "POST /mcp/context/append/list",
        )
        .await;
    claude
        .same(
            "context_sync",
            json!({"updates": {"a": {"c": [1, 2]}, "d": "e"}}),
            "POST /mcp/context/sync",
        )
        .await;
    claude
        .same(
            "context_delete",
            json!({"path": "a.b", "expectedVersion": set["version"]}),
            "POST /mcp/context/delete/a.b",
        )
        .await;
    claude
        .same(
            "context_diff",
            json!({"since": 1}),
            "GET /mcp/context/diff/claude/1",
        )
        .await;
    claude
        .same(
            "context_diff",
            json!({"since": "2020-01-01T00:00:00Z"}),
            "GET /mcp/context/diff/claude/2020-01-01T00:00:00Z",
        )
        .await;
    claude
        .same(
            "memory",
            json!({"action": "push", "kind": "symbol", "value": "AuthService"}),
            "POST /mcp/context/memory/push",
        )
        .await;
    claude
        .same(
            "memory",
            json!({"action": "recent", "limit": 5}),
            "GET /mcp/context/memory/recent",
        )
        .await;
    claude
        .same(
            "notes",
            json!({"observations": ["tests are slow"]}),
            "POST /mcp/context/notes/claude",
        )
        .await;
    gemini
        .same(
            "notes",
            json!({"aiId": "claude"}),
            "GET /mcp/context/notes/claude",
        )
        .await;
    claude
        .same(
            "discovery_report",
            json!({"finding": "race in the cache", "severity": "high"}),
            "POST /mcp/context/discovery",
        )
        .await;
    claude
        .same(
            "status_report",
            json!({"kind": "test", "status": "pass", "summary": "42 passed"}),
            "POST /mcp/collaborate/status",
        )
        .await;

    // Messages and checkpoints.
    let sent = claude
        .same(
            "message_send",
            json!({"to": "gemini", "body": "look at auth", "requiresAck": true}),
            "POST /mcp/messages/send",
        )
        .await;
    gemini
        .same(
            "messages_read",
            json!({"unreadOnly": true}),
            "GET /mcp/messages",
        )
        .await;
    gemini
        .same(
            "message_ack",
            json!({"upTo": sent["id"]}),
            "POST /mcp/messages/ack",
        )
        .await;
    gemini
        .same(
            "checkpoint",
            json!({"action": "begin", "task": "review", "estimatedDuration": "30s"}),
            "POST /mcp/collaborate/checkpoint",
        )
        .await;
    gemini
        .same(
            "checkpoint",
            json!({"action": "end"}),
            "POST /mcp/collaborate/checkpoint/end",
        )
        .await;

    // Durations in every form the concept writes them, on both surfaces.
    for estimate in [json!(45), json!("45s"), json!("2m"), json!("estimated_30s")] {
        gemini
            .same(
                "checkpoint",
                json!({"action": "begin", "task": "read", "estimatedDuration": estimate, "interruptible": true}),
                "POST /mcp/collaborate/checkpoint",
            )
            .await;
        gemini
            .same(
                "checkpoint",
                json!({"action": "end"}),
                "POST /mcp/collaborate/checkpoint/end",
            )
            .await;
    }

    // Code work: the ledger, locks, suggestions, tasks, the handshake, roles.
    claude
        .same(
            "changes",
            json!({"action": "record", "filePath": "/src/a.rs", "before": "a\n", "after": "b\n"}),
            "POST /mcp/collaborate/change",
        )
        .await;
    claude
        .same(
            "changes",
            json!({"action": "list", "filePath": "/src/a.rs", "withDiff": true}),
            "GET /mcp/collaborate/changes",
        )
        .await;
    let lock = claude
        .same(
            "lock",
            json!({"action": "acquire", "resource": "/src/a.rs", "duration": "estimated_30s"}),
            "POST /mcp/collaborate/lock",
        )
        .await;
    gemini
        .same(
            "lock",
            json!({"action": "list"}),
            "GET /mcp/collaborate/locks",
        )
        .await;
    gemini
        .same_error(
            "lock",
            json!({"action": "acquire", "resource": "/src/"}),
            "POST /mcp/collaborate/lock",
        )
        .await;
    claude
        .same(
            "lock",
            json!({"action": "release", "lockId": lock["id"]}),
            "POST /mcp/collaborate/lock/release",
        )
        .await;
    let suggestion = gemini
        .same(
            "suggestion",
            json!({"action": "submit", "filePath": "/src/a.rs", "before": "b\n", "after": "c\n"}),
            "POST /mcp/collaborate/suggestion",
        )
        .await;
    claude
        .same(
            "suggestion",
            json!({"action": "list"}),
            "GET /mcp/collaborate/suggestions",
        )
        .await;
    claude
        .same(
            "suggestion",
            json!({"action": "resolve", "id": suggestion["id"], "accept": false, "note": "later"}),
            "POST /mcp/collaborate/suggestion/resolve",
        )
        .await;
    // Disputes (the default genome: a navigator settles them).
    let dispute = gemini
        .same(
            "dispute",
            json!({"action": "raise", "on": {"kind": "suggestion", "id": suggestion["id"]}, "reason": "c is wrong", "proposal": "keep b"}),
            "POST /mcp/collaborate/dispute",
        )
        .await;
    claude
        .same(
            "dispute",
            json!({"action": "list"}),
            "GET /mcp/collaborate/disputes",
        )
        .await;
    claude
        .same_error(
            "dispute",
            json!({"action": "resolve", "disputeId": dispute["disputeId"], "outcome": "accept"}),
            "POST /mcp/collaborate/dispute/resolve",
        )
        .await;
    gemini
        .same_error(
            "dispute",
            json!({"action": "vote", "disputeId": dispute["disputeId"], "vote": "accept"}),
            "POST /mcp/collaborate/dispute/vote",
        )
        .await;
    gemini
        .same(
            "dispute",
            json!({"action": "resolve", "disputeId": dispute["disputeId"], "outcome": "reject", "note": "agreed"}),
            "POST /mcp/collaborate/dispute/resolve",
        )
        .await;
    let tasks = claude
        .same(
            "task",
            json!({"action": "create", "description": "split the cache", "assignedTo": "gemini", "subtasks": ["read", "write"]}),
            "POST /mcp/collaborate/task",
        )
        .await;
    let task_id = tasks["tasks"][0]["id"].clone();
    gemini
        .same(
            "task",
            json!({"action": "update", "taskId": task_id, "status": "in_progress"}),
            "POST /mcp/collaborate/task/update",
        )
        .await;
    gemini
        .same(
            "task",
            json!({"action": "list", "assignedTo": "gemini"}),
            "GET /mcp/collaborate/tasks",
        )
        .await;
    let work = claude
        .same(
            "handshake",
            json!({"step": "work_complete", "changes": ["/src/a.rs"], "message": "done"}),
            "POST /mcp/collaborate/handshake",
        )
        .await;
    gemini
        .same(
            "handshake",
            json!({"step": "review_start", "acknowledgeId": work["eventId"]}),
            "POST /mcp/collaborate/handshake",
        )
        .await;
    gemini
        .same(
            "role",
            json!({"action": "request", "role": "driver", "reason": "my turn"}),
            "POST /mcp/collaborate/role",
        )
        .await;
    claude
        .same(
            "session_status",
            json!({"action": "pause"}),
            "POST /mcp/session/{s}/status",
        )
        .await;
    claude
        .same(
            "session_status",
            json!({"action": "resume"}),
            "POST /mcp/session/{s}/status",
        )
        .await;
    // The briefing: the same facts give the same briefing on both surfaces.
    let brief = claude
        .same(
            "session",
            json!({"action": "resume", "strategy": "standard", "includeContext": false}),
            "POST /mcp/session/resume",
        )
        .await;
    assert_eq!(brief["briefing"]["strategy"], "standard", "{brief}");
    claude
        .same(
            "batch",
            json!({"operations": [
                {"op": "context_set", "args": {"path": "batched", "value": []}},
                {"op": "context_append", "args": {"path": "batched", "value": 1}},
            ]}),
            "POST /mcp/batch",
        )
        .await;
    // The export: the same record in every form (what the clock decides taken out).
    for args in [
        json!({"action": "export", "format": "json", "includeCode": true}),
        json!({"action": "export", "format": "markdown", "includeCode": true}),
        json!({"action": "export", "format": "html"}),
    ] {
        let over_mcp = gemini.tool("session", args.clone()).await;
        let over_rest = gemini.rest("POST /mcp/session/export", &args).await;
        assert_eq!(
            steady(&gemini.normal(&over_mcp)),
            steady(&gemini.normal(&over_rest)),
            "session export {args} answers differently\n  MCP:  {over_mcp}\n  REST: {over_rest}"
        );
        assert_eq!(over_mcp["format"], args["format"], "{over_mcp}");
    }

    // Bad arguments: the same error, naming the same field.
    for (tool, args, route, field) in [
        (
            "context_set",
            json!({"path": "a..b", "value": 1}),
            "POST /mcp/context/set",
            "path",
        ),
        (
            "context_set",
            json!({"value": 1}),
            "POST /mcp/context/set",
            "path",
        ),
        (
            "context_set",
            json!({"path": "x", "value": 1, "bogus": 2}),
            "POST /mcp/context/set",
            "",
        ),
        (
            "context_sync",
            json!({"updates": {"": 3}}),
            "POST /mcp/context/sync",
            "path",
        ),
        (
            "context_diff",
            json!({"since": "abc"}),
            "GET /mcp/context/diff/claude/abc",
            "since",
        ),
        (
            "lock",
            json!({"action": "acquire"}),
            "POST /mcp/collaborate/lock",
            "resource",
        ),
        (
            "lock",
            json!({"action": "acquire", "resource": "/x", "duration": "forever"}),
            "POST /mcp/collaborate/lock",
            "duration",
        ),
        (
            "messages_read",
            json!({"limit": 0}),
            "GET /mcp/messages",
            "limit",
        ),
        (
            "message_send",
            json!({"to": "nobody", "body": "hi"}),
            "POST /mcp/messages/send",
            "",
        ),
        (
            "task",
            json!({"action": "update", "taskId": 999_999, "status": "completed"}),
            "POST /mcp/collaborate/task/update",
            "",
        ),
        (
            "dispute",
            json!({"action": "raise", "on": {"kind": "change", "id": 999_999}, "reason": "x"}),
            "POST /mcp/collaborate/dispute",
            "on.id",
        ),
        (
            "dispute",
            json!({"action": "raise", "on": {"kind": "change", "id": 1}, "reason": ""}),
            "POST /mcp/collaborate/dispute",
            "reason",
        ),
        (
            "dispute",
            json!({"action": "resolve", "disputeId": 999, "outcome": "accept"}),
            "POST /mcp/collaborate/dispute/resolve",
            "disputeId",
        ),
        (
            "dispute",
            json!({"action": "raise", "on": {"kind": "change", "id": 1, "x": 1}, "reason": "x"}),
            "POST /mcp/collaborate/dispute",
            "on.x",
        ),
        (
            "checkpoint",
            json!({"action": "begin", "task": "x", "estimatedDuration": "soon"}),
            "POST /mcp/collaborate/checkpoint",
            "estimatedDuration",
        ),
        (
            "batch",
            json!({"operations": [{"op": "context_set", "args": {"path": "a..b", "value": 1}}]}),
            "POST /mcp/batch",
            "operations[0].path",
        ),
        (
            "session",
            json!({"action": "resume", "maxTokens": 5}),
            "POST /mcp/session/resume",
            "maxTokens",
        ),
        (
            "session",
            json!({"action": "resume", "trigger": "manual"}),
            "POST /mcp/session/resume",
            "trigger",
        ),
        (
            "session",
            json!({"action": "save", "trigger": "sometimes"}),
            "POST /mcp/session/save",
            "trigger",
        ),
        (
            "session",
            json!({"action": "export", "format": "pdf"}),
            "POST /mcp/session/export",
            "format",
        ),
        (
            "session",
            json!({"action": "export", "strategy": "quick"}),
            "POST /mcp/session/export",
            "strategy",
        ),
    ] {
        let err = claude.same_error(tool, args, route).await;
        if !field.is_empty() {
            assert_eq!(err["error"]["field"], field, "{tool}: {err}");
        }
    }
    // A refused code write says who drives, on both surfaces.
    let denied = gemini
        .same_error(
            "changes",
            json!({"action": "record", "filePath": "/src/b.rs", "before": "a\n", "after": "b\n"}),
            "POST /mcp/collaborate/change",
        )
        .await;
    assert_eq!(
        denied["error"]["code"], "write_permission_denied",
        "{denied}"
    );
    assert_eq!(denied["error"]["currentDriver"], "claude", "{denied}");

    // The concept's shapes, accepted alike: participants as names, objects or a map.
    for participants in [
        json!(["claude", "gemini"]),
        json!([{"aiId": "claude"}, {"aiId": "gemini", "role": "navigator", "skills": ["rust"]}]),
        json!({"claude": {"role": "driver"}, "gemini": {"role": "navigator", "permissions": ["read", "suggest"]}}),
    ] {
        let create =
            json!({"name": "shapes", "participants": participants, "rotationPolicy": "manual"});
        let mut fresh = Mcp::new(&app);
        fresh.initialize("2025-11-25").await;
        let (err, mut a) = fresh.tool("session_create", create.clone()).await;
        assert!(!err, "{a}");
        let (status, mut b) = app.post("/mcp/session/create", &create).await;
        assert_eq!(status, StatusCode::CREATED, "{b}");
        for v in [&mut a, &mut b] {
            v.as_object_mut().unwrap().remove("sessionId");
        }
        assert_eq!(
            claude.normal(&a),
            claude.normal(&b),
            "session_create {participants}"
        );
        assert_eq!(a["driver"], "claude", "{a}");
    }
    // session_list: an unbound MCP client and the operator over REST see the same list.
    let mut anon = Mcp::new(&app);
    anon.initialize("2025-11-25").await;
    let (err, listed) = anon.tool("session_list", json!({"limit": 100})).await;
    assert!(!err, "{listed}");
    let (_, over_rest) = app.get("/mcp/session/list?limit=100").await;
    assert_eq!(listed, over_rest, "session_list");
    let mut viewer = Ws::connect(&app, None).await;
    let over_ws = viewer.call("session_list", json!({"limit": 100})).await;
    assert_eq!(listed, over_ws, "session_list over a WebSocket");
    // The three sessions above and two for each of the three shapes.
    assert_eq!(listed["sessions"].as_array().unwrap().len(), 9, "{listed}");
    let (err, refused) = anon.tool("session_list", json!({"limit": 101})).await;
    assert!(
        err && refused.as_str().unwrap().contains("limit"),
        "{refused}"
    );
    let (status, _) = app.get("/mcp/session/list?limit=101").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // evolution: a session's genome and what it sets, the populations, the insights, and a
    // bad task type, alike on every surface.
    claude
        .same(
            "evolution",
            json!({"action": "session"}),
            "GET /mcp/evolution/session",
        )
        .await;
    claude
        .same(
            "evolution",
            json!({"action": "status"}),
            "GET /mcp/evolution",
        )
        .await;
    claude
        .same(
            "evolution",
            json!({"action": "insights", "taskType": "refactoring"}),
            "GET /mcp/evolution/insights",
        )
        .await;
    claude
        .same_error(
            "evolution",
            json!({"action": "status", "taskType": ""}),
            "GET /mcp/evolution",
        )
        .await;
    let (err, over_mcp) = anon.tool("evolution", json!({})).await;
    assert!(!err, "{over_mcp}");
    let (_, over_rest) = app.get("/mcp/evolution").await;
    assert_eq!(over_mcp, over_rest, "evolution for the operator");
    assert_eq!(
        over_mcp,
        viewer.call("evolution", json!({})).await,
        "evolution for a viewer"
    );

    // session_leave: the caller leaves.
    gemini
        .same("session_leave", json!({}), "POST /mcp/session/leave")
        .await;
}
