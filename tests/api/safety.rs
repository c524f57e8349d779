//! Defects found by probing the landed hub, each pinned by a test: context keys the loader
//! could not read back, invitations that granted more than the inviter had, an `Mcp-Session-Id`
//! that authenticated on its own, one credential exhausting the MCP sessions, stalled request
//! bodies, and two hubs on one database.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use collab_hub::{Application, Settings};
use serde_json::{Value, json};

use crate::helpers::{Backend, assert_error, both_backends, client, spawn_app, start_on};
use crate::mcp_protocol::Mcp;

both_backends!(
    context_keys_the_loader_refuses_are_refused_at_write,
    an_invitation_never_grants_more_than_the_inviter_holds,
    every_mcp_request_carries_its_credential,
    one_credential_cannot_exhaust_the_mcp_sessions,
    a_stalled_request_body_times_out,
    a_second_hub_on_one_database_refuses_to_start,
    a_listed_participant_takes_its_seat_over_mcp_on_loopback,
    a_refused_write_says_the_same_over_mcp_and_rest,
    leaving_does_not_make_an_mcp_session_the_operator,
    one_mcp_session_takes_one_identity_even_when_asked_twice_at_once,
);

async fn context_keys_the_loader_refuses_are_refused_at_write(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, _, _) = app.create_pair("keys").await;
    let (s, b) = app
        .post(
            "/mcp/context/sync",
            &json!({"sessionId": id, "updates": {"kept": {"a": 1}}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, before) = app.get(&format!("/mcp/context/get?sessionId={id}")).await;
    let bad = [
        json!({"sessionId": id, "updates": {"": 3}}),
        json!({"sessionId": id, "updates": {"x\ny": 1}}),
        json!({"sessionId": id, "updates": {"kept": {"": 1}}}),
        json!({"sessionId": id, "updates": {"fresh": {"deep": {"": 1}}}}),
        json!({"sessionId": id, "updates": {"kept": {"b\u{7}": 1}}}),
    ];
    for body in &bad {
        let (s, b) = app.post("/mcp/context/sync", body).await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    }
    for (path, value) in [("v", json!({"": 1})), ("w", json!([{"a\u{0}b": 1}]))] {
        let (s, b) = app
            .post(
                "/mcp/context/set",
                &json!({"sessionId": id, "path": path, "value": value}),
            )
            .await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    }
    let (s, b) = app
        .post(
            "/mcp/context/append/list",
            &json!({"sessionId": id, "value": {"": 1}}),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    // Nothing changed, and after a restart the session reads exactly as before.
    let (_, now) = app.get(&format!("/mcp/context/get?sessionId={id}")).await;
    assert_eq!(now, before);
    let db = app.stop().await;
    let app = start_on(db, Settings::for_database("unused")).await;
    let (s, after) = app.get(&format!("/mcp/context/get?sessionId={id}")).await;
    assert_eq!(s, StatusCode::OK, "{after}");
    assert_eq!(after, before);
    let (s, b) = app.get(&format!("/mcp/session/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

async fn an_invitation_never_grants_more_than_the_inviter_holds(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // Nobody drives: claude navigates, cursor observes.
    let (s, created) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "invite", "participants": [
                {"aiId": "claude", "role": "navigator"},
                {"aiId": "cursor", "role": "observer"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["sessionId"].as_str().unwrap().to_owned();
    let nav = created["tokens"]["claude"].as_str().unwrap().to_owned();
    let obs = created["tokens"]["cursor"].as_str().unwrap().to_owned();
    let join = |who: &str, role: Value, perms: Option<Value>| {
        let mut b = json!({"sessionId": id, "participant": who, "role": role});
        if let Some(p) = perms {
            b["permissions"] = p;
        }
        b
    };
    // An observer invites nobody, not even another observer, and never a driver.
    for role in ["observer", "navigator", "driver"] {
        let (s, b) = app
            .post_as(&obs, "/mcp/session/join", &join("x1", json!(role), None))
            .await;
        assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    }
    // A navigator cannot make a driver, nor grant write, which it does not hold.
    let (s, b) = app
        .post_as(
            &nav,
            "/mcp/session/join",
            &join("x2", json!("driver"), None),
        )
        .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, b) = app
        .post_as(
            &nav,
            "/mcp/session/join",
            &join("x3", json!("navigator"), Some(json!(["read", "write"]))),
        )
        .await;
    let err = assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    assert!(err["message"].as_str().unwrap().contains("write"), "{err}");
    let (_, session) = app.get(&format!("/mcp/session/{id}")).await;
    assert_eq!(
        session["participants"].as_array().unwrap().len(),
        2,
        "{session}"
    );
    // Within its own rights it may invite.
    let (s, b) = app
        .post_as(
            &nav,
            "/mcp/session/join",
            &join("gemini", json!("navigator"), None),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["participant"]["role"], "navigator");
    // The invited navigator's token cannot write code either.
    let gem = b["token"].as_str().unwrap().to_owned();
    let (s, b) = app
        .post_as(
            &gem,
            "/mcp/collaborate/change",
            &json!({"filePath": "/a.rs", "before": "a\n", "after": "b\n"}),
        )
        .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "write_permission_denied");
    // An inviter restricted to read cannot hand out a navigator's defaults either.
    let (s, b) = app
        .post(
            "/mcp/session/join",
            &join("reader", json!("navigator"), Some(json!(["read"]))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let reader = b["token"].as_str().unwrap().to_owned();
    let (s, b) = app
        .post_as(
            &reader,
            "/mcp/session/join",
            &join("x4", json!("navigator"), None),
        )
        .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, b) = app
        .post_as(
            &reader,
            "/mcp/session/join",
            &join("x5", json!("observer"), Some(json!(["read"]))),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // The operator (loopback, no token) may still add a driver.
    let (s, b) = app
        .post("/mcp/session/join", &join("codex", json!("driver"), None))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

async fn every_mcp_request_carries_its_credential(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, claude, gemini) = app.create_pair("creds").await;
    let mut mcp = Mcp::new(&app);
    mcp.token = Some(claude.clone());
    mcp.initialize("2025-11-25").await;
    // The session id alone proves nothing: POST and GET without the token are refused.
    mcp.token = None;
    let (s, b) = mcp
        .call(1, "tools/call", json!({"name": "whoami", "arguments": {}}))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let res = client()
        .get(format!("{}/mcp", app.address))
        .insert_header(("accept", "text/event-stream"))
        .insert_header(("mcp-session-id", mcp.session.clone().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = client()
        .delete(format!("{}/mcp", app.address))
        .insert_header(("mcp-session-id", mcp.session.clone().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "DELETE needs it too"
    );
    // Another participant's token is refused.
    mcp.token = Some(gemini);
    let (s, b) = mcp.call(3, "ping", json!({})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // With it, the same session works.
    mcp.token = Some(claude);
    let (s, b) = mcp
        .call(2, "tools/call", json!({"name": "whoami", "arguments": {}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["result"]["structuredContent"]["aiId"], "claude", "{b}");
}

async fn one_credential_cannot_exhaust_the_mcp_sessions(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = app.create_pair("flood").await;
    // gemini is connected before the flood, and stays idle through it.
    let mut other = Mcp::new(&app);
    other.token = Some(gemini);
    other.initialize("2025-11-25").await;
    let mut first = Mcp::new(&app);
    first.token = Some(claude.clone());
    first.initialize("2025-11-25").await;
    // Far more sessions than one participant may hold, half of them with a fresh token
    // (reissuing does not make a new owner): every initialize still succeeds, the oldest idle
    // ones of that participant make room.
    let mut token = claude.clone();
    for i in 0..200 {
        if i == 100 {
            let (s, b) = app
                .post_as(
                    &token,
                    &format!("/mcp/session/{id}/token"),
                    &json!({"participant": "claude"}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
            token = b["token"].as_str().unwrap().to_owned();
        }
        let mut m = Mcp::new(&app);
        m.token = Some(token.clone());
        m.initialize("2025-11-25").await;
    }
    let (s, _) = first.call(1, "ping", json!({})).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "the oldest idle session was ended"
    );
    // Another participant is not affected, though its session was idle all along.
    let (s, b) = other
        .call(2, "tools/call", json!({"name": "whoami", "arguments": {}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["result"]["structuredContent"]["aiId"], "gemini", "{b}");
}

async fn a_stalled_request_body_times_out(backend: Backend) {
    let Some(db) = crate::helpers::TestDb::fresh(backend) else {
        return;
    };
    let mut settings = Settings::for_database("unused");
    settings.body_timeout_secs = 1;
    let app = start_on(db, settings).await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    // Headers and 9 of 100 body bytes, then nothing: on a blocking thread, off the runtime.
    let stalled = std::thread::spawn(move || {
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let started = Instant::now();
        tcp.write_all(
            b"POST /mcp/session/create HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":\"",
        )
        .unwrap();
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer);
        (
            started.elapsed(),
            String::from_utf8_lossy(&answer).into_owned(),
        )
    });
    // Meanwhile the hub answers others.
    let (s, _) = app.get("/healthz").await;
    assert_eq!(s, StatusCode::OK);
    let (waited, answer) = actix_web::rt::task::spawn_blocking(move || stalled.join().unwrap())
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(waited < Duration::from_secs(10), "closed after {waited:?}");
    let (_, list) = app.get("/mcp/session/list").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 0, "{list}");
}

async fn a_second_hub_on_one_database_refuses_to_start(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut settings = Settings::for_database(app.db.url.clone());
    settings.bind = "127.0.0.1:0".into();
    if backend == Backend::Postgres {
        // Several hubs share a PostgreSQL database: the second serves too.
        let second = Application::build(settings)
            .await
            .expect("a second hub starts");
        let (second_url, handle) = (format!("http://{}", second.addr()), second.handle());
        let running = actix_web::rt::spawn(second.run_until_stopped());
        let (status, created) = app
            .post(
                "/mcp/session/create",
                &json!({"name": "via the owner", "participants": ["claude"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let mut res = client()
            .get(format!("{second_url}/mcp/session/list"))
            .send()
            .await
            .expect("the second hub answers");
        let listed: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{listed}");
        assert_eq!(
            listed["sessions"][0]["sessionId"], created["sessionId"],
            "{listed}"
        );
        handle.stop(true).await;
        running.await.unwrap().unwrap();
        app.stop().await;
        return;
    }
    let refused = match Application::build(settings).await {
        Ok(_) => panic!("a second hub started on the same database"),
        Err(e) => e,
    };
    assert!(refused.contains("in use by another hub"), "{refused}");
    assert!(
        refused.contains("collab-hub pid"),
        "names the first: {refused}"
    );
    assert!(!refused.contains('\n'), "one line: {refused}");
    // Once the first stops, a new hub starts on it.
    let db = app.stop().await;
    let app = start_on(db, Settings::for_database("unused")).await;
    let (s, _) = app.get("/healthz").await;
    assert_eq!(s, StatusCode::OK);
}

async fn a_listed_participant_takes_its_seat_over_mcp_on_loopback(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // The concept: create with claude and gemini, then gemini connects.
    let (id, _, gemini_token) = app.create_pair("seat").await;
    let mut gem = Mcp::new(&app);
    gem.initialize("2025-11-25").await;
    let (err, out) = gem
        .tool(
            "session_join",
            json!({"sessionId": id, "participant": "gemini"}),
        )
        .await;
    assert!(!err, "{out}");
    let (_, me) = gem.tool("whoami", json!({})).await;
    assert_eq!(me["aiId"], "gemini", "{me}");
    assert_eq!(me["role"], "navigator", "{me}");
    // Nobody new joined, and gemini's token from create still works.
    let (_, session) = app.get(&format!("/mcp/session/{id}")).await;
    assert_eq!(
        session["participants"].as_array().unwrap().len(),
        2,
        "{session}"
    );
    let (s, b) = app
        .get_as(&gemini_token, &format!("/mcp/session/{id}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Asking for a different role is still a duplicate.
    let mut other = Mcp::new(&app);
    other.initialize("2025-11-25").await;
    let (err, out) = other
        .tool(
            "session_join",
            json!({"sessionId": id, "participant": "claude", "role": "observer"}),
        )
        .await;
    assert!(
        err && out.as_str().unwrap().contains("duplicate_participant"),
        "{out}"
    );
}

async fn a_refused_write_says_the_same_over_mcp_and_rest(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (_, _, gemini) = app.create_pair("refusal").await;
    let args = json!({"filePath": "/a.rs", "before": "a\n", "after": "b\n"});
    let (s, rest) = app.post_as(&gemini, "/mcp/collaborate/change", &args).await;
    let rest = assert_error(s, &rest, StatusCode::FORBIDDEN, "write_permission_denied");
    let mut mcp = Mcp::new(&app);
    mcp.token = Some(gemini);
    mcp.initialize("2025-11-25").await;
    let mut margs = args.clone();
    margs["action"] = json!("record");
    let (_, b) = mcp
        .call(
            1,
            "tools/call",
            json!({"name": "changes", "arguments": margs}),
        )
        .await;
    assert_eq!(b["result"]["isError"], true, "{b}");
    let over_mcp = &b["result"]["structuredContent"]["error"];
    assert_eq!(over_mcp, &rest, "same error object on both surfaces");
    assert_eq!(over_mcp["currentDriver"], "claude");
    assert_eq!(
        over_mcp["suggestion"],
        "Request driver role or submit as suggestion"
    );
}

async fn leaving_does_not_make_an_mcp_session_the_operator(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, _, gemini) = app.create_pair("leave").await;
    // One client with its token, one that took its seat on loopback without one.
    let mut with_token = Mcp::new(&app);
    with_token.token = Some(gemini);
    with_token.initialize("2025-11-25").await;
    let mut seated = Mcp::new(&app);
    seated.initialize("2025-11-25").await;
    let (err, out) = seated
        .tool(
            "session_join",
            json!({"sessionId": id, "participant": "claude"}),
        )
        .await;
    assert!(!err, "{out}");
    let (err, out) = with_token.tool("session_leave", json!({})).await;
    assert!(!err, "{out}");
    // The departed token's session is nobody now: not the operator.
    let (err, out) = with_token.tool("session_list", json!({})).await;
    assert!(
        err,
        "a departed participant's MCP session listed sessions: {out}"
    );
    let (err, out) = with_token
        .tool(
            "session_join",
            json!({"sessionId": id, "participant": "gemini"}),
        )
        .await;
    assert!(err, "it took a seat again: {out}");
    // The seated client leaves too; it is back to what its requests prove (loopback, no token).
    let (err, out) = seated.tool("session_leave", json!({})).await;
    assert!(!err, "{out}");
    let (err, out) = seated.tool("whoami", json!({})).await;
    assert!(err, "{out}");
}

async fn one_mcp_session_takes_one_identity_even_when_asked_twice_at_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, _, _) = app.create_pair("race").await;
    let mut mcp = Mcp::new(&app);
    mcp.initialize("2025-11-25").await;
    for round in 0..5 {
        let join = |who: String| json!({"sessionId": id, "participant": who, "role": "observer"});
        let (a, b) = futures::join!(
            mcp.tool("session_join", join(format!("a{round}"))),
            mcp.tool("session_join", join(format!("b{round}"))),
        );
        let ok = [&a, &b].iter().filter(|(err, _)| !err).count();
        if round == 0 {
            assert_eq!(ok, 1, "exactly one bind wins: {a:?} {b:?}");
        } else {
            assert_eq!(ok, 0, "already bound: {a:?} {b:?}");
        }
        for (err, out) in [&a, &b] {
            if *err {
                assert!(out.as_str().unwrap().contains("already_bound"), "{out}");
            }
        }
    }
    let (_, session) = app.get(&format!("/mcp/session/{id}")).await;
    assert_eq!(
        session["participants"].as_array().unwrap().len(),
        3,
        "one newcomer, not two: {session}"
    );
}
