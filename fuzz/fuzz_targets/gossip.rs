//! Gossipsub payloads. First input byte: even = topic `bftnode/tx/1` (the driver's
//! `on_tx_gossip`: `consensus::decode::<Vec<Transaction>>`, 1 MiB cap, then mempool insert),
//! odd = topic `bftnode/evidence/1` (`consensus::decode::<Evidence>`, 1 MiB cap, then the core's
//! `EvidenceReceived`). The rest is the message. Canonical round trip asserted for both.
#![no_main]

use bftnode_fuzz::app::Transaction;
use bftnode_fuzz::mempool::{Mempool, MempoolConfig};
use bftnode_fuzz::{MAX_GOSSIP_BYTES, assert_round_trip, fixture, fresh_core};
use consensus::{Event, Evidence};
use libfuzzer_sys::fuzz_target;
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    if sel & 1 == 0 {
        let Ok(txs) = consensus::decode::<Vec<Transaction>>(body, MAX_GOSSIP_BYTES) else {
            return;
        };
        assert_round_trip(&txs, body, "Vec<Transaction>");
        let mut pool = Mempool::new(MempoolConfig {
            max_txs: 64,
            max_bytes: 256 * 1024,
            min_shares: 4,
        });
        let now = Instant::now();
        for tx in txs {
            let enc = tx.encode();
            assert_eq!(
                tx.encoded_len(),
                enc.len(),
                "encoded_len disagrees with encode"
            );
            // A single transaction decodes back (or is refused as invalid, never differently).
            match Transaction::decode(&enc) {
                Ok(back) => assert_eq!(back, tx),
                Err(_) => {
                    assert!(tx.validate().is_err() || enc.len() > bftnode_fuzz::app::MAX_TX_BYTES)
                }
            }
            let _ = pool.insert(tx, false, now);
        }
        let taken = pool.take(64 * 1024);
        let _ = bftnode_fuzz::app::Payload::Transactions(taken).encode();
    } else {
        let Ok(ev) = consensus::decode::<Evidence>(body, MAX_GOSSIP_BYTES) else {
            return;
        };
        assert_round_trip(&ev, body, "Evidence");
        let f = fixture();
        let _ = ev.verify(&f.vs);
        let _ = (ev.offender(), ev.kind(), ev.view(), ev.key(), ev.id());
        let mut core = fresh_core(0);
        let _ = core.handle(1, Event::EvidenceReceived(ev));
    }
});
