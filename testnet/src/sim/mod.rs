//! The deterministic discrete-event simulator: virtual clock (ms), one seeded ChaCha8 RNG, an
//! event queue ordered by (time, sequence number), a network model, simulated disks,
//! crash/restart, Byzantine wrappers, Twins, and the oracles after every event.
//!
//! One file per concern: this one holds the simulator's state, its construction and the event
//! loop ([`Sim::run_until`], [`Sim::finish`]); [`config`] what a run is given and returns;
//! `queue` the ordered event queue; `actions` what a core's actions do (disk, timers,
//! delivery through the network model); `lifecycle` starts, crashes, restarts and scheduled
//! controls; `trace` the determinism hash.

use crate::byzantine::{ByzCtx, ByzKind, Byzantine};
use crate::disk::Disk;
use crate::net::{InstanceId, NetModel};
use crate::oracle::{Oracles, Violation};
use crate::replica::Replica;
use crate::resources::ResourceOracle;
use consensus::{
    Block, BlockId, Config, ConsensusMessage, Epoch, Event, Height, Millis, PrivateKey, SafetyData,
    ValidatorIndex, ValidatorInfo, ValidatorSet, View,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

mod actions;
pub mod config;
mod lifecycle;
mod queue;
mod trace;

pub use config::{Control, CrashPoint, Failure, Report, Role, SimConfig, Timing};
use queue::{Entry, Item};

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
