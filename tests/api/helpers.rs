//! Test harness: spawns the real application with a fresh database per test.
//!
//! PostgreSQL: each test gets its own database, created from `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and dropped afterwards. Without a reachable
//! server the PostgreSQL cases are skipped with a loud line on stderr, unless `REQUIRE_POSTGRES=1`,
//! which makes them fail (CI sets it).

use std::path::PathBuf;
use std::sync::OnceLock;

use actix_web::http::StatusCode;
use collab_hub::{Application, Settings};
use diesel::{Connection, RunQueryDsl, pg::PgConnection};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `mod NAME { fn sqlite(); fn postgres(); }` for each `async fn NAME(Backend)`.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await
            }
            #[actix_web::test]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await
            }
        }
    )*};
}
pub(crate) use both_backends;

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn postgres_required() -> bool {
    std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// Is PostgreSQL reachable? Asked once per test binary.
fn postgres_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| match PgConnection::establish(&admin_url()) {
        Ok(_) => true,
        Err(e) if postgres_required() => {
            panic!("REQUIRE_POSTGRES=1 but PostgreSQL at TEST_DATABASE_URL is unreachable: {e}")
        }
        Err(e) => {
            loud(&format!(
                "SKIPPING every PostgreSQL test case: {e}; set TEST_DATABASE_URL, or REQUIRE_POSTGRES=1 to fail instead"
            ));
            false
        }
    })
}

/// Writes straight to the process's stderr: libtest captures `eprintln!` of passing tests, and
/// a skipped backend must not pass unnoticed.
fn loud(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "!!!!! {line}");
}

/// A database that exists only for one test.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    dir: Option<PathBuf>,
}

impl TestDb {
    /// `None` when the backend is PostgreSQL and it is unreachable (and not required).
    pub fn fresh(backend: Backend) -> Option<TestDb> {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("collab-hub-test-{tag}"));
                std::fs::create_dir_all(&dir).expect("temp dir");
                Some(TestDb {
                    url: format!("sqlite://{}", dir.join("hub.db").display()),
                    pg_name: None,
                    dir: Some(dir),
                })
            }
            Backend::Postgres => {
                if !postgres_available() {
                    let test = std::thread::current().name().unwrap_or("?").to_owned();
                    loud(&format!("SKIPPED (no PostgreSQL): {test}"));
                    return None;
                }
                let name = format!("collab_hub_test_{tag}");
                let mut admin = PgConnection::establish(&admin_url()).expect("postgres admin");
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .expect("create test database");
                Some(TestDb {
                    url: with_database(&admin_url(), &name),
                    pg_name: Some(name),
                    dir: None,
                })
            }
        }
    }
}

impl TestDb {
    /// Runs `sql` on the server's admin database (PostgreSQL), `{db}` standing for this test
    /// database's name: what must be done from outside it, such as closing it to connections.
    pub fn admin_execute(&self, sql: &str) {
        let name = self.pg_name.as_deref().expect("a PostgreSQL test database");
        let mut admin = PgConnection::establish(&admin_url()).expect("postgres admin");
        diesel::sql_query(sql.replace("{db}", name))
            .execute(&mut admin)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name
            && let Ok(mut admin) = PgConnection::establish(&admin_url())
        {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin);
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `postgres://u@h:p/olddb?x` → `postgres://u@h:p/NAME?x`
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// Runs `sql` on a test hub's database from outside the hub (running or stopped), as another
/// process would; the number of rows it changed.
pub fn execute_beside(backend: Backend, db: &TestDb, sql: &str) -> usize {
    let q = diesel::sql_query(sql);
    match backend {
        Backend::Postgres => q
            .execute(&mut PgConnection::establish(&db.url).unwrap())
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
        Backend::Sqlite => {
            let mut c = diesel::SqliteConnection::establish(db.url.trim_start_matches("sqlite://"))
                .unwrap();
            // The hub writes beside it, or its last connections may still be closing (a
            // checkpoint): wait for them rather than fail with "database is locked".
            diesel::sql_query("PRAGMA busy_timeout = 5000")
                .execute(&mut c)
                .unwrap();
            q.execute(&mut c).unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    }
}

/// The running hub of one test.
pub struct TestApp {
    pub address: String,
    pub handle: actix_web::dev::ServerHandle,
    /// The serving task; done once every write committed and the database claim is released.
    running: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    pub db: TestDb,
    client: awc::Client,
    shutdown: collab_hub::app::Shutdown,
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    let db = TestDb::fresh(backend)?;
    Some(start_on(db, Settings::for_database("unused")).await)
}

/// The default settings with the per-participant send rate limit lifted: for tests that send
/// more messages than a real agent may.
pub fn without_send_limit() -> Settings {
    let mut settings = Settings::for_database("unused");
    settings.message_rate = 1_000_000.0;
    settings.message_burst = 1_000_000;
    settings
}

/// Starts the hub on `db` with `settings` (their database URL is replaced by the test's).
pub async fn start_on(db: TestDb, mut settings: Settings) -> TestApp {
    settings.database_url = Some(db.url.clone());
    let app = Application::build(settings).await.expect("hub starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (handle, shutdown) = (app.handle(), app.shutdown());
    let running = actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        handle,
        running,
        db,
        client: client(),
        shutdown,
    }
}

/// Creates a collab session from `spec` (the body of `POST /mcp/session/create`) on the hub at
/// `url` (a child process, or one of several hubs); the 201 answer's body.
pub async fn create_session_at(url: &str, spec: &serde_json::Value) -> serde_json::Value {
    let mut res = client()
        .post(format!("{url}/mcp/session/create"))
        .send_json(spec)
        .await
        .expect("hub answers");
    let body: serde_json::Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "{body}");
    body
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .finish()
}

impl TestApp {
    /// Stops the server (graceful) and hands back its database for a restart.
    pub async fn stop(self) -> TestDb {
        // As on SIGTERM: streams and sockets end first, then the requests in flight finish.
        self.shutdown.begin().await;
        self.handle.stop(true).await;
        let _ = self.running.await;
        self.db
    }

    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.client.post(self.url(path)), Some(body), None)
            .await
    }

    pub async fn post_as(&self, token: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send(self.client.post(self.url(path)), Some(body), Some(token))
            .await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(self.url(path)), None, None).await
    }

    pub async fn get_as(&self, token: &str, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(self.url(path)), None, Some(token))
            .await
    }

    /// Sends raw bytes with a given content type (for malformed input).
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let req = self
            .client
            .post(self.url(path))
            .insert_header(("content-type", content_type));
        let mut res = req.send_body(body).await.expect("request");
        let status = res.status();
        let bytes = res.body().limit(16 * 1024 * 1024).await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    async fn send(
        &self,
        mut req: awc::ClientRequest,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let mut res = match body {
            Some(b) => req.send_json(b).await,
            None => req.send().await,
        }
        .expect("request reaches the hub");
        let status = res.status();
        let bytes = res.body().limit(16 * 1024 * 1024).await.expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "non-JSON answer ({status}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, json)
    }

    /// Creates the concept's two-AI session and returns (id, claude's token, gemini's token).
    pub async fn create_pair(&self, name: &str) -> (String, String, String) {
        let (status, body) = self
            .post(
                "/mcp/session/create",
                &serde_json::json!({ "name": name, "participants": ["claude", "gemini"], "saveInterval": 300 }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["sessionId"].as_str().unwrap().to_owned(),
            body["tokens"]["claude"].as_str().unwrap().to_owned(),
            body["tokens"]["gemini"].as_str().unwrap().to_owned(),
        )
    }
}

/// Asserts a 4xx error answer of the documented shape; returns its `error` object.
pub fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) -> Value {
    assert_eq!(status, expected, "{body}");
    let err = &body["error"];
    assert_eq!(err["code"], code, "{body}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without message: {body}"
    );
    err.clone()
}

#[test]
fn with_database_replaces_only_the_name() {
    assert_eq!(
        with_database("postgres://u@h:5/p", "x"),
        "postgres://u@h:5/x"
    );
    assert_eq!(
        with_database("postgres://u@h/p?s=1", "x"),
        "postgres://u@h/x?s=1"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}

/// Where the MCP client scripts and their pinned packages live.
pub fn clients_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_clients")
}

/// Runs an install step; its whole output in the error when it fails.
pub fn run_step(cmd: &mut std::process::Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `npm ci` (pinned by the package-lock.json in `dir`) unless `installed` already exists.
pub fn npm_ci(dir: &std::path::Path, installed: &str) -> Result<(), String> {
    if dir.join(installed).exists() {
        return Ok(());
    }
    run_step(
        std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefer-offline"])
            .current_dir(dir),
        &format!("npm ci in {}", dir.display()),
    )
}

/// `<python> -m pip install -q <args>` in `dir`.
pub fn pip_install(
    python: &std::path::Path,
    dir: &std::path::Path,
    args: &[&str],
) -> Result<(), String> {
    run_step(
        std::process::Command::new(python)
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .args(args)
            .current_dir(dir),
        &format!("pip install {}", args.join(" ")),
    )
}

/// One number of `GET /metrics` (asked again for up to 5 s while it is missing: a hub too busy
/// to count what it holds within a second leaves those lines out).
pub async fn metric(app: &TestApp, name: &str) -> i64 {
    let start = std::time::Instant::now();
    loop {
        let mut res = client()
            .get(format!("{}/metrics", app.address))
            .send()
            .await
            .expect("metrics");
        assert_eq!(res.status(), StatusCode::OK);
        let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
        if let Some(n) = text
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        {
            return n;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "{name} not in {text}"
        );
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
