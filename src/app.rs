//! Wiring: opens the store, starts the actors, binds the HTTP server. `main` and the integration
//! tests build the hub the same way, through `Application::build`.

mod lives;
mod servers;

use std::net::{SocketAddr, TcpListener};

use actix::Addr;
use actix_web::dev::ServerHandle;

use crate::config::Settings;
use crate::domain::auth::token_digest;
use crate::domain::message::SendRate;
use crate::domain::session::AccessPolicy;
use crate::mcp::McpRegistry;
use crate::mcp::registry::CloseStreams;
use crate::store::DbTarget;
use crate::store::claim::claim as claim_database;
use crate::store::lease::{LeaseConfig, LeaseKeeper};
use lives::{Base, Life, Serving};

pub struct Application {
    addr: SocketAddr,
    database: String,
    life: Life,
    signals: StopSignals,
}

impl Application {
    /// Opens the database (applying migrations), starts the actors and binds the listener. Must
    /// run inside an actix system. Errors are one line, fit for a person. On a PostgreSQL
    /// database other hubs share, it serves the projects it takes and passes the others on.
    pub async fn build(settings: Settings) -> Result<Application, String> {
        // First: a stop sent while the hub starts (it may take the lease meanwhile) is
        // carried out once it runs, not by the signal's default action.
        let signals = StopSignals::listen();
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
        if settings.retention_interval_secs == 0 {
            return Err("--retention-interval-secs must be at least 1".into());
        }
        if !(1..=3600).contains(&settings.lease_secs) {
            return Err("--lease-secs is between 1 and 3600".into());
        }
        settings.evolution()?;
        let claim = {
            let (target, listening) = (target.clone(), addr.to_string());
            actix_web::rt::task::spawn_blocking(move || claim_database(&target, &listening))
                .await
                .map_err(|e| format!("cannot claim the database: {e}"))??
        };
        let lease = match &target {
            DbTarget::Postgres(url) => {
                // The lease lives in a table: the schema first (one hub at a time migrates).
                let migrating = target.clone();
                actix_web::rt::task::spawn_blocking(move || crate::store::migrate(&migrating))
                    .await
                    .map_err(|e| format!("cannot migrate: {e}"))??;
                let config = LeaseConfig {
                    database_url: url.clone(),
                    url: advertised(&settings, addr)?,
                    trusts_loopback: policy.trust_loopback,
                    ttl: std::time::Duration::from_secs(settings.lease_secs),
                };
                let lease = actix_web::rt::task::spawn_blocking(move || LeaseKeeper::start(config))
                    .await
                    .map_err(|e| format!("cannot take the lease: {e}"))??;
                Some(lease)
            }
            DbTarget::Sqlite(_) => None,
        };
        let base = Base {
            settings,
            listener,
            policy,
            claim,
        };
        let life = Life {
            serving: Serving::build(&base, lease.as_ref()).await?,
            lease,
            base,
        };
        Ok(Application {
            addr,
            database,
            life,
            signals,
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

    /// The server this hub serves with.
    pub fn handle(&self) -> ServerHandle {
        self.life.serving.server.handle()
    }

    /// What ends the connections that never end by themselves (event streams, WebSockets),
    /// for a graceful stop.
    pub fn shutdown(&self) -> Shutdown {
        self.life.serving.shutdown.clone()
    }

    /// Serves until stopped (Ctrl-C, SIGTERM, or `handle().stop()`), lets in-flight requests
    /// finish, then lets every queued write commit before returning.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let (told, stop) = tokio::sync::watch::channel(false);
        let signals = self.signals;
        actix_web::rt::spawn(async move {
            signals.received().await;
            told.send_replace(true);
        });
        self.life.run(stop).await
    }
}

/// The address the other hubs reach this one at.
fn advertised(settings: &Settings, addr: SocketAddr) -> Result<String, String> {
    if let Some(url) = &settings.advertise_url {
        if !url.starts_with("http://") {
            return Err(format!("--advertise-url must be an http:// URL, not {url}"));
        }
        return Ok(url.trim_end_matches('/').to_owned());
    }
    let ip = match addr.ip() {
        ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    Ok(format!("http://{}", SocketAddr::new(ip, addr.port())))
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

/// SIGINT (Ctrl-C) and SIGTERM, listened for from the moment this is made: from then on they
/// stop the hub gracefully instead of ending the process (their default action). Made when the
/// application's build begins, so that a stop sent the instant a script read where it listens
/// is not lost (before, that killed the hub, skipping the hand-over).
struct StopSignals {
    #[cfg(unix)]
    both: Option<(
        actix_web::rt::signal::unix::Signal,
        actix_web::rt::signal::unix::Signal,
    )>,
}

impl StopSignals {
    fn listen() -> StopSignals {
        #[cfg(unix)]
        {
            use actix_web::rt::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(int), Ok(term)) => StopSignals {
                    both: Some((int, term)),
                },
                (Err(e), _) | (_, Err(e)) => {
                    log::warn!("cannot listen for SIGINT and SIGTERM: {e}");
                    StopSignals { both: None }
                }
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Resolves on the first of them.
    async fn received(self) {
        #[cfg(unix)]
        match self.both {
            Some((mut int, mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            None => {
                let _ = actix_web::rt::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = actix_web::rt::signal::ctrl_c().await;
    }
}
