//! The RocksDB store.
//!
//! ## Shared access
//! RocksDB's `DB` is thread-safe and its reads and writes take `&self`, so a [`RocksStore`] is
//! `Send + Sync` and can be shared as `Arc<RocksStore>`: every [`crate::Store`] read takes
//! `&self`, and [`RocksStore::write_shared`] writes through `&self`. Readers never wait for a
//! writer: a RocksDB write batch becomes visible to readers atomically, all at once. Writers are
//! serialised by an internal writer lock held from planning (which reads the commit index to
//! reject conflicting commits) to the end of the RocksDB write, so the planning check and the
//! write it guards are never interleaved with another writer's. Only writers take that lock.
//!
//! A sequence of reads is not a snapshot: a reader walking parent links or reading the tip and
//! then its block may see a write land in between. Committed history is append-only and
//! committed bodies are never deleted, so such a reader sees a consistent committed prefix.

use crate::SCHEMA_VERSION;
use crate::batch::WriteBatch;
use crate::engine::{Cf, Engine, RawOp, Visit, check_schema, planned};
use crate::error::StoreError;
use crate::options::RocksOptions;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType,
    DBRecoveryMode, Direction, ErrorKind, IteratorMode, Options, ReadOptions, WriteOptions,
};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// What one backend write cost, reported to a [`WriteObserver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteStats {
    /// Wall-clock duration of the RocksDB write call, in microseconds (includes the fsync when
    /// `sync`).
    pub micros: u64,
    /// Number of raw puts/deletes in the batch (index entries included).
    pub ops: usize,
    /// Size of the RocksDB write batch, in bytes.
    pub bytes: usize,
    /// Whether the write was synced.
    pub sync: bool,
}

/// Callback run after every successful write, e.g. to feed a
/// `bftnode_storage_write_seconds` histogram. Runs on the writing thread: keep it cheap.
/// `Sync` because the store is shared between threads (see the module docs).
pub type WriteObserver = Box<dyn Fn(WriteStats) + Send + Sync>;

/// A [`crate::Store`] on RocksDB (see the crate docs for the layout). Holds RocksDB's
/// exclusive lock on the directory until dropped. `Send + Sync`: share it as `Arc<RocksStore>`
/// and write with [`RocksStore::write_shared`] (module docs, "Shared access").
pub struct RocksStore {
    db: DB,
    /// The block cache every column family reads through ([`table_options`]).
    cache: Cache,
    path: PathBuf,
    last_write_micros: AtomicU64,
    observer: Option<WriteObserver>,
    /// Held by writers only, from planning a batch to the end of its RocksDB write.
    writer: Mutex<()>,
}

// Shared access (module docs) relies on this.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<RocksStore>();
};

impl fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .field(
                "last_write_micros",
                &self.last_write_micros.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

/// Bits per key of the SST bloom filters (≈ 1 % false positives).
const BLOOM_BITS_PER_KEY: f64 = 10.0;

/// Share of the memtable size given to its whole-key bloom filter.
const MEMTABLE_BLOOM_RATIO: f64 = 0.1;

/// SST table options of one column family: its data blocks are cached in the shared `cache`
/// (one bound for the whole store; RocksDB's default is a separate 32 MiB cache per column
/// family, up to 256 MiB here, which filled as the chain grew).
///
/// Hybrid Ribbon filters (about 30 % smaller) were tried too: SST readers grew 1.3 instead of
/// 1.75 MB/min, but p50 was higher in that 30-minute soak (not proven to be the filter's
/// fault); the bloom filters stay.
///
/// The SSTs' index and filter blocks stay outside the cache, in the table readers (1.25 bytes
/// of filter per key), except the transaction index's ([`Cf::cached_filters`]): it gains a key
/// per committed transaction forever (52 MB of filters per node after 30 minutes at 10,000
/// tx/s, with the application's), and since the replay guard moved to the bounded `recent`
/// column family only `GET /tx` reads it, so its filters can compete for the cache. They could
/// not while every incoming transaction's replay check probed it: a random absent key consults
/// a filter of every level, the whole filter set was the working set, and with a 64 MiB cache
/// commit writes took 2.0–2.5 ms instead of 0.65 ms (issue 10, stop 27 note).
///
/// Column families read by key ([`Cf::point_lookups`]) get bloom filters, and their memtables
/// a whole-key filter, so a lookup of an absent key skips the skiplist search and the SST index
/// and data blocks. Without them a miss in a 1,000,000-entry transaction index took 9.1 µs
/// (`cargo bench -p storage --bench store -- tx_index`).
fn table_options(o: &mut Options, cache: &Cache, point_lookups: bool, cached_filters: bool) {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    if cached_filters {
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    }
    if point_lookups {
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
        table.set_whole_key_filtering(true);
        o.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO);
        o.set_memtable_whole_key_filtering(true);
    }
    o.set_block_based_table_factory(&table);
}

/// Block bodies at least this large (bytes) are kept in blob files rather than in SST files.
const MIN_BLOCK_BLOB_BYTES: u64 = 4096;

/// Application values at least this large (bytes) are kept in blob files.
const MIN_APP_BLOB_BYTES: u64 = 256;

/// With blob garbage collection on: the share of garbage in the collected blob files above
/// which RocksDB compacts the SST files pointing into them (`blob_garbage_collection_force_
/// threshold`).
const BLOB_GC_FORCE_THRESHOLD: f64 = 0.5;

/// Largest total size of the write-ahead log files, in bytes, before the column families
/// that still hold the oldest one in a memtable are flushed so it can be deleted.
const MAX_TOTAL_WAL_BYTES: u64 = 256 * 1024 * 1024;

/// Obsolete write-ahead log files kept to be overwritten by later logs (RocksDB's
/// `recycle_log_file_num`; why at the call in [`RocksStore::open`]). Each costs disk up to
/// one log's size (at most [`MAX_TOTAL_WAL_BYTES`]).
const RECYCLED_WAL_FILES: usize = 2;

/// Key-value separation (RocksDB BlobDB): values of at least `min_bytes` are written once, to
/// a blob file at memtable flush, and compaction moves only their keys and references.
///
/// * `blocks`: a body of up to a few MiB. Without it every body was rewritten at each level it
///   passed through, which took about 40 % of a validator's CPU at 15,000 offered tx/s
///   (`perf`, issue 10 note). Committed bodies are never deleted, so no garbage collection.
/// * `app`: the application's values (≈ 450 B each under `bftnode load`). Inline, a minute at
///   14,000 tx/s put 460 MB of them through one compaction, and compaction took 53 % of a
///   node's CPU by then (18 % with blob values): throughput fell and latency rose with the
///   chain's age (issue 10: "slower as the chain grows"). Blob garbage collection
///   ([`RocksOptions::app_blob_gc_percent`]) is off by default: with the oldest quarter of the
///   blob files collected, compaction relocated their live values, which under a workload of
///   new keys is nearly all of them (43 % of the CPU). Off, an overwritten or deleted value
///   stays in its blob file; an archive node keeps every block body, which holds every value
///   ever written, anyway, but a pruning node (`[storage] retain_heights`) whose workload
///   overwrites keys should turn it on.
///
/// `gc_age_cutoff`: the fraction of the oldest blob files collected (`None`: no collection).
fn with_blob_values(
    o: &mut Options,
    compression: DBCompressionType,
    min_bytes: u64,
    gc_age_cutoff: Option<f64>,
) {
    o.set_enable_blob_files(true);
    o.set_min_blob_size(min_bytes);
    o.set_blob_compression_type(compression);
    o.set_enable_blob_gc(gc_age_cutoff.is_some());
    if let Some(cutoff) = gc_age_cutoff {
        o.set_blob_gc_age_cutoff(cutoff);
        // Without a force threshold, values move only when compaction happens to pass their
        // keys; an idle or lightly written column family would keep its garbage. Past half
        // garbage in the collected files, RocksDB compacts the SST files that still point into
        // them.
        o.set_blob_gc_force_threshold(BLOB_GC_FORCE_THRESHOLD);
    }
}

fn backend(op: &'static str, e: rocksdb::Error) -> StoreError {
    StoreError::Backend {
        op,
        detail: e.into_string(),
    }
}

impl RocksStore {
    /// Open (or create, per `opts`) the database in directory `path` with every column family,
    /// then check its schema version (a fresh database is stamped with [`SCHEMA_VERSION`]).
    ///
    /// Errors: [`StoreError::Locked`] if another process (or another handle in this process)
    /// has it open; [`StoreError::SchemaMismatch`] if it was written by an incompatible
    /// version; [`StoreError::Backend`] for anything else (missing directory with
    /// `create_if_missing = false`, IO errors, a column family this version does not know).
    pub fn open(path: impl AsRef<Path>, opts: RocksOptions) -> Result<RocksStore, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut db_opts = Options::default();
        db_opts.create_if_missing(opts.create_if_missing);
        db_opts.create_missing_column_families(true);
        // Recovery after a power loss replays the WAL up to the first damaged record: the store
        // comes back as a prefix of the writes, in order. The node relies on it for its
        // unsynced commit batches (`node` crate docs, "Durability").
        db_opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
        // Column families written once a view (safety, commit records) would otherwise keep
        // every write-ahead log alive until RocksDB's default cap of four times all write
        // buffers (4 GiB here): a node at 14,000 tx/s kept 1.1 GB of WAL after one minute, and
        // replays all of it after a kill -9. A cap forces those families to flush. Measured
        // on a chain aged 30 s at 14,000 tx/s, then 10,000 tx/s offered (three alternating
        // runs each): 256 MiB gave 9.7–9.9k tx/s committed, p99 0.68–0.79 s and 420 MB on
        // disk; 1 GiB gave 9.4–9.6k tx/s, p99 1.07–1.23 s and 810 MB (its larger memtables
        // cost more to search than the extra L0 files of the smaller cap).
        db_opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        // A synced write appends to the log and `fdatasync`s it. Appending grows the file, so
        // on ext4 every sync also commits the file's new size through the filesystem journal,
        // which all processes on the disk share. A recycled log is overwritten in place: its
        // syncs write data only. Measured here (4 writers of 1 KiB, `dd oflag=dsync`): 0.42 ms
        // per synced append against 0.18 ms per synced overwrite. Records of a recycled log
        // carry their log number, so point-in-time recovery stops at the first stale record as
        // at the end of a fresh log (RocksDB refuses recycling only for the two stricter
        // recovery modes).
        //
        // Recycling rules out writing the (unsynced) commit batches without the log: RocksDB
        // refuses `disableWAL` when logs are recycled. Measured without recycling (issue 10,
        // 4 validators, 30,000 tx/s of 512 B offered, three alternating 20 s runs each):
        // commit batches kept out of the log gave 12.2k / 13.6k / 12.1k tx/s committed
        // against 12.6k / 12.3k / 11.8k through it. No gain to pay for what it would cost: after
        // every kill -9 the commits in unflushed memtables would be lost and re-applied.
        db_opts.set_recycle_log_file_num(RECYCLED_WAL_FILES);
        db_opts.set_db_write_buffer_size(opts.memtable_budget_bytes);
        let cache = Cache::new_lru_cache(opts.block_cache_bytes);
        let cfs = Cf::ALL.iter().map(|cf| {
            let mut o = Options::default();
            table_options(&mut o, &cache, cf.point_lookups(), cf.cached_filters());
            let lz4 = opts.lz4_blocks && *cf == Cf::Blocks;
            let compression = if lz4 {
                DBCompressionType::Lz4
            } else {
                DBCompressionType::None
            };
            o.set_compression_type(compression);
            match cf {
                Cf::Blocks => with_blob_values(&mut o, compression, MIN_BLOCK_BLOB_BYTES, None),
                Cf::App => {
                    let pct = opts.app_blob_gc_percent.min(100);
                    let gc = (pct > 0).then(|| f64::from(pct) / 100.0);
                    with_blob_values(&mut o, compression, MIN_APP_BLOB_BYTES, gc)
                }
                _ => {}
            }
            ColumnFamilyDescriptor::new(cf.name(), o)
        });
        let db = DB::open_cf_descriptors(&db_opts, &path, cfs).map_err(|e| {
            let detail = e.clone().into_string();
            if e.kind() == ErrorKind::IOError && detail.to_ascii_lowercase().contains("lock") {
                StoreError::Locked {
                    path: path.clone(),
                    detail,
                }
            } else {
                backend("open", e)
            }
        })?;
        let mut store = RocksStore {
            db,
            cache,
            path,
            last_write_micros: AtomicU64::new(0),
            observer: None,
            writer: Mutex::new(()),
        };
        check_schema(&mut store, SCHEMA_VERSION)?;
        Ok(store)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Install `observer`, called with the [`WriteStats`] of every later successful write
    /// (replacing any previous observer).
    pub fn set_write_observer(&mut self, observer: WriteObserver) {
        self.observer = Some(observer);
    }

    /// [`crate::Store::write`] through a shared reference: apply `batch` atomically (all ops or
    /// none), durably before returning if `batch.sync`. Concurrent writers are serialised by
    /// the store's writer lock; readers are never blocked (module docs, "Shared access").
    /// Blocks the calling thread for the RocksDB write (≈ 0.2 ms when synced): call it off the
    /// async executor's workers or inside `tokio::task::block_in_place`.
    /// Errors: as [`crate::Store::write`] — [`StoreError::ConflictingCommit`] (nothing
    /// written), [`StoreError::Backend`].
    pub fn write_shared(&self, batch: WriteBatch) -> Result<(), StoreError> {
        // A poisoned lock guards no data: every write is atomic, so the store is consistent.
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match planned(self, batch)? {
            Some((raw, sync)) => self.apply_raw(raw, sync),
            None => Ok(()),
        }
    }

    /// **Testing only**: write raw bytes into a column family, bypassing every invariant (used
    /// to plant corrupt values and foreign schema versions). Synced.
    #[doc(hidden)]
    pub fn raw_put(&mut self, cf: Cf, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.apply(vec![RawOp::Put(cf, key.to_vec(), value.to_vec())], true)
    }

    /// **Testing only**: delete a key of a column family, bypassing every invariant (used to
    /// make a store look as if an older version had written it). Synced.
    #[doc(hidden)]
    pub fn raw_delete(&mut self, cf: Cf, key: &[u8]) -> Result<(), StoreError> {
        self.apply(vec![RawOp::Delete(cf, key.to_vec())], true)
    }

    /// Visit `cf` from `mode` until `visit` returns false.
    fn iterate(
        &self,
        cf: Cf,
        mode: IteratorMode<'_>,
        visit: &mut Visit<'_>,
    ) -> Result<(), StoreError> {
        for item in self.db.iterator_cf(self.handle(cf)?, mode) {
            let (k, v) = item.map_err(|e| backend("iterate", e))?;
            if !visit(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    /// The RocksDB handle, for the crate's read-only views of it ([`crate::EngineStats`]).
    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    pub(crate) fn block_cache(&self) -> &Cache {
        &self.cache
    }

    /// RocksDB's batched `MultiGet` of `keys` in `cf` with `ro`: one result per key, in order.
    fn multi_get(
        &self,
        cf: Cf,
        keys: &[&[u8]],
        ro: &ReadOptions,
    ) -> Vec<Result<Option<Vec<u8>>, StoreError>> {
        let h = match self.handle(cf) {
            Ok(h) => h,
            Err(e) => return keys.iter().map(|_| Err(e.clone())).collect(),
        };
        self.db
            .batched_multi_get_cf_opt(h, keys.iter().copied(), false, ro)
            .into_iter()
            .map(|r| {
                r.map(|v| v.map(|v| v.to_vec()))
                    .map_err(|e| backend("multi_get", e))
            })
            .collect()
    }

    fn handle(&self, cf: Cf) -> Result<&ColumnFamily, StoreError> {
        self.db.cf_handle(cf.name()).ok_or(StoreError::Backend {
            op: "column family",
            detail: format!("column family {} is not open", cf.name()),
        })
    }
}

impl Engine for RocksStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let h = self.handle(cf)?;
        self.db
            .get_pinned_cf(h, key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| backend("get", e))
    }

    fn get_many(&self, cf: Cf, keys: &[&[u8]]) -> Vec<Result<Option<Vec<u8>>, StoreError>> {
        self.multi_get(cf, keys, &ReadOptions::default())
    }

    fn get_many_uncovered(
        &self,
        cf: Cf,
        keys: &[&[u8]],
    ) -> Vec<Result<Option<Vec<u8>>, StoreError>> {
        let mut ro = ReadOptions::default();
        // Deprecated in the Rust binding ("no performance impact if DeleteRange is not used");
        // RocksDB 11.8 still honours it, and here DeleteRange is used: this is what lets
        // `MultiGet` consult the memtable bloom filter (see `Engine::get_many_uncovered`).
        #[allow(deprecated)]
        ro.set_ignore_range_deletions(true);
        self.multi_get(cf, keys, &ro)
    }

    fn scan(&self, cf: Cf, reverse: bool, visit: &mut Visit<'_>) -> Result<(), StoreError> {
        let mode = if reverse {
            IteratorMode::End
        } else {
            IteratorMode::Start
        };
        self.iterate(cf, mode, visit)
    }

    fn scan_from(&self, cf: Cf, start: &[u8], visit: &mut Visit<'_>) -> Result<(), StoreError> {
        self.iterate(cf, IteratorMode::From(start, Direction::Forward), visit)
    }

    fn apply(&mut self, ops: Vec<RawOp>, sync: bool) -> Result<(), StoreError> {
        self.apply_raw(ops, sync)
    }

    fn last_write_micros(&self) -> u64 {
        self.last_write_micros.load(Ordering::Relaxed)
    }
}

impl RocksStore {
    /// Apply raw ops in one RocksDB write batch (atomic), synced if `sync`.
    ///
    /// The ops are first sorted by (column family, key), stably, so two ops on one key keep
    /// their order and the batch means what it meant. Sorted, each memtable insert starts from
    /// the skip-list position of the one before it (RocksDB keeps that splice for sequential
    /// inserts) instead of searching from the top: a commit's transaction index and
    /// application writes have random keys (hashes), and their inserts were the largest item
    /// of a node's profile under load (17 % of its CPU at 14,000 tx/s).
    fn apply_raw(&self, mut ops: Vec<RawOp>, sync: bool) -> Result<(), StoreError> {
        ops.sort_by(|a, b| a.target().cmp(&b.target()));
        let mut wb = rocksdb::WriteBatch::default();
        for op in ops {
            match op {
                RawOp::Put(cf, k, v) => wb.put_cf(self.handle(cf)?, k, v),
                RawOp::Delete(cf, k) => wb.delete_cf(self.handle(cf)?, k),
                RawOp::DeleteRange(cf, start, end) => {
                    wb.delete_range_cf(self.handle(cf)?, start, end)
                }
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        let (ops, bytes) = (wb.len(), wb.size_in_bytes());
        let start = Instant::now();
        self.db
            .write_opt(wb, &wo)
            .map_err(|e| backend("write", e))?;
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_write_micros.store(micros, Ordering::Relaxed);
        if let Some(observer) = &self.observer {
            observer(WriteStats {
                micros,
                ops,
                bytes,
                sync,
            });
        }
        Ok(())
    }
}
