//! `EvolutionActor`: the one owner of every task type's population. It hands a new session a
//! genome drawn from its task type's population, and scores completed sessions into it.
//!
//! Durability: a session's completion writes its measured outcome in the completion's own
//! transaction (`store::evolution::record_outcome`); this actor then scores every unscored
//! outcome and saves the populations it changed in one transaction. After a crash in between,
//! the start scores what was left, so no completed session is lost or counted twice.

use std::collections::BTreeMap;

use actix::prelude::*;

use super::messages::{
    DrawGenome, EvolutionStatus, Insights, InsightsView, OutcomeView, PopulationView,
    ScoreOutcomes, SessionFitness,
};
use crate::domain::evolution::{Assignment, EvolutionConfig, Population};
use crate::domain::fitness::{FitnessWeights, score};
use crate::domain::genome::TaskType;
use crate::domain::insights::{CompletedSession, InsightConfig, insights};
use crate::domain::now;
use crate::error::HubError;
use crate::store::{Store, evolution as store};

/// Most scored sessions the insights read per task type (the newest).
const INSIGHT_SESSIONS: i64 = 5000;

/// What `--evolution-*` and `--fitness-weights` set.
#[derive(Debug, Clone, Default)]
pub struct EvolutionSettings {
    pub config: EvolutionConfig,
    pub weights: FitnessWeights,
    /// Seed of new populations; `None`: from the clock.
    pub seed: Option<u64>,
}

pub struct EvolutionActor {
    store: Store,
    settings: EvolutionSettings,
    populations: BTreeMap<TaskType, Population>,
}

impl EvolutionActor {
    pub fn new(store: Store, settings: EvolutionSettings) -> Self {
        EvolutionActor {
            store,
            settings,
            populations: BTreeMap::new(),
        }
    }

    fn seed_for(&self, task_type: &TaskType) -> u64 {
        let base = self.settings.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        // Each task type its own stream, the same for the same seed.
        task_type
            .as_str()
            .bytes()
            .fold(base ^ 0x9e37_79b9_7f4a_7c15, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            })
    }

    /// Scores every unscored outcome into the populations, in one transaction.
    fn score_pending(&mut self, ctx: &mut Context<Self>) {
        let mut populations = self.populations.clone();
        let weights = self.settings.weights.clone();
        let store = self.store.clone();
        let fut = async move {
            store
                .write(move |c| {
                    let mut changed = false;
                    for row in store::unscored(c)? {
                        let measured = row.measured()?;
                        let genome = row.session_genome()?;
                        let scored = score(&measured, &weights).map_err(HubError::from)?;
                        store::set_score(c, &row.session_id, &scored)?;
                        if let (Some(member), Some(p)) = (
                            genome.credited_member(),
                            populations.get_mut(&genome.task_type),
                        ) {
                            // A member bred away since keeps its score for the insights only.
                            let recorded = p.record(member, scored.score)?;
                            if recorded.counted {
                                store::save_population(c, p, now())?;
                                changed = true;
                            }
                        }
                    }
                    Ok((populations, changed))
                })
                .await
        }
        .into_actor(self)
        .map(|result, act, _| match result {
            Ok((populations, _)) => act.populations = populations,
            Err(e) => log::error!("scoring completed sessions failed: {e}"),
        });
        ctx.wait(fut);
    }
}

impl Actor for EvolutionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let store = self.store.clone();
        // Nothing is drawn or scored before the populations are in memory.
        ctx.wait(
            async move { store.read(store::load_populations).await }
                .into_actor(self)
                .map(|loaded, act, ctx| {
                    match loaded {
                        Ok(list) => {
                            act.populations =
                                list.into_iter().map(|p| (p.task_type.clone(), p)).collect();
                        }
                        Err(e) => log::error!("cannot load the populations: {e}"),
                    }
                    act.score_pending(ctx);
                }),
        );
    }
}

impl Handler<DrawGenome> for EvolutionActor {
    type Result = ResponseActFuture<Self, Result<Assignment, HubError>>;

    fn handle(&mut self, msg: DrawGenome, _: &mut Self::Context) -> Self::Result {
        let task_type = msg.0;
        let mut population = match self.populations.get(&task_type) {
            Some(p) => p.clone(),
            None => match Population::new(
                task_type.clone(),
                self.settings.config.clone(),
                &[],
                self.seed_for(&task_type),
            ) {
                Ok(p) => p,
                Err(e) => return Box::pin(fut::ready(Err(e.into()))),
            },
        };
        let assignment = population.assign();
        let saved = population.clone();
        let db = self.store.clone();
        Box::pin(
            async move {
                db.write(move |c| store::save_population(c, &saved, now()))
                    .await
            }
            .into_actor(self)
            .map(move |result, act, _| {
                result?;
                act.populations.insert(task_type, population);
                Ok(assignment)
            }),
        )
    }
}

impl Handler<ScoreOutcomes> for EvolutionActor {
    type Result = ();

    fn handle(&mut self, _: ScoreOutcomes, ctx: &mut Self::Context) {
        self.score_pending(ctx);
    }
}

impl Handler<EvolutionStatus> for EvolutionActor {
    type Result = Result<Vec<PopulationView>, HubError>;

    fn handle(&mut self, msg: EvolutionStatus, _: &mut Self::Context) -> Self::Result {
        Ok(self
            .populations
            .values()
            .filter(|p| msg.task_type.as_ref().is_none_or(|t| *t == p.task_type))
            .map(|p| PopulationView::of(p, msg.members))
            .collect())
    }
}

impl Handler<Insights> for EvolutionActor {
    type Result = ResponseFuture<Result<InsightsView, HubError>>;

    fn handle(&mut self, msg: Insights, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            let key = msg.task_type.as_ref().map(|t| t.to_string());
            let rows = store
                .read(move |c| store::scored(c, key.as_deref(), INSIGHT_SESSIONS))
                .await?;
            let sessions = rows
                .iter()
                .map(|r| {
                    Ok(CompletedSession {
                        genome: r.session_genome()?.genome,
                        fitness: r.fitness.unwrap_or(0.0),
                    })
                })
                .collect::<Result<Vec<_>, HubError>>()?;
            let config = InsightConfig::default();
            // The permutation test is CPU work: off the actor and async threads.
            let n = sessions.len();
            let found = actix_web::rt::task::spawn_blocking(move || insights(&sessions, &config))
                .await
                .map_err(|e| HubError::Internal(e.to_string()))??;
            Ok(InsightsView {
                task_type: msg.task_type.map(|t| t.to_string()),
                sessions: n,
                insights: found,
            })
        })
    }
}

impl Handler<SessionFitness> for EvolutionActor {
    type Result = ResponseFuture<Result<Option<OutcomeView>, HubError>>;

    fn handle(&mut self, msg: SessionFitness, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            let row = store.read(move |c| store::outcome_of(c, msg.0)).await?;
            row.map(|r| {
                Ok(OutcomeView {
                    measured: r.measured()?,
                    fitness: match &r.terms {
                        Some(t) => Some(serde_json::from_str(t).map_err(|e| {
                            HubError::Internal(format!("stored fitness is unreadable: {e}"))
                        })?),
                        None => None,
                    },
                })
            })
            .transpose()
        })
    }
}
