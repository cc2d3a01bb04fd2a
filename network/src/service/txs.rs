//! Transactions pushed directly to every validator over [`TX_STREAM_PROTOCOL`](crate::TX_STREAM_PROTOCOL)
//! (issue 10: no gossipsub flood for transactions).
//!
//! Validators are fully meshed (every validator dials every other), so a batch published by
//! its author is sent **once to each connected validator** and never relayed. Gossipsub did
//! the same job at a higher price: every node relayed every batch to its mesh, so each batch
//! could arrive three times at each node of four, and each copy was protobuf-decoded and its
//! author's ed25519 signature checked (about 10 % of a node's CPU at 10,000 tx/s). Here the
//! QUIC/TLS handshake already proves the sender, as for consensus frames.
//!
//! A batch that misses a validator (disconnected, or over the queue cap below) is not
//! retried: every validator that received it keeps it in its mempool and proposes it when it
//! leads, and the author proposes it too.
//!
//! Batches travel on one long-lived stream per validator ([`TX_STREAM_PROTOCOL`](crate::TX_STREAM_PROTOCOL),
//! `service/links.rs`); `/bftnode/txs/1` (one request-response stream per batch) is still
//! accepted from peers that push that way. A validator whose identify message does not
//! announce the stream (a version before it, during a rolling upgrade) is pushed nothing: it
//! receives the transactions in proposals, and only proposes those of its own clients.
//!
//! Bounds, sender side: at most 512 queued batches and 16 MiB per peer (the link's queue);
//! beyond them a batch is not sent to that peer (`send_dropped`). Receiver side, cheapest check first: the protocol runs on validator
//! connections only; the length prefix is checked against `max_gossip_bytes` before the body
//! is read; the sender's frame token bucket (shared with consensus frames) and its per-author
//! byte budget (`gossip_bytes_per_sec`) must both admit the batch; the batch then waits in the
//! gossip queue, below consensus traffic.

use std::time::Instant;

use libp2p::PeerId;
use tracing::trace;

use super::Service;

impl Service {
    /// Sends `bytes` (already checked against `max_gossip_bytes`) to every connected validator,
    /// on its long-lived transaction stream (`service/links.rs`).
    pub(super) fn push_txs(&mut self, bytes: Vec<u8>) {
        let mut targets: Vec<u16> = self.peers.keys().copied().collect();
        targets.sort_unstable();
        let len = bytes.len();
        let mut sent = false;
        for to in targets {
            let Some(p) = self.peers.get_mut(&to) else {
                continue;
            };
            let queued = p.connected()
                && p.tx_stream
                && self.tx_links.send(p.peer_id, bytes.clone()).is_ok();
            if !queued {
                trace!(to, connected = p.connected(), "tx batch not sent");
                p.dropped += 1;
                self.metrics.send_dropped += 1;
                continue;
            }
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
}
