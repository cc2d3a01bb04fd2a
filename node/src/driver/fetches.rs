//! Our outstanding block-sync requests: bounded in number ([`MAX_FETCHES`] for the core's, a
//! cap per map) and in age ([`FETCH_EXPIRY`]), so a peer that never answers cannot make a map
//! grow. The core's requests carry its request id; the compact relay's (`driver::relay`) carry
//! the proposal waiting for its block.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Most of our block-sync requests awaiting a response; a request beyond it drops the oldest
/// (reported to the core as failed).
pub const MAX_FETCHES: usize = 64;

/// Our block-sync request whose response has not arrived after this long is dropped (reported to
/// the core as failed). The network answers every request within its sync timeout (10 s by
/// default); this is the backstop if that answer is lost.
pub const FETCH_EXPIRY: Duration = Duration::from_secs(30);

/// Our block-sync requests awaiting a response: network request id → (what the response is
/// for, when sent). At most `cap` entries; each is dropped after [`FETCH_EXPIRY`].
#[derive(Debug)]
pub struct Fetches<T = u64> {
    map: HashMap<u64, (T, Instant)>,
    cap: usize,
}

impl Default for Fetches<u64> {
    /// The core's requests: at most [`MAX_FETCHES`].
    fn default() -> Self {
        Fetches::with_cap(MAX_FETCHES)
    }
}

impl<T> Fetches<T> {
    /// An empty map holding at most `cap` (≥ 1) requests.
    pub fn with_cap(cap: usize) -> Self {
        Fetches {
            map: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// Track network request `nid` for `what`, sent at `now`. Returns what the oldest requests
    /// were for, dropped to stay within the cap.
    pub fn insert(&mut self, nid: u64, what: T, now: Instant) -> Vec<T> {
        let mut dropped = Vec::new();
        while self.map.len() >= self.cap {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(n, _)| *n);
            match oldest.and_then(|n| self.map.remove(&n)) {
                Some((what, _)) => dropped.push(what),
                None => break,
            }
        }
        self.map.insert(nid, (what, now));
        dropped
    }

    /// The response to `nid` arrived: what it is for, if it is still tracked.
    pub fn remove(&mut self, nid: u64) -> Option<T> {
        self.map.remove(&nid).map(|(what, _)| what)
    }

    /// Drop the requests sent [`FETCH_EXPIRY`] or more before `now`; returns what they were for.
    pub fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut dropped = Vec::new();
        let mut kept = HashMap::with_capacity(self.map.len());
        for (nid, (what, at)) in self.map.drain() {
            if now.saturating_duration_since(at) < FETCH_EXPIRY {
                kept.insert(nid, (what, at));
            } else {
                dropped.push(what);
            }
        }
        self.map = kept;
        dropped
    }

    /// Requests tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is tracked.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outstanding_fetches_are_bounded_and_expire() {
        let t0 = Instant::now();
        let mut f = Fetches::default();
        for nid in 0..MAX_FETCHES as u64 {
            let at = t0 + Duration::from_millis(nid);
            assert!(f.insert(nid, 1000 + nid, at).is_empty());
        }
        // One more drops the oldest (its core request fails), never grows the map.
        let late = t0 + Duration::from_secs(1);
        assert_eq!(f.insert(500, 1500, late), vec![1000]);
        assert_eq!(f.len(), MAX_FETCHES);
        assert_eq!(f.remove(0), None, "dropped: a late response is ignored");
        assert_eq!(f.remove(1), Some(1001));
        // Responses that never come: everything sent FETCH_EXPIRY ago goes.
        let mut expired = f.expire(t0 + FETCH_EXPIRY + Duration::from_millis(100));
        expired.sort();
        assert_eq!(
            expired,
            (1002..1000 + MAX_FETCHES as u64).collect::<Vec<_>>()
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f.expire(late + FETCH_EXPIRY), vec![1500]);
        assert!(f.is_empty());
    }
}
