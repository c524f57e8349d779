//! The store's group commit: writes submitted together share one transaction, each in its own
//! savepoint, so a write that fails after changing rows leaves no trace and takes no other
//! write down with it. Against the real `Store` on both backends.

use collab_hub::HubError;
use collab_hub::store::event_writes::{EventWrite, LockChange, LockWrite};
use collab_hub::store::{DbTarget, Store, mcp_sessions};

use crate::helpers::{Backend, TestDb, both_backends};

both_backends!(
    a_failed_write_in_a_batch_undoes_only_itself,
    a_failed_rerunnable_write_undoes_only_itself,
    sends_queued_together_are_written_as_one_by_one,
    a_lock_write_and_its_event_land_together,
    plain_events_queued_with_sends_take_their_places,
    tables_are_vacuumed_where_the_server_does_not,
    old_request_keys_are_forgotten_a_chunk_at_a_time,
);

/// A store on a fresh database of `backend` (kept while the test runs).
async fn fresh_store(backend: Backend) -> Option<(TestDb, Store)> {
    let db = TestDb::fresh(backend)?;
    let store = Store::open(DbTarget::parse(&db.url).unwrap())
        .await
        .expect("store opens");
    Some((db, store))
}

/// `applied::prune` forgets keys recorded before the cut, at most a chunk per write, and keeps
/// the newer ones (what the MCP registry's sweep runs in a loop).
async fn old_request_keys_are_forgotten_a_chunk_at_a_time(backend: Backend) {
    use collab_hub::store::applied::{PRUNE_CHUNK, find, prune, record};
    let Some((_db, store)) = fresh_store(backend).await else {
        return;
    };
    let session = uuid::Uuid::new_v4();
    let old: Vec<uuid::Uuid> = (0..PRUNE_CHUNK + 7).map(|_| uuid::Uuid::new_v4()).collect();
    let recorded = old.clone();
    store
        .write(move |c| {
            for key in &recorded {
                record(c, *key, session, &[])?;
            }
            Ok(())
        })
        .await
        .expect("recorded");
    let cut = chrono::Utc::now().naive_utc() + chrono::Duration::milliseconds(1);
    std::thread::sleep(std::time::Duration::from_millis(5));
    let new = uuid::Uuid::new_v4();
    store
        .write(move |c| record(c, new, session, &[]))
        .await
        .expect("recorded");
    let first = store.write(move |c| prune(c, cut)).await.unwrap();
    let second = store.write(move |c| prune(c, cut)).await.unwrap();
    let third = store.write(move |c| prune(c, cut)).await.unwrap();
    assert_eq!((first, second, third), (PRUNE_CHUNK as usize, 7, 0));
    let (gone, kept) = (old[0], new);
    let found = store
        .read(move |c| Ok((find(c, gone)?, find(c, kept)?)))
        .await
        .unwrap();
    assert!(found.0.is_none() && found.1.is_some(), "{found:?}");
    store.shutdown().await;
}

async fn a_failed_write_in_a_batch_undoes_only_itself(backend: Backend) {
    let Some((_db, store)) = fresh_store(backend).await else {
        return;
    };
    // 200 writes at once: they reach the writer together and commit in a few batches. Every
    // third one writes its row and then fails.
    let writes = (0..200).map(|i| {
        let store = store.clone();
        async move {
            let id = format!("w{i}");
            let key = id.clone();
            let result = store
                .write(move |c| {
                    mcp_sessions::create(c, &key, "{}", "w")?;
                    if i % 3 == 0 {
                        return Err(HubError::invalid("i", "fails after writing"));
                    }
                    mcp_sessions::save(c, &key, "{\"second\":true}", 2, "w", 0).map(drop)
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
    let Some((_db, store)) = fresh_store(backend).await else {
        return;
    };
    let session = uuid::Uuid::new_v4();
    // All queued before the writer wakes: they share batches.
    let submitted: Vec<_> = (0..200)
        .map(|i| {
            let id = format!("w{i}");
            let key = id.clone();
            let sub = store.submit_for(session, move |c| {
                mcp_sessions::create(c, &key, "{}", "w")?;
                if i % 5 == 0 {
                    c.batch_execute("SELECT * FROM no_such_table")?;
                }
                if i % 3 == 0 {
                    return Err(HubError::invalid("i", "fails after writing"));
                }
                mcp_sessions::save(c, &key, "{\"second\":true}", 2, "w", 0).map(drop)
            });
            assert!(sub.queue_full.is_none(), "the writer's queue holds 200");
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
            .unwrap()
            .map(|row| (row.state, row.rev));
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

/// PostgreSQL without autovacuum: the hub's periodic refresh leaves the history tables analyzed
/// (otherwise the planner scans a session's whole history for one page). With autovacuum on,
/// and on SQLite, there is nothing to do and nothing fails.
async fn tables_are_vacuumed_where_the_server_does_not(backend: Backend) {
    let Some((_db, store)) = fresh_store(backend).await else {
        return;
    };
    store
        .vacuum_where_autovacuum_is_off()
        .await
        .expect("vacuums");
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
                    "SELECT current_setting('autovacuum') = 'on' OR bool_and(last_analyze IS NOT NULL
                            AND last_vacuum IS NOT NULL) AS kept
                       FROM pg_stat_user_tables WHERE relname IN ('events', 'message_unread', 'sessions')",
                ),
                pg,
            )?;
            Ok(k.kept)
        })
        .await
        .unwrap();
    assert!(
        kept,
        "events, message_unread or sessions was not vacuumed and analyzed"
    );
    store.shutdown().await;
}

/// Message sends queued together (`submit_event_write`, the session pipeline's sends). On PostgreSQL a
/// run of them is written by ONE statement whatever sessions they belong to
/// (`event_writes::write_many`); what it writes must be what one send at a time writes (as
/// SQLite does): each session's ids gap-free in queue order, the sessions' counters where the
/// next send continues, each message with its thread, and unread by its recipient only, or for
/// a broadcast by everyone but the sender. A send whose session does not exist is refused
/// alone; one that fails in the database (here a unread row that already exists) makes the
/// statement fail, and the batch then runs again one send at a time: only that send fails.
async fn sends_queued_together_are_written_as_one_by_one(backend: Backend) {
    use collab_hub::domain::message::Parent;
    let Some((_db, sessions, store)) = sessions_then_store(backend, 9, &["x", "y", "z"]).await
    else {
        return;
    };
    // Two sessions and a missing one, all on one writer: they share its batches.
    let (a, b, gone) = two_sessions_on_one_writer(&store, &sessions);
    let base_a = last_event_id(&store, a).await;
    let base_b = last_event_id(&store, b).await;
    let at = chrono::Utc::now().naive_utc();
    let send = |session, from: &str, to: Option<&str>, parent: Option<Parent>| {
        let body = format!("{from} to {to:?}");
        send_write(session, &["x", "y", "z"], (from, to), parent, &body, at)
    };
    // A's third message (x → y, id base_a + 3) will find its unread row already there.
    let clash = base_a + 3;
    let sid = a.to_string();
    store
        .write(move |c| {
            use diesel::RunQueryDsl;
            diesel::sql_query(
                "INSERT INTO message_unread (session_id, ai_id, message_id) VALUES ($1, 'y', $2)",
            )
            .bind::<diesel::sql_types::Text, _>(sid)
            .bind::<diesel::sql_types::BigInt, _>(clash)
            .execute(c)?;
            Ok(())
        })
        .await
        .unwrap();
    let first_a = Parent {
        id: base_a + 1,
        from: "x".into(),
        to: None,
        thread: base_a + 1,
    };
    // (send, expected: Some(id) or None for refused), all queued before the writer wakes.
    let plan = vec![
        (send(a, "x", None, None), Some(base_a + 1)),
        (send(b, "y", Some("z"), None), Some(base_b + 1)),
        (send(a, "y", None, Some(first_a.clone())), Some(base_a + 2)),
        (send(gone, "x", None, None), None),
        (send(b, "z", None, None), Some(base_b + 2)),
        (send(a, "x", Some("y"), None), None), // the clash
        (send(a, "z", Some("x"), Some(first_a)), Some(base_a + 3)),
        (send(b, "x", Some("y"), None), Some(base_b + 3)),
    ];
    let submitted: Vec<_> = plan
        .into_iter()
        .map(|(write, expected)| {
            let shape = (
                write.session_id,
                write.message.from.clone(),
                write.message.to.clone(),
            );
            let sub = store.submit_event_write(EventWrite::Send(write));
            assert!(sub.queue_full.is_none());
            (shape, expected, sub)
        })
        .collect();
    let mut written = Vec::new();
    for ((session, from, to), expected, sub) in submitted {
        let outcome = sub.outcome.await.expect("answered");
        match expected {
            Some(id) => {
                let events = outcome.unwrap_or_else(|e| panic!("{from} → {to:?}: {e}"));
                assert_eq!(events.len(), 1);
                assert_eq!(events[0].id, id, "{from} → {to:?} in {session}");
                assert_eq!(events[0].kind, "message_sent");
                written.push((session, id, from, to));
            }
            None => assert!(outcome.is_err(), "{from} → {to:?} must be refused"),
        }
    }
    // The counters continue where the batch left them.
    assert_eq!(last_event_id(&store, a).await, base_a + 3);
    assert_eq!(last_event_id(&store, b).await, base_b + 3);
    // What is stored is exactly what was acknowledged.
    for (session, base) in [(a, base_a), (b, base_b)] {
        let stored = stored_messages(&store, session, base).await;
        let expected: Vec<_> = written
            .iter()
            .filter(|w| w.0 == session)
            .map(|(_, id, from, to)| (*id, from.clone(), to.clone()))
            .collect();
        let stored: Vec<_> = stored.into_iter().map(|m| (m.0, m.1, m.2)).collect();
        assert_eq!(stored, expected, "messages of {session}");
        let mut unread = stored_unread(&store, session, base).await;
        let mut want: Vec<(String, i64)> = expected
            .iter()
            .flat_map(|(id, from, to)| match to {
                Some(to) => vec![(to.clone(), *id)],
                None => ["x", "y", "z"]
                    .iter()
                    .filter(|p| **p != from.as_str())
                    .map(|p| (p.to_string(), *id))
                    .collect(),
            })
            .collect();
        if session == a {
            want.push(("y".into(), clash)); // planted before the batch
        }
        unread.sort();
        want.sort();
        assert_eq!(unread, want, "unread rows of {session}");
    }
    // Replies keep their thread: A's second and last messages answer its first.
    let threads: Vec<_> = stored_messages(&store, a, base_a)
        .await
        .into_iter()
        .map(|m| (m.0, m.3))
        .collect();
    assert_eq!(
        threads,
        vec![
            (base_a + 1, base_a + 1),
            (base_a + 2, base_a + 1),
            (base_a + 3, base_a + 1)
        ]
    );
    store.shutdown().await;
}

/// A context write's event queued with sends (`EventWrite::Event`): on PostgreSQL they share
/// one statement, and a batch of events alone is one too. Each takes its session's next id in
/// queue order, is stored as planned, and one into a session that does not exist is refused
/// alone.
async fn plain_events_queued_with_sends_take_their_places(backend: Backend) {
    use collab_hub::domain::event::{NewEvent, Priority};
    use collab_hub::store::event_writes::PlainWrite;
    use collab_hub::store::queries::{EventFilter, events_after};
    let Some((_db, sessions, store)) = sessions_then_store(backend, 9, &["x", "y"]).await else {
        return;
    };
    let (a, b, gone) = two_sessions_on_one_writer(&store, &sessions);
    let (base_a, base_b) = (
        last_event_id(&store, a).await,
        last_event_id(&store, b).await,
    );
    let at = chrono::Utc::now().naive_utc();
    let send = |session| {
        let write = send_write(
            session,
            &["x", "y"],
            ("x", Some("y")),
            None,
            "beside the context",
            at,
        );
        EventWrite::Send(write)
    };
    let plain = |session, n: i64| {
        EventWrite::Event(PlainWrite {
            session_id: session,
            event: NewEvent {
                kind: "context_changed",
                actor: Some("y".into()),
                priority: Priority::Routine,
                payload: serde_json::json!({"changes": [], "n": n}),
                to: None,
            },
            at,
        })
    };
    let rounds = [
        vec![
            (send(a), Some(base_a + 1)),
            (plain(a, 1), Some(base_a + 2)),
            (plain(gone, 0), None),
            (send(b), Some(base_b + 1)),
            (plain(b, 2), Some(base_b + 2)),
            (send(a), Some(base_a + 3)),
        ],
        // Events alone.
        vec![
            (plain(a, 3), Some(base_a + 4)),
            (plain(b, 4), Some(base_b + 3)),
        ],
    ];
    for round in rounds {
        let queued: Vec<_> = round
            .into_iter()
            .map(|(w, expected)| (store.submit_event_write(w), expected))
            .collect();
        for (sub, expected) in queued {
            let outcome = sub.outcome.await.expect("answered");
            match expected {
                Some(id) => assert_eq!(outcome.expect("written")[0].id, id),
                None => assert!(outcome.is_err(), "a write into no session must be refused"),
            }
        }
    }
    assert_eq!(last_event_id(&store, a).await, base_a + 4);
    assert_eq!(last_event_id(&store, b).await, base_b + 3);
    for (session, base, want) in [
        (a, base_a, vec![(2, 1), (4, 3)]),
        (b, base_b, vec![(2, 2), (3, 4)]),
    ] {
        let events = store
            .read(move |c| {
                let all = EventFilter {
                    viewer: None,
                    kinds: None,
                    critical_only: false,
                };
                events_after(c, session, all, base, 100)
            })
            .await
            .unwrap();
        let stored: Vec<(i64, i64)> = events
            .iter()
            .filter(|e| e.kind == "context_changed")
            .map(|e| (e.id - base, e.payload["n"].as_i64().unwrap()))
            .collect();
        assert_eq!(stored, want, "the context events of {session}");
        assert!(
            events
                .iter()
                .all(|e| e.kind != "context_changed" || e.actor.as_deref() == Some("y"))
        );
    }
    store.shutdown().await;
}

/// A lock's acquire, renewal and release each write the event and the lock's row together:
/// alone (one statement each on PostgreSQL), and queued together with other sessions' writes
/// and a send (then one statement for the batch on PostgreSQL). The rows read back are what
/// the writes said, the events take their sessions' next ids in queue order, and a write into
/// a session that does not exist is refused alone and leaves nothing.
async fn a_lock_write_and_its_event_land_together(backend: Backend) {
    use collab_hub::domain::event::{NewEvent, Priority};
    use collab_hub::domain::lock::{Mode, Release, Request, Resource};
    let Some((_db, sessions, store)) = sessions_then_store(backend, 3, &["x", "y"]).await else {
        return;
    };
    // Whole seconds: both backends give timestamps back as they were written.
    let at = chrono::DateTime::from_timestamp(1_900_000_000, 0)
        .unwrap()
        .naive_utc();
    let later = at + chrono::TimeDelta::seconds(1);
    let lock = move |session, lock_id: i64, change: &str| {
        let request = |resource: &str, mode, task_id| Request {
            session_id: session,
            resource: Resource::parse(resource).unwrap(),
            holder: "x".into(),
            mode,
            operation: Some("edit".into()),
            lease_secs: 30,
            wait: true,
            task_id,
        };
        let (kind, change, when) = match (change, lock_id % 10) {
            ("acquire", 1) => (
                "resource_locked",
                LockChange::Request {
                    id: lock_id,
                    request: request("/src/a.rs", Mode::Exclusive, Some(7)),
                    granted: true,
                },
                at,
            ),
            ("acquire", _) => (
                "lock_queued",
                LockChange::Request {
                    id: lock_id,
                    request: request("/src/b.rs", Mode::Shared, None),
                    granted: false,
                },
                at,
            ),
            ("renew", _) => (
                "lock_renewed",
                LockChange::Renew {
                    id: lock_id,
                    lease_secs: 90,
                    expires_at: later,
                },
                later,
            ),
            _ => (
                "resource_released",
                LockChange::Release {
                    id: lock_id,
                    reason: Release::Cancelled,
                },
                later,
            ),
        };
        LockWrite {
            session_id: session,
            event: NewEvent {
                kind,
                actor: Some("x".into()),
                priority: Priority::Routine,
                payload: serde_json::json!({"lockId": lock_id}),
                to: None,
            },
            at: when,
            change,
        }
    };
    let [alone, together, beside] = sessions[..] else {
        unreachable!()
    };
    let base: Vec<i64> =
        futures::future::join_all(sessions.iter().map(|s| last_event_id(&store, *s))).await;
    let missing = std::iter::repeat_with(uuid::Uuid::new_v4)
        .find(|g| store.writer_of(*g) == store.writer_of(together))
        .unwrap();

    // Alone: one write at a time, in one transaction.
    let script = [
        (41, "acquire"),
        (42, "acquire"),
        (41, "renew"),
        (42, "release"),
    ];
    let ids = store
        .write_for(alone, move |c| {
            let mut ids = Vec::new();
            for (id, change) in script {
                ids.push(lock(alone, id, change).write(c)?.id);
            }
            let refused = lock(missing, 43, "acquire").write(c);
            assert!(
                matches!(refused, Err(HubError::NotFound { .. })),
                "{refused:?}"
            );
            Ok(ids)
        })
        .await
        .expect("the writes commit");
    assert_eq!(ids, (1..=4).map(|n| base[0] + n).collect::<Vec<_>>());

    // Together: the acquires of two sessions on one writer, a send between them and a request
    // into no session, queued at once; then the renewal and the release, with another send.
    let writer_mate = if store.writer_of(beside) == store.writer_of(together) {
        beside
    } else {
        together
    };
    let send = |session| {
        let write = send_write(
            session,
            &["x", "y"],
            ("y", None),
            None,
            "between the locks",
            at,
        );
        EventWrite::Send(write)
    };
    let rounds = [
        vec![
            EventWrite::Lock(lock(together, 51, "acquire")),
            send(together),
            EventWrite::Lock(lock(missing, 53, "acquire")),
            EventWrite::Lock(lock(writer_mate, 61, "acquire")),
            EventWrite::Lock(lock(together, 52, "acquire")),
        ],
        vec![
            EventWrite::Lock(lock(together, 51, "renew")),
            send(writer_mate),
            EventWrite::Lock(lock(together, 52, "release")),
        ],
    ];
    let mut answered = Vec::new();
    for round in rounds {
        let queued: Vec<_> = round
            .into_iter()
            .map(|w| (w.session_id(), store.submit_event_write(w)))
            .collect();
        for (session, sub) in queued {
            let outcome = sub.outcome.await.expect("answered");
            answered.push((session, outcome.map(|e| e[0].id).ok()));
        }
    }
    let (t, m) = (
        base[1],
        if writer_mate == together {
            base[1]
        } else {
            base[2]
        },
    );
    let expected_ids = if writer_mate == together {
        // The mate is `together` itself: its lock and send take ids in queue order.
        vec![
            (t, 1),
            (t, 2),
            (0, 0),
            (t, 3),
            (t, 4),
            (t, 5),
            (t, 6),
            (t, 7),
        ]
    } else {
        vec![
            (t, 1),
            (t, 2),
            (0, 0),
            (m, 1),
            (t, 3),
            (t, 4),
            (m, 2),
            (t, 5),
        ]
    };
    let sessions_of = [
        together,
        together,
        missing,
        writer_mate,
        together,
        together,
        writer_mate,
        together,
    ];
    assert_eq!(
        answered,
        sessions_of
            .iter()
            .zip(&expected_ids)
            .map(|(s, (b, n))| (*s, (*n > 0).then_some(b + n)))
            .collect::<Vec<_>>(),
        "each write's id, in queue order within its session; the missing session's refused"
    );

    let rows = store
        .read(move |c| {
            use collab_hub::store::schema::locks::dsl as l;
            use diesel::prelude::*;
            Ok(l::locks
                .order((l::id, l::session_id))
                .select(LockRow::as_select())
                .load::<LockRow>(c)?)
        })
        .await
        .unwrap();
    let row = |session: uuid::Uuid,
               id,
               resource: &str,
               mode: &str,
               state: &str,
               lease,
               token,
               task,
               expires,
               released,
               why: Option<&str>| LockRow {
        session_id: session.to_string(),
        id,
        resource: resource.to_owned(),
        holder: "x".to_owned(),
        mode: mode.to_owned(),
        operation: Some("edit".to_owned()),
        state: state.to_owned(),
        lease_secs: lease,
        fencing_token: token,
        requested_at: at,
        task_id: task,
        expires_at: expires,
        released_at: released,
        release_reason: why.map(str::to_owned),
    };
    // Held at once (its id its token), then renewed: 90 s, to `later`.
    let renewed = |s, id| {
        row(
            s,
            id,
            "/src/a.rs",
            "exclusive",
            "held",
            90,
            Some(id),
            Some(7),
            Some(later),
            None,
            None,
        )
    };
    // Queued, then cancelled.
    let cancelled = |s, id| {
        row(
            s,
            id,
            "/src/b.rs",
            "shared",
            "released",
            30,
            None,
            None,
            None,
            Some(later),
            Some("cancelled"),
        )
    };
    // Held, as acquired.
    let held = |s, id| {
        row(
            s,
            id,
            "/src/a.rs",
            "exclusive",
            "held",
            30,
            Some(id),
            Some(7),
            Some(at + chrono::TimeDelta::seconds(30)),
            None,
            None,
        )
    };
    assert_eq!(
        rows,
        vec![
            renewed(alone, 41),
            cancelled(alone, 42),
            renewed(together, 51),
            cancelled(together, 52),
            held(writer_mate, 61),
        ]
    );
    store.shutdown().await;
}

#[derive(Debug, PartialEq, diesel::Queryable, diesel::Selectable)]
#[diesel(table_name = collab_hub::store::schema::locks)]
struct LockRow {
    session_id: String,
    id: i64,
    resource: String,
    holder: String,
    mode: String,
    operation: Option<String>,
    state: String,
    lease_secs: i32,
    fencing_token: Option<i64>,
    requested_at: chrono::NaiveDateTime,
    task_id: Option<i64>,
    expires_at: Option<chrono::NaiveDateTime>,
    released_at: Option<chrono::NaiveDateTime>,
    release_reason: Option<String>,
}

/// `last_event_id` inside a write.
fn last_event_id_in(
    c: &mut collab_hub::store::DbConn,
    session: uuid::Uuid,
) -> Result<i64, HubError> {
    #[derive(diesel::QueryableByName)]
    struct Last {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        last: i64,
    }
    use diesel::RunQueryDsl;
    let row: Last = diesel::sql_query("SELECT last_event_id AS last FROM sessions WHERE id = $1")
        .bind::<diesel::sql_types::Text, _>(session.to_string())
        .get_result(c)?;
    Ok(row.last)
}

/// `count` sessions of `participants` made by the hub, then a store of our own on its database
/// once the hub stopped (the database lives as long as the `TestDb`).
async fn sessions_then_store(
    backend: Backend,
    count: usize,
    participants: &[&str],
) -> Option<(TestDb, Vec<uuid::Uuid>, Store)> {
    let app = crate::helpers::spawn_app(backend).await?;
    let mut sessions = Vec::new();
    for n in 0..count {
        let (status, body) = app
            .post(
                "/mcp/session/create",
                &serde_json::json!({"name": format!("s{n}"), "participants": participants}),
            )
            .await;
        assert_eq!(status, actix_web::http::StatusCode::CREATED, "{body}");
        sessions.push(body["sessionId"].as_str().unwrap().parse().unwrap());
    }
    let db = app.stop().await;
    let store = Store::open(DbTarget::parse(&db.url).unwrap())
        .await
        .expect("store opens");
    Some((db, sessions, store))
}

/// A send from `from` to `to` (or to everyone) in a session of `everyone`, answering `parent`.
fn send_write(
    session: uuid::Uuid,
    everyone: &[&str],
    (from, to): (&str, Option<&str>),
    parent: Option<collab_hub::domain::message::Parent>,
    body: &str,
    at: chrono::NaiveDateTime,
) -> collab_hub::store::messages::SendWrite {
    use collab_hub::domain::event::Priority;
    use collab_hub::domain::message::{MessageSpec, plan_send};
    let everyone: std::collections::BTreeSet<String> =
        everyone.iter().map(|p| p.to_string()).collect();
    collab_hub::store::messages::SendWrite {
        session_id: session,
        message: plan_send(
            from,
            &everyone,
            MessageSpec {
                to: to.map(String::from),
                priority: Priority::Routine,
                body: serde_json::json!(body),
                reply_to: parent.as_ref().map(|p| p.id),
                requires_ack: false,
                ack_within_secs: None,
            },
            parent,
            at,
        )
        .expect("a valid send"),
        at,
    }
}

/// Two of `sessions` whose writes go to one writer (so they share its batches), and a session
/// id that exists nowhere, on the same writer.
fn two_sessions_on_one_writer(
    store: &Store,
    sessions: &[uuid::Uuid],
) -> (uuid::Uuid, uuid::Uuid, uuid::Uuid) {
    let (a, b) = sessions
        .iter()
        .flat_map(|a| sessions.iter().map(move |b| (*a, *b)))
        .find(|(a, b)| a != b && store.writer_of(*a) == store.writer_of(*b))
        .expect("of 9 sessions two share one of the writers");
    let gone = std::iter::repeat_with(uuid::Uuid::new_v4)
        .find(|g| store.writer_of(*g) == store.writer_of(a))
        .unwrap();
    (a, b, gone)
}

async fn last_event_id(store: &Store, session: uuid::Uuid) -> i64 {
    store
        .read(move |c| last_event_id_in(c, session))
        .await
        .unwrap()
}

/// `(id, from, to, thread)` of the session's messages after `after`, by id.
async fn stored_messages(
    store: &Store,
    session: uuid::Uuid,
    after: i64,
) -> Vec<(i64, String, Option<String>, i64)> {
    use diesel::sql_types::{BigInt, Nullable, Text};
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Text)]
        from_ai: String,
        #[diesel(sql_type = Nullable<Text>)]
        to_ai: Option<String>,
        #[diesel(sql_type = BigInt)]
        thread_id: i64,
    }
    store
        .read(move |c| {
            use diesel::RunQueryDsl;
            let rows: Vec<Row> = diesel::sql_query(
                "SELECT m.id, m.from_ai, m.to_ai, m.thread_id FROM messages m \
                 JOIN events e ON e.session_id = m.session_id AND e.id = m.id \
                 WHERE m.session_id = $1 AND m.id > $2 AND e.kind = 'message_sent' ORDER BY m.id",
            )
            .bind::<Text, _>(session.to_string())
            .bind::<BigInt, _>(after)
            .load(c)?;
            Ok(rows
                .into_iter()
                .map(|r| (r.id, r.from_ai, r.to_ai, r.thread_id))
                .collect())
        })
        .await
        .unwrap()
}

/// `(reader, message)` of the session's unread rows after `after`.
async fn stored_unread(store: &Store, session: uuid::Uuid, after: i64) -> Vec<(String, i64)> {
    use diesel::sql_types::{BigInt, Text};
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        ai_id: String,
        #[diesel(sql_type = BigInt)]
        message_id: i64,
    }
    store
        .read(move |c| {
            use diesel::RunQueryDsl;
            let rows: Vec<Row> = diesel::sql_query(
                "SELECT ai_id, message_id FROM message_unread WHERE session_id = $1 AND message_id > $2",
            )
            .bind::<Text, _>(session.to_string())
            .bind::<BigInt, _>(after)
            .load(c)?;
            Ok(rows.into_iter().map(|r| (r.ai_id, r.message_id)).collect())
        })
        .await
        .unwrap()
}
