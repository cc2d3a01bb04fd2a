//! Criterion benchmarks of the consensus crate:
//!
//! * `qc_verify`: QC verification vs `n` — `QuorumCert::verify` (shape checks plus one strict
//!   verification per signature: the one signature rule) against a bare loop of single strict
//!   verifications (`ValidatorSet::verify`), both over the `q` signatures of a QC.
//! * `evidence_verify`: third-party verification of E1 (double vote) and E2 (double proposal).
//! * `core_happy_path`: `n` `Core<RoundRobin>` replicas on a zero-delay lock-step in-memory
//!   network until replica 0 commits `BLOCKS` blocks; throughput in `handle` calls/s, with
//!   commits/s printed at the end of each `n`.

use consensus::cert::timeout_body;
use consensus::core::Recovered;
use consensus::messages::proposal_body;
use consensus::{
    Action, Block, BlockId, Config, ConsensusMessage, Core, Digest, Epoch, Event, Evidence, Height,
    LaterMessage, Millis, PrivateKey, QuorumCert, RoundRobin, SafetyData, SigKind, SignedVote,
    Timer, ValidatorIndex, ValidatorSet, View, VoteData, encode,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::collections::{BTreeMap, VecDeque};
use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZES: [usize; 4] = [4, 16, 64, 100];
/// Blocks replica 0 must commit per core run.
const BLOCKS: usize = 20;

/// `n` unit-weight validators; `ks[i]` is the key of `ValidatorIndex(i)`.
fn keys(n: usize) -> (ValidatorSet, Vec<PrivateKey>) {
    consensus::validators::test_validators("bench", Epoch(0), n).expect("validator set")
}

fn genesis_id(vs: &ValidatorSet) -> BlockId {
    Block::genesis(vs.domain()).id(vs.domain())
}

fn vote_data(view: u64, tag: u8) -> VoteData {
    VoteData {
        view: View(view),
        block_id: Digest([tag; 32]),
        height: Height(view),
        parent_id: Digest([tag ^ 0xFF; 32]),
        parent_view: View(view - 1),
    }
}

fn qc(vs: &ValidatorSet, ks: &[PrivateKey], data: &VoteData) -> QuorumCert {
    let q = vs.quorum() as usize;
    let body = encode(data);
    let mut signers = consensus::Bitmap::new(vs.len());
    for i in 0..q {
        signers.set(ValidatorIndex(i as u16));
    }
    QuorumCert {
        data: data.clone(),
        signers,
        sigs: ks[..q]
            .iter()
            .map(|k| k.sign(vs.domain(), SigKind::Vote, &body))
            .collect(),
    }
}

fn bench_qc(c: &mut Criterion) {
    let mut g = c.benchmark_group("qc_verify");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let (vs, ks) = keys(n);
        let gid = genesis_id(&vs);
        let data = vote_data(9, 3);
        let cert = qc(&vs, &ks, &data);
        assert_eq!(cert.verify(&vs, &gid), Ok(()));
        g.throughput(Throughput::Elements(cert.sigs.len() as u64));
        g.bench_with_input(BenchmarkId::new("qc_verify", n), &cert, |b, cert| {
            b.iter(|| black_box(cert).verify(&vs, &gid).expect("valid"))
        });
        g.bench_with_input(BenchmarkId::new("single", n), &cert, |b, cert| {
            b.iter(|| {
                let cert = black_box(cert);
                let body = encode(&cert.data);
                for (i, sig) in cert.votes() {
                    assert!(vs.verify(i, SigKind::Vote, &body, &sig));
                }
            })
        });
    }
    g.finish();
}

fn bench_evidence(c: &mut Criterion) {
    let (vs, ks) = keys(4);
    let (o, k) = (ValidatorIndex(1), &ks[1]);
    let sv = |data: VoteData| SignedVote {
        sig: k.sign(vs.domain(), SigKind::Vote, &encode(&data)),
        data,
    };
    let double_vote = Evidence::DoubleVote {
        offender: o,
        a: sv(vote_data(5, 1)),
        b: sv(vote_data(5, 2)),
    };
    let view = View(5);
    let (ba, bb) = (Digest([1; 32]), Digest([2; 32]));
    let double_proposal = Evidence::DoubleProposal {
        offender: o,
        view,
        block_a: ba,
        sig_a: k.sign(vs.domain(), SigKind::Proposal, &proposal_body(view, &ba)),
        block_b: bb,
        sig_b: k.sign(vs.domain(), SigKind::Proposal, &proposal_body(view, &bb)),
    };
    let mut later = vote_data(9, 3);
    later.parent_view = View(1);
    let lock_violation = Evidence::LockViolation {
        offender: o,
        vote: sv(vote_data(5, 1)),
        later: LaterMessage::Vote(sv(later)),
    };
    let (ha, hb) = (View(1), View(2));
    let conflicting_timeouts = Evidence::ConflictingTimeouts {
        offender: o,
        view,
        hqc_a: ha,
        sig_a: k.sign(vs.domain(), SigKind::Timeout, &timeout_body(view, ha)),
        hqc_b: hb,
        sig_b: k.sign(vs.domain(), SigKind::Timeout, &timeout_body(view, hb)),
    };
    let mut g = c.benchmark_group("evidence_verify");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, ev) in [
        ("double_vote", &double_vote),
        ("double_proposal", &double_proposal),
        ("lock_violation", &lock_violation),
        ("conflicting_timeouts", &conflicting_timeouts),
    ] {
        ev.verify(&vs).expect("valid evidence");
        g.bench_function(name, |b| {
            b.iter(|| black_box(ev).verify(&vs).expect("valid"))
        });
    }
    g.finish();
}

/// Zero-delay lock-step network of `n` replicas (messages FIFO; timers fire only when quiet).
struct Net {
    nodes: Vec<Core<RoundRobin>>,
    now: Millis,
    queue: VecDeque<(usize, usize, ConsensusMessage)>,
    timers: BTreeMap<(Millis, usize, u64), Timer>,
    seq: u64,
    committed0: usize,
    events: u64,
}

impl Net {
    /// Build `n` fresh replicas (not started).
    fn new(n: usize) -> Self {
        let (vs, ks) = keys(n);
        let g = Block::genesis(vs.domain());
        let gid = g.id(vs.domain());
        let nodes = ks
            .into_iter()
            .enumerate()
            .map(|(i, key)| {
                Core::new(
                    Config::new(ValidatorIndex(i as u16)),
                    vs.clone(),
                    key,
                    RoundRobin::new(&vs),
                    SafetyData::genesis(gid),
                    Recovered {
                        committed: vec![g.clone()],
                        uncommitted: vec![],
                    },
                )
                .expect("core")
            })
            .collect();
        Net {
            nodes,
            now: 0,
            queue: VecDeque::new(),
            timers: BTreeMap::new(),
            seq: 0,
            committed0: 0,
            events: 0,
        }
    }

    fn apply(&mut self, i: usize, ev: Event) {
        self.events += 1;
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
                Action::Commit { ids, .. } if i == 0 => self.committed0 += ids.len(),
                Action::RequestPayload { view, .. } => self.apply(
                    i,
                    Event::PayloadReady {
                        view,
                        payload: view.0.to_le_bytes().to_vec(),
                    },
                ),
                _ => {}
            }
        }
    }

    /// Start every replica and run until replica 0 committed `height` blocks.
    fn run(&mut self, height: usize) {
        for i in 0..self.nodes.len() {
            self.apply(i, Event::Start);
        }
        loop {
            while let Some((from, to, msg)) = self.queue.pop_front() {
                if self.committed0 >= height {
                    return;
                }
                let from = ValidatorIndex(from as u16);
                self.apply(to, Event::Message { from, msg });
            }
            let Some((&key, _)) = self.timers.iter().next() else {
                return;
            };
            let t = self.timers.remove(&key).expect("timer");
            self.now = key.0;
            self.apply(key.1, Event::Timer(t));
        }
    }
}

fn bench_core(c: &mut Criterion) {
    let mut g = c.benchmark_group("core_happy_path");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in SIZES {
        // Calibration run: the event count is deterministic for a given n.
        let mut net = Net::new(n);
        net.run(BLOCKS);
        assert!(
            net.committed0 >= BLOCKS,
            "n={n}: only {} commits",
            net.committed0
        );
        assert_eq!(net.now, 0, "n={n}: a timer fired on the happy path");
        let events = net.events;
        g.throughput(Throughput::Elements(events));
        let (mut runs, mut total, mut commits) = (0u64, Duration::ZERO, 0u64);
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let mut net = Net::new(n);
                    let t = Instant::now();
                    net.run(BLOCKS);
                    let dt = t.elapsed();
                    elapsed += dt;
                    runs += 1;
                    total += dt;
                    commits += net.committed0 as u64;
                    black_box(&net.events);
                }
                elapsed
            })
        });
        let secs = total.as_secs_f64();
        println!(
            "core_happy_path n={n}: {events} handle calls and {BLOCKS} commits per run; \
             {runs} runs, {:.1} ms/run, {:.0} events/s, {:.1} commits/s",
            secs * 1e3 / runs as f64,
            (events * runs) as f64 / secs,
            commits as f64 / secs,
        );
    }
    g.finish();
}

criterion_group!(benches, bench_qc, bench_evidence, bench_core);
criterion_main!(benches);
