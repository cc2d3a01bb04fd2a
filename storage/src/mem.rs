//! In-memory store for the deterministic simulator.

use crate::SCHEMA_VERSION;
use crate::engine::{Cf, Engine, RawOp, Visit, check_schema};
use crate::error::StoreError;
use std::collections::BTreeMap;

/// An in-memory [`crate::Store`]: one ordered map per column family, holding the same encoded
/// bytes as [`crate::RocksStore`]. `Clone` copies the whole state, which is how the simulator
/// models a crash (keep the store, drop the core). Every write counts as durable: a simulated
/// crash loses nothing that `write` accepted, synced or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemStore {
    cfs: [BTreeMap<Vec<u8>, Vec<u8>>; Cf::ALL.len()],
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemStore {
    /// An empty store stamped with [`SCHEMA_VERSION`].
    pub fn new() -> Self {
        let mut s = MemStore {
            cfs: Default::default(),
        };
        // Writing to a map cannot fail and the fresh store has no version yet.
        let _ = check_schema(&mut s, SCHEMA_VERSION);
        s
    }

    /// **Testing only**: write raw bytes into a column family, bypassing every invariant (used
    /// to plant corrupt values and foreign schema versions).
    #[doc(hidden)]
    pub fn raw_put(&mut self, cf: Cf, key: &[u8], value: &[u8]) {
        self.cfs[cf.index()].insert(key.to_vec(), value.to_vec());
    }

    /// **Testing only**: delete a key of a column family, bypassing every invariant (used to
    /// make a store look as if an older version had written it).
    #[doc(hidden)]
    pub fn raw_delete(&mut self, cf: Cf, key: &[u8]) {
        self.cfs[cf.index()].remove(key);
    }
}

impl Engine for MemStore {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.cfs[cf.index()].get(key).cloned())
    }

    fn scan(&self, cf: Cf, reverse: bool, visit: &mut Visit<'_>) -> Result<(), StoreError> {
        if !reverse {
            return self.scan_from(cf, &[], visit);
        }
        for (k, v) in self.cfs[cf.index()].iter().rev() {
            if !visit(k, v)? {
                break;
            }
        }
        Ok(())
    }

    fn scan_from(&self, cf: Cf, start: &[u8], visit: &mut Visit<'_>) -> Result<(), StoreError> {
        for (k, v) in self.cfs[cf.index()].range(start.to_vec()..) {
            if !visit(k, v)? {
                break;
            }
        }
        Ok(())
    }

    fn apply(&mut self, ops: Vec<RawOp>, _sync: bool) -> Result<(), StoreError> {
        for op in ops {
            match op {
                RawOp::Put(cf, k, v) => {
                    self.cfs[cf.index()].insert(k, v);
                }
                RawOp::Delete(cf, k) => {
                    self.cfs[cf.index()].remove(&k);
                }
                RawOp::DeleteRange(cf, start, end) => {
                    let map = &mut self.cfs[cf.index()];
                    let doomed: Vec<Vec<u8>> =
                        map.range(start..end).map(|(k, _)| k.clone()).collect();
                    for k in doomed {
                        map.remove(&k);
                    }
                }
            }
        }
        Ok(())
    }

    fn last_write_micros(&self) -> u64 {
        0
    }
}
