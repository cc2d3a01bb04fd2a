//! Node health (issue #2, "health") from the core's [`HealthInputs`] and a sliding window of
//! attack signals.
//!
//! Precedence: `UnderAttack` > `Partitioned` > `Recovering` > `Normal`. An attack is the most
//! actionable signal for an operator and usually explains the others (a flood of invalid
//! messages or an equivocating leader stalls views); a partition explains why a node is
//! syncing, not the other way round; `Recovering` (sync in flight, quorum connected, QCs
//! flowing) is benign.
//!
//! - `UnderAttack`: within the last `attack_window_ms`, at least `attack_evidence` new evidence
//!   items or at least `attack_invalid` invalid messages.
//! - `Partitioned`: `connected_power < quorum_power`, or
//!   `current_view − high_qc_view > partition_views`.
//! - `Recovering`: `syncing`.

use crate::config::FaultConfig;
use consensus::{Health, HealthInputs, Millis};
use std::collections::VecDeque;

/// Maximum attack signals remembered (older ones are dropped first).
pub const MAX_SIGNALS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Signal {
    Evidence,
    Invalid,
}

/// Sliding window of attack signals, bounded by [`MAX_SIGNALS`].
#[derive(Debug)]
pub(crate) struct HealthMonitor {
    signals: VecDeque<(Millis, Signal)>,
    window_ms: u64,
    evidence_threshold: u64,
    invalid_threshold: u64,
    partition_views: u64,
}

impl HealthMonitor {
    pub(crate) fn new(cfg: &FaultConfig) -> Self {
        HealthMonitor {
            signals: VecDeque::new(),
            window_ms: cfg.attack_window_ms,
            evidence_threshold: cfg.attack_evidence.max(1),
            invalid_threshold: cfg.attack_invalid.max(1),
            partition_views: cfg.partition_views,
        }
    }

    fn push(&mut self, now: Millis, s: Signal) {
        while self
            .signals
            .front()
            .is_some_and(|&(t, _)| now.saturating_sub(t) >= self.window_ms)
        {
            self.signals.pop_front();
        }
        if self.signals.len() >= MAX_SIGNALS {
            self.signals.pop_front();
        }
        self.signals.push_back((now, s));
    }

    /// New evidence was detected or received at `now`.
    pub(crate) fn on_evidence(&mut self, now: Millis) {
        self.push(now, Signal::Evidence);
    }

    /// An invalid message arrived at `now`.
    pub(crate) fn on_invalid(&mut self, now: Millis) {
        self.push(now, Signal::Invalid);
    }

    fn under_attack(&self, now: Millis) -> bool {
        let (mut ev, mut inv) = (0u64, 0u64);
        for &(t, s) in self.signals.iter().rev() {
            if now.saturating_sub(t) >= self.window_ms {
                break;
            }
            match s {
                Signal::Evidence => ev += 1,
                Signal::Invalid => inv += 1,
            }
        }
        ev >= self.evidence_threshold || inv >= self.invalid_threshold
    }

    /// Health at `now` (see the module doc for rules and precedence).
    pub(crate) fn health(&self, inputs: &HealthInputs, now: Millis) -> Health {
        if self.under_attack(now) {
            return Health::UnderAttack;
        }
        let lag = inputs.current_view.0.saturating_sub(inputs.high_qc_view.0);
        if inputs.connected_power < inputs.quorum_power || lag > self.partition_views {
            return Health::Partitioned;
        }
        if inputs.syncing {
            return Health::Recovering;
        }
        Health::Normal
    }
}
