//! The driver: one task owns the [`Core`] and turns its [`Action`]s into IO.
//!
//! It `select!`s over network events, the timer wheel, RPC commands, a gossip-flush tick and
//! shutdown. Actions are executed in order; consecutive `PersistSafety`/`PersistBlock` actions
//! are gathered into one synced RocksDB batch that is written before any later action runs
//! (persist before send). Every storage error on the driver's own path (persisting, committing)
//! is fatal: the driver stops and returns it.
//!
//! ## The store and blocking calls (issue 8 finding 6)
//! The store is shared as [`SharedStore`] = `Arc<RocksStore>` without a lock: the driver is the
//! only writer ([`RocksStore::write_shared`]); the RPC handlers and the [`SyncServer`] read
//! concurrently through `&self` and never wait for a write. RocksDB calls block the calling
//! thread (a synced write ≈ 0.2–0.8 ms), so the driver makes them inside [`blocking`]: inline
//! on a runtime with two or more workers (the `bftnode` binary's on a multi-core machine, and
//! the node tests'), where the other workers steal this worker's queued tasks meanwhile;
//! `tokio::task::block_in_place`, which hands them to a new thread, on a multi-thread runtime
//! with a single worker (issue 10 measured the hand-over costing more than the calls); inline
//! on a current-thread runtime. One `blocking` section covers a whole write, a commit's reads,
//! or one gossip message or RPC submission, not each read.
//!
//! ## Gossip and peer reads (issue 8 finding 2)
//! A transaction gossip message is handled by [`ingest_gossip`], cheapest check first: decoding
//! stops after [`MAX_GOSSIP_TXS`] transactions; each is validated, hashed, and checked against
//! the mempool in memory (duplicate, its peer's quota, room) before the one store read that
//! tells whether it is already committed. A store read error while handling a peer's message
//! or sync request fails that message or request only (logged, counted in
//! `bftnode_store_read_errors_total`); the node keeps running.
//!
//! Maps keyed by what peers send are bounded: the mempool by its limits and per-source quotas,
//! our outstanding sync requests ([`MAX_FETCHES`], expired after [`FETCH_EXPIRY`]).

use crate::app::{self, AppWrite, DecodedPayload, Payload, Transaction, TxHash};
use crate::config::Genesis;
use crate::events::CommitEvents;
use crate::faults::{self, FaultWatch};
use crate::interceptor::Interceptor;
use crate::mempool::{Mempool, MempoolError, Source};
use crate::metrics::{Metrics, gossip_outcome};
use crate::proof::EvidenceProof;
use crate::queue_delay::{self, QueueDelay};
use crate::rpc_types::{
    CommitEvent, EvidenceResponse, FaultsResponse, StatusResponse, ValidatorResponse,
    WhyStalledResponse,
};
use crate::sync_server::{MAX_SYNC_RESPONSE_BYTES, SyncServer};
use anyhow::{Context, Result, anyhow};
use consensus::{
    Action, Block, BlockId, BlockResponse, ConsensusMessage, Core, Digest, Domain, Event, Evidence,
    FaultPolicy, Health, InvalidReason, Millis, Timer, ValidatorIndex,
};
use fault::{Accountant, FaultTolerance, Offence};
use network::{Misbehaviour, NetworkEvent, NetworkHandle, PeerId, Topic};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{Op, RocksStore, Store, StoreError, TxLocation, WriteBatch};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

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

/// Largest gossip message, in bytes (the network's default cap).
const MAX_GOSSIP_BYTES: usize = 1024 * 1024;
/// Most transactions taken from one gossip message; the rest of the message is not decoded
/// (counted as `truncated`). Bounds the driver's work per message: at most this many hashes and
/// store reads. Honest messages are flushed at 256 KiB, which this admits for transactions of
/// 64 bytes and more.
pub const MAX_GOSSIP_TXS: usize = 4096;
/// Most of our block-sync requests awaiting a response; a request beyond it drops the oldest
/// (reported to the core as failed).
pub const MAX_FETCHES: usize = 64;
/// Our block-sync request whose response has not arrived after this long is dropped (reported to
/// the core as failed). The network answers every request within its sync timeout (10 s by
/// default); this is the backstop if that answer is lost.
pub const FETCH_EXPIRY: Duration = Duration::from_secs(30);
/// Flush gossiped transactions once this many bytes are buffered.
const GOSSIP_FLUSH_BYTES: usize = 256 * 1024;
/// Least time between two gossip flushes, and the longest a submitted transaction waits
/// before it is sent to the other validators. A submission that arrives when the last flush
/// is at least this old is sent at once with whatever is buffered (Nagle's rule, inverted:
/// an idle node adds no delay, a busy one batches); the rest waits for the next tick. At
/// most 200 batches a second per node (plus the 256 KiB size flushes), each pushed once to
/// every validator (`network`, `/bftnode/txs/1`).
const GOSSIP_FLUSH_INTERVAL: Duration = Duration::from_millis(5);
/// Most stored, uncommitted blocks whose decoded payload is kept for their commit, and most
/// payload bytes among them (a Byzantine leader's blocks can be as large as a consensus
/// message); a block stored beyond either is decoded again when it commits.
const MAX_DECODED_BLOCKS: usize = 64;
/// See [`MAX_DECODED_BLOCKS`]: 16 MiB of payloads.
const MAX_DECODED_BYTES: usize = 16 * 1024 * 1024;
/// Maximum evidence items listed over RPC.
const MAX_EVIDENCE_LISTED: usize = 1000;

/// Requests from the RPC server to the driver; each carries its reply channel.
#[derive(Debug)]
pub enum Command {
    /// `GET /status`.
    Status(oneshot::Sender<StatusResponse>),
    /// `GET /validators`.
    Validators(oneshot::Sender<Vec<ValidatorResponse>>),
    /// `GET /evidence`.
    Evidence(oneshot::Sender<Vec<EvidenceResponse>>),
    /// `GET /health`.
    Health(oneshot::Sender<HealthReport>),
    /// `GET /why-stalled`.
    WhyStalled(oneshot::Sender<WhyStalledResponse>),
    /// `POST /tx`, `POST /txs`: add to the mempool and gossip.
    Submit {
        /// Transactions, validated for size already.
        txs: Vec<Transaction>,
        /// One result per transaction.
        reply: oneshot::Sender<Vec<Result<TxHash, MempoolError>>>,
    },
    /// Whether a transaction is pending.
    IsPending(TxHash, oneshot::Sender<bool>),
    /// `GET /faults` (before the RPC handler adds the network's suspicions).
    Faults(oneshot::Sender<FaultsResponse>),
    /// `GET /evidence/{id}`: the proof of the evidence item with this id, if held (pool or
    /// store).
    EvidenceProof {
        /// Evidence id.
        id: consensus::Digest,
        /// The proof, or `None`.
        reply: oneshot::Sender<Option<EvidenceProof>>,
    },
}

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

/// What `GET /health` judges: the core's health, whether the node halted, and how long ago it
/// last committed (or started, before its first commit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthReport {
    /// The core's health state.
    pub health: Health,
    /// The core halted on a safety violation, or the node stopped committing on a store error.
    pub halted: bool,
    /// Time since the last commit applied here, or since the driver started if none yet.
    pub last_commit_age: Duration,
    /// Whether a block fetch is in flight (catching up).
    pub syncing: bool,
}

/// How often the driver logs a summary of what it committed (per-commit lines are `debug`).
pub const COMMIT_SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Commits since the last summary line.
#[derive(Debug)]
struct CommitSummary {
    since: Instant,
    blocks: u64,
    txs: u64,
    first_height: Option<u64>,
}

/// A stored, uncommitted block's payload, decoded once for its commit.
struct CachedPayload {
    height: consensus::Height,
    /// Encoded payload size, bytes.
    bytes: usize,
    payload: DecodedPayload,
    /// When the block was stored (we proposed it, or its proposal or sync response arrived):
    /// the start of `bftnode_block_commit_seconds`.
    stored_at: Instant,
}

/// Our block-sync requests awaiting a response: network request id → (core request id, when
/// sent). At most [`MAX_FETCHES`] entries; each is dropped after [`FETCH_EXPIRY`].
#[derive(Debug, Default)]
pub struct Fetches {
    map: HashMap<u64, (u64, Instant)>,
}

impl Fetches {
    /// Track network request `nid` for core request `core_id`, sent at `now`. Returns the core
    /// ids of the oldest requests dropped to stay within [`MAX_FETCHES`].
    pub fn insert(&mut self, nid: u64, core_id: u64, now: Instant) -> Vec<u64> {
        let mut dropped = Vec::new();
        while self.map.len() >= MAX_FETCHES {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(n, _)| *n);
            match oldest.and_then(|n| self.map.remove(&n)) {
                Some((id, _)) => dropped.push(id),
                None => break,
            }
        }
        self.map.insert(nid, (core_id, now));
        dropped
    }

    /// The response to `nid` arrived: its core id, if it is still tracked.
    pub fn remove(&mut self, nid: u64) -> Option<u64> {
        self.map.remove(&nid).map(|(id, _)| id)
    }

    /// Drop the requests sent [`FETCH_EXPIRY`] or more before `now`; returns their core ids.
    pub fn expire(&mut self, now: Instant) -> Vec<u64> {
        let mut dropped = Vec::new();
        self.map.retain(|_, (id, at)| {
            let keep = now.saturating_duration_since(*at) < FETCH_EXPIRY;
            if !keep {
                dropped.push(*id);
            }
            keep
        });
        dropped
    }

    /// Requests tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
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
        let height = self.metrics.committed_height.get() as u64;
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
            // Not biased: under a steady stream of network events, timers, commands and our
            // own follow-up events still get their turn.
            let r = tokio::select! {
                _ = shutdown.changed() => break Ok(()),
                _ = std::future::ready(()), if !self.followups.is_empty() => {
                    match self.followups.pop_front() {
                        Some(ev) => self.step(ev),
                        None => Ok(()),
                    }
                }
                ev = net_rx.recv() => match ev {
                    Some(ev) => self.on_network(ev),
                    None => break Err(anyhow!("network service stopped")),
                },
                _ = sleep_until(deadline), if deadline.is_some() => self.fire_timers(),
                _ = sleep_until(payload_at), if payload_at.is_some() => {
                    self.propose_now();
                    Ok(())
                }
                cmd = cmd_rx.recv() => match cmd {
                    Some(cmd) => { self.on_command(cmd); Ok(()) }
                    None => break Ok(()),
                },
                _ = gossip_tick.tick() => { self.flush_gossip(); Ok(()) }
                _ = adversary_tick.tick(), if adversary_ms.is_some() => self.intercept_tick(),
                _ = metrics_tick.tick() => {
                    self.update_metrics();
                    self.expire_fetches()
                }
            };
            if let Err(e) = r {
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
        let height = self.metrics.committed_height.get() as u64;
        self.log_span.update(self.core.current_view().0, height);
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
        let txs = self.mempool.take(cap);
        debug!(view = view.0, txs = txs.len(), "payload ready");
        let payload = Payload::Transactions(txs).encode();
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
                    batch.push(Op::PutSafety(*s));
                }
                Action::PersistBlock { id, block: b } => {
                    let payload = DecodedPayload::decode(&b.payload, app::PAYLOAD_DECODE_LIMIT);
                    let now = Instant::now();
                    for arrived in self
                        .mempool
                        .mark_in_flight(id, b.height, payload.hashes.clone())
                    {
                        self.queue_delay.observe(now, arrived);
                    }
                    let bytes = b.payload.len();
                    if self.decoded.len() < MAX_DECODED_BLOCKS
                        && self.decoded_bytes + bytes <= MAX_DECODED_BYTES
                        && !self.decoded.contains_key(&id)
                    {
                        self.decoded_bytes += bytes;
                        self.decoded.insert(
                            id,
                            CachedPayload {
                                height: b.height,
                                bytes,
                                payload,
                                stored_at: Instant::now(),
                            },
                        );
                    }
                    batch.push(Op::PutBlock { id, block: *b });
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
            Action::Send { to, msg } => self.net.send(to.0, msg.encode()),
            Action::Broadcast(msg) => self.net.broadcast(msg.encode(), false),
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

    /// Apply committed blocks: application writes, tx index, commit records, any missing
    /// block bodies, and the slashing hook (each block's misbehaviour list recorded as penalty
    /// entries, plus the accountant's state) in ONE atomic batch, written without its own fsync
    /// (durable with the next synced write: crate docs, "Durability"); then mempool cleanup,
    /// metrics and a log line.
    fn on_commit(&mut self, blocks: Vec<Block>, ids: Vec<BlockId>) -> Result<()> {
        let limit = app::PAYLOAD_DECODE_LIMIT;
        let mut batch = WriteBatch::new();
        let mut applied_now: HashSet<TxHash> = HashSet::new();
        let mut applied_all = Vec::new();
        let mut skipped = 0u64;
        let mut tip = None;
        let mut misbehaviour: Vec<fault::Misbehaviour> = Vec::new();
        let mut evidence_marked: HashSet<Vec<u8>> = HashSet::new();
        // Per block, what `GET /events` publishes once the commit is on disk.
        let mut published: Vec<CommitEvent> = Vec::new();
        let wanted = self.events.wanted();
        let store: &RocksStore = &self.store;
        let accountant = &mut self.accountant;
        let (decoded, decoded_bytes) = (&mut self.decoded, &mut self.decoded_bytes);
        let mut stored_at: Vec<Instant> = Vec::new();
        blocking(|| -> Result<()> {
            for (block, id) in blocks.iter().zip(&ids) {
                tip = Some((block.height, block.view, *id));
                if store.committed_id(block.height)? == Some(*id) {
                    continue; // already applied (idempotent)
                }
                if store.block(id)?.is_none() {
                    batch.push(Op::PutBlock {
                        id: *id,
                        block: block.clone(),
                    });
                }
                let mut err = None;
                let payload = match decoded.remove(id) {
                    Some(c) => {
                        *decoded_bytes -= c.bytes;
                        stored_at.push(c.stored_at);
                        c.payload
                    }
                    None => DecodedPayload::decode(&block.payload, limit),
                };
                let res = app::apply_decoded(block, *id, payload, |h| {
                    if applied_now.contains(h) {
                        return true;
                    }
                    match store.tx_location(h) {
                        Ok(loc) => loc.is_some(),
                        Err(e) => {
                            err = Some(e);
                            true
                        }
                    }
                });
                if let Some(e) = err {
                    return Err(e.into());
                }
                if res.invalid_payload {
                    warn!(height = block.height.0, id = %id, "committed block has an undecodable payload; skipped");
                }
                skipped += res.skipped;
                for w in res.writes {
                    batch.push(to_store_op(w));
                }
                for ev in &block.evidence {
                    batch.push(Op::PutEvidence(ev.clone()));
                    let key = app::committed_evidence_key(&ev.id());
                    if !evidence_marked.contains(&key) && store.app_get(&key)?.is_none() {
                        batch.push(Op::AppPut {
                            key: key.clone(),
                            value: consensus::encode(&block.height),
                        });
                        evidence_marked.insert(key);
                    }
                }
                misbehaviour.extend(accountant.on_commit(block, *id));
                batch.push(Op::Commit {
                    height: block.height,
                    id: *id,
                });
                if wanted {
                    published.push(CommitEvent {
                        height: block.height.0,
                        view: block.view.0,
                        id: id.to_hex(),
                        committed_unix_ms: 0,
                        txs: res.applied.iter().map(Digest::to_hex).collect(),
                    });
                }
                applied_now.extend(res.applied.iter().copied());
                applied_all.extend(res.applied);
            }
            let penalties = app::apply_misbehaviour(&misbehaviour, |v| -> Result<_> {
                match store.app_get(&app::penalty_key(v))? {
                    None => Ok(None),
                    Some(b) => Ok(Some(
                        app::PenaltyRecord::decode(&b).context("a stored penalty record")?,
                    )),
                }
            })?;
            for w in penalties {
                batch.push(to_store_op(w));
            }
            Ok(())
        })?;
        if tip.is_some() {
            batch.push(Op::AppPut {
                key: app::ACCOUNTING_KEY.to_vec(),
                value: self.accountant.encode_state(),
            });
        }
        for m in &misbehaviour {
            log_misbehaviour(m);
        }
        if let Some(op) = crate::conviction_op(self.core.policy(), &blocks) {
            batch.push(op);
        }
        self.write(batch).context("writing a commit")?;
        let unix_ms = crate::config::now_unix_ms();
        for mut event in published {
            event.committed_unix_ms = unix_ms;
            self.events.publish(event);
        }
        let Some((height, view, id)) = tip else {
            return Ok(());
        };
        let decoded_bytes = &mut self.decoded_bytes;
        self.decoded.retain(|_, c| {
            let keep = c.height > height;
            if !keep {
                *decoded_bytes -= c.bytes;
            }
            keep
        });
        let now = Instant::now();
        for t in stored_at {
            self.metrics
                .block_commit_latency
                .observe(now.duration_since(t).as_secs_f64());
        }
        for t in self.mempool.on_commit(&ids, height, &applied_all) {
            self.metrics
                .commit_latency
                .observe(now.duration_since(t).as_secs_f64());
        }
        self.metrics.commits.inc_by(blocks.len() as u64);
        self.metrics.committed_height.set(height.0 as i64);
        self.metrics.skipped_txs.inc_by(skipped);
        self.metrics.committed_txs.inc_by(applied_all.len() as u64);
        self.metrics.mempool_txs.set(self.mempool.len() as i64);
        self.metrics.mempool_bytes.set(self.mempool.bytes() as i64);
        self.metrics
            .last_commit_timestamp
            .set(crate::config::now_unix_ms() as f64 / 1000.0);
        self.last_commit_at = now;
        debug!(
            view = view.0,
            height = height.0,
            id = %id,
            blocks = blocks.len(),
            txs = applied_all.len(),
            skipped,
            "committed"
        );
        let s = &mut self.summary;
        s.blocks += blocks.len() as u64;
        s.txs += applied_all.len() as u64;
        let first = *s.first_height.get_or_insert(blocks[0].height.0);
        if now.duration_since(s.since) >= COMMIT_SUMMARY_EVERY {
            let secs = now.duration_since(s.since).as_secs_f64();
            info!(
                view = view.0,
                height = height.0,
                from_height = first,
                blocks = s.blocks,
                txs = s.txs,
                tx_per_s = (s.txs as f64 / secs).round(),
                "committed in the last {secs:.0} s"
            );
            *s = CommitSummary {
                since: now,
                blocks: 0,
                txs: 0,
                first_height: None,
            };
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
            ops: vec![Op::PutEvidence(ev)],
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

    /// A transaction gossip message from `from` ([`ingest_gossip`]). Never fatal: a store read
    /// error fails this message only.
    fn on_tx_gossip(&mut self, from: PeerId, bytes: &[u8]) {
        let store: &RocksStore = &self.store;
        let (mempool, metrics) = (&mut self.mempool, &*self.metrics);
        let evicted = mempool.evicted();
        let report = blocking(|| {
            ingest_gossip(
                mempool,
                store,
                Source::Peer(from),
                bytes,
                Instant::now(),
                metrics,
            )
        });
        if let Err(e) = report {
            debug!(peer = %from, error = %e, "undecodable transaction gossip");
            self.metrics.invalid_messages.inc();
            return;
        }
        self.metrics
            .mempool_evicted
            .inc_by(self.mempool.evicted() - evicted);
        self.wake_proposal();
    }

    fn submit(&mut self, txs: Vec<Transaction>) -> Vec<Result<TxHash, MempoolError>> {
        let now = Instant::now();
        if let Some(waited) = self.queue_delay.congested(now) {
            let refusal = MempoolError::Congested {
                waited_ms: waited.as_millis() as u64,
                target_ms: self.queue_delay.target().as_millis() as u64,
            };
            return txs.iter().map(|_| Err(refusal.clone())).collect();
        }
        let evicted = self.mempool.evicted();
        let store: &RocksStore = &self.store;
        let (mempool, metrics) = (&mut self.mempool, &*self.metrics);
        let out: Vec<_> = blocking(|| {
            txs.into_iter()
                .map(|tx| {
                    let r = submit_one(mempool, store, tx.clone(), now, metrics);
                    (tx, r)
                })
                .collect()
        });
        let out = out
            .into_iter()
            .map(|(tx, r)| {
                if r.is_ok() {
                    self.gossip_bytes += tx.encoded_len();
                    self.gossip_buf.push(tx);
                    if self.gossip_bytes >= GOSSIP_FLUSH_BYTES
                        || self.gossip_flushed_at.elapsed() >= GOSSIP_FLUSH_INTERVAL
                    {
                        self.flush_gossip();
                    }
                }
                r
            })
            .collect();
        self.metrics
            .mempool_evicted
            .inc_by(self.mempool.evicted() - evicted);
        self.metrics.mempool_txs.set(self.mempool.len() as i64);
        self.metrics.mempool_bytes.set(self.mempool.bytes() as i64);
        self.wake_proposal();
        out
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

    fn flush_gossip(&mut self) {
        if self.gossip_buf.is_empty() {
            return;
        }
        let txs = std::mem::take(&mut self.gossip_buf);
        self.gossip_bytes = 0;
        self.gossip_flushed_at = Instant::now();
        self.net
            .publish(Topic::Transactions, consensus::encode(&txs));
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

    fn on_command(&mut self, cmd: Command) {
        // A dropped reply channel means the HTTP client went away: nothing to do.
        match cmd {
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Validators(reply) => {
                let _ = reply.send(self.validators());
            }
            Command::Evidence(reply) => {
                let _ = reply.send(self.evidence());
            }
            Command::WhyStalled(reply) => {
                let now = self.now();
                let st = self.core.status(now);
                let report = self.core.stall_report(now);
                let _ = reply.send(crate::why_stalled::diagnose(
                    &report,
                    self.core.validators(),
                    st.committed_height.0,
                    self.last_commit_at.elapsed(),
                    st.halted || self.halted,
                ));
            }
            Command::Health(reply) => {
                let st = self.core.status(self.now());
                let _ = reply.send(HealthReport {
                    health: st.health,
                    halted: st.halted || self.halted,
                    last_commit_age: self.last_commit_at.elapsed(),
                    syncing: st.syncing,
                });
            }
            Command::Submit { txs, reply } => {
                let r = self.submit(txs);
                let _ = reply.send(r);
            }
            Command::IsPending(hash, reply) => {
                let _ = reply.send(self.mempool.contains(&hash));
            }
            Command::Faults(reply) => {
                let _ = reply.send(self.faults());
            }
            Command::EvidenceProof { id, reply } => {
                let _ = reply.send(self.evidence_proof(&id));
            }
        }
    }

    /// Record since when each validator is isolated, suspected or down.
    fn watch_faults(&mut self, st: &consensus::CoreStatus) {
        let now = faults::conditions(
            st,
            self.core.policy(),
            &self.connected,
            self.core.validators(),
        );
        self.fault_watch
            .observe(now, st.view.0, st.committed_height.0);
    }

    fn faults(&mut self) -> FaultsResponse {
        let st = self.core.status(self.now());
        self.watch_faults(&st);
        faults::report(&faults::Inputs {
            status: &st,
            policy: self.core.policy(),
            validators: self.core.validators(),
            connected: &self.connected,
            watch: &self.fault_watch,
            config: &self.info.fault,
            domain_chain_id: self.domain.chain_id(),
        })
    }

    /// The evidence items held, pool first then store, each once, with whether it is
    /// committed.
    fn evidence_items(&self) -> Vec<(Evidence, bool)> {
        let policy = self.core.policy();
        let mut items = policy.evidence(MAX_EVIDENCE_LISTED);
        match blocking(|| self.store.evidence(MAX_EVIDENCE_LISTED)) {
            Ok(stored) => items.extend(stored),
            Err(e) => error!(error = %e, "reading evidence failed"),
        }
        let mut seen = HashSet::new();
        items
            .into_iter()
            .filter(|e| seen.insert(e.id()))
            .map(|e| {
                let committed = policy.evidence_state(e.key()) == Some(true);
                (e, committed)
            })
            .collect()
    }

    fn evidence_proof(&self, id: &consensus::Digest) -> Option<EvidenceProof> {
        self.evidence_items()
            .into_iter()
            .find(|(e, _)| e.id() == *id)
            .map(|(e, committed)| EvidenceProof::new(&e, &self.info.genesis, committed))
    }

    fn status(&self) -> StatusResponse {
        let st = self.core.status(self.now());
        let sync_state = if st.halted || self.halted {
            "halted"
        } else if st.syncing {
            "syncing"
        } else {
            "synced"
        };
        StatusResponse {
            chain_id: self.info.chain_id.clone(),
            validator_index: st.me.0,
            peer_id: self.net.local_peer_id().to_string(),
            view: st.view.0,
            leader: st.leader.0,
            committed_height: st.committed_height.0,
            last_commit_id: st.last_commit_id.to_hex(),
            high_qc_view: st.lock_view.0,
            high_qc_block: st.lock_block.to_hex(),
            high_tc_view: st.high_tc_view.map(|v| v.0),
            health: format!("{:?}", st.health),
            sync_state: sync_state.to_string(),
            mempool_txs: self.mempool.len(),
            mempool_bytes: self.mempool.bytes(),
            peers_connected: self.connected.len(),
            version: crate::build_info::VERSION.to_string(),
            git_commit: crate::build_info::GIT_COMMIT.to_string(),
            last_commit_age_ms: self.last_commit_at.elapsed().as_millis() as u64,
            retained_from: self.metrics.retained_from_height.get().max(1) as u64,
            signing: if st.signing_held {
                "held: double-sign check at start".to_string()
            } else if st.signing_suspended_until > st.view {
                format!(
                    "suspended until view {}: our key signed elsewhere",
                    st.signing_suspended_until.0
                )
            } else {
                "active".to_string()
            },
        }
    }

    fn validators(&self) -> Vec<ValidatorResponse> {
        let st = self.core.status(self.now());
        let vs = self.core.validators();
        let mut conflicting: HashMap<ValidatorIndex, u64> = HashMap::new();
        for e in self.core.policy().evidence(MAX_EVIDENCE_LISTED) {
            if faults::is_conflicting(e.kind()) {
                *conflicting.entry(e.offender()).or_default() += 1;
            }
        }
        vs.indices()
            .map(|i| {
                let pk = vs
                    .public_key(i)
                    .copied()
                    .unwrap_or(consensus::PublicKey([0; 32]));
                let s = st.validators.iter().find(|s| s.index == i);
                ValidatorResponse {
                    index: i.0,
                    public_key: hex::encode(pk.0),
                    power: vs.power(i),
                    p2p_addr: self
                        .info
                        .p2p_addrs
                        .get(usize::from(i.0))
                        .map(|a| a.to_string())
                        .unwrap_or_default(),
                    peer_id: network::peer_id_of(&pk.0)
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    state: s.map_or("Active".to_string(), |s| format!("{:?}", s.state)),
                    weight: s.map_or(0, |s| s.weight),
                    proposed: s.map_or(0, |s| s.proposed),
                    failed: s.map_or(0, |s| s.failed),
                    voted: s.map_or(0, |s| s.voted),
                    invalid_messages: s.map_or(0, |s| s.invalid_messages),
                    evidence: s.map_or(0, |s| s.evidence),
                    convicted: s.is_some_and(|s| s.convicted),
                    is_leader: st.leader == i,
                    duplicate_key_suspected: 0,
                    conflicting_messages: conflicting.get(&i).copied().unwrap_or(0),
                }
            })
            .collect()
    }

    fn evidence(&self) -> Vec<EvidenceResponse> {
        self.evidence_items()
            .into_iter()
            .map(|(e, committed)| EvidenceResponse {
                id: e.id().to_hex(),
                kind: e.kind().as_str().to_string(),
                offender: e.offender().0,
                view: e.view().0,
                committed,
            })
            .collect()
    }
}

/// Decode a transaction gossip message (a borsh `Vec<Transaction>` of at most
/// `MAX_GOSSIP_BYTES`), taking at most `max_txs` transactions: the rest is never decoded.
/// Returns them, their hashes (taken over their encoded bytes, [`app::decode_hashed`]) and how
/// many more the message claims. Errors: the message is too large or malformed up to the cap.
pub fn decode_gossip_txs(
    bytes: &[u8],
    max_txs: usize,
) -> Result<(Vec<Transaction>, Vec<TxHash>, usize), consensus::codec::DecodeError> {
    use borsh::BorshDeserialize;
    use consensus::codec::DecodeError;
    if bytes.len() > MAX_GOSSIP_BYTES {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit: MAX_GOSSIP_BYTES,
        });
    }
    let malformed = |e: std::io::Error| DecodeError::Malformed(e.to_string());
    let mut rest = bytes;
    let claimed = u32::deserialize(&mut rest).map_err(malformed)? as usize;
    let take = claimed.min(max_txs);
    let (txs, hashes) = app::decode_hashed(&mut rest, take).map_err(malformed)?;
    if take == claimed && !rest.is_empty() {
        return Err(DecodeError::Malformed("trailing bytes".to_string()));
    }
    Ok((txs, hashes, claimed - take))
}

/// What [`ingest_gossip`] did with one message, by outcome (also counted in
/// `bftnode_gossip_txs_total`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GossipReport {
    /// Entered the mempool.
    pub accepted: usize,
    /// Dropped by the in-memory checks (duplicate, invalid, over quota, full): no store read.
    pub dropped_in_memory: usize,
    /// Already committed (found by a store read).
    pub committed: usize,
    /// Beyond [`MAX_GOSSIP_TXS`], never decoded.
    pub truncated: usize,
    /// The store read that failed, if one did: the rest of the message was not examined.
    pub read_error: Option<StoreError>,
}

/// The outcome label of a refused transaction.
fn refusal_label(e: &MempoolError) -> &'static str {
    match e {
        MempoolError::AlreadyPending { .. } => gossip_outcome::DUPLICATE,
        MempoolError::AlreadyCommitted { .. } => gossip_outcome::COMMITTED,
        MempoolError::Invalid(_) => gossip_outcome::INVALID,
        MempoolError::OverQuota { .. } => gossip_outcome::OVER_QUOTA,
        MempoolError::Full { .. } => gossip_outcome::FULL,
        // Local submissions only; never a gossip outcome.
        MempoolError::Congested { .. } => gossip_outcome::FULL,
    }
}

/// Handle one transaction gossip message from `source` (module docs, "Gossip and peer reads"):
/// decode at most [`MAX_GOSSIP_TXS`] transactions; for each, validate, hash and check the
/// mempool in memory (duplicate, quota, room) and only then read the store once (already
/// committed?) before inserting. A store read error stops the message there: it is logged and
/// counted (`store_read_errors{path="gossip"}`), the rest of the message is dropped, and the
/// error is returned in the report, never as `Err`. Blocks on store reads.
/// Errors: the message does not decode ([`decode_gossip_txs`]); nothing was inserted.
pub fn ingest_gossip(
    mempool: &mut Mempool,
    store: &impl Store,
    source: Source,
    bytes: &[u8],
    now: Instant,
    metrics: &Metrics,
) -> Result<GossipReport, consensus::codec::DecodeError> {
    let (txs, hashes, truncated) = decode_gossip_txs(bytes, MAX_GOSSIP_TXS)?;
    let mut report = GossipReport {
        truncated,
        ..GossipReport::default()
    };
    metrics.count_gossip_txs(gossip_outcome::TRUNCATED, truncated as u64);
    let total = txs.len();
    for (i, (tx, hash)) in txs.into_iter().zip(hashes).enumerate() {
        let checked = tx
            .validate()
            .map_err(MempoolError::from)
            .and_then(|()| mempool.check(&source, &hash, tx.encoded_len()));
        if let Err(e) = checked {
            report.dropped_in_memory += 1;
            metrics.count_gossip_txs(refusal_label(&e), 1);
            continue;
        }
        match store.tx_location(&hash) {
            Ok(Some(_)) => {
                report.committed += 1;
                metrics.count_gossip_txs(gossip_outcome::COMMITTED, 1);
            }
            Ok(None) => match mempool.insert_hashed(source, tx, hash, false, now) {
                Ok(_) => {
                    report.accepted += 1;
                    metrics.count_gossip_txs(gossip_outcome::ACCEPTED, 1);
                }
                Err(e) => {
                    report.dropped_in_memory += 1;
                    metrics.count_gossip_txs(refusal_label(&e), 1);
                }
            },
            Err(e) => {
                metrics.count_store_read_error("gossip");
                metrics.count_gossip_txs(gossip_outcome::READ_ERROR, (total - i) as u64);
                warn!(
                    tx = %hash,
                    error = %e,
                    "tx gossip: store read failed; rest of the message dropped"
                );
                report.read_error = Some(e);
                break;
            }
        }
    }
    Ok(report)
}

/// Add one locally submitted transaction: the in-memory checks (validity, duplicate, room)
/// before the one store read (already committed?). A failed read is logged and counted
/// (`store_read_errors{path="submit"}`) and the transaction is taken as not committed (replays
/// are skipped deterministically at commit anyway). Blocks on the store read.
fn submit_one(
    mempool: &mut Mempool,
    store: &impl Store,
    tx: Transaction,
    now: Instant,
    metrics: &Metrics,
) -> Result<TxHash, MempoolError> {
    tx.validate()?;
    let hash = tx.hash();
    mempool.check(&Source::Local, &hash, tx.encoded_len())?;
    let committed = match store.tx_location(&hash) {
        Ok(loc) => loc.is_some(),
        Err(e) => {
            metrics.count_store_read_error("submit");
            error!(tx = %hash, error = %e, "reading the tx index failed");
            false
        }
    };
    mempool.insert_hashed(Source::Local, tx, hash, committed, now)
}

/// One `warn` line per entry of a committed misbehaviour list.
fn log_misbehaviour(m: &fault::Misbehaviour) {
    match &m.offence {
        Offence::Evidence { id, kind, .. } => warn!(
            offender = m.offender.0,
            height = m.height.0,
            evidence = %id,
            kind = kind.as_str(),
            standing = m.standing.as_str(),
            "penalty recorded: committed evidence"
        ),
        Offence::Downtime(d) => warn!(
            offender = m.offender.0,
            height = m.height.0,
            signed = d.tally.signed,
            eligible = d.tally.eligible,
            window_start = d.window_start.0,
            standing = m.standing.as_str(),
            "penalty recorded: downtime"
        ),
    }
}

fn to_store_op(w: AppWrite) -> Op {
    match w {
        AppWrite::Put { key, value } => Op::AppPut { key, value },
        AppWrite::Delete { key } => Op::AppDelete { key },
        AppWrite::IndexTx {
            hash,
            height,
            block_id,
            index,
        } => Op::IndexTx {
            hash,
            location: TxLocation {
                height,
                block_id,
                index,
            },
        },
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outstanding_fetches_are_bounded_and_expire() {
        let t0 = Instant::now();
        let mut f = Fetches::default();
        for nid in 0..MAX_FETCHES as u64 {
            let at = t0 + Duration::from_millis(nid);
            assert!(f.insert(nid, 1000 + nid, at).is_empty());
        }
        // One more drops the oldest (its core request fails), never grows the map.
        let late = t0 + Duration::from_secs(1);
        assert_eq!(f.insert(500, 1500, late), vec![1000]);
        assert_eq!(f.len(), MAX_FETCHES);
        assert_eq!(f.remove(0), None, "dropped: a late response is ignored");
        assert_eq!(f.remove(1), Some(1001));
        // Responses that never come: everything sent FETCH_EXPIRY ago goes.
        let mut expired = f.expire(t0 + FETCH_EXPIRY + Duration::from_millis(100));
        expired.sort();
        assert_eq!(
            expired,
            (1002..1000 + MAX_FETCHES as u64).collect::<Vec<_>>()
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f.expire(late + FETCH_EXPIRY), vec![1500]);
        assert!(f.is_empty());
    }
}
