//! Who is in a session: join, leave, status, the session itself, whoami, token reissue.

#[allow(unused_imports)]
use super::imports::*;

/// Add a participant. The caller is the operator or a participant of the session (an invitation).
#[derive(Debug, Message)]
#[rtype(result = "Result<Joined, HubError>")]
pub struct JoinSession {
    pub credential: Credential,
    pub participant: ParticipantSpec,
    /// The operator connects as a participant already in the session (an MCP client on
    /// loopback taking the seat it was given at create) instead of adding a new one.
    pub connect_existing: bool,
    /// Cap on the newcomer's onboarding, in tokens.
    pub max_tokens: Option<usize>,
    /// Kept by the join itself, not by the generic `Keyed`: a join sent again after it was
    /// applied answers a new token (the first was lost with its answer).
    pub key: Option<crate::api::RequestKey>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Joined {
    pub session_id: Uuid,
    pub participant: ParticipantView,
    /// Bearer token of the new participant. Shown once. None when the operator connected as
    /// an existing participant (its token stays as it was).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub session: SessionView,
    pub event_id: i64,
    /// For a newcomer: the project, the work done, the focus, the files changed and the tasks
    /// that fit it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onboarding: Option<crate::domain::briefing::Onboarding>,
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

/// Who am I in this session (from the credential)?
#[derive(Debug, Message)]
#[rtype(result = "Result<WhoamiView, HubError>")]
pub struct Whoami {
    pub credential: Credential,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WhoamiView {
    pub session_id: Uuid,
    pub session_name: String,
    pub status: SessionStatus,
    pub ai_id: String,
    pub role: Role,
    pub permissions: BTreeSet<Permission>,
    pub driver: Option<String>,
    pub handshake_mode: HandshakeMode,
    pub participants: Vec<ParticipantBrief>,
    pub last_event_id: i64,
    pub acked_event_id: i64,
    pub handshake: Phase,
}

impl WhoamiView {
    pub fn new(s: &Session, p: &Participant) -> WhoamiView {
        WhoamiView {
            session_id: s.id,
            session_name: s.name.clone(),
            status: s.status,
            ai_id: p.ai_id.clone(),
            role: p.role,
            permissions: p.permissions.clone(),
            driver: s.driver().map(|d| d.ai_id.clone()),
            handshake_mode: s.handshake_mode,
            participants: s
                .active_participants()
                .map(|p| ParticipantBrief {
                    ai_id: p.ai_id.clone(),
                    role: p.role,
                })
                .collect(),
            last_event_id: s.last_event_id,
            acked_event_id: p.acked_event_id,
            handshake: s.coordination.handshake.clone(),
        }
    }
}

/// Gives a participant a fresh bearer token; its old one stops working. Replies with the token.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, HubError>")]
pub struct ReissueToken {
    pub credential: Credential,
    pub ai_id: String,
}

/// New tokens for `ai_ids`, made by a create whose answer was lost (`CreateAnsweredAgain`,
/// which checked the operator): the first ones, which nobody received, stop working. Replies
/// with the session and the tokens of those still in it.
#[derive(Debug, Message)]
#[rtype(result = "Result<(SessionView, BTreeMap<String, String>), HubError>")]
pub struct TokensAgain {
    pub ai_ids: Vec<String>,
}
