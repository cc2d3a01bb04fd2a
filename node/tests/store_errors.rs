//! Issue 8 finding 6: a store read error while serving a peer fails that request, not the node;
//! and finding 2 (node side): gossip is checked in memory before any store read.
//!
//! The corrupt records are real: garbage bytes written under a `recent` (replay guard) or
//! `blocks` key of a real RocksDB through the storage test hook (`RocksStore::raw_put`).

mod common;

use common::*;
use consensus::{BlockRequest, Height};
use node::app::Transaction;
use node::driver::{MAX_GOSSIP_TXS, ingest_gossip};
use node::mempool::{Mempool, MempoolConfig, Source};
use node::metrics::{Metrics, gossip_outcome};
use node::rpc_types::TxRequest;
use std::time::Instant;
use storage::{Cf, RocksOptions, RocksStore, Store, WriteBatch};

/// An expiry admissible at every height these tests reach.
const EXP: Height = Height(100);

fn peer(i: u8) -> Source {
    let public = network::public_key_of(&[i; 32]).unwrap();
    Source::Peer(network::peer_id_of(&public).unwrap())
}

fn gossip(txs: &[Transaction]) -> Vec<u8> {
    consensus::encode(&txs.to_vec())
}

fn pool() -> Mempool {
    Mempool::new(MempoolConfig {
        max_txs: 200_000,
        max_bytes: 64 << 20,
        min_shares: 1,
    })
}

/// The replay guard holds garbage (a value where it stores none) under `tx`'s key: expiry
/// (8 bytes, big-endian) ‖ hash.
fn poison(store: &mut RocksStore, tx: &Transaction) {
    let key = [&tx.expires_at.0.to_be_bytes()[..], &tx.hash().0].concat();
    store.raw_put(Cf::Recent, &key, b"garbage").unwrap();
}

#[test]
fn a_corrupt_tx_index_entry_fails_only_that_gossip_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RocksStore::open(dir.path(), RocksOptions::default()).unwrap();
    let pending = Transaction::put("pending", "v", 0, EXP);
    let poisoned = Transaction::put("poisoned", "v", 0, EXP);
    poison(&mut store, &pending);
    poison(&mut store, &poisoned);
    let metrics = Metrics::new();
    let mut m = pool();
    let now = Instant::now();
    m.insert(pending.clone(), false, now).unwrap();

    // A duplicate of a pending transaction is dropped in memory: its corrupt index entry is
    // never read.
    let r = ingest_gossip(&mut m, &store, peer(1), &gossip(&[pending]), now, &metrics).unwrap();
    assert_eq!((r.accepted, r.dropped_in_memory), (0, 1));
    assert_eq!(r.read_error, None);
    assert_eq!(metrics.gossip_txs_count(gossip_outcome::DUPLICATE), 1);

    // A new transaction whose index entry is corrupt: the read error stops this message (the
    // one before it got in, the one after it is not examined) and is reported, not returned.
    let before = Transaction::put("before", "v", 0, EXP);
    let after = Transaction::put("after", "v", 0, EXP);
    let msg = gossip(&[before.clone(), poisoned, after.clone()]);
    let r = ingest_gossip(&mut m, &store, peer(1), &msg, now, &metrics).unwrap();
    assert_eq!(r.accepted, 1);
    assert!(
        matches!(
            r.read_error,
            Some(storage::StoreError::Corrupt { cf: "recent", .. })
        ),
        "{:?}",
        r.read_error
    );
    assert!(m.contains(&before.hash()) && !m.contains(&after.hash()));
    assert_eq!(metrics.store_read_error_count("gossip"), 1);
    assert_eq!(metrics.gossip_txs_count(gossip_outcome::READ_ERROR), 2);

    // The next message is served normally.
    let r = ingest_gossip(
        &mut m,
        &store,
        peer(1),
        &gossip(std::slice::from_ref(&after)),
        now,
        &metrics,
    )
    .unwrap();
    assert_eq!(r.accepted, 1);
    assert!(m.contains(&after.hash()));
}

#[test]
fn gossip_is_capped_per_message_and_committed_txs_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), RocksOptions::default()).unwrap();
    let done = Transaction::delete("done", 0, EXP);
    let mut batch = WriteBatch::synced();
    batch.push(storage::Op::RecordRecentTx {
        expires_at: done.expires_at,
        hash: done.hash(),
    });
    store.write_shared(batch).unwrap();
    let metrics = Metrics::new();
    let mut m = pool();
    // The attacker's message of issue 8: one-byte-key deletes filling a gossip message
    // (45,000 of 22 bytes, ~990 KB).
    let mut txs: Vec<Transaction> = (0..45_000u64)
        .map(|i| Transaction::delete(vec![b'x'], i, EXP))
        .collect();
    txs[0] = done;
    let msg = gossip(&txs);
    assert!(msg.len() < 1 << 20);
    let r = ingest_gossip(&mut m, &store, peer(1), &msg, Instant::now(), &metrics).unwrap();
    assert_eq!(r.truncated, 45_000 - MAX_GOSSIP_TXS);
    assert_eq!(r.committed, 1);
    assert_eq!(r.accepted, MAX_GOSSIP_TXS - 1);
    assert_eq!(m.len(), MAX_GOSSIP_TXS - 1);
    // Garbage is refused whole; nothing is inserted.
    assert!(
        ingest_gossip(
            &mut m,
            &store,
            peer(2),
            &[1, 2, 3],
            Instant::now(),
            &metrics
        )
        .is_err()
    );
}

/// The attack of issue 8, at the mempool: a stranger floods full gossip messages (45,000
/// one-byte-key deletes, ~990 KB); every message is cut at `MAX_GOSSIP_TXS`, the peer's share
/// stops at half the pool, and a local client offering 1,000 transactions gets every one in.
#[test]
fn a_gossip_flood_cannot_starve_local_clients() {
    let dir = tempfile::tempdir().unwrap();
    let store = RocksStore::open(dir.path(), RocksOptions::default()).unwrap();
    let metrics = Metrics::new();
    let mut m = Mempool::new(MempoolConfig {
        max_txs: 20_000,
        max_bytes: 64 << 20,
        min_shares: 1,
    });
    let attacker = peer(9);
    let mut nonce = 0u64;
    let msgs: Vec<Vec<u8>> = (0..10)
        .map(|_| {
            let txs: Vec<Transaction> = (0..45_000)
                .map(|_| {
                    nonce += 1;
                    Transaction::delete(vec![b'x'], nonce, EXP)
                })
                .collect();
            gossip(&txs)
        })
        .collect();
    let t = Instant::now();
    for msg in &msgs {
        ingest_gossip(&mut m, &store, attacker, msg, Instant::now(), &metrics).unwrap();
    }
    let ingest = t.elapsed() / 10;
    // What the old driver did per message, for comparison: decode all, then hash and read the
    // store for every transaction.
    let t = Instant::now();
    for msg in &msgs[..2] {
        let txs: Vec<Transaction> = consensus::decode(msg, 1 << 20).unwrap();
        for tx in txs {
            let _ = store.tx_location(&tx.hash()).unwrap();
        }
    }
    let old = t.elapsed() / 2;
    eprintln!("flood figures: {ingest:?} per 45,000-tx message now, {old:?} decode+hash+read all");
    assert_eq!(m.held_by(&attacker).0, 10_000, "half the pool");
    assert!(metrics.gossip_txs_count(gossip_outcome::OVER_QUOTA) > 0);
    // A second flooding peer takes its (new) third, evicting from the first.
    let mut txs = Vec::new();
    for i in 0..MAX_GOSSIP_TXS as u64 * 2 {
        txs.push(Transaction::delete(vec![b'y'], i, EXP));
    }
    for chunk in txs.chunks(MAX_GOSSIP_TXS) {
        ingest_gossip(
            &mut m,
            &store,
            peer(8),
            &gossip(chunk),
            Instant::now(),
            &metrics,
        )
        .unwrap();
    }
    assert_eq!(m.held_by(&peer(8)).0, 20_000 / 3);
    assert_eq!(m.len(), 10_000 + 6_666);
    // Local clients: 5,000 submissions, the last 1,666 on a pool full of gossip: all accepted,
    // each of those evicting one gossiped transaction.
    let now = Instant::now();
    for i in 0..5_000u64 {
        m.insert(
            Transaction::put(format!("client{i}"), "v", i, EXP),
            false,
            now,
        )
        .unwrap();
    }
    assert_eq!(m.held_by(&Source::Local).0, 5_000);
    assert_eq!(m.evicted(), 1_666);
    assert_eq!(m.len(), 20_000);
}

#[test]
fn a_sync_request_for_a_corrupt_block_fails_only_that_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = RocksStore::open(dir.path(), RocksOptions::default()).unwrap();
    let target = consensus::Digest([7; 32]);
    store.raw_put(Cf::Blocks, &target.0, b"garbage").unwrap();
    let metrics = Metrics::new();
    let req = BlockRequest {
        target,
        stop_at: Height(0),
        max_blocks: 10,
    };
    assert!(
        store.serve_blocks(&req, 1 << 20).is_err(),
        "the record is corrupt"
    );
    let resp = node::sync_server::answer(&store, &req, &metrics);
    assert!(resp.blocks.is_empty());
    assert_eq!(metrics.store_read_error_count("sync"), 1);
}

/// Through the real path: validator 1 gossips a client's transaction to validator 0, whose
/// replay guard holds garbage under that transaction. Before the fix the driver's read error was fatal and
/// validator 0 stopped; now the message fails, is counted, and the node keeps running.
/// Two of four validators run, so nothing commits (a commit reading the corrupt entry is the
/// node's own path and stays fatal).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_gossiping_a_tx_with_a_corrupt_index_entry_does_not_stop_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let homes = testnet(dir.path(), 4);
    let txs: Vec<TxRequest> = (0..60)
        .map(|nonce| TxRequest::Put {
            key: "poisoned".into(),
            value: "v".into(),
            nonce,
            expires_at: Some(EXP.0),
        })
        .collect();
    {
        let mut s = RocksStore::open(homes[0].join("data"), RocksOptions::default()).unwrap();
        for r in &txs {
            poison(&mut s, &r.clone().into_transaction(Height(0)).unwrap());
        }
    }
    let a = node::spawn(&homes[0], fast()).await.unwrap();
    let b = node::spawn(&homes[1], fast()).await.unwrap();
    let c = client();
    let metric = "bftnode_store_read_errors_total{path=\"gossip\"}";
    let (a_rpc, b_rpc) = (a.rpc_addr(), b.rpc_addr());
    let mut next = txs.into_iter();
    // Gossip needs the two to be connected and subscribed: submit one poisoned transaction to
    // validator 1 every half second until validator 0 has counted a failed read.
    let counted = wait_until(60, || {
        let (c, tx) = (c.clone(), next.next());
        async move {
            if let Some(tx) = tx {
                let _ = c.post(url(b_rpc, "/tx")).json(&tx).send().await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
            metrics_text(&c, a_rpc)
                .await
                .lines()
                .any(|l| l.starts_with(metric))
        }
    })
    .await;
    assert!(!a.is_finished(), "validator 0 stopped on a peer's gossip");
    assert!(counted, "validator 0 never counted the failed read");
    assert!(
        status(&c, a.rpc_addr()).await.is_some(),
        "validator 0 still answers"
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
