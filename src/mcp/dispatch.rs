//! JSON-RPC methods of an initialized MCP session → tools, logging, ping.

use actix::Addr;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock as Content};
use serde::Deserialize;
use serde_json::{Value, json};

use super::protocol::{self, INVALID_PARAMS, METHOD_NOT_FOUND, RpcError};
use super::registry::{Bind, McpRegistry, McpSession, SetLogLevel, Subscribe};
use super::tools::{self, Audience, ToolCtx};
use super::{prompts, push, resources};
use crate::actors::Hub;
use crate::actors::messages::{PendingCritical, ToSession, Whoami};
use crate::domain::digest::{DIGEST_BYTES, digest};
use crate::error::HubError;

pub struct RequestCtx {
    pub hub: Addr<Hub>,
    pub registry: Addr<McpRegistry>,
    pub mcp_id: String,
    pub session: McpSession,
    /// Where notifications about this request go (progress, log) when it is answered as SSE.
    pub notify: Option<Notifier>,
    /// The request's key (`api::REQUEST_KEY`): a single tool call's only.
    pub request_key: Option<crate::api::RequestKey>,
}

/// Sends notifications that belong to one request onto its SSE answer.
#[derive(Clone)]
pub struct Notifier {
    pub tx: tokio::sync::mpsc::Sender<Value>,
    pub progress_token: Option<Value>,
    /// Minimum level the client asked for with `logging/setLevel`.
    pub log_level: Option<String>,
}

impl Notifier {
    /// `notifications/progress`, if the request carried a progress token.
    pub fn progress(&self, progress: f64, total: Option<f64>, message: &str) {
        if let Some(token) = &self.progress_token {
            let mut params =
                json!({ "progressToken": token, "progress": progress, "message": message });
            if let Some(t) = total {
                params["total"] = json!(t);
            }
            let _ = self
                .tx
                .try_send(protocol::notification("notifications/progress", params));
        }
    }

    /// `notifications/message` at `level`, if the client asked for that level or a lower one.
    pub fn log(&self, level: &str, data: Value) {
        if push::log_wanted(self.log_level.as_deref(), level) {
            let params = json!({ "level": level, "logger": push::LOGGER, "data": data });
            let _ = self
                .tx
                .try_send(protocol::notification("notifications/message", params));
        }
    }
}

/// Answers one request of an initialized session.
pub async fn request(ctx: RequestCtx, method: &str, params: Value) -> Result<Value, RpcError> {
    match method {
        "ping" => Ok(json!({})),
        "logging/setLevel" => {
            let p: SetLevel = protocol::params(params)?;
            if !LOG_LEVELS.contains(&p.level.as_str()) {
                return Err(RpcError::new(
                    INVALID_PARAMS,
                    format!(
                        "unknown log level {:?}; one of {}",
                        p.level,
                        LOG_LEVELS.join(", ")
                    ),
                ));
            }
            ctx.registry.do_send(SetLogLevel {
                id: ctx.mcp_id,
                level: p.level,
            });
            Ok(json!({}))
        }
        "tools/list" => {
            reject_cursor(&params)?;
            let audience = audience(&ctx).await;
            Ok(json!({ "tools": tools::listed(audience, ctx.session.stateless) }))
        }
        "tools/call" => call_tool(ctx, params).await,
        "resources/list" => {
            reject_cursor(&params)?;
            Ok(resources::list(&ctx))
        }
        "resources/templates/list" => {
            reject_cursor(&params)?;
            Ok(resources::templates())
        }
        "resources/read" => {
            let p: UriParams = protocol::params(params)?;
            resources::read(&ctx, &p.uri).await
        }
        "resources/subscribe" | "resources/unsubscribe" => {
            let p: UriParams = protocol::params(params)?;
            let on = method == "resources/subscribe";
            if on {
                resources::check(&ctx, &p.uri).await?; // exists, and the caller may read it
            }
            let msg = Subscribe {
                id: ctx.mcp_id.clone(),
                uri: p.uri,
                on,
            };
            ctx.registry
                .send(msg)
                .await
                .map_err(HubError::from)
                .and_then(|r| r)
                .map_err(RpcError::from)?;
            Ok(json!({}))
        }
        "prompts/list" => {
            reject_cursor(&params)?;
            Ok(prompts::list())
        }
        "prompts/get" => prompts::get(&ctx, params).await,
        _ => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("method not found: {method}"),
        )),
    }
}

pub use super::push::LOG_LEVELS;

#[derive(Deserialize)]
struct UriParams {
    uri: String,
}

#[derive(Deserialize)]
struct SetLevel {
    level: String,
}

/// We hand out no cursors (every list fits one page), so any cursor is one we did not issue.
fn reject_cursor(params: &Value) -> Result<(), RpcError> {
    match params.get("cursor") {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(RpcError::new(
            INVALID_PARAMS,
            "invalid cursor: this list has a single page",
        )),
    }
}

async fn audience(ctx: &RequestCtx) -> Audience {
    let Some(b) = &ctx.session.binding else {
        return Audience::Unbound;
    };
    let command = Whoami {
        credential: ctx.session.credential.clone(),
    };
    match ctx
        .hub
        .send(ToSession {
            session_id: b.session_id,
            command,
        })
        .await
    {
        Ok(Ok(me)) => Audience::Participant(me.role),
        // Left or unknown: it may still create or join.
        _ => Audience::Unbound,
    }
}

async fn call_tool(ctx: RequestCtx, params: Value) -> Result<Value, RpcError> {
    let p: CallToolRequestParams = protocol::params(params)?;
    let tool = tools::find(&p.name)
        .ok_or_else(|| RpcError::new(INVALID_PARAMS, format!("unknown tool: {}", p.name)))?;
    let arguments = p.arguments.map(Value::Object).unwrap_or(Value::Null);
    let (hub, registry, mcp_id) = (ctx.hub.clone(), ctx.registry.clone(), ctx.mcp_id.clone());
    let tool_ctx = ToolCtx {
        hub: ctx.hub,
        registry: ctx.registry,
        mcp_id: ctx.mcp_id,
        session: ctx.session,
        notify: ctx.notify,
        critical: Default::default(),
        request_key: ctx.request_key,
    };
    let binding = tool_ctx.session.binding.clone();
    let critical = tool_ctx.critical.clone();
    let outcome = tool.run(tool_ctx, arguments).await;
    let mut result = match outcome {
        Ok(out) => {
            let text = out.value.to_string();
            // Answered once the binding is stored: after a restart the session still speaks
            // for this participant. One that could not be stored is said, not answered "ok":
            // the next call would find this MCP session acting as nobody.
            let unbound = match out.bind {
                Some((credential, binding)) => {
                    let who = binding.clone();
                    let bound = registry
                        .send(Bind {
                            id: mcp_id,
                            credential,
                            binding,
                        })
                        .await
                        .map_err(HubError::from)
                        .and_then(|bound| bound);
                    bound.err().map(|e| (who, e))
                }
                None => None,
            };
            match unbound {
                Some((who, e)) => {
                    log::warn!("cannot save an MCP session's binding: {e}");
                    tool_error(&HubError::Conflict {
                        code: "identity_not_kept",
                        message: format!(
                            "{} was applied: {:?} is in session {}, but this MCP session could not keep that identity ({e}). Do not send it again: connect a new MCP session with {:?}'s token (POST /mcp/session/{}/token issues one)",
                            p.name, who.ai_id, who.session_id, who.ai_id, who.session_id
                        ),
                    })
                }
                None => {
                    let mut r = CallToolResult::success(vec![Content::text(text)]);
                    r.structured_content = Some(out.value);
                    r
                }
            }
        }
        // Nothing was applied: the request goes to the hub serving the project
        // (`RpcError::served_elsewhere`), which answers it as it answers its own.
        Err(e @ HubError::Elsewhere { .. }) => return Err(e.into()),
        Err(e) => tool_error(&e),
    };
    // What waits for the caller goes on top (its unacknowledged critical events in full, counts
    // of the rest; nothing when nothing waits), so that a model that never reads notifications
    // still sees it: `domain::digest`.
    if let Some(b) = binding {
        // Most tools brought them back with their command; the rest ask once more.
        let carried = critical.borrow_mut().take();
        let pending = match carried {
            Some(pending) => pending,
            None => hub
                .send(ToSession {
                    session_id: b.session_id,
                    command: PendingCritical { ai_id: b.ai_id },
                })
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default(),
        };
        // Critical events lead; counts alone follow the answer.
        if let Some(text) = digest(&pending, DIGEST_BYTES) {
            let at = if pending.critical.is_empty() {
                result.content.len()
            } else {
                0
            };
            result.content.insert(at, Content::text(text));
        }
    }
    result.result_type = None; // a 2026-07-28 field; the handshake versions do not know it
    serde_json::to_value(result).map_err(|e| RpcError::new(protocol::INTERNAL_ERROR, e.to_string()))
}

/// A tool's failure as its result: the same error object as the REST answer's `error` (code,
/// message, field, currentDriver, suggestion, retryAfterSecs, events), so that one failure
/// reads alike everywhere.
pub fn tool_error(e: &HubError) -> CallToolResult {
    let body = e.body();
    let mut r = CallToolResult::error(vec![Content::text(body.to_string())]);
    r.structured_content = Some(serde_json::json!({ "error": body }));
    r
}
