//! The fault-tolerance hooks the core calls inline, from inside [`crate::Core::handle`].
//!
//! The `fault` crate implements [`FaultPolicy`] (reputation-based leader election with isolation,
//! the evidence pool, graduated response and health); [`RoundRobin`] is the baseline used by unit
//! tests. Every method is a pure function of its inputs and prior calls: no clock, no randomness,
//! so the simulator exercises the policy deterministically.

use crate::block::Block;
use crate::evidence::{Evidence, EvidenceKind};
use crate::types::{BlockId, ValidatorIndex, View};
use crate::validators::ValidatorSet;
use serde::Serialize;

/// Monotonic time in milliseconds, supplied by the driver with every event.
pub type Millis = u64;

/// Why a message from a validator was rejected (counted per validator; the network layer may
/// also penalise the peer that relayed it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum InvalidReason {
    /// A signature did not verify.
    BadSignature,
    /// An embedded QC or TC did not verify.
    BadCertificate,
    /// A proposal signed by a validator that is not `leader(view)`.
    WrongLeader,
    /// A structurally invalid block (parent/justify/height/view/skipped leaders/payload).
    InvalidBlock,
    /// A proposal missing the TC it needs, or carrying one for the wrong view.
    MissingTc,
    /// Invalid evidence carried in a block or gossiped.
    BadEvidence,
    /// A message outside the accepted view window. Not produced today: such messages are
    /// ignored without blame (PROTOCOL.md §4.2 rule 7); kept for the wire of the fault policy.
    OutOfWindow,
    /// The delivering peer or the message's author is not in the validator set (relaying a
    /// validator's message is allowed: its signature binds the author).
    BadSender,
    /// A block-sync response that fails verification.
    BadSyncResponse,
}

impl InvalidReason {
    /// Whether the direct sender is faulty for sure: an honest validator signs correctly and
    /// forwards only certificates it verified, under the one signature rule every node applies.
    /// Other reasons (wrong leader, stale view, …) can come from an honest node whose view of
    /// the chain differs from ours, so they are not held against the sender's connection.
    pub fn proves_sender_faulty(self) -> bool {
        matches!(
            self,
            InvalidReason::BadSignature | InvalidReason::BadCertificate
        )
    }
}

/// Liveness/health state derived in the core (issue #2, "health").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Health {
    /// Views advance with QCs.
    Normal,
    /// No quorum progress for several views, or connected to less than a quorum.
    Partitioned,
    /// Fetching missing blocks (behind the network).
    Recovering,
    /// Evidence or invalid messages above the configured rate.
    UnderAttack,
}

/// Graduated response for one validator (issue #2, "graduated response").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ValidatorState {
    /// No recent faults.
    Active,
    /// Recent missed proposals or invalid messages (local observation, not used for election).
    Suspected,
    /// Excluded from leadership by committed history (committed evidence or reputation).
    Isolated,
    /// Was isolated; back after a clean window.
    Rehabilitated,
}

/// Per-validator fault status, exposed in [`crate::CoreStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ValidatorStatus {
    /// Index.
    pub index: ValidatorIndex,
    /// Current state.
    pub state: ValidatorState,
    /// Election weight from the latest committed cut (0 = excluded).
    pub weight: u64,
    /// Blocks proposed in the reputation window.
    pub proposed: u64,
    /// Appearances in `skipped_leaders` in the window.
    pub failed: u64,
    /// Appearances in justify signer sets in the window.
    pub voted: u64,
    /// Invalid messages seen from it (lifetime).
    pub invalid_messages: u64,
    /// Evidence items known against it.
    pub evidence: u64,
    /// Whether committed evidence exists against it.
    pub convicted: bool,
}

/// What the core tells the policy for health derivation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HealthInputs {
    /// Current view.
    pub current_view: View,
    /// Highest view with a QC the node knows.
    pub high_qc_view: View,
    /// Validators connected (including self), by voting power.
    pub connected_power: u64,
    /// Quorum power.
    pub quorum_power: u64,
    /// Whether block sync is in flight.
    pub syncing: bool,
}

/// Fault-tolerance policy consulted by the core during event handling.
pub trait FaultPolicy {
    /// The leader of `view`: a deterministic function of the committed history fed through
    /// [`FaultPolicy::on_commit`] (PROTOCOL.md §4.3, §6.3).
    fn leader(&self, view: View) -> ValidatorIndex;
    /// A block was committed (called in height order, exactly once per height, also while
    /// replaying history at start).
    fn on_commit(&mut self, block: &Block, id: BlockId);
    /// Verified evidence, detected locally or received. Returns `true` if it is new.
    fn on_evidence(&mut self, evidence: &Evidence, now: Millis) -> bool;
    /// Whether evidence with dedupe key `key` (`Evidence::key`: offender, kind, view) is held,
    /// i.e. [`FaultPolicy::on_evidence`] would return `false` for any item with that key. The
    /// core asks before verifying gossiped evidence, so a replay costs no signature check
    /// (issue 8 finding 2). Must be cheap (no signature work). The default, `false`, only
    /// gives up that saving.
    fn knows_evidence(&self, key: (ValidatorIndex, EvidenceKind, View)) -> bool {
        let _ = key;
        false
    }
    /// Pending (verified, uncommitted) evidence to put in a block, at most `max` items.
    fn evidence_for_block(&self, max: usize) -> Vec<Evidence>;
    /// A validator sent an invalid message.
    fn on_invalid(&mut self, from: ValidatorIndex, reason: InvalidReason, now: Millis);
    /// View `view` ended, either certified (its leader's block got a QC) or not (TC / join).
    fn on_view_end(&mut self, view: View, leader: ValidatorIndex, certified: bool, now: Millis);
    /// Whether we hold verified safety evidence against `v` (a proven-Byzantine leader whose
    /// views we time out at once, before the evidence is even committed).
    fn is_proven_byzantine(&self, v: ValidatorIndex) -> bool;
    /// Health from the core's inputs.
    fn health(&self, inputs: &HealthInputs, now: Millis) -> Health;
    /// Per-validator status.
    fn validator_statuses(&self) -> Vec<ValidatorStatus>;
    /// Known evidence (pending and committed), newest last, at most `max`.
    fn evidence(&self, max: usize) -> Vec<Evidence>;
    /// Counts of known evidence by kind.
    fn evidence_counts(&self) -> Vec<(EvidenceKind, u64)>;
}

/// Baseline policy: `leader(v) = (v + epoch) mod n`, evidence kept in memory, no reputation.
#[derive(Debug)]
pub struct RoundRobin {
    n: u64,
    epoch: u64,
    evidence: Vec<Evidence>,
}

impl RoundRobin {
    /// Round robin over `vs`.
    pub fn new(vs: &ValidatorSet) -> Self {
        RoundRobin {
            n: vs.len() as u64,
            epoch: vs.domain().epoch().0,
            evidence: Vec::new(),
        }
    }
}

impl FaultPolicy for RoundRobin {
    fn leader(&self, view: View) -> ValidatorIndex {
        ValidatorIndex((view.0.wrapping_add(self.epoch) % self.n) as u16)
    }
    fn on_commit(&mut self, _block: &Block, _id: BlockId) {}
    fn on_evidence(&mut self, evidence: &Evidence, _now: Millis) -> bool {
        if self.evidence.iter().any(|e| e.key() == evidence.key()) {
            return false;
        }
        self.evidence.push(evidence.clone());
        true
    }
    fn knows_evidence(&self, key: (ValidatorIndex, EvidenceKind, View)) -> bool {
        self.evidence.iter().any(|e| e.key() == key)
    }
    fn evidence_for_block(&self, _max: usize) -> Vec<Evidence> {
        Vec::new()
    }
    fn on_invalid(&mut self, _from: ValidatorIndex, _reason: InvalidReason, _now: Millis) {}
    fn on_view_end(
        &mut self,
        _view: View,
        _leader: ValidatorIndex,
        _certified: bool,
        _now: Millis,
    ) {
    }
    fn is_proven_byzantine(&self, _v: ValidatorIndex) -> bool {
        false
    }
    fn health(&self, _inputs: &HealthInputs, _now: Millis) -> Health {
        Health::Normal
    }
    fn validator_statuses(&self) -> Vec<ValidatorStatus> {
        Vec::new()
    }
    fn evidence(&self, max: usize) -> Vec<Evidence> {
        let skip = self.evidence.len().saturating_sub(max);
        self.evidence[skip..].to_vec()
    }
    fn evidence_counts(&self) -> Vec<(EvidenceKind, u64)> {
        Vec::new()
    }
}
