//! The commit stream behind `GET /events`: every block the node commits, with the hashes of
//! the transactions it applied, published once the commit is on disk.
//!
//! One [`tokio::sync::broadcast`] channel of [`EVENTS_CAPACITY`] blocks: the driver never
//! waits for a subscriber, a subscriber that falls more than that many blocks behind is told
//! how many it missed (an SSE `lagged` event) and goes on from the oldest block still held.
//! Memory: at most `EVENTS_CAPACITY` events, shared by every subscriber; subscribers are
//! bounded by the RPC server's connection limit (`rpc.max_connections`). When nobody listens
//! the driver builds no event at all ([`CommitEvents::wanted`]).

use crate::rpc_types::CommitEvent;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Committed blocks held for slow subscribers.
pub const EVENTS_CAPACITY: usize = 1024;

/// The sending side, shared by the driver (publishes) and the RPC server (subscribes).
#[derive(Clone, Debug)]
pub struct CommitEvents {
    tx: broadcast::Sender<Arc<CommitEvent>>,
}

impl Default for CommitEvents {
    fn default() -> Self {
        CommitEvents {
            tx: broadcast::channel(EVENTS_CAPACITY).0,
        }
    }
}

impl CommitEvents {
    /// A new subscriber: it receives every block published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CommitEvent>> {
        self.tx.subscribe()
    }

    /// Whether anybody subscribes (otherwise publishing is skipped).
    pub fn wanted(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Publish one committed block (dropped if nobody subscribes).
    pub fn publish(&self, event: CommitEvent) {
        let _ = self.tx.send(Arc::new(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(height: u64) -> CommitEvent {
        CommitEvent {
            height,
            view: height,
            id: String::new(),
            committed_unix_ms: 0,
            txs: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_what_it_missed() {
        let events = CommitEvents::default();
        assert!(!events.wanted());
        events.publish(event(0)); // nobody listens: dropped
        let mut rx = events.subscribe();
        assert!(events.wanted());
        for h in 1..=EVENTS_CAPACITY as u64 + 5 {
            events.publish(event(h));
        }
        assert_eq!(
            rx.recv().await.unwrap_err(),
            broadcast::error::RecvError::Lagged(5)
        );
        assert_eq!(rx.recv().await.unwrap().height, 6);
    }
}
