//! One busy session: its commands are pipelined (`src/actors/session/pipeline.rs`). Many
//! clients of ONE session send messages and take and release locks at once, with held
//! commands (context writes) mixed in; every reply must describe a committed write, each
//! client's replies come in its commit order, and the session's log has every acknowledged
//! write once, in id order.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestDb, both_backends, start_on};
use crate::mcp_protocol::Mcp;

const CLIENTS: usize = 8;
const ROUNDS: usize = 24;

both_backends!(one_sessions_concurrent_writes_commit_in_order);

async fn one_sessions_concurrent_writes_commit_in_order(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let app = start_on(db, crate::helpers::without_send_limit()).await;
    let mut names = vec!["gemini".to_owned()];
    names.extend((0..CLIENTS).map(|i| format!("c{i}")));
    let (status, created) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "busy", "participants": names, "project": "/repo/busy"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let session = created["sessionId"].as_str().unwrap().to_owned();
    let token = |who: &str| created["tokens"][who].as_str().unwrap().to_owned();
    let gemini = token("gemini");

    let clients = (0..CLIENTS).map(|i| {
        let (app, me, gemini) = (&app, token(&format!("c{i}")), gemini.clone());
        async move { run_client(app, i, &me, &gemini).await }
    });
    let results = futures::future::join_all(clients).await;

    let mut sent = BTreeSet::new();
    for (i, ids) in results.iter().enumerate() {
        // Each client waited for every reply before its next call: its ids rise.
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "client c{i}'s message ids do not rise: {ids:?}"
        );
        for id in ids {
            assert!(sent.insert(*id), "message id {id} was given twice");
        }
    }
    assert_eq!(sent.len(), CLIENTS * ROUNDS);

    // The recipient's log: every message once, ids strictly rising, nothing else missing.
    let mut mcp = Mcp::new(&app);
    mcp.token = Some(gemini.clone());
    mcp.initialize("2025-11-25").await;
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let (err, page) = mcp
            .tool("events_poll", json!({"after": after, "limit": 200}))
            .await;
        assert!(!err, "{page}");
        let events = page["events"].as_array().unwrap().clone();
        if events.is_empty() {
            break;
        }
        for e in &events {
            let id = e["id"].as_i64().unwrap();
            assert!(id > after, "event {id} after {after}: {e}");
            after = id;
            if e["kind"] == "message_sent" {
                seen.push(id);
            }
        }
    }
    let seen_set: BTreeSet<i64> = seen.iter().copied().collect();
    assert_eq!(seen.len(), seen_set.len(), "a message event twice");
    assert_eq!(
        seen_set, sent,
        "the log's messages differ from those acknowledged"
    );
    // The log has no holes: its last id counts every event the storm wrote.
    let (_, view) = app.get(&format!("/mcp/session/{session}")).await;
    let last = view["lastEventId"].as_i64().unwrap();
    assert!(last >= after, "{view}");
    // Every lock taken was released: none is left held.
    let (status, locks) = app
        .get_as(
            &gemini,
            &format!("/mcp/collaborate/locks?sessionId={session}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{locks}");
    let held = locks["locks"].as_array().map_or(0, Vec::len);
    assert_eq!(held, 0, "{locks}");
    app.stop().await;
}

/// Client `i`: per round a message to gemini (checked readable by gemini as soon as it is
/// acknowledged), every third round a lock on a file of its own taken, renewed and released, every
/// fourth a context write (a held command between the pipelined ones). Its message ids.
async fn run_client(app: &TestApp, i: usize, me: &str, gemini: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    for round in 0..ROUNDS {
        let body = json!({"to": "gemini", "body": format!("c{i} round {round}")});
        let (status, sent) = app.post_as(me, "/mcp/messages/send", &body).await;
        assert_eq!(status, StatusCode::OK, "{sent}");
        let id = sent["id"].as_i64().unwrap();
        ids.push(id);
        // Acknowledged means committed: another participant reads it at once.
        let (status, page) = app
            .get_as(gemini, &format!("/mcp/messages?since={}&limit=1", id - 1))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(
            page["messages"][0]["id"], id,
            "message {id} not readable: {page}"
        );
        if round % 3 == 0 {
            let file = format!("/src/c{i}/{round}.rs");
            let (status, lock) = app
                .post_as(
                    me,
                    "/mcp/collaborate/lock",
                    &json!({"resource": file, "operation": "edit"}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{lock}");
            let lock_id = lock_id(&lock);
            let (status, renewed) = app
                .post_as(
                    me,
                    "/mcp/collaborate/lock/renew",
                    &json!({"lockId": lock_id, "duration": "10m"}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{renewed}");
            let (status, released) = app
                .post_as(
                    me,
                    "/mcp/collaborate/lock/release",
                    &json!({"lockId": lock_id}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{released}");
        }
        if round % 4 == 0 {
            let (status, set) = app
                .post_as(
                    me,
                    "/mcp/context/set",
                    &json!({"path": format!("projectUnderstanding.c{i}"), "value": round}),
                )
                .await;
            assert!(status.is_success(), "{set}");
        }
    }
    ids
}

fn lock_id(lock: &Value) -> i64 {
    lock["id"]
        .as_i64()
        .or_else(|| lock["lock"]["id"].as_i64())
        .unwrap_or_else(|| panic!("no lock id in {lock}"))
}
