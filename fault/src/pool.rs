//! The evidence pool (PROTOCOL.md §6.2): verified evidence, deduplicated by
//! `(offender, kind, view)`, bounded, split into *pending* (to be put in a block) and
//! *committed* (carried by a committed block).
//!
//! Bounds: at most `max_evidence` items and `max_evidence_per_offender` per offender. A
//! Byzantine validator can sign unlimited distinct evidence against itself (one per view); the
//! per-offender cap keeps that from crowding out anyone else. When a cap is hit, committed items
//! (already on chain) are evicted first, oldest first; a new pending item that still does not
//! fit is refused, except that safety evidence may evict an offender's pending E4. Committed
//! evidence from a block is always recorded. Pending items more than `evidence_expiry_views`
//! below the latest committed view are dropped.
//!
//! Whether a validator is proven Byzantine is remembered in a per-validator flag, so it survives
//! eviction.

use crate::config::FaultConfig;
use consensus::{Evidence, EvidenceKind, Height, ValidatorIndex, View};
use std::collections::BTreeMap;

/// Every evidence kind, in the order [`crate::FaultTolerance`] reports counts.
pub const EVIDENCE_KINDS: [EvidenceKind; 5] = [
    EvidenceKind::DoubleVote,
    EvidenceKind::DoubleProposal,
    EvidenceKind::LockViolation,
    EvidenceKind::ConflictingTimeouts,
    EvidenceKind::InvalidProposal,
];

fn kind_index(k: EvidenceKind) -> usize {
    match k {
        EvidenceKind::DoubleVote => 0,
        EvidenceKind::DoubleProposal => 1,
        EvidenceKind::LockViolation => 2,
        EvidenceKind::ConflictingTimeouts => 3,
        EvidenceKind::InvalidProposal => 4,
    }
}

type Key = (ValidatorIndex, EvidenceKind, View);

#[derive(Clone, Debug)]
struct Entry {
    evidence: Evidence,
    /// Arrival order (unique, increasing).
    seq: u64,
    /// Height of the block that committed it.
    committed: Option<Height>,
}

/// Bounded, deduplicated store of verified evidence.
#[derive(Debug)]
pub(crate) struct EvidencePool {
    entries: BTreeMap<Key, Entry>,
    /// Items held per offender index.
    held: Vec<usize>,
    next_seq: u64,
    max_total: usize,
    max_per_offender: usize,
    expiry_views: u64,
    /// Distinct items accepted since start, by kind (monotone, for metrics).
    accepted_by_kind: [u64; 5],
    /// Distinct items accepted since start, by offender.
    accepted_by_offender: Vec<u64>,
    /// Whether safety-kind evidence against the validator was ever accepted.
    proven: Vec<bool>,
}

impl EvidencePool {
    pub(crate) fn new(n: usize, cfg: &FaultConfig) -> Self {
        EvidencePool {
            entries: BTreeMap::new(),
            held: vec![0; n],
            next_seq: 0,
            max_total: cfg.max_evidence.max(1),
            max_per_offender: cfg.max_evidence_per_offender.max(1),
            expiry_views: cfg.evidence_expiry_views,
            accepted_by_kind: [0; 5],
            accepted_by_offender: vec![0; n],
            proven: vec![false; n],
        }
    }

    /// Items currently held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn remove_where(&mut self, pred: impl Fn(&Entry) -> bool) -> bool {
        let victim = self
            .entries
            .iter()
            .filter(|(_, e)| pred(e))
            .min_by_key(|(_, e)| e.seq)
            .map(|(k, _)| *k);
        match victim {
            Some(k) => {
                self.entries.remove(&k);
                if let Some(c) = self.held.get_mut(k.0.as_usize()) {
                    *c = c.saturating_sub(1);
                }
                true
            }
            None => false,
        }
    }

    /// Make room for one item against `who`. `force` (committed items) may evict pending ones.
    fn make_room(&mut self, who: ValidatorIndex, kind: EvidenceKind, force: bool) -> bool {
        if self.held[who.as_usize()] >= self.max_per_offender {
            let freed = self
                .remove_where(|e| e.evidence.offender() == who && e.committed.is_some())
                || (kind.is_safety()
                    && self.remove_where(|e| {
                        e.evidence.offender() == who && !e.evidence.kind().is_safety()
                    }))
                || (force && self.remove_where(|e| e.evidence.offender() == who));
            if !freed {
                return false;
            }
        }
        if self.entries.len() >= self.max_total {
            let freed = self.remove_where(|e| e.committed.is_some())
                || (force && self.remove_where(|_| true));
            if !freed {
                return false;
            }
        }
        true
    }

    fn insert(&mut self, evidence: &Evidence, committed: Option<Height>) -> bool {
        let who = evidence.offender();
        let i = who.as_usize();
        if i >= self.held.len() {
            return false;
        }
        let key = evidence.key();
        if let Some(e) = self.entries.get_mut(&key) {
            if e.committed.is_none() {
                e.committed = committed;
            }
            return false;
        }
        if !self.make_room(who, evidence.kind(), committed.is_some()) {
            return false;
        }
        self.entries.insert(
            key,
            Entry {
                evidence: evidence.clone(),
                seq: self.next_seq,
                committed,
            },
        );
        self.next_seq += 1;
        self.held[i] += 1;
        self.accepted_by_kind[kind_index(evidence.kind())] += 1;
        self.accepted_by_offender[i] += 1;
        if evidence.kind().is_safety() {
            self.proven[i] = true;
        }
        true
    }

    /// Add verified evidence as pending. `true` if it is new and was kept.
    pub(crate) fn add_pending(&mut self, evidence: &Evidence) -> bool {
        self.insert(evidence, None)
    }

    /// Record evidence committed by the block at `height` (pending → committed, or new).
    /// `true` if it was not known before.
    pub(crate) fn add_committed(&mut self, evidence: &Evidence, height: Height) -> bool {
        self.insert(evidence, Some(height))
    }

    /// Drop pending items whose view is more than `expiry_views` below `committed_view`.
    pub(crate) fn expire(&mut self, committed_view: View) {
        let limit = self.expiry_views;
        let mut dropped = Vec::new();
        self.entries.retain(|k, e| {
            let keep = e.committed.is_some() || k.2.0.saturating_add(limit) >= committed_view.0;
            if !keep {
                dropped.push(k.0);
            }
            keep
        });
        for who in dropped {
            if let Some(c) = self.held.get_mut(who.as_usize()) {
                *c = c.saturating_sub(1);
            }
        }
    }

    /// Pending items for a block, at most `max`: safety kinds first, then by view, offender,
    /// kind (deterministic).
    pub(crate) fn for_block(&self, max: usize) -> Vec<Evidence> {
        let mut pending: Vec<(&Key, &Entry)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.committed.is_none())
            .collect();
        pending.sort_by_key(|(k, _)| (!k.1.is_safety(), k.2, k.0, k.1));
        pending
            .into_iter()
            .take(max)
            .map(|(_, e)| e.evidence.clone())
            .collect()
    }

    /// Held items (pending and committed) in arrival order, the newest `max`.
    pub(crate) fn known(&self, max: usize) -> Vec<Evidence> {
        let mut all: Vec<&Entry> = self.entries.values().collect();
        all.sort_by_key(|e| e.seq);
        let skip = all.len().saturating_sub(max);
        all.into_iter()
            .skip(skip)
            .map(|e| e.evidence.clone())
            .collect()
    }

    /// Whether `key` is held, and if so whether it is committed.
    pub(crate) fn state(&self, key: &Key) -> Option<bool> {
        self.entries.get(key).map(|e| e.committed.is_some())
    }

    /// Distinct items accepted since start, per kind, in [`EVIDENCE_KINDS`] order.
    pub(crate) fn counts_by_kind(&self) -> Vec<(EvidenceKind, u64)> {
        EVIDENCE_KINDS
            .iter()
            .map(|&k| (k, self.accepted_by_kind[kind_index(k)]))
            .collect()
    }

    /// Distinct items accepted since start against `i`.
    pub(crate) fn count_against(&self, i: ValidatorIndex) -> u64 {
        self.accepted_by_offender
            .get(i.as_usize())
            .copied()
            .unwrap_or(0)
    }

    /// Whether safety evidence against `i` was ever accepted (pending or committed).
    pub(crate) fn is_proven(&self, i: ValidatorIndex) -> bool {
        self.proven.get(i.as_usize()).copied().unwrap_or(false)
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
