//! Who did what in a session's log, counted in buckets of [`BUCKET`] events, so a briefing can
//! say what happened since any event without reading every event since: whole buckets come
//! from here, and only the part of one bucket before them from the log.
//!
//! The session actor keeps one, built from the log when the session loads and fed every
//! committed event after that.

use std::collections::{BTreeMap, HashMap};

/// Events per bucket.
pub const BUCKET: i64 = 1024;
/// Kinds whose newest events a briefing lists; their ids are kept here so that finding them
/// never scans the log (a session may have none in 100,000 events).
pub const TRACKED: [&str; 3] = ["discovery_reported", "change_conflict", "task_handed_off"];
/// Newest ids kept per tracked kind and recipient.
pub const RECENT: usize = 25;

/// Who, what, and to whom (directed events are seen only by their actor and recipient).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    actor: Option<String>,
    kind: String,
    to: Option<String>,
}

/// How many events and how many payload bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: i64,
    pub bytes: i64,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.count += other.count;
        self.bytes += other.bytes;
    }
}

/// Counts by (actor, kind) of what one viewer sees.
pub type Counts = BTreeMap<(Option<String>, String), Tally>;

#[derive(Debug, Clone, Default)]
pub struct Activity {
    /// Bucket `b` holds events `b * BUCKET + 1 ..= (b + 1) * BUCKET`.
    buckets: Vec<BTreeMap<Key, Tally>>,
    /// Each actor's newest event.
    last_by: HashMap<String, i64>,
    /// The newest ids of each tracked kind, by recipient (`None`: everyone), oldest first.
    recent: HashMap<(&'static str, Option<String>), std::collections::VecDeque<i64>>,
}

fn bucket_of(id: i64) -> usize {
    ((id.max(1) - 1) / BUCKET) as usize
}

impl Activity {
    /// Counts one committed event.
    pub fn record(
        &mut self,
        id: i64,
        actor: Option<&str>,
        kind: &str,
        to: Option<&str>,
        bytes: i64,
    ) {
        let b = bucket_of(id);
        if self.buckets.len() <= b {
            self.buckets.resize_with(b + 1, BTreeMap::new);
        }
        let key = Key {
            actor: actor.map(str::to_owned),
            kind: kind.to_owned(),
            to: to.map(str::to_owned),
        };
        self.buckets[b]
            .entry(key)
            .or_default()
            .add(Tally { count: 1, bytes });
        if let Some(a) = actor {
            let last = self.last_by.entry(a.to_owned()).or_default();
            *last = (*last).max(id);
        }
        if let Some(kind) = TRACKED.iter().find(|k| **k == kind) {
            let ids = self
                .recent
                .entry((kind, to.map(str::to_owned)))
                .or_default();
            ids.push_back(id);
            if ids.len() > RECENT {
                ids.pop_front();
            }
        }
    }

    /// The newest ids (at most [`RECENT`], newest first) of a tracked `kind` that `viewer`
    /// sees: those for everyone and those addressed to it.
    pub fn recent(&self, kind: &str, viewer: &str) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .recent
            .iter()
            .filter(|((k, to), _)| *k == kind && to.as_deref().is_none_or(|t| t == viewer))
            .flat_map(|(_, ids)| ids.iter().copied())
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids.truncate(RECENT);
        ids
    }

    /// The newest event of `actor`, if any.
    pub fn last_by(&self, actor: &str) -> Option<i64> {
        self.last_by.get(actor).copied()
    }

    /// Everyone who acted, with their newest event.
    pub fn actors(&self) -> impl Iterator<Item = (&str, i64)> {
        self.last_by.iter().map(|(a, id)| (a.as_str(), *id))
    }

    /// What `viewer` sees of the events after `after`, counted from the whole buckets; the
    /// events from `after + 1` up to the returned id (exclusive) are not included: the caller
    /// counts those few (fewer than [`BUCKET`]) from the log.
    pub fn since(&self, after: i64, viewer: &str) -> (Counts, i64) {
        // The first bucket wholly after `after`.
        let first = (after.max(0) / BUCKET) as usize + usize::from(after % BUCKET != 0);
        let mut counts = Counts::new();
        for bucket in self.buckets.iter().skip(first) {
            for (k, t) in bucket {
                let visible = k.to.is_none()
                    || k.to.as_deref() == Some(viewer)
                    || k.actor.as_deref() == Some(viewer);
                if visible {
                    counts
                        .entry((k.actor.clone(), k.kind.clone()))
                        .or_default()
                        .add(*t);
                }
            }
        }
        (counts, first as i64 * BUCKET + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: count event by event.
    fn slow(log: &[(i64, &str, &str, Option<&str>)], after: i64, viewer: &str) -> Counts {
        let mut c = Counts::new();
        for (id, actor, kind, to) in log {
            if *id > after && (to.is_none() || *to == Some(viewer) || *actor == viewer) {
                c.entry((Some(actor.to_string()), kind.to_string()))
                    .or_default()
                    .add(Tally {
                        count: 1,
                        bytes: *id,
                    });
            }
        }
        c
    }

    #[test]
    fn whole_buckets_plus_the_rest_equal_counting_every_event() {
        let mut rng = crate::domain::test_rng::Rng::new(7);
        let actors = ["claude", "gemini", "cursor"];
        let kinds = ["a", "b", "c"];
        let mut log = Vec::new();
        let mut act = Activity::default();
        for id in 1..=5_000i64 {
            let actor = *rng.pick(&actors);
            let kind = *rng.pick(&kinds);
            let to = rng.chance(10).then(|| *rng.pick(&actors));
            act.record(id, Some(actor), kind, to, id);
            log.push((id, actor, kind, to));
        }
        for after in [0, 1, 1023, 1024, 1025, 2048, 4000, 4999, 5000] {
            for viewer in actors {
                let (mut got, from) = act.since(after, viewer);
                assert!(from > after && from - after <= BUCKET, "{after}: {from}");
                // What the log adds: events after `after` and before `from`.
                let rest: Vec<_> = log
                    .iter()
                    .filter(|(id, ..)| *id > after && *id < from)
                    .cloned()
                    .collect();
                for (k, t) in slow(&rest, after, viewer) {
                    got.entry(k).or_default().add(t);
                }
                assert_eq!(got, slow(&log, after, viewer), "after {after}, {viewer}");
            }
        }
        assert_eq!(
            act.last_by("claude"),
            log.iter().rev().find(|e| e.1 == "claude").map(|e| e.0)
        );
        assert_eq!(act.last_by("nobody"), None);
    }

    #[test]
    fn recent_ids_of_tracked_kinds_newest_first_per_viewer() {
        let mut act = Activity::default();
        for id in 1..=100 {
            let to = if id % 2 == 0 {
                Some("claude")
            } else {
                Some("gemini")
            };
            act.record(id, None, "change_conflict", to, 1);
            act.record(1000 + id, Some("gemini"), "discovery_reported", None, 1);
            act.record(2000 + id, Some("gemini"), "context_changed", None, 1);
        }
        let mine = act.recent("change_conflict", "claude");
        assert_eq!(mine.len(), RECENT);
        assert_eq!(mine[0], 100);
        assert!(mine.iter().all(|id| id % 2 == 0));
        assert_eq!(act.recent("discovery_reported", "anyone")[0], 1100);
        assert!(act.recent("context_changed", "claude").is_empty());
    }
}
