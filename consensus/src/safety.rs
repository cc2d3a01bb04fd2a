//! The safety record and the safety module: the only code that signs votes and timeouts
//! (PROTOCOL.md §3, §4.5; Aptos SafetyRules).

use crate::block::Block;
use crate::cert::{QuorumCert, TimeoutCert, VoteData};
use crate::crypto::{PrivateKey, SigKind, Signature};
use crate::messages::{Proposal, Timeout, Vote, proposal_body};
use crate::types::{BlockId, ValidatorIndex, View};
use crate::validators::ValidatorSet;
use borsh::{BorshDeserialize, BorshSerialize};

/// The persisted safety record, replaced atomically and synced before any message that depends
/// on it leaves (PROTOCOL.md §3). Never restored from a backup.
///
/// Invariants: `last_voted_view`, `last_timeout_view`, `last_proposed_view` and `lock.view` never
/// decrease. `high_tc` is a liveness hint kept in the same record so restart can compute
/// `current_view` (§4.8 step 2).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SafetyData {
    /// Highest view we voted in; we never vote in a view ≤ this.
    pub last_voted_view: View,
    /// Highest view we timed out in; we never vote in a view ≤ this.
    pub last_timeout_view: View,
    /// Highest view we proposed in, or reserved to propose in (§3 rule 4, "reserved
    /// proposal"); we never propose in a view ≤ this one loaded from storage.
    pub last_proposed_view: View,
    /// The lock = the highest QC seen (HotStuff-2 has no separate key phase).
    pub lock: QuorumCert,
    /// Our last vote, re-sent identically on request.
    pub last_vote: Option<Vote>,
    /// Our last timeout, re-sent identically.
    pub last_timeout: Option<Timeout>,
    /// Our last proposal without its block, re-sent identically after a restart (the block is
    /// in the block store: it is persisted with this record, §3 rule 4).
    pub last_proposal: Option<ProposalRecord>,
    /// Highest TC known (liveness only).
    pub high_tc: Option<TimeoutCert>,
}

/// A signed proposal without its block: view, block id, TC and signature (about 100 bytes
/// plus the TC). With the block it is the [`Proposal`] again ([`ProposalRecord::with_block`]).
///
/// The safety record keeps this instead of the whole proposal because the record is rewritten
/// (synced) at every vote and timeout: carrying a block of up to 1 MiB there wrote it again at
/// every view on every validator, about a third of a node's CPU at 9,000 tx/s (issue 10 note).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProposalRecord {
    /// The proposal's view (= its block's view).
    pub view: View,
    /// The proposed block's id.
    pub block_id: BlockId,
    /// TC for `view − 1`, if the proposal carried one.
    pub tc: Option<TimeoutCert>,
    /// Our signature on `D(PROPOSAL, view ‖ block_id)`.
    pub sig: Signature,
}

impl ProposalRecord {
    /// The record of proposal `p` whose block has id `block_id`.
    pub fn of(p: &Proposal, block_id: BlockId) -> Self {
        ProposalRecord {
            view: p.block.view,
            block_id,
            tc: p.tc.clone(),
            sig: p.sig,
        }
    }

    /// The proposal again, given its block. `None` if `block` is not the recorded one's view
    /// (the caller looks the block up by [`ProposalRecord::block_id`]).
    pub fn with_block(self, block: Block) -> Option<Proposal> {
        (block.view == self.view).then_some(Proposal {
            block,
            tc: self.tc,
            sig: self.sig,
        })
    }
}

impl SafetyData {
    /// The record of a fresh validator: locked on the genesis QC.
    pub fn genesis(genesis_id: BlockId) -> Self {
        SafetyData {
            last_voted_view: View(0),
            last_timeout_view: View(0),
            last_proposed_view: View(0),
            lock: QuorumCert::genesis(genesis_id),
            last_vote: None,
            last_timeout: None,
            last_proposal: None,
            high_tc: None,
        }
    }
}

/// Why the safety module refuses to sign. Never an error of the peer; just "do not sign".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Already voted in this view or later.
    AlreadyVoted,
    /// Timed out in this view or later (no vote after a timeout).
    TimedOut,
    /// `justify.view < lock.view` (voting rule 5).
    LockViolation,
    /// Already timed out in this view.
    AlreadyTimedOut,
    /// Already proposed in this view.
    AlreadyProposed,
    /// Signing is suspended: our key signed elsewhere in a recent view
    /// ([`SafetyModule::observe_own_signature`]).
    KeyInUseElsewhere,
    /// Signing is held by the double-sign check at start (PROTOCOL.md §4.10,
    /// [`SafetyModule::set_held`]).
    DoubleSignCheck,
}

/// Owns the private key and the safety record; checks the voting rule before signing.
#[derive(Debug)]
pub struct SafetyModule {
    key: PrivateKey,
    me: ValidatorIndex,
    data: SafetyData,
    /// No signature for any view ≤ this: a certificate showed our key signing in a view this
    /// module never signed in (PROTOCOL.md §4.9). `View(0)` (never suspended) at start.
    suspended_until: View,
    /// No signature at all while the double-sign check at start runs (PROTOCOL.md §4.10).
    /// `false` at construction; the core sets it on `Event::Start`.
    held: bool,
    /// Highest view this process signed a proposal in; the loaded `last_proposed_view` at
    /// construction, so a view reserved before a restart is never proposed in after it.
    /// `data.last_proposed_view ≥ proposed` always; the gap is a reservation.
    proposed: View,
    /// The voting-rule mutation canaries (simulator only).
    #[cfg(feature = "mutations")]
    mutations: crate::core::Mutations,
}

impl SafetyModule {
    /// Wrap `key` with the record `data` loaded from storage (or [`SafetyData::genesis`]).
    pub fn new(key: PrivateKey, me: ValidatorIndex, data: SafetyData) -> Self {
        SafetyModule {
            key,
            me,
            proposed: data.last_proposed_view,
            data,
            suspended_until: View(0),
            held: false,
            #[cfg(feature = "mutations")]
            mutations: crate::core::Mutations::default(),
        }
    }
    /// Switch on the canary mutations of the voting rule (feature `mutations`, simulator only).
    #[cfg(feature = "mutations")]
    pub(crate) fn with_mutations(mut self, mutations: crate::core::Mutations) -> Self {
        self.mutations = mutations;
        self
    }
    /// The record.
    pub fn data(&self) -> &SafetyData {
        &self.data
    }
    /// The lock.
    pub fn lock(&self) -> &QuorumCert {
        &self.data.lock
    }
    /// Observe a verified QC: raise the lock if higher (§4.1 step 1). Returns whether it rose.
    /// Persisted with the next signature.
    pub fn observe_qc(&mut self, qc: &QuorumCert) -> bool {
        if qc.view() > self.data.lock.view() {
            self.data.lock = qc.clone();
            true
        } else {
            false
        }
    }
    /// Key in use elsewhere (PROTOCOL.md §4.9): a verified certificate carries our signature on
    /// a vote (`timeout == false`) or a timeout (`timeout == true`) of `view`, a view above the
    /// last one this module signed such a message in. We did not sign it (we persist before
    /// sending), so another process holds our key, or this record was lost or rolled back. Raise
    /// the watermark to `view` (we must never sign there again) and suspend every signature for
    /// views ≤ `view + window`. Returns whether it was such a signature. `window == 0` disables
    /// the rule (the simulator's Twins, which are meant to equivocate).
    pub fn observe_own_signature(&mut self, view: View, timeout: bool, window: u64) -> bool {
        let mark = if timeout {
            &mut self.data.last_timeout_view
        } else {
            &mut self.data.last_voted_view
        };
        if window == 0 || view <= *mark {
            return false;
        }
        *mark = view;
        self.suspended_until = self
            .suspended_until
            .max(View(view.0.saturating_add(window)));
        true
    }

    /// Hold (`true`) or release every signature: the double-sign check at start (PROTOCOL.md
    /// §4.10). While held, [`SafetyModule::sign_vote`], [`SafetyModule::sign_timeout`] and
    /// [`SafetyModule::sign_proposal`] refuse with [`Refusal::DoubleSignCheck`].
    pub fn set_held(&mut self, held: bool) {
        self.held = held;
    }

    /// Whether signing is held by the double-sign check.
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// The refusal every signature gets first, whatever it signs: the check at start (§4.10)
    /// or the suspension after our key signed elsewhere (§4.9) covering `view`.
    fn gate(&self, view: View) -> Result<(), Refusal> {
        if self.held {
            return Err(Refusal::DoubleSignCheck);
        }
        if view <= self.suspended_until {
            return Err(Refusal::KeyInUseElsewhere);
        }
        Ok(())
    }

    /// Signatures are suspended for views ≤ this (`View(0)`: never suspended).
    pub fn suspended_until(&self) -> View {
        self.suspended_until
    }

    /// Record a higher TC. Returns whether it was higher.
    pub fn observe_tc(&mut self, tc: &TimeoutCert) -> bool {
        if self.data.high_tc.as_ref().is_none_or(|h| tc.view > h.view) {
            self.data.high_tc = Some(tc.clone());
            true
        } else {
            false
        }
    }

    /// Voting rule (§4.5 rules 4–6): for `block` (whose structural checks 1–3 passed and whose
    /// justify was observed), sign a vote iff `view > last_voted_view`, `view > last_timeout_view`
    /// and `justify.view ≥ lock.view`. On success the record is updated; the caller must persist
    /// it before sending the vote.
    pub fn sign_vote(
        &mut self,
        block: &Block,
        block_id: BlockId,
        vs: &ValidatorSet,
    ) -> Result<Vote, Refusal> {
        let v = block.view;
        let last_timeout_view = self.data.last_timeout_view;
        let lock_view = self.data.lock.view();
        #[cfg(feature = "mutations")]
        let (last_timeout_view, lock_view) =
            self.mutations.vote_bounds(last_timeout_view, lock_view);
        self.gate(v)?;
        if v <= self.data.last_voted_view {
            return Err(Refusal::AlreadyVoted);
        }
        if v <= last_timeout_view {
            return Err(Refusal::TimedOut);
        }
        if block.justify.view() < lock_view {
            return Err(Refusal::LockViolation);
        }
        let data = VoteData {
            view: v,
            block_id,
            height: block.height,
            parent_id: block.parent,
            parent_view: block.justify.view(),
        };
        let vote = Vote::sign(data, self.me, &self.key, vs);
        self.data.last_voted_view = v;
        self.data.last_vote = Some(vote.clone());
        Ok(vote)
    }

    /// Local timeout (§4.2): sign `Timeout(view, lock)` once per view.
    pub fn sign_timeout(&mut self, view: View, vs: &ValidatorSet) -> Result<Timeout, Refusal> {
        self.gate(view)?;
        if view <= self.data.last_timeout_view {
            return Err(Refusal::AlreadyTimedOut);
        }
        let high_qc = self.data.lock.clone();
        let body = crate::cert::timeout_body(view, high_qc.view());
        let sig = self.key.sign(vs.domain(), SigKind::Timeout, &body);
        let t = Timeout {
            view,
            high_qc,
            sender: self.me,
            sig,
            high_tc: self.data.high_tc.clone(),
            commit_qc: None,
        };
        self.data.last_timeout_view = view;
        self.data.last_timeout = Some(t.clone());
        Ok(t)
    }

    /// The highest view this process signed a proposal in (or the loaded
    /// `last_proposed_view` if higher): a leader never proposes in a view ≤ this.
    pub fn proposed_view(&self) -> View {
        self.proposed
    }

    /// Reserve `view` for a proposal of ours (PROTOCOL.md §3 rule 4, "reserved proposal"):
    /// raise `last_proposed_view` to `view` in the record *without* signing, so that the record
    /// persisted with the vote or timeout being signed now already forbids a second proposal in
    /// `view` after a restart. A proposal in a reserved view may then leave before its own
    /// record is synced ([`SafetyModule::proposal_reserved`]). Reserving a view we turn out not
    /// to lead only forbids proposing there after a restart. No effect if `view` is not above
    /// the record's `last_proposed_view`.
    pub fn reserve_proposal(&mut self, view: View) {
        if view > self.data.last_proposed_view {
            self.data.last_proposed_view = view;
        }
    }

    /// Whether a proposal in `view` needs no synced write of its own before it leaves: `view`
    /// was reserved ([`SafetyModule::reserve_proposal`]) in this process and not proposed in.
    /// The reservation is durable once the record that carried it was persisted, which persist
    /// before send (§3 rule 4) guarantees before any later message leaves.
    pub fn proposal_reserved(&self, view: View) -> bool {
        view > self.proposed && view <= self.data.last_proposed_view
    }

    /// Sign a proposal for `block` (at most once per view, §4.4). Refuses a view ≤
    /// [`SafetyModule::proposed_view`].
    pub fn sign_proposal(
        &mut self,
        block: Block,
        block_id: BlockId,
        tc: Option<TimeoutCert>,
        vs: &ValidatorSet,
    ) -> Result<Proposal, Refusal> {
        self.gate(block.view)?;
        if block.view <= self.proposed {
            return Err(Refusal::AlreadyProposed);
        }
        let sig = self.key.sign(
            vs.domain(),
            SigKind::Proposal,
            &proposal_body(block.view, &block_id),
        );
        let p = Proposal { block, tc, sig };
        self.proposed = p.block.view;
        self.data.last_proposed_view = self.data.last_proposed_view.max(p.block.view);
        self.data.last_proposal = Some(ProposalRecord::of(&p, block_id));
        Ok(p)
    }

    /// Sign a status for `view` with our lock.
    pub fn sign_status(&self, view: View, vs: &ValidatorSet) -> crate::messages::Status {
        let high_qc = self.data.lock.clone();
        let body = crate::messages::status_body(view, &high_qc);
        crate::messages::Status {
            view,
            sig: self.key.sign(vs.domain(), SigKind::Status, &body),
            high_qc,
            sender: self.me,
            high_tc: self.data.high_tc.clone(),
        }
    }
}
