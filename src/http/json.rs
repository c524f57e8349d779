//! `JsonBody<T>`: the JSON request extractor of every REST endpoint. Unlike actix's own it
//! enforces the body limit while reading (413 without buffering more), and names the failing
//! field (`participants[1].role`) in the 400 answer.

use actix_web::dev::Payload;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::BytesMut;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures::StreamExt;
use futures::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use crate::error::HubError;

/// Request body rules (app data): the largest accepted body in bytes, and how long the whole
/// body may take to arrive once the headers are in. A client that stalls mid-body gets 408 and
/// its connection back, instead of holding a worker's connection open forever.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    pub bytes: usize,
    pub timeout: std::time::Duration,
}

impl Default for BodyLimit {
    fn default() -> Self {
        BodyLimit {
            bytes: 1024 * 1024,
            timeout: std::time::Duration::from_secs(10),
        }
    }
}

impl BodyLimit {
    /// The rules in force for `req`.
    pub fn of(req: &HttpRequest) -> BodyLimit {
        req.app_data::<BodyLimit>().copied().unwrap_or_default()
    }
}

pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = HubError;
    type Future = LocalBoxFuture<'static, Result<Self, HubError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = BodyLimit::of(req);
        let early = check_headers(req, limit.bytes);
        let payload = payload.take();
        let req = req.clone();
        Box::pin(async move {
            early?;
            let body = read_body(payload, limit).await?.freeze();
            // Kept for the hub serving the request's project, if it is another (`hop`).
            req.extensions_mut()
                .insert(super::hop::ReadBody(body.clone()));
            parse(&body).map(JsonBody)
        })
    }
}

/// Reads a whole request body, refusing (413) as soon as it passes the byte limit and (408)
/// when it has not all arrived within the time limit.
pub async fn read_body(payload: Payload, limit: BodyLimit) -> Result<BytesMut, HubError> {
    let secs = limit.timeout.as_secs_f64();
    tokio::time::timeout(limit.timeout, read_all(payload, limit.bytes))
        .await
        .unwrap_or_else(|_| {
            Err(HubError::RequestTimeout(format!(
                "the request body did not arrive within {secs} s"
            )))
        })
}

async fn read_all(mut payload: Payload, limit: usize) -> Result<BytesMut, HubError> {
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

/// Deserializes `body` into `T`, turning serde's complaint into a 400 that names the field
/// (the same answer every surface gives: see [`crate::api::parse`]).
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, HubError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(HubError::Invalid {
            code: "invalid_json",
            message: "request body is empty; expected a JSON object".into(),
            field: None,
        });
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| HubError::Invalid {
        code: "invalid_json",
        message: format!("malformed JSON: {e}"),
        field: None,
    })?;
    crate::api::parse(value)
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
