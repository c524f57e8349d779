//! The relay of an event-stream answer to an MCP post that only reads (a long poll that
//! reports progress), passed on from the hub serving its project (`hop`): if that hub dies
//! before its reply, the post is run again and that answer's events follow on the same stream
//! (`mcp::resend` decides which posts only read).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, HttpResponseBuilder, web};
use futures::StreamExt;
use futures::future::LocalBoxFuture;
use futures::stream::LocalBoxStream;

/// An answer's body as it arrives.
pub(super) type Chunks = LocalBoxStream<'static, Result<web::Bytes, String>>;

/// What asking again came to.
pub(super) enum Again {
    /// An event stream: its events follow.
    Stream(Chunks),
    /// Any other answer (an error): passed on as the reply.
    Answer {
        status: StatusCode,
        body: web::Bytes,
    },
    Failed(String),
}

/// Runs the request again.
pub(super) type AskAgain = Box<dyn Fn() -> LocalBoxFuture<'static, Again>>;

/// How many times one read's event stream is run again (each time its hub died under it).
const MAX_RESENDS: u32 = 3;

/// The largest event held whole (notifications and most replies are far smaller); past it, the
/// rest of the answer is passed on as it comes, without a resend.
const MAX_EVENT: usize = 1 << 20;

/// An event-stream answer (`head`, `body`) to an MCP post that only reads (a long poll that
/// reports progress), passed on event by event; if it breaks before its reply, the post is
/// run again (`ask_again`) and that answer's events follow on the same stream. The client sees
/// a pause, then one reply; progress the next answer reports below what was already passed on
/// is dropped (progress must only increase). Whole events only: a cut one is dropped, since
/// the next answer sends its own. `request`: the post's body (its id answers a failure).
pub(super) fn relay_resending(
    mut out: HttpResponseBuilder,
    body: Chunks,
    ask_again: AskAgain,
    request: web::Bytes,
) -> HttpResponse {
    let splice = Splice {
        body: Some(body),
        pending: web::BytesMut::new(),
        scanned: 0,
        raw: false,
        replied: false,
        progress: None,
        resent: 0,
        ask_again,
        request,
    };
    out.streaming(futures::stream::unfold(splice, Splice::next_event))
}

struct Splice {
    body: Option<Chunks>,
    /// What arrived of the event under way.
    pending: web::BytesMut,
    /// How much of `pending` holds no event's end.
    scanned: usize,
    /// An event too large to hold (`MAX_EVENT`): the rest is passed on as it comes, and not
    /// asked again.
    raw: bool,
    /// The reply went out: nothing is sent again after it.
    replied: bool,
    /// The last progress passed on.
    progress: Option<f64>,
    resent: u32,
    ask_again: AskAgain,
    request: web::Bytes,
}

impl Splice {
    async fn next_event(mut self) -> Option<(Result<web::Bytes, std::io::Error>, Splice)> {
        loop {
            let from = self.scanned.saturating_sub(1);
            if let Some(at) = self.pending[from..].windows(2).position(|w| w == b"\n\n") {
                let event = self.pending.split_to(from + at + 2).freeze();
                self.scanned = 0;
                match kind(&event) {
                    Kind::Reply | Kind::Cancelled => self.replied = true,
                    Kind::Progress(p) if self.progress.is_some_and(|last| p <= last) => continue,
                    Kind::Progress(p) => self.progress = Some(p),
                    Kind::Other => {}
                }
                return Some((Ok(event), self));
            }
            self.scanned = self.pending.len();
            if self.pending.len() > MAX_EVENT {
                // A large reply (an export): passed on as it comes; it is not asked again.
                self.raw = true;
                self.replied = true;
                self.scanned = 0;
                return Some((Ok(self.pending.split().freeze()), self));
            }
            let body = self.body.as_mut()?;
            let broke = match body.next().await {
                Some(Ok(bytes)) if self.raw => return Some((Ok(bytes), self)),
                Some(Ok(bytes)) => {
                    self.pending.extend_from_slice(&bytes);
                    continue;
                }
                None if self.replied => {
                    self.body = None;
                    let rest = self.pending.split().freeze();
                    return (!rest.is_empty()).then_some((Ok(rest), self));
                }
                // The answer to a call ends with its reply, or with `CANCELLED`: an end before
                // either is a hub that died (awc reports a connection closed
                // mid-body as the end).
                None => "the stream ended before the reply".to_owned(),
                Some(Err(e)) => e,
            };
            if self.replied || self.resent >= MAX_RESENDS {
                self.body = None;
                return Some((Err(std::io::Error::other(broke)), self));
            }
            log::debug!("an event stream passed on broke ({broke}); running the read again");
            self.pending.clear();
            self.scanned = 0;
            self.resent += 1;
            match (self.ask_again)().await {
                Again::Stream(again) => self.body = Some(again),
                Again::Answer { status, body } => {
                    // An error from where it ran again (the MCP session is gone, say): its
                    // JSON-RPC answer, or an error for the request's id, so that the client
                    // is not left waiting.
                    self.body = None;
                    self.replied = true;
                    let message = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .filter(|m| !m.get("id").is_none_or(serde_json::Value::is_null));
                    let message = message.unwrap_or_else(|| {
                        let id = serde_json::from_slice::<serde_json::Value>(&self.request)
                            .ok()
                            .map_or(serde_json::Value::Null, |r| r["id"].clone());
                        let text = String::from_utf8_lossy(&body);
                        serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {
                            "code": -32603,
                            "message": format!("the hub that took over answered {status}: {text}")
                        }})
                    });
                    return Some((Ok(crate::mcp::sse::frame(None, &message)), self));
                }
                Again::Failed(e) => {
                    self.body = None;
                    return Some((Err(std::io::Error::other(e)), self));
                }
            }
        }
    }
}

/// What an SSE event carries.
#[derive(Debug, PartialEq)]
enum Kind {
    /// A JSON-RPC reply (an id, no method), or a batch's replies.
    Reply,
    /// The serving hub's mark of a call the client cancelled (`mcp::sse::CANCELLED`).
    Cancelled,
    /// `notifications/progress`, with its progress.
    Progress(f64),
    Other,
}

fn kind(event: &[u8]) -> Kind {
    if event == crate::mcp::sse::CANCELLED {
        return Kind::Cancelled;
    }
    let data: String = String::from_utf8_lossy(event)
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n");
    let Ok(message) = serde_json::from_str::<serde_json::Value>(&data) else {
        return Kind::Other;
    };
    let reply = |m: &serde_json::Value| m.get("id").is_some() && m.get("method").is_none();
    if message
        .as_array()
        .is_some_and(|batch| batch.iter().any(reply))
    {
        return Kind::Reply;
    }
    match message["method"].as_str() {
        None if reply(&message) => Kind::Reply,
        Some("notifications/progress") => message["params"]["progress"]
            .as_f64()
            .map_or(Kind::Other, Kind::Progress),
        _ => Kind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_told_from_a_notification() {
        let reply = crate::mcp::sse::frame(
            None,
            &serde_json::json!({"jsonrpc": "2.0", "id": 7, "result": {}}),
        );
        let note = crate::mcp::sse::frame(
            None,
            &serde_json::json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}),
        );
        assert_eq!(kind(&reply), Kind::Reply);
        assert_eq!(kind(&note), Kind::Other);
        let progress = crate::mcp::sse::frame(
            None,
            &serde_json::json!({"jsonrpc": "2.0", "method": "notifications/progress",
                                "params": {"progressToken": "p", "progress": 3.0}}),
        );
        assert_eq!(kind(&progress), Kind::Progress(3.0));
        assert_eq!(kind(b": keep-alive\n\n"), Kind::Other);
        assert_eq!(kind(crate::mcp::sse::CANCELLED), Kind::Cancelled);
        let batch = crate::mcp::sse::frame(
            None,
            &serde_json::json!([{"jsonrpc": "2.0", "id": 1, "result": {}}]),
        );
        assert_eq!(kind(&batch), Kind::Reply);
    }
}
