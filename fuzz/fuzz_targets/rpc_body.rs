//! The RPC server's inputs parsed by our code (node/src/rpc.rs). First input byte (mod 3):
//! 0 `POST /tx` body (`serde_json::from_slice::<TxRequest>` then `TxRequest::into_transaction`: build + validate),
//! 1 `POST /txs` body (`BatchRequest`, batch cap, `into_transaction` per item), 2 path parameters
//! (`/blocks/{height}`: `u64` parse; `/tx/{hash}`: `Digest::from_hex`; `/kv/{key}`: raw bytes).
//! JSON is not a canonical format, so the round trip checked is value-level:
//! `from_slice(to_vec(v)) == v`; transactions built from a request round-trip through borsh.
#![no_main]

use bftnode_fuzz::app::{DEFAULT_TX_LIFETIME, Transaction};
use bftnode_fuzz::rpc_types::{BatchRequest, MAX_BATCH_TXS, TxRequest};
use consensus::{Digest, Height};
use libfuzzer_sys::fuzz_target;

/// The committed height the node would pass (any: the expiry check is the mempool's).
const COMMITTED: Height = Height(1_000);

fn check_tx(req: TxRequest) {
    let back: TxRequest = serde_json::from_slice(&serde_json::to_vec(&req).unwrap()).unwrap();
    assert_eq!(back, req, "TxRequest JSON value round trip");
    let named = match &req {
        TxRequest::Put { expires_at, .. } | TxRequest::Delete { expires_at, .. } => *expires_at,
    };
    if let Ok(tx) = req.into_transaction(COMMITTED) {
        let expected = named.unwrap_or(COMMITTED.0 + DEFAULT_TX_LIFETIME);
        assert_eq!(tx.expires_at, Height(expected), "the expiry asked for, or the default");
        let enc = tx.encode();
        assert_eq!(Transaction::decode(&enc).as_ref(), Ok(&tx));
        let _ = tx.hash().to_hex();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    match sel % 3 {
        0 => {
            if let Ok(req) = serde_json::from_slice::<TxRequest>(body) {
                check_tx(req);
            }
        }
        1 => {
            if let Ok(req) = serde_json::from_slice::<BatchRequest>(body) {
                let back: BatchRequest =
                    serde_json::from_slice(&serde_json::to_vec(&req).unwrap()).unwrap();
                assert_eq!(back, req, "BatchRequest JSON value round trip");
                if req.txs.len() > MAX_BATCH_TXS {
                    return;
                }
                for r in req.txs {
                    check_tx(r);
                }
            }
        }
        _ => {
            // axum hands the handlers percent-decoded UTF-8 path segments.
            let Ok(s) = std::str::from_utf8(body) else {
                return;
            };
            if let Ok(h) = s.parse::<u64>() {
                assert_eq!(h.to_string().parse::<u64>(), Ok(h));
            }
            if let Some(d) = Digest::from_hex(s) {
                assert!(d.to_hex().eq_ignore_ascii_case(s), "digest hex round trip");
                assert_eq!(Digest::from_hex(&d.to_hex()), Some(d));
            }
            let _ = s.as_bytes();
        }
    }
});
