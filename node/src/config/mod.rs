//! Node configuration, one module per file of a home directory:
//!
//! - [`node_config`]: `config.toml` ([`NodeConfig`]) and command-line overrides
//!   ([`ConfigOverrides`]); its sections are in [`sections`];
//! - [`genesis`]: the chain's `genesis.json` ([`Genesis`]);
//! - [`ceremony`]: a validator's public `validator.json` ([`ValidatorFile`]) and the genesis
//!   built from several of them ([`build_genesis`]): the key ceremony, in which no key leaves
//!   its host;
//! - [`peers`]: where to dial the other validators (`persistent_peers` in `config.toml`,
//!   [`PeerAddress`]);
//! - [`keys`]: the validator key file ([`KeyFile`]);
//! - [`home`]: creating homes ([`init_home`], [`generate_testnet`]) and loading one for
//!   `start` ([`load_home`]).
//!
//! A home directory looks like:
//!
//! ```text
//! <home>/config.toml     node settings, including the other validators' addresses
//! <home>/genesis.json    chain id, epoch, validators' keys and power (identical on every node)
//! <home>/key.json        ed25519 secret seed, mode 0600, never leaves the host
//! <home>/validator.json  public: chain id, public key, power, p2p address (for the ceremony)
//! <home>/data/           RocksDB
//! ```
//!
//! Relative paths in `config.toml` are resolved against the home directory. Every loading error
//! names the file, the field and the reason.

pub mod ceremony;
pub mod genesis;
pub mod home;
pub mod keys;
pub mod node_config;
pub mod peers;
pub mod sections;

pub use crate::fault_params::{ChainFaultParams, FaultSection};
pub use ceremony::{ValidatorFile, build_genesis};
pub use genesis::{Genesis, GenesisValidator};
pub use home::{
    InitOptions, Loaded, generate_testnet, generate_testnet_with, init_home, init_single,
    listen_matches, load_home, set_peers,
};
pub use keys::{KeyFile, generate_key, load_key, write_key};
pub use node_config::{ConfigOverrides, MAX_BLOCK_BYTES_CAP, NodeConfig};
pub use peers::PeerAddress;
pub use sections::{
    BlockSection, ConsensusSection, LogFormat, MempoolSection, NetworkSection, RPC_LIMIT_CAP,
    RPC_TIMEOUT_CAP_MS, RpcSection, StorageSection,
};

use std::path::{Path, PathBuf};

/// File name of the node configuration inside a home directory.
pub const CONFIG_FILE: &str = "config.toml";
/// Default genesis file name.
pub const GENESIS_FILE: &str = "genesis.json";
/// Default key file name.
pub const KEY_FILE: &str = "key.json";
/// File name of the public validator description `bftnode init` writes.
pub const VALIDATOR_FILE: &str = "validator.json";
/// Default database directory name.
pub const DB_DIR: &str = "data";

/// Resolve `p` against `home` unless absolute.
pub fn resolve(home: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        home.join(p)
    }
}

/// Wall-clock time, Unix ms (0 if the clock is before 1970).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
