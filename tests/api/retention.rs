//! Retention: completed sessions over the limit are compacted in the background to a final
//! snapshot; they still load, resume and answer reads after a restart; live sessions are
//! untouched.

use std::time::Duration;

use actix_web::http::StatusCode;
use collab_hub::Settings;
use collab_hub::store::schema::{context_snapshots, events, session_snapshots};
use collab_hub::store::{ConnRole, DbTarget};
use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
use serde_json::json;

use crate::helpers::{Backend, TestApp, TestDb, both_backends, start_on};

both_backends!(completed_sessions_are_compacted_and_still_resume);

/// (events, context snapshots, session snapshots) stored for `session`.
fn stored(db: &TestDb, session: &str) -> (i64, i64, i64) {
    let mut c = DbTarget::parse(&db.url)
        .unwrap()
        .connect(ConnRole::Reader)
        .unwrap();
    let count = |n: Result<i64, _>| n.unwrap();
    (
        count(
            events::table
                .filter(events::session_id.eq(session))
                .count()
                .get_result(&mut c),
        ),
        count(
            context_snapshots::table
                .filter(context_snapshots::session_id.eq(session))
                .count()
                .get_result(&mut c),
        ),
        count(
            session_snapshots::table
                .filter(session_snapshots::session_id.eq(session))
                .count()
                .get_result(&mut c),
        ),
    )
}

fn settings() -> Settings {
    let mut s = Settings::for_database("unused");
    s.retention_max_bytes = 1;
    s.retention_interval_secs = 1;
    s
}

async fn work(app: &TestApp, token: &str) {
    for (path, body) in [
        (
            "/mcp/context/set",
            json!({"path": "plan", "value": {"step": 1}}),
        ),
        ("/mcp/context/set", json!({"path": "plan.step", "value": 2})),
        ("/mcp/messages/send", json!({"body": "done for today"})),
        (
            "/mcp/collaborate/task",
            json!({"description": "ship it", "assignedTo": "claude"}),
        ),
        ("/mcp/session/save", json!({})),
    ] {
        let (s, b) = app.post_as(token, path, &body).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
    }
}

async fn completed_sessions_are_compacted_and_still_resume(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let app = start_on(db, settings()).await;
    let (done, claude, _) = app.create_pair("finished").await;
    let (live, live_claude, _) = app.create_pair("still going").await;
    work(&app, &claude).await;
    work(&app, &live_claude).await;
    let (_, before) = app.get_as(&claude, &format!("/mcp/session/{done}")).await;
    let (s, _) = app
        .post_as(
            &claude,
            &format!("/mcp/session/{done}/status"),
            &json!({"action": "complete"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let live_before = stored(&app.db, &live);
    // The sweep runs every second: wait for the completed session's log to empty and its
    // older snapshots to go (separate writes: the log empties chunk by chunk, then the
    // snapshots are pruned; a look between them saw (0, 1, 2)).
    let mut after = stored(&app.db, &done);
    for _ in 0..100 {
        if after == (0, 1, 1) {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        after = stored(&app.db, &done);
    }
    assert_eq!(
        after,
        (0, 1, 1),
        "events gone, one final snapshot of each kind"
    );
    assert_eq!(
        stored(&app.db, &live),
        live_before,
        "the live session is untouched"
    );

    // After a restart the compacted session loads from its final snapshot.
    let db = app.stop().await;
    let app = start_on(db, Settings::for_database("unused")).await;
    let (s, view) = app.get_as(&claude, &format!("/mcp/session/{done}")).await;
    assert_eq!(s, StatusCode::OK, "{view}");
    assert_eq!(view["status"], "completed");
    assert_eq!(view["participants"], before["participants"]);
    assert!(view["lastEventId"].as_i64().unwrap() > before["lastEventId"].as_i64().unwrap());
    let (_, got) = app.get_as(&claude, "/mcp/context/get/plan.step").await;
    assert_eq!(got["value"], 2, "{got}");
    let (s, resumed) = app
        .post_as(&claude, "/mcp/session/resume", &json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{resumed}");
    assert_eq!(resumed["context"]["plan"]["step"], 2);
    assert!(
        resumed["briefing"]["summary"]
            .as_str()
            .unwrap()
            .contains("completed")
    );
    let (_, inbox) = app.get_as(&claude, "/mcp/messages").await;
    assert_eq!(inbox["messages"][0]["body"], "done for today", "{inbox}");
    // What needs the deleted history says so instead of answering wrongly.
    let (s, diff) = app.get_as(&claude, "/mcp/context/diff/claude/0").await;
    assert_eq!(s, StatusCode::CONFLICT, "{diff}");
    assert_eq!(diff["error"]["code"], "history_compacted");
}
