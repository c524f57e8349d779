//! A hub on PostgreSQL serves each project under that project's lease (issue 14,
//! docs/multi-hub.md): the writes of its sessions are fenced with the lease's generation, and a
//! project whose lease moved is let go (its session actors and its lock table stopped) and loaded
//! again from the database once its lease comes back. Requests are not routed by project yet:
//! while another hub holds a project, this one answers 503 for it.
//!
//! PostgreSQL only: on SQLite one hub holds the file, and there are no leases.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, OptionalExtension, QueryableByName, RunQueryDsl};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestDb, assert_error, start_on, without_send_limit};

/// A hub whose leases last 3 s: it renews them, and finds one taken from under it, every second.
pub(crate) async fn hub() -> Option<TestApp> {
    let db = TestDb::fresh(Backend::Postgres)?;
    let mut settings = without_send_limit();
    settings.lease_secs = 3;
    Some(start_on(db, settings).await)
}

/// A session of claude and gemini in `project`: its id and their tokens.
pub(crate) async fn session_in(app: &TestApp, project: &str) -> (String, String, String) {
    let spec = json!({"name": project, "project": project, "participants": ["claude", "gemini"]});
    let (status, body) = app.post("/mcp/session/create", &spec).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = |ai: &str| body["tokens"][ai].as_str().unwrap().to_owned();
    (
        body["sessionId"].as_str().unwrap().to_owned(),
        token("claude"),
        token("gemini"),
    )
}

#[derive(QueryableByName, Debug)]
struct ProjectRow {
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = BigInt)]
    generation: i64,
}

fn project_row(app: &TestApp, project: &str) -> Option<ProjectRow> {
    diesel::sql_query("SELECT url, generation FROM owners WHERE kind = 'project' AND key = $1")
        .bind::<Text, _>(project)
        .get_result::<ProjectRow>(&mut PgConnection::establish(&app.db.url).unwrap())
        .optional()
        .unwrap()
}

/// Runs `sql` on the hub's database from outside it, as another hub would.
pub(crate) fn run(app: &TestApp, sql: &str) {
    diesel::sql_query(sql)
        .execute(&mut PgConnection::establish(&app.db.url).unwrap())
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// What another hub serving the project writes when `mcp`'s participant leaves its MCP session
/// there: the row unbound, as its next revision, under that hub's name.
fn left_elsewhere(app: &TestApp, mcp: &crate::mcp_protocol::Mcp) {
    run(
        app,
        &format!(
            "UPDATE mcp_sessions SET state = (state::jsonb || '{{\"binding\": null}}')::text,
                    rev = rev + 1, writer = 'another hub'
              WHERE id = '{}'",
            mcp.session.clone().unwrap()
        ),
    );
}

/// `mcp`'s next call is served as its row says (`left_elsewhere`): as nobody.
async fn acts_as_nobody(mcp: &crate::mcp_protocol::Mcp) {
    let (failed, answer) = mcp.tool("whoami", json!({})).await;
    assert!(
        failed && answer.to_string().contains("acts as nobody"),
        "served from a copy older than its row: {answer}"
    );
}

/// `GET path` as `token`, served by this hub alone: marked as another hub marks a request it
/// passes on, so that a project held elsewhere is answered 503 here instead of being passed on
/// (`http::hop`).
pub(crate) async fn get_here_only(app: &TestApp, token: &str, path: &str) -> (StatusCode, Value) {
    let mut answer = crate::helpers::client()
        .get(format!("{}{path}", app.address))
        .bearer_auth(token)
        .insert_header((collab_hub::http::hop::HOP, "1"))
        .send()
        .await
        .expect("GET");
    let body = answer.body().limit(16 * 1024 * 1024).await.expect("body");
    (
        answer.status(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

/// `token`'s participant sends gemini `body`.
pub(crate) async fn send(app: &TestApp, token: &str, body: &str) -> (StatusCode, Value) {
    let message = json!({"to": "gemini", "body": body});
    app.post_as(token, "/mcp/messages/send", &message).await
}

/// The bodies of the messages `token`'s participant was sent.
pub(crate) async fn received(app: &TestApp, token: &str) -> Vec<String> {
    let (status, page) = app.get_as(token, "/mcp/messages?limit=50").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {page}"))
        .iter()
        .filter_map(|m| m["body"].as_str().map(str::to_owned))
        .collect()
}

/// An answer's body, as awc streams it.
pub(crate) trait Body:
    futures::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin
{
}
impl<S> Body for S where
    S: futures::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin
{
}

/// Opens the MCP event stream (GET) of `mcp`'s session.
pub(crate) async fn open_stream(
    app: &TestApp,
    mcp: &crate::mcp_protocol::Mcp,
    token: &str,
) -> awc::ClientResponse<impl Body + use<>> {
    crate::helpers::client()
        .get(format!("{}/mcp", app.address))
        .insert_header(("accept", "text/event-stream"))
        .insert_header(("mcp-session-id", mcp.session.clone().unwrap().as_str()))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET stream")
}

/// Whether `stream` ends within 5 s.
pub(crate) async fn ends_soon(mut stream: awc::ClientResponse<impl Body>) -> bool {
    use futures::StreamExt;
    actix_web::rt::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await
    .is_ok()
}

/// Each project gets its lease row at its first session, naming this hub; a project whose row
/// another hub took has its writes refused at once (nothing stored) while the other project's
/// go on, is let go within a renewal round (answered 503 while the other hub holds it), and is
/// served again, loaded from the database under a newer generation, once its lease comes back:
/// its lock table read the lock held before, and the refused write is nowhere. Its agents go
/// with it: a long poll waiting on one is answered.
#[actix_web::test]
async fn a_project_whose_lease_moved_is_let_go_and_loaded_again() {
    let Some(app) = hub().await else { return };
    let (_, claude, gemini) = session_in(&app, "alpha").await;
    let (_, beta_claude, _) = session_in(&app, "beta").await;
    let first = project_row(&app, "alpha").expect("alpha's lease row");
    assert_eq!(first.url, app.address, "{first:?}");
    assert!(project_row(&app, "beta").is_some(), "beta's lease row");
    let held = json!({"resource": "/src/auth/", "operation": "refactor"});
    let (status, lock) = app.post_as(&claude, "/mcp/collaborate/lock", &held).await;
    assert_eq!(status, StatusCode::OK, "{lock}");
    let (status, answer) = send(&app, &claude, "before").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // gemini waits for events (a long poll, through its agent's stream).
    let mut poller = crate::mcp_protocol::Mcp::new(&app);
    poller.token = Some(gemini.clone());
    poller.initialize("2025-06-18").await;
    let (failed, seen) = poller.tool("events_poll", json!({})).await;
    assert!(!failed, "{seen}");
    let newest = seen["lastEventId"].clone();
    let polling = actix_web::rt::spawn(async move {
        let wait = json!({"after": newest, "waitSecs": 40});
        poller.tool("events_poll", wait).await
    });
    // And keeps an MCP event stream open.
    let mut watcher = crate::mcp_protocol::Mcp::new(&app);
    watcher.token = Some(gemini.clone());
    watcher.initialize("2025-11-25").await;
    let stream = open_stream(&app, &watcher, &gemini).await;
    assert_eq!(stream.status(), StatusCode::OK);

    // Another hub takes alpha, as its take would: its holder, its url, the next generation.
    run(
        &app,
        "UPDATE owners SET holder = 'another hub', url = 'http://127.0.0.1:9', life = NULL,
                generation = generation + 1, expires_at = now() + interval '1 hour'
          WHERE kind = 'project' AND key = 'alpha'",
    );
    // At once, before this hub has noticed: the fence refuses alpha's write.
    let (status, refused) = send(&app, &claude, "while away").await;
    assert_error(
        status,
        &refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    let (status, answer) = send(&app, &beta_claude, "beta goes on").await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // Within a round or two, alpha is let go: a read of its messages, served from memory until
    // then, now loads alpha again and finds it held elsewhere.
    let start = Instant::now();
    loop {
        let (status, answer) = get_here_only(&app, &gemini, "/mcp/messages?limit=50").await;
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        match status {
            StatusCode::SERVICE_UNAVAILABLE if message.contains("served by another hub") => break,
            // Until then the read is served, or refused where it writes (it marks messages
            // read): the fence.
            StatusCode::SERVICE_UNAVAILABLE => assert!(message.contains("project alpha")),
            _ => assert_eq!(status, StatusCode::OK, "{answer}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "alpha not let go within 10 s"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, answer) = send(&app, &beta_claude, "beta still goes on").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // gemini's agent went with alpha's session actor: its long poll is answered (nothing new;
    // its cursor did not move), not left waiting 40 s on a stream nothing feeds.
    let (failed, page) = actix_web::rt::time::timeout(Duration::from_secs(5), polling)
        .await
        .expect("the long poll is answered once alpha is let go")
        .unwrap();
    assert!(!failed, "{page}");
    assert_eq!(page["events"], json!([]), "{page}");
    // Its MCP event stream ended too, and one opened again while another hub holds alpha ends
    // at once instead of staying open with nothing to feed it.
    assert!(ends_soon(stream).await, "the MCP event stream went on");
    let again = open_stream(&app, &watcher, &gemini).await;
    assert!(
        again.status() != StatusCode::OK || ends_soon(again).await,
        "a stream opened while alpha is held elsewhere stays open"
    );
    // The hub holding alpha now changes the watcher's MCP session (gemini left it there): the
    // copy here went with alpha, and again with the stream that could not be attached, so it
    // is served as its row says once alpha is back.
    left_elsewhere(&app, &watcher);

    // The other hub's lease runs out: the next request takes alpha again and loads it.
    run(
        &app,
        "UPDATE owners SET expires_at = now() - interval '1 second'
          WHERE kind = 'project' AND key = 'alpha'",
    );
    let (status, answer) = send(&app, &claude, "after").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let again = project_row(&app, "alpha").unwrap();
    assert_eq!(again.url, app.address, "{again:?}");
    assert!(
        again.generation > first.generation + 1,
        "{first:?} then {again:?}"
    );
    // Loaded from the database: the lock table knows claude's lock.
    let inside = json!({"resource": "/src/auth/jwt.ts"});
    let (status, body) = app.post_as(&gemini, "/mcp/collaborate/lock", &inside).await;
    assert_error(status, &body, StatusCode::CONFLICT, "resource_locked");
    assert_eq!(received(&app, &gemini).await, ["before", "after"]);
    acts_as_nobody(&watcher).await;
    app.stop().await;
}

/// A hub that stops hands its project leases back: the next hub takes each at once.
#[actix_web::test]
async fn a_stopping_hub_hands_its_projects_back() {
    let Some(app) = hub().await else { return };
    session_in(&app, "alpha").await;
    let db_url = app.db.url.clone();
    let db = app.stop().await;
    #[derive(QueryableByName)]
    struct Expired {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        expired: bool,
    }
    let row = diesel::sql_query(
        "SELECT expires_at <= now() AS expired FROM owners WHERE kind = 'project' AND key = 'alpha'",
    )
    .get_result::<Expired>(&mut PgConnection::establish(&db_url).unwrap())
    .expect("alpha's row");
    assert!(row.expired, "alpha's lease was not handed back");
    drop(db);
}

/// Events stored for `session`.
fn events_of(db_url: &str, session: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query("SELECT count(*) AS n FROM events WHERE session_id = $1")
        .bind::<Text, _>(session)
        .get_result::<Count>(&mut PgConnection::establish(db_url).unwrap())
        .unwrap()
        .n
}

/// The retention sweep runs at the hub holding the `hub` row, but compacts each session through
/// its project's store, under that project's lease: a completed session of a project another
/// hub holds is left alone (its rows are that hub's to write), and compacted once the lease is
/// free, by a sweep that takes it.
#[actix_web::test]
async fn retention_leaves_a_project_held_elsewhere_for_later() {
    let Some(db) = TestDb::fresh(Backend::Postgres) else {
        return;
    };
    // Both sessions worked in and completed, with retention off.
    let app = start_on(db, without_send_limit()).await;
    let (alpha, alpha_claude, _) = session_in(&app, "alpha").await;
    let (beta, beta_claude, _) = session_in(&app, "beta").await;
    for (id, token) in [(&alpha, &alpha_claude), (&beta, &beta_claude)] {
        let (status, answer) = send(&app, token, "done for today").await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let (status, answer) = app
            .post_as(
                token,
                &format!("/mcp/session/{id}/status"),
                &json!({"action": "complete"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let db = app.stop().await;
    let url = db.url.clone();
    // Another hub holds alpha; a hub compacting every completed session every second starts.
    diesel::sql_query(
        "UPDATE owners SET holder = 'another hub', url = 'http://127.0.0.1:9', life = NULL,
                generation = generation + 1, expires_at = now() + interval '1 hour'
          WHERE kind = 'project' AND key = 'alpha'",
    )
    .execute(&mut PgConnection::establish(&url).unwrap())
    .unwrap();
    let alpha_events = events_of(&url, &alpha);
    assert!(alpha_events > 0 && events_of(&url, &beta) > 0);
    let mut settings = without_send_limit();
    settings.lease_secs = 3;
    settings.retention_max_bytes = 1;
    settings.retention_interval_secs = 1;
    let app = start_on(db, settings).await;
    let compacted = |session: &str| events_of(&url, session) == 0;
    let start = Instant::now();
    while !compacted(&beta) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "beta not compacted"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    // Three more sweeps: alpha's rows stay as they were while another hub holds alpha.
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        events_of(&url, &alpha),
        alpha_events,
        "a project held elsewhere was compacted"
    );
    // Its lease runs out: a sweep takes alpha and compacts it.
    run(
        &app,
        "UPDATE owners SET expires_at = now() - interval '1 second'
          WHERE kind = 'project' AND key = 'alpha'",
    );
    let start = Instant::now();
    while !compacted(&alpha) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "alpha not compacted once free"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        project_row(&app, "alpha").map(|row| row.url),
        Some(app.address.clone()),
        "alpha compacted without its lease"
    );
    app.stop().await;
}

/// A project handed back while idle may be served next by another hub, which may change the
/// MCP sessions bound to its sessions: their copies here are read again at their next request.
/// (An MCP client that only posts keeps no stream to end; its copy is marked all the same.)
#[actix_web::test]
async fn an_mcp_session_of_a_project_handed_back_is_read_again() {
    let Some(db) = TestDb::fresh(Backend::Postgres) else {
        return;
    };
    let mut settings = without_send_limit();
    settings.idle_secs = 2;
    let app = start_on(db, settings).await;
    let (_, _, gemini) = session_in(&app, "alpha").await;
    let mut agent = crate::mcp_protocol::Mcp::new(&app);
    agent.token = Some(gemini);
    agent.initialize("2025-11-25").await;
    let (failed, me) = agent.tool("whoami", json!({})).await;
    assert!(!failed && me["aiId"] == "gemini", "{me}");
    #[derive(QueryableByName)]
    struct Expired {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        expired: bool,
    }
    let handed_back = || {
        diesel::sql_query(
            "SELECT expires_at <= now() AS expired FROM owners WHERE kind = 'project' AND key = 'alpha'",
        )
        .get_result::<Expired>(&mut PgConnection::establish(&app.db.url).unwrap())
        .expect("alpha's row")
        .expired
    };
    let start = Instant::now();
    while !handed_back() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "alpha not handed back"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    // Another hub serves alpha meanwhile, and gemini leaves its MCP session there.
    left_elsewhere(&app, &agent);
    acts_as_nobody(&agent).await;
    app.stop().await;
}
