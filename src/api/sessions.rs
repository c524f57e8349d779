//! Session lifecycle: create, join, list, get, status, leave.

use std::collections::BTreeSet;

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::shapes::Participants;
use super::{Call, Operation};
use crate::actors::hub::{CheckOperator, ServeProject};

use crate::actors::messages::DrawGenome;
use crate::actors::messages::{
    ChangeStatus, CreateAnsweredAgain, CreateSession, GetSession, JoinSession, Joined,
    LeaveSession, ListSessions, SessionCreated,
};
use crate::domain::genome::{GENERAL_TASK_TYPE, Genome, GenomeOrigin, SessionGenome, TaskType};
use crate::domain::role::{Permission, Role};
use crate::domain::session::{
    DEFAULT_PROJECT, HandshakeMode, ParticipantSpec, RotationPolicy, SessionSpec, SessionStatus,
    SessionSummary, SessionView, StatusAction, rotation_secs,
};
use crate::domain::task::Strategy;
use crate::error::HubError;

fn general() -> TaskType {
    TaskType::Custom(GENERAL_TASK_TYPE.into())
}
use crate::store::queries::SessionFilter;

/// `session_create` / `POST /mcp/session/create`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Create {
    pub name: String,
    /// The codebase: repository path or remote (default "default"). Its sessions share locks.
    pub project: Option<String>,
    #[serde(default)]
    pub participants: Participants,
    /// Your aiId among them (default: the first).
    pub me: Option<String>,
    pub handshake_mode: Option<HandshakeMode>,
    pub rotation_policy: Option<RotationPolicy>,
    /// Auto-save seconds (0 = off).
    pub save_interval: Option<u32>,
    /// Automatic rotation: minutes per driver.
    pub role_rotation_interval: Option<f64>,
    pub review_timeout_secs: Option<u32>,
    pub task_allocation: Option<Strategy>,
    pub metadata: Option<Map<String, Value>>,
    /// Kind of work: refactoring, bugHunting, featureDevelopment, codeReview or your label.
    /// Without `genome`, the session runs a genome bred for this kind of work.
    pub task_type: Option<String>,
    /// Genes to run under, e.g. {"handshakeStrictness": 0.9}; the rest default (docs/genome.md).
    // Shown as a plain object: the eleven genes' full schema would cost every unbound client
    // about 1.3 KB of tool list; the hub still checks each gene and names the bad one.
    #[schemars(with = "Option<Map<String, Value>>")]
    pub genome: Option<Genome>,
}

/// A created session: its view, the tokens (shown once), and who the creator acts as.
#[derive(Debug, Serialize)]
pub struct Created {
    #[serde(flatten)]
    pub created: SessionCreated,
    #[serde(skip)]
    pub me: Option<String>,
}

/// The request's value if it names one (a difference from the genome's is recorded), else
/// the genome's.
fn pick<T: PartialEq>(overridden: &mut Vec<String>, name: &str, given: Option<T>, bred: T) -> T {
    match given {
        Some(v) if v != bred => {
            overridden.push(name.to_owned());
            v
        }
        Some(v) => v,
        None => bred,
    }
}

impl Create {
    /// The spec this request asks for under `genome`: the genome's settings, except where the
    /// request names its own (those are listed in `genome.overridden`).
    fn spec(
        &self,
        participants: Vec<ParticipantSpec>,
        mut genome: SessionGenome,
    ) -> Result<SessionSpec, HubError> {
        genome
            .genome
            .validate()
            .map_err(|e| match HubError::from(e) {
                // The gene as the request spells it: inside `genome`.
                HubError::Invalid {
                    code,
                    message,
                    field: Some(f),
                } => HubError::Invalid {
                    code,
                    message: format!("genome.{message}"),
                    field: Some(format!("genome.{f}")),
                },
                other => other,
            })?;
        let bred = genome.genome.session_settings();
        let mut overridden = Vec::new();
        let save_interval = pick(
            &mut overridden,
            "saveInterval",
            self.save_interval,
            bred.save_interval,
        );
        let review_timeout_secs = pick(
            &mut overridden,
            "reviewTimeoutSecs",
            self.review_timeout_secs,
            bred.review_timeout_secs,
        );
        let rotation_interval_secs = pick(
            &mut overridden,
            "roleRotationInterval",
            self.role_rotation_interval
                .map(|m| rotation_secs(Some(m)))
                .transpose()?,
            bred.rotation_interval_secs,
        );
        let handshake_mode = pick(
            &mut overridden,
            "handshakeMode",
            self.handshake_mode,
            bred.handshake_mode,
        );
        let task_allocation = pick(
            &mut overridden,
            "taskAllocation",
            self.task_allocation,
            bred.task_allocation,
        );
        // A plain session rotates by hand as it always has; a bred or given genome's rotation
        // interval is its own, so it rotates automatically (manual leaves the gene unused).
        let bred_policy = match genome.origin {
            GenomeOrigin::Default => RotationPolicy::Manual,
            _ => RotationPolicy::Automatic,
        };
        let rotation_policy = match self.rotation_policy {
            Some(p) if p != bred_policy && bred_policy == RotationPolicy::Automatic => {
                overridden.push("rotationPolicy".into());
                p
            }
            Some(p) => p,
            None => bred_policy,
        };
        genome.overridden = overridden;
        let spec = SessionSpec {
            name: self.name.clone(),
            project: self
                .project
                .clone()
                .unwrap_or_else(|| DEFAULT_PROJECT.into()),
            participants,
            save_interval,
            handshake_mode,
            rotation_policy,
            rotation_interval_secs,
            review_timeout_secs,
            task_allocation,
            metadata: Value::Object(self.metadata.clone().unwrap_or_default()),
            genome,
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl Operation for Create {
    type Output = Created;

    fn run(mut self, call: Call) -> LocalBoxFuture<'static, Result<Created, HubError>> {
        Box::pin(async move {
            let participants = std::mem::take(&mut self.participants).specs()?;
            let me = match &self.me {
                Some(me) if !participants.iter().any(|p| p.ai_id == *me) => {
                    return Err(HubError::invalid(
                        "me",
                        format!("{me:?} is not among the participants"),
                    ));
                }
                Some(me) => Some(me.clone()),
                None => participants.first().map(|p| p.ai_id.clone()),
            };
            // Kept by the create itself: sent again after it was applied, it answers new
            // tokens, and nothing else is drawn or written.
            let key = call.request_key.take();
            if let Some(key) = key.filter(|k| k.maybe_sent) {
                let again = CreateAnsweredAgain {
                    credential: call.credential.clone(),
                    key: key.id,
                };
                if let Some(created) = call.hub.send(again).await?? {
                    return Ok(Created { created, me });
                }
            }
            let task_type = self.task_type.as_deref().map(TaskType::parse).transpose()?;
            let genome = match (&self.genome, task_type) {
                (Some(genome), task_type) => SessionGenome {
                    task_type: task_type.unwrap_or_else(general),
                    genome: genome.clone(),
                    origin: GenomeOrigin::Explicit,
                    overridden: Vec::new(),
                },
                (None, Some(task_type)) => {
                    // Everything that could refuse the create is checked before the draw: a
                    // refused create must not have moved the population.
                    call.hub
                        .send(CheckOperator(call.credential.clone()))
                        .await??;
                    let checked = self.spec(participants.clone(), SessionGenome::default())?;
                    // And drawn only where the session is created: a project another hub serves
                    // is answered `Elsewhere` before the draw, and the create is run there.
                    call.hub.send(ServeProject(checked.project)).await??;
                    let drawn = call.hub.send(DrawGenome(task_type.clone())).await??;
                    SessionGenome {
                        task_type,
                        genome: drawn.genome,
                        origin: GenomeOrigin::Population {
                            member_id: drawn.member_id,
                            generation: drawn.generation,
                        },
                        overridden: Vec::new(),
                    }
                }
                (None, None) => SessionGenome::default(),
            };
            let spec = self.spec(participants, genome)?;
            let credential = call.credential.clone();
            let key = key.map(|k| k.id);
            let create = CreateSession {
                credential,
                spec,
                key,
            };
            let created = call.hub.send(create).await??;
            Ok(Created { created, me })
        })
    }
}

/// `session_join` / `POST /mcp/session/join`. Without a role a newcomer observes (least
/// privilege); naming no role, the operator's MCP client takes the seat of a participant listed
/// at create instead.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Join {
    pub session_id: Uuid,
    /// Your aiId, e.g. "gemini".
    pub participant: String,
    /// Default: observer.
    pub role: Option<Role>,
    pub permissions: Option<BTreeSet<Permission>>,
    pub skills: Option<Vec<String>>,
    /// Cap the onboarding at about this many tokens.
    pub max_tokens: Option<usize>,
}

impl Join {
    /// Whether this join may connect to an existing participant (MCP only: REST always adds).
    pub fn names_no_role(&self) -> bool {
        self.role.is_none() && self.permissions.is_none()
    }

    pub fn command(self, call: &Call, connect_existing: bool) -> JoinSession {
        JoinSession {
            credential: call.credential.clone(),
            participant: ParticipantSpec {
                ai_id: self.participant,
                role: self.role.unwrap_or(Role::Observer),
                permissions: self.permissions,
                skills: self.skills.unwrap_or_default(),
            },
            connect_existing,
            max_tokens: self.max_tokens,
            key: call.request_key.take(),
        }
    }
}

impl Operation for Join {
    type Output = Joined;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Joined, HubError>> {
        Box::pin(async move {
            let session_id = self.session_id;
            let command = self.command(&call, false);
            call.send(session_id, command).await
        })
    }
}

/// Most sessions one list returns.
pub const MAX_LIST: i64 = 100;

/// `session_list` / `GET /mcp/session/list`: most recently active first.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct List {
    pub status: Option<SessionStatus>,
    /// Only this project's sessions.
    pub project: Option<String>,
    /// Only sessions with this participant.
    pub participant: Option<String>,
    /// In the name or project, any case.
    pub text: Option<String>,
    /// 1–100, default 20.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct Sessions {
    pub sessions: Vec<SessionSummary>,
}

impl Operation for List {
    type Output = Sessions;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<Sessions, HubError>> {
        Box::pin(async move {
            let limit = self.limit.unwrap_or(20);
            if !(1..=MAX_LIST).contains(&limit) {
                return Err(HubError::invalid(
                    "limit",
                    format!("limit must be between 1 and {MAX_LIST}"),
                ));
            }
            let offset = self.offset.unwrap_or(0);
            if offset < 0 {
                return Err(HubError::invalid("offset", "offset must not be negative"));
            }
            let sessions = call
                .hub
                .send(ListSessions {
                    credential: call.credential.clone(),
                    filter: SessionFilter {
                        status: self.status,
                        project: self.project,
                        participant: self.participant,
                        text: self.text.filter(|t| !t.trim().is_empty()),
                    },
                    limit,
                    offset,
                })
                .await??;
            Ok(Sessions { sessions })
        })
    }
}

/// `session_get` / `GET /mcp/session/{sessionId}`: the whole session.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Get {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
}

impl Operation for Get {
    type Output = SessionView;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<SessionView, HubError>> {
        Box::pin(async move {
            let session_id = call.session(self.session_id).await?;
            let credential = call.credential.clone();
            call.send(session_id, GetSession { credential }).await
        })
    }
}

/// `session_status` / `POST /mcp/session/{sessionId}/status`: `{action: pause|resume|complete}`
/// or the target state `{status: active|paused|completed}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetStatus {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    pub action: Option<StatusAction>,
    #[schemars(skip)]
    pub status: Option<SessionStatus>,
}

impl Operation for SetStatus {
    type Output = SessionView;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<SessionView, HubError>> {
        Box::pin(async move {
            let to = match (self.action, self.status) {
                (Some(a), None) => a.target(),
                (None, Some(s)) => s,
                _ => {
                    return Err(HubError::invalid(
                        "action",
                        "send exactly one of action (pause, resume, complete) or status (active, paused, completed)",
                    ));
                }
            };
            let session_id = call.session(self.session_id).await?;
            let credential = call.credential.clone();
            call.send(session_id, ChangeStatus { credential, to }).await
        })
    }
}

/// `session_leave` / `POST /mcp/session/leave`: the caller leaves (the operator may remove
/// anyone by naming `participant`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Leave {
    #[schemars(skip)]
    pub session_id: Option<Uuid>,
    #[schemars(skip)]
    pub participant: Option<String>,
}

impl Leave {
    /// The session and the participant who leaves.
    async fn whom(&self, call: &Call) -> Result<(Uuid, String), HubError> {
        let session_id = call.session(self.session_id).await?;
        let ai_id = match &self.participant {
            Some(named) => named.clone(),
            None => match call.identify().await {
                Ok(me) => me.ai_id,
                Err(HubError::Invalid { .. }) => {
                    return Err(HubError::invalid(
                        "participant",
                        "name the participant who leaves",
                    ));
                }
                Err(e) => return Err(e),
            },
        };
        Ok((session_id, ai_id))
    }
}

impl Operation for Leave {
    type Output = SessionView;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<SessionView, HubError>> {
        Box::pin(async move {
            let (session_id, ai_id) = match self.whom(&call).await {
                Err(refused @ HubError::Unauthorized(_)) => {
                    return Err(call.unless_applied(refused, self.session_id).await);
                }
                whom => whom?,
            };
            let credential = call.credential.clone();
            call.send(session_id, LeaveSession { credential, ai_id })
                .await
        })
    }
}
