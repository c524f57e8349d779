//! The driver/navigator handshake with two official TypeScript SDK clients in a strict-mode
//! session: a refused write becomes a suggestion, the concept's four steps with what each stream
//! sees, refusals, and a role swap at the boundary with tools/list_changed
//! (tests/mcp_clients/ts_handshake.mjs; the same handshake at the wire level is in coordination.rs).

use std::path::PathBuf;

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, both_backends, spawn_app};
use crate::mcp_sdk::{node_clients, run_script};

both_backends!(typescript_sdk_handshake);

async fn typescript_sdk_handshake(backend: Backend) {
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
            &json!({"name": "pair", "handshakeMode": "strict", "participants": {
                "claude": {"role": "driver"}, "gemini": {"role": "navigator"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let mut args = vec![
        dir.join("ts_handshake.mjs").display().to_string(),
        app.address.clone(),
        body["sessionId"].as_str().expect("sessionId").to_owned(),
    ];
    for ai in ["claude", "gemini"] {
        let token = body["tokens"][ai].as_str();
        args.push(
            token
                .unwrap_or_else(|| panic!("no token for {ai}: {body}"))
                .to_owned(),
        );
    }
    run_script(PathBuf::from("node"), args).await;
}
