//! How fast viewers' `call`s may reach the actors the agents use. A viewer's read travels the
//! agents' own path (the `Hub` actor, the session actor, the store's readers) and waits in the
//! same mailboxes: four dashboards reading in a closed loop cost the agents about 30 % of their
//! tool calls (BENCHMARKS.md, Step 7). So viewers' calls are paced by two token buckets, one
//! per connection (one page cannot take the whole budget) and one for the hub (a hundred pages
//! together cannot either). A call over budget waits for a token: a dashboard slows down, its
//! reads are never refused or lost, and the agents keep their pace. Participants' calls (an
//! agent, or a person acting as `human:<name>`) are not paced here.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::message::RateLimit;

/// Calls one viewer connection may make at once, then per second. The dashboard debounces its
/// refreshes (120 ms per list) and reads five lists: this keeps up with a busy session.
pub const PER_CONNECTION_BURST: u32 = 30;
pub const PER_CONNECTION_RATE: f64 = 10.0;

/// The hub-wide bucket for all viewers' calls (`--viewer-reads-per-sec`).
#[derive(Debug)]
pub struct ViewerBudget {
    hub: Mutex<RateLimit>,
    per_sec: f64,
}

impl ViewerBudget {
    /// `per_sec` calls a second for all viewers together, and twice that at once.
    pub fn new(per_sec: f64) -> Self {
        let per_sec = per_sec.max(1.0);
        ViewerBudget {
            hub: Mutex::new(RateLimit::new(
                (per_sec * 2.0) as u32,
                per_sec,
                Instant::now(),
            )),
            per_sec,
        }
    }

    /// A connection's own bucket.
    pub fn connection(&self) -> Mutex<RateLimit> {
        let rate = PER_CONNECTION_RATE.min(self.per_sec);
        Mutex::new(RateLimit::new(PER_CONNECTION_BURST, rate, Instant::now()))
    }

    /// Waits until both the connection's bucket and the hub's have a token, and takes them.
    pub async fn admit(&self, connection: &Mutex<RateLimit>) {
        while let Err(wait) = self.try_admit(connection, Instant::now()) {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes a token from each bucket, or none and says how long to wait.
    fn try_admit(&self, connection: &Mutex<RateLimit>, now: Instant) -> Result<(), Duration> {
        let mut own = connection.lock().unwrap_or_else(|e| e.into_inner());
        own.take(now)?;
        let taken = self.hub.lock().unwrap_or_else(|e| e.into_inner()).take(now);
        // Over the hub's budget: the connection's token goes back, so the wait costs it nothing.
        taken.inspect_err(|_| own.refund())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_gets_its_burst_then_its_rate() {
        let budget = ViewerBudget::new(1000.0);
        let own = budget.connection();
        let t = Instant::now();
        for _ in 0..PER_CONNECTION_BURST {
            assert!(budget.try_admit(&own, t).is_ok());
        }
        let wait = budget.try_admit(&own, t).unwrap_err();
        assert!(
            wait <= Duration::from_secs_f64(1.0 / PER_CONNECTION_RATE),
            "{wait:?}"
        );
        let later = t + Duration::from_secs_f64(1.0 / PER_CONNECTION_RATE);
        assert!(budget.try_admit(&own, later).is_ok());
    }

    #[test]
    fn connections_share_the_hub_budget_and_a_refusal_costs_nothing() {
        let budget = ViewerBudget::new(5.0);
        let t = Instant::now();
        let (a, b) = (budget.connection(), budget.connection());
        // The hub's burst is twice its rate: 10 calls, whoever makes them.
        for i in 0..10 {
            let own = if i % 2 == 0 { &a } else { &b };
            assert!(budget.try_admit(own, t).is_ok(), "call {i}");
        }
        assert!(budget.try_admit(&a, t).is_err());
        assert!(budget.try_admit(&b, t).is_err());
        // Refused by the hub: `a` kept its own tokens (30 - 5 taken), so once the hub refills
        // it is only the hub's rate that paces it (1.5 tokens in 300 ms).
        let later = t + Duration::from_millis(300);
        assert!(budget.try_admit(&a, later).is_ok());
        assert!(budget.try_admit(&a, later).is_err());
    }
}
