//! Evidence pool through the public API, with real signed evidence (PROTOCOL.md §6.2).

mod common;

use common::*;
use consensus::{EvidenceError, EvidenceKind, FaultPolicy, ValidatorIndex};
use fault::{FaultConfig, FaultTolerance, verify};

#[test]
fn every_kind_verifies_and_tampering_fails() {
    let (vs, keys) = validators(4);
    let mut evs = every_kind(&vs, &keys, 1, 9);
    evs.push(lock_violation_timeout(&vs, &keys, 1, 9));
    for e in &evs {
        assert_eq!(verify(e, &vs), Ok(()), "{:?}", e.kind());
    }
    // Same evidence claimed against another validator: signatures do not verify.
    for e in &evs {
        let mut forged = e.clone();
        match &mut forged {
            consensus::Evidence::DoubleVote { offender, .. }
            | consensus::Evidence::DoubleProposal { offender, .. }
            | consensus::Evidence::LockViolation { offender, .. }
            | consensus::Evidence::ConflictingTimeouts { offender, .. } => *offender = idx(2),
            consensus::Evidence::InvalidProposal { .. } => continue,
        }
        assert_eq!(verify(&forged, &vs), Err(EvidenceError::BadSignature));
    }
    let (other, _) = validators(3);
    assert!(verify(&double_vote(&vs, &keys, 3, 4), &other).is_err());
}

#[test]
fn dedupe_by_key_and_counts() {
    let (vs, keys) = validators(4);
    let mut p = policy(&vs);
    let evs = every_kind(&vs, &keys, 1, 9);
    for e in &evs {
        assert!(p.on_evidence(e, 0));
        assert!(!p.on_evidence(e, 1), "exact duplicate");
    }
    // A different double vote with the same (offender, kind, view) is a duplicate too.
    let mut other = double_vote(&vs, &keys, 1, 9);
    if let consensus::Evidence::DoubleVote { a, b, .. } = &mut other {
        std::mem::swap(a, b);
    }
    assert!(!p.on_evidence(&other, 2));
    assert!(
        p.on_evidence(&double_vote(&vs, &keys, 1, 10), 3),
        "other view"
    );
    let counts = p.evidence_counts();
    assert_eq!(
        counts,
        vec![
            (EvidenceKind::DoubleVote, 2),
            (EvidenceKind::DoubleProposal, 1),
            (EvidenceKind::LockViolation, 1),
            (EvidenceKind::ConflictingTimeouts, 1),
            (EvidenceKind::InvalidProposal, 1),
        ]
    );
    // Newest last.
    let known = p.evidence(2);
    assert_eq!(known.len(), 2);
    assert_eq!(known[1].key(), double_vote(&vs, &keys, 1, 10).key());
    assert_eq!(p.evidence(100).len(), 6);
    assert_eq!(p.validator_statuses()[1].evidence, 6);
}

#[test]
fn proven_byzantine_only_for_safety_kinds() {
    let (vs, keys) = validators(4);
    for (i, e) in every_kind(&vs, &keys, 2, 9).into_iter().enumerate() {
        let mut p = policy(&vs);
        assert!(!p.is_proven_byzantine(idx(2)));
        p.on_evidence(&e, 0);
        let want = e.kind() != EvidenceKind::ConflictingTimeouts;
        assert_eq!(p.is_proven_byzantine(idx(2)), want, "kind {i}");
        assert!(!p.is_proven_byzantine(idx(1)));
    }
    // Committed evidence never seen before also proves it.
    let mut p = policy(&vs);
    let mut c = Chain::new(&vs);
    c.commit(
        &mut [&mut p],
        1,
        0,
        &[],
        &[],
        vec![lock_violation(&vs, &keys, 3, 8)],
    );
    assert!(p.is_proven_byzantine(ValidatorIndex(3)));
    assert!(p.validator_statuses()[3].convicted);
}

#[test]
fn pending_vs_committed_and_block_selection() {
    let (vs, keys) = validators(4);
    let mut p = policy(&vs);
    let e4 = conflicting_timeouts(&vs, &keys, 0, 20);
    let e1 = double_vote(&vs, &keys, 1, 30);
    let e2 = double_proposal(&vs, &keys, 2, 10);
    for e in [&e4, &e1, &e2] {
        assert!(p.on_evidence(e, 0));
    }
    let keys_of = |v: Vec<consensus::Evidence>| v.iter().map(|e| e.key()).collect::<Vec<_>>();
    assert_eq!(
        keys_of(p.evidence_for_block(10)),
        vec![e2.key(), e1.key(), e4.key()]
    );
    assert_eq!(keys_of(p.evidence_for_block(1)), vec![e2.key()]);
    let mut c = Chain::new(&vs);
    c.commit(&mut [&mut p], 1, 0, &[], &[], vec![e2.clone()]);
    assert_eq!(keys_of(p.evidence_for_block(10)), vec![e1.key(), e4.key()]);
    assert_eq!(p.evidence_state(e2.key()), Some(true));
    assert_eq!(p.evidence_state(e1.key()), Some(false));
    assert!(
        !p.on_evidence(&e2, 5),
        "committed evidence is still deduped"
    );
}

#[test]
fn caps_and_expiry() {
    let (vs, keys) = validators(4);
    let cfg = FaultConfig {
        max_evidence: 6,
        max_evidence_per_offender: 3,
        evidence_expiry_views: 50,
        ..FaultConfig::default()
    };
    let mut p = FaultTolerance::new(&vs, cfg);
    for v in 10..13 {
        assert!(p.on_evidence(&conflicting_timeouts(&vs, &keys, 1, v), 0));
    }
    assert!(
        !p.on_evidence(&conflicting_timeouts(&vs, &keys, 1, 13), 0),
        "per offender"
    );
    for v in 10..13 {
        assert!(p.on_evidence(&conflicting_timeouts(&vs, &keys, 2, v), 0));
    }
    assert!(
        !p.on_evidence(&double_vote(&vs, &keys, 3, 10), 0),
        "total cap"
    );
    assert!(
        p.on_evidence(&double_vote(&vs, &keys, 1, 14), 0),
        "safety evicts own E4"
    );
    assert_eq!(p.evidence_held(), 6);
    // Commit far ahead: pending items below view 100 − 50 expire.
    let mut c = Chain::new(&vs);
    c.commit(&mut [&mut p], 100, 0, &[], &[], vec![]);
    assert_eq!(p.evidence_held(), 0);
    assert!(p.evidence_for_block(10).is_empty());
    // Lifetime counters survive expiry.
    let total: u64 = p.evidence_counts().iter().map(|(_, c)| c).sum();
    assert_eq!(total, 7);
}

/// Issue 8 finding 2: the core asks `knows_evidence` before verifying gossiped evidence, so it
/// must say yes exactly for held keys (pending or committed), whatever the item's signatures.
#[test]
fn knows_evidence_by_key_before_any_signature() {
    let (vs, keys) = validators(4);
    let mut p = policy(&vs);
    let e = double_vote(&vs, &keys, 1, 9);
    assert!(!p.knows_evidence(e.key()));
    assert!(p.on_evidence(&e, 0));
    assert!(p.knows_evidence(e.key()));
    // Another item under the held key (here with the votes swapped) is known too.
    let mut other = e.clone();
    if let consensus::Evidence::DoubleVote { a, b, .. } = &mut other {
        std::mem::swap(a, b);
    }
    assert!(p.knows_evidence(other.key()));
    assert!(!p.knows_evidence(double_vote(&vs, &keys, 1, 10).key()));
    assert!(!p.knows_evidence(double_vote(&vs, &keys, 2, 9).key()));
    // Restoring a held key is refused before verification; a new valid item is restored.
    assert!(!p.restore_evidence(&other, &vs));
    assert!(p.restore_evidence(&double_vote(&vs, &keys, 1, 10), &vs));
    assert!(p.knows_evidence(double_vote(&vs, &keys, 1, 10).key()));
}
