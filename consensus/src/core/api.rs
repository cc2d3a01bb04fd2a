//! The core's inputs ([`Event`]), outputs ([`Action`]), configuration and status snapshot.

use crate::block::Block;
use crate::cert::QuorumCert;
use crate::evidence::{Evidence, EvidenceKind};
use crate::messages::{BlockRequest, BlockResponse, ConsensusMessage};
use crate::policy::{Health, InvalidReason, Millis, ValidatorStatus};
use crate::safety::SafetyData;
use crate::types::{BlockId, Height, ValidatorIndex, View};
use serde::Serialize;

/// Core configuration. Times in milliseconds.
#[derive(Clone, Debug)]
pub struct Config {
    /// This validator.
    pub me: ValidatorIndex,
    /// Δ_est: the estimated post-GST message delay bound (ms).
    pub delta_ms: u64,
    /// τ_base: base view timeout (ms); choose ≥ 5Δ (PROTOCOL.md §4.2).
    pub timeout_base_ms: u64,
    /// τ_max: cap on the view timeout (ms).
    pub timeout_max_ms: u64,
    /// e_max: cap on the backoff exponent.
    pub backoff_exponent_max: u32,
    /// Growth of τ and W per backoff step, in percent: 200 doubles (`2^e`; PROTOCOL.md §4.2, §9),
    /// the default 150 grows ×1.5 (Aptos uses ×1.2): with reputation-based election a crashed
    /// leader can be drawn several times before its failures are committed, and doubling then
    /// costs seconds for nothing (measured: 9 s from leader crash to commit with ×2).
    pub backoff_percent: u64,
    /// Grace before timing out a view whose leader the driver reports disconnected (ms). A
    /// timeout is always safe, so a node does not wait τ(v) for a leader it cannot reach.
    pub unreachable_leader_grace_ms: u64,
    /// A leader from which nothing arrived for this long (ms) is treated as unreachable too
    /// (its view gets the grace above); after twice this long its view is timed out at once,
    /// and after half of it, as `leader(v−1)` of a view entered by TC, its status is not
    /// waited for (H2). Every live validator broadcasts a vote or a timeout in every view, so
    /// silence longer than a base timeout means a crash or a partition, seen before the
    /// transport's idle timeout notices. Local only (timeouts are always safe). Block sync
    /// asks peers quiet for half of it last and leaves one that goes quiet (§6.5 rule 2). The
    /// node sets it to `τ_base` (PROTOCOL.md §4.2 rule 4, §4.4).
    pub silent_leader_ms: u64,
    /// τ_resend: period of re-sending our timeout while stuck in a view (ms).
    pub resend_ms: u64,
    /// K: future views for which single-signature messages are accepted.
    pub view_window: u64,
    /// Maximum payload size a proposal may carry (bytes).
    pub max_payload_bytes: usize,
    /// Maximum blocks asked for in one block-sync request.
    pub sync_max_blocks: u32,
    /// Block-sync request timeout before rotating to another peer (ms); the request moves on
    /// earlier when the peer asked goes quiet for `silent_leader_ms / 2` while another peer
    /// does not (PROTOCOL.md §6.5 rule 2).
    pub sync_timeout_ms: u64,
    /// Maximum concurrent block-sync requests.
    pub sync_max_inflight: usize,
    /// Views of silence after a certificate shows our key signing where we did not (PROTOCOL.md
    /// §4.9): no signature for views ≤ that view + this. 0 disables the rule. Default 20.
    pub double_sign_window: u64,
    /// Double-sign check at start (PROTOCOL.md §4.10): after `Event::Start`, sign nothing until
    /// this many distinct certified views above our watermark carried no signature of ours.
    /// 0 disables the check; clamped to `1..=64` otherwise. Default 0 here (unit tests and
    /// fuzzers start signing at once); the node's `[consensus]` default is 8.
    pub double_sign_check_views: u64,
    /// ... or until no new certificate arrived for this long (ms): the chain waits for us, so
    /// no other instance of our key is signing in it. The node sets it to `τ_base`.
    /// Default 1 000.
    pub double_sign_check_ms: u64,
    /// Deliberate protocol bugs for the simulator's canaries, all off by default. Only with the
    /// crate feature `mutations` (enabled by the simulator alone, never by the node).
    #[cfg(feature = "mutations")]
    pub mutations: super::Mutations,
}

impl Config {
    /// Defaults for a LAN/loopback deployment: Δ = 100 ms, τ_base = 1 s, τ_max = 30 s.
    pub fn new(me: ValidatorIndex) -> Self {
        Config {
            me,
            delta_ms: 100,
            timeout_base_ms: 1_000,
            timeout_max_ms: 30_000,
            backoff_exponent_max: 6,
            backoff_percent: 150,
            unreachable_leader_grace_ms: 200,
            silent_leader_ms: 1_000,
            resend_ms: 1_000,
            view_window: 100,
            max_payload_bytes: 2 * 1024 * 1024,
            sync_max_blocks: 100,
            sync_timeout_ms: 2_000,
            sync_max_inflight: 4,
            double_sign_window: 20,
            double_sign_check_views: 0,
            double_sign_check_ms: 1_000,
            #[cfg(feature = "mutations")]
            mutations: super::Mutations::default(),
        }
    }
}

/// A timer the core asked for. The driver fires it as [`Event::Timer`] at its deadline; timers
/// for past views are ignored by the core, so the driver need not cancel them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// View `v` timed out (τ(v) after entering it).
    View(View),
    /// Re-send our timeout for `v`.
    Resend(View),
    /// H3: the leader's bounded wait in `v` elapsed.
    ProposeWait(View),
    /// A block-sync request may have been lost.
    Sync(u64),
    /// The double-sign check at start may pass for lack of certificates (§4.10).
    SignCheck,
}

/// Inputs of the core.
#[derive(Clone, Debug)]
pub enum Event {
    /// Sent once after construction (fresh start or restart): arms the timer, re-sends the last
    /// vote/timeout of the current view and sends a status.
    Start,
    /// A decoded message received from validator `from` (the authenticated network peer).
    /// Signatures are verified inside the core.
    Message {
        /// Peer that delivered it.
        from: ValidatorIndex,
        /// The message.
        msg: ConsensusMessage,
    },
    /// A timer fired.
    Timer(Timer),
    /// The application's payload for our proposal in `view`.
    PayloadReady {
        /// View the payload was requested for.
        view: View,
        /// Opaque payload (≤ `max_payload_bytes`).
        payload: Vec<u8>,
    },
    /// A block-sync response.
    BlocksFetched {
        /// Request id from [`Action::FetchBlocks`].
        request_id: u64,
        /// Peer that answered.
        from: ValidatorIndex,
        /// The blocks (unverified).
        response: BlockResponse,
    },
    /// A block-sync request failed (timeout, disconnect).
    FetchFailed {
        /// Request id.
        request_id: u64,
    },
    /// Evidence received by gossip (unverified).
    EvidenceReceived(Evidence),
    /// The set of connected validators changed (self excluded).
    Connectivity {
        /// Currently connected validators.
        connected: Vec<ValidatorIndex>,
    },
}

/// Outputs of the core, **in order**. The driver must make every `PersistSafety` (and
/// `PersistBlock` before it) durable — a synced write — before performing any later `Send`,
/// `Broadcast` or `FetchBlocks` of the same batch (persist before send, PROTOCOL.md §3).
#[derive(Clone, Debug)]
pub enum Action {
    /// Durably replace the safety record (synced write).
    PersistSafety(Box<SafetyData>),
    /// Store a block by id (it may still be pruned if it never commits). `id` is
    /// `block.id(domain)`, computed once by the core (it costs a BLAKE3 pass over the payload).
    PersistBlock {
        /// The block's id.
        id: BlockId,
        /// The block.
        block: Box<Block>,
    },
    /// Send to one validator.
    Send {
        /// Recipient (never ourselves).
        to: ValidatorIndex,
        /// Message.
        msg: ConsensusMessage,
    },
    /// Send to every other validator.
    Broadcast(ConsensusMessage),
    /// Fire [`Event::Timer`] with `timer` at time `at` (ms).
    SetTimer {
        /// Which timer.
        timer: Timer,
        /// Deadline (ms, same clock as `now`).
        at: Millis,
    },
    /// Blocks became committed, in height order, each extending the previous committed block;
    /// `proof` is the QC with consecutive views that committed the last one.
    Commit {
        /// Newly committed blocks, ascending height.
        blocks: Vec<Block>,
        /// Their ids.
        ids: Vec<BlockId>,
        /// The commit proof.
        proof: QuorumCert,
    },
    /// New verified evidence: store and gossip it.
    Evidence(Box<Evidence>),
    /// Ask `peer` for blocks; answer with [`Event::BlocksFetched`] / [`Event::FetchFailed`].
    FetchBlocks {
        /// Request id.
        request_id: u64,
        /// Peer to ask.
        peer: ValidatorIndex,
        /// The request.
        request: BlockRequest,
    },
    /// Produce the payload for our proposal in `view` on top of `parent` at `height`; answer
    /// with [`Event::PayloadReady`].
    RequestPayload {
        /// View of the proposal.
        view: View,
        /// Parent block.
        parent: BlockId,
        /// Height of the new block.
        height: Height,
    },
    /// A committed block would not extend the committed chain: a safety violation (more than f
    /// Byzantine). The core has halted; operators must intervene.
    SafetyViolation(String),
    /// `peer` (the direct sender) sent a message that no honest validator sends: a bad signature
    /// or a certificate that does not verify ([`InvalidReason::proves_sender_faulty`]). The
    /// driver scores the peer and bans it at its threshold; the core has already dropped the
    /// message. Not emitted for our own messages.
    PeerMisbehaved {
        /// The direct sender.
        peer: ValidatorIndex,
        /// Why the message was refused.
        reason: InvalidReason,
    },
}

/// Message and event counters of the core.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Proposals sent.
    pub proposals_sent: u64,
    /// Of those, proposals in a reserved view, sent without a synced write of their own
    /// (PROTOCOL.md §3 rule 4).
    pub proposals_reserved: u64,
    /// Votes signed.
    pub votes_sent: u64,
    /// Timeouts signed.
    pub timeouts_sent: u64,
    /// QCs formed locally.
    pub qcs_formed: u64,
    /// TCs formed locally.
    pub tcs_formed: u64,
    /// Blocks committed.
    pub blocks_committed: u64,
    /// Messages rejected.
    pub invalid_messages: u64,
    /// Block-sync requests issued.
    pub sync_requests: u64,
    /// Block-sync responses that were empty: the peer does not hold the target (not received
    /// yet, or pruned below its `retained_from`). Retried with the next peer, without blame.
    pub sync_unavailable: u64,
    /// Views entered via TC.
    pub views_via_tc: u64,
    /// Certificates (QC or TC) whose signatures were checked, cache misses only (each costs one
    /// signature check per signer).
    pub certificates_verified: u64,
    /// Signatures checked: every single-signature check of a received message, plus every
    /// signature a QC or TC carries when the certificate is actually verified (not a cache hit),
    /// but for a QC's signatures identical to votes we accepted ([`Self::signatures_reused`]).
    pub signatures_verified: u64,
    /// Signatures of verified QCs taken as valid without a check: byte for byte a vote we had
    /// accepted (checked under the same strict rule) for the same vote data.
    pub signatures_reused: u64,
    /// Verified certificates carrying our signature for a view we never signed in: our key in
    /// use elsewhere (PROTOCOL.md §4.9). Each one (re)starts a suspension of our signatures.
    pub own_signatures_elsewhere: u64,
    /// How long the double-sign check at start held our signatures (ms; PROTOCOL.md §4.10),
    /// set when it passes.
    pub sign_check_held_ms: u64,
}

/// A snapshot of the core for RPC, metrics and tests.
#[derive(Clone, Debug, Serialize)]
pub struct CoreStatus {
    /// This validator.
    pub me: ValidatorIndex,
    /// Current view.
    pub view: View,
    /// Leader of the current view.
    pub leader: ValidatorIndex,
    /// Highest committed height.
    pub committed_height: Height,
    /// View of the highest committed block.
    pub committed_view: View,
    /// Id of the highest committed block.
    pub last_commit_id: BlockId,
    /// View of the lock (= high QC).
    pub lock_view: View,
    /// Block of the lock.
    pub lock_block: BlockId,
    /// View of the highest TC known.
    pub high_tc_view: Option<View>,
    /// Last voted view.
    pub last_voted_view: View,
    /// Health.
    pub health: Health,
    /// Whether block sync is in flight.
    pub syncing: bool,
    /// Blocks held in memory.
    pub blocks_in_memory: usize,
    /// Whether the core halted on a safety violation.
    pub halted: bool,
    /// Whether the double-sign check at start still holds every signature (PROTOCOL.md §4.10).
    pub signing_held: bool,
    /// Signatures are suspended for views ≤ this after our key was seen signing elsewhere
    /// (PROTOCOL.md §4.9); `View(0)` when never suspended.
    pub signing_suspended_until: View,
    /// Per-validator fault status.
    pub validators: Vec<ValidatorStatus>,
    /// Evidence known, by kind.
    pub evidence_counts: Vec<(EvidenceKind, u64)>,
    /// Counters.
    pub counters: Counters,
}
