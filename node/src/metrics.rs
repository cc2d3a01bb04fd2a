//! Prometheus metrics (`bftnode_*`) in an injected [`Registry`]: no global statics, so several
//! nodes can share a process (integration tests, the simulator).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use crate::storage_metrics::StorageGauges;

/// Buckets of `bftnode_rocksdb_write_seconds`: 50 µs doubling to about 1.6 s.
fn write_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Buckets of `bftnode_mempool_sojourn_seconds`: 1 ms doubling to about 33 s.
fn sojourn_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Labels of `bftnode_evidence_total`.
pub type KindLabels = Vec<(String, String)>;

/// Outcome labels of `bftnode_relay_proposals_total` (compact proposal relay, module
/// `crate::relay`; see [`Metrics::count_relay`]).
pub mod relay_outcome {
    /// One of our proposals sent compact.
    pub const SENT_COMPACT: &str = "sent_compact";
    /// One of our proposals sent in full (its decoded payload was not cached).
    pub const SENT_FULL: &str = "sent_full";
    /// A compact proposal received and rebuilt from the mempool.
    pub const REBUILT: &str = "rebuilt";
    /// A compact proposal not rebuilt here (a named transaction missing, or the digests
    /// differ): its block was fetched from the sender.
    pub const FETCHED: &str = "fetched";
    /// Such a fetch got no usable block (refused, timed out, wrong block, or dropped).
    pub const FETCH_FAILED: &str = "fetch_failed";
    /// A compact proposal naming more than a proposal may carry (refused).
    pub const TOO_LARGE: &str = "too_large";
}

/// Outcome labels of `bftnode_gossip_txs_total` (see [`Metrics::count_gossip_txs`]).
pub mod gossip_outcome {
    /// Entered the mempool.
    pub const ACCEPTED: &str = "accepted";
    /// Already pending (dropped by the in-memory check, before any store read).
    pub const DUPLICATE: &str = "duplicate";
    /// Already committed (one store read).
    pub const COMMITTED: &str = "committed";
    /// Fails transaction validation.
    pub const INVALID: &str = "invalid";
    /// Over the gossiping peer's mempool quota (no store read).
    pub const OVER_QUOTA: &str = "over_quota";
    /// The pool is full and nothing may be evicted for it (no store read).
    pub const FULL: &str = "full";
    /// Beyond the per-message cap: never decoded.
    pub const TRUNCATED: &str = "truncated";
    /// Not examined because a store read failed earlier in the same message.
    pub const READ_ERROR: &str = "read_error";
}

/// The node's metrics. Cheap to update from the driver; encoded by the RPC server.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Current view.
    pub view: Gauge,
    /// Unix time (seconds) of the last commit applied here; `time() - this` is its age.
    pub last_commit_timestamp: Gauge<f64, AtomicU64>,
    /// 1 once the node halted (safety violation): it signs and commits nothing more.
    pub halted: Gauge,
    /// Per validator (label `validator`) and state (label `state`: `active`, `suspected`,
    /// `isolated`, `rehabilitated`, `convicted`): 1 for the validator's current state, 0 for the
    /// others. Set at each scrape ([`Metrics::sync_validators`]).
    validator_state: Family<KindLabels, Gauge>,
    /// Per validator: appearances in justify signer sets in the reputation window.
    validator_voted: Family<KindLabels, Gauge>,
    /// Per validator: election weight (0 = leads no view).
    validator_weight: Family<KindLabels, Gauge>,
    /// 1 for the node's current health state (label `state`), 0 for the others; set at each
    /// scrape ([`Metrics::sync_health`]).
    health_state: Family<KindLabels, Gauge>,
    /// 1 when `GET /health` would answer healthy.
    healthy: Gauge,
    /// 1 while a block fetch is in flight (catching up).
    syncing: Gauge,
    /// Highest committed height.
    pub committed_height: Gauge,
    /// The payload cap of our latest proposal, in bytes ([`crate::proposal_cap`]): below
    /// `[block] max_block_bytes` when the links to a quorum are too slow for it.
    pub proposal_cap_bytes: Gauge,
    /// Lowest height above genesis whose committed block body is kept ([`crate::pruner`]; 1
    /// when nothing was pruned).
    pub retained_from_height: Gauge,
    /// Committed heights whose block bodies were pruned.
    pub pruned_heights: Counter,
    /// Pruning passes that failed on a store error (retried on the next pass).
    pub pruning_errors: Counter,
    /// Blocks committed.
    pub commits: Counter,
    /// Transaction latency (seconds) from its arrival in this node's mempool (RPC submission
    /// or gossip) to its commit.
    pub commit_latency: Histogram,
    /// Block latency (seconds) from storing a block at this node (proposing it, or receiving
    /// its proposal) to committing it. HotStuff-2's pipelined commit takes four one-way delays
    /// after a proposal's receipt (five after its sending). Sampled for the blocks whose payload
    /// the driver kept decoded (all of them below its cache caps).
    pub block_commit_latency: Histogram,
    /// Proposals sent.
    pub proposals: Counter,
    /// Proposals sent in a reserved view, without a synced write of their own (PROTOCOL.md §3
    /// rule 4).
    pub proposals_reserved: Counter,
    /// Votes sent.
    pub votes: Counter,
    /// Timeouts sent.
    pub timeouts: Counter,
    /// TCs formed.
    pub tcs: Counter,
    /// Evidence items, by kind.
    pub evidence: Family<KindLabels, Counter>,
    /// Validators currently isolated from leadership.
    pub isolated_validators: Gauge,
    /// Connected validator peers.
    pub peers: Gauge,
    /// Pending transactions.
    pub mempool_txs: Gauge,
    /// Pending transaction bytes.
    pub mempool_bytes: Gauge,
    /// Duration of the node's RocksDB writes (seconds), by `sync`: `true` for the persist
    /// batches a vote or timeout waits for (synced), `false` for commit and evidence batches
    /// (durable with the next synced write). Set through [`Metrics::observe_write`].
    rocksdb_write: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// Mempool sojourn (seconds): from a transaction's arrival in this node's mempool to the
    /// first stored block that carries it, by `source` (`local`: this node's RPC clients;
    /// `peer`: gossip). The queue part of `bftnode_commit_latency_seconds`; set through
    /// [`Metrics::observe_sojourn`].
    mempool_sojourn: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// The `local` and `peer` members of `mempool_sojourn`, created once (a label lookup per
    /// transaction would cost more than the observation).
    sojourn: [Histogram; 2],
    /// Block-sync requests issued.
    pub sync_requests: Counter,
    /// Block-sync responses that came back empty (the peer lacks the block: not received
    /// yet, refused, or pruned); retried with the next peer without blame.
    pub sync_unavailable: Counter,
    /// Block-sync requests from peers answered empty (byte budget overdrawn, queue full, or
    /// waited `MAX_QUEUE_WAIT` in it; `sync_server`).
    pub sync_refused: Counter,
    /// Block-sync requests from peers answered with blocks (`sync_server`).
    pub sync_served: Counter,
    /// Bytes of those answers, encoded (each at most `MAX_SYNC_RESPONSE_BYTES`).
    pub sync_served_bytes: Counter,
    /// Ed25519 signatures the consensus core checked (messages, and certificates on a cache
    /// miss): the bulk of its CPU.
    pub signatures_verified: Counter,
    /// Signatures of received QCs taken as checked because they are byte for byte votes the
    /// core had accepted for the same vote data.
    pub signatures_reused: Counter,
    /// Network input the driver could not decode (garbage frames, bad sync data, bad gossip).
    pub invalid_messages: Counter,
    /// Consensus messages rejected by the core's validation pipeline (bad signature or
    /// certificate, wrong leader, invalid block, out of window …).
    pub rejected_messages: Counter,
    /// Transactions skipped while applying committed blocks (invalid or replayed).
    pub skipped_txs: Counter,
    /// Transactions applied from committed blocks (the committed throughput, counted once).
    pub committed_txs: Counter,
    /// Certificates carrying our signature for a view we never signed in: our key in use
    /// elsewhere (PROTOCOL.md §4.9); signing is suspended after each.
    pub own_signatures_elsewhere: Counter,
    /// 1 while the double-sign check at start holds every signature (PROTOCOL.md §4.10).
    pub signing_held: Gauge,
    /// Gossiped transactions by outcome ([`gossip_outcome`]).
    pub gossip_txs: Family<KindLabels, Counter>,
    /// Proposals relayed compact, by outcome ([`relay_outcome`]).
    pub relay_proposals: Family<KindLabels, Counter>,
    /// Seconds the driver task spent handling events (everything but waiting for the next
    /// one), by what woke it (`event` = `consensus`, `tx_gossip`, `network_other`, `command`,
    /// `followup`, `timer`, `propose`, `gossip_flush`, `housekeeping`): the rate of the sum is
    /// the consensus loop's utilisation, 1.0 = never idle. Everything the driver does is
    /// serial, so a rate near 1 means it is the bottleneck.
    pub driver_busy: Family<KindLabels, Counter<f64, AtomicU64>>,
    /// Transactions submitted over RPC by outcome: `accepted`, `mempool_full` (HTTP 429),
    /// `congested` (HTTP 429, [`crate::queue_delay`]), `duplicate` (409), `invalid` (400).
    pub submitted_txs: Family<KindLabels, Counter>,
    /// Pending transactions evicted from the mempool to make room for another source's.
    pub mempool_evicted: Counter,
    /// Store reads that failed while serving someone else (`path` = `sync`, `gossip`, `submit`,
    /// `rpc`): that request failed, the node kept running.
    pub store_read_errors: Family<KindLabels, Counter>,
    /// Outstanding block-sync requests of ours dropped without a response (expired or over the
    /// cap), reported to the core as failed.
    pub sync_fetches_expired: Counter,
    /// The network service's counters, one `bftnode_net_<name>_total` each, in the order of
    /// [`network::NetworkMetrics::counters`]; updated by [`Metrics::sync_network`].
    net: Vec<Counter>,
    /// RocksDB's own figures (`bftnode_rocksdb_*` gauges), set at each scrape.
    pub storage: StorageGauges,
}

impl Metrics {
    /// The committed height the driver last published (`bftnode_committed_height`: set at start
    /// and at each commit, after its batch is written).
    pub fn committed(&self) -> consensus::Height {
        consensus::Height(u64::try_from(self.committed_height.get()).unwrap_or(0))
    }

    /// Create and register every metric in a fresh registry.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let mempool_sojourn: Family<KindLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(sojourn_histogram);
        let sojourn = ["local", "peer"].map(|s| {
            mempool_sojourn
                .get_or_create(&vec![("source".into(), s.into())])
                .clone()
        });
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            view: Gauge::default(),
            committed_height: Gauge::default(),
            retained_from_height: Gauge::default(),
            proposal_cap_bytes: Gauge::default(),
            pruned_heights: Counter::default(),
            pruning_errors: Counter::default(),
            last_commit_timestamp: Gauge::default(),
            halted: Gauge::default(),
            validator_state: Family::default(),
            validator_voted: Family::default(),
            validator_weight: Family::default(),
            health_state: Family::default(),
            healthy: Gauge::default(),
            syncing: Gauge::default(),
            commits: Counter::default(),
            commit_latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            // 1 ms × 1.25^k up to about 36 s: fine enough to tell 4 one-way delays from 5.
            block_commit_latency: Histogram::new(exponential_buckets(0.001, 1.25, 48)),
            proposals: Counter::default(),
            proposals_reserved: Counter::default(),
            votes: Counter::default(),
            timeouts: Counter::default(),
            tcs: Counter::default(),
            evidence: Family::default(),
            isolated_validators: Gauge::default(),
            peers: Gauge::default(),
            mempool_txs: Gauge::default(),
            mempool_bytes: Gauge::default(),
            rocksdb_write: Family::new_with_constructor(write_histogram),
            mempool_sojourn,
            sojourn,
            sync_requests: Counter::default(),
            sync_unavailable: Counter::default(),
            sync_refused: Counter::default(),
            sync_served: Counter::default(),
            sync_served_bytes: Counter::default(),
            signatures_verified: Counter::default(),
            signatures_reused: Counter::default(),
            invalid_messages: Counter::default(),
            rejected_messages: Counter::default(),
            skipped_txs: Counter::default(),
            committed_txs: Counter::default(),
            own_signatures_elsewhere: Counter::default(),
            signing_held: Gauge::default(),
            gossip_txs: Family::default(),
            relay_proposals: Family::default(),
            driver_busy: Family::default(),
            submitted_txs: Family::default(),
            mempool_evicted: Counter::default(),
            store_read_errors: Family::default(),
            sync_fetches_expired: Counter::default(),
            net: Vec::new(),
            storage: StorageGauges::default(),
        };
        r.register("bftnode_view", "Current consensus view", m.view.clone());
        r.register(
            "bftnode_last_commit_timestamp_seconds",
            "Unix time of the last commit applied by this node",
            m.last_commit_timestamp.clone(),
        );
        r.register(
            "bftnode_halted",
            "1 once the node halted on a safety violation",
            m.halted.clone(),
        );
        r.register(
            "bftnode_validator_state",
            "1 for each validator's current state (active, suspected, isolated, rehabilitated, convicted)",
            m.validator_state.clone(),
        );
        r.register(
            "bftnode_validator_voted",
            "Each validator's appearances in justify signer sets in the reputation window",
            m.validator_voted.clone(),
        );
        r.register(
            "bftnode_validator_weight",
            "Each validator's election weight (0: leads no view)",
            m.validator_weight.clone(),
        );
        r.register(
            "bftnode_health_state",
            "1 for the current health state (Normal, Recovering, Partitioned, UnderAttack)",
            m.health_state.clone(),
        );
        r.register(
            "bftnode_healthy",
            "1 when GET /health answers healthy (not halted, a recent commit, state Normal)",
            m.healthy.clone(),
        );
        r.register(
            "bftnode_syncing",
            "1 while a block fetch is in flight",
            m.syncing.clone(),
        );
        r.register(
            "bftnode_build",
            "Version and git commit of this binary",
            Info::new(vec![
                ("version", crate::build_info::VERSION),
                ("git_commit", crate::build_info::GIT_COMMIT),
            ]),
        );
        r.register(
            "bftnode_committed_height",
            "Highest committed height",
            m.committed_height.clone(),
        );
        r.register(
            "bftnode_proposal_cap_bytes",
            "Payload cap of our latest proposal (bytes): what the links to a quorum carry within \
             a quarter of the base view timeout, at most [block] max_block_bytes",
            m.proposal_cap_bytes.clone(),
        );
        r.register(
            "bftnode_retained_from_height",
            "Lowest height above genesis whose committed block body is kept (1: nothing pruned)",
            m.retained_from_height.clone(),
        );
        r.register(
            "bftnode_pruned_heights",
            "Committed heights whose block bodies were pruned ([storage] retain_heights)",
            m.pruned_heights.clone(),
        );
        r.register(
            "bftnode_pruning_errors",
            "Pruning passes that failed on a store error",
            m.pruning_errors.clone(),
        );
        r.register("bftnode_commits", "Blocks committed", m.commits.clone());
        r.register(
            "bftnode_commit_latency_seconds",
            "Transaction submit to commit latency",
            m.commit_latency.clone(),
        );
        r.register(
            "bftnode_block_commit_seconds",
            "Block stored at this node (proposed or received) to committed",
            m.block_commit_latency.clone(),
        );
        r.register("bftnode_proposals", "Proposals sent", m.proposals.clone());
        r.register(
            "bftnode_proposals_reserved",
            "Proposals sent in a view reserved with the previous vote or timeout (no synced write of their own)",
            m.proposals_reserved.clone(),
        );
        r.register("bftnode_votes", "Votes signed", m.votes.clone());
        r.register("bftnode_timeouts", "Timeouts signed", m.timeouts.clone());
        r.register("bftnode_tcs", "Timeout certificates formed", m.tcs.clone());
        r.register(
            "bftnode_evidence",
            "Evidence items by kind",
            m.evidence.clone(),
        );
        r.register(
            "bftnode_isolated_validators",
            "Validators isolated from leadership",
            m.isolated_validators.clone(),
        );
        r.register(
            "bftnode_peers",
            "Connected validator peers",
            m.peers.clone(),
        );
        r.register(
            "bftnode_mempool_txs",
            "Pending transactions",
            m.mempool_txs.clone(),
        );
        r.register(
            "bftnode_mempool_bytes",
            "Pending transaction bytes",
            m.mempool_bytes.clone(),
        );
        r.register(
            "bftnode_rocksdb_write_seconds",
            "RocksDB write duration, by sync (true: persist batches votes wait for; false: \
             commit and evidence batches)",
            m.rocksdb_write.clone(),
        );
        r.register(
            "bftnode_mempool_sojourn_seconds",
            "Transaction arrival in this node's mempool to the first stored block carrying it, \
             by source (local: RPC clients; peer: gossip)",
            m.mempool_sojourn.clone(),
        );
        r.register(
            "bftnode_sync_requests",
            "Block-sync requests issued",
            m.sync_requests.clone(),
        );
        r.register(
            "bftnode_sync_unavailable",
            "Block-sync responses that came back empty (peer lacks the block, refused, or \
             pruned it); retried with the next peer without blame",
            m.sync_unavailable.clone(),
        );
        r.register(
            "bftnode_sync_refused",
            "Block-sync requests from peers answered empty: over the per-peer byte budget, beyond the per-peer queue, or waited too long in it",
            m.sync_refused.clone(),
        );
        r.register(
            "bftnode_sync_served",
            "Block-sync requests from peers answered with blocks",
            m.sync_served.clone(),
        );
        r.register(
            "bftnode_sync_served_bytes",
            "Bytes of the block-sync answers with blocks, encoded",
            m.sync_served_bytes.clone(),
        );
        r.register(
            "bftnode_signatures_verified",
            "Ed25519 signatures the consensus core checked (messages, certificates not cached)",
            m.signatures_verified.clone(),
        );
        r.register(
            "bftnode_signatures_reused",
            "QC signatures taken as checked: identical to votes already accepted for the same vote data",
            m.signatures_reused.clone(),
        );
        r.register(
            "bftnode_invalid_messages",
            "Network input that could not be decoded",
            m.invalid_messages.clone(),
        );
        r.register(
            "bftnode_rejected_messages",
            "Consensus messages rejected by the core's validation",
            m.rejected_messages.clone(),
        );
        r.register(
            "bftnode_skipped_txs",
            "Committed transactions skipped (invalid or replayed)",
            m.skipped_txs.clone(),
        );
        r.register(
            "bftnode_committed_txs",
            "Transactions applied from committed blocks",
            m.committed_txs.clone(),
        );
        r.register(
            "bftnode_own_signatures_elsewhere",
            "Certificates carrying our signature for a view we never signed in (key in use elsewhere)",
            m.own_signatures_elsewhere.clone(),
        );
        r.register(
            "bftnode_signing_held",
            "1 while the double-sign check at start holds every signature",
            m.signing_held.clone(),
        );
        r.register(
            "bftnode_gossip_txs",
            "Gossiped transactions by outcome",
            m.gossip_txs.clone(),
        );
        r.register(
            "bftnode_driver_busy_seconds",
            "Seconds the driver task spent handling events (rate = utilisation of the consensus loop)",
            m.driver_busy.clone(),
        );
        r.register(
            "bftnode_relay_proposals",
            "Proposals relayed compact (by hash), by outcome",
            m.relay_proposals.clone(),
        );
        r.register(
            "bftnode_submitted_txs",
            "Transactions submitted over RPC by outcome (accepted, mempool_full, congested, \
             duplicate, invalid)",
            m.submitted_txs.clone(),
        );
        r.register(
            "bftnode_mempool_evicted",
            "Pending transactions evicted for another source's",
            m.mempool_evicted.clone(),
        );
        r.register(
            "bftnode_store_read_errors",
            "Store reads that failed while serving a request (the request failed, not the node)",
            m.store_read_errors.clone(),
        );
        r.register(
            "bftnode_sync_fetches_expired",
            "Own block-sync requests dropped without a response (expired or over the cap)",
            m.sync_fetches_expired.clone(),
        );
        let mut m = m;
        m.storage = StorageGauges::register(&mut r);
        for (name, help, _) in network::NetworkMetrics::default().counters() {
            let c = Counter::default();
            r.register(format!("bftnode_net_{name}"), help, c.clone());
            m.net.push(c);
        }
        // Every evidence kind has a series from the start (at 0), so a dashboard's rate over
        // it is 0, not "no data", on a chain that never saw evidence.
        for kind in [
            consensus::EvidenceKind::DoubleVote,
            consensus::EvidenceKind::DoubleProposal,
            consensus::EvidenceKind::LockViolation,
            consensus::EvidenceKind::ConflictingTimeouts,
            consensus::EvidenceKind::InvalidProposal,
        ] {
            labelled(&m.evidence, "kind", kind.as_str());
        }
        if let Ok(mut g) = m.registry.lock() {
            *g = r;
        }
        m
    }

    /// The states [`Metrics::sync_validators`] reports, as label values.
    pub const VALIDATOR_STATES: [&'static str; 5] = [
        "active",
        "suspected",
        "isolated",
        "rehabilitated",
        "convicted",
    ];

    /// Set the per-validator gauges from `GET /validators`' view of them; a convicted
    /// validator's state is `convicted`, whatever its election state.
    pub fn sync_validators(&self, validators: &[crate::rpc_types::ValidatorResponse]) {
        for v in validators {
            let id = v.index.to_string();
            let current = if v.convicted {
                "convicted".to_string()
            } else {
                v.state.to_lowercase()
            };
            for state in Self::VALIDATOR_STATES {
                let labels = vec![
                    ("validator".to_string(), id.clone()),
                    ("state".to_string(), state.to_string()),
                ];
                self.validator_state
                    .get_or_create(&labels)
                    .set(i64::from(current == state));
            }
            let labels = vec![("validator".to_string(), id)];
            self.validator_voted
                .get_or_create(&labels)
                .set(v.voted as i64);
            self.validator_weight
                .get_or_create(&labels)
                .set(v.weight as i64);
        }
    }

    /// Set the health gauges: `state` (the `Debug` name of the health state), whether the node
    /// is healthy overall, whether it is syncing.
    pub fn sync_health(&self, state: &str, healthy: bool, syncing: bool) {
        for s in ["Normal", "Recovering", "Partitioned", "UnderAttack"] {
            self.health_state
                .get_or_create(&vec![("state".to_string(), s.to_string())])
                .set(i64::from(s == state));
        }
        self.healthy.set(i64::from(healthy));
        self.syncing.set(i64::from(syncing));
    }

    /// Mirror the network service's counters (monotone) into `bftnode_net_*_total`.
    pub fn sync_network(&self, net: &network::NetworkMetrics) {
        for (c, (_, _, value)) in self.net.iter().zip(net.counters()) {
            Self::sync_counter(c, value);
        }
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = encode(&mut out, &r);
        }
        out
    }

    /// Set a counter to at least `value` (mirrors a monotone core counter).
    pub fn sync_counter(c: &Counter, value: u64) {
        let cur = c.get();
        if value > cur {
            c.inc_by(value - cur);
        }
    }

    /// Record one RocksDB write of `seconds`, synced or not ([`Metrics::rocksdb_write`]).
    pub fn observe_write(&self, sync: bool, seconds: f64) {
        let labels = vec![("sync".to_string(), sync.to_string())];
        self.rocksdb_write.get_or_create(&labels).observe(seconds);
    }

    /// Record that a stored block carries a pending transaction for the first time, `seconds`
    /// after it reached the mempool (`local`: from this node's RPC clients).
    pub fn observe_sojourn(&self, local: bool, seconds: f64) {
        self.sojourn[usize::from(!local)].observe(seconds);
    }

    /// Count `n` gossiped transactions with `outcome` (one of [`gossip_outcome`]).
    pub fn count_gossip_txs(&self, outcome: &str, n: u64) {
        if n > 0 {
            labelled(&self.gossip_txs, "outcome", outcome).inc_by(n);
        }
    }

    /// Count one proposal relayed with `outcome` (one of [`relay_outcome`]).
    pub fn count_relay(&self, outcome: &str) {
        labelled(&self.relay_proposals, "outcome", outcome).inc();
    }

    /// Count `n` RPC-submitted transactions with `outcome` (see [`Metrics::submitted_txs`]).
    pub fn count_submitted_txs(&self, outcome: &str, n: u64) {
        if n > 0 {
            labelled(&self.submitted_txs, "outcome", outcome).inc_by(n);
        }
    }

    /// Gossiped transactions counted with `outcome` so far.
    pub fn gossip_txs_count(&self, outcome: &str) -> u64 {
        labelled(&self.gossip_txs, "outcome", outcome).get()
    }

    /// Add `seconds` of driver work woken by `event` (see [`Metrics::driver_busy`]).
    pub fn add_driver_busy(&self, event: &str, seconds: f64) {
        self.driver_busy
            .get_or_create(&vec![("event".to_string(), event.to_string())])
            .inc_by(seconds);
    }

    /// Count one failed store read while serving `path` (`sync`, `gossip`, `submit`, `rpc`).
    pub fn count_store_read_error(&self, path: &str) {
        labelled(&self.store_read_errors, "path", path).inc();
    }

    /// Failed store reads counted for `path` so far.
    pub fn store_read_error_count(&self, path: &str) -> u64 {
        labelled(&self.store_read_errors, "path", path).get()
    }

    /// Count one evidence item of `kind`.
    pub fn count_evidence(&self, kind: &str) {
        labelled(&self.evidence, "kind", kind).inc();
    }
}

/// The counter of `family` with the one label `name = value` (created at zero if new).
fn labelled(family: &Family<KindLabels, Counter>, name: &str, value: &str) -> Counter {
    family
        .get_or_create(&vec![(name.to_string(), value.to_string())])
        .clone()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes are exposed per `sync` label, and a label set appears with its first write.
    #[test]
    fn writes_are_exposed_by_sync() {
        let m = Metrics::new();
        assert!(!m.encode().contains("bftnode_rocksdb_write_seconds_count"));
        m.observe_write(true, 0.001);
        m.observe_write(true, 0.002);
        m.observe_write(false, 0.004);
        let text = m.encode();
        for (sync, n) in [("true", 2), ("false", 1)] {
            let line = format!("bftnode_rocksdb_write_seconds_count{{sync=\"{sync}\"}} {n}");
            assert!(text.contains(&line), "{line}: {text}");
        }
    }

    /// Sojourns are exposed per `source` label, each observation in its own source's series.
    #[test]
    fn sojourns_are_exposed_by_source() {
        let m = Metrics::new();
        m.observe_sojourn(true, 0.003);
        m.observe_sojourn(false, 0.5);
        m.observe_sojourn(false, 0.7);
        let text = m.encode();
        for (source, n, sum) in [("local", 1, "0.003"), ("peer", 2, "1.2")] {
            for line in [
                format!("bftnode_mempool_sojourn_seconds_count{{source=\"{source}\"}} {n}"),
                format!("bftnode_mempool_sojourn_seconds_sum{{source=\"{source}\"}} {sum}"),
            ] {
                assert!(text.contains(&line), "{line}: {text}");
            }
        }
    }
}
