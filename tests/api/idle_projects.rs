//! A session that no request reached for `--idle-secs`, and that nothing watches, leaves
//! memory; a project all of whose sessions did is let go, its lock table with them (`GET
//! /metrics` counts what is loaded), and on PostgreSQL its lease is handed back. The next
//! request loads either again from the database, with nothing lost. A project something watches
//! (an open MCP event stream) is kept.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Bool};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use serde_json::json;

use crate::helpers::{
    Backend, TestApp, TestDb, assert_error, both_backends, metric, start_on, without_send_limit,
};
use crate::project_serving::{ends_soon, open_stream, received, send, session_in};

both_backends!(
    an_idle_project_is_let_go_and_loaded_again,
    an_idle_session_of_a_busy_project_leaves_memory,
    a_watched_project_is_kept,
    a_session_loaded_again_does_not_announce_the_gone_again,
    a_paused_session_with_automatic_rotation_is_let_go,
    one_back_just_before_the_stop_is_loaded_back,
    one_back_just_before_a_restart_keeps_its_lock
);

/// A hub that lets a project go after 2 s unused (checks between two requests must fit in
/// that, on a loaded machine).
async fn hub(backend: Backend) -> Option<TestApp> {
    let db = TestDb::fresh(backend)?;
    let mut settings = without_send_limit();
    settings.idle_secs = 2;
    Some(start_on(db, settings).await)
}

async fn loaded(app: &TestApp) -> (i64, i64) {
    (
        metric(app, "collab_hub_projects_loaded").await,
        metric(app, "collab_hub_sessions_loaded").await,
    )
}

/// Waits until nothing is loaded, at most `within`.
async fn until_let_go(app: &TestApp, within: Duration) {
    let start = Instant::now();
    while loaded(app).await != (0, 0) {
        assert!(
            start.elapsed() < within,
            "still loaded after {within:?}: {:?}",
            loaded(app).await
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Lease {
    #[diesel(sql_type = BigInt)]
    generation: i64,
    #[diesel(sql_type = Bool)]
    expired: bool,
}

/// The project's lease row (PostgreSQL).
fn lease(app: &TestApp, project: &str) -> Lease {
    diesel::sql_query(
        "SELECT generation, expires_at < now() AS expired FROM owners
          WHERE kind = 'project' AND key = $1",
    )
    .bind::<diesel::sql_types::Text, _>(project)
    .get_result(&mut PgConnection::establish(&app.db.url).unwrap())
    .expect("the project's lease row")
}

/// Unused for a while, a project is let go (its auto-save taken first; on PostgreSQL its lease
/// handed back), and the next request loads it again: the message sent before is there, the lock held before still holds
/// (the lock table read it back), and a new lease generation fences the new writes.
async fn an_idle_project_is_let_go_and_loaded_again(backend: Backend) {
    let Some(app) = hub(backend).await else {
        return;
    };
    let (id, claude, gemini) = session_in(&app, "alpha").await;
    let (status, body) = send(&app, &claude, "before").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let held = json!({"resource": "/src/auth/", "operation": "refactor"});
    let (status, body) = app.post_as(&claude, "/mcp/collaborate/lock", &held).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(loaded(&app).await, (1, 1));
    let first = (backend == Backend::Postgres).then(|| lease(&app, "alpha"));
    if let Some(first) = &first {
        assert!(!first.expired, "{first:?}");
    }

    until_let_go(&app, Duration::from_secs(10)).await;
    // The auto-save it was due was taken first: loading it again starts from there.
    let saved = crate::snapshots::latest(&app.db.url, &id).expect("an auto-save");
    assert_eq!(saved["trigger"], "auto", "{saved}");
    if let Some(first) = &first {
        // Handed back by the keeper's thread, a moment after the project stopped.
        let handed_back = Lease {
            generation: first.generation,
            expired: true,
        };
        let start = Instant::now();
        while lease(&app, "alpha") != handed_back {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "alpha's lease was not handed back: {:?}",
                lease(&app, "alpha")
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Loaded again by the next request, from the database (the auto-save stands at its last
    // event).
    let (status, view) = app.get(&format!("/mcp/session/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(saved["eventId"], view["lastEventId"], "{saved}");
    assert_eq!(received(&app, &gemini).await, ["before"]);
    assert_eq!(loaded(&app).await, (1, 1));
    let inside = json!({"resource": "/src/auth/jwt.ts"});
    let (status, body) = app.post_as(&gemini, "/mcp/collaborate/lock", &inside).await;
    assert_error(status, &body, StatusCode::CONFLICT, "resource_locked");
    if let Some(first) = &first {
        let again = lease(&app, "alpha");
        assert!(
            !again.expired && again.generation > first.generation,
            "{first:?} then {again:?}"
        );
    }
    let (status, body) = send(&app, &claude, "after").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.stop().await;
}

/// A project with an open MCP event stream is kept however long nobody calls; once its client
/// closes the stream's MCP session it is let go. A stream opened after that loads it again and
/// stays open.
async fn a_watched_project_is_kept(backend: Backend) {
    let Some(app) = hub(backend).await else {
        return;
    };
    let (_, _, gemini) = session_in(&app, "alpha").await;
    let mut watcher = crate::mcp_protocol::Mcp::new(&app);
    watcher.token = Some(gemini.clone());
    watcher.initialize("2025-11-25").await;
    let stream = open_stream(&app, &watcher, &gemini).await;
    assert_eq!(stream.status(), StatusCode::OK);
    // Two idle periods, eight sweeps: still loaded, and the stream still open.
    actix_web::rt::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(loaded(&app).await, (1, 1));
    let (stream, ended) = {
        use futures::StreamExt;
        let mut stream = stream;
        let next = actix_web::rt::time::timeout(Duration::from_millis(200), stream.next()).await;
        let ended = matches!(next, Ok(None) | Ok(Some(Err(_))));
        (stream, ended)
    };
    assert!(!ended, "the watched project's stream ended");
    // The client closes its MCP session, as an SDK client does when it shuts down: its stream
    // ends, and the project is let go. (A connection merely dropped is found closed when a
    // keep-alive cannot be written: within two of them, 30 s.)
    let closed = crate::helpers::client()
        .delete(format!("{}/mcp", app.address))
        .insert_header(("mcp-session-id", watcher.session.clone().unwrap()))
        .bearer_auth(&gemini)
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), StatusCode::OK);
    assert!(
        ends_soon(stream).await,
        "the closed MCP session's stream went on"
    );
    until_let_go(&app, Duration::from_secs(10)).await;
    // A stream opened again loads the project, and stays open.
    let mut watcher = crate::mcp_protocol::Mcp::new(&app);
    watcher.token = Some(gemini.clone());
    watcher.initialize("2025-11-25").await;
    let again = open_stream(&app, &watcher, &gemini).await;
    assert_eq!(again.status(), StatusCode::OK);
    let start = Instant::now();
    while loaded(&app).await != (1, 1) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            loaded(&app).await
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !ends_soon_enough(again).await,
        "a new stream after the let-go ended at once"
    );
    app.stop().await;
}

/// Whether `stream` ends within 2 s (a stream that attached stays open).
async fn ends_soon_enough(stream: awc::ClientResponse<impl crate::project_serving::Body>) -> bool {
    actix_web::rt::time::timeout(Duration::from_secs(2), ends_soon(stream))
        .await
        .unwrap_or(false)
}

/// In a project that stays busy, a session nobody used for the idle period leaves memory on its
/// own (the project stays, its lease with it), and its next request loads it again.
async fn an_idle_session_of_a_busy_project_leaves_memory(backend: Backend) {
    let Some(app) = hub(backend).await else {
        return;
    };
    let (_, claude, gemini) = session_in(&app, "alpha").await;
    let (_, busy, _) = session_in(&app, "alpha").await;
    let (status, body) = send(&app, &claude, "kept").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(loaded(&app).await, (1, 2));
    // The other session is read every 300 ms meanwhile.
    let start = Instant::now();
    while loaded(&app).await != (1, 1) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the unused session still loaded after 10 s: {:?}",
            loaded(&app).await
        );
        let (status, page) = app.get_as(&busy, "/mcp/messages?limit=5").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(received(&app, &gemini).await, ["kept"]);
    assert_eq!(loaded(&app).await, (1, 2));
    app.stop().await;
}

/// A hub that lets an unused session go after `idle_secs` (0: never) and counts a silent
/// participant gone after `grace_secs`, with a session of project alpha whose two participants
/// were both announced gone (the operator's reads keep it loaded meanwhile): the hub, the
/// session, and the tokens of claude and gemini.
async fn both_announced_gone(
    backend: Backend,
    idle_secs: u64,
    grace_secs: u64,
) -> Option<(TestApp, String, String, String)> {
    let db = TestDb::fresh(backend)?;
    let mut settings = without_send_limit();
    settings.idle_secs = idle_secs;
    settings.disconnect_grace_secs = grace_secs;
    let app = start_on(db, settings).await;
    let (id, claude, gemini) = session_in(&app, "alpha").await;
    let start = Instant::now();
    while announced(&app, &id).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{:?}",
            announced(&app, &id)
        );
        operator_reads(&app, &id).await;
    }
    Some((app, id, claude, gemini))
}

/// Each `presence_changed` in the session's log, as (who, state), oldest first.
fn announced(app: &TestApp, session: &str) -> Vec<(String, String)> {
    use collab_hub::store::queries::{EventFilter, events_after};
    use collab_hub::store::{ConnRole, DbTarget};
    let mut conn = DbTarget::parse(&app.db.url)
        .unwrap()
        .connect(ConnRole::Reader)
        .unwrap();
    let filter = EventFilter {
        kinds: Some(&["presence_changed"]),
        ..Default::default()
    };
    events_after(&mut conn, session.parse().unwrap(), filter, 0, 1000)
        .unwrap()
        .into_iter()
        .map(|e| {
            let field = |k: &str| e.payload[k].as_str().unwrap_or_default().to_owned();
            (field("aiId"), field("state"))
        })
        .collect()
}

/// A session loaded again starts from the presence it last announced: participants announced
/// gone stay gone, instead of being assumed idle and announced gone once more a grace period
/// after each load (every agent's stream carried those). One who calls again is announced.
async fn a_session_loaded_again_does_not_announce_the_gone_again(backend: Backend) {
    // A call is noticed at the next sweep (every second), within the grace period.
    let Some((app, id, claude, _)) = both_announced_gone(backend, 3, 2).await else {
        return;
    };
    let gone = |ai: &str| (ai.to_owned(), "disconnected".to_owned());
    let mut first = announced(&app, &id);
    first.sort();
    assert_eq!(first, [gone("claude"), gone("gemini")]);
    until_let_go(&app, Duration::from_secs(10)).await;

    // Loaded again, and kept loaded for two grace periods by the operator's reads (which hear
    // from no participant): nothing is announced again.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        operator_reads(&app, &id).await;
    }
    assert_eq!(loaded(&app).await, (1, 1));
    assert_eq!(announced(&app, &id).len(), 2, "{:?}", announced(&app, &id));

    // One who calls again is back, and announced so.
    let (status, body) = send(&app, &claude, "back").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let start = Instant::now();
    while !announced(&app, &id)[2..].contains(&("claude".to_owned(), "idle".to_owned())) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            announced(&app, &id)
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !announced(&app, &id)[2..]
            .iter()
            .any(|(ai, _)| ai == "gemini"),
        "{:?}",
        announced(&app, &id)
    );
    app.stop().await;
}

/// The operator reads the session (use, from no participant), then waits 300 ms.
async fn operator_reads(app: &TestApp, session: &str) {
    let (status, view) = app.get(&format!("/mcp/session/{session}")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
}

/// A session with automatic rotation arms a check for its next turn; paused, it arms none (its
/// turns wait for it to resume), so it leaves memory when unused like any other. Resumed, it
/// arms the check again and keeps its project loaded until the turn.
async fn a_paused_session_with_automatic_rotation_is_let_go(backend: Backend) {
    let Some(app) = hub(backend).await else {
        return;
    };
    let spec = json!({"name": "turns", "project": "alpha", "participants": ["claude", "gemini"],
        "rotationPolicy": "automatic", "roleRotationInterval": 60});
    let (status, body) = app.post("/mcp/session/create", &spec).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (id, claude) = (
        body["sessionId"].as_str().unwrap().to_owned(),
        body["tokens"]["claude"].as_str().unwrap().to_owned(),
    );
    let status_to = |action: &'static str| {
        let (app, claude, id) = (&app, &claude, &id);
        async move {
            let path = format!("/mcp/session/{id}/status");
            let (status, body) = app
                .post_as(claude, &path, &json!({ "action": action }))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    // Active, its next turn (an hour away) keeps it loaded past two idle periods.
    actix_web::rt::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(loaded(&app).await, (1, 1));
    status_to("pause").await;
    until_let_go(&app, Duration::from_secs(10)).await;
    status_to("resume").await;
    let (status, view) = app.get(&format!("/mcp/session/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["status"], "active", "{view}");
    actix_web::rt::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(loaded(&app).await, (1, 1));
    app.stop().await;
}

/// The last state announced of `ai`.
fn last_state(app: &TestApp, session: &str, ai: &str) -> Option<String> {
    announced(app, session)
        .into_iter()
        .rev()
        .find(|(who, _)| who == ai)
        .map(|(_, state)| state)
}

/// A participant announced gone that calls again shortly before its session stops (the idle
/// sweep's ask comes before the next presence check) is announced back before the stop, and
/// is loaded back as such: its lock keeps the grace period, its presence is not gone.
async fn one_back_just_before_the_stop_is_loaded_back(backend: Backend) {
    // Presence is looked at every 2 s; an unused session is asked every 250 ms.
    let Some((app, id, claude, gemini)) = both_announced_gone(backend, 1, 4).await else {
        return;
    };
    assert_eq!(
        last_state(&app, &id, "claude").as_deref(),
        Some("disconnected")
    );
    // Back: a lock, and then nothing, so the session is asked to stop within a second.
    let held = json!({"resource": "/src/auth/", "operation": "refactor"});
    let (status, body) = app.post_as(&claude, "/mcp/collaborate/lock", &held).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until_let_go(&app, Duration::from_secs(10)).await;
    assert_eq!(
        last_state(&app, &id, "claude").as_deref(),
        Some("idle"),
        "{:?}",
        announced(&app, &id)
    );
    // Loaded again: claude's lock had the grace period.
    still_locked_past_a_sweep(&app, &id, &gemini).await;
    app.stop().await;
}

/// Restarted before a presence check saw a participant announced gone come back, a hub loads it
/// as gone (what was last announced), but its lock keeps the full grace period from the load,
/// as everyone's does: the load does not count it gone since it was announced so.
async fn one_back_just_before_a_restart_keeps_its_lock(backend: Backend) {
    let Some((app, id, claude, gemini)) = both_announced_gone(backend, 0, 4).await else {
        return;
    };
    let held = json!({"resource": "/src/auth/", "operation": "refactor"});
    let (status, body) = app.post_as(&claude, "/mcp/collaborate/lock", &held).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut settings = without_send_limit();
    settings.idle_secs = 0;
    settings.disconnect_grace_secs = 4;
    let app = start_on(app.stop().await, settings).await;
    still_locked_past_a_sweep(&app, &id, &gemini).await;
    app.stop().await;
}

/// The session (just loaded, with a 4 s grace period) is read past its first presence sweep
/// (every 2 s), within the grace period; then `/src/auth/` is still locked to `other`.
async fn still_locked_past_a_sweep(app: &TestApp, session: &str, other: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        operator_reads(app, session).await;
    }
    let inside = json!({"resource": "/src/auth/jwt.ts"});
    let (status, body) = app.post_as(other, "/mcp/collaborate/lock", &inside).await;
    assert_error(status, &body, StatusCode::CONFLICT, "resource_locked");
}
