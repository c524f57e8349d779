//! What the completed sessions say about each gene (the concept's "metaLearnings"), with
//! evidence and an honest confidence, or nothing when the data cannot support a claim.
//!
//! Per gene, one question: does fitness differ with this gene?
//! - A categorical gene: each value with enough sessions is compared with all other sessions;
//!   the statistic is the largest |mean(value) − mean(others)| over those values, and the
//!   value that gives it is reported (scoring higher or lower).
//! - A numeric gene: sessions are split at the median of the gene's values into a low half
//!   (≤ median) and a high half (> median; or < / ≥ when that splits ties more evenly); the
//!   statistic is |mean(high) − mean(low)|.
//!
//! Confidence comes from a permutation test: the fitness values are shuffled over the sessions
//! `permutations` times (seeded, so a report is reproducible) and the p-value is
//! `(1 + #{shuffled statistic ≥ observed}) / (1 + permutations)`; taking the maximum over values
//! inside the statistic makes picking the best value part of the test, so it is not a free
//! second look. Shuffling stops early once 20 shuffles have matched the observed statistic
//! (Besag and Clifford's sequential p-value), so genes without an effect cost little. Because
//! every gene is tested, the p-values are adjusted with Holm's method
//! across the genes tested (family-wise error ≤ `alpha`), and a gene is reported only when its
//! adjusted p is below `alpha` (0.05). `confidence` = 1 − adjusted p.
//!
//! Effect sizes: the difference of means (and relative to the others' mean, like the concept's
//! "23 % fewer bugs") and Cohen's d with the pooled standard deviation.
//!
//! Too few samples: a comparison needs at least `minGroupSamples` (10) sessions on each side,
//! so at least 20 sessions in all; a gene without such a comparison is not tested (and does not
//! count in Holm's adjustment). Below that, a mean difference and Cohen's d swing too much
//! between samples to be worth a sentence, however small the p.
//!
//! Sessions count equally here (no half-life): an insight describes the evidence as recorded;
//! the caller chooses which sessions (one task type, a time window) to pass.

use serde::{Deserialize, Serialize};

use super::DomainError;
use super::genome::{Gene, GeneValue, Genome};
use super::seeded_rng::SeededRng;

/// A completed session as the insights see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedSession {
    pub genome: Genome,
    pub fitness: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct InsightConfig {
    /// Sessions needed on each side of a comparison: 10 (at least 2).
    pub min_group_samples: usize,
    /// Family-wise significance level: 0.05.
    pub alpha: f64,
    /// Shuffles per gene: 1999 (p can go down to 0.0005, well under Holm's strictest
    /// threshold 0.05 / 11 genes).
    pub permutations: usize,
    pub seed: u64,
}

impl Default for InsightConfig {
    fn default() -> Self {
        InsightConfig {
            min_group_samples: 10,
            alpha: 0.05,
            permutations: 1999,
            seed: 0,
        }
    }
}

impl InsightConfig {
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.min_group_samples < 2 {
            return Err(DomainError::invalid(
                "minGroupSamples",
                "minGroupSamples must be at least 2",
            ));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(DomainError::invalid(
                "alpha",
                "alpha must be between 0 and 1",
            ));
        }
        if !(99..=100_000).contains(&self.permutations) {
            return Err(DomainError::invalid(
                "permutations",
                "permutations must be between 99 and 100000",
            ));
        }
        Ok(())
    }
}

/// One finding, in the concept's shape (`pattern`, `evidence`, `confidence`, `samples`) plus
/// the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Insight {
    /// The gene's JSON name.
    pub gene: String,
    /// The value (`comprehensive`) or range (`> 0.62`, `≤ 0.62`) that stands out.
    pub group: String,
    /// Whether that group scores higher than the rest.
    pub higher: bool,
    pub pattern: String,
    pub evidence: String,
    pub mean_in_group: f64,
    pub mean_rest: f64,
    /// mean_in_group − mean_rest.
    pub mean_difference: f64,
    /// mean_difference / |mean_rest|; absent when mean_rest is 0.
    pub relative_difference: Option<f64>,
    /// Absent when both sides have no spread at all.
    pub cohens_d: Option<f64>,
    /// The permutation test's p for this gene, and after Holm's adjustment.
    pub p_value: f64,
    pub adjusted_p_value: f64,
    pub confidence: f64,
    /// Sessions in the comparison, in the group and in the rest.
    pub samples: usize,
    pub group_samples: usize,
    pub rest_samples: usize,
}

/// The sessions' split for one gene: a label per session and the labels that may be compared
/// against the rest.
struct Split {
    labels: Vec<usize>,
    /// (label, its description, its session count) for every label with enough on both sides.
    candidates: Vec<(usize, String, usize)>,
    numeric: bool,
}

fn split(gene: Gene, sessions: &[CompletedSession], min: usize) -> Option<Split> {
    let n = sessions.len();
    if n < 2 * min {
        return None;
    }
    if gene.is_categorical() {
        let options = gene.options();
        let labels: Vec<usize> = sessions
            .iter()
            .map(|s| match s.genome.get(gene) {
                GeneValue::Category(i) => i,
                GeneValue::Number(_) => 0,
            })
            .collect();
        let candidates: Vec<(usize, String, usize)> = (0..options.len())
            .filter_map(|v| {
                let k = labels.iter().filter(|&&l| l == v).count();
                (k >= min && n - k >= min).then(|| (v, options[v].to_owned(), k))
            })
            .collect();
        return (!candidates.is_empty()).then_some(Split {
            labels,
            candidates,
            numeric: false,
        });
    }
    let xs: Vec<f64> = sessions
        .iter()
        .map(|s| match s.genome.get(gene) {
            GeneValue::Number(x) => x,
            GeneValue::Category(i) => i as f64,
        })
        .collect();
    let mut sorted = xs.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[(n - 1) / 2];
    // Label 1 is the high half. Of "> median" and "≥ median", the more even split.
    let high_gt = xs.iter().filter(|&&x| x > median).count();
    let high_ge = xs.iter().filter(|&&x| x >= median).count();
    let inclusive = (2 * high_ge).abs_diff(n) < (2 * high_gt).abs_diff(n);
    let labels: Vec<usize> = xs
        .iter()
        .map(|&x| usize::from(if inclusive { x >= median } else { x > median }))
        .collect();
    let high = if inclusive { high_ge } else { high_gt };
    let (hi, lo) = if inclusive {
        (
            format!("≥ {}", round3(median)),
            format!("< {}", round3(median)),
        )
    } else {
        (
            format!("> {}", round3(median)),
            format!("≤ {}", round3(median)),
        )
    };
    (high >= min && n - high >= min).then(|| Split {
        labels,
        // The statistic compares high with low; low's description is used when it is better.
        candidates: vec![(1, hi, high), (0, lo, n - high)],
        numeric: true,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Most labels a split has (the largest category has 4 values; a numeric split has 2).
const MAX_LABELS: usize = 4;

/// The test statistic: the largest |mean(group) − mean(rest)| over the candidates (for a
/// numeric split both candidates give the same value), and the candidate that gives it.
fn statistic(split: &Split, fitness: &[f64], total: f64) -> (f64, usize) {
    let mut s = [0.0; MAX_LABELS];
    for (&l, &f) in split.labels.iter().zip(fitness) {
        s[l] += f;
    }
    let n = fitness.len() as f64;
    let mut best = (f64::NEG_INFINITY, 0);
    for (i, &(label, _, k)) in split.candidates.iter().enumerate() {
        let k = k as f64;
        let diff = (s[label] / k - (total - s[label]) / (n - k)).abs();
        if diff > best.0 {
            best = (diff, i);
        }
    }
    best
}

/// The permutation p-value of `observed`, with Besag and Clifford's sequential stopping: the
/// shuffling stops once `EARLY_STOP_HITS` shuffles reached the observed statistic, with
/// p = hits / shuffles (a valid p-value, 1991); otherwise all `permutations` run and
/// p = (1 + hits) / (1 + permutations). A gene with no effect is thus settled in a few dozen
/// shuffles, and only the promising ones pay for the full count.
fn permutation_p(
    split: &Split,
    fitness: &mut [f64],
    total: f64,
    observed: f64,
    permutations: usize,
    rng: &mut SeededRng,
) -> f64 {
    let mut hits = 0usize;
    for done in 1..=permutations {
        rng.shuffle(fitness);
        // A hair of tolerance: sums in another order can differ in the last bits.
        if statistic(split, fitness, total).0 >= observed * (1.0 - 1e-12) {
            hits += 1;
            if hits == EARLY_STOP_HITS {
                return hits as f64 / done as f64;
            }
        }
    }
    (1 + hits) as f64 / (1 + permutations) as f64
}

/// Shuffles reaching the observed statistic after which a gene's test stops (p ≥ 20 / shuffles
/// done, far above any threshold the test could pass).
const EARLY_STOP_HITS: usize = 20;

struct Tested {
    gene: Gene,
    p: f64,
    insight: Insight,
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

fn test_gene(gene: Gene, sessions: &[CompletedSession], config: &InsightConfig) -> Option<Tested> {
    let split = split(gene, sessions, config.min_group_samples)?;
    let mut fitness: Vec<f64> = sessions.iter().map(|s| s.fitness).collect();
    let total: f64 = fitness.iter().sum();
    let (observed, which) = statistic(&split, &fitness, total);

    // The group that stands out: for a numeric gene whichever half is better.
    let (label, ref desc, _) = split.candidates[which];
    let in_group: Vec<f64> = split
        .labels
        .iter()
        .zip(&fitness)
        .filter(|(l, _)| **l == label)
        .map(|(_, f)| *f)
        .collect();
    let rest: Vec<f64> = split
        .labels
        .iter()
        .zip(&fitness)
        .filter(|(l, _)| **l != label)
        .map(|(_, f)| *f)
        .collect();
    let (mut g_mean, mut g_sd) = mean_sd(&in_group);
    let (mut r_mean, mut r_sd) = mean_sd(&rest);
    let (mut g_n, mut r_n) = (in_group.len(), rest.len());
    let mut desc = desc.clone();
    if split.numeric && g_mean < r_mean {
        // Report the better half, so the pattern reads "X above/below m scores higher".
        std::mem::swap(&mut g_mean, &mut r_mean);
        std::mem::swap(&mut g_sd, &mut r_sd);
        std::mem::swap(&mut g_n, &mut r_n);
        desc = split.candidates[1 - which].1.clone();
    }

    // Seeded per gene, so a gene's p does not depend on which other genes were tested.
    let mut rng = SeededRng::new(config.seed ^ (gene as u64 + 1).wrapping_mul(0x9E37_79B9));
    let p = permutation_p(
        &split,
        &mut fitness,
        total,
        observed,
        config.permutations,
        &mut rng,
    );

    let diff = g_mean - r_mean;
    let pooled = (((g_n - 1) as f64 * g_sd * g_sd + (r_n - 1) as f64 * r_sd * r_sd)
        / (g_n + r_n - 2) as f64)
        .sqrt();
    let cohens_d = (pooled > 0.0).then(|| diff / pooled);
    let relative = (r_mean != 0.0).then(|| diff / r_mean.abs());
    let higher = diff > 0.0;
    let name = gene.name();
    let (subject, others) = if split.numeric {
        (format!("{name} {desc}"), "the other half".to_owned())
    } else {
        (format!("{name} = {desc}"), "the other values".to_owned())
    };
    let pattern = format!(
        "{subject} scores {} than {others}",
        if higher { "higher" } else { "lower" }
    );
    let evidence = format!(
        "mean fitness {:.1} vs {:.1} ({}{}), Cohen's d {}, {} vs {} sessions",
        g_mean,
        r_mean,
        if diff >= 0.0 { "+" } else { "" },
        relative.map_or(format!("{diff:.1}"), |r| format!("{:.1} %", 100.0 * r)),
        cohens_d.map_or("n/a".to_owned(), |d| format!("{d:.2}")),
        g_n,
        r_n
    );
    Some(Tested {
        gene,
        p,
        insight: Insight {
            gene: name.to_owned(),
            group: desc,
            higher,
            pattern,
            evidence,
            mean_in_group: g_mean,
            mean_rest: r_mean,
            mean_difference: diff,
            relative_difference: relative,
            cohens_d,
            p_value: p,
            adjusted_p_value: p,
            confidence: 1.0 - p,
            samples: g_n + r_n,
            group_samples: g_n,
            rest_samples: r_n,
        },
    })
}

/// The insights the sessions support, strongest first; empty when none is significant.
/// Sessions with a non-finite fitness are refused (`fitness`).
pub fn insights(
    sessions: &[CompletedSession],
    config: &InsightConfig,
) -> Result<Vec<Insight>, DomainError> {
    config.validate()?;
    if sessions.iter().any(|s| !s.fitness.is_finite()) {
        return Err(DomainError::invalid(
            "fitness",
            "every session's fitness must be a finite number",
        ));
    }
    let mut tested: Vec<Tested> = Gene::ALL
        .into_iter()
        .filter_map(|g| test_gene(g, sessions, config))
        .collect();
    // Holm: the i-th smallest p (from 0) times (m − i), running maximum, at most 1.
    tested.sort_by(|a, b| a.p.total_cmp(&b.p).then(a.gene.cmp(&b.gene)));
    let m = tested.len();
    let mut running = 0.0f64;
    for (i, t) in tested.iter_mut().enumerate() {
        running = running.max((t.p * (m - i) as f64).min(1.0));
        t.insight.adjusted_p_value = running;
        t.insight.confidence = 1.0 - running;
    }
    Ok(tested
        .into_iter()
        .filter(|t| t.insight.adjusted_p_value < config.alpha)
        .map(|t| t.insight)
        .collect())
}

#[cfg(test)]
#[path = "insights_tests.rs"]
mod tests;
