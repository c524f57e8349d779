//! Three official TypeScript SDK clients (claude, gemini, cursor) in one session: who sees which
//! message, threads, a non-interruptible checkpoint, offline catch-up, a compare-and-set race
//! (tests/mcp_clients/ts_team.mjs).

use std::path::PathBuf;

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, both_backends, spawn_app};
use crate::mcp_sdk::{node_clients, run_script};

both_backends!(typescript_sdk_team);

async fn typescript_sdk_team(backend: Backend) {
    let dir = node_clients()
        .as_ref()
        .expect("TypeScript SDK installs")
        .clone();
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (status, body) = app
        .post(
            "/mcp/session/create",
            &json!({ "name": "ts team", "participants": ["claude", "gemini", "cursor"] }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut args = vec![
        dir.join("ts_team.mjs").display().to_string(),
        app.address.clone(),
        body["sessionId"].as_str().expect("sessionId").to_owned(),
    ];
    for ai in ["claude", "gemini", "cursor"] {
        let token = body["tokens"][ai].as_str();
        args.push(
            token
                .unwrap_or_else(|| panic!("no token for {ai}: {body}"))
                .to_owned(),
        );
    }
    run_script(PathBuf::from("node"), args).await;
}
