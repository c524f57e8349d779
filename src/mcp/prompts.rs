//! MCP prompts. `resume`: the briefing of `session_resume` (without the context), for clients
//! that surface prompts to the model.

use serde::Deserialize;
use serde_json::{Value, json};

use super::dispatch::RequestCtx;
use super::protocol::{self, INVALID_PARAMS, RpcError};
use crate::actors::messages::{Resume, ToSession};
use crate::api;
use crate::error::HubError;

pub fn list() -> Value {
    json!({ "prompts": [{
        "name": "resume",
        "title": "Resume this session",
        "description": "Your briefing: what others did while you were away, alerts, next steps.",
        "arguments": [
            {"name": "strategy", "description": "quick, standard or deep (default: by time away)"},
            {"name": "maxTokens", "description": "cut the briefing to about this many tokens"}
        ]
    }]})
}

#[derive(Deserialize)]
struct GetParams {
    name: String,
    #[serde(default)]
    arguments: serde_json::Map<String, Value>,
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
    // Prompt arguments are strings; the briefing's own request type checks them.
    let mut args = serde_json::Map::new();
    if let Some(s) = p.arguments.get("strategy") {
        args.insert("strategy".into(), s.clone());
    }
    if let Some(n) = p.arguments.get("maxTokens") {
        let n = n
            .as_str()
            .and_then(|t| t.parse::<u64>().ok())
            .map(Value::from)
            .unwrap_or_else(|| n.clone());
        args.insert("maxTokens".into(), n);
    }
    args.insert("includeContext".into(), Value::Bool(false));
    let request: api::over_time::Resume =
        api::parse(Value::Object(args)).map_err(RpcError::from)?;
    let command = Resume {
        credential: ctx.session.credential.clone(),
        ai_id: None,
        strategy: request.strategy,
        max_tokens: request.max_tokens,
        load_messages: None,
        include_context: false,
    };
    let session_id = binding.session_id;
    let resumed = routed(
        ctx.hub
            .send(ToSession {
                session_id,
                command,
            })
            .await,
    )?;
    let news = if resumed.briefing.size.raw_events == 0 {
        "Nothing happened since you were last active."
    } else {
        "Your briefing (JSON; context_get reads the shared context):"
    };
    let text = format!(
        "You are {} ({}) in session {}. {news}\n{}",
        resumed.participant,
        resumed.role.as_str(),
        session_id,
        serde_json::to_string(&resumed.briefing).unwrap_or_default()
    );
    Ok(json!({
        "description": format!("Briefing for {}", resumed.participant),
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
