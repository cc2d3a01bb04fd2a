//! Per-validator bookkeeping: connection state, token bucket, misbehaviour score, ban and
//! redial backoff. Pure data and arithmetic; the service drives it with `Instant`s.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};

use crate::{NetworkConfig, PeerStatus};

/// Token bucket over inbound frames (or gossip bytes). Invariant: `0 <= tokens <= burst`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_sec: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            tokens: burst,
            burst,
            per_sec: f64::from(per_sec),
            last: now,
        }
    }

    /// Takes one token if available.
    pub fn take(&mut self, now: Instant) -> bool {
        self.take_n(now, 1)
    }

    /// Takes `n` tokens (e.g. bytes) if that many are available; takes nothing otherwise.
    pub fn take_n(&mut self, now: Instant, n: usize) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.per_sec).min(self.burst);
        let n = n as f64;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Refills to capacity.
    pub fn reset(&mut self, now: Instant) {
        self.tokens = self.burst;
        self.last = now;
    }
}

/// What the service knows about one genesis validator other than ourselves.
#[derive(Debug)]
pub(crate) struct PeerState {
    pub index: u16,
    pub peer_id: PeerId,
    pub addr: SocketAddr,
    pub multiaddr: Multiaddr,
    /// Open connections (QUIC allows one per direction during a simultaneous dial).
    pub connections: u32,
    /// Misbehaviour score; `0 <= score`, reset to 0 by a ban.
    pub score: i32,
    pub msgs_in: u64,
    pub msgs_out: u64,
    pub dropped: u64,
    /// Consensus frames sent and not yet acknowledged or failed.
    pub inflight: usize,
    /// Payload bytes of those frames.
    pub inflight_bytes: usize,
    pub rtt: Option<Duration>,
    /// The agent announced in its last identify message (at most `MAX_AGENT_LEN` bytes).
    pub agent: Option<String>,
    /// Whether it speaks the long-lived consensus stream ([`crate::CONSENSUS_STREAM_PROTOCOL`]):
    /// assumed until an identify message says otherwise (a version without it, during a rolling
    /// upgrade), after which its consensus frames all go by request-response. Assuming it costs
    /// an old peer at most the frames sent before its identify arrives: the stream's handshake
    /// fails at once and they are counted in `send_failures`.
    pub consensus_stream: bool,
    /// Whether it speaks the transaction stream ([`crate::TX_STREAM_PROTOCOL`]), decided like
    /// `consensus_stream`; no transactions are pushed to it otherwise. Assumed at first, so
    /// that the transactions of the first moments after a connection reach it: a transaction
    /// pushed nowhere waits for its author to lead. Holding pushes back until identify left 2
    /// of 2,000 transactions uncommitted for over 30 s on 50 ms links
    /// (`cli/tests/cli.rs::four_namespaces_with_50ms_links_commit`).
    pub tx_stream: bool,
    pub bucket: TokenBucket,
    /// Set while the peer is refused; cleared (and the peer unblocked) when it passes.
    pub banned_until: Option<Instant>,
    /// When to dial next; `None` while connected or banned.
    pub next_dial: Option<Instant>,
    /// Delay before the next redial, in ms: `redial_min_ms <= backoff_ms <= redial_max_ms`.
    /// It doubles on every dial and resets only when a connection closes after having been
    /// stable (open for `stable_connection_ms`), so a peer that accepts the handshake and then
    /// refuses us is redialled ever more slowly.
    pub backoff_ms: u64,
    /// Remote socket address of each open connection (at most 3, the per-peer cap).
    pub remotes: HashMap<ConnectionId, Multiaddr>,
    /// Connections from a second address while connected from another (duplicate key), and
    /// when that was last warned about.
    pub duplicate_key_suspected: u64,
    pub last_duplicate_log: Option<Instant>,
    /// When the current connection opened (`None` while disconnected).
    pub connected_at: Option<Instant>,
    /// Whether the last connection was a flap (closed before it was stable).
    pub flapping: bool,
    /// Flaps since the last flap warning, and when that warning was logged.
    pub flaps_unlogged: u64,
    pub last_flap_log: Option<Instant>,
}

/// The IP address and UDP port of a QUIC multiaddr, if it has both.
pub(crate) fn socket_of(addr: &Multiaddr) -> Option<(std::net::IpAddr, u16)> {
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(a.into()),
            Protocol::Ip6(a) => ip = Some(a.into()),
            Protocol::Udp(u) => port = Some(u),
            _ => {}
        }
    }
    Some((ip?, port?))
}

impl PeerState {
    pub fn new(
        index: u16,
        peer_id: PeerId,
        addr: SocketAddr,
        cfg: &NetworkConfig,
        now: Instant,
    ) -> Self {
        Self {
            index,
            peer_id,
            addr,
            multiaddr: quic_multiaddr(addr),
            connections: 0,
            score: 0,
            msgs_in: 0,
            msgs_out: 0,
            dropped: 0,
            inflight: 0,
            inflight_bytes: 0,
            rtt: None,
            agent: None,
            consensus_stream: true,
            tx_stream: true,
            bucket: TokenBucket::new(cfg.rate_limit_msgs_per_sec, cfg.rate_limit_burst, now),
            banned_until: None,
            next_dial: Some(now),
            backoff_ms: cfg.redial_min_ms,
            remotes: HashMap::new(),
            duplicate_key_suspected: 0,
            last_duplicate_log: None,
            connected_at: None,
            flapping: false,
            flaps_unlogged: 0,
            last_flap_log: None,
        }
    }

    /// How many copies of each consensus frame to send: one, or — while this validator's key
    /// is connected from two socket addresses (two instances of one key) — one per open
    /// connection, so that every instance hears the same frames and is judged by the same
    /// certificates (PROTOCOL.md §4.9, §4.10). Without it, request-response routes request `id`
    /// to connection `id mod connections`, and a broadcast's fixed order sends every frame for
    /// this validator down the same connection: one instance would hear nothing.
    pub fn copies_per_frame(&self) -> usize {
        let mut sockets = self.remotes.values().map(socket_of);
        let Some(first) = sockets.next() else {
            return 1;
        };
        if sockets.any(|s| s != first) {
            self.remotes.len()
        } else {
            1
        }
    }

    pub fn connected(&self) -> bool {
        self.connections > 0
    }

    pub fn banned(&self) -> bool {
        self.banned_until.is_some()
    }

    /// Called when a dial starts: schedules the next attempt (in case this one never
    /// resolves) after the jittered backoff, then doubles the backoff up to `max_ms`.
    pub fn on_dial(&mut self, now: Instant, max_ms: u64) {
        self.next_dial = Some(now + jittered(self.backoff_ms, &self.peer_id));
        self.backoff_ms = self.backoff_ms.saturating_mul(2).min(max_ms);
    }

    /// Called when the first connection opens.
    pub fn on_connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
        self.next_dial = None;
    }

    /// Called when the last connection closes: redial after the jittered backoff. A connection
    /// that lived `stable` or longer resets the backoff to `min_ms`; a shorter one is a flap
    /// (returns `true`) and leaves the backoff growing.
    pub fn on_lost(&mut self, now: Instant, stable: Duration, min_ms: u64) -> bool {
        let lived = self
            .connected_at
            .take()
            .map_or(Duration::ZERO, |at| now.duration_since(at));
        self.flapping = lived < stable;
        if !self.flapping {
            self.backoff_ms = min_ms;
        }
        if !self.banned() {
            self.next_dial = Some(now + jittered(self.backoff_ms, &self.peer_id));
        }
        self.flapping
    }

    pub fn status(&self) -> PeerStatus {
        PeerStatus {
            index: self.index,
            peer_id: self.peer_id,
            connected: self.connected(),
            address: self.addr,
            score: self.score,
            banned: self.banned(),
            msgs_in: self.msgs_in,
            msgs_out: self.msgs_out,
            dropped: self.dropped,
            rtt_ms: self.rtt.map(|d| d.as_secs_f64() * 1e3),
            agent: self.agent.clone(),
            duplicate_key_suspected: self.duplicate_key_suspected,
        }
    }
}

/// A delay of `backoff_ms` with "equal jitter": uniformly in `[backoff/2, backoff]` ms, so
/// peers that lost each other at the same instant do not redial in lockstep.
fn jittered(backoff_ms: u64, peer: &PeerId) -> Duration {
    use std::hash::BuildHasher;
    let half = backoff_ms / 2;
    let r = std::hash::RandomState::new().hash_one((peer, Instant::now()));
    Duration::from_millis(half + r % (backoff_ms - half + 1))
}

/// `/ip4/A.B.C.D/udp/PORT/quic-v1` (or `/ip6/...`) for a UDP socket address.
pub(crate) fn quic_multiaddr(addr: SocketAddr) -> Multiaddr {
    let ip = match addr {
        SocketAddr::V4(a) => Protocol::Ip4(*a.ip()),
        SocketAddr::V6(a) => Protocol::Ip6(*a.ip()),
    };
    Multiaddr::empty()
        .with(ip)
        .with(Protocol::Udp(addr.port()))
        .with(Protocol::QuicV1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_limits_and_refills() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(100)));
        // Never more than the burst after a long pause.
        let t1 = t0 + Duration::from_secs(60);
        assert!(b.take(t1) && b.take(t1) && b.take(t1));
        assert!(!b.take(t1));
    }

    #[test]
    fn multiaddr_is_quic_v1() {
        let a: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        assert_eq!(
            quic_multiaddr(a).to_string(),
            "/ip4/127.0.0.1/udp/9000/quic-v1"
        );
    }
}
