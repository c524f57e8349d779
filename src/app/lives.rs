//! A hub's lives on one socket: an owner serves (`Serving`, built from the database), a
//! standby forwards to the owner (`Standby`), and each becomes the other: a standby that takes
//! the lease loads and serves, an owner that loses it drops what it held and forwards
//! (docs/multi-hub.md, "Stepping down").

use std::net::TcpListener;

use actix::{Actor, Arbiter};
use actix_web::dev::{Server, ServerHandle};

use super::Shutdown;
use super::servers::{allowed_hosts, http_server, standby_server};
use crate::actors::Hub;
use crate::config::Settings;
use crate::domain::session::AccessPolicy;
use crate::mcp::McpRegistry;
use crate::store::Store;
use crate::store::claim::Claim;
use crate::store::lease::{Fence, LeaseKeeper, ProjectLeases, Role};

/// How long a stopping owner keeps serving after it told the standbys to hold their requests
/// for the next owner: they read notices every 25 ms (`store::lease`), and what they sent
/// before reading it is still answered here.
const DRAIN_NOTICE: std::time::Duration = std::time::Duration::from_millis(150);

/// An owner serves; a standby (another hub owns the shared PostgreSQL database) forwards to
/// it, and becomes the owner when it takes the lease over. An owner that loses its lease
/// becomes a standby. (One per process at a time: its size does not matter.)
#[allow(clippy::large_enum_variant)]
pub(super) enum Mode {
    Owner(Owner),
    Standby(Standby),
}

/// What a hub keeps across its lives (owner, standby, owner again): its settings, its socket,
/// its access policy and its claim on the database.
pub(super) struct Base {
    pub(super) settings: Settings,
    pub(super) listener: TcpListener,
    pub(super) policy: AccessPolicy,
    /// Released after the last write committed.
    pub(super) claim: Claim,
}

pub(super) struct Owner {
    pub(super) serving: Serving,
    /// On PostgreSQL: the lease that makes this hub the owner, handed back on a clean stop.
    pub(super) lease: Option<LeaseKeeper>,
    pub(super) base: Base,
}

/// What an owner serves with, built from the database at the start of each of its lives: the
/// store (fenced with the lease it was built under), the actors and the server.
pub(super) struct Serving {
    pub(super) server: Server,
    pub(super) shutdown: Shutdown,
    store: Store,
    /// The lease (holder and generation) the store's writer is fenced with; None on SQLite.
    fence: Option<Fence>,
    /// The project leases this life serves under (None on SQLite): closed when it ends.
    leases: Option<ProjectLeases>,
    /// The thread the actors run on (the hub, which takes its session threads with it, the
    /// MCP registry, retention).
    actors: ActorThread,
}

/// An arbiter that is stopped when dropped: an owner's actors go with its life, whether it
/// ends by a stop, a step-down, an error or (in tests) by being dropped.
pub(super) struct ActorThread(Arbiter);

impl Drop for ActorThread {
    fn drop(&mut self) {
        self.0.stop();
    }
}

pub(super) struct Standby {
    /// The forwarding server, running from the moment the standby is made (a server does
    /// nothing until polled: spawned, it accepts at once).
    pub(super) handle: ServerHandle,
    served: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    /// Told once the owner's server runs here after a takeover (`Forwarding::owner_ready`).
    owner_ready: tokio::sync::watch::Sender<bool>,
    pub(super) lease: LeaseKeeper,
    base: Base,
}

impl Owner {
    /// Serves until stopped (None), or until this hub's lease is lost (a database out of
    /// reach for longer than the lease, another hub took it over): then its parts are
    /// dropped, since their memory may be stale, and it goes on as a standby (Some).
    pub(super) async fn run(
        self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<Option<Standby>> {
        let Owner {
            serving,
            lease,
            base,
        } = self;
        let Serving {
            server,
            shutdown,
            store,
            fence,
            leases,
            actors,
        } = serving;
        let handle = server.handle();
        let drainer = lease.as_ref().and_then(LeaseKeeper::drainer);
        let mut served = actix_web::rt::spawn(server);
        let lapsed = lease_lost(lease.as_ref().map(LeaseKeeper::watch).zip(fence));
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
                    let Some(lease) = lease else {
                        unreachable!("only a lease lapses");
                    };
                    log::warn!("this hub lost its lease: ending its streams and serving as a standby");
                    // Its projects at once, not after its requests drained (up to the grace
                    // period): the next owner would find them held by a live process and
                    // refuse them meanwhile. What this store still has queued is refused by
                    // the fences (the hub lease's, and each project's once it is taken).
                    if let Some(leases) = &leases {
                        leases.let_go_all();
                    }
                    // The standby's server first, on the same socket, and this one accepts no
                    // more: no connection is refused, and a client whose stream ends
                    // reconnects through the standby's server to the next owner.
                    let standby = Standby::start(base, lease).map_err(std::io::Error::other)?;
                    handle.pause().await;
                    shutdown.begin().await;
                    handle.stop(true).await;
                    let _ = served.await;
                    drop(actors);
                    store.shutdown().await;
                    return Ok(Some(standby));
                }
            }
        };
        drop(actors);
        store.shutdown().await;
        // Releasing joins the claim's watchdog and the lease's thread (handing the lease to a
        // standby): not on an async worker.
        let claim = base.claim;
        let _ = actix_web::rt::task::spawn_blocking(move || {
            drop(lease);
            drop(claim)
        })
        .await;
        served.map(|()| None)
    }
}

/// Resolves once the lease's role no longer names this process with the holder and generation
/// its store is fenced with (never without a lease, on SQLite).
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

/// How long a hub that took the lease keeps trying to load (its database may still be coming
/// back) before it gives up, as a multiple of the lease: then it exits, and its life lock
/// tells the other hubs at once.
const LOAD_TRIES_FOR_LEASES: u32 = 1;

impl Standby {
    /// A standby of `base`: its forwarding server runs on a clone of the socket from now on.
    pub(super) fn start(base: Base, lease: LeaseKeeper) -> Result<Standby, String> {
        let own = base
            .listener
            .try_clone()
            .map_err(|e| format!("cannot share the listening socket: {e}"))?;
        let (owner_ready, ready) = tokio::sync::watch::channel(false);
        let server = standby_server(own, &base.settings, &lease, ready)?;
        Ok(Standby {
            handle: server.handle(),
            served: actix_web::rt::spawn(server),
            owner_ready,
            lease,
            base,
        })
    }

    /// Forwards until stopped (None) or until this hub takes the lease over: then the owner's
    /// server starts on the same socket before the forwarding one stops, so no connection is
    /// refused in between.
    pub(super) async fn wait_for_ownership(
        self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> std::io::Result<Option<Owner>> {
        let Standby {
            handle,
            mut served,
            owner_ready,
            lease,
            base,
        } = self;
        let mut role = lease.watch();
        let told = stop.clone();
        let signal = stop.wait_for(|stopped| *stopped);
        tokio::pin!(signal);
        // A finished future must not be polled again.
        let mut stopping = false;
        let patience =
            std::time::Duration::from_secs(base.settings.lease_secs) * LOAD_TRIES_FOR_LEASES;
        let mut failing_since: Option<std::time::Instant> = None;
        loop {
            // Seen now, not only when it changes: an owner that stepped down may have taken
            // the lease back while it dropped its parts. Not once told to stop: the stop
            // hands the lease back instead.
            let fence = role.borrow_and_update().clone();
            let stopped = stopping || *told.borrow();
            if let (Role::Owner { generation, holder }, false) = (fence, stopped) {
                log::info!("this hub took the lease over; loading and serving as the owner");
                handle.pause().await;
                let fence = Fence { holder, generation };
                match Serving::build(&base, Some(fence), Some(lease.project_leases())).await {
                    Ok(serving) => {
                        // Requests this server still holds go to the owner's server now.
                        owner_ready.send_replace(true);
                        actix_web::rt::spawn(async move {
                            handle.stop(true).await;
                            let _ = served.await;
                        });
                        let lease = Some(lease);
                        return Ok(Some(Owner {
                            serving,
                            lease,
                            base,
                        }));
                    }
                    Err(e) => {
                        handle.resume().await;
                        let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() >= patience {
                            return Err(std::io::Error::other(format!(
                                "this hub holds the lease but cannot load from the database: {e}"
                            )));
                        }
                        log::error!(
                            "this hub holds the lease but cannot load yet ({e}); trying again in a second"
                        );
                        actix_web::rt::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            failing_since = None;
            tokio::select! {
                done = &mut served => {
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
    }
}

impl Serving {
    /// Loads from the database and starts serving on a clone of `base`'s socket. `fence`: the
    /// lease this hub holds (PostgreSQL), which every batch of the store's writer checks;
    /// `leases`: the project leases, under which its projects are served (PostgreSQL).
    pub(super) async fn build(
        base: &Base,
        fence: Option<Fence>,
        leases: Option<ProjectLeases>,
    ) -> Result<Serving, String> {
        let settings = &base.settings;
        let target = settings.db_target()?;
        let addr = base
            .listener
            .local_addr()
            .map_err(|e| format!("cannot read the bound address: {e}"))?;
        let evolution = settings.evolution()?;
        let store = Store::open_fenced(target.clone(), fence.clone()).await?;
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
                Hub::new(store, policy, evolution, leases, idle, tail)
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
        )?;
        Ok(Serving {
            server,
            shutdown: Shutdown {
                registry: Some(registry),
                ws: Some(ws),
            },
            store,
            fence,
            leases,
            actors,
        })
    }
}
