//! One subscription of one connection: a task that first replays the log after the client's
//! `since` (at the pace the socket takes it), then forwards live events. It writes into the
//! connection's two bounded queues: critical events go to the urgent one as `interrupt`
//! frames, ahead of the routine events still queued; the rest go in log order. A live event
//! that finds the routine queue full ends the subscription with `resync {from}`, written once
//! the socket drains: a client that stops reading costs the hub at most the queue.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix::Addr;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use super::frames::{self, Filter};
use super::stats::{Queued, WsStats};
use crate::actors::Hub;
use crate::actors::messages::{AttachStream, Delivery, Published, ReadLog, ToSession, Watch};
use crate::domain::auth::Credential;
use crate::domain::event::Priority;
use crate::store::tail::EventTail;

/// Events read from the log per replay step.
const REPLAY_PAGE: i64 = 500;
/// Live events an agent may hand this subscription before the task takes them.
const LIVE_BUFFER: usize = 64;
/// Batches of the event tail (at most 500 events each) a subscription following a session held
/// elsewhere may have waiting before the tail lets it go (it follows again from its cursor).
const TAIL_QUEUE: usize = 2;
/// How often, and how long apart, a follow the tail is too busy to take is asked again.
const TAIL_BUSY_TRIES: u32 = 50;
const TAIL_BUSY_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Bytes of routine frames one connection may have queued (besides the frame count bound):
/// a client that stops reading costs at most this much, whatever the size of the events.
pub const OUTBOUND_BYTES: usize = 1024 * 1024;

/// The connection's outbound queues (the writer drains the urgent one first).
#[derive(Clone)]
pub struct Outbound {
    pub urgent: mpsc::Sender<String>,
    pub routine: mpsc::Sender<String>,
    /// Bytes in `routine` now (the writer subtracts what it takes).
    pub queued: Arc<Queued>,
    pub stats: Arc<WsStats>,
}

impl Outbound {
    /// Queues a routine frame if both bounds allow it.
    fn try_routine(&self, frame: String) -> Result<(), mpsc::error::TrySendError<String>> {
        let len = frame.len();
        let queued = self.queued.get();
        if queued > 0 && queued + len > OUTBOUND_BYTES {
            return Err(mpsc::error::TrySendError::Full(frame));
        }
        // Counted before it is queued: the writer may take it at once.
        self.queued.add(len);
        self.routine
            .try_send(frame)
            .inspect_err(|_| self.queued.sub(len))
    }

    /// Queues a routine frame once there is room. False: the connection is gone.
    async fn routine(&self, frame: String) -> bool {
        let len = frame.len();
        while self.queued.get() > 0 && self.queued.get() + len > OUTBOUND_BYTES {
            if self.routine.is_closed() {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        self.queued.add(len);
        if self.routine.send(frame).await.is_err() {
            self.queued.sub(len);
            return false;
        }
        true
    }
}

/// Where live events come from once the log is read.
pub enum Live {
    /// A viewer: the session's broadcast, joined before the replay so nothing falls between.
    Viewer(Watch),
    /// A participant: its agent's stream, attached after the replay (the agent fills the gap).
    Participant { key: String },
    /// A session another hub serves: the event tail reads the log from the cursor on, then
    /// what commits (`actors::hub::FollowElsewhere`). `replay_to`: the session's last event
    /// when the subscription began; events up to it are the replay. `seat`: a participant's
    /// own subscription, which passes only what that participant may see
    /// (`Event::visible_to`); None for a viewer, who sees everything.
    Tail {
        tail: Arc<EventTail>,
        replay_to: i64,
        seat: Option<String>,
    },
}

pub struct Subscription {
    pub name: Arc<str>,
    pub hub: Addr<Hub>,
    pub credential: Credential,
    pub session_id: Uuid,
    /// Last event handled (sent or filtered out).
    pub cursor: i64,
    pub filter: Filter,
    pub out: Outbound,
}

/// Why live forwarding stopped.
#[derive(Debug, PartialEq)]
enum End {
    /// The source ended.
    Ended,
    /// The client is not reading.
    Behind,
    Gone,
}

/// How a send went.
enum Sent {
    Ok,
    /// The routine queue is full: the client is not reading.
    Behind,
    /// The connection is gone.
    Gone,
}

impl Subscription {
    pub async fn run(mut self, live: Live) {
        if let Live::Tail {
            tail,
            replay_to,
            seat,
        } = live
        {
            return self.follow_tail(tail, replay_to, seat.as_deref()).await;
        }
        if !self.replay().await {
            return;
        }
        match live {
            Live::Viewer(watch) => self.follow_viewer(watch.events).await,
            Live::Participant { key } => self.follow_agent(key).await,
            Live::Tail { .. } => unreachable!("followed above"),
        }
    }

    /// A session another hub serves, followed through the event tail from the cursor on: the
    /// log first, then each event as it commits, once, in order, whoever wrote it. Events go at
    /// the client's pace, as a replay does: the tail lets a follower that falls `TAIL_QUEUE`
    /// batches behind go, and this one follows again from its cursor, so a slow client costs
    /// no events and at most those batches. Critical events past `replay_to` are live: they
    /// jump ahead as interrupts, or end the subscription with `resync` if even the urgent
    /// queue is full, as on the session's own feed.
    async fn follow_tail(mut self, tail: Arc<EventTail>, replay_to: i64, seat: Option<&str>) {
        let mut busy = 0;
        loop {
            let Ok(mut batches) = tail.follow_queued(self.session_id, self.cursor, TAIL_QUEUE)
            else {
                // Too many follows waiting for the tail's thread (many dashboards at once), or
                // the tail stopped with its hub's life: tried again for a while.
                busy += 1;
                if busy > TAIL_BUSY_TRIES {
                    self.resync().await;
                    return;
                }
                tokio::time::sleep(TAIL_BUSY_WAIT).await;
                continue;
            };
            busy = 0;
            let from = self.cursor;
            while let Some(batch) = batches.recv().await {
                for event in batch {
                    if event.id <= self.cursor {
                        continue;
                    }
                    // A seat that left is followed no further, as its agent here would be
                    // retired: told `resync`, its client subscribes again, and is refused.
                    let left = seat.is_some_and(|ai_id| {
                        event.kind == "participant_left" && event.payload["aiId"] == ai_id
                    });
                    match self.hand_on(event, replay_to, seat).await {
                        Sent::Ok if left => {
                            self.resync().await;
                            return;
                        }
                        Sent::Ok => {}
                        Sent::Behind => {
                            self.resync().await;
                            return;
                        }
                        Sent::Gone => return,
                    }
                }
            }
            if self.cursor == from {
                // Let go without a step forward: the tail is stopping. Not a busy loop.
                tokio::time::sleep(TAIL_BUSY_WAIT).await;
            }
        }
    }

    /// Hands one event of the tail to the connection once there is room (a critical one past
    /// `replay_to`: at once, as an interrupt, or `Behind`).
    async fn hand_on(
        &mut self,
        event: crate::domain::event::Event,
        replay_to: i64,
        seat: Option<&str>,
    ) -> Sent {
        if seat.is_some_and(|ai_id| !event.visible_to(ai_id)) {
            self.cursor = event.id;
            return Sent::Ok;
        }
        if event.priority == Priority::Critical && event.id > replay_to {
            return self.forward(&Published::new(Arc::new(event)), false);
        }
        self.cursor = event.id;
        if !self.filter.passes(&event) {
            return Sent::Ok;
        }
        let published = Published::new(Arc::new(event));
        match self
            .out
            .routine(frames::event(&self.name, published.json(), false))
            .await
        {
            true => Sent::Ok,
            false => Sent::Gone,
        }
    }

    /// Reads the log after the cursor up to its end, waiting for room in the queue (a replay
    /// goes at the client's pace and is never cut short). False: the connection is gone.
    async fn replay(&mut self) -> bool {
        loop {
            let page = self
                .hub
                .send(ToSession {
                    session_id: self.session_id,
                    command: ReadLog {
                        credential: self.credential.clone(),
                        after: self.cursor,
                        limit: REPLAY_PAGE,
                    },
                })
                .await;
            let page = match page {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => {
                    log::info!("ws replay of {} stopped: {e}", self.session_id);
                    return self.resync().await;
                }
                Err(_) => return false,
            };
            let full = page.events.len() as i64 == REPLAY_PAGE;
            for e in page.events {
                self.cursor = e.id;
                if !self.filter.passes(&e) {
                    continue;
                }
                let json = serde_json::to_string(&e).expect("an event serializes");
                let frame = frames::event(&self.name, &json, false);
                if !self.out.routine(frame).await {
                    return false;
                }
            }
            if !full {
                return true;
            }
        }
    }

    async fn follow_viewer(mut self, mut events: broadcast::Receiver<Arc<Published>>) {
        // `Err`: fell behind the session's feed, or the session actor stopped.
        let end = self
            .follow(async || events.recv().await.ok().map(|e| (e, false)))
            .await;
        // Not read any more: the broadcast must not keep events for it while it waits.
        drop(events);
        if end != End::Gone {
            self.resync().await;
        }
    }

    async fn follow_agent(mut self, key: String) {
        let (sink, mut events) = mpsc::channel::<Delivery>(LIVE_BUFFER);
        let attach = AttachStream {
            credential: self.credential.clone(),
            key,
            after: Some(self.cursor),
            sink,
        };
        let attached = self
            .hub
            .send(ToSession {
                session_id: self.session_id,
                command: attach,
            })
            .await;
        if !matches!(attached, Ok(Ok(()))) {
            self.resync().await;
            return;
        }
        // `None`: the agent dropped the stream (replaced, or the participant left).
        let end = self
            .follow(async || {
                let d = events.recv().await?;
                Some((Arc::new(Published::new(d.event)), d.early))
            })
            .await;
        drop(events);
        if end != End::Gone {
            self.resync().await;
        }
    }

    /// Forwards live events `(event, early)` until the source ends, the client falls behind or
    /// the connection is gone. Early: a critical event passing a checkpoint's hold; it does not
    /// move the cursor.
    async fn follow(
        &mut self,
        mut next: impl AsyncFnMut() -> Option<(Arc<Published>, bool)>,
    ) -> End {
        while let Some((event, early)) = next().await {
            if !early && event.event.id <= self.cursor {
                continue;
            }
            match self.forward(&event, early) {
                Sent::Ok => {}
                Sent::Behind => return End::Behind,
                Sent::Gone => return End::Gone,
            }
        }
        End::Ended
    }

    /// Hands one live event to the connection.
    fn forward(&mut self, published: &Published, early: bool) -> Sent {
        let event = &*published.event;
        if !early {
            self.cursor = event.id;
        }
        if !self.filter.passes(event) {
            return Sent::Ok;
        }
        let critical = event.priority == Priority::Critical;
        let sent = if critical {
            self.out.stats.interrupts.fetch_add(1, Ordering::Relaxed);
            self.out
                .urgent
                .try_send(frames::event(&self.name, published.json(), true))
        } else {
            self.out
                .try_routine(frames::event(&self.name, published.json(), false))
        };
        match sent {
            Ok(()) => Sent::Ok,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !early {
                    // Not sent: the client reads it again from the log.
                    self.cursor = event.id - 1;
                }
                Sent::Behind
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Sent::Gone,
        }
    }

    /// Tells the client to catch up from the log after what it was handed, once the events
    /// queued before are written. False: the connection is gone.
    async fn resync(&mut self) -> bool {
        self.out.stats.resyncs.fetch_add(1, Ordering::Relaxed);
        let frame = frames::resync(&self.name, self.session_id, self.cursor + 1);
        self.out.routine(frame).await;
        false
    }
}
