//! Session lifecycle over REST: create, join, leave, list, get, status; restart survival.

use actix_web::http::StatusCode;
use collab_hub::Settings;
use serde_json::json;

use crate::helpers::{Backend, assert_error, both_backends, spawn_app, start_on};

both_backends!(
    create_returns_session_and_tokens,
    create_accepts_the_concept_config_shape,
    join_adds_a_participant_with_a_working_token,
    join_rejects_duplicates_and_a_second_driver,
    status_moves_through_its_machine,
    leave_is_only_for_oneself,
    list_filters_and_pages,
    sessions_survive_a_restart,
    tokens_can_be_reissued_by_the_operator_or_oneself,
    sessions_belong_to_a_project,
);

async fn create_returns_session_and_tokens(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (status, body) = app
        .post(
            "/mcp/session/create",
            &json!({ "name": "Feature: Payment Integration", "participants": ["claude", "gemini"], "saveInterval": 300 }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "Feature: Payment Integration");
    assert_eq!(body["status"], "active");
    assert_eq!(body["driver"], "claude");
    assert_eq!(body["saveInterval"], 300);
    assert_eq!(body["handshakeMode"], "strict");
    assert_eq!(body["lastEventId"], 1);
    let roles: Vec<(&str, &str)> = body["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["aiId"].as_str().unwrap(), p["role"].as_str().unwrap()))
        .collect();
    assert_eq!(roles, [("claude", "driver"), ("gemini", "navigator")]);
    let claude = body["tokens"]["claude"].as_str().unwrap();
    let gemini = body["tokens"]["gemini"].as_str().unwrap();
    assert!(claude.starts_with("chp_") && gemini.starts_with("chp_") && claude != gemini);

    let id = body["sessionId"].as_str().unwrap();
    let (status, got) = app.get(&format!("/mcp/session/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["participants"], body["participants"]);
    assert!(got.get("tokens").is_none(), "tokens are shown once: {got}");
    assert!(!got.to_string().contains(claude));
}

async fn create_accepts_the_concept_config_shape(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (status, body) = app
        .post(
            "/mcp/session/create",
            &json!({
                "name": "Refactor auth",
                "participants": {
                    "claude": { "role": "driver", "endpoint": "/mcp", "permissions": ["read", "write", "execute"] },
                    "gemini": { "role": "navigator", "endpoint": "/mcp-gemini" },
                    "cursor": { "role": "observer", "permissions": ["read"] }
                },
                "handshakeMode": "loose",
                "rotationPolicy": "automatic",
                "metadata": { "project": "payments" }
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["handshakeMode"], "loose");
    assert_eq!(body["rotationPolicy"], "automatic");
    assert_eq!(body["metadata"]["project"], "payments");
    let cursor = body["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["aiId"] == "cursor")
        .unwrap();
    assert_eq!(cursor["permissions"], json!(["read"]));
    assert_eq!(body["tokens"].as_object().unwrap().len(), 3);
}

async fn join_adds_a_participant_with_a_working_token(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, _) = app.create_pair("Payment Gateway Integration").await;
    // A participant invites a third AI (its token proves it belongs to the session).
    let (status, body) = app
        .post_as(
            &claude,
            "/mcp/session/join",
            &json!({ "sessionId": id, "participant": "cursor", "role": "observer" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["participant"]["role"], "observer");
    assert_eq!(
        body["participant"]["permissions"],
        json!(["read", "comment"])
    );
    assert_eq!(body["eventId"], 2);
    assert_eq!(body["session"]["participants"].as_array().unwrap().len(), 3);
    let cursor = body["token"].as_str().unwrap();

    let (status, view) = app.get_as(cursor, &format!("/mcp/session/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["lastEventId"], 2);
    let (status, body) = app
        .get_as("chp_forged", &format!("/mcp/session/{id}"))
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
}

async fn join_rejects_duplicates_and_a_second_driver(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, _, _) = app.create_pair("dupes").await;
    let (status, body) = app
        .post(
            "/mcp/session/join",
            &json!({ "sessionId": id, "participant": "gemini", "role": "observer" }),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "duplicate_participant");
    let (status, body) = app
        .post(
            "/mcp/session/join",
            &json!({ "sessionId": id, "participant": "codex", "role": "driver" }),
        )
        .await;
    let err = assert_error(status, &body, StatusCode::CONFLICT, "driver_taken");
    assert!(err["message"].as_str().unwrap().contains("claude"), "{err}");
    // Nothing was written by the refused joins.
    let (_, view) = app.get(&format!("/mcp/session/{id}")).await;
    assert_eq!(view["lastEventId"], 1);
    assert_eq!(view["participants"].as_array().unwrap().len(), 2);
}

async fn status_moves_through_its_machine(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, _) = app.create_pair("status").await;
    let path = format!("/mcp/session/{id}/status");
    let (s, b) = app
        .post_as(&claude, &path, &json!({ "action": "pause" }))
        .await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("paused")),
        "{b}"
    );
    let (s, b) = app.post(&path, &json!({ "status": "active" })).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("active")),
        "{b}"
    );
    let (s, b) = app.post(&path, &json!({ "action": "complete" })).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("completed")),
        "{b}"
    );
    assert_eq!(b["lastEventId"], 4);
    let (s, b) = app.post(&path, &json!({ "action": "resume" })).await;
    assert_error(s, &b, StatusCode::CONFLICT, "invalid_transition");
    let (s, b) = app
        .post(
            "/mcp/session/join",
            &json!({ "sessionId": id, "participant": "cursor" }),
        )
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "session_completed");
    let (s, b) = app
        .post(&path, &json!({ "action": "pause", "status": "paused" }))
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    let (s, b) = app.post(&path, &json!({ "action": "explode" })).await;
    let err = assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(err["field"], "action");
    let (_, view) = app.get(&format!("/mcp/session/{id}")).await;
    assert_eq!(view["status"], "completed");
    assert_eq!(view["lastEventId"], 4);
}

async fn leave_is_only_for_oneself(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = app.create_pair("leave").await;
    let (s, b) = app
        .post_as(
            &gemini,
            "/mcp/session/leave",
            &json!({ "sessionId": id, "participant": "claude" }),
        )
        .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/session/leave",
            &json!({ "sessionId": id, "participant": "claude" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["driver"], json!(null));
    let left = b["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["aiId"] == "claude")
        .unwrap();
    assert!(left["leftAt"].is_string(), "{left}");
    // Its token no longer works, and leaving twice is an error.
    let (s, b) = app.get_as(&claude, &format!("/mcp/session/{id}")).await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");
    let (s, b) = app
        .post(
            "/mcp/session/leave",
            &json!({ "sessionId": id, "participant": "claude" }),
        )
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "participant_not_found");
    // The id can come back, now as driver again since nobody drives.
    let (s, b) = app
        .post(
            "/mcp/session/join",
            &json!({ "sessionId": id, "participant": "claude", "role": "driver" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["session"]["driver"], "claude");
}

async fn list_filters_and_pages(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(app.create_pair(&format!("s{i}")).await.0);
    }
    app.post(
        &format!("/mcp/session/{}/status", ids[0]),
        &json!({ "action": "pause" }),
    )
    .await;
    let (s, b) = app.get("/mcp/session/list").await;
    assert_eq!(s, StatusCode::OK);
    let listed: Vec<&str> = b["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sessionId"].as_str().unwrap())
        .collect();
    // Most recently active first: the paused one was touched last.
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0], ids[0]);
    let first = &b["sessions"][0];
    assert_eq!(
        first["participants"],
        json!([{ "aiId": "claude", "role": "driver" }, { "aiId": "gemini", "role": "navigator" }])
    );
    assert!(first["lastActivity"].is_string());

    let (_, b) = app.get("/mcp/session/list?status=paused").await;
    assert_eq!(b["sessions"].as_array().unwrap().len(), 1);
    let (_, b) = app.get("/mcp/session/list?limit=2&offset=2").await;
    assert_eq!(b["sessions"].as_array().unwrap().len(), 1);
    let (s, b) = app.get("/mcp/session/list?limit=0").await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    // A bad query value is refused like a bad body field: the answer names it.
    let (s, b) = app.get("/mcp/session/list?status=sleeping").await;
    let err = assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    assert_eq!(err["field"], "status", "{b}");

    // By participant (present, not departed) and by text in the name or project, any case,
    // wildcards taken literally.
    let (_, made) = app
        .post(
            "/mcp/session/create",
            &json!({"name": "Payment_Gateway 100%", "project": "/repo/Shop", "participants": ["cursor"]}),
        )
        .await;
    let shop = made["sessionId"].as_str().unwrap();
    let names = |b: &serde_json::Value| -> Vec<String> {
        b["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, b) = app.get("/mcp/session/list?participant=cursor").await;
    assert_eq!(names(&b), ["Payment_Gateway 100%"]);
    let (_, b) = app.get("/mcp/session/list?participant=gemini").await;
    assert_eq!(names(&b).len(), 3);
    for text in ["gateway", "SHOP", "_gateway", "100%"] {
        let (_, b) = app
            .get(&format!(
                "/mcp/session/list?text={}",
                text.replace('%', "%25")
            ))
            .await;
        assert_eq!(names(&b), ["Payment_Gateway 100%"], "{text}");
    }
    let (_, b) = app.get("/mcp/session/list?text=s%25").await;
    assert!(names(&b).is_empty(), "% is literal: {b}");
    let (_, b) = app.get("/mcp/session/list?text=s_").await;
    assert!(names(&b).is_empty(), "_ is literal: {b}");
    app.post(
        "/mcp/session/leave",
        &json!({"sessionId": shop, "participant": "cursor"}),
    )
    .await;
    let (_, b) = app.get("/mcp/session/list?participant=cursor").await;
    assert!(
        names(&b).is_empty(),
        "a departed participant's sessions are not its own: {b}"
    );
}

async fn sessions_survive_a_restart(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, _) = app.create_pair("long-running").await;
    app.post(
        "/mcp/session/join",
        &json!({ "sessionId": id, "participant": "cursor" }),
    )
    .await;
    app.post(
        &format!("/mcp/session/{id}/status"),
        &json!({ "action": "pause" }),
    )
    .await;
    let (_, before) = app.get(&format!("/mcp/session/{id}")).await;
    let db = app.stop().await;

    let app = start_on(db, Settings::for_database("unused")).await;
    // The hub loads the session from the database on first use; tokens still work.
    let (s, after) = app.get_as(&claude, &format!("/mcp/session/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{after}");
    assert_eq!(after, before);
    assert_eq!(after["lastEventId"], 3);
    // Event ids continue where they stopped.
    let (s, b) = app
        .post(
            "/mcp/session/join",
            &json!({ "sessionId": id, "participant": "codex" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["eventId"], 4);
    let (s, b) = app
        .get(&format!("/mcp/session/{}", uuid::Uuid::new_v4()))
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "session_not_found");
}

async fn tokens_can_be_reissued_by_the_operator_or_oneself(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, claude, gemini) = app.create_pair("tokens").await;
    let path = format!("/mcp/session/{id}/token");
    let (s, b) = app
        .post_as(&claude, &path, &json!({ "participant": "gemini" }))
        .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, b) = app
        .post_as(&gemini, &path, &json!({ "participant": "gemini" }))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let fresh = b["token"].as_str().unwrap().to_owned();
    assert!(fresh.starts_with("chp_") && fresh != gemini);
    let (s, b) = app.get_as(&gemini, &format!("/mcp/session/{id}")).await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");
    let (s, _) = app.get_as(&fresh, &format!("/mcp/session/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    // The operator (loopback) may reissue for anyone; unknown participants are 404.
    let (s, b) = app.post(&path, &json!({ "participant": "claude" })).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app.post(&path, &json!({ "participant": "nobody" })).await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "participant_not_found");
    // The digest change is durable: a restarted hub knows only the new token.
    let db = app.stop().await;
    let app = start_on(db, Settings::for_database("unused")).await;
    let (s, _) = app.get_as(&fresh, &format!("/mcp/session/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.get_as(&claude, &format!("/mcp/session/{id}")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

async fn sessions_belong_to_a_project(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for (name, project) in [
        ("fix", Some("/home/me/shop")),
        ("feature", Some("/home/me/shop")),
        ("other", None),
    ] {
        let mut body = json!({"name": name, "participants": ["claude"]});
        if let Some(p) = project {
            body["project"] = json!(p);
        }
        let (status, created) = app.post("/mcp/session/create", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(
            created["project"],
            project.unwrap_or("default"),
            "{created}"
        );
    }
    let (_, shop) = app
        .get("/mcp/session/list?project=%2Fhome%2Fme%2Fshop")
        .await;
    let mut names: Vec<&str> = shop["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["feature", "fix"], "{shop}");
    assert!(
        shop["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["project"] == "/home/me/shop")
    );
    let (_, default) = app.get("/mcp/session/list?project=default").await;
    assert_eq!(
        default["sessions"].as_array().unwrap().len(),
        1,
        "{default}"
    );
    // A project key is not empty and has no control characters; the refusal names it.
    for bad in [json!(""), json!("a\nb"), json!(7)] {
        let (status, body) = app
            .post("/mcp/session/create", &json!({"name": "x", "project": bad}))
            .await;
        let err = assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_field");
        assert_eq!(err["field"], "project", "{body}");
    }
    // The project survives a restart.
    let db = app.stop().await;
    let app = start_on(db, Settings::for_database("unused")).await;
    let (_, shop) = app
        .get("/mcp/session/list?project=%2Fhome%2Fme%2Fshop")
        .await;
    assert_eq!(shop["sessions"].as_array().unwrap().len(), 2, "{shop}");
}
