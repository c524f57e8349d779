//! `evolution` / `GET /mcp/evolution[/insights|/session]`: the collaboration genomes over
//! time. `status`: each task type's population, its best genome and fitness per generation;
//! `insights`: what the scored sessions support (only significant patterns); `session`: one
//! session's genome, what each gene does there, and its measured outcome and fitness.
//!
//! Populations and insights are hub-wide and hold no secrets (genomes and scores): the
//! operator and any participant may read them. A session's outcome is read like the session.

use futures::future::LocalBoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Call, Operation};
use crate::actors::hub::{GetEvolution, Identify};
use crate::actors::messages::{
    EvolutionStatus, GetSession, Insights, InsightsView, OutcomeView, PopulationView,
    SessionFitness,
};
use crate::domain::genome::{BriefingDepth, Genome, SessionGenome, TaskType};
use crate::error::HubError;

#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EvolutionAction {
    #[default]
    Status,
    Insights,
    Session,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvolutionArgs {
    /// status (default): populations; insights: significant gene patterns; session: one
    /// session's genome and fitness.
    pub action: Option<EvolutionAction>,
    /// status, insights: one task type (default: all).
    pub task_type: Option<String>,
    /// status: list every member too.
    pub members: Option<bool>,
    /// session: which (default: yours).
    pub session_id: Option<Uuid>,
}

/// What a session's genes set there, for people reading the genome.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Effects {
    pub handshake_mode: crate::domain::session::HandshakeMode,
    pub review_timeout_secs: u32,
    pub rotation_interval_secs: u32,
    pub save_interval: u32,
    pub task_allocation: crate::domain::task::Strategy,
    pub max_tasks_in_progress: usize,
    /// Lines per change a navigator may record in loose mode (`null`: no limit).
    pub navigator_line_limit: Option<u32>,
    /// Unreviewed work that makes review mandatory: this many files or lines (`null`: none).
    pub review_threshold: Option<Value>,
    pub context_sync_secs: u64,
    /// quick, standard or deep; `byTimeAway` (standard depth): quick under an hour away,
    /// standard under a day, else deep.
    pub resume_strategy: &'static str,
    pub message_verbosity: crate::domain::genome::MessageVerbosity,
    pub conflict_resolution: crate::domain::genome::ConflictResolution,
}

impl Effects {
    pub fn of(g: &Genome) -> Effects {
        let s = g.session_settings();
        Effects {
            handshake_mode: s.handshake_mode,
            review_timeout_secs: s.review_timeout_secs,
            rotation_interval_secs: s.rotation_interval_secs,
            save_interval: s.save_interval,
            task_allocation: s.task_allocation,
            max_tasks_in_progress: g.max_tasks_in_progress(),
            navigator_line_limit: g.navigator_line_limit(),
            review_threshold: g
                .review_thresholds()
                .map(|(files, lines)| json!({"files": files, "lines": lines})),
            context_sync_secs: g.context_sync_secs(),
            resume_strategy: match g.briefing_depth {
                BriefingDepth::Minimal => "quick",
                BriefingDepth::Standard => "byTimeAway",
                BriefingDepth::Comprehensive => "deep",
            },
            message_verbosity: g.verbosity(),
            conflict_resolution: g.resolver(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionEvolution {
    pub session_id: Uuid,
    #[serde(flatten)]
    pub genome: SessionGenome,
    pub effects: Effects,
    /// Once completed: what was measured and the score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OutcomeView>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EvolutionOutput {
    Status { populations: Vec<PopulationView> },
    Insights(InsightsView),
    Session(Box<SessionEvolution>),
}

impl Operation for EvolutionArgs {
    type Output = EvolutionOutput;

    fn run(self, call: Call) -> LocalBoxFuture<'static, Result<EvolutionOutput, HubError>> {
        Box::pin(async move {
            let task_type = self.task_type.as_deref().map(TaskType::parse).transpose()?;
            let action = self.action.unwrap_or_default();
            if let EvolutionAction::Session = action {
                let session_id = call.session(self.session_id).await?;
                let credential = call.credential.clone();
                let view = call.send(session_id, GetSession { credential }).await?;
                let evolution = call.hub.send(GetEvolution).await?;
                let outcome = evolution.send(SessionFitness(session_id)).await??;
                let effects = Effects::of(&view.genome.genome);
                return Ok(EvolutionOutput::Session(Box::new(SessionEvolution {
                    session_id,
                    genome: view.genome,
                    effects,
                    outcome,
                })));
            }
            if self.session_id.is_some() {
                return Err(HubError::invalid(
                    "sessionId",
                    "sessionId goes with action: session",
                ));
            }
            // Anyone the hub knows: the operator or a participant of any session.
            call.hub.send(Identify(call.credential.clone())).await??;
            let evolution = call.hub.send(GetEvolution).await?;
            match action {
                EvolutionAction::Insights => {
                    let found = evolution.send(Insights { task_type }).await??;
                    Ok(EvolutionOutput::Insights(found))
                }
                _ => {
                    let populations = evolution
                        .send(EvolutionStatus {
                            task_type,
                            members: self.members.unwrap_or(false),
                        })
                        .await??;
                    Ok(EvolutionOutput::Status { populations })
                }
            }
        })
    }
}
