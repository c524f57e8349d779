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
    /// The stored populations are in memory.
    loaded: bool,
    /// Stored populations that did not decode: never drawn from, never overwritten.
    unreadable: std::collections::BTreeSet<String>,
}

/// Most task types the hub keeps a population for (each is a stored row and memory).
pub const MAX_TASK_TYPES: usize = 200;

impl EvolutionActor {
    pub fn new(store: Store, settings: EvolutionSettings) -> Self {
        EvolutionActor {
            store,
            settings,
            populations: BTreeMap::new(),
            loaded: false,
            unreadable: Default::default(),
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

    /// Scores every unscored outcome into the populations, in one transaction. A row that
    /// cannot be scored (unreadable, or a weight that makes the score non-finite) is logged and
    /// left unscored; it must not stop every later session from being scored.
    fn score_pending(&mut self, ctx: &mut Context<Self>) {
        if !self.loaded {
            return;
        }
        let mut populations = self.populations.clone();
        let weights = self.settings.weights.clone();
        let store = self.store.clone();
        let fut = async move {
            store
                .write(move |c| {
                    let mut changed = BTreeMap::new();
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
                            changed.insert(genome.task_type.clone(), p.clone());
                        }
                    }
                    Ok(changed)
                })
                .await
        }
        .into_actor(self)
        .map(|result, act, _| match result {
            // Only what this pass changed: nothing else ran meanwhile (`wait`), but say so.
            Ok(changed) => act.populations.extend(changed),
            Err(e) => log::error!("scoring completed sessions failed: {e}"),
        });
        ctx.wait(fut);
    }

    /// Loads the populations; until that succeeds nothing is drawn or scored (a population
    /// started afresh would overwrite the stored one). Retries every few seconds.
    fn load(&mut self, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        // Through the writer, whose connection is already open: a reader would be the hub's
        // first and connect at start, and a process told to stop right then (SIGTERM within
        // milliseconds) could exit while libpq is still in that handshake (seen once as a
        // SIGSEGV at exit under load).
        ctx.wait(
            async move { store.write(store::load_populations).await }
                .into_actor(self)
                .map(|loaded, act, ctx| match loaded {
                    Ok(list) => {
                        for (key, p) in list {
                            match p {
                                Ok(p) => {
                                    act.populations.insert(p.task_type.clone(), p);
                                }
                                Err(e) => {
                                    log::error!("population {key:?} is unreadable: {e}");
                                    act.unreadable.insert(key);
                                }
                            }
                        }
                        act.loaded = true;
                        act.score_pending(ctx);
                    }
                    Err(e) => {
                        log::error!("cannot load the populations (retrying): {e}");
                        ctx.run_later(std::time::Duration::from_secs(5), |act, ctx| act.load(ctx));
                    }
                }),
        );
    }
}

impl Actor for EvolutionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.load(ctx);
    }
}

impl Handler<DrawGenome> for EvolutionActor {
    type Result = AtomicResponse<Self, Result<Assignment, HubError>>;

    /// Atomic: no score and no other draw runs between reading the population and storing it.
    fn handle(&mut self, msg: DrawGenome, _: &mut Self::Context) -> Self::Result {
        let task_type = msg.0;
        let refuse = |e: HubError| AtomicResponse::new(Box::pin(fut::ready(Err(e))));
        if !self.loaded || self.unreadable.contains(task_type.as_str()) {
            return refuse(HubError::Unavailable(format!(
                "the population of {task_type} cannot be read now; create the session with a genome, or retry"
            )));
        }
        let mut population = match self.populations.get(&task_type) {
            Some(p) => p.clone(),
            None if self.populations.len() >= MAX_TASK_TYPES => {
                return refuse(HubError::Conflict {
                    code: "too_many_task_types",
                    message: format!(
                        "the hub breeds at most {MAX_TASK_TYPES} task types; use one of them, or give a genome"
                    ),
                });
            }
            None => match Population::new(
                task_type.clone(),
                self.settings.config.clone(),
                &[],
                self.seed_for(&task_type),
            ) {
                Ok(p) => p,
                Err(e) => return refuse(e.into()),
            },
        };
        let assignment = population.assign();
        let saved = population.clone();
        let db = self.store.clone();
        AtomicResponse::new(Box::pin(
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
