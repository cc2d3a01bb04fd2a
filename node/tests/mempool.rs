//! Mempool limits, dedupe, FIFO proposals and in-flight tracking.

use consensus::{Digest, Height};
use node::app::{PAYLOAD_OVERHEAD, Transaction};
use node::mempool::{Mempool, MempoolConfig, MempoolError};
use std::time::Instant;

fn pool(max_txs: usize, max_bytes: usize) -> Mempool {
    Mempool::new(MempoolConfig { max_txs, max_bytes })
}

fn tx(i: u64) -> Transaction {
    Transaction::put(format!("key{i}"), "value", i)
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
        m.insert(Transaction::put("", "", 0), false, now),
        Err(MempoolError::Invalid(_))
    ));
    assert_eq!(m.len(), 1);
}

#[test]
fn take_is_fifo_and_bounded() {
    let mut m = pool(100, 1 << 20);
    let now = Instant::now();
    for i in 0..10 {
        m.insert(tx(i), false, now).unwrap();
    }
    let size = tx(0).encoded_len();
    let got = m.take(PAYLOAD_OVERHEAD + 3 * size);
    assert_eq!(got, vec![tx(0), tx(1), tx(2)]);
    assert!(m.take(PAYLOAD_OVERHEAD).is_empty());
    // take does not remove.
    assert_eq!(m.len(), 10);
}

#[test]
fn in_flight_txs_are_not_repeated_and_are_released() {
    let mut m = pool(100, 1 << 20);
    let now = Instant::now();
    for i in 0..4 {
        m.insert(tx(i), false, now).unwrap();
    }
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
