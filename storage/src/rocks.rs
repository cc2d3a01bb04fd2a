//! The RocksDB store.

use crate::SCHEMA_VERSION;
use crate::engine::{Cf, Engine, RawOp, Visit, check_schema};
use crate::error::StoreError;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, ErrorKind, IteratorMode, Options,
    WriteOptions,
};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Options for [`RocksStore::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RocksOptions {
    /// Create the database (and its column families) if the directory holds none. Default true.
    pub create_if_missing: bool,
    /// LZ4-compress the `blocks` column family (the only codec the workspace enables); every
    /// other column family is uncompressed. Default true.
    pub lz4_blocks: bool,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            create_if_missing: true,
            lz4_blocks: true,
        }
    }
}

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
pub type WriteObserver = Box<dyn Fn(WriteStats) + Send>;

/// A [`crate::Store`] on RocksDB (see the crate docs for the layout). Holds RocksDB's
/// exclusive lock on the directory until dropped.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
    last_write_micros: u64,
    observer: Option<WriteObserver>,
}

impl fmt::Debug for RocksStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RocksStore")
            .field("path", &self.path)
            .field("last_write_micros", &self.last_write_micros)
            .finish_non_exhaustive()
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
        let cfs = Cf::ALL.iter().map(|cf| {
            let mut o = Options::default();
            let lz4 = opts.lz4_blocks && *cf == Cf::Blocks;
            o.set_compression_type(if lz4 {
                DBCompressionType::Lz4
            } else {
                DBCompressionType::None
            });
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
            path,
            last_write_micros: 0,
            observer: None,
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

    /// **Testing only**: write raw bytes into a column family, bypassing every invariant (used
    /// to plant corrupt values and foreign schema versions). Synced.
    #[doc(hidden)]
    pub fn raw_put(&mut self, cf: Cf, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.apply(vec![RawOp::Put(cf, key.to_vec(), value.to_vec())], true)
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

    fn scan(&self, cf: Cf, reverse: bool, visit: &mut Visit<'_>) -> Result<(), StoreError> {
        let h = self.handle(cf)?;
        let mode = if reverse {
            IteratorMode::End
        } else {
            IteratorMode::Start
        };
        for item in self.db.iterator_cf(h, mode) {
            let (k, v) = item.map_err(|e| backend("iterate", e))?;
            if !visit(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    fn apply(&mut self, ops: Vec<RawOp>, sync: bool) -> Result<(), StoreError> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in ops {
            match op {
                RawOp::Put(cf, k, v) => wb.put_cf(self.handle(cf)?, k, v),
                RawOp::Delete(cf, k) => wb.delete_cf(self.handle(cf)?, k),
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
        self.last_write_micros = micros;
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

    fn last_write_micros(&self) -> u64 {
        self.last_write_micros
    }
}
