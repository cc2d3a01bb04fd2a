//! Connection lifecycle: validators connecting and disconnecting, a validator key connected
//! twice, oversized frames, and idle strangers closed.

use std::time::{Duration, Instant};

use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use tracing::{debug, info, trace, warn};

use crate::peers::socket_of;
use crate::{Misbehaviour, NetworkEvent};

use super::{LOG_EVERY, Service};

impl Service {
    /// A connection (or an attempt) of validator `index` came from `addr`. If another of its
    /// connections is open from a different socket address, one key is running twice: count
    /// it and warn (at most every `LOG_EVERY` per validator). A simultaneous dial is not one:
    /// QUIC dials from the listening socket, so both connections show the genesis address.
    pub(super) fn check_duplicate_key(
        &mut self,
        index: u16,
        addr: &Multiaddr,
        this: Option<ConnectionId>,
    ) {
        let Some(p) = self.peers.get_mut(&index) else {
            return;
        };
        let at = socket_of(addr);
        let Some(other) = p
            .remotes
            .iter()
            .find(|(id, r)| Some(**id) != this && socket_of(r) != at)
            .map(|(_, r)| r.clone())
        else {
            return;
        };
        p.duplicate_key_suspected += 1;
        self.metrics.duplicate_key_suspected += 1;
        let now = Instant::now();
        if p.last_duplicate_log
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            p.last_duplicate_log = Some(now);
            warn!(index, peer = %p.peer_id, %addr, connected_from = %other,
                times = p.duplicate_key_suspected,
                "validator key connecting from two addresses at once: two instances with one key \
                 risk double-signing");
        }
    }

    /// A connection is established: a validator's remote address is recorded (an inbound one
    /// is checked for a second instance of the key) and its first connection reports
    /// `PeerConnected`; a stranger's is only logged (`admission` budgets strangers).
    pub(super) fn on_connected(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        num: u32,
        endpoint: &libp2p::core::ConnectedPoint,
    ) {
        let Some(&index) = self.by_peer.get(&peer) else {
            debug!(%peer, addr = %endpoint.get_remote_address(), "non-validator connected");
            return;
        };
        let remote = endpoint.get_remote_address().clone();
        if let Some(p) = self.peers.get_mut(&index) {
            p.remotes.insert(id, remote.clone());
        }
        if endpoint.is_listener() {
            self.check_duplicate_key(index, &remote, Some(id));
        }
        let Some(p) = self.peers.get_mut(&index) else {
            return;
        };
        p.connections = num;
        if num == 1 {
            p.on_connected(Instant::now());
            let addr = endpoint.get_remote_address();
            if p.flapping {
                debug!(index, %peer, %addr, "validator connected (after a flap)");
            } else {
                info!(index, %peer, %addr, "validator connected");
            }
            self.emit(NetworkEvent::PeerConnected { index });
        }
    }

    /// A connection closed; `num` connections to `peer` remain. When a validator's last one
    /// goes, its in-flight frames and goodput are forgotten, a short-lived connection counts as
    /// a flap (redial backoff, rate-limited warning), and `PeerDisconnected` is reported.
    pub(super) fn on_closed(&mut self, peer: PeerId, num: u32, cause: Option<String>) {
        let Some(&index) = self.by_peer.get(&peer) else {
            return;
        };
        let Some(p) = self.peers.get_mut(&index) else {
            return;
        };
        p.connections = num;
        if num != 0 {
            return;
        }
        p.inflight = 0;
        p.inflight_bytes = 0;
        self.outbound_frames.retain(|_, (to, _)| *to != index);
        self.frame_sent.retain(|_, (to, _, _)| *to != index);
        self.goodput.forget(index);
        let now = Instant::now();
        let stable = Duration::from_millis(self.cfg.stable_connection_ms);
        if p.on_lost(now, stable, self.cfg.redial_min_ms) {
            self.metrics.connection_flaps += 1;
            p.flaps_unlogged += 1;
            if p.last_flap_log
                .is_none_or(|at| now.duration_since(at) >= LOG_EVERY)
            {
                warn!(index, %peer, ?cause, flaps = p.flaps_unlogged, backoff_ms = p.backoff_ms,
                    "validator connection flapping (closed soon after opening); redialling with backoff");
                p.flaps_unlogged = 0;
                p.last_flap_log = Some(now);
            } else {
                debug!(index, %peer, ?cause, "validator connection flapped");
            }
        } else {
            info!(index, %peer, ?cause, "validator disconnected");
        }
        self.emit(NetworkEvent::PeerDisconnected { index });
    }

    /// Counts and scores an oversized inbound frame (its body was never read; dropping the
    /// response channel resets the stream).
    pub(super) fn on_oversized(&mut self, peer: PeerId, len: usize, max: usize) {
        self.metrics.oversized_dropped += 1;
        match self.by_peer.get(&peer).copied() {
            Some(index) => {
                warn!(index, %peer, len, max, "oversized frame dropped");
                if let Some(p) = self.peers.get_mut(&index) {
                    p.dropped += 1;
                }
                self.penalize(index, Misbehaviour::OversizedFrame);
            }
            None => {
                debug!(%peer, len, max, "oversized frame from non-validator; disconnecting");
                self.metrics.non_validator_dropped += 1;
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
    }

    /// Closes strangers' connections that outlived `stranger_idle_ms` (their slot frees).
    pub(super) fn close_idle_strangers(&mut self, now: Instant) {
        for (peer, id) in self.swarm.behaviour_mut().admission.expired(now) {
            if self.swarm.close_connection(id) {
                self.metrics.strangers_closed_idle += 1;
                trace!(%peer, "idle stranger connection closed");
            }
        }
    }
}
