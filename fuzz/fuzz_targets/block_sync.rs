//! `/bftnode/sync/1` bodies. First input byte: even = a `BlockRequest` a peer sent us
//! (`consensus::decode::<BlockRequest>`, 1 KiB cap, driver `SyncRequest`), odd = a
//! `BlockResponse` a peer answered (`consensus::decode::<BlockResponse>`, 16 MiB cap, driver
//! `SyncResponse`). The rest is the body. Then: canonical round trip; for a response, every
//! block's id/payload/evidence checks and the core's handling of `BlocksFetched`.
#![no_main]

use bftnode_fuzz::{
    MAX_SYNC_REQUEST_BYTES, MAX_SYNC_RESPONSE_BYTES, assert_round_trip, exercise_block, fresh_core,
};
use consensus::{BlockRequest, BlockResponse, Event, ValidatorIndex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    if sel & 1 == 0 {
        let Ok(req) = consensus::decode::<BlockRequest>(body, MAX_SYNC_REQUEST_BYTES) else {
            return;
        };
        assert_round_trip(&req, body, "BlockRequest");
    } else {
        let Ok(resp) = consensus::decode::<BlockResponse>(body, MAX_SYNC_RESPONSE_BYTES) else {
            return;
        };
        assert_round_trip(&resp, body, "BlockResponse");
        for b in &resp.blocks {
            exercise_block(b);
        }
        let mut core = fresh_core(0);
        let _ = core.handle(
            1,
            Event::BlocksFetched {
                request_id: 1,
                from: ValidatorIndex(1),
                response: resp,
            },
        );
    }
});
