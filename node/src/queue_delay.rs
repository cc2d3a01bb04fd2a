//! Admission by queueing delay: refuse this node's clients while transactions wait too long
//! (issue 10, overload target: accepted transactions keep p99 < 1 s at twice the peak rate).
//!
//! The mempool's count and byte limits bound memory, not waiting time: at twice the peak rate
//! a pool of 8,000 transactions per node still held about a second of backlog, and accepted
//! transactions waited p99 1.4–1.5 s (`testnet/bench.sh`, 28,000 offered). Waiting time is what
//! a client feels, so it is what this module limits, after CoDel (Nichols & Jacobson,
//! "Controlling Queue Delay", 2012): the signal is the *smallest* sojourn time in the queue —
//! from a transaction's arrival in this node's mempool to the first stored block that carries
//! it (a proposal received or made here) — among the transactions that left the queue in the
//! last interval. A standing queue makes even the luckiest transaction wait; a burst that
//! drains does not, and neither does one stuck transaction.
//!
//! Why inclusion and not commit: the time from inclusion to commit is the consensus pipeline
//! (HotStuff-2: about four one-way delays after a proposal's receipt), not a queue, and no
//! admission control shortens it. Measured with commit as the end (issue 11, four validators
//! in network namespaces, 50 ms one-way links, `testnet/wan.sh`): at 1,000 tx/s, far below the
//! chain's capacity, the quickest commit of an interval already took close to the 500 ms
//! target, and 9 % of submissions were refused with no queue at all.
//!
//! Rule, per interval of [`INTERVAL`]: an interval is *congested* if transactions left the
//! queue in it and the smallest of their sojourn times exceeded the target. Local submissions
//! are refused at once (HTTP 429, `mempool congested`) for the interval after a congested one
//! if that one ended a run of [`ENTER_STREAK`] congested intervals, or if submissions were
//! already refused less than [`QueueDelay::memory`] ago. The run keeps a backlog that drains by itself
//! from refusing anyone: after a crash or a view change at moderate load the first blocks
//! carry transactions that waited through the outage, but newer ones are included quickly
//! within an interval or two. A genuine overload keeps the queue standing, is refused after
//! three intervals, and from then on at every congested interval. An interval in which no
//! transaction left the queue is no evidence either way: it neither extends nor breaks the
//! run, and a refusal in force stays in force. So a chain whose blocks come less often than
//! once per interval (a slow disk, wide-area links, a large validator set) is judged on the
//! intervals that saw blocks, not let off by the ones between them. Once no transaction has
//! left the queue for [`QueueDelay::memory`] ([`MEMORY`], or [`GAP_MEMORY_FACTOR`] typical
//! gaps between blocks on a chain slower than that) the run is forgotten and the node admits
//! (up to the mempool's limits), so a stalled or idle chain never locks its clients out for
//! longer than that.
//! Transactions from peers are not refused here: their own node already admitted them under
//! the same rule.
//!
//! Sans-IO: the caller passes `now`; no clock or timer inside.

use std::time::{Duration, Instant};

/// Default target, in ms (`mempool.max_queue_delay_ms`): with the pipeline's own ~0.1–0.4 s at
/// the peak on loopback, accepted transactions stay under the 1 s p99.
pub const DEFAULT_TARGET_MS: u64 = 500;

/// Observation interval: CoDel's 100 ms, a few views at the peak rate.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Consecutive congested intervals before the first refusal (module docs).
pub const ENTER_STREAK: u32 = 3;

/// After a refusal, how long a single congested interval is enough to refuse again; and how
/// long without any transaction leaving the queue before the node forgets a run of congested
/// intervals and admits. The least such memory: a chain whose blocks come further apart
/// stretches it to [`GAP_MEMORY_FACTOR`] times the typical gap ([`QueueDelay::memory`]).
pub const MEMORY: Duration = Duration::from_secs(1);

/// The memory is at least this many typical gaps between blocks that carried transactions
/// out of the queue (EWMA, weight 1/4 on the newest gap), so that a slow chain's quiet time
/// between two blocks is not taken for a stall (issue 11: 50 ms one-way links with 1 % loss,
/// about a block a second, forgot every refusal between blocks and queued seconds of backlog).
pub const GAP_MEMORY_FACTOR: u32 = 3;

/// Observations closer together than this belong to one block.
const SAME_BLOCK: Duration = Duration::from_millis(10);

/// Queue-delay admission state (module docs).
#[derive(Clone, Debug)]
pub struct QueueDelay {
    /// Smallest sojourn time above which an interval counts as congested. `Duration::ZERO`
    /// turns admission by delay off.
    target: Duration,
    /// Length of one observation interval.
    interval: Duration,
    window_start: Option<Instant>,
    window_min: Option<Duration>,
    /// Consecutive congested intervals up to the last finished one.
    streak: u32,
    /// When the last interval that led to refusals ended.
    last_refusal: Option<Instant>,
    /// When the last observed transaction left the queue.
    last_left: Option<Instant>,
    /// While refusing: the smallest sojourn of the last finished interval.
    congested: Option<Duration>,
    /// EWMA of the gaps between blocks that carried transactions out of the queue.
    typical_gap: Option<Duration>,
}

impl QueueDelay {
    /// Admission with `target` and `interval` (both > 0 to be active; a zero `target`
    /// disables it: [`QueueDelay::congested`] then always answers `None`).
    pub fn new(target: Duration, interval: Duration) -> Self {
        QueueDelay {
            target,
            interval: interval.max(Duration::from_millis(1)),
            window_start: None,
            window_min: None,
            streak: 0,
            last_refusal: None,
            last_left: None,
            congested: None,
            typical_gap: None,
        }
    }

    /// The target sojourn time (zero when disabled).
    pub fn target(&self) -> Duration {
        self.target
    }

    /// The observation interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// A transaction that arrived at `submitted` left the queue at `now` (the first stored block
    /// carrying it).
    pub fn observe(&mut self, now: Instant, submitted: Instant) {
        self.roll(now);
        if let Some(gap) = self
            .last_left
            .map(|t| now.saturating_duration_since(t))
            .filter(|gap| *gap >= SAME_BLOCK)
        {
            self.typical_gap = Some(self.typical_gap.map_or(gap, |g| (g * 3 + gap) / 4));
        }
        self.last_left = Some(now);
        let sojourn = now.saturating_duration_since(submitted);
        self.window_min = Some(self.window_min.map_or(sojourn, |m| m.min(sojourn)));
    }

    /// How long a refusal is remembered, and how long without a transaction leaving the
    /// queue before a run is forgotten: [`MEMORY`], or [`GAP_MEMORY_FACTOR`] typical gaps
    /// between blocks if that is longer.
    pub fn memory(&self) -> Duration {
        self.typical_gap
            .map_or(MEMORY, |g| MEMORY.max(g * GAP_MEMORY_FACTOR))
    }

    /// `Some(smallest sojourn of the last interval)` if local submissions are refused at `now`.
    pub fn congested(&mut self, now: Instant) -> Option<Duration> {
        self.roll(now);
        self.congested
    }

    /// Closes the interval if it ended by `now` and decides the next one (module docs). An
    /// interval in which nothing left the queue leaves the run and any refusal as they were,
    /// unless nothing has left it for [`MEMORY`]: then both are cleared.
    fn roll(&mut self, now: Instant) {
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) < self.interval {
            return;
        }
        self.window_start = Some(now);
        let memory = self.memory();
        if self
            .last_left
            .is_none_or(|t| now.saturating_duration_since(t) > memory)
        {
            (self.streak, self.congested, self.window_min) = (0, None, None);
            return;
        }
        // An interval in which nothing left the queue is no evidence: the run and any refusal
        // stand.
        let Some(min) = self.window_min.take() else {
            return;
        };
        let congested = (!self.target.is_zero() && min > self.target).then_some(min);
        self.streak = if congested.is_some() {
            self.streak + 1
        } else {
            0
        };
        let recent = self
            .last_refusal
            .is_some_and(|t| now.saturating_duration_since(t) <= memory);
        self.congested = congested.filter(|_| self.streak >= ENTER_STREAK || recent);
        if self.congested.is_some() {
            self.last_refusal = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Instants relative to a `t0` ten seconds from now, so `t0 - x` exists for any x < 10 s.
    struct Clock(Instant);
    impl Clock {
        fn new() -> Self {
            Clock(Instant::now() + 10_000 * MS)
        }
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
        fn before(&self, ms: u64) -> Instant {
            self.0 - Duration::from_millis(ms)
        }
    }

    /// Closes the interval ending at `end` ms after one transaction that waited `waited` ms.
    fn interval(q: &mut QueueDelay, c: &Clock, end: u64, waited: u64) -> Option<Duration> {
        q.observe(
            c.at(end - 50),
            c.at(end - 50) - Duration::from_millis(waited),
        );
        q.congested(c.at(end))
    }

    #[test]
    fn a_standing_queue_is_refused_after_three_intervals_then_at_once() {
        let c = Clock::new();
        let mut q = QueueDelay::new(500 * MS, 100 * MS);
        assert_eq!(q.congested(c.at(0)), None);
        // Interval [0, 100): one transaction waited 600 ms, others 40 and 10 ms: a straggler.
        q.observe(c.at(10), c.before(590));
        q.observe(c.at(50), c.at(10));
        q.observe(c.at(90), c.at(80));
        assert_eq!(q.congested(c.at(100)), None);
        // Three congested intervals: refused only once the third has ended.
        assert_eq!(interval(&mut q, &c, 200, 700), None);
        assert_eq!(
            q.congested(c.at(299)),
            None,
            "decided at the interval's end"
        );
        assert_eq!(interval(&mut q, &c, 300, 700), None);
        assert_eq!(interval(&mut q, &c, 400, 720), Some(720 * MS));
        assert_eq!(
            q.congested(c.at(450)),
            Some(720 * MS),
            "for the whole next interval"
        );
        // A quick inclusion clears it; within `MEMORY` one congested interval refuses again.
        assert_eq!(interval(&mut q, &c, 500, 60), None);
        assert_eq!(interval(&mut q, &c, 600, 800), Some(800 * MS));
        // Long after the last refusal it takes three intervals again.
        assert_eq!(interval(&mut q, &c, 700, 60), None);
        assert_eq!(q.congested(c.at(2_000)), None);
        assert_eq!(interval(&mut q, &c, 2_100, 900), None);
        assert_eq!(interval(&mut q, &c, 2_200, 900), None);
        assert_eq!(interval(&mut q, &c, 2_300, 900), Some(900 * MS));
    }

    #[test]
    fn a_backlog_that_drains_by_itself_is_never_refused() {
        let c = Clock::new();
        let mut q = QueueDelay::new(500 * MS, 100 * MS);
        assert_eq!(q.congested(c.at(0)), None);
        // A one-second outage: the first two intervals after it include the transactions that
        // waited through it, the third includes fresh ones.
        assert_eq!(interval(&mut q, &c, 100, 1_000), None);
        assert_eq!(interval(&mut q, &c, 200, 600), None);
        assert_eq!(interval(&mut q, &c, 300, 80), None);
        assert_eq!(interval(&mut q, &c, 400, 1_000), None);
    }

    #[test]
    fn intervals_without_blocks_neither_break_a_run_nor_lift_a_refusal() {
        let c = Clock::new();
        let mut q = QueueDelay::new(500 * MS, 100 * MS);
        assert_eq!(q.congested(c.at(0)), None);
        // A slow chain under a standing queue: one block every other interval.
        assert_eq!(interval(&mut q, &c, 100, 900), None);
        assert_eq!(q.congested(c.at(200)), None);
        assert_eq!(interval(&mut q, &c, 300, 900), None);
        assert_eq!(q.congested(c.at(400)), None);
        assert_eq!(
            interval(&mut q, &c, 500, 900),
            Some(900 * MS),
            "third congested"
        );
        assert_eq!(
            q.congested(c.at(600)),
            Some(900 * MS),
            "an empty interval lifts nothing"
        );
        assert_eq!(interval(&mut q, &c, 700, 950), Some(950 * MS));
        // One quick inclusion lifts it.
        assert_eq!(interval(&mut q, &c, 800, 40), None);
    }

    #[test]
    fn a_stall_longer_than_memory_admits() {
        let c = Clock::new();
        let mut q = QueueDelay::new(500 * MS, 100 * MS);
        assert_eq!(q.congested(c.at(0)), None);
        for end in [100, 200, 300] {
            interval(&mut q, &c, end, 900);
        }
        assert_eq!(q.congested(c.at(300)), Some(900 * MS));
        // Nothing leaves the queue after 250: refused while the last departure is under
        // `MEMORY` old...
        assert_eq!(q.congested(c.at(1_200)), Some(900 * MS));
        // ... and admitted after, with the run forgotten: one slow interval is not enough.
        assert_eq!(q.congested(c.at(1_300)), None);
        assert_eq!(interval(&mut q, &c, 1_400, 900), None);
        assert_eq!(interval(&mut q, &c, 1_500, 900), None);
        assert_eq!(interval(&mut q, &c, 1_600, 900), Some(900 * MS));
        // A slow inclusion followed by a silence longer than `MEMORY`, judged only after it.
        q.observe(c.at(1_650), c.before(900));
        assert_eq!(q.congested(c.at(2_700)), None);
    }

    #[test]
    fn a_slow_chain_is_judged_on_its_blocks_not_forgotten_between_them() {
        let c = Clock::new();
        let mut q = QueueDelay::new(500 * MS, 100 * MS);
        assert_eq!(q.congested(c.at(0)), None);
        // One block every 1.5 s, each carrying transactions that waited 2 s.
        let mut refused_at = None;
        for k in 0..6u64 {
            let end = 100 + 1_500 * k;
            if interval(&mut q, &c, end, 2_000).is_some() && refused_at.is_none() {
                refused_at = Some(end);
            }
            if refused_at.is_some() {
                assert_eq!(
                    q.congested(c.at(end + 1_400)),
                    Some(2_000 * MS),
                    "the refusal stands between blocks"
                );
            }
        }
        // The first gap, not yet known to be typical, was taken for a stall; then three
        // congested blocks.
        assert_eq!(refused_at, Some(100 + 1_500 * 4));
        assert_eq!(q.memory(), 4_500 * MS);
        // A stall longer than three typical gaps admits.
        let last = 100 + 1_500 * 5 - 50;
        assert_eq!(q.congested(c.at(last + 4_400)), Some(2_000 * MS));
        assert_eq!(q.congested(c.at(last + 4_600)), None);
    }

    #[test]
    fn a_zero_target_turns_it_off() {
        let c = Clock::new();
        let mut q = QueueDelay::new(Duration::ZERO, 100 * MS);
        assert_eq!(q.congested(c.at(0)), None);
        for end in [100, 200, 300, 400] {
            assert_eq!(interval(&mut q, &c, end, 5_000), None);
        }
    }
}
