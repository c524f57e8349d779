//! `hook_bench`: the wall time of `collab-hub hook`, which agent clients run synchronously at
//! every hook point (after each tool call, before each prompt), against a running hub
//! (BENCHMARKS.md, "Step 8: the hook's wall time").
//!
//! It creates one collab session (`claude`, `gemini`) over REST, then runs the hook binary
//! `--runs` times per case, as Claude Code does: a new process with `COLLAB_HUB_URL` and
//! `COLLAB_HUB_TOKEN` in its environment and the hook's input JSON on stdin (closed after). The
//! wall time is from spawn to exit, output read. Cases:
//!
//! * `post-tool, nothing waits`: `PostToolUse` with everything acknowledged (prints nothing);
//! * `post-tool, 1 critical waits`: one unacknowledged critical message from `gemini` (prints
//!   the digest as `additionalContext`, then confirms it shown: a second request);
//! * `session-start`: `SessionStart` (the briefing and the digest, two requests in parallel);
//! * `hub down`: `PostToolUse` against a port nothing listens on.
//!
//! ```text
//! cargo build --release --bins --examples
//! target/release/collab-hub --bind 127.0.0.1:9711 --database-url sqlite:///tmp/hook_bench/hub.db &
//! target/release/examples/hook_bench --url http://127.0.0.1:9711 --hook-bin target/release/collab-hub
//! ```

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

// Shared with collab-hub-bench, which uses parts this tool does not.
#[allow(dead_code)]
#[path = "../src/bin/bench/wire.rs"]
mod wire;

#[derive(Parser)]
#[command(about = "Wall time of `collab-hub hook` against a running hub")]
struct Args {
    /// The running hub.
    #[arg(long, default_value = "http://127.0.0.1:9700")]
    url: String,
    /// The collab-hub binary whose `hook` subcommand is measured.
    #[arg(long, default_value = "target/release/collab-hub")]
    hook_bin: String,
    /// Runs per case (after 5 unmeasured).
    #[arg(long, default_value_t = 200)]
    runs: usize,
}

fn post(conn: &mut wire::Conn, path: &str, token: Option<&str>, body: &Value) -> Value {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    let r = conn
        .post(path, &headers, body.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    assert!(
        (200..300).contains(&r.status),
        "POST {path}: {} {v}",
        r.status
    );
    v
}

/// One hook run: wall time and stdout bytes.
fn run_hook(args: &Args, url: &str, token: &str, input: &Value) -> (Duration, usize) {
    let t = Instant::now();
    let mut child = Command::new(&args.hook_bin)
        .args(["hook", "--client", "claude"])
        .env("COLLAB_HUB_URL", url)
        .env("COLLAB_HUB_TOKEN", token)
        .env("RUST_LOG", "off")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the hook runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let _ = stdin.write_all(input.to_string().as_bytes());
    drop(stdin);
    let out = child.wait_with_output().expect("the hook ends");
    (t.elapsed(), out.stdout.len())
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn main() {
    let args = Args::parse();
    let addr = args.url.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = wire::Conn::open(addr).expect("the hub is running");
    let made = post(
        &mut conn,
        "/mcp/session/create",
        None,
        &json!({"name": "hook bench", "participants": ["claude", "gemini"]}),
    );
    let claude = made["tokens"]["claude"].as_str().unwrap().to_owned();
    let gemini = made["tokens"]["gemini"].as_str().unwrap().to_owned();
    let hook_input = |event: &str| {
        json!({"session_id": "bench", "transcript_path": "/tmp/none.jsonl", "cwd": "/tmp",
               "hook_event_name": event, "source": "startup", "tool_name": "Bash",
               "tool_input": {"command": "ls"}, "tool_response": {"stdout": ""}})
    };
    // A port nothing listens on: bind one, note it, let it go.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    // Acknowledges everything claude has (MCP `events_poll` for the log's end, `events_ack`).
    let mut mcp = wire::Client::connect(addr, claude.clone(), "hook_bench").expect("MCP");
    let mut ack_all = move || {
        let page = mcp
            .rpc(
                "tools/call",
                json!({"name": "events_poll", "arguments": {}}),
            )
            .expect("events_poll");
        let last = page["structuredContent"]["lastEventId"]
            .as_i64()
            .unwrap_or(0);
        mcp.rpc(
            "tools/call",
            json!({"name": "events_ack", "arguments": {"upTo": last}}),
        )
        .expect("events_ack");
    };
    println!(
        "{} runs per case after 5 unmeasured; hook binary {}",
        args.runs, args.hook_bin
    );
    println!("case                          p50 ms  p95 ms  p99 ms  max ms  stdout bytes");
    let cases = [
        ("post-tool, nothing waits", "PostToolUse"),
        ("post-tool, 1 critical waits", "PostToolUse"),
        ("session-start", "SessionStart"),
        ("hub down", "PostToolUse"),
    ];
    for (case, (name, event)) in cases.into_iter().enumerate() {
        let url = match case {
            0 => {
                ack_all();
                args.url.as_str()
            }
            1 => {
                ack_all();
                post(
                    &mut conn,
                    "/mcp/messages/send",
                    Some(&gemini),
                    &json!({"to": "claude", "priority": "critical", "body": "stop: the build is red"}),
                );
                args.url.as_str()
            }
            2 => args.url.as_str(),
            _ => down.as_str(),
        };
        let input = hook_input(event);
        let mut times = Vec::with_capacity(args.runs);
        let mut bytes = Vec::with_capacity(args.runs);
        for i in 0..args.runs + 5 {
            let (t, n) = run_hook(&args, url, &claude, &input);
            if i >= 5 {
                times.push(t);
                bytes.push(n);
            }
        }
        times.sort_unstable();
        bytes.sort_unstable();
        println!(
            "{name:<28}  {:>6.1}  {:>6.1}  {:>6.1}  {:>6.1}  {}",
            pct(&times, 0.50),
            pct(&times, 0.95),
            pct(&times, 0.99),
            pct(&times, 1.0),
            if bytes[0] == bytes[bytes.len() - 1] {
                bytes[0].to_string()
            } else {
                format!("{}–{}", bytes[0], bytes[bytes.len() - 1])
            }
        );
    }
}
