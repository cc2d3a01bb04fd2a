//! Crafted adversaries of issue 7: one Byzantine validator per finding, each trying to halt or
//! exhaust the honest nodes (the `crafted_*` scenarios of [`crate::scenario`]). The behaviours
//! are driven by [`crate::byzantine::Byzantine`]; what they build is here.
//!
//! | kind | finding | what it sends |
//! |---|---|---|
//! | [`ByzKind::CraftedBatchSignature`] | 1 | a QC with its own bit and a torsioned signature, then a conflicting vote |
//! | [`ByzKind::CraftedCertConfusion`] | 2 | a TC whose bytes parse as a QC, then a status whose high QC is those bytes |
//! | [`ByzKind::CraftedFutureProposals`] | 4 | signed tiny proposals for random far-future views |
//! | [`ByzKind::CraftedTcFlood`] | 5 | bare TCs of old, current and far views with wrong signatures; valid old TCs again |
//! | [`ByzKind::CraftedParkEvict`] | 6 | a non-leader copy of the current proposal (genuine justify) while the parent is late |
//! | [`ByzKind::CraftedStaleBlockFlood`] | 7 | distinct non-leader blocks of the previous view |

use crate::byzantine::{ByzCtx, ByzKind};
use consensus::{
    Action, Bitmap, Block, ConsensusMessage, Digest, Millis, Proposal, QuorumCert, SigKind,
    Signature, Status, TimeoutCert, ValidatorIndex, View, Vote, VoteData, encode,
    messages::proposal_body, messages::status_body,
};
use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::scalar::Scalar;
use rand::RngExt;
use sha2::{Digest as _, Sha512};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Nonces tried per forged certificate signature: a torsioned signature passes a batch
/// equation with probability ≥ 1/2 per nonce, so 2⁻¹⁶ is the chance a batch-verifying core is
/// not attacked; under the one-signature rule nothing passes and all are tried.
pub const GRIND_NONCES: u64 = 16;
/// The batch-signature adversary attacks the QC of one view in this many (each attack costs
/// the honest nodes one certificate check and, without the fix, an unverifiable evidence item).
pub const BATCH_ATTACK_EVERY: u64 = 4;
/// Tick of the self-driven crafted behaviours (ms).
pub const CRAFTED_TICK_MS: u64 = 10;
/// Far-future proposals signed per tick.
pub const FUTURE_PER_TICK: usize = 4;
/// Bare TCs sent per TC-flood tick (each tick: re-sent valid, old corrupted, far-future and
/// current-view forgeries, see [`Crafted::tc_flood`]).
pub const TC_FLOOD_PER_TICK: usize = 4;
/// How long the park evictor holds its own proposal back from its victims (ms): long enough for
/// the next leader's proposal to reach them before its parent.
pub const PARK_EVICT_HOLD_MS: Millis = 120;
/// Distinct previous-view blocks sent per proposal seen by the stale-block flooder.
pub const STALE_PER_VIEW: usize = 4;

/// A signature by `seed`'s key on `msg` (a signed digest) whose `R = r·B + T`, `T` of order 2:
/// it satisfies the cofactored equation `8·(s·B − R − k·A) = 0`, so a batch equation accepts it
/// whenever its coefficient kills the torsion, but not the cofactorless `verify_strict`. (The
/// construction of `consensus/tests/signature_rule.rs`.)
pub fn torsioned_signature(seed: [u8; 32], msg: &[u8], nonce: u64) -> Signature {
    let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
    let a = sk.to_scalar();
    let pk = sk.verifying_key().to_bytes();
    let r = Scalar::from(nonce.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1) * Scalar::from(977u64);
    let big_r = r * ED25519_BASEPOINT_POINT + EIGHT_TORSION[4];
    let r_bytes = big_r.compress().to_bytes();
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(pk);
    h.update(msg);
    let wide: [u8; 64] = h.finalize().into();
    let k = Scalar::from_bytes_mod_order_wide(&wide);
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice(s.as_bytes());
    Signature(sig)
}

/// The QC bytes a TC's encoding parses as, if they do (issue 7 finding 2's collision).
pub fn tc_as_qc(tc: &TimeoutCert) -> Option<QuorumCert> {
    let bytes = encode(tc);
    consensus::decode::<QuorumCert>(&bytes, bytes.len()).ok()
}

/// The parent view `p` for which a TC of view `p + 2` with `quorum` signers, carrying a QC of
/// view `p + 1` (parent view `p`, `quorum` signers), has an encoding that parses as a QC, for
/// `n` validators (`None` below view 100 000). Lengths, not values, decide: probed unsigned.
pub fn collision_parent_view(n: usize, quorum: usize) -> Option<u64> {
    let mut signers = Bitmap::new(n);
    for i in 0..quorum {
        signers.set(ValidatorIndex(i as u16));
    }
    (1..100_000u64).find(|&p| {
        let high_qc = QuorumCert {
            data: VoteData {
                view: View(p + 1),
                block_id: Digest([1; 32]),
                height: consensus::Height(p),
                parent_id: Digest([2; 32]),
                parent_view: View(p),
            },
            signers: Bitmap(signers.0.clone()),
            sigs: vec![Signature([0; 64]); quorum],
        };
        let tc = TimeoutCert {
            view: View(p + 2),
            high_qc,
            signers: Bitmap(signers.0.clone()),
            hqc_views: vec![View(p + 1); quorum],
            sigs: vec![Signature([0; 64]); quorum],
        };
        tc_as_qc(&tc).is_some()
    })
}

/// State of a crafted adversary.
#[derive(Default)]
pub struct Crafted {
    /// First-hand proposals of other validators, by view (the last few).
    recent: BTreeMap<View, Proposal>,
    /// TCs seen (the last few, distinct).
    tcs: VecDeque<TimeoutCert>,
    /// The highest QC seen.
    high_qc: Option<QuorumCert>,
    /// Views whose QC was attacked (batch signature) or TCs already exploited (cert confusion).
    done: BTreeSet<View>,
    /// Messages held back: (release time, recipient, message).
    held: Vec<(Millis, ValidatorIndex, ConsensusMessage)>,
    counter: u64,
}

/// TCs remembered by the flooder.
const TCS_KEPT: usize = 8;

impl Crafted {
    fn note(&mut self, me: ValidatorIndex, from: ValidatorIndex, msg: &ConsensusMessage) {
        let mut tcs: Vec<&TimeoutCert> = Vec::new();
        let mut qc = None;
        match msg {
            ConsensusMessage::Proposal(p) => {
                if p.block.proposer == from && from != me {
                    self.recent.insert(p.block.view, p.clone());
                    while self.recent.len() > 3 {
                        self.recent.pop_first();
                    }
                }
                tcs.extend(p.tc.as_ref());
                qc = Some(&p.block.justify);
            }
            ConsensusMessage::Timeout(t) => {
                tcs.extend(t.high_tc.as_ref());
                qc = Some(&t.high_qc);
            }
            ConsensusMessage::Status(s) => {
                tcs.extend(s.high_tc.as_ref());
                qc = Some(&s.high_qc);
            }
            ConsensusMessage::TimeoutCert(tc) => tcs.push(tc),
            ConsensusMessage::Vote(_) => {}
        }
        for tc in tcs {
            if from != me && !self.tcs.contains(tc) {
                self.tcs.push_back(tc.clone());
                if self.tcs.len() > TCS_KEPT {
                    self.tcs.pop_front();
                }
            }
        }
        if let Some(qc) = qc
            && self.high_qc.as_ref().is_none_or(|h| qc.view() > h.view())
        {
            self.high_qc = Some(qc.clone());
        }
    }

    /// React to an inbound message; returns what to send besides the core's own actions.
    pub fn inbound(
        &mut self,
        kind: ByzKind,
        ctx: &mut ByzCtx<'_>,
        from: ValidatorIndex,
        msg: &ConsensusMessage,
    ) -> Vec<Action> {
        self.note(ctx.me, from, msg);
        let first_hand = match msg {
            ConsensusMessage::Proposal(p) if p.block.proposer == from && from != ctx.me => Some(p),
            _ => None,
        };
        match kind {
            ByzKind::CraftedBatchSignature => first_hand
                .map(|p| self.batch_signature(ctx, &p.block.justify))
                .unwrap_or_default(),
            ByzKind::CraftedCertConfusion => self.cert_confusion(ctx),
            ByzKind::CraftedParkEvict => first_hand
                .map(|p| {
                    vec![Action::Broadcast(ConsensusMessage::Proposal(resign(
                        ctx,
                        &p.block,
                        p.tc.clone(),
                        b"/evict",
                    )))]
                })
                .unwrap_or_default(),
            ByzKind::CraftedStaleBlockFlood => first_hand
                .and_then(|p| self.recent.get(&p.block.view.prev()))
                .filter(|prev| prev.block.proposer != ctx.me)
                .map(|prev| {
                    (0..STALE_PER_VIEW)
                        .map(|k| {
                            let tag = format!("/stale{k}");
                            let p = resign(ctx, &prev.block, prev.tc.clone(), tag.as_bytes());
                            Action::Broadcast(ConsensusMessage::Proposal(p))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Rewrite one of the core's own messages (`None`: send it unchanged); returns
    /// `(recipient or None for the original routing, message)` pairs.
    pub fn outbound(
        &mut self,
        kind: ByzKind,
        ctx: &mut ByzCtx<'_>,
        msg: &ConsensusMessage,
    ) -> Option<Vec<(Option<ValidatorIndex>, ConsensusMessage)>> {
        match (kind, msg) {
            // Its own votes would make the forged signature of the QC a duplicate.
            (ByzKind::CraftedBatchSignature, ConsensusMessage::Vote(v)) if v.voter == ctx.me => {
                Some(Vec::new())
            }
            // Silent as leader: its views time out, so TCs carrying the previous QC form.
            (ByzKind::CraftedCertConfusion, ConsensusMessage::Proposal(p))
                if p.block.proposer == ctx.me =>
            {
                Some(Vec::new())
            }
            // Its proposal reaches the victims late: they enter the next view by the QC and get
            // the next proposal before its parent.
            (ByzKind::CraftedParkEvict, ConsensusMessage::Proposal(p))
                if p.block.proposer == ctx.me =>
            {
                let victims = park_victims(ctx);
                let release = ctx.now + PARK_EVICT_HOLD_MS;
                for v in &victims {
                    self.held.push((release, *v, msg.clone()));
                }
                Some(
                    ctx.vs
                        .indices()
                        .filter(|i| *i != ctx.me && !victims.contains(i))
                        .map(|i| (Some(i), msg.clone()))
                        .collect(),
                )
            }
            _ => None,
        }
    }

    /// Periodic sends of the self-driven kinds.
    pub fn tick(&mut self, kind: ByzKind, ctx: &mut ByzCtx<'_>) -> Vec<Action> {
        match kind {
            ByzKind::CraftedFutureProposals => (0..FUTURE_PER_TICK)
                .map(|_| {
                    let view = View(ctx.rng.random_range(1_000_000..u64::MAX / 2));
                    let domain = ctx.vs.domain();
                    let genesis = Block::genesis(domain);
                    let gid = genesis.id(domain);
                    let block = Block {
                        view,
                        height: consensus::Height(1),
                        parent: gid,
                        justify: QuorumCert::genesis(gid),
                        payload: Vec::new(),
                        evidence: Vec::new(),
                        proposer: ctx.me,
                        skipped_leaders: Vec::new(),
                        ..genesis
                    };
                    Action::Broadcast(ConsensusMessage::Proposal(sign_proposal(ctx, block, None)))
                })
                .collect(),
            ByzKind::CraftedTcFlood => self.tc_flood(ctx),
            ByzKind::CraftedParkEvict => {
                let now = ctx.now;
                let (due, keep): (Vec<_>, Vec<_>) =
                    self.held.drain(..).partition(|(at, _, _)| *at <= now);
                self.held = keep;
                due.into_iter()
                    .map(|(_, to, msg)| Action::Send { to, msg })
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// Finding 1: add its bit and a torsioned signature to `qc` (which it did not sign), spread
    /// it in a status, and sign a conflicting vote of the same view.
    fn batch_signature(&mut self, ctx: &mut ByzCtx<'_>, qc: &QuorumCert) -> Vec<Action> {
        let me = ctx.me;
        let recent = self
            .done
            .last()
            .is_some_and(|d| qc.view().0 < d.0 + BATCH_ATTACK_EVERY);
        if qc.view().0 == 0 || qc.signers.contains(me) || recent {
            return Vec::new();
        }
        self.done.insert(qc.view());
        let domain = ctx.vs.domain();
        let gid = Block::genesis(domain).id(domain);
        let digest = domain.digest(SigKind::Vote, &encode(&qc.data));
        let mut signers = Bitmap(qc.signers.0.clone());
        signers.set(me);
        let pos = signers.iter().position(|i| i == me).unwrap_or(0);
        let with = |sig: Signature| {
            let mut sigs = qc.sigs.clone();
            sigs.insert(pos.min(sigs.len()), sig);
            QuorumCert {
                data: qc.data.clone(),
                signers: Bitmap(signers.0.clone()),
                sigs,
            }
        };
        // The best forgery it can make: one the receiving cores accept if any nonce does.
        let seed = ctx.key.seed();
        let forged = (0..GRIND_NONCES)
            .map(|nonce| with(torsioned_signature(seed, &digest.0, nonce)))
            .find(|f| f.verify(ctx.vs, &gid).is_ok())
            .unwrap_or_else(|| with(torsioned_signature(seed, &digest.0, 0)));
        let view = qc.view().next().unwrap_or(qc.view());
        let status = Status {
            view,
            sig: ctx
                .key
                .sign(domain, SigKind::Status, &status_body(view, &forged)),
            high_qc: forged,
            sender: me,
            high_tc: None,
        };
        let conflicting = VoteData {
            block_id: Digest(
                *blake3::hash(&[&qc.block_id().0[..], b"conflict"].concat()).as_bytes(),
            ),
            ..qc.data.clone()
        };
        vec![
            Action::Broadcast(ConsensusMessage::Status(status)),
            Action::Broadcast(ConsensusMessage::Vote(Vote::sign(
                conflicting,
                me,
                ctx.key,
                ctx.vs,
            ))),
        ]
    }

    /// Finding 2: for every TC seen whose bytes parse as a QC, send the TC (so that the others
    /// verify and cache it) and then a status whose high QC is those bytes.
    fn cert_confusion(&mut self, ctx: &mut ByzCtx<'_>) -> Vec<Action> {
        let mut out = Vec::new();
        for tc in &self.tcs {
            let Some(forged) = tc_as_qc(tc) else {
                continue;
            };
            if !self.done.insert(tc.view) {
                continue;
            }
            let view = tc.view.next().unwrap_or(tc.view);
            let sig = ctx.key.sign(
                ctx.vs.domain(),
                SigKind::Status,
                &status_body(view, &forged),
            );
            out.push(Action::Broadcast(ConsensusMessage::TimeoutCert(tc.clone())));
            out.push(Action::Broadcast(ConsensusMessage::Status(Status {
                view,
                high_qc: forged,
                sender: ctx.me,
                sig,
                high_tc: None,
            })));
        }
        out
    }

    /// Finding 5: per tick, a valid old TC again, an old TC with one signature corrupted, a TC
    /// moved to a far-future view, and (one tick in four, else a valid old TC again) one moved
    /// to the view after the highest seen (wrong signatures, distinct bytes each time). Before any TC is seen, forgeries are built from
    /// the highest QC.
    fn tc_flood(&mut self, ctx: &mut ByzCtx<'_>) -> Vec<Action> {
        let base = match (self.tcs.front(), &self.high_qc) {
            (Some(tc), _) => tc.clone(),
            (None, Some(qc)) => TimeoutCert {
                view: qc.view().next().unwrap_or(qc.view()),
                high_qc: qc.clone(),
                signers: Bitmap(qc.signers.0.clone()),
                hqc_views: vec![qc.view(); qc.sigs.len()],
                sigs: qc.sigs.clone(),
            },
            (None, None) => return Vec::new(),
        };
        let top = self
            .tcs
            .iter()
            .map(|t| t.view)
            .chain(self.high_qc.as_ref().map(|q| q.view()))
            .max()
            .unwrap_or(base.view);
        let mut out = Vec::with_capacity(TC_FLOOD_PER_TICK);
        for k in 0..TC_FLOOD_PER_TICK {
            self.counter += 1;
            let mut tc = if self.tcs.is_empty() {
                base.clone()
            } else {
                self.tcs[ctx.rng.random_range(0..self.tcs.len())].clone()
            };
            match k % 4 {
                0 => {}
                1 => corrupt_one(&mut tc.sigs, self.counter),
                2 => {
                    tc.view = View(ctx.rng.random_range(1_000_000..u64::MAX / 2));
                    corrupt_one(&mut tc.sigs, self.counter);
                }
                // A TC of the next view can matter (it would advance the view), so even a core
                // that skips moot certificates checks it: one in four ticks.
                _ if (self.counter / 4).is_multiple_of(4) => {
                    tc.view = top.next().unwrap_or(top);
                    corrupt_one(&mut tc.sigs, self.counter);
                }
                _ => {}
            }
            out.push(Action::Broadcast(ConsensusMessage::TimeoutCert(tc)));
        }
        out
    }
}

/// Flip bytes of one signature (distinct for distinct `salt`), keeping its shape.
fn corrupt_one(sigs: &mut [Signature], salt: u64) {
    if let Some(s) = sigs.first_mut() {
        s.0[33..41].copy_from_slice(&salt.to_le_bytes());
        s.0[5] ^= 0x55;
    }
}

/// The validators the park evictor shows its proposals late: the `n − quorum` after it, so
/// that the others and itself still form the QC.
fn park_victims(ctx: &ByzCtx<'_>) -> Vec<ValidatorIndex> {
    let n = ctx.vs.len();
    let q = ctx.vs.quorum() as usize;
    (1..=n.saturating_sub(q))
        .map(|k| ValidatorIndex(((ctx.me.as_usize() + k) % n) as u16))
        .collect()
}

/// `block` as its own proposal: same view, parent and justify, `tag` appended to the payload.
fn resign(ctx: &ByzCtx<'_>, block: &Block, tc: Option<TimeoutCert>, tag: &[u8]) -> Proposal {
    let mut b = block.clone();
    b.payload.extend_from_slice(tag);
    b.proposer = ctx.me;
    sign_proposal(ctx, b, tc)
}

/// Sign `block` with the adversary's key.
fn sign_proposal(ctx: &ByzCtx<'_>, block: Block, tc: Option<TimeoutCert>) -> Proposal {
    let domain = ctx.vs.domain();
    let id = block.id(domain);
    let sig = ctx
        .key
        .sign(domain, SigKind::Proposal, &proposal_body(block.view, &id));
    Proposal { block, tc, sig }
}
