//! `GET /ws`: the WebSocket transport (docs/websocket.md). Agents subscribe to live event
//! streams and send the same operations the MCP tools offer; the dashboard watches and steers.
//! One actor per connection (`connection`); frames in `frames`; the per-session event tasks in
//! `subscription`; `call` routing in `calls`.

mod budget;
mod calls;
mod connection;
mod frames;
mod relay;
mod stats;
mod subscription;

use std::time::Duration;

use actix::Addr;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::actors::Hub;
use crate::actors::hub::Identify;
use crate::error::HubError;
use crate::http::BodyLimit;

pub use budget::ViewerBudget;
pub use connection::OUTBOUND_FRAMES;
pub use relay::{ROUTE as FRAME_ROUTE, frame};
pub use stats::WsStats;
pub use subscription::OUTBOUND_BYTES;

/// How the WebSocket endpoint behaves (from the command line).
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Between pings; three without an answer close the connection.
    pub heartbeat: Duration,
    pub stats: std::sync::Arc<WsStats>,
    /// Paces viewers' calls, so that dashboards never slow the agents down.
    pub viewer_budget: std::sync::Arc<ViewerBudget>,
}

/// Upgrades the request. Who the connection speaks for is settled here from the
/// `Authorization` header (a participant token, the operator token, or nothing: a viewer, on a
/// hub that listens on loopback only); an `auth` frame may change it later.
pub async fn endpoint(
    req: HttpRequest,
    body: web::Payload,
    hub: web::Data<Addr<Hub>>,
    config: web::Data<WsConfig>,
) -> Result<HttpResponse, HubError> {
    let credential = crate::http::credential(&req)?;
    let token = crate::http::bearer_token(&req);
    let identity = hub.send(Identify(credential.clone())).await?;
    // An agent's socket whose token is of a session another hub serves is that hub's: its
    // subscription, its presence and its cursor live where the session does. Bridged whole,
    // once: a socket bridged here whose session is not served here either (a hand-over under
    // way) is refused, and its client connects again.
    if let Err(e @ HubError::Elsewhere { url, .. }) = &identity {
        if req.headers().contains_key(crate::http::hop::HOP) {
            return Err(e.clone());
        }
        if !is_upgrade(&req) {
            return Err(not_a_websocket("no Upgrade: websocket header"));
        }
        return crate::http::forward_ws::bridge_to(&req, body, url).await;
    }
    let (seat, _) = relay::seated(identity, token).await?;
    let limit = req
        .app_data::<BodyLimit>()
        .map_or(BodyLimit::default().bytes, |l| l.bytes);
    let (response, session, incoming) = actix_ws::handle(&req, body).map_err(not_a_websocket)?;
    let incoming = incoming
        .max_frame_size(limit)
        .aggregate_continuations()
        .max_continuation_size(limit);
    connection::Connection::start(
        hub.get_ref().clone(),
        session,
        incoming,
        (credential, token.map(Into::into)),
        seat,
        &config,
    );
    Ok(response)
}

fn not_a_websocket(e: impl std::fmt::Display) -> HubError {
    HubError::Invalid {
        code: "not_a_websocket",
        message: format!("GET /ws upgrades to a WebSocket: {e}"),
        field: None,
    }
}

/// Whether `req` asks for a WebSocket (a plain GET is refused as not one, not bridged).
fn is_upgrade(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `GET /metrics`: the WebSocket side's gauges and counters, what the hub has loaded, and (several
/// hubs) how often its lease keeper was asked where a project is served; Prometheus text format.
pub async fn metrics(
    req: HttpRequest,
    config: web::Data<WsConfig>,
    hub: web::Data<actix::Addr<crate::actors::Hub>>,
) -> HttpResponse {
    // A hub too busy to answer within a second still reports its sockets.
    let loaded = match hub
        .send(crate::actors::hub::Loaded)
        .timeout(std::time::Duration::from_secs(1))
        .await
    {
        Ok((projects, sessions)) => format!(
            "# TYPE collab_hub_projects_loaded gauge\ncollab_hub_projects_loaded {projects}\n\
             # TYPE collab_hub_sessions_loaded gauge\ncollab_hub_sessions_loaded {sessions}\n"
        ),
        Err(_) => String::new(),
    };
    // Several hubs: how often the lease keeper was asked where a project is served.
    let leases = req
        .app_data::<crate::store::lease::ProjectLeases>()
        .map(|leases| leases.seen_elsewhere().render())
        .unwrap_or_default();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(config.stats.render() + &loaded + &leases)
}
