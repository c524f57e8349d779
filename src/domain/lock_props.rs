//! Property tests of the lock table of a project (the resource conflict rule has its own, in
//! `resource_props`).
//!
//! 1. `lock_table_keeps_its_promises`: one project with two labelled sessions; holders are
//!    drawn from both sessions × four names, so the same name works in both sessions, as two
//!    holders. Random interleavings of acquire (exclusive/shared, with and without `wait`),
//!    renew, release, cancel, force release, expiry (a fake clock moves on and `expired(now)`
//!    is removed) and leave (all locks of one (session, name) removed), applied to a
//!    `LockTable` exactly as the project's `LockTableActor` drives it: `check` then `insert`
//!    under the next number of the project's sequence; each removal takes a number, then every
//!    key `grantable()` returns is granted with the next number as its fencing token. Now and
//!    then a session cannot write a grant: `ungrant` puts that waiter back, and the next grant
//!    round must grant exactly it again, with a newer token. The test's independent model takes
//!    (session, name) as the holder everywhere. After every step: no two conflicting holders
//!    (`consistent()` and an independent pairwise check), tokens strictly increase in grant
//!    order, a grant never overlaps a conflicting lock held by someone else, a waiter is never
//!    granted (nor a newcomer let in) ahead of an earlier conflicting waiter, no waiter is left
//!    idle that nothing blocks, `check`'s answer is exactly the one the rules predict (and a
//!    refusal over the other session's lock names that session by its label), `of`,
//!    `others_covering` and `check_fence` agree with the model (a token licenses writes for its
//!    own holder only: not for the same name in the other session), and the lease bookkeeping
//!    agrees with an independent one. At the end everything held is released, round after
//!    round, and every remaining waiter must be granted: nobody starves.
//! 2. `two_projects_do_not_interfere`: two tables (projects X and Y, two sessions each) driven
//!    with interleaved random ops over the same resources and names, each checked as in 1;
//!    then each project's ops are replayed alone into a fresh table, which must go through
//!    exactly the same states (the whole table, labels included) with the same outcomes.
//!
//! A failure prints the seed and the op transcript; `LOCK_PROPS_SEED=<seed> cargo test --lib
//! lock_props` reruns that one case.

use super::test_rng::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use uuid::Uuid;

use super::DomainError;
use super::lock::{
    Lock, LockKey, LockTable, MAX_LOCKS_PER_PARTICIPANT, Mode, Outcome, Request, Resource, State,
};

const CASES: u64 = 500;
const MAX_OPS: u64 = 60;
/// Cases of the two-project property, each of up to `2 × MAX_OPS` steps.
const PROJECT_CASES: u64 = 200;
const BASE_SEED: u64 = 0x10C4_7AB1_E5EE_D001;
/// How often a grant round is followed by a session failing to write one of its grants.
const UNGRANT_PERCENT: u64 = 20;
const NAMES: [&str; 4] = ["claude", "gemini", "cursor", "codex"];
/// Project X's sessions and labels, and project Y's: the same names work in all of them.
const X: [(Uuid, &str); 2] = [
    (Uuid::from_u128(0xA), "feature"),
    (Uuid::from_u128(0xB), "fix-login"),
];
const Y: [(Uuid, &str); 2] = [
    (Uuid::from_u128(0xC), "refactor"),
    (Uuid::from_u128(0xD), "hotfix"),
];
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
/// Files that writes are fenced on (`check_fence`, `others_covering`).
const FILES: [&str; 5] = [
    "/src/auth/jwt.ts",
    "/src/auth/deep/x.ts",
    "/src/auth.ts",
    "/src/pay.ts",
    "/docs/a.md",
];

pub(super) fn seed_from_env() -> Option<u64> {
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

/// The conflict rule between two locks, restated: shared/shared never conflicts, otherwise the
/// resources decide.
fn clash(a: &Lock, b: &Lock) -> bool {
    clash_with(a, b.mode, &b.resource)
}

fn clash_with(a: &Lock, mode: Mode, resource: &Resource) -> bool {
    !(a.mode == Mode::Shared && mode == Mode::Shared) && a.resource.conflicts_with(resource)
}

/// A holder: a name *in a session*.
type Holder<'a> = (Uuid, &'a str);

fn holder(l: &Lock) -> Holder<'_> {
    (l.session_id, l.holder.as_str())
}

fn asker(r: &Request) -> Holder<'_> {
    (r.session_id, r.holder.as_str())
}

/// Sessions print as `a`, `b`, … (their uuids are 0xA, 0xB, …).
fn tag(session: Uuid) -> String {
    format!("{:x}", session.as_u128())
}

fn show(l: &Lock) -> String {
    format!(
        "{}:{}@{}:{}:{}:{}",
        l.id,
        l.holder,
        tag(l.session_id),
        l.resource,
        l.mode.as_str(),
        match l.state {
            State::Held => "held",
            State::Waiting => "waiting",
        }
    )
}

fn show_keys(keys: &[LockKey]) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|(id, s)| format!("{id}@{}", tag(*s)))
        .collect();
    format!("[{}]", keys.join(", "))
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

/// One project's table, driven the way its `LockTableActor` drives it.
struct Sim {
    table: LockTable,
    /// The project's two sessions, with their labels.
    sessions: [(Uuid, &'static str); 2],
    /// The project's sequence: every lock id, removal and fencing token takes the next number.
    last_seq: i64,
    now: NaiveDateTime,
    /// The newest fencing token handed out.
    last_token: i64,
    /// Independent lease bookkeeping: held lock → when its lease runs out.
    leases: BTreeMap<LockKey, NaiveDateTime>,
    log: Vec<String>,
    /// What happened how often (to show the generator reaches the interesting cases).
    stats: BTreeMap<&'static str, usize>,
}

impl Sim {
    fn new(sessions: [(Uuid, &'static str); 2]) -> Sim {
        let mut table = LockTable::default();
        for (session, name) in sessions {
            table.label(session, name);
        }
        Sim {
            table,
            sessions,
            last_seq: 0,
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

    fn next_seq(&mut self) -> i64 {
        self.last_seq += 1;
        self.last_seq
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

    /// How a refusal names the holder of `l` to someone of session `asking`.
    fn who(&self, l: &Lock, asking: Uuid) -> String {
        if l.session_id == asking {
            return l.holder.clone();
        }
        let label = self
            .sessions
            .iter()
            .find(|(s, _)| *s == l.session_id)
            .map_or("?", |(_, name)| *name);
        format!("{} of session '{label}' ({})", l.holder, l.session_id)
    }

    /// What stands in `req`'s way: held by another holder, or waiting (anyone's, even the
    /// asker's own: nobody jumps the queue).
    fn blocking(&self, req: &Request) -> Vec<&Lock> {
        self.table
            .iter()
            .filter(|l| match l.state {
                State::Held => holder(l) != asker(req),
                State::Waiting => true,
            })
            .filter(|l| clash_with(l, req.mode, &req.resource))
            .collect()
    }

    fn expect(&self, req: &Request) -> Expected {
        let me = asker(req);
        let mine = self.table.iter().filter(|l| holder(l) == me).count();
        if mine >= MAX_LOCKS_PER_PARTICIPANT {
            return Expected::Refused("too_many_locks");
        }
        // The very same lock twice, held or queued, is refused.
        if self
            .table
            .iter()
            .any(|l| holder(l) == me && l.resource == req.resource && l.mode == req.mode)
        {
            return Expected::Refused("already_locked");
        }
        let blocking: Vec<i64> = self.blocking(req).iter().map(|l| l.id).collect();
        if blocking.is_empty() {
            Expected::Granted
        } else if !req.wait {
            Expected::Refused("resource_locked")
        } else {
            Expected::Queued(blocking)
        }
    }

    /// `ReserveLock`: check, then record under the next number (nothing taken if refused).
    fn acquire(&mut self, req: Request) -> Result<(), String> {
        let what = format!(
            "acquire {}@{} {} {} wait={} lease={}s",
            req.holder,
            tag(req.session_id),
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
        // A refusal names the lock in the way (the first held one, else the first waiting),
        // by its holder's name, and by its session's label when that is another session.
        if let Err(DomainError::Conflict {
            code: "resource_locked",
            message,
        }) = &got
        {
            let blocking = self.blocking(&req);
            let named = blocking
                .iter()
                .find(|l| l.state == State::Held)
                .or(blocking.first())
                .ok_or_else(|| format!("{what}: refused, but nothing is in the way"))?;
            let says = format!(
                "{} is locked by {} ({}",
                named.resource,
                self.who(named, req.session_id),
                named.mode.as_str()
            );
            if !message.starts_with(&says) {
                return Err(format!(
                    "{what}: refused with {message:?}, expected it to start with {says:?}"
                ));
            }
            let other = named.session_id != req.session_id;
            let same_name = other && named.holder == req.holder;
            self.count("refused over the other session's lock", usize::from(other));
            self.count(
                "refused over the same name in the other session",
                usize::from(same_name),
            );
        }
        let session = req.session_id;
        match got_as {
            Expected::Refused(code) => {
                self.count(code, 1);
                self.log.push(format!("{what} → refused {code}"));
            }
            Expected::Granted => {
                let id = self.next_seq();
                // Granted at once: the number is the lock id and the token.
                self.token(id)?;
                let lease = req.lease_secs;
                self.table.insert(id, req, true, self.now);
                let until = self.now + TimeDelta::seconds(i64::from(lease));
                self.leases.insert((id, session), until);
                let l = self
                    .table
                    .get((id, session))
                    .ok_or("granted lock missing")?;
                if l.state != State::Held || l.token != Some(id) || l.expires_at != Some(until) {
                    return Err(format!("{what}: inserted as {l:?}"));
                }
                self.count("granted at once", 1);
                self.log.push(format!("{what} → granted {id} (token {id})"));
            }
            Expected::Queued(behind) => {
                if self
                    .table
                    .iter()
                    .any(|l| behind.contains(&l.id) && l.session_id != session)
                {
                    self.count("queued behind the other session", 1);
                }
                let id = self.next_seq();
                self.table.insert(id, req, false, self.now);
                let l = self.table.get((id, session)).ok_or("queued lock missing")?;
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

    fn renew(&mut self, key: LockKey, lease: u32) -> Result<(), String> {
        self.table.renew(key, lease, self.now);
        let until = self.now + TimeDelta::seconds(i64::from(lease));
        self.leases.insert(key, until);
        let l = self.table.get(key).ok_or("renewed lock missing")?;
        if l.expires_at != Some(until) || l.lease_secs != lease || l.state != State::Held {
            return Err(format!("renew {}: now {l:?}", show_keys(&[key])));
        }
        self.log
            .push(format!("renew {} for {lease}s", show_keys(&[key])));
        Ok(())
    }

    /// `PlanRelease` and `Settle`: remove, one number each; then a grant round. With `ungrant`,
    /// the session of one of those grants fails to write it: it is handed back, and the next
    /// round must grant it again.
    fn release_and_grant(
        &mut self,
        what: &str,
        keys: &[LockKey],
        ungrant: Option<u64>,
    ) -> Result<(), String> {
        let mut removed = Vec::new();
        for key in keys {
            let l = self
                .table
                .remove(*key)
                .ok_or_else(|| format!("{what}: lock {} vanished", show_keys(&[*key])))?;
            self.next_seq();
            self.leases.remove(key);
            removed.push(show(&l));
        }
        let grants = self.grant_round(what)?;
        self.count("removed", removed.len());
        self.count("waiters granted", grants.len());
        if grants.len() > 1 {
            self.count("batches of several grants", 1);
        }
        self.log.push(format!(
            "{what}: removed [{}] → granted {}",
            removed.join(", "),
            show_keys(&grants)
        ));
        let Some(n) = ungrant.filter(|_| !grants.is_empty()) else {
            return Ok(());
        };
        let back = grants[(n % grants.len() as u64) as usize];
        self.table.ungrant(back);
        self.leases.remove(&back);
        let l = self.table.get(back).ok_or("handed back lock missing")?;
        if l.state != State::Waiting || l.token.is_some() || l.expires_at.is_some() {
            return Err(format!("{what}: handed back, {} is {l:?}", show(l)));
        }
        if !self.table.consistent() {
            return Err(format!("{what}: consistent() is false after ungrant"));
        }
        // Back where it was, it unblocks nobody: the next round grants it, and only it.
        let again = self.grant_round(what)?;
        if again != [back] {
            return Err(format!(
                "{what}: {} handed back, the next round granted {}",
                show_keys(&[back]),
                show_keys(&again)
            ));
        }
        self.count("ungranted, granted again", 1);
        self.log.push(format!(
            "{what}: grant {} not written, handed back, granted again",
            show_keys(&[back])
        ));
        Ok(())
    }

    /// Grants every key `grantable()` returns, in order, each with the next number as its
    /// fencing token, after checking that none of them may be granted yet.
    fn grant_round(&mut self, what: &str) -> Result<Vec<LockKey>, String> {
        let grants = self.table.grantable();
        if !grants.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(format!(
                "{what}: grantable() not in request order: {}",
                show_keys(&grants)
            ));
        }
        let chosen: BTreeSet<LockKey> = grants.iter().copied().collect();
        for (i, g) in grants.iter().enumerate() {
            let gl = self
                .table
                .get(*g)
                .ok_or_else(|| format!("{what}: grantable {} is no lock", show_keys(&[*g])))?;
            if gl.state != State::Waiting {
                return Err(format!("{what}: grantable {} is not waiting", show(gl)));
            }
            // Never granted while someone else holds a conflicting lock (including ones granted
            // just before it in the same batch). Someone else: another name, or the same name
            // in the other session.
            for h in self
                .table
                .iter()
                .filter(|h| h.state == State::Held || grants[..i].contains(&h.key()))
            {
                if holder(h) != holder(gl) && clash(h, gl) {
                    let how = if h.state == State::Held {
                        "holds"
                    } else {
                        "is granted earlier in the same batch"
                    };
                    return Err(format!(
                        "{what}: waiter {} granted while {}@{} {how}: {}",
                        show(gl),
                        h.holder,
                        tag(h.session_id),
                        show(h)
                    ));
                }
            }
            // First come, first served: no earlier conflicting waiter is passed over.
            for w in self
                .table
                .iter()
                .filter(|w| w.state == State::Waiting && w.id < g.0 && !chosen.contains(&w.key()))
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
            let token = self.next_seq();
            self.token(token)?;
            self.table.grant(*g, token, self.now);
            let l = self.table.get(*g).ok_or("granted lock missing")?;
            let until = self.now + TimeDelta::seconds(i64::from(l.lease_secs));
            if l.state != State::Held || l.token != Some(token) || l.expires_at != Some(until) {
                return Err(format!("{what}: granted {} is now {l:?}", show_keys(&[*g])));
            }
            self.leases.insert(*g, until);
        }
        Ok(grants)
    }

    /// What must hold between any two steps.
    fn invariants(&self) -> Result<(), String> {
        if !self.table.consistent() {
            return Err("consistent() is false".into());
        }
        let held = self.held();
        for (i, a) in held.iter().enumerate() {
            for b in &held[i + 1..] {
                if holder(a) != holder(b) && clash(a, b) {
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
            let blocked = held.iter().any(|h| holder(h) != holder(w) && clash(h, w))
                || waiting.iter().any(|v| v.id < w.id && clash(v, w));
            if !blocked {
                return Err(format!("waiter {} is blocked by nothing", show(w)));
            }
        }
        if !self.table.grantable().is_empty() {
            return Err(format!(
                "grantable() = {} between steps",
                show_keys(&self.table.grantable())
            ));
        }
        // Leases.
        let held_keys: Vec<LockKey> = held.iter().map(|l| l.key()).collect();
        let leased: Vec<LockKey> = self.leases.keys().copied().collect();
        if held_keys != leased {
            return Err(format!(
                "held {} but leases for {}",
                show_keys(&held_keys),
                show_keys(&leased)
            ));
        }
        let due: Vec<LockKey> = self
            .leases
            .iter()
            .filter(|(_, until)| **until <= self.now)
            .map(|(key, _)| *key)
            .collect();
        if self.table.expired(self.now) != due {
            return Err(format!(
                "expired(now) = {}, leases say {}",
                show_keys(&self.table.expired(self.now)),
                show_keys(&due)
            ));
        }
        if self.table.next_expiry() != self.leases.values().min().copied() {
            return Err(format!(
                "next_expiry() = {:?}, leases say {:?}",
                self.table.next_expiry(),
                self.leases.values().min()
            ));
        }
        self.identities(&held)
    }

    /// `of`, `others_covering` and `check_fence` take (session, name) as the holder.
    fn identities(&self, held: &[&Lock]) -> Result<(), String> {
        for (session, _) in self.sessions {
            for name in NAMES {
                let of = self.table.of(session, name);
                let mine: Vec<LockKey> = self
                    .table
                    .iter()
                    .filter(|l| holder(l) == (session, name))
                    .map(|l| l.key())
                    .collect();
                if of != mine {
                    return Err(format!(
                        "of({name}@{}) = {}, the table has {}",
                        tag(session),
                        show_keys(&of),
                        show_keys(&mine)
                    ));
                }
            }
        }
        // One file per check, in turn (`covers_file` is slow, unoptimised): who else holds it
        // exclusively, asked by the names that hold it (in either session) and by one name that
        // does not.
        let file = FILES[self.last_seq as usize % FILES.len()];
        let covering: Vec<&Lock> = held
            .iter()
            .filter(|l| l.resource.covers_file(file))
            .copied()
            .collect();
        let here: Vec<&Lock> = covering
            .iter()
            .filter(|l| l.mode == Mode::Exclusive)
            .copied()
            .collect();
        let outsider = NAMES.iter().find(|n| here.iter().all(|l| l.holder != **n));
        let names = NAMES
            .iter()
            .filter(|n| here.iter().any(|l| l.holder == **n) || Some(*n) == outsider);
        for (session, name) in names.flat_map(|n| self.sessions.map(|(s, _)| (s, *n))) {
            let got: Vec<(String, i64)> = self
                .table
                .others_covering(session, name, file)
                .into_iter()
                .map(|(who, l)| (who, l.id))
                .collect();
            let want: Vec<(String, i64)> = here
                .iter()
                .filter(|l| holder(l) != (session, name))
                .map(|l| (self.who(l, session), l.id))
                .collect();
            if got != want {
                return Err(format!(
                    "others_covering({name}@{}, {file}) = {got:?}, expected {want:?}",
                    tag(session)
                ));
            }
        }
        // A held lock's token licenses writes to the files it covers while its lease runs, if
        // it is exclusive, for its holder: not for the same name in the other session, nor for
        // another name in its own.
        for l in covering {
            let token = l.token.unwrap_or_default();
            let live = self
                .leases
                .get(&l.key())
                .is_some_and(|until| *until > self.now);
            let other_session = self
                .sessions
                .iter()
                .map(|(s, _)| *s)
                .find(|s| *s != l.session_id)
                .unwrap_or_default();
            let other_name = NAMES
                .iter()
                .find(|n| **n != l.holder)
                .copied()
                .unwrap_or("?");
            for (who, may) in [
                (holder(l), live && l.mode == Mode::Exclusive),
                ((other_session, l.holder.as_str()), false),
                ((l.session_id, other_name), false),
            ] {
                let ok = self
                    .table
                    .check_fence(who.0, who.1, file, token, self.now)
                    .is_ok();
                if ok != may {
                    return Err(format!(
                        "check_fence({}@{}, {file}, token {token}) of {} (lease live: {live}) is \
                         {ok}",
                        who.1,
                        tag(who.0),
                        show(l)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One step as data: generated from the state, then applied (and replayable elsewhere).
#[derive(Debug, Clone)]
enum Op {
    Acquire(Request),
    Renew(LockKey, u32),
    /// Release a held lock, cancel a waiter, force-release anything.
    Remove {
        what: String,
        keys: Vec<LockKey>,
        ungrant: Option<u64>,
    },
    /// The lease timer fires `after` seconds later.
    Expire {
        after: i64,
        ungrant: Option<u64>,
    },
    Leave {
        session: Uuid,
        name: &'static str,
        ungrant: Option<u64>,
    },
    /// Nothing to act on.
    Idle(String),
}

#[derive(Debug, Clone)]
struct Step {
    /// Seconds that pass before it (expired leases go only when the lease timer fires).
    tick: i64,
    op: Op,
}

fn request(session: Uuid, resource: &str, name: &str, mode: Mode, wait: bool) -> Request {
    Request {
        session_id: session,
        resource: Resource::parse(resource).expect("resource parses"),
        holder: name.into(),
        mode,
        operation: None,
        lease_secs: 30,
        wait,
        task_id: None,
    }
}

fn random_request(rng: &mut Rng, sessions: &[(Uuid, &str); 2]) -> Request {
    let resource = *rng.pick(&RESOURCES);
    let session = rng.pick(sessions).0;
    let name = *rng.pick(&NAMES);
    let mode = if rng.chance(35) {
        Mode::Shared
    } else {
        Mode::Exclusive
    };
    Request {
        lease_secs: 1 + rng.below(30) as u32,
        ..request(session, resource, name, mode, rng.chance(60))
    }
}

fn maybe_ungrant(rng: &mut Rng) -> Option<u64> {
    rng.chance(UNGRANT_PERCENT).then(|| rng.next())
}

fn next_step(rng: &mut Rng, sim: &Sim) -> Step {
    let tick = rng.below(3) as i64;
    let pick = |rng: &mut Rng, locks: Vec<&Lock>| -> Option<LockKey> {
        (!locks.is_empty()).then(|| rng.pick(&locks).key())
    };
    let remove = |rng: &mut Rng, verb: &str, key: Option<LockKey>, none: &str| match key {
        None => Op::Idle(format!("{verb}: {none}")),
        Some(key) => Op::Remove {
            what: format!("{verb} {}", show_keys(&[key])),
            keys: vec![key],
            ungrant: maybe_ungrant(rng),
        },
    };
    let op = match rng.below(100) {
        0..=44 => Op::Acquire(random_request(rng, &sim.sessions)),
        45..=54 => match pick(rng, sim.held()) {
            None => Op::Idle("renew: nothing held".into()),
            Some(key) => Op::Renew(key, 1 + rng.below(30) as u32),
        },
        55..=69 => {
            let key = pick(rng, sim.held());
            remove(rng, "release", key, "nothing held")
        }
        70..=79 => {
            let key = pick(rng, sim.waiting());
            remove(rng, "cancel", key, "nothing waiting")
        }
        80..=87 => Op::Expire {
            after: rng.below(25) as i64,
            ungrant: maybe_ungrant(rng),
        },
        88..=93 => {
            let (session, name) = (rng.pick(&sim.sessions).0, *rng.pick(&NAMES));
            let ungrant = maybe_ungrant(rng);
            Op::Leave {
                session,
                name,
                ungrant,
            }
        }
        _ => {
            let key = pick(rng, sim.table.iter().collect());
            remove(rng, "force", key, "no locks")
        }
    };
    Step { tick, op }
}

fn apply(sim: &mut Sim, step: &Step) -> Result<(), String> {
    sim.now += TimeDelta::seconds(step.tick);
    match &step.op {
        Op::Acquire(req) => sim.acquire(req.clone()),
        Op::Renew(key, lease) => sim.renew(*key, *lease),
        Op::Remove {
            what,
            keys,
            ungrant,
        } => sim.release_and_grant(what, keys, *ungrant),
        Op::Expire { after, ungrant } => {
            sim.now += TimeDelta::seconds(*after);
            let expired = sim.table.expired(sim.now);
            // The lease timer does nothing when nothing has run out.
            if expired.is_empty() {
                sim.log
                    .push(format!("lease check at {}: nothing", sim.now.time()));
                Ok(())
            } else {
                let what = format!("expire at {}", sim.now.time());
                sim.release_and_grant(&what, &expired, *ungrant)
            }
        }
        Op::Leave {
            session,
            name,
            ungrant,
        } => {
            let all = sim.table.of(*session, name);
            let what = format!("leave {name}@{}", tag(*session));
            if all.is_empty() {
                sim.log.push(format!("{what}: held nothing"));
                Ok(())
            } else {
                sim.release_and_grant(&what, &all, *ungrant)
            }
        }
        Op::Idle(what) => {
            sim.log.push(what.clone());
            Ok(())
        }
    }
}

/// Nobody starves: release whatever is held, again and again; every round must grant at least
/// one waiter, until none is left.
fn drain(sim: &mut Sim) -> Result<(), String> {
    sim.log
        .push(format!("-- drain: {}", show_table(&sim.table)));
    let mut round = 0;
    loop {
        let waiting = sim.waiting().len();
        let held: Vec<LockKey> = sim.held().iter().map(|l| l.key()).collect();
        if waiting == 0 {
            if !held.is_empty() {
                sim.release_and_grant("final release", &held, None)?;
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
        sim.release_and_grant(&format!("drain round {round}"), &held, None)?;
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

fn run_case(seed: u64, sim: &mut Sim) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let ops = 1 + rng.below(MAX_OPS);
    for step in 0..ops {
        sim.log
            .push(format!("-- step {step} at {}", sim.now.time()));
        let next = next_step(&mut rng, sim);
        apply(sim, &next)?;
        sim.invariants()
            .map_err(|e| format!("after step {step}: {e}"))?;
    }
    drain(sim)
}

/// Runs `f`, turning a panic inside the table into an error.
fn guarded(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => Err(format!(
            "panicked: {}",
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        )),
    }
}

fn rerun(seed: u64) -> String {
    format!("seed {seed:#x} (rerun: LOCK_PROPS_SEED={seed:#x} cargo test --lib lock_props)")
}

/// Runs one case; a failure (or a panic inside the table) reports the seed and transcript.
fn case_report(seed: u64) -> Result<Sim, String> {
    let mut sim = Sim::new(X);
    match guarded(|| run_case(seed, &mut sim)) {
        Ok(()) => Ok(sim),
        Err(error) => Err(format!(
            "lock table property failed for {}\n{}\ntable: {}\nFAILED: {error}",
            rerun(seed),
            sim.log.join("\n"),
            show_table(&sim.table)
        )),
    }
}

fn add_stats(into: &mut BTreeMap<&'static str, usize>, from: &BTreeMap<&'static str, usize>) {
    for (k, n) in from {
        *into.entry(k).or_default() += n;
    }
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
            Ok(sim) => add_stats(&mut stats, &sim.stats),
            Err(report) => panic!("{report}"),
        }
    }
    eprintln!("lock_props: {CASES} cases: {stats:?}");
    // The generator must exercise contention, not just uncontended grants, and across the two
    // sessions too.
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
    assert!(
        n("refused over the other session's lock") > 100
            && n("refused over the same name in the other session") > 20
            && n("queued behind the other session") > 200
            && n("ungranted, granted again") > 50,
        "too little between the sessions: {stats:?}"
    );
}

/// One table per project, its ops with what each did and the table after it.
type Run = Vec<(Step, Vec<String>, LockTable)>;

/// Drives projects X and Y with interleaved ops, then replays each one's ops alone.
fn run_projects(seed: u64, sims: &mut [Sim; 2], runs: &mut [Run; 2]) -> Result<(), String> {
    let names = ["X", "Y"];
    let mut rng = Rng::new(seed);
    let steps = 1 + rng.below(2 * MAX_OPS);
    for n in 0..steps {
        let p = rng.below(2) as usize;
        let sim = &mut sims[p];
        sim.log.push(format!("-- step {n} at {}", sim.now.time()));
        let step = next_step(&mut rng, sim);
        let before = sim.log.len();
        apply(sim, &step)
            .and_then(|()| sim.invariants())
            .map_err(|e| format!("project {}, step {n}: {e}", names[p]))?;
        runs[p].push((step, sim.log[before..].to_vec(), sim.table.clone()));
    }
    // Each project alone, from scratch: the very same states and outcomes.
    for (p, run) in runs.iter().enumerate() {
        let mut alone = Sim::new(sims[p].sessions);
        for (i, (step, did, after)) in run.iter().enumerate() {
            let before = alone.log.len();
            apply(&mut alone, step)
                .map_err(|e| format!("project {} alone, its op {i}: {e}", names[p]))?;
            if alone.log[before..] != did[..] || alone.table != *after {
                return Err(format!(
                    "project {} alone, its op {i} ({step:?}):\n  did {:?}\n  now {:?}\n  table \
                     then {}\n  table now  {}",
                    names[p],
                    did,
                    &alone.log[before..],
                    show_table(after),
                    show_table(&alone.table)
                ));
            }
        }
        if (alone.last_seq, alone.last_token, alone.now, &alone.leases)
            != (
                sims[p].last_seq,
                sims[p].last_token,
                sims[p].now,
                &sims[p].leases,
            )
        {
            return Err(format!("project {} alone ends elsewhere", names[p]));
        }
        sims[p].count("ops replayed alone", run.len());
    }
    for (p, sim) in sims.iter_mut().enumerate() {
        drain(sim).map_err(|e| format!("project {}: {e}", names[p]))?;
    }
    Ok(())
}

/// Runs one two-project case; a failure reports the seed and both transcripts.
fn projects_report(seed: u64) -> Result<[Sim; 2], String> {
    let mut sims = [Sim::new(X), Sim::new(Y)];
    let mut runs: [Run; 2] = Default::default();
    match guarded(|| run_projects(seed, &mut sims, &mut runs)) {
        Ok(()) => Ok(sims),
        Err(error) => Err(format!(
            "two-project property failed for {}\n== X\n{}\n== Y\n{}\nFAILED: {error}",
            rerun(seed),
            sims[0].log.join("\n"),
            sims[1].log.join("\n")
        )),
    }
}

#[test]
fn two_projects_do_not_interfere() {
    if let Some(seed) = seed_from_env() {
        if let Err(report) = projects_report(seed) {
            panic!("{report}");
        }
        return;
    }
    let mut seeds = Rng::new(BASE_SEED ^ 0x29A0_1EC7);
    let mut stats: BTreeMap<&'static str, usize> = BTreeMap::new();
    for _ in 0..PROJECT_CASES {
        match projects_report(seeds.next()) {
            Ok(sims) => sims
                .iter()
                .for_each(|sim| add_stats(&mut stats, &sim.stats)),
            Err(report) => panic!("{report}"),
        }
    }
    eprintln!("lock_props: {PROJECT_CASES} two-project cases: {stats:?}");
    let n = |k: &str| stats.get(k).copied().unwrap_or(0);
    assert!(
        n("ops replayed alone") > 5000 && n("queued") > 300 && n("waiters granted") > 300,
        "too little happened: {stats:?}"
    );
}

/// Pinned: the queue holds a newcomer back even when only its own earlier request waits, and
/// a waiter behind its own held lock is granted as soon as others are out of the way.
#[test]
fn own_locks_do_not_block_but_own_waiters_queue() {
    let a = X[0].0;
    let req = |res: &str, who: &str, mode: Mode| request(a, res, who, mode, true);
    let mut sim = Sim::new(X);
    sim.acquire(req("/src/auth/", "gemini", Mode::Exclusive))
        .unwrap();
    sim.acquire(req("/src/auth/jwt.ts", "claude", Mode::Exclusive))
        .unwrap();
    sim.acquire(req("/src/auth/*", "claude", Mode::Shared))
        .unwrap();
    sim.invariants().unwrap();
    assert_eq!(sim.waiting().len(), 2);
    sim.release_and_grant("release 1", &[(1, a)], None).unwrap();
    sim.invariants().unwrap();
    // Both of claude's requests: its own held jwt.ts lock does not block its shared glob.
    assert_eq!(sim.held().len(), 2, "{}", sim.log.join("\n"));
    assert_eq!(sim.last_token, 6, "release was number 4, grants 5 and 6");
}

/// Pinned: the same name in the other session queues like anyone else; a grant its session
/// could not write is handed back and granted again with a newer token, and nobody passes it.
#[test]
fn other_sessions_queue_and_handed_back_grants_come_back() {
    let [(a, _), (b, _)] = X;
    let mut sim = Sim::new(X);
    sim.acquire(request(a, "/src/auth/", "claude", Mode::Exclusive, false))
        .unwrap();
    sim.acquire(request(
        b,
        "/src/auth/jwt.ts",
        "claude",
        Mode::Exclusive,
        false,
    ))
    .unwrap();
    assert_eq!(
        sim.stats["refused over the same name in the other session"],
        1
    );
    sim.acquire(request(
        b,
        "/src/auth/jwt.ts",
        "claude",
        Mode::Exclusive,
        true,
    ))
    .unwrap();
    sim.acquire(request(a, "/src/auth/*", "cursor", Mode::Shared, true))
        .unwrap();
    sim.invariants().unwrap();
    assert_eq!(sim.waiting().len(), 2, "{}", sim.log.join("\n"));
    sim.release_and_grant("release 1", &[(1, a)], Some(0))
        .unwrap();
    sim.invariants().unwrap();
    let l = sim.table.get((2, b)).unwrap();
    assert_eq!(
        (l.state, l.token),
        (State::Held, Some(6)),
        "release 4, grant 5, handed back, granted again as 6"
    );
    assert_eq!(sim.table.get((3, a)).unwrap().state, State::Waiting);
    assert_eq!(sim.stats["ungranted, granted again"], 1);
}
