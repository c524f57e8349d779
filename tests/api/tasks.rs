//! Tasks at the wire level: the DAG rules, every assignment strategy, handoff and claim with
//! context, locks released with their task, and a restart.

use actix_web::http::StatusCode;
use collab_hub::Settings;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_error, both_backends, spawn_app, start_on};
use crate::mcp_protocol::Mcp;

both_backends!(
    the_task_dag_holds,
    every_assignment_strategy,
    handoff_claim_and_task_locks_survive_a_restart,
);

async fn team(app: &TestApp, allocation: &str) -> (String, Value) {
    let (status, body) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "tasks", "taskAllocation": allocation, "participants": {
                "claude": {"role": "driver", "skills": ["rust", "backend"]},
                "gemini": {"role": "navigator", "skills": ["docs", "typescript"]},
                "cursor": {"role": "navigator", "skills": ["typescript", "frontend"]},
                "watcher": {"role": "observer"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (
        body["sessionId"].as_str().unwrap().to_owned(),
        body["tokens"].clone(),
    )
}

fn t(tokens: &Value, who: &str) -> String {
    tokens[who].as_str().unwrap().to_owned()
}

async fn task(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    app.post_as(token, &format!("/mcp/collaborate/task{path}"), &body)
        .await
}

async fn the_task_dag_holds(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, tokens) = team(&app, "loadBalanced").await;
    let claude = t(&tokens, "claude");
    // The concept's task with subtasks.
    let (status, made) = task(&app, &claude, "", json!({"description": "Refactor authentication module", "assignedTo": "claude",
        "subtasks": ["Update auth service", "Add JWT tests"], "estimatedDuration": "30m", "metadata": {"priority": "high"}})).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let ids: Vec<i64> = made["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    let (main, sub1, sub2) = (ids[0], ids[1], ids[2]);
    assert_eq!(made["tasks"][1]["parent"], main);
    assert_eq!(made["tasks"][0]["estimatedSecs"], 1800);
    let (_, docs) = task(
        &app,
        &claude,
        "",
        json!({"description": "Document the new auth flow", "dependencies": [main]}),
    )
    .await;
    let docs = docs["tasks"][0]["id"].as_i64().unwrap();

    // A dependency must complete first; a parent waits for its subtasks.
    let (status, body) = task(
        &app,
        &claude,
        "/update",
        json!({"taskId": docs, "status": "in_progress"}),
    )
    .await;
    let e = assert_error(status, &body, StatusCode::CONFLICT, "dependencies_open");
    assert!(e["message"].as_str().unwrap().contains(&main.to_string()));
    let (status, body) = task(
        &app,
        &claude,
        "/update",
        json!({"taskId": main, "status": "completed"}),
    )
    .await;
    let e = assert_error(status, &body, StatusCode::CONFLICT, "subtasks_open");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{sub1}, {sub2}")),
        "{e}"
    );
    // Cycles and missing dependencies are refused; nothing is written.
    let before = app.get(&format!("/mcp/session/{id}")).await.1["lastEventId"]
        .as_i64()
        .unwrap();
    let (status, body) = task(
        &app,
        &claude,
        "/update",
        json!({"taskId": main, "dependencies": [docs]}),
    )
    .await;
    assert_error(status, &body, StatusCode::CONFLICT, "dependency_cycle");
    let (status, body) = task(
        &app,
        &claude,
        "",
        json!({"description": "x", "dependencies": [987654]}),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_field");
    let (status, body) = task(
        &app,
        &claude,
        "/update",
        json!({"taskId": sub1, "status": "blocked"}),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_field");
    let (status, body) = task(
        &app,
        &t(&tokens, "watcher"),
        "",
        json!({"description": "observers read"}),
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let (status, body) = task(&app, &claude, "/teleport", json!({"taskId": main})).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "no_route");
    assert_eq!(
        app.get(&format!("/mcp/session/{id}")).await.1["lastEventId"]
            .as_i64()
            .unwrap(),
        before
    );

    // Blocked with a reason, then the whole tree completes in order.
    let (status, blocked) = task(
        &app,
        &claude,
        "/update",
        json!({"taskId": sub1, "status": "blocked", "reason": "waiting for API keys"}),
    )
    .await;
    assert_eq!(
        (status, blocked["tasks"][0]["blockedReason"].as_str()),
        (StatusCode::OK, Some("waiting for API keys"))
    );
    for tid in [sub1, sub2, main, docs] {
        let (status, done) = task(
            &app,
            &claude,
            "/update",
            json!({"taskId": tid, "status": "completed"}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{done}");
        assert!(done["tasks"][0]["completedAt"].is_string());
    }
    let (status, body) = task(
        &app,
        &claude,
        "/update",
        json!({"taskId": main, "status": "in_progress"}),
    )
    .await;
    assert_error(status, &body, StatusCode::CONFLICT, "task_completed");
    let (_, all) = app
        .get_as(&claude, "/mcp/collaborate/tasks?status=completed")
        .await;
    assert_eq!(all["tasks"].as_array().unwrap().len(), 4);
    // One task by id, with the README's `id=` as well as `taskId=`.
    for key in ["id", "taskId"] {
        let (status, one) = app
            .get_as(&claude, &format!("/mcp/collaborate/tasks?{key}={main}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{key}: {one}");
        assert_eq!(one["tasks"][0]["id"], main, "{key}: {one}");
    }
}

async fn every_assignment_strategy(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, tokens) = team(&app, "skillBased").await;
    let claude = t(&tokens, "claude");
    let assignee = |v: &Value| {
        v["tasks"][0]["assignedTo"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    // skillBased (the session's default when `assign` names no one): best skill overlap.
    let (_, a) = task(
        &app,
        &claude,
        "",
        json!({"description": "Write the API docs", "skills": ["docs", "typescript"]}),
    )
    .await;
    let (status, assigned) = task(
        &app,
        &claude,
        "/assign",
        json!({"taskId": a["tasks"][0]["id"]}),
    )
    .await;
    assert_eq!(
        (status, assignee(&assigned)),
        (StatusCode::OK, "gemini".to_owned()),
        "{assigned}"
    );
    let (_, b) = task(
        &app,
        &claude,
        "",
        json!({"description": "Frontend form", "skills": ["frontend"], "strategy": "skillBased"}),
    )
    .await;
    assert_eq!(assignee(&b), "cursor");
    // loadBalanced: the one with the fewest open tasks (claude has none).
    let (_, c) = task(
        &app,
        &claude,
        "",
        json!({"description": "Anything", "strategy": "loadBalanced"}),
    )
    .await;
    assert_eq!(assignee(&c), "claude");
    // roundRobin: in id order, wrapping, never the observer.
    let mut seen = Vec::new();
    for n in 0..4 {
        let (_, r) = task(
            &app,
            &claude,
            "",
            json!({"description": format!("chore {n}"), "strategy": "roundRobin"}),
        )
        .await;
        seen.push(assignee(&r));
    }
    assert_eq!(seen, ["claude", "cursor", "gemini", "claude"]);
    // random: always one of the workers.
    for n in 0..5 {
        let (_, r) = task(
            &app,
            &claude,
            "",
            json!({"description": format!("dice {n}"), "strategy": "random"}),
        )
        .await;
        assert!(
            ["claude", "gemini", "cursor"].contains(&assignee(&r).as_str()),
            "{r}"
        );
    }
    // The assignee is told (directed, important); only the driver assigns.
    let mut g = Mcp::new(&app);
    g.token = Some(t(&tokens, "gemini"));
    g.initialize("2025-11-25").await;
    let (_, page) = g
        .tool("events_poll", json!({"after": 0, "limit": 200}))
        .await;
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "task_assigned"
                && e["to"] == "gemini"
                && e["priority"] == "important"),
        "{page}"
    );
    let (err, msg) = g
        .tool(
            "task",
            json!({"action": "assign", "taskId": c["tasks"][0]["id"], "assignedTo": "gemini"}),
        )
        .await;
    assert!(
        err && msg.as_str().unwrap().contains("only the driver"),
        "{msg}"
    );
    let (status, body) = task(
        &app,
        &claude,
        "/assign",
        json!({"taskId": c["tasks"][0]["id"], "assignedTo": "watcher"}),
    )
    .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_field");
}

async fn handoff_claim_and_task_locks_survive_a_restart(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, tokens) = team(&app, "loadBalanced").await;
    let (claude, gemini) = (t(&tokens, "claude"), t(&tokens, "gemini"));
    let mut c = Mcp::new(&app);
    c.token = Some(claude.clone());
    c.initialize("2025-11-25").await;
    let (err, made) = c.tool("task", json!({"action": "create", "description": "Migrate sessions table", "assignedTo": "claude"})).await;
    assert!(!err, "{made}");
    let tid = made["tasks"][0]["id"].as_i64().unwrap();
    let (err, started) = c
        .tool(
            "task",
            json!({"action": "update", "taskId": tid, "status": "in_progress"}),
        )
        .await;
    assert!(
        !err && started["tasks"][0]["status"] == "in_progress",
        "{started}"
    );
    // A lock taken for the task.
    let (err, lock) = c
        .tool(
            "lock",
            json!({"action": "acquire", "resource": "/migrations/", "taskId": tid}),
        )
        .await;
    assert!(!err, "{lock}");
    // Claude hands the task off with what the next worker needs.
    let (err, off) = c.tool("task", json!({"action": "handoff", "taskId": tid, "context": {"notes": "up to step 3", "files": ["/migrations/004.sql"], "state": {"step": 3}}})).await;
    assert!(!err, "{off}");
    assert_eq!(
        (
            off["tasks"][0]["assignedTo"].is_null(),
            off["tasks"][0]["status"].as_str()
        ),
        (true, Some("pending"))
    );
    let db = app.stop().await;
    let app = start_on(db, Settings::for_database("unused")).await;

    // After a restart gemini claims it and finds the context.
    let mut g = Mcp::new(&app);
    g.token = Some(gemini.clone());
    g.initialize("2025-11-25").await;
    let (err, claimed) = g
        .tool("task", json!({"action": "claim", "taskId": tid}))
        .await;
    assert!(!err, "{claimed}");
    let task = &claimed["tasks"][0];
    assert_eq!(
        (task["assignedTo"].as_str(), task["status"].as_str()),
        (Some("gemini"), Some("in_progress"))
    );
    assert_eq!(task["handoff"]["context"]["state"]["step"], 3);
    assert_eq!(task["handoff"]["from"], "claude");
    let (err, msg) = g
        .tool("task", json!({"action": "claim", "taskId": tid}))
        .await;
    assert!(
        err && msg.as_str().unwrap().contains("task_assigned"),
        "{msg}"
    );
    let (_, got) = g
        .tool("task", json!({"action": "get", "taskId": tid}))
        .await;
    assert_eq!(got["tasks"][0]["assignedTo"], "gemini");
    // A change recorded for the task carries it; an unknown task is refused.
    let change = |task: i64| json!({"filePath": "/migrations/004.sql", "diff": "@@ -1 +1 @@\n-a\n+b\n", "taskId": task});
    let (status, rec) = app
        .post_as(&claude, "/mcp/collaborate/change", &change(tid))
        .await;
    assert_eq!(status, StatusCode::OK, "{rec}");
    let (_, ledger) = g
        .tool(
            "changes",
            json!({"action": "list", "filePath": "/migrations/004.sql"}),
        )
        .await;
    assert_eq!(ledger["changes"][0]["taskId"], tid);
    let (status, body) = app
        .post_as(&claude, "/mcp/collaborate/change", &change(999_999))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_field");
    // Completing the task releases the lock taken for it.
    let (err, done) = g
        .tool(
            "task",
            json!({"action": "update", "taskId": tid, "status": "completed"}),
        )
        .await;
    assert!(!err, "{done}");
    let (_, locks) = app
        .get_as(&claude, &format!("/mcp/collaborate/locks?sessionId={id}"))
        .await;
    assert!(
        locks["locks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["id"] != lock["id"]),
        "{locks}"
    );
    let (_, page) = g
        .tool("events_poll", json!({"after": lock["id"], "limit": 200}))
        .await;
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "resource_released" && e["payload"]["reason"] == "task_done"),
        "{page}"
    );
}
