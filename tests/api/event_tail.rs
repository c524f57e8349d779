//! Following sessions' logs through `LISTEN/NOTIFY` (`store::tail`, issue 14): what a hub that
//! does not own a session will use to watch it. The hub writes as it always does (REST sends);
//! a tail on the same database follows. No request uses the tail yet (docs/multi-hub.md, "Next").
//!
//! PostgreSQL only: the notices are PostgreSQL's, and on SQLite one hub holds the file.

use std::time::{Duration, Instant};

use collab_hub::domain::event::Event;
use collab_hub::store::tail::{APPLICATION_NAME, EventTail, FOLLOWER_QUEUE};
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use serde_json::json;
use tokio::sync::mpsc::Receiver;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, TestDb, start_on, without_send_limit};

async fn hub() -> Option<TestApp> {
    let db = TestDb::fresh(Backend::Postgres)?;
    Some(start_on(db, without_send_limit()).await)
}

/// A session of claude and gemini: its id and claude's token.
async fn session(app: &TestApp, name: &str) -> (Uuid, String) {
    let (id, claude, _) = app.create_pair(name).await;
    (Uuid::parse_str(&id).unwrap(), claude)
}

async fn send(app: &TestApp, token: &str, n: usize) {
    let body = json!({"to": "gemini", "body": format!("message {n}")});
    let (status, answer) = app.post_as(token, "/mcp/messages/send", &body).await;
    assert!(status.is_success(), "{status} {answer}");
}

#[derive(QueryableByName)]
struct Last {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// The session's last event id, as the database has it.
fn last_id(app: &TestApp, session: Uuid) -> i64 {
    let mut conn = PgConnection::establish(&app.db.url).unwrap();
    diesel::sql_query("SELECT coalesce(max(id), 0) AS id FROM events WHERE session_id = $1")
        .bind::<Text, _>(session.to_string())
        .get_result::<Last>(&mut conn)
        .unwrap()
        .id
}

/// What `follower` receives until it has `last`, or its receiver ends (None then).
async fn received_up_to(follower: &mut Receiver<Vec<Event>>, last: i64) -> Vec<Event> {
    let mut got: Vec<Event> = Vec::new();
    while got.last().is_none_or(|e| e.id < last) {
        match actix_web::rt::time::timeout(Duration::from_secs(10), follower.recv()).await {
            Ok(Some(batch)) => got.extend(batch),
            Ok(None) => break,
            Err(_) => panic!(
                "nothing for 10 s; last received {:?}, expected {last}",
                got.last().map(|e| e.id)
            ),
        }
    }
    got
}

/// Every event once, in order: ids `from..=to`, all of `session`.
fn assert_each_once(events: &[Event], session: Uuid, from: i64, to: i64) {
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    assert_eq!(ids, (from..=to).collect::<Vec<_>>());
    assert!(events.iter().all(|e| e.session_id == session));
}

/// Two sessions written at once: each follower gets its own session's events, each once, in
/// order, from where it started following (a second follower of one session joins later).
#[actix_web::test]
async fn a_follower_gets_each_event_once_in_order() {
    let Some(app) = hub().await else { return };
    let tail = EventTail::start(&app.db.url).unwrap();
    let (one, claude_one) = session(&app, "one").await;
    let (two, claude_two) = session(&app, "two").await;
    let mut first = tail.follow(one, 0).unwrap();
    let mut other = tail.follow(two, 0).unwrap();
    for n in 0..5 {
        send(&app, &claude_one, n).await;
    }
    let joined_at = last_id(&app, one);
    let mut later = tail.follow(one, joined_at).unwrap();
    futures::future::join_all((0..60).map(|n| {
        let token = if n % 2 == 0 { &claude_one } else { &claude_two };
        send(&app, token, n)
    }))
    .await;
    let (last_one, last_two) = (last_id(&app, one), last_id(&app, two));
    assert!(last_one > joined_at + 25 && last_two > 25);
    assert_each_once(
        &received_up_to(&mut first, last_one).await,
        one,
        1,
        last_one,
    );
    assert_each_once(
        &received_up_to(&mut other, last_two).await,
        two,
        1,
        last_two,
    );
    assert_each_once(
        &received_up_to(&mut later, last_one).await,
        one,
        joined_at + 1,
        last_one,
    );
}

/// The listening connection ended by the database three times while the hub writes, and a
/// fourth time while the database refuses new connections and the last events commit: the tail
/// connects again and reads from its follower's last id, so the follower still gets every
/// event once, in order.
#[actix_web::test]
async fn a_broken_listening_connection_loses_nothing() {
    let Some(app) = hub().await else { return };
    let tail = EventTail::start(&app.db.url).unwrap();
    let (one, claude) = session(&app, "one").await;
    let mut follower = tail.follow(one, 0).unwrap();
    let mut admin = PgConnection::establish(&app.db.url).unwrap();
    for round in 0..3 {
        for n in 0..15 {
            send(&app, &claude, round * 100 + n).await;
        }
        the_tails_connection(&mut admin, true).await;
        for n in 15..25 {
            send(&app, &claude, round * 100 + n).await;
        }
    }
    // Events that commit while the tail cannot connect, and none after: only the read that
    // follows its reconnection finds them.
    the_tails_connection(&mut admin, false).await;
    app.db
        .admin_execute("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS false");
    the_tails_connection(&mut admin, true).await;
    for n in 0..10 {
        send(&app, &claude, 1000 + n).await;
    }
    app.db
        .admin_execute("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true");
    let last = last_id(&app, one);
    assert_each_once(&received_up_to(&mut follower, last).await, one, 1, last);
}

/// Waits until the tail listens (it may be between two connections); with `end`, ends that
/// connection. `admin` is on the test's database: the tails of the tests beside it are left
/// alone.
async fn the_tails_connection(admin: &mut PgConnection, end: bool) {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = Bool)]
        found: bool,
    }
    let what = if end {
        "pg_terminate_backend(pid)"
    } else {
        "true"
    };
    let start = Instant::now();
    loop {
        let found = diesel::sql_query(format!(
            "SELECT {what} AS found FROM pg_stat_activity
              WHERE application_name = $1 AND datname = current_database()"
        ))
        .bind::<Text, _>(APPLICATION_NAME)
        .load::<Found>(admin)
        .unwrap();
        if found.iter().any(|f| f.found) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the tail never listened again"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A follower that reads nothing is let go once `FOLLOWER_QUEUE` batches wait for it (the
/// others are not held up by it): its receiver ends after what it had, and a follow from its
/// last id gets the rest.
#[actix_web::test]
async fn a_follower_that_does_not_keep_up_is_let_go() {
    let Some(app) = hub().await else { return };
    let tail = EventTail::start(&app.db.url).unwrap();
    let (one, claude) = session(&app, "one").await;
    let mut idle = tail.follow(one, 0).unwrap();
    let mut reading = tail.follow(one, 0).unwrap();
    let mut read = Vec::new();
    // Apart, so that most sends are a batch of their own (twice the queue: on a busy machine
    // some arrive together).
    for n in 0..(2 * FOLLOWER_QUEUE) {
        send(&app, &claude, n).await;
        actix_web::rt::time::sleep(Duration::from_millis(40)).await;
        while let Ok(batch) = reading.try_recv() {
            read.extend(batch);
        }
    }
    let last = last_id(&app, one);
    let mut had = Vec::new();
    let mut batches = 0;
    while let Some(batch) = idle.recv().await {
        batches += 1;
        had.extend(batch);
    }
    assert!(batches <= FOLLOWER_QUEUE, "{batches} batches");
    let stopped_at = had.last().map_or(0, |e| e.id);
    assert!(stopped_at < last, "the idle follower was never let go");
    assert_each_once(&had, one, 1, stopped_at);
    let mut again = tail.follow(one, stopped_at).unwrap();
    assert_each_once(
        &received_up_to(&mut again, last).await,
        one,
        stopped_at + 1,
        last,
    );
    if read.last().is_none_or(|e| e.id < last) {
        read.extend(received_up_to(&mut reading, last).await);
    }
    assert_each_once(&read, one, 1, last);
}

/// A follower far behind catches up page by page (`PAGE` events a read), in order, each event
/// once, and then follows what comes next.
#[actix_web::test]
async fn a_long_history_is_read_in_pages() {
    let Some(app) = hub().await else { return };
    let (one, claude) = session(&app, "one").await;
    for chunk in 0..11 {
        futures::future::join_all((0..100).map(|n| send(&app, &claude, chunk * 100 + n))).await;
    }
    let history = last_id(&app, one);
    assert!(history > 1_000, "{history} events");
    let tail = EventTail::start(&app.db.url).unwrap();
    let mut follower = tail.follow(one, 0).unwrap();
    let mut batches = 0;
    let mut got: Vec<Event> = Vec::new();
    while got.last().is_none_or(|e| e.id < history) {
        let batch = actix_web::rt::time::timeout(Duration::from_secs(10), follower.recv())
            .await
            .expect("the history within 10 s")
            .expect("still followed");
        batches += 1;
        got.extend(batch);
    }
    assert!(batches >= 3, "{history} events in {batches} batches");
    send(&app, &claude, 9_999).await;
    let last = last_id(&app, one);
    got.extend(received_up_to(&mut follower, last).await);
    assert_each_once(&got, one, 1, last);
}
