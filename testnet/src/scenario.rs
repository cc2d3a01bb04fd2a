//! The scenario catalogue: each scenario is a function of a seed, built from the simulator's
//! primitives, ending with a healing suffix and the end-of-run checks.

use crate::byzantine::ByzKind;
use crate::net::{InstanceId, LinkOverride, NetModel};
use crate::sim::{Control, CrashPoint, Failure, Report, Sim, SimConfig};
use consensus::{Mutations, ValidatorIndex};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Virtual length of the faulty phase of a standard run (ms).
pub const FAULT_MS: u64 = 5_000;
/// Virtual length of the healing suffix (ms).
pub const HEAL_MS: u64 = 5_000;

/// n for a seed: cycles through 4, 7, 10.
pub fn n_for(seed: u64) -> usize {
    [4, 7, 10][(seed % 3) as usize]
}

/// `f = ⌊(n−1)/3⌋`.
pub fn f_of(n: usize) -> usize {
    (n - 1) / 3
}

/// Every scenario name understood by [`run`].
pub fn names() -> Vec<String> {
    let mut v: Vec<String> = vec![
        "honest".into(),
        "lossy".into(),
        "partition".into(),
        "crash_restart".into(),
        "crash_persist".into(),
        "slow_node".into(),
    ];
    for k in ByzKind::all() {
        v.push(k.name().to_string());
    }
    v
}

/// f consecutive Byzantine indices starting at a seed-chosen index (so n − f consecutive
/// honest leaders exist under round robin).
fn byz_set(seed: u64, n: usize, kind: ByzKind) -> Vec<(ValidatorIndex, ByzKind)> {
    let f = f_of(n);
    let start = (seed / 3) as usize % n;
    (0..f)
        .map(|k| (ValidatorIndex(((start + k) % n) as u16), kind))
        .collect()
}

/// The healthy network of the healing suffix: delay ≤ Δ.
pub fn healthy_net() -> NetModel {
    NetModel::jittery(10, 20)
}

/// Run scenario `name` with `seed` (standard lengths). Errors: the first violation.
pub fn run(name: &str, seed: u64) -> Result<Report, Failure> {
    run_with(name, seed, Mutations::default())
}

/// Run scenario `name` with `seed` and `mutations` in the honest cores.
pub fn run_with(name: &str, seed: u64, mutations: Mutations) -> Result<Report, Failure> {
    let n = n_for(seed);
    let mut cfg = SimConfig::new(name, seed, n);
    cfg.mutations = mutations;
    let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed);
    let heal_at = FAULT_MS;
    let end = FAULT_MS + HEAL_MS;
    let mut controls: Vec<(u64, Control)> = Vec::new();
    match name {
        "honest" => {}
        "lossy" => {
            cfg.net = NetModel {
                base_ms: 5,
                jitter_ms: r.random_range(10..80),
                loss: r.random_range(0.0..0.25),
                dup: r.random_range(0.0..0.2),
                overrides: Vec::new(),
                groups: None,
            };
            controls.push((heal_at, Control::HealAll(healthy_net())));
        }
        "partition" => {
            // Up to three random 2-way partitions, each healed; the last heal is the suffix.
            let mut t = r.random_range(200..1000);
            for _ in 0..r.random_range(1..=3) {
                let minority = r.random_range(1..=f_of(n).max(1));
                let mut ids: Vec<InstanceId> = (0..n).collect();
                for i in (1..ids.len()).rev() {
                    let j = r.random_range(0..=i);
                    ids.swap(i, j);
                }
                let (a, b) = ids.split_at(minority);
                controls.push((t, Control::Partition(vec![a.to_vec(), b.to_vec()])));
                t += r.random_range(300..1500);
                controls.push((t.min(heal_at), Control::Heal));
                t += r.random_range(100..800);
                if t >= heal_at {
                    break;
                }
            }
            controls.push((heal_at, Control::HealAll(healthy_net())));
        }
        "crash_restart" | "crash_persist" => {
            // Crash up to f nodes at a time, restart them later; crash_persist arms the crash
            // inside a batch (between persist and send, or before the persist).
            let f = f_of(n).max(1);
            let mut t = r.random_range(100..600);
            while t < heal_at - 500 {
                let k = r.random_range(1..=f);
                let mut victims = Vec::new();
                for _ in 0..k {
                    let v = r.random_range(0..n);
                    if !victims.contains(&v) {
                        victims.push(v);
                    }
                }
                for &v in &victims {
                    if name == "crash_persist" {
                        let cp = match r.random_range(0..3) {
                            0 => CrashPoint::AfterPersist,
                            1 => CrashPoint::BeforePersist,
                            _ => CrashPoint::AfterAction(r.random_range(1..4)),
                        };
                        controls.push((t, Control::ArmCrash(v, cp)));
                    } else {
                        controls.push((t, Control::Crash(v)));
                    }
                }
                let down = r.random_range(100..1500);
                for &v in &victims {
                    controls.push((t + down, Control::Restart(v)));
                }
                t += down + r.random_range(50..700);
            }
            controls.push((heal_at, Control::HealAll(healthy_net())));
        }
        "slow_node" => {
            // One node is cut off (or very slow) while the others commit many blocks; after the
            // heal it must catch up by block sync.
            let v = r.random_range(0..n);
            let mut net = healthy_net();
            net.overrides.push(LinkOverride {
                from: Some(v),
                to: None,
                extra_ms: 0,
                loss: Some(1.0),
            });
            net.overrides.push(LinkOverride {
                from: None,
                to: Some(v),
                extra_ms: 0,
                loss: Some(1.0),
            });
            cfg.net = net;
            controls.push((heal_at, Control::HealAll(healthy_net())));
        }
        other => {
            let kind = ByzKind::all()
                .into_iter()
                .find(|k| k.name() == other)
                .unwrap_or_else(|| panic!("unknown scenario {other}"));
            cfg.byzantine = byz_set(seed, n, kind);
        }
    }
    let mut sim = Sim::new(cfg);
    for (t, c) in controls {
        sim.schedule(t, c);
    }
    sim.run_until(end)?;
    sim.finish(Some(heal_at))
}
