//! Working over time: `session_resume` briefs a participant on what the others did while it was
//! away (across a restart), fits a token budget, never consumes what it shows; a paused session
//! refuses writes and still briefs.

use actix_web::http::StatusCode;
use collab_hub::Settings;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_error, both_backends, spawn_app, start_on};

both_backends!(
    a_resumed_participant_hears_what_the_others_did_and_nothing_of_its_own,
    a_briefing_fits_its_budget_and_keeps_its_alerts,
    a_paused_session_refuses_writes_and_still_briefs,
    a_newcomer_is_onboarded_with_the_work_done_and_tasks_that_fit,
);

/// `session_resume` with a participant's token (the operator's, without one).
async fn resume(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, b) = if token.is_empty() {
        app.post("/mcp/session/resume", &body).await
    } else {
        app.post_as(token, "/mcp/session/resume", &body).await
    };
    assert_eq!(status, StatusCode::OK, "{b}");
    b
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| x.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn rules(briefing: &Value) -> Vec<String> {
    briefing["suggestions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| s["rule"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Claude works and asks for a review; then gemini works while claude is away.
async fn day_one(app: &TestApp) -> (String, String, String) {
    // Loose mode: gemini, a navigator, records its own changes.
    let (s, created) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "Payment Gateway Integration", "participants": ["claude", "gemini"], "handshakeMode": "loose"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let token = |ai: &str| created["tokens"][ai].as_str().unwrap().to_owned();
    let (id, claude, gemini) = (
        created["sessionId"].as_str().unwrap().to_owned(),
        token("claude"),
        token("gemini"),
    );
    let ok = |(s, b): (StatusCode, Value)| assert_eq!(s, StatusCode::OK, "{b}");
    ok(app
        .post_as(
            &claude,
            "/mcp/context/set",
            &json!({"path": "summary", "value": "Stripe payments"}),
        )
        .await);
    ok(app
        .post_as(
            &claude,
            "/mcp/collaborate/change",
            &json!({"filePath": "src/pay.rs", "before": "a\n", "after": "b\n", "reason": "PaymentService"}),
        )
        .await);
    ok(app
        .post_as(
            &claude,
            "/mcp/collaborate/task",
            &json!({"description": "Webhooks", "assignedTo": "claude"}),
        )
        .await);
    ok(app
        .post_as(
            &claude,
            "/mcp/collaborate/handshake",
            &json!({"status": "work_complete", "changes": ["PaymentService"], "needsReview": true}),
        )
        .await);
    // Gemini, while claude is away.
    for after in ["t1\n", "t2\n"] {
        ok(app
            .post_as(
                &gemini,
                "/mcp/collaborate/change",
                &json!({"filePath": "tests/pay_test.rs", "before": "t0\n", "after": after}),
            )
            .await);
    }
    ok(app
        .post_as(
            &gemini,
            "/mcp/messages/send",
            &json!({"to": "claude", "body": "Which API version?", "requiresAck": true}),
        )
        .await);
    ok(app
        .post_as(
            &gemini,
            "/mcp/collaborate/status",
            &json!({"kind": "test", "status": "fail", "summary": "2 failed", "details": {"failures": ["src/pay.rs:12"]}}),
        )
        .await);
    ok(app
        .post_as(
            &gemini,
            "/mcp/context/discovery",
            &json!({"finding": "API rate limiting", "severity": "high"}),
        )
        .await);
    (id, claude, gemini)
}

async fn a_resumed_participant_hears_what_the_others_did_and_nothing_of_its_own(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = day_one(&app).await;
    let before = resume(&app, &claude, json!({"strategy": "deep"})).await;
    // The next day: a restart in between.
    let db = app.stop().await;
    let app = start_on(db, Settings::for_database("unused")).await;
    // The counts kept while the hub ran equal those rebuilt from the log at load.
    let after = resume(&app, &claude, json!({"strategy": "deep"})).await;
    assert_eq!(before["briefing"]["size"], after["briefing"]["size"]);

    let got = resume(
        &app,
        &claude,
        json!({"sessionId": id, "participant": "claude"}),
    )
    .await;
    assert_eq!(got["participant"], "claude");
    assert_eq!(got["context"]["summary"], "Stripe payments");
    let b = &got["briefing"];
    assert!(
        b["summary"].as_str().unwrap().contains("Stripe payments"),
        "{b}"
    );
    let updates = b["collaboratorUpdates"].as_object().unwrap();
    assert_eq!(
        updates.keys().collect::<Vec<_>>(),
        ["gemini"],
        "only the others: {b}"
    );
    assert_eq!(
        strings(&updates["gemini"]["files"]),
        ["tests/pay_test.rs (2×)"],
        "{b}"
    );
    assert!(
        b["yourLastActivity"]
            .as_str()
            .unwrap()
            .contains("handshake work_complete"),
        "{b}"
    );
    let alerts = strings(&b["alerts"]);
    assert!(
        alerts.iter().any(|a| a.starts_with("test failing")),
        "{alerts:?}"
    );
    assert!(
        alerts.iter().any(|a| a.starts_with("ack needed")),
        "{alerts:?}"
    );
    assert!(
        !alerts.iter().any(|a| a.contains("review")),
        "claude is the driver: {alerts:?}"
    );
    let r = rules(b);
    assert!(r.contains(&"ack_required".to_owned()), "{r:?}");
    assert!(r.contains(&"failing_test_in_your_file".to_owned()), "{r:?}");
    assert!(r.contains(&"ready_task".to_owned()), "{r:?}");
    assert!(!r.contains(&"review_waiting".to_owned()), "{r:?}");
    assert!(
        strings(&b["newIssues"])
            .iter()
            .any(|i| i.contains("API rate limiting")),
        "{b}"
    );
    assert!(b["size"]["rawEvents"].as_i64().unwrap() >= 5, "{b}");
    assert_eq!(b["size"]["rawMessages"], 1);
    assert_eq!(b["size"]["rawChanges"], 2);
    assert!(b["size"]["tokens"].as_i64().unwrap() > 0);

    // Reading is not consuming: the message is still unacknowledged, the briefing says so again.
    let again = resume(&app, &claude, json!({"includeContext": false})).await;
    assert!(again.get("context").is_none());
    assert!(
        strings(&again["briefing"]["alerts"])
            .iter()
            .any(|a| a.starts_with("ack needed"))
    );
    let (_, inbox) = app.get_as(&claude, "/mcp/messages").await;
    assert_eq!(inbox["messages"][0]["acked"], false, "{inbox}");

    // Gemini acted last: nothing of its own is news, and the review waits on it.
    let g = resume(&app, &gemini, json!({})).await;
    let gb = &g["briefing"];
    assert!(gb.get("collaboratorUpdates").is_none(), "{gb}");
    assert!(
        strings(&gb["alerts"])
            .iter()
            .any(|a| a.starts_with("review waiting")),
        "{gb}"
    );
    assert_eq!(
        rules(gb).first().map(String::as_str),
        Some("review_waiting"),
        "{gb}"
    );
    assert_eq!(gb["size"]["rawEvents"], 0, "{gb}");

    // One may brief only oneself; the operator may brief anyone.
    let (s, body) = app
        .post_as(
            &claude,
            "/mcp/session/resume",
            &json!({"participant": "gemini"}),
        )
        .await;
    assert_error(s, &body, StatusCode::FORBIDDEN, "forbidden");
    let op = resume(
        &app,
        "",
        json!({"sessionId": id, "participant": "gemini", "strategy": "quick"}),
    )
    .await;
    assert_eq!(op["briefing"]["strategy"], "quick");
}

async fn a_briefing_fits_its_budget_and_keeps_its_alerts(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = day_one(&app).await;
    // Within the send burst (30).
    for i in 0..25 {
        let (s, b) = app
            .post_as(
                &gemini,
                "/mcp/messages/send",
                &json!({"body": format!("progress note {i}: {}", "detail ".repeat(40))}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let full = resume(
        &app,
        &claude,
        json!({"strategy": "deep", "includeContext": false}),
    )
    .await;
    let full = &full["briefing"];
    let alerts = strings(&full["alerts"]);
    assert!(alerts.len() >= 2, "{full}");
    assert!(full["size"]["tokens"].as_u64().unwrap() > 1_000, "{full}");
    for max in [100, 250, 1_000, 4_000] {
        let got = resume(&app, &claude, json!({"strategy": "deep", "maxTokens": max})).await;
        let b = &got["briefing"];
        let tokens = b["size"]["tokens"].as_u64().unwrap();
        assert!(tokens <= max, "{max}: {tokens}: {b}");
        // The size is what was sent: UTF-8 bytes / 4 of the briefing, rounded up.
        let bytes = serde_json::to_string(b).unwrap().len() as u64;
        assert_eq!(tokens, bytes.div_ceil(4), "{max}");
        assert_eq!(
            strings(&b["alerts"]).len(),
            alerts.len(),
            "{max}: alerts kept: {b}"
        );
        assert_eq!(b["size"]["rawTokens"], full["size"]["rawTokens"]);
        // The context comes along only if it fits what the briefing left; otherwise the
        // answer says so instead.
        match got.get("context") {
            Some(c) => {
                let ctx = (serde_json::to_string(c).unwrap().len() as u64).div_ceil(4);
                assert!(tokens + ctx <= max, "{max}: {tokens} + {ctx}");
            }
            None => assert!(
                got["contextOmitted"]
                    .as_str()
                    .unwrap()
                    .contains("context_get")
            ),
        }
        if max == 100 {
            assert!(got.get("context").is_none(), "{got}");
        }
    }
    for bad in [
        json!({"maxTokens": 50}),
        json!({"strategy": "slow"}),
        json!({"loadMessages": -1}),
    ] {
        let (s, b) = app.post_as(&claude, "/mcp/session/resume", &bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
    }
    let _ = id;
}

async fn a_paused_session_refuses_writes_and_still_briefs(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = app.create_pair("paused").await;
    let status = format!("/mcp/session/{id}/status");
    let (s, b) = app
        .post_as(&claude, &status, &json!({"action": "pause"}))
        .await;
    assert_eq!((s, b["status"].as_str()), (StatusCode::OK, Some("paused")));
    let writes = [
        ("/mcp/context/set", json!({"path": "a", "value": 1})),
        ("/mcp/messages/send", json!({"body": "hello"})),
        ("/mcp/collaborate/task", json!({"description": "x"})),
        (
            "/mcp/collaborate/lock",
            json!({"resource": "file:a.rs", "duration": 60}),
        ),
        (
            "/mcp/collaborate/change",
            json!({"filePath": "a.rs", "before": "a\n", "after": "b\n"}),
        ),
    ];
    let before = app.get_as(&claude, &format!("/mcp/session/{id}")).await.1["lastEventId"].clone();
    for (path, body) in &writes {
        let (s, b) = app.post_as(&claude, path, body).await;
        let e = assert_error(s, &b, StatusCode::CONFLICT, "session_paused");
        assert!(
            e["message"].as_str().unwrap().contains("resume"),
            "{path}: {e}"
        );
    }
    let after = app.get_as(&claude, &format!("/mcp/session/{id}")).await.1["lastEventId"].clone();
    assert_eq!(before, after, "nothing was written");
    // Reads and briefings keep working.
    let (s, _) = app.get_as(&gemini, "/mcp/context/get?path=").await;
    assert_eq!(s, StatusCode::OK);
    let b = resume(&app, &gemini, json!({})).await;
    assert!(
        b["briefing"]["summary"]
            .as_str()
            .unwrap()
            .contains("paused"),
        "{b}"
    );
    // Resuming is an event every participant sees; writes work again.
    let (s, _) = app
        .post_as(&claude, &status, &json!({"action": "resume"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let g = resume(&app, &gemini, json!({})).await;
    assert_eq!(
        g["briefing"]["collaboratorUpdates"]["claude"]["lastAction"], "set the session active",
        "{g}"
    );
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/context/set",
            &json!({"path": "a", "value": 1}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

async fn a_newcomer_is_onboarded_with_the_work_done_and_tasks_that_fit(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, _) = day_one(&app).await;
    let task = |body: Value| {
        let claude = claude.clone();
        let app = &app;
        async move {
            let (s, b) = app.post_as(&claude, "/mcp/collaborate/task", &body).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            b["tasks"][0]["id"].as_i64().unwrap()
        }
    };
    let backend_done =
        task(json!({"description": "Backend service", "assignedTo": "claude"})).await;
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/collaborate/task/update",
            &json!({"taskId": backend_done, "status": "completed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    task(json!({"description": "Create payment form component", "skills": ["react"]})).await;
    task(json!({"description": "Port the worker to Go", "skills": ["go"]})).await;

    let (s, joined) = app
        .post(
            "/mcp/session/join",
            &json!({"sessionId": id, "participant": "cursor", "role": "observer", "skills": ["react"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{joined}");
    let o = &joined["onboarding"];
    assert!(
        o["projectContext"]
            .as_str()
            .unwrap()
            .contains("Stripe payments"),
        "{o}"
    );
    assert_eq!(
        strings(&o["completedWork"]),
        ["#1 Backend service (claude)".replace("#1", &format!("#{backend_done}"))]
    );
    let changes = strings(&o["codebaseChanges"]);
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("tests/pay_test.rs: 2 change(s) by gemini")),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("src/pay.rs: 1 change(s) by claude")),
        "{changes:?}"
    );
    let suggested: Vec<&str> = o["suggestedTasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        suggested.len(),
        1,
        "only what fits cursor's skills: {suggested:?}"
    );
    assert!(
        suggested[0].contains("payment form") && suggested[0].starts_with("ask for a role"),
        "{suggested:?}"
    );
    assert!(
        strings(&o["currentFocus"])
            .iter()
            .any(|f| f == "claude drives"),
        "{o}"
    );

    // Under a budget, and refused outside the accepted range with nothing joined.
    let (s, small) = app
        .post(
            "/mcp/session/join",
            &json!({"sessionId": id, "participant": "codex", "role": "navigator", "maxTokens": 100}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{small}");
    assert!(
        small["onboarding"]["size"]["tokens"].as_u64().unwrap() <= 100,
        "{small}"
    );
    let (s, b) = app
        .post(
            "/mcp/session/join",
            &json!({"sessionId": id, "participant": "devin", "maxTokens": 10}),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    let (_, view) = app.get(&format!("/mcp/session/{id}")).await;
    assert!(
        !view.to_string().contains("devin"),
        "a refused join adds nobody"
    );
}
