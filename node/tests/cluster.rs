//! Four validators in one process over real QUIC on 127.0.0.1 with real RocksDB in tempdirs:
//! commit submitted transactions; stop one node and keep committing; restart it, let it catch
//! up, and compare the committed chains block by block.

mod common;

use common::cluster::*;
use common::*;
use node::NodeHandle;

async fn heights(c: &reqwest::Client, nodes: &[Option<NodeHandle>]) -> Vec<u64> {
    let mut out = Vec::new();
    for n in nodes.iter().flatten() {
        out.push(
            status(c, n.rpc_addr())
                .await
                .map_or(0, |s| s.committed_height),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_nodes_commit_survive_a_crash_and_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let homes = testnet(dir.path(), 4);
    let mut nodes: Vec<Option<NodeHandle>> = Vec::new();
    for h in &homes {
        nodes.push(Some(node::spawn(h, fast()).await.unwrap()));
    }
    let c = client();
    let addr = |nodes: &[Option<NodeHandle>], i: usize| nodes[i].as_ref().unwrap().rpc_addr();

    // 1. Submitted transactions commit everywhere.
    let r = submit_batch(&c, addr(&nodes, 0), "a", 50).await;
    assert_eq!(r.accepted, 50, "{:?}", r.errors);
    for i in 0..4 {
        let a = addr(&nodes, i);
        let ok = wait_until(60, || async {
            kv(&c, a, "a49").await.is_some_and(|k| k.found)
                && kv(&c, a, "a0").await.is_some_and(|k| k.found)
        })
        .await;
        assert!(ok, "node {i} did not commit the first batch");
    }
    // The proposals that carried them crossed the network compact (`node::relay`) and the
    // replicas rebuilt them from their mempools, or fetched the block; step 4 checks that
    // every node holds the very same blocks.
    let (mut sent, mut received) = (0.0, 0.0);
    for i in 0..4 {
        let m = metrics_text(&c, addr(&nodes, i)).await;
        let relay = |o: &str| {
            sample(
                &m,
                &format!("bftnode_relay_proposals_total{{outcome=\"{o}\"}}"),
            )
        };
        sent += relay("sent_compact");
        received += relay("rebuilt") + relay("fetched");
        assert_eq!(relay("too_large"), 0.0);
    }
    assert!(
        sent >= 1.0 && received >= 1.0,
        "no proposal relayed compact: {sent} sent, {received} received"
    );

    // 2. Stop node 3: the other three (a quorum) keep committing.
    let stopped = nodes[3].take().unwrap();
    stopped.stop().await.unwrap();
    let before = heights(&c, &nodes).await;
    let r = submit_batch(&c, addr(&nodes, 1), "b", 50).await;
    assert_eq!(r.accepted, 50, "{:?}", r.errors);
    for i in 0..3 {
        let a = addr(&nodes, i);
        let ok = wait_until(60, || async {
            kv(&c, a, "b49").await.is_some_and(|k| k.found)
        })
        .await;
        assert!(ok, "node {i} did not commit with one node down");
    }
    let after = heights(&c, &nodes).await;
    assert!(
        after.iter().zip(&before).all(|(a, b)| a > b),
        "{before:?} -> {after:?}"
    );

    // 3. Restart node 3: it catches up.
    nodes[3] = Some(until_bound("node 3", || node::spawn(&homes[3], fast())).await);
    let target = *after.iter().max().unwrap();
    let a3 = addr(&nodes, 3);
    let ok = wait_until(90, || async {
        status(&c, a3)
            .await
            .is_some_and(|s| s.committed_height >= target)
            && kv(&c, a3, "b49").await.is_some_and(|k| k.found)
    })
    .await;
    assert!(ok, "restarted node did not catch up to height {target}");

    // It caught up through block sync.
    let m = metrics_text(&c, a3).await;
    let syncs = sample(&m, "bftnode_sync_requests_total");
    assert!(
        syncs >= 1.0,
        "no block-sync request on the restarted node:\n{m}"
    );

    // 4. Committed chains match block by block.
    for h in 0..=target {
        let reference = block(&c, addr(&nodes, 0), h)
            .await
            .expect("block on node 0");
        for i in 1..4 {
            let b = block(&c, addr(&nodes, i), h)
                .await
                .unwrap_or_else(|| panic!("node {i} lacks height {h}"));
            assert_eq!(b.id, reference.id, "node {i} differs at height {h}");
            assert_eq!(b.tx_hashes, reference.tx_hashes);
        }
    }

    for n in nodes.into_iter().flatten() {
        n.stop().await.unwrap();
    }
}

/// The safety record in `home`'s database (the node must be stopped).
fn safety_of(home: &std::path::Path) -> consensus::SafetyData {
    use storage::Store as _;
    let l = node::config::load_home(home, &fast()).unwrap();
    let store = storage::RocksStore::open(&l.db_path, storage::RocksOptions::default()).unwrap();
    store.load_safety().unwrap().expect("a safety record")
}

/// Issue 11 item 8: `bftnode reset` (`node::reset::reset`) of a stopped validator wipes its
/// database but keeps its key and its safety record; restarted, it catches up from genesis
/// through its peers and agrees with them, with a record never below the one it had. A
/// running node's database is refused; dropping the record needs a reason, and every reset is
/// written to `reset.log`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reset_validator_keeps_its_record_and_catches_up() {
    use node::reset::{RESET_LOG, ResetMode, reset};
    let c = reqwest::Client::new();
    let mut cl = Cluster::start(4).await;
    wait_all_at(&c, &cl, &[0, 1, 2, 3], 5, 60).await;
    // A node that started late may have caught up by block sync without voting yet; wait
    // until node 3 has signed four votes (views strictly increase, so its last voted view is
    // at least 4).
    let a3 = cl.addr(3);
    assert!(
        wait_until(60, || async {
            sample(&metrics_text(&c, a3).await, "bftnode_votes_total") >= 4.0
        })
        .await,
        "node 3 never voted four times"
    );
    let e = format!(
        "{:#}",
        reset(&cl.homes[0], &ResetMode::KeepSafetyRecord).unwrap_err()
    );
    assert!(e.contains("is the node running?"), "{e}");
    cl.stop(3).await;
    let home = cl.homes[3].clone();
    let key = std::fs::read(home.join(node::config::KEY_FILE)).unwrap();
    let before = safety_of(&home);
    assert!(before.last_voted_view.0 >= 4, "{before:?}");
    let out = reset(&home, &ResetMode::KeepSafetyRecord).unwrap();
    assert_eq!(out.kept.as_ref(), Some(&before));
    assert_eq!(
        std::fs::read(home.join(node::config::KEY_FILE)).unwrap(),
        key
    );
    assert_eq!(safety_of(&home), before, "only the record is left");

    cl.restart(3).await;
    let target = max_height(&c, &cl, &[0, 1, 2]).await + 5;
    wait_all_at(&c, &cl, &[0, 1, 2, 3], target, 60).await;
    assert_chains_match(&c, &cl, &[0, 3], target).await;
    cl.stop(3).await;
    let after = safety_of(&home);
    assert!(
        after.last_voted_view >= before.last_voted_view,
        "{after:?} < {before:?}"
    );

    let blank = ResetMode::DropSafetyRecord { reason: " ".into() };
    assert!(reset(&home, &blank).is_err());
    let drop = ResetMode::DropSafetyRecord {
        reason: "chain restarted from genesis".into(),
    };
    assert_eq!(reset(&home, &drop).unwrap().kept, None);
    assert!(!out.db_path.exists(), "nothing left to open");
    let log = std::fs::read_to_string(home.join(RESET_LOG)).unwrap();
    let keep_line = format!(
        "reset keeping the safety record (last voted view {})",
        before.last_voted_view.0
    );
    assert!(log.contains(&keep_line), "{log}");
    assert!(
        log.contains("reset DROPPING the safety record") && log.contains("restarted from genesis"),
        "{log}"
    );
    cl.shutdown().await;
}

/// Issue 11 item 8: two validators prune to 20 heights, one keeps everything (an archive), one
/// is down. The pruning nodes answer 410 Gone below their floor and keep the transaction index;
/// the stopped validator, restarted far behind every pruning node's floor while the archive is
/// down, gets empty sync answers from them (no blame: PROTOCOL.md §6.5 rule 3) and, once the
/// archive is back, catches up from it, block by block identical to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pruning_nodes_keep_their_floor_and_a_laggard_catches_up_from_the_archive() {
    const RETAIN: u64 = 20;
    let c = reqwest::Client::new();
    let mut cl = Cluster::start(4).await;
    let batch = submit_batch(&c, cl.addr(0), "early", 5).await;
    assert_eq!(batch.accepted, 5);
    wait_until(30, || async {
        let r: Option<node::rpc_types::TxResponse> =
            get_json(&c, cl.addr(0), &format!("/tx/{}", batch.hashes[0])).await;
        r.is_some_and(|t| t.height.is_some())
    })
    .await;
    let tx: node::rpc_types::TxResponse =
        get_json(&c, cl.addr(0), &format!("/tx/{}", batch.hashes[0]))
            .await
            .unwrap();
    let tx_height = tx.height.unwrap();
    cl.stop(3).await;
    let behind = height(&c, cl.addr(0)).await;
    for i in [0, 1] {
        cl.stop(i).await;
        cl.restart_pruning(i, RETAIN).await;
    }
    let target = behind + 6 * RETAIN;
    wait_all_at(&c, &cl, &[0, 1, 2], target, 120).await;
    // The pruner runs every second: wait for its pass past the laggard's height.
    let floor = |s: Option<node::rpc_types::StatusResponse>| s.map_or(0, |s| s.retained_from);
    assert!(
        wait_until(30, || async {
            floor(status(&c, cl.addr(0)).await) > behind + RETAIN
        })
        .await,
        "node 0 never pruned"
    );
    let st = status(&c, cl.addr(0)).await.unwrap();
    assert!(
        st.retained_from + RETAIN + 1_000 >= st.committed_height,
        "{st:?}"
    );
    assert_eq!(
        floor(status(&c, cl.addr(2)).await),
        1,
        "the archive prunes nothing"
    );
    assert!(
        metric(&c, cl.addr(0), "bftnode_pruned_heights_total").await >= (behind + RETAIN) as f64
    );

    // Below the floor: 410 Gone naming the floor; the transaction index stays whole.
    let r = c
        .get(url(cl.addr(0), &format!("/blocks/{tx_height}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::GONE);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("was pruned") && body.contains("retain_heights"),
        "{body}"
    );
    let again: node::rpc_types::TxResponse =
        get_json(&c, cl.addr(0), &format!("/tx/{}", batch.hashes[0]))
            .await
            .unwrap();
    assert_eq!(again.height, Some(tx_height));
    assert!(block(&c, cl.addr(0), st.committed_height).await.is_some());
    assert!(block(&c, cl.addr(2), tx_height).await.is_some());

    // The laggard restarts while the archive is down: the pruning nodes are all it can ask,
    // and below their floor they answer empty (the chain halts: two of four are up).
    let archive_height = height(&c, cl.addr(2)).await;
    cl.stop(2).await;
    cl.restart(3).await;
    assert!(
        wait_until(60, || async {
            metric(&c, cl.addr(3), "bftnode_sync_unavailable_total").await > 0.0
        })
        .await,
        "the pruning nodes never answered empty below their floor"
    );
    assert!(height(&c, cl.addr(3)).await < st.retained_from);
    // The archive returns: the laggard catches up from it, block by block identical.
    cl.restart(2).await;
    let target = archive_height.max(max_height(&c, &cl, &[0, 1, 2]).await) + 5;
    wait_all_at(&c, &cl, &[0, 1, 2, 3], target, 120).await;
    cl.nodes.swap(0, 2);
    assert_chains_match(&c, &cl, &[0, 3], target).await;
    cl.nodes.swap(0, 2);
    cl.shutdown().await;
}

/// `[block] proposal_budget_ms` (opt-in) caps proposals by the goodput the network measured
/// over real QUIC: with a 1 ms budget on loopback the gauge shows a cap between the floor and
/// `max_block_bytes`, and every transaction still commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_opted_in_proposal_budget_caps_blocks_by_measured_goodput() {
    let c = reqwest::Client::new();
    let mut cl = Cluster::start(4).await;
    for i in 0..4 {
        cl.stop(i).await;
        let path = cl.homes[i].join(node::config::CONFIG_FILE);
        let mut cfg = node::NodeConfig::load(&cl.homes[i]).unwrap();
        cfg.block.proposal_budget_ms = 1;
        std::fs::write(&path, cfg.to_toml().unwrap()).unwrap();
        cl.restart(i).await;
    }
    let max = node::NodeConfig::load(&cl.homes[0])
        .unwrap()
        .block
        .max_block_bytes as f64;
    let floor = node::proposal_cap::MIN_PROPOSAL_BYTES as f64;
    let mut hashes = Vec::new();
    for round in 0..4 {
        let b = submit_batch(&c, cl.addr(round % 4), &format!("cap{round}-"), 500).await;
        assert_eq!(b.accepted, 500);
        hashes.extend(b.hashes);
    }
    let capped = wait_until(60, || async {
        for i in 0..4 {
            let cap = metric(&c, cl.addr(i), "bftnode_proposal_cap_bytes").await;
            if cap >= floor && cap < max {
                return true;
            }
        }
        false
    })
    .await;
    assert!(capped, "no node capped its proposals below max_block_bytes");
    for h in &hashes {
        let committed = wait_until(60, || async {
            let r: Option<node::rpc_types::TxResponse> =
                get_json(&c, cl.addr(0), &format!("/tx/{h}")).await;
            r.is_some_and(|t| t.height.is_some())
        })
        .await;
        assert!(committed, "transaction {h} never committed");
    }
    cl.shutdown().await;
}
