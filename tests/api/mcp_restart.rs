//! A hub restart in the middle of an official SDK client's session: the client carries on with
//! the same `Mcp-Session-Id`, without initializing again, because MCP sessions live in the
//! database. The hub is a child process on a fixed port (the client keeps its URL); the
//! TypeScript client sees a graceful restart (SIGTERM, a deploy), the Python client a crash
//! (`kill -9`).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::crash::{start_hub_at, terminate};
use crate::helpers::{Backend, TestDb, both_backends, clients_dir, create_session_at};
use crate::mcp_sdk::{node_clients, python_clients};

both_backends!(
    typescript_sdk_carries_on_through_a_graceful_restart,
    python_sdk_carries_on_through_a_crash_and_restart,
);

enum Restart {
    Graceful,
    Kill9,
}

/// A port that was free a moment ago, to restart the hub on.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Creates the concept's pair session on the hub at `url`: (id, claude's token).
async fn create_pair(url: &str) -> (String, String) {
    let body = create_session_at(
        url,
        &json!({ "name": "restart", "participants": ["claude", "gemini"] }),
    )
    .await;
    (
        body["sessionId"].as_str().unwrap().to_owned(),
        body["tokens"]["claude"].as_str().unwrap().to_owned(),
    )
}

/// Runs `script` against a hub on `db`; restarts the hub when the script says `restart`, then
/// lets it go on. Panics with the script's whole output unless every check held.
async fn run_through_restart(backend: Backend, program: PathBuf, script: &str, how: Restart) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let bind = format!("127.0.0.1:{}", free_port());
    let (hub, url) = start_hub_at(&db, &bind);
    let (id, claude) = create_pair(&url).await;
    let mut child = Command::new(program)
        .args([
            clients_dir().join(script).display().to_string(),
            url.clone(),
            id,
            claude,
        ])
        .current_dir(clients_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client script starts");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let mut hub = Some(hub);
    let mut restarted: Option<Child> = None;
    let started = std::time::Instant::now();
    loop {
        let line = match rx.try_recv() {
            Ok(line) => line,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "{script} stalled:\n{}",
                    lines.join("\n")
                );
                actix_web::rt::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
        };
        lines.push(line.clone());
        if line.contains(r#""ev":"restart""#) {
            let mut old = hub.take().expect("one restart");
            match how {
                Restart::Graceful => {
                    let status = terminate(&mut old).await.expect("hub stops on SIGTERM");
                    assert!(status.success(), "SIGTERM exit: {status}");
                }
                Restart::Kill9 => {
                    old.kill().expect("SIGKILL");
                    old.wait().unwrap();
                }
            }
            let (new, new_url) = start_hub_at(&db, &bind);
            assert_eq!(new_url, url, "the hub came back on its address");
            restarted = Some(new);
            stdin.write_all(b"go\n").unwrap();
            stdin.flush().unwrap();
        }
    }
    let output = child.wait_with_output().unwrap();
    for mut hub in hub.into_iter().chain(restarted) {
        let _ = hub.kill();
        let _ = hub.wait();
    }
    let stdout = lines.join("\n");
    assert!(
        output.status.success() && stdout.contains(r#""ev":"done","failed":false"#),
        "{script} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(r#""ev":"restart""#), "{stdout}");
}

async fn typescript_sdk_carries_on_through_a_graceful_restart(backend: Backend) {
    node_clients().as_ref().expect("TypeScript SDK installs");
    run_through_restart(
        backend,
        PathBuf::from("node"),
        "ts_restart.mjs",
        Restart::Graceful,
    )
    .await;
}

async fn python_sdk_carries_on_through_a_crash_and_restart(backend: Backend) {
    let python = python_clients()
        .as_ref()
        .expect("Python SDK installs")
        .clone();
    run_through_restart(backend, python, "py_restart.py", Restart::Kill9).await;
}
