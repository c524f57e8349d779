//! The one hop between two hubs that serve different projects of one database: a request this
//! hub cannot serve because another live hub holds its project's lease (`HubError::Elsewhere`)
//! is sent there, marked `HOP` so that it is never passed on again, and the answer is passed
//! back (docs/multi-hub.md, "What routing needs").
//!
//! - REST and MCP (`pass_on`, a middleware of the serving app): a request answered `Elsewhere`
//!   is sent to the holder as it came (method, path, headers, the body its handler read), marked
//!   `HOP`, and the holder's answer relayed as it arrives (an MCP event stream as long as it
//!   runs). Nothing was applied here: `Elsewhere` is answered before a session is touched. An MCP
//!   request finds it when its MCP session is looked up, if it is bound to a participant of such
//!   a project (`mcp::registry`, `Lookup`), or from its tool (a join or create of an MCP session
//!   not bound yet). WebSocket upgrades are not passed on this way: an agent's socket is
//!   bridged whole (`ws::endpoint`, `http::forward_ws`), and a dashboard's serves sessions of
//!   several projects.
//! - A WebSocket client's frame (`ws::relay`) goes through `send` too.
//!
//! A connection that could not be made applied nothing: answered 503, retry. A write with a
//! request key (`mcp::resend::resent_with_key`), a request that only reads, or one that bears
//! applying twice, whose connection broke after it was sent goes once more (the key marked
//! `RESENT`: the holder answers `already_applied` if it was applied), but not after a timeout
//! (it may still be running); any other is answered 503 saying it may have been applied, and
//! so is any failure of the second send. A standby that is not the owner answers 421 (a
//! hand-over under way): answered 503, retry.

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{HttpMessage, HttpRequest, ResponseError};
use awc::error::SendRequestError;

use super::forward::{self, FORWARDED, NOT_OWNER};
use crate::error::HubError;

/// What a request answered `Elsewhere` leaves on its response: where its project is served.
#[derive(Clone, Debug)]
pub struct ServedElsewhere(pub String);

/// Marks a request one hub passed on to the hub serving its project: answered where it lands,
/// never passed on again. Apart from `FORWARDED`, which a standby puts on everything it
/// forwards to the owner (a request that came through a standby may still be passed on once).
pub const HOP: &str = "x-collab-hub-hop";

/// The body a REST handler (`JsonBody`) or the MCP transport read, kept with the request so
/// that it can be sent on.
#[derive(Clone, Debug)]
pub struct ReadBody(pub Bytes);

/// The longest an answer's head may take (a REST read answers at once; an export is large).
const HEAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Sends a request built by `build` (told whether it is a second send) with `body`, once more
/// after a connection lost with the request out if `again` (a read, or a keyed write, or one
/// that bears applying twice). A hub that answers it does not serve the project (a standby: a
/// hand-over is under way) is answered 503.
pub async fn send(
    build: impl Fn(bool) -> awc::ClientRequest,
    body: Bytes,
    again: bool,
) -> Result<awc::ClientResponse, HubError> {
    let mut resent = false;
    loop {
        // The answer's head within the timeout; its body (an event stream) as long as it runs.
        let sent = tokio::time::timeout(
            HEAD_TIMEOUT,
            build(resent)
                // A standby answers a forwarded request 421 rather than send it on to its owner.
                .insert_header((FORWARDED, "1"))
                .insert_header((HOP, "1"))
                .send_body(body.clone()),
        )
        .await
        .unwrap_or(Err(SendRequestError::Timeout));
        match sent {
            // Once sent again, the first send may have been applied: only `lost` is true.
            Ok(answer) if answer.headers().contains_key(NOT_OWNER) && !resent => {
                return Err(HubError::Unavailable(
                    "the hub that held this session's project is handing it over; retry".into(),
                ));
            }
            Ok(answer) if answer.headers().contains_key(NOT_OWNER) => {
                return Err(lost("handed over meanwhile"));
            }
            Ok(answer) => return Ok(answer),
            Err(e) if forward::never_delivered(&e) && !resent => {
                return Err(HubError::Unavailable(format!(
                    "the hub serving this session's project cannot be reached ({e}); nothing was applied; retry"
                )));
            }
            // Not after a timeout: the first send may still be running there.
            Err(e) if again && !resent && !matches!(e, SendRequestError::Timeout) => {
                log::info!("a request to the hub serving its project was lost ({e}); sent again");
                resent = true;
            }
            Err(e) => return Err(lost(e)),
        }
    }
}

fn lost(e: impl std::fmt::Display) -> HubError {
    HubError::Unavailable(format!(
        "the hub serving this session's project did not answer ({e}); a write may have been applied: read before sending it again"
    ))
}

/// Middleware of the serving app: a REST or MCP request answered `Elsewhere` is served by the hub
/// holding its project, and answered as that hub answered it. A request another hub already
/// passed on is answered here as it is (one hop at most).
pub async fn pass_on(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let served = res
        .response()
        .extensions()
        .get::<ServedElsewhere>()
        .cloned();
    let Some(served) = served else {
        return Ok(res.map_into_boxed_body());
    };
    let req = res.request().clone();
    let passable = !req.headers().contains_key(HOP) && !req.headers().contains_key(header::UPGRADE);
    let body = req.extensions().get::<ReadBody>().map(|b| b.0.clone());
    // A body nobody read (no handler takes one unread) cannot be sent on.
    let body = match (passable, body) {
        (false, _) => return Ok(res.map_into_boxed_body()),
        (true, Some(body)) => body,
        (true, None) if req.method().is_safe() => Bytes::new(),
        (true, None) => return Ok(res.map_into_boxed_body()),
    };
    drop(res);
    let answer = match to(&served, &req, body.clone()).await {
        Ok(answer) => forward::relay(answer),
        // An MCP client reads a JSON-RPC error, with its request's id.
        Err(e) if crate::mcp::PATHS.contains(&req.path()) => {
            crate::mcp::transport::hub_failure_to(&body, e)
        }
        Err(e) => e.error_response(),
    };
    Ok(ServiceResponse::new(req, answer))
}

/// Sends `req` with `body` to the hub serving its project.
async fn to(
    served: &ServedElsewhere,
    req: &HttpRequest,
    body: Bytes,
) -> Result<awc::ClientResponse, HubError> {
    let client = req
        .app_data::<awc::Client>()
        .ok_or_else(|| HubError::Internal("no client for other hubs".into()))?;
    let (method, path) = (req.method(), req.path());
    let keyed = crate::mcp::resend::resent_with_key(method, path, &body);
    let again = keyed
        || method.is_safe()
        || crate::mcp::resend::mcp_reads_only(method, path, &body)
        || crate::mcp::resend::rest_bears_applying_twice(method, path);
    // A write goes with a key: the client's own, or a new one.
    let key = match req.headers().get(crate::api::REQUEST_KEY) {
        Some(given) => Some((given.clone(), true)),
        None if keyed => Some((
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .expect("a UUID is a header value"),
            false,
        )),
        None => None,
    };
    let target = format!(
        "{}{}",
        served.0.trim_end_matches('/'),
        req.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    let build = |resent: bool| {
        let mut out = client.request(method.clone(), &target);
        for (name, value) in req.headers() {
            if !forward::hop_by_hop(name) {
                out = out.append_header((name.clone(), value.clone()));
            }
        }
        if let Some((key, given)) = &key {
            out = out.insert_header((crate::api::REQUEST_KEY, key.clone()));
            if resent || *given {
                out = out.insert_header((crate::api::RESENT, "1"));
            }
        }
        out
    };
    send(build, body, again).await
}
