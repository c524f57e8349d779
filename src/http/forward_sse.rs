//! A standby's relay of an event-stream answer to an MCP post that only reads (a long poll
//! that reports progress): if the owner dies before its reply, the post goes to the next
//! owner and that answer's events follow on the same stream (`forward` decides which posts
//! only read: `mcp::resend`).

use actix_web::{HttpResponse, web};
use futures::StreamExt;

use super::forward::{Answer, Outgoing, hop_by_hop, is_event_stream};

/// How many times one read's event stream is sent again (each time an owner died under it).
const MAX_RESENDS: u32 = 3;

/// The owner's event-stream answer to an MCP post that only reads (a long poll that reports
/// progress), passed on event by event; if the owner dies before its reply, the post is sent
/// again to the next owner and that answer's events follow on the same stream. The client
/// sees a pause, then one reply; progress the next owner reports below what was already
/// passed on is dropped (progress must only increase). Whole events only: a cut one is
/// dropped, since the next owner sends its own.
pub(super) fn relay_resending(answer: Answer, outgoing: Outgoing) -> HttpResponse {
    let mut out = HttpResponse::build(answer.status());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            out.append_header((name.clone(), value.clone()));
        }
    }
    let splice = Splice {
        body: Some(answer),
        pending: web::BytesMut::new(),
        replied: false,
        progress: None,
        resent: 0,
        outgoing,
    };
    out.streaming(futures::stream::unfold(splice, Splice::next_event))
}

struct Splice {
    body: Option<Answer>,
    /// What arrived of the event under way.
    pending: web::BytesMut,
    /// The reply went out: nothing is sent again after it.
    replied: bool,
    /// The last progress passed on.
    progress: Option<f64>,
    resent: u32,
    outgoing: Outgoing,
}

impl Splice {
    async fn next_event(mut self) -> Option<(Result<web::Bytes, std::io::Error>, Splice)> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let event = self.pending.split_to(end + 2).freeze();
                match kind(&event) {
                    Kind::Reply => self.replied = true,
                    Kind::Progress(p) if self.progress.is_some_and(|last| p <= last) => continue,
                    Kind::Progress(p) => self.progress = Some(p),
                    Kind::Other => {}
                }
                return Some((Ok(event), self));
            }
            let body = self.body.as_mut()?;
            let broke = match body.next().await {
                Some(Ok(bytes)) => {
                    self.pending.extend_from_slice(&bytes);
                    continue;
                }
                None if self.replied => {
                    self.body = None;
                    let rest = self.pending.split().freeze();
                    return (!rest.is_empty()).then_some((Ok(rest), self));
                }
                // The owner's answer to a call ends with its reply: an end before it is an
                // owner that died (awc reports a connection closed mid-body as the end). Or a
                // call the client cancelled: sent again, its reply is ignored, as the protocol
                // has it, and the client has usually gone, which drops this stream.
                None => "the stream ended before the reply".to_owned(),
                Some(Err(e)) => e.to_string(),
            };
            if self.replied || self.resent >= MAX_RESENDS {
                self.body = None;
                return Some((Err(std::io::Error::other(broke)), self));
            }
            log::debug!("an event stream from the owner broke ({broke}); sending the read again");
            self.pending.clear();
            self.resent += 1;
            match self.outgoing.deliver().await {
                Ok(again) if is_event_stream(&again) => self.body = Some(again),
                Ok(mut again) => {
                    // An error from the next owner (the MCP session is gone, say): one event
                    // carrying its JSON-RPC answer; anything else breaks the stream.
                    self.body = None;
                    let message = match again.body().await {
                        Ok(answer) => serde_json::from_slice::<serde_json::Value>(&answer).ok(),
                        Err(_) => None,
                    };
                    let Some(message) = message else {
                        let why = format!("the next owner answered {}", again.status());
                        return Some((Err(std::io::Error::other(why)), self));
                    };
                    self.replied = true;
                    return Some((Ok(crate::mcp::sse::frame(None, &message)), self));
                }
                Err(e) => {
                    self.body = None;
                    return Some((Err(std::io::Error::other(e.to_string())), self));
                }
            }
        }
    }
}

/// What an SSE event carries.
#[derive(Debug, PartialEq)]
enum Kind {
    /// A JSON-RPC reply (an id, no method).
    Reply,
    /// `notifications/progress`, with its progress.
    Progress(f64),
    Other,
}

fn kind(event: &[u8]) -> Kind {
    let data: String = String::from_utf8_lossy(event)
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(str::trim_start)
        .collect::<Vec<_>>()
        .join("\n");
    let Ok(message) = serde_json::from_str::<serde_json::Value>(&data) else {
        return Kind::Other;
    };
    match message["method"].as_str() {
        None if message.get("id").is_some() => Kind::Reply,
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
    }
}
