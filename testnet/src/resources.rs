//! The resource oracle (issue 7): what one Byzantine validator can make an honest node hold or
//! compute stays bounded, with bounds derived from the configuration (view window `K`, `n`).
//! Checked after every event of an honest instance (when `SimConfig::resource_oracle` is set):
//!
//! - `DETECTOR`: equivocation-detector records ≤ [`detector_bound`].
//! - `BLOCKS`: blocks in memory ≤ 2 + (current view − committed view), blocks persisted
//!   ≤ 1 + current view: with leaders that do not equivocate a view adds at most one block (the
//!   leader's), so a flood of other blocks shows as a surplus.
//! - `PARK`: the park slot holds only the current leader's proposal, and when that proposal
//!   leaves the slot in its view the node votes for it (or had timed out in the view, or its
//!   lock is above the proposal's justify, so that safety forbids the vote).
//! - `SIG_CHECKS` (when enabled): a bare TC that cannot matter to the receiver (a view before
//!   its previous view, a high QC not above its lock) costs no signature check; over the run,
//!   signature checks per received message average ≤ [`SIG_CHECKS_PER_MESSAGE`].
//! - `BLOCK_EVIDENCE`: every evidence item in an honest proposal verifies.
//! - `LOCK`: an honest lock is on a block that was proposed (or genesis).

use crate::net::InstanceId;
use crate::oracle::Violation;
use consensus::{
    BlockId, CoreStatus, Digest, Millis, ParkedProposal, Proposal, Resources, TimeoutCert,
    ValidatorSet, View,
};
use std::collections::BTreeSet;

/// Bound on the average number of signature checks per message an honest node receives over a
/// run. Measured without a flood: 1.7–2.0 (n = 4–10, one vote check per vote, `1 + quorum` for a
/// proposal and its justify), 3.3 for n = 10 with a silent leader every tenth view (timeouts,
/// statuses and TCs). Re-checking every bare TC of the crafted flood measured 5.3–10.4.
pub const SIG_CHECKS_PER_MESSAGE: f64 = 4.0;

/// Detector records bound for `n` validators and view window `k`: one vote, proposal and
/// timeout record per `(view, validator)` for views in `[v − 2k, v + k]`, plus two anchors per
/// validator.
pub fn detector_bound(n: usize, k: u64) -> usize {
    3 * n * (3 * k as usize + 2) + 2 * n
}

#[derive(Clone, Debug, Default)]
struct InstState {
    /// Messages delivered (all incarnations).
    messages: u64,
    /// Signature checks of finished incarnations, and of the current one so far.
    sigs_done: u64,
    sigs_now: u64,
    life: u32,
    /// Highest view it broadcast a timeout for.
    timed_out: View,
    /// The leader's proposal in its park slot at the last step.
    parked: Option<ParkedProposal>,
}

/// State of the resource oracle.
#[derive(Clone, Debug)]
pub struct ResourceOracle {
    vs: ValidatorSet,
    /// Whether `SIG_CHECKS` is checked.
    sig_work: bool,
    view_window: u64,
    /// Every block id sent in a proposal by anyone (and genesis).
    known_blocks: BTreeSet<BlockId>,
    verified_evidence: BTreeSet<Digest>,
    inst: Vec<InstState>,
}

fn violation(invariant: &'static str, at: Millis, detail: String) -> Result<(), Violation> {
    Err(Violation {
        invariant,
        detail,
        at,
    })
}

impl ResourceOracle {
    /// An oracle for `n_instances` instances of validator set `vs` with view window `K`;
    /// `sig_work`: check signature work too (`SIG_CHECKS`).
    pub fn new(
        vs: ValidatorSet,
        genesis: BlockId,
        n_instances: usize,
        view_window: u64,
        sig_work: bool,
    ) -> Self {
        ResourceOracle {
            vs,
            sig_work,
            view_window,
            known_blocks: BTreeSet::from([genesis]),
            verified_evidence: BTreeSet::new(),
            inst: vec![InstState::default(); n_instances],
        }
    }

    /// A proposal was sent (by anyone; `honest`: by an honest instance).
    pub fn on_proposal(&mut self, at: Millis, p: &Proposal, honest: bool) -> Result<(), Violation> {
        self.known_blocks.insert(p.block.id(self.vs.domain()));
        if !honest {
            return Ok(());
        }
        for ev in &p.block.evidence {
            if !self.verified_evidence.insert(ev.id()) {
                continue;
            }
            if let Err(e) = ev.verify(&self.vs) {
                return violation(
                    "BLOCK_EVIDENCE",
                    at,
                    format!(
                        "validator {} proposed a block of view {} carrying evidence against {} that does not verify ({e:?})",
                        p.block.proposer.0,
                        p.block.view.0,
                        ev.offender().0
                    ),
                );
            }
        }
        Ok(())
    }

    /// An honest instance broadcast a timeout of `view`.
    pub fn on_timeout_sent(&mut self, inst: InstanceId, view: View) {
        let s = &mut self.inst[inst];
        s.timed_out = s.timed_out.max(view);
    }

    /// A bare TC was delivered to honest `inst` whose lock view and current view were
    /// `lock_view`, `view` before; handling it cost `checks` signature checks. A TC of a view
    /// before `view − 1` with a high QC not above the lock cannot matter: it enters no view,
    /// raises no lock and prompts no status (only TC(view − 1) can).
    pub fn on_bare_tc(
        &mut self,
        at: Millis,
        inst: InstanceId,
        tc: &TimeoutCert,
        (lock_view, view): (View, View),
        checks: u64,
    ) -> Result<(), Violation> {
        let moot = tc.view.0.saturating_add(1) < view.0 && tc.high_qc.view() <= lock_view;
        if self.sig_work && moot && checks > 0 {
            return violation(
                "SIG_CHECKS",
                at,
                format!(
                    "instance {inst} checked {checks} signatures of a bare TC of view {} (high QC view {}) that cannot matter: it is in view {}, locked at view {}",
                    tc.view.0,
                    tc.high_qc.view().0,
                    view.0,
                    lock_view.0
                ),
            );
        }
        Ok(())
    }

    /// After an event of honest `inst` (incarnation `life`) that received a message if
    /// `message`: check the bounds against its status, resources and persisted block count.
    pub fn on_step(
        &mut self,
        at: Millis,
        (inst, life, message): (InstanceId, u32, bool),
        st: &CoreStatus,
        r: &Resources,
        persisted: usize,
    ) -> Result<(), Violation> {
        let n = self.vs.len();
        let s = &mut self.inst[inst];
        s.messages += message as u64;
        if s.life != life {
            s.sigs_done += s.sigs_now;
            s.life = life;
            s.parked = None;
        }
        s.sigs_now = r.signatures_verified;
        let bound = detector_bound(n, self.view_window);
        if r.detector_entries > bound {
            return violation(
                "DETECTOR",
                at,
                format!(
                    "instance {inst} holds {} detector records (bound 3·n·(3K+2)+2n = {bound}, n = {n}, K = {})",
                    r.detector_entries, self.view_window
                ),
            );
        }
        let span = st.view.0.saturating_sub(st.committed_view.0) as usize;
        if r.blocks_in_memory > 2 + span {
            return violation(
                "BLOCKS",
                at,
                format!(
                    "instance {inst} holds {} blocks in memory at view {} with committed view {} (bound 2 + {span})",
                    r.blocks_in_memory, st.view.0, st.committed_view.0
                ),
            );
        }
        if persisted as u64 > 1 + st.view.0 {
            return violation(
                "BLOCKS",
                at,
                format!(
                    "instance {inst} persisted {persisted} blocks by view {} (bound 1 + view; committed height {})",
                    st.view.0, st.committed_height.0
                ),
            );
        }
        if let Some(p) = r.parked
            && (p.view != st.view || p.proposer != st.leader)
        {
            return violation(
                "PARK",
                at,
                format!(
                    "instance {inst} parked validator {}'s block of view {} while in view {} led by {}",
                    p.proposer.0, p.view.0, st.view.0, st.leader.0
                ),
            );
        }
        if let Some(p) = s.parked.take()
            && r.parked.is_none_or(|q| q.block_id != p.block_id)
            && st.view == p.view
            && st.last_voted_view < p.view
            && s.timed_out < p.view
            && st.lock_view <= p.justify_view
        {
            return violation(
                "PARK",
                at,
                format!(
                    "instance {inst} dropped the leader's parked proposal of view {} without voting for it (still in the view, not timed out, lock view {})",
                    p.view.0, st.lock_view.0
                ),
            );
        }
        s.parked = r.parked;
        if st.lock_view.0 > 0 && !self.known_blocks.contains(&st.lock_block) {
            return violation(
                "LOCK",
                at,
                format!(
                    "instance {inst} is locked at view {} on block {:?} that nobody proposed",
                    st.lock_view.0, st.lock_block
                ),
            );
        }
        Ok(())
    }

    /// End of run: the average signature checks per received message of every instance that
    /// received any.
    pub fn finish(&self, at: Millis) -> Result<(), Violation> {
        for (i, s) in self.inst.iter().enumerate() {
            if !self.sig_work || s.messages == 0 {
                continue;
            }
            let avg = (s.sigs_done + s.sigs_now) as f64 / s.messages as f64;
            if avg > SIG_CHECKS_PER_MESSAGE {
                return violation(
                    "SIG_CHECKS",
                    at,
                    format!(
                        "instance {i} checked {} signatures for {} messages ({avg:.2} per message, bound {SIG_CHECKS_PER_MESSAGE})",
                        s.sigs_done + s.sigs_now,
                        s.messages
                    ),
                );
            }
        }
        Ok(())
    }
}
