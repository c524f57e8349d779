//! The Markdown form: `# name`, `## Summary` (a table of facts, then participants, events by
//! category, files changed), `## Timeline` (one list item per event, details and diffs in
//! fenced blocks). Everything that came from participants is escaped or fenced, so a message
//! cannot add a heading, a link or HTML.

use std::fmt::Write;

use super::{Document, Entry, kinds_of, span, tasks_line, to_second, viewer_line, who_line};
use crate::domain::event::Priority;

pub(super) fn render(doc: &Document) -> String {
    let mut out = String::with_capacity(4096 + doc.timeline.len() * 160);
    let s = &doc.session;
    let _ = writeln!(out, "# {}\n", inline(&s.name));
    let _ = writeln!(
        out,
        "Exported {} ({}), collab-hub export format {}.\n",
        to_second(&doc.generated_at),
        inline(&viewer_line(doc)),
        doc.version
    );

    out.push_str("## Summary\n\n| | |\n|---|---|\n");
    let mut fact = |name: &str, value: String| {
        let _ = writeln!(out, "| {name} | {value} |");
    };
    fact("Session", format!("`{}`", s.id));
    fact("Project", inline(&s.project));
    fact("Status", s.status.as_str().into());
    fact("Handshake", s.handshake_mode.as_str().into());
    fact("Created", to_second(&s.created_at));
    fact(
        "Last event",
        s.last_event_at
            .as_deref()
            .map_or_else(|| "none".into(), to_second),
    );
    fact("Duration", span(s.duration_secs));
    fact("Events", doc.summary.events.to_string());
    fact("Tasks", tasks_line(doc.summary.tasks));
    fact("Files changed", doc.summary.files_total.to_string());

    out.push_str("\n### Participants\n\n");
    if doc.summary.participants.is_empty() {
        out.push_str("Nobody.\n");
    } else {
        out.push_str("| participant | role | joined | left |\n|---|---|---|---|\n");
        for p in &doc.summary.participants {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                inline(&p.ai_id),
                p.role.as_str(),
                to_second(&p.joined_at),
                p.left_at.as_deref().map(to_second).unwrap_or_default()
            );
        }
    }

    out.push_str("\n### Events by category\n\n");
    if doc.summary.by_category.is_empty() {
        out.push_str("No events.\n");
    } else {
        out.push_str("| category | events | kinds |\n|---|---|---|\n");
        for (category, n) in &doc.summary.by_category {
            let _ = writeln!(
                out,
                "| {category} | {n} | {} |",
                inline(&kinds_of(doc, category))
            );
        }
    }

    out.push_str("\n### Files changed\n\n");
    if doc.summary.files.is_empty() {
        out.push_str("No changes recorded.\n");
    } else {
        out.push_str("| file | changes | by |\n|---|---|---|\n");
        for f in &doc.summary.files {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                inline(&f.path),
                f.changes,
                inline(&who_line(f))
            );
        }
        let more = doc.summary.files_total - doc.summary.files.len() as i64;
        if more > 0 {
            let _ = writeln!(out, "\n…and {more} more files.");
        }
    }

    out.push_str("\n## Timeline\n\n");
    if let Some(t) = &doc.truncated {
        let _ = writeln!(out, "> **Truncated.** {}\n", inline(&t.note));
    }
    if doc.timeline.is_empty() && doc.truncated.is_none() {
        out.push_str("Nothing happened yet.\n");
    }
    for e in &doc.timeline {
        entry(&mut out, e);
    }
    out
}

fn entry(out: &mut String, e: &Entry) {
    let who = match (&e.actor, &e.to) {
        (Some(a), Some(t)) => format!("**{}** → {}", inline(a), inline(t)),
        (Some(a), None) => format!("**{}**", inline(a)),
        (None, Some(t)) => format!("hub → {}", inline(t)),
        (None, None) => "hub".into(),
    };
    let priority = match e.priority {
        Priority::Routine => String::new(),
        p => format!(" · *{}*", p.as_str()),
    };
    let _ = writeln!(
        out,
        "- #{} · {} · {who} · {}{priority}: {}",
        e.id,
        to_second(&e.at),
        e.category.as_str(),
        inline(&e.text)
    );
    if let Some(d) = &e.detail {
        fenced(out, "text", d);
    }
    if let Some(d) = &e.diff {
        fenced(out, "diff", d);
    }
    if let Some(n) = &e.note {
        let _ = writeln!(out, "  *{}*", inline(n));
    }
}

/// A fenced block inside a list item: indented, with a fence longer than any run of
/// backticks in the text.
pub(super) fn fenced(out: &mut String, lang: &str, text: &str) {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat((longest + 1).max(3));
    let _ = writeln!(out, "\n  {fence}{lang}");
    for line in text.lines() {
        let _ = writeln!(out, "  {}", printable(line));
    }
    let _ = writeln!(out, "  {fence}\n");
}

/// Text safe on one Markdown line: no line breaks, no control characters, and the characters
/// that would make emphasis, code, links, tables or HTML backslash-escaped.
pub(super) fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        // An underscore inside a word (`change_recorded`) cannot start emphasis.
        let inside_word = |at: Option<&char>| at.is_some_and(|c| c.is_alphanumeric());
        if c == '_' && i > 0 && inside_word(chars.get(i - 1)) && inside_word(chars.get(i + 1)) {
            out.push(c);
            continue;
        }
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A line inside a fenced block: control characters (other than tabs) replaced.
fn printable(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}
