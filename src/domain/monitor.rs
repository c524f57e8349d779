//! Background monitoring: test, build, merge and lint results reported by participants or CI
//! jobs. The latest result per kind lives in the shared context at `monitoring.<kind>`; a
//! failure is announced as critical to everyone, a recovery (pass after a failure) as important.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::DomainError;
use super::event::Priority;

pub const STATUS_REPORTED: &str = "status_reported";
/// Where the latest result per kind is kept in the shared context.
pub const MONITORING_KEY: &str = "monitoring";
const MAX_SUMMARY_CHARS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Test,
    Build,
    Merge,
    Lint,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Test => "test",
            CheckKind::Build => "build",
            CheckKind::Merge => "merge",
            CheckKind::Lint => "lint",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Fail,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    pub kind: CheckKind,
    pub status: CheckStatus,
    pub summary: String,
    pub details: Option<Value>,
}

impl StatusReport {
    pub fn validate(&self) -> Result<(), DomainError> {
        let n = self.summary.trim().chars().count();
        if n == 0 || n > MAX_SUMMARY_CHARS {
            return Err(DomainError::invalid(
                "summary",
                format!("summarise the result in 1 to {MAX_SUMMARY_CHARS} characters"),
            ));
        }
        Ok(())
    }

    /// How loudly to announce it, given the previous status of the same kind.
    pub fn priority(&self, previous: Option<CheckStatus>) -> Priority {
        match (self.status, previous) {
            (CheckStatus::Fail, _) => Priority::Critical,
            (CheckStatus::Pass, Some(CheckStatus::Fail)) => Priority::Important,
            (CheckStatus::Pass, _) => Priority::Routine,
        }
    }

    /// The value stored at `monitoring.<kind>`.
    pub fn entry(&self, by: Option<&str>, recovered: bool) -> Value {
        json!({
            "status": self.status,
            "summary": self.summary.trim(),
            "details": self.details,
            "by": by,
            "at": super::now().and_utc(),
            "recovered": recovered,
        })
    }
}

/// The status stored in a `monitoring.<kind>` entry.
pub fn stored_status(entry: Option<&Value>) -> Option<CheckStatus> {
    entry
        .and_then(|e| e.get("status"))
        .and_then(|s| serde_json::from_value(s.clone()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: CheckStatus) -> StatusReport {
        StatusReport {
            kind: CheckKind::Test,
            status,
            summary: "3 failed".into(),
            details: None,
        }
    }

    #[test]
    fn failure_is_critical_recovery_important() {
        assert_eq!(report(CheckStatus::Fail).priority(None), Priority::Critical);
        assert_eq!(
            report(CheckStatus::Fail).priority(Some(CheckStatus::Fail)),
            Priority::Critical
        );
        assert_eq!(
            report(CheckStatus::Pass).priority(Some(CheckStatus::Fail)),
            Priority::Important
        );
        assert_eq!(
            report(CheckStatus::Pass).priority(Some(CheckStatus::Pass)),
            Priority::Routine
        );
        assert_eq!(report(CheckStatus::Pass).priority(None), Priority::Routine);
    }

    #[test]
    fn stored_status_reads_back() {
        let e = report(CheckStatus::Fail).entry(Some("ci"), false);
        assert_eq!(stored_status(Some(&e)), Some(CheckStatus::Fail));
        assert_eq!(stored_status(None), None);
        let mut empty = report(CheckStatus::Pass);
        empty.summary = " ".into();
        assert!(empty.validate().is_err());
    }
}
