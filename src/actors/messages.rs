//! The typed commands every transport (REST now; MCP and WebSocket later) sends to the actors,
//! and their replies. A feature exists once: here.

use std::collections::{BTreeMap, BTreeSet};

use actix::Message;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::auth::Credential;
use crate::domain::context::{ContextRequest, Diff, Path};
use crate::domain::event::Event;
use crate::domain::handshake::{Phase, Step};
use crate::domain::ledger::ChangeSpec;
use crate::domain::ledger::{ChangeQuery, ChangeView, SuggestionView};
use crate::domain::lock::{Lock, Mode};
use crate::domain::message::{AckSelection, MessageSpec};
use crate::domain::message::{MessagePage, MessageQuery};
use crate::domain::role::{Permission, Role};
use crate::domain::session::{
    HandshakeMode, Participant, ParticipantBrief, ParticipantSpec, ParticipantView, Session,
    SessionSpec, SessionStatus, SessionSummary, SessionView,
};
use crate::domain::task::{Status as TaskStatus, Task};
use crate::domain::task_rules::TaskOp;
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
    /// Only this project's sessions.
    pub project: Option<String>,
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
    /// The operator connects as a participant already in the session (an MCP client on
    /// loopback taking the seat it was given at create) instead of adding a new one.
    pub connect_existing: bool,
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

/// Events for the caller after `after` (default: its acknowledged cursor), oldest first.
#[derive(Debug, Message)]
#[rtype(result = "Result<EventPage, HubError>")]
pub struct PollEvents {
    pub credential: Credential,
    pub after: Option<i64>,
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub events: Vec<Event>,
    /// More events exist after the last one returned.
    pub more: bool,
    pub acked_event_id: i64,
    pub last_event_id: i64,
    /// The caller is in a non-interruptible checkpoint: only critical events were returned;
    /// the others follow once it ends.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

/// Moves the caller's delivery cursor to `up_to`; replies with the cursor now stored.
#[derive(Debug, Message)]
#[rtype(result = "Result<i64, HubError>")]
pub struct AckEvents {
    pub credential: Credential,
    pub up_to: i64,
}

/// A command for one session, and in the same trip through the hub the critical events
/// `critical_for` has not acknowledged once the command is done: what an MCP tool result
/// carries on top, without a second request.
#[derive(Debug)]
pub struct ToSessionReporting<M> {
    pub session_id: Uuid,
    pub command: M,
    pub critical_for: String,
}

impl<M> Message for ToSessionReporting<M>
where
    M: Message,
    M::Result: 'static,
{
    type Result = (M::Result, Vec<crate::domain::event::Event>);
}

/// Critical events this participant has not acknowledged (in memory; cheap).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Event>, HubError>")]
pub struct PendingCritical {
    pub ai_id: String,
}

/// Connects a live stream (MCP GET SSE, WebSocket) to the caller's agent: events after `after`
/// (default: its acknowledged cursor) are replayed from the log, then new ones follow.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), HubError>")]
pub struct AttachStream {
    pub credential: Credential,
    /// Names the stream (e.g. the MCP session id): a later attach with the same key replaces it.
    pub key: String,
    pub after: Option<i64>,
    pub sink: EventSink,
}

/// Where an agent pushes events for one live stream. Bounded: a consumer that falls behind is
/// switched to replay from the log.
pub type EventSink = tokio::sync::mpsc::Sender<Delivery>;

/// One event handed to a live stream.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub event: std::sync::Arc<Event>,
    /// Sent ahead of log order: a critical event passing a checkpoint's hold. Transports must
    /// not advance a resume cursor (SSE id) with it; it comes again in order after the hold.
    pub early: bool,
    /// The participant receiving it.
    pub viewer: std::sync::Arc<str>,
}

impl Delivery {
    /// Did this event change the receiver's role (so its tool list changed)?
    pub fn changes_my_role(&self) -> bool {
        self.event.kind == crate::domain::coordination::ROLE_CHANGED
            && self.event.payload["changes"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["aiId"] == *self.viewer))
    }
}

/// Gives a participant a fresh bearer token; its old one stops working. Replies with the token.
#[derive(Debug, Message)]
#[rtype(result = "Result<String, HubError>")]
pub struct ReissueToken {
    pub credential: Credential,
    pub ai_id: String,
}

/// A write to the shared context (set, append, delete, merge).
#[derive(Debug, Message)]
#[rtype(result = "Result<ContextWritten, HubError>")]
pub struct WriteContext {
    pub credential: Credential,
    /// The participant the write is attributed to when the operator makes it (REST `aiId`).
    pub as_participant: Option<String>,
    pub request: ContextRequest,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextWritten {
    /// The event that recorded the write; `None` when nothing changed.
    pub event_id: Option<i64>,
    /// The new version of every path it changed (the same number as `eventId`): pass it as the
    /// next write's `expectedVersion`.
    pub version: Option<i64>,
    pub changed: Vec<String>,
}

/// Reads one path of the shared context (the whole document for the empty path).
#[derive(Debug, Message)]
#[rtype(result = "Result<ContextValue, HubError>")]
pub struct ReadContext {
    pub credential: Credential,
    pub path: Path,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextValue {
    pub path: String,
    /// `null` when nothing is stored there (`exists` tells the two apart).
    pub value: serde_json::Value,
    pub exists: bool,
    /// Pass as `expectedVersion` to make the next write compare-and-set.
    pub version: i64,
}

/// What changed in the shared context after event `since` (default: after the caller's own
/// last context write).
#[derive(Debug, Message)]
#[rtype(result = "Result<Diff, HubError>")]
pub struct DiffContext {
    pub credential: Credential,
    /// Who asks, when the operator asks for a participant (REST `aiId`).
    pub as_participant: Option<String>,
    pub since: Since,
}

/// Where a diff starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Since {
    /// After this event id.
    Event(i64),
    /// After the last event at or before this time.
    Time(chrono::DateTime<chrono::Utc>),
    /// After the caller's own last context write.
    MyLastWrite,
}

/// Send a message (`to: None` broadcasts).
#[derive(Debug, Message)]
#[rtype(result = "Result<MessageSent, HubError>")]
pub struct SendMessage {
    pub credential: Credential,
    /// The sender when the operator sends for a participant (REST `aiId`).
    pub as_participant: Option<String>,
    pub spec: MessageSpec,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSent {
    /// The message id (= the id of the event that carried it).
    pub id: i64,
    pub thread: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_deadline: Option<chrono::DateTime<chrono::Utc>>,
}

/// Read messages the caller can see; messages to it that come back are marked read.
#[derive(Debug, Message)]
#[rtype(result = "Result<MessagePage, HubError>")]
pub struct ReadMessages {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub query: MessageQuery,
}

/// Acknowledge messages by id or everything up to an id.
#[derive(Debug, Message)]
#[rtype(result = "Result<MessagesAcked, HubError>")]
pub struct AckMessages {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub selection: AckSelection,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagesAcked {
    /// Newly acknowledged by this call (earlier acknowledgements are kept, not repeated).
    pub acked: Vec<i64>,
}

/// Start a checkpoint for the caller.
#[derive(Debug, Message)]
#[rtype(result = "Result<CheckpointView, HubError>")]
pub struct BeginCheckpoint {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub task: String,
    pub estimated_secs: u32,
    pub interruptible: bool,
}

/// End the caller's checkpoint.
#[derive(Debug, Message)]
#[rtype(result = "Result<CheckpointView, HubError>")]
pub struct EndCheckpoint {
    pub credential: Credential,
    pub as_participant: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointView {
    pub event_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Non-critical events wait while this is true.
    pub holding: bool,
    /// When the hub ends the checkpoint by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_by: Option<chrono::DateTime<chrono::Utc>>,
}

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
}

/// The ledger, filtered.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<ChangeView>, HubError>")]
pub struct ListChanges {
    pub credential: Credential,
    pub query: ChangeQuery,
}

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

/// Create, update, assign, hand off or claim tasks.
#[derive(Debug, Message)]
#[rtype(result = "Result<TasksWritten, HubError>")]
pub struct TaskCommand {
    pub credential: Credential,
    pub as_participant: Option<String>,
    pub op: TaskOp,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TasksWritten {
    /// The tasks as they are now (a created task and its subtasks, or the changed task).
    pub tasks: Vec<Task>,
}

/// Tasks, filtered (from memory).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Task>, HubError>")]
pub struct ListTasks {
    pub credential: Credential,
    pub status: Option<TaskStatus>,
    pub assigned_to: Option<String>,
    pub parent: Option<i64>,
    pub id: Option<i64>,
}
