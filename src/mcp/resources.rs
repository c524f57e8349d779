//! MCP resources: the session's shared state as readable (and subscribable) documents.
//!
//! `collab://sessions`                     sessions on this hub (operator)
//! `collab://session/{id}`                 the session: status, roles, driver, participants
//! `collab://session/{id}/participants`    who is in it, with roles and permissions
//! `collab://session/{id}/events`          the newest events of its log
//! `collab://session/{id}/inbox`           what waits for the reader (its participant): the
//!                                         events after its cursor; updated whenever one
//!                                         arrives (docs/mcp-notifications.md)
//! (step 3 adds `/context`, step 5 `/briefing`.)

use serde_json::{Value, json};
use uuid::Uuid;

use super::dispatch::RequestCtx;
use super::protocol::{INVALID_PARAMS, RESOURCE_NOT_FOUND, RpcError};
use crate::actors::messages::{GetSession, ListSessions, PollEvents, ToSession, Whoami};
use crate::domain::event::Event;
use crate::error::HubError;

/// Events the `/events` resource shows.
const RECENT_EVENTS: i64 = 50;
/// Events the `/inbox` resource shows (oldest first; `more` says there are others).
const INBOX_EVENTS: i64 = 50;
const JSON: &str = "application/json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollabUri {
    Sessions,
    Session(Uuid),
    Participants(Uuid),
    Events(Uuid),
    Inbox(Uuid),
}

impl CollabUri {
    pub fn parse(uri: &str) -> Option<CollabUri> {
        if uri == "collab://sessions" {
            return Some(CollabUri::Sessions);
        }
        let rest = uri.strip_prefix("collab://session/")?;
        let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let id = Uuid::parse_str(id).ok()?;
        match tail {
            "" => Some(CollabUri::Session(id)),
            "participants" => Some(CollabUri::Participants(id)),
            "events" => Some(CollabUri::Events(id)),
            "inbox" => Some(CollabUri::Inbox(id)),
            _ => None,
        }
    }

    /// The session the resource belongs to, if any.
    pub fn session(self) -> Option<Uuid> {
        match self {
            CollabUri::Sessions => None,
            CollabUri::Session(id)
            | CollabUri::Participants(id)
            | CollabUri::Events(id)
            | CollabUri::Inbox(id) => Some(id),
        }
    }

    pub fn uri(self) -> String {
        match self {
            CollabUri::Sessions => "collab://sessions".into(),
            CollabUri::Session(id) => format!("collab://session/{id}"),
            CollabUri::Participants(id) => format!("collab://session/{id}/participants"),
            CollabUri::Events(id) => format!("collab://session/{id}/events"),
            CollabUri::Inbox(id) => format!("collab://session/{id}/inbox"),
        }
    }

    fn describe(self) -> Value {
        let (name, description) = match self {
            CollabUri::Sessions => ("sessions", "Sessions on this hub"),
            CollabUri::Session(_) => ("session", "Status, roles, driver, participants"),
            CollabUri::Participants(_) => {
                ("participants", "Participants with roles and permissions")
            }
            CollabUri::Events(_) => ("events", "Newest events of the session log"),
            CollabUri::Inbox(_) => (
                "inbox",
                "Events waiting for you; subscribe to hear of new ones",
            ),
        };
        json!({ "uri": self.uri(), "name": name, "description": description, "mimeType": JSON })
    }
}

/// The URIs whose content an event delivered to `viewer` changes (for
/// `notifications/resources/updated`): the inbox only when the event waits for the viewer
/// (someone else's).
pub fn updated_by(event: &Event, viewer: &str) -> Vec<String> {
    let id = event.session_id;
    let mut uris = vec![CollabUri::Session(id).uri(), CollabUri::Events(id).uri()];
    if event.kind.starts_with("participant_") || event.kind.starts_with("role_") {
        uris.push(CollabUri::Participants(id).uri());
    }
    if super::push::waits_for(event, viewer) {
        uris.push(CollabUri::Inbox(id).uri());
    }
    uris
}

pub fn list(ctx: &RequestCtx) -> Value {
    let resources: Vec<Value> = match &ctx.session.binding {
        Some(b) => [
            CollabUri::Session(b.session_id),
            CollabUri::Participants(b.session_id),
            CollabUri::Events(b.session_id),
            CollabUri::Inbox(b.session_id),
        ]
        .into_iter()
        .map(CollabUri::describe)
        .collect(),
        None => vec![CollabUri::Sessions.describe()],
    };
    json!({ "resources": resources })
}

pub fn templates() -> Value {
    let t = |suffix: &str, name: &str, description: &str| json!({ "uriTemplate": format!("collab://session/{{sessionId}}{suffix}"), "name": name, "description": description, "mimeType": JSON });
    json!({ "resourceTemplates": [
        t("", "session", "A session: status, roles, driver, participants"),
        t("/participants", "participants", "A session's participants"),
        t("/events", "events", "A session's newest events"),
        t("/inbox", "inbox", "Events waiting for you in a session"),
    ]})
}

fn not_found(uri: &str, why: impl std::fmt::Display) -> RpcError {
    RpcError {
        code: RESOURCE_NOT_FOUND,
        message: format!("resource not found: {uri} ({why})"),
        data: Some(json!({ "uri": uri })),
        served_elsewhere: None,
    }
}

/// The resource's content as JSON, or -32002 naming the URI.
pub async fn read_value(ctx: &RequestCtx, uri: &str) -> Result<Value, RpcError> {
    let parsed = CollabUri::parse(uri)
        .ok_or_else(|| not_found(uri, "not a collab:// resource of this hub"))?;
    let credential = ctx.session.credential.clone();
    let refused = |e: HubError| match e {
        HubError::Invalid { .. } => RpcError::new(INVALID_PARAMS, e.to_string()),
        other => not_found(uri, other),
    };
    let view = |session_id| {
        ctx.hub.send(ToSession {
            session_id,
            command: GetSession {
                credential: credential.clone(),
            },
        })
    };
    // The caller's page of a session's log (what it may see), as `events_poll` reads it.
    let poll = |session_id, after, limit| {
        let command = PollEvents {
            credential: credential.clone(),
            after,
            limit,
        };
        async move {
            ctx.hub
                .send(ToSession {
                    session_id,
                    command,
                })
                .await
                .map_err(HubError::from)
                .and_then(|r| r)
                .map_err(refused)
        }
    };
    Ok(match parsed {
        CollabUri::Sessions => {
            let sessions = ctx
                .hub
                .send(ListSessions {
                    credential: credential.clone(),
                    filter: Default::default(),
                    limit: 100,
                    offset: 0,
                })
                .await
                .map_err(HubError::from)
                .and_then(|r| r)
                .map_err(refused)?;
            json!({ "sessions": sessions })
        }
        CollabUri::Session(id) => {
            let v = view(id)
                .await
                .map_err(HubError::from)
                .and_then(|r| r)
                .map_err(refused)?;
            serde_json::to_value(v).unwrap_or(Value::Null)
        }
        CollabUri::Participants(id) => {
            let v = view(id)
                .await
                .map_err(HubError::from)
                .and_then(|r| r)
                .map_err(refused)?;
            json!({ "sessionId": id, "driver": v.driver, "participants": v.participants })
        }
        CollabUri::Events(id) => {
            let v = view(id)
                .await
                .map_err(HubError::from)
                .and_then(|r| r)
                .map_err(refused)?;
            let after = Some((v.last_event_id - RECENT_EVENTS).max(0));
            let page = poll(id, after, RECENT_EVENTS).await?;
            json!({ "sessionId": id, "events": page.events, "lastEventId": page.last_event_id })
        }
        CollabUri::Inbox(id) => {
            // What `events_poll` without arguments answers: the events after the reader's
            // cursor (critical ones only during its non-interruptible checkpoint).
            let page = poll(id, None, INBOX_EVENTS).await?;
            let mut v = serde_json::to_value(page).unwrap_or(Value::Null);
            v["sessionId"] = json!(id);
            v
        }
    })
}

/// Whether the caller may read `uri` (for a subscription), without reading it: reading the
/// inbox counts its messages delivered.
pub async fn check(ctx: &RequestCtx, uri: &str) -> Result<(), RpcError> {
    match CollabUri::parse(uri) {
        Some(CollabUri::Inbox(id)) => {
            let command = Whoami {
                credential: ctx.session.credential.clone(),
            };
            ctx.hub
                .send(ToSession {
                    session_id: id,
                    command,
                })
                .await
                .map_err(HubError::from)
                .and_then(|r| r)
                .map_err(|e| not_found(uri, e))?;
            Ok(())
        }
        _ => read_value(ctx, uri).await.map(drop),
    }
}

pub async fn read(ctx: &RequestCtx, uri: &str) -> Result<Value, RpcError> {
    let value = read_value(ctx, uri).await?;
    Ok(json!({ "contents": [{ "uri": uri, "mimeType": JSON, "text": value.to_string() }] }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip() {
        let id = Uuid::new_v4();
        for u in [
            CollabUri::Sessions,
            CollabUri::Session(id),
            CollabUri::Participants(id),
            CollabUri::Events(id),
            CollabUri::Inbox(id),
        ] {
            assert_eq!(CollabUri::parse(&u.uri()), Some(u));
        }
        assert_eq!(CollabUri::parse("collab://session/nope"), None);
        assert_eq!(
            CollabUri::parse(&format!("collab://session/{id}/secrets")),
            None
        );
        assert_eq!(CollabUri::parse("file:///etc/passwd"), None);
    }
}
