//! JSON bodies of the RPC server. The CLI deserializes these same structs.
//!
//! Ids and hashes are lower-case hex strings; heights, views and indices are numbers.

use serde::{Deserialize, Serialize};

/// `GET /status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Chain id.
    pub chain_id: String,
    /// Our validator index.
    pub validator_index: u16,
    /// Our libp2p peer id.
    pub peer_id: String,
    /// Current view.
    pub view: u64,
    /// Leader of the current view.
    pub leader: u16,
    /// Highest committed height.
    pub committed_height: u64,
    /// Id of the highest committed block.
    pub last_commit_id: String,
    /// View of the high QC (= lock).
    pub high_qc_view: u64,
    /// Block of the high QC.
    pub high_qc_block: String,
    /// View of the highest TC, if any.
    pub high_tc_view: Option<u64>,
    /// `Normal`, `Partitioned`, `Recovering` or `UnderAttack`.
    pub health: String,
    /// `synced`, `syncing` or `halted`.
    pub sync_state: String,
    /// Pending transactions.
    pub mempool_txs: usize,
    /// Pending transaction bytes.
    pub mempool_bytes: usize,
    /// Connected validator peers.
    pub peers_connected: usize,
    /// Whether this validator signs: `active`; `held` while the double-sign check at start
    /// runs (PROTOCOL.md §4.10); `suspended until view N` after a certificate showed our key
    /// signing elsewhere (§4.9).
    #[serde(default)]
    pub signing: String,
    /// The node's version (`bftnode/<version>` is what peers see in identify).
    #[serde(default)]
    pub version: String,
    /// The git commit it was built from (12 hex digits), or `unknown`.
    #[serde(default)]
    pub git_commit: String,
    /// Time since this node last committed a block (since it started, before the first), ms.
    #[serde(default)]
    pub last_commit_age_ms: u64,
    /// Lowest height above genesis whose block this node still serves (1 when it prunes
    /// nothing; `[storage] retain_heights`, [`crate::pruner`]). Heights below answer
    /// `GET /blocks/{height}` with 410 Gone.
    #[serde(default)]
    pub retained_from: u64,
}

/// `GET /blocks/latest`, `GET /blocks/{height}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockResponse {
    /// Height.
    pub height: u64,
    /// Block id.
    pub id: String,
    /// View it was proposed in.
    pub view: u64,
    /// Parent id.
    pub parent: String,
    /// Proposer index.
    pub proposer: u16,
    /// View of its justify QC.
    pub justify_view: u64,
    /// Transactions in the payload.
    pub tx_count: usize,
    /// Their hashes, in payload order.
    pub tx_hashes: Vec<String>,
    /// Evidence items it carries.
    pub evidence_count: usize,
    /// Payload size in bytes.
    pub payload_bytes: usize,
    /// Whether the payload failed to decode (it was skipped when applied).
    #[serde(default)]
    pub payload_invalid: bool,
}

/// Status of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxStatus {
    /// In this node's mempool.
    Pending,
    /// Committed.
    Committed,
    /// Not known to this node.
    Unknown,
}

/// `GET /tx/{hash}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxResponse {
    /// Transaction hash.
    pub hash: String,
    /// Status.
    pub status: TxStatus,
    /// Committed height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// Committed block id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_id: Option<String>,
    /// Position in the block's payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
}

/// `GET /kv/{key}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvResponse {
    /// The key asked for.
    pub key: String,
    /// Whether it is set.
    pub found: bool,
    /// The value: UTF-8 text, or hex if `value_hex`.
    pub value: Option<String>,
    /// Whether `value` is hex (the value is not valid UTF-8).
    #[serde(default)]
    pub value_hex: bool,
}

/// One entry of `GET /validators`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorResponse {
    /// Index.
    pub index: u16,
    /// Public key (hex).
    pub public_key: String,
    /// Voting power.
    pub power: u64,
    /// QUIC address from genesis.
    pub p2p_addr: String,
    /// libp2p peer id.
    pub peer_id: String,
    /// `Active`, `Suspected`, `Isolated` or `Rehabilitated`.
    pub state: String,
    /// Election weight (0 = excluded).
    pub weight: u64,
    /// Blocks proposed in the reputation window.
    pub proposed: u64,
    /// Missed proposals in the window.
    pub failed: u64,
    /// Votes in the window.
    pub voted: u64,
    /// Invalid messages seen from it.
    pub invalid_messages: u64,
    /// Evidence items against it.
    pub evidence: u64,
    /// Whether committed evidence exists against it.
    pub convicted: bool,
    /// Whether it leads the current view.
    pub is_leader: bool,
    /// Times its key was seen connecting from a second address while connected from another
    /// (two instances with one key: a double-signing risk; from the network, as in
    /// `GET /peers`). 0 for ourselves.
    #[serde(default)]
    pub duplicate_key_suspected: u64,
    /// Evidence items held against it that consist of two conflicting messages it signed
    /// (double vote, double proposal, lock violation, conflicting timeouts), pending or
    /// committed.
    #[serde(default)]
    pub conflicting_messages: u64,
}

/// One entry of `GET /peers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerResponse {
    /// Validator index.
    pub index: u16,
    /// libp2p peer id.
    pub peer_id: String,
    /// Whether connected.
    pub connected: bool,
    /// Configured address.
    pub address: String,
    /// Misbehaviour score.
    pub score: i32,
    /// Whether banned.
    pub banned: bool,
    /// Frames received.
    pub msgs_in: u64,
    /// Frames sent.
    pub msgs_out: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Last ping RTT (ms).
    pub rtt_ms: Option<f64>,
    /// What the peer announced as its agent (e.g. `bftnode/0.1.0`), if it identified itself.
    #[serde(default)]
    pub agent: Option<String>,
    /// Times this validator's key connected from a second address while connected from
    /// another: two instances with one key, a double-signing risk.
    #[serde(default)]
    pub duplicate_key_suspected: u64,
}

/// One entry of `GET /evidence`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceResponse {
    /// Evidence id (hex).
    pub id: String,
    /// Kind (`double_vote`, …).
    pub kind: String,
    /// Accused validator.
    pub offender: u16,
    /// View of the offence.
    pub view: u64,
    /// Whether a committed block carries it.
    pub committed: bool,
}

/// One validator listed by `GET /faults`: why, and since when this node sees it so.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultEntry {
    /// Validator index.
    pub index: u16,
    /// Public key (hex).
    pub public_key: String,
    /// Voting power.
    pub power: u64,
    /// Why it is listed, in words (the evidence, the reputation figures, the connection).
    pub reason: String,
    /// The view at which this node first saw the condition (for a conviction: the view of the
    /// committed evidence); `None` when not tracked. Conditions are sampled every 500 ms and
    /// on every `GET /faults`, since the node started.
    pub since_view: Option<u64>,
    /// The committed height when this node first saw it (for a conviction: the height of the
    /// block that committed the evidence, exact and the same on every node); `None` when not
    /// tracked.
    pub since_height: Option<u64>,
}

/// `GET /faults`: how many more faults the chain can take, and who is faulty.
///
/// Powers are voting power (with unit powers, validator counts): `f = ⌊(N−1)/3⌋`,
/// `quorum = N − f` (PROTOCOL.md §1), `faulty_power` = power of the validators convicted,
/// isolated or down (each counted once), `tolerance_margin = f − faulty_power` (negative: more
/// faults than the chain tolerates; commits stop when fewer than a quorum are honest and up).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FaultsResponse {
    /// Number of validators `n`.
    pub validators: usize,
    /// Total voting power `N`.
    pub total_power: u64,
    /// Faulty power tolerated, `f = ⌊(N−1)/3⌋`.
    pub f: u64,
    /// Quorum power, `N − f`.
    pub quorum: u64,
    /// Power of the validators convicted, isolated or down (each counted once).
    pub faulty_power: u64,
    /// `f − faulty_power`.
    pub tolerance_margin: i64,
    /// Health (`Normal`, `Partitioned`, `Recovering`, `UnderAttack`).
    pub health: String,
    /// Why, in words, with the figures the verdict rests on.
    pub health_reason: String,
    /// Current view.
    pub view: u64,
    /// Highest committed height.
    pub committed_height: u64,
    /// Validators against which a committed block carries safety evidence (excluded from
    /// leadership for good).
    pub convicted: Vec<FaultEntry>,
    /// Validators with election weight 0 in the latest cut (committed evidence or committed
    /// reputation): they lead no view.
    pub isolated: Vec<FaultEntry>,
    /// Validators this node suspects from local observations: missed proposals, invalid
    /// messages, evidence held but not yet committed, its key connecting from two addresses.
    pub suspected: Vec<FaultEntry>,
    /// Validators this node is not connected to.
    pub down: Vec<FaultEntry>,
    /// The chain id of the signing domain (the genesis chain id, extended by a digest of the
    /// non-default chain-wide fault parameters).
    pub domain_chain_id: String,
    /// The fault-policy parameters this node runs with (genesis `fault` and `[fault]`).
    pub params: fault::FaultConfig,
}

/// `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// Health state.
    pub health: String,
    /// Whether the node is healthy: state `Normal`, not halted, and a commit within
    /// `[rpc] health_max_commit_age_ms`.
    pub ok: bool,
    /// Why not, in words (empty when `ok`).
    #[serde(default)]
    pub reason: String,
    /// Whether the node halted (safety violation or store error).
    #[serde(default)]
    pub halted: bool,
    /// Time since the last commit (since start, before the first), ms.
    #[serde(default)]
    pub last_commit_age_ms: u64,
}

/// A transaction as submitted in JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum TxRequest {
    /// `{"op":"put","key":"k","value":"v","nonce":1,"expires_at":12000}`.
    Put {
        /// Key (UTF-8).
        key: String,
        /// Value (UTF-8).
        value: String,
        /// Nonce.
        #[serde(default)]
        nonce: u64,
        /// The last height it may commit at (`crate::app::Transaction::expires_at`); absent:
        /// the node's committed height + [`crate::app::DEFAULT_TX_LIFETIME`]. The hash covers
        /// it, so a client that may send one transaction to several nodes (retries, failover)
        /// must set it, or each node makes a different transaction of it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<u64>,
    },
    /// `{"op":"delete","key":"k","nonce":2}`.
    Delete {
        /// Key (UTF-8).
        key: String,
        /// Nonce.
        #[serde(default)]
        nonce: u64,
        /// As for [`TxRequest::Put`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<u64>,
    },
}

impl TxRequest {
    /// The transaction this request describes, validated (key and value sizes), expiring at
    /// its `expires_at` or, if it names none, `committed + DEFAULT_TX_LIFETIME` (`committed`:
    /// the node's committed height). Whether the expiry is within reach is the mempool's
    /// check. Errors: the validation failure, as text for a 400 response.
    pub fn into_transaction(
        self,
        committed: consensus::Height,
    ) -> Result<crate::app::Transaction, String> {
        use crate::app::{DEFAULT_TX_LIFETIME, Transaction};
        let expiry = |e: Option<u64>| {
            consensus::Height(e.unwrap_or(committed.0.saturating_add(DEFAULT_TX_LIFETIME)))
        };
        let tx = match self {
            TxRequest::Put {
                key,
                value,
                nonce,
                expires_at,
            } => Transaction::put(key, value, nonce, expiry(expires_at)),
            TxRequest::Delete {
                key,
                nonce,
                expires_at,
            } => Transaction::delete(key, nonce, expiry(expires_at)),
        };
        tx.validate().map_err(|e| e.to_string())?;
        Ok(tx)
    }
}

/// `POST /tx` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// Transaction hash (hex).
    pub hash: String,
}

/// `POST /txs` body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Up to [`MAX_BATCH_TXS`] transactions.
    pub txs: Vec<TxRequest>,
}

/// Maximum transactions in one `POST /txs`.
pub const MAX_BATCH_TXS: usize = 10_000;

/// A per-transaction error of `POST /txs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchError {
    /// Position in the request.
    pub index: usize,
    /// Why it was rejected.
    pub error: String,
}

/// `POST /txs` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse {
    /// Transactions accepted.
    pub accepted: usize,
    /// Hashes of the accepted transactions (hex), in request order.
    pub hashes: Vec<String>,
    /// Rejected transactions.
    pub errors: Vec<BatchError>,
}

/// Any error reply (4xx/5xx).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: String,
}

/// `GET /penalties` (one per validator, by index) and `GET /penalties/{validator}`: the
/// committed accountability standing (PROTOCOL.md §6.6) and the penalty entries the KV
/// application recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PenaltiesResponse {
    /// Validator index.
    pub validator: u16,
    /// `good`, `quarantined`, `isolated` or `rehabilitated`.
    pub standing: String,
    /// Height of the block that set `standing` (0: genesis).
    pub since_height: u64,
    /// Whether committed safety evidence convicted it (isolated for good).
    pub convicted: bool,
    /// Strikes since the last rehabilitation.
    pub strikes: u64,
    /// Downtime records over the chain.
    pub downtime_records: u64,
    /// Evidence items committed against it over the chain.
    pub evidence_committed: u64,
    /// Penalty entries ever recorded (`entries` holds the most recent 64).
    pub total_penalties: u64,
    /// Height of the last committed block the accounting took in.
    pub accounted_height: u64,
    /// Recent penalty entries, oldest first.
    pub entries: Vec<PenaltyEntryResponse>,
}

/// One penalty entry. Evidence fields are set for evidence, window fields for downtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PenaltyEntryResponse {
    /// Height of the committed block that carries or derives it.
    pub height: u64,
    /// View of that block.
    pub block_view: u64,
    /// `downtime`, or the evidence kind (`double_vote`, …).
    pub kind: String,
    /// Standing after this entry.
    pub standing: String,
    /// Evidence id (hex).
    pub evidence_id: Option<String>,
    /// View of the offence.
    pub evidence_view: Option<u64>,
    /// Whether the evidence proves a safety violation.
    pub safety: Option<bool>,
    /// First height of the downtime window.
    pub window_start: Option<u64>,
    /// Last height of the downtime window.
    pub window_end: Option<u64>,
    /// Justify QCs it signed in the window (of blocks it did not propose).
    pub signed: Option<u64>,
    /// Blocks of the window it did not propose (height ≥ 2).
    pub eligible: Option<u64>,
    /// Blocks it proposed in the window.
    pub proposed: Option<u64>,
    /// Its failed leader slots in the window.
    pub missed_slots: Option<u64>,
    /// The participation threshold, in percent.
    pub threshold_pct: Option<u64>,
}

/// One committed block on the commit stream (`GET /events`, SSE event `commit`; the event
/// `lagged` carries `{"skipped": n}` when a slow client missed `n` blocks).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitEvent {
    /// Height.
    pub height: u64,
    /// View it was proposed in.
    pub view: u64,
    /// Block id (hex).
    pub id: String,
    /// When this node's commit of it reached the disk (Unix time, ms).
    pub committed_unix_ms: u64,
    /// Hashes (hex) of the transactions it applied, in payload order (skipped ones left out).
    pub txs: Vec<String>,
}

/// `GET /why-stalled`: why the chain is not committing, from this node's point of view
/// (module `why_stalled`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhyStalledResponse {
    /// No commit for `why_stalled::STALLED_AFTER` (2 s), or halted.
    pub stalled: bool,
    /// What the node sees, in words, most important first.
    pub findings: Vec<String>,
    /// Highest committed height.
    pub committed_height: u64,
    /// Time since the last commit (since start, before the first), ms.
    pub last_commit_age_ms: u64,
    /// Current view.
    pub view: u64,
    /// Its leader.
    pub leader: u16,
    /// The next view's leader.
    pub next_leader: u16,
    /// The current view's timeout, ms.
    pub view_timeout_ms: u64,
    /// Its backoff exponent.
    pub backoff_exponent: u32,
    /// View of the latest QC (the lock).
    pub high_qc_view: u64,
    /// Voting power connected, ourselves included.
    pub connected_power: u64,
    /// Quorum power.
    pub quorum_power: u64,
    /// Whether a block fetch is in flight.
    pub syncing: bool,
    /// One entry per validator, in index order.
    pub validators: Vec<StallValidator>,
}

/// One validator in [`WhyStalledResponse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StallValidator {
    /// Validator index.
    pub index: u16,
    /// Connected (always, for ourselves).
    pub connected: bool,
    /// Time since anything arrived from it, ms (0 for ourselves).
    pub silent_ms: u64,
    /// Whether it signed the latest QC.
    pub in_latest_qc: bool,
    /// Whether it sent a timeout for the current view.
    pub timed_out_this_view: bool,
    /// The highest view it sent a timeout for, among those still collected.
    pub latest_timeout_view: Option<u64>,
}
