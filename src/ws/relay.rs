//! A WebSocket client's command on a session another hub serves (docs/multi-hub.md, routing
//! prerequisite 3). A dashboard is connected to one hub and works on sessions of every
//! project, while a session's actor runs only at the hub holding its project's lease. So the
//! connection's hub passes such a command (a `call` or an `ack` frame answered `Elsewhere`) to
//! the hub serving the session as one HTTP request, `POST /ws/frame`, with the connection's own
//! token, and answers the client what that hub answered, error objects untouched. The serving
//! hub runs the frame exactly as its own WebSocket would (`frame`, below), and never passes it
//! on again: one hop at most.
//!
//! Every frame is sent with a request key (`api::REQUEST_KEY`), through `http::hop::send`: if the
//! connection to the serving hub breaks after the request went out, it is sent once more with
//! the same key, and a write applied already is answered `already_applied` with the events it
//! committed instead of being applied twice.

use actix::Addr;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::calls;
use crate::actors::Hub;
use crate::actors::hub::{Identify, Identity};
use crate::api::{Call, Seat};
use crate::domain::auth::Credential;
use crate::error::HubError;
use crate::http::JsonBody;

/// Where the serving hub takes frames.
pub const ROUTE: &str = "/ws/frame";

/// The largest answer taken back (a page of messages, an export).
const MAX_ANSWER: usize = 64 * 1024 * 1024;

thread_local! {
    /// One client per thread (awc clients are not `Send`), pooling connections to other hubs.
    static CLIENT: awc::Client = crate::http::forward::client();
}

/// A frame as the serving hub runs it: `call` or `ack`, without an id (the answer is the
/// request's).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Frame {
    Call {
        operation: String,
        #[serde(default)]
        arguments: Option<Value>,
    },
    #[serde(rename_all = "camelCase")]
    Ack {
        up_to: i64,
        #[serde(default)]
        session_id: Option<Uuid>,
    },
}

/// Runs `frame` at the hub at `url` as the holder of `token`: what its reply carries, `ok` or
/// the error as that hub said it.
pub async fn relay(url: &str, token: Option<&str>, frame: Value) -> Result<Value, HubError> {
    let key = Uuid::new_v4().to_string();
    let target = format!("{}{ROUTE}", url.trim_end_matches('/'));
    let build = |resent: bool| {
        let mut request = CLIENT
            .with(|c| c.post(&target))
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .insert_header((crate::api::REQUEST_KEY, key.as_str()));
        if resent {
            request = request.insert_header((crate::api::RESENT, "1"));
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
    };
    let body = Bytes::from(frame.to_string());
    let mut answer = crate::http::hop::send(build, body, true).await?;
    let status = answer.status();
    let body: Value = answer.json().limit(MAX_ANSWER).await.map_err(|e| {
        let applied = match status.is_success() {
            true => "; it was applied",
            false => "",
        };
        HubError::Unavailable(format!(
            "the hub serving this session answered {status} without a readable body ({e}){applied}"
        ))
    })?;
    match status.is_success() {
        true => Ok(body),
        false => Err(HubError::Relayed {
            status: status.as_u16(),
            error: body.get("error").cloned().unwrap_or(body),
        }),
    }
}

/// `POST /ws/frame`: one `call` or `ack` frame, run as the request's caller exactly as a
/// WebSocket connection of that caller runs it, answered with what the reply would carry (200
/// and its `ok`, or the error). Another hub sends it here for its WebSocket client (`relay`),
/// marked as a hop (`http::hop::HOP`): a session another hub serves is then answered
/// `Elsewhere`, never passed on again.
pub async fn frame(
    req: HttpRequest,
    hub: web::Data<Addr<Hub>>,
    config: web::Data<super::WsConfig>,
    JsonBody(frame): JsonBody<Frame>,
) -> Result<HttpResponse, HubError> {
    let credential = crate::http::credential(&req)?;
    let seat = match hub.send(Identify(credential.clone())).await?? {
        Identity::Operator => None,
        Identity::Participant { session_id, ai_id } => Some(Seat { session_id, ai_id }),
    };
    let viewer = seat.is_none();
    let key = crate::api::request_key(req.headers())?;
    let call = Call {
        hub: hub.get_ref().clone(),
        credential,
        seat,
        critical: None,
        request_key: std::rc::Rc::new(std::cell::Cell::new(key)),
    };
    let ok = match frame {
        Frame::Call {
            operation,
            arguments,
        } => {
            let arguments = arguments.unwrap_or(Value::Null);
            if viewer {
                // Within this hub's budget for all viewers, as a viewer's socket here is: the
                // hub that sent it paced it by its own, which does not spare this hub's agents.
                let budget = &config.viewer_budget;
                budget.admit(&budget.connection()).await;
            }
            calls::run(call, &operation, arguments, viewer).await?
        }
        Frame::Ack { up_to, session_id } => calls::ack(call, up_to, session_id).await?,
    };
    Ok(HttpResponse::Ok().json(ok))
}

/// Who a connection's credential speaks for, as `Identify` answers, but for a participant of a
/// session another hub serves: that hub is asked (`whoami`, with the token), and its answer
/// names the seat and its role. `Some(role)`: the role, when it was read on the way.
pub async fn identify(
    hub: &Addr<Hub>,
    credential: &Credential,
    token: Option<&str>,
) -> Result<(Option<Seat>, Option<Value>), HubError> {
    seated(hub.send(Identify(credential.clone())).await?, token).await
}

/// The seat `Identify` answered (`identify`).
pub async fn seated(
    identity: Result<Identity, HubError>,
    token: Option<&str>,
) -> Result<(Option<Seat>, Option<Value>), HubError> {
    match identity {
        Ok(Identity::Operator) => Ok((None, None)),
        Ok(Identity::Participant { session_id, ai_id }) => {
            Ok((Some(Seat { session_id, ai_id }), None))
        }
        Err(HubError::Elsewhere { url, .. }) => {
            let mut me = whoami(&url, token).await?;
            let seat = serde_json::from_value::<Seated>(me.clone()).map_err(|e| {
                HubError::Unavailable(format!(
                    "the hub serving this token's session answered whoami unreadably: {e}"
                ))
            })?;
            let seat = Seat {
                session_id: seat.session_id,
                ai_id: seat.ai_id,
            };
            Ok((Some(seat), Some(me["role"].take())))
        }
        Err(e) => Err(e),
    }
}

/// `whoami` as the token's participant, at the hub at `url` serving its session.
pub async fn whoami(url: &str, token: Option<&str>) -> Result<Value, HubError> {
    relay(url, token, call_frame("whoami", &json!({}))).await
}

/// The seat in a `whoami` answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Seated {
    session_id: Uuid,
    ai_id: String,
}

/// The frame a `call` is relayed as.
pub fn call_frame(operation: &str, arguments: &Value) -> Value {
    json!({ "type": "call", "operation": operation, "arguments": arguments })
}

/// The frame an `ack` is relayed as.
pub fn ack_frame(up_to: i64, session_id: Option<Uuid>) -> Value {
    json!({ "type": "ack", "upTo": up_to, "sessionId": session_id })
}
