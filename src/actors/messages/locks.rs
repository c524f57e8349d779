//! Locks: acquire (or queue), renew, release, list.

#[allow(unused_imports)]
use super::imports::*;

/// Acquire (or queue for) a lock.
#[derive(Debug, Message)]
#[rtype(result = "Result<LockView, HubError>")]
pub struct AcquireLock {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub resource: String,
    pub operation: Option<String>,
    pub duration: Option<serde_json::Value>,
    pub mode: Mode,
    pub wait: bool,
    /// Released when this task completes.
    pub task_id: Option<i64>,
}

/// Extend a held lease.
#[derive(Debug, Message)]
#[rtype(result = "Result<LockView, HubError>")]
pub struct RenewLock {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub lock_id: i64,
    pub duration: Option<serde_json::Value>,
}

/// Release a held lock or cancel a queued request; `force` lets the driver or the operator
/// release someone else's (its holder gets a critical notice).
#[derive(Debug, Message)]
#[rtype(result = "Result<LockReleased, HubError>")]
pub struct ReleaseLock {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub lock_id: i64,
    pub force: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LockView {
    #[serde(flatten)]
    pub lock: Lock,
    /// Queued: the locks ahead of it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub behind: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LockReleased {
    pub event_id: i64,
    /// Waiting requests granted because of this release.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub granted: Vec<i64>,
}

/// The session's locks, held and waiting.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Lock>, HubError>")]
pub struct ListLocks {
    pub credential: Credential,
}
