//! A collaboration session: its participants, roles, status and configuration, and the rules
//! for changing them. The session actor owns one `Session`, asks it whether a command is allowed
//! (`check_*`), writes the resulting event, and only after the commit calls `apply_*`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::DomainError;
use super::auth::{Caller, Credential, digests_match};
use super::checkpoint::Checkpoint;
use super::context::Context;
use super::coordination::Coordination;
use super::event::{Event, NewEvent, Priority};
use super::message::{PendingAcks, SendRate};
use super::monitor::STATUS_REPORTED;
use super::role::{Permission, Role};
use super::task::Strategy;

/// Upper bound on participants in one session; every event fans out to each of them.
pub const MAX_PARTICIPANTS: usize = 128;
/// Upper bound on the serialized `metadata` object.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;
/// Auto-save interval bounds in seconds; 0 turns auto-save off.
pub const SAVE_INTERVAL_RANGE: std::ops::RangeInclusive<u32> = 10..=86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Active,
    Paused,
    Completed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "active",
            SessionStatus::Paused => "paused",
            SessionStatus::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(SessionStatus::Active),
            "paused" => Some(SessionStatus::Paused),
            "completed" => Some(SessionStatus::Completed),
            _ => None,
        }
    }

    /// active ↔ paused, either → completed; completed is final.
    pub fn can_become(self, to: SessionStatus) -> bool {
        use SessionStatus::*;
        matches!(
            (self, to),
            (Active, Paused) | (Paused, Active) | (Active, Completed) | (Paused, Completed)
        )
    }
}

/// A status change as people say it on the REST surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatusAction {
    Pause,
    Resume,
    Complete,
}

impl StatusAction {
    pub fn target(self) -> SessionStatus {
        match self {
            StatusAction::Pause => SessionStatus::Paused,
            StatusAction::Resume => SessionStatus::Active,
            StatusAction::Complete => SessionStatus::Completed,
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum HandshakeMode {
    /// Only the driver writes; control moves only through the handshake.
    #[default]
    Strict,
    /// The navigator may write within its permissions; writes are still recorded and announced.
    Loose,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RotationPolicy {
    #[default]
    Manual,
    Automatic,
}

macro_rules! text_enum {
    ($ty:ty { $($variant:ident = $text:literal),+ }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}
text_enum!(HandshakeMode { Strict = "strict", Loose = "loose" });
text_enum!(RotationPolicy { Manual = "manual", Automatic = "automatic" });

#[derive(Debug, Clone, PartialEq)]
pub struct Participant {
    pub ai_id: String,
    pub role: Role,
    pub permissions: BTreeSet<Permission>,
    pub token_digest: String,
    pub joined_at: NaiveDateTime,
    /// Set once the participant left; its token stops working. A later join revives the id.
    pub left_at: Option<NaiveDateTime>,
    /// Last event id the participant acknowledged: its delivery cursor.
    pub acked_event_id: i64,
    /// What it is good at (skill-based task assignment).
    pub skills: Vec<String>,
    /// Its open checkpoint, if any (stored with the participant, so a restart keeps the hold).
    pub checkpoint: Option<Checkpoint>,
    /// Critical events up to here were acknowledged even if the cursor stayed behind (an ack
    /// during a checkpoint's hold). In memory only: after a restart they show once more.
    pub acked_critical: i64,
    /// Critical messages acknowledged one by one (`message_ack`), among the recent critical
    /// events. In memory only, like `acked_critical`.
    pub acked_critical_ids: BTreeSet<i64>,
}

impl Participant {
    pub fn is_active(&self) -> bool {
        self.left_at.is_none()
    }

    pub fn from_spec(spec: &ParticipantSpec, token_digest: String, at: NaiveDateTime) -> Self {
        Participant {
            ai_id: spec.ai_id.clone(),
            role: spec.role,
            permissions: spec
                .permissions
                .clone()
                .unwrap_or_else(|| spec.role.default_permissions()),
            token_digest,
            joined_at: at,
            left_at: None,
            acked_event_id: 0,
            skills: spec.skills.clone(),
            checkpoint: None,
            acked_critical: 0,
            acked_critical_ids: BTreeSet::new(),
        }
    }
}

/// The live state of one session, as the session actor holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: Uuid,
    pub name: String,
    pub status: SessionStatus,
    pub handshake_mode: HandshakeMode,
    pub rotation_policy: RotationPolicy,
    pub save_interval: u32,
    pub metadata: Value,
    /// By id; left participants stay (with `left_at`) so history keeps its names.
    pub participants: BTreeMap<String, Participant>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// Id of the newest event in this session's log.
    pub last_event_id: i64,
    /// The newest critical events (at most `RECENT_CRITICAL`), to put in front of participants
    /// who have not acknowledged them yet.
    pub recent_critical: std::collections::VecDeque<Event>,
    /// The shared context document with its versions.
    pub context: Context,
    /// Context writes since the last snapshot, and the bytes their changes logged (a snapshot
    /// is due when both are enough: `Session::snapshot_is_due`).
    pub context_since_snapshot: u32,
    pub context_bytes_since_snapshot: u64,
    /// Ack-required messages still waiting for acknowledgements before their deadline.
    pub pending_acks: PendingAcks,
    pub rotation_interval_secs: u32,
    pub review_timeout_secs: u32,
    /// Handshake phase, role requests, rotation clock (stored with the session).
    pub coordination: Coordination,
    /// Default assignment strategy for unassigned work.
    pub task_allocation: Strategy,
    /// The codebase the session works on; its sessions share one lock table.
    pub project: String,
    /// The genome the session runs under (`genes` says what each gene changes).
    pub genome: super::genome::SessionGenome,
}

/// Kind of the event that records plain context changes.
pub const CONTEXT_CHANGED: &str = "context_changed";
/// Every event kind that changes the context (each carries `changes`); a load replays them.
pub const CONTEXT_KINDS: [&str; 6] = [
    CONTEXT_CHANGED,
    "memory_pushed",
    "memory_cleared",
    "notes_updated",
    "discovery_reported",
    STATUS_REPORTED,
];

/// How many recent critical events a session keeps in memory for its participants.
pub const RECENT_CRITICAL: usize = 32;

/// Who may do what, beyond the participants' own tokens: set once per hub.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// The hub listens on loopback only: a request without a token speaks as the operator.
    pub trust_loopback: bool,
    /// Digest of the operator token, if one is configured.
    pub operator_digest: Option<String>,
    /// How fast each participant may send messages.
    pub send_rate: SendRate,
    /// A participant with no open stream that has not called the hub for this long is gone:
    /// its locks are released.
    pub disconnect_grace_secs: u64,
    /// Changes by two participants to overlapping lines within this many seconds conflict.
    pub conflict_window_secs: u64,
}

impl AccessPolicy {
    /// Resolves a credential when no session is involved (create, list): only the operator.
    pub fn operator(&self, credential: &Credential) -> Result<Caller, DomainError> {
        match credential {
            Credential::None if self.trust_loopback => Ok(Caller::Operator),
            Credential::None => Err(DomainError::Unauthorized(
                "this hub listens beyond loopback: send Authorization: Bearer <operator token>"
                    .into(),
            )),
            Credential::Bearer(d) if self.is_operator(d) => Ok(Caller::Operator),
            Credential::Bearer(_) | Credential::OperatorAs { .. } => Err(DomainError::Forbidden(
                "only the hub operator may do this; participant tokens act inside their session"
                    .into(),
            )),
        }
    }

    pub(super) fn is_operator(&self, digest: &str) -> bool {
        self.operator_digest
            .as_deref()
            .is_some_and(|op| digests_match(op, digest))
    }
}

impl Session {
    /// A new session from a validated spec. Participants get the digests in the same order.
    pub fn new(id: Uuid, spec: &SessionSpec, digests: Vec<String>, at: NaiveDateTime) -> Session {
        // The first event (id 1) is the creation itself, which every creator knows about.
        let participants = spec
            .participants
            .iter()
            .zip(digests)
            .map(|(p, d)| {
                let mut p = Participant::from_spec(p, d, at);
                p.acked_event_id = 1;
                (p.ai_id.clone(), p)
            })
            .collect();
        Session {
            id,
            name: spec.name.clone(),
            status: SessionStatus::Active,
            handshake_mode: spec.handshake_mode,
            rotation_policy: spec.rotation_policy,
            save_interval: spec.save_interval,
            metadata: spec.metadata.clone(),
            participants,
            created_at: at,
            updated_at: at,
            last_event_id: 0,
            recent_critical: Default::default(),
            context: Context::new(),
            context_since_snapshot: 0,
            context_bytes_since_snapshot: 0,
            pending_acks: PendingAcks::default(),
            rotation_interval_secs: spec.rotation_interval_secs,
            review_timeout_secs: spec.review_timeout_secs,
            coordination: Coordination::default(),
            task_allocation: spec.task_allocation,
            project: spec.project.clone(),
            genome: spec.genome.clone(),
        }
    }

    /// The caller a request speaks as when it names a participant (`aiId` on the REST surface):
    /// the operator may speak for any active participant, a participant only for itself.
    pub fn speaking_as(&self, caller: Caller, named: Option<&str>) -> Result<Caller, DomainError> {
        let Some(named) = named else {
            return Ok(caller);
        };
        act_as(&caller, named)?;
        self.active(named)?;
        Ok(Caller::Participant(named.to_owned()))
    }

    /// Records a committed event: the newest id, and the event itself if it is critical.
    pub fn record(&mut self, event: &Event) {
        self.last_event_id = self.last_event_id.max(event.id);
        // As `append_event` stamps the row: the session's activity time is its newest event's.
        self.updated_at = self.updated_at.max(event.at.naive_utc());
        if event.priority == Priority::Critical {
            if self.recent_critical.len() == RECENT_CRITICAL {
                self.recent_critical.pop_front();
            }
            self.recent_critical.push_back(event.clone());
        }
    }

    /// Critical events `ai_id` has not acknowledged yet, oldest first.
    pub fn unacked_critical(&self, ai_id: &str) -> Vec<&Event> {
        let Some(p) = self.participants.get(ai_id) else {
            return Vec::new();
        };
        let acked = p.acked_event_id.max(p.acked_critical);
        self.recent_critical
            .iter()
            .filter(|e| {
                e.id > acked
                    && e.actor.as_deref() != Some(ai_id)
                    && e.visible_to(ai_id)
                    && !p.acked_critical_ids.contains(&e.id)
            })
            .collect()
    }

    /// Moves `ai_id`'s cursor forward to `up_to` (never back, never past the log).
    pub fn check_ack(&self, ai_id: &str, up_to: i64) -> Result<i64, DomainError> {
        let p = self.active(ai_id)?;
        if up_to > self.last_event_id {
            return Err(DomainError::invalid(
                "upTo",
                format!(
                    "event {up_to} does not exist yet; the newest is {}",
                    self.last_event_id
                ),
            ));
        }
        // In a holding checkpoint only critical events were delivered after it began: the
        // cursor stays at the checkpoint so the held ones still come, the critical ones count
        // as acknowledged.
        let cursor = match &p.checkpoint {
            Some(cp) if cp.holds() => up_to.min(cp.begun_event.max(p.acked_event_id)),
            _ => up_to,
        };
        Ok(cursor.max(p.acked_event_id))
    }

    pub fn apply_ack(&mut self, ai_id: &str, cursor: i64, up_to: i64) {
        if let Some(p) = self.participants.get_mut(ai_id) {
            p.acked_event_id = p.acked_event_id.max(cursor);
            p.acked_critical = p.acked_critical.max(up_to);
        }
    }

    /// Does `ai_id` hold its non-critical events back (a non-interruptible checkpoint)?
    pub fn holding(&self, ai_id: &str) -> bool {
        self.participants
            .get(ai_id)
            .and_then(|p| p.checkpoint.as_ref())
            .is_some_and(Checkpoint::holds)
    }

    /// Active participants by id.
    pub fn active_ids(&self) -> BTreeSet<String> {
        self.active_participants()
            .map(|p| p.ai_id.clone())
            .collect()
    }

    /// The one check that a completed session is closed to `what` (final: nothing reopens it).
    pub fn check_open(&self, what: &str) -> Result<(), DomainError> {
        if self.status == SessionStatus::Completed {
            return Err(DomainError::conflict(
                "session_completed",
                format!("the session is completed; {what} are closed"),
            ));
        }
        Ok(())
    }

    /// Completed closes `what` for good; paused holds it until someone resumes. Reads,
    /// briefings, lock releases and leaving keep working while paused.
    pub fn check_writable(&self, what: &str) -> Result<(), DomainError> {
        self.check_open(what)?;
        if self.status == SessionStatus::Paused {
            return Err(paused(what));
        }
        Ok(())
    }

    pub fn created_event(&self) -> NewEvent {
        NewEvent {
            kind: "session_created",
            actor: None,
            priority: Priority::Routine,
            to: None,
            payload: json!({
                "name": self.name,
                "participants": self.active_participants().map(ParticipantView::from).collect::<Vec<_>>(),
                "handshakeMode": self.handshake_mode,
                "rotationPolicy": self.rotation_policy,
                "saveInterval": self.save_interval,
            }),
        }
    }

    pub fn active_participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.values().filter(|p| p.is_active())
    }

    pub fn driver(&self) -> Option<&Participant> {
        self.active_participants().find(|p| p.role == Role::Driver)
    }

    /// May `caller` move the session to `to`? Observers cannot; transitions follow `can_become`.
    pub fn check_status(
        &self,
        to: SessionStatus,
        caller: &Caller,
    ) -> Result<NewEvent, DomainError> {
        if let Caller::Participant(id) = caller {
            let p = self.active(id)?;
            if p.role == Role::Observer {
                return Err(DomainError::Forbidden(format!(
                    "{id:?} is an observer; only the driver, a navigator or the operator may change the session status"
                )));
            }
        }
        if !self.status.can_become(to) {
            return Err(DomainError::conflict(
                "invalid_transition",
                format!(
                    "the session is {} and cannot become {}; allowed: active↔paused, active/paused→completed",
                    self.status.as_str(),
                    to.as_str()
                ),
            ));
        }
        Ok(NewEvent {
            kind: "session_status_changed",
            actor: caller_id(caller),
            priority: Priority::Important,
            to: None,
            payload: json!({ "from": self.status, "to": to }),
        })
    }

    pub fn apply_status(&mut self, to: SessionStatus, at: NaiveDateTime, event_id: i64) {
        self.status = to;
        self.updated_at = at;
        self.last_event_id = event_id;
    }

    pub fn active(&self, ai_id: &str) -> Result<&Participant, DomainError> {
        self.participants
            .get(ai_id)
            .filter(|p| p.is_active())
            .ok_or_else(|| {
                DomainError::NotFound(format!("{ai_id:?} is not a participant of this session"))
            })
    }

    pub fn view(&self) -> SessionView {
        SessionView {
            session_id: self.id,
            name: self.name.clone(),
            status: self.status,
            handshake_mode: self.handshake_mode,
            rotation_policy: self.rotation_policy,
            save_interval: self.save_interval,
            metadata: self.metadata.clone(),
            driver: self.driver().map(|p| p.ai_id.clone()),
            participants: self
                .participants
                .values()
                .map(ParticipantView::from)
                .collect(),
            created_at: self.created_at.and_utc(),
            updated_at: self.updated_at.and_utc(),
            last_event_id: self.last_event_id,
            coordination: self.coordination.clone(),
            role_rotation_interval: f64::from(self.rotation_interval_secs) / 60.0,
            review_timeout_secs: self.review_timeout_secs,
            task_allocation: self.task_allocation,
            project: self.project.clone(),
            genome: self.genome.clone(),
        }
    }
}

/// The refusal of a write while the session is paused, saying how to go on.
pub fn paused(what: &str) -> DomainError {
    DomainError::conflict(
        "session_paused",
        format!(
            "the session is paused; {what} wait until it resumes: session_status {{action: resume}} (driver, a navigator or the operator)"
        ),
    )
}

pub(crate) fn caller_id(caller: &Caller) -> Option<String> {
    match caller {
        Caller::Participant(id) => Some(id.clone()),
        Caller::Operator => None,
    }
}

/// A participant may act only as itself; the operator may act for anyone.
pub fn act_as(caller: &Caller, ai_id: &str) -> Result<(), DomainError> {
    match caller {
        Caller::Participant(me) if me != ai_id => Err(DomainError::Forbidden(format!(
            "you are {me:?} and cannot act as {ai_id:?}"
        ))),
        _ => Ok(()),
    }
}

/// A participant as shown to others: never its token digest.
pub use super::session_spec::{
    DEFAULT_PROJECT, DEFAULT_REVIEW_TIMEOUT, MAX_PROJECT_LEN, ParticipantRequest, ParticipantSpec,
    REVIEW_TIMEOUT_RANGE, ROTATION_INTERVAL_RANGE, SessionSpec, assign_default_roles,
    rotation_secs, validate_project,
};
pub use super::views::{ParticipantBrief, ParticipantView, SessionSummary, SessionView};

/// Sessions for unit tests elsewhere in the domain.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A strict, manually rotated session spec with these participants.
    pub fn spec_of(ps: &[(&str, Role)]) -> SessionSpec {
        SessionSpec {
            name: "Payment Gateway".into(),
            participants: ps
                .iter()
                .map(|(id, role)| ParticipantSpec {
                    ai_id: (*id).into(),
                    role: *role,
                    permissions: None,
                    skills: Vec::new(),
                })
                .collect(),
            // The default genome's (docs/genome.md): the one place the default lives.
            save_interval: crate::domain::genome::Genome::default()
                .session_settings()
                .save_interval,
            handshake_mode: HandshakeMode::Strict,
            rotation_policy: RotationPolicy::Manual,
            rotation_interval_secs: 0,
            review_timeout_secs: DEFAULT_REVIEW_TIMEOUT,
            task_allocation: Strategy::default(),
            project: DEFAULT_PROJECT.into(),
            metadata: json!({}),
            genome: Default::default(),
        }
    }

    pub fn session_of(ps: &[(&str, Role)]) -> Session {
        let spec = spec_of(ps);
        spec.validate().unwrap();
        let digests = ps.iter().map(|(id, _)| format!("digest-{id}")).collect();
        Session::new(Uuid::nil(), &spec, digests, crate::domain::now())
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
