//! `lock_table_bench`: the cost of the lock table's conflict checks on the project actor's
//! thread, pure domain (no hub, no database): `LockTable::check` of an exclusive request and
//! `LockTable::grantable` (BENCH_LOCKS.md).
//!
//! Cases:
//!
//! * `globs`: the issue's table, 1,024 held shared locks (1,024 holders) on 1,023-character
//!   globs `/g/*aaa…a<k>*`. Probes (exclusive, 1,023 characters): `/h/aaa…a`, under another top
//!   directory (cannot overlap any of them), and `/g/aaa…a`, under the same directory: every
//!   glob must really be matched against it, and as the globs begin and end with `*`, nothing
//!   cheap tells that they do not match.
//! * `globs-head`: the same, but the globs start with a literal (`/g/f<k>aaa…a*`), probed with
//!   `/g/aaa…a`: same directory, but the glob's literal head already rules each one out.
//! * `files`: 1,000 held exclusive locks on `/src/mod<k>/file<j>.ts` (50 holders), probed with a
//!   free file (granted) and a held one (queued behind it); `grantable` with 100 waiters, each
//!   on a held file (so none can be granted).
//!
//! For `grantable` the probe waits in the table (nothing blocks it, so it is grantable).
//!
//! ```text
//! cargo run --release --example lock_table_bench
//! ```
//!
//! Each operation is repeated until at least 5 repetitions and 3 s have passed (at most
//! 20,000); the median and the 99th percentile of the per-operation wall time are printed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use collab_hub::domain::lock::{LockTable, Mode, Request, Resource};
use uuid::Uuid;

const SESSION: Uuid = Uuid::from_u128(0x5E55);
const GLOB_LOCKS: usize = 1024;
/// Characters of every glob resource and of the glob cases' probes.
const RESOURCE_CHARS: usize = 1023;

fn request(resource: &str, holder: &str, mode: Mode) -> Request {
    Request {
        session_id: SESSION,
        resource: Resource::parse(resource).expect("resource parses"),
        holder: holder.to_owned(),
        mode,
        operation: None,
        lease_secs: 300,
        wait: true,
        task_id: None,
    }
}

/// `/<dir>/` followed by `a`s, `RESOURCE_CHARS` characters in all.
fn long_file(dir: &str) -> String {
    let head = format!("/{dir}/");
    format!("{head}{}", "a".repeat(RESOURCE_CHARS - head.len()))
}

/// The issue's table: `GLOB_LOCKS` held shared globs of `RESOURCE_CHARS` characters each,
/// `/g/` followed by `glob(k, characters left)`.
fn glob_table(glob: impl Fn(usize, usize) -> String) -> (LockTable, i64) {
    let at = chrono::Utc::now().naive_utc();
    let mut t = LockTable::default();
    for k in 0..GLOB_LOCKS {
        let text = format!("/g/{}", glob(k, RESOURCE_CHARS - 3));
        assert_eq!(text.chars().count(), RESOURCE_CHARS, "{text}");
        t.insert(
            k as i64 + 1,
            request(&text, &format!("agent{k}"), Mode::Shared),
            true,
            at,
        );
    }
    (t, GLOB_LOCKS as i64 + 1)
}

/// `*aaa…a0042*`: a star at both ends, so no literal head or tail to compare cheaply.
fn starred(k: usize, len: usize) -> String {
    format!("*{}{k:04}*", "a".repeat(len - 6))
}

/// `f0042aaa…a*`: a literal head that no `aaa…` file starts with.
fn headed(k: usize, len: usize) -> String {
    format!("f{k:04}{}*", "a".repeat(len - 6))
}

/// 1,000 held exclusive locks on `/src/mod<k>/file<j>.ts` (k < 100, j < 10), 50 holders.
fn file_table() -> (LockTable, i64) {
    let at = chrono::Utc::now().naive_utc();
    let mut t = LockTable::default();
    let mut id = 0;
    for k in 0..100 {
        for j in 0..10 {
            id += 1;
            let holder = format!("agent{}", id % 50);
            t.insert(
                id,
                request(&format!("/src/mod{k}/file{j}.ts"), &holder, Mode::Exclusive),
                true,
                at,
            );
        }
    }
    (t, id + 1)
}

struct Figures {
    median: Duration,
    p99: Duration,
    reps: usize,
}

fn measure(mut op: impl FnMut()) -> Figures {
    let (min_reps, max_reps, budget) = (5, 20_000, Duration::from_secs(3));
    // One untimed run: first-touch page faults are not the table's cost.
    op();
    let started = Instant::now();
    let mut times = Vec::new();
    while times.len() < max_reps && (times.len() < min_reps || started.elapsed() < budget) {
        let t = Instant::now();
        op();
        times.push(t.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Figures {
        median: at(0.5),
        p99: at(0.99),
        reps: times.len(),
    }
}

fn show(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.1} µs")
    }
}

fn report(case: &str, op: &str, f: Figures) {
    println!(
        "| {case:<10} | {op:<52} | {:>10} | {:>10} | {:>6} |",
        show(f.median),
        show(f.p99),
        f.reps
    );
}

/// `check` of an exclusive `probe` by a new holder, then `grantable` with it waiting.
fn probe(case: &str, table: &LockTable, next_id: i64, probe: &str, what: &str, expect: &str) {
    let ask = request(probe, "prober", Mode::Exclusive);
    let answer = format!("{:?}", table.check(&ask));
    assert!(answer.contains(expect), "{case} {what}: {answer}");
    report(
        case,
        &format!("check, exclusive {what}"),
        measure(|| {
            black_box(table.check(black_box(&ask)).ok());
        }),
    );
    let mut waiting = table.clone();
    waiting.insert(next_id, ask, false, chrono::Utc::now().naive_utc());
    report(
        case,
        &format!("grantable, 1 waiter: exclusive {what}"),
        measure(|| {
            black_box(waiting.grantable());
        }),
    );
}

fn main() {
    println!(
        "| case       | operation {:<42} | median     | p99        | reps   |",
        ""
    );
    println!(
        "|{:-<12}|{:-<54}|{:-<12}|{:-<12}|{:-<8}|",
        "", "", "", "", ""
    );

    let (globs, next) = glob_table(starred);
    probe(
        "globs",
        &globs,
        next,
        &long_file("h"),
        "/h/aaa… (other dir)",
        "Granted",
    );
    probe(
        "globs",
        &globs,
        next,
        &long_file("g"),
        "/g/aaa… (same dir)",
        "Granted",
    );

    let (headed, next) = glob_table(headed);
    probe(
        "globs-head",
        &headed,
        next,
        &long_file("g"),
        "/g/aaa… (same dir)",
        "Granted",
    );

    let (files, next) = file_table();
    probe(
        "files",
        &files,
        next,
        "/src/mod42/new.ts",
        "/src/mod42/new.ts (free)",
        "Granted",
    );
    probe(
        "files",
        &files,
        next,
        "/src/mod42/file7.ts",
        "/src/mod42/file7.ts (held)",
        "Queued",
    );
    // A queue: 100 waiters, each behind a held file of someone else.
    let mut queue = files.clone();
    let at = chrono::Utc::now().naive_utc();
    for k in 0..100i64 {
        let file = format!("/src/mod{k}/file{}.ts", k % 10);
        queue.insert(
            next + k,
            request(&file, &format!("waiter{k}"), Mode::Exclusive),
            false,
            at,
        );
    }
    assert!(queue.grantable().is_empty());
    report(
        "files",
        "grantable, 100 waiters, all blocked",
        measure(|| {
            black_box(queue.grantable());
        }),
    );
}
