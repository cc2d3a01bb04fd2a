//! `config.toml`: the node's own settings ([`NodeConfig`]) and the command-line flags that
//! override them ([`ConfigOverrides`]).

use super::peers::{self, PeerAddress};
use super::sections::{
    BlockSection, ConsensusSection, LogFormat, MempoolSection, NetworkSection, RPC_LIMIT_CAP,
    RPC_TIMEOUT_CAP_MS, RpcSection, StorageSection, default_network_config, valid_allowed_host,
};
use super::{CONFIG_FILE, DB_DIR, FaultSection, GENESIS_FILE, KEY_FILE};
use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// The contents of `config.toml`. Unknown fields are rejected so typos do not pass silently.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Chain id; must equal the genesis file's.
    pub chain_id: String,
    /// Validator key file (relative to home).
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
    /// Genesis file (relative to home).
    #[serde(default = "default_genesis_file")]
    pub genesis_file: PathBuf,
    /// RocksDB directory (relative to home).
    #[serde(default = "default_db_path")]
    pub db_path: PathBuf,
    /// UDP address for QUIC.
    pub p2p_listen: SocketAddr,
    /// Where to dial the other validators: `"<public key hex>@<ip>:<port>"` each (CometBFT's
    /// persistent peers). Every other validator of the genesis needs one; an entry with our
    /// own key is allowed (one list can be pasted on every host) and must match
    /// `p2p_listen`. `bftnode genesis build` prints the list; `bftnode config set-peers`
    /// writes it. Checked by [`peers::check_list`] and at start by [`peers::dial_list`].
    #[serde(default)]
    pub persistent_peers: Vec<PeerAddress>,
    /// TCP address of the HTTP RPC server. Default `127.0.0.1:26700`, where the CLI's `--rpc`
    /// looks by default.
    #[serde(default = "default_rpc_listen")]
    pub rpc_listen: SocketAddr,
    /// Log format.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Log filter (`RUST_LOG` syntax), e.g. `info` or `node=debug,info`.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Consensus timings.
    #[serde(default)]
    pub consensus: ConsensusSection,
    /// Mempool limits.
    #[serde(default)]
    pub mempool: MempoolSection,
    /// Block limits.
    #[serde(default)]
    pub block: BlockSection,
    /// RPC server limits and Host allow-list.
    #[serde(default)]
    pub rpc: RpcSection,
    /// Local network policy.
    #[serde(default)]
    pub network: NetworkSection,
    /// Storage lifecycle (pruning).
    #[serde(default)]
    pub storage: StorageSection,
    /// Local fault policy (evidence pool bounds, local labels, health thresholds); the
    /// chain-wide knobs are in the genesis ([`super::Genesis::fault`]).
    #[serde(default)]
    pub fault: FaultSection,
}

/// TCP port of the default `rpc_listen` (on 127.0.0.1), and of the CLI's default `--rpc`.
pub const DEFAULT_RPC_PORT: u16 = 26700;

fn default_key_file() -> PathBuf {
    PathBuf::from(KEY_FILE)
}
fn default_genesis_file() -> PathBuf {
    PathBuf::from(GENESIS_FILE)
}
fn default_db_path() -> PathBuf {
    PathBuf::from(DB_DIR)
}
fn default_rpc_listen() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_RPC_PORT)
}
fn default_log_level() -> String {
    "info".to_string()
}

/// Maximum block payload the consensus core accepts (its `max_payload_bytes` default).
pub const MAX_BLOCK_BYTES_CAP: usize = 2 * 1024 * 1024;

impl NodeConfig {
    /// A configuration with defaults for `chain_id` and the two listen addresses.
    pub fn new(chain_id: &str, p2p_listen: SocketAddr, rpc_listen: SocketAddr) -> Self {
        NodeConfig {
            chain_id: chain_id.to_string(),
            key_file: default_key_file(),
            genesis_file: default_genesis_file(),
            db_path: default_db_path(),
            p2p_listen,
            persistent_peers: Vec::new(),
            rpc_listen,
            log_format: LogFormat::Text,
            log_level: default_log_level(),
            consensus: ConsensusSection::default(),
            mempool: MempoolSection::default(),
            block: BlockSection::default(),
            storage: StorageSection::default(),
            rpc: RpcSection::default(),
            network: NetworkSection::default(),
            fault: FaultSection::default(),
        }
    }

    /// Parse TOML text (`origin` names the file in errors) and validate it.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let cfg: NodeConfig =
            toml::from_str(text).with_context(|| format!("invalid config file {origin}"))?;
        cfg.validate()
            .with_context(|| format!("invalid config file {origin}"))?;
        Ok(cfg)
    }

    /// Read and validate `<home>/config.toml`.
    pub fn load(home: &Path) -> Result<Self> {
        let path = home.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Check value ranges and the `persistent_peers` list ([`peers::check_list`]); errors name
    /// the field.
    pub fn validate(&self) -> Result<()> {
        fn field(name: &str, ok: bool, why: impl std::fmt::Display) -> Result<()> {
            if ok {
                Ok(())
            } else {
                Err(anyhow!("field `{name}`: {why}"))
            }
        }
        field("chain_id", !self.chain_id.is_empty(), "must not be empty")?;
        let c = &self.consensus;
        field("consensus.delta_ms", c.delta_ms >= 1, "must be ≥ 1")?;
        field(
            "consensus.timeout_base_ms",
            c.timeout_base_ms >= c.delta_ms,
            "must be ≥ consensus.delta_ms (5Δ recommended)",
        )?;
        field(
            "consensus.timeout_max_ms",
            c.timeout_max_ms >= c.timeout_base_ms,
            "must be ≥ consensus.timeout_base_ms",
        )?;
        field("consensus.resend_ms", c.resend_ms >= 1, "must be ≥ 1")?;
        field(
            "consensus.double_sign_check_views",
            c.double_sign_check_views <= consensus::MAX_CHECK_VIEWS,
            "must be ≤ 64 (certified views)",
        )?;
        field(
            "consensus.double_sign_window",
            c.double_sign_window <= 10_000,
            "must be ≤ 10000 (views)",
        )?;
        field("mempool.max_txs", self.mempool.max_txs >= 1, "must be ≥ 1")?;
        field(
            "mempool.max_bytes",
            self.mempool.max_bytes >= 1024,
            "must be ≥ 1024",
        )?;
        field(
            "block.max_block_bytes",
            (1024..=MAX_BLOCK_BYTES_CAP).contains(&self.block.max_block_bytes),
            "must be between 1024 and 2097152 (the consensus payload cap)",
        )?;
        field(
            "block.proposal_budget_ms",
            self.block.proposal_budget_ms <= self.consensus.timeout_base_ms,
            "must be 0 (off) or at most consensus.timeout_base_ms",
        )?;
        let retain = self.storage.retain_heights;
        field(
            "storage.retain_heights",
            retain == 0 || retain >= super::sections::MIN_RETAIN_HEIGHTS,
            "must be 0 (keep every block) or ≥ 10000 (heights; see docs/operating.md, \"Pruning\")",
        )?;
        field(
            "storage.app_blob_gc_percent",
            self.storage.app_blob_gc_percent <= 100,
            "must be between 0 (off) and 100 (percent of the oldest blob files)",
        )?;
        let (min_cache, min_memtable) = super::sections::MIN_STORAGE_MEMORY_MB;
        let max = super::sections::MAX_STORAGE_MEMORY_MB;
        for (name, min, value) in [
            (
                "storage.block_cache_mb",
                min_cache,
                self.storage.block_cache_mb,
            ),
            (
                "storage.memtable_mb",
                min_memtable,
                self.storage.memtable_mb,
            ),
        ] {
            field(
                name,
                (min..=max).contains(&value),
                format_args!("must be between {min} and {max} (MiB)"),
            )?;
        }
        let r = &self.rpc;
        let cap = RPC_LIMIT_CAP as u64;
        for (name, value, max) in [
            (
                "rpc.request_timeout_ms",
                r.request_timeout_ms,
                RPC_TIMEOUT_CAP_MS,
            ),
            (
                "rpc.header_read_timeout_ms",
                r.header_read_timeout_ms,
                RPC_TIMEOUT_CAP_MS,
            ),
            (
                "rpc.max_concurrent_requests",
                r.max_concurrent_requests as u64,
                cap,
            ),
            ("rpc.max_connections", r.max_connections as u64, cap),
        ] {
            field(
                name,
                (1..=max).contains(&value),
                format!("must be between 1 and {max}"),
            )?;
        }
        field(
            "rpc.health_max_commit_age_ms",
            r.health_max_commit_age_ms <= 86_400_000,
            "must be at most 86400000 (one day)",
        )?;
        let mut net = default_network_config();
        self.network.apply_to(&mut net);
        net.validate()
            .map_err(|e| anyhow!("section `[network]`: {e}"))?;
        self.fault.validate()?;
        peers::check_list(&self.persistent_peers)?;
        if let Some(bad) = r.allowed_hosts.iter().find(|h| !valid_allowed_host(h)) {
            bail!(
                "field `rpc.allowed_hosts`: {bad:?} is not a host name or IP address without a \
                 port (or `*`)"
            );
        }
        field(
            "log_level",
            // Regexes off, as in `init_logging`: a field-value regex is compiled to a DFA whose
            // size is exponential in the pattern (fuzz target `config_toml`).
            tracing_subscriber::EnvFilter::builder()
                .with_regex(false)
                .parse(&self.log_level)
                .is_ok(),
            "not a valid log filter",
        )?;
        Ok(())
    }

    /// Serialize to TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).context("serializing config")
    }

    /// Apply command-line overrides.
    pub fn apply(&mut self, o: &ConfigOverrides) {
        if let Some(a) = o.p2p_listen {
            self.p2p_listen = a;
        }
        if let Some(a) = o.rpc_listen {
            self.rpc_listen = a;
        }
        if let Some(p) = &o.db_path {
            self.db_path = p.clone();
        }
        if let Some(f) = o.log_format {
            self.log_format = f;
        }
        if let Some(l) = &o.log_level {
            self.log_level = l.clone();
        }
        if let Some(v) = o.delta_ms {
            self.consensus.delta_ms = v;
        }
        if let Some(v) = o.timeout_base_ms {
            self.consensus.timeout_base_ms = v;
        }
        if let Some(v) = o.timeout_max_ms {
            self.consensus.timeout_max_ms = v;
        }
        if let Some(v) = o.resend_ms {
            self.consensus.resend_ms = v;
        }
        if let Some(v) = o.mempool_max_txs {
            self.mempool.max_txs = v;
        }
        if let Some(v) = o.mempool_max_bytes {
            self.mempool.max_bytes = v;
        }
        if let Some(v) = o.max_block_bytes {
            self.block.max_block_bytes = v;
        }
    }
}

/// Command-line flags that override `config.toml` values (`None` = keep the file's value).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigOverrides {
    /// Override `p2p_listen`.
    pub p2p_listen: Option<SocketAddr>,
    /// Override `rpc_listen`.
    pub rpc_listen: Option<SocketAddr>,
    /// Override `db_path`.
    pub db_path: Option<PathBuf>,
    /// Override `log_format`.
    pub log_format: Option<LogFormat>,
    /// Override `log_level`.
    pub log_level: Option<String>,
    /// Override `consensus.delta_ms`.
    pub delta_ms: Option<u64>,
    /// Override `consensus.timeout_base_ms`.
    pub timeout_base_ms: Option<u64>,
    /// Override `consensus.timeout_max_ms`.
    pub timeout_max_ms: Option<u64>,
    /// Override `consensus.resend_ms`.
    pub resend_ms: Option<u64>,
    /// Override `mempool.max_txs`.
    pub mempool_max_txs: Option<usize>,
    /// Override `mempool.max_bytes`.
    pub mempool_max_bytes: Option<usize>,
    /// Override `block.max_block_bytes`.
    pub max_block_bytes: Option<usize>,
}
