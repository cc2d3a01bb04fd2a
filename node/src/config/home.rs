//! Home directories: creating one for a validator ([`init_home`]), a local multi-validator
//! network built from the same pieces as the key ceremony ([`generate_testnet`]), installing
//! the others' addresses ([`set_peers`]), and loading a home for `bftnode start`
//! ([`load_home`]).

use super::ceremony::{ValidatorFile, build_genesis};
use super::keys::{generate_key, load_key};
use super::peers::{self, PeerAddress};
use super::{
    CONFIG_FILE, ConfigOverrides, GENESIS_FILE, Genesis, KEY_FILE, NodeConfig, VALIDATOR_FILE,
    now_unix_ms, resolve,
};
use anyhow::{Context, Result, anyhow, bail};
use consensus::{PrivateKey, PublicKey, ValidatorIndex, ValidatorSet};
use network::ValidatorPeer;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

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
    /// Every validator with the address to dial it at, in index order
    /// ([`peers::dial_list`]).
    pub peers: Vec<ValidatorPeer>,
    /// Absolute database path.
    pub db_path: PathBuf,
}

/// Load config, overrides, genesis and key from `home` and check they agree: the chain ids
/// match, our key is a validator of the genesis, and every other validator has an address
/// ([`peers::dial_list`]).
pub fn load_home(home: &Path, overrides: &ConfigOverrides) -> Result<Loaded> {
    let mut config = NodeConfig::load(home)?;
    config.apply(overrides);
    config
        .validate()
        .context("invalid configuration after command-line overrides")?;
    let genesis_path = resolve(home, &config.genesis_file);
    let genesis = Genesis::load(&genesis_path)?;
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
            "our public key {} is not a validator in the genesis file {}",
            hex::encode(key.public().0),
            genesis_path.display()
        )
    })?;
    let peers = peers::dial_list(
        &genesis,
        &validators,
        index,
        config.p2p_listen,
        &config.persistent_peers,
    )
    .with_context(|| format!("invalid config file {}", home.join(CONFIG_FILE).display()))?;
    let db_path = resolve(home, &config.db_path);
    Ok(Loaded {
        home: home.to_path_buf(),
        config,
        genesis,
        validators,
        key,
        index,
        peers,
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

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn write_config(home: &Path, cfg: &NodeConfig) -> Result<()> {
    let path = home.join(CONFIG_FILE);
    std::fs::write(&path, cfg.to_toml()?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// What `bftnode init` creates a home with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitOptions {
    /// Chain id the validator means to join.
    pub chain_id: String,
    /// UDP address of the QUIC listener (e.g. `0.0.0.0:26600`).
    pub p2p_listen: SocketAddr,
    /// Where the other validators reach the listener; `None` = `p2p_listen`, which then must
    /// be a dialable address (not `0.0.0.0`).
    pub p2p_external: Option<SocketAddr>,
    /// TCP address of the RPC server.
    pub rpc_listen: SocketAddr,
    /// Voting power asked for (≥ 1).
    pub power: u64,
    /// A name for humans.
    pub name: Option<String>,
}

impl InitOptions {
    /// Loopback listeners on `p2p_port` (UDP) and `rpc_port` (TCP), power 1, no name.
    pub fn loopback(chain_id: &str, p2p_port: u16, rpc_port: u16) -> Self {
        InitOptions {
            chain_id: chain_id.to_string(),
            p2p_listen: loopback(p2p_port),
            p2p_external: None,
            rpc_listen: loopback(rpc_port),
            power: 1,
            name: None,
        }
    }
}

/// Create a validator's home: a fresh key (mode 0600), `config.toml` and the public
/// `validator.json` for the genesis ceremony. Writes no genesis. Fails, writing nothing, if
/// `home` already holds a config or a key, or if the options make an invalid validator file
/// (e.g. an unspecified listen IP without `p2p_external`). Returns the validator file.
pub fn init_home(home: &Path, opts: &InitOptions) -> Result<ValidatorFile> {
    for f in [CONFIG_FILE, KEY_FILE] {
        if home.join(f).exists() {
            bail!("{} already exists", home.join(f).display());
        }
    }
    let cfg = NodeConfig::new(&opts.chain_id, opts.p2p_listen, opts.rpc_listen);
    cfg.validate()?;
    let mut file = ValidatorFile {
        chain_id: opts.chain_id.clone(),
        public_key: PublicKey([0; 32]),
        power: opts.power,
        p2p_addr: opts.p2p_external.unwrap_or(opts.p2p_listen),
        name: opts.name.clone(),
    };
    if opts.p2p_external.is_none() && opts.p2p_listen.ip().is_unspecified() {
        bail!(
            "listening on {} (every address): give the address the other validators reach \
             this host at with --p2p-external",
            opts.p2p_listen
        );
    }
    // Checked with a placeholder key, so that a bad option creates no key file.
    file.check()?;
    std::fs::create_dir_all(home)
        .with_context(|| format!("cannot create home {}", home.display()))?;
    let key = generate_key(&home.join(KEY_FILE))?;
    file.public_key = key.public();
    write_config(home, &cfg)?;
    file.save(&home.join(VALIDATOR_FILE))?;
    Ok(file)
}

/// A single-validator chain in `home` on loopback ports: [`init_home`], then a genesis built
/// from its own validator file. Returns the public key.
pub fn init_single(home: &Path, chain_id: &str, p2p_port: u16, rpc_port: u16) -> Result<PublicKey> {
    let mut opts = InitOptions::loopback(chain_id, p2p_port, rpc_port);
    if p2p_port == 0 {
        // Nobody dials a lone validator; the file only needs a well-formed address.
        opts.p2p_external = Some(loopback(1));
    }
    let file = init_home(home, &opts)?;
    let genesis = build_genesis(
        None,
        &[(VALIDATOR_FILE.to_string(), file.clone())],
        now_unix_ms(),
    )?;
    genesis.save(&home.join(GENESIS_FILE))?;
    Ok(file.public_key)
}

/// Set `home`'s `persistent_peers` to `peers`, leaving out its own key. The list is checked
/// ([`peers::check_list`]) before anything is written. Returns how many entries were written.
pub fn set_peers(home: &Path, peers: &[PeerAddress]) -> Result<usize> {
    peers::check_list(peers)?;
    let mut cfg = NodeConfig::load(home)?;
    let ours = load_key(&resolve(home, &cfg.key_file))?.public();
    cfg.persistent_peers = peers
        .iter()
        .filter(|p| p.public_key != ours)
        .copied()
        .collect();
    cfg.validate()?;
    write_config(home, &cfg)?;
    Ok(cfg.persistent_peers.len())
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

/// Like [`generate_testnet`] with a port function `i → (p2p_port, rpc_port)`. The same steps
/// as the key ceremony: [`init_home`] in each home, [`build_genesis`] from their validator
/// files, then the genesis and [`set_peers`] in each home.
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
    let mut files = Vec::with_capacity(n);
    for i in 0..n {
        let (p2p, rpc) = ports(i).ok_or_else(|| anyhow!("port overflow for node {i}"))?;
        let home = out_dir.join(format!("node{i}"));
        let mut opts = InitOptions::loopback(chain_id, p2p, rpc);
        opts.name = Some(format!("node{i}"));
        let file = init_home(&home, &opts)?;
        files.push((home.join(VALIDATOR_FILE).display().to_string(), file));
        homes.push(home);
    }
    let genesis = build_genesis(Some(chain_id), &files, now_unix_ms())?;
    let peers: Vec<PeerAddress> = files.iter().map(|(_, f)| f.peer()).collect();
    for home in &homes {
        genesis.save(&home.join(GENESIS_FILE))?;
        set_peers(home, &peers)?;
    }
    Ok(homes)
}
