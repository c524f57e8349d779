//! Unit tests of the insights (`insights`).
use super::*;
use crate::domain::evolution::random_genome;
use crate::domain::genome::BriefingDepth;

/// `n` sessions with uniformly random genomes, fitness = 1000 + `effect(genome)` + noise (sd 100).
fn sessions(n: usize, seed: u64, effect: impl Fn(&Genome) -> f64) -> Vec<CompletedSession> {
    let mut rng = SeededRng::new(seed);
    (0..n)
        .map(|_| {
            let genome = random_genome(&mut rng);
            let fitness = 1000.0 + effect(&genome) + 100.0 * rng.gaussian();
            CompletedSession { genome, fitness }
        })
        .collect()
}

fn config(seed: u64) -> InsightConfig {
    InsightConfig {
        seed,
        ..InsightConfig::default()
    }
}

#[test]
fn no_signal_no_insight() {
    for seed in 0..3 {
        let found = insights(&sessions(150, seed, |_| 0.0), &config(seed)).unwrap();
        assert!(found.is_empty(), "seed {seed}: {found:?}");
    }
}

/// Holm keeps the family-wise error at 5 %: over 40 null data sets expect at most about two
/// false reports (Holm is conservative, fewer is normal); allow four.
#[test]
fn false_reports_stay_rare_without_signal() {
    let false_reports = (100..140)
        .filter(|&seed| {
            !insights(&sessions(80, seed, |_| 0.0), &config(seed))
                .unwrap()
                .is_empty()
        })
        .count();
    assert!(false_reports <= 4, "{false_reports} of 40");
}

#[test]
fn a_categorical_signal_is_found_with_its_value() {
    let data = sessions(150, 7, |g| {
        if g.briefing_depth == BriefingDepth::Comprehensive {
            80.0
        } else {
            0.0
        }
    });
    let found = insights(&data, &config(1)).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let i = &found[0];
    assert_eq!(i.gene, "briefingDepth");
    assert_eq!(i.group, "comprehensive");
    assert!(i.higher);
    assert!(i.p_value < 0.05 && i.adjusted_p_value < 0.05, "{i:?}");
    assert!((i.confidence - (1.0 - i.adjusted_p_value)).abs() < 1e-12);
    assert!(i.mean_difference > 40.0, "{i:?}");
    assert!(i.cohens_d.unwrap() > 0.4, "{i:?}");
    assert_eq!(i.samples, 150);
    assert_eq!(i.group_samples + i.rest_samples, 150);
    assert_eq!(
        i.pattern,
        "briefingDepth = comprehensive scores higher than the other values"
    );
    let v = serde_json::to_value(i).unwrap();
    for key in ["pattern", "evidence", "confidence", "samples", "cohensD"] {
        assert!(v.get(key).is_some(), "{key}");
    }
}

/// The same signal is found whatever the data and shuffles (power, not luck of one seed).
#[test]
fn a_real_signal_is_found_for_several_seeds() {
    for seed in 20..25 {
        let data = sessions(150, seed, |g| {
            if g.briefing_depth == BriefingDepth::Comprehensive {
                80.0
            } else {
                0.0
            }
        });
        let found = insights(&data, &config(seed)).unwrap();
        assert!(
            found.iter().any(|i| i.gene == "briefingDepth"
                && i.group == "comprehensive"
                && i.p_value < 0.05),
            "seed {seed}: {found:?}"
        );
        assert!(
            found.iter().all(|i| i.gene == "briefingDepth"),
            "seed {seed}: {found:?}"
        );
    }
}

#[test]
fn a_numeric_signal_is_found_with_its_direction() {
    // Strict handshakes cost fitness: -200 per unit of strictness.
    let data = sessions(120, 11, |g| -200.0 * g.handshake_strictness);
    let found = insights(&data, &config(2)).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let i = &found[0];
    assert_eq!(i.gene, "handshakeStrictness");
    assert!(i.higher);
    assert!(
        i.group.starts_with('≤') || i.group.starts_with('<'),
        "{i:?}"
    );
    assert!(
        i.pattern.starts_with("handshakeStrictness "),
        "{}",
        i.pattern
    );
    assert!(i.adjusted_p_value < 0.05);
    assert_eq!(i.group_samples, 60);
}

#[test]
fn too_few_samples_say_nothing() {
    assert!(insights(&[], &config(0)).unwrap().is_empty());
    // A huge effect, but 19 sessions: no side can reach 10 against 10.
    let data = sessions(19, 3, |g| 1000.0 * g.navigator_autonomy);
    assert!(insights(&data, &config(0)).unwrap().is_empty());
    // A category nobody tried enough is not compared: all sessions share one depth.
    let same: Vec<CompletedSession> = sessions(60, 4, |_| 0.0)
        .into_iter()
        .map(|mut s| {
            s.genome.briefing_depth = BriefingDepth::Minimal;
            s
        })
        .collect();
    assert!(split(Gene::BriefingDepth, &same, 10).is_none());
}

#[test]
fn the_same_seed_gives_the_same_report() {
    let data = sessions(100, 5, |g| 60.0 * g.navigator_autonomy);
    let a = insights(&data, &config(9)).unwrap();
    let b = insights(&data, &config(9)).unwrap();
    assert_eq!(a, b);
}

#[test]
fn bad_input_names_the_field() {
    let mut data = sessions(30, 1, |_| 0.0);
    data[3].fitness = f64::INFINITY;
    assert!(matches!(
        insights(&data, &InsightConfig::default()),
        Err(DomainError::Invalid {
            field: "fitness",
            ..
        })
    ));
    let bad = InsightConfig {
        alpha: 1.0,
        ..InsightConfig::default()
    };
    assert!(matches!(
        insights(&[], &bad),
        Err(DomainError::Invalid { field: "alpha", .. })
    ));
}
