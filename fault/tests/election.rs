//! Leader election (PROTOCOL.md §6.3, §7 cases 23–24).

mod common;

use common::*;
use consensus::{FaultPolicy, ValidatorIndex, ValidatorState, View};
use fault::{FaultConfig, FaultTolerance};

fn rr(v: u64, epoch: u64, n: u64) -> ValidatorIndex {
    ValidatorIndex(((v + epoch) % n) as u16)
}

#[test]
fn no_history_is_round_robin() {
    let (vs, _) = validators_epoch(4, 3);
    let mut p = policy(&vs);
    for v in 0..200 {
        assert_eq!(p.leader(View(v)), rr(v, 3, 4));
    }
    // Genesis alone is no cut either.
    let chain = Chain::new(&vs);
    let (g, id) = chain.blocks[0].clone();
    p.on_commit(&g, id);
    for v in 0..200 {
        assert_eq!(p.leader(View(v)), rr(v, 3, 4));
        assert!(p.leader_weights(View(v)).is_none());
    }
}

#[test]
fn cut_needs_a_block_at_or_below_v_minus_x() {
    let (vs, _) = validators(4);
    let mut p = policy(&vs);
    let mut c = Chain::new(&vs);
    c.healthy(&mut [&mut p], 5, 10); // views 5..=14
    assert!(
        p.leader_weights(View(24)).is_none(),
        "24 - 20 = 4 < 5: no cut"
    );
    assert!(
        p.leader_weights(View(25)).is_some(),
        "25 - 20 = 5: cut at view 5"
    );
    assert!(
        p.leader_weights(View(30)).is_some(),
        "an R-th view rotates over the cut's eligible validators"
    );
    assert_eq!(
        p.leader(View(30)),
        rr(30, 0, 4),
        "everyone eligible: plain rotation"
    );
}

#[test]
fn round_robin_on_every_r_th_view_and_on_stall() {
    let (vs, _) = validators(7);
    let mut p = policy(&vs);
    let mut c = Chain::new(&vs);
    c.healthy(&mut [&mut p], 1, 100); // latest commit view 100
    for v in (30..300).step_by(10) {
        assert_eq!(p.leader(View(v)), rr(v, 0, 7), "R-th view {v}");
    }
    assert!(
        p.leader_weights(View(299)).is_some(),
        "100 + 200 ≥ 299: not a stall"
    );
    assert!(
        p.leader_weights(View(300)).is_some(),
        "100 + 200 = 300: not yet a stall"
    );
    for v in 301..400 {
        assert!(p.leader_weights(View(v)).is_none(), "stall at {v}");
        assert_eq!(p.leader(View(v)), rr(v, 0, 7));
    }
}

#[test]
fn deterministic_across_instances_for_10000_views() {
    let (vs, _) = validators(10);
    let mut a = policy(&vs);
    let mut b = policy(&vs);
    let mut c = Chain::new(&vs);
    let mut view = 1u64;
    for h in 0..3000u64 {
        // Every 7th block follows a failed view of the would-be proposer 3.
        let skipped: &[u16] = if h % 7 == 0 { &[3] } else { &[] };
        if h % 7 == 0 {
            view += 1;
        }
        let voters: Vec<u16> = (0..10)
            .filter(|i| !(h + *i as u64).is_multiple_of(5))
            .collect();
        c.commit(
            &mut [&mut a, &mut b],
            view,
            (h % 10) as u16,
            &voters,
            skipped,
            vec![],
        );
        view += 1;
    }
    let mut seen = [0u32; 10];
    let base = view.saturating_sub(5000);
    for v in base..base + 10_000 {
        let l = a.leader(View(v));
        assert_eq!(l, b.leader(View(v)), "view {v}");
        seen[l.as_usize()] += 1;
    }
    assert!(seen.iter().filter(|&&s| s > 0).count() >= 9, "{seen:?}");
}

#[test]
fn never_more_than_f_excluded_even_if_all_misbehave() {
    for n in [1usize, 2, 4, 7, 10, 31, 100] {
        let (vs, keys) = validators(n);
        let f = (n - 1) / 3;
        let mut p = policy(&vs);
        let mut c = Chain::new(&vs);
        let all: Vec<u16> = (0..n as u16).collect();
        let ev: Vec<_> = (0..n.min(32) as u16)
            .map(|i| double_vote(&vs, &keys, i, 5))
            .collect();
        c.commit(&mut [&mut p], 1, 0, &[], &all, ev);
        for v in 2..60u64 {
            c.commit(&mut [&mut p], v, (v % n as u64) as u16, &[], &all, vec![]);
        }
        let w = p.leader_weights(View(79)).unwrap();
        assert_eq!(w.iter().filter(|&&x| x == 0).count(), f, "n = {n}");
        let zero = p
            .validator_statuses()
            .iter()
            .filter(|s| s.weight == 0)
            .count();
        assert_eq!(zero, f, "n = {n}");
        for v in 21..200 {
            let l = p.leader(View(v));
            assert!(l.as_usize() < n);
            if let Some(w) = p.leader_weights(View(v)) {
                assert!(w[l.as_usize()] > 0);
            }
        }
    }
}

#[test]
fn committed_evidence_zeroes_weight_from_the_next_cut() {
    let (vs, keys) = validators(4);
    let mut p = policy(&vs);
    let mut c = Chain::new(&vs);
    c.healthy(&mut [&mut p], 1, 40);
    // Pending evidence changes nothing in the election, but proves byzantine at once.
    let ev = double_vote(&vs, &keys, 2, 30);
    assert!(p.on_evidence(&ev, 0));
    assert!(p.is_proven_byzantine(ValidatorIndex(2)));
    assert_eq!(p.leader_weights(View(61)).unwrap()[2], 100);
    // Committed in the block of view 41.
    c.commit(&mut [&mut p], 41, 1, &[0, 1, 2, 3], &[], vec![ev.clone()]);
    assert_eq!(p.evidence_state(ev.key()), Some(true));
    assert!(p.evidence_for_block(10).is_empty(), "no longer pending");
    c.healthy(&mut [&mut p], 42, 40);
    assert_eq!(
        p.leader_weights(View(59)).unwrap()[2],
        100,
        "cut at view 39"
    );
    // v − X = 41: the committing block is the cut, so its evidence counts.
    assert_eq!(p.leader_weights(View(61)).unwrap()[2], 0, "cut at view 41");
    assert_eq!(p.leader_weights(View(69)).unwrap()[2], 0, "cut at view 49");
    let s = &p.validator_statuses()[2];
    assert!(s.convicted);
    assert_eq!(s.state, ValidatorState::Isolated);
    for v in 62..2000 {
        if p.leader_weights(View(v)).is_some() {
            assert_ne!(p.leader(View(v)), ValidatorIndex(2), "view {v}");
        }
    }
}

#[test]
fn e4_lowers_reputation_but_does_not_convict() {
    let (vs, keys) = validators(4);
    let mut p = FaultTolerance::new(
        &vs,
        FaultConfig {
            window: Some(4),
            ..FaultConfig::default()
        },
    );
    let mut c = Chain::new(&vs);
    let evs = vec![
        conflicting_timeouts(&vs, &keys, 1, 5),
        conflicting_timeouts(&vs, &keys, 1, 6),
    ];
    c.commit(&mut [&mut p], 1, 0, &[0, 1, 2, 3], &[], evs);
    c.commit(&mut [&mut p], 2, 1, &[0, 1, 2, 3], &[], vec![]);
    assert!(!p.is_proven_byzantine(ValidatorIndex(1)));
    let s = &p.validator_statuses()[1];
    assert_eq!(
        (s.failed, s.proposed, s.convicted, s.weight),
        (2, 1, false, 0)
    );
}

#[test]
fn cached_and_on_demand_cuts_agree() {
    let (vs, keys) = validators(7);
    let mut cached = policy(&vs);
    let mut lean = FaultTolerance::new(
        &vs,
        FaultConfig {
            cached_cuts: 1,
            ..test_config(7)
        },
    );
    let mut c = Chain::new(&vs);
    let mut view = 0;
    for h in 0..400u64 {
        view += 1 + h % 3;
        let skipped: Vec<u16> = (0..(h % 3) as u16).map(|k| (h as u16 + k) % 7).collect();
        let ev = if h == 150 {
            vec![double_vote(&vs, &keys, 4, 3)]
        } else {
            vec![]
        };
        c.commit(
            &mut [&mut cached, &mut lean],
            view,
            (h % 7) as u16,
            &[0, 2, 4, 6],
            &skipped,
            ev,
        );
    }
    for v in 0..view + 300 {
        assert_eq!(cached.leader(View(v)), lean.leader(View(v)), "view {v}");
        assert_eq!(cached.leader_weights(View(v)), lean.leader_weights(View(v)));
    }
}

#[test]
fn duplicate_or_stale_commits_are_ignored() {
    let (vs, _) = validators(4);
    let mut p = policy(&vs);
    let mut q = policy(&vs);
    let mut c = Chain::new(&vs);
    c.healthy(&mut [&mut p, &mut q], 1, 30);
    let (b, id) = c.blocks[10].clone();
    p.on_commit(&b, id);
    for v in 0..100 {
        assert_eq!(p.leader(View(v)), q.leader(View(v)));
    }
    assert_eq!(p.validator_statuses(), q.validator_statuses());
}

/// Issue 6: a validator that crashes stops leading from the first view whose cut holds the block
/// recording its failed slot — on R-th (rotation) views too — with the default parameters. Once
/// that block leaves the window it stays out as long as it is silent (no vote, no proposal),
/// so a dead validator costs no probe timeouts; when it comes back its votes bring it back.
#[test]
fn crashed_leader_is_excluded_within_the_lag_and_back_when_it_votes_again() {
    let (vs, _) = validators(4);
    let cfg = FaultConfig::default();
    let lag = cfg.exclusion_lag;
    let w = cfg.window_for(4);
    let mut p = FaultTolerance::new(&vs, cfg);
    let mut c = Chain::new(&vs);
    let live = [0u16, 1, 3];
    c.healthy(&mut [&mut p], 1, 100); // views 1..=100, validator 2 proposed a quarter
    // Validator 2 crashes; the block of view 102 records its failed slot of view 101.
    c.commit(&mut [&mut p], 102, 3, &live, &[2], Vec::new());
    let failed_at = 102;
    // Every later view: a live proposer, nobody skipped, until the failure left the window.
    let mut v = 103;
    while c.height < 102 + w {
        c.commit(
            &mut [&mut p],
            v,
            live[(v % 3) as usize],
            &live,
            &[],
            Vec::new(),
        );
        if v == failed_at + 200 {
            for u in failed_at + lag..v {
                assert_ne!(
                    p.leader(View(u)),
                    ValidatorIndex(2),
                    "view {u} drew the dead"
                );
            }
            assert_eq!(p.validator_statuses()[2].weight, 0);
        }
        v += 1;
    }
    let weights = p.leader_weights(View(v + lag)).expect("cut");
    assert_eq!(weights[2], 0, "still silent after the window: {weights:?}");
    // It restarts and votes again: back in once a block carrying its vote is in the cut.
    c.commit(&mut [&mut p], v, 0, &[0, 1, 2, 3], &[], Vec::new());
    let weights = p.leader_weights(View(v + lag)).expect("cut");
    assert_eq!(
        weights[2],
        fault::ACTIVE_WEIGHT,
        "voting again: {weights:?}"
    );
}
