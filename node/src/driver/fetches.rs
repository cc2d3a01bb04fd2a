//! Our outstanding block-sync requests: bounded in number ([`MAX_FETCHES`]) and in age
//! ([`FETCH_EXPIRY`]), so a peer that never answers cannot make the map grow.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Most of our block-sync requests awaiting a response; a request beyond it drops the oldest
/// (reported to the core as failed).
pub const MAX_FETCHES: usize = 64;

/// Our block-sync request whose response has not arrived after this long is dropped (reported to
/// the core as failed). The network answers every request within its sync timeout (10 s by
/// default); this is the backstop if that answer is lost.
pub const FETCH_EXPIRY: Duration = Duration::from_secs(30);

/// Our block-sync requests awaiting a response: network request id → (core request id, when
/// sent). At most [`MAX_FETCHES`] entries; each is dropped after [`FETCH_EXPIRY`].
#[derive(Debug, Default)]
pub struct Fetches {
    map: HashMap<u64, (u64, Instant)>,
}

impl Fetches {
    /// Track network request `nid` for core request `core_id`, sent at `now`. Returns the core
    /// ids of the oldest requests dropped to stay within [`MAX_FETCHES`].
    pub fn insert(&mut self, nid: u64, core_id: u64, now: Instant) -> Vec<u64> {
        let mut dropped = Vec::new();
        while self.map.len() >= MAX_FETCHES {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(n, _)| *n);
            match oldest.and_then(|n| self.map.remove(&n)) {
                Some((id, _)) => dropped.push(id),
                None => break,
            }
        }
        self.map.insert(nid, (core_id, now));
        dropped
    }

    /// The response to `nid` arrived: its core id, if it is still tracked.
    pub fn remove(&mut self, nid: u64) -> Option<u64> {
        self.map.remove(&nid).map(|(id, _)| id)
    }

    /// Drop the requests sent [`FETCH_EXPIRY`] or more before `now`; returns their core ids.
    pub fn expire(&mut self, now: Instant) -> Vec<u64> {
        let mut dropped = Vec::new();
        self.map.retain(|_, (id, at)| {
            let keep = now.saturating_duration_since(*at) < FETCH_EXPIRY;
            if !keep {
                dropped.push(*id);
            }
            keep
        });
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
