//! The store's group commit: writes submitted together share one transaction, each in its own
//! savepoint, so a write that fails after changing rows leaves no trace and takes no other
//! write down with it. Against the real `Store` on both backends.

use collab_hub::HubError;
use collab_hub::store::lease::Fence;
use collab_hub::store::{DbTarget, Store, mcp_sessions};

use crate::helpers::{Backend, TestDb, both_backends};

both_backends!(
    a_failed_write_in_a_batch_undoes_only_itself,
    a_failed_rerunnable_write_undoes_only_itself,
    a_stale_owner_commits_nothing,
    statistics_are_kept_where_the_server_does_not_keep_them,
);

async fn a_failed_write_in_a_batch_undoes_only_itself(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let store = Store::open(DbTarget::parse(&db.url).unwrap())
        .await
        .expect("store opens");
    // 200 writes at once: they reach the writer together and commit in a few batches. Every
    // third one writes its row and then fails.
    let writes = (0..200).map(|i| {
        let store = store.clone();
        async move {
            let id = format!("w{i}");
            let key = id.clone();
            let result = store
                .write(move |c| {
                    mcp_sessions::save(c, &key, "{}", 1)?;
                    if i % 3 == 0 {
                        return Err(HubError::invalid("i", "fails after writing"));
                    }
                    mcp_sessions::save(c, &key, "{\"second\":true}", 2)
                })
                .await;
            (i, id, result)
        }
    });
    let results = futures::future::join_all(writes).await;
    check_only_failures_undone(&store, results).await;
    store.shutdown().await;
}

/// The same through `submit_for` (the session pipeline's writes), whose batches PostgreSQL runs
/// without savepoints first: a failure there aborts the whole transaction, so the batch must
/// run again with savepoints. Every fifth write also fails in the database itself (an error
/// that aborts a PostgreSQL transaction), not only in Rust.
async fn a_failed_rerunnable_write_undoes_only_itself(backend: Backend) {
    use diesel::connection::SimpleConnection;
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let store = Store::open(DbTarget::parse(&db.url).unwrap())
        .await
        .expect("store opens");
    let session = uuid::Uuid::new_v4();
    // All queued before the writer wakes: they share batches.
    let submitted: Vec<_> = (0..200)
        .map(|i| {
            let id = format!("w{i}");
            let key = id.clone();
            let (sub, full) = store.submit_for(session, move |c| {
                mcp_sessions::save(c, &key, "{}", 1)?;
                if i % 5 == 0 {
                    c.batch_execute("SELECT * FROM no_such_table")?;
                }
                if i % 3 == 0 {
                    return Err(HubError::invalid("i", "fails after writing"));
                }
                mcp_sessions::save(c, &key, "{\"second\":true}", 2)
            });
            assert!(full.is_none(), "the writer's queue holds 200");
            (i, id, sub)
        })
        .collect();
    let mut results = Vec::new();
    for (i, id, sub) in submitted {
        let result = sub
            .outcome
            .await
            .unwrap_or_else(|_| panic!("{id}: dropped"));
        let result = match result {
            // Failed in the database: it must be an error, whatever its kind.
            Err(_) if i % 5 == 0 => Err(HubError::invalid("i", "failed in SQL")),
            r => r,
        };
        results.push((i % 5 == 0 || i % 3 == 0, id, result));
    }
    let results = results
        .into_iter()
        .map(|(fails, id, r)| (if fails { 0 } else { 1 }, id, r))
        .collect();
    check_only_failures_undone(&store, results).await;
    store.shutdown().await;
}

/// Writes `(i, id, result)` where `i % 3 == 0` marks one that must have failed: it left no row
/// and answered `Invalid`; every other one answered ok and left its second row.
async fn check_only_failures_undone(
    store: &Store,
    results: Vec<(i32, String, Result<(), HubError>)>,
) {
    let fresh = long_ago();
    for (i, id, result) in results {
        let key = id.clone();
        let stored = store
            .read(move |c| mcp_sessions::load(c, &key, fresh))
            .await
            .unwrap();
        if i % 3 == 0 {
            assert!(
                matches!(result, Err(HubError::Invalid { .. })),
                "{id}: {result:?}"
            );
            assert_eq!(stored, None, "{id}: a failed write left its row");
        } else {
            assert!(result.is_ok(), "{id}: {result:?}");
            assert_eq!(
                stored,
                Some(("{\"second\":true}".to_owned(), 2)),
                "{id}: an acknowledged write is missing or partial"
            );
        }
    }
}

fn long_ago() -> chrono::NaiveDateTime {
    chrono::NaiveDate::from_ymd_opt(2000, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
}

/// Several hubs on one PostgreSQL: once another hub took the lease over (a new holder and a
/// higher generation in `owners`), the old owner's writer commits nothing more, and its callers
/// hear `Unavailable`. SQLite has no lease (one hub per file): the fence is not checked there.
async fn a_stale_owner_commits_nothing(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let target = DbTarget::parse(&db.url).unwrap();
    collab_hub::store::migrate(&target).expect("migrates");
    let store = Store::open_fenced(
        target,
        Some(Fence {
            holder: "old".into(),
            generation: 1,
        }),
    )
    .await
    .expect("store opens");
    let save = |key: &'static str| {
        let store = store.clone();
        async move {
            store
                .write(move |c| mcp_sessions::save(c, key, "{}", 1))
                .await
        }
    };
    let stored = |key: &'static str| {
        let store = store.clone();
        async move {
            store
                .read(move |c| mcp_sessions::load(c, key, long_ago()))
                .await
                .unwrap()
        }
    };
    let exec = |sql: &'static str| {
        let store = store.clone();
        async move {
            store
                .read(move |c| {
                    let collab_hub::store::DbConn::Pg(pg) = c else {
                        return Ok(());
                    };
                    diesel::RunQueryDsl::execute(diesel::sql_query(sql), pg)?;
                    Ok(())
                })
                .await
                .unwrap()
        }
    };
    if backend == Backend::Sqlite {
        assert!(save("k1").await.is_ok());
        assert!(stored("k1").await.is_some());
        store.shutdown().await;
        return;
    }
    // Owned: writes commit.
    exec(
        "INSERT INTO owners VALUES ('hub', '', 'old', 'http://old', true, 1, now() + interval '1 hour')",
    )
    .await;
    assert!(save("k1").await.is_ok());
    assert!(stored("k1").await.is_some());
    // Taken over (as a standby does once the lease expired): refused, nothing stored.
    exec("UPDATE owners SET holder = 'new', url = 'http://new', generation = 2").await;
    let refused = save("k2").await;
    assert!(
        matches!(refused, Err(HubError::Unavailable(_))),
        "{refused:?}"
    );
    assert_eq!(stored("k2").await, None, "a stale owner committed");
    // Even were the row handed back under the same holder, the generation moved on.
    exec("UPDATE owners SET holder = 'old'").await;
    assert!(save("k3").await.is_err());
    assert_eq!(stored("k3").await, None, "an old generation committed");
    store.shutdown().await;
}

/// PostgreSQL without autovacuum: the hub's periodic refresh leaves the history tables analyzed
/// (otherwise the planner scans a session's whole history for one page). With autovacuum on,
/// and on SQLite, there is nothing to do and nothing fails.
async fn statistics_are_kept_where_the_server_does_not_keep_them(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let store = Store::open(DbTarget::parse(&db.url).unwrap())
        .await
        .expect("store opens");
    store.refresh_statistics().await.expect("refreshes");
    let kept = store
        .read(|c| {
            #[derive(diesel::QueryableByName)]
            struct Kept {
                #[diesel(sql_type = diesel::sql_types::Bool)]
                kept: bool,
            }
            let collab_hub::store::DbConn::Pg(pg) = c else {
                return Ok(true);
            };
            let k: Kept = diesel::RunQueryDsl::get_result(
                diesel::sql_query(
                    "SELECT current_setting('autovacuum') = 'on' OR last_analyze IS NOT NULL AS kept
                       FROM pg_stat_user_tables WHERE relname = 'events'",
                ),
                pg,
            )?;
            Ok(k.kept)
        })
        .await
        .unwrap();
    assert!(kept, "events was not analyzed");
    store.shutdown().await;
}
