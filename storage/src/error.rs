//! Storage errors.
//!
//! A [`StoreError`] on the validator's own path (safety data, commits, recovery) is **fatal**
//! (PROTOCOL.md §4.8): a store that cannot read or write its safety data must stop the node
//! rather than risk a double vote. A read error while answering someone else (a peer's sync
//! request, gossip dedupe, an RPC read) fails that request only. None of them is a peer's
//! fault; the only "retry" a caller should attempt is restarting the process (for
//! [`StoreError::Locked`], after the other process has exited).

use consensus::{BlockId, Height};
use std::path::PathBuf;
use thiserror::Error;

/// Why a store operation failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The database directory is held by another open handle (another `bftnode` process, or a
    /// second handle in this process). RocksDB takes an exclusive lock on `<path>/LOCK`.
    #[error(
        "database at {path} is locked by another process (is another bftnode running on this \
         data directory?): {detail}"
    )]
    Locked {
        /// The database directory.
        path: PathBuf,
        /// RocksDB's message.
        detail: String,
    },
    /// The on-disk schema version is not the one this binary understands.
    #[error("storage schema version {found} on disk, this binary expects {expected}")]
    SchemaMismatch {
        /// Version found in the `meta` column family.
        found: u32,
        /// [`crate::SCHEMA_VERSION`].
        expected: u32,
    },
    /// The database belongs to another chain.
    #[error("database belongs to chain {found:?}, node is configured for chain {expected:?}")]
    ChainIdMismatch {
        /// Chain id stored at first open.
        found: String,
        /// Chain id the caller passed.
        expected: String,
    },
    /// A stored key or value does not decode: on-disk corruption or a foreign writer.
    #[error("corrupt entry in column family {cf} at key {key}: {detail}")]
    Corrupt {
        /// Column family name.
        cf: &'static str,
        /// The key, lower-case hex.
        key: String,
        /// What failed to decode.
        detail: String,
    },
    /// A batch tried to commit a different block at an already committed height: committed
    /// history is immutable, so this is a broken invariant in the caller. The whole batch is
    /// rejected (nothing is written).
    #[error("height {height} is already committed to {existing}, refusing to commit {new}")]
    ConflictingCommit {
        /// The height.
        height: Height,
        /// The id already committed there.
        existing: BlockId,
        /// The id the batch tried to commit.
        new: BlockId,
    },
    /// The commit index names a block that is not in the `blocks` column family.
    #[error("committed block {id} at height {height} is missing from the block store")]
    MissingBlock {
        /// Committed height.
        height: Height,
        /// Committed id.
        id: BlockId,
    },
    /// Any other backend failure (IO error, disk full, RocksDB internal error).
    #[error("storage backend failed during {op}: {detail}")]
    Backend {
        /// The operation (`"open"`, `"write"`, `"get"`, `"iterate"`).
        op: &'static str,
        /// The backend's message.
        detail: String,
    },
}
