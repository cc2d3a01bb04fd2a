//! The operator's view of fault tolerance (`GET /faults`, `bftnode faults`): what the driver
//! knows, arranged as a [`FaultsResponse`] — `n`, `f`, quorum, the tolerance margin, who is
//! convicted, isolated, suspected or down and why, and health with its reason.
//!
//! Everything comes from the core's status ([`consensus::CoreStatus`], the policy's
//! [`consensus::ValidatorStatus`]es and health), the policy's evidence and conviction record,
//! and the driver's connected set. "Since when" is the view and committed height at which this
//! node first saw a condition ([`FaultWatch`], sampled by the driver every 500 ms and on every
//! query); a conviction's is exact and identical on every node (the height of the block that
//! committed the evidence).

use crate::rpc_types::{FaultEntry, FaultsResponse};
use consensus::{
    CoreStatus, Evidence, EvidenceKind, FaultPolicy, Health, ValidatorIndex, ValidatorSet,
    ValidatorState, ValidatorStatus,
};
use fault::{FaultConfig, FaultTolerance};
use std::collections::{BTreeMap, BTreeSet};

/// Most evidence items examined to explain convictions and suspicions.
const MAX_EVIDENCE_EXAMINED: usize = 1000;

/// A condition tracked for "since when".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    /// Weight 0 in the latest cut.
    Isolated,
    /// `Suspected` by the local reputation, or proven Byzantine by held evidence.
    Suspected,
    /// Not connected.
    Down,
}

/// When this node first saw each current condition: `(validator, condition) → (view, height)`.
/// Bounded by `3·n` entries; a condition that ends is forgotten.
#[derive(Debug, Default)]
pub struct FaultWatch {
    since: BTreeMap<(u16, Condition), (u64, u64)>,
}

impl FaultWatch {
    /// Record the conditions holding now (at `view`, committed `height`): new ones start now,
    /// ended ones are dropped.
    pub fn observe(
        &mut self,
        now: impl IntoIterator<Item = (u16, Condition)>,
        view: u64,
        height: u64,
    ) {
        let current: BTreeSet<(u16, Condition)> = now.into_iter().collect();
        self.since.retain(|k, _| current.contains(k));
        for k in current {
            self.since.entry(k).or_insert((view, height));
        }
    }

    /// When `(index, condition)` was first seen, if it holds.
    pub fn since(&self, index: u16, condition: Condition) -> Option<(u64, u64)> {
        self.since.get(&(index, condition)).copied()
    }
}

/// The conditions holding in `st` with `connected` peers (ourselves never down).
pub fn conditions(
    st: &CoreStatus,
    policy: &FaultTolerance,
    connected: &BTreeSet<ValidatorIndex>,
    vs: &ValidatorSet,
) -> Vec<(u16, Condition)> {
    let mut out = Vec::new();
    for s in &st.validators {
        if s.state == ValidatorState::Isolated {
            out.push((s.index.0, Condition::Isolated));
        }
        if s.state == ValidatorState::Suspected || policy.is_proven_byzantine(s.index) {
            out.push((s.index.0, Condition::Suspected));
        }
    }
    for i in vs.indices() {
        if i != st.me && !connected.contains(&i) {
            out.push((i.0, Condition::Down));
        }
    }
    out
}

/// Whether `kind` consists of two conflicting messages signed by the offender.
pub fn is_conflicting(kind: EvidenceKind) -> bool {
    !matches!(kind, EvidenceKind::InvalidProposal)
}

/// Everything [`report`] reads.
pub struct Inputs<'a> {
    /// The core's status.
    pub status: &'a CoreStatus,
    /// The policy.
    pub policy: &'a FaultTolerance,
    /// The validator set.
    pub validators: &'a ValidatorSet,
    /// Validators we are connected to.
    pub connected: &'a BTreeSet<ValidatorIndex>,
    /// Since when each condition holds.
    pub watch: &'a FaultWatch,
    /// The policy's parameters.
    pub config: &'a FaultConfig,
    /// The signing domain's chain id.
    pub domain_chain_id: &'a str,
}

/// The `GET /faults` answer (network-side suspicions, such as a key connecting from two
/// addresses, are added by the RPC handler).
pub fn report(inp: &Inputs<'_>) -> FaultsResponse {
    let (st, vs) = (inp.status, inp.validators);
    let evidence = inp.policy.evidence(MAX_EVIDENCE_EXAMINED);
    let entry = |i: ValidatorIndex, reason: String, since: (Option<u64>, Option<u64>)| FaultEntry {
        index: i.0,
        public_key: vs
            .public_key(i)
            .map(|k| hex::encode(k.0))
            .unwrap_or_default(),
        power: vs.power(i),
        reason,
        since_view: since.0,
        since_height: since.1,
    };
    let watched = |i: ValidatorIndex, c: Condition| {
        let since = inp.watch.since(i.0, c);
        (since.map(|s| s.0), since.map(|s| s.1))
    };
    let (mut convicted, mut isolated, mut suspected, mut down) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut faulty = BTreeSet::new();
    for s in &st.validators {
        let i = s.index;
        let against: Vec<&Evidence> = evidence.iter().filter(|e| e.offender() == i).collect();
        if s.convicted {
            let (reason, since) = conviction(inp.policy, i, &against);
            convicted.push(entry(i, reason, since));
            faulty.insert(i);
        }
        if s.state == ValidatorState::Isolated {
            let reason = isolation_reason(s, inp.config.failure_threshold_pct);
            isolated.push(entry(i, reason, watched(i, Condition::Isolated)));
            faulty.insert(i);
        }
        if let Some(reason) = suspicion(inp.policy, s, &against) {
            suspected.push(entry(i, reason, watched(i, Condition::Suspected)));
        }
    }
    for i in vs.indices() {
        if i != st.me && !inp.connected.contains(&i) {
            let reason = "not connected to this node".to_string();
            down.push(entry(i, reason, watched(i, Condition::Down)));
            faulty.insert(i);
        }
    }
    let f = vs.max_faulty();
    let faulty_power: u64 = faulty.iter().map(|i| vs.power(*i)).sum();
    FaultsResponse {
        validators: vs.len(),
        total_power: vs.total_power(),
        f,
        quorum: vs.quorum(),
        faulty_power,
        tolerance_margin: f as i64 - faulty_power as i64,
        health: format!("{:?}", st.health),
        health_reason: health_reason(inp),
        view: st.view.0,
        committed_height: st.committed_height.0,
        convicted,
        isolated,
        suspected,
        down,
        domain_chain_id: inp.domain_chain_id.to_string(),
        params: inp.config.clone(),
    }
}

/// The reason of a conviction (the earliest committed safety evidence against `i`) and since
/// when: the evidence's view and the height of the block that committed it (from the
/// conviction record, identical on every node).
fn conviction(
    policy: &FaultTolerance,
    i: ValidatorIndex,
    against: &[&Evidence],
) -> (String, (Option<u64>, Option<u64>)) {
    let first = against
        .iter()
        .filter(|e| e.kind().is_safety() && policy.evidence_state(e.key()) == Some(true))
        .min_by_key(|e| e.view());
    let reason = first.map_or_else(
        || "committed safety evidence".to_string(),
        |e| {
            format!(
                "committed {} evidence at view {} (id {})",
                e.kind().as_str(),
                e.view().0,
                e.id()
            )
        },
    );
    let height = policy.convictions().get(i.as_usize()).copied().flatten();
    (reason, (first.map(|e| e.view().0), height.map(|h| h.0)))
}

/// Why `s` has weight 0, from the election's rules in order (`fault` crate, module `election`):
/// convicted, failure ratio above `θ`, silent, else its latest leader slot failed.
fn isolation_reason(s: &ValidatorStatus, theta: u64) -> String {
    if s.convicted {
        "convicted: excluded from leadership for good".to_string()
    } else if s.failed > 0 && 100 * s.failed > theta * (s.failed + s.proposed) {
        format!(
            "failed {} of its {} leader slots in the reputation window (threshold {theta}%)",
            s.failed,
            s.failed + s.proposed
        )
    } else if s.proposed == 0 && s.voted == 0 {
        "silent: no proposal and no vote in the reputation window".to_string()
    } else {
        format!(
            "its latest leader slot failed ({} failed, {} proposed in the window)",
            s.failed, s.proposed
        )
    }
}

/// Why this node suspects `s`, if it does: evidence held but not yet committed, and the local
/// `Suspected` label.
fn suspicion(
    policy: &FaultTolerance,
    s: &ValidatorStatus,
    against: &[&Evidence],
) -> Option<String> {
    let mut why = Vec::new();
    if let Some(e) = against
        .iter()
        .find(|e| policy.evidence_state(e.key()) == Some(false))
    {
        why.push(format!(
            "{} evidence at view {} held, not yet committed",
            e.kind().as_str(),
            e.view().0
        ));
    }
    if s.state == ValidatorState::Suspected {
        why.push(format!(
            "local observations: {} invalid messages since start, {} failed leader slots in \
             the window",
            s.invalid_messages, s.failed
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// Why the node's health is what it is, with the figures of the rule that decided it
/// (`fault` crate, module `health`).
fn health_reason(inp: &Inputs<'_>) -> String {
    let (st, vs, cfg) = (inp.status, inp.validators, inp.config);
    let connected_power: u64 = vs.power(st.me)
        + inp
            .connected
            .iter()
            .filter(|i| **i != st.me)
            .map(|i| vs.power(*i))
            .sum::<u64>();
    let lag = st.view.0.saturating_sub(st.lock_view.0);
    match st.health {
        Health::UnderAttack => format!(
            "at least {} new evidence items or {} invalid messages within the last {} ms \
             (evidence held by kind: {})",
            cfg.attack_evidence,
            cfg.attack_invalid,
            cfg.attack_window_ms,
            st.evidence_counts
                .iter()
                .map(|(k, n)| format!("{}={n}", k.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Health::Partitioned if connected_power < vs.quorum() => format!(
            "connected voting power {connected_power} (ourselves included) is below the quorum {}",
            vs.quorum()
        ),
        Health::Partitioned => format!(
            "no QC for {lag} views (view {}, high QC view {}; limit {} views)",
            st.view.0, st.lock_view.0, cfg.partition_views
        ),
        Health::Recovering => "fetching missing blocks (block sync in flight)".to_string(),
        Health::Normal => format!(
            "connected voting power {connected_power} of {} (quorum {}), QCs forming (high QC \
             {lag} views behind the current view)",
            vs.total_power(),
            vs.quorum()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_keeps_the_first_sighting_and_forgets_ended_conditions() {
        let mut w = FaultWatch::default();
        w.observe([(1, Condition::Down), (2, Condition::Isolated)], 10, 5);
        w.observe([(1, Condition::Down), (2, Condition::Isolated)], 12, 6);
        assert_eq!(w.since(1, Condition::Down), Some((10, 5)));
        w.observe([(2, Condition::Isolated)], 14, 7);
        assert_eq!(w.since(1, Condition::Down), None);
        assert_eq!(w.since(2, Condition::Isolated), Some((10, 5)));
        w.observe([(1, Condition::Down), (2, Condition::Isolated)], 20, 9);
        assert_eq!(w.since(1, Condition::Down), Some((20, 9)));
    }
}
