//! How large our next proposal's payload may be: what the links to a quorum carry within the
//! proposal budget.
//!
//! A proposal must reach a quorum before the view can certify; a block sized only by the
//! mempool can take longer to cross a slow or lossy link than the view lasts. Then every view
//! times out, the mempool (and the next block) grows, and the chain stops committing: measured
//! at 50 ms one-way and 1 % loss, where QUIC's congestion window keeps a link near 0.35 MB/s.
//! So the proposer caps the payload at `rate × budget`, where `rate` is the goodput of the
//! slowest link it needs (the network's per-peer estimate, [`network::Goodput`]): peers are
//! taken fastest first until our power and theirs reach a quorum, and the last one taken sets
//! the rate. The budget is `[block] proposal_budget_ms` (a quarter of the base view timeout
//! leaves the rest of the view to the votes, the next leader's wait and slack). Blocks that
//! the cap shortens leave transactions in the mempool, whose admission control (`queue_delay`)
//! then refuses what the chain cannot carry: throughput degrades to what the links carry
//! instead of collapsing.
//!
//! **Opt-in, and why.** A goodput sample is the rate at which one *burst* (a proposal) got
//! through, and a bursty sender's congestion window stays near what its bursts needed, so on a
//! clean link the samples sit well below the link's capacity and the cap refuses load the chain
//! could carry (50 ms one-way, no loss, 1,000 tx/s: 17 % refused with the cap, none
//! without). Probing upwards (grow the cap while proposals arrive within budget) is the next
//! step; until then the cap is for links whose loss makes it pay.
//!
//! The cap is a local choice of the proposer; validators accept any payload up to the
//! chain-wide limit. A peer with no estimate yet (no large frame acknowledged) counts as
//! fast, so a fresh or loopback network is never capped by missing data.

use std::time::Duration;

/// The smallest payload cap, in bytes: about 30 transactions of 512 B, and above
/// [`network::MIN_SAMPLE_BYTES`] so that capped proposals still measure the link.
pub const MIN_PROPOSAL_BYTES: usize = 16 * 1024;

/// The payload cap in bytes, in `[MIN_PROPOSAL_BYTES, max]` (or `max` if that is smaller).
///
/// `own_power` is ours; `quorum` the quorum power; `peers` holds `(power, goodput)` of every
/// other *connected* validator (goodput in bytes/s, `None` if not measured yet); `budget` is
/// how long the proposal may take to arrive. If the connected validators cannot make a quorum,
/// the view cannot certify anyway and `max` is returned.
pub fn proposal_cap(
    own_power: u64,
    quorum: u64,
    peers: &[(u64, Option<u64>)],
    budget: Duration,
    max: usize,
) -> usize {
    let mut by_speed: Vec<(u64, u64)> = peers
        .iter()
        .map(|&(power, rate)| (rate.unwrap_or(u64::MAX), power))
        .collect();
    by_speed.sort_unstable_by_key(|&(rate, _)| std::cmp::Reverse(rate));
    let mut power = own_power;
    if power >= quorum {
        return max;
    }
    for (rate, p) in by_speed {
        power = power.saturating_add(p);
        if power >= quorum {
            let bytes = rate as u128 * budget.as_millis() / 1000;
            let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
            return bytes.clamp(MIN_PROPOSAL_BYTES.min(max), max);
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;
    const BUDGET: Duration = Duration::from_millis(500);

    #[test]
    fn the_slowest_link_of_the_fastest_quorum_sets_the_cap() {
        // Four validators of power 1, quorum 3: we need the two fastest of three peers.
        let peers = [(1, Some(400_000)), (1, Some(100_000)), (1, Some(2_000_000))];
        assert_eq!(proposal_cap(1, 3, &peers, BUDGET, MAX), 200_000);
        // Without the fast one, the slow one is needed.
        let peers = [(1, Some(400_000)), (1, Some(100_000))];
        assert_eq!(proposal_cap(1, 3, &peers, BUDGET, MAX), 50_000);
    }

    #[test]
    fn unmeasured_links_count_as_fast_and_bounds_hold() {
        let peers = [(1, None), (1, None), (1, Some(10))];
        assert_eq!(proposal_cap(1, 3, &peers, BUDGET, MAX), MAX);
        let peers = [(1, None), (1, Some(10)), (1, Some(10))];
        assert_eq!(proposal_cap(1, 3, &peers, BUDGET, MAX), MIN_PROPOSAL_BYTES);
        assert_eq!(proposal_cap(1, 3, &peers, BUDGET, 4096), 4096, "max wins");
        let fast = [(1, Some(u64::MAX)), (1, Some(u64::MAX))];
        assert_eq!(proposal_cap(1, 3, &fast, BUDGET, MAX), MAX);
    }

    #[test]
    fn no_quorum_connected_or_our_own_quorum_leaves_the_maximum() {
        assert_eq!(proposal_cap(1, 3, &[(1, Some(10))], BUDGET, MAX), MAX);
        assert_eq!(proposal_cap(3, 3, &[(1, Some(10))], BUDGET, MAX), MAX);
    }

    #[test]
    fn power_is_weighed() {
        // A heavy slow peer alone completes the quorum: it sets the cap.
        let peers = [(5, Some(100_000)), (1, Some(1_000_000))];
        assert_eq!(proposal_cap(1, 5, &peers, BUDGET, MAX), 50_000);
        // With a quorum of 2, the fast light peer suffices.
        assert_eq!(proposal_cap(1, 2, &peers, BUDGET, MAX), 500_000);
    }
}
