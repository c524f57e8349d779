//! What waits for a participant, as every tool result tells it: its unacknowledged critical
//! events in full, then how many important and routine events came after its cursor, with the
//! newest ids, in at most `DIGEST_BYTES`. Nothing when nothing waits. Stock MCP clients show
//! the model tool results, not server notifications, so this is the one channel every client
//! has.
//!
//! The counts come from `Recent`, a bounded ring of the session's newest event headers kept in
//! memory (no database read per tool call). A cursor older than the ring is counted as far as
//! the ring reaches and marked `at least`. Each participant's last counts are kept with the
//! cursor they were counted from (`Tally`), so a tool result counts only the events that came
//! since: walking the ring back to the cursor at every call cost an agent that never
//! acknowledges a walk of all 4,096 headers (12 % of the hub's CPU with 32 agents sending into
//! one session, BENCHMARKS.md "the digest counted as events come").
//!
//! The critical block lists the session's newest unacknowledged critical events (the session
//! keeps `RECENT_CRITICAL` of them in full); older unacknowledged ones are counted from the
//! ring (`Pending::older_critical`), so the header's number is the whole count. A critical
//! event that asked the reader for an action it has since taken (`domain::settle`) is not
//! listed (it is not acknowledged either: it just stops leading).
//!
//! The critical events the text lists in full are *shown to the model* (`listed`): for
//! messages the hub records that receipt (`shownTo`), apart from delivery to a stream and from
//! acknowledgement. Counts are not "shown".
//!
//! The session's `messageVerbosity` sets how much of each critical event the text carries:
//! minimal its id, kind and sender only (nothing is shown in full, so nothing is `listed`),
//! standard a gist of at most 120 characters, detailed the whole text (clipped only to fit
//! the budget).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::event::{Event, Priority};
use super::genome::MessageVerbosity;

/// Most bytes the digest on a tool result takes.
pub const DIGEST_BYTES: usize = 800;
/// Event headers a session keeps for the counts.
pub const RECENT_EVENTS: usize = 4096;

#[derive(Debug, Clone)]
struct Header {
    id: i64,
    priority: Priority,
    actor: Option<Arc<str>>,
    to: Option<Arc<str>>,
}

impl Header {
    /// Waits for `ai_id`: someone else's, and meant for everyone or for it.
    fn waits_for(&self, ai_id: &str) -> bool {
        self.actor.as_deref() != Some(ai_id) && self.to.as_deref().is_none_or(|to| to == ai_id)
    }
}

/// The newest events' headers, oldest first; and apart, the newest critical ones, so that a
/// flood of routine events does not push unacknowledged critical events out of the count.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    ring: VecDeque<Header>,
    critical: VecDeque<Header>,
    /// What `waiting` last counted, per participant (a cache: the session's actor asks
    /// through `&self`).
    tallies: RefCell<HashMap<String, Tally>>,
}

/// A participant's counts of the ring's events with ids in `after+1..=through`.
#[derive(Debug, Clone, Copy)]
struct Tally {
    after: i64,
    through: i64,
    counts: Counts,
}

/// Most participants whose counts are kept; past it they are all counted afresh.
const MOST_TALLIES: usize = 1024;

impl Counts {
    /// The count an event of `priority` goes in (none for critical ones: listed in full).
    fn slot(&mut self, priority: Priority) -> Option<&mut (u32, i64)> {
        match priority {
            Priority::Critical => None,
            Priority::Important => Some(&mut self.important),
            Priority::Routine => Some(&mut self.routine),
        }
    }

    /// Counts `h`, one more event waiting.
    fn add(&mut self, h: &Header) {
        if let Some(slot) = self.slot(h.priority) {
            slot.0 += 1;
            slot.1 = slot.1.max(h.id);
        }
    }

    /// Stops counting `h`, the oldest event counted (it left the ring): the newest id stays,
    /// unless nothing is left.
    fn remove_oldest(&mut self, h: &Header) {
        if let Some(slot) = self.slot(h.priority) {
            slot.0 = slot.0.saturating_sub(1);
            if slot.0 == 0 {
                slot.1 = 0;
            }
        }
    }
}

impl Recent {
    pub fn record(&mut self, e: &Event) {
        self.push(e.id, e.priority, e.actor.as_deref(), e.to.as_deref());
    }

    /// An event by its header (the log's newest ones, oldest first, when a session loads).
    pub fn push(&mut self, id: i64, priority: Priority, actor: Option<&str>, to: Option<&str>) {
        let header = Header {
            id,
            priority,
            actor: actor.map(Arc::from),
            to: to.map(Arc::from),
        };
        if priority == Priority::Critical {
            self.push_older_critical(header.clone());
        }
        if self.ring.len() == RECENT_EVENTS
            && let Some(gone) = self.ring.pop_front()
        {
            for (ai_id, tally) in self.tallies.get_mut().iter_mut() {
                if gone.id > tally.after && gone.id <= tally.through && gone.waits_for(ai_id) {
                    tally.counts.remove_oldest(&gone);
                }
            }
        }
        self.ring.push_back(header);
    }

    /// A critical event older than those in the ring (when a session loads: oldest first,
    /// before the ring's events).
    pub fn push_critical(&mut self, id: i64, actor: Option<&str>, to: Option<&str>) {
        self.push_older_critical(Header {
            id,
            priority: Priority::Critical,
            actor: actor.map(Arc::from),
            to: to.map(Arc::from),
        });
    }

    fn push_older_critical(&mut self, header: Header) {
        if self.critical.len() == RECENT_EVENTS {
            self.critical.pop_front();
        }
        self.critical.push_back(header);
    }

    /// How many critical events with ids in `after+1..before` wait for `ai_id`, leaving out
    /// those `skip` names (acknowledged one by one, settled): the ones older than those a
    /// session keeps in full. From the critical headers kept apart (the newest
    /// `RECENT_EVENTS` of them), however many other events came after.
    pub fn critical_between(
        &self,
        ai_id: &str,
        after: i64,
        before: i64,
        skip: impl Fn(i64) -> bool,
    ) -> u32 {
        self.critical
            .iter()
            .rev()
            .skip_while(|h| h.id >= before)
            .take_while(|h| h.id > after)
            .filter(|h| h.waits_for(ai_id) && !skip(h.id))
            .count() as u32
    }

    /// Important and routine events after `after` that wait for `ai_id`: the events since
    /// its last counts, added to them if they were counted from the same cursor; else counted
    /// afresh.
    pub fn waiting(&self, ai_id: &str, after: i64) -> Counts {
        let mut tallies = self.tallies.borrow_mut();
        let (mut counts, since) = match tallies.get(ai_id) {
            Some(t) if t.after == after => (t.counts, t.through),
            _ => (Counts::default(), after),
        };
        // Newest first: stop at what was counted.
        for h in self.ring.iter().rev().take_while(|h| h.id > since) {
            if h.waits_for(ai_id) {
                counts.add(h);
            }
        }
        let through = self.ring.back().map_or(since, |h| h.id.max(since));
        if tallies.len() >= MOST_TALLIES && !tallies.contains_key(ai_id) {
            tallies.clear();
        }
        tallies.insert(
            ai_id.to_owned(),
            Tally {
                after,
                through,
                counts,
            },
        );
        counts.partial = self.ring.front().is_some_and(|h| h.id > after + 1);
        counts
    }

    /// `waiting`, by walking the ring back to the cursor: what the counts kept must equal.
    #[cfg(test)]
    fn waiting_walked(&self, ai_id: &str, after: i64) -> Counts {
        let mut counts = Counts {
            partial: self.ring.front().is_some_and(|h| h.id > after + 1),
            ..Counts::default()
        };
        for h in self.ring.iter().rev().take_while(|h| h.id > after) {
            if h.waits_for(ai_id) {
                counts.add(h);
            }
        }
        counts
    }
}

/// How many events of a priority wait, and the newest one's id.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub important: (u32, i64),
    pub routine: (u32, i64),
    /// The cursor is older than what is counted: these are lower bounds.
    pub partial: bool,
}

/// Everything a digest says.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    /// Unacknowledged critical events, oldest first.
    pub critical: Vec<Event>,
    /// More unacknowledged critical events, older than those in `critical` (counted, not
    /// listed).
    pub older_critical: u32,
    pub counts: Counts,
    /// The participant's acknowledged cursor.
    pub cursor: i64,
    /// How much of each critical event to say (the session genome's `messageVerbosity`).
    pub verbosity: MessageVerbosity,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.critical.is_empty()
            && self.older_critical == 0
            && self.counts.important.0 == 0
            && self.counts.routine.0 == 0
    }

    fn newest(&self) -> i64 {
        let critical = self.critical.iter().map(|e| e.id).max().unwrap_or(0);
        critical
            .max(self.counts.important.1)
            .max(self.counts.routine.1)
    }
}

/// What an event says at `verbosity`: nothing (minimal), its gist (standard), its whole text
/// (detailed). For one-line event summaries.
pub fn said(e: &Event, verbosity: MessageVerbosity) -> Option<String> {
    match verbosity {
        MessageVerbosity::Minimal => None,
        MessageVerbosity::Standard => e.gist(),
        MessageVerbosity::Detailed => e.text(),
    }
}

/// The digest for a tool result, in at most `budget` bytes; `None` when nothing waits.
pub fn digest(p: &Pending, budget: usize) -> Option<String> {
    compose(p, budget).map(|(text, _)| text)
}

/// The ids of the critical events `digest(p, budget)` shows in full, oldest first: what the
/// model reads of them (the rest of the digest is counts).
pub fn listed(p: &Pending, budget: usize) -> Vec<i64> {
    let n = compose(p, budget).map_or(0, |(_, n)| n);
    p.critical.iter().take(n).map(|e| e.id).collect()
}

/// The digest and how many of `p.critical` it lists in full.
fn compose(p: &Pending, budget: usize) -> Option<(String, usize)> {
    if p.is_empty() {
        return None;
    }
    let mut tail = String::new();
    let at_least = if p.counts.partial { "at least " } else { "" };
    let mut parts = Vec::new();
    for (name, (n, newest)) in [
        ("important", p.counts.important),
        ("routine", p.counts.routine),
    ] {
        if n > 0 {
            parts.push(format!("{at_least}{n} {name} (newest #{newest})"));
        }
    }
    if !parts.is_empty() {
        let lead = if p.critical.is_empty() {
            "Waiting"
        } else {
            "Also waiting"
        };
        tail.push_str(&format!(
            "{lead} after #{}: {}.\n",
            p.cursor,
            parts.join(", ")
        ));
    }
    tail.push_str(&format!(
        "events_poll to read; events_ack {{\"upTo\": {}}} to clear.",
        p.newest()
    ));
    let mut out = String::new();
    let mut shown = 0;
    let total = p.critical.len() + p.older_critical as usize;
    if total > 0 {
        out.push_str(&format!("⚠ {total} critical not acknowledged:"));
        if p.older_critical > 0 {
            // The oldest are counted, not listed: say so first (they are the oldest).
            out.push_str(&format!(
                "\n({} older, not listed: events_poll to read)",
                p.older_critical
            ));
        }
        for (i, e) in p.critical.iter().enumerate() {
            let by = e.actor.as_deref().unwrap_or("hub");
            let mut line = format!("\n#{} {} by {by}", e.id, e.kind);
            let more = format!("\n+{} more critical", p.critical.len() - i);
            // Room for this line, a possible "+N more" and the tail.
            let room = budget.saturating_sub(out.len() + more.len() + 1 + tail.len());
            if let Some(mut text) = said(e, p.verbosity) {
                let left = room.saturating_sub(line.len() + 2);
                if p.verbosity == MessageVerbosity::Detailed && text.len() > left {
                    // A whole body that does not fit is clipped to the room left, unless that
                    // would say less than the gist.
                    let clipped = truncate(&text, left);
                    let gist = e.gist().unwrap_or_default();
                    text = if clipped.chars().count() > gist.chars().count() {
                        clipped
                    } else {
                        gist
                    };
                }
                line.push_str(&format!(": {text}"));
            }
            if line.len() > room {
                out.push_str(&more);
                break;
            }
            out.push_str(&line);
            shown += 1;
        }
        out.push('\n');
    }
    out.push_str(&tail);
    // A budget too small for even the tail still gets something whole-line and short (and
    // lists nothing in full).
    if out.len() > budget {
        out = truncate(&out, budget);
        shown = 0;
    }
    if p.verbosity == MessageVerbosity::Minimal {
        shown = 0; // ids and senders: no message was put before the model
    }
    Some((out, shown))
}

fn truncate(text: &str, budget: usize) -> String {
    let mut end = budget.saturating_sub('…'.len_utf8()).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The counts kept per participant equal a walk of the ring, whatever comes: events from
    /// and to anyone, cursors that stay or move (forward, or back after a reload), and more
    /// events than the ring holds.
    #[test]
    fn kept_counts_equal_a_walk_of_the_ring() {
        let people = ["claude", "gemini", "codex"];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut r = Recent::default();
        let mut cursors = [0i64; 3];
        let mut id = 0i64;
        for step in 0..(RECENT_EVENTS as u64 * 3) {
            id += 1;
            let priority = match next(10) {
                0 => Priority::Critical,
                1..=3 => Priority::Important,
                _ => Priority::Routine,
            };
            let actor = people[next(3) as usize];
            let to = match next(4) {
                0 => Some(people[next(3) as usize]),
                _ => None,
            };
            r.push(id, priority, Some(actor), to);
            let who = next(3) as usize;
            match next(50) {
                // Acknowledged up to near the newest; codex never acknowledges, so its cursor
                // falls behind the ring (the ring's oldest events leave its counts).
                0 if who != 2 => cursors[who] = id - next(20) as i64,
                1 => cursors[who] = cursors[who].saturating_sub(next(100) as i64), // back
                _ => {}
            }
            if next(3) == 0 || step % 997 == 0 {
                let (ai, after) = (people[who], cursors[who]);
                assert_eq!(
                    r.waiting(ai, after),
                    r.waiting_walked(ai, after),
                    "{ai} after {after}, at event {id}"
                );
            }
        }
    }

    fn event(id: i64, priority: Priority, actor: &str, to: Option<&str>) -> Event {
        Event {
            id,
            session_id: uuid::Uuid::nil(),
            kind: "message_sent".into(),
            actor: Some(actor.into()),
            priority,
            payload: json!({ "body": format!("message {id} with some words in it") }),
            at: chrono::Utc::now(),
            to: to.map(Into::into),
        }
    }

    #[test]
    fn nothing_waiting_says_nothing() {
        assert_eq!(digest(&Pending::default(), DIGEST_BYTES), None);
        let mut r = Recent::default();
        r.record(&event(1, Priority::Routine, "claude", None));
        // Your own events and others' private ones do not wait for you.
        r.record(&event(2, Priority::Important, "gemini", Some("cursor")));
        let p = Pending {
            counts: r.waiting("claude", 0),
            ..Pending::default()
        };
        assert!(p.is_empty());
        assert_eq!(digest(&p, DIGEST_BYTES), None);
    }

    #[test]
    fn counts_after_the_cursor_with_the_newest_ids() {
        let mut r = Recent::default();
        for id in 1..=10 {
            let priority = if id % 3 == 0 {
                Priority::Important
            } else {
                Priority::Routine
            };
            r.record(&event(id, priority, "gemini", None));
        }
        let c = r.waiting("claude", 4);
        assert_eq!(c.important, (2, 9));
        assert_eq!(c.routine, (4, 10));
        assert!(!c.partial);
        let text = digest(
            &Pending {
                counts: c,
                cursor: 4,
                ..Pending::default()
            },
            DIGEST_BYTES,
        )
        .unwrap();
        assert_eq!(
            text,
            "Waiting after #4: 2 important (newest #9), 4 routine (newest #10).\n\
             events_poll to read; events_ack {\"upTo\": 10} to clear."
        );
    }

    #[test]
    fn a_cursor_older_than_the_ring_is_a_lower_bound() {
        let mut r = Recent::default();
        for id in 1..=(RECENT_EVENTS as i64 + 10) {
            r.record(&event(id, Priority::Routine, "gemini", None));
        }
        let c = r.waiting("claude", 0);
        assert!(c.partial);
        assert_eq!(c.routine.0 as usize, RECENT_EVENTS);
        let text = digest(
            &Pending {
                counts: c,
                ..Pending::default()
            },
            DIGEST_BYTES,
        )
        .unwrap();
        assert!(text.contains("at least 4096 routine"), "{text}");
    }

    #[test]
    fn older_critical_events_are_counted_and_listed_ones_named() {
        let mut r = Recent::default();
        for id in 1..=40 {
            r.record(&event(id, Priority::Critical, "gemini", None));
        }
        // The session keeps 31..=40 in full; 6..=30 are older, #7 was acknowledged by id.
        assert_eq!(r.critical_between("claude", 5, 31, |id| id == 7), 24);
        assert_eq!(r.critical_between("gemini", 5, 31, |_| false), 0);
        let p = Pending {
            critical: (31..=40)
                .map(|id| event(id, Priority::Critical, "gemini", None))
                .collect(),
            older_critical: 24,
            counts: Counts::default(),
            cursor: 5,
            verbosity: MessageVerbosity::Standard,
        };
        let text = digest(&p, DIGEST_BYTES).unwrap();
        assert!(
            text.starts_with("⚠ 34 critical not acknowledged:\n(24 older, not listed"),
            "{text}"
        );
        let ids = listed(&p, DIGEST_BYTES);
        assert_eq!(ids, (31..=40).collect::<Vec<_>>());
        for id in &ids {
            assert!(text.contains(&format!("#{id} message_sent")), "{text}");
        }
        // A smaller budget lists fewer, and names exactly those.
        let small = digest(&p, 400).unwrap();
        let ids = listed(&p, 400);
        assert!(!ids.is_empty() && ids.len() < 10, "{ids:?}");
        for id in &ids {
            assert!(small.contains(&format!("#{id} message_sent")), "{small}");
        }
        let next = 31 + ids.len() as i64;
        assert!(!small.contains(&format!("#{next} ")), "{small}");
        // A flood of routine events pushes the critical ones out of the ring, not the count.
        for id in 41..=(RECENT_EVENTS as i64 + 100) {
            r.record(&event(id, Priority::Routine, "gemini", None));
        }
        assert_eq!(r.critical_between("claude", 5, 31, |id| id == 7), 24);
        assert!(r.waiting("claude", 5).partial);
        // Nothing listed in a budget too small for a line.
        assert!(listed(&p, 60).is_empty());
        assert!(listed(&Pending::default(), DIGEST_BYTES).is_empty());
    }

    #[test]
    fn critical_events_come_in_full_within_the_budget() {
        let critical: Vec<Event> = (1..=50)
            .map(|id| event(id, Priority::Critical, "gemini", None))
            .collect();
        let p = Pending {
            critical,
            older_critical: 0,
            counts: Counts {
                important: (3, 60),
                routine: (7, 61),
                partial: false,
            },
            cursor: 0,
            verbosity: MessageVerbosity::Standard,
        };
        let text = digest(&p, DIGEST_BYTES).unwrap();
        assert!(text.len() <= DIGEST_BYTES, "{} bytes", text.len());
        assert!(
            text.starts_with(
                "⚠ 50 critical not acknowledged:\n#1 message_sent by gemini: message 1"
            )
        );
        assert!(text.contains("more critical"), "{text}");
        assert!(
            text.ends_with("events_ack {\"upTo\": 61} to clear."),
            "{text}"
        );
        // Every budget is honoured, down to a tiny one.
        for budget in [40, 100, 200, 400, 800, 2000] {
            let text = digest(&p, budget).unwrap();
            assert!(text.len() <= budget, "{budget}: {}", text.len());
        }
    }

    #[test]
    fn verbosity_sets_how_much_of_each_critical_event_is_said() {
        let long = "a long explanation of why the deploy must stop ".repeat(6);
        let mut critical = vec![event(1, Priority::Critical, "gemini", None)];
        critical[0].payload = json!({ "body": long });
        critical.push(event(2, Priority::Critical, "cursor", None));
        let with = |critical: &[Event], verbosity| Pending {
            critical: critical.to_vec(),
            counts: Counts {
                routine: (1, 3),
                ..Counts::default()
            },
            verbosity,
            ..Pending::default()
        };
        let standard = digest(&with(&critical, MessageVerbosity::Standard), DIGEST_BYTES).unwrap();
        let gist = critical[0].gist().unwrap();
        assert!(
            standard.contains(&format!("#1 message_sent by gemini: {gist}\n")),
            "{standard}"
        );
        assert!(gist.ends_with('…') && !standard.contains(&long));
        // Minimal: who sent what kind, no text; nothing counts as shown.
        let minimal = digest(&with(&critical, MessageVerbosity::Minimal), DIGEST_BYTES).unwrap();
        assert!(
            minimal.starts_with(
                "⚠ 2 critical not acknowledged:\n#1 message_sent by gemini\n#2 message_sent by cursor\n"
            ),
            "{minimal}"
        );
        assert!(!minimal.contains("explanation"), "{minimal}");
        assert!(listed(&with(&critical, MessageVerbosity::Minimal), DIGEST_BYTES).is_empty());
        // Detailed: the whole body, within the same budget.
        let detailed = digest(&with(&critical, MessageVerbosity::Detailed), DIGEST_BYTES).unwrap();
        assert!(
            detailed.contains(&format!("by gemini: {long}\n")),
            "{detailed}"
        );
        assert!(detailed.len() <= DIGEST_BYTES);
        assert_eq!(
            listed(&with(&critical, MessageVerbosity::Detailed), DIGEST_BYTES),
            vec![1, 2]
        );
        // A body longer than the budget is clipped to it, still more than the gist.
        critical[0].payload = json!({ "body": "x".repeat(5000) });
        let p = with(&critical, MessageVerbosity::Detailed);
        let text = digest(&p, DIGEST_BYTES).unwrap();
        assert!(text.len() <= DIGEST_BYTES, "{}", text.len());
        assert!(text.contains(&format!("{}…", "x".repeat(400))), "{text}");
        assert!(text.contains("+1 more critical"), "{text}");
        assert_eq!(listed(&p, DIGEST_BYTES), vec![1]);
        // The said text of an event summary, by verbosity.
        assert_eq!(said(&critical[1], MessageVerbosity::Minimal), None);
        assert_eq!(
            said(&critical[0], MessageVerbosity::Detailed)
                .unwrap()
                .len(),
            5000
        );
    }
}
