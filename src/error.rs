//! One error type for the whole hub. It knows how to become an HTTP answer (status + JSON body),
//! a JSON-RPC error object (MCP) and a WebSocket error frame, so every surface reports the same
//! failure the same way.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{Value, json};
use thiserror::Error;

use crate::domain::DomainError;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum HubError {
    /// The request is malformed or a value is out of range. `field` names the culprit when known.
    #[error("{message}")]
    Invalid {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    #[error("{message}")]
    NotFound { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A request sent again with its key (`api::REQUEST_KEY`) after it was applied: the events
    /// it committed, as the caller may see them, stand in for its lost answer.
    #[error("{message}")]
    AlreadyApplied { message: String, events: Vec<Value> },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A code write refused by the session's rules: says who drives and what to do instead.
    #[error("{message}")]
    WriteDenied {
        message: String,
        current_driver: Option<String>,
    },
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    NotAcceptable(String),
    /// The hub cannot serve this now (store overloaded, database down, shutting down). Retryable.
    #[error("{0}")]
    Unavailable(String),
    /// The session's project is served by another live hub now, at `url` (answered like
    /// `Unavailable`: retryable, the url is not shown). Where a request may go on elsewhere
    /// (a viewer following the session through the event tail), it does.
    #[error("project {project} is served by another hub right now; retry")]
    Elsewhere { project: String, url: String },
    /// What the hub serving the session answered a request passed on to it (a WebSocket
    /// client's command on a session another hub serves): its status and its error object,
    /// passed on as it said them.
    #[error("{}", .error["message"].as_str().unwrap_or("refused by the hub serving the session"))]
    Relayed { status: u16, error: Value },
    /// The request body did not arrive in time (a stalled or trickling client).
    #[error("{0}")]
    RequestTimeout(String),
    /// The caller is over a rate limit; retry after the given time.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    /// A bug or an unexpected failure. The message is safe to show; details go to the log.
    #[error("{0}")]
    Internal(String),
}

impl HubError {
    /// The same error, said of the `i`th operation of a batch (`operations[i]`).
    pub fn in_operation(self, i: usize) -> HubError {
        let at = format!("operations[{i}]");
        match self {
            HubError::Invalid {
                code,
                message,
                field,
            } => HubError::Invalid {
                code,
                message: format!("{at}: {message}"),
                field: Some(match field {
                    Some(f) if !f.is_empty() => format!("{at}.{f}"),
                    _ => at,
                }),
            },
            HubError::NotFound { code, message } => HubError::NotFound {
                code,
                message: format!("{at}: {message}"),
            },
            HubError::Conflict { code, message } => HubError::Conflict {
                code,
                message: format!("{at}: {message}"),
            },
            HubError::Forbidden(m) => HubError::Forbidden(format!("{at}: {m}")),
            other => other,
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        HubError::Invalid {
            code: "invalid_field",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn session_not_found(id: impl std::fmt::Display) -> Self {
        HubError::NotFound {
            code: "session_not_found",
            message: format!("no session with id {id}"),
        }
    }

    /// Machine-readable code, stable across releases.
    pub fn code(&self) -> &'static str {
        match self {
            HubError::Invalid { code, .. }
            | HubError::NotFound { code, .. }
            | HubError::Conflict { code, .. } => code,
            HubError::AlreadyApplied { .. } => "already_applied",
            HubError::Unauthorized(_) => "unauthorized",
            HubError::Forbidden(_) => "forbidden",
            HubError::WriteDenied { .. } => "write_permission_denied",
            HubError::PayloadTooLarge { .. } => "payload_too_large",
            HubError::UnsupportedMediaType(_) => "unsupported_media_type",
            HubError::MethodNotAllowed(_) => "method_not_allowed",
            HubError::NotAcceptable(_) => "not_acceptable",
            HubError::Unavailable(_) | HubError::Elsewhere { .. } => "unavailable",
            // The object itself is passed on (`body`).
            HubError::Relayed { .. } => "relayed",
            HubError::RateLimited { .. } => "rate_limited",
            HubError::RequestTimeout(_) => "request_timeout",
            HubError::Internal(_) => "internal",
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            HubError::Invalid { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            HubError::Invalid { .. } => StatusCode::BAD_REQUEST,
            HubError::NotFound { .. } => StatusCode::NOT_FOUND,
            HubError::Conflict { .. } | HubError::AlreadyApplied { .. } => StatusCode::CONFLICT,
            HubError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HubError::Forbidden(_) | HubError::WriteDenied { .. } => StatusCode::FORBIDDEN,
            HubError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HubError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HubError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            HubError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            HubError::Unavailable(_) | HubError::Elsewhere { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            HubError::Relayed { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            HubError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            HubError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            HubError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// `{"code", "message", "field"?}`: the inner object of every error answer.
    pub fn body(&self) -> Value {
        if let HubError::Relayed { error, .. } = self {
            return error.clone();
        }
        let mut body = json!({ "code": self.code(), "message": self.to_string() });
        if let Some(field) = self.field() {
            body["field"] = json!(field);
        }
        if let HubError::RateLimited {
            retry_after_secs, ..
        } = self
        {
            body["retryAfterSecs"] = json!(retry_after_secs);
        }
        if let HubError::AlreadyApplied { events, .. } = self
            && !events.is_empty()
        {
            body["events"] = json!(events);
        }
        // The concept's shape: who drives, and what to do instead.
        if let HubError::WriteDenied { current_driver, .. } = self {
            body["currentDriver"] = json!(current_driver);
            body["suggestion"] = json!("Request driver role or submit as suggestion");
        }
        body
    }

    /// JSON-RPC 2.0 error object. Bad parameters are -32602, a missing resource -32002 (MCP),
    /// internal failures -32603; refusals the caller can act on (conflict, permission) are
    /// server errors in the -32000 range carrying the same `code` string in `data`.
    pub fn json_rpc(&self) -> Value {
        let code = match self {
            HubError::Invalid { .. } | HubError::PayloadTooLarge { .. } => -32602,
            HubError::NotFound { .. } => -32002,
            HubError::Internal(_) => -32603,
            HubError::Unauthorized(_) | HubError::Forbidden(_) | HubError::WriteDenied { .. } => {
                -32001
            }
            HubError::Conflict { .. } | HubError::AlreadyApplied { .. } => -32003,
            HubError::UnsupportedMediaType(_) => -32600,
            HubError::MethodNotAllowed(_) => -32601,
            HubError::NotAcceptable(_) => -32600,
            HubError::Unavailable(_)
            | HubError::Elsewhere { .. }
            | HubError::Relayed { .. }
            | HubError::RateLimited { .. }
            | HubError::RequestTimeout(_) => -32000,
        };
        json!({ "code": code, "message": self.to_string(), "data": self.body() })
    }

    /// WebSocket frame for a failed client frame: a `reply` echoing the frame's id, or an
    /// `error` frame when the frame could not be read far enough to have one.
    pub fn ws_frame(&self, request_id: Option<&Value>) -> Value {
        match request_id {
            Some(id) => json!({ "type": "reply", "id": id, "error": self.body() }),
            None => json!({ "type": "error", "error": self.body() }),
        }
    }
}

impl ResponseError for HubError {
    fn status_code(&self) -> StatusCode {
        self.http_status()
    }

    fn error_response(&self) -> HttpResponse {
        if matches!(self, HubError::Internal(_)) {
            log::error!("internal error: {self}");
        }
        let mut answer = HttpResponse::build(self.http_status());
        if let HubError::RateLimited {
            retry_after_secs, ..
        } = self
        {
            answer.insert_header(("retry-after", retry_after_secs.to_string()));
        }
        let mut answer = answer.json(json!({ "error": self.body() }));
        if let HubError::Elsewhere { url, project } = self {
            // Where the serving app's middleware sends the request (`http::hop`).
            answer
                .extensions_mut()
                .insert(crate::http::hop::ServedElsewhere {
                    url: url.clone(),
                    project: project.clone(),
                });
        }
        answer
    }
}

impl From<DomainError> for HubError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid { field, message } => HubError::Invalid {
                code: "invalid_field",
                message,
                field: Some(field.to_owned()),
            },
            DomainError::Conflict { code, message } => HubError::Conflict { code, message },
            DomainError::NotFound(message) => HubError::NotFound {
                code: "participant_not_found",
                message,
            },
            DomainError::Unauthorized(m) => HubError::Unauthorized(m),
            DomainError::Forbidden(m) => HubError::Forbidden(m),
            DomainError::WriteDenied {
                message,
                current_driver,
            } => HubError::WriteDenied {
                message,
                current_driver,
            },
        }
    }
}

impl From<diesel::result::Error> for HubError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match &e {
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => HubError::Conflict {
                code: "already_exists",
                message: "a record with this key already exists".into(),
            },
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
            | Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
                HubError::Unavailable(format!("database unavailable, retry: {e}"))
            }
            _ => {
                log::error!("database error: {e}");
                HubError::Unavailable(
                    "the database failed this write; nothing was changed, retry".into(),
                )
            }
        }
    }
}

impl From<actix::MailboxError> for HubError {
    fn from(e: actix::MailboxError) -> Self {
        HubError::Unavailable(format!("the hub is shutting down or overloaded: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_names_field_only_when_known() {
        let e = HubError::invalid("participants[0].role", "unknown role");
        assert_eq!(e.http_status(), StatusCode::BAD_REQUEST);
        assert_eq!(e.body()["field"], "participants[0].role");
        let e = HubError::session_not_found("x");
        assert_eq!(e.http_status(), StatusCode::NOT_FOUND);
        assert!(e.body().get("field").is_none());
        assert_eq!(e.json_rpc()["code"], -32002);
        assert_eq!(e.ws_frame(Some(&json!(7)))["id"], 7);
    }

    #[test]
    fn domain_errors_map_to_statuses() {
        let c: HubError = DomainError::conflict("driver_taken", "x").into();
        assert_eq!(c.http_status(), StatusCode::CONFLICT);
        assert_eq!(c.code(), "driver_taken");
        let f: HubError = DomainError::Forbidden("no".into()).into();
        assert_eq!(f.http_status(), StatusCode::FORBIDDEN);
    }
}
