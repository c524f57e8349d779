//! The hub as a child process: `kill -9` while many clients create sessions, then restart on the
//! same database and find every session whose creation was acknowledged. And SIGTERM: stops
//! cleanly, with exit status 0, after finishing what was in flight.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestDb, both_backends, client};

both_backends!(
    kill_9_loses_no_acknowledged_session,
    sigterm_finishes_in_flight_writes,
    sigterm_ends_open_event_streams,
);

const CLIENTS: usize = 8;

/// Starts the built binary on port 0 and returns it with its base URL.
fn start_hub(db: &TestDb) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_collab-hub"))
        .args(["--bind", "127.0.0.1:0", "--database-url", &db.url])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn collab-hub");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                let _ = tx.send(url);
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("hub printed its address");
    (child, url)
}

/// Sends SIGTERM and waits (without blocking the runtime) up to 30 s for the exit status.
async fn terminate(child: &mut Child) -> Option<std::process::ExitStatus> {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    for _ in 0..3000 {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Clients create sessions as fast as they can until `stop`; returns the acknowledged
/// (id, name) pairs.
async fn hammer(url: &str, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<(String, String)>>>) {
    let count = Arc::new(AtomicUsize::new(0));
    let workers = (0..CLIENTS).map(|c| {
        let (url, stop, acked, count) =
            (url.to_owned(), stop.clone(), acked.clone(), count.clone());
        async move {
            let http = client();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("client {c} session {i}");
                i += 1;
                let body = json!({ "name": name, "participants": ["claude", "gemini"] });
                let Ok(mut res) = http
                    .post(format!("{url}/mcp/session/create"))
                    .send_json(&body)
                    .await
                else {
                    break; // the hub is gone
                };
                if res.status() != StatusCode::CREATED {
                    continue;
                }
                let Ok(bytes) = res.body().await else { break };
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                acked
                    .lock()
                    .unwrap()
                    .push((v["sessionId"].as_str().unwrap().to_owned(), name));
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    futures::future::join_all(workers).await;
}

async fn assert_all_present(url: &str, acked: &[(String, String)]) {
    let http = client();
    for (id, name) in acked {
        let mut res = http
            .get(format!("{url}/mcp/session/{id}"))
            .send()
            .await
            .expect("restarted hub answers");
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "acknowledged session {id} was lost"
        );
        let v: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
        assert_eq!(v["name"], name.as_str());
        assert_eq!(v["lastEventId"], 1);
    }
}

async fn kill_9_loses_no_acknowledged_session(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let (mut child, url) = start_hub(&db);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let load = hammer(&url, stop.clone(), acked.clone());
    let killer = {
        let acked = acked.clone();
        async move {
            // Kill mid-stream: after a good number of acknowledged writes, with more in flight.
            for _ in 0..600 {
                if acked.lock().unwrap().len() >= 150 {
                    break;
                }
                actix_web::rt::time::sleep(Duration::from_millis(10)).await;
            }
            child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
            child.wait().unwrap();
            stop.store(true, Ordering::Relaxed);
        }
    };
    futures::join!(load, killer);
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 20,
        "too few writes before the kill: {}",
        acked.len()
    );
    eprintln!(
        "{backend:?}: {} sessions acknowledged before kill -9",
        acked.len()
    );

    let (mut child, url) = start_hub(&db);
    assert_all_present(&url, &acked).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

async fn sigterm_finishes_in_flight_writes(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let (mut child, url) = start_hub(&db);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let load = hammer(&url, stop.clone(), acked.clone());
    let status = Arc::new(Mutex::new(None));
    let terminator = {
        let (acked, status) = (acked.clone(), status.clone());
        async move {
            for _ in 0..600 {
                if acked.lock().unwrap().len() >= 50 {
                    break;
                }
                actix_web::rt::time::sleep(Duration::from_millis(10)).await;
            }
            *status.lock().unwrap() = terminate(&mut child).await;
            stop.store(true, Ordering::Relaxed);
        }
    };
    futures::join!(load, terminator);
    let status = status.lock().unwrap().expect("hub exited after SIGTERM");
    assert!(status.success(), "hub exited with {status}");
    let acked = acked.lock().unwrap().clone();
    let (mut child, url) = start_hub(&db);
    assert_all_present(&url, &acked).await;
    child.kill().unwrap();
    child.wait().unwrap();
}

/// An agent's open GET stream never ends by itself; SIGTERM must end it rather than wait out
/// the 30 s grace period for in-flight requests.
async fn sigterm_ends_open_event_streams(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let (mut child, url) = start_hub(&db);
    let http = client();
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}});
    let res = http
        .post(format!("{url}/mcp"))
        .send_json(&init)
        .await
        .unwrap();
    let sid = res
        .headers()
        .get("mcp-session-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let stream = http
        .get(format!("{url}/mcp"))
        .insert_header(("accept", "text/event-stream"))
        .insert_header(("mcp-session-id", sid))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let started = std::time::Instant::now();
    let status = terminate(&mut child).await;
    let status = status.expect("hub exited");
    assert!(status.success(), "{status}");
    // Far below the 30 s grace the server would otherwise wait for the stream.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    drop(stream);
}
