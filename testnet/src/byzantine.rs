//! Byzantine replicas. Each wraps an honest core and rewrites what goes in and out of it;
//! fabricated messages are signed with the validator's real key through the consensus types.
//! (Twins — two honest cores sharing one key — are built by the simulator, not here.)

use crate::crafted::{CRAFTED_TICK_MS, Crafted};
use consensus::{
    Action, Bitmap, Block, ConsensusMessage, Digest, Event, Millis, PrivateKey, Proposal,
    QuorumCert, SigKind, Signature, Status, Timeout, ValidatorIndex, ValidatorSet, View, Vote,
    VoteData, cert::timeout_body, messages::proposal_body, messages::status_body,
};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// The Byzantine behaviours the simulator knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByzKind {
    /// When leader, signs two different blocks for its view and sends each to half the nodes;
    /// one node of the first half (the bridge) receives the second block too, as a real
    /// equivocator's re-sends or reconnections would let happen, so the equivocation is seen
    /// (a perfect split is invisible to every honest node: nothing relays proposals).
    EquivocatingLeader,
    /// Signs a second vote for a fabricated block id next to every real vote.
    DoubleVoter,
    /// Never proposes.
    SilentLeader,
    /// Never sends votes.
    VoteWithholder,
    /// Re-sends old recorded messages of others (far-past views).
    StaleReplayer,
    /// Corrupts the signature of everything it signs.
    BadSigner,
    /// Tampers the justify QC (signatures / bitmap) of its own and relayed proposals.
    InvalidJustify,
    /// Sends many signed messages per ms for far-future views, including `u64::MAX`.
    Flooder,
    /// Directed hidden-lock attacker (PROTOCOL.md §7 case 11): when it leads view `v` it sends
    /// its proposal to `victim` and to one other honest node only, and its own vote for it to
    /// `victim` only, `release_ms` after signing it (before the others time out in `v`, late
    /// enough that `victim` does not run ahead into a view the others reach a timeout later) —
    /// with votes broadcast, `victim` alone then holds QC(v), a lock nobody else knows. It withholds every other vote and reports a stale lock in its timeouts and
    /// statuses, and times out in `v` as soon as another node does, so the others form TC(v)
    /// with a stale high QC: the next leader learns QC(v) only from `victim`'s status (H2).
    LockHider {
        /// The honest node shown the hidden lock.
        victim: ValidatorIndex,
        /// Delay between signing its vote of the hidden view and releasing it to `victim` (ms).
        release_ms: u64,
    },
    /// Issue 7 finding 1: adds its bit and a torsioned signature (batch-only valid) to a QC it
    /// did not sign, spreads it in a status, and signs a conflicting vote (its own votes are
    /// withheld). See [`crate::crafted`].
    CraftedBatchSignature,
    /// Issue 7 finding 2: silent as leader; sends every TC whose encoding parses as a QC, then
    /// a status whose high QC is those bytes.
    CraftedCertConfusion,
    /// Issue 7 finding 4: signed tiny proposals for random far-future views, many per tick.
    CraftedFutureProposals,
    /// Issue 7 finding 5: a stream of bare TCs (old, far-future and current views with wrong
    /// signatures, and valid old TCs again).
    CraftedTcFlood,
    /// Issue 7 finding 6: a non-leader copy (genuine justify, other block) of every proposal
    /// it receives, while its own proposals reach `n − quorum` victims late.
    CraftedParkEvict,
    /// Issue 7 finding 7: distinct non-leader blocks of the previous view on every proposal.
    CraftedStaleBlockFlood,
    /// E4 (issue 9): silent as leader (so every view it leads ends in timeouts), and for each
    /// view it times out in signs two timeouts with different high QCs — its own, and the
    /// highest lower QC it saw (genesis at worst) — each sent to half of the others, the
    /// second one to the first of the others too (the bridge, as for the equivocating leader).
    ConflictingTimeouts,
    /// Timing attack (issue 9): when leader, holds its proposal (and its own vote on it) and
    /// releases them `hold_ms` after the core asked for the payload, i.e. just inside the
    /// others' view timeout when `hold_ms` is a little under τ_base.
    LateLeader {
        /// Delay from the payload request of its view to the proposal's release (ms).
        hold_ms: u64,
    },
    /// Selective connectivity (issue 9): sends its own proposals and votes only to the
    /// validators in `targets` (bit `i` = validator `i`; indices ≥ 64 are never targets).
    /// Everything else (timeouts, statuses, relays) goes out as the core says.
    SelectiveSender {
        /// Bit set of the validators that receive its proposals and votes.
        targets: u64,
    },
}

impl ByzKind {
    /// Short name (used in scenario names).
    pub fn name(&self) -> &'static str {
        match self {
            ByzKind::EquivocatingLeader => "equivocating_leader",
            ByzKind::DoubleVoter => "double_voter",
            ByzKind::SilentLeader => "silent_leader",
            ByzKind::VoteWithholder => "vote_withholder",
            ByzKind::StaleReplayer => "stale_replayer",
            ByzKind::BadSigner => "bad_signer",
            ByzKind::InvalidJustify => "invalid_justify",
            ByzKind::Flooder => "flooder",
            ByzKind::LockHider { .. } => "lock_hider",
            ByzKind::CraftedBatchSignature => "crafted_batch_signature",
            ByzKind::CraftedCertConfusion => "crafted_cert_confusion",
            ByzKind::CraftedFutureProposals => "crafted_future_proposals",
            ByzKind::CraftedTcFlood => "crafted_tc_flood",
            ByzKind::CraftedParkEvict => "crafted_park_evict",
            ByzKind::CraftedStaleBlockFlood => "crafted_stale_block_flood",
            ByzKind::ConflictingTimeouts => "conflicting_timeouts",
            ByzKind::LateLeader { .. } => "late_proposer",
            ByzKind::SelectiveSender { .. } => "selective_sender",
        }
    }

    /// All kinds exercised by the standard scenarios.
    pub fn all() -> [ByzKind; 8] {
        [
            ByzKind::EquivocatingLeader,
            ByzKind::DoubleVoter,
            ByzKind::SilentLeader,
            ByzKind::VoteWithholder,
            ByzKind::StaleReplayer,
            ByzKind::BadSigner,
            ByzKind::InvalidJustify,
            ByzKind::Flooder,
        ]
    }

    /// The crafted adversaries of issue 7 (one Byzantine validator each, resource oracle on).
    pub fn crafted() -> [ByzKind; 6] {
        [
            ByzKind::CraftedBatchSignature,
            ByzKind::CraftedCertConfusion,
            ByzKind::CraftedFutureProposals,
            ByzKind::CraftedTcFlood,
            ByzKind::CraftedParkEvict,
            ByzKind::CraftedStaleBlockFlood,
        ]
    }

    /// The kinds added by issue 9 for real testnets, with the parameters the simulator's
    /// standard [`crate::scenario::timing`] uses (τ_base = 250 ms: the late leader releases
    /// 100 ms before it; the selective sender talks to validator 0 only, re-targeted by the
    /// scenario to an honest node).
    pub fn issue9() -> [ByzKind; 3] {
        [
            ByzKind::ConflictingTimeouts,
            ByzKind::LateLeader { hold_ms: 150 },
            ByzKind::SelectiveSender { targets: 1 },
        ]
    }

    /// Whether this is one of [`ByzKind::crafted`].
    pub fn is_crafted(&self) -> bool {
        ByzKind::crafted().contains(self)
    }
}

/// What a Byzantine wrapper may use.
pub struct ByzCtx<'a> {
    /// Virtual time.
    pub now: Millis,
    /// Its validator index.
    pub me: ValidatorIndex,
    /// Its key.
    pub key: &'a PrivateKey,
    /// The validator set.
    pub vs: &'a ValidatorSet,
    /// The simulation RNG.
    pub rng: &'a mut ChaCha8Rng,
}

/// The double voter equivocates on its first this-many votes ...
pub const DOUBLE_VOTE_FIRST: u64 = 2;
/// ... and afterwards on every this-many-th vote.
pub const DOUBLE_VOTE_EVERY: u64 = 8;

/// Stale replayer: tick period (ms) and messages replayed per tick.
pub const REPLAY_TICK_MS: u64 = 100;
/// How often a [`ByzKind::LockHider`] checks whether to release its held vote (ms).
pub const LOCK_HIDER_TICK_MS: u64 = 10;
/// Messages the stale replayer broadcasts per tick.
pub const REPLAY_PER_TICK: usize = 2;

/// Flooder intensity: messages per burst and burst period.
#[derive(Clone, Copy, Debug)]
pub struct FloodRate {
    /// Messages per burst.
    pub per_burst: usize,
    /// Period between bursts (ms).
    pub period_ms: u64,
}

impl Default for FloodRate {
    fn default() -> Self {
        // One burst covers the four (kind, view) shapes the flooder produces; a burst every
        // 200 ms (about three views) exercises the far-future handling as well as a burst
        // every 50 ms, at a quarter of the signature checks.
        FloodRate {
            per_burst: 4,
            period_ms: 200,
        }
    }
}

/// State of one Byzantine wrapper.
pub struct Byzantine {
    /// Behaviour.
    pub kind: ByzKind,
    recorded: Vec<ConsensusMessage>,
    public_qc: Option<QuorumCert>,
    /// Flooder rate.
    pub flood: FloodRate,
    counter: u64,
    /// View of the proposal shown to the victim only (its vote of that view goes to the victim).
    hidden_view: Option<View>,
    /// Its vote of `hidden_view` and when it was signed (ms), released to the victim by `tick`.
    held_vote: Option<(Vote, Millis)>,
    timed_out: std::collections::BTreeSet<View>,
    crafted: Crafted,
    /// QCs seen from others, by view (the last [`RECENT_QCS`]): the conflicting timeout's
    /// second high QC.
    recent_qcs: std::collections::BTreeMap<View, QuorumCert>,
    /// Late leader: the view whose payload was requested and when (ms).
    requested: Option<(View, Millis)>,
    /// Late leader: its held proposal, its own votes of that view, and the release time (ms).
    held: Option<(Proposal, Vec<Vote>, Millis)>,
    /// Late leader: the last view whose proposal was released.
    released: Option<View>,
}

/// QCs a [`ByzKind::ConflictingTimeouts`] wrapper remembers.
pub const RECENT_QCS: usize = 8;
/// How often a [`ByzKind::LateLeader`] checks whether to release its held proposal (ms).
pub const LATE_LEADER_TICK_MS: u64 = 5;

fn corrupt(sig: &mut Signature) {
    sig.0[5] ^= 0x55;
    sig.0[40] ^= 0x01;
}

fn tamper_qc(qc: &mut QuorumCert, rng: &mut ChaCha8Rng) {
    if qc.sigs.is_empty() {
        return;
    }
    if rng.random_bool(0.5) {
        let i = rng.random_range(0..qc.sigs.len());
        corrupt(&mut qc.sigs[i]);
    } else {
        // Drop one signer from the bitmap (and its signature): below quorum or mismatched.
        let first = qc.signers.iter().next();
        if let Some(f) = first {
            let mut b = Bitmap(qc.signers.0.clone());
            let byte = f.as_usize() / 8;
            b.0[byte] &= !(1 << (f.as_usize() % 8));
            qc.signers = b;
        }
    }
}

impl Byzantine {
    /// A wrapper of the given kind.
    pub fn new(kind: ByzKind) -> Self {
        Byzantine {
            kind,
            recorded: Vec::new(),
            public_qc: None,
            flood: FloodRate::default(),
            counter: 0,
            hidden_view: None,
            held_vote: None,
            timed_out: std::collections::BTreeSet::new(),
            crafted: Crafted::default(),
            recent_qcs: std::collections::BTreeMap::new(),
            requested: None,
            held: None,
            released: None,
        }
    }

    /// Tick period, for behaviours that act on their own.
    pub fn tick_ms(&self) -> Option<u64> {
        match self.kind {
            ByzKind::StaleReplayer => Some(REPLAY_TICK_MS),
            ByzKind::LockHider { .. } => Some(LOCK_HIDER_TICK_MS),
            ByzKind::LateLeader { .. } => Some(LATE_LEADER_TICK_MS),
            ByzKind::Flooder => Some(self.flood.period_ms),
            ByzKind::CraftedFutureProposals
            | ByzKind::CraftedTcFlood
            | ByzKind::CraftedParkEvict => Some(CRAFTED_TICK_MS),
            _ => None,
        }
    }

    /// Observe an inbound event. Returns extra actions (relays) to perform.
    pub fn inbound(&mut self, ctx: &mut ByzCtx<'_>, ev: &Event) -> Vec<Action> {
        let Event::Message { from, msg } = ev else {
            return Vec::new();
        };
        if self.kind.is_crafted() {
            return self.crafted.inbound(self.kind, ctx, *from, msg);
        }
        match self.kind {
            ByzKind::ConflictingTimeouts => {
                let qc = match msg {
                    ConsensusMessage::Proposal(p) => &p.block.justify,
                    ConsensusMessage::Timeout(t) => &t.high_qc,
                    ConsensusMessage::Status(s) => &s.high_qc,
                    _ => return Vec::new(),
                };
                self.recent_qcs.insert(qc.view(), qc.clone());
                while self.recent_qcs.len() > RECENT_QCS {
                    self.recent_qcs.pop_first();
                }
                Vec::new()
            }
            ByzKind::StaleReplayer => {
                if *from != ctx.me && self.recorded.len() < 400 {
                    self.recorded.push(msg.clone());
                }
                Vec::new()
            }
            ByzKind::InvalidJustify => {
                // Relay first-hand proposals only (no ping-pong between Byzantine relays).
                if let ConsensusMessage::Proposal(p) = msg
                    && p.block.proposer != ctx.me
                    && p.block.proposer == *from
                    && !p.block.justify.sigs.is_empty()
                {
                    let mut t = p.clone();
                    tamper_qc(&mut t.block.justify, ctx.rng);
                    return vec![Action::Broadcast(ConsensusMessage::Proposal(t))];
                }
                Vec::new()
            }
            ByzKind::LockHider { victim, .. } => {
                let mut out = Vec::new();
                if let ConsensusMessage::Timeout(t) = msg
                    && t.sender != ctx.me
                    && t.sender != victim
                {
                    // Help the others form their TC with a stale lock.
                    if self.timed_out.insert(t.view)
                        && let Some(qc) = self.public_qc.clone().filter(|q| q.view() < t.view)
                    {
                        let body = timeout_body(t.view, qc.view());
                        let sig = ctx.key.sign(ctx.vs.domain(), SigKind::Timeout, &body);
                        out.push(Action::Broadcast(ConsensusMessage::Timeout(Timeout {
                            view: t.view,
                            high_qc: qc,
                            sender: ctx.me,
                            sig,
                            high_tc: None,
                            commit_qc: None,
                        })));
                    }
                }
                let qcs: Vec<&QuorumCert> = match msg {
                    ConsensusMessage::Proposal(p) if p.block.proposer != ctx.me => {
                        vec![&p.block.justify]
                    }
                    ConsensusMessage::Timeout(t) if t.sender != ctx.me => vec![&t.high_qc],
                    ConsensusMessage::Status(s) if s.sender != ctx.me => vec![&s.high_qc],
                    _ => Vec::new(),
                };
                for qc in qcs {
                    if self.public_qc.as_ref().is_none_or(|p| qc.view() > p.view()) {
                        self.public_qc = Some(qc.clone());
                    }
                }
                out
            }
            _ => Vec::new(),
        }
    }

    /// Rewrite the core's outbound actions.
    pub fn outbound(&mut self, ctx: &mut ByzCtx<'_>, actions: Vec<Action>) -> Vec<Action> {
        let mut out = Vec::with_capacity(actions.len());
        for a in actions {
            match a {
                Action::Send { to, msg } => {
                    for m in self.rewrite(ctx, msg) {
                        match m {
                            Routed::To(x, m) => out.push(Action::Send { to: x, msg: m }),
                            Routed::Same(m) => out.push(Action::Send { to, msg: m }),
                            Routed::All(m) => out.push(Action::Broadcast(m)),
                        }
                    }
                }
                Action::Broadcast(msg) => {
                    for m in self.rewrite(ctx, msg) {
                        match m {
                            Routed::To(x, m) => out.push(Action::Send { to: x, msg: m }),
                            Routed::Same(m) | Routed::All(m) => out.push(Action::Broadcast(m)),
                        }
                    }
                }
                other => {
                    if let (ByzKind::LateLeader { .. }, Action::RequestPayload { view, .. }) =
                        (self.kind, &other)
                    {
                        self.requested = Some((*view, ctx.now));
                    }
                    out.push(other)
                }
            }
        }
        out
    }

    fn rewrite(&mut self, ctx: &mut ByzCtx<'_>, msg: ConsensusMessage) -> Vec<Routed> {
        if self.kind.is_crafted() {
            return match self.crafted.outbound(self.kind, ctx, &msg) {
                None => vec![Routed::Same(msg)],
                Some(v) => v
                    .into_iter()
                    .map(|(to, m)| match to {
                        Some(to) => Routed::To(to, m),
                        None => Routed::Same(m),
                    })
                    .collect(),
            };
        }
        let me = ctx.me;
        let domain = ctx.vs.domain();
        match (self.kind, msg) {
            (ByzKind::EquivocatingLeader, ConsensusMessage::Proposal(p))
                if p.block.proposer == me =>
            {
                let mut b2: Block = p.block.clone();
                b2.payload.extend_from_slice(b"/equivocation");
                let id2 = b2.id(domain);
                let sig2 = ctx
                    .key
                    .sign(domain, SigKind::Proposal, &proposal_body(b2.view, &id2));
                let p2 = Proposal {
                    block: b2,
                    tc: p.tc.clone(),
                    sig: sig2,
                };
                let others: Vec<ValidatorIndex> = ctx.vs.indices().filter(|i| *i != me).collect();
                let half = others.len() / 2;
                let mut out: Vec<Routed> = others
                    .iter()
                    .enumerate()
                    .map(|(k, to)| {
                        let m = if k < half { p.clone() } else { p2.clone() };
                        Routed::To(*to, ConsensusMessage::Proposal(m))
                    })
                    .collect();
                // The bridge: the first of the others hears the second block too (a perfect
                // split is invisible without relays: 0 evidence items over 30 seeds).
                if let Some(bridge) = others.first().filter(|_| half > 0) {
                    out.push(Routed::To(*bridge, ConsensusMessage::Proposal(p2)));
                }
                out
            }
            (ByzKind::DoubleVoter, ConsensusMessage::Vote(vote)) if vote.voter == me => {
                // Equivocate on the first votes, then on one vote in DOUBLE_VOTE_EVERY: each
                // double vote becomes an evidence item that every honest node verifies on
                // gossip and again in the block carrying it, so one per view only multiplies
                // the same checks.
                self.counter += 1;
                if self.counter > DOUBLE_VOTE_FIRST
                    && !self.counter.is_multiple_of(DOUBLE_VOTE_EVERY)
                {
                    return vec![Routed::Same(ConsensusMessage::Vote(vote))];
                }
                let mut fake = [0u8; 32];
                fake.copy_from_slice(
                    blake3::hash(&[&vote.data.block_id.0[..], b"fabricated"].concat()).as_bytes(),
                );
                let data2 = VoteData {
                    block_id: Digest(fake),
                    ..vote.data.clone()
                };
                let v2 = Vote::sign(data2, me, ctx.key, ctx.vs);
                vec![
                    Routed::Same(ConsensusMessage::Vote(vote)),
                    Routed::Same(ConsensusMessage::Vote(v2)),
                ]
            }
            (ByzKind::SilentLeader, ConsensusMessage::Proposal(p)) if p.block.proposer == me => {
                Vec::new()
            }
            (ByzKind::VoteWithholder, ConsensusMessage::Vote(v)) if v.voter == me => Vec::new(),
            (ByzKind::BadSigner, mut m) => {
                match &mut m {
                    ConsensusMessage::Proposal(p) if p.block.proposer == me => corrupt(&mut p.sig),
                    ConsensusMessage::Vote(v) if v.voter == me => corrupt(&mut v.sig),
                    ConsensusMessage::Timeout(t) if t.sender == me => corrupt(&mut t.sig),
                    ConsensusMessage::Status(s) if s.sender == me => corrupt(&mut s.sig),
                    _ => {}
                }
                vec![Routed::Same(m)]
            }
            (ByzKind::InvalidJustify, ConsensusMessage::Proposal(mut p))
                if p.block.proposer == me =>
            {
                tamper_qc(&mut p.block.justify, ctx.rng);
                vec![Routed::Same(ConsensusMessage::Proposal(p))]
            }
            (ByzKind::ConflictingTimeouts, ConsensusMessage::Proposal(p))
                if p.block.proposer == me =>
            {
                Vec::new()
            }
            (ByzKind::ConflictingTimeouts, ConsensusMessage::Timeout(t)) if t.sender == me => {
                self.conflicting_timeouts(ctx, t)
            }
            (ByzKind::LateLeader { hold_ms }, ConsensusMessage::Proposal(p))
                if p.block.proposer == me =>
            {
                let view = p.block.view;
                if self.released == Some(view) {
                    return vec![Routed::Same(ConsensusMessage::Proposal(p))];
                }
                if self.held.as_ref().is_some_and(|h| h.0.block.view == view) {
                    return Vec::new(); // a re-send of the proposal still held
                }
                let start = match self.requested {
                    Some((v, at)) if v == view => at,
                    _ => ctx.now,
                };
                self.held = Some((p, Vec::new(), start.saturating_add(hold_ms)));
                Vec::new()
            }
            (ByzKind::LateLeader { .. }, ConsensusMessage::Vote(v))
                if v.voter == me
                    && self
                        .held
                        .as_ref()
                        .is_some_and(|h| h.0.block.view == v.data.view) =>
            {
                if let Some(h) = self.held.as_mut() {
                    h.1.push(v);
                }
                Vec::new()
            }
            (ByzKind::SelectiveSender { targets }, m)
                if matches!(&m, ConsensusMessage::Proposal(p) if p.block.proposer == me)
                    || matches!(&m, ConsensusMessage::Vote(v) if v.voter == me) =>
            {
                ctx.vs
                    .indices()
                    .filter(|i| *i != me && i.0 < 64 && targets & (1u64 << i.0) != 0)
                    .map(|i| Routed::To(i, m.clone()))
                    .collect()
            }
            (ByzKind::LockHider { victim, .. }, m) => match m {
                ConsensusMessage::Proposal(p) if p.block.proposer == me => {
                    self.hidden_view = Some(p.block.view);
                    let Some(accomplice) = ctx.vs.indices().find(|i| *i != me && *i != victim)
                    else {
                        return Vec::new();
                    };
                    vec![
                        Routed::To(victim, ConsensusMessage::Proposal(p.clone())),
                        Routed::To(accomplice, ConsensusMessage::Proposal(p)),
                    ]
                }
                ConsensusMessage::Vote(v) if v.voter == me => {
                    if self.hidden_view == Some(v.data.view) {
                        self.held_vote = Some((v, ctx.now));
                    }
                    Vec::new()
                }
                ConsensusMessage::Timeout(t) if t.sender == me => {
                    self.timed_out.insert(t.view);
                    let qc = self.stale_qc(&t.high_qc, t.view);
                    let body = timeout_body(t.view, qc.view());
                    let sig = ctx.key.sign(domain, SigKind::Timeout, &body);
                    vec![Routed::Same(ConsensusMessage::Timeout(Timeout {
                        view: t.view,
                        high_qc: qc,
                        sender: me,
                        sig,
                        high_tc: None,
                        commit_qc: None,
                    }))]
                }
                ConsensusMessage::Status(s) if s.sender == me => {
                    let qc = self.stale_qc(&s.high_qc, s.view);
                    let sig = ctx
                        .key
                        .sign(domain, SigKind::Status, &status_body(s.view, &qc));
                    vec![Routed::Same(ConsensusMessage::Status(Status {
                        view: s.view,
                        high_qc: qc,
                        sender: me,
                        sig,
                        high_tc: None,
                    }))]
                }
                other => vec![Routed::Same(other)],
            },
            (_, m) => vec![Routed::Same(m)],
        }
    }

    /// [`ByzKind::ConflictingTimeouts`]: the core's timeout `t` to the first half of the
    /// others, a second timeout of the same view with a lower high QC to the rest.
    fn conflicting_timeouts(&mut self, ctx: &mut ByzCtx<'_>, t: Timeout) -> Vec<Routed> {
        let domain = ctx.vs.domain();
        let lower = self
            .recent_qcs
            .range(..t.high_qc.view())
            .next_back()
            .map(|(_, qc)| qc.clone())
            .or_else(|| {
                (t.high_qc.view() > View(0))
                    .then(|| QuorumCert::genesis(Block::genesis(domain).id(domain)))
            });
        let Some(qc) = lower else {
            return vec![Routed::Same(ConsensusMessage::Timeout(t))];
        };
        let body = timeout_body(t.view, qc.view());
        let t2 = Timeout {
            view: t.view,
            high_qc: qc,
            sender: ctx.me,
            sig: ctx.key.sign(domain, SigKind::Timeout, &body),
            high_tc: t.high_tc.clone(),
            commit_qc: None,
        };
        let others: Vec<ValidatorIndex> = ctx.vs.indices().filter(|i| *i != ctx.me).collect();
        let half = others.len().div_ceil(2);
        let mut out: Vec<Routed> = others
            .iter()
            .enumerate()
            .map(|(k, to)| {
                let m = if k < half { t.clone() } else { t2.clone() };
                Routed::To(*to, ConsensusMessage::Timeout(m))
            })
            .collect();
        // The bridge hears both, as for the equivocating leader (nothing relays timeouts).
        if let Some(bridge) = others.first() {
            out.push(Routed::To(*bridge, ConsensusMessage::Timeout(t2)));
        }
        out
    }

    /// The lock to report: the highest QC seen from others, if below `own`.
    fn stale_qc(&self, own: &QuorumCert, view: View) -> QuorumCert {
        match &self.public_qc {
            Some(p) if p.view() < own.view() && p.view() < view => p.clone(),
            _ => own.clone(),
        }
    }

    /// Periodic action for self-driven behaviours.
    pub fn tick(&mut self, ctx: &mut ByzCtx<'_>) -> Vec<Action> {
        if self.kind.is_crafted() {
            return self.crafted.tick(self.kind, ctx);
        }
        match self.kind {
            ByzKind::LateLeader { .. } => {
                let now = ctx.now;
                let Some((p, votes, _)) = self.held.take_if(|h| now >= h.2) else {
                    return Vec::new();
                };
                self.released = Some(p.block.view);
                let mut out = vec![Action::Broadcast(ConsensusMessage::Proposal(p))];
                out.extend(
                    votes
                        .into_iter()
                        .map(|v| Action::Broadcast(ConsensusMessage::Vote(v))),
                );
                out
            }
            ByzKind::LockHider { victim, release_ms } => {
                let now = ctx.now;
                self.held_vote
                    .take_if(|(_, at)| now >= at.saturating_add(release_ms))
                    .map(|(vote, _)| Action::Send {
                        to: victim,
                        msg: ConsensusMessage::Vote(vote),
                    })
                    .into_iter()
                    .collect()
            }
            ByzKind::StaleReplayer => {
                if self.recorded.is_empty() {
                    return Vec::new();
                }
                // Replay from the oldest quarter: far-past views.
                let span = (self.recorded.len() / 4).max(1);
                (0..REPLAY_PER_TICK)
                    .map(|_| {
                        let m = self.recorded[ctx.rng.random_range(0..span)].clone();
                        Action::Broadcast(m)
                    })
                    .collect()
            }
            ByzKind::Flooder => {
                let mut out = Vec::with_capacity(self.flood.per_burst);
                let domain = ctx.vs.domain();
                for _ in 0..self.flood.per_burst {
                    self.counter += 1;
                    let view = match self.counter % 4 {
                        0 => View(u64::MAX),
                        1 => View(u64::MAX - 1),
                        2 => View(1_000_000 + self.counter),
                        _ => View(10_000 + self.counter),
                    };
                    let genesis = QuorumCert::genesis(Block::genesis(domain).id(domain));
                    let msg = if self.counter.is_multiple_of(2) {
                        let body = timeout_body(view, genesis.view());
                        ConsensusMessage::Timeout(Timeout {
                            view,
                            high_qc: genesis,
                            sender: ctx.me,
                            sig: ctx.key.sign(domain, SigKind::Timeout, &body),
                            high_tc: None,
                            commit_qc: None,
                        })
                    } else {
                        let body = status_body(view, &genesis);
                        ConsensusMessage::Status(Status {
                            view,
                            high_qc: genesis,
                            sender: ctx.me,
                            sig: ctx.key.sign(domain, SigKind::Status, &body),
                            high_tc: None,
                        })
                    };
                    out.push(Action::Broadcast(msg));
                }
                out
            }
            _ => Vec::new(),
        }
    }
}

enum Routed {
    /// To one validator.
    To(ValidatorIndex, ConsensusMessage),
    /// Same routing as the original action.
    Same(ConsensusMessage),
    /// To everyone.
    #[allow(dead_code)]
    All(ConsensusMessage),
}
