//! The retention sweep: every interval, compacts the completed sessions the policy names, one
//! at a time and in small transactions, so live sessions' writes never wait long behind it.
//!
//! Every hub runs one. A session's rows are its project's: each session is compacted through
//! its project's store (`ProjectStore`), fenced with the lease this hub holds the project under
//! (taken if it is free). A project another hub holds is left to that hub's sweep: writes of a
//! project moved mid-compaction are refused by the fence, and a compaction cut short leaves a
//! session that loads (`store::retention`).

use std::time::Duration;

use actix::prelude::*;

use super::Hub;
use super::hub::ProjectStore;
use crate::domain::now;
use crate::domain::retention::RetentionPolicy;
use crate::error::HubError;
use crate::store::{Store, retention};

pub struct Retention {
    /// Reads which sessions are due.
    store: Store,
    /// Gives each session's project store.
    hub: Addr<Hub>,
    policy: RetentionPolicy,
    every: Duration,
    running: bool,
}

impl Retention {
    pub fn new(
        store: Store,
        hub: Addr<Hub>,
        policy: RetentionPolicy,
        every: Duration,
    ) -> Retention {
        Retention {
            store,
            hub,
            policy,
            every,
            running: false,
        }
    }
}

impl Actor for Retention {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.policy.is_off() {
            return;
        }
        ctx.run_interval(self.every, |act, ctx| {
            if act.running {
                return;
            }
            act.running = true;
            let (store, hub, policy) = (act.store.clone(), act.hub.clone(), act.policy);
            ctx.spawn(
                sweep(store, hub, policy)
                    .into_actor(act)
                    .map(|_, act, _| act.running = false),
            );
        });
    }
}

/// One sweep; failures are logged and retried at the next interval.
async fn sweep(store: Store, hub: Addr<Hub>, policy: RetentionPolicy) {
    let due = match store
        .read(move |c| retention::candidates(c, &policy, now()))
        .await
    {
        Ok(d) => d,
        Err(e) => {
            log::warn!("retention: cannot list sessions to compact: {e}");
            return;
        }
    };
    for (id, project) in due {
        let store = match hub
            .send(ProjectStore(project))
            .await
            .map_err(HubError::from)
        {
            Ok(Ok(store)) => store,
            Ok(Err(why @ (HubError::Unavailable(_) | HubError::Elsewhere { .. }))) => {
                log::debug!("retention: session {id} left for a later sweep: {why}");
                continue;
            }
            Ok(Err(e)) | Err(e) => {
                log::warn!("retention: session {id}: {e}");
                continue;
            }
        };
        let sealed = store
            .write_for(id, move |c| retention::seal(c, id, now()))
            .await;
        let through = match sealed {
            Ok(t) => t,
            Err(e) => {
                log::warn!("retention: session {id}: no final snapshot, nothing deleted: {e}");
                continue;
            }
        };
        let mut deleted = 0;
        loop {
            match store
                .write_for(id, move |c| retention::delete_chunk(c, id, through))
                .await
            {
                Ok(0) => break,
                Ok(n) => deleted += n,
                Err(e) => {
                    log::warn!("retention: session {id}: {e}");
                    break;
                }
            }
        }
        if let Err(e) = store
            .write_for(id, move |c| retention::prune_snapshots(c, id, through))
            .await
        {
            log::warn!("retention: session {id}: older snapshots kept: {e}");
        }
        log::info!("retention: compacted session {id}: {deleted} events through #{through}");
    }
}
