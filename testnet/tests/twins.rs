//! Exhaustive Twins enumeration for n = 4 (PROTOCOL.md §8; see `testnet::twins_enum`).
//!
//! - `TWINS_ENUM_VIEWS=k` — scripted views per schedule (default 4: 6^4 = 1,296 schedules).
//! - `TWINS_ENUM_SEED_BASE=B` — schedule `i` runs with seed `B + i` (default 0).
//! - `TWINS_ENUM_THREADS=t` — worker threads (default: available parallelism).
//! - `TWINS_ENUM_MUTATION=name` — switch on a mutation canary in the honest cores (e.g.
//!   `relax_lock`); the enumeration is then expected to fail.
//! - Replay one schedule: `TWINS_ENUM_INDEX=i cargo test --release -p testnet --test twins --
//!   twins_exhaustive_enumeration_n4 --nocapture`.

use consensus::{EvidenceKind, Mutations};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use testnet::oracle::MsgClass;
use testnet::twins_enum::{self, Outcome, Schedule};

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok())
}

/// The mutation named by `TWINS_ENUM_MUTATION` (none when unset or empty).
fn mutation() -> (String, Mutations) {
    let name = std::env::var("TWINS_ENUM_MUTATION").unwrap_or_default();
    let mut m = Mutations::default();
    match name.as_str() {
        "" => {}
        "commit_without_consecutive_views" => m.commit_without_consecutive_views = true,
        "commit_on_heights" => m.commit_on_heights = true,
        "skip_persist" => m.skip_persist = true,
        "relax_lock" => m.relax_lock = true,
        "propose_on_quorum_statuses" => m.propose_on_quorum_statuses = true,
        "vote_after_timeout" => m.vote_after_timeout = true,
        other => panic!("unknown TWINS_ENUM_MUTATION {other}"),
    }
    (name, m)
}

/// Per-run result kept for the summary: the outcome or the failure text.
type RunResult = Result<Outcome, String>;

fn run_one(views: usize, seed_base: usize, index: usize) -> (Schedule, RunResult) {
    let sc = Schedule::from_index(views, index);
    let seed = (seed_base + index) as u64;
    let (mname, m) = mutation();
    let r = twins_enum::run(index, seed, &sc, m).map_err(|f| {
        format!(
            "twins enumeration failed: schedule index {index} of {} (views={views}, seed={seed}): {}\n  schedule: {}\n  violation: {}\n  replay: TWINS_ENUM_MUTATION={mname} TWINS_ENUM_VIEWS={views} TWINS_ENUM_SEED_BASE={seed_base} TWINS_ENUM_INDEX={index} cargo test --release -p testnet --test twins -- twins_exhaustive_enumeration_n4 --nocapture",
            twins_enum::count(views),
            f.scenario,
            sc.describe(),
            f.violation,
        )
    });
    (sc, r)
}

#[test]
fn twins_exhaustive_enumeration_n4() {
    let views = env_usize("TWINS_ENUM_VIEWS").unwrap_or(4);
    let seed_base = env_usize("TWINS_ENUM_SEED_BASE").unwrap_or(0);
    let total = twins_enum::count(views);

    if let Some(index) = env_usize("TWINS_ENUM_INDEX") {
        assert!(
            index < total,
            "TWINS_ENUM_INDEX={index} out of range 0..{total}"
        );
        let (sc, r) = run_one(views, seed_base, index);
        match r {
            Ok(o) => println!(
                "twins_enum #{index} ({}): ok, heal at {}ms, heights {}..{}, evidence {:?}, equivocations {:?}, trace {}",
                sc.describe(),
                o.heal_at,
                o.report.min_height.0,
                o.report.max_height.0,
                o.evidence_kinds,
                o.equivocation_classes,
                hex::encode(o.report.trace_hash),
            ),
            Err(e) => panic!("{e}"),
        }
        return;
    }

    let threads = env_usize("TWINS_ENUM_THREADS")
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .clamp(1, 64);
    let t0 = Instant::now();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<RunResult>>> = Mutex::new(vec![None; total]);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let (_, r) = run_one(views, seed_base, i);
                    results.lock().expect("results lock")[i] = Some(r);
                }
            });
        }
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let results = results.into_inner().expect("results lock");

    let mut failures = Vec::new();
    let mut with_equivocation = 0usize;
    let mut with_evidence = 0usize;
    let mut evidence_items = 0usize;
    let mut evidence_by_kind: BTreeMap<EvidenceKind, usize> = BTreeMap::new();
    let mut equivocation_by_class: BTreeMap<MsgClass, usize> = BTreeMap::new();
    let mut min_height = u64::MAX;
    let mut heal_max = 0u64;
    let mut capped = Vec::new();
    let mut events = 0u64;
    for (i, r) in results.into_iter().enumerate() {
        match r.expect("every schedule ran") {
            Ok(o) => {
                if !o.equivocation_classes.is_empty() {
                    with_equivocation += 1;
                }
                if !o.evidence_kinds.is_empty() {
                    with_evidence += 1;
                }
                evidence_items += o.evidence_kinds.len();
                for k in &o.evidence_kinds {
                    *evidence_by_kind.entry(*k).or_default() += 1;
                }
                for c in &o.equivocation_classes {
                    *equivocation_by_class.entry(*c).or_default() += 1;
                }
                min_height = min_height.min(o.report.min_height.0);
                heal_max = heal_max.max(o.heal_at);
                if o.heal_at >= twins_enum::HEAL_CAP_MS {
                    capped.push(i);
                }
                events += o.report.events;
            }
            Err(e) => failures.push(e),
        }
    }
    println!(
        "twins exhaustive n=4: {views} views × (2 leaders × {} partitions) = {total} schedules, all run, {} failed, in {elapsed:.1}s on {threads} threads ({events} core events)",
        twins_enum::N_PARTITIONS,
        failures.len(),
    );
    println!(
        "  schedules with equivocation delivered to honest nodes: {with_equivocation}; with evidence: {with_evidence}; evidence items {evidence_items} {evidence_by_kind:?}; equivocations {equivocation_by_class:?}"
    );
    println!(
        "  lowest honest height at the end {min_height}; latest heal {heal_max}ms; {} schedules healed at the cap {}ms (first: {:?})",
        capped.len(),
        twins_enum::HEAL_CAP_MS,
        capped.iter().take(8).collect::<Vec<_>>()
    );
    for e in failures.iter().take(10) {
        eprintln!("{e}");
    }
    assert!(
        failures.is_empty(),
        "{} of {total} twins schedules failed; first:\n{}",
        failures.len(),
        failures[0]
    );
}
