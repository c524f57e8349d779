//! Sessions held by another hub, followed here through the event tail (`store::tail`): a
//! dashboard connected to this hub watches sessions of every project, and a project's session
//! actor runs only at the hub holding its lease (docs/multi-hub.md, routing prerequisite 3).
//! The tail reads the session's log from the database and hands each event once, in order, as
//! it commits, whoever wrote it; so a follower here needs nothing of the holder.
//!
//! The tail (one listening connection and one thread) starts at its first use: a hub that never
//! serves a dashboard watching another hub's sessions never opens it.

use std::sync::Arc;

use actix::prelude::*;
use diesel::prelude::*;
use uuid::Uuid;

use super::Hub;
use crate::error::HubError;
use crate::store::schema::sessions;
use crate::store::tail::EventTail;

/// The event tail of this hub's database (PostgreSQL), started when first asked for.
pub(super) struct LazyTail {
    url: String,
    started: Option<Arc<EventTail>>,
}

impl LazyTail {
    pub(super) fn new(url: String) -> LazyTail {
        LazyTail { url, started: None }
    }

    fn get(&mut self) -> Result<Arc<EventTail>, HubError> {
        if let Some(tail) = &self.started {
            return Ok(tail.clone());
        }
        let tail = Arc::new(EventTail::start(&self.url).map_err(HubError::Unavailable)?);
        self.started = Some(tail.clone());
        Ok(tail)
    }
}

/// A session another hub serves, to be followed here by the operator's viewer: its last event
/// id now, and the tail to follow it through. Only for a session answered `Elsewhere`; a hub
/// without a tail (SQLite, one hub per file) answers `Unavailable`.
#[derive(Message)]
#[rtype(result = "Result<Followed, HubError>")]
pub struct FollowElsewhere(pub Uuid);

pub struct Followed {
    pub last_event_id: i64,
    pub tail: Arc<EventTail>,
}

impl Handler<FollowElsewhere> for Hub {
    type Result = ResponseFuture<Result<Followed, HubError>>;

    fn handle(
        &mut self,
        FollowElsewhere(id): FollowElsewhere,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let tail = self.tail.as_mut().map(LazyTail::get);
        let store = self.store.clone();
        Box::pin(async move {
            let tail = tail.ok_or_else(|| {
                HubError::Unavailable("no other hub serves sessions of this database".into())
            })??;
            let last_event_id = store
                .read(move |c| {
                    Ok(sessions::table
                        .find(id.to_string())
                        .select(sessions::last_event_id)
                        .first::<i64>(c)
                        .optional()?)
                })
                .await?
                .ok_or_else(|| HubError::session_not_found(id))?;
            Ok(Followed {
                last_event_id,
                tail,
            })
        })
    }
}
