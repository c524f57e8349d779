//! A standby's whole HTTP surface: every request it receives is forwarded to the hub that owns
//! the database (`store::lease`), and the answer relayed back as it arrives, so an event
//! stream (MCP GET, a POST answered as SSE) flows through unbuffered. The owner serves it
//! exactly as if the client had come to it: it checks the credentials, and its answer
//! (status, headers, body) is passed on untouched. WebSockets are bridged frame by frame.
//!
//! When the owner cannot be reached (killed, and its lease not yet taken over), a request that
//! was never delivered waits for the next owner, up to `patience`, and then goes there; the
//! client sees a slow answer, not an error. So does a safe request (GET, HEAD, OPTIONS, and an
//! MCP post that only reads: `mcp::resend`) that lost its connection before the answer began:
//! reading twice changes nothing. So does a write the standby sent with a key
//! (`mcp::resend::resent_with_key`: most writes, and the read of messages, which marks them
//! read): the next owner applies it if it was not applied, and answers `already_applied` (409)
//! if it was (a read of messages: the page it answered). Any other request that
//! was sent and then lost its connection is answered 503: it may or may not have been applied,
//! and only the client may decide to send it again.

use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpRequest, HttpResponse, web};
use awc::error::SendRequestError;
use futures::StreamExt;
use tokio::sync::watch;

use super::BodyLimit;
use crate::error::HubError;
use crate::store::lease::Role;

/// Marks a forwarded request: a hub that receives one while it is itself no owner (the hubs
/// briefly disagree during a takeover) answers 421 (`NOT_OWNER`) at once instead of
/// forwarding it in a circle, and the sender tries again once it knows the owner. (Until stop
/// 29 it waited for its own deadline, and then answered 503, even when another hub had taken
/// the lease meanwhile.)
pub const FORWARDED: &str = "x-collab-hub-forwarded";

/// Marks a 421 answer to a forwarded request from a hub that does not own the database: the
/// sender's idea of the owner is stale (the lease moved, or is being taken), nothing was
/// applied, and it sends the request again once it knows better.
pub(super) const NOT_OWNER: &str = "x-collab-hub-not-owner";

/// How many times a read that an owner held and lost (it died) is asked again of the next.
const MAX_LOSSES: u32 = 3;

/// The longest an answer's headers may take: a long poll answers only when it ends.
const HEAD_TIMEOUT: Duration = Duration::from_secs(600);

/// What the forwarding needs (app data).
#[derive(Clone)]
pub struct Forwarding {
    pub role: watch::Receiver<Role>,
    /// This process's own address, where it serves once it becomes the owner.
    pub own_url: String,
    /// True once this process, having become the owner, serves on its address: until then a
    /// request for the owner waits rather than reach this forwarding server again.
    pub owner_ready: watch::Receiver<bool>,
    /// How long a request waits for an owner to be reachable.
    pub patience: Duration,
    pub limit: BodyLimit,
}

/// One HTTP client per worker thread (awc clients are not `Send`), pooling connections to the
/// owner. Bounded: the standby's own accepted connections bound the streams it relays.
pub fn client() -> awc::Client {
    awc::Client::builder()
        .disable_timeout()
        .disable_redirects()
        .no_default_headers()
        .connector(awc::Connector::new().limit(4096))
        .finish()
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.default_service(web::to(forward));
}

/// Headers that describe one connection, not the request: never passed on.
pub(super) fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    ) || name.as_str().starts_with("sec-websocket-")
}

impl Forwarding {
    /// Where a request should go now, if anywhere. A request another hub already forwarded
    /// goes only to this process's own owner server: that hub thinks this one owns the
    /// database, and sending it back would go in a circle.
    pub(super) fn target(&self, forwarded: bool) -> Option<String> {
        match &*self.role.borrow() {
            Role::Standby { url, .. } if !forwarded => Some(url.clone()),
            // Became the owner: once its own server serves this address, send it there.
            Role::Owner { .. } if *self.owner_ready.borrow() => Some(self.own_url.clone()),
            _ => None,
        }
    }
}

fn unreachable(why: impl std::fmt::Display) -> HubError {
    HubError::Unavailable(format!(
        "the hub that owns this database cannot be reached ({why}); another hub takes over (at once when it died, else when its lease expires): retry"
    ))
}

async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    fw: web::Data<Forwarding>,
) -> Result<HttpResponse, HubError> {
    let forwarded = req.headers().contains_key(FORWARDED);
    if req.headers().contains_key(header::UPGRADE) {
        return super::forward_ws::bridge(req, payload, fw).await;
    }
    // Read first, even to turn it back: the sender writes the whole body before it reads an
    // answer, and a connection closed under a large body would look to it like a request
    // that may have been applied.
    let body = super::read_body(payload.into_inner(), fw.limit)
        .await?
        .freeze();
    if forwarded && !matches!(*fw.role.borrow(), Role::Owner { .. }) {
        // Waiting here would hold the request until the deadline if another hub takes the
        // lease: the sender re-routes it at once instead.
        return Ok(
            HttpResponse::build(actix_web::http::StatusCode::MISDIRECTED_REQUEST)
                .insert_header((NOT_OWNER, "1"))
                .json(serde_json::json!({"error": {
                    "code": "not_owner",
                    "message": "this hub does not own the database; the sender tries the owner"
                }})),
        );
    }
    // An MCP post that only reads (a long poll above all) is as safe as a GET.
    let mcp_read = crate::mcp::resend::mcp_reads_only(req.method(), req.path(), &body);
    // A write the next owner can tell it applied goes with a key, and is sent again too; so
    // does the read of messages, which marks them read (sent again, it gets its first page).
    let key = crate::mcp::resend::resent_with_key(req.method(), req.path(), &body).then(|| {
        match req.headers().get(crate::api::REQUEST_KEY) {
            // The client's own: it may be sending it again itself.
            Some(given) => (given.clone(), true),
            None => (
                header::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                    .expect("a UUID is a header value"),
                false,
            ),
        }
    });
    let outgoing = Outgoing {
        safe: req.method().is_safe()
            || mcp_read
            || crate::mcp::resend::rest_bears_applying_twice(req.method(), req.path()),
        key,
        req,
        body,
        fw,
        forwarded,
    };
    let answer = outgoing.deliver().await?;
    if mcp_read && is_event_stream(&answer) {
        return Ok(super::forward_sse::relay_resending(answer, outgoing));
    }
    Ok(relay(answer))
}

/// The owner's answer as awc gives it.
pub(super) type Answer = awc::ClientResponse;

/// A request as the standby sends it to the owner, and again to the next one if need be.
pub(super) struct Outgoing {
    req: HttpRequest,
    pub(super) body: web::Bytes,
    fw: web::Data<Forwarding>,
    forwarded: bool,
    /// May be sent again after it was delivered (it only reads).
    safe: bool,
    /// A write sent with this key (`api::REQUEST_KEY`), and so sent again after it was
    /// delivered: the next owner knows whether it was applied. True if the client gave it.
    key: Option<(header::HeaderValue, bool)>,
}

impl Outgoing {
    /// Sends it to the owner and returns the answer's head: after a connection never made (or
    /// lost, for a safe request), to the next owner once there is one, up to the deadline.
    pub(super) async fn deliver(&self) -> Result<Answer, HubError> {
        let Outgoing {
            req,
            body,
            fw,
            forwarded,
            safe,
            key,
        } = self;
        let again = *safe || key.is_some();
        // How long it waits for an owner: from now, and again from each loss of a read the
        // owner held (a long poll may have waited there longer than the patience).
        let mut deadline = Instant::now() + fw.patience;
        let mut losses = 0;
        let client = req
            .app_data::<awc::Client>()
            .ok_or_else(|| HubError::Internal("no forwarding client".into()))?;
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let (mut role, mut ready) = (fw.role.clone(), fw.owner_ready.clone());
        loop {
            role.borrow_and_update();
            ready.borrow_and_update();
            if let Some(base) = fw.target(*forwarded) {
                let mut out = client.request(
                    req.method().clone(),
                    format!("{}{path}", base.trim_end_matches('/')),
                );
                for (name, value) in req.headers() {
                    if !hop_by_hop(name) {
                        out = out.append_header((name.clone(), value.clone()));
                    }
                }
                out = out.insert_header((FORWARDED, "1"));
                if let Some((key, given)) = key {
                    out = out.insert_header((crate::api::REQUEST_KEY, key.clone()));
                    if losses > 0 || *given {
                        out = out.insert_header((crate::api::RESENT, "1"));
                    }
                }
                match tokio::time::timeout(HEAD_TIMEOUT, out.send_body(body.clone())).await {
                    // The hub this one took for the owner is not (any more, or not yet):
                    // nothing was applied; wait to learn the owner, and send it there.
                    Ok(Ok(answer)) if answer.headers().contains_key(NOT_OWNER) => {
                        if Instant::now() >= deadline {
                            return Err(unreachable(format!("{base} does not own it")));
                        }
                        log::debug!("forward to {base}: not the owner; waiting for an owner");
                    }
                    Ok(Ok(answer)) => return Ok(answer),
                    // Never delivered, or a read that may be asked twice (as any HTTP proxy
                    // retries an idempotent request): wait for the next owner and send it there.
                    Ok(Err(e)) if never_delivered(&e) && Instant::now() < deadline => {
                        log::debug!("forward to {base}: {e}; waiting for an owner");
                    }
                    // Delivered, and the connection lost (the owner died): a read, or a
                    // keyed write, is sent again, with a new wait for the next owner (a few
                    // times at most).
                    Ok(Err(e)) if again && !never_delivered(&e) && losses < MAX_LOSSES => {
                        log::debug!("forward to {base}: {e}; waiting for an owner to ask again");
                        losses += 1;
                        deadline = Instant::now() + fw.patience;
                    }
                    Ok(Err(e)) => return Err(unreachable(e)),
                    Err(_) => return Err(unreachable("no answer in time")),
                }
            } else if Instant::now() >= deadline {
                return Err(if *forwarded {
                    HubError::Unavailable(
                        "the hubs disagree about which one owns the database (a takeover is under way); retry"
                            .into(),
                    )
                } else {
                    unreachable("no owner")
                });
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), async {
                tokio::select! {
                    _ = role.changed() => {}
                    _ = ready.changed() => {}
                }
            })
            .await;
        }
    }
}

pub(super) fn is_event_stream<S>(answer: &awc::ClientResponse<S>) -> bool {
    answer.status().is_success()
        && answer
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"))
}

/// Whether the request surely never reached the owner, so that sending it to the next owner
/// cannot apply it twice: the connection could not be made. Not awc's `Disconnected`, which
/// it also reports when the connection closed after the request was sent, before the answer's
/// head (an owner killed after it applied the request): that one may have been applied.
pub(super) fn never_delivered(e: &SendRequestError) -> bool {
    use awc::error::ConnectError;
    match e {
        SendRequestError::Connect(ConnectError::Disconnected | ConnectError::H2(_)) => false,
        SendRequestError::Connect(_) => true,
        _ => false,
    }
}

/// The owner's answer's status and headers, for the client (without those of its connection).
pub(super) fn head_of<S>(answer: &awc::ClientResponse<S>) -> actix_web::HttpResponseBuilder {
    let mut out = HttpResponse::build(answer.status());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            out.append_header((name.clone(), value.clone()));
        }
    }
    out
}

/// The owner's answer, passed on as it arrives.
pub(super) fn relay<S>(answer: awc::ClientResponse<S>) -> HttpResponse
where
    S: futures::Stream<Item = Result<web::Bytes, awc::error::PayloadError>> + Unpin + 'static,
{
    let mut out = head_of(&answer);
    let status = answer.status().as_u16();
    if status == 204 || status == 304 {
        return out.finish();
    }
    let length = answer
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(length) = length {
        out.no_chunking(length);
    }
    out.streaming(answer.map(|chunk| chunk.map_err(std::io::Error::other)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use awc::error::ConnectError;

    #[test]
    fn only_a_connection_never_made_is_sent_again() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(never_delivered(&SendRequestError::Connect(
            ConnectError::Io(refused)
        )));
        assert!(never_delivered(&SendRequestError::Connect(
            ConnectError::Timeout
        )));
        // awc's word for "the connection closed before the answer's head", request sent.
        assert!(!never_delivered(&SendRequestError::Connect(
            ConnectError::Disconnected
        )));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!never_delivered(&SendRequestError::Send(reset)));
        assert!(!never_delivered(&SendRequestError::Timeout));
    }
}
