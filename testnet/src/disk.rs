//! The simulated persisted state of one replica: what survives a crash.
//!
//! Only what the core asked to persist ([`Action::PersistSafety`], [`Action::PersistBlock`]) and
//! the committed chain ([`Action::Commit`]) are kept. A restart rebuilds the core from this alone.

use crate::replica::Recovered;
use consensus::{Action, Block, BlockId, BlockRequest, BlockResponse, Domain, Height, SafetyData};
use std::collections::BTreeMap;

/// Maximum bytes served in one block-sync response.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Committed blocks handed to the core at restart (protocol: the last ≤ 1000).
pub const RECOVER_COMMITTED: usize = 1000;

/// In-memory "disk" of one replica. Ordered maps only, so that everything derived from it is
/// deterministic.
#[derive(Clone, Debug)]
pub struct Disk {
    /// The safety record, if ever written.
    pub safety: Option<SafetyData>,
    /// Every block persisted or committed, by id.
    pub blocks: BTreeMap<BlockId, Block>,
    /// The committed chain, ascending height, starting at genesis.
    pub committed: Vec<BlockId>,
    /// Genesis id.
    pub genesis: BlockId,
}

impl Disk {
    /// A fresh disk holding only genesis.
    pub fn new(domain: &Domain) -> Self {
        let g = Block::genesis(domain);
        let gid = g.id(domain);
        let mut blocks = BTreeMap::new();
        blocks.insert(gid, g);
        Disk {
            safety: None,
            blocks,
            committed: vec![gid],
            genesis: gid,
        }
    }

    /// Apply one action's persistent effect (no-op for non-persistent actions).
    pub fn apply(&mut self, action: &Action) {
        match action {
            Action::PersistSafety(s) => self.safety = Some((**s).clone()),
            Action::PersistBlock { id, block } => {
                self.blocks.entry(*id).or_insert_with(|| (**block).clone());
            }
            Action::Commit { blocks, ids, .. } => {
                for (b, id) in blocks.iter().zip(ids) {
                    self.blocks.entry(*id).or_insert_with(|| b.clone());
                    let tip = self.committed.len() as u64 - 1;
                    if b.height.0 == tip + 1 {
                        self.committed.push(*id);
                    }
                }
            }
            _ => {}
        }
    }

    /// Committed height.
    pub fn committed_height(&self) -> Height {
        Height(self.committed.len() as u64 - 1)
    }

    /// The state a restarting core gets: the last ≤ 1000 committed blocks, and every stored
    /// block above the committed tip, in (height, id) order.
    pub fn recovered(&self) -> Recovered {
        let skip = self.committed.len().saturating_sub(RECOVER_COMMITTED);
        let committed: Vec<Block> = self.committed[skip..]
            .iter()
            .filter_map(|id| self.blocks.get(id).cloned())
            .collect();
        let tip = self.committed_height();
        let mut uncommitted: Vec<(Height, BlockId, Block)> = self
            .blocks
            .iter()
            .filter(|(_, b)| b.height > tip)
            .map(|(id, b)| (b.height, *id, b.clone()))
            .collect();
        uncommitted.sort_by_key(|a| (a.0, a.1));
        Recovered {
            committed,
            uncommitted: uncommitted.into_iter().map(|(_, _, b)| b).collect(),
        }
    }

    /// Serve a block-sync request: walk parent links from `target`, stopping before a block at
    /// height ≤ `stop_at`, at most `max_blocks` blocks and [`MAX_RESPONSE_BYTES`] bytes.
    pub fn serve(&self, req: &BlockRequest) -> BlockResponse {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut cur = req.target;
        while let Some(b) = self.blocks.get(&cur) {
            if b.height <= req.stop_at || out.len() as u32 >= req.max_blocks.min(1000) {
                break;
            }
            bytes += b.payload.len() + 256;
            if bytes > MAX_RESPONSE_BYTES && !out.is_empty() {
                break;
            }
            cur = b.parent;
            out.push(b.clone());
        }
        BlockResponse { blocks: out }
    }
}
