//! The handshake, roles and the change ledger.

#[allow(unused_imports)]
use super::imports::*;

/// A handshake step (work_complete, review_start, review_complete, control_received, cancel).
#[derive(Debug, Message)]
#[rtype(result = "Result<HandshakeView, HubError>")]
pub struct HandshakeStep {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub step: Step,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HandshakeView {
    pub event_id: i64,
    /// The handshake after the step.
    pub handshake: Phase,
    /// Roles that waited for this boundary and changed with it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub roles_changed: BTreeMap<String, Role>,
    /// Why a `work_complete` without review was made to await one (`reviewRequirement`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_required: Option<String>,
}

/// Ask for a role; the driver (or the session) decides.
#[derive(Debug, Message)]
#[rtype(result = "Result<RoleOutcome, HubError>")]
pub struct RequestRole {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub role: Role,
    pub reason: Option<String>,
}

/// The driver (or the operator) answers a role request.
#[derive(Debug, Message)]
#[rtype(result = "Result<RoleOutcome, HubError>")]
pub struct RespondRole {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub request_id: i64,
    pub grant: bool,
    pub note: Option<String>,
}

/// The driver (or the operator) sets roles.
#[derive(Debug, Message)]
#[rtype(result = "Result<RoleOutcome, HubError>")]
pub struct AssignRoles {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub roles: BTreeMap<String, Role>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleStatus {
    /// Changed now.
    Changed,
    /// Decided; takes effect when the open handshake closes.
    Pending,
    /// Asked; waiting for the driver.
    Requested,
    Refused,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleOutcome {
    pub event_id: i64,
    pub status: RoleStatus,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub roles: BTreeMap<String, Role>,
}

/// Record a change to a file in the ledger.
#[derive(Debug, Message)]
#[rtype(result = "Result<ChangeRecorded, HubError>")]
pub struct RecordChange {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub spec: ChangeSpec,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRecorded {
    pub id: i64,
    pub lines: Vec<(u32, u32)>,
    /// Recent changes by others this one overlaps (both sides were alerted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<i64>,
    /// Loose mode: recorded although the author lacks the write permission (alerted).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub outside_permissions: bool,
    /// The driver's unreviewed work now needs review (`reviewRequirement`): its next
    /// `work_complete` will await one.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub needs_review: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_required: Option<String>,
}

/// The ledger, filtered.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<ChangeView>, HubError>")]
pub struct ListChanges {
    pub credential: Credential,
    pub query: ChangeQuery,
}
