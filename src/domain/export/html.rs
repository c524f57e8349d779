//! The HTML form: one self-contained page. Inline CSS, no scripts, no external requests (no
//! fonts, images or links off the page); every text is escaped; diff lines carry the classes
//! `add`, `del`, `hunk`, `file` and `ctx`, coloured by the stylesheet.

use std::fmt::Write;

use super::{Document, Entry, kinds_of, span, tasks_line, to_second, viewer_line, who_line};

const STYLE: &str = r#"
:root{--fg:#1f2328;--muted:#59636e;--bg:#fff;--card:#f6f8fa;--line:#d1d9e0;--add:#dafbe1;--add-fg:#116329;--del:#ffebe9;--del-fg:#82071e;--hunk:#ddf4ff;--hunk-fg:#0550ae;--crit:#cf222e;--imp:#9a6700}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#9198a1;--bg:#0d1117;--card:#151b23;--line:#3d444d;--add:#12261e;--add-fg:#7ee787;--del:#25171c;--del-fg:#ffa198;--hunk:#121d2f;--hunk-fg:#79c0ff;--crit:#ff7b72;--imp:#d29922}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:72rem;padding:1.5rem;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
h1{margin:0 0 .25rem;font-size:1.8rem}h2{margin-top:2rem;border-bottom:1px solid var(--line);padding-bottom:.25rem}h3{margin-top:1.5rem}
.meta,.note{color:var(--muted)}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid var(--line);padding:.25rem .6rem;text-align:left;vertical-align:top}th{background:var(--card)}
table.facts th{width:9rem}
.truncated{border-left:4px solid var(--imp);background:var(--card);padding:.5rem .75rem}
ol.timeline{list-style:none;padding:0;margin:0}
.entry{border:1px solid var(--line);border-left:4px solid var(--line);border-radius:6px;padding:.5rem .75rem;margin:.5rem 0;background:var(--bg)}
.entry.critical{border-left-color:var(--crit)}.entry.important{border-left-color:var(--imp)}
.head{font-size:.85rem;color:var(--muted);display:flex;flex-wrap:wrap;gap:.5rem;align-items:baseline}
.head a{color:var(--muted);text-decoration:none}.actor{font-weight:600;color:var(--fg)}
.cat{background:var(--card);border:1px solid var(--line);border-radius:1rem;padding:0 .5rem}
.prio.critical{color:var(--crit);font-weight:600}.prio.important{color:var(--imp);font-weight:600}
.text{margin:.25rem 0;white-space:pre-wrap;overflow-wrap:anywhere}
pre{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.5rem;overflow-x:auto;font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;overflow-wrap:anywhere}
.add{background:var(--add);color:var(--add-fg)}.del{background:var(--del);color:var(--del-fg)}
.hunk{background:var(--hunk);color:var(--hunk-fg)}.file{font-weight:600}
"#;

pub(super) fn render(doc: &Document) -> String {
    let mut out = String::with_capacity(8192 + doc.timeline.len() * 400);
    let s = &doc.session;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"collab-hub export {}\">\n\
         <title>{} · collab-hub export</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        doc.version,
        esc(&s.name)
    );
    let _ = writeln!(
        out,
        "<header>\n<h1>{}</h1>\n<p class=\"meta\">Exported <time datetime=\"{}\">{}</time> ({}).</p>\n</header>",
        esc(&s.name),
        esc(&doc.generated_at),
        esc(&to_second(&doc.generated_at)),
        esc(&viewer_line(doc))
    );

    out.push_str("<section id=\"summary\">\n<h2>Summary</h2>\n<table class=\"facts\">\n");
    let mut fact = |name: &str, value: &str| {
        let _ = writeln!(out, "<tr><th>{name}</th><td>{}</td></tr>", esc(value));
    };
    fact("Session", &s.id);
    fact("Project", &s.project);
    fact("Status", s.status.as_str());
    fact("Handshake", s.handshake_mode.as_str());
    fact("Created", &to_second(&s.created_at));
    fact(
        "Last event",
        &s.last_event_at
            .as_deref()
            .map_or_else(|| "none".into(), to_second),
    );
    fact("Duration", &span(s.duration_secs));
    fact("Events", &doc.summary.events.to_string());
    fact("Tasks", &tasks_line(doc.summary.tasks));
    fact("Files changed", &doc.summary.files_total.to_string());
    out.push_str("</table>\n");

    out.push_str("<h3>Participants</h3>\n");
    if doc.summary.participants.is_empty() {
        out.push_str("<p>Nobody.</p>\n");
    } else {
        out.push_str(
            "<table>\n<tr><th>participant</th><th>role</th><th>joined</th><th>left</th></tr>\n",
        );
        for p in &doc.summary.participants {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.ai_id),
                p.role.as_str(),
                esc(&to_second(&p.joined_at)),
                esc(&p.left_at.as_deref().map(to_second).unwrap_or_default())
            );
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h3>Events by category</h3>\n");
    if doc.summary.by_category.is_empty() {
        out.push_str("<p>No events.</p>\n");
    } else {
        out.push_str("<table>\n<tr><th>category</th><th>events</th><th>kinds</th></tr>\n");
        for (category, n) in &doc.summary.by_category {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{n}</td><td>{}</td></tr>",
                esc(category),
                esc(&kinds_of(doc, category))
            );
        }
        out.push_str("</table>\n");
    }

    out.push_str("<h3>Files changed</h3>\n");
    if doc.summary.files.is_empty() {
        out.push_str("<p>No changes recorded.</p>\n");
    } else {
        out.push_str("<table>\n<tr><th>file</th><th>changes</th><th>by</th></tr>\n");
        for f in &doc.summary.files {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&f.path),
                f.changes,
                esc(&who_line(f))
            );
        }
        out.push_str("</table>\n");
        let more = doc.summary.files_total - doc.summary.files.len() as i64;
        if more > 0 {
            let _ = writeln!(out, "<p class=\"note\">…and {more} more files.</p>");
        }
    }
    out.push_str("</section>\n");

    out.push_str("<section id=\"timeline\">\n<h2>Timeline</h2>\n");
    if let Some(t) = &doc.truncated {
        let _ = writeln!(
            out,
            "<p class=\"truncated\"><strong>Truncated.</strong> {}</p>",
            esc(&t.note)
        );
    }
    if doc.timeline.is_empty() && doc.truncated.is_none() {
        out.push_str("<p>Nothing happened yet.</p>\n");
    } else {
        out.push_str("<ol class=\"timeline\">\n");
        for e in &doc.timeline {
            entry(&mut out, e);
        }
        out.push_str("</ol>\n");
    }
    out.push_str("</section>\n</body>\n</html>\n");
    out
}

fn entry(out: &mut String, e: &Entry) {
    let priority = e.priority.as_str();
    let _ = write!(
        out,
        "<li class=\"entry {} {priority}\" id=\"e{}\">\n<div class=\"head\"><a href=\"#e{}\">#{}</a> \
         <time datetime=\"{}\">{}</time>",
        e.category.as_str(),
        e.id,
        e.id,
        e.id,
        esc(&e.at),
        esc(&to_second(&e.at))
    );
    match &e.actor {
        Some(a) => {
            let _ = write!(out, " <span class=\"actor\">{}</span>", esc(a));
        }
        None => out.push_str(" <span class=\"actor hub\">hub</span>"),
    }
    if let Some(t) = &e.to {
        let _ = write!(out, " → <span class=\"to\">{}</span>", esc(t));
    }
    let _ = write!(
        out,
        " <span class=\"cat\">{}</span> <span class=\"kind\">{}</span>",
        e.category.as_str(),
        esc(&e.kind)
    );
    if priority != "routine" {
        let _ = write!(out, " <span class=\"prio {priority}\">{priority}</span>");
    }
    let _ = writeln!(out, "</div>\n<p class=\"text\">{}</p>", esc(&e.text));
    if let Some(d) = &e.detail {
        let _ = writeln!(out, "<pre class=\"detail\">{}</pre>", esc(d));
    }
    if let Some(d) = &e.diff {
        out.push_str("<pre class=\"diff\">");
        for line in d.lines() {
            let class = diff_class(line);
            let _ = writeln!(out, "<span class=\"{class}\">{}</span>", esc(line));
        }
        out.push_str("</pre>\n");
    }
    if let Some(n) = &e.note {
        let _ = writeln!(out, "<p class=\"note\">{}</p>", esc(n));
    }
    out.push_str("</li>\n");
}

/// The class of one unified-diff line.
pub(super) fn diff_class(line: &str) -> &'static str {
    if line.starts_with("+++") || line.starts_with("---") {
        "file"
    } else if line.starts_with("@@") {
        "hunk"
    } else if line.starts_with('+') {
        "add"
    } else if line.starts_with('-') {
        "del"
    } else {
        "ctx"
    }
}

/// Text as HTML: `& < > " '` escaped, control characters (other than line breaks and tabs)
/// replaced, so nothing from a participant can become markup.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' => out.push(c),
            '\r' => {}
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}
