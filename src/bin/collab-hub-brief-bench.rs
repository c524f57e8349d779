//! How fast a briefing is on a long history: builds a session of `--events` events over HTTP
//! (context writes, recorded changes with diffs, discoveries, tasks, messages) while one
//! participant, claude, is away, then times `POST /mcp/session/resume` for claude (the whole
//! history is news to it) and for gemini (nothing is), per strategy, with and without a budget.
//!
//!     collab-hub --bind 127.0.0.1:18902 --database-url … --message-rate 100000 --message-burst 100000 &
//!     collab-hub-brief-bench --url http://127.0.0.1:18902 --events 100000
//!
//! Times are client-side (a fresh loopback connection per request, as the CLI's client makes),
//! so they bound the hub's own time from above.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Parser;
use collab_hub::client::request;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "http://127.0.0.1:9700")]
    url: String,
    /// Events to build before timing.
    #[arg(long, default_value_t = 100_000)]
    events: usize,
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Timed requests per case.
    #[arg(long, default_value_t = 30)]
    samples: usize,
    /// Seconds to wait between building the history and timing (e.g. for the database's
    /// statistics to catch up: run ANALYZE meanwhile).
    #[arg(long, default_value_t = 0)]
    settle_secs: u64,
}

fn post(url: &str, token: &str, path: &str, body: Value) -> Result<Value, String> {
    let (status, answer) = request("POST", &format!("{url}{path}"), Some(token), Some(&body))?;
    if status >= 300 {
        return Err(format!("{path}: {status} {answer}"));
    }
    Ok(answer)
}

/// One of gemini's writes, by number: mostly context writes, some changes with diffs,
/// discoveries, tasks and messages.
fn work(i: usize) -> (&'static str, Value) {
    match i % 100 {
        0 => (
            "/mcp/collaborate/task",
            json!({"description": format!("task {i}: wire the {}th endpoint", i / 100)}),
        ),
        1..=10 => (
            "/mcp/collaborate/change",
            json!({"filePath": format!("/src/module_{}.rs", i % 200),
                   "before": format!("fn f() {{ {} }}\n", i - 1),
                   "after": format!("fn f() {{ {i} }}\n"), "reason": "refactor"}),
        ),
        11 => (
            "/mcp/context/discovery",
            json!({"finding": format!("slow query in handler {i}"), "severity": "medium"}),
        ),
        12 => (
            "/mcp/messages/send",
            json!({"body": format!("progress: {i} steps done"), "to": "claude"}),
        ),
        _ => (
            "/mcp/context/set",
            json!({"path": format!("work.area{}.item{}", i % 20, i % 50), "value": i}),
        ),
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let url = args.url.trim_end_matches('/').to_owned();
    let (status, created) = request(
        "POST",
        &format!("{url}/mcp/session/create"),
        None,
        Some(
            &json!({"name": "briefing bench", "participants": ["claude", "gemini"],
                     "handshakeMode": "loose", "saveInterval": 0}),
        ),
    )?;
    if status != 201 {
        return Err(format!("create: {status} {created}"));
    }
    let id = created["sessionId"].as_str().unwrap_or_default().to_owned();
    let claude = created["tokens"]["claude"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let gemini = created["tokens"]["gemini"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Claude's last work, then it leaves for the rest of the history.
    post(
        &url,
        &claude,
        "/mcp/collaborate/change",
        json!({"filePath": "/src/module_7.rs", "before": "a\n", "after": "b\n"}),
    )?;
    post(
        &url,
        &claude,
        "/mcp/collaborate/task",
        json!({"description": "review the endpoints", "assignedTo": "claude"}),
    )?;

    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.threads {
            let (next, failures, url, gemini) = (next.clone(), failures.clone(), &url, &gemini);
            s.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= args.events {
                        break;
                    }
                    let (path, body) = work(i);
                    if let Err(e) = post(url, gemini, path, body) {
                        failures.lock().unwrap().push(e);
                    }
                }
            });
        }
    });
    let failures = failures.lock().unwrap();
    if let Some(first) = failures.first() {
        return Err(format!("{} writes failed, first: {first}", failures.len()));
    }
    let (_, view) = request("GET", &format!("{url}/mcp/session/{id}"), None, None)?;
    println!(
        "history: {} events in {:.1} s ({} writes by {} threads)",
        view["lastEventId"],
        started.elapsed().as_secs_f64(),
        args.events,
        args.threads
    );

    println!(
        "| who | strategy | maxTokens | median ms | p95 ms | briefing tokens | raw events | raw tokens |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (who, token) in [("claude", &claude), ("gemini", &gemini)] {
        for strategy in ["quick", "standard", "deep"] {
            for max in [None, Some(500)] {
                let mut body = json!({"strategy": strategy, "includeContext": false});
                if let Some(m) = max {
                    body["maxTokens"] = json!(m);
                }
                let mut ms = Vec::with_capacity(args.samples);
                let mut last = Value::Null;
                for _ in 0..args.samples {
                    let t = Instant::now();
                    last = post(&url, token, "/mcp/session/resume", body.clone())?;
                    ms.push(t.elapsed().as_secs_f64() * 1e3);
                }
                ms.sort_by(f64::total_cmp);
                let size = &last["briefing"]["size"];
                println!(
                    "| {who} | {strategy} | {} | {:.1} | {:.1} | {} | {} | {} |",
                    max.map_or("-".into(), |m| m.to_string()),
                    pct(&ms, 0.5),
                    pct(&ms, 0.95),
                    size["tokens"],
                    size["rawEvents"],
                    size["rawTokens"],
                );
            }
        }
    }
    Ok(())
}
