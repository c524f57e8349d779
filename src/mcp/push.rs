//! The forms a session event takes on a participant's GET stream besides the hub's own
//! `notifications/collab/event`, so that stock clients surface it (docs/mcp-notifications.md):
//!
//! - `notifications/message` (a log entry, logger `collab-hub`) once the client called
//!   `logging/setLevel`, at a level mapped from the event's priority and only at or above the
//!   level asked for;
//! - `notifications/resources/updated` for the participant's inbox resource
//!   (`collab://session/{id}/inbox`) once the client subscribed to it;
//! - `notifications/claude/channel` for critical events, to clients that take Claude Code
//!   channel notifications.
//!
//! All of these are about events that wait for the participant: someone else's (or the hub's)
//! that it may see. Its own actions are not news to it. Payloads are compact (a line, not the
//! event): the inbox resource and `events_poll` have the rest.

use serde_json::{Map, Value, json};

use super::protocol::notification;
use crate::domain::event::{Event, Priority};
use crate::domain::genome::MessageVerbosity;

/// `logger` of the hub's log entries.
pub const LOGGER: &str = "collab-hub";
/// The experimental capability of Claude Code channels: the hub declares it in its initialize
/// result (Claude Code listens only to servers that do), and a client may declare it in its
/// own to ask for channel notifications.
pub const CHANNEL_CAPABILITY: &str = "claude/channel";
pub const CHANNEL_NOTIFICATION: &str = "notifications/claude/channel";
/// `clientInfo.name` of Claude Code, which takes channel notifications without declaring the
/// capability (it gates them on the server's capability and its own `--channels` list).
pub const CLAUDE_CODE: &str = "claude-code";

/// Longest text of a channel notification, and of a summary's `gist` fallback.
const PAYLOAD_CHARS: usize = 240;

/// RFC 5424 levels, as MCP names them, least severe first.
pub const LOG_LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

/// Why a client gets channel notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChannelOptIn {
    /// Its initialize declared `capabilities.experimental["claude/channel"]`: it puts channel
    /// notifications before its model, so a message sent this way counts as shown to it.
    Declared,
    /// It is Claude Code, which shows them only when the user enabled the hub as a channel
    /// (`--channels`): sent, but not counted as shown.
    ClaudeCode,
}

impl ChannelOptIn {
    /// From the `initialize` params.
    pub fn of(params: &Value) -> Option<ChannelOptIn> {
        if params
            .pointer("/capabilities/experimental")
            .and_then(|e| e.get(CHANNEL_CAPABILITY))
            .is_some_and(Value::is_object)
        {
            Some(ChannelOptIn::Declared)
        } else if params.pointer("/clientInfo/name").and_then(Value::as_str) == Some(CLAUDE_CODE) {
            Some(ChannelOptIn::ClaudeCode)
        } else {
            None
        }
    }
}

fn rank(level: &str) -> Option<usize> {
    LOG_LEVELS.iter().position(|l| *l == level)
}

/// Does a client that asked for `wanted` get a log entry at `level`?
pub fn log_wanted(wanted: Option<&str>, level: &str) -> bool {
    match (wanted.and_then(rank), rank(level)) {
        (Some(w), Some(l)) => l >= w,
        _ => false,
    }
}

/// The log level of an event: critical → `alert` (act now), important → `warning`, routine →
/// `info`. So `info` gets every event, `warning` important and critical ones, anything from
/// `error` to `alert` critical ones only.
pub fn level_of(priority: Priority) -> &'static str {
    match priority {
        Priority::Critical => "alert",
        Priority::Important => "warning",
        Priority::Routine => "info",
    }
}

/// Does `e` wait for `viewer` (so it is news to it)? Its own actions do not.
pub fn waits_for(e: &Event, viewer: &str) -> bool {
    e.actor.as_deref() != Some(viewer)
}

fn clip(text: &str, chars: usize) -> String {
    let mut out: String = text.chars().take(chars).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// What the event says in a line at the session's `messageVerbosity`: nothing (minimal); its
/// gist, else its payload, clipped (standard); its whole text, else the clipped payload
/// (detailed).
fn gist(e: &Event, verbosity: MessageVerbosity) -> Option<String> {
    if verbosity == MessageVerbosity::Minimal {
        return None;
    }
    Some(
        crate::domain::digest::said(e, verbosity)
            .unwrap_or_else(|| clip(&e.payload.to_string(), PAYLOAD_CHARS)),
    )
}

/// An event in a few fields: `{id, kind, priority, from, to?, gist?}` (`from` is `hub` for the
/// hub's own events; `to` only on directed ones; no `gist` at minimal verbosity).
pub fn summary(e: &Event, verbosity: MessageVerbosity) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(e.id));
    m.insert("kind".into(), json!(e.kind));
    m.insert("priority".into(), json!(e.priority.as_str()));
    m.insert("from".into(), json!(e.actor.as_deref().unwrap_or("hub")));
    if let Some(to) = &e.to {
        m.insert("to".into(), json!(to));
    }
    if let Some(gist) = gist(e, verbosity) {
        m.insert("gist".into(), json!(gist));
    }
    Value::Object(m)
}

/// `notifications/message` for an event.
pub fn log_entry(e: &Event, verbosity: MessageVerbosity) -> Value {
    notification(
        "notifications/message",
        json!({ "level": level_of(e.priority), "logger": LOGGER, "data": summary(e, verbosity) }),
    )
}

/// `notifications/claude/channel` for an event: `content` is the line the model reads,
/// `meta` string attributes (identifier keys: Claude Code drops others) on its `<channel>` tag.
pub fn channel_message(e: &Event, verbosity: MessageVerbosity) -> Value {
    let from = e.actor.as_deref().unwrap_or("hub");
    let mut content = format!("#{} {} by {from}", e.id, e.kind);
    if let Some(gist) = gist(e, verbosity) {
        content.push_str(&format!(": {gist}"));
    }
    notification(
        CHANNEL_NOTIFICATION,
        json!({
            "content": content,
            "meta": { "event_id": e.id.to_string(), "kind": e.kind, "from": from },
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(priority: Priority, actor: Option<&str>, payload: Value) -> Event {
        Event {
            id: 7,
            session_id: uuid::Uuid::nil(),
            kind: "message_sent".into(),
            actor: actor.map(Into::into),
            priority,
            payload,
            at: chrono::Utc::now(),
            to: Some("claude".into()),
        }
    }

    #[test]
    fn levels_follow_priority_and_the_level_asked_for() {
        assert_eq!(level_of(Priority::Critical), "alert");
        assert_eq!(level_of(Priority::Important), "warning");
        assert_eq!(level_of(Priority::Routine), "info");
        assert!(log_wanted(Some("info"), "info"));
        assert!(log_wanted(Some("warning"), "alert"));
        assert!(!log_wanted(Some("warning"), "info"));
        assert!(!log_wanted(Some("emergency"), "alert"));
        assert!(!log_wanted(None, "alert"), "no level set: no log entries");
    }

    #[test]
    fn a_log_entry_is_compact() {
        let body = "x".repeat(10_000);
        let e = event(Priority::Critical, Some("gemini"), json!({ "body": body }));
        let n = log_entry(&e, MessageVerbosity::Standard);
        assert_eq!(n["method"], "notifications/message");
        assert_eq!(n["params"]["level"], "alert");
        assert_eq!(n["params"]["logger"], "collab-hub");
        let data = &n["params"]["data"];
        assert_eq!(data["id"], 7);
        assert_eq!(data["from"], "gemini");
        assert_eq!(data["to"], "claude");
        assert!(n.to_string().len() < 400, "{n}");
    }

    #[test]
    fn summaries_say_as_much_as_the_sessions_verbosity() {
        let body = "why the deploy must stop, in detail ".repeat(10);
        let e = event(Priority::Critical, Some("gemini"), json!({ "body": body }));
        let minimal = summary(&e, MessageVerbosity::Minimal);
        assert!(minimal.get("gist").is_none(), "{minimal}");
        assert_eq!(minimal["from"], "gemini");
        let content = channel_message(&e, MessageVerbosity::Minimal)["params"]["content"].clone();
        assert_eq!(content, "#7 message_sent by gemini");
        assert_eq!(
            summary(&e, MessageVerbosity::Standard)["gist"],
            json!(e.gist().unwrap())
        );
        assert_eq!(summary(&e, MessageVerbosity::Detailed)["gist"], json!(body));
    }

    #[test]
    fn channel_notifications_have_the_claude_code_shape() {
        let e = event(Priority::Critical, None, json!({ "summary": "tests fail" }));
        let n = channel_message(&e, MessageVerbosity::Standard);
        assert_eq!(n["method"], "notifications/claude/channel");
        assert_eq!(n["params"]["content"], "#7 message_sent by hub: tests fail");
        let meta = n["params"]["meta"].as_object().unwrap();
        assert!(meta.values().all(Value::is_string));
        assert!(
            meta.keys()
                .all(|k| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        );
        // No gist: the payload, clipped.
        let e = event(
            Priority::Critical,
            Some("a"),
            json!({ "x": "y".repeat(1000) }),
        );
        let content =
            channel_message(&e, MessageVerbosity::Standard)["params"]["content"].to_string();
        assert!(content.len() < 320, "{content}");
    }

    #[test]
    fn who_takes_channel_notifications() {
        let declared = json!({ "capabilities": { "experimental": { "claude/channel": {} } }, "clientInfo": { "name": "x" } });
        assert_eq!(ChannelOptIn::of(&declared), Some(ChannelOptIn::Declared));
        let claude =
            json!({ "capabilities": { "roots": {} }, "clientInfo": { "name": "claude-code" } });
        assert_eq!(ChannelOptIn::of(&claude), Some(ChannelOptIn::ClaudeCode));
        let other = json!({ "capabilities": {}, "clientInfo": { "name": "gemini-cli" } });
        assert_eq!(ChannelOptIn::of(&other), None);
    }
}
