//! How well a session went: what the hub measured (`SessionOutcome`) and the score the
//! genetic algorithm breeds on (`FitnessScore`), with every term shown so the dashboard can
//! explain the number.
//!
//! The default formula is the concept's `calculateFitness`, term for term:
//!
//! ```text
//! fitness = tasksCompleted                      × 100
//!         + (10000 / tokensUsed)                × 50
//!         + 1 / (errorsIntroduced + 1)          × 200
//!         + collaborationSmoothness             × 150
//!         + codeQuality                         × 100
//! ```
//!
//! The concept leaves three inputs to be defined from measurements; here they are:
//! - `errorsIntroduced` = errors reported + build failures (the concept's example sums its
//!   syntax, logic and style errors; build failures are the errors the hub sees itself).
//! - `collaborationSmoothness` ("successful handoffs ratio" in the concept's genome example)
//!   = (successful handoffs + resolved conflicts) / (handoffs + conflicts raised): a conflict
//!   is a hand-over of a disagreement that must end well too. 1 when neither happened (nothing
//!   went wrong).
//! - `codeQuality` ("test coverage, linting scores") = tests passing / tests written from the
//!   status reports, 0 when no tests were written (no evidence of quality earns nothing).
//!
//! The token term is the concept's own normalization (10 000 tokens = 1), capped at 1 (fewer
//! tokens than the reference earn no more: a tiny reported count must not outweigh the rest);
//! when no token count is known (0) the term is 0 rather than infinite. An estimated count
//! (payload bytes ÷ 4, `tokensEstimated`) is shown but scores 0: it is far below what the
//! models actually read, and scoring it would reward near-empty sessions. Duration, disputes and
//! messages are recorded and shown but not in the default formula (the concept does not score
//! them); their weights exist and are 0 by default.
//!
//! The concept's example metrics score 1486.1 with this formula; the concept prints 8750 next
//! to them, which its own formula does not give.

use serde::{Deserialize, Serialize};

use super::DomainError;

/// What the hub measured about one completed session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct SessionOutcome {
    /// Wall-clock seconds from creation to completion.
    pub duration_secs: u64,
    pub tasks_completed: u32,
    /// Handshakes that passed control (work_complete → control_received or abandoned).
    pub handoffs: u32,
    /// Of those, the ones that ended with control received.
    pub successful_handoffs: u32,
    pub conflicts_raised: u32,
    pub conflicts_resolved: u32,
    /// Disputes raised under the conflict resolution protocol.
    pub disputes: u32,
    pub messages: u32,
    /// From the latest status reports: tests added in this session, and of those passing.
    pub tests_written: u32,
    pub tests_passing: u32,
    pub build_failures: u32,
    /// Errors the participants reported.
    pub errors: u32,
    /// Tokens the participants used (0: unknown).
    pub tokens_used: u64,
    /// `tokensUsed` was estimated from payload sizes, not reported by the agents.
    pub tokens_estimated: bool,
}

impl SessionOutcome {
    /// Counts that cannot be: more successes than attempts. The offending field is named.
    pub fn validate(&self) -> Result<(), DomainError> {
        let pairs = [
            (
                "successfulHandoffs",
                self.successful_handoffs,
                "handoffs",
                self.handoffs,
            ),
            (
                "conflictsResolved",
                self.conflicts_resolved,
                "conflictsRaised",
                self.conflicts_raised,
            ),
            (
                "testsPassing",
                self.tests_passing,
                "testsWritten",
                self.tests_written,
            ),
        ];
        for (field, part, whole_name, whole) in pairs {
            if part > whole {
                return Err(DomainError::invalid(
                    field,
                    format!("{field} ({part}) cannot exceed {whole_name} ({whole})"),
                ));
            }
        }
        Ok(())
    }

    pub fn errors_introduced(&self) -> u32 {
        self.errors.saturating_add(self.build_failures)
    }

    /// See the module comment; in `[0, 1]`.
    pub fn collaboration_smoothness(&self) -> f64 {
        let attempts = self.handoffs as f64 + self.conflicts_raised as f64;
        if attempts == 0.0 {
            return 1.0;
        }
        ((self.successful_handoffs as f64 + self.conflicts_resolved as f64) / attempts).min(1.0)
    }

    /// See the module comment; in `[0, 1]`.
    pub fn code_quality(&self) -> f64 {
        if self.tests_written == 0 {
            return 0.0;
        }
        (self.tests_passing as f64 / self.tests_written as f64).min(1.0)
    }
}

/// The formula's weights: the concept's by default. Each multiplies one normalized term.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct FitnessWeights {
    pub tasks_completed: f64,
    pub token_efficiency: f64,
    /// Tokens that make the token term 1 (concept: 10 000).
    pub token_reference: f64,
    pub error_free: f64,
    pub collaboration_smoothness: f64,
    pub code_quality: f64,
    /// Per hour of duration (negative to reward speed); 0 in the concept.
    pub duration_hours: f64,
    /// Per dispute; 0 in the concept.
    pub disputes: f64,
    /// Per message exchanged; 0 in the concept.
    pub messages: f64,
}

impl Default for FitnessWeights {
    fn default() -> Self {
        FitnessWeights {
            tasks_completed: 100.0,
            token_efficiency: 50.0,
            token_reference: 10_000.0,
            error_free: 200.0,
            collaboration_smoothness: 150.0,
            code_quality: 100.0,
            duration_hours: 0.0,
            disputes: 0.0,
            messages: 0.0,
        }
    }
}

impl FitnessWeights {
    /// Every weight finite, and the token reference positive.
    pub fn validate(&self) -> Result<(), DomainError> {
        let all = [
            ("tasksCompleted", self.tasks_completed),
            ("tokenEfficiency", self.token_efficiency),
            ("tokenReference", self.token_reference),
            ("errorFree", self.error_free),
            ("collaborationSmoothness", self.collaboration_smoothness),
            ("codeQuality", self.code_quality),
            ("durationHours", self.duration_hours),
            ("disputes", self.disputes),
            ("messages", self.messages),
        ];
        for (field, w) in all {
            if !w.is_finite() {
                return Err(DomainError::invalid(
                    field,
                    format!("{field} must be a finite number"),
                ));
            }
        }
        if self.token_reference <= 0.0 {
            return Err(DomainError::invalid(
                "tokenReference",
                "tokenReference must be positive",
            ));
        }
        Ok(())
    }
}

/// One term of the formula: `points = value × weight`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FitnessTerm {
    /// `tasksCompleted`, `tokenEfficiency`, `errorFree`, `collaborationSmoothness`,
    /// `codeQuality`, `durationHours`, `disputes`, `messages`.
    pub name: String,
    /// How the value was computed, e.g. `10000 / 45000 tokens`.
    pub formula: String,
    pub value: f64,
    pub weight: f64,
    pub points: f64,
}

/// A session's fitness with everything that went into it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FitnessScore {
    pub score: f64,
    pub terms: Vec<FitnessTerm>,
    pub inputs: SessionOutcome,
    pub weights: FitnessWeights,
    /// The token term rests on an estimate.
    pub tokens_estimated: bool,
}

/// Scores a measured session. Inputs and weights are checked first (fields named).
pub fn score(
    outcome: &SessionOutcome,
    weights: &FitnessWeights,
) -> Result<FitnessScore, DomainError> {
    outcome.validate()?;
    weights.validate()?;
    let o = outcome;
    // Reported counts only, and at most 1 (the reference or fewer tokens): an estimate from
    // log bytes is far below what the models read and would reward empty sessions, and a
    // tiny reported count must not outweigh everything else.
    let tokens = if o.tokens_used == 0 || o.tokens_estimated {
        0.0
    } else {
        (weights.token_reference / o.tokens_used as f64).min(1.0)
    };
    let errors = o.errors_introduced();
    let hours = o.duration_secs as f64 / 3600.0;
    let raw = [
        (
            "tasksCompleted",
            format!("{} tasks", o.tasks_completed),
            o.tasks_completed as f64,
            weights.tasks_completed,
        ),
        (
            "tokenEfficiency",
            if o.tokens_used == 0 {
                "no token count".to_owned()
            } else if o.tokens_estimated {
                format!("about {} tokens (estimated: not scored)", o.tokens_used)
            } else {
                format!(
                    "{} / {} tokens{}",
                    weights.token_reference,
                    o.tokens_used,
                    if o.tokens_estimated {
                        " (estimated)"
                    } else {
                        ""
                    }
                )
            },
            tokens,
            weights.token_efficiency,
        ),
        (
            "errorFree",
            format!("1 / ({errors} errors + 1)"),
            1.0 / (errors as f64 + 1.0),
            weights.error_free,
        ),
        (
            "collaborationSmoothness",
            format!(
                "({} handoffs ok + {} conflicts resolved) / ({} handoffs + {} conflicts)",
                o.successful_handoffs, o.conflicts_resolved, o.handoffs, o.conflicts_raised
            ),
            o.collaboration_smoothness(),
            weights.collaboration_smoothness,
        ),
        (
            "codeQuality",
            format!(
                "{} passing / {} tests written",
                o.tests_passing, o.tests_written
            ),
            o.code_quality(),
            weights.code_quality,
        ),
        (
            "durationHours",
            format!("{} s / 3600", o.duration_secs),
            hours,
            weights.duration_hours,
        ),
        (
            "disputes",
            format!("{} disputes", o.disputes),
            o.disputes as f64,
            weights.disputes,
        ),
        (
            "messages",
            format!("{} messages", o.messages),
            o.messages as f64,
            weights.messages,
        ),
    ];
    let terms: Vec<FitnessTerm> = raw
        .into_iter()
        .map(|(name, formula, value, weight)| FitnessTerm {
            name: name.to_owned(),
            formula,
            value,
            weight,
            points: value * weight,
        })
        .collect();
    Ok(FitnessScore {
        score: terms.iter().map(|t| t.points).sum(),
        terms,
        inputs: outcome.clone(),
        weights: weights.clone(),
        tokens_estimated: o.tokens_estimated && o.tokens_used > 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The concept's "Fitness Tracking" metrics, in our measured shape.
    fn concept_session() -> SessionOutcome {
        SessionOutcome {
            duration_secs: 180 * 60,
            tasks_completed: 12,
            handoffs: 8,
            successful_handoffs: 7,
            conflicts_raised: 2,
            conflicts_resolved: 2,
            disputes: 0,
            messages: 45,
            tests_written: 23,
            tests_passing: 23,
            build_failures: 0,
            errors: 4, // syntax 0 + logic 1 + style 3
            tokens_used: 45_000,
            tokens_estimated: false,
        }
    }

    #[test]
    fn the_concepts_formula_term_by_term() {
        let s = score(&concept_session(), &FitnessWeights::default()).unwrap();
        let points = |name: &str| s.terms.iter().find(|t| t.name == name).unwrap().points;
        assert_eq!(points("tasksCompleted"), 1200.0);
        assert!((points("tokenEfficiency") - 10_000.0 / 45_000.0 * 50.0).abs() < 1e-9);
        assert_eq!(points("errorFree"), 200.0 / 5.0);
        assert!((points("collaborationSmoothness") - 0.9 * 150.0).abs() < 1e-9);
        assert_eq!(points("codeQuality"), 100.0);
        assert_eq!(points("durationHours"), 0.0);
        assert!((s.score - 1486.111).abs() < 1e-3, "{}", s.score);
        assert_eq!(s.inputs, concept_session());
        assert!(!s.tokens_estimated);
        // The shape the dashboard reads.
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["terms"][1]["name"], "tokenEfficiency");
        assert_eq!(v["terms"][1]["formula"], "10000 / 45000 tokens");
        assert_eq!(v["inputs"]["successfulHandoffs"], 7);
    }

    #[test]
    fn weights_are_configurable_and_estimates_are_labelled() {
        let weights: FitnessWeights =
            serde_json::from_value(json!({"tasksCompleted": 0, "durationHours": -10})).unwrap();
        assert_eq!(
            weights.code_quality, 100.0,
            "unnamed weights keep the concept's"
        );
        let outcome = SessionOutcome {
            tokens_estimated: true,
            ..concept_session()
        };
        let s = score(&outcome, &weights).unwrap();
        // No tasks term, 3 hours at −10, and the estimated tokens' 11.1 not scored.
        assert!(
            (s.score - (1486.111 - 1200.0 - 30.0 - 11.111)).abs() < 1e-3,
            "{}",
            s.score
        );
        assert!(s.tokens_estimated);
        assert_eq!(
            s.terms[1].formula,
            "about 45000 tokens (estimated: not scored)"
        );
        // A tiny reported count earns no more than the reference's worth.
        let tiny = SessionOutcome {
            tokens_used: 1,
            ..concept_session()
        };
        let t = score(&tiny, &FitnessWeights::default()).unwrap();
        assert!((t.terms[1].value - 1.0).abs() < 1e-9, "{:?}", t.terms[1]);
    }

    #[test]
    fn empty_sessions_score_finitely() {
        let s = score(&SessionOutcome::default(), &FitnessWeights::default()).unwrap();
        // No tokens known: 0, not infinity; nothing went wrong: full smoothness and no errors.
        assert_eq!(s.score, 200.0 + 150.0);
        assert_eq!(s.terms[1].formula, "no token count");
    }

    #[test]
    fn impossible_counts_and_weights_name_the_field() {
        let bad = |o: SessionOutcome| match score(&o, &FitnessWeights::default()) {
            Err(DomainError::Invalid { field, .. }) => field,
            other => panic!("accepted: {other:?}"),
        };
        let base = concept_session();
        assert_eq!(
            bad(SessionOutcome {
                successful_handoffs: 9,
                ..base.clone()
            }),
            "successfulHandoffs"
        );
        assert_eq!(
            bad(SessionOutcome {
                conflicts_resolved: 3,
                ..base.clone()
            }),
            "conflictsResolved"
        );
        assert_eq!(
            bad(SessionOutcome {
                tests_passing: 24,
                ..base.clone()
            }),
            "testsPassing"
        );
        let weights = FitnessWeights {
            token_reference: 0.0,
            ..FitnessWeights::default()
        };
        assert!(matches!(
            score(&base, &weights),
            Err(DomainError::Invalid {
                field: "tokenReference",
                ..
            })
        ));
        let weights = FitnessWeights {
            code_quality: f64::INFINITY,
            ..FitnessWeights::default()
        };
        assert!(matches!(
            score(&base, &weights),
            Err(DomainError::Invalid {
                field: "codeQuality",
                ..
            })
        ));
    }
}
