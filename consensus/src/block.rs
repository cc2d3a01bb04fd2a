//! Blocks and block headers (PROTOCOL.md §2).

use crate::cert::QuorumCert;
use crate::codec::encode;
use crate::crypto::Domain;
use crate::evidence::Evidence;
use crate::types::{BlockId, Digest, Epoch, Height, ValidatorIndex, View};
use borsh::{BorshDeserialize, BorshSerialize};

/// Maximum number of leaders listed in `skipped_leaders` (the rest of a long gap is not recorded).
pub const MAX_SKIPPED_LEADERS: usize = 64;
/// Maximum number of evidence items one block may carry.
pub const MAX_BLOCK_EVIDENCE: usize = 32;

/// Everything a block id commits to. A signed proposal signs `(view, id)`, so a header plus the
/// proposer's signature is self-contained proof of what the proposer proposed
/// (used by [`Evidence::InvalidProposal`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct BlockHeader {
    /// Epoch of the validator set.
    pub epoch: Epoch,
    /// View the block was proposed in.
    pub view: View,
    /// Height: parent's height + 1.
    pub height: Height,
    /// Parent id: must equal `justify_block`.
    pub parent: BlockId,
    /// Digest of the payload and the evidence carried.
    pub payload_digest: Digest,
    /// The leader that proposed it.
    pub proposer: ValidatorIndex,
    /// View of the justify QC: must be `< view`.
    pub justify_view: View,
    /// Block certified by the justify QC.
    pub justify_block: BlockId,
    /// `leader(u)` for every view `u` strictly between `justify_view` and `view` (capped at
    /// [`MAX_SKIPPED_LEADERS`], most recent views kept): the leaders that failed (§6.3).
    pub skipped_leaders: Vec<ValidatorIndex>,
}

impl BlockHeader {
    /// `BLAKE3("HS2/v1/block" ‖ chain_id ‖ epoch ‖ encode(header))`. Binds the view; does not bind
    /// the justify's signatures (§7 case 14).
    pub fn id(&self, domain: &Domain) -> BlockId {
        let mut h = domain.hasher(b"HS2/v1/block");
        h.update(&encode(self));
        Digest(*h.finalize().as_bytes())
    }
}

/// A block: a header's fields plus the full justify QC, the opaque application payload and the
/// evidence it commits.
///
/// The payload is opaque to consensus (the application decides whether it holds raw
/// transactions or digests of batches peers already hold).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Block {
    /// Epoch.
    pub epoch: Epoch,
    /// View it was proposed in.
    pub view: View,
    /// Height (parent's + 1).
    pub height: Height,
    /// Parent id (= `justify.block_id()`).
    pub parent: BlockId,
    /// The QC this block extends.
    pub justify: QuorumCert,
    /// Opaque application payload.
    pub payload: Vec<u8>,
    /// Evidence committed by this block.
    pub evidence: Vec<Evidence>,
    /// The proposer (leader of `view`).
    pub proposer: ValidatorIndex,
    /// Failed leaders between `justify.view` and `view` (see [`BlockHeader::skipped_leaders`]).
    pub skipped_leaders: Vec<ValidatorIndex>,
}

impl Block {
    /// The genesis block of `domain`: view 0, height 0, empty payload. It starts committed.
    pub fn genesis(domain: &Domain) -> Block {
        let justify = QuorumCert::genesis(Digest::ZERO);
        Block {
            epoch: domain.epoch(),
            view: View(0),
            height: Height(0),
            parent: Digest::ZERO,
            justify,
            payload: Vec::new(),
            evidence: Vec::new(),
            proposer: ValidatorIndex(0),
            skipped_leaders: Vec::new(),
        }
    }

    /// Digest of payload and evidence: `BLAKE3("HS2/v1/payload" ‖ u32 len ‖ payload ‖ encode(evidence))`.
    pub fn payload_digest(&self) -> Digest {
        let mut h = blake3::Hasher::new();
        h.update(b"HS2/v1/payload");
        h.update(&(self.payload.len() as u32).to_le_bytes());
        h.update(&self.payload);
        h.update(&encode(&self.evidence));
        Digest(*h.finalize().as_bytes())
    }

    /// The header (all fields the id commits to).
    pub fn header(&self) -> BlockHeader {
        self.header_with(self.payload_digest())
    }

    /// The header with `payload_digest` taken as given instead of computed: what a block whose
    /// payload is not at hand yet would have (a compact proposal names its payload by digest and
    /// transaction hashes; `node::relay`). It is this block's header iff `payload_digest` equals
    /// [`Block::payload_digest`].
    pub fn header_with(&self, payload_digest: Digest) -> BlockHeader {
        BlockHeader {
            epoch: self.epoch,
            view: self.view,
            height: self.height,
            parent: self.parent,
            payload_digest,
            proposer: self.proposer,
            justify_view: self.justify.view(),
            justify_block: self.justify.block_id(),
            skipped_leaders: self.skipped_leaders.clone(),
        }
    }

    /// The block id (see [`BlockHeader::id`]). Costs one BLAKE3 pass over the payload.
    pub fn id(&self, domain: &Domain) -> BlockId {
        self.header().id(domain)
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        encode(self).len()
    }
}
