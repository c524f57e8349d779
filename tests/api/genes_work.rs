//! Genes that shape the work itself, at the wire level: `parallelWorkThreshold` (tasks in
//! progress per participant), `briefingDepth` (the default resume strategy), `messageVerbosity`
//! (how much the digest on tool results says) and `contextSyncFrequency` (reminders to the
//! silent). Each test runs two sessions that differ only in that gene.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_error, both_backends, spawn_app};
use crate::mcp_protocol::Mcp;

both_backends!(
    parallel_work_threshold_caps_tasks_in_progress,
    briefing_depth_picks_the_default_strategy,
    message_verbosity_sets_what_the_digest_says,
    context_sync_reminds_the_silent,
);

/// A session of claude (driver), gemini (navigator) and cursor (observer) under `genome`.
async fn team(app: &TestApp, genome: Value) -> (String, Value) {
    let (status, created) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "genes at work", "genome": genome, "participants": {
                "claude": {"role": "driver"},
                "gemini": {"role": "navigator"},
                "cursor": {"role": "observer"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["sessionId"].as_str().unwrap().to_owned();
    (id, created["tokens"].clone())
}

fn tok(tokens: &Value, who: &str) -> String {
    tokens[who].as_str().unwrap().to_owned()
}

async fn mcp_as(app: &TestApp, token: &str) -> Mcp {
    let mut m = Mcp::new(app);
    m.token = Some(token.to_owned());
    m.initialize("2025-11-25").await;
    m
}

async fn last_event(app: &TestApp, session: &str) -> i64 {
    app.get(&format!("/mcp/session/{session}")).await.1["lastEventId"]
        .as_i64()
        .unwrap()
}

async fn task(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    app.post_as(token, &format!("/mcp/collaborate/task{path}"), &body)
        .await
}

/// Creates a task (assigned to `to`, if any) and returns its id.
async fn new_task(app: &TestApp, token: &str, description: &str, to: Option<&str>) -> i64 {
    let mut body = json!({ "description": description });
    if let Some(to) = to {
        body["assignedTo"] = json!(to);
    }
    let (status, made) = task(app, token, "", body).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    made["tasks"][0]["id"].as_i64().unwrap()
}

async fn start(app: &TestApp, token: &str, id: i64) -> (StatusCode, Value) {
    task(
        app,
        token,
        "/update",
        json!({"taskId": id, "status": "in_progress"}),
    )
    .await
}

async fn task_view(app: &TestApp, token: &str, id: i64) -> Value {
    let (status, b) = app
        .get_as(token, &format!("/mcp/collaborate/tasks?id={id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    b["tasks"][0].clone()
}

/// The refusal to start one task too many: 409 `parallel_limit`, naming the limit, the gene
/// and the tasks already in progress.
fn assert_parallel_limit(status: StatusCode, body: &Value, expect: &str) {
    let e = assert_error(status, body, StatusCode::CONFLICT, "parallel_limit");
    let message = e["message"].as_str().unwrap();
    assert!(message.starts_with(expect), "{message}");
}

async fn parallel_work_threshold_caps_tasks_in_progress(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // 0: one task at a time.
    let (one, tokens) = team(&app, json!({"parallelWorkThreshold": 0.0})).await;
    let (claude, gemini) = (tok(&tokens, "claude"), tok(&tokens, "gemini"));
    let a = new_task(&app, &claude, "parse the config", Some("claude")).await;
    let b = new_task(&app, &claude, "write the migration", Some("claude")).await;
    let free = new_task(&app, &claude, "update the docs", None).await;
    let (status, body) = start(&app, &claude, a).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let before = last_event(&app, &one).await;
    let expect =
        format!("claude has 1 task in progress ({a}): parallelWorkThreshold 0 allows 1 at once");
    let (status, body) = start(&app, &claude, b).await;
    assert_parallel_limit(status, &body, &expect);
    // Claiming starts the task: refused alike; so is the driver starting it for claude.
    let (status, body) = task(&app, &claude, "/claim", json!({"taskId": free})).await;
    assert_parallel_limit(status, &body, &expect);
    // Nothing changed.
    assert_eq!(last_event(&app, &one).await, before);
    assert_eq!(task_view(&app, &claude, b).await["status"], "pending");
    assert!(
        task_view(&app, &claude, free)
            .await
            .get("assignedTo")
            .is_none()
    );
    // Gemini has an allowance of its own; a finished task frees claude's.
    let (status, body) = task(&app, &gemini, "/claim", json!({"taskId": free})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tasks"][0]["status"], "in_progress", "{body}");
    let (status, body) = task(
        &app,
        &claude,
        "/update",
        json!({"taskId": a, "status": "completed"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = start(&app, &claude, b).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // 0.5: three at once; the fourth is refused, over MCP too, with the same error object.
    let (_, tokens) = team(&app, json!({"parallelWorkThreshold": 0.5})).await;
    let claude = tok(&tokens, "claude");
    let mut ids = Vec::new();
    for n in 1..=4 {
        ids.push(new_task(&app, &claude, &format!("step {n}"), Some("claude")).await);
    }
    for id in &ids[..3] {
        let (status, body) = start(&app, &claude, *id).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let expect = format!(
        "claude has 3 tasks in progress ({}, {}, {}): parallelWorkThreshold 0.5 allows 3 at once",
        ids[0], ids[1], ids[2]
    );
    let (status, body) = start(&app, &claude, ids[3]).await;
    assert_parallel_limit(status, &body, &expect);
    let m = mcp_as(&app, &claude).await;
    let (err, text) = m
        .tool(
            "task",
            json!({"action": "update", "taskId": ids[3], "status": "in_progress"}),
        )
        .await;
    assert!(err, "{text}");
    let error: Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
    assert_eq!(error["code"], "parallel_limit", "{error}");
    assert!(
        error["message"].as_str().unwrap().starts_with(&expect),
        "{error}"
    );
}

async fn briefing_depth_picks_the_default_strategy(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let resume = async |tokens: &Value, body: Value| {
        let (status, b) = app
            .post_as(&tok(tokens, "claude"), "/mcp/session/resume", &body)
            .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        b["briefing"]["strategy"].as_str().unwrap().to_owned()
    };
    // Back after a moment: the depth decides, not the short absence.
    let (_, minimal) = team(&app, json!({"briefingDepth": "minimal"})).await;
    let (_, comprehensive) = team(&app, json!({"briefingDepth": "comprehensive"})).await;
    assert_eq!(resume(&minimal, json!({})).await, "quick");
    assert_eq!(resume(&comprehensive, json!({})).await, "deep");
    // Standard keeps the choice by time away (under an hour: quick).
    let (_, standard) = team(&app, json!({"briefingDepth": "standard"})).await;
    assert_eq!(resume(&standard, json!({})).await, "quick");
    // A strategy asked for wins.
    for tokens in [&minimal, &comprehensive] {
        assert_eq!(
            resume(tokens, json!({"strategy": "standard"})).await,
            "standard"
        );
    }
}

async fn message_verbosity_sets_what_the_digest_says(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let body = format!(
        "{}then restore it",
        "stop the deploy: the migration drops the sessions table, ".repeat(4)
    );
    let mut digests = Vec::new();
    for verbosity in ["minimal", "detailed"] {
        let (_, tokens) = team(&app, json!({"messageVerbosity": verbosity})).await;
        let (claude, gemini) = (tok(&tokens, "claude"), tok(&tokens, "gemini"));
        let (status, sent) = app
            .post_as(
                &claude,
                "/mcp/messages/send",
                &json!({"to": "gemini", "body": body, "priority": "critical"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{sent}");
        let id = sent["id"].as_i64().unwrap();
        let (status, waiting) = app.get_as(&gemini, "/mcp/events/waiting").await;
        assert_eq!(status, StatusCode::OK, "{waiting}");
        let g = mcp_as(&app, &gemini).await;
        let out = g.blocks("whoami", json!({})).await;
        digests.push((id, out[0].clone(), waiting["listed"].clone()));
    }
    // Minimal: who sent what, no text; nothing counts as shown to the model.
    let (id, minimal, listed) = &digests[0];
    assert!(
        minimal.starts_with(&format!(
            "⚠ 1 critical not acknowledged:\n#{id} message_sent by claude\n"
        )),
        "{minimal}"
    );
    assert!(!minimal.contains("stop the deploy"), "{minimal}");
    assert_eq!(listed, &json!([]));
    // Detailed: the whole body (the standard digest clips it at 120 characters).
    let (id, detailed, listed) = &digests[1];
    assert!(
        detailed.contains(&format!("#{id} message_sent by claude: {body}\n")),
        "{detailed}"
    );
    assert!(body.chars().count() > 120);
    assert_eq!(listed, &json!([id]));
}

/// The `context_sync_due` events `m`'s participant sees.
async fn reminders(m: &Mcp) -> Vec<Value> {
    m.events_where(|kind| kind == "context_sync_due").await
}
/// The one slow test of this file: the shortest interval the gene allows is a minute.
async fn context_sync_reminds_the_silent(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let t0 = Instant::now();
    let (_, every_minute) = team(&app, json!({"contextSyncFrequency": 1})).await;
    let (_, every_two) = team(&app, json!({"contextSyncFrequency": 2})).await;
    let clients = async |tokens: &Value| {
        let mut out = Vec::new();
        for who in ["claude", "gemini", "cursor"] {
            out.push(mcp_as(&app, &tok(tokens, who)).await);
        }
        out
    };
    let one = clients(&every_minute).await;
    let two = clients(&every_two).await;
    // Halfway through the first minute claude writes the context, in both sessions.
    actix_web::rt::time::sleep(Duration::from_secs(30).saturating_sub(t0.elapsed())).await;
    for tokens in [&every_minute, &every_two] {
        let (status, b) = app
            .post_as(
                &tok(tokens, "claude"),
                "/mcp/context/set",
                &json!({"path": "plan", "value": "migrate, then deploy"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{b}");
    }
    // Gemini, silent, is reminded about a minute in.
    let reminded = loop {
        let got = reminders(&one[1]).await;
        if !got.is_empty() {
            break got;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(80),
            "no reminder for gemini after {:?}",
            t0.elapsed()
        );
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        t0.elapsed() >= Duration::from_secs(59),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(reminded.len(), 1, "{reminded:?}");
    let r = &reminded[0];
    assert_eq!(
        (&r["to"], &r["priority"], &r["actor"]),
        (&json!("gemini"), &json!("important"), &Value::Null),
        "{r}"
    );
    assert_eq!(
        r["payload"]["summary"],
        "no context update from you for 1 min: context_set what you know"
    );
    // Its next tool result counts it among what waits (after the answer: nothing critical).
    let out = one[1].blocks("whoami", json!({})).await;
    let newest = format!("1 important (newest #{})", r["id"]);
    assert!(out.last().unwrap().contains(&newest), "{out:?}");
    // Claude wrote half a minute ago; cursor observes; the two-minute session reminds nobody
    // yet.
    assert!(t0.elapsed() < Duration::from_secs(85), "{:?}", t0.elapsed());
    assert_eq!(reminders(&one[0]).await, Vec::<Value>::new());
    assert_eq!(reminders(&one[2]).await, Vec::<Value>::new());
    for m in &two {
        assert_eq!(reminders(m).await, Vec::<Value>::new());
    }
}
