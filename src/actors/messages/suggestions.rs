//! Suggestions: submit, resolve, list.

#[allow(unused_imports)]
use super::imports::*;

/// Propose a change for the driver to accept or reject.
#[derive(Debug, Message)]
#[rtype(result = "Result<SuggestionSubmitted, HubError>")]
pub struct SubmitSuggestion {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub spec: ChangeSpec,
    pub task_id: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuggestionSubmitted {
    pub id: i64,
    pub lines: Vec<(u32, u32)>,
}

/// The driver (or the operator) accepts (it becomes a change attributed to both) or rejects.
#[derive(Debug, Message)]
#[rtype(result = "Result<SuggestionResolved, HubError>")]
pub struct ResolveSuggestion {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub id: i64,
    pub accept: bool,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SuggestionResolved {
    pub event_id: i64,
    /// Accepted: the change record it became.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_id: Option<i64>,
}

#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<SuggestionView>, HubError>")]
pub struct ListSuggestions {
    pub credential: Credential,
    pub pending_only: bool,
    pub limit: i64,
}
