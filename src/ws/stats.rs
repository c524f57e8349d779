//! What the WebSocket side holds right now, for `GET /metrics`: connections, subscriptions,
//! bytes queued for clients, and how often a client fell behind. One per hub.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug)]
pub struct WsStats {
    pub connections: AtomicI64,
    pub subscriptions: AtomicI64,
    /// Routine frames' bytes waiting in every connection's queue.
    pub queued_bytes: AtomicI64,
    pub resyncs: AtomicU64,
    pub interrupts: AtomicU64,
    /// Set when the hub stops: every connection closes (1001), so that a graceful stop does
    /// not wait for sockets that never end by themselves.
    pub closing: tokio::sync::watch::Sender<bool>,
}

impl Default for WsStats {
    fn default() -> Self {
        WsStats {
            connections: AtomicI64::new(0),
            subscriptions: AtomicI64::new(0),
            queued_bytes: AtomicI64::new(0),
            resyncs: AtomicU64::new(0),
            interrupts: AtomicU64::new(0),
            closing: tokio::sync::watch::channel(false).0,
        }
    }
}

impl WsStats {
    /// Closes every WebSocket of this hub.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// Prometheus text format.
    pub fn render(&self) -> String {
        let g = |a: &AtomicI64| a.load(Ordering::Relaxed);
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# TYPE collab_hub_ws_connections gauge\ncollab_hub_ws_connections {}\n\
             # TYPE collab_hub_ws_subscriptions gauge\ncollab_hub_ws_subscriptions {}\n\
             # TYPE collab_hub_ws_queued_bytes gauge\ncollab_hub_ws_queued_bytes {}\n\
             # TYPE collab_hub_ws_resyncs_total counter\ncollab_hub_ws_resyncs_total {}\n\
             # TYPE collab_hub_ws_interrupts_total counter\ncollab_hub_ws_interrupts_total {}\n",
            g(&self.connections),
            g(&self.subscriptions),
            g(&self.queued_bytes),
            c(&self.resyncs),
            c(&self.interrupts),
        )
    }
}

/// Bytes queued on one connection, kept in step with the hub's total.
#[derive(Debug)]
pub struct Queued {
    here: AtomicI64,
    stats: Arc<WsStats>,
}

impl Queued {
    pub fn new(stats: Arc<WsStats>) -> Queued {
        Queued {
            here: AtomicI64::new(0),
            stats,
        }
    }

    pub fn get(&self) -> usize {
        self.here.load(Ordering::Acquire).max(0) as usize
    }

    pub fn add(&self, n: usize) {
        self.here.fetch_add(n as i64, Ordering::AcqRel);
        self.stats
            .queued_bytes
            .fetch_add(n as i64, Ordering::Relaxed);
    }

    pub fn sub(&self, n: usize) {
        self.here.fetch_sub(n as i64, Ordering::AcqRel);
        self.stats
            .queued_bytes
            .fetch_sub(n as i64, Ordering::Relaxed);
    }

    /// The connection's writer ended: what it left unsent no longer counts.
    pub fn forget(&self) {
        let left = self.here.swap(0, Ordering::AcqRel);
        self.stats.queued_bytes.fetch_sub(left, Ordering::Relaxed);
    }
}
