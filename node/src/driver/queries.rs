//! What the RPC server asks the driver ([`Command`]): live state from the core (status,
//! validators, health, why-stalled, faults), evidence, and local submissions.

use super::{Driver, blocking};
use crate::app::{Transaction, TxHash};
use crate::faults;
use crate::mempool::MempoolError;
use crate::proof::EvidenceProof;
use crate::rpc_types::{
    EvidenceResponse, FaultsResponse, StatusResponse, ValidatorResponse, WhyStalledResponse,
};
use consensus::{Evidence, FaultPolicy, Health, ValidatorIndex};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use storage::Store;
use tokio::sync::oneshot;
use tracing::error;

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

impl Driver {
    /// Answer one RPC [`Command`].
    pub(super) fn on_command(&mut self, cmd: Command) {
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
    pub(super) fn watch_faults(&mut self, st: &consensus::CoreStatus) {
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
