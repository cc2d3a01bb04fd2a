//! Mutation canaries: deliberate protocol bugs that only the simulator switches on, to show that
//! its oracles catch them (PROTOCOL.md §8 "mutation canaries").
//!
//! Compiled only with the crate feature `mutations`, which only the `testnet` crate enables. The
//! production rules live in the handler modules and each is bent by one `#[cfg(feature =
//! "mutations")]` statement that calls into this module; without the feature none of this exists.

use super::Core;
use crate::cert::QuorumCert;
use crate::policy::FaultPolicy;
use crate::types::View;
use std::collections::BTreeSet;

/// Deliberate protocol bugs, switched on only by tests to show that the simulator catches them
/// (PROTOCOL.md §8 "mutation canaries"). All off by default.
///
/// Exists only with the `consensus` crate feature `mutations`, which only the simulator
/// (`testnet`) enables: the node and CLI binaries (`cargo build -p cli`) are built without it, so
/// they have neither this type nor [`Config::mutations`](crate::Config), and the node's
/// configuration has no way to set mutations anyway. (`cargo build/test --workspace` unifies
/// features and so compiles consensus with it; the mutations stay off unless a test sets them.)
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mutations {
    /// Commit on any QC, without the consecutive-view test (§4.7).
    pub commit_without_consecutive_views: bool,
    /// Commit when the QC's block and its parent have consecutive *heights* (§7 case 12).
    pub commit_on_heights: bool,
    /// Never emit [`Action::PersistSafety`](crate::Action::PersistSafety) (a node forgets its
    /// votes when it restarts).
    pub skip_persist: bool,
    /// Voting rule on the lock relaxed to `justify.view ≥ lock.view − 1`.
    pub relax_lock: bool,
    /// Leader proposes after a quorum of statuses, without H2/H3 (§7 case 11).
    pub propose_on_quorum_statuses: bool,
    /// Allow voting in a view after timing out in it (§7 case 20).
    pub vote_after_timeout: bool,
    /// The backoff exponent never resets: it counts every view entered by a TC since start, so
    /// progress no longer brings the view timer back to `τ_base` (issue 6's stall).
    pub backoff_never_resets: bool,
}

impl Mutations {
    /// The voting rule's bounds `(last_timeout_view, lock_view)` as the vote mutations bend them:
    /// `vote_after_timeout` lowers the first to view 0 (below every view the rule can accept, as
    /// `view > last_voted_view ≥ 0` is checked first), `relax_lock` lowers the second by one.
    pub(crate) fn vote_bounds(&self, last_timeout_view: View, lock_view: View) -> (View, View) {
        let last_timeout_view = if self.vote_after_timeout {
            View(0)
        } else {
            last_timeout_view
        };
        let lock_view = if self.relax_lock {
            lock_view.prev()
        } else {
            lock_view
        };
        (last_timeout_view, lock_view)
    }

    /// Whether the commit mutations let `qc` commit its parent without the consecutive-view
    /// test of §4.7.
    pub(super) fn commits(&self, qc: &QuorumCert) -> bool {
        (self.commit_without_consecutive_views && qc.view().0 > 0)
            || (self.commit_on_heights && qc.data.height.0 > 1)
    }
}

impl<P: FaultPolicy> Core<P> {
    /// `propose_on_quorum_statuses`: the leader may propose once it (with itself) has statuses
    /// from a quorum, without H2/H3.
    pub(super) fn proposes_on_quorum_statuses(&self) -> bool {
        if !self.cfg.mutations.propose_on_quorum_statuses {
            return false;
        }
        let power: u64 = self
            .leader_state
            .reported
            .iter()
            .chain(std::iter::once(&self.cfg.me))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|i| self.vs.power(*i))
            .sum();
        power >= self.vs.quorum()
    }

    /// `backoff_never_resets`: the backoff gap counts every TC-entered view since start instead
    /// of the production `gap`.
    pub(super) fn mutated_backoff_gap(&self, gap: u64) -> u64 {
        if self.cfg.mutations.backoff_never_resets {
            self.counters.views_via_tc
        } else {
            gap
        }
    }
}
