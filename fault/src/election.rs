//! Reputation-based leader election (PROTOCOL.md §6.3, Aptos `ProposerAndVoter`).
//!
//! The election reads only committed data: a ring of [`CommitSummary`] fed in height order by
//! `on_commit`, and the height at which each validator was first convicted by committed
//! safety evidence. For view `v`:
//!
//! 1. Plain round robin `(v + epoch) mod n` if the latest known commit has view `< v − Y`
//!    (stall), or if there is no cut.
//! 2. The cut `A(v)` is the highest committed block (height ≥ 1) with view `≤ v − X`.
//! 3. Over the `W` committed blocks ending at `A(v)`: `failed_i` = appearances in
//!    `skipped_leaders` (plus one per committed E4 against `i`), `proposed_i` = blocks proposed,
//!    `voted_i` = appearances in justify signer sets, and whether `i`'s **last slot failed**:
//!    the highest block of the window naming `i` in `skipped_leaders` is above the highest block
//!    `i` proposed in the window.
//! 4. Weight 0 if convicted at or before the cut, if its last slot failed, if
//!    `100·failed > θ·(failed + proposed)`, or if it is **silent**: neither proposed nor voted in
//!    a window of at least `n` blocks (a crashed validator that never got a slot; a live one signs
//!    some of `n` consecutive QCs); else 100 if `proposed + voted > 0`, else 10. At most
//!    `f = ⌊(n−1)/3⌋` are excluded: convicted first, then last slot failed, then the worst
//!    failure ratio, then silent, ties by lower index; the rest keep their non-zero weight.
//! 5. If `v % R == 0`: round robin over the validators of non-zero weight (the `(v + epoch)
//!    mod k`-th of the `k` of them, in index order) — rotation for fairness that never draws an
//!    excluded validator.
//! 6. Otherwise `seed = BLAKE3("HS2/v1/leader" ‖ chain_id ‖ epoch ‖ v ‖ A(v).id)`,
//!    `r = u128(seed[..16]) mod Σw`, the leader is the first index whose cumulative weight
//!    exceeds `r`.
//!
//! A crashed or partitioned leader is thus out of the schedule from the first view whose cut
//! holds the block that records its failed slot — about `X` views after the failure. When that
//! block leaves the window (`W` committed blocks later) a validator that is still down is silent
//! and stays out, so a dead validator costs no probe timeouts; one that came back has votes in
//! the window and leads again. A validator that crashed before its first slot is out as soon as
//! the window holds `n` blocks without a vote of it. The old ratio-only rule needed several
//! failures, each a timeout, while the window still held the dead validator's earlier proposals
//! (issue 6).
//!
//! Integer arithmetic only (§7 case 23). Genesis (height 0) has no proposer: it is never part of
//! a window and a cut at genesis counts as "no cut" (so nodes that did and did not replay
//! genesis agree).

use crate::config::FaultConfig;
use consensus::{Bitmap, Block, BlockId, Domain, Height, ValidatorIndex, ValidatorSet, View};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::VecDeque;

/// Weight of a validator with some committed activity in the window.
pub const ACTIVE_WEIGHT: u64 = 100;
/// Weight of a validator with no committed activity in the window.
pub const IDLE_WEIGHT: u64 = 10;

/// What the election keeps of one committed block of height ≥ 1.
#[derive(Clone, Debug)]
struct CommitSummary {
    view: View,
    height: Height,
    id: BlockId,
    proposer: ValidatorIndex,
    /// `block.justify.signers`.
    voters: Bitmap,
    /// `block.skipped_leaders`.
    skipped: Vec<ValidatorIndex>,
    /// Offenders of the E4 (liveness-only) evidence the block carries: one failure each.
    nuisance: Vec<ValidatorIndex>,
    /// Weight table of the cut at this block; kept for the most recent `cached_cuts` blocks.
    table: Option<WeightTable>,
}

/// Per-validator counts over one window (PROTOCOL.md §6.3 "Counts").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Appearances in `skipped_leaders` (+ committed E4).
    pub failed: Vec<u64>,
    /// Blocks proposed.
    pub proposed: Vec<u64>,
    /// Appearances in justify signer sets.
    pub voted: Vec<u64>,
    /// Height of the highest block counted that names `i` in `skipped_leaders` (0: none).
    /// Never lowered when a block leaves the window: compare with the window's first height.
    pub last_failed: Vec<u64>,
    /// Height of the highest block counted that `i` proposed (0: none); same caveat.
    pub last_proposed: Vec<u64>,
}

impl Counts {
    fn new(n: usize) -> Self {
        Counts {
            failed: vec![0; n],
            proposed: vec![0; n],
            voted: vec![0; n],
            last_failed: vec![0; n],
            last_proposed: vec![0; n],
        }
    }

    /// Whether `i`'s last leader slot inside a window starting at height `window_start` failed.
    fn last_slot_failed(&self, i: usize, window_start: u64) -> bool {
        let failed = self.last_failed.get(i).copied().unwrap_or(0);
        let proposed = self.last_proposed.get(i).copied().unwrap_or(0);
        failed >= window_start.max(1) && failed > proposed
    }

    /// Add (`add = true`) or remove one block's contribution. Out-of-range indices are ignored.
    fn apply(&mut self, s: &CommitSummary, add: bool) {
        fn bump(v: &mut [u64], i: ValidatorIndex, add: bool) {
            if let Some(c) = v.get_mut(i.as_usize()) {
                *c = if add {
                    c.saturating_add(1)
                } else {
                    c.saturating_sub(1)
                };
            }
        }
        fn raise(v: &mut [u64], i: ValidatorIndex, h: Height) {
            if let Some(c) = v.get_mut(i.as_usize()) {
                *c = (*c).max(h.0);
            }
        }
        bump(&mut self.proposed, s.proposer, add);
        for &i in s.skipped.iter().chain(s.nuisance.iter()) {
            bump(&mut self.failed, i, add);
        }
        if add {
            raise(&mut self.last_proposed, s.proposer, s.height);
            for &i in &s.skipped {
                raise(&mut self.last_failed, i, s.height);
            }
        }
        for i in s.voters.iter() {
            bump(&mut self.voted, i, add);
        }
    }
}

/// Election weights of one cut, with their prefix sums for `O(log n)` selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WeightTable {
    /// Weight per validator index (0 = excluded).
    pub weights: Vec<u64>,
    /// `cumulative[i] = Σ_{j ≤ i} weights[j]`.
    cumulative: Vec<u64>,
}

impl WeightTable {
    /// Weights from `counts` over a window whose first block has height `window_start`, and
    /// the conviction flags (module doc, step 4).
    /// `window_len` is the number of blocks in the window (the silent rule needs `≥ n`).
    fn build(
        counts: &Counts,
        (window_start, window_len): (u64, usize),
        convicted: &[bool],
        theta: u64,
        max_excluded: usize,
    ) -> Self {
        let n = counts.proposed.len();
        let full = window_len >= n;
        // Candidates for exclusion: (index, convicted, last slot failed, failed, failed +
        // proposed); a silent validator has failed = total = 0 and sorts after every ratio.
        let mut candidates: Vec<(usize, bool, bool, u64, u64)> = (0..n)
            .filter_map(|i| {
                let failed = counts.failed[i];
                let total = failed.saturating_add(counts.proposed[i]);
                let conv = convicted.get(i).copied().unwrap_or(false);
                let last = counts.last_slot_failed(i, window_start);
                let bad = u128::from(failed) * 100 > u128::from(theta) * u128::from(total);
                let silent = full && total.saturating_add(counts.voted[i]) == 0;
                (conv || last || bad || silent).then_some((i, conv, last, failed, total))
            })
            .collect();
        // Convicted first; then last slot failed; then worst ratio failed/total
        // (cross-multiplied; silent ones have none and come last); then lower index.
        candidates.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| b.2.cmp(&a.2))
                .then_with(|| (b.4 > 0).cmp(&(a.4 > 0)))
                .then_with(|| compare_ratios(b.3, b.4, a.3, a.4))
                .then_with(|| a.0.cmp(&b.0))
        });
        let mut weights: Vec<u64> = (0..n)
            .map(|i| {
                if counts.proposed[i].saturating_add(counts.voted[i]) > 0 {
                    ACTIVE_WEIGHT
                } else {
                    IDLE_WEIGHT
                }
            })
            .collect();
        for &(i, ..) in candidates.iter().take(max_excluded) {
            weights[i] = 0;
        }
        let mut acc = 0u64;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc = acc.saturating_add(*w);
                acc
            })
            .collect();
        WeightTable {
            weights,
            cumulative,
        }
    }

    /// `Σw`.
    fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// First index whose cumulative weight exceeds `r` (`r < Σw`).
    fn pick(&self, r: u64) -> usize {
        let i = self.cumulative.partition_point(|&c| c <= r);
        i.min(self.cumulative.len().saturating_sub(1))
    }

    /// The `(k mod m)`-th index of non-zero weight, in index order (`m` = how many there are);
    /// `None` if every weight is 0.
    fn rotate(&self, k: u64) -> Option<usize> {
        let eligible = self.weights.iter().filter(|w| **w > 0).count() as u64;
        if eligible == 0 {
            return None;
        }
        let nth = (k % eligible) as usize;
        self.weights
            .iter()
            .enumerate()
            .filter(|(_, w)| **w > 0)
            .nth(nth)
            .map(|(i, _)| i)
    }
}

/// The reputation election state (see the module doc).
#[derive(Debug)]
pub(crate) struct Election {
    n: usize,
    epoch: u64,
    domain: Domain,
    lag: u64,
    window: usize,
    theta: u64,
    round_robin_every: u64,
    stall_views: u64,
    /// Ring capacity: `W + history_slack` blocks (≥ `W + 1`, so the block leaving the window is
    /// still present when a new one enters).
    capacity: usize,
    cached_cuts: usize,
    max_excluded: usize,
    /// Committed blocks of height ≥ 1, in height order (views strictly increase).
    ring: VecDeque<CommitSummary>,
    /// Counts over the `W` blocks ending at `ring.back()`.
    counts: Counts,
    /// Table of the cut at `ring.back()` (or of the empty history).
    latest: WeightTable,
    /// Height of the first committed safety evidence against each validator.
    convicted_at: Vec<Option<Height>>,
    /// View of the latest `on_commit` block (genesis included): the stall reference.
    latest_commit_view: Option<View>,
    /// Height of the latest `on_commit` block: duplicates and regressions are ignored.
    last_height: Option<Height>,
}

impl Election {
    pub(crate) fn new(vs: &ValidatorSet, cfg: &FaultConfig) -> Self {
        let n = vs.len().max(1);
        let window = cfg.window_for(n) as usize;
        let max_excluded = vs.max_excluded();
        let counts = Counts::new(n);
        let latest = WeightTable::build(
            &counts,
            (0, 0),
            &vec![false; n],
            cfg.failure_threshold_pct,
            max_excluded,
        );
        Election {
            n,
            epoch: vs.domain().epoch().0,
            domain: vs.domain().clone(),
            lag: cfg.exclusion_lag,
            window,
            theta: cfg.failure_threshold_pct,
            round_robin_every: cfg.round_robin_every,
            stall_views: cfg.stall_views,
            capacity: window.saturating_add(cfg.history_slack() as usize),
            cached_cuts: (cfg.cached_cuts as usize).max(1),
            max_excluded,
            ring: VecDeque::new(),
            counts,
            latest,
            convicted_at: vec![None; n],
            latest_commit_view: None,
            last_height: None,
        }
    }

    /// Committed blocks the node should replay at start so every cut it will use sees a full
    /// window: `W + history_slack`.
    pub(crate) fn replay_depth(&self) -> usize {
        self.capacity
    }

    /// Whether `block` is new (height above every block seen). Records it as the latest commit.
    pub(crate) fn begin_commit(&mut self, block: &Block) -> bool {
        if self.last_height.is_some_and(|h| block.height <= h) {
            return false;
        }
        self.last_height = Some(block.height);
        self.latest_commit_view = Some(block.view);
        true
    }

    /// Record committed safety evidence against `i` at `height` (first conviction wins).
    pub(crate) fn convict(&mut self, i: ValidatorIndex, height: Height) {
        if let Some(slot) = self.convicted_at.get_mut(i.as_usize())
            && slot.is_none_or(|h| height < h)
        {
            *slot = Some(height);
        }
    }

    /// Per validator index, the height of its first conviction (the record to persist).
    pub(crate) fn convictions(&self) -> &[Option<Height>] {
        &self.convicted_at
    }

    /// Whether committed evidence exists against `i`.
    pub(crate) fn is_convicted(&self, i: ValidatorIndex) -> bool {
        self.convicted_at
            .get(i.as_usize())
            .is_some_and(|h| h.is_some())
    }

    /// Append committed `block` (height ≥ 1, after [`Election::begin_commit`] and the
    /// convictions it carries): slide the window and precompute the new cut's table.
    pub(crate) fn push(&mut self, block: &Block, id: BlockId, nuisance: Vec<ValidatorIndex>) {
        let summary = CommitSummary {
            view: block.view,
            height: block.height,
            id,
            proposer: block.proposer,
            voters: block.justify.signers.clone(),
            skipped: block.skipped_leaders.clone(),
            nuisance,
            table: None,
        };
        self.counts.apply(&summary, true);
        self.ring.push_back(summary);
        let len = self.ring.len();
        if len > self.window
            && let Some(out) = self.ring.get(len - 1 - self.window)
        {
            let out = out.clone();
            self.counts.apply(&out, false);
        }
        if len > self.cached_cuts
            && let Some(old) = self.ring.get_mut(len - 1 - self.cached_cuts)
        {
            old.table = None;
        }
        let convicted = self.convicted_flags(block.height);
        let first = self.ring.len().saturating_sub(self.window);
        let window_start = self.ring.get(first).map_or(0, |s| s.height.0);
        let table = WeightTable::build(
            &self.counts,
            (window_start, self.ring.len() - first),
            &convicted,
            self.theta,
            self.max_excluded,
        );
        self.latest = table.clone();
        if let Some(back) = self.ring.back_mut() {
            back.table = Some(table);
        }
        while self.ring.len() > self.capacity {
            self.ring.pop_front();
        }
    }

    fn convicted_flags(&self, at: Height) -> Vec<bool> {
        self.convicted_at
            .iter()
            .map(|h| h.is_some_and(|h| h <= at))
            .collect()
    }

    /// Counts over the window ending at the latest commit.
    pub(crate) fn latest_counts(&self) -> &Counts {
        &self.counts
    }

    /// Weights of the latest cut (the latest committed block).
    pub(crate) fn latest_weights(&self) -> &[u64] {
        &self.latest.weights
    }

    fn round_robin(&self, view: View) -> ValidatorIndex {
        ValidatorIndex((view.0.wrapping_add(self.epoch) % self.n as u64) as u16)
    }

    /// Whether `view` is a rotation slot (`v % R == 0`, module doc step 5).
    fn is_rotation_slot(&self, view: View) -> bool {
        self.round_robin_every != 0 && view.0.is_multiple_of(self.round_robin_every)
    }

    /// Ring position of the cut `A(v)`, or `None` when `v` falls back to plain round robin (no
    /// cut, or a stall).
    fn reputation_cut(&self, view: View) -> Option<usize> {
        let v = view.0;
        let latest = self.latest_commit_view?;
        if latest.0.saturating_add(self.stall_views) < v {
            return None;
        }
        let target = v.checked_sub(self.lag)?;
        let pp = self.ring.partition_point(|s| s.view.0 <= target);
        pp.checked_sub(1)
    }

    fn table_at(&self, pos: usize) -> Option<Cow<'_, WeightTable>> {
        let cut = self.ring.get(pos)?;
        if let Some(t) = &cut.table {
            return Some(Cow::Borrowed(t));
        }
        let mut counts = Counts::new(self.n);
        let start = (pos + 1).saturating_sub(self.window);
        for s in self.ring.range(start..=pos) {
            counts.apply(s, true);
        }
        let window_start = self.ring.get(start).map_or(0, |s| s.height.0);
        let convicted = self.convicted_flags(cut.height);
        Some(Cow::Owned(WeightTable::build(
            &counts,
            (window_start, pos + 1 - start),
            &convicted,
            self.theta,
            self.max_excluded,
        )))
    }

    /// The election weights of the cut used for `view`, or `None` when `view` uses plain round
    /// robin.
    pub(crate) fn weights(&self, view: View) -> Option<Vec<u64>> {
        let pos = self.reputation_cut(view)?;
        self.table_at(pos).map(|t| t.weights.clone())
    }

    /// `leader(view)` (see the module doc).
    pub(crate) fn leader(&self, view: View) -> ValidatorIndex {
        let Some(pos) = self.reputation_cut(view) else {
            return self.round_robin(view);
        };
        let (Some(cut), Some(table)) = (self.ring.get(pos), self.table_at(pos)) else {
            return self.round_robin(view);
        };
        if self.is_rotation_slot(view) {
            let k = view.0.wrapping_add(self.epoch);
            return table
                .rotate(k)
                .map_or_else(|| self.round_robin(view), |i| ValidatorIndex(i as u16));
        }
        let total = table.total();
        if total == 0 {
            return self.round_robin(view);
        }
        let mut h = self.domain.hasher(b"HS2/v1/leader");
        h.update(&view.0.to_le_bytes());
        h.update(&cut.id.0);
        let seed = h.finalize();
        let mut lo = [0u8; 16];
        lo.copy_from_slice(&seed.as_bytes()[..16]);
        let r = (u128::from_le_bytes(lo) % u128::from(total)) as u64;
        ValidatorIndex(table.pick(r) as u16)
    }
}

/// Compare two failure ratios `a_failed / a_total` and `b_failed / b_total` by integer
/// cross-multiplication (no division, no floats).
fn compare_ratios(a_failed: u64, a_total: u64, b_failed: u64, b_total: u64) -> Ordering {
    (u128::from(a_failed) * u128::from(b_total)).cmp(&(u128::from(b_failed) * u128::from(a_total)))
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
