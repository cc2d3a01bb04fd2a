//! The mempool: pending transactions in arrival (FIFO) order, bounded in count and bytes, with
//! a quota per source.
//!
//! * Dedupe by hash, against pending transactions and (by the caller's flag) committed ones.
//!   [`Mempool::contains`] is the cheap in-memory check a caller runs before any store read.
//! * [`Mempool::take`] fills a proposal round-robin across sources (FIFO within each), skipping
//!   transactions *in flight*: those
//!   carried by a block that is stored but not yet committed ([`Mempool::mark_in_flight`], keyed
//!   by block id). A proposal on top of an uncommitted parent therefore does not repeat them.
//! * Transactions leave the pool when committed ([`Mempool::on_commit`]) or evicted (below); a
//!   block that can no longer commit (its height is at or below the committed height and it is
//!   not committed) releases its transactions for re-inclusion.
//!
//! ## Sources, quotas and eviction (issue 8 finding 2)
//! Every transaction is charged to the [`Source`] it first arrived from: [`Source::Local`] (this
//! node's RPC clients, one source) or [`Source::Peer`] (one source per gossiping peer). With
//! `G` = the number of peer sources holding pending transactions, counting the inserting peer:
//!
//! * **Shares**: the pool is divided into `S = max(G + 1, min_shares)` equal shares, one for
//!   local clients and one per peer source (`min_shares` is the number of validators, so the
//!   shares of validators not gossiping yet are reserved for them).
//! * **Peer quota**: a peer may hold at most `max_txs / S` transactions and `max_bytes / S`
//!   bytes, so one peer can never hold more than half the pool, and `G` peers together at most
//!   `G/(G+1)` of it while their shares stand. A transaction over its peer's quota is refused
//!   ([`MempoolError::OverQuota`]). At most [`MAX_PEER_SOURCES`] peers hold transactions at once.
//! * **Local quota**: this node's clients may hold at most `max_txs / S` and `max_bytes / S`
//!   too; a submission over it is refused with [`MempoolError::Full`] (HTTP 429). Before issue
//!   10 local clients had no quota: under overload every node's pool filled with its own
//!   clients' transactions before their gossip reached the others, every leader proposed only
//!   its own clients' transactions, and a transaction waited for its node's turn to lead
//!   (p50 6.5 s at 20,000 offered tx/s, against 0.6 s with shares; issue 10 note).
//! * **Eviction** when the pool is full: a source within its quota may evict only from peers
//!   *over* their quota (quotas shrink as peers join), and only down to that quota. Victims are taken in order of the fraction of the pool
//!   they use (`max(txs / max_txs, bytes / max_bytes)`), largest first; from each, its
//!   **newest** transactions that are not in flight go first (its oldest are the nearest to a
//!   proposal, and the newest are what it would have been refused had the quota been in force
//!   when they came). Local transactions are never evicted (their client holds a hash and
//!   expects a commit), nor are in-flight ones. Nothing is evicted unless the new transaction
//!   then fits. Evictions are counted ([`Mempool::evicted`]); a peer's evicted transaction
//!   stays in its origin node's pool.
//!
//! Proposals are filled round-robin across sources ([`Mempool::take`]): however many
//! transactions a flooding peer holds, a block carries at most as many of its transactions as
//! of any other source's that are waiting.
//!
//! Bookkeeping is bounded by the pool: a source's entry exists only while it holds a pending
//! transaction (removed when its count reaches zero), so there are at most
//! `min(max_txs, MAX_PEER_SOURCES + 1)` of them.

use crate::app::{PAYLOAD_OVERHEAD, Transaction, TxError, TxHash, TxHashMap};
use consensus::{BlockId, Height};
use network::PeerId;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;
use thiserror::Error;

/// Most distinct peer sources holding pending transactions at once; a further peer's
/// transactions are refused ([`MempoolError::OverQuota`]) until one of them drains. Bounds the
/// per-source bookkeeping and the victim search (linear in the number of sources, run only
/// when the pool is full).
pub const MAX_PEER_SOURCES: usize = 1024;

/// Mempool limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Maximum pending transactions.
    pub max_txs: usize,
    /// Maximum total encoded bytes of pending transactions.
    pub max_bytes: usize,
    /// The pool is divided into at least this many equal shares (module docs). The node
    /// passes the number of validators: its own clients' share and one per other validator's
    /// gossip. 1 lets a lone source fill the pool.
    pub min_shares: usize,
}

/// Where a transaction came from: what its quota is charged to (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// This node's RPC clients.
    Local,
    /// A gossiping peer (the gossip message's author).
    Peer(PeerId),
}

/// Why a transaction was not accepted.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum MempoolError {
    /// The pool is at a limit and nothing may be evicted for this transaction.
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
    /// The gossiping peer already holds its share of the pool (module docs).
    #[error(
        "peer quota reached: {txs} txs / {bytes} bytes pending from this peer (quota {max_txs} \
         txs / {max_bytes} bytes)"
    )]
    OverQuota {
        /// The peer's pending count.
        txs: usize,
        /// The peer's pending bytes.
        bytes: usize,
        /// Its count quota.
        max_txs: usize,
        /// Its byte quota.
        max_bytes: usize,
    },
    /// Local submissions are refused while transactions wait too long to commit
    /// ([`crate::queue_delay`]): the smallest submission → commit time of the last interval's
    /// committed transactions exceeded the target.
    #[error(
        "mempool congested: committed transactions waited at least {waited_ms} ms (target \
         {target_ms} ms); retry later"
    )]
    Congested {
        /// Smallest sojourn time of the last interval, in ms.
        waited_ms: u64,
        /// `mempool.max_queue_delay_ms`.
        target_ms: u64,
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
    source: Source,
    submitted: Instant,
}

/// A pending transaction that a stored block carries for the first time
/// ([`Mempool::mark_in_flight`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Included {
    /// When it reached this node's mempool.
    pub arrived: Instant,
    /// Whether it came from this node's RPC clients ([`Source::Local`]) rather than a peer.
    pub local: bool,
}

/// What one source holds.
#[derive(Default)]
struct Held {
    txs: usize,
    bytes: usize,
    /// Its transactions by arrival seq (for newest-first eviction).
    order: BTreeMap<u64, TxHash>,
}

struct InFlightBlock {
    height: Height,
    hashes: Vec<TxHash>,
}

/// The pending-transaction pool (owned by the driver task).
pub struct Mempool {
    cfg: MempoolConfig,
    entries: TxHashMap<Entry>,
    order: BTreeMap<u64, TxHash>,
    next_seq: u64,
    bytes: usize,
    /// Per source; an entry exists only while the source holds a transaction.
    sources: HashMap<Source, Held>,
    in_flight: TxHashMap<u32>,
    blocks: HashMap<BlockId, InFlightBlock>,
    evicted: u64,
}

impl Mempool {
    /// An empty pool.
    pub fn new(cfg: MempoolConfig) -> Self {
        Mempool {
            cfg,
            entries: TxHashMap::default(),
            order: BTreeMap::new(),
            next_seq: 0,
            bytes: 0,
            sources: HashMap::new(),
            in_flight: TxHashMap::default(),
            blocks: HashMap::new(),
            evicted: 0,
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
    /// A pending transaction and the source it is charged to.
    pub fn get(&self, hash: &TxHash) -> Option<(&Transaction, Source)> {
        self.entries.get(hash).map(|e| (&e.tx, e.source))
    }
    /// When a pending transaction was submitted.
    pub fn submitted_at(&self, hash: &TxHash) -> Option<Instant> {
        self.entries.get(hash).map(|e| e.submitted)
    }
    /// Pending transactions and bytes charged to `source`.
    pub fn held_by(&self, source: &Source) -> (usize, usize) {
        self.sources
            .get(source)
            .map_or((0, 0), |h| (h.txs, h.bytes))
    }
    /// Sources holding at least one pending transaction.
    pub fn source_count(&self) -> usize {
        self.sources.len()
    }
    /// Transactions evicted since the pool was created (monotone).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Add `tx` from a local RPC client; `committed` says whether its hash is already in the
    /// committed index. Same as [`Mempool::insert_from`] with [`Source::Local`].
    pub fn insert(
        &mut self,
        tx: Transaction,
        committed: bool,
        now: Instant,
    ) -> Result<TxHash, MempoolError> {
        self.insert_from(Source::Local, tx, committed, now)
    }

    /// Add `tx` from `source`; `committed` says whether its hash is already in the committed
    /// index. May evict other sources' transactions to make room (module docs).
    /// Errors: [`MempoolError::Invalid`], [`MempoolError::AlreadyCommitted`],
    /// [`MempoolError::AlreadyPending`], [`MempoolError::OverQuota`], [`MempoolError::Full`].
    pub fn insert_from(
        &mut self,
        source: Source,
        tx: Transaction,
        committed: bool,
        now: Instant,
    ) -> Result<TxHash, MempoolError> {
        let hash = tx.hash();
        self.insert_hashed(source, tx, hash, committed, now)
    }

    /// [`Mempool::insert_from`] for a caller that already holds `hash`, which must be
    /// `tx.hash()` (the driver takes it from the bytes the transaction was decoded from,
    /// [`crate::app::decode_hashed`]). Same errors.
    pub fn insert_hashed(
        &mut self,
        source: Source,
        tx: Transaction,
        hash: TxHash,
        committed: bool,
        now: Instant,
    ) -> Result<TxHash, MempoolError> {
        debug_assert_eq!(hash, tx.hash());
        tx.validate()?;
        if committed {
            return Err(MempoolError::AlreadyCommitted { hash });
        }
        let size = tx.encoded_len();
        let victims = self.admit(&source, &hash, size)?;
        for v in victims {
            if self.remove(&v).is_some() {
                self.evicted += 1;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, hash);
        self.bytes += size;
        let held = self.sources.entry(source).or_default();
        held.txs += 1;
        held.bytes += size;
        held.order.insert(seq, hash);
        self.entries.insert(
            hash,
            Entry {
                tx,
                size,
                seq,
                source,
                submitted: now,
            },
        );
        Ok(hash)
    }

    /// Whether a transaction with `hash` of `size` encoded bytes from `source` would be
    /// admitted, without changing anything: dedupe, quota and room (after the evictions it is
    /// entitled to). Cheap (no hashing, no IO): run it before reading the store.
    /// Errors: [`MempoolError::AlreadyPending`], [`MempoolError::OverQuota`],
    /// [`MempoolError::Full`].
    pub fn check(&self, source: &Source, hash: &TxHash, size: usize) -> Result<(), MempoolError> {
        self.admit(source, hash, size).map(|_| ())
    }

    /// The admission decision of [`Mempool::check`]; on success, the transactions to evict
    /// first (empty if the pool has room).
    fn admit(
        &self,
        source: &Source,
        hash: &TxHash,
        size: usize,
    ) -> Result<Vec<TxHash>, MempoolError> {
        if self.entries.contains_key(hash) {
            return Err(MempoolError::AlreadyPending { hash: *hash });
        }
        let (q_txs, q_bytes) = self.quota(source);
        let (txs, bytes) = self.held_by(source);
        let over_quota = txs + 1 > q_txs || bytes + size > q_bytes;
        match source {
            Source::Peer(_) => {
                let new_peer = txs == 0 && self.peer_sources() >= MAX_PEER_SOURCES;
                if new_peer || over_quota {
                    return Err(MempoolError::OverQuota {
                        txs,
                        bytes,
                        max_txs: q_txs,
                        max_bytes: q_bytes,
                    });
                }
            }
            Source::Local if over_quota => {
                return Err(MempoolError::Full {
                    txs,
                    bytes,
                    max_txs: q_txs,
                    max_bytes: q_bytes,
                });
            }
            Source::Local => {}
        }
        let full = || MempoolError::Full {
            txs: self.entries.len(),
            bytes: self.bytes,
            max_txs: self.cfg.max_txs,
            max_bytes: self.cfg.max_bytes,
        };
        let excess = |freed_txs: usize, freed_bytes: usize| {
            let txs = (self.entries.len() + 1).saturating_sub(freed_txs);
            let bytes = (self.bytes + size).saturating_sub(freed_bytes);
            txs > self.cfg.max_txs || bytes > self.cfg.max_bytes
        };
        if !excess(0, 0) {
            return Ok(Vec::new());
        }
        if size > self.cfg.max_bytes || self.cfg.max_txs == 0 {
            return Err(full());
        }
        // Victims: the peers we may evict from, most loaded first (module docs).
        let load = |h: &Held| {
            let by_txs = h.txs as u128 * self.cfg.max_bytes.max(1) as u128;
            let by_bytes = h.bytes as u128 * self.cfg.max_txs.max(1) as u128;
            by_txs.max(by_bytes)
        };
        let over = |txs: usize, bytes: usize| txs > q_txs || bytes > q_bytes;
        let mut victims: Vec<&Held> = self
            .sources
            .iter()
            .filter(|(s, h)| matches!(s, Source::Peer(_)) && *s != source && over(h.txs, h.bytes))
            .map(|(_, h)| h)
            .collect();
        victims.sort_by_key(|h| std::cmp::Reverse(load(h)));
        let mut out = Vec::new();
        let (mut freed_txs, mut freed_bytes) = (0, 0);
        for held in victims {
            let (mut txs, mut bytes) = (held.txs, held.bytes);
            for h in held.order.values().rev() {
                if !excess(freed_txs, freed_bytes) || !over(txs, bytes) {
                    break;
                }
                let Some(e) = self.entries.get(h) else {
                    continue;
                };
                if self.in_flight.contains_key(h) {
                    continue;
                }
                out.push(*h);
                freed_txs += 1;
                freed_bytes += e.size;
                txs -= 1;
                bytes -= e.size;
            }
            if !excess(freed_txs, freed_bytes) {
                return Ok(out);
            }
        }
        Err(full())
    }

    /// Peer sources holding transactions.
    fn peer_sources(&self) -> usize {
        self.sources.len() - usize::from(self.sources.contains_key(&Source::Local))
    }

    /// `(txs, bytes)` quota of every source when `source` inserts: one of
    /// `max(G + 1, min_shares)` shares, counting a joining peer in `G` (module docs).
    fn quota(&self, source: &Source) -> (usize, usize) {
        let joining =
            usize::from(matches!(source, Source::Peer(_)) && !self.sources.contains_key(source));
        let shares = (self.peer_sources() + joining + 1).max(self.cfg.min_shares.max(1));
        (self.cfg.max_txs / shares, self.cfg.max_bytes / shares)
    }

    /// Transactions for a proposal, not in flight, whose payload encoding
    /// ([`crate::app::Payload::Transactions`]) fits in `max_bytes`; they stay in the pool.
    /// Filled **round-robin across sources**, one transaction per source per round, oldest
    /// first within a source; local clients first, then peers by their oldest pending
    /// transaction. A source whose next transaction does not fit is done for this proposal. So
    /// a flooding peer gets at most an equal share of a block, never all of it.
    pub fn take(&self, max_bytes: usize) -> Vec<Transaction> {
        self.take_hashed(max_bytes).0
    }

    /// [`Mempool::take`], with each transaction's hash (same order): what the proposer keeps
    /// so that it never decodes or hashes its own payload again (module `relay`).
    pub fn take_hashed(&self, max_bytes: usize) -> (Vec<Transaction>, Vec<TxHash>) {
        let (mut out, mut hashes) = (Vec::new(), Vec::new());
        let mut used = PAYLOAD_OVERHEAD;
        let mut queues: Vec<(u64, &Held)> = self
            .sources
            .iter()
            .map(|(source, held)| {
                let rank = match source {
                    Source::Local => 0,
                    Source::Peer(_) => held.order.keys().next().map_or(u64::MAX, |s| s + 1),
                };
                (rank, held)
            })
            .collect();
        queues.sort_by_key(|(rank, _)| *rank);
        let mut cursors: Vec<_> = queues.into_iter().map(|(_, h)| h.order.values()).collect();
        while !cursors.is_empty() {
            cursors.retain_mut(|cursor| {
                for hash in cursor.by_ref() {
                    if self.in_flight.contains_key(hash) {
                        continue;
                    }
                    let Some(e) = self.entries.get(hash) else {
                        continue;
                    };
                    if used + e.size > max_bytes {
                        return false;
                    }
                    used += e.size;
                    out.push(e.tx.clone());
                    hashes.push(*hash);
                    return true;
                }
                false
            });
        }
        (out, hashes)
    }

    /// Block `id` at `height` (stored, not yet committed) carries `hashes`: keep them out of
    /// proposals and eviction until it commits or can no longer commit. Idempotent per block id.
    /// Returns the pending transactions this block is the first stored block to carry (their
    /// sojourn ends here: the queueing-delay signal, module `queue_delay`, and the metric
    /// `bftnode_mempool_sojourn_seconds`); a transaction released by an abandoned fork counts
    /// again when a new block carries it.
    pub fn mark_in_flight(
        &mut self,
        id: BlockId,
        height: Height,
        hashes: Vec<TxHash>,
    ) -> Vec<Included> {
        let mut included = Vec::new();
        if self.blocks.contains_key(&id) {
            return included;
        }
        for h in &hashes {
            let n = self.in_flight.entry(*h).or_insert(0);
            *n += 1;
            if *n == 1
                && let Some(e) = self.entries.get(h)
            {
                included.push(Included {
                    arrived: e.submitted,
                    local: e.source == Source::Local,
                });
            }
        }
        self.blocks.insert(id, InFlightBlock { height, hashes });
        included
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
        if let Some(held) = self.sources.get_mut(&e.source) {
            held.txs -= 1;
            held.bytes -= e.size;
            held.order.remove(&e.seq);
            if held.txs == 0 {
                self.sources.remove(&e.source);
            }
        }
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

    /// Removes `hashes` from the pool: transactions a committed block carried but the
    /// application skipped (invalid, expired or replayed), which can never commit, so a later
    /// proposal must not carry them again.
    pub fn discard(&mut self, hashes: &[TxHash]) {
        for h in hashes {
            self.remove(h);
        }
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
