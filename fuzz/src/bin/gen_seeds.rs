//! Writes the seed corpus: `BFTNODE_SEED_DIR=<dir> gen_seeds` creates `<dir>/<target>/seed-*` from real
//! encodings. Consensus messages, blocks and sync requests come from a lock-step run of four
//! real cores (the fixture set of `bftnode_fuzz`), with a partition in the middle so timeouts,
//! statuses and TCs appear too; evidence is signed with the fixture keys; the text formats are
//! what `NodeConfig::to_toml` / `Genesis::save` / the CLI write.

#![no_main]

use bftnode_fuzz::app::{Payload, Transaction};
use bftnode_fuzz::config::{Genesis, GenesisValidator, KeyFile, NodeConfig};
use bftnode_fuzz::{N, fixture};
use consensus::{
    Action, Block, BlockRequest, BlockResponse, Config, ConsensusMessage, Core, Event, Evidence,
    Height, LaterMessage, SafetyData, SigKind, SignedVote, Timer, ValidatorIndex, View, Vote,
    core::Recovered, messages::proposal_body,
};
use fault::{FaultConfig, FaultTolerance};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

fn frame(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

struct Out {
    root: PathBuf,
    count: HashMap<String, usize>,
}

impl Out {
    fn put(&mut self, target: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        let n = self.count.entry(target.to_string()).or_default();
        let h = blake3::hash(bytes).to_hex();
        std::fs::write(dir.join(format!("seed-{}", &h[..16])), bytes).unwrap();
        *n += 1;
    }
}

fn core(i: usize) -> Core<FaultTolerance> {
    let f = fixture();
    Core::new(
        Config::new(ValidatorIndex(i as u16)),
        f.vs.clone(),
        consensus::PrivateKey::from_seed(f.keys[i].seed()),
        FaultTolerance::new(&f.vs, FaultConfig::default()),
        SafetyData::genesis(f.genesis_id),
        Recovered {
            committed: vec![f.genesis.clone()],
            uncommitted: vec![],
        },
    )
    .unwrap()
}

// Built by `cargo fuzz build` with coverage instrumentation, so it must link libFuzzer: it is
// a "fuzz target" whose init writes the seeds and exits.
libfuzzer_sys::fuzz_target!(init: { generate(); std::process::exit(0) }, |_data: &[u8]| {});

fn generate() {
    let root = std::env::var("BFTNODE_SEED_DIR").expect("set BFTNODE_SEED_DIR=<corpus dir>");
    let mut out = Out {
        root: Path::new(&root).to_path_buf(),
        count: HashMap::new(),
    };
    let f = fixture();

    // --- a lock-step run of four cores ---
    let mut cores: Vec<_> = (0..N).map(core).collect();
    let mut queue: VecDeque<(usize, Event)> = VecDeque::new();
    let mut timers: BTreeMap<(u64, usize, u64), Timer> = BTreeMap::new();
    let mut seq = 0u64;
    let mut now = 0u64;
    let mut msgs: BTreeMap<(&'static str, u64), Vec<u8>> = BTreeMap::new();
    let mut blocks: HashMap<consensus::BlockId, Block> = HashMap::new();
    let mut committed: Vec<Block> = Vec::new();
    let mut requests: Vec<BlockRequest> = Vec::new();
    let mut votes: Vec<Vote> = Vec::new();
    let mut partitioned_until: Option<u64> = None;
    let mut actions: VecDeque<(usize, Vec<Action>)> = VecDeque::new();
    for i in 0..N {
        actions.push_back((i, cores[i].handle(0, Event::Start)));
    }
    let mut steps = 0;
    while steps < 20_000 && committed.len() < 40 {
        steps += 1;
        while let Some((i, acts)) = actions.pop_front() {
            for a in acts {
                match a {
                    Action::Send { to, msg } => {
                        msgs.entry((msg.kind(), msg.view().0))
                            .or_insert_with(|| msg.encode());
                        if let ConsensusMessage::Vote(v) = &msg {
                            votes.push(v.clone());
                        }
                        queue.push_back((
                            to.0 as usize,
                            Event::Message {
                                from: ValidatorIndex(i as u16),
                                msg,
                            },
                        ));
                    }
                    Action::Broadcast(msg) => {
                        if let ConsensusMessage::Vote(v) = &msg {
                            votes.push(v.clone());
                        }
                        msgs.entry((msg.kind(), msg.view().0))
                            .or_insert_with(|| msg.encode());
                        for j in (0..N).filter(|&j| j != i) {
                            queue.push_back((
                                j,
                                Event::Message {
                                    from: ValidatorIndex(i as u16),
                                    msg: msg.clone(),
                                },
                            ));
                        }
                    }
                    Action::SetTimer { timer, at } => {
                        seq += 1;
                        timers.insert((at, i, seq), timer);
                    }
                    Action::RequestPayload { view, .. } => {
                        let payload =
                            Payload::Transactions(bftnode_fuzz::seed_transactions(view.0)).encode();
                        queue.push_back((i, Event::PayloadReady { view, payload }));
                    }
                    Action::PersistBlock { id, block } => {
                        blocks.insert(id, *block);
                    }
                    Action::Commit { blocks: bs, .. } if i == 0 => committed.extend(bs),
                    Action::FetchBlocks { request, .. } => requests.push(request),
                    _ => {}
                }
            }
        }
        // Partition once, after a few commits: every message is lost until the views time out.
        if partitioned_until.is_none() && committed.len() >= 8 {
            partitioned_until = Some(now + 5_000);
        }
        let cut = partitioned_until.is_some_and(|t| now < t);
        if let Some((to, ev)) = queue.pop_front() {
            if cut && matches!(ev, Event::Message { .. }) {
                continue;
            }
            actions.push_back((to, cores[to].handle(now, ev)));
        } else if let Some(((at, i, _), t)) = timers.pop_first() {
            now = now.max(at);
            actions.push_back((i, cores[i].handle(now, Event::Timer(t))));
        } else {
            break;
        }
    }
    eprintln!(
        "sim: {steps} steps, {} committed, {} distinct (kind, view) messages",
        committed.len(),
        msgs.len()
    );

    // consensus_message: at most 3 views per kind.
    let mut per_kind: HashMap<&str, usize> = HashMap::new();
    for ((kind, _), bytes) in &msgs {
        let n = per_kind.entry(kind).or_default();
        if *n < 3 {
            *n += 1;
            out.put("consensus_message", bytes);
        }
    }

    // compact_proposal: the run's proposals with transactions, every transaction named by hash,
    // and the same with the first one inline.
    let mut compact = 0;
    for bytes in msgs.values() {
        let Ok(ConsensusMessage::Proposal(p)) = ConsensusMessage::decode(bytes) else {
            continue;
        };
        let Ok(payload) =
            Payload::decode(&p.block.payload, bftnode_fuzz::app::PAYLOAD_DECODE_LIMIT)
        else {
            continue;
        };
        let txs = payload.transactions();
        if txs.is_empty() || compact >= 4 {
            continue;
        }
        compact += 1;
        let hashes: Vec<_> = txs.iter().map(Transaction::hash).collect();
        for first_inline in [false, true] {
            let frame = bftnode_fuzz::relay::encode_compact(
                &p,
                p.block.payload_digest(),
                txs,
                &hashes,
                |i| first_inline && i == 0,
            );
            out.put("compact_proposal", &frame[1..]);
        }
    }

    // block_sync: requests (even selector) and responses (odd selector).
    let tip = committed.last().expect("something committed").clone();
    let tip_id = tip.id(f.vs.domain());
    requests.push(BlockRequest {
        target: tip_id,
        stop_at: Height(0),
        max_blocks: 16,
    });
    for r in requests.iter().take(3) {
        let mut v = vec![0u8];
        v.extend(consensus::encode(r));
        out.put("block_sync", &v);
    }
    let top_down: Vec<Block> = committed.iter().rev().take(3).cloned().collect();
    for resp in [
        BlockResponse::default(),
        BlockResponse {
            blocks: top_down.clone(),
        },
        BlockResponse {
            blocks: vec![tip.clone()],
        },
    ] {
        let mut v = vec![1u8];
        v.extend(consensus::encode(&resp));
        out.put("block_sync", &v);
    }

    // gossip: transaction batches (even) and evidence (odd).
    let txs = vec![
        Transaction::put("k", "v", 1, Height(100)),
        Transaction::delete("k", 2, Height(100)),
    ];
    for batch in [
        txs.clone(),
        vec![Transaction::put(vec![0xffu8; 40], vec![0u8; 100], u64::MAX, Height(100))],
    ] {
        let mut v = vec![0u8];
        v.extend(consensus::encode(&batch));
        out.put("gossip", &v);
    }
    let key = &f.keys[1];
    let d = f.vs.domain();
    let view = View(7);
    let (a, b) = (consensus::Digest([1; 32]), consensus::Digest([2; 32]));
    let vote = votes.first().expect("a vote").clone();
    let vkey = &f.keys[vote.voter.0 as usize];
    let mut other = vote.data.clone();
    other.block_id = consensus::Digest([9; 32]);
    let other_sig = Vote::sign(other.clone(), vote.voter, vkey, &f.vs).sig;
    let tb = |v: View, h: View| consensus::cert::timeout_body(v, h);
    let evidence = vec![
        Evidence::DoubleProposal {
            offender: ValidatorIndex(1),
            view,
            block_a: a,
            sig_a: key.sign(d, SigKind::Proposal, &proposal_body(view, &a)),
            block_b: b,
            sig_b: key.sign(d, SigKind::Proposal, &proposal_body(view, &b)),
        },
        Evidence::ConflictingTimeouts {
            offender: ValidatorIndex(1),
            view,
            hqc_a: View(3),
            sig_a: key.sign(d, SigKind::Timeout, &tb(view, View(3))),
            hqc_b: View(4),
            sig_b: key.sign(d, SigKind::Timeout, &tb(view, View(4))),
        },
        Evidence::DoubleVote {
            offender: vote.voter,
            a: SignedVote {
                data: vote.data.clone(),
                sig: vote.sig,
            },
            b: SignedVote {
                data: other,
                sig: other_sig,
            },
        },
        Evidence::LockViolation {
            offender: vote.voter,
            vote: SignedVote {
                data: vote.data.clone(),
                sig: vote.sig,
            },
            later: LaterMessage::Timeout {
                view: View(vote.data.view.0 + 2),
                hqc_view: View(0),
                sig: vkey.sign(
                    d,
                    SigKind::Timeout,
                    &tb(View(vote.data.view.0 + 2), View(0)),
                ),
            },
        },
        Evidence::InvalidProposal {
            offender: tip.proposer,
            header: tip.header(),
            sig: consensus::Signature([0; 64]),
            parent: Some(committed[committed.len() - 2].header()),
        },
    ];
    for ev in &evidence {
        let mut v = vec![1u8];
        v.extend(consensus::encode(ev));
        out.put("gossip", &v);
    }

    // network_frame: [selector, cap/4, stream...].
    let small = consensus::encode(&requests[0]);
    out.put(
        "network_frame",
        &[&[0u8, 255][..], &frame(b"hello")].concat(),
    );
    out.put("network_frame", &[&[1u8, 255][..], &frame(&small)].concat());
    out.put(
        "network_frame",
        &[&[2u8, 255, 0][..], &frame(&small)].concat(),
    );
    out.put(
        "network_frame",
        &[&[2u8, 255, 1][..], &frame(b"unknown block")].concat(),
    );
    out.put(
        "network_frame",
        &[&[0u8, 1][..], &frame(&[0u8; 16])].concat(),
    );
    out.put("network_frame", &[3u8, 0]);

    // rpc_body: [selector, body...].
    for (sel, body) in [
        (0u8, r#"{"op":"put","key":"k","value":"v","nonce":1}"#),
        (0, r#"{"op":"delete","key":"k\u00e9","nonce":2}"#),
        (0, r#"{"op":"put","key":"a","value":""}"#),
        (
            1,
            r#"{"txs":[{"op":"put","key":"a","value":"1"},{"op":"delete","key":"b","nonce":18446744073709551615}]}"#,
        ),
        (1, r#"{"txs":[]}"#),
        (2, "12345"),
        (
            2,
            "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
        ),
        (2, "some%20key"),
    ] {
        out.put("rpc_body", &[&[sel][..], body.as_bytes()].concat());
    }

    // config_toml: what `init_home` writes, and a minimal file.
    let cfg = NodeConfig::new(
        "fuzz-chain",
        "127.0.0.1:26656".parse().unwrap(),
        "127.0.0.1:8000".parse().unwrap(),
    );
    out.put("config_toml", cfg.to_toml().unwrap().as_bytes());
    out.put(
        "config_toml",
        b"chain_id = \"c\"\np2p_listen = \"[::1]:1\"\nlog_level = \"node=debug,info\"\n[block]\nmax_block_bytes = 2097152\n",
    );

    // genesis_json: [selector, text] (even = genesis, odd = key file).
    let g = Genesis {
        chain_id: "fuzz-chain".into(),
        epoch: 1,
        genesis_time_ms: 1_700_000_000_000,
        validators: f
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| GenesisValidator {
                public_key: k.public(),
                power: 1 + i as u64,
                name: Some(format!("v{i}")),
            })
            .collect(),
        fault: Default::default(),
    };
    out.put(
        "genesis_json",
        &[
            &[0u8][..],
            serde_json::to_string_pretty(&g).unwrap().as_bytes(),
        ]
        .concat(),
    );
    let g1 = Genesis {
        validators: g.validators[..1].to_vec(),
        ..g.clone()
    };
    out.put(
        "genesis_json",
        &[&[0u8][..], serde_json::to_string(&g1).unwrap().as_bytes()].concat(),
    );
    let kf = KeyFile {
        public_key: hex::encode(f.keys[0].public().0),
        secret_seed: hex::encode(f.keys[0].seed()),
    };
    out.put(
        "genesis_json",
        &[
            &[1u8][..],
            serde_json::to_string_pretty(&kf).unwrap().as_bytes(),
        ]
        .concat(),
    );

    let mut c: Vec<_> = out.count.into_iter().collect();
    c.sort();
    eprintln!("seeds written: {c:?}");
}
