//! The inbound event queue: three classes, priorities, byte bounds (issue 8, finding 4).
//!
//! | Class | Events | Bound | When full |
//! |---|---|---|---|
//! | control | `PeerConnected`, `PeerDisconnected`, `SyncResponse` | see below | never dropped |
//! | data | `Consensus`, `SyncRequest` | `event_queue_bytes` | new event dropped, `events_dropped` |
//! | gossip | `Gossip` | `gossip_queue_bytes` | new event dropped, `gossip_events_dropped` |
//!
//! [`EventReceiver::recv`] returns control events first, then data, then gossip, so a gossip
//! flood can neither displace a consensus frame nor delay one behind it.
//!
//! Control events are never dropped, and their queue is still bounded: a connectivity event for
//! validator *i* replaces any earlier one for *i* still queued (the receiver needs the current
//! state, not the history), so at most one per validator waits; a `SyncResponse` answers one of
//! the receiver's own requests, so at most as many wait as it has requests outstanding.
//!
//! Every event is charged its payload length plus [`EVENT_OVERHEAD`] bytes, so a flood of empty
//! frames is bounded too.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::NetworkEvent;

/// Bytes charged per queued event on top of its payload (the enum and bookkeeping).
pub const EVENT_OVERHEAD: usize = 64;

/// Which queue an event goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Control,
    Data,
    Gossip,
}

fn classify(ev: &NetworkEvent) -> (Class, usize) {
    match ev {
        NetworkEvent::PeerConnected { .. }
        | NetworkEvent::PeerDisconnected { .. }
        | NetworkEvent::SyncResponse { .. } => (Class::Control, 0),
        NetworkEvent::Consensus { bytes, .. } | NetworkEvent::SyncRequest { bytes, .. } => {
            (Class::Data, bytes.len() + EVENT_OVERHEAD)
        }
        NetworkEvent::Gossip { bytes, .. } => (Class::Gossip, bytes.len() + EVENT_OVERHEAD),
    }
}

/// The validator a connectivity event is about.
fn connectivity_of(ev: &NetworkEvent) -> Option<u16> {
    match ev {
        NetworkEvent::PeerConnected { index } | NetworkEvent::PeerDisconnected { index } => {
            Some(*index)
        }
        _ => None,
    }
}

#[derive(Default)]
struct Queues {
    control: VecDeque<NetworkEvent>,
    data: VecDeque<(NetworkEvent, usize)>,
    data_bytes: usize,
    gossip: VecDeque<(NetworkEvent, usize)>,
    gossip_bytes: usize,
    closed: bool,
}

struct Shared {
    queues: Mutex<Queues>,
    notify: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The service's end of the queue.
pub(crate) struct EventSender {
    shared: Arc<Shared>,
    data_cap: usize,
    gossip_cap: usize,
}

/// The node's end: inbound events from the network service, by priority (module docs).
/// Returned by [`crate::start`].
pub struct EventReceiver {
    shared: Arc<Shared>,
}

/// A new queue with `data_cap` bytes for data events and `gossip_cap` bytes for gossip.
pub(crate) fn channel(data_cap: usize, gossip_cap: usize) -> (EventSender, EventReceiver) {
    let shared = Arc::new(Shared {
        queues: Mutex::new(Queues::default()),
        notify: Notify::new(),
    });
    (
        EventSender {
            shared: shared.clone(),
            data_cap,
            gossip_cap,
        },
        EventReceiver { shared },
    )
}

impl EventSender {
    /// Queues `ev`; `Err(class)` if its queue had no room (the event is dropped).
    pub fn send(&self, ev: NetworkEvent) -> Result<(), Class> {
        let (class, cost) = classify(&ev);
        {
            let mut q = self.shared.lock();
            match class {
                Class::Control => {
                    if let Some(i) = connectivity_of(&ev) {
                        q.control.retain(|e| connectivity_of(e) != Some(i));
                    }
                    q.control.push_back(ev);
                }
                Class::Data => {
                    if q.data_bytes + cost > self.data_cap {
                        return Err(class);
                    }
                    q.data_bytes += cost;
                    q.data.push_back((ev, cost));
                }
                Class::Gossip => {
                    if q.gossip_bytes + cost > self.gossip_cap {
                        return Err(class);
                    }
                    q.gossip_bytes += cost;
                    q.gossip.push_back((ev, cost));
                }
            }
        }
        self.shared.notify.notify_one();
        Ok(())
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.notify.notify_one();
    }
}

impl EventReceiver {
    /// The next event by priority (control, data, gossip), waiting if none is queued. `None`
    /// once the service has stopped and every queued event has been received. Cancel-safe:
    /// an event is taken only when this future completes.
    pub async fn recv(&mut self) -> Option<NetworkEvent> {
        loop {
            match self.pop() {
                Ok(ev) => return Some(ev),
                Err(true) => return None,
                // A notification sent since our last look is stored as a permit, so none is
                // missed between `pop` and `notified`.
                Err(false) => self.shared.notify.notified().await,
            }
        }
    }

    /// The next queued event without waiting, if any.
    pub fn try_recv(&mut self) -> Option<NetworkEvent> {
        self.pop().ok()
    }

    /// Queued events and their charged bytes: `(control, data, data_bytes, gossip,
    /// gossip_bytes)`.
    pub fn depth(&self) -> (usize, usize, usize, usize, usize) {
        let q = self.shared.lock();
        (
            q.control.len(),
            q.data.len(),
            q.data_bytes,
            q.gossip.len(),
            q.gossip_bytes,
        )
    }

    /// The highest-priority queued event, or `Err(closed)` if none.
    fn pop(&mut self) -> Result<NetworkEvent, bool> {
        let mut q = self.shared.lock();
        if let Some(ev) = q.control.pop_front() {
            return Ok(ev);
        }
        if let Some((ev, cost)) = q.data.pop_front() {
            q.data_bytes -= cost;
            return Ok(ev);
        }
        if let Some((ev, cost)) = q.gossip.pop_front() {
            q.gossip_bytes -= cost;
            return Ok(ev);
        }
        Err(q.closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Topic;
    use libp2p::PeerId;

    fn consensus(len: usize) -> NetworkEvent {
        NetworkEvent::Consensus {
            from: 1,
            bytes: vec![0; len],
        }
    }

    fn gossip(len: usize) -> NetworkEvent {
        NetworkEvent::Gossip {
            topic: Topic::Transactions,
            from: PeerId::random(),
            bytes: vec![0; len],
        }
    }

    #[test]
    fn a_gossip_flood_neither_displaces_nor_delays_consensus_or_control() {
        let (tx, mut rx) = channel(10_000, 1_000);
        let mut dropped = 0;
        for _ in 0..100 {
            if tx.send(gossip(100)).is_err() {
                dropped += 1;
            }
        }
        assert_eq!(dropped, 100 - 1_000 / (100 + EVENT_OVERHEAD));
        tx.send(consensus(10)).unwrap();
        tx.send(NetworkEvent::PeerConnected { index: 2 }).unwrap();
        assert_eq!(
            rx.try_recv(),
            Some(NetworkEvent::PeerConnected { index: 2 })
        );
        assert_eq!(rx.try_recv(), Some(consensus(10)));
        assert!(matches!(rx.try_recv(), Some(NetworkEvent::Gossip { .. })));
    }

    #[test]
    fn data_is_bounded_by_bytes_and_control_is_never_dropped() {
        let (tx, mut rx) = channel(1_000, 1_000);
        assert!(tx.send(consensus(900)).is_ok());
        assert_eq!(tx.send(consensus(100)), Err(Class::Data));
        for i in 0..10_000u64 {
            let r = NetworkEvent::SyncResponse {
                from: 1,
                request_id: i,
                result: Err("x".into()),
            };
            tx.send(r).unwrap();
        }
        assert_eq!(rx.depth().0, 10_000);
        assert_eq!(rx.depth().2, 900 + EVENT_OVERHEAD);
        let _ = rx.try_recv();
        assert_eq!(rx.depth().0, 9_999);
    }

    #[test]
    fn connectivity_events_for_one_validator_coalesce_to_the_latest() {
        let (tx, mut rx) = channel(1_000, 1_000);
        for _ in 0..1_000 {
            tx.send(NetworkEvent::PeerConnected { index: 3 }).unwrap();
            tx.send(NetworkEvent::PeerDisconnected { index: 3 })
                .unwrap();
        }
        tx.send(NetworkEvent::PeerConnected { index: 4 }).unwrap();
        assert_eq!(rx.depth().0, 2);
        assert_eq!(
            rx.try_recv(),
            Some(NetworkEvent::PeerDisconnected { index: 3 })
        );
        assert_eq!(
            rx.try_recv(),
            Some(NetworkEvent::PeerConnected { index: 4 })
        );
    }

    #[tokio::test]
    async fn recv_waits_for_an_event_and_ends_after_the_sender_drops() {
        let (tx, mut rx) = channel(1_000, 1_000);
        let t = tokio::spawn(async move {
            tokio::task::yield_now().await;
            tx.send(consensus(1)).unwrap();
            // `tx` drops here: the queue is closed after the event.
        });
        assert_eq!(rx.recv().await, Some(consensus(1)));
        assert_eq!(rx.recv().await, None);
        t.await.unwrap();
    }
}
