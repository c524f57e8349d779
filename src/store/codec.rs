//! How values are stored: JSON text, zstd-compressed above a threshold. Context snapshots are
//! binary columns; event payloads (which carry context values) are text columns, so a large one
//! is stored as `zstd:` + base64 of the compressed JSON. JSON text never starts with `z`, so
//! the two cannot be confused.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::HubError;

/// Snapshots larger than this are stored zstd-compressed.
pub const COMPRESS_ABOVE: usize = 64 * 1024;

/// A snapshot as stored: plain JSON, or zstd-compressed JSON above `COMPRESS_ABOVE`.
pub fn encode_snapshot(value: &serde_json::Value) -> Result<(&'static str, Vec<u8>), HubError> {
    let json = value.to_string().into_bytes();
    if json.len() <= COMPRESS_ABOVE {
        return Ok(("json", json));
    }
    zstd::bulk::compress(&json, 3)
        .map(|z| ("zstd", z))
        .map_err(|e| HubError::Internal(format!("cannot compress a context snapshot: {e}")))
}

pub fn decode_snapshot(encoding: &str, bytes: &[u8]) -> Result<serde_json::Value, HubError> {
    // Bounded: a context is at most MAX_CONTEXT_BYTES (plus its versions).
    decode_bounded(
        encoding,
        bytes,
        4 * crate::domain::context::MAX_CONTEXT_BYTES,
    )
}

/// A stored snapshot whose JSON may be up to `max` bytes.
pub fn decode_bounded(
    encoding: &str,
    bytes: &[u8],
    max: usize,
) -> Result<serde_json::Value, HubError> {
    let unreadable =
        |why: String| HubError::Internal(format!("stored context snapshot is unreadable: {why}"));
    let json = match encoding {
        "json" => bytes.to_vec(),
        "zstd" => zstd::bulk::decompress(bytes, max).map_err(|e| unreadable(e.to_string()))?,
        other => return Err(unreadable(format!("unknown encoding {other:?}"))),
    };
    serde_json::from_slice(&json).map_err(|e| unreadable(e.to_string()))
}

/// Prefix of a compressed event payload.
const ZSTD_PREFIX: &str = "zstd:";

/// An event payload as stored.
pub fn encode_payload(value: &serde_json::Value) -> Result<String, HubError> {
    let json = value.to_string();
    if json.len() <= COMPRESS_ABOVE {
        return Ok(json);
    }
    let z = zstd::bulk::compress(json.as_bytes(), 3)
        .map_err(|e| HubError::Internal(format!("cannot compress an event: {e}")))?;
    let encoded = format!("{ZSTD_PREFIX}{}", STANDARD.encode(z));
    // Incompressible data stays plain: base64 would only make it larger.
    Ok(if encoded.len() < json.len() {
        encoded
    } else {
        json
    })
}

/// The stored payload's length as the databases' `LENGTH()` counts it (characters of the
/// stored text), for the activity index to count what a load would count.
pub fn stored_length(value: &serde_json::Value) -> i64 {
    encode_payload(value).map_or(0, |t| t.chars().count() as i64)
}

pub fn decode_payload(stored: &str) -> Result<serde_json::Value, String> {
    match stored.strip_prefix(ZSTD_PREFIX) {
        None => serde_json::from_str(stored).map_err(|e| e.to_string()),
        Some(b64) => {
            let z = STANDARD.decode(b64).map_err(|e| e.to_string())?;
            let json = zstd::stream::decode_all(z.as_slice()).map_err(|e| e.to_string())?;
            serde_json::from_slice(&json).map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snapshots_compress_only_when_large() {
        let small = json!({"doc": {"a": 1}, "versions": {}});
        let (enc, bytes) = encode_snapshot(&small).unwrap();
        assert_eq!(enc, "json");
        assert_eq!(decode_snapshot(enc, &bytes).unwrap(), small);
        let large = json!({"doc": {"text": "abc ".repeat(40_000)}, "versions": {"text": 3}});
        let (enc, bytes) = encode_snapshot(&large).unwrap();
        assert_eq!(enc, "zstd");
        assert!(bytes.len() < COMPRESS_ABOVE / 4, "{} bytes", bytes.len());
        assert_eq!(decode_snapshot(enc, &bytes).unwrap(), large);
        assert!(decode_snapshot("zstd", b"not zstd").is_err());
        assert!(decode_snapshot("gzip", b"{}").is_err());
    }

    #[test]
    fn large_event_payloads_are_compressed_text() {
        let small = json!({"changes": [{"path": "a", "new": 1}]});
        assert_eq!(encode_payload(&small).unwrap(), small.to_string());
        let large = json!({"changes": [{"path": "a", "new": "abc ".repeat(40_000)}]});
        let stored = encode_payload(&large).unwrap();
        assert!(
            stored.starts_with("zstd:") && stored.len() < COMPRESS_ABOVE / 4,
            "{}",
            stored.len()
        );
        assert_eq!(decode_payload(&stored).unwrap(), large);
        assert!(decode_payload("zstd:!!!").is_err());
    }
}
