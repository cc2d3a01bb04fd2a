//! The store shared by the node's tasks, and the signal that it is closed.
//!
//! The driver is the only writer ([`RocksStore::write_shared`]); the RPC server, the sync
//! server and the pruner read through `&self`, on tokio's blocking pool. No lock: readers never
//! wait for a write ([`crate::driver`], "The store and blocking calls").
//!
//! A blocking read keeps its own reference and may outlive the task that started it, so the
//! database closes when the *last* reference goes, on whichever thread drops it. Stopping a node
//! must not return before that: a restart in the same process (tests, `bftnode reset` after a
//! stop) would find RocksDB's lock file still held. [`OpenStore`] therefore carries a
//! [`StoreClosed`] that fires only after the database itself was dropped.

use std::ops::Deref;
use std::sync::Arc;
use storage::RocksStore;
use tokio::sync::oneshot;

/// The store shared by every task of one node: `Arc<OpenStore>`, dereferencing to
/// [`RocksStore`].
pub type SharedStore = Arc<OpenStore>;

/// A [`RocksStore`] that signals its [`StoreClosed`] once the database is closed.
pub struct OpenStore {
    // Fields drop in declaration order: the database closes (and releases its lock file)
    // before `closed` is dropped, which is what wakes the waiting [`StoreClosed`].
    store: RocksStore,
    _closed: oneshot::Sender<()>,
}

/// Resolves once the [`OpenStore`] it was made with has been dropped and its database closed.
pub struct StoreClosed(oneshot::Receiver<()>);

impl OpenStore {
    /// Share `store`; the [`StoreClosed`] fires when the last reference is gone.
    pub fn share(store: RocksStore) -> (SharedStore, StoreClosed) {
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(OpenStore { store, _closed: tx });
        (shared, StoreClosed(rx))
    }
}

impl Deref for OpenStore {
    type Target = RocksStore;
    fn deref(&self) -> &RocksStore {
        &self.store
    }
}

impl StoreClosed {
    /// Wait until the database is closed. Never errs: a dropped sender *is* the signal.
    pub async fn wait(self) {
        let _ = self.0.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signal fires only after the last reference is dropped, on another thread too, and
    /// the database can then be opened again from the same process.
    #[tokio::test]
    async fn closed_fires_after_the_last_reference_and_the_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = RocksStore::open(&path, storage::RocksOptions::default()).unwrap();
        let (shared, closed) = OpenStore::share(store);
        let reader = shared.clone();
        drop(shared);
        let mut closed = std::pin::pin!(closed.wait());
        let pending = futures::poll!(closed.as_mut());
        assert!(pending.is_pending(), "a reader still holds the store");
        let t = std::thread::spawn(move || drop(reader));
        closed.await;
        // Before joining the thread that dropped it: the signal alone must mean "closed".
        RocksStore::open(&path, storage::RocksOptions::default())
            .expect("the lock file is released once closed");
        t.join().unwrap();
    }
}
