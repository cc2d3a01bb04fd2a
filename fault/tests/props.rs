//! Property tests: `leader(v)` is always a member, never an excluded validator, and at most f are
//! excluded, over random committed histories (PROTOCOL.md §6.3, §7 case 24).

mod common;

use common::*;
use consensus::{FaultPolicy, View};
use fault::{FaultConfig, FaultTolerance};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Step {
    gap: u64,
    proposer: u16,
    voters: u64,
    skipped: Vec<u16>,
    convict: Option<u16>,
}

fn step() -> impl Strategy<Value = Step> {
    (
        1u64..4,
        any::<u16>(),
        any::<u64>(),
        prop::collection::vec(any::<u16>(), 0..4),
        prop::option::weighted(0.05, any::<u16>()),
    )
        .prop_map(|(gap, proposer, voters, skipped, convict)| Step {
            gap,
            proposer,
            voters,
            skipped,
            convict,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn leader_is_member_and_never_excluded(
        n in 1usize..12,
        window in 1u64..40,
        steps in prop::collection::vec(step(), 1..120),
        views in prop::collection::vec(0u64..600, 1..50),
    ) {
        let (vs, keys) = validators(n);
        let cfg = FaultConfig { window: Some(window), ..FaultConfig::default() };
        let mut p = FaultTolerance::new(&vs, cfg.clone());
        let mut q = FaultTolerance::new(&vs, cfg);
        let mut c = Chain::new(&vs);
        let nn = n as u16;
        let mut view = 0;
        for s in &steps {
            view += s.gap;
            let voters: Vec<u16> = (0..nn).filter(|i| s.voters >> (i % 64) & 1 == 1).collect();
            let skipped: Vec<u16> = s.skipped.iter().map(|i| i % nn).collect();
            let ev = s.convict.map(|i| double_vote(&vs, &keys, i % nn, view + 1)).into_iter().collect();
            c.commit(&mut [&mut p, &mut q], view, s.proposer % nn, &voters, &skipped, ev);
        }
        let f = (n - 1) / 3;
        for v in views {
            let l = p.leader(View(v));
            prop_assert!(l.as_usize() < n);
            prop_assert_eq!(l, q.leader(View(v)));
            if let Some(w) = p.leader_weights(View(v)) {
                prop_assert!(w[l.as_usize()] > 0);
                prop_assert!(w.iter().filter(|&&x| x == 0).count() <= f);
            }
        }
    }
}
