//! Transactions pushed directly to every validator over [`TX_PROTOCOL`](crate::TX_PROTOCOL)
//! (issue 10: no gossipsub flood for transactions).
//!
//! Validators are fully meshed (every validator dials every other), so a batch published by
//! its author is sent **once to each connected validator** and never relayed. Gossipsub did
//! the same job at a higher price: every node relayed every batch to its mesh, so each batch
//! could arrive three times at each node of four, and each copy was protobuf-decoded and its
//! author's ed25519 signature checked (about 10 % of a node's CPU at 10,000 tx/s). Here the
//! QUIC/TLS handshake already proves the sender, as for consensus frames.
//!
//! A batch that misses a validator (disconnected, or over the in-flight cap below) is not
//! retried: every validator that received it keeps it in its mempool and proposes it when it
//! leads, and the author proposes it too.
//!
//! Bounds, sender side: at most [`MAX_INFLIGHT`] unacknowledged batches and
//! [`MAX_INFLIGHT_BYTES`] bytes per peer; beyond them a batch is not sent to that peer
//! (`send_dropped`). Receiver side, cheapest check first: the protocol runs on validator
//! connections only; the length prefix is checked against `max_gossip_bytes` before the body
//! is read; the sender's frame token bucket (shared with consensus frames) and its per-author
//! byte budget (`gossip_bytes_per_sec`) must both admit the batch; the batch then waits in the
//! gossip queue, below consensus traffic.

use std::time::Instant;

use libp2p::PeerId;
use tracing::trace;

use super::Service;
use crate::codec::Frame;

/// Most unacknowledged transaction batches per peer.
pub(super) const MAX_INFLIGHT: usize = 64;
/// Most bytes of unacknowledged transaction batches per peer (16 MiB).
pub(super) const MAX_INFLIGHT_BYTES: usize = 16 * 1024 * 1024;

impl Service {
    /// Sends `bytes` (already checked against `max_gossip_bytes`) to every connected validator.
    pub(super) fn push_txs(&mut self, bytes: Vec<u8>) {
        let mut targets: Vec<u16> = self.peers.keys().copied().collect();
        targets.sort_unstable();
        let len = bytes.len();
        let mut sent = false;
        for to in targets {
            let Some(p) = self.peers.get_mut(&to) else {
                continue;
            };
            if !p.connected()
                || p.tx_inflight >= MAX_INFLIGHT
                || p.tx_inflight_bytes + len > MAX_INFLIGHT_BYTES
            {
                trace!(
                    to,
                    connected = p.connected(),
                    inflight = p.tx_inflight,
                    "tx batch not sent"
                );
                p.dropped += 1;
                self.metrics.send_dropped += 1;
                continue;
            }
            p.tx_inflight += 1;
            p.tx_inflight_bytes += len;
            let pid = p.peer_id;
            let id = self
                .swarm
                .behaviour_mut()
                .txs
                .inner()
                .send_request(&pid, Frame::Data(bytes.clone()));
            self.outbound_txs.insert(id, (to, len));
            self.metrics.bytes_out += len as u64;
            sent = true;
        }
        if sent {
            self.metrics.gossip_out += 1;
        } else {
            self.metrics.gossip_publish_failed += 1;
        }
    }

    /// Whether a batch of `len` bytes from `peer` is delivered: the peer's frame token bucket
    /// ([`Service::admit`]) and then its author byte budget must both admit it.
    pub(super) fn admit_txs(&mut self, peer: &PeerId, len: usize) -> bool {
        let Some(index) = self.admit(peer, len) else {
            return false;
        };
        let within = self
            .gossip_budget
            .get_mut(&index)
            .is_some_and(|b| b.take_n(Instant::now(), len));
        if !within {
            self.metrics.gossip_rejected += 1;
            trace!(
                index,
                len, "tx batch over its author's byte budget; ignored"
            );
        }
        within
    }

    /// Validator `index` lost its last connection: nothing of ours is in flight to it.
    pub(super) fn forget_txs_to(&mut self, index: u16) {
        self.outbound_txs.retain(|_, (to, _)| *to != index);
        if let Some(p) = self.peers.get_mut(&index) {
            p.tx_inflight = 0;
            p.tx_inflight_bytes = 0;
        }
    }
}
