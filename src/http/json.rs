//! `JsonBody<T>`: the JSON request extractor of every REST endpoint. Unlike actix's own it
//! enforces the body limit while reading (413 without buffering more), and names the failing
//! field (`participants[1].role`) in the 400 answer.

use actix_web::dev::Payload;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::BytesMut;
use actix_web::{FromRequest, HttpRequest};
use futures::StreamExt;
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::error::HubError;

/// Largest accepted request body, in bytes (app data).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = HubError;
    type Future = LocalBoxFuture<'static, Result<Self, HubError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<BodyLimit>().map_or(1024 * 1024, |l| l.0);
        let early = check_headers(req, limit);
        let payload = payload.take();
        Box::pin(async move {
            early?;
            let body = read_body(payload, limit).await?;
            parse(&body).map(JsonBody)
        })
    }
}

/// Reads a whole request body, refusing (413) as soon as it passes `limit` bytes.
pub async fn read_body(mut payload: Payload, limit: usize) -> Result<BytesMut, HubError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| HubError::Invalid {
            code: "unreadable_body",
            message: format!("could not read the request body: {e}"),
            field: None,
        })?;
        if body.len() + chunk.len() > limit {
            return Err(HubError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn check_headers(req: &HttpRequest, limit: usize) -> Result<(), HubError> {
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let mime = ct.split(';').next().unwrap_or("").trim();
        if mime != "application/json" && !mime.ends_with("+json") {
            return Err(HubError::UnsupportedMediaType(format!(
                "expected Content-Type: application/json, got {mime:?}"
            )));
        }
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(HubError::PayloadTooLarge { limit });
    }
    Ok(())
}

/// Deserializes `body` into `T`, turning serde's complaint into a 400 that names the field.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, HubError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(HubError::Invalid {
            code: "invalid_json",
            message: "request body is empty; expected a JSON object".into(),
            field: None,
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
    de.end().map_err(|e| HubError::Invalid {
        code: "invalid_json",
        message: format!("malformed JSON: {e}"),
        field: None,
    })?;
    Ok(value)
}

fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> HubError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    if inner.is_syntax() || inner.is_eof() || inner.is_io() {
        return HubError::Invalid {
            code: "invalid_json",
            message: format!("malformed JSON: {inner}"),
            field: None,
        };
    }
    let message = inner.to_string();
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
    let message = strip_position(&message);
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

/// serde_json appends " at line 1 column 42" even to data errors; the field name says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        role: String,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        items: Vec<Inner>,
    }

    fn err(body: &str) -> HubError {
        parse::<Outer>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn names_missing_and_wrong_fields() {
        let e = err(r#"{"items": []}"#);
        assert_eq!(e.field(), Some("name"));
        assert_eq!(e.code(), "missing_field");
        let e = err(r#"{"name": "x", "items": [{"role": "a"}, {}]}"#);
        assert_eq!(e.field(), Some("items[1].role"));
        let e = err(r#"{"name": 5, "items": []}"#);
        assert_eq!(e.field(), Some("name"));
        assert_eq!(e.code(), "invalid_field");
    }

    #[test]
    fn syntax_and_empty() {
        assert_eq!(err("{").code(), "invalid_json");
        assert_eq!(err("").code(), "invalid_json");
        assert_eq!(
            err(r#"{"name":"x","items":[]} trailing"#).code(),
            "invalid_json"
        );
        assert!(
            err(r#"{"name":"x","items":[],"extra":1}"#)
                .to_string()
                .contains("extra")
        );
    }
}
