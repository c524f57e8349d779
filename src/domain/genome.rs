//! The collaboration genome (concept, "Evolutionary Optimization via Genetic Algorithms"):
//! the settings a session runs under, bred per task type by `evolution` from the fitness in
//! `fitness`. This file holds the genes, their ranges and defaults, and their validation; what
//! each gene changes in the hub's behaviour is decided where the session applies it.
//!
//! | gene | type | range | default | unit / meaning | source |
//! |---|---|---|---|---|---|
//! | `taskAllocation` | skillBased, roundRobin, random, loadBalanced | | skillBased | default assignment strategy | concept (values, default) |
//! | `parallelWorkThreshold` | number | 0..=1 | 0.8 | confidence before parallel execution; higher = more parallel work | concept (0.8; 0.5 "more sequential", 0.9 "high parallel") |
//! | `contextSyncFrequency` | number | 1..=120 | 5 | minutes between context-sync reminders | concept (5, 15 min); range ours |
//! | `messageVerbosity` | minimal, standard, detailed | | standard | detail in events and digests | concept |
//! | `handshakeStrictness` | number | 0..=1 | 0.7 | 0 = loose, 1 = strict protocol | concept (range and default) |
//! | `roleRotationInterval` | number | 5..=240 | 30 | minutes per driver | concept (15, 30, 45 min); range ours |
//! | `navigatorAutonomy` | number | 0..=1 | 0.6 | navigator's freedom to change code | concept (0.6, 0.8); range ours (a share) |
//! | `reviewRequirement` | number | 0..=1 | 0.6 | threshold for mandatory review; 1 = everything reviewed | concept (0.6, 0.8, "1.0 everything") |
//! | `briefingDepth` | minimal, standard, comprehensive | | standard | default resume briefing | concept |
//! | `checkpointFrequency` | number | 1..=60 | 10 | minutes between auto-saves | concept (10 min); range ours |
//! | `conflictResolution` | driver, navigator, consensus | | navigator | who settles a dispute | concept |
//!
//! Numbers are `f64` (fractions of a minute allowed, as `roleRotationInterval` already is on
//! session create) so that Gaussian mutation needs no rounding. The genome's ranges are the
//! search space of the genetic algorithm, deliberately narrower than what a session accepts
//! when set by hand (a session may turn rotation off or save every 10 s; a bred genome always
//! rotates, at most every 4 hours, and saves at least hourly).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DomainError;
use super::briefing;
use super::task::Strategy;

/// How much detail events and digests carry (concept `messageVerbosity`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum MessageVerbosity {
    Minimal,
    #[default]
    Standard,
    Detailed,
}

/// How deep the default resume briefing goes (concept `briefingDepth`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum BriefingDepth {
    Minimal,
    #[default]
    Standard,
    Comprehensive,
}

impl BriefingDepth {
    /// The concept names the depths differently in its two sections; the resume strategies
    /// (`briefing::Strategy`) are quick / standard / deep.
    pub fn resume_strategy(self) -> briefing::Strategy {
        match self {
            BriefingDepth::Minimal => briefing::Strategy::Quick,
            BriefingDepth::Standard => briefing::Strategy::Standard,
            BriefingDepth::Comprehensive => briefing::Strategy::Deep,
        }
    }
}

/// Who settles a dispute (concept `conflictResolution`): the driver, the navigator, or a vote
/// of the participants.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema, Default,
)]
#[serde(rename_all = "camelCase")]
pub enum ConflictResolution {
    Driver,
    /// The concept's example genome.
    #[default]
    Navigator,
    Consensus,
}

/// The genes, in the concept's order. Field names serialize as the concept spells them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Genome {
    pub task_allocation: Strategy,
    pub parallel_work_threshold: f64,
    pub context_sync_frequency: f64,
    pub message_verbosity: MessageVerbosity,
    pub handshake_strictness: f64,
    pub role_rotation_interval: f64,
    pub navigator_autonomy: f64,
    pub review_requirement: f64,
    pub briefing_depth: BriefingDepth,
    pub checkpoint_frequency: f64,
    pub conflict_resolution: ConflictResolution,
}

/// The concept's example genome (its values are this file's defaults).
impl Default for Genome {
    fn default() -> Self {
        Genome {
            task_allocation: Strategy::SkillBased,
            parallel_work_threshold: Gene::ParallelWorkThreshold.range().default,
            context_sync_frequency: Gene::ContextSyncFrequency.range().default,
            message_verbosity: MessageVerbosity::Standard,
            handshake_strictness: Gene::HandshakeStrictness.range().default,
            role_rotation_interval: Gene::RoleRotationInterval.range().default,
            navigator_autonomy: Gene::NavigatorAutonomy.range().default,
            review_requirement: Gene::ReviewRequirement.range().default,
            briefing_depth: BriefingDepth::Standard,
            checkpoint_frequency: Gene::CheckpointFrequency.range().default,
            conflict_resolution: ConflictResolution::Navigator,
        }
    }
}

/// A gene by name, so that breeding and insights can walk the genome without knowing its
/// fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Gene {
    TaskAllocation,
    ParallelWorkThreshold,
    ContextSyncFrequency,
    MessageVerbosity,
    HandshakeStrictness,
    RoleRotationInterval,
    NavigatorAutonomy,
    ReviewRequirement,
    BriefingDepth,
    CheckpointFrequency,
    ConflictResolution,
}

/// Where a numeric gene may lie, and what it measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumberRange {
    pub min: f64,
    pub max: f64,
    pub default: f64,
    pub unit: &'static str,
}

impl NumberRange {
    pub fn width(&self) -> f64 {
        self.max - self.min
    }

    pub fn clamp(&self, x: f64) -> f64 {
        x.clamp(self.min, self.max)
    }
}

/// A gene's value as breeding sees it: a number, or the index of a category in
/// [`Gene::options`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GeneValue {
    Number(f64),
    Category(usize),
}

const TASK_ALLOCATIONS: [Strategy; 4] = [
    Strategy::SkillBased,
    Strategy::RoundRobin,
    Strategy::Random,
    Strategy::LoadBalanced,
];
const VERBOSITIES: [MessageVerbosity; 3] = [
    MessageVerbosity::Minimal,
    MessageVerbosity::Standard,
    MessageVerbosity::Detailed,
];
const DEPTHS: [BriefingDepth; 3] = [
    BriefingDepth::Minimal,
    BriefingDepth::Standard,
    BriefingDepth::Comprehensive,
];
const RESOLUTIONS: [ConflictResolution; 3] = [
    ConflictResolution::Driver,
    ConflictResolution::Navigator,
    ConflictResolution::Consensus,
];

fn index_of<T: PartialEq>(all: &[T], x: &T) -> usize {
    all.iter().position(|a| a == x).unwrap_or(0)
}

impl Gene {
    pub const ALL: [Gene; 11] = [
        Gene::TaskAllocation,
        Gene::ParallelWorkThreshold,
        Gene::ContextSyncFrequency,
        Gene::MessageVerbosity,
        Gene::HandshakeStrictness,
        Gene::RoleRotationInterval,
        Gene::NavigatorAutonomy,
        Gene::ReviewRequirement,
        Gene::BriefingDepth,
        Gene::CheckpointFrequency,
        Gene::ConflictResolution,
    ];

    /// The gene's JSON name (also the `field` of its validation errors).
    pub fn name(self) -> &'static str {
        match self {
            Gene::TaskAllocation => "taskAllocation",
            Gene::ParallelWorkThreshold => "parallelWorkThreshold",
            Gene::ContextSyncFrequency => "contextSyncFrequency",
            Gene::MessageVerbosity => "messageVerbosity",
            Gene::HandshakeStrictness => "handshakeStrictness",
            Gene::RoleRotationInterval => "roleRotationInterval",
            Gene::NavigatorAutonomy => "navigatorAutonomy",
            Gene::ReviewRequirement => "reviewRequirement",
            Gene::BriefingDepth => "briefingDepth",
            Gene::CheckpointFrequency => "checkpointFrequency",
            Gene::ConflictResolution => "conflictResolution",
        }
    }

    /// Range, default and unit of a numeric gene (see the table at the top); a category's
    /// range is its option indices.
    pub fn range(self) -> NumberRange {
        let (min, max, default, unit) = match self {
            Gene::ParallelWorkThreshold => (0.0, 1.0, 0.8, "confidence (0..1)"),
            Gene::ContextSyncFrequency => (1.0, 120.0, 5.0, "minutes"),
            Gene::HandshakeStrictness => (0.0, 1.0, 0.7, "0 = loose, 1 = strict"),
            Gene::RoleRotationInterval => (5.0, 240.0, 30.0, "minutes"),
            Gene::NavigatorAutonomy => (0.0, 1.0, 0.6, "share (0..1)"),
            Gene::ReviewRequirement => (0.0, 1.0, 0.6, "threshold (0..1)"),
            Gene::CheckpointFrequency => (1.0, 60.0, 10.0, "minutes"),
            categorical => {
                let n = categorical.options().len() as f64;
                (0.0, n - 1.0, 0.0, "option")
            }
        };
        NumberRange {
            min,
            max,
            default,
            unit,
        }
    }

    /// The values of a categorical gene, as JSON spells them; empty for a numeric gene.
    pub fn options(self) -> &'static [&'static str] {
        match self {
            Gene::TaskAllocation => &["skillBased", "roundRobin", "random", "loadBalanced"],
            Gene::MessageVerbosity => &["minimal", "standard", "detailed"],
            Gene::BriefingDepth => &["minimal", "standard", "comprehensive"],
            Gene::ConflictResolution => &["driver", "navigator", "consensus"],
            _ => &[],
        }
    }

    pub fn is_categorical(self) -> bool {
        !self.options().is_empty()
    }
}

impl Genome {
    pub fn get(&self, gene: Gene) -> GeneValue {
        use GeneValue::{Category, Number};
        match gene {
            Gene::TaskAllocation => Category(index_of(&TASK_ALLOCATIONS, &self.task_allocation)),
            Gene::ParallelWorkThreshold => Number(self.parallel_work_threshold),
            Gene::ContextSyncFrequency => Number(self.context_sync_frequency),
            Gene::MessageVerbosity => Category(index_of(&VERBOSITIES, &self.message_verbosity)),
            Gene::HandshakeStrictness => Number(self.handshake_strictness),
            Gene::RoleRotationInterval => Number(self.role_rotation_interval),
            Gene::NavigatorAutonomy => Number(self.navigator_autonomy),
            Gene::ReviewRequirement => Number(self.review_requirement),
            Gene::BriefingDepth => Category(index_of(&DEPTHS, &self.briefing_depth)),
            Gene::CheckpointFrequency => Number(self.checkpoint_frequency),
            Gene::ConflictResolution => Category(index_of(&RESOLUTIONS, &self.conflict_resolution)),
        }
    }

    /// Sets one gene. A value of the wrong kind or out of range is refused with the gene's
    /// name as the field (breeding clamps before it sets, so it never sees this).
    pub fn set(&mut self, gene: Gene, value: GeneValue) -> Result<(), DomainError> {
        let wrong_kind = || {
            DomainError::invalid(
                gene.name(),
                format!("{} takes a {}", gene.name(), kind_word(gene)),
            )
        };
        match value {
            GeneValue::Number(x) => {
                if gene.is_categorical() {
                    return Err(wrong_kind());
                }
                check_number(gene, x)?;
                *self.number_mut(gene) = x;
            }
            GeneValue::Category(i) => {
                let options = gene.options();
                if options.is_empty() {
                    return Err(wrong_kind());
                }
                if i >= options.len() {
                    return Err(DomainError::invalid(
                        gene.name(),
                        format!("{} is one of {}", gene.name(), options.join(", ")),
                    ));
                }
                match gene {
                    Gene::TaskAllocation => self.task_allocation = TASK_ALLOCATIONS[i],
                    Gene::MessageVerbosity => self.message_verbosity = VERBOSITIES[i],
                    Gene::BriefingDepth => self.briefing_depth = DEPTHS[i],
                    _ => self.conflict_resolution = RESOLUTIONS[i],
                }
            }
        }
        Ok(())
    }

    fn number_mut(&mut self, gene: Gene) -> &mut f64 {
        match gene {
            Gene::ParallelWorkThreshold => &mut self.parallel_work_threshold,
            Gene::ContextSyncFrequency => &mut self.context_sync_frequency,
            Gene::HandshakeStrictness => &mut self.handshake_strictness,
            Gene::RoleRotationInterval => &mut self.role_rotation_interval,
            Gene::NavigatorAutonomy => &mut self.navigator_autonomy,
            Gene::ReviewRequirement => &mut self.review_requirement,
            _ => &mut self.checkpoint_frequency,
        }
    }

    /// Every numeric gene is finite and within its range; the first one that is not is named.
    /// (Categories are valid by construction: serde refuses unknown values.)
    pub fn validate(&self) -> Result<(), DomainError> {
        for gene in Gene::ALL {
            if let GeneValue::Number(x) = self.get(gene) {
                check_number(gene, x)?;
            }
        }
        Ok(())
    }

    /// Reads a genome as the concept writes it, checked: the bare genes, `{"genes": {…}}`, or
    /// `{"collaborationGenome": {"genes": {…}, "fitness": {…}}}` (the concept's `fitness` block
    /// there is illustrative; ours is computed by `fitness`, so it is ignored). Missing genes
    /// take their defaults; an unknown gene or a bad value is refused, naming it.
    pub fn from_concept_json(value: &Value) -> Result<Genome, DomainError> {
        let mut v = value;
        if let Some(inner) = v.get("collaborationGenome") {
            v = inner;
        }
        if let Some(genes) = v.get("genes") {
            v = genes;
        }
        let genome: Genome = serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            let message = format!("{path}: {}", e.into_inner());
            // The path names the gene when serde got that far; `field` must be static.
            let field = Gene::ALL
                .into_iter()
                .find(|g| path == g.name())
                .map_or("genes", Gene::name);
            DomainError::invalid(field, message)
        })?;
        genome.validate()?;
        Ok(genome)
    }
}

fn kind_word(gene: Gene) -> String {
    if gene.is_categorical() {
        format!("category ({})", gene.options().join(", "))
    } else {
        "number".into()
    }
}

fn check_number(gene: Gene, x: f64) -> Result<(), DomainError> {
    let r = gene.range();
    if !x.is_finite() || x < r.min || x > r.max {
        return Err(DomainError::invalid(
            gene.name(),
            format!(
                "{} must be between {} and {} ({}), got {x}",
                gene.name(),
                r.min,
                r.max,
                r.unit
            ),
        ));
    }
    Ok(())
}

/// Longest custom task-type label, in characters.
pub const MAX_TASK_TYPE_CHARS: usize = 64;

/// The kind of work a session does; each has its own population (concept "evolvedPatterns").
/// Serialized as a plain string: the four named kinds, or any other short label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TaskType {
    Refactoring,
    BugHunting,
    FeatureDevelopment,
    CodeReview,
    /// A team's own label: 1 to 64 characters, no control characters, no leading or trailing
    /// whitespace (it keys a population, so " x" and "x" must not be two).
    Custom(String),
}

impl TaskType {
    pub fn as_str(&self) -> &str {
        match self {
            TaskType::Refactoring => "refactoring",
            TaskType::BugHunting => "bugHunting",
            TaskType::FeatureDevelopment => "featureDevelopment",
            TaskType::CodeReview => "codeReview",
            TaskType::Custom(label) => label,
        }
    }

    /// A named kind, else a checked custom label.
    pub fn parse(s: &str) -> Result<TaskType, DomainError> {
        let named = [
            TaskType::Refactoring,
            TaskType::BugHunting,
            TaskType::FeatureDevelopment,
            TaskType::CodeReview,
        ]
        .into_iter()
        .find(|t| t.as_str() == s);
        if let Some(t) = named {
            return Ok(t);
        }
        let bad = |why: &str| Err(DomainError::invalid("taskType", format!("taskType {why}")));
        if s.trim().is_empty() {
            return bad("must not be empty");
        }
        if s.chars().count() > MAX_TASK_TYPE_CHARS {
            return bad(&format!("is at most {MAX_TASK_TYPE_CHARS} characters"));
        }
        if s.chars().any(char::is_control) {
            return bad("must not contain control characters");
        }
        if s.trim() != s {
            return bad("must not start or end with whitespace");
        }
        Ok(TaskType::Custom(s.to_owned()))
    }
}

impl TryFrom<String> for TaskType {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        TaskType::parse(&s).map_err(|e| e.to_string())
    }
}

impl From<TaskType> for String {
    fn from(t: TaskType) -> String {
        t.as_str().to_owned()
    }
}

impl std::fmt::Display for TaskType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The concept's "Collaboration Genome Structure", comments removed.
    const CONCEPT_GENOME: &str = r#"{
      "collaborationGenome": {
        "genes": {
          "taskAllocation": "skillBased",
          "parallelWorkThreshold": 0.8,
          "contextSyncFrequency": 5,
          "messageVerbosity": "standard",
          "handshakeStrictness": 0.7,
          "roleRotationInterval": 30,
          "navigatorAutonomy": 0.6,
          "reviewRequirement": 0.6,
          "briefingDepth": "standard",
          "checkpointFrequency": 10,
          "conflictResolution": "navigator"
        },
        "fitness": {
          "completionTime": 45,
          "errorRate": 0.02,
          "tokenEfficiency": 0.94,
          "collaborationSmoothness": 0.9,
          "codeQuality": 0.88,
          "knowledgeRetention": 0.85
        }
      }
    }"#;

    #[test]
    fn the_concepts_genome_parses_and_is_the_default() {
        let v: Value = serde_json::from_str(CONCEPT_GENOME).unwrap();
        let g = Genome::from_concept_json(&v).unwrap();
        assert_eq!(g, Genome::default());
        assert_eq!(g.task_allocation, Strategy::SkillBased);
        assert_eq!(g.context_sync_frequency, 5.0);
        assert_eq!(g.conflict_resolution, ConflictResolution::Navigator);
        // Bare genes, and the genes block alone, read the same.
        let genes = &v["collaborationGenome"]["genes"];
        assert_eq!(Genome::from_concept_json(genes).unwrap(), g);
        let plain: Genome = serde_json::from_value(genes.clone()).unwrap();
        assert_eq!(plain, g);
        // And it writes back in the concept's spelling (numbers as floats: 5.0 for 5).
        let written = serde_json::to_value(&g).unwrap();
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&written), keys(genes));
        assert_eq!(written["briefingDepth"], "standard");
        assert_eq!(written["contextSyncFrequency"], 5.0);
        assert_eq!(Genome::from_concept_json(&written).unwrap(), g);
    }

    #[test]
    fn the_concepts_evolved_patterns_parse_as_partial_genomes() {
        let refactoring = json!({"roleRotationInterval": 15, "handshakeStrictness": 0.9,
            "reviewRequirement": 0.8, "parallelWorkThreshold": 0.5});
        let bug_hunting = json!({"taskAllocation": "skillBased", "briefingDepth": "comprehensive",
            "messageVerbosity": "detailed", "navigatorAutonomy": 0.8});
        let code_review = json!({"taskAllocation": "roundRobin", "reviewRequirement": 1.0,
            "messageVerbosity": "detailed", "handshakeStrictness": 1.0});
        let r = Genome::from_concept_json(&refactoring).unwrap();
        assert_eq!(r.role_rotation_interval, 15.0);
        assert_eq!(r.briefing_depth, BriefingDepth::Standard, "default kept");
        let b = Genome::from_concept_json(&bug_hunting).unwrap();
        assert_eq!(b.briefing_depth.resume_strategy(), briefing::Strategy::Deep);
        let c = Genome::from_concept_json(&code_review).unwrap();
        assert_eq!(c.task_allocation, Strategy::RoundRobin);
        assert_eq!(c.review_requirement, 1.0);
    }

    fn field_of(r: Result<Genome, DomainError>) -> &'static str {
        match r {
            Err(DomainError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn validation_names_the_bad_gene() {
        let read = |v: Value| Genome::from_concept_json(&v);
        assert_eq!(
            field_of(read(json!({"handshakeStrictness": 1.5}))),
            "handshakeStrictness"
        );
        assert_eq!(
            field_of(read(json!({"roleRotationInterval": 2}))),
            "roleRotationInterval"
        );
        assert_eq!(
            field_of(read(json!({"checkpointFrequency": -1}))),
            "checkpointFrequency"
        );
        assert_eq!(
            field_of(read(json!({"briefingDepth": "deep"}))),
            "briefingDepth"
        );
        assert_eq!(
            field_of(read(json!({"taskAllocation": 3}))),
            "taskAllocation"
        );
        assert_eq!(field_of(read(json!({"handshakeStrictnes": 0.5}))), "genes");
        let mut g = Genome {
            navigator_autonomy: f64::NAN,
            ..Genome::default()
        };
        let Err(DomainError::Invalid { field, message }) = g.validate() else {
            panic!("NaN accepted");
        };
        assert_eq!(field, "navigatorAutonomy");
        assert!(message.contains("between 0 and 1"), "{message}");
        assert!(matches!(
            g.set(Gene::BriefingDepth, GeneValue::Number(1.0)),
            Err(DomainError::Invalid {
                field: "briefingDepth",
                ..
            })
        ));
        assert!(matches!(
            g.set(Gene::ConflictResolution, GeneValue::Category(3)),
            Err(DomainError::Invalid {
                field: "conflictResolution",
                ..
            })
        ));
    }

    #[test]
    fn get_and_set_walk_every_gene() {
        let mut g = Genome::default();
        for gene in Gene::ALL {
            let v = match g.get(gene) {
                GeneValue::Number(_) => GeneValue::Number(gene.range().max),
                GeneValue::Category(_) => GeneValue::Category(gene.options().len() - 1),
            };
            g.set(gene, v).unwrap();
            assert_eq!(g.get(gene), v, "{}", gene.name());
        }
        assert!(g.validate().is_ok());
        // Category indices follow `options`, which follow the JSON names.
        let json = serde_json::to_value(&g).unwrap();
        for gene in Gene::ALL.into_iter().filter(|g| g.is_categorical()) {
            let GeneValue::Category(i) = g.get(gene) else {
                unreachable!()
            };
            assert_eq!(json[gene.name()], gene.options()[i]);
        }
    }

    #[test]
    fn task_types_are_named_or_short_printable_labels() {
        assert_eq!(TaskType::parse("bugHunting"), Ok(TaskType::BugHunting));
        let t: TaskType = serde_json::from_value(json!("migration")).unwrap();
        assert_eq!(t, TaskType::Custom("migration".into()));
        assert_eq!(serde_json::to_value(&t).unwrap(), json!("migration"));
        assert_eq!(
            serde_json::to_value(TaskType::CodeReview).unwrap(),
            json!("codeReview")
        );
        for bad in ["", "  ", " x", "a\nb", &"x".repeat(65)] {
            assert!(
                matches!(
                    TaskType::parse(bad),
                    Err(DomainError::Invalid {
                        field: "taskType",
                        ..
                    })
                ),
                "{bad:?}"
            );
            assert!(serde_json::from_value::<TaskType>(json!(bad)).is_err());
        }
    }
}

/// Where a session's genome came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum GenomeOrigin {
    /// Neither a genome nor a task type was named: the default genome.
    #[default]
    Default,
    /// Given on create.
    Explicit,
    /// Drawn from the task type's population.
    #[serde(rename_all = "camelCase")]
    Population { member_id: u64, generation: u32 },
}

/// The task type a session's work belongs to when none is named.
pub const GENERAL_TASK_TYPE: &str = "general";

/// A session's genome as stored with the session and shown on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionGenome {
    pub task_type: TaskType,
    pub genome: Genome,
    pub origin: GenomeOrigin,
    /// Settings given explicitly on create that replaced what the genome would have set. A
    /// population member is credited with the session's fitness only when this is empty: it
    /// did not run as bred.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<String>,
}

impl Default for SessionGenome {
    fn default() -> Self {
        SessionGenome {
            task_type: TaskType::Custom(GENERAL_TASK_TYPE.into()),
            genome: Genome::default(),
            origin: GenomeOrigin::Default,
            overridden: Vec::new(),
        }
    }
}

impl SessionGenome {
    /// The population member to credit with this session's fitness, if any.
    pub fn credited_member(&self) -> Option<u64> {
        match self.origin {
            GenomeOrigin::Population { member_id, .. } if self.overridden.is_empty() => {
                Some(member_id)
            }
            _ => None,
        }
    }
}
