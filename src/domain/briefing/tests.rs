//! Each rule fires on the state it names and stays quiet otherwise; budgets hold; alerts stay.

use chrono::{Duration, NaiveDateTime};
use serde_json::json;
use uuid::Uuid;

use super::budget::measure;
use super::*;
use crate::domain::lock::{Mode, Resource, State};
use crate::domain::message::MessageView;

fn t0() -> NaiveDateTime {
    crate::domain::utc::parse("2026-12-01T09:00:00Z").unwrap()
}

fn event(id: i64, kind: &str, actor: &str, payload: serde_json::Value) -> Event {
    Event {
        id,
        session_id: Uuid::nil(),
        kind: kind.into(),
        actor: Some(actor.into()),
        priority: crate::domain::event::Priority::Routine,
        payload,
        at: (t0() + Duration::minutes(id)).and_utc(),
        to: None,
    }
}

fn task(id: i64, desc: &str, to: Option<&str>, status: Status) -> Task {
    Task {
        id,
        parent: None,
        description: desc.into(),
        assigned_to: to.map(Into::into),
        status,
        blocked_reason: None,
        dependencies: vec![],
        skills: vec![],
        estimated_secs: None,
        metadata: serde_json::Value::Null,
        handoff: None,
        created_by: None,
        created_at: t0(),
        updated_at: t0(),
        completed_at: (status == Status::Completed).then(|| t0() + Duration::hours(2)),
    }
}

fn message(id: i64, from: &str, thread: i64, body: &str) -> MessageView {
    MessageView {
        id,
        from: from.into(),
        to: None,
        priority: crate::domain::event::Priority::Routine,
        body: json!(body),
        reply_to: None,
        thread,
        requires_ack: false,
        ack_deadline: None,
        at: (t0() + Duration::minutes(id)).and_utc(),
        read: Some(false),
        acked: Some(false),
        delivered_to: None,
        shown_to: None,
        read_by: None,
        acked_by: None,
    }
}

/// Claude, a navigator, away for a day; gemini drives.
fn facts() -> Facts {
    Facts {
        now: t0() + Duration::hours(26),
        me: Me {
            ai_id: "claude".into(),
            role: Role::Navigator,
            skills: vec!["rust".into()],
            joined_at: t0(),
        },
        session: SessionFacts {
            id: Uuid::nil(),
            name: "Payment Gateway".into(),
            project: "pay".into(),
            status: SessionStatus::Active,
            created_at: t0(),
            driver: Some("gemini".into()),
            phase: Phase::Idle,
            focus: Some("Stripe integration".into()),
        },
        horizon: 10,
        last_active: Some(t0() + Duration::hours(1)),
        my_last: Some(event(
            10,
            "change_recorded",
            "claude",
            json!({"filePath": "src/pay.rs"}),
        )),
        raw: RawHistory {
            events: 300,
            bytes: 120_000,
            messages: 20,
            changes: 12,
            diff_bytes: 40_000,
        },
        collaborators: vec![Collaborator {
            ai_id: "gemini".into(),
            last: event(
                300,
                "change_recorded",
                "gemini",
                json!({"filePath": "tests/pay_test.rs"}),
            ),
            counts: vec![("change_recorded".into(), 12), ("message_sent".into(), 3)],
            files: vec![("tests/pay_test.rs".into(), 8), ("src/pay.rs".into(), 4)],
        }],
        my_files: vec!["src/pay.rs".into()],
        tasks: vec![
            task(1, "Payment service", Some("claude"), Status::Completed),
            task(2, "Unit tests", Some("gemini"), Status::Completed),
            task(3, "Webhooks", Some("gemini"), Status::InProgress),
        ],
        messages: vec![],
        unacked: vec![],
        reports: vec![],
        discoveries: vec![],
        conflicts: vec![],
        handoffs: vec![],
        critical: vec![],
        locks: vec![],
    }
}

fn rules_of(b: &Briefing) -> Vec<&'static str> {
    b.suggestions.iter().map(|s| s.rule).collect()
}

#[test]
fn default_strategy_follows_the_time_away() {
    assert_eq!(Strategy::for_absence(0), Strategy::Quick);
    assert_eq!(Strategy::for_absence(3_599), Strategy::Quick);
    assert_eq!(Strategy::for_absence(3_600), Strategy::Standard);
    assert_eq!(Strategy::for_absence(86_399), Strategy::Standard);
    assert_eq!(Strategy::for_absence(86_400), Strategy::Deep);
    assert_eq!(
        (
            Strategy::Quick.messages(),
            Strategy::Standard.messages(),
            Strategy::Deep.messages()
        ),
        (10, 50, 100)
    );
}

#[test]
fn a_quiet_state_raises_no_alert_and_no_suggestion() {
    let mut f = facts();
    f.tasks[0].completed_at = Some(t0() + Duration::minutes(30));
    let b = brief(&f, Strategy::Deep, None);
    assert!(b.alerts.is_empty(), "{:?}", b.alerts);
    assert!(b.suggestions.is_empty(), "{:?}", b.suggestions);
    assert_eq!(b.last_active, "1 day ago");
    assert_eq!(b.session_duration, "1 day total");
    assert!(
        b.summary.contains("2 of 3 tasks done (66%)"),
        "{}",
        b.summary
    );
    assert!(b.summary.contains("Stripe integration"));
    let g = &b.collaborator_updates["gemini"];
    assert_eq!(g.last_action, "changed tests/pay_test.rs");
    assert_eq!(g.files, ["tests/pay_test.rs (8×)", "src/pay.rs (4×)"]);
    assert!(!b.collaborator_updates.contains_key("claude"));
    // Completed while claude was away: task 2, not its own task 1 from before.
    assert_eq!(b.completed, ["#2 Unit tests (gemini)"]);
}

#[test]
fn a_review_waiting_on_a_navigator_alerts_and_suggests() {
    let mut f = facts();
    f.session.phase = Phase::AwaitingReview {
        id: 42,
        driver: "gemini".into(),
        since: t0(),
    };
    let b = brief(&f, Strategy::Standard, None);
    assert!(
        b.alerts.iter().any(|a| a.contains("review waiting")),
        "{:?}",
        b.alerts
    );
    assert_eq!(rules_of(&b), ["review_waiting"]);
    assert!(b.suggestions[0].action.contains("acknowledgeId: 42"));
    // An observer is not asked to review, nor is the driver its own reviewer.
    f.me.role = Role::Observer;
    let b = brief(&f, Strategy::Standard, None);
    assert!(b.alerts.is_empty() && b.suggestions.is_empty());
    f.me.role = Role::Navigator;
    f.session.phase = Phase::AwaitingReview {
        id: 42,
        driver: "claude".into(),
        since: t0(),
    };
    assert!(brief(&f, Strategy::Standard, None).suggestions.is_empty());
}

#[test]
fn an_assigned_task_is_ready_only_when_its_dependencies_are_done() {
    let mut f = facts();
    let mut t = task(4, "Error handling", Some("claude"), Status::Pending);
    t.dependencies = vec![3];
    f.tasks.push(t);
    assert!(brief(&f, Strategy::Deep, None).suggestions.is_empty());
    f.tasks[2].status = Status::Completed;
    let b = brief(&f, Strategy::Deep, None);
    assert_eq!(rules_of(&b), ["ready_task"]);
    assert!(b.suggestions[0].reason.contains("dependencies are done"));
    // Someone else's task is not suggested.
    f.tasks[3].assigned_to = Some("gemini".into());
    assert!(brief(&f, Strategy::Deep, None).suggestions.is_empty());
}

#[test]
fn a_failing_test_naming_my_file_is_suggested_a_foreign_one_only_alerted() {
    let mut f = facts();
    f.reports.push(Report {
        kind: "test".into(),
        failing: true,
        summary: "2 failed in tests/other_test.rs".into(),
        by: Some("ci".into()),
        details: String::new(),
    });
    let b = brief(&f, Strategy::Deep, None);
    assert!(
        b.alerts.iter().any(|a| a.starts_with("test failing")),
        "{:?}",
        b.alerts
    );
    assert!(b.suggestions.is_empty());
    f.reports[0].details = json!({"failures": ["pay.rs:42 assertion"]}).to_string();
    let b = brief(&f, Strategy::Deep, None);
    assert_eq!(rules_of(&b), ["failing_test_in_your_file"]);
    assert!(b.suggestions[0].reason.contains("src/pay.rs"));
    // A passing report is no alert.
    f.reports[0].failing = false;
    let b = brief(&f, Strategy::Deep, None);
    assert!(b.alerts.is_empty() && b.suggestions.is_empty());
    assert_eq!(b.status_reports.len(), 1);
}

#[test]
fn an_unacknowledged_ack_request_alerts_and_suggests_until_acked() {
    let mut f = facts();
    let mut m = message(50, "gemini", 50, "Confirm the API version");
    m.requires_ack = true;
    f.unacked.push(m);
    let b = brief(&f, Strategy::Quick, None);
    assert!(
        b.alerts
            .iter()
            .any(|a| a.contains("ack needed: message #50"))
    );
    assert_eq!(rules_of(&b), ["ack_required"]);
    f.unacked.clear();
    let b = brief(&f, Strategy::Quick, None);
    assert!(b.alerts.is_empty() && b.suggestions.is_empty());
}

#[test]
fn a_handoff_by_someone_else_is_claimable_newest_first() {
    let mut f = facts();
    let mut older = task(5, "Docs", None, Status::Pending);
    older.handoff = Some(json!({"from": "gemini", "context": {}}));
    let mut newer = task(6, "Webhook retries", None, Status::Pending);
    newer.handoff = Some(json!({"from": "gemini", "context": {}}));
    newer.updated_at = t0() + Duration::hours(5);
    let mut mine = task(7, "Mine", None, Status::Pending);
    mine.handoff = Some(json!({"from": "claude", "context": {}}));
    let mut skilled = task(8, "Frontend", None, Status::Pending);
    skilled.handoff = Some(json!({"from": "gemini", "context": {}}));
    skilled.skills = vec!["react".into()];
    f.tasks.extend([older, newer, mine, skilled]);
    let b = brief(&f, Strategy::Deep, None);
    let claims: Vec<&str> = b.suggestions.iter().map(|s| s.action.as_str()).collect();
    assert_eq!(claims.len(), 2, "{claims:?}");
    assert!(
        claims[0].contains("#6") && claims[1].contains("#5"),
        "{claims:?}"
    );
    f.me.role = Role::Observer;
    assert!(brief(&f, Strategy::Deep, None).suggestions.is_empty());
}

#[test]
fn a_lock_near_its_expiry_alerts_a_distant_one_does_not() {
    let mut f = facts();
    let lock = |id, secs_left| Lock {
        id,
        session_id: Uuid::nil(),
        resource: Resource::parse("file:src/pay.rs").unwrap(),
        holder: "claude".into(),
        mode: Mode::Exclusive,
        operation: None,
        state: State::Held,
        lease_secs: 300,
        token: Some(id),
        task_id: None,
        expires_at: Some(f.now + Duration::seconds(secs_left)),
    };
    f.locks = vec![lock(1, 30), lock(2, 290)];
    let b = brief(&f, Strategy::Quick, None);
    assert_eq!(b.alerts.len(), 1, "{:?}", b.alerts);
    assert!(b.alerts[0].contains("lock #1") && b.alerts[0].contains("30s"));
}

#[test]
fn critical_events_and_conflicts_are_alerts() {
    let mut f = facts();
    let mut e = event(
        200,
        "message_sent",
        "gemini",
        json!({"body": "prod is down"}),
    );
    e.priority = crate::domain::event::Priority::Critical;
    f.critical.push(e);
    let conflict = event(
        201,
        "change_conflict",
        "gemini",
        json!({"filePath": "src/pay.rs", "summary": "overlap"}),
    );
    f.critical.push(conflict.clone());
    f.conflicts.push(conflict);
    let b = brief(&f, Strategy::Quick, None);
    assert_eq!(b.alerts.len(), 2, "one line per fact: {:?}", b.alerts);
    assert!(b.alerts[0].contains("prod is down"));
    assert!(b.alerts[1].starts_with("conflict #201"));
}

#[test]
fn messages_lead_with_the_latest_and_mark_superseded_ones() {
    let mut f = facts();
    // Newest first, as the store gives them: thread 20 has two messages.
    f.messages = vec![
        message(40, "gemini", 20, "Use webhooks v2 after all"),
        message(30, "gemini", 30, "Tests are green"),
        message(20, "gemini", 20, "Use webhooks v1"),
    ];
    let b = brief(&f, Strategy::Standard, None);
    let ids: Vec<(i64, bool)> = b.messages.iter().map(|m| (m.id, m.superseded)).collect();
    assert_eq!(ids, [(40, false), (30, false), (20, true)]);
}

#[test]
fn handoffs_lead_with_the_latest_and_mark_superseded_ones() {
    let mut f = facts();
    let mut docs = task(5, "Docs", None, Status::Pending);
    docs.handoff = Some(json!({"from": "gemini", "context": {"notes": "API section left"}}));
    f.tasks.push(docs);
    let handoff = |id, task: i64, desc: &str| {
        event(
            id,
            "task_handed_off",
            "gemini",
            json!({"taskId": task, "description": desc}),
        )
    };
    // Newest first, as the store gives them: task 5 was handed off twice.
    f.handoffs = vec![
        handoff(90, 5, "Docs"),
        handoff(80, 6, "Retries"),
        handoff(70, 5, "Docs"),
    ];
    let b = brief(&f, Strategy::Standard, None);
    let lines: Vec<(i64, bool)> = b
        .handoffs
        .iter()
        .map(|h| (h.task_id, h.superseded))
        .collect();
    assert_eq!(lines, [(5, false), (6, false), (5, true)]);
    assert_eq!(b.handoffs[0].text, "Docs: API section left");
    assert_eq!(
        b.handoffs[2].text, "Docs",
        "the superseded one carries no notes"
    );
}

/// A busy day: many of everything, so that every budget has to cut.
fn busy() -> Facts {
    let mut f = facts();
    for i in 0..120 {
        f.messages.push(message(
            1000 - i,
            "gemini",
            1000 - i,
            &"a long message body ".repeat(5),
        ));
        f.tasks.push(task(
            100 + i,
            &format!("task number {i} with a description"),
            Some("claude"),
            Status::Pending,
        ));
        f.discoveries.push(event(
            500 + i,
            "discovery_reported",
            "gemini",
            json!({"discovery": {"finding": "rate limit on the API", "severity": "high"}}),
        ));
    }
    f.collaborators[0].files = (0..40).map(|i| (format!("src/module_{i}.rs"), 3)).collect();
    f.reports.push(Report {
        kind: "build".into(),
        failing: true,
        summary: "linker error in src/pay.rs".into(),
        by: Some("ci".into()),
        details: String::new(),
    });
    let mut m = message(60, "gemini", 60, "ack please");
    m.requires_ack = true;
    f.unacked.push(m);
    f
}

#[test]
fn budgets_from_100_to_4000_tokens_are_honoured_and_alerts_survive() {
    let f = busy();
    let full = brief(&f, Strategy::Deep, None);
    assert!(
        full.size.tokens > 4_000,
        "the busy briefing must need cutting: {}",
        full.size.tokens
    );
    assert_eq!(full.size.tokens, measure(&full));
    for max in [100, 150, 250, 500, 1_000, 2_000, 4_000] {
        for strategy in [Strategy::Quick, Strategy::Standard, Strategy::Deep] {
            let b = brief(&f, strategy, Some(max));
            assert!(
                b.size.tokens <= max,
                "{strategy:?} {max}: {} tokens: {}",
                b.size.tokens,
                serde_json::to_string(&b).unwrap()
            );
            assert_eq!(b.size.tokens, measure(&b), "the size reports itself");
            assert_eq!(b.alerts.len(), full.alerts.len(), "{max}: alerts kept");
            assert!(!b.size.omitted.is_empty(), "{max}: says what it cut");
            assert_eq!(b.size.raw_tokens, full.size.raw_tokens);
            assert_eq!(
                b.size.saved_tokens,
                b.size.raw_tokens - b.size.tokens as i64
            );
        }
    }
    // A larger budget keeps more.
    let small = brief(&f, Strategy::Deep, Some(500));
    let large = brief(&f, Strategy::Deep, Some(4_000));
    assert!(large.size.tokens > small.size.tokens);
    assert!(large.size.omitted.len() < small.size.omitted.len());
    // The alerts lead the 100-token briefing and still name their facts.
    let tiny = brief(&f, Strategy::Deep, Some(100));
    assert!(
        tiny.alerts.iter().any(|a| a.contains("build failing")),
        "{:?}",
        tiny.alerts
    );
    assert!(
        tiny.alerts.iter().any(|a| a.contains("#60")),
        "{:?}",
        tiny.alerts
    );
}

#[test]
fn briefings_are_deterministic() {
    let f = busy();
    assert_eq!(
        brief(&f, Strategy::Deep, Some(700)),
        brief(&f, Strategy::Deep, Some(700))
    );
}

#[test]
fn strategies_differ_in_depth() {
    let f = busy();
    let quick = brief(&f, Strategy::Quick, None);
    let standard = brief(&f, Strategy::Standard, None);
    let deep = brief(&f, Strategy::Deep, None);
    assert!(quick.status_reports.is_empty() && !standard.status_reports.is_empty());
    assert!(standard.change_analysis.is_empty() && !deep.change_analysis.is_empty());
    assert!(deep.change_analysis[0].contains("by gemini"));
    assert!(quick.size.tokens < standard.size.tokens && standard.size.tokens < deep.size.tokens);
    assert!(quick.pending_tasks.len() <= 5 && deep.pending_tasks.len() == 25);
}

#[test]
fn spans_read_as_people_say_them() {
    assert_eq!(humanize_span(45), "45 seconds");
    assert_eq!(humanize_span(60), "1 minute");
    assert_eq!(humanize_span(7_300), "2 hours");
    assert_eq!(humanize_span(3 * 86_400 + 5), "3 days");
    assert_eq!(humanize_ago(t0(), t0()), "just now");
}
