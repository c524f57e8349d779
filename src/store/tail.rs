//! Following sessions' event logs from a process that does not own them, through PostgreSQL
//! `LISTEN/NOTIFY` (issue 14; docs/multi-hub.md, "Next", step 5): a hub that serves a dashboard
//! watching sessions of projects another hub owns tails those sessions here.
//!
//! - The database raises the notices: every statement that inserts events notifies
//!   `EVENTS_CHANNEL` with `<session id> <last event id>`, delivered at commit (migration
//!   `event_notices`). Notices carry ids only; the events are read from `events`.
//! - One thread per process with its own connection listens, and reads a followed session's new
//!   events when a notice names one past what its followers have. A follow starts with a read
//!   from the follower's last id, after `LISTEN` is in place, so nothing falls between the two.
//! - After its connection breaks, it connects and listens again and reads every followed
//!   session from its last id: a notice lost with the connection makes a read late, never an
//!   event lost.
//! - A follower gets each event once, in order. Its queue is bounded: a follower that does not
//!   keep up is let go (its receiver ends) rather than stall the others, and follows again
//!   from its last id.
//!
//! Not used by a request yet: until projects are owned apart, every session lives in the hub
//! that serves it.

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::RunQueryDsl;
use diesel::pg::PgConnection;
use tokio::sync::mpsc as queue;
use uuid::Uuid;

use super::DbConn;
use super::queries::{EventFilter, events_after};
use crate::domain::event::Event;

/// Where the database announces new events (the migration's trigger names it too).
pub const EVENTS_CHANNEL: &str = "collab_hub_events";

/// The listening connection's name in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "collab-hub event tail";

/// How often the thread reads what its socket holds (no round trip), and its commands.
const POLL: Duration = Duration::from_millis(25);

/// How often an idle listening connection is asked whether it is still there. A connection the
/// database ended is not noticed by reading notices (over TLS the closed socket reads as
/// nothing to read), and a connection that does not listen any more must not go unnoticed
/// for long: it costs its followers their events until it is replaced.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// How often it tries again after its connection failed.
const RECONNECT_EVERY: Duration = Duration::from_millis(500);

/// Events read per query while catching up.
const PAGE: i64 = 500;

/// Batches of events a follower may have waiting before it is let go.
pub const FOLLOWER_QUEUE: usize = 64;

/// Follows waiting for the thread, at most.
const COMMANDS: usize = 256;

enum Command {
    Follow {
        session: Uuid,
        after: i64,
        to: queue::Sender<Vec<Event>>,
    },
    Stop,
}

/// The listening thread. Dropping it ends it (and every follower's receiver).
pub struct EventTail {
    commands: mpsc::SyncSender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl EventTail {
    /// Starts the thread on `database_url` (PostgreSQL). It connects on its own time: a
    /// database out of reach delays the followers' events, it does not fail this.
    pub fn start(database_url: &str) -> Result<EventTail, String> {
        let (commands, received) = mpsc::sync_channel(COMMANDS);
        let url = super::conn::with_timeouts(database_url);
        let thread = std::thread::Builder::new()
            .name("event-tail".into())
            .spawn(move || Tail::default().run(&url, received))
            .map_err(|e| format!("cannot start the event tail: {e}"))?;
        Ok(EventTail {
            commands,
            thread: Some(thread),
        })
    }

    /// The events of `session` after `after`, in order, each once, as they commit. The receiver
    /// ends if this follower falls `FOLLOWER_QUEUE` batches behind, or the tail stops. Fails
    /// only when too many follows are waiting for the thread.
    pub fn follow(
        &self,
        session: Uuid,
        after: i64,
    ) -> Result<queue::Receiver<Vec<Event>>, crate::error::HubError> {
        self.follow_queued(session, after, FOLLOWER_QUEUE)
    }

    /// `follow`, letting the follower go once `batches` batches wait for it (at most 500 events
    /// each): what a follower that goes at its reader's pace holds, and follows again from.
    pub fn follow_queued(
        &self,
        session: Uuid,
        after: i64,
        batches: usize,
    ) -> Result<queue::Receiver<Vec<Event>>, crate::error::HubError> {
        let (to, events) = queue::channel(batches.max(1));
        self.commands
            .try_send(Command::Follow { session, after, to })
            .map_err(|_| {
                crate::error::HubError::Unavailable("the event tail is busy; retry".into())
            })?;
        Ok(events)
    }
}

impl Drop for EventTail {
    /// Stops the thread. Waited for only off the async threads: the last handle may be dropped
    /// on one (a dashboard's subscription ending), and the thread may be in a call to the
    /// database for seconds. Never blocks on a full queue: without its handle the thread ends
    /// anyway, once it has taken what is queued.
    fn drop(&mut self) {
        let _ = self.commands.try_send(Command::Stop);
        if let Some(thread) = self.thread.take()
            && tokio::runtime::Handle::try_current().is_err()
        {
            let _ = thread.join();
        }
    }
}

struct Follower {
    after: i64,
    to: queue::Sender<Vec<Event>>,
}

#[derive(Default)]
struct Tail {
    conn: Option<DbConn>,
    followers: HashMap<Uuid, Vec<Follower>>,
    /// When the last try to connect failed.
    failed_at: Option<Instant>,
    /// When the connection last answered.
    answered_at: Option<Instant>,
}

impl Tail {
    fn run(mut self, url: &str, commands: mpsc::Receiver<Command>) {
        loop {
            match commands.recv_timeout(POLL) {
                Ok(Command::Follow { session, after, to }) => {
                    self.followers
                        .entry(session)
                        .or_default()
                        .push(Follower { after, to });
                    if self.connected(url) {
                        self.catch_up(session);
                    }
                }
                Ok(Command::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if self.connected(url) {
                self.read_notices();
                self.heartbeat();
            }
        }
    }

    /// Connects and listens if it is not; a new connection reads every followed session from
    /// its followers' last ids. False while the database is out of reach.
    fn connected(&mut self, url: &str) -> bool {
        if self.conn.is_some() {
            return true;
        }
        if self
            .failed_at
            .is_some_and(|at| at.elapsed() < RECONNECT_EVERY)
        {
            return false;
        }
        let listening = <PgConnection as diesel::Connection>::establish(url)
            .map_err(|e| e.to_string())
            .and_then(|mut c| {
                // Says whose it is in `pg_stat_activity`.
                diesel::sql_query(format!("SET application_name = '{APPLICATION_NAME}'"))
                    .execute(&mut c)
                    .and_then(|_| {
                        diesel::sql_query(format!("LISTEN {EVENTS_CHANNEL}")).execute(&mut c)
                    })
                    .map(|_| c)
                    .map_err(|e| e.to_string())
            });
        match listening {
            Ok(c) => {
                if self.failed_at.take().is_some() {
                    log::info!("the event tail listens again");
                }
                self.conn = Some(DbConn::Pg(c));
                self.answered_at = Some(Instant::now());
                let sessions: Vec<Uuid> = self.followers.keys().copied().collect();
                for session in sessions {
                    self.catch_up(session);
                }
                self.conn.is_some()
            }
            Err(e) => {
                if self.failed_at.is_none() {
                    log::warn!("the event tail cannot listen: {e}");
                }
                self.failed_at = Some(Instant::now());
                false
            }
        }
    }

    /// Asks an idle connection whether it is still there; one that is not is replaced (and its
    /// followers read from their last ids) by the next poll. Followers whose receivers were
    /// dropped are let go here too (a quiet session is never read, and would keep them).
    fn heartbeat(&mut self) {
        if self.answered_at.is_some_and(|at| at.elapsed() < HEARTBEAT) {
            return;
        }
        self.followers.retain(|_, followers| {
            followers.retain(|f| !f.to.is_closed());
            !followers.is_empty()
        });
        let Some(DbConn::Pg(conn)) = self.conn.as_mut() else {
            return;
        };
        match diesel::sql_query("SELECT 1").execute(conn) {
            Ok(_) => self.answered_at = Some(Instant::now()),
            Err(e) => {
                log::warn!("the event tail's connection: {e}");
                self.conn = None;
            }
        }
    }

    /// Reads the notices the socket holds, and each named session's new events.
    fn read_notices(&mut self) {
        let Some(DbConn::Pg(conn)) = self.conn.as_mut() else {
            return;
        };
        let mut newest: HashMap<Uuid, i64> = HashMap::new();
        let mut broken = false;
        for notice in conn.notifications_iter() {
            match notice {
                Ok(notice) => {
                    let mut parts = notice.payload.split(' ');
                    if let (Some(Ok(session)), Some(Ok(id))) = (
                        parts.next().map(Uuid::parse_str),
                        parts.next().map(str::parse::<i64>),
                    ) {
                        let seen = newest.entry(session).or_insert(id);
                        *seen = (*seen).max(id);
                    }
                }
                Err(e) => {
                    log::warn!("the event tail's connection: {e}");
                    broken = true;
                    break;
                }
            }
        }
        if broken {
            self.conn = None;
            return;
        }
        for (session, id) in newest {
            let behind = self
                .followers
                .get(&session)
                .is_some_and(|followers| followers.iter().any(|f| f.after < id));
            if behind {
                self.catch_up(session);
            }
        }
    }

    /// Reads `session`'s events past the followers' last id and hands each follower those it
    /// has not had; lets go of followers that are gone or behind.
    fn catch_up(&mut self, session: Uuid) {
        loop {
            let Some(followers) = self.followers.get(&session) else {
                return;
            };
            let Some(after) = followers.iter().map(|f| f.after).min() else {
                self.followers.remove(&session);
                return;
            };
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            let page = match events_after(conn, session, EventFilter::default(), after, PAGE) {
                Ok(page) => page,
                Err(e) => {
                    // Read again in full once connected again.
                    log::warn!("the event tail cannot read session {session}: {e}");
                    self.conn = None;
                    return;
                }
            };
            let full = page.len() as i64 == PAGE;
            let followers = self.followers.get_mut(&session).expect("read above");
            followers.retain_mut(|f| {
                let new: Vec<Event> = page.iter().filter(|e| e.id > f.after).cloned().collect();
                let Some(last) = new.last().map(|e| e.id) else {
                    return !f.to.is_closed();
                };
                match f.to.try_send(new) {
                    Ok(()) => {
                        f.after = last;
                        true
                    }
                    // Gone, or too far behind: it follows again from its last id.
                    Err(_) => false,
                }
            });
            if followers.is_empty() {
                self.followers.remove(&session);
                return;
            }
            if !full {
                return;
            }
        }
    }
}
