//! What a hub needs to send a request on to another hub and relay its answer: the client, the
//! headers that stay behind, and the answer passed on as it arrives, so that an event stream
//! (MCP GET, a POST answered as SSE) flows through unbuffered (`hop`, `forward_ws`,
//! `ws::relay`).

use actix_web::http::header::{self, HeaderName};
use actix_web::{HttpResponse, web};
use awc::error::SendRequestError;
use futures::StreamExt;

/// One HTTP client per worker thread (awc clients are not `Send`), pooling connections to the
/// other hubs. Bounded: the hub's own accepted connections bound the streams it relays.
pub fn client() -> awc::Client {
    awc::Client::builder()
        .disable_timeout()
        .disable_redirects()
        .no_default_headers()
        .connector(awc::Connector::new().limit(4096))
        .finish()
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

pub(super) fn is_event_stream<S>(answer: &awc::ClientResponse<S>) -> bool {
    answer.status().is_success()
        && answer
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"))
}

/// Whether the request surely never reached the other hub, so that running it elsewhere cannot
/// apply it twice: the connection could not be made. Not awc's `Disconnected`, which it also
/// reports when the connection closed after the request was sent, before the answer's head (a
/// hub killed after it applied the request): that one may have been applied.
pub(super) fn never_delivered(e: &SendRequestError) -> bool {
    use awc::error::ConnectError;
    match e {
        SendRequestError::Connect(ConnectError::Disconnected | ConnectError::H2(_)) => false,
        SendRequestError::Connect(_) => true,
        _ => false,
    }
}

/// The other hub's answer's status and headers, for the client (without those of its
/// connection).
pub(super) fn head_of<S>(answer: &awc::ClientResponse<S>) -> actix_web::HttpResponseBuilder {
    let mut out = HttpResponse::build(answer.status());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            out.append_header((name.clone(), value.clone()));
        }
    }
    out
}

/// The other hub's answer, passed on as it arrives.
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
