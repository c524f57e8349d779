//! MCP 2026-07-28, the stateless era, on the same endpoint: no `initialize`, no session id; each
//! request carries its version and client capabilities in `params._meta` and repeats its method
//! (and tool/prompt name or resource URI) in `Mcp-Method`/`Mcp-Name` headers. Identity comes
//! from the bearer token on every request. `subscriptions/listen` replaces the GET stream.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::dispatch::{self, RequestCtx};
use super::protocol::{
    self, INVALID_PARAMS, INVALID_REQUEST, Incoming, METHOD_NOT_FOUND, RpcError,
};
use super::registry::{Binding, McpRegistry, McpSession};
use super::resources::{self, updated_by};
use super::sse::frame;
use crate::actors::Hub;
use crate::actors::hub::{FindApplied, Identify, Identity};
use crate::actors::messages::{AttachStream, Delivery, ToSession, Whoami};
use crate::error::HubError;
use crate::http::credential;

pub const VERSION: &str = "2026-07-28";
const HEADER_MISMATCH: i32 = -32020;
const UNSUPPORTED_VERSION: i32 = -32022;
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const META_SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";
const META_SUBSCRIPTION: &str = "io.modelcontextprotocol/subscriptionId";
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Every version this endpoint speaks, for -32022 answers and `server/discover`.
fn supported() -> Vec<&'static str> {
    std::iter::once(VERSION)
        .chain(protocol::SUPPORTED_VERSIONS)
        .collect()
}

/// As the handshake versions fail: one for a project another hub serves is passed on there.
fn fail(status: StatusCode, id: Value, err: RpcError) -> HttpResponse {
    super::transport::rpc_failure(status, id, err)
}

/// A version header that is neither a handshake version nor ours: the 2026-07-28 answer.
pub fn unsupported_version(requested: &str) -> HttpResponse {
    let mut err = RpcError::new(
        UNSUPPORTED_VERSION,
        format!("unsupported protocol version {requested:?}"),
    );
    err.data = Some(json!({ "supported": supported(), "requested": requested }));
    fail(StatusCode::BAD_REQUEST, Value::Null, err)
}

/// `=?base64?…?=` wraps header values that are not plain ASCII.
fn header_value(req: &HttpRequest, name: &str) -> Option<String> {
    let raw = req.headers().get(name)?.to_str().ok()?;
    match raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => decode_base64(b64).and_then(|b| String::from_utf8(b).ok()),
        None => Some(raw.to_owned()),
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The name a method must repeat in `Mcp-Name`, if any.
fn named(method: &str, params: &Value) -> Option<String> {
    let key = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return None,
    };
    params.get(key).and_then(Value::as_str).map(str::to_owned)
}

pub async fn post(
    req: &HttpRequest,
    message: Value,
    header_version: &str,
    hub: &Addr<Hub>,
    registry: &Addr<McpRegistry>,
) -> HttpResponse {
    if header_version != VERSION {
        return unsupported_version(header_version);
    }
    let (id, method, params) = match protocol::classify(message) {
        Ok(Incoming::Request { id, method, params }) => (id, method, params),
        Ok(Incoming::Notification { .. }) => return HttpResponse::Accepted().finish(),
        Ok(Incoming::Response) => {
            return fail(
                StatusCode::BAD_REQUEST,
                Value::Null,
                RpcError::new(INVALID_REQUEST, "clients send no responses in 2026-07-28"),
            );
        }
        Err((id, err)) => return fail(StatusCode::BAD_REQUEST, id, err),
    };
    let meta = params.get("_meta");
    let version = meta
        .and_then(|m| m.get(META_VERSION))
        .and_then(Value::as_str);
    let has_caps = meta
        .and_then(|m| m.get(META_CAPABILITIES))
        .is_some_and(Value::is_object);
    let Some(version) = version.filter(|_| has_caps) else {
        let err = RpcError::new(
            INVALID_PARAMS,
            format!("params._meta needs {META_VERSION} and {META_CAPABILITIES}"),
        );
        return fail(StatusCode::BAD_REQUEST, id, err);
    };
    if version != header_version {
        let err = RpcError::new(
            HEADER_MISMATCH,
            "MCP-Protocol-Version header differs from params._meta",
        );
        return fail(StatusCode::BAD_REQUEST, id, err);
    }
    if header_value(req, "mcp-method").as_deref() != Some(method.as_str()) {
        let err = RpcError::new(
            HEADER_MISMATCH,
            format!("Mcp-Method header must be {method:?}"),
        );
        return fail(StatusCode::BAD_REQUEST, id, err);
    }
    if let Some(name) = named(&method, &params)
        && header_value(req, "mcp-name").as_deref() != Some(name.as_str())
    {
        let err = RpcError::new(HEADER_MISMATCH, format!("Mcp-Name header must be {name:?}"));
        return fail(StatusCode::BAD_REQUEST, id, err);
    }
    let credential = match credential(req) {
        Ok(c) => c,
        Err(e) => return fail(e.http_status(), id, e.into()),
    };
    let binding = match hub.send(Identify(credential.clone())).await {
        Ok(Ok(Identity::Operator)) => None,
        Ok(Ok(Identity::Participant { session_id, ai_id })) => Some(Binding { session_id, ai_id }),
        Ok(Err(e @ HubError::Unauthorized(_))) => {
            return match left_already(req, hub, &method, &params).await {
                Some(applied) => HttpResponse::Ok().json(protocol::result(id, applied)),
                None => fail(e.http_status(), id, e.into()),
            };
        }
        Ok(Err(e)) => return fail(e.http_status(), id, e.into()),
        Err(e) => {
            return fail(
                StatusCode::SERVICE_UNAVAILABLE,
                id,
                HubError::from(e).into(),
            );
        }
    };
    let ctx = RequestCtx {
        hub: hub.clone(),
        registry: registry.clone(),
        mcp_id: String::new(), // stateless: nothing to bind or remember
        session: McpSession {
            version: VERSION,
            credential_at_start: credential.clone(),
            credential,
            binding,
            log_level: None,
            stateless: true,
            // Claude Code takes no channel notifications in this era.
            channel: None,
        },
        notify: None,
        request_key: match crate::api::request_key(req.headers()) {
            Ok(key) => key,
            Err(e) => return fail(e.http_status(), id, e.into()),
        },
    };
    let result = match method.as_str() {
        "server/discover" => Ok(discover()),
        "subscriptions/listen" => return listen(id, params, ctx).await,
        "initialize"
        | "ping"
        | "logging/setLevel"
        | "resources/subscribe"
        | "resources/unsubscribe" => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("{method} does not exist in {VERSION}"),
        )),
        _ => dispatch::request(ctx, &method, params).await,
    };
    match result {
        Ok(result) => HttpResponse::Ok().json(protocol::result(id, complete(&method, result))),
        Err(err) => {
            let status = if err.code == METHOD_NOT_FOUND {
                StatusCode::NOT_FOUND
            } else if err.served_elsewhere.is_some() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            fail(status, id, err)
        }
    }
}

/// A `session_leave` sent again (run again by the hub that passed it on) after it was applied finds its token gone
/// with the seat: answered as the tool's `already_applied` failure, not 401, when its key is on
/// record.
async fn left_already(
    req: &HttpRequest,
    hub: &Addr<Hub>,
    method: &str,
    params: &Value,
) -> Option<Value> {
    if method != "tools/call" || params["name"] != "session_leave" {
        return None;
    }
    let key = crate::api::request_key(req.headers()).ok()??;
    if !key.maybe_sent {
        return None;
    }
    let applied = hub.send(FindApplied(key.id)).await.ok()?.ok()??;
    let failed = serde_json::to_value(dispatch::tool_error(&applied.error())).ok()?;
    Some(complete(method, failed))
}

fn server_info() -> Value {
    json!({ "name": "collab-hub", "version": env!("CARGO_PKG_VERSION") })
}

/// Adds what every 2026-07-28 result carries.
fn complete(method: &str, mut result: Value) -> Value {
    if let Some(o) = result.as_object_mut() {
        o.insert("resultType".into(), json!("complete"));
        if matches!(
            method,
            "tools/list"
                | "prompts/list"
                | "resources/list"
                | "resources/templates/list"
                | "resources/read"
        ) {
            // Lists depend on who asks (roles), so nothing is shared between callers.
            o.insert("ttlMs".into(), json!(0));
            o.insert("cacheScope".into(), json!("private"));
        }
        let meta = o.entry("_meta").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            m.insert(META_SERVER_INFO.into(), server_info());
        }
    }
    result
}

fn discover() -> Value {
    json!({
        "supportedVersions": supported(),
        "capabilities": {
            "tools": {},
            "resources": { "subscribe": true },
            "prompts": {},
        },
        "serverInfo": server_info(),
        "instructions": super::transport::INSTRUCTIONS,
        "ttlMs": 0,
        "cacheScope": "private",
    })
}

/// `subscriptions/listen`: an SSE stream that first acknowledges what it will deliver, then
/// sends `notifications/resources/updated` for the honoured URIs until the client hangs up.
async fn listen(id: Value, params: Value, ctx: RequestCtx) -> HttpResponse {
    let asked: Vec<String> = params
        .pointer("/notifications/resourceSubscriptions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    // Only URIs of the caller's own session can be followed (their events reach its agent).
    let mut honoured = Vec::new();
    if let Some(b) = &ctx.session.binding {
        for uri in asked.into_iter().take(super::registry::MAX_SUBSCRIPTIONS) {
            let own = resources::CollabUri::parse(&uri)
                .is_some_and(|u| u.session() == Some(b.session_id));
            if own && resources::check(&ctx, &uri).await.is_ok() {
                honoured.push(uri);
            }
        }
    }
    let (tx, rx) = mpsc::channel(super::registry::EVENT_QUEUE);
    if let Some(b) = &ctx.session.binding {
        let after = match ctx
            .hub
            .send(ToSession {
                session_id: b.session_id,
                command: Whoami {
                    credential: ctx.session.credential.clone(),
                },
            })
            .await
        {
            Ok(Ok(me)) => me.last_event_id,
            _ => i64::MAX,
        };
        let attach = AttachStream {
            credential: ctx.session.credential.clone(),
            key: format!("listen:{}", uuid::Uuid::new_v4()),
            after: Some(after),
            sink: tx,
        };
        let _ = ctx
            .hub
            .send(ToSession {
                session_id: b.session_id,
                command: attach,
            })
            .await;
    }
    let subscription_id = id.clone();
    let ack = protocol::notification(
        "notifications/subscriptions/acknowledged",
        json!({
            "notifications": { "toolsListChanged": false, "promptsListChanged": false, "resourcesListChanged": false, "resourceSubscriptions": honoured },
            "_meta": { META_SUBSCRIPTION: subscription_id },
        }),
    );
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-cache, no-transform"))
        .insert_header(("x-accel-buffering", "no"))
        .content_type("text/event-stream")
        .streaming(listen_stream(frame(None, &ack), rx, Arc::new(honoured), id))
}

fn listen_stream(
    first: Bytes,
    events: mpsc::Receiver<Delivery>,
    honoured: Arc<Vec<String>>,
    subscription_id: Value,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let mut tick = tokio::time::interval(KEEP_ALIVE);
    tick.reset();
    let state = (Some(first), events, tick);
    futures::stream::unfold(state, move |(first, mut events, mut tick)| {
        let (honoured, sid) = (honoured.clone(), subscription_id.clone());
        async move {
            if let Some(b) = first {
                return Some((Ok(b), (None, events, tick)));
            }
            loop {
                let bytes = tokio::select! {
                    ev = events.recv() => {
                        // A closed sink (participant left) ends the subscription.
                        let d = ev?;
                        let mut out = Vec::new();
                        for uri in updated_by(&d.event, &d.viewer).into_iter().filter(|u| honoured.contains(u)) {
                            let n = protocol::notification(
                                "notifications/resources/updated",
                                json!({ "uri": uri, "_meta": { META_SUBSCRIPTION: sid } }),
                            );
                            out.extend_from_slice(&frame(None, &n));
                        }
                        if out.is_empty() { continue; }
                        Bytes::from(out)
                    }
                    _ = tick.tick() => Bytes::from_static(b": keep-alive\n\n"),
                };
                return Some((Ok(bytes), (None, events, tick)));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_header_values() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("w7w").unwrap(), "ü".as_bytes());
        assert!(decode_base64("a*b").is_none());
    }

    #[test]
    fn results_are_marked_complete() {
        let r = complete("tools/list", json!({ "tools": [] }));
        assert_eq!(r["resultType"], "complete");
        assert_eq!(r["cacheScope"], "private");
        assert_eq!(r["_meta"][META_SERVER_INFO]["name"], "collab-hub");
        let r = complete("tools/call", json!({ "content": [] }));
        assert!(r.get("ttlMs").is_none());
    }
}
