//! The replicated key-value application.
//!
//! A [`Transaction`] puts or deletes one key; its identity is `BLAKE3(borsh(tx))` ([`TxHash`]).
//! A block's opaque consensus payload is a version-tagged [`Payload`]: today
//! [`Payload::Transactions`] carries the transactions inline; a later version can add
//! dissemination by digest (`Payload::Batches(Vec<Digest>)`) without touching storage, sync or
//! RPC, which only ever see payload bytes and the [`TxLocation`]-style index this module emits.
//!
//! Applying a committed block ([`apply_block`]) is a pure function of the block and the set of
//! already-committed transaction hashes: it returns the writes ([`AppWrite`]) the driver puts
//! into the same atomic, synced storage batch as the commit record. Invalid payloads, invalid
//! transactions, expired ones and replays of committed transactions are skipped
//! deterministically and counted, so every honest node reaches the same state.
//!
//! ## The replay guard: expiring transactions
//!
//! A transaction names the last height it may commit at, [`Transaction::expires_at`], and
//! commits at height `h` only if `h ≤ expires_at ≤ h + TX_VALIDITY_WINDOW`
//! ([`Transaction::check_expiry`]; Solana's recent-blockhash rule, counted in heights, since
//! blocks carry no agreed time). So a replay needs checking only against the transactions
//! committed within one window: the store keeps exactly those, keyed by expiry
//! (`storage::Op::RecordRecentTx`), and drops the expired ones by key range
//! (`storage::Op::ForgetExpiredTxs`), so the guard's memory and disk stay bounded however long
//! the chain grows (issue 10, the soak). The full transaction index (`GET /tx`) is kept
//! but no longer on the admission or commit path.
//!
//! ## The slashing hook (PROTOCOL.md §6.6)
//!
//! At commit the application also receives each block's misbehaviour list
//! ([`fault::Misbehaviour`]: the evidence the block commits and the downtime records derived at
//! its height, like ABCI's `FinalizeBlock.misbehavior`). [`apply_misbehaviour`] records one
//! penalty entry per offender under [`penalty_key`] (a [`PenaltyRecord`]: what, when, the
//! standing it caused), the accountant's state under [`ACCOUNTING_KEY`], and the height that
//! first committed each evidence item ([`committed_evidence_key`]), in the same atomic batch as
//! the commit. Both live under [`RESERVED_PREFIX`], which client transactions may not
//! write ([`TxError::ReservedKey`]), so no client can forge or erase a penalty.

use borsh::{BorshDeserialize, BorshSerialize};
use consensus::{Block, BlockId, Digest, Height, ValidatorIndex};
use fault::Misbehaviour;
use std::collections::{HashMap, HashSet};
use thiserror::Error;

/// Maximum key length in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Maximum value length in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Maximum encoded size of one transaction.
pub const MAX_TX_BYTES: usize = MAX_KEY_BYTES + MAX_VALUE_BYTES + 64;
/// Decoding bound for committed payloads: the consensus message cap, which every block that
/// reached us already fits, so the bound never depends on a node's local configuration and
/// applying a block stays deterministic across nodes.
pub const PAYLOAD_DECODE_LIMIT: usize = consensus::codec::MAX_MESSAGE_BYTES;
/// Bytes a [`Payload::Transactions`] adds around its transactions (tag + u32 count).
pub const PAYLOAD_OVERHEAD: usize = 1 + 4;

/// Application keys starting with these bytes belong to the node (penalties, accounting state);
/// a transaction touching one is invalid ([`TxError::ReservedKey`]).
pub const RESERVED_PREFIX: &[u8] = b"\0bftnode/";
/// Key of the accountant's state ([`fault::Accountant::encode_state`]).
pub const ACCOUNTING_KEY: &[u8] = b"\0bftnode/accounting";
/// The key recording the height of the block that first committed evidence `id`:
/// `RESERVED_PREFIX ‖ "evidence/" ‖ id` → borsh `Height`. Read at start so evidence committed
/// long ago is restored as committed, not pending ([`crate::restore_policy`]).
pub fn committed_evidence_key(id: &Digest) -> Vec<u8> {
    let mut k = RESERVED_PREFIX.to_vec();
    k.extend_from_slice(b"evidence/");
    k.extend_from_slice(&id.0);
    k
}

/// Penalty entries kept per validator (the most recent; [`PenaltyRecord::total`] counts all).
pub const MAX_PENALTY_ENTRIES: usize = 64;
/// Decoding bound of a stored [`PenaltyRecord`] (64 entries of well under 1 KiB each).
pub const MAX_PENALTY_RECORD_BYTES: usize = 1 << 20;

/// The key of validator `v`'s [`PenaltyRecord`]: `RESERVED_PREFIX ‖ "penalty/" ‖ u16 BE`.
pub fn penalty_key(v: ValidatorIndex) -> Vec<u8> {
    let mut k = RESERVED_PREFIX.to_vec();
    k.extend_from_slice(b"penalty/");
    k.extend_from_slice(&v.0.to_be_bytes());
    k
}

/// The penalties the application recorded against one validator (the jail record).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PenaltyRecord {
    /// The validator.
    pub validator: ValidatorIndex,
    /// Penalty entries ever recorded.
    pub total: u64,
    /// The most recent [`MAX_PENALTY_ENTRIES`] entries, oldest first: each is the misbehaviour
    /// (evidence id or downtime figures, height and view of the block) and the standing it put
    /// the validator in.
    pub entries: Vec<Misbehaviour>,
}

impl PenaltyRecord {
    /// Decode a stored record. Errors: [`TxError::Malformed`] (a corrupt store).
    pub fn decode(bytes: &[u8]) -> Result<Self, TxError> {
        consensus::decode(bytes, MAX_PENALTY_RECORD_BYTES)
            .map_err(|e| TxError::Malformed(e.to_string()))
    }
}

/// The slashing hook: the writes recording `list` (the misbehaviour lists of the blocks of one
/// commit, in height order) — one entry appended to each offender's [`PenaltyRecord`], read
/// through `load` the first time an offender appears. Deterministic.
/// Errors: whatever `load` returns.
pub fn apply_misbehaviour<E>(
    list: &[Misbehaviour],
    mut load: impl FnMut(ValidatorIndex) -> Result<Option<PenaltyRecord>, E>,
) -> Result<Vec<AppWrite>, E> {
    let mut records: HashMap<ValidatorIndex, PenaltyRecord> = HashMap::new();
    let mut order = Vec::new();
    for m in list {
        let v = m.offender;
        let r = match records.entry(v) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                order.push(v);
                e.insert(load(v)?.unwrap_or(PenaltyRecord {
                    validator: v,
                    total: 0,
                    entries: Vec::new(),
                }))
            }
        };
        r.total = r.total.saturating_add(1);
        r.entries.push(m.clone());
        let excess = r.entries.len().saturating_sub(MAX_PENALTY_ENTRIES);
        r.entries.drain(..excess);
    }
    Ok(order
        .into_iter()
        .filter_map(|v| records.remove(&v))
        .map(|r| AppWrite::Put {
            key: penalty_key(r.validator),
            value: consensus::encode(&r),
        })
        .collect())
}

/// A transaction's hash: `BLAKE3(borsh(tx))`.
pub type TxHash = Digest;

/// A hash map keyed by [`TxHash`] (or any digest), hashed with foldhash rather than SipHash:
/// the per-transaction maps of the mempool and the commit path do several lookups per
/// transaction per node (SipHash took 1.3–1.9 % of the machine at 40,000 offered tx/s, issue
/// 10; no gain was measurable after the switch, within a profile's noise).
/// Still safe against a peer that picks its keys: a key is a BLAKE3 output, steerable only by
/// hashing, and foldhash's `RandomState` seeds every map at random, so which bucket a key
/// lands in cannot be computed outside this process.
pub type TxHashMap<V> = HashMap<TxHash, V, foldhash::fast::RandomState>;

/// A hash set of [`TxHash`]es, hashed as [`TxHashMap`].
pub type TxHashSet = HashSet<TxHash, foldhash::fast::RandomState>;

/// What a transaction does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub enum Op {
    /// Set `key` to `value`.
    Put {
        /// Key (1..=[`MAX_KEY_BYTES`] bytes).
        key: Vec<u8>,
        /// Value (≤ [`MAX_VALUE_BYTES`] bytes).
        value: Vec<u8>,
    },
    /// Remove `key` (a no-op if absent).
    Delete {
        /// Key (1..=[`MAX_KEY_BYTES`] bytes).
        key: Vec<u8>,
    },
}

/// Most heights between a transaction's commit height and its expiry (`expires_at ≤ h +
/// TX_VALIDITY_WINDOW`): the replay guard holds the transactions of at most this many heights
/// (20,000: about 45 s of an idle 4-validator testnet at ~450 heights/s, minutes under load).
pub const TX_VALIDITY_WINDOW: u64 = 20_000;

/// The expiry a node gives a submitted transaction that names none: its committed height plus
/// this many heights (half the window, so the transaction stays admissible while the chain
/// moves on).
pub const DEFAULT_TX_LIFETIME: u64 = TX_VALIDITY_WINDOW / 2;

/// A client transaction. The nonce lets a client submit the same operation twice; the expiry
/// bounds when it may commit (module docs, "The replay guard").
#[derive(Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Transaction {
    /// The operation.
    pub op: Op,
    /// Client-chosen nonce.
    pub nonce: u64,
    /// The last height this transaction may commit at ([`Transaction::check_expiry`]).
    pub expires_at: Height,
}

/// Why a transaction is invalid.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum TxError {
    /// Empty key.
    #[error("key must not be empty")]
    EmptyKey,
    /// Key too long.
    #[error("key of {len} bytes exceeds {max} bytes")]
    KeyTooLong {
        /// Length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Value too long.
    #[error("value of {len} bytes exceeds {max} bytes")]
    ValueTooLong {
        /// Length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// The key lies in the node's reserved namespace ([`RESERVED_PREFIX`]).
    #[error(
        "keys starting with {:?} are reserved for the node",
        String::from_utf8_lossy(RESERVED_PREFIX)
    )]
    ReservedKey,
    /// Not a canonical encoding.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// The transaction can no longer commit: its expiry is below the height it would commit at.
    #[error(
        "transaction expired at height {expires_at}, below height {height} where it would commit"
    )]
    Expired {
        /// Its expiry.
        expires_at: u64,
        /// The height it would commit at.
        height: u64,
    },
    /// The expiry lies more than [`TX_VALIDITY_WINDOW`] heights above the commit height.
    #[error(
        "expiry at height {expires_at} is more than {TX_VALIDITY_WINDOW} heights above height {height}"
    )]
    ExpiryTooFar {
        /// Its expiry.
        expires_at: u64,
        /// The height it would commit at.
        height: u64,
    },
}

impl Transaction {
    /// A put that may commit up to height `expires_at`.
    pub fn put(
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
        nonce: u64,
        expires_at: Height,
    ) -> Self {
        Transaction {
            op: Op::Put {
                key: key.into(),
                value: value.into(),
            },
            nonce,
            expires_at,
        }
    }
    /// A delete that may commit up to height `expires_at`.
    pub fn delete(key: impl Into<Vec<u8>>, nonce: u64, expires_at: Height) -> Self {
        Transaction {
            op: Op::Delete { key: key.into() },
            nonce,
            expires_at,
        }
    }
    /// Whether it may commit at height `height`: `height ≤ expires_at ≤ height +
    /// TX_VALIDITY_WINDOW`. Errors: [`TxError::Expired`], [`TxError::ExpiryTooFar`].
    pub fn check_expiry(&self, height: Height) -> Result<(), TxError> {
        let (expires_at, height) = (self.expires_at.0, height.0);
        if expires_at < height {
            return Err(TxError::Expired { expires_at, height });
        }
        if expires_at - height > TX_VALIDITY_WINDOW {
            return Err(TxError::ExpiryTooFar { expires_at, height });
        }
        Ok(())
    }
    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        consensus::encode(self)
    }
    /// Decode and validate, bounded by [`MAX_TX_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<Self, TxError> {
        let tx: Transaction = consensus::decode(bytes, MAX_TX_BYTES)
            .map_err(|e| TxError::Malformed(e.to_string()))?;
        tx.validate()?;
        Ok(tx)
    }
    /// `BLAKE3(encode(self))`, streamed into the hasher (no encoding buffer). A transaction
    /// decoded from bytes is hashed over those bytes instead ([`decode_hashed`]).
    pub fn hash(&self) -> TxHash {
        let mut h = blake3::Hasher::new();
        self.serialize(&mut h)
            .expect("writing into a BLAKE3 hasher cannot fail");
        Digest(*h.finalize().as_bytes())
    }
    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        // tag(1) + key len(4) + key [+ value len(4) + value] + nonce(8) + expiry(8)
        match &self.op {
            Op::Put { key, value } => 1 + 4 + key.len() + 4 + value.len() + 16,
            Op::Delete { key } => 1 + 4 + key.len() + 16,
        }
    }
    /// The key it touches.
    pub fn key(&self) -> &[u8] {
        match &self.op {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
    /// Check size limits.
    pub fn validate(&self) -> Result<(), TxError> {
        let key = self.key();
        if key.is_empty() {
            return Err(TxError::EmptyKey);
        }
        if key.starts_with(RESERVED_PREFIX) {
            return Err(TxError::ReservedKey);
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(TxError::KeyTooLong {
                len: key.len(),
                max: MAX_KEY_BYTES,
            });
        }
        if let Op::Put { value, .. } = &self.op
            && value.len() > MAX_VALUE_BYTES
        {
            return Err(TxError::ValueTooLong {
                len: value.len(),
                max: MAX_VALUE_BYTES,
            });
        }
        Ok(())
    }
}

/// Fewest bytes one encoded transaction takes (a delete of a one-byte key: tag 1, key length 4,
/// key 1, nonce 8, expiry 8). Bounds a capacity taken from an untrusted count.
pub const MIN_TX_BYTES: usize = 1 + 4 + 1 + 8 + 8;

/// Decode `count` transactions from the front of `rest` (advanced past them) and hash each over
/// the bytes it was decoded from: borsh is canonical (a transaction has exactly one encoding),
/// so `hashes[i] == txs[i].hash()` without encoding anything again. Transactions are not
/// validated. Errors: the bytes end early or do not decode (nothing is returned).
pub fn decode_hashed(
    rest: &mut &[u8],
    count: usize,
) -> std::io::Result<(Vec<Transaction>, Vec<TxHash>)> {
    let cap = count.min(rest.len() / MIN_TX_BYTES);
    let (mut txs, mut hashes) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
    for _ in 0..count {
        let start = *rest;
        txs.push(Transaction::deserialize(rest)?);
        let used = start.len() - rest.len();
        hashes.push(Digest(*blake3::hash(&start[..used]).as_bytes()));
    }
    Ok((txs, hashes))
}

/// A block payload, version-tagged by its borsh enum tag. The empty byte string (genesis, or a
/// leader with nothing to propose) means "no transactions".
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Payload {
    /// Version 0: transactions inline, in execution order.
    Transactions(Vec<Transaction>),
}

impl Payload {
    /// Encode; an empty transaction list encodes as the empty byte string.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Payload::Transactions(txs) => encode_transactions(txs),
        }
    }
    /// Decode at most `limit` bytes. The empty byte string is an empty payload.
    pub fn decode(bytes: &[u8], limit: usize) -> Result<Self, TxError> {
        if bytes.is_empty() {
            return Ok(Payload::Transactions(Vec::new()));
        }
        consensus::decode(bytes, limit).map_err(|e| TxError::Malformed(e.to_string()))
    }
    /// The transactions carried inline.
    pub fn transactions(&self) -> &[Transaction] {
        match self {
            Payload::Transactions(t) => t,
        }
    }
}

/// The bytes of `Payload::Transactions(txs)` without owning `txs`: the empty byte string for
/// no transactions, else the tag 0, a u32 count (little-endian) and each transaction's borsh
/// encoding, in order.
pub fn encode_transactions(txs: &[Transaction]) -> Vec<u8> {
    if txs.is_empty() {
        return Vec::new();
    }
    let len = PAYLOAD_OVERHEAD + txs.iter().map(Transaction::encoded_len).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.push(0u8);
    out.extend_from_slice(&(txs.len() as u32).to_le_bytes());
    for tx in txs {
        tx.serialize(&mut out)
            .expect("writing into a Vec cannot fail");
    }
    out
}

/// Summary of a payload for RPC (never fails: a bad payload is reported as such).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayloadSummary {
    /// Transaction hashes in payload order.
    pub tx_hashes: Vec<TxHash>,
    /// Whether the payload failed to decode.
    pub invalid: bool,
}

/// A block's payload decoded once, with every transaction's hash: the driver decodes a block
/// when it stores it (the mempool needs the hashes) and keeps the result for the commit, so a
/// committed transaction is decoded and hashed at commit only if its block was not kept
/// (issue 10: BLAKE3 was 11 % of a validator's CPU samples at 20,000 offered tx/s, and each
/// transaction was hashed on arrival, when its block was stored, and again at commit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodedPayload {
    /// The transactions, in payload order (empty if `invalid`).
    pub txs: Vec<Transaction>,
    /// `txs[i].hash()`, in the same order.
    pub hashes: Vec<TxHash>,
    /// Whether the payload failed to decode within the limit.
    pub invalid: bool,
}

impl DecodedPayload {
    /// Decode `payload` (at most `limit` bytes; the same rule as [`Payload::decode`]) and hash
    /// each transaction over its encoded bytes ([`decode_hashed`]). Never fails: an undecodable
    /// payload gives `invalid` and no transactions.
    pub fn decode(payload: &[u8], limit: usize) -> Self {
        let invalid = DecodedPayload {
            invalid: true,
            ..DecodedPayload::default()
        };
        if payload.is_empty() {
            return DecodedPayload::default();
        }
        if payload.len() > limit {
            return invalid;
        }
        // `Payload::Transactions` (tag 0), then borsh's `Vec`: a u32 count and the items.
        let mut rest = payload;
        let decoded = u8::deserialize(&mut rest).and_then(|tag| {
            if tag != 0 {
                return Err(std::io::ErrorKind::InvalidData.into());
            }
            let count = u32::deserialize(&mut rest)? as usize;
            decode_hashed(&mut rest, count)
        });
        match decoded {
            Ok((txs, hashes)) if rest.is_empty() => DecodedPayload {
                txs,
                hashes,
                invalid: false,
            },
            _ => invalid,
        }
    }
}

/// Summarise the payload of a block (at most `limit` bytes decoded).
pub fn summarize(payload: &[u8], limit: usize) -> PayloadSummary {
    let d = DecodedPayload::decode(payload, limit);
    PayloadSummary {
        tx_hashes: d.hashes,
        invalid: d.invalid,
    }
}

/// One write the application asks for; the driver maps it onto a storage operation in the
/// commit batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppWrite {
    /// Set a key.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove a key.
    Delete {
        /// Key.
        key: Vec<u8>,
    },
    /// Index a committed transaction (and record it in the replay guard until it expires).
    IndexTx {
        /// Its hash.
        hash: TxHash,
        /// Its expiry ([`Transaction::expires_at`]).
        expires_at: Height,
        /// Committed height.
        height: Height,
        /// Committed block.
        block_id: BlockId,
        /// Position in the block's payload.
        index: u32,
    },
}

/// The outcome of applying one committed block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppliedBlock {
    /// Writes, in order.
    pub writes: Vec<AppWrite>,
    /// Hashes of the transactions applied (for mempool cleanup).
    pub applied: Vec<TxHash>,
    /// Hashes of the transactions skipped, in payload order: invalid, expired, a replay of a
    /// committed transaction, or a repeat within the block (such a transaction can never
    /// commit, so the driver drops it from the mempool).
    pub skipped: Vec<TxHash>,
    /// Whether the whole payload failed to decode (then nothing is applied).
    pub invalid_payload: bool,
}

/// Apply committed `block` (id `id`): decode its payload (at most `limit` bytes), and for each
/// valid transaction that may commit at the block's height ([`Transaction::check_expiry`]),
/// not yet committed (`is_committed(expires_at, hash)`, which sees the store's unexpired
/// committed transactions) and not repeated within the block, emit its put/delete and its
/// index entry. Deterministic.
pub fn apply_block(
    block: &Block,
    id: BlockId,
    limit: usize,
    is_committed: impl FnMut(Height, &TxHash) -> bool,
) -> AppliedBlock {
    apply_decoded(
        block,
        id,
        DecodedPayload::decode(&block.payload, limit),
        is_committed,
    )
}

/// [`apply_block`] with the payload already decoded: `payload` must be
/// [`DecodedPayload::decode`] of `block.payload` (the driver keys it by the block id, which
/// commits to the payload). The transactions' keys and values move into the writes.
pub fn apply_decoded(
    block: &Block,
    id: BlockId,
    payload: DecodedPayload,
    mut is_committed: impl FnMut(Height, &TxHash) -> bool,
) -> AppliedBlock {
    let mut out = AppliedBlock::default();
    if payload.invalid {
        out.invalid_payload = true;
        return out;
    }
    let mut seen = TxHashSet::default();
    for (i, (tx, hash)) in payload.txs.into_iter().zip(payload.hashes).enumerate() {
        if tx.validate().is_err()
            || tx.check_expiry(block.height).is_err()
            || !seen.insert(hash)
            || is_committed(tx.expires_at, &hash)
        {
            out.skipped.push(hash);
            continue;
        }
        let expires_at = tx.expires_at;
        match tx.op {
            Op::Put { key, value } => out.writes.push(AppWrite::Put { key, value }),
            Op::Delete { key } => out.writes.push(AppWrite::Delete { key }),
        }
        out.writes.push(AppWrite::IndexTx {
            hash,
            expires_at,
            height: block.height,
            block_id: id,
            index: i as u32,
        });
        out.applied.push(hash);
    }
    out
}

/// The RPC body of validator `v`: its committed account (`acc`, as of `accounted` — the last
/// height the accountant took in) and its penalty record, if any.
pub fn penalties_json(
    v: u16,
    acc: &fault::accounting::Account,
    accounted: Option<Height>,
    record: Option<PenaltyRecord>,
) -> crate::rpc_types::PenaltiesResponse {
    use crate::rpc_types::{PenaltiesResponse, PenaltyEntryResponse};
    use fault::Offence;
    let (total, entries) = record.map_or((0, Vec::new()), |r| (r.total, r.entries));
    PenaltiesResponse {
        validator: v,
        standing: acc.standing.as_str().to_string(),
        since_height: acc.since.0,
        convicted: acc.convicted,
        strikes: acc.strikes,
        downtime_records: acc.downtime_records,
        evidence_committed: acc.evidence_committed,
        total_penalties: total,
        accounted_height: accounted.map_or(0, |h| h.0),
        entries: entries
            .into_iter()
            .map(|m| {
                let mut e = PenaltyEntryResponse {
                    height: m.height.0,
                    block_view: m.block_view.0,
                    kind: String::new(),
                    standing: m.standing.as_str().to_string(),
                    evidence_id: None,
                    evidence_view: None,
                    safety: None,
                    window_start: None,
                    window_end: None,
                    signed: None,
                    eligible: None,
                    proposed: None,
                    missed_slots: None,
                    threshold_pct: None,
                };
                match m.offence {
                    Offence::Evidence {
                        id,
                        kind,
                        view,
                        safety,
                    } => {
                        e.kind = kind;
                        e.evidence_id = Some(id.to_hex());
                        e.evidence_view = Some(view.0);
                        e.safety = Some(safety);
                    }
                    Offence::Downtime(d) => {
                        e.kind = "downtime".to_string();
                        e.window_start = Some(d.window_start.0);
                        e.window_end = Some(d.window_end.0);
                        e.signed = Some(d.tally.signed);
                        e.eligible = Some(d.tally.eligible);
                        e.proposed = Some(d.tally.proposed);
                        e.missed_slots = Some(d.tally.missed_slots);
                        e.threshold_pct = Some(d.threshold_pct);
                    }
                }
                e
            })
            .collect(),
    }
}
