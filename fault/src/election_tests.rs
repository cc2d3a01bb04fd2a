//! Step-table unit tests of the weight rule and exclusion order (PROTOCOL.md §6.3).

use super::*;

/// (failed, proposed, voted, convicted) per validator → expected weights, with `max_excluded`.
struct Case {
    name: &'static str,
    rows: &'static [(u64, u64, u64, bool)],
    max_excluded: usize,
    expect: &'static [u64],
}

const CASES: &[Case] = &[
    Case {
        name: "no history: everyone idle",
        rows: &[(0, 0, 0, false); 4],
        max_excluded: 1,
        expect: &[10, 10, 10, 10],
    },
    Case {
        name: "active vs idle",
        rows: &[
            (0, 1, 0, false),
            (0, 0, 1, false),
            (0, 0, 0, false),
            (0, 2, 3, false),
        ],
        max_excluded: 1,
        expect: &[100, 100, 10, 100],
    },
    Case {
        name: "exactly at theta is kept (30 of 100 = 30%)",
        rows: &[
            (3, 7, 0, false),
            (0, 1, 1, false),
            (0, 1, 1, false),
            (0, 1, 1, false),
        ],
        max_excluded: 1,
        expect: &[100, 100, 100, 100],
    },
    Case {
        name: "just above theta is excluded (4 of 10)",
        rows: &[
            (4, 6, 0, false),
            (0, 1, 1, false),
            (0, 1, 1, false),
            (0, 1, 1, false),
        ],
        max_excluded: 1,
        expect: &[0, 100, 100, 100],
    },
    Case {
        name: "failed only, never proposed or voted: excluded",
        rows: &[
            (0, 1, 1, false),
            (1, 0, 0, false),
            (0, 1, 1, false),
            (0, 1, 1, false),
        ],
        max_excluded: 1,
        expect: &[100, 0, 100, 100],
    },
    Case {
        name: "worst ratio first (2/3 beats 1/2), cap 1",
        rows: &[
            (1, 1, 0, false),
            (2, 1, 0, false),
            (0, 1, 1, false),
            (0, 1, 1, false),
        ],
        max_excluded: 1,
        expect: &[100, 0, 100, 100],
    },
    Case {
        name: "equal ratio: lower index first",
        rows: &[
            (0, 1, 1, false),
            (2, 2, 0, false),
            (1, 1, 0, false),
            (0, 1, 1, false),
        ],
        max_excluded: 1,
        expect: &[100, 0, 100, 100],
    },
    Case {
        name: "convicted before any ratio",
        rows: &[
            (5, 0, 0, false),
            (0, 3, 3, true),
            (0, 1, 1, false),
            (0, 1, 1, false),
        ],
        max_excluded: 1,
        expect: &[10, 0, 100, 100],
    },
    Case {
        name: "everyone bad, n = 7, cap f = 2",
        rows: &[
            (1, 0, 0, true),
            (9, 1, 0, false),
            (5, 5, 0, false),
            (3, 0, 0, false),
            (1, 0, 0, true),
            (8, 2, 0, false),
            (4, 0, 0, false),
        ],
        max_excluded: 2,
        expect: &[0, 100, 100, 10, 0, 100, 10],
    },
    Case {
        name: "n = 1, f = 0: nobody excluded",
        rows: &[(9, 0, 0, true)],
        max_excluded: 0,
        expect: &[10],
    },
];

#[test]
fn weight_step_table() {
    for c in CASES {
        let n = c.rows.len();
        let counts = Counts {
            failed: c.rows.iter().map(|r| r.0).collect(),
            proposed: c.rows.iter().map(|r| r.1).collect(),
            voted: c.rows.iter().map(|r| r.2).collect(),
            ..Counts::new(n)
        };
        let convicted: Vec<bool> = c.rows.iter().map(|r| r.3).collect();
        let t = WeightTable::build(&counts, (1, 0), &convicted, 30, c.max_excluded);
        assert_eq!(t.weights, c.expect, "{}", c.name);
        assert_eq!(t.total(), c.expect.iter().sum::<u64>(), "{}", c.name);
    }
}

#[test]
fn pick_is_first_cumulative_above_r() {
    let counts = Counts {
        failed: vec![0, 1, 0],
        proposed: vec![1, 0, 0],
        voted: vec![0, 0, 0],
        ..Counts::new(3)
    };
    // weights [100, 0 (excluded? f would be 0 for n=3) ...]: use max_excluded 1.
    let t = WeightTable::build(&counts, (1, 0), &[false; 3], 30, 1);
    assert_eq!(t.weights, vec![100, 0, 10]);
    for (r, want) in [(0, 0), (99, 0), (100, 2), (109, 2)] {
        assert_eq!(t.pick(r), want, "r = {r}");
    }
}

#[test]
fn ratio_comparison_is_exact() {
    assert_eq!(compare_ratios(1, 3, 2, 6), Ordering::Equal);
    assert_eq!(compare_ratios(2, 3, 1, 2), Ordering::Greater);
    assert_eq!(
        compare_ratios(u64::MAX, u64::MAX, u64::MAX - 1, u64::MAX),
        Ordering::Greater
    );
}

/// (last_failed, last_proposed) heights per validator, window start height → weights.
struct SlotCase {
    name: &'static str,
    slots: &'static [(u64, u64)],
    window_start: u64,
    max_excluded: usize,
    expect: &'static [u64],
}

const SLOT_CASES: &[SlotCase] = &[
    SlotCase {
        name: "last slot failed after earlier proposals: excluded at once",
        slots: &[(0, 9), (10, 8), (0, 7), (0, 6)],
        window_start: 1,
        max_excluded: 1,
        expect: &[100, 0, 100, 100],
    },
    SlotCase {
        name: "failed, then proposed again: back in",
        slots: &[(0, 9), (5, 8), (0, 7), (0, 6)],
        window_start: 1,
        max_excluded: 1,
        expect: &[100, 100, 100, 100],
    },
    SlotCase {
        name: "failure and proposal in one block (it led two views in a row): alive",
        slots: &[(0, 9), (8, 8), (0, 7), (0, 6)],
        window_start: 1,
        max_excluded: 1,
        expect: &[100, 100, 100, 100],
    },
    SlotCase {
        name: "the failure left the window: probation over",
        slots: &[(0, 9), (3, 2), (0, 7), (0, 6)],
        window_start: 4,
        max_excluded: 1,
        expect: &[100, 100, 100, 100],
    },
    SlotCase {
        name: "two failed slots, cap f = 1: the lower index stays in",
        slots: &[(0, 9), (10, 2), (11, 3), (0, 6)],
        window_start: 1,
        max_excluded: 1,
        expect: &[100, 0, 100, 100],
    },
];

#[test]
fn last_slot_failed_step_table() {
    for c in SLOT_CASES {
        let n = c.slots.len();
        let counts = Counts {
            // One proposal and one vote each: no ratio exclusion, everyone active.
            proposed: vec![1; n],
            voted: vec![1; n],
            last_failed: c.slots.iter().map(|s| s.0).collect(),
            last_proposed: c.slots.iter().map(|s| s.1).collect(),
            ..Counts::new(n)
        };
        let t = WeightTable::build(
            &counts,
            (c.window_start, 0),
            &vec![false; n],
            30,
            c.max_excluded,
        );
        assert_eq!(t.weights, c.expect, "{}", c.name);
    }
}

#[test]
fn rotation_skips_excluded_validators() {
    let counts = Counts {
        proposed: vec![1; 4],
        voted: vec![1; 4],
        last_failed: vec![0, 5, 0, 0],
        last_proposed: vec![1, 1, 1, 1],
        ..Counts::new(4)
    };
    let t = WeightTable::build(&counts, (1, 0), &[false; 4], 30, 1);
    let drawn: Vec<Option<usize>> = (0..6).map(|k| t.rotate(k)).collect();
    assert_eq!(
        drawn,
        vec![Some(0), Some(2), Some(3), Some(0), Some(2), Some(3)]
    );
}

#[test]
fn silent_validators_are_excluded_once_the_window_holds_n_blocks() {
    // Validator 2 never proposed nor voted (crashed before its first slot); 0, 1, 3 are active.
    let counts = Counts {
        proposed: vec![1, 1, 0, 1],
        voted: vec![3, 3, 0, 3],
        ..Counts::new(4)
    };
    let short = WeightTable::build(&counts, (1, 3), &[false; 4], 30, 1);
    assert_eq!(
        short.weights,
        vec![100, 100, 10, 100],
        "3 < n blocks: idle, not silent"
    );
    let full = WeightTable::build(&counts, (1, 4), &[false; 4], 30, 1);
    assert_eq!(
        full.weights,
        vec![100, 100, 0, 100],
        "n blocks: silent, excluded"
    );
    // A failing validator takes the one exclusion slot before a silent one.
    let counts = Counts {
        failed: vec![0, 2, 0, 0],
        last_failed: vec![0, 4, 0, 0],
        last_proposed: vec![1, 2, 0, 3],
        ..counts
    };
    let t = WeightTable::build(&counts, (1, 4), &[false; 4], 30, 1);
    assert_eq!(t.weights, vec![100, 0, 10, 100]);
}
