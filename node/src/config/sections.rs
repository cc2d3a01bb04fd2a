//! The sections of `config.toml` besides its top-level fields: `[consensus]`, `[mempool]`,
//! `[block]`, `[rpc]` and `[network]` (`[fault]` is [`crate::fault_params::FaultSection`]).

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Consensus timing settings (all in milliseconds), copied into [`consensus::Config`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusSection {
    /// Δ_est, the estimated message delay bound.
    pub delta_ms: u64,
    /// Base view timeout τ_base; must be ≥ Δ, should be ≥ 5Δ (the HotStuff-2 commit path is
    /// five message delays). Default 500 ms = 5 × the default Δ: a crashed leader costs one
    /// τ_base before the next view (measured on loopback at 10,000 tx/s: healthy views take
    /// ~17 ms, so 500 ms is a 30× margin). Raise it with Δ on a WAN.
    pub timeout_base_ms: u64,
    /// Cap on the view timeout.
    pub timeout_max_ms: u64,
    /// Period of re-sending our timeout while stuck in a view.
    pub resend_ms: u64,
    /// Double-sign check at start (PROTOCOL.md §4.10), in certified views: after every start,
    /// sign nothing until this many certified views above our safety record carried no
    /// signature of ours, or `timeout_base_ms` passed without a new certificate. 0 disables
    /// it (only for a chain where no copy of this key can ever run). Range 0..=64.
    pub double_sign_check_views: u64,
    /// Key in use elsewhere (PROTOCOL.md §4.9), in views: after a certificate shows our key
    /// signing where this node did not, sign nothing for this many views past it. 0 disables
    /// it. Range 0..=10 000.
    pub double_sign_window: u64,
}

impl Default for ConsensusSection {
    fn default() -> Self {
        ConsensusSection {
            delta_ms: 100,
            timeout_base_ms: 500,
            timeout_max_ms: 30_000,
            resend_ms: 1_000,
            double_sign_check_views: 8,
            double_sign_window: 20,
        }
    }
}

/// Mempool limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolSection {
    /// Maximum number of pending transactions (from every source). Default 5,000: about a
    /// quarter of a second of the 4-validator testnet's peak (about 18,600 tx/s of 512 B on
    /// 2 cores), so past the peak the excess is refused at once (HTTP 429 `mempool full`)
    /// instead of queueing. Past the peak this cap, not the queueing-delay rule
    /// (`max_queue_delay_ms`), is what binds: at 40,000 offered, p50 was about 340 ms with a
    /// 500 or a 300 ms delay target alike. Measured on fresh `testnet/up.sh` networks with
    /// one `bftnode load --rate 40000 --duration 20` each (issue 10, two alternating runs
    /// each): 8,000 gave
    /// 21.3k / 22.8k tx/s, p99 648 / 975 ms; 5,000 gave 21.3k / 22.1k tx/s, p99 567 / 616 ms.
    /// History: at a peak of 8,500 tx/s, 200,000 pending gave p50 26 s at 25,000 offered.
    /// On a slower sitting (peak about 13,000), at 30,000 offered: 5,000 gave 13.6k–14.0k
    /// tx/s, p99 1.03–1.25 s (3 runs); 3,500 gave 12.4k–13.1k, p99 0.90–1.00 s (3); 2,500 gave
    /// 12.2k, p99 0.71–0.81 s (2). A smaller pool means smaller blocks: the cap trades
    /// throughput for latency, and the default keeps throughput.
    pub max_txs: usize,
    /// Maximum total encoded size of pending transactions, in bytes.
    pub max_bytes: usize,
    /// Queueing-delay target, in ms: once even the quickest of the transactions that left the
    /// queue (were first carried by a stored block) in each of three 100 ms intervals in a row
    /// had waited longer than this since it reached this node (a standing queue, not a backlog
    /// draining after an outage), this node's RPC clients are refused at once (HTTP 429
    /// `mempool congested`), and then after any such interval for the next second; a second
    /// without blocks carrying transactions lifts the refusal (module `queue_delay`). The
    /// consensus pipeline after inclusion does not count, so the target does not grow with
    /// link delay. 0 turns it off. Default 500: at twice the peak rate it keeps accepted
    /// transactions' p99 under 1 s (issue 10 note).
    pub max_queue_delay_ms: u64,
}

impl Default for MempoolSection {
    fn default() -> Self {
        MempoolSection {
            max_txs: 5_000,
            max_bytes: 128 * 1024 * 1024,
            max_queue_delay_ms: crate::queue_delay::DEFAULT_TARGET_MS,
        }
    }
}

/// Block limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlockSection {
    /// Maximum encoded payload of one block, in bytes (≤ 2 MiB, the consensus cap).
    pub max_block_bytes: usize,
    /// Opt-in, for lossy links: how long our proposal may take to reach a quorum, in ms.
    /// When set, the payload is capped at the measured goodput of the links to a quorum times
    /// this budget ([`crate::proposal_cap`]); `0` (the default) caps by `max_block_bytes`
    /// only. At most `consensus.timeout_base_ms`; a quarter of it is a good start. Measured
    /// (docs/operating.md §9, "Long and lossy links"): at 50 ms one-way and 1 % loss it
    /// commits more and keeps latency in seconds rather than tens of seconds, but on a clean
    /// link it refuses load the chain could carry, because a bursty sender's goodput samples are
    /// below the link's capacity.
    pub proposal_budget_ms: u64,
}

impl Default for BlockSection {
    fn default() -> Self {
        BlockSection {
            max_block_bytes: 1024 * 1024,
            proposal_budget_ms: 0,
        }
    }
}

/// Smallest non-zero `[storage] retain_heights` (heights): far above what a restart replays
/// (1,256 blocks), and a few minutes of a loaded chain (about 100 heights/s) or hours of an
/// idle one (about 2 heights/s). Enforced by [`crate::config::NodeConfig`]'s validation; the
/// pruner re-exports it.
pub const MIN_RETAIN_HEIGHTS: u64 = 10_000;

/// Storage lifecycle and memory (section `[storage]`): how much committed history this node
/// keeps and how much memory RocksDB may use for reads and writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// Committed heights whose block bodies are kept below the tip; older bodies are deleted
    /// ([`crate::pruner`]). `0` (the default) keeps every block: an archive node, which is
    /// what lets a validator that was away longer than everyone's retention catch up (there
    /// is no state sync). Otherwise at least [`MIN_RETAIN_HEIGHTS`]. The
    /// height → id index, the transaction index and the application state are never pruned.
    pub retain_heights: u64,
    /// RocksDB's block cache, in MiB (at least 8): the data blocks that reads keep in memory,
    /// shared by every column family ([`storage::RocksOptions::block_cache_bytes`]). Index and
    /// filter blocks are held outside it and grow with the database (see docs/operating.md,
    /// "Memory"). Default 64.
    pub block_cache_mb: u64,
    /// Bound on RocksDB's memtables (writes not yet flushed to SST files), in MiB (at least
    /// 16; [`storage::RocksOptions::memtable_budget_bytes`]). Default 256.
    pub memtable_mb: u64,
    /// Garbage collection of the application's values of 256 bytes and more, as the percentage
    /// (0–100) of the oldest blob files whose live values compaction moves so the files can be
    /// deleted ([`storage::RocksOptions::app_blob_gc_percent`]). 0 (the default): off, and an
    /// overwritten or deleted value stays on disk. Worth turning on (25 is RocksDB's usual
    /// cutoff) on a pruning node whose workload overwrites keys; it costs CPU in proportion to
    /// the live values moved (docs/operating.md, "Disk").
    pub app_blob_gc_percent: u8,
}

/// Smallest `[storage] block_cache_mb` and `memtable_mb` accepted, in MiB.
pub const MIN_STORAGE_MEMORY_MB: (u64, u64) = (8, 16);

/// Largest `[storage] block_cache_mb` or `memtable_mb` accepted, in MiB (1 TiB: a typo guard).
pub const MAX_STORAGE_MEMORY_MB: u64 = 1 << 20;

impl Default for StorageSection {
    fn default() -> Self {
        const MIB: usize = 1024 * 1024;
        StorageSection {
            retain_heights: 0,
            block_cache_mb: (storage::DEFAULT_BLOCK_CACHE_BYTES / MIB) as u64,
            memtable_mb: (storage::DEFAULT_MEMTABLE_BUDGET_BYTES / MIB) as u64,
            app_blob_gc_percent: 0,
        }
    }
}

impl StorageSection {
    /// The [`storage::RocksOptions`] this section asks for (the others at their defaults).
    pub fn rocks_options(&self) -> storage::RocksOptions {
        let mib = |mb: u64| usize::try_from(mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
        storage::RocksOptions {
            block_cache_bytes: mib(self.block_cache_mb),
            memtable_budget_bytes: mib(self.memtable_mb),
            app_blob_gc_percent: self.app_blob_gc_percent,
            ..storage::RocksOptions::default()
        }
    }
}

/// Limits and the Host allow-list of the HTTP RPC server (section `[rpc]`).
///
/// The server refuses a request whose `Host` header names anything but a loopback name or
/// address (`localhost`, `127.0.0.0/8`, `[::1]`), the IP of `rpc_listen` (any IP address when
/// `rpc_listen` is unspecified, e.g. `0.0.0.0`) or one of [`RpcSection::allowed_hosts`]: a web page
/// cannot reach a loopback RPC through DNS rebinding. See [`crate::rpc_guard`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RpcSection {
    /// Further host names (or IP addresses) accepted in the `Host` header, without a port,
    /// compared case-insensitively; `"*"` accepts any host and so turns the check off (only
    /// behind a proxy that checks it). Default: none.
    pub allowed_hosts: Vec<String>,
    /// Longest time, in milliseconds, from a request's headers to its response (reading the
    /// body included); a request that takes longer gets 408. Default 10,000.
    pub request_timeout_ms: u64,
    /// Longest time, in milliseconds, a connection may take to send a request's headers, and
    /// the longest an idle keep-alive connection is kept open. Default 30,000.
    pub header_read_timeout_ms: u64,
    /// Requests handled at once; a request beyond this gets 503 at once. Default 128.
    pub max_concurrent_requests: usize,
    /// Open connections; further connections wait in the kernel's accept queue until one
    /// closes. Default 256.
    pub max_connections: usize,
    /// `GET /health` (and `bftnode health`) answers unhealthy when this node has not committed
    /// a block for longer than this, in ms (since start, before its first commit). An idle
    /// chain still commits empty blocks, so only a stalled or cut-off node trips it. 0 turns
    /// the check off. Default 30,000; at most one day.
    pub health_max_commit_age_ms: u64,
}

impl Default for RpcSection {
    fn default() -> Self {
        RpcSection {
            allowed_hosts: Vec::new(),
            request_timeout_ms: 10_000,
            header_read_timeout_ms: 30_000,
            max_concurrent_requests: 128,
            max_connections: 256,
            health_max_commit_age_ms: 30_000,
        }
    }
}

/// Local network policy (section `[network]`): connection admission, rate limits, bans,
/// redial, queues. Every field defaults to [`network::NetworkConfig::new`]'s value and has the
/// unit and meaning documented on the field of the same name of [`network::NetworkConfig`]; the
/// ranges are checked by [`network::NetworkConfig::validate`]. Protocol caps that every
/// validator must agree on (frame, gossip and sync response sizes) are not configurable here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// Sync request timeout, ms (default 10,000).
    pub sync_timeout_ms: u64,
    /// Per-peer inbound frames per second (default 5,000).
    pub rate_limit_msgs_per_sec: u32,
    /// Per-peer frame burst (default 10,000).
    pub rate_limit_burst: u32,
    /// Misbehaviour score that bans a peer (default 100).
    pub ban_score: i32,
    /// Score points forgiven per second (default 1).
    pub score_decay_per_sec: i32,
    /// Ban length, ms (default 30,000).
    pub ban_cooldown_ms: u64,
    /// First redial delay, ms (default 100).
    pub redial_min_ms: u64,
    /// Largest redial delay, ms (default 5,000).
    pub redial_max_ms: u64,
    /// Unacknowledged consensus frames per peer (default 512).
    pub max_inflight_per_peer: usize,
    /// Unacknowledged consensus bytes per peer (default 64 MiB).
    pub max_inflight_bytes_per_peer: usize,
    /// Inbound consensus/sync bytes queued for the node (default 64 MiB).
    pub event_queue_bytes: usize,
    /// Inbound gossip bytes queued for the node (default 16 MiB).
    pub gossip_queue_bytes: usize,
    /// Connections of non-validators, in total (default 32).
    pub max_strangers: usize,
    /// Connections of non-validators per IP address (default 4).
    pub max_strangers_per_ip: usize,
    /// A non-validator's connection is closed this long after it opened, ms (default 10,000).
    pub stranger_idle_ms: u64,
    /// A validator connection shorter than this is a flap, ms (default 10,000).
    pub stable_connection_ms: u64,
    /// Per-author gossip and transaction-push budget, bytes per second (default 16 MiB/s).
    pub gossip_bytes_per_sec: u32,
    /// Per-author gossip burst, bytes (default 16 MiB).
    pub gossip_burst_bytes: u32,
    /// Ping interval, ms (default 2,000).
    pub ping_interval_ms: u64,
}

/// Calls `$m!` with the names of the `[network]` fields: the one list of them besides the
/// struct itself.
macro_rules! with_network_fields {
    ($m:ident) => {
        $m!(
            sync_timeout_ms,
            rate_limit_msgs_per_sec,
            rate_limit_burst,
            ban_score,
            score_decay_per_sec,
            ban_cooldown_ms,
            redial_min_ms,
            redial_max_ms,
            max_inflight_per_peer,
            max_inflight_bytes_per_peer,
            event_queue_bytes,
            gossip_queue_bytes,
            max_strangers,
            max_strangers_per_ip,
            stranger_idle_ms,
            stable_connection_ms,
            gossip_bytes_per_sec,
            gossip_burst_bytes,
            ping_interval_ms
        )
    };
}

/// The network defaults, for an address and validator set that do not matter here.
pub(super) fn default_network_config() -> network::NetworkConfig {
    let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    network::NetworkConfig::new([0; 32], any, Vec::new())
}

impl Default for NetworkSection {
    fn default() -> Self {
        let d = default_network_config();
        macro_rules! build {
            ($($f:ident),*) => { NetworkSection { $($f: d.$f),* } };
        }
        with_network_fields!(build)
    }
}

impl NetworkSection {
    /// Sets `cfg`'s local-policy fields to this section's values.
    pub fn apply_to(&self, cfg: &mut network::NetworkConfig) {
        macro_rules! copy {
            ($($f:ident),*) => { $(cfg.$f = self.$f;)* };
        }
        with_network_fields!(copy);
    }
}

/// Upper bound of `rpc.max_connections` and `rpc.max_concurrent_requests`.
pub const RPC_LIMIT_CAP: usize = 65_536;
/// Upper bound, in milliseconds, of `rpc.request_timeout_ms` and `rpc.header_read_timeout_ms`
/// (one hour).
pub const RPC_TIMEOUT_CAP_MS: u64 = 3_600_000;

/// Whether `host` is acceptable in `rpc.allowed_hosts`: `*`, a DNS name (letters, digits, `-`,
/// `_`, dots; at most 253 characters), an IPv4 address or a bracketed IPv6 address, with no port.
pub(super) fn valid_allowed_host(host: &str) -> bool {
    if host == "*" {
        return true;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !host.starts_with('.')
        && !host.contains("..")
}
