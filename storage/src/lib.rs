//! # storage — persistent state of a bftnode validator
//!
//! One trait, [`Store`], with two implementations:
//! - [`RocksStore`]: RocksDB with one column family per concern (layout below), atomic write
//!   batches, and synced (fsync'd WAL) writes for safety data;
//! - [`MemStore`]: the same semantics in memory, `Clone`, for the deterministic simulator
//!   (a simulated crash keeps the `MemStore`, a restart rebuilds the core from it).
//!
//! Both are thin raw key/value engines under one shared implementation of the [`Store`]
//! semantics, so they cannot drift apart; `tests/conformance.rs` runs one suite against both.
//!
//! ## Persistence contract
//! - [`Store::write`] is atomic: every [`Op`] of a [`WriteBatch`] applies, or none does.
//! - With [`WriteBatch::sync`], the batch survives a power loss once `write` returns. The
//!   driver must sync the batch carrying [`Op::PutSafety`] before sending the vote, timeout or
//!   proposal it enables (persist before send). A synced write costs ≈ 0.2 ms on the reference
//!   machine, so put everything one view needs into one synced batch.
//! - Committed history is append-only: committing a different block at a committed height is
//!   rejected ([`StoreError::ConflictingCommit`]).
//! - Every error on the node's own path (safety data, commits, recovery) is fatal to the node
//!   (see [`StoreError`]); never drop a storage `Result`. A *read* that fails while answering a
//!   peer or a client (block sync, gossip dedupe, RPC) fails that request only.
//! - [`RocksStore`] is `Send + Sync`: share it as `Arc<RocksStore>`, read through `&self` and
//!   write through [`RocksStore::write_shared`] (one writer at a time; readers never wait).
//!
//! ## Layout (column families)
//! | CF | key | value |
//! |---|---|---|
//! | `blocks` | block id (32 B) | `encode(Block)` |
//! | `committed` | height, u64 big-endian | block id |
//! | `pending` | height BE ‖ id | empty: stored blocks above the committed tip |
//! | `safety` | `"safety"` | `encode(SafetyData)` |
//! | `evidence` | `Evidence::id()` | `encode(Evidence)` |
//! | `app` | application key | application value |
//! | `txindex` | tx hash | `encode(TxLocation)` |
//! | `recent` | expiry height BE ‖ tx hash | empty: unexpired committed transactions |
//! | `meta` | `"schema_version"`, `"chain_id"`, `"convictions"`, `"retained_from"` | u32 LE, UTF-8, borsh, u64 LE |
//!
//! ## Pruning
//! [`Op::PruneBlocks`] deletes the bodies of old committed blocks and nothing else: the
//! `committed` index and the transaction indexes stay (the application's replay guard reads
//! `recent`, and it must decide the same on every node whatever each one prunes).
//! [`Store::retained_from`] is the floor; [`Store::serve_blocks`] stops at it like at any
//! missing block.
//!
//! Encoding is borsh via [`consensus::encode`] / [`consensus::decode`]; a value that does not
//! decode yields [`StoreError::Corrupt`], never a panic.
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod batch;
mod engine;
mod error;
mod mem;
mod options;
#[cfg(feature = "rocks")]
mod rocks;
#[cfg(feature = "rocks")]
mod rocks_stats;

pub use batch::{Op, TxLocation, WriteBatch};
pub use engine::Cf;
pub use error::StoreError;
pub use mem::MemStore;
pub use options::{DEFAULT_BLOCK_CACHE_BYTES, DEFAULT_MEMTABLE_BUDGET_BYTES, RocksOptions};
#[cfg(feature = "rocks")]
pub use rocks::{RocksStore, WriteObserver, WriteStats};
#[cfg(feature = "rocks")]
pub use rocks_stats::{CfStats, EngineStats};

use consensus::{
    Block, BlockId, BlockRequest, BlockResponse, Digest, Evidence, Height, SafetyData,
};

/// Version of the on-disk layout. Bump on any incompatible change to keys or values; a store
/// written by another version refuses to open ([`StoreError::SchemaMismatch`]).
pub const SCHEMA_VERSION: u32 = 3;

/// Hard cap on the number of blocks in one [`Store::serve_blocks`] response, whatever the
/// request asks for.
pub const HARD_CAP: usize = 500;

/// Persistent state of one validator. Errors on the validator's own path are fatal
/// ([`StoreError`]).
///
/// Implemented by [`RocksStore`] and [`MemStore`] only (the implementation is shared and
/// sealed), so every store has identical semantics.
pub trait Store: Send {
    /// The safety record, or `None` in a fresh store.
    /// Errors: [`StoreError::Corrupt`] if it does not decode, [`StoreError::Backend`].
    fn load_safety(&self) -> Result<Option<SafetyData>, StoreError>;

    /// The conviction record last written by [`Op::PutConvictions`] (empty if none).
    /// Errors: [`StoreError::Corrupt`] if it does not decode, [`StoreError::Backend`].
    fn convictions(&self) -> Result<Vec<Option<Height>>, StoreError>;

    /// Apply `batch` atomically (all ops or none); if `batch.sync`, durably before returning.
    /// Errors: [`StoreError::ConflictingCommit`] (nothing written), [`StoreError::Backend`].
    fn write(&mut self, batch: WriteBatch) -> Result<(), StoreError>;

    /// The block stored under `id`.
    fn block(&self, id: &BlockId) -> Result<Option<Block>, StoreError>;

    /// Whether block `id` is stored at `height` above the committed tip (an entry of the
    /// index [`Store::uncommitted_blocks`] walks): one key lookup, the block itself is not
    /// read. `false` for a block not stored, stored at another height, or committed.
    fn is_pending(&self, height: Height, id: &BlockId) -> Result<bool, StoreError>;

    /// The block id committed at height `h`.
    fn committed_id(&self, h: Height) -> Result<Option<BlockId>, StoreError>;

    /// The highest committed `(height, id)`, or `None` before the first commit.
    fn committed_tip(&self) -> Result<Option<(Height, BlockId)>, StoreError>;

    /// Up to `count` committed blocks, ascending by height and ending at the tip, contiguous:
    /// on a pruned store none below [`Store::retained_from`] (so maybe fewer than `count`).
    /// Errors: [`StoreError::MissingBlock`] if a committed id has no stored block.
    fn last_committed(&self, count: usize) -> Result<Vec<Block>, StoreError>;

    /// The pruning floor: the lowest height above genesis whose committed block body is kept
    /// (`Height(1)` when nothing was pruned; the genesis block is never pruned). Heights below
    /// it keep their `committed` entry (height → id) but [`Store::block`] finds no body.
    /// Raised only by [`Op::PruneBlocks`]. Errors: [`StoreError::Corrupt`], [`StoreError::Backend`].
    fn retained_from(&self) -> Result<Height, StoreError>;

    /// Every stored block above the committed tip, ascending by (height, id): the block tree a
    /// restarting node reloads. Errors: [`StoreError::MissingBlock`] on a dangling index entry.
    fn uncommitted_blocks(&self) -> Result<Vec<Block>, StoreError>;

    /// Up to `limit` stored evidence items, in evidence-id order.
    fn evidence(&self, limit: usize) -> Result<Vec<Evidence>, StoreError>;

    /// The application value at `key`.
    fn app_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Where the transaction with `hash` was committed.
    fn tx_location(&self, hash: &Digest) -> Result<Option<TxLocation>, StoreError>;

    /// [`Store::tx_location`] of each of `hashes`, one result per hash, in order, read in one
    /// batch where the engine can (RocksDB: batched `MultiGet`). A failed read or an
    /// undecodable entry fails that hash's result only.
    fn tx_locations(&self, hashes: &[Digest]) -> Vec<Result<Option<TxLocation>, StoreError>>;

    /// For each `(expires_at, hash)`, whether that committed transaction is in the replay
    /// guard's set ([`Op::RecordRecentTx`], not yet forgotten by [`Op::ForgetExpiredTxs`]); one
    /// result per entry, in order, read in one batch where the engine can. A failed read, or a
    /// value where the set stores none ([`StoreError::Corrupt`]), fails that entry only. Its size is bounded
    /// by the transactions committed within one expiry window, not by the chain's length.
    fn recent_txs(&self, txs: &[(Height, Digest)]) -> Vec<Result<bool, StoreError>>;

    /// Answer a block-sync request: walk parent links down from `req.target`, highest first,
    /// stopping before the first block at height ≤ `req.stop_at` or missing from the store,
    /// after `min(req.max_blocks, HARD_CAP)` blocks, or before the block that would make the
    /// encoded response exceed `max_bytes` bytes (the first block is always included if it
    /// exists and is above `stop_at`). An unknown target gives an empty response.
    fn serve_blocks(
        &self,
        req: &BlockRequest,
        max_bytes: usize,
    ) -> Result<BlockResponse, StoreError>;

    /// Bind the store to `chain_id`: recorded (synced) on first call, and every later call —
    /// including after a reopen — must pass the same id.
    /// Errors: [`StoreError::ChainIdMismatch`].
    fn check_chain_id(&mut self, chain_id: &str) -> Result<(), StoreError>;

    /// Wall-clock duration of the last backend write, in microseconds (0 before the first
    /// write, and always 0 for [`MemStore`], which must stay deterministic). For a histogram
    /// of every write use [`RocksStore::set_write_observer`].
    fn last_write_micros(&self) -> u64;
}
