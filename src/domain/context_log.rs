//! Context changes as the event log stores them: the `changes` array of every context event's
//! payload, read back by the loader (replay after the latest snapshot) and by the diff (which
//! rewinds them from the current document).
//!
//! Two forms of entry:
//! - a replace, `{path, old?, new?, createdFrom?}`: the value at `path` before and after (a
//!   missing key: no value);
//! - an append, `{path, appended, index, dropped?}`: the element pushed onto the array at
//!   `path`, the index it landed at, and the elements a capped list dropped from its front to
//!   make room (oldest first; absent when none).
//!
//! Appends are not recorded as replaces of the whole array: the n-th append would then carry
//! the n-1 elements before it twice, and a session's log would grow with the square of its work.
//! The dropped elements are kept whole because a diff that rewinds the push must put them back,
//! and they are no longer in the current document.
//!
//! Hubs before this form recorded every change as a replace (an append as the whole array
//! before and after); the reader still takes that form, so their logs load as they did.

use serde_json::{Map, Value};

use super::DomainError;
use super::context::{Change, Edit, Path};

/// Changes as an event payload, with canonical path text.
pub fn changes_to_json(changes: &[Change]) -> Value {
    Value::Array(
        changes
            .iter()
            .map(|c| {
                let mut o = Map::new();
                o.insert("path".into(), Value::String(c.path.to_string()));
                match &c.edit {
                    Edit::Replace { old, new } => {
                        if let Some(v) = old {
                            o.insert("old".into(), v.clone());
                        }
                        if let Some(v) = new {
                            o.insert("new".into(), v.clone());
                        }
                    }
                    Edit::Append {
                        value,
                        index,
                        dropped,
                    } => {
                        o.insert("appended".into(), value.clone());
                        o.insert("index".into(), (*index).into());
                        if !dropped.is_empty() {
                            o.insert("dropped".into(), Value::Array(dropped.clone()));
                        }
                    }
                }
                if let Some(n) = c.created_from {
                    o.insert("createdFrom".into(), n.into());
                }
                Value::Object(o)
            })
            .collect(),
    )
}

/// Reads back what `changes_to_json` wrote, or what a hub before appends wrote (replaces only).
pub fn changes_from_json(v: &Value) -> Result<Vec<Change>, DomainError> {
    let bad = || DomainError::invalid("changes", "stored context change is unreadable");
    let count = |n: &Value| n.as_u64().map(|n| n as usize).ok_or_else(bad);
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|c| {
            let path = Path::parse(c.get("path").and_then(Value::as_str).ok_or_else(bad)?)?;
            let created_from = c.get("createdFrom").map(count).transpose()?;
            let edit = match c.get("appended") {
                // An entry is one form or the other: both would mean a writer this reader
                // does not know.
                Some(_) if c.get("old").is_some() || c.get("new").is_some() => return Err(bad()),
                Some(value) => Edit::Append {
                    value: value.clone(),
                    index: count(c.get("index").ok_or_else(bad)?)?,
                    dropped: match c.get("dropped") {
                        None => Vec::new(),
                        Some(d) => d.as_array().ok_or_else(bad)?.clone(),
                    },
                },
                None => Edit::Replace {
                    old: c.get("old").cloned(),
                    new: c.get("new").cloned(),
                },
            };
            Ok(Change {
                path,
                edit,
                created_from,
            })
        })
        .collect()
}

/// The entry a hub before compact appends wrote for `change`: an append as the whole array
/// before and after. `at` is the context just before the change.
#[cfg(test)]
pub(super) fn legacy_entry(change: &Change, at: &super::context::Context) -> Value {
    let (old, new) = match &change.edit {
        Edit::Replace { old, new } => (old.clone(), new.clone()),
        Edit::Append { .. } => {
            let mut after = at.clone();
            after.apply(change, 0);
            (
                at.get(&change.path).cloned(),
                after.get(&change.path).cloned(),
            )
        }
    };
    let mut o = Map::new();
    o.insert("path".into(), Value::String(change.path.to_string()));
    if let Some(v) = old {
        o.insert("old".into(), v);
    }
    if let Some(v) = new {
        o.insert("new".into(), v);
    }
    if let Some(n) = change.created_from {
        o.insert("createdFrom".into(), n.into());
    }
    Value::Object(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::context::{Context, ContextOp, LoggedChange, diff_since};
    use serde_json::json;

    fn p(s: &str) -> Path {
        Path::parse(s).unwrap()
    }

    /// Payloads as a hub before compact appends stored them (discoveries, then a working-memory
    /// list set and pushed full), as (event id, actor, payload text).
    const OLD_LOG: [(i64, &str, &str); 4] = [
        (
            1,
            "claude",
            r#"{"discovery":{"finding":"leak"},"changes":[{"path":"activeWork.recentDiscoveries","new":[{"finding":"leak"}],"createdFrom":0}]}"#,
        ),
        (
            2,
            "gemini",
            r#"{"discovery":{"finding":"n+1"},"changes":[{"path":"activeWork.recentDiscoveries","old":[{"finding":"leak"}],"new":[{"finding":"leak"},{"finding":"n+1"}]}]}"#,
        ),
        (
            3,
            "claude",
            r#"{"changes":[{"path":"workingMemory.recentSymbols","new":["A","B"],"createdFrom":0}]}"#,
        ),
        (
            4,
            "gemini",
            r#"{"changes":[{"path":"workingMemory.recentSymbols","old":["A","B"],"new":["B","C"]}]}"#,
        ),
    ];

    fn read_log(log: &[(i64, &str, &str)]) -> Vec<LoggedChange> {
        let mut out = Vec::new();
        for (id, by, text) in log {
            let payload: Value = serde_json::from_str(text).unwrap();
            for c in changes_from_json(&payload["changes"]).unwrap() {
                out.push((c, Some((*by).to_owned()), *id));
            }
        }
        out
    }

    fn replay(log: &[LoggedChange]) -> Context {
        let mut c = Context::new();
        for (ch, _, id) in log {
            c.apply(ch, *id);
        }
        c
    }

    #[test]
    fn old_form_payloads_still_load_and_diff() {
        let old = read_log(&OLD_LOG);
        let loaded = replay(&old);
        assert_eq!(
            loaded.document(),
            &json!({
                "activeWork": {"recentDiscoveries": [{"finding": "leak"}, {"finding": "n+1"}]},
                "workingMemory": {"recentSymbols": ["B", "C"]},
            })
        );
        assert_eq!(loaded.version(&p("activeWork.recentDiscoveries")), 2);
        assert_eq!(loaded.version(&p("workingMemory.recentSymbols")), 4);
        let diff = diff_since(loaded.document(), &old[1..]);
        let d = &diff.modified["activeWork.recentDiscoveries"];
        assert_eq!(d.old, Some(json!([{"finding": "leak"}])));
        assert_eq!(
            d.new,
            Some(json!([{"finding": "leak"}, {"finding": "n+1"}]))
        );
        assert_eq!((d.by.as_deref(), d.event_id), (Some("gemini"), 2));
        assert_eq!(
            diff.added["workingMemory"].new,
            Some(json!({"recentSymbols": ["B", "C"]}))
        );

        // The same writes made today are stored compactly, and load and diff the same.
        let mut c = Context::new();
        let mut new_log = Vec::new();
        let mut texts = Vec::new();
        let (discoveries, symbols) = (
            p("activeWork.recentDiscoveries"),
            p("workingMemory.recentSymbols"),
        );
        for (id, by) in [(1, "claude"), (2, "gemini"), (3, "claude"), (4, "gemini")] {
            let changes = match id {
                1 | 2 => c.plan(&ContextOp::Append {
                    path: discoveries.clone(),
                    value: json!({"finding": if id == 1 { "leak" } else { "n+1" }}),
                    expected: None,
                }),
                3 => c.plan(&ContextOp::Set {
                    path: symbols.clone(),
                    value: json!(["A", "B"]),
                    expected: None,
                }),
                _ => c.plan_capped_push(&symbols, json!("C"), 2),
            }
            .unwrap();
            for ch in &changes {
                c.apply(ch, id);
            }
            texts.push(json!({ "changes": changes_to_json(&changes) }).to_string());
            new_log.extend(changes.into_iter().map(|ch| (ch, Some(by.to_owned()), id)));
        }
        assert_eq!(
            texts[1],
            r#"{"changes":[{"appended":{"finding":"n+1"},"index":1,"path":"activeWork.recentDiscoveries"}]}"#
        );
        assert_eq!(
            texts[3],
            r#"{"changes":[{"appended":"C","dropped":["A"],"index":1,"path":"workingMemory.recentSymbols"}]}"#
        );
        let stored: Vec<(i64, &str, &str)> = OLD_LOG
            .iter()
            .zip(&texts)
            .map(|((id, by, _), text)| (*id, *by, text.as_str()))
            .collect();
        let new_log_read = read_log(&stored);
        assert_eq!(new_log_read, new_log);
        assert_eq!(replay(&new_log_read), loaded);
        assert_eq!(c, loaded);
        assert_eq!(diff_since(c.document(), &new_log_read[1..]), diff);
    }

    #[test]
    fn an_append_costs_its_element_not_the_array() {
        let mut c = Context::new();
        let path = p("activeWork.recentDiscoveries");
        let element = json!({"finding": "N+1 query in the user loader", "severity": "high"});
        let mut sizes = Vec::new();
        for id in 1..=40 {
            let ch = c.plan_append(&path, element.clone(), None).unwrap();
            sizes.push(changes_to_json(std::slice::from_ref(&ch)).to_string().len());
            c.apply(&ch, id);
        }
        let element_size = element.to_string().len();
        assert!(
            sizes.iter().all(|s| *s < element_size + 80),
            "{sizes:?} for an element of {element_size} bytes"
        );
    }

    #[test]
    fn unreadable_entries_are_refused() {
        for bad in [
            json!({"changes": "nope"}),
            json!([{"new": 1}]),
            json!([{"path": "a..b", "new": 1}]),
            json!([{"path": "a", "appended": 1}]),
            json!([{"path": "a", "appended": 1, "index": -1}]),
            json!([{"path": "a", "appended": 1, "index": 0, "dropped": 3}]),
            json!([{"path": "a", "appended": 1, "index": 0, "new": [1]}]),
            json!([{"path": "a", "new": 1, "createdFrom": "0"}]),
        ] {
            assert!(changes_from_json(&bad).is_err(), "{bad}");
        }
        // `null` is a value like any other: appended, it is still an append.
        let null = changes_from_json(&json!([{"path": "a", "appended": null, "index": 2}]));
        assert!(matches!(
            &null.unwrap()[0].edit,
            Edit::Append { value: Value::Null, index: 2, dropped } if dropped.is_empty()
        ));
    }
}
