//! A hub's life on its socket: it loads from the database and serves (`Serving`) until it is
//! stopped. On PostgreSQL every hub sharing the database serves the projects whose leases it
//! holds, and passes a request for a project another hub holds on to it (`http::hop`); holding
//! the `hub` row adds only the hub-wide duties (`HubRow`), which move with the row without the
//! hub serving any differently (docs/multi-hub.md, "The switch").

use std::net::TcpListener;

use actix::{Actor, Arbiter};
use actix_web::dev::Server;

use super::Shutdown;
use super::servers::{allowed_hosts, http_server};
use crate::actors::Hub;
use crate::config::Settings;
use crate::domain::session::AccessPolicy;
use crate::mcp::McpRegistry;
use crate::store::Store;
use crate::store::claim::Claim;
use crate::store::lease::{HubRow, LeaseKeeper};

/// What a hub keeps for its whole life: its settings, its socket, its access policy and its
/// claim on the database.
pub(super) struct Base {
    pub(super) settings: Settings,
    pub(super) listener: TcpListener,
    pub(super) policy: AccessPolicy,
    /// Released after the last write committed.
    pub(super) claim: Claim,
}

/// A running hub: what it serves with, and (PostgreSQL) the lease keeper that holds its
/// projects and, while it has it, the `hub` row.
pub(super) struct Life {
    pub(super) serving: Serving,
    /// Hands every lease back on a clean stop, after the last write committed.
    pub(super) lease: Option<LeaseKeeper>,
    pub(super) base: Base,
}

/// What a hub serves with, built from the database: the store, the actors and the server.
pub(super) struct Serving {
    pub(super) server: Server,
    pub(super) shutdown: Shutdown,
    store: Store,
    /// The thread the actors run on (the hub, which takes its session threads with it, the
    /// MCP registry, retention).
    actors: ActorThread,
}

/// An arbiter that is stopped when dropped: the actors go with the life, whether it ends by a
/// stop, an error or (in tests) by being dropped.
pub(super) struct ActorThread(Arbiter);

impl Drop for ActorThread {
    fn drop(&mut self) {
        self.0.stop();
    }
}

impl Life {
    /// Serves until stopped: open event streams are ended, the requests in flight finish, the
    /// last writes commit, and only then are the leases handed back (so the next hub to take
    /// a project finds every acknowledged write of it).
    pub(super) async fn run(
        self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let Life {
            serving,
            lease,
            base,
        } = self;
        let Serving {
            server,
            shutdown,
            store,
            actors,
        } = serving;
        let handle = server.handle();
        let mut served = actix_web::rt::spawn(server);
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
                    log::info!("stopping: ending event streams, finishing requests in flight");
                    shutdown.begin().await;
                    handle.stop(true).await;
                }
            }
        };
        drop(actors);
        store.shutdown().await;
        // Releasing joins the claim's watchdog and the lease's thread (handing the leases
        // back): not on an async worker.
        let claim = base.claim;
        let _ = actix_web::rt::task::spawn_blocking(move || {
            drop(lease);
            drop(claim)
        })
        .await;
        served
    }
}

impl Serving {
    /// Loads from the database and starts serving on a clone of `base`'s socket. `lease`: the
    /// lease keeper (PostgreSQL), under whose project leases the projects are served, and whose
    /// `hub` row says whether this hub runs the hub-wide duties.
    pub(super) async fn build(base: &Base, lease: Option<&LeaseKeeper>) -> Result<Serving, String> {
        let settings = &base.settings;
        let target = settings.db_target()?;
        let addr = base
            .listener
            .local_addr()
            .map_err(|e| format!("cannot read the bound address: {e}"))?;
        let evolution = settings.evolution()?;
        let store = Store::open(target.clone()).await?;
        let leases = lease.map(LeaseKeeper::project_leases);
        let hub_row = HubRow::of(lease);
        // On a thread of their own, so that they all go with this life.
        let actors = ActorThread(Arbiter::new());
        let hub = {
            let (store, policy) = (store.clone(), base.policy.clone());
            let leases = leases.clone();
            let idle = (settings.idle_secs > 0)
                .then(|| std::time::Duration::from_secs(settings.idle_secs));
            // Sessions another hub serves are followed through the database's notices.
            let tail = match (&target, &leases) {
                (crate::store::DbTarget::Postgres(url), Some(_)) => Some(url.clone()),
                _ => None,
            };
            Hub::start_in_arbiter(&actors.0.handle(), move |_| {
                Hub::new(store, policy, evolution, leases, idle, tail, hub_row)
            })
        };
        let retention = (
            store.clone(),
            settings.retention(),
            std::time::Duration::from_secs(settings.retention_interval_secs),
        );
        {
            let hub = hub.clone();
            crate::actors::retention::Retention::start_in_arbiter(&actors.0.handle(), move |_| {
                crate::actors::retention::Retention::new(retention.0, hub, retention.1, retention.2)
            });
        }
        let registry = {
            let (hub, store) = (hub.clone(), store.clone());
            McpRegistry::start_in_arbiter(&actors.0.handle(), move |_| McpRegistry::new(hub, store))
        };
        let ws = std::sync::Arc::new(crate::ws::WsStats::default());
        let listener = base
            .listener
            .try_clone()
            .map_err(|e| format!("cannot share the listening socket: {e}"))?;
        let server = http_server(
            listener,
            settings,
            allowed_hosts(settings, addr),
            hub,
            registry.clone(),
            ws.clone(),
            leases,
        )?;
        Ok(Serving {
            server,
            shutdown: Shutdown { registry, ws },
            store,
            actors,
        })
    }
}
