//! Project leases (`store::lease::projects`, issue 14): each project owned by one hub process at
//! a time, so that several owners can share the load. Two keepers on one database, as two hubs
//! would run them; the application routes no request by them yet (docs/multi-hub.md, "Next").
//!
//! PostgreSQL only: leases are how hubs share a PostgreSQL database, and on SQLite one hub holds
//! the file (`multi_hub` checks that a second is refused).

use std::time::{Duration, Instant};

use collab_hub::store::lease::{
    LeaseConfig, LeaseKeeper, PROCESS_LIFE_CLASS, ProjectOwner, project_fence,
};
use collab_hub::store::{DbConn, DbTarget, migrate};
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Integer};
use diesel::{Connection, QueryableByName, RunQueryDsl};

use crate::helpers::{Backend, TestDb};

/// Long enough that nothing in a test expires unless the test makes it.
///
/// Every test's keepers call themselves `http://127.0.0.1:1` and `:2`: what a test does to
/// another process's connection names its own database too (tests run side by side).
const LONG: Duration = Duration::from_secs(300);

fn database() -> Option<TestDb> {
    let db = TestDb::fresh(Backend::Postgres)?;
    migrate(&DbTarget::parse(&db.url).unwrap()).expect("migrations");
    Some(db)
}

/// A keeper as the hub at `http://127.0.0.1:{port}` runs it (nothing listens there: the url
/// only names the holder to the others).
async fn keeper(db: &TestDb, port: u16, ttl: Duration) -> LeaseKeeper {
    let config = LeaseConfig {
        database_url: db.url.clone(),
        url: url(port),
        trusts_loopback: true,
        ttl,
    };
    actix_web::rt::task::spawn_blocking(move || LeaseKeeper::start(config))
        .await
        .unwrap()
        .expect("the keeper starts")
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn here(owner: ProjectOwner) -> i64 {
    match owner {
        ProjectOwner::Here { generation } => generation,
        other => panic!("expected to hold the project, got {other:?}"),
    }
}

async fn owner(keeper: &LeaseKeeper, project: &str) -> ProjectOwner {
    keeper.project(project).await.expect("an answer")
}

fn connect(db: &TestDb) -> PgConnection {
    PgConnection::establish(&db.url).expect("connects")
}

/// Runs `sql` on the test's database from outside the keepers: what another hub, or the
/// database itself, would do to a row.
fn run(db: &TestDb, sql: &str) {
    diesel::sql_query(sql)
        .execute(&mut connect(db))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[derive(QueryableByName)]
struct Generation {
    #[diesel(sql_type = BigInt)]
    generation: i64,
}

/// Raises `project`'s generation as another hub's take would, without the keepers knowing.
fn taken_from_under(db: &TestDb, project: &str) {
    run(
        db,
        &format!(
            "UPDATE owners SET generation = generation + 1
              WHERE kind = 'project' AND key = '{project}'"
        ),
    );
}

fn generation_in_database(db: &TestDb, project: &str) -> i64 {
    diesel::sql_query("SELECT generation FROM owners WHERE kind = 'project' AND key = $1")
        .bind::<diesel::sql_types::Text, _>(project)
        .get_result::<Generation>(&mut connect(db))
        .expect("the project's row")
        .generation
}

/// Waits (at most `within`) until `done` holds.
async fn eventually(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "not within {within:?}: {what}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first keeper to ask for a project holds it; the other is told where it is served. Asked
/// again, the holder answers the same generation; asked at once by both, one holds it.
#[actix_web::test]
async fn a_project_has_one_holder_at_a_time() {
    let Some(db) = database() else { return };
    let (a, b) = (keeper(&db, 1, LONG).await, keeper(&db, 2, LONG).await);
    let alpha = here(owner(&a, "alpha").await);
    assert_eq!(
        owner(&b, "alpha").await,
        ProjectOwner::Elsewhere { url: url(1) }
    );
    let beta = here(owner(&b, "beta").await);
    assert_eq!(
        owner(&a, "beta").await,
        ProjectOwner::Elsewhere { url: url(2) }
    );
    assert_eq!(here(owner(&a, "alpha").await), alpha);
    assert_eq!(a.projects().borrow().generation("alpha"), Some(alpha));
    assert_eq!(a.projects().borrow().generation("beta"), None);
    assert_eq!(b.projects().borrow().projects(), vec!["beta".to_owned()]);
    assert_eq!(generation_in_database(&db, "beta"), beta);

    // Eight takes of one project at once, four through each keeper.
    let answers = futures::future::join_all((0..8).map(|i| {
        if i % 2 == 0 {
            a.project("gamma")
        } else {
            b.project("gamma")
        }
    }))
    .await;
    let (by_a, by_b): (Vec<_>, Vec<_>) = answers
        .into_iter()
        .enumerate()
        .map(|(i, answer)| (i, answer.expect("an answer")))
        .partition(|(i, _)| i % 2 == 0);
    let held_by_a = matches!(by_a[0].1, ProjectOwner::Here { .. });
    let (holder, other, holder_url) = if held_by_a {
        (&by_a, &by_b, url(1))
    } else {
        (&by_b, &by_a, url(2))
    };
    let generation = generation_in_database(&db, "gamma");
    for (_, answer) in holder.iter() {
        assert_eq!(*answer, ProjectOwner::Here { generation });
    }
    for (_, answer) in other.iter() {
        assert_eq!(
            *answer,
            ProjectOwner::Elsewhere {
                url: holder_url.clone()
            }
        );
    }
}

/// Renewals keep what a keeper holds past its lease; a row taken from under it (its
/// generation raised) is let go at the next renewal, before its validity would have run out,
/// and the others stay held.
#[actix_web::test]
async fn renewals_keep_projects_and_a_lost_one_is_let_go() {
    let Some(db) = database() else { return };
    let ttl = Duration::from_millis(1500);
    let a = keeper(&db, 1, ttl).await;
    let alpha = here(owner(&a, "alpha").await);
    let beta = here(owner(&a, "beta").await);
    actix_web::rt::time::sleep(ttl * 3).await;
    let held = a.projects();
    assert_eq!(held.borrow().generation("alpha"), Some(alpha));
    assert_eq!(held.borrow().generation("beta"), Some(beta));
    let b = keeper(&db, 2, ttl).await;
    assert_eq!(
        owner(&b, "alpha").await,
        ProjectOwner::Elsewhere { url: url(1) }
    );

    taken_from_under(&db, "alpha");
    // At the next renewal (every third of the lease), well before its validity would run out
    // by itself.
    eventually(ttl * 2 / 3, "alpha let go", || {
        held.borrow().generation("alpha").is_none()
    })
    .await;
    assert_eq!(held.borrow().generation("beta"), Some(beta));
}

/// A row whose holder's lease connection ended (its life lock is free) is taken at once, not
/// when its 300 s lease expires, with a new generation. A row that names another holder's life
/// (an older hub's, say), or none, is not: it waits for its expiry.
#[actix_web::test]
async fn a_gone_holders_project_is_taken_at_once() {
    let Some(db) = database() else { return };
    // The holder as its row and its lock show it: a connection holding its life lock.
    let mut ghost = connect(&db);
    #[derive(QueryableByName)]
    struct Pid {
        #[diesel(sql_type = Integer)]
        pid: i32,
    }
    let pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Pid>(&mut ghost)
        .unwrap()
        .pid;
    diesel::sql_query("SELECT pg_advisory_lock($1, $2)")
        .bind::<Integer, _>(PROCESS_LIFE_CLASS)
        .bind::<Integer, _>(pid)
        .execute(&mut ghost)
        .unwrap();
    diesel::sql_query(
        "INSERT INTO owners (kind, key, holder, url, trusts_loopback, generation, expires_at, life)
         VALUES ('project', 'alpha', 'ghost', 'http://127.0.0.1:9', true, 5,
                 now() + interval '300 seconds', 'ghost:' || $1),
                ('project', 'beta', 'elder', 'http://127.0.0.1:8', true, 3,
                 now() + interval '300 seconds', 'someone-else:' || $1),
                ('project', 'gamma', 'older', 'http://127.0.0.1:7', true, 2,
                 now() + interval '300 seconds', NULL)",
    )
    .bind::<Integer, _>(pid)
    .execute(&mut ghost)
    .unwrap();
    let b = keeper(&db, 2, LONG).await;
    assert_eq!(
        owner(&b, "alpha").await,
        ProjectOwner::Elsewhere { url: url(9) }
    );

    drop(ghost);
    let start = Instant::now();
    loop {
        match owner(&b, "alpha").await {
            ProjectOwner::Here { generation } => {
                assert_eq!(generation, 6);
                break;
            }
            // The backend ends a moment after its client closed.
            elsewhere => assert!(
                start.elapsed() < Duration::from_secs(10),
                "still {elsewhere:?}"
            ),
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        owner(&b, "beta").await,
        ProjectOwner::Elsewhere { url: url(8) }
    );
    assert_eq!(
        owner(&b, "gamma").await,
        ProjectOwner::Elsewhere { url: url(7) }
    );
}

/// A keeper whose lease connection is ended by the database reconnects and renews at once (its
/// row names its new connection within two seconds, with a 300 s lease: the keeper asks its
/// connection every 250 ms), and keeps its project.
#[actix_web::test]
async fn a_cut_holder_renews_at_once() {
    let Some(db) = database() else { return };
    let a = keeper(&db, 1, LONG).await;
    let alpha = here(owner(&a, "alpha").await);
    #[derive(QueryableByName)]
    struct Life {
        #[diesel(sql_type = diesel::sql_types::Text)]
        life: String,
    }
    let life = || {
        diesel::sql_query("SELECT life FROM owners WHERE kind = 'project' AND key = 'alpha'")
            .get_result::<Life>(&mut connect(&db))
            .unwrap()
            .life
    };
    let before = life();
    run(
        &db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = 'collab-hub lease http://127.0.0.1:1'
            AND datname = current_database()",
    );
    eventually(
        Duration::from_secs(2),
        "renewed on a new connection",
        || life() != before,
    )
    .await;
    assert_eq!(generation_in_database(&db, "alpha"), alpha);
    let b = keeper(&db, 2, LONG).await;
    assert_eq!(
        owner(&b, "alpha").await,
        ProjectOwner::Elsewhere { url: url(1) }
    );
    assert_eq!(a.projects().borrow().generation("alpha"), Some(alpha));
}

/// A keeper whose lease connection is ended while another keeper asks for its project: whether
/// the other took it or not, afterwards exactly one of them holds it, under the generation the
/// database shows.
#[actix_web::test]
async fn a_cut_holder_ends_with_one_holder() {
    let Some(db) = database() else { return };
    let a = keeper(&db, 1, LONG).await;
    let b = keeper(&db, 2, LONG).await;
    here(owner(&a, "alpha").await);
    run(
        &db,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
          WHERE application_name = 'collab-hub lease http://127.0.0.1:1'
            AND datname = current_database()",
    );
    for _ in 0..20 {
        b.project("alpha").await.expect("an answer");
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    let (held_a, held_b) = (a.projects(), b.projects());
    eventually(Duration::from_secs(5), "one holder", || {
        let both = [
            held_a.borrow().generation("alpha"),
            held_b.borrow().generation("alpha"),
        ];
        both.iter().flatten().count() == 1
    })
    .await;
    let held = held_a
        .borrow()
        .generation("alpha")
        .or(held_b.borrow().generation("alpha"));
    assert_eq!(held, Some(generation_in_database(&db, "alpha")));
}

/// The writer's fence: a batch's first statement reads the rows of the projects it writes,
/// with the generations it loaded them under. A project that moved (or a stale generation) is
/// refused, alone.
#[actix_web::test]
async fn the_fence_refuses_only_the_project_that_moved() {
    let Some(db) = database() else { return };
    let a = keeper(&db, 1, LONG).await;
    let alpha = here(owner(&a, "alpha").await);
    let beta = here(owner(&a, "beta").await);
    let mut conn = DbConn::Pg(connect(&db));
    let both = [("alpha".to_owned(), alpha), ("beta".to_owned(), beta)];
    let refused = project_fence(&mut conn, a.project_holder(), &both).unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    let stale = [("alpha".to_owned(), alpha - 1), ("beta".to_owned(), beta)];
    assert_eq!(
        project_fence(&mut conn, a.project_holder(), &stale).unwrap(),
        vec![("alpha".to_owned(), alpha - 1)]
    );
    // Two generations of one project asked at once: only the stale one is refused.
    let twice = [("alpha".to_owned(), alpha - 1), ("alpha".to_owned(), alpha)];
    assert_eq!(
        project_fence(&mut conn, a.project_holder(), &twice).unwrap(),
        vec![("alpha".to_owned(), alpha - 1)]
    );
    assert_eq!(
        project_fence(&mut conn, "another holder", &both)
            .unwrap()
            .len(),
        2
    );
    taken_from_under(&db, "alpha");
    assert_eq!(
        project_fence(&mut conn, a.project_holder(), &both).unwrap(),
        vec![("alpha".to_owned(), alpha)]
    );
}

/// A take waits for a batch that passed the fence to commit, and a batch after the take is
/// refused: nothing a stale holder writes commits after another hub took its project.
#[actix_web::test]
async fn a_take_waits_for_a_fenced_batch() {
    let Some(db) = database() else { return };
    let a = keeper(&db, 1, LONG).await;
    let alpha = here(owner(&a, "alpha").await);
    // The lease runs out in the database (as if a's renewals stopped); a's writer has not
    // noticed yet.
    run(
        &db,
        "UPDATE owners SET expires_at = now() - interval '1 second'
          WHERE kind = 'project' AND key = 'alpha'",
    );
    let mut batch = DbConn::Pg(connect(&db));
    batch.batch_execute("BEGIN").unwrap();
    let fenced = [("alpha".to_owned(), alpha)];
    assert!(
        project_fence(&mut batch, a.project_holder(), &fenced)
            .unwrap()
            .is_empty()
    );

    let b = keeper(&db, 2, LONG).await;
    let take = actix_web::rt::spawn(async move {
        let owner = b.project("alpha").await;
        (owner, b)
    });
    // Less than the take's own lock wait (1 s), after which it would give up.
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert!(!take.is_finished(), "the take did not wait for the batch");
    batch.batch_execute("COMMIT").unwrap();
    let (taken, _b) = take.await.unwrap();
    assert_eq!(
        taken.unwrap(),
        ProjectOwner::Here {
            generation: alpha + 1
        }
    );
    assert_eq!(
        project_fence(&mut batch, a.project_holder(), &fenced).unwrap(),
        vec![("alpha".to_owned(), alpha)]
    );
}

/// A keeper stopped gracefully hands its projects back: the next keeper takes each at once,
/// under a higher generation.
#[actix_web::test]
async fn a_stopped_keeper_hands_its_projects_back() {
    let Some(db) = database() else { return };
    let a = keeper(&db, 1, LONG).await;
    let alpha = here(owner(&a, "alpha").await);
    let b = keeper(&db, 2, LONG).await;
    assert_eq!(
        owner(&b, "alpha").await,
        ProjectOwner::Elsewhere { url: url(1) }
    );
    actix_web::rt::task::spawn_blocking(move || drop(a))
        .await
        .unwrap();
    // Handed back, not merely left by a connection that ended (which b would take too).
    #[derive(QueryableByName)]
    struct Expired {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        expired: bool,
    }
    let row = diesel::sql_query(
        "SELECT expires_at < now() AS expired FROM owners WHERE kind = 'project' AND key = 'alpha'",
    )
    .get_result::<Expired>(&mut connect(&db))
    .unwrap();
    assert!(row.expired, "the lease was not handed back");
    // b remembers for a moment where it last found alpha served (`SeenElsewhere`): a hub would
    // find a gone at its next request there, forget it, and ask again. Past that moment:
    actix_web::rt::time::sleep(collab_hub::store::lease::SEEN_FOR * 2).await;
    assert_eq!(
        owner(&b, "alpha").await,
        ProjectOwner::Here {
            generation: alpha + 1
        }
    );
}

/// The writer's side of the fence: a store whose sessions are fenced by project leases checks
/// them in each batch's own transaction (a batch holding the writer keeps its project's row
/// locked: an update of it waits), leaves out, unrun, the writes of a session whose project
/// moved (answered `Unavailable`, through both write paths), and commits the rest of that same
/// batch; the fence is the handle's (`Store::fenced_by`), not the session's.
#[actix_web::test]
async fn a_store_leaves_out_only_the_writes_of_a_project_that_moved() {
    use collab_hub::store::applied::{find, record};
    use collab_hub::store::{ProjectFence, Store};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(db) = database() else { return };
    let a = keeper(&db, 1, LONG).await;
    let alpha = here(owner(&a, "alpha").await);
    let beta = here(owner(&a, "beta").await);
    let store = Store::open(DbTarget::parse(&db.url).unwrap())
        .await
        .expect("store opens");
    let moving = uuid::Uuid::new_v4();
    // On the same writer, so that both share its batches.
    let staying = std::iter::repeat_with(uuid::Uuid::new_v4)
        .find(|s| store.writer_of(*s) == store.writer_of(moving))
        .unwrap();
    let fence = |project: &str, generation: i64| ProjectFence {
        holder: a.project_holder().into(),
        project: project.into(),
        generation,
    };
    // What the hub gives the actors of each project.
    let of_alpha = store.fenced_by(fence("alpha", alpha));
    let of_beta = store.fenced_by(fence("beta", beta));
    let ran = Arc::new(AtomicBool::new(false));
    let write = |store: &Store, session: uuid::Uuid| {
        let (key, store, ran) = (uuid::Uuid::new_v4(), store.clone(), ran.clone());
        async move {
            let written = store
                .write_for(session, move |c| {
                    ran.store(true, Ordering::SeqCst);
                    record(c, key, session, &[])
                })
                .await;
            (key, written)
        }
    };
    for (store, session) in [(&of_alpha, moving), (&of_beta, staying)] {
        let (_, written) = write(store, session).await;
        written.expect("written while the lease holds");
    }

    // A write of beta holds the writer inside its batch's transaction.
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let holding = actix_web::rt::spawn({
        let store = of_beta.clone();
        async move {
            store
                .write_for(staying, move |_| {
                    let _ = hold.recv();
                    Ok(())
                })
                .await
        }
    });
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    let mut other = connect(&db);
    diesel::sql_query("SET lock_timeout = '300ms'")
        .execute(&mut other)
        .unwrap();
    let blocked = diesel::sql_query(
        "UPDATE owners SET expires_at = expires_at WHERE kind = 'project' AND key = 'beta'",
    )
    .execute(&mut other);
    assert!(
        blocked.is_err(),
        "beta's row was not locked by the batch that passed its fence"
    );
    taken_from_under(&db, "alpha");
    // Both queued behind the held batch: the next batch holds them together.
    let refused = actix_web::rt::spawn(write(&of_alpha, moving));
    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    let kept = actix_web::rt::spawn(write(&of_beta, staying));
    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    release.send(()).unwrap();
    holding.await.unwrap().expect("the held write commits");
    let (refused_key, refused) = refused.await.unwrap();
    let refused = refused.expect_err("the moved project's write is left out");
    assert_eq!(refused.code(), "unavailable", "{refused}");
    assert!(refused.to_string().contains("project alpha"), "{refused}");
    let (kept_key, kept) = kept.await.unwrap();
    kept.expect("the other project's write in the same batch commits");
    let submitted = of_alpha.submit_for(moving, |_| Ok(()));
    let answer = submitted.outcome.await.expect("answered");
    let answer = answer.expect_err("a pipelined write is left out too");
    assert!(answer.to_string().contains("project alpha"), "{answer}");
    let stored = |key: uuid::Uuid| {
        let store = store.clone();
        async move { store.read(move |c| find(c, key)).await.unwrap().is_some() }
    };
    assert!(
        !stored(refused_key).await,
        "the moved project's write was stored"
    );
    assert!(stored(kept_key).await);

    // Left out means unrun, not run and rolled back (checked alone: in a batch the kept write
    // sets the flag too).
    ran.store(false, Ordering::SeqCst);
    let (_, again) = write(&of_alpha, moving).await;
    again.expect_err("still left out");
    assert!(!ran.load(Ordering::SeqCst), "a left-out write ran");

    // The fence is the handle's, not the session's: the store's own handle is not fenced.
    let (_, written) = write(&store, moving).await;
    written.expect("not fenced");
}
