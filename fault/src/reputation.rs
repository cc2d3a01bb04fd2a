//! Graduated response (issue #2): local observations of each validator and the
//! [`ValidatorState`] derived from them and from the committed election weights.
//!
//! Local observations (missed proposals, invalid messages) differ between nodes, so they never
//! feed the election; they only label validators for operators and metrics. States, in
//! precedence order:
//!
//! - `Isolated`: weight 0 in the latest cut (committed evidence or committed reputation).
//! - `Suspected`: at least `suspect_missed` missed proposals or `suspect_invalid` invalid
//!   messages within the last `suspect_window_views` views; or, for a validator that was
//!   isolated before, any local fault within the last `clean_window_views` views.
//! - `Rehabilitated`: was isolated (since start), weight back above 0, no local fault within
//!   `clean_window_views`.
//! - `Active`: otherwise.

use crate::config::FaultConfig;
use consensus::{ValidatorIndex, ValidatorState, View};
use std::collections::VecDeque;

/// Local fault record of one validator.
#[derive(Clone, Debug, Default)]
struct Record {
    /// Views of the most recent missed proposals (at most `suspect_missed` kept).
    missed: VecDeque<View>,
    /// Local views at which the most recent invalid messages arrived (at most `suspect_invalid`).
    invalid: VecDeque<View>,
    /// Latest local view with a fault of either kind.
    last_fault: Option<View>,
    /// Invalid messages since start.
    invalid_total: u64,
    /// Whether its weight was 0 in some cut since start.
    was_isolated: bool,
}

/// Per-validator local fault records (bounded: `O(n · (k_missed + k_invalid))`).
#[derive(Debug)]
pub(crate) struct Reputation {
    records: Vec<Record>,
    /// Highest view seen (view ends and commits): the local clock of the windows.
    current: View,
    window: u64,
    k_missed: usize,
    k_invalid: usize,
    clean_window: u64,
}

fn push_bounded(q: &mut VecDeque<View>, v: View, cap: usize) {
    q.push_back(v);
    while q.len() > cap {
        q.pop_front();
    }
}

impl Reputation {
    pub(crate) fn new(n: usize, cfg: &FaultConfig) -> Self {
        Reputation {
            records: vec![Record::default(); n],
            current: View(0),
            window: cfg.suspect_window_views,
            k_missed: (cfg.suspect_missed as usize).max(1),
            k_invalid: (cfg.suspect_invalid as usize).max(1),
            clean_window: cfg.clean_window_views,
        }
    }

    /// Advance the local view clock (never backwards).
    pub(crate) fn observe_view(&mut self, v: View) {
        self.current = self.current.max(v);
    }

    /// View `view` led by `leader` ended without a QC for its block.
    pub(crate) fn on_missed(&mut self, view: View, leader: ValidatorIndex) {
        self.observe_view(view);
        let k = self.k_missed;
        if let Some(r) = self.records.get_mut(leader.as_usize()) {
            push_bounded(&mut r.missed, view, k);
            r.last_fault = r.last_fault.max(Some(view));
        }
    }

    /// An invalid message from `from`, at the current local view.
    pub(crate) fn on_invalid(&mut self, from: ValidatorIndex) {
        let (now, k) = (self.current, self.k_invalid);
        if let Some(r) = self.records.get_mut(from.as_usize()) {
            push_bounded(&mut r.invalid, now, k);
            r.last_fault = r.last_fault.max(Some(now));
            r.invalid_total = r.invalid_total.saturating_add(1);
        }
    }

    /// Remember which validators have weight 0 in the newest cut.
    pub(crate) fn observe_weights(&mut self, weights: &[u64]) {
        for (r, w) in self.records.iter_mut().zip(weights) {
            if *w == 0 {
                r.was_isolated = true;
            }
        }
    }

    /// Invalid messages from `i` since start.
    pub(crate) fn invalid_total(&self, i: ValidatorIndex) -> u64 {
        self.records
            .get(i.as_usize())
            .map_or(0, |r| r.invalid_total)
    }

    fn within(&self, v: View, window: u64) -> bool {
        v.0.saturating_add(window) >= self.current.0
    }

    /// The state of `i` given its weight in the latest cut.
    pub(crate) fn state(&self, i: ValidatorIndex, weight: u64) -> ValidatorState {
        let Some(r) = self.records.get(i.as_usize()) else {
            return ValidatorState::Active;
        };
        if weight == 0 {
            return ValidatorState::Isolated;
        }
        let full = |q: &VecDeque<View>, k: usize| {
            q.len() >= k && q.front().is_some_and(|&v| self.within(v, self.window))
        };
        if full(&r.missed, self.k_missed) || full(&r.invalid, self.k_invalid) {
            return ValidatorState::Suspected;
        }
        if r.was_isolated {
            let recent = r
                .last_fault
                .is_some_and(|v| self.within(v, self.clean_window));
            return if recent {
                ValidatorState::Suspected
            } else {
                ValidatorState::Rehabilitated
            };
        }
        ValidatorState::Active
    }
}
