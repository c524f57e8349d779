//! The frames of `GET /ws` (docs/websocket.md): what a client may send, and what the hub
//! writes back. Parsing goes through `api::parse`, so a bad frame is refused naming its field,
//! as a bad REST body or MCP argument is.

use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::domain::event::{Event, Priority};
use crate::error::HubError;

/// A client frame. Every one carries an `id` the reply echoes.
#[derive(Debug)]
pub enum ClientFrame {
    Auth(Auth),
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
    Ack(Ack),
    Call(CallFrame),
    Ping(Ping),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Auth {
    pub id: Value,
    pub token: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subscribe {
    pub id: Value,
    pub session_id: Option<Uuid>,
    pub project: Option<String>,
    pub since: Option<i64>,
    pub min_priority: Option<Priority>,
    pub kinds: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Unsubscribe {
    pub id: Value,
    pub subscription: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ack {
    pub id: Value,
    pub up_to: i64,
    pub session_id: Option<Uuid>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CallFrame {
    pub id: Value,
    pub operation: String,
    pub arguments: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ping {
    pub id: Value,
}

const TYPES: &str = "auth, subscribe, unsubscribe, ack, call, ping";

/// Reads a text frame: the frame, or the error to answer with and the `id` to echo (if the
/// frame had one). Each type is parsed as its own struct, so an error names the field.
pub fn read(text: &str) -> Result<ClientFrame, (HubError, Option<Value>)> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let error = HubError::Invalid {
            code: "invalid_json",
            message: format!("a frame is one JSON object: {e}"),
            field: None,
        };
        (error, None)
    })?;
    let Value::Object(mut fields) = value else {
        return Err((HubError::invalid("", "a frame is one JSON object"), None));
    };
    let Some(id) = fields.get("id").cloned() else {
        return Err((HubError::invalid("id", "every frame carries an id"), None));
    };
    let kind = fields.remove("type");
    let value = Value::Object(fields);
    let parsed = match kind.as_ref().and_then(Value::as_str) {
        Some("auth") => crate::api::parse(value).map(ClientFrame::Auth),
        Some("subscribe") => crate::api::parse(value).map(ClientFrame::Subscribe),
        Some("unsubscribe") => crate::api::parse(value).map(ClientFrame::Unsubscribe),
        Some("ack") => crate::api::parse(value).map(ClientFrame::Ack),
        Some("call") => crate::api::parse(value).map(ClientFrame::Call),
        Some("ping") => crate::api::parse(value).map(ClientFrame::Ping),
        Some(other) => Err(HubError::invalid(
            "type",
            format!("unknown frame type {other:?}; the types are {TYPES}"),
        )),
        None => Err(HubError::invalid("type", format!("one of {TYPES}"))),
    };
    parsed.map_err(|e| (e, Some(id)))
}

/// Which events a subscription lets through.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub min_priority: Option<Priority>,
    pub kinds: Option<Vec<String>>,
}

impl Filter {
    pub fn passes(&self, event: &Event) -> bool {
        // `Priority` orders critical first.
        self.min_priority.is_none_or(|min| event.priority <= min)
            && self.kinds.as_ref().is_none_or(|k| k.contains(&event.kind))
    }
}

pub fn reply_ok(id: &Value, ok: Value) -> String {
    json!({ "type": "reply", "id": id, "ok": ok }).to_string()
}

pub fn reply_error(id: Option<&Value>, error: &HubError) -> String {
    error.ws_frame(id).to_string()
}

/// `event`, or `interrupt` for a critical one sent ahead of the routine ones queued:
/// `{"type", "subscription"}` and then the event's own fields (`Published::json`), written as
/// text so that an event serialized once serves every subscriber.
pub fn event(subscription: &str, event_json: &str, interrupt: bool) -> String {
    let kind = if interrupt { "interrupt" } else { "event" };
    // `event_json` is an object: drop its `{` and splice the two fields in front.
    let fields = event_json.strip_prefix('{').unwrap_or(event_json);
    let mut frame = String::with_capacity(event_json.len() + subscription.len() + 40);
    frame.push_str(r#"{"type":""#);
    frame.push_str(kind);
    frame.push_str(r#"","subscription":"#);
    frame.push_str(&Value::from(subscription).to_string());
    if fields != "}" {
        frame.push(',');
    }
    frame.push_str(fields);
    frame
}

pub fn resync(subscription: &str, session_id: Uuid, from: i64) -> String {
    json!({ "type": "resync", "subscription": subscription, "sessionId": session_id, "from": from })
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_with_their_fields() {
        let f = read(r#"{"type":"subscribe","id":1,"sessionId":"6f1c1c1e-8f3a-4d55-9a56-2a6c9c3f0b11","since":4,"minPriority":"important"}"#).unwrap();
        assert!(matches!(
            f,
            ClientFrame::Subscribe(Subscribe {
                since: Some(4),
                min_priority: Some(Priority::Important),
                ..
            })
        ));
        let f = read(r#"{"type":"call","id":"a","operation":"lock"}"#).unwrap();
        assert!(matches!(
            f,
            ClientFrame::Call(CallFrame {
                arguments: None,
                ..
            })
        ));
        let (e, _) = read(r#"{"type":"subscribe","id":1,"sessionId":"nope"}"#).unwrap_err();
        assert_eq!(e.field(), Some("sessionId"));
    }

    #[test]
    fn event_frames_carry_the_event_fields_and_the_subscription() {
        let e = Event {
            id: 7,
            session_id: Uuid::nil(),
            kind: "message_sent".into(),
            actor: Some("claude".into()),
            priority: Priority::Critical,
            payload: json!({ "body": "stop \"now\"" }),
            at: chrono::Utc::now(),
            to: Some("gemini".into()),
        };
        let text = event("s1", &serde_json::to_string(&e).unwrap(), true);
        let frame: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(frame["type"], "interrupt");
        assert_eq!(frame["subscription"], "s1");
        assert_eq!(frame["id"], 7);
        assert_eq!(frame["sessionId"], Uuid::nil().to_string());
        assert_eq!(frame["kind"], "message_sent");
        assert_eq!(frame["priority"], "critical");
        assert_eq!(frame["actor"], "claude");
        assert_eq!(frame["to"], "gemini");
        assert_eq!(frame["payload"]["body"], "stop \"now\"");
        assert!(frame["at"].is_string());
        let text = event("s2", "{}", false);
        assert_eq!(text, r#"{"type":"event","subscription":"s2"}"#);
    }

    #[test]
    fn bad_frames_name_the_problem_and_keep_the_id() {
        let (e, id) = read("not json").unwrap_err();
        assert_eq!(e.code(), "invalid_json");
        assert!(id.is_none());
        let (e, id) = read(r#"{"type":"ack","id":7}"#).unwrap_err();
        assert_eq!(id, Some(json!(7)));
        assert_eq!(e.field(), Some("upTo"));
        let (e, _) = read(r#"{"type":"dance","id":7}"#).unwrap_err();
        assert!(e.to_string().contains("dance"), "{e}");
        let (e, _) = read(r#"{"type":"ping"}"#).unwrap_err();
        assert_eq!(e.field(), Some("id"));
        let (e, _) = read(r#"{"type":"ping","id":1,"extra":true}"#).unwrap_err();
        assert!(e.to_string().contains("extra"), "{e}");
    }
}
