//! Validation of the names people and agents choose: participant ids and session names.

use super::DomainError;

/// Longest participant id we accept; ids appear in every event, keep them short.
pub const MAX_AI_ID_LEN: usize = 64;
/// Longest session name.
pub const MAX_SESSION_NAME_LEN: usize = 200;

/// A participant id such as `claude`, `gemini-2`, `human:alice`.
///
/// Allowed: ASCII letters, digits and `- _ . : @`, starting with a letter or digit. The set is
/// narrow on purpose: ids end up in URLs (`/mcp/context/notes/:aiId`), log lines and prompts.
pub fn validate_ai_id(field: &'static str, id: &str) -> Result<(), DomainError> {
    if id.is_empty() {
        return Err(DomainError::invalid(
            field,
            "participant id must not be empty",
        ));
    }
    if id.len() > MAX_AI_ID_LEN {
        return Err(DomainError::invalid(
            field,
            format!("participant id is longer than {MAX_AI_ID_LEN} characters"),
        ));
    }
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'));
    if !first_ok || !rest_ok {
        return Err(DomainError::invalid(
            field,
            format!(
                "participant id {id:?} may hold only letters, digits and - _ . : @, starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// A session name: non-blank, bounded, no control characters.
pub fn validate_session_name(name: &str) -> Result<(), DomainError> {
    if name.trim().is_empty() {
        return Err(DomainError::invalid(
            "name",
            "session name must not be blank",
        ));
    }
    if name.chars().count() > MAX_SESSION_NAME_LEN {
        return Err(DomainError::invalid(
            "name",
            format!("session name is longer than {MAX_SESSION_NAME_LEN} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "name",
            "session name must not contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_common_ids() {
        for id in ["claude", "gemini-2", "human:alice", "cursor_1", "a.b@c"] {
            assert!(validate_ai_id("aiId", id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_bad_ids() {
        for id in ["", " claude", "-x", "a/b", "a b", "ü", &"x".repeat(65)] {
            let err = validate_ai_id("aiId", id).unwrap_err();
            assert!(
                matches!(err, DomainError::Invalid { field: "aiId", .. }),
                "{id}"
            );
        }
    }

    #[test]
    fn session_names() {
        assert!(validate_session_name("Feature: Payment Integration").is_ok());
        assert!(validate_session_name("   ").is_err());
        assert!(validate_session_name("a\nb").is_err());
        assert!(validate_session_name(&"n".repeat(201)).is_err());
    }
}
