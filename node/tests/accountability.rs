//! Issue 9 item 4, the accountability loop on the real path: 4 in-process validators over real
//! QUIC on 127.0.0.1 and real RocksDB in tempdirs. One validator is stopped; the others derive a
//! downtime record from the committed QC signer bitmaps (PROTOCOL.md §6.6), the KV application
//! records a penalty entry, and both appear identically on every running node over RPC, survive
//! the restart of an honest node, while commits continue. Then, from a stopped node's database,
//! the restart path (`node::restore_policy` + the bounded replay, `node::restore_accountant`)
//! must give the same leader schedule and accounting as a node that saw the whole chain.

mod common;

use common::cluster::*;
use common::*;
use consensus::{Block, FaultPolicy, Height, View};
use fault::{Accountant, FaultConfig, FaultTolerance};
use node::config::ChainFaultParams;
use node::rpc_types::{PenaltiesResponse, PenaltyEntryResponse};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use storage::{RocksOptions, RocksStore, Store};

/// An expiry admissible at every height these tests reach.
const EXP: Height = Height(100);

/// Committed blocks per downtime window: a record every ~2–4 s at the test timings.
const WINDOW: u64 = 20;

fn fault_cfg() -> FaultConfig {
    let mut cfg = FaultConfig::default();
    chain_params().apply_to(&mut cfg);
    cfg
}

/// The chain-wide parameters of the test chains (genesis `"fault"`).
fn chain_params() -> ChainFaultParams {
    ChainFaultParams {
        downtime_window: WINDOW,
        downtime_threshold_pct: 20,
        // A small election window and slack, so the replay at restart (W + slack = 12 blocks)
        // is far shorter than the chain and the restart comparison below means something.
        window: Some(8),
        history_slack: 4,
        ..ChainFaultParams::default()
    }
}

async fn penalties(c: &reqwest::Client, a: SocketAddr, v: u16) -> Option<PenaltiesResponse> {
    get_json(c, a, &format!("/penalties/{v}")).await
}

async fn all_penalties(c: &reqwest::Client, a: SocketAddr) -> Vec<PenaltiesResponse> {
    get_json(c, a, "/penalties").await.unwrap_or_default()
}

/// The entries of `v` on node `a` at heights ≤ `up_to`.
async fn entries_up_to(
    c: &reqwest::Client,
    a: SocketAddr,
    v: u16,
    up_to: u64,
) -> Vec<PenaltyEntryResponse> {
    penalties(c, a, v)
        .await
        .map(|p| {
            p.entries
                .into_iter()
                .filter(|e| e.height <= up_to)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn downtime_record_and_penalty_on_every_node_survive_restart() {
    let t0 = Instant::now();
    let c = client();
    let mut cl = Cluster::start_with(4, Some(chain_params())).await;
    let all = cl.running();
    wait_all_at(&c, &cl, &all, 3, 30).await;

    // Stop validator 3.
    let offender = 3u16;
    let down = cl.home_of(offender);
    cl.stop(down).await;
    let stopped_at = Instant::now();
    let live = cl.running();
    println!(
        "stopped validator {offender} (node {down}) at {:?}",
        t0.elapsed()
    );

    // A downtime record, and the penalty entry for it, on every running node.
    for &i in &live {
        let a = cl.addr(i);
        let ok = wait_until(45, || async {
            penalties(&c, a, offender)
                .await
                .is_some_and(|p| p.entries.iter().any(|e| e.kind == "downtime"))
        })
        .await;
        assert!(ok, "node {i}: no downtime record for validator {offender}");
    }
    println!(
        "downtime record on every running node {:.1} s after the stop",
        stopped_at.elapsed().as_secs_f64()
    );
    let p = penalties(&c, cl.addr(live[0]), offender).await.unwrap();
    let first = p
        .entries
        .iter()
        .find(|e| e.kind == "downtime")
        .unwrap()
        .clone();
    println!("first downtime entry: {first:?}");
    assert_eq!(first.height % WINDOW, 0, "derived at a window boundary");
    assert_eq!(first.window_end, Some(first.height));
    let (signed, eligible) = (first.signed.unwrap(), first.eligible.unwrap());
    assert!(
        eligible > 0 && signed * 100 < 20 * eligible,
        "{signed}/{eligible}"
    );
    assert_eq!(p.standing, "quarantined");
    assert!(p.downtime_records >= 1 && p.total_penalties >= 1);

    // Commits continue past the record.
    let target = first.height + WINDOW;
    wait_all_at(&c, &cl, &live, target, 40).await;

    // Restart one honest node; the chain halts meanwhile (2 of 4 live) and resumes after.
    let honest = live[1];
    cl.stop(honest).await;
    cl.restart(honest).await;
    let after = max_height(&c, &cl, &live).await + 3;
    wait_all_at(&c, &cl, &live, after, 40).await;

    // Identical on every running node, the restarted one included: compare everything up to
    // the lowest height all of them have accounted.
    let mut accounted = u64::MAX;
    for &i in &live {
        let ps = all_penalties(&c, cl.addr(i)).await;
        assert_eq!(ps.len(), 4, "node {i}: one entry per validator");
        accounted = accounted.min(ps[0].accounted_height);
        for q in ps.iter().filter(|q| q.validator != offender) {
            assert_eq!(
                q.standing, "good",
                "node {i}: honest validator {}",
                q.validator
            );
            assert_eq!(
                q.total_penalties, 0,
                "node {i}: honest validator {}",
                q.validator
            );
        }
    }
    assert!(accounted >= first.height);
    let reference = entries_up_to(&c, cl.addr(live[0]), offender, accounted).await;
    assert!(reference.contains(&first));
    for &i in &live[1..] {
        let e = entries_up_to(&c, cl.addr(i), offender, accounted).await;
        assert_eq!(e, reference, "node {i} differs from node {}", live[0]);
    }
    println!(
        "{} penalty entries up to height {accounted} identical on {} nodes",
        reference.len(),
        live.len()
    );
    assert_chains_match(&c, &cl, &live, accounted).await;

    // Restart exactness from the database of a stopped honest node.
    let home = cl.homes[live[2]].clone();
    cl.stop(live[2]).await;
    let loaded = node::config::load_home(&home, &fast()).unwrap();
    let store = open_retrying(&loaded.db_path).await;
    let cfg = loaded.genesis.fault_config(&loaded.config.fault);
    assert_eq!(cfg, fault_cfg(), "the nodes ran with the test parameters");
    restart_matches_full_history(&store, &loaded.validators, &cfg, |s| {
        assert!(
            s.accounts[usize::from(offender)].downtime_records >= 1,
            "the stopped validator's record is in the restored state"
        );
    });

    cl.shutdown().await;
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
}

/// The RocksDB lock of a just-stopped node is released asynchronously.
async fn open_retrying(path: &std::path::Path) -> RocksStore {
    for _ in 0..40 {
        if let Ok(s) = RocksStore::open(path, RocksOptions::default()) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("cannot open {}", path.display());
}

/// Every committed block, genesis first.
fn whole_chain(store: &RocksStore) -> Vec<Block> {
    let (tip, _) = store.committed_tip().unwrap().unwrap();
    (0..=tip.0)
        .map(|h| {
            let id = store.committed_id(Height(h)).unwrap().unwrap();
            store.block(&id).unwrap().unwrap()
        })
        .collect()
}

/// The node's start path vs a node that never stopped: same leader for the next views, same
/// election weights, convictions, evidence, and the same accounting state.
/// `expect` checks the restored accounting state holds what the scenario produced.
fn restart_matches_full_history(
    store: &RocksStore,
    vs: &consensus::ValidatorSet,
    cfg: &FaultConfig,
    expect: impl Fn(&fault::AccountingState),
) {
    let cfg = cfg.clone();
    let domain = vs.domain();
    let chain = whole_chain(store);
    let tip_view = chain.last().unwrap().view.0;

    let mut full = FaultTolerance::new(vs, cfg.clone());
    let mut full_acct = Accountant::new(vs.len(), &cfg);
    for b in &chain {
        let id = b.id(domain);
        full.on_commit(b, id);
        full_acct.on_commit(b, id);
    }

    // What `spawn_loaded` does: restore, then the core replays the last `replay_depth` blocks.
    let mut restarted = FaultTolerance::new(vs, cfg.clone());
    node::restore_policy(store, vs, &mut restarted).unwrap();
    let depth = restarted.replay_depth();
    assert!(
        depth + 10 < chain.len(),
        "the replay ({depth} blocks) must be shorter than the chain ({})",
        chain.len()
    );
    for b in store.last_committed(depth).unwrap() {
        restarted.on_commit(&b, b.id(domain));
    }
    let acct = node::restore_accountant(store, vs.len(), &cfg).unwrap();

    // Every view a restarted node can still be asked about: above its committed tip. (Cuts
    // more than `history_slack` blocks below the tip see a partial window after a replay,
    // §6.3 rule 7; views that old are behind every node and never evaluated again.)
    let views = tip_view + 1..tip_view + 521;
    let differ: Vec<u64> = views
        .clone()
        .filter(|&v| full.leader(View(v)) != restarted.leader(View(v)))
        .collect();
    assert!(differ.is_empty(), "leaders differ at views {differ:?}");
    for v in views {
        assert_eq!(
            full.leader_weights(View(v)),
            restarted.leader_weights(View(v))
        );
    }
    assert_eq!(full.convictions(), restarted.convictions());
    // The same evidence, each committed or pending alike (insertion order may differ).
    let held = |p: &FaultTolerance| {
        let mut v: Vec<_> = p
            .evidence(1000)
            .into_iter()
            .map(|e| (e.id(), p.evidence_state(e.key())))
            .collect();
        v.sort();
        v
    };
    assert_eq!(held(&full), held(&restarted));
    assert_eq!(acct.state(), full_acct.state(), "accounting after restart");
    expect(acct.state());
    println!(
        "restart path (replay {depth} of {} blocks) = full history for 520 views and the accounting",
        chain.len()
    );
}

/// A synthetic committed chain of `len` blocks over 4 validators (round-robin proposers) in
/// which validator 3 never signs a justify QC.
fn synthetic_chain(len: u64) -> Vec<Block> {
    use consensus::{Bitmap, Digest, QuorumCert, ValidatorIndex, VoteData};
    (1..=len)
        .map(|h| {
            let mut signers = Bitmap::new(4);
            for s in 0..3 {
                signers.set(ValidatorIndex(s));
            }
            Block {
                epoch: consensus::Epoch(0),
                view: View(h),
                height: Height(h),
                parent: Digest([0; 32]),
                justify: QuorumCert {
                    data: VoteData {
                        view: View(h - 1),
                        block_id: Digest([0; 32]),
                        height: Height(h - 1),
                        parent_id: Digest([0; 32]),
                        parent_view: View(h.saturating_sub(2)),
                    },
                    signers,
                    sigs: Vec::new(),
                },
                payload: Vec::new(),
                evidence: Vec::new(),
                proposer: ValidatorIndex((h % 4) as u16),
                skipped_leaders: Vec::new(),
            }
        })
        .collect()
}

/// `restore_accountant`: the stored state when there is one; a store written before the
/// accountant existed (committed blocks, no state) is rebuilt from every committed block; a
/// corrupt state refuses to start.
#[test]
fn restore_accountant_uses_the_state_or_rebuilds_it() {
    use storage::{MemStore, Op, WriteBatch};
    let cfg = fault_cfg();
    let domain = consensus::Domain::new("it-chain", consensus::Epoch(0));
    let chain = synthetic_chain(3 * WINDOW + 7);
    let mut store = MemStore::new();
    let mut reference = Accountant::new(4, &cfg);
    let mut ops = Vec::new();
    for b in &chain {
        let id = b.id(&domain);
        reference.on_commit(b, id);
        ops.push(Op::PutBlock {
            id,
            block: Box::new(b.clone()),
        });
        ops.push(Op::Commit {
            height: b.height,
            id,
        });
    }
    store.write(WriteBatch { sync: true, ops }).unwrap();
    assert_eq!(reference.state().accounts[3].downtime_records, 3);

    // Written with every commit: small.
    let bytes = reference.encode_state().len();
    println!("accounting state of 4 validators: {bytes} bytes");
    assert!(bytes < 1024, "{bytes} bytes");
    let rebuilt = node::restore_accountant(&store, 4, &cfg).unwrap();
    assert_eq!(
        rebuilt.state(),
        reference.state(),
        "rebuilt from the blocks"
    );

    // With a stored state, that state is used (here: a different one, to tell them apart).
    let mut other = Accountant::new(4, &cfg);
    for b in &chain[..WINDOW as usize] {
        other.on_commit(b, b.id(&domain));
    }
    let put = |bytes: Vec<u8>| WriteBatch {
        sync: true,
        ops: vec![Op::AppPut {
            key: node::app::ACCOUNTING_KEY.to_vec(),
            value: bytes,
        }],
    };
    store.write(put(other.encode_state())).unwrap();
    let restored = node::restore_accountant(&store, 4, &cfg).unwrap();
    assert_eq!(restored.state(), other.state());

    store.write(put(vec![1, 2, 3])).unwrap();
    let err = node::restore_accountant(&store, 4, &cfg).unwrap_err();
    assert!(format!("{err:#}").contains("accounting state"), "{err:#}");
}

/// The KV application's side of the slashing hook: entries accumulate per offender across the
/// blocks of one commit, the record keeps the last `MAX_PENALTY_ENTRIES` with a full total, and
/// no client transaction can write the reserved namespace.
#[test]
fn penalty_records_accumulate_and_are_out_of_clients_reach() {
    use node::app::{self, AppWrite, PenaltyRecord, Transaction, TxError};
    let cfg = FaultConfig {
        downtime_window: 1,
        ..fault_cfg()
    };
    let domain = consensus::Domain::new("it-chain", consensus::Epoch(0));
    let chain = synthetic_chain(100);
    let mut acct = Accountant::new(4, &cfg);
    let mut stored: Option<PenaltyRecord> = None;
    // Commit in batches of 7 blocks, as the driver does with a multi-block commit.
    for batch in chain.chunks(7) {
        let list: Vec<_> = batch
            .iter()
            .flat_map(|b| acct.on_commit(b, b.id(&domain)))
            .collect();
        let mut loads = 0;
        let writes = app::apply_misbehaviour(&list, |v| {
            loads += 1;
            assert_eq!(v.0, 3, "only validator 3 is penalised");
            Ok::<_, ()>(stored.clone())
        })
        .unwrap();
        assert!(loads <= 1, "one read per offender per commit");
        for w in writes {
            let AppWrite::Put { key, value } = w else {
                panic!("penalties are puts");
            };
            assert_eq!(key, app::penalty_key(consensus::ValidatorIndex(3)));
            stored = Some(PenaltyRecord::decode(&value).unwrap());
        }
    }
    let r = stored.unwrap();
    // Every block is a window of its own; validator 3 is judged in those it did not propose
    // (block 1 has no QC, so nothing is eligible there).
    let judged: Vec<u64> = (2..=100).filter(|h| h % 4 != 3).collect();
    assert_eq!(r.total, judged.len() as u64);
    assert_eq!(r.entries.len(), app::MAX_PENALTY_ENTRIES);
    let kept: Vec<u64> = r.entries.iter().map(|e| e.height.0).collect();
    assert_eq!(
        kept,
        judged[judged.len() - app::MAX_PENALTY_ENTRIES..],
        "newest kept"
    );

    let forged = Transaction::put(app::penalty_key(consensus::ValidatorIndex(3)), b"x", 1, EXP);
    assert_eq!(forged.validate(), Err(TxError::ReservedKey));
    let erase = Transaction::delete(app::ACCOUNTING_KEY, 1, EXP);
    assert_eq!(erase.validate(), Err(TxError::ReservedKey));
    assert!(
        Transaction::put(b"bftnode/ok", b"x", 1, EXP)
            .validate()
            .is_ok()
    );
}

/// Two conflicting votes signed with validator `voter`'s real key (E1) for `view`.
fn double_vote(home: &std::path::Path, view: u64, voter: u16) -> [Vec<u8>; 2] {
    use consensus::{BlockId, ConsensusMessage, SigKind, ValidatorIndex, Vote, VoteData};
    let loaded = node::config::load_home(home, &fast()).unwrap();
    [1u8, 2].map(|b| {
        let data = VoteData {
            view: View(view),
            block_id: BlockId::from_hex(&format!("{b:02x}").repeat(32)).unwrap(),
            height: Height(view),
            parent_id: BlockId::ZERO,
            parent_view: View(view - 1),
        };
        let sig = loaded.key.sign(
            loaded.validators.domain(),
            SigKind::Vote,
            &consensus::encode(&data),
        );
        ConsensusMessage::Vote(Vote {
            data,
            voter: ValidatorIndex(voter),
            sig,
        })
        .encode()
    })
}

/// Evidence → committed in a block → delivered to the application → on every node's
/// `/penalties`: a stopped validator's key, in a raw swarm, signs two votes for one view.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn committed_double_vote_isolates_and_is_penalised_on_every_node() {
    let t0 = Instant::now();
    let c = client();
    let mut cl = Cluster::start_with(4, Some(chain_params())).await;
    wait_all_at(&c, &cl, &cl.running(), 2, 30).await;
    let offender = 2u16;
    let home = cl.home_of(offender);
    let (peers, seed, p2p) = network_view(&cl.homes[home]);
    cl.stop(home).await;
    let live = cl.running();
    let victims: Vec<u16> = live.iter().map(|&i| cl.vindex[i]).collect();
    let (fake, _rx) = raw_swarm(seed, p2p, peers, |_| {}).await;
    assert!(
        wait_connected(&fake, &victims, 30).await,
        "raw swarm did not connect"
    );
    for &i in &live {
        let a = cl.addr(i);
        let ok = wait_until(30, || async {
            peer_entry(&c, a, offender)
                .await
                .is_some_and(|p| p.connected)
        })
        .await;
        assert!(ok, "node {i} does not see validator {offender} connected");
    }
    let sent = Instant::now();
    let view = status(&c, cl.addr(live[0])).await.unwrap().view + 1;
    for v in view..view + 3 {
        for msg in double_vote(&cl.homes[home], v, offender) {
            for &to in &victims {
                fake.send(to, msg.clone());
            }
        }
    }

    for &i in &live {
        let a = cl.addr(i);
        let ok = wait_until(30, || async {
            penalties(&c, a, offender)
                .await
                .is_some_and(|p| p.convicted && p.entries.iter().any(|e| e.kind == "double_vote"))
        })
        .await;
        assert!(ok, "node {i}: no committed double-vote penalty");
    }
    println!(
        "double-vote penalty on every running node {:.2} s after the votes were sent",
        sent.elapsed().as_secs_f64()
    );
    fake.shutdown();

    let mut accounted = u64::MAX;
    for &i in &live {
        let p = penalties(&c, cl.addr(i), offender).await.unwrap();
        assert_eq!(p.standing, "isolated", "node {i}");
        accounted = accounted.min(p.accounted_height);
    }
    let reference = entries_up_to(&c, cl.addr(live[0]), offender, accounted).await;
    let ev = reference.iter().find(|e| e.kind == "double_vote").unwrap();
    println!("evidence entry: {ev:?}");
    assert_eq!(ev.standing, "isolated");
    assert_eq!(ev.safety, Some(true));
    // The entry names evidence the node holds as committed.
    let held: Vec<node::rpc_types::EvidenceResponse> =
        get_json(&c, cl.addr(live[0]), "/evidence").await.unwrap();
    let id = ev.evidence_id.as_ref().unwrap();
    assert!(
        held.iter()
            .any(|e| &e.id == id && e.committed && e.offender == offender),
        "{held:?}"
    );
    for &i in &live[1..] {
        assert_eq!(
            entries_up_to(&c, cl.addr(i), offender, accounted).await,
            reference,
            "node {i}"
        );
    }
    // Commits continue, past the replay depth of a restart (12 blocks here).
    let h = max_height(&c, &cl, &live).await.max(ev.height + 20);
    wait_all_at(&c, &cl, &live, h, 30).await;

    // The evidence a node holds, and whether each item is committed, survive its restart
    // although the block that committed it is older than the replay.
    let node = live[0];
    let held = |a| async move {
        let mut v: Vec<(String, bool)> =
            get_json::<Vec<node::rpc_types::EvidenceResponse>>(&client(), a, "/evidence")
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.id, e.committed))
                .collect();
        v.sort();
        v
    };
    let before = held(cl.addr(node)).await;
    cl.stop(node).await;
    cl.restart(node).await;
    let after = held(cl.addr(node)).await;
    println!("evidence held before/after restart: {before:?} / {after:?}");
    assert_eq!(after, before, "evidence state after restart");
    let h = max_height(&c, &cl, &live).await;
    wait_all_at(&c, &cl, &live, h + 3, 30).await;

    // From a stopped node's database: the conviction is older than the replay, so the leader
    // schedule after a restart depends on the restored conviction record.
    let home = cl.homes[live[1]].clone();
    cl.stop(live[1]).await;
    let loaded = node::config::load_home(&home, &fast()).unwrap();
    let store = open_retrying(&loaded.db_path).await;
    let tip = store.committed_tip().unwrap().unwrap().0;
    assert!(
        tip.0 > ev.height + 12,
        "conviction at {} within the replay of {tip:?}",
        ev.height
    );
    let cfg = loaded.genesis.fault_config(&loaded.config.fault);
    assert_eq!(cfg, fault_cfg(), "the nodes ran with the test parameters");
    restart_matches_full_history(&store, &loaded.validators, &cfg, |s| {
        let a = s.accounts[usize::from(offender)];
        assert!(a.convicted && a.evidence_committed >= 1, "{a:?}");
    });
    cl.shutdown().await;
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
}
