//! A participant's outbox: events waiting to be delivered, bounded; critical ones can pass the
//! others while a checkpoint holds those back.
//!
//! When the bound is hit the outbox does not grow: it drops its contents and remembers the
//! oldest event id it no longer holds, so the transport replays from the event log instead
//! (DESIGN: a slow consumer is dropped to "replay from the log" mode).

use std::collections::VecDeque;
use std::sync::Arc;

use super::event::{Event, Priority};

#[derive(Debug)]
pub struct Outbox {
    capacity: usize,
    critical: VecDeque<Arc<Event>>,
    important: VecDeque<Arc<Event>>,
    routine: VecDeque<Arc<Event>>,
    /// Set when events were dropped: replay the log from after this id.
    replay_after: Option<i64>,
}

/// What to hand to the transport next.
#[derive(Debug, PartialEq)]
pub enum Next {
    Event(Arc<Event>),
    /// Read the log after this id; the outbox no longer holds those events.
    ReplayAfter(i64),
    Empty,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Outbox {
            capacity: capacity.max(1),
            critical: VecDeque::new(),
            important: VecDeque::new(),
            routine: VecDeque::new(),
            replay_after: None,
        }
    }

    pub fn len(&self) -> usize {
        self.critical.len() + self.important.len() + self.routine.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.replay_after.is_none()
    }

    pub fn push(&mut self, event: Arc<Event>) {
        if self.replay_after.is_some() {
            return; // already replaying from the log, which holds this event too
        }
        if self.len() >= self.capacity {
            let oldest = [&self.critical, &self.important, &self.routine]
                .iter()
                .filter_map(|q| q.front().map(|e| e.id))
                .chain(std::iter::once(event.id))
                .min()
                .unwrap_or(event.id);
            self.critical.clear();
            self.important.clear();
            self.routine.clear();
            self.replay_after = Some(oldest - 1);
            return;
        }
        match event.priority {
            Priority::Critical => self.critical.push_back(event),
            Priority::Important => self.important.push_back(event),
            Priority::Routine => self.routine.push_back(event),
        }
    }

    /// Events after `after` were not handed to this outbox: drop what it holds and replay.
    pub fn mark_missed(&mut self, after: i64) {
        let oldest_held = [&self.critical, &self.important, &self.routine]
            .iter()
            .filter_map(|q| q.front().map(|e| e.id - 1))
            .min();
        let after = oldest_held.map_or(after, |o| o.min(after));
        self.replay_after = Some(self.replay_after.map_or(after, |r| r.min(after)));
        self.critical.clear();
        self.important.clear();
        self.routine.clear();
    }

    /// The next event to hand over. Normally that is log order (lowest id first), so a stream's
    /// cursor never jumps past an event it has not sent. While the participant is in a
    /// non-interruptible checkpoint (`allow_non_critical` false) only critical events come out;
    /// the others wait their turn.
    pub fn next(&mut self, allow_non_critical: bool) -> Next {
        if let Some(after) = self.replay_after.take() {
            return Next::ReplayAfter(after);
        }
        if !allow_non_critical {
            return self.critical.pop_front().map_or(Next::Empty, Next::Event);
        }
        let head = |q: &VecDeque<Arc<Event>>| q.front().map_or(i64::MAX, |e| e.id);
        let queue = [&mut self.critical, &mut self.important, &mut self.routine]
            .into_iter()
            .min_by_key(|q| head(q));
        queue
            .and_then(VecDeque::pop_front)
            .map_or(Next::Empty, Next::Event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: i64, priority: Priority) -> Arc<Event> {
        Arc::new(Event {
            id,
            session_id: uuid::Uuid::nil(),
            kind: "k".into(),
            actor: None,
            priority,
            payload: serde_json::Value::Null,
            at: crate::domain::now().and_utc(),
            to: None,
        })
    }

    fn id(n: Next) -> i64 {
        match n {
            Next::Event(e) => e.id,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn log_order_across_priorities() {
        let mut o = Outbox::new(10);
        o.push(ev(1, Priority::Routine));
        o.push(ev(2, Priority::Important));
        o.push(ev(3, Priority::Critical));
        o.push(ev(4, Priority::Routine));
        for expected in 1..=4 {
            assert_eq!(id(o.next(true)), expected);
        }
        assert_eq!(o.next(true), Next::Empty);
    }

    #[test]
    fn checkpoint_holds_back_non_critical() {
        let mut o = Outbox::new(10);
        o.push(ev(1, Priority::Routine));
        o.push(ev(2, Priority::Critical));
        assert_eq!(id(o.next(false)), 2);
        assert_eq!(o.next(false), Next::Empty);
        assert_eq!(id(o.next(true)), 1);
    }

    #[test]
    fn overflow_switches_to_replay() {
        let mut o = Outbox::new(2);
        o.push(ev(5, Priority::Routine));
        o.push(ev(6, Priority::Routine));
        o.push(ev(7, Priority::Critical));
        assert_eq!(o.len(), 0);
        o.push(ev(8, Priority::Routine));
        assert_eq!(o.next(true), Next::ReplayAfter(4));
        assert_eq!(o.next(true), Next::Empty);
    }
}
