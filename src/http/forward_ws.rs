//! A WebSocket bridged to another hub's `/ws` (same path, query and credentials), every frame
//! passed on both ways until either side closes: an agent's whose token is of a session another
//! hub serves (`ws::endpoint`, to that hub, marked `HOP`).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::Message;
use awc::ws::Frame;
use futures::{SinkExt, StreamExt};

use crate::error::HubError;

/// Frames up to this size pass (a dashboard's log replay arrives in large frames).
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// The longest the other hub may take to answer the handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Bridges the WebSocket `req` asks for to `base`'s, marked as one hop between hubs serving
/// projects (`http::hop::HOP`: never passed on again).
pub async fn bridge_to(
    req: &HttpRequest,
    payload: web::Payload,
    base: &str,
) -> Result<HttpResponse, HubError> {
    let client = req
        .app_data::<awc::Client>()
        .ok_or_else(|| HubError::Internal("no forwarding client".into()))?;
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut out = client
        .ws(format!("{}{path}", base.trim_end_matches('/')))
        .max_frame_size(MAX_FRAME)
        .set_header(super::hop::HOP, "1");
    for name in [header::AUTHORIZATION, header::ORIGIN, header::COOKIE] {
        if let Some(value) = req.headers().get(&name) {
            out = out.set_header(name, value.clone());
        }
    }
    if let Some(protocols) = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
    {
        out = out.protocols(protocols.split(',').map(str::trim));
    }
    let (answer, other) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, out.connect()).await {
        Ok(Ok(connected)) => connected,
        Ok(Err(e)) => {
            return Err(HubError::Unavailable(format!(
                "the hub at {base} refused the WebSocket ({e}); retry"
            )));
        }
        Err(_) => {
            return Err(HubError::Unavailable(format!(
                "the hub at {base} did not answer the WebSocket handshake in time; retry"
            )));
        }
    };
    if answer.status() != actix_web::http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(HubError::Unavailable(format!(
            "the hub at {base} answered {}; retry",
            answer.status()
        )));
    }
    let (response, mut session, client_frames) = actix_ws::handle(req, payload)
        .map_err(|e| HubError::Unavailable(format!("not a WebSocket request: {e}")))?;
    let mut client_frames = client_frames.max_frame_size(MAX_FRAME);
    let (mut to_other, mut from_other) = other.split();
    actix_web::rt::spawn(async move {
        loop {
            tokio::select! {
                m = client_frames.next() => {
                    let Some(Ok(m)) = m else { break };
                    let closing = matches!(m, Message::Close(_));
                    if to_other.send(m).await.is_err() || closing {
                        break;
                    }
                }
                f = from_other.next() => {
                    let sent = match f {
                        Some(Ok(Frame::Text(t))) => match std::str::from_utf8(&t) {
                            Ok(text) => session.text(text.to_owned()).await,
                            Err(_) => break,
                        },
                        Some(Ok(Frame::Binary(b))) => session.binary(b).await,
                        Some(Ok(Frame::Ping(p))) => session.ping(&p).await,
                        Some(Ok(Frame::Pong(p))) => session.pong(&p).await,
                        Some(Ok(Frame::Close(reason))) => {
                            let _ = session.close(reason).await;
                            let _ = to_other.close().await;
                            return;
                        }
                        _ => break,
                    };
                    if sent.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = session.close(None).await;
        let _ = to_other.close().await;
    });
    Ok(response)
}
