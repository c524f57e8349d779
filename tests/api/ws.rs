//! The WebSocket transport (`GET /ws`, docs/websocket.md) from a real client: subscriptions with
//! replay and resume, acks, `call` through the same operations, interrupts ahead of routine
//! events, a client that stops reading, heartbeats, presence, bad and oversized frames.

use std::collections::VecDeque;
use std::time::Duration;

use actix_web::http::StatusCode;
use awc::ws::{CloseCode, Frame, Message};
use collab_hub::Settings;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, both_backends, metric, spawn_app, start_on};

both_backends!(
    subscribe_replays_then_follows_live_and_resumes_without_gaps,
    call_runs_the_same_operations_with_the_same_errors,
    bad_frames_get_an_error_and_the_connection_stays_usable,
    oversized_frames_close_the_connection,
    critical_events_jump_ahead_of_queued_routine_ones,
    a_client_that_stops_reading_gets_resync_and_costs_nothing,
    silent_peers_are_closed_and_presence_follows,
    who_may_connect_beyond_loopback_and_from_which_pages,
    a_project_subscription_follows_the_projects_sessions,
    viewers_calls_are_paced_and_participants_calls_are_not,
    a_viewer_reads_every_receipt_and_marks_nothing,
    a_frame_posted_runs_as_on_the_socket,
);

type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// A WebSocket client that answers pings while it reads, and keeps frames it was not waiting
/// for.
pub struct Ws {
    socket: Socket,
    kept: VecDeque<Value>,
    next_id: u64,
    /// Set once the server closed: its close code.
    pub closed: Option<Option<CloseCode>>,
}

impl Ws {
    pub async fn connect(app: &TestApp, token: Option<&str>) -> Ws {
        Ws::try_connect(app, token, None)
            .await
            .unwrap_or_else(|s| panic!("websocket upgrade refused: {s}"))
    }

    /// The upgrade, or the status it was refused with.
    pub async fn try_connect(
        app: &TestApp,
        token: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Ws, StatusCode> {
        let url = format!("{}/ws", app.address.replacen("http", "ws", 1));
        let mut req = crate::helpers::client()
            .ws(url)
            .max_frame_size(64 * 1024 * 1024);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(o) = origin {
            req = req.origin(o);
        }
        match req.connect().await {
            Ok((res, socket)) => {
                assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
                Ok(Ws {
                    socket,
                    kept: VecDeque::new(),
                    next_id: 1,
                    closed: None,
                })
            }
            Err(awc::error::WsClientError::InvalidResponseStatus(s)) => Err(s),
            Err(e) => panic!("websocket upgrade: {e}"),
        }
    }

    pub async fn send(&mut self, frame: Value) {
        self.socket
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("frame sent");
    }

    /// The next JSON frame from the server, within `wait`.
    async fn read(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next()).await;
            match next {
                Err(_) => return None,
                Ok(None) => {
                    self.closed.get_or_insert(None);
                    return None;
                }
                Ok(Some(Err(e))) => panic!("websocket error: {e}"),
                Ok(Some(Ok(frame))) => match frame {
                    Frame::Text(bytes) => {
                        return Some(serde_json::from_slice(&bytes).expect("JSON frame"));
                    }
                    Frame::Ping(p) => {
                        let _ = self.socket.send(Message::Pong(p)).await;
                    }
                    Frame::Close(reason) => {
                        self.closed = Some(reason.map(|r| r.code));
                        return None;
                    }
                    _ => {}
                },
            }
        }
    }

    /// The next frame, kept ones first.
    pub async fn next(&mut self, wait: Duration) -> Option<Value> {
        match self.kept.pop_front() {
            Some(v) => Some(v),
            None => self.read(wait).await,
        }
    }

    /// Sends `frame` with a fresh id and waits for its reply (other frames are kept).
    pub async fn request(&mut self, mut frame: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        frame["id"] = json!(id);
        self.send(frame).await;
        loop {
            let f = self
                .read(Duration::from_secs(20))
                .await
                .unwrap_or_else(|| panic!("no reply to frame {id}"));
            if f["type"] == "reply" && f["id"] == id {
                return f;
            }
            self.kept.push_back(f);
        }
    }

    /// A request that must succeed: its `ok`.
    pub async fn ok(&mut self, frame: Value) -> Value {
        let r = self.request(frame.clone()).await;
        assert!(r.get("ok").is_some(), "{frame} failed: {r}");
        r["ok"].clone()
    }

    /// A `call` that must succeed.
    pub async fn call(&mut self, operation: &str, arguments: Value) -> Value {
        self.ok(json!({"type": "call", "operation": operation, "arguments": arguments}))
            .await
    }

    /// Event frames (and interrupts) until one satisfies `stop` (included), within `wait`.
    pub async fn events_until(
        &mut self,
        wait: Duration,
        stop: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(f) = self.next(left).await else {
                panic!("timed out; got {out:?}");
            };
            if f["type"] == "event" || f["type"] == "interrupt" || f["type"] == "resync" {
                let done = stop(&f);
                out.push(f);
                if done {
                    return out;
                }
            }
        }
    }
}

async fn send_message(app: &TestApp, token: &str, content: &str, priority: &str) -> i64 {
    let (status, body) = app
        .post_as(
            token,
            "/mcp/messages/send",
            &json!({"body": content, "priority": priority}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["id"].as_i64().expect("message id")
}

fn ids(events: &[Value]) -> Vec<i64> {
    events.iter().filter_map(|e| e["id"].as_i64()).collect()
}

async fn subscribe_replays_then_follows_live_and_resumes_without_gaps(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (session, claude, gemini) = app.create_pair("ws").await;
    send_message(&app, &claude, "before anyone watched", "routine").await;

    // A viewer (no token, loopback) replays the whole log, then follows live.
    let mut viewer = Ws::connect(&app, None).await;
    let sub = viewer
        .ok(json!({"type": "subscribe", "sessionId": session, "since": 0}))
        .await;
    let last = sub["sessions"][0]["lastEventId"].as_i64().unwrap();
    assert!(last >= 2, "{sub}");
    let replayed = viewer
        .events_until(Duration::from_secs(10), |e| e["id"] == last)
        .await;
    assert_eq!(
        ids(&replayed),
        (1..=last).collect::<Vec<_>>(),
        "in log order, none missing"
    );
    assert!(replayed.iter().all(|e| e["subscription"] == sub["subscription"]
        && e["sessionId"] == session.as_str()));
    send_message(&app, &gemini, "live one", "important").await;
    let live = viewer
        .events_until(Duration::from_secs(10), |e| e["kind"] == "message_sent")
        .await;
    assert_eq!(
        live.last().unwrap()["payload"]["body"],
        "live one",
        "{live:?}"
    );

    // A participant subscribes from its acknowledged cursor (0) and sees its own view.
    let mut g = Ws::connect(&app, Some(&gemini)).await;
    let sub = g.ok(json!({"type": "subscribe"})).await;
    assert_eq!(sub["sessions"][0]["sessionId"], session.as_str());
    let seen = g
        .events_until(Duration::from_secs(10), |e| {
            e["payload"]["body"] == "live one"
        })
        .await;
    let mine = ids(&seen);
    assert!(mine.windows(2).all(|w| w[0] < w[1]), "{mine:?}");
    let acked = g
        .ok(json!({"type": "ack", "upTo": mine.last().unwrap()}))
        .await;
    assert_eq!(acked["ackedEventId"], *mine.last().unwrap());
    // An ack beyond the log is refused; nothing moves.
    let bad = g.request(json!({"type": "ack", "upTo": 1_000_000})).await;
    assert!(bad.get("error").is_some(), "{bad}");

    // Reconnect with `since`: exactly what happened while away, once each.
    let cursor = *ids(&live).last().unwrap();
    drop(viewer);
    for i in 0..3 {
        send_message(&app, &claude, &format!("while away {i}"), "routine").await;
    }
    let mut viewer = Ws::connect(&app, None).await;
    viewer
        .ok(json!({"type": "subscribe", "sessionId": session, "since": cursor}))
        .await;
    let missed = viewer
        .events_until(Duration::from_secs(10), |e| {
            e["payload"]["body"] == "while away 2"
        })
        .await;
    let got = ids(&missed);
    assert_eq!(got.first(), Some(&(cursor + 1)), "{got:?}");
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap, no repeat: {got:?}"
    );
    send_message(&app, &claude, "after the catch-up", "routine").await;
    let next = viewer
        .events_until(Duration::from_secs(10), |e| e["kind"] == "message_sent")
        .await;
    assert_eq!(next[0]["id"], got.last().unwrap() + 1, "{next:?}");

    // A second subscription with a filter: only what passes.
    let filtered = viewer
        .ok(json!({"type": "subscribe", "sessionId": session, "since": 0, "kinds": ["message_sent"], "minPriority": "important"}))
        .await;
    let name = filtered["subscription"].clone();
    let only = viewer
        .events_until(Duration::from_secs(10), |e| {
            e["subscription"] == name && e["payload"]["body"] == "live one"
        })
        .await;
    let from_filtered: Vec<&Value> = only.iter().filter(|e| e["subscription"] == name).collect();
    assert_eq!(from_filtered.len(), 1, "{only:?}");
    assert!(
        viewer
            .ok(json!({"type": "unsubscribe", "subscription": name}))
            .await
            .is_object()
    );
    let gone = viewer
        .request(json!({"type": "unsubscribe", "subscription": name}))
        .await;
    assert_eq!(gone["error"]["code"], "subscription_not_found", "{gone}");
    app.stop().await;
}

async fn call_runs_the_same_operations_with_the_same_errors(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (session, claude, gemini) = app.create_pair("ws-call").await;
    let mut ws = Ws::connect(&app, None).await;
    // A viewer reads, but may not act for anyone.
    let ctx = ws.call("context_get", json!({"sessionId": session})).await;
    assert!(ctx.is_object(), "{ctx}");
    let refused = ws
        .request(json!({"type": "call", "operation": "message_send", "arguments": {"sessionId": session, "body": "hi"}}))
        .await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    // The read actions of grouped tools are reads; their writes are not.
    let tasks = ws
        .call("task", json!({"sessionId": session, "action": "list"}))
        .await;
    assert!(tasks["tasks"].is_array(), "{tasks}");
    let locks = ws
        .call("lock", json!({"sessionId": session, "action": "list"}))
        .await;
    assert!(locks.is_object() || locks.is_array(), "{locks}");
    let refused = ws
        .request(json!({"type": "call", "operation": "task", "arguments": {"sessionId": session, "action": "create", "description": "x"}}))
        .await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    // The session as REST shows it: who drives, the handshake.
    let view = ws.call("session_get", json!({"sessionId": session})).await;
    assert_eq!(view["driver"], "claude", "{view}");
    // A bad token changes nothing; a good one makes the connection that participant.
    let bad = ws
        .request(json!({"type": "auth", "token": "chp_nope"}))
        .await;
    assert_eq!(bad["error"]["code"], "unauthorized", "{bad}");
    let me = ws.ok(json!({"type": "auth", "token": claude})).await;
    assert_eq!(me["aiId"], "claude");
    assert_eq!(me["sessionId"], session.as_str());
    let sent = ws
        .call(
            "message_send",
            json!({"to": "gemini", "body": "over the socket", "priority": "important"}),
        )
        .await;
    assert!(sent["id"].is_number(), "{sent}");
    let (_, inbox) = app.get_as(&gemini, "/mcp/messages").await;
    assert!(
        inbox.to_string().contains("over the socket"),
        "REST sees what the socket sent: {inbox}"
    );
    // The same bad argument gets the same answer as over REST.
    let over_ws = ws
        .request(json!({"type": "call", "operation": "message_send", "arguments": {"body": "x", "priority": "urgent-ish"}}))
        .await;
    let (status, over_rest) = app
        .post_as(
            &claude,
            "/mcp/messages/send",
            &json!({"body": "x", "priority": "urgent-ish"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        over_ws["error"], over_rest["error"],
        "{over_ws} vs {over_rest}"
    );
    let unknown = ws
        .request(json!({"type": "call", "operation": "teleport", "arguments": {}}))
        .await;
    assert_eq!(unknown["error"]["field"], "operation", "{unknown}");
    // Tools that belong to MCP point to this protocol's own frames.
    let poll = ws
        .request(json!({"type": "call", "operation": "events_poll", "arguments": {}}))
        .await;
    assert!(
        poll["error"]["message"]
            .as_str()
            .unwrap()
            .contains("subscribe"),
        "{poll}"
    );
    let who = ws.call("whoami", json!({})).await;
    assert_eq!(who["aiId"], "claude", "{who}");
    // A person takes a seat from a viewer connection: join, then auth with the token.
    let mut person = Ws::connect(&app, None).await;
    let joined = person
        .call(
            "session_join",
            json!({"sessionId": session, "participant": "human:ada", "role": "navigator"}),
        )
        .await;
    let token = joined["token"]
        .as_str()
        .expect("join answers with a token")
        .to_owned();
    let me = person.ok(json!({"type": "auth", "token": token})).await;
    assert_eq!(me["aiId"], "human:ada");
    assert_eq!(me["role"], "navigator");
    app.stop().await;
}

async fn bad_frames_get_an_error_and_the_connection_stays_usable(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut ws = Ws::connect(&app, None).await;
    ws.socket
        .send(Message::Text("not json".into()))
        .await
        .unwrap();
    let e = ws.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(e["type"], "error");
    assert_eq!(e["error"]["code"], "invalid_json", "{e}");
    ws.send(json!({"type": "teleport", "id": 9})).await;
    let e = ws.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (e["type"].clone(), e["id"].clone()),
        (json!("reply"), json!(9)),
        "{e}"
    );
    assert!(
        e["error"]["message"].as_str().unwrap().contains("teleport"),
        "{e}"
    );
    ws.send(json!({"type": "subscribe", "id": 10, "sessionId": "not-a-uuid"}))
        .await;
    let e = ws.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(e["error"]["field"], "sessionId", "{e}");
    ws.socket
        .send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    let e = ws.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(e["type"], "error", "{e}");
    // A viewer must name the session it watches.
    let e = ws.request(json!({"type": "subscribe"})).await;
    assert_eq!(e["error"]["field"], "sessionId", "{e}");
    let e = ws
        .request(json!({"type": "subscribe", "sessionId": uuid::Uuid::new_v4()}))
        .await;
    assert_eq!(e["error"]["code"], "session_not_found", "{e}");
    // A flood of commands: each gets one reply; beyond what may run at once, `rate_limited`.
    for id in 100..200 {
        ws.send(json!({"type": "call", "id": id, "operation": "session_list", "arguments": {}}))
            .await;
    }
    let mut replies = std::collections::BTreeMap::new();
    while replies.len() < 100 {
        let f = ws
            .next(Duration::from_secs(10))
            .await
            .expect("a reply each");
        let id = f["id"].as_i64().unwrap();
        assert!(replies.insert(id, f).is_none(), "two replies to {id}");
    }
    let limited = replies
        .values()
        .filter(|f| f.get("error").is_some())
        .inspect(|f| assert_eq!(f["error"]["code"], "rate_limited", "{f}"))
        .count();
    assert!(limited > 0 && limited <= 100 - 32, "{limited} refused");
    // Still usable.
    assert_eq!(ws.ok(json!({"type": "ping"})).await, json!({}));
    app.stop().await;
}

async fn oversized_frames_close_the_connection(backend: Backend) {
    let Some(db) = crate::helpers::TestDb::fresh(backend) else {
        return;
    };
    let mut settings = Settings::for_database("unused");
    settings.max_body_bytes = 8 * 1024;
    let app = start_on(db, settings).await;
    let mut ws = Ws::connect(&app, None).await;
    assert_eq!(ws.ok(json!({"type": "ping"})).await, json!({}));
    let big = json!({"type": "ping", "id": 1, "pad": "x".repeat(20 * 1024)});
    ws.send(big).await;
    assert!(ws.next(Duration::from_secs(5)).await.is_none());
    assert_eq!(ws.closed, Some(Some(CloseCode::Size)));
    app.stop().await;
}

/// Writes `n` context values of `bytes` each (one routine event apiece).
async fn bulky_events(app: &TestApp, token: &str, n: usize, bytes: usize) {
    let value = "x".repeat(bytes);
    for i in 0..n {
        let (status, body) = app
            .post_as(
                token,
                "/mcp/context/set",
                &json!({"path": format!("bulk.k{}", i % 4), "value": value}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// Writes bulky routine events until `until` holds of the metrics (checked after each), at
/// most `cap`; returns how many it wrote.
async fn bulk_until(
    app: &TestApp,
    token: &str,
    cap: usize,
    until: impl AsyncFn(&TestApp) -> bool,
) -> usize {
    for n in 1..=cap {
        bulky_events(app, token, 1, BULK_BYTES).await;
        if until(app).await {
            return n;
        }
    }
    panic!("the condition never held after {cap} events");
}

/// A hub whose heartbeat does not close a client that pauses reading on purpose.
async fn patient_app(backend: Backend) -> Option<TestApp> {
    let db = crate::helpers::TestDb::fresh(backend)?;
    let mut settings = Settings::for_database("unused");
    settings.ws_heartbeat_secs = 600;
    Some(start_on(db, settings).await)
}

/// The size of a bulky event's value.
const BULK_BYTES: usize = 16 * 1024;

async fn critical_events_jump_ahead_of_queued_routine_ones(backend: Backend) {
    let Some(app) = patient_app(backend).await else {
        return;
    };
    let (session, claude, _gemini) = app.create_pair("ws-interrupt").await;
    let mut viewer = Ws::connect(&app, None).await;
    viewer
        .ok(json!({"type": "subscribe", "sessionId": session}))
        .await;
    // The viewer stops reading while routine events pile up (the socket's buffers fill, then
    // the hub's queue holds some), then one critical message is sent.
    // Until the hub's own queue for it holds a few.
    let written = bulk_until(&app, &claude, 3000, async |app: &TestApp| {
        metric(app, "collab_hub_ws_queued_bytes").await >= 4 * BULK_BYTES as i64
    })
    .await;
    assert_eq!(
        metric(&app, "collab_hub_ws_resyncs_total").await,
        0,
        "after {written}"
    );
    send_message(&app, &claude, "stop the build", "critical").await;
    // Queued as an interrupt while the viewer still does not read (the subscription's task
    // forwards it after the send has answered).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(&app, "collab_hub_ws_interrupts_total").await < 1 {
        assert!(std::time::Instant::now() < deadline, "no interrupt queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric(&app, "collab_hub_ws_interrupts_total").await, 1);
    let frames = viewer
        .events_until(Duration::from_secs(30), |e| e["type"] == "interrupt")
        .await;
    let interrupt = frames.last().unwrap().clone();
    assert_eq!(
        interrupt["payload"]["body"], "stop the build",
        "{interrupt}"
    );
    assert_eq!(interrupt["priority"], "critical");
    assert!(
        frames.iter().all(|e| e["type"] != "resync"),
        "no resync expected"
    );
    // What follows in the socket is older and routine: the interrupt overtook it.
    let mut rest = Vec::new();
    while let Some(f) = viewer.next(Duration::from_secs(1)).await {
        rest.push(f);
    }
    assert!(
        !rest.is_empty(),
        "the interrupt overtook nothing ({} came first)",
        frames.len() - 1
    );
    assert!(
        rest.iter()
            .all(|e| e["type"] == "event" && e["id"].as_i64() < interrupt["id"].as_i64()),
        "{:?}",
        rest.iter()
            .map(|e| (e["type"].clone(), e["id"].clone()))
            .collect::<Vec<_>>()
    );
    // In order, and the interrupt is not sent again.
    let mut all = ids(&frames[..frames.len() - 1]);
    all.extend(ids(&rest));
    assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "{all:?}");
    app.stop().await;
}

async fn a_client_that_stops_reading_gets_resync_and_costs_nothing(backend: Backend) {
    let Some(app) = patient_app(backend).await else {
        return;
    };
    let (session, claude, _) = app.create_pair("ws-slow").await;
    let mut slow = Ws::connect(&app, None).await;
    let sub = slow
        .ok(json!({"type": "subscribe", "sessionId": session}))
        .await;
    let name = sub["subscription"].clone();
    // Until it falls behind: the socket's buffers fill, then the hub's queue, then `resync`.
    let written = bulk_until(&app, &claude, 5000, async |app: &TestApp| {
        metric(app, "collab_hub_ws_resyncs_total").await >= 1
    })
    .await;
    // Then much more: none of it is queued for the sleeping client.
    let queued = metric(&app, "collab_hub_ws_queued_bytes").await;
    bulky_events(&app, &claude, 200, BULK_BYTES).await;
    let after = metric(&app, "collab_hub_ws_queued_bytes").await;
    let bound = (collab_hub::ws::OUTBOUND_BYTES + 2 * BULK_BYTES) as i64;
    assert!(
        queued <= bound && after <= queued,
        "queued {queued} then {after} bytes (bound {bound}) after {written} events"
    );
    // It wakes: what was queued, then `resync` telling it where to read from.
    let frames = slow
        .events_until(Duration::from_secs(60), |e| e["type"] == "resync")
        .await;
    let resync = frames.last().unwrap();
    assert_eq!(resync["subscription"], name);
    let from = resync["from"].as_i64().unwrap();
    let got = ids(&frames[..frames.len() - 1]);
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
    assert_eq!(
        got.last().copied().unwrap_or(from - 1),
        from - 1,
        "resync starts right after"
    );
    // That subscription sends nothing more.
    send_message(&app, &claude, "after the resync", "routine").await;
    let more = slow.next(Duration::from_millis(800)).await;
    assert!(more.is_none(), "{more:?}");
    // Catching up from the log: everything from `from`, once.
    slow.ok(json!({"type": "subscribe", "sessionId": session, "since": from - 1}))
        .await;
    let caught = slow
        .events_until(Duration::from_secs(60), |e| {
            e["payload"]["body"] == "after the resync"
        })
        .await;
    let caught = ids(&caught);
    assert_eq!(caught.first(), Some(&from));
    assert!(caught.windows(2).all(|w| w[1] == w[0] + 1));
    app.stop().await;
}

async fn silent_peers_are_closed_and_presence_follows(backend: Backend) {
    let Some(db) = crate::helpers::TestDb::fresh(backend) else {
        return;
    };
    let mut settings = Settings::for_database("unused");
    settings.ws_heartbeat_secs = 1;
    let app = start_on(db, settings).await;
    let (session, _claude, gemini) = app.create_pair("ws-presence").await;
    let mut viewer = Ws::connect(&app, None).await;
    viewer
        .ok(json!({"type": "subscribe", "sessionId": session, "kinds": ["presence_changed"]}))
        .await;
    // Connected while it listens: a subscription opens its live stream.
    let mut g = Ws::connect(&app, Some(&gemini)).await;
    g.ok(json!({"type": "subscribe"})).await;
    let connected = viewer
        .events_until(Duration::from_secs(10), |e| e["kind"] == "presence_changed")
        .await;
    let p = &connected.last().unwrap()["payload"];
    assert_eq!(
        (p["aiId"].clone(), p["state"].clone()),
        (json!("gemini"), json!("connected")),
        "{p}"
    );
    // Gemini's client stops reading, so it answers no ping: closed after three heartbeats,
    // and its presence falls back to idle (heard from lately, no stream). The viewer keeps
    // reading (and answering its pings) meanwhile.
    let idle = viewer
        .events_until(Duration::from_secs(15), |e| e["kind"] == "presence_changed")
        .await;
    let p = &idle.last().unwrap()["payload"];
    assert_eq!(
        (p["aiId"].clone(), p["state"].clone()),
        (json!("gemini"), json!("idle")),
        "{p}"
    );
    assert!(p["lastSeen"].is_string(), "{p}");
    while g.read(Duration::from_secs(2)).await.is_some() {}
    assert_eq!(g.closed, Some(Some(CloseCode::Away)), "closed for silence");
    assert_eq!(viewer.ok(json!({"type": "ping"})).await, json!({}));
    app.stop().await;
}

async fn who_may_connect_beyond_loopback_and_from_which_pages(backend: Backend) {
    let Some(db) = crate::helpers::TestDb::fresh(backend) else {
        return;
    };
    const OPERATOR: &str = "operator-secret-for-ws-tests";
    let mut settings = Settings::for_database("unused");
    settings.bind = "0.0.0.0:0".into();
    settings.operator_token = Some(OPERATOR.into());
    let app = start_on(db, settings).await;
    let (s, b) = app
        .post_as(
            OPERATOR,
            "/mcp/session/create",
            &json!({"name": "open", "participants": ["claude", "gemini"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (session, claude) = (
        b["sessionId"].as_str().unwrap().to_owned(),
        b["tokens"]["claude"].as_str().unwrap().to_owned(),
    );
    // Beyond loopback nobody watches without a token.
    assert_eq!(
        Ws::try_connect(&app, None, None).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        Ws::try_connect(&app, Some("chp_unknown"), None).await.err(),
        Some(StatusCode::UNAUTHORIZED)
    );
    // The operator token watches; a participant's token acts as that participant.
    let mut operator = Ws::try_connect(&app, Some(OPERATOR), None).await.unwrap();
    operator
        .ok(json!({"type": "subscribe", "sessionId": session, "since": 0}))
        .await;
    let mut c = Ws::try_connect(&app, Some(&claude), None).await.unwrap();
    assert_eq!(c.call("whoami", json!({})).await["aiId"], "claude");
    // A participant may not watch everything.
    let e = c
        .request(json!({"type": "subscribe", "project": "default"}))
        .await;
    assert_eq!(e["error"]["code"], "forbidden", "{e}");
    // A page from another site cannot open a socket with the browser's cookies or tokens.
    assert_eq!(
        Ws::try_connect(&app, Some(&claude), Some("http://evil.example"))
            .await
            .err(),
        Some(StatusCode::FORBIDDEN)
    );
    app.stop().await;
}

async fn a_project_subscription_follows_the_projects_sessions(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let create = async |project: &str, name: &str| {
        let (s, b) = app
            .post(
                "/mcp/session/create",
                &json!({"name": name, "project": project, "participants": ["claude", "gemini"]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        (
            b["sessionId"].as_str().unwrap().to_owned(),
            b["tokens"]["claude"].as_str().unwrap().to_owned(),
        )
    };
    let (first, claude1) = create("/repo/a", "first").await;
    let mut viewer = Ws::connect(&app, None).await;
    let sub = viewer
        .ok(json!({"type": "subscribe", "project": "/repo/a", "kinds": ["message_sent", "session_created"]}))
        .await;
    assert_eq!(sub["sessions"].as_array().unwrap().len(), 1, "{sub}");
    send_message(&app, &claude1, "in the first", "routine").await;
    let got = viewer
        .events_until(Duration::from_secs(10), |e| e["kind"] == "message_sent")
        .await;
    assert_eq!(got.last().unwrap()["sessionId"], first.as_str());
    // A session of another project is not followed; a new one of this project is, from its
    // first event.
    let (_, other) = create("/repo/b", "elsewhere").await;
    send_message(&app, &other, "elsewhere", "routine").await;
    let (second, claude2) = create("/repo/a", "second").await;
    send_message(&app, &claude2, "in the second", "routine").await;
    let got = viewer
        .events_until(Duration::from_secs(10), |e| {
            e["payload"]["body"] == "in the second"
        })
        .await;
    assert!(
        got.iter().all(|e| e["sessionId"] == second.as_str()),
        "only the new session of this project: {got:?}"
    );
    assert_eq!(got[0]["kind"], "session_created", "{got:?}");
    assert_eq!(got[0]["id"], 1);
    assert!(viewer.next(Duration::from_millis(300)).await.is_none());
    app.stop().await;
}

/// Dashboards read through the agents' own actors, so viewers' calls are paced
/// (`--viewer-reads-per-sec`, `ws::budget`): over budget they wait, none is refused, and a
/// participant's calls are not paced. Only lower bounds on time are asserted (a slow machine
/// makes them longer, never shorter), and an upper bound ten times the pacing.
async fn viewers_calls_are_paced_and_participants_calls_are_not(backend: Backend) {
    let Some(db) = crate::helpers::TestDb::fresh(backend) else {
        return;
    };
    let mut settings = Settings::for_database("unused");
    // 2 calls a second for all viewers, 4 at once.
    settings.viewer_reads_per_sec = 2.0;
    let app = start_on(db, settings).await;
    let (session, claude, _gemini) = app.create_pair("ws-pacing").await;
    let mut viewer = Ws::connect(&app, None).await;
    let started = std::time::Instant::now();
    for id in 0..8 {
        viewer
            .send(json!({"type": "call", "id": id, "operation": "session_list", "arguments": {}}))
            .await;
    }
    let mut answered = Vec::new();
    while answered.len() < 8 {
        let f = viewer
            .next(Duration::from_secs(20))
            .await
            .expect("every paced call is answered");
        assert!(f.get("ok").is_some(), "a paced call is not refused: {f}");
        answered.push((f["id"].as_i64().unwrap(), started.elapsed()));
    }
    // 4 at once, then 2 a second: the 8th no sooner than 2 s after the start.
    let last = answered.iter().map(|(_, t)| *t).max().unwrap();
    assert!(last >= Duration::from_millis(1900), "{answered:?}");
    // A participant on its own connection while the viewers' budget is spent: 20 calls
    // would take 10 s paced at 2 a second.
    let mut agent = Ws::connect(&app, Some(&claude)).await;
    for id in 0..8 {
        viewer
            .send(json!({"type": "call", "id": 100 + id, "operation": "session_list", "arguments": {}}))
            .await;
    }
    let t = std::time::Instant::now();
    for _ in 0..20 {
        agent
            .call("context_get", json!({"sessionId": session}))
            .await;
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    app.stop().await;
}

/// `token`'s message list (`GET /mcp/messages`): for a sender, the receipts of its messages.
async fn message_list(app: &TestApp, token: &str) -> Value {
    let (status, page) = app.get_as(token, "/mcp/messages?limit=200").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

/// One message's receipts: deliveredTo, shownTo as (aiId, via), readBy, ackedBy.
type Receipts = (Value, Vec<(String, String)>, Value, Value);

/// The receipts of `ids` as a message list shows them, in the order of `ids`.
fn receipts_of(page: &Value, ids: &[i64]) -> Vec<Receipts> {
    ids.iter()
        .map(|id| {
            let m = page["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["id"] == *id)
                .unwrap_or_else(|| panic!("message {id} not listed: {page}"));
            let shown = m["shownTo"]
                .as_array()
                .unwrap_or_else(|| panic!("no shownTo: {m}"))
                .iter()
                .map(|s| {
                    assert!(s["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{s}");
                    (
                        s["aiId"].as_str().unwrap().to_owned(),
                        s["via"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            (
                m["deliveredTo"].clone(),
                shown,
                m["readBy"].clone(),
                m["ackedBy"].clone(),
            )
        })
        .collect()
}

/// A viewer (the dashboard) calls `messages_read` as the operator: every message of the session
/// with every receipt (`shownTo` included), and it marks nothing: afterwards the recipient still
/// counts both messages unread and the sender sees no read receipt. Naming a participant
/// (`aiId`), which would read and mark for it, is refused.
async fn a_viewer_reads_every_receipt_and_marks_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (session, claude, gemini) = app.create_pair("ws-receipts").await;
    let (status, sent) = app
        .post_as(
            &claude,
            "/mcp/messages/send",
            &json!({"to": "gemini", "body": "stop the deploy", "priority": "critical", "requiresAck": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let urgent = sent["id"].as_i64().unwrap();
    let fyi = send_message(&app, &claude, "fyi: release at noon", "routine").await;
    // gemini's client printed the urgent one into its model's context (a hook).
    let (status, shown) = app
        .post_as(
            &gemini,
            "/mcp/events/shown",
            &json!({"ids": [urgent], "via": "hook"}),
        )
        .await;
    assert_eq!(
        (status, &shown),
        (StatusCode::OK, &json!({"shown": [urgent]}))
    );
    let before = receipts_of(&message_list(&app, &claude).await, &[urgent, fyi]);
    let hooked = (
        json!(["gemini"]),
        vec![("gemini".to_owned(), "hook".to_owned())],
    );
    assert_eq!(
        (before[0].0.clone(), before[0].1.clone()),
        hooked,
        "{before:?}"
    );
    assert_eq!(before[0].2, json!([]), "{before:?}");

    let mut viewer = Ws::connect(&app, None).await;
    let page = viewer
        .call("messages_read", json!({"sessionId": session, "limit": 200}))
        .await;
    // Every message, with the receipts the sender sees.
    assert_eq!(receipts_of(&page, &[urgent, fyi]), before, "{page}");
    assert_eq!(
        page["unread"], 0,
        "the operator has no unread count: {page}"
    );
    // By thread and by priority too: the same operation, the same filters.
    let critical = viewer
        .call(
            "messages_read",
            json!({"sessionId": session, "priority": "critical"}),
        )
        .await;
    let listed: Vec<i64> = critical["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, vec![urgent], "{critical}");
    // Reading for a participant would mark for it: a viewer may not.
    let refused = viewer
        .request(json!({"type": "call", "operation": "messages_read", "arguments": {"sessionId": session, "aiId": "gemini"}}))
        .await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");

    // Nothing was marked: the sender sees no read receipt, the recipient counts both unread
    // (counted before its own read marks them) and sees them as unread.
    assert_eq!(
        receipts_of(&message_list(&app, &claude).await, &[urgent, fyi]),
        before
    );
    let inbox = message_list(&app, &gemini).await;
    assert_eq!(inbox["unread"], 2, "{inbox}");
    for id in [urgent, fyi] {
        let m = inbox["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap();
        assert_eq!(
            (&m["read"], &m["acked"]),
            (&json!(false), &json!(false)),
            "{m}"
        );
    }
    // The recipient's own read is what marks them; the viewer then sees that receipt.
    let page = viewer
        .call("messages_read", json!({"sessionId": session, "limit": 200}))
        .await;
    let after = receipts_of(&page, &[urgent, fyi]);
    assert_eq!(after[0].2, json!(["gemini"]), "{page}");
    assert_eq!(after[1].2, json!(["gemini"]), "{page}");
    assert_eq!(after[0].3, json!([]), "read is not acknowledged: {page}");
    app.stop().await;
}

/// `POST /ws/frame` (what a hub sends the hub serving a session for its WebSocket client,
/// `ws::relay`) runs a `call` or an `ack` as the request's caller exactly as the socket runs it:
/// the same answers, the same refusals, the same errors; anything else is refused and changes
/// nothing.
async fn a_frame_posted_runs_as_on_the_socket(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (session, claude, gemini) = app.create_pair("ws-frame").await;
    let mut ws = Ws::connect(&app, None).await;
    let frame = |operation: &str, arguments: Value| json!({"type": "call", "operation": operation, "arguments": arguments});
    // A viewer's read, and its refusal to act for a participant, as on the socket.
    let get = frame("session_get", json!({"sessionId": session}));
    let (status, view) = app.post("/ws/frame", &get).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(
        view,
        ws.call("session_get", json!({"sessionId": session})).await
    );
    let act = frame("message_send", json!({"sessionId": session, "body": "hi"}));
    let (status, refused) = app.post("/ws/frame", &act).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let mut on_socket = act.clone();
    on_socket["id"] = json!(99);
    assert_eq!(refused["error"], ws.request(on_socket).await["error"]);
    // A participant's write and its acknowledgement.
    let send = frame("message_send", json!({"to": "gemini", "body": "posted"}));
    let (status, sent) = app.post_as(&claude, "/ws/frame", &send).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let id = sent["id"].as_i64().expect("the message's id");
    let (_, inbox) = app.get_as(&gemini, "/mcp/messages").await;
    assert!(inbox.to_string().contains("posted"), "{inbox}");
    let ack = json!({"type": "ack", "upTo": id, "sessionId": session});
    let (status, acked) = app.post_as(&gemini, "/ws/frame", &ack).await;
    assert_eq!(status, StatusCode::OK, "{acked}");
    assert_eq!(acked["ackedEventId"], id, "{acked}");
    // The same bad argument, the same error as over REST.
    let bad = frame(
        "message_send",
        json!({"body": "x", "priority": "urgent-ish"}),
    );
    let (status, over_frame) = app.post_as(&claude, "/ws/frame", &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, over_rest) = app
        .post_as(
            &claude,
            "/mcp/messages/send",
            &json!({"body": "x", "priority": "urgent-ish"}),
        )
        .await;
    assert_eq!(over_frame["error"], over_rest["error"]);
    let (status, unknown) = app.post("/ws/frame", &frame("teleport", json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown["error"]["field"], "operation", "{unknown}");
    // Only calls and acks; no stray fields; JSON only; a bad token is refused.
    for refused in [
        json!({"type": "subscribe", "sessionId": session}),
        json!({"type": "auth", "token": claude}),
        json!({"type": "call"}),
        json!({"type": "call", "operation": "whoami", "id": 1}),
        json!({"operation": "whoami"}),
    ] {
        let (status, answer) = app.post_as(&claude, "/ws/frame", &refused).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}: {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    let (status, _) = app
        .post_raw("/ws/frame", "application/json", b"{".to_vec())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .post_raw("/ws/frame", "text/plain", get.to_string().into_bytes())
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _) = app.post_as("chp_nope", "/ws/frame", &get).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Past the body limit (1 MiB here): refused before it is read whole.
    let huge = frame(
        "message_send",
        json!({"to": "gemini", "body": "x".repeat(2 << 20)}),
    );
    let (status, _) = app.post_as(&claude, "/ws/frame", &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Nothing refused was written: the inbox holds the one message.
    let (_, inbox) = app.get_as(&gemini, "/mcp/messages").await;
    assert_eq!(inbox["messages"].as_array().unwrap().len(), 1, "{inbox}");
    app.stop().await;
}
