//! Pruning of old committed block bodies (`[storage] retain_heights`; PROTOCOL.md §6.5 rule 8).
//!
//! A background task, off the driver: every [`PRUNE_INTERVAL`] it deletes the bodies of the
//! committed blocks below `tip − retain_heights`, in unsynced batches of at most
//! [`PRUNE_CHUNK_HEIGHTS`] heights ([`storage::Op::PruneBlocks`]), through the store's writer
//! lock (so a chunk delays a commit batch by at most one chunk's write). A crash between
//! chunks loses nothing: the floor ([`Store::retained_from`]) moves in the same atomic batch as
//! the deletes, and the next pass resumes from it.
//!
//! ## What is kept, and what peers need
//! - Kept whole: the height → id index, the transaction index, the replay guard's unexpired
//!   transactions (every node must keep the same ones whatever it prunes), the application
//!   state, evidence, the safety record, and every block above the committed tip.
//! - A restart needs the last `fault::MAX_REPLAY_DEPTH` (1,256) committed blocks (the leader
//!   election's window); [`MIN_RETAIN_HEIGHTS`] is well above it.
//! - A peer catching up needs every committed block above its own committed height (block
//!   sync walks down to it). A pruning node serves what it keeps and answers an empty
//!   response below its floor, which the peer takes as "ask the next peer" (PROTOCOL.md §6.5
//!   rule 3). So a validator away longer than every peer's retention can catch up only from
//!   an archive node (`retain_heights = 0`, the default): keep at least one. There is no state
//!   sync yet.

use crate::driver::SharedStore;
use crate::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;
use storage::{Op, Store, StoreError, WriteBatch};
use tokio::sync::watch;
use tracing::{debug, warn};

pub use crate::config::sections::MIN_RETAIN_HEIGHTS;

// A restarted node must find the whole election window in its store (`crate::recover`).
const _: () = assert!(MIN_RETAIN_HEIGHTS >= fault::MAX_REPLAY_DEPTH as u64);

/// Most heights pruned in one write batch.
pub const PRUNE_CHUNK_HEIGHTS: u64 = 1_000;

/// How often the pruner checks the committed tip.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

/// Deletes committed block bodies below `tip − retain` (see the module docs).
#[derive(Clone)]
pub struct Pruner {
    store: SharedStore,
    retain: u64,
    metrics: Arc<Metrics>,
}

impl Pruner {
    /// A pruner keeping `retain` heights below the tip (`retain ≥ 1`; the node's config
    /// enforces [`MIN_RETAIN_HEIGHTS`], tests may pass less).
    pub fn new(store: SharedStore, retain: u64, metrics: Arc<Metrics>) -> Self {
        Pruner {
            store,
            retain: retain.max(1),
            metrics,
        }
    }

    /// Prune until the floor reaches `tip − retain`, one chunk per batch. Blocks the calling
    /// thread on RocksDB. Returns the number of heights pruned.
    /// Errors: the store's ([`StoreError`]); what was written before the error stays.
    pub fn prune_once(&self) -> Result<u64, StoreError> {
        let mut pruned = 0;
        loop {
            let from = self.store.retained_from()?.0;
            self.metrics.retained_from_height.set(from as i64);
            let Some((tip, _)) = self.store.committed_tip()? else {
                return Ok(pruned);
            };
            let target = tip.0.saturating_sub(self.retain);
            if target <= from {
                return Ok(pruned);
            }
            let below = target.min(from.saturating_add(PRUNE_CHUNK_HEIGHTS));
            self.store.write_shared(WriteBatch {
                sync: false,
                ops: vec![Op::PruneBlocks {
                    below: consensus::Height(below),
                }],
            })?;
            pruned += below - from;
            self.metrics.pruned_heights.inc_by(below - from);
        }
    }

    /// Run [`Pruner::prune_once`] every [`PRUNE_INTERVAL`] on the blocking pool until
    /// `shutdown` turns true. A store error is logged and counted and the next pass retries.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(PRUNE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            let pass = self.clone();
            match tokio::task::spawn_blocking(move || pass.prune_once()).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => debug!(heights = n, "pruned committed block bodies"),
                Ok(Err(err)) => {
                    self.metrics.pruning_errors.inc();
                    warn!(%err, "pruning failed; retrying on the next pass");
                }
                Err(err) => warn!(%err, "the pruning task failed"),
            }
        }
    }
}
