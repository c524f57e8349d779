//! The HTTP server a hub runs on its socket: origin checks, the hop to the hub serving a
//! request's project (`http::hop`), then every surface (`http::configure`).

use std::net::{SocketAddr, TcpListener};

use actix::Addr;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use crate::actors::Hub;
use crate::config::Settings;
use crate::http::guard::{self, AllowedHosts};
use crate::http::{self, BodyLimit};
use crate::mcp::McpRegistry;
use crate::mcp::transport::StreamLifetime;
use crate::store::lease::ProjectLeases;

/// Grace period for in-flight requests on SIGINT/SIGTERM before connections are dropped.
const SHUTDOWN_GRACE_SECS: u64 = 30;

pub(super) fn allowed_hosts(settings: &Settings, addr: SocketAddr) -> Vec<String> {
    let mut hosts = settings.allowed_hosts.clone();
    if !addr.ip().is_unspecified() {
        hosts.push(match addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        });
    }
    hosts
}

pub(super) fn http_server(
    listener: TcpListener,
    settings: &Settings,
    hosts: Vec<String>,
    hub: Addr<Hub>,
    registry: Addr<McpRegistry>,
    ws_stats: std::sync::Arc<crate::ws::WsStats>,
    leases: Option<ProjectLeases>,
) -> Result<Server, String> {
    let hub = web::Data::new(hub);
    let registry = web::Data::new(registry);
    let limit = BodyLimit {
        bytes: settings.max_body_bytes,
        timeout: std::time::Duration::from_secs(settings.body_timeout_secs.max(1)),
    };
    let ws = web::Data::new(crate::ws::WsConfig {
        heartbeat: std::time::Duration::from_secs(settings.ws_heartbeat_secs.max(1)),
        stats: ws_stats,
        viewer_budget: std::sync::Arc::new(crate::ws::ViewerBudget::new(
            settings.viewer_reads_per_sec,
        )),
    });
    let lifetime = StreamLifetime(
        (settings.stream_max_secs > 0)
            .then(|| std::time::Duration::from_secs(settings.stream_max_secs)),
    );
    // A killed hub's projects are taken as soon as its lease connection is seen gone; a frozen
    // or cut one's once its leases expire: the hop waits as long as a take does. (One hub on
    // SQLite passes nothing on.)
    let patience = crate::http::hop::Patience(
        leases
            .as_ref()
            .map_or(std::time::Duration::from_secs(30), ProjectLeases::patience),
    );
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(crate::http::hop::pass_on))
            .wrap(from_fn(guard::check_origin))
            .app_data(AllowedHosts::new(&hosts))
            .app_data(crate::http::forward::client())
            .app_data(patience)
            .configure(|cfg| {
                if let Some(leases) = &leases {
                    cfg.app_data(leases.clone());
                }
            })
            .app_data(hub.clone())
            .app_data(registry.clone())
            .app_data(limit)
            .app_data(lifetime)
            .app_data(ws.clone())
            .configure(http::configure)
    })
    .shutdown_timeout(SHUTDOWN_GRACE_SECS)
    .disable_signals()
    // Small answers must not wait for Nagle + delayed ACK (tens of ms on SSE's two writes).
    .tcp_nodelay(true)
    .listen(listener)
    .map_err(|e| format!("cannot serve: {e}"))?;
    if let Some(n) = settings.workers {
        server = server.workers(n.max(1));
    }
    Ok(server.run())
}
