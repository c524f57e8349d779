//! `EvolutionActor`: hands a new session a genome drawn from its task type's population, and
//! scores completed sessions into it.
//!
//! The populations live in the database only: each draw and each scoring pass is one
//! transaction that takes the evolution lock (`store::evolution::lock_populations`), reads the
//! populations as stored and saves what it changed. So every hub sharing a PostgreSQL database
//! runs one of these, wherever the session is created or completed, and they never breed from
//! a copy another has moved on from.
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
    /// A scoring pass that failed is tried again (once queued, not once per completion).
    rescore_queued: bool,
}

/// Most task types the hub keeps a population for (each is a stored row and memory).
pub const MAX_TASK_TYPES: usize = 200;

/// How long after a failed scoring pass it is tried again.
const RESCORE_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

impl EvolutionActor {
    pub fn new(store: Store, settings: EvolutionSettings) -> Self {
        EvolutionActor {
            store,
            settings,
            rescore_queued: false,
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

    /// Scores every unscored outcome into the populations, in one transaction that holds the
    /// evolution lock and reads the populations as stored: hubs sharing a database may each
    /// score (each scores what its own completions left, and whatever another left), and an
    /// outcome is counted once. A row that cannot be scored (unreadable, or a weight that makes
    /// the score non-finite) is logged and left unscored; it must not stop every later session
    /// from being scored. A population that does not decode is neither credited nor saved.
    fn score_pending(&mut self, ctx: &mut Context<Self>) {
        let weights = self.settings.weights.clone();
        let store = self.store.clone();
        let fut = async move {
            store
                .write(move |c| {
                    store::lock_populations(c)?;
                    let mut populations: BTreeMap<TaskType, Population> = BTreeMap::new();
                    for (key, p) in store::load_populations(c)? {
                        match p {
                            Ok(p) => {
                                populations.insert(p.task_type.clone(), p);
                            }
                            Err(e) => log::error!("population {key:?} is unreadable: {e}"),
                        }
                    }
                    for row in store::unscored(c)? {
                        let scored = row.measured().and_then(|m| {
                            let g = row.session_genome()?;
                            Ok((score(&m, &weights).map_err(HubError::from)?, g))
                        });
                        let (scored, genome) = match scored {
                            Ok(s) => s,
                            Err(e) => {
                                log::warn!("session {} cannot be scored: {e}", row.session_id);
                                continue;
                            }
                        };
                        store::set_score(c, &row.session_id, &scored)?;
                        let Some(member) = genome.credited_member() else {
                            continue;
                        };
                        let Some(p) = populations.get_mut(&genome.task_type) else {
                            continue;
                        };
                        // Credit the member only if it is still the genome the session ran
                        // (ids are per population; a restored backup may bring other ones).
                        if !p
                            .members
                            .iter()
                            .any(|m| m.id == member && m.genome == genome.genome)
                        {
                            continue;
                        }
                        if p.record(member, scored.score)?.counted {
                            store::save_population(c, p, now())?;
                        }
                    }
                    Ok(())
                })
                .await
        }
        .into_actor(self)
        .map(|result, act, ctx| {
            if let Err(e) = result {
                log::error!("scoring completed sessions failed (trying again soon): {e}");
                if !std::mem::replace(&mut act.rescore_queued, true) {
                    ctx.run_later(RESCORE_AFTER, |act, ctx| {
                        act.rescore_queued = false;
                        act.score_pending(ctx);
                    });
                }
            }
        });
        ctx.wait(fut);
    }
}

impl Actor for EvolutionActor {
    type Context = Context<Self>;

    /// What a crash left between a completion and its scoring is scored now.
    fn started(&mut self, ctx: &mut Self::Context) {
        self.score_pending(ctx);
    }
}

impl Handler<DrawGenome> for EvolutionActor {
    type Result = AtomicResponse<Self, Result<Assignment, HubError>>;

    /// One transaction under the evolution lock: the population is read as stored, assigned
    /// from and saved, so that no score and no other draw (of this hub or another on the same
    /// database) runs in between.
    fn handle(&mut self, msg: DrawGenome, _: &mut Self::Context) -> Self::Result {
        let task_type = msg.0;
        let (config, seed) = (self.settings.config.clone(), self.seed_for(&task_type));
        let db = self.store.clone();
        AtomicResponse::new(Box::pin(
            async move {
                db.write(move |c| {
                    store::lock_populations(c)?;
                    let mut population = match store::load_population(c, task_type.as_str())? {
                        Some(Ok(p)) => p,
                        // Never drawn from, never overwritten.
                        Some(Err(_)) => {
                            return Err(HubError::Unavailable(format!(
                                "the population of {task_type} cannot be read now; create the session with a genome, or retry"
                            )));
                        }
                        None if store::count_populations(c)? >= MAX_TASK_TYPES as i64 => {
                            return Err(HubError::Conflict {
                                code: "too_many_task_types",
                                message: format!(
                                    "the hub breeds at most {MAX_TASK_TYPES} task types; use one of them, or give a genome"
                                ),
                            });
                        }
                        None => Population::new(task_type.clone(), config, &[], seed)?,
                    };
                    let assignment = population.assign();
                    store::save_population(c, &population, now())?;
                    Ok(assignment)
                })
                .await
            }
            .into_actor(self),
        ))
    }
}

impl Handler<ScoreOutcomes> for EvolutionActor {
    type Result = ();

    fn handle(&mut self, _: ScoreOutcomes, ctx: &mut Self::Context) {
        self.score_pending(ctx);
    }
}

impl Handler<EvolutionStatus> for EvolutionActor {
    type Result = ResponseFuture<Result<Vec<PopulationView>, HubError>>;

    /// Read as stored: another hub on the same database may have drawn or scored since.
    fn handle(&mut self, msg: EvolutionStatus, _: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move {
            let stored = store.read(store::load_populations).await?;
            Ok(stored
                .into_iter()
                .filter_map(|(key, p)| {
                    p.map_err(|e| log::error!("population {key:?} is unreadable: {e}"))
                        .ok()
                })
                .filter(|p| msg.task_type.as_ref().is_none_or(|t| *t == p.task_type))
                .map(|p| PopulationView::of(&p, msg.members))
                .collect())
        })
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
