//! Certificates observed, the two-chain commit rule, and block sync
//! (PROTOCOL.md §4.1, §4.7, §6.5).

use super::tree::Ancestry;
use super::{Action, Core, Entry, Timer};
use crate::Millis;
use crate::block::{Block, MAX_BLOCK_EVIDENCE};
use crate::cert::{QuorumCert, TimeoutCert, VoteData};
use crate::messages::BlockRequest;
use crate::policy::{FaultPolicy, InvalidReason};
use crate::types::{BlockId, Height, ValidatorIndex, View};
use std::collections::BTreeMap;

/// Maximum number of block ids waiting for a free sync slot.
const MAX_WANTED: usize = 64;

/// A block the core wants: its id, its height and its parent's id when known (from a verified
/// QC or a held child), and the peers to ask, in order.
#[derive(Debug)]
struct Want {
    target: BlockId,
    height: Option<Height>,
    parent: Option<BlockId>,
    peers: Vec<ValidatorIndex>,
}

#[derive(Debug)]
struct Inflight {
    want: Want,
    attempt: usize,
    /// When the current attempt was sent (ms).
    sent_at: Millis,
    /// When the latest armed `Timer::Sync` fires; an earlier one firing is stale.
    timer_at: Millis,
    /// The `stop_at` of the latest attempt.
    stop_at: Height,
}

/// In-flight block-sync requests (bounded by `Config::sync_max_inflight`).
#[derive(Debug, Default)]
pub(crate) struct SyncState {
    next_id: u64,
    inflight: BTreeMap<u64, Inflight>,
    wanted: Vec<Want>,
}

impl SyncState {
    pub(crate) fn is_syncing(&self) -> bool {
        !self.inflight.is_empty()
    }
    /// `(requests in flight, block ids waiting for a free slot)`.
    pub(crate) fn queued(&self) -> (usize, usize) {
        (self.inflight.len(), self.wanted.len())
    }
    fn is_fetching(&self, target: &BlockId) -> bool {
        self.inflight.values().any(|f| f.want.target == *target)
            || self.wanted.iter().any(|w| w.target == *target)
    }
    /// Whether a request in flight brings `target` (of `height`) as the second block of its
    /// answer: it targets a child of `target` and stops below `height`. A commit proof names
    /// the parent of the block its QC certifies; fetching both would ask for the same range
    /// twice.
    fn brings_as_parent(&self, target: &BlockId, height: Option<Height>) -> bool {
        self.inflight
            .values()
            .any(|f| f.want.parent == Some(*target) && height.is_some_and(|h| f.stop_at < h))
    }
    /// §6.5 rule 2: the highest known height below `height` that another request (in flight or
    /// waiting) targets: blocks at or under it come with that request, so a request for a
    /// block at `height` need not ask for them again.
    fn covered_below(&self, height: Height, except: u64) -> Option<Height> {
        let others = self
            .inflight
            .iter()
            .filter(|(id, _)| **id != except)
            .map(|(_, f)| &f.want)
            .chain(&self.wanted);
        others
            .filter_map(|w| w.height)
            .filter(|h| *h < height)
            .max()
    }
}

impl<P: FaultPolicy> Core<P> {
    /// §4.1 `observe_qc` for a verified QC, whatever carried it.
    pub(super) fn observe_qc(&mut self, qc: &QuorumCert) {
        self.certificate_seen(qc.view(), qc.signers.contains(self.cfg.me), false);
        if qc.view().0 > 0
            && !self.tree.contains(&qc.block_id())
            && qc.view() > self.tree.root_view()
        {
            let signers: Vec<_> = qc.signers.iter().collect();
            self.fetch_certified(&qc.data, &signers);
        }
        let raised = self.safety.observe_qc(qc);
        self.try_commit(qc);
        if qc.view() >= self.current_view
            && let Some(next) = qc.view().next()
        {
            self.enter_view(next, Entry::Qc);
        } else if raised
            && self
                .status_sent
                .is_some_and(|(v, lock)| v == self.current_view && lock < qc.view())
        {
            // Our lock rose after we told leader(v) about it (a vote or a QC arrived late):
            // correct it, or the leader may extend the lower lock and we could not vote (H2).
            self.send_status(self.current_view);
        }
    }

    /// §4.1 `observe_tc` for a verified TC.
    pub(super) fn observe_tc(&mut self, tc: &TimeoutCert) {
        self.certificate_seen(tc.view, tc.signers.contains(self.cfg.me), true);
        self.safety.observe_tc(tc);
        self.observe_qc(&tc.high_qc);
        if tc.view >= self.current_view
            && let Some(next) = tc.view.next()
        {
            self.enter_view(next, Entry::Tc);
        } else if tc.view.next() == Some(self.current_view)
            && tc.high_qc.view() < self.safety.lock().view()
            && self.status_sent.is_none_or(|(v, _)| v < self.current_view)
        {
            // We entered v by QC(v − 1) but the others timed out in v − 1: leader(v) enters by
            // this TC and waits for our status (H2) to learn the lock it lacks. Votes are
            // broadcast, so a lock held by few is rare, but a Byzantine voter can arrange it.
            self.send_status(self.current_view);
        }
    }

    /// §4.7: a QC whose view directly follows its parent's view commits the parent.
    fn try_commit(&mut self, qc: &QuorumCert) {
        let eligible = qc.is_commit_proof();
        #[cfg(feature = "mutations")]
        let eligible = eligible || self.cfg.mutations.commits(qc);
        if !eligible {
            return;
        }
        let target = qc.data.parent_id;
        let target_height = Height(qc.data.height.0.saturating_sub(1));
        if target_height <= self.tree.root_height() {
            // Already committed at that height: it must be the same block.
            if self
                .tree
                .committed_at(target_height)
                .is_some_and(|c| c != target)
            {
                self.halt(format!(
                    "QC of view {} commits {target} at height {target_height}, which is already \
                     committed to another block",
                    qc.view()
                ));
            }
            return;
        }
        self.commit_to(target, qc.clone());
    }

    /// Commit `target` and its ancestors down to the root, or fetch what is missing.
    fn commit_to(&mut self, target: BlockId, proof: QuorumCert) {
        match self.tree.ancestry(target) {
            Ancestry::Extends(chain) if chain.is_empty() => {}
            Ancestry::Extends(chain) => {
                let blocks = self.tree.commit(&chain);
                for (b, id) in blocks.iter().zip(&chain) {
                    self.policy.on_commit(b, *id);
                }
                self.counters.blocks_committed += blocks.len() as u64;
                self.commit_proof = Some(proof.clone());
                if self
                    .pending_commit
                    .as_ref()
                    .is_some_and(|p| p.data.height <= proof.data.height)
                {
                    self.pending_commit = None;
                }
                self.out.push(Action::Commit {
                    blocks,
                    ids: chain,
                    proof,
                });
            }
            Ancestry::Missing(id, height) => {
                let signers: Vec<_> = proof.signers.iter().collect();
                // The commit target is the proof's parent, one height below the proof's block.
                let height = height.or_else(|| {
                    (id == target)
                        .then(|| proof.data.height.0.checked_sub(1).map(Height))
                        .flatten()
                });
                if self
                    .pending_commit
                    .as_ref()
                    .is_none_or(|p| p.data.height < proof.data.height)
                {
                    self.pending_commit = Some(proof);
                }
                self.fetch(id, height, None, &signers);
            }
            Ancestry::Conflicts => {
                self.halt(format!(
                    "commit target {target} does not extend the committed root"
                ));
            }
        }
    }

    /// A verified certificate (QC, or TC when `timeout`) of `view`, signed by us or not
    /// (`ours`): §4.9 when it carries a signature of ours we never made, and the progress of
    /// the double-sign check at start (§4.10).
    fn certificate_seen(&mut self, view: View, ours: bool, timeout: bool) {
        if ours && self.own_signature_seen(view, timeout) {
            if let Some(check) = &mut self.sign_check {
                check.own_signature_elsewhere(view, self.now);
            }
        } else if !ours
            && view.0 > 0
            && let Some(check) = &mut self.sign_check
            && let Some(passed) = check.clean_certificate(view, self.now)
        {
            self.end_sign_check(passed);
        }
    }

    /// §4.9: a verified certificate of `view` carries our vote (`timeout == false`) or
    /// timeout signature. If we never signed there, suspend signing, say so loudly and return
    /// `true`.
    fn own_signature_seen(&mut self, view: View, timeout: bool) -> bool {
        let window = self.cfg.double_sign_window;
        let elsewhere = self.safety.observe_own_signature(view, timeout, window);
        if elsewhere {
            self.counters.own_signatures_elsewhere += 1;
            tracing::error!(
                view = view.0,
                kind = if timeout { "timeout" } else { "vote" },
                suspended_until = self.safety.suspended_until().0,
                "a certificate carries our signature for a view we never signed in: this key \
                 is in use elsewhere (or our safety record was lost); signing is suspended"
            );
        }
        elsewhere
    }

    fn halt(&mut self, why: String) {
        self.halted = true;
        self.out.push(Action::SafetyViolation(why));
    }

    /// Start fetching the block `about` certifies (and its missing ancestors), asking `hint`
    /// first (§6.5 rule 2).
    pub(super) fn fetch_certified(&mut self, about: &VoteData, hint: &[ValidatorIndex]) {
        self.fetch(
            about.block_id,
            Some(about.height),
            Some(about.parent_id),
            hint,
        );
    }

    /// Start fetching `target` (and its missing ancestors), of `height` and with `parent` when
    /// known, asking `hint` first (§6.5 rule 2).
    pub(super) fn fetch(
        &mut self,
        target: BlockId,
        height: Option<Height>,
        parent: Option<BlockId>,
        hint: &[ValidatorIndex],
    ) {
        if self.tree.contains(&target)
            || self.sync.is_fetching(&target)
            || self.sync.brings_as_parent(&target, height)
        {
            return;
        }
        let me = self.cfg.me;
        let mut peers: Vec<ValidatorIndex> = hint.iter().copied().filter(|i| *i != me).collect();
        for i in self.vs.indices() {
            if i != me && !peers.contains(&i) {
                peers.push(i);
            }
        }
        if peers.is_empty() {
            return;
        }
        let want = Want {
            target,
            height,
            parent,
            peers,
        };
        if self.sync.inflight.len() >= self.cfg.sync_max_inflight {
            if self.sync.wanted.len() < MAX_WANTED {
                self.sync.wanted.push(want);
            }
            return;
        }
        self.sync.next_id += 1;
        let id = self.sync.next_id;
        let want = self.order_peers(want, hint, id);
        self.sync.inflight.insert(
            id,
            Inflight {
                want,
                attempt: 0,
                sent_at: self.now,
                timer_at: self.now,
                stop_at: Height(0),
            },
        );
        self.counters.sync_requests += 1;
        self.issue_request(id);
    }

    /// §6.5 rule 2, the order of the peers asked: those heard from within
    /// [`Self::sync_quiet_ms`] first (a validator that crashed a moment ago has not been
    /// noticed by the transport yet, and a request to it would wait out the whole timeout),
    /// the hinted signers before the others, and successive requests starting at successive
    /// signers, so a node catching up spreads its requests over its peers.
    fn order_peers(&self, mut want: Want, hint: &[ValidatorIndex], id: u64) -> Want {
        let hinted = want.peers.iter().filter(|p| hint.contains(p)).count();
        if hinted > 0 {
            want.peers[..hinted].rotate_left((id % hinted as u64) as usize);
        }
        // Stable: keeps the hinted-first, rotated order within each group.
        want.peers.sort_by_key(|p| self.quiet(*p));
        want
    }

    /// Nothing arrived from validator `i` for [`Self::sync_quiet_ms`]: every live validator
    /// broadcasts a vote or a timeout in every view, so it has probably crashed.
    fn quiet(&self, i: ValidatorIndex) -> bool {
        self.last_heard
            .get(i.as_usize())
            .is_some_and(|t| self.now.saturating_sub(*t) > self.sync_quiet_ms())
    }

    /// Half of `silent_leader_ms` (250 ms at the node's defaults), at least 1 ms.
    fn sync_quiet_ms(&self) -> u64 {
        (self.cfg.silent_leader_ms / 2).max(1)
    }

    fn issue_request(&mut self, id: u64) {
        let root = self.tree.root_height();
        let Some(height) = self.sync.inflight.get(&id).map(|f| f.want.height) else {
            return;
        };
        let stop_at = height
            .and_then(|h| self.sync.covered_below(h, id))
            .map_or(root, |h| h.max(root));
        let now = self.now;
        let Some(f) = self.sync.inflight.get_mut(&id) else {
            return;
        };
        f.sent_at = now;
        f.stop_at = stop_at;
        let peer = f.want.peers[f.attempt % f.want.peers.len()];
        let request = BlockRequest {
            target: f.want.target,
            stop_at,
            max_blocks: self.cfg.sync_max_blocks,
        };
        self.out.push(Action::FetchBlocks {
            request_id: id,
            peer,
            request,
        });
        self.arm_sync_timer(id);
    }

    /// The next check of request `id`: at its timeout, or earlier to notice the peer going
    /// quiet.
    fn arm_sync_timer(&mut self, id: u64) {
        let probe = self.now + self.sync_quiet_ms();
        let Some(f) = self.sync.inflight.get_mut(&id) else {
            return;
        };
        let at = (f.sent_at + self.cfg.sync_timeout_ms).min(probe);
        f.timer_at = at;
        self.set_timer(Timer::Sync(id), at);
    }

    /// Retry with the next peer, giving up after asking every peer twice.
    fn retry(&mut self, id: u64) {
        let give_up = match self.sync.inflight.get_mut(&id) {
            Some(f) => {
                f.attempt += 1;
                f.attempt >= 2 * f.want.peers.len()
            }
            None => return,
        };
        if give_up {
            self.sync.inflight.remove(&id);
            self.next_wanted();
        } else {
            self.issue_request(id);
        }
    }

    /// Timer of request `id`: past `sync_timeout_ms`, ask the next peer; before it, ask the
    /// next peer only if the one asked went quiet while another did not (the earlier request
    /// stays open: whichever answer arrives first is used), else check again later.
    pub(super) fn on_sync_timeout(&mut self, id: u64) {
        let Some(f) = self
            .sync
            .inflight
            .get(&id)
            .filter(|f| self.now >= f.timer_at)
        else {
            return;
        };
        let asked = f.want.peers[f.attempt % f.want.peers.len()];
        let timed_out = self.now >= f.sent_at + self.cfg.sync_timeout_ms;
        let others_live = f.want.peers.iter().any(|p| *p != asked && !self.quiet(*p));
        if timed_out || (self.quiet(asked) && others_live) {
            self.retry(id);
        } else {
            self.arm_sync_timer(id);
        }
    }

    pub(super) fn on_fetch_failed(&mut self, id: u64) {
        self.retry(id);
    }

    fn next_wanted(&mut self) {
        while self.sync.inflight.len() < self.cfg.sync_max_inflight && !self.sync.wanted.is_empty()
        {
            let w = self.sync.wanted.remove(0);
            self.fetch(w.target, w.height, w.parent, &w.peers);
        }
    }

    /// §6.5: verify a response top-down from the requested target by hash links, verify each
    /// justify QC, insert, and resume whatever waited for the blocks.
    pub(super) fn on_blocks_fetched(&mut self, id: u64, from: ValidatorIndex, blocks: Vec<Block>) {
        let Some(target) = self.sync.inflight.get(&id).map(|f| f.want.target) else {
            return;
        };
        if blocks.is_empty() {
            // The peer does not hold the target: it has not received it yet, or pruned it
            // (storage `retained_from`). Not a fault: ask the next peer.
            self.counters.sync_unavailable += 1;
            self.retry(id);
            return;
        }
        let ids = match self.verify_chain(target, &blocks) {
            Ok(ids) => ids,
            Err(reason) => {
                self.invalid(from, reason);
                self.retry(id);
                return;
            }
        };
        self.sync.inflight.remove(&id);
        // Insert bottom-up, observing each justify (commits may follow).
        for (b, bid) in blocks.iter().zip(&ids).rev() {
            if self.tree.insert(*bid, b.clone()) {
                self.out.push(Action::PersistBlock {
                    id: *bid,
                    block: Box::new(b.clone()),
                });
            }
        }
        for b in blocks.iter().rev() {
            self.observe_qc(&b.justify);
        }
        if let Some(last) = blocks.last()
            && !self.tree.contains(&last.parent)
            && last.height.0 > self.tree.root_height().0 + 1
        {
            let signers: Vec<_> = last.justify.signers.iter().collect();
            self.fetch_certified(&last.justify.data, &signers);
        }
        self.resume_after_insert();
        self.next_wanted();
    }

    /// New blocks arrived: retry a commit waiting for its ancestry and a proposal waiting for
    /// its parent.
    pub(super) fn resume_after_insert(&mut self) {
        if let Some(proof) = self.pending_commit.clone() {
            self.commit_to(proof.data.parent_id, proof);
        }
        // Whatever brought the parent (a sync response or a late proposal), the parked
        // proposal of the current view is retried (issue 7 finding 6).
        if let Some((from, p)) = self.parked.take_if(|(_, p)| {
            p.block.view == self.current_view && self.tree.contains(&p.block.parent)
        }) {
            self.on_message(from, crate::messages::ConsensusMessage::Proposal(p), false);
        }
        self.try_propose();
    }

    /// Top-down checks: `blocks[0].id == target`, each parent link matches the next id and the
    /// justify, views strictly decrease, heights step down by one and stay above the root,
    /// every justify QC verifies. Returns the ids.
    fn verify_chain(
        &mut self,
        target: BlockId,
        blocks: &[Block],
    ) -> Result<Vec<BlockId>, InvalidReason> {
        if blocks.len() > self.cfg.sync_max_blocks as usize {
            return Err(InvalidReason::BadSyncResponse);
        }
        let domain = self.vs.domain().clone();
        let mut ids = Vec::with_capacity(blocks.len());
        let mut expect = target;
        for (i, b) in blocks.iter().enumerate() {
            let id = b.id(&domain);
            let linked = id == expect
                && b.parent == b.justify.block_id()
                && b.justify.view() < b.view
                && b.height > self.tree.root_height()
                && b.evidence.len() <= MAX_BLOCK_EVIDENCE
                && (i == 0 || {
                    let above = &blocks[i - 1];
                    b.view < above.view && b.height.next() == Some(above.height)
                });
            if !linked {
                return Err(InvalidReason::BadSyncResponse);
            }
            self.verify_qc(&b.justify)?;
            ids.push(id);
            expect = b.parent;
        }
        Ok(ids)
    }
}
