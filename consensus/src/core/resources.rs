//! A read-only view of what a core holds that a peer can make it grow: the resource checks of
//! the simulator (issue 7) bound each of these from the configuration.

use super::Core;
use crate::policy::FaultPolicy;
use crate::types::{BlockId, ValidatorIndex, View};

/// The proposal held in the park slot (a proposal of the current view waiting for its parent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParkedProposal {
    /// Its view (always the current view: the slot is cleared on a view change).
    pub view: View,
    /// The block's proposer.
    pub proposer: ValidatorIndex,
    /// The block's id.
    pub block_id: BlockId,
    /// View of the block's justify QC.
    pub justify_view: View,
}

/// Sizes of the core's peer-fed state, and its signature-check work so far. Cheap to take
/// (no allocation but the parked block's id hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resources {
    /// Equivocation-detector records (votes, proposals, timeouts per `(view, validator)`, plus
    /// two anchors per validator). Records of views below `current_view − 2·view_window` are
    /// pruned and only views up to `current_view + view_window` are recorded, so this stays
    /// below `3·n·(3·view_window + 2) + 2·n`.
    pub detector_entries: usize,
    /// Blocks in the block tree (the committed root and everything above it).
    pub blocks_in_memory: usize,
    /// The park slot (at most one proposal).
    pub parked: Option<ParkedProposal>,
    /// Block-sync requests in flight (≤ `Config::sync_max_inflight`).
    pub sync_inflight: usize,
    /// Block ids waiting for a sync slot (≤ 64).
    pub sync_wanted: usize,
    /// Signatures checked since the core was built (= `Counters::signatures_verified`).
    pub signatures_verified: u64,
}

impl<P: FaultPolicy> Core<P> {
    /// The current [`Resources`].
    pub fn resources(&self) -> Resources {
        let (sync_inflight, sync_wanted) = self.sync.queued();
        Resources {
            detector_entries: self.detector.len(),
            blocks_in_memory: self.tree.len(),
            parked: self.parked.as_ref().map(|(_, p)| ParkedProposal {
                view: p.block.view,
                proposer: p.block.proposer,
                block_id: p.block.id(self.vs.domain()),
                justify_view: p.block.justify.view(),
            }),
            sync_inflight,
            sync_wanted,
            signatures_verified: self.counters.signatures_verified,
        }
    }

    /// Check one signature of a received message (counted in
    /// [`Counters::signatures_verified`](super::Counters)).
    pub(super) fn check_sig(
        &mut self,
        signer: ValidatorIndex,
        kind: crate::crypto::SigKind,
        body: &[u8],
        sig: &crate::crypto::Signature,
    ) -> bool {
        self.counters.signatures_verified += 1;
        self.vs.verify(signer, kind, body, sig)
    }
}
