//! The `soak` phase of `collab-hub-bench`: N clients in a closed loop over ONE collab session
//! for a long time (`--soak-seconds`), so that the session's history grows while the load stays
//! the same, with one report line per `--soak-interval`. Whether the cost stays flat is the
//! ratio of the last interval's ops/s to the first's.
//!
//! Client i is participant `p{i}` of the session (which gets at least two participants, so
//! that a lone client has someone to write to) and does, in rotation starting at operation
//! i mod 5 (so that every kind is in flight at any moment):
//!
//! * `send` — MCP `tools/call message_send`, directed to the next participant `p{i+1}`;
//! * `read` — MCP `tools/call messages_read`, default arguments (the newest 20; marks them read);
//! * `poll` — MCP `tools/call events_poll` without waiting, `limit` 50, after the newest event
//!   id it has seen (an agent's cursor: the last event of a full page, else the session's
//!   newest);
//! * `ctx`  — REST `POST /mcp/context/set` of one of 20 keys of its own (`soak.p{i}.k{j}`);
//! * `lock` — REST `POST /mcp/collaborate/lock` on a file of its own (`/soak/p{i}.rs`, so never
//!   refused) then `POST /mcp/collaborate/lock/release`: one operation, both round trips.
//!
//! An operation counts in the interval in which it ends. ops/s and the quantiles count the
//! successful operations; a failed one (transport error, non-200, JSON-RPC error, tool error, a
//! refused lock) is counted in `errors`, with the first error of each interval on stderr.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::wire::{Client, Conn, pct};
use super::{Args, CpuMeter, MAX_PARTICIPANTS, addr_of, create_session};

/// The operations of the rotation, as the report names them.
const KINDS: [&str; 5] = ["send", "read", "poll", "ctx", "lock"];
const SEND: usize = 0;

/// What the clients measured since the main thread last took it.
#[derive(Default)]
struct Window {
    /// Per kind: latencies of the successful operations, in µs.
    ok_us: [Vec<u64>; KINDS.len()],
    errors: [u64; KINDS.len()],
    first_error: Option<String>,
}

impl Window {
    fn absorb(&mut self, other: Window) {
        for (mine, theirs) in self.ok_us.iter_mut().zip(other.ok_us) {
            mine.extend(theirs);
        }
        for (mine, theirs) in self.errors.iter_mut().zip(other.errors) {
            *mine += theirs;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn ops(&self) -> usize {
        self.ok_us.iter().map(Vec::len).sum()
    }

    fn error_count(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// ` p50/p99` per kind, in ms (sorts the latencies).
    fn cells(&mut self) -> String {
        self.ok_us
            .iter_mut()
            .map(|l| {
                l.sort_unstable();
                format!(
                    "  {:>13}",
                    format!("{:.1}/{:.1}", pct(l, 0.50), pct(l, 0.99))
                )
            })
            .collect()
    }
}

/// One soak client: its MCP session, a REST connection to the same hub, and its cursors.
struct SoakClient {
    index: usize,
    to: String,
    mcp: Client,
    rest: Conn,
    auth: String,
    /// `after` of the next `events_poll`.
    cursor: i64,
    /// Operations done so far (message bodies and context values carry it).
    n: u64,
}

impl SoakClient {
    fn op(&mut self, kind: usize) -> Result<(), String> {
        self.n += 1;
        match KINDS[kind] {
            "send" => {
                let body = format!("soak message {} from p{}", self.n, self.index);
                self.tool("message_send", json!({"to": self.to, "body": body}))?;
            }
            "read" => {
                self.tool("messages_read", json!({}))?;
            }
            "poll" => {
                let page = self.tool("events_poll", json!({"after": self.cursor, "limit": 50}))?;
                let last_seen = page["events"]
                    .as_array()
                    .and_then(|e| e.last())
                    .and_then(|e| e["id"].as_i64());
                let newest = page["lastEventId"].as_i64();
                self.cursor = match (page["more"] == true, last_seen, newest) {
                    (true, Some(id), _) => id,
                    (_, seen, newest) => {
                        self.cursor.max(seen.unwrap_or(0)).max(newest.unwrap_or(0))
                    }
                };
            }
            "ctx" => {
                let body = json!({"path": format!("soak.p{}.k{}", self.index, self.n % 20),
                                  "value": {"n": self.n}});
                self.rest("/mcp/context/set", &body)?;
            }
            _ => {
                let body = json!({"resource": format!("/soak/p{}.rs", self.index),
                                  "operation": "soak", "duration": 60});
                let lock = self.rest("/mcp/collaborate/lock", &body)?;
                let id = lock["id"].as_i64().ok_or("lock: no id in the answer")?;
                self.rest("/mcp/collaborate/lock/release", &json!({"lockId": id}))?;
            }
        }
        Ok(())
    }

    /// A tool call; its structured result.
    fn tool(&mut self, name: &str, arguments: Value) -> Result<Value, String> {
        let mut r = self
            .mcp
            .rpc("tools/call", json!({"name": name, "arguments": arguments}))
            .map_err(|e| format!("{name}: {e}"))?;
        Ok(r["structuredContent"].take())
    }

    /// A REST POST answered 200; its JSON body.
    fn rest(&mut self, path: &str, body: &Value) -> Result<Value, String> {
        let headers = [("authorization", self.auth.as_str())];
        let r = match self.rest.post(path, &headers, body.to_string().as_bytes()) {
            Ok(r) => r,
            Err(e) => {
                // The connection is in an unknown state: the next call gets a fresh one.
                if let Ok(c) = Conn::open(&self.rest.addr) {
                    self.rest = c;
                }
                return Err(format!("{path}: {e}"));
            }
        };
        if r.status != 200 {
            return Err(format!(
                "{path}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        serde_json::from_slice(&r.body).map_err(|e| format!("{path}: bad JSON: {e}"))
    }
}

/// Runs the soak with `n` clients and prints its report; Ok(()) even if it degraded (the
/// report says so), Err only if it could not be set up.
pub fn run_soak(
    addrs: &[String],
    n: usize,
    run: u32,
    args: &Args,
    cpu_cols: &str,
    cpu_line: &dyn Fn(&[f64]) -> String,
) -> Result<(), String> {
    if n == 0 || n > MAX_PARTICIPANTS {
        return Err(format!("soak phase: 1..={MAX_PARTICIPANTS} clients"));
    }
    if !(args.soak_seconds > 0.0 && args.soak_interval > 0.0) {
        return Err("--soak-seconds and --soak-interval must be > 0".into());
    }
    let names: Vec<String> = (0..n.max(2)).map(|i| format!("p{i}")).collect();
    let mut rest = Conn::open(&addrs[0])?;
    let tokens = create_session(&mut rest, &format!("soak-{run}-{n}"), &names)?;
    let mut clients = Vec::new();
    for (i, name) in names.iter().enumerate().take(n) {
        let token = tokens[name]
            .as_str()
            .ok_or_else(|| format!("no token for {name}"))?;
        let addr = addr_of(addrs, i);
        clients.push(SoakClient {
            index: i,
            to: names[(i + 1) % names.len()].clone(),
            mcp: Client::connect(addr, token.to_owned(), "bench-soak")?,
            rest: Conn::open(addr)?,
            auth: format!("Bearer {token}"),
            cursor: 0,
            n: 0,
        });
    }

    let start = Instant::now() + Duration::from_millis(200);
    let window = start + Duration::from_secs_f64(args.warmup);
    let end = window + Duration::from_secs_f64(args.soak_seconds);
    let stop = Arc::new(AtomicBool::new(false));
    // Threads wait here after their last call, so that their CPU time is read while they live.
    let done = Arc::new(Barrier::new(n + 1));
    let windows: Vec<Arc<Mutex<Window>>> = (0..n).map(|_| Arc::default()).collect();
    let handles: Vec<_> = clients
        .into_iter()
        .zip(&windows)
        .map(|(mut c, w)| {
            let (w, stop, done) = (w.clone(), stop.clone(), done.clone());
            thread::spawn(move || {
                let mut kind = c.index % KINDS.len();
                thread::sleep(start.saturating_duration_since(Instant::now()));
                loop {
                    let t0 = Instant::now();
                    if t0 >= end || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let outcome = c.op(kind);
                    let us = t0.elapsed().as_micros() as u64;
                    if t0 >= window {
                        let mut w = w.lock().expect("window lock");
                        match outcome {
                            Ok(()) => w.ok_us[kind].push(us),
                            Err(e) => {
                                w.errors[kind] += 1;
                                w.first_error.get_or_insert(e);
                            }
                        }
                    }
                    kind = (kind + 1) % KINDS.len();
                }
                done.wait();
                c
            })
        })
        .collect();

    let kinds: String = KINDS
        .iter()
        .map(|k| format!("  {:>13}", format!("{k} p50/p99")))
        .collect();
    println!("clients  elapsed s   ops/s  errors  messages{kinds}{cpu_cols}");
    let mut rates = Vec::new();
    let mut total = Window::default();
    let mut messages = 0;
    thread::sleep(window.saturating_duration_since(Instant::now()));
    let mut from = window;
    while from < end {
        let meter = CpuMeter::start(args.hub_pid);
        let to = (from + Duration::from_secs_f64(args.soak_interval)).min(end);
        thread::sleep(to.saturating_duration_since(Instant::now()));
        let seconds = to.duration_since(from).as_secs_f64();
        let cpu = meter.finish(seconds);
        let mut w = Window::default();
        for cw in &windows {
            w.absorb(std::mem::take(&mut *cw.lock().expect("window lock")));
        }
        let rate = w.ops() as f64 / seconds;
        rates.push(rate);
        messages += w.ok_us[SEND].len();
        println!(
            "{n:>7}  {:>9.0}  {rate:>6.0}  {:>6}  {messages:>8}{}{}",
            to.duration_since(window).as_secs_f64(),
            w.error_count(),
            w.cells(),
            cpu_line(&cpu)
        );
        if let Some(e) = w.first_error.take() {
            eprintln!("  first error: {}", e.chars().take(300).collect::<String>());
        }
        total.absorb(w);
        from = to;
    }
    stop.store(true, Ordering::Relaxed);
    done.wait();
    let clients: Vec<SoakClient> = handles
        .into_iter()
        .map(|h| h.join().map_err(|_| "soak client thread panicked"))
        .collect::<Result<_, _>>()?;

    let seconds = end.duration_since(window).as_secs_f64();
    println!(
        "{n:>7}  {:>9}  {:>6.0}  {:>6}  {messages:>8}{}",
        "all",
        total.ops() as f64 / seconds,
        total.error_count(),
        total.cells()
    );
    let errors: Vec<String> = KINDS
        .iter()
        .zip(total.errors)
        .map(|(k, e)| format!("{k} {e}"))
        .collect();
    println!("errors by operation: {}", errors.join(", "));
    let (first, last) = (rates[0], rates[rates.len() - 1]);
    let ratio = if first > 0.0 { last / first } else { 0.0 };
    println!(
        "last/first interval ops/s: {last:.0} / {first:.0} = {ratio:.2}: {}",
        if (ratio - 1.0).abs() <= 0.20 {
            "within 20 %"
        } else {
            "NOT within 20 %"
        }
    );
    // End the MCP sessions so that they do not linger on the hub.
    for c in clients {
        if let Err(e) = c.mcp.close() {
            eprintln!("  closing an MCP session: {e}");
        }
    }
    Ok(())
}
