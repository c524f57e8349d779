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
use crate::store::lease::{LeaseConfig, LeaseKeeper, Role};
use lives::{Base, Mode, Owner, Serving, Standby};

pub struct Application {
    addr: SocketAddr,
    database: String,
    mode: Mode,
    signals: StopSignals,
}

impl Application {
    /// Opens the database (applying migrations), starts the actors and binds the listener. Must
    /// run inside an actix system. Errors are one line, fit for a person. On a PostgreSQL
    /// database another hub owns, the application is a standby that forwards to the owner.
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
        // The fence is read once: the store is built with it, and the owner steps down when
        // the lease no longer names it (the keeper may move on meanwhile).
        let mode = match lease {
            Some(lease) => match lease.fence() {
                Some(fence) => Mode::Owner(Owner {
                    serving: Serving::build(&base, Some(fence), Some(lease.project_leases()))
                        .await?,
                    lease: Some(lease),
                    base,
                }),
                None => Mode::Standby(Standby::start(base, lease)?),
            },
            None => Mode::Owner(Owner {
                serving: Serving::build(&base, None, None).await?,
                lease: None,
                base,
            }),
        };
        Ok(Application {
            addr,
            database,
            mode,
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

    /// Where a standby forwards to (None: this hub owns its database).
    pub fn forwarding_to(&self) -> Option<String> {
        match &self.mode {
            Mode::Owner(_) => None,
            Mode::Standby(s) => match s.lease.role() {
                Role::Standby { url, .. } => Some(url),
                _ => Some("the next owner".into()),
            },
        }
    }

    /// The server of this hub's first life (an owner that steps down serves on with another).
    pub fn handle(&self) -> ServerHandle {
        match &self.mode {
            Mode::Owner(o) => o.serving.server.handle(),
            Mode::Standby(s) => s.handle.clone(),
        }
    }

    /// What ends the connections that never end by themselves (event streams, WebSockets),
    /// for a graceful stop (of this hub's first life).
    pub fn shutdown(&self) -> Shutdown {
        match &self.mode {
            Mode::Owner(o) => o.serving.shutdown.clone(),
            Mode::Standby(_) => Shutdown {
                registry: None,
                ws: None,
            },
        }
    }

    /// Serves until stopped (Ctrl-C, SIGTERM, or `handle().stop()` in the first life), lets
    /// in-flight requests finish, then lets every queued write commit before returning. A
    /// standby serves until it is stopped or becomes the owner, and then serves as the owner;
    /// an owner that loses its lease becomes a standby again.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        // Listened for once, for the process's whole life: a SIGTERM that arrives while a
        // standby turns into the owner is not lost between the two.
        let (told, stop) = tokio::sync::watch::channel(false);
        let signals = self.signals;
        actix_web::rt::spawn(async move {
            signals.received().await;
            told.send_replace(true);
        });
        // An owner that loses its lease steps down to a standby, which serves as the owner
        // again once it takes the lease back: as many lives as that takes, on one socket.
        let mut mode = self.mode;
        loop {
            mode = match mode {
                Mode::Owner(owner) => match owner.run(stop.clone()).await? {
                    Some(standby) => Mode::Standby(standby),
                    None => return Ok(()),
                },
                Mode::Standby(standby) => match standby.wait_for_ownership(stop.clone()).await? {
                    Some(owner) => Mode::Owner(owner),
                    None => return Ok(()),
                },
            };
        }
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
    registry: Option<Addr<McpRegistry>>,
    ws: Option<std::sync::Arc<crate::ws::WsStats>>,
}

impl Shutdown {
    pub async fn begin(&self) {
        if let Some(registry) = &self.registry {
            let _ = registry.send(CloseStreams).await;
        }
        if let Some(ws) = &self.ws {
            ws.close_all();
        }
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
