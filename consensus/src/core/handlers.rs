//! The validation pipeline and per-message rules (PROTOCOL.md §6.1, §4.2, §4.5, §4.6).
//!
//! Stages, in order: sender membership; view window; signature; embedded certificates; observe
//! certificates; semantic checks; the safety module. Our own messages (`trusted`) skip the
//! signature stages but follow the same rules — the leader votes for its own block through the
//! same path (§7 case 18).

use super::collect::TimeoutProgress;
use super::detector::ProposalSeen;
use super::{Core, Entry};
use crate::block::{MAX_BLOCK_EVIDENCE, MAX_SKIPPED_LEADERS};
use crate::crypto::SigKind;
use crate::evidence::Evidence;
use crate::messages::{
    ConsensusMessage, Proposal, Status, Timeout, Vote, proposal_body, status_body,
};
use crate::policy::{FaultPolicy, InvalidReason};
use crate::types::{ValidatorIndex, View};

/// Signatures an evidence item carries (what [`Evidence::verify`] checks when it verifies).
fn evidence_signatures(ev: &Evidence) -> u64 {
    match ev {
        Evidence::InvalidProposal { .. } => 1,
        Evidence::DoubleVote { .. }
        | Evidence::DoubleProposal { .. }
        | Evidence::LockViolation { .. }
        | Evidence::ConflictingTimeouts { .. } => 2,
    }
}

impl<P: FaultPolicy> Core<P> {
    pub(super) fn on_message(
        &mut self,
        from: ValidatorIndex,
        msg: ConsensusMessage,
        trusted: bool,
    ) {
        if !self.vs.contains(from) || msg.author().is_some_and(|a| !self.vs.contains(a)) {
            self.invalid(from, InvalidReason::BadSender);
            return;
        }
        if let Some(t) = self.last_heard.get_mut(from.as_usize()) {
            *t = self.now;
        }
        let result = match msg {
            ConsensusMessage::Proposal(p) => self.on_proposal(from, p, trusted),
            ConsensusMessage::Vote(v) => self.on_vote(v, trusted),
            ConsensusMessage::Timeout(t) => self.on_timeout(t, trusted),
            ConsensusMessage::Status(s) => self.on_status(s, trusted),
            ConsensusMessage::TimeoutCert(tc) => self.on_timeout_cert(&tc),
        };
        match result {
            Ok(()) => self.heard_during_sign_check(from),
            Err(reason) => self.invalid(from, reason),
        }
    }

    /// Whether `view` lies in the window for single-signature messages
    /// `[current_view − 1, current_view + K]` (§4.2 "Windows").
    pub(super) fn in_window(&self, view: View) -> bool {
        view.0.saturating_add(1) >= self.current_view.0
            && view.0 <= self.current_view.0.saturating_add(self.cfg.view_window)
    }

    /// A bare TC (§4.2): verified and observed only if it can change our state
    /// ([`Self::tc_matters`]); an old TC costs no signature check (issue 7 finding 5).
    fn on_timeout_cert(&mut self, tc: &crate::cert::TimeoutCert) -> Result<(), InvalidReason> {
        if self.tc_matters(tc) {
            self.verify_tc(tc)?;
            self.observe_tc(tc);
        }
        Ok(())
    }

    /// Verify (unless `trusted`) and observe the certificates a message carries. Each is checked
    /// only if `needed` by the message's own processing or if it can change our state; returns
    /// whether the QC was accepted (observed), so that the caller never relies on an unchecked
    /// QC. A TC that is not needed and cannot matter is skipped silently.
    fn harvest(
        &mut self,
        qc: &crate::cert::QuorumCert,
        qc_needed: bool,
        tc: Option<&crate::cert::TimeoutCert>,
        tc_needed: bool,
        trusted: bool,
    ) -> Result<bool, InvalidReason> {
        let use_qc = trusted || qc_needed || self.qc_matters(qc);
        let use_tc = tc.filter(|tc| trusted || tc_needed || self.tc_matters(tc));
        if !trusted {
            if use_qc {
                self.verify_qc(qc)?;
            }
            if let Some(tc) = use_tc {
                self.verify_tc(tc)?;
            }
        }
        if use_qc {
            self.observe_qc(qc);
        }
        if let Some(tc) = use_tc {
            self.observe_tc(tc);
        }
        Ok(use_qc)
    }

    /// §4.5: validate a proposal and vote for it if the safety rules allow.
    fn on_proposal(
        &mut self,
        from: ValidatorIndex,
        p: Proposal,
        trusted: bool,
    ) -> Result<(), InvalidReason> {
        let b = &p.block;
        let v = b.view;
        let id = b.id(self.vs.domain());
        if !trusted {
            let body = proposal_body(v, &id);
            if !self.check_sig(b.proposer, SigKind::Proposal, &body, &p.sig) {
                return Err(InvalidReason::BadSignature);
            }
        }
        // The certificates are harvested first, whatever the proposal: a node far behind
        // catches up from them. Outside the view window they are checked only if they can
        // change our state (issue 7 finding 5), and the proposal itself is then done with.
        let in_window = self.in_window(v);
        let justified = self.harvest(&b.justify, in_window, p.tc.as_ref(), in_window, trusted)?;
        if !justified {
            return Ok(());
        }
        // E2 before any other check: two signed proposals of one view are evidence whatever
        // else is wrong with them. Only inside the view window: recording far-future views
        // would let one validator grow the detector without bound (issue 7 finding 4).
        let seen = if in_window {
            self.detector.on_proposal(b.proposer, v, id, p.sig)
        } else {
            ProposalSeen::New
        };
        match seen {
            ProposalSeen::Equivocation(ev) => {
                self.report_evidence(*ev);
                return Ok(());
            }
            ProposalSeen::Duplicate => {
                if let Some(vote) = self.safety.data().last_vote.clone()
                    && vote.data.block_id == id
                {
                    // A re-sent proposal: its leader may have missed our vote.
                    self.out
                        .push(super::Action::Broadcast(ConsensusMessage::Vote(vote)));
                    return Ok(());
                }
            }
            ProposalSeen::New => {}
        }
        // Structural rules bound by the signed id: the proposer is accountable.
        if b.parent != b.justify.block_id() || v <= b.justify.view() {
            self.report_evidence(Evidence::InvalidProposal {
                offender: b.proposer,
                header: b.header(),
                sig: p.sig,
                parent: None,
            });
            return Err(InvalidReason::InvalidBlock);
        }
        if b.epoch != self.vs.domain().epoch() {
            return Err(InvalidReason::InvalidBlock);
        }
        if v > self.current_view {
            // A future view without a valid certificate for v − 1.
            return Err(InvalidReason::MissingTc);
        }
        if v.0.saturating_add(1) < self.current_view.0 {
            return Ok(());
        }
        if b.payload.len() > self.cfg.max_payload_bytes || b.evidence.len() > MAX_BLOCK_EVIDENCE {
            return Err(InvalidReason::InvalidBlock);
        }
        // Who may propose in v, with which certificate and which skipped leaders: checked before
        // the block is parked, stored or persisted, so only the leader's proposal can take the
        // park slot or reach the disk (issue 7 findings 6, 7).
        if b.proposer != self.leader(v) {
            return Err(InvalidReason::WrongLeader);
        }
        if b.justify.view().0 + 1 < v.0 {
            let ok = p.tc.as_ref().is_some_and(|tc| {
                tc.view.next() == Some(v) && b.justify.view() >= tc.high_qc.view()
            });
            if !ok {
                return Err(InvalidReason::MissingTc);
            }
        }
        if b.skipped_leaders != self.expected_skipped(b.justify.view(), v) {
            return Err(InvalidReason::InvalidBlock);
        }
        let Some(parent) = self.tree.get(&b.parent) else {
            if v == self.current_view {
                // `b.parent == b.justify.block_id()`, checked above.
                let signers: Vec<ValidatorIndex> = b.justify.signers.iter().collect();
                let about = b.justify.data.clone();
                self.parked = Some((from, p));
                self.fetch_certified(&about, &signers);
            }
            return Ok(());
        };
        if parent.height.next() != Some(b.height) {
            let parent_header = parent.header();
            self.report_evidence(Evidence::InvalidProposal {
                offender: b.proposer,
                header: b.header(),
                sig: p.sig,
                parent: Some(parent_header),
            });
            return Err(InvalidReason::InvalidBlock);
        }
        if v < self.current_view {
            // The previous view's block, arriving after its QC moved us on (votes can outrun
            // the proposal, §7 case 1): keep it so that nobody has to fetch it.
            let block = p.block;
            if self.tree.insert(id, block.clone()) {
                self.out.push(super::Action::PersistBlock {
                    id,
                    block: Box::new(block),
                });
                self.resume_after_insert();
            }
            return Ok(());
        }
        if !trusted && b.evidence.iter().any(|e| e.verify(&self.vs).is_err()) {
            return Err(InvalidReason::BadEvidence);
        }
        let block = p.block;
        if self.tree.insert(id, block.clone()) {
            self.out.push(super::Action::PersistBlock {
                id,
                block: Box::new(block.clone()),
            });
        }
        if let Ok(vote) = self.safety.sign_vote(&block, id, &self.vs) {
            self.counters.votes_sent += 1;
            self.reserve_next_proposal(block.view);
            self.persist_safety();
            // Votes go to every validator, not only leader(v + 1) (PROTOCOL.md §9): when
            // the next leader is dead, every node still forms QC(v), enters v + 1 at once, and
            // the block of v is extended by the first live leader after v + 1.
            self.broadcast(ConsensusMessage::Vote(vote));
        }
        Ok(())
    }

    /// `leader(u)` for `u` in `(justify_view, view)`, the last [`MAX_SKIPPED_LEADERS`] of them.
    pub(super) fn expected_skipped(&self, justify_view: View, view: View) -> Vec<ValidatorIndex> {
        let start = (justify_view.0 + 1).max(view.0.saturating_sub(MAX_SKIPPED_LEADERS as u64));
        (start..view.0).map(|u| self.leader(View(u))).collect()
    }

    /// §4.6: aggregate every vote of the window (votes are broadcast, so every node forms the
    /// QC); detect E1/E3 on every vote.
    fn on_vote(&mut self, vote: Vote, trusted: bool) -> Result<(), InvalidReason> {
        let v = vote.data.view;
        if !self.in_window(v) {
            return Ok(());
        }
        if !trusted
            && !self.check_sig(
                vote.voter,
                SigKind::Vote,
                &crate::encode(&vote.data),
                &vote.sig,
            )
        {
            return Err(InvalidReason::BadSignature);
        }
        for ev in self.detector.on_vote(vote.voter, &vote.data, vote.sig) {
            self.report_evidence(ev);
        }
        if let Some(qc) = self.votes.add(&self.vs, vote.voter, &vote.data, vote.sig) {
            self.counters.qcs_formed += 1;
            self.observe_qc(&qc);
        }
        Ok(())
    }

    /// §4.2 "On receiving Timeout".
    fn on_timeout(&mut self, t: Timeout, trusted: bool) -> Result<(), InvalidReason> {
        if t.high_qc.view() >= t.view {
            return Err(InvalidReason::BadCertificate);
        }
        if !trusted && !self.check_sig(t.sender, SigKind::Timeout, &t.body(), &t.sig) {
            return Err(InvalidReason::BadSignature);
        }
        let in_window = self.in_window(t.view);
        if in_window {
            for ev in self
                .detector
                .on_timeout(t.sender, t.view, t.high_qc.view(), t.sig)
            {
                self.report_evidence(ev);
            }
        }
        // The high QC is needed only if aggregation would keep it (the highest so far of a new
        // sender's timeout for a view we collect); otherwise it is checked only if it can change
        // our state. Certificates are harvested even from stale or far-future timeouts (§7
        // case 3).
        let collects = in_window && t.view >= self.current_view;
        let qc_needed = collects
            && self
                .timeouts
                .would_keep_high_qc(t.view, t.sender, t.high_qc.view());
        let qc_ok = self.harvest(&t.high_qc, qc_needed, t.high_tc.as_ref(), false, trusted)?;
        if let Some(c) = &t.commit_qc {
            // Checked only if it commits above our tip (`qc_matters`), so a replayed or stale
            // proof costs no signature check.
            self.harvest(c, false, None, false, trusted)?;
        }
        if !collects || t.view < self.current_view {
            return Ok(());
        }
        if !qc_ok && !self.timeouts.has_high_qc_at_least(t.view, t.high_qc.view()) {
            // Cannot happen (an unneeded QC is one the tally already beats); kept as a guard so
            // that an unchecked QC never enters a TC.
            return Ok(());
        }
        let progress = self
            .timeouts
            .add(&self.vs, t.view, t.sender, &t.high_qc, t.sig);
        match progress {
            TimeoutProgress::Certificate(tc) => {
                tracing::debug!(view = tc.view.0, high_qc = tc.high_qc.view().0, "TC formed");
                self.counters.tcs_formed += 1;
                self.observe_tc(&tc);
            }
            TimeoutProgress::Join if t.view > self.current_view => {
                self.enter_view(t.view, Entry::Join);
                self.local_timeout(t.view);
            }
            _ => {}
        }
        self.try_propose();
        Ok(())
    }

    /// Statuses feed the leader's handover rule (H2) and carry certificates.
    fn on_status(&mut self, s: Status, trusted: bool) -> Result<(), InvalidReason> {
        if !trusted {
            let body = status_body(s.view, &s.high_qc);
            if !self.check_sig(s.sender, SigKind::Status, &body, &s.sig) {
                return Err(InvalidReason::BadSignature);
            }
        }
        // A status reporting a lock no higher than ours tells the leader nothing it must act on
        // (H2 needs only that the sender reported): its QC is checked only if it matters.
        self.harvest(&s.high_qc, false, s.high_tc.as_ref(), false, trusted)?;
        if !self.in_window(s.view) || s.view < self.current_view {
            return Ok(());
        }
        if s.view == self.current_view {
            self.leader_state.reported.insert(s.sender);
            self.try_propose();
        } else {
            self.statuses.entry(s.view).or_default().insert(s.sender);
        }
        Ok(())
    }

    /// Gossiped evidence: dedupe by its key first (a held key costs no signature check, so a
    /// replayed item is free), then verify once (counted in `signatures_verified`), then hand
    /// it to the policy.
    pub(super) fn on_evidence_received(&mut self, ev: Evidence) {
        if self.policy.knows_evidence(ev.key()) {
            return;
        }
        self.counters.signatures_verified += evidence_signatures(&ev);
        if ev.verify(&self.vs).is_err() {
            self.counters.invalid_messages += 1;
            return;
        }
        self.record_evidence(ev);
    }

    /// `t` with the proof of our latest commit attached, unless its high QC is that proof
    /// already (§6.3 rule 7). The signed body does not cover it.
    pub(super) fn with_commit_proof(&self, mut t: Timeout) -> Timeout {
        t.commit_qc = self
            .commit_proof
            .as_ref()
            .filter(|c| c.view() != t.high_qc.view())
            .cloned();
        t
    }

    /// Sign and broadcast our timeout for `view` (§4.2 "Local timeout").
    pub(super) fn local_timeout(&mut self, view: View) {
        if let Ok(t) = self.safety.sign_timeout(view, &self.vs) {
            tracing::info!(
                view = view.0,
                leader = self.leader(view).0,
                high_qc = t.high_qc.view().0,
                in_view_ms = self.now.saturating_sub(self.entered_at),
                "local timeout"
            );
            self.counters.timeouts_sent += 1;
            self.reserve_next_proposal(view);
            self.persist_safety();
            let t = self.with_commit_proof(t);
            self.broadcast(ConsensusMessage::Timeout(t));
            let at = self.now + self.cfg.resend_ms;
            self.set_timer(super::Timer::Resend(view), at);
        }
    }
}
