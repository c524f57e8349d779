//! The official MCP SDK clients (TypeScript and Python) against the real hub. Their packages are
//! installed on first run (tests/mcp_clients; npm and pip need the package registries).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use collab_hub::Settings;

use crate::helpers::{
    Backend, TestDb, both_backends, clients_dir, npm_ci, pip_install, run_step, spawn_app, start_on,
};

/// `npm ci` once per checkout (pinned by package-lock.json).
pub fn node_clients() -> &'static Result<PathBuf, String> {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    READY.get_or_init(|| {
        let dir = clients_dir();
        npm_ci(&dir, "node_modules/@modelcontextprotocol/sdk/package.json")?;
        Ok(dir)
    })
}

/// A virtualenv with the pinned `mcp` package, once per checkout.
pub fn python_clients() -> &'static Result<PathBuf, String> {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    READY.get_or_init(|| {
        let dir = clients_dir();
        let python = dir.join(".venv/bin/python");
        let marker = dir.join(".venv/.installed-requirements");
        let wanted = std::fs::read_to_string(dir.join("requirements.txt")).unwrap_or_default();
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
            run_step(
                Command::new("python3")
                    .args(["-m", "venv", ".venv"])
                    .current_dir(&dir),
                "python3 -m venv",
            )?;
            pip_install(&python, &dir, &["-r", "requirements.txt"])?;
            std::fs::write(&marker, wanted).map_err(|e| e.to_string())?;
        }
        Ok(python)
    })
}

/// Runs a client script; panics with its whole output unless it exits 0.
pub(crate) async fn run_script(program: PathBuf, args: Vec<String>) {
    let output = actix_web::rt::task::spawn_blocking(move || {
        Command::new(program)
            .args(args)
            .current_dir(clients_dir())
            .output()
            .expect("client script runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "client script failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains(r#""ev":"done","failed":false"#), "{stdout}");
}

both_backends!(
    typescript_sdk_session,
    python_sdk_legacy_session,
    python_sdk_auto_session,
    python_sdk_resumes_when_the_hub_ends_its_stream,
);

async fn typescript_sdk_session(backend: Backend) {
    let dir = node_clients()
        .as_ref()
        .expect("TypeScript SDK installs")
        .clone();
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, _) = app.create_pair("ts sdk").await;
    let args = vec![
        dir.join("ts_scenario.mjs").display().to_string(),
        app.address.clone(),
        id,
        claude,
    ];
    run_script(PathBuf::from("node"), args).await;
}

async fn python_session(backend: Backend, mode: &str) {
    let python = python_clients()
        .as_ref()
        .expect("Python SDK installs")
        .clone();
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, _) = app.create_pair("py sdk").await;
    let script = clients_dir().join("py_scenario.py").display().to_string();
    run_script(
        python,
        vec![script, app.address.clone(), id, claude, mode.into()],
    )
    .await;
}

async fn python_sdk_legacy_session(backend: Backend) {
    python_session(backend, "legacy").await
}

async fn python_sdk_auto_session(backend: Backend) {
    python_session(backend, "auto").await
}

/// SSE polling: the hub ends each GET stream after a second; the SDK reconnects with
/// Last-Event-ID and must see every event exactly once.
async fn python_sdk_resumes_when_the_hub_ends_its_stream(backend: Backend) {
    let python = python_clients()
        .as_ref()
        .expect("Python SDK installs")
        .clone();
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let mut settings = Settings::for_database("unused");
    settings.stream_max_secs = 1;
    let app = start_on(db, settings).await;
    let (id, claude, _) = app.create_pair("py reconnect").await;
    let script = clients_dir().join("py_reconnect.py").display().to_string();
    run_script(python, vec![script, app.address.clone(), id, claude]).await;
}
