//! The typed commands every transport (REST now; MCP and WebSocket later) sends to the actors,
//! and their replies. A feature exists once: here.

use std::collections::BTreeMap;

use actix::Message;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::auth::Credential;
use crate::domain::session::{
    ParticipantSpec, ParticipantView, SessionSpec, SessionStatus, SessionSummary, SessionView,
};
use crate::error::HubError;

/// Create a session (operator only). Replies with the session and each participant's token.
#[derive(Debug, Message)]
#[rtype(result = "Result<SessionCreated, HubError>")]
pub struct CreateSession {
    pub credential: Credential,
    pub spec: SessionSpec,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionCreated {
    #[serde(flatten)]
    pub session: SessionView,
    /// aiId → bearer token. Shown once; only digests are stored.
    pub tokens: BTreeMap<String, String>,
}

/// List sessions, most recently active first (operator only).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<SessionSummary>, HubError>")]
pub struct ListSessions {
    pub credential: Credential,
    pub status: Option<SessionStatus>,
    pub limit: i64,
    pub offset: i64,
}

/// A command for one session; the hub routes it to that session's actor, loading the session
/// from the database first if it is not live.
#[derive(Debug)]
pub struct ToSession<M> {
    pub session_id: Uuid,
    pub command: M,
}

impl<M> Message for ToSession<M>
where
    M: Message,
{
    type Result = M::Result;
}

/// Add a participant. The caller is the operator or a participant of the session (an invitation).
#[derive(Debug, Message)]
#[rtype(result = "Result<Joined, HubError>")]
pub struct JoinSession {
    pub credential: Credential,
    pub participant: ParticipantSpec,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    pub session_id: Uuid,
    pub participant: ParticipantView,
    /// Bearer token of the new participant. Shown once.
    pub token: String,
    pub session: SessionView,
    pub event_id: i64,
}

/// A participant leaves (itself, or the operator removes it).
#[derive(Debug, Message)]
#[rtype(result = "Result<SessionView, HubError>")]
pub struct LeaveSession {
    pub credential: Credential,
    pub ai_id: String,
}

/// Pause, resume or complete the session.
#[derive(Debug, Message)]
#[rtype(result = "Result<SessionView, HubError>")]
pub struct ChangeStatus {
    pub credential: Credential,
    pub to: SessionStatus,
}

/// The whole session as its participants see it.
#[derive(Debug, Message)]
#[rtype(result = "Result<SessionView, HubError>")]
pub struct GetSession {
    pub credential: Credential,
}
