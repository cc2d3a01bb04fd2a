//! Shared fixtures of the fuzz targets.
//!
//! The node's decoders live in the `node` crate, which links RocksDB (≈16 CPU-minutes of C++).
//! None of the decoders needs it, so their source files are compiled here as modules, unchanged:
//! `node/src/{app,mempool,config/,fault_params,queue_delay,rpc_types,relay}.rs` and `network/src/codec.rs` (whose items are
//! `pub(crate)`; the wrappers below expose them to the targets). What is fuzzed is therefore the
//! exact code the node runs.
#![allow(dead_code, unused_imports, clippy::all)]

/// `node::app`: transactions, block payloads, `apply_block`.
#[path = "../../node/src/app.rs"]
pub mod app;
/// `node::config`: `config.toml`, `genesis.json`, key file.
#[path = "../../node/src/config/mod.rs"]
pub mod config;
/// `node::fault_params`: the `[fault]` section and the chain's fault parameters (`config` uses it).
#[path = "../../node/src/fault_params.rs"]
pub mod fault_params;
/// `node::mempool` (what gossiped and RPC-submitted transactions go into).
#[path = "../../node/src/mempool.rs"]
pub mod mempool;
/// `node::queue_delay` (`config`'s default queue-delay target).
#[path = "../../node/src/queue_delay.rs"]
pub mod queue_delay;
/// `node::relay`: compact proposal frames and their rebuilding.
#[path = "../../node/src/relay.rs"]
pub mod relay;
/// `node::rpc_types`: the JSON bodies of the RPC server.
#[path = "../../node/src/rpc_types.rs"]
pub mod rpc_types;

/// `network::codec` (private in the network crate).
#[path = "../../network/src/codec.rs"]
mod net_codec;

/// Public stand-ins for the `pub(crate)` items of `network::codec`.
pub mod netcodec {
    use super::net_codec::{self, ConsensusCodec, Frame, SyncCodec};
    use libp2p::StreamProtocol;
    use libp2p::request_response::Codec as _;
    use std::io;

    /// `/bftnode/consensus/1`.
    pub const CONSENSUS_PROTOCOL: &str = "/bftnode/consensus/1";
    /// `/bftnode/sync/1`.
    pub const SYNC_PROTOCOL: &str = "/bftnode/sync/1";

    /// A request frame as read: `Ok(Some(bytes))`, `Ok(None)` for an oversized frame, or an I/O error.
    pub type ReadFrame = io::Result<Option<Vec<u8>>>;

    fn frame(f: io::Result<Frame>) -> ReadFrame {
        f.map(|f| match f {
            Frame::Data(b) => Some(b),
            Frame::Oversized { len, max } => {
                assert!(len > max, "Oversized frame within the cap");
                None
            }
        })
    }

    /// `ConsensusCodec::read_request` over `input` with cap `max`; also returns the bytes left.
    pub fn consensus_read_request(input: &[u8], max: usize) -> (ReadFrame, usize) {
        let mut c = ConsensusCodec {
            max_frame_bytes: max,
        };
        let p = StreamProtocol::new(CONSENSUS_PROTOCOL);
        let mut io = input;
        let r = futures::executor::block_on(c.read_request(&p, &mut io));
        (frame(r), io.len())
    }

    /// `ConsensusCodec::read_response` (the empty ack) over `input`.
    pub fn consensus_read_response(input: &[u8]) -> io::Result<()> {
        let mut c = ConsensusCodec { max_frame_bytes: 0 };
        let p = StreamProtocol::new(CONSENSUS_PROTOCOL);
        let mut io = input;
        futures::executor::block_on(c.read_response(&p, &mut io))
    }

    /// `ConsensusCodec::write_request` of `bytes`.
    pub fn consensus_write_request(bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut c = ConsensusCodec { max_frame_bytes: 0 };
        let p = StreamProtocol::new(CONSENSUS_PROTOCOL);
        let mut out = Vec::new();
        futures::executor::block_on(c.write_request(&p, &mut out, Frame::Data(bytes.to_vec())))?;
        Ok(out)
    }

    /// `SyncCodec::read_request` over `input`.
    pub fn sync_read_request(input: &[u8], max: usize) -> (ReadFrame, usize) {
        let mut c = SyncCodec {
            max_request_bytes: max,
            max_response_bytes: 0,
        };
        let p = StreamProtocol::new(SYNC_PROTOCOL);
        let mut io = input;
        let r = futures::executor::block_on(c.read_request(&p, &mut io));
        (frame(r), io.len())
    }

    /// `SyncCodec::read_response` over `input` with response cap `max`; also the bytes left.
    pub fn sync_read_response(
        input: &[u8],
        max: usize,
    ) -> (io::Result<Result<Vec<u8>, String>>, usize) {
        let mut c = SyncCodec {
            max_request_bytes: 0,
            max_response_bytes: max,
        };
        let p = StreamProtocol::new(SYNC_PROTOCOL);
        let mut io = input;
        let r = futures::executor::block_on(c.read_response(&p, &mut io));
        (r, io.len())
    }

    /// `SyncCodec::write_response` of `reply`.
    pub fn sync_write_response(reply: Result<Vec<u8>, String>) -> io::Result<Vec<u8>> {
        let mut c = SyncCodec {
            max_request_bytes: 0,
            max_response_bytes: 0,
        };
        let p = StreamProtocol::new(SYNC_PROTOCOL);
        let mut out = Vec::new();
        futures::executor::block_on(c.write_response(&p, &mut out, reply))?;
        Ok(out)
    }

    /// Whether `e` is the codec's frame-too-large error.
    pub fn is_frame_too_large(e: &io::Error) -> bool {
        net_codec::is_frame_too_large(e)
    }
}

use consensus::{
    Block, BlockId, Config, Core, Epoch, Event, PrivateKey, SafetyData, ValidatorIndex,
    ValidatorSet, core::Recovered, validators::test_validators,
};
use fault::{FaultConfig, FaultTolerance};
use std::sync::OnceLock;

/// Chain id of the fixture validator set.
pub const CHAIN_ID: &str = "fuzz-chain";
/// Validators in the fixture set.
pub const N: usize = 4;

/// Caps the node's driver applies (node/src/driver/; private constants there).
pub const MAX_SYNC_REQUEST_BYTES: usize = 1024;
/// `node::driver::MAX_SYNC_RESPONSE_BYTES`.
pub const MAX_SYNC_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// `node::driver::MAX_GOSSIP_BYTES`.
pub const MAX_GOSSIP_BYTES: usize = 1024 * 1024;

/// The fixture: 4 unit-weight validators (test keys) and the genesis id.
pub struct Fixture {
    /// The set.
    pub vs: ValidatorSet,
    /// Keys, `keys[i]` of `ValidatorIndex(i)`.
    pub keys: Vec<PrivateKey>,
    /// Genesis block.
    pub genesis: Block,
    /// Its id.
    pub genesis_id: BlockId,
}

/// The fixture, built once per process.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let (vs, keys) = test_validators(CHAIN_ID, Epoch(1), N).expect("test validators");
        let genesis = Block::genesis(vs.domain());
        let genesis_id = genesis.id(vs.domain());
        Fixture {
            vs,
            keys,
            genesis,
            genesis_id,
        }
    })
}

/// A fresh core of validator `me` at genesis with the node's fault policy, already started.
pub fn fresh_core(me: u16) -> Core<FaultTolerance> {
    let f = fixture();
    let policy = FaultTolerance::new(&f.vs, FaultConfig::default());
    let mut core = Core::new(
        Config::new(ValidatorIndex(me)),
        f.vs.clone(),
        PrivateKey::from_seed(f.keys[me as usize].seed()),
        policy,
        SafetyData::genesis(f.genesis_id),
        Recovered {
            committed: vec![f.genesis.clone()],
            uncommitted: vec![],
        },
    )
    .expect("fixture core");
    let _ = core.handle(0, Event::Start);
    core
}

/// What the node does with a block's payload once it has the block: summarise it for RPC and
/// apply it (both decode the payload, bounded by `PAYLOAD_DECODE_LIMIT`).
pub fn exercise_block(b: &Block) {
    let f = fixture();
    let id = b.id(f.vs.domain());
    let _ = b.header();
    let _ = b.encoded_len();
    let s = app::summarize(&b.payload, app::PAYLOAD_DECODE_LIMIT);
    let applied = app::apply_block(b, id, app::PAYLOAD_DECODE_LIMIT, |_, _| false);
    assert_eq!(s.invalid, applied.invalid_payload);
    if let Ok(p) = app::Payload::decode(&b.payload, app::PAYLOAD_DECODE_LIMIT) {
        // Canonical round trip (an empty list encodes as the empty byte string). Known finding,
        // tolerated here so the run goes on: `Payload::decode` also accepts the explicit
        // encoding of the empty list, `00 00000000` (tag 0, count 0), which re-encodes to the
        // empty byte string: two payload byte strings (so two block ids) for one payload.
        let re = p.encode();
        if re != b.payload {
            assert!(
                p.transactions().is_empty() && b.payload == EMPTY_LIST_PAYLOAD,
                "payload does not round-trip"
            );
        }
        assert_eq!(s.tx_hashes.len(), p.transactions().len());
    }
    for ev in &b.evidence {
        let _ = ev.verify(&f.vs);
        let _ = (ev.kind(), ev.key(), ev.id());
    }
}

/// The transactions the seed run's leaders propose (`gen_seeds`: view `v` proposes `v % 3` of
/// them), so a compact frame's named hashes can resolve: the stand-in for a replica's mempool.
pub fn seed_transactions(view: u64) -> Vec<app::Transaction> {
    (0..(view % 3))
        .map(|k| {
            let (key, value) = (format!("key{view}-{k}"), format!("value{k}"));
            app::Transaction::put(key, value, view, consensus::Height(view + 100))
        })
        .collect()
}

/// [`seed_transactions`] of views 0..64 by hash, built once per process.
pub fn relay_pool() -> &'static std::collections::HashMap<app::TxHash, app::Transaction> {
    static P: OnceLock<std::collections::HashMap<app::TxHash, app::Transaction>> = OnceLock::new();
    P.get_or_init(|| {
        (0..64)
            .flat_map(seed_transactions)
            .map(|tx| (tx.hash(), tx))
            .collect()
    })
}

/// The borsh encoding of `Payload::Transactions(vec![])`, which `Payload::encode` never emits.
pub const EMPTY_LIST_PAYLOAD: [u8; 5] = [0, 0, 0, 0, 0];

/// Assert borsh's canonical round trip: `encode(decode(b)) == b`.
pub fn assert_round_trip<T: borsh::BorshSerialize>(value: &T, bytes: &[u8], what: &str) {
    let re = consensus::encode(value);
    assert!(
        re == bytes,
        "{what}: re-encoding differs from the accepted input"
    );
}
