//! The change ledger: what each participant changed in which file, as a unified diff with the
//! line ranges and symbols it touched, and the conflicts a new change has with recent ones.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::DomainError;
use super::event::{NewEvent, Priority};

pub const CHANGE_RECORDED: &str = "change_recorded";
pub const CHANGE_CONFLICT: &str = "change_conflict";
/// Largest diff, and largest before/after text, accepted.
pub const MAX_TEXT_BYTES: usize = 512 * 1024;
/// Longest a diff computation may take before settling for a coarser diff.
const DIFF_DEADLINE: std::time::Duration = std::time::Duration::from_millis(100);
const MAX_PATH_CHARS: usize = 1024;
const MAX_SYMBOLS: usize = 100;
/// Two participants' changes to overlapping lines of one file this close together conflict
/// (default; the hub's `--conflict-window-secs`).
pub const CONFLICT_WINDOW_SECS: u64 = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Edit,
    Create,
    Delete,
    Rename,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Edit => "edit",
            Operation::Create => "create",
            Operation::Delete => "delete",
            Operation::Rename => "rename",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Edit, Self::Create, Self::Delete, Self::Rename]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// A change as a participant reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChangeSpec {
    pub file_path: String,
    pub operation: Option<Operation>,
    /// A unified diff, or `before`/`after` texts to compute one from.
    pub diff: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    /// Renames: the new path.
    pub new_path: Option<String>,
    pub symbols: Vec<String>,
    pub reason: Option<String>,
    /// The fencing token of the lock the author holds on the file, if it cites one.
    pub lock_token: Option<i64>,
    /// The task this change belongs to.
    pub task_id: Option<i64>,
}

/// A checked change, ready to store.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChange {
    pub file_path: String,
    pub operation: Operation,
    pub new_path: Option<String>,
    pub diff: Option<String>,
    /// Line ranges touched, `[first, last]`, 1-based, in the new file (a pure deletion: where
    /// the lines were).
    pub lines: Vec<(u32, u32)>,
    pub symbols: Vec<String>,
    pub reason: Option<String>,
    pub task_id: Option<i64>,
}

fn check_path(field: &'static str, path: &str) -> Result<(), DomainError> {
    if path.trim().is_empty() || path.chars().count() > MAX_PATH_CHARS || path.contains('\0') {
        return Err(DomainError::invalid(
            field,
            format!("a file path of 1 to {MAX_PATH_CHARS} characters"),
        ));
    }
    Ok(())
}

fn check_size(field: &'static str, text: &Option<String>) -> Result<(), DomainError> {
    if text.as_ref().is_some_and(|t| t.len() > MAX_TEXT_BYTES) {
        return Err(DomainError::invalid(
            field,
            format!("larger than {MAX_TEXT_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Checks a reported change and works out its diff and line ranges.
pub fn plan_change(spec: ChangeSpec) -> Result<PlannedChange, DomainError> {
    check_path("filePath", &spec.file_path)?;
    check_size("diff", &spec.diff)?;
    check_size("before", &spec.before)?;
    check_size("after", &spec.after)?;
    if spec.symbols.len() > MAX_SYMBOLS
        || spec
            .symbols
            .iter()
            .any(|s| s.trim().is_empty() || s.len() > 200)
    {
        return Err(DomainError::invalid(
            "symbols",
            format!("at most {MAX_SYMBOLS} non-empty names of up to 200 bytes"),
        ));
    }
    let operation = spec.operation.unwrap_or(Operation::Edit);
    match (operation, &spec.new_path) {
        (Operation::Rename, None) => {
            return Err(DomainError::invalid("newPath", "a rename needs newPath"));
        }
        (Operation::Rename, Some(p)) => check_path("newPath", p)?,
        (_, Some(_)) => return Err(DomainError::invalid("newPath", "only for renames")),
        _ => {}
    }
    let diff = match (&spec.diff, &spec.before, &spec.after) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(DomainError::invalid(
                "diff",
                "give a diff or before/after texts, not both",
            ));
        }
        (Some(d), None, None) => Some(d.clone()),
        (None, before, after) if before.is_some() && before == after => {
            return Err(DomainError::invalid(
                "after",
                "before and after are the same: nothing changed",
            ));
        }
        (None, before, after) if before.is_some() || after.is_some() => {
            let (old, new) = (
                before.as_deref().unwrap_or(""),
                after.as_deref().unwrap_or(""),
            );
            Some(
                // Bounded: past the deadline `similar` settles for a coarser (still correct)
                // diff, so a huge rewrite cannot hold the session actor for seconds.
                similar::TextDiff::configure()
                    .timeout(DIFF_DEADLINE)
                    .diff_lines(old, new)
                    .unified_diff()
                    .context_radius(3)
                    .header(
                        &spec.file_path,
                        spec.new_path.as_deref().unwrap_or(&spec.file_path),
                    )
                    .to_string(),
            )
        }
        _ if operation == Operation::Edit => {
            return Err(DomainError::invalid(
                "diff",
                "an edit needs a unified diff or before/after texts",
            ));
        }
        _ => None,
    };
    let lines = match &diff {
        Some(d) => hunk_ranges(d)?,
        None => Vec::new(),
    };
    if operation == Operation::Edit
        && lines.is_empty()
        && diff.as_deref().is_some_and(|d| !d.is_empty())
    {
        return Err(DomainError::invalid(
            "diff",
            "no hunk (`@@ -a,b +c,d @@`) in the diff",
        ));
    }
    Ok(PlannedChange {
        file_path: spec.file_path,
        operation,
        new_path: spec.new_path,
        diff,
        lines,
        symbols: spec.symbols,
        reason: spec.reason,
        task_id: spec.task_id,
    })
}

/// Lines a change touched: the sum of its ranges (what the genes measure work by).
pub fn lines_touched(ranges: &[(u32, u32)]) -> u64 {
    ranges
        .iter()
        .map(|(a, b)| u64::from(b.saturating_sub(*a)) + 1)
        .sum()
}

/// The new-file line ranges of a unified diff's hunks (`@@ -a,b +c,d @@`).
pub fn hunk_ranges(diff: &str) -> Result<Vec<(u32, u32)>, DomainError> {
    let bad = |line: &str| {
        DomainError::invalid(
            "diff",
            format!(
                "malformed hunk header {:?}; expected `@@ -a,b +c,d @@`",
                line.chars().take(80).collect::<String>()
            ),
        )
    };
    let mut ranges = Vec::new();
    for line in diff.lines().filter(|l| l.starts_with("@@")) {
        let inner = line
            .strip_prefix("@@ ")
            .and_then(|l| l.split(" @@").next())
            .ok_or_else(|| bad(line))?;
        let mut parts = inner.split(' ');
        let (old, new) = (
            parts.next().ok_or_else(|| bad(line))?,
            parts.next().ok_or_else(|| bad(line))?,
        );
        let parse = |s: &str, sign: char| -> Option<(u32, u32)> {
            let s = s.strip_prefix(sign)?;
            let (start, len) = match s.split_once(',') {
                Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                None => (s.parse().ok()?, 1),
            };
            Some((start, len))
        };
        parse(old, '-').ok_or_else(|| bad(line))?;
        let (start, len) = parse(new, '+').ok_or_else(|| bad(line))?;
        let first = start.max(1);
        ranges.push((first, first.saturating_add(len.saturating_sub(1))));
    }
    Ok(ranges)
}

/// An earlier change, as conflict detection needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentChange {
    pub id: i64,
    pub ai_id: String,
    pub lines: Vec<(u32, u32)>,
    pub symbols: Vec<String>,
    pub at: NaiveDateTime,
}

/// Recent changes by others to the same file that overlap `change` in lines or symbols.
pub fn conflicts<'a>(
    change: &PlannedChange,
    by: &str,
    recent: &'a [RecentChange],
    at: NaiveDateTime,
    window_secs: u64,
) -> Vec<&'a RecentChange> {
    let window = chrono::TimeDelta::seconds(i64::try_from(window_secs).unwrap_or(i64::MAX));
    recent
        .iter()
        .filter(|r| r.ai_id != by && at - r.at <= window)
        .filter(|r| {
            let lines = r
                .lines
                .iter()
                .any(|(a, b)| change.lines.iter().any(|(c, d)| a <= d && c <= b));
            let symbols = r.symbols.iter().any(|s| change.symbols.contains(s));
            lines || symbols
        })
        .collect()
}

/// The critical alert to one party of a conflict.
pub fn conflict_event(to: &str, file: &str, why: &str, with: &[i64]) -> NewEvent {
    NewEvent {
        kind: CHANGE_CONFLICT,
        actor: None,
        priority: Priority::Critical,
        payload: json!({"filePath": file, "summary": why, "changes": with}),
        to: Some(to.to_owned()),
    }
}

/// What `changes_list` filters by.
#[derive(Debug, Clone, Default)]
pub struct ChangeQuery {
    pub file: Option<String>,
    pub ai_id: Option<String>,
    /// After this change id.
    pub since: Option<i64>,
    pub limit: i64,
    /// Include the diffs (a file's history), not just the summaries.
    pub with_diff: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeView {
    pub id: i64,
    pub ai_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub co_author: Option<String>,
    pub operation: Operation,
    pub file_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    pub lines: Vec<(u32, u32)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub symbols: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<i64>,
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuggestionView {
    pub id: i64,
    pub ai_id: String,
    pub file_path: String,
    pub diff: String,
    pub lines: Vec<(u32, u32)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<i64>,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_id: Option<i64>,
    pub at: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(before: &str, after: &str) -> PlannedChange {
        plan_change(ChangeSpec {
            file_path: "/src/auth.ts".into(),
            before: Some(before.into()),
            after: Some(after.into()),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn diffs_are_computed_with_line_ranges() {
        let before = (1..=20).map(|i| format!("line {i}\n")).collect::<String>();
        let after = before.replace("line 10\n", "line ten\n");
        let c = edit(&before, &after);
        let d = c.diff.as_deref().unwrap();
        assert!(d.contains("-line 10") && d.contains("+line ten"), "{d}");
        assert_eq!(c.lines, vec![(7, 13)], "the hunk with 3 lines of context");
        assert_eq!(lines_touched(&c.lines), 7);
        assert_eq!(lines_touched(&[(1, 30), (40, 40)]), 31);
        assert_eq!(lines_touched(&[]), 0);
    }

    #[test]
    fn malformed_input_is_refused() {
        let bad = |spec: ChangeSpec| plan_change(spec).unwrap_err();
        let base = || ChangeSpec {
            file_path: "/a.rs".into(),
            ..Default::default()
        };
        assert!(matches!(
            bad(base()),
            DomainError::Invalid { field: "diff", .. }
        ));
        assert!(matches!(
            bad(ChangeSpec {
                diff: Some("@@ nonsense @@\n".into()),
                ..base()
            }),
            DomainError::Invalid { field: "diff", .. }
        ));
        assert!(matches!(
            bad(ChangeSpec {
                diff: Some("just text".into()),
                ..base()
            }),
            DomainError::Invalid { field: "diff", .. }
        ));
        assert!(matches!(
            bad(ChangeSpec {
                operation: Some(Operation::Rename),
                ..base()
            }),
            DomainError::Invalid {
                field: "newPath",
                ..
            }
        ));
        assert!(matches!(
            bad(ChangeSpec {
                file_path: " ".into(),
                ..base()
            }),
            DomainError::Invalid {
                field: "filePath",
                ..
            }
        ));
        let ok = plan_change(ChangeSpec {
            diff: Some("--- a\n+++ b\n@@ -3 +3,2 @@\n-x\n+y\n+z\n".into()),
            ..base()
        })
        .unwrap();
        assert_eq!(ok.lines, vec![(3, 4)]);
        let huge = plan_change(ChangeSpec {
            diff: Some("@@ -1 +4294967295,3 @@\n+x\n".into()),
            ..base()
        })
        .unwrap();
        assert_eq!(huge.lines, vec![(u32::MAX, u32::MAX)]);
    }

    #[test]
    fn overlapping_changes_by_others_conflict() {
        let at = crate::domain::now();
        let mine = PlannedChange {
            lines: vec![(10, 20)],
            symbols: vec!["AuthService.login".into()],
            ..edit("a\n", "b\n")
        };
        let recent = vec![
            RecentChange {
                id: 1,
                ai_id: "gemini".into(),
                lines: vec![(18, 25)],
                symbols: vec![],
                at,
            },
            RecentChange {
                id: 2,
                ai_id: "gemini".into(),
                lines: vec![(30, 40)],
                symbols: vec!["AuthService.login".into()],
                at,
            },
            RecentChange {
                id: 3,
                ai_id: "gemini".into(),
                lines: vec![(30, 40)],
                symbols: vec![],
                at,
            },
            RecentChange {
                id: 4,
                ai_id: "claude".into(),
                lines: vec![(10, 20)],
                symbols: vec![],
                at,
            },
            RecentChange {
                id: 5,
                ai_id: "gemini".into(),
                lines: vec![(10, 20)],
                symbols: vec![],
                at: at - chrono::TimeDelta::hours(1),
            },
        ];
        let ids: Vec<i64> = conflicts(&mine, "claude", &recent, at, CONFLICT_WINDOW_SECS)
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, vec![1, 2]);
    }
}
