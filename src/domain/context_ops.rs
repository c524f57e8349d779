//! Writes to the shared context as the tools ask for them (`ContextOp`: set, append, delete,
//! sync, memory, notes, discoveries), their limits, and how each becomes changes to the
//! document (the document and its paths are in `context`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::DomainError;
use super::context::*;

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
        if !self.has_room_for(grows) {
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
        Ok(Context::from_parts(doc, written))
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
