//! Wiring: opens the store, starts the actors, binds the HTTP server. `main` and the integration
//! tests build the hub the same way, through `Application::build`.

use std::net::{SocketAddr, TcpListener};

use actix::{Actor, Addr};
use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};

use crate::actors::Hub;
use crate::config::Settings;
use crate::domain::auth::token_digest;
use crate::domain::message::SendRate;
use crate::domain::session::AccessPolicy;
use crate::http::guard::{self, AllowedHosts};
use crate::http::{self, BodyLimit};
use crate::mcp::McpRegistry;
use crate::mcp::registry::CloseStreams;
use crate::mcp::transport::StreamLifetime;
use crate::store::Store;
use crate::store::claim::{Claim, claim as claim_database};
use actix_web::middleware::from_fn;

/// Grace period for in-flight requests on SIGINT/SIGTERM before connections are dropped.
const SHUTDOWN_GRACE_SECS: u64 = 30;

pub struct Application {
    server: Server,
    shutdown: Shutdown,
    addr: SocketAddr,
    store: Store,
    database: String,
    /// This hub's exclusive claim on its database, released after the last write committed.
    claim: Claim,
}

impl Application {
    /// Opens the database (applying migrations), starts the actors and binds the listener. Must
    /// run inside an actix system. Errors are one line, fit for a person.
    pub async fn build(settings: Settings) -> Result<Application, String> {
        let target = settings.db_target()?;
        let database = target.redacted();
        let listener = TcpListener::bind(&settings.bind)
            .map_err(|e| format!("cannot listen on {}: {e}", settings.bind))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the bound address: {e}"))?;
        let policy = AccessPolicy {
            // `[::ffff:127.0.0.1]` is loopback too.
            trust_loopback: addr.ip().to_canonical().is_loopback(),
            operator_digest: settings.operator_token.as_deref().map(token_digest),
            send_rate: SendRate {
                burst: settings.message_burst.max(1),
                per_sec: settings.message_rate,
            },
            disconnect_grace_secs: settings.disconnect_grace_secs.max(1),
            conflict_window_secs: settings.conflict_window_secs,
        };
        if settings.conflict_window_secs > 30 * 24 * 3600 {
            return Err("--conflict-window-secs is at most 30 days (2592000)".into());
        }
        if settings.disconnect_grace_secs > 7 * 24 * 3600 {
            return Err("--disconnect-grace-secs is at most 7 days (604800)".into());
        }
        if !(settings.message_rate.is_finite() && settings.message_rate > 0.0) {
            return Err(format!(
                "--message-rate must be a positive number of messages per second, not {}",
                settings.message_rate
            ));
        }
        if !policy.trust_loopback && policy.operator_digest.is_none() {
            return Err(format!(
                "{addr} is reachable beyond this machine: set --operator-token (COLLAB_HUB_OPERATOR_TOKEN) so that sessions cannot be created by anyone"
            ));
        }
        let claim = {
            let (target, listening) = (target.clone(), addr.to_string());
            actix_web::rt::task::spawn_blocking(move || claim_database(&target, &listening))
                .await
                .map_err(|e| format!("cannot claim the database: {e}"))??
        };
        if settings.retention_interval_secs == 0 {
            return Err("--retention-interval-secs must be at least 1".into());
        }
        let evolution = settings.evolution()?;
        let store = Store::open(target).await?;
        let hub = Hub::new(store.clone(), policy, evolution).start();
        crate::actors::retention::Retention::new(
            store.clone(),
            settings.retention(),
            std::time::Duration::from_secs(settings.retention_interval_secs),
        )
        .start();
        let registry = McpRegistry::new(hub.clone(), store.clone()).start();
        let mut hosts = settings.allowed_hosts.clone();
        if !addr.ip().is_unspecified() {
            hosts.push(match addr.ip() {
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            });
        }
        let ws = std::sync::Arc::new(crate::ws::WsStats::default());
        let server = http_server(
            listener,
            &settings,
            hosts,
            hub,
            registry.clone(),
            ws.clone(),
        )?;
        Ok(Application {
            server,
            shutdown: Shutdown { registry, ws },
            addr,
            store,
            database,
            claim,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The database as it may be shown (password redacted).
    pub fn database(&self) -> &str {
        &self.database
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// What ends the connections that never end by themselves (event streams, WebSockets),
    /// for a graceful stop.
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Serves until stopped (Ctrl-C, SIGTERM or `handle().stop()`), lets in-flight requests
    /// finish, then lets every queued write commit before returning.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let (handle, shutdown) = (self.server.handle(), self.shutdown.clone());
        // Our own signal handling: open event streams never finish by themselves, so they are
        // ended first; then the server drains the requests still in flight.
        actix_web::rt::spawn(async move {
            shutdown_signal().await;
            log::info!("stopping: ending event streams, finishing requests in flight");
            shutdown.begin().await;
            handle.stop(true).await;
        });
        let served = self.server.await;
        self.store.shutdown().await;
        // Releasing joins the claim's watchdog thread: not on an async worker.
        let claim = self.claim;
        let _ = actix_web::rt::task::spawn_blocking(move || drop(claim)).await;
        served
    }
}

/// Ends the connections that stay open until told: MCP event streams and WebSockets.
#[derive(Clone)]
pub struct Shutdown {
    registry: Addr<McpRegistry>,
    ws: std::sync::Arc<crate::ws::WsStats>,
}

impl Shutdown {
    pub async fn begin(&self) {
        let _ = self.registry.send(CloseStreams).await;
        self.ws.close_all();
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    use actix_web::rt::signal;
    #[cfg(unix)]
    {
        let mut term = match signal::unix::signal(signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                log::warn!("cannot listen for SIGTERM: {e}");
                let _ = signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = signal::ctrl_c().await;
}

fn http_server(
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
            .wrap(from_fn(guard::check_origin))
            .app_data(AllowedHosts::new(&hosts))
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
