//! Working over time: resume with a briefing, save a snapshot.

#[allow(unused_imports)]
use super::imports::*;
use crate::domain::briefing::{Briefing, Strategy};

/// Brief a participant coming back: the context and what happened while it was away.
#[derive(Debug, Message)]
#[rtype(result = "Result<Resumed, HubError>")]
pub struct Resume {
    pub credential: Credential,
    /// Who is briefed (the operator names anyone; a participant only itself).
    pub ai_id: Option<String>,
    /// Default: from the time away.
    pub strategy: Option<Strategy>,
    pub max_tokens: Option<usize>,
    /// Messages listed (default: the strategy's).
    pub load_messages: Option<i64>,
    pub include_context: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Resumed {
    pub session_id: Uuid,
    pub participant: String,
    pub role: Role,
    /// The shared context as it stands (omitted when it would not fit `maxTokens`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Value>,
    /// Why the context is missing, and its size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_omitted: Option<String>,
    pub briefing: Briefing,
}

/// Snapshot the whole session now (`session_save`).
#[derive(Debug, Message)]
#[rtype(result = "Result<Saved, HubError>")]
pub struct SaveSession {
    pub credential: Credential,
    pub trigger: crate::domain::snapshot::Trigger,
    pub includes: crate::domain::snapshot::Includes,
}

pub type Saved = crate::store::snapshots::Stored;
