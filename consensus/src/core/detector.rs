//! Equivocation detection where votes, proposals and timeouts are aggregated (PROTOCOL.md §6.2):
//! E1 double vote, E2 double proposal, E3 lock violation, E4 conflicting timeouts. Every signature
//! fed here has been verified, so the evidence produced is self-contained and verifies.
//!
//! Memory is bounded: records are kept only for views at or above a floor that follows the
//! current view (see [`Detector::prune_below`]), one record per `(view, validator)`.

use crate::cert::VoteData;
use crate::crypto::Signature;
use crate::evidence::{Evidence, LaterMessage, SignedVote};
use crate::types::{BlockId, ValidatorIndex, View};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub(crate) struct Detector {
    votes: BTreeMap<(View, ValidatorIndex), SignedVote>,
    proposals: BTreeMap<(View, ValidatorIndex), (BlockId, Signature)>,
    timeouts: BTreeMap<(View, ValidatorIndex), (View, Signature)>,
    /// Per validator: the vote with the highest `parent_view` seen (E3 anchor).
    max_parent_view: BTreeMap<ValidatorIndex, SignedVote>,
    /// Per validator: the timeout with the lowest `hqc_view` seen, as `(view, hqc_view, sig)`.
    min_timeout: BTreeMap<ValidatorIndex, (View, View, Signature)>,
}

/// Result of recording a proposal.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ProposalSeen {
    /// First proposal of this signer in this view.
    New,
    /// The same proposal again.
    Duplicate,
    /// A different proposal: evidence produced.
    Equivocation(Box<Evidence>),
}

impl Detector {
    /// Records held (votes, proposals, timeouts, anchors): what the resource checks bound.
    pub(crate) fn len(&self) -> usize {
        self.votes.len()
            + self.proposals.len()
            + self.timeouts.len()
            + self.max_parent_view.len()
            + self.min_timeout.len()
    }

    /// Forget records of views below `floor` (the E3 anchors are kept: one per validator).
    pub(crate) fn prune_below(&mut self, floor: View) {
        let key = (floor, ValidatorIndex(0));
        self.votes = self.votes.split_off(&key);
        self.proposals = self.proposals.split_off(&key);
        self.timeouts = self.timeouts.split_off(&key);
    }

    /// Record a verified vote; returns E1/E3 evidence it exposes.
    pub(crate) fn on_vote(
        &mut self,
        voter: ValidatorIndex,
        data: &VoteData,
        sig: Signature,
    ) -> Vec<Evidence> {
        let mut out = Vec::new();
        let sv = SignedVote {
            data: data.clone(),
            sig,
        };
        match self.votes.get(&(data.view, voter)) {
            Some(prev) if prev.data.block_id != data.block_id => out.push(Evidence::DoubleVote {
                offender: voter,
                a: prev.clone(),
                b: sv.clone(),
            }),
            Some(_) => return out,
            None => {
                self.votes.insert((data.view, voter), sv.clone());
            }
        }
        if let Some(anchor) = self.max_parent_view.get(&voter) {
            let (w1, pv1) = (anchor.data.view, anchor.data.parent_view);
            if data.view > w1 && data.parent_view < pv1 {
                out.push(Evidence::LockViolation {
                    offender: voter,
                    vote: anchor.clone(),
                    later: LaterMessage::Vote(sv.clone()),
                });
            } else if data.view < w1 && data.parent_view > pv1 {
                out.push(Evidence::LockViolation {
                    offender: voter,
                    vote: sv.clone(),
                    later: LaterMessage::Vote(anchor.clone()),
                });
            }
        }
        if let Some(&(tv, hqc, tsig)) = self.min_timeout.get(&voter)
            && tv >= data.view
            && hqc < data.parent_view
        {
            out.push(Evidence::LockViolation {
                offender: voter,
                vote: sv.clone(),
                later: LaterMessage::Timeout {
                    view: tv,
                    hqc_view: hqc,
                    sig: tsig,
                },
            });
        }
        let raise = self
            .max_parent_view
            .get(&voter)
            .is_none_or(|a| data.parent_view > a.data.parent_view);
        if raise {
            self.max_parent_view.insert(voter, sv);
        }
        out
    }

    /// Record a verified proposal signature.
    pub(crate) fn on_proposal(
        &mut self,
        proposer: ValidatorIndex,
        view: View,
        id: BlockId,
        sig: Signature,
    ) -> ProposalSeen {
        match self.proposals.get(&(view, proposer)) {
            None => {
                self.proposals.insert((view, proposer), (id, sig));
                ProposalSeen::New
            }
            Some((prev, _)) if *prev == id => ProposalSeen::Duplicate,
            Some((prev, psig)) => ProposalSeen::Equivocation(Box::new(Evidence::DoubleProposal {
                offender: proposer,
                view,
                block_a: *prev,
                sig_a: *psig,
                block_b: id,
                sig_b: sig,
            })),
        }
    }

    /// Record a verified timeout `(view, hqc_view)`; returns E4/E3 evidence it exposes.
    pub(crate) fn on_timeout(
        &mut self,
        sender: ValidatorIndex,
        view: View,
        hqc_view: View,
        sig: Signature,
    ) -> Vec<Evidence> {
        let mut out = Vec::new();
        match self.timeouts.get(&(view, sender)) {
            Some((prev, psig)) if *prev != hqc_view => {
                out.push(Evidence::ConflictingTimeouts {
                    offender: sender,
                    view,
                    hqc_a: *prev,
                    sig_a: *psig,
                    hqc_b: hqc_view,
                    sig_b: sig,
                });
            }
            Some(_) => return out,
            None => {
                self.timeouts.insert((view, sender), (hqc_view, sig));
            }
        }
        if let Some(anchor) = self.max_parent_view.get(&sender)
            && view >= anchor.data.view
            && hqc_view < anchor.data.parent_view
        {
            out.push(Evidence::LockViolation {
                offender: sender,
                vote: anchor.clone(),
                later: LaterMessage::Timeout {
                    view,
                    hqc_view,
                    sig,
                },
            });
        }
        let lower = self
            .min_timeout
            .get(&sender)
            .is_none_or(|&(_, h, _)| hqc_view < h);
        if lower {
            self.min_timeout.insert(sender, (view, hqc_view, sig));
        }
        out
    }
}
