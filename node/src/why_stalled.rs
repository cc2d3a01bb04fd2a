//! `GET /why-stalled` (`bftnode why-stalled`): why the chain is not committing, in plain words,
//! from what this node knows (issue 11 item 6): whether a quorum is connected, which
//! validators are missing from the latest QC and from the current view's timeouts, who is
//! silent or stuck in an older view, the current view's leader, timeout and backoff, the next
//! leader, and whether a block fetch is in flight.
//!
//! The findings are a pure function of the core's [`StallReport`] and the commit age, so they
//! are unit-tested here without a network.

use crate::rpc_types::{StallValidator, WhyStalledResponse};
use consensus::core::StallReport;
use consensus::{ValidatorIndex, ValidatorSet};
use std::time::Duration;

/// A node that has not committed for this long counts as stalled (a healthy chain commits
/// every few views, a few ms on a LAN and a few hundred ms on a 50 ms WAN).
pub const STALLED_AFTER: Duration = Duration::from_secs(2);

/// A validator silent for longer than this is named as silent, ms.
pub const SILENT_AFTER_MS: u64 = 2_000;

fn list(ids: &[ValidatorIndex]) -> String {
    if ids.is_empty() {
        return "none".to_string();
    }
    ids.iter()
        .map(|i| i.0.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// The diagnosis: facts per validator and findings in words, most important first.
pub fn diagnose(
    r: &StallReport,
    vs: &ValidatorSet,
    committed_height: u64,
    last_commit_age: Duration,
    halted: bool,
) -> WhyStalledResponse {
    let stalled = halted || last_commit_age >= STALLED_AFTER;
    let age_ms = last_commit_age.as_millis() as u64;
    let mut findings = Vec::new();
    let all: Vec<ValidatorIndex> = vs.indices().collect();
    let not_in = |set: &[ValidatorIndex]| -> Vec<ValidatorIndex> {
        all.iter().copied().filter(|i| !set.contains(i)).collect()
    };
    let disconnected = not_in(&r.connected);
    let missing_qc = not_in(&r.high_qc_signers);
    let no_timeout = not_in(&r.timeouts_this_view);
    let silent: Vec<ValidatorIndex> = all
        .iter()
        .copied()
        .filter(|i| {
            r.silent_ms
                .get(i.as_usize())
                .is_some_and(|s| *s > SILENT_AFTER_MS)
        })
        .collect();
    let behind: Vec<ValidatorIndex> = all
        .iter()
        .copied()
        .filter(|i| {
            r.latest_timeout_view
                .get(i.as_usize())
                .copied()
                .flatten()
                .is_some_and(|v| v < r.view && !r.timeouts_this_view.contains(i))
        })
        .collect();

    if halted {
        findings.push(
            "this node halted on a safety violation: it signs and commits nothing more; read \
             its log"
                .to_string(),
        );
    }
    findings.push(if stalled {
        format!(
            "no commit for {} (committed height {committed_height})",
            secs(age_ms)
        )
    } else {
        format!(
            "not stalled: last commit {} ago (committed height {committed_height})",
            secs(age_ms)
        )
    });
    if r.connected_power < r.quorum_power {
        findings.push(format!(
            "no quorum connected: {} of {} voting power reachable, a quorum needs {}; not \
             connected: validators {}",
            r.connected_power,
            vs.total_power(),
            r.quorum_power,
            list(&disconnected)
        ));
    } else if !disconnected.is_empty() {
        findings.push(format!(
            "quorum connected ({} of {} power, quorum {}), but not connected: validators {}",
            r.connected_power,
            vs.total_power(),
            r.quorum_power,
            list(&disconnected)
        ));
    }
    if !silent.is_empty() {
        let detail: Vec<String> = silent
            .iter()
            .map(|i| {
                format!(
                    "{} ({})",
                    i.0,
                    secs(r.silent_ms.get(i.as_usize()).copied().unwrap_or(0))
                )
            })
            .collect();
        findings.push(format!("silent: validators {}", detail.join(", ")));
    }
    findings.push(if r.high_qc_view.0 == 0 {
        "no QC formed since genesis".to_string()
    } else {
        format!(
            "latest QC is for view {} and lacks validators {}",
            r.high_qc_view.0,
            list(&missing_qc)
        )
    });
    findings.push(format!(
        "view {} (leader {}{}): entered {} ago, times out after {} (backoff exponent {}); \
         timeouts received from validators {}, not from {}; next leader {}{}",
        r.view.0,
        r.leader.0,
        if disconnected.contains(&r.leader) {
            ", not connected"
        } else {
            ""
        },
        secs(r.in_view_ms),
        secs(r.view_timeout_ms),
        r.backoff_exponent,
        list(&r.timeouts_this_view),
        list(&no_timeout),
        r.next_leader.0,
        if disconnected.contains(&r.next_leader) {
            ", not connected"
        } else {
            ""
        },
    ));
    if !behind.is_empty() {
        let detail: Vec<String> = behind
            .iter()
            .map(|i| {
                let v = r
                    .latest_timeout_view
                    .get(i.as_usize())
                    .copied()
                    .flatten()
                    .map_or(0, |v| v.0);
                format!("{} (last timeout for view {v})", i.0)
            })
            .collect();
        findings.push(format!(
            "in older views than ours: validators {}",
            detail.join(", ")
        ));
    }
    if let Some((v, signers)) = &r.high_tc {
        findings.push(format!(
            "highest TC is for view {}, signed by validators {}",
            v.0,
            list(signers)
        ));
    }
    if r.syncing {
        findings.push("fetching missing blocks from peers (this node is behind)".to_string());
    }
    let validators = all
        .iter()
        .map(|i| StallValidator {
            index: i.0,
            connected: r.connected.contains(i),
            silent_ms: r.silent_ms.get(i.as_usize()).copied().unwrap_or(0),
            in_latest_qc: r.high_qc_signers.contains(i),
            timed_out_this_view: r.timeouts_this_view.contains(i),
            latest_timeout_view: r
                .latest_timeout_view
                .get(i.as_usize())
                .copied()
                .flatten()
                .map(|v| v.0),
        })
        .collect();
    WhyStalledResponse {
        stalled,
        findings,
        committed_height,
        last_commit_age_ms: age_ms,
        view: r.view.0,
        leader: r.leader.0,
        next_leader: r.next_leader.0,
        view_timeout_ms: r.view_timeout_ms,
        backoff_exponent: r.backoff_exponent,
        high_qc_view: r.high_qc_view.0,
        connected_power: r.connected_power,
        quorum_power: r.quorum_power,
        syncing: r.syncing,
        validators,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus::{Epoch, PrivateKey, ValidatorInfo, View};

    fn set(n: u8) -> ValidatorSet {
        let infos = (0..n)
            .map(|i| ValidatorInfo {
                public_key: PrivateKey::from_seed([i + 1; 32]).public(),
                power: 1,
            })
            .collect();
        ValidatorSet::new("t", Epoch(0), infos).unwrap()
    }

    fn v(i: u16) -> ValidatorIndex {
        ValidatorIndex(i)
    }

    /// Two of four stopped: no quorum, both named as not connected, silent, missing from the
    /// QC and the timeouts.
    #[test]
    fn two_of_four_down_is_named() {
        let r = StallReport {
            view: View(40),
            leader: v(2),
            next_leader: v(3),
            in_view_ms: 900,
            view_timeout_ms: 1_125,
            backoff_exponent: 2,
            high_qc_view: View(37),
            high_qc_signers: vec![v(0), v(1), v(2)],
            high_tc: Some((View(39), vec![v(0), v(1), v(2)])),
            timeouts_this_view: vec![v(0), v(1)],
            latest_timeout_view: vec![Some(View(40)), Some(View(40)), Some(View(38)), None],
            silent_ms: vec![0, 10, 8_000, 9_000],
            connected: vec![v(0), v(1)],
            connected_power: 2,
            quorum_power: 3,
            syncing: false,
        };
        let d = diagnose(&r, &set(4), 12, Duration::from_secs(8), false);
        assert!(d.stalled);
        let text = d.findings.join("\n");
        assert!(text.contains("no commit for 8.0 s"), "{text}");
        assert!(
            text.contains("no quorum connected: 2 of 4 voting power reachable, a quorum needs 3; not connected: validators 2, 3"),
            "{text}"
        );
        assert!(
            text.contains("silent: validators 2 (8.0 s), 3 (9.0 s)"),
            "{text}"
        );
        assert!(text.contains("lacks validators 3"), "{text}");
        assert!(text.contains("leader 2, not connected"), "{text}");
        assert!(text.contains("not from 2, 3"), "{text}");
        assert!(
            text.contains("validators 2 (last timeout for view 38)"),
            "{text}"
        );
        assert!(!d.validators[2].connected && d.validators[2].in_latest_qc);
        assert_eq!(d.validators[2].latest_timeout_view, Some(38));
    }

    #[test]
    fn a_committing_node_says_so() {
        let r = StallReport {
            view: View(5),
            leader: v(1),
            next_leader: v(2),
            in_view_ms: 3,
            view_timeout_ms: 500,
            backoff_exponent: 0,
            high_qc_view: View(4),
            high_qc_signers: vec![v(0), v(1), v(2), v(3)],
            high_tc: None,
            timeouts_this_view: vec![],
            latest_timeout_view: vec![None; 4],
            silent_ms: vec![0, 1, 1, 2],
            connected: vec![v(0), v(1), v(2), v(3)],
            connected_power: 4,
            quorum_power: 3,
            syncing: false,
        };
        let d = diagnose(&r, &set(4), 3, Duration::from_millis(40), false);
        assert!(!d.stalled);
        assert!(d.findings[0].starts_with("not stalled"), "{:?}", d.findings);
        assert!(d.findings.iter().all(|f| !f.contains("no quorum")));
    }
}
