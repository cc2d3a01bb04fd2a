//! `bftnode_rocksdb_*` gauges: RocksDB's own figures ([`storage::EngineStats`]), read at each
//! scrape of `GET /metrics`. They tell whether the engine keeps up with the chain (level-0
//! files, compaction debt, write stalls) and where its memory and disk go, per column family.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use storage::EngineStats;

/// Labels of the per-column-family gauges: `cf` = the column family's name.
type CfLabels = Vec<(String, String)>;

/// One per-column-family gauge: metric name (after `bftnode_rocksdb_`), help, and the figure
/// it reports.
type CfGauge = (&'static str, &'static str, fn(&storage::CfStats) -> u64);

/// The per-column-family gauges, in one place so registering and setting them cannot drift.
const CF_GAUGES: [CfGauge; 7] = [
    (
        "l0_files",
        "SST files in level 0 (RocksDB slows writes at 20, stops them at 36)",
        |c| c.l0_files,
    ),
    (
        "pending_compaction_bytes",
        "Bytes compaction estimates it must rewrite to bring every level under its target",
        |c| c.pending_compaction_bytes,
    ),
    (
        "memtable_bytes",
        "Memtables, active and immutable, in bytes",
        |c| c.memtable_bytes,
    ),
    ("sst_bytes", "Live SST files, in bytes", |c| c.sst_bytes),
    ("blob_bytes", "Blob files, in bytes", |c| c.blob_bytes),
    (
        "table_readers_bytes",
        "Memory of SST readers outside the block cache (index and filter blocks), in bytes",
        |c| c.table_readers_bytes,
    ),
    ("estimated_keys", "Estimated number of keys", |c| {
        c.estimated_keys
    }),
];

/// The gauges; [`StorageGauges::sync`] sets them from a fresh [`EngineStats`].
#[derive(Default)]
pub struct StorageGauges {
    /// One family per entry of `CF_GAUGES`, same order.
    per_cf: Vec<Family<CfLabels, Gauge>>,
    delayed_write_rate: Gauge,
    write_stopped: Gauge,
    running_compactions: Gauge,
    block_cache: Gauge,
    block_cache_pinned: Gauge,
}

impl StorageGauges {
    /// Create the gauges and register them in `r`.
    pub fn register(r: &mut Registry) -> Self {
        let mut g = StorageGauges::default();
        for (name, help, _) in CF_GAUGES {
            let family = Family::<CfLabels, Gauge>::default();
            r.register(format!("bftnode_rocksdb_{name}"), help, family.clone());
            g.per_cf.push(family);
        }
        r.register(
            "bftnode_rocksdb_delayed_write_rate_bytes",
            "Rate RocksDB holds writes to while it slows them, in bytes/s (0: not slowed)",
            g.delayed_write_rate.clone(),
        );
        r.register(
            "bftnode_rocksdb_write_stopped",
            "1 while RocksDB stops writes (level 0 or compaction debt past its hard limit)",
            g.write_stopped.clone(),
        );
        r.register(
            "bftnode_rocksdb_running_compactions",
            "Compactions running now",
            g.running_compactions.clone(),
        );
        r.register(
            "bftnode_rocksdb_block_cache_bytes",
            "Bytes in the block cache shared by every column family (data blocks)",
            g.block_cache.clone(),
        );
        r.register(
            "bftnode_rocksdb_block_cache_pinned_bytes",
            "Bytes of the block cache pinned (in use, not evictable)",
            g.block_cache_pinned.clone(),
        );
        g
    }

    /// Set every gauge from `stats`.
    pub fn sync(&self, stats: &EngineStats) {
        let set = |g: &Gauge, v: u64| {
            g.set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        for c in &stats.cfs {
            let labels = vec![("cf".to_string(), c.cf.name().to_string())];
            for (family, (_, _, figure)) in self.per_cf.iter().zip(CF_GAUGES) {
                set(&family.get_or_create(&labels), figure(c));
            }
        }
        set(&self.delayed_write_rate, stats.delayed_write_rate);
        set(&self.write_stopped, u64::from(stats.write_stopped));
        set(&self.running_compactions, stats.running_compactions);
        set(&self.block_cache, stats.block_cache_bytes);
        set(&self.block_cache_pinned, stats.block_cache_pinned_bytes);
    }
}
