//! Accountability from committed history (issue 9 item 4): vote-participation (downtime)
//! accounting, the per-block misbehaviour list handed to the application, and the graduated
//! [`Standing`] of every validator (PROTOCOL.md §6.6).
//!
//! Only committed blocks enter, in height order, and only integer arithmetic is used, so every
//! node that committed the same blocks holds the same [`AccountingState`] and derives the same
//! [`Misbehaviour`] list at the same height. Nothing is carried in blocks: a downtime record is
//! *derived* at commit, so a leader cannot withhold or forge one, and the block format does not
//! change.
//!
//! ## Participation (per validator `i`, per block `B` of height ≥ 2)
//!
//! `B.justify` certifies `B`'s parent; its signer bitmap says who voted for it. The QC of
//! `B.justify` was aggregated by `B`'s proposer, whose own vote is always in it, so blocks
//! proposed by `i` say nothing about `i`'s votes reaching others:
//!
//! - `eligible_i` += 1 if `B.proposer ≠ i`;
//! - `signed_i` += 1 if `B.proposer ≠ i` and `i ∈ B.justify.signers`;
//! - `proposed_i` += 1 if `B.proposer = i`; `missed_slots_i` += appearances of `i` in
//!   `B.skipped_leaders` (reported, not judged: the election already handles failed slots).
//!
//! Block 1's justify is the genesis QC (no signers): it counts as a proposal only.
//!
//! ## Rule (evaluated at the end of each window)
//!
//! Windows are fixed ranges of `W_d` = `downtime_window` committed heights:
//! `(k·W_d, (k+1)·W_d]`. When block `h` with `h mod W_d = 0` is committed, every validator with
//! `eligible_i > 0` and `100·signed_i < θ_d·eligible_i` (θ_d = `downtime_threshold_pct`,
//! strict: exactly at the threshold passes) gets a [`DowntimeRecord`] at height `h`; the tallies
//! then reset. A quorum certificate carries only the first quorum of votes, so a live but slow
//! validator signs fewer QCs than it votes for: θ_d must sit well below `100·q/n` (default 20).
//!
//! ## Graduated response
//!
//! - **Quarantined**: a downtime record, or committed E4 (conflicting timeouts) evidence: one
//!   *strike* each.
//! - **Isolated**: committed safety evidence (E1, E2, E3, invalid proposal) — permanent, like
//!   the election's conviction (§6.3 rule 4); or `isolation_strikes` strikes without
//!   rehabilitation in between.
//! - **Rehabilitated**: a quarantined validator, or one isolated for downtime, after
//!   `rehabilitation_windows` consecutive clean windows (windows without a strike); its strikes
//!   reset. A later strike quarantines it again.
//! - **Good**: never penalised.
//!
//! A validator's standing changes only at the height of the block that causes it, identically
//! on every node. The standing does **not** feed the leader function: the election already
//! excludes, from the same committed blocks, convicted validators (forever) and silent or
//! failing leaders (within `X` views), and adding a second exclusion input would need its value
//! at every past cut. The application decides what a standing costs (the KV application records
//! a penalty entry per offender).
//!
//! ## Restart exactness
//!
//! The state is a few integers per validator plus the evidence keys recently penalised; the
//! node persists [`Accountant::encode_state`] in the atomic batch of every commit and restores it
//! with [`Accountant::restore`] before the first new commit, so it equals the state of a node
//! that never stopped. Blocks at or below [`AccountingState::last_height`] are ignored, so a
//! replay is harmless.

use crate::config::FaultConfig;
use borsh::{BorshDeserialize, BorshSerialize};
use consensus::{Block, BlockId, Digest, EvidenceKind, Height, ValidatorIndex, View};
use serde::Serialize;
use std::collections::VecDeque;
use thiserror::Error;

/// Evidence keys remembered (most recent first out), so an item committed twice (by a block and
/// by a descendant that re-proposed it, PROTOCOL.md §6.2 rule 9) is penalised once.
pub const RECENT_EVIDENCE: usize = 256;

/// Version tag of [`Accountant::encode_state`].
const STATE_VERSION: u8 = 1;

/// Largest decoded state accepted (bytes): far above `n = 65 536` validators' worth.
const MAX_STATE_BYTES: usize = 16 * 1024 * 1024;

/// The graduated standing of a validator (module doc, "Graduated response").
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, BorshSerialize, BorshDeserialize,
)]
pub enum Standing {
    /// Never penalised.
    #[default]
    Good,
    /// A downtime record or E4 evidence; rehabilitated after clean windows.
    Quarantined,
    /// Committed safety evidence (permanent), or repeated downtime.
    Isolated,
    /// Was quarantined or isolated for downtime; clean since.
    Rehabilitated,
}

impl Standing {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Good => "good",
            Standing::Quarantined => "quarantined",
            Standing::Isolated => "isolated",
            Standing::Rehabilitated => "rehabilitated",
        }
    }
}

/// Accountability record of one validator. Invariant: `convicted` implies `standing ==
/// Isolated`; `since` is the height of the block that set the current standing (0: genesis).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, BorshSerialize, BorshDeserialize,
)]
pub struct Account {
    /// Current standing.
    pub standing: Standing,
    /// Height of the block that set `standing`.
    pub since: Height,
    /// Whether committed safety evidence convicted it (isolated for good).
    pub convicted: bool,
    /// Strikes (downtime records, committed E4) since the last rehabilitation.
    pub strikes: u64,
    /// Consecutive clean windows since the last strike.
    pub clean_windows: u64,
    /// Downtime records over the whole chain.
    pub downtime_records: u64,
    /// Evidence items committed against it over the whole chain (each key once).
    pub evidence_committed: u64,
}

/// Participation of one validator over one window (module doc, "Participation").
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, BorshSerialize, BorshDeserialize,
)]
pub struct Tally {
    /// Justify QCs (of blocks it did not propose) carrying its vote.
    pub signed: u64,
    /// Blocks of height ≥ 2 it did not propose.
    pub eligible: u64,
    /// Blocks it proposed.
    pub proposed: u64,
    /// Appearances in `skipped_leaders`.
    pub missed_slots: u64,
}

/// A committed downtime record: `validator` signed `signed` of `eligible` justify QCs over the
/// committed heights `window_start..=window_end`, below `threshold_pct` percent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, BorshSerialize, BorshDeserialize)]
pub struct DowntimeRecord {
    /// The validator.
    pub validator: ValidatorIndex,
    /// First height of the window.
    pub window_start: Height,
    /// Last height of the window (the height the record is derived at).
    pub window_end: Height,
    /// Its participation over the window.
    pub tally: Tally,
    /// The threshold it fell under, in percent.
    pub threshold_pct: u64,
}

/// What a committed block proves against one validator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, BorshSerialize, BorshDeserialize)]
pub enum Offence {
    /// Evidence committed in the block (first commitment of its key only).
    Evidence {
        /// `Evidence::id()` (hex in JSON).
        id: Digest,
        /// `EvidenceKind::as_str()` (`double_vote`, …).
        kind: String,
        /// View of the offence.
        view: View,
        /// Whether the kind is a safety violation (E1–E3, invalid proposal).
        safety: bool,
    },
    /// Vote participation under the threshold over a window.
    Downtime(DowntimeRecord),
}

/// One entry of a committed block's misbehaviour list (like ABCI `FinalizeBlock.misbehavior`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, BorshSerialize, BorshDeserialize)]
pub struct Misbehaviour {
    /// The offender.
    pub offender: ValidatorIndex,
    /// Height of the committed block that carries or derives it.
    pub height: Height,
    /// View of that block.
    pub block_view: View,
    /// What it did.
    pub offence: Offence,
    /// Its standing after this entry took effect.
    pub standing: Standing,
}

/// The whole accounting state: what a node persists with each commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, BorshSerialize, BorshDeserialize)]
pub struct AccountingState {
    /// Height of the last block taken in (`None` before the first).
    pub last_height: Option<Height>,
    /// Index `k` of the window `(k·W_d, (k+1)·W_d]` being tallied.
    pub window: u64,
    /// Per validator, participation in the current window.
    pub tallies: Vec<Tally>,
    /// Per validator, its account.
    pub accounts: Vec<Account>,
    /// Evidence keys `(offender, kind name, view)` penalised recently (at most
    /// [`RECENT_EVIDENCE`], oldest first).
    pub recent_evidence: VecDeque<(ValidatorIndex, String, View)>,
}

impl AccountingState {
    /// Decode bytes written by [`Accountant::encode_state`] (for readers such as the RPC
    /// server). Errors: [`AccountingError::Corrupt`].
    pub fn decode(bytes: &[u8]) -> Result<Self, AccountingError> {
        let (version, body) = bytes
            .split_first()
            .ok_or_else(|| AccountingError::Corrupt("empty".into()))?;
        if *version != STATE_VERSION {
            return Err(AccountingError::Corrupt(format!("version {version}")));
        }
        consensus::decode(body, MAX_STATE_BYTES)
            .map_err(|e| AccountingError::Corrupt(e.to_string()))
    }
}

/// Why a stored state cannot be restored. Fatal at start: the node refuses to guess.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AccountingError {
    /// Not a state this version wrote, or undecodable.
    #[error("accounting state does not decode: {0}")]
    Corrupt(String),
    /// Written for a validator set of another size.
    #[error("accounting state is for {stored} validators, the set has {expected}")]
    WrongSetSize {
        /// Validators in the stored state.
        stored: usize,
        /// Validators in the set.
        expected: usize,
    },
}

/// Chain-wide parameters of the accounting (from [`FaultConfig`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Params {
    window: u64,
    threshold_pct: u64,
    isolation_strikes: u64,
    rehabilitation_windows: u64,
}

/// The deterministic accountant (see the module doc). Feed it every committed block once, in
/// height order, with [`Accountant::on_commit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accountant {
    params: Params,
    state: AccountingState,
}

impl Accountant {
    /// A fresh accountant for `n` validators (no block taken in).
    pub fn new(n: usize, cfg: &FaultConfig) -> Self {
        Accountant {
            params: Params {
                window: cfg.downtime_window(),
                threshold_pct: cfg.downtime_threshold_pct.min(100),
                isolation_strikes: cfg.isolation_strikes.max(1),
                rehabilitation_windows: cfg.rehabilitation_windows.max(1),
            },
            state: AccountingState {
                last_height: None,
                window: 0,
                tallies: vec![Tally::default(); n],
                accounts: vec![Account::default(); n],
                recent_evidence: VecDeque::new(),
            },
        }
    }

    /// An accountant for `n` validators from bytes written by [`Accountant::encode_state`].
    /// Errors: [`AccountingError`].
    pub fn restore(n: usize, cfg: &FaultConfig, bytes: &[u8]) -> Result<Self, AccountingError> {
        let mut a = Accountant::new(n, cfg);
        let state = AccountingState::decode(bytes)?;
        for stored in [state.tallies.len(), state.accounts.len()] {
            if stored != n {
                return Err(AccountingError::WrongSetSize {
                    stored,
                    expected: n,
                });
            }
        }
        a.state = state;
        Ok(a)
    }

    /// The state as bytes (version tag ‖ borsh), to persist with each commit.
    pub fn encode_state(&self) -> Vec<u8> {
        let mut out = vec![STATE_VERSION];
        out.extend(consensus::encode(&self.state));
        out
    }

    /// The state.
    pub fn state(&self) -> &AccountingState {
        &self.state
    }

    /// Take in committed `block` (`_id` is its id; unused today, part of the commit hook's
    /// shape) and return its misbehaviour list: evidence it commits (first commitment of each
    /// key, in block order), then the downtime records derived at its height (by validator
    /// index). Blocks at or below the last height taken in, and genesis, return nothing.
    pub fn on_commit(&mut self, block: &Block, _id: BlockId) -> Vec<Misbehaviour> {
        if self.state.last_height.is_some_and(|h| block.height <= h) {
            return Vec::new();
        }
        self.state.last_height = Some(block.height);
        let h = block.height.0;
        if h == 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        // A gap (never produced by the node, which commits every height) closes the window
        // the tallies belong to before this block is counted.
        let k = (h - 1) / self.params.window;
        if k != self.state.window {
            let end = self.state.window.saturating_add(1) * self.params.window;
            self.close_window(Height(end), block, &mut out);
            self.state.window = k;
        }
        self.count(block);
        for e in &block.evidence {
            self.on_evidence(e, block, &mut out);
        }
        if h.is_multiple_of(self.params.window) {
            self.close_window(block.height, block, &mut out);
            self.state.window = h / self.params.window;
        }
        out
    }

    fn count(&mut self, block: &Block) {
        let with_qc = block.height.0 >= 2;
        for (i, t) in self.state.tallies.iter_mut().enumerate() {
            let v = ValidatorIndex(i as u16);
            if v == block.proposer {
                t.proposed = t.proposed.saturating_add(1);
            } else if with_qc {
                t.eligible = t.eligible.saturating_add(1);
                if block.justify.signers.contains(v) {
                    t.signed = t.signed.saturating_add(1);
                }
            }
        }
        for s in &block.skipped_leaders {
            if let Some(t) = self.state.tallies.get_mut(s.as_usize()) {
                t.missed_slots = t.missed_slots.saturating_add(1);
            }
        }
    }

    fn on_evidence(&mut self, e: &consensus::Evidence, block: &Block, out: &mut Vec<Misbehaviour>) {
        let offender = e.offender();
        let kind = e.kind();
        let key = (offender, kind.as_str().to_string(), e.view());
        let Some(acc) = self.state.accounts.get_mut(offender.as_usize()) else {
            return;
        };
        if self.state.recent_evidence.contains(&key) {
            return;
        }
        self.state.recent_evidence.push_back(key);
        while self.state.recent_evidence.len() > RECENT_EVIDENCE {
            self.state.recent_evidence.pop_front();
        }
        acc.evidence_committed = acc.evidence_committed.saturating_add(1);
        let safety = kind.is_safety();
        if safety {
            acc.convicted = true;
            set(acc, Standing::Isolated, block.height);
        } else {
            strike(acc, &self.params, block.height);
        }
        out.push(Misbehaviour {
            offender,
            height: block.height,
            block_view: block.view,
            offence: Offence::Evidence {
                id: e.id(),
                kind: kind_name(kind),
                view: e.view(),
                safety,
            },
            standing: acc.standing,
        });
    }

    /// Judge the tallies of the window ending at `end`; the entries are reported at `block`.
    fn close_window(&mut self, end: Height, block: &Block, out: &mut Vec<Misbehaviour>) {
        let p = self.params;
        let start = Height(end.0.saturating_sub(p.window) + 1);
        for (i, (t, acc)) in self
            .state
            .tallies
            .iter_mut()
            .zip(self.state.accounts.iter_mut())
            .enumerate()
        {
            let tally = std::mem::take(t);
            if is_down(&tally, p.threshold_pct) {
                acc.downtime_records = acc.downtime_records.saturating_add(1);
                strike(acc, &p, block.height);
                out.push(Misbehaviour {
                    offender: ValidatorIndex(i as u16),
                    height: block.height,
                    block_view: block.view,
                    offence: Offence::Downtime(DowntimeRecord {
                        validator: ValidatorIndex(i as u16),
                        window_start: start,
                        window_end: end,
                        tally,
                        threshold_pct: p.threshold_pct,
                    }),
                    standing: acc.standing,
                });
            } else {
                clean_window(acc, &p, block.height);
            }
        }
    }
}

/// `100·signed < θ·eligible` with some eligible block (module doc, "Rule").
pub fn is_down(t: &Tally, threshold_pct: u64) -> bool {
    t.eligible > 0
        && u128::from(t.signed) * 100 < u128::from(threshold_pct) * u128::from(t.eligible)
}

fn kind_name(kind: EvidenceKind) -> String {
    kind.as_str().to_string()
}

fn set(acc: &mut Account, standing: Standing, at: Height) {
    if acc.standing != standing {
        acc.standing = standing;
        acc.since = at;
    }
}

/// One strike: quarantine, or isolation once `isolation_strikes` accumulate. A convicted
/// validator stays isolated.
fn strike(acc: &mut Account, p: &Params, at: Height) {
    acc.strikes = acc.strikes.saturating_add(1);
    acc.clean_windows = 0;
    if acc.convicted || acc.strikes >= p.isolation_strikes {
        set(acc, Standing::Isolated, at);
    } else {
        set(acc, Standing::Quarantined, at);
    }
}

/// A window without a strike: rehabilitation after `rehabilitation_windows` of them, unless
/// convicted.
fn clean_window(acc: &mut Account, p: &Params, at: Height) {
    acc.clean_windows = acc.clean_windows.saturating_add(1);
    let penalised = matches!(acc.standing, Standing::Quarantined | Standing::Isolated);
    if penalised && !acc.convicted && acc.clean_windows >= p.rehabilitation_windows {
        acc.strikes = 0;
        set(acc, Standing::Rehabilitated, at);
    }
}

#[cfg(test)]
#[path = "accounting_tests.rs"]
mod tests;
