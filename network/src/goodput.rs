//! Per-validator goodput of our large consensus frames: how fast a proposal-sized frame
//! actually reaches each peer, for the proposer to size its next block (`node`'s proposal
//! cap).
//!
//! Every frame streams on its own QUIC stream, and QUIC shares one congestion window among a
//! connection's streams. On a lossy link the window stays small (1 % loss at 100 ms RTT
//! measured 0.35 MB/s with 512 B frames, against 1.6 MB/s without loss; `net_bench` through
//! `bftnode-wan-relay`), so a block sized for the mempool rather than for the link takes
//! longer to arrive than the view lasts, and views time out one after another.
//!
//! **Sample.** For a frame of at least [`MIN_SAMPLE_BYTES`], acknowledged `elapsed` after it
//! was handed to the transport: `len / max(elapsed − rtt, 1 ms)`, bytes per second (the
//! acknowledgement needs about one round trip after the last byte; `rtt` is the peer's ping
//! RTT). A frame that fails (timeout, reset) halves the estimate. Estimates are an EWMA with
//! weight [`EWMA_WEIGHT_PERCENT`] on the new sample. Keyed by validator index only (bounded by
//! the genesis set); forgotten when the last connection to the peer closes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Smallest frame whose acknowledgement time is taken as a goodput sample, in bytes. Smaller
/// frames measure the round trip, not the link.
pub const MIN_SAMPLE_BYTES: usize = 8 * 1024;

/// Weight of a new sample in the estimate, percent.
pub const EWMA_WEIGHT_PERCENT: u64 = 25;

/// Goodput estimates by validator index, in bytes per second. Shared by the service (writes)
/// and every [`crate::NetworkHandle`] (reads).
#[derive(Debug, Default)]
pub struct Goodput {
    rates: Mutex<HashMap<u16, u64>>,
}

impl Goodput {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<u16, u64>) -> T) -> T {
        // A poisoned lock guards plain numbers: keep using them.
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut rates)
    }

    /// The estimate for validator `to`, bytes per second; `None` before its first sample.
    pub fn get(&self, to: u16) -> Option<u64> {
        self.with(|r| r.get(&to).copied())
    }

    /// A frame of `len` bytes to `to` was acknowledged `elapsed` after it was sent; `rtt` is
    /// the peer's latest ping round trip. Frames under [`MIN_SAMPLE_BYTES`] are ignored.
    pub(crate) fn acknowledged(
        &self,
        to: u16,
        len: usize,
        elapsed: Duration,
        rtt: Option<Duration>,
    ) {
        if len < MIN_SAMPLE_BYTES {
            return;
        }
        let transfer = elapsed
            .saturating_sub(rtt.unwrap_or_default())
            .max(Duration::from_millis(1));
        let sample =
            (len as u128 * 1_000_000 / transfer.as_micros().max(1)).min(u64::MAX as u128) as u64;
        self.with(|r| {
            let next = match r.get(&to) {
                None => sample,
                Some(&old) => (old.saturating_mul(100 - EWMA_WEIGHT_PERCENT) / 100)
                    .saturating_add(sample.saturating_mul(EWMA_WEIGHT_PERCENT) / 100),
            };
            r.insert(to, next.max(1));
        });
    }

    /// A frame of `len` bytes to `to` failed (timed out or was reset): halve the estimate.
    pub(crate) fn failed(&self, to: u16, len: usize) {
        if len < MIN_SAMPLE_BYTES {
            return;
        }
        self.with(|r| {
            if let Some(rate) = r.get_mut(&to) {
                *rate = (*rate / 2).max(1);
            }
        });
    }

    /// The last connection to `to` closed: its estimate no longer describes a live path.
    pub(crate) fn forget(&self, to: u16) {
        self.with(|r| r.remove(&to));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn samples_subtract_the_round_trip_and_average() {
        let g = Goodput::default();
        assert_eq!(g.get(1), None);
        // 100 KB acknowledged 300 ms after sending over a 100 ms round trip: 500 KB/s.
        g.acknowledged(1, 100_000, MS(300), Some(MS(100)));
        assert_eq!(g.get(1), Some(500_000));
        // A 1 MB/s sample moves the estimate a quarter of the way.
        g.acknowledged(1, 100_000, MS(200), Some(MS(100)));
        assert_eq!(g.get(1), Some(625_000));
        // Small frames measure the round trip: ignored.
        g.acknowledged(1, 512, MS(500), None);
        assert_eq!(g.get(1), Some(625_000));
        // An acknowledgement faster than the round trip counts as 1 ms of transfer.
        g.acknowledged(2, 10_000, MS(50), Some(MS(100)));
        assert_eq!(g.get(2), Some(10_000_000));
    }

    #[test]
    fn failures_halve_and_disconnects_forget() {
        let g = Goodput::default();
        g.failed(3, 100_000);
        assert_eq!(g.get(3), None, "nothing to halve yet");
        g.acknowledged(3, 100_000, MS(100), None);
        assert_eq!(g.get(3), Some(1_000_000));
        g.failed(3, 100_000);
        assert_eq!(g.get(3), Some(500_000));
        g.failed(3, 100);
        assert_eq!(g.get(3), Some(500_000), "small frames say nothing");
        g.forget(3);
        assert_eq!(g.get(3), None);
    }
}
