//! Locks as leases with fencing tokens (concept §6 "Lock Management").
//!
//! A resource is a file path (`/src/auth.ts`), a directory prefix (`/src/auth/`), or a glob
//! (`/src/auth/*`, `/src/**/*.ts`), optionally narrowed to a symbol (`/src/auth.ts#AuthService.login`).
//! Two resources conflict when some file could match both (decided conservatively: when in doubt
//! they conflict) and, if both name symbols, one symbol contains the other.
//!
//! Exclusive locks conflict with every overlapping lock, shared ones only with exclusive ones.
//! A grant's fencing token is the id of the event that announced it: strictly increasing per
//! session. Requests that wait are granted first come, first served: a waiter is granted once
//! nothing it conflicts with is held, and no earlier waiter it conflicts with is still waiting.

use std::collections::BTreeMap;

use chrono::{NaiveDateTime, TimeDelta};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DomainError;

pub const RESOURCE_LOCKED: &str = "resource_locked";
pub const RESOURCE_RELEASED: &str = "resource_released";
pub const LOCK_QUEUED: &str = "lock_queued";
/// Longest lease, and the default when no duration is given.
pub const MAX_LEASE_SECS: u32 = 4 * 3600;
pub const DEFAULT_LEASE_SECS: u32 = 300;
const MAX_RESOURCE_CHARS: usize = 1024;
/// Deepest path a resource may name.
const MAX_SEGMENTS: usize = 128;
/// Most locks (held and waiting) one participant may have at once.
pub const MAX_LOCKS_PER_PARTICIPANT: usize = 64;

/// A parsed resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    segments: Vec<String>,
    /// Ends with `/`: everything below.
    prefix: bool,
    symbol: Option<String>,
}

impl Resource {
    pub fn parse(text: &str) -> Result<Resource, DomainError> {
        let bad = |why: &str| {
            DomainError::invalid(
                "resource",
                format!(
                    "{why}: a path like /src/auth.ts, a directory /src/auth/, a glob /src/auth/*, optionally #Symbol"
                ),
            )
        };
        let text = text.trim();
        if text.is_empty() || text.chars().count() > MAX_RESOURCE_CHARS || text.contains('\0') {
            return Err(bad("empty or too long"));
        }
        let (path, symbol) = match text.split_once('#') {
            Some((p, s)) if !s.trim().is_empty() && !s.contains('#') => {
                (p, Some(s.trim().to_owned()))
            }
            Some(_) => return Err(bad("an empty or repeated #symbol")),
            None => (text, None),
        };
        let prefix = path.ends_with('/');
        if prefix && symbol.is_some() {
            return Err(bad(
                "a symbol names something in one file, not in a directory",
            ));
        }
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .map(str::to_owned)
            .collect();
        if segments.len() > MAX_SEGMENTS {
            return Err(bad("too deep"));
        }
        if segments.iter().any(|s| s == "..") {
            return Err(bad("`..` is not allowed"));
        }
        if segments.is_empty() && !prefix {
            return Err(bad("no path"));
        }
        Ok(Resource {
            segments,
            prefix,
            symbol,
        })
    }

    /// Could some file be covered by both? (Conservative: wildcards against wildcards overlap.)
    fn paths_overlap(&self, other: &Resource) -> bool {
        overlap(&self.segments, self.prefix, &other.segments, other.prefix)
    }

    pub fn conflicts_with(&self, other: &Resource) -> bool {
        if !self.paths_overlap(other) {
            return false;
        }
        match (&self.symbol, &other.symbol) {
            (Some(a), Some(b)) => symbol_contains(a, b) || symbol_contains(b, a),
            _ => true,
        }
    }

    /// Does this resource cover the file `path` (for fencing checks on changes to it)?
    pub fn covers_file(&self, path: &str) -> bool {
        let file = Resource {
            segments: path
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .map(str::to_owned)
                .collect(),
            prefix: false,
            symbol: None,
        };
        self.paths_overlap(&file)
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}", self.segments.join("/"))?;
        if self.prefix && !self.segments.is_empty() {
            f.write_str("/")?;
        }
        if let Some(s) = &self.symbol {
            write!(f, "#{s}")?;
        }
        Ok(())
    }
}

fn symbol_contains(outer: &str, inner: &str) -> bool {
    inner == outer || inner.starts_with(&format!("{outer}."))
}

/// Segment lists `a` and `b` (either may end in "everything below", or contain `**`) can match
/// a common path. Memoised over positions: O(len(a) × len(b)), whatever the wildcards (a naive
/// search is exponential in the number of `**`, and this runs on the session actor).
fn overlap(a: &[String], a_prefix: bool, b: &[String], b_prefix: bool) -> bool {
    struct Walk<'a> {
        a: &'a [String],
        b: &'a [String],
        a_prefix: bool,
        b_prefix: bool,
        memo: Vec<Option<bool>>,
    }
    impl Walk<'_> {
        fn go(&mut self, i: usize, j: usize) -> bool {
            let (n, m) = (self.a.len(), self.b.len());
            let slot = i * (m + 1) + j;
            if let Some(v) = self.memo[slot] {
                return v;
            }
            let all_stars = |s: &[String]| s.iter().all(|x| x == "**");
            let v = match (i < n, j < m) {
                (false, false) => true,
                (false, true) => self.a_prefix || all_stars(&self.b[j..]),
                (true, false) => self.b_prefix || all_stars(&self.a[i..]),
                (true, true) if self.a[i] == "**" => self.go(i + 1, j) || self.go(i, j + 1),
                (true, true) if self.b[j] == "**" => self.go(i, j + 1) || self.go(i + 1, j),
                (true, true) => segment_overlap(&self.a[i], &self.b[j]) && self.go(i + 1, j + 1),
            };
            self.memo[slot] = Some(v);
            v
        }
    }
    let mut walk = Walk {
        a,
        b,
        a_prefix,
        b_prefix,
        memo: vec![None; (a.len() + 1) * (b.len() + 1)],
    };
    walk.go(0, 0)
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn segment_overlap(x: &str, y: &str) -> bool {
    match (is_glob(x), is_glob(y)) {
        (false, false) => x == y,
        (true, false) => glob_match(x, y),
        (false, true) => glob_match(y, x),
        (true, true) => true, // conservative
    }
}

/// `*` any run, `?` one character, `[…]` taken as a wildcard character (conservative).
/// Dynamic programming over (pattern, text) positions: O(len × len), never exponential.
fn glob_match(pattern: &str, text: &str) -> bool {
    enum Tok {
        Star,
        One,
        Lit(char),
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '*' => Tok::Star,
            '?' => Tok::One,
            '[' => {
                // A class matches one character; which ones does not matter here.
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                }
                Tok::One
            }
            c => Tok::Lit(c),
        });
    }
    let t: Vec<char> = text.chars().collect();
    // `next[j]`: tokens after the current one match t[j..].
    let mut next = vec![false; t.len() + 1];
    next[t.len()] = true;
    for tok in toks.iter().rev() {
        let mut cur = vec![false; t.len() + 1];
        for j in (0..=t.len()).rev() {
            cur[j] = match tok {
                Tok::Star => next[j] || (j < t.len() && cur[j + 1]),
                Tok::One => j < t.len() && next[j + 1],
                Tok::Lit(c) => j < t.len() && t[j] == *c && next[j + 1],
            };
        }
        next = cur;
    }
    next[0]
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Exclusive,
    Shared,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        }
    }
}

/// A lease in seconds (default 5 minutes), in any form `duration` reads.
pub fn parse_lease(v: Option<&Value>) -> Result<u32, DomainError> {
    match v {
        None => Ok(DEFAULT_LEASE_SECS),
        Some(v) => super::duration::parse(v, "duration", MAX_LEASE_SECS),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Waiting,
    Held,
}

/// One lock request, waiting or held. Its id is the id of the event that recorded the request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lock {
    pub id: i64,
    #[serde(serialize_with = "as_text")]
    pub resource: Resource,
    pub holder: String,
    pub mode: Mode,
    pub operation: Option<String>,
    pub state: State,
    pub lease_secs: u32,
    /// Held: the fencing token (the id of the event that granted it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<i64>,
    /// Taken for this task: released when the task completes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(with = "crate::domain::utc::option", default)]
    pub expires_at: Option<NaiveDateTime>,
}

fn as_text<S: serde::Serializer>(r: &Resource, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(r)
}

impl Lock {
    fn conflicts_with(&self, other: &Lock) -> bool {
        !(self.mode == Mode::Shared && other.mode == Mode::Shared)
            && self.resource.conflicts_with(&other.resource)
    }
}

/// Why a lock stopped being held (or waiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Release {
    Released,
    Expired,
    Left,
    Forced,
    Cancelled,
    /// The task it was taken for completed.
    TaskDone,
    /// Its holder was gone longer than the disconnect grace period.
    Disconnected,
}

/// A request as asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub resource: Resource,
    pub holder: String,
    pub mode: Mode,
    pub operation: Option<String>,
    pub lease_secs: u32,
    pub wait: bool,
    pub task_id: Option<i64>,
}

/// What a request leads to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Granted at once (the table fills in the token from the event id).
    Granted,
    /// Queued behind these locks.
    Queued { behind: Vec<i64> },
}

/// Every lock of one session that is held or waiting, in request order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LockTable {
    locks: BTreeMap<i64, Lock>,
}

impl LockTable {
    pub fn from_locks(locks: impl IntoIterator<Item = Lock>) -> LockTable {
        LockTable {
            locks: locks.into_iter().map(|l| (l.id, l)).collect(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Lock> {
        self.locks.values()
    }

    pub fn get(&self, id: i64) -> Option<&Lock> {
        self.locks.get(&id)
    }

    fn held(&self) -> impl Iterator<Item = &Lock> {
        self.locks.values().filter(|l| l.state == State::Held)
    }

    /// Would `request` be granted now, or queued (behind what), or refused (conflict, no wait)?
    pub fn check(&self, request: &Request) -> Result<Outcome, DomainError> {
        let mine = self
            .locks
            .values()
            .filter(|l| l.holder == request.holder)
            .count();
        if mine >= MAX_LOCKS_PER_PARTICIPANT {
            return Err(DomainError::conflict(
                "too_many_locks",
                format!(
                    "{} holds or awaits {mine} locks already; release some",
                    request.holder
                ),
            ));
        }
        let probe = Lock {
            id: i64::MAX,
            resource: request.resource.clone(),
            holder: request.holder.clone(),
            mode: request.mode,
            operation: request.operation.clone(),
            state: State::Waiting,
            lease_secs: request.lease_secs,
            token: None,
            task_id: request.task_id,
            expires_at: None,
        };
        // Waiters count too: nobody jumps the queue.
        let blocking: Vec<&Lock> = self
            .locks
            .values()
            .filter(|l| l.holder != request.holder || l.state == State::Waiting)
            .filter(|l| l.conflicts_with(&probe))
            .collect();
        // Own locks never block each other (holding a symbol, then its class, is fine); the very
        // same lock twice (held or queued) is a mistake worth saying.
        if let Some(own) = self.locks.values().find(|l| {
            l.holder == request.holder && l.resource == request.resource && l.mode == request.mode
        }) {
            return Err(DomainError::conflict(
                "already_locked",
                format!(
                    "{} already {} {} (lock {}); {}",
                    request.holder,
                    if own.state == State::Held {
                        "holds"
                    } else {
                        "awaits"
                    },
                    own.resource,
                    own.id,
                    if own.state == State::Held {
                        "renew it instead"
                    } else {
                        "it is queued"
                    }
                ),
            ));
        }
        if blocking.is_empty() {
            return Ok(Outcome::Granted);
        }
        if !request.wait {
            let held = blocking
                .iter()
                .find(|l| l.state == State::Held)
                .unwrap_or(&blocking[0]);
            return Err(DomainError::conflict(
                "resource_locked",
                format!(
                    "{} is locked by {} ({}{}){}; pass wait: true to queue",
                    held.resource,
                    held.holder,
                    held.mode.as_str(),
                    held.operation
                        .as_deref()
                        .map(|o| format!(", {o}"))
                        .unwrap_or_default(),
                    held.expires_at
                        .map(|t| {
                            let at = t
                                .and_utc()
                                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                            format!(" until {at}")
                        })
                        .unwrap_or_default(),
                ),
            ));
        }
        Ok(Outcome::Queued {
            behind: blocking.iter().map(|l| l.id).collect(),
        })
    }

    /// Adds a checked request under `id`; granted ones get `token` and their lease from `at`.
    pub fn insert(&mut self, id: i64, request: Request, granted: bool, at: NaiveDateTime) {
        let lease = request.lease_secs;
        self.locks.insert(
            id,
            Lock {
                id,
                resource: request.resource,
                holder: request.holder,
                mode: request.mode,
                operation: request.operation,
                state: if granted { State::Held } else { State::Waiting },
                lease_secs: lease,
                task_id: request.task_id,
                token: granted.then_some(id),
                expires_at: granted.then(|| at + TimeDelta::seconds(i64::from(lease))),
            },
        );
    }

    /// Removes lock `id` (released, expired, cancelled…).
    pub fn remove(&mut self, id: i64) -> Option<Lock> {
        self.locks.remove(&id)
    }

    /// Waiters that can be granted now, in request order (first come, first served).
    pub fn grantable(&self) -> Vec<i64> {
        let mut granted: Vec<&Lock> = Vec::new();
        let mut still_waiting: Vec<&Lock> = Vec::new();
        for l in self.locks.values().filter(|l| l.state == State::Waiting) {
            let blocked = self
                .held()
                .any(|h| h.holder != l.holder && h.conflicts_with(l))
                || granted
                    .iter()
                    .any(|g| g.holder != l.holder && g.conflicts_with(l))
                || still_waiting.iter().any(|w| w.conflicts_with(l));
            if blocked {
                still_waiting.push(l);
            } else {
                granted.push(l);
            }
        }
        granted.iter().map(|l| l.id).collect()
    }

    /// Marks waiter `id` held with fencing `token` from `at`.
    pub fn grant(&mut self, id: i64, token: i64, at: NaiveDateTime) {
        if let Some(l) = self.locks.get_mut(&id) {
            l.state = State::Held;
            l.token = Some(token);
            l.expires_at = Some(at + TimeDelta::seconds(i64::from(l.lease_secs)));
        }
    }

    /// Extends a held lease from `at`.
    pub fn renew(&mut self, id: i64, lease_secs: u32, at: NaiveDateTime) {
        if let Some(l) = self.locks.get_mut(&id) {
            l.lease_secs = lease_secs;
            l.expires_at = Some(at + TimeDelta::seconds(i64::from(lease_secs)));
        }
    }

    /// Held locks whose lease has run out at `now`.
    pub fn expired(&self, now: NaiveDateTime) -> Vec<i64> {
        self.held()
            .filter(|l| l.expires_at.is_some_and(|e| e <= now))
            .map(|l| l.id)
            .collect()
    }

    /// When the next lease runs out.
    pub fn next_expiry(&self) -> Option<NaiveDateTime> {
        self.held().filter_map(|l| l.expires_at).min()
    }

    /// Locks taken for `task`.
    pub fn of_task(&self, task: i64) -> Vec<i64> {
        self.locks
            .values()
            .filter(|l| l.task_id == Some(task))
            .map(|l| l.id)
            .collect()
    }

    /// Everything `holder` holds or awaits.
    pub fn of(&self, holder: &str) -> Vec<i64> {
        self.locks
            .values()
            .filter(|l| l.holder == holder)
            .map(|l| l.id)
            .collect()
    }

    /// A write citing `token` for `file` must present the token of an exclusive lock its author
    /// holds on that file now (fencing: a lease that expired, or was released and granted to
    /// someone again, is stale; a shared lock does not license a write).
    pub fn check_fence(
        &self,
        holder: &str,
        file: &str,
        token: i64,
        now: NaiveDateTime,
    ) -> Result<(), DomainError> {
        let valid: Vec<i64> = self
            .held()
            .filter(|l| {
                l.holder == holder && l.mode == Mode::Exclusive && l.resource.covers_file(file)
            })
            .filter(|l| l.expires_at.is_none_or(|e| e > now))
            .filter_map(|l| l.token)
            .collect();
        if valid.contains(&token) {
            return Ok(());
        }
        if valid.is_empty() {
            return Err(DomainError::conflict(
                "stale_fencing_token",
                format!(
                    "{holder} holds no exclusive lock covering {file} now (expired or released); acquire it again"
                ),
            ));
        }
        let current: Vec<String> = valid.iter().map(i64::to_string).collect();
        Err(DomainError::conflict(
            "stale_fencing_token",
            format!(
                "token {token} is not a current exclusive lock on {file} (current: {})",
                current.join(", ")
            ),
        ))
    }

    /// Held locks by others that cover `file`.
    pub fn others_covering(&self, holder: &str, file: &str) -> Vec<&Lock> {
        self.held()
            .filter(|l| {
                l.holder != holder && l.mode == Mode::Exclusive && l.resource.covers_file(file)
            })
            .collect()
    }

    /// Invariant (for tests): no two held locks conflict unless one holder holds both.
    pub fn consistent(&self) -> bool {
        let held: Vec<&Lock> = self.held().collect();
        held.iter().enumerate().all(|(i, a)| {
            held[i + 1..]
                .iter()
                .all(|b| a.holder == b.holder || !a.conflicts_with(b))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Resource {
        Resource::parse(s).unwrap()
    }

    #[test]
    fn containment_and_globs() {
        assert!(r("/src/auth/").conflicts_with(&r("/src/auth/jwt.ts")));
        assert!(r("/src/auth/*").conflicts_with(&r("/src/auth/jwt.ts")));
        assert!(!r("/src/auth/*").conflicts_with(&r("/src/auth/deep/jwt.ts")));
        assert!(r("/src/**/*.ts").conflicts_with(&r("/src/auth/deep/jwt.ts")));
        assert!(!r("/src/**/*.ts").conflicts_with(&r("/src/auth/deep/jwt.rs")));
        assert!(!r("/src/auth.ts").conflicts_with(&r("/src/auth.tsx")));
        assert!(!r("/src/auth/").conflicts_with(&r("/src/authz/x.ts")));
        assert!(r("/").conflicts_with(&r("/anything/at/all")));
        // Symbols narrow a file lock.
        assert!(
            !r("/src/auth.ts#AuthService.login")
                .conflicts_with(&r("/src/auth.ts#AuthService.logout"))
        );
        assert!(r("/src/auth.ts#AuthService").conflicts_with(&r("/src/auth.ts#AuthService.login")));
        assert!(r("/src/auth.ts").conflicts_with(&r("/src/auth.ts#AuthService.login")));
        assert_eq!(r("src//auth/./x.ts").to_string(), "/src/auth/x.ts");
        // Patterns that make a naive matcher exponential answer at once.
        let many = format!("/{}", "*a".repeat(12) + "*b");
        let long = format!("/{}", "a".repeat(200));
        assert!(!r(&many).conflicts_with(&r(&long)));
        let stars = format!("{}/y", "/**/x".repeat(8));
        let deep = format!("/{}", ["x"; 100].join("/"));
        assert!(!r(&stars).conflicts_with(&r(&deep)));
        assert!(r(&stars).covers_file(&format!("{deep}/y")));
        for bad in ["", "  ", "/a/../b", "/src/#x", "/a#", "/a#b#c"] {
            assert!(Resource::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn leases() {
        assert_eq!(
            parse_lease(Some(&Value::from("estimated_30s"))).unwrap(),
            30
        );
        assert_eq!(parse_lease(Some(&Value::from("5m"))).unwrap(), 300);
        assert_eq!(parse_lease(None).unwrap(), DEFAULT_LEASE_SECS);
        assert!(parse_lease(Some(&Value::from("5h"))).is_err());
        assert!(parse_lease(Some(&Value::from("soon"))).is_err());
    }

    fn req(res: &str, who: &str, mode: Mode, wait: bool) -> Request {
        Request {
            resource: r(res),
            holder: who.into(),
            mode,
            operation: None,
            lease_secs: 30,
            wait,
            task_id: None,
        }
    }

    #[test]
    fn exclusive_shared_and_the_queue() {
        let at = crate::domain::now();
        let mut t = LockTable::default();
        let a = req("/src/auth/", "claude", Mode::Exclusive, false);
        assert_eq!(t.check(&a).unwrap(), Outcome::Granted);
        t.insert(1, a, true, at);
        assert!(
            t.check(&req("/src/auth/jwt.ts", "gemini", Mode::Exclusive, false))
                .is_err()
        );
        let q = req("/src/auth/jwt.ts", "gemini", Mode::Exclusive, true);
        assert_eq!(t.check(&q).unwrap(), Outcome::Queued { behind: vec![1] });
        t.insert(2, q, false, at);
        // A later reader of an unrelated file goes ahead; one of the same file waits its turn.
        let other = req("/src/pay.ts", "cursor", Mode::Shared, true);
        assert_eq!(t.check(&other).unwrap(), Outcome::Granted);
        let later = req("/src/auth/jwt.ts", "cursor", Mode::Shared, true);
        assert!(matches!(t.check(&later).unwrap(), Outcome::Queued { .. }));
        t.insert(3, later, false, at);
        assert!(t.grantable().is_empty());
        t.remove(1);
        assert_eq!(t.grantable(), vec![2], "first come, first served");
        t.grant(2, 10, at);
        assert!(t.consistent());
        t.remove(2);
        assert_eq!(t.grantable(), vec![3]);
        // Shared with shared is fine.
        t.grant(3, 11, at);
        assert_eq!(
            t.check(&req("/src/auth/jwt.ts", "claude", Mode::Shared, false))
                .unwrap(),
            Outcome::Granted
        );
        assert_eq!(t.get(3).and_then(|l| l.token), Some(11));
        assert!(
            t.check_fence("cursor", "/src/auth/jwt.ts", 11, at).is_err(),
            "a shared lock does not license a write"
        );
        t.insert(
            20,
            req("/src/auth/", "cursor", Mode::Exclusive, false),
            true,
            at,
        );
        t.insert(
            21,
            req("/src/auth/jwt.ts", "cursor", Mode::Exclusive, false),
            true,
            at,
        );
        assert!(
            t.check_fence("cursor", "/src/auth/jwt.ts", 20, at).is_ok(),
            "the directory's token is valid too"
        );
        assert!(t.check_fence("cursor", "/src/auth/jwt.ts", 21, at).is_ok());
        assert!(
            t.check_fence("cursor", "/src/auth/jwt.ts", 3, at).is_err(),
            "stale"
        );
        assert!(
            t.check_fence("gemini", "/src/auth/jwt.ts", 21, at).is_err(),
            "not its lock"
        );
        let later = at + TimeDelta::seconds(31);
        assert!(
            t.check_fence("cursor", "/src/auth/jwt.ts", 21, later)
                .is_err(),
            "lease ran out"
        );
    }

    #[test]
    fn expiry() {
        let at = crate::domain::now();
        let mut t = LockTable::default();
        t.insert(1, req("/a", "claude", Mode::Exclusive, false), true, at);
        assert!(t.expired(at + TimeDelta::seconds(29)).is_empty());
        assert_eq!(t.expired(at + TimeDelta::seconds(30)), vec![1]);
        t.renew(1, 60, at + TimeDelta::seconds(20));
        assert!(t.expired(at + TimeDelta::seconds(30)).is_empty());
        assert_eq!(t.next_expiry(), Some(at + TimeDelta::seconds(80)));
    }
}
