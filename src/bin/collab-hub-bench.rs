//! `collab-hub-bench`: a closed-loop load generator for a running collab-hub.
//!
//! For each session count N it creates N collab sessions over REST (one per simulated client, so
//! that durable writes do not serialize on one session actor), opens N MCP sessions (each with
//! its own `claude` token, its own keep-alive TCP connection and its own OS thread), then runs
//! one timed phase per tool family and prints one line per (N, phase):
//!
//! * `read`  — `tools/call whoami` (answered from the hub's memory);
//! * `write` — `tools/call session_status` alternating pause/resume (each one commits an event
//!   and a projection row before the hub answers);
//! * `sse`   — the same read answered as an SSE stream (the client sends a progress token);
//! * `ping`  — the MCP `ping` method (transport + JSON-RPC, no tool and no actor), for comparison.
//!
//! Each client sends its next request as soon as the previous answer arrives. An error is a
//! transport error, a non-200 status, a JSON-RPC error or a tool result with `"isError": true`.
//!
//! ```text
//! cargo build --release
//! target/release/collab-hub --bind 127.0.0.1:0 --database-url sqlite:///tmp/x/hub.db
//! target/release/collab-hub-bench --url http://127.0.0.1:PORT --sessions 1,8,32 \
//!     [--seconds 5] [--warmup 1] [--phases read,sse,write,ping] [--hub-pid PID]
//! ```
//!
//! With `--hub-pid` (Linux) the CPU time used during each measured window by the hub, by this
//! generator and by everything else on the machine is printed as well, in % of one core.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

const PROTOCOL: &str = "2025-11-25";

#[derive(Parser)]
#[command(about = "Load generator for collab-hub's MCP endpoint")]
struct Args {
    /// Base URL of the hub, e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    /// Concurrent MCP sessions; a comma list runs each in turn.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    sessions: Vec<usize>,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Unmeasured seconds at the start of each phase.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Phases to run, in order.
    #[arg(long, value_delimiter = ',', default_value = "read,write",
          value_parser = ["read", "sse", "write", "ping"])]
    phases: Vec<String>,
    /// The hub's process id, to report its CPU use (reads /proc).
    #[arg(long)]
    hub_pid: Option<u32>,
}

/// One HTTP/1.1 keep-alive connection.
struct Conn {
    addr: String,
    io: BufReader<TcpStream>,
}

struct Response {
    status: u16,
    session_id: Option<String>,
    body: Vec<u8>,
}

impl Conn {
    fn open(addr: &str) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        Ok(Conn {
            addr: addr.to_owned(),
            io: BufReader::new(stream),
        })
    }

    /// Sends one POST and reads the whole answer: the status line, headers up to the blank
    /// line, then exactly Content-Length bytes of body, leaving the connection ready for reuse.
    fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, String> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.addr,
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut out = req.into_bytes();
        out.extend_from_slice(body);
        let io = |e: std::io::Error| e.to_string();
        self.io.get_mut().write_all(&out).map_err(io)?;

        let mut line = String::new();
        self.io.read_line(&mut line).map_err(io)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let (mut length, mut session_id, mut chunked) = (None, None, false);
        loop {
            line.clear();
            if self.io.read_line(&mut line).map_err(io)? == 0 {
                return Err("connection closed in headers".into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((name, value)) = l.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.parse::<usize>().ok(),
                "mcp-session-id" => session_id = Some(value.to_owned()),
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
        if chunked {
            // A streamed (SSE) answer: read chunks until the empty one.
            let mut body = Vec::new();
            loop {
                line.clear();
                self.io.read_line(&mut line).map_err(io)?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| format!("bad chunk size {line:?}"))?;
                let mut chunk = vec![0; size + 2]; // data + CRLF
                self.io.read_exact(&mut chunk).map_err(io)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
            return Ok(Response {
                status,
                session_id,
                body,
            });
        }
        // Otherwise the hub answers with Content-Length.
        let mut body = vec![0; length.unwrap_or(0)];
        if length.is_none() && status != 202 && status != 204 {
            return Err(format!("{status} answer without Content-Length"));
        }
        self.io.read_exact(&mut body).map_err(io)?;
        Ok(Response {
            status,
            session_id,
            body,
        })
    }
}

/// An initialized MCP session on its own connection.
struct Client {
    conn: Conn,
    token: String,
    session_id: String,
    next_id: u64,
    /// The collab session's status as this client last set it (write phase).
    paused: bool,
}

impl Client {
    fn connect(addr: &str, token: String) -> Result<Client, String> {
        let mut conn = Conn::open(addr)?;
        let auth = format!("Bearer {token}");
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"}}});
        let hs = [
            ("accept", "application/json, text/event-stream"),
            ("authorization", auth.as_str()),
        ];
        let r = conn.post("/mcp", &hs, init.to_string().as_bytes())?;
        let session_id = match (r.status, r.session_id) {
            (200, Some(id)) => id,
            (s, _) => {
                return Err(format!(
                    "initialize: {s} {}",
                    String::from_utf8_lossy(&r.body)
                ));
            }
        };
        let mut client = Client {
            conn,
            token,
            session_id,
            next_id: 1,
            paused: false,
        };
        let r = client.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        if r.status != 202 {
            return Err(format!("notifications/initialized: {}", r.status));
        }
        Ok(client)
    }

    fn send(&mut self, message: &Value) -> Result<Response, String> {
        let auth = format!("Bearer {}", self.token);
        let headers = [
            ("accept", "application/json, text/event-stream"),
            ("authorization", auth.as_str()),
            ("mcp-session-id", self.session_id.as_str()),
            ("mcp-protocol-version", PROTOCOL),
        ];
        self.conn
            .post("/mcp", &headers, message.to_string().as_bytes())
    }

    /// One request of `phase`; Ok(()) only for a 200 carrying a successful result.
    fn call(&mut self, phase: &str) -> Result<(), String> {
        self.next_id += 1;
        let (method, params) = match phase {
            "read" => ("tools/call", json!({"name": "whoami", "arguments": {}})),
            // The same read answered as SSE (a progress token asks for it): several writes per
            // answer, where Nagle + delayed ACK would show if TCP_NODELAY were missing.
            "sse" => (
                "tools/call",
                json!({"name": "whoami", "arguments": {}, "_meta": {"progressToken": self.next_id}}),
            ),
            "write" => {
                let action = if self.paused { "resume" } else { "pause" };
                (
                    "tools/call",
                    json!({"name": "session_status", "arguments": {"action": action}}),
                )
            }
            _ => ("ping", json!({})),
        };
        let msg = json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        let r = self.send(&msg).inspect_err(|_| {
            // The connection is in an unknown state: start a fresh one (same MCP session).
            if let Ok(c) = Conn::open(&self.conn.addr) {
                self.conn = c;
            }
        })?;
        let v = answer(&r.body)?;
        if r.status != 200 || v.get("error").is_some() || v["result"]["isError"] == true {
            return Err(format!(
                "{}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        if phase == "write" {
            self.paused = !self.paused;
        }
        Ok(())
    }
}

/// The JSON-RPC answer in a body: plain JSON, or the last `data:` line of an SSE stream.
fn answer(body: &[u8]) -> Result<Value, String> {
    let text = String::from_utf8_lossy(body);
    let json = if text.starts_with("event:") || text.starts_with("data:") || text.starts_with("id:")
    {
        text.lines()
            .rev()
            .find_map(|l| l.strip_prefix("data: "))
            .ok_or("SSE answer without data")?
            .to_owned()
    } else {
        text.into_owned()
    };
    serde_json::from_str(&json).map_err(|e| format!("bad JSON: {e}"))
}

/// What one client measured in one phase.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// Runs `phase` on every client at once; latencies count for calls started inside the window.
fn run_phase(clients: Vec<Client>, phase: &str, args: &Args) -> (Vec<Client>, Tally, Vec<f64>) {
    let start = Instant::now() + Duration::from_millis(100); // every thread is spawned by then
    let window = start + Duration::from_secs_f64(args.warmup);
    let end = window + Duration::from_secs_f64(args.seconds);
    // Threads wait here after their last call, so that their CPU time is read while they live.
    let done = Arc::new(Barrier::new(clients.len() + 1));
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let (phase, done) = (phase.to_owned(), done.clone());
            thread::spawn(move || {
                let mut t = Tally::default();
                thread::sleep(start.saturating_duration_since(Instant::now()));
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let outcome = c.call(&phase);
                    if t0 >= window {
                        t.latencies_us.push(t0.elapsed().as_micros() as u64);
                        if let Err(e) = outcome {
                            t.errors += 1;
                            t.first_error.get_or_insert(e);
                        }
                    }
                }
                done.wait();
                (c, t)
            })
        })
        .collect();
    // CPU time (ns) of the hub and of this process over the measured window.
    let me = std::process::id();
    let pids: Vec<u32> = args.hub_pid.into_iter().chain([me]).collect();
    thread::sleep(window.saturating_duration_since(Instant::now()));
    let before: Vec<u64> = pids.iter().map(|p| cpu_ns(*p)).collect();
    let machine_before = machine_ticks();
    thread::sleep(end.saturating_duration_since(Instant::now()));
    let mut cpu: Vec<f64> = pids
        .iter()
        .zip(before)
        .map(|(p, b)| cpu_ns(*p).saturating_sub(b) as f64 / 1e7 / args.seconds) // % of one core
        .collect();
    // Everything else running on the machine meanwhile (noise from other users).
    let (busy, total) = machine_ticks();
    let cores = thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let all = (busy - machine_before.0) / (total - machine_before.1).max(1.0) * cores * 100.0;
    cpu.push((all - cpu.iter().sum::<f64>()).max(0.0));
    done.wait();
    let mut total = Tally::default();
    let mut clients = Vec::new();
    for h in handles {
        let (c, t) = h.join().expect("client thread panicked");
        clients.push(c);
        total.latencies_us.extend(t.latencies_us);
        total.errors += t.errors;
        if total.first_error.is_none() {
            total.first_error = t.first_error;
        }
    }
    (clients, total, cpu)
}

/// Run time of every thread of `pid` so far, from /proc/PID/task/*/schedstat (0 if unavailable).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Busy and total CPU ticks of the whole machine so far, from the first line of /proc/stat.
fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let idle = ticks.get(3).unwrap_or(&0.0) + ticks.get(4).unwrap_or(&0.0); // idle + iowait
    let total = ticks.iter().take(8).sum::<f64>(); // guest time is already in user
    (total - idle, total)
}

/// Creates one collab session over REST and returns its `claude` token.
fn create_session(conn: &mut Conn, name: &str) -> Result<String, String> {
    let body = json!({"name": name, "participants": ["claude", "gemini"]});
    let r = conn.post("/mcp/session/create", &[], body.to_string().as_bytes())?;
    let v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
    match (r.status, v["tokens"]["claude"].as_str()) {
        (201, Some(token)) => Ok(token.to_owned()),
        (s, _) => Err(format!("session create: {s} {v}")),
    }
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let addr = args
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    if addr.contains('/') || args.url.starts_with("https://") {
        return Err("--url must be http://HOST:PORT".into());
    }
    if !(args.seconds > 0.0 && args.warmup >= 0.0) {
        return Err("--seconds must be > 0 and --warmup >= 0".into());
    }
    let cpu_cols = if args.hub_pid.is_some() {
        "  hub cpu%  gen cpu%  other cpu%"
    } else {
        ""
    };
    println!("sessions  phase  calls/s  p50 ms  p99 ms  max ms  errors{cpu_cols}");
    let run = std::process::id(); // makes session names unique across runs
    for &n in &args.sessions {
        let mut rest = Conn::open(&addr)?;
        let mut clients = Vec::new();
        for i in 0..n {
            let token = create_session(&mut rest, &format!("bench-{run}-{n}-{i}"))?;
            clients.push(Client::connect(&addr, token)?);
        }
        for phase in &args.phases {
            let (back, tally, cpu) = run_phase(clients, phase, &args);
            clients = back;
            let mut l = tally.latencies_us;
            l.sort_unstable();
            let pct = |p: f64| match l.len() {
                0 => 0.0,
                len => l[((len as f64 * p).ceil() as usize).clamp(1, len) - 1] as f64 / 1000.0,
            };
            let rate = l.len() as f64 / args.seconds;
            let mut line = format!(
                "{n:>8}  {phase:<5}  {rate:>7.0}  {:>6.2}  {:>6.2}  {:>6.2}  {:>6}",
                pct(0.50),
                pct(0.99),
                pct(1.0),
                tally.errors
            );
            if args.hub_pid.is_some() {
                line.push_str(&format!(
                    "  {:>8.0}  {:>8.0}  {:>10.0}",
                    cpu[0], cpu[1], cpu[2]
                ));
            }
            println!("{line}");
            if let Some(e) = tally.first_error {
                eprintln!("  first error: {}", e.chars().take(300).collect::<String>());
            }
        }
    }
    Ok(())
}
