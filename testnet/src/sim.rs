//! The deterministic discrete-event simulator: virtual clock (ms), one seeded ChaCha8 RNG, an
//! event queue ordered by (time, sequence number), a network model, simulated disks,
//! crash/restart, Byzantine wrappers, Twins, and the oracles after every event.

use crate::byzantine::{ByzCtx, ByzKind, Byzantine};
use crate::disk::Disk;
use crate::net::{InstanceId, NetModel};
use crate::oracle::{Oracles, Violation};
use crate::replica::{PolicyKind, Replica, build_core};
use crate::resources::ResourceOracle;
use consensus::{
    Action, Block, BlockId, BlockResponse, Config, ConsensusMessage, Epoch, Event, Evidence,
    Height, Millis, Mutations, PrivateKey, SafetyData, ValidatorIndex, ValidatorInfo, ValidatorSet,
    View, encode,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
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

enum Item {
    Deliver {
        to: InstanceId,
        from_inst: InstanceId,
        from: ValidatorIndex,
        msg: ConsensusMessage,
    },
    Timer {
        inst: InstanceId,
        life: u32,
        timer: consensus::Timer,
    },
    Payload {
        inst: InstanceId,
        life: u32,
        view: View,
        payload: Vec<u8>,
    },
    FetchReq {
        server: InstanceId,
        client: InstanceId,
        life: u32,
        request_id: u64,
        request: consensus::BlockRequest,
    },
    FetchResp {
        client: InstanceId,
        life: u32,
        request_id: u64,
        from: ValidatorIndex,
        resp: Option<BlockResponse>,
    },
    Evidence {
        to: InstanceId,
        ev: Evidence,
    },
    Tick {
        inst: InstanceId,
        life: u32,
    },
    Control(Control),
}

struct Entry {
    at: Millis,
    seq: u64,
    item: Item,
}
impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        // Min-heap on (time, seq).
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// One simulated replica process.
pub struct Instance {
    /// Validator index (shared by twins).
    pub index: ValidatorIndex,
    /// Role.
    pub role: Role,
    key_seed: [u8; 32],
    /// The key of a Byzantine wrapper, derived once (deriving it per event costs a scalar
    /// multiplication).
    byz_key: Option<PrivateKey>,
    /// Persisted state.
    pub disk: Disk,
    core: Option<Box<dyn Replica>>,
    /// Incarnation (incremented by each crash).
    pub life: u32,
    byz: Option<Byzantine>,
    cfg: Config,
    armed: Option<CrashPoint>,
    auto_restart: Option<Millis>,
    lock_view: View,
    view: View,
    entered: BTreeMap<View, (Millis, bool, View)>,
    via_tc: u64,
}

impl Instance {
    /// Whether the instance is running.
    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }
    /// Status of a running instance.
    pub fn status(&self, now: Millis) -> Option<consensus::CoreStatus> {
        self.core.as_ref().map(|c| c.status(now))
    }
    /// Views entered (tracked for honest instances when `Sim::track_views`): view → (time,
    /// entered via TC, committed view at entry).
    pub fn entered(&self) -> &BTreeMap<View, (Millis, bool, View)> {
        &self.entered
    }
}

/// A proposal seen broadcast by an honest leader.
#[derive(Clone, Copy, Debug)]
pub struct ProposalRecord {
    /// When it was sent.
    pub at: Millis,
    /// Block id.
    pub id: BlockId,
    /// Parent id.
    pub parent: BlockId,
    /// Proposing instance.
    pub inst: InstanceId,
}

/// The simulator.
pub struct Sim {
    /// Configuration.
    pub cfg: SimConfig,
    /// The validator set.
    pub vs: ValidatorSet,
    /// Genesis id.
    pub genesis_id: BlockId,
    /// Instances.
    pub instances: Vec<Instance>,
    /// Current network model.
    pub net: NetModel,
    /// Oracles.
    pub oracles: Oracles,
    /// Current virtual time.
    pub now: Millis,
    rng: ChaCha8Rng,
    queue: BinaryHeap<Entry>,
    seq: u64,
    trace: blake3::Hasher,
    /// `SIM_LOG` set: every event of an honest instance and its actions go to stderr
    /// ([`crate::sim_log`]).
    log: bool,
    /// Events handled by cores.
    pub events: u64,
    /// First proposal per view by an honest instance.
    pub proposals: BTreeMap<View, ProposalRecord>,
    failure: Option<Failure>,
    /// Whether to track view entries (for L2 checks).
    pub track_views: bool,
    /// Twins-style partitions by message view: `view_groups[v][inst]` is the group of `inst`
    /// for messages of view `v`; views past the table are unrestricted.
    pub view_groups: Vec<Vec<usize>>,
    /// `view_groups` apply only before this time (the healing suffix starts there).
    pub view_groups_until: Millis,
    gossiped: BTreeSet<(consensus::Digest, InstanceId)>,
    /// Per instance: when its uplink is free again (µs), see `NetModel::uplink_bytes_per_ms`.
    uplink_free_us: Vec<u64>,
    /// The resource oracle, when `SimConfig::resource_oracle`.
    pub resources: Option<ResourceOracle>,
}

/// Deterministic key of validator number `i` in a run with `seed`.
pub fn key_seed(seed: u64, i: usize) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"bftnode/sim/key");
    h.update(&seed.to_le_bytes());
    h.update(&(i as u64).to_le_bytes());
    *h.finalize().as_bytes()
}

impl Sim {
    /// Build the validators, instances and cores and start them (Event::Start at t=0).
    ///
    /// # Panics
    /// If the core cannot be constructed from a fresh state.
    pub fn new(cfg: SimConfig) -> Sim {
        let seeds: Vec<[u8; 32]> = (0..cfg.n).map(|i| key_seed(cfg.seed, i)).collect();
        let infos: Vec<ValidatorInfo> = seeds
            .iter()
            .map(|s| ValidatorInfo {
                public_key: PrivateKey::from_seed(*s).public(),
                power: 1,
            })
            .collect();
        let vs = ValidatorSet::new("bftnode-sim", Epoch(0), infos).expect("validator set");
        // Key seed per validator index.
        let mut by_index: Vec<[u8; 32]> = vec![[0u8; 32]; cfg.n];
        for s in &seeds {
            let pk = PrivateKey::from_seed(*s).public();
            let i = vs.index_of(&pk).expect("own key");
            by_index[i.as_usize()] = *s;
        }
        let genesis = Block::genesis(vs.domain());
        let genesis_id = genesis.id(vs.domain());
        let mut instances = Vec::new();
        let byz: BTreeMap<ValidatorIndex, ByzKind> = cfg.byzantine.iter().copied().collect();
        for i in vs.indices() {
            let copies = if cfg.twins.contains(&i) { 2 } else { 1 };
            for _ in 0..copies {
                let role = if copies == 2 {
                    Role::Twin
                } else if let Some(k) = byz.get(&i) {
                    Role::Byzantine(*k)
                } else {
                    Role::Honest
                };
                let mut c = Config::new(i);
                c.delta_ms = cfg.timing.delta_ms;
                c.timeout_base_ms = cfg.timing.timeout_base_ms;
                c.silent_leader_ms = cfg.timing.timeout_base_ms;
                c.timeout_max_ms = cfg.timing.timeout_max_ms;
                c.backoff_exponent_max = cfg.timing.backoff_exponent_max;
                c.resend_ms = cfg.timing.resend_ms;
                c.sync_timeout_ms = cfg.timing.sync_timeout_ms;
                c.view_window = cfg.view_window;
                if role == Role::Honest {
                    c.mutations = cfg.mutations;
                    if cfg.double_sign_check {
                        c.double_sign_check_views = 8;
                        c.double_sign_check_ms = cfg.timing.timeout_base_ms;
                    }
                }
                if role == Role::Twin {
                    // Twins exist to equivocate: the key-in-use-elsewhere rule (§4.9) would
                    // silence them.
                    c.double_sign_window = 0;
                }
                instances.push(Instance {
                    index: i,
                    role,
                    key_seed: by_index[i.as_usize()],
                    byz_key: match role {
                        Role::Byzantine(_) => Some(PrivateKey::from_seed(by_index[i.as_usize()])),
                        _ => None,
                    },
                    disk: Disk::new(vs.domain()),
                    core: None,
                    life: 0,
                    byz: match role {
                        Role::Byzantine(k) => Some(Byzantine::new(k)),
                        _ => None,
                    },
                    cfg: c,
                    armed: None,
                    auto_restart: None,
                    lock_view: View(0),
                    view: View(0),
                    entered: BTreeMap::new(),
                    via_tc: 0,
                });
            }
        }
        let mut byz_ids: BTreeSet<ValidatorIndex> = byz.keys().copied().collect();
        byz_ids.extend(cfg.twins.iter().copied());
        let oracles = Oracles::new(vs.clone(), &genesis, instances.len(), byz_ids);
        let resources = cfg.resource_oracle.then(|| {
            ResourceOracle::new(
                vs.clone(),
                genesis_id,
                instances.len(),
                cfg.view_window,
                cfg.sig_work_oracle,
            )
        });
        if cfg.start_view > 0 {
            for ins in &mut instances {
                ins.disk.safety = Some(SafetyData {
                    last_voted_view: View(cfg.start_view),
                    ..SafetyData::genesis(genesis_id)
                });
            }
        }
        let mut sim = Sim {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            net: cfg.net.clone(),
            cfg,
            vs,
            genesis_id,
            instances,
            oracles,
            now: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            trace: blake3::Hasher::new(),
            log: std::env::var_os("SIM_LOG").is_some(),
            events: 0,
            proposals: BTreeMap::new(),
            failure: None,
            track_views: false,
            view_groups: Vec::new(),
            view_groups_until: Millis::MAX,
            gossiped: BTreeSet::new(),
            uplink_free_us: Vec::new(),
            resources,
        };
        sim.uplink_free_us = vec![0; sim.instances.len()];
        for i in 0..sim.instances.len() {
            if !sim.cfg.never_started.contains(&sim.instances[i].index) {
                sim.start(i);
            }
        }
        sim
    }

    /// Twins partitions by message view: view 0 is whole, and messages of view `k + 1` cross
    /// only within the groups `per_view[k]` (instances not listed are isolated). Applies until
    /// `view_groups_until`.
    pub fn partition_views<'a>(
        &mut self,
        per_view: impl IntoIterator<Item = &'a [Vec<InstanceId>]>,
    ) {
        let n_inst = self.n_instances();
        let mut view_groups = vec![vec![0usize; n_inst]];
        for groups in per_view {
            let mut g = vec![usize::MAX; n_inst];
            for (gi, members) in groups.iter().enumerate() {
                for &m in members {
                    g[m] = gi;
                }
            }
            view_groups.push(g);
        }
        self.view_groups = view_groups;
    }

    /// Number of instances.
    pub fn n_instances(&self) -> usize {
        self.instances.len()
    }

    /// Instance ids of validator `i` (two for a twin).
    pub fn instances_of(&self, i: ValidatorIndex) -> Vec<InstanceId> {
        (0..self.instances.len())
            .filter(|&k| self.instances[k].index == i)
            .collect()
    }

    /// Honest instance ids.
    pub fn honest(&self) -> Vec<InstanceId> {
        (0..self.instances.len())
            .filter(|&k| self.instances[k].role == Role::Honest)
            .collect()
    }

    fn push(&mut self, at: Millis, item: Item) {
        self.seq += 1;
        self.queue.push(Entry {
            at: at.max(self.now),
            seq: self.seq,
            item,
        });
    }

    /// Schedule a control event at `at`.
    pub fn schedule(&mut self, at: Millis, c: Control) {
        self.push(at, Item::Control(c));
    }

    /// Record a violation found outside the built-in oracles (first one wins).
    pub fn fail(&mut self, violation: Violation) {
        if self.failure.is_none() {
            self.failure = Some(Failure {
                seed: self.cfg.seed,
                scenario: self.cfg.scenario.clone(),
                violation,
            });
        }
    }

    fn start(&mut self, inst: InstanceId) {
        let now = self.now;
        let ins = &mut self.instances[inst];
        if ins.core.is_some() {
            return;
        }
        let safety = ins
            .disk
            .safety
            .clone()
            .unwrap_or_else(|| SafetyData::genesis(self.genesis_id));
        let recovered = ins.disk.recovered();
        let key = PrivateKey::from_seed(ins.key_seed);
        match build_core(
            self.cfg.policy.clone(),
            ins.cfg.clone(),
            &self.vs,
            key,
            safety,
            recovered,
        ) {
            Ok(c) => ins.core = Some(c),
            Err(e) => {
                let v = Violation {
                    invariant: "RESTART",
                    detail: format!("instance {inst} could not be rebuilt from its disk: {e}"),
                    at: now,
                };
                self.fail(v);
                return;
            }
        }
        if let Some(t) = self.instances[inst].byz.as_ref().and_then(|b| b.tick_ms()) {
            let life = self.instances[inst].life;
            self.push(now + t, Item::Tick { inst, life });
        }
        self.feed(inst, Event::Start);
        if self.cfg.oracles && self.instances[inst].role == Role::Honest {
            // The lock after a restart is what was recovered.
            if let Some(st) = self.instances[inst].status(now) {
                self.instances[inst].lock_view = st.lock_view;
            }
        }
    }

    fn crash(&mut self, inst: InstanceId) {
        let ins = &mut self.instances[inst];
        if ins.core.take().is_some() {
            ins.life += 1;
            ins.armed = None;
            self.trace.update(b"crash");
            self.trace.update(&(inst as u64).to_le_bytes());
            if let Some(d) = self.instances[inst].auto_restart {
                let at = self.now + d;
                self.push(at, Item::Control(Control::Restart(inst)));
            }
        }
    }

    fn hash_msg(&mut self, msg: &ConsensusMessage) {
        self.trace.update(&msg.encode());
    }

    /// Feed one event to an instance, apply its actions, run the oracles.
    fn feed(&mut self, inst: InstanceId, ev: Event) {
        let now = self.now;
        if self.instances[inst].core.is_none() {
            return;
        }
        self.events += 1;
        self.trace.update(&now.to_le_bytes());
        self.trace.update(&(inst as u64).to_le_bytes());
        match &ev {
            Event::Message { from, msg } => {
                self.trace.update(&from.0.to_le_bytes());
                self.trace.update(&msg.encode());
            }
            other => {
                self.trace.update(format!("{other:?}").as_bytes());
            }
        }
        let role = self.instances[inst].role;
        let index = self.instances[inst].index;
        let mut extra = Vec::new();
        if let Some(mut b) = self.instances[inst].byz.take()
            && let Some(key) = self.instances[inst].byz_key.as_ref()
        {
            let mut ctx = ByzCtx {
                now,
                me: index,
                key,
                vs: &self.vs,
                rng: &mut self.rng,
            };
            extra = b.inbound(&mut ctx, &ev);
            self.instances[inst].byz = Some(b);
        }
        let Some(core) = self.instances[inst].core.as_mut() else {
            return;
        };
        let checked = self.resources.is_some() && role == Role::Honest;
        let message = checked && matches!(ev, Event::Message { .. });
        let bare_tc = match &ev {
            Event::Message {
                msg: ConsensusMessage::TimeoutCert(tc),
                ..
            } if checked => Some((tc.clone(), core.resources().signatures_verified)),
            _ => None,
        };
        let before = (self.instances[inst].lock_view, self.instances[inst].view);
        let core = self.instances[inst].core.as_mut().expect("checked above");
        let logged = (self.log && role == Role::Honest).then(|| crate::sim_log::event(&ev));
        let mut actions = core.handle(now, ev);
        if let Some(ev) = logged {
            let acts: Vec<String> = actions.iter().filter_map(crate::sim_log::action).collect();
            let st = core.status(now);
            eprintln!(
                "{now:>6} [{inst}] {ev} => {} | view {} leader {} lock {} height {} held {} suspended {}",
                acts.join("; "),
                st.view.0,
                st.leader.0,
                st.lock_view.0,
                st.committed_height.0,
                st.signing_held,
                st.signing_suspended_until.0
            );
        }
        if let Some(mut b) = self.instances[inst].byz.take()
            && let Some(key) = self.instances[inst].byz_key.as_ref()
        {
            let mut ctx = ByzCtx {
                now,
                me: index,
                key,
                vs: &self.vs,
                rng: &mut self.rng,
            };
            actions = b.outbound(&mut ctx, actions);
            actions.extend(extra);
            self.instances[inst].byz = Some(b);
        }
        let honest = role == Role::Honest;
        self.apply(inst, actions);
        if self.cfg.oracles && honest {
            let life = self.instances[inst].life;
            if let Some(st) = self.instances[inst].status(now) {
                if let Err(v) = self.oracles.on_status(now, inst, life, &st) {
                    self.fail(v);
                }
                let ins = &mut self.instances[inst];
                ins.lock_view = st.lock_view;
                if st.view > ins.view && self.track_views {
                    let via_tc = st.counters.views_via_tc > ins.via_tc;
                    ins.entered
                        .insert(st.view, (now, via_tc, st.committed_view));
                }
                ins.via_tc = st.counters.views_via_tc;
                ins.view = st.view;
                if checked {
                    self.check_resources(inst, &st, message, bare_tc, before);
                }
            }
        }
    }

    /// Run the resource oracle after an event of honest `inst` (status `st`); `bare_tc`: the
    /// bare TC it received and its signature-check count before, with `before` = (lock view,
    /// current view) before the event.
    fn check_resources(
        &mut self,
        inst: InstanceId,
        st: &consensus::CoreStatus,
        message: bool,
        bare_tc: Option<(consensus::TimeoutCert, u64)>,
        before: (View, View),
    ) {
        let now = self.now;
        let Some(r) = self.instances[inst].core.as_ref().map(|c| c.resources()) else {
            return;
        };
        let life = self.instances[inst].life;
        let persisted = self.instances[inst].disk.blocks.len();
        let Some(o) = self.resources.as_mut() else {
            return;
        };
        let mut res = o.on_step(now, (inst, life, message), st, &r, persisted);
        if let (Ok(()), Some((tc, sigs))) = (&res, bare_tc) {
            res = o.on_bare_tc(now, inst, &tc, before, r.signatures_verified - sigs);
        }
        if let Err(v) = res {
            self.fail(v);
        }
    }

    fn hash_action(&mut self, a: &Action) {
        match a {
            Action::PersistSafety(s) => {
                self.trace.update(b"ps");
                self.trace.update(&encode(&**s));
            }
            Action::PersistBlock { block, .. } => {
                self.trace.update(b"pb");
                self.trace.update(&encode(&**block));
            }
            Action::Send { to, msg } => {
                self.trace.update(b"send");
                self.trace.update(&to.0.to_le_bytes());
                self.hash_msg(msg);
            }
            Action::Broadcast(msg) => {
                self.trace.update(b"bcast");
                self.hash_msg(msg);
            }
            Action::SetTimer { timer, at } => {
                self.trace.update(format!("timer{timer:?}@{at}").as_bytes());
            }
            Action::Commit { ids, .. } => {
                self.trace.update(b"commit");
                for id in ids {
                    self.trace.update(&id.0);
                }
            }
            Action::Evidence(e) => {
                self.trace.update(b"ev");
                self.trace.update(&encode(&**e));
            }
            Action::FetchBlocks {
                request_id,
                peer,
                request,
            } => {
                self.trace.update(b"fetch");
                self.trace.update(&request_id.to_le_bytes());
                self.trace.update(&peer.0.to_le_bytes());
                self.trace.update(&encode(request));
            }
            Action::RequestPayload { view, .. } => {
                self.trace.update(b"payload");
                self.trace.update(&view.0.to_le_bytes());
            }
            Action::SafetyViolation(s) => {
                self.trace.update(b"violation");
                self.trace.update(s.as_bytes());
            }
            Action::PeerMisbehaved { peer, reason } => {
                self.trace
                    .update(format!("misbehaved{}:{reason:?}", peer.0).as_bytes());
            }
        }
    }

    fn apply(&mut self, inst: InstanceId, actions: Vec<Action>) {
        let now = self.now;
        let len = actions.len();
        let sends_after_persist = {
            let p = actions
                .iter()
                .position(|a| matches!(a, Action::PersistSafety(_)));
            p.map(|p| {
                actions[p + 1..]
                    .iter()
                    .any(|a| matches!(a, Action::Send { .. } | Action::Broadcast(_)))
            })
        };
        for (k, a) in actions.into_iter().enumerate() {
            // Armed crash points.
            if let Some(cp) = self.instances[inst].armed {
                let hit_before = match cp {
                    CrashPoint::BeforePersist => matches!(a, Action::PersistSafety(_)),
                    _ => false,
                };
                if hit_before {
                    self.crash(inst);
                    return;
                }
            }
            let is_persist = matches!(a, Action::PersistSafety(_));
            let is_timeout = matches!(&a, Action::Broadcast(ConsensusMessage::Timeout(_)));
            if self.cfg.oracles && self.instances[inst].role == Role::Honest {
                // Only actions that really take effect are checked (a crash cuts the batch).
                let lock_before = self.instances[inst].lock_view;
                let index = self.instances[inst].index;
                let gid = self.genesis_id;
                if let Err(v) = self.oracles.on_actions(
                    now,
                    inst,
                    index,
                    lock_before,
                    std::slice::from_ref(&a),
                    &gid,
                ) {
                    self.fail(v);
                }
            }
            self.hash_action(&a);
            self.apply_one(inst, a, now);
            if let Some(cp) = self.instances[inst].armed {
                let hit_after = match cp {
                    CrashPoint::AfterPersist => is_persist && sends_after_persist == Some(true),
                    CrashPoint::AfterTimeout => is_timeout,
                    CrashPoint::AfterAction(n) => k + 1 == n && len > n,
                    CrashPoint::BeforePersist => false,
                };
                if hit_after {
                    self.crash(inst);
                    return;
                }
            }
            if self.instances[inst].core.is_none() {
                return;
            }
        }
    }

    fn apply_one(&mut self, inst: InstanceId, a: Action, now: Millis) {
        let me = self.instances[inst].index;
        let life = self.instances[inst].life;
        let honest = self.instances[inst].role == Role::Honest;
        if let (Some(o), Action::Send { msg, .. } | Action::Broadcast(msg)) =
            (self.resources.as_mut(), &a)
        {
            let res = match msg {
                ConsensusMessage::Proposal(p) => o.on_proposal(now, p, honest),
                ConsensusMessage::Timeout(t) if honest => {
                    o.on_timeout_sent(inst, t.view);
                    Ok(())
                }
                _ => Ok(()),
            };
            if let Err(v) = res {
                self.fail(v);
            }
        }
        match a {
            Action::PersistSafety(_) | Action::PersistBlock { .. } => {
                self.instances[inst].disk.apply(&a);
            }
            Action::Commit { .. } => {
                self.instances[inst].disk.apply(&a);
            }
            Action::Send { to, msg } => {
                let targets: Vec<InstanceId> = (0..self.instances.len())
                    .filter(|&j| self.instances[j].index == to && j != inst && to != me)
                    .collect();
                for j in targets {
                    self.send(inst, j, me, msg.clone());
                }
            }
            Action::Broadcast(msg) => {
                if honest
                    && let ConsensusMessage::Proposal(p) = &msg
                    && p.block.proposer == me
                {
                    let v = p.block.view;
                    if !self.proposals.contains_key(&v) {
                        let id = p.block.id(self.vs.domain());
                        self.proposals.insert(
                            v,
                            ProposalRecord {
                                at: now,
                                id,
                                parent: p.block.parent,
                                inst,
                            },
                        );
                    }
                }
                let targets: Vec<InstanceId> = (0..self.instances.len())
                    .filter(|&j| self.instances[j].index != me)
                    .collect();
                for j in targets {
                    self.send(inst, j, me, msg.clone());
                }
            }
            Action::SetTimer { timer, at } => {
                self.push(at, Item::Timer { inst, life, timer });
            }
            Action::Evidence(ev) => {
                let id = ev.id();
                for j in 0..self.instances.len() {
                    if j == inst || !self.net.connected(inst, j) {
                        continue;
                    }
                    // Gossip dedupe: a receiver gets each item once (re-gossip is redundant).
                    if !self.gossiped.insert((id, j)) {
                        continue;
                    }
                    let d = self.net.sample(&mut self.rng, inst, j);
                    if let Some(d) = d.first() {
                        self.push(
                            now + d,
                            Item::Evidence {
                                to: j,
                                ev: (*ev).clone(),
                            },
                        );
                    }
                }
            }
            Action::FetchBlocks {
                request_id,
                peer,
                request,
            } => {
                let server = (0..self.instances.len()).find(|&j| {
                    self.instances[j].index == peer
                        && j != inst
                        && self.instances[j].is_up()
                        && self.net.connected(inst, j)
                });
                let d = server.map(|s| self.net.sample(&mut self.rng, inst, s));
                match (server, d) {
                    (Some(s), Some(d)) if !d.is_empty() => self.push(
                        now + d[0],
                        Item::FetchReq {
                            server: s,
                            client: inst,
                            life,
                            request_id,
                            request,
                        },
                    ),
                    _ => {
                        let t = now + 2 * self.net.base_ms.max(1);
                        self.push(
                            t,
                            Item::FetchResp {
                                client: inst,
                                life,
                                request_id,
                                from: peer,
                                resp: None,
                            },
                        );
                    }
                }
            }
            Action::RequestPayload { view, .. } => {
                let mut payload = encode(&(inst as u32, view.0));
                let fill = self.cfg.payload_bytes.saturating_sub(payload.len());
                payload.extend(self.cfg.seed.to_le_bytes().iter().cycle().take(fill));
                self.push(
                    now,
                    Item::Payload {
                        inst,
                        life,
                        view,
                        payload,
                    },
                );
            }
            // The oracle checks who is reported; the simulated network does not ban.
            Action::SafetyViolation(_) | Action::PeerMisbehaved { .. } => {}
        }
    }

    fn view_ok(&self, a: InstanceId, b: InstanceId, msg: &ConsensusMessage) -> bool {
        if self.now >= self.view_groups_until {
            return true;
        }
        match self
            .view_groups
            .get(msg.view().0.min(usize::MAX as u64) as usize)
        {
            Some(g) => g.get(a) == g.get(b),
            None => true,
        }
    }

    fn send(
        &mut self,
        from_inst: InstanceId,
        to: InstanceId,
        from: ValidatorIndex,
        msg: ConsensusMessage,
    ) {
        if !self.net.connected(from_inst, to) || !self.view_ok(from_inst, to, &msg) {
            return;
        }
        let queued = self.uplink_ms(from_inst, &msg);
        let delays = self.net.sample(&mut self.rng, from_inst, to);
        let now = self.now;
        for d in delays {
            self.push(
                now + queued + d,
                Item::Deliver {
                    to,
                    from_inst,
                    from,
                    msg: msg.clone(),
                },
            );
        }
    }

    /// Occupy `from`'s uplink with `msg` (after what it already queued); returns how long
    /// after now the last bit leaves (ms, rounded down). 0 without a bandwidth limit.
    fn uplink_ms(&mut self, from: InstanceId, msg: &ConsensusMessage) -> u64 {
        if self.net.uplink_bytes_per_ms.is_none() {
            return 0;
        }
        let now_us = self.now.saturating_mul(1_000);
        let free = &mut self.uplink_free_us[from];
        *free = (*free).max(now_us) + self.net.transmit_us(msg.encode().len());
        (*free - now_us) / 1_000
    }

    /// Process events up to and including time `t_end`. Stops at the first violation.
    pub fn run_until(&mut self, t_end: Millis) -> Result<(), Failure> {
        while self.failure.is_none() {
            match self.queue.peek() {
                Some(e) if e.at <= t_end => {}
                _ => break,
            }
            let Some(e) = self.queue.pop() else { break };
            self.now = e.at;
            self.step(e.item);
        }
        if self.failure.is_none() {
            self.now = self.now.max(t_end);
        }
        match &self.failure {
            Some(f) => Err(f.clone()),
            None => Ok(()),
        }
    }

    fn step(&mut self, item: Item) {
        let now = self.now;
        match item {
            Item::Deliver {
                to,
                from_inst,
                from,
                msg,
            } => {
                if !self.net.connected(from_inst, to)
                    || !self.instances[to].is_up()
                    || !self.view_ok(from_inst, to, &msg)
                {
                    return;
                }
                if self.cfg.oracles && self.instances[to].role == Role::Honest {
                    let rv = self.instances[to].view;
                    self.oracles.on_delivered(now, to, rv, &msg);
                }
                self.feed(to, Event::Message { from, msg });
            }
            Item::Timer { inst, life, timer } => {
                if self.instances[inst].life == life {
                    self.feed(inst, Event::Timer(timer));
                }
            }
            Item::Payload {
                inst,
                life,
                view,
                payload,
            } => {
                if self.instances[inst].life == life {
                    self.feed(inst, Event::PayloadReady { view, payload });
                }
            }
            Item::FetchReq {
                server,
                client,
                life,
                request_id,
                request,
            } => {
                let from = self.instances[server].index;
                let ok = self.instances[server].is_up() && self.net.connected(server, client);
                let d = if ok {
                    self.net.sample(&mut self.rng, server, client)
                } else {
                    Vec::new()
                };
                let resp = if d.is_empty() {
                    None
                } else {
                    Some(self.instances[server].disk.serve(&request))
                };
                let at = now + d.first().copied().unwrap_or(2 * self.net.base_ms.max(1));
                self.push(
                    at,
                    Item::FetchResp {
                        client,
                        life,
                        request_id,
                        from,
                        resp,
                    },
                );
            }
            Item::FetchResp {
                client,
                life,
                request_id,
                from,
                resp,
            } => {
                if self.instances[client].life != life {
                    return;
                }
                let ev = match resp {
                    Some(response) => Event::BlocksFetched {
                        request_id,
                        from,
                        response,
                    },
                    None => Event::FetchFailed { request_id },
                };
                self.feed(client, ev);
            }
            Item::Evidence { to, ev } => {
                if self.instances[to].is_up() {
                    self.feed(to, Event::EvidenceReceived(ev));
                }
            }
            Item::Tick { inst, life } => {
                if self.instances[inst].life != life || !self.instances[inst].is_up() {
                    return;
                }
                let index = self.instances[inst].index;
                if let Some(mut b) = self.instances[inst].byz.take() {
                    let Some(key) = self.instances[inst].byz_key.as_ref() else {
                        self.instances[inst].byz = Some(b);
                        return;
                    };
                    let mut ctx = ByzCtx {
                        now,
                        me: index,
                        key,
                        vs: &self.vs,
                        rng: &mut self.rng,
                    };
                    let acts = b.tick(&mut ctx);
                    let period = b.tick_ms();
                    self.instances[inst].byz = Some(b);
                    self.apply(inst, acts);
                    if let Some(p) = period {
                        self.push(now + p, Item::Tick { inst, life });
                    }
                }
            }
            Item::Control(c) => self.control(c),
        }
    }

    fn control(&mut self, c: Control) {
        self.trace.update(format!("control{c:?}").as_bytes());
        match c {
            Control::Crash(i) => self.crash(i),
            Control::Restart(i) => self.start(i),
            Control::ArmCrash(i, p) => self.instances[i].armed = Some(p),
            Control::Partition(groups) => {
                let n = self.instances.len();
                self.net.partition(n, &groups);
            }
            Control::Heal => self.net.heal(),
            Control::AutoRestart(i, d) => self.instances[i].auto_restart = d,
            Control::SetNet(m) => {
                let g = self.net.groups.take();
                self.net = m;
                self.net.groups = g;
            }
            Control::HealAll(m) => {
                self.net = m;
                self.net.heal();
                for i in 0..self.instances.len() {
                    self.instances[i].armed = None;
                    self.instances[i].auto_restart = None;
                    if !self.instances[i].is_up() {
                        self.start(i);
                    }
                }
            }
        }
    }

    /// End-of-run checks: every honest instance committed after `heal_at` (L3), and every
    /// delivered equivocation produced verified evidence. Returns the run's report.
    pub fn finish(&mut self, heal_at: Option<Millis>) -> Result<Report, Failure> {
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        let now = self.now;
        if let Some(h) = heal_at {
            for i in self.honest() {
                let ok = self.oracles.last_commit_at[i].is_some_and(|t| t > h);
                if !ok {
                    let st = self.instances[i].status(now);
                    let v = Violation {
                        invariant: "LIVENESS",
                        detail: format!(
                            "honest instance {i} committed nothing between the heal at {h}ms and {now}ms (height {:?}, view {:?})",
                            self.oracles.chain(i).len() - 1,
                            st.map(|s| s.view)
                        ),
                        at: now,
                    };
                    self.fail(v);
                    break;
                }
            }
        }
        if self.failure.is_none()
            && let Some(Err(v)) = self.resources.as_ref().map(|o| o.finish(now))
        {
            self.fail(v);
        }
        if self.failure.is_none()
            && let Some(o) = self.oracles.unmet_obligations().first()
        {
            let v = Violation {
                invariant: "EVIDENCE",
                detail: format!(
                    "validator {} equivocated ({:?} in view {}, delivered to instance {} at {}ms) but no honest node produced evidence",
                    o.offender, o.class, o.view, o.receiver, o.at
                ),
                at: now,
            };
            self.fail(v);
        }
        if let Some(f) = &self.failure {
            return Err(f.clone());
        }
        let honest = self.honest();
        let heights: Vec<u64> = honest
            .iter()
            .map(|&i| self.oracles.chain(i).len() as u64 - 1)
            .collect();
        let heal_to_commit = heal_at.map(|h| {
            honest
                .iter()
                .filter_map(|&i| {
                    self.oracles.commit_log[i]
                        .iter()
                        .find(|(t, _)| *t > h)
                        .map(|(t, _)| t - h)
                })
                .max()
                .unwrap_or(0)
        });
        Ok(Report {
            heal_to_commit,
            trace_hash: *self.trace.clone().finalize().as_bytes(),
            events: self.events,
            max_height: Height(heights.iter().copied().max().unwrap_or(0)),
            min_height: Height(heights.iter().copied().min().unwrap_or(0)),
            evidence: self.oracles.evidence.len(),
            equivocations: self.oracles.obligations.len(),
            end: now,
        })
    }
}
