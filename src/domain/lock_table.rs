//! The lock table of one project: every lock held or waiting, from every session working on
//! that codebase, in request order.
//!
//! A holder is a participant *of a session*: `claude` in the feature session and `claude` in
//! the bug-fix session are two holders whose locks conflict like anyone else's. Lock ids and
//! fencing tokens come from one sequence per project, so a later grant on a resource always
//! carries a larger token than every earlier grant on anything it overlaps. Locks are keyed by
//! `(id, session)`: ids are unique per project for every lock taken since projects existed,
//! and the session in the key keeps older databases (whose ids were per session) loading.
//!
//! Conflict checks run on the project actor's thread, so they look only at the locks the
//! `lock_index` says could overlap the resource in question, not at every lock (a table of
//! 1,024 long globs made each acquire compare against all of them); per-holder questions go
//! through a per-holder key set.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{NaiveDateTime, TimeDelta};
use uuid::Uuid;

use super::DomainError;
use super::lock::{Lock, MAX_LOCKS_PER_PARTICIPANT, Mode, Outcome, Request, Resource, State};
use super::lock_index::LockIndex;

/// A lock's identity in its project's table: its id, then its session.
pub type LockKey = (i64, Uuid);

impl Lock {
    pub fn key(&self) -> LockKey {
        (self.id, self.session_id)
    }

    /// The same participant of the same session.
    pub fn same_holder(&self, session: Uuid, holder: &str) -> bool {
        self.session_id == session && self.holder == holder
    }

    pub(super) fn conflicts_with(&self, other: &Lock) -> bool {
        !(self.mode == Mode::Shared && other.mode == Mode::Shared)
            && self.resource.conflicts_with(&other.resource)
    }
}

/// Every lock of one project that is held or waiting, in request order.
#[derive(Debug, Clone, Default)]
pub struct LockTable {
    locks: BTreeMap<LockKey, Lock>,
    /// Session names, for refusals that say whose lock is in the way.
    labels: HashMap<Uuid, String>,
    /// Every key of `locks` by its resource's literal prefix: where conflicts are looked for.
    index: LockIndex,
    /// Every key of `locks` by holder (session, then name), in key order.
    by_holder: HashMap<Uuid, HashMap<String, BTreeSet<LockKey>>>,
}

/// Two tables are equal when they hold the same locks under the same labels; the index and
/// the holder sets are derived from the locks.
impl PartialEq for LockTable {
    fn eq(&self, other: &LockTable) -> bool {
        self.locks == other.locks && self.labels == other.labels
    }
}

impl LockTable {
    pub fn from_locks(locks: impl IntoIterator<Item = Lock>) -> LockTable {
        let mut table = LockTable::default();
        for lock in locks {
            table.add(lock);
        }
        table
    }

    /// Every way a lock enters the table: the index and the holder sets learn it too.
    fn add(&mut self, lock: Lock) {
        let key = lock.key();
        if let Some(old) = self.locks.remove(&key) {
            self.forget(&old);
        }
        self.index.insert(key, &lock.resource);
        self.by_holder
            .entry(lock.session_id)
            .or_default()
            .entry(lock.holder.clone())
            .or_default()
            .insert(key);
        self.locks.insert(key, lock);
    }

    /// Takes a lock that left `locks` out of the index and the holder sets.
    fn forget(&mut self, lock: &Lock) {
        let key = lock.key();
        self.index.remove(key, &lock.resource);
        if let Some(names) = self.by_holder.get_mut(&lock.session_id) {
            if let Some(keys) = names.get_mut(&lock.holder) {
                keys.remove(&key);
                if keys.is_empty() {
                    names.remove(&lock.holder);
                }
            }
            if names.is_empty() {
                self.by_holder.remove(&lock.session_id);
            }
        }
    }

    /// The locks that could conflict with `probe` (a superset), in request order.
    fn candidates(&self, probe: &Resource) -> impl Iterator<Item = &Lock> {
        self.index
            .candidates(probe)
            .into_iter()
            .filter_map(|k| self.locks.get(&k))
    }

    /// Everything `holder` of `session` holds or awaits, in request order.
    fn holder_locks(&self, session: Uuid, holder: &str) -> impl Iterator<Item = &Lock> {
        self.by_holder
            .get(&session)
            .and_then(|names| names.get(holder))
            .into_iter()
            .flatten()
            .filter_map(|k| self.locks.get(k))
    }

    /// Names `session` in refusals.
    pub fn label(&mut self, session: Uuid, name: &str) {
        if self.labels.get(&session).map(String::as_str) != Some(name) {
            self.labels.insert(session, name.to_owned());
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Lock> {
        self.locks.values()
    }

    pub fn get(&self, key: LockKey) -> Option<&Lock> {
        self.locks.get(&key)
    }

    fn held(&self) -> impl Iterator<Item = &Lock> {
        self.locks.values().filter(|l| l.state == State::Held)
    }

    /// "claude" in the asking session, "claude of session 'fix-login' (id)" in another.
    fn who(&self, l: &Lock, asking: Uuid) -> String {
        if l.session_id == asking {
            return l.holder.clone();
        }
        match self.labels.get(&l.session_id) {
            Some(name) => format!("{} of session '{name}' ({})", l.holder, l.session_id),
            None => format!("{} of session {}", l.holder, l.session_id),
        }
    }

    /// Would `request` be granted now, or queued (behind what), or refused (conflict, no wait)?
    pub fn check(&self, request: &Request) -> Result<Outcome, DomainError> {
        let (session, holder) = (request.session_id, request.holder.as_str());
        let own: Vec<&Lock> = self.holder_locks(session, holder).collect();
        let mine = own.len();
        if mine >= MAX_LOCKS_PER_PARTICIPANT {
            return Err(DomainError::conflict(
                "too_many_locks",
                format!("{holder} holds or awaits {mine} locks already; release some"),
            ));
        }
        let probe = Lock::waiting(i64::MAX, request.clone());
        // Waiters count too: nobody jumps the queue.
        let blocking: Vec<&Lock> = self
            .candidates(&request.resource)
            .filter(|l| !l.same_holder(session, holder) || l.state == State::Waiting)
            .filter(|l| l.conflicts_with(&probe))
            .collect();
        // Own locks never block each other (holding a symbol, then its class, is fine); the very
        // same lock twice (held or queued) is a mistake worth saying.
        if let Some(own) = own
            .iter()
            .find(|l| l.resource == request.resource && l.mode == request.mode)
        {
            let held = own.state == State::Held;
            return Err(DomainError::conflict(
                "already_locked",
                format!(
                    "{holder} already {} {} (lock {}); {}",
                    if held { "holds" } else { "awaits" },
                    own.resource,
                    own.id,
                    if held {
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
                    self.who(held, session),
                    held.mode.as_str(),
                    held.operation
                        .as_deref()
                        .map(|o| format!(", {o}"))
                        .unwrap_or_default(),
                    held.expires_at
                        .map(|t| format!(" until {}", super::utc::text(t)))
                        .unwrap_or_default(),
                ),
            ));
        }
        Ok(Outcome::Queued {
            behind: blocking.iter().map(|l| l.id).collect(),
        })
    }

    /// Adds a checked request under `id`; granted ones get `id` as their token and their lease
    /// from `at`.
    pub fn insert(&mut self, id: i64, request: Request, granted: bool, at: NaiveDateTime) {
        let mut lock = Lock::waiting(id, request);
        if granted {
            lock.state = State::Held;
            lock.token = Some(id);
            lock.expires_at = Some(at + TimeDelta::seconds(i64::from(lock.lease_secs)));
        }
        self.add(lock);
    }

    /// Removes a lock (released, expired, cancelled…).
    pub fn remove(&mut self, key: LockKey) -> Option<Lock> {
        let lock = self.locks.remove(&key)?;
        self.forget(&lock);
        Some(lock)
    }

    /// Waiters that can be granted now, in request order (first come, first served): a waiter
    /// is blocked by a conflicting lock someone else holds, by an earlier waiter of someone
    /// else granted in this round, and by any earlier conflicting waiter still waiting (its
    /// holder's own included: nobody jumps the queue).
    pub fn grantable(&self) -> Vec<LockKey> {
        let mut granted: Vec<LockKey> = Vec::new();
        let mut granted_now: HashSet<LockKey> = HashSet::new();
        for l in self.locks.values().filter(|l| l.state == State::Waiting) {
            let other = |h: &Lock| !h.same_holder(l.session_id, &l.holder);
            // Later waiters do not count; earlier ones were decided above, in key order.
            let blocks = |c: &Lock| match c.state {
                State::Held => other(c),
                State::Waiting if c.key() < l.key() => !granted_now.contains(&c.key()) || other(c),
                State::Waiting => false,
            };
            let blocked = self
                .candidates(&l.resource)
                .any(|c| blocks(c) && c.conflicts_with(l));
            if !blocked {
                granted.push(l.key());
                granted_now.insert(l.key());
            }
        }
        granted
    }

    /// Marks a waiter held with fencing `token` from `at`.
    pub fn grant(&mut self, key: LockKey, token: i64, at: NaiveDateTime) {
        if let Some(l) = self.locks.get_mut(&key) {
            l.state = State::Held;
            l.token = Some(token);
            l.expires_at = Some(at + TimeDelta::seconds(i64::from(l.lease_secs)));
        }
    }

    /// Puts a grant that could not be written back in the queue, where it was.
    pub fn ungrant(&mut self, key: LockKey) {
        if let Some(l) = self.locks.get_mut(&key) {
            l.state = State::Waiting;
            l.token = None;
            l.expires_at = None;
        }
    }

    /// Extends a held lease from `at`.
    pub fn renew(&mut self, key: LockKey, lease_secs: u32, at: NaiveDateTime) {
        if let Some(l) = self.locks.get_mut(&key) {
            l.lease_secs = lease_secs;
            l.expires_at = Some(at + TimeDelta::seconds(i64::from(lease_secs)));
        }
    }

    /// Held locks whose lease has run out at `now`.
    pub fn expired(&self, now: NaiveDateTime) -> Vec<LockKey> {
        self.held()
            .filter(|l| l.expires_at.is_some_and(|e| e <= now))
            .map(Lock::key)
            .collect()
    }

    /// When the next lease runs out.
    pub fn next_expiry(&self) -> Option<NaiveDateTime> {
        self.held().filter_map(|l| l.expires_at).min()
    }

    /// Locks of `session` taken for its task `task`.
    pub fn of_task(&self, session: Uuid, task: i64) -> Vec<LockKey> {
        self.locks
            .values()
            .filter(|l| l.session_id == session && l.task_id == Some(task))
            .map(Lock::key)
            .collect()
    }

    /// Everything `holder` of `session` holds or awaits.
    pub fn of(&self, session: Uuid, holder: &str) -> Vec<LockKey> {
        self.holder_locks(session, holder).map(Lock::key).collect()
    }

    /// A write citing `token` for `file` must present the token of an exclusive lock its author
    /// holds on that file now (fencing: a lease that expired, or was released and granted to
    /// someone again, is stale; a shared lock does not license a write).
    pub fn check_fence(
        &self,
        session: Uuid,
        holder: &str,
        file: &str,
        token: i64,
        now: NaiveDateTime,
    ) -> Result<(), DomainError> {
        let path = Resource::file(file);
        let valid: Vec<i64> = self
            .candidates(&path)
            .filter(|l| {
                l.state == State::Held
                    && l.same_holder(session, holder)
                    && l.mode == Mode::Exclusive
                    && l.resource.covers(&path)
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

    /// Exclusive locks held by others (of any session of the project) that cover `file`, each
    /// with the name that says whose it is.
    pub fn others_covering(&self, session: Uuid, holder: &str, file: &str) -> Vec<(String, &Lock)> {
        let path = Resource::file(file);
        self.candidates(&path)
            .filter(|l| {
                l.state == State::Held
                    && !l.same_holder(session, holder)
                    && l.mode == Mode::Exclusive
                    && l.resource.covers(&path)
            })
            .map(|l| (self.who(l, session), l))
            .collect()
    }

    /// Invariant (for tests): no two held locks conflict unless one holder holds both.
    /// Deliberately every pair, not the index's candidates: it checks the index's users.
    pub fn consistent(&self) -> bool {
        let held: Vec<&Lock> = self.held().collect();
        held.iter().enumerate().all(|(i, a)| {
            held[i + 1..]
                .iter()
                .all(|b| b.same_holder(a.session_id, &a.holder) || !a.conflicts_with(b))
        })
    }
}

/// What the index's property test (`lock_index_props`) looks at.
#[cfg(test)]
impl LockTable {
    /// The keys the index offers for `probe`.
    pub(super) fn candidate_keys(&self, probe: &Resource) -> Vec<LockKey> {
        self.index.candidates(probe)
    }

    /// The index and the holder sets hold exactly the table's keys, each under its holder.
    pub(super) fn derived_in_sync(&self) -> bool {
        let keys: Vec<LockKey> = self.locks.keys().copied().collect();
        let by_holder = self.by_holder.iter().all(|(session, names)| {
            !names.is_empty()
                && names.iter().all(|(name, ks)| {
                    !ks.is_empty()
                        && ks.iter().all(|k| {
                            self.locks
                                .get(k)
                                .is_some_and(|l| l.same_holder(*session, name))
                        })
                })
        });
        let counted: usize = self
            .by_holder
            .values()
            .flat_map(HashMap::values)
            .map(BTreeSet::len)
            .sum();
        self.index.all() == keys && by_holder && counted == keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::lock::{Resource, parse_lease};
    use super::*;
    use serde_json::Value;

    const S: Uuid = Uuid::from_u128(1);
    const OTHER: Uuid = Uuid::from_u128(2);

    fn r(s: &str) -> Resource {
        Resource::parse(s).unwrap()
    }

    fn key(id: i64) -> LockKey {
        (id, S)
    }

    #[test]
    fn leases() {
        assert_eq!(
            parse_lease(Some(&Value::from("estimated_30s"))).unwrap(),
            30
        );
        assert_eq!(parse_lease(Some(&Value::from("5m"))).unwrap(), 300);
        assert!(parse_lease(Some(&Value::from("5h"))).is_err());
        assert!(parse_lease(Some(&Value::from("soon"))).is_err());
    }

    fn req_in(session: Uuid, res: &str, who: &str, mode: Mode, wait: bool) -> Request {
        Request {
            session_id: session,
            resource: r(res),
            holder: who.into(),
            mode,
            operation: None,
            lease_secs: 30,
            wait,
            task_id: None,
        }
    }

    fn req(res: &str, who: &str, mode: Mode, wait: bool) -> Request {
        req_in(S, res, who, mode, wait)
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
        t.remove(key(1));
        assert_eq!(t.grantable(), vec![key(2)], "first come, first served");
        t.grant(key(2), 10, at);
        assert!(t.consistent());
        t.remove(key(2));
        assert_eq!(t.grantable(), vec![key(3)]);
        // Shared with shared is fine.
        t.grant(key(3), 11, at);
        assert_eq!(
            t.check(&req("/src/auth/jwt.ts", "claude", Mode::Shared, false))
                .unwrap(),
            Outcome::Granted
        );
        assert_eq!(t.get(key(3)).and_then(|l| l.token), Some(11));
        assert!(
            t.check_fence(S, "cursor", "/src/auth/jwt.ts", 11, at)
                .is_err(),
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
            t.check_fence(S, "cursor", "/src/auth/jwt.ts", 20, at)
                .is_ok(),
            "the directory's token is valid too"
        );
        assert!(
            t.check_fence(S, "cursor", "/src/auth/jwt.ts", 21, at)
                .is_ok()
        );
        assert!(
            t.check_fence(S, "cursor", "/src/auth/jwt.ts", 3, at)
                .is_err(),
            "stale"
        );
        assert!(
            t.check_fence(S, "gemini", "/src/auth/jwt.ts", 21, at)
                .is_err(),
            "not its lock"
        );
        assert!(
            t.check_fence(OTHER, "cursor", "/src/auth/jwt.ts", 21, at)
                .is_err(),
            "cursor of another session is another holder"
        );
        let later = at + TimeDelta::seconds(31);
        assert!(
            t.check_fence(S, "cursor", "/src/auth/jwt.ts", 21, later)
                .is_err(),
            "lease ran out"
        );
    }

    #[test]
    fn one_name_in_two_sessions_is_two_holders() {
        let at = crate::domain::now();
        let mut t = LockTable::default();
        t.label(S, "feature");
        t.label(OTHER, "bugfix");
        t.insert(
            1,
            req("/src/auth/", "claude", Mode::Exclusive, false),
            true,
            at,
        );
        // The same participant name in another session conflicts, and is told whose lock it is.
        let theirs = req_in(OTHER, "/src/auth/jwt.ts", "claude", Mode::Exclusive, false);
        let Err(DomainError::Conflict { code, message }) = t.check(&theirs) else {
            panic!("another session's claude must be refused");
        };
        assert_eq!(code, "resource_locked");
        assert!(message.contains("session 'feature'"), "{message}");
        // Within the holder's own session, its own locks never block it.
        assert_eq!(
            t.check(&req("/src/auth/jwt.ts", "claude", Mode::Exclusive, false))
                .unwrap(),
            Outcome::Granted
        );
        let queued = req_in(OTHER, "/src/auth/jwt.ts", "claude", Mode::Exclusive, true);
        assert_eq!(
            t.check(&queued).unwrap(),
            Outcome::Queued { behind: vec![1] }
        );
        t.insert(2, queued, false, at);
        assert!(t.grantable().is_empty());
        assert_eq!(t.of(S, "claude"), vec![key(1)]);
        assert_eq!(t.of(OTHER, "claude"), vec![(2, OTHER)]);
        let others = t.others_covering(OTHER, "claude", "/src/auth/jwt.ts");
        assert_eq!(others.len(), 1);
        assert!(others[0].0.contains("'feature'"), "{}", others[0].0);
        t.remove(key(1));
        assert_eq!(t.grantable(), vec![(2, OTHER)]);
        t.grant((2, OTHER), 3, at);
        assert!(t.consistent());
        t.ungrant((2, OTHER));
        assert_eq!(t.get((2, OTHER)).unwrap().state, State::Waiting);
    }

    #[test]
    fn expiry() {
        let at = crate::domain::now();
        let mut t = LockTable::default();
        t.insert(1, req("/a", "claude", Mode::Exclusive, false), true, at);
        assert!(t.expired(at + TimeDelta::seconds(29)).is_empty());
        assert_eq!(t.expired(at + TimeDelta::seconds(30)), vec![key(1)]);
        t.renew(key(1), 60, at + TimeDelta::seconds(20));
        assert!(t.expired(at + TimeDelta::seconds(30)).is_empty());
        assert_eq!(t.next_expiry(), Some(at + TimeDelta::seconds(80)));
    }
}
