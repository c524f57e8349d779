//! Diffs of the shared context: what differs between the document as it was at a point of the
//! log and now, found by rewinding the logged changes from the current document, newest first.

use std::collections::BTreeMap;

use serde_json::Value;

use super::context::{Change, Edit, Path, Segment, put, reinsert, remove, unpush};

/// What changed between two points of the log, keyed by canonical path.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Diff {
    pub added: BTreeMap<String, DiffEntry>,
    pub modified: BTreeMap<String, DiffEntry>,
    pub removed: BTreeMap<String, DiffEntry>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
    /// Who changed it last.
    pub by: Option<String>,
    /// Event id of the last change.
    pub event_id: i64,
}

/// A change as the log holds it: what changed, who did it, in which event.
pub type LoggedChange = (Change, Option<String>, i64);

/// What differs between the document as it was before `changes` (oldest first, all of them
/// after the point of comparison) and `current`, leaf by leaf: objects are compared key by key,
/// anything else as a whole value. Each entry names who changed it last and in which event.
pub fn diff_since(current: &Value, changes: &[LoggedChange]) -> Diff {
    let mut before = current.clone();
    for (c, _, _) in changes.iter().rev() {
        match &c.edit {
            Edit::Replace {
                old: Some(v),
                new: None,
            } => reinsert(&mut before, &c.path.0, v.clone()),
            Edit::Replace {
                old: Some(v),
                new: Some(_),
            } => put(&mut before, &c.path.0, v.clone()),
            Edit::Replace { old: None, .. } => {
                let created = c.created_from.map_or(c.path.0.len(), |n| n + 1);
                remove(&mut before, &c.path.0[..created])
            }
            Edit::Append { index, dropped, .. } => unpush(&mut before, &c.path.0, *index, dropped),
        }
    }
    let mut entries = Vec::new();
    leaf_diff(&Path::root(), Some(&before), Some(current), &mut entries);
    let mut diff = Diff::default();
    for (path, old, new) in entries {
        let last = changes
            .iter()
            .rev()
            .find(|(c, _, _)| c.path.overlaps(&path));
        let entry = DiffEntry {
            old: old.clone(),
            new: new.clone(),
            by: last.and_then(|(_, by, _)| by.clone()),
            event_id: last.map_or(0, |(_, _, id)| *id),
        };
        let key = path.to_string();
        match (old, new) {
            (None, Some(_)) => diff.added.insert(key, entry),
            (Some(_), None) => diff.removed.insert(key, entry),
            _ => diff.modified.insert(key, entry),
        };
    }
    diff
}

fn leaf_diff(
    at: &Path,
    old: Option<&Value>,
    new: Option<&Value>,
    out: &mut Vec<(Path, Option<Value>, Option<Value>)>,
) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                leaf_diff(&at.child(Segment::Key(k.clone())), a.get(k), b.get(k), out);
            }
        }
        (a, b) if a != b => out.push((at.clone(), a.cloned(), b.cloned())),
        _ => {}
    }
}
