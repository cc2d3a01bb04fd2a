//! Simulator scenarios (see `testnet/src/scenario.rs`).
use testnet::scenario;

#[test]
fn smoke() {
    for name in scenario::names() {
        for seed in 0..3u64 {
            let t = std::time::Instant::now();
            let r = scenario::run(&name, seed);
            match r {
                Ok(r) => println!(
                    "{name} seed={seed} n={} ok: h={}..{} evid={} eq={} events={} {:?}",
                    scenario::n_for(seed), r.min_height.0, r.max_height.0, r.evidence, r.equivocations, r.events, t.elapsed()
                ),
                Err(f) => println!("{name} seed={seed} FAIL {f} ({:?})", t.elapsed()),
            }
        }
    }
}
