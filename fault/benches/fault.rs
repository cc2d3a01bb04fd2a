//! Benchmarks: `leader(v)` with a full reputation window (n = 4, 16, 100), on a precomputed
//! cut and on an old cut computed on demand; `on_commit`; and `Evidence::verify` per kind.

#[path = "../tests/common/mod.rs"]
mod common;

use common::*;
use consensus::{FaultPolicy, View};
use criterion::{Criterion, criterion_group, criterion_main};
use fault::{FaultConfig, FaultTolerance};
use std::hint::black_box;

/// A policy with `W + slack` committed blocks, one per view, all voting, some skips.
fn filled(n: usize) -> (FaultTolerance, u64, Chain) {
    let (vs, _) = validators(n);
    let cfg = FaultConfig::default();
    let mut p = FaultTolerance::new(&vs, cfg);
    let mut c = Chain::new(&vs);
    let blocks = p.replay_depth() as u64;
    let all: Vec<u16> = (0..n as u16).collect();
    let mut view = 0;
    for h in 0..blocks {
        view += 1;
        let skipped: Vec<u16> = if h % 5 == 0 {
            view += 1;
            vec![((h / 5) % n as u64) as u16]
        } else {
            vec![]
        };
        c.commit(
            &mut [&mut p],
            view,
            (h % n as u64) as u16,
            &all,
            &skipped,
            vec![],
        );
    }
    (p, view, c)
}

fn bench_leader(c: &mut Criterion) {
    for n in [4usize, 16, 100] {
        let (p, last, mut chain) = filled(n);
        let mut v = last + 1;
        c.bench_function(&format!("leader/n={n}/cached_cut"), |b| {
            b.iter(|| {
                v += 1;
                if v > last + 20 {
                    v = last + 1;
                }
                black_box(p.leader(black_box(View(v))))
            })
        });
        // A cut older than the cached ones: the table is rebuilt over the whole window.
        let old = (last - 150) | 1; // odd: never an R-th view
        c.bench_function(&format!("leader/n={n}/old_cut"), |b| {
            b.iter(|| black_box(p.leader(black_box(View(old)))))
        });
        let mut p = p;
        let all: Vec<u16> = (0..n as u16).collect();
        let mut view = last;
        c.bench_function(&format!("on_commit/n={n}"), |b| {
            b.iter_batched(
                || {
                    view += 1;
                    chain.next(view, (view % n as u64) as u16, &all, &[], vec![])
                },
                |(blk, id)| p.on_commit(&blk, id),
                criterion::BatchSize::SmallInput,
            )
        });
    }
}

fn bench_verify(c: &mut Criterion) {
    let (vs, keys) = validators(16);
    let mut evs = every_kind(&vs, &keys, 3, 50);
    evs.push(lock_violation_timeout(&vs, &keys, 3, 50));
    let names = [
        "double_vote",
        "double_proposal",
        "lock_violation_vote",
        "conflicting_timeouts",
        "invalid_proposal",
        "lock_violation_timeout",
    ];
    for (e, name) in evs.iter().zip(names) {
        c.bench_function(&format!("verify/{name}"), |b| {
            b.iter(|| black_box(e.verify(black_box(&vs))))
        });
    }
}

criterion_group!(benches, bench_leader, bench_verify);
criterion_main!(benches);
