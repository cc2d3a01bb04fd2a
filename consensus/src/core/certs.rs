//! Certificate verification with two bounded caches and the relevance rule (issue 7 findings 2
//! and 5): a certificate is verified only when it can change this replica's state, at most once
//! while it stays cached, and a certificate that failed is refused again without re-checking.
//!
//! Cost model: verifying a QC or TC costs one `verify_strict` per signature (≥ q of them), a
//! cache hit costs one BLAKE3 over the encoding. A certificate that cannot matter costs nothing.

use super::Core;
use crate::cert::{QuorumCert, TimeoutCert};
use crate::crypto::Signature;
use crate::policy::{FaultPolicy, InvalidReason};
use crate::types::{Digest, ValidatorIndex};
use std::collections::{HashSet, VecDeque};

/// How many verified and how many failed certificates are remembered, each (entries, FIFO).
const CACHE_LEN: usize = 1024;

/// Which kind of certificate a cache key is for: a QC and a TC whose bytes coincide (a TC's
/// encoding can parse as a QC) never share an entry (issue 7 finding 2).
#[derive(Clone, Copy)]
enum CertKind {
    Qc,
    Tc,
}

/// A bounded FIFO set of digests.
#[derive(Debug, Default)]
struct DigestFifo {
    set: HashSet<Digest>,
    order: VecDeque<Digest>,
}

impl DigestFifo {
    fn contains(&self, key: &Digest) -> bool {
        self.set.contains(key)
    }

    fn insert(&mut self, key: Digest) {
        if self.set.insert(key) {
            self.order.push_back(key);
            if self.order.len() > CACHE_LEN
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

/// Outcomes of past certificate verifications: verified ones (skip the check) and failed ones
/// (refuse without the check). Each holds at most [`CACHE_LEN`] entries, oldest evicted first.
#[derive(Debug, Default)]
pub(super) struct CertCache {
    verified: DigestFifo,
    failed: DigestFifo,
}

impl CertCache {
    /// Cache key: BLAKE3 over a per-kind tag and the canonical encoding.
    fn key(kind: CertKind, encoding: &[u8]) -> Digest {
        let tag: &[u8] = match kind {
            CertKind::Qc => b"HS2/v1/cache/qc",
            CertKind::Tc => b"HS2/v1/cache/tc",
        };
        let mut h = blake3::Hasher::new();
        h.update(tag);
        h.update(encoding);
        Digest(*h.finalize().as_bytes())
    }

    /// `Some(true)` if verified before, `Some(false)` if it failed before, `None` if unknown.
    fn lookup(&self, key: &Digest) -> Option<bool> {
        if self.verified.contains(key) {
            Some(true)
        } else if self.failed.contains(key) {
            Some(false)
        } else {
            None
        }
    }

    fn record(&mut self, key: Digest, ok: bool) {
        if ok {
            self.verified.insert(key);
        } else {
            self.failed.insert(key);
        }
    }
}

impl<P: FaultPolicy> Core<P> {
    /// Whether a QC can change our state: it is above our lock (raises the lock and high QC), or
    /// it is a commit proof for a height above the committed tip. Decided from the claimed view
    /// and height only, before any signature is checked.
    pub(super) fn qc_matters(&self, qc: &QuorumCert) -> bool {
        qc.view() > self.safety.lock().view()
            || (qc.is_commit_proof()
                && qc.data.height.0.saturating_sub(1) > self.tree.root_height().0)
    }

    /// Whether a TC can change our state: it is for the current or previous view (enters the
    /// next view, or tells us the others timed out), or its high QC matters. An older TC is of
    /// no use even above our high TC: our certificate of view `current_view − 1` already carries
    /// anyone behind us further than it would.
    pub(super) fn tc_matters(&self, tc: &TimeoutCert) -> bool {
        tc.view.0.saturating_add(1) >= self.current_view.0 || self.qc_matters(&tc.high_qc)
    }

    /// Verify a QC through the cache. Returns whether it was newly verified (its votes are then
    /// fed to the equivocation detector). A signature identical to a vote we accepted for the
    /// same vote data (held by the vote collector) is not checked again: the leader's QC is
    /// usually made of votes every node received too, under a different signer subset than
    /// the QC we formed. Errors: [`InvalidReason::BadCertificate`], also for a QC that failed
    /// before.
    pub(super) fn verify_qc(&mut self, qc: &QuorumCert) -> Result<bool, InvalidReason> {
        let key = CertCache::key(CertKind::Qc, &crate::encode(qc));
        match self.certs.lookup(&key) {
            Some(true) => return Ok(false),
            Some(false) => return Err(InvalidReason::BadCertificate),
            None => {}
        }
        let votes = self.votes.held(&qc.data);
        let held = |i: ValidatorIndex, s: &Signature| votes.and_then(|v| v.get(&i)) == Some(s);
        let reused = qc.votes().filter(|(i, s)| held(*i, s)).count() as u64;
        self.counters.certificates_verified += 1;
        self.counters.signatures_verified += qc.sigs.len() as u64 - reused;
        self.counters.signatures_reused += reused;
        let ok = qc.verify_except(&self.vs, &self.genesis_id, held).is_ok();
        self.certs.record(key, ok);
        if !ok {
            return Err(InvalidReason::BadCertificate);
        }
        self.detect_in_qc(qc);
        Ok(true)
    }

    /// Verify a TC through the cache: its structure and own signatures, and its high QC through
    /// [`Self::verify_qc`] (so a high QC shared by many TCs is checked once). Errors:
    /// [`InvalidReason::BadCertificate`], also for a TC that failed before.
    pub(super) fn verify_tc(&mut self, tc: &TimeoutCert) -> Result<(), InvalidReason> {
        let key = CertCache::key(CertKind::Tc, &crate::encode(tc));
        match self.certs.lookup(&key) {
            Some(true) => return Ok(()),
            Some(false) => return Err(InvalidReason::BadCertificate),
            None => {}
        }
        self.counters.certificates_verified += 1;
        self.counters.signatures_verified += tc.sigs.len() as u64;
        let ok = tc.verify_structure_and_signatures(&self.vs).is_ok()
            && self.verify_qc(&tc.high_qc).is_ok();
        self.certs.record(key, ok);
        if ok {
            Ok(())
        } else {
            Err(InvalidReason::BadCertificate)
        }
    }
}
