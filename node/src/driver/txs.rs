//! Transactions in: local submissions (`POST /tx`, `POST /txs`) and the batches other
//! validators push; transactions out: our clients' transactions, batched and pushed once to
//! every validator.
//!
//! ## Gossip and peer reads (issue 8 finding 2)
//! A transaction gossip message is handled by [`ingest_gossip`], cheapest check first: decoding
//! stops after [`MAX_GOSSIP_TXS`] transactions; each is validated, hashed, and checked against
//! the mempool in memory (duplicate, its peer's quota, room, and whether its expiry lets it
//! commit at the next height) before the store is read, once for the whole message (a batched
//! read of the unexpired committed transactions), to tell which are already committed. A store read error while handling a peer's message
//! fails that message only (logged, counted in `bftnode_store_read_errors_total`); the node
//! keeps running.

use super::{Driver, blocking};
use crate::app::{self, Transaction, TxHash};
use crate::mempool::{Mempool, MempoolError, Source};
use crate::metrics::{Metrics, gossip_outcome};
use consensus::Height;
use network::{PeerId, Topic};
use std::time::{Duration, Instant};
use storage::{RocksStore, Store, StoreError};
use tracing::{debug, error, warn};

/// Largest gossip message, in bytes (the network's default cap).
pub(super) const MAX_GOSSIP_BYTES: usize = 1024 * 1024;

/// Most transactions taken from one gossip message; the rest of the message is not decoded
/// (counted as `truncated`). Bounds the driver's work per message: at most this many hashes and
/// store reads. Honest messages are flushed at 256 KiB, which this admits for transactions of
/// 64 bytes and more.
pub const MAX_GOSSIP_TXS: usize = 4096;

/// Flush gossiped transactions once this many bytes are buffered.
const GOSSIP_FLUSH_BYTES: usize = 256 * 1024;

/// Least time between two gossip flushes, and the longest a submitted transaction waits
/// before it is sent to the other validators. A submission that arrives when the last flush
/// is at least this old is sent at once with whatever is buffered (Nagle's rule, inverted:
/// an idle node adds no delay, a busy one batches); the rest waits for the next tick. At
/// most 500 batches a second per node (plus the 256 KiB size flushes), each pushed once to
/// every validator (`network`, `/bftnode/txs/1`).
///
/// Why 2 ms (was 5): at 1,000 tx/s over four nodes a node's clients submit every 4 ms, so a
/// 5 ms interval held most transactions back ~1 ms on their way to the next leader (issue 10
/// note, stop 29: p50 at 1,000 tx/s 9.0–9.9 ms against 9.9–12.0; no change in peak
/// throughput beyond the noise).
pub(super) const GOSSIP_FLUSH_INTERVAL: Duration = Duration::from_millis(2);

impl Driver {
    /// A transaction gossip message from `from` ([`ingest_gossip`]). Never fatal: a store read
    /// error fails this message only.
    pub(super) fn on_tx_gossip(&mut self, from: PeerId, bytes: &[u8]) {
        let store: &RocksStore = &self.store;
        let (mempool, metrics) = (&mut self.mempool, &*self.metrics);
        let evicted = mempool.evicted();
        let report = blocking(|| {
            ingest_gossip(
                mempool,
                store,
                Source::Peer(from),
                bytes,
                Instant::now(),
                metrics,
            )
        });
        if let Err(e) = report {
            debug!(peer = %from, error = %e, "undecodable transaction gossip");
            self.metrics.invalid_messages.inc();
            return;
        }
        self.metrics
            .mempool_evicted
            .inc_by(self.mempool.evicted() - evicted);
        self.wake_proposal();
    }

    /// Local submissions (`POST /tx`, `POST /txs`): refused whole while the queue delay is over
    /// its target; otherwise each is checked and inserted ([`submit_all`]) and the accepted ones
    /// are buffered for the next push. One result per transaction, in order.
    pub(super) fn submit(&mut self, txs: Vec<Transaction>) -> Vec<Result<TxHash, MempoolError>> {
        let now = Instant::now();
        if let Some(waited) = self.queue_delay.congested(now) {
            let refusal = MempoolError::Congested {
                waited_ms: waited.as_millis() as u64,
                target_ms: self.queue_delay.target().as_millis() as u64,
            };
            return txs.iter().map(|_| Err(refusal.clone())).collect();
        }
        let evicted = self.mempool.evicted();
        let store: &RocksStore = &self.store;
        let (mempool, metrics) = (&mut self.mempool, &*self.metrics);
        let out = blocking(|| submit_all(mempool, store, txs, now, metrics));
        let out = out
            .into_iter()
            .map(|(tx, r)| {
                if r.is_ok() {
                    self.gossip_bytes += tx.encoded_len();
                    self.gossip_buf.push(tx);
                    if self.gossip_bytes >= GOSSIP_FLUSH_BYTES
                        || self.gossip_flushed_at.elapsed() >= GOSSIP_FLUSH_INTERVAL
                    {
                        self.flush_gossip();
                    }
                }
                r
            })
            .collect();
        self.metrics
            .mempool_evicted
            .inc_by(self.mempool.evicted() - evicted);
        self.metrics.mempool_txs.set(self.mempool.len() as i64);
        self.metrics.mempool_bytes.set(self.mempool.bytes() as i64);
        self.wake_proposal();
        out
    }

    /// Push the buffered local transactions to every validator as one batch.
    pub(super) fn flush_gossip(&mut self) {
        if self.gossip_buf.is_empty() {
            return;
        }
        let txs = std::mem::take(&mut self.gossip_buf);
        self.gossip_bytes = 0;
        self.gossip_flushed_at = Instant::now();
        self.net
            .publish(Topic::Transactions, consensus::encode(&txs));
    }
}

/// Decode a transaction gossip message (a borsh `Vec<Transaction>` of at most
/// `MAX_GOSSIP_BYTES`), taking at most `max_txs` transactions: the rest is never decoded.
/// Returns them, their hashes (taken over their encoded bytes, [`app::decode_hashed`]) and how
/// many more the message claims. Errors: the message is too large or malformed up to the cap.
pub fn decode_gossip_txs(
    bytes: &[u8],
    max_txs: usize,
) -> Result<(Vec<Transaction>, Vec<TxHash>, usize), consensus::codec::DecodeError> {
    use borsh::BorshDeserialize;
    use consensus::codec::DecodeError;
    if bytes.len() > MAX_GOSSIP_BYTES {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit: MAX_GOSSIP_BYTES,
        });
    }
    let malformed = |e: std::io::Error| DecodeError::Malformed(e.to_string());
    let mut rest = bytes;
    let claimed = u32::deserialize(&mut rest).map_err(malformed)? as usize;
    let take = claimed.min(max_txs);
    let (txs, hashes) = app::decode_hashed(&mut rest, take).map_err(malformed)?;
    if take == claimed && !rest.is_empty() {
        return Err(DecodeError::Malformed("trailing bytes".to_string()));
    }
    Ok((txs, hashes, claimed - take))
}

/// What [`ingest_gossip`] did with one message, by outcome (also counted in
/// `bftnode_gossip_txs_total`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GossipReport {
    /// Entered the mempool.
    pub accepted: usize,
    /// Dropped by the in-memory checks (duplicate, invalid, over quota, full): no store read.
    pub dropped_in_memory: usize,
    /// Already committed (found by a store read).
    pub committed: usize,
    /// Beyond [`MAX_GOSSIP_TXS`], never decoded.
    pub truncated: usize,
    /// The store read that failed, if one did: the rest of the message was not examined.
    pub read_error: Option<StoreError>,
}

/// The outcome label of a refused transaction.
fn refusal_label(e: &MempoolError) -> &'static str {
    match e {
        MempoolError::AlreadyPending { .. } => gossip_outcome::DUPLICATE,
        MempoolError::AlreadyCommitted { .. } => gossip_outcome::COMMITTED,
        MempoolError::Invalid(_) => gossip_outcome::INVALID,
        MempoolError::OverQuota { .. } => gossip_outcome::OVER_QUOTA,
        MempoolError::Full { .. } => gossip_outcome::FULL,
        // Local submissions only; never a gossip outcome.
        MempoolError::Congested { .. } => gossip_outcome::FULL,
    }
}

/// The height the next committed block will have ([`Metrics::committed`] + 1).
fn next_height(metrics: &Metrics) -> Height {
    Height(metrics.committed().0 + 1)
}

/// The in-memory admission checks of one transaction, cheapest first: its sizes
/// ([`Transaction::validate`]), whether it may still commit at height `next`
/// ([`Transaction::check_expiry`]; one too far ahead is refused too, so the replay guard never
/// holds a transaction for longer than one window), then the mempool's own (duplicate,
/// `source`'s quota, room).
fn admissible(
    mempool: &Mempool,
    source: &Source,
    tx: &Transaction,
    hash: &TxHash,
    next: Height,
) -> Result<(), MempoolError> {
    tx.validate()?;
    tx.check_expiry(next)?;
    mempool.check(source, hash, tx.encoded_len())
}

/// Handle one transaction gossip message from `source` (module docs, "Gossip and peer reads"):
/// decode at most [`MAX_GOSSIP_TXS`] transactions; validate, hash and check each in memory
/// ([`admissible`]: expiry, then duplicate, quota, room); then read the store once for all that
/// passed ([`Store::recent_txs`], one batched read: already committed?) and insert them in order.
/// A failed read stops the message at that transaction: it is logged and counted
/// (`store_read_errors{path="gossip"}`), the rest of the message is dropped, and the error is
/// returned in the report, never as `Err`. Blocks on the store read.
/// Errors: the message does not decode ([`decode_gossip_txs`]); nothing was inserted.
pub fn ingest_gossip(
    mempool: &mut Mempool,
    store: &impl Store,
    source: Source,
    bytes: &[u8],
    now: Instant,
    metrics: &Metrics,
) -> Result<GossipReport, consensus::codec::DecodeError> {
    let (txs, hashes, truncated) = decode_gossip_txs(bytes, MAX_GOSSIP_TXS)?;
    let mut report = GossipReport {
        truncated,
        ..GossipReport::default()
    };
    metrics.count_gossip_txs(gossip_outcome::TRUNCATED, truncated as u64);
    let mut passed = Vec::with_capacity(txs.len());
    let next = next_height(metrics);
    for (tx, hash) in txs.into_iter().zip(hashes) {
        match admissible(mempool, &source, &tx, &hash, next) {
            Ok(()) => passed.push((tx, hash)),
            Err(e) => {
                report.dropped_in_memory += 1;
                metrics.count_gossip_txs(refusal_label(&e), 1);
            }
        }
    }
    let keys: Vec<(Height, TxHash)> = passed.iter().map(|(t, h)| (t.expires_at, *h)).collect();
    let found = store.recent_txs(&keys);
    let total = passed.len();
    for (i, ((tx, hash), found)) in passed.into_iter().zip(found).enumerate() {
        match found {
            Ok(true) => {
                report.committed += 1;
                metrics.count_gossip_txs(gossip_outcome::COMMITTED, 1);
            }
            // Checked above, but an earlier transaction of this message may have taken the
            // room, the quota or the hash since: the insert checks again.
            Ok(false) => match mempool.insert_hashed(source, tx, hash, false, now) {
                Ok(_) => {
                    report.accepted += 1;
                    metrics.count_gossip_txs(gossip_outcome::ACCEPTED, 1);
                }
                Err(e) => {
                    report.dropped_in_memory += 1;
                    metrics.count_gossip_txs(refusal_label(&e), 1);
                }
            },
            Err(e) => {
                metrics.count_store_read_error("gossip");
                metrics.count_gossip_txs(gossip_outcome::READ_ERROR, (total - i) as u64);
                warn!(
                    tx = %hash,
                    error = %e,
                    "tx gossip: store read failed; rest of the message dropped"
                );
                report.read_error = Some(e);
                break;
            }
        }
    }
    Ok(report)
}

/// Add locally submitted transactions, in order: the in-memory checks ([`admissible`]) of each,
/// then one batched store read for all that passed (already committed?), then
/// the inserts. A failed read is logged and counted (`store_read_errors{path="submit"}`) and
/// its transaction is taken as not committed (replays are skipped deterministically at commit
/// anyway). One result per transaction, each with its transaction. Blocks on the store read.
fn submit_all(
    mempool: &mut Mempool,
    store: &impl Store,
    txs: Vec<Transaction>,
    now: Instant,
    metrics: &Metrics,
) -> Vec<(Transaction, Result<TxHash, MempoolError>)> {
    let next = next_height(metrics);
    let checked: Vec<(Transaction, Result<TxHash, MempoolError>)> = txs
        .into_iter()
        .map(|tx| {
            let hash = tx.hash();
            let r = admissible(mempool, &Source::Local, &tx, &hash, next).map(|()| hash);
            (tx, r)
        })
        .collect();
    let passed: Vec<(Height, TxHash)> = checked
        .iter()
        .filter_map(|(tx, r)| r.as_ref().ok().map(|h| (tx.expires_at, *h)))
        .collect();
    let mut found = store.recent_txs(&passed).into_iter();
    checked
        .into_iter()
        .map(|(tx, r)| {
            let r = r.and_then(|hash| {
                let committed = match found.next() {
                    Some(Ok(found)) => found,
                    Some(Err(e)) => {
                        metrics.count_store_read_error("submit");
                        error!(tx = %hash, error = %e, "reading the replay guard failed");
                        false
                    }
                    None => false,
                };
                mempool.insert_hashed(Source::Local, tx.clone(), hash, committed, now)
            });
            (tx, r)
        })
        .collect()
}
