//! The length-prefixed codecs of network/src/codec.rs, fed raw stream bytes. First input byte
//! selects the reader (mod 4): 0 `ConsensusCodec::read_request`, 1 `SyncCodec::read_request`,
//! 2 `SyncCodec::read_response` (tag ‖ frame), 3 `ConsensusCodec::read_response` (empty ack);
//! the second byte sets the cap (small caps so the oversize path is reached). A frame read must
//! be within the cap and re-encode to exactly the bytes consumed.
#![no_main]

use bftnode_fuzz::netcodec::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [sel, cap, stream @ ..] = data else {
        return;
    };
    let max = *cap as usize * 4;
    match sel % 4 {
        0 | 1 => {
            let (r, left) = if sel % 4 == 0 {
                consensus_read_request(stream, max)
            } else {
                sync_read_request(stream, max)
            };
            match r {
                Ok(Some(body)) => {
                    assert!(body.len() <= max);
                    let consumed = &stream[..stream.len() - left];
                    let re = consensus_write_request(&body).expect("write_request");
                    assert_eq!(re, consumed, "request frame does not round-trip");
                }
                Ok(None) => {
                    // Oversized: only the 4-byte header was read.
                    assert_eq!(stream.len() - left, 4);
                }
                Err(e) => assert!(!is_frame_too_large(&e)),
            }
        }
        2 => {
            let (r, left) = sync_read_response(stream, max);
            let consumed = &stream[..stream.len() - left];
            match r {
                Ok(Ok(body)) => {
                    assert!(body.len() <= max);
                    let re = sync_write_response(Ok(body)).expect("write_response");
                    assert_eq!(re, consumed, "sync response does not round-trip");
                }
                Ok(Err(msg)) => {
                    // The error text is decoded lossily: it must still re-encode and read back.
                    let re = sync_write_response(Err(msg)).expect("write_response");
                    let (back, rest) = sync_read_response(&re, max);
                    assert_eq!(rest, 0);
                    assert!(matches!(back, Ok(Err(_))));
                }
                Err(_) => {}
            }
        }
        _ => {
            let r = consensus_read_response(stream);
            assert_eq!(r.is_ok(), stream.is_empty());
        }
    }
});
