//! The knobs of the fault-tolerance policy ([`fault::FaultConfig`]), split by who must agree on
//! them:
//!
//! - [`ChainFaultParams`], the `"fault"` object of `genesis.json`: everything the leader
//!   function (and the accountability it feeds) reads. Every validator of a chain must use the
//!   same values (PROTOCOL.md §6.3, §7 case 23): a node with other values elects other leaders.
//!   They are therefore part of the chain's identity: [`ChainFaultParams::domain_chain_id`]
//!   folds every value that differs from its default into the chain id of the signing domain,
//!   so nodes with different parameters sign different bytes, build different block ids
//!   (genesis included) and cannot silently disagree — their messages fail verification and a
//!   store created under other parameters is refused at start ("created from a different
//!   genesis"). A genesis without the object, or with every default, keeps the plain chain id,
//!   so existing chains and their stores are unchanged. The idea is CometBFT's: consensus
//!   parameters are hashed into every block header (`ConsensusHash`).
//! - [`FaultSection`], the `[fault]` section of `config.toml`: local policy (evidence pool
//!   bounds, the local `Suspected` labels, health thresholds, a cache size). Nodes may differ.
//!
//! Both are declared by [`knob_section!`]: one line per knob gives the field, its allowed range
//! and unit, and its doc; the default, the copy into [`fault::FaultConfig`] and the range check
//! with an error that names the key, the unit, the range and the default all follow from it.
//! **Adding a chain-wide knob** (as `downtime_window` was) is one line in the
//! [`ChainFaultParams`] list below, once the field exists in [`fault::FaultConfig`].

use anyhow::{Result, bail};
use fault::FaultConfig;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// A knob's value type: an integer, or an optional integer where `null` means "derived"
/// (e.g. `window`).
pub trait Knob: Clone + PartialEq {
    /// Whether the value lies in `lo..=hi` (`None` always does).
    fn in_range(&self, lo: u64, hi: u64) -> bool;
    /// The value as text (`null` for `None`).
    fn show(&self) -> String;
}

impl Knob for u64 {
    fn in_range(&self, lo: u64, hi: u64) -> bool {
        (lo..=hi).contains(self)
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Knob for usize {
    fn in_range(&self, lo: u64, hi: u64) -> bool {
        (lo..=hi).contains(&(*self as u64))
    }
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Knob for Option<u64> {
    fn in_range(&self, lo: u64, hi: u64) -> bool {
        self.is_none_or(|v| v.in_range(lo, hi))
    }
    fn show(&self) -> String {
        self.map_or_else(|| "null".to_string(), |v| v.to_string())
    }
}

/// The error for `key` holding `value` outside `lo..=hi` `unit` (default `default`).
fn out_of_range(key: &str, value: &str, lo: u64, hi: u64, unit: &str, default: &str) -> String {
    format!(
        "field `{key}`: {value} is out of range: must be between {lo} and {hi} {unit} (default {default})"
    )
}

/// Declares a section of [`fault::FaultConfig`] knobs: the struct (serde, unknown fields
/// refused, every field defaulting to [`FaultConfig::default`]'s value), `apply_to` (copy into
/// a `FaultConfig`), `check(prefix)` (range check, errors name `prefix.field`) and
/// `non_default` (the knobs that differ from their defaults, as `(name, value)`).
/// One line per knob: `/// doc` then `name: Type = lo..=hi "unit";`.
macro_rules! knob_section {
    (
        $(#[$smeta:meta])*
        pub struct $name:ident;
        $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $lo:literal ..= $hi:expr, $unit:literal; )*
    ) => {
        $(#[$smeta])*
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                let d = FaultConfig::default();
                $name { $( $field: d.$field, )* }
            }
        }

        impl $name {
            /// Copy these knobs into `cfg`.
            pub fn apply_to(&self, cfg: &mut FaultConfig) {
                $( cfg.$field = self.$field.clone(); )*
            }

            /// Check every knob's range. Errors name `prefix.field`, the value, the allowed
            /// range with its unit, and the default.
            pub fn check(&self, prefix: &str) -> Result<()> {
                let d = Self::default();
                $(
                    if !Knob::in_range(&self.$field, $lo, $hi) {
                        bail!(out_of_range(
                            &format!("{prefix}.{}", stringify!($field)),
                            &Knob::show(&self.$field),
                            $lo,
                            $hi,
                            $unit,
                            &Knob::show(&d.$field),
                        ));
                    }
                )*
                Ok(())
            }

            /// The knobs whose value differs from the default, as `(name, value)`, in
            /// declaration order.
            pub fn non_default(&self) -> Vec<(&'static str, String)> {
                let d = Self::default();
                let mut out = Vec::new();
                $(
                    if self.$field != d.$field {
                        out.push((stringify!($field), Knob::show(&self.$field)));
                    }
                )*
                out
            }
        }
    };
}

knob_section! {
    /// Chain-wide parameters of the fault policy: the `"fault"` object of `genesis.json`
    /// (optional; each field defaults to [`FaultConfig::default`]'s value). Identical on every
    /// validator; see the module docs for how they bind the signing domain. Units and meaning:
    /// the field of the same name of [`FaultConfig`].
    pub struct ChainFaultParams;
    /// `X`, views: the cut for view `v` is the highest committed block with view `≤ v − X`.
    exclusion_lag: u64 = 2..=1000, "views";
    /// `W`, committed blocks in the reputation window; `null` = `min(max(10·n, 512), 1000)`.
    window: Option<u64> = 1..=fault::MAX_WINDOW, "committed blocks, or null";
    /// `θ`, percent: excluded when `100·failed > θ·(failed + proposed)`.
    failure_threshold_pct: u64 = 0..=100, "percent";
    /// `R`: every view `v` with `v % R == 0` uses round robin; 0 disables.
    round_robin_every: u64 = 0..=1_000_000, "views";
    /// `Y`, views: round robin when the latest commit has view `< v − Y` (a stall).
    stall_views: u64 = 1..=1_000_000_000, "views";
    /// Committed blocks kept beyond the window.
    history_slack: u64 = 1..=fault::MAX_HISTORY_SLACK, "committed blocks";
    /// `W_d`, committed heights per downtime window (accountability, PROTOCOL.md §6.6).
    downtime_window: u64 = 1..=fault::MAX_DOWNTIME_WINDOW, "committed blocks";
    /// `θ_d`, percent: a downtime record when a validator signed fewer than this share of the
    /// justify QCs of the window's blocks it did not propose; 0 disables downtime records.
    downtime_threshold_pct: u64 = 0..=100, "percent";
    /// Strikes (downtime records, committed E4) without rehabilitation that isolate.
    isolation_strikes: u64 = 1..=1_000_000, "strikes";
    /// Consecutive clean downtime windows that rehabilitate a quarantined validator.
    rehabilitation_windows: u64 = 1..=1_000_000, "downtime windows";
}

knob_section! {
    /// Local fault policy: the `[fault]` section of `config.toml` (every field optional, each
    /// defaulting to [`FaultConfig::default`]'s value). Nodes of one chain may differ: none of
    /// these feeds the leader function. Units and meaning: the field of the same name of
    /// [`FaultConfig`].
    pub struct FaultSection;
    /// Weight tables of the most recent cuts precomputed on commit.
    cached_cuts: u64 = 1..=4096, "cuts";
    /// Evidence pool: items held (pending + committed).
    max_evidence: usize = 1..=1_000_000, "evidence items";
    /// Evidence pool: items held against one offender.
    max_evidence_per_offender: usize = 1..=65_536, "evidence items";
    /// Pending evidence more than this many views below the latest commit is dropped.
    evidence_expiry_views: u64 = 1..=1_000_000_000, "views";
    /// Window of the local `Suspected` label.
    suspect_window_views: u64 = 1..=1_000_000_000, "views";
    /// `Suspected` after this many missed proposals within the window.
    suspect_missed: u64 = 1..=1_000_000, "missed proposals";
    /// `Suspected` after this many invalid messages within the window.
    suspect_invalid: u64 = 1..=1_000_000, "invalid messages";
    /// A formerly isolated validator is `Rehabilitated` after this many views without a fault.
    clean_window_views: u64 = 1..=1_000_000_000, "views";
    /// `Partitioned` when `current_view − high_qc_view` exceeds this.
    partition_views: u64 = 1..=1_000_000, "views";
    /// Window of the attack detector.
    attack_window_ms: u64 = 1..=86_400_000, "milliseconds";
    /// `UnderAttack` after this many new evidence items within the window.
    attack_evidence: u64 = 1..=1_000_000, "evidence items";
    /// `UnderAttack` after this many invalid messages within the window.
    attack_invalid: u64 = 1..=1_000_000, "invalid messages";
}

impl ChainFaultParams {
    /// Range checks ([`ChainFaultParams::check`] with prefix `fault`) plus the cross-field
    /// rule `stall_views > exclusion_lag` (a stall bound below the lag would make every view
    /// round robin: the reputation would never be used).
    pub fn validate(&self) -> Result<()> {
        self.check("fault")?;
        if self.stall_views <= self.exclusion_lag {
            bail!(
                "field `fault.stall_views`: {} views must be greater than `fault.exclusion_lag` \
                 ({} views)",
                self.stall_views,
                self.exclusion_lag
            );
        }
        Ok(())
    }

    /// The chain id the signing domain is built from: `chain_id` itself when every parameter
    /// has its default, else `chain_id + "/fault:" + the first 16 hex characters of
    /// BLAKE3("bftnode/fault-params" ‖ "name=value;" for each non-default parameter, in
    /// declaration order)`. A new parameter at its default changes no existing chain's domain.
    pub fn domain_chain_id(&self, chain_id: &str) -> String {
        let changed = self.non_default();
        if changed.is_empty() {
            return chain_id.to_string();
        }
        let mut text = String::new();
        for (name, value) in &changed {
            let _ = write!(text, "{name}={value};");
        }
        let mut h = blake3::Hasher::new();
        h.update(b"bftnode/fault-params");
        h.update(text.as_bytes());
        let digest = hex::encode(&h.finalize().as_bytes()[..8]);
        format!("{chain_id}/fault:{digest}")
    }
}

impl FaultSection {
    /// Range checks, errors naming `fault.<field>` in `config.toml`.
    pub fn validate(&self) -> Result<()> {
        self.check("fault")
    }
}

/// The policy configuration of a node: the chain's parameters from its genesis and the local
/// ones from its `config.toml`, over [`FaultConfig::default`].
pub fn fault_config(chain: &ChainFaultParams, local: &FaultSection) -> FaultConfig {
    let mut cfg = FaultConfig::default();
    chain.apply_to(&mut cfg);
    local.apply_to(&mut cfg);
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_into_fault_config() {
        let cfg = fault_config(&ChainFaultParams::default(), &FaultSection::default());
        assert_eq!(cfg, FaultConfig::default());
        assert!(ChainFaultParams::default().validate().is_ok());
        assert!(FaultSection::default().validate().is_ok());
    }

    #[test]
    fn every_knob_reaches_fault_config() {
        let chain = ChainFaultParams {
            exclusion_lag: 6,
            window: Some(700),
            failure_threshold_pct: 40,
            round_robin_every: 0,
            stall_views: 300,
            history_slack: 100,
            downtime_window: 50,
            downtime_threshold_pct: 10,
            isolation_strikes: 5,
            rehabilitation_windows: 4,
        };
        let local = FaultSection {
            cached_cuts: 8,
            max_evidence: 10,
            max_evidence_per_offender: 2,
            evidence_expiry_views: 50,
            suspect_window_views: 20,
            suspect_missed: 5,
            suspect_invalid: 6,
            clean_window_views: 30,
            partition_views: 7,
            attack_window_ms: 500,
            attack_evidence: 3,
            attack_invalid: 4,
        };
        let cfg = fault_config(&chain, &local);
        let expected = FaultConfig {
            exclusion_lag: 6,
            window: Some(700),
            failure_threshold_pct: 40,
            round_robin_every: 0,
            stall_views: 300,
            history_slack: 100,
            downtime_window: 50,
            downtime_threshold_pct: 10,
            isolation_strikes: 5,
            rehabilitation_windows: 4,
            cached_cuts: 8,
            max_evidence: 10,
            max_evidence_per_offender: 2,
            evidence_expiry_views: 50,
            suspect_window_views: 20,
            suspect_missed: 5,
            suspect_invalid: 6,
            clean_window_views: 30,
            partition_views: 7,
            attack_window_ms: 500,
            attack_evidence: 3,
            attack_invalid: 4,
        };
        assert_eq!(cfg, expected);
    }

    #[test]
    fn out_of_range_names_key_unit_range_and_default() {
        let bad = ChainFaultParams {
            failure_threshold_pct: 101,
            ..ChainFaultParams::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert_eq!(
            e,
            "field `fault.failure_threshold_pct`: 101 is out of range: must be between 0 and \
             100 percent (default 30)"
        );
        let bad = ChainFaultParams {
            window: Some(0),
            ..ChainFaultParams::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(
            e.contains("`fault.window`: 0") && e.contains("1 and 1000"),
            "{e}"
        );
        let bad = ChainFaultParams {
            stall_views: 4,
            ..ChainFaultParams::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(
            e.contains("`fault.stall_views`") && e.contains("exclusion_lag"),
            "{e}"
        );
        let bad = FaultSection {
            attack_window_ms: 0,
            ..FaultSection::default()
        };
        let e = bad.validate().unwrap_err().to_string();
        assert!(
            e.contains("`fault.attack_window_ms`: 0") && e.contains("milliseconds"),
            "{e}"
        );
    }

    #[test]
    fn domain_changes_only_with_non_default_parameters() {
        let d = ChainFaultParams::default();
        assert_eq!(d.domain_chain_id("c"), "c");
        let explicit_window = ChainFaultParams {
            window: Some(512),
            ..d.clone()
        };
        let lag = ChainFaultParams {
            exclusion_lag: 5,
            ..d.clone()
        };
        let a = explicit_window.domain_chain_id("c");
        let b = lag.domain_chain_id("c");
        assert!(
            a.starts_with("c/fault:") && b.starts_with("c/fault:"),
            "{a} {b}"
        );
        assert_ne!(a, b);
        assert_eq!(a, explicit_window.clone().domain_chain_id("c"));
    }
}
