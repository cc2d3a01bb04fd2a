//! Step-table unit tests of the core rules, plus a tiny lock-step network for end-to-end checks.
//! The full adversarial simulator lives in the `testnet` crate.

use super::*;
use crate::BlockResponse;
use crate::cert::TimeoutCert;
use crate::messages::BlockRequest;
use crate::policy::RoundRobin;
use crate::types::Digest;
use crate::types::Epoch;
use crate::types::Height;
use std::collections::BTreeMap;

pub(crate) fn keys(n: usize) -> (ValidatorSet, Vec<PrivateKey>) {
    crate::validators::test_validators("test", Epoch(0), n).unwrap()
}

fn core(vs: &ValidatorSet, key: PrivateKey, i: u16) -> Core<RoundRobin> {
    core_with(vs, key, i, |_| {})
}

/// Like [`core`], with `tweak` applied to the configuration (e.g. to switch on a mutation).
fn core_with(
    vs: &ValidatorSet,
    key: PrivateKey,
    i: u16,
    tweak: fn(&mut Config),
) -> Core<RoundRobin> {
    let g = Block::genesis(vs.domain());
    let gid = g.id(vs.domain());
    let mut cfg = Config::new(ValidatorIndex(i));
    cfg.timeout_base_ms = 1000;
    tweak(&mut cfg);
    Core::new(
        cfg,
        vs.clone(),
        key,
        RoundRobin::new(vs),
        SafetyData::genesis(gid),
        Recovered {
            committed: vec![g],
            uncommitted: vec![],
        },
    )
    .unwrap()
}

/// Lock-step network: zero delay, timers fire in deadline order when the network is quiet.
struct Net {
    nodes: Vec<Core<RoundRobin>>,
    now: Millis,
    queue: VecDeque<(usize, usize, ConsensusMessage)>,
    timers: BTreeMap<(Millis, usize, u64), Timer>,
    seq: u64,
    committed: Vec<Vec<BlockId>>,
    down: BTreeSet<usize>,
    evidence: Vec<Evidence>,
    /// Virtual time (ms) of each commit action at node 0.
    commit_times: Vec<Millis>,
}

impl Net {
    fn new(n: usize) -> Self {
        Self::with_config(n, |_| {})
    }

    /// `n` nodes whose configurations are changed by `tweak`.
    fn with_config(n: usize, tweak: fn(&mut Config)) -> Self {
        let (vs, ks) = keys(n);
        let nodes = ks
            .into_iter()
            .enumerate()
            .map(|(i, k)| core_with(&vs, k, i as u16, tweak))
            .collect();
        let mut net = Net {
            nodes,
            now: 0,
            queue: VecDeque::new(),
            timers: BTreeMap::new(),
            seq: 0,
            committed: vec![Vec::new(); n],
            down: BTreeSet::new(),
            evidence: Vec::new(),
            commit_times: Vec::new(),
        };
        for i in 0..n {
            net.apply(i, Event::Start);
        }
        net
    }

    fn apply(&mut self, i: usize, ev: Event) {
        if self.down.contains(&i) {
            return;
        }
        let actions = self.nodes[i].handle(self.now, ev);
        for a in actions {
            match a {
                Action::Send { to, msg } => self.queue.push_back((i, to.as_usize(), msg)),
                Action::Broadcast(msg) => {
                    for j in 0..self.nodes.len() {
                        if j != i {
                            self.queue.push_back((i, j, msg.clone()));
                        }
                    }
                }
                Action::SetTimer { timer, at } => {
                    self.seq += 1;
                    self.timers.insert((at, i, self.seq), timer);
                }
                Action::Commit { ids, .. } => {
                    if i == 0 {
                        self.commit_times.push(self.now);
                    }
                    self.committed[i].extend(ids)
                }
                Action::RequestPayload { view, .. } => self.apply(
                    i,
                    Event::PayloadReady {
                        view,
                        payload: view.0.to_le_bytes().to_vec(),
                    },
                ),
                Action::Evidence(e) => self.evidence.push(*e),
                _ => {}
            }
        }
    }

    /// Run until virtual time `until` (ms) or until node 0 committed `height` blocks.
    fn run(&mut self, until: Millis, height: usize) {
        loop {
            while let Some((from, to, msg)) = self.queue.pop_front() {
                if self.committed[0].len() >= height {
                    return;
                }
                let from = ValidatorIndex(from as u16);
                self.apply(to, Event::Message { from, msg });
            }
            let Some((&(at, i, seq), _)) = self.timers.iter().next() else {
                return;
            };
            if at > until {
                return;
            }
            let t = self.timers.remove(&(at, i, seq)).unwrap();
            self.now = at;
            self.apply(i, Event::Timer(t));
        }
    }
}

#[test]
fn happy_path_commits_and_agrees() {
    let mut net = Net::new(4);
    net.run(10, 20);
    // Zero-delay network: everything happens at t=0; no timer needs to fire.
    assert_eq!(net.now, 0);
    let heights: Vec<usize> = net.committed.iter().map(|c| c.len()).collect();
    assert!(heights.iter().all(|h| *h > 0), "no commits: {heights:?}");
    let min = *heights.iter().min().unwrap();
    for c in &net.committed {
        assert_eq!(c[..min], net.committed[0][..min]);
    }
}

fn assert_agree(net: &Net) {
    let live: Vec<&Vec<BlockId>> = net.committed.iter().collect();
    for a in &live {
        for b in &live {
            let m = a.len().min(b.len());
            assert_eq!(a[..m], b[..m], "committed chains diverge");
        }
    }
}

#[test]
fn crashed_leader_is_replaced_by_view_change() {
    let mut net = Net::new(4);
    // Leader of view 2 under round robin is validator 2: take it down from the start.
    net.down.insert(2);
    net.run(60_000, 10);
    assert!(
        net.committed[0].len() >= 10,
        "stalled: {:?}",
        net.committed[0].len()
    );
    assert!(net.nodes[0].status(net.now).counters.views_via_tc > 0);
    assert_agree(&net);
}

/// Longest gap between two commit actions at node 0 (ms).
fn longest_gap(net: &Net) -> Millis {
    longest_gap_after(net, 0)
}

/// Longest gap between two commit actions at node 0 that both happened at or after `from` ms.
fn longest_gap_after(net: &Net, from: Millis) -> Millis {
    net.commit_times
        .iter()
        .copied()
        .filter(|t| *t >= from)
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(Millis::MAX)
}

/// `n` nodes, validator 2 down for good, run until node 0 committed 400 blocks or 60 s of
/// virtual time passed; with `report`, every live node is told whom it is connected to (as the
/// driver does once QUIC notices the crash).
fn run_with_dead_validator(tweak: fn(&mut Config), report: bool) -> Net {
    let mut net = Net::with_config(4, tweak);
    net.down.insert(2);
    if report {
        for i in [0usize, 1, 3] {
            let connected = [0u16, 1, 3]
                .into_iter()
                .filter(|j| *j as usize != i)
                .map(ValidatorIndex)
                .collect();
            net.apply(i, Event::Connectivity { connected });
        }
    }
    net.run(60_000, 400);
    assert_agree(&net);
    net
}

/// Issue 6: one validator down for good under plain rotation (no exclusion): every fourth view
/// has a dead leader and must cost at most one base timeout (1 s) plus the next leader's
/// bounded handover wait (2Δ = 200 ms) — votes are broadcast so the view before it is
/// certified, and the backoff stays at zero because the high QC keeps advancing. The next
/// leader, entering by the TC, does not wait for the status of the silent dead leader (H2,
/// PROTOCOL.md §4.4). Once nothing arrived from the dead node for `silent_leader_ms` (here
/// τ_base, 1 s) its views cost the 200 ms grace, and after twice that they are timed out at
/// once: on this zero-delay network they then cost no time at all. Reported disconnected, its
/// views cost at most the grace. (A backoff that never resets stretches the gaps: the canary
/// test below.)
#[test]
fn dead_validator_costs_one_base_timeout_per_view_it_leads() {
    let cfg = Config::new(ValidatorIndex(0));
    let net = run_with_dead_validator(|_| {}, false);
    let gap = longest_gap(&net);
    assert!(
        gap <= 1_000 + 2 * cfg.delta_ms,
        "longest gap between commits {gap} ms > τ_base + 2Δ"
    );
    let silent_from = 2 * cfg.silent_leader_ms + cfg.unreachable_leader_grace_ms;
    let steady = longest_gap_after(&net, silent_from);
    assert_eq!(
        steady, 0,
        "from {silent_from} ms on a dead view still costs time: the leader is not timed out at \
         once or the handover waits for it"
    );
    assert!(
        net.committed[0].len() >= 100,
        "{} blocks",
        net.committed[0].len()
    );
    let gap = longest_gap(&run_with_dead_validator(|_| {}, true));
    assert!(
        gap <= cfg.unreachable_leader_grace_ms,
        "reported disconnected: longest gap {gap} ms > the grace"
    );
}

/// Mutation canary of the test above: with a backoff that never resets, the same run (one
/// validator down for good) stretches a dead leader's view past the `τ_base + 2Δ` that test
/// allows (the views before the dead validator counts as silent still wait out τ(v)).
#[cfg(feature = "mutations")]
#[test]
fn canary_backoff_never_resets_stretches_dead_views() {
    let mutated = |c: &mut Config| c.mutations.backoff_never_resets = true;
    let gap = longest_gap(&run_with_dead_validator(mutated, false));
    let cfg = Config::new(ValidatorIndex(0));
    assert!(
        gap > 1_000 + 2 * cfg.delta_ms,
        "canary: a backoff that never resets should stretch the dead views, gap {gap} ms"
    );
}

/// A connectivity report that drops the current leader shortens the running view timer to the
/// unreachable-leader grace (step table: event in, timer out).
#[test]
fn losing_the_leader_rearms_the_view_timer_to_the_grace() {
    let (vs, ks) = keys(4);
    let mut ks = ks.into_iter();
    let mut c = core(&vs, ks.next().unwrap(), 0);
    c.handle(0, Event::Start);
    let v = c.current_view();
    let leader = c.leader(v);
    assert_ne!(leader, ValidatorIndex(0), "node 0 must not lead view {v}");
    let others: Vec<ValidatorIndex> = vs.indices().filter(|i| i.0 != 0).collect();
    // Everyone connected: nothing to re-arm.
    let a = c.handle(
        100,
        Event::Connectivity {
            connected: others.clone(),
        },
    );
    assert!(
        !a.iter().any(|x| matches!(
            x,
            Action::SetTimer {
                timer: Timer::View(_),
                ..
            }
        )),
        "{a:?}"
    );
    // The leader drops out: the view times out after the grace, not τ(v).
    let without: Vec<ValidatorIndex> = others.into_iter().filter(|i| *i != leader).collect();
    let a = c.handle(
        300,
        Event::Connectivity {
            connected: without.clone(),
        },
    );
    let grace = Config::new(ValidatorIndex(0)).unreachable_leader_grace_ms;
    assert!(
        a.iter().any(|x| matches!(
            x,
            Action::SetTimer { timer: Timer::View(t), at } if *t == v && *at == 300 + grace
        )),
        "{a:?}"
    );
    // A repeated report never pushes the deadline out again.
    let a = c.handle(400, Event::Connectivity { connected: without });
    assert!(
        !a.iter().any(|x| matches!(
            x,
            Action::SetTimer {
                timer: Timer::View(_),
                ..
            }
        )),
        "{a:?}"
    );
}

#[test]
fn safety_module_refuses_vote_after_timeout_and_double_vote() {
    let (vs, ks) = keys(4);
    let g = Block::genesis(vs.domain());
    let gid = g.id(vs.domain());
    let mut sm = SafetyModule::new(
        PrivateKey::from_seed(ks[1].seed()),
        ValidatorIndex(1),
        SafetyData::genesis(gid),
    );
    let block = |view: u64, justify: QuorumCert| Block {
        epoch: Epoch(0),
        view: View(view),
        height: crate::types::Height(1),
        parent: justify.block_id(),
        justify,
        payload: vec![],
        evidence: vec![],
        proposer: ValidatorIndex(0),
        skipped_leaders: vec![],
    };
    let b1 = block(1, QuorumCert::genesis(gid));
    let id1 = b1.id(vs.domain());
    // (step, expected)
    assert!(sm.sign_vote(&b1, id1, &vs).is_ok(), "first vote in view 1");
    assert_eq!(
        sm.sign_vote(&b1, id1, &vs).unwrap_err(),
        crate::safety::Refusal::AlreadyVoted
    );
    assert!(sm.sign_timeout(View(2), &vs).is_ok());
    let b2 = block(2, QuorumCert::genesis(gid));
    let id2 = b2.id(vs.domain());
    assert_eq!(
        sm.sign_vote(&b2, id2, &vs).unwrap_err(),
        crate::safety::Refusal::TimedOut,
        "no vote in a view after timing out in it"
    );
    assert_eq!(
        sm.sign_timeout(View(2), &vs).unwrap_err(),
        crate::safety::Refusal::AlreadyTimedOut
    );
    // Lock rule: after locking on a QC of view 5, a block justified by view 0 is refused.
    let mut qc5 = QuorumCert::genesis(gid);
    qc5.data.view = View(5);
    sm.observe_qc(&qc5);
    let b9 = block(9, QuorumCert::genesis(gid));
    let id9 = b9.id(vs.domain());
    assert_eq!(
        sm.sign_vote(&b9, id9, &vs).unwrap_err(),
        crate::safety::Refusal::LockViolation
    );
}

#[test]
fn equivocating_proposal_yields_verifiable_evidence() {
    let mut net = Net::new(4);
    net.run(0, 1);
    let v = net.nodes[0].current_view();
    let leader = net.nodes[0].leader(v).as_usize();
    let (vs, ks) = keys(4);
    let lock = net.nodes[leader].safety_data().lock.clone();
    let height = net.nodes[leader]
        .block(&lock.block_id())
        .unwrap()
        .height
        .next()
        .unwrap();
    let mk = |payload: u8| {
        let block = Block {
            epoch: Epoch(0),
            view: v,
            height,
            parent: lock.block_id(),
            skipped_leaders: vec![],
            justify: lock.clone(),
            payload: vec![payload],
            evidence: vec![],
            proposer: ValidatorIndex(leader as u16),
        };
        let id = block.id(vs.domain());
        let sig = ks[leader].sign(
            vs.domain(),
            crate::crypto::SigKind::Proposal,
            &crate::messages::proposal_body(v, &id),
        );
        ConsensusMessage::Proposal(crate::messages::Proposal {
            block,
            tc: None,
            sig,
        })
    };
    let target = (leader + 1) % 4;
    let from = ValidatorIndex(leader as u16);
    net.apply(target, Event::Message { from, msg: mk(1) });
    net.apply(target, Event::Message { from, msg: mk(2) });
    let ev = net
        .evidence
        .iter()
        .find(|e| e.kind() == crate::evidence::EvidenceKind::DoubleProposal)
        .expect("E2 evidence");
    assert_eq!(ev.offender(), from);
    ev.verify(&vs).expect("third party verifies");
}

#[test]
fn restart_never_double_votes() {
    let mut net = Net::new(4);
    net.run(0, 3);
    let i = 1;
    let data = net.nodes[i].safety_data().clone();
    let voted = data.last_voted_view;
    assert!(voted.0 > 0);
    let (vs, ks) = keys(4);
    let g = Block::genesis(vs.domain());
    let mut restarted = Core::new(
        Config::new(ValidatorIndex(i as u16)),
        vs.clone(),
        PrivateKey::from_seed(ks[i].seed()),
        RoundRobin::new(&vs),
        data.clone(),
        Recovered {
            committed: vec![g],
            uncommitted: vec![],
        },
    )
    .unwrap();
    assert!(restarted.current_view() >= voted);
    let actions = restarted.handle(0, Event::Start);
    let mut resent = 0;
    for a in &actions {
        if let Action::Send {
            msg: ConsensusMessage::Vote(v),
            ..
        }
        | Action::Broadcast(ConsensusMessage::Vote(v)) = a
        {
            resent += 1;
            assert_eq!(
                Some(v),
                data.last_vote.as_ref(),
                "only the identical vote is re-sent"
            );
        }
    }
    if data.last_vote.as_ref().map(|v| v.data.view) == Some(restarted.current_view()) {
        assert_eq!(resent, 1, "the vote of the current view is re-sent once");
    }
}

/// §3 rule 1, §4.8 step 3: the safety record keeps the proposal without its block, and a
/// restarted leader re-sends the identical proposal, its block taken from the stored blocks.
#[test]
fn a_restarted_leader_resends_its_identical_proposal_from_the_stored_block() {
    let (vs, ks) = keys(4);
    // Validator 1 leads view 1 under round robin.
    let mut c = core(&vs, PrivateKey::from_seed(ks[1].seed()), 1);
    c.handle(0, Event::Start);
    c.handle(1_000, Event::Timer(Timer::ProposeWait(View(1))));
    let a = c.handle(
        1_001,
        Event::PayloadReady {
            view: View(1),
            payload: vec![7; 100_000],
        },
    );
    let proposals = |a: &[Action]| -> Vec<crate::Proposal> {
        a.iter()
            .filter_map(|x| match x {
                Action::Broadcast(ConsensusMessage::Proposal(p)) => Some(p.clone()),
                _ => None,
            })
            .collect()
    };
    let sent = proposals(&a).pop().expect("the leader proposes");
    let data = c.safety_data().clone();
    let record = data
        .last_proposal
        .clone()
        .expect("the proposal is recorded");
    assert_eq!(record.block_id, sent.block.id(vs.domain()));
    assert!(
        crate::encode(&data).len() < 4_096,
        "the record carries no block: {} bytes",
        crate::encode(&data).len()
    );
    let mut restarted = Core::new(
        Config::new(ValidatorIndex(1)),
        vs.clone(),
        PrivateKey::from_seed(ks[1].seed()),
        RoundRobin::new(&vs),
        data,
        Recovered {
            committed: vec![Block::genesis(vs.domain())],
            uncommitted: vec![sent.block.clone()],
        },
    )
    .unwrap();
    assert_eq!(restarted.current_view(), View(1));
    let a = restarted.handle(0, Event::Start);
    assert_eq!(proposals(&a), vec![sent], "{a:?}");
}

/// A QC of view `p + 1` (parent view `p`) signed by validators `0..q`, and a TC of view `p + 2`
/// signed by the same validators, carrying it as its high QC.
fn qc_and_tc(vs: &ValidatorSet, ks: &[PrivateKey], p: u64) -> (QuorumCert, TimeoutCert) {
    qc_and_tc_over(vs, ks, p, p + 1)
}

/// Like [`qc_and_tc`] with the QC of view `qv ≥ p + 1` (a commit proof only if `qv = p + 1`)
/// and the TC of view `qv + 1`.
fn qc_and_tc_over(
    vs: &ValidatorSet,
    ks: &[PrivateKey],
    p: u64,
    qv: u64,
) -> (QuorumCert, TimeoutCert) {
    let q = ks.len() - (ks.len() - 1) / 3;
    qc_and_tc_by(vs, ks, p, qv, &(0..q).collect::<Vec<_>>())
}

/// Like [`qc_and_tc_over`], signed by validators `by` (a quorum, ascending).
fn qc_and_tc_by(
    vs: &ValidatorSet,
    ks: &[PrivateKey],
    p: u64,
    qv: u64,
    by: &[usize],
) -> (QuorumCert, TimeoutCert) {
    use crate::cert::{Bitmap, VoteData, timeout_body};
    use crate::crypto::SigKind;
    let q = by.len();
    let data = VoteData {
        view: View(qv),
        block_id: Digest([7; 32]),
        height: crate::types::Height(5),
        parent_id: Digest([8; 32]),
        parent_view: View(p),
    };
    let mut signers = Bitmap::new(ks.len());
    for &i in by {
        signers.set(ValidatorIndex(i as u16));
    }
    let body = crate::encode(&data);
    let qc = QuorumCert {
        data,
        signers: signers.clone(),
        sigs: by
            .iter()
            .map(|&i| ks[i].sign(vs.domain(), SigKind::Vote, &body))
            .collect(),
    };
    let tview = View(qv + 1);
    let tbody = timeout_body(tview, View(qv));
    let tc = TimeoutCert {
        view: tview,
        high_qc: qc.clone(),
        signers,
        hqc_views: vec![View(qv); q],
        sigs: by
            .iter()
            .map(|&i| ks[i].sign(vs.domain(), SigKind::Timeout, &tbody))
            .collect(),
    };
    (qc, tc)
}

/// PROTOCOL.md §4.9: a QC and a TC carrying our signatures for views we never signed in (our
/// key is running elsewhere) suspend every signature of ours for `double_sign_window` views;
/// certificates without our signature then move us past the window and signing resumes.
#[test]
fn certificates_signed_with_our_key_elsewhere_suspend_our_signatures() {
    let (vs, ks) = keys(4);
    // Deterministic keys: a second copy supplies the core's own key (validator 0).
    let mut c = core(&vs, keys(4).1.remove(0), 0);
    c.handle(0, Event::Start);
    let (_, tc) = qc_and_tc_by(&vs, &ks, 100, 101, &[0, 1, 2]);
    send_tc(&mut c, 1, &tc);
    assert_eq!(c.current_view(), View(103));
    assert_eq!(
        c.counters.own_signatures_elsewhere, 2,
        "the QC's vote and the TC's timeout"
    );
    assert_eq!(c.safety.suspended_until(), View(102 + 20));
    // Our view timer fires: no timeout is signed while suspended.
    c.handle(10_000, Event::Timer(Timer::View(View(103))));
    assert_eq!(c.counters.timeouts_sent, 0);
    // The same certificates again are not new: nothing more is counted.
    send_tc(&mut c, 10_001, &tc);
    assert_eq!(c.counters.own_signatures_elsewhere, 2);
    // Certificates of the others alone take us past the window; then we sign again.
    let (_, later) = qc_and_tc_by(&vs, &ks, 122, 123, &[1, 2, 3]);
    send_tc(&mut c, 10_002, &later);
    assert_eq!(c.current_view(), View(125));
    c.handle(30_000, Event::Timer(Timer::View(View(125))));
    assert_eq!(
        c.counters.timeouts_sent, 1,
        "signing resumed after the window"
    );
    assert_eq!(c.counters.own_signatures_elsewhere, 2);
}

/// With the rule off (`double_sign_window = 0`, the simulator's Twins) nothing is suspended.
#[test]
fn the_double_sign_window_can_be_switched_off() {
    let (vs, ks) = keys(4);
    let mut c = core_with(&vs, keys(4).1.remove(0), 0, |cfg| {
        cfg.double_sign_window = 0
    });
    c.handle(0, Event::Start);
    let (_, tc) = qc_and_tc_by(&vs, &ks, 100, 101, &[0, 1, 2]);
    send_tc(&mut c, 1, &tc);
    assert_eq!(c.counters.own_signatures_elsewhere, 0);
    c.handle(10_000, Event::Timer(Timer::View(View(103))));
    assert_eq!(c.counters.timeouts_sent, 1);
}

/// A core of validator 0 of `keys(4)` with the double-sign check at start on (PROTOCOL.md
/// §4.10): 4 clean certified views, or 5 s without a new certificate.
fn checked_core(vs: &ValidatorSet) -> Core<RoundRobin> {
    checked_core_of(vs, &keys(4).1, 0)
}

/// As [`checked_core`], for validator `me` holding `ks[me]`.
fn checked_core_of(vs: &ValidatorSet, ks: &[PrivateKey], me: u16) -> Core<RoundRobin> {
    let key = PrivateKey::from_seed(ks[me as usize].seed());
    core_with(vs, key, me, |cfg| {
        cfg.double_sign_check_views = 4;
        cfg.double_sign_check_ms = 5_000;
    })
}

/// §4.10: after a start nothing is signed (not even a timeout when the view timer fires) until
/// certificates of 4 distinct views above our watermark showed no signature of ours; then the
/// skipped timeout is signed at once.
#[test]
fn the_double_sign_check_holds_signatures_until_clean_certificates_arrive() {
    let (vs, ks) = keys(4);
    let mut c = checked_core(&vs);
    c.handle(0, Event::Start);
    assert!(c.status(0).signing_held);
    c.handle(1_000, Event::Timer(Timer::View(View(1))));
    assert_eq!(c.counters.timeouts_sent, 0, "held: no timeout signed");
    // QC(10) + TC(11): two clean certified views.
    send_tc(&mut c, 1_100, &qc_and_tc_by(&vs, &ks, 9, 10, &[1, 2, 3]).1);
    assert!(c.status(1_100).signing_held);
    // QC(12) + TC(13): four. The check passes and signing resumes.
    send_tc(&mut c, 1_200, &qc_and_tc_by(&vs, &ks, 11, 12, &[1, 2, 3]).1);
    let st = c.status(1_200);
    assert!(!st.signing_held);
    assert_eq!(st.counters.sign_check_held_ms, 1_200);
    c.handle(10_000, Event::Timer(Timer::View(View(14))));
    assert_eq!(c.counters.timeouts_sent, 1, "signing resumed");
}

/// §4.10 with §4.9: certificates carrying our signature keep the check holding (and suspend us)
/// and restart its count above them; only clean certificates above that release it.
#[test]
fn the_double_sign_check_keeps_holding_while_our_key_signs_elsewhere() {
    let (vs, ks) = keys(4);
    let mut c = checked_core(&vs);
    c.handle(0, Event::Start);
    send_tc(&mut c, 100, &qc_and_tc_by(&vs, &ks, 9, 10, &[1, 2, 3]).1);
    // Our key in QC(12) and TC(13): another process signs with it.
    send_tc(&mut c, 200, &qc_and_tc_by(&vs, &ks, 11, 12, &[0, 1, 2]).1);
    assert_eq!(c.counters.own_signatures_elsewhere, 2);
    assert!(
        c.status(200).signing_held,
        "the count restarts above view 13"
    );
    send_tc(&mut c, 300, &qc_and_tc_by(&vs, &ks, 13, 14, &[1, 2, 3]).1);
    assert!(c.status(300).signing_held, "two clean views above 13 only");
    send_tc(&mut c, 400, &qc_and_tc_by(&vs, &ks, 15, 16, &[1, 2, 3]).1);
    let st = c.status(400);
    assert!(!st.signing_held);
    assert_eq!(
        st.signing_suspended_until,
        View(13 + 20),
        "§4.9 still applies"
    );
}

/// A signed timeout of validator `who` for `view` reporting the genesis QC.
fn genesis_timeout(vs: &ValidatorSet, ks: &[PrivateKey], who: u16, view: u64) -> ConsensusMessage {
    let gid = Block::genesis(vs.domain()).id(vs.domain());
    let body = crate::cert::timeout_body(View(view), View(0));
    ConsensusMessage::Timeout(crate::messages::Timeout {
        view: View(view),
        high_qc: QuorumCert::genesis(gid),
        sender: ValidatorIndex(who),
        sig: ks[who as usize].sign(vs.domain(), crate::crypto::SigKind::Timeout, &body),
        high_tc: None,
        commit_qc: None,
    })
}

/// Validator `who`'s signed status for `view`, reporting the genesis lock, delivered at `now`.
fn hear_genesis_status(c: &mut Core<RoundRobin>, ks: &[PrivateKey], who: u16, view: u64, now: u64) {
    let vs = c.vs.clone();
    let gid = Block::genesis(vs.domain()).id(vs.domain());
    let high_qc = QuorumCert::genesis(gid);
    let body = crate::messages::status_body(View(view), &high_qc);
    let status = crate::messages::Status {
        view: View(view),
        high_qc,
        sender: ValidatorIndex(who),
        sig: ks[who as usize].sign(vs.domain(), crate::crypto::SigKind::Status, &body),
        high_tc: None,
    };
    c.handle(
        now,
        Event::Message {
            from: ValidatorIndex(who),
            msg: ConsensusMessage::Status(status),
        },
    );
}

/// §4.10: when no certificate arrives for `double_sign_check_ms` after a quorum was heard
/// from, the chain waits for us (no other instance of our key is signing in it) and the check
/// passes. Nobody timed out in the view whose timer fired during the hold (a network that
/// started together), so the view gets a fresh timer instead of a timeout at once; the stale
/// timer does nothing.
#[test]
fn the_double_sign_check_passes_when_the_chain_waits_for_us() {
    let (vs, ks) = keys(4);
    let mut c = checked_core(&vs);
    let start = c.handle(0, Event::Start);
    assert!(
        start.iter().any(|a| matches!(
            a,
            Action::SetTimer {
                timer: Timer::SignCheck,
                at: 5_000
            }
        )),
        "the check arms its timer"
    );
    assert!(
        start
            .iter()
            .any(|a| matches!(a, Action::Broadcast(ConsensusMessage::Status(_)))),
        "a held node tells every validator its status: {start:?}"
    );
    hear_genesis_status(&mut c, &ks, 1, 1, 10);
    hear_genesis_status(&mut c, &ks, 2, 1, 20);
    c.handle(1_000, Event::Timer(Timer::View(View(1))));
    assert_eq!(c.counters.timeouts_sent, 0);
    c.handle(4_999, Event::Timer(Timer::SignCheck));
    assert!(c.status(4_999).signing_held);
    let a = c.handle(5_000, Event::Timer(Timer::SignCheck));
    assert!(!c.status(5_000).signing_held);
    assert_eq!(c.counters.timeouts_sent, 0, "nobody gave up on view 1");
    assert!(
        a.iter().any(|a| matches!(
            a,
            Action::SetTimer {
                timer: Timer::View(View(1)),
                at: 6_000
            }
        )),
        "{a:?}"
    );
    c.handle(5_500, Event::Timer(Timer::View(View(1))));
    assert_eq!(c.counters.timeouts_sent, 0, "a stale timer does nothing");
    c.handle(6_000, Event::Timer(Timer::View(View(1))));
    assert_eq!(c.counters.timeouts_sent, 1, "the fresh timer times out");
}

/// §4.10: silence from a network we do not hear proves nothing. A second instance of a key
/// whose peers talk to the other instance hears no certificate and no message: it holds
/// however long that lasts, telling every validator its status again each time its timer
/// fires, and passes only `double_sign_check_ms` after a quorum was heard from.
#[test]
fn the_double_sign_check_holds_while_no_quorum_is_heard() {
    let (vs, ks) = keys(4);
    let mut c = checked_core(&vs);
    c.handle(0, Event::Start);
    for at in [5_000, 10_000, 15_000] {
        let a = c.handle(at, Event::Timer(Timer::SignCheck));
        assert!(c.status(at).signing_held, "nothing heard by {at} ms");
        assert!(
            a.iter()
                .any(|a| matches!(a, Action::Broadcast(ConsensusMessage::Status(_)))),
            "{a:?}"
        );
        assert!(
            a.iter().any(|a| matches!(
                a,
                Action::SetTimer { timer: Timer::SignCheck, at: next } if *next == at + 5_000
            )),
            "{a:?}"
        );
    }
    hear_genesis_status(&mut c, &ks, 3, 1, 16_000);
    c.handle(20_000, Event::Timer(Timer::SignCheck));
    assert!(
        c.status(20_000).signing_held,
        "one validator is not a quorum"
    );
    hear_genesis_status(&mut c, &ks, 1, 1, 21_000);
    c.handle(24_999, Event::Timer(Timer::SignCheck));
    assert!(c.status(24_999).signing_held);
    c.handle(25_000, Event::Timer(Timer::SignCheck));
    assert!(
        !c.status(25_000).signing_held,
        "a quorum heard, and no certificate for the hold"
    );
}

/// §4.10: a validator that is a quorum alone (a one-validator chain) has nobody to hear from:
/// silence passes the check after the hold.
#[test]
fn a_lone_validator_passes_the_double_sign_check_after_the_hold() {
    let (vs, ks) = keys(1);
    let mut c = checked_core_of(&vs, &ks, 0);
    c.handle(0, Event::Start);
    assert!(c.status(0).signing_held);
    c.handle(5_000, Event::Timer(Timer::SignCheck));
    assert!(!c.status(5_000).signing_held);
}

/// §4.10: a held node sends its status to each validator that connects (the one it sent at
/// start was lost if the peer was not connected yet).
#[test]
fn a_held_node_sends_its_status_to_validators_that_connect() {
    let (vs, _) = keys(4);
    let mut c = checked_core(&vs);
    c.handle(0, Event::Start);
    let sent_to = |a: &[Action]| -> Vec<u16> {
        a.iter()
            .filter_map(|x| match x {
                Action::Send {
                    to,
                    msg: ConsensusMessage::Status(_),
                } => Some(to.0),
                _ => None,
            })
            .collect()
    };
    let a = c.handle(
        10,
        Event::Connectivity {
            connected: vec![ValidatorIndex(1)],
        },
    );
    assert_eq!(sent_to(&a), vec![1]);
    let a = c.handle(
        20,
        Event::Connectivity {
            connected: vec![ValidatorIndex(1), ValidatorIndex(2), ValidatorIndex(3)],
        },
    );
    assert_eq!(sent_to(&a), vec![2, 3], "only to the newly connected");
}

/// §4.10: if another validator timed out in the view whose timer fired during the hold, the
/// skipped timeout is signed as soon as the check passes (the TC may need it).
#[test]
fn the_double_sign_check_signs_the_skipped_timeout_when_others_timed_out() {
    let (vs, ks) = keys(4);
    let mut c = checked_core(&vs);
    c.handle(0, Event::Start);
    hear_genesis_status(&mut c, &ks, 1, 1, 10);
    c.handle(1_000, Event::Timer(Timer::View(View(1))));
    c.handle(
        1_100,
        Event::Message {
            from: ValidatorIndex(2),
            msg: genesis_timeout(&vs, &ks, 2, 1),
        },
    );
    assert_eq!(c.counters.timeouts_sent, 0, "held");
    c.handle(5_000, Event::Timer(Timer::SignCheck));
    assert_eq!(c.counters.timeouts_sent, 1, "signed on release");
}

/// §4.10: a leader held by the check requests no payload (it could not sign the proposal, and
/// the request would be spent); on release it requests one and proposes.
#[test]
fn a_held_leader_proposes_when_the_check_passes() {
    let (vs, ks) = keys(4);
    // Validator 1 leads view 1 under round robin.
    let mut c = checked_core_of(&vs, &ks, 1);
    let a = c.handle(0, Event::Start);
    assert!(
        !a.iter().any(|x| matches!(x, Action::RequestPayload { .. })),
        "{a:?}"
    );
    hear_genesis_status(&mut c, &ks, 2, 1, 10);
    hear_genesis_status(&mut c, &ks, 3, 1, 10);
    c.handle(1_000, Event::Timer(Timer::ProposeWait(View(1))));
    let a = c.handle(5_000, Event::Timer(Timer::SignCheck));
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::RequestPayload { view: View(1), .. })),
        "{a:?}"
    );
    let a = c.handle(
        5_011,
        Event::PayloadReady {
            view: View(1),
            payload: vec![1],
        },
    );
    assert!(
        a.iter().any(|x| matches!(
            x,
            Action::Broadcast(ConsensusMessage::Proposal(p)) if p.block.view == View(1)
        )),
        "{a:?}"
    );
}

/// A started core of the first validator of four that leads neither view 1 nor view 2
/// (round robin), and its index.
fn started_bystander(vs: &ValidatorSet, ks: &[PrivateKey]) -> (u16, Core<RoundRobin>) {
    let rr = RoundRobin::new(vs);
    let leader = |v: u64| rr.leader(View(v)).0;
    let me = (0..4u16)
        .find(|i| *i != leader(1) && *i != leader(2))
        .unwrap();
    let mut c = core(vs, PrivateKey::from_seed(ks[me as usize].seed()), me);
    c.handle(0, Event::Start);
    (me, c)
}

/// §6.3 rule 7: a node that missed the QC which committed a block learns the commit from the
/// `commit_qc` of a timeout (no other certificate it will see carries it), so its committed
/// tip, and the leader schedule computed from it, rejoins the others'.
#[test]
fn a_commit_proof_in_a_timeout_commits_what_we_missed() {
    let (vs, ks) = keys(4);
    let rr = RoundRobin::new(&vs);
    let leader = |v: u64| rr.leader(View(v)).0;
    let (me, mut c) = started_bystander(&vs, &ks);
    let gid = Block::genesis(vs.domain()).id(vs.domain());
    let others: Vec<u16> = (0..4).filter(|i| *i != me).collect();
    let b1 = block_on(1, leader(1), QuorumCert::genesis(gid), 1, 1);
    let qc1 = qc_on(&vs, &ks, &b1, &others);
    let b2 = block_on(2, leader(2), qc1.clone(), 2, 2);
    let qc2 = qc_on(&vs, &ks, &b2, &others);
    assert!(qc2.is_commit_proof(), "views 1, 2: QC(2) commits b1");
    for (t, b) in [(1, b1.clone()), (2, b2)] {
        let from = ValidatorIndex(b.proposer.0);
        let msg = signed_proposal(&vs, &ks[from.as_usize()], b);
        c.handle(t, Event::Message { from, msg });
    }
    assert_eq!(c.status(3).committed_height.0, 0, "QC(2) never reached us");
    // Validator `w` times out in view 2 reporting its lock QC(1), with the proof QC(2).
    let w = others[0];
    let body = crate::cert::timeout_body(View(2), View(1));
    let t = crate::messages::Timeout {
        view: View(2),
        high_qc: qc1,
        sender: ValidatorIndex(w),
        sig: ks[w as usize].sign(vs.domain(), crate::crypto::SigKind::Timeout, &body),
        high_tc: None,
        commit_qc: Some(qc2),
    };
    let a = c.handle(
        4,
        Event::Message {
            from: ValidatorIndex(w),
            msg: ConsensusMessage::Timeout(t),
        },
    );
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::Commit { ids, .. } if ids == &vec![b1.id(vs.domain())])),
        "{a:?}"
    );
    assert_eq!(c.status(4).committed_height.0, 1);
}

/// Issue 7 finding 2: some TCs' bytes parse as a QC. With one verified-certificate cache keyed
/// by the bytes, a validator sent such a TC (verified, cached) and then a Status whose high QC is
/// those bytes: the cache hit skipped verification and every honest node locked on a block that
/// does not exist. The test builds the colliding encoding (n = 10) and checks that the status is
/// rejected and the lock does not move.
#[test]
fn a_tc_whose_bytes_parse_as_a_qc_is_not_a_verified_qc() {
    let (vs, ks) = keys(10);
    let (p, tc) = (1..5_000u64)
        .find_map(|p| {
            // Lengths, not signature values, decide whether the bytes parse: probe unsigned.
            let (_, tc) = qc_and_tc(&vs, &ks[..10], p);
            borsh::from_slice::<QuorumCert>(&crate::encode(&tc))
                .ok()
                .map(|_| (p, tc))
        })
        .expect("a colliding layout exists for n = 10");
    let forged: QuorumCert = borsh::from_slice(&crate::encode(&tc)).unwrap();
    assert!(
        forged
            .verify(&vs, &Block::genesis(vs.domain()).id(vs.domain()))
            .is_err()
    );
    assert!(
        forged.view() > tc.high_qc.view(),
        "p = {p}: the forgery would raise the lock"
    );

    let mut keys_iter = ks.into_iter();
    let k0 = keys_iter.next().unwrap();
    let k1 = keys_iter.next().unwrap();
    let mut c = core(&vs, k0, 0);
    c.handle(0, Event::Start);
    let from = ValidatorIndex(1);
    c.handle(
        1,
        Event::Message {
            from,
            msg: ConsensusMessage::TimeoutCert(tc.clone()),
        },
    );
    let lock_before = c.safety_data().lock.clone();
    assert_eq!(lock_before, tc.high_qc, "the genuine TC was accepted");
    let body = crate::messages::status_body(c.current_view(), &forged);
    let status = crate::messages::Status {
        view: c.current_view(),
        high_qc: forged,
        sender: from,
        sig: k1.sign(vs.domain(), crate::crypto::SigKind::Status, &body),
        high_tc: None,
    };
    let rejected = c.status(2).counters.invalid_messages;
    c.handle(
        2,
        Event::Message {
            from,
            msg: ConsensusMessage::Status(status),
        },
    );
    let lock = &c.safety_data().lock;
    assert_eq!(
        (lock.view(), lock.block_id()),
        (lock_before.view(), lock_before.block_id()),
        "lock moved to a forged QC"
    );
    assert_eq!(c.status(3).counters.invalid_messages, rejected + 1);
}

/// Deliver a bare TC from validator 1 at time `at`; returns the actions.
fn send_tc(c: &mut Core<RoundRobin>, at: Millis, tc: &TimeoutCert) -> Vec<Action> {
    c.handle(
        at,
        Event::Message {
            from: ValidatorIndex(1),
            msg: ConsensusMessage::TimeoutCert(tc.clone()),
        },
    )
}

fn reported(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::PeerMisbehaved { peer, reason: InvalidReason::BadCertificate } if *peer == ValidatorIndex(1)))
        .count()
}

/// Issue 7 finding 5: a bare TC of any view was verified (≈ 2q signature checks, its high QC
/// outside the cache) although its sender signs nothing. Now a TC that cannot change our state
/// costs no check at all, valid or forged, and a TC's high QC goes through the cache.
#[test]
fn old_tcs_cost_no_signature_check_and_a_shared_high_qc_is_checked_once() {
    let (vs, ks) = keys(4);
    // Deterministic keys: a second copy supplies the core's own key.
    let mut c = core(&vs, keys(4).1.remove(0), 0);
    c.handle(0, Event::Start);
    let verified = |c: &Core<RoundRobin>| c.counters.certificates_verified;

    let (_, tc) = qc_and_tc(&vs, &ks, 100);
    send_tc(&mut c, 1, &tc);
    assert_eq!(
        c.current_view(),
        View(103),
        "the TC of view 102 was accepted"
    );
    assert_eq!(verified(&c), 2, "the TC and its high QC");

    // A second TC of a later view with the same high QC: only the TC's own signatures.
    let mut tc2 = tc.clone();
    tc2.view = View(103);
    let tbody = crate::cert::timeout_body(View(103), View(101));
    tc2.sigs = ks[..3]
        .iter()
        .map(|k| k.sign(vs.domain(), crate::crypto::SigKind::Timeout, &tbody))
        .collect();
    send_tc(&mut c, 2, &tc2);
    assert_eq!(c.current_view(), View(104));
    assert_eq!(verified(&c), 3, "the shared high QC came from the cache");

    // Old TCs, valid or with garbage signatures, whose high QCs are neither above our lock nor
    // commit proofs: nothing to learn, nothing checked, nobody reported.
    for p in [10u64, 50, 90] {
        let (_, old) = qc_and_tc_over(&vs, &ks, p, p + 2);
        let mut forged = old.clone();
        forged.sigs[0] = forged.sigs[1];
        for t in [old, forged] {
            let actions = send_tc(&mut c, 3, &t);
            assert_eq!(reported(&actions), 0);
        }
    }
    assert_eq!(verified(&c), 3, "old TCs cost no signature check");
    assert_eq!(c.current_view(), View(104));
}

/// Issue 7 finding 5: failed verifications were not remembered and not reported, so a peer
/// could make every honest node re-check the same bad certificate forever. Now a bad TC that
/// matters is checked once, its sender is reported each time (the driver bans at the
/// threshold), and the same bytes are refused from the failure cache.
#[test]
fn a_bad_certificate_is_checked_once_and_its_sender_reported() {
    let (vs, ks) = keys(4);
    // Deterministic keys: a second copy supplies the core's own key.
    let mut c = core(&vs, keys(4).1.remove(0), 0);
    c.handle(0, Event::Start);
    let (_, mut tc) = qc_and_tc(&vs, &ks, 100);
    tc.sigs[2] = tc.sigs[0];
    for at in 1..=5 {
        let actions = send_tc(&mut c, at, &tc);
        assert_eq!(reported(&actions), 1, "the direct sender is reported");
    }
    assert_eq!(
        c.counters.certificates_verified, 1,
        "checked once, then refused from the failure cache"
    );
    assert_eq!(c.current_view(), View(1), "the forged TC moved nothing");
    assert_eq!(c.status(6).counters.invalid_messages, 5);
}

/// Issue 7 finding 4: signed proposals for far-future views were recorded by the equivocation
/// detector before the view-window check and never pruned; one validator could grow every
/// honest node's memory without bound. 10,000 of them leave the detector's size unchanged.
#[test]
fn far_future_proposals_do_not_grow_the_detector() {
    let (vs, ks) = keys(4);
    let mut keys_iter = ks.into_iter();
    let k0 = keys_iter.next().unwrap();
    let k1 = keys_iter.next().unwrap();
    let mut c = core(&vs, k0, 0);
    c.handle(0, Event::Start);
    let before = c.detector.len();
    let g = Block::genesis(vs.domain());
    let gid = g.id(vs.domain());
    for k in 0..10_000u64 {
        let block = Block {
            epoch: Epoch(0),
            view: View(1_000 + 7 * k),
            height: crate::types::Height(1),
            parent: gid,
            skipped_leaders: vec![],
            justify: QuorumCert::genesis(gid),
            payload: vec![],
            evidence: vec![],
            proposer: ValidatorIndex(1),
        };
        let id = block.id(vs.domain());
        let sig = k1.sign(
            vs.domain(),
            crate::crypto::SigKind::Proposal,
            &crate::messages::proposal_body(block.view, &id),
        );
        let msg = ConsensusMessage::Proposal(crate::messages::Proposal {
            block,
            tc: None,
            sig,
        });
        c.handle(
            1 + k,
            Event::Message {
                from: ValidatorIndex(1),
                msg,
            },
        );
    }
    assert_eq!(
        c.detector.len(),
        before,
        "detector grew with far-future proposals"
    );
}

/// Sign `block` as its proposer (key `k`).
fn signed_proposal(vs: &ValidatorSet, k: &PrivateKey, block: Block) -> ConsensusMessage {
    let id = block.id(vs.domain());
    let sig = k.sign(
        vs.domain(),
        crate::crypto::SigKind::Proposal,
        &crate::messages::proposal_body(block.view, &id),
    );
    ConsensusMessage::Proposal(crate::messages::Proposal {
        block,
        tc: None,
        sig,
    })
}

/// A QC on `block` signed by validators `signers`.
fn qc_on(vs: &ValidatorSet, ks: &[PrivateKey], block: &Block, signers: &[u16]) -> QuorumCert {
    let data = crate::cert::VoteData {
        view: block.view,
        block_id: block.id(vs.domain()),
        height: block.height,
        parent_id: block.parent,
        parent_view: block.justify.view(),
    };
    let mut bitmap = crate::cert::Bitmap::new(vs.len());
    let body = crate::encode(&data);
    let mut sigs = Vec::new();
    for &i in signers {
        bitmap.set(ValidatorIndex(i));
        sigs.push(ks[i as usize].sign(vs.domain(), crate::crypto::SigKind::Vote, &body));
    }
    QuorumCert {
        data,
        signers: bitmap,
        sigs,
    }
}

/// A block of `view` by `proposer` extending the block certified by `justify` at `height`.
fn block_on(view: u64, proposer: u16, justify: QuorumCert, height: u64, tag: u8) -> Block {
    Block {
        epoch: Epoch(0),
        view: View(view),
        height: crate::types::Height(height),
        parent: justify.block_id(),
        skipped_leaders: vec![],
        justify,
        payload: vec![tag],
        evidence: vec![],
        proposer: ValidatorIndex(proposer),
    }
}

/// Issue 7 findings 6 and 7: a proposal is checked for its proposer before it may take the park
/// slot or be stored. A non-leader's copy carrying the genuine justify used to evict the
/// leader's parked proposal, and a parked proposal was not retried when its parent arrived as a
/// late proposal; a non-leader's block for the previous view was stored and persisted.
#[test]
fn only_the_leaders_proposal_is_parked_stored_and_retried() {
    let (vs, ks) = keys(4);
    let rr = RoundRobin::new(&vs);
    let leader = |v: u64| rr.leader(View(v)).0;
    let other = |v: u64| (leader(v) + 1) % 4;
    let me = (0..4u16)
        .find(|i| *i != leader(1) && *i != leader(2) && *i != other(2))
        .unwrap();
    let mut c = core(&vs, PrivateKey::from_seed(ks[me as usize].seed()), me);
    c.handle(0, Event::Start);
    let gid = Block::genesis(vs.domain()).id(vs.domain());
    // Block X of view 1 (unknown to `me`), certified by everyone else.
    let x = block_on(1, leader(1), QuorumCert::genesis(gid), 1, 1);
    let signers: Vec<u16> = (0..4).filter(|i| *i != me).collect();
    let qc1 = qc_on(&vs, &ks, &x, &signers);
    // The leader of view 2 extends X: `me` enters view 2, parks it and fetches X.
    let p2 = block_on(2, leader(2), qc1.clone(), 2, 2);
    let p2_id = p2.id(vs.domain());
    let msg = signed_proposal(&vs, &ks[leader(2) as usize], p2);
    let a = c.handle(
        1,
        Event::Message {
            from: ValidatorIndex(leader(2)),
            msg,
        },
    );
    assert_eq!(c.current_view(), View(2));
    assert!(
        a.iter().any(|x| matches!(x, Action::FetchBlocks { .. })),
        "{a:?}"
    );
    // A non-leader's proposal for view 2 with the same justify: rejected, the slot kept.
    let forged = block_on(2, other(2), qc1, 2, 9);
    let msg = signed_proposal(&vs, &ks[other(2) as usize], forged);
    let a = c.handle(
        2,
        Event::Message {
            from: ValidatorIndex(other(2)),
            msg,
        },
    );
    assert!(
        !a.iter().any(|x| matches!(x, Action::PersistBlock { .. })),
        "{a:?}"
    );
    // X arrives as a late proposal of view 1: stored, and the parked proposal is voted for.
    let msg = signed_proposal(&vs, &ks[leader(1) as usize], x);
    c.handle(
        3,
        Event::Message {
            from: ValidatorIndex(leader(1)),
            msg,
        },
    );
    let vote = c
        .safety_data()
        .last_vote
        .clone()
        .expect("voted after the parent arrived");
    assert_eq!((vote.data.view, vote.data.block_id), (View(2), p2_id));

    // A non-leader's block for the previous view (1) is neither stored nor persisted.
    let stray = block_on(1, other(1), QuorumCert::genesis(gid), 1, 7);
    let stray_id = stray.id(vs.domain());
    let msg = signed_proposal(&vs, &ks[other(1) as usize], stray);
    let a = c.handle(
        4,
        Event::Message {
            from: ValidatorIndex(other(1)),
            msg,
        },
    );
    assert!(
        !a.iter().any(|x| matches!(x, Action::PersistBlock { .. })),
        "{a:?}"
    );
    assert!(c.block(&stray_id).is_none());
}

/// E4 evidence against validator `who` for `view`, signed with `key` (valid iff `key` is
/// `who`'s key).
fn conflicting_timeouts(vs: &ValidatorSet, key: &PrivateKey, who: u16, view: u64) -> Evidence {
    let sign = |hqc: u64| {
        key.sign(
            vs.domain(),
            crate::crypto::SigKind::Timeout,
            &crate::cert::timeout_body(View(view), View(hqc)),
        )
    };
    Evidence::ConflictingTimeouts {
        offender: ValidatorIndex(who),
        view: View(view),
        hqc_a: View(0),
        sig_a: sign(0),
        hqc_b: View(1),
        sig_b: sign(1),
    }
}

/// Issue 8 finding 2: gossiped evidence is deduplicated by its key before any signature check,
/// so a replay (or a forgery under a held key) costs nothing; new evidence is verified once.
#[test]
fn replayed_evidence_costs_no_signature_check() {
    let (vs, ks) = keys(4);
    let mut c = core(&vs, PrivateKey::from_seed(ks[0].seed()), 0);
    let real = conflicting_timeouts(&vs, &ks[1], 1, 7);
    let sigs = |c: &Core<RoundRobin>| c.resources().signatures_verified;
    let invalid = |c: &Core<RoundRobin>| c.status(0).counters.invalid_messages;

    // A forgery of a key nobody holds yet is verified (two signatures) and refused.
    let forged = conflicting_timeouts(&vs, &ks[2], 1, 7);
    let before = sigs(&c);
    let out = c.handle(0, Event::EvidenceReceived(forged.clone()));
    assert!(out.iter().all(|a| !matches!(a, Action::Evidence(_))));
    assert_eq!(sigs(&c) - before, 2);
    assert_eq!(invalid(&c), 1);

    // The real item: verified once (two signatures), then stored and gossiped.
    let before = sigs(&c);
    let out = c.handle(0, Event::EvidenceReceived(real.clone()));
    assert_eq!(
        out.iter()
            .filter(|a| matches!(a, Action::Evidence(_)))
            .count(),
        1
    );
    assert_eq!(sigs(&c) - before, 2);

    // Replays, exact or forged under the same key: no signature check, no action, no blame.
    let before = sigs(&c);
    for ev in [real.clone(), forged, real] {
        let out = c.handle(0, Event::EvidenceReceived(ev));
        assert!(out.iter().all(|a| !matches!(a, Action::Evidence(_))));
    }
    assert_eq!(sigs(&c), before, "a replay costs zero signature checks");
    assert_eq!(
        invalid(&c),
        1,
        "a forgery under a held key is dropped unverified"
    );

    // Another key (another view) is new evidence again.
    let before = sigs(&c);
    let out = c.handle(
        0,
        Event::EvidenceReceived(conflicting_timeouts(&vs, &ks[1], 1, 8)),
    );
    assert!(out.iter().any(|a| matches!(a, Action::Evidence(_))));
    assert_eq!(sigs(&c) - before, 2);
}

/// The fetch a core just issued: `(request id, peer)`.
fn issued_fetch(actions: &[Action]) -> Option<(u64, ValidatorIndex)> {
    actions.iter().find_map(|a| match a {
        Action::FetchBlocks {
            request_id, peer, ..
        } => Some((*request_id, *peer)),
        _ => None,
    })
}

/// §6.5 rule 3: an empty response (the peer lacks the block: not received, refused, or pruned)
/// moves on to the next peer without blame; a response that fails verification is blamed.
#[test]
fn an_empty_sync_response_asks_the_next_peer_without_blame() {
    let (vs, ks) = keys(4);
    let rr = RoundRobin::new(&vs);
    let leader2 = rr.leader(View(2)).0;
    let me = (0..4u16).find(|i| *i != leader2).unwrap();
    let mut c = core(&vs, PrivateKey::from_seed(ks[me as usize].seed()), me);
    c.handle(0, Event::Start);
    let gid = Block::genesis(vs.domain()).id(vs.domain());
    let x = block_on(1, rr.leader(View(1)).0, QuorumCert::genesis(gid), 1, 1);
    let signers: Vec<u16> = (0..4).filter(|i| *i != me).collect();
    let qc1 = qc_on(&vs, &ks, &x, &signers);
    let p2 = block_on(2, leader2, qc1, 2, 2);
    let msg = signed_proposal(&vs, &ks[leader2 as usize], p2);
    let a = c.handle(
        1,
        Event::Message {
            from: ValidatorIndex(leader2),
            msg,
        },
    );
    let (id, first) = issued_fetch(&a).expect("X is fetched");
    let invalid_before = c.counters.invalid_messages;

    let a = c.handle(
        2,
        Event::BlocksFetched {
            request_id: id,
            from: first,
            response: BlockResponse::default(),
        },
    );
    let (again, second) = issued_fetch(&a).expect("asked the next peer");
    assert_eq!(again, id);
    assert_ne!(second, first);
    assert_eq!(c.counters.invalid_messages, invalid_before, "no blame");
    assert_eq!(c.counters.sync_unavailable, 1);

    // A block that is not the target is a bad response: blamed, and asked elsewhere.
    let wrong = block_on(1, rr.leader(View(1)).0, QuorumCert::genesis(gid), 1, 9);
    let a = c.handle(
        3,
        Event::BlocksFetched {
            request_id: id,
            from: second,
            response: BlockResponse {
                blocks: vec![wrong],
            },
        },
    );
    assert_eq!(c.counters.invalid_messages, invalid_before + 1);
    assert!(issued_fetch(&a).is_some());

    // The real block ends the fetch and the parked proposal is voted for.
    let a = c.handle(
        4,
        Event::BlocksFetched {
            request_id: id,
            from: second,
            response: BlockResponse { blocks: vec![x] },
        },
    );
    assert!(issued_fetch(&a).is_none(), "{a:?}");
    assert_eq!(
        c.safety_data().last_vote.as_ref().map(|v| v.data.view),
        Some(View(2))
    );
}

/// PROTOCOL.md §3 rule 4 (reserved proposal): the leader of view 2 reserves it in the record
/// persisted with its vote of view 1, so its proposal of view 2 leaves with no synced write of
/// its own before it (the record with the proposal follows with its own vote). Restarted from
/// the reserving record, as if it crashed before the proposal reached the disk, it never
/// proposes in view 2 again.
#[test]
fn a_reserved_view_is_proposed_in_without_its_own_persist_and_never_after_a_restart() {
    let (vs, ks) = keys(4);
    let g = Block::genesis(vs.domain());
    let gid = g.id(vs.domain());
    let b1 = block_on(1, 1, QuorumCert::genesis(gid), 1, 9);
    let proposal = signed_proposal(&vs, &ks[1], b1.clone());
    let votes: Vec<ConsensusMessage> = [0usize, 1]
        .iter()
        .map(|&i| {
            let data = crate::cert::VoteData {
                view: View(1),
                block_id: b1.id(vs.domain()),
                height: b1.height,
                parent_id: gid,
                parent_view: View(0),
            };
            ConsensusMessage::Vote(crate::messages::Vote::sign(
                data,
                ValidatorIndex(i as u16),
                &ks[i],
                &vs,
            ))
        })
        .collect();
    let deliver = |c: &mut Core<RoundRobin>, at: Millis, msg: &ConsensusMessage| {
        c.handle(
            at,
            Event::Message {
                from: ValidatorIndex(1),
                msg: msg.clone(),
            },
        )
    };
    let persisted = |a: &[Action]| -> Vec<SafetyData> {
        a.iter()
            .filter_map(|x| match x {
                Action::PersistSafety(d) => Some((**d).clone()),
                _ => None,
            })
            .collect()
    };

    // Validator 2 leads view 2 under round robin.
    let mut c = core(&vs, PrivateKey::from_seed(ks[2].seed()), 2);
    c.handle(0, Event::Start);
    let a = deliver(&mut c, 10, &proposal);
    let reserving = persisted(&a)
        .pop()
        .expect("the vote of view 1 is persisted");
    assert_eq!(reserving.last_voted_view, View(1));
    assert_eq!(reserving.last_proposed_view, View(2), "view 2 is reserved");
    assert!(reserving.last_proposal.is_none());
    let mut a = Vec::new();
    for (k, v) in votes.iter().enumerate() {
        a.extend(deliver(&mut c, 20 + k as Millis, v));
    }
    assert!(
        a.iter()
            .any(|x| matches!(x, Action::RequestPayload { view: View(2), .. })),
        "QC(1) makes validator 2 propose: {a:?}"
    );
    let a = c.handle(
        30,
        Event::PayloadReady {
            view: View(2),
            payload: vec![1],
        },
    );
    let sent = a
        .iter()
        .position(|x| matches!(x, Action::Broadcast(ConsensusMessage::Proposal(_))))
        .expect("the leader proposes in its reserved view");
    assert!(
        persisted(&a[..sent]).is_empty(),
        "no synced write before a reserved proposal: {a:?}"
    );
    let after = persisted(&a[sent..]).pop().expect("its own vote follows");
    assert_eq!(after.last_proposal.map(|p| p.view), Some(View(2)));
    assert_eq!(after.last_voted_view, View(2));
    assert_eq!(c.status(30).counters.proposals_reserved, 1);

    // Restarted from the reserving record: view 2 is never proposed in again.
    let mut restarted = Core::new(
        Config::new(ValidatorIndex(2)),
        vs.clone(),
        PrivateKey::from_seed(ks[2].seed()),
        RoundRobin::new(&vs),
        reserving,
        Recovered {
            committed: vec![g],
            uncommitted: vec![b1],
        },
    )
    .unwrap();
    let mut a = restarted.handle(0, Event::Start);
    for (k, v) in votes.iter().enumerate() {
        a.extend(deliver(&mut restarted, 10 + k as Millis, v));
    }
    assert_eq!(restarted.current_view(), View(2), "QC(1) formed again");
    a.extend(restarted.handle(
        5_000,
        Event::PayloadReady {
            view: View(2),
            payload: vec![2],
        },
    ));
    assert!(
        !a.iter().any(|x| matches!(
            x,
            Action::RequestPayload { .. } | Action::Broadcast(ConsensusMessage::Proposal(_))
        )),
        "a reserved view is never proposed in after a restart: {a:?}"
    );
}

/// Every fetch the actions hold: `(request id, peer, request)`.
fn fetches(actions: &[Action]) -> Vec<(u64, ValidatorIndex, BlockRequest)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::FetchBlocks {
                request_id,
                peer,
                request,
            } => Some((*request_id, *peer, request.clone())),
            _ => None,
        })
        .collect()
}

/// A chain `blocks[0..len]` on genesis, block `k` of view and height `k + 1`, each certified by
/// all four validators but `me`; returns the blocks and their QCs.
fn certified_chain(
    vs: &ValidatorSet,
    ks: &[PrivateKey],
    me: u16,
    len: u64,
) -> (Vec<Block>, Vec<QuorumCert>) {
    let rr = RoundRobin::new(vs);
    let gid = Block::genesis(vs.domain()).id(vs.domain());
    let signers: Vec<u16> = (0..4).filter(|i| *i != me).collect();
    let (mut blocks, mut qcs) = (Vec::new(), Vec::new());
    let mut justify = QuorumCert::genesis(gid);
    for k in 1..=len {
        let b = block_on(k, rr.leader(View(k)).0, justify, k, k as u8);
        justify = qc_on(vs, ks, &b, &signers);
        blocks.push(b);
        qcs.push(justify.clone());
    }
    (blocks, qcs)
}

/// §6.5 rule 2: a node catching up sees a QC naming a block further up every view; each fetch
/// stops at the height the previous one brings, so the ranges asked for are disjoint instead
/// of the same top blocks again and again.
#[test]
fn a_node_catching_up_asks_for_disjoint_ranges() {
    let (vs, ks) = keys(4);
    let me = 0u16;
    let mut c = core(&vs, PrivateKey::from_seed(ks[0].seed()), me);
    c.handle(0, Event::Start);
    let (blocks, _) = certified_chain(&vs, &ks, me, 40);
    let rr = RoundRobin::new(&vs);
    // Proposals of views 21 and 31 (in the view window) justify blocks 20 and 30: unknown.
    let mut asked = Vec::new();
    for (t, k) in [(1u64, 20usize), (2, 30)] {
        let b = &blocks[k];
        let leader = rr.leader(b.view).0;
        let a = c.handle(
            t,
            Event::Message {
                from: ValidatorIndex(leader),
                msg: signed_proposal(&vs, &ks[leader as usize], b.clone()),
            },
        );
        asked.extend(fetches(&a));
    }
    let targets: Vec<(BlockId, Height)> = asked
        .iter()
        .map(|(_, _, r)| (r.target, r.stop_at))
        .collect();
    let id = |k: usize| blocks[k].id(vs.domain());
    assert_eq!(
        targets,
        vec![(id(19), Height(0)), (id(29), Height(20))],
        "the second fetch stops where the first one's target is"
    );
}

/// §6.5 rule 2: a peer we have not heard from lately is asked last, and a request to a peer
/// that goes quiet is re-sent to another before `sync_timeout_ms` (a validator killed a moment
/// ago is noticed by the transport only after its idle timeout).
#[test]
fn sync_prefers_peers_heard_from_and_leaves_one_gone_quiet() {
    let (vs, ks) = keys(4);
    let me = 0u16;
    let mut c = core_with(&vs, PrivateKey::from_seed(ks[0].seed()), me, |cfg| {
        cfg.silent_leader_ms = 500;
        cfg.sync_timeout_ms = 2_000;
    });
    c.handle(0, Event::Start);
    let (blocks, qcs) = certified_chain(&vs, &ks, me, 6);
    let rr = RoundRobin::new(&vs);
    // Validators 2 and 3 send a timeout-free message at t = 400 (a proposal of another view
    // carrying QC(1): known ancestry, no fetch); validator 1 stays silent.
    let heard = |c: &mut Core<RoundRobin>, from: u16, t: u64| {
        let b = block_on(2, from, qcs[0].clone(), 2, 99 + from as u8);
        let msg = signed_proposal(&vs, &ks[from as usize], b);
        c.handle(
            t,
            Event::Message {
                from: ValidatorIndex(from),
                msg,
            },
        );
    };
    // Block 1 must be known for those proposals to need no fetch.
    let a = c.handle(
        10,
        Event::Message {
            from: ValidatorIndex(rr.leader(View(1)).0),
            msg: signed_proposal(&vs, &ks[rr.leader(View(1)).0 as usize], blocks[0].clone()),
        },
    );
    assert!(fetches(&a).is_empty());
    for from in [2u16, 3] {
        heard(&mut c, from, 400);
    }
    // At t = 600 validator 1 has been silent 600 ms (> 250), 2 and 3 for 200 ms: a fetch for
    // block 5 (proposal of view 6) asks 2 or 3 first although 1 signed the QC.
    let leader6 = rr.leader(View(6)).0;
    let a = c.handle(
        600,
        Event::Message {
            from: ValidatorIndex(leader6),
            msg: signed_proposal(&vs, &ks[leader6 as usize], blocks[5].clone()),
        },
    );
    let f = fetches(&a);
    assert_eq!(f.len(), 1, "{a:?}");
    let (rid, first, _) = f[0].clone();
    assert_ne!(
        first,
        ValidatorIndex(1),
        "the silent validator is asked last"
    );
    // The peer asked keeps talking: no early retry at the first check.
    let other = if first == ValidatorIndex(2) { 3 } else { 2 };
    heard(&mut c, first.0, 800);
    heard(&mut c, other, 800);
    let a = c.handle(850, Event::Timer(Timer::Sync(rid)));
    assert!(fetches(&a).is_empty(), "{a:?}");
    // Then it goes quiet while the other does not: re-asked elsewhere well before the 2 s
    // timeout, the first request left open.
    heard(&mut c, other, 1_050);
    heard(&mut c, other, 1_090);
    let a = c.handle(1_100, Event::Timer(Timer::Sync(rid)));
    let f = fetches(&a);
    assert_eq!(f.len(), 1, "{a:?}");
    assert_eq!(f[0].0, rid);
    assert_eq!(f[0].1, ValidatorIndex(other));
}

/// A QC whose signatures are byte for byte votes we accepted for the same vote data is
/// verified without checking them again (the leader's QC, made of votes every node received);
/// a signature that differs from the vote we hold is checked, and a bad one still fails.
#[test]
fn a_qc_made_of_votes_we_accepted_reuses_their_checks() {
    let (vs, ks) = keys(4);
    let rr = RoundRobin::new(&vs);
    let leader = |v: u64| rr.leader(View(v)).0;
    let (me, mut c) = started_bystander(&vs, &ks);
    let others: Vec<u16> = (0..4).filter(|i| *i != me).collect();
    let gid = Block::genesis(vs.domain()).id(vs.domain());
    let x = block_on(1, leader(1), QuorumCert::genesis(gid), 1, 1);
    let qc = qc_on(&vs, &ks, &x, &others);
    // Two of the three votes reach us (below quorum: no QC of our own, nothing cached).
    for (i, sig) in qc.votes().take(2) {
        let vote = crate::messages::Vote {
            data: qc.data.clone(),
            voter: i,
            sig,
        };
        c.handle(
            1,
            Event::Message {
                from: i,
                msg: ConsensusMessage::Vote(vote),
            },
        );
    }
    let counted =
        |c: &Core<RoundRobin>| (c.counters.signatures_verified, c.counters.signatures_reused);

    // The same QC with the first vote's signature replaced by the second's: that one is
    // checked (it is not the vote we hold) and fails; nothing is cached as valid.
    let mut bad = qc.clone();
    bad.sigs[0] = bad.sigs[1];
    // Leader 2's proposal justified by `justify`, counted: (checked, reused) before.
    let propose = |c: &mut Core<RoundRobin>, at: Millis, justify: QuorumCert, tag: u8| {
        let before = counted(c);
        let block = block_on(2, leader(2), justify, 2, tag);
        let msg = signed_proposal(&vs, &ks[leader(2) as usize], block);
        let from = ValidatorIndex(leader(2));
        c.handle(at, Event::Message { from, msg });
        before
    };
    let before = propose(&mut c, 2, bad, 2);
    let after = counted(&c);
    assert_eq!(after.1 - before.1, 1, "only the second signature is held");
    assert_eq!(c.current_view(), View(1), "the forged QC moved nothing");

    // The real QC: its first two signatures are the votes we hold, the third is checked.
    let before = propose(&mut c, 3, qc, 3);
    let after = counted(&c);
    assert_eq!(c.current_view(), View(2), "the QC was accepted");
    assert_eq!(after.1 - before.1, 2, "two signatures reused");
    assert_eq!(
        after.0 - before.0,
        2,
        "checked: the proposal's signature and the QC's third"
    );
}
