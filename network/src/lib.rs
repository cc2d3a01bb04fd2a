//! # network — libp2p over QUIC for bftnode validators
//!
//! This crate carries **opaque bytes** between the validators of a fixed (genesis) validator
//! set. It knows nothing about consensus types: the node decodes and verifies what arrives.
//!
//! ## What runs
//! [`start`] builds a libp2p [`Swarm`](libp2p::Swarm) over **QUIC only**
//! (`/ip4/A.B.C.D/udp/PORT/quic-v1`) and spawns it as one tokio task (the *service*). The node
//! talks to it through a cloneable [`NetworkHandle`] (commands over an unbounded mpsc channel)
//! and reads inbound traffic from an [`EventReceiver`] (three prioritised, byte-bounded queues:
//! control, consensus/sync data, gossip — see [`EventReceiver`]).
//!
//! ```text
//!   node ──NetworkHandle (cmd channel)──▶ service task ──▶ Swarm (QUIC, 1 UDP socket)
//!   node ◀──EventReceiver──────────────── service task ◀── Swarm events
//! ```
//!
//! | Protocol | Use | Limits |
//! |---|---|---|
//! | `/bftnode/consensus-stream/1` | consensus frames below `MIN_SAMPLE_BYTES` (votes, timeouts, statuses, small proposals) back to back on one long-lived stream per validator (`service/links.rs`) | `max_frame_bytes`, frame token bucket, 512 queued frames per peer, 4 inbound streams per peer |
//! | `/bftnode/consensus/1` | request-response, one frame per stream, empty ack: larger frames, a full stream queue, and every frame while a key is connected twice | `max_frame_bytes` |
//! | `/bftnode/sync/1` | block-sync request-response | requests `max_frame_bytes`, responses `sync_max_response_bytes` |
//! | `/bftnode/txs-stream/1` | transaction batches, pushed once by their author to each validator on one long-lived stream, no relay (`service/txs.rs`, `service/links.rs`) | `max_gossip_bytes`, frame token bucket, per-author budget, 512 batches / 16 MiB queued per peer |
//! | `/bftnode/txs/1` | the same, one request-response stream per batch: still accepted, no longer sent | as above |
//! | gossipsub `bftnode/evidence/1` | evidence | `max_gossip_bytes`, strict signed validation, validated before relay, per-author budget |
//! | identify `/bftnode/1.0.0`, ping | interop with stock libp2p tools, RTT | — |
//!
//!
//! Every substream negotiates its protocol lazily (multistream-select `V1Lazy`, set on the
//! swarm): the dialer proposes its one protocol and sends the frame in the same flight, without
//! waiting a round trip for the listener's confirmation. A listener that does not offer the
//! protocol (a stranger's stream, above) still refuses it at negotiation and reads nothing of
//! the frame. Issue 10, 4 validators on 2 cores: at 1,000 tx/s, p50 submit → commit went from
//! 20 ms to 17 ms; with the node's immediate gossip flush (same change) the peak went from
//! about 14,000 to about 18,500 committed tx/s.
//!
//! ## Identity and membership
//! The libp2p identity **is** the validator's ed25519 key, so a QUIC/TLS handshake proves which
//! validator is on the other end: [`peer_id_of`] maps a genesis public key to its [`PeerId`]
//! deterministically and the service keeps a `PeerId → index` map.
//!
//! ## The edge: strangers and validators (issue 8)
//! * **Protocols by membership.** Consensus, sync, transaction push and gossipsub run on
//!   validator connections
//!   only: a connection of any other peer (a *stranger*) is not offered them at all, so its
//!   streams are refused during protocol negotiation, before a byte of a frame is read. Strangers
//!   get identify and ping.
//! * **Connection slots.** Genesis validators are always admitted (at most 3 connections each:
//!   two for simultaneous dials, one so a second instance of the key is seen); strangers share
//!   a budget of `max_strangers` connections, `max_strangers_per_ip` per IP address, and each is closed `stranger_idle_ms` after it opened. Refusals (banned peer,
//!   per-peer cap, strangers' budget) are counted in `connections_refused` and logged at most
//!   every 30 s.
//! * **Gossip.** Nothing is relayed before the service accepted it: topic ours, author (its
//!   signature checked by gossipsub's strict mode) a genesis validator, author within its byte
//!   budget (`gossip_bytes_per_sec`, `gossip_burst_bytes`). Message ids are content hashes, so a
//!   payload republished with a new sequence number is a duplicate. The subscription filter
//!   admits our evidence topic only.
//! * **Transaction push.** A batch is delivered only within its sender's frame token bucket and
//!   its byte budget (the same budget as gossip); it is never relayed, so a duplicate costs
//!   only its sender's budget and the node's mempool drops the repeated transactions.
//! * **Queues.** Gossip waits in its own byte-bounded queue below consensus traffic, and
//!   connectivity changes and sync responses are never dropped.
//! * **Flaps.** A validator connection that closes within `stable_connection_ms` of opening (a
//!   peer accepting the handshake, then refusing us) does not reset the redial backoff; flaps are
//!   counted and logged at most every 30 s per peer.
//!
//! ## Framing
//! Every consensus and sync frame is `u32` big-endian length ‖ bytes. The reader checks the
//! length against the cap **before** allocating; an oversized frame resets the stream, is
//! counted (`oversized_dropped`) and scores the peer. Peer input never panics the service.
//!
//! ## Peer hygiene
//! * Per-peer token bucket on inbound consensus + sync frames (`rate_limit_msgs_per_sec`,
//!   `rate_limit_burst`); a frame without a token is dropped and scores the peer.
//! * Misbehaviour score ([`Misbehaviour::penalty`]), decaying by `score_decay_per_sec`; at
//!   `ban_score` the peer is disconnected and refused for `ban_cooldown_ms`, then let back.
//! * All other validators are dialled at start and redialled with exponential backoff
//!   (`redial_min_ms` doubling up to `redial_max_ms`, each delay jittered into
//!   `[backoff/2, backoff]`) after a disconnect or a failed dial; the backoff resets only after
//!   a connection was stable.
//!
//! ## Delivery semantics
//! Consensus delivery is best effort: a frame to a disconnected peer, or beyond
//! `max_inflight_per_peer` unacknowledged frames or `max_inflight_bytes_per_peer`
//! unacknowledged bytes, is dropped and counted (the consensus core
//! must tolerate loss: timeouts and sync recover). Frames on different streams may be
//! reordered. Sends to ourselves are looped back as events.

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod admission;
mod codec;
mod events;
mod gate;
mod goodput;
mod handle;
mod peers;
mod service;

use std::net::SocketAddr;

pub use events::{EVENT_OVERHEAD, EventReceiver};
pub use goodput::{EWMA_WEIGHT_PERCENT, Goodput, MIN_SAMPLE_BYTES};
pub use handle::NetworkHandle;
pub use libp2p::PeerId;
use libp2p::identity;

/// Protocol name of consensus unicast/broadcast frames.
pub const CONSENSUS_PROTOCOL: &str = "/bftnode/consensus/1";
/// Protocol of the long-lived consensus streams: one per validator and direction, carrying
/// consensus frames below [`MIN_SAMPLE_BYTES`] back to back (`service/links.rs`).
pub const CONSENSUS_STREAM_PROTOCOL: &str = "/bftnode/consensus-stream/1";
/// Protocol of the long-lived transaction streams: one per validator and direction, carrying
/// the batches pushed by their author back to back (`service/txs.rs`).
pub const TX_STREAM_PROTOCOL: &str = "/bftnode/txs-stream/1";
/// Protocol name of block-sync request/response.
pub const SYNC_PROTOCOL: &str = "/bftnode/sync/1";
/// Protocol version announced by identify.
pub const IDENTIFY_PROTOCOL: &str = "/bftnode/1.0.0";
/// What this node announces as its agent in identify: `bftnode/<crate version>`.
pub const AGENT_VERSION: &str = concat!("bftnode/", env!("CARGO_PKG_VERSION"));
/// Longest agent string kept from a peer's identify message, in bytes (the rest is cut).
pub const MAX_AGENT_LEN: usize = 64;
/// Protocol name of transaction batches, pushed by their author to every validator once
/// (request-response, one batch per stream, empty ack; no relay).
pub const TX_PROTOCOL: &str = "/bftnode/txs/1";
/// Gossipsub topic for evidence.
pub const EVIDENCE_TOPIC: &str = "bftnode/evidence/1";

/// One member of the genesis validator set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorPeer {
    /// Validator index in the genesis set.
    pub index: u16,
    /// ed25519 public key (32 bytes); its libp2p [`PeerId`] is [`peer_id_of`] this key.
    pub public_key: [u8; 32],
    /// UDP address the validator listens on for QUIC.
    pub addr: SocketAddr,
}

/// Configuration of the network service. Build with [`NetworkConfig::new`] and adjust fields.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// This node's ed25519 secret seed (32 bytes). The libp2p identity is derived from it.
    /// Redacted in `Debug`, zeroed on drop.
    pub secret_key: SecretSeed,
    /// UDP address to listen on for QUIC.
    pub listen: SocketAddr,
    /// Genesis validator set, normally including ourselves. A node whose key is not in the set
    /// runs as an observer (no loopback index, cannot be addressed by index).
    pub validators: Vec<ValidatorPeer>,
    /// Hard cap, in bytes, on any consensus frame and any sync request (default 4 MiB).
    pub max_frame_bytes: usize,
    /// Cap, in bytes, on a gossiped transaction/evidence message (default 1 MiB).
    pub max_gossip_bytes: usize,
    /// Cap, in bytes, on one sync response (default 16 MiB).
    pub sync_max_response_bytes: usize,
    /// Timeout, in ms, of a sync request; on expiry the requester gets `SyncResponse(Err)`.
    pub sync_timeout_ms: u64,
    /// Per-peer token refill rate, in inbound frames per second (default 5,000).
    pub rate_limit_msgs_per_sec: u32,
    /// Per-peer token bucket capacity, in frames (default 10,000).
    pub rate_limit_burst: u32,
    /// Misbehaviour score at which a peer is disconnected and refused (default 100).
    pub ban_score: i32,
    /// Score points forgiven per second (default 1).
    pub score_decay_per_sec: i32,
    /// How long, in ms, a banned peer is refused before it may connect again (default 30,000).
    pub ban_cooldown_ms: u64,
    /// First redial delay, in ms, after a disconnect or failed dial (default 100).
    pub redial_min_ms: u64,
    /// Largest redial delay, in ms; the delay doubles up to this (default 5,000).
    pub redial_max_ms: u64,
    /// Unacknowledged consensus frames allowed per peer before further sends are dropped
    /// (default 512).
    pub max_inflight_per_peer: usize,
    /// Bytes of unacknowledged consensus frames allowed per peer before further sends are
    /// dropped (default 64 MiB; at least `max_frame_bytes`). Bounds what a slow-reading peer
    /// makes us hold.
    pub max_inflight_bytes_per_peer: usize,
    /// Bytes of consensus frames and sync requests that may wait in the inbound event queue
    /// (each event charged its payload + 64 bytes); beyond it new ones are dropped and counted
    /// in `events_dropped` (default 64 MiB). Control events are never dropped (see
    /// [`EventReceiver`]).
    pub event_queue_bytes: usize,
    /// Bytes of gossip that may wait in the inbound event queue; beyond it new gossip is dropped
    /// and counted in `gossip_events_dropped` (default 16 MiB).
    pub gossip_queue_bytes: usize,
    /// Most connections of non-validators open at once, in total (default 32). Validators are
    /// never counted against it.
    pub max_strangers: usize,
    /// Most connections of non-validators open at once from one IP address (default 4).
    pub max_strangers_per_ip: usize,
    /// A non-validator's connection is closed this long, in ms, after it opened (default
    /// 10,000): strangers are offered identify and ping only, which finish in the first
    /// seconds.
    pub stranger_idle_ms: u64,
    /// A validator connection that closes sooner than this, in ms, after it opened is a
    /// *flap*: counted, logged rate-limited, and the redial backoff keeps growing instead of
    /// resetting (default 10,000).
    pub stable_connection_ms: u64,
    /// Per-author budget of gossip and pushed transaction batches, in bytes per second: what
    /// one validator authors beyond it is ignored (not delivered, not relayed) and counted in
    /// `gossip_rejected` (default 16 MiB/s: about 30,000 transactions of 512 B a second from
    /// one validator, enough for a node that takes all of a network's clients at its peak;
    /// at the old 4 MiB/s such a node lost transactions above ~7,500 tx/s).
    pub gossip_bytes_per_sec: u32,
    /// Per-author gossip burst, in bytes (default 16 MiB).
    pub gossip_burst_bytes: u32,
    /// Interval, in ms, between pings to each connected peer (default 2,000).
    pub ping_interval_ms: u64,
}

impl NetworkConfig {
    /// A configuration with the defaults documented on each field.
    pub fn new(secret_key: [u8; 32], listen: SocketAddr, validators: Vec<ValidatorPeer>) -> Self {
        Self {
            secret_key: SecretSeed::from(secret_key),
            listen,
            validators,
            max_frame_bytes: 4 * 1024 * 1024,
            max_gossip_bytes: 1024 * 1024,
            sync_max_response_bytes: 16 * 1024 * 1024,
            sync_timeout_ms: 10_000,
            rate_limit_msgs_per_sec: 5_000,
            rate_limit_burst: 10_000,
            ban_score: 100,
            score_decay_per_sec: 1,
            ban_cooldown_ms: 30_000,
            redial_min_ms: 100,
            redial_max_ms: 5_000,
            max_inflight_per_peer: 512,
            max_inflight_bytes_per_peer: 64 * 1024 * 1024,
            event_queue_bytes: 64 * 1024 * 1024,
            gossip_queue_bytes: 16 * 1024 * 1024,
            max_strangers: 32,
            max_strangers_per_ip: 4,
            stranger_idle_ms: 10_000,
            stable_connection_ms: 10_000,
            gossip_bytes_per_sec: 16 * 1024 * 1024,
            gossip_burst_bytes: 16 * 1024 * 1024,
            ping_interval_ms: 2_000,
        }
    }
}

impl NetworkConfig {
    /// Checks every value's range and the relations between them; [`start`] runs it first.
    ///
    /// # Errors
    /// [`NetworkError::InvalidConfig`] naming the field(s) and the rule.
    pub fn validate(&self) -> Result<(), NetworkError> {
        let rules: [(bool, &str); 12] = [
            (
                (1..=u32::MAX as usize).contains(&self.max_frame_bytes),
                "max_frame_bytes must be in 1..=u32::MAX",
            ),
            (
                (1..=u32::MAX as usize).contains(&self.sync_max_response_bytes),
                "sync_max_response_bytes must be in 1..=u32::MAX",
            ),
            (self.sync_timeout_ms >= 1, "sync_timeout_ms must be >= 1"),
            (
                self.rate_limit_msgs_per_sec >= 1 && self.rate_limit_burst >= 1,
                "rate_limit_msgs_per_sec and rate_limit_burst must be >= 1",
            ),
            (
                self.redial_min_ms >= 1 && self.redial_min_ms <= self.redial_max_ms,
                "need 0 < redial_min_ms <= redial_max_ms",
            ),
            (
                self.max_inflight_bytes_per_peer >= self.max_frame_bytes,
                "max_inflight_bytes_per_peer must be at least max_frame_bytes",
            ),
            (
                self.ban_score > 0 && self.score_decay_per_sec >= 0,
                "ban_score must be positive and score_decay_per_sec not negative",
            ),
            (
                self.event_queue_bytes >= self.max_frame_bytes + EVENT_OVERHEAD,
                "event_queue_bytes must hold at least one max_frame_bytes frame",
            ),
            (
                self.max_inflight_per_peer >= 1,
                "max_inflight_per_peer must be >= 1",
            ),
            (
                self.gossip_queue_bytes >= self.max_gossip_bytes + EVENT_OVERHEAD,
                "gossip_queue_bytes must hold at least one max_gossip_bytes message",
            ),
            (
                self.gossip_bytes_per_sec >= 1
                    && self.gossip_burst_bytes as usize >= self.max_gossip_bytes,
                "need gossip_bytes_per_sec > 0 and gossip_burst_bytes >= max_gossip_bytes",
            ),
            (self.ping_interval_ms >= 1, "ping_interval_ms must be >= 1"),
        ];
        match rules.iter().find(|(ok, _)| !ok) {
            Some((_, reason)) => Err(NetworkError::InvalidConfig {
                reason: (*reason).to_string(),
            }),
            None => Ok(()),
        }
    }
}

/// What a published message is, and so how it travels ([`NetworkHandle::publish`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Client transactions: pushed by their author once to every connected validator over
    /// [`TX_STREAM_PROTOCOL`], never relayed (validators are fully meshed).
    Transactions,
    /// Misbehaviour evidence ([`EVIDENCE_TOPIC`]).
    Evidence,
}

impl Topic {
    /// The gossipsub topic string or, for transactions, the protocol name.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Transactions => TX_STREAM_PROTOCOL,
            Topic::Evidence => EVIDENCE_TOPIC,
        }
    }
}

/// Something a peer did wrong. The network detects the first two itself; the node reports the
/// rest through [`NetworkHandle::report`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// A frame above the size cap.
    OversizedFrame,
    /// A frame beyond the peer's token bucket.
    RateLimitExceeded,
    /// A message with an invalid signature.
    InvalidSignature,
    /// A message carrying a certificate (QC or TC) that does not verify.
    InvalidCertificate,
    /// Bytes that do not decode.
    Undecodable,
    /// A well-formed, well-signed message that is invalid for the protocol.
    InvalidMessage,
}

impl Misbehaviour {
    /// Score points this misbehaviour adds to the peer.
    pub fn penalty(self) -> i32 {
        match self {
            Misbehaviour::OversizedFrame => 25,
            Misbehaviour::RateLimitExceeded => 1,
            Misbehaviour::InvalidSignature => 25,
            Misbehaviour::InvalidCertificate => 25,
            Misbehaviour::Undecodable => 20,
            Misbehaviour::InvalidMessage => 5,
        }
    }
}

/// Inbound traffic and connectivity changes, delivered on the receiver from [`start`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkEvent {
    /// A consensus frame from genesis validator `from` (possibly ourselves, via loopback).
    Consensus {
        /// Sender's validator index.
        from: u16,
        /// Frame payload.
        bytes: Vec<u8>,
    },
    /// A block-sync request; answer with [`NetworkHandle::respond`]`(request_id, ..)`.
    SyncRequest {
        /// Requester's validator index.
        from: u16,
        /// Id to pass to [`NetworkHandle::respond`].
        request_id: u64,
        /// Request payload.
        bytes: Vec<u8>,
    },
    /// The outcome of a [`NetworkHandle::request`].
    SyncResponse {
        /// Validator the request went to.
        from: u16,
        /// Id returned by [`NetworkHandle::request`].
        request_id: u64,
        /// Response payload, or why there is none (timeout, disconnect, too large, ...).
        result: Result<Vec<u8>, String>,
    },
    /// A gossip message (evidence) or a pushed transaction batch.
    Gossip {
        /// Topic it was published on.
        topic: Topic,
        /// Author of the message: its gossipsub signer (evidence) or the validator that pushed
        /// it (transactions, proven by the QUIC/TLS handshake).
        from: PeerId,
        /// Message payload.
        bytes: Vec<u8>,
    },
    /// First connection to validator `index` established.
    PeerConnected {
        /// Validator index.
        index: u16,
    },
    /// Last connection to validator `index` closed.
    PeerDisconnected {
        /// Validator index.
        index: u16,
    },
}

/// A snapshot of one validator peer, from [`NetworkHandle::peers`].
#[derive(Clone, Debug, PartialEq)]
pub struct PeerStatus {
    /// Validator index.
    pub index: u16,
    /// libp2p peer id.
    pub peer_id: PeerId,
    /// Whether at least one connection is open.
    pub connected: bool,
    /// Configured UDP address.
    pub address: SocketAddr,
    /// Current misbehaviour score.
    pub score: i32,
    /// Whether the peer is currently refused (banned).
    pub banned: bool,
    /// Consensus and sync frames accepted from the peer.
    pub msgs_in: u64,
    /// Consensus frames and sync requests sent to the peer.
    pub msgs_out: u64,
    /// Frames to or from the peer that were dropped (rate limit, oversized, not connected,
    /// in-flight cap, send failure).
    pub dropped: u64,
    /// Last ping round-trip time, in ms.
    pub rtt_ms: Option<f64>,
    /// The agent the peer announced in identify (e.g. `bftnode/0.1.0`), cut to
    /// [`MAX_AGENT_LEN`] bytes; `None` before its first identify message.
    pub agent: Option<String>,
    /// Times this validator's key was seen connecting from a second address while connected
    /// from another: two instances running with one key (see `duplicate_key_suspected`).
    pub duplicate_key_suspected: u64,
}

/// Service-wide counters, from [`NetworkHandle::metrics`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkMetrics {
    /// Consensus frames accepted and delivered as events (loopback excluded).
    pub frames_in: u64,
    /// Consensus frames handed to the transport (loopback excluded).
    pub frames_out: u64,
    /// Of `frames_in`, those read off a long-lived consensus stream
    /// ([`CONSENSUS_STREAM_PROTOCOL`]); the rest came by request-response.
    pub stream_frames_in: u64,
    /// Payload bytes of `frames_in` + accepted sync requests/responses.
    pub bytes_in: u64,
    /// Payload bytes of `frames_out` + sent sync requests/responses.
    pub bytes_out: u64,
    /// Inbound frames above the size cap, dropped before allocation.
    pub oversized_dropped: u64,
    /// Inbound frames dropped by the per-peer token bucket.
    pub rate_limited_dropped: u64,
    /// Inbound consensus/sync frames from peers outside the genesis set, dropped. Stays 0 while
    /// the membership gate holds (strangers are not offered those protocols); a second line of
    /// defence.
    pub non_validator_dropped: u64,
    /// Outbound frames dropped locally (peer disconnected, in-flight cap, too large).
    pub send_dropped: u64,
    /// Outbound consensus frames whose delivery failed (timeout, stream error).
    pub send_failures: u64,
    /// Events dropped because the event channel was full.
    pub events_dropped: u64,
    /// Gossip messages and transaction batches received.
    pub gossip_in: u64,
    /// Gossip messages and transaction batches published by us (a batch once, however many
    /// validators it went to).
    pub gossip_out: u64,
    /// Publishes that failed (no peers, too large, ...).
    pub gossip_publish_failed: u64,
    /// Bans issued.
    pub bans: u64,
    /// Inbound connections refused at admission: stranger budget full, per-IP cap reached,
    /// banned peer, or a validator above its per-validator cap.
    pub connections_refused: u64,
    /// Connections of non-validators closed because they stayed past the stranger idle limit.
    pub strangers_closed_idle: u64,
    /// Connections to validators that closed before they had lived long enough to count as
    /// stable (see `NetworkConfig::stable_connection_ms`).
    pub connection_flaps: u64,
    /// Gossip messages and transaction batches rejected before delivery (source not a
    /// validator, per-source byte budget).
    pub gossip_rejected: u64,
    /// Inbound sync requests dropped because `MAX_PENDING_SYNC` were already unanswered.
    pub pending_sync_dropped: u64,
    /// Inbound connections (admitted or refused) of a validator's key from a socket address
    /// other than the one it is connected from at that moment: the mark of a second instance
    /// running with the same key, which risks double-signing (issue 9, §3b). Counted per
    /// validator in [`PeerStatus::duplicate_key_suspected`] and warned about at most every 30 s
    /// per validator.
    pub duplicate_key_suspected: u64,
    /// Inbound gossip events dropped because the gossip queue was full (bytes cap).
    pub gossip_events_dropped: u64,
}

impl NetworkMetrics {
    /// Every counter as `(name, help, value)`, for export (e.g. Prometheus, where the node
    /// prefixes `bftnode_net_` and suffixes `_total`). One row per field.
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 22] {
        [
            (
                "frames_in",
                "Consensus frames accepted from peers",
                self.frames_in,
            ),
            (
                "frames_out",
                "Consensus frames handed to the transport",
                self.frames_out,
            ),
            (
                "stream_frames_in",
                "Consensus frames accepted from long-lived streams (a subset of frames_in)",
                self.stream_frames_in,
            ),
            (
                "bytes_in",
                "Payload bytes accepted (consensus and sync)",
                self.bytes_in,
            ),
            (
                "bytes_out",
                "Payload bytes sent (consensus and sync)",
                self.bytes_out,
            ),
            (
                "oversized_dropped",
                "Inbound frames above the size cap",
                self.oversized_dropped,
            ),
            (
                "rate_limited_dropped",
                "Inbound frames dropped by the per-peer token bucket",
                self.rate_limited_dropped,
            ),
            (
                "non_validator_dropped",
                "Consensus/sync frames from non-validators dropped",
                self.non_validator_dropped,
            ),
            (
                "send_dropped",
                "Outbound frames dropped locally",
                self.send_dropped,
            ),
            (
                "send_failures",
                "Outbound consensus frames whose delivery failed",
                self.send_failures,
            ),
            (
                "events_dropped",
                "Inbound consensus/sync events dropped because their queue was full",
                self.events_dropped,
            ),
            ("gossip_in", "Gossip messages received", self.gossip_in),
            ("gossip_out", "Gossip messages published", self.gossip_out),
            (
                "gossip_publish_failed",
                "Gossip publishes that failed",
                self.gossip_publish_failed,
            ),
            ("bans", "Peer bans issued", self.bans),
            (
                "connections_refused",
                "Inbound connections refused at admission",
                self.connections_refused,
            ),
            (
                "strangers_closed_idle",
                "Non-validator connections closed as idle",
                self.strangers_closed_idle,
            ),
            (
                "connection_flaps",
                "Validator connections that closed before becoming stable",
                self.connection_flaps,
            ),
            (
                "gossip_rejected",
                "Gossip messages rejected before relay",
                self.gossip_rejected,
            ),
            (
                "gossip_events_dropped",
                "Gossip events dropped because the gossip queue was full",
                self.gossip_events_dropped,
            ),
            (
                "pending_sync_dropped",
                "Inbound sync requests dropped at the pending cap",
                self.pending_sync_dropped,
            ),
            (
                "duplicate_key_suspected",
                "Connections of a validator key from a second address while connected from another",
                self.duplicate_key_suspected,
            ),
        ]
    }
}

/// Errors from [`start`] and [`peer_id_of`]. Peer faults never surface here: they are counted.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The 32-byte secret seed is not a valid ed25519 secret key.
    #[error("invalid ed25519 secret key")]
    InvalidSecretKey,
    /// A validator public key is not a valid ed25519 point.
    #[error("invalid ed25519 public key for validator {index}")]
    InvalidPublicKey {
        /// Offending validator's index (`u16::MAX` from [`peer_id_of`]).
        index: u16,
    },
    /// Two validators share an index or a key.
    #[error("duplicate validator index {index} or key in the validator set")]
    DuplicateValidator {
        /// Index of the second occurrence.
        index: u16,
    },
    /// A configuration value is out of range.
    #[error("invalid network config: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// Building a libp2p behaviour failed.
    #[error("building libp2p behaviour failed: {reason}")]
    Behaviour {
        /// libp2p's message.
        reason: String,
    },
    /// Binding the QUIC listener failed.
    #[error("listening on {addr} failed: {reason}")]
    Listen {
        /// Address we tried.
        addr: SocketAddr,
        /// The transport error and its causes, e.g. `"Address already in use (os error 98)"`.
        reason: String,
    },
}

/// The libp2p [`PeerId`] of an ed25519 validator public key. Deterministic: the same key always
/// gives the same id, and a connection from that id was authenticated with that key.
pub fn peer_id_of(public_key: &[u8; 32]) -> Result<PeerId, NetworkError> {
    let pk = identity::ed25519::PublicKey::try_from_bytes(public_key)
        .map_err(|_| NetworkError::InvalidPublicKey { index: u16::MAX })?;
    Ok(identity::PublicKey::from(pk).to_peer_id())
}

/// The ed25519 public key (32 bytes) of a secret seed, as libp2p derives it.
pub fn public_key_of(secret_key: &[u8; 32]) -> Result<[u8; 32], NetworkError> {
    let kp = keypair_of(secret_key)?;
    let ed = kp
        .public()
        .try_into_ed25519()
        .map_err(|_| NetworkError::InvalidSecretKey)?;
    Ok(ed.to_bytes())
}

/// A 32-byte ed25519 secret seed. `Debug` prints `SecretSeed(<redacted>)`, never the bytes,
/// and every copy is overwritten with zeros when dropped.
#[derive(Clone, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct SecretSeed([u8; 32]);

impl SecretSeed {
    /// The seed's bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for SecretSeed {
    fn from(seed: [u8; 32]) -> Self {
        SecretSeed(seed)
    }
}

impl std::fmt::Debug for SecretSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSeed(<redacted>)")
    }
}

fn keypair_of(secret_key: &[u8; 32]) -> Result<identity::Keypair, NetworkError> {
    let mut seed = *secret_key;
    identity::Keypair::ed25519_from_bytes(&mut seed).map_err(|_| NetworkError::InvalidSecretKey)
}

/// Starts the network service on the current tokio runtime: binds the QUIC listener, dials the
/// other validators and returns the command handle and the inbound event receiver. The service
/// stops when every handle is dropped or [`NetworkHandle::shutdown`] is called.
pub async fn start(cfg: NetworkConfig) -> Result<(NetworkHandle, EventReceiver), NetworkError> {
    let keypair = keypair_of(cfg.secret_key.expose())?;
    service::spawn(cfg, keypair)
}
