//! One request type per operation, used by every transport.
//!
//! Each operation is a `Deserialize + JsonSchema` type (camelCase, unknown fields refused) that
//! accepts the concept's shapes as well as ours, holds its defaults and limits, and turns itself
//! into one typed actor message ([`Operation::run`]). The MCP tools and the REST routes are
//! generic adapters over these types (`mcp::tools::op`, `http::operation`): a route or a tool is
//! a name, a description and the type. A feature therefore exists once; the parity test
//! (`tests/api/parity.rs`) keeps the surfaces equal.
//!
//! Addressing is the same everywhere: `sessionId` names the session (default: the caller's own,
//! from its MCP binding or bearer token) and `aiId` the participant an operator acts for (a
//! participant may only name itself). Both are hidden from the MCP tool schemas, where the
//! binding says it already, but accepted there too.

pub mod batch;
pub mod context;
pub mod coordination;
pub mod disputes;
pub mod events;
pub mod evolution;
pub mod export;
pub mod locks;
pub mod messaging;
pub mod notes;
pub mod over_time;
pub mod sessions;
pub mod shapes;
pub mod suggestions;
pub mod tasks;

use actix::Addr;
use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::actors::Hub;
use crate::actors::hub::{Identify, Identity};
use crate::actors::messages::{ToSession, ToSessionReporting};
use crate::actors::session::{Keyed, SessionActor};
use crate::domain::auth::Credential;
use crate::error::HubError;

/// Who is calling, as the transport established it.
#[derive(Clone)]
pub struct Call {
    pub hub: Addr<Hub>,
    /// Presented on every actor message; the session actor decides what it may do.
    pub credential: Credential,
    /// The participant this caller already acts as (an MCP session's binding), if known.
    pub seat: Option<Seat>,
    /// Where to leave the seat's unacknowledged critical events, fetched in the same trip as
    /// the command (MCP puts them on top of the tool result).
    pub critical: Option<CriticalSlot>,
    /// The request's key (`REQUEST_KEY`), if it came with one: the first command sent carries
    /// it, so that a second send of the same request is answered `already_applied`.
    pub request_key: KeySlot,
}

/// A header a hub puts on each write it passes on to the hub serving its project (a random
/// UUID, `http::hop`): when that hub dies before answering, the write is sent again with the
/// same key (to it, or run where the project is served next), and a write whose key is on
/// record is not applied again (`actors::session::Keyed`). A client may send one of its own,
/// to the same effect.
pub const REQUEST_KEY: &str = "x-collab-hub-request";

/// Put by a hub on a keyed write it sends again after a loss: the hub serving it looks the key
/// up before running the command. On the first send of a hub's key (marked `http::hop::HOP`)
/// nothing can be on record, so it skips that read (a client's own key is always looked up:
/// it may be sending again).
pub const RESENT: &str = "x-collab-hub-resent";

/// A request's key, as its command carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestKey {
    pub id: Uuid,
    /// It may have been applied already: look it up before running the command. (Without
    /// the lookup a second send is still caught when its write records the key, but only
    /// after the command's checks, which may answer something else first.)
    pub maybe_sent: bool,
}

/// A request's key, taken by the first command it sends.
pub type KeySlot = std::rc::Rc<std::cell::Cell<Option<RequestKey>>>;

/// The key `headers` carry, if any; one that is not a UUID is refused.
pub fn request_key(
    headers: &actix_web::http::header::HeaderMap,
) -> Result<Option<RequestKey>, HubError> {
    let Some(value) = headers.get(REQUEST_KEY) else {
        return Ok(None);
    };
    let id = value
        .to_str()
        .ok()
        .and_then(|t| Uuid::parse_str(t.trim()).ok())
        .ok_or_else(|| HubError::invalid(REQUEST_KEY, format!("{REQUEST_KEY} must be a UUID")))?;
    let first_send = headers.contains_key(crate::http::hop::HOP) && !headers.contains_key(RESENT);
    Ok(Some(RequestKey {
        id,
        maybe_sent: !first_send,
    }))
}

/// What waits for the caller, as a command's trip brought it back.
pub type CriticalSlot = std::rc::Rc<std::cell::RefCell<Option<crate::domain::digest::Pending>>>;

/// A participant of a session.
#[derive(Debug, Clone, PartialEq)]
pub struct Seat {
    pub session_id: Uuid,
    pub ai_id: String,
}

impl Call {
    /// The session a request is about: the one it names, or the caller's own.
    pub async fn session(&self, named: Option<Uuid>) -> Result<Uuid, HubError> {
        match (named, &self.seat) {
            (Some(named), Some(seat)) if named != seat.session_id => Err(HubError::invalid(
                "sessionId",
                format!(
                    "you act in session {}; sessionId names another (open another MCP session for it)",
                    seat.session_id
                ),
            )),
            (Some(named), _) => Ok(named),
            (None, Some(seat)) => Ok(seat.session_id),
            (None, None) => Ok(self.identify().await?.session_id),
        }
    }

    /// `refused`, or `already_applied` if this request's key may have been sent before and is
    /// on record (in `session`, when the request names one): a write sent again after it ended
    /// the sender's seat (leaving) is refused the sender's token, but the write it asked for
    /// was done.
    pub async fn unless_applied(&self, refused: HubError, session: Option<Uuid>) -> HubError {
        let Some(key) = self.request_key.get().filter(|k| k.maybe_sent) else {
            return refused;
        };
        match self.hub.send(crate::actors::hub::FindApplied(key.id)).await {
            Ok(Ok(Some(applied))) if session.is_none_or(|s| s == applied.session) => {
                applied.error()
            }
            _ => refused,
        }
    }

    /// The participant the caller is: its seat, or the one its bearer token belongs to.
    pub async fn identify(&self) -> Result<Seat, HubError> {
        if let Some(seat) = &self.seat {
            return Ok(seat.clone());
        }
        match self.hub.send(Identify(self.credential.clone())).await?? {
            Identity::Participant { session_id, ai_id } => Ok(Seat { session_id, ai_id }),
            Identity::Operator => Err(HubError::invalid(
                "sessionId",
                "sessionId is required (or send a participant's bearer token)",
            )),
        }
    }

    /// Sends `command` to the actor of `session_id`.
    pub async fn send<M, R>(&self, session_id: Uuid, command: M) -> Result<R, HubError>
    where
        M: actix::Message<Result = Result<R, HubError>> + Send + 'static,
        R: Send + 'static,
        SessionActor: actix::Handler<M>,
    {
        match self.request_key.take() {
            Some(key) => {
                let credential = self.credential.clone();
                let keyed = Keyed {
                    key,
                    command,
                    credential,
                };
                self.send_as::<Keyed<M>, R>(session_id, keyed).await
            }
            None => self.send_as(session_id, command).await,
        }
    }

    async fn send_as<M, R>(&self, session_id: Uuid, command: M) -> Result<R, HubError>
    where
        M: actix::Message<Result = Result<R, HubError>> + Send + 'static,
        R: Send + 'static,
        SessionActor: actix::Handler<M>,
    {
        if let (Some(slot), Some(seat)) = (&self.critical, &self.seat)
            && seat.session_id == session_id
        {
            let (reply, pending) = self
                .hub
                .send(ToSessionReporting {
                    session_id,
                    command,
                    critical_for: seat.ai_id.clone(),
                })
                .await?;
            *slot.borrow_mut() = Some(pending);
            return reply;
        }
        self.hub
            .send(ToSession {
                session_id,
                command,
            })
            .await?
    }
}

/// One operation of the hub, the same on every surface.
pub trait Operation: DeserializeOwned + JsonSchema + 'static {
    type Output: Serialize + 'static;

    /// Checks what the types could not and sends the one actor message.
    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Self::Output, HubError>>;
}

/// An operation as a function of JSON: what the MCP tools and the WebSocket `call` frame run.
pub type OpFn =
    fn(Call, serde_json::Value) -> LocalBoxFuture<'static, Result<serde_json::Value, HubError>>;

/// Parses `raw` (absent arguments read as `{}`) as `O`, runs it and answers with its output.
pub fn run_json<O: Operation>(
    call: Call,
    raw: serde_json::Value,
) -> LocalBoxFuture<'static, Result<serde_json::Value, HubError>> {
    Box::pin(async move {
        let raw = if raw.is_null() {
            serde_json::json!({})
        } else {
            raw
        };
        let out = parse::<O>(raw)?.run(call).await?;
        serde_json::to_value(&out).map_err(|e| HubError::Internal(format!("answer not JSON: {e}")))
    })
}

/// Reads a request from JSON, with a 400 that names the failing field (`participants[1].role`,
/// `missing_field` for an absent one). Every transport parses through here, so one bad argument
/// gets one answer on every surface.
pub fn parse<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, HubError> {
    serde_path_to_error::deserialize(value).map_err(field_error)
}

fn field_error(err: serde_path_to_error::Error<serde_json::Error>) -> HubError {
    let path = err.path().to_string();
    let message = err.into_inner().to_string();
    // "missing field `role`" is reported at the parent's path; name the field itself.
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let field = match (path.as_str(), missing) {
        (".", Some(name)) => name.to_owned(),
        (parent, Some(name)) => format!("{parent}.{name}"),
        (".", None) => String::new(),
        (p, None) => p.to_owned(),
    };
    let code = if missing.is_some() {
        "missing_field"
    } else {
        "invalid_field"
    };
    // serde_json appends " at line 1 column 42" even to data errors; the field name says more.
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    };
    HubError::Invalid {
        code,
        message: if field.is_empty() {
            message
        } else {
            format!("{field}: {message}")
        },
        field: (!field.is_empty()).then_some(field),
    }
}
