//! Graduated response: Suspected → Isolated → Rehabilitated, and status fields.

mod common;

use common::*;
use consensus::{FaultPolicy, InvalidReason, ValidatorIndex, ValidatorState, View};
use fault::{FaultConfig, FaultTolerance};

fn states(p: &FaultTolerance) -> Vec<ValidatorState> {
    p.validator_statuses().iter().map(|s| s.state).collect()
}

#[test]
fn failing_leader_is_excluded_then_rehabilitated() {
    use ValidatorState::*;
    let (vs, _) = validators(4);
    let cfg = FaultConfig {
        window: Some(8),
        suspect_window_views: 20,
        clean_window_views: 30,
        ..FaultConfig::default()
    };
    let mut p = FaultTolerance::new(&vs, cfg);
    let mut c = Chain::new(&vs);
    let all = [0u16, 1, 2, 3];
    assert_eq!(states(&p), vec![Active; 4]);

    // Validator 3 misses its views: locally observed first (Suspected) ...
    let mut view = 1u64;
    p.on_view_end(View(view), ValidatorIndex(3), false, 0);
    assert_eq!(states(&p)[3], Active, "one miss is below k = 2");
    view += 1;
    p.on_view_end(View(view), ValidatorIndex(3), false, 0);
    assert_eq!(states(&p)[3], Suspected);
    // ... then committed: blocks keep listing it in skipped_leaders.
    for _ in 0..8 {
        view += 1;
        p.on_view_end(View(view), ValidatorIndex(3), false, 0);
        view += 1;
        c.commit(&mut [&mut p], view, (view % 3) as u16, &all, &[3], vec![]);
        p.on_view_end(View(view), ValidatorIndex(0), true, 0);
    }
    assert_eq!(states(&p)[3], Isolated);
    let s = &p.validator_statuses()[3];
    assert_eq!((s.weight, s.failed, s.convicted), (0, 8, false));
    let last_fault = view - 1;
    // Validator 3 recovers: proposes in the round-robin views and votes; the window slides.
    for _ in 0..8 {
        view += 1;
        c.commit(&mut [&mut p], view, 3, &all, &[], vec![]);
        p.on_view_end(View(view), ValidatorIndex(3), true, 0);
    }
    assert!(p.validator_statuses()[3].weight > 0);
    assert!(view <= last_fault + 30);
    assert_eq!(
        states(&p)[3],
        Suspected,
        "weight back but faults within the clean window"
    );
    while view <= last_fault + 30 {
        view += 1;
        c.commit(&mut [&mut p], view, (view % 4) as u16, &all, &[], vec![]);
    }
    assert_eq!(states(&p)[3], Rehabilitated);
    assert_eq!(states(&p)[..3], [Active, Active, Active]);
}

#[test]
fn invalid_messages_make_suspected_and_count() {
    let (vs, _) = validators(4);
    let mut p = FaultTolerance::new(&vs, FaultConfig::default());
    for k in 0..3 {
        assert_eq!(
            p.validator_statuses()[1].state,
            ValidatorState::Active,
            "{k}"
        );
        p.on_invalid(ValidatorIndex(1), InvalidReason::BadSignature, 10);
    }
    assert_eq!(p.validator_statuses()[1].state, ValidatorState::Suspected);
    assert_eq!(p.validator_statuses()[1].invalid_messages, 3);
    // Out of the suspect window (100 views) it is Active again, the lifetime count stays.
    p.on_view_end(View(200), ValidatorIndex(0), true, 20);
    let s = &p.validator_statuses()[1];
    assert_eq!((s.state, s.invalid_messages), (ValidatorState::Active, 3));
    // Out-of-range senders are ignored.
    p.on_invalid(ValidatorIndex(99), InvalidReason::BadSender, 30);
    assert_eq!(p.validator_statuses().len(), 4);
}

#[test]
fn status_counts_and_evidence() {
    let (vs, keys) = validators(4);
    let mut p = FaultTolerance::new(&vs, FaultConfig::default());
    let mut c = Chain::new(&vs);
    c.commit(&mut [&mut p], 1, 0, &[0, 1, 2], &[], vec![]);
    c.commit(&mut [&mut p], 3, 1, &[0, 1, 3], &[2], vec![]);
    assert!(p.on_evidence(&double_proposal(&vs, &keys, 2, 7), 0));
    let s = p.validator_statuses();
    let got: Vec<_> = s
        .iter()
        .map(|s| (s.proposed, s.failed, s.voted, s.evidence))
        .collect();
    assert_eq!(
        got,
        vec![(1, 0, 2, 0), (1, 0, 2, 0), (0, 1, 1, 1), (0, 0, 1, 0)]
    );
    assert!(!s[2].convicted, "pending evidence does not convict");
    assert!(p.is_proven_byzantine(ValidatorIndex(2)));
}
