//! Each gene of the collaboration genome changes what the hub does: per gene, two sessions
//! that differ only in that gene behave differently at the wire (mapping: `domain::genes`).

use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_error, both_backends, spawn_app};
use crate::mcp_protocol::Mcp;

both_backends!(
    handshake_strictness_sets_the_mode_and_the_review_timeout,
    navigator_autonomy_bounds_a_navigators_change,
    review_requirement_turns_work_into_a_review,
    role_rotation_interval_drives_automatic_rotation,
    checkpoint_frequency_sets_the_save_interval,
    task_allocation_picks_the_assignee,
    a_task_type_draws_a_genome_and_a_plain_session_keeps_the_defaults,
);

/// A claude (driver) + gemini (navigator) session; `extra` is merged into the create body.
async fn pair(app: &TestApp, extra: Value) -> (String, Value, Value) {
    let mut body = json!({"name": "genes", "participants": ["claude", "gemini"]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let (status, created) = app.post("/mcp/session/create", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["sessionId"].as_str().unwrap().to_owned();
    let view = view(app, &id).await;
    (id, created["tokens"].clone(), view)
}

async fn view(app: &TestApp, id: &str) -> Value {
    let (status, v) = app.get(&format!("/mcp/session/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

fn token<'a>(tokens: &'a Value, who: &str) -> &'a str {
    tokens[who].as_str().unwrap()
}

/// A change to `file` touching lines 1..=n.
async fn change(app: &TestApp, token: &str, file: &str, n: u32) -> (StatusCode, Value) {
    let mut diff = format!("--- a{file}\n+++ b{file}\n@@ -1,{n} +1,{n} @@\n");
    for i in 1..=n {
        diff.push_str(&format!("-old {i}\n+new {i}\n"));
    }
    app.post_as(
        token,
        "/mcp/collaborate/change",
        &json!({"filePath": file, "diff": diff}),
    )
    .await
}

async fn step(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, r) = app
        .post_as(token, "/mcp/collaborate/handshake", &body)
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    r
}

async fn work_without_review(app: &TestApp, token: &str) -> Value {
    step(
        app,
        token,
        json!({"step": "work_complete", "changes": ["x"], "needsReview": false}),
    )
    .await
}

async fn handshake_strictness_sets_the_mode_and_the_review_timeout(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, strict, sv) = pair(&app, json!({"genome": {"handshakeStrictness": 0.9}})).await;
    let (_, loose, lv) = pair(&app, json!({"genome": {"handshakeStrictness": 0.2}})).await;
    assert_eq!(
        (sv["handshakeMode"].as_str(), lv["handshakeMode"].as_str()),
        (Some("strict"), Some("loose"))
    );
    // 600 s × 2^(5 × (0.7 − s)): stricter expects a reviewer sooner.
    assert_eq!(sv["reviewTimeoutSecs"], 300, "{sv}");
    assert_eq!(lv["reviewTimeoutSecs"], 3394, "{lv}");
    assert_eq!(sv["genome"]["origin"]["kind"], "explicit");
    assert!(sv["genome"].get("overridden").is_none(), "ran as given");

    let (status, body) = change(&app, token(&strict, "gemini"), "/src/a.rs", 1).await;
    let e = assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "write_permission_denied",
    );
    assert_eq!(e["currentDriver"], "claude");
    let (status, body) = change(&app, token(&loose, "gemini"), "/src/a.rs", 1).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outsidePermissions"], true, "recorded, and alerted");
}

async fn navigator_autonomy_bounds_a_navigators_change(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let genome = |a: f64| json!({"genome": {"handshakeStrictness": 0.2, "navigatorAutonomy": a}});
    let (tight_id, tight, _) = pair(&app, genome(0.1)).await;
    let (_, free, _) = pair(&app, genome(0.9)).await;

    // 0.1: at most 10 lines; 30 are refused with the write-denied shape and nothing is kept.
    let before = view(&app, &tight_id).await["lastEventId"].clone();
    let (status, body) = change(&app, token(&tight, "gemini"), "/src/big.rs", 30).await;
    let e = assert_error(
        status,
        &body,
        StatusCode::FORBIDDEN,
        "write_permission_denied",
    );
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains("30 lines")
            && message.contains("the 10 a navigator may write")
            && message.contains("navigatorAutonomy 0.1")
            && message.contains("suggestion"),
        "{message}"
    );
    assert_eq!(
        (e["currentDriver"].as_str(), e["suggestion"].as_str()),
        (
            Some("claude"),
            Some("Request driver role or submit as suggestion")
        )
    );
    assert_eq!(view(&app, &tight_id).await["lastEventId"], before);
    // Within the limit it is recorded; the driver is not bounded.
    let (status, body) = change(&app, token(&tight, "gemini"), "/src/small.rs", 10).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = change(&app, token(&tight, "claude"), "/src/big.rs", 30).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, ledger) = app
        .get_as(token(&tight, "claude"), "/mcp/collaborate/changes")
        .await;
    let authors: Vec<(&str, &str)> = ledger["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["aiId"].as_str().unwrap(), c["filePath"].as_str().unwrap()))
        .collect();
    assert_eq!(
        authors,
        [("gemini", "/src/small.rs"), ("claude", "/src/big.rs")]
    );

    // 0.9: up to 90 lines: the same 30-line change is recorded.
    let (status, body) = change(&app, token(&free, "gemini"), "/src/big.rs", 30).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["lines"], json!([[1, 30]]));
}

async fn review_requirement_turns_work_into_a_review(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (all_id, all, _) = pair(&app, json!({"genome": {"reviewRequirement": 1.0}})).await;
    let (_, none, _) = pair(&app, json!({"genome": {"reviewRequirement": 0.0}})).await;

    // 1.0: one changed line needs review; the driver is told when it records it.
    let (status, rec) = change(&app, token(&all, "claude"), "/src/a.rs", 1).await;
    assert_eq!(status, StatusCode::OK, "{rec}");
    assert_eq!(rec["needsReview"], true, "{rec}");
    let done = work_without_review(&app, token(&all, "claude")).await;
    assert_eq!(done["handshake"]["state"], "awaiting_review", "{done}");
    assert_eq!(
        done["reviewRequired"],
        "1 file, 1 line since the last review ≥ reviewRequirement 1 threshold (every change)"
    );
    // The log says so too: the step asks for review, with the reason.
    let mut claude = Mcp::new(&app);
    claude.token = Some(token(&all, "claude").to_owned());
    claude.initialize("2025-11-25").await;
    let (_, page) = claude
        .tool("events_poll", json!({"after": 0, "limit": 100}))
        .await;
    let wc = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "handshake")
        .unwrap()
        .clone();
    assert_eq!(
        (
            wc["payload"]["needsReview"].as_bool(),
            wc["payload"]["reviewRequired"].is_string()
        ),
        (Some(true), true),
        "{wc}"
    );
    // After the review, the count starts again: nothing new, nothing to review.
    let hs = done["eventId"].clone();
    let gemini = token(&all, "gemini");
    step(
        &app,
        gemini,
        json!({"step": "review_start", "acknowledgeId": hs}),
    )
    .await;
    step(
        &app,
        gemini,
        json!({"step": "review_complete", "feedback": {"approved": true}}),
    )
    .await;
    step(
        &app,
        token(&all, "claude"),
        json!({"step": "control_received"}),
    )
    .await;
    let again = work_without_review(&app, token(&all, "claude")).await;
    assert_eq!(again["handshake"]["state"], "idle", "{again}");
    assert!(again.get("reviewRequired").is_none(), "{again}");
    assert_eq!(
        view(&app, &all_id).await["coordination"]["handshake"]["state"],
        "idle"
    );

    // 0.0: no size needs review; control stays with the driver.
    let (_, rec) = change(&app, token(&none, "claude"), "/src/a.rs", 300).await;
    assert!(rec.get("needsReview").is_none(), "{rec}");
    let done = work_without_review(&app, token(&none, "claude")).await;
    assert_eq!(done["handshake"]["state"], "idle", "{done}");
    assert!(done.get("reviewRequired").is_none(), "{done}");

    // 0.6 (the default): 4 files or 160 lines, counted across work_complete without review.
    let (_, mid, _) = pair(&app, json!({"genome": {"reviewRequirement": 0.6}})).await;
    let claude = token(&mid, "claude");
    for f in ["/a", "/b", "/c"] {
        let (_, rec) = change(&app, claude, f, 2).await;
        assert!(rec.get("needsReview").is_none(), "{rec}");
    }
    assert_eq!(
        work_without_review(&app, claude).await["handshake"]["state"],
        "idle"
    );
    let (_, rec) = change(&app, claude, "/d", 2).await;
    assert_eq!(rec["needsReview"], true, "the fourth file: {rec}");
    let done = work_without_review(&app, claude).await;
    assert_eq!(done["handshake"]["state"], "awaiting_review", "{done}");
    assert_eq!(
        done["reviewRequired"],
        "4 files, 8 lines since the last review ≥ reviewRequirement 0.6 threshold (4 files or 160 lines)"
    );
}

async fn role_rotation_interval_drives_automatic_rotation(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, _, short) = pair(&app, json!({"genome": {"roleRotationInterval": 5}})).await;
    let (_, _, long) = pair(&app, json!({"genome": {"roleRotationInterval": 60}})).await;
    assert_eq!(
        (
            short["roleRotationInterval"].as_f64(),
            long["roleRotationInterval"].as_f64()
        ),
        (Some(5.0), Some(60.0))
    );
    assert_eq!(
        (
            short["rotationPolicy"].as_str(),
            long["rotationPolicy"].as_str()
        ),
        (Some("automatic"), Some("automatic"))
    );
    // A bred interval is at least 5 minutes; an explicit request field overrides it, says so,
    // and the session rotates at that pace (0.1 minutes: 6 s, so that each driver holds the
    // seat long enough for a loaded machine's polls to see it).
    let (id, _, fast) = pair(
        &app,
        json!({"genome": {"roleRotationInterval": 5}, "roleRotationInterval": 0.1}),
    )
    .await;
    assert_eq!(
        fast["genome"]["overridden"],
        json!(["roleRotationInterval"])
    );
    assert_eq!(fast["rotationPolicy"], "automatic");
    assert_eq!(fast["driver"], "claude");
    let mut driver = String::new();
    for _ in 0..200 {
        driver = view(&app, &id).await["driver"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if driver == "gemini" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(driver, "gemini", "rotated within ~20 s");
}

async fn checkpoint_frequency_sets_the_save_interval(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, _, often) = pair(&app, json!({"genome": {"checkpointFrequency": 1}})).await;
    let (_, _, rarely) = pair(&app, json!({"genome": {"checkpointFrequency": 10}})).await;
    assert_eq!(
        (
            often["saveInterval"].as_u64(),
            rarely["saveInterval"].as_u64()
        ),
        (Some(60), Some(600))
    );
    assert!(often["genome"].get("overridden").is_none());
    let (_, _, given) = pair(
        &app,
        json!({"genome": {"checkpointFrequency": 1}, "saveInterval": 300}),
    )
    .await;
    assert_eq!(given["saveInterval"], 300);
    assert_eq!(given["genome"]["overridden"], json!(["saveInterval"]));
}

async fn task_allocation_picks_the_assignee(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // The same team, the same unassigned task; only the gene differs.
    let mut assignees = Vec::new();
    for allocation in ["roundRobin", "skillBased"] {
        let (status, created) = app
            .post(
                "/mcp/session/create",
                &json!({"name": "tasks", "genome": {"taskAllocation": allocation}, "participants": {
                    "claude": {"role": "driver", "skills": ["rust", "backend"]},
                    "gemini": {"role": "navigator", "skills": ["docs", "typescript"]},
                    "cursor": {"role": "navigator", "skills": ["typescript", "frontend"]}}}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["taskAllocation"], allocation, "{created}");
        let claude = created["tokens"]["claude"].as_str().unwrap();
        let (status, made) = app
            .post_as(
                claude,
                "/mcp/collaborate/task",
                &json!({"description": "Write the API docs", "skills": ["docs", "typescript"]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{made}");
        assert!(made["tasks"][0]["assignedTo"].is_null(), "{made}");
        let (status, assigned) = app
            .post_as(
                claude,
                "/mcp/collaborate/task/assign",
                &json!({"taskId": made["tasks"][0]["id"]}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{assigned}");
        assignees.push(
            assigned["tasks"][0]["assignedTo"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // roundRobin: the first worker by id; skillBased: the best skill overlap.
    assert_eq!(assignees, ["claude", "gemini"]);
}

async fn a_task_type_draws_a_genome_and_a_plain_session_keeps_the_defaults(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, _, bred) = pair(&app, json!({"taskType": "refactoring"})).await;
    let origin = &bred["genome"]["origin"];
    assert_eq!(origin["kind"], "population", "{bred}");
    assert!(origin["memberId"].is_u64(), "{origin}");
    assert_eq!(bred["genome"]["taskType"], "refactoring");
    assert_eq!(bred["rotationPolicy"], "automatic");
    let (_, _, plain) = pair(&app, json!({})).await;
    assert_eq!(plain["genome"]["origin"]["kind"], "default", "{plain}");
    assert_eq!(plain["rotationPolicy"], "manual");
    assert_eq!(plain["handshakeMode"], "strict");
    assert_eq!(plain["saveInterval"], 600, "checkpointFrequency 10 minutes");
}
