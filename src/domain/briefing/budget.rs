//! Fitting a briefing into a token budget.
//!
//! Tokens are estimated as UTF-8 bytes of the compact JSON divided by [`BYTES_PER_TOKEN`],
//! rounded up: close to what tokenizers count for English text and JSON, and the same on every
//! machine. Over budget, parts are cut in [`CUTS`] order, least important first, until it
//! fits. The alerts are never dropped: the last resort only shortens each of them.

use super::describe::clip;
use super::{Briefing, MessageLine, Size};

pub const BYTES_PER_TOKEN: usize = 4;
/// Smallest and largest budget a caller may ask for.
pub const MIN_TOKENS: usize = 100;
pub const MAX_TOKENS: usize = 100_000;

/// The estimate for `text`.
pub fn tokens(text: &str) -> usize {
    text.len().div_ceil(BYTES_PER_TOKEN)
}

/// Something sent under a budget: it serializes and reports its own size.
pub trait Budgeted: serde::Serialize {
    fn size_mut(&mut self) -> &mut Size;
}

impl Budgeted for Briefing {
    fn size_mut(&mut self) -> &mut Size {
        &mut self.size
    }
}

/// Its size in tokens, as it will be sent.
pub fn measure<T: serde::Serialize>(b: &T) -> usize {
    tokens(&serde_json::to_string(b).expect("a briefing serializes"))
}

type Cut<T> = fn(&mut T) -> bool;

/// Each cut changes the briefing and says whether it changed anything. Least important first.
const CUTS: &[(&str, Cut<Briefing>)] = &[
    ("changeAnalysis", |b| take(&mut b.change_analysis)),
    ("supersededMessages", |b| {
        let before = b.messages.len();
        b.messages.retain(|m| !m.superseded);
        b.messages.len() < before
    }),
    ("supersededHandoffs", |b| {
        let before = b.handoffs.len();
        b.handoffs.retain(|h| !h.superseded);
        b.handoffs.len() < before
    }),
    ("olderMessages", |b| halve(&mut b.messages)),
    ("completed", |b| take(&mut b.completed)),
    ("statusReports", |b| take(&mut b.status_reports)),
    ("collaboratorFiles", |b| {
        let mut cut = false;
        for u in b.collaborator_updates.values_mut() {
            cut |= shorten(&mut u.files, 2);
        }
        cut
    }),
    ("newIssues", |b| shorten(&mut b.new_issues, 2)),
    ("collaboratorActions", |b| {
        let mut cut = false;
        for u in b.collaborator_updates.values_mut() {
            cut |= take(&mut u.actions);
        }
        cut
    }),
    ("messages", |b| take(&mut b.messages)),
    ("handoffs", |b| shorten(&mut b.handoffs, 2)),
    ("inProgress", |b| shorten(&mut b.in_progress, 2)),
    ("blocked", |b| shorten(&mut b.blocked, 2)),
    ("pendingTasks", |b| shorten(&mut b.pending_tasks, 2)),
    ("suggestions", |b| shorten(&mut b.suggestions, 2)),
    ("newIssues", |b| take(&mut b.new_issues)),
    ("collaboratorFiles", |b| {
        let mut cut = false;
        for u in b.collaborator_updates.values_mut() {
            cut |= take(&mut u.files);
        }
        cut
    }),
    ("tasks", |b| {
        take(&mut b.in_progress) | take(&mut b.blocked) | take(&mut b.pending_tasks)
    }),
    ("suggestions", |b| shorten(&mut b.suggestions, 1)),
    ("yourLastActivity", |b| {
        b.your_last_activity.take().is_some()
    }),
    ("summary", |b| shrink(&mut b.summary, 60)),
    ("collaboratorUpdates", |b| {
        let cut = !b.collaborator_updates.is_empty();
        // Keep who was active, in the fewest words.
        for u in b.collaborator_updates.values_mut() {
            shrink(&mut u.last_action, 40);
        }
        cut
    }),
    // Everything but the alerts (reported as one omission, "all", to keep the size block short).
    ("all", |b| {
        b.suggestions.clear();
        b.handoffs.clear();
        b.collaborator_updates.clear();
        b.session_duration.clear();
        b.summary.clear();
        true
    }),
    // Last resort: every alert stays, each in fewer words.
    ("alertDetail", |b| {
        let mut cut = false;
        for a in &mut b.alerts {
            cut |= shrink(a, 40);
        }
        cut
    }),
];

/// Cuts `b` until it fits `max_tokens` (if given) and fills in its size.
pub fn fit(b: &mut Briefing, max_tokens: Option<usize>) {
    fit_by(b, CUTS, max_tokens);
}

/// Applies `cuts` in order until `b` fits; a cut named "all" stands for every one before it.
pub fn fit_by<T: Budgeted>(b: &mut T, cuts: &[(&'static str, Cut<T>)], max_tokens: Option<usize>) {
    let mut cuts = cuts.iter();
    loop {
        settle_size(b);
        let Some(max) = max_tokens else { return };
        if b.size_mut().tokens <= max {
            return;
        }
        let Some((name, cut)) = cuts.next() else {
            // Only what is never dropped (the alerts) is left over budget.
            return;
        };
        if cut(b) {
            let omitted = &mut b.size_mut().omitted;
            if *name == "all" {
                omitted.clear();
            }
            if !omitted.contains(name) {
                omitted.push(name);
            }
        }
    }
}

/// Sets `tokens` to the size including the size block itself (which changes with the number
/// it holds, hence the second pass).
fn settle_size<T: Budgeted>(b: &mut T) {
    for _ in 0..3 {
        let tokens = measure(b);
        let size = b.size_mut();
        size.saved_tokens = (size.raw_tokens - tokens as i64).max(0);
        if size.tokens == tokens {
            return;
        }
        size.tokens = tokens;
    }
}

pub(super) fn take<T>(v: &mut Vec<T>) -> bool {
    let cut = !v.is_empty();
    v.clear();
    cut
}

pub(super) fn shorten<T>(v: &mut Vec<T>, keep: usize) -> bool {
    let cut = v.len() > keep;
    v.truncate(keep);
    cut
}

/// Drops the older half of the messages (they are newest first).
fn halve(v: &mut Vec<MessageLine>) -> bool {
    if v.len() <= 1 {
        return false;
    }
    v.truncate(v.len() / 2);
    true
}

pub(super) fn shrink(text: &mut String, max: usize) -> bool {
    let short = clip(text, max);
    let cut = short != *text;
    *text = short;
    cut
}
