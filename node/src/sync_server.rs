//! Serving block-sync requests off the driver task, within a per-peer budget (issue 7 finding 5).
//!
//! A request (≤ [`MAX_SYNC_REQUEST_BYTES`]) can ask for up to 500 blocks / 16 MiB: reading and
//! encoding that inline would stall the consensus driver. The driver hands each request to
//! [`SyncServer::serve`], which decides at once (no IO) and, if admitted, reads the blocks on
//! tokio's blocking pool and answers through the network handle.
//!
//! Admission, cheapest check first:
//! 1. the request decodes (else the peer is reported `Undecodable`);
//! 2. the peer's byte budget is not overdrawn: a token bucket of [`BUDGET_BURST_BYTES`],
//!    refilled at [`BUDGET_BYTES_PER_SEC`]; each response's size is charged after it is read
//!    (it may overdraw the bucket once, then the peer waits for the refill);
//! 3. the peer has no other request being served (one in flight per peer) and fewer than
//!    [`MAX_CONCURRENT`] requests are served over all peers; otherwise the request waits in the
//!    peer's queue (at most [`MAX_QUEUED_PER_PEER`], else refused). Each answer that finishes
//!    starts the next waiting request, taking the peers in turn after the one just served; a
//!    request that waited [`MAX_QUEUE_WAIT`] is answered empty instead (its requester has
//!    moved on), and one whose peer's budget is overdrawn by then is refused.
//!
//! Why a queue: a node catching up asks several peers for several ranges at once, and the
//! compact relay asks for single blocks beside them; refusing every request beyond the first
//! answered them empty in microseconds, the requester moved on to the next peer, was refused
//! there too, and gave up after asking every peer twice (kill -9 loop, issue 10: a restarted
//! validator stayed thousands of heights behind for its whole 1.5 s life, 1,342 requests in
//! 5 s). A waiting request costs a few dozen bytes; the answers are still read one per peer
//! at a time, so the memory bound below is unchanged.
//!
//! Memory: libp2p keeps an answer the peer has not read until the request's timeout
//! (`sync_timeout_ms`) and then drops it, so the answers one peer can hold here unread are those
//! admitted within one timeout: at most [`max_unread_bytes`] (128 MiB at the 10 s default,
//! against 512 × 16 MiB per connection without a budget). `node/tests/sync_flood.rs` measures it
//! over QUIC with a validator that floods maximal requests and reads slowly.
//!
//! A refused request gets an empty [`BlockResponse`] at once (the requester asks another peer
//! or retries later), so honest catch-up is slowed, never wedged, and no refusal is a penalty:
//! an honest node far behind asks often.
//!
//! Reads take no lock: the store is shared as `Arc<RocksStore>` and RocksDB reads never wait
//! for the driver's writes. A store read error fails that request only ([`answer`]): it is
//! logged, counted in `bftnode_store_read_errors_total{path="sync"}` and answered with an empty
//! response; the node keeps running.

use crate::driver::SharedStore;
use crate::metrics::Metrics;
use consensus::{BlockRequest, BlockResponse};
use network::{Misbehaviour, NetworkHandle};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storage::Store;
use tracing::{debug, warn};

/// Largest block-sync request accepted, in bytes.
pub const MAX_SYNC_REQUEST_BYTES: usize = 1024;
/// Largest block-sync response accepted or served, in bytes (the network's default cap).
pub const MAX_SYNC_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Requests served at the same time, over all peers (each holds a blocking-pool thread while it
/// reads).
pub const MAX_CONCURRENT: usize = 2;
/// Bytes a peer may draw at once (two full responses).
pub const BUDGET_BURST_BYTES: f64 = 2.0 * MAX_SYNC_RESPONSE_BYTES as f64;
/// Bytes per second a peer's budget refills (one full response every two seconds).
pub const BUDGET_BYTES_PER_SEC: f64 = MAX_SYNC_RESPONSE_BYTES as f64 / 2.0;
/// Requests of one peer that may wait for a slot beside the one being served.
pub const MAX_QUEUED_PER_PEER: usize = 4;
/// A waiting request not started within this long is answered empty: its requester asks
/// another peer after its own timeout (2 s by default, `consensus.sync_timeout_ms`).
pub const MAX_QUEUE_WAIT: Duration = Duration::from_millis(1_000);

/// Most answer bytes one peer can have been handed and not have read yet, when an unread answer
/// is dropped `sync_timeout` after its request arrived: everything admitted within one timeout,
/// i.e. the burst, the refill over the timeout and the one response that overdraws the bucket.
pub fn max_unread_bytes(sync_timeout: Duration) -> f64 {
    BUDGET_BURST_BYTES
        + BUDGET_BYTES_PER_SEC * sync_timeout.as_secs_f64()
        + MAX_SYNC_RESPONSE_BYTES as f64
}

/// A decoded request waiting for, or holding, a slot.
#[derive(Debug)]
struct Job {
    request_id: u64,
    req: BlockRequest,
    /// When it arrived.
    at: Instant,
}

/// One peer's sync budget and waiting requests.
#[derive(Debug)]
struct Budget {
    /// Bytes available (negative: overdrawn by the last response).
    tokens: f64,
    refilled_at: Instant,
    in_flight: bool,
    /// At most [`MAX_QUEUED_PER_PEER`], oldest first.
    queue: VecDeque<Job>,
}

impl Budget {
    fn new(now: Instant) -> Budget {
        Budget {
            tokens: BUDGET_BURST_BYTES,
            refilled_at: now,
            in_flight: false,
            queue: VecDeque::new(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let secs = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + secs * BUDGET_BYTES_PER_SEC).min(BUDGET_BURST_BYTES);
        self.refilled_at = now;
    }
}

/// Budgets and the concurrency count, shared with the serving tasks.
#[derive(Debug, Default)]
struct State {
    /// Keyed by validator index: at most one entry per validator (the network delivers sync
    /// requests from validators only), so the map is bounded by n.
    budgets: HashMap<u16, Budget>,
    serving: usize,
}

/// Why a request was not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The bytes are not a `BlockRequest`.
    Undecodable,
    /// The peer already has a request being served and [`MAX_QUEUED_PER_PEER`] waiting.
    InFlight,
    /// [`MAX_CONCURRENT`] requests are being served and the peer has
    /// [`MAX_QUEUED_PER_PEER`] waiting.
    Busy,
    /// The peer's byte budget is overdrawn.
    OverBudget,
    /// The request waited [`MAX_QUEUE_WAIT`] without a slot.
    Stale,
}

/// Serves block-sync requests off the driver task. Cheap to clone.
#[derive(Clone)]
pub struct SyncServer {
    store: SharedStore,
    net: NetworkHandle,
    metrics: Arc<Metrics>,
    state: Arc<Mutex<State>>,
}

impl SyncServer {
    /// A server reading from `store` and answering through `net`.
    pub fn new(store: SharedStore, net: NetworkHandle, metrics: Arc<Metrics>) -> SyncServer {
        SyncServer {
            store,
            net,
            metrics,
            state: Arc::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit, queue or refuse (see the module doc) request `request_id` from validator
    /// `from`, without IO. A refused request is answered at once with an empty response; an
    /// admitted one is read and answered on the blocking pool, and a queued one when a slot
    /// frees. Must be called inside a tokio runtime.
    pub fn serve(&self, from: u16, request_id: u64, bytes: &[u8]) -> Result<(), Refusal> {
        let admitted = consensus::decode::<BlockRequest>(bytes, MAX_SYNC_REQUEST_BYTES)
            .map_err(|_| Refusal::Undecodable)
            .and_then(|req| {
                let job = Job {
                    request_id,
                    req,
                    at: Instant::now(),
                };
                self.state().admit(from, job)
            });
        match admitted {
            Ok(Some(job)) => {
                let server = self.clone();
                // Admitted: `finish` must run whatever happens to the read.
                tokio::task::spawn_blocking(move || server.run(from, job));
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(refusal) => {
                if refusal == Refusal::Undecodable {
                    self.metrics.invalid_messages.inc();
                    self.net.report(from, Misbehaviour::Undecodable);
                }
                self.refuse(from, request_id, refusal);
                Err(refusal)
            }
        }
    }

    /// Answer `request_id` of `from` empty at once.
    fn refuse(&self, from: u16, request_id: u64, refusal: Refusal) {
        if refusal != Refusal::Undecodable {
            self.metrics.sync_refused.inc();
        }
        debug!(peer = from, ?refusal, "block sync request refused");
        self.net
            .respond(request_id, consensus::encode(&BlockResponse::default()));
    }

    /// On the blocking pool: answer `job` of `from`, then every waiting request the freed slot
    /// starts, until none does.
    fn run(&self, mut from: u16, mut job: Job) {
        loop {
            let resp = answer(&**self.store, &job.req, &self.metrics);
            let bytes = consensus::encode(&resp);
            if !resp.blocks.is_empty() {
                self.metrics.sync_served.inc();
                self.metrics.sync_served_bytes.inc_by(bytes.len() as u64);
            }
            drop(resp);
            let (next, refused) = self.state().finish(from, bytes.len(), Instant::now());
            self.net.respond(job.request_id, bytes);
            for (peer, request_id, refusal) in refused {
                self.refuse(peer, request_id, refusal);
            }
            match next {
                Some((peer, j)) => (from, job) = (peer, j),
                None => return,
            }
        }
    }
}

/// Read the response to `req` from `store` (blocking). A read error fails this request only: it
/// is logged and counted (`store_read_errors{path="sync"}`) and the answer is empty.
pub fn answer(store: &impl Store, req: &BlockRequest, metrics: &Metrics) -> BlockResponse {
    store
        .serve_blocks(req, MAX_SYNC_RESPONSE_BYTES - 1024)
        .unwrap_or_else(|e| {
            metrics.count_store_read_error("sync");
            warn!(
                error = %e,
                target = %req.target,
                "block sync: store read failed; request answered empty"
            );
            BlockResponse::default()
        })
}

impl State {
    /// Admission checks 2–3 of the module doc for `job` of validator `from`: `Ok(Some(job))`
    /// to serve now (it counts as in flight until [`State::finish`]), `Ok(None)` when it waits
    /// in the peer's queue.
    fn admit(&mut self, from: u16, job: Job) -> Result<Option<Job>, Refusal> {
        let now = job.at;
        let busy = self.serving >= MAX_CONCURRENT;
        let b = self.budgets.entry(from).or_insert_with(|| Budget::new(now));
        b.refill(now);
        if b.tokens <= 0.0 {
            return Err(Refusal::OverBudget);
        }
        if b.in_flight || busy {
            if b.queue.len() >= MAX_QUEUED_PER_PEER {
                return Err(if b.in_flight {
                    Refusal::InFlight
                } else {
                    Refusal::Busy
                });
            }
            b.queue.push_back(job);
            return Ok(None);
        }
        b.in_flight = true;
        self.serving += 1;
        Ok(Some(job))
    }

    /// A request of `from` was answered with `bytes` bytes at `now`: charge them, free the
    /// slots, and start the next waiting request, taking the peers in turn after `from`.
    /// Returns it (to serve now) and the waiting requests to answer empty on the way (stale,
    /// or their peer over budget): `(peer, request id, why)`.
    #[allow(clippy::type_complexity)]
    fn finish(
        &mut self,
        from: u16,
        bytes: usize,
        now: Instant,
    ) -> (Option<(u16, Job)>, Vec<(u16, u64, Refusal)>) {
        self.serving = self.serving.saturating_sub(1);
        if let Some(b) = self.budgets.get_mut(&from) {
            b.in_flight = false;
            b.tokens -= bytes as f64;
        }
        let mut refused = Vec::new();
        let mut peers: Vec<u16> = self.budgets.keys().copied().collect();
        peers.sort_unstable();
        let after = peers.partition_point(|p| *p <= from);
        peers.rotate_left(after);
        for peer in peers {
            let Some(b) = self.budgets.get_mut(&peer) else {
                continue;
            };
            if b.in_flight {
                continue;
            }
            while let Some(job) = b.queue.pop_front() {
                if now.saturating_duration_since(job.at) >= MAX_QUEUE_WAIT {
                    refused.push((peer, job.request_id, Refusal::Stale));
                    continue;
                }
                b.refill(now);
                if b.tokens <= 0.0 {
                    refused.push((peer, job.request_id, Refusal::OverBudget));
                    continue;
                }
                b.in_flight = true;
                self.serving += 1;
                return (Some((peer, job)), refused);
            }
        }
        (None, refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(request_id: u64, at: Instant) -> Job {
        Job {
            request_id,
            req: BlockRequest {
                target: consensus::BlockId::default(),
                stop_at: consensus::Height(0),
                max_blocks: 1,
            },
            at,
        }
    }

    /// `Some(true)` served now, `Some(false)` queued, `None` refused.
    fn admit(st: &mut State, from: u16, request_id: u64, at: Instant) -> Result<bool, Refusal> {
        st.admit(from, job(request_id, at)).map(|j| j.is_some())
    }

    fn started(next: &Option<(u16, Job)>) -> Option<(u16, u64)> {
        next.as_ref().map(|(p, j)| (*p, j.request_id))
    }

    #[test]
    fn one_request_in_flight_per_peer_a_global_cap_and_bounded_queues() {
        let now = Instant::now();
        let mut st = State::default();
        assert_eq!(admit(&mut st, 1, 10, now), Ok(true));
        // Peer 1's next requests wait (up to the cap), then are refused.
        for k in 0..MAX_QUEUED_PER_PEER as u64 {
            assert_eq!(admit(&mut st, 1, 11 + k, now), Ok(false));
        }
        assert_eq!(admit(&mut st, 1, 99, now), Err(Refusal::InFlight));
        assert_eq!(admit(&mut st, 2, 20, now), Ok(true));
        // Both slots taken: peer 3 waits too, then is refused beyond its cap.
        for k in 0..MAX_QUEUED_PER_PEER as u64 {
            assert_eq!(admit(&mut st, 3, 30 + k, now), Ok(false));
        }
        assert_eq!(admit(&mut st, 3, 98, now), Err(Refusal::Busy));
        // Peer 1's answer frees a slot: the peers are taken in turn after 1, so peer 2 (in
        // flight) is skipped and peer 3's oldest request starts.
        let (next, refused) = st.finish(1, 100, now);
        assert_eq!(started(&next), Some((3, 30)));
        assert!(refused.is_empty());
        // Peer 2 done: peer 3 is in flight, so peer 1's oldest waiting request starts.
        let (next, _) = st.finish(2, 100, now);
        assert_eq!(started(&next), Some((1, 11)));
        assert_eq!(st.serving, MAX_CONCURRENT);
    }

    #[test]
    fn a_request_waiting_too_long_is_answered_empty() {
        let t0 = Instant::now();
        let mut st = State::default();
        assert_eq!(admit(&mut st, 1, 1, t0), Ok(true));
        assert_eq!(admit(&mut st, 1, 2, t0), Ok(false));
        let late = t0 + MAX_QUEUE_WAIT + Duration::from_millis(1);
        assert_eq!(admit(&mut st, 1, 3, late), Ok(false));
        let (next, refused) = st.finish(1, 100, late);
        assert_eq!(refused, vec![(1, 2, Refusal::Stale)]);
        assert_eq!(started(&next), Some((1, 3)));
        let (next, refused) = st.finish(1, 100, late);
        assert!(next.is_none() && refused.is_empty());
        assert_eq!(st.serving, 0);
    }

    #[test]
    fn a_peer_asking_nonstop_is_admitted_at_most_max_unread_bytes_per_timeout() {
        // Ask every millisecond, each answer full size and answered at once, for several
        // timeouts; no window of one timeout admits more than the bound.
        let timeout = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut st = State::default();
        let mut admitted = Vec::new();
        for ms in 0..35_000 {
            let now = t0 + Duration::from_millis(ms);
            if admit(&mut st, 7, ms, now) == Ok(true) {
                st.finish(7, MAX_SYNC_RESPONSE_BYTES, now);
                admitted.push(now);
            }
        }
        let bound = max_unread_bytes(timeout);
        let mut most = 0.0f64;
        for (i, &start) in admitted.iter().enumerate() {
            let n = admitted[i..]
                .iter()
                .take_while(|&&t| t < start + timeout)
                .count();
            most = most.max((n * MAX_SYNC_RESPONSE_BYTES) as f64);
        }
        assert!(most <= bound, "{most} bytes admitted within one timeout");
        // And the bound is not loose by more than one response.
        assert!(
            most + MAX_SYNC_RESPONSE_BYTES as f64 > bound - 1.0,
            "{most} vs {bound}"
        );
    }

    #[test]
    fn an_overdrawn_budget_refuses_until_it_refills() {
        let now = Instant::now();
        let mut st = State::default();
        // Two full responses back to back use up the burst; a third is refused.
        for k in 0..2 {
            assert_eq!(admit(&mut st, 7, k, now), Ok(true));
            st.finish(7, MAX_SYNC_RESPONSE_BYTES, now);
        }
        assert_eq!(admit(&mut st, 7, 2, now), Err(Refusal::OverBudget));
        // Another peer is unaffected.
        assert_eq!(admit(&mut st, 8, 3, now), Ok(true));
        st.finish(8, 0, now);
        // A response larger than what is left overdraws once: 8 MiB left after 1 s of refill,
        // 16 MiB charged, so the peer waits until the overdraft is repaid.
        let soon = now + Duration::from_secs(1);
        assert_eq!(admit(&mut st, 7, 4, soon), Ok(true));
        st.finish(7, MAX_SYNC_RESPONSE_BYTES, soon);
        assert_eq!(
            admit(&mut st, 7, 5, soon + Duration::from_millis(500)),
            Err(Refusal::OverBudget)
        );
        let later = soon + Duration::from_secs(2);
        assert_eq!(admit(&mut st, 7, 6, later), Ok(true));
    }
}
