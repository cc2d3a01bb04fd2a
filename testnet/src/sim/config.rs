//! What a simulation run is given ([`SimConfig`], [`Timing`], scheduled [`Control`]s) and what it
//! returns ([`Report`], [`Failure`]).

use crate::byzantine::ByzKind;
use crate::net::{InstanceId, NetModel};
use crate::oracle::Violation;
use crate::replica::PolicyKind;
use consensus::{Config, Height, Millis, Mutations, ValidatorIndex};
use std::fmt;

/// Core timing parameters used in the simulation (ms).
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Δ_est.
    pub delta_ms: u64,
    /// τ_base.
    pub timeout_base_ms: u64,
    /// τ_max.
    pub timeout_max_ms: u64,
    /// e_max.
    pub backoff_exponent_max: u32,
    /// τ_resend.
    pub resend_ms: u64,
    /// Block-sync timeout.
    pub sync_timeout_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            delta_ms: 50,
            timeout_base_ms: 300,
            timeout_max_ms: 1_000,
            backoff_exponent_max: 4,
            resend_ms: 300,
            sync_timeout_ms: 500,
        }
    }
}

/// Where an armed crash hits inside the next action batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Right after the first `PersistSafety` of a batch that also sends (persisted, not sent).
    AfterPersist,
    /// Right before the first `PersistSafety` of a batch (signed in memory, nothing durable).
    BeforePersist,
    /// After the k-th action (1-based) of the next batch with more than k actions.
    AfterAction(usize),
    /// Right after broadcasting a timeout (what follows in the batch is lost).
    AfterTimeout,
}

/// Scripted control events.
#[derive(Clone, Debug)]
pub enum Control {
    /// Crash an instance (its disk survives).
    Crash(InstanceId),
    /// Restart a crashed instance from its disk.
    Restart(InstanceId),
    /// Arm a crash inside the instance's next matching action batch.
    ArmCrash(InstanceId, CrashPoint),
    /// Partition instances into groups (unlisted ones are isolated).
    Partition(Vec<Vec<InstanceId>>),
    /// Remove the partition.
    Heal,
    /// Restart the instance automatically this many ms after each crash (`None`: don't).
    AutoRestart(InstanceId, Option<Millis>),
    /// Replace the network model (keeps the partition).
    SetNet(NetModel),
    /// Healing suffix: heal, restore `net`, restart every crashed instance, disarm crashes.
    HealAll(NetModel),
}

/// What an instance is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An honest core (oracles apply).
    Honest,
    /// One of two honest cores sharing a key (the identity counts as Byzantine).
    Twin,
    /// A Byzantine wrapper around a core.
    Byzantine(ByzKind),
}

/// Simulation parameters.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Scenario name (for failure messages).
    pub scenario: String,
    /// RNG seed.
    pub seed: u64,
    /// Number of validators.
    pub n: usize,
    /// Fault policy of the cores.
    pub policy: PolicyKind,
    /// Core timing.
    pub timing: Timing,
    /// Initial network.
    pub net: NetModel,
    /// Byzantine validators.
    pub byzantine: Vec<(ValidatorIndex, ByzKind)>,
    /// Validators run as twin pairs (two instances each).
    pub twins: Vec<ValidatorIndex>,
    /// Mutations switched on in honest cores.
    pub mutations: Mutations,
    /// Check oracles after every event.
    pub oracles: bool,
    /// Validators never started (down from before t = 0, empty disks; a `Restart` or
    /// `HealAll` starts them).
    pub never_started: Vec<ValidatorIndex>,
    /// Payload size of every proposal (bytes): a 12-byte tag (proposing instance, view), then
    /// the run's seed repeated. Block ids, and the reputation draws seeded by them, then differ
    /// between seeds even when every QC has the same signers (as when f validators are dead
    /// and a quorum needs every live vote). 0 (the default): the tag alone.
    pub payload_bytes: usize,
    /// Run the resource oracle ([`crate::resources`]) after every event of an honest instance.
    pub resource_oracle: bool,
    /// With the resource oracle: also check signature work (`SIG_CHECKS`: no check for a bare
    /// TC that cannot matter, a bounded average per message). Only the TC-flood scenario sets
    /// it until the fix of issue 7 finding 5 lands (the core still verifies every bare TC).
    pub sig_work_oracle: bool,
    /// K, `Config::view_window` of every core (the resource bounds scale with it).
    pub view_window: u64,
    /// Every validator starts in this view, as if it had voted in it (a fresh chain reached at
    /// a high view; 0: genesis). Lets scenarios reach view-dependent encodings quickly.
    pub start_view: u64,
    /// Whether honest cores run the node's double-sign check at start (PROTOCOL.md §4.10:
    /// `double_sign_check_views` 8, `double_sign_check_ms` = τ_base), on every start and
    /// restart. Default on; off only where a scenario measures a steady-state rate against a
    /// reference ([`crate::liveness`]).
    pub double_sign_check: bool,
}

impl SimConfig {
    /// Defaults: round robin, default timing, 10–30 ms jittery network, all honest.
    pub fn new(scenario: &str, seed: u64, n: usize) -> Self {
        SimConfig {
            scenario: scenario.to_string(),
            seed,
            n,
            policy: PolicyKind::from_env(),
            timing: Timing::default(),
            net: NetModel::jittery(10, 20),
            byzantine: Vec::new(),
            twins: Vec::new(),
            mutations: Mutations::default(),
            oracles: true,
            never_started: Vec::new(),
            payload_bytes: 0,
            resource_oracle: false,
            sig_work_oracle: false,
            view_window: Config::new(ValidatorIndex(0)).view_window,
            start_view: 0,
            double_sign_check: true,
        }
    }
}

/// A failed run: seed, scenario, the violation, and how to replay it.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Seed.
    pub seed: u64,
    /// Scenario.
    pub scenario: String,
    /// What broke.
    pub violation: Violation,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulation failed: scenario={} seed={}: {}\n  replay: SIM_SEED={} SIM_SCENARIO={} cargo test --release -p testnet --test sim -- --exact replay --nocapture",
            self.scenario, self.seed, self.violation, self.seed, self.scenario
        )
    }
}

impl std::error::Error for Failure {}

/// Summary of a finished run.
#[derive(Clone, Debug)]
pub struct Report {
    /// BLAKE3 over every delivered event and every action.
    pub trace_hash: [u8; 32],
    /// Events handled by cores.
    pub events: u64,
    /// Highest height committed by an honest instance.
    pub max_height: Height,
    /// Lowest committed height among honest instances.
    pub min_height: Height,
    /// Evidence items produced by honest instances.
    pub evidence: usize,
    /// Equivocations delivered to honest instances.
    pub equivocations: usize,
    /// Virtual end time.
    pub end: Millis,
    /// With a heal time: the longest any honest instance waited after the heal for its first
    /// commit (ms), i.e. how much of the healing suffix the liveness check needed.
    pub heal_to_commit: Option<Millis>,
}
