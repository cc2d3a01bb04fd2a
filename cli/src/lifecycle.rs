//! Node lifecycle: `init`, `testnet`, `start` and `keys show`. These work on a home directory
//! (see `node::config` for its layout) and never talk to a running node.

use crate::output::{self, Format};
use anyhow::Context as _;
use node::config::{self, ConfigOverrides, Genesis, NodeConfig};
use serde_json::{Value, json};
use std::path::Path;

/// `bftnode init`: create a single-validator home.
pub fn init(home: &Path, chain_id: &str, p2p_port: u16, rpc_port: u16) -> anyhow::Result<()> {
    let public_key = config::init_home(home, chain_id, p2p_port, rpc_port)?;
    let cfg = NodeConfig::load(home)?;
    crate::emit(&format!(
        "initialized validator home {home}\n\
         chain id    {chain_id}\n\
         public key  {pk}\n\
         p2p listen  {p2p} (udp, QUIC)\n\
         rpc         http://{rpc}\n\
         start it with: bftnode start --home {home}\n",
        home = home.display(),
        pk = hex_key(&public_key.0),
        p2p = cfg.p2p_listen,
        rpc = cfg.rpc_listen,
    ));
    Ok(())
}

/// `bftnode testnet`: create `n` homes under `out` sharing one genesis, and list them.
pub fn testnet(
    out: &Path,
    n: usize,
    base_p2p_port: u16,
    base_rpc_port: u16,
    chain_id: &str,
) -> anyhow::Result<()> {
    let homes = config::generate_testnet(out, n, base_p2p_port, base_rpc_port, chain_id)?;
    let mut table = Vec::with_capacity(homes.len());
    for (i, home) in homes.iter().enumerate() {
        let cfg = NodeConfig::load(home)?;
        table.push(vec![
            format!("node{i}"),
            home.display().to_string(),
            cfg.p2p_listen.to_string(),
            format!("http://{}", cfg.rpc_listen),
        ]);
    }
    let header = ["NODE", "HOME", "P2P (UDP)", "RPC"].map(String::from);
    crate::emit(&format!(
        "created {n} validator homes for chain {chain_id} in {out}\n{table}\
         start each with: bftnode start --home <HOME>   (or run testnet/up.sh)\n",
        out = out.display(),
        table = output::aligned(&header, &table),
    ));
    Ok(())
}

/// `bftnode start`: run the node in `home` until it is stopped.
pub async fn start(home: &Path, overrides: ConfigOverrides) -> anyhow::Result<()> {
    node::run(home, overrides).await
}

/// `bftnode keys show`: the validator's public key and where it sits in the genesis, read from
/// the home directory. The secret seed is never printed.
pub fn keys_show(home: &Path, format: Format) -> anyhow::Result<()> {
    let cfg = NodeConfig::load(home)?;
    let key_path = config::resolve(home, &cfg.key_file);
    let key = config::load_key(&key_path)?;
    let public_key = key.public();
    let mut info = json!({
        "home": home.display().to_string(),
        "key_file": key_path.display().to_string(),
        "public_key": hex_key(&public_key.0),
        "chain_id": cfg.chain_id,
        "p2p_listen": cfg.p2p_listen.to_string(),
        "rpc_listen": cfg.rpc_listen.to_string(),
    });
    // Where the key sits in the genesis, if the genesis is readable; a missing genesis is
    // not an error for showing a key.
    let genesis_path = config::resolve(home, &cfg.genesis_file);
    if genesis_path.exists() {
        let genesis = Genesis::load(&genesis_path)?;
        let validators = genesis
            .validator_set()
            .with_context(|| format!("invalid genesis file {}", genesis_path.display()))?;
        info["validator_index"] = validators
            .index_of(&public_key)
            .map_or(Value::Null, |i| json!(i.0));
        info["validators"] = json!(genesis.validators.len());
    }
    match format {
        Format::Json => crate::emit(&output::json(&info)),
        Format::Table => crate::emit(&output::fields(
            &info,
            &[
                "public_key",
                "validator_index",
                "validators",
                "chain_id",
                "p2p_listen",
                "rpc_listen",
                "home",
                "key_file",
            ],
        )),
    }
    Ok(())
}

/// Lower-case hex of a key.
fn hex_key(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
