//! Mempool limits, dedupe, FIFO proposals and in-flight tracking.

use consensus::{Digest, Height};
use node::app::{PAYLOAD_OVERHEAD, Transaction};
use node::mempool::{Mempool, MempoolConfig, MempoolError, Source};
use std::time::Instant;

/// An expiry admissible at every height these tests reach.
const EXP: Height = Height(100);

fn pool(max_txs: usize, max_bytes: usize) -> Mempool {
    Mempool::new(MempoolConfig {
        max_txs,
        max_bytes,
        min_shares: 1,
    })
}

/// A roomy pool (100 transactions, 1 MiB) holding `tx(0..n)`, inserted in order.
fn pool_of(n: u64) -> Mempool {
    let mut m = pool(100, 1 << 20);
    let now = Instant::now();
    for i in 0..n {
        m.insert(tx(i), false, now).unwrap();
    }
    m
}

fn tx(i: u64) -> Transaction {
    Transaction::put(format!("key{i}"), "value", i, EXP)
}

#[test]
fn count_limit_is_a_clear_error() {
    let mut m = pool(2, 1 << 20);
    let now = Instant::now();
    m.insert(tx(1), false, now).unwrap();
    m.insert(tx(2), false, now).unwrap();
    let e = m.insert(tx(3), false, now).unwrap_err();
    assert!(
        matches!(
            e,
            MempoolError::Full {
                txs: 2,
                max_txs: 2,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("mempool full"));
    assert_eq!(m.len(), 2);
}

#[test]
fn byte_limit_is_a_clear_error() {
    let one = tx(1).encoded_len();
    let mut m = pool(100, one * 2);
    let now = Instant::now();
    m.insert(tx(1), false, now).unwrap();
    m.insert(tx(2), false, now).unwrap();
    assert_eq!(m.bytes(), one * 2);
    assert!(matches!(
        m.insert(tx(3), false, now),
        Err(MempoolError::Full { .. })
    ));
}

#[test]
fn dedupe_pending_and_committed() {
    let mut m = pool(10, 1 << 20);
    let now = Instant::now();
    let h = m.insert(tx(1), false, now).unwrap();
    assert_eq!(
        m.insert(tx(1), false, now),
        Err(MempoolError::AlreadyPending { hash: h })
    );
    assert_eq!(
        m.insert(tx(2), true, now),
        Err(MempoolError::AlreadyCommitted { hash: tx(2).hash() })
    );
    assert!(matches!(
        m.insert(Transaction::put("", "", 0, EXP), false, now),
        Err(MempoolError::Invalid(_))
    ));
    assert_eq!(m.len(), 1);
}

#[test]
fn take_is_fifo_and_bounded() {
    let m = pool_of(10);
    let size = tx(0).encoded_len();
    let got = m.take(PAYLOAD_OVERHEAD + 3 * size);
    assert_eq!(got, vec![tx(0), tx(1), tx(2)]);
    assert!(m.take(PAYLOAD_OVERHEAD).is_empty());
    // take does not remove.
    assert_eq!(m.len(), 10);
}

#[test]
fn in_flight_txs_are_not_repeated_and_are_released() {
    let mut m = pool_of(4);
    let b1 = Digest([1; 32]);
    let b2 = Digest([2; 32]);
    // Block b1 at height 1 carries tx0, tx1 (not committed yet).
    m.mark_in_flight(b1, Height(1), vec![tx(0).hash(), tx(1).hash()]);
    assert_eq!(m.take(1 << 20), vec![tx(2), tx(3)]);
    // A competing block b2 at height 1 carries tx2; b1 commits.
    m.mark_in_flight(b2, Height(1), vec![tx(2).hash()]);
    assert_eq!(m.take(1 << 20), vec![tx(3)]);
    assert!(m.has_available());
    assert!(m.has_uncommitted_txs());
    let removed = m.on_commit(&[b1], Height(1), &[tx(0).hash(), tx(1).hash()]);
    assert_eq!(removed.len(), 2);
    assert_eq!(m.len(), 2);
    // b2 can no longer commit: tx2 is available again.
    assert_eq!(m.take(1 << 20), vec![tx(2), tx(3)]);
    assert_eq!(m.in_flight_len(), 0);
    assert!(!m.has_uncommitted_txs());
    m.mark_in_flight(Digest([3; 32]), Height(2), vec![tx(2).hash(), tx(3).hash()]);
    assert!(!m.has_available());
}

/// A committed block's transactions that the application skipped (here: expired) are not
/// removed as committed; without `discard` they would be released and proposed again forever.
#[test]
fn skipped_transactions_of_a_committed_block_are_discarded() {
    let mut m = pool_of(3);
    let b = Digest([1; 32]);
    m.mark_in_flight(b, Height(1), vec![tx(0).hash(), tx(1).hash()]);
    // b commits; tx0 was applied, tx1 skipped.
    m.on_commit(&[b], Height(1), &[tx(0).hash()]);
    assert_eq!(m.take(1 << 20), vec![tx(1), tx(2)], "tx1 was released");
    m.discard(&[tx(1).hash(), tx(0).hash()]);
    assert_eq!(m.take(1 << 20), vec![tx(2)]);
    assert_eq!(m.len(), 1);
}

// ------------------------------------------------------------ per-source quotas (issue 8 #2)

fn peer(i: u8) -> Source {
    let public = network::public_key_of(&[i; 32]).unwrap();
    Source::Peer(network::peer_id_of(&public).unwrap())
}

/// `n` distinct transactions from `source`, tagged so sources never collide.
fn flood(m: &mut Mempool, source: Source, tag: &str, n: usize) -> (usize, Vec<MempoolError>) {
    let now = Instant::now();
    let mut ok = 0;
    let mut errs = Vec::new();
    for i in 0..n {
        match m.insert_from(
            source,
            Transaction::put(format!("{tag}{i}"), "v", 0, EXP),
            false,
            now,
        ) {
            Ok(_) => ok += 1,
            Err(e) => errs.push(e),
        }
    }
    (ok, errs)
}

#[test]
fn a_flooding_peer_cannot_take_more_than_its_quota() {
    let mut m = pool(100, 1 << 20);
    // Alone, a peer's quota is max_txs / (1 peer + the local share) = 50.
    let (ok, errs) = flood(&mut m, peer(1), "a", 1000);
    assert_eq!(ok, 50);
    assert_eq!(m.held_by(&peer(1)).0, 50);
    assert!(
        errs.iter().all(|e| matches!(
            e,
            MempoolError::OverQuota {
                txs: 50,
                max_txs: 50,
                ..
            }
        )),
        "{:?}",
        errs.first()
    );
    // A second peer: quotas are 100 / 3 = 33.
    let (ok, _) = flood(&mut m, peer(2), "b", 1000);
    assert_eq!(ok, 33);
    // Byte quota too: a peer may hold at most max_bytes / 2 bytes.
    let one = tx_len("k0");
    let mut m = pool(1000, 10 * one);
    let (ok, errs) = flood(&mut m, peer(1), "k", 100);
    assert_eq!(ok, 5);
    assert!(matches!(errs[0], MempoolError::OverQuota { .. }));
}

fn tx_len(key: &str) -> usize {
    Transaction::put(key, "v", 0, EXP).encoded_len()
}

#[test]
fn local_submissions_get_their_share_when_gossip_filled_the_pool() {
    let mut m = pool(100, 1 << 20);
    let now = Instant::now();
    // Three peers fill the pool: 50, then 33, then the third takes the 17 left and evicts the
    // first (over its new quota of 25) to reach its own 25.
    assert_eq!(flood(&mut m, peer(1), "a", 1000).0, 50);
    assert_eq!(flood(&mut m, peer(2), "b", 1000).0, 33);
    assert_eq!(flood(&mut m, peer(3), "c", 1000).0, 25);
    assert_eq!(m.len(), 100);
    assert_eq!(m.held_by(&peer(1)).0, 42);
    assert_eq!(m.evicted(), 8);
    // Newest first: peer 1's oldest 42 are still there, its newest 8 are gone.
    assert!(m.contains(&Transaction::put("a41", "v", 0, EXP).hash()));
    assert!(!m.contains(&Transaction::put("a42", "v", 0, EXP).hash()));
    // The pool is full of gossip; local clients get their share (100 / 4 = 25), evicting the
    // peers over theirs, and then a clear "full".
    for i in 0..25 {
        m.insert(tx(i), false, now).unwrap();
    }
    assert!(matches!(
        m.insert(tx(25), false, now),
        Err(MempoolError::Full {
            txs: 25,
            max_txs: 25,
            ..
        })
    ));
    assert_eq!(m.len(), 100);
    assert_eq!(m.held_by(&Source::Local).0, 25);
    // Every source ends at its share.
    let held: Vec<usize> = (1..=3).map(|p| m.held_by(&peer(p)).0).collect();
    assert_eq!(held, vec![25, 25, 25]);
    // Full of local transactions only: local ones are never evicted.
    let mut m = pool(3, 1 << 20);
    for i in 0..3 {
        m.insert(tx(i), false, now).unwrap();
    }
    assert!(matches!(
        m.insert(tx(9), false, now),
        Err(MempoolError::Full { .. })
    ));
    // A peer within its quota (1 of 3) cannot evict local transactions either.
    assert!(matches!(
        m.insert_from(peer(1), tx(9), false, now),
        Err(MempoolError::Full { .. })
    ));
    assert_eq!(m.evicted(), 0);
}

/// With `min_shares` = the number of validators, the clients of one node cannot take the
/// shares of the validators whose gossip has not arrived yet, so under overload every pool
/// keeps room for every validator's transactions and every leader proposes them all (issue
/// 10: the overload latency).
#[test]
fn min_shares_reserve_room_for_validators_not_gossiping_yet() {
    let mut m = Mempool::new(MempoolConfig {
        max_txs: 100,
        max_bytes: 1 << 20,
        min_shares: 4,
    });
    let now = Instant::now();
    let local = (0..1000)
        .filter(|i| m.insert(tx(*i), false, now).is_ok())
        .count();
    assert_eq!(local, 25);
    assert!(matches!(
        m.insert(tx(1000), false, now),
        Err(MempoolError::Full { max_txs: 25, .. })
    ));
    // Each validator's gossip then gets its own share, with nothing evicted.
    for p in 1..=3 {
        assert_eq!(flood(&mut m, peer(p), &format!("p{p}"), 1000).0, 25);
    }
    assert_eq!(m.len(), 100);
    assert_eq!(m.evicted(), 0);
    // A fifth source shrinks every share to 20: it evicts the peers back to theirs (local
    // transactions are never evicted, so it gets the 15 they free).
    assert_eq!(flood(&mut m, peer(4), "e", 1000).0, 15);
    assert_eq!(m.evicted(), 15);
}

#[test]
fn eviction_never_drops_in_flight_transactions() {
    let mut m = pool(10, 1 << 20);
    let now = Instant::now();
    assert_eq!(flood(&mut m, peer(1), "a", 10).0, 5);
    let hashes: Vec<_> = (0..5)
        .map(|i| Transaction::put(format!("a{i}"), "v", 0, EXP).hash())
        .collect();
    // A block carries all five; a second peer and local clients fill the rest (quotas are
    // now 10 / 3 = 3, so peer 1 is over its quota, but all its transactions are in flight).
    m.mark_in_flight(Digest([1; 32]), Height(1), hashes.clone());
    assert_eq!(flood(&mut m, peer(2), "b", 10).0, 3);
    for i in 0..2 {
        m.insert(tx(i), false, now).unwrap();
    }
    assert!(matches!(
        m.insert(tx(99), false, now),
        Err(MempoolError::Full { .. })
    ));
    assert_eq!(m.evicted(), 0);
    assert!(hashes.iter().all(|h| m.contains(h)));
    // The block can no longer commit: its transactions are released, and the newest goes.
    m.on_commit(&[], Height(1), &[]);
    m.insert(tx(99), false, now).unwrap();
    assert_eq!(m.evicted(), 1);
    assert!(!m.contains(&hashes[4]));
    assert!(hashes[..4].iter().all(|h| m.contains(h)));
}

#[test]
fn check_agrees_with_insert_and_changes_nothing() {
    // A peer's quota is 2 / (1 + 1) = 1 transaction.
    let mut m = pool(2, 1 << 20);
    let now = Instant::now();
    let t = Transaction::put("x", "v", 0, EXP);
    assert_eq!(m.check(&peer(1), &t.hash(), t.encoded_len()), Ok(()));
    m.insert_from(peer(1), t.clone(), false, now).unwrap();
    assert_eq!(
        m.check(&peer(2), &t.hash(), t.encoded_len()),
        Err(MempoolError::AlreadyPending { hash: t.hash() })
    );
    let u = Transaction::put("y", "v", 0, EXP);
    assert!(matches!(
        m.check(&peer(1), &u.hash(), u.encoded_len()),
        Err(MempoolError::OverQuota { .. })
    ));
    assert_eq!(m.len(), 1);
}

#[test]
fn per_source_bookkeeping_is_dropped_when_a_source_drains() {
    let mut m = pool(100, 1 << 20);
    let now = Instant::now();
    let mut all = Vec::new();
    for p in 1..=20u8 {
        let t = Transaction::put(format!("p{p}"), "v", 0, EXP);
        all.push(m.insert_from(peer(p), t, false, now).unwrap());
    }
    all.push(m.insert(tx(0), false, now).unwrap());
    assert_eq!(m.source_count(), 21);
    m.on_commit(&[Digest([7; 32])], Height(1), &all);
    assert_eq!((m.len(), m.bytes(), m.source_count()), (0, 0, 0));
    assert_eq!(m.held_by(&peer(1)), (0, 0));
}

#[test]
fn proposals_are_filled_round_robin_across_sources() {
    // A peer's 100 queued transactions arrived first; 5 local ones after them. A block with room
    // for 10 carries all 5 local ones (FIFO used to give it 10 of the peer's and none local).
    let mut m = pool(1000, 1 << 20);
    let (ok, _) = flood(&mut m, peer(1), "p", 100);
    assert_eq!(ok, 100);
    let (ok, _) = flood(&mut m, Source::Local, "l", 5);
    assert_eq!(ok, 5);
    let room = PAYLOAD_OVERHEAD + 10 * tx_len("p10");
    let block = m.take(room);
    let local = block
        .iter()
        .filter(|t| matches!(&t.op, node::app::Op::Put { key, .. } if key.starts_with(b"l")))
        .count();
    assert_eq!(block.len(), 10, "{block:?}");
    assert_eq!(local, 5);
    // Within a source, oldest first.
    let peer_keys: Vec<&[u8]> = block
        .iter()
        .filter_map(|t| match &t.op {
            node::app::Op::Put { key, .. } if key.starts_with(b"p") => Some(&key[..]),
            _ => None,
        })
        .collect();
    assert_eq!(peer_keys, [&b"p0"[..], b"p1", b"p2", b"p3", b"p4"]);
}

/// A block's first storing reports each newly carried pending transaction once, with its
/// arrival time and whether it came from a local client; a second stored block carrying it
/// (or the same block again) reports nothing, and neither does a hash the pool does not hold.
#[test]
fn inclusion_reports_arrival_and_source_once() {
    let mut m = pool(100, 1 << 20);
    let (t0, t1) = (
        Instant::now(),
        Instant::now() + std::time::Duration::from_millis(5),
    );
    m.insert(tx(0), false, t0).unwrap();
    m.insert_from(peer(1), tx(1), false, t1).unwrap();
    let hashes = vec![tx(0).hash(), tx(1).hash(), tx(2).hash()];
    let got = m.mark_in_flight(Digest([1; 32]), Height(1), hashes.clone());
    let want = [(t0, true), (t1, false)];
    let got: Vec<_> = got.iter().map(|i| (i.arrived, i.local)).collect();
    assert_eq!(got, want);
    assert!(
        m.mark_in_flight(Digest([1; 32]), Height(1), hashes.clone())
            .is_empty()
    );
    assert!(
        m.mark_in_flight(Digest([2; 32]), Height(1), hashes)
            .is_empty()
    );
}
