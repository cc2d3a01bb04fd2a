//! RocksDB store benchmarks: a synced safety write (the per-view persist-before-send cost), a
//! commit batch of 100 × 4 KiB blocks, and transaction-index point reads with 1,000,000
//! indexed transactions (`GET /tx`), and replay-guard lookups (the per-transaction replay
//! check of mempool admission and commit: nearly every lookup is for a hash that is absent).

use consensus::{
    Bitmap, Block, BlockId, Digest, Domain, Epoch, Height, QuorumCert, SafetyData, ValidatorIndex,
    View, VoteData,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use storage::{Op, RocksOptions, RocksStore, Store, TxLocation, WriteBatch};

fn block(d: &Domain, pid: BlockId, height: u64, payload: usize) -> (BlockId, Block) {
    let b = Block {
        epoch: Epoch(0),
        view: View(height),
        height: Height(height),
        parent: pid,
        justify: QuorumCert {
            data: VoteData {
                view: View(height.saturating_sub(1)),
                block_id: pid,
                height: Height(height.saturating_sub(1)),
                parent_id: Digest::ZERO,
                parent_view: View(height.saturating_sub(2)),
            },
            signers: Bitmap::default(),
            sigs: Vec::new(),
        },
        payload: vec![(height % 251) as u8; payload],
        evidence: Vec::new(),
        proposer: ValidatorIndex(0),
        skipped_leaders: Vec::new(),
    };
    (b.id(d), b)
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = RocksStore::open(dir.path(), RocksOptions::default()).expect("open");
    let d = Domain::new("bench", Epoch(0));

    let mut sd = SafetyData::genesis(Digest::ZERO);
    c.bench_function("safety_write_synced", |b| {
        b.iter(|| {
            sd.last_voted_view = View(sd.last_voted_view.0 + 1);
            s.write(WriteBatch::synced().put_safety(black_box(sd.clone())))
                .expect("write")
        })
    });

    let mut g = c.benchmark_group("commit_batch");
    g.throughput(Throughput::Elements(100));
    let mut next = 1u64;
    let mut parent = Digest::ZERO;
    g.bench_function("100x4KiB_blocks_synced", |b| {
        // Building the blocks (and hashing their ids) is outside the measurement.
        b.iter_batched(
            || {
                let mut batch = WriteBatch::synced();
                for _ in 0..100 {
                    let (id, blk) = block(&d, parent, next, 4096);
                    batch = batch.put_block(id, blk).commit(Height(next), id);
                    parent = id;
                    next += 1;
                }
                batch
            },
            |batch| s.write(batch).expect("write"),
            BatchSize::PerIteration,
        )
    });
    g.finish();

    tx_index_lookups(c, &mut s);
    recent_lookups(c, &mut s);
}

/// Transaction hash number `i` (distinct hashes; present ones are `i < INDEXED`).
fn tx_hash(i: u64) -> Digest {
    Digest(*blake3::hash(&i.to_le_bytes()).as_bytes())
}

/// Transactions in the index before the lookups are measured.
const INDEXED: u64 = 1_000_000;

fn tx_index_lookups(c: &mut Criterion, s: &mut RocksStore) {
    let loc = TxLocation {
        height: Height(1),
        block_id: Digest::ZERO,
        index: 0,
    };
    for chunk in 0..INDEXED / 10_000 {
        let mut batch = WriteBatch::new();
        for i in chunk * 10_000..(chunk + 1) * 10_000 {
            batch = batch.index_tx(tx_hash(i), loc);
        }
        s.write(batch).expect("index");
    }
    let mut g = c.benchmark_group("tx_index_lookup");
    g.throughput(Throughput::Elements(1));
    let mut absent = INDEXED;
    g.bench_function("absent", |b| {
        b.iter(|| {
            absent += 1;
            black_box(s.tx_location(&tx_hash(absent)).expect("read"))
        })
    });
    let mut present = 0u64;
    g.bench_function("present", |b| {
        b.iter(|| {
            present = (present + 7_919) % INDEXED;
            black_box(s.tx_location(&tx_hash(present)).expect("read"))
        })
    });
    g.finish();
}

/// Transactions in the replay guard (`recent`) before its lookups are measured: about a
/// 100-s window at 10,000 tx/s, all in the memtable (as in a running node, whose guard
/// memtable flushes rarely).
const RECENT: u64 = 1_000_000;

/// Replay-guard lookups as admission and commit make them: batches of 100 absent hashes
/// (`Store::recent_txs`), after the node's periodic forgetting of expired entries has left a
/// range deletion in the memtable (`Op::ForgetExpiredTxs`, every 256 heights in the node).
fn recent_lookups(c: &mut Criterion, s: &mut RocksStore) {
    let expiry = |i: u64| Height(1_000 + i % 1_000);
    for chunk in 0..RECENT / 10_000 {
        let mut batch = WriteBatch::new();
        for i in chunk * 10_000..(chunk + 1) * 10_000 {
            batch.push(Op::RecordRecentTx {
                expires_at: expiry(i),
                hash: tx_hash(i),
            });
        }
        s.write(batch).expect("record");
    }
    let mut forget = WriteBatch::new();
    forget.push(Op::ForgetExpiredTxs { below: Height(900) });
    s.write(forget).expect("forget");
    let mut g = c.benchmark_group("recent_lookup");
    g.throughput(Throughput::Elements(100));
    let mut absent = RECENT;
    g.bench_function("100_absent_after_forget", |b| {
        b.iter(|| {
            let keys: Vec<(Height, Digest)> = (0..100)
                .map(|_| {
                    absent += 1;
                    (expiry(absent), tx_hash(absent))
                })
                .collect();
            black_box(s.recent_txs(&keys))
        })
    });
    g.finish();
}

criterion_group!(store, benches);
criterion_main!(store);
