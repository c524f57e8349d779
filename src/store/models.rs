//! Rows as diesel reads and writes them, and their conversion to domain types.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{events, participants, sessions};
use crate::domain::event::{Event, Priority};
use crate::domain::session::{HandshakeMode, Participant, RotationPolicy, Session, SessionStatus};
use crate::error::HubError;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub handshake_mode: String,
    pub rotation_policy: String,
    pub save_interval: i32,
    pub metadata: String,
    pub last_event_id: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// `Coordination` as JSON.
    pub coordination: String,
    pub rotation_interval_secs: i32,
    pub review_timeout_secs: i32,
    pub task_allocation: String,
    pub project: String,
    /// `SessionGenome` as JSON; '' for sessions from before genomes (the default).
    pub genome: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = participants)]
pub struct ParticipantRow {
    pub session_id: String,
    pub ai_id: String,
    pub role: String,
    pub permissions: String,
    pub token_digest: String,
    pub joined_at: NaiveDateTime,
    pub left_at: Option<NaiveDateTime>,
    pub acked_event_id: i64,
    /// The open checkpoint as JSON.
    pub checkpoint: Option<String>,
    /// JSON list.
    pub skills: String,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = events)]
pub struct EventRow {
    pub session_id: String,
    pub id: i64,
    pub actor: Option<String>,
    pub kind: String,
    pub priority: String,
    pub payload: String,
    pub created_at: NaiveDateTime,
    pub recipient: Option<String>,
}

/// The coordination column's text.
pub fn coordination_json(c: &crate::domain::coordination::Coordination) -> String {
    serde_json::to_string(c).unwrap_or_else(|_| "{}".into())
}

/// A row that does not decode means the database was edited by hand or a migration is missing.
fn corrupt(what: &str, detail: impl std::fmt::Display) -> HubError {
    log::error!("stored {what} does not decode: {detail}");
    HubError::Internal(format!("stored {what} is unreadable"))
}

impl SessionRow {
    pub fn from_session(s: &Session) -> SessionRow {
        SessionRow {
            id: s.id.to_string(),
            name: s.name.clone(),
            status: s.status.as_str().into(),
            handshake_mode: s.handshake_mode.as_str().into(),
            rotation_policy: s.rotation_policy.as_str().into(),
            save_interval: i32::try_from(s.save_interval).unwrap_or(i32::MAX),
            metadata: s.metadata.to_string(),
            last_event_id: s.last_event_id,
            created_at: s.created_at,
            updated_at: s.updated_at,
            coordination: coordination_json(&s.coordination),
            rotation_interval_secs: i32::try_from(s.rotation_interval_secs).unwrap_or(i32::MAX),
            review_timeout_secs: i32::try_from(s.review_timeout_secs).unwrap_or(i32::MAX),
            task_allocation: s.task_allocation.as_str().into(),
            project: s.project.clone(),
            genome: serde_json::to_string(&s.genome).unwrap_or_default(),
        }
    }

    pub fn into_session(self, participants: Vec<ParticipantRow>) -> Result<Session, HubError> {
        let participants = participants
            .into_iter()
            .map(|p| p.into_participant().map(|p| (p.ai_id.clone(), p)))
            .collect::<Result<_, _>>()?;
        Ok(Session {
            id: self.id.parse().map_err(|e| corrupt("session id", e))?,
            name: self.name,
            status: SessionStatus::parse(&self.status)
                .ok_or_else(|| corrupt("session status", &self.status))?,
            handshake_mode: HandshakeMode::parse(&self.handshake_mode)
                .ok_or_else(|| corrupt("handshake mode", &self.handshake_mode))?,
            rotation_policy: RotationPolicy::parse(&self.rotation_policy)
                .ok_or_else(|| corrupt("rotation policy", &self.rotation_policy))?,
            save_interval: u32::try_from(self.save_interval).unwrap_or(0),
            metadata: serde_json::from_str(&self.metadata).map_err(|e| corrupt("metadata", e))?,
            participants,
            created_at: self.created_at,
            updated_at: self.updated_at,
            last_event_id: self.last_event_id,
            recent_critical: Default::default(),
            context: Default::default(),
            context_since_snapshot: 0,
            context_bytes_since_snapshot: 0,
            pending_acks: Default::default(),
            rotation_interval_secs: u32::try_from(self.rotation_interval_secs).unwrap_or(0),
            review_timeout_secs: u32::try_from(self.review_timeout_secs).unwrap_or(600),
            coordination: serde_json::from_str(&self.coordination)
                .map_err(|e| corrupt("coordination", e))?,
            task_allocation: crate::domain::task::Strategy::parse(&self.task_allocation)
                .ok_or_else(|| corrupt("task allocation", &self.task_allocation))?,
            project: self.project,
            genome: if self.genome.is_empty() {
                Default::default()
            } else {
                serde_json::from_str(&self.genome).map_err(|e| corrupt("genome", e))?
            },
        })
    }
}

impl ParticipantRow {
    pub fn from_participant(session_id: &str, p: &Participant) -> ParticipantRow {
        ParticipantRow {
            session_id: session_id.to_owned(),
            ai_id: p.ai_id.clone(),
            role: p.role.as_str().into(),
            permissions: serde_json::to_string(&p.permissions).unwrap_or_else(|_| "[]".into()),
            token_digest: p.token_digest.clone(),
            joined_at: p.joined_at,
            left_at: p.left_at,
            acked_event_id: p.acked_event_id,
            checkpoint: p
                .checkpoint
                .as_ref()
                .and_then(|c| serde_json::to_string(c).ok()),
            skills: serde_json::to_string(&p.skills).unwrap_or_else(|_| "[]".into()),
        }
    }

    pub fn into_participant(self) -> Result<Participant, HubError> {
        Ok(Participant {
            role: self.role.parse().map_err(|e| corrupt("role", e))?,
            permissions: serde_json::from_str(&self.permissions)
                .map_err(|e| corrupt("permissions", e))?,
            ai_id: self.ai_id,
            token_digest: self.token_digest,
            joined_at: self.joined_at,
            left_at: self.left_at,
            acked_event_id: self.acked_event_id,
            checkpoint: self
                .checkpoint
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| corrupt("checkpoint", e))?,
            acked_critical: self.acked_event_id,
            skills: serde_json::from_str(&self.skills).map_err(|e| corrupt("skills", e))?,
            acked_critical_ids: Default::default(),
        })
    }
}

impl EventRow {
    pub fn into_event(self) -> Result<Event, HubError> {
        Ok(Event {
            id: self.id,
            session_id: self
                .session_id
                .parse()
                .map_err(|e| corrupt("event session", e))?,
            kind: self.kind,
            actor: self.actor,
            priority: Priority::parse(&self.priority)
                .ok_or_else(|| corrupt("event priority", &self.priority))?,
            payload: super::codec::decode_payload(&self.payload)
                .map_err(|e| corrupt("event payload", e))?,
            at: self.created_at.and_utc(),
            to: self.recipient,
        })
    }
}
