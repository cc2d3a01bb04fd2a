//! The cloneable command handle of the network service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use libp2p::PeerId;
use tokio::sync::{mpsc, oneshot};

use crate::{Misbehaviour, NetworkMetrics, PeerStatus, Topic};

/// Commands from handles to the service task.
#[derive(Debug)]
pub(crate) enum Command {
    Send {
        to: u16,
        bytes: Vec<u8>,
    },
    Broadcast {
        bytes: Vec<u8>,
        include_self: bool,
    },
    Request {
        to: u16,
        request_id: u64,
        bytes: Vec<u8>,
    },
    Respond {
        request_id: u64,
        bytes: Vec<u8>,
    },
    Publish {
        topic: Topic,
        bytes: Vec<u8>,
    },
    Report {
        from: u16,
        misbehaviour: Misbehaviour,
    },
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Metrics(oneshot::Sender<NetworkMetrics>),
    Shutdown,
}

/// Sends commands to the network service. Cheap to clone; every method is non-blocking except
/// the two queries. Commands sent after the service stopped are ignored.
#[derive(Clone, Debug)]
pub struct NetworkHandle {
    pub(crate) cmd: mpsc::UnboundedSender<Command>,
    pub(crate) next_request_id: Arc<AtomicU64>,
    pub(crate) local_peer_id: PeerId,
    pub(crate) local_index: Option<u16>,
    pub(crate) goodput: Arc<crate::Goodput>,
}

impl NetworkHandle {
    fn cmd(&self, c: Command) {
        // The only error is "service stopped"; commands are then moot.
        let _ = self.cmd.send(c);
    }

    /// Unicasts a consensus frame to validator `to`. A frame to ourselves is looped back as a
    /// [`NetworkEvent::Consensus`](crate::NetworkEvent::Consensus). Best effort: see the crate
    /// docs.
    pub fn send(&self, to: u16, bytes: Vec<u8>) {
        self.cmd(Command::Send { to, bytes });
    }

    /// Sends a consensus frame to every other genesis validator, and, if `include_self`, loops
    /// it back to ourselves as an event too.
    pub fn broadcast(&self, bytes: Vec<u8>, include_self: bool) {
        self.cmd(Command::Broadcast {
            bytes,
            include_self,
        });
    }

    /// Sends a block-sync request to validator `to` and returns its id. Exactly one
    /// [`NetworkEvent::SyncResponse`](crate::NetworkEvent::SyncResponse) with this id follows:
    /// the response, or `Err` on timeout (`sync_timeout_ms`), disconnect or refusal.
    pub fn request(&self, to: u16, bytes: Vec<u8>) -> u64 {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed);
        self.cmd(Command::Request {
            to,
            request_id,
            bytes,
        });
        request_id
    }

    /// Answers the [`NetworkEvent::SyncRequest`](crate::NetworkEvent::SyncRequest) with this
    /// id. A response above `sync_max_response_bytes` is replaced by an error reply.
    pub fn respond(&self, request_id: u64, bytes: Vec<u8>) {
        self.cmd(Command::Respond { request_id, bytes });
    }

    /// Publishes a message of at most `max_gossip_bytes`: evidence is gossiped (gossipsub,
    /// relayed), transactions are pushed once to each connected validator ([`Topic`]).
    pub fn publish(&self, topic: Topic, bytes: Vec<u8>) {
        self.cmd(Command::Publish { topic, bytes });
    }

    /// Reports that validator `from` sent invalid data; adds [`Misbehaviour::penalty`] to its
    /// score and bans it at `ban_score`.
    pub fn report(&self, from: u16, misbehaviour: Misbehaviour) {
        self.cmd(Command::Report { from, misbehaviour });
    }

    /// A snapshot of every other genesis validator. Empty if the service stopped.
    pub async fn peers(&self) -> Vec<PeerStatus> {
        let (tx, rx) = oneshot::channel();
        self.cmd(Command::Peers(tx));
        rx.await.unwrap_or_default()
    }

    /// A snapshot of the service counters. All zero if the service stopped.
    pub async fn metrics(&self) -> NetworkMetrics {
        let (tx, rx) = oneshot::channel();
        self.cmd(Command::Metrics(tx));
        rx.await.unwrap_or_default()
    }

    /// How fast our large consensus frames (≥ [`crate::MIN_SAMPLE_BYTES`]) reach validator
    /// `to`, bytes per second, or `None` before the first sample ([`crate::Goodput`]).
    /// Non-blocking.
    pub fn goodput(&self, to: u16) -> Option<u64> {
        self.goodput.get(to)
    }

    /// Our libp2p peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Our index in the genesis set, if we are a validator.
    pub fn local_index(&self) -> Option<u16> {
        self.local_index
    }

    /// Stops the service: closes the listener and all connections; the event receiver ends.
    pub fn shutdown(&self) {
        self.cmd(Command::Shutdown);
    }
}
