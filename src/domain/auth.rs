//! Bearer tokens and who a request speaks for.
//!
//! Tokens are shown once (on create/join) and stored only as SHA-256 digests, so a copy of the
//! database does not let anyone act as a participant.

use sha2::{Digest, Sha256};

/// Prefix that makes a leaked token recognisable to secret scanners.
pub const TOKEN_PREFIX: &str = "chp_";

/// A fresh bearer token: 244 random bits from the OS generator (two v4 UUIDs), hex encoded.
pub fn new_token() -> String {
    format!(
        "{TOKEN_PREFIX}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The digest that is stored and compared: lowercase hex SHA-256 of the token.
pub fn token_digest(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Compares two digests without stopping at the first difference.
pub fn digests_match(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What a request brings to prove who it is, already reduced to a digest by the transport.
/// Serialized only into the hub's own `mcp_sessions` rows (a digest, never a token).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Credential {
    /// No `Authorization` header.
    None,
    /// `Authorization: Bearer <token>`, digested.
    Bearer(String),
    /// The operator, acting as one participant: an MCP session that the operator (on loopback,
    /// or with the operator token) bound to a participant already listed in the session
    /// (`session_join` without a token). Made only by the MCP registry after the session actor
    /// accepted that bind; no transport builds it from request input.
    OperatorAs { session: uuid::Uuid, ai_id: String },
}

/// Who a command speaks for, once the session has checked the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A participant of this session, proven by its token.
    Participant(String),
    /// Someone on the hub's own machine without a token (only when the hub listens on loopback),
    /// or the holder of the operator token. May act for any participant, as the concept's plain
    /// HTTP examples do.
    Operator,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_prefixed_and_long() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
    }

    #[test]
    fn digest_is_stable_hex() {
        let d = token_digest("chp_x");
        assert_eq!(d.len(), 64);
        assert_eq!(d, token_digest("chp_x"));
        assert_ne!(d, token_digest("chp_y"));
        assert!(digests_match(&d, &token_digest("chp_x")));
        assert!(!digests_match(&d, &token_digest("chp_y")));
        // Known vector: SHA-256("abc").
        assert_eq!(
            token_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
