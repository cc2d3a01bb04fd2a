//! Health transitions (step table).

use consensus::{FaultPolicy, Health, HealthInputs, InvalidReason, ValidatorIndex, View};
use fault::{FaultConfig, FaultTolerance};

mod common;

fn inputs(view: u64, hqc: u64, power: u64, syncing: bool) -> HealthInputs {
    HealthInputs {
        current_view: View(view),
        high_qc_view: View(hqc),
        connected_power: power,
        quorum_power: 3,
        syncing,
    }
}

enum Step {
    Invalid(u64),
    Evidence(u64, u16),
    Check(HealthInputs, u64, Health),
}

#[test]
fn health_step_table() {
    use Health::*;
    use Step::*;
    let (vs, keys) = common::validators(4);
    let cfg = FaultConfig {
        attack_invalid: 3,
        attack_window_ms: 1000,
        ..FaultConfig::default()
    };
    let mut p = FaultTolerance::new(&vs, cfg);
    let steps = [
        Check(inputs(10, 9, 4, false), 0, Normal),
        Check(inputs(10, 7, 4, false), 0, Normal), // lag 3 = k
        Check(inputs(10, 6, 4, false), 0, Partitioned), // lag 4 > k
        Check(inputs(10, 9, 2, false), 0, Partitioned), // below quorum power
        Check(inputs(10, 9, 3, true), 0, Recovering),
        Check(inputs(10, 2, 3, true), 0, Partitioned), // Partitioned > Recovering
        Invalid(100),
        Invalid(200),
        Check(inputs(10, 9, 4, false), 250, Normal), // 2 < 3
        Invalid(300),
        Check(inputs(10, 9, 4, false), 300, UnderAttack),
        Check(inputs(10, 2, 1, true), 1099, UnderAttack), // UnderAttack first
        Check(inputs(10, 9, 4, false), 1100, Normal),     // first one left the window
        Evidence(2000, 1),
        Evidence(2001, 1), // duplicate: not a new signal
        Check(inputs(10, 9, 4, false), 2999, UnderAttack),
        Check(inputs(10, 9, 4, false), 3000, Normal),
        Check(inputs(5, 9, 4, false), 3000, Normal), // hqc above view: no lag
    ];
    for (i, s) in steps.into_iter().enumerate() {
        match s {
            Invalid(now) => p.on_invalid(ValidatorIndex(0), InvalidReason::BadSignature, now),
            Evidence(now, who) => {
                p.on_evidence(&common::double_vote(&vs, &keys, who, 5), now);
            }
            Check(inp, now, want) => assert_eq!(p.health(&inp, now), want, "step {i}"),
        }
    }
}
