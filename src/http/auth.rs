//! Reads `Authorization: Bearer …` into a `Credential` (already digested: the token itself goes
//! no further than this module, but for a WebSocket connection, which keeps it to act as its
//! caller at the hub serving a session held elsewhere: `ws::relay`).

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{FromRequest, HttpRequest};

use crate::domain::auth::{Credential, token_digest};
use crate::error::HubError;

pub struct Auth(pub Credential);

impl FromRequest for Auth {
    type Error = HubError;
    type Future = Ready<Result<Self, HubError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(credential(req).map(Auth))
    }
}

/// The request's bearer token as it came, if it came well formed.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The request's credential; a malformed `Authorization` header is a 401.
pub fn credential(req: &HttpRequest) -> Result<Credential, HubError> {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return Ok(Credential::None);
    };
    let value = value
        .to_str()
        .map_err(|_| HubError::Unauthorized("Authorization header is not ASCII".into()))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(HubError::Unauthorized(
            "Authorization must be \"Bearer <token>\"".into(),
        ));
    }
    Ok(Credential::Bearer(token_digest(token)))
}
