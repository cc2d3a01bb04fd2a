//! Twins (Bano et al., OPODIS 2021): validator 0 runs as two honest instances with the same key
//! and independent disks. A scenario fixes, for each of the first views, the leader and a
//! partition of the five instances (messages of view v only cross within v's groups). After the
//! scripted views the network is whole again (healing suffix) and the usual oracles apply.

use crate::net::{InstanceId, NetModel};
use crate::replica::PolicyKind;
use crate::sim::{Failure, Report, Sim, SimConfig, Timing};
use consensus::{Mutations, ValidatorIndex};
use std::sync::Arc;

/// The twin identity.
pub const TWIN: ValidatorIndex = ValidatorIndex(0);
/// Virtual length of a Twins run (ms): the healing suffix is 1.5 s, six base timeouts and
/// about 50 happy views on the 10–15 ms network.
pub const TWINS_END_MS: u64 = 4_000;
/// When the scripted views are over at the latest, the suffix starts (for the liveness check).
/// The four scripted views time out after at most τ(1) + … + τ(4) = 250 + 250 + 375 + 562 ms.
pub const TWINS_HEAL_MS: u64 = 2_500;

/// One Twins scenario for n = 4.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TwinsScenario {
    /// Per scripted view (views 1, 2, …): leader index and partition number (see
    /// [`partitions`]).
    pub views: Vec<(ValidatorIndex, usize)>,
}

impl TwinsScenario {
    /// Compact text form `leader:partition,…`, e.g. `0:1,2:0,0:3,3:2`.
    pub fn describe(&self) -> String {
        self.views
            .iter()
            .map(|(l, p)| format!("{}:{}", l.0, p))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parse [`TwinsScenario::describe`]'s form.
    pub fn parse(s: &str) -> Option<Self> {
        let mut views = Vec::new();
        for part in s.split(',') {
            let (l, p) = part.split_once(':')?;
            let l: u16 = l.trim().parse().ok()?;
            let p: usize = p.trim().parse().ok()?;
            if l > 3 || p >= partitions().len() {
                return None;
            }
            views.push((ValidatorIndex(l), p));
        }
        Some(TwinsScenario { views })
    }
}

/// The partitions of the 5 instances (twin instances `0` and `1`, honest `2, 3, 4`):
/// 0 = everyone together; 1–3 = twin A with two honest nodes, twin B with the third;
/// 4–6 = twin A with one honest node, twin B with the other two.
pub fn partitions() -> Vec<Vec<Vec<InstanceId>>> {
    let (a, b) = (0, 1);
    let honest = [2, 3, 4];
    let mut out = vec![vec![vec![0, 1, 2, 3, 4]]];
    for k in 0..3 {
        let others: Vec<InstanceId> = honest.iter().copied().filter(|h| *h != honest[k]).collect();
        out.push(vec![vec![a, others[0], others[1]], vec![b, honest[k]]]);
    }
    for k in 0..3 {
        let others: Vec<InstanceId> = honest.iter().copied().filter(|h| *h != honest[k]).collect();
        out.push(vec![vec![a, honest[k]], vec![b, others[0], others[1]]]);
    }
    out
}

/// Enumerate scenarios of `n_views` views with every leader (4) and every partition (7) per
/// view, in mixed-radix order visited with a stride coprime to the total, up to `cap`.
pub fn enumerate(n_views: usize, cap: usize) -> Vec<TwinsScenario> {
    let per_view = 4 * partitions().len() as u64;
    let total = per_view.pow(n_views as u32);
    let take = (cap as u64).min(total);
    // A stride coprime to `total` (which is 28^k = 2^2k · 7^k): any odd number not divisible
    // by 7 visits every combination exactly once.
    let stride: u64 = if take == total { 1 } else { 7_919 };
    (0..take)
        .map(|i| {
            let mut x = (i * stride) % total;
            let mut views = Vec::with_capacity(n_views);
            for _ in 0..n_views {
                let c = x % per_view;
                x /= per_view;
                let leader = ValidatorIndex((c % 4) as u16);
                let part = (c / 4) as usize;
                views.push((leader, part));
            }
            TwinsScenario { views }
        })
        .collect()
}

/// Run one Twins scenario.
pub fn run(seed: u64, sc: &TwinsScenario, mutations: Mutations) -> Result<Report, Failure> {
    let mut cfg = SimConfig::new(&format!("twins={}", sc.describe()), seed, 4);
    cfg.twins = vec![TWIN];
    cfg.mutations = mutations;
    cfg.net = NetModel::jittery(10, 5);
    cfg.timing = Timing {
        timeout_base_ms: 250,
        timeout_max_ms: 1_000,
        ..Timing::default()
    };
    let mut table = vec![ValidatorIndex(0)];
    table.extend(sc.views.iter().map(|(l, _)| *l));
    cfg.policy = PolicyKind::Scripted(Arc::new(table));
    let mut sim = Sim::new(cfg);
    let parts = partitions();
    sim.partition_views(sc.views.iter().map(|(_, p)| parts[*p].as_slice()));
    sim.view_groups_until = TWINS_HEAL_MS;
    sim.run_until(TWINS_END_MS)?;
    // Liveness: the scripted views are over once the network reaches a later view; require
    // commits in the last part of the run.
    sim.finish(Some(TWINS_HEAL_MS))
}
