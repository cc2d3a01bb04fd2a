//! Unit tests of pool bounds and ordering (signatures are irrelevant here: the pool trusts the
//! core's verification).

use super::*;
use consensus::Signature;

fn e4(who: u16, view: u64) -> Evidence {
    Evidence::ConflictingTimeouts {
        offender: ValidatorIndex(who),
        view: View(view),
        hqc_a: View(0),
        sig_a: Signature([0; 64]),
        hqc_b: View(1),
        sig_b: Signature([0; 64]),
    }
}

fn e2(who: u16, view: u64) -> Evidence {
    Evidence::DoubleProposal {
        offender: ValidatorIndex(who),
        view: View(view),
        block_a: consensus::Digest([1; 32]),
        sig_a: Signature([0; 64]),
        block_b: consensus::Digest([2; 32]),
        sig_b: Signature([0; 64]),
    }
}

fn pool(total: usize, per: usize, expiry: u64) -> EvidencePool {
    let cfg = FaultConfig {
        max_evidence: total,
        max_evidence_per_offender: per,
        evidence_expiry_views: expiry,
        ..FaultConfig::default()
    };
    EvidencePool::new(4, &cfg)
}

#[test]
fn per_offender_cap_then_safety_evicts_e4() {
    let mut p = pool(100, 2, 1000);
    assert!(p.add_pending(&e4(1, 10)));
    assert!(p.add_pending(&e4(1, 11)));
    assert!(!p.add_pending(&e4(1, 12)), "cap reached");
    assert!(p.add_pending(&e4(2, 12)), "other offenders unaffected");
    assert!(p.add_pending(&e2(1, 13)), "safety evicts the oldest E4");
    assert_eq!(p.state(&e4(1, 10).key()), None);
    assert_eq!(p.state(&e4(1, 11).key()), Some(false));
    assert_eq!(p.len(), 3);
}

#[test]
fn total_cap_evicts_committed_first() {
    let mut p = pool(2, 10, 1000);
    assert!(p.add_committed(&e4(0, 1), Height(1)));
    assert!(p.add_pending(&e4(1, 2)));
    assert!(p.add_pending(&e4(2, 3)), "evicts the committed item");
    assert_eq!(p.state(&e4(0, 1).key()), None);
    assert!(!p.add_pending(&e4(3, 4)), "only pending left: refused");
    assert!(
        p.add_committed(&e4(3, 4), Height(2)),
        "committed is always recorded"
    );
    assert_eq!(p.len(), 2);
}

#[test]
fn out_of_range_offender_ignored() {
    let mut p = pool(10, 10, 10);
    assert!(!p.add_pending(&e4(9, 1)));
    assert!(!p.add_committed(&e2(9, 1), Height(1)));
    assert_eq!(p.len(), 0);
}

#[test]
fn expiry_drops_old_pending_only() {
    let mut p = pool(10, 10, 100);
    assert!(p.add_pending(&e4(0, 10)));
    assert!(p.add_pending(&e4(1, 50)));
    assert!(p.add_committed(&e4(2, 5), Height(1)));
    p.expire(View(110));
    assert_eq!(
        p.state(&e4(0, 10).key()),
        Some(false),
        "exactly at the limit kept"
    );
    p.expire(View(111));
    assert_eq!(p.state(&e4(0, 10).key()), None);
    assert_eq!(p.state(&e4(1, 50).key()), Some(false));
    assert_eq!(
        p.state(&e4(2, 5).key()),
        Some(true),
        "committed never expires"
    );
    assert!(p.add_pending(&e4(0, 11)), "room freed for the offender");
}

#[test]
fn for_block_orders_safety_first_then_view() {
    let mut p = pool(10, 10, 1000);
    for e in [e4(0, 1), e2(3, 9), e2(1, 9), e4(2, 0), e2(2, 4)] {
        assert!(p.add_pending(&e));
    }
    let keys: Vec<_> = p.for_block(10).iter().map(|e| e.key()).collect();
    let want: Vec<_> = [e2(2, 4), e2(1, 9), e2(3, 9), e4(2, 0), e4(0, 1)]
        .iter()
        .map(|e| e.key())
        .collect();
    assert_eq!(keys, want);
    assert_eq!(p.for_block(2).len(), 2);
}
