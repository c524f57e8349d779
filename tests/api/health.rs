//! `/healthz`, bad input on every endpoint, and unknown routes.

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{Backend, assert_error, both_backends, spawn_app};

both_backends!(
    healthz_names_the_backend,
    bad_input_is_refused_and_changes_nothing,
    the_front_page_is_served
);

async fn the_front_page_is_served(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut res = crate::helpers::client()
        .get(format!("{}/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    // The dashboard: its page loads its script module from the hub itself.
    assert!(
        page.contains("<title>collab-hub</title>") && page.contains(r#"src="/app.js""#),
        "{page}"
    );
}

async fn healthz_names_the_backend(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (status, body) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let expected = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    assert_eq!(body["backend"], expected);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
}

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (id, _, _) = app.create_pair("target").await;
    let create = "/mcp/session/create";
    let json_ct = "application/json";

    let (s, b) = app.post_raw(create, json_ct, b"{\"name\": ".to_vec()).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_json");
    let (s, b) = app.post_raw(create, json_ct, Vec::new()).await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_json");
    let (s, b) = app
        .post(create, &json!({ "participants": ["claude"] }))
        .await;
    let e = assert_error(s, &b, StatusCode::BAD_REQUEST, "missing_field");
    assert_eq!(e["field"], "name");
    let (s, b) = app.post(create, &json!({ "name": 42 })).await;
    assert_eq!(
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field")["field"],
        "name"
    );
    let (s, b) = app
        .post(create, &json!({ "name": "x", "saveInterval": -1 }))
        .await;
    assert_eq!(
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field")["field"],
        "saveInterval"
    );
    let (s, b) = app
        .post(create, &json!({ "name": "x", "saveInterval": 1 }))
        .await;
    assert_eq!(
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field")["field"],
        "saveInterval"
    );
    let (s, b) = app.post(create, &json!({ "name": "   " })).await;
    assert_eq!(
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field")["field"],
        "name"
    );
    let (s, b) = app
        .post(
            create,
            &json!({ "name": "x", "participants": [{ "aiId": "a", "role": "pilot" }] }),
        )
        .await;
    assert_eq!(
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field")["field"],
        "participants[0].role"
    );
    let (s, b) = app
        .post(create, &json!({ "name": "x", "participants": ["bad id!"] }))
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    let (s, b) = app
        .post(create, &json!({ "name": "x", "participants": ["a", "a"] }))
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "duplicate_participant");
    let (s, b) = app
        .post(create, &json!({ "name": "x", "participants": { "a": { "role": "driver" }, "b": { "role": "driver" } } }))
        .await;
    assert_error(s, &b, StatusCode::CONFLICT, "driver_taken");
    let (s, b) = app
        .post(create, &json!({ "name": "x", "colour": "red" }))
        .await;
    assert!(
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field")["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
    let (s, b) = app
        .post(create, &json!({ "name": "x", "metadata": [1, 2] }))
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    let (s, b) = app
        .post_raw(create, "text/plain", b"{\"name\":\"x\"}".to_vec())
        .await;
    assert_error(
        s,
        &b,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let (s, b) = app.post_raw(create, json_ct, huge.into_bytes()).await;
    assert_error(s, &b, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let join = "/mcp/session/join";
    let (s, b) = app
        .post(join, &json!({ "sessionId": "nope", "participant": "x" }))
        .await;
    assert_eq!(
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field")["field"],
        "sessionId"
    );
    let ghost = uuid::Uuid::new_v4();
    let (s, b) = app
        .post(join, &json!({ "sessionId": ghost, "participant": "x" }))
        .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "session_not_found");
    let (s, b) = app
        .post(
            join,
            &json!({ "sessionId": id, "participant": "x", "role": "boss" }),
        )
        .await;
    assert_eq!(
        assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field")["field"],
        "role"
    );
    let (s, b) = app
        .post(
            join,
            &json!({ "sessionId": id, "participant": "x", "permissions": [] }),
        )
        .await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    let (s, b) = app.post(join, &json!({ "sessionId": id })).await;
    assert_eq!(
        assert_error(s, &b, StatusCode::BAD_REQUEST, "missing_field")["field"],
        "participant"
    );
    let (s, b) = app.get("/mcp/session/not-a-uuid").await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_field");
    let (s, b) = app.get("/no/such/route").await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "no_route");
    let (s, b) = app.post("/mcp/session/list", &json!({})).await;
    assert_error(s, &b, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let (s, b) = app.get("/mcp/session/create").await;
    assert_error(s, &b, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let (s, b) = app.get_as("", "/mcp/session/list").await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");

    // Only the first session exists, untouched, and the hub is still healthy.
    let (_, list) = app.get("/mcp/session/list").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    let (_, view) = app.get(&format!("/mcp/session/{id}")).await;
    assert_eq!(view["lastEventId"], 1);
    let (s, _) = app.get("/healthz").await;
    assert_eq!(s, StatusCode::OK);
}
