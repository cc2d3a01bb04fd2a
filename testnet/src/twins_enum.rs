//! Exhaustive Twins enumeration over a reduced space (PROTOCOL.md §8), complementing the
//! sampled enumeration of [`crate::twins`].
//!
//! n = 4, validator `T = 0` runs as two honest instances `T1`, `T2` (instances 0 and 1) with
//! the same key and independent disks; the honest validators 1, 2, 3 are instances 2, 3, 4.
//! Each of the `k` scripted views (views `1..=k`) picks
//!
//! - a leader in [`LEADERS`] = {T, H} with `H` = validator 1, and
//! - a partition in [`partitions`]: everyone together; `{T1, H, 2} | {T2, 3}` (T1's side has a
//!   quorum, H is with it); `{T1, H} | {T2, 2, 3}` (T2's side has a quorum, H is in the minority).
//!
//! Every one of the `6^k` schedules runs (no sampling): `k = 4` gives 1,296. Messages of a
//! scripted view only cross within that view's groups. Once every honest instance has left the
//! scripted views (or at [`HEAL_CAP_MS`] at the latest) the network is whole again and a healing
//! suffix of honest leaders (1, 2, 3, 1, …) follows for [`SUFFIX_MS`]; the oracles S1–S9 run
//! after every event, and at the end the evidence oracle (every equivocation delivered to an
//! honest node yields verified evidence) and liveness (every honest instance commits after the
//! heal) apply.

use crate::net::{InstanceId, NetModel};
use crate::oracle::MsgClass;
use crate::replica::PolicyKind;
use crate::sim::{Failure, Report, Sim, SimConfig, Timing};
use consensus::{EvidenceKind, Mutations, ValidatorIndex};
use std::sync::Arc;

/// The twin identity T (instances 0 and 1).
pub const TWIN: ValidatorIndex = ValidatorIndex(0);
/// The fixed honest leader candidate H (instance 2).
pub const HONEST: ValidatorIndex = ValidatorIndex(1);
/// Leader choices per scripted view.
pub const LEADERS: [ValidatorIndex; 2] = [TWIN, HONEST];
/// Number of partition choices per scripted view (see [`partitions`]).
pub const N_PARTITIONS: usize = 3;
/// Choices per scripted view.
pub const PER_VIEW: usize = LEADERS.len() * N_PARTITIONS;
/// The latest virtual time (ms) at which the scripted partitions are lifted.
pub const HEAL_CAP_MS: u64 = 3_000;
/// Length of the healing suffix (ms) after the heal.
pub const SUFFIX_MS: u64 = 1_500;
/// Granularity (ms) at which the runner checks whether the scripted views are over.
pub const POLL_MS: u64 = 20;
/// Honest leaders of the suffix views (round robin over the honest validators), scripted for
/// this many views after the scripted ones.
pub const SUFFIX_VIEWS: usize = 120;

/// The partitions of the five instances (twins `0`, `1`; honest `2` = H, `3`, `4`).
pub fn partitions() -> [Vec<Vec<InstanceId>>; N_PARTITIONS] {
    [
        vec![vec![0, 1, 2, 3, 4]],
        vec![vec![0, 2, 3], vec![1, 4]],
        vec![vec![0, 2], vec![1, 3, 4]],
    ]
}

/// Short names of [`partitions`], for messages.
pub const PARTITION_NAMES: [&str; N_PARTITIONS] = ["all", "T1+H+2|T2+3", "T1+H|T2+2+3"];

/// One schedule: per scripted view, (leader, partition number).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Per scripted view (views 1, 2, …).
    pub views: Vec<(ValidatorIndex, usize)>,
}

impl Schedule {
    /// The schedule with mixed-radix number `index` (view 1 is the least significant digit;
    /// digit = leader choice + 2 · partition).
    pub fn from_index(n_views: usize, index: usize) -> Schedule {
        let mut x = index;
        let views = (0..n_views)
            .map(|_| {
                let d = x % PER_VIEW;
                x /= PER_VIEW;
                (LEADERS[d % LEADERS.len()], d / LEADERS.len())
            })
            .collect();
        Schedule { views }
    }

    /// Compact text form, e.g. `v1=T/all v2=H/T1+H|T2+2+3 …`.
    pub fn describe(&self) -> String {
        self.views
            .iter()
            .enumerate()
            .map(|(i, (l, p))| {
                let who = if *l == TWIN { "T" } else { "H" };
                format!("v{}={who}/{}", i + 1, PARTITION_NAMES[*p])
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Number of schedules with `n_views` scripted views.
pub fn count(n_views: usize) -> usize {
    PER_VIEW.pow(n_views as u32)
}

/// Every schedule with `n_views` scripted views, in index order.
pub fn enumerate(n_views: usize) -> Vec<Schedule> {
    (0..count(n_views))
        .map(|i| Schedule::from_index(n_views, i))
        .collect()
}

/// What one successful run produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The simulator's report.
    pub report: Report,
    /// When the scripted partitions were lifted (ms).
    pub heal_at: u64,
    /// Evidence items produced by honest instances, by kind.
    pub evidence_kinds: Vec<EvidenceKind>,
    /// Equivocations delivered to honest instances, by message class.
    pub equivocation_classes: Vec<MsgClass>,
}

/// Run one schedule with `seed`.
///
/// # Errors
/// The first oracle violation (safety during the run, evidence or liveness at the end).
pub fn run(
    index: usize,
    seed: u64,
    sc: &Schedule,
    mutations: Mutations,
) -> Result<Outcome, Failure> {
    let k = sc.views.len();
    let mut cfg = SimConfig::new(&format!("twins_enum#{index}"), seed, 4);
    cfg.twins = vec![TWIN];
    cfg.mutations = mutations;
    cfg.net = NetModel::jittery(10, 5);
    cfg.timing = Timing {
        timeout_base_ms: 250,
        timeout_max_ms: 1_000,
        ..Timing::default()
    };
    // View 0 is genesis; views 1..=k scripted; then honest round robin for the suffix.
    let mut table = vec![TWIN];
    table.extend(sc.views.iter().map(|(l, _)| *l));
    table.extend((0..SUFFIX_VIEWS).map(|i| ValidatorIndex(1 + (i % 3) as u16)));
    cfg.policy = PolicyKind::Scripted(Arc::new(table));
    let mut sim = Sim::new(cfg);
    let parts = partitions();
    sim.partition_views(sc.views.iter().map(|(_, p)| parts[*p].as_slice()));
    sim.view_groups_until = HEAL_CAP_MS;
    // Run until every honest instance has left the scripted views, then heal.
    let honest = sim.honest();
    let mut t = 0;
    while t < HEAL_CAP_MS {
        t += POLL_MS;
        sim.run_until(t)?;
        let now = sim.now;
        let past = honest.iter().all(|&i| {
            sim.instances[i]
                .status(now)
                .is_some_and(|s| s.view.0 > k as u64)
        });
        if past {
            break;
        }
    }
    let heal_at = sim.now.min(HEAL_CAP_MS);
    sim.view_groups_until = heal_at;
    sim.run_until(heal_at + SUFFIX_MS)?;
    let report = sim.finish(Some(heal_at))?;
    Ok(Outcome {
        report,
        heal_at,
        evidence_kinds: sim
            .oracles
            .evidence
            .iter()
            .map(|(_, kind, _)| *kind)
            .collect(),
        equivocation_classes: sim.oracles.obligations.iter().map(|o| o.class).collect(),
    })
}
