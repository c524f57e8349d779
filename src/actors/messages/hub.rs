//! Hub-level commands: create and list sessions, and the envelope that routes a command to
//! one session.

#[allow(unused_imports)]
use super::imports::*;

/// Create a session (operator only). Replies with the session and each participant's token.
#[derive(Debug, Message)]
#[rtype(result = "Result<SessionCreated, HubError>")]
pub struct CreateSession {
    pub credential: Credential,
    pub spec: SessionSpec,
    /// Recorded with the session it makes (`store::applied`), for `CreateAnsweredAgain`.
    pub key: Option<uuid::Uuid>,
}

/// A create sent again with its key after it was applied, its answer lost with the hub that
/// applied it (operator only): new tokens for the participants it made, whose first ones
/// nobody received. `None`: the key is not on record (the create was not applied).
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<SessionCreated>, HubError>")]
pub struct CreateAnsweredAgain {
    pub credential: Credential,
    pub key: uuid::Uuid,
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
    pub filter: crate::store::queries::SessionFilter,
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
