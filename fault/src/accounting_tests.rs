//! Unit and property tests of the accountability rule (PROTOCOL.md §6.6): threshold edges as a
//! named-case table, the graduated response as a step table, determinism and restart
//! exactness as properties.

use super::*;
use consensus::{Bitmap, Digest, Evidence, QuorumCert, Signature, VoteData};
use proptest::prelude::*;

const N: usize = 4;

fn cfg(window: u64, threshold: u64) -> FaultConfig {
    FaultConfig {
        downtime_window: window,
        downtime_threshold_pct: threshold,
        isolation_strikes: 3,
        rehabilitation_windows: 2,
        ..FaultConfig::default()
    }
}

/// Block `h` (view `h`) proposed by `proposer`, whose justify is signed by `signers`.
fn block(h: u64, proposer: u16, signers: &[u16], evidence: Vec<Evidence>) -> Block {
    let mut bm = Bitmap::new(N);
    for &s in signers {
        bm.set(ValidatorIndex(s));
    }
    Block {
        epoch: consensus::Epoch(0),
        view: View(h),
        height: Height(h),
        parent: Digest([h as u8; 32]),
        justify: QuorumCert {
            data: VoteData {
                view: View(h.saturating_sub(1)),
                block_id: Digest([h as u8; 32]),
                height: Height(h.saturating_sub(1)),
                parent_id: Digest::ZERO,
                parent_view: View(h.saturating_sub(2)),
            },
            signers: bm,
            sigs: Vec::new(),
        },
        payload: Vec::new(),
        evidence,
        proposer: ValidatorIndex(proposer),
        skipped_leaders: Vec::new(),
    }
}

fn id(h: u64) -> BlockId {
    Digest([h as u8; 32])
}

fn e2(who: u16, view: u64) -> Evidence {
    Evidence::DoubleProposal {
        offender: ValidatorIndex(who),
        view: View(view),
        block_a: Digest([1; 32]),
        sig_a: Signature([0; 64]),
        block_b: Digest([2; 32]),
        sig_b: Signature([0; 64]),
    }
}

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

/// Round-robin proposers; validator 3 signs only when `signs3(h)`; 0..=2 always sign.
fn chain(from: u64, to: u64, signs3: impl Fn(u64) -> bool) -> Vec<Block> {
    (from..=to)
        .map(|h| {
            let mut s = vec![0, 1, 2];
            if signs3(h) {
                s.push(3);
            }
            block(h, (h % N as u64) as u16, &s, Vec::new())
        })
        .collect()
}

fn feed(a: &mut Accountant, blocks: &[Block]) -> Vec<Misbehaviour> {
    blocks
        .iter()
        .flat_map(|b| a.on_commit(b, id(b.height.0)))
        .collect()
}

fn downtimes(list: &[Misbehaviour]) -> Vec<(u16, u64, Tally)> {
    list.iter()
        .filter_map(|m| match &m.offence {
            Offence::Downtime(r) => Some((m.offender.0, m.height.0, r.tally)),
            Offence::Evidence { .. } => None,
        })
        .collect()
}

/// Threshold edges: (signed, eligible, threshold) → down?
#[test]
fn threshold_edges() {
    let cases: &[(&str, u64, u64, u64, bool)] = &[
        ("nothing eligible is never down", 0, 0, 20, false),
        ("zero of ten is down", 0, 10, 20, true),
        ("exactly at 20% passes", 2, 10, 20, false),
        ("just under 20% is down", 19, 100, 20, true),
        ("threshold 0 never judges", 0, 10, 0, false),
        ("threshold 100: all signed passes", 10, 10, 100, false),
        ("threshold 100: one missing is down", 9, 10, 100, true),
        (
            "huge counts do not overflow",
            u64::MAX / 2,
            u64::MAX,
            50,
            true,
        ),
    ];
    for &(name, signed, eligible, threshold, down) in cases {
        let t = Tally {
            signed,
            eligible,
            ..Tally::default()
        };
        assert_eq!(is_down(&t, threshold), down, "{name}");
    }
}

#[test]
fn silent_validator_gets_one_record_per_window_at_the_boundary() {
    let mut a = Accountant::new(N, &cfg(10, 20));
    let list = feed(&mut a, &chain(1, 30, |_| false));
    let d = downtimes(&list);
    assert_eq!(
        d.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
        vec![(3, 10), (3, 20), (3, 30)],
        "validator 3 only, at heights multiple of the window"
    );
    // Window 1..=10: block 1 has the genesis QC; 3 proposes 3 and 7; eligible = 9 − 2.
    assert_eq!(d[0].2.eligible, 7);
    assert_eq!(d[0].2.signed, 0);
    assert_eq!(d[0].2.proposed, 2);
    let acc = a.state().accounts[3];
    assert_eq!(acc.standing, Standing::Isolated, "three strikes");
    assert_eq!(acc.since, Height(30));
    assert_eq!(acc.downtime_records, 3);
    for i in 0..3 {
        let acc = a.state().accounts[i];
        assert_eq!(acc.standing, Standing::Good, "validator {i}");
        assert_eq!((acc.strikes, acc.downtime_records), (0, 0), "validator {i}");
        assert_eq!(acc.clean_windows, 3, "validator {i}");
    }
}

#[test]
fn own_proposals_do_not_count_as_participation() {
    // Validator 3 signs only the QCs of the blocks it proposes itself (a vote withholder that
    // still leads): 0 of its eligible blocks, so it is down.
    let mut a = Accountant::new(N, &cfg(8, 20));
    let list = feed(&mut a, &chain(1, 8, |h| h % N as u64 == 3));
    assert_eq!(downtimes(&list).len(), 1);
    assert_eq!(downtimes(&list)[0].2.signed, 0);
}

#[test]
fn participation_exactly_at_threshold_is_clean() {
    // Window 2..=11 seen by validator 0 proposing none of them: use proposer 1 throughout.
    let mut a = Accountant::new(N, &cfg(10, 20));
    let blocks: Vec<Block> = (1..=10)
        .map(|h| {
            // Validator 3 signs blocks 2 and 3: 2 of 9 eligible = 22% ≥ 20%.
            let s: &[u16] = if h == 2 || h == 3 {
                &[1, 2, 3]
            } else {
                &[0, 1, 2]
            };
            block(h, 1, s, Vec::new())
        })
        .collect();
    assert!(downtimes(&feed(&mut a, &blocks)).is_empty());
    // Only block 2: 1 of 9 = 11% < 20%.
    let mut a = Accountant::new(N, &cfg(10, 20));
    let blocks: Vec<Block> = (1..=10)
        .map(|h| {
            let s: &[u16] = if h == 2 { &[1, 2, 3] } else { &[0, 1, 2] };
            block(h, 1, s, Vec::new())
        })
        .collect();
    let d = downtimes(&feed(&mut a, &blocks));
    assert_eq!(d.iter().map(|x| x.0).collect::<Vec<_>>(), vec![3]);
}

/// Graduated response, step by step: (window participation of validator 3, standing after).
#[test]
fn quarantine_isolation_rehabilitation_steps() {
    let steps: &[(&str, bool, Standing, u64)] = &[
        ("down once: quarantined", false, Standing::Quarantined, 1),
        (
            "one clean window: still quarantined",
            true,
            Standing::Quarantined,
            1,
        ),
        (
            "second clean window: rehabilitated",
            true,
            Standing::Rehabilitated,
            0,
        ),
        ("down again: quarantined", false, Standing::Quarantined, 1),
        ("down: second strike", false, Standing::Quarantined, 2),
        ("down: third strike isolates", false, Standing::Isolated, 3),
        ("clean", true, Standing::Isolated, 3),
        (
            "clean twice: rehabilitated",
            true,
            Standing::Rehabilitated,
            0,
        ),
    ];
    let w = 10;
    let mut a = Accountant::new(N, &cfg(w, 20));
    for (k, &(name, up, standing, strikes)) in steps.iter().enumerate() {
        let from = k as u64 * w + 1;
        feed(&mut a, &chain(from, from + w - 1, |_| up));
        let acc = a.state().accounts[3];
        assert_eq!(acc.standing, standing, "{name}");
        assert_eq!(acc.strikes, strikes, "{name}");
    }
}

#[test]
fn safety_evidence_isolates_for_good_and_is_penalised_once() {
    let mut a = Accountant::new(N, &cfg(10, 20));
    let mut blocks = chain(1, 40, |_| true);
    blocks[4].evidence = vec![e2(2, 3), e4(1, 2)];
    blocks[5].evidence = vec![e2(2, 3)]; // re-proposed by a descendant
    let list = feed(&mut a, &blocks);
    let ev: Vec<_> = list
        .iter()
        .filter(|m| matches!(m.offence, Offence::Evidence { .. }))
        .map(|m| (m.offender.0, m.height.0, m.standing))
        .collect();
    assert_eq!(
        ev,
        vec![(2, 5, Standing::Isolated), (1, 5, Standing::Quarantined)]
    );
    let s = a.state();
    assert!(s.accounts[2].convicted);
    assert_eq!(
        s.accounts[2].standing,
        Standing::Isolated,
        "never rehabilitated"
    );
    assert_eq!(s.accounts[2].evidence_committed, 1);
    assert_eq!(
        s.accounts[1].standing,
        Standing::Rehabilitated,
        "E4 is a strike"
    );
}

#[test]
fn replays_and_genesis_are_ignored() {
    let mut a = Accountant::new(N, &cfg(5, 20));
    let blocks = chain(1, 10, |_| false);
    assert!(a.on_commit(&block(0, 0, &[], Vec::new()), id(0)).is_empty());
    let first = feed(&mut a, &blocks);
    let before = a.clone();
    assert!(feed(&mut a, &blocks).is_empty(), "a replay derives nothing");
    assert_eq!(a, before);
    assert_eq!(downtimes(&first).len(), 2);
}

/// A gap in heights (the node never produces one) closes the window the tallies belong to
/// when the first block beyond it arrives, and empty windows judge nobody.
#[test]
fn a_gap_closes_the_pending_window_once() {
    let mut a = Accountant::new(N, &cfg(5, 20));
    let mut list = feed(&mut a, &chain(1, 7, |_| false));
    assert_eq!(downtimes(&list).len(), 1, "window 1..=5");
    // Heights 8..=16 never arrive; block 17 belongs to window 16..=20.
    list = feed(&mut a, &chain(17, 17, |_| false));
    let d = downtimes(&list);
    assert_eq!(d.len(), 1, "window 6..=10 (blocks 6, 7) judged once: {d:?}");
    assert_eq!(
        (d[0].0, d[0].1),
        (3, 17),
        "reported with the block that closed it"
    );
    match &list[0].offence {
        Offence::Downtime(r) => assert_eq!((r.window_start, r.window_end), (Height(6), Height(10))),
        Offence::Evidence { .. } => panic!("no evidence here"),
    }
    assert_eq!(a.state().window, 3);
    assert!(downtimes(&feed(&mut a, &chain(18, 19, |_| false))).is_empty());
    assert_eq!(downtimes(&feed(&mut a, &chain(20, 20, |_| false))).len(), 1);
}

#[test]
fn restore_rejects_garbage_and_other_set_sizes() {
    let c = cfg(5, 20);
    let a = Accountant::new(N, &c);
    assert!(matches!(
        Accountant::restore(N, &c, &[]),
        Err(AccountingError::Corrupt(_))
    ));
    assert!(matches!(
        Accountant::restore(N, &c, &[9, 1, 2]),
        Err(AccountingError::Corrupt(_))
    ));
    assert_eq!(
        Accountant::restore(N + 1, &c, &a.encode_state()),
        Err(AccountingError::WrongSetSize {
            stored: N,
            expected: N + 1
        })
    );
}

fn arb_chain() -> impl Strategy<Value = Vec<(u16, u8, bool)>> {
    // Per block: proposer, signer mask of the justify, whether it carries evidence.
    prop::collection::vec(
        (0u16..N as u16, 0u8..16, prop::bool::weighted(0.05)),
        1..120,
    )
}

fn build(spec: &[(u16, u8, bool)]) -> Vec<Block> {
    spec.iter()
        .enumerate()
        .map(|(i, &(p, mask, ev))| {
            let h = i as u64 + 1;
            let signers: Vec<u16> = (0..N as u16).filter(|s| mask & (1 << s) != 0).collect();
            let evidence = if ev {
                vec![e4(p, h), e2((p + 1) % N as u16, h / 3)]
            } else {
                Vec::new()
            };
            block(h, p, &signers, evidence)
        })
        .collect()
}

proptest! {
    /// Two accountants fed the same committed blocks derive identical lists and states; one
    /// that stops at any height, persists and restores, then continues, ends identical too.
    #[test]
    fn deterministic_and_restart_exact(
        spec in arb_chain(),
        window in 1u64..12,
        threshold in 0u64..=100,
        cut in 0usize..120,
    ) {
        let c = cfg(window, threshold);
        let blocks = build(&spec);
        let mut a = Accountant::new(N, &c);
        let mut b = Accountant::new(N, &c);
        let la = feed(&mut a, &blocks);
        let lb = feed(&mut b, &blocks);
        prop_assert_eq!(&la, &lb);
        prop_assert_eq!(a.encode_state(), b.encode_state());

        let cut = cut.min(blocks.len());
        let mut r = Accountant::new(N, &c);
        let mut lr = feed(&mut r, &blocks[..cut]);
        let mut r = Accountant::restore(N, &c, &r.encode_state()).unwrap();
        // A restarted node replays some committed blocks before new ones: harmless.
        lr.extend(feed(&mut r, &blocks[cut.saturating_sub(5)..]));
        prop_assert_eq!(&lr, &la);
        prop_assert_eq!(r.state(), a.state());

        // Every downtime record is at a window boundary and under the threshold.
        for m in &la {
            if let Offence::Downtime(d) = &m.offence {
                prop_assert_eq!(m.height.0 % window, 0);
                prop_assert_eq!(d.window_end, m.height);
                prop_assert!(is_down(&d.tally, threshold));
            }
        }
    }
}
