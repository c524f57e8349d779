//! One-line descriptions: an event, a task, a report, a span of time. Short on purpose: every
//! byte here is paid for by the model that reads it.

use chrono::NaiveDateTime;
use serde_json::Value;

use super::{Collaborator, Facts, Report, Update};
use crate::domain::event::Event;
use crate::domain::task::{Status, Task};

/// Longest text quoted from a message, finding or summary.
const QUOTE_CHARS: usize = 100;

/// Cuts `text` to `max` characters, marking the cut with `…`.
pub(super) fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((i, _)) => format!("{}…", &text[..i]),
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

fn id(v: &Value, key: &str) -> String {
    v[key].as_i64().map(|n| format!("#{n}")).unwrap_or_default()
}

/// What an event did, in a few words: "changed src/pay.rs", "completed task #4: Add tests".
pub fn describe(e: &Event) -> String {
    let p = &e.payload;
    let text = match e.kind.as_str() {
        "change_recorded" => format!("changed {}", s(p, "filePath")),
        "change_conflict" => format!("conflict on {}: {}", s(p, "filePath"), s(p, "summary")),
        "message_sent" => format!("message: {}", message_text(&p["body"])),
        "discovery_reported" => {
            let d = &p["discovery"];
            let at = s(d, "location");
            format!(
                "{} discovery: {}{}",
                s(d, "severity"),
                s(d, "finding"),
                if at.is_empty() {
                    String::new()
                } else {
                    format!(" ({at})")
                }
            )
        }
        "status_reported" => format!(
            "{} {}: {}",
            s(p, "kind"),
            s(p, "status"),
            e.gist().unwrap_or_default()
        ),
        "task_created" => format!(
            "created task {}: {}",
            id(&p["task"], "id"),
            s(&p["task"], "description")
        ),
        "task_status_changed" => format!(
            "task {} {}{}",
            id(p, "taskId"),
            s(p, "to"),
            match s(p, "description") {
                "" => String::new(),
                d => format!(": {d}"),
            }
        ),
        "task_handed_off" => format!(
            "handed off task {}: {}",
            id(p, "taskId"),
            s(p, "description")
        ),
        "task_claimed" => format!("claimed task {}", id(p, "taskId")),
        "task_assigned" => format!("assigned task {}", id(p, "taskId")),
        "handshake" => format!("handshake {}", s(p, "step")),
        "control_passed" => "passed control".into(),
        "role_changed" => "changed roles".into(),
        "resource_locked" => format!("locked {}", s(p, "resource")),
        "resource_released" => format!("released {}", s(p, "resource")),
        "context_changed" => "updated the shared context".into(),
        "participant_joined" => "joined".into(),
        "participant_left" => "left".into(),
        "session_status_changed" => format!("set the session {}", s(p, "to")),
        other => other.replace('_', " "),
    };
    clip(&text, QUOTE_CHARS + 40)
}

/// A message body as one line: its text, or its JSON.
pub(super) fn message_text(body: &Value) -> String {
    let text = match body {
        Value::String(t) => t.clone(),
        Value::Object(o) => o
            .get("text")
            .or_else(|| o.get("message"))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string()),
        other => other.to_string(),
    };
    clip(&text, QUOTE_CHARS)
}

/// "3 minutes ago", "2 hours ago", "4 days ago".
pub fn humanize_ago(now: NaiveDateTime, then: NaiveDateTime) -> String {
    let secs = (now - then).num_seconds();
    if secs < 60 {
        return "just now".into();
    }
    format!("{} ago", humanize_span(secs))
}

/// A span in its largest whole unit: "45 seconds", "1 hour", "3 days".
pub fn humanize_span(secs: i64) -> String {
    let secs = secs.max(0);
    let (n, unit) = match secs {
        s if s < 60 => (s, "second"),
        s if s < 3_600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3_600, "hour"),
        s => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// "#4 Add tests (gemini)", "#5 Deploy: waiting for keys".
pub(super) fn task_line(t: &Task) -> String {
    let mut line = format!("#{} {}", t.id, clip(&t.description, QUOTE_CHARS));
    if let Some(a) = &t.assigned_to {
        line.push_str(&format!(" ({a})"));
    }
    if t.status == Status::Blocked
        && let Some(r) = &t.blocked_reason
    {
        line.push_str(&format!(": {}", clip(r, QUOTE_CHARS)));
    }
    line
}

/// The session in one sentence: name, progress, who drives, the context's own summary.
pub(super) fn summary(f: &Facts) -> String {
    let total = f.tasks.len();
    let done = f
        .tasks
        .iter()
        .filter(|t| t.status == Status::Completed)
        .count();
    let mut text = f.session.name.clone();
    if let Some(focus) = &f.session.focus {
        text.push_str(&format!(": {}", clip(focus, QUOTE_CHARS)));
    }
    if let Some(percent) = (done * 100).checked_div(total) {
        text.push_str(&format!("; {done} of {total} tasks done ({percent}%)"));
    }
    text.push_str(&format!(
        "; {}, driver {}",
        f.session.status.as_str(),
        f.session.driver.as_deref().unwrap_or("nobody")
    ));
    text
}

/// A collaborator's last action, its actions counted by kind, and the files it changed.
pub(super) fn update(c: &Collaborator, n: usize) -> Update {
    Update {
        last_action: describe(&c.last),
        actions: c
            .counts
            .iter()
            .take(n)
            .map(|(kind, count)| format!("{count}× {}", kind.replace('_', " ")))
            .collect(),
        files: c
            .files
            .iter()
            .take(n)
            .map(|(path, times)| {
                if *times > 1 {
                    format!("{path} ({times}×)")
                } else {
                    path.clone()
                }
            })
            .collect(),
    }
}

/// "test fail: 3 failed (by ci)".
pub(super) fn report(r: &Report) -> String {
    format!(
        "{} {}: {}{}",
        r.kind,
        if r.failing { "fail" } else { "pass" },
        clip(&r.summary, QUOTE_CHARS),
        r.by.as_deref()
            .map(|b| format!(" (by {b})"))
            .unwrap_or_default()
    )
}

/// Files changed by others while the participant was away, most changed first, with who.
pub(super) fn change_analysis(f: &Facts, n: usize) -> Vec<String> {
    let mut files: std::collections::BTreeMap<&str, (i64, Vec<&str>)> = Default::default();
    for c in &f.collaborators {
        for (path, times) in &c.files {
            let e = files.entry(path).or_default();
            e.0 += times;
            e.1.push(&c.ai_id);
        }
    }
    let mut files: Vec<_> = files.into_iter().collect();
    files.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    files
        .into_iter()
        .take(n)
        .map(|(path, (times, who))| {
            let mine = if f.my_files.iter().any(|m| m == path) {
                "; you changed it too"
            } else {
                ""
            };
            format!("{path}: {times} change(s) by {}{mine}", who.join(", "))
        })
        .collect()
}
