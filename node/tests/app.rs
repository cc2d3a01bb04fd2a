//! The key-value application: encoding, payloads and deterministic block application.

use consensus::{Block, Digest, Domain, Epoch, Height};
use node::app::{self, AppWrite, MAX_KEY_BYTES, Op, Payload, Transaction, TxError};
use std::collections::HashSet;

/// An expiry admissible at every height these tests reach.
const EXP: Height = Height(100);

fn block_with(payload: Vec<u8>) -> Block {
    let mut b = Block::genesis(&Domain::new("t", Epoch(0)));
    b.height = Height(5);
    b.payload = payload;
    b
}

#[test]
fn encoding_round_trips_and_sizes_match() {
    let txs = [
        Transaction::put("k", "v", 1, EXP),
        Transaction::put(vec![1u8; 300], vec![2u8; 5000], u64::MAX, EXP),
        Transaction::delete("gone", 7, EXP),
    ];
    for tx in &txs {
        let bytes = tx.encode();
        assert_eq!(bytes.len(), tx.encoded_len());
        assert_eq!(&Transaction::decode(&bytes).unwrap(), tx);
        assert_eq!(tx.hash(), Digest(*blake3::hash(&bytes).as_bytes()));
    }
    let p = Payload::Transactions(txs.to_vec());
    let enc = p.encode();
    assert_eq!(
        enc,
        consensus::encode(&p),
        "hand-rolled encoding is borsh's"
    );
    assert_eq!(
        enc.len(),
        app::PAYLOAD_OVERHEAD + txs.iter().map(Transaction::encoded_len).sum::<usize>()
    );
    assert_eq!(Payload::decode(&enc, 1 << 20).unwrap(), p);
    assert!(Payload::decode(&enc, 10).is_err(), "size bound enforced");
    // Empty payload <-> empty bytes.
    assert!(Payload::Transactions(vec![]).encode().is_empty());
    assert_eq!(Payload::decode(&[], 10).unwrap().transactions().len(), 0);
}

#[test]
fn decoding_garbage_never_panics() {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for len in 0..200 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = Transaction::decode(&bytes);
        let _ = Payload::decode(&bytes, 1 << 20);
        let _ = app::summarize(&bytes, 1 << 20);
    }
}

#[test]
fn validation() {
    assert_eq!(
        Transaction::put("", "v", 0, EXP).validate(),
        Err(TxError::EmptyKey)
    );
    assert!(matches!(
        Transaction::delete(vec![0u8; MAX_KEY_BYTES + 1], 0, EXP).validate(),
        Err(TxError::KeyTooLong { .. })
    ));
    assert!(matches!(
        Transaction::put("k", vec![0u8; app::MAX_VALUE_BYTES + 1], 0, EXP).validate(),
        Err(TxError::ValueTooLong { .. })
    ));
}

#[test]
fn apply_in_order_with_index() {
    let txs = vec![
        Transaction::put("a", "1", 0, EXP),
        Transaction::put("b", "2", 0, EXP),
        Transaction::delete("a", 1, EXP),
    ];
    let b = block_with(Payload::Transactions(txs.clone()).encode());
    let id = Digest([9; 32]);
    let r = app::apply_block(&b, id, 1 << 20, |_, _| false);
    assert!(!r.invalid_payload);
    assert_eq!(r.skipped.len(), 0);
    assert_eq!(
        r.applied,
        txs.iter().map(Transaction::hash).collect::<Vec<_>>()
    );
    assert_eq!(
        r.writes[0],
        AppWrite::Put {
            key: b"a".to_vec(),
            value: b"1".to_vec()
        }
    );
    assert_eq!(
        r.writes[1],
        AppWrite::IndexTx {
            hash: txs[0].hash(),
            expires_at: EXP,
            height: Height(5),
            block_id: id,
            index: 0
        }
    );
    assert_eq!(r.writes[4], AppWrite::Delete { key: b"a".to_vec() });
    // Deterministic.
    assert_eq!(r, app::apply_block(&b, id, 1 << 20, |_, _| false));
}

#[test]
fn invalid_and_replayed_txs_are_skipped() {
    let good = Transaction::put("k", "v", 1, EXP);
    let committed = Transaction::put("old", "v", 1, EXP);
    let bad = Transaction {
        op: Op::Put {
            key: vec![],
            value: vec![],
        },
        nonce: 0,
        expires_at: EXP,
    };
    let b = block_with(
        Payload::Transactions(vec![good.clone(), bad, committed.clone(), good.clone()]).encode(),
    );
    let done: HashSet<_> = [committed.hash()].into_iter().collect();
    let r = app::apply_block(&b, Digest([1; 32]), 1 << 20, |_, h| done.contains(h));
    assert_eq!(r.applied, vec![good.hash()]);
    assert_eq!(r.skipped.len(), 3);
}

/// The replay guard's window (module docs of `node::app`): a transaction commits at height h
/// only if h ≤ expires_at ≤ h + TX_VALIDITY_WINDOW; outside it, it is skipped, and the replay
/// check is asked only about transactions inside it.
#[test]
fn transactions_commit_only_within_their_expiry_window() {
    let w = app::TX_VALIDITY_WINDOW;
    let at = |e: u64| Transaction::put("k", "v", e, Height(e));
    // `block_with` builds height 5.
    let (expired, last, farthest, too_far) = (at(4), at(5), at(5 + w), at(6 + w));
    assert!(matches!(
        expired.check_expiry(Height(5)),
        Err(TxError::Expired {
            expires_at: 4,
            height: 5
        })
    ));
    assert!(matches!(
        too_far.check_expiry(Height(5)),
        Err(TxError::ExpiryTooFar { .. })
    ));
    assert!(last.check_expiry(Height(5)).is_ok() && farthest.check_expiry(Height(5)).is_ok());
    let b = block_with(
        Payload::Transactions(vec![expired, last.clone(), farthest.clone(), too_far]).encode(),
    );
    let mut asked = Vec::new();
    let r = app::apply_block(&b, Digest([1; 32]), 1 << 20, |e, h| {
        asked.push((e, *h));
        false
    });
    assert_eq!(r.applied, vec![last.hash(), farthest.hash()]);
    assert_eq!(r.skipped.len(), 2);
    assert_eq!(
        asked,
        vec![(Height(5), last.hash()), (Height(5 + w), farthest.hash())]
    );
    // Each applied transaction is indexed with its expiry, for the replay guard.
    assert!(r.writes.contains(&AppWrite::IndexTx {
        hash: farthest.hash(),
        expires_at: Height(5 + w),
        height: Height(5),
        block_id: Digest([1; 32]),
        index: 2,
    }));
}

#[test]
fn idempotent_when_everything_is_committed() {
    let txs = vec![
        Transaction::put("a", "1", 0, EXP),
        Transaction::put("b", "2", 0, EXP),
    ];
    let b = block_with(Payload::Transactions(txs).encode());
    let first = app::apply_block(&b, Digest([1; 32]), 1 << 20, |_, _| false);
    let applied: HashSet<_> = first.applied.iter().copied().collect();
    let again = app::apply_block(&b, Digest([1; 32]), 1 << 20, |_, h| applied.contains(h));
    assert!(again.writes.is_empty());
    assert_eq!(again.skipped.len(), 2);
}

#[test]
fn undecodable_payload_is_skipped_whole() {
    let b = block_with(vec![7, 1, 2, 3]);
    let r = app::apply_block(&b, Digest([1; 32]), 1 << 20, |_, _| false);
    assert!(r.invalid_payload);
    assert!(r.writes.is_empty());
    assert!(app::summarize(&b.payload, 1 << 20).invalid);
}

/// `DecodedPayload::decode` hashes each transaction over the bytes it came from instead of
/// encoding it again: it must agree with `Payload::decode` + `Transaction::hash` on every
/// input — the payload, every truncation of it, every one-byte corruption, and trailing bytes.
#[test]
fn decoding_with_hashes_agrees_with_decode_then_hash() {
    let txs = vec![
        Transaction::put("k", "v", 1, EXP),
        Transaction::delete("gone", 7, EXP),
        Transaction::put(vec![1u8; 40], vec![2u8; 300], u64::MAX, EXP),
    ];
    let enc = Payload::Transactions(txs).encode();
    let mut inputs = vec![enc.clone(), Vec::new()];
    inputs.extend((0..enc.len()).map(|n| enc[..n].to_vec()));
    for i in 0..enc.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = enc.clone();
            b[i] ^= flip;
            inputs.push(b);
        }
    }
    let mut trailing = enc.clone();
    trailing.push(0);
    inputs.push(trailing);
    let mut valid = 0;
    for bytes in &inputs {
        let d = app::DecodedPayload::decode(bytes, 1 << 20);
        match Payload::decode(bytes, 1 << 20) {
            Ok(p) => {
                valid += 1;
                assert!(!d.invalid, "{bytes:?}");
                assert_eq!(d.txs, p.transactions());
                let hashes: Vec<_> = p.transactions().iter().map(Transaction::hash).collect();
                assert_eq!(d.hashes, hashes);
            }
            Err(_) => assert!(
                d.invalid && d.txs.is_empty() && d.hashes.is_empty(),
                "{bytes:?}"
            ),
        }
    }
    assert!(valid > 2, "some corruptions still decode (values, nonces)");
    assert!(
        app::DecodedPayload::decode(&enc, enc.len() - 1).invalid,
        "size bound enforced"
    );
}
