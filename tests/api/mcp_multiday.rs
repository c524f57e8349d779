//! The concept's "Practical Example: Multi-Day Feature Development" end to end with the official
//! SDK clients (tests/mcp_clients/ts_multiday.mjs and py_multiday.py): day 1 claude and gemini
//! build a payment gateway and pause; day 2 each resumes and is briefed on the other's work;
//! day 3 cursor joins as an observer and is onboarded. The hub restarts on the same database
//! before day 2 and before day 3; each day is one run of the script, which hands what the next
//! day needs back as a `{"ev":"state"}` line.

use std::path::{Path, PathBuf};
use std::process::Command;

use actix_web::http::StatusCode;
use collab_hub::Settings;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, both_backends, clients_dir, spawn_app, start_on};
use crate::mcp_sdk::{node_clients, python_clients};

both_backends!(typescript_sdk_multiday, python_sdk_multiday);

async fn typescript_sdk_multiday(backend: Backend) {
    let dir = node_clients()
        .as_ref()
        .expect("TypeScript SDK installs")
        .clone();
    multiday(backend, PathBuf::from("node"), dir.join("ts_multiday.mjs")).await;
}

async fn python_sdk_multiday(backend: Backend) {
    let python = python_clients()
        .as_ref()
        .expect("Python SDK installs")
        .clone();
    multiday(backend, python, clients_dir().join("py_multiday.py")).await;
}

async fn multiday(backend: Backend, program: PathBuf, script: PathBuf) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (status, created) = app
        .post(
            "/mcp/session/create",
            &json!({
                "name": "Payment Gateway Integration",
                "project": "payments",
                "participants": ["claude", "gemini"],
                "handshakeMode": "loose",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["sessionId"].as_str().expect("sessionId").to_owned();
    let claude = created["tokens"]["claude"]
        .as_str()
        .expect("claude's token")
        .to_owned();
    let state = json!({
        "sessionId": id,
        "tokens": { "claude": claude, "gemini": created["tokens"]["gemini"] },
    });

    let state = run_day(&program, &script, "day1", &app, &state).await;
    let app = restart(app).await;
    assert_eq!(session(&app, &id, &claude).await["status"], "paused");

    let state = run_day(&program, &script, "day2", &app, &state).await;
    let app = restart(app).await;
    assert_eq!(session(&app, &id, &claude).await["status"], "active");

    run_day(&program, &script, "day3", &app, &state).await;
    let view = session(&app, &id, &claude).await;
    let cursor = view["participants"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["aiId"] == "cursor"))
        .unwrap_or_else(|| panic!("cursor joined: {view}"));
    assert_eq!(cursor["role"], "observer", "{view}");
}

/// The end of one day: the hub stops and starts again on the same database (a new address).
async fn restart(app: TestApp) -> TestApp {
    let db = app.stop().await;
    start_on(db, Settings::for_database("unused")).await
}

async fn session(app: &TestApp, id: &str, token: &str) -> Value {
    let (status, body) = app.get_as(token, &format!("/mcp/session/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Runs one day of the script against `app`; panics with its whole output unless every check
/// held. Returns the state it hands to the next day.
async fn run_day(
    program: &Path,
    script: &Path,
    day: &'static str,
    app: &TestApp,
    state: &Value,
) -> Value {
    let mut command = Command::new(program);
    command
        .arg(script)
        .args(["--phase", day, &app.address, &state.to_string()])
        .current_dir(clients_dir());
    let output = actix_web::rt::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("client script runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(r#""ev":"done","failed":false"#),
        "{} {day} failed ({}):\n{stdout}\n{stderr}",
        script.display(),
        output.status
    );
    stdout
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["ev"] == "state")
        .map(|line| line["state"].clone())
        .unwrap_or_else(|| panic!("{day}: no state line:\n{stdout}"))
}
