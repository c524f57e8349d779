//! Presence: whether a participant is here. `connected` while it holds a live event stream (a
//! WebSocket subscription or an MCP stream), `idle` when it has none but was heard from within
//! the disconnect grace period, `disconnected` beyond. Each change is a `presence_changed`
//! event, so the dashboard and the log see the same thing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::event::{NewEvent, Priority};

pub const PRESENCE_CHANGED: &str = "presence_changed";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Connected,
    Idle,
    Disconnected,
}

impl Presence {
    /// `streams`: live streams open now; `heard`: time since the participant last called the
    /// hub (`None`: never since this hub started).
    pub fn of(streams: usize, heard: Option<Duration>, grace: Duration) -> Presence {
        if streams > 0 {
            Presence::Connected
        } else if heard.is_some_and(|h| h <= grace) {
            Presence::Idle
        } else {
            Presence::Disconnected
        }
    }

    /// The state `as_str` names.
    pub fn parse(s: &str) -> Option<Presence> {
        [Presence::Connected, Presence::Idle, Presence::Disconnected]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Connected => "connected",
            Presence::Idle => "idle",
            Presence::Disconnected => "disconnected",
        }
    }
}

/// The event announcing `ai_id`'s new presence. Routine: it matters to people watching, not
/// enough to interrupt anyone.
pub fn changed(ai_id: &str, presence: Presence, last_seen: Option<DateTime<Utc>>) -> NewEvent {
    NewEvent {
        kind: PRESENCE_CHANGED,
        actor: None,
        priority: Priority::Routine,
        payload: json!({ "aiId": ai_id, "state": presence.as_str(), "lastSeen": last_seen }),
        to: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(60);

    #[test]
    fn a_stream_means_connected_whatever_the_silence() {
        assert_eq!(Presence::of(1, None, GRACE), Presence::Connected);
        assert_eq!(
            Presence::of(2, Some(Duration::from_secs(3600)), GRACE),
            Presence::Connected
        );
    }

    #[test]
    fn without_a_stream_the_grace_period_decides() {
        assert_eq!(
            Presence::of(0, Some(Duration::from_secs(5)), GRACE),
            Presence::Idle
        );
        assert_eq!(Presence::of(0, Some(GRACE), GRACE), Presence::Idle);
        assert_eq!(
            Presence::of(0, Some(GRACE + Duration::from_secs(1)), GRACE),
            Presence::Disconnected
        );
        assert_eq!(Presence::of(0, None, GRACE), Presence::Disconnected);
    }

    #[test]
    fn a_state_reads_back_from_its_name() {
        for p in [Presence::Connected, Presence::Idle, Presence::Disconnected] {
            assert_eq!(Presence::parse(p.as_str()), Some(p));
        }
        assert_eq!(Presence::parse("away"), None);
    }

    #[test]
    fn the_event_names_who_and_what() {
        let e = changed("claude", Presence::Idle, None);
        assert_eq!(e.kind, PRESENCE_CHANGED);
        assert_eq!(e.payload["aiId"], "claude");
        assert_eq!(e.payload["state"], "idle");
        assert!(e.actor.is_none() && e.to.is_none());
    }
}
