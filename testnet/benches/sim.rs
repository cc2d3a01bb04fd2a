//! Simulator throughput: simulated commits per wall-clock second (n = 4, 100) and core events
//! per second on the happy path (n = 4, 16, 64, 100).
use criterion::{Criterion, criterion_group, criterion_main};
use std::time::{Duration, Instant};
use testnet::net::NetModel;
use testnet::{Sim, SimConfig};

fn happy(n: usize, virtual_ms: u64) -> (u64, u64, Duration) {
    let mut cfg = SimConfig::new("bench", 1, n);
    cfg.net = NetModel::fixed(10);
    cfg.oracles = false;
    let t = Instant::now();
    let mut sim = Sim::new(cfg);
    sim.run_until(virtual_ms).expect("happy path");
    let commits: u64 = sim
        .instances
        .iter()
        .filter_map(|i| i.status(sim.now))
        .map(|s| s.committed_height.0)
        .max()
        .unwrap_or(0);
    (commits, sim.events, t.elapsed())
}

fn bench(c: &mut Criterion) {
    for n in [4usize, 16, 64, 100] {
        let ms = if n >= 64 { 400 } else { 2_000 };
        let (commits, events, wall) = happy(n, ms);
        let s = wall.as_secs_f64();
        println!(
            "n={n}: {commits} commits, {events} core events in {ms} virtual ms, {s:.2}s wall: {:.0} commits/s, {:.0} events/s",
            commits as f64 / s,
            events as f64 / s
        );
    }
    let mut g = c.benchmark_group("sim_happy_path");
    g.sample_size(10);
    for n in [4usize, 16] {
        g.bench_function(format!("n{n}_500ms_virtual"), |b| b.iter(|| happy(n, 500)));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
