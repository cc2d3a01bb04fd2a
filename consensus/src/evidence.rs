//! Self-contained, third-party-verifiable evidence of Byzantine behaviour (PROTOCOL.md §6.2).
//!
//! Each item carries the offender's signed bodies; [`Evidence::verify`] needs only the validator
//! set of `(chain_id, epoch)`.

use crate::block::BlockHeader;
use crate::cert::{VoteData, timeout_body};
use crate::codec::encode;
use crate::crypto::{SigKind, Signature};
use crate::messages::proposal_body;
use crate::types::{BlockId, Digest, ValidatorIndex, View};
use crate::validators::ValidatorSet;
use borsh::{BorshDeserialize, BorshSerialize};
use serde::Serialize;
use thiserror::Error;

/// A vote's signed body and signature (extractable from any QC).
#[derive(Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct SignedVote {
    /// The vote body.
    pub data: VoteData,
    /// The offender's signature on `D(VOTE, data)`.
    pub sig: Signature,
}

/// The later message of a lock violation (E3).
#[derive(Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub enum LaterMessage {
    /// A later vote whose `parent_view` is below the earlier vote's.
    Vote(SignedVote),
    /// A later-or-equal timeout whose reported lock is below the earlier vote's `parent_view`.
    Timeout {
        /// Timeout view.
        view: View,
        /// Reported lock view.
        hqc_view: View,
        /// Signature on `D(TIMEOUT, view ‖ hqc_view)`.
        sig: Signature,
    },
}

/// Evidence kinds, for metrics and dedupe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum EvidenceKind {
    /// E1.
    DoubleVote,
    /// E2.
    DoubleProposal,
    /// E3.
    LockViolation,
    /// E4.
    ConflictingTimeouts,
    /// A proposal whose signed header breaks a structural rule.
    InvalidProposal,
}

impl EvidenceKind {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::DoubleVote => "double_vote",
            EvidenceKind::DoubleProposal => "double_proposal",
            EvidenceKind::LockViolation => "lock_violation",
            EvidenceKind::ConflictingTimeouts => "conflicting_timeouts",
            EvidenceKind::InvalidProposal => "invalid_proposal",
        }
    }
    /// Whether this kind proves a safety violation attempt (E1–E3, invalid proposal), as opposed
    /// to a liveness nuisance (E4: log and lower reputation, do not slash).
    pub fn is_safety(self) -> bool {
        !matches!(self, EvidenceKind::ConflictingTimeouts)
    }
}

/// Evidence against one validator.
#[derive(Clone, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub enum Evidence {
    /// E1: two votes of one view for different blocks.
    DoubleVote {
        /// The validator that signed both.
        offender: ValidatorIndex,
        /// First vote.
        a: SignedVote,
        /// Second vote.
        b: SignedVote,
    },
    /// E2: two proposals of one view for different blocks.
    DoubleProposal {
        /// The proposer.
        offender: ValidatorIndex,
        /// The view.
        view: View,
        /// First block id and signature on `D(PROPOSAL, view ‖ id)`.
        block_a: BlockId,
        /// Signature on block_a.
        sig_a: Signature,
        /// Second block id.
        block_b: BlockId,
        /// Signature on block_b.
        sig_b: Signature,
    },
    /// E3 (amnesia): a vote and a later vote or timeout that contradicts the lock the first
    /// vote implies.
    LockViolation {
        /// The validator.
        offender: ValidatorIndex,
        /// The earlier vote (view w1).
        vote: SignedVote,
        /// The contradicting later message.
        later: LaterMessage,
    },
    /// E4: two different timeout bodies for one view.
    ConflictingTimeouts {
        /// The validator.
        offender: ValidatorIndex,
        /// The view.
        view: View,
        /// First reported lock view.
        hqc_a: View,
        /// Signature on `(view, hqc_a)`.
        sig_a: Signature,
        /// Second reported lock view.
        hqc_b: View,
        /// Signature on `(view, hqc_b)`.
        sig_b: Signature,
    },
    /// A signed proposal whose header breaks a rule the id binds: `parent ≠ justify_block`,
    /// `view ≤ justify_view`, or (with the parent header) `height ≠ parent.height + 1`.
    InvalidProposal {
        /// The proposer.
        offender: ValidatorIndex,
        /// The proposed header.
        header: BlockHeader,
        /// Signature on `D(PROPOSAL, view ‖ id(header))`.
        sig: Signature,
        /// The parent's header, when the defect is the height.
        parent: Option<BlockHeader>,
    },
}

/// Why evidence does not verify.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EvidenceError {
    /// The offender is not in the validator set.
    #[error("offender {0} is not a validator")]
    UnknownOffender(ValidatorIndex),
    /// A signature does not verify under the offender's key.
    #[error("signature does not verify")]
    BadSignature,
    /// The two messages do not conflict per the kind's predicate.
    #[error("messages do not conflict: {0}")]
    NoConflict(&'static str),
}

impl Evidence {
    /// The accused validator.
    pub fn offender(&self) -> ValidatorIndex {
        match self {
            Evidence::DoubleVote { offender, .. }
            | Evidence::DoubleProposal { offender, .. }
            | Evidence::LockViolation { offender, .. }
            | Evidence::ConflictingTimeouts { offender, .. }
            | Evidence::InvalidProposal { offender, .. } => *offender,
        }
    }
    /// The kind.
    pub fn kind(&self) -> EvidenceKind {
        match self {
            Evidence::DoubleVote { .. } => EvidenceKind::DoubleVote,
            Evidence::DoubleProposal { .. } => EvidenceKind::DoubleProposal,
            Evidence::LockViolation { .. } => EvidenceKind::LockViolation,
            Evidence::ConflictingTimeouts { .. } => EvidenceKind::ConflictingTimeouts,
            Evidence::InvalidProposal { .. } => EvidenceKind::InvalidProposal,
        }
    }
    /// The view the offence is about (for E3 the later message's view).
    pub fn view(&self) -> View {
        match self {
            Evidence::DoubleVote { a, .. } => a.data.view,
            Evidence::DoubleProposal { view, .. } | Evidence::ConflictingTimeouts { view, .. } => {
                *view
            }
            Evidence::LockViolation { later, .. } => match later {
                LaterMessage::Vote(v) => v.data.view,
                LaterMessage::Timeout { view, .. } => *view,
            },
            Evidence::InvalidProposal { header, .. } => header.view,
        }
    }
    /// Dedupe key `(offender, kind, view)` (§6.2).
    pub fn key(&self) -> (ValidatorIndex, EvidenceKind, View) {
        (self.offender(), self.kind(), self.view())
    }
    /// `BLAKE3` of the canonical encoding.
    pub fn id(&self) -> Digest {
        Digest(*blake3::hash(&encode(self)).as_bytes())
    }

    /// Verify with nothing but the validator set of `(chain_id, epoch)`: every signature under
    /// the offender's key on the domain-separated body, and the kind's conflict predicate
    /// (§6.2 E1–E4). Errors: [`EvidenceError`].
    pub fn verify(&self, vs: &ValidatorSet) -> Result<(), EvidenceError> {
        let who = self.offender();
        if !vs.contains(who) {
            return Err(EvidenceError::UnknownOffender(who));
        }
        let check = |kind: SigKind, body: Vec<u8>, sig: &Signature| {
            if vs.verify(who, kind, &body, sig) {
                Ok(())
            } else {
                Err(EvidenceError::BadSignature)
            }
        };
        let vote = |v: &SignedVote| check(SigKind::Vote, encode(&v.data), &v.sig);
        match self {
            Evidence::DoubleVote { a, b, .. } => {
                if a.data.view != b.data.view || a.data.block_id == b.data.block_id {
                    return Err(EvidenceError::NoConflict(
                        "need same view, different blocks",
                    ));
                }
                vote(a)?;
                vote(b)
            }
            Evidence::DoubleProposal {
                view,
                block_a,
                sig_a,
                block_b,
                sig_b,
                ..
            } => {
                if block_a == block_b {
                    return Err(EvidenceError::NoConflict("same block"));
                }
                check(SigKind::Proposal, proposal_body(*view, block_a), sig_a)?;
                check(SigKind::Proposal, proposal_body(*view, block_b), sig_b)
            }
            Evidence::LockViolation {
                vote: first, later, ..
            } => {
                let (w1, pv1) = (first.data.view, first.data.parent_view);
                match later {
                    LaterMessage::Vote(second) => {
                        if !(second.data.view > w1 && second.data.parent_view < pv1) {
                            return Err(EvidenceError::NoConflict("later vote does not regress"));
                        }
                        vote(first)?;
                        vote(second)
                    }
                    LaterMessage::Timeout {
                        view,
                        hqc_view,
                        sig,
                    } => {
                        if !(*view >= w1 && *hqc_view < pv1) {
                            return Err(EvidenceError::NoConflict("timeout does not regress"));
                        }
                        vote(first)?;
                        check(SigKind::Timeout, timeout_body(*view, *hqc_view), sig)
                    }
                }
            }
            Evidence::ConflictingTimeouts {
                view,
                hqc_a,
                sig_a,
                hqc_b,
                sig_b,
                ..
            } => {
                if hqc_a == hqc_b {
                    return Err(EvidenceError::NoConflict("identical timeouts"));
                }
                check(SigKind::Timeout, timeout_body(*view, *hqc_a), sig_a)?;
                check(SigKind::Timeout, timeout_body(*view, *hqc_b), sig_b)
            }
            Evidence::InvalidProposal {
                header,
                sig,
                parent,
                ..
            } => {
                if header.proposer != who {
                    return Err(EvidenceError::NoConflict(
                        "header proposer is not the offender",
                    ));
                }
                let structural =
                    header.parent != header.justify_block || header.view <= header.justify_view;
                let bad_height = parent.as_ref().is_some_and(|p| {
                    p.id(vs.domain()) == header.parent && p.height.next() != Some(header.height)
                });
                if !structural && !bad_height {
                    return Err(EvidenceError::NoConflict("header is well-formed"));
                }
                let id = header.id(vs.domain());
                check(SigKind::Proposal, proposal_body(header.view, &id), sig)
            }
        }
    }
}
