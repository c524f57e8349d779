//! Where other hubs serve projects, as the keeper last said (`SeenElsewhere`): a request for a
//! project held elsewhere is passed on without asking the keeper again for a moment.
//!
//! Every request for such a project used to ask the keeper, whose one thread reads the lease
//! row: a round trip to the database per passed-on request, one at a time (BENCHMARKS.md, "every
//! hub serves (stop 39)"). What is remembered is only where to send a request, never what is
//! served here: a request sent to a hub that no longer serves the project is answered there
//! `NOT_SERVED` (or the hub cannot be reached), and the hop forgets that hub
//! (`forget_hub`) before it runs the request here again, so the next look asks the keeper.
//! A stale entry therefore costs one hop, never a write in the wrong place (the database's
//! fences decide that).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an answer `Elsewhere` is trusted: well under any lease (the shortest is one
/// second), so a project handed back and taken by a third hub is found within it even if no
/// request bounced.
pub const SEEN_FOR: Duration = Duration::from_millis(500);

/// Most projects remembered; beyond it the expired ones are dropped, and if none had expired,
/// all of them (the next looks ask the keeper again).
const MOST_SEEN: usize = 4096;

/// Where other hubs served projects when last asked. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct SeenElsewhere(Arc<Inner>);

#[derive(Default)]
struct Inner {
    seen: Mutex<HashMap<String, Seen>>,
    /// How many times the keeper was asked where a project is served (`/metrics`).
    asked: AtomicU64,
}

struct Seen {
    url: Arc<str>,
    until: Instant,
}

impl SeenElsewhere {
    /// The hub `project` was seen served at, if that is recent.
    pub fn get(&self, project: &str) -> Option<String> {
        let seen = self.lock();
        seen.get(project)
            .filter(|s| Instant::now() < s.until)
            .map(|s| s.url.to_string())
    }

    /// `project` is served at `url`, the keeper says.
    pub fn note(&self, project: &str, url: &str) {
        let now = Instant::now();
        let mut seen = self.lock();
        if seen.len() >= MOST_SEEN && !seen.contains_key(project) {
            seen.retain(|_, s| now < s.until);
            if seen.len() >= MOST_SEEN {
                seen.clear();
            }
        }
        seen.insert(
            project.to_owned(),
            Seen {
                url: url.into(),
                until: now + SEEN_FOR,
            },
        );
    }

    /// The hub at `url` did not serve a request sent to it (it is gone, or no longer holds its
    /// project): none of what was seen there is trusted any more.
    pub fn forget_hub(&self, url: &str) {
        let url = url.trim_end_matches('/');
        let mut seen = self.lock();
        seen.retain(|_, s| &*s.url != url);
    }

    /// The keeper was asked where a project is served.
    pub fn asked(&self) {
        self.0.asked.fetch_add(1, Ordering::Relaxed);
    }

    /// The `/metrics` lines: how many times the keeper was asked.
    pub fn render(&self) -> String {
        format!(
            "# TYPE collab_hub_lease_lookups_total counter\ncollab_hub_lease_lookups_total {}\n",
            self.0.asked.load(Ordering::Relaxed)
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Seen>> {
        self.0.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `project` is served here now (taken or handed back here): not elsewhere.
    pub fn forget(&self, project: &str) {
        let mut seen = self.lock();
        seen.remove(project);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_trusted_until_its_hub_did_not_serve_a_request() {
        let seen = SeenElsewhere::default();
        seen.note("alpha", "http://10.0.0.2:7000");
        seen.note("beta", "http://10.0.0.2:7000");
        seen.note("gamma", "http://10.0.0.3:7000");
        assert_eq!(seen.get("alpha").as_deref(), Some("http://10.0.0.2:7000"));
        // A request sent there was not served: nothing seen there is trusted.
        seen.forget_hub("http://10.0.0.2:7000/");
        assert_eq!(seen.get("alpha"), None);
        assert_eq!(seen.get("beta"), None);
        assert_eq!(seen.get("gamma").as_deref(), Some("http://10.0.0.3:7000"));
        seen.forget("gamma");
        assert_eq!(seen.get("gamma"), None);
    }

    #[test]
    fn an_answer_expires() {
        let seen = SeenElsewhere::default();
        seen.note("alpha", "http://10.0.0.2:7000");
        std::thread::sleep(SEEN_FOR + Duration::from_millis(20));
        assert_eq!(seen.get("alpha"), None);
    }

    #[test]
    fn it_stays_bounded() {
        let seen = SeenElsewhere::default();
        for i in 0..MOST_SEEN + 10 {
            seen.note(&format!("p{i}"), "http://10.0.0.2:7000");
        }
        let held = seen.lock().len();
        assert!(held <= MOST_SEEN, "{held} remembered");
        assert_eq!(
            seen.get(&format!("p{}", MOST_SEEN + 9)).as_deref(),
            Some("http://10.0.0.2:7000")
        );
    }
}
