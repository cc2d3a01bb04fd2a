//! The double-sign check at start (PROTOCOL.md §4.10): after a start or restart, sign nothing
//! until the chain's recent certificates show that no other process is signing with our key.
//!
//! CometBFT's `double_sign_check_height` looks back over the last blocks once, at start; here
//! the node looks at the certificates it verifies anyway (proposals' justify, statuses, TCs,
//! fetched blocks), forward from start, until `needed` distinct certified views above its
//! watermark carried no signature of ours. A certificate that does carry one is the key in use
//! elsewhere (§4.9): the watermark rises, the count starts again above it, and signing stays
//! held. If no new certificate arrives for `hold_ms` and validators of a quorum were heard
//! from, the chain is waiting for us (it cannot certify without our vote, so no twin is signing
//! in it either) and the check passes. Silence before a quorum was heard proves nothing: a copy
//! of our key that its peers do not talk to hears no certificate either.

use crate::policy::Millis;
use crate::types::{ValidatorIndex, View};
use std::collections::BTreeSet;

/// How the check ended (for the log and the counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Passed {
    /// `needed` certified views above the watermark carried no signature of ours.
    CleanCertificates,
    /// No new certificate for `hold_ms` after a quorum was heard from: the chain waits for
    /// our signature.
    ChainWaiting,
}

/// State of a running check. Memory: at most `needed` views (bounded by the configuration) and
/// one entry per validator heard from (bounded by the validator set), never by what peers send.
#[derive(Debug)]
pub(super) struct SignCheck {
    /// Certificates at or below this view say nothing new (we may have signed them ourselves
    /// before the restart): the highest view we signed, or saw our key sign, in.
    floor: View,
    /// Distinct certified views above `floor` without our signature.
    clean: BTreeSet<View>,
    needed: usize,
    hold_ms: u64,
    /// Validators a valid message came from since the check began (members only: the core
    /// drops other senders first).
    heard: BTreeSet<ValidatorIndex>,
    /// Whether `heard` (with us) reached a quorum: silence proves nothing before.
    quorum_heard: bool,
    /// Start of the check, or the last time a certificate moved it, or the timer found no
    /// quorum heard (ms).
    last_progress: Millis,
    started: Millis,
}

impl SignCheck {
    /// A check at `now` above watermark `floor`, passing after `needed ≥ 1` clean certified
    /// views or `hold_ms` without a new certificate.
    pub(super) fn new(floor: View, needed: u64, hold_ms: u64, now: Millis) -> Self {
        SignCheck {
            floor,
            clean: BTreeSet::new(),
            needed: needed.clamp(1, MAX_CHECK_VIEWS) as usize,
            hold_ms,
            heard: BTreeSet::new(),
            quorum_heard: false,
            last_progress: now,
            started: now,
        }
    }

    /// A valid message from validator `from`. Returns whether `from` is new to the check.
    pub(super) fn heard(&mut self, from: ValidatorIndex) -> bool {
        !self.quorum_heard && self.heard.insert(from)
    }

    /// The validators heard from so far (until a quorum was).
    pub(super) fn heard_from(&self) -> impl Iterator<Item = ValidatorIndex> + '_ {
        self.heard.iter().copied()
    }

    /// Validators of a quorum (with us) were heard from: silence can pass the check from now
    /// on. It is still counted from the start or the last certificate (a network that starts
    /// together passes after `hold_ms`, not later).
    pub(super) fn quorum_heard(&mut self) {
        self.quorum_heard = true;
    }

    /// Whether a quorum was heard from since the check began.
    pub(super) fn has_heard_quorum(&self) -> bool {
        self.quorum_heard
    }

    /// A verified certificate of `view` without our signature. Returns whether the check
    /// passed.
    pub(super) fn clean_certificate(&mut self, view: View, now: Millis) -> Option<Passed> {
        if view <= self.floor || !self.clean.insert(view) {
            return None;
        }
        self.last_progress = now;
        (self.clean.len() >= self.needed).then_some(Passed::CleanCertificates)
    }

    /// A verified certificate of `view` carries our signature where we never signed (§4.9):
    /// start counting again above it.
    pub(super) fn own_signature_elsewhere(&mut self, view: View, now: Millis) {
        self.floor = self.floor.max(view);
        let floor = self.floor;
        self.clean.retain(|v| *v > floor);
        self.last_progress = now;
    }

    /// We do not hear a quorum: silence proves nothing, so the wait for certificates starts
    /// again at `now`.
    pub(super) fn restart_wait(&mut self, now: Millis) {
        self.last_progress = self.last_progress.max(now);
    }

    /// When the check passes for lack of certificates unless one arrives first (ms).
    pub(super) fn deadline(&self) -> Millis {
        self.last_progress.saturating_add(self.hold_ms)
    }

    /// Whether a quorum was heard from and `now` is past [`SignCheck::deadline`].
    pub(super) fn expired(&self, now: Millis) -> Option<Passed> {
        (self.quorum_heard && now >= self.deadline()).then_some(Passed::ChainWaiting)
    }

    /// Milliseconds since the check began.
    pub(super) fn held_ms(&self, now: Millis) -> u64 {
        now.saturating_sub(self.started)
    }

    /// Clean certified views counted so far, and the number needed.
    pub(super) fn progress(&self) -> (usize, usize) {
        (self.clean.len(), self.needed)
    }
}

/// Upper bound of `Config::double_sign_check_views`.
pub const MAX_CHECK_VIEWS: u64 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_after_distinct_clean_views_above_the_floor() {
        let mut c = SignCheck::new(View(10), 3, 1_000, 0);
        assert_eq!(c.clean_certificate(View(9), 1), None);
        assert_eq!(c.clean_certificate(View(10), 1), None);
        assert_eq!(c.clean_certificate(View(11), 2), None);
        assert_eq!(
            c.clean_certificate(View(11), 3),
            None,
            "same view twice counts once"
        );
        assert_eq!(c.clean_certificate(View(12), 4), None);
        assert_eq!(
            c.clean_certificate(View(13), 5),
            Some(Passed::CleanCertificates)
        );
    }

    #[test]
    fn our_signature_elsewhere_restarts_the_count_above_it() {
        let mut c = SignCheck::new(View(10), 2, 1_000, 0);
        assert_eq!(c.clean_certificate(View(11), 1), None);
        c.own_signature_elsewhere(View(12), 2);
        assert_eq!(c.progress(), (0, 2));
        assert_eq!(c.clean_certificate(View(12), 3), None);
        assert_eq!(c.clean_certificate(View(13), 4), None);
        assert_eq!(
            c.clean_certificate(View(14), 5),
            Some(Passed::CleanCertificates)
        );
    }

    #[test]
    fn passes_when_no_certificate_arrives_for_the_hold() {
        let mut c = SignCheck::new(View(0), 4, 1_000, 500);
        c.quorum_heard();
        assert_eq!(c.expired(1_499), None);
        assert_eq!(c.clean_certificate(View(1), 1_200), None);
        assert_eq!(c.deadline(), 2_200, "a new certificate moves the deadline");
        assert_eq!(c.expired(2_199), None);
        assert_eq!(c.expired(2_200), Some(Passed::ChainWaiting));
        assert_eq!(c.held_ms(2_200), 1_700);
    }

    /// Silence before a quorum was heard from proves nothing (a copy of our key that nobody
    /// talks to): no pass however long, until the quorum is heard.
    #[test]
    fn silence_passes_only_once_a_quorum_was_heard() {
        let mut c = SignCheck::new(View(0), 4, 1_000, 0);
        assert_eq!(c.expired(5_000), None, "nobody heard: no pass however long");
        c.restart_wait(5_000);
        assert!(c.heard(ValidatorIndex(1)));
        assert!(!c.heard(ValidatorIndex(1)), "a sender counts once");
        assert!(c.heard(ValidatorIndex(2)));
        assert_eq!(c.heard_from().count(), 2);
        c.quorum_heard();
        assert!(
            !c.heard(ValidatorIndex(3)),
            "nothing to track once a quorum was heard"
        );
        assert_eq!(c.expired(5_999), None);
        assert_eq!(c.expired(6_000), Some(Passed::ChainWaiting));
    }
}
