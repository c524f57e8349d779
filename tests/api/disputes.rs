//! The conflict resolution protocol at the wire level: a dispute settled under each
//! `conflictResolution` rule (the driver, a navigator, a majority vote), the wrong party and bad
//! input refused with nothing changed, the operator's escape hatch, an open dispute (with its
//! votes) surviving a restart, and the outcome reaching the other participants.

use actix_web::http::StatusCode;
use collab_hub::Settings;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_error, both_backends, spawn_app, start_on};
use crate::mcp_protocol::Mcp;

both_backends!(
    the_driver_settles_under_the_driver_rule,
    a_navigator_settles_under_the_navigator_rule,
    a_majority_settles_under_consensus,
    bad_input_is_refused_and_changes_nothing,
    an_open_dispute_survives_a_restart,
);

const RAISE: &str = "/mcp/collaborate/dispute";
const RESOLVE: &str = "/mcp/collaborate/dispute/resolve";
const VOTE: &str = "/mcp/collaborate/dispute/vote";
const LIST: &str = "/mcp/collaborate/disputes";

/// claude drives, gemini and codex navigate, cursor observes; disputes settled by `rule`.
async fn session(app: &TestApp, rule: &str) -> (String, Value) {
    let (status, created) = app
        .post(
            "/mcp/session/create",
            &json!({
                "name": "disputes",
                "participants": ["claude", "gemini", "codex", {"aiId": "cursor", "role": "observer"}],
                "genome": {"conflictResolution": rule},
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (
        created["sessionId"].as_str().unwrap().to_owned(),
        created["tokens"].clone(),
    )
}

fn token<'a>(tokens: &'a Value, who: &str) -> &'a str {
    tokens[who].as_str().unwrap()
}

/// claude records a change (something to dispute); returns its id.
async fn change(app: &TestApp, tokens: &Value) -> i64 {
    let (status, body) = app
        .post_as(
            token(tokens, "claude"),
            "/mcp/collaborate/change",
            &json!({"filePath": "/src/cache.rs", "before": "a\n", "after": "b\n"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["id"].as_i64().unwrap()
}

async fn raise(app: &TestApp, tokens: &Value, who: &str, on: i64) -> Value {
    let (status, body) = app
        .post_as(
            token(tokens, who),
            RAISE,
            &json!({"on": {"kind": "change", "id": on}, "reason": "the cache must stay", "proposal": "revert it"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn open(app: &TestApp, tokens: &Value) -> Vec<Value> {
    let (status, body) = app.get_as(token(tokens, "cursor"), LIST).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["disputes"].as_array().unwrap().clone()
}

async fn last_event(app: &TestApp, session: &str) -> i64 {
    let (status, body) = app.get(&format!("/mcp/session/{session}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["lastEventId"].as_i64().unwrap()
}

/// The dispute events `who` receives, read through its MCP event stream.
async fn dispute_events(app: &TestApp, tokens: &Value, who: &str) -> Vec<Value> {
    let mut m = Mcp::new(app);
    m.token = Some(token(tokens, who).to_owned());
    m.initialize("2025-11-25").await;
    m.events_where(|kind| kind.starts_with("dispute_")).await
}

async fn the_driver_settles_under_the_driver_rule(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (session, tokens) = session(&app, "driver").await;
    let on = change(&app, &tokens).await;
    let raised = raise(&app, &tokens, "gemini", on).await;
    assert_eq!(
        (
            raised["disputeId"].as_i64(),
            raised["settledBy"].as_str(),
            &raised["settlers"]
        ),
        (Some(1), Some("driver"), &json!(["claude"])),
        "{raised}"
    );
    // Navigators (the raiser too) and observers may not settle it; nothing changes.
    let before = last_event(&app, &session).await;
    for who in ["gemini", "codex", "cursor"] {
        let (status, body) = app
            .post_as(
                token(&tokens, who),
                RESOLVE,
                &json!({"disputeId": 1, "outcome": "accept"}),
            )
            .await;
        let err = assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
        if who != "cursor" {
            let message = err["message"].as_str().unwrap();
            assert!(
                message.contains("conflictResolution (driver)") && message.contains("claude"),
                "{message}"
            );
        }
    }
    assert_eq!(last_event(&app, &session).await, before);
    let still = open(&app, &tokens).await;
    assert_eq!(still.len(), 1, "{still:?}");
    assert_eq!(still[0]["on"], json!({"kind": "change", "id": on}));
    assert_eq!(still[0]["raisedBy"], "gemini");
    // The driver settles it.
    let (status, done) = app
        .post_as(
            token(&tokens, "claude"),
            RESOLVE,
            &json!({"disputeId": 1, "outcome": "accept", "note": "it stays"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["outcome"], "accept", "{done}");
    assert!(open(&app, &tokens).await.is_empty());
    // Settled once: a second resolve finds no open dispute.
    let (status, body) = app
        .post_as(
            token(&tokens, "claude"),
            RESOLVE,
            &json!({"disputeId": 1, "outcome": "reject"}),
        )
        .await;
    let err = assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(err["field"], "disputeId");
    // Recorded and announced: every participant gets one raise and one resolution.
    for who in ["gemini", "codex", "cursor"] {
        let events = dispute_events(&app, &tokens, who).await;
        let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["dispute_raised", "dispute_resolved"], "{who}");
        let p = &events[1]["payload"];
        assert_eq!(
            (
                &p["disputeId"],
                &p["outcome"],
                &p["by"],
                &p["rule"],
                &p["note"]
            ),
            (
                &json!(1),
                &json!("accept"),
                &json!("claude"),
                &json!("driver"),
                &json!("it stays")
            ),
            "{p}"
        );
        assert_eq!(events[1]["priority"], "important");
        assert_eq!(events[0]["payload"]["settledBy"], "driver");
    }
}

async fn a_navigator_settles_under_the_navigator_rule(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (session, tokens) = session(&app, "navigator").await;
    let on = change(&app, &tokens).await;
    // Observers do not raise disputes.
    let (status, body) = app
        .post_as(
            token(&tokens, "cursor"),
            RAISE,
            &json!({"on": {"kind": "change", "id": on}, "reason": "no"}),
        )
        .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    let raised = raise(&app, &tokens, "claude", on).await;
    assert_eq!(raised["settlers"], json!(["codex", "gemini"]), "{raised}");
    let id = raised["disputeId"].clone();
    // The driver may not settle it, nor vote on it.
    let (status, body) = app
        .post_as(
            token(&tokens, "claude"),
            RESOLVE,
            &json!({"disputeId": id, "outcome": "accept"}),
        )
        .await;
    let err = assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("conflictResolution (navigator)"),
        "{err}"
    );
    let (status, body) = app
        .post_as(
            token(&tokens, "gemini"),
            VOTE,
            &json!({"disputeId": id, "vote": "accept"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "not_by_vote");
    assert_eq!(open(&app, &tokens).await.len(), 1);
    // Any navigator settles it.
    let (status, done) = app
        .post_as(
            token(&tokens, "codex"),
            RESOLVE,
            &json!({"disputeId": id, "outcome": "reject"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert!(open(&app, &tokens).await.is_empty());
    let events = dispute_events(&app, &tokens, "claude").await;
    assert_eq!(events.last().unwrap()["payload"]["by"], "codex");
    // The hub operator may always settle (no token on loopback speaks as the operator).
    raise(&app, &tokens, "gemini", on).await;
    let (status, done) = app
        .post(
            RESOLVE,
            &json!({"sessionId": session, "disputeId": 2, "outcome": "accept"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let events = dispute_events(&app, &tokens, "gemini").await;
    let last = &events.last().unwrap()["payload"];
    assert_eq!(
        (&last["by"], &last["disputeId"]),
        (&json!("operator"), &json!(2))
    );
}

async fn a_majority_settles_under_consensus(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, tokens) = session(&app, "consensus").await;
    let on = change(&app, &tokens).await;
    let raised = raise(&app, &tokens, "gemini", on).await;
    assert_eq!(raised["settledBy"], "consensus", "{raised}");
    let vote = |who: &'static str, vote: &'static str| {
        let app = &app;
        let tokens = &tokens;
        async move {
            let (status, body) = app
                .post_as(
                    token(tokens, who),
                    VOTE,
                    &json!({"disputeId": 1, "vote": vote}),
                )
                .await;
            (status, body)
        }
    };
    // Nobody resolves directly.
    let (status, body) = app
        .post_as(
            token(&tokens, "claude"),
            RESOLVE,
            &json!({"disputeId": 1, "outcome": "accept"}),
        )
        .await;
    let err = assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        err["message"].as_str().unwrap().contains("majority vote"),
        "{err}"
    );
    // One vote does not settle it (two of three needed); a second vote replaces the first.
    let (status, one) = vote("claude", "accept").await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(
        (one.get("outcome"), &one["needed"]),
        (None, &json!(2)),
        "{one}"
    );
    let (_, again) = vote("claude", "reject").await;
    assert_eq!(again["votes"], json!({"claude": "reject"}), "{again}");
    let (_, split) = vote("gemini", "accept").await;
    assert_eq!(split.get("outcome"), None, "{split}");
    // Observers do not vote.
    let (status, body) = vote("cursor", "reject").await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        open(&app, &tokens).await[0]["votes"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    // The second agreeing vote settles it, in the same commit.
    let (status, settled) = vote("codex", "reject").await;
    assert_eq!(status, StatusCode::OK, "{settled}");
    assert_eq!(settled["outcome"], "reject", "{settled}");
    assert!(open(&app, &tokens).await.is_empty());
    let events = dispute_events(&app, &tokens, "cursor").await;
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "dispute_raised",
            "dispute_voted",
            "dispute_voted",
            "dispute_voted",
            "dispute_voted",
            "dispute_resolved"
        ]
    );
    let resolved = events.last().unwrap();
    assert_eq!(resolved["id"], settled["eventId"]);
    assert_eq!(
        (&resolved["payload"]["by"], &resolved["payload"]["votes"]),
        (
            &json!("majority"),
            &json!({"claude": "reject", "gemini": "accept", "codex": "reject"})
        ),
        "{resolved}"
    );
    // Settled: further votes find nothing open.
    let (status, body) = vote("gemini", "reject").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_field");
}

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (session, tokens) = session(&app, "driver").await;
    let on = change(&app, &tokens).await;
    raise(&app, &tokens, "gemini", on).await;
    let before = last_event(&app, &session).await;
    let listed = open(&app, &tokens).await;
    let long = "x".repeat(1001);
    for (path, body, field) in [
        (
            RAISE,
            json!({"on": {"kind": "change", "id": before + 1}, "reason": "x"}),
            "on.id",
        ),
        (
            RAISE,
            json!({"on": {"kind": "review", "id": 0}, "reason": "x"}),
            "on.id",
        ),
        (
            RAISE,
            json!({"on": {"kind": "change", "id": on}, "reason": "  "}),
            "reason",
        ),
        (
            RAISE,
            json!({"on": {"kind": "change", "id": on}, "reason": long}),
            "reason",
        ),
        (RAISE, json!({"on": {"kind": "change", "id": on}}), "reason"),
        (RAISE, json!({"reason": "x"}), "on"),
        (
            RAISE,
            json!({"on": {"kind": "commit", "id": on}, "reason": "x"}),
            "on.kind",
        ),
        (
            RAISE,
            json!({"on": {"kind": "change", "id": on}, "reason": "x", "bogus": 1}),
            "",
        ),
        (
            RESOLVE,
            json!({"disputeId": 7, "outcome": "accept"}),
            "disputeId",
        ),
        (RESOLVE, json!({"disputeId": 1}), "outcome"),
        (
            RESOLVE,
            json!({"disputeId": 1, "outcome": "maybe"}),
            "outcome",
        ),
        (VOTE, json!({"vote": "accept"}), "disputeId"),
    ] {
        let (status, answer) = app.post_as(token(&tokens, "claude"), path, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let err = &answer["error"];
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
        if !field.is_empty() {
            assert_eq!(err["field"], field, "{body}: {answer}");
        }
    }
    assert_eq!(
        last_event(&app, &session).await,
        before,
        "nothing was written"
    );
    assert_eq!(open(&app, &tokens).await, listed, "nothing changed");
}

async fn an_open_dispute_survives_a_restart(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, tokens) = session(&app, "consensus").await;
    let on = change(&app, &tokens).await;
    raise(&app, &tokens, "gemini", on).await;
    let (status, body) = app
        .post_as(
            token(&tokens, "gemini"),
            VOTE,
            &json!({"disputeId": 1, "vote": "accept"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = open(&app, &tokens).await;
    let db = app.stop().await;
    let app = start_on(db, Settings::for_database("unused")).await;
    // The dispute and its vote are still there; the next vote settles it.
    assert_eq!(open(&app, &tokens).await, listed);
    assert_eq!(listed[0]["votes"], json!({"gemini": "accept"}));
    let (status, settled) = app
        .post_as(
            token(&tokens, "claude"),
            VOTE,
            &json!({"disputeId": 1, "vote": "accept"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{settled}");
    assert_eq!(settled["outcome"], "accept", "{settled}");
    // Dispute ids are never reused.
    assert_eq!(raise(&app, &tokens, "codex", on).await["disputeId"], 2);
}
