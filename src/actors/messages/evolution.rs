//! The evolution actor's commands: draw a genome for a new session, score completed sessions,
//! and show populations, a session's fitness and the insights.

use serde::Serialize;
use uuid::Uuid;

use actix::Message;

use crate::domain::evolution::{Assignment, GenerationSummary, Population};
use crate::domain::fitness::{FitnessScore, SessionOutcome};
use crate::domain::genome::{Genome, TaskType};
use crate::domain::insights::Insight;
use crate::error::HubError;

/// The genome for a new session of this task type, from its population (started on first use).
#[derive(Message)]
#[rtype(result = "Result<Assignment, HubError>")]
pub struct DrawGenome(pub TaskType);

/// Completed sessions wait to be scored (sent after each completion; idempotent).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ScoreOutcomes;

/// The populations (one task type, or all), with or without their members.
#[derive(Message)]
#[rtype(result = "Result<Vec<PopulationView>, HubError>")]
pub struct EvolutionStatus {
    pub task_type: Option<TaskType>,
    pub members: bool,
}

/// What the scored sessions of a task type (or of all) support.
#[derive(Message)]
#[rtype(result = "Result<InsightsView, HubError>")]
pub struct Insights {
    pub task_type: Option<TaskType>,
}

/// A completed session's measured outcome and fitness (`None`: not completed).
#[derive(Message)]
#[rtype(result = "Result<Option<OutcomeView>, HubError>")]
pub struct SessionFitness(pub Uuid);

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub id: u64,
    pub genome: Genome,
    pub born: u32,
    /// Sessions drawn for it in this generation.
    pub assigned: u32,
    /// Weighted mean fitness of its scored sessions, and how many.
    pub fitness: Option<f64>,
    pub scored: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BestView {
    pub member_id: u64,
    pub fitness: f64,
    pub genome: Genome,
}

/// A task type's population as people see it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PopulationView {
    pub task_type: String,
    pub generation: u32,
    pub size: usize,
    /// Scored sessions in this generation, of the number that closes it.
    pub scored_this_generation: usize,
    pub sessions_per_generation: usize,
    /// The best scored member so far (weighted fitness); `None` before any score.
    pub best: Option<BestView>,
    /// One entry per closed generation: the fitness-per-generation chart.
    pub history: Vec<GenerationSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<MemberView>>,
}

impl PopulationView {
    pub fn of(p: &Population, with_members: bool) -> PopulationView {
        PopulationView {
            task_type: p.task_type.to_string(),
            generation: p.generation,
            size: p.members.len(),
            scored_this_generation: p.scored_this_generation(),
            sessions_per_generation: p.config.sessions_per_generation,
            best: p.best().map(|(m, f)| BestView {
                member_id: m.id,
                fitness: f,
                genome: m.genome.clone(),
            }),
            history: p.history.clone(),
            members: with_members.then(|| {
                p.members
                    .iter()
                    .map(|m| {
                        let (fitness, scored) = p
                            .member_fitness(m.id)
                            .map_or((None, 0), |(f, n)| (Some(f), n));
                        MemberView {
                            id: m.id,
                            genome: m.genome.clone(),
                            born: m.born,
                            assigned: m.assigned,
                            fitness,
                            scored,
                        }
                    })
                    .collect()
            }),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InsightsView {
    pub task_type: Option<String>,
    /// Scored sessions the insights rest on.
    pub sessions: usize,
    /// Only what the permutation test supports (Holm-adjusted); empty when nothing does.
    pub insights: Vec<Insight>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeView {
    pub measured: SessionOutcome,
    /// The score with its terms and weights; `None` until the evolution actor scored it.
    pub fitness: Option<FitnessScore>,
}
