//! Property tests of the lock table and of the resource conflict rule.
//!
//! 1. `lock_table_keeps_its_promises`: random interleavings of acquire (exclusive/shared, with
//!    and without `wait`), renew, release, cancel, force release, expiry (a fake clock moves on
//!    and `expired(now)` is removed) and leave (all of one holder's locks removed), applied to a
//!    `LockTable` exactly as the session actor does: `check` then `insert` under the next event
//!    id; after any removal, every id `grantable()` returns is granted with the next event id as
//!    its fencing token. After every step: no two conflicting holders (`consistent()` and an
//!    independent pairwise check), tokens strictly increase in grant order, a grant never
//!    overlaps a conflicting lock held by someone else, a waiter is never granted (nor a newcomer
//!    let in) ahead of an earlier conflicting waiter, no waiter is left idle that nothing blocks,
//!    `check`'s answer is exactly the one the rules predict, and the lease bookkeeping agrees
//!    with an independent one. At the end everything held is released, round after round, and
//!    every remaining waiter must be granted: nobody starves.
//! 2. `conflicts_never_miss_a_common_file`: for fixed and random resources (directories, files,
//!    globs with `*`, `?`, `[..]`, `**`, symbols), whenever some concrete file (and symbol)
//!    matches both by a small independent matcher, `conflicts_with` must say so (saying so
//!    without a witness is allowed: the rule is conservative). Also symmetry, reflexivity,
//!    `covers_file`, and that `Display` parses back to the same resource.
//!
//! A failure prints the seed and the op transcript; `LOCK_PROPS_SEED=<seed> cargo test --lib
//! lock_props` reruns that one case.

use super::test_rng::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};

use super::DomainError;
use super::lock::{
    Lock, LockTable, MAX_LOCKS_PER_PARTICIPANT, Mode, Outcome, Request, Resource, State,
};

const CASES: u64 = 500;
const MAX_OPS: u64 = 60;
const BASE_SEED: u64 = 0x10C4_7AB1_E5EE_D001;
const HOLDERS: [&str; 4] = ["claude", "gemini", "cursor", "codex"];
/// Small, so that requests overlap often: a directory, files under it, globs, symbols.
const RESOURCES: [&str; 12] = [
    "/src/auth/",
    "/src/auth/jwt.ts",
    "/src/auth/deep/x.ts",
    "/src/auth/*",
    "/src/**/*.ts",
    "/src/auth.ts",
    "/src/auth.ts#A",
    "/src/auth.ts#A.b",
    "/src/auth.ts#A.c",
    "/src/auth/jwt.ts#A",
    "/src/pay.ts",
    "/docs/",
];

fn seed_from_env() -> Option<u64> {
    let seed = std::env::var("LOCK_PROPS_SEED").ok()?;
    let seed = seed.trim();
    Some(
        match seed.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => seed.parse(),
        }
        .expect("LOCK_PROPS_SEED is a number (decimal or 0x-hex)"),
    )
}

// ---------------------------------------------------------------------------------------------
// 1. The lock table, driven the way the session actor drives it.

/// The conflict rule between two locks, restated: shared/shared never conflicts, otherwise the
/// resources decide.
fn clash(a: &Lock, b: &Lock) -> bool {
    clash_with(a, b.mode, &b.resource)
}

fn clash_with(a: &Lock, mode: Mode, resource: &Resource) -> bool {
    !(a.mode == Mode::Shared && mode == Mode::Shared) && a.resource.conflicts_with(resource)
}

fn show(l: &Lock) -> String {
    format!(
        "{}:{}:{}:{}:{}",
        l.id,
        l.holder,
        l.resource,
        l.mode.as_str(),
        match l.state {
            State::Held => "held",
            State::Waiting => "waiting",
        }
    )
}

fn show_table(t: &LockTable) -> String {
    t.iter().map(show).collect::<Vec<_>>().join(", ")
}

fn code_of(e: &DomainError) -> String {
    match e {
        DomainError::Conflict { code, .. } => (*code).to_owned(),
        other => format!("{other:?}"),
    }
}

/// What `check` must answer, worked out from the rules directly.
#[derive(Debug, PartialEq)]
enum Expected {
    Refused(&'static str),
    Granted,
    Queued(Vec<i64>),
}

struct Sim {
    table: LockTable,
    /// The session's event counter: every lock event takes the next id.
    last_event: i64,
    now: NaiveDateTime,
    /// The newest fencing token handed out.
    last_token: i64,
    /// Independent lease bookkeeping: held lock → when its lease runs out.
    leases: BTreeMap<i64, NaiveDateTime>,
    log: Vec<String>,
    /// What happened how often (to show the generator reaches the interesting cases).
    stats: BTreeMap<&'static str, usize>,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            table: LockTable::default(),
            last_event: 0,
            now: NaiveDate::from_ymd_opt(2026, 1, 1)
                .unwrap()
                .and_hms_opt(12, 0, 0)
                .unwrap(),
            last_token: 0,
            leases: BTreeMap::new(),
            log: Vec::new(),
            stats: BTreeMap::new(),
        }
    }

    fn count(&mut self, what: &'static str, n: usize) {
        *self.stats.entry(what).or_default() += n;
    }

    fn event(&mut self) -> i64 {
        self.last_event += 1;
        self.last_event
    }

    fn held(&self) -> Vec<&Lock> {
        self.table
            .iter()
            .filter(|l| l.state == State::Held)
            .collect()
    }

    fn waiting(&self) -> Vec<&Lock> {
        self.table
            .iter()
            .filter(|l| l.state == State::Waiting)
            .collect()
    }

    fn expect(&self, req: &Request) -> Expected {
        let mine = self.table.iter().filter(|l| l.holder == req.holder).count();
        if mine >= MAX_LOCKS_PER_PARTICIPANT {
            return Expected::Refused("too_many_locks");
        }
        // The very same lock twice, held or queued, is refused.
        if self
            .table
            .iter()
            .any(|l| l.holder == req.holder && l.resource == req.resource && l.mode == req.mode)
        {
            return Expected::Refused("already_locked");
        }
        // Held by someone else, or waiting (anyone's, even one's own: nobody jumps the queue).
        let blocking: Vec<i64> = self
            .table
            .iter()
            .filter(|l| match l.state {
                State::Held => l.holder != req.holder,
                State::Waiting => true,
            })
            .filter(|l| clash_with(l, req.mode, &req.resource))
            .map(|l| l.id)
            .collect();
        if blocking.is_empty() {
            Expected::Granted
        } else if !req.wait {
            Expected::Refused("resource_locked")
        } else {
            Expected::Queued(blocking)
        }
    }

    /// `AcquireLock`: check, then record under the next event id (nothing written if refused).
    fn acquire(&mut self, req: Request) -> Result<(), String> {
        let what = format!(
            "acquire {} {} {} wait={} lease={}s",
            req.holder,
            req.resource,
            req.mode.as_str(),
            req.wait,
            req.lease_secs
        );
        let expected = self.expect(&req);
        let got = self.table.check(&req);
        let got_as = match &got {
            Ok(Outcome::Granted) => Expected::Granted,
            Ok(Outcome::Queued { behind }) => Expected::Queued(behind.clone()),
            Err(e) => match code_of(e).as_str() {
                "too_many_locks" => Expected::Refused("too_many_locks"),
                "already_locked" => Expected::Refused("already_locked"),
                "resource_locked" => Expected::Refused("resource_locked"),
                other => return Err(format!("{what}: unexpected error {other}")),
            },
        };
        if got_as != expected {
            return Err(format!(
                "{what}: check answered {got:?}, the rules say {expected:?}"
            ));
        }
        match got_as {
            Expected::Refused(code) => {
                self.count(code, 1);
                self.log.push(format!("{what} → refused {code}"));
            }
            Expected::Granted => {
                let id = self.event();
                // Granted at once: the event id is the lock id and the token.
                self.token(id)?;
                let lease = req.lease_secs;
                self.table.insert(id, req, true, self.now);
                let until = self.now + TimeDelta::seconds(i64::from(lease));
                self.leases.insert(id, until);
                let l = self.table.get(id).ok_or("granted lock missing")?;
                if l.state != State::Held || l.token != Some(id) || l.expires_at != Some(until) {
                    return Err(format!("{what}: inserted as {l:?}"));
                }
                self.count("granted at once", 1);
                self.log.push(format!("{what} → granted {id} (token {id})"));
            }
            Expected::Queued(behind) => {
                let id = self.event();
                self.table.insert(id, req, false, self.now);
                let l = self.table.get(id).ok_or("queued lock missing")?;
                if l.state != State::Waiting || l.token.is_some() || l.expires_at.is_some() {
                    return Err(format!("{what}: inserted as {l:?}"));
                }
                self.count("queued", 1);
                self.log
                    .push(format!("{what} → queued {id} behind {behind:?}"));
            }
        }
        Ok(())
    }

    /// Hands out `token`: it must be newer than every token before it.
    fn token(&mut self, token: i64) -> Result<(), String> {
        if token <= self.last_token {
            return Err(format!(
                "fencing token {token} is not above the previous {}",
                self.last_token
            ));
        }
        self.last_token = token;
        Ok(())
    }

    fn renew(&mut self, id: i64, lease: u32) -> Result<(), String> {
        self.table.renew(id, lease, self.now);
        let until = self.now + TimeDelta::seconds(i64::from(lease));
        self.leases.insert(id, until);
        let l = self.table.get(id).ok_or("renewed lock missing")?;
        if l.expires_at != Some(until) || l.lease_secs != lease || l.state != State::Held {
            return Err(format!("renew {id}: now {l:?}"));
        }
        self.log.push(format!("renew {id} for {lease}s"));
        Ok(())
    }

    /// `release_and_grant`: remove, one event each; then grant every `grantable()` id, in
    /// order, each with the next event id as its fencing token.
    fn release_and_grant(&mut self, what: &str, ids: &[i64]) -> Result<(), String> {
        let mut removed = Vec::new();
        for id in ids {
            let l = self
                .table
                .remove(*id)
                .ok_or_else(|| format!("{what}: lock {id} vanished"))?;
            self.event();
            self.leases.remove(id);
            removed.push(show(&l));
        }
        let grants = self.table.grantable();
        if !grants.windows(2).all(|w| w[0] < w[1]) {
            return Err(format!(
                "{what}: grantable() not in request order: {grants:?}"
            ));
        }
        let chosen: BTreeSet<i64> = grants.iter().copied().collect();
        for (i, g) in grants.iter().enumerate() {
            let gl = self
                .table
                .get(*g)
                .ok_or_else(|| format!("{what}: grantable {g} is no lock"))?;
            if gl.state != State::Waiting {
                return Err(format!("{what}: grantable {} is not waiting", show(gl)));
            }
            // Never granted while someone else holds a conflicting lock (including ones granted
            // just before it in the same batch).
            for h in self
                .table
                .iter()
                .filter(|h| h.state == State::Held || grants[..i].contains(&h.id))
            {
                if h.holder != gl.holder && clash(h, gl) {
                    let how = if h.state == State::Held {
                        "holds"
                    } else {
                        "is granted earlier in the same batch"
                    };
                    return Err(format!(
                        "{what}: waiter {} granted while {} {how}: {}",
                        show(gl),
                        h.holder,
                        show(h)
                    ));
                }
            }
            // First come, first served: no earlier conflicting waiter is passed over.
            for w in self
                .table
                .iter()
                .filter(|w| w.state == State::Waiting && w.id < *g && !chosen.contains(&w.id))
            {
                if clash(w, gl) {
                    return Err(format!(
                        "{what}: waiter {} granted before the earlier waiter {}",
                        show(gl),
                        show(w)
                    ));
                }
            }
        }
        for g in &grants {
            let token = self.event();
            self.token(token)?;
            self.table.grant(*g, token, self.now);
            let l = self.table.get(*g).ok_or("granted lock missing")?;
            let until = self.now + TimeDelta::seconds(i64::from(l.lease_secs));
            if l.state != State::Held || l.token != Some(token) || l.expires_at != Some(until) {
                return Err(format!("{what}: granted {g} is now {l:?}"));
            }
            self.leases.insert(*g, until);
        }
        self.count("removed", removed.len());
        self.count("waiters granted", grants.len());
        if grants.len() > 1 {
            self.count("batches of several grants", 1);
        }
        self.log.push(format!(
            "{what}: removed [{}] → granted {grants:?}",
            removed.join(", ")
        ));
        Ok(())
    }

    /// What must hold between any two steps.
    fn invariants(&self) -> Result<(), String> {
        if !self.table.consistent() {
            return Err("consistent() is false".into());
        }
        let held = self.held();
        for (i, a) in held.iter().enumerate() {
            for b in &held[i + 1..] {
                if a.holder != b.holder && clash(a, b) {
                    return Err(format!(
                        "conflicting holders: {} and {} (consistent() said fine)",
                        show(a),
                        show(b)
                    ));
                }
            }
        }
        // Tokens: one per held lock, distinct, none newer than the newest handed out.
        let mut tokens = BTreeSet::new();
        for l in &held {
            match l.token {
                Some(t) if t <= self.last_token && tokens.insert(t) => {}
                other => return Err(format!("held {} has token {other:?}", show(l))),
            }
        }
        // No idle waiter: each is blocked by someone else's conflicting held lock or by an
        // earlier conflicting waiter (the actor only grants when something is removed, so a
        // waiter nothing blocks would sit there until some unrelated release).
        let waiting = self.waiting();
        for w in &waiting {
            if w.token.is_some() || w.expires_at.is_some() {
                return Err(format!("waiter {} has a token or a lease: {w:?}", show(w)));
            }
            let blocked = held.iter().any(|h| h.holder != w.holder && clash(h, w))
                || waiting.iter().any(|v| v.id < w.id && clash(v, w));
            if !blocked {
                return Err(format!("waiter {} is blocked by nothing", show(w)));
            }
        }
        if !self.table.grantable().is_empty() {
            return Err(format!(
                "grantable() = {:?} between steps",
                self.table.grantable()
            ));
        }
        // Leases.
        let held_ids: Vec<i64> = held.iter().map(|l| l.id).collect();
        let leased: Vec<i64> = self.leases.keys().copied().collect();
        if held_ids != leased {
            return Err(format!("held {held_ids:?} but leases for {leased:?}"));
        }
        let due: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, until)| **until <= self.now)
            .map(|(id, _)| *id)
            .collect();
        if self.table.expired(self.now) != due {
            return Err(format!(
                "expired(now) = {:?}, leases say {due:?}",
                self.table.expired(self.now)
            ));
        }
        if self.table.next_expiry() != self.leases.values().min().copied() {
            return Err(format!(
                "next_expiry() = {:?}, leases say {:?}",
                self.table.next_expiry(),
                self.leases.values().min()
            ));
        }
        Ok(())
    }
}

fn random_request(rng: &mut Rng) -> Request {
    let resource = *rng.pick(&RESOURCES);
    Request {
        resource: Resource::parse(resource).expect("pool parses"),
        holder: (*rng.pick(&HOLDERS)).to_owned(),
        mode: if rng.chance(35) {
            Mode::Shared
        } else {
            Mode::Exclusive
        },
        operation: None,
        lease_secs: 1 + rng.below(30) as u32,
        wait: rng.chance(60),
        task_id: None,
    }
}

fn run_case(seed: u64, sim: &mut Sim) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let ops = 1 + rng.below(MAX_OPS);
    for step in 0..ops {
        sim.log
            .push(format!("-- step {step} at {}", sim.now.time()));
        // Time passes between commands; expired leases go only when the lease timer fires.
        sim.now += TimeDelta::seconds(rng.below(3) as i64);
        match rng.below(100) {
            0..=44 => sim.acquire(random_request(&mut rng))?,
            45..=54 => {
                let held: Vec<i64> = sim.held().iter().map(|l| l.id).collect();
                if held.is_empty() {
                    sim.log.push("renew: nothing held".into());
                } else {
                    let id = *rng.pick(&held);
                    sim.renew(id, 1 + rng.below(30) as u32)?;
                }
            }
            55..=69 => {
                let held: Vec<i64> = sim.held().iter().map(|l| l.id).collect();
                if held.is_empty() {
                    sim.log.push("release: nothing held".into());
                } else {
                    let id = *rng.pick(&held);
                    sim.release_and_grant(&format!("release {id}"), &[id])?;
                }
            }
            70..=79 => {
                let waiting: Vec<i64> = sim.waiting().iter().map(|l| l.id).collect();
                if waiting.is_empty() {
                    sim.log.push("cancel: nothing waiting".into());
                } else {
                    let id = *rng.pick(&waiting);
                    sim.release_and_grant(&format!("cancel {id}"), &[id])?;
                }
            }
            80..=87 => {
                sim.now += TimeDelta::seconds(rng.below(25) as i64);
                let expired = sim.table.expired(sim.now);
                // The lease timer does nothing when nothing has run out.
                if expired.is_empty() {
                    sim.log
                        .push(format!("lease check at {}: nothing", sim.now.time()));
                } else {
                    let what = format!("expire at {}", sim.now.time());
                    sim.release_and_grant(&what, &expired)?;
                }
            }
            88..=93 => {
                let who = *rng.pick(&HOLDERS);
                let all = sim.table.of(who);
                if all.is_empty() {
                    sim.log.push(format!("leave {who}: held nothing"));
                } else {
                    sim.release_and_grant(&format!("leave {who}"), &all)?;
                }
            }
            _ => {
                let all: Vec<i64> = sim.table.iter().map(|l| l.id).collect();
                if all.is_empty() {
                    sim.log.push("force: no locks".into());
                } else {
                    let id = *rng.pick(&all);
                    sim.release_and_grant(&format!("force {id}"), &[id])?;
                }
            }
        }
        sim.invariants()
            .map_err(|e| format!("after step {step}: {e}"))?;
    }
    // Nobody starves: release whatever is held, again and again; every round must grant at
    // least one waiter, until none is left.
    sim.log
        .push(format!("-- drain: {}", show_table(&sim.table)));
    let mut round = 0;
    loop {
        let waiting = sim.waiting().len();
        let held: Vec<i64> = sim.held().iter().map(|l| l.id).collect();
        if waiting == 0 {
            if !held.is_empty() {
                sim.release_and_grant("final release", &held)?;
            }
            break;
        }
        round += 1;
        if held.is_empty() {
            return Err(format!(
                "drain round {round}: {waiting} waiters, nothing held, none granted: {}",
                show_table(&sim.table)
            ));
        }
        sim.release_and_grant(&format!("drain round {round}"), &held)?;
        sim.invariants()
            .map_err(|e| format!("drain round {round}: {e}"))?;
        if sim.waiting().len() >= waiting {
            return Err(format!(
                "drain round {round}: releasing everything granted nobody: {}",
                show_table(&sim.table)
            ));
        }
    }
    if sim.table.iter().next().is_some() {
        return Err(format!("left over: {}", show_table(&sim.table)));
    }
    Ok(())
}

/// Runs one case; a failure (or a panic inside the table) reports the seed and transcript.
fn case_report(seed: u64) -> Result<Sim, String> {
    let mut sim = Sim::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| run_case(seed, &mut sim)));
    let error = match outcome {
        Ok(Ok(())) => return Ok(sim),
        Ok(Err(e)) => e,
        Err(panic) => format!(
            "panicked: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        ),
    };
    Err(format!(
        "lock table property failed for seed {seed:#x} (rerun: LOCK_PROPS_SEED={seed:#x} cargo test \
         --lib lock_props)\n{}\ntable: {}\nFAILED: {error}",
        sim.log.join("\n"),
        show_table(&sim.table)
    ))
}

#[test]
fn lock_table_keeps_its_promises() {
    if let Some(seed) = seed_from_env() {
        if let Err(report) = case_report(seed) {
            panic!("{report}");
        }
        return;
    }
    let mut seeds = Rng::new(BASE_SEED);
    let mut stats: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..CASES {
        match case_report(seeds.next()) {
            Ok(sim) => {
                for (k, n) in sim.stats {
                    *stats.entry(k).or_default() += n;
                }
            }
            Err(report) => panic!("{report}"),
        }
    }
    eprintln!("lock_props: {CASES} cases: {stats:?}");
    // The generator must exercise contention, not just uncontended grants.
    let n = |k: &str| stats.get(k).copied().unwrap_or(0);
    assert!(
        n("granted at once") > 1000
            && n("queued") > 500
            && n("waiters granted") > 500
            && n("batches of several grants") > 50
            && n("resource_locked") > 200
            && n("already_locked") > 10,
        "too little contention: {stats:?}"
    );
}

/// Pinned: the queue holds a newcomer back even when only its own earlier request waits, and
/// a waiter behind its own held lock is granted as soon as others are out of the way.
#[test]
fn own_locks_do_not_block_but_own_waiters_queue() {
    let r = |s: &str| Resource::parse(s).unwrap();
    let req = |res: &str, who: &str, mode: Mode| Request {
        resource: r(res),
        holder: who.into(),
        mode,
        operation: None,
        lease_secs: 30,
        wait: true,
        task_id: None,
    };
    let mut sim = Sim::new();
    sim.acquire(req("/src/auth/", "gemini", Mode::Exclusive))
        .unwrap();
    sim.acquire(req("/src/auth/jwt.ts", "claude", Mode::Exclusive))
        .unwrap();
    sim.acquire(req("/src/auth/*", "claude", Mode::Shared))
        .unwrap();
    sim.invariants().unwrap();
    assert_eq!(sim.waiting().len(), 2);
    sim.release_and_grant("release 1", &[1]).unwrap();
    sim.invariants().unwrap();
    // Both of claude's requests: its own held jwt.ts lock does not block its shared glob.
    assert_eq!(sim.held().len(), 2, "{}", sim.log.join("\n"));
    assert_eq!(sim.last_token, 6, "release was event 4, grants 5 and 6");
}

// ---------------------------------------------------------------------------------------------
// 2. `Resource::conflicts_with` against concrete files.

/// A resource as this test understands it: path segments (globs allowed), "everything below"
/// when it ends in `/`, and an optional symbol.
#[derive(Debug, Clone)]
struct Spec {
    text: String,
    segs: Vec<String>,
    prefix: bool,
    symbol: Option<String>,
}

impl Spec {
    /// Splits the simple texts this test writes (no `.`, `..`, `//` or blanks in them).
    fn of(text: &str) -> Spec {
        let (path, symbol) = match text.split_once('#') {
            Some((p, s)) => (p, Some(s.to_owned())),
            None => (text, None),
        };
        Spec {
            text: text.to_owned(),
            segs: path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            prefix: path.ends_with('/'),
            symbol,
        }
    }
}

#[derive(Debug, PartialEq)]
enum Tok {
    Any,
    One,
    Set(Vec<char>),
    Lit(char),
}

/// One path segment against a glob: `*` any run, `?` one character, `[ab]` one of a set
/// (dynamic programming over prefixes, unlike the hub's backtracking).
fn seg_match(pattern: &str, text: &str) -> bool {
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '*' => Tok::Any,
            '?' => Tok::One,
            '[' => {
                let set: Vec<char> = chars.by_ref().take_while(|c| *c != ']').collect();
                Tok::Set(set)
            }
            c => Tok::Lit(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // ok[j]: the tokens so far match text[..j].
    let mut ok = vec![false; text.len() + 1];
    ok[0] = true;
    for tok in &toks {
        let mut next = vec![false; text.len() + 1];
        for j in 0..=text.len() {
            next[j] = match tok {
                Tok::Any => ok[j] || (j > 0 && next[j - 1]),
                Tok::One => j > 0 && ok[j - 1],
                Tok::Set(set) => j > 0 && ok[j - 1] && set.contains(&text[j - 1]),
                Tok::Lit(c) => j > 0 && ok[j - 1] && text[j - 1] == *c,
            };
        }
        ok = next;
    }
    ok[text.len()]
}

/// Segments against a file's segments. `**` is any number of whole segments (gitignore
/// style): zero or more in the middle or at the start, one or more at the end (`/src/**` is
/// everything inside `src`).
fn segs_match(pattern: &[String], file: &[&str]) -> bool {
    match pattern.split_first() {
        None => file.is_empty(),
        Some((first, rest)) if first == "**" => {
            let least = usize::from(rest.is_empty());
            (least..=file.len()).any(|k| segs_match(rest, &file[k..]))
        }
        Some((first, rest)) => {
            !file.is_empty() && seg_match(first, file[0]) && segs_match(rest, &file[1..])
        }
    }
}

/// Does `spec`'s path cover the file? A directory covers what is strictly below it.
fn path_covers(spec: &Spec, file: &[&str]) -> bool {
    if spec.prefix {
        (0..file.len()).any(|k| segs_match(&spec.segs, &file[..k]))
    } else {
        segs_match(&spec.segs, file)
    }
}

/// A symbol resource covers that symbol and its members; no symbol covers the whole file.
fn symbol_covers(spec: &Spec, symbol: &str) -> bool {
    match &spec.symbol {
        None => true,
        Some(s) => symbol == s || symbol.starts_with(&format!("{s}.")),
    }
}

const SEG_VOCAB: [&str; 13] = [
    "src", "auth", "deep", "x.ts", "a.ts", "ab.ts", "*", "*.ts", "a*", "**", "a?.ts", "[ab].ts",
    "*.rs",
];
const FILE_NAMES: [&str; 7] = ["src", "auth", "deep", "x.ts", "a.ts", "ab.ts", "b.rs"];
const SYMBOLS: [&str; 5] = ["A", "A.b", "A.b.c", "Ab", "B"];
const FIXED: [&str; 26] = [
    "/",
    "/src/",
    "/src/auth",
    "/src/auth/",
    "/src/auth/x.ts",
    "/src/auth/deep/x.ts",
    "/src/auth/*",
    "/src/auth/*.ts",
    "/src/*",
    "/src/*/",
    "/src/**/*.ts",
    "/src/**",
    "/src/**/",
    "/**/x.ts",
    "/**",
    "/src/**/deep/*",
    "/src/a?.ts",
    "/src/[ab].ts",
    "/src/auth/x.ts#A",
    "/src/auth/x.ts#A.b",
    "/src/auth/x.ts#Ab",
    "/src/*/x.ts#A.b",
    "/src/**/*.ts#A",
    "/src/**/*.ts#B",
    "/src/ab.ts",
    "/deep/",
];

fn random_spec(rng: &mut Rng) -> Spec {
    let prefix = rng.chance(25);
    let n = if prefix {
        rng.below(4)
    } else {
        1 + rng.below(4)
    };
    let segs: Vec<&str> = (0..n).map(|_| *rng.pick(&SEG_VOCAB)).collect();
    let mut text = format!("/{}", segs.join("/"));
    if prefix && n > 0 {
        text.push('/');
    }
    if !prefix && rng.chance(35) {
        text.push('#');
        let symbol = *rng.pick(&SYMBOLS);
        text.push_str(symbol);
    }
    Spec::of(&text)
}

/// Every file of depth 1..=4 over `FILE_NAMES`.
fn all_files() -> Vec<Vec<&'static str>> {
    let mut files: Vec<Vec<&str>> = Vec::new();
    let mut layer: Vec<Vec<&str>> = vec![Vec::new()];
    for _ in 0..4 {
        layer = layer
            .iter()
            .flat_map(|p| {
                FILE_NAMES.iter().map(move |n| {
                    let mut q = p.clone();
                    q.push(*n);
                    q
                })
            })
            .collect();
        files.extend(layer.iter().cloned());
    }
    files
}

#[test]
fn conflicts_never_miss_a_common_file() {
    // The reference matcher itself, on a few cases.
    assert!(seg_match("a?.ts", "ab.ts") && !seg_match("a?.ts", "a.ts"));
    assert!(seg_match("[ab].ts", "a.ts") && !seg_match("[ab].ts", "x.ts"));
    assert!(seg_match("*", "") && seg_match("a*", "auth") && !seg_match("*.ts", "b.rs"));
    let s = |t: &str| Spec::of(t);
    assert!(path_covers(&s("/src/**/*.ts"), &["src", "x.ts"]));
    assert!(path_covers(&s("/src/**/*.ts"), &["src", "a", "b", "x.ts"]));
    assert!(!path_covers(&s("/src/**"), &["src"]));
    assert!(path_covers(&s("/src/"), &["src", "x"]) && !path_covers(&s("/src/"), &["src"]));
    assert!(path_covers(&s("/"), &["x"]));

    let seed = seed_from_env().unwrap_or(0x5EED_C0F1_1C75);
    let mut rng = Rng::new(seed);
    let mut specs: Vec<Spec> = FIXED.iter().map(|t| Spec::of(t)).collect();
    specs.extend((0..260).map(|_| random_spec(&mut rng)));
    let files = all_files();
    let items = files.len() * SYMBOLS.len();
    let words = items.div_ceil(64);

    let mut failures: Vec<String> = Vec::new();
    let mut parsed = Vec::new();
    let mut covered = Vec::new();
    for spec in &specs {
        let r = match Resource::parse(&spec.text) {
            Ok(r) => r,
            Err(e) => panic!("{} does not parse: {e}", spec.text),
        };
        // Display gives back a text that parses to the same resource.
        let again = Resource::parse(&r.to_string());
        if again.as_ref() != Ok(&r) {
            failures.push(format!("{} → {} → {again:?}", spec.text, r));
        }
        let mut bits = vec![0u64; words];
        for (f, file) in files.iter().enumerate() {
            if !path_covers(spec, file) {
                continue;
            }
            if !r.covers_file(&format!("/{}", file.join("/"))) {
                failures.push(format!(
                    "{} covers /{} but covers_file says no",
                    spec.text,
                    file.join("/")
                ));
            }
            for (k, sym) in SYMBOLS.iter().enumerate() {
                if symbol_covers(spec, sym) {
                    let bit = f * SYMBOLS.len() + k;
                    bits[bit / 64] |= 1 << (bit % 64);
                }
            }
        }
        parsed.push(r);
        covered.push(bits);
    }

    let (mut pairs, mut witnessed, mut conservative) = (0usize, 0usize, 0usize);
    for i in 0..specs.len() {
        if !parsed[i].conflicts_with(&parsed[i]) {
            failures.push(format!("{} does not conflict with itself", specs[i].text));
        }
        for j in i + 1..specs.len() {
            pairs += 1;
            let (a, b) = (&parsed[i], &parsed[j]);
            let ab = a.conflicts_with(b);
            if ab != b.conflicts_with(a) {
                failures.push(format!(
                    "asymmetric: {} vs {}: {ab}, the other way {}",
                    specs[i].text, specs[j].text, !ab
                ));
            }
            let witness = (0..words)
                .find(|w| covered[i][*w] & covered[j][*w] != 0)
                .map(|w| {
                    let bit = w * 64 + (covered[i][w] & covered[j][w]).trailing_zeros() as usize;
                    format!(
                        "/{}#{}",
                        files[bit / SYMBOLS.len()].join("/"),
                        SYMBOLS[bit % SYMBOLS.len()]
                    )
                });
            match (witness, ab) {
                (Some(w), false) => failures.push(format!(
                    "{} and {} both cover {w} but do not conflict",
                    specs[i].text, specs[j].text
                )),
                (Some(_), true) => witnessed += 1,
                (None, true) => conservative += 1,
                (None, false) => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "seed {seed:#x} (rerun: LOCK_PROPS_SEED={seed:#x} cargo test --lib lock_props), {} failures \
         over {pairs} pairs; first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "lock_props: {} resources, {pairs} pairs: {witnessed} share a file, {conservative} conflict without one",
        specs.len()
    );
    // The pool must contain both overlapping and disjoint pairs for this to mean anything.
    assert!(
        witnessed > pairs / 20 && pairs - witnessed - conservative > pairs / 20,
        "{pairs} pairs: {witnessed} with a common file, {conservative} conservative"
    );
}
