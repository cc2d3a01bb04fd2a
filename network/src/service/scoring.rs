//! Peer scoring: penalties for misbehaviour, bans, per-peer frame admission, and the rate-limited
//! log of refused connections.

use std::time::{Duration, Instant};

use libp2p::PeerId;
use tracing::{debug, trace, warn};

use crate::Misbehaviour;

use super::{LOG_EVERY, Service};

impl Service {
    /// Adds a misbehaviour's penalty to validator `index`; bans it at `ban_score`.
    pub(super) fn penalize(&mut self, index: u16, m: Misbehaviour) {
        let ban_score = self.cfg.ban_score;
        let Some(p) = self.peers.get_mut(&index) else {
            return;
        };
        if p.banned() {
            return;
        }
        p.score = p.score.saturating_add(m.penalty());
        debug!(index, peer = %p.peer_id, misbehaviour = ?m, score = p.score, "peer penalised");
        if p.score >= ban_score {
            self.ban(index);
        }
    }

    /// Ban validator `index` for the configured time: its connections are closed and refused.
    pub(super) fn ban(&mut self, index: u16) {
        let now = Instant::now();
        let cooldown = Duration::from_millis(self.cfg.ban_cooldown_ms);
        let Some(p) = self.peers.get_mut(&index) else {
            return;
        };
        warn!(index, peer = %p.peer_id, score = p.score, cooldown_ms = self.cfg.ban_cooldown_ms, "banning peer");
        p.banned_until = Some(now + cooldown);
        p.next_dial = None;
        p.score = 0;
        p.bucket.reset(now);
        let pid = p.peer_id;
        self.metrics.bans += 1;
        self.swarm.behaviour_mut().block.block_peer(pid);
        let _ = self.swarm.disconnect_peer_id(pid);
    }

    /// Accounts an inbound frame from `peer`; `Some(index)` if it may be delivered.
    pub(super) fn admit(&mut self, peer: &PeerId, len: usize) -> Option<u16> {
        let Some(&index) = self.by_peer.get(peer) else {
            self.metrics.non_validator_dropped += 1;
            trace!(%peer, "frame from non-validator dropped");
            return None;
        };
        let p = self.peers.get_mut(&index)?;
        if p.banned() {
            p.dropped += 1;
            return None;
        }
        if !p.bucket.take(Instant::now()) {
            p.dropped += 1;
            self.metrics.rate_limited_dropped += 1;
            self.penalize(index, Misbehaviour::RateLimitExceeded);
            return None;
        }
        p.msgs_in += 1;
        self.metrics.bytes_in += len as u64;
        Some(index)
    }

    /// One line per `LOG_EVERY` at most about refused connections.
    pub(super) fn log_refusals(&mut self, now: Instant) {
        let refused = self.metrics.connections_refused;
        if refused > self.refused_logged
            && self
                .last_refused_log
                .is_none_or(|at| now.duration_since(at) >= LOG_EVERY)
        {
            warn!(
                refused = refused - self.refused_logged,
                strangers = self.swarm.behaviour().admission.strangers(),
                "inbound connections refused (banned peer, per-peer cap or strangers' budget)"
            );
            self.refused_logged = refused;
            self.last_refused_log = Some(now);
        }
    }
}
