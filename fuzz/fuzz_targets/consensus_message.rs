//! `/bftnode/consensus/1` frame bodies: `ConsensusMessage::decode` (borsh, 4 MiB cap), as the
//! driver runs it on every `NetworkEvent::Consensus` (node/src/driver/mod.rs `on_network`).
//! Then: canonical round trip, the accessors the driver logs, the block payload decoders
//! (`app::summarize`, `app::apply_block`) and evidence checks for a proposal's block, and the
//! consensus core's own handling of the message (structural checks, certificate and signature
//! verification) on a fresh core of the 4-validator fixture.
#![no_main]

use bftnode_fuzz::{N, assert_round_trip, exercise_block, fresh_core};
use consensus::{ConsensusMessage, Event, ValidatorIndex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = ConsensusMessage::decode(data) else {
        return;
    };
    assert_round_trip(&msg, data, "ConsensusMessage");
    let _ = (msg.author(), msg.kind());
    let view = msg.view();
    match &msg {
        ConsensusMessage::Proposal(p) => exercise_block(&p.block),
        ConsensusMessage::Timeout(t) => {
            let _ = t.body();
        }
        _ => {}
    }
    // The receiving core: the leader of the next view (votes go there), never the sender.
    let me = ((view.0 % N as u64) as u16 + 1) % N as u16;
    let mut from = msg.author().map_or(1, |a| a.0 % N as u16);
    if from == me {
        from = (me + 1) % N as u16;
    }
    let mut core = fresh_core(me);
    let _ = core.handle(
        1,
        Event::Message {
            from: ValidatorIndex(from),
            msg,
        },
    );
    let _ = core.status(1);
});
