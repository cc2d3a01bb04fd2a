//! RocksDB's own figures for one store, read on demand ([`RocksStore::engine_stats`]): the
//! numbers that tell whether the engine keeps up with the chain (files waiting in level 0,
//! compaction debt, write stalls) and what it holds in memory and on disk.

use crate::engine::Cf;
use crate::rocks::RocksStore;
use rocksdb::properties as prop;

/// One column family's figures. Sizes in bytes; counts are exact unless named estimates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CfStats {
    /// The column family.
    pub cf: Cf,
    /// SST files in level 0. Reads consult every one; at 20 RocksDB slows writes and at 36
    /// stops them (its defaults, which this store keeps).
    pub l0_files: u64,
    /// Bytes compaction estimates it must rewrite to bring every level under its target.
    pub pending_compaction_bytes: u64,
    /// Memtables, active and immutable.
    pub memtable_bytes: u64,
    /// Live SST files.
    pub sst_bytes: u64,
    /// Blob files (the values kept out of the SSTs: block bodies, application values).
    pub blob_bytes: u64,
    /// Memory held by the SST readers outside the block cache (index and filter blocks); grows
    /// with the number of keys (`table_options` in `rocks.rs`).
    pub table_readers_bytes: u64,
    /// Estimated number of keys.
    pub estimated_keys: u64,
}

/// The whole store's figures: one [`CfStats`] per column family, in [`Cf::ALL`] order, and
/// the database-wide write-stall state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Per column family.
    pub cfs: Vec<CfStats>,
    /// Rate writes are held to while RocksDB slows them, in bytes/s; 0 when not slowed.
    pub delayed_write_rate: u64,
    /// Whether writes are stopped (level 0 or compaction debt past its hard limit).
    pub write_stopped: bool,
    /// Compactions running now.
    pub running_compactions: u64,
    /// Bytes held by the shared block cache (data blocks), at most its
    /// capacity ([`crate::RocksOptions::block_cache_bytes`]) but for pinned entries.
    pub block_cache_bytes: u64,
    /// Of [`EngineStats::block_cache_bytes`], the entries pinned (in use by a read or by a
    /// read), which the cache cannot evict.
    pub block_cache_pinned_bytes: u64,
}

impl RocksStore {
    /// Read [`EngineStats`] from RocksDB's properties. Cheap (no IO): safe to call on every
    /// metrics scrape. A property RocksDB does not answer reads as 0.
    pub fn engine_stats(&self) -> EngineStats {
        let db = self.db();
        let int = |name: &str| db.property_int_value(name).ok().flatten().unwrap_or(0);
        let l0 = prop::num_files_at_level(0);
        let cfs = Cf::ALL
            .iter()
            .filter_map(|&cf| {
                let h = db.cf_handle(cf.name())?;
                let get = |name: &str| {
                    db.property_int_value_cf(h, name)
                        .ok()
                        .flatten()
                        .unwrap_or(0)
                };
                Some(CfStats {
                    cf,
                    l0_files: get(l0.as_str()),
                    pending_compaction_bytes: get(prop::ESTIMATE_PENDING_COMPACTION_BYTES.as_str()),
                    memtable_bytes: get(prop::CUR_SIZE_ALL_MEM_TABLES.as_str()),
                    sst_bytes: get(prop::LIVE_SST_FILES_SIZE.as_str()),
                    blob_bytes: get("rocksdb.total-blob-file-size"),
                    table_readers_bytes: get(prop::ESTIMATE_TABLE_READERS_MEM.as_str()),
                    estimated_keys: get(prop::ESTIMATE_NUM_KEYS.as_str()),
                })
            })
            .collect();
        EngineStats {
            cfs,
            delayed_write_rate: int(prop::ACTUAL_DELAYED_WRITE_RATE.as_str()),
            write_stopped: int(prop::IS_WRITE_STOPPED.as_str()) != 0,
            running_compactions: int(prop::NUM_RUNNING_COMPACTIONS.as_str()),
            block_cache_bytes: self.block_cache().get_usage() as u64,
            block_cache_pinned_bytes: self.block_cache().get_pinned_usage() as u64,
        }
    }
}
