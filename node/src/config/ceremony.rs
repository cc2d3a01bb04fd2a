//! The key ceremony: each validator creates its key on its own host (`bftnode init`) and
//! publishes a [`ValidatorFile`]; one party joins the files into the chain's genesis
//! ([`build_genesis`], `bftnode genesis build`) and every host installs that genesis and the
//! others' addresses ([`super::set_peers`], `bftnode config set-peers`). No secret key ever
//! leaves its host.

use super::peers::PeerAddress;
use super::{ChainFaultParams, Genesis, GenesisValidator};
use anyhow::{Context, Result, bail};
use consensus::PublicKey;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

/// Longest validator name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// `validator.json`: what a validator publishes for the genesis ceremony. Public: it holds no
/// secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidatorFile {
    /// The chain the validator means to join.
    pub chain_id: String,
    /// Its consensus public key (64 hex characters).
    pub public_key: PublicKey,
    /// Voting power asked for (≥ 1).
    pub power: u64,
    /// Where the other validators dial it: UDP address of its QUIC listener as seen from them
    /// (`--p2p-external`).
    pub p2p_addr: SocketAddr,
    /// A name for humans, at most [`MAX_NAME_LEN`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ValidatorFile {
    /// Read and check one file (`power` ≥ 1, a dialable address, a short name). Errors name
    /// the file and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read validator file {}", path.display()))?;
        let v: ValidatorFile = serde_json::from_str(&text)
            .with_context(|| format!("invalid validator file {}", path.display()))?;
        v.check()
            .with_context(|| format!("invalid validator file {}", path.display()))?;
        Ok(v)
    }

    /// Write as pretty JSON (mode 0644: it is public).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("serializing validator file")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write validator file {}", path.display()))
    }

    /// The field checks of [`ValidatorFile::load`].
    pub fn check(&self) -> Result<()> {
        if self.chain_id.is_empty() {
            bail!("field `chain_id`: must not be empty");
        }
        if self.power == 0 {
            bail!("field `power`: must be ≥ 1");
        }
        if self.p2p_addr.port() == 0 || self.p2p_addr.ip().is_unspecified() {
            bail!(
                "field `p2p_addr`: {} cannot be dialled (unspecified IP or port 0); give \
                 `bftnode init` the address the other validators reach this host at with \
                 --p2p-external",
                self.p2p_addr
            );
        }
        if let Some(n) = &self.name
            && (n.len() > MAX_NAME_LEN || n.chars().any(char::is_control))
        {
            bail!("field `name`: at most {MAX_NAME_LEN} bytes, no control characters");
        }
        Ok(())
    }

    /// Its `persistent_peers` entry.
    pub fn peer(&self) -> PeerAddress {
        PeerAddress {
            public_key: self.public_key,
            addr: self.p2p_addr,
        }
    }
}

/// Join validator files (each with the name it is reported under, e.g. its path) into a
/// genesis at epoch 0 with default fault parameters.
///
/// `chain_id`: the chain to build; `None` takes the files' (which must then agree).
///
/// Errors, naming the files concerned: no file; a file for another chain id; one public key in
/// two files; one `p2p_addr` in two files; an invalid validator set (e.g. more than 255
/// validators).
pub fn build_genesis(
    chain_id: Option<&str>,
    files: &[(String, ValidatorFile)],
    genesis_time_ms: u64,
) -> Result<Genesis> {
    let Some((first_name, first)) = files.first() else {
        bail!("a genesis needs at least one validator file");
    };
    let chain_id = chain_id.unwrap_or(&first.chain_id);
    let mut by_key: HashMap<PublicKey, &str> = HashMap::with_capacity(files.len());
    let mut by_addr: HashMap<SocketAddr, &str> = HashMap::with_capacity(files.len());
    for (name, v) in files {
        v.check()
            .with_context(|| format!("invalid validator file {name}"))?;
        if v.chain_id != chain_id {
            bail!(
                "validator file {name} is for chain {:?}, not {chain_id:?}{}",
                v.chain_id,
                if name == first_name {
                    String::new()
                } else {
                    format!(" (as {first_name} is)")
                }
            );
        }
        if let Some(other) = by_key.insert(v.public_key, name) {
            bail!(
                "validator files {other} and {name} have the same public key {}",
                hex::encode(v.public_key.0)
            );
        }
        if let Some(other) = by_addr.insert(v.p2p_addr, name) {
            bail!(
                "validator files {other} and {name} have the same p2p_addr {}",
                v.p2p_addr
            );
        }
    }
    let genesis = Genesis {
        chain_id: chain_id.to_string(),
        epoch: 0,
        genesis_time_ms,
        validators: files
            .iter()
            .map(|(_, v)| GenesisValidator {
                public_key: v.public_key,
                power: v.power,
                name: v.name.clone(),
            })
            .collect(),
        fault: ChainFaultParams::default(),
    };
    genesis.validator_set()?;
    Ok(genesis)
}
