//! `genesis.json`: the chain id, the validator set and the chain-wide fault parameters,
//! identical on every node. It holds no addresses: where to dial a validator is each node's
//! own configuration ([`super::peers`]), so one host changing its IP edits no genesis.

use super::{ChainFaultParams, FaultSection};
use anyhow::{Context, Result, anyhow, bail};
use consensus::{Epoch, PublicKey, ValidatorIndex, ValidatorInfo, ValidatorSet};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One validator in `genesis.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    /// ed25519 public key, 64 hex characters.
    pub public_key: PublicKey,
    /// Voting power (≥ 1).
    pub power: u64,
    /// A name for humans (its `validator.json`'s `name`), at most
    /// [`super::ceremony::MAX_NAME_LEN`] bytes; informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
    /// [`Genesis::domain_chain_id`]. Also checks the `fault` parameters' ranges; two entries
    /// with one public key are refused ([`consensus::ValidatorSetError::Duplicate`]).
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
