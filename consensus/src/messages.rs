//! Consensus messages on the wire (PROTOCOL.md §2): proposals, votes, timeouts, statuses, and the
//! unsigned block-sync request/response.

use crate::block::Block;
use crate::cert::{QuorumCert, TimeoutCert, VoteData, timeout_body};
use crate::codec::{DecodeError, MAX_MESSAGE_BYTES, decode, encode};
use crate::crypto::{PrivateKey, SigKind, Signature};
use crate::types::{BlockId, Height, ValidatorIndex, View};
use crate::validators::ValidatorSet;
use borsh::{BorshDeserialize, BorshSerialize};

/// Signed body of a proposal: `view ‖ block_id`.
pub fn proposal_body(view: View, block_id: &BlockId) -> Vec<u8> {
    encode(&(view, *block_id))
}

/// Signed body of a status: `view ‖ high_qc.view ‖ high_qc.block_id`.
pub fn status_body(view: View, high_qc: &QuorumCert) -> Vec<u8> {
    encode(&(view, high_qc.view(), high_qc.block_id()))
}

/// A leader's proposal of `block` for `block.view`.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Proposal {
    /// The proposed block.
    pub block: Block,
    /// TC for `view − 1`; required iff `block.justify.view < view − 1` (§2).
    pub tc: Option<TimeoutCert>,
    /// Proposer's signature on `D(PROPOSAL, view ‖ block_id)`.
    pub sig: Signature,
}

/// A vote for a block, broadcast to every validator (each aggregates QCs; PROTOCOL.md §4.6).
#[derive(Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Vote {
    /// What is voted for.
    pub data: VoteData,
    /// The voter.
    pub voter: ValidatorIndex,
    /// Signature on `D(VOTE, data)`.
    pub sig: Signature,
}

impl Vote {
    /// Sign a vote (only the safety module calls this).
    pub fn sign(
        data: VoteData,
        voter: ValidatorIndex,
        key: &PrivateKey,
        vs: &ValidatorSet,
    ) -> Vote {
        let sig = key.sign(vs.domain(), SigKind::Vote, &encode(&data));
        Vote { data, voter, sig }
    }
}

/// A timeout for `view`, carrying the sender's lock as `high_qc` (§4.2).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Timeout {
    /// The view that timed out.
    pub view: View,
    /// The sender's lock; `high_qc.view < view`.
    pub high_qc: QuorumCert,
    /// The sender.
    pub sender: ValidatorIndex,
    /// Signature on `D(TIMEOUT, view ‖ high_qc.view)`.
    pub sig: Signature,
    /// The sender's highest TC (unsigned, verified on its own).
    pub high_tc: Option<TimeoutCert>,
    /// The proof of the sender's latest commit (§4.7), when it is not `high_qc` (unsigned,
    /// verified on its own, and only if it commits above the receiver's tip). It lets a node
    /// that missed the QC of a commit learn it, so that its leader schedule, a function of
    /// committed history, agrees with the others' again (PROTOCOL.md §6.3 rule 7).
    pub commit_qc: Option<QuorumCert>,
}

impl Timeout {
    /// The signed body.
    pub fn body(&self) -> Vec<u8> {
        timeout_body(self.view, self.high_qc.view())
    }
}

/// A status ("NewView"): sent to `leader(view)` by a node that entered `view` without
/// QC(view − 1), reporting its lock (§4.2, §4.4 H2).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Status {
    /// The view entered.
    pub view: View,
    /// The sender's lock.
    pub high_qc: QuorumCert,
    /// The sender.
    pub sender: ValidatorIndex,
    /// Signature on `D(STATUS, view ‖ high_qc.view ‖ high_qc.block_id)`.
    pub sig: Signature,
    /// The sender's highest TC (unsigned).
    pub high_tc: Option<TimeoutCert>,
}

/// Request for the chain ending at `target`, walking parent links down to (excluding) the first
/// block at height ≤ `stop_at`, at most `max_blocks` blocks (§6.5).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct BlockRequest {
    /// Highest block wanted.
    pub target: BlockId,
    /// Stop before reaching this height (the requester's committed height).
    pub stop_at: Height,
    /// Maximum number of blocks in the response.
    pub max_blocks: u32,
}

/// Blocks answering a [`BlockRequest`], highest first (`blocks[0].id == target`).
#[derive(Clone, Debug, PartialEq, Eq, Default, BorshSerialize, BorshDeserialize)]
pub struct BlockResponse {
    /// The chain, top-down.
    pub blocks: Vec<Block>,
}

/// Every message exchanged between validators.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum ConsensusMessage {
    /// A leader's proposal (broadcast).
    Proposal(Proposal),
    /// A vote (broadcast).
    Vote(Vote),
    /// A timeout (broadcast).
    Timeout(Timeout),
    /// A status (to the leader of its view).
    Status(Status),
    /// A TC forwarded by the leader that entered via it (broadcast, §4.2).
    TimeoutCert(TimeoutCert),
}

impl ConsensusMessage {
    /// Canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
    /// Decode, bounded by [`MAX_MESSAGE_BYTES`]. Errors: [`DecodeError`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes, MAX_MESSAGE_BYTES)
    }
    /// The claimed sender (the proposer, voter, timeout or status sender), `None` for a TC.
    pub fn author(&self) -> Option<ValidatorIndex> {
        match self {
            ConsensusMessage::Proposal(p) => Some(p.block.proposer),
            ConsensusMessage::Vote(v) => Some(v.voter),
            ConsensusMessage::Timeout(t) => Some(t.sender),
            ConsensusMessage::Status(s) => Some(s.sender),
            ConsensusMessage::TimeoutCert(_) => None,
        }
    }
    /// The view the message is about.
    pub fn view(&self) -> View {
        match self {
            ConsensusMessage::Proposal(p) => p.block.view,
            ConsensusMessage::Vote(v) => v.data.view,
            ConsensusMessage::Timeout(t) => t.view,
            ConsensusMessage::Status(s) => s.view,
            ConsensusMessage::TimeoutCert(tc) => tc.view,
        }
    }
    /// Short kind name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ConsensusMessage::Proposal(_) => "proposal",
            ConsensusMessage::Vote(_) => "vote",
            ConsensusMessage::Timeout(_) => "timeout",
            ConsensusMessage::Status(_) => "status",
            ConsensusMessage::TimeoutCert(_) => "tc",
        }
    }
}
