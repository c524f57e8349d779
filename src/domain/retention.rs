//! Retention: how long the events and snapshots of completed sessions are kept. Compaction
//! keeps a final snapshot (the context's and the whole session's), so a compacted session still
//! loads, resumes and exports; what goes is the event-by-event history before it.

use chrono::{Duration, NaiveDateTime};

/// Limits for completed sessions; `None` keeps everything on that account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Compact a session completed (last active) longer ago than this.
    pub max_age: Option<Duration>,
    /// Compact a session whose stored events take more bytes than this.
    pub max_bytes: Option<u64>,
}

impl RetentionPolicy {
    pub fn is_off(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none()
    }

    /// Is a completed session, last active at `last_active`, with `bytes` of events, due?
    pub fn due(&self, now: NaiveDateTime, last_active: NaiveDateTime, bytes: u64) -> bool {
        self.max_age.is_some_and(|age| now - last_active > age)
            || self.max_bytes.is_some_and(|max| bytes > max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_by_age_or_by_size() {
        let now = crate::domain::utc::parse("2026-12-10T00:00:00Z").unwrap();
        let week_ago = now - Duration::days(7);
        let off = RetentionPolicy::default();
        assert!(off.is_off() && !off.due(now, week_ago, u64::MAX));
        let by_age = RetentionPolicy {
            max_age: Some(Duration::days(3)),
            max_bytes: None,
        };
        assert!(by_age.due(now, week_ago, 0));
        assert!(!by_age.due(now, now - Duration::days(2), u64::MAX));
        let by_size = RetentionPolicy {
            max_age: None,
            max_bytes: Some(1_000),
        };
        assert!(by_size.due(now, now, 1_001) && !by_size.due(now, week_ago, 1_000));
    }
}
