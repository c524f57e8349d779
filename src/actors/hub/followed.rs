//! Sessions held by another hub, followed here through the event tail (`store::tail`): a
//! dashboard connected to this hub watches sessions of every project, and a project's session
//! actor runs only at the hub holding its lease (docs/multi-hub.md, routing prerequisite 3).
//! The tail reads the session's log from the database and hands each event once, in order, as
//! it commits, whoever wrote it; so a follower here needs nothing of the holder.
//!
//! The tail (one listening connection and one thread) starts at its first use: a hub that never
//! serves a dashboard watching another hub's sessions never opens it.
//!
//! A project subscription also follows the sessions created in its project from then on. The
//! hub announces those it creates (`WatchOpened`); those created at another hub it learns from
//! the database, read at most every `LISTED_FOR` per project whatever the number of dashboards
//! asking (`ProjectSessions`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::Hub;
use crate::domain::session::SessionStatus;
use crate::error::HubError;
use crate::store::queries;
use crate::store::schema::sessions;
use crate::store::tail::EventTail;

/// Projects whose session lists are kept, at most (the cache is emptied past it).
const LISTED_PROJECTS: usize = 10_000;

/// How long a project's list of sessions is answered from memory.
pub const LISTED_FOR: std::time::Duration = std::time::Duration::from_secs(3);

/// Sessions a project's list holds, at most (a project subscription covers as many).
const LISTED_SESSIONS: i64 = 100;

/// What this hub needs to follow sessions other hubs serve, on a database (PostgreSQL) several
/// hubs may share: the event tail, started when first asked for, and the projects' lists of
/// sessions read lately.
pub(super) struct Following {
    url: String,
    tail: Option<Arc<EventTail>>,
    listed: HashMap<String, (Instant, Listed)>,
}

impl Following {
    pub(super) fn new(url: String) -> Following {
        Following {
            url,
            tail: None,
            listed: HashMap::new(),
        }
    }

    fn tail(&mut self) -> Result<Arc<EventTail>, HubError> {
        if let Some(tail) = &self.tail {
            return Ok(tail.clone());
        }
        let tail = Arc::new(EventTail::start(&self.url).map_err(HubError::Unavailable)?);
        self.tail = Some(tail.clone());
        Ok(tail)
    }
}

/// A session another hub serves, to be followed here by the operator's viewer (or a dashboard
/// seat, `seat_confirmed`): its last event id now, and the tail to follow it through. Only for
/// a session answered `Elsewhere`; a hub without a tail (SQLite, one hub per file) answers
/// `Unavailable`.
#[derive(Message)]
#[rtype(result = "Result<Followed, HubError>")]
pub struct FollowElsewhere {
    pub session: Uuid,
    /// Only the operator's viewers follow a session whole (what the tail hands)...
    pub credential: crate::domain::auth::Credential,
    /// ...or a participant its own session, its seat confirmed by the hub serving it, its
    /// feed filtered to what it may see (`ws::subscription`, `Live::Tail`). The caller's word
    /// alone: set only by `ws::connection::seat_elsewhere`, after that hub's `whoami`.
    pub seat_confirmed: bool,
}

pub struct Followed {
    pub last_event_id: i64,
    pub tail: Arc<EventTail>,
}

impl Handler<FollowElsewhere> for Hub {
    type Result = ResponseFuture<Result<Followed, HubError>>;

    fn handle(&mut self, msg: FollowElsewhere, _: &mut Context<Self>) -> Self::Result {
        let id = msg.session;
        if !msg.seat_confirmed
            && let Err(e) = self.policy.operator(&msg.credential)
        {
            return Box::pin(futures::future::ready(Err(e.into())));
        }
        let tail = self.following.as_mut().map(Following::tail);
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

/// A project's sessions that are not completed, with when each was created.
pub type Listed = Arc<Vec<(Uuid, DateTime<Utc>)>>;

/// The sessions of a project that are not completed (at most 100, most recently active first),
/// as read at most `LISTED_FOR` ago: how a project subscription learns of sessions another hub
/// created. `None`: no other hub serves sessions of this database (SQLite), so every session
/// is created, and announced, here.
#[derive(Message)]
#[rtype(result = "Result<Option<Listed>, HubError>")]
pub struct ProjectSessions(pub String);

impl Handler<ProjectSessions> for Hub {
    type Result = ResponseActFuture<Self, Result<Option<Listed>, HubError>>;

    fn handle(
        &mut self,
        ProjectSessions(project): ProjectSessions,
        _: &mut Context<Self>,
    ) -> Self::Result {
        let Some(following) = &mut self.following else {
            return Box::pin(fut::ready(Ok(None)));
        };
        if let Some((at, listed)) = following.listed.get(&project)
            && at.elapsed() < LISTED_FOR
        {
            return Box::pin(fut::ready(Ok(Some(listed.clone()))));
        }
        // Read once: those asking meanwhile get the list as it was (or none yet).
        if following.listed.len() >= LISTED_PROJECTS {
            following.listed.clear();
        }
        let before = following.listed.get(&project).map(|(_, l)| l.clone());
        following.listed.insert(
            project.clone(),
            (Instant::now(), before.unwrap_or_default()),
        );
        let (store, key) = (self.store.clone(), project.clone());
        let read = async move {
            let filter = queries::SessionFilter {
                project: Some(key),
                ..Default::default()
            };
            store
                .read(move |c| queries::list_sessions(c, &filter, LISTED_SESSIONS, 0))
                .await
        };
        Box::pin(read.into_actor(self).map(move |listed, act, _| {
            let listed: Listed = Arc::new(
                listed?
                    .into_iter()
                    .filter(|s| s.status != SessionStatus::Completed)
                    .map(|s| (s.session_id, s.created_at))
                    .collect(),
            );
            if let Some(following) = &mut act.following {
                following
                    .listed
                    .insert(project, (Instant::now(), listed.clone()));
            }
            Ok(Some(listed))
        }))
    }
}
