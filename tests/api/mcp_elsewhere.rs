//! An MCP request for a project another hub serves is served by that hub (issue 14,
//! `http::hop`): the hub it reached passes it on as it came, once, and relays the answer, an
//! event stream included. A request finds it out where its project shows: the `initialize` of a
//! participant's token, the lookup of an MCP session bound to a participant
//! (`mcp::registry`), or the tool of one not bound yet (`session_join`).
//!
//! The two hubs are those of `dashboard_elsewhere::moved`: `there` serves project alpha (on a
//! database of its own, holding the session as a restore put it there), and alpha's lease row at
//! `here` names it. An MCP session's row is written where its request is served; the test copies
//! it to the other database where one database shared by both hubs would simply hold it.
//!
//! PostgreSQL only: project leases are PostgreSQL's.

use std::time::Duration;

use actix_web::http::StatusCode;
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use futures::StreamExt;
use serde_json::json;

use crate::dashboard_elsewhere::{Moved, moved, written_here};
use crate::helpers::TestApp;
use crate::mcp_protocol::Mcp;
use crate::project_serving::{open_stream, received, session_in};

#[derive(QueryableByName, Debug, Clone, PartialEq)]
struct Row {
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = BigInt)]
    rev: i64,
}

/// The row of MCP session `id` in `app`'s database.
fn row(app: &TestApp, id: &str) -> Option<Row> {
    let mut conn = PgConnection::establish(&app.db.url).unwrap();
    diesel::sql_query("SELECT state, rev FROM mcp_sessions WHERE id = $1")
        .bind::<Text, _>(id)
        .load::<Row>(&mut conn)
        .unwrap()
        .pop()
}

/// `from`'s row of MCP session `id`, written into `to`'s database as the one database both
/// hubs would share holds it.
fn shared(from: &TestApp, to: &TestApp, id: &str) {
    let Row { state, rev } = row(from, id).expect("the row");
    let mut conn = PgConnection::establish(&to.db.url).unwrap();
    diesel::sql_query(
        "INSERT INTO mcp_sessions (id, state, rev, created_at, last_seen_at, writer)
         VALUES ($1, $2, $3, now(), now(), 'the other hub')
         ON CONFLICT (id) DO UPDATE SET state = $2, rev = $3, writer = 'the other hub'",
    )
    .bind::<Text, _>(id)
    .bind::<Text, _>(&state)
    .bind::<BigInt, _>(rev)
    .execute(&mut conn)
    .unwrap();
}

/// Posts `message` to `app` as `mcp`'s client, which takes JSON or an event stream: the status
/// and the JSON-RPC messages of the answer (its body, or each event's data).
async fn post_either(
    app: &TestApp,
    mcp: &Mcp,
    message: &serde_json::Value,
) -> (StatusCode, Vec<serde_json::Value>) {
    let mut req = crate::helpers::client()
        .post(format!("{}/mcp", app.address))
        .insert_header(("accept", "application/json, text/event-stream"))
        .insert_header(("content-type", "application/json"))
        .insert_header(("mcp-session-id", mcp.session.as_deref().unwrap()));
    if let Some(token) = &mcp.token {
        req = req.bearer_auth(token);
    }
    let mut answer = req.send_body(message.to_string()).await.expect("POST");
    let body = answer.body().limit(1 << 20).await.expect("body");
    let text = String::from_utf8_lossy(&body);
    let messages = match serde_json::from_str(&text) {
        Ok(one) => vec![one],
        Err(_) => text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str(data.trim()).ok())
            .collect(),
    };
    (answer.status(), messages)
}

#[actix_web::test]
async fn an_mcp_request_for_a_project_another_hub_serves_is_served_there() {
    let Some(Moved {
        here,
        there,
        session,
        claude,
        gemini,
    }) = moved().await
    else {
        return;
    };
    // gemini's agent connects to `here` with its token: its identity is alpha's, so the
    // `initialize` is served there, and its MCP session is that hub's row.
    let mut mcp = Mcp::at(&here.address);
    mcp.token = Some(gemini.clone());
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}});
    let (status, id, answer) = mcp.raw(init.to_string().into_bytes(), &[]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let id = id.expect("an Mcp-Session-Id");
    assert!(row(&there, &id).is_some(), "initialize not served there");
    assert!(row(&here, &id).is_none(), "initialize served here");
    shared(&there, &here, &id);
    mcp.session = Some(id.clone());
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, _, _) = mcp.raw(initialized.to_string().into_bytes(), &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // A read: looked up here, bound to alpha's gemini, served there.
    let (failed, page) = mcp.tool("messages_read", json!({})).await;
    assert!(!failed, "{page}");
    assert!(page.to_string().contains("before"), "{page}");
    // A write: applied there, not here.
    let sent = json!({"to": "claude", "body": "mcp through here"});
    let (failed, answer) = mcp.tool("message_send", sent).await;
    assert!(!failed, "{answer}");
    let got = received(&there, &claude).await;
    assert_eq!(
        got.last().map(String::as_str),
        Some("mcp through here"),
        "{got:?}"
    );
    assert_eq!(written_here(&here, &session, "mcp through here"), 0);

    // The event stream: opened here, fed there, as long as it runs.
    let mut stream = open_stream(&here, &mcp, &gemini).await;
    assert_eq!(stream.status(), StatusCode::OK);
    let (status, answer) = crate::project_serving::send(&there, &claude, "streamed").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let mut seen = String::new();
    let _ = actix_web::rt::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(chunk)) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("streamed") {
                return;
            }
        }
    })
    .await;
    assert!(
        seen.contains("streamed"),
        "not streamed through here: {seen}"
    );

    // Passed on once at most: a request another hub passed on is answered where it lands.
    let list = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}).to_string();
    let (status, _, refused) = mcp
        .raw(list.into_bytes(), &[(collab_hub::http::hop::HOP, "1")])
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("served by another hub")),
        "{refused}"
    );

    // An MCP session not bound yet joins alpha's session through `here`: the join is served
    // there, and binds the session there. Its client asked for log messages, so its tool calls
    // are answered as event streams: the join's head waits for its answer, and goes with the
    // join passed on.
    let mut codex = Mcp::at(&here.address);
    codex.initialize("2025-11-25").await;
    let codex_id = codex.session.clone().unwrap();
    let (status, set) = codex
        .call(2, "logging/setLevel", json!({"level": "debug"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert!(set.get("error").is_none(), "{set}");
    shared(&here, &there, &codex_id);
    // Its stream here: ended once its join is served there (the client opens it again, and
    // it is served where its session is).
    let codex_stream = crate::helpers::client()
        .get(format!("{}/mcp", here.address))
        .insert_header(("accept", "text/event-stream"))
        .insert_header(("mcp-session-id", codex_id.as_str()))
        .send()
        .await
        .expect("GET stream");
    assert_eq!(codex_stream.status(), StatusCode::OK);
    let join = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "session_join", "arguments": {"sessionId": session, "participant": "codex"}}});
    let (status, answer) = post_either(&here, &codex, &join).await;
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    let joined = answer
        .iter()
        .find(|m| m["id"] == 3)
        .expect("the join's answer");
    assert!(
        joined.get("error").is_none() && joined["result"]["isError"] != true,
        "{joined}"
    );
    assert!(
        crate::project_serving::ends_soon(codex_stream).await,
        "its stream here outlived its join there"
    );
    let bound = row(&there, &codex_id).expect("codex's row there");
    assert!(bound.state.contains("codex"), "{bound:?}");
    assert!(!row(&here, &codex_id).unwrap().state.contains("codex"));

    // Ended through `here`: ended there.
    let ended = crate::helpers::client()
        .delete(format!("{}/mcp", here.address))
        .insert_header(("mcp-session-id", id.as_str()))
        .bearer_auth(&gemini)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(ended.status(), StatusCode::OK);
    assert!(row(&there, &id).is_none(), "not ended there");

    // The hub serving alpha cannot be reached: nothing applied, said to the request it answers.
    crate::dashboard_elsewhere::taken_by(&here, "alpha", "http://127.0.0.1:9");
    // Past the moment `here` trusts the route it last looked up (to `there`, which in this
    // fixture would still serve alpha from a database of its own).
    actix_web::rt::time::sleep(collab_hub::store::lease::SEEN_FOR * 2).await;
    let mut lost = Mcp::at(&here.address);
    lost.token = Some(gemini.clone());
    let (status, _, refused) = lost.raw(init.to_string().into_bytes(), &[]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert_eq!(refused["id"], 0, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot be reached") && m.contains("nothing was applied")),
        "{refused}"
    );

    // A project this hub holds is served here as before.
    let (_, beta_claude, beta_gemini) = session_in(&here, "beta").await;
    let mut beta = Mcp::at(&here.address);
    beta.token = Some(beta_claude);
    beta.initialize("2025-11-25").await;
    let sent = json!({"to": "gemini", "body": "beta here"});
    let (failed, answer) = beta.tool("message_send", sent).await;
    assert!(!failed, "{answer}");
    assert_eq!(received(&here, &beta_gemini).await, ["beta here"]);
    assert!(row(&there, beta.session.as_deref().unwrap()).is_none());
    here.stop().await;
    there.stop().await;
}
