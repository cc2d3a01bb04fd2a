//! The driver's side of compact proposal relay ([`crate::relay`]): our proposals leave compact,
//! received compact proposals are rebuilt from the mempool, and when a rebuild fails the block
//! is fetched from the sender before the proposal goes to the core.
//!
//! Outcomes are counted in `bftnode_relay_proposals_total{outcome}` ([`relay_outcome`]).

use super::{Driver, Fetches};
use crate::metrics::relay_outcome;
use crate::relay::{self, CompactProposal, Rebuilt};
use anyhow::Result;
use consensus::{
    BlockId, BlockRequest, BlockResponse, ConsensusMessage, Event, Height, Proposal, ValidatorIndex,
};
use network::Misbehaviour;
use std::time::Instant;
use tracing::debug;

/// Most compact proposals waiting for their block at once (one per view is the honest case);
/// a further one drops the oldest (its view then goes as if the proposal never came).
pub const MAX_RELAY_FETCHES: usize = 8;

/// A compact proposal waiting for its block.
#[derive(Debug)]
pub struct RelayFetch {
    /// The block the proposer signed.
    id: BlockId,
    /// The frame's proposal (payload empty): its signature and TC.
    proposal: Box<Proposal>,
}

/// The relay's outstanding block fetches ([`MAX_RELAY_FETCHES`]).
pub type RelayFetches = Fetches<RelayFetch>;

/// An empty [`RelayFetches`].
pub fn relay_fetches() -> RelayFetches {
    Fetches::with_cap(MAX_RELAY_FETCHES)
}

impl Driver {
    /// The bytes of `msg` on the consensus channel: a proposal compact when we hold its payload
    /// decoded (the one we built, or a stored block's still cached), every other message in
    /// full.
    pub(super) fn frame(&self, msg: &ConsensusMessage) -> Vec<u8> {
        let ConsensusMessage::Proposal(p) = msg else {
            return msg.encode();
        };
        if p.block.payload.is_empty() {
            return msg.encode();
        }
        let header = p.block.header();
        // Our proposal leaves before we store it (we store it when we vote for it), so its
        // payload is still the one we built; a re-sent proposal's is in the cache.
        let d = match &self.own_payload {
            Some(o) if o.carried_by(&p.block) => Some(&o.decoded),
            _ => self
                .decoded
                .get(&header.id(&self.domain))
                .map(|c| &c.payload),
        };
        let Some(d) = d else {
            self.metrics.count_relay(relay_outcome::SENT_FULL);
            return msg.encode();
        };
        if d.invalid || d.hashes.len() != d.txs.len() {
            self.metrics.count_relay(relay_outcome::SENT_FULL);
            return msg.encode();
        }
        // Inline what our own clients submitted (our push of it may still be on its way) and
        // whatever left the pool meanwhile; name the rest by hash.
        let inline = |i: usize| {
            !matches!(
                self.mempool.get(&d.hashes[i]),
                Some((_, crate::mempool::Source::Peer(_)))
            )
        };
        self.metrics.count_relay(relay_outcome::SENT_COMPACT);
        relay::encode_compact(p, header.payload_digest, &d.txs, &d.hashes, inline)
    }

    /// A compact proposal frame (the bytes after [`relay::COMPACT_TAG`]) from validator `from`.
    pub(super) fn on_compact_proposal(&mut self, from: u16, body: &[u8]) -> Result<()> {
        let frame = match CompactProposal::decode(body) {
            Ok(f) => f,
            Err(e) => {
                self.metrics.invalid_messages.inc();
                self.net.report(from, Misbehaviour::Undecodable);
                debug!(peer = from, error = %e, "undecodable compact proposal");
                return Ok(());
            }
        };
        let mempool = &self.mempool;
        match relay::rebuild(frame, &self.domain, |h| mempool.get(h).map(|(tx, _)| tx)) {
            Rebuilt::Complete(b) => {
                let (proposal, payload, id) = *b;
                self.metrics.count_relay(relay_outcome::REBUILT);
                let bytes = proposal.block.payload.len();
                self.cache_payload(id, proposal.block.height, bytes, payload);
                self.propose_rebuilt(from, proposal)
            }
            Rebuilt::TooLarge => {
                self.metrics.count_relay(relay_outcome::TOO_LARGE);
                self.metrics.invalid_messages.inc();
                self.net.report(from, Misbehaviour::Undecodable);
                debug!(
                    peer = from,
                    "compact proposal names more than a proposal may carry"
                );
                Ok(())
            }
            Rebuilt::Fetch {
                id,
                missing,
                proposal,
            } => {
                self.metrics.count_relay(relay_outcome::FETCHED);
                debug!(peer = from, %id, missing, "compact proposal not rebuilt here; fetching its block");
                let request = BlockRequest {
                    target: id,
                    stop_at: Height(proposal.block.height.0.saturating_sub(1)),
                    max_blocks: 1,
                };
                let nid = self.net.request(from, consensus::encode(&request));
                let dropped =
                    self.relay_fetches
                        .insert(nid, RelayFetch { id, proposal }, Instant::now());
                for _ in dropped {
                    self.metrics.count_relay(relay_outcome::FETCH_FAILED);
                }
                Ok(())
            }
        }
    }

    /// The answer to a relay fetch: the block the proposer signed, if `from` sent it. Returns
    /// `false` when `request_id` is not a relay fetch (it is the core's).
    pub(super) fn on_relay_response(
        &mut self,
        from: u16,
        request_id: u64,
        result: &Result<Vec<u8>, String>,
    ) -> Result<bool> {
        let Some(fetch) = self.relay_fetches.remove(request_id) else {
            return Ok(false);
        };
        let block = result.as_ref().ok().and_then(|bytes| {
            consensus::decode::<BlockResponse>(bytes, super::MAX_SYNC_RESPONSE_BYTES)
                .ok()?
                .blocks
                .into_iter()
                .next()
                .filter(|b| b.id(&self.domain) == fetch.id)
        });
        let Some(block) = block else {
            self.metrics.count_relay(relay_outcome::FETCH_FAILED);
            debug!(peer = from, id = %fetch.id, "compact proposal's block not obtained");
            return Ok(true);
        };
        let mut proposal = *fetch.proposal;
        proposal.block = block;
        self.propose_rebuilt(from, proposal)?;
        Ok(true)
    }

    /// Relay fetches that got no answer within [`super::FETCH_EXPIRY`]: forget them.
    pub(super) fn expire_relay_fetches(&mut self) {
        for _ in self.relay_fetches.expire(Instant::now()) {
            self.metrics.count_relay(relay_outcome::FETCH_FAILED);
        }
    }

    /// Hand a whole proposal from `from` to the core.
    fn propose_rebuilt(&mut self, from: u16, proposal: Proposal) -> Result<()> {
        self.step(Event::Message {
            from: ValidatorIndex(from),
            msg: ConsensusMessage::Proposal(proposal),
        })
    }
}
