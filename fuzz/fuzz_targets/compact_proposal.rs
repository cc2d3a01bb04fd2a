//! Compact proposal frame bodies (the bytes after `relay::COMPACT_TAG` on `/bftnode/consensus/1`):
//! `CompactProposal::decode` (borsh, 4 MiB cap, payload-carrying blocks refused) and
//! `relay::rebuild` against a stand-in mempool (`relay_pool`: the seed run's transactions), as
//! the driver runs them (node/src/driver/relay.rs `on_compact_proposal`). Then: canonical round
//! trip; whatever `rebuild` returns names the block the frame's signature covers
//! (`CompactProposal::block_id`); a rebuilt proposal carries exactly the signed payload digest,
//! within the decode limit, its decoded transactions and hashes agreeing with its bytes; and the
//! rebuilt proposal goes through the block decoders and a fresh core as any proposal does.
#![no_main]

use bftnode_fuzz::app::{self, Payload};
use bftnode_fuzz::relay::{CompactProposal, Rebuilt, rebuild};
use bftnode_fuzz::{N, assert_round_trip, exercise_block, fixture, fresh_core, relay_pool};
use consensus::{ConsensusMessage, Event, ValidatorIndex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(frame) = CompactProposal::decode(data) else {
        return;
    };
    assert_round_trip(&frame, data, "CompactProposal");
    let f = fixture();
    let signed_id = frame.block_id(f.vs.domain());
    let digest = frame.payload_digest;
    let pool = relay_pool();
    match rebuild(frame, f.vs.domain(), |h| pool.get(h)) {
        Rebuilt::Complete(c) => {
            let (proposal, decoded, id) = *c;
            assert_eq!(
                id, signed_id,
                "rebuilt block id differs from the signed one"
            );
            assert_eq!(id, proposal.block.id(f.vs.domain()));
            assert_eq!(proposal.block.payload_digest(), digest);
            assert!(proposal.block.payload.len() <= app::PAYLOAD_DECODE_LIMIT);
            assert!(!decoded.invalid);
            let payload = Payload::decode(&proposal.block.payload, app::PAYLOAD_DECODE_LIMIT)
                .expect("a rebuilt payload decodes");
            assert_eq!(payload.transactions(), &decoded.txs[..]);
            for (tx, h) in decoded.txs.iter().zip(&decoded.hashes) {
                assert_eq!(tx.hash(), *h);
            }
            exercise_block(&proposal.block);
            let view = proposal.block.view;
            let me = ((view.0 % N as u64) as u16 + 1) % N as u16;
            let from = (proposal.block.proposer.0 % N as u16 + 1) % N as u16;
            let from = if from == me {
                (me + 1) % N as u16
            } else {
                from
            };
            let mut core = fresh_core(me);
            let _ = core.handle(
                1,
                Event::Message {
                    from: ValidatorIndex(from),
                    msg: ConsensusMessage::Proposal(proposal),
                },
            );
        }
        Rebuilt::Fetch { id, proposal, .. } => {
            assert_eq!(
                id, signed_id,
                "fetch asks for a block other than the signed one"
            );
            assert!(proposal.block.payload.is_empty());
        }
        Rebuilt::TooLarge => {}
    }
});
