//! `ws_bench`: WebSocket fan-out and dashboard-interference benchmark for collab-hub
//! (BENCHMARKS.md, "Step 7: WebSocket fan-out and the dashboard").
//!
//! It starts the release hub itself (a fresh SQLite database in `--dir`, the message rate limit
//! raised), so that it knows the hub's pid for RSS (`/proc/PID/status` VmRSS) and CPU
//! (`/proc/PID/task/*/schedstat`). Two modes:
//!
//! * `fanout`: one collab session (`claude`, `gemini`). For each cumulative subscriber count in
//!   `--subs` it opens viewer WebSockets (no token, loopback) until that many are subscribed to
//!   the session (`{"type":"subscribe","sessionId":…}`), waits `--settle` seconds and reads the
//!   hub's RSS (idle), then
//!   - latency: `--samples` broadcasts, one at a time (claude `POST /mcp/messages/send`
//!     `{"body":"seq N"}`; the next once every subscriber has the previous one). Latency is the
//!     receipt instant (the client finds `"seq N` in the text frame) minus the instant before
//!     the POST, over all (broadcast, subscriber) pairs; `all` is the time until the last
//!     subscriber has a broadcast;
//!   - capacity (the websocket-shootout criterion): `--capacity-samples` broadcasts from
//!     `--concurrent` senders, each sending its next broadcast once the previous one reached
//!     every subscriber; passes if the `--limit-percentile` of `all` is at most `--limit-ms`.
//! * `mcp`: agents' MCP tool calls (`tools/call context_get`, closed loop, one OS thread and one
//!   keep-alive connection per agent, each agent a participant of one session) measured alone
//!   and with a busy dashboard attached: `--viewers` viewer WebSockets that replay the session's
//!   log (`subscribe {since: 0}`, again every `--replay-every` seconds) and call `context_get`,
//!   `lock {action: list}`, `task {action: list}` and `session_list` (`--dash-ops`) in a closed
//!   loop (or `--dash-rate` calls/s each). Rounds alternate the order (alone, dashboard /
//!   dashboard, alone).
//!
//! The machine is shared and noisy: before each measured phase the tool waits (up to
//! `--quiet-wait` s) until the machine is below `--quiet-pct` % CPU, and a phase during which
//! other processes used more than `--max-other` % of a core is printed as "(noisy, discarded)"
//! and taken again. Every printed line gives the hub's, the generator's and everything else's
//! CPU (% of one core) over the window.
//!
//! ```text
//! cargo build --release --bins --examples
//! B="target/release/examples/ws_bench --hub-bin target/release/collab-hub"
//! $B --mode fanout --subs 10,100,1000,10000                        # latency (+ capacity)
//! $B --mode fanout --subs 10000 --samples 0 --capacity-samples 0   # idle memory
//! $B --mode fanout --subs 10000 --samples 0 --capacity-samples 0 --no-subscribe
//! $B --mode fanout --subs 4000,6000,8000,9000,10000,11000,12000,13000,14000,16000,18000,19900 \
//!     --samples 0 --repeat 3                                         # capacity search
//! $B --mode mcp --agents 4 --viewers 4 --rounds 5                  # dashboard interference
//! $B --mode mcp --rounds 3 --dash-ops context_get --replay-every 0  # one operation at a time
//! $B --mode mcp --rounds 3 --dash-rate 10                           # a paced dashboard
//! ```

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use actix_codec::Framed;
use awc::{BoxedSocket, Client, Connector, ws};
use clap::Parser;
use futures::{SinkExt, StreamExt, channel::oneshot, stream};
use serde_json::{Value, json};

// Shared with collab-hub-bench, which uses parts this generator does not.
#[allow(dead_code)]
#[path = "../src/bin/bench/wire.rs"]
mod wire;

use wire::{cpu_ns, machine_ticks};
/// A broadcast that has not reached every subscriber by then counts its missing receipts.
const BROADCAST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Parser, Clone)]
#[command(about = "WebSocket fan-out and dashboard benchmark for collab-hub")]
struct Args {
    #[arg(long, default_value = "fanout", value_parser = ["fanout", "mcp"])]
    mode: String,
    /// The hub binary to start.
    #[arg(long, default_value = "target/release/collab-hub")]
    hub_bin: String,
    /// Scratch directory (emptied): the hub's database and log.
    #[arg(long, default_value = "/tmp/ws_bench")]
    dir: String,
    /// Extra flags for the hub (repeat).
    #[arg(long = "hub-arg", allow_hyphen_values = true)]
    hub_args: Vec<String>,

    // fanout
    /// Cumulative subscriber counts.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000")]
    subs: Vec<usize>,
    /// Latency broadcasts per level (default: 200, but at most 200,000 / N and at least 20).
    #[arg(long)]
    samples: Option<usize>,
    /// Capacity broadcasts per level (0: skip).
    #[arg(long, default_value_t = 40)]
    capacity_samples: usize,
    /// Concurrent senders in the capacity phase.
    #[arg(long, default_value_t = 4)]
    concurrent: usize,
    #[arg(long, default_value_t = 95.0)]
    limit_percentile: f64,
    #[arg(long, default_value_t = 500.0)]
    limit_ms: f64,
    /// Stop at the first level that fails the capacity criterion.
    #[arg(long)]
    stop_at_limit: bool,
    /// WebSocket handshakes in flight while opening.
    #[arg(long, default_value_t = 64)]
    connect_parallel: usize,
    /// Seconds to wait after opening, before reading RSS.
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
    /// Open the connections without subscribing (a `ping` instead): the memory of a bare
    /// WebSocket connection. Use with `--samples 0 --capacity-samples 0`.
    #[arg(long)]
    no_subscribe: bool,
    /// Capacity measurements per level.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Before each measured phase, wait (at most this many seconds) until the whole machine
    /// used less than `--quiet-pct` % CPU (of nproc × 100) over one second.
    #[arg(long, default_value_t = 60.0)]
    quiet_wait: f64,
    #[arg(long, default_value_t = 25.0)]
    quiet_pct: f64,
    /// A measurement during which other processes used more than this (% of one core) is
    /// discarded and taken again (up to 3 times).
    #[arg(long, default_value_t = 20.0)]
    max_other: f64,

    // mcp
    /// Agents (participants of one session), one MCP client each.
    #[arg(long, default_value_t = 4)]
    agents: usize,
    /// Dashboard viewer connections.
    #[arg(long, default_value_t = 4)]
    viewers: usize,
    /// Messages written to the session before the runs (the log the dashboard replays).
    #[arg(long, default_value_t = 2000)]
    seed_events: usize,
    /// The read operations each viewer cycles through.
    #[arg(long, value_delimiter = ',', default_value = "context_get,lock,task,session_list",
          value_parser = ["context_get", "lock", "task", "session_list", "none"])]
    dash_ops: Vec<String>,
    /// Read calls per second per viewer (0: a closed loop, as fast as the hub answers).
    #[arg(long, default_value_t = 0.0)]
    dash_rate: f64,
    /// Each viewer replays the whole log again this often (0: only when it connects).
    #[arg(long, default_value_t = 5.0)]
    replay_every: f64,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

// ---------------------------------------------------------------------------------------------
// The hub process and /proc

struct Hub {
    child: Child,
    pid: u32,
    port: u16,
}

impl Hub {
    fn start(args: &Args) -> Result<Hub, String> {
        let dir = PathBuf::from(&args.dir);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let log = File::create(dir.join("hub.log")).map_err(|e| e.to_string())?;
        let db = format!("sqlite://{}/hub.db", dir.display());
        let mut child = Command::new(&args.hub_bin)
            .args(["--bind", "127.0.0.1:0", "--database-url", &db])
            .args(["--message-rate", "1000000", "--message-burst", "1000000"])
            .args(&args.hub_args)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", args.hub_bin))?;
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).map_err(|e| e.to_string())?;
        let port = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            return Err(format!(
                "hub did not start: {line:?} (see {}/hub.log)",
                args.dir
            ));
        };
        thread::spawn(move || {
            let mut sink = String::new();
            while out.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        let pid = child.id();
        Ok(Hub { child, pid, port })
    }

    fn rss_kib(&self) -> u64 {
        status_kib(self.pid, "VmRSS:")
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map_or(0, |d| d.count())
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Machine CPU over `d`, in % of one core.
fn machine_busy(d: Duration, sleep: impl FnOnce(Duration)) -> f64 {
    let a = machine_ticks();
    sleep(d);
    let b = machine_ticks();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
    (b.0 - a.0) / (b.1 - a.1).max(1.0) * cores * 100.0
}

/// Waits until the machine is quiet (see `--quiet-wait`); returns the seconds waited and the
/// last busy %.
fn wait_quiet_blocking(args: &Args) -> (f64, f64) {
    let t = Instant::now();
    loop {
        let busy = machine_busy(Duration::from_secs(1), thread::sleep);
        if busy < args.quiet_pct || t.elapsed().as_secs_f64() >= args.quiet_wait {
            return (t.elapsed().as_secs_f64(), busy);
        }
    }
}

async fn wait_quiet(args: &Args) -> (f64, f64) {
    let t = Instant::now();
    loop {
        let a = machine_ticks();
        actix_rt::time::sleep(Duration::from_secs(1)).await;
        let b = machine_ticks();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
        let busy = (b.0 - a.0) / (b.1 - a.1).max(1.0) * cores * 100.0;
        if busy < args.quiet_pct || t.elapsed().as_secs_f64() >= args.quiet_wait {
            return (t.elapsed().as_secs_f64(), busy);
        }
    }
}

fn stamp() -> String {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}

/// CPU of the hub, of this generator and of everything else, over a window, in % of one core.
struct CpuMeter {
    hub: u32,
    at: Instant,
    hub0: u64,
    me0: u64,
    machine0: (f64, f64),
}

struct CpuUse {
    hub: f64,
    gen_: f64,
    other: f64,
    hub_ns: u64,
}

impl CpuMeter {
    fn start(hub: u32) -> CpuMeter {
        CpuMeter {
            hub,
            at: Instant::now(),
            hub0: cpu_ns(hub),
            me0: cpu_ns(std::process::id()),
            machine0: machine_ticks(),
        }
    }

    fn finish(&self) -> CpuUse {
        let secs = self.at.elapsed().as_secs_f64();
        let hub_ns = cpu_ns(self.hub) - self.hub0;
        let me_ns = cpu_ns(std::process::id()) - self.me0;
        let (busy, total) = machine_ticks();
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
        let machine = (busy - self.machine0.0) / (total - self.machine0.1).max(1.0) * cores * 100.0;
        let hub = hub_ns as f64 / 1e9 / secs * 100.0;
        let gen_ = me_ns as f64 / 1e9 / secs * 100.0;
        CpuUse {
            hub,
            gen_,
            other: (machine - hub - gen_).max(0.0),
            hub_ns,
        }
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        len => sorted[((len as f64 * p / 100.0).ceil() as usize).clamp(1, len) - 1] as f64 / 1000.0,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---------------------------------------------------------------------------------------------
// REST over awc

fn client() -> Client {
    Client::builder()
        .connector(Connector::new().limit(0).timeout(Duration::from_secs(30)))
        .timeout(Duration::from_secs(60))
        .finish()
}

async fn post(
    c: &Client,
    url: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<(u16, Value), String> {
    let mut req = c
        .post(url)
        .insert_header(("content-type", "application/json"));
    if let Some(t) = token {
        req = req.insert_header(("authorization", format!("Bearer {t}")));
    }
    let mut resp = req
        .send_body(body.to_string())
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .body()
        .limit(64 << 20)
        .await
        .map_err(|e| e.to_string())?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

async fn metric(c: &Client, base: &str, name: &str) -> f64 {
    let Ok(mut r) = c.get(format!("{base}/metrics")).send().await else {
        return f64::NAN;
    };
    let body = r.body().await.unwrap_or_default();
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")).map(str::to_owned))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

async fn create_session(
    c: &Client,
    base: &str,
    name: &str,
    who: &[String],
) -> Result<(String, Value), String> {
    let (s, mut v) = post(
        c,
        &format!("{base}/mcp/session/create"),
        None,
        &json!({"name": name, "participants": who}),
    )
    .await?;
    if s != 201 {
        return Err(format!("session create: {s} {v}"));
    }
    let sid = v["sessionId"]
        .as_str()
        .or_else(|| v["session"]["sessionId"].as_str())
        .ok_or_else(|| format!("no sessionId in {v}"))?
        .to_owned();
    Ok((sid, v["tokens"].take()))
}

// ---------------------------------------------------------------------------------------------
// fanout

type Socket = Framed<BoxedSocket, ws::Codec>;

#[derive(Default)]
struct Fan {
    live: usize,
    closed: usize,
    first_close: Option<String>,
    resyncs: u64,
    strays: u64,
    dups: u64,
    open: HashMap<u64, Pending>,
}

struct Pending {
    sent: Instant,
    expected: usize,
    got: usize,
    lat_us: Vec<u32>,
    done: Option<oneshot::Sender<()>>,
}

fn find_seq(b: &[u8]) -> Option<u64> {
    let i = find(b, b"\"seq ")? + 5;
    let d = &b[i..];
    let end = d.iter().position(|c| !c.is_ascii_digit())?;
    std::str::from_utf8(&d[..end]).ok()?.parse().ok()
}

async fn open_sub(
    c: Client,
    url: Rc<str>,
    sub: Rc<str>,
    fan: Rc<RefCell<Fan>>,
) -> Result<(), String> {
    let (_, mut framed) = c
        .ws(&*url)
        .max_frame_size(16 << 20)
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    framed
        .send(ws::Message::Text(sub.to_string().into()))
        .await
        .map_err(|e| format!("send subscribe: {e}"))?;
    loop {
        match framed.next().await {
            Some(Ok(ws::Frame::Text(b))) if find(&b, b"\"reply\"").is_some() => {
                if find(&b, b"\"ok\":").is_some() {
                    break;
                }
                return Err(format!("subscribe: {}", String::from_utf8_lossy(&b)));
            }
            Some(Ok(ws::Frame::Ping(p))) => {
                let _ = framed.send(ws::Message::Pong(p)).await;
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("subscribe: {e}")),
            None => return Err("closed before the subscribe reply".into()),
        }
    }
    fan.borrow_mut().live += 1;
    actix_rt::spawn(reader(framed, fan));
    Ok(())
}

async fn reader(mut framed: Socket, fan: Rc<RefCell<Fan>>) {
    let why = loop {
        match framed.next().await {
            Some(Ok(ws::Frame::Text(b))) => {
                let now = Instant::now();
                let mut f = fan.borrow_mut();
                if let Some(seq) = find_seq(&b) {
                    let mut dup = false;
                    match f.open.get_mut(&seq) {
                        Some(p) => {
                            p.lat_us.push(now.duration_since(p.sent).as_micros() as u32);
                            p.got += 1;
                            if p.got == p.expected {
                                if let Some(tx) = p.done.take() {
                                    let _ = tx.send(());
                                }
                            } else if p.got > p.expected {
                                dup = true;
                            }
                        }
                        None => f.strays += 1,
                    }
                    if dup {
                        f.dups += 1;
                    }
                } else if find(&b, b"\"resync\"").is_some() {
                    f.resyncs += 1;
                }
            }
            Some(Ok(ws::Frame::Ping(p))) => {
                if framed.send(ws::Message::Pong(p)).await.is_err() {
                    break "pong failed".to_owned();
                }
            }
            Some(Ok(ws::Frame::Close(r))) => break format!("close {r:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => break e.to_string(),
            None => break "eof".to_owned(),
        }
    };
    let mut f = fan.borrow_mut();
    f.live -= 1;
    f.closed += 1;
    f.first_close.get_or_insert(why);
}

struct Outcome {
    /// Until the last subscriber had it (None: some never did within the timeout).
    all_us: Option<u64>,
    lat_us: Vec<u32>,
    missing: usize,
}

struct Ctx {
    c: Client,
    base: String,
    token: String,
    fan: Rc<RefCell<Fan>>,
    seq: Cell<u64>,
}

async fn broadcast(ctx: &Ctx) -> Result<Outcome, String> {
    let seq = ctx.seq.get() + 1;
    ctx.seq.set(seq);
    let (tx, rx) = oneshot::channel();
    let sent = Instant::now();
    let expected = {
        let mut f = ctx.fan.borrow_mut();
        let expected = f.live;
        f.open.insert(
            seq,
            Pending {
                sent,
                expected,
                got: 0,
                lat_us: Vec::with_capacity(expected),
                done: Some(tx),
            },
        );
        expected
    };
    let body = json!({"body": format!("seq {seq}"), "priority": "routine"});
    let (s, v) = post(
        &ctx.c,
        &format!("{}/mcp/messages/send", ctx.base),
        Some(&ctx.token),
        &body,
    )
    .await?;
    if !(200..300).contains(&s) {
        ctx.fan.borrow_mut().open.remove(&seq);
        return Err(format!("messages/send: {s} {v}"));
    }
    if expected > 0 {
        let _ = actix_rt::time::timeout(BROADCAST_TIMEOUT, rx).await;
    }
    let p = ctx.fan.borrow_mut().open.remove(&seq).unwrap();
    let missing = p.expected.saturating_sub(p.got);
    Ok(Outcome {
        all_us: (missing == 0).then(|| p.lat_us.iter().copied().max().unwrap_or(0) as u64),
        lat_us: p.lat_us,
        missing,
    })
}

async fn fanout(args: &Args, hub: &Hub) -> Result<(), String> {
    let c = client();
    let base = format!("http://127.0.0.1:{}", hub.port);
    let (sid, tokens) =
        create_session(&c, &base, "ws-bench", &["claude".into(), "gemini".into()]).await?;
    let token = tokens["claude"]
        .as_str()
        .ok_or("no claude token")?
        .to_owned();
    let fan = Rc::new(RefCell::new(Fan::default()));
    let ctx = Ctx {
        c: c.clone(),
        base: base.clone(),
        token,
        fan: fan.clone(),
        seq: Cell::new(0),
    };
    // Warm the hub's send path with no subscriber.
    for _ in 0..20 {
        broadcast(&ctx).await?;
    }
    actix_rt::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let rss0 = hub.rss_kib();
    let fds0 = hub.fds();
    println!(
        "hub pid {} port {}; session {sid}; baseline RSS {} KiB, {} fds; generator RLIMIT_NOFILE {}",
        hub.pid,
        hub.port,
        rss0,
        fds0,
        std::fs::read_to_string("/proc/self/limits")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap_or("")
            .split_whitespace()
            .nth(3)
            .unwrap_or("?")
    );
    let url: Rc<str> = format!("ws://127.0.0.1:{}/ws", hub.port).into();
    let sub: Rc<str> = if args.no_subscribe {
        json!({"type": "ping", "id": 1}).to_string().into()
    } else {
        json!({"type": "subscribe", "id": 1, "sessionId": sid})
            .to_string()
            .into()
    };
    let mut prev_rss = rss0;
    let mut prev_n = 0usize;
    for &target in &args.subs {
        // Open the connections this level adds (clients of 1,000 connections each).
        let need = target.saturating_sub(fan.borrow().live);
        let t0 = Instant::now();
        let mut errors = 0usize;
        let mut first_error = None;
        let mut done = 0;
        while done < need {
            let batch = (need - done).min(1000);
            let bc = client();
            let results: Vec<Result<(), String>> = stream::iter(0..batch)
                .map(|_| open_sub(bc.clone(), url.clone(), sub.clone(), fan.clone()))
                .buffer_unordered(args.connect_parallel)
                .collect()
                .await;
            for r in results {
                if let Err(e) = r {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
            done += batch;
            if errors > 0 {
                break;
            }
        }
        let open_s = t0.elapsed().as_secs_f64();
        let n = fan.borrow().live;
        actix_rt::time::sleep(Duration::from_secs_f64(args.settle)).await;
        let rss = hub.rss_kib();
        let fds = hub.fds();
        let per = |a: u64, b: u64, k: usize| (a as f64 - b as f64) / k.max(1) as f64;
        println!(
            "\n== N = {n} subscribers (target {target}); opened {} in {open_s:.1} s, {errors} errors{}",
            need.min(n.saturating_sub(prev_n)),
            first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default()
        );
        println!(
            "idle: hub RSS {rss} KiB, {fds} fds; (RSS - baseline) / N = {:.1} KiB; this level's added connections: {:.1} KiB each",
            per(rss, rss0, n),
            per(rss, prev_rss, n - prev_n.min(n)),
        );
        if n == 0 {
            break;
        }
        // Latency: one broadcast at a time.
        let samples = args.samples.unwrap_or_else(|| (200_000 / n).clamp(20, 200));
        for attempt in 0..if samples > 0 { 4 } else { 0 } {
            let (waited, busy) = wait_quiet(args).await;
            println!(
                "[{}] quiet wait {waited:.0} s (machine {busy:.0}%)",
                stamp()
            );
            for _ in 0..3 {
                broadcast(&ctx).await?;
            }
            let cpu = CpuMeter::start(hub.pid);
            let t = Instant::now();
            let mut pairs: Vec<u64> = Vec::with_capacity(samples * n);
            let mut alls = Vec::new();
            let mut missing = 0;
            for _ in 0..samples {
                let o = broadcast(&ctx).await?;
                pairs.extend(o.lat_us.iter().map(|&l| l as u64));
                alls.extend(o.all_us);
                missing += o.missing;
            }
            let secs = t.elapsed().as_secs_f64();
            let u = cpu.finish();
            pairs.sort_unstable();
            alls.sort_unstable();
            let noisy = u.other > args.max_other && attempt < 3;
            println!(
                "{}latency ({samples} broadcasts, one at a time): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; all-received p50 {:.2} ms, p99 {:.2} ms; {:.0} deliveries/s; missing {missing}; hub {:.0}% gen {:.0}% other {:.0}%; hub CPU per delivery {:.1} us",
                if noisy { "(noisy, discarded) " } else { "" },
                pct(&pairs, 50.0),
                pct(&pairs, 99.0),
                pct(&pairs, 100.0),
                pct(&alls, 50.0),
                pct(&alls, 99.0),
                pairs.len() as f64 / secs,
                u.hub,
                u.gen_,
                u.other,
                u.hub_ns as f64 / 1000.0 / pairs.len().max(1) as f64,
            );
            if !noisy {
                break;
            }
        }
        // Capacity: `concurrent` closed-loop senders.
        let mut p95s = Vec::new();
        let wanted = if args.capacity_samples > 0 {
            args.repeat.max(1)
        } else {
            0
        };
        let mut attempts = 0;
        while p95s.len() < wanted && attempts < wanted * 4 {
            attempts += 1;
            let rep = p95s.len();
            let (waited, busy) = wait_quiet(args).await;
            println!(
                "[{}] quiet wait {waited:.0} s (machine {busy:.0}%)",
                stamp()
            );
            let cpu = CpuMeter::start(hub.pid);
            let t = Instant::now();
            let next = Cell::new(0usize);
            let results = RefCell::new(Vec::new());
            let worker = || async {
                while next.get() < args.capacity_samples {
                    next.set(next.get() + 1);
                    let o = broadcast(&ctx).await;
                    results.borrow_mut().push(o);
                }
            };
            futures::future::join_all((0..args.concurrent).map(|_| worker())).await;
            let secs = t.elapsed().as_secs_f64();
            let u = cpu.finish();
            let mut alls = Vec::new();
            let mut pairs = Vec::new();
            let (mut missing, mut incomplete) = (0, 0);
            for o in results.into_inner() {
                let o = o?;
                missing += o.missing;
                match o.all_us {
                    Some(a) => alls.push(a),
                    None => {
                        incomplete += 1;
                        alls.push(u64::MAX);
                    }
                }
                pairs.extend(o.lat_us.iter().map(|&l| l as u64));
            }
            alls.sort_unstable();
            pairs.sort_unstable();
            let limit = pct(&alls, args.limit_percentile);
            let pass = limit <= args.limit_ms;
            let noisy = u.other > args.max_other;
            if !noisy {
                p95s.push(limit);
            }
            println!(
                "{}capacity #{} ({} broadcasts, {} concurrent): all-received p{} {:.1} ms [{}], p50 {:.1} ms, max {:.1} ms; pairs p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms; {:.0} deliveries/s; missing {missing} ({incomplete} incomplete); hub {:.0}% gen {:.0}% other {:.0}%",
                if noisy { "(noisy, discarded) " } else { "" },
                rep + 1,
                alls.len(),
                args.concurrent,
                args.limit_percentile,
                limit,
                if pass { "PASS" } else { "FAIL" },
                pct(&alls, 50.0),
                pct(&alls, 100.0),
                pct(&pairs, 50.0),
                pct(&pairs, 95.0),
                pct(&pairs, 99.0),
                pairs.len() as f64 / secs,
                u.hub,
                u.gen_,
                u.other,
            );
        }
        let mut failed = false;
        if !p95s.is_empty() {
            p95s.sort_by(f64::total_cmp);
            let median = p95s[p95s.len() / 2];
            failed = median > args.limit_ms;
            println!(
                "capacity at N = {n}: median p{} of all-received {median:.1} ms over {} runs (min {:.1}, max {:.1}) [{}]",
                args.limit_percentile,
                p95s.len(),
                p95s[0],
                p95s[p95s.len() - 1],
                if failed { "FAIL" } else { "PASS" }
            );
        }
        report_state(&fan, &c, &base, hub).await;
        if failed && args.stop_at_limit {
            break;
        }
        prev_rss = hub.rss_kib();
        prev_n = n;
        if errors > 0 {
            break;
        }
    }
    Ok(())
}

async fn report_state(fan: &Rc<RefCell<Fan>>, c: &Client, base: &str, hub: &Hub) {
    let (closed, first, resyncs, strays, dups) = {
        let f = fan.borrow();
        (f.closed, f.first_close.clone(), f.resyncs, f.strays, f.dups)
    };
    println!(
        "after: hub RSS {} KiB; closed {closed}{}; resync frames {resyncs}, late/stray receipts {strays}, duplicates {dups}; hub metrics: connections {}, resyncs_total {}",
        hub.rss_kib(),
        first.map(|w| format!(" (first: {w})")).unwrap_or_default(),
        metric(c, base, "collab_hub_ws_connections").await,
        metric(c, base, "collab_hub_ws_resyncs_total").await,
    );
}

// ---------------------------------------------------------------------------------------------
// mcp: agents over raw HTTP/1.1 (as collab-hub-bench), the dashboard over awc

struct AgentsResult {
    calls: usize,
    errors: usize,
    first_error: Option<String>,
    lat_us: Vec<u64>,
    cpu: CpuUse,
}

/// Every agent calls `context_get` in a closed loop for warm-up + seconds; counts calls that
/// started inside the measured window.
fn run_agents(
    args: &Args,
    addr: &str,
    tokens: &[String],
    hub_pid: u32,
) -> Result<AgentsResult, String> {
    let clients = tokens
        .iter()
        .map(|t| wire::Client::connect(addr, t.clone(), "ws_bench"))
        .collect::<Result<Vec<_>, _>>()?;
    let barrier = Arc::new(Barrier::new(clients.len() + 1));
    let start = Instant::now() + Duration::from_millis(200);
    let from = start + Duration::from_secs_f64(args.warmup);
    let until = from + Duration::from_secs_f64(args.seconds);
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let (mut lat, mut errors, mut first) = (Vec::new(), 0usize, None);
                while Instant::now() < until {
                    let t = Instant::now();
                    let r = c
                        .rpc(
                            "tools/call",
                            json!({"name": "context_get", "arguments": {}}),
                        )
                        .map(drop);
                    if t >= from {
                        match r {
                            Ok(()) => lat.push(t.elapsed().as_micros() as u64),
                            Err(e) => {
                                errors += 1;
                                first.get_or_insert(e);
                            }
                        }
                    }
                }
                let _ = c.close();
                (lat, errors, first)
            })
        })
        .collect();
    barrier.wait();
    thread::sleep(from.saturating_duration_since(Instant::now()));
    let cpu = CpuMeter::start(hub_pid);
    thread::sleep(until.saturating_duration_since(Instant::now()));
    let cpu = cpu.finish();
    let mut out = AgentsResult {
        calls: 0,
        errors: 0,
        first_error: None,
        lat_us: Vec::new(),
        cpu,
    };
    for h in handles {
        let (lat, errors, first) = h.join().map_err(|_| "agent thread panicked")?;
        out.calls += lat.len() + errors;
        out.errors += errors;
        out.lat_us.extend(lat);
        if out.first_error.is_none() {
            out.first_error = first;
        }
    }
    out.lat_us.sort_unstable();
    let _ = start;
    Ok(out)
}

#[derive(Default)]
struct DashCounters {
    calls: AtomicU64,
    errors: AtomicU64,
    events: AtomicU64,
    replays: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

struct Dashboard {
    stop: Arc<AtomicBool>,
    counters: Arc<DashCounters>,
    handle: thread::JoinHandle<Result<(), String>>,
}

/// Starts the viewers on a thread of their own; returns once each has subscribed and had its
/// first call answered.
fn start_dashboard(args: &Args, port: u16, sid: &str) -> Result<Dashboard, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(DashCounters::default());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let (viewers, replay_every, rate) = (args.viewers, args.replay_every, args.dash_rate);
    let ops: Vec<String> = args.dash_ops.clone();
    let (sid, stop2, counters2) = (sid.to_owned(), stop.clone(), counters.clone());
    let handle = thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let c = client();
            let url = format!("ws://127.0.0.1:{port}/ws");
            let tasks = (0..viewers).map(|_| {
                let plan = ViewerPlan {
                    url: url.clone(),
                    sid: sid.clone(),
                    op_names: ops.clone(),
                    replay_every,
                    rate,
                };
                viewer(
                    c.clone(),
                    plan,
                    stop2.clone(),
                    counters2.clone(),
                    ready_tx.clone(),
                )
            });
            let results = futures::future::join_all(tasks).await;
            results
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map(|_| ())
        })
    });
    for _ in 0..viewers {
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|e| format!("dashboard not ready: {e}"))??;
    }
    Ok(Dashboard {
        stop,
        counters,
        handle,
    })
}

/// What one dashboard viewer does.
struct ViewerPlan {
    url: String,
    sid: String,
    op_names: Vec<String>,
    replay_every: f64,
    rate: f64,
}

async fn viewer(
    c: Client,
    plan: ViewerPlan,
    stop: Arc<AtomicBool>,
    n: Arc<DashCounters>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    let ViewerPlan {
        url,
        sid,
        op_names,
        replay_every,
        rate,
    } = plan;
    let r = async {
        let (_, framed) = c
            .ws(&url)
            .max_frame_size(64 << 20)
            .connect()
            .await
            .map_err(|e| format!("dashboard connect: {e}"))?;
        Ok::<_, String>(framed)
    }
    .await;
    let mut framed = match r {
        Ok(f) => f,
        Err(e) => {
            let _ = ready.send(Err(e.clone()));
            return Err(e);
        }
    };
    let mut id = 0u64;
    let mut subscription: Option<String> = None;
    let mut last_replay = Instant::now();
    let ops: Vec<(String, Value)> = op_names
        .iter()
        .filter(|o| *o != "none")
        .map(|o| {
            let a = match o.as_str() {
                "lock" | "task" => json!({"action": "list", "sessionId": sid}),
                "session_list" => json!({}),
                _ => json!({"sessionId": sid}),
            };
            (o.clone(), a)
        })
        .collect();
    let mut first = true;
    let mut k = 0usize;
    let mut iteration = Instant::now();
    loop {
        // (Re)subscribe with a full replay, then one read call; wait for each reply.
        let mut frames: Vec<Value> = Vec::new();
        let want_replay = subscription.is_none()
            || (replay_every > 0.0 && last_replay.elapsed().as_secs_f64() >= replay_every);
        if want_replay {
            if let Some(s) = subscription.take() {
                id += 1;
                frames.push(json!({"type": "unsubscribe", "id": id, "subscription": s}));
            }
            id += 1;
            frames.push(json!({"type": "subscribe", "id": id, "sessionId": sid, "since": 0}));
            last_replay = Instant::now();
            n.replays.fetch_add(1, Ordering::Relaxed);
        }
        let call_id = if ops.is_empty() {
            // Replays only: a ping keeps the loop's pace (one round trip).
            id += 1;
            frames.push(json!({"type": "ping", "id": id}));
            id
        } else {
            let (op, arguments) = &ops[k % ops.len()];
            k += 1;
            id += 1;
            frames.push(json!({"type": "call", "id": id, "operation": op, "arguments": arguments}));
            id
        };
        let mut waiting: Vec<u64> = frames.iter().map(|f| f["id"].as_u64().unwrap()).collect();
        for f in frames {
            framed
                .send(ws::Message::Text(f.to_string().into()))
                .await
                .map_err(|e| e.to_string())?;
        }
        while !waiting.is_empty() {
            let b = match framed.next().await {
                Some(Ok(ws::Frame::Text(b))) => b,
                Some(Ok(ws::Frame::Ping(p))) => {
                    let _ = framed.send(ws::Message::Pong(p)).await;
                    continue;
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("dashboard connection closed".into()),
            };
            if find(&b, b"\"type\":\"reply\"").is_none() {
                n.events.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let v: Value = serde_json::from_slice(&b).map_err(|e| e.to_string())?;
            let rid = v["id"].as_u64().unwrap_or(0);
            waiting.retain(|&w| w != rid);
            if v.get("error").is_some() {
                n.errors.fetch_add(1, Ordering::Relaxed);
                n.first_error
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| v.to_string());
                if first {
                    let _ = ready.send(Err(format!("dashboard: {v}")));
                    return Err(format!("{v}"));
                }
            } else if let Some(s) = v["ok"]["subscription"].as_str() {
                subscription = Some(s.to_owned());
            }
            if rid == call_id {
                n.calls.fetch_add(1, Ordering::Relaxed);
            }
        }
        if first {
            first = false;
            let _ = ready.send(Ok(()));
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Paced: keep reading (events, pings) until the next call is due.
        if rate > 0.0 {
            let due = iteration + Duration::from_secs_f64(1.0 / rate);
            loop {
                let left = due.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match actix_rt::time::timeout(left, framed.next()).await {
                    Err(_) => break,
                    Ok(Some(Ok(ws::Frame::Text(_)))) => {
                        n.events.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(Ok(ws::Frame::Ping(p)))) => {
                        let _ = framed.send(ws::Message::Pong(p)).await;
                    }
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(e))) => return Err(e.to_string()),
                    Ok(None) => return Err("dashboard connection closed".into()),
                }
            }
            iteration = due.max(Instant::now() - Duration::from_secs(1));
        }
    }
}

fn mcp(args: &Args, hub: &Hub) -> Result<(), String> {
    let addr = format!("127.0.0.1:{}", hub.port);
    let names: Vec<String> = ["claude", "gemini", "codex", "cursor"]
        .iter()
        .map(|s| s.to_string())
        .chain((5..).map(|i| format!("agent{i}")))
        .take(args.agents.max(1))
        .collect();
    // Set up over REST (awc, on a throwaway system).
    let (sid, tokens) = actix_rt::System::new().block_on({
        let names = names.clone();
        let base = format!("http://{addr}");
        let seed = args.seed_events;
        async move {
            let c = client();
            let (sid, tokens) = create_session(&c, &base, "ws-bench-mcp", &names).await?;
            let t0 = tokens[&names[0]].as_str().unwrap().to_owned();
            for i in 0..20 {
                let v = json!({"path": format!("bench.k{i}"),
                    "value": {"owner": names[i % names.len()], "status": "in progress", "notes": "x".repeat(100)}});
                let (s, r) = post(&c, &format!("{base}/mcp/context/set"), Some(&t0), &v).await?;
                if !(200..300).contains(&s) {
                    return Err(format!("context/set: {s} {r}"));
                }
            }
            for i in 0..seed {
                let v = json!({"body": format!("seed message {i}: the build is green, moving on"), "priority": "routine"});
                let (s, r) = post(&c, &format!("{base}/mcp/messages/send"), Some(&t0), &v).await?;
                if !(200..300).contains(&s) {
                    return Err(format!("messages/send: {s} {r}"));
                }
            }
            let tokens: Vec<String> = names.iter().map(|n| tokens[n].as_str().unwrap().to_owned()).collect();
            Ok::<_, String>((sid, tokens))
        }
    })?;
    println!(
        "hub pid {} port {}; session {sid}: {} agents, log of {} seeded events; dashboard: {} viewers, ops {:?}, {} calls/s each (0: closed loop), replay every {} s",
        hub.pid,
        hub.port,
        names.len(),
        args.seed_events + 20,
        args.viewers,
        args.dash_ops,
        args.dash_rate,
        args.replay_every
    );
    let mut ratios = Vec::new();
    let mut attempts = 0;
    let mut summary: [Vec<(f64, f64, f64)>; 2] = [Vec::new(), Vec::new()];
    while ratios.len() < args.rounds && attempts < args.rounds * 4 {
        let round = attempts;
        attempts += 1;
        let mut noisy = false;
        let mut kept: [(f64, f64, f64); 2] = [(0.0, 0.0, 0.0); 2];
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut rates = [0.0f64; 2];
        for with_dash in order {
            let (waited, busy) = wait_quiet_blocking(args);
            println!(
                "[{}] quiet wait {waited:.0} s (machine {busy:.0}%)",
                stamp()
            );
            let dash = if with_dash {
                Some(start_dashboard(args, hub.port, &sid)?)
            } else {
                None
            };
            let before = dash.as_ref().map(|d| {
                (
                    d.counters.calls.load(Ordering::Relaxed),
                    d.counters.events.load(Ordering::Relaxed),
                    d.counters.replays.load(Ordering::Relaxed),
                )
            });
            let r = run_agents(args, &addr, &tokens, hub.pid)?;
            let mut dash_line = String::new();
            if let Some(d) = dash {
                let (c0, e0, r0) = before.unwrap();
                let span = args.warmup + args.seconds + 0.2;
                let calls = d.counters.calls.load(Ordering::Relaxed) - c0;
                let events = d.counters.events.load(Ordering::Relaxed) - e0;
                let replays = d.counters.replays.load(Ordering::Relaxed) - r0;
                dash_line = format!(
                    "; dashboard {:.0} calls/s, {:.0} replayed events/s, {} replays, {} errors{}",
                    calls as f64 / span,
                    events as f64 / span,
                    replays,
                    d.counters.errors.load(Ordering::Relaxed),
                    d.counters
                        .first_error
                        .lock()
                        .unwrap()
                        .as_ref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
                d.stop.store(true, Ordering::Relaxed);
                d.handle.join().map_err(|_| "dashboard panicked")??;
            }
            let rate = r.calls as f64 / args.seconds;
            rates[usize::from(with_dash)] = rate;
            noisy |= r.cpu.other > args.max_other;
            kept[usize::from(with_dash)] = (rate, pct(&r.lat_us, 50.0), pct(&r.lat_us, 99.0));
            println!(
                "round {} {:<14} {:>8.0} calls/s  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  errors {}{}  hub {:.0}% gen {:.0}% other {:.0}%{}",
                round + 1,
                if with_dash { "with dashboard" } else { "alone" },
                rate,
                pct(&r.lat_us, 50.0),
                pct(&r.lat_us, 99.0),
                pct(&r.lat_us, 100.0),
                r.errors,
                r.first_error.map(|e| format!(" ({e})")).unwrap_or_default(),
                r.cpu.hub,
                r.cpu.gen_,
                r.cpu.other,
                dash_line
            );
        }
        let ratio = rates[1] / rates[0];
        if noisy {
            println!(
                "round {} ratio with / without = {:.3} (noisy, discarded)",
                round + 1,
                ratio
            );
            continue;
        }
        ratios.push(ratio);
        summary[0].push(kept[0]);
        summary[1].push(kept[1]);
        println!("round {} ratio with / without = {:.3}", round + 1, ratio);
    }
    if ratios.is_empty() {
        return Err("every round was noisy".into());
    }
    for (i, name) in ["alone", "with dashboard"].iter().enumerate() {
        let med = |f: fn(&(f64, f64, f64)) -> f64| {
            let mut v: Vec<f64> = summary[i].iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[0], v[v.len() - 1])
        };
        let (r, r0, r1) = med(|x| x.0);
        let (p50, a50, b50) = med(|x| x.1);
        let (p99, a99, b99) = med(|x| x.2);
        println!(
            "{name:<14}: median {r:.0} calls/s ({r0:.0}-{r1:.0}), p50 {p50:.2} ms ({a50:.2}-{b50:.2}), p99 {p99:.2} ms ({a99:.2}-{b99:.2}) over {} rounds",
            summary[i].len()
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "ratio with / without dashboard: median {:.3} (min {:.3}, max {:.3})",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    Ok(())
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let t = Instant::now();
    let hub = Hub::start(&args)?;
    let r = match args.mode.as_str() {
        "fanout" => actix_rt::System::new().block_on(fanout(&args, &hub)),
        _ => mcp(&args, &hub),
    };
    println!(
        "\nfinal hub RSS {} KiB; run took {:.0} s",
        hub.rss_kib(),
        t.elapsed().as_secs_f64()
    );
    // Exit without tearing down thousands of sockets one by one; Drop kills the hub.
    drop(hub);
    let _ = std::io::stdout().flush();
    match r {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("ws_bench: {e}");
            std::process::exit(1)
        }
    }
}
