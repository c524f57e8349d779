//! MCP Streamable HTTP (protocol 2025-11-25, 2025-06-18, 2025-03-26) on `/mcp` and its aliases:
//! headers, sessions, status codes, JSON or SSE answers. Methods are in `dispatch`, tools in
//! `tools`; nothing here knows what a session of collaborators is.

use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::dispatch::Notifier;
use super::dispatch::{self, RequestCtx};
use super::protocol::{self, INVALID_PARAMS, INVALID_REQUEST, Incoming, PARSE_ERROR, RpcError};
use super::push::{self, ChannelOptIn};
use super::registry::{
    Binding, CancelCall, Cancellation, Close, FoundElsewhere, Lookup, McpRegistry, McpSession,
    Open, OpenStream,
};
use super::sse;
use crate::actors::Hub;
use crate::actors::hub::{Identify, Identity};
use crate::domain::auth::Credential;
use crate::error::HubError;
use crate::http::hop::ReadBody;
use crate::http::{BodyLimit, credential, read_body};

pub const SESSION_HEADER: &str = "mcp-session-id";

/// How long a GET stream lives before the client is asked to reconnect (app data; `None`: no
/// limit).
#[derive(Debug, Clone, Copy)]
pub struct StreamLifetime(pub Option<std::time::Duration>);
pub const VERSION_HEADER: &str = "mcp-protocol-version";

/// An HTTP answer carrying a JSON-RPC error (id null when it could not be read). One for a
/// project another hub serves says where (`hop::ServedElsewhere`): the serving app's middleware
/// passes the request on there, unless it was passed on already.
pub(super) fn rpc_failure(status: StatusCode, id: Value, err: RpcError) -> HttpResponse {
    let mut answer = HttpResponse::build(status).json(protocol::error(id, &err));
    if let Some(served) = err.served_elsewhere {
        answer.extensions_mut().insert(*served);
    }
    answer
}

/// `e` as the answer to the JSON-RPC message in `body`: to its request by its id, to each
/// request of a batch, or without an id (a notification, or a body it cannot read).
pub(crate) fn hub_failure_to(body: &[u8], e: HubError) -> HttpResponse {
    let id = |m: &Value| match m.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) if m.get("method").is_some() => {
            Some(id.clone())
        }
        _ => None,
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(batch)) => {
            let err = RpcError::from(e.clone());
            let replies: Vec<Value> = batch
                .iter()
                .filter_map(id)
                .map(|id| protocol::error(id, &err))
                .collect();
            HttpResponse::build(e.http_status()).json(replies)
        }
        Ok(one) => rpc_failure(e.http_status(), id(&one).unwrap_or(Value::Null), e.into()),
        Err(_) => hub_failure(e),
    }
}

fn hub_failure(e: HubError) -> HttpResponse {
    Refusal::from(e).response()
}

/// A request refused before dispatch: the HTTP status plus the JSON-RPC error body.
struct Refusal {
    status: StatusCode,
    err: RpcError,
}

impl Refusal {
    fn new(status: StatusCode, err: RpcError) -> Self {
        Refusal { status, err }
    }

    fn response(self) -> HttpResponse {
        rpc_failure(self.status, Value::Null, self.err)
    }
}

impl From<HubError> for Refusal {
    fn from(e: HubError) -> Self {
        Refusal::new(e.http_status(), RpcError::from(e))
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn accepts(headers: &HeaderMap, wanted: &str) -> bool {
    let Some(accept) = header(headers, "accept") else {
        return true; // no preference stated
    };
    let (kind, _) = wanted.split_once('/').unwrap_or((wanted, ""));
    accept.split(',').any(|part| {
        let mime = part
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        mime == wanted || mime == "*/*" || mime == format!("{kind}/*")
    })
}

/// `MCP-Protocol-Version`, if sent, must be one we speak (any of them: clients may send an
/// older one than negotiated, and the conformance suite does).
fn check_version(headers: &HeaderMap) -> Result<Option<&str>, Refusal> {
    match header(headers, VERSION_HEADER) {
        Some(super::modern::VERSION) => Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            RpcError::new(
                INVALID_REQUEST,
                "2026-07-28 has no GET stream or DELETE: use POST subscriptions/listen",
            ),
        )),
        Some(v) if !protocol::is_supported(v) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            RpcError::new(
                INVALID_REQUEST,
                format!(
                    "unsupported protocol version {v:?}; this hub speaks {} (initialize first)",
                    protocol::SUPPORTED_VERSIONS.join(", ")
                ),
            ),
        )),
        other => Ok(other),
    }
}

/// The open MCP session named by the request, or the 400/404 the spec asks for.
/// With `track`, the request (by JSON-RPC id) is registered for cancellation in the same
/// round trip: the receiver fires on `notifications/cancelled`.
async fn session_of(
    req: &HttpRequest,
    registry: &Addr<McpRegistry>,
    track: Option<String>,
    place: bool,
) -> Result<(String, McpSession, Option<Cancellation>), Refusal> {
    let Some(id) = header(req.headers(), SESSION_HEADER) else {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            RpcError::new(
                INVALID_REQUEST,
                "Mcp-Session-Id header is required; send initialize first",
            ),
        ));
    };
    let lookup = Lookup {
        id: id.to_owned(),
        track,
        place,
        reread: req.extensions().contains::<crate::http::hop::RunAgain>(),
    };
    match registry.send(lookup).await {
        Ok(Ok(Some((s, cancel)))) => Ok((id.to_owned(), s, cancel)),
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(None)) => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            RpcError::new(
                INVALID_REQUEST,
                "MCP session not found or ended; initialize a new one",
            ),
        )),
        Err(e) => Err(HubError::from(e).into()),
    }
}

/// GET and DELETE: a supported version, an open session, the identity it started with.
async fn existing_session(
    req: &HttpRequest,
    registry: &Addr<McpRegistry>,
) -> Result<String, Refusal> {
    check_version(req.headers())?;
    let (mcp_id, session, _) = session_of(req, registry, None, true).await?;
    same_identity(req, &session.credential_at_start)?;
    Ok(mcp_id)
}

/// Every request carries its own credential, and it must be the one its MCP session started
/// with: the `Mcp-Session-Id` names a session, it never proves who is asking. A session opened
/// with a token answers 401 to a request without one.
fn same_identity(req: &HttpRequest, started_with: &Credential) -> Result<(), Refusal> {
    match credential(req)? {
        c if &c == started_with => Ok(()),
        Credential::None => Err(HubError::Unauthorized(
            "this MCP session was opened with a bearer token: send Authorization: Bearer <token> on every request".into(),
        )
        .into()),
        _ => Err(HubError::Forbidden(
            "one MCP session speaks for one identity; initialize a new session for another token"
                .into(),
        )
        .into()),
    }
}

pub async fn post(
    req: HttpRequest,
    payload: web::Payload,
    hub: web::Data<Addr<Hub>>,
    registry: web::Data<Addr<McpRegistry>>,
) -> HttpResponse {
    let headers = req.headers();
    if !accepts(headers, "application/json") && !accepts(headers, "text/event-stream") {
        return hub_failure(HubError::NotAcceptable(
            "Accept must allow application/json or text/event-stream".into(),
        ));
    }
    if let Some(ct) = header(headers, "content-type") {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json" {
            return hub_failure(HubError::UnsupportedMediaType(format!(
                "expected Content-Type: application/json, got {mime:?}"
            )));
        }
    }
    // A version header that is not a handshake version selects the 2026-07-28 rules.
    let version_header = header(headers, VERSION_HEADER).map(str::to_owned);
    let modern = version_header
        .as_deref()
        .filter(|v| !protocol::is_supported(v))
        .map(str::to_owned);
    let body = match read_body(payload.into_inner(), BodyLimit::of(&req)).await {
        Ok(b) => b.freeze(),
        Err(e) => return hub_failure(e),
    };
    // Kept with the request, to be sent on should its project be served elsewhere.
    req.extensions_mut().insert(ReadBody(body.clone()));
    let message: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return rpc_failure(
                StatusCode::BAD_REQUEST,
                Value::Null,
                RpcError::new(PARSE_ERROR, format!("parse error: {e}")),
            );
        }
    };
    if let Some(v) = modern {
        if message.is_array() {
            return rpc_failure(
                StatusCode::BAD_REQUEST,
                Value::Null,
                RpcError::new(INVALID_REQUEST, "no batches in 2026-07-28"),
            );
        }
        return super::modern::post(&req, message, &v, &hub, &registry).await;
    }
    let is_initialize = message.get("method").and_then(Value::as_str) == Some("initialize");
    if is_initialize {
        return initialize(&req, message, &hub, &registry).await;
    }
    // Tool calls may run long: register them for cancellation while looking the session up.
    let track = (message.get("method").and_then(Value::as_str) == Some("tools/call"))
        .then(|| message.get("id").map(Value::to_string))
        .flatten();
    // A ping is answered where it lands (`Lookup::place`).
    let place = message.get("method").and_then(Value::as_str) != Some("ping");
    let (mcp_id, session, cancel) = match session_of(&req, &registry, track, place).await {
        Ok(s) => s,
        Err(refusal) => return refusal.response(),
    };
    if let Err(refusal) = same_identity(&req, &session.credential_at_start) {
        return refusal.response();
    }
    let ctx = || RequestCtx {
        hub: hub.get_ref().clone(),
        registry: registry.get_ref().clone(),
        mcp_id: mcp_id.clone(),
        session: session.clone(),
        notify: None,
        request_key: None,
    };
    let answer = match message {
        Value::Array(batch) => {
            let version = version_header.as_deref().unwrap_or(session.version);
            if version != "2025-03-26" {
                return rpc_failure(
                    StatusCode::BAD_REQUEST,
                    Value::Null,
                    RpcError::new(
                        INVALID_REQUEST,
                        format!(
                            "JSON-RPC batches ended with protocol 2025-03-26; this session speaks {version}"
                        ),
                    ),
                );
            }
            if batch.is_empty() {
                return rpc_failure(
                    StatusCode::BAD_REQUEST,
                    Value::Null,
                    RpcError::new(INVALID_REQUEST, "empty batch"),
                );
            }
            let mut replies = Vec::new();
            for m in batch {
                if let Some(r) = one(ctx(), m).await {
                    replies.push(r);
                }
            }
            if replies.is_empty() {
                None
            } else {
                Some(Value::Array(replies))
            }
        }
        single => match protocol::classify(single) {
            Ok(Incoming::Request { id, method, params }) if method != "initialize" => {
                // A key names one request: a batch's messages get none.
                let request_key = match crate::api::request_key(req.headers()) {
                    Ok(key) => key,
                    Err(e) => return rpc_failure(StatusCode::BAD_REQUEST, id, e.into()),
                };
                let ctx = RequestCtx {
                    request_key,
                    ..ctx()
                };
                return call(&req, ctx, id, method, params, cancel).await;
            }
            classified => one_classified(ctx(), classified).await,
        },
    };
    match answer {
        None => HttpResponse::Accepted().finish(),
        Some(reply) => respond(&req, reply, &mcp_id),
    }
}

/// Handles one message; `None` for notifications and responses (202).
async fn one(ctx: RequestCtx, message: Value) -> Option<Value> {
    one_classified(ctx, protocol::classify(message)).await
}

async fn one_classified(
    ctx: RequestCtx,
    message: Result<Incoming, (Value, RpcError)>,
) -> Option<Value> {
    match message {
        Err((id, err)) => Some(protocol::error(id, &err)),
        Ok(Incoming::Notification { method, params }) => {
            if method == "notifications/cancelled"
                && let Some(request) = params.get("requestId")
            {
                ctx.registry.do_send(CancelCall {
                    id: ctx.mcp_id.clone(),
                    request: request.to_string(),
                });
            }
            None
        }
        Ok(Incoming::Response) => None,
        Ok(Incoming::Request { id, method, params }) => {
            if method == "initialize" {
                let err = RpcError::new(
                    INVALID_REQUEST,
                    "initialize must be sent alone, without a session",
                );
                return Some(protocol::error(id, &err));
            }
            Some(match dispatch::request(ctx, &method, params).await {
                Ok(result) => protocol::result(id, result),
                Err(err) => protocol::error(id, &err),
            })
        }
    }
}

/// One request of an initialized session. It can be cancelled (`notifications/cancelled`):
/// then no answer is sent, as the spec asks (a JSON-mode POST gets an empty 202). A tool call
/// whose client wants progress or log messages is answered as SSE: those notifications, then
/// the result; but not a keyed one (a write a hub may run again, `mcp::resend`), which
/// answers in one piece once it is done: a hub that has passed a stream's head on can no
/// longer run the call again when the hub serving it dies. A stream's head goes out with its first
/// notification or its answer, whichever comes first: a call whose project another hub serves
/// (found before any notification) is passed on there, as an unstreamed one is.
async fn call(
    req: &HttpRequest,
    mut ctx: RequestCtx,
    id: Value,
    method: String,
    params: Value,
    cancelled: Option<Cancellation>,
) -> HttpResponse {
    let (mcp_id, registry) = (ctx.mcp_id.clone(), ctx.registry.clone());
    // Whose copy may change where its call is passed on: a bound session's, or one binding
    // there (a join or create).
    let may_change = ctx.session.binding.is_some()
        || (method == "tools/call"
            && matches!(
                params["name"].as_str(),
                Some("session_join" | "session_create")
            ));
    let progress_token = params.pointer("/_meta/progressToken").cloned();
    let stream = method == "tools/call"
        && ctx.request_key.is_none()
        && accepts(req.headers(), "text/event-stream")
        && (progress_token.is_some() || ctx.session.log_level.is_some());
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    if stream {
        ctx.notify = Some(Notifier {
            tx,
            progress_token,
            log_level: ctx.session.log_level.clone(),
        });
    }
    // When this future ends (answered or cancelled) its receiver drops, and the registry
    // forgets the call the next time it looks.
    let work = async move {
        let work = dispatch::request(ctx, &method, params);
        match cancelled {
            // Only a real cancel counts: a dropped sender (session ended) lets the call finish.
            Some(cancel) => tokio::select! {
                r = work => Some(r),
                Ok(()) = cancel => None,
            },
            None => Some(work.await),
        }
    };
    let reply = |id: Value, r: Result<Value, RpcError>| match r {
        Ok(result) => protocol::result(id, result),
        Err(err) => protocol::error(id, &err),
    };
    // Its project is served by another hub (an MCP session not bound yet joining a session
    // there, or a bound one whose project moved meanwhile): nothing was applied here, and the
    // request goes there (`http::hop`). A copy that may change there is marked: checked again
    // at its next request, and its stream here ended (the client opens it again, and it is
    // served where the session is). Not an operator's other calls: its stream stays.
    let elsewhere = |id: Value, err: RpcError| {
        if may_change {
            registry.do_send(FoundElsewhere(mcp_id.clone()));
        }
        rpc_failure(StatusCode::SERVICE_UNAVAILABLE, id, err)
    };
    let mut work = Box::pin(work);
    if !stream {
        return match work.await {
            Some(Err(err)) if err.served_elsewhere.is_some() => elsewhere(id, err),
            Some(r) => respond(req, reply(id, r), &mcp_id),
            None => HttpResponse::Accepted().finish(),
        };
    }
    // The head waits for the first notification or the answer, so that a call whose project is
    // served elsewhere (found before any notification) is still passed on.
    let first = tokio::select! {
        biased;
        first = rx.recv() => first,
        outcome = &mut work => match outcome {
            Some(Err(err)) if err.served_elsewhere.is_some() => return elsewhere(id, err),
            outcome => {
                let head = outcome.map(|r| reply(id, r));
                return streamed(mcp_id, sse::call_stream(rx, std::future::ready(head)));
            }
        },
    };
    let work = futures::FutureExt::map(work, move |outcome| outcome.map(|r| reply(id, r)));
    let first = first.map(|n| Ok::<_, actix_web::Error>(sse::frame(None, &n)));
    let rest = sse::call_stream(rx, work);
    streamed(
        mcp_id,
        futures::StreamExt::chain(futures::stream::iter(first), rest),
    )
}

/// A call's answer as an event stream.
fn streamed(
    mcp_id: String,
    body: impl futures::Stream<Item = Result<web::Bytes, actix_web::Error>> + 'static,
) -> HttpResponse {
    event_stream(mcp_id).streaming(body)
}

/// The head of a POST's answer given as an event stream.
fn event_stream(mcp_id: String) -> actix_web::HttpResponseBuilder {
    let mut head = HttpResponse::Ok();
    head.insert_header((SESSION_HEADER, mcp_id))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .content_type("text/event-stream");
    head
}

/// JSON unless the client only takes SSE; then one event carrying the answer.
fn respond(req: &HttpRequest, reply: Value, mcp_id: &str) -> HttpResponse {
    if accepts(req.headers(), "application/json") {
        HttpResponse::Ok()
            .insert_header((SESSION_HEADER, mcp_id.to_owned()))
            .json(reply)
    } else {
        event_stream(mcp_id.to_owned()).body(sse::frame(None, &reply))
    }
}

async fn initialize(
    req: &HttpRequest,
    message: Value,
    hub: &Addr<Hub>,
    registry: &Addr<McpRegistry>,
) -> HttpResponse {
    let (id, params) = match protocol::classify(message) {
        Ok(Incoming::Request { id, params, .. }) => (id, params),
        Ok(_) => {
            return rpc_failure(
                StatusCode::BAD_REQUEST,
                Value::Null,
                RpcError::new(INVALID_REQUEST, "initialize must be a request with an id"),
            );
        }
        Err((id, err)) => return rpc_failure(StatusCode::BAD_REQUEST, id, err),
    };
    let Some(requested) = params.get("protocolVersion").and_then(Value::as_str) else {
        return rpc_failure(
            StatusCode::BAD_REQUEST,
            id,
            RpcError::new(INVALID_PARAMS, "initialize needs params.protocolVersion"),
        );
    };
    let version = protocol::negotiate(requested);
    let credential = match credential(req) {
        Ok(c) => c,
        Err(e) => return hub_failure(e),
    };
    let binding = match hub.send(Identify(credential.clone())).await {
        Ok(Ok(Identity::Operator)) => None,
        Ok(Ok(Identity::Participant { session_id, ai_id })) => Some(Binding { session_id, ai_id }),
        Ok(Err(e)) => return hub_failure(e),
        Err(e) => return hub_failure(e.into()),
    };
    let channel = ChannelOptIn::of(&params);
    let session = McpSession {
        version,
        credential_at_start: credential.clone(),
        credential,
        binding,
        log_level: None,
        stateless: false,
        channel,
    };
    let mcp_id = match registry.send(Open(session)).await {
        Ok(Ok(id)) => id,
        Ok(Err(e)) => return hub_failure(e),
        Err(e) => return hub_failure(e.into()),
    };
    let result = json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": { "listChanged": true },
            "resources": { "subscribe": true, "listChanged": false },
            "prompts": { "listChanged": false },
            "logging": {},
            // Claude Code listens for channel notifications only from servers declaring this.
            "experimental": { push::CHANNEL_CAPABILITY: {} },
        },
        "serverInfo": {
            "name": "collab-hub",
            "title": "collab-hub",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "instructions": if channel.is_some() {
            format!("{INSTRUCTIONS} {CHANNEL_INSTRUCTIONS}")
        } else {
            INSTRUCTIONS.to_owned()
        },
    });
    respond(req, protocol::result(id, result), &mcp_id)
}

/// Sent once per MCP session in the initialize result; keep it short (tokens).
pub const INSTRUCTIONS: &str = "Coordination hub for several AIs on one codebase. Act as one participant: connect with your bearer token, or call session_join/session_create. Critical events you have not acknowledged appear at the top of tool results; clear them with events_ack.";

/// Added for clients that take channel notifications (`push::ChannelOptIn`).
pub const CHANNEL_INSTRUCTIONS: &str = "Critical events also arrive as <channel> messages (event_id, kind, from): act on them, then events_ack.";

pub async fn get(req: HttpRequest, registry: web::Data<Addr<McpRegistry>>) -> HttpResponse {
    if !accepts(req.headers(), "text/event-stream") {
        return hub_failure(HubError::NotAcceptable(
            "the GET stream is text/event-stream: send Accept: text/event-stream".into(),
        ));
    }
    let mcp_id = match existing_session(&req, &registry).await {
        Ok(id) => id,
        Err(refusal) => return refusal.response(),
    };
    let after = match header(req.headers(), "last-event-id").map(|v| v.trim().parse::<i64>()) {
        None => None,
        Some(Ok(n)) if n >= 0 => Some(n),
        Some(_) => {
            return rpc_failure(
                StatusCode::BAD_REQUEST,
                Value::Null,
                RpcError::new(
                    INVALID_REQUEST,
                    "Last-Event-ID must be an event id this hub sent",
                ),
            );
        }
    };
    let receivers = match registry
        .send(OpenStream {
            id: mcp_id.clone(),
            after,
        })
        .await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return hub_failure(e),
        Err(e) => return hub_failure(e.into()),
    };
    let forms = sse::Forms {
        subscriptions: receivers.subscriptions,
        log_level: receivers.log_level,
        channel: receivers.channel,
        registry: registry.get_ref().clone(),
        mcp_id: mcp_id.clone(),
        written: receivers.written,
    };
    HttpResponse::Ok()
        .insert_header((SESSION_HEADER, mcp_id))
        .insert_header((header::CACHE_CONTROL, "no-cache, no-transform"))
        .insert_header(("x-accel-buffering", "no"))
        .content_type("text/event-stream")
        .streaming(sse::get_stream(
            forms,
            receivers.control,
            receivers.events,
            req.app_data::<StreamLifetime>().and_then(|l| l.0),
        ))
}

pub async fn delete(req: HttpRequest, registry: web::Data<Addr<McpRegistry>>) -> HttpResponse {
    // Its body is none of ours: passed on empty, should its project be served elsewhere.
    req.extensions_mut().insert(ReadBody(Default::default()));
    let mcp_id = match existing_session(&req, &registry).await {
        Ok(id) => id,
        Err(refusal) => return refusal.response(),
    };
    match registry.send(Close(mcp_id)).await {
        Ok(Ok(true)) => HttpResponse::Ok().finish(),
        Ok(Err(e)) => hub_failure(e),
        Ok(Ok(false)) => rpc_failure(
            StatusCode::NOT_FOUND,
            Value::Null,
            RpcError::new(INVALID_REQUEST, "MCP session not found"),
        ),
        Err(e) => hub_failure(e.into()),
    }
}

pub async fn other_method() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, "GET, POST, DELETE"))
        .json(protocol::error(
            Value::Null,
            &RpcError::new(
                INVALID_REQUEST,
                "the MCP endpoint takes POST, GET and DELETE",
            ),
        ))
}

#[cfg(test)]
mod tests {
    use super::hub_failure_to;
    use crate::error::HubError;
    use serde_json::{Value, json};

    fn answered(body: Value) -> (u16, Value) {
        let answer = hub_failure_to(
            body.to_string().as_bytes(),
            HubError::Unavailable("gone".into()),
        );
        let status = answer.status().as_u16();
        let bytes = futures::executor::block_on(actix_web::body::to_bytes(answer.into_body()))
            .unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[test]
    fn a_failed_hop_answers_each_request_by_its_id() {
        let (status, one) = answered(json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}));
        assert_eq!((status, &one["id"]), (503, &json!(7)), "{one}");
        assert_eq!(one["error"]["data"]["code"], "unavailable", "{one}");
        // A batch: one error per request, none for its notification.
        let (_, batch) = answered(json!([
            {"jsonrpc": "2.0", "id": "a", "method": "ping"},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        ]));
        let ids: Vec<&Value> = batch.as_array().unwrap().iter().map(|r| &r["id"]).collect();
        assert_eq!(ids, [&json!("a"), &json!(2)], "{batch}");
        // No id to answer: a notification, an id no request may carry, a response, no JSON.
        for body in [
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            json!({"jsonrpc": "2.0", "id": {"x": 1}, "method": "ping"}),
            json!({"jsonrpc": "2.0", "id": 3, "result": {}}),
        ] {
            let (_, answer) = answered(body);
            assert_eq!(answer["id"], Value::Null, "{answer}");
        }
        let answer = hub_failure_to(b"{not json", HubError::Unavailable("gone".into()));
        assert_eq!(answer.status().as_u16(), 503);
    }
}
