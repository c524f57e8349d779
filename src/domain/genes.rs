//! What each gene of a session's genome does to the hub's behaviour: the one place that turns
//! gene values into the settings and limits the session's rules consult. The table is also in
//! docs/genome.md (keep in step).
//!
//! | gene | drives | mapping |
//! |---|---|---|
//! | `handshakeStrictness` | handshake mode, review timeout | ≥ 0.5 strict, below loose; review timeout 600 s × 2^(5 × (0.7 − s)): 0.7 → 10 min, 1 → 3.5 min, 0.2 → 57 min, 0 → 113 min |
//! | `reviewRequirement` | which work needs review | `work_complete` is made to ask for review once the driver's changes since the last review touch ≥ ⌈10 × (1 − r)⌉ files or ≥ 400 × (1 − r) lines; r = 1: every change, r = 0: none |
//! | `roleRotationInterval` | automatic rotation | minutes per driver when rotation is automatic (the default for bred and explicit genomes) |
//! | `navigatorAutonomy` | a navigator's writes in loose mode | at most 100 × a lines per change (a ≥ 0.95: unlimited; a < 0.05: none, suggest instead) |
//! | `taskAllocation` | default assignment strategy | as named |
//! | `briefingDepth` | default resume strategy | minimal → quick, comprehensive → deep; standard → by time away (quick < 1 h, standard < 1 day, else deep) |
//! | `checkpointFrequency` | auto-save interval | minutes × 60 s |
//! | `contextSyncFrequency` | context-sync reminders | a participant that has not written the shared context for this many minutes is reminded (once per interval) |
//! | `messageVerbosity` | detail in digests and events | minimal: counts and senders only; standard: previews; detailed: whole bodies |
//! | `conflictResolution` | who settles a dispute | the driver, the navigator(s), or a majority vote of the active participants |
//! | `parallelWorkThreshold` | tasks in progress per participant | at most 1 + ⌊5 × t⌋ (0.8 → 5, 0.5 → 3, 0 → 1) |
//!
//! Every function here is pure; the session actor applies the result.

use super::briefing;
use super::genome::{BriefingDepth, ConflictResolution, Genome, MessageVerbosity};
use super::session::HandshakeMode;
use super::task::Strategy;

/// The review timeout at the default strictness (0.7), in seconds.
const BASE_REVIEW_TIMEOUT: f64 = 600.0;

/// The settings a genome gives a session at creation (explicit request fields override).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSettings {
    pub handshake_mode: HandshakeMode,
    pub review_timeout_secs: u32,
    pub rotation_interval_secs: u32,
    pub save_interval: u32,
    pub task_allocation: Strategy,
}

impl Genome {
    /// What the genome sets on a new session; see the table above.
    pub fn session_settings(&self) -> SessionSettings {
        SessionSettings {
            handshake_mode: self.handshake_mode(),
            review_timeout_secs: self.review_timeout_secs(),
            rotation_interval_secs: (self.role_rotation_interval * 60.0).round() as u32,
            save_interval: (self.checkpoint_frequency * 60.0).round() as u32,
            task_allocation: self.task_allocation,
        }
    }

    pub fn handshake_mode(&self) -> HandshakeMode {
        if self.handshake_strictness >= 0.5 {
            HandshakeMode::Strict
        } else {
            HandshakeMode::Loose
        }
    }

    /// Stricter sessions expect a reviewer sooner.
    pub fn review_timeout_secs(&self) -> u32 {
        let s = self.handshake_strictness.clamp(0.0, 1.0);
        (BASE_REVIEW_TIMEOUT * 2f64.powf(5.0 * (0.7 - s))).round() as u32
    }

    /// Most tasks one participant may have in progress at once.
    pub fn max_tasks_in_progress(&self) -> usize {
        1 + (5.0 * self.parallel_work_threshold.clamp(0.0, 1.0)).floor() as usize
    }

    /// Largest change (lines touched) a navigator may record in loose mode; `None`: no limit.
    pub fn navigator_line_limit(&self) -> Option<u32> {
        let a = self.navigator_autonomy.clamp(0.0, 1.0);
        if a >= 0.95 {
            None
        } else if a < 0.05 {
            Some(0)
        } else {
            Some((100.0 * a).round() as u32)
        }
    }

    /// Files or lines of unreviewed work that need review (whichever is reached first);
    /// `None`: no size does (r = 0). r = 1 gives (1, 1): every change.
    pub fn review_thresholds(&self) -> Option<(usize, u64)> {
        let r = self.review_requirement.clamp(0.0, 1.0);
        if r <= 0.0 {
            return None;
        }
        let files = (10.0 * (1.0 - r)).ceil() as usize;
        let lines = (400.0 * (1.0 - r)).round() as u64;
        Some((files.max(1), lines.max(1)))
    }

    /// Whether unreviewed work of this size needs review before the driver hands it on with
    /// `work_complete` (rotation and role assignment do not wait for it).
    pub fn review_required(&self, files_touched: usize, lines_touched: u64) -> bool {
        if files_touched == 0 && lines_touched == 0 {
            return false;
        }
        self.review_thresholds()
            .is_some_and(|(files, lines)| files_touched >= files || lines_touched >= lines)
    }

    /// Seconds without a context write before a participant is reminded to sync.
    pub fn context_sync_secs(&self) -> u64 {
        (self.context_sync_frequency * 60.0).round().max(1.0) as u64
    }

    /// The resume strategy when the caller names none, for a participant away `away_secs`:
    /// minimal and comprehensive fix it; standard keeps the hub's long-standing choice by time
    /// away (so a default genome briefs as before).
    pub fn default_resume_strategy(&self, away_secs: i64) -> briefing::Strategy {
        match self.briefing_depth {
            BriefingDepth::Standard => briefing::Strategy::for_absence(away_secs),
            depth => depth.resume_strategy(),
        }
    }

    pub fn verbosity(&self) -> MessageVerbosity {
        self.message_verbosity
    }

    pub fn resolver(&self) -> ConflictResolution {
        self.conflict_resolution
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_genome_is_the_concepts_example() {
        let s = Genome::default().session_settings();
        assert_eq!(s.handshake_mode, HandshakeMode::Strict);
        assert_eq!(s.review_timeout_secs, 600);
        assert_eq!(s.rotation_interval_secs, 30 * 60);
        assert_eq!(s.save_interval, 600);
        assert_eq!(s.task_allocation, Strategy::SkillBased);
    }

    #[test]
    fn strictness_picks_the_mode_and_shortens_the_review_timeout() {
        let g = |s| Genome {
            handshake_strictness: s,
            ..Genome::default()
        };
        assert_eq!(g(0.49).handshake_mode(), HandshakeMode::Loose);
        assert_eq!(g(0.5).handshake_mode(), HandshakeMode::Strict);
        assert!(g(1.0).review_timeout_secs() < g(0.7).review_timeout_secs());
        assert!(g(0.0).review_timeout_secs() > g(0.7).review_timeout_secs());
        assert_eq!(g(1.0).review_timeout_secs(), 212);
    }

    #[test]
    fn parallel_threshold_caps_tasks_in_progress() {
        let g = |t| Genome {
            parallel_work_threshold: t,
            ..Genome::default()
        };
        assert_eq!(g(0.0).max_tasks_in_progress(), 1);
        assert_eq!(g(0.5).max_tasks_in_progress(), 3);
        assert_eq!(g(0.8).max_tasks_in_progress(), 5);
        assert_eq!(g(1.0).max_tasks_in_progress(), 6);
    }

    #[test]
    fn briefing_depth_picks_the_default_resume_strategy() {
        use briefing::Strategy::{Deep, Quick, Standard};
        let g = |d| Genome {
            briefing_depth: d,
            ..Genome::default()
        };
        for away in [60, 7_200, 200_000] {
            assert_eq!(
                g(BriefingDepth::Minimal).default_resume_strategy(away),
                Quick
            );
            assert_eq!(
                g(BriefingDepth::Comprehensive).default_resume_strategy(away),
                Deep
            );
        }
        // Standard: by time away, as before genomes.
        let standard = g(BriefingDepth::Standard);
        assert_eq!(standard.default_resume_strategy(60), Quick);
        assert_eq!(standard.default_resume_strategy(7_200), Standard);
        assert_eq!(standard.default_resume_strategy(200_000), Deep);
    }

    #[test]
    fn context_sync_is_minutes_in_seconds() {
        let g = |m| Genome {
            context_sync_frequency: m,
            ..Genome::default()
        };
        assert_eq!(Genome::default().context_sync_secs(), 300);
        assert_eq!(g(1.0).context_sync_secs(), 60);
    }

    #[test]
    fn autonomy_bounds_a_navigators_change() {
        let g = |a| Genome {
            navigator_autonomy: a,
            ..Genome::default()
        };
        assert_eq!(g(0.0).navigator_line_limit(), Some(0));
        assert_eq!(g(0.6).navigator_line_limit(), Some(60));
        assert_eq!(g(1.0).navigator_line_limit(), None);
    }

    #[test]
    fn review_requirement_by_size_or_files() {
        let g = |r| Genome {
            review_requirement: r,
            ..Genome::default()
        };
        // 0.6: 4 files or 160 lines.
        assert_eq!(g(0.6).review_thresholds(), Some((4, 160)));
        assert_eq!(g(1.0).review_thresholds(), Some((1, 1)));
        assert_eq!(g(0.0).review_thresholds(), None);
        assert!(!g(0.6).review_required(3, 159));
        assert!(g(0.6).review_required(4, 1));
        assert!(g(0.6).review_required(1, 160));
        assert!(g(1.0).review_required(1, 1));
        assert!(!g(0.0).review_required(50, 10_000));
        assert!(!g(1.0).review_required(0, 0));
    }
}
