//! The block tree: blocks by id above the committed root, and the committed chain index
//! (PROTOCOL.md §7 case 10: store by id, commit by ancestry, prune only off-root branches).

use crate::block::Block;
use crate::types::{BlockId, Height, View};
use std::collections::{BTreeMap, HashMap};

/// How many committed `(height → id)` entries are kept in memory for conflict checks.
const COMMITTED_INDEX_LEN: usize = 4096;

/// Outcome of walking from a block down to the committed root.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ancestry {
    /// The chain from the root (exclusive) up to the target, ascending.
    Extends(Vec<BlockId>),
    /// Block `missing` is needed to finish the walk; its height when a held child names it
    /// (`None` when the target itself is missing).
    Missing(BlockId, Option<Height>),
    /// The target is on a branch that does not contain the committed root.
    Conflicts,
}

/// Blocks indexed by id. Invariant: every block held has height > root height, except the
/// root itself; the committed index is ascending and ends at the root.
#[derive(Debug)]
pub(crate) struct BlockTree {
    blocks: HashMap<BlockId, Block>,
    root: (BlockId, Height, View),
    committed: BTreeMap<Height, BlockId>,
}

impl BlockTree {
    /// A tree rooted at the committed block `root`.
    pub(crate) fn new(root: Block, root_id: BlockId) -> Self {
        let key = (root_id, root.height, root.view);
        let mut committed = BTreeMap::new();
        committed.insert(root.height, root_id);
        let mut blocks = HashMap::new();
        blocks.insert(root_id, root);
        BlockTree {
            blocks,
            root: key,
            committed,
        }
    }
    pub(crate) fn root_id(&self) -> BlockId {
        self.root.0
    }
    pub(crate) fn root_height(&self) -> Height {
        self.root.1
    }
    pub(crate) fn root_view(&self) -> View {
        self.root.2
    }
    pub(crate) fn get(&self, id: &BlockId) -> Option<&Block> {
        self.blocks.get(id)
    }
    pub(crate) fn contains(&self, id: &BlockId) -> bool {
        self.blocks.contains_key(id)
    }
    pub(crate) fn len(&self) -> usize {
        self.blocks.len()
    }
    /// Note a committed id from history (recovery), below the root.
    pub(crate) fn note_committed(&mut self, height: Height, id: BlockId) {
        self.committed.insert(height, id);
        self.trim_index();
    }
    /// The committed id at `height`, if still indexed.
    pub(crate) fn committed_at(&self, height: Height) -> Option<BlockId> {
        self.committed.get(&height).copied()
    }
    /// Insert a block above the root. Returns false (and does nothing) if it is at or below
    /// the root height or already present.
    pub(crate) fn insert(&mut self, id: BlockId, block: Block) -> bool {
        if block.height <= self.root.1 || self.blocks.contains_key(&id) {
            return false;
        }
        self.blocks.insert(id, block);
        true
    }
    /// Walk parent links from `target` down to the root height.
    pub(crate) fn ancestry(&self, target: BlockId) -> Ancestry {
        let mut chain = Vec::new();
        let mut id = target;
        let mut height = None;
        loop {
            if id == self.root.0 {
                chain.reverse();
                return Ancestry::Extends(chain);
            }
            let Some(b) = self.blocks.get(&id) else {
                return Ancestry::Missing(id, height);
            };
            height = b.height.0.checked_sub(1).map(Height);
            if b.height <= self.root.1 {
                return Ancestry::Conflicts;
            }
            chain.push(id);
            id = b.parent;
        }
    }
    /// Move the root to `chain`'s last element (ascending ids, all held), returning the blocks;
    /// prunes everything at or below the new root height except the root.
    pub(crate) fn commit(&mut self, chain: &[BlockId]) -> Vec<Block> {
        let blocks: Vec<Block> = chain
            .iter()
            .filter_map(|id| self.blocks.get(id).cloned())
            .collect();
        if let (Some(last), Some(id)) = (blocks.last(), chain.last()) {
            self.root = (*id, last.height, last.view);
            for (b, id) in blocks.iter().zip(chain) {
                self.committed.insert(b.height, *id);
            }
            self.trim_index();
            let (root_id, root_h) = (self.root.0, self.root.1);
            self.blocks
                .retain(|id, b| b.height > root_h || *id == root_id);
        }
        blocks
    }
    fn trim_index(&mut self) {
        while self.committed.len() > COMMITTED_INDEX_LEN {
            self.committed.pop_first();
        }
    }
}
