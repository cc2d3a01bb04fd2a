//! `genesis.json`: `Genesis::from_json` (serde_json, `deny_unknown_fields`, hex public keys, then
//! `Genesis::validator_set`: empty/duplicate/weak keys, zero or overflowing power), exactly as
//! `Genesis::load` runs it. Also the key file's JSON form (`KeyFile`, node/src/config.rs
//! `load_key`) when the first byte is odd. If a genesis is accepted: value round trip through
//! `serde_json::to_string_pretty` (what `Genesis::save` writes), `entry()` for every index, the
//! set's thresholds and the node's fault policy built from it (`FaultTolerance::new`).
#![no_main]

use bftnode_fuzz::config::{Genesis, KeyFile};
use consensus::ValidatorIndex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    if sel & 1 == 1 {
        // load_key: JSON key file, then the seed must be 64 hex characters.
        if let Ok(kf) = serde_json::from_str::<KeyFile>(text.trim()) {
            if let Ok(bytes) = hex::decode(kf.secret_seed.trim()) {
                if let Ok(seed) = <[u8; 32]>::try_from(bytes) {
                    let key = consensus::PrivateKey::from_seed(seed);
                    let _ = kf
                        .public_key
                        .eq_ignore_ascii_case(&hex::encode(key.public().0));
                }
            }
        }
        return;
    }
    let Ok(g) = Genesis::from_json(text, "fuzz") else {
        return;
    };
    let vs = g.validator_set().expect("from_json validated the set");
    assert_eq!(vs.len(), g.validators.len());
    // What the node computes next from the set at start: thresholds and the fault policy.
    let _ = (
        vs.quorum(),
        vs.weak_threshold(),
        vs.max_excluded(),
        vs.total_power(),
    );
    let _ = fault::FaultTolerance::new(&vs, fault::FaultConfig::default());
    for i in 0..vs.len() {
        assert!(g.entry(&vs, ValidatorIndex(i as u16)).is_some());
    }
    let out = serde_json::to_string_pretty(&g).expect("serialise genesis");
    let back = Genesis::from_json(&out, "fuzz-roundtrip").expect("re-parse of saved genesis");
    assert_eq!(back, g, "genesis JSON value round trip");
});
