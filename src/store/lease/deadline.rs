//! The owner's deadline, kept by a thread of its own.
//!
//! The keeper steps down when its lease's deadline passes without a renewal, but it can only
//! notice between two calls to the database, and a call may not come back for a long time: a
//! connect to a host gone silent waits for its timeout, and a statement sent into silence
//! waits for TCP to give up (minutes). Meanwhile the hub would go on answering reads from
//! memory while another hub may own the database. So a watchdog steps down for it: once the
//! deadline (plus `grace`, for the keeper's own last try) has passed, it publishes
//! `Role::Unknown`: the hub-wide duties stop (`HubRow`). (The projects this hub serves have
//! leases of their own, whose validity the hub checks itself: `Hub::let_go_lapsed`.) The keeper, when its call comes back, finds `passed`
//! and completes the step-down (a new holder id) before anything else.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::Role;

#[derive(Default)]
struct State {
    until: Option<Instant>,
    passed: bool,
    stop: bool,
}

/// Shared by the keeper, which sets the deadline, and the watchdog thread, which enforces it.
pub(super) struct Deadline {
    state: Mutex<State>,
    changed: Condvar,
}

impl Deadline {
    /// Starts the watchdog, which publishes on `role`; it ends with `stop`.
    pub(super) fn start(
        role: Arc<watch::Sender<Role>>,
        grace: Duration,
    ) -> Result<Arc<Deadline>, String> {
        let deadline = Arc::new(Deadline {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let watched = deadline.clone();
        std::thread::Builder::new()
            .name("hub-lease-deadline".into())
            .spawn(move || watched.watch(&role, grace))
            .map_err(|e| format!("cannot start the lease's watchdog: {e}"))?;
        Ok(deadline)
    }

    fn watch(&self, role: &watch::Sender<Role>, grace: Duration) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if state.stop {
                return;
            }
            state = match state.until {
                Some(until) if !state.passed => {
                    let now = Instant::now();
                    if now >= until + grace {
                        state.passed = true;
                        log::error!(
                            "this hub's lease was not renewed by its deadline (its database does not answer); it steps down, so that two hubs never act as owner"
                        );
                        role.send_replace(Role::Unknown);
                        continue;
                    }
                    self.changed
                        .wait_timeout(state, until + grace - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                _ => self.changed.wait(state).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    /// The instant before which this process may act as the owner (None: it is not the owner).
    /// A step-down the watchdog made stands until the keeper took it (`take_passed`), even if
    /// the keeper renewed meanwhile: its next look completes it.
    pub(super) fn set(&self, until: Option<Instant>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.until != until && !state.passed {
            state.until = until;
            self.changed.notify_all();
        }
    }

    /// Whether the watchdog stepped down since the deadline was last set; if so, the deadline
    /// is cleared (the keeper completes the step-down).
    pub(super) fn take_passed(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.passed {
            state.passed = false;
            state.until = None;
            return true;
        }
        false
    }

    pub(super) fn stop(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.stop = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Role {
        Role::Owner {
            holder: "me".into(),
            generation: 1,
        }
    }

    #[test]
    fn steps_down_once_the_deadline_passed_unrenewed() {
        let (tx, rx) = watch::channel(owner());
        let deadline = Deadline::start(Arc::new(tx), Duration::from_millis(10)).unwrap();
        deadline.set(Some(Instant::now() + Duration::from_millis(300)));
        std::thread::sleep(Duration::from_millis(20));
        // Renewed in time: the deadline moves, nothing happens.
        deadline.set(Some(Instant::now() + Duration::from_millis(400)));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(*rx.borrow(), owner());
        assert!(!deadline.take_passed());
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(*rx.borrow(), Role::Unknown);
        assert!(deadline.take_passed());
        assert!(!deadline.take_passed(), "told once");
        deadline.stop();
    }

    #[test]
    fn no_deadline_no_step_down() {
        let (tx, rx) = watch::channel(owner());
        let deadline = Deadline::start(Arc::new(tx), Duration::ZERO).unwrap();
        deadline.set(Some(Instant::now() + Duration::from_millis(20)));
        deadline.set(None);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(*rx.borrow(), owner());
        assert!(!deadline.take_passed());
        deadline.stop();
    }
}
