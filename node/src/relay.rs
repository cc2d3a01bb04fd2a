//! Compact proposal relay: a proposal crosses the network as the block without its payload,
//! the payload's digest, the hashes of the transactions the replicas already hold and the
//! bodies of those they may not hold yet, instead of every transaction's bytes (issue 10).
//!
//! ## Why
//! Every validator pushes its clients' transactions once to every other validator
//! (`driver::txs`, `/bftnode/txs/1`), so when a leader proposes them the replicas hold nearly
//! all of them already. Sent in full, each transaction crossed the network a second time inside
//! the proposal (three times from the leader at n = 4), and each replica decoded and hashed it
//! again, on the serial path of the view (view time grew with the block's bytes, ~66 ms per
//! MiB; issue 10 note of stop 25). This is Bitcoin's compact block relay (BIP 152) applied to a
//! proposal: it changes how a proposal's bytes travel, not what is proposed, signed, voted for
//! or stored. The core only ever sees whole [`Proposal`]s, exactly the blocks their proposers
//! signed (a block id commits to the payload digest, BLAKE3), and runs every check on them as
//! on any proposal; nothing in `consensus/PROTOCOL.md` changes.
//!
//! ## The frame
//! On the consensus channel a frame is either a `ConsensusMessage` (borsh: its first byte is
//! the variant tag, 0–4) or [`COMPACT_TAG`] followed by borsh([`CompactProposal`]). A node
//! accepts both; it sends a proposal compact when its payload holds transactions
//! ([`encode_compact`]), in full otherwise.
//!
//! Which transactions travel by hash ([`Item::Held`]) and which in full ([`Item::Inline`]) is
//! the proposer's choice: the node inlines those its own clients submitted (its push of them
//! may still be on its way) and names the others, which reached every validator from their
//! origin before they reached the proposer, by hash.
//!
//! ## What a replica does ([`rebuild`])
//! 1. The frame decodes within `consensus::codec::MAX_MESSAGE_BYTES`, and the block in it
//!    carries no payload bytes; else the frame is undecodable (the sender is reported, as for
//!    any undecodable consensus frame).
//! 2. The payload is rebuilt in order: named transactions from the mempool, inline ones as
//!    sent; rebuilding stops (the frame is refused as undecodable) once the payload would exceed
//!    [`app::PAYLOAD_DECODE_LIMIT`], the most a full proposal could carry, so a frame of
//!    hashes cannot make a replica build more than one full proposal's bytes.
//! 3. The rebuilt payload's digest must equal the frame's `payload_digest`; then the proposal
//!    goes to the core, with the payload already decoded and hashed for the commit.
//! 4. If a named transaction is not in the mempool, or the digests differ (a proposer whose
//!    hashes do not match the payload it signed), the replica fetches block
//!    `header_with(payload_digest).id()` from the sender (block sync, one block) and gives the
//!    core that block with the frame's signature and TC. Nobody is blamed: the core checks the
//!    signature on the block it gets, so a proposer that lies costs its own view at most.
//!
//! Memory: [`rebuild`] holds one payload at a time; the fetches waiting for a block are bounded
//! by the driver (`driver::relay`).

use crate::app::{self, DecodedPayload, Transaction, TxHash};
use borsh::{BorshDeserialize, BorshSerialize};
use consensus::codec::MAX_MESSAGE_BYTES;
use consensus::{Block, BlockId, DecodeError, Digest, Domain, Proposal};

/// First byte of a compact proposal frame; a `ConsensusMessage` frame starts with its variant
/// tag (0–4), so the two never collide.
pub const COMPACT_TAG: u8 = 0xC0;

/// One transaction of a compact proposal, in payload order.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Item {
    /// A transaction the replicas are expected to hold: its hash ([`Transaction::hash`]).
    Held(TxHash),
    /// A transaction sent in full.
    Inline(Transaction),
}

/// A proposal whose payload travels as [`Item`]s.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct CompactProposal {
    /// The proposal, its block's payload empty.
    pub proposal: Proposal,
    /// [`Block::payload_digest`] of the full block (it covers payload and evidence).
    pub payload_digest: Digest,
    /// The payload's transactions, in order.
    pub items: Vec<Item>,
}

impl CompactProposal {
    /// The id of the block this frame stands for: `header_with(payload_digest).id(domain)`.
    /// The proposer's signature is over this id, whatever the items say.
    pub fn block_id(&self, domain: &Domain) -> BlockId {
        self.proposal
            .block
            .header_with(self.payload_digest)
            .id(domain)
    }

    /// Decode a frame body (the bytes after [`COMPACT_TAG`]), within [`MAX_MESSAGE_BYTES`].
    /// Errors: [`DecodeError`] for malformed or oversized input, or a block that carries
    /// payload bytes (a compact frame names its payload by items only).
    pub fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let c: CompactProposal = consensus::decode(body, MAX_MESSAGE_BYTES)?;
        if !c.proposal.block.payload.is_empty() {
            return Err(DecodeError::Malformed(
                "a compact proposal's block carries payload bytes".into(),
            ));
        }
        Ok(c)
    }
}

/// The compact frame (with [`COMPACT_TAG`]) of `proposal`, whose block has payload digest
/// `payload_digest` ([`Block::payload_digest`]) and whose payload decodes to `txs` with hashes
/// `hashes` (same length, same order); transaction `i` is sent inline iff `inline(i)`.
pub fn encode_compact(
    proposal: &Proposal,
    payload_digest: Digest,
    txs: &[Transaction],
    hashes: &[TxHash],
    inline: impl Fn(usize) -> bool,
) -> Vec<u8> {
    debug_assert_eq!(txs.len(), hashes.len());
    let items = txs
        .iter()
        .zip(hashes)
        .enumerate()
        .map(|(i, (tx, h))| {
            if inline(i) {
                Item::Inline(tx.clone())
            } else {
                Item::Held(*h)
            }
        })
        .collect();
    let frame = CompactProposal {
        proposal: Proposal {
            block: without_payload(&proposal.block),
            tc: proposal.tc.clone(),
            sig: proposal.sig,
        },
        payload_digest,
        items,
    };
    let mut out = vec![COMPACT_TAG];
    frame
        .serialize(&mut out)
        .expect("writing into a Vec cannot fail");
    out
}

/// `b` with an empty payload (every other field cloned; the payload is not copied).
fn without_payload(b: &Block) -> Block {
    Block {
        epoch: b.epoch,
        view: b.view,
        height: b.height,
        parent: b.parent,
        justify: b.justify.clone(),
        payload: Vec::new(),
        evidence: b.evidence.clone(),
        proposer: b.proposer,
        skipped_leaders: b.skipped_leaders.clone(),
    }
}

/// What [`rebuild`] made of a compact proposal.
#[derive(Debug)]
pub enum Rebuilt {
    /// The full proposal, its payload decoded (for the mempool and the commit), and its block
    /// id.
    Complete(Box<(Proposal, DecodedPayload, BlockId)>),
    /// The payload cannot be rebuilt here: `missing` named transactions are not held, or
    /// (`missing == 0`) the rebuilt payload does not match the frame's digest. Fetch block
    /// `id` from the sender; `proposal` is the frame's (payload empty) for its signature and TC.
    Fetch {
        /// The block to fetch.
        id: BlockId,
        /// Named transactions not held.
        missing: usize,
        /// The frame's proposal, payload empty.
        proposal: Box<Proposal>,
    },
    /// The rebuilt payload would exceed [`app::PAYLOAD_DECODE_LIMIT`] bytes: no valid proposal
    /// is that large.
    TooLarge,
}

/// Rebuild the proposal of `frame`, taking named transactions from `lookup` (the mempool).
/// See the module docs, steps 2–4.
pub fn rebuild<'a>(
    frame: CompactProposal,
    domain: &Domain,
    lookup: impl Fn(&TxHash) -> Option<&'a Transaction>,
) -> Rebuilt {
    let CompactProposal {
        mut proposal,
        payload_digest,
        items,
    } = frame;
    let (mut txs, mut hashes) = (
        Vec::with_capacity(items.len()),
        Vec::with_capacity(items.len()),
    );
    let (mut missing, mut bytes) = (0usize, app::PAYLOAD_OVERHEAD);
    for item in items {
        let (tx, hash) = match item {
            Item::Held(h) => match lookup(&h) {
                Some(tx) => (tx.clone(), h),
                None => {
                    missing += 1;
                    continue;
                }
            },
            Item::Inline(tx) => {
                let h = tx.hash();
                (tx, h)
            }
        };
        bytes += tx.encoded_len();
        if bytes > app::PAYLOAD_DECODE_LIMIT {
            return Rebuilt::TooLarge;
        }
        txs.push(tx);
        hashes.push(hash);
    }
    if missing == 0 {
        proposal.block.payload = app::encode_transactions(&txs);
        if proposal.block.payload_digest() == payload_digest {
            let decoded = DecodedPayload {
                txs,
                hashes,
                invalid: false,
            };
            let id = proposal.block.header_with(payload_digest).id(domain);
            return Rebuilt::Complete(Box::new((proposal, decoded, id)));
        }
        proposal.block.payload = Vec::new();
    }
    let id = proposal.block.header_with(payload_digest).id(domain);
    Rebuilt::Fetch {
        id,
        missing,
        proposal: Box::new(proposal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{Op, Payload};
    use consensus::{Epoch, Height, PrivateKey, QuorumCert, SigKind, ValidatorIndex, View};
    use std::collections::HashMap;

    fn tx(i: u64, value_len: usize) -> Transaction {
        Transaction {
            op: Op::Put {
                key: format!("k{i}").into_bytes(),
                value: vec![i as u8; value_len],
            },
            nonce: i,
            expires_at: Height(100),
        }
    }

    fn proposal(txs: &[Transaction], domain: &Domain) -> Proposal {
        let block = Block {
            epoch: Epoch(0),
            view: View(7),
            height: Height(3),
            parent: Digest([1; 32]),
            justify: QuorumCert::genesis(Digest([1; 32])),
            payload: Payload::Transactions(txs.to_vec()).encode(),
            evidence: Vec::new(),
            proposer: ValidatorIndex(2),
            skipped_leaders: vec![ValidatorIndex(1)],
        };
        let id = block.id(domain);
        let key = PrivateKey::from_seed([9; 32]);
        let sig = key.sign(
            domain,
            SigKind::Proposal,
            &consensus::messages::proposal_body(block.view, &id),
        );
        Proposal {
            block,
            tc: None,
            sig,
        }
    }

    fn frame(bytes: &[u8]) -> CompactProposal {
        assert_eq!(bytes[0], COMPACT_TAG);
        CompactProposal::decode(&bytes[1..]).expect("decodes")
    }

    #[test]
    fn a_compact_proposal_rebuilds_the_signed_block_exactly() {
        let domain = Domain::new("relay-test", Epoch(0));
        let txs: Vec<_> = (0..50).map(|i| tx(i, 512)).collect();
        let hashes: Vec<_> = txs.iter().map(Transaction::hash).collect();
        let p = proposal(&txs, &domain);
        let bytes = encode_compact(&p, p.block.payload_digest(), &txs, &hashes, |i| i % 4 == 0);
        let full = consensus::ConsensusMessage::Proposal(p.clone()).encode();
        assert!(
            bytes.len() * 3 < full.len(),
            "{} bytes compact against {} in full",
            bytes.len(),
            full.len()
        );
        let pool: HashMap<TxHash, Transaction> = hashes
            .iter()
            .zip(&txs)
            .enumerate()
            .filter(|(i, _)| i % 4 != 0)
            .map(|(_, (h, t))| (*h, t.clone()))
            .collect();
        let f = frame(&bytes);
        assert_eq!(f.block_id(&domain), p.block.id(&domain));
        match rebuild(f, &domain, |h| pool.get(h)) {
            Rebuilt::Complete(b) => {
                let (rebuilt, decoded, id) = *b;
                assert_eq!(id, p.block.id(&domain));
                assert_eq!(rebuilt, p, "the very block, signature and TC");
                assert_eq!(decoded.hashes, hashes);
                assert_eq!(decoded.txs, txs);
            }
            other => panic!("expected a complete rebuild, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_transaction_asks_for_the_block_by_the_id_the_proposer_signed() {
        let domain = Domain::new("relay-test", Epoch(0));
        let txs: Vec<_> = (0..10).map(|i| tx(i, 100)).collect();
        let hashes: Vec<_> = txs.iter().map(Transaction::hash).collect();
        let p = proposal(&txs, &domain);
        let bytes = encode_compact(&p, p.block.payload_digest(), &txs, &hashes, |_| false);
        let pool: HashMap<TxHash, Transaction> = hashes[1..]
            .iter()
            .zip(&txs[1..])
            .map(|(h, t)| (*h, t.clone()))
            .collect();
        match rebuild(frame(&bytes), &domain, |h| pool.get(h)) {
            Rebuilt::Fetch {
                id,
                missing,
                proposal,
            } => {
                assert_eq!(id, p.block.id(&domain));
                assert_eq!(missing, 1);
                assert!(proposal.block.payload.is_empty());
                assert_eq!(proposal.sig, p.sig);
            }
            other => panic!("expected a fetch, got {other:?}"),
        }
    }

    #[test]
    fn hashes_that_do_not_match_the_signed_digest_ask_for_the_block() {
        // A proposer that signs one payload and names another: the replica does not take the
        // named one; it fetches the block the signature is over.
        let domain = Domain::new("relay-test", Epoch(0));
        let txs: Vec<_> = (0..10).map(|i| tx(i, 100)).collect();
        let p = proposal(&txs, &domain);
        let mut other = txs.clone();
        other[3] = tx(99, 100);
        let other_hashes: Vec<_> = other.iter().map(Transaction::hash).collect();
        let bytes = encode_compact(&p, p.block.payload_digest(), &other, &other_hashes, |_| {
            false
        });
        let pool: HashMap<TxHash, Transaction> = other_hashes
            .iter()
            .zip(&other)
            .map(|(h, t)| (*h, t.clone()))
            .collect();
        match rebuild(frame(&bytes), &domain, |h| pool.get(h)) {
            Rebuilt::Fetch { id, missing, .. } => {
                assert_eq!(id, p.block.id(&domain));
                assert_eq!(missing, 0);
            }
            other => panic!("expected a fetch, got {other:?}"),
        }
    }

    #[test]
    fn named_transactions_cannot_build_more_than_a_full_proposal() {
        let domain = Domain::new("relay-test", Epoch(0));
        let big = tx(1, app::MAX_VALUE_BYTES);
        let h = big.hash();
        let count = app::PAYLOAD_DECODE_LIMIT / big.encoded_len() + 1;
        let p = proposal(&[], &domain);
        let mut f = frame(&encode_compact(
            &p,
            p.block.payload_digest(),
            &[],
            &[],
            |_| false,
        ));
        f.items = vec![Item::Held(h); count];
        assert!(matches!(
            rebuild(f, &domain, |x| (*x == h).then_some(&big)),
            Rebuilt::TooLarge
        ));
    }

    #[test]
    fn garbage_and_payload_carrying_frames_are_refused() {
        assert!(CompactProposal::decode(&[]).is_err());
        assert!(CompactProposal::decode(&[0xff; 64]).is_err());
        let domain = Domain::new("relay-test", Epoch(0));
        let txs = vec![tx(1, 10)];
        let p = proposal(&txs, &domain);
        let mut f = frame(&encode_compact(
            &p,
            p.block.payload_digest(),
            &txs,
            &[txs[0].hash()],
            |_| true,
        ));
        f.proposal.block.payload = vec![1, 2, 3];
        assert!(CompactProposal::decode(&consensus::encode(&f)).is_err());
    }
}
