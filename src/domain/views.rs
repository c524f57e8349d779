//! What a session looks like from outside: the views the transports answer with. Built by the
//! session from its state (`Session::view`); tokens never appear in them.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::coordination::Coordination;
use super::role::{Permission, Role};
use super::session::{HandshakeMode, Participant, RotationPolicy, SessionStatus};
use super::task::Strategy;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantView {
    pub ai_id: String,
    pub role: Role,
    pub permissions: BTreeSet<Permission>,
    pub joined_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub left_at: Option<DateTime<Utc>>,
}

impl From<&Participant> for ParticipantView {
    fn from(p: &Participant) -> Self {
        ParticipantView {
            ai_id: p.ai_id.clone(),
            role: p.role,
            permissions: p.permissions.clone(),
            joined_at: p.joined_at.and_utc(),
            left_at: p.left_at.map(|t| t.and_utc()),
        }
    }
}

/// The full picture of one session.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub session_id: Uuid,
    pub name: String,
    pub status: SessionStatus,
    pub handshake_mode: HandshakeMode,
    pub rotation_policy: RotationPolicy,
    pub save_interval: u32,
    pub metadata: Value,
    pub driver: Option<String>,
    pub participants: Vec<ParticipantView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_event_id: i64,
    /// Where the driver/navigator handshake stands, open role requests, pending role changes.
    pub coordination: Coordination,
    /// Minutes per driver under automatic rotation.
    #[serde(skip_serializing_if = "is_zero")]
    pub role_rotation_interval: f64,
    pub review_timeout_secs: u32,
    pub task_allocation: Strategy,
    pub project: String,
    /// The collaboration genome the session runs under, its task type and origin.
    pub genome: super::genome::SessionGenome,
}

fn is_zero(n: &f64) -> bool {
    *n == 0.0
}

/// One row of the session list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub session_id: Uuid,
    pub name: String,
    pub project: String,
    pub status: SessionStatus,
    pub participants: Vec<ParticipantBrief>,
    pub created_at: DateTime<Utc>,
    /// Time of the newest change in the session.
    pub last_activity: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantBrief {
    pub ai_id: String,
    pub role: Role,
}
