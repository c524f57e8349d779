//! An MCP session's row is the truth, and a hub's memory a copy of it (`mcp::registry`): once
//! several hubs serve MCP sessions, a client may `initialize` on one and `session_join` on
//! another, and the first must then serve it as the row says, not from what it remembers.
//! An unbound copy is checked against its row at every request; a bound one is served from
//! memory (only the hub holding its project serves it) until something marks it, but its writes
//! check the row.
//! Another hub is not running here yet (requests are not routed by project: docs/multi-hub.md),
//! so what it would write is written beside the running hub: the row of a second MCP session
//! that this hub bound itself (the same `Persisted` shape, made by the same code), under another
//! writer's name and the next revision, as `mcp_sessions::save` would write it.

use actix_web::http::StatusCode;
use collab_hub::store::mcp_sessions::{self, Saved};
use collab_hub::store::{DbTarget, Store};
use futures::StreamExt;
use serde_json::json;

use crate::helpers::{Backend, TestApp, TestDb, both_backends, client, execute_beside, spawn_app};
use crate::mcp_protocol::Mcp;

both_backends!(
    a_session_changed_on_another_hub_is_served_as_its_row_says,
    a_stale_copy_never_overwrites_another_hubs_revision,
);

/// What "another hub" writes: MCP session `to`'s row takes `from`'s state, as the next
/// revision, under another writer's name.
fn written_elsewhere(app: &TestApp, backend: Backend, from: &str, to: &str) {
    let n = execute_beside(
        backend,
        &app.db,
        &format!(
            "UPDATE mcp_sessions SET state = (SELECT state FROM mcp_sessions WHERE id = '{from}'), \
             rev = rev + 1, writer = 'another-hub' WHERE id = '{to}'"
        ),
    );
    assert_eq!(n, 1, "{to}'s row");
}

async fn whoami(mcp: &Mcp) -> (bool, serde_json::Value) {
    mcp.tool("whoami", json!({})).await
}

async fn a_session_changed_on_another_hub_is_served_as_its_row_says(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, _, _) = app.create_pair("rows").await;
    // `a` initializes here and stays unbound: this hub holds it in memory, unbound.
    let mut a = Mcp::new(&app);
    a.initialize("2025-11-25").await;
    let (err, out) = whoami(&a).await;
    assert!(err, "unbound: {out}");
    // `b` joins as codex here: its row is what a join on another hub would write for `a`.
    let mut b = Mcp::new(&app);
    b.initialize("2025-11-25").await;
    let (err, out) = b
        .tool(
            "session_join",
            json!({"sessionId": id, "participant": "codex"}),
        )
        .await;
    assert!(!err, "{out}");
    let (a_id, b_id) = (a.session.clone().unwrap(), b.session.clone().unwrap());
    // `a` joined as codex on another hub: served here as codex at once, not "join first" from
    // what this hub remembered.
    written_elsewhere(&app, backend, &b_id, &a_id);
    let (err, out) = whoami(&a).await;
    assert!(!err, "served from a stale copy: {out}");
    assert_eq!(out["aiId"], "codex", "{out}");
    assert_eq!(out["sessionId"], id.as_str(), "{out}");

    // Ended on another hub (DELETE there) while unbound here: ended here too.
    let mut c = Mcp::new(&app);
    c.initialize("2025-11-25").await;
    let c_id = c.session.clone().unwrap();
    let gone = execute_beside(
        backend,
        &app.db,
        &format!("DELETE FROM mcp_sessions WHERE id = '{c_id}'"),
    );
    assert_eq!(gone, 1);
    let (s, body) = c.call(8, "ping", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");

    // A bound copy is served from memory, but its writes check the row: a change made from a
    // copy another hub's write made stale is refused (sent again, it is served from the row),
    // and the copy's open stream ends (its client opens it again with its last event id).
    let mut stream = client()
        .get(format!("{}/mcp", app.address))
        .insert_header(("accept", "text/event-stream"))
        .insert_header(("mcp-session-id", b_id.as_str()))
        .insert_header(("mcp-protocol-version", "2025-11-25"))
        .send()
        .await
        .expect("GET stream");
    assert_eq!(stream.status(), StatusCode::OK);
    written_elsewhere(&app, backend, &b_id, &b_id);
    let subscribe = json!({"uri": format!("collab://session/{id}/participants")});
    let (_, body) = b.call(7, "resources/subscribe", subscribe.clone()).await;
    assert!(
        body["error"].is_object() && body.to_string().contains("another hub"),
        "a stale copy's change was confirmed: {body}"
    );
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(chunk) = stream.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream of a stale copy is still open");
    let (s, body) = b.call(8, "resources/subscribe", subscribe).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert!(body.get("error").is_none(), "{body}");
    let mine = execute_beside(
        backend,
        &app.db,
        &format!(
            "UPDATE mcp_sessions SET last_seen_at = last_seen_at \
             WHERE id = '{b_id}' AND writer <> 'another-hub' AND state LIKE '%/participants%'"
        ),
    );
    assert_eq!(
        mine, 1,
        "the subscription is not in the row, or not under this hub's name"
    );
    let (err, out) = whoami(&b).await;
    assert!(!err && out["aiId"] == "codex", "{out}");
}

/// `mcp_sessions::save`, the rule every hub's writes follow: a write is applied over the
/// revision its writer read or over its own, never over one another writer made since; its
/// own writes may arrive out of order; a row that is gone is not brought back.
async fn a_stale_copy_never_overwrites_another_hubs_revision(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let store = Store::open(DbTarget::parse(&db.url).unwrap())
        .await
        .expect("store opens");
    let save = |state: &'static str, rev: i64, writer: &'static str, base: i64| {
        let store = store.clone();
        async move {
            store
                .write(move |c| mcp_sessions::save(c, "m", state, rev, writer, base))
                .await
                .unwrap()
        }
    };
    let stored = || {
        let store = store.clone();
        async move {
            store
                .read(|c| {
                    let long_ago = chrono::DateTime::UNIX_EPOCH.naive_utc();
                    mcp_sessions::load(c, "m", long_ago)
                })
                .await
                .unwrap()
                .map(|r| (r.state, r.rev, r.writer))
        }
    };
    store
        .write(|c| mcp_sessions::create(c, "m", "a1", "A"))
        .await
        .unwrap();
    // B read revision 1 and writes 2.
    assert_eq!(save("b2", 2, "B", 1).await, Saved::Written);
    // A still holds its copy of 1 (read at 0: it made it): neither 2 nor 3 of it lands.
    assert_eq!(save("a2", 2, "A", 0).await, Saved::Moved);
    assert_eq!(save("a3", 3, "A", 0).await, Saved::Moved);
    assert_eq!(stored().await, Some(("b2".into(), 2, "B".into())));
    // B's own writes, arriving out of order: the newest stays.
    assert_eq!(save("b4", 4, "B", 1).await, Saved::Written);
    assert_eq!(save("b3", 3, "B", 1).await, Saved::Superseded);
    assert_eq!(stored().await, Some(("b4".into(), 4, "B".into())));
    // A reads the row again (revision 4) and writes over it.
    assert_eq!(save("a5", 5, "A", 4).await, Saved::Written);
    assert_eq!(stored().await, Some(("a5".into(), 5, "A".into())));
    // Ended: a write still on its way does not bring it back.
    store
        .write(|c| mcp_sessions::delete(c, &["m".to_owned()]))
        .await
        .unwrap();
    assert_eq!(save("a6", 6, "A", 4).await, Saved::Gone);
    assert_eq!(stored().await, None);
    store.shutdown().await;
}
