//! [`FaultConfig`]: every tunable of the fault-tolerance policy, with the defaults of
//! PROTOCOL.md §6.3 where it gives one.
//!
//! The election parameters (`exclusion_lag`, `window`, `failure_threshold_pct`,
//! `round_robin_every`, `stall_views`) must be identical on every validator of a chain — they are
//! "fixed on chain" (PROTOCOL.md §6.3, §7 case 23); a node with different values elects different
//! leaders and loses liveness (never safety). So must the accountability parameters
//! (`downtime_window`, `downtime_threshold_pct`, `isolation_strikes`, `rehabilitation_windows`,
//! PROTOCOL.md §6.6): a node with different values derives different downtime records and
//! application penalties (its application state diverges; consensus is unaffected). The other
//! parameters are local.

use serde::{Deserialize, Serialize};

/// Hard upper bound on the reputation window `W`, in committed blocks (PROTOCOL.md §6.3).
pub const MAX_WINDOW: u64 = 1000;

/// Hard upper bound on the downtime window `W_d`, in committed blocks.
pub const MAX_DOWNTIME_WINDOW: u64 = 1_000_000;

/// Hard upper bound on `history_slack`, in committed blocks.
pub const MAX_HISTORY_SLACK: u64 = 256;

/// The most committed blocks a node ever needs to replay at start so that its leader function
/// equals every other node's: `MAX_WINDOW + MAX_HISTORY_SLACK`.
pub const MAX_REPLAY_DEPTH: usize = (MAX_WINDOW + MAX_HISTORY_SLACK) as usize;

/// Smallest default window `W` (committed blocks): the probation of a failed leader. Under load
/// a 4-validator chain commits ~100–150 blocks/s, so 512 blocks keep a crashed validator out of
/// the schedule for several seconds between probes (each probe costs one timeout).
pub const MIN_DEFAULT_WINDOW: u64 = 512;

/// Parameters of [`crate::FaultTolerance`]. Views are consensus views, durations are
/// milliseconds of the driver's monotonic clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultConfig {
    /// `X`: the cut for view `v` is the highest committed block with view `≤ v − X`
    /// (PROTOCOL.md §6.3). Default 4: a node validating the proposal of view `v` has observed
    /// its justify, which commits up to view `v − 2` on the happy path and, after up to two
    /// failed views, up to `v − 4`; nodes that committed past the cut agree on the leader. A
    /// smaller lag excludes a failed leader sooner (it may be drawn again for about `X` views
    /// after its failure); a node behind the cut disagrees, which costs liveness only.
    pub exclusion_lag: u64,
    /// `W`: committed blocks in the reputation window ending at the cut. `None` means
    /// `min(max(10·n, 512), 1000)` ([`MIN_DEFAULT_WINDOW`]). Values are clamped to `1..=1000`.
    /// A validator whose last slot failed stays excluded until that block leaves the window
    /// (and after that while it stays silent).
    pub window: Option<u64>,
    /// `θ` in percent: a validator is excluded when `100·failed > θ·(failed + proposed)`.
    /// Default 30.
    pub failure_threshold_pct: u64,
    /// `R`: every view `v` with `v % R == 0` uses round robin. 0 disables. Default 10.
    pub round_robin_every: u64,
    /// `Y`: round robin when the latest known commit has view `< v − Y` (a stall). Default 200.
    pub stall_views: u64,
    /// Committed blocks kept beyond the window, so cuts up to this many blocks older than the
    /// latest commit still see a full window. Default 256; clamped to `1..=256`
    /// ([`MAX_HISTORY_SLACK`]).
    pub history_slack: u64,
    /// Most recent cuts whose weight table is precomputed on commit (older cuts are computed on
    /// demand, `O(W·n)`). Default 64.
    pub cached_cuts: u64,
    /// Evidence pool: maximum items held (pending + committed). Default 1024.
    pub max_evidence: usize,
    /// Evidence pool: maximum items held against one offender. Default 16.
    pub max_evidence_per_offender: usize,
    /// A pending item whose view is more than this many views below the latest committed view
    /// is dropped (it is too old to be worth a block). Default 1000.
    pub evidence_expiry_views: u64,
    /// Local view window for graduated response (`Suspected`), in views. Default 100.
    pub suspect_window_views: u64,
    /// `Suspected` after this many missed proposals (views it led that ended uncertified)
    /// within `suspect_window_views`. Default 2.
    pub suspect_missed: u64,
    /// `Suspected` after this many invalid messages within `suspect_window_views`. Default 3.
    pub suspect_invalid: u64,
    /// A formerly isolated validator is `Rehabilitated` once its weight is back above 0 and it
    /// has had no local fault for this many views. Default 100.
    pub clean_window_views: u64,
    /// `Partitioned` when `current_view − high_qc_view` exceeds this. Default 3.
    pub partition_views: u64,
    /// Window for the attack detector, in milliseconds. Default 10 000.
    pub attack_window_ms: u64,
    /// `UnderAttack` when at least this many new evidence items arrived within the window.
    /// Default 1.
    pub attack_evidence: u64,
    /// `UnderAttack` when at least this many invalid messages arrived within the window.
    /// Default 20.
    pub attack_invalid: u64,
    /// Accountability (chain-wide, PROTOCOL.md §6.6): committed heights per downtime window
    /// `W_d`; each window `(k·W_d, (k+1)·W_d]` is judged when its last block commits. Default
    /// 300; clamped to `1..=`[`MAX_DOWNTIME_WINDOW`].
    pub downtime_window: u64,
    /// Accountability (chain-wide): `θ_d` in percent. A validator that signed the justify QCs
    /// of fewer than `θ_d`% of the window's blocks it did not propose gets a downtime record
    /// (strictly below: exactly `θ_d`% passes). Default 20; 0 disables downtime records;
    /// values above 100 act as 100.
    pub downtime_threshold_pct: u64,
    /// Accountability (chain-wide): strikes (downtime records, committed E4 evidence) without
    /// rehabilitation in between that isolate a validator. Default 3; 0 acts as 1.
    pub isolation_strikes: u64,
    /// Accountability (chain-wide): consecutive clean downtime windows after which a
    /// quarantined validator, or one isolated for downtime, is rehabilitated. Default 2; 0 acts
    /// as 1. Safety convictions are never rehabilitated.
    pub rehabilitation_windows: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            exclusion_lag: 4,
            window: None,
            failure_threshold_pct: 30,
            round_robin_every: 10,
            stall_views: 200,
            history_slack: 256,
            cached_cuts: 64,
            max_evidence: 1024,
            max_evidence_per_offender: 16,
            evidence_expiry_views: 1000,
            suspect_window_views: 100,
            suspect_missed: 2,
            suspect_invalid: 3,
            clean_window_views: 100,
            partition_views: 3,
            attack_window_ms: 10_000,
            attack_evidence: 1,
            attack_invalid: 20,
            downtime_window: 300,
            downtime_threshold_pct: 20,
            isolation_strikes: 3,
            rehabilitation_windows: 2,
        }
    }
}

impl FaultConfig {
    /// The effective window `W` for `n` validators: `window` or `max(10·n, 512)`, clamped to
    /// `1..=1000`.
    pub fn window_for(&self, n: usize) -> u64 {
        let w = self
            .window
            .unwrap_or_else(|| (n as u64).saturating_mul(10).max(MIN_DEFAULT_WINDOW));
        w.clamp(1, MAX_WINDOW)
    }

    /// The effective downtime window `W_d`, clamped to `1..=`[`MAX_DOWNTIME_WINDOW`].
    pub fn downtime_window(&self) -> u64 {
        self.downtime_window.clamp(1, MAX_DOWNTIME_WINDOW)
    }

    /// The effective `history_slack`, clamped to `1..=256`.
    pub fn history_slack(&self) -> u64 {
        self.history_slack.clamp(1, MAX_HISTORY_SLACK)
    }
}
