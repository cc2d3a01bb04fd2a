//! Commit application: what the driver does with the core's `Commit` action (the application's
//! writes, the transaction index, commit records, evidence and the slashing hook in one batch),
//! and the periodic commit summary in the log.

use super::{Driver, blocking};
use crate::app::{self, AppWrite, DecodedPayload, TxHashSet};
use crate::rpc_types::CommitEvent;
use anyhow::{Context, Result};
use consensus::{Block, BlockId, Digest, Height};
use fault::Offence;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use storage::{Op, RocksStore, Store, TxLocation, WriteBatch};
use tracing::{debug, info, warn};

/// How often the driver logs a summary of what it committed (per-commit lines are `debug`).
pub const COMMIT_SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Commits since the last summary line.
#[derive(Debug)]
pub(super) struct CommitSummary {
    pub(super) since: Instant,
    pub(super) blocks: u64,
    pub(super) txs: u64,
    pub(super) first_height: Option<u64>,
}

/// A stored, uncommitted block's payload, decoded once for its commit.
pub(super) struct CachedPayload {
    pub(super) height: consensus::Height,
    /// Encoded payload size, bytes.
    pub(super) bytes: usize,
    pub(super) payload: DecodedPayload,
    /// When the block was stored (we proposed it, or its proposal or sync response arrived):
    /// the start of `bftnode_block_commit_seconds`.
    pub(super) stored_at: Instant,
}

impl Driver {
    /// Apply committed blocks: application writes, tx index, commit records, any missing
    /// block bodies, and the slashing hook (each block's misbehaviour list recorded as penalty
    /// entries, plus the accountant's state) in ONE atomic batch, written without its own fsync
    /// (durable with the next synced write: crate docs, "Durability"); then mempool cleanup,
    /// metrics and a log line.
    pub(super) fn on_commit(&mut self, blocks: Vec<Block>, ids: Vec<BlockId>) -> Result<()> {
        let limit = app::PAYLOAD_DECODE_LIMIT;
        let mut batch = WriteBatch::new();
        let mut applied_now = TxHashSet::default();
        let mut applied_all = Vec::new();
        let mut skipped = 0u64;
        // Hashes the committed blocks carried but the application skipped; dropped from the
        // mempool after `Mempool::on_commit` (which must see the applied ones first).
        let mut discarded: Vec<Digest> = Vec::new();
        let mut tip = None;
        let mut misbehaviour: Vec<fault::Misbehaviour> = Vec::new();
        let mut evidence_marked: HashSet<Vec<u8>> = HashSet::new();
        // Per block, what `GET /events` publishes once the commit is on disk.
        let mut published: Vec<CommitEvent> = Vec::new();
        let wanted = self.events.wanted();
        let store: &RocksStore = &self.store;
        let accountant = &mut self.accountant;
        let (decoded, decoded_bytes) = (&mut self.decoded, &mut self.decoded_bytes);
        let mut stored_at: Vec<Instant> = Vec::new();
        blocking(|| -> Result<()> {
            for (block, id) in blocks.iter().zip(&ids) {
                tip = Some((block.height, block.view, *id));
                if store.committed_id(block.height)? == Some(*id) {
                    continue; // already applied (idempotent)
                }
                // A block stored above the tip is in the pending index: a key lookup, where
                // reading it back decoded the whole body (a copy of up to a few MiB a commit).
                if !store.is_pending(block.height, id)? && store.block(id)?.is_none() {
                    batch.push(Op::PutBlock {
                        id: *id,
                        block: Box::new(block.clone()),
                    });
                }
                let payload = match decoded.remove(id) {
                    Some(c) => {
                        *decoded_bytes -= c.bytes;
                        stored_at.push(c.stored_at);
                        c.payload
                    }
                    None => DecodedPayload::decode(&block.payload, limit),
                };
                // The replay check of the whole block in one batched read of the store's
                // unexpired committed transactions; a failed read stops the commit (fatal, as
                // every store error on this path).
                let keys: Vec<(Height, Digest)> = payload
                    .txs
                    .iter()
                    .map(|tx| tx.expires_at)
                    .zip(payload.hashes.iter().copied())
                    .collect();
                let mut committed_before = TxHashSet::default();
                for ((_, hash), found) in keys.iter().zip(store.recent_txs(&keys)) {
                    if found? {
                        committed_before.insert(*hash);
                    }
                }
                let res = app::apply_decoded(block, *id, payload, |_, h| {
                    applied_now.contains(h) || committed_before.contains(h)
                });
                if res.invalid_payload {
                    warn!(height = block.height.0, id = %id, "committed block has an undecodable payload; skipped");
                }
                skipped += res.skipped.len() as u64;
                // A repeat of an applied transaction is among them: discarding it after the
                // mempool removed it as committed (below) is a no-op.
                discarded.extend_from_slice(&res.skipped);
                // One growth for the block's writes instead of doubling push by push (when an
                // `Op` was large the regrowth copies were 1.4 % of a node at 25,000 tx/s; ops
                // are boxed since, 88 bytes, so this now saves little).
                batch.ops.reserve(res.writes.len() * 3 / 2);
                for w in res.writes {
                    push_store_ops(&mut batch, w);
                }
                for ev in &block.evidence {
                    batch.push(Op::PutEvidence(Box::new(ev.clone())));
                    let key = app::committed_evidence_key(&ev.id());
                    if !evidence_marked.contains(&key) && store.app_get(&key)?.is_none() {
                        batch.push(Op::AppPut {
                            key: key.clone(),
                            value: consensus::encode(&block.height),
                        });
                        evidence_marked.insert(key);
                    }
                }
                misbehaviour.extend(accountant.on_commit(block, *id));
                batch.push(Op::Commit {
                    height: block.height,
                    id: *id,
                });
                if wanted {
                    published.push(CommitEvent {
                        height: block.height.0,
                        view: block.view.0,
                        id: id.to_hex(),
                        committed_unix_ms: 0,
                        txs: res.applied.iter().map(Digest::to_hex).collect(),
                    });
                }
                applied_now.extend(res.applied.iter().copied());
                applied_all.extend(res.applied);
            }
            let penalties = app::apply_misbehaviour(&misbehaviour, |v| -> Result<_> {
                match store.app_get(&app::penalty_key(v))? {
                    None => Ok(None),
                    Some(b) => Ok(Some(
                        app::PenaltyRecord::decode(&b).context("a stored penalty record")?,
                    )),
                }
            })?;
            for w in penalties {
                push_store_ops(&mut batch, w);
            }
            Ok(())
        })?;
        if tip.is_some() {
            batch.push(Op::AppPut {
                key: app::ACCOUNTING_KEY.to_vec(),
                value: self.accountant.encode_state(),
            });
        }
        for m in &misbehaviour {
            log_misbehaviour(m);
        }
        if let Some(op) = crate::conviction_op(self.core.policy(), &blocks) {
            batch.push(op);
        }
        // The tip before this batch: the gauge is set below, once the batch is written.
        if let Some((new, _, _)) = tip
            && forget_expired_now(self.metrics.committed(), new)
        {
            batch.push(Op::ForgetExpiredTxs { below: new });
        }
        self.write(batch).context("writing a commit")?;
        let unix_ms = crate::config::now_unix_ms();
        for mut event in published {
            event.committed_unix_ms = unix_ms;
            self.events.publish(event);
        }
        let Some((height, view, id)) = tip else {
            return Ok(());
        };
        let decoded_bytes = &mut self.decoded_bytes;
        self.decoded.retain(|_, c| {
            let keep = c.height > height;
            if !keep {
                *decoded_bytes -= c.bytes;
            }
            keep
        });
        let now = Instant::now();
        for t in stored_at {
            self.metrics
                .block_commit_latency
                .observe(now.duration_since(t).as_secs_f64());
        }
        for t in self.mempool.on_commit(&ids, height, &applied_all) {
            self.metrics
                .commit_latency
                .observe(now.duration_since(t).as_secs_f64());
        }
        self.mempool.discard(&discarded);
        self.metrics.commits.inc_by(blocks.len() as u64);
        self.metrics.committed_height.set(height.0 as i64);
        self.metrics.skipped_txs.inc_by(skipped);
        self.metrics.committed_txs.inc_by(applied_all.len() as u64);
        self.metrics.mempool_txs.set(self.mempool.len() as i64);
        self.metrics.mempool_bytes.set(self.mempool.bytes() as i64);
        self.metrics
            .last_commit_timestamp
            .set(crate::config::now_unix_ms() as f64 / 1000.0);
        self.last_commit_at = now;
        debug!(
            view = view.0,
            height = height.0,
            id = %id,
            blocks = blocks.len(),
            txs = applied_all.len(),
            skipped,
            "committed"
        );
        let s = &mut self.summary;
        s.blocks += blocks.len() as u64;
        s.txs += applied_all.len() as u64;
        let first = *s.first_height.get_or_insert(blocks[0].height.0);
        if now.duration_since(s.since) >= COMMIT_SUMMARY_EVERY {
            let secs = now.duration_since(s.since).as_secs_f64();
            info!(
                view = view.0,
                height = height.0,
                from_height = first,
                blocks = s.blocks,
                txs = s.txs,
                tx_per_s = (s.txs as f64 / secs).round(),
                "committed in the last {secs:.0} s"
            );
            *s = CommitSummary {
                since: now,
                blocks: 0,
                txs: 0,
                first_height: None,
            };
        }
        Ok(())
    }
}

/// One `warn` line per entry of a committed misbehaviour list.
fn log_misbehaviour(m: &fault::Misbehaviour) {
    match &m.offence {
        Offence::Evidence { id, kind, .. } => warn!(
            offender = m.offender.0,
            height = m.height.0,
            evidence = %id,
            kind = kind.as_str(),
            standing = m.standing.as_str(),
            "penalty recorded: committed evidence"
        ),
        Offence::Downtime(d) => warn!(
            offender = m.offender.0,
            height = m.height.0,
            signed = d.tally.signed,
            eligible = d.tally.eligible,
            window_start = d.window_start.0,
            standing = m.standing.as_str(),
            "penalty recorded: downtime"
        ),
    }
}

/// Heights between two forgettings of expired transactions
/// ([`Op::ForgetExpiredTxs`]): one RocksDB range deletion each, rare enough that reads never
/// wade through many range tombstones, frequent enough that the replay guard holds little more
/// than one validity window.
pub(super) const FORGET_EXPIRED_EVERY: u64 = 256;

/// Whether a commit moving the tip from `old` to `new` crosses a multiple of
/// [`FORGET_EXPIRED_EVERY`]. Which commit forgets is a local choice: an expired transaction
/// is refused before its hash is looked up, so what is forgotten never changes a decision.
fn forget_expired_now(old: Height, new: Height) -> bool {
    new.0 / FORGET_EXPIRED_EVERY > old.0 / FORGET_EXPIRED_EVERY
}

/// Appends the storage ops of one application write: a committed transaction is indexed by
/// hash (`GET /tx`) and recorded in the replay guard until it expires.
fn push_store_ops(batch: &mut WriteBatch, w: AppWrite) {
    match w {
        AppWrite::Put { key, value } => batch.push(Op::AppPut { key, value }),
        AppWrite::Delete { key } => batch.push(Op::AppDelete { key }),
        AppWrite::IndexTx {
            hash,
            expires_at,
            height,
            block_id,
            index,
        } => batch
            .push(Op::IndexTx {
                hash,
                location: TxLocation {
                    height,
                    block_id,
                    index,
                },
            })
            .push(Op::RecordRecentTx { expires_at, hash }),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_transactions_are_forgotten_once_per_interval() {
        let e = FORGET_EXPIRED_EVERY;
        assert!(!forget_expired_now(Height(1), Height(e - 1)));
        assert!(forget_expired_now(Height(e - 1), Height(e)));
        assert!(!forget_expired_now(Height(e), Height(2 * e - 1)));
        // A batch of many blocks crossing several boundaries forgets once.
        assert!(forget_expired_now(Height(3), Height(5 * e + 7)));
        assert!(!forget_expired_now(Height(e), Height(e)));
    }
}
