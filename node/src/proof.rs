//! Evidence as a portable JSON proof ([`EvidenceProof`]): what `GET /evidence/{id}` returns and
//! `bftnode evidence show ID` prints, and what `bftnode evidence verify FILE --genesis PATH`
//! checks offline with [`verify_proof`].
//!
//! The proof holds every signed body field by field (views, heights, block ids, the lock views
//! of timeouts, whole headers for an invalid proposal) and every signature, as lower-case hex:
//! with the chain's genesis (its validator keys, chain id, epoch and chain-wide `fault`
//! parameters, which fix the signing domain) a third party rebuilds the signed bytes and checks
//! them with [`fault::verify`] (PROTOCOL.md §6.2). The summary fields (`id`, `kind`,
//! `offender`, `offender_public_key`, `view`) are checked against the rebuilt evidence, so a
//! proof cannot claim more than it proves.

use crate::config::Genesis;
use anyhow::{Context, Result, anyhow, bail};
use consensus::{
    BlockHeader, Digest, Epoch, Evidence, Height, LaterMessage, Signature, SignedVote,
    ValidatorIndex, View, VoteData,
};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Format tag of [`EvidenceProof`] version 1.
pub const PROOF_FORMAT: &str = "bftnode-evidence/1";

/// `GET /evidence/{id}`: one evidence item with everything needed to verify it offline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceProof {
    /// [`PROOF_FORMAT`].
    pub format: String,
    /// Chain id (the genesis's `chain_id`).
    pub chain_id: String,
    /// Epoch of the validator set.
    pub epoch: u64,
    /// Evidence id: BLAKE3 of the canonical encoding (hex).
    pub id: String,
    /// Kind (`double_vote`, `double_proposal`, `lock_violation`, `conflicting_timeouts`,
    /// `invalid_proposal`).
    pub kind: String,
    /// Accused validator index.
    pub offender: u16,
    /// Its public key (hex), from the genesis.
    pub offender_public_key: String,
    /// View of the offence.
    pub view: u64,
    /// Whether a committed block of the serving node carries it (informational; not verified).
    #[serde(default)]
    pub committed: bool,
    /// The signed messages and signatures.
    pub evidence: EvidenceJson,
}

/// A vote's signed body (`D(VOTE, encode(data))`) and signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedVoteJson {
    /// View of the certified block.
    pub view: u64,
    /// Id of the certified block (hex).
    pub block_id: String,
    /// Height of the certified block.
    pub height: u64,
    /// Its parent's id (hex).
    pub parent_id: String,
    /// View of its justify QC.
    pub parent_view: u64,
    /// Ed25519 signature (128 hex characters).
    pub signature: String,
}

/// A block header, field by field (hex for ids and digests).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderJson {
    /// Epoch.
    pub epoch: u64,
    /// View.
    pub view: u64,
    /// Height.
    pub height: u64,
    /// Parent id.
    pub parent: String,
    /// Payload digest.
    pub payload_digest: String,
    /// Proposer index.
    pub proposer: u16,
    /// View of the justify QC.
    pub justify_view: u64,
    /// Block the justify QC certifies.
    pub justify_block: String,
    /// Skipped leaders.
    pub skipped_leaders: Vec<u16>,
}

/// The later message of a lock violation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LaterJson {
    /// A later vote.
    Vote {
        /// The vote.
        vote: SignedVoteJson,
    },
    /// A later timeout `D(TIMEOUT, view ‖ hqc_view)`.
    Timeout {
        /// Timeout view.
        view: u64,
        /// Reported lock view.
        hqc_view: u64,
        /// Signature (hex).
        signature: String,
    },
}

/// [`Evidence`] as JSON, one variant per kind (tag `kind`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EvidenceJson {
    /// E1: two votes of one view for different blocks.
    DoubleVote {
        /// Offender index.
        offender: u16,
        /// First vote.
        a: SignedVoteJson,
        /// Second vote.
        b: SignedVoteJson,
    },
    /// E2: two proposals of one view, signatures on `D(PROPOSAL, view ‖ id)`.
    DoubleProposal {
        /// Offender index.
        offender: u16,
        /// The view.
        view: u64,
        /// First block id (hex).
        block_a: String,
        /// Signature on it (hex).
        sig_a: String,
        /// Second block id (hex).
        block_b: String,
        /// Signature on it (hex).
        sig_b: String,
    },
    /// E3: a vote and a later message contradicting the lock it implies.
    LockViolation {
        /// Offender index.
        offender: u16,
        /// The earlier vote.
        vote: SignedVoteJson,
        /// The later message.
        later: LaterJson,
    },
    /// E4: two timeouts of one view reporting different locks.
    ConflictingTimeouts {
        /// Offender index.
        offender: u16,
        /// The view.
        view: u64,
        /// First reported lock view.
        hqc_a: u64,
        /// Signature on `(view, hqc_a)` (hex).
        sig_a: String,
        /// Second reported lock view.
        hqc_b: u64,
        /// Signature on `(view, hqc_b)` (hex).
        sig_b: String,
    },
    /// A signed proposal whose header breaks a structural rule.
    InvalidProposal {
        /// Offender index.
        offender: u16,
        /// The header.
        header: HeaderJson,
        /// Signature on `D(PROPOSAL, view ‖ id(header))` (hex).
        signature: String,
        /// The parent's header, when the defect is the height.
        parent: Option<HeaderJson>,
    },
}

fn sig_hex(s: &Signature) -> String {
    hex::encode(s.0)
}

fn vote_json(v: &SignedVote) -> SignedVoteJson {
    SignedVoteJson {
        view: v.data.view.0,
        block_id: v.data.block_id.to_hex(),
        height: v.data.height.0,
        parent_id: v.data.parent_id.to_hex(),
        parent_view: v.data.parent_view.0,
        signature: sig_hex(&v.sig),
    }
}

fn header_json(h: &BlockHeader) -> HeaderJson {
    HeaderJson {
        epoch: h.epoch.0,
        view: h.view.0,
        height: h.height.0,
        parent: h.parent.to_hex(),
        payload_digest: h.payload_digest.to_hex(),
        proposer: h.proposer.0,
        justify_view: h.justify_view.0,
        justify_block: h.justify_block.to_hex(),
        skipped_leaders: h.skipped_leaders.iter().map(|i| i.0).collect(),
    }
}

impl From<&Evidence> for EvidenceJson {
    fn from(e: &Evidence) -> Self {
        match e {
            Evidence::DoubleVote { offender, a, b } => EvidenceJson::DoubleVote {
                offender: offender.0,
                a: vote_json(a),
                b: vote_json(b),
            },
            Evidence::DoubleProposal {
                offender,
                view,
                block_a,
                sig_a,
                block_b,
                sig_b,
            } => EvidenceJson::DoubleProposal {
                offender: offender.0,
                view: view.0,
                block_a: block_a.to_hex(),
                sig_a: sig_hex(sig_a),
                block_b: block_b.to_hex(),
                sig_b: sig_hex(sig_b),
            },
            Evidence::LockViolation {
                offender,
                vote,
                later,
            } => EvidenceJson::LockViolation {
                offender: offender.0,
                vote: vote_json(vote),
                later: match later {
                    LaterMessage::Vote(v) => LaterJson::Vote { vote: vote_json(v) },
                    LaterMessage::Timeout {
                        view,
                        hqc_view,
                        sig,
                    } => LaterJson::Timeout {
                        view: view.0,
                        hqc_view: hqc_view.0,
                        signature: sig_hex(sig),
                    },
                },
            },
            Evidence::ConflictingTimeouts {
                offender,
                view,
                hqc_a,
                sig_a,
                hqc_b,
                sig_b,
            } => EvidenceJson::ConflictingTimeouts {
                offender: offender.0,
                view: view.0,
                hqc_a: hqc_a.0,
                sig_a: sig_hex(sig_a),
                hqc_b: hqc_b.0,
                sig_b: sig_hex(sig_b),
            },
            Evidence::InvalidProposal {
                offender,
                header,
                sig,
                parent,
            } => EvidenceJson::InvalidProposal {
                offender: offender.0,
                header: header_json(header),
                signature: sig_hex(sig),
                parent: parent.as_ref().map(header_json),
            },
        }
    }
}

fn digest(field: &str, s: &str) -> Result<Digest> {
    Digest::from_hex(s).ok_or_else(|| anyhow!("field `{field}`: not 64 hex characters"))
}

fn signature(field: &str, s: &str) -> Result<Signature> {
    let bytes = hex::decode(s).map_err(|e| anyhow!("field `{field}`: not hex: {e}"))?;
    let arr = <[u8; 64]>::try_from(bytes.as_slice())
        .map_err(|_| anyhow!("field `{field}`: must be 64 bytes (128 hex characters)"))?;
    Ok(Signature(arr))
}

fn vote_from(field: &str, v: &SignedVoteJson) -> Result<SignedVote> {
    Ok(SignedVote {
        data: VoteData {
            view: View(v.view),
            block_id: digest(&format!("{field}.block_id"), &v.block_id)?,
            height: Height(v.height),
            parent_id: digest(&format!("{field}.parent_id"), &v.parent_id)?,
            parent_view: View(v.parent_view),
        },
        sig: signature(&format!("{field}.signature"), &v.signature)?,
    })
}

fn header_from(field: &str, h: &HeaderJson) -> Result<BlockHeader> {
    Ok(BlockHeader {
        epoch: Epoch(h.epoch),
        view: View(h.view),
        height: Height(h.height),
        parent: digest(&format!("{field}.parent"), &h.parent)?,
        payload_digest: digest(&format!("{field}.payload_digest"), &h.payload_digest)?,
        proposer: ValidatorIndex(h.proposer),
        justify_view: View(h.justify_view),
        justify_block: digest(&format!("{field}.justify_block"), &h.justify_block)?,
        skipped_leaders: h
            .skipped_leaders
            .iter()
            .map(|i| ValidatorIndex(*i))
            .collect(),
    })
}

impl EvidenceJson {
    /// The [`Evidence`] these fields describe. Errors name the malformed field (under
    /// `evidence.`).
    pub fn to_evidence(&self) -> Result<Evidence> {
        Ok(match self {
            EvidenceJson::DoubleVote { offender, a, b } => Evidence::DoubleVote {
                offender: ValidatorIndex(*offender),
                a: vote_from("evidence.a", a)?,
                b: vote_from("evidence.b", b)?,
            },
            EvidenceJson::DoubleProposal {
                offender,
                view,
                block_a,
                sig_a,
                block_b,
                sig_b,
            } => Evidence::DoubleProposal {
                offender: ValidatorIndex(*offender),
                view: View(*view),
                block_a: digest("evidence.block_a", block_a)?,
                sig_a: signature("evidence.sig_a", sig_a)?,
                block_b: digest("evidence.block_b", block_b)?,
                sig_b: signature("evidence.sig_b", sig_b)?,
            },
            EvidenceJson::LockViolation {
                offender,
                vote,
                later,
            } => Evidence::LockViolation {
                offender: ValidatorIndex(*offender),
                vote: vote_from("evidence.vote", vote)?,
                later: match later {
                    LaterJson::Vote { vote } => {
                        LaterMessage::Vote(vote_from("evidence.later.vote", vote)?)
                    }
                    LaterJson::Timeout {
                        view,
                        hqc_view,
                        signature: sig,
                    } => LaterMessage::Timeout {
                        view: View(*view),
                        hqc_view: View(*hqc_view),
                        sig: signature("evidence.later.signature", sig)?,
                    },
                },
            },
            EvidenceJson::ConflictingTimeouts {
                offender,
                view,
                hqc_a,
                sig_a,
                hqc_b,
                sig_b,
            } => Evidence::ConflictingTimeouts {
                offender: ValidatorIndex(*offender),
                view: View(*view),
                hqc_a: View(*hqc_a),
                sig_a: signature("evidence.sig_a", sig_a)?,
                hqc_b: View(*hqc_b),
                sig_b: signature("evidence.sig_b", sig_b)?,
            },
            EvidenceJson::InvalidProposal {
                offender,
                header,
                signature: sig,
                parent,
            } => Evidence::InvalidProposal {
                offender: ValidatorIndex(*offender),
                header: header_from("evidence.header", header)?,
                sig: signature("evidence.signature", sig)?,
                parent: parent
                    .as_ref()
                    .map(|p| header_from("evidence.parent", p))
                    .transpose()?,
            },
        })
    }
}

impl EvidenceProof {
    /// The proof of `evidence` on the chain of `genesis` (the offender's key is looked up in
    /// it; empty if it is not a member).
    pub fn new(evidence: &Evidence, genesis: &Genesis, committed: bool) -> Self {
        let offender_public_key = genesis
            .validator_set()
            .ok()
            .and_then(|vs| {
                vs.public_key(evidence.offender())
                    .map(|pk| hex::encode(pk.0))
            })
            .unwrap_or_default();
        EvidenceProof {
            format: PROOF_FORMAT.to_string(),
            chain_id: genesis.chain_id.clone(),
            epoch: genesis.epoch,
            id: evidence.id().to_hex(),
            kind: evidence.kind().as_str().to_string(),
            offender: evidence.offender().0,
            offender_public_key,
            view: evidence.view().0,
            committed,
            evidence: EvidenceJson::from(evidence),
        }
    }
}

/// What [`verify_proof`] found for a valid proof.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// Always `true` (an invalid proof is an error).
    pub valid: bool,
    /// Evidence id (hex).
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Offender index.
    pub offender: u16,
    /// Offender public key (hex).
    pub offender_public_key: String,
    /// View of the offence.
    pub view: u64,
    /// Whether the kind proves a safety violation (slashable) rather than a liveness nuisance.
    pub safety: bool,
    /// Chain id and epoch it was verified against.
    pub chain_id: String,
    /// Epoch.
    pub epoch: u64,
    /// Time spent in [`fault::verify`], in milliseconds.
    pub verify_ms: f64,
}

/// Verify `proof` against `genesis` alone (no node, no network): the chain id and epoch must
/// be the genesis's; the signed bodies are rebuilt from the fields and checked with
/// [`fault::verify`] under the genesis's signing domain (chain-wide `fault` parameters
/// included); then the summary fields must match the rebuilt evidence.
/// Errors: the first check that fails, naming it (e.g. `signature does not verify`).
pub fn verify_proof(proof: &EvidenceProof, genesis: &Genesis) -> Result<Verdict> {
    if proof.format != PROOF_FORMAT {
        bail!(
            "field `format`: {:?} is not a supported proof format (expected {PROOF_FORMAT:?})",
            proof.format
        );
    }
    if proof.chain_id != genesis.chain_id || proof.epoch != genesis.epoch {
        bail!(
            "the proof is for chain {:?} epoch {} but the genesis is for chain {:?} epoch {}",
            proof.chain_id,
            proof.epoch,
            genesis.chain_id,
            genesis.epoch
        );
    }
    let vs = genesis.validator_set().context("invalid genesis")?;
    let ev = proof.evidence.to_evidence()?;
    let t = Instant::now();
    let checked = fault::verify(&ev, &vs);
    let verify_ms = t.elapsed().as_secs_f64() * 1000.0;
    checked.map_err(|e| anyhow!("evidence does not verify: {e}"))?;
    let pk = vs
        .public_key(ev.offender())
        .map(|pk| hex::encode(pk.0))
        .unwrap_or_default();
    let id = ev.id().to_hex();
    for (field, claimed, actual) in [
        ("id", proof.id.clone(), id.clone()),
        ("kind", proof.kind.clone(), ev.kind().as_str().to_string()),
        (
            "offender",
            proof.offender.to_string(),
            ev.offender().0.to_string(),
        ),
        ("view", proof.view.to_string(), ev.view().0.to_string()),
        (
            "offender_public_key",
            proof.offender_public_key.to_lowercase(),
            pk.clone(),
        ),
    ] {
        if claimed != actual {
            bail!("field `{field}`: the proof says {claimed} but the evidence gives {actual}");
        }
    }
    Ok(Verdict {
        valid: true,
        id,
        kind: ev.kind().as_str().to_string(),
        offender: ev.offender().0,
        offender_public_key: pk,
        view: ev.view().0,
        safety: ev.kind().is_safety(),
        chain_id: genesis.chain_id.clone(),
        epoch: genesis.epoch,
        verify_ms,
    })
}
