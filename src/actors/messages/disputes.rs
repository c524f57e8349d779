//! Disputes: raise, resolve, vote, list (`domain::dispute`).

#[allow(unused_imports)]
use super::imports::*;

use crate::domain::dispute::{Dispute, Outcome, Raise};
use crate::domain::genome::ConflictResolution;

/// The driver or a navigator disputes a review, a suggestion or a change.
#[derive(Debug, Message)]
#[rtype(result = "Result<DisputeRaised, HubError>")]
pub struct RaiseDispute {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub raise: Raise,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DisputeRaised {
    pub dispute_id: i64,
    pub event_id: i64,
    /// The session's rule: who settles it.
    pub settled_by: ConflictResolution,
    /// Who may settle it now (consensus: who may vote).
    pub settlers: Vec<String>,
}

/// Whoever the session's rule names (or the operator) settles a dispute.
#[derive(Debug, Message)]
#[rtype(result = "Result<DisputeSettled, HubError>")]
pub struct ResolveDispute {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub dispute_id: i64,
    pub outcome: Outcome,
    pub note: Option<String>,
}

/// A consensus vote (the majority settles it).
#[derive(Debug, Message)]
#[rtype(result = "Result<DisputeSettled, HubError>")]
pub struct VoteDispute {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub dispute_id: i64,
    pub vote: Outcome,
}

/// What a resolve or a vote did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DisputeSettled {
    pub dispute_id: i64,
    /// The last event written (the `dispute_resolved` one when it was settled).
    pub event_id: i64,
    /// Settled: how. Absent: still open (a vote without a majority yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Consensus: the votes that count, and how many agreeing ones settle it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub votes: BTreeMap<String, Outcome>,
    #[serde(skip_serializing_if = "is_zero")]
    pub needed: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The open disputes, oldest first.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Dispute>, HubError>")]
pub struct ListDisputes {
    pub credential: Credential,
}
