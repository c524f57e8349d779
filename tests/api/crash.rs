//! The hub as a child process: `kill -9` while many clients create sessions, then restart on the
//! same database and find every session whose creation was acknowledged; `kill -9` while a
//! session completes tasks whose locks another session of the project waits for, then find
//! tasks and locks consistent. And SIGTERM: stops cleanly, with exit status 0, after finishing
//! what was in flight.

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
    kill_9_during_task_completions_keeps_tasks_and_locks_consistent,
    sigterm_right_after_start_stops_gracefully,
    sigterm_answers_waiting_long_polls,
);

const CLIENTS: usize = 8;

/// Starts the built binary on port 0 and returns it with its base URL.
pub(crate) fn start_hub(db: &TestDb) -> (Child, String) {
    start_hub_at(db, "127.0.0.1:0")
}

/// Starts the built binary listening on `bind` and returns it with its base URL.
pub(crate) fn start_hub_at(db: &TestDb, bind: &str) -> (Child, String) {
    let (child, url, _) = start_hub_with(db, bind, &[]);
    (child, url)
}

/// Starts the built binary listening on `bind` with `extra` flags; returns it with its base
/// URL and the whole line it printed when it started listening.
pub(crate) fn start_hub_with(db: &TestDb, bind: &str, extra: &[&str]) -> (Child, String, String) {
    start_hub_on(&db.url, bind, extra)
}

/// `start_hub_with`, on the database at `database_url`.
pub(crate) fn start_hub_on(
    database_url: &str,
    bind: &str,
    extra: &[&str],
) -> (Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_collab-hub"))
        .args(["--bind", bind, "--database-url", database_url])
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("HUB_LOG").unwrap_or("warn".into()),
        )
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
                let _ = tx.send((url, line.clone()));
            }
        }
    });
    let (url, line) = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("hub printed its address");
    (child, url, line)
}

/// Sends SIGTERM and waits (without blocking the runtime) up to 30 s for the exit status.
pub(crate) async fn terminate(child: &mut Child) -> Option<std::process::ExitStatus> {
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

/// An agent waiting in `events_poll {waitSecs: 50}` gets its (empty) page when the hub is told
/// to stop, and the hub exits soon after: before, the stop waited for the poll until the 30 s
/// grace ran out and then cut it, so a deploy stalled that long for every waiting agent, and
/// the agent got no answer.
async fn sigterm_answers_waiting_long_polls(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let (child, url) = start_hub(&db);
    let mut child = KillOnDrop(child);
    let created = crate::helpers::create_session_at(
        &url,
        &json!({"name": "poll", "participants": ["claude", "gemini"]}),
    )
    .await;
    let mut agent = crate::mcp_protocol::Mcp::at(&url);
    agent.token = Some(created["tokens"]["gemini"].as_str().unwrap().to_owned());
    agent.initialize("2025-06-18").await;
    let (failed, page) = agent.tool("events_poll", json!({})).await;
    assert!(!failed, "{page}");
    let newest = page["lastEventId"].as_i64().expect("lastEventId");
    let poll = async {
        let (failed, page) = agent
            .tool("events_poll", json!({"after": newest, "waitSecs": 50}))
            .await;
        (failed, page, std::time::Instant::now())
    };
    let stop = async {
        // Long enough for the poll to find nothing and wait.
        actix_web::rt::time::sleep(Duration::from_millis(500)).await;
        let started = std::time::Instant::now();
        (terminate(&mut child.0).await, started)
    };
    let ((failed, page, answered), (status, started)) = futures::join!(poll, stop);
    let status = status.expect("the hub exited within 30 s");
    assert!(status.success(), "{status}");
    assert!(!failed, "the poll is answered, not cut: {page}");
    assert_eq!(page["events"], json!([]), "{page}");
    assert!(answered > started, "the poll waited for the stop: {page}");
    let (answered, exited) = (answered.duration_since(started), started.elapsed());
    eprintln!(
        "crash: SIGTERM answered the waiting poll in {answered:?}; the hub exited in {exited:?}"
    );
    assert!(
        exited < Duration::from_secs(15),
        "the stop waited for the poll: {exited:?} (30 s grace)"
    );
}

/// One REST call with a participant's token; `None` when the hub did not answer (it is gone).
async fn call_as(
    http: &awc::Client,
    url: &str,
    token: &str,
    path: &str,
    body: Option<&Value>,
) -> Option<(StatusCode, Value)> {
    let mut req = match body {
        Some(_) => http.post(format!("{url}{path}")),
        None => http.get(format!("{url}{path}")),
    };
    if !token.is_empty() {
        req = req.bearer_auth(token);
    }
    let mut res = match body {
        Some(b) => req.send_json(b).await,
        None => req.send().await,
    }
    .ok()?;
    let status = res.status();
    // Answered means committed: the body may still be cut off by the kill.
    let bytes = res.body().limit(16 * 1024 * 1024).await.unwrap_or_default();
    Some((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// The same, for a hub that must answer.
pub(crate) async fn rest(
    http: &awc::Client,
    url: &str,
    token: &str,
    path: &str,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    call_as(http, url, token, path, body)
        .await
        .unwrap_or_else(|| panic!("the hub did not answer {path}"))
}

/// The project's locks as session `session` lists them.
async fn project_locks(http: &awc::Client, url: &str, token: &str, session: &str) -> Vec<Value> {
    let (status, list) = rest(
        http,
        url,
        token,
        &format!("/mcp/collaborate/locks?sessionId={session}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["locks"].as_array().unwrap().clone()
}

/// Task id → status, of every task of `session`.
async fn task_statuses(
    http: &awc::Client,
    url: &str,
    token: &str,
    session: &str,
) -> std::collections::HashMap<i64, String> {
    let (status, list) = rest(
        http,
        url,
        token,
        &format!("/mcp/collaborate/tasks?sessionId={session}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["id"].as_i64().unwrap(),
                t["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[derive(diesel::QueryableByName)]
struct AfterKill {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    stuck: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    ungranted: i64,
}

/// For the report only (the assertions go over REST): what the killed hub left in the database,
/// read before the restart: completed tasks of `a` whose lock is not released, and waiters of
/// `b` on a file whose lock in `a` was released (the grants the lock table makes at load).
fn stored_after_kill(
    backend: Backend,
    db: &TestDb,
    a: &str,
    b: &str,
) -> Result<(i64, i64), String> {
    use diesel::{Connection, RunQueryDsl};
    let query = diesel::sql_query(format!(
        "SELECT \
           (SELECT COUNT(*) FROM tasks t JOIN locks l ON l.session_id = t.session_id \
              AND l.task_id = t.id WHERE t.session_id = '{a}' AND t.status = 'completed' \
              AND l.state <> 'released') AS stuck, \
           (SELECT COUNT(*) FROM locks w JOIN locks h ON h.resource = w.resource \
              WHERE w.session_id = '{b}' AND w.state = 'waiting' AND h.session_id = '{a}' \
              AND h.state = 'released') AS ungranted"
    ));
    let row: AfterKill = match backend {
        Backend::Postgres => {
            let mut c = diesel::PgConnection::establish(&db.url).map_err(|e| e.to_string())?;
            query.get_result(&mut c).map_err(|e| e.to_string())?
        }
        Backend::Sqlite => {
            // Read-only: the restarted hub, not this look, finds the database as the kill left it.
            let path = format!("file:{}?mode=ro", db.url.trim_start_matches("sqlite://"));
            let mut c = diesel::SqliteConnection::establish(&path).map_err(|e| e.to_string())?;
            query.get_result(&mut c).map_err(|e| e.to_string())?
        }
    };
    Ok((row.stuck, row.ungranted))
}

/// A hub child process that is killed when the test ends, also when it fails (SIGKILL ends a
/// stopped one too).
pub(crate) struct KillOnDrop(pub(crate) Child);

impl KillOnDrop {
    /// Sends `signal` (`-STOP`, `-CONT`…) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let sent = std::process::Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {signal}");
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const TASKS: usize = 40;
/// Every `WAIT_EVERY`th file has a waiter in the other session.
const WAIT_EVERY: usize = 4;

/// What the task of file `i` is and holds, and who waits for it in the other session.
struct TaskLock {
    task: i64,
    /// The lock claude took for the task in session A.
    lock: i64,
    /// codex's queued request for the same file in session B.
    waiter: Option<i64>,
}

/// Checks, against the hub at `url`: every task that completed left no lock behind, every
/// other task still holds its lock in A, and every B waiter whose file is free is held by codex
/// (polled: the grants of other sessions follow the release) with a token newer than both the
/// released lock and its own request. Returns the completed task ids.
async fn assert_tasks_and_locks_consistent(
    http: &awc::Client,
    url: &str,
    (a, claude): (&str, &str),
    (b, codex): (&str, &str),
    files: &[TaskLock],
    what: &str,
) -> std::collections::HashSet<i64> {
    let statuses = task_statuses(http, url, claude, a).await;
    assert_eq!(statuses.len(), TASKS, "{what}: tasks lost: {statuses:?}");
    let completed: std::collections::HashSet<i64> = statuses
        .iter()
        .filter(|(_, s)| s.as_str() == "completed")
        .map(|(id, _)| *id)
        .collect();
    let locks = project_locks(http, url, claude, a).await;
    for (i, f) in files.iter().enumerate() {
        let resource = format!("/src/f{i}.rs");
        let of_task: Vec<&Value> = locks
            .iter()
            .filter(|l| l["sessionId"] == a && l["taskId"] == f.task)
            .collect();
        if completed.contains(&f.task) {
            assert!(
                of_task.is_empty(),
                "{what}: task {} ({resource}) is completed but its lock is still there: {of_task:?}\nall locks: {locks:#?}",
                f.task
            );
        } else {
            assert_eq!(
                statuses[&f.task], "pending",
                "{what}: task {} in an unexpected state",
                f.task
            );
            assert!(
                matches!(of_task.as_slice(), [l] if l["id"] == f.lock && l["state"] == "held"
                    && l["holder"] == "claude" && l["resource"] == resource.as_str()),
                "{what}: task {} ({resource}) is not completed but its lock {} is not held by claude: {of_task:?}\nall locks: {locks:#?}",
                f.task,
                f.lock
            );
        }
    }
    // Nothing but claude's task locks and codex's requests, all in the project.
    for l in &locks {
        let ours = (l["sessionId"] == a && l["holder"] == "claude")
            || (l["sessionId"] == b && l["holder"] == "codex");
        assert!(ours, "{what}: a lock nobody took: {l}");
    }

    // B's waiters: granted once their file's task lock is gone, waiting while it is held.
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(10);
    loop {
        let locks = project_locks(http, url, codex, b).await;
        let mut pending = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let Some(waiter) = f.waiter else { continue };
            let mine: Vec<&Value> = locks
                .iter()
                .filter(|l| l["sessionId"] == b && l["id"] == waiter)
                .collect();
            let [l] = mine.as_slice() else {
                panic!("{what}: codex's request {waiter} for /src/f{i}.rs is gone: {locks:#?}");
            };
            assert_eq!(
                (l["holder"].as_str(), l["resource"].as_str()),
                (Some("codex"), Some(format!("/src/f{i}.rs").as_str())),
                "{what}: {l}"
            );
            if completed.contains(&f.task) {
                if l["state"] == "held" {
                    let token = l["token"].as_i64().unwrap_or_default();
                    assert!(
                        token > f.lock && token > waiter,
                        "{what}: codex's lock {waiter} on /src/f{i}.rs holds token {token}, not newer than the released lock {} and the request: {l}",
                        f.lock
                    );
                } else {
                    pending.push((waiter, l["state"].clone()));
                }
            } else {
                assert_eq!(
                    l["state"], "waiting",
                    "{what}: codex's request {waiter} for /src/f{i}.rs while task {} holds it: {l}",
                    f.task
                );
            }
        }
        if pending.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: codex's requests whose files are free were not granted within 10 s: {pending:?}\nall locks: {locks:#?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    // Fencing tokens stay unique in the project.
    let locks = project_locks(http, url, claude, a).await;
    let mut tokens: Vec<i64> = locks.iter().filter_map(|l| l["token"].as_i64()).collect();
    let n = tokens.len();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(
        tokens.len(),
        n,
        "{what}: a fencing token given twice: {locks:#?}"
    );
    eprintln!(
        "{what}: {} of {TASKS} tasks completed; B's waiters on free files all held {:?} after \
         the check began",
        completed.len(),
        started.elapsed()
    );
    completed
}

/// A session completes tasks whose locks another session of the project waits for, and the
/// hub is killed (SIGKILL) in the middle. After a restart on the same database: every
/// acknowledged completion is there, no completed task still holds (or queues) a lock, every
/// other task still holds its own, and the other session's waiters on freed files are granted
/// (the lock table repairs a crash between a release and the grants it allows). Then the rest
/// completes and every waiter gets its file.
async fn kill_9_during_task_completions_keeps_tasks_and_locks_consistent(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let (child, url) = start_hub(&db);
    let child = Arc::new(Mutex::new(KillOnDrop(child)));
    let http = client();
    // Two sessions of one project: one lock table.
    let create = |name: &str, who: &str| {
        json!({"name": name, "project": "/repo/crash",
               "participants": {who: {"role": "driver"}}})
    };
    let (status, sa) = rest(
        &http,
        &url,
        "",
        "/mcp/session/create",
        Some(&create("crash A", "claude")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{sa}");
    let (status, sb) = rest(
        &http,
        &url,
        "",
        "/mcp/session/create",
        Some(&create("crash B", "codex")),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{sb}");
    let a = sa["sessionId"].as_str().unwrap().to_owned();
    let b = sb["sessionId"].as_str().unwrap().to_owned();
    let claude = sa["tokens"]["claude"].as_str().unwrap().to_owned();
    let codex = sb["tokens"]["codex"].as_str().unwrap().to_owned();

    // Claude's tasks, each with an exclusive lock on its own file; codex queues on every 4th.
    let mut files = Vec::new();
    for i in 0..TASKS {
        let (status, made) = rest(
            &http,
            &url,
            &claude,
            "/mcp/collaborate/task",
            Some(&json!({"description": format!("edit f{i}"), "assignedTo": "claude"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{made}");
        let task = made["tasks"][0]["id"].as_i64().unwrap();
        let resource = format!("/src/f{i}.rs");
        let (status, held) = rest(
            &http,
            &url,
            &claude,
            "/mcp/collaborate/lock",
            Some(&json!({"resource": resource, "mode": "exclusive", "taskId": task})),
        )
        .await;
        assert_eq!(
            (status, held["state"].as_str()),
            (StatusCode::OK, Some("held")),
            "{held}"
        );
        let waiter = if i % WAIT_EVERY == 0 {
            let (status, queued) = rest(
                &http,
                &url,
                &codex,
                "/mcp/collaborate/lock",
                Some(&json!({"resource": resource, "mode": "exclusive", "wait": true})),
            )
            .await;
            assert_eq!(
                (status, queued["state"].as_str()),
                (StatusCode::OK, Some("waiting")),
                "{queued}"
            );
            Some(queued["id"].as_i64().unwrap())
        } else {
            None
        };
        files.push(TaskLock {
            task,
            lock: held["id"].as_i64().unwrap(),
            waiter,
        });
    }

    // Every completion at once from CLIENTS clients. The hub dies (SIGKILL) a random moment
    // (0-2 ms, spinning: the other clients wait) after the first acknowledged completion, from
    // the `kill_at`-th on, of a task whose file codex waits for: the grant to codex in the other
    // session is then on its way, or just written. The other completions are still in flight.
    let noise = uuid::Uuid::new_v4().as_u128();
    let kill_at = 8 + (noise % 12) as usize; // 8..=19 of 40
    let jitter = Duration::from_micros((noise >> 8) as u64 % 2000);
    let waited_for: Arc<std::collections::HashSet<i64>> = Arc::new(
        files
            .iter()
            .filter(|f| f.waiter.is_some())
            .map(|f| f.task)
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
    let killed_at = Arc::new(Mutex::new(None::<(std::time::Instant, usize)>));
    let tasks: Arc<Vec<i64>> = Arc::new(files.iter().map(|f| f.task).collect());
    let started = std::time::Instant::now();
    let workers = (0..CLIENTS).map(|_| {
        let (url, claude, child, next, acks, acked, killed_at, tasks, waited_for) = (
            url.clone(),
            claude.clone(),
            child.clone(),
            next.clone(),
            acks.clone(),
            acked.clone(),
            killed_at.clone(),
            tasks.clone(),
            waited_for.clone(),
        );
        async move {
            let http = client();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(&task) = tasks.get(n) else { break };
                let body = json!({"taskId": task, "status": "completed"});
                let answer = call_as(
                    &http,
                    &url,
                    &claude,
                    "/mcp/collaborate/task/update",
                    Some(&body),
                )
                .await;
                let Some((status, done)) = answer else {
                    break; // the hub is gone
                };
                assert_eq!(status, StatusCode::OK, "completing task {task}: {done}");
                acked.lock().unwrap().push(task);
                let n = acks.fetch_add(1, Ordering::SeqCst) + 1;
                let mut killed = killed_at.lock().unwrap();
                if killed.is_none() && n >= kill_at && waited_for.contains(&task) {
                    let until = std::time::Instant::now() + jitter;
                    while std::time::Instant::now() < until {
                        std::hint::spin_loop();
                    }
                    child.lock().unwrap().0.kill().expect("SIGKILL");
                    *killed = Some((std::time::Instant::now(), n));
                }
            }
        }
    });
    futures::future::join_all(workers).await;
    let (killed, kill_ack) = killed_at
        .lock()
        .unwrap()
        .expect("the hub was never killed: too few completions were acknowledged");
    child.lock().unwrap().0.wait().unwrap();
    let acked: Vec<i64> = acked.lock().unwrap().clone();
    eprintln!(
        "{backend:?}: kill -9 {jitter:?} after acknowledgement {kill_ack}, {:?} into the completions; {} of {TASKS} acknowledged",
        killed - started,
        acked.len()
    );
    assert!(
        acked.len() < TASKS,
        "every completion was acknowledged before the kill"
    );

    match stored_after_kill(backend, &db, &a, &b) {
        Ok((stuck, ungranted)) => eprintln!(
            "{backend:?}: in the database after the kill: {stuck} completed task(s) with an open \
             lock, {ungranted} waiter(s) of B on a released file still waiting (to be granted at load)"
        ),
        Err(e) => eprintln!("{backend:?}: could not read the database after the kill: {e}"),
    }

    let restarted = std::time::Instant::now();
    let (child, url) = start_hub(&db);
    let _child = KillOnDrop(child);
    let completed = assert_tasks_and_locks_consistent(
        &http,
        &url,
        (&a, &claude),
        (&b, &codex),
        &files,
        &format!("{backend:?} after kill -9"),
    )
    .await;
    for task in &acked {
        assert!(
            completed.contains(task),
            "the acknowledged completion of task {task} was lost"
        );
    }
    eprintln!(
        "{backend:?}: restart and checks took {:?}; {} completed ({} acknowledged, {} committed unanswered)",
        restarted.elapsed(),
        completed.len(),
        acked.len(),
        completed.len() - acked.len()
    );

    // The rest completes normally, and every waiter gets its file.
    for f in files.iter().filter(|f| !completed.contains(&f.task)) {
        let (status, done) = rest(
            &http,
            &url,
            &claude,
            "/mcp/collaborate/task/update",
            Some(&json!({"taskId": f.task, "status": "completed"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{done}");
    }
    let completed = assert_tasks_and_locks_consistent(
        &http,
        &url,
        (&a, &claude),
        (&b, &codex),
        &files,
        &format!("{backend:?} after the rest"),
    )
    .await;
    assert_eq!(completed.len(), TASKS);
    let left = project_locks(&http, &url, &claude, &a).await;
    assert!(
        left.iter()
            .all(|l| l["sessionId"] == b.as_str() && l["state"] == "held"),
        "{left:#?}"
    );
    assert_eq!(left.len(), TASKS.div_ceil(WAIT_EVERY), "{left:#?}");
}

/// A deploy script may stop a hub the instant it said where it listens. The signal must stop
/// it gracefully (exit status 0; on PostgreSQL its lease handed back), not end it by the
/// signal's default action: until the handlers were installed before that line, one stop in
/// a few, sent at once, killed the hub.
async fn sigterm_right_after_start_stops_gracefully(backend: Backend) {
    for _ in 0..5 {
        let Some(db) = TestDb::fresh(backend) else {
            return;
        };
        let (mut child, _url) = start_hub(&db);
        let status = terminate(&mut child)
            .await
            .expect("the hub stops on SIGTERM");
        assert!(status.success(), "SIGTERM at once: {status:?}");
    }
}
