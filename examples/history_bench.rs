//! `history_bench`: what reads and writes of one collab session cost as its history grows
//! (BENCH_HISTORY.md). Run against a running hub, like `collab-hub-bench`.
//!
//! It creates one collab session (`claude` driving, `gemini` and `codex` navigating) over REST,
//! then for each size in `--steps` grows the session's history to that many messages and
//! measures, one request at a time (closed loop, `--samples` each after `--warmup` unmeasured):
//!
//! * `messages_read` — MCP `tools/call messages_read` by `gemini`, default arguments (the newest
//!   20 it can see). Before each call `claude` sends `gemini` one message (not measured), so
//!   each read returns something new and stores its read receipt;
//! * `messages_read unread` — the same with `{"unreadOnly": true, "limit": 50}`, also with one
//!   new message before each call;
//! * `events_poll` — MCP `tools/call events_poll` by `gemini` with `after` 20 events before the
//!   newest (the page a client that keeps up reads);
//! * `context_set` — REST `POST /mcp/context/set` by `claude` (one of 20 keys);
//! * `GET messages unread` — REST `GET /mcp/messages?unreadOnly=true&limit=50` by `gemini`,
//!   with nothing new in between (what an idle reader's poll costs).
//!
//! The history grows through REST `POST /mcp/batch` by `claude`: 90 messages and 10 context
//! writes per batch; of the messages, half go to `gemini`, a quarter to `codex` and a quarter to
//! everyone, each with its `message_sent` event. After growing, `gemini` catches up (reads all
//! its unread messages, 200 at a time, and acknowledges its events), as an agent that keeps up
//! would; `codex` never reads, so its receipts never exist and its unread count only grows.
//! The measured phases add messages of their own, so a step's size is "at least".
//!
//! ```text
//! cargo build --release --bin collab-hub --example history_bench
//! target/release/collab-hub --bind 127.0.0.1:PORT --database-url sqlite:///tmp/x/hub.db \
//!     --message-rate 1000000 --message-burst 1000000 &
//! target/release/examples/history_bench --url http://127.0.0.1:PORT --steps 0,2000,8000,32000
//! ```
//!
//! The hub's send rate limit must be raised (the `--message-*` flags above).

use std::time::Instant;

use clap::Parser;
use serde_json::{Value, json};

#[allow(dead_code)]
#[path = "../src/bin/bench/wire.rs"]
mod wire;

use wire::{Client, Conn, host_port, pct};

#[derive(Parser)]
#[command(about = "Cost of reads and writes as one session's history grows")]
struct Args {
    /// Base URL of the hub, e.g. http://127.0.0.1:8080
    #[arg(long)]
    url: String,
    /// History sizes (messages in the session) to measure at, in increasing order.
    #[arg(long, value_delimiter = ',', default_value = "0,2000,8000,32000")]
    steps: Vec<usize>,
    /// Measured requests per operation and step.
    #[arg(long, default_value_t = 150)]
    samples: usize,
    /// Unmeasured requests before each operation's samples.
    #[arg(long, default_value_t = 10)]
    warmup: usize,
    /// A label printed in every result line (e.g. `sqlite-before`).
    #[arg(long, default_value = "")]
    label: String,
}

/// Messages per growth batch (plus `CONTEXT_PER_BATCH` context writes: at most 100 operations).
const MESSAGES_PER_BATCH: usize = 90;
const CONTEXT_PER_BATCH: usize = 10;

struct Bench {
    addr: String,
    rest: Conn,
    claude: String,
    gemini_token: String,
    gemini: Client,
    /// Messages sent into the session so far.
    messages: usize,
    /// Context writes so far (names the keys).
    writes: usize,
}

/// A transport error of a request sent on a connection the hub had closed.
fn idle_closed(e: &str) -> bool {
    e.starts_with("bad status line \"\"")
        || e.contains("connection closed")
        || e.contains("Broken pipe")
        || e.contains("reset by peer")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

impl Bench {
    /// A REST call with `token`; the JSON answer of a 2xx, an error otherwise.
    fn rest(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let auth = bearer(token);
        let body = body.map(|b| b.to_string().into_bytes());
        let mut attempt = || {
            self.rest.request(
                method,
                path,
                &[("authorization", auth.as_str())],
                body.as_deref(),
            )
        };
        let r = match attempt() {
            Ok(r) => r,
            // The hub closes a keep-alive connection left idle (while the MCP client worked):
            // the request never reached it, so send it again on a fresh one.
            Err(e) if idle_closed(&e) => {
                self.rest = Conn::open(&self.addr)?;
                self.rest.request(
                    method,
                    path,
                    &[("authorization", auth.as_str())],
                    body.as_deref(),
                )?
            }
            Err(e) => return Err(e),
        };
        if !(200..300).contains(&r.status) {
            return Err(format!(
                "{method} {path}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        serde_json::from_slice(&r.body).map_err(|e| format!("{method} {path}: {e}"))
    }

    fn tool(&mut self, name: &str, arguments: Value) -> Result<Value, String> {
        let params = json!({"name": name, "arguments": arguments});
        // `rpc` opens a fresh connection after a transport error: a call that met a closed
        // idle connection (while the history grew over REST) is sent again.
        let mut r = match self.gemini.rpc("tools/call", params.clone()) {
            Err(e) if idle_closed(&e) => self.gemini.rpc("tools/call", params)?,
            r => r?,
        };
        Ok(r["structuredContent"].take())
    }

    /// One message from `claude` to `gemini` (not measured).
    fn send_one(&mut self) -> Result<(), String> {
        let claude = self.claude.clone();
        let body = json!({"to": "gemini", "body": format!("note {}", self.messages)});
        self.rest("POST", "/mcp/messages/send", &claude, Some(&body))?;
        self.messages += 1;
        Ok(())
    }

    /// Grows the history to `target` messages, then lets `gemini` catch up.
    fn grow(&mut self, target: usize) -> Result<(), String> {
        let claude = self.claude.clone();
        while self.messages < target {
            let n = (target - self.messages).min(MESSAGES_PER_BATCH);
            let mut ops = Vec::with_capacity(n + CONTEXT_PER_BATCH);
            for i in 0..n {
                let seq = self.messages + i;
                let mut args =
                    json!({"body": {"seq": seq, "text": "progress update from the driver"}});
                match seq % 4 {
                    0 | 1 => args["to"] = json!("gemini"),
                    2 => args["to"] = json!("codex"),
                    _ => {}
                }
                ops.push(json!({"op": "message_send", "args": args}));
                if i % (MESSAGES_PER_BATCH / CONTEXT_PER_BATCH) == 0 {
                    self.writes += 1;
                    ops.push(json!({"op": "context_set", "args": {
                        "path": format!("work.item{}", self.writes % 500),
                        "value": {"state": "done", "n": self.writes}}}));
                }
            }
            self.rest(
                "POST",
                "/mcp/batch",
                &claude,
                Some(&json!({"operations": ops})),
            )?;
            self.messages += n;
        }
        self.catch_up()
    }

    /// `gemini` reads everything unread and acknowledges its events.
    fn catch_up(&mut self) -> Result<(), String> {
        loop {
            let page = self.tool("messages_read", json!({"unreadOnly": true, "limit": 200}))?;
            if page["unread"].as_i64().unwrap_or(0) == 0
                || page["messages"].as_array().is_none_or(|m| m.is_empty())
            {
                break;
            }
        }
        let newest = self.tool("events_poll", json!({"limit": 1}))?["lastEventId"]
            .as_i64()
            .unwrap_or(0);
        if newest > 0 {
            self.tool("events_ack", json!({"upTo": newest}))?;
        }
        Ok(())
    }

    /// `samples` timed runs of `op` after `warmup` untimed ones: sorted microseconds.
    fn measure(&mut self, op: &str, samples: usize, warmup: usize) -> Result<Vec<u64>, String> {
        let mut out = Vec::with_capacity(samples);
        let mut after = self.tool("events_poll", json!({"limit": 1}))?["lastEventId"]
            .as_i64()
            .unwrap_or(0);
        for i in 0..warmup + samples {
            if op.starts_with("messages_read") {
                self.send_one()?;
            }
            let started = Instant::now();
            match op {
                "messages_read" => {
                    self.tool("messages_read", json!({}))?;
                }
                "messages_read unread" => {
                    let page =
                        self.tool("messages_read", json!({"unreadOnly": true, "limit": 50}))?;
                    if page["messages"].as_array().is_none_or(|m| m.is_empty()) {
                        return Err("an unread read returned nothing new".into());
                    }
                }
                "events_poll" => {
                    let page = self.tool("events_poll", json!({"after": (after - 20).max(0)}))?;
                    after = page["lastEventId"].as_i64().unwrap_or(after);
                }
                "context_set" => {
                    self.writes += 1;
                    let claude = self.claude.clone();
                    let body =
                        json!({"path": format!("bench.k{}", i % 20), "value": {"n": self.writes}});
                    self.rest("POST", "/mcp/context/set", &claude, Some(&body))?;
                }
                "GET messages unread" => {
                    let token = self.gemini_token.clone();
                    self.rest(
                        "GET",
                        "/mcp/messages?unreadOnly=true&limit=50",
                        &token,
                        None,
                    )?;
                }
                other => return Err(format!("unknown op {other}")),
            }
            if i >= warmup {
                out.push(started.elapsed().as_micros() as u64);
            }
        }
        out.sort_unstable();
        Ok(out)
    }
}

const OPS: [&str; 5] = [
    "messages_read",
    "messages_read unread",
    "events_poll",
    "context_set",
    "GET messages unread",
];

fn main() -> Result<(), String> {
    let args = Args::parse();
    let addr = host_port(&args.url)?;
    let mut rest = Conn::open(&addr)?;
    let body = json!({"name": format!("history-{}", std::process::id()),
                      "participants": ["claude", "gemini", "codex"]});
    let r = rest.post("/mcp/session/create", &[], body.to_string().as_bytes())?;
    let created: Value = serde_json::from_slice(&r.body).map_err(|e| e.to_string())?;
    if r.status != 201 {
        return Err(format!("session create: {} {created}", r.status));
    }
    let token = |who: &str| {
        created["tokens"][who]
            .as_str()
            .map(str::to_owned)
            .ok_or(format!("no token for {who}"))
    };
    let gemini_token = token("gemini")?;
    let mut bench = Bench {
        gemini: Client::connect(&addr, gemini_token.clone(), "history-bench")?,
        addr,
        rest,
        claude: token("claude")?,
        gemini_token,
        messages: 0,
        writes: 0,
    };
    println!("label  history  operation  p50 ms  p99 ms  samples");
    for &step in &args.steps {
        let grown = Instant::now();
        bench.grow(step)?;
        eprintln!(
            "history at {} messages (grown in {:.1} s)",
            bench.messages,
            grown.elapsed().as_secs_f64()
        );
        for op in OPS {
            let l = bench.measure(op, args.samples, args.warmup)?;
            println!(
                "{}  {step}  {op}  {:.2}  {:.2}  {}",
                args.label,
                pct(&l, 0.50),
                pct(&l, 0.99),
                l.len()
            );
        }
        // The measured phases sent messages of their own: let gemini catch up again.
        bench.catch_up()?;
    }
    Ok(())
}
