//! Issue 7 finding 3: the leader function depends on every conviction ever committed, but a
//! restarted node replays only the last `replay_depth` committed blocks. Before the fix a node
//! restarted long after a conviction forgot it, elected different leaders from its peers and
//! rejected their proposals as `WrongLeader` for good.
//!
//! These tests commit a synthetic chain into a real RocksDB (a conviction at height 5, then far
//! more blocks than any replay), restart from the store through the node's recovery path
//! (`node::restore_policy`, then the core's replay in `Core::new`), and compare `leader(v)` with
//! a peer that saw the whole chain, for the next 1,000 views. A control restart without the
//! conviction record must disagree, so the comparison can fail.

use consensus::core::Recovered;
use consensus::{
    Bitmap, Block, Config, Core, Epoch, Evidence, FaultPolicy, Height, PrivateKey, QuorumCert,
    SafetyData, SigKind, SignedVote, ValidatorIndex, ValidatorSet, View, VoteData,
};
use fault::{FaultConfig, FaultTolerance};
use storage::{Op, RocksOptions, RocksStore, Store, WriteBatch};

/// E1 against `offender`: two signed votes of `view` for different blocks.
fn double_vote(
    vs: &ValidatorSet,
    key: &PrivateKey,
    offender: ValidatorIndex,
    view: u64,
) -> Evidence {
    let vote = |b: u8| {
        let data = VoteData {
            view: View(view),
            block_id: consensus::Digest([b; 32]),
            height: Height(view),
            parent_id: consensus::Digest([0; 32]),
            parent_view: View(view - 1),
        };
        let sig = key.sign(vs.domain(), SigKind::Vote, &consensus::encode(&data));
        SignedVote { data, sig }
    };
    let ev = Evidence::DoubleVote {
        offender,
        a: vote(1),
        b: vote(2),
    };
    ev.verify(vs).expect("the test evidence verifies");
    ev
}

/// Commit `len` blocks above genesis (views 1..=len, each proposed by the peer's leader and
/// justified by every validator, so nobody is silent), E1 against `offender` in block 5, into
/// `store` the way the driver does (block, commit, evidence, conviction record in one batch).
/// Returns the peer's policy, which took every block in.
fn commit_chain(
    store: &mut RocksStore,
    vs: &ValidatorSet,
    evidence: Evidence,
    len: u64,
) -> FaultTolerance {
    let domain = vs.domain();
    let genesis = Block::genesis(domain);
    let gid = genesis.id(domain);
    let mut peer = FaultTolerance::new(vs, FaultConfig::default());
    peer.on_commit(&genesis, gid);
    let mut all = Bitmap::new(vs.len());
    for i in vs.indices() {
        all.set(i);
    }
    let mut batch = WriteBatch::new();
    batch.push(Op::PutBlock {
        id: gid,
        block: Box::new(genesis.clone()),
    });
    batch.push(Op::Commit {
        height: Height(0),
        id: gid,
    });
    batch.push(Op::PutSafety(Box::new(SafetyData::genesis(gid))));
    store.write(batch).unwrap();
    let (mut parent, mut parent_view) = (gid, View(0));
    for h in 1..=len {
        let mut justify = QuorumCert::genesis(parent);
        justify.data.view = parent_view;
        justify.signers = all.clone();
        let block = Block {
            epoch: Epoch(0),
            view: View(h),
            height: Height(h),
            parent,
            skipped_leaders: vec![],
            justify,
            payload: vec![],
            evidence: if h == 5 {
                vec![evidence.clone()]
            } else {
                vec![]
            },
            proposer: peer.leader(View(h)),
        };
        let id = block.id(domain);
        peer.on_commit(&block, id);
        let mut batch = WriteBatch::new();
        batch.push(Op::PutBlock {
            id,
            block: Box::new(block.clone()),
        });
        batch.push(Op::Commit {
            height: block.height,
            id,
        });
        for ev in &block.evidence {
            batch.push(Op::PutEvidence(Box::new(ev.clone())));
        }
        if let Some(op) = node::conviction_op(&peer, std::slice::from_ref(&block)) {
            batch.push(op);
        }
        store.write(batch).unwrap();
        (parent, parent_view) = (id, block.view);
    }
    peer
}

/// A core restarted from `store`: `restore` says whether the node's restore step runs.
fn restart(
    store: &RocksStore,
    vs: &ValidatorSet,
    key: PrivateKey,
    restore: bool,
) -> Core<FaultTolerance> {
    let mut policy = FaultTolerance::new(vs, FaultConfig::default());
    if restore {
        node::restore_policy(store, vs, &mut policy).unwrap();
    }
    let depth = policy.replay_depth().clamp(1, fault::MAX_REPLAY_DEPTH);
    let recovered = Recovered {
        committed: store.last_committed(depth).unwrap(),
        uncommitted: vec![],
    };
    let safety = store.load_safety().unwrap().unwrap();
    Core::new(
        Config::new(ValidatorIndex(0)),
        vs.clone(),
        key,
        policy,
        safety,
        recovered,
    )
    .unwrap()
}

/// Views `tip + 1 ..= tip + 1000` where the two leader functions differ.
fn disagreements(a: &impl FaultPolicy, b: &impl FaultPolicy, tip: u64) -> usize {
    (tip + 1..=tip + 1000)
        .filter(|&v| a.leader(View(v)) != b.leader(View(v)))
        .count()
}

fn restart_far_past_a_conviction(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (vs, mut keys) = consensus::validators::test_validators("test", Epoch(0), n).unwrap();
    let offender = ValidatorIndex(1);
    let ev = double_vote(&vs, &keys[1], offender, 3);
    let probe = FaultTolerance::new(&vs, FaultConfig::default());
    let len = probe.replay_depth() as u64 + 200;
    let peer = {
        let mut store = RocksStore::open(dir.path(), RocksOptions::default()).unwrap();
        commit_chain(&mut store, &vs, ev, len)
    };
    assert!(
        len - 5 > probe.replay_depth() as u64,
        "the conviction lies beyond the replay"
    );
    let mut store = RocksStore::open(dir.path(), RocksOptions::default()).unwrap();
    // Evidence found just before the stop and stored (the driver's `Action::Evidence` path),
    // not yet in a block.
    let pending = double_vote(&vs, &keys[2], ValidatorIndex(2), len - 1);
    store
        .write(WriteBatch::synced().put_evidence(pending.clone()))
        .unwrap();
    assert_eq!(store.convictions().unwrap()[1], Some(Height(5)));

    let restarted = restart(&store, &vs, keys.remove(0), true);
    assert_eq!(restarted.policy().convictions(), peer.convictions());
    assert_eq!(
        disagreements(restarted.policy(), &peer, len),
        0,
        "n = {n}: a node restarted {len} blocks after a conviction elects other leaders"
    );
    assert_eq!(
        restarted.policy().evidence_state(pending.key()),
        Some(false),
        "evidence stored but not yet committed is pending again"
    );

    // Control: the same restart without the conviction record (the code before the fix).
    let (_, mut keys) = consensus::validators::test_validators("test", Epoch(0), n).unwrap();
    let forgetful = restart(&store, &vs, keys.remove(0), false);
    let d = disagreements(forgetful.policy(), &peer, len);
    eprintln!(
        "n = {n}: {len} blocks, replay depth {}, without the record {d} of 1000 views differ",
        probe.replay_depth()
    );
    assert!(
        d > 0,
        "n = {n}: the control restart agrees, so this test could not fail"
    );
}

#[test]
fn a_restart_far_past_a_conviction_elects_the_same_leaders_n4() {
    restart_far_past_a_conviction(4);
}

/// n ≥ 94: the reputation window (1,000 blocks) plus slack exceeds the old 1,000-block replay.
#[test]
fn a_restart_far_past_a_conviction_elects_the_same_leaders_n100() {
    restart_far_past_a_conviction(100);
}
