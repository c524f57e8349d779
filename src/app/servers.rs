//! The two HTTP servers a hub runs on its socket: the owner's (every surface, `http::configure`)
//! and a standby's (origin checks, then everything forwarded to the owner).

use std::net::{SocketAddr, TcpListener};

use actix::Addr;
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

use super::advertised;
use crate::actors::Hub;
use crate::config::Settings;
use crate::http::forward::{self, Forwarding};
use crate::http::guard::{self, AllowedHosts};
use crate::http::{self, BodyLimit};
use crate::mcp::McpRegistry;
use crate::mcp::transport::StreamLifetime;
use crate::store::lease::LeaseKeeper;

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

/// A standby's server: the same origin checks, then everything forwarded to the owner.
pub(super) fn standby_server(
    listener: TcpListener,
    settings: &Settings,
    lease: &LeaseKeeper,
    owner_ready: tokio::sync::watch::Receiver<bool>,
) -> Result<Server, String> {
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let hosts = allowed_hosts(settings, addr);
    let forwarding = web::Data::new(Forwarding {
        role: lease.watch(),
        own_url: advertised(settings, addr)?,
        owner_ready,
        // A killed owner's lease expires, a standby notices within a fifth of it, then loads.
        patience: std::time::Duration::from_secs(settings.lease_secs * 2 + 10),
        limit: BodyLimit {
            bytes: settings.max_body_bytes,
            timeout: std::time::Duration::from_secs(settings.body_timeout_secs.max(1)),
        },
    });
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(guard::check_origin))
            .app_data(AllowedHosts::new(&hosts))
            .app_data(forwarding.clone())
            .app_data(forward::client())
            .configure(forward::configure)
    })
    // Relayed streams never end by themselves; a stopping standby does not wait long for them.
    .shutdown_timeout(5)
    .disable_signals()
    .tcp_nodelay(true)
    .listen(listener)
    .map_err(|e| format!("cannot serve: {e}"))?;
    if let Some(n) = settings.workers {
        server = server.workers(n.max(1));
    }
    Ok(server.run())
}

pub(super) fn http_server(
    listener: TcpListener,
    settings: &Settings,
    hosts: Vec<String>,
    hub: Addr<Hub>,
    registry: Addr<McpRegistry>,
    ws_stats: std::sync::Arc<crate::ws::WsStats>,
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
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(crate::http::hop::pass_on))
            .wrap(from_fn(guard::check_origin))
            .app_data(AllowedHosts::new(&hosts))
            .app_data(crate::http::forward::client())
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
