//! A dashboard connected to one hub watches and steers sessions that another hub serves (issue
//! 14, docs/multi-hub.md, routing prerequisite 3). A session's actor runs only at the hub
//! holding its project's lease.
//! - A viewer's subscription to a session held elsewhere follows it through the event tail
//!   (`store::tail`): the log from where the viewer asked, then each event as it commits, once,
//!   in order, whoever wrote it. "Another hub" takes the project's lease row and writes its
//!   session's events the way a hub does (the session's `last_event_id` and the event in one
//!   statement), as SQL beside the running hub.
//! - A command (`call`, `ack`, and the `auth` frame's look at the seat) on a session held
//!   elsewhere is run at the hub the lease row names (`ws::relay`). No two hubs serve projects
//!   of one database yet, so that hub is a real one on a database of its own, holding the
//!   session as `collab-hub restore` put it there.
//!
//! PostgreSQL only: the tail is PostgreSQL's, and on SQLite one hub holds the file.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use serde_json::{Value, json};

use crate::backup::{backup, restore, succeeded};
use crate::helpers::{Backend, TestApp, TestDb, assert_error};
use crate::project_serving::{get_here_only, hub, received, run, send, session_in};
use crate::ws::Ws;

/// Another hub, at `url`, takes `project`'s lease, as its take would: its holder, its url, the
/// next generation.
pub(crate) fn taken_by(app: &TestApp, project: &str, url: &str) {
    run(
        app,
        &format!(
            "UPDATE owners SET holder = 'another hub', url = '{url}', life = NULL,
                    generation = generation + 1, expires_at = now() + interval '1 hour'
              WHERE kind = 'project' AND key = '{project}'"
        ),
    );
}

fn taken_elsewhere(app: &TestApp, project: &str) {
    taken_by(app, project, "http://127.0.0.1:9");
}

/// Until `token`'s request is answered that another hub serves its project: this hub let it go.
pub(crate) async fn until_let_go(app: &TestApp, token: &str) {
    let start = Instant::now();
    loop {
        let (status, answer) = get_here_only(app, token, "/mcp/messages?limit=50").await;
        if status == StatusCode::SERVICE_UNAVAILABLE
            && answer.to_string().contains("served by another hub")
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "not let go: {status} {answer}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The hub holding the session writes a copy of its last message with `body`, as one write: the
/// session's next event id and the event in one statement. Answers the event's id.
fn written_elsewhere(app: &TestApp, session: &str, body: &str) -> i64 {
    let mut conn = PgConnection::establish(&app.db.url).unwrap();
    written_on(&mut conn, session, body, "routine")
}

/// `written_elsewhere` with the `priority` given, on a connection of the caller's.
fn written_on(conn: &mut PgConnection, session: &str, body: &str, priority: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Written {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    diesel::sql_query(
        "WITH n AS (UPDATE sessions SET last_event_id = last_event_id + 1, updated_at = now()
                     WHERE id = $1 RETURNING last_event_id)
         INSERT INTO events (session_id, id, actor, kind, priority, payload, created_at, recipient)
         SELECT e.session_id, n.last_event_id, e.actor, e.kind, $3,
                (e.payload::jsonb || jsonb_build_object('body', $2::text, 'priority', $3::text))::text,
                now(), e.recipient
           FROM n, (SELECT * FROM events WHERE session_id = $1 AND kind = 'message_sent'
                     ORDER BY id DESC LIMIT 1) e
         RETURNING id",
    )
    .bind::<Text, _>(session)
    .bind::<Text, _>(body)
    .bind::<Text, _>(priority)
    .get_result::<Written>(conn)
    .unwrap()
    .id
}

/// The hub holding `session`'s project creates a session there, as a copy of `session` (its row
/// under a new id, and its log), in one statement. Answers the new session's id.
fn created_elsewhere(app: &TestApp, session: &str) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    diesel::sql_query(
        "WITH s AS (
           INSERT INTO sessions (id, name, status, handshake_mode, rotation_policy, save_interval,
                                 metadata, last_event_id, created_at, updated_at, coordination,
                                 rotation_interval_secs, review_timeout_secs, task_allocation,
                                 project, genome)
           SELECT $2, 'beside', status, handshake_mode, rotation_policy, save_interval, metadata,
                  last_event_id, now(), now(), coordination, rotation_interval_secs,
                  review_timeout_secs, task_allocation, project, genome
             FROM sessions WHERE id = $1
           RETURNING id)
         INSERT INTO events (session_id, id, actor, kind, priority, payload, created_at, recipient)
         SELECT s.id, e.id, e.actor, e.kind, e.priority, e.payload, now(), e.recipient
           FROM s, events e WHERE e.session_id = $1",
    )
    .bind::<Text, _>(session)
    .bind::<Text, _>(&id)
    .execute(&mut PgConnection::establish(&app.db.url).unwrap())
    .unwrap();
    id
}

/// How many events of `session` in `app`'s own database carry a message `body`.
pub(crate) fn written_here(app: &TestApp, session: &str, body: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query(
        "SELECT count(*) AS n FROM events
          WHERE session_id = $1 AND payload::jsonb ->> 'body' = $2",
    )
    .bind::<Text, _>(session)
    .bind::<Text, _>(body)
    .get_result::<Count>(&mut PgConnection::establish(&app.db.url).unwrap())
    .unwrap()
    .n
}

/// The events `there` wrote in `session` that `here`'s database lacks, copied there with their
/// ids (and the session's last event id moved with them, in one transaction), as the one
/// database both hubs would share holds them: what `here`'s tail hands its followers.
fn mirrored(there: &TestApp, here: &TestApp, session: &str) {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        actor: Option<String>,
        #[diesel(sql_type = Text)]
        kind: String,
        #[diesel(sql_type = Text)]
        priority: String,
        #[diesel(sql_type = Text)]
        payload: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        recipient: Option<String>,
    }
    let after = last_event_id(here, session);
    let mut from = PgConnection::establish(&there.db.url).unwrap();
    let rows = diesel::sql_query(
        "SELECT id, actor, kind, priority, payload, recipient FROM events
          WHERE session_id = $1 AND id > $2 ORDER BY id",
    )
    .bind::<Text, _>(session)
    .bind::<BigInt, _>(after)
    .load::<Row>(&mut from)
    .unwrap();
    let mut to = PgConnection::establish(&here.db.url).unwrap();
    to.transaction::<_, diesel::result::Error, _>(|c| {
        for row in &rows {
            diesel::sql_query(
                "INSERT INTO events (session_id, id, actor, kind, priority, payload, created_at,
                                     recipient)
                 VALUES ($1, $2, $3, $4, $5, $6, now(), $7)",
            )
            .bind::<Text, _>(session)
            .bind::<BigInt, _>(row.id)
            .bind::<diesel::sql_types::Nullable<Text>, _>(&row.actor)
            .bind::<Text, _>(&row.kind)
            .bind::<Text, _>(&row.priority)
            .bind::<Text, _>(&row.payload)
            .bind::<diesel::sql_types::Nullable<Text>, _>(&row.recipient)
            .execute(c)?;
        }
        diesel::sql_query(
            "UPDATE sessions SET last_event_id = GREATEST(last_event_id, $2) WHERE id = $1",
        )
        .bind::<Text, _>(session)
        .bind::<BigInt, _>(rows.last().map_or(after, |r| r.id))
        .execute(c)?;
        Ok(())
    })
    .unwrap();
}

/// The session's last event id, as the database has it.
fn last_event_id(app: &TestApp, session: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Last {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    diesel::sql_query("SELECT last_event_id AS id FROM sessions WHERE id = $1")
        .bind::<Text, _>(session)
        .get_result::<Last>(&mut PgConnection::establish(&app.db.url).unwrap())
        .unwrap()
        .id
}

fn body_is(body: &'static str) -> impl Fn(&Value) -> bool {
    move |e: &Value| e["payload"]["body"] == body
}

/// The ids of event frames (and interrupts), in the order they came.
fn ids(frames: &[Value]) -> Vec<i64> {
    frames
        .iter()
        .filter(|f| f["type"] == "event" || f["type"] == "interrupt")
        .filter_map(|f| f["id"].as_i64())
        .collect()
}

/// A dashboard watching a session from its first event keeps seeing every event once, in
/// order, while another hub takes the session's project, writes in it, and hands it back:
/// - the subscription served from the session's actor here is told to resync when the project
///   is let go; subscribed again from there, it follows the session through the tail;
/// - a dashboard subscribing to the whole project while another hub holds it gets the session,
///   from its last event on, and a session the other hub creates in it, from its first event;
/// - once the project is back and this hub writes again, both still follow it.
#[actix_web::test]
async fn a_dashboard_follows_a_session_another_hub_serves() {
    let Some(app) = hub().await else { return };
    let (session, claude, gemini) = session_in(&app, "alpha").await;
    let (_, beta_claude, _) = session_in(&app, "beta").await;
    let (status, answer) = send(&app, &claude, "before").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let wait = Duration::from_secs(15);

    let mut watching = Ws::connect(&app, None).await;
    let sub = json!({"type": "subscribe", "sessionId": session, "since": 0});
    watching.ok(sub).await;
    let mut seen = watching.events_until(wait, body_is("before")).await;

    // Another hub takes alpha. Once this hub lets alpha go, the session's actor here stops, and
    // the subscription it fed is told where to catch up from.
    taken_elsewhere(&app, "alpha");
    let told = watching.events_until(wait, |f| f["type"] == "resync").await;
    let resync = told.last().unwrap().clone();
    seen.extend(told);
    assert_eq!(resync["sessionId"], session.as_str(), "{resync}");
    let from = resync["from"].as_i64().unwrap();
    // Let go: a participant's request is answered that another hub serves alpha.
    let (status, refused) = get_here_only(&app, &gemini, "/mcp/messages?limit=50").await;
    assert_error(
        status,
        &refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
    );
    assert!(
        refused.to_string().contains("served by another hub"),
        "{refused}"
    );

    // Meanwhile the other hub wrote a critical message: part of the log the subscription
    // catches up with, it comes as an event, in order.
    let mut conn = PgConnection::establish(&app.db.url).unwrap();
    let urgent = written_on(&mut conn, &session, "urgent, before", "critical");

    // Subscribed again from there: served through the tail.
    let again = json!({"type": "subscribe", "sessionId": session, "since": from - 1});
    let answer = watching.ok(again).await;
    assert_eq!(
        answer["sessions"][0]["lastEventId"],
        last_event_id(&app, &session),
        "{answer}"
    );
    // And a dashboard opened now, on the whole project.
    let mut project = Ws::connect(&app, None).await;
    let answer = project
        .ok(json!({"type": "subscribe", "project": "alpha"}))
        .await;
    let sessions = answer["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{answer}");
    assert_eq!(sessions[0]["sessionId"], session.as_str(), "{answer}");
    let project_from = sessions[0]["lastEventId"].as_i64().unwrap();

    let got = watching.events_until(wait, body_is("urgent, before")).await;
    assert_eq!(got.last().unwrap()["type"], "event", "{got:?}");
    assert_eq!(got.last().unwrap()["id"], urgent);
    seen.extend(got);
    // The other hub writes in alpha: both dashboards see it, each once; a critical message
    // written now jumps ahead as an interrupt.
    let first = written_elsewhere(&app, &session, "from the other hub");
    let live = written_on(&mut conn, &session, "urgent, live", "critical");
    let second = written_elsewhere(&app, &session, "and again");
    let mut got = watching.events_until(wait, body_is("and again")).await;
    // An interrupt comes ahead of what was queued: put back in log order for the count.
    got.sort_by_key(|f| f["id"].as_i64());
    assert!(
        got.iter()
            .any(|f| f["id"] == live && f["type"] == "interrupt"),
        "{got:?}"
    );
    seen.extend(got);
    let mut got = project.events_until(wait, body_is("and again")).await;
    got.sort_by_key(|f| f["id"].as_i64());
    assert_eq!(ids(&got), [first, live, second], "{got:?}");
    assert!(got.iter().all(|f| f["sessionId"] == session.as_str()));
    assert_eq!(first, project_from + 1);
    // The other hub creates a session in alpha: the project's dashboard follows it from its
    // first event.
    let beside = created_elsewhere(&app, &session);
    let last_beside = last_event_id(&app, &beside);
    let got = project
        .events_until(wait, |f| {
            f["sessionId"] == beside.as_str() && f["id"] == last_beside
        })
        .await;
    assert!(
        got.iter().all(|f| f["sessionId"] == beside.as_str()),
        "{got:?}"
    );
    assert_eq!(ids(&got), (1..=last_beside).collect::<Vec<_>>());
    assert_eq!(got[0]["kind"], "session_created", "{got:?}");
    // beta, which this hub still holds, goes on meanwhile.
    let (status, answer) = send(&app, &beta_claude, "beta goes on").await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // The other hub's lease runs out: this hub takes alpha again at its next request, and what
    // it writes reaches both dashboards too.
    run(
        &app,
        "UPDATE owners SET expires_at = now() - interval '1 second'
          WHERE kind = 'project' AND key = 'alpha'",
    );
    let start = Instant::now();
    loop {
        let (status, answer) = send(&app, &claude, "after").await;
        if status == StatusCode::OK {
            break;
        }
        assert!(start.elapsed() < wait, "alpha not served again: {answer}");
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
    seen.extend(watching.events_until(wait, body_is("after")).await);
    let after = ids(&seen).last().copied().unwrap();
    let got = project.events_until(wait, body_is("after")).await;
    assert_eq!(ids(&got), (second + 1..=after).collect::<Vec<_>>());

    // Every event of the session once, in order, across the resync.
    assert_eq!(ids(&seen), (1..=after).collect::<Vec<_>>(), "{seen:?}");
    app.stop().await;
}

/// A session of claude and gemini in project alpha, and two hubs: `here`, where it was created,
/// and `there`, which serves alpha from now on (alpha's lease row at `here` names it). No two
/// hubs serve projects of one database yet, so `there` runs on a database of its own, holding
/// the session as `collab-hub restore` put it there (ids and tokens kept); `here` has let alpha
/// go.
pub(crate) struct Moved {
    pub here: TestApp,
    pub there: TestApp,
    pub session: String,
    pub claude: String,
    pub gemini: String,
}

pub(crate) async fn moved() -> Option<Moved> {
    let here = hub().await?;
    let (session, claude, gemini) = session_in(&here, "alpha").await;
    let (status, answer) = send(&here, &claude, "before").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let scratch = std::env::temp_dir().join(format!("collab-hub-moved-{}", uuid::Uuid::new_v4()));
    succeeded(&backup(&here.db.url, &scratch, &[&session]).await);
    let there_db = TestDb::fresh(Backend::Postgres).unwrap();
    succeeded(&restore(&there_db.url, &scratch, false).await);
    let _ = std::fs::remove_file(&scratch);
    let there = crate::helpers::start_on(there_db, crate::helpers::without_send_limit()).await;
    taken_by(&here, "alpha", &there.address);
    until_let_go(&here, &gemini).await;
    Some(Moved {
        here,
        there,
        session,
        claude,
        gemini,
    })
}

/// A dashboard that stops reading while another hub writes 16 MB into the session it follows
/// through the tail (far more than its queue, 1 MiB, and the tail's queue for one follower)
/// gets every event once, in order, when it reads again: the tail lets a follower that falls
/// behind go, and the subscription follows again from its cursor.
#[actix_web::test]
async fn a_dashboard_that_stops_reading_misses_nothing_of_a_session_held_elsewhere() {
    let Some(app) = hub().await else { return };
    let (session, claude, gemini) = session_in(&app, "alpha").await;
    let (status, answer) = send(&app, &claude, "before").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    taken_elsewhere(&app, "alpha");
    until_let_go(&app, &gemini).await;
    let mut watching = Ws::connect(&app, None).await;
    let sub = json!({"type": "subscribe", "sessionId": session, "since": 0});
    watching.ok(sub).await;
    let bulk = "x".repeat(40 * 1024);
    let session_id = session.clone();
    let db = app.db.url.clone();
    let last = actix_web::rt::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&db).unwrap();
        let mut last = 0;
        // One commit at a time, each read by the tail apart (it looks every 25 ms): far more
        // batches than a follower may have queued once the subscription waits for room.
        for n in 0..400 {
            last = written_on(&mut conn, &session_id, &format!("{n} {bulk}"), "routine");
            std::thread::sleep(Duration::from_millis(30));
        }
        last
    })
    .await
    .unwrap();
    // Not read meanwhile; now read to the end.
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    let got = watching
        .events_until(Duration::from_secs(60), |f| f["id"] == last)
        .await;
    assert!(got.iter().all(|f| f["type"] == "event"), "a resync came");
    assert_eq!(ids(&got), (1..=last).collect::<Vec<_>>());
    app.stop().await;
}

/// A dashboard's commands on a session another hub serves are run there, as the dashboard's
/// caller, and answered as that hub answered them:
/// - a viewer's read (`session_get`);
/// - a seat taken with a participant's token (`auth`: its role is read there), its message, its
///   acknowledgement, and a refused call whose error object comes back untouched;
/// - what was written is at the serving hub, not here.
/// A viewer acting for a participant is refused, as before.
#[actix_web::test]
async fn a_dashboards_commands_on_a_session_another_hub_serves_run_there() {
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

    // A viewer reads the session through this hub.
    let mut viewer = Ws::connect(&here, None).await;
    let view = viewer
        .call("session_get", json!({"sessionId": session}))
        .await;
    assert_eq!(view["sessionId"], session.as_str(), "{view}");
    // A viewer acting for a participant is refused, as before.
    let refused = viewer
        .request(json!({"type": "call", "operation": "message_send",
                        "arguments": {"sessionId": session, "body": "as nobody"}}))
        .await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");

    // gemini takes its seat on the dashboard: its role is read where alpha is served.
    let mut seat = Ws::connect(&here, None).await;
    let me = seat.ok(json!({"type": "auth", "token": gemini})).await;
    assert_eq!(me["aiId"], "gemini", "{me}");
    assert_eq!(me["role"], "navigator", "{me}");
    let sent = seat
        .call(
            "message_send",
            json!({"to": "claude", "body": "through this hub"}),
        )
        .await;
    let sent_id = sent["id"].as_i64().expect("the message's id");
    let acked = seat.ok(json!({"type": "ack", "upTo": sent_id})).await;
    assert_eq!(acked["ackedEventId"], sent_id, "{acked}");
    // Refused there: the error object as that hub said it.
    let unknown = seat
        .request(json!({"type": "call", "operation": "message_send",
                        "arguments": {"to": "nobody", "body": "lost"}}))
        .await;
    let (status, direct) = there
        .post_as(
            &gemini,
            "/mcp/messages/send",
            &json!({"to": "nobody", "body": "lost"}),
        )
        .await;
    assert!(status.is_client_error(), "{direct}");
    assert_eq!(unknown["error"], direct["error"], "{unknown}");

    // Written where alpha is served, and only there.
    let got = received(&there, &claude).await;
    assert!(got.contains(&"through this hub".to_owned()), "{got:?}");
    assert_eq!(written_here(&here, &session, "through this hub"), 0);
    // Its own subscription follows the session through the tail, from its acknowledged cursor
    // (read there), passing only what gemini may see. What `there` writes reaches this hub's
    // database as it would in one shared database (`mirrored`).
    let (status, answer) = send(&there, &claude, "while away").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    mirrored(&there, &here, &session);
    seat.ok(json!({"type": "subscribe", "sessionId": session}))
        .await;
    let codex = json!({"sessionId": session, "participant": "codex"});
    let (status, joined) = there.post("/mcp/session/join", &codex).await;
    assert_eq!(status, StatusCode::CREATED, "{joined}");
    let aside = json!({"to": "codex", "body": "not for gemini"});
    let (status, answer) = there.post_as(&claude, "/mcp/messages/send", &aside).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = send(&there, &claude, "for gemini").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    mirrored(&there, &here, &session);
    let seen = seat
        .events_until(Duration::from_secs(15), body_is("for gemini"))
        .await;
    assert!(
        seen.iter()
            .all(|e| e["payload"]["body"] != "not for gemini"),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|e| e["id"].as_i64() > Some(sent_id)),
        "{seen:?}"
    );
    // From its acknowledged cursor: what it was sent after its ack and before it subscribed.
    assert!(seen.iter().any(body_is("while away")), "{seen:?}");
    // It leaves: its subscription ends (`resync`), and subscribing again is refused.
    let (status, left) = there
        .post_as(&gemini, "/mcp/session/leave", &json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{left}");
    mirrored(&there, &here, &session);
    let ended = seat
        .events_until(Duration::from_secs(15), |f| f["type"] == "resync")
        .await;
    assert!(
        ended.iter().any(|e| e["kind"] == "participant_left"),
        "{ended:?}"
    );
    let again = seat
        .request(json!({"type": "subscribe", "sessionId": session}))
        .await;
    assert!(again["error"].is_object(), "{again}");
    here.stop().await;
    there.stop().await;
}

/// An agent's socket, its token on the upgrade, whose session another hub serves is that hub's
/// socket: bridged there whole, so that its subscription (from its acknowledged cursor), its
/// calls and its acks are served where the session is.
#[actix_web::test]
async fn an_agents_socket_on_a_session_another_hub_serves_is_bridged_there() {
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
    let wait = Duration::from_secs(15);
    let mut agent = Ws::connect(&here, Some(&gemini)).await;
    agent
        .ok(json!({"type": "subscribe", "sessionId": session}))
        .await;
    // Its log from its acknowledged cursor: what claude sent before alpha moved; then, as it
    // listens there, its presence as that hub announces it.
    agent.events_until(wait, body_is("before")).await;
    agent
        .events_until(wait, |e| {
            e["kind"] == "presence_changed"
                && e["payload"]["aiId"] == "gemini"
                && e["payload"]["state"] == "connected"
        })
        .await;
    // Live: written there, seen here.
    let (status, answer) = send(&there, &claude, "live there").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let live = agent.events_until(wait, body_is("live there")).await;
    let live_id = live.last().unwrap()["id"].as_i64().unwrap();
    // Its calls and acks run there, and only there.
    let sent = agent
        .call(
            "message_send",
            json!({"to": "claude", "body": "over the bridge"}),
        )
        .await;
    assert!(sent["id"].as_i64().is_some(), "{sent}");
    let acked = agent.ok(json!({"type": "ack", "upTo": live_id})).await;
    assert_eq!(acked["ackedEventId"], live_id, "{acked}");
    let got = received(&there, &claude).await;
    assert!(got.contains(&"over the bridge".to_owned()), "{got:?}");
    assert_eq!(written_here(&here, &session, "over the bridge"), 0);
    // A socket another hub bridged here, whose session is not served here either (a hand-over
    // under way), is refused: never bridged a second time.
    let again = crate::helpers::client()
        .ws(format!("{}/ws", here.address.replacen("http", "ws", 1)))
        .bearer_auth(&gemini)
        .set_header(collab_hub::http::hop::HOP, "1")
        .connect()
        .await;
    match again {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE)
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("bridged a second time"),
    }
    here.stop().await;
    there.stop().await;
}
