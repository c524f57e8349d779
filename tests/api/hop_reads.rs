//! What a request passed on to the hub serving its project costs the hub it reached first
//! (stop 40): neither the lease row (where the project is served: remembered for a moment,
//! `store::lease::SeenElsewhere`) nor its MCP session's row (a bound copy found elsewhere goes
//! on unread, `mcp::registry`) is read for each request. Measured by the hub's count of its
//! lease keeper's lookups (`/metrics`), and by PostgreSQL's own count of the scans of
//! `mcp_sessions`, which the hubs' connections report when idle (the lease rows are scanned
//! by every keeper's heartbeat, too often to tell anything from).
//!
//! And what is remembered is only a route: once the hub it named stops, the next request is
//! served where the project went; and an MCP session that left its collab session on the hub
//! serving it, and joins one of a project served here, is read again and served here.

use std::time::Duration;

use diesel::{Connection, RunQueryDsl};
use serde_json::json;

use crate::helpers::{Backend, TestDb, both_backends, client};
use crate::mcp_protocol::Mcp;
use crate::multi_hub::{hubs_with_a_session, stop_gracefully};

both_backends!(
    passed_on_mcp_requests_read_no_row_each,
    an_mcp_session_that_left_elsewhere_joins_here,
);

/// Requests in the measured run.
const REQUESTS: i64 = 60;

/// Longer than a PostgreSQL backend keeps its counters before it reports them while idle (ten
/// seconds at most, since PostgreSQL 15; the control below fails if they were not reported).
const REPORTED_WITHIN: Duration = Duration::from_secs(11);

#[derive(diesel::QueryableByName)]
struct Scans {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Scans (index and sequential) of `mcp_sessions` so far, as reported; and the lookups of
/// where projects are served by the lease keeper of the hub at `url`.
async fn reads(db: &TestDb, url: &str) -> (i64, i64) {
    let mut c = diesel::PgConnection::establish(&db.url).expect("connect");
    let s: Scans = diesel::sql_query(
        "SELECT COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0) AS n FROM pg_stat_user_tables \
           WHERE relname = 'mcp_sessions'",
    )
    .get_result(&mut c)
    .expect("table statistics");
    let mut res = client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics");
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    let looks = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("collab_hub_lease_lookups_total ")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no lookups counted in {text}"));
    (s.n, looks)
}

async fn passed_on_mcp_requests_read_no_row_each(backend: Backend) {
    let Some((db, mut hubs, _session, token)) = hubs_with_a_session(backend, 2).await else {
        return;
    };
    // The session's project is served by hub 0; the agent talks to hub 1.
    let start = reads(&db, &hubs.urls[1]).await;
    let mut agent = Mcp::at(&hubs.urls[1]);
    agent.token = Some(token);
    agent.initialize("2025-11-25").await;
    let (failed, out) = agent.tool("whoami", json!({})).await;
    assert!(!failed, "{out}");
    actix_web::rt::time::sleep(REPORTED_WITHIN).await;
    let settled = reads(&db, &hubs.urls[1]).await;
    // The control: the first request reads both (the copy is checked against its row and
    // placed, the keeper looks up the project), and the counters show it.
    assert!(
        settled.0 > start.0 && settled.1 > start.1,
        "the first passed-on request's reads are counted: {start:?} -> {settled:?}"
    );
    let began = std::time::Instant::now();
    for i in 0..REQUESTS {
        let (failed, out) = agent.tool("whoami", json!({})).await;
        assert!(!failed, "request {i}: {out}");
    }
    let took = began.elapsed();
    actix_web::rt::time::sleep(REPORTED_WITHIN).await;
    let after = reads(&db, &hubs.urls[1]).await;
    let (mcp, looks) = (after.0 - settled.0, after.1 - settled.1);
    eprintln!(
        "hop_reads: {REQUESTS} passed-on requests in {took:?}: {mcp} scans of mcp_sessions, \
         {looks} lease lookups"
    );
    // Hub 0 reads nothing either (it serves a bound copy from memory); what remains is one
    // lookup every `SEEN_FOR` (0.5 s), and perhaps a registry's minute sweep marking rows seen
    // (measured: 0 reads).
    let most = (took.as_millis() as i64 / 500) + 1;
    assert!(
        mcp <= 2,
        "{mcp} reads of MCP rows for {REQUESTS} passed-on requests"
    );
    assert!(
        looks <= most,
        "{looks} lease lookups for {REQUESTS} passed-on requests in {took:?}"
    );

    // A route only: hub 0 stops and hands its leases back; the next request through hub 1 is
    // served where the project went (hub 1 takes it).
    stop_gracefully(hubs.take(0));
    let (failed, out) = agent.tool("whoami", json!({})).await;
    assert!(!failed, "served where the project went: {out}");
    assert_eq!(out["aiId"], json!("a"), "{out}");
}

/// An MCP session on hub 1 bound to a session hub 0 serves leaves it (passed on: hub 0 unbinds
/// the row) and joins a session of a project hub 1 serves. Hub 1's copy still names the old
/// binding: the join goes to hub 0, which does not serve the new project (`NOT_SERVED`), and
/// is run again at hub 1 with the copy read from its row (`http::hop::RunAgain`). Without that
/// it bounced between the hubs for the whole patience (here 610 s; the client gives up at 30).
async fn an_mcp_session_that_left_elsewhere_joins_here(backend: Backend) {
    let Some((_db, hubs, first, _token)) = hubs_with_a_session(backend, 2).await else {
        return;
    };
    let second = crate::helpers::create_session_at(
        &hubs.urls[1],
        &json!({"name": "elsewhere", "project": "p2", "participants": ["c", "d"]}),
    )
    .await;
    let second = second["sessionId"].as_str().unwrap().to_owned();
    let mut agent = Mcp::at(&hubs.urls[1]);
    agent.initialize("2025-11-25").await;
    let (failed, out) = agent
        .tool(
            "session_join",
            json!({"sessionId": first, "participant": "codex"}),
        )
        .await;
    assert!(!failed, "joined through hub 1, served by hub 0: {out}");
    for _ in 0..3 {
        let (failed, out) = agent.tool("whoami", json!({})).await;
        assert!(!failed, "{out}");
        assert_eq!(out["sessionId"], json!(first), "{out}");
    }
    let (failed, out) = agent.tool("session_leave", json!({})).await;
    assert!(!failed, "left, at hub 0: {out}");
    let since = std::time::Instant::now();
    let (failed, out) = agent
        .tool(
            "session_join",
            json!({"sessionId": second, "participant": "codex"}),
        )
        .await;
    assert!(!failed, "joined a session of a project hub 1 serves: {out}");
    assert!(
        since.elapsed() < Duration::from_secs(5),
        "the join took {:?}",
        since.elapsed()
    );
    let (failed, out) = agent.tool("whoami", json!({})).await;
    assert!(!failed, "{out}");
    assert_eq!(out["sessionId"], json!(second), "{out}");
    assert_eq!(out["aiId"], json!("codex"), "{out}");
}
