//! Shared helpers for the fault integration tests: real keys, a validator set, committed blocks
//! and signed evidence of every kind.
#![allow(dead_code)]

use consensus::cert::timeout_body;
use consensus::messages::proposal_body;
use consensus::{
    Bitmap, Block, BlockHeader, BlockId, Digest, Epoch, Evidence, FaultPolicy, Height,
    LaterMessage, PrivateKey, QuorumCert, SigKind, SignedVote, ValidatorIndex, ValidatorSet, View,
    Vote, VoteData,
};
use fault::{FaultConfig, FaultTolerance};

pub const CHAIN: &str = "fault-test";

/// A validator set of `n` and the private keys in index order.
pub fn validators(n: usize) -> (ValidatorSet, Vec<PrivateKey>) {
    validators_epoch(n, 0)
}

pub fn validators_epoch(n: usize, epoch: u64) -> (ValidatorSet, Vec<PrivateKey>) {
    consensus::validators::test_validators(CHAIN, Epoch(epoch), n).unwrap()
}

pub fn idx(i: u16) -> ValidatorIndex {
    ValidatorIndex(i)
}

/// A chain of committed blocks fed to policies.
pub struct Chain {
    pub n: usize,
    pub height: u64,
    pub parent: BlockId,
    pub parent_view: View,
    pub blocks: Vec<(Block, BlockId)>,
    domain: consensus::Domain,
}

impl Chain {
    pub fn new(vs: &ValidatorSet) -> Self {
        let g = Block::genesis(vs.domain());
        let id = g.id(vs.domain());
        Chain {
            n: vs.len(),
            height: 0,
            parent: id,
            parent_view: View(0),
            blocks: vec![(g, id)],
            domain: vs.domain().clone(),
        }
    }

    /// Build the next committed block.
    pub fn next(
        &mut self,
        view: u64,
        proposer: u16,
        voters: &[u16],
        skipped: &[u16],
        evidence: Vec<Evidence>,
    ) -> (Block, BlockId) {
        let mut signers = Bitmap::new(self.n);
        for &v in voters {
            signers.set(idx(v));
        }
        let justify = QuorumCert {
            data: VoteData {
                view: self.parent_view,
                block_id: self.parent,
                height: Height(self.height),
                parent_id: Digest::ZERO,
                parent_view: View(self.parent_view.0.saturating_sub(1)),
            },
            signers,
            sigs: Vec::new(),
        };
        self.height += 1;
        let b = Block {
            epoch: self.domain.epoch(),
            view: View(view),
            height: Height(self.height),
            parent: self.parent,
            justify,
            payload: Vec::new(),
            evidence,
            proposer: idx(proposer),
            skipped_leaders: skipped.iter().map(|&i| idx(i)).collect(),
        };
        let id = b.id(&self.domain);
        self.parent = id;
        self.parent_view = View(view);
        self.blocks.push((b.clone(), id));
        (b, id)
    }

    /// Build the next block and commit it to every policy in `ps`.
    pub fn commit(
        &mut self,
        ps: &mut [&mut FaultTolerance],
        view: u64,
        proposer: u16,
        voters: &[u16],
        skipped: &[u16],
        evidence: Vec<Evidence>,
    ) {
        let (b, id) = self.next(view, proposer, voters, skipped, evidence);
        for p in ps.iter_mut() {
            p.on_commit(&b, id);
        }
    }

    /// `count` healthy blocks, one per view from `first_view`, proposers round robin, all vote.
    pub fn healthy(&mut self, ps: &mut [&mut FaultTolerance], first_view: u64, count: u64) {
        let all: Vec<u16> = (0..self.n as u16).collect();
        for k in 0..count {
            let v = first_view + k;
            self.commit(ps, v, (v % self.n as u64) as u16, &all, &[], Vec::new());
        }
    }
}

/// The lag the step tests of this suite are written for (views); the default is smaller.
pub const TEST_LAG: u64 = 20;

/// Default parameters but `exclusion_lag = TEST_LAG` and the pre-issue-6 window `10·n`: the
/// numbers the step tests of this suite count with.
pub fn test_config(n: usize) -> FaultConfig {
    FaultConfig {
        exclusion_lag: TEST_LAG,
        window: Some(10 * n as u64),
        ..FaultConfig::default()
    }
}

/// A policy with [`test_config`].
pub fn policy(vs: &ValidatorSet) -> FaultTolerance {
    FaultTolerance::new(vs, test_config(vs.len()))
}

fn digest(tag: u8, n: u64) -> Digest {
    let mut d = [tag; 32];
    d[..8].copy_from_slice(&n.to_le_bytes());
    Digest(d)
}

pub fn signed_vote(vs: &ValidatorSet, key: &PrivateKey, who: u16, data: VoteData) -> SignedVote {
    let v = Vote::sign(data, idx(who), key, vs);
    SignedVote {
        data: v.data,
        sig: v.sig,
    }
}

pub fn vote_data(view: u64, parent_view: u64, block: u8) -> VoteData {
    VoteData {
        view: View(view),
        block_id: digest(block, view),
        height: Height(view),
        parent_id: digest(0xee, parent_view),
        parent_view: View(parent_view),
    }
}

/// E1 against `who` in `view`.
pub fn double_vote(vs: &ValidatorSet, keys: &[PrivateKey], who: u16, view: u64) -> Evidence {
    let k = &keys[who as usize];
    Evidence::DoubleVote {
        offender: idx(who),
        a: signed_vote(vs, k, who, vote_data(view, view - 1, 1)),
        b: signed_vote(vs, k, who, vote_data(view, view - 1, 2)),
    }
}

/// E2 against `who` in `view`.
pub fn double_proposal(vs: &ValidatorSet, keys: &[PrivateKey], who: u16, view: u64) -> Evidence {
    let k = &keys[who as usize];
    let (a, b) = (digest(1, view), digest(2, view));
    Evidence::DoubleProposal {
        offender: idx(who),
        view: View(view),
        block_a: a,
        sig_a: k.sign(
            vs.domain(),
            SigKind::Proposal,
            &proposal_body(View(view), &a),
        ),
        block_b: b,
        sig_b: k.sign(
            vs.domain(),
            SigKind::Proposal,
            &proposal_body(View(view), &b),
        ),
    }
}

/// E3 (vote then regressing vote) against `who`, later view `view` (≥ 3).
pub fn lock_violation(vs: &ValidatorSet, keys: &[PrivateKey], who: u16, view: u64) -> Evidence {
    let k = &keys[who as usize];
    Evidence::LockViolation {
        offender: idx(who),
        vote: signed_vote(vs, k, who, vote_data(view - 1, view - 2, 1)),
        later: LaterMessage::Vote(signed_vote(vs, k, who, vote_data(view, view - 3, 2))),
    }
}

/// E3 (vote then regressing timeout) against `who`, timeout view `view` (≥ 3).
pub fn lock_violation_timeout(
    vs: &ValidatorSet,
    keys: &[PrivateKey],
    who: u16,
    view: u64,
) -> Evidence {
    let k = &keys[who as usize];
    let hqc = View(view - 3);
    Evidence::LockViolation {
        offender: idx(who),
        vote: signed_vote(vs, k, who, vote_data(view - 1, view - 2, 1)),
        later: LaterMessage::Timeout {
            view: View(view),
            hqc_view: hqc,
            sig: k.sign(
                vs.domain(),
                SigKind::Timeout,
                &timeout_body(View(view), hqc),
            ),
        },
    }
}

/// E4 against `who` in `view` (≥ 2).
pub fn conflicting_timeouts(
    vs: &ValidatorSet,
    keys: &[PrivateKey],
    who: u16,
    view: u64,
) -> Evidence {
    let k = &keys[who as usize];
    let (a, b) = (View(view - 1), View(view - 2));
    Evidence::ConflictingTimeouts {
        offender: idx(who),
        view: View(view),
        hqc_a: a,
        sig_a: k.sign(vs.domain(), SigKind::Timeout, &timeout_body(View(view), a)),
        hqc_b: b,
        sig_b: k.sign(vs.domain(), SigKind::Timeout, &timeout_body(View(view), b)),
    }
}

/// A proposal whose header has `parent ≠ justify_block`, signed by `who`.
pub fn invalid_proposal(vs: &ValidatorSet, keys: &[PrivateKey], who: u16, view: u64) -> Evidence {
    let k = &keys[who as usize];
    let header = BlockHeader {
        epoch: vs.domain().epoch(),
        view: View(view),
        height: Height(view),
        parent: digest(3, view),
        payload_digest: Digest::ZERO,
        proposer: idx(who),
        justify_view: View(view - 1),
        justify_block: digest(4, view),
        skipped_leaders: Vec::new(),
    };
    let id = header.id(vs.domain());
    Evidence::InvalidProposal {
        offender: idx(who),
        sig: k.sign(
            vs.domain(),
            SigKind::Proposal,
            &proposal_body(View(view), &id),
        ),
        header,
        parent: None,
    }
}

/// One item of every kind against `who` around `view` (≥ 3).
pub fn every_kind(vs: &ValidatorSet, keys: &[PrivateKey], who: u16, view: u64) -> Vec<Evidence> {
    vec![
        double_vote(vs, keys, who, view),
        double_proposal(vs, keys, who, view),
        lock_violation(vs, keys, who, view),
        conflicting_timeouts(vs, keys, who, view),
        invalid_proposal(vs, keys, who, view),
    ]
}
