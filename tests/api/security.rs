//! Tokens beyond loopback: the operator creates, participants act only as themselves.

use actix_web::http::StatusCode;
use collab_hub::{Application, Settings};
use serde_json::json;

use crate::helpers::{Backend, TestDb, assert_error, both_backends, start_on};

both_backends!(beyond_loopback_every_request_needs_a_token);

const OPERATOR: &str = "operator-secret-for-tests";

async fn beyond_loopback_every_request_needs_a_token(backend: Backend) {
    let Some(db) = TestDb::fresh(backend) else {
        return;
    };
    let mut settings = Settings::for_database(db.url.clone());
    settings.bind = "0.0.0.0:0".into();
    // Without an operator token the hub refuses to listen on every interface.
    let refused = Application::build(settings.clone()).await;
    assert!(refused.is_err_and(|e| e.contains("--operator-token")));

    settings.operator_token = Some(OPERATOR.into());
    let app = start_on(db, settings).await;
    let body = json!({ "name": "open", "participants": ["claude", "gemini"] });
    let (s, b) = app.post("/mcp/session/create", &body).await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");
    let (s, b) = app.post_as(OPERATOR, "/mcp/session/create", &body).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["sessionId"].as_str().unwrap().to_owned();
    let claude = b["tokens"]["claude"].as_str().unwrap().to_owned();

    // A participant token is no operator token…
    let (s, b) = app.post_as(&claude, "/mcp/session/create", &body).await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "forbidden");
    let (s, b) = app.get("/mcp/session/list").await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");
    // …but works inside its session, and anonymous requests do not.
    let (s, _) = app.get_as(&claude, &format!("/mcp/session/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = app.get(&format!("/mcp/session/{id}")).await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");
    let (s, b) = app
        .post(
            "/mcp/session/join",
            &json!({ "sessionId": id, "participant": "cursor" }),
        )
        .await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized");
    let (s, b) = app
        .post_as(
            &claude,
            "/mcp/session/join",
            &json!({ "sessionId": id, "participant": "cursor" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app.get_as(OPERATOR, "/mcp/session/list").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["sessions"].as_array().unwrap().len(), 1);
}
