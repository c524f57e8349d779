//! JSON-RPC 2.0 framing and MCP protocol versions: the parts of the wire format that are not
//! already rmcp types.

use serde_json::{Value, json};

use crate::error::HubError;

/// Versions with the `initialize` handshake that this hub speaks, newest first.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
pub const LATEST_VERSION: &str = SUPPORTED_VERSIONS[0];

pub const PARSE_ERROR: i32 = -32700;
pub const INVALID_REQUEST: i32 = -32600;
pub const METHOD_NOT_FOUND: i32 = -32601;
pub const INVALID_PARAMS: i32 = -32602;
pub const INTERNAL_ERROR: i32 = -32603;
pub const RESOURCE_NOT_FOUND: i32 = -32002;

/// The version a client asked for if we speak it, else our newest (the client may then leave).
pub fn negotiate(requested: &str) -> &'static str {
    SUPPORTED_VERSIONS
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(LATEST_VERSION)
}

pub fn is_supported(version: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&version)
}

/// A protocol-level failure: becomes a JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    pub code: i32,
    pub message: String,
    pub data: Option<Value>,
    /// Where the request's project is served, when another hub serves it
    /// (`HubError::Elsewhere`): the transport passes the request on there (`http::hop`). Not
    /// part of the error object.
    pub served_elsewhere: Option<Box<crate::http::hop::ServedElsewhere>>,
}

impl RpcError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
            served_elsewhere: None,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut e = json!({ "code": self.code, "message": self.message });
        if let Some(d) = &self.data {
            e["data"] = d.clone();
        }
        e
    }
}

impl From<HubError> for RpcError {
    fn from(e: HubError) -> Self {
        let v = e.json_rpc();
        RpcError {
            code: v["code"].as_i64().unwrap_or(INTERNAL_ERROR as i64) as i32,
            message: e.to_string(),
            data: v.get("data").cloned(),
            served_elsewhere: match e {
                HubError::Elsewhere { url, project } => {
                    Some(Box::new(crate::http::hop::ServedElsewhere { url, project }))
                }
                _ => None,
            },
        }
    }
}

/// One incoming JSON-RPC message, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    Notification {
        method: String,
        params: Value,
    },
    /// A client's answer to a server request (we send none yet); accepted and ignored.
    Response,
}

/// Checks the envelope of one message. The error carries the id when one could be read.
pub fn classify(message: Value) -> Result<Incoming, (Value, RpcError)> {
    let Value::Object(mut m) = message else {
        return Err((
            Value::Null,
            RpcError::new(INVALID_REQUEST, "a JSON-RPC message must be an object"),
        ));
    };
    let id = m.remove("id");
    let bad_id = matches!(&id, Some(v) if !(v.is_string() || v.is_i64() || v.is_u64()));
    let reply_id = id.clone().filter(|_| !bad_id).unwrap_or(Value::Null);
    if m.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((
            reply_id,
            RpcError::new(INVALID_REQUEST, "jsonrpc must be \"2.0\""),
        ));
    }
    if bad_id {
        return Err((
            Value::Null,
            RpcError::new(INVALID_REQUEST, "id must be a string or an integer"),
        ));
    }
    match m.remove("method") {
        Some(Value::String(method)) => {
            let params = m.remove("params").unwrap_or(Value::Null);
            if !(params.is_object() || params.is_null()) {
                return Err((
                    reply_id,
                    RpcError::new(INVALID_PARAMS, "params must be an object"),
                ));
            }
            Ok(match id {
                Some(id) => Incoming::Request { id, method, params },
                None => Incoming::Notification { method, params },
            })
        }
        Some(_) => Err((
            reply_id,
            RpcError::new(INVALID_REQUEST, "method must be a string"),
        )),
        None if id.is_some() && (m.contains_key("result") || m.contains_key("error")) => {
            Ok(Incoming::Response)
        }
        None => Err((
            reply_id,
            RpcError::new(INVALID_REQUEST, "not a request, notification or response"),
        )),
    }
}

pub fn result(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

pub fn error(id: Value, err: &RpcError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": err.to_json() })
}

/// A notification; `params` is left out when null (clients validate it as an optional object).
pub fn notification(method: &str, params: Value) -> Value {
    if params.is_null() {
        json!({ "jsonrpc": "2.0", "method": method })
    } else {
        json!({ "jsonrpc": "2.0", "method": method, "params": params })
    }
}

/// Deserializes request params into an rmcp (or our own) parameter type; -32602 on mismatch.
pub fn params<T: serde::de::DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    let params = if params.is_null() { json!({}) } else { params };
    serde_json::from_value(params)
        .map_err(|e| RpcError::new(INVALID_PARAMS, format!("invalid params: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_echoes_or_counters() {
        assert_eq!(negotiate("2025-06-18"), "2025-06-18");
        assert_eq!(negotiate("2024-11-05"), LATEST_VERSION);
        assert_eq!(negotiate("2099-01-01"), LATEST_VERSION);
    }

    #[test]
    fn classifies_envelopes() {
        let r = classify(json!({"jsonrpc":"2.0","id":1,"method":"ping"})).unwrap();
        assert!(matches!(r, Incoming::Request { method, .. } if method == "ping"));
        let n = classify(json!({"jsonrpc":"2.0","method":"notifications/initialized"})).unwrap();
        assert!(matches!(n, Incoming::Notification { .. }));
        assert_eq!(
            classify(json!({"jsonrpc":"2.0","id":"a","result":{}})).unwrap(),
            Incoming::Response
        );
        let (id, e) = classify(json!({"jsonrpc":"1.0","id":3,"method":"x"})).unwrap_err();
        assert_eq!((id, e.code), (json!(3), INVALID_REQUEST));
        let (id, e) = classify(json!({"jsonrpc":"2.0","id":null,"method":"x"})).unwrap_err();
        assert_eq!((id, e.code), (Value::Null, INVALID_REQUEST));
        let (_, e) =
            classify(json!({"jsonrpc":"2.0","id":4,"method":"x","params":[1]})).unwrap_err();
        assert_eq!(e.code, INVALID_PARAMS);
        assert!(classify(json!([1])).is_err());
    }
}
