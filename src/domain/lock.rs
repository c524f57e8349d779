//! Locks as leases with fencing tokens (concept §6 "Lock Management").
//!
//! A resource is a file path (`/src/auth.ts`), a directory prefix (`/src/auth/`), or a glob
//! (`/src/auth/*`, `/src/**/*.ts`), optionally narrowed to a symbol (`/src/auth.ts#AuthService.login`).
//! Two resources conflict when some file could match both (decided conservatively: when in doubt
//! they conflict) and, if both name symbols, one symbol contains the other.
//!
//! Exclusive locks conflict with every overlapping lock, shared ones only with exclusive ones.
//! Locks belong to a project (see `lock_table`): a grant's fencing token comes from the
//! project's sequence, so it strictly increases per project. Requests that wait are granted first come, first served: a waiter is granted once
//! nothing it conflicts with is held, and no earlier waiter it conflicts with is still waiting.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

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

    /// The path segments before the first glob segment (`**` included): where the lock
    /// table's index files this resource (`lock_index` says why that is sound).
    pub(super) fn literal_prefix(&self) -> &[String] {
        let literal = self
            .segments
            .iter()
            .position(|s| is_glob(s))
            .unwrap_or(self.segments.len());
        &self.segments[..literal]
    }

    /// A file `path` as a resource, to test it against many locks without splitting it again
    /// for each (see `covers`).
    pub fn file(path: &str) -> Resource {
        Resource {
            segments: path
                .split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .map(str::to_owned)
                .collect(),
            prefix: false,
            symbol: None,
        }
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
        self.covers(&Resource::file(path))
    }

    /// `covers_file` for a file made by `Resource::file` (its symbol, if any, is ignored).
    pub fn covers(&self, file: &Resource) -> bool {
        self.paths_overlap(file)
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
///
/// First a necessary condition that costs one pass: the text is long enough for the tokens
/// that take one character each, and the pattern's literal head and tail (before its first
/// and after its last wildcard) begin and end it. Most non-matches stop there. What is left
/// (the tokens between, against the text between) is matched chunk by chunk, greedily: linear
/// in the text for literal chunks, never exponential.
fn glob_match(pattern: &str, text: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Star,
        One,
        Lit(char),
    }
    let mut toks = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
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
    let same = |tok: &Tok, c: &char| *tok == Tok::Lit(*c);
    let literal = |tok: &&Tok| matches!(tok, Tok::Lit(_));
    let head = toks.iter().take_while(literal).count();
    if head == toks.len() {
        return toks.len() == t.len() && toks.iter().zip(&t).all(|(k, c)| same(k, c));
    }
    // There is a wildcard, so head and tail do not overlap in the pattern, and (the text being
    // long enough for every literal) not in the text either.
    let tail = toks.iter().rev().take_while(literal).count();
    let needed = toks.iter().filter(|k| **k != Tok::Star).count();
    if t.len() < needed
        || !toks[..head].iter().zip(&t).all(|(k, c)| same(k, c))
        || !toks[toks.len() - tail..]
            .iter()
            .zip(&t[t.len() - tail..])
            .all(|(k, c)| same(k, c))
    {
        return false;
    }
    let (toks, t) = (&toks[head..toks.len() - tail], &t[head..t.len() - tail]);
    // What is left is chunks of fixed length (literals and `?`) between stars. The first chunk
    // is anchored at the start, the last at the end; each one between may go anywhere after
    // the previous, and taking its leftmost occurrence never loses a match (a star absorbs
    // whatever a later choice would have skipped). So one left-to-right pass decides, linear
    // in the text for literal chunks (KMP): no table of pattern × text.
    let fits = |chunk: &[Tok], at: usize| {
        chunk
            .iter()
            .zip(&t[at..])
            .all(|(k, c)| *k == Tok::One || same(k, c))
    };
    let chunks: Vec<&[Tok]> = toks.split(|k| *k == Tok::Star).collect();
    let (first, last) = (chunks[0], chunks[chunks.len() - 1]);
    if chunks.len() == 1 {
        return first.len() == t.len() && fits(first, 0);
    }
    if first.len() + last.len() > t.len() || !fits(first, 0) || !fits(last, t.len() - last.len()) {
        return false;
    }
    let (mut at, end) = (first.len(), t.len() - last.len());
    for chunk in &chunks[1..chunks.len() - 1] {
        match leftmost(chunk, &t[at..end], |k| *k == Tok::One, |k, c| same(k, c)) {
            Some(i) => at += i + chunk.len(),
            None => return false,
        }
    }
    true
}

/// Where `chunk` (of fixed length: each token matches one character) first matches in `text`.
/// A chunk of literals is found by Knuth–Morris–Pratt, linear in `text`; one with `?` in it
/// is tried at each position (`?` chunks are short in practice).
fn leftmost<T: PartialEq>(
    chunk: &[T],
    text: &[char],
    any: impl Fn(&T) -> bool,
    same: impl Fn(&T, &char) -> bool,
) -> Option<usize> {
    if chunk.is_empty() {
        return Some(0);
    }
    if chunk.len() > text.len() {
        return None;
    }
    if chunk.iter().any(&any) {
        return (0..=text.len() - chunk.len()).find(|&at| {
            chunk
                .iter()
                .zip(&text[at..])
                .all(|(k, c)| any(k) || same(k, c))
        });
    }
    // fail[i]: length of the longest proper border of chunk[..=i].
    let mut fail = vec![0usize; chunk.len()];
    let mut k = 0;
    for i in 1..chunk.len() {
        while k > 0 && chunk[i] != chunk[k] {
            k = fail[k - 1];
        }
        if chunk[i] == chunk[k] {
            k += 1;
        }
        fail[i] = k;
    }
    let mut k = 0;
    for (i, c) in text.iter().enumerate() {
        while k > 0 && !same(&chunk[k], c) {
            k = fail[k - 1];
        }
        if same(&chunk[k], c) {
            k += 1;
        }
        if k == chunk.len() {
            return Some(i + 1 - k);
        }
    }
    None
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

/// One lock request, waiting or held, in one session of the project. Its id comes from the
/// project's lock sequence, and so does its fencing token when it is granted (the same number
/// when granted as asked).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lock {
    pub id: i64,
    /// The session its holder works in.
    pub session_id: Uuid,
    #[serde(serialize_with = "as_text")]
    pub resource: Resource,
    pub holder: String,
    pub mode: Mode,
    pub operation: Option<String>,
    pub state: State,
    pub lease_secs: u32,
    /// Held: the fencing token (strictly increasing per project, in grant order).
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
    /// A request as it waits in the table under `id`.
    pub fn waiting(id: i64, r: Request) -> Lock {
        Lock {
            id,
            session_id: r.session_id,
            resource: r.resource,
            holder: r.holder,
            mode: r.mode,
            operation: r.operation,
            state: State::Waiting,
            lease_secs: r.lease_secs,
            token: None,
            task_id: r.task_id,
            expires_at: None,
        }
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
    /// Its session completed.
    SessionEnded,
}

/// A request as asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub session_id: Uuid,
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
    /// Granted at once (the lock's id is its token).
    Granted,
    /// Queued behind these locks.
    Queued { behind: Vec<i64> },
}

pub use super::lock_table::{LockKey, LockTable};

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

    /// `glob_match` against a plain recursive matcher (exponential, fine for short inputs),
    /// over every pattern and text of a small alphabet: the head/tail pre-check and the
    /// reused rows must not change a single answer.
    #[test]
    fn glob_match_agrees_with_a_reference() {
        fn reference(p: &[char], t: &[char]) -> bool {
            match p.split_first() {
                None => t.is_empty(),
                Some(('*', rest)) => (0..=t.len()).any(|k| reference(rest, &t[k..])),
                Some(('?', rest)) => !t.is_empty() && reference(rest, &t[1..]),
                Some((c, rest)) => t.first() == Some(c) && reference(rest, &t[1..]),
            }
        }
        fn all(alphabet: &[char], max: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut layer = vec![String::new()];
            for _ in 0..max {
                layer = layer
                    .iter()
                    .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                    .collect();
                out.extend(layer.iter().cloned());
            }
            out
        }
        let (patterns, texts) = (all(&['a', 'b', '*', '?'], 5), all(&['a', 'b'], 5));
        for p in &patterns {
            let pc: Vec<char> = p.chars().collect();
            for t in &texts {
                let tc: Vec<char> = t.chars().collect();
                assert_eq!(glob_match(p, t), reference(&pc, &tc), "{p:?} against {t:?}");
            }
        }
        // A class is one (any) character; an unclosed one runs to the end.
        assert!(glob_match("[xy]b", "ab") && !glob_match("[xy]b", "b"));
        assert!(glob_match("a[b", "ac") && !glob_match("a[b", "a"));
        // Head and tail must not be taken from the same characters.
        assert!(!glob_match("ab*ba", "aba") && glob_match("ab*ba", "abba"));
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
}
