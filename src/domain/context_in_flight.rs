//! Context writes planned but not committed yet: when a new write may be planned against the
//! committed context while they are in flight (`src/actors/session/pipeline.rs`).
//!
//! A context write's checks and changes read only what lies at its paths: the value there
//! (and the objects above it, which must exist or be created), the versions above and below
//! it, and the document's size. So a write whose paths neither contain nor lie inside the
//! paths of any write in flight plans exactly as it would after them; nothing it was planned
//! against can be changed by their commit, or by their failure. Only the size is shared: the
//! writes in flight may grow the document, so their growth is counted against the limit.

use std::collections::VecDeque;

use super::context::{Change, Context, Path};

/// Where a change reads and writes: its path, or, when it creates objects on the way, the
/// root of the branch it creates (two writes creating the same branch would each plan it as
/// new: a rewind of either would remove the other's value too).
pub fn footprint(change: &Change) -> Path {
    match change.created_from {
        Some(existed) if existed < change.path.0.len() => Path(change.path.0[..=existed].to_vec()),
        _ => change.path.clone(),
    }
}

/// A write's footprints and growth in bytes.
struct Measured {
    footprints: Vec<Path>,
    grows: i64,
}

impl Measured {
    fn of(changes: &[Change]) -> Measured {
        Measured {
            footprints: changes.iter().map(footprint).collect(),
            grows: changes.iter().map(Change::growth).sum(),
        }
    }
}

/// The context writes in flight, oldest first: their footprints and growth in bytes.
#[derive(Debug, Default)]
pub struct InFlight {
    writes: VecDeque<(Vec<Path>, i64)>,
    growth: i64,
}

impl InFlight {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// May `changes`, planned against `committed`, be written while the writes in flight are?
    /// Only if no footprint overlaps theirs, and the document stays within its limit even if
    /// every write in flight grows it.
    pub fn independent(&self, committed: &Context, changes: &[Change]) -> bool {
        self.fits(committed, &Measured::of(changes))
    }

    /// Notes `changes` as in flight if they are `independent` of the writes in flight; whether
    /// they were (measuring them once).
    pub fn admit(&mut self, committed: &Context, changes: &[Change]) -> bool {
        let write = Measured::of(changes);
        let fits = self.fits(committed, &write);
        if fits {
            self.add(write);
        }
        fits
    }

    fn fits(&self, committed: &Context, write: &Measured) -> bool {
        if self.writes.is_empty() {
            return true;
        }
        let overlaps = write.footprints.iter().any(|mine| {
            self.writes
                .iter()
                .flat_map(|(paths, _)| paths)
                .any(|theirs| theirs.overlaps(mine))
        });
        !overlaps && committed.has_room_for(self.growth + write.grows)
    }

    fn add(&mut self, write: Measured) {
        let grows = write.grows.max(0);
        self.growth += grows;
        self.writes.push_back((write.footprints, grows));
    }

    /// The oldest write in flight committed or failed.
    pub fn pop(&mut self) {
        if let Some((_, grows)) = self.writes.pop_front() {
            self.growth -= grows;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::context::{ContextOp, MAX_CONTEXT_BYTES};

    fn path(p: &str) -> Path {
        Path::parse(p).unwrap()
    }

    fn set(c: &Context, p: &str, v: serde_json::Value) -> Vec<Change> {
        c.plan(&ContextOp::Set {
            path: path(p),
            value: v,
            expected: None,
        })
        .unwrap()
    }

    fn committed() -> Context {
        let mut c = Context::default();
        for (i, ch) in set(&c, "plan", json!({"steps": ["a"], "owner": "claude"}))
            .iter()
            .enumerate()
        {
            c.apply(ch, i as i64 + 1);
        }
        c
    }

    #[test]
    fn writes_to_paths_apart_are_independent_and_nested_ones_are_not() {
        let c = committed();
        let mut in_flight = InFlight::default();
        assert!(in_flight.independent(&c, &set(&c, "plan.owner", json!("x"))));
        assert!(in_flight.admit(&c, &set(&c, "plan.owner", json!("gemini"))));
        assert!(in_flight.independent(&c, &set(&c, "plan.steps", json!([]))));
        assert!(in_flight.independent(&c, &set(&c, "elsewhere", json!(1))));
        // The same path, a path inside it, a path around it.
        assert!(!in_flight.independent(&c, &set(&c, "plan.owner", json!("cursor"))));
        assert!(!in_flight.independent(&c, &set(&c, "plan", json!({}))));
        assert!(in_flight.admit(&c, &set(&c, "plan.steps", json!(["a", "b"]))));
        assert!(!in_flight.independent(&c, &set(&c, "plan.steps[0]", json!("c"))));
        in_flight.pop();
        in_flight.pop();
        assert!(in_flight.is_empty());
        assert!(in_flight.independent(&c, &set(&c, "plan", json!({}))));
    }

    #[test]
    fn two_writes_creating_one_branch_are_not_independent() {
        let c = committed();
        let mut in_flight = InFlight::default();
        // Both create `new`, under which each sets a different key.
        let first = set(&c, "new.a", json!(1));
        assert_eq!(footprint(&first[0]), path("new"));
        assert!(in_flight.admit(&c, &first));
        assert!(!in_flight.independent(&c, &set(&c, "new.b", json!(2))));
        // Under an object that exists, different keys stay apart.
        assert!(in_flight.admit(&c, &set(&c, "plan.x.y", json!(1))));
        assert!(!in_flight.independent(&c, &set(&c, "plan.x.z", json!(1))));
        assert!(in_flight.independent(&c, &set(&c, "plan.w", json!(1))));
    }

    #[test]
    fn the_growth_in_flight_counts_against_the_limit() {
        // A committed document a little under its limit.
        let mut c = committed();
        let mut n = 0;
        while c.size() + 200_050 < MAX_CONTEXT_BYTES - 1_500 {
            for ch in set(&c, &format!("fill{n}"), json!("x".repeat(200_000))) {
                c.apply(&ch, 100 + n);
            }
            n += 1;
        }
        let room = MAX_CONTEXT_BYTES - c.size();
        let mut in_flight = InFlight::default();
        let first = set(&c, "a", json!("y".repeat(1_000)));
        assert!(in_flight.admit(&c, &first));
        // Alone it fits; after the write in flight it would not.
        let second = set(&c, "b", json!("z".repeat(room - 100)));
        assert!(!in_flight.independent(&c, &second));
        in_flight.pop();
        assert!(in_flight.independent(&c, &second));
    }
}
