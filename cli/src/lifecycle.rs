//! Node lifecycle: `init`, `genesis build`, `config set-peers`, `testnet`, `start` and
//! `keys show`. These work on a home directory
//! (see `node::config` for its layout) and never talk to a running node.

use crate::output::{self, Format};
use anyhow::Context as _;
use node::config::{self, ConfigOverrides, Genesis, InitOptions, NodeConfig, ValidatorFile};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// `bftnode init`: create a validator's home (key, config, validator.json) and say what to do
/// next.
pub fn init(home: &Path, opts: &InitOptions, format: Format) -> anyhow::Result<()> {
    let file = config::init_home(home, opts)?;
    let validator_file = home.join(config::VALIDATOR_FILE);
    let info = json!({
        "home": home.display().to_string(),
        "chain_id": file.chain_id,
        "public_key": hex_key(&file.public_key.0),
        "p2p_listen": opts.p2p_listen.to_string(),
        "p2p_external": file.p2p_addr.to_string(),
        "rpc_listen": opts.rpc_listen.to_string(),
        "validator_file": validator_file.display().to_string(),
    });
    match format {
        Format::Json => crate::emit(&output::json(&info)),
        Format::Table => crate::emit(&format!(
            "{fields}             next: send {vf} to whoever builds the genesis (`bftnode genesis build`), copy the              genesis.json you get back into {home}, add the others' addresses (`bftnode config              set-peers --home {home} <their validator.json>…`), then `bftnode start --home              {home}`\n",
            fields = output::fields(
                &info,
                &[
                    "public_key",
                    "chain_id",
                    "p2p_listen",
                    "p2p_external",
                    "rpc_listen",
                    "home",
                    "validator_file",
                ],
            ),
            vf = validator_file.display(),
            home = home.display(),
        )),
    }
    Ok(())
}

/// Read validator files, each named by its path in errors.
fn validator_files(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, ValidatorFile)>> {
    paths
        .iter()
        .map(|p| Ok((p.display().to_string(), ValidatorFile::load(p)?)))
        .collect()
}

/// `bftnode genesis build`: join validator files into `out` and print the validators and the
/// `persistent_peers` list. Refuses to overwrite `out`.
pub fn genesis_build(
    paths: &[PathBuf],
    chain_id: Option<&str>,
    out: &Path,
    format: Format,
) -> anyhow::Result<()> {
    let files = validator_files(paths)?;
    let genesis = config::build_genesis(chain_id, &files, config::now_unix_ms())?;
    if out.exists() {
        anyhow::bail!("{} already exists", out.display());
    }
    genesis.save(out)?;
    let vs = genesis.validator_set()?;
    let peers: Vec<String> = files.iter().map(|(_, f)| f.peer().to_string()).collect();
    let validators: Vec<Value> = files
        .iter()
        .map(|(path, f)| {
            json!({
                "index": vs.index_of(&f.public_key).map(|i| i.0),
                "public_key": hex_key(&f.public_key.0),
                "power": f.power,
                "name": f.name,
                "p2p_addr": f.p2p_addr.to_string(),
                "file": path,
            })
        })
        .collect();
    match format {
        Format::Json => crate::emit(&output::json(&json!({
            "genesis": out.display().to_string(),
            "chain_id": genesis.chain_id,
            "validators": validators,
            "persistent_peers": peers,
        }))),
        Format::Table => {
            let rows: Vec<Vec<String>> = validators
                .iter()
                .map(|v| {
                    ["index", "public_key", "power", "name", "p2p_addr", "file"]
                        .iter()
                        .map(|k| match &v[*k] {
                            Value::String(s) => s.clone(),
                            Value::Null => "-".to_string(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .collect();
            let header = ["INDEX", "PUBLIC KEY", "POWER", "NAME", "P2P", "FILE"].map(String::from);
            crate::emit(&format!(
                "wrote {out} for chain {chain}: {n} validators\n{table}                 copy {out} into every validator's home, and give each the others'                  addresses (`bftnode config set-peers`, or this line in config.toml):\n                 persistent_peers = {peers}\n",
                out = out.display(),
                chain = genesis.chain_id,
                n = files.len(),
                table = output::aligned(&header, &rows),
                peers = serde_json::to_string(&peers)?,
            ));
        }
    }
    Ok(())
}

/// `bftnode config set-peers`: set `home`'s `persistent_peers` from validator files.
pub fn set_peers(home: &Path, paths: &[PathBuf]) -> anyhow::Result<()> {
    let peers: Vec<_> = validator_files(paths)?
        .iter()
        .map(|(_, f)| f.peer())
        .collect();
    let n = config::set_peers(home, &peers)?;
    crate::emit(&format!(
        "{}: persistent_peers has {n} entries\n",
        home.join(config::CONFIG_FILE).display()
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
    format: Format,
) -> anyhow::Result<()> {
    let homes = config::generate_testnet(out, n, base_p2p_port, base_rpc_port, chain_id)?;
    let mut nodes = Vec::with_capacity(homes.len());
    for (i, home) in homes.iter().enumerate() {
        let cfg = NodeConfig::load(home)?;
        nodes.push(json!({
            "node": format!("node{i}"),
            "home": home.display().to_string(),
            "p2p_listen": cfg.p2p_listen.to_string(),
            "rpc": format!("http://{}", cfg.rpc_listen),
        }));
    }
    match format {
        Format::Json => crate::emit(&output::json(&json!({
            "chain_id": chain_id,
            "nodes": nodes,
        }))),
        Format::Table => {
            let table: Vec<Vec<String>> = nodes
                .iter()
                .map(|v| {
                    ["node", "home", "p2p_listen", "rpc"]
                        .iter()
                        .map(|k| v[*k].as_str().unwrap_or_default().to_string())
                        .collect()
                })
                .collect();
            let header = ["NODE", "HOME", "P2P (UDP)", "RPC"].map(String::from);
            crate::emit(&format!(
                "created {n} validator homes for chain {chain_id} in {out}\n{table}                 start each with: bftnode start --home <HOME>   (or run testnet/up.sh)\n",
                out = out.display(),
                table = output::aligned(&header, &table),
            ));
        }
    }
    Ok(())
}

/// `bftnode reset`: wipe the database of the stopped validator in `home` (module
/// `node::reset`) and say what was kept.
pub fn reset(home: &Path, drop_safety_record: bool, reason: Option<String>) -> anyhow::Result<()> {
    use node::reset::{RESET_LOG, ResetMode};
    let mode = match (drop_safety_record, reason) {
        (true, Some(reason)) => ResetMode::DropSafetyRecord { reason },
        _ => ResetMode::KeepSafetyRecord,
    };
    let out = node::reset::reset(home, &mode)?;
    let kept = match &out.kept {
        Some(s) => format!(
            "kept the key and the safety record (last voted view {})",
            s.last_voted_view.0
        ),
        None if drop_safety_record => "kept the key; the safety record was DROPPED".to_string(),
        None => "kept the key (there was no safety record)".to_string(),
    };
    crate::emit(&format!(
        "wiped {}: {kept}; logged in {}\nthe node catches up from genesis through its peers \
         when started\n",
        out.db_path.display(),
        home.join(RESET_LOG).display()
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
