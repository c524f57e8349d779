//! How the event log grows: 1,000 appends to one array must cost about the same per event at
//! the end as at the start (each event records the appended element, not the whole array).
//! The figures in BENCHMARKS.md ("Event log size") come from this test:
//! `cargo test --test api event_log_size -- --nocapture`.

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, both_backends, spawn_app};
use crate::mcp_protocol::Mcp;

both_backends!(event_log_grows_with_the_work_done);

const WRITES: usize = 1_000;

async fn event_log_grows_with_the_work_done(backend: Backend) {
    use collab_hub::store::codec::decode_payload;
    use collab_hub::store::schema::{context_snapshots, events};
    use collab_hub::store::{ConnRole, DbTarget};
    use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};

    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, _) = app.create_pair("log size").await;
    let mut mcp = Mcp::new(&app);
    mcp.token = Some(claude.clone());
    mcp.initialize("2025-11-25").await;
    // Three kinds of append, each 1,000 times: a plain append over REST, a discovery (appended
    // to activeWork.recentDiscoveries) and a working-memory push (a list capped at 50).
    for i in 0..WRITES {
        let value = json!({"finding": format!("N+1 query in the user loader, case {i}"),
                           "location": format!("/src/api/users.ts:{i}")});
        let (s, b) = app
            .post_as(
                &claude,
                "/mcp/context/append/activeWork.log",
                &json!({ "value": value }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (err, r) = mcp
            .tool(
                "discovery_report",
                json!({"finding": format!("N+1 query in the user loader, case {i}"),
                       "location": format!("/src/api/users.ts:{i}"), "severity": "low"}),
            )
            .await;
        assert!(!err, "{r}");
        let (s, b) = app
            .post_as(
                &claude,
                "/mcp/context/memory/push",
                &json!({"kind": "symbol", "value": format!("UserLoader::load_{i}")}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    let db = app.stop().await;

    let mut conn = DbTarget::parse(&db.url)
        .unwrap()
        .connect(ConnRole::Reader)
        .unwrap();
    let mut too_big = Vec::new();
    for kind in ["context_changed", "discovery_reported", "memory_pushed"] {
        let payloads: Vec<String> = events::table
            .filter(events::session_id.eq(&id))
            .filter(events::kind.eq(kind))
            .order(events::id.asc())
            .select(events::payload)
            .load(&mut conn)
            .unwrap();
        assert_eq!(payloads.len(), WRITES, "{kind}");
        // Bytes as stored (a payload over 64 KiB is stored zstd-compressed, then base64), and
        // bytes of the JSON the event carries (what a reader decodes, streams and replays).
        let stored: Vec<usize> = payloads.iter().map(String::len).collect();
        let raw: Vec<usize> = payloads
            .iter()
            .map(|p| decode_payload(p).unwrap().to_string().len())
            .collect();
        for (form, sizes) in [("stored", &stored), ("JSON", &raw)] {
            let sum = |r: std::ops::Range<usize>| sizes[r].iter().sum::<usize>();
            let (total, first, last) = (sum(0..WRITES), sum(0..100), sum(WRITES - 100..WRITES));
            println!(
                "event log size ({backend:?}) {kind}, {form}: {WRITES} events, {total} B in all; \
                 event 1: {} B, event {WRITES}: {} B; first 100: {first} B, last 100: {last} B",
                sizes[0],
                sizes[WRITES - 1]
            );
            if last * 2 > first * 3 {
                too_big.push(format!(
                    "{kind} ({form}): the last 100 events take {last} B, the first 100 {first} B"
                ));
            }
        }
    }
    // Not asserted, for the record: every SNAPSHOT_EVERY context changes the whole context is
    // stored as a snapshot, so the snapshots still grow with the square of the work (divided
    // by SNAPSHOT_EVERY; compressed above 64 KiB).
    let snapshots: Vec<Vec<u8>> = context_snapshots::table
        .filter(context_snapshots::session_id.eq(&id))
        .select(context_snapshots::context)
        .load(&mut conn)
        .unwrap();
    println!(
        "event log size ({backend:?}) context snapshots: {} stored, {} B in all",
        snapshots.len(),
        snapshots.iter().map(Vec::len).sum::<usize>()
    );
    // Every figure printed first: the assertion is about all of them.
    assert!(
        too_big.is_empty(),
        "the log grows faster than the work: {too_big:?}"
    );
}
