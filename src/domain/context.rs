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

use std::sync::atomic::{AtomicUsize, Ordering};

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
    /// About how many bytes this change takes in the log: its path, and what it wrote and
    /// replaced (the log keeps both, for diffs).
    pub fn logged_bytes(&self) -> u64 {
        let size = |v: &Value| v.to_string().len() as u64;
        let values = match &self.edit {
            Edit::Replace { old, new } => {
                old.as_ref().map_or(0, size) + new.as_ref().map_or(0, size)
            }
            Edit::Append { value, dropped, .. } => {
                size(value) + dropped.iter().map(size).sum::<u64>()
            }
        };
        self.path.0.len() as u64 * 8 + 16 + values
    }

    /// At least how many bytes the serialized document grows by: `growth`, plus for a value
    /// written where there was none the key, quotes, colon and comma around it, and the braces
    /// of the objects it created on the way (a key counted twice over, for escapes). A
    /// deletion's `growth` already counts less than it removes.
    pub fn growth_at_most(&self) -> i64 {
        let placed = match &self.edit {
            Edit::Replace {
                old: None,
                new: Some(_),
            } => true,
            // A new array, or a first element.
            Edit::Append { index: 0, .. } => true,
            _ => false,
        };
        if !placed || self.path.0.is_empty() {
            return self.growth();
        }
        let first_new = self.created_from.unwrap_or(self.path.0.len() - 1);
        let around: i64 = self.path.0[first_new.min(self.path.0.len() - 1)..]
            .iter()
            .map(|s| match s {
                Segment::Key(k) => 2 * k.len() as i64 + 4 + 2,
                Segment::Index(_) => 1 + 2,
            })
            .sum();
        // An append's brackets of a new array.
        self.growth() + around + 2
    }

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
#[derive(Debug)]
pub struct Context {
    pub(super) doc: Value,
    /// Paths written, with the id of the event that last wrote each.
    pub(super) written: BTreeMap<Path, i64>,
    /// At least the document's serialized size: `apply` adds each change's
    /// `growth_at_most`, and `size` sets it exactly. So the size check of every write
    /// (`has_room_for`) serializes the whole document only when this bound says it might not
    /// fit; before, every context write serialized it, a cost that grew with the document.
    size_bound: AtomicUsize,
}

impl Clone for Context {
    fn clone(&self) -> Self {
        Context {
            doc: self.doc.clone(),
            written: self.written.clone(),
            size_bound: AtomicUsize::new(self.size_bound.load(Ordering::Relaxed)),
        }
    }
}

/// The document and the versions; the size bound is bookkeeping.
impl PartialEq for Context {
    fn eq(&self, other: &Self) -> bool {
        self.doc == other.doc && self.written == other.written
    }
}

impl Default for Context {
    fn default() -> Self {
        Context::new()
    }
}

impl Context {
    pub fn new() -> Context {
        Context::from_parts(Value::Object(Map::new()), BTreeMap::new())
    }

    /// Rebuilds a context from a snapshot (document plus versions).
    pub fn from_parts(doc: Value, written: BTreeMap<Path, i64>) -> Context {
        let size = doc.to_string().len();
        Context {
            doc,
            written,
            size_bound: AtomicUsize::new(size),
        }
    }

    pub fn document(&self) -> &Value {
        &self.doc
    }

    pub fn versions(&self) -> &BTreeMap<Path, i64> {
        &self.written
    }

    /// The written paths that are `path` or lie inside it: one range of the map, since the
    /// paths that extend a path follow it in the order of paths.
    fn written_within<'a>(&'a self, path: &'a Path) -> impl Iterator<Item = (&'a Path, &'a i64)> {
        use std::ops::Bound;
        self.written
            .range::<Path, _>((Bound::Included(path), Bound::Unbounded))
            .take_while(move |(p, _)| p.within(path))
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
    /// Looks up the paths above it one by one and the paths within it as one range: not a scan
    /// of every written path, which every CAS and every read paid before.
    pub fn version(&self, path: &Path) -> i64 {
        let above = (0..path.0.len())
            .filter_map(|n| self.written.get(&Path(path.0[..n].to_vec())))
            .copied();
        let within = self.written_within(path).map(|(_, v)| *v);
        above.chain(within).max().unwrap_or(0)
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
        let below: Vec<Path> = self
            .written_within(&change.path)
            .map(|(p, _)| p.clone())
            .filter(|p| *p != change.path)
            .collect();
        for p in below {
            self.written.remove(&p);
        }
        self.written.insert(change.path.clone(), event_id);
        let bound = self.size_bound.get_mut();
        *bound = (*bound as i64 + change.growth_at_most()).max(0) as usize;
    }

    /// Serialized size of the document in bytes (serializes it).
    pub fn size(&self) -> usize {
        let size = self.doc.to_string().len();
        self.size_bound.store(size, Ordering::Relaxed);
        size
    }

    /// About how many bytes a snapshot of this context stores: the document and a versions
    /// entry per written path (taken as 24 bytes: asked on every write, it must not walk them).
    pub fn snapshot_size_estimate(&self) -> u64 {
        (self.size_bound() + self.written.len() * 24) as u64
    }

    /// At least `size()`, without serializing the document.
    pub fn size_bound(&self) -> usize {
        self.size_bound.load(Ordering::Relaxed)
    }

    /// Whether the document, grown by `grows` bytes, stays within `MAX_CONTEXT_BYTES`: by
    /// the bound if it says so, else by the exact size.
    pub fn has_room_for(&self, grows: i64) -> bool {
        let fits =
            |size: usize| size as i64 + grows <= super::context_ops::MAX_CONTEXT_BYTES as i64;
        fits(self.size_bound()) || fits(self.size())
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

pub use super::context_ops::*;
