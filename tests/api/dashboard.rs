//! The dashboard in a real browser: `tests/browser/dashboard.mjs` drives headless Chromium
//! (Debian's `chromium` package) with playwright-core (npm, pinned in tests/browser). The hub
//! runs as in every test; this file plays the AI agents over REST and MCP, one step at a time as
//! the page script asks for them, and checks the agents' side of what the person did in the
//! page (an approval, a force-released lock, a message). Screenshots and the exported file go to
//! `target/browser-artifacts/<backend>/`. The hub runs with small populations (3 genomes, a
//! generation every 3 scored sessions) so that the evolution panel has a generation to chart.
//!
//! Needs `node` and `npm` (playwright-core is installed on first run with `npm ci`) and
//! `chromium` (`apt-get install chromium chromium-driver`, as .ci/run does; `CHROMIUM=path`
//! points elsewhere). Nothing is skipped: a missing piece fails the test, naming it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use actix_web::http::StatusCode;
use collab_hub::Settings;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestDb, both_backends, npm_ci, start_on};
use crate::mcp_protocol::Mcp;

both_backends!(dashboard_follows_and_steers_a_session);

/// The page's event fold (static/model.js) under node's test runner: interrupts ahead of log
/// order, replays after a reconnect, the handshake steps, metrics, the `session_get` seed.
#[test]
fn dashboard_model_folds_events_in_any_order() {
    let out = Command::new("node")
        .args(["--test", "model.test.mjs"])
        .current_dir(browser_dir())
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Longest the page script may stay silent (a step, or Chromium's start on a busy machine).
const SILENCE: Duration = Duration::from_secs(180);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// playwright-core installed (once per checkout) and a Chromium to drive.
fn browser_ready() -> &'static Result<PathBuf, String> {
    static READY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    READY.get_or_init(|| {
        let chromium = chromium().ok_or(
            "no Chromium: apt-get install chromium chromium-driver (.ci/run does), or set CHROMIUM=/path/to/chromium",
        )?;
        let dir = browser_dir();
        npm_ci(&dir, "node_modules/playwright-core/package.json")?;
        Ok(chromium)
    })
}

/// The page script's lines, read on a thread; stdin for the answers; stderr kept for failures.
struct Script {
    child: std::process::Child,
    lines: futures::channel::mpsc::UnboundedReceiver<String>,
    stdin: std::process::ChildStdin,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    transcript: Vec<String>,
}

impl Script {
    fn start(chromium: &Path, hub: &str, session: &str, artifacts: &Path) -> Script {
        let mut child = Command::new("node")
            .arg(browser_dir().join("dashboard.mjs"))
            .args([hub, session])
            .arg(artifacts)
            .env("CHROMIUM", chromium)
            .current_dir(browser_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node runs tests/browser/dashboard.mjs");
        let (tx, lines) = futures::channel::mpsc::unbounded();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.unbounded_send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
            sink.lock().unwrap().push_str(&text);
        });
        let stdin = child.stdin.take().unwrap();
        Script {
            child,
            lines,
            stdin,
            stderr,
            transcript: Vec::new(),
        }
    }

    /// The next JSON line, or a panic with everything the script said.
    async fn next(&mut self) -> Value {
        let line = actix_web::rt::time::timeout(SILENCE, self.lines.next()).await;
        match line {
            Ok(Some(line)) => {
                self.transcript.push(line.clone());
                serde_json::from_str(&line).unwrap_or_else(|_| json!({"ev": "text", "text": line}))
            }
            Ok(None) => self.fail("the page script ended without a result"),
            Err(_) => self.fail("the page script was silent for too long"),
        }
    }

    fn answer(&mut self, value: Value) {
        let line = format!("{value}\n");
        self.transcript.push(format!("<- {value}"));
        self.stdin
            .write_all(line.as_bytes())
            .and_then(|_| self.stdin.flush())
            .unwrap_or_else(|e| self.fail(&format!("cannot answer the page script: {e}")));
    }

    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(200));
        panic!(
            "{why}\n--- page script said:\n{}\n--- its stderr:\n{}",
            self.transcript.join("\n"),
            self.stderr.lock().unwrap()
        );
    }
}

impl Drop for Script {
    /// An agent step that panics must not leave a browser behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One AI agent as the tests see it: its token for REST, and an MCP session for events_poll.
struct Agent {
    token: String,
    mcp: Mcp,
}

impl Agent {
    async fn new(app: &TestApp, token: &str) -> Agent {
        let mut mcp = Mcp::new(app);
        mcp.token = Some(token.to_owned());
        mcp.initialize("2025-11-25").await;
        Agent {
            token: token.to_owned(),
            mcp,
        }
    }

    /// Every event this agent may see (events_poll from the start of the log).
    async fn events(&self) -> Vec<Value> {
        let (err, page) = self
            .mcp
            .tool("events_poll", json!({"after": 0, "limit": 200}))
            .await;
        assert!(!err, "{page}");
        page["events"].as_array().cloned().unwrap_or_default()
    }

    /// The first event `pick` accepts, waiting (polling) up to 10 s for it.
    async fn wait_for(&self, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..100 {
            if let Some(e) = self.events().await.into_iter().find(|e| pick(e)) {
                return e;
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the agent never saw {what}: {:#}",
            json!(self.events().await)
        );
    }
}

async fn ok(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let (status, answer) = app.post_as(token, path, &body).await;
    assert!(status.is_success(), "{path} {body}: {status} {answer}");
    answer
}

/// Genomes per population and scored sessions per generation of the test hub.
const POPULATION: usize = 3;

/// The hub's evolution record of a session once the evolution actor has scored it (scoring
/// runs after the completion, in the background).
async fn scored(app: &TestApp, id: &str) -> Value {
    for _ in 0..200 {
        let (status, b) = app
            .get(&format!("/mcp/evolution/session?sessionId={id}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{b}");
        if !b["outcome"]["fitness"].is_null() {
            return b;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("session {id} was never scored");
}

/// Scored sessions of a task type the insights rest on.
async fn insight_sessions(app: &TestApp, task_type: &str) -> Value {
    let (status, b) = app
        .get(&format!("/mcp/evolution/insights?taskType={task_type}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    b["sessions"].clone()
}

async fn population(app: &TestApp, task_type: &str) -> Value {
    let (status, b) = app
        .get(&format!("/mcp/evolution?taskType={task_type}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    b["populations"][0].clone()
}

/// A "refactoring" session of the project evolution-demo, its genome drawn from the task
/// type's population; returns its id and claude's token.
async fn refactoring_session(app: &TestApp, name: &str) -> (String, String) {
    let create = json!({"name": name, "project": "evolution-demo", "participants": ["claude"], "taskType": "refactoring"});
    let (status, created) = app.post("/mcp/session/create", &create).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created["genome"]["origin"]["kind"], "population",
        "{created}"
    );
    (
        created["sessionId"].as_str().unwrap().to_owned(),
        created["tokens"]["claude"].as_str().unwrap().to_owned(),
    )
}

/// Does `tasks` tasks, reports the tests and the tokens, completes the session and waits for
/// its score.
async fn work_and_complete(app: &TestApp, id: &str, token: &str, tasks: usize) -> Value {
    for i in 0..tasks {
        let task = json!({"description": format!("refactor step {i}"), "assignedTo": "claude"});
        let made = ok(app, token, "/mcp/collaborate/task", task).await;
        let task = made["tasks"][0]["id"].clone();
        for status in ["in_progress", "completed"] {
            let update = json!({"taskId": task, "status": status});
            ok(app, token, "/mcp/collaborate/task/update", update).await;
        }
    }
    let report = json!({"kind": "test", "status": "pass", "summary": "green",
        "details": {"testsWritten": tasks, "testsPassing": tasks, "tokensUsed": 20000}});
    ok(app, token, "/mcp/collaborate/status", report).await;
    let complete = json!({"action": "complete"});
    let (status, b) = app
        .post(&format!("/mcp/session/{id}/status"), &complete)
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    scored(app, id).await
}

/// The agents of the scenario, and what they remember between steps.
struct Agents<'a> {
    app: &'a TestApp,
    session: String,
    claude: Agent,
    gemini: Agent,
    /// codex in the project's other session ("Bugfix").
    bugfix_codex: String,
    /// Its lock taken after the page opened.
    cache_lock: i64,
    lock_id: i64,
    ship: i64,
    /// The "refactoring" session the page watches last, and claude's token in it.
    refactor: (String, String),
}

impl Agents<'_> {
    /// Plays one step the page script asked for; answers what the script checks.
    async fn step(&mut self, step: &str, asked: &Value) -> Value {
        let (app, claude, gemini) = (self.app, &self.claude.token, &self.gemini.token);
        match step {
            "agents_arrive" => {
                let joined =
                    json!({"sessionId": self.session, "participant": "codex", "role": "navigator"});
                let (status, joined) = app.post("/mcp/session/join", &joined).await;
                assert_eq!(status, StatusCode::CREATED, "{joined}");
                let message = "Heads up: I am refactoring auth";
                let send = json!({"priority": "important", "body": message});
                ok(app, claude, "/mcp/messages/send", send).await;
                let lock = json!({"resource": "/src/auth.ts", "operation": "refactor login", "duration": "10m"});
                let lock = ok(app, claude, "/mcp/collaborate/lock", lock).await;
                self.lock_id = lock["id"].as_i64().unwrap();
                let other = json!({"resource": "/src/cache.rs", "duration": "20m"});
                let other = ok(app, &self.bugfix_codex, "/mcp/collaborate/lock", other).await;
                self.cache_lock = other["id"].as_i64().unwrap();
                json!({"message": message, "lockId": self.lock_id})
            }
            "sibling_session" => {
                // A session of the project that did not exist when the page opened.
                let hotfix = json!({"name": "Hotfix", "project": "dashboard-demo", "participants": ["copilot"]});
                let (status, hotfix) = app.post("/mcp/session/create", &hotfix).await;
                assert_eq!(status, StatusCode::CREATED, "{hotfix}");
                let token = hotfix["tokens"]["copilot"].as_str().unwrap();
                let lock = json!({"resource": "/src/hotfix.rs", "duration": "15m"});
                ok(app, token, "/mcp/collaborate/lock", lock).await;
                json!({})
            }
            "sibling_release" => {
                let release = json!({"lockId": self.cache_lock});
                ok(
                    app,
                    &self.bugfix_codex,
                    "/mcp/collaborate/lock/release",
                    release,
                )
                .await;
                json!({})
            }
            "driver" => {
                let (_, view) = app.get(&format!("/mcp/session/{}", self.session)).await;
                json!({"driver": view["driver"], "status": view["status"]})
            }
            "work_complete" => {
                let step = json!({"status": "work_complete", "changes": ["/src/auth.ts"], "message": "login refactor ready for review"});
                ok(app, claude, "/mcp/collaborate/handshake", step).await;
                json!({})
            }
            "driver_sees_approval" => {
                let review = self
                    .claude
                    .wait_for("the review", |e| {
                        e["kind"] == "handshake" && e["payload"]["step"] == "review_complete"
                    })
                    .await;
                let feedback = &review["payload"]["feedback"];
                assert_eq!(feedback["approved"], true, "{review}");
                let notes = json!(["Looks good; maybe rename verify()"]);
                assert_eq!(feedback["suggestions"], notes, "{review}");
                let passed = self
                    .claude
                    .wait_for("control passed back", |e| e["kind"] == "control_passed")
                    .await;
                assert_eq!(passed["to"], "claude", "{passed}");
                assert_eq!(passed["priority"], "critical", "{passed}");
                let step =
                    json!({"status": "control_received", "nextAction": "address the review"});
                ok(app, claude, "/mcp/collaborate/handshake", step).await;
                let by_alice = passed["payload"]["by"] == "human:alice";
                json!({"approvedBy": review["actor"], "controlPassed": by_alice})
            }
            "grant_driver" => {
                let request = self
                    .claude
                    .wait_for("human:alice asking to drive", |e| {
                        e["kind"] == "role_requested" && e["actor"] == "human:alice"
                    })
                    .await;
                let grant = json!({"action": "respond", "requestId": request["id"], "grant": true});
                ok(app, claude, "/mcp/collaborate/role", grant).await;
                json!({})
            }
            "holder_told" => {
                let lock_id = self.lock_id;
                let told = self
                    .claude
                    .wait_for("its lock force-released", |e| {
                        e["kind"] == "lock_force_released" && e["payload"]["lockId"] == lock_id
                    })
                    .await;
                assert_eq!(told["to"], "claude", "{told}");
                json!({"forceReleasedBy": told["payload"]["by"]})
            }
            "suggest" => {
                let suggestion = json!({"filePath": "/src/auth.ts", "before": "fn verify() {}\n", "after": "fn verify_token() {}\n", "reason": "a clearer name"});
                let s = ok(app, gemini, "/mcp/collaborate/suggestion", suggestion).await;
                json!({"id": s["id"]})
            }
            "suggestion_outcome" => {
                let id = asked["id"].clone();
                let resolved = self
                    .gemini
                    .wait_for("its suggestion resolved", |e| {
                        e["kind"] == "suggestion_resolved" && e["payload"]["id"] == id
                    })
                    .await;
                assert_eq!(resolved["actor"], "human:alice", "{resolved}");
                json!({"accepted": resolved["payload"]["accepted"]})
            }
            "tasks" => {
                let task = json!({"description": "Refactor login", "assignedTo": "gemini", "subtasks": ["extract verify()", "test verify()"]});
                let created = ok(app, claude, "/mcp/collaborate/task", task).await;
                let ids: Vec<i64> = created["tasks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["id"].as_i64().unwrap())
                    .collect();
                let ship =
                    json!({"description": "Ship the login refactor", "dependencies": [ids[0]]});
                let shipped = ok(app, claude, "/mcp/collaborate/task", ship).await;
                self.ship = shipped["tasks"][0]["id"].as_i64().unwrap();
                let block =
                    json!({"taskId": ids[1], "status": "blocked", "reason": "waiting on the API"});
                ok(app, gemini, "/mcp/collaborate/task/update", block).await;
                json!({"parent": ids[0], "blocked": ids[1], "ship": self.ship})
            }
            "report_and_context" => {
                let report = json!({"kind": "test", "status": "fail", "summary": "2 failing in auth::verify"});
                ok(app, claude, "/mcp/collaborate/status", report).await;
                let focus = json!({"path": "activeWork.currentFocus", "value": "token refresh"});
                ok(app, claude, "/mcp/context/set", focus).await;
                json!({})
            }
            "read_message" => {
                let body = asked["body"].clone();
                let (status, read) = app.get_as(gemini, "/mcp/messages").await;
                assert_eq!(status, StatusCode::OK, "{read}");
                let message = read["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["body"] == body)
                    .cloned()
                    .unwrap_or_else(|| panic!("gemini never got the page's message: {read}"));
                json!({"from": message["from"], "priority": message["priority"]})
            }
            // Receipts, as the recipient's client produces each: sent (nothing yet), delivered
            // (its MCP client got the message in a tool result), shown to its model (its hook
            // printed it; or the digest of a tool result listed a critical message in full),
            // read (`messages_read`), acknowledged (`message_ack`).
            "receipts_send" => {
                let ask = json!({"to": "gemini", "body": "Please confirm the schema change", "requiresAck": true});
                let sent = ok(app, claude, "/mcp/messages/send", ask).await;
                json!({"id": sent["id"]})
            }
            "receipts_deliver" => {
                let id = asked["id"].as_i64().unwrap();
                let poll = json!({"after": id - 1, "limit": 20});
                let (err, page) = self.gemini.mcp.tool("events_poll", poll).await;
                assert!(!err, "{page}");
                let got = page["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["id"] == id);
                assert!(got, "gemini's client got message {id}: {page}");
                json!({})
            }
            "receipts_hook" => {
                let id = asked["id"].as_i64().unwrap();
                let shown = json!({"ids": [id], "via": "hook"});
                let answer = ok(app, gemini, "/mcp/events/shown", shown).await;
                assert_eq!(answer, json!({"shown": [id]}));
                json!({})
            }
            "receipts_read" => {
                let id = asked["id"].as_i64().unwrap();
                let path = format!("/mcp/messages?since={}&limit=1", id - 1);
                let (status, read) = app.get_as(gemini, &path).await;
                assert_eq!(status, StatusCode::OK, "{read}");
                assert_eq!(read["messages"][0]["id"], id, "{read}");
                json!({})
            }
            "receipts_ack" => {
                let id = asked["id"].as_i64().unwrap();
                let (err, acked) = self
                    .gemini
                    .mcp
                    .tool("message_ack", json!({"ids": [id]}))
                    .await;
                assert!(!err, "{acked}");
                json!({})
            }
            "receipts_critical" => {
                let urgent = json!({"to": "gemini", "body": "Hold the release: the migration is not reversible", "priority": "critical"});
                let sent = ok(app, claude, "/mcp/messages/send", urgent).await;
                json!({"id": sent["id"]})
            }
            "receipts_digest" => {
                // Any tool call: its result's digest lists the critical message in full.
                let id = asked["id"].as_i64().unwrap();
                let (_, raw) = self
                    .gemini
                    .mcp
                    .call(9, "tools/call", json!({"name": "whoami", "arguments": {}}))
                    .await;
                let listed = raw["result"]["content"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{raw}"))
                    .iter()
                    .any(|c| {
                        c["text"]
                            .as_str()
                            .is_some_and(|t| t.contains(&format!("#{id} message_sent")))
                    });
                assert!(listed, "the digest lists message {id}: {raw}");
                json!({})
            }
            "while_away" => {
                let message = "sent while the page was away";
                ok(app, claude, "/mcp/messages/send", json!({"body": message})).await;
                json!({"message": message})
            }
            // The session the page watched, completed from the page: the hub scores it.
            "demo_fitness" => {
                let record = scored(app, &self.session).await;
                assert_eq!(record["origin"]["kind"], "default", "{record}");
                json!({"score": record["outcome"]["fitness"]["score"],
                       "insightSessions": insight_sessions(app, "general").await})
            }
            // A generation of "refactoring" sessions, each scored, then one more (drawn from
            // the next generation) for the page to watch.
            "evolution_sessions" => {
                for i in 0..POPULATION {
                    let (id, token) =
                        refactoring_session(app, &format!("Refactor {}", i + 1)).await;
                    work_and_complete(app, &id, &token, i + 1).await;
                }
                let pop = population(app, "refactoring").await;
                assert_eq!(pop["generation"], 1, "{pop}");
                self.refactor = refactoring_session(app, "Refactor 4").await;
                let (status, record) = app
                    .get(&format!(
                        "/mcp/evolution/session?sessionId={}",
                        self.refactor.0
                    ))
                    .await;
                assert_eq!(status, StatusCode::OK, "{record}");
                json!({"sessionId": self.refactor.0, "taskType": record["taskType"],
                       "genome": record["genome"], "origin": record["origin"],
                       "effects": record["effects"], "generation": pop["generation"],
                       "history": pop["history"], "best": pop["best"],
                       "insightSessions": insight_sessions(app, "refactoring").await})
            }
            "evolution_complete" => {
                let (id, token) = self.refactor.clone();
                let record = work_and_complete(app, &id, &token, 2).await;
                let pop = population(app, "refactoring").await;
                json!({"score": record["outcome"]["fitness"]["score"],
                       "tasksCompleted": record["outcome"]["measured"]["tasksCompleted"],
                       "scored": pop["scoredThisGeneration"],
                       "perGeneration": pop["sessionsPerGeneration"],
                       "insightSessions": insight_sessions(app, "refactoring").await})
            }
            other => json!({"error": format!("no step {other} here")}),
        }
    }
}

async fn dashboard_follows_and_steers_a_session(backend: Backend) {
    let chromium = browser_ready()
        .as_ref()
        .unwrap_or_else(|e| panic!("the browser test cannot run: {e}"))
        .clone();
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let mut settings = Settings::for_database("unused");
    settings.evolution_population = POPULATION;
    settings.evolution_sessions_per_generation = POPULATION;
    settings.evolution_seed = Some(9);
    let app = start_on(db, settings).await;
    let demo = json!({"name": "Dashboard demo", "project": "dashboard-demo", "participants": ["claude", "gemini"]});
    let (status, created) = app.post("/mcp/session/create", &demo).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let session = created["sessionId"].as_str().unwrap().to_owned();
    let bugfix = json!({"name": "Bugfix", "project": "dashboard-demo", "participants": ["codex"]});
    let (status, bugfix) = app.post("/mcp/session/create", &bugfix).await;
    assert_eq!(status, StatusCode::CREATED, "{bugfix}");
    // Held in the project's other session before the page opens.
    let db = json!({"resource": "/src/db.rs", "duration": "20m"});
    let codex = bugfix["tokens"]["codex"].as_str().unwrap();
    ok(&app, codex, "/mcp/collaborate/lock", db).await;
    let mut agents = Agents {
        app: &app,
        session: session.clone(),
        claude: Agent::new(&app, created["tokens"]["claude"].as_str().unwrap()).await,
        gemini: Agent::new(&app, created["tokens"]["gemini"].as_str().unwrap()).await,
        bugfix_codex: codex.to_owned(),
        cache_lock: 0,
        lock_id: 0,
        ship: 0,
        refactor: (String::new(), String::new()),
    };

    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/browser-artifacts")
        .join(format!("{backend:?}").to_lowercase());
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();

    let mut script = Script::start(&chromium, &app.address, &session, &artifacts);
    let done = loop {
        let line = script.next().await;
        match line["ev"].as_str() {
            Some("need") => {
                let step = line["step"].as_str().unwrap_or("").to_owned();
                let mut answer = agents.step(&step, &line).await;
                answer["step"] = json!(step);
                script.answer(answer);
            }
            Some("done") => break line,
            _ => {}
        }
    };
    let status = script.child.wait().expect("the page script exits");
    let _ = std::fs::write(
        artifacts.join("transcript.jsonl"),
        script.transcript.join("\n"),
    );
    if done["failed"] != false || !status.success() {
        script.fail(&format!("the page script failed ({status})"));
    }
    assert_eq!(done["consoleErrors"], json!([]), "{done}");
    assert!(done["passed"].as_u64().unwrap_or(0) >= 90, "{done}");

    // What the person did is in the hub's own record.
    let (_, locks) = app
        .get(&format!("/mcp/collaborate/locks?sessionId={session}"))
        .await;
    let locks = locks["locks"].as_array().unwrap();
    assert!(
        locks.iter().all(|l| l["resource"] != "/src/auth.ts"),
        "{locks:?}"
    );
    let ship = agents.ship;
    let (_, tasks) = app
        .get(&format!(
            "/mcp/collaborate/tasks?sessionId={session}&id={ship}"
        ))
        .await;
    assert_eq!(tasks["tasks"][0]["assignedTo"], "codex", "{tasks}");
    let (_, view) = app.get(&format!("/mcp/session/{session}")).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["driver"], "claude", "{view}");
}
