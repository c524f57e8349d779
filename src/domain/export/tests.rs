use chrono::NaiveDateTime;
use serde_json::{Value, json};
use uuid::Uuid;

use super::*;

fn t(secs: i64) -> NaiveDateTime {
    chrono::DateTime::from_timestamp(1_780_000_000 + secs, 123_000)
        .unwrap()
        .naive_utc()
}

fn logged(id: i64, kind: &str, actor: Option<&str>, to: Option<&str>, payload: Value) -> Logged {
    Logged {
        id,
        at: t(id),
        kind: kind.into(),
        actor: actor.map(str::to_owned),
        to: to.map(str::to_owned),
        priority: Priority::Routine,
        payload_bytes: payload.to_string().len() as i64,
        payload: Some(payload),
        diff: None,
        diff_bytes: 0,
    }
}

const DIFF: &str =
    "--- a/src/pay.rs\n+++ b/src/pay.rs\n@@ -1,2 +1,2 @@\n keep\n-old line\n+new <b>line</b>\n";
const SCRIPT: &str = "<script>alert('x')</script> & done";

fn head(name: &str, include_code: bool) -> Head {
    Head {
        session_id: Uuid::nil(),
        name: name.into(),
        project: "/repo".into(),
        status: SessionStatus::Completed,
        handshake_mode: HandshakeMode::Loose,
        created_at: t(0),
        participants: vec![
            ParticipantInfo {
                ai_id: "claude".into(),
                role: Role::Driver,
                joined_at: time(t(0)),
                left_at: None,
            },
            ParticipantInfo {
                ai_id: "gemini".into(),
                role: Role::Navigator,
                joined_at: time(t(0)),
                left_at: Some(time(t(9))),
            },
        ],
        viewer: None,
        include_code,
        now: t(100),
    }
}

/// A small session: a message with markup in it, a change with its diff, a handshake, a task,
/// a lock and a failing test.
fn document(name: &str, format: Format, include_code: bool) -> Document {
    let mut timeline = Timeline::new(format, include_code);
    let mut events = vec![
        logged(
            1,
            "session_created",
            None,
            None,
            json!({"name": name, "handshakeMode": "loose", "participants": [{"aiId": "claude", "role": "driver"}]}),
        ),
        logged(
            2,
            "message_sent",
            Some("gemini"),
            Some("claude"),
            json!({"from": "gemini", "to": "claude", "body": format!("# not a heading\n{SCRIPT}"), "requiresAck": true}),
        ),
        logged(
            3,
            "change_recorded",
            Some("claude"),
            None,
            json!({"filePath": "src/pay.rs", "operation": "edit", "lines": [[1, 2]], "symbols": ["Pay"], "reason": "fix"}),
        ),
        logged(
            4,
            "handshake",
            Some("claude"),
            None,
            json!({"step": "work_complete", "changes": ["Pay"], "needsReview": true, "message": "please review"}),
        ),
        logged(
            5,
            "task_created",
            Some("claude"),
            None,
            json!({"task": {"id": 5, "description": "Webhooks", "assignedTo": "gemini"}}),
        ),
        logged(
            6,
            "resource_locked",
            Some("claude"),
            None,
            json!({"lockId": 6, "token": 6, "resource": "/src/pay.rs", "mode": "exclusive", "until": "2026-01-01T00:00:00Z"}),
        ),
        logged(
            7,
            "status_reported",
            Some("gemini"),
            None,
            json!({"kind": "test", "status": "fail", "summary": "2 failed", "changes": [{"path": "monitoring.test", "new": {"details": {"failures": ["a"]}}}]}),
        ),
    ];
    events[2].diff = Some(DIFF.into());
    events[6].priority = Priority::Critical;
    let n = events.len() as i64;
    for e in events.into_iter().rev() {
        timeline.push_older(e);
    }
    assemble(
        head(name, include_code),
        LogFacts {
            events: n,
            by_kind: vec![("message_sent".into(), 1), ("change_recorded".into(), 1)],
            last_event_at: Some(t(7)),
            tasks: TaskCounts { done: 1, total: 3 },
            files: vec![FileInfo {
                path: "src/pay.rs".into(),
                changes: 1,
                by: vec![AuthorCount {
                    ai_id: "claude".into(),
                    changes: 1,
                }],
            }],
            files_total: 1,
            compacted_through: 0,
            timeline,
        },
    )
}

fn text(doc: Document, format: Format) -> String {
    match render(doc, format) {
        Content::Text(t) => t,
        Content::Document(_) => panic!("text expected"),
    }
}

#[test]
fn the_timeline_is_oldest_first_with_texts_details_and_diffs() {
    let doc = document("Pay", Format::Json, true);
    let ids: Vec<i64> = doc.timeline.iter().map(|e| e.id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7]);
    let e = |id: i64| &doc.timeline[id as usize - 1];
    assert_eq!(e(2).category, Category::Message);
    assert_eq!(e(2).to.as_deref(), Some("claude"));
    assert!(
        e(2).text
            .starts_with("message to claude (acknowledgement required): # not a heading"),
        "{}",
        e(2).text
    );
    assert_eq!(
        e(2).detail.as_deref(),
        Some(format!("# not a heading\n{SCRIPT}").as_str())
    );
    assert_eq!(
        e(3).text,
        "edit src/pay.rs (lines 1–2; symbols Pay): fix",
        "{:?}",
        e(3)
    );
    assert_eq!(e(3).diff.as_deref(), Some(DIFF));
    assert_eq!(e(4).detail.as_deref(), Some("please review"));
    assert!(
        e(5).text
            .contains("created task #5 (assigned to gemini): Webhooks")
    );
    assert_eq!(e(7).category, Category::Status);
    assert!(e(7).detail.as_deref().unwrap().contains("failures"));
    // JSON carries the payloads.
    assert_eq!(e(6).payload.as_ref().unwrap()["resource"], "/src/pay.rs");
    assert_eq!(doc.summary.by_category["message"], 1);
    assert_eq!(doc.session.duration_secs, 7);
    assert!(doc.truncated.is_none());
}

#[test]
fn without_include_code_there_are_no_diffs_and_text_forms_carry_no_payloads() {
    let doc = document("Pay", Format::Markdown, false);
    assert!(doc.timeline.iter().all(|e| e.diff.is_none()));
    assert!(doc.timeline.iter().all(|e| e.payload.is_none()));
    let md = text(doc, Format::Markdown);
    assert!(!md.contains("```diff"), "{md}");
}

#[test]
fn markdown_has_its_headings_in_order_and_fences_what_participants_wrote() {
    let md = text(
        document("Pay <b>*now*</b>", Format::Markdown, true),
        Format::Markdown,
    );
    let headings: Vec<&str> = md.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(
        headings,
        [
            "# Pay \\<b\\>\\*now\\*\\</b\\>",
            "## Summary",
            "### Participants",
            "### Events by category",
            "### Files changed",
            "## Timeline",
        ],
        "{md}"
    );
    // The body's "# not a heading" stays inside a fenced block of its list item.
    assert!(md.contains("\n  ```text\n  # not a heading\n"), "{md}");
    assert!(md.contains("\n  ```diff\n  --- a/src/pay.rs\n"), "{md}");
    assert!(md.contains("| claude | driver |"), "{md}");
    assert!(md.contains("| Tasks | 1 of 3 done (33%) |"), "{md}");
    assert!(md.contains("| src/pay.rs | 1 | claude (1) |"), "{md}");
    assert!(md.contains("*critical*"), "{md}");
    assert!(!md.contains("Truncated"), "{md}");
}

#[test]
fn markdown_fences_outgrow_backticks_in_the_text() {
    let mut out = String::new();
    markdown::fenced(&mut out, "text", "x ```` y");
    assert!(out.contains("\n  `````text\n"), "{out}");
}

#[test]
fn html_escapes_every_text_and_requests_nothing_from_outside() {
    let html = text(
        document("<script>alert(1)</script>", Format::Html, true),
        Format::Html,
    );
    assert!(!html.to_lowercase().contains("<script"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; done"),
        "{html}"
    );
    assert!(html.contains("<title>&lt;script&gt;alert(1)&lt;/script&gt; · "));
    for outside in ["http:", "https:", "src=", "url(", "@import", "//fonts"] {
        assert!(!html.contains(outside), "{outside} in {html}");
    }
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    assert!(html.contains("<h2>Summary</h2>") && html.contains("<h2>Timeline</h2>"));
}

#[test]
fn html_marks_each_diff_line() {
    let html = text(document("Pay", Format::Html, true), Format::Html);
    for line in [
        "<span class=\"file\">--- a/src/pay.rs</span>",
        "<span class=\"hunk\">@@ -1,2 +1,2 @@</span>",
        "<span class=\"ctx\"> keep</span>",
        "<span class=\"del\">-old line</span>",
        "<span class=\"add\">+new &lt;b&gt;line&lt;/b&gt;</span>",
    ] {
        assert!(html.contains(line), "{line} missing: {html}");
    }
    assert!(html.contains(".add{") && html.contains(".del{"));
    assert!(html.contains("class=\"entry status critical\""), "{html}");
}

#[test]
fn control_characters_never_reach_the_page() {
    assert_eq!(
        html::esc("a\u{0}b\u{1b}[31m\r\n"),
        "a\u{FFFD}b\u{FFFD}[31m\n"
    );
    assert_eq!(markdown::inline("a\nb|c\u{7}"), "a b\\|c\u{FFFD}");
    assert_eq!(
        markdown::inline("change_recorded _x_ a_"),
        "change_recorded \\_x\\_ a\\_"
    );
}

/// More events than the cap: the newest are kept, and every form says what is missing.
#[test]
fn a_long_log_keeps_the_newest_entries_and_says_so() {
    let total = MAX_ENTRIES as i64 + 5;
    let mut timeline = Timeline::new(Format::Html, false);
    let mut id = total;
    while !timeline.is_full() {
        timeline.push_older(logged(
            id,
            "context_changed",
            Some("claude"),
            None,
            json!({"changes": [{"path": "a", "new": 1}]}),
        ));
        id -= 1;
    }
    timeline.push_older(logged(1, "context_changed", None, None, json!({})));
    assert_eq!(timeline.len(), MAX_ENTRIES);
    let facts = |timeline| LogFacts {
        events: total,
        by_kind: vec![("context_changed".into(), total)],
        last_event_at: Some(t(total)),
        tasks: TaskCounts::default(),
        files: Vec::new(),
        files_total: 0,
        compacted_through: 0,
        timeline,
    };
    let doc = assemble(head("Long", false), facts(timeline));
    assert_eq!(doc.timeline.first().unwrap().id, 6);
    assert_eq!(doc.timeline.last().unwrap().id, total);
    let t = doc.truncated.clone().expect("truncated");
    assert_eq!(
        (t.events, t.shown, t.omitted),
        (total, MAX_ENTRIES as i64, 5)
    );
    assert!(
        t.note
            .starts_with("The timeline shows the newest 20000 of 20005 events"),
        "{}",
        t.note
    );
    let html = text(doc.clone(), Format::Html);
    assert!(html.contains(
        "<p class=\"truncated\"><strong>Truncated.</strong> The timeline shows the newest 20000"
    ));
    let md = text(doc, Format::Markdown);
    assert!(md.contains("> **Truncated.** The timeline shows the newest 20000"));
}

#[test]
fn long_details_and_diffs_are_clipped_and_the_budget_holds() {
    let mut timeline = Timeline::new(Format::Json, true);
    let big_diff: String = (0..20_000).map(|i| format!("+line {i}\n")).collect();
    let mut change = logged(
        2,
        "change_recorded",
        Some("claude"),
        None,
        json!({"filePath": "a"}),
    );
    change.diff = Some(big_diff.clone());
    timeline.push_older(change);
    let body = "é".repeat(DETAIL_BYTES);
    timeline.push_older(logged(
        1,
        "message_sent",
        Some("gemini"),
        None,
        json!({"body": body}),
    ));
    let (entries, omitted) = timeline.finish();
    assert_eq!(omitted, 0);
    let (msg, change) = (&entries[0], &entries[1]);
    let detail = msg.detail.as_ref().unwrap();
    assert!(detail.len() <= DETAIL_BYTES + 3 && detail.ends_with('…'));
    assert!(
        msg.note.as_ref().unwrap().contains("detail clipped"),
        "{msg:?}"
    );
    assert!(msg.payload.is_none(), "a 32 KiB payload is left out");
    let diff = change.diff.as_ref().unwrap();
    assert!(diff.len() <= DIFF_BYTES && diff.ends_with('\n'));
    assert!(
        change
            .note
            .as_ref()
            .unwrap()
            .contains(&format!("of {} bytes shown", big_diff.len())),
        "{change:?}"
    );

    // The budget: 64 KiB diffs until 32 MiB are spent; older entries keep their text only.
    let mut timeline = Timeline::new(Format::Markdown, true);
    let n = BUDGET_BYTES / DIFF_BYTES + 10;
    for id in (1..=n as i64).rev() {
        let mut e = logged(id, "change_recorded", Some("claude"), None, json!({}));
        e.diff = Some(big_diff.clone());
        timeline.push_older(e);
    }
    let doc = assemble(
        head("Big", true),
        LogFacts {
            events: n as i64,
            by_kind: Vec::new(),
            last_event_at: None,
            tasks: TaskCounts::default(),
            files: Vec::new(),
            files_total: 0,
            compacted_through: 0,
            timeline,
        },
    );
    let kept: usize = doc
        .timeline
        .iter()
        .filter_map(|e| e.diff.as_ref())
        .map(String::len)
        .sum();
    assert!(kept <= BUDGET_BYTES, "{kept}");
    let t = doc.truncated.expect("truncated");
    assert_eq!(t.omitted, 0);
    assert!(t.details_omitted >= 10, "{t:?}");
    assert!(doc.timeline[0].diff.is_none() && doc.timeline[0].note.is_some());
    assert!(doc.timeline[n - 1].diff.is_some(), "the newest keep theirs");
}

#[test]
fn an_unreadable_payload_still_gives_a_line() {
    let mut e = logged(3, "context_changed", Some("claude"), None, json!({}));
    e.payload = None;
    e.payload_bytes = 900_000;
    let mut timeline = Timeline::new(Format::Json, false);
    timeline.push_older(e);
    let (entries, _) = timeline.finish();
    assert_eq!(
        entries[0].text,
        "context changed (its 900000 byte payload is too large to show)"
    );
}

#[test]
fn every_kind_the_hub_logs_has_a_category() {
    for kind in [
        "session_created",
        "participant_joined",
        "message_sent",
        "handshake",
        "control_passed",
        "role_changed",
        "task_created",
        "task_status_changed",
        "resource_locked",
        "lock_queued",
        "change_recorded",
        "suggestion_submitted",
        "status_reported",
        "discovery_reported",
        "checkpoint_begun",
    ] {
        assert_ne!(Category::of(kind), Category::Other, "{kind}");
    }
    assert_eq!(Category::of("something_new"), Category::Other);
}

#[test]
fn spans_read_like_people_say_them() {
    assert_eq!(span(0), "0 seconds");
    assert_eq!(span(61), "1 minute");
    assert_eq!(span(3_600), "1 hour");
    assert_eq!(span(7_380), "2 hours 3 minutes");
    assert_eq!(span(90_000), "1 day 1 hour");
    assert_eq!(
        to_second("2026-12-02T22:34:51.123456Z"),
        "2026-12-02T22:34:51Z"
    );
}

/// The checked-in schema documents the JSON form; regenerate it with
/// `UPDATE_EXPORT_SCHEMA=1 cargo test --lib export_schema_file_is_up_to_date`.
#[test]
fn export_schema_file_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/export.schema.json");
    let generated = schema();
    if std::env::var("UPDATE_EXPORT_SCHEMA").is_ok_and(|v| v == "1") {
        std::fs::write(path, &generated).expect("write docs/export.schema.json");
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/export.schema.json is not the schema of domain::export::Document; regenerate it with \
         UPDATE_EXPORT_SCHEMA=1 cargo test --lib export_schema_file_is_up_to_date"
    );
    let doc = serde_json::to_value(document("Pay", Format::Json, true)).unwrap();
    let schema: Value = serde_json::from_str(&generated).unwrap();
    // Every property the document has is documented.
    for key in doc.as_object().unwrap().keys() {
        assert!(
            schema["properties"].get(key).is_some(),
            "{key} undocumented"
        );
    }
}

#[test]
fn a_compacted_log_says_what_retention_took() {
    let mut timeline = Timeline::new(Format::Markdown, false);
    timeline.push_older(logged(42, "context_changed", None, None, json!({})));
    let doc = assemble(
        head("Old", false),
        LogFacts {
            events: 1,
            by_kind: vec![("context_changed".into(), 1)],
            last_event_at: Some(t(42)),
            tasks: TaskCounts::default(),
            files: Vec::new(),
            files_total: 0,
            compacted_through: 41,
            timeline,
        },
    );
    let t = doc.truncated.clone().expect("truncated");
    assert_eq!((t.compacted_through, t.omitted, t.shown), (41, 0, 1));
    assert!(
        t.note
            .starts_with("Events #1 to #41 were compacted by the retention policy"),
        "{}",
        t.note
    );
    assert!(text(doc, Format::Markdown).contains("> **Truncated.** Events #1 to #41"));
}
