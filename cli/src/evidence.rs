//! The operator's view of faults: `evidence show ID` (a proof as JSON), `evidence verify FILE
//! --genesis PATH` (offline), and `faults`.

use crate::{
    client::Client,
    emit,
    output::{self, Format},
};
use anyhow::{Context as _, anyhow};
use node::config::Genesis;
use node::proof::{EvidenceProof, verify_proof};
use serde_json::Value;
use std::{fmt, io::Read as _, path::Path};

/// The proof was read but does not verify (exit code 4); the message says why.
#[derive(Debug)]
pub struct ProofRejected(pub String);

impl fmt::Display for ProofRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the proof does not verify: {}", self.0)
    }
}

impl std::error::Error for ProofRejected {}

/// `bftnode evidence show ID`: `GET /evidence/{id}`, printed as JSON whatever `--output` says
/// (the proof is a document for `evidence verify`).
pub async fn show(client: &Client, id: &str) -> anyhow::Result<()> {
    let v: Value = client.get(&["evidence", id]).await?;
    emit(&output::json(&v));
    Ok(())
}

/// `bftnode evidence verify FILE --genesis PATH`: read the proof (`-` = standard input) and
/// the genesis, verify with [`verify_proof`], print the verdict.
/// Errors: an unreadable or malformed file or genesis (exit 1); a proof that does not verify
/// ([`ProofRejected`], exit 4).
pub fn verify(file: &Path, genesis: &Path, format: Format) -> anyhow::Result<()> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the proof from standard input")?;
        s
    } else {
        std::fs::read_to_string(file)
            .with_context(|| format!("cannot read proof file {}", file.display()))?
    };
    let genesis = Genesis::load(genesis)?;
    // A file that is not a proof at all is an input error, not a verdict.
    let proof: EvidenceProof = serde_json::from_str(&text).map_err(|e| {
        anyhow!(
            "proof file {} is not an evidence proof: {e}",
            file.display()
        )
    })?;
    let verdict = verify_proof(&proof, &genesis).map_err(|e| ProofRejected(format!("{e:#}")))?;
    let v = serde_json::to_value(&verdict)?;
    match format {
        Format::Json => emit(&output::json(&v)),
        Format::Table => emit(&output::fields(
            &v,
            &[
                "valid",
                "kind",
                "offender",
                "offender_public_key",
                "view",
                "safety",
                "id",
                "chain_id",
                "epoch",
                "verify_ms",
            ],
        )),
    }
    Ok(())
}

/// Field order of the `faults` summary.
const FAULTS_FIELDS: &[&str] = &[
    "validators",
    "total_power",
    "f",
    "quorum",
    "faulty_power",
    "tolerance_margin",
    "health",
    "health_reason",
    "view",
    "committed_height",
    "domain_chain_id",
];

/// Column order of the `faults` lists.
const ENTRY_COLUMNS: &[&str] = &[
    "index",
    "power",
    "since_view",
    "since_height",
    "reason",
    "public_key",
];

/// `bftnode faults`: `GET /faults` as a summary table followed by one table per list
/// (convicted, isolated, suspected, down); `--output json` prints everything, the policy's
/// parameters included.
pub async fn faults(client: &Client, format: Format) -> anyhow::Result<()> {
    let v: Value = client.get(&["faults"]).await?;
    if format == Format::Json {
        emit(&output::json(&v));
        return Ok(());
    }
    let mut summary = v.clone();
    let lists = ["convicted", "isolated", "suspected", "down"];
    if let Some(m) = summary.as_object_mut() {
        for k in lists.iter().chain(&["params"]) {
            m.remove(*k);
        }
    }
    let mut text = output::fields(&summary, FAULTS_FIELDS);
    for k in lists {
        text.push('\n');
        text.push_str(&format!("{k}:\n"));
        let items = v.get(k).cloned().unwrap_or(Value::Array(Vec::new()));
        text.push_str(&output::rows(&items, ENTRY_COLUMNS, "none"));
    }
    emit(&text);
    Ok(())
}
