//! Vote and timeout aggregation into QCs and TCs (PROTOCOL.md §4.2, §4.6).
//!
//! Votes are keyed by `(view, hash(VoteData))`, never by view alone (§7 case 5); each validator
//! counts once per view. Memory: at most one entry per validator per view, views pruned below
//! the current view − 1.

use crate::cert::{Bitmap, QuorumCert, TimeoutCert, VoteData};
use crate::crypto::Signature;
use crate::types::{Digest, ValidatorIndex, View};
use crate::validators::ValidatorSet;
use std::collections::BTreeMap;

#[derive(Debug, Default)]
struct VoteTally {
    data: Option<VoteData>,
    sigs: BTreeMap<ValidatorIndex, Signature>,
    power: u64,
    done: bool,
}

/// Collects the votes of every view in the window (votes are broadcast, so every node forms
/// the QC; PROTOCOL.md §4.6).
#[derive(Debug, Default)]
pub(crate) struct VoteCollector {
    tallies: BTreeMap<(View, Digest), VoteTally>,
    voted: BTreeMap<(View, ValidatorIndex), Digest>,
}

impl VoteCollector {
    pub(crate) fn prune_below(&mut self, floor: View) {
        self.tallies = self.tallies.split_off(&(floor, Digest::ZERO));
        self.voted = self.voted.split_off(&(floor, ValidatorIndex(0)));
    }

    /// The votes added for `data`, voter → signature (each verified, or our own); `None` if
    /// none. Lets a QC built from the same votes skip their signature checks.
    pub(crate) fn held(&self, data: &VoteData) -> Option<&BTreeMap<ValidatorIndex, Signature>> {
        self.tallies
            .get(&(data.view, data.digest()))
            .map(|t| &t.sigs)
    }

    /// Add a verified vote; returns a QC the first time its block reaches quorum power.
    pub(crate) fn add(
        &mut self,
        vs: &ValidatorSet,
        voter: ValidatorIndex,
        data: &VoteData,
        sig: Signature,
    ) -> Option<QuorumCert> {
        let digest = data.digest();
        if self.voted.contains_key(&(data.view, voter)) {
            return None;
        }
        self.voted.insert((data.view, voter), digest);
        let tally = self.tallies.entry((data.view, digest)).or_default();
        if tally.data.is_none() {
            tally.data = Some(data.clone());
        }
        tally.sigs.insert(voter, sig);
        tally.power += vs.power(voter);
        if tally.done || tally.power < vs.quorum() {
            return None;
        }
        tally.done = true;
        let mut signers = Bitmap::new(vs.len());
        let mut sigs = Vec::with_capacity(tally.sigs.len());
        for (i, s) in &tally.sigs {
            signers.set(*i);
            sigs.push(*s);
        }
        Some(QuorumCert {
            data: data.clone(),
            signers,
            sigs,
        })
    }
}

#[derive(Debug, Default)]
struct TimeoutTally {
    entries: BTreeMap<ValidatorIndex, (View, Signature)>,
    high_qc: Option<QuorumCert>,
    power: u64,
    done: bool,
}

/// What adding a timeout achieved.
#[derive(Debug)]
pub(crate) enum TimeoutProgress {
    /// Nothing yet.
    None,
    /// Weak threshold (f+1) reached for the first time in this view: join (§4.2).
    Join,
    /// Quorum reached: the TC.
    Certificate(Box<TimeoutCert>),
}

/// Collects timeouts per view (everyone aggregates, Jolteon/Aptos style).
#[derive(Debug, Default)]
pub(crate) struct TimeoutCollector {
    tallies: BTreeMap<View, TimeoutTally>,
}

impl TimeoutCollector {
    pub(crate) fn prune_below(&mut self, floor: View) {
        self.tallies = self.tallies.split_off(&floor);
    }

    /// The highest view each validator of `n` sent us a timeout for, among the views still
    /// collected (`None`: none).
    pub(crate) fn latest_by_sender(&self, n: usize) -> Vec<Option<View>> {
        let mut latest = vec![None; n];
        for (view, tally) in &self.tallies {
            for sender in tally.entries.keys() {
                if let Some(slot) = latest.get_mut(sender.as_usize()) {
                    *slot = Some(*view);
                }
            }
        }
        latest
    }

    /// Who sent a timeout for `view` so far, in index order.
    pub(crate) fn senders(&self, view: View) -> Vec<ValidatorIndex> {
        self.tallies
            .get(&view)
            .map(|t| t.entries.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Add a verified timeout `(view, sender, high_qc)`. One per sender per view.
    pub(crate) fn add(
        &mut self,
        vs: &ValidatorSet,
        view: View,
        sender: ValidatorIndex,
        high_qc: &QuorumCert,
        sig: Signature,
    ) -> TimeoutProgress {
        let tally = self.tallies.entry(view).or_default();
        if tally.entries.contains_key(&sender) {
            return TimeoutProgress::None;
        }
        let before = tally.power;
        tally.entries.insert(sender, (high_qc.view(), sig));
        tally.power += vs.power(sender);
        if tally
            .high_qc
            .as_ref()
            .is_none_or(|q| high_qc.view() > q.view())
        {
            tally.high_qc = Some(high_qc.clone());
        }
        if !tally.done && tally.power >= vs.quorum() {
            tally.done = true;
            let mut signers = Bitmap::new(vs.len());
            let mut hqc_views = Vec::new();
            let mut sigs = Vec::new();
            for (i, (h, s)) in &tally.entries {
                signers.set(*i);
                hqc_views.push(*h);
                sigs.push(*s);
            }
            if let Some(high_qc) = tally.high_qc.clone() {
                return TimeoutProgress::Certificate(Box::new(TimeoutCert {
                    view,
                    high_qc,
                    signers,
                    hqc_views,
                    sigs,
                }));
            }
        }
        let weak = vs.weak_threshold();
        if before < weak && tally.power >= weak {
            return TimeoutProgress::Join;
        }
        TimeoutProgress::None
    }

    /// Whether a timeout of `view` from `sender` reporting `hqc_view` would be added with its
    /// high QC kept as the tally's highest (so that QC must be verified first): the sender is new
    /// for this view and `hqc_view` is above the highest kept so far.
    pub(crate) fn would_keep_high_qc(
        &self,
        view: View,
        sender: ValidatorIndex,
        hqc_view: View,
    ) -> bool {
        self.tallies.get(&view).is_none_or(|t| {
            !t.entries.contains_key(&sender)
                && t.high_qc.as_ref().is_none_or(|q| hqc_view > q.view())
        })
    }

    /// Whether the tally of `view` already keeps a high QC of view ≥ `hqc_view` (so a timeout
    /// reporting `hqc_view` adds its signature without its QC entering a TC).
    pub(crate) fn has_high_qc_at_least(&self, view: View, hqc_view: View) -> bool {
        self.tallies
            .get(&view)
            .and_then(|t| t.high_qc.as_ref())
            .is_some_and(|q| q.view() >= hqc_view)
    }

    /// Reported locks (sender → hqc view) of timeouts for `view`.
    pub(crate) fn reported(&self, view: View) -> impl Iterator<Item = ValidatorIndex> + '_ {
        self.tallies
            .get(&view)
            .into_iter()
            .flat_map(|t| t.entries.keys().copied())
    }
}
