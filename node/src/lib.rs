//! # node — the bftnode validator process
//!
//! Wires the sans-IO consensus [`consensus::Core`] to the world: RocksDB ([`storage`]),
//! libp2p/QUIC ([`network`]), the mempool, the key-value application, an HTTP RPC server and
//! Prometheus metrics. The `bftnode` binary (crate `cli`) calls [`run`]; integration tests call
//! [`spawn`] to start several nodes in one process. Adversarial test validators
//! (`bftnode-adversary`, crate `testnet`) start through [`spawn_loaded_with`] /
//! [`run_loaded_with`] with an [`Interceptor`] between the driver and the core; production
//! passes none.
//!
//! ## Tasks and channels
//!
//! ```text
//!                 NetworkEvent (mpsc)                      Command + oneshot reply (mpsc)
//!  network task ───────────────────────▶ ┌──────────────┐ ◀──────────────────────────── RPC server
//!  (libp2p QUIC)◀─────────────────────── │ driver task  │                               (axum task,
//!                NetworkHandle (cmds)    │  owns Core,  │ ──┐                            per-request
//!                                        │  Mempool,    │   │ synced write batches       handlers)
//!  shutdown (watch) ────────────────────▶│  timer wheel │   ▼                                 │
//!  (ctrl-c / SIGTERM / NodeHandle::stop) └──────────────┘  RocksStore (Arc)  ◀────── reads ───┘
//! ```
//!
//! * One **driver** task owns the core and `select!`s over network events, timer deadlines
//!   (a `BTreeMap<(ms, seq), Timer>`), RPC commands, a 2 ms gossip-flush tick, a metrics tick
//!   and shutdown. Time is monotonic milliseconds since the driver started.
//! * **Persist before send**: actions run in order; consecutive `PersistSafety` / `PersistBlock`
//!   actions become one synced RocksDB batch written before any later send, broadcast or fetch.
//! * A **commit** is one atomic batch (not synced by itself: "Durability" below): application
//!   writes, the transaction index, evidence the
//!   blocks carry (with the height that committed it), the slashing hook's penalty entries and
//!   the accountant's state (PROTOCOL.md §6.6, [`app`]), the conviction record when it changed,
//!   and the commit records — the application state is therefore always exactly the state at
//!   the committed tip, and nothing needs replaying at restart.
//! * **Admission**: a client's transaction enters the mempool within its source's share
//!   ([`mempool`]) unless the node is congested ([`queue_delay`]: committed transactions kept
//!   waiting over `mempool.max_queue_delay_ms`), and is pushed once to every validator in a
//!   batch every 2 ms (`network`, `/bftnode/txs/1`).
//! * The **RPC** server reads committed data from the store directly (on tokio's blocking
//!   pool) and asks the driver for live state. The store is shared as `Arc<RocksStore>` with no
//!   lock: the driver is its only writer and readers never wait for a write (see
//!   [`driver`], "The store and blocking calls").
//!
//! ## Durability
//! Safety data and the blocks a vote or timeout depends on are written with a synced write
//! before the message leaves (PROTOCOL.md §3 rule 4). A commit batch is written without an
//! fsync of its own, which took one of the two fsyncs per view off every node (`testnet/bench.sh`
//! figures in the issue 10 note). It is durable all the same:
//! * a process crash (kill -9, panic, OOM) loses nothing: the write is in the kernel's page
//!   cache before `write` returns;
//! * RocksDB's write-ahead log is one sequential file, so the next synced write (the next vote,
//!   timeout or proposal; at most one view later) makes every earlier write durable with it;
//! * a power loss can lose only the commits since the last synced write. RocksDB recovers a
//!   prefix of the writes (`PointInTime` WAL recovery, set in `storage`), so the committed tip,
//!   application state, transaction index, accountant and conviction records still match each
//!   other; the lost commits are re-made from certificates and block sync exactly as a node
//!   that stopped at that tip would, and their blocks, if we voted for them, are still stored.
//!
//! ## Recovery
//! At start the store is opened and bound to the chain id. A fresh store is initialised with
//! the genesis block and the genesis safety record (one synced batch). A store holding
//! committed blocks but no safety record is refused: a validator that forgot what it voted
//! could vote twice.
#![deny(missing_docs)]

pub mod app;
pub mod build_info;
pub mod config;
pub mod driver;
pub mod events;
pub mod fault_params;
pub mod faults;
pub mod interceptor;
pub mod log_limit;
pub mod log_span;
pub mod mempool;
pub mod metrics;
pub mod proof;
pub mod proposal_cap;
pub mod pruner;
pub mod queue_delay;
pub mod relay;
pub mod reset;
pub mod rpc;
pub mod rpc_guard;
pub mod rpc_types;
pub mod shared_store;
pub mod storage_metrics;
pub mod sync_server;
pub mod why_stalled;

pub use config::{ConfigOverrides, Genesis, NodeConfig, generate_testnet, init_home, init_single};
pub use interceptor::Interceptor;

use anyhow::{Context, Result, bail};
use config::{Loaded, LogFormat};
use consensus::core::Recovered;
use consensus::{Block, Core, SafetyData, ValidatorSet};
use driver::{Driver, DriverInfo};
use fault::{Accountant, FaultConfig, FaultTolerance};
use mempool::{Mempool, MempoolConfig};
use metrics::Metrics;
use network::NetworkConfig;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use storage::{Op, RocksStore, Store, WriteBatch};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument as _, info};

/// Largest number of committed blocks handed to the core at start: what the leader election can
/// ever need (`fault::MAX_REPLAY_DEPTH`), so a restarted node elects the same leaders as the rest.
const MAX_RECOVERED_BLOCKS: usize = fault::MAX_REPLAY_DEPTH;

/// A running node inside the current tokio runtime.
pub struct NodeHandle {
    rpc_addr: SocketAddr,
    index: u16,
    shutdown: watch::Sender<bool>,
    driver: JoinHandle<Result<()>>,
    server: JoinHandle<()>,
    pruner: Option<JoinHandle<()>>,
    /// Fires once the store every task shares is closed.
    store_closed: shared_store::StoreClosed,
}

/// Longest [`NodeHandle::stop`] waits, once every task stopped, for the blocking reads still in
/// flight (RPC queries, block-sync answers) to release the database: 10 s.
const STORE_RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

impl NodeHandle {
    /// The address the RPC server is bound to.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc_addr
    }
    /// Our validator index.
    pub fn index(&self) -> u16 {
        self.index
    }
    /// Whether the driver stopped (on a fatal error, or after shutdown).
    pub fn is_finished(&self) -> bool {
        self.driver.is_finished()
    }
    /// Stop the node and wait for its tasks; returns the driver's result. The database is
    /// closed (its lock file released) when this returns `Ok`.
    ///
    /// # Errors
    /// The driver's own error, or, if blocking reads still hold the store
    /// [`STORE_RELEASE_TIMEOUT`] after every task stopped, an error saying so.
    pub async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        let r = match self.driver.await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("driver task failed: {e}")),
        };
        let mut server = self.server;
        if tokio::time::timeout(Duration::from_secs(5), &mut server)
            .await
            .is_err()
        {
            server.abort();
            let _ = server.await;
        }
        if let Some(pruner) = self.pruner {
            // It stops at the end of its current pass (one chunk write at most).
            let _ = pruner.await;
        }
        // Reads run on tokio's blocking pool with their own reference to the store and may
        // outlive the tasks above; the database (and its lock file) closes with the last one.
        if tokio::time::timeout(STORE_RELEASE_TIMEOUT, self.store_closed.wait())
            .await
            .is_err()
        {
            r?;
            anyhow::bail!("the database is still open {STORE_RELEASE_TIMEOUT:?} after stop");
        }
        r
    }
    /// Wait until the driver stops by itself (fatal error or network loss). Do not call
    /// [`NodeHandle::stop`] after this returned.
    pub async fn wait(&mut self) -> Result<()> {
        match (&mut self.driver).await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("driver task failed: {e}")),
        }
    }
}

/// Load `home` (with `overrides`), set up logging, start the node and run it until ctrl-c or
/// SIGTERM.
pub async fn run(home: &Path, overrides: ConfigOverrides) -> Result<()> {
    let loaded = config::load_home(home, &overrides)?;
    run_loaded_with(loaded, None).await
}

/// Set up logging, start the node from `loaded` with `interceptor` ([`spawn_loaded_with`]) and
/// run it until ctrl-c or SIGTERM. [`run`] is this with no interceptor.
pub async fn run_loaded_with(
    loaded: Loaded,
    interceptor: Option<Box<dyn Interceptor>>,
) -> Result<()> {
    init_logging(loaded.config.log_format, &loaded.config.log_level);
    let mut node = spawn_loaded_with(loaded, interceptor).await?;
    tokio::select! {
        r = node.wait() => {
            return r.context("node stopped");
        }
        _ = shutdown_signal() => {
            info!("shutdown signal received");
        }
    }
    node.stop().await
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Install the global `tracing` subscriber (text or JSON). A no-op if one is installed already.
/// `RUST_LOG`, when set, overrides `level`. Span field values in the filter match literally,
/// never as regular expressions: a regex is compiled to a DFA whose size is exponential in the
/// pattern, so a ~130-byte filter could stall start-up for minutes (fuzz target `config_toml`).
/// Repeated WARN/ERROR lines are rate-limited ([`log_limit`]); JSON lines carry the current
/// span's fields ([`log_span::json_layer`]).
pub fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filters = tracing_subscriber::EnvFilter::builder().with_regex(false);
    let filter = filters
        .try_from_env()
        .or_else(|_| filters.parse(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(log_limit::RateLimited::new(log_span::json_layer()))
            .try_init(),
        LogFormat::Text => registry
            .with(log_limit::RateLimited::new(tracing_subscriber::fmt::layer()))
            .try_init(),
    };
}

/// Load `home` and start a node in the current runtime (no logging setup, no signal handling).
pub async fn spawn(home: &Path, overrides: ConfigOverrides) -> Result<NodeHandle> {
    let loaded = config::load_home(home, &overrides)?;
    spawn_loaded(loaded).await
}

/// Most evidence items reloaded from the store at start.
const MAX_RESTORED_EVIDENCE: usize = 100_000;

/// Give the fault policy what it needs beyond the committed blocks the core replays (issue 7
/// finding 3): the conviction record, which the leader function depends on for all time, and
/// the stored evidence — items a block committed go back as committed at that block's height
/// (recorded under [`app::committed_evidence_key`] at commit), the others as pending, to be
/// proposed again. Call before the core is built. Returns the number of evidence items kept.
/// Errors: the store's ([`storage::StoreError`]).
pub fn restore_policy(
    store: &impl Store,
    validators: &ValidatorSet,
    policy: &mut FaultTolerance,
) -> Result<usize> {
    policy.restore_convictions(&store.convictions()?);
    let mut kept = 0;
    for ev in store.evidence(MAX_RESTORED_EVIDENCE)? {
        let committed_at = store
            .app_get(&app::committed_evidence_key(&ev.id()))?
            .map(|b| consensus::decode::<consensus::Height>(&b, 8))
            .transpose()
            .context("the commit height of stored evidence does not decode")?;
        let restored = match committed_at {
            Some(h) => policy.restore_committed_evidence(&ev, h, validators),
            None => policy.restore_evidence(&ev, validators),
        };
        kept += usize::from(restored);
    }
    Ok(kept)
}

/// The write that keeps the conviction record current, for a commit batch of `blocks` that the
/// core's `policy` has already taken in: the whole record, if any block carries safety evidence
/// (issue 7 finding 3). Written in the same atomic batch as the commit.
pub fn conviction_op(policy: &FaultTolerance, blocks: &[Block]) -> Option<Op> {
    blocks
        .iter()
        .any(|b| b.evidence.iter().any(|e| e.kind().is_safety()))
        .then(|| Op::PutConvictions(policy.convictions().to_vec()))
}

/// The accountant at the committed tip (PROTOCOL.md §6.6): its state as written by the last
/// commit, or, for a store that holds committed blocks but no state (written before the
/// accountant existed), rebuilt by feeding every committed block from height 1 in order.
/// Errors: the store's; a stored state that does not decode or is for another set size.
pub fn restore_accountant(store: &impl Store, n: usize, cfg: &FaultConfig) -> Result<Accountant> {
    if let Some(bytes) = store.app_get(app::ACCOUNTING_KEY)? {
        return Accountant::restore(n, cfg, &bytes)
            .context("restoring the accountability state from the database");
    }
    let mut a = Accountant::new(n, cfg);
    let tip = store.committed_tip()?.map_or(0, |(h, _)| h.0);
    for h in 1..=tip {
        let id = store
            .committed_id(consensus::Height(h))?
            .with_context(|| format!("no committed block id at height {h}"))?;
        let block = store
            .block(&id)?
            .with_context(|| format!("committed block {id} at height {h} is missing"))?;
        a.on_commit(&block, id);
    }
    Ok(a)
}

/// Open the store and recover the core's state (see the crate docs, "Recovery").
fn recover(
    store: &mut RocksStore,
    loaded: &Loaded,
    replay_depth: usize,
) -> Result<(SafetyData, Recovered)> {
    let domain = loaded.validators.domain();
    let genesis = Block::genesis(domain);
    let genesis_id = genesis.id(domain);
    let safety = store.load_safety()?;
    let tip = store.committed_tip()?;
    match (safety, tip) {
        (safety, None) => {
            // A fresh database, or one `bftnode reset` left holding only the safety record:
            // start from genesis, keeping the record (so nothing at or below the views it
            // signed in is signed again).
            let kept = safety.is_some();
            let safety = safety.unwrap_or_else(|| SafetyData::genesis(genesis_id));
            info!(
                genesis = %genesis_id,
                kept_safety_record = kept,
                last_voted_view = safety.last_voted_view.0,
                "database without committed blocks: initialising from genesis"
            );
            store.write(WriteBatch {
                sync: true,
                ops: vec![
                    Op::PutBlock {
                        id: genesis_id,
                        block: Box::new(genesis.clone()),
                    },
                    Op::Commit {
                        height: genesis.height,
                        id: genesis_id,
                    },
                    Op::PutSafety(Box::new(safety.clone())),
                ],
            })?;
            Ok((
                safety,
                Recovered {
                    committed: vec![genesis],
                    uncommitted: Vec::new(),
                },
            ))
        }
        (None, Some((h, _))) => bail!(
            "database {} holds committed blocks up to height {} but no safety record; refusing \
             to start: a validator that lost its safety record could vote twice. Restore the \
             database, or wipe it only if this key has never voted on this chain",
            loaded.db_path.display(),
            h.0
        ),
        (Some(safety), tip) => {
            if let Some(id0) = store.committed_id(genesis.height)?
                && id0 != genesis_id
            {
                bail!(
                    "database {} was created from a different genesis (block 0 is {id0}, \
                     expected {genesis_id})",
                    loaded.db_path.display()
                );
            }
            let mut committed = if tip.is_some() {
                store.last_committed(replay_depth.clamp(1, MAX_RECOVERED_BLOCKS))?
            } else {
                Vec::new()
            };
            if committed.is_empty() {
                committed.push(genesis);
            }
            let uncommitted = store.uncommitted_blocks()?;
            info!(
                committed_height = committed.last().map_or(0, |b| b.height.0),
                uncommitted = uncommitted.len(),
                last_voted_view = safety.last_voted_view.0,
                "recovered from the database"
            );
            Ok((
                safety,
                Recovered {
                    committed,
                    uncommitted,
                },
            ))
        }
    }
}

/// Start a node from already-loaded configuration in the current runtime.
pub async fn spawn_loaded(loaded: Loaded) -> Result<NodeHandle> {
    spawn_loaded_with(loaded, None).await
}

/// [`spawn_loaded`] with an [`Interceptor`] between the driver and the core: for adversarial
/// test nodes (`bftnode-adversary`) only; `None` is exactly [`spawn_loaded`].
pub async fn spawn_loaded_with(
    loaded: Loaded,
    interceptor: Option<Box<dyn Interceptor>>,
) -> Result<NodeHandle> {
    let cfg = &loaded.config;
    let vs = loaded.validators.clone();
    let index = loaded.index;
    let metrics = Arc::new(Metrics::new());

    let mut store = RocksStore::open(&loaded.db_path, cfg.storage.rocks_options())
        .with_context(|| format!("opening database {}", loaded.db_path.display()))?;
    store
        .check_chain_id(&cfg.chain_id)
        .with_context(|| format!("opening database {}", loaded.db_path.display()))?;
    let fault_config = loaded.genesis.fault_config(&cfg.fault);
    let mut policy = FaultTolerance::new(&vs, fault_config.clone());
    restore_policy(&store, &vs, &mut policy)?;
    let accountant = restore_accountant(&store, vs.len(), &fault_config)?;
    let (safety, recovered) = recover(&mut store, &loaded, policy.replay_depth())?;
    let committed_height = recovered.committed.last().map_or(0, |b| b.height.0);
    metrics.committed_height.set(committed_height as i64);

    let mut ccfg = consensus::Config::new(index);
    ccfg.delta_ms = cfg.consensus.delta_ms;
    ccfg.timeout_base_ms = cfg.consensus.timeout_base_ms;
    ccfg.timeout_max_ms = cfg.consensus.timeout_max_ms;
    ccfg.resend_ms = cfg.consensus.resend_ms;
    ccfg.silent_leader_ms = cfg.consensus.timeout_base_ms;
    ccfg.double_sign_check_views = cfg.consensus.double_sign_check_views;
    ccfg.double_sign_check_ms = cfg.consensus.timeout_base_ms;
    ccfg.double_sign_window = cfg.consensus.double_sign_window;
    // `max_payload_bytes` stays at the chain-wide default: validation must not depend on a
    // node's local config; `block.max_block_bytes` only bounds our own proposals.

    let seed = zeroize::Zeroizing::new(loaded.key.seed());
    let core = Core::new(ccfg, vs.clone(), loaded.key, policy, safety, recovered)
        .context("building the consensus core from the recovered state")?;

    let p2p_addrs = loaded.peers.iter().map(|p| p.addr).collect();
    let mut net_cfg = NetworkConfig::new(*seed, cfg.p2p_listen, loaded.peers.clone());
    cfg.network.apply_to(&mut net_cfg);
    let (net, net_rx) = network::start(net_cfg)
        .await
        .with_context(|| format!("starting the network on {}", cfg.p2p_listen))?;

    let listener = tokio::net::TcpListener::bind(cfg.rpc_listen)
        .await
        .with_context(|| format!("binding the RPC server to {}", cfg.rpc_listen))?;
    let rpc_addr = listener.local_addr()?;

    let (store, store_closed) = shared_store::OpenStore::share(store);
    let (cmd_tx, cmd_rx) = mpsc::channel(1024);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let events = events::CommitEvents::default();
    let state = Arc::new(rpc::RpcState {
        store: store.clone(),
        cmd: cmd_tx,
        net: net.clone(),
        metrics: metrics.clone(),
        events: events.clone(),
        shutdown: shutdown_rx.clone(),
        health_max_commit_age: Duration::from_millis(cfg.rpc.health_max_commit_age_ms),
    });
    let pruner = (cfg.storage.retain_heights > 0).then(|| {
        let pruner =
            pruner::Pruner::new(store.clone(), cfg.storage.retain_heights, metrics.clone());
        tokio::spawn(
            pruner
                .run(shutdown_rx.clone())
                .instrument(tracing::info_span!("pruner")),
        )
    });
    metrics
        .retained_from_height
        .set(store.retained_from()?.0 as i64);
    let guard = rpc_guard::RpcGuard::new(&cfg.rpc, rpc_addr);
    let app = rpc::router(state, &guard);
    let server = tokio::spawn(guard.serve(listener, app, shutdown_rx.clone()));

    let mempool = Mempool::new(MempoolConfig {
        max_txs: cfg.mempool.max_txs,
        max_bytes: cfg.mempool.max_bytes,
        min_shares: loaded.genesis.validators.len(),
    });
    let info = DriverInfo {
        chain_id: cfg.chain_id.clone(),
        genesis: loaded.genesis.clone(),
        p2p_addrs,
        max_block_bytes: cfg.block.max_block_bytes,
        proposal_budget: (cfg.block.proposal_budget_ms > 0)
            .then(|| Duration::from_millis(cfg.block.proposal_budget_ms)),
        empty_block_delay: Duration::from_millis((cfg.consensus.timeout_base_ms / 4).min(500)),
        fault: fault_config,
    };
    info!(
        validator = index.0,
        p2p = %cfg.p2p_listen,
        rpc = %rpc_addr,
        peer_id = %net.local_peer_id(),
        committed_height,
        "node started"
    );
    let driver = Driver::new(core, store.clone(), net, mempool, metrics, info)
        .with_accountant(accountant)
        .with_interceptor(interceptor)
        .with_events(events)
        .with_queue_delay(queue_delay::QueueDelay::new(
            Duration::from_millis(cfg.mempool.max_queue_delay_ms),
            queue_delay::INTERVAL,
        ));
    let span = tracing::info_span!("node", validator = index.0);
    let driver = tokio::spawn(
        async move {
            let r = driver.run(net_rx, cmd_rx, shutdown_rx).await;
            drop(store);
            r
        }
        .instrument(span),
    );
    Ok(NodeHandle {
        rpc_addr,
        index: index.0,
        shutdown: shutdown_tx,
        driver,
        server,
        pruner,
        store_closed,
    })
}
