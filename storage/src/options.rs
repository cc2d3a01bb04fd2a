//! Options of the RocksDB store: plain data, so that a crate that only parses the node's
//! configuration (the fuzz targets) can name them without linking RocksDB (feature `rocks`
//! off).

/// Options for `RocksStore::open`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RocksOptions {
    /// Create the database (and its column families) if the directory holds none. Default true.
    pub create_if_missing: bool,
    /// LZ4-compress the `blocks` column family (the only codec the workspace enables); every
    /// other column family is uncompressed. Default true.
    pub lz4_blocks: bool,
    /// Capacity of the block cache, in bytes, shared by every column family: the data blocks
    /// read from SST files (index and filter blocks too, for the column families that charge them). Default [`DEFAULT_BLOCK_CACHE_BYTES`].
    pub block_cache_bytes: usize,
    /// Bound on all memtables together, in bytes (RocksDB's `db_write_buffer_size`): past it
    /// the largest memtable is flushed. Default [`DEFAULT_MEMTABLE_BUDGET_BYTES`].
    pub memtable_budget_bytes: usize,
    /// Garbage collection of the application's blob files (the `app` column family's values of
    /// 256 bytes and more), as the percentage (0–100) of the oldest blob files whose live values
    /// compaction moves to new files so the old ones can be deleted (RocksDB's
    /// `blob_garbage_collection_age_cutoff`). 0, the default, turns it off: an overwritten or
    /// deleted value then stays on disk for good. Costs CPU in proportion to the live values
    /// moved: little when most old values were overwritten (an update workload), most when none
    /// were (every transaction a new key; why it is off by default).
    pub app_blob_gc_percent: u8,
}

/// Default [`RocksOptions::block_cache_bytes`]: 64 MiB.
pub const DEFAULT_BLOCK_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Default [`RocksOptions::memtable_budget_bytes`]: 256 MiB, the size of the write-ahead log
/// cap (`MAX_TOTAL_WAL_BYTES` in `rocks.rs`), which already kept the memtables between 40 and
/// 140 MB in a 30-minute run at 10,000 tx/s (issue 10 note).
pub const DEFAULT_MEMTABLE_BUDGET_BYTES: usize = 256 * 1024 * 1024;

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            create_if_missing: true,
            lz4_blocks: true,
            block_cache_bytes: DEFAULT_BLOCK_CACHE_BYTES,
            memtable_budget_bytes: DEFAULT_MEMTABLE_BUDGET_BYTES,
            app_blob_gc_percent: 0,
        }
    }
}
