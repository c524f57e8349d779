//! MCP prompts. `resume`: what a participant coming back needs to know, in a few lines
//! instead of a re-read of everything. (Step 5 deepens it into the full briefing.)

use serde::Deserialize;
use serde_json::{Value, json};

use super::dispatch::RequestCtx;
use super::protocol::{self, INVALID_PARAMS, RpcError};
use crate::actors::messages::{PollEvents, ToSession, Whoami};
use crate::error::HubError;

/// Events the briefing lists at most.
const BRIEF_EVENTS: i64 = 20;

pub fn list() -> Value {
    json!({ "prompts": [{
        "name": "resume",
        "title": "Resume this session",
        "description": "Your briefing: role, team, and what happened since you last acknowledged.",
        "arguments": []
    }]})
}

#[derive(Deserialize)]
struct GetParams {
    name: String,
}

pub async fn get(ctx: &RequestCtx, params: Value) -> Result<Value, RpcError> {
    let p: GetParams = protocol::params(params)?;
    if p.name != "resume" {
        return Err(RpcError::new(
            INVALID_PARAMS,
            format!("unknown prompt: {}", p.name),
        ));
    }
    let binding = ctx.session.binding.as_ref().ok_or_else(|| {
        RpcError::new(
            INVALID_PARAMS,
            "resume needs an identity: connect with your bearer token or call session_join",
        )
    })?;
    let credential = ctx.session.credential.clone();
    let session_id = binding.session_id;
    let me = routed(
        ctx.hub
            .send(ToSession {
                session_id,
                command: Whoami {
                    credential: credential.clone(),
                },
            })
            .await,
    )?;
    let command = PollEvents {
        credential,
        after: None,
        limit: BRIEF_EVENTS,
    };
    let page = routed(
        ctx.hub
            .send(ToSession {
                session_id,
                command,
            })
            .await,
    )?;
    let team: Vec<String> = me
        .participants
        .iter()
        .map(|p| format!("{} ({})", p.ai_id, p.role))
        .collect();
    let mut text = format!(
        "You are {} ({}) in session \"{}\" ({}, {} handshake). Driver: {}. Team: {}.",
        me.ai_id,
        me.role,
        me.session_name,
        me.status.as_str(),
        me.handshake_mode.as_str(),
        me.driver.as_deref().unwrap_or("nobody"),
        team.join(", ")
    );
    let unseen = me.last_event_id - me.acked_event_id;
    if unseen == 0 {
        text.push_str("\nNothing happened since your last acknowledgement.");
    } else {
        text.push_str(&format!(
            "\n{unseen} event(s) since your last acknowledgement:"
        ));
        for e in &page.events {
            let by = e.actor.as_deref().unwrap_or("hub");
            text.push_str(&format!(
                "\n#{} {} by {by} ({})",
                e.id,
                e.kind,
                e.priority.as_str()
            ));
        }
        if page.more {
            text.push_str("\n… more: events_poll.");
        }
        text.push_str(&format!(
            "\nWhen read: events_ack {{\"upTo\": {}}}.",
            me.last_event_id
        ));
    }
    Ok(json!({
        "description": format!("Briefing for {} in {}", me.ai_id, me.session_name),
        "messages": [{ "role": "user", "content": { "type": "text", "text": text } }]
    }))
}

/// An actor reply through the hub, as a JSON-RPC error when it failed.
fn routed<T>(reply: Result<Result<T, HubError>, actix::MailboxError>) -> Result<T, RpcError> {
    reply
        .map_err(HubError::from)
        .and_then(|r| r)
        .map_err(RpcError::from)
}
