//! The key/value layer both stores share, and the one implementation of the [`Store`]
//! semantics on top of it. [`crate::MemStore`] and [`crate::RocksStore`] only provide raw
//! get / scan / atomic apply, so the two cannot drift apart: the conformance suite checks the
//! backends, this file holds the logic.
//!
//! Layout (one column family each, see [`Cf`]):
//! - `blocks`: id (32 B) → `encode(Block)`
//! - `committed`: height (8 B big-endian, so iteration order = height order) → id (32 B)
//! - `pending`: height (8 B BE) ‖ id (32 B) → empty; every stored block above the committed tip.
//!   When the tip passes a height, the bodies of that height's other blocks are deleted.
//! - `safety`: `b"safety"` → `encode(SafetyData)`
//! - `evidence`: `Evidence::id()` (32 B) → `encode(Evidence)`
//! - `app`: application key → application value (raw bytes)
//! - `txindex`: tx hash (32 B) → `encode(TxLocation)`
//! - `recent`: expiry height (8 B BE) ‖ tx hash (32 B) → empty: the committed transactions
//!   that have not expired yet (the application's replay guard, [`Op::RecordRecentTx`])
//! - `meta`: `b"schema_version"` → u32 LE; `b"chain_id"` → UTF-8; `b"convictions"` →
//!   `encode(Vec<Option<Height>>)` (per validator index, the height of its first conviction);
//!   `b"retained_from"` → u64 LE, the lowest height above genesis whose committed body is kept
//!   (absent: 1, nothing pruned; see [`Op::PruneBlocks`])

use crate::batch::{Op, TxLocation, WriteBatch};
use crate::error::StoreError;
use crate::{HARD_CAP, Store};
use borsh::BorshDeserialize;
use consensus::{
    Block, BlockId, BlockRequest, BlockResponse, Digest, Evidence, Height, SafetyData, encode,
};
use std::collections::{BTreeMap, BTreeSet};

/// Upper bound on one stored value when decoding (64 MiB): far above any block the network
/// accepts (4 MiB messages), low enough that a corrupt length cannot exhaust memory.
pub(crate) const MAX_STORED_VALUE: usize = 64 * 1024 * 1024;

/// Key of the safety record in [`Cf::Safety`].
pub(crate) const SAFETY_KEY: &[u8] = b"safety";
/// Key of the schema version in [`Cf::Meta`].
pub(crate) const SCHEMA_KEY: &[u8] = b"schema_version";
/// Key of the chain id in [`Cf::Meta`].
pub(crate) const CHAIN_ID_KEY: &[u8] = b"chain_id";
/// Key of the conviction record in [`Cf::Meta`].
pub(crate) const CONVICTIONS_KEY: &[u8] = b"convictions";
/// Key of the pruning floor in [`Cf::Meta`] ([`Op::PruneBlocks`]).
pub(crate) const RETAINED_FROM_KEY: &[u8] = b"retained_from";
/// Key of the replay guard's floor in [`Cf::Meta`]: the highest `below` of any
/// [`Op::ForgetExpiredTxs`] written (8 bytes, little-endian; 0 in a new store). Every range
/// deletion in [`Cf::Recent`] lies below it, so no key at or above it is covered by one (see
/// [`Engine::get_many_uncovered`]). Absent in a store created before it existed, whose earlier
/// range deletions are unknown: that store never records one and is read as before.
pub(crate) const RECENT_FLOOR_KEY: &[u8] = b"recent_floor";

/// The column families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cf {
    /// id → block.
    Blocks,
    /// height (BE) → id.
    Committed,
    /// height (BE) ‖ id → empty: blocks above the committed tip.
    Pending,
    /// The single safety record.
    Safety,
    /// evidence id → evidence.
    Evidence,
    /// Application key/value.
    App,
    /// tx hash → location.
    TxIndex,
    /// expiry height (BE) ‖ tx hash → empty: committed transactions not yet expired.
    Recent,
    /// Schema version, chain id.
    Meta,
}

impl Cf {
    /// Whether the column family is read mostly by exact key (so bloom filters pay off),
    /// rather than scanned in key order (`committed`, `pending`) or tiny (`safety`, `meta`).
    pub fn point_lookups(self) -> bool {
        matches!(
            self,
            Cf::Blocks | Cf::Evidence | Cf::App | Cf::TxIndex | Cf::Recent
        )
    }

    /// Whether the column family's SST index and filter blocks are read through the bounded
    /// block cache rather than held in memory: only for the transaction index, which grows
    /// with the chain and which no hot path reads (`GET /tx` does; the replay guard reads
    /// [`Cf::Recent`]).
    pub fn cached_filters(self) -> bool {
        matches!(self, Cf::TxIndex)
    }

    /// Every column family, in a fixed order.
    pub const ALL: [Cf; 9] = [
        Cf::Blocks,
        Cf::Committed,
        Cf::Pending,
        Cf::Safety,
        Cf::Evidence,
        Cf::App,
        Cf::TxIndex,
        Cf::Recent,
        Cf::Meta,
    ];
    /// The RocksDB column family name.
    pub fn name(self) -> &'static str {
        match self {
            Cf::Blocks => "blocks",
            Cf::Committed => "committed",
            Cf::Pending => "pending",
            Cf::Safety => "safety",
            Cf::Evidence => "evidence",
            Cf::App => "app",
            Cf::TxIndex => "txindex",
            Cf::Recent => "recent",
            Cf::Meta => "meta",
        }
    }
    /// Position in [`Cf::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A raw mutation of one column family (crate-internal: the module is private).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawOp {
    /// Set `key` to `value`.
    Put(Cf, Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Cf, Vec<u8>),
    /// Remove every key in `[start, end)`. [`plan`] emits it after dropping the batch's own
    /// earlier puts into the range, so an engine may order it before any other op of its column
    /// family (the RocksDB engine sorts by start key) and the batch still means what it meant.
    DeleteRange(Cf, Vec<u8>, Vec<u8>),
}

impl RawOp {
    /// Column family and key (a range's start): the order in which a batch is handed to the
    /// engine.
    #[cfg_attr(not(feature = "rocks"), allow(dead_code))]
    pub(crate) fn target(&self) -> (usize, &[u8]) {
        match self {
            RawOp::Put(cf, k, _) | RawOp::Delete(cf, k) | RawOp::DeleteRange(cf, k, _) => {
                (cf.index(), k)
            }
        }
    }
}

/// Visitor for [`Engine::scan`]: return `Ok(false)` to stop.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool, StoreError> + 'a;

pub(crate) mod sealed {
    use super::{Cf, RawOp, StoreError, Visit};

    /// Raw ordered key/value access per column family. Sealed: implemented only by this crate's
    /// stores.
    pub trait Engine: Send {
        /// The value at `key`, if any.
        fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
        /// The values at `keys`, one result per key, in order: [`Engine::get`] of each, which
        /// an engine may answer in one batch (RocksDB's batched `MultiGet`: one pass over the
        /// memtables and each file's index and bloom filter for all the keys).
        fn get_many(&self, cf: Cf, keys: &[&[u8]]) -> Vec<Result<Option<Vec<u8>>, StoreError>> {
            keys.iter().map(|k| self.get(cf, k)).collect()
        }
        /// [`Engine::get_many`] for keys that no range deletion covers; for a covered key the
        /// answer may be its value from before the deletion. An engine may then skip the range
        /// deletions: RocksDB's `MultiGet` bypasses a memtable's bloom filter while that
        /// memtable holds a range tombstone and searches its skip list for every key (2.4 µs
        /// per absent key with 1,000,000 entries, `cargo bench --workspace --bench store --
        /// recent_lookup`), unless told to ignore range deletions.
        fn get_many_uncovered(
            &self,
            cf: Cf,
            keys: &[&[u8]],
        ) -> Vec<Result<Option<Vec<u8>>, StoreError>> {
            self.get_many(cf, keys)
        }
        /// Visit entries in key order (descending if `reverse`) until `visit` returns false.
        fn scan(&self, cf: Cf, reverse: bool, visit: &mut Visit<'_>) -> Result<(), StoreError>;
        /// Visit entries with keys `>= start` in ascending order until `visit` returns false.
        /// Seeks to `start` rather than stepping over what lies below it (in RocksDB, the
        /// deletion tombstones of a column family whose front keeps being deleted).
        fn scan_from(&self, cf: Cf, start: &[u8], visit: &mut Visit<'_>) -> Result<(), StoreError>;
        /// Apply all `ops` atomically, durably if `sync`.
        fn apply(&mut self, ops: Vec<RawOp>, sync: bool) -> Result<(), StoreError>;
        /// Wall-clock duration of the last [`Engine::apply`], in microseconds.
        fn last_write_micros(&self) -> u64;
    }
}
pub(crate) use sealed::Engine;

/// Big-endian height key.
pub(crate) fn height_key(h: Height) -> [u8; 8] {
    h.0.to_be_bytes()
}

/// `expires_at ‖ hash` key of the `recent` column family: ordered by expiry, so everything that
/// expired is one key range.
fn recent_key(expires_at: Height, hash: &Digest) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(&height_key(expires_at));
    k.extend_from_slice(&hash.0);
    k
}

/// `height ‖ id` key of the pending index.
fn pending_key(h: Height, id: &BlockId) -> Vec<u8> {
    let mut k = Vec::with_capacity(40);
    k.extend_from_slice(&height_key(h));
    k.extend_from_slice(&id.0);
    k
}

fn corrupt(cf: Cf, key: &[u8], detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        cf: cf.name(),
        key: hex::encode(key),
        detail: detail.to_string(),
    }
}

/// Decode a stored value of column family `cf` at `key`.
pub(crate) fn decode_value<T: BorshDeserialize>(
    cf: Cf,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    consensus::decode(bytes, MAX_STORED_VALUE).map_err(|e| corrupt(cf, key, e))
}

fn digest_from(cf: Cf, key: &[u8], bytes: &[u8]) -> Result<Digest, StoreError> {
    let a: [u8; 32] = bytes
        .try_into()
        .map_err(|_| corrupt(cf, key, format!("expected 32 bytes, got {}", bytes.len())))?;
    Ok(Digest(a))
}

fn height_from(cf: Cf, key: &[u8]) -> Result<Height, StoreError> {
    let a: [u8; 8] = key
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| corrupt(cf, key, "height key shorter than 8 bytes"))?;
    Ok(Height(u64::from_be_bytes(a)))
}

/// The committed tip: the last entry of `committed`.
fn tip<E: Engine>(e: &E) -> Result<Option<(Height, BlockId)>, StoreError> {
    let mut out = None;
    e.scan(Cf::Committed, true, &mut |k, v| {
        if k.len() != 8 {
            return Err(corrupt(Cf::Committed, k, "height key must be 8 bytes"));
        }
        out = Some((
            height_from(Cf::Committed, k)?,
            digest_from(Cf::Committed, k, v)?,
        ));
        Ok(false)
    })?;
    Ok(out)
}

fn get_block<E: Engine>(e: &E, id: &BlockId) -> Result<Option<(Block, usize)>, StoreError> {
    match e.get(Cf::Blocks, &id.0)? {
        None => Ok(None),
        Some(bytes) => {
            let len = bytes.len();
            Ok(Some((decode_value(Cf::Blocks, &id.0, &bytes)?, len)))
        }
    }
}

/// The pruning floor: the lowest height above genesis whose committed body is kept (1 when
/// nothing was pruned).
fn retained_from<E: Engine>(e: &E) -> Result<Height, StoreError> {
    Ok(Height(
        meta_height(e, RETAINED_FROM_KEY)?.map_or(1, |h| h.0.max(1)),
    ))
}

/// The height stored at `key` of [`Cf::Meta`] (8 bytes, little-endian), if any.
fn meta_height<E: Engine>(e: &E, key: &[u8]) -> Result<Option<Height>, StoreError> {
    match e.get(Cf::Meta, key)? {
        None => Ok(None),
        Some(v) => {
            let a: [u8; 8] = v.as_slice().try_into().map_err(|_| {
                corrupt(Cf::Meta, key, format!("expected 8 bytes, got {}", v.len()))
            })?;
            Ok(Some(Height(u64::from_le_bytes(a))))
        }
    }
}

/// Raw ops of [`Op::PruneBlocks`]: delete the committed bodies in `[from, below)`, with
/// `below` clamped to the committed tip `tip` (never pruned), and record the new floor.
/// Returns the new floor.
fn plan_prune<E: Engine>(
    e: &E,
    from: Height,
    below: Height,
    tip: Option<Height>,
    raw: &mut Vec<RawOp>,
) -> Result<Height, StoreError> {
    let below = Height(below.0.min(tip.map_or(0, |t| t.0)));
    if below <= from {
        return Ok(from);
    }
    e.scan_from(Cf::Committed, &height_key(from), &mut |k, v| {
        if height_from(Cf::Committed, k)? >= below {
            return Ok(false);
        }
        raw.push(RawOp::Delete(Cf::Blocks, v.to_vec()));
        Ok(true)
    })?;
    raw.push(RawOp::Put(
        Cf::Meta,
        RETAINED_FROM_KEY.to_vec(),
        below.0.to_le_bytes().to_vec(),
    ));
    Ok(below)
}

/// Translate a batch into raw ops, checking commit conflicts against the store and within the
/// batch. Reads only; nothing is written if this fails.
fn plan<E: Engine>(e: &E, batch: WriteBatch) -> Result<Vec<RawOp>, StoreError> {
    let old_tip = tip(e)?.map(|(h, _)| h);
    let mut new_tip = old_tip;
    let mut commits: BTreeMap<Height, BlockId> = BTreeMap::new();
    let mut new_pending: BTreeSet<(Height, BlockId)> = BTreeSet::new();
    let mut raw = Vec::with_capacity(batch.ops.len() + 4);
    let mut floor: Option<Height> = None;
    // The replay guard's floor once read or raised in this batch (`Some(None)`: a store
    // without one).
    let mut recent_floor: Option<Option<Height>> = None;
    for op in batch.ops {
        match op {
            Op::PutSafety(s) => raw.push(RawOp::Put(Cf::Safety, SAFETY_KEY.to_vec(), encode(&s))),
            Op::PutBlock { id, block } => {
                new_pending.insert((block.height, id));
                raw.push(RawOp::Put(Cf::Blocks, id.0.to_vec(), encode(&block)));
            }
            Op::Commit { height, id } => {
                let hk = height_key(height);
                let existing = match commits.get(&height) {
                    Some(x) => Some(*x),
                    None => match e.get(Cf::Committed, &hk)? {
                        Some(v) => Some(digest_from(Cf::Committed, &hk, &v)?),
                        None => None,
                    },
                };
                match existing {
                    Some(existing) if existing != id => {
                        return Err(StoreError::ConflictingCommit {
                            height,
                            existing,
                            new: id,
                        });
                    }
                    _ => {}
                }
                commits.insert(height, id);
                new_tip = Some(new_tip.map_or(height, |t| t.max(height)));
                raw.push(RawOp::Put(Cf::Committed, hk.to_vec(), id.0.to_vec()));
            }
            Op::PutEvidence(ev) => {
                raw.push(RawOp::Put(Cf::Evidence, ev.id().0.to_vec(), encode(&ev)))
            }
            Op::PutConvictions(c) => {
                raw.push(RawOp::Put(Cf::Meta, CONVICTIONS_KEY.to_vec(), encode(&c)))
            }
            Op::AppPut { key, value } => raw.push(RawOp::Put(Cf::App, key, value)),
            Op::AppDelete { key } => raw.push(RawOp::Delete(Cf::App, key)),
            Op::IndexTx { hash, location } => {
                raw.push(RawOp::Put(Cf::TxIndex, hash.0.to_vec(), encode(&location)))
            }
            Op::RecordRecentTx { expires_at, hash } => raw.push(RawOp::Put(
                Cf::Recent,
                recent_key(expires_at, &hash),
                Vec::new(),
            )),
            Op::ForgetExpiredTxs { below } => {
                let end = height_key(below).to_vec();
                raw.retain(|op| !matches!(op, RawOp::Put(Cf::Recent, k, _) if *k < end));
                raw.push(RawOp::DeleteRange(Cf::Recent, Vec::new(), end));
                let old = match recent_floor {
                    Some(f) => f,
                    None => meta_height(e, RECENT_FLOOR_KEY)?,
                };
                if let Some(old) = old {
                    let new = old.max(below);
                    recent_floor = Some(Some(new));
                    raw.push(RawOp::Put(
                        Cf::Meta,
                        RECENT_FLOOR_KEY.to_vec(),
                        new.0.to_le_bytes().to_vec(),
                    ));
                } else {
                    recent_floor = Some(None);
                }
            }
            Op::PruneBlocks { below } => {
                let from = match floor {
                    Some(f) => f,
                    None => retained_from(e)?,
                };
                floor = Some(plan_prune(e, from, below, old_tip, &mut raw)?);
            }
        }
    }
    // Pending index: after the batch it holds exactly the stored blocks above the final tip.
    // A block at a committed height that is not the committed block there can never be
    // committed: its body is deleted too (issue 7 finding 7). Committed bodies stay (peers
    // sync from them).
    let above_tip = |h: Height| new_tip.is_none_or(|t| h > t);
    let mut dropped = Vec::new();
    if let Some(t) = new_tip.filter(|_| new_tip != old_tip) {
        // Every pending key is above the old tip (the invariant above): seek past the old tip
        // instead of stepping over the tombstones of every entry deleted before. Scanning from
        // the first key walked all of them in the memtable on each commit: 9 % of a
        // validator's CPU samples at 1,000 tx/s (`perf`, issue 10 note), growing with the
        // memtable.
        let start = old_tip.map_or(0, |h| h.0.saturating_add(1));
        e.scan_from(Cf::Pending, &height_key(Height(start)), &mut |k, _| {
            let h = height_from(Cf::Pending, k)?;
            if h > t {
                return Ok(false);
            }
            raw.push(RawOp::Delete(Cf::Pending, k.to_vec()));
            let id = digest_from(Cf::Pending, k, k.get(8..).unwrap_or_default())?;
            dropped.push((h, id));
            Ok(true)
        })?;
    }
    for (h, id) in new_pending {
        if above_tip(h) {
            raw.push(RawOp::Put(Cf::Pending, pending_key(h, &id), Vec::new()));
        } else {
            dropped.push((h, id));
        }
    }
    for (h, id) in dropped {
        let committed = match commits.get(&h) {
            Some(c) => Some(*c),
            None => {
                let k = height_key(h);
                e.get(Cf::Committed, &k)?
                    .map(|v| digest_from(Cf::Committed, &k, &v))
                    .transpose()?
            }
        };
        if committed.is_some_and(|c| c != id) {
            raw.push(RawOp::Delete(Cf::Blocks, id.0.to_vec()));
        }
    }
    Ok(raw)
}

/// The raw ops `batch` becomes and its `sync` flag, or `None` if there is nothing to write (an
/// unsynced batch that plans to no op). Reads only; see [`plan`].
pub(crate) fn planned<E: Engine>(
    e: &E,
    batch: WriteBatch,
) -> Result<Option<(Vec<RawOp>, bool)>, StoreError> {
    let sync = batch.sync;
    let raw = plan(e, batch)?;
    Ok((!raw.is_empty() || sync).then_some((raw, sync)))
}

/// Check or record the chain id in `meta` (see [`Store::check_chain_id`]).
fn check_chain_id<E: Engine>(e: &mut E, chain_id: &str) -> Result<(), StoreError> {
    match e.get(Cf::Meta, CHAIN_ID_KEY)? {
        Some(found) => {
            let found =
                String::from_utf8(found).map_err(|err| corrupt(Cf::Meta, CHAIN_ID_KEY, err))?;
            if found == chain_id {
                Ok(())
            } else {
                Err(StoreError::ChainIdMismatch {
                    found,
                    expected: chain_id.to_string(),
                })
            }
        }
        None => e.apply(
            vec![RawOp::Put(
                Cf::Meta,
                CHAIN_ID_KEY.to_vec(),
                chain_id.as_bytes().to_vec(),
            )],
            true,
        ),
    }
}

/// Check the schema version in `meta`, writing it (synced) into a fresh store.
pub(crate) fn check_schema<E: Engine>(e: &mut E, expected: u32) -> Result<(), StoreError> {
    match e.get(Cf::Meta, SCHEMA_KEY)? {
        Some(v) => {
            let a: [u8; 4] = v.as_slice().try_into().map_err(|_| {
                corrupt(
                    Cf::Meta,
                    SCHEMA_KEY,
                    format!("expected 4 bytes, got {}", v.len()),
                )
            })?;
            let found = u32::from_le_bytes(a);
            if found == expected {
                Ok(())
            } else {
                Err(StoreError::SchemaMismatch { found, expected })
            }
        }
        // A new store: nothing was forgotten yet, so the replay guard's floor starts at 0.
        None => e.apply(
            vec![
                RawOp::Put(
                    Cf::Meta,
                    SCHEMA_KEY.to_vec(),
                    expected.to_le_bytes().to_vec(),
                ),
                RawOp::Put(
                    Cf::Meta,
                    RECENT_FLOOR_KEY.to_vec(),
                    0u64.to_le_bytes().to_vec(),
                ),
            ],
            true,
        ),
    }
}

impl<E: Engine> Store for E {
    fn load_safety(&self) -> Result<Option<SafetyData>, StoreError> {
        self.get(Cf::Safety, SAFETY_KEY)?
            .map(|v| decode_value(Cf::Safety, SAFETY_KEY, &v))
            .transpose()
    }

    fn convictions(&self) -> Result<Vec<Option<Height>>, StoreError> {
        Ok(self
            .get(Cf::Meta, CONVICTIONS_KEY)?
            .map(|v| decode_value(Cf::Meta, CONVICTIONS_KEY, &v))
            .transpose()?
            .unwrap_or_default())
    }

    fn write(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        match planned(self, batch)? {
            Some((raw, sync)) => self.apply(raw, sync),
            None => Ok(()),
        }
    }

    fn block(&self, id: &BlockId) -> Result<Option<Block>, StoreError> {
        Ok(get_block(self, id)?.map(|(b, _)| b))
    }

    fn is_pending(&self, height: Height, id: &BlockId) -> Result<bool, StoreError> {
        Ok(self.get(Cf::Pending, &pending_key(height, id))?.is_some())
    }

    fn committed_id(&self, h: Height) -> Result<Option<BlockId>, StoreError> {
        let k = height_key(h);
        self.get(Cf::Committed, &k)?
            .map(|v| digest_from(Cf::Committed, &k, &v))
            .transpose()
    }

    fn committed_tip(&self) -> Result<Option<(Height, BlockId)>, StoreError> {
        tip(self)
    }

    fn last_committed(&self, count: usize) -> Result<Vec<Block>, StoreError> {
        let mut ids = Vec::new();
        if count > 0 {
            let floor = retained_from(self)?;
            self.scan(Cf::Committed, true, &mut |k, v| {
                let height = height_from(Cf::Committed, k)?;
                if height.0 > 0 && height < floor {
                    return Ok(false);
                }
                ids.push((height, digest_from(Cf::Committed, k, v)?));
                Ok(ids.len() < count)
            })?;
        }
        ids.into_iter()
            .rev()
            .map(|(height, id)| {
                get_block(self, &id)?
                    .map(|(b, _)| b)
                    .ok_or(StoreError::MissingBlock { height, id })
            })
            .collect()
    }

    fn retained_from(&self) -> Result<Height, StoreError> {
        retained_from(self)
    }

    fn uncommitted_blocks(&self) -> Result<Vec<Block>, StoreError> {
        let mut ids = Vec::new();
        self.scan(Cf::Pending, false, &mut |k, _| {
            let id = digest_from(Cf::Pending, k, k.get(8..).unwrap_or_default())?;
            ids.push((height_from(Cf::Pending, k)?, id));
            Ok(true)
        })?;
        ids.into_iter()
            .map(|(height, id)| {
                get_block(self, &id)?
                    .map(|(b, _)| b)
                    .ok_or(StoreError::MissingBlock { height, id })
            })
            .collect()
    }

    fn evidence(&self, limit: usize) -> Result<Vec<Evidence>, StoreError> {
        let mut out = Vec::new();
        if limit > 0 {
            self.scan(Cf::Evidence, false, &mut |k, v| {
                out.push(decode_value(Cf::Evidence, k, v)?);
                Ok(out.len() < limit)
            })?;
        }
        Ok(out)
    }

    fn app_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(Cf::App, key)
    }

    fn tx_location(&self, hash: &Digest) -> Result<Option<TxLocation>, StoreError> {
        self.get(Cf::TxIndex, &hash.0)?
            .map(|v| decode_value(Cf::TxIndex, &hash.0, &v))
            .transpose()
    }

    fn tx_locations(&self, hashes: &[Digest]) -> Vec<Result<Option<TxLocation>, StoreError>> {
        let keys: Vec<&[u8]> = hashes.iter().map(|h| &h.0[..]).collect();
        self.get_many(Cf::TxIndex, &keys)
            .into_iter()
            .zip(hashes)
            .map(|(v, h)| v?.map(|v| decode_value(Cf::TxIndex, &h.0, &v)).transpose())
            .collect()
    }

    /// Entries expiring at or above the floor ([`RECENT_FLOOR_KEY`]) are read in one batch with
    /// [`Engine::get_many_uncovered`], since no range deletion covers them; the others (callers
    /// refuse expired transactions before asking, so next to none) with [`Engine::get_many`],
    /// as is everything in a store without a floor (created before it existed).
    fn recent_txs(&self, txs: &[(Height, Digest)]) -> Vec<Result<bool, StoreError>> {
        let floor = match meta_height(self, RECENT_FLOOR_KEY) {
            Ok(f) => f,
            Err(e) => return txs.iter().map(|_| Err(e.clone())).collect(),
        };
        let uncovered = |e: Height| floor.is_some_and(|f| e >= f);
        let mut out: Vec<Result<bool, StoreError>> = txs.iter().map(|_| Ok(false)).collect();
        for fast in [true, false] {
            let asked: Vec<usize> = (0..txs.len())
                .filter(|&i| uncovered(txs[i].0) == fast)
                .collect();
            if asked.is_empty() {
                continue;
            }
            let keys: Vec<Vec<u8>> = asked
                .iter()
                .map(|&i| recent_key(txs[i].0, &txs[i].1))
                .collect();
            let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let found = if fast {
                self.get_many_uncovered(Cf::Recent, &refs)
            } else {
                self.get_many(Cf::Recent, &refs)
            };
            for ((i, k), v) in asked.into_iter().zip(&keys).zip(found) {
                out[i] = match v {
                    Err(e) => Err(e),
                    Ok(None) => Ok(false),
                    Ok(Some(v)) if v.is_empty() => Ok(true),
                    Ok(Some(v)) => Err(corrupt(
                        Cf::Recent,
                        k,
                        format!("expected an empty value, got {} bytes", v.len()),
                    )),
                };
            }
        }
        out
    }

    fn serve_blocks(
        &self,
        req: &BlockRequest,
        max_bytes: usize,
    ) -> Result<BlockResponse, StoreError> {
        let cap = (req.max_blocks as usize).min(HARD_CAP);
        let mut blocks = Vec::new();
        // Encoded size of the response so far: the u32 length prefix plus each block.
        let mut size = 4usize;
        let mut next = Some(req.target);
        while let Some(id) = next {
            if blocks.len() >= cap {
                break;
            }
            let Some((block, len)) = get_block(self, &id)? else {
                break;
            };
            if block.height <= req.stop_at {
                break;
            }
            if !blocks.is_empty() && size.saturating_add(len) > max_bytes {
                break;
            }
            size = size.saturating_add(len);
            next = (block.height > Height(0)).then_some(block.parent);
            blocks.push(block);
        }
        Ok(BlockResponse { blocks })
    }

    fn check_chain_id(&mut self, chain_id: &str) -> Result<(), StoreError> {
        check_chain_id(self, chain_id)
    }

    fn last_write_micros(&self) -> u64 {
        Engine::last_write_micros(self)
    }
}
