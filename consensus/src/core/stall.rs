//! What the core knows about why the chain is not committing (`bftnode why-stalled`).

use super::Core;
use crate::Millis;
use crate::policy::FaultPolicy;
use crate::types::{ValidatorIndex, View};

/// The core's view of progress, for diagnosing a stall. Every list is in validator-index
/// order; times are milliseconds of the core's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StallReport {
    /// Current view.
    pub view: View,
    /// Its leader.
    pub leader: ValidatorIndex,
    /// The leader of the next view (after a timeout or a QC).
    pub next_leader: ValidatorIndex,
    /// How long we have been in the current view, ms.
    pub in_view_ms: u64,
    /// The current view's timeout τ(v), ms (PROTOCOL.md §4.2).
    pub view_timeout_ms: u64,
    /// The backoff exponent of τ(v): views since the last QC, capped (§4.2).
    pub backoff_exponent: u32,
    /// View of the high QC (the lock).
    pub high_qc_view: View,
    /// Who signed the high QC.
    pub high_qc_signers: Vec<ValidatorIndex>,
    /// View of the highest TC known, and who signed it.
    pub high_tc: Option<(View, Vec<ValidatorIndex>)>,
    /// Who sent us a timeout for the current view.
    pub timeouts_this_view: Vec<ValidatorIndex>,
    /// Per validator: the highest view it sent us a timeout for, among the views the core
    /// still collects (a validator stuck in an old view shows here).
    pub latest_timeout_view: Vec<Option<View>>,
    /// Per validator: ms since anything arrived from it (0 for ourselves).
    pub silent_ms: Vec<u64>,
    /// Validators connected (by the driver's report; ourselves included), in index order.
    pub connected: Vec<ValidatorIndex>,
    /// Voting power connected (ourselves included) and the quorum.
    pub connected_power: u64,
    /// Quorum power (N − f).
    pub quorum_power: u64,
    /// Whether a block fetch is in flight (we are behind and catching up).
    pub syncing: bool,
}

impl<P: FaultPolicy> Core<P> {
    /// The stall report at `now` (see [`StallReport`]). Cheap: no signature work.
    pub fn stall_report(&self, now: Millis) -> StallReport {
        let v = self.current_view;
        let lock = self.safety.lock();
        let mut connected: Vec<ValidatorIndex> = self
            .vs
            .indices()
            .filter(|i| *i == self.cfg.me || !self.unreachable(*i))
            .collect();
        connected.sort_unstable();
        StallReport {
            view: v,
            leader: self.policy.leader(v),
            next_leader: self.policy.leader(View(v.0 + 1)),
            in_view_ms: now.saturating_sub(self.entered_at),
            view_timeout_ms: self.view_timeout(v),
            backoff_exponent: self.backoff_exponent(v),
            high_qc_view: lock.view(),
            high_qc_signers: lock.votes().map(|(i, _)| i).collect(),
            high_tc: self
                .safety
                .data()
                .high_tc
                .as_ref()
                .map(|tc| (tc.view, tc.signers.iter().collect())),
            timeouts_this_view: self.timeouts.senders(v),
            latest_timeout_view: self.timeouts.latest_by_sender(self.vs.len()),
            silent_ms: self
                .vs
                .indices()
                .map(|i| {
                    if i == self.cfg.me {
                        0
                    } else {
                        self.last_heard
                            .get(i.as_usize())
                            .map_or(now, |t| now.saturating_sub(*t))
                    }
                })
                .collect(),
            connected,
            connected_power: self.connected_power(),
            quorum_power: self.vs.quorum(),
            syncing: self.sync.is_syncing(),
        }
    }
}
