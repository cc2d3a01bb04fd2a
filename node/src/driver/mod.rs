//! The driver: one task owns the [`Core`] and turns its [`Action`]s into IO.
//!
//! It `select!`s over network events, the timer wheel, RPC commands, a gossip-flush tick and
//! shutdown. Actions are executed in order; consecutive `PersistSafety`/`PersistBlock` actions
//! are gathered into one synced RocksDB batch that is written before any later action runs
//! (persist before send). Every storage error on the driver's own path (persisting, committing)
//! is fatal: the driver stops and returns it.
//!
//! One file per concern:
//! * this module: the event loop and the persist-before-send path (`execute`, `perform`);
//! * [`commit`]: applying committed blocks;
//! * [`txs`]: local submissions, transaction batches in and out ("Gossip and peer reads");
//! * [`queries`]: what the RPC server asks ([`Command`]);
//! * [`fetches`]: our outstanding block-sync requests.
//!
//! ## The store and blocking calls (issue 8 finding 6)
//! The store is shared as [`SharedStore`] without a lock: the driver is the only writer
//! ([`storage::RocksStore::write_shared`]); the RPC handlers and the [`SyncServer`] read
//! concurrently through `&self` and never wait for a write. RocksDB calls block the calling
//! thread (a synced write ≈ 0.2–0.8 ms), so the driver makes them inside [`blocking`]: inline
//! on a runtime with two or more workers (the `bftnode` binary's on a multi-core machine, and
//! the node tests'), where the other workers steal this worker's queued tasks meanwhile;
//! `tokio::task::block_in_place`, which hands them to a new thread, on a multi-thread runtime
//! with a single worker (issue 10 measured the hand-over costing more than the calls); inline
//! on a current-thread runtime. One `blocking` section covers a whole write, a commit's reads,
//! or one gossip message or RPC submission, not each read. A store read error while handling a
//! peer's sync request fails that request only.
//!
//! Maps keyed by what peers send are bounded: the mempool by its limits and per-source quotas,
//! our outstanding sync requests ([`MAX_FETCHES`], expired after [`FETCH_EXPIRY`]).

mod commit;
mod fetches;
mod queries;
mod relay;
mod txs;

pub use commit::COMMIT_SUMMARY_EVERY;
use commit::{CachedPayload, CommitSummary};
pub use fetches::{FETCH_EXPIRY, Fetches, MAX_FETCHES};
pub use queries::{Command, HealthReport};
pub use relay::{MAX_RELAY_FETCHES, RelayFetch, RelayFetches};
use txs::{GOSSIP_FLUSH_INTERVAL, MAX_GOSSIP_BYTES};
pub use txs::{GossipReport, MAX_GOSSIP_TXS, decode_gossip_txs, ingest_gossip};

use crate::app::{self, DecodedPayload, Transaction};
use crate::config::Genesis;
use crate::events::CommitEvents;
use crate::faults::FaultWatch;
use crate::interceptor::Interceptor;
use crate::mempool::Mempool;
use crate::metrics::Metrics;
use crate::queue_delay::{self, QueueDelay};
use crate::sync_server::{MAX_SYNC_RESPONSE_BYTES, SyncServer};
use anyhow::{Context, Result, anyhow};
use consensus::{
    Action, BlockId, BlockResponse, ConsensusMessage, Core, Domain, Event, Evidence, InvalidReason,
    Millis, Timer, ValidatorIndex,
};
use fault::{Accountant, FaultTolerance};
use network::{Misbehaviour, NetworkEvent, NetworkHandle, Topic};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{Op, WriteBatch};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, warn};

pub use crate::shared_store::SharedStore;

/// Run `f`, which blocks on the store, from async code. Inline (the calling worker blocks for
/// the call and the runtime's other workers steal its queued tasks) unless the runtime is
/// multi-thread with a single worker, where `tokio::task::block_in_place` hands the worker's
/// tasks to a new thread so the network and RPC keep running. Inline because the hand-over
/// cost more than the calls it wrapped: at 1,000 tx/s on 4 validators (issue 10, three
/// alternating runs each) p50 submit → commit was 18.2–21.0 ms with `block_in_place` and
/// 15.5–17.1 ms inline, and throughput at 20,000 offered was unchanged (19.1–19.5k against
/// 19.6k tx/s). Not for a `LocalSet` on a multi-thread runtime, where `block_in_place`
/// panics: the driver is `Send` and started with `tokio::spawn`. See the module docs.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h)
            if h.runtime_flavor() == RuntimeFlavor::MultiThread
                && h.metrics().num_workers() < 2 =>
        {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Most stored, uncommitted blocks whose decoded payload is kept for their commit, and most
/// payload bytes among them (a Byzantine leader's blocks can be as large as a consensus
/// message); a block stored beyond either is decoded again when it commits.
const MAX_DECODED_BLOCKS: usize = 64;
/// See [`MAX_DECODED_BLOCKS`]: 16 MiB of payloads.
const MAX_DECODED_BYTES: usize = 16 * 1024 * 1024;

/// Static facts the driver reports.
pub struct DriverInfo {
    /// Chain id.
    pub chain_id: String,
    /// The genesis (validator names and power, the chain-wide fault parameters).
    pub genesis: Genesis,
    /// Where this node dials each validator, by validator index (ours: our listen address);
    /// reported by `GET /validators`.
    pub p2p_addrs: Vec<std::net::SocketAddr>,
    /// Maximum payload of our own proposals, in bytes.
    pub max_block_bytes: usize,
    /// How long our proposal may take to reach a quorum (`[block] proposal_budget_ms`): with
    /// the links' measured goodput it caps the payload below `max_block_bytes`
    /// ([`crate::proposal_cap`]). `None`: off.
    pub proposal_budget: Option<Duration>,
    /// How long a leader with an empty mempool (and no transactions in uncommitted blocks)
    /// waits for a transaction before proposing an empty block. Must stay well below the
    /// view timeout.
    pub empty_block_delay: Duration,
    /// The fault policy's parameters (reported by `GET /faults`).
    pub fault: fault::FaultConfig,
}

/// The driver task's state.
pub struct Driver {
    core: Core<FaultTolerance>,
    store: SharedStore,
    net: NetworkHandle,
    mempool: Mempool,
    metrics: Arc<Metrics>,
    info: DriverInfo,
    domain: Domain,
    start: Instant,
    timers: BTreeMap<(Millis, u64), Timer>,
    timer_seq: u64,
    connected: BTreeSet<ValidatorIndex>,
    /// Our block-sync requests awaiting a response.
    fetches: Fetches,
    /// Compact proposals waiting for their block ([`relay`]).
    relay_fetches: RelayFetches,
    /// The payload we built for our proposal, decoded as we built it (taken when the block is
    /// stored, so the proposer never decodes or hashes its own payload).
    own_payload: Option<OwnPayload>,
    /// Events our own handling produced for the core (today only
    /// [`Event::PayloadReady`]: the payload of our proposal). Stepped as soon as the handler
    /// that produced them returns, before any other input ([`Driver::run`]).
    followups: VecDeque<Event>,
    /// Payloads of stored, uncommitted blocks, decoded when stored, for their commit. At most
    /// [`MAX_DECODED_BLOCKS`] and [`MAX_DECODED_BYTES`], dropped once their height is
    /// committed.
    decoded: HashMap<BlockId, CachedPayload>,
    /// Sum of the encoded payload bytes in `decoded`.
    decoded_bytes: usize,
    /// A payload request not answered yet: its view and when to answer at the latest.
    pending_payload: Option<(consensus::View, Instant)>,
    gossip_buf: Vec<Transaction>,
    gossip_bytes: usize,
    /// When `gossip_buf` was last sent (or the driver started).
    gossip_flushed_at: Instant,
    halted: bool,
    /// When the last commit was applied (driver start before the first).
    last_commit_at: Instant,
    summary: CommitSummary,
    /// Answers block-sync requests off this task.
    sync_server: SyncServer,
    /// Accountability from committed blocks (PROTOCOL.md §6.6); its state is written with every
    /// commit, so it always matches the committed tip.
    accountant: Accountant,
    /// Since when each validator is isolated, suspected or down (for `GET /faults`).
    fault_watch: FaultWatch,
    /// Adversarial test nodes only ([`Interceptor`]); `None` in production.
    interceptor: Option<Box<dyn Interceptor>>,
    /// The commit stream of `GET /events`.
    events: CommitEvents,
    /// Refuses local submissions while committed transactions waited too long (module
    /// [`crate::queue_delay`]); fed by every commit.
    queue_delay: QueueDelay,
    /// The `driver{view, height}` span of the driver's log lines ([`crate::log_span`]).
    log_span: crate::log_span::ConsensusSpan,
}

impl Driver {
    /// A driver around a started `core` (call [`Driver::run`] next).
    pub fn new(
        core: Core<FaultTolerance>,
        store: SharedStore,
        net: NetworkHandle,
        mempool: Mempool,
        metrics: Arc<Metrics>,
        info: DriverInfo,
    ) -> Self {
        let domain = core.validators().domain().clone();
        let accountant = Accountant::new(core.validators().len(), &fault::FaultConfig::default());
        let sync_server = SyncServer::new(store.clone(), net.clone(), metrics.clone());
        Driver {
            core,
            store,
            net,
            mempool,
            metrics,
            info,
            domain,
            start: Instant::now(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            connected: BTreeSet::new(),
            fetches: Fetches::default(),
            relay_fetches: relay::relay_fetches(),
            own_payload: None,
            followups: VecDeque::new(),
            decoded: HashMap::new(),
            decoded_bytes: 0,
            pending_payload: None,
            gossip_buf: Vec::new(),
            gossip_bytes: 0,
            gossip_flushed_at: Instant::now(),
            halted: false,
            last_commit_at: Instant::now(),
            summary: CommitSummary {
                since: Instant::now(),
                blocks: 0,
                txs: 0,
                first_height: None,
            },
            sync_server,
            accountant,
            fault_watch: FaultWatch::default(),
            interceptor: None,
            events: CommitEvents::default(),
            queue_delay: QueueDelay::new(
                Duration::from_millis(queue_delay::DEFAULT_TARGET_MS),
                queue_delay::INTERVAL,
            ),
            log_span: Default::default(),
        }
    }

    /// Refuse local submissions by `queue_delay` instead of the default (500 ms target).
    pub fn with_queue_delay(mut self, queue_delay: QueueDelay) -> Self {
        self.queue_delay = queue_delay;
        self
    }

    /// Use `accountant` (restored from the store at the committed tip, [`crate::restore_accountant`])
    /// instead of a fresh one with the default parameters.
    pub fn with_accountant(mut self, accountant: Accountant) -> Self {
        self.accountant = accountant;
        self
    }

    /// Route the core's inputs and outputs through `interceptor` (adversarial test nodes only,
    /// see [`crate::interceptor`]).
    pub fn with_interceptor(mut self, interceptor: Option<Box<dyn Interceptor>>) -> Self {
        self.interceptor = interceptor;
        self
    }

    /// Publish every commit on `events` (the RPC server's `GET /events`).
    pub fn with_events(mut self, events: CommitEvents) -> Self {
        self.events = events;
        self
    }

    fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    /// Run until shutdown, the network stopping, or a fatal (storage) error. Log lines carry
    /// the view and committed height ([`crate::log_span`]).
    pub async fn run(
        mut self,
        net_rx: network::EventReceiver,
        cmd_rx: mpsc::Receiver<Command>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        let height = self.metrics.committed().0;
        let scope = self.log_span.start(self.core.current_view().0, height);
        scope
            .instrument(self.run_loop(net_rx, cmd_rx, shutdown))
            .await
    }

    async fn run_loop(
        mut self,
        mut net_rx: network::EventReceiver,
        mut cmd_rx: mpsc::Receiver<Command>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        self.step(Event::Start)?;
        self.step_followups()?;
        let mut gossip_tick = tokio::time::interval(GOSSIP_FLUSH_INTERVAL);
        let mut metrics_tick = tokio::time::interval(Duration::from_millis(500));
        let adversary_ms = self.interceptor.as_ref().and_then(|i| i.tick_ms());
        let mut adversary_tick =
            tokio::time::interval(Duration::from_millis(adversary_ms.unwrap_or(1000).max(1)));
        adversary_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            let deadline = self
                .timers
                .keys()
                .next()
                .map(|(at, _)| self.start + Duration::from_millis(*at));
            let payload_at = self.pending_payload.map(|(_, at)| at);
            // Not biased: under a steady stream of network events, timers and commands still
            // get their turn. Our own follow-up events do not wait for a turn (below).
            // Each handler runs after its future resolved; `busy!` times it (not the wait).
            macro_rules! busy {
                ($kind:expr, $e:expr) => {{
                    let t = Instant::now();
                    let r = $e;
                    self.metrics
                        .add_driver_busy($kind, t.elapsed().as_secs_f64());
                    r
                }};
            }
            let r = tokio::select! {
                _ = shutdown.changed() => break Ok(()),
                ev = net_rx.recv() => match ev {
                    Some(ev) => {
                        let kind = busy_kind(&ev);
                        busy!(kind, self.on_network(ev))
                    }
                    None => break Err(anyhow!("network service stopped")),
                },
                _ = sleep_until(deadline), if deadline.is_some() => busy!("timer", self.fire_timers()),
                _ = sleep_until(payload_at), if payload_at.is_some() => busy!("propose", {
                    self.propose_now();
                    Ok(())
                }),
                cmd = cmd_rx.recv() => match cmd {
                    Some(cmd) => busy!("command", { self.on_command(cmd); Ok(()) }),
                    None => break Ok(()),
                },
                _ = gossip_tick.tick() => busy!("gossip_flush", { self.flush_gossip(); Ok(()) }),
                _ = adversary_tick.tick(), if adversary_ms.is_some() => busy!("housekeeping", self.intercept_tick()),
                _ = metrics_tick.tick() => busy!("housekeeping", {
                    self.update_metrics();
                    self.expire_relay_fetches();
                    self.expire_fetches()
                }),
            };
            // A follow-up is the next step of what was just handled: the payload of the proposal
            // a QC just made us due to send. Stepped at once: as a branch of the `select!` it
            // waited, at random, behind every other ready input (a vote, a batch of
            // transactions, an RPC query), each delaying the view's critical path. It cannot
            // starve them: the core asks for one payload per view.
            if let Err(e) = r.and_then(|()| self.step_followups()) {
                error!(error = %format!("{e:#}"), "fatal error, stopping the node");
                break Err(e);
            }
        };
        self.flush_gossip();
        self.net.shutdown();
        result
    }

    /// Feed one event to the core and execute its actions. Follow-up events (our payload) are
    /// queued and fed by the main loop, so a validator that can make progress on its own (a
    /// single-validator chain) never starves RPC commands, timers or the network.
    fn step(&mut self, event: Event) -> Result<()> {
        let now = self.now();
        let actions = match self.interceptor.as_mut() {
            None => self.core.handle(now, event),
            Some(i) => {
                let extra = i.inbound(now, &event);
                let mut actions = i.outbound(now, self.core.handle(now, event));
                actions.extend(extra);
                actions
            }
        };
        self.execute(actions)?;
        self.metrics.view.set(self.core.current_view().0 as i64);
        let height = self.metrics.committed().0;
        self.log_span.update(self.core.current_view().0, height);
        Ok(())
    }

    /// Step every queued follow-up event ([`Driver::followups`]), timed as driver work of
    /// kind `followup`.
    fn step_followups(&mut self) -> Result<()> {
        while let Some(ev) = self.followups.pop_front() {
            let t = Instant::now();
            let r = self.step(ev);
            self.metrics
                .add_driver_busy("followup", t.elapsed().as_secs_f64());
            r?;
        }
        Ok(())
    }

    /// The interceptor's periodic actions and raw transaction gossip.
    fn intercept_tick(&mut self) -> Result<()> {
        let now = self.now();
        let Some(i) = self.interceptor.as_mut() else {
            return Ok(());
        };
        let actions = i.tick(now);
        let gossip = i.tx_gossip(now);
        for bytes in gossip {
            self.net.publish(Topic::Transactions, bytes);
        }
        self.execute(actions)
    }

    /// Answer the pending payload request now with what the mempool holds.
    fn propose_now(&mut self) {
        let Some((view, _)) = self.pending_payload.take() else {
            return;
        };
        let cap = self.proposal_cap();
        let (txs, hashes) = self.mempool.take_hashed(cap);
        debug!(view = view.0, txs = txs.len(), "payload ready");
        let payload = app::encode_transactions(&txs);
        self.own_payload = Some(OwnPayload {
            view,
            bytes: payload.clone(),
            decoded: DecodedPayload {
                txs,
                hashes,
                invalid: false,
            },
        });
        self.followups
            .push_back(Event::PayloadReady { view, payload });
    }

    /// Our next payload's cap: `max_block_bytes`, or, with a [`DriverInfo::proposal_budget`],
    /// what the links to a quorum of connected validators carry within it
    /// ([`crate::proposal_cap`]; also the gauge `bftnode_proposal_cap_bytes`).
    fn proposal_cap(&self) -> usize {
        let Some(budget) = self.info.proposal_budget else {
            self.metrics
                .proposal_cap_bytes
                .set(self.info.max_block_bytes as i64);
            return self.info.max_block_bytes;
        };
        let vs = self.core.validators();
        let me = ValidatorIndex(self.net.local_index().unwrap_or(u16::MAX));
        let peers: Vec<(u64, Option<u64>)> = self
            .connected
            .iter()
            .filter(|i| **i != me)
            .map(|i| (vs.power(*i), self.net.goodput(i.0)))
            .collect();
        let cap = crate::proposal_cap::proposal_cap(
            vs.power(me),
            vs.quorum(),
            &peers,
            budget,
            self.info.max_block_bytes,
        );
        self.metrics.proposal_cap_bytes.set(cap as i64);
        cap
    }

    fn execute(&mut self, actions: Vec<Action>) -> Result<()> {
        let mut batch = WriteBatch::synced();
        for action in actions {
            match action {
                Action::PersistSafety(s) => {
                    batch.push(Op::PutSafety(s));
                }
                Action::PersistBlock { id, block: b } => {
                    let hashes = match self.decoded.get(&id) {
                        Some(c) => c.payload.hashes.clone(),
                        None => {
                            let payload = self.own_payload_of(&b).unwrap_or_else(|| {
                                DecodedPayload::decode(&b.payload, app::PAYLOAD_DECODE_LIMIT)
                            });
                            let hashes = payload.hashes.clone();
                            self.cache_payload(id, b.height, b.payload.len(), payload);
                            hashes
                        }
                    };
                    let now = Instant::now();
                    for inc in self.mempool.mark_in_flight(id, b.height, hashes) {
                        self.queue_delay.observe(now, inc.arrived);
                        let sojourn = now.saturating_duration_since(inc.arrived);
                        self.metrics
                            .observe_sojourn(inc.local, sojourn.as_secs_f64());
                    }
                    batch.push(Op::PutBlock { id, block: b });
                }
                Action::SetTimer { timer, at } => {
                    self.timer_seq += 1;
                    self.timers.insert((at, self.timer_seq), timer);
                }
                other => {
                    self.flush(&mut batch)?;
                    self.perform(other)?;
                }
            }
        }
        self.flush(&mut batch)
    }

    /// Keep block `id`'s decoded payload (`bytes` encoded) for its commit, within
    /// [`MAX_DECODED_BLOCKS`] and [`MAX_DECODED_BYTES`] (beyond them it is decoded again when it
    /// commits). Dropped once `height` is committed.
    fn cache_payload(
        &mut self,
        id: BlockId,
        height: consensus::Height,
        bytes: usize,
        payload: DecodedPayload,
    ) {
        if self.decoded.len() < MAX_DECODED_BLOCKS
            && self.decoded_bytes + bytes <= MAX_DECODED_BYTES
            && !self.decoded.contains_key(&id)
        {
            self.decoded_bytes += bytes;
            self.decoded.insert(
                id,
                CachedPayload {
                    height,
                    bytes,
                    payload,
                    stored_at: Instant::now(),
                },
            );
        }
    }

    /// The payload we built, decoded, if block `b` carries it.
    fn own_payload_of(&mut self, b: &consensus::Block) -> Option<DecodedPayload> {
        match self.own_payload.take() {
            Some(o) if o.carried_by(b) => Some(o.decoded),
            other => {
                self.own_payload = other;
                None
            }
        }
    }

    /// Write the gathered persist batch (synced) if non-empty.
    fn flush(&mut self, batch: &mut WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let b = std::mem::replace(batch, WriteBatch::synced());
        self.write(b).context("persisting safety data / blocks")
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let (t, sync) = (Instant::now(), batch.sync);
        blocking(|| self.store.write_shared(batch))?;
        self.metrics.observe_write(sync, t.elapsed().as_secs_f64());
        Ok(())
    }

    fn perform(&mut self, action: Action) -> Result<()> {
        match action {
            Action::Send { to, msg } => self.net.send(to.0, self.frame(&msg)),
            Action::Broadcast(msg) => self.net.broadcast(self.frame(&msg), false),
            Action::Commit { blocks, ids, .. } => self.on_commit(blocks, ids)?,
            Action::Evidence(ev) => self.on_evidence(*ev)?,
            Action::FetchBlocks {
                request_id,
                peer,
                request,
            } => {
                let nid = self.net.request(peer.0, consensus::encode(&request));
                for dropped in self.fetches.insert(nid, request_id, Instant::now()) {
                    self.fetch_dropped(dropped)?;
                }
                self.metrics.sync_requests.inc();
                debug!(request_id, peer = peer.0, target = %request.target, "block sync request");
            }
            Action::RequestPayload { view, height, .. } => {
                // With nothing to propose and nothing waiting in the pipeline, wait a little
                // (or until a transaction arrives) instead of spinning out empty blocks.
                let idle = !self.mempool.has_available() && !self.mempool.has_uncommitted_txs();
                let delay = if idle {
                    self.info.empty_block_delay
                } else {
                    Duration::ZERO
                };
                debug!(view = view.0, height = height.0, idle, "payload requested");
                self.pending_payload = Some((view, Instant::now() + delay));
                if !idle {
                    self.propose_now();
                }
            }
            Action::PeerMisbehaved { peer, reason } => {
                let m = match reason {
                    InvalidReason::BadCertificate => Misbehaviour::InvalidCertificate,
                    _ => Misbehaviour::InvalidSignature,
                };
                self.net.report(peer.0, m);
                debug!(
                    peer = peer.0,
                    ?reason,
                    "peer reported for a provably invalid message"
                );
            }
            Action::SafetyViolation(msg) => {
                self.halted = true;
                self.metrics.halted.set(1);
                error!(reason = %msg, "SAFETY VIOLATION: the core halted and signs nothing more; operator intervention required");
            }
            // Handled in `execute`.
            Action::PersistSafety(_) | Action::PersistBlock { .. } | Action::SetTimer { .. } => {}
        }
        Ok(())
    }

    fn on_evidence(&mut self, ev: Evidence) -> Result<()> {
        warn!(
            id = %ev.id(),
            kind = ev.kind().as_str(),
            offender = ev.offender().0,
            view = ev.view().0,
            "Byzantine behaviour detected"
        );
        self.metrics.count_evidence(ev.kind().as_str());
        let bytes = consensus::encode(&ev);
        let batch = WriteBatch {
            sync: false,
            ops: vec![Op::PutEvidence(Box::new(ev))],
        };
        self.write(batch).context("storing evidence")?;
        self.net.publish(Topic::Evidence, bytes);
        Ok(())
    }

    fn fire_timers(&mut self) -> Result<()> {
        let now = self.now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            self.step(Event::Timer(timer))?;
        }
        Ok(())
    }

    fn on_network(&mut self, ev: NetworkEvent) -> Result<()> {
        match ev {
            NetworkEvent::Consensus { from, bytes }
                if bytes.first() == Some(&crate::relay::COMPACT_TAG) =>
            {
                self.on_compact_proposal(from, &bytes[1..])?
            }
            NetworkEvent::Consensus { from, bytes } => match ConsensusMessage::decode(&bytes) {
                Ok(msg) => self.step(Event::Message {
                    from: ValidatorIndex(from),
                    msg,
                })?,
                Err(e) => {
                    self.metrics.invalid_messages.inc();
                    self.net.report(from, Misbehaviour::Undecodable);
                    debug!(peer = from, error = %e, "undecodable consensus message");
                }
            },
            NetworkEvent::SyncRequest {
                from,
                request_id,
                bytes,
            } => {
                // Refusals are answered and counted inside; the driver never waits on a read.
                let _ = self.sync_server.serve(from, request_id, &bytes);
            }
            NetworkEvent::SyncResponse {
                from,
                request_id,
                result,
            } => {
                if self.on_relay_response(from, request_id, &result)? {
                    return Ok(());
                }
                let Some(core_id) = self.fetches.remove(request_id) else {
                    return Ok(());
                };
                let event = match result
                    .map(|b| consensus::decode::<BlockResponse>(&b, MAX_SYNC_RESPONSE_BYTES))
                {
                    Ok(Ok(response)) => Event::BlocksFetched {
                        request_id: core_id,
                        from: ValidatorIndex(from),
                        response,
                    },
                    Ok(Err(_)) => {
                        self.metrics.invalid_messages.inc();
                        self.net.report(from, Misbehaviour::Undecodable);
                        Event::FetchFailed {
                            request_id: core_id,
                        }
                    }
                    Err(reason) => {
                        debug!(peer = from, %reason, "block sync request failed");
                        Event::FetchFailed {
                            request_id: core_id,
                        }
                    }
                };
                self.step(event)?;
            }
            NetworkEvent::Gossip { topic, bytes, from } => match topic {
                Topic::Transactions => self.on_tx_gossip(from, &bytes),
                Topic::Evidence => match consensus::decode::<Evidence>(&bytes, MAX_GOSSIP_BYTES) {
                    Ok(ev) => self.step(Event::EvidenceReceived(ev))?,
                    Err(_) => {
                        self.metrics.invalid_messages.inc();
                    }
                },
            },
            NetworkEvent::PeerConnected { index } => {
                if self.connected.insert(ValidatorIndex(index)) {
                    self.on_connectivity()?;
                }
            }
            NetworkEvent::PeerDisconnected { index } => {
                if self.connected.remove(&ValidatorIndex(index)) {
                    self.on_connectivity()?;
                }
            }
        }
        Ok(())
    }

    fn on_connectivity(&mut self) -> Result<()> {
        self.metrics.peers.set(self.connected.len() as i64);
        let connected = self.connected.iter().copied().collect();
        self.step(Event::Connectivity { connected })
    }

    /// Drop our outstanding sync requests older than [`FETCH_EXPIRY`].
    fn expire_fetches(&mut self) -> Result<()> {
        for core_id in self.fetches.expire(Instant::now()) {
            self.fetch_dropped(core_id)?;
        }
        Ok(())
    }

    /// Our sync request `core_id` was dropped without a response: tell the core it failed (a
    /// late response is ignored).
    fn fetch_dropped(&mut self, core_id: u64) -> Result<()> {
        self.metrics.sync_fetches_expired.inc();
        debug!(
            request_id = core_id,
            "block sync request dropped without a response"
        );
        self.step(Event::FetchFailed {
            request_id: core_id,
        })
    }

    /// Transactions arrived: answer a parked payload request at once.
    fn wake_proposal(&mut self) {
        if self.pending_payload.is_some() && self.mempool.has_available() {
            self.propose_now();
        }
    }

    fn update_metrics(&mut self) {
        let st = self.core.status(self.now());
        self.metrics.view.set(st.view.0 as i64);
        self.metrics
            .committed_height
            .set(st.committed_height.0 as i64);
        Metrics::sync_counter(&self.metrics.proposals, st.counters.proposals_sent);
        Metrics::sync_counter(
            &self.metrics.proposals_reserved,
            st.counters.proposals_reserved,
        );
        Metrics::sync_counter(&self.metrics.votes, st.counters.votes_sent);
        Metrics::sync_counter(&self.metrics.timeouts, st.counters.timeouts_sent);
        Metrics::sync_counter(&self.metrics.tcs, st.counters.tcs_formed);
        Metrics::sync_counter(
            &self.metrics.own_signatures_elsewhere,
            st.counters.own_signatures_elsewhere,
        );
        Metrics::sync_counter(
            &self.metrics.rejected_messages,
            st.counters.invalid_messages,
        );
        Metrics::sync_counter(&self.metrics.sync_unavailable, st.counters.sync_unavailable);
        Metrics::sync_counter(
            &self.metrics.signatures_verified,
            st.counters.signatures_verified,
        );
        Metrics::sync_counter(
            &self.metrics.signatures_reused,
            st.counters.signatures_reused,
        );
        self.metrics.signing_held.set(i64::from(st.signing_held));
        let isolated = st
            .validators
            .iter()
            .filter(|v| v.state == consensus::ValidatorState::Isolated)
            .count();
        self.metrics.isolated_validators.set(isolated as i64);
        self.watch_faults(&st);
        self.metrics.mempool_txs.set(self.mempool.len() as i64);
        self.metrics.mempool_bytes.set(self.mempool.bytes() as i64);
    }
}

/// The payload we built for our proposal in `view`: its bytes and its transactions with their
/// hashes.
struct OwnPayload {
    view: consensus::View,
    bytes: Vec<u8>,
    decoded: DecodedPayload,
}

impl OwnPayload {
    /// Whether block `b` carries exactly this payload. Compared byte for byte: an honest node
    /// proposes once per view, but an adversarial test node's interceptor may send a second,
    /// different block for the same view, and that one must not be described by this payload.
    fn carried_by(&self, b: &consensus::Block) -> bool {
        self.view == b.view && self.bytes == b.payload
    }
}

/// The `event` label of `bftnode_driver_busy_seconds_total` for a network event.
fn busy_kind(ev: &NetworkEvent) -> &'static str {
    match ev {
        NetworkEvent::Consensus { .. } => "consensus",
        NetworkEvent::Gossip {
            topic: Topic::Transactions,
            ..
        } => "tx_gossip",
        _ => "network_other",
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
