//! The shared context: one JSON document per session (the concept's `sharedContext`:
//! projectUnderstanding, activeWork, aiNotes, workingMemory, free to extend), addressed by
//! dotted paths, with a version on every path so that two AIs writing at once cannot silently
//! overwrite each other.
//!
//! Paths: `activeWork.currentRefactoring.status`; `\.` is a literal dot inside a key
//! (`versions.react\.dom`), `\\` a literal backslash, `[2]` an array index
//! (`recentDiscoveries[0].severity`). The empty path is the whole document.
//!
//! Versions are event ids: a path's version is the id of the newest event that wrote the path,
//! one of its ancestors or one of its descendants. So `expectedVersion` on `activeWork` fails if
//! anything under it changed since, and on `activeWork.x` if `activeWork` was replaced.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::DomainError;

pub use super::context_diff::{Diff, DiffEntry, LoggedChange, diff_since};
pub use super::context_path::{MAX_DEPTH, MAX_PATH_LEN, Path, Segment};

/// Longest object key a written value may hold, in characters.
pub const MAX_KEY_LEN: usize = 256;

/// Checks that every change can be stored and read back exactly: its path survives the
/// round trip through its canonical text (the form the log keeps and the loader parses), and
/// every object key inside its new value is one a path can address later (not empty, no control
/// characters, not too long). Every write path runs this before committing, so the loader never
/// meets a change it cannot read.
pub fn check_storable(changes: &[Change]) -> Result<(), DomainError> {
    for c in changes {
        let text = c.path.to_string();
        let long_key = c.path.0.iter().any(|s| match s {
            Segment::Key(k) => k.chars().count() > MAX_KEY_LEN,
            Segment::Index(_) => false,
        });
        if long_key {
            return Err(DomainError::invalid(
                "path",
                format!("{text:?}: a key is longer than {MAX_KEY_LEN} characters"),
            ));
        }
        if Path::parse(&text).as_ref() != Ok(&c.path) {
            return Err(DomainError::invalid(
                "path",
                format!("{text:?} cannot be addressed as a context path"),
            ));
        }
        if let Some(v) = c.written() {
            check_keys(v, &text)?;
        }
    }
    Ok(())
}

fn check_keys(value: &Value, at: &str) -> Result<(), DomainError> {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let why = if k.is_empty() {
                    Some("an empty key")
                } else if k.chars().any(char::is_control) {
                    Some("a key with a control character")
                } else if k.chars().count() > MAX_KEY_LEN {
                    Some("a key longer than 256 characters")
                } else {
                    None
                };
                if let Some(why) = why {
                    let at = if at.is_empty() { "the top level" } else { at };
                    return Err(DomainError::invalid(
                        "value",
                        format!(
                            "{why} ({k:?}) under {at}: every key must be addressable by a path"
                        ),
                    ));
                }
                check_keys(v, at)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|v| check_keys(v, at)),
        _ => Ok(()),
    }
}

/// What one change did at its path.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub path: Path,
    pub edit: Edit,
    /// The write also created missing objects on the way: the first `n` segments of `path`
    /// existed, the rest did not. A diff rewinding this change removes the whole new branch.
    /// Versions do not depend on it.
    pub created_from: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// The value at the path before and after (`None`: absent).
    Replace {
        old: Option<Value>,
        new: Option<Value>,
    },
    /// `value` pushed onto the array at the path, at `index`, after the array's first
    /// `dropped.len()` elements (`dropped`) went to make room. Only what the push added and
    /// removed, not the whole array: the log keeps changes, and must grow with the work done.
    Append {
        value: Value,
        index: usize,
        dropped: Vec<Value>,
    },
}

impl Change {
    /// The value this change writes, if any (the new value, or the appended element).
    pub fn written(&self) -> Option<&Value> {
        match &self.edit {
            Edit::Replace { new, .. } => new.as_ref(),
            Edit::Append { value, .. } => Some(value),
        }
    }

    /// How many bytes the serialized document grows by (negative: shrinks); for an append,
    /// without serializing the array.
    pub(super) fn growth(&self) -> i64 {
        let size = |v: &Value| v.to_string().len() as i64;
        match &self.edit {
            Edit::Replace { old, new } => {
                new.as_ref().map_or(0, size) - old.as_ref().map_or(0, size)
            }
            Edit::Append {
                value,
                index,
                dropped,
            } => {
                // An array is its brackets, its elements and a comma between each two.
                let commas = |n: usize| n.saturating_sub(1) as i64;
                size(value) - dropped.iter().map(size).sum::<i64>() + commas(index + 1)
                    - commas(index + dropped.len())
            }
        }
    }
}

/// The document and the versions of what was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    doc: Value,
    /// Paths written, with the id of the event that last wrote each.
    written: BTreeMap<Path, i64>,
}

impl Default for Context {
    fn default() -> Self {
        Context::new()
    }
}

impl Context {
    pub fn new() -> Context {
        Context {
            doc: Value::Object(Map::new()),
            written: BTreeMap::new(),
        }
    }

    /// Rebuilds a context from a snapshot (document plus versions).
    pub fn from_parts(doc: Value, written: BTreeMap<Path, i64>) -> Context {
        Context { doc, written }
    }

    pub fn document(&self) -> &Value {
        &self.doc
    }

    pub fn versions(&self) -> &BTreeMap<Path, i64> {
        &self.written
    }

    pub fn get(&self, path: &Path) -> Option<&Value> {
        let mut node = &self.doc;
        for s in &path.0 {
            node = match s {
                Segment::Key(k) => node.as_object()?.get(k)?,
                Segment::Index(i) => node.as_array()?.get(*i)?,
            };
        }
        Some(node)
    }

    /// The version of `path`: the newest write to it, above it or below it (0: never written).
    pub fn version(&self, path: &Path) -> i64 {
        self.written
            .iter()
            .filter(|(p, _)| p.overlaps(path))
            .map(|(_, v)| *v)
            .max()
            .unwrap_or(0)
    }

    fn check_expected(&self, path: &Path, expected: Option<i64>) -> Result<(), DomainError> {
        match expected {
            Some(e) if e != self.version(path) => Err(DomainError::conflict(
                "version_conflict",
                format!(
                    "{path} is at version {}, not {e}: someone changed it; read it again and retry",
                    self.version(path)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Checks a write of `value` at `path` and returns the change it makes. Missing objects on
    /// the way are created; a non-object in the way, or an index past the end, is an error.
    pub fn plan_set(
        &self,
        path: &Path,
        value: Value,
        expected: Option<i64>,
    ) -> Result<Change, DomainError> {
        if path.is_root() && !value.is_object() {
            return Err(DomainError::invalid(
                "value",
                "the whole context must be a JSON object",
            ));
        }
        self.check_expected(path, expected)?;
        self.check_reachable(path)?;
        Ok(Change {
            path: path.clone(),
            edit: Edit::Replace {
                old: self.get(path).cloned(),
                new: Some(value),
            },
            created_from: self.missing_from(path),
        })
    }

    /// How many leading segments of `path`'s parents exist, if some do not (the write will
    /// create the rest).
    fn missing_from(&self, path: &Path) -> Option<usize> {
        (1..path.0.len())
            .find(|n| self.get(&Path(path.0[..*n].to_vec())).is_none())
            .map(|n| n - 1)
    }

    /// Appends to the array at `path` (created when absent).
    pub fn plan_append(
        &self,
        path: &Path,
        value: Value,
        expected: Option<i64>,
    ) -> Result<Change, DomainError> {
        self.check_expected(path, expected)?;
        let index = match self.get(path) {
            None => None,
            Some(Value::Array(a)) => Some(a.len()),
            Some(other) => {
                return Err(DomainError::invalid(
                    "path",
                    format!(
                        "{path} holds {}, not an array: append needs an array",
                        kind(other)
                    ),
                ));
            }
        };
        self.check_reachable(path)?;
        let edit = match index {
            Some(index) => Edit::Append {
                value,
                index,
                dropped: Vec::new(),
            },
            // The first element: the array itself is new, and as small as the element.
            None => Edit::Replace {
                old: None,
                new: Some(Value::Array(vec![value])),
            },
        };
        Ok(Change {
            path: path.clone(),
            edit,
            created_from: self.missing_from(path),
        })
    }

    pub fn plan_delete(&self, path: &Path, expected: Option<i64>) -> Result<Change, DomainError> {
        if path.is_root() {
            return Err(DomainError::invalid(
                "path",
                "the whole context cannot be deleted; delete its keys",
            ));
        }
        self.check_expected(path, expected)?;
        let old = self
            .get(path)
            .cloned()
            .ok_or_else(|| DomainError::NotFound(format!("nothing at {path}")))?;
        Ok(Change {
            path: path.clone(),
            edit: Edit::Replace {
                old: Some(old),
                new: None,
            },
            created_from: None,
        })
    }

    /// Deep merge of `updates` (an object) into the document: every leaf (a non-object value)
    /// of `updates` is set at its path; objects merge key by key. Returns one change per leaf
    /// that actually differs.
    pub fn plan_merge(&self, updates: &Value) -> Result<Vec<Change>, DomainError> {
        let Value::Object(map) = updates else {
            return Err(DomainError::invalid(
                "updates",
                "updates must be a JSON object",
            ));
        };
        let mut changes = Vec::new();
        self.merge_into(&Path::root(), map, &mut changes)?;
        Ok(changes)
    }

    fn merge_into(
        &self,
        at: &Path,
        map: &Map<String, Value>,
        out: &mut Vec<Change>,
    ) -> Result<(), DomainError> {
        for (k, v) in map {
            let path = at.child(Segment::Key(k.clone()));
            if path.0.len() > MAX_DEPTH {
                return Err(DomainError::invalid(
                    "updates",
                    format!("deeper than {MAX_DEPTH} levels"),
                ));
            }
            match (v, self.get(&path)) {
                (Value::Object(inner), Some(Value::Object(_))) => {
                    self.merge_into(&path, inner, out)?
                }
                (_, old) if old != Some(v) => {
                    self.check_reachable(&path)?;
                    // Merges descend only into objects that exist: the parent is there.
                    out.push(Change {
                        path,
                        edit: Edit::Replace {
                            old: old.cloned(),
                            new: Some(v.clone()),
                        },
                        created_from: None,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Every parent of `path` is an object (or absent, to be created), or an array holding the
    /// indexed element.
    fn check_reachable(&self, path: &Path) -> Result<(), DomainError> {
        let mut node = Some(&self.doc);
        for (i, s) in path.0.iter().enumerate() {
            let Some(n) = node else {
                // Absent so far: only keys can be created.
                if matches!(s, Segment::Index(_)) {
                    return Err(DomainError::invalid(
                        "path",
                        format!("{path}: no array at {}", Path(path.0[..i].to_vec())),
                    ));
                }
                continue;
            };
            node = match (s, n) {
                (Segment::Key(k), Value::Object(o)) => o.get(k),
                (Segment::Index(ix), Value::Array(a)) => {
                    if *ix >= a.len() && i + 1 < path.0.len() || *ix > a.len() {
                        return Err(DomainError::invalid(
                            "path",
                            format!(
                                "{path}: index {ix} is past the end of an array of {}",
                                a.len()
                            ),
                        ));
                    }
                    a.get(*ix)
                }
                (_, other) => {
                    return Err(DomainError::invalid(
                        "path",
                        format!(
                            "{path}: {} holds {}",
                            Path(path.0[..i].to_vec()),
                            kind(other)
                        ),
                    ));
                }
            };
        }
        Ok(())
    }

    /// Applies a planned (and committed) change written by event `event_id`.
    pub fn apply(&mut self, change: &Change, event_id: i64) {
        match &change.edit {
            Edit::Replace { new: Some(v), .. } => put(&mut self.doc, &change.path.0, v.clone()),
            Edit::Replace { new: None, .. } => remove(&mut self.doc, &change.path.0),
            Edit::Append {
                value,
                index,
                dropped,
            } => push(&mut self.doc, &change.path, value, *index, dropped.len()),
        }
        // Versions below a replaced or deleted path are folded into the path's own entry.
        self.written
            .retain(|p, _| !(p.within(&change.path) && p != &change.path));
        self.written.insert(change.path.clone(), event_id);
    }

    /// Serialized size of the document in bytes.
    pub fn size(&self) -> usize {
        self.doc.to_string().len()
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn put(node: &mut Value, path: &[Segment], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *node = value;
        return;
    };
    match first {
        Segment::Key(k) => {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            let child = node
                .as_object_mut()
                .expect("made an object above")
                .entry(k.clone())
                .or_insert(Value::Null);
            if rest.is_empty() {
                *child = value;
            } else {
                if child.is_null() {
                    *child = Value::Object(Map::new());
                }
                put(child, rest, value);
            }
        }
        Segment::Index(i) => {
            if let Some(a) = node.as_array_mut() {
                if *i == a.len() {
                    a.push(Value::Null);
                }
                if let Some(child) = a.get_mut(*i) {
                    put(child, rest, value);
                }
            }
        }
    }
}

/// The node at `path`, if there is one.
fn node_mut<'a>(node: &'a mut Value, path: &[Segment]) -> Option<&'a mut Value> {
    path.iter().try_fold(node, |n, s| match (s, n) {
        (Segment::Key(k), Value::Object(o)) => o.get_mut(k),
        (Segment::Index(i), Value::Array(a)) => a.get_mut(*i),
        _ => None,
    })
}

pub(super) fn remove(node: &mut Value, path: &[Segment]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    match (last, node_mut(node, parents)) {
        (Segment::Key(k), Some(Value::Object(o))) => {
            o.remove(k);
        }
        (Segment::Index(i), Some(Value::Array(a))) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
}

/// Undoes a delete: a deleted array element goes back at its index, moving the later ones up
/// (`put` would overwrite the element that took its place).
pub(super) fn reinsert(node: &mut Value, path: &[Segment], value: Value) {
    if let Some((Segment::Index(i), parents)) = path.split_last() {
        if let Some(Value::Array(a)) = node_mut(node, parents)
            && *i <= a.len()
        {
            a.insert(*i, value);
        }
        return;
    }
    put(node, path, value);
}

/// Replays an append: drops the first `dropped` elements, pushes `value`. Planned against
/// the same document, the array is there with `index + dropped` elements; if a change before
/// was lost (an unreadable event skipped at load), the element still goes at the end.
fn push(doc: &mut Value, path: &Path, value: &Value, index: usize, dropped: usize) {
    match node_mut(doc, &path.0) {
        Some(Value::Array(a)) => {
            if a.len() != index + dropped {
                log::warn!(
                    "context replay: {path} holds {} elements, the append expected {}",
                    a.len(),
                    index + dropped
                );
            }
            a.drain(..dropped.min(a.len()));
            a.push(value.clone());
        }
        _ => {
            log::warn!("context replay: no array at {path} to append to; starting one");
            put(doc, &path.0, Value::Array(vec![value.clone()]));
        }
    }
}

/// Undoes an append: takes the element out of `index` and puts the dropped ones back in front.
/// An array without that element (the diff raced a write) is left alone.
pub(super) fn unpush(doc: &mut Value, path: &[Segment], index: usize, dropped: &[Value]) {
    if let Some(Value::Array(a)) = node_mut(doc, path)
        && index < a.len()
    {
        a.remove(index);
        a.splice(0..0, dropped.iter().cloned());
    }
}

#[cfg(test)]
#[path = "context_tests.rs"]
mod tests;

/// Largest single value written, serialized.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;
/// Largest context document of one session, serialized.
pub const MAX_CONTEXT_BYTES: usize = 4 * 1024 * 1024;

/// A write to the context, as the tools and endpoints ask for it.
#[derive(Debug, Clone, PartialEq)]
pub enum ContextOp {
    Set {
        path: Path,
        value: Value,
        expected: Option<i64>,
    },
    Append {
        path: Path,
        value: Value,
        expected: Option<i64>,
    },
    Delete {
        path: Path,
        expected: Option<i64>,
    },
    /// Deep merge of an object (the concept's `context/sync`).
    Merge {
        updates: Value,
    },
}

impl Context {
    /// Plans `op`: the changes it makes, within the size limits. An op that changes nothing
    /// (a merge of values already there) yields no changes.
    pub fn plan(&self, op: &ContextOp) -> Result<Vec<Change>, DomainError> {
        let checked = |v: &Value| check_value_size(v.to_string().len());
        let changes = match op {
            ContextOp::Set {
                path,
                value,
                expected,
            } => {
                checked(value)?;
                vec![self.plan_set(path, value.clone(), *expected)?]
            }
            ContextOp::Append {
                path,
                value,
                expected,
            } => {
                checked(value)?;
                vec![self.plan_append(path, value.clone(), *expected)?]
            }
            ContextOp::Delete { path, expected } => vec![self.plan_delete(path, *expected)?],
            ContextOp::Merge { updates } => {
                checked(updates)?;
                self.plan_merge(updates)?
            }
        };
        self.check_room(&changes)?;
        Ok(changes)
    }

    /// The document stays within `MAX_CONTEXT_BYTES` after `changes`.
    fn check_room(&self, changes: &[Change]) -> Result<(), DomainError> {
        let grows: i64 = changes.iter().map(Change::growth).sum();
        if self.size() as i64 + grows > MAX_CONTEXT_BYTES as i64 {
            return Err(DomainError::conflict(
                "context_full",
                format!(
                    "the session's context would pass {MAX_CONTEXT_BYTES} bytes; delete or summarize something first"
                ),
            ));
        }
        Ok(())
    }
}

/// A value written serializes to `bytes`: within `MAX_VALUE_BYTES`?
fn check_value_size(bytes: usize) -> Result<(), DomainError> {
    if bytes > MAX_VALUE_BYTES {
        return Err(DomainError::invalid(
            "value",
            format!(
                "the value is larger than {MAX_VALUE_BYTES} bytes; store a summary or a reference"
            ),
        ));
    }
    Ok(())
}

/// Entries kept per working-memory list; the oldest go first.
pub const MEMORY_LIMIT: usize = 50;

/// What working memory holds (the concept's `workingMemory`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum MemoryKind {
    Symbol,
    File,
    Breakpoint,
}

impl MemoryKind {
    pub fn key(self) -> &'static str {
        match self {
            MemoryKind::Symbol => "recentSymbols",
            MemoryKind::File => "openFiles",
            MemoryKind::Breakpoint => "breakpoints",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// A context write as the surfaces ask for it: a plain operation, or one of the concept's
/// shaped sections (working memory, per-AI notes, discoveries).
#[derive(Debug, Clone, PartialEq)]
pub enum ContextRequest {
    Op(ContextOp),
    MemoryPush {
        kind: MemoryKind,
        entry: Value,
    },
    MemoryClear {
        kind: Option<MemoryKind>,
    },
    /// `aiNotes.<aiId>` merged with `notes` (observations, preferences…); only the AI itself.
    Notes {
        ai_id: String,
        notes: Value,
    },
    Discovery {
        finding: String,
        location: Option<String>,
        severity: Severity,
    },
    /// A test/build/merge/lint result (`domain::monitor`), kept at `monitoring.<kind>`.
    StatusReport(super::monitor::StatusReport),
}

impl From<ContextOp> for ContextRequest {
    fn from(op: ContextOp) -> Self {
        ContextRequest::Op(op)
    }
}

fn key_path(keys: &[&str]) -> Path {
    Path(keys.iter().map(|k| Segment::Key((*k).to_owned())).collect())
}

impl Context {
    /// The working-memory list of `kind`, newest last.
    pub fn memory(&self, kind: MemoryKind) -> Vec<Value> {
        self.get(&key_path(&["workingMemory", kind.key()]))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// Plans a push: the list with `entry` added and the oldest dropped past `MEMORY_LIMIT`.
    pub fn plan_memory_push(
        &self,
        kind: MemoryKind,
        entry: Value,
    ) -> Result<Vec<Change>, DomainError> {
        self.plan_capped_push(
            &key_path(&["workingMemory", kind.key()]),
            entry,
            MEMORY_LIMIT,
        )
    }

    /// Pushes `entry` onto the list at `path`, dropping the oldest entries past `limit` (at
    /// least 1). Checked as the set of the whole new list it amounts to (value and context
    /// limits), recorded as an append: the entry and what it pushed out.
    pub(super) fn plan_capped_push(
        &self,
        path: &Path,
        entry: Value,
        limit: usize,
    ) -> Result<Vec<Change>, DomainError> {
        let Some(list @ Value::Array(items)) = self.get(path) else {
            // No list there (or not a list, which the push replaces): a new list, as a set.
            return self.plan(&ContextOp::Set {
                path: path.clone(),
                value: Value::Array(vec![entry]),
                expected: None,
            });
        };
        let excess = (items.len() + 1).saturating_sub(limit.max(1));
        let change = Change {
            path: path.clone(),
            edit: Edit::Append {
                value: entry,
                index: items.len() - excess,
                dropped: items[..excess].to_vec(),
            },
            created_from: None,
        };
        check_value_size((list.to_string().len() as i64 + change.growth()) as usize)?;
        let changes = vec![change];
        self.check_room(&changes)?;
        Ok(changes)
    }

    /// Plans clearing one list, or all of working memory; nothing to clear is no change.
    pub fn plan_memory_clear(&self, kind: Option<MemoryKind>) -> Result<Vec<Change>, DomainError> {
        let path = match kind {
            Some(k) => key_path(&["workingMemory", k.key()]),
            None => key_path(&["workingMemory"]),
        };
        if self.get(&path).is_none() {
            return Ok(Vec::new());
        }
        self.plan(&ContextOp::Delete {
            path,
            expected: None,
        })
    }
}

/// The newest `limit` entries of each working-memory list (or of `kind`), newest last.
pub fn recent_memory(memory: &Value, kind: Option<MemoryKind>, limit: usize) -> Value {
    let kinds = kind.map_or(
        vec![MemoryKind::Symbol, MemoryKind::File, MemoryKind::Breakpoint],
        |k| vec![k],
    );
    let lists: Map<String, Value> = kinds
        .into_iter()
        .map(|k| {
            let list = memory
                .get(k.key())
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let skip = list.len().saturating_sub(limit);
            (k.key().to_owned(), Value::Array(list[skip..].to_vec()))
        })
        .collect();
    Value::Object(lists)
}

/// Context changes between two snapshots: a restarted hub replays at most this many.
pub const SNAPSHOT_EVERY: u32 = 100;

impl Context {
    /// The whole context (document and versions) as stored in a snapshot.
    pub fn to_snapshot(&self) -> Value {
        let versions: Map<String, Value> = self
            .written
            .iter()
            .map(|(p, v)| (p.to_string(), Value::from(*v)))
            .collect();
        serde_json::json!({ "doc": self.doc, "versions": versions })
    }

    pub fn from_snapshot(v: &Value) -> Result<Context, DomainError> {
        let bad = || DomainError::invalid("snapshot", "stored context snapshot is unreadable");
        let doc = v
            .get("doc")
            .filter(|d| d.is_object())
            .cloned()
            .ok_or_else(bad)?;
        let mut written = BTreeMap::new();
        for (p, id) in v
            .get("versions")
            .and_then(Value::as_object)
            .ok_or_else(bad)?
        {
            // One unreadable entry costs only its version (the path reads as unwritten), never
            // the whole session.
            match (Path::parse(p), id.as_i64()) {
                (Ok(path), Some(id)) => {
                    written.insert(path, id);
                }
                _ => log::warn!("context snapshot: skipping unreadable version {p:?}"),
            }
        }
        Ok(Context { doc, written })
    }
}

#[cfg(test)]
mod op_tests {
    use super::super::context_log::{changes_from_json, changes_to_json};
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_round_trip_through_json() {
        let c = Context::new();
        let changes = c
            .plan(&ContextOp::Merge {
                updates: json!({"a": {"b": 1}, "c": [1, 2]}),
            })
            .unwrap();
        let back = changes_from_json(&changes_to_json(&changes)).unwrap();
        assert_eq!(back, changes);
    }

    #[test]
    fn snapshots_round_trip() {
        let mut c = Context::new();
        let ch = c
            .plan(&ContextOp::Merge {
                updates: json!({"a": {"b.c": [1, {"d": 2}]}}),
            })
            .unwrap();
        for x in &ch {
            c.apply(x, 7);
        }
        assert_eq!(Context::from_snapshot(&c.to_snapshot()).unwrap(), c);
        assert!(Context::from_snapshot(&json!({"doc": []})).is_err());
    }

    #[test]
    fn only_changes_the_loader_can_read_back_are_storable() {
        let mut c = Context::new();
        for x in &c
            .plan(&ContextOp::Merge {
                updates: json!({"a": {"b": 1}}),
            })
            .unwrap()
        {
            c.apply(x, 1);
        }
        let storable = |updates: Value| {
            c.plan(&ContextOp::Merge { updates })
                .and_then(|ch| check_storable(&ch))
        };
        assert!(storable(json!({"ok.key [1]": {"x\\y": 2}})).is_ok());
        for bad in [
            json!({"": 3}),
            json!({"x\ny": 1}),
            json!({"a": {"": 1}}),
            json!({"new": {"deep": {"": 1}}}),
            json!({"a": {"k": [{"\u{0}": 1}]}}),
            json!({"a": {"long": {"k".repeat(MAX_KEY_LEN + 1): 1}}}),
            json!({"p".repeat(300): {"q".repeat(250): 1}}),
        ] {
            assert!(storable(bad.clone()).is_err(), "{bad}");
        }
        // Whatever passes survives the trip through the log's text form.
        let ch = c
            .plan(&ContextOp::Merge {
                updates: json!({"a": {"b.c]": {"[0]": true}}}),
            })
            .unwrap();
        check_storable(&ch).unwrap();
        assert_eq!(changes_from_json(&changes_to_json(&ch)).unwrap(), ch);
    }

    #[test]
    fn limits_are_enforced() {
        let c = Context::new();
        let big = Value::String("x".repeat(MAX_VALUE_BYTES + 1));
        let op = ContextOp::Set {
            path: Path::parse("a").unwrap(),
            value: big,
            expected: None,
        };
        assert!(matches!(
            c.plan(&op),
            Err(DomainError::Invalid { field: "value", .. })
        ));
    }
}
