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
//! * `ctx`   — `tools/call context_set` of a path of the client's own (`bench.<participant>`),
//!   a durable write;
//! * `send`  — `tools/call message_send`, a directed message to the session's other participant
//!   (`gemini`); the hub answers once the message is durably committed;
//! * `sse`   — the same read answered as an SSE stream (the client sends a progress token);
//! * `ping`  — the MCP `ping` method (transport + JSON-RPC, no tool and no actor), for comparison.
//!
//! Each client sends its next request as soon as the previous answer arrives. An error is a
//! transport error, a non-200 status, a JSON-RPC error or a tool result with `"isError": true`.
//!
//! The `deliver` phase does not use `--sessions`: for each R in `--recipients` it creates one
//! collab session with a sender and R recipients. Every recipient opens its MCP GET event stream
//! on its own connection, read by its own thread, which timestamps each `message_sent` event as
//! its frame arrives. The sender broadcasts `{"seq": n}` with `message_send`, then waits until
//! all R recipients have message n before sending n+1 (closed loop on delivery). Latency is
//! receive instant − the instant just before the send request, over all (message, recipient)
//! pairs; `all p99` is the p99 of the time until the last of the R recipients has a message.
//! A message some recipient never got is `missing`, one it got twice is a `dup`: both must be 0.
//!
//! The `lock` phase: `--sessions` N participants of one collab session contend for
//! `--lock-resources` files over REST (acquire, then release when granted).
//!
//! The `soak` phase (module `bench/soak.rs`) runs last, for each N of `--sessions`: N clients
//! in a closed loop over ONE shared collab session for `--soak-seconds` (default 600), so that
//! its history grows under a constant load, each doing in rotation `message_send` (directed to
//! another participant), `messages_read`, `events_poll` (no wait), REST `context_set` and a REST
//! lock acquire + release on a file of its own. One line per `--soak-interval` (default 60 s):
//! ops/s, errors, messages so far and p50/p99 per operation; at the end the ratio of the last
//! interval's ops/s to the first's and whether it is within 20 %.
//!
//! Several hubs: `--url` takes a comma list (`--url http://127.0.0.1:8001,http://127.0.0.1:8002`)
//! and client i talks to URL i mod n for everything it does (its MCP session, its REST calls,
//! its event stream). Client i is the i-th MCP session of the per-session phases, participant
//! `r{i-1}` of `deliver` (the sender is client 0), and participant `p{i}` of `lock` and `soak`.
//! Setup calls that create collab sessions go to the first URL. With one URL every client
//! talks to it, as before. `--projects N` puts session i of the per-session phases in project
//! `bench-p{i mod N}` instead, created through client i's URL: with N the number of URLs each
//! hub takes the projects of its own clients, so that the hubs serve projects apart.
//!
//! ```text
//! cargo build --release
//! target/release/collab-hub --bind 127.0.0.1:PORT --database-url sqlite:///tmp/x/hub.db \
//!     --message-rate 1000000 --message-burst 1000000
//! target/release/collab-hub-bench --url http://127.0.0.1:PORT --sessions 1,8,32 \
//!     [--seconds 5] [--warmup 1] [--phases read,sse,write,send,ctx,task,ping,deliver,lock,soak] \
//!     [--recipients 1,10,100] [--lock-resources 4] [--soak-seconds 600] [--soak-interval 60] \
//!     [--hub-pid PID] [--one-session]
//! ```
//!
//! `--one-session` puts the per-session phases' N clients into one collab session (what one
//! busy session sustains; with `send`, N senders to one recipient) instead of one session each.
//!
//! The `send`, `deliver` and `soak` phases need the hub's per-participant send rate limit
//! raised (the `--message-*` flags above); with the defaults (5/s, burst 30) nearly every send
//! is refused.
//!
//! With `--hub-pid` (Linux) the CPU time used during each measured window by the hub, by this
//! generator and by everything else on the machine is printed as well, in % of one core.

use std::io::Read;
use std::net::Shutdown;
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

#[path = "bench/soak.rs"]
mod soak;
#[path = "bench/wire.rs"]
mod wire;

use wire::{Client, Conn, cpu_ns, host_port, machine_ticks, pct};

/// Participants per session allowed by the hub: the deliver phase needs R + 1 of them.
const MAX_PARTICIPANTS: usize = 128;

/// How long the deliver sender waits for a message to reach every recipient before it gives up
/// on it and sends the next one (the message is then reported missing unless it shows up late).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Parser)]
#[command(about = "Load generator for collab-hub's MCP endpoint")]
struct Args {
    /// Base URL of the hub, e.g. http://127.0.0.1:8080; a comma list spreads the clients over
    /// several hubs (client i uses URL i mod n).
    #[arg(long, value_delimiter = ',', required = true)]
    url: Vec<String>,
    /// Concurrent MCP sessions; a comma list runs each in turn.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    sessions: Vec<usize>,
    /// Recipients of each broadcast in the deliver phase; a comma list runs each in turn.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    recipients: Vec<usize>,
    /// Measured seconds per phase.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Unmeasured seconds at the start of each phase.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Phases to run, in order (`deliver`, `lock` and `soak` run after the per-session phases).
    #[arg(long, value_delimiter = ',', default_value = "read,write",
          value_parser = ["read", "sse", "write", "send", "ctx", "task", "ping", "deliver", "lock", "soak"])]
    phases: Vec<String>,
    /// The per-session phases put their N clients in ONE collab session (participants
    /// `c0`…, plus `gemini`, the `send` phase's recipient) instead of one session each: what
    /// one busy session sustains.
    #[arg(long)]
    one_session: bool,
    /// With `--one-session`: KiB of shared context (keys `fill.k0`…, 64 KiB each) written
    /// before the phases, so that `ctx` measures writes into a large document.
    #[arg(long, default_value_t = 0)]
    context_kib: usize,
    /// With `--one-session`: small keys (`many.k0`…) written into the shared context before
    /// the phases, so that `ctx` measures writes beside many written paths.
    #[arg(long, default_value_t = 0)]
    context_keys: usize,
    /// Per-session phases, one session per client: put session i in project `bench-p{i mod N}`,
    /// created through client i's URL (0: every session in the default project, created
    /// through the first URL).
    #[arg(long, default_value_t = 0)]
    projects: usize,
    /// Resources the lock phase's clients contend for (fewer: more contention).
    #[arg(long, default_value_t = 4)]
    lock_resources: usize,
    /// Measured seconds of the soak phase.
    #[arg(long, default_value_t = 600.0)]
    soak_seconds: f64,
    /// Seconds per line of the soak phase's report.
    #[arg(long, default_value_t = 60.0)]
    soak_interval: f64,
    /// The hub's process id, to report its CPU use (reads /proc).
    #[arg(long)]
    hub_pid: Option<u32>,
}

/// A client of the timed phases: an MCP session and what its `write` phase last set.
struct Agent {
    mcp: Client,
    /// The collab session's status as this client last set it (write phase).
    paused: bool,
    /// Where this client writes in its session's shared context (ctx phase).
    key: String,
}

impl Agent {
    /// One request of `phase`; Ok(()) only for a 200 carrying a successful result.
    fn call(&mut self, phase: &str) -> Result<(), String> {
        let (method, params) = match phase {
            "read" => ("tools/call", json!({"name": "whoami", "arguments": {}})),
            // The same read answered as SSE (a progress token asks for it): several writes per
            // answer, where Nagle + delayed ACK would show if TCP_NODELAY were missing.
            "sse" => (
                "tools/call",
                json!({"name": "whoami", "arguments": {}, "_meta": {"progressToken": self.mcp.next_id + 1}}),
            ),
            "write" => {
                let action = if self.paused { "resume" } else { "pause" };
                (
                    "tools/call",
                    json!({"name": "session_status", "arguments": {"action": action}}),
                )
            }
            // Directed, so that the one recipient's stream and unread count grow but no fan-out
            // beyond it: this measures the durable send path, `deliver` measures fan-out.
            "send" => (
                "tools/call",
                json!({"name": "message_send", "arguments": {
                    "to": "gemini", "body": format!("bench message {}", self.mcp.next_id + 1)}}),
            ),
            // A path of its own: with `--one-session`, N writers of one context that never
            // overlap (pipelined beside each other).
            "ctx" => (
                "tools/call",
                json!({"name": "context_set", "arguments": {
                    "path": self.key, "value": self.mcp.next_id + 1}}),
            ),
            // A task for its sender (the one-session case: task commands are committed one
            // at a time, not pipelined; docs/multi-hub.md says why).
            "task" => (
                "tools/call",
                json!({"name": "task", "arguments": {
                    "action": "create", "description": format!("bench task {}", self.mcp.next_id + 1)}}),
            ),
            _ => ("ping", json!({})),
        };
        self.mcp.rpc(method, params)?;
        if phase == "write" {
            self.paused = !self.paused;
        }
        Ok(())
    }
}

/// What one client measured in one phase.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// CPU time of the hub, of this generator and of the whole machine at the start of a window.
struct CpuMeter {
    pids: Vec<u32>,
    before: Vec<u64>,
    machine_before: (f64, f64),
}

impl CpuMeter {
    fn start(hub_pid: Option<u32>) -> CpuMeter {
        let pids: Vec<u32> = hub_pid.into_iter().chain([std::process::id()]).collect();
        CpuMeter {
            before: pids.iter().map(|p| cpu_ns(*p)).collect(),
            pids,
            machine_before: machine_ticks(),
        }
    }

    /// % of one core used since `start` by the hub (if given), this process, and everything
    /// else; read it while the generator's threads still live (a dead thread's time is gone).
    fn finish(self, seconds: f64) -> Vec<f64> {
        let mut cpu: Vec<f64> = self
            .pids
            .iter()
            .zip(self.before)
            .map(|(p, b)| cpu_ns(*p).saturating_sub(b) as f64 / 1e7 / seconds)
            .collect();
        // Everything else running on the machine meanwhile (noise from other users).
        let (busy, total) = machine_ticks();
        let (busy0, total0) = self.machine_before;
        let cores = thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let all = (busy - busy0) / (total - total0).max(1.0) * cores * 100.0;
        cpu.push((all - cpu.iter().sum::<f64>()).max(0.0));
        cpu
    }
}

/// Runs `phase` on every client at once; latencies count for calls started inside the window.
fn run_phase(clients: Vec<Agent>, phase: &str, args: &Args) -> (Vec<Agent>, Tally, Vec<f64>) {
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
    // CPU time of the hub and of this process over the measured window.
    thread::sleep(window.saturating_duration_since(Instant::now()));
    let meter = CpuMeter::start(args.hub_pid);
    thread::sleep(end.saturating_duration_since(Instant::now()));
    let cpu = meter.finish(args.seconds);
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

/// Progress of the deliver phase, shared by the sender and the recipients' stream readers.
struct Deliveries {
    /// By sequence number: how many recipients have the message (first receipts only).
    have: Mutex<Vec<usize>>,
    /// Signalled when a message has reached every recipient.
    complete: Condvar,
    recipients: usize,
}

impl Deliveries {
    fn received(&self, seq: usize) {
        let mut have = self.have.lock().expect("deliveries lock");
        if have.len() <= seq {
            have.resize(seq + 1, 0);
        }
        have[seq] += 1;
        if have[seq] == self.recipients {
            self.complete.notify_one(); // only the sender waits
        }
    }

    /// Waits until every recipient has message `seq`; false if `timeout` passed first.
    fn wait_complete(&self, seq: usize, timeout: Duration) -> bool {
        let have = self.have.lock().expect("deliveries lock");
        let (_have, waited) = self
            .complete
            .wait_timeout_while(have, timeout, |h| {
                h.get(seq).copied().unwrap_or(0) < self.recipients
            })
            .expect("deliveries lock");
        !waited.timed_out()
    }
}

/// What one recipient's stream reader saw: per `message_sent` event of this run, its sequence
/// number and the instant its frame was read, in arrival order (duplicates included).
struct Receipts {
    got: Vec<(usize, Instant)>,
    /// Why the stream ended, unless the generator ended it.
    error: Option<String>,
}

/// Reads a GET event stream until it ends (or its socket is shut down) and reports every
/// `message_sent` event carrying a `{"seq": n}` body. The instant is taken as soon as the bytes
/// that complete a frame are read, before any parsing, so that JSON work here does not count as
/// delivery latency.
fn read_events(mut conn: Conn, chunked: bool, shared: &Deliveries, stop: &Mutex<bool>) -> Receipts {
    let mut receipts = Receipts {
        got: Vec::new(),
        error: None,
    };
    let mut first = Vec::<bool>::new(); // seq → already counted for the sender's closed loop
    let mut buf = Vec::new();
    loop {
        let read = if chunked {
            conn.read_chunk(&mut buf)
        } else {
            let mut tmp = [0; 16 * 1024];
            match conn.io.read(&mut tmp) {
                Ok(n) => {
                    buf.extend_from_slice(&tmp[..n]);
                    Ok(n > 0)
                }
                Err(e) => Err(e.to_string()),
            }
        };
        let at = Instant::now();
        let ended = match read {
            Ok(true) => None,
            Ok(false) => Some("the hub ended the stream".to_owned()),
            Err(e) => Some(e),
        };
        if let Some(why) = ended {
            // After a shutdown by the generator an error is expected; before it, anything that
            // ends the stream is worth reporting (the missing deliveries will show as well).
            if !*stop.lock().expect("stop lock") {
                receipts.error = Some(why);
            }
            break;
        }
        // An SSE frame ends with a blank line; one read may hold several frames or a part.
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = buf.drain(..end + 2).collect();
            let Some(seq) = message_seq(&frame) else {
                continue;
            };
            receipts.got.push((seq, at));
            if first.len() <= seq {
                first.resize(seq + 1, false);
            }
            if !first[seq] {
                first[seq] = true;
                shared.received(seq);
            }
        }
    }
    receipts
}

/// The `seq` of a frame carrying a `message_sent` event with a `{"seq": n}` body.
fn message_seq(frame: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(frame).ok()?;
    let data = text.lines().find_map(|l| l.strip_prefix("data:"))?;
    let v: Value = serde_json::from_str(data.trim_start()).ok()?;
    if v["method"] != "notifications/collab/event" || v["params"]["kind"] != "message_sent" {
        return None;
    }
    v["params"]["payload"]["body"]["seq"]
        .as_u64()
        .map(|n| n as usize)
}

/// One deliver measurement for `r` recipients.
struct DeliverReport {
    /// Messages sent (successfully) inside the measured window.
    messages: usize,
    /// (message, recipient) latencies for messages sent inside the window, in µs.
    latencies_us: Vec<u64>,
    /// Per message sent inside the window and received by all: time until the last recipient.
    complete_us: Vec<u64>,
    /// (message, recipient) pairs never received, over every message sent, warm-up included.
    missing: usize,
    /// Extra receipts of a message a recipient already had.
    duplicates: usize,
    /// Messages the sender gave up waiting for (DELIVERY_TIMEOUT).
    stalls: usize,
    errors: u64,
    first_error: Option<String>,
    cpu: Vec<f64>,
}

/// One message the sender tried to send.
struct Sent {
    at: Instant,
    measured: bool,
    ok: bool,
}

/// The sender is client 0, recipient j client j + 1 (for the choice of URL).
fn run_deliver(addrs: &[String], r: usize, run: u32, args: &Args) -> Result<DeliverReport, String> {
    let mut names = vec!["sender".to_owned()];
    names.extend((0..r).map(|i| format!("r{i}")));
    let mut rest = Conn::open(&addrs[0])?;
    let tokens = create_session(&mut rest, &format!("bench-{run}-deliver-{r}"), &names)?;
    let token = |name: &str| -> Result<String, String> {
        tokens[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no token for {name}"))
    };
    let mut sender = Client::connect(addr_of(addrs, 0), token("sender")?, "bench")?;
    let shared = Arc::new(Deliveries {
        have: Mutex::new(Vec::new()),
        complete: Condvar::new(),
        recipients: r,
    });
    let stop = Arc::new(Mutex::new(false));
    // All MCP sessions first, then all streams: actix hands new connections to its workers in
    // turn, so opening each recipient's POST and GET connections back to back would put every
    // stream on the same worker and leave the other one idle.
    let recipients = names
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, name)| Client::connect(addr_of(addrs, i), token(name)?, "bench"))
        .collect::<Result<Vec<_>, String>>()?;
    let (mut sockets, mut readers) = (Vec::new(), Vec::new());
    for client in &recipients {
        // The hub has registered the stream by the time it answers the GET, so no event sent
        // after this returns can be missed.
        let (conn, chunked) = client.open_stream()?;
        sockets.push(conn.io.get_ref().try_clone().map_err(|e| e.to_string())?);
        let (shared, stop) = (shared.clone(), stop.clone());
        readers.push(thread::spawn(move || {
            read_events(conn, chunked, &shared, &stop)
        }));
    }

    let start = Instant::now() + Duration::from_millis(100);
    let window = start + Duration::from_secs_f64(args.warmup);
    let end = window + Duration::from_secs_f64(args.seconds);
    let done = Arc::new(Barrier::new(2));
    let sending = {
        let (shared, done) = (shared.clone(), done.clone());
        thread::spawn(move || {
            let (mut sent, mut t) = (Vec::<Sent>::new(), Tally::default());
            let mut stalls = 0;
            thread::sleep(start.saturating_duration_since(Instant::now()));
            loop {
                let at = Instant::now();
                if at >= end {
                    break;
                }
                // A failed send still uses up its number: it may have been committed anyway,
                // and reusing the number would make its delivery look like a duplicate.
                let seq = sent.len();
                let outcome = sender.rpc(
                    "tools/call",
                    json!({"name": "message_send", "arguments": {"body": {"seq": seq}}}),
                );
                let ok = outcome.is_ok();
                if let Err(e) = outcome {
                    t.errors += 1;
                    t.first_error.get_or_insert(e);
                }
                sent.push(Sent {
                    at,
                    measured: at >= window,
                    ok,
                });
                if ok && !shared.wait_complete(seq, DELIVERY_TIMEOUT) {
                    stalls += 1;
                }
            }
            done.wait();
            (sender, sent, t, stalls)
        })
    };
    thread::sleep(window.saturating_duration_since(Instant::now()));
    let meter = CpuMeter::start(args.hub_pid);
    thread::sleep(end.saturating_duration_since(Instant::now()));
    let cpu = meter.finish(args.seconds);
    done.wait();
    let (sender, sent, tally, stalls) = sending.join().expect("sender thread panicked");

    // Every delivery the sender waited for is in; give late ones (after a stall) and any
    // duplicate of the last messages a moment to show up before the streams are cut.
    thread::sleep(if stalls > 0 {
        DELIVERY_TIMEOUT
    } else {
        Duration::from_millis(300)
    });
    *stop.lock().expect("stop lock") = true;
    for s in &sockets {
        let _ = s.shutdown(Shutdown::Both);
    }
    let mut report = DeliverReport {
        messages: sent.iter().filter(|s| s.measured && s.ok).count(),
        latencies_us: Vec::new(),
        complete_us: Vec::new(),
        missing: 0,
        duplicates: 0,
        stalls,
        errors: tally.errors,
        first_error: tally.first_error,
        cpu,
    };
    // Per measured message: the latest first receipt so far, and how many recipients had it.
    let mut last = vec![(0u64, 0usize); sent.len()];
    for reader in readers {
        let receipts = reader.join().expect("stream reader panicked");
        if let Some(e) = receipts.error {
            report.errors += 1;
            report
                .first_error
                .get_or_insert(format!("event stream: {e}"));
        }
        let mut count = vec![0usize; sent.len()];
        for (seq, at) in receipts.got {
            let Some(s) = sent.get(seq) else {
                report.duplicates += 1; // a message this run never sent: count it as extra
                continue;
            };
            count[seq] += 1;
            if count[seq] > 1 {
                report.duplicates += 1;
            } else if s.measured {
                let us = at.saturating_duration_since(s.at).as_micros() as u64;
                report.latencies_us.push(us);
                last[seq] = (last[seq].0.max(us), last[seq].1 + 1);
            }
        }
        report.missing += sent
            .iter()
            .zip(&count)
            .filter(|(s, n)| s.ok && **n == 0)
            .count();
    }
    report.complete_us = last
        .into_iter()
        .filter(|(_, n)| *n == r)
        .map(|(us, _)| us)
        .collect();
    // End the MCP sessions so that they do not linger on the hub between measurements.
    for c in recipients.into_iter().chain([sender]) {
        if let Err(e) = c.close() {
            report.first_error.get_or_insert(e);
        }
    }
    Ok(report)
}

/// The `HOST:PORT` client `i` talks to: URL i mod n of `--url`.
fn addr_of(addrs: &[String], i: usize) -> &str {
    &addrs[i % addrs.len()]
}

/// Creates one collab session over REST and returns its `tokens` object (aiId → token).
fn create_session(conn: &mut Conn, name: &str, participants: &[String]) -> Result<Value, String> {
    create_session_in(conn, name, participants, None)
}

/// `create_session`, in `project` if given.
fn create_session_in(
    conn: &mut Conn,
    name: &str,
    participants: &[String],
    project: Option<String>,
) -> Result<Value, String> {
    let mut body = json!({"name": name, "participants": participants});
    if let Some(project) = project {
        body["project"] = json!(project);
    }
    let r = conn.post("/mcp/session/create", &[], body.to_string().as_bytes())?;
    let mut v: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
    match (r.status, v["tokens"].is_object()) {
        (201, true) => Ok(v["tokens"].take()),
        (s, _) => Err(format!("session create: {s} {v}")),
    }
}

/// Writes `kib` KiB of context into the session of `tokens` (as `gemini`), 64 KiB per key,
/// then `keys` small keys (2,000 per `context_sync`).
fn fill_context(conn: &mut Conn, tokens: &Value, kib: usize, keys: usize) -> Result<(), String> {
    let token = tokens["gemini"].as_str().ok_or("no token for gemini")?;
    let auth = format!("Bearer {token}");
    let large = (0..kib.div_ceil(64)).map(|k| {
        let chunk = "x".repeat(64 * 1024 - 16);
        (
            "/mcp/context/set",
            json!({"path": format!("fill.k{k}"), "value": chunk}),
        )
    });
    let small = (0..keys).step_by(2_000).map(|from| {
        let updates: serde_json::Map<String, Value> = (from..keys.min(from + 2_000))
            .map(|k| (format!("k{k}"), json!(k)))
            .collect();
        ("/mcp/context/sync", json!({"updates": {"many": updates}}))
    });
    for (path, body) in large.chain(small) {
        let r = conn.post(
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )?;
        if r.status != 200 {
            return Err(format!(
                "filling the context: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
    }
    Ok(())
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let addrs = args
        .url
        .iter()
        .map(|u| host_port(u.trim()))
        .collect::<Result<Vec<_>, String>>()?;
    if addrs.iter().any(|a| a.is_empty()) {
        return Err("--url: an empty URL in the list".into());
    }
    if !(args.seconds > 0.0 && args.warmup >= 0.0) {
        return Err("--seconds must be > 0 and --warmup >= 0".into());
    }
    if args
        .recipients
        .iter()
        .any(|&r| r == 0 || r + 1 > MAX_PARTICIPANTS)
    {
        return Err(format!(
            "--recipients must be 1..={} (a session holds at most {MAX_PARTICIPANTS})",
            MAX_PARTICIPANTS - 1
        ));
    }
    if args.one_session && args.sessions.iter().any(|&n| n + 1 > MAX_PARTICIPANTS) {
        return Err(format!(
            "--one-session: at most {} clients (a session holds at most {MAX_PARTICIPANTS})",
            MAX_PARTICIPANTS - 1
        ));
    }
    let cpu_cols = if args.hub_pid.is_some() {
        "  hub cpu%  gen cpu%  other cpu%"
    } else {
        ""
    };
    let cpu_line = |cpu: &[f64]| match args.hub_pid {
        Some(_) => format!("  {:>8.0}  {:>8.0}  {:>10.0}", cpu[0], cpu[1], cpu[2]),
        None => String::new(),
    };
    let run = std::process::id(); // makes session names unique across runs
    let phases: Vec<&String> = args
        .phases
        .iter()
        .filter(|p| !matches!(p.as_str(), "deliver" | "lock" | "soak"))
        .collect();
    if !phases.is_empty() {
        println!("sessions  phase  calls/s  p50 ms  p99 ms  max ms  errors{cpu_cols}");
        let pair = ["claude".to_owned(), "gemini".to_owned()];
        for &n in &args.sessions {
            let mut rest = Conn::open(&addrs[0])?;
            let mut clients = Vec::new();
            let shared = if args.one_session {
                let mut names = vec!["gemini".to_owned()];
                names.extend((0..n).map(|i| format!("c{i}")));
                Some(create_session(
                    &mut rest,
                    &format!("bench-{run}-{n}"),
                    &names,
                )?)
            } else {
                None
            };
            if let Some(tokens) = &shared {
                fill_context(&mut rest, tokens, args.context_kib, args.context_keys)?;
            }
            for i in 0..n {
                let (tokens, me) = match &shared {
                    Some(tokens) => (tokens.clone(), format!("c{i}")),
                    None if args.projects > 0 => (
                        create_session_in(
                            &mut Conn::open(addr_of(&addrs, i))?,
                            &format!("bench-{run}-{n}-{i}"),
                            &pair,
                            Some(format!("bench-p{}", i % args.projects)),
                        )?,
                        "claude".to_owned(),
                    ),
                    None => (
                        create_session(&mut rest, &format!("bench-{run}-{n}-{i}"), &pair)?,
                        "claude".to_owned(),
                    ),
                };
                let token = tokens[&me].as_str().ok_or(format!("no token for {me}"))?;
                clients.push(Agent {
                    mcp: Client::connect(addr_of(&addrs, i), token.to_owned(), "bench")?,
                    paused: false,
                    key: format!("bench.{me}"),
                });
            }
            for phase in &phases {
                let (back, tally, cpu) = run_phase(clients, phase, &args);
                clients = back;
                let mut l = tally.latencies_us;
                l.sort_unstable();
                let rate = l.len() as f64 / args.seconds;
                println!(
                    "{n:>8}  {phase:<5}  {rate:>7.0}  {:>6.2}  {:>6.2}  {:>6.2}  {:>6}{}",
                    pct(&l, 0.50),
                    pct(&l, 0.99),
                    pct(&l, 1.0),
                    tally.errors,
                    cpu_line(&cpu)
                );
                if let Some(e) = tally.first_error {
                    eprintln!("  first error: {}", e.chars().take(300).collect::<String>());
                }
            }
        }
    }
    if args.phases.iter().any(|p| p == "deliver") {
        println!(
            "recipients  phase    msgs/s  deliv/s  p50 ms  p99 ms  max ms  all p99  missing  dups  stalls  errors{cpu_cols}"
        );
        for &r in &args.recipients {
            let mut d = run_deliver(&addrs, r, run, &args)?;
            d.latencies_us.sort_unstable();
            d.complete_us.sort_unstable();
            let l = &d.latencies_us;
            println!(
                "{r:>10}  deliver  {:>6.0}  {:>7.0}  {:>6.2}  {:>6.2}  {:>6.2}  {:>7.2}  {:>7}  {:>4}  {:>6}  {:>6}{}",
                d.messages as f64 / args.seconds,
                l.len() as f64 / args.seconds,
                pct(l, 0.50),
                pct(l, 0.99),
                pct(l, 1.0),
                pct(&d.complete_us, 0.99),
                d.missing,
                d.duplicates,
                d.stalls,
                d.errors,
                cpu_line(&d.cpu)
            );
            if let Some(e) = d.first_error {
                eprintln!("  first error: {}", e.chars().take(300).collect::<String>());
            }
        }
    }
    if args.phases.iter().any(|p| p == "lock") {
        if args.lock_resources == 0 {
            return Err("--lock-resources must be at least 1".into());
        }
        println!(
            "clients  phase  resources  trips/s  tries/s  refused%  p50 ms  p99 ms  max ms  errors{cpu_cols}"
        );
        for &n in &args.sessions {
            let mut t = run_locks(&addrs, n, run, &args)?;
            t.trips_us.sort_unstable();
            let l = &t.trips_us;
            println!(
                "{n:>7}  lock   {:>9}  {:>7.0}  {:>7.0}  {:>8.1}  {:>6.2}  {:>6.2}  {:>6.2}  {:>6}{}",
                args.lock_resources,
                l.len() as f64 / args.seconds,
                t.tries as f64 / args.seconds,
                100.0 * t.refused as f64 / t.tries.max(1) as f64,
                pct(l, 0.50),
                pct(l, 0.99),
                pct(l, 1.0),
                t.errors,
                cpu_line(&t.cpu)
            );
            if let Some(e) = t.first_error {
                eprintln!("  first error: {}", e.chars().take(300).collect::<String>());
            }
        }
    }
    if args.phases.iter().any(|p| p == "soak") {
        for &n in &args.sessions {
            soak::run_soak(&addrs, n, run, &args, cpu_cols, &cpu_line)?;
        }
    }
    Ok(())
}

/// What the lock phase counted.
#[derive(Default)]
struct LockTally {
    /// Acquire + release round trips that got the lock, in microseconds.
    trips_us: Vec<u64>,
    tries: u64,
    /// Acquires answered 409 (someone else holds a conflicting lock).
    refused: u64,
    errors: u64,
    first_error: Option<String>,
    cpu: Vec<f64>,
}

/// `n` participants of one session contend for `--lock-resources` files: each client loops
/// acquire (no wait) → release when granted. Every acquire and release is a durable write (event
/// plus lock row) in the one session actor, so this measures the lock path under contention.
fn run_locks(addrs: &[String], n: usize, run: u32, args: &Args) -> Result<LockTally, String> {
    if n == 0 || n > MAX_PARTICIPANTS {
        return Err(format!("lock phase: 1..={MAX_PARTICIPANTS} clients"));
    }
    let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    let mut rest = Conn::open(&addrs[0])?;
    let tokens = create_session(&mut rest, &format!("locks-{run}-{n}"), &names)?;
    let start = Instant::now() + Duration::from_millis(200);
    let window = start + Duration::from_secs_f64(args.warmup);
    let end = window + Duration::from_secs_f64(args.seconds);
    let done = Arc::new(Barrier::new(n + 1));
    let resources = args.lock_resources;
    let handles: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let token = format!("Bearer {}", tokens[name].as_str().unwrap_or_default());
            let (addr, done) = (addr_of(addrs, i).to_owned(), done.clone());
            thread::spawn(move || {
                let mut t = LockTally::default();
                let mut conn = match Conn::open(&addr) {
                    Ok(c) => c,
                    Err(e) => {
                        t.errors += 1;
                        t.first_error = Some(e);
                        done.wait();
                        return t;
                    }
                };
                let headers = [
                    ("authorization", token.as_str()),
                    ("content-type", "application/json"),
                ];
                let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1);
                thread::sleep(start.saturating_duration_since(Instant::now()));
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let resource = format!("/src/file{}.ts", seed % resources as u64);
                    let body = json!({"resource": resource, "operation": "bench", "duration": 60});
                    let measured = t0 >= window;
                    let outcome = conn
                        .post(
                            "/mcp/collaborate/lock",
                            &headers,
                            body.to_string().as_bytes(),
                        )
                        .and_then(|r| match r.status {
                            200 => {
                                let v: Value =
                                    serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
                                let id = v["id"].as_i64().ok_or("no lock id")?;
                                let rel = json!({"lockId": id}).to_string();
                                let r = conn.post(
                                    "/mcp/collaborate/lock/release",
                                    &headers,
                                    rel.as_bytes(),
                                )?;
                                if r.status != 200 {
                                    return Err(format!("release: {}", r.status));
                                }
                                Ok(true)
                            }
                            409 => Ok(false),
                            s => Err(format!("acquire: {s} {}", String::from_utf8_lossy(&r.body))),
                        });
                    if measured {
                        t.tries += 1;
                        match outcome {
                            Ok(true) => t.trips_us.push(t0.elapsed().as_micros() as u64),
                            Ok(false) => t.refused += 1,
                            Err(e) => {
                                t.errors += 1;
                                t.first_error.get_or_insert(e);
                            }
                        }
                    }
                }
                done.wait();
                t
            })
        })
        .collect();
    thread::sleep(window.saturating_duration_since(Instant::now()));
    let meter = CpuMeter::start(args.hub_pid);
    thread::sleep(end.saturating_duration_since(Instant::now()));
    let cpu = meter.finish(args.seconds);
    done.wait();
    let mut total = LockTally {
        cpu,
        ..Default::default()
    };
    for h in handles {
        let t = h.join().map_err(|_| "lock client thread panicked")?;
        total.trips_us.extend(t.trips_us);
        total.tries += t.tries;
        total.refused += t.refused;
        total.errors += t.errors;
        if total.first_error.is_none() {
            total.first_error = t.first_error;
        }
    }
    Ok(total)
}
