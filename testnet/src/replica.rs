//! The replica abstraction the simulator drives: an honest [`Core`] behind a small object-safe
//! trait, so that the fault policy is switchable and Byzantine wrappers compose.

pub use consensus::core::{Core, Recovered};
use consensus::{
    Action, Block, BlockId, Config, CoreStatus, Event, EvidenceKind, FaultPolicy, Health,
    HealthInputs, InvalidReason, Millis, PrivateKey, Resources, RoundRobin, SafetyData,
    ValidatorIndex, ValidatorSet, ValidatorStatus, View, evidence::Evidence,
};
use std::sync::Arc;

/// Anything the simulator can drive like a core.
pub trait Replica {
    /// Feed one event, get the ordered actions.
    fn handle(&mut self, now: Millis, event: Event) -> Vec<Action>;
    /// Snapshot for the oracles.
    fn status(&self, now: Millis) -> CoreStatus;
    /// Sizes of the peer-fed state, for the resource oracle.
    fn resources(&self) -> Resources;
}

impl<P: FaultPolicy> Replica for Core<P> {
    fn handle(&mut self, now: Millis, event: Event) -> Vec<Action> {
        Core::handle(self, now, event)
    }
    fn status(&self, now: Millis) -> CoreStatus {
        Core::status(self, now)
    }
    fn resources(&self) -> Resources {
        Core::resources(self)
    }
}

/// Which [`FaultPolicy`] honest cores run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// Scripted leaders for the first views (Twins), round robin afterwards.
    Scripted(Arc<Vec<ValidatorIndex>>),
    /// `consensus::RoundRobin` (baseline).
    RoundRobin,
    /// `fault::FaultTolerance` with default configuration: the production policy (reputation,
    /// isolation, evidence pool, health), exercised inline by every simulated replica.
    FaultTolerance,
}

impl PolicyKind {
    /// From `SIM_POLICY` (`rr` for round robin), default the production `FaultTolerance`.
    pub fn from_env() -> Self {
        match std::env::var("SIM_POLICY").as_deref() {
            Ok("rr") | Ok("round_robin") => PolicyKind::RoundRobin,
            _ => PolicyKind::FaultTolerance,
        }
    }
}

/// Build a core from a (possibly recovered) persisted state. Errors: the core's constructor
/// error, rendered.
pub fn build_core(
    policy: PolicyKind,
    cfg: Config,
    vs: &ValidatorSet,
    key: PrivateKey,
    safety: SafetyData,
    recovered: Recovered,
) -> Result<Box<dyn Replica>, String> {
    match policy {
        PolicyKind::Scripted(table) => {
            let p = Scripted {
                table: table.clone(),
                rr: RoundRobin::new(vs),
            };
            Core::new(cfg, vs.clone(), key, p, safety, recovered)
                .map(|c| Box::new(c) as Box<dyn Replica>)
                .map_err(|e| format!("{e:?}"))
        }
        PolicyKind::FaultTolerance => {
            let p = fault::FaultTolerance::new(vs, fault::FaultConfig::default());
            Core::new(cfg, vs.clone(), key, p, safety, recovered)
                .map(|c| Box::new(c) as Box<dyn Replica>)
                .map_err(|e| format!("{e:?}"))
        }
        PolicyKind::RoundRobin => {
            let p = RoundRobin::new(vs);
            Core::new(cfg, vs.clone(), key, p, safety, recovered)
                .map(|c| Box::new(c) as Box<dyn Replica>)
                .map_err(|e| format!("{e:?}"))
        }
    }
}

/// Round robin with a scripted leader table for views `0..table.len()` (Twins scenarios choose
/// the leader of every view).
#[derive(Debug)]
pub struct Scripted {
    table: Arc<Vec<ValidatorIndex>>,
    rr: RoundRobin,
}

impl FaultPolicy for Scripted {
    fn leader(&self, view: View) -> ValidatorIndex {
        match self.table.get(view.0 as usize) {
            Some(l) => *l,
            None => self.rr.leader(view),
        }
    }
    fn on_commit(&mut self, block: &Block, id: BlockId) {
        self.rr.on_commit(block, id)
    }
    fn on_evidence(&mut self, evidence: &Evidence, now: Millis) -> bool {
        self.rr.on_evidence(evidence, now)
    }
    fn evidence_for_block(&self, max: usize) -> Vec<Evidence> {
        self.rr.evidence_for_block(max)
    }
    fn on_invalid(&mut self, from: ValidatorIndex, reason: InvalidReason, now: Millis) {
        self.rr.on_invalid(from, reason, now)
    }
    fn on_view_end(&mut self, view: View, leader: ValidatorIndex, certified: bool, now: Millis) {
        self.rr.on_view_end(view, leader, certified, now)
    }
    fn is_proven_byzantine(&self, v: ValidatorIndex) -> bool {
        self.rr.is_proven_byzantine(v)
    }
    fn health(&self, inputs: &HealthInputs, now: Millis) -> Health {
        self.rr.health(inputs, now)
    }
    fn validator_statuses(&self) -> Vec<ValidatorStatus> {
        self.rr.validator_statuses()
    }
    fn evidence(&self, max: usize) -> Vec<Evidence> {
        self.rr.evidence(max)
    }
    fn evidence_counts(&self) -> Vec<(EvidenceKind, u64)> {
        self.rr.evidence_counts()
    }
}
