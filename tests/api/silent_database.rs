//! An owner whose database host goes silent (packets dropped, not refused: a network gone, a
//! host frozen) stops acting as the owner at its lease's deadline, even while its lease
//! connection waits in a statement no answer will come to. Until stop 30 the keeper only
//! noticed once that call returned (a connect timeout of 5 s, a statement sent into silence:
//! minutes, until TCP gave up), and the hub answered reads from its memory all that time, while
//! another hub could own the database.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use serde_json::json;

use crate::crash::start_hub_on;
use crate::helpers::{Backend, TestDb, both_backends, client, create_session_at};

both_backends!(an_owner_whose_database_went_silent_stops_serving_at_its_deadline);

/// A TCP proxy to the test's PostgreSQL that can go silent: while it is, it moves no byte in
/// either direction and opens no new connection upstream (what it holds waits, as packets
/// dropped by a network would).
struct Silencer {
    port: u16,
    silent: Arc<AtomicBool>,
}

impl Silencer {
    fn start(upstream: String) -> Silencer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let silent = Arc::new(AtomicBool::new(false));
        let quiet = silent.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                let (quiet, upstream) = (quiet.clone(), upstream.clone());
                std::thread::spawn(move || {
                    while quiet.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let Ok(server) = TcpStream::connect(&upstream) else {
                        return;
                    };
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let q2 = quiet.clone();
                    std::thread::spawn(move || pump(c2, s2, &q2));
                    pump(server, client, &quiet);
                });
            }
        });
        Silencer { port, silent }
    }

    fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::Relaxed);
    }
}

/// Copies `from` to `to` until either closes, moving nothing while `silent`.
fn pump(mut from: TcpStream, mut to: TcpStream, silent: &AtomicBool) {
    from.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if silent.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// A context read through `url`, given 1 s: was it answered 200?
async fn read_answered(url: &str, session: &str, token: &str) -> bool {
    client()
        .get(format!(
            "{url}/mcp/context/get?sessionId={session}&path=plan"
        ))
        .timeout(Duration::from_secs(1))
        .bearer_auth(token)
        .send()
        .await
        .is_ok_and(|res| res.status() == StatusCode::OK)
}

async fn an_owner_whose_database_went_silent_stops_serving_at_its_deadline(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    if backend == Backend::Sqlite {
        return; // no network between a hub and its SQLite file
    }
    let upstream = {
        let after = db.url.split('@').nth(1).expect("a host in the URL");
        after.split('/').next().unwrap().to_owned()
    };
    let proxy = Silencer::start(upstream.clone());
    let through_proxy = db
        .url
        .replacen(&upstream, &format!("127.0.0.1:{}", proxy.port), 1);
    let lease = Duration::from_secs(2);
    let (hub, url, _) = start_hub_on(
        &through_proxy,
        "127.0.0.1:0",
        &["--lease-secs", "2", "--message-rate", "100000"],
    );
    let mut hub = Killed(hub);
    let created = create_session_at(&url, &json!({"name": "silent", "participants": ["a"]})).await;
    let session = created["sessionId"].as_str().unwrap().to_owned();
    let token = created["tokens"]["a"].as_str().unwrap().to_owned();
    let (status, body) = {
        let mut res = client()
            .post(format!("{url}/mcp/context/set"))
            .bearer_auth(&token)
            .send_json(&json!({"sessionId": session, "path": "plan", "value": 1}))
            .await
            .expect("an answer");
        (res.status(), res.body().await.unwrap_or_default())
    };
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(read_answered(&url, &session, &token).await);

    // A lease renewal just went through: silence from now on.
    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    proxy.set_silent(true);
    let silent_at = Instant::now();
    let mut last_answered = None;
    while silent_at.elapsed() < Duration::from_secs(12) {
        if read_answered(&url, &session, &token).await {
            last_answered = Some(silent_at.elapsed());
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("silent_database: the last read answered {last_answered:?} into the silence");
    // Its deadline is within a lease of the silence (it counts from when it sent its last
    // renewal); a read begun just before may take the 1 s it is given.
    let bound = lease + Duration::from_millis(1500);
    assert!(
        last_answered.is_some_and(|t| t <= bound),
        "the owner answered reads {last_answered:?} into the silence of its database (lease {lease:?})"
    );

    // The database answers again: the hub takes its lease back and serves.
    proxy.set_silent(false);
    let back = Instant::now();
    while !read_answered(&url, &session, &token).await {
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "the hub did not serve again within 30 s of its database's return"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "silent_database: served again {:?} after the database's return",
        back.elapsed()
    );
    assert!(hub.0.try_wait().unwrap().is_none(), "the hub runs");
}

/// A hub process, killed when the test ends (or fails).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
