//! A REST request for a project another hub serves is served by that hub (issue 14,
//! `http::hop`): the hub it reached passes it on as it came, once, and relays the answer. Nothing
//! is applied at the hub that passed it on, a keyed write is applied once, and a request another
//! hub already passed on is not passed on again.
//!
//! The two hubs are those of `dashboard_elsewhere::moved`: `there` serves project alpha (on a
//! database of its own, holding the session as a restore put it there), and alpha's lease row
//! at `here` names it.
//!
//! PostgreSQL only: project leases are PostgreSQL's.

use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::dashboard_elsewhere::{Moved, moved, written_here};
use crate::project_serving::{get_here_only, received, send, session_in};

/// Posts `body` to `path` as `token` with the client's own request key.
async fn post_keyed(
    app: &crate::helpers::TestApp,
    token: &str,
    path: &str,
    key: &str,
    body: &Value,
) -> (StatusCode, Value) {
    let mut answer = crate::helpers::client()
        .post(format!("{}{path}", app.address))
        .bearer_auth(token)
        .insert_header((collab_hub::api::REQUEST_KEY, key))
        .send_json(body)
        .await
        .expect("POST");
    let bytes = answer.body().await.expect("body");
    (
        answer.status(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[actix_web::test]
async fn a_rest_request_for_a_project_another_hub_serves_is_served_there() {
    let Some(Moved {
        here,
        there,
        session,
        claude,
        gemini,
    }) = moved().await
    else {
        return;
    };
    // A read, answered as the hub serving alpha answers it.
    assert_eq!(received(&here, &gemini).await, ["before"]);
    // A write: applied there, not here.
    let (status, sent) = send(&here, &claude, "through here").await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(received(&there, &gemini).await, ["before", "through here"]);
    assert_eq!(written_here(&here, &session, "through here"), 0);
    // The operator's view of the session, named by the path.
    let (status, view) = here.get(&format!("/mcp/session/{session}")).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["sessionId"], session.as_str(), "{view}");
    // A refusal there comes back as it was said: its status, its error object.
    let bad = json!({"to": "nobody", "body": "lost"});
    let (status, through) = here.post_as(&claude, "/mcp/messages/send", &bad).await;
    let (direct_status, direct) = there.post_as(&claude, "/mcp/messages/send", &bad).await;
    assert!(direct_status.is_client_error(), "{direct}");
    assert_eq!((status, &through), (direct_status, &direct));
    // A write the client sends twice with its own key is applied once.
    let key = uuid::Uuid::new_v4().to_string();
    let twice = json!({"to": "gemini", "body": "keyed"});
    let (status, first) = post_keyed(&here, &claude, "/mcp/messages/send", &key, &twice).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = post_keyed(&here, &claude, "/mcp/messages/send", &key, &twice).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert_eq!(again["error"]["code"], "already_applied", "{again}");
    let got = received(&there, &gemini).await;
    assert_eq!(got, ["before", "through here", "keyed"]);
    // Passed on once at most: a request another hub passed on is answered here.
    let (status, refused) = get_here_only(&here, &gemini, "/mcp/messages?limit=50").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert!(
        refused.to_string().contains("served by another hub"),
        "{refused}"
    );
    // A project this hub holds is served here as before.
    let (_, beta_claude, beta_gemini) = session_in(&here, "beta").await;
    let (status, answer) = send(&here, &beta_claude, "beta here").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(received(&here, &beta_gemini).await, ["beta here"]);
    here.stop().await;
    there.stop().await;
}

/// A project's lease row names another hub that does not serve it yet (the row was left by a
/// process at that hub's address). A request for it is passed on at once (until stop 39 it
/// waited about 2 s for a hand-over first), and that hub, finding its own address on the row,
/// takes the project under a new generation and serves it.
#[actix_web::test]
async fn a_request_for_a_project_whose_row_names_another_hub_is_served_there() {
    let Some(here) = crate::project_serving::hub().await else {
        return;
    };
    let (_, claude, gemini) = session_in(&here, "alpha").await;
    let (status, sent) = send(&here, &claude, "before").await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let (other, url, _) = crate::crash::start_hub_with(&here.db, "127.0.0.1:0", &[]);
    let _other = crate::crash::KillOnDrop(other);
    crate::dashboard_elsewhere::taken_by(&here, "alpha", &url);
    crate::dashboard_elsewhere::until_let_go(&here, &gemini).await;
    let generation = |db| {
        crate::multi_hub::sql_rows(
            db,
            "SELECT holder || ' ' || generation::text AS v FROM owners
              WHERE kind = 'project' AND key = 'alpha'",
        )
    };
    let before = generation(&here.db);
    assert_eq!(received(&here, &gemini).await, ["before"]);
    let after = generation(&here.db);
    assert_ne!(before, after, "taken anew by the other hub");
    assert!(!after[0].starts_with("another hub"), "{after:?}");
    here.stop().await;
}
