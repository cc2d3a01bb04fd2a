//! Serving block-sync requests off the driver task, within a per-peer budget (issue 7 finding 5).
//!
//! A request (≤ [`MAX_SYNC_REQUEST_BYTES`]) can ask for up to 500 blocks / 16 MiB: reading and
//! encoding that inline would stall the consensus driver. The driver hands each request to
//! [`SyncServer::serve`], which decides at once (no IO) and, if admitted, reads the blocks on
//! tokio's blocking pool and answers through the network handle.
//!
//! Admission, cheapest check first:
//! 1. the request decodes (else the peer is reported `Undecodable`);
//! 2. the peer has no other request being served (one in flight per peer);
//! 3. at most [`MAX_CONCURRENT`] requests are served at once, over all peers;
//! 4. the peer's byte budget is not overdrawn: a token bucket of [`BUDGET_BURST_BYTES`],
//!    refilled at [`BUDGET_BYTES_PER_SEC`]; each response's size is charged after it is read
//!    (it may overdraw the bucket once, then the peer waits for the refill).
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
use std::collections::HashMap;
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

/// Most answer bytes one peer can have been handed and not have read yet, when an unread answer
/// is dropped `sync_timeout` after its request arrived: everything admitted within one timeout,
/// i.e. the burst, the refill over the timeout and the one response that overdraws the bucket.
pub fn max_unread_bytes(sync_timeout: Duration) -> f64 {
    BUDGET_BURST_BYTES
        + BUDGET_BYTES_PER_SEC * sync_timeout.as_secs_f64()
        + MAX_SYNC_RESPONSE_BYTES as f64
}

/// One peer's sync budget.
#[derive(Debug)]
struct Budget {
    /// Bytes available (negative: overdrawn by the last response).
    tokens: f64,
    refilled_at: Instant,
    in_flight: bool,
}

impl Budget {
    fn new(now: Instant) -> Budget {
        Budget {
            tokens: BUDGET_BURST_BYTES,
            refilled_at: now,
            in_flight: false,
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
    /// The peer already has a request being served.
    InFlight,
    /// [`MAX_CONCURRENT`] requests are being served.
    Busy,
    /// The peer's byte budget is overdrawn.
    OverBudget,
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

    /// Admit or refuse (see the module doc) request `request_id` from validator `from`, without
    /// IO. A refused request is answered at once with an empty response; an admitted one is read
    /// and answered on the blocking pool. Must be called inside a tokio runtime.
    pub fn serve(&self, from: u16, request_id: u64, bytes: &[u8]) -> Result<(), Refusal> {
        let admitted = consensus::decode::<BlockRequest>(bytes, MAX_SYNC_REQUEST_BYTES)
            .map_err(|_| Refusal::Undecodable)
            .and_then(|req| self.state().admit(from, Instant::now()).map(|()| req));
        let req = match admitted {
            Ok(req) => req,
            Err(refusal) => {
                if refusal == Refusal::Undecodable {
                    self.metrics.invalid_messages.inc();
                    self.net.report(from, Misbehaviour::Undecodable);
                } else {
                    self.metrics.sync_refused.inc();
                }
                debug!(peer = from, ?refusal, "block sync request refused");
                self.net
                    .respond(request_id, consensus::encode(&BlockResponse::default()));
                return Err(refusal);
            }
        };
        let server = self.clone();
        // Admitted: `finish` must run whatever happens to the read.
        tokio::task::spawn_blocking(move || {
            let resp = answer(&**server.store, &req, &server.metrics);
            let bytes = consensus::encode(&resp);
            drop(resp);
            server.state().finish(from, bytes.len());
            server.net.respond(request_id, bytes);
        });
        Ok(())
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
    /// Admission checks 2–4 of the module doc for validator `from` at `now`; on success the
    /// request counts as in flight until [`State::finish`].
    fn admit(&mut self, from: u16, now: Instant) -> Result<(), Refusal> {
        let serving = self.serving;
        let b = self.budgets.entry(from).or_insert_with(|| Budget::new(now));
        if b.in_flight {
            return Err(Refusal::InFlight);
        }
        if serving >= MAX_CONCURRENT {
            return Err(Refusal::Busy);
        }
        b.refill(now);
        if b.tokens <= 0.0 {
            return Err(Refusal::OverBudget);
        }
        b.in_flight = true;
        self.serving += 1;
        Ok(())
    }

    /// A request of `from` was answered with `bytes` bytes: charge them, free the slots.
    fn finish(&mut self, from: u16, bytes: usize) {
        self.serving = self.serving.saturating_sub(1);
        if let Some(b) = self.budgets.get_mut(&from) {
            b.in_flight = false;
            b.tokens -= bytes as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_in_flight_per_peer_and_a_global_cap() {
        let now = Instant::now();
        let mut st = State::default();
        assert_eq!(st.admit(1, now), Ok(()));
        assert_eq!(st.admit(1, now), Err(Refusal::InFlight));
        assert_eq!(st.admit(2, now), Ok(()));
        assert_eq!(st.admit(3, now), Err(Refusal::Busy));
        st.finish(1, 100);
        assert_eq!(st.admit(3, now), Ok(()));
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
            if st.admit(7, now).is_ok() {
                st.finish(7, MAX_SYNC_RESPONSE_BYTES);
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
        for _ in 0..2 {
            assert_eq!(st.admit(7, now), Ok(()));
            st.finish(7, MAX_SYNC_RESPONSE_BYTES);
        }
        assert_eq!(st.admit(7, now), Err(Refusal::OverBudget));
        // Another peer is unaffected.
        assert_eq!(st.admit(8, now), Ok(()));
        st.finish(8, 0);
        // A response larger than what is left overdraws once: 8 MiB left after 1 s of refill,
        // 16 MiB charged, so the peer waits until the overdraft is repaid.
        let soon = now + Duration::from_secs(1);
        assert_eq!(st.admit(7, soon), Ok(()));
        st.finish(7, MAX_SYNC_RESPONSE_BYTES);
        assert_eq!(
            st.admit(7, soon + Duration::from_millis(500)),
            Err(Refusal::OverBudget)
        );
        let later = soon + Duration::from_secs(2);
        assert_eq!(st.admit(7, later), Ok(()));
    }
}
