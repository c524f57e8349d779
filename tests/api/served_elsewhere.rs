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

/// A project's lease row names a hub that does not serve it (a standby: the hub that held it
/// stepped down and has not handed it back yet). A request for it waits for the hand-over (up
/// to about 2 s), as before requests were passed on, then is passed on, refused there (421: no
/// owner) and answered 503, saying so.
#[actix_web::test]
async fn a_request_for_a_project_a_standby_holds_waits_then_says_it_is_handed_over() {
    let Some(here) = crate::project_serving::hub().await else {
        return;
    };
    let (_, _, gemini) = session_in(&here, "alpha").await;
    let (standby, url, line) = crate::crash::start_hub_with(&here.db, "127.0.0.1:0", &[]);
    let _standby = crate::crash::KillOnDrop(standby);
    assert!(line.contains("standby"), "{line}");
    crate::dashboard_elsewhere::taken_by(&here, "alpha", &url);
    crate::dashboard_elsewhere::until_let_go(&here, &gemini).await;
    for _ in 0..2 {
        // A lower bound only: a slow machine makes it longer, never shorter.
        let start = std::time::Instant::now();
        let (status, refused) = here.get_as(&gemini, "/mcp/messages?limit=50").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
        assert!(refused.to_string().contains("handing it over"), "{refused}");
        assert!(
            start.elapsed() >= std::time::Duration::from_millis(1500),
            "not waited for: {:?}",
            start.elapsed()
        );
    }
    here.stop().await;
}
