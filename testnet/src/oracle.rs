//! Invariant oracles (PROTOCOL.md §5 S1–S9, evidence, liveness), checked after every event on
//! honest instances, across restarts.

use crate::net::InstanceId;
use consensus::{
    Action, Block, BlockId, ConsensusMessage, CoreStatus, Digest, Evidence, EvidenceKind, Height,
    Millis, QuorumCert, SigKind, ValidatorIndex, ValidatorSet, View, encode,
};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Invariant name (S1…S9, EVIDENCE, FALSE_ACCUSATION, LIVENESS, …).
    pub invariant: &'static str,
    /// Human-readable details.
    pub detail: String,
    /// Virtual time.
    pub at: Millis,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] at t={}ms: {}",
            self.invariant, self.at, self.detail
        )
    }
}

/// Class of a signed single message, for equivocation tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MsgClass {
    /// A proposal (E2).
    Proposal,
    /// A vote (E1).
    Vote,
    /// A timeout (E4).
    Timeout,
}

/// Everything one honest identity signed (across restarts).
#[derive(Default, Debug)]
struct SignedHistory {
    votes: BTreeMap<View, consensus::VoteData>,
    /// Largest `parent_view` over `votes` (S6). Votes are stored only in increasing view with
    /// non-decreasing `parent_view` (S4 and S6 reject the rest), so this is also the
    /// `parent_view` of the latest vote.
    max_parent_view: Option<View>,
    timeouts: BTreeMap<View, View>,
    proposals: BTreeMap<View, BlockId>,
}

/// Last status snapshot of an instance (S7).
#[derive(Clone, Copy, Debug)]
struct Snap {
    life: u32,
    view: View,
    lock_view: View,
    last_voted: View,
    committed: Height,
}

/// An equivocation delivered to an honest node, which must yield evidence.
#[derive(Clone, Debug)]
pub struct Obligation {
    /// The equivocating validator.
    pub offender: ValidatorIndex,
    /// Kind of message.
    pub class: MsgClass,
    /// View.
    pub view: View,
    /// When the second message was delivered.
    pub at: Millis,
    /// Receiving instance.
    pub receiver: InstanceId,
}

/// The oracle state of one run.
pub struct Oracles {
    vs: ValidatorSet,
    n_instances: usize,
    /// Identities allowed to misbehave (Byzantine and twins).
    byzantine: BTreeSet<ValidatorIndex>,
    /// Height → committed id, over all honest instances (S1).
    committed: BTreeMap<Height, BlockId>,
    /// Committed chain per instance (S2).
    chains: Vec<Vec<BlockId>>,
    signed: BTreeMap<ValidatorIndex, SignedHistory>,
    /// First QC seen per view (S8).
    qcs: BTreeMap<View, QuorumCert>,
    /// Known blocks: id → (view, height, parent).
    blocks: BTreeMap<BlockId, (View, Height, BlockId)>,
    snaps: Vec<Option<Snap>>,
    /// Evidence produced by honest instances: (offender, kind, view).
    pub evidence: BTreeSet<(ValidatorIndex, EvidenceKind, View)>,
    /// Ids (BLAKE3 of the encoding) of evidence items already verified: honest instances
    /// produce the same item many times; it is checked once.
    verified_evidence: BTreeSet<Digest>,
    /// Deliveries to honest instances: first body per (receiver, author, class, view).
    delivered: BTreeMap<(InstanceId, ValidatorIndex, MsgClass, View), (Digest, ConsensusMessage)>,
    /// Equivocations that must produce evidence.
    pub obligations: Vec<Obligation>,
    /// Last commit time per instance.
    pub last_commit_at: Vec<Option<Millis>>,
    /// Commit times per instance: (time, new committed height).
    pub commit_log: Vec<Vec<(Millis, Height)>>,
    /// When each block id was committed first by each instance (for latency measurement).
    pub commit_time: BTreeMap<(InstanceId, BlockId), Millis>,
    /// Window of future views (K) used for the evidence obligation.
    pub view_window: u64,
}

fn v(inv: &'static str, at: Millis, detail: String) -> Violation {
    Violation {
        invariant: inv,
        detail,
        at,
    }
}

impl Oracles {
    /// Oracles for `n_instances` instances; `byzantine` identities are exempt from S3–S6 and may
    /// be accused.
    pub fn new(
        vs: ValidatorSet,
        genesis: &Block,
        n_instances: usize,
        byzantine: BTreeSet<ValidatorIndex>,
    ) -> Self {
        let gid = genesis.id(vs.domain());
        let mut committed = BTreeMap::new();
        committed.insert(Height(0), gid);
        let mut blocks = BTreeMap::new();
        blocks.insert(gid, (View(0), Height(0), Digest::ZERO));
        Oracles {
            vs,
            n_instances,
            byzantine,
            committed,
            chains: vec![vec![gid]; n_instances],
            signed: BTreeMap::new(),
            qcs: BTreeMap::new(),
            blocks,
            snaps: vec![None; n_instances],
            evidence: BTreeSet::new(),
            verified_evidence: BTreeSet::new(),
            delivered: BTreeMap::new(),
            obligations: Vec::new(),
            last_commit_at: vec![None; n_instances],
            commit_log: vec![Vec::new(); n_instances],
            commit_time: BTreeMap::new(),
            view_window: 100,
        }
    }

    /// The identities treated as Byzantine.
    pub fn byzantine(&self) -> &BTreeSet<ValidatorIndex> {
        &self.byzantine
    }

    /// Highest height committed by any honest instance.
    pub fn max_committed_height(&self) -> Height {
        self.committed
            .keys()
            .next_back()
            .copied()
            .unwrap_or(Height(0))
    }

    /// Committed chain of an instance.
    pub fn chain(&self, inst: InstanceId) -> &[BlockId] {
        &self.chains[inst]
    }

    fn note_block(&mut self, b: &Block, id: BlockId) {
        self.blocks
            .entry(id)
            .or_insert((b.view, b.height, b.parent));
    }

    fn note_qc(&mut self, qc: &QuorumCert, at: Millis, genesis: &BlockId) -> Result<(), Violation> {
        if qc.view() == View(0) {
            return Ok(());
        }
        if let Some(prev) = self.qcs.get(&qc.view()) {
            if prev.block_id() != qc.block_id() {
                // Only a violation if both certificates are genuine.
                let a = prev.verify(&self.vs, genesis).is_ok();
                let b = qc.verify(&self.vs, genesis).is_ok();
                if a && b {
                    return Err(v(
                        "S8",
                        at,
                        format!(
                            "two blocks certified in view {}: {:?} and {:?}",
                            qc.view(),
                            prev.block_id(),
                            qc.block_id()
                        ),
                    ));
                }
                if !a && b {
                    self.qcs.insert(qc.view(), qc.clone());
                }
            }
        } else {
            self.qcs.insert(qc.view(), qc.clone());
        }
        if let Some((bv, _, _)) = self.blocks.get(&qc.block_id())
            && *bv != qc.view()
        {
            return Err(v(
                "S8",
                at,
                format!(
                    "QC of view {} certifies block {:?} of view {}",
                    qc.view(),
                    qc.block_id(),
                    bv
                ),
            ));
        }
        Ok(())
    }

    fn qcs_of(msg: &ConsensusMessage) -> Vec<&QuorumCert> {
        let mut out = Vec::new();
        match msg {
            ConsensusMessage::Proposal(p) => {
                out.push(&p.block.justify);
                if let Some(tc) = &p.tc {
                    out.push(&tc.high_qc);
                }
            }
            ConsensusMessage::Vote(_) => {}
            ConsensusMessage::Timeout(t) => {
                out.push(&t.high_qc);
                if let Some(tc) = &t.high_tc {
                    out.push(&tc.high_qc);
                }
            }
            ConsensusMessage::Status(s) => {
                out.push(&s.high_qc);
                if let Some(tc) = &s.high_tc {
                    out.push(&tc.high_qc);
                }
            }
            ConsensusMessage::TimeoutCert(tc) => out.push(&tc.high_qc),
        }
        out
    }

    /// Check a message an honest instance sends (S3–S6, S8). `identity` is the instance's
    /// validator index; `lock_before` its lock view before the event.
    pub fn on_sent(
        &mut self,
        at: Millis,
        identity: ValidatorIndex,
        msg: &ConsensusMessage,
        lock_before: View,
        genesis: &BlockId,
    ) -> Result<(), Violation> {
        for qc in Self::qcs_of(msg) {
            self.note_qc(qc, at, genesis)?;
        }
        if self.byzantine.contains(&identity) {
            return Ok(());
        }
        let h = self.signed.entry(identity).or_default();
        match msg {
            ConsensusMessage::Vote(vote) => {
                if vote.voter != identity {
                    return Ok(()); // relaying is not signing
                }
                let d = &vote.data;
                if let Some(prev) = h.votes.get(&d.view) {
                    if prev != d {
                        return Err(v(
                            "S3",
                            at,
                            format!(
                                "validator {identity} signed two votes in view {}: {:?} and {:?}",
                                d.view, prev.block_id, d.block_id
                            ),
                        ));
                    }
                    return Ok(()); // identical re-send
                }
                if let Some((&last, _)) = h.votes.iter().next_back()
                    && last >= d.view
                {
                    return Err(v(
                        "S4",
                        at,
                        format!(
                            "validator {identity} voted in view {} after view {last}",
                            d.view
                        ),
                    ));
                }
                if h.timeouts.range(d.view..).next().is_some() {
                    return Err(v(
                        "S4",
                        at,
                        format!(
                            "validator {identity} voted in view {} after timing out in a view ≥ it",
                            d.view
                        ),
                    ));
                }
                if d.parent_view < lock_before {
                    return Err(v(
                        "S5",
                        at,
                        format!(
                            "validator {identity} voted in view {} for justify view {} below its lock {}",
                            d.view, d.parent_view, lock_before
                        ),
                    ));
                }
                if let Some(maxpv) = h.max_parent_view
                    && d.parent_view < maxpv
                {
                    return Err(v(
                        "S6",
                        at,
                        format!(
                            "validator {identity}: vote at {} has parent_view {} < {maxpv} of an earlier vote",
                            d.view, d.parent_view
                        ),
                    ));
                }
                h.max_parent_view = h.max_parent_view.max(Some(d.parent_view));
                h.votes.insert(d.view, d.clone());
            }
            ConsensusMessage::Timeout(t) => {
                if t.sender != identity {
                    return Ok(());
                }
                let hq = t.high_qc.view();
                if let Some(prev) = h.timeouts.get(&t.view) {
                    if *prev != hq {
                        return Err(v(
                            "S4",
                            at,
                            format!(
                                "validator {identity} signed two timeouts in view {} (hqc {prev} and {hq})",
                                t.view
                            ),
                        ));
                    }
                    return Ok(());
                }
                // Max parent_view over votes of views ≤ t.view: the last such vote's (stored
                // parent views are non-decreasing in view, see `max_parent_view`).
                if let Some(maxpv) = h
                    .votes
                    .range(..=t.view)
                    .next_back()
                    .map(|(_, x)| x.parent_view)
                    && hq < maxpv
                {
                    return Err(v(
                        "S6",
                        at,
                        format!(
                            "validator {identity}: timeout at {} reports hqc {hq} < parent_view {maxpv} of an earlier vote",
                            t.view
                        ),
                    ));
                }
                h.timeouts.insert(t.view, hq);
            }
            ConsensusMessage::Proposal(p) => {
                let id = p.block.id(self.vs.domain());
                if p.block.proposer == identity {
                    let h = self.signed.entry(identity).or_default();
                    if let Some(prev) = h.proposals.get(&p.block.view) {
                        if *prev != id {
                            return Err(v(
                                "S4",
                                at,
                                format!(
                                    "validator {identity} proposed two blocks in view {}",
                                    p.block.view
                                ),
                            ));
                        }
                    } else {
                        h.proposals.insert(p.block.view, id);
                    }
                }
                self.note_block(&p.block, id);
            }
            ConsensusMessage::Status(_) | ConsensusMessage::TimeoutCert(_) => {}
        }
        Ok(())
    }

    /// Check an honest instance's `Commit` action (S1, S2, S9).
    pub fn on_commit(
        &mut self,
        at: Millis,
        inst: InstanceId,
        blocks: &[Block],
        ids: &[BlockId],
        proof: &QuorumCert,
        genesis: &BlockId,
    ) -> Result<(), Violation> {
        for (b, id) in blocks.iter().zip(ids) {
            self.note_block(b, *id);
        }
        self.note_qc(proof, at, genesis)?;
        if !proof.is_commit_proof() {
            return Err(v(
                "S9",
                at,
                format!(
                    "instance {inst} committed with a proof of views {}→{} (not consecutive)",
                    proof.data.parent_view, proof.data.view
                ),
            ));
        }
        if let Some(last) = ids.last() {
            // The last committed block must be the proof's parent or one of its ancestors.
            let target_h = blocks.last().map(|b| b.height).unwrap_or(Height(0));
            let mut cur = proof.data.parent_id;
            let mut ok = None;
            for _ in 0..10_000 {
                if cur == *last {
                    ok = Some(true);
                    break;
                }
                match self.blocks.get(&cur) {
                    Some((_, h, p)) if *h > target_h => cur = *p,
                    Some(_) => {
                        ok = Some(false);
                        break;
                    }
                    None => break,
                }
            }
            if ok == Some(false) {
                return Err(v(
                    "S9",
                    at,
                    format!(
                        "instance {inst} committed {last:?} which is not an ancestor of the proof's parent {:?}",
                        proof.data.parent_id
                    ),
                ));
            }
        }
        let chain = &mut self.chains[inst];
        for (b, id) in blocks.iter().zip(ids) {
            let h = b.height.0 as usize;
            if h < chain.len() {
                if chain[h] != *id {
                    return Err(v(
                        "S2",
                        at,
                        format!(
                            "instance {inst} re-committed height {h} with {id:?}, had {:?}",
                            chain[h]
                        ),
                    ));
                }
                continue;
            }
            if h != chain.len() {
                return Err(v(
                    "S2",
                    at,
                    format!(
                        "instance {inst} committed height {h} with its tip at {}",
                        chain.len() - 1
                    ),
                ));
            }
            if b.parent != chain[h - 1] {
                return Err(v(
                    "S2",
                    at,
                    format!("instance {inst} committed {id:?} at height {h} not extending its tip"),
                ));
            }
            chain.push(*id);
            self.commit_time.entry((inst, *id)).or_insert(at);
            match self.committed.get(&b.height) {
                Some(other) if other != id => {
                    return Err(v(
                        "S1",
                        at,
                        format!(
                            "instance {inst} committed {id:?} at height {h}, another honest node committed {other:?}"
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    self.committed.insert(b.height, *id);
                }
            }
        }
        if !ids.is_empty() {
            self.last_commit_at[inst] = Some(at);
            let h = Height(chain.len() as u64 - 1);
            self.commit_log[inst].push((at, h));
        }
        Ok(())
    }

    /// Check evidence an honest instance produced: it must verify, and accuse a Byzantine
    /// identity.
    pub fn on_evidence(
        &mut self,
        at: Millis,
        inst: InstanceId,
        ev: &Evidence,
    ) -> Result<(), Violation> {
        let id = ev.id();
        if !self.verified_evidence.contains(&id)
            && let Err(e) = ev.verify(&self.vs)
        {
            return Err(v(
                "EVIDENCE",
                at,
                format!("instance {inst} produced evidence that does not verify: {e} ({ev:?})"),
            ));
        }
        if !self.byzantine.contains(&ev.offender()) {
            return Err(v(
                "FALSE_ACCUSATION",
                at,
                format!(
                    "instance {inst} accused honest validator {} ({:?} in view {})",
                    ev.offender(),
                    ev.kind(),
                    ev.view()
                ),
            ));
        }
        self.verified_evidence.insert(id);
        self.evidence.insert((ev.offender(), ev.kind(), ev.view()));
        Ok(())
    }

    /// Record a message delivered to an honest instance whose current view is `recv_view`;
    /// two different validly signed messages of one author, class and view make an obligation.
    pub fn on_delivered(
        &mut self,
        at: Millis,
        receiver: InstanceId,
        recv_view: View,
        msg: &ConsensusMessage,
    ) {
        let (author, class, view, body) = match msg {
            ConsensusMessage::Proposal(p) => (
                p.block.proposer,
                MsgClass::Proposal,
                p.block.view,
                p.block.id(self.vs.domain()),
            ),
            ConsensusMessage::Vote(x) => (x.voter, MsgClass::Vote, x.data.view, x.data.digest()),
            ConsensusMessage::Timeout(t) => {
                let mut d = [0u8; 32];
                d[..8].copy_from_slice(&t.high_qc.view().0.to_le_bytes());
                (t.sender, MsgClass::Timeout, t.view, Digest(d))
            }
            _ => return,
        };
        if view.0 + 1 < recv_view.0 || view.0 > recv_view.0.saturating_add(self.view_window) {
            return;
        }
        let key = (receiver, author, class, view);
        match self.delivered.get(&key) {
            None => {
                self.delivered.insert(key, (body, msg.clone()));
            }
            Some((d, first)) if *d != body => {
                let first_ok = self.sig_ok(first);
                if !self.sig_ok(msg) {
                    return;
                }
                if !first_ok {
                    self.delivered.insert(key, (body, msg.clone()));
                    return;
                }
                if !self
                    .obligations
                    .iter()
                    .any(|o| o.offender == author && o.class == class && o.view == view)
                {
                    self.obligations.push(Obligation {
                        offender: author,
                        class,
                        view,
                        at,
                        receiver,
                    });
                }
            }
            Some(_) => {}
        }
    }

    fn sig_ok(&self, msg: &ConsensusMessage) -> bool {
        match msg {
            ConsensusMessage::Proposal(p) => {
                let id = p.block.id(self.vs.domain());
                self.vs.verify(
                    p.block.proposer,
                    SigKind::Proposal,
                    &consensus::messages::proposal_body(p.block.view, &id),
                    &p.sig,
                )
            }
            ConsensusMessage::Vote(x) => {
                self.vs
                    .verify(x.voter, SigKind::Vote, &encode(&x.data), &x.sig)
            }
            ConsensusMessage::Timeout(t) => {
                self.vs
                    .verify(t.sender, SigKind::Timeout, &t.body(), &t.sig)
            }
            _ => false,
        }
    }

    /// Obligations without matching evidence from any honest instance.
    pub fn unmet_obligations(&self) -> Vec<&Obligation> {
        self.obligations
            .iter()
            .filter(|o| {
                !self.evidence.iter().any(|(off, kind, view)| {
                    *off == o.offender
                        && *view == o.view
                        && match o.class {
                            MsgClass::Vote => matches!(
                                kind,
                                EvidenceKind::DoubleVote | EvidenceKind::LockViolation
                            ),
                            MsgClass::Proposal => matches!(
                                kind,
                                EvidenceKind::DoubleProposal | EvidenceKind::InvalidProposal
                            ),
                            MsgClass::Timeout => *kind == EvidenceKind::ConflictingTimeouts,
                        }
                })
            })
            .collect()
    }

    /// Check S7 on a new status of `inst` (in its `life`-th incarnation).
    pub fn on_status(
        &mut self,
        at: Millis,
        inst: InstanceId,
        life: u32,
        st: &CoreStatus,
    ) -> Result<(), Violation> {
        let new = Snap {
            life,
            view: st.view,
            lock_view: st.lock_view,
            last_voted: st.last_voted_view,
            committed: st.committed_height,
        };
        if st.halted {
            return Err(v(
                "HALT",
                at,
                format!("honest instance {inst} halted on a safety violation"),
            ));
        }
        if let Some(old) = self.snaps[inst] {
            let same_life = old.life == life;
            let bad = if same_life {
                if new.view < old.view {
                    Some(("current_view", old.view.0, new.view.0))
                } else if new.lock_view < old.lock_view {
                    Some(("lock view", old.lock_view.0, new.lock_view.0))
                } else if new.last_voted < old.last_voted {
                    Some(("last voted view", old.last_voted.0, new.last_voted.0))
                } else if new.committed < old.committed {
                    Some(("committed height", old.committed.0, new.committed.0))
                } else {
                    None
                }
            } else if new.committed < old.committed {
                Some((
                    "committed height (across restart)",
                    old.committed.0,
                    new.committed.0,
                ))
            } else {
                None
            };
            if let Some((what, a, b)) = bad {
                return Err(v(
                    "S7",
                    at,
                    format!("instance {inst}: {what} decreased from {a} to {b}"),
                ));
            }
        }
        self.snaps[inst] = Some(new);
        Ok(())
    }

    /// Number of instances.
    pub fn n_instances(&self) -> usize {
        self.n_instances
    }

    /// Inspect an honest instance's action batch: S3–S6, S8 on sends, S1/S2/S9 on commits,
    /// evidence checks, core-reported safety violations.
    pub fn on_actions(
        &mut self,
        at: Millis,
        inst: InstanceId,
        identity: ValidatorIndex,
        lock_before: View,
        actions: &[Action],
        genesis: &BlockId,
    ) -> Result<(), Violation> {
        for a in actions {
            match a {
                Action::Send { msg, .. } | Action::Broadcast(msg) => {
                    self.on_sent(at, identity, msg, lock_before, genesis)?
                }
                Action::Commit { blocks, ids, proof } => {
                    self.on_commit(at, inst, blocks, ids, proof, genesis)?
                }
                Action::Evidence(ev) => self.on_evidence(at, inst, ev)?,
                Action::SafetyViolation(s) => {
                    return Err(v(
                        "SAFETY_VIOLATION",
                        at,
                        format!("honest instance {inst} reported: {s}"),
                    ));
                }
                Action::PersistBlock { id, block } => {
                    // Recomputed, not trusted: the core's id must be the block's.
                    let computed = block.id(self.vs.domain());
                    if computed != *id {
                        return Err(v(
                            "BLOCK_ID_MISMATCH",
                            at,
                            format!("PersistBlock id {id} is not the block's id {computed}"),
                        ));
                    }
                    self.note_block(block, computed);
                }
                Action::PeerMisbehaved { peer, reason } if !self.byzantine.contains(peer) => {
                    // The driver scores and bans on this: an honest peer reported would be cut
                    // off by honest nodes.
                    return Err(v(
                        "FALSE_MISBEHAVIOUR",
                        at,
                        format!("instance {inst} reported honest validator {peer} for {reason:?}"),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}
