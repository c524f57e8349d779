//! Property test of `diff_since`: random op sequences, checked against an independent reference.
//!
//! Each case runs 1..40 random `ContextOp`s (sets, appends, deletes, merges, with indexed paths,
//! escaped keys, stale and fresh `expected` versions) through `plan` + `apply`, by random
//! actors. At a random cut the document is cloned; the changes logged after the cut are handed
//! to `diff_since` with the final document, and its answer is compared with a diff computed
//! here from the two documents directly, with who changed each entry last.
//!
//! Writes that create missing objects on the way (`a.b.c` with no `a`) are generated too: the
//! change records where the new branch starts (`Change::created_from`), so the diff reports the
//! new branch (`a`) as added. So are pushes onto capped lists (working memory's shape, with
//! caps of 1..4 so that they drop their oldest entries often).
//!
//! Every change also goes through the log's stored form (JSON text, read back), and through the
//! form hubs wrote before appends were recorded as such (whole values before and after). Both
//! must read back to what was applied: replayed from the start, and from a snapshot at the cut,
//! they rebuild the same context (document and versions), and the diff over them is the same.
//!
//! A failure prints the seed and the op transcript; `CONTEXT_DIFF_SEED=<seed> cargo test --lib
//! context_diff_props` reruns that one case.

use super::test_rng::Rng;
use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::DomainError;
use super::context::{
    Change, Context, ContextOp, Diff, DiffEntry, Edit, LoggedChange, Path, Segment, diff_since,
};
use super::context_log::{changes_from_json, changes_to_json, legacy_entry};

const CASES: u64 = 300;
const MAX_OPS: u64 = 40;
const BASE_SEED: u64 = 0x00C0_11AB_D1FF_5EED;
const ACTORS: [&str; 3] = ["claude", "gemini", "cursor"];

/// Keys by depth: few enough that paths collide often; `k.v` and `[q]` need escaping.
fn keys_at(depth: usize) -> &'static [&'static str] {
    match depth {
        0 => &["a", "b", "list", "k.v"],
        1 => &["x", "y", "list", "[q]"],
        _ => &["p", "q", "list"],
    }
}

fn random_key(rng: &mut Rng, depth: usize) -> String {
    (*rng.pick(keys_at(depth))).to_owned()
}

fn random_scalar(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 | 3 => json!(rng.below(4) as i64 - 1),
        4 => json!(0.5),
        5 => json!(""),
        _ => json!(*rng.pick(&["s", "t"])),
    }
}

/// Any JSON value, with objects keyed from the pool of `depth` so they meet existing paths.
fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(10) {
        0..=4 => random_scalar(rng),
        5 | 6 => Value::Array((0..rng.below(3)).map(|_| random_scalar(rng)).collect()),
        _ if depth >= 3 => json!({}),
        _ => {
            let mut o = Map::new();
            for _ in 0..rng.below(3) {
                let key = random_key(rng, depth);
                let value = if key == "list" {
                    Value::Array((0..rng.below(4)).map(|_| random_scalar(rng)).collect())
                } else {
                    random_value(rng, depth + 1)
                };
                o.insert(key, value);
            }
            Value::Object(o)
        }
    }
}

/// A merge body: nested objects (merged key by key), nulls (stored as null: `plan_merge` does
/// not treat them as deletes), empty objects and plain values.
fn random_updates(rng: &mut Rng, depth: usize) -> Value {
    let mut o = Map::new();
    for _ in 0..1 + rng.below(3) {
        let v = match rng.below(10) {
            0..=3 if depth < 2 => random_updates(rng, depth + 1),
            4 => json!({}),
            5 => Value::Null,
            _ => random_value(rng, depth + 1),
        };
        o.insert(random_key(rng, depth), v);
    }
    Value::Object(o)
}

/// A fresh path: 1–3 keys, sometimes with an index after a key.
fn random_path(rng: &mut Rng) -> Path {
    let mut segments = Vec::new();
    for depth in 0..1 + rng.below(3) as usize {
        segments.push(Segment::Key(random_key(rng, depth)));
        if rng.chance(20) {
            segments.push(Segment::Index(rng.below(3) as usize));
        }
    }
    Path(segments)
}

/// Every node of `v` (arrays' elements included), root first.
fn all_paths(v: &Value, at: &Path, out: &mut Vec<Path>) {
    out.push(at.clone());
    match v {
        Value::Object(o) => {
            for (k, c) in o {
                all_paths(c, &child(at, Segment::Key(k.clone())), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                all_paths(c, &child(at, Segment::Index(i)), out);
            }
        }
        _ => {}
    }
}

fn child(at: &Path, s: Segment) -> Path {
    let mut p = at.clone();
    p.0.push(s);
    p
}

/// Often a path that exists (or an element or child of one: an index up to one past the end
/// of an array, a key of an object), else a fresh one.
fn target_path(rng: &mut Rng, c: &Context) -> Path {
    if rng.chance(60) {
        let mut existing = Vec::new();
        all_paths(c.document(), &Path::root(), &mut existing);
        existing.remove(0); // not the root
        if !existing.is_empty() {
            let mut p = rng.pick(&existing).clone();
            match c.get(&p) {
                Some(Value::Array(a)) if rng.chance(50) => {
                    p.0.push(Segment::Index(rng.below(a.len() as u64 + 1) as usize));
                }
                _ if rng.chance(25) => {
                    let depth = p.0.len().min(2);
                    p.0.push(Segment::Key(random_key(rng, depth)));
                }
                _ => {}
            }
            return p;
        }
    }
    random_path(rng)
}

/// Mostly a node that exists (array elements included), else any target.
fn delete_path(rng: &mut Rng, c: &Context) -> Path {
    let mut existing = Vec::new();
    all_paths(c.document(), &Path::root(), &mut existing);
    existing.remove(0); // not the root
    if !existing.is_empty() && rng.chance(75) {
        return rng.pick(&existing).clone();
    }
    target_path(rng, c)
}

/// Mostly an array that exists, else any target (appends there may be refused).
fn append_path(rng: &mut Rng, c: &Context) -> Path {
    let mut arrays = Vec::new();
    all_paths(c.document(), &Path::root(), &mut arrays);
    arrays.retain(|p| c.get(p).is_some_and(Value::is_array));
    if !arrays.is_empty() && rng.chance(60) {
        return rng.pick(&arrays).clone();
    }
    target_path(rng, c)
}

/// No expectation mostly; else the current version (passes) or some other id (mostly fails).
fn random_expected(rng: &mut Rng, c: &Context, path: &Path, last_id: i64) -> Option<i64> {
    match rng.below(10) {
        0 => Some(c.version(path)),
        1 => Some(rng.below(last_id as u64 + 2) as i64),
        _ => None,
    }
}

/// A write: a plain op, or a push onto a list capped at `limit` (what working memory does).
#[derive(Debug)]
enum Write {
    Op(ContextOp),
    Push {
        path: Path,
        value: Value,
        limit: usize,
    },
}

impl Write {
    fn plan(&self, c: &Context) -> Result<Vec<Change>, DomainError> {
        match self {
            Write::Op(op) => c.plan(op),
            Write::Push { path, value, limit } => c.plan_capped_push(path, value.clone(), *limit),
        }
    }
}

fn random_op(rng: &mut Rng, c: &Context, last_id: i64) -> Write {
    if rng.chance(15) {
        return Write::Push {
            path: append_path(rng, c),
            value: random_value(rng, 2),
            limit: 1 + rng.below(4) as usize,
        };
    }
    Write::Op(random_context_op(rng, c, last_id))
}

fn random_context_op(rng: &mut Rng, c: &Context, last_id: i64) -> ContextOp {
    match rng.below(40) {
        0..=13 => {
            let path = target_path(rng, c);
            let value = random_value(rng, path.0.len().min(3));
            let expected = random_expected(rng, c, &path, last_id);
            ContextOp::Set {
                path,
                value,
                expected,
            }
        }
        14..=19 => {
            let path = append_path(rng, c);
            let value = random_value(rng, 2);
            let expected = random_expected(rng, c, &path, last_id);
            ContextOp::Append {
                path,
                value,
                expected,
            }
        }
        20..=28 => {
            let path = delete_path(rng, c);
            let expected = random_expected(rng, c, &path, last_id);
            ContextOp::Delete { path, expected }
        }
        29..=38 => ContextOp::Merge {
            updates: random_updates(rng, 0),
        },
        _ => {
            // Replace the whole document (sometimes refused: the root must be an object).
            let value = if rng.chance(80) {
                random_updates(rng, 0)
            } else {
                random_scalar(rng)
            };
            ContextOp::Set {
                path: Path::root(),
                value,
                expected: None,
            }
        }
    }
}

/// Every node reachable from the root through objects only (arrays are values), by path.
fn object_nodes(v: &Value, at: &Path, out: &mut BTreeMap<Path, Value>) {
    out.insert(at.clone(), v.clone());
    if let Value::Object(o) = v {
        for (k, c) in o {
            object_nodes(c, &child(at, Segment::Key(k.clone())), out);
        }
    }
}

/// The diff as documented ("objects are compared key by key, anything else as a whole
/// value"), computed without any rewinding: an entry sits at each path whose every ancestor is
/// an object in both documents, that is not an object in both, and whose value differs.
fn reference_diff(then: &Value, now: &Value) -> BTreeMap<Path, (Option<Value>, Option<Value>)> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    object_nodes(then, &Path::root(), &mut a);
    object_nodes(now, &Path::root(), &mut b);
    let mut out = BTreeMap::new();
    for path in a.keys().chain(b.keys()) {
        let (old, new) = (a.get(path), b.get(path));
        let ancestors_are_objects = (0..path.0.len()).all(|n| {
            let q = Path(path.0[..n].to_vec());
            matches!(
                (a.get(&q), b.get(&q)),
                (Some(Value::Object(_)), Some(Value::Object(_)))
            )
        });
        let both_objects = matches!((old, new), (Some(Value::Object(_)), Some(Value::Object(_))));
        if ancestors_are_objects && !both_objects && old != new {
            out.insert(path.clone(), (old.cloned(), new.cloned()));
        }
    }
    out
}

/// Writes (`Some`) or removes (`None`) the value at a path of keys.
fn patch(doc: &mut Value, path: &Path, value: Option<Value>) {
    let Some((last, parents)) = path.0.split_last() else {
        *doc = value.expect("the root is never removed");
        return;
    };
    let mut node = doc;
    for s in parents {
        let Segment::Key(k) = s else {
            panic!("diff path {path} goes through an array");
        };
        node = node
            .as_object_mut()
            .and_then(|o| o.get_mut(k))
            .unwrap_or_else(|| panic!("diff path {path}: no object at {k}"));
    }
    let (Segment::Key(k), Value::Object(o)) = (last, node) else {
        panic!("diff path {path}: parent is not an object");
    };
    match value {
        Some(v) => o.insert(k.clone(), v),
        None => o.remove(k),
    };
}

/// An applied op: its event, author, and the paths its changes wrote.
struct Applied {
    event_id: i64,
    by: Option<String>,
    paths: Vec<Path>,
}

/// What a case exercised.
#[derive(Default)]
struct Covered {
    entries: usize,
    appends: usize,
    drops: usize,
}

/// Runs one case; `Err` carries everything needed to understand and replay it.
fn run_case(seed: u64) -> Result<Covered, String> {
    let mut rng = Rng::new(seed);
    let n_ops = 1 + rng.below(MAX_OPS) as usize;
    let cut_at = rng.below(n_ops as u64 + 1) as usize; // ops before this index are "then"
    let mut c = Context::new();
    let mut transcript = Vec::new();
    let mut applied = Vec::new();
    let mut log: Vec<LoggedChange> = Vec::new();
    // The same changes read back from the stored form, and from the legacy form.
    let (mut log_stored, mut log_legacy) = (Vec::new(), Vec::new());
    // Contexts rebuilt from those forms, as a load does: from the start, and from a snapshot
    // taken at the cut.
    let (mut replayed, mut replayed_legacy) = (Context::new(), Context::new());
    let mut from_snapshot = None;
    let mut covered = Covered::default();
    let mut last_id = 0i64;
    // The cut: the last event id before it, and the document then.
    let mut cut: Option<(i64, Value)> = None;
    let fail = |transcript: &[String], why: String| {
        Err(format!(
            "seed {seed:#x} (rerun: CONTEXT_DIFF_SEED={seed:#x}): {why}\nops (cut after op {cut_at}):\n{}",
            transcript.join("\n")
        ))
    };

    for i in 0..=n_ops {
        if i == cut_at {
            cut = Some((last_id, c.document().clone()));
            let snapshot = Context::from_snapshot(&c.to_snapshot())
                .map_err(|e| format!("seed {seed:#x}: snapshot: {e}"))?;
            from_snapshot = Some(snapshot);
            transcript.push(format!("---- cut: since = {last_id}"));
        }
        if i == n_ops {
            break;
        }
        let op = random_op(&mut rng, &c, last_id);
        let by = if rng.chance(10) {
            None
        } else {
            Some((*rng.pick(&ACTORS)).to_owned())
        };
        let before = c.clone();
        match op.plan(&c) {
            Err(e) => {
                // A refused op leaves the document and the versions as they were, and is
                // refused again for the same reason.
                if c != before || op.plan(&c).as_ref().err() != Some(&e) {
                    return fail(&transcript, format!("refused op {op:?} changed something"));
                }
                transcript.push(format!("#{i} {by:?} REFUSED {op:?}: {e}"));
            }
            Ok(changes) if changes.is_empty() => {
                transcript.push(format!("#{i} {by:?} no-op {op:?}"));
            }
            Ok(changes) => {
                last_id += 1 + rng.below(2) as i64; // ids need not be contiguous
                let mut legacy = Vec::new();
                for ch in &changes {
                    legacy.push(legacy_entry(ch, &c));
                    let size = c.size() as i64;
                    c.apply(ch, last_id);
                    // Versions by ranges of the map are what a scan of every path gives, and
                    // nothing stays written below the path just written.
                    let parent = Path(ch.path.0[..ch.path.0.len().saturating_sub(1)].to_vec());
                    for p in [&ch.path, &parent] {
                        let scanned = c
                            .versions()
                            .iter()
                            .filter(|(q, _)| q.overlaps(p))
                            .map(|(_, v)| *v)
                            .max()
                            .unwrap_or(0);
                        if c.version(p) != scanned {
                            return fail(
                                &transcript,
                                format!("version of {p}: {}, a scan says {scanned}", c.version(p)),
                            );
                        }
                    }
                    if c.versions()
                        .keys()
                        .any(|q| q.within(&ch.path) && *q != ch.path)
                    {
                        return fail(&transcript, format!("versions left below {}", ch.path));
                    }
                    // The bound the size checks use never falls below the size.
                    let (bound, exact) = (c.size_bound(), c.size());
                    if bound < exact {
                        return fail(
                            &transcript,
                            format!("{ch:?}: size bound {bound} below the size {exact}"),
                        );
                    }
                    // The size limit counts an append's growth without serializing the array
                    // (a replace counts its values only, as it always did).
                    let appended = matches!(ch.edit, Edit::Append { .. });
                    if appended && c.size() as i64 - size != ch.growth() {
                        return fail(
                            &transcript,
                            format!(
                                "{ch:?} grows the document by {}, not {}",
                                c.size() as i64 - size,
                                ch.growth()
                            ),
                        );
                    }
                    if let Edit::Append { dropped, .. } = &ch.edit {
                        covered.appends += 1;
                        covered.drops += usize::from(!dropped.is_empty());
                    }
                }
                transcript.push(format!(
                    "#{i} id {last_id} {by:?} {op:?}\n      -> {}",
                    changes
                        .iter()
                        .map(|ch| format!("{} {:?}", ch.path, ch.edit))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
                // Through the log: JSON text, read back; and the legacy form, read back.
                let text = changes_to_json(&changes).to_string();
                let stored = serde_json::from_str(&text)
                    .map_err(|e| e.to_string())
                    .and_then(|v| changes_from_json(&v).map_err(|e| e.to_string()));
                let legacy = changes_from_json(&Value::Array(legacy));
                let (stored, legacy) = match (stored, legacy) {
                    (Ok(s), Ok(l)) => (s, l),
                    (s, l) => return fail(&transcript, format!("unreadable: {s:?} / {l:?}")),
                };
                if stored != changes {
                    return fail(
                        &transcript,
                        format!("{text} reads back as {stored:?}, not as written"),
                    );
                }
                for ch in &stored {
                    replayed.apply(ch, last_id);
                    if let Some(snapshot) = from_snapshot.as_mut() {
                        snapshot.apply(ch, last_id);
                    }
                }
                for ch in &legacy {
                    replayed_legacy.apply(ch, last_id);
                }
                if i >= cut_at {
                    log_stored.extend(stored.into_iter().map(|ch| (ch, by.clone(), last_id)));
                    log_legacy.extend(legacy.into_iter().map(|ch| (ch, by.clone(), last_id)));
                    applied.push(Applied {
                        event_id: last_id,
                        by: by.clone(),
                        paths: changes.iter().map(|ch| ch.path.clone()).collect(),
                    });
                    log.extend(changes.into_iter().map(|ch| (ch, by.clone(), last_id)));
                }
            }
        }
    }
    let (since, then) = cut.expect("cut_at <= n_ops");
    if log.iter().any(|(_, _, id)| *id <= since) {
        return fail(&transcript, format!("logged a change at or before {since}"));
    }
    let now = c.document();
    transcript.push(format!("then: {then}\nnow:  {now}"));
    if !then.is_object() || !now.is_object() {
        return fail(&transcript, "the document stopped being an object".into());
    }

    // A load, whichever form the log holds and wherever it starts, rebuilds this context.
    let from_snapshot = from_snapshot.expect("cut_at <= n_ops");
    for (name, rebuilt) in [
        ("the stored log", &replayed),
        ("the legacy log", &replayed_legacy),
        (
            "the snapshot at the cut plus the stored log",
            &from_snapshot,
        ),
    ] {
        if *rebuilt != c {
            return fail(
                &transcript,
                format!(
                    "replaying {name} gives {} with versions {:?}, not the context",
                    rebuilt.document(),
                    rebuilt.versions()
                ),
            );
        }
    }

    let diff = diff_since(now, &log);
    for (name, read) in [
        ("the stored log", &log_stored),
        ("the legacy log", &log_legacy),
    ] {
        let other = diff_since(now, read);
        if other != diff {
            return fail(
                &transcript,
                format!(
                    "the diff over {name} differs\n got:      {}\n in memory: {}",
                    serde_json::to_string(&other).unwrap_or_default(),
                    serde_json::to_string(&diff).unwrap_or_default()
                ),
            );
        }
    }
    let expected = reference_diff(&then, now);
    let mut reference = Diff::default();
    for (path, (old, new)) in &expected {
        // Who changed it last: the newest op after the cut whose writes overlap the path.
        let last = applied
            .iter()
            .rev()
            .find(|a| a.paths.iter().any(|p| p.overlaps(path)));
        let Some(last) = last else {
            return fail(
                &transcript,
                format!("{path} differs but no op after the cut wrote it"),
            );
        };
        let entry = DiffEntry {
            old: old.clone(),
            new: new.clone(),
            by: last.by.clone(),
            event_id: last.event_id,
        };
        let side = match (old, new) {
            (None, Some(_)) => &mut reference.added,
            (Some(_), None) => &mut reference.removed,
            _ => &mut reference.modified,
        };
        side.insert(path.to_string(), entry);
    }
    if diff != reference {
        return fail(
            &transcript,
            format!(
                "diff_since disagrees with the reference\n got:      {}\n expected: {}",
                serde_json::to_string(&diff).unwrap_or_default(),
                serde_json::to_string(&reference).unwrap_or_default()
            ),
        );
    }

    // The diff is a patch: applied to "then" it gives "now", and its keys are canonical paths.
    let mut patched = then.clone();
    for (key, e) in diff.added.iter().chain(&diff.modified).chain(&diff.removed) {
        let path = Path::parse(key).map_err(|e| format!("seed {seed:#x}: key {key:?}: {e}"))?;
        if path.to_string() != *key {
            return fail(&transcript, format!("key {key:?} is not canonical"));
        }
        patch(&mut patched, &path, e.new.clone());
    }
    if patched != *now {
        return fail(&transcript, format!("then + diff = {patched}, not now"));
    }
    covered.entries = expected.len();
    Ok(covered)
}

#[test]
fn diff_since_matches_a_direct_comparison_of_then_and_now() {
    if let Ok(seed) = std::env::var("CONTEXT_DIFF_SEED") {
        let seed = seed.trim();
        let seed = match seed.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => seed.parse(),
        }
        .expect("CONTEXT_DIFF_SEED is a number (decimal or 0x-hex)");
        if let Err(report) = run_case(seed) {
            panic!("{report}");
        }
        return;
    }
    let mut seeds = Rng::new(BASE_SEED);
    let mut total = Covered::default();
    for _ in 0..CASES {
        match run_case(seeds.next()) {
            Ok(c) => {
                total.entries += c.entries;
                total.appends += c.appends;
                total.drops += c.drops;
            }
            Err(report) => panic!("{report}"),
        }
    }
    // The generator must actually exercise the diff, not produce empty ones, and the compact
    // appends, dropping pushes included.
    let Covered {
        entries,
        appends,
        drops,
    } = total;
    assert!(
        entries > CASES as usize,
        "only {entries} diff entries in {CASES} cases"
    );
    assert!(
        appends > CASES as usize && drops > CASES as usize / 4,
        "only {appends} appends ({drops} dropping) in {CASES} cases"
    );
}

/// The case the random test found, pinned: rewinding the delete of an array element put the
/// old element over the one that had moved into its place (`[1, 2, 3]` came back as `[1, 3]`).
#[test]
fn rewinding_a_deleted_array_element_puts_it_back_in_place() {
    let p = |s: &str| Path::parse(s).unwrap();
    let mut c = Context::new();
    let mut log: Vec<LoggedChange> = Vec::new();
    let ops = [
        ContextOp::Set {
            path: p("l"),
            value: json!([1, 2, 3]),
            expected: None,
        },
        ContextOp::Delete {
            path: p("l[0]"),
            expected: None,
        },
        ContextOp::Delete {
            path: p("l[1]"),
            expected: None,
        },
    ];
    for (id, op) in (1..).zip(&ops) {
        for ch in c.plan(op).unwrap() {
            c.apply(&ch, id);
            if id > 1 {
                log.push((ch, Some("claude".into()), id));
            }
        }
    }
    let diff = diff_since(c.document(), &log);
    assert_eq!(diff.modified["l"].old, Some(json!([1, 2, 3])), "{diff:?}");
    assert_eq!(diff.modified["l"].new, Some(json!([2])), "{diff:?}");
    assert_eq!(diff.modified["l"].event_id, 3, "{diff:?}");
    assert!(diff.added.is_empty() && diff.removed.is_empty(), "{diff:?}");
}
