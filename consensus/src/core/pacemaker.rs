//! Views, timers and the leader's handover rule (PROTOCOL.md §4.2, §4.4).

use super::sign_check;
use super::{Action, Core, Entry, LeaderState, Timer};
use crate::block::Block;
use crate::messages::ConsensusMessage;
use crate::policy::FaultPolicy;
use crate::types::{ValidatorIndex, View};

impl<P: FaultPolicy> Core<P> {
    /// §4.8 step 3: arm the timer, re-send what we signed for the current view, send a status.
    pub(super) fn on_start(&mut self) {
        let v = self.current_view;
        self.begin_sign_check();
        self.entered_at = self.now;
        self.last_heard = vec![self.now; self.vs.len()];
        let at = self.now + self.view_timeout(v);
        self.view_deadline = at;
        self.set_timer(Timer::View(v), at);
        let data = self.safety.data().clone();
        if let Some(t) = data.last_timeout.filter(|t| t.view == v) {
            let t = self.with_commit_proof(t);
            self.out
                .push(Action::Broadcast(ConsensusMessage::Timeout(t)));
            let at = self.now + self.cfg.resend_ms;
            self.set_timer(Timer::Resend(v), at);
        }
        if let Some(vote) = data.last_vote.filter(|x| x.data.view == v) {
            self.broadcast(ConsensusMessage::Vote(vote));
        }
        let recorded = data.last_proposal.filter(|p| p.view == v);
        // The block is in the tree: persisted with the record, and above the committed root
        // (a committed proposal of view v would put the lock, hence the view, above v).
        if let Some(p) =
            recorded.and_then(|r| r.clone().with_block(self.tree.get(&r.block_id)?.clone()))
        {
            self.broadcast(ConsensusMessage::Proposal(p));
        }
        self.send_status(v);
        if self.leader(v) == self.cfg.me {
            let at = self.now + self.propose_wait(v);
            self.set_timer(Timer::ProposeWait(v), at);
            self.try_propose();
        }
    }

    /// §4.10: hold every signature from the start until the double-sign check passes.
    fn begin_sign_check(&mut self) {
        let views = self.cfg.double_sign_check_views;
        if views == 0 || self.sign_check.is_some() {
            return;
        }
        let data = self.safety.data();
        let floor = data.last_voted_view.max(data.last_timeout_view);
        let check =
            sign_check::SignCheck::new(floor, views, self.cfg.double_sign_check_ms, self.now);
        let (_, needed) = check.progress();
        tracing::info!(
            above_view = floor.0,
            certified_views = needed,
            hold_ms = self.cfg.double_sign_check_ms,
            "double-sign check: signing nothing until recent certificates show no other \
             process signing with this key"
        );
        let at = check.deadline();
        self.sign_check = Some(check);
        self.safety.set_held(true);
        self.set_timer(Timer::SignCheck, at);
        // A validator that is a quorum alone (a one-validator chain) has heard one.
        self.note_quorum_heard();
    }

    /// §4.10 step 4: a valid message from `from` during the check. Once validators of a
    /// quorum (with us) were heard from, silence can mean that the chain waits for us.
    pub(super) fn heard_during_sign_check(&mut self, from: ValidatorIndex) {
        if from != self.cfg.me
            && let Some(check) = &mut self.sign_check
            && check.heard(from)
        {
            self.note_quorum_heard();
        }
    }

    /// §4.10 step 4: mark the check's quorum heard once we and the validators heard from since
    /// it began hold a quorum.
    fn note_quorum_heard(&mut self) {
        let me = self.cfg.me;
        let Some(check) = &mut self.sign_check else {
            return;
        };
        let power = self.vs.power(me)
            + check
                .heard_from()
                .filter(|i| *i != me)
                .map(|i| self.vs.power(i))
                .sum::<u64>();
        if power >= self.vs.quorum() {
            check.quorum_heard();
        }
    }

    /// §4.10: the check passed. Release signing and catch up on what the hold skipped: the
    /// local timeout of a view whose timer already fired if another validator timed out in it
    /// too (otherwise the view's timer restarts), and our proposal if we lead.
    pub(super) fn end_sign_check(&mut self, passed: sign_check::Passed) {
        let Some(check) = self.sign_check.take() else {
            return;
        };
        self.safety.set_held(false);
        let held_ms = check.held_ms(self.now);
        self.counters.sign_check_held_ms = held_ms;
        let (clean, _) = check.progress();
        tracing::info!(
            held_ms,
            clean_certified_views = clean,
            reason = match passed {
                sign_check::Passed::CleanCertificates =>
                    "recent certificates carry no signature of ours",
                sign_check::Passed::ChainWaiting =>
                    "no new certificate: the chain waits for our signature",
            },
            "double-sign check passed: signing resumes"
        );
        let v = self.current_view;
        if self.now >= self.view_deadline {
            if self.timeouts.reported(v).any(|s| s != self.cfg.me) {
                // Others gave up on v and may need our timeout for TC(v).
                self.local_timeout(v);
            } else {
                // Nobody gave up on v (a network that started together holds every signature
                // for the same time): v gets a full view timer from now, so its leader's slot is
                // not lost to the hold and recorded as failed (§6.3).
                let at = self.now + self.view_timeout(v);
                self.view_deadline = at;
                self.set_timer(Timer::View(v), at);
            }
        }
        if self.leader(v) == self.cfg.me {
            self.try_propose();
        }
    }

    pub(super) fn on_timer(&mut self, t: Timer) {
        match t {
            // A timer armed before the deadline moved later (end of the double-sign check)
            // is stale.
            Timer::View(v) if v == self.current_view && self.now >= self.view_deadline => {
                self.local_timeout(v);
            }
            Timer::Resend(v) if v == self.current_view => {
                if let Some(t) = self
                    .safety
                    .data()
                    .last_timeout
                    .clone()
                    .filter(|t| t.view == v)
                {
                    let t = self.with_commit_proof(t);
                    self.out
                        .push(Action::Broadcast(ConsensusMessage::Timeout(t)));
                    if self.entry != Entry::Qc {
                        self.send_status(v);
                    }
                    let at = self.now + self.cfg.resend_ms;
                    self.set_timer(Timer::Resend(v), at);
                }
            }
            Timer::ProposeWait(v) if v == self.current_view => {
                self.leader_state.wait_elapsed = true;
                self.try_propose();
            }
            Timer::Sync(id) => self.on_sync_timeout(id),
            Timer::SignCheck => {
                // Silence means "the chain waits for us" only after validators of a quorum were
                // heard from and while we are connected to a quorum: a node that others do not
                // talk to (a copy of a key whose peers reach the other instance, a partitioned
                // minority) keeps holding. Every validator hears our status again, for the same
                // rule of theirs.
                let hears_quorum = self.hears_quorum();
                let now = self.now;
                let Some(check) = &mut self.sign_check else {
                    return;
                };
                match check.expired(now).filter(|_| hears_quorum) {
                    Some(passed) => self.end_sign_check(passed),
                    None => {
                        let heard = check.has_heard_quorum();
                        if !hears_quorum || !heard {
                            check.restart_wait(now);
                        }
                        let at = check.deadline();
                        self.set_timer(Timer::SignCheck, at);
                        self.send_status(self.current_view);
                    }
                }
            }
            _ => {}
        }
    }

    /// Backoff exponent `e = min(e_max, max(0, v − high_qc.view − 2 − f))` (PROTOCOL.md §4.2).
    ///
    /// Counted from the high QC (the lock), not from the committed root: any certified view
    /// resets it, so a dead leader among live ones costs one base timeout per view it leads.
    /// Up to `f` consecutive failed views (f crashed leaders in a row) still run at `τ_base`;
    /// only a longer run of failures — asynchrony, a partitioned minority — backs off.
    pub(super) fn backoff_exponent(&self, v: View) -> u32 {
        let gap =
            v.0.saturating_sub(self.safety.lock().view().0)
                .saturating_sub(2 + self.vs.max_excluded() as u64);
        #[cfg(feature = "mutations")]
        let gap = self.mutated_backoff_gap(gap);
        gap.min(self.cfg.backoff_exponent_max as u64) as u32
    }

    /// `base · (backoff_percent / 100)^e`, integer arithmetic, saturating.
    fn backed_off(&self, base: u64, v: View) -> u64 {
        let pct = self.cfg.backoff_percent.max(100);
        (0..self.backoff_exponent(v)).fold(base, |t, _| t.saturating_mul(pct) / 100)
    }

    /// `τ(v) = min(τ_max, τ_base · b^e)` in ms (§4.2; `b = backoff_percent / 100`).
    pub(super) fn view_timeout(&self, v: View) -> u64 {
        self.backed_off(self.cfg.timeout_base_ms, v)
            .min(self.cfg.timeout_max_ms)
    }

    /// H3 wait `W(v) = min(2Δ · b^e, 0.4 · τ(v))` in ms (§4.4).
    pub(super) fn propose_wait(&self, v: View) -> u64 {
        let w = self.backed_off(self.cfg.delta_ms.saturating_mul(2), v);
        w.min(self.view_timeout(v) * 2 / 5)
    }

    /// Whether the driver reports validator `i` disconnected (only once it reported
    /// connectivity; never ourselves).
    pub(super) fn unreachable(&self, i: crate::types::ValidatorIndex) -> bool {
        self.connectivity_known && i != self.cfg.me && !self.connected.contains(&i)
    }

    /// Whether nothing arrived from validator `i` for longer than `silent_leader_ms` (never
    /// ourselves; never before `Event::Start`).
    fn silent(&self, i: crate::types::ValidatorIndex) -> bool {
        self.silent_for(i, self.cfg.silent_leader_ms)
    }

    /// Whether nothing arrived from validator `i` for longer than `ms` (never ourselves; never
    /// before `Event::Start`).
    fn silent_for(&self, i: crate::types::ValidatorIndex, ms: u64) -> bool {
        i != self.cfg.me
            && self
                .last_heard
                .get(i.as_usize())
                .is_some_and(|t| self.now.saturating_sub(*t) > ms)
    }

    /// The driver's view of who is connected changed: if the leader of the current view just
    /// became unreachable and we have not voted in this view, shorten the running view timer to
    /// the unreachable-leader grace (a timeout is always safe; waiting τ(v) for a leader we
    /// cannot hear from is not).
    pub(super) fn on_connectivity(&mut self, connected: Vec<crate::types::ValidatorIndex>) {
        self.connectivity_known = true;
        let before = std::mem::replace(
            &mut self.connected,
            connected
                .into_iter()
                .filter(|i| self.vs.contains(*i))
                .collect(),
        );
        if self.sign_check.is_some() {
            // §4.10: a status sent before a peer connected was lost; the peer may need ours to
            // hear a quorum.
            let new: Vec<_> = self.connected.difference(&before).copied().collect();
            if !new.is_empty() {
                let status = self.signed_status(self.current_view);
                for to in new {
                    self.send(to, ConsensusMessage::Status(status.clone()));
                }
            }
        }
        let v = self.current_view;
        let at = self
            .now
            .saturating_add(self.cfg.unreachable_leader_grace_ms);
        if self.unreachable(self.leader(v))
            && self.safety.data().last_voted_view < v
            && at < self.view_deadline
        {
            tracing::info!(
                view = v.0,
                leader = self.leader(v).0,
                timeout_ms = self.cfg.unreachable_leader_grace_ms,
                "leader unreachable: view timer shortened"
            );
            self.view_deadline = at;
            self.set_timer(Timer::View(v), at);
        }
        self.try_propose();
    }

    /// Our signed status for view `v` (our lock, §4.2), recorded as sent.
    fn signed_status(&mut self, v: View) -> crate::messages::Status {
        self.status_sent = Some((v, self.safety.lock().view()));
        self.safety.sign_status(v, &self.vs)
    }

    /// Sign our status for view `v` (our lock, §4.2) and send it to `leader(v)`; to every
    /// validator while the double-sign check holds (§4.10).
    pub(super) fn send_status(&mut self, v: View) {
        let status = self.signed_status(v);
        if self.sign_check.is_some() {
            // §4.10: while the double-sign check holds, every validator hears us, so that a
            // network that starts together hears a quorum (the leader alone would otherwise).
            self.broadcast(ConsensusMessage::Status(status));
        } else {
            let to = self.leader(v);
            self.send(to, ConsensusMessage::Status(status));
        }
    }

    /// Enter view `v` (> current) holding QC(v−1), TC(v−1), or by the join rule (§4.2).
    pub(super) fn enter_view(&mut self, v: View, entry: Entry) {
        if v <= self.current_view {
            return;
        }
        let old = self.current_view;
        self.policy.on_view_end(
            old,
            self.leader(old),
            entry == Entry::Qc && old.next() == Some(v),
            self.now,
        );
        self.current_view = v;
        self.entered_at = self.now;
        self.entry = entry;
        if entry == Entry::Tc {
            self.counters.views_via_tc += 1;
        }
        let floor = v.prev();
        self.votes.prune_below(floor);
        self.timeouts.prune_below(floor);
        self.detector
            .prune_below(View(v.0.saturating_sub(2 * self.cfg.view_window)));
        self.statuses = self.statuses.split_off(&v);
        let mut ls = LeaderState::default();
        if let Some(early) = self.statuses.remove(&v) {
            ls.reported = early;
        }
        ls.reported.extend(self.timeouts.reported(floor));
        self.leader_state = ls;
        if self.parked.as_ref().is_some_and(|(_, p)| p.block.view < v) {
            self.parked = None;
        }
        let leader = self.leader(v);
        let mut timeout = self.view_timeout(v);
        if self.unreachable(leader) || self.silent(leader) {
            timeout = timeout.min(self.cfg.unreachable_leader_grace_ms);
        }
        let fields = (v.0, old.0, leader.0, timeout, self.safety.lock().view().0);
        if entry == Entry::Qc {
            tracing::debug!(view = fields.0, from = fields.1, leader = fields.2, timeout_ms = fields.3,
                high_qc = fields.4, via = ?entry, "view entered");
        } else {
            tracing::info!(view = fields.0, from = fields.1, leader = fields.2, timeout_ms = fields.3,
                high_qc = fields.4, via = ?entry, "view entered without QC");
        }
        let at = self.now + timeout;
        self.view_deadline = at;
        self.set_timer(Timer::View(v), at);
        if entry != Entry::Qc {
            self.send_status(v);
        }
        if leader == self.cfg.me {
            if entry == Entry::Tc
                && let Some(tc) = self.safety.data().high_tc.clone()
            {
                self.out
                    .push(Action::Broadcast(ConsensusMessage::TimeoutCert(tc)));
            }
            if entry != Entry::Qc {
                let at = self.now + self.propose_wait(v);
                self.set_timer(Timer::ProposeWait(v), at);
            }
            self.try_propose();
        } else if self.policy.is_proven_byzantine(leader)
            || self.silent_for(leader, 2 * self.cfg.silent_leader_ms)
        {
            // Known-isolated leader, or one silent for longer than twice `silent_leader_ms`
            // (crashed; §4.2 rule 4): time out at once instead of waiting. While views keep
            // failing nothing commits, so the election (which reads committed blocks only)
            // cannot exclude a crashed validator yet and may draw it for several views in a
            // row; each of them then costs one round of timeouts, not a grace or a τ. (Once
            // `silent_leader_ms`, which a live validator reaches in a failed view of τ_base
            // whose timeout we have not received yet, gets the grace only.)
            self.local_timeout(v);
        }
    }

    /// §4.4: propose when H1, H2 or H3 holds (and we have not proposed in this view).
    pub(super) fn try_propose(&mut self) {
        let v = self.current_view;
        if self.leader(v) != self.cfg.me
            || self.safety.is_held()
            || self.safety.proposed_view() >= v
            || self.entry == Entry::Join
            || self.leader_state.payload_requested
        {
            return;
        }
        let justify_view = self.safety.lock().view();
        let h1 = justify_view.next() == Some(v);
        let h2 = self.all_reachable_locks_known();
        let h3 = self.leader_state.wait_elapsed;
        let ready = h1 || h2 || h3;
        #[cfg(feature = "mutations")]
        let ready = ready || self.proposes_on_quorum_statuses();
        if !ready {
            return;
        }
        if !h1 && !self.has_tc_for(v) {
            return;
        }
        let parent_id = self.safety.lock().block_id();
        let Some(parent) = self.tree.get(&parent_id) else {
            let signers: Vec<_> = self.safety.lock().signers.iter().collect();
            let about = self.safety.lock().data.clone();
            self.fetch_certified(&about, &signers);
            return;
        };
        let Some(height) = parent.height.next() else {
            return;
        };
        self.leader_state.payload_requested = true;
        self.out.push(Action::RequestPayload {
            view: v,
            parent: parent_id,
            height,
        });
    }

    /// H2 (PROTOCOL.md §4.4): the leader knows the lock of every validator that could vote for
    /// its proposal — every validator when the driver never reported connectivity (the
    /// simulator), else every validator it is connected to — and those hold a quorum of power.
    /// A validator we have no connection to cannot receive the proposal, so its lock cannot
    /// decide the view; waiting for its status would only add the H3 wait to every view after
    /// a crash. Nor does the leader of the view that just failed (entered by TC) when nothing
    /// arrived from it for `silent_leader_ms / 2`: it proposed nothing and sent nothing for
    /// most of its view — crashed, though its connection has not timed out yet (QUIC notices
    /// only after its idle timeout, 2 s). Only that leader: an honest validator holding a
    /// higher lock (§7 case 11) may also be quiet through a failed view until its timeout
    /// arrives, and H3 exists to wait for it. Proposing without a lock is safe either way (the
    /// voting rule decides safety; H2/H3 only decide whether the proposal gathers a quorum).
    fn all_reachable_locks_known(&self) -> bool {
        let me = self.cfg.me;
        let reported = &self.leader_state.reported;
        let mut power = self.vs.power(me);
        let failed_leader = (self.entry == Entry::Tc)
            .then(|| self.leader(self.current_view.prev()))
            .filter(|l| self.silent_for(*l, self.cfg.silent_leader_ms / 2));
        for i in self.vs.indices().filter(|i| *i != me) {
            if reported.contains(&i) {
                power = power.saturating_add(self.vs.power(i));
            } else if !self.unreachable(i) && Some(i) != failed_leader {
                return false;
            }
        }
        power >= self.vs.quorum()
    }

    fn has_tc_for(&self, v: View) -> bool {
        self.safety
            .data()
            .high_tc
            .as_ref()
            .is_some_and(|tc| tc.view.next() == Some(v))
    }

    /// §3 rule 4 (reserved proposal): when we lead `view + 1`, reserve it in the record about
    /// to be persisted with our vote or timeout of `view`, so that our proposal there needs no
    /// synced write of its own on the critical path of the next view.
    pub(super) fn reserve_next_proposal(&mut self, view: View) {
        if let Some(next) = view.next()
            && self.leader(next) == self.cfg.me
        {
            self.safety.reserve_proposal(next);
        }
    }

    /// Build, sign, persist and broadcast our proposal for `view` (§4.4).
    pub(super) fn on_payload(&mut self, view: View, mut payload: Vec<u8>) {
        if view != self.current_view
            || self.leader(view) != self.cfg.me
            || self.safety.proposed_view() >= view
        {
            return;
        }
        if payload.len() > self.cfg.max_payload_bytes {
            payload.clear();
        }
        let justify = self.safety.lock().clone();
        let tc = if justify.view().next() == Some(view) {
            None
        } else if self.has_tc_for(view) {
            self.safety.data().high_tc.clone()
        } else {
            return;
        };
        let Some(parent) = self.tree.get(&justify.block_id()) else {
            self.leader_state.payload_requested = false;
            return;
        };
        let Some(height) = parent.height.next() else {
            return;
        };
        let block = Block {
            epoch: self.vs.domain().epoch(),
            view,
            height,
            parent: justify.block_id(),
            skipped_leaders: self.expected_skipped(justify.view(), view),
            justify,
            payload,
            evidence: self
                .policy
                .evidence_for_block(crate::block::MAX_BLOCK_EVIDENCE),
            proposer: self.cfg.me,
        };
        let id = block.id(self.vs.domain());
        let reserved = self.safety.proposal_reserved(view);
        if let Ok(p) = self.safety.sign_proposal(block, id, tc, &self.vs) {
            tracing::debug!(
                view = view.0,
                height = p.block.height.0,
                justify = p.block.justify.view().0,
                waited_ms = self.now.saturating_sub(self.entered_at),
                skipped = ?p.block.skipped_leaders,
                "proposal sent"
            );
            self.counters.proposals_sent += 1;
            // A reserved view (§3 rule 4) was made durable with our vote or timeout of the
            // view before; the record with this proposal is persisted with our own vote for
            // it, which follows at once through the inbox.
            if reserved {
                self.counters.proposals_reserved += 1;
            } else {
                self.persist_safety();
            }
            self.broadcast(ConsensusMessage::Proposal(p));
        }
    }
}
