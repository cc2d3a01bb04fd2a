//! Node configuration: `config.toml` ([`NodeConfig`]), the chain's `genesis.json` ([`Genesis`]),
//! the validator key file ([`KeyFile`]), command-line overrides ([`ConfigOverrides`]) and the
//! helpers the CLI uses to create homes ([`init_home`], [`generate_testnet`]).
//!
//! A home directory looks like:
//!
//! ```text
//! <home>/config.toml     node settings (this module)
//! <home>/genesis.json    chain id, epoch, validators (shared by every node of the chain)
//! <home>/key.json        ed25519 secret seed, mode 0600
//! <home>/data/           RocksDB
//! ```
//!
//! Relative paths in `config.toml` are resolved against the home directory. Every loading error
//! names the file, the field and the reason.

pub use crate::fault_params::{ChainFaultParams, FaultSection};
use anyhow::{Context, Result, anyhow, bail};
use consensus::{Epoch, PrivateKey, PublicKey, ValidatorIndex, ValidatorInfo, ValidatorSet};
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// File name of the node configuration inside a home directory.
pub const CONFIG_FILE: &str = "config.toml";
/// Default genesis file name.
pub const GENESIS_FILE: &str = "genesis.json";
/// Default key file name.
pub const KEY_FILE: &str = "key.json";
/// Default database directory name.
pub const DB_DIR: &str = "data";

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
    pub max_txs: usize,
    /// Maximum total encoded size of pending transactions, in bytes.
    pub max_bytes: usize,
    /// Queueing-delay target, in ms: once even the quickest of the transactions committed in
    /// each of three 100 ms intervals with commits in a row waited longer than this since it
    /// reached this node (a standing queue, not a backlog draining after an outage), this
    /// node's RPC clients are refused at once (HTTP 429 `mempool congested`), and then after
    /// any such interval for the next second; a second without commits lifts the refusal
    /// (module `queue_delay`). 0 turns it off. Default 500: at twice the peak rate it keeps
    /// accepted transactions' p99 under 1 s (issue 10 note).
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
}

impl Default for BlockSection {
    fn default() -> Self {
        BlockSection {
            max_block_bytes: 1024 * 1024,
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
}

impl Default for RpcSection {
    fn default() -> Self {
        RpcSection {
            allowed_hosts: Vec::new(),
            request_timeout_ms: 10_000,
            header_read_timeout_ms: 30_000,
            max_concurrent_requests: 128,
            max_connections: 256,
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
fn default_network_config() -> network::NetworkConfig {
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
fn valid_allowed_host(host: &str) -> bool {
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
    /// TCP address of the HTTP RPC server (loopback by default).
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
    /// Local fault policy (evidence pool bounds, local labels, health thresholds); the
    /// chain-wide knobs are in the genesis ([`Genesis::fault`]).
    #[serde(default)]
    pub fault: FaultSection,
}

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
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8000)
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
            rpc_listen,
            log_format: LogFormat::Text,
            log_level: default_log_level(),
            consensus: ConsensusSection::default(),
            mempool: MempoolSection::default(),
            block: BlockSection::default(),
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

    /// Check value ranges; errors name the field.
    pub fn validate(&self) -> Result<()> {
        fn field(name: &str, ok: bool, why: &str) -> Result<()> {
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
                &format!("must be between 1 and {max}"),
            )?;
        }
        let mut net = default_network_config();
        self.network.apply_to(&mut net);
        net.validate()
            .map_err(|e| anyhow!("section `[network]`: {e}"))?;
        self.fault.validate()?;
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

/// One validator in `genesis.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    /// ed25519 public key, 64 hex characters.
    pub public_key: PublicKey,
    /// Voting power (≥ 1).
    pub power: u64,
    /// UDP address of its QUIC listener.
    pub p2p_addr: SocketAddr,
    /// Its RPC address (informational, used by tools).
    pub rpc_addr: SocketAddr,
}

/// The chain's genesis: identical on every node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Chain id (part of every signature's domain).
    pub chain_id: String,
    /// Epoch of the validator set.
    pub epoch: u64,
    /// Genesis time, Unix milliseconds (informational).
    pub genesis_time_ms: u64,
    /// The validators (any order; indices follow public-key order).
    pub validators: Vec<GenesisValidator>,
    /// Chain-wide fault-policy parameters (optional, defaults when absent). Non-default values
    /// enter the signing domain ([`ChainFaultParams::domain_chain_id`]).
    #[serde(default)]
    pub fault: ChainFaultParams,
}

impl Genesis {
    /// Parse and validate JSON text (`origin` names the file in errors).
    pub fn from_json(text: &str, origin: &str) -> Result<Self> {
        let g: Genesis =
            serde_json::from_str(text).with_context(|| format!("invalid genesis file {origin}"))?;
        g.validator_set()
            .with_context(|| format!("invalid genesis file {origin}"))?;
        Ok(g)
    }

    /// Read and validate a genesis file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read genesis file {}", path.display()))?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Write as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("serializing genesis")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write genesis file {}", path.display()))
    }

    /// The validator set (errors name the field), signing for
    /// [`Genesis::domain_chain_id`]. Also checks the `fault` parameters' ranges and refuses
    /// two validators with the same `p2p_addr`, naming both (by position in `validators` and
    /// public key).
    pub fn validator_set(&self) -> Result<ValidatorSet> {
        if self.chain_id.is_empty() {
            bail!("field `chain_id`: must not be empty");
        }
        self.fault.validate()?;
        let infos = self
            .validators
            .iter()
            .map(|v| ValidatorInfo {
                public_key: v.public_key,
                power: v.power,
            })
            .collect();
        let set = ValidatorSet::new(&self.domain_chain_id(), Epoch(self.epoch), infos)
            .map_err(|e| anyhow!("field `validators`: {e}"))?;
        let mut first_at = std::collections::HashMap::with_capacity(self.validators.len());
        for (i, v) in self.validators.iter().enumerate() {
            if let Some(j) = first_at.insert(v.p2p_addr, i) {
                bail!(
                    "field `validators`: validators[{j}] (public key {}) and validators[{i}] \
                     (public key {}) have the same p2p_addr {}",
                    hex::encode(self.validators[j].public_key.0),
                    hex::encode(v.public_key.0),
                    v.p2p_addr
                );
            }
        }
        Ok(set)
    }

    /// The chain id of the signing domain: `chain_id`, extended by a digest of the `fault`
    /// parameters that differ from their defaults ([`ChainFaultParams::domain_chain_id`]).
    pub fn domain_chain_id(&self) -> String {
        self.fault.domain_chain_id(&self.chain_id)
    }

    /// The policy configuration for this chain: its `fault` parameters and the node's local
    /// `[fault]` section, over [`fault::FaultConfig::default`].
    pub fn fault_config(&self, local: &FaultSection) -> fault::FaultConfig {
        crate::fault_params::fault_config(&self.fault, local)
    }

    /// The genesis entry of validator `index` of `vs` (indices follow public-key order).
    pub fn entry(&self, vs: &ValidatorSet, index: ValidatorIndex) -> Option<&GenesisValidator> {
        let pk = vs.public_key(index)?;
        self.validators.iter().find(|v| &v.public_key == pk)
    }
}

/// The validator key file: the ed25519 secret seed (and its public key, for humans).
///
/// `Debug` prints `secret_seed: <redacted>`; both strings are overwritten with zeros when the
/// value is dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Public key, 64 hex characters (checked against the seed when loading).
    pub public_key: String,
    /// Secret seed, 64 hex characters.
    pub secret_seed: String,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile")
            .field("public_key", &self.public_key)
            .field("secret_seed", &format_args!("<redacted>"))
            .finish()
    }
}

/// Load a key file: JSON `{public_key, secret_seed}` or a bare 64-hex-character seed.
/// Refuses files readable by group or others (Unix). The file's text and the decoded seed are
/// zeroed before this returns.
pub fn load_key(path: &Path) -> Result<PrivateKey> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?,
    );
    check_key_permissions(path)?;
    let trimmed = text.trim();
    let key_file: Option<KeyFile> = if trimmed.starts_with('{') {
        Some(
            serde_json::from_str(trimmed)
                .with_context(|| format!("invalid key file {}", path.display()))?,
        )
    } else {
        None
    };
    let seed_hex = key_file
        .as_ref()
        .map_or(trimmed, |kf| kf.secret_seed.as_str());
    let bytes = Zeroizing::new(hex::decode(seed_hex.trim()).map_err(|e| {
        anyhow!(
            "invalid key file {}: field `secret_seed`: not hex: {e}",
            path.display()
        )
    })?);
    let seed = Zeroizing::new(<[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        anyhow!(
            "invalid key file {}: field `secret_seed`: must be 32 bytes (64 hex characters)",
            path.display()
        )
    })?);
    let key = PrivateKey::from_seed(*seed);
    if let Some(kf) = &key_file
        && !kf
            .public_key
            .eq_ignore_ascii_case(&hex::encode(key.public().0))
    {
        bail!(
            "invalid key file {}: field `public_key` does not match the secret seed",
            path.display()
        );
    }
    Ok(key)
}

#[cfg(unix)]
fn check_key_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot stat key file {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "key file {} has mode {:o}; it must not be readable by group or others (chmod 600)",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_key_permissions(_path: &Path) -> Result<()> {
    Ok(())
}

/// Write a fresh random key to `path` with mode 0600 (fails if the file exists).
pub fn generate_key(path: &Path) -> Result<PrivateKey> {
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(rand::random());
    let key = PrivateKey::from_seed(*seed);
    write_key(path, &key)?;
    Ok(key)
}

/// Write `key` to `path` with mode 0600 (fails if the file exists).
pub fn write_key(path: &Path, key: &PrivateKey) -> Result<()> {
    let seed = Zeroizing::new(key.seed());
    let kf = KeyFile {
        public_key: hex::encode(key.public().0),
        secret_seed: hex::encode(seed.as_slice()),
    };
    // Room for the whole file up front, so no reallocation leaves a copy of the seed behind.
    let mut text = Zeroizing::new(Vec::with_capacity(512));
    serde_json::to_writer_pretty(&mut *text, &kf)?;
    text.push(b'\n');
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write as _;
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    f.write_all(&text)
        .with_context(|| format!("cannot write key file {}", path.display()))?;
    f.sync_all()?;
    Ok(())
}

/// Everything needed to start a node, loaded and cross-checked.
#[derive(Debug)]
pub struct Loaded {
    /// Home directory.
    pub home: PathBuf,
    /// The configuration (overrides applied).
    pub config: NodeConfig,
    /// The genesis.
    pub genesis: Genesis,
    /// The validator set built from the genesis.
    pub validators: ValidatorSet,
    /// Our signing key.
    pub key: PrivateKey,
    /// Our index in the validator set.
    pub index: ValidatorIndex,
    /// Absolute database path.
    pub db_path: PathBuf,
}

/// Resolve `p` against `home` unless absolute.
pub fn resolve(home: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        home.join(p)
    }
}

/// Load config, overrides, genesis and key from `home` and check they agree.
pub fn load_home(home: &Path, overrides: &ConfigOverrides) -> Result<Loaded> {
    let mut config = NodeConfig::load(home)?;
    config.apply(overrides);
    config
        .validate()
        .context("invalid configuration after command-line overrides")?;
    let genesis = Genesis::load(&resolve(home, &config.genesis_file))?;
    if genesis.chain_id != config.chain_id {
        bail!(
            "config field `chain_id` is {:?} but the genesis file says {:?}",
            config.chain_id,
            genesis.chain_id
        );
    }
    let validators = genesis.validator_set()?;
    let key = load_key(&resolve(home, &config.key_file))?;
    let index = validators.index_of(&key.public()).ok_or_else(|| {
        anyhow!(
            "our public key {} is not a validator in the genesis file",
            hex::encode(key.public().0)
        )
    })?;
    let ours = genesis
        .entry(&validators, index)
        .ok_or_else(|| anyhow!("genesis entry missing for our validator index {}", index.0))?;
    if !listen_matches(config.p2p_listen, ours.p2p_addr) {
        bail!(
            "config field `p2p_listen` is {} but our genesis entry (public key {}) has p2p_addr \
             {}, where the other validators dial us; listen on that port (an unspecified IP \
             such as 0.0.0.0 matches any address)",
            config.p2p_listen,
            hex::encode(ours.public_key.0),
            ours.p2p_addr
        );
    }
    let db_path = resolve(home, &config.db_path);
    Ok(Loaded {
        home: home.to_path_buf(),
        config,
        genesis,
        validators,
        key,
        index,
        db_path,
    })
}

/// Whether a node listening on `listen` is reachable at `advertised`: same port, and the same IP
/// unless `listen`'s IP is unspecified (`0.0.0.0`, `::`), which listens on every address.
pub fn listen_matches(listen: SocketAddr, advertised: SocketAddr) -> bool {
    listen.port() == advertised.port()
        && (listen.ip().is_unspecified()
            || listen.ip().to_canonical() == advertised.ip().to_canonical())
}

/// Wall-clock time, Unix ms (0 if the clock is before 1970).
pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn write_config(home: &Path, cfg: &NodeConfig) -> Result<()> {
    let path = home.join(CONFIG_FILE);
    std::fs::write(&path, cfg.to_toml()?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Create a single-validator home: a fresh key, `config.toml` and a genesis naming only this
/// validator. Fails if `home` already holds a config or key. Returns the public key.
pub fn init_home(home: &Path, chain_id: &str, p2p_port: u16, rpc_port: u16) -> Result<PublicKey> {
    if home.join(CONFIG_FILE).exists() {
        bail!("{} already exists", home.join(CONFIG_FILE).display());
    }
    std::fs::create_dir_all(home)
        .with_context(|| format!("cannot create home {}", home.display()))?;
    let key = generate_key(&home.join(KEY_FILE))?;
    let cfg = NodeConfig::new(chain_id, loopback(p2p_port), loopback(rpc_port));
    cfg.validate()?;
    let genesis = Genesis {
        chain_id: chain_id.to_string(),
        epoch: 0,
        genesis_time_ms: now_unix_ms(),
        validators: vec![GenesisValidator {
            public_key: key.public(),
            power: 1,
            p2p_addr: cfg.p2p_listen,
            rpc_addr: cfg.rpc_listen,
        }],
        fault: ChainFaultParams::default(),
    };
    genesis.save(&home.join(GENESIS_FILE))?;
    write_config(home, &cfg)?;
    Ok(key.public())
}

/// Create `n` homes `out_dir/node0 … node{n-1}` sharing one genesis; node `i` listens on
/// `127.0.0.1:(base_p2p_port + i)` (UDP) and `127.0.0.1:(base_rpc_port + i)` (HTTP).
/// Returns the home paths.
pub fn generate_testnet(
    out_dir: &Path,
    n: usize,
    base_p2p_port: u16,
    base_rpc_port: u16,
    chain_id: &str,
) -> Result<Vec<PathBuf>> {
    generate_testnet_with(out_dir, n, chain_id, |i| {
        let i = u16::try_from(i).ok()?;
        Some((base_p2p_port.checked_add(i)?, base_rpc_port.checked_add(i)?))
    })
}

/// Like [`generate_testnet`] with a port function `i → (p2p_port, rpc_port)`.
pub fn generate_testnet_with(
    out_dir: &Path,
    n: usize,
    chain_id: &str,
    ports: impl Fn(usize) -> Option<(u16, u16)>,
) -> Result<Vec<PathBuf>> {
    if n == 0 {
        bail!("a testnet needs at least one validator");
    }
    let mut homes = Vec::with_capacity(n);
    let mut validators = Vec::with_capacity(n);
    let mut configs = Vec::with_capacity(n);
    for i in 0..n {
        let (p2p, rpc) = ports(i).ok_or_else(|| anyhow!("port overflow for node {i}"))?;
        let home = out_dir.join(format!("node{i}"));
        if home.join(CONFIG_FILE).exists() {
            bail!("{} already exists", home.join(CONFIG_FILE).display());
        }
        std::fs::create_dir_all(&home)
            .with_context(|| format!("cannot create {}", home.display()))?;
        let key = generate_key(&home.join(KEY_FILE))?;
        let cfg = NodeConfig::new(chain_id, loopback(p2p), loopback(rpc));
        validators.push(GenesisValidator {
            public_key: key.public(),
            power: 1,
            p2p_addr: cfg.p2p_listen,
            rpc_addr: cfg.rpc_listen,
        });
        configs.push(cfg);
        homes.push(home);
    }
    let genesis = Genesis {
        chain_id: chain_id.to_string(),
        epoch: 0,
        genesis_time_ms: now_unix_ms(),
        validators,
        fault: ChainFaultParams::default(),
    };
    genesis.validator_set()?;
    for (home, cfg) in homes.iter().zip(&configs) {
        genesis.save(&home.join(GENESIS_FILE))?;
        write_config(home, cfg)?;
    }
    Ok(homes)
}
