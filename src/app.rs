//! Wiring: opens the store, starts the actors, binds the HTTP server. `main` and the integration
//! tests build the hub the same way, through `Application::build`.

use std::net::{SocketAddr, TcpListener};

use actix::{Actor, Addr, Arbiter};
use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};

use crate::actors::Hub;
use crate::config::Settings;
use crate::domain::auth::token_digest;
use crate::domain::message::SendRate;
use crate::domain::session::AccessPolicy;
use crate::http::forward::{self, Forwarding};
use crate::http::guard::{self, AllowedHosts};
use crate::http::{self, BodyLimit};
use crate::mcp::McpRegistry;
use crate::mcp::registry::CloseStreams;
use crate::mcp::transport::StreamLifetime;
use crate::store::claim::{Claim, claim as claim_database};
use crate::store::lease::{Fence, LeaseConfig, LeaseKeeper, Role};
use crate::store::{DbTarget, Store};
use actix_web::middleware::from_fn;

/// Grace period for in-flight requests on SIGINT/SIGTERM before connections are dropped.
const SHUTDOWN_GRACE_SECS: u64 = 30;

/// How long a stopping owner keeps serving after it told the standbys to hold their requests
/// for the next owner: they read notices every 25 ms (`store::lease`), and what they sent
/// before reading it is still answered here.
const DRAIN_NOTICE: std::time::Duration = std::time::Duration::from_millis(150);

pub struct Application {
    addr: SocketAddr,
    database: String,
    mode: Mode,
    signals: StopSignals,
}

/// An owner serves; a standby (another hub owns the shared PostgreSQL database) forwards to
/// it, and becomes the owner when it takes the lease over. An owner that loses its lease
/// becomes a standby. (One per process at a time: its size does not matter.)
#[allow(clippy::large_enum_variant)]
enum Mode {
    Owner(Owner),
    Standby(Standby),
}

struct Owner {
    server: Server,
    shutdown: Shutdown,
    store: Store,
    /// This hub's claim on its database, released after the last write committed.
    claim: Claim,
    /// On PostgreSQL: the lease that makes this hub the owner, handed back on a clean stop.
    lease: Option<LeaseKeeper>,
    /// The thread the owner's actors run on (the hub, which takes its session threads with
    /// it, the MCP registry, retention): stopped when the owner steps down.
    parts: Arbiter,
    /// What a step-down serves as a standby with: the settings, a clone of the socket the
    /// server listens on, the access policy.
    settings: Settings,
    listener: TcpListener,
    policy: AccessPolicy,
}

struct Standby {
    /// The forwarding server, running from the moment the standby is made (a server does
    /// nothing until polled: spawned, it accepts at once).
    handle: ServerHandle,
    served: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    /// Told once the owner's server runs here after a takeover (`Forwarding::owner_ready`).
    owner_ready: tokio::sync::watch::Sender<bool>,
    /// What the owner's server is built from after a takeover, on the same socket.
    settings: Settings,
    listener: TcpListener,
    policy: AccessPolicy,
    claim: Claim,
    lease: LeaseKeeper,
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
        let mode = match lease {
            Some(lease) if !matches!(lease.role(), Role::Owner { .. }) => {
                let own = listener
                    .try_clone()
                    .map_err(|e| format!("cannot share the listening socket: {e}"))?;
                let (owner_ready, ready) = tokio::sync::watch::channel(false);
                let server = standby_server(own, &settings, &lease, ready)?;
                Mode::Standby(Standby {
                    handle: server.handle(),
                    served: actix_web::rt::spawn(server),
                    owner_ready,
                    settings,
                    listener,
                    policy,
                    claim,
                    lease,
                })
            }
            lease => Mode::Owner(build_owner(settings, listener, policy, claim, lease).await?),
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

    pub fn handle(&self) -> ServerHandle {
        match &self.mode {
            Mode::Owner(o) => o.server.handle(),
            Mode::Standby(s) => s.handle.clone(),
        }
    }

    /// What ends the connections that never end by themselves (event streams, WebSockets),
    /// for a graceful stop.
    pub fn shutdown(&self) -> Shutdown {
        match &self.mode {
            Mode::Owner(o) => o.shutdown.clone(),
            Mode::Standby(_) => Shutdown {
                registry: None,
                ws: None,
            },
        }
    }

    /// Serves until stopped (Ctrl-C, SIGTERM or `handle().stop()`), lets in-flight requests
    /// finish, then lets every queued write commit before returning. A standby serves until it
    /// is stopped or becomes the owner, and then serves as the owner.
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

impl Owner {
    /// Serves until stopped (None), or until this hub's lease is lost (a database out of
    /// reach for longer than the lease, another hub took it over): then its parts are
    /// dropped, since their memory may be stale, and it goes on as a standby (Some).
    async fn run(
        self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<Option<Standby>> {
        let (handle, shutdown) = (self.server.handle(), self.shutdown.clone());
        let drainer = self.lease.as_ref().and_then(LeaseKeeper::drainer);
        let mut served = actix_web::rt::spawn(self.server);
        let lapsed = lease_lost(
            self.lease
                .as_ref()
                .and_then(|lease| Some((lease.watch(), lease.fence()?))),
        );
        tokio::pin!(lapsed);
        let signal = stop.wait_for(|stopped| *stopped);
        tokio::pin!(signal);
        let mut stopping = false;
        let served = loop {
            tokio::select! {
                done = &mut served => {
                    break done.unwrap_or_else(|e| Err(std::io::Error::other(e)));
                }
                _ = &mut signal, if !stopping => {
                    stopping = true;
                    // Our own signal handling: open event streams never finish by themselves,
                    // so they are ended first; then the server drains the requests in flight.
                    if let Some(drainer) = &drainer {
                        // Standbys stop forwarding here before this server stops: a request
                        // they sent on a keep-alive connection it closes while stopping would
                        // be answered 503.
                        log::info!("stopping: telling the other hubs to hold requests for the next owner");
                        drainer.announce();
                        actix_web::rt::time::sleep(DRAIN_NOTICE).await;
                    }
                    log::info!("stopping: ending event streams, finishing requests in flight");
                    shutdown.begin().await;
                    handle.stop(true).await;
                }
                _ = &mut lapsed, if !stopping => {
                    let Some(lease) = self.lease else {
                        unreachable!("only a lease lapses");
                    };
                    // A standby's server first, on the same socket: no connection is refused
                    // while the owner's server stops.
                    let (owner_ready, ready) = tokio::sync::watch::channel(false);
                    let own = self.listener.try_clone()?;
                    let server = standby_server(own, &self.settings, &lease, ready)
                        .map_err(std::io::Error::other)?;
                    let standby = (server.handle(), actix_web::rt::spawn(server));
                    log::warn!("this hub lost its lease: ending its streams and serving as a standby");
                    // Its clients reconnect, through the standby's server, to the next owner.
                    shutdown.begin().await;
                    handle.stop(true).await;
                    let _ = served.await;
                    self.store.shutdown().await;
                    self.parts.stop();
                    return Ok(Some(Standby {
                        handle: standby.0,
                        served: standby.1,
                        owner_ready,
                        settings: self.settings,
                        listener: self.listener,
                        policy: self.policy,
                        claim: self.claim,
                        lease,
                    }));
                }
            }
        };
        self.store.shutdown().await;
        self.parts.stop();
        // Releasing joins the claim's watchdog and the lease's thread (handing the lease to a
        // standby): not on an async worker.
        let (claim, lease) = (self.claim, self.lease);
        let _ = actix_web::rt::task::spawn_blocking(move || {
            drop(lease);
            drop(claim)
        })
        .await;
        served.map(|()| None)
    }
}

/// Resolves once the lease's role no longer names this process with the generation its
/// parts were built under (never without a lease, on SQLite).
async fn lease_lost(lease: Option<(tokio::sync::watch::Receiver<Role>, Fence)>) {
    let Some((mut role, held)) = lease else {
        return std::future::pending().await;
    };
    let _ = role
        .wait_for(|now| {
            !matches!(now, Role::Owner { generation, holder }
                if *generation == held.generation && *holder == held.holder)
        })
        .await;
}

impl Standby {
    /// Forwards until stopped (None) or until this hub takes the lease over: then the owner's
    /// server starts on the same socket before the forwarding one stops, so no connection is
    /// refused in between.
    async fn wait_for_ownership(
        self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<Option<Owner>> {
        let handle = self.handle;
        let mut role = self.lease.watch();
        let mut served = self.served;
        let signal = stop.wait_for(|stopped| *stopped);
        tokio::pin!(signal);
        // A finished future must not be polled again.
        let mut stopping = false;
        loop {
            // Seen now, not only when it changes: an owner that stepped down may have taken
            // the lease back while it dropped its parts.
            if matches!(*role.borrow_and_update(), Role::Owner { .. }) {
                break;
            }
            tokio::select! {
                done = &mut served => {
                    let lease = self.lease;
                    let _ = actix_web::rt::task::spawn_blocking(move || drop(lease)).await;
                    return done.unwrap_or_else(|e| Err(std::io::Error::other(e))).map(|()| None);
                }
                _ = &mut signal, if !stopping => {
                    stopping = true;
                    log::info!("stopping the standby");
                    handle.stop(true).await;
                }
                changed = role.changed() => {
                    if changed.is_err() {
                        return Err(std::io::Error::other("the lease thread ended"));
                    }
                }
            }
        }
        log::info!("this hub took the lease over; loading and serving as the owner");
        handle.pause().await;
        let lease = Some(self.lease);
        let owner = build_owner(self.settings, self.listener, self.policy, self.claim, lease)
            .await
            .map_err(std::io::Error::other)?;
        // Requests this server still holds go to the owner's server now.
        self.owner_ready.send_replace(true);
        actix_web::rt::spawn(async move {
            handle.stop(true).await;
            let _ = served.await;
        });
        Ok(Some(owner))
    }
}

/// The owner's parts: the store (fenced by the lease on PostgreSQL), the actors and the server.
async fn build_owner(
    settings: Settings,
    listener: TcpListener,
    policy: AccessPolicy,
    claim: Claim,
    lease: Option<LeaseKeeper>,
) -> Result<Owner, String> {
    let target = settings.db_target()?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;
    let evolution = settings.evolution()?;
    let store = Store::open_fenced(target, lease.as_ref().and_then(LeaseKeeper::fence)).await?;
    // On a thread of their own, so that a step-down stops them all at once.
    let parts = Arbiter::new();
    let hub = {
        let (store, policy) = (store.clone(), policy.clone());
        Hub::start_in_arbiter(&parts.handle(), move |_| Hub::new(store, policy, evolution))
    };
    let retention = (
        store.clone(),
        settings.retention(),
        std::time::Duration::from_secs(settings.retention_interval_secs),
    );
    crate::actors::retention::Retention::start_in_arbiter(&parts.handle(), move |_| {
        crate::actors::retention::Retention::new(retention.0, retention.1, retention.2)
    });
    let registry = {
        let (hub, store) = (hub.clone(), store.clone());
        McpRegistry::start_in_arbiter(&parts.handle(), move |_| McpRegistry::new(hub, store))
    };
    let ws = std::sync::Arc::new(crate::ws::WsStats::default());
    let server = http_server(
        listener
            .try_clone()
            .map_err(|e| format!("cannot share the listening socket: {e}"))?,
        &settings,
        allowed_hosts(&settings, addr),
        hub,
        registry.clone(),
        ws.clone(),
    )?;
    Ok(Owner {
        server,
        shutdown: Shutdown {
            registry: Some(registry),
            ws: Some(ws),
        },
        store,
        claim,
        lease,
        parts,
        settings,
        listener,
        policy,
    })
}

fn allowed_hosts(settings: &Settings, addr: SocketAddr) -> Vec<String> {
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
fn standby_server(
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
