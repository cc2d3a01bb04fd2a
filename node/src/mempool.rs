//! The mempool: pending transactions in arrival (FIFO) order, bounded in count and bytes.
//!
//! * Dedupe by hash, against pending transactions and (by the caller's flag) committed ones.
//! * Full → [`MempoolError::Full`] to the submitter; nothing is ever dropped silently.
//! * [`Mempool::take`] fills a proposal in FIFO order, skipping transactions *in flight*: those
//!   carried by a block that is stored but not yet committed ([`Mempool::mark_in_flight`], keyed
//!   by block id). A proposal on top of an uncommitted parent therefore does not repeat them.
//! * Transactions leave the pool only when committed ([`Mempool::on_commit`]); a block that can
//!   no longer commit (its height is at or below the committed height and it is not committed)
//!   releases its transactions for re-inclusion.

use crate::app::{PAYLOAD_OVERHEAD, Transaction, TxError, TxHash};
use consensus::{BlockId, Height};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;
use thiserror::Error;

/// Mempool limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Maximum pending transactions.
    pub max_txs: usize,
    /// Maximum total encoded bytes of pending transactions.
    pub max_bytes: usize,
}

/// Why a transaction was not accepted.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum MempoolError {
    /// The pool is at a limit.
    #[error(
        "mempool full: {txs} txs / {bytes} bytes pending (limits {max_txs} txs / {max_bytes} bytes)"
    )]
    Full {
        /// Pending count.
        txs: usize,
        /// Pending bytes.
        bytes: usize,
        /// Count limit.
        max_txs: usize,
        /// Byte limit.
        max_bytes: usize,
    },
    /// The same transaction is already pending.
    #[error("transaction {hash} is already pending")]
    AlreadyPending {
        /// Its hash.
        hash: TxHash,
    },
    /// The same transaction is already committed.
    #[error("transaction {hash} is already committed")]
    AlreadyCommitted {
        /// Its hash.
        hash: TxHash,
    },
    /// The transaction is invalid.
    #[error("invalid transaction: {0}")]
    Invalid(#[from] TxError),
}

struct Entry {
    tx: Transaction,
    size: usize,
    seq: u64,
    submitted: Instant,
}

struct InFlightBlock {
    height: Height,
    hashes: Vec<TxHash>,
}

/// The pending-transaction pool (owned by the driver task).
pub struct Mempool {
    cfg: MempoolConfig,
    entries: HashMap<TxHash, Entry>,
    order: BTreeMap<u64, TxHash>,
    next_seq: u64,
    bytes: usize,
    in_flight: HashMap<TxHash, u32>,
    blocks: HashMap<BlockId, InFlightBlock>,
}

impl Mempool {
    /// An empty pool.
    pub fn new(cfg: MempoolConfig) -> Self {
        Mempool {
            cfg,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            in_flight: HashMap::new(),
            blocks: HashMap::new(),
        }
    }

    /// Pending transaction count.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// Whether no transaction is pending.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Pending encoded bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    /// Whether `hash` is pending.
    pub fn contains(&self, hash: &TxHash) -> bool {
        self.entries.contains_key(hash)
    }
    /// When a pending transaction was submitted.
    pub fn submitted_at(&self, hash: &TxHash) -> Option<Instant> {
        self.entries.get(hash).map(|e| e.submitted)
    }

    /// Add `tx`; `committed` says whether its hash is already in the committed index.
    pub fn insert(
        &mut self,
        tx: Transaction,
        committed: bool,
        now: Instant,
    ) -> Result<TxHash, MempoolError> {
        tx.validate()?;
        let hash = tx.hash();
        if committed {
            return Err(MempoolError::AlreadyCommitted { hash });
        }
        if self.entries.contains_key(&hash) {
            return Err(MempoolError::AlreadyPending { hash });
        }
        let size = tx.encoded_len();
        if self.entries.len() >= self.cfg.max_txs || self.bytes + size > self.cfg.max_bytes {
            return Err(MempoolError::Full {
                txs: self.entries.len(),
                bytes: self.bytes,
                max_txs: self.cfg.max_txs,
                max_bytes: self.cfg.max_bytes,
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, hash);
        self.bytes += size;
        self.entries.insert(
            hash,
            Entry {
                tx,
                size,
                seq,
                submitted: now,
            },
        );
        Ok(hash)
    }

    /// Transactions for a proposal, oldest first, not in flight, whose payload encoding
    /// ([`crate::app::Payload::Transactions`]) fits in `max_bytes`. They stay in the pool.
    pub fn take(&self, max_bytes: usize) -> Vec<Transaction> {
        let mut out = Vec::new();
        let mut used = PAYLOAD_OVERHEAD;
        for hash in self.order.values() {
            if self.in_flight.contains_key(hash) {
                continue;
            }
            let Some(e) = self.entries.get(hash) else {
                continue;
            };
            if used + e.size > max_bytes {
                break;
            }
            used += e.size;
            out.push(e.tx.clone());
        }
        out
    }

    /// Block `id` at `height` (stored, not yet committed) carries `hashes`: keep them out of
    /// proposals until it commits or can no longer commit. Idempotent per block id.
    pub fn mark_in_flight(&mut self, id: BlockId, height: Height, hashes: Vec<TxHash>) {
        if self.blocks.contains_key(&id) {
            return;
        }
        for h in &hashes {
            *self.in_flight.entry(*h).or_insert(0) += 1;
        }
        self.blocks.insert(id, InFlightBlock { height, hashes });
    }

    fn release(&mut self, hashes: &[TxHash]) {
        for h in hashes {
            if let Some(c) = self.in_flight.get_mut(h) {
                *c -= 1;
                if *c == 0 {
                    self.in_flight.remove(h);
                }
            }
        }
    }

    fn remove(&mut self, hash: &TxHash) -> Option<Instant> {
        let e = self.entries.remove(hash)?;
        self.order.remove(&e.seq);
        self.bytes -= e.size;
        Some(e.submitted)
    }

    /// Blocks `ids` committed up to `committed_height`, applying `applied` transactions:
    /// remove those from the pool, forget the committed blocks' in-flight records, and release
    /// the transactions of blocks that can no longer commit. Returns the submission times of
    /// the removed transactions (for the commit-latency metric).
    pub fn on_commit(
        &mut self,
        ids: &[BlockId],
        committed_height: Height,
        applied: &[TxHash],
    ) -> Vec<Instant> {
        let mut removed = Vec::new();
        for h in applied {
            if let Some(t) = self.remove(h) {
                removed.push(t);
            }
        }
        let committed: HashSet<&BlockId> = ids.iter().collect();
        let dead: Vec<BlockId> = self
            .blocks
            .iter()
            .filter(|(id, b)| committed.contains(id) || b.height <= committed_height)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            if let Some(b) = self.blocks.remove(&id) {
                self.release(&b.hashes);
            }
        }
        removed
    }

    /// Whether some pending transaction is not in flight (a proposal would carry it).
    pub fn has_available(&self) -> bool {
        self.order.values().any(|h| !self.in_flight.contains_key(h))
    }

    /// Whether some stored, uncommitted block carries transactions (proposing, even an empty
    /// block, moves them towards commit).
    pub fn has_uncommitted_txs(&self) -> bool {
        self.blocks.values().any(|b| !b.hashes.is_empty())
    }

    /// Transactions currently in flight (pending and carried by an uncommitted block).
    pub fn in_flight_len(&self) -> usize {
        self.in_flight
            .keys()
            .filter(|h| self.entries.contains_key(*h))
            .count()
    }
}
