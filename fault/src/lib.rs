//! # fault — the fault-tolerance policy of bftnode
//!
//! [`FaultTolerance`] implements [`consensus::FaultPolicy`], the hooks the sans-IO core calls
//! inline from `Core::handle`. Every decision is a pure function of the calls made so far and
//! their arguments (time enters only as `now`), so the simulator replays it exactly.
//!
//! ## Leader election (PROTOCOL.md §6.3, module `election`)
//!
//! `leader(v)` is plain round robin `(v + epoch) mod n` when no committed block (height ≥ 1)
//! has view `≤ v − X`, and when the latest known commit is older than `v − Y` (stall).
//! Otherwise it is drawn from the reputation of the `W` committed blocks ending at the cut
//! `A(v)` = highest committed block with view `≤ v − X` (module `election` has the numbered
//! rule):
//!
//! - `failed_i`: appearances in `skipped_leaders` (plus one per committed E4 against `i`),
//!   `proposed_i`: blocks proposed, `voted_i`: appearances in justify signer sets;
//! - weight 0 if convicted by safety evidence committed at or before the cut, if its **last
//!   slot failed** (the latest block of the window naming it in `skipped_leaders` is above the
//!   latest it proposed), if `100·failed > θ·(failed + proposed)`, or if it is **silent** (no
//!   proposal and no vote in a window of ≥ n blocks); else 100 if `proposed + voted > 0`,
//!   else 10;
//! - at most `f = ⌊(n−1)/3⌋` validators get weight 0 (convicted, then last slot failed, then
//!   worst failure ratio by integer cross-multiplication, then silent; ties by lower index), so
//!   at least `n − f` remain (§7 case 24);
//! - on every `R`-th view: rotation over the validators of non-zero weight; otherwise
//!   `r = u128(BLAKE3("HS2/v1/leader" ‖ chain_id ‖ epoch ‖ v ‖ A(v).id)[..16]) mod Σw` and the
//!   leader is the first index whose cumulative weight exceeds `r`.
//!
//! A crashed or partitioned validator is out of the schedule about `X` views after its first
//! failed slot is committed, on every node alike, and stays out while it is silent (issue 6).
//!
//! Only committed data and integer arithmetic enter, so nodes whose committed prefixes reach
//! past `v − X` agree (§7 case 23). The weight table of each of the last `cached_cuts` cuts is
//! built on commit from a sliding window (`O(n + |block|)` per commit plus an `O(n log n)`
//! sort), so `leader` costs one BLAKE3 call and a binary search.
//!
//! Replay at start: restore the conviction record ([`FaultTolerance::restore_convictions`]) and
//! the stored evidence ([`FaultTolerance::restore_committed_evidence`] for items a block
//! committed, [`FaultTolerance::restore_evidence`] for pending ones), then feed `on_commit` at
//! least [`FaultTolerance::replay_depth`] committed blocks (in height order) so every cut the
//! node will use sees its full window; a node with less history may disagree on leaders
//! (liveness only, like any lagging node).
//!
//! ## Evidence pool (PROTOCOL.md §6.2, module `pool`)
//!
//! Evidence given to `on_evidence` is already verified by the core; [`verify`] is offered to
//! third parties. Items are deduplicated by `(offender, kind, view)`, bounded in total and per
//! offender, pending until a committed block carries them, and dropped when pending and older
//! than `evidence_expiry_views` below the latest committed view. `evidence_for_block` returns
//! pending items only (safety kinds first, then by view, offender, kind). An item carried by an
//! uncommitted ancestor may be proposed again; committing it twice is harmless (the pool and
//! the conviction record keep the first).
//!
//! ## Graduated response (module `reputation`)
//!
//! `Isolated` (weight 0 in the latest cut) > `Suspected` (recent local faults) >
//! `Rehabilitated` (was isolated, weight back, clean window) > `Active`. Local observations never
//! influence the election. `is_proven_byzantine(v)` is true once verified safety evidence
//! (E1, E2, E3, invalid proposal — not E4) against `v` was accepted, pending or committed.
//!
//! ## Accountability (PROTOCOL.md §6.6, module [`accounting`])
//!
//! [`Accountant`] turns committed blocks into each block's misbehaviour list — the evidence it
//! commits plus the downtime records derived at its height from QC signer bitmaps — and a
//! committed [`Standing`] per validator (quarantined → isolated → rehabilitated). Deterministic
//! from committed history; the node runs it at commit, hands the list to the application (the
//! slashing hook) and persists its state in the same atomic batch. It does not feed the leader
//! function (the election has its own committed inputs, above).
//!
//! ## Health (module `health`)
//!
//! `UnderAttack` > `Partitioned` > `Recovering` > `Normal`; see [`FaultConfig`] for thresholds.
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod accounting;
mod config;
mod election;
mod health;
mod pool;
mod reputation;

pub use accounting::{
    Accountant, AccountingError, AccountingState, DowntimeRecord, Misbehaviour, Offence, Standing,
};
pub use config::{
    FaultConfig, MAX_DOWNTIME_WINDOW, MAX_HISTORY_SLACK, MAX_REPLAY_DEPTH, MAX_WINDOW,
    MIN_DEFAULT_WINDOW,
};
pub use election::{ACTIVE_WEIGHT, IDLE_WEIGHT};
pub use health::MAX_SIGNALS;
pub use pool::EVIDENCE_KINDS;

use consensus::{
    Block, BlockId, Evidence, EvidenceError, EvidenceKind, FaultPolicy, Health, HealthInputs,
    Height, InvalidReason, Millis, ValidatorIndex, ValidatorSet, ValidatorStatus, View,
};
use election::Election;
use health::HealthMonitor;
use pool::EvidencePool;
use reputation::Reputation;

/// Verify `evidence` with nothing but the validator set of its `(chain_id, epoch)`
/// (PROTOCOL.md §6.2): a wrapper of [`Evidence::verify`] for third parties.
/// Errors: [`EvidenceError`].
pub fn verify(evidence: &Evidence, validators: &ValidatorSet) -> Result<(), EvidenceError> {
    evidence.verify(validators)
}

/// The fault-tolerance policy: reputation-based leader election with isolation, the evidence
/// pool, graduated response and health (see the crate doc).
#[derive(Debug)]
pub struct FaultTolerance {
    n: usize,
    election: Election,
    pool: EvidencePool,
    reputation: Reputation,
    health: HealthMonitor,
}

impl FaultTolerance {
    /// A policy for `validators` with parameters `cfg`. No history: every view uses round robin
    /// until a block of height ≥ 1 with view `≤ v − X` is committed.
    pub fn new(validators: &ValidatorSet, cfg: FaultConfig) -> Self {
        let n = validators.len().max(1);
        FaultTolerance {
            n,
            election: Election::new(validators, &cfg),
            pool: EvidencePool::new(n, &cfg),
            reputation: Reputation::new(n, &cfg),
            health: HealthMonitor::new(&cfg),
        }
    }

    /// Committed blocks to replay through `on_commit` at start (`W + history_slack`), so every
    /// cut the node will use sees its full window.
    pub fn replay_depth(&self) -> usize {
        self.election.replay_depth()
    }

    /// The election weights used for `view` (index order, 0 = excluded), or `None` when `view`
    /// uses the round-robin fallback (PROTOCOL.md §6.3).
    pub fn leader_weights(&self, view: View) -> Option<Vec<u64>> {
        self.election.weights(view)
    }

    /// Per validator index, the height of the block that first committed safety evidence
    /// against it (`None`: never). The leader function depends on it for all time, further back
    /// than any replay (issue 7 finding 3): the node persists it with every commit that changes
    /// it and hands it back through [`FaultTolerance::restore_convictions`] at start.
    pub fn convictions(&self) -> &[Option<Height>] {
        self.election.convictions()
    }

    /// Restore a conviction record saved from [`FaultTolerance::convictions`], before the
    /// committed blocks are replayed (a replayed conviction keeps the lower height). Entries
    /// beyond the validator set are ignored.
    pub fn restore_convictions(&mut self, record: &[Option<Height>]) {
        for (i, h) in record.iter().enumerate() {
            if let (Some(h), Ok(i)) = (h, u16::try_from(i)) {
                self.election.convict(ValidatorIndex(i), *h);
            }
        }
    }

    /// Put evidence stored before a restart back into the pool as pending (after verifying
    /// it; no health signal: it is not new). Replaying the committed blocks then marks the
    /// committed ones, and the pool's expiry drops the stale ones at the first replayed commit.
    /// Returns whether it was kept.
    pub fn restore_evidence(&mut self, evidence: &Evidence, validators: &ValidatorSet) -> bool {
        // Dedupe before the signature checks: a held key would be refused anyway.
        self.pool.state(&evidence.key()).is_none()
            && evidence.verify(validators).is_ok()
            && self.pool.add_pending(evidence)
    }

    /// Put evidence that a block committed at `height` before a restart back into the pool as
    /// committed (after verifying it), so it is neither proposed nor committed again, and
    /// reads as committed exactly as before the restart, however old the block (the replay
    /// marks only items of the last `replay_depth` blocks). Returns whether it was kept.
    pub fn restore_committed_evidence(
        &mut self,
        evidence: &Evidence,
        height: Height,
        validators: &ValidatorSet,
    ) -> bool {
        self.pool.state(&evidence.key()) != Some(true)
            && evidence.verify(validators).is_ok()
            && self.pool.add_committed(evidence, height)
    }

    /// Evidence items currently held (pending and committed), at most `max_evidence`.
    pub fn evidence_held(&self) -> usize {
        self.pool.len()
    }

    /// Whether evidence with this dedupe key is held: `Some(true)` committed, `Some(false)`
    /// pending, `None` not held.
    pub fn evidence_state(&self, key: (ValidatorIndex, EvidenceKind, View)) -> Option<bool> {
        self.pool.state(&key)
    }
}

impl FaultPolicy for FaultTolerance {
    fn leader(&self, view: View) -> ValidatorIndex {
        self.election.leader(view)
    }

    fn on_commit(&mut self, block: &Block, id: BlockId) {
        if !self.election.begin_commit(block) {
            return;
        }
        self.reputation.observe_view(block.view);
        if block.height.0 == 0 {
            return;
        }
        let mut nuisance = Vec::new();
        for e in &block.evidence {
            self.pool.add_committed(e, block.height);
            if e.kind().is_safety() {
                self.election.convict(e.offender(), block.height);
            } else {
                nuisance.push(e.offender());
            }
        }
        self.election.push(block, id, nuisance);
        self.reputation
            .observe_weights(self.election.latest_weights());
        self.pool.expire(block.view);
    }

    fn on_evidence(&mut self, evidence: &Evidence, now: Millis) -> bool {
        let new = self.pool.add_pending(evidence);
        if new {
            self.health.on_evidence(now);
        }
        new
    }

    fn knows_evidence(&self, key: (ValidatorIndex, EvidenceKind, View)) -> bool {
        self.pool.state(&key).is_some()
    }

    fn evidence_for_block(&self, max: usize) -> Vec<Evidence> {
        self.pool.for_block(max)
    }

    fn on_invalid(&mut self, from: ValidatorIndex, _reason: InvalidReason, now: Millis) {
        self.reputation.on_invalid(from);
        self.health.on_invalid(now);
    }

    fn on_view_end(&mut self, view: View, leader: ValidatorIndex, certified: bool, _now: Millis) {
        if certified {
            self.reputation.observe_view(view);
        } else {
            self.reputation.on_missed(view, leader);
        }
    }

    fn is_proven_byzantine(&self, v: ValidatorIndex) -> bool {
        self.pool.is_proven(v)
    }

    fn health(&self, inputs: &HealthInputs, now: Millis) -> Health {
        self.health.health(inputs, now)
    }

    fn validator_statuses(&self) -> Vec<ValidatorStatus> {
        let counts = self.election.latest_counts();
        let weights = self.election.latest_weights();
        (0..self.n)
            .map(|i| {
                let index = ValidatorIndex(i as u16);
                let weight = weights.get(i).copied().unwrap_or(0);
                ValidatorStatus {
                    index,
                    state: self.reputation.state(index, weight),
                    weight,
                    proposed: counts.proposed.get(i).copied().unwrap_or(0),
                    failed: counts.failed.get(i).copied().unwrap_or(0),
                    voted: counts.voted.get(i).copied().unwrap_or(0),
                    invalid_messages: self.reputation.invalid_total(index),
                    evidence: self.pool.count_against(index),
                    convicted: self.election.is_convicted(index),
                }
            })
            .collect()
    }

    fn evidence(&self, max: usize) -> Vec<Evidence> {
        self.pool.known(max)
    }

    fn evidence_counts(&self) -> Vec<(EvidenceKind, u64)> {
        self.pool.counts_by_kind()
    }
}
