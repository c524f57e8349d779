//! Locks under real concurrency: 32 participants of one session, each its own HTTP client,
//! acquire, hold, renew and release (or queue, wait, and cancel) locks on a small pool of
//! overlapping resources at once. Afterwards the whole event log is read back (`events_poll`,
//! page by page) and replayed: at no point may two participants hold conflicting locks (by the
//! hub's own rule, `Resource::conflicts_with` and the mode), fencing tokens (the ids of the
//! `resource_locked` events) strictly increase, waiters are granted first come, first served,
//! every request ends released after being held, or cancelled while waiting, the log agrees
//! with what each client was told, and no request ever got a 5xx.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use collab_hub::domain::lock::Resource;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, both_backends, client, spawn_app};
use crate::mcp_protocol::Mcp;

both_backends!(
    concurrent_lock_traffic_replays_cleanly,
    two_sessions_of_one_project_share_one_lock_table,
    two_projects_never_meet,
    two_sessions_over_three_hubs_survive_the_owner_killed,
);

const CLIENTS: usize = 32;
const ROUNDS: usize = 15;
/// Overlapping on purpose: the directory, a file in it, a glob over it, a glob over all `.ts`,
/// symbols of one file, the file itself, and one unrelated file.
const POOL: [&str; 8] = [
    "/src/auth/",
    "/src/auth/jwt.ts",
    "/src/auth/*",
    "/src/**/*.ts",
    "/src/auth.ts#A",
    "/src/auth.ts#A.b",
    "/src/auth.ts",
    "/docs/readme.md",
];

/// xorshift64, seeded per client.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What one client asked for and what it was told.
#[derive(Debug, Clone)]
struct Asked {
    /// `session/participant`, as the replay names holders.
    who: String,
    resource: String,
    mode: &'static str,
    wait: bool,
    /// The lock id (absent when refused).
    id: Option<i64>,
    /// Granted at once.
    immediate: bool,
    /// The token the client saw once its lock was held.
    token: Option<i64>,
    /// Gave up waiting and cancelled (the grant may have raced the cancel).
    cancelled: bool,
    refused: bool,
}

struct Agent {
    who: String,
    token: String,
    session: String,
    address: String,
    /// Several hubs (one database): where to go when `address` stops answering. Empty: one hub.
    hubs: Vec<String>,
    /// Requests that got no answer or 503 while an owner was killed (only with `hubs`).
    lost: usize,
    /// Locks this client still held that the hub said were gone (only with `hubs`): their
    /// lease ran out while no hub owned the database; the log must say they expired.
    gone: Vec<i64>,
    http: awc::Client,
    rng: Rng,
    asked: Vec<Asked>,
    /// Every answer that is not what the protocol promises (5xx above all).
    problems: Vec<String>,
    requests: usize,
}

impl Agent {
    /// Client `n` (its random seed) acting as `who` of the session `created` answered, at
    /// `address`; `hubs`: every hub it may move to (several hubs), or none.
    fn new(
        who: &str,
        created: &Value,
        session: &str,
        address: &str,
        hubs: &[String],
        n: u64,
    ) -> Agent {
        Agent {
            who: who.to_owned(),
            token: created["tokens"][who].as_str().unwrap().to_owned(),
            session: session.to_owned(),
            address: address.to_owned(),
            hubs: hubs.to_vec(),
            lost: 0,
            gone: Vec::new(),
            http: client(),
            rng: Rng(0x9E37_79B9_7F4A_7C15 ^ (n + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9)),
            asked: Vec::new(),
            problems: Vec::new(),
            requests: 0,
        }
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.address);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        }
        .bearer_auth(&self.token);
        let sent = match body {
            Some(b) => req.send_json(b).await,
            None => req.send().await,
        };
        self.requests += 1;
        let mut res = match sent {
            Ok(r) => r,
            Err(_) if !self.hubs.is_empty() => {
                // Its hub was killed: as behind a load balancer, the next request goes to
                // another. This one may or may not have been applied.
                self.lost += 1;
                let at = self
                    .hubs
                    .iter()
                    .position(|h| *h == self.address)
                    .unwrap_or(0);
                self.address = self.hubs[(at + 1) % self.hubs.len()].clone();
                return (StatusCode::SERVICE_UNAVAILABLE, Value::Null);
            }
            Err(e) => {
                self.problems
                    .push(format!("{method} {path}: no answer: {e}"));
                return (StatusCode::SERVICE_UNAVAILABLE, Value::Null);
            }
        };
        let status = res.status();
        let bytes = res.body().limit(16 << 20).await.unwrap_or_default();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status == StatusCode::SERVICE_UNAVAILABLE && !self.hubs.is_empty() {
            // Retryable, during a takeover.
            self.lost += 1;
        } else if status.is_server_error() {
            self.problems.push(format!(
                "{method} {path} {body:?} → {status}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        (status, json)
    }

    fn unexpected(&mut self, what: &str, status: StatusCode, body: &Value) {
        if !self.hubs.is_empty() {
            if status == StatusCode::SERVICE_UNAVAILABLE {
                return; // counted in `lost`
            }
            if body["error"]["code"] == "already_applied" {
                // Run again by the hub that passed it on after the hub serving it died
                // answering it: it was applied, and its answer is lost, as a 503's was before
                // (the log says what it did).
                self.lost += 1;
                return;
            }
            if body["error"]["code"] == "already_locked" {
                // Its own lock, from a request whose answer was lost to the kill.
                self.lost += 1;
                return;
            }
            if body["error"]["field"] == "lockId"
                && let Some(id) = what.rsplit(' ').next().and_then(|id| id.parse().ok())
            {
                self.gone.push(id);
                return;
            }
        }
        self.problems
            .push(format!("{}: {what} → {status} {body}", self.who));
    }

    async fn list(&mut self) -> Option<Vec<Value>> {
        let path = format!("/mcp/collaborate/locks?sessionId={}", self.session);
        let (status, body) = self.send("GET", &path, None).await;
        match body["locks"].as_array() {
            Some(all) if status == StatusCode::OK => {
                // Every snapshot is consistent on its own.
                let held: Vec<&Value> = all.iter().filter(|l| l["state"] == "held").collect();
                for (i, a) in held.iter().enumerate() {
                    for b in &held[i + 1..] {
                        let owner = |l: &Value| (l["sessionId"].clone(), l["holder"].clone());
                        if owner(a) != owner(b) && clash(a, b) {
                            self.problems
                                .push(format!("a lock list shows both {a} and {b} held"));
                        }
                    }
                }
                Some(all.clone())
            }
            _ => {
                self.unexpected("list locks", status, &body);
                None
            }
        }
    }

    /// Holds `id` a few ms, sometimes renews it, then releases it.
    async fn hold_and_release(&mut self, id: i64, token: i64) {
        tokio::time::sleep(Duration::from_millis(1 + self.rng.below(8))).await;
        if self.rng.chance(30) {
            let lease = 2 + self.rng.below(4);
            let (status, body) = self
                .send(
                    "POST",
                    "/mcp/collaborate/lock/renew",
                    Some(&json!({"sessionId": self.session, "lockId": id, "duration": format!("{lease}s")})),
                )
                .await;
            if status != StatusCode::OK
                || body["state"] != "held"
                || body["leaseSecs"] != lease
                || body["token"] != token
            {
                self.unexpected(&format!("renew {id}"), status, &body);
            }
            tokio::time::sleep(Duration::from_millis(self.rng.below(4))).await;
        }
        let (status, body) = self
            .send(
                "POST",
                "/mcp/collaborate/lock/release",
                Some(&json!({"sessionId": self.session, "lockId": id})),
            )
            .await;
        if status != StatusCode::OK || !body["eventId"].is_i64() {
            self.unexpected(&format!("release {id}"), status, &body);
        }
    }

    async fn run(&mut self) {
        for _ in 0..ROUNDS {
            let resource = POOL[self.rng.below(POOL.len() as u64) as usize];
            let mode = if self.rng.chance(30) {
                "shared"
            } else {
                "exclusive"
            };
            let wait = self.rng.chance(50);
            let lease = 2 + self.rng.below(4);
            // Both spellings of a lease.
            let duration = if self.rng.chance(50) {
                json!(lease)
            } else {
                json!(format!("{lease}s"))
            };
            let mut asked = Asked {
                who: format!("{}/{}", self.session, self.who),
                resource: resource.to_owned(),
                mode,
                wait,
                id: None,
                immediate: false,
                token: None,
                cancelled: false,
                refused: false,
            };
            let body = json!({"sessionId": self.session, "resource": resource, "mode": mode,
                "wait": wait, "duration": duration, "operation": "edit"});
            let (status, got) = self
                .send("POST", "/mcp/collaborate/lock", Some(&body))
                .await;
            match (status, got["state"].as_str()) {
                (StatusCode::OK, Some("held")) => {
                    let id = got["id"].as_i64().unwrap_or_default();
                    asked.id = Some(id);
                    asked.immediate = true;
                    asked.token = got["token"].as_i64();
                    if asked.token != Some(id) || got["holder"] != self.who.as_str() {
                        self.unexpected("an immediate grant", status, &got);
                    }
                    self.hold_and_release(id, id).await;
                }
                (StatusCode::OK, Some("waiting")) if wait => {
                    let id = got["id"].as_i64().unwrap_or_default();
                    asked.id = Some(id);
                    if got["behind"].as_array().is_none_or(Vec::is_empty) {
                        self.unexpected("queued behind nothing", status, &got);
                    }
                    let patience = Duration::from_millis(200 + self.rng.below(1800));
                    let started = Instant::now();
                    loop {
                        tokio::time::sleep(Duration::from_millis(5 + self.rng.below(15))).await;
                        let Some(all) = self.list().await else { break };
                        let mine = all.iter().find(|l| l["id"] == id).cloned();
                        match mine.as_ref().and_then(|l| l["state"].as_str()) {
                            Some("held") => {
                                let token = mine.as_ref().unwrap()["token"].as_i64();
                                asked.token = token;
                                if token.is_none_or(|t| t <= id) {
                                    self.unexpected("a granted waiter's token", status, &got);
                                }
                                self.hold_and_release(id, token.unwrap_or_default()).await;
                                break;
                            }
                            Some("waiting") if started.elapsed() < patience => {}
                            Some("waiting") => {
                                asked.cancelled = true;
                                let (status, body) = self
                                    .send(
                                        "POST",
                                        "/mcp/collaborate/lock/release",
                                        Some(&json!({"sessionId": self.session, "lockId": id})),
                                    )
                                    .await;
                                if status != StatusCode::OK {
                                    self.unexpected(&format!("cancel {id}"), status, &body);
                                }
                                break;
                            }
                            // Across a takeover the client may see no hub for longer
                            // than the lease it asked for: granted meanwhile, the lock has
                            // expired. Checked against the log afterwards (`gone`).
                            _ if !self.hubs.is_empty() => {
                                self.gone.push(id);
                                break;
                            }
                            _ => {
                                self.problems.push(format!(
                                    "{}: waiting lock {id} vanished from the list",
                                    self.who
                                ));
                                break;
                            }
                        }
                    }
                }
                (StatusCode::CONFLICT, _) if !wait && got["error"]["code"] == "resource_locked" => {
                    asked.refused = true;
                }
                _ => self.unexpected(&format!("acquire {body}"), status, &got),
            }
            self.asked.push(asked);
        }
    }
}

/// Every answer was one the protocol promises (the first 30 that were not, if any).
fn assert_no_bad_answers(agents: &[Agent]) {
    let problems: Vec<&str> = agents
        .iter()
        .flat_map(|a| &a.problems)
        .map(String::as_str)
        .collect();
    assert!(
        problems.is_empty(),
        "{} bad answers:\n{}",
        problems.len(),
        problems[..problems.len().min(30)].join("\n")
    );
}

/// The hub's own conflict rule, on two lock-shaped JSON values (`resource` and `mode`).
fn clash(a: &Value, b: &Value) -> bool {
    let parse = |v: &Value| Resource::parse(v["resource"].as_str().unwrap_or_default()).unwrap();
    !(a["mode"] == "shared" && b["mode"] == "shared") && parse(a).conflicts_with(&parse(b))
}

/// A lock as the replay knows it.
#[derive(Debug, Clone)]
struct Live {
    id: i64,
    /// `session/participant`: one name in two sessions is two holders.
    holder: String,
    view: Value,
    token: Option<i64>,
}

impl Live {
    fn show(&self) -> String {
        format!(
            "{} {} {} {} ({})",
            self.id,
            self.holder,
            self.view["resource"],
            self.view["mode"],
            self.token
                .map_or("waiting".to_owned(), |t| format!("held, token {t}"))
        )
    }
}

/// How one lock ended, by the log.
#[derive(Debug, Clone)]
struct Ended {
    holder: String,
    view: Value,
    reason: String,
    granted_by: Option<i64>,
    immediate: bool,
}

/// What the replay saw: the most locks held at once, grants of a lock that overlaps one held by
/// someone else (shared with shared), and requests that met a lock of another session.
#[derive(Debug, Default)]
struct Seen {
    most_held: usize,
    shared_overlaps: usize,
    across_sessions: usize,
}

/// The project sequence number of a lock event: every acquire (its lock id), grant (its token)
/// and release (`seq`) of a project takes the next one when the lock table decides it, so
/// sorting by it replays the table's decisions in order, whichever session's log holds them.
fn seq_of(e: &Value) -> Option<i64> {
    let p = &e["payload"];
    match e["kind"].as_str()? {
        "lock_queued" => p["lockId"].as_i64(),
        "resource_locked" => p["token"].as_i64(),
        "resource_released" => p["seq"].as_i64(),
        _ => None,
    }
}

/// Replays the lock events of every session of one project (`(session, event)`) in the lock
/// table's order; returns how each lock ended, or every violation found.
///
/// A release takes effect in the table when its session has committed it, a moment after its
/// sequence number: decisions in between still count the lock. So a queue's `behind` must
/// name every lock that surely blocks it and nothing that could not have.
fn replay(logs: &[(String, Vec<Value>)]) -> Result<(BTreeMap<i64, Ended>, Seen), Vec<String>> {
    replay_with(logs, true)
}

/// `replay`; `one_each`: every client holds or awaits at most one lock at a time, releases
/// what it holds before its lease runs out and leaves nothing behind. False when answers were
/// lost to a killed hub: a client that never heard of its lock asks for another and leaves that
/// one to expire (held, or granted later), and leases run out while no hub owns the database.
fn replay_with(
    logs: &[(String, Vec<Value>)],
    one_each: bool,
) -> Result<(BTreeMap<i64, Ended>, Seen), Vec<String>> {
    let mut seen = Seen::default();
    let mut bad = Vec::new();
    let mut events: Vec<(i64, &str, &Value)> = Vec::new();
    for (session, log) in logs {
        let mut last_id = 0;
        for e in log {
            // Each session's own log is in order.
            let id = e["id"].as_i64().unwrap();
            if id <= last_id {
                bad.push(format!(
                    "{session}: event {id} after {last_id}: the log is out of order"
                ));
            }
            last_id = id;
            let kind = e["kind"].as_str().unwrap_or_default();
            match seq_of(e) {
                Some(seq) => events.push((seq, session.as_str(), e)),
                None if kind == "lock_renewed" || !kind.contains("lock") => {}
                None => bad.push(format!(
                    "{session}: event {id}: {kind} without a sequence number: {e}"
                )),
            }
        }
    }
    events.sort_by_key(|(seq, _, _)| *seq);
    for w in events.windows(2) {
        if w[0].0 == w[1].0 {
            bad.push(format!(
                "sequence number {} used twice: {} and {}",
                w[0].0, w[0].2, w[1].2
            ));
        }
    }
    let mut live: BTreeMap<i64, Live> = BTreeMap::new();
    // Released (by sequence number) but perhaps not yet out of the table when later decisions ran.
    let mut leaving: BTreeMap<i64, Live> = BTreeMap::new();
    let mut ended: BTreeMap<i64, Ended> = BTreeMap::new();
    let mut granted_by: BTreeMap<i64, (i64, bool)> = BTreeMap::new();
    for (seq, session, e) in events {
        let p = &e["payload"];
        let kind = e["kind"].as_str().unwrap_or_default();
        let holder = format!("{session}/{}", p["by"].as_str().unwrap_or_default());
        let lock_id = p["lockId"].as_i64().unwrap_or_default();
        match kind {
            "resource_locked" | "lock_queued" => {
                let view = json!({"resource": p["resource"], "mode": p["mode"]});
                let held = kind == "resource_locked";
                let fresh = kind == "lock_queued" || lock_id == seq;
                if fresh {
                    if lock_id != seq {
                        bad.push(format!(
                            "seq {seq}: a new request's id {lock_id} is not its sequence number"
                        ));
                    }
                    if live.contains_key(&lock_id) || ended.contains_key(&lock_id) {
                        bad.push(format!("seq {seq}: lock {lock_id} requested twice"));
                    }
                    if let Some(other) = live.values().find(|l| one_each && l.holder == holder) {
                        bad.push(format!(
                            "seq {seq}: {holder} asks for a second lock while it has {}",
                            other.show()
                        ));
                    }
                    // Was it right to queue / grant? Blocking: others' held, anyone's waiting.
                    let blocks = |l: &&Live| {
                        (l.token.is_none() || l.holder != holder) && clash(&l.view, &view)
                    };
                    let surely: Vec<i64> = live.values().filter(blocks).map(|l| l.id).collect();
                    let maybe: BTreeSet<i64> = leaving
                        .values()
                        .filter(blocks)
                        .map(|l| l.id)
                        .chain(surely.iter().copied())
                        .collect();
                    if held && !surely.is_empty() {
                        let ahead: Vec<String> = surely.iter().map(|b| live[b].show()).collect();
                        bad.push(format!(
                            "seq {seq}: {holder} granted {view} at once despite {ahead:?}"
                        ));
                    }
                    if !held {
                        let behind: BTreeSet<i64> = p["behind"]
                            .as_array()
                            .map(|b| b.iter().filter_map(Value::as_i64).collect())
                            .unwrap_or_default();
                        if behind.is_empty()
                            || !surely.iter().all(|b| behind.contains(b))
                            || !behind.is_subset(&maybe)
                        {
                            bad.push(format!(
                                "seq {seq}: {holder} queued for {view} behind {behind:?}; the log says {surely:?} (maybe {maybe:?})"
                            ));
                        }
                    }
                    if maybe.iter().any(|b| {
                        live.get(b)
                            .or(leaving.get(b))
                            .is_some_and(|l| !l.holder.starts_with(&format!("{session}/")))
                    }) {
                        seen.across_sessions += 1;
                    }
                    live.insert(
                        lock_id,
                        Live {
                            id: lock_id,
                            holder: holder.clone(),
                            view: view.clone(),
                            token: None,
                        },
                    );
                } else {
                    match live.get(&lock_id) {
                        None => bad.push(format!("seq {seq}: grants unknown lock {lock_id}")),
                        Some(l) if l.token.is_some() => {
                            bad.push(format!("seq {seq}: grants {} again", l.show()))
                        }
                        Some(l) if l.holder != holder || l.view != view => bad.push(format!(
                            "seq {seq}: grant of {} names {holder} {view}",
                            l.show()
                        )),
                        Some(l) => {
                            // First come, first served.
                            for w in live.values() {
                                if w.token.is_none() && w.id < lock_id && clash(&w.view, &l.view) {
                                    bad.push(format!(
                                        "seq {seq}: {} granted before the earlier waiter {}",
                                        l.show(),
                                        w.show()
                                    ));
                                }
                            }
                        }
                    }
                }
                if held && let Some(me) = live.get(&lock_id).cloned() {
                    for other in live.values() {
                        if other.token.is_some()
                            && other.holder != me.holder
                            && clash(&other.view, &me.view)
                        {
                            bad.push(format!(
                                "seq {seq}: {} held together with {}",
                                me.show(),
                                other.show()
                            ));
                        }
                    }
                    if live.values().any(|o| {
                        o.token.is_some()
                            && o.holder != me.holder
                            && o.view["mode"] == "shared"
                            && me.view["mode"] == "shared"
                            && Resource::parse(o.view["resource"].as_str().unwrap())
                                .unwrap()
                                .conflicts_with(
                                    &Resource::parse(me.view["resource"].as_str().unwrap())
                                        .unwrap(),
                                )
                    }) {
                        seen.shared_overlaps += 1;
                    }
                    live.get_mut(&lock_id).unwrap().token = Some(seq);
                    granted_by.insert(lock_id, (seq, fresh));
                    seen.most_held = seen
                        .most_held
                        .max(live.values().filter(|l| l.token.is_some()).count());
                }
            }
            "resource_released" => {
                let reason = p["reason"].as_str().unwrap_or_default().to_owned();
                match live.remove(&lock_id) {
                    None => bad.push(format!("seq {seq}: releases unknown lock {lock_id}")),
                    Some(l) => {
                        let was_held = l.token.is_some();
                        let fine = match reason.as_str() {
                            "released" => was_held,
                            "cancelled" => !was_held,
                            "expired" => !one_each && was_held,
                            _ => false,
                        };
                        if !fine || p["wasHeld"] != was_held || holder != l.holder {
                            bad.push(format!(
                                "seq {seq}: {} ended {reason} (wasHeld {}, by {holder})",
                                l.show(),
                                p["wasHeld"],
                            ));
                        }
                        let (granted, immediate) = granted_by
                            .get(&lock_id)
                            .map_or((None, false), |(g, i)| (Some(*g), *i));
                        ended.insert(
                            lock_id,
                            Ended {
                                holder: l.holder.clone(),
                                view: l.view.clone(),
                                reason,
                                granted_by: granted,
                                immediate,
                            },
                        );
                        leaving.insert(lock_id, l);
                    }
                }
            }
            k => bad.push(format!("seq {seq}: unexpected {k}: {e}")),
        }
    }
    for l in live.values() {
        if one_each {
            bad.push(format!("never ended: {}", l.show()));
        }
    }
    if bad.is_empty() {
        Ok((ended, seen))
    } else {
        Err(bad)
    }
}

/// The whole log as `who` sees it, page by page.
async fn whole_log(app: &TestApp, token: &str) -> Vec<Value> {
    whole_log_at(&app.address, token).await
}

async fn whole_log_at(address: &str, token: &str) -> Vec<Value> {
    let mut m = Mcp::at(address);
    m.token = Some(token.to_owned());
    m.initialize("2025-11-25").await;
    let (mut after, mut all) = (0, Vec::new());
    loop {
        let (err, page) = m
            .tool("events_poll", json!({"after": after, "limit": 200}))
            .await;
        assert!(!err, "{page}");
        let events = page["events"].as_array().unwrap().clone();
        let Some(last) = events.last() else { break };
        after = last["id"].as_i64().unwrap();
        all.extend(events);
    }
    all
}

async fn concurrent_lock_traffic_replays_cleanly(backend: Backend) {
    storm(backend, &["/repo/storm"]).await;
}

/// The same storm, its clients spread over two sessions of one project that use the same
/// participant names: one lock table, one order, no conflicting holders across sessions.
async fn two_sessions_of_one_project_share_one_lock_table(backend: Backend) {
    storm(backend, &["/repo/storm", "/repo/storm"]).await;
}

/// The same storm in two projects on the same files and names: each project's log replays
/// cleanly on its own (a queue behind, or a grant held up by, the other project's lock would
/// be a violation there), and each has its own sequence.
async fn two_projects_never_meet(backend: Backend) {
    storm(backend, &["/repo/shop", "/repo/blog"]).await;
}

/// 32 clients spread evenly over one session per entry of `projects` (that session's project).
async fn storm(backend: Backend, projects: &[&str]) {
    let sessions = projects.len();
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let started = Instant::now();
    let per_session = CLIENTS / sessions;
    let names: Vec<String> = (0..per_session).map(|i| format!("a{i}")).collect();
    let mut agents: Vec<Agent> = Vec::new();
    let mut session_ids = Vec::new();
    for (s, project) in projects.iter().enumerate() {
        let (status, body) = app
            .post(
                "/mcp/session/create",
                &json!({"name": format!("lock storm {s}"), "project": project, "participants": names}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let session = body["sessionId"].as_str().unwrap().to_owned();
        session_ids.push(session.clone());
        for (i, who) in names.iter().enumerate() {
            let n = (s * per_session + i) as u64;
            agents.push(Agent::new(who, &body, &session, &app.address, &[], n));
        }
    }
    futures::future::join_all(agents.iter_mut().map(Agent::run)).await;
    let traffic = started.elapsed();

    assert_no_bad_answers(&agents);
    // Nothing is left held or waiting, in any session of the project.
    for a in agents.iter().step_by(per_session) {
        let (status, left) = app
            .get_as(
                &a.token,
                &format!("/mcp/collaborate/locks?sessionId={}", a.session),
            )
            .await;
        assert_eq!(
            (status, left.clone()),
            (StatusCode::OK, json!({"locks": []})),
            "{left}"
        );
    }

    // Each project's sessions' logs replay together, in that project's sequence.
    let mut by_project: BTreeMap<&str, Vec<(String, Vec<Value>)>> = BTreeMap::new();
    for (s, a) in agents.iter().step_by(per_session).enumerate() {
        let log = whole_log(&app, &a.token).await;
        by_project
            .entry(projects[s])
            .or_default()
            .push((a.session.clone(), log));
    }
    let project_of: BTreeMap<&str, &str> = session_ids
        .iter()
        .zip(projects)
        .map(|(s, p)| (s.as_str(), *p))
        .collect();
    let mut events = 0;
    let mut ended: BTreeMap<(&str, i64), Ended> = BTreeMap::new();
    let mut seen = Seen::default();
    for (project, logs) in &by_project {
        events += logs.iter().map(|(_, l)| l.len()).sum::<usize>();
        match replay(logs) {
            Ok((e, s)) => {
                ended.extend(e.into_iter().map(|(id, end)| ((*project, id), end)));
                seen.most_held = seen.most_held.max(s.most_held);
                seen.shared_overlaps += s.shared_overlaps;
                seen.across_sessions += s.across_sessions;
            }
            Err(bad) => panic!(
                "{} violations in the replay of {project} ({backend:?}):\n{}",
                bad.len(),
                bad.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
            ),
        }
    }

    // The log agrees with what every client was told, and every request ended properly.
    let asked: Vec<&Asked> = agents.iter().flat_map(|a| &a.asked).collect();
    let mut ids = BTreeSet::new();
    let mut mismatches = Vec::new();
    let key = |a: &Asked, id: i64| {
        let session = a.who.split('/').next().unwrap_or_default();
        (project_of.get(session).copied().unwrap_or_default(), id)
    };
    for a in &asked {
        let Some(id) = a.id else {
            assert!(a.refused, "{a:?}");
            continue;
        };
        ids.insert(key(a, id));
        let Some(end) = ended.get(&key(a, id)) else {
            mismatches.push(format!("{a:?}: not in the log"));
            continue;
        };
        let same = end.holder == a.who
            && end.view == json!({"resource": a.resource, "mode": a.mode})
            && (a.wait || a.immediate);
        let fine = same
            && if a.immediate {
                end.immediate && end.granted_by == Some(id) && end.reason == "released"
            } else if a.cancelled {
                // A cancel that raced the grant releases the now-held lock.
                (end.reason == "cancelled" && end.granted_by.is_none())
                    || (end.reason == "released" && end.granted_by.is_some_and(|t| t > id))
            } else {
                !end.immediate
                    && end.granted_by == a.token
                    && a.token.is_some_and(|t| t > id)
                    && end.reason == "released"
            };
        if !fine {
            mismatches.push(format!("{a:?}: the log says {end:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert_eq!(ids.len(), ended.len(), "the log has locks nobody asked for");

    let count = |f: &dyn Fn(&&Asked) -> bool| asked.iter().filter(|a| f(a)).count();
    let immediate = count(&|a| a.immediate);
    let waited = count(&|a| a.id.is_some() && !a.immediate && !a.cancelled);
    let cancelled = count(&|a| a.cancelled);
    let raced = count(&|a| {
        a.cancelled
            && a.id
                .and_then(|id| ended.get(&key(a, id)))
                .is_some_and(|e| e.reason == "released")
    });
    let refused = count(&|a| a.refused);
    let requests: usize = agents.iter().map(|a| a.requests).sum();
    eprintln!(
        "lock_concurrency ({backend:?}, sessions in {projects:?}): {} acquisitions: {immediate} at once, {waited} after \
         waiting, {cancelled} cancelled ({raced} raced their grant), {refused} refused; {requests} HTTP \
         requests in {traffic:?}; {} events replayed ({seen:?}); {:?} in all",
        asked.len(),
        events,
        started.elapsed()
    );
    // The pool must really be contended, or the test proves little.
    assert_eq!(asked.len(), CLIENTS * ROUNDS);
    // (Across two sessions every grant that follows another session's release takes one more
    // hop, so fewer requests find their resource free at once on a loaded machine.)
    let at_once = if sessions == 1 { 20 } else { 10 };
    assert!(
        immediate > at_once && waited > 20 && refused > 20,
        "too little contention: {immediate} at once, {waited} waited, {refused} refused"
    );
    // Non-conflicting locks really were held side by side.
    assert!(seen.most_held >= 2 && seen.shared_overlaps > 0, "{seen:?}");
    // Two sessions of one project: requests really met the other session's locks. Two
    // projects: never.
    let shared = by_project.values().any(|logs| logs.len() > 1);
    assert!(
        if shared {
            seen.across_sessions > 20
        } else {
            seen.across_sessions == 0
        },
        "{seen:?} ({session_ids:?})"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}

/// The two-session storm with its clients spread over three hub processes on one PostgreSQL,
/// and the hub serving the project (hub 0, through which the sessions were created) killed
/// (`kill -9`) mid-run: the other hubs, to which two thirds of the clients talk and which pass
/// their requests on to it, take the project over at once (its life lock went with it) and
/// load the lock table from the database. Clients of the killed hub move to another; requests in flight
/// are lost (not errors). Afterwards the project's log replays with no two conflicting
/// holders at any point, and fencing tokens strictly increase in the table's order and are
/// never given twice, across the takeover. (On SQLite a second hub refuses to start: `multi_hub`.)
async fn two_sessions_over_three_hubs_survive_the_owner_killed(backend: Backend) {
    let Some(db) = crate::helpers::TestDb::fresh(backend) else {
        return;
    };
    let Some(mut hubs) = crate::multi_hub::start_hubs(&db, backend, 3) else {
        return;
    };
    let urls = hubs.urls.clone();
    let per_session = CLIENTS / 2;
    let names: Vec<String> = (0..per_session).map(|i| format!("a{i}")).collect();
    let mut agents: Vec<Agent> = Vec::new();
    let mut tokens = Vec::new();
    for s in 0..2 {
        let body = crate::helpers::create_session_at(
            &urls[0],
            &json!({"name": format!("lock storm {s}"), "project": "/repo/storm", "participants": names}),
        )
        .await;
        let session = body["sessionId"].as_str().unwrap().to_owned();
        tokens.push(body["tokens"]["a0"].as_str().unwrap().to_owned());
        for (i, who) in names.iter().enumerate() {
            let n = s * per_session + i;
            agents.push(Agent::new(
                who,
                &body,
                &session,
                &urls[n % urls.len()],
                &urls,
                n as u64,
            ));
        }
    }
    let mut owner = hubs.take(0);
    let storm = futures::future::join_all(agents.iter_mut().map(Agent::run));
    let kill = async {
        actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
        owner.kill().expect("SIGKILL");
        owner.wait().unwrap();
    };
    let ((), _) = futures::future::join(kill, storm).await;
    assert_no_bad_answers(&agents);
    let lost: usize = agents.iter().map(|a| a.lost).sum();
    let granted = agents
        .iter()
        .flat_map(|a| &a.asked)
        .filter(|a| a.token.is_some())
        .count();

    let mut logs = Vec::new();
    let mut tokens_seen = Vec::new();
    for (s, token) in tokens.iter().enumerate() {
        let log = whole_log_at(&urls[1 + s], token).await;
        tokens_seen.extend(
            log.iter()
                .filter(|e| e["kind"] == "resource_locked")
                .filter_map(|e| e["payload"]["token"].as_i64()),
        );
        let session = agents[s * per_session].session.clone();
        logs.push((session, log));
    }
    // Fencing tokens: never one given twice in the project, across the takeover. (The replay
    // checks that, in the table's order, each grant's token is its sequence number, so they
    // strictly increase; a session's own log commits them in its own order.)
    let distinct: BTreeSet<i64> = tokens_seen.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        tokens_seen.len(),
        "a fencing token was given twice: {tokens_seen:?}"
    );
    let (ended, seen) = replay_with(&logs, false).unwrap_or_else(|bad| {
        // The project's lock events before the first violation, in the tables' order, and what
        // the clients were told of the locks it names: what a next failure needs to be read.
        let first = bad.first().and_then(|b| {
            b.strip_prefix("seq ")?
                .split(':')
                .next()?
                .parse::<i64>()
                .ok()
        });
        let named: BTreeSet<i64> = bad
            .first()
            .map(|b| {
                b.split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut events: Vec<(i64, String)> = logs
            .iter()
            .flat_map(|(session, log)| log.iter().map(move |e| (session, e)))
            .filter_map(|(session, e)| {
                let seq = seq_of(e)?;
                let p = &e["payload"];
                let near = first.is_none_or(|f| (f - 120..=f + 10).contains(&seq));
                (near || named.contains(&p["lockId"].as_i64().unwrap_or(-1))).then(|| {
                    (
                        seq,
                        format!(
                            "{seq} event {} {} {} lock {} by {} {} {} {}",
                            e["id"],
                            &session[..8],
                            e["kind"],
                            p["lockId"],
                            p["by"],
                            p["resource"],
                            p["mode"],
                            p["reason"]
                        ),
                    )
                })
            })
            .collect();
        events.sort();
        let told: Vec<String> = agents
            .iter()
            .flat_map(|a| a.asked.iter().map(move |q| (a, q)))
            .filter(|(_, q)| q.id.is_some_and(|id| named.contains(&id)))
            .map(|(a, q)| format!("{}: {q:?}", a.who))
            .collect();
        panic!(
            "{} violations in the replay across hubs:\n{}\nlock events near the first:\n{}\nthe clients of the locks it names:\n{}",
            bad.len(),
            bad.iter().take(40).cloned().collect::<Vec<_>>().join("\n"),
            events.into_iter().map(|(_, e)| e).collect::<Vec<_>>().join("\n"),
            told.join("\n")
        )
    });
    for (agent, id) in agents
        .iter()
        .flat_map(|a| a.gone.iter().map(move |id| (a, id)))
    {
        let reason = ended.get(id).map(|e| e.reason.as_str());
        // On failure, everything about the lock: what its client did and was told, and every
        // event of the project's logs that names it.
        let story = || {
            let asked: Vec<&Asked> = agent.asked.iter().filter(|a| a.id == Some(*id)).collect();
            let events: Vec<&Value> = logs
                .iter()
                .flat_map(|(_, log)| log)
                .filter(|e| e["payload"]["lockId"] == *id)
                .collect();
            format!("{}: asked {asked:?}; events {events:#?}", agent.who)
        };
        assert!(
            matches!(reason, Some("expired" | "released")),
            "lock {id} was gone for its holder, yet the log says {reason:?}; {}",
            story()
        );
    }
    let gone: usize = agents.iter().map(|a| a.gone.len()).sum();
    eprintln!(
        "lock_concurrency across 3 hubs: {gone} gone at their holder's next call, {} locks ended, {granted} grants seen by clients, {lost} requests lost to the kill; {seen:?}",
        ended.len()
    );
    assert!(lost > 0, "the kill hit requests in flight");
    assert!(seen.across_sessions > 0 && seen.most_held >= 2, "{seen:?}");
}
