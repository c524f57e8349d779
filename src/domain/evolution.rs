//! The genetic algorithm: one population of genomes per task type, bred from scored sessions
//! (concept, "Evolution Process"). Plain data in and out: the caller asks for a genome for a new
//! session (`assign`), reports the session's fitness when it completes (`record`), and stores
//! the whole `Population` (serde) so that evolution survives a restart.
//!
//! One generation:
//! 1. Sessions run with the generation's members, spread evenly (`assign` gives out the member
//!    with the fewest sessions so far in this generation, lowest index first).
//! 2. When `sessionsPerGeneration` sessions of current members have been scored in this
//!    generation, the population advances at once (inside `record`).
//! 3. Each member's fitness is the mean of its results weighted by age: a result recorded
//!    `a` generations ago weighs `0.5^(a / halfLifeGenerations)`, so an elite that was lucky
//!    long ago fades unless it keeps scoring well. Members never scored take no part.
//! 4. Elitism: the best `eliteCount` scored members survive unchanged, with their results.
//! 5. The rest are children: two parents by tournament selection, uniform crossover (each gene
//!    from either parent with probability 1/2, as in the concept), then mutation of each gene
//!    with probability `mutationRate` (the concept's 0.1): a number moves by a Gaussian step of
//!    `mutationSigma` × the gene's range width and is clamped into the range; a category
//!    changes to one of its other values, chosen uniformly.
//!
//! Tournament selection (size `tournamentSize`, members drawn with replacement, the best ranked
//! wins) rather than the concept's "best half": it uses only the ranking, so one session with an
//! outsized score (the concept's token term is unbounded) cannot take over the population, and
//! its pressure is tuned by one number while weaker members still get an occasional chance.
//!
//! Determinism: all randomness comes from the population's `SeededRng`, whose state is part of
//! the population. The same seed and the same calls in the same order (same assignments, same
//! scores) give the same generations; ties in fitness are broken by member id. So that a stored
//! and reloaded population continues exactly as it would have, the numbers it keeps are
//! rounded: genes to 1e-4 of their unit, fitness to 1e-6. Such short decimals read back from
//! JSON bit for bit; serde_json's default float parser can be one ulp off on the 17-digit
//! ones, and one ulp is enough to flip a tie-break or a ranking.

use serde::{Deserialize, Serialize};

use super::DomainError;
use super::genome::{Gene, GeneValue, Genome, TaskType};
use super::seeded_rng::SeededRng;

/// The algorithm's parameters (defaults documented on each field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct EvolutionConfig {
    /// Members per generation: 12 (2..=200). Small on purpose: each member needs real sessions
    /// before it can be judged.
    pub population_size: usize,
    /// Best members carried over unchanged: 2 (below the population size).
    pub elite_count: usize,
    /// Members per tournament: 3 (1 = random parents, larger = greedier).
    pub tournament_size: usize,
    /// Chance that a child's gene mutates: 0.1, the concept's.
    pub mutation_rate: f64,
    /// Standard deviation of a numeric mutation as a share of the gene's range width: 0.1
    /// (the concept moves a number by up to ±10 % of itself).
    pub mutation_sigma: f64,
    /// Scored sessions of current members that complete a generation: 12 (one per member on
    /// average).
    pub sessions_per_generation: usize,
    /// Age, in generations, at which a result counts half: 3. `null`: never down-weighted.
    pub half_life_generations: Option<f64>,
}

impl Default for EvolutionConfig {
    fn default() -> Self {
        EvolutionConfig {
            population_size: 12,
            elite_count: 2,
            tournament_size: 3,
            mutation_rate: 0.1,
            mutation_sigma: 0.1,
            sessions_per_generation: 12,
            half_life_generations: Some(3.0),
        }
    }
}

/// Largest population the hub breeds.
pub const MAX_POPULATION: usize = 200;

impl EvolutionConfig {
    pub fn validate(&self) -> Result<(), DomainError> {
        let bad = |field: &'static str, why: String| Err(DomainError::invalid(field, why));
        if !(2..=MAX_POPULATION).contains(&self.population_size) {
            return bad(
                "populationSize",
                format!("populationSize must be between 2 and {MAX_POPULATION}"),
            );
        }
        if self.elite_count >= self.population_size {
            return bad(
                "eliteCount",
                "eliteCount must be below populationSize (children need room)".into(),
            );
        }
        if !(1..=self.population_size).contains(&self.tournament_size) {
            return bad(
                "tournamentSize",
                "tournamentSize must be between 1 and populationSize".into(),
            );
        }
        if !(0.0..=1.0).contains(&self.mutation_rate) {
            return bad(
                "mutationRate",
                "mutationRate is a probability (0..1)".into(),
            );
        }
        if !(self.mutation_sigma > 0.0 && self.mutation_sigma <= 1.0) {
            return bad(
                "mutationSigma",
                "mutationSigma is a share of the range width (above 0, at most 1)".into(),
            );
        }
        if !(1..=10 * MAX_POPULATION).contains(&self.sessions_per_generation) {
            return bad(
                "sessionsPerGeneration",
                format!(
                    "sessionsPerGeneration must be between 1 and {}",
                    10 * MAX_POPULATION
                ),
            );
        }
        if let Some(h) = self.half_life_generations
            && !(h.is_finite() && h > 0.0)
        {
            return bad(
                "halfLifeGenerations",
                "halfLifeGenerations must be a positive number of generations (or null)".into(),
            );
        }
        Ok(())
    }

    /// How much a result `age` generations old counts: `0.5^(age / halfLife)`, 1 when fresh
    /// or when there is no half-life.
    pub fn weight(&self, age: u32) -> f64 {
        match self.half_life_generations {
            Some(h) => 0.5f64.powf(age as f64 / h),
            None => 1.0,
        }
    }
}

/// A genome in the population.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// Unique within the population, never reused.
    pub id: u64,
    pub genome: Genome,
    /// The generation it was created in.
    pub born: u32,
    /// Sessions given this member in the current generation (for an even spread).
    pub assigned: u32,
}

/// One completed session's fitness, for the member it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScoredResult {
    pub member_id: u64,
    /// The generation in which it was recorded (its age is counted from there).
    pub generation: u32,
    pub fitness: f64,
}

/// What a generation achieved, kept for the fitness-per-generation chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationSummary {
    pub generation: u32,
    /// Sessions scored in this generation.
    pub sessions: usize,
    /// Mean and best raw fitness of those sessions.
    pub mean_fitness: f64,
    pub best_fitness: f64,
    /// The best member by weighted fitness when the generation closed.
    pub best_member: u64,
    pub best_genome: Genome,
}

/// A session's genome from the population.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub member_id: u64,
    pub generation: u32,
    pub genome: Genome,
}

/// What `record` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    /// False when the member is no longer in the population (its session outlived it): the
    /// result is the caller's to keep for insights, but it cannot steer breeding any more.
    pub counted: bool,
    /// The generation that just closed, if this result completed it.
    pub advanced: Option<GenerationSummary>,
}

/// One task type's population with everything needed to continue it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Population {
    pub task_type: TaskType,
    pub config: EvolutionConfig,
    pub generation: u32,
    pub members: Vec<Member>,
    /// Results of the current members (older members' results are dropped with them).
    pub results: Vec<ScoredResult>,
    pub next_id: u64,
    pub rng: SeededRng,
    /// One entry per closed generation.
    pub history: Vec<GenerationSummary>,
}

/// Steps per unit of a stored gene value (1e-4 resolution; see the module comment).
pub const GENE_STEPS: f64 = 1e4;
/// Steps per unit of a stored fitness value (1e-6 resolution).
pub const FITNESS_STEPS: f64 = 1e6;

/// `x` at `1 / steps`: the double nearest to a short decimal (dividing an integer by an exact
/// power of ten rounds correctly; multiplying by 1e-4 would not).
fn round_to(x: f64, steps: f64) -> f64 {
    (x * steps).round() / steps
}

/// The genome with its numbers at 1 / [`GENE_STEPS`] (within range: the bounds are multiples).
pub fn quantized(mut g: Genome) -> Genome {
    for gene in Gene::ALL {
        if let GeneValue::Number(x) = g.get(gene) {
            let r = gene.range();
            set_valid(
                &mut g,
                gene,
                GeneValue::Number(r.clamp(round_to(x, GENE_STEPS))),
            );
        }
    }
    g
}

/// A genome drawn uniformly: numbers over their range, categories over their values.
pub fn random_genome(rng: &mut SeededRng) -> Genome {
    let mut g = Genome::default();
    for gene in Gene::ALL {
        let value = if gene.is_categorical() {
            GeneValue::Category(rng.below(gene.options().len()))
        } else {
            let r = gene.range();
            GeneValue::Number(r.clamp(r.min + rng.unit() * r.width()))
        };
        set_valid(&mut g, gene, value);
    }
    quantized(g)
}

/// Sets a value that is valid by construction (drawn or clamped within the gene's range).
fn set_valid(g: &mut Genome, gene: Gene, value: GeneValue) {
    let set = g.set(gene, value);
    debug_assert!(set.is_ok(), "{set:?}");
}

impl Population {
    /// A first generation: the founders given (checked; e.g. the concept's evolved patterns),
    /// else the default genome, then random genomes up to the population size.
    pub fn new(
        task_type: TaskType,
        config: EvolutionConfig,
        founders: &[Genome],
        seed: u64,
    ) -> Result<Population, DomainError> {
        config.validate()?;
        for f in founders {
            f.validate()?;
        }
        let mut rng = SeededRng::new(seed);
        let mut genomes: Vec<Genome> = founders
            .iter()
            .take(config.population_size)
            .cloned()
            .map(quantized)
            .collect();
        if genomes.is_empty() {
            genomes.push(Genome::default());
        }
        while genomes.len() < config.population_size {
            genomes.push(random_genome(&mut rng));
        }
        let members: Vec<Member> = genomes
            .into_iter()
            .enumerate()
            .map(|(i, genome)| Member {
                id: i as u64,
                genome,
                born: 0,
                assigned: 0,
            })
            .collect();
        Ok(Population {
            task_type,
            next_id: members.len() as u64,
            config,
            generation: 0,
            members,
            results: Vec::new(),
            rng,
            history: Vec::new(),
        })
    }

    /// The genome for a new session: the member with the fewest sessions in this generation.
    pub fn assign(&mut self) -> Assignment {
        let generation = self.generation;
        let m = self
            .members
            .iter_mut()
            .min_by_key(|m| m.assigned)
            .expect("a population is never empty");
        m.assigned += 1;
        Assignment {
            member_id: m.id,
            generation,
            genome: m.genome.clone(),
        }
    }

    /// Records a completed session's fitness for the member it ran; advances the generation
    /// when this completes it.
    pub fn record(&mut self, member_id: u64, fitness: f64) -> Result<Recorded, DomainError> {
        if !fitness.is_finite() {
            return Err(DomainError::invalid(
                "fitness",
                "fitness must be a finite number",
            ));
        }
        if !self.members.iter().any(|m| m.id == member_id) {
            return Ok(Recorded {
                counted: false,
                advanced: None,
            });
        }
        self.results.push(ScoredResult {
            member_id,
            generation: self.generation,
            fitness: round_to(fitness, FITNESS_STEPS),
        });
        let advanced = (self.scored_this_generation() >= self.config.sessions_per_generation)
            .then(|| self.advance());
        Ok(Recorded {
            counted: true,
            advanced,
        })
    }

    /// Sessions of current members scored in the current generation.
    pub fn scored_this_generation(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.generation == self.generation)
            .count()
    }

    /// A member's age-weighted mean fitness and the number of results behind it.
    pub fn member_fitness(&self, member_id: u64) -> Option<(f64, usize)> {
        let (mut sum, mut weights, mut n) = (0.0, 0.0, 0);
        for r in self.results.iter().filter(|r| r.member_id == member_id) {
            let w = self.config.weight(self.generation - r.generation);
            sum += w * r.fitness;
            weights += w;
            n += 1;
        }
        (n > 0).then(|| (sum / weights, n))
    }

    /// Scored members, best first (ties: lower id first).
    pub fn ranking(&self) -> Vec<(&Member, f64)> {
        let mut ranked: Vec<(&Member, f64)> = self
            .members
            .iter()
            .filter_map(|m| self.member_fitness(m.id).map(|(f, _)| (m, f)))
            .collect();
        ranked.sort_by(|(a, fa), (b, fb)| fb.total_cmp(fa).then(a.id.cmp(&b.id)));
        ranked
    }

    /// The best scored member and its weighted fitness.
    pub fn best(&self) -> Option<(&Member, f64)> {
        self.ranking().into_iter().next()
    }

    fn advance(&mut self) -> GenerationSummary {
        let (ranked_ids, summary) = {
            let ranking = self.ranking();
            let this: Vec<f64> = self
                .results
                .iter()
                .filter(|r| r.generation == self.generation)
                .map(|r| r.fitness)
                .collect();
            let (best, _) = ranking[0];
            let summary = GenerationSummary {
                generation: self.generation,
                sessions: this.len(),
                mean_fitness: round_to(this.iter().sum::<f64>() / this.len() as f64, FITNESS_STEPS),
                best_fitness: this.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                best_member: best.id,
                best_genome: best.genome.clone(),
            };
            let ids: Vec<u64> = ranking.iter().map(|(m, _)| m.id).collect();
            (ids, summary)
        };
        let genome_of = |id: u64, members: &[Member]| {
            members
                .iter()
                .find(|m| m.id == id)
                .map(|m| m.genome.clone())
                .expect("ranked members are members")
        };
        let elites: Vec<u64> = ranked_ids
            .iter()
            .copied()
            .take(self.config.elite_count)
            .collect();
        let mut next: Vec<Member> = elites
            .iter()
            .map(|&id| Member {
                assigned: 0,
                ..self
                    .members
                    .iter()
                    .find(|m| m.id == id)
                    .cloned()
                    .expect("elites are members")
            })
            .collect();
        while next.len() < self.config.population_size {
            let a = self.tournament(ranked_ids.len());
            let mut b = self.tournament(ranked_ids.len());
            // Two tries for a second, different parent; a clone of one parent is fine after.
            for _ in 0..2 {
                if b != a || ranked_ids.len() == 1 {
                    break;
                }
                b = self.tournament(ranked_ids.len());
            }
            let child = self.breed(
                &genome_of(ranked_ids[a], &self.members),
                &genome_of(ranked_ids[b], &self.members),
            );
            next.push(Member {
                id: self.next_id,
                genome: child,
                born: self.generation + 1,
                assigned: 0,
            });
            self.next_id += 1;
        }
        self.results.retain(|r| elites.contains(&r.member_id));
        self.members = next;
        self.generation += 1;
        self.history.push(summary.clone());
        summary
    }

    /// Index (rank) of the tournament's winner among `ranked` scored members: the best rank
    /// of `tournamentSize` draws with replacement.
    fn tournament(&mut self, ranked: usize) -> usize {
        (0..self.config.tournament_size)
            .map(|_| self.rng.below(ranked))
            .min()
            .unwrap_or(0)
    }

    /// Uniform crossover, then mutation (see the module comment).
    fn breed(&mut self, a: &Genome, b: &Genome) -> Genome {
        let mut child = a.clone();
        for gene in Gene::ALL {
            let mut value = if self.rng.chance(0.5) {
                a.get(gene)
            } else {
                b.get(gene)
            };
            if self.rng.chance(self.config.mutation_rate) {
                value = self.mutate(gene, value);
            }
            set_valid(&mut child, gene, value);
        }
        quantized(child)
    }

    fn mutate(&mut self, gene: Gene, value: GeneValue) -> GeneValue {
        match value {
            GeneValue::Number(x) => {
                let r = gene.range();
                let step = self.rng.gaussian() * self.config.mutation_sigma * r.width();
                GeneValue::Number(r.clamp(x + step))
            }
            GeneValue::Category(i) => {
                let n = gene.options().len();
                let j = self.rng.below(n - 1);
                GeneValue::Category(if j >= i { j + 1 } else { j })
            }
        }
    }
}

#[cfg(test)]
#[path = "evolution_tests.rs"]
mod tests;
