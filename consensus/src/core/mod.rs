//! The sans-IO HotStuff-2 replica: [`Core::handle`] takes an [`Event`] and the current time and
//! returns ordered [`Action`]s. No IO, clock or randomness inside.
//!
//! Module map: `api` (events, actions, config), `handlers` (message validation pipeline and
//! per-message rules), `pacemaker` (views, timers, the handover/proposal rule), `chain`
//! (certificates observed, commit rule, block sync), `collect` (vote/timeout aggregation),
//! `detector` (equivocation → evidence), `tree` (block tree).

mod api;
mod certs;
mod chain;
mod collect;
mod detector;
mod handlers;
#[cfg(feature = "mutations")]
mod mutations;
mod pacemaker;
mod resources;
mod sign_check;
mod stall;
mod tree;

pub use api::*;
#[cfg(feature = "mutations")]
pub use mutations::Mutations;
pub use resources::{ParkedProposal, Resources};
pub use sign_check::MAX_CHECK_VIEWS;
pub use stall::StallReport;

use crate::PrivateKey;
use crate::block::Block;
use crate::cert::QuorumCert;
use crate::evidence::Evidence;
use crate::messages::ConsensusMessage;
use crate::policy::{FaultPolicy, HealthInputs, InvalidReason, Millis};
use crate::safety::{SafetyData, SafetyModule};
use crate::types::{BlockId, ValidatorIndex, View};
use crate::validators::ValidatorSet;
use collect::{TimeoutCollector, VoteCollector};
use detector::Detector;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use thiserror::Error;
use tree::BlockTree;

/// State recovered from storage at start (PROTOCOL.md §4.8).
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    /// The last committed blocks (at most the policy's replay depth), ascending height, ending at the committed tip; for a
    /// fresh node `vec![Block::genesis(domain)]`. Replayed into the policy for reputation.
    pub committed: Vec<Block>,
    /// Blocks stored above the committed tip.
    pub uncommitted: Vec<Block>,
}

/// Why a core cannot be built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CoreError {
    /// `Config::me` is not in the validator set, or the key does not match its public key.
    #[error("validator {0} is not in the validator set or the key does not match")]
    NotAValidator(ValidatorIndex),
    /// Recovery gave no committed block.
    #[error("recovered state holds no committed block")]
    NoCommittedBlock,
    /// Recovered committed blocks are not a chain.
    #[error("recovered committed blocks do not form a chain at height {height}")]
    BrokenChain {
        /// Height at which the link breaks.
        height: u64,
    },
}

/// How the current view was entered (drives the status and proposal rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    /// Holding QC(v − 1).
    Qc,
    /// Holding TC(v − 1).
    Tc,
    /// f+1 timeouts of v (join rule): no proposal in v.
    Join,
    /// Start or restart.
    Start,
}

/// Leader-side state of the current view.
#[derive(Debug, Default)]
struct LeaderState {
    /// Validators whose lock we know for this view (statuses, timeouts of v − 1, our own).
    reported: BTreeSet<ValidatorIndex>,
    /// H3: the bounded wait elapsed.
    wait_elapsed: bool,
    /// A payload was requested for this view.
    payload_requested: bool,
}

/// The HotStuff-2 replica. See the crate documentation for the protocol.
pub struct Core<P> {
    cfg: Config,
    vs: ValidatorSet,
    genesis_id: BlockId,
    safety: SafetyModule,
    policy: P,
    tree: BlockTree,
    /// Never decreases (S7).
    current_view: View,
    entered_at: Millis,
    /// Deadline of the running view timer (ms); only ever shortened within a view.
    view_deadline: Millis,
    entry: Entry,
    /// `(view, lock view)` of the last status we sent: a status is re-sent in the same view only
    /// when the lock rose above what it reported (so at most once per lock increase).
    status_sent: Option<(View, View)>,
    leader_state: LeaderState,
    /// Statuses received for views ≥ current view (bounded by the view window), per view.
    statuses: BTreeMap<View, BTreeSet<ValidatorIndex>>,
    votes: VoteCollector,
    timeouts: TimeoutCollector,
    detector: Detector,
    /// A proposal of the current view waiting for its parent.
    parked: Option<(ValidatorIndex, crate::messages::Proposal)>,
    /// The highest commit proof whose ancestry is not yet local.
    pending_commit: Option<QuorumCert>,
    /// The proof of our latest commit (§4.7), attached to our timeouts (§6.3 rule 7). `None`
    /// after a start until the first commit.
    commit_proof: Option<QuorumCert>,
    sync: chain::SyncState,
    connected: BTreeSet<ValidatorIndex>,
    /// Per validator index: when a message from it last arrived (ms; the start time at first).
    last_heard: Vec<Millis>,
    /// Whether the driver ever reported connectivity (the simulator may not).
    connectivity_known: bool,
    /// Verified and failed certificates (bounded).
    certs: certs::CertCache,
    halted: bool,
    /// The double-sign check at start, while it runs (PROTOCOL.md §4.10): every signature is
    /// held ([`SafetyModule::set_held`]) exactly while this is `Some`.
    sign_check: Option<sign_check::SignCheck>,
    counters: Counters,
    now: Millis,
    out: Vec<Action>,
    /// Our own messages, processed after the current event through the same rules.
    inbox: VecDeque<ConsensusMessage>,
}

impl<P: FaultPolicy> Core<P> {
    /// Build a replica from persisted state. `safety` is the loaded record (or
    /// [`SafetyData::genesis`] on a fresh node). Call `handle(now, Event::Start)` next.
    /// Errors: [`CoreError`].
    pub fn new(
        cfg: Config,
        validators: ValidatorSet,
        key: PrivateKey,
        mut policy: P,
        safety: SafetyData,
        recovered: Recovered,
    ) -> Result<Self, CoreError> {
        if validators.public_key(cfg.me) != Some(&key.public()) {
            return Err(CoreError::NotAValidator(cfg.me));
        }
        let domain = validators.domain().clone();
        let genesis_id = Block::genesis(&domain).id(&domain);
        let mut committed = recovered.committed;
        let root = committed.pop().ok_or(CoreError::NoCommittedBlock)?;
        let root_id = root.id(&domain);
        let mut ids = Vec::with_capacity(committed.len());
        let mut expect_parent = root.parent;
        for b in committed.iter().rev() {
            let id = b.id(&domain);
            if id != expect_parent {
                return Err(CoreError::BrokenChain { height: b.height.0 });
            }
            expect_parent = b.parent;
            ids.push(id);
        }
        ids.reverse();
        for (b, id) in committed.iter().zip(&ids) {
            policy.on_commit(b, *id);
        }
        policy.on_commit(&root, root_id);
        let mut tree = BlockTree::new(root, root_id);
        for (b, id) in committed.iter().zip(&ids) {
            tree.note_committed(b.height, *id);
        }
        for b in recovered.uncommitted {
            let id = b.id(&domain);
            tree.insert(id, b);
        }
        // §4.8 step 2.
        let lock_next = safety.lock.view().next().unwrap_or(View(u64::MAX));
        let tc_next = safety
            .high_tc
            .as_ref()
            .map_or(View(0), |t| t.view.next().unwrap_or(View(u64::MAX)));
        let current_view = lock_next
            .max(tc_next)
            .max(safety.last_voted_view)
            .max(safety.last_timeout_view);
        let sm = SafetyModule::new(key, cfg.me, safety);
        #[cfg(feature = "mutations")]
        let sm = sm.with_mutations(cfg.mutations);
        Ok(Core {
            sync: chain::SyncState::default(),
            cfg,
            vs: validators,
            genesis_id,
            safety: sm,
            policy,
            tree,
            current_view,
            entered_at: 0,
            view_deadline: 0,
            entry: Entry::Start,
            status_sent: None,
            leader_state: LeaderState::default(),
            statuses: BTreeMap::new(),
            votes: VoteCollector::default(),
            timeouts: TimeoutCollector::default(),
            detector: Detector::default(),
            parked: None,
            pending_commit: None,
            commit_proof: None,
            connected: BTreeSet::new(),
            last_heard: Vec::new(),
            connectivity_known: false,
            certs: certs::CertCache::default(),
            halted: false,
            sign_check: None,
            counters: Counters::default(),
            now: 0,
            out: Vec::new(),
            inbox: VecDeque::new(),
        })
    }

    /// Process one event at time `now` (ms) and return the actions to perform, in order.
    /// Persist actions must be durable before any later send (see [`Action`]).
    pub fn handle(&mut self, now: Millis, event: Event) -> Vec<Action> {
        self.now = self.now.max(now);
        if self.halted {
            return Vec::new();
        }
        match event {
            Event::Start => self.on_start(),
            Event::Message { from, msg } => self.on_message(from, msg, false),
            Event::Timer(t) => self.on_timer(t),
            Event::PayloadReady { view, payload } => self.on_payload(view, payload),
            Event::BlocksFetched {
                request_id,
                from,
                response,
            } => self.on_blocks_fetched(request_id, from, response.blocks),
            Event::FetchFailed { request_id } => self.on_fetch_failed(request_id),
            Event::EvidenceReceived(ev) => self.on_evidence_received(ev),
            Event::Connectivity { connected } => self.on_connectivity(connected),
        }
        while let Some(msg) = self.inbox.pop_front() {
            if self.halted {
                break;
            }
            let me = self.cfg.me;
            self.on_message(me, msg, true);
        }
        std::mem::take(&mut self.out)
    }

    /// Voting power of the validators the driver reports connected, plus ours.
    fn connected_power(&self) -> u64 {
        self.connected
            .iter()
            .filter(|i| **i != self.cfg.me)
            .map(|i| self.vs.power(*i))
            .sum::<u64>()
            + self.vs.power(self.cfg.me)
    }

    /// Whether we are connected to a quorum (always, if the driver never reports
    /// connectivity, as in the simulator).
    fn hears_quorum(&self) -> bool {
        !self.connectivity_known || self.connected_power() >= self.vs.quorum()
    }

    /// A snapshot for RPC, metrics and tests.
    pub fn status(&self, now: Millis) -> CoreStatus {
        let connected_power = self.connected_power();
        let inputs = HealthInputs {
            current_view: self.current_view,
            high_qc_view: self.safety.lock().view(),
            connected_power,
            quorum_power: self.vs.quorum(),
            syncing: self.sync.is_syncing(),
        };
        CoreStatus {
            me: self.cfg.me,
            view: self.current_view,
            leader: self.policy.leader(self.current_view),
            committed_height: self.tree.root_height(),
            committed_view: self.tree.root_view(),
            last_commit_id: self.tree.root_id(),
            lock_view: self.safety.lock().view(),
            lock_block: self.safety.lock().block_id(),
            high_tc_view: self.safety.data().high_tc.as_ref().map(|t| t.view),
            last_voted_view: self.safety.data().last_voted_view,
            health: self.policy.health(&inputs, now),
            syncing: self.sync.is_syncing(),
            blocks_in_memory: self.tree.len(),
            halted: self.halted,
            signing_held: self.safety.is_held(),
            signing_suspended_until: self.safety.suspended_until(),
            validators: self.policy.validator_statuses(),
            evidence_counts: self.policy.evidence_counts(),
            counters: self.counters.clone(),
        }
    }

    /// The fault policy.
    pub fn policy(&self) -> &P {
        &self.policy
    }
    /// The validator set.
    pub fn validators(&self) -> &ValidatorSet {
        &self.vs
    }
    /// Id of the genesis block.
    pub fn genesis_id(&self) -> BlockId {
        self.genesis_id
    }
    /// A block held in memory (above the committed root, or the root).
    pub fn block(&self, id: &BlockId) -> Option<&Block> {
        self.tree.get(id)
    }
    /// The current safety record.
    pub fn safety_data(&self) -> &SafetyData {
        self.safety.data()
    }
    /// The current view.
    pub fn current_view(&self) -> View {
        self.current_view
    }

    // ----- small helpers shared by the handler modules -----

    fn leader(&self, view: View) -> ValidatorIndex {
        self.policy.leader(view)
    }

    fn persist_safety(&mut self) {
        #[cfg(feature = "mutations")]
        if self.cfg.mutations.skip_persist {
            return;
        }
        self.out
            .push(Action::PersistSafety(Box::new(self.safety.data().clone())));
    }

    fn send(&mut self, to: ValidatorIndex, msg: ConsensusMessage) {
        if to == self.cfg.me {
            self.inbox.push_back(msg);
        } else {
            self.out.push(Action::Send { to, msg });
        }
    }

    /// Broadcast to the others and process it ourselves.
    fn broadcast(&mut self, msg: ConsensusMessage) {
        self.out.push(Action::Broadcast(msg.clone()));
        self.inbox.push_back(msg);
    }

    fn set_timer(&mut self, timer: Timer, at: Millis) {
        self.out.push(Action::SetTimer { timer, at });
    }

    fn invalid(&mut self, from: ValidatorIndex, reason: InvalidReason) {
        tracing::debug!(
            peer = from.0,
            ?reason,
            view = self.current_view.0,
            "message rejected"
        );
        self.counters.invalid_messages += 1;
        if from != self.cfg.me {
            self.policy.on_invalid(from, reason, self.now);
            if reason.proves_sender_faulty() {
                self.out.push(Action::PeerMisbehaved { peer: from, reason });
            }
        }
    }

    fn report_evidence(&mut self, ev: Evidence) {
        // Evidence leaves this node only if any third party would accept it: with one signature
        // rule this always holds for what the detector builds; the check keeps it that way.
        if ev.verify(&self.vs).is_err() {
            self.counters.invalid_messages += 1;
            return;
        }
        self.record_evidence(ev);
    }

    /// Hand verified evidence to the policy; if it is new, store and gossip it.
    fn record_evidence(&mut self, ev: Evidence) {
        if self.policy.on_evidence(&ev, self.now) {
            tracing::warn!(
                offender = ev.offender().0,
                kind = ?ev.kind(),
                view = self.current_view.0,
                "equivocation evidence"
            );
            self.out.push(Action::Evidence(Box::new(ev)));
        }
    }

    /// Extract the votes of a newly seen QC for E1/E3 detection (§6.2: a vote can be taken out
    /// of any QC; two QCs of one view convict the intersection of their signers).
    /// Only inside the view window, like every other detector input: replayed old QCs must
    /// not grow the detector (issue 7 finding 4).
    fn detect_in_qc(&mut self, qc: &QuorumCert) {
        if qc.view().0 == 0 || !self.in_window(qc.view()) {
            return;
        }
        for (voter, sig) in qc.votes() {
            for ev in self.detector.on_vote(voter, &qc.data, sig) {
                self.report_evidence(ev);
            }
        }
    }
}

#[cfg(test)]
mod tests;
