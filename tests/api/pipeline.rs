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

both_backends!(a_batch_amid_pipelined_writes_commits);

/// A batch plans its events' ids from the session's applied state: the pipelined writes still
/// in flight when it arrives must be in that state first, or the log gives the batch other ids
/// than it planned. Clients send (pipelined) while others post batches (message, context,
/// lock) into the same session: every batch must commit.
async fn a_batch_amid_pipelined_writes_commits(backend: Backend) {
    let Some((app, created)) = busy_session(backend, "/repo/batch").await else {
        return;
    };
    let token = |i: usize| token_of(&created, i);
    let clients = (0..CLIENTS).map(|i| {
        let (app, me) = (&app, token(i));
        async move {
            let mut acknowledged = 0;
            for round in 0..ROUNDS {
                let (status, body) = if i % 4 == 0 {
                    let ops = json!({"operations": [
                        {"op": "message_send", "args": {"to": "c1", "body": format!("batch {i}.{round}")}},
                        {"op": "context_set", "args": {"path": format!("batches.c{i}"), "value": round}},
                        {"op": "lock", "args": {"action": "acquire", "resource": format!("/b/{i}/{round}.rs"), "operation": "edit"}},
                    ]});
                    app.post_as(&me, "/mcp/batch", &ops).await
                } else {
                    let body = json!({"to": "c0", "body": format!("c{i} round {round}")});
                    app.post_as(&me, "/mcp/messages/send", &body).await
                };
                assert_eq!(status, StatusCode::OK, "c{i} round {round}: {body}");
                acknowledged += 1;
            }
            acknowledged
        }
    });
    let acknowledged: usize = futures::future::join_all(clients).await.into_iter().sum();
    assert_eq!(acknowledged, CLIENTS * ROUNDS);
    // Every batch's context write is there, with its last value.
    for i in (0..CLIENTS).step_by(4) {
        let (status, got) = app
            .get_as(&token(i), &format!("/mcp/context/get/batches.c{i}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(got["value"], ROUNDS as i64 - 1, "{got}");
    }
    app.stop().await;
}

both_backends!(concurrent_context_writes_lose_nothing);

/// Context writes are pipelined beside each other when their paths are apart, and wait for the
/// overlapping ones in flight (`domain::context_in_flight`). Eight clients of one session write
/// at once: each its own path, a compare-and-set counter they all increment (retrying on a
/// version conflict), a list they all append to, and working memory. Nothing may be lost or
/// counted twice, versions must rise, and a restarted hub (snapshots taken amid the storm, then
/// the log) must load exactly the context it served.
async fn concurrent_context_writes_lose_nothing(backend: Backend) {
    const ROUNDS: usize = 30;
    let Some((app, created)) = busy_session(backend, "/repo/ctx").await else {
        return;
    };
    let token = |i: usize| token_of(&created, i);
    let clients = (0..CLIENTS).map(|i| {
        let (app, me) = (&app, token(i));
        async move {
            let mut versions = Vec::new();
            let mut conflicts = 0;
            for round in 0..ROUNDS {
                // Keys of its own, four per round, written back to back (pipelined beside
                // the others'): a write lost anywhere (a snapshot that missed one in flight,
                // say) stays lost.
                for k in 0..4 {
                    let own = json!({"path": format!("work.c{i}.r{round}k{k}"), "value": round});
                    let (status, set) = app.post_as(&me, "/mcp/context/set", &own).await;
                    assert_eq!(status, StatusCode::OK, "{set}");
                    versions.push(set["version"].as_i64().unwrap());
                }
                loop {
                    let (status, got) = app.get_as(&me, "/mcp/context/get/counter").await;
                    assert_eq!(status, StatusCode::OK, "{got}");
                    let next = got["value"].as_i64().unwrap_or(0) + 1;
                    let cas = json!({"path": "counter", "value": next, "expectedVersion": got["version"]});
                    let (status, set) = app.post_as(&me, "/mcp/context/set", &cas).await;
                    if status == StatusCode::CONFLICT {
                        assert_eq!(set["error"]["code"], "version_conflict", "{set}");
                        conflicts += 1;
                        continue;
                    }
                    assert_eq!(status, StatusCode::OK, "{set}");
                    break;
                }
                let entry = json!({"value": format!("c{i}.{round}")});
                let (status, appended) = app.post_as(&me, "/mcp/context/append/log", &entry).await;
                assert_eq!(status, StatusCode::OK, "{appended}");
                if round % 5 == 0 {
                    let push = json!({"kind": "symbol", "value": format!("c{i}.sym{round}")});
                    let (status, pushed) = app.post_as(&me, "/mcp/context/memory/push", &push).await;
                    assert_eq!(status, StatusCode::OK, "{pushed}");
                }
            }
            assert!(versions.windows(2).all(|w| w[0] < w[1]), "c{i}: {versions:?}");
            conflicts
        }
    });
    let conflicts: usize = futures::future::join_all(clients).await.into_iter().sum();
    let me = token(0);
    let (_, counter) = app.get_as(&me, "/mcp/context/get/counter").await;
    assert_eq!(
        counter["value"],
        (CLIENTS * ROUNDS) as i64,
        "increments lost or doubled ({conflicts} conflicts retried): {counter}"
    );
    let (_, log) = app.get_as(&me, "/mcp/context/get/log").await;
    let entries: BTreeSet<&str> = log["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(entries.len(), CLIENTS * ROUNDS, "{log}");
    assert_eq!(log["value"].as_array().unwrap().len(), CLIENTS * ROUNDS);
    for i in 0..CLIENTS {
        let (_, own) = app
            .get_as(&me, &format!("/mcp/context/get/work.c{i}"))
            .await;
        let own = own["value"].as_object().unwrap();
        assert_eq!(own.len(), 4 * ROUNDS, "c{i}: {own:?}");
    }
    let (status, served) = app.get_as(&me, "/mcp/context/get").await;
    assert_eq!(status, StatusCode::OK, "{served}");
    let mut versions = Vec::new();
    for path in [
        "counter",
        "log",
        "work.c3.r7k2",
        "workingMemory.recentSymbols",
    ] {
        let (_, got) = app.get_as(&me, &format!("/mcp/context/get/{path}")).await;
        versions.push(got);
    }

    // Every context snapshot taken amid the storm stands exactly at its event: the log
    // replayed to that event gives it, versions included.
    let db = app.stop().await;
    let session: uuid::Uuid = created["sessionId"].as_str().unwrap().parse().unwrap();
    let snapshots = snapshots_against_the_log(&db.url, session).await;
    assert!(snapshots >= 5, "only {snapshots} snapshots were taken");

    // What a restart loads (the newest snapshot, then the log) is what was served: the
    // document, and the versions.
    let app = start_on(db, crate::helpers::without_send_limit()).await;
    let (status, loaded) = app.get_as(&me, "/mcp/context/get").await;
    assert_eq!(status, StatusCode::OK, "{loaded}");
    assert!(loaded == served, "the context differs after the restart");
    for (path, before) in [
        "counter",
        "log",
        "work.c3.r7k2",
        "workingMemory.recentSymbols",
    ]
    .iter()
    .zip(versions)
    {
        let (_, after) = app.get_as(&me, &format!("/mcp/context/get/{path}")).await;
        assert_eq!(after, before, "{path}");
    }
    app.stop().await;
}

both_backends!(a_save_amid_pipelined_writes_stands_at_its_event);

/// A session save waits for the writes in flight (`after_in_flight`): what it reads from the
/// database (messages, unread counts, locks) and what it takes from memory (the context, the
/// event it stands at) must tell of the same moment. Clients send and write the context
/// (pipelined) while one saves, again and again: no saved message or context version may come
/// after the event the snapshot says it stands at.
async fn a_save_amid_pipelined_writes_stands_at_its_event(backend: Backend) {
    const SAVES: usize = 12;
    let Some((app, created)) = busy_session(backend, "/repo/save").await else {
        return;
    };
    let session = created["sessionId"].as_str().unwrap().to_owned();
    let saving = std::cell::Cell::new(true);
    let writers = (1..CLIENTS).map(|i| {
        let (app, me, saving) = (&app, token_of(&created, i), &saving);
        async move {
            let mut n = 0;
            while saving.get() {
                let body = json!({"to": "c0", "body": format!("c{i} {n}")});
                let (status, sent) = app.post_as(&me, "/mcp/messages/send", &body).await;
                assert_eq!(status, StatusCode::OK, "{sent}");
                let own = json!({"path": format!("w.c{i}.n{n}"), "value": n});
                let (status, set) = app.post_as(&me, "/mcp/context/set", &own).await;
                assert_eq!(status, StatusCode::OK, "{set}");
                n += 1;
            }
        }
    });
    let saver = async {
        let me = token_of(&created, 0);
        let mut checked = 0;
        for _ in 0..SAVES {
            actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
            let (status, saved) = app.post_as(&me, "/mcp/session/save", &json!({})).await;
            assert_eq!(status, StatusCode::OK, "{saved}");
            let state = crate::snapshots::latest(&app.db.url, &session).expect("a snapshot");
            let at = state["eventId"].as_i64().unwrap();
            let messages = state["messages"].as_array().expect("messages are saved");
            let newest = messages.iter().filter_map(|m| m["id"].as_i64()).max();
            assert!(
                newest.is_none_or(|id| id <= at),
                "the snapshot at event {at} holds message {newest:?}"
            );
            let versions = state["context"]["versions"].as_object().unwrap();
            let newest = versions.values().filter_map(Value::as_i64).max();
            assert!(
                newest.is_none_or(|v| v <= at),
                "the snapshot at event {at} holds context version {newest:?}"
            );
            checked += usize::from(!messages.is_empty());
        }
        saving.set(false);
        checked
    };
    let (checked, _) = futures::join!(saver, futures::future::join_all(writers));
    assert!(checked >= SAVES / 2, "only {checked} saves held messages");
    app.stop().await;
}

/// Checks each stored context snapshot of `session` against the log replayed to its event;
/// how many there are.
async fn snapshots_against_the_log(url: &str, session: uuid::Uuid) -> usize {
    use collab_hub::domain::context::Context;
    use collab_hub::domain::context_log::changes_from_json;
    use collab_hub::domain::session::CONTEXT_KINDS;
    use collab_hub::store::codec::decode_snapshot;
    use collab_hub::store::queries::{EventFilter, events_after};
    use collab_hub::store::schema::context_snapshots::dsl as cs;
    use collab_hub::store::{DbTarget, Store};
    use diesel::prelude::*;
    let store = Store::open(DbTarget::parse(url).unwrap())
        .await
        .expect("store opens");
    let (snapshots, events) = store
        .read(move |c| {
            let snapshots: Vec<(i64, String, Vec<u8>)> = cs::context_snapshots
                .filter(cs::session_id.eq(session.to_string()))
                .order(cs::event_id.asc())
                .select((cs::event_id, cs::encoding, cs::context))
                .load(c)?;
            let kinds = EventFilter {
                viewer: None,
                kinds: Some(&CONTEXT_KINDS),
                critical_only: false,
            };
            Ok((snapshots, events_after(c, session, kinds, 0, 1_000_000)?))
        })
        .await
        .unwrap();
    let mut replayed = Context::default();
    let mut events = events.into_iter().peekable();
    for (at, encoding, bytes) in &snapshots {
        while let Some(e) = events.next_if(|e| e.id <= *at) {
            for change in changes_from_json(&e.payload["changes"]).unwrap() {
                replayed.apply(&change, e.id);
            }
        }
        let stored = Context::from_snapshot(&decode_snapshot(encoding, bytes).unwrap()).unwrap();
        assert!(
            stored.to_snapshot() == replayed.to_snapshot(),
            "the snapshot at event {at} is not the log replayed to it"
        );
    }
    store.shutdown().await;
    snapshots.len()
}

/// A session of `CLIENTS` participants `c0`… in `project`: its creation's answer.
/// A hub without a send limit on a fresh database, and a session of `CLIENTS` clients in
/// `project` (None: the backend is not available).
async fn busy_session(backend: Backend, project: &str) -> Option<(TestApp, Value)> {
    let db = TestDb::fresh(backend)?;
    let app = start_on(db, crate::helpers::without_send_limit()).await;
    let created = session_of_clients(&app, project).await;
    Some((app, created))
}

async fn session_of_clients(app: &TestApp, project: &str) -> Value {
    let names: Vec<String> = (0..CLIENTS).map(|i| format!("c{i}")).collect();
    let (status, created) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "busy", "participants": names, "project": project}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

/// Client `i`'s token in a session of `session_of_clients`.
fn token_of(created: &Value, i: usize) -> String {
    created["tokens"][format!("c{i}")]
        .as_str()
        .unwrap()
        .to_owned()
}
