//! `bftnode load`: an open-loop load generator.
//!
//! ```text
//!  ticker (10 ms) ──► batches of due txs ──► POST /txs, round-robin over --rpc nodes
//!                                            (≤ --concurrency requests in flight)
//!                                            records hash → submit instant
//!  watcher ──► GET /status on one node; for each new committed height GET /blocks/{h}
//!              records hash → instant the height was first seen committed
//! ```
//!
//! Transactions are unique puts (`load-<run>-<seq>`, a value of `--size` bytes). Submission is
//! open loop: the number of transactions due is `rate × elapsed`, so a slow request delays
//! later batches but does not lower the total. After `--duration` the generator stops
//! submitting and drains: it waits up to `--drain` seconds for every accepted transaction to
//! commit. Latency is submit (request sent) → commit observed by the watcher, so it includes up
//! to one watcher poll (`POLL`) of observation delay.

use crate::{
    client::Client,
    output::{self, Format},
};
use anyhow::{Context as _, bail};
use node::rpc_types::{BatchRequest, BatchResponse, BlockResponse, StatusResponse, TxRequest};
use serde::Serialize;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tokio::{sync::Semaphore, task::JoinSet};

/// How often the submitter wakes to send the transactions that are due.
const TICK: Duration = Duration::from_millis(10);
/// How often the watcher asks for the committed height.
const POLL: Duration = Duration::from_millis(20);

/// What to generate.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Nodes to submit to, round-robin; the first one is also watched for commits.
    pub nodes: Vec<Client>,
    /// Target submission rate, transactions per second.
    pub rate: f64,
    /// Size of each value, bytes.
    pub size: usize,
    /// How long to submit.
    pub duration: Duration,
    /// Most transactions per `POST /txs`.
    pub batch: usize,
    /// Most requests in flight.
    pub concurrency: usize,
    /// How long to wait for commits after submitting stops.
    pub drain: Duration,
    /// Output format of the report.
    pub format: Format,
}

/// The report; `--output json` prints exactly these fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LoadReport {
    /// Transactions sent in a request (accepted or not).
    pub submitted: u64,
    /// Accepted transactions seen in a committed block.
    pub committed: u64,
    /// `committed / (last commit seen − first submit)`, per second.
    pub committed_tps: f64,
    /// Median submit → commit latency, ms.
    pub latency_ms_p50: f64,
    /// 99th percentile submit → commit latency, ms.
    pub latency_ms_p99: f64,
    /// Transactions the node refused (mempool full, …) or whose request failed.
    pub rejected: u64,
}

/// State shared by the submitter, its requests and the watcher.
#[derive(Default)]
struct Shared {
    /// Accepted transaction → when its request was sent.
    submitted_at: HashMap<String, Instant>,
    /// Committed transaction → when its height was first seen committed.
    committed_at: HashMap<String, Instant>,
    /// Accepted transactions also seen committed (either order of arrival).
    committed: u64,
    /// Transactions sent.
    sent: u64,
    /// Transactions refused or lost with a failed request.
    rejected: u64,
    /// First request failure, for the final warning.
    first_failure: Option<String>,
    /// When the last of our transactions was seen committed.
    last_commit: Option<Instant>,
}

impl Shared {
    fn accepted(&mut self, hash: String, at: Instant) {
        if let Some(&seen) = self.committed_at.get(&hash) {
            self.committed += 1;
            self.last_commit = Some(self.last_commit.map_or(seen, |l| l.max(seen)));
        }
        self.submitted_at.insert(hash, at);
    }

    fn committed(&mut self, hash: String, at: Instant) {
        if self.submitted_at.contains_key(&hash) && !self.committed_at.contains_key(&hash) {
            self.committed += 1;
            self.last_commit = Some(self.last_commit.map_or(at, |l| l.max(at)));
        }
        self.committed_at.entry(hash).or_insert(at);
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Run the load and print the report.
pub async fn run(cfg: LoadConfig) -> anyhow::Result<()> {
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        bail!("--rate must be a positive number of transactions per second");
    }
    let watched = cfg.nodes.first().context("no --rpc node given")?.clone();
    // Every node must answer before we start; the first one's height is where watching starts.
    let mut start_height = 0;
    for (i, node) in cfg.nodes.iter().enumerate() {
        let s: StatusResponse = node.get(&["status"]).await?;
        if i == 0 {
            start_height = s.committed_height;
        }
    }
    let shared = Arc::new(Mutex::new(Shared::default()));
    let watcher = tokio::spawn(watch(watched, start_height, shared.clone()));

    let started = Instant::now();
    let total_due = (cfg.rate * cfg.duration.as_secs_f64()).round() as u64;
    submit_all(&cfg, total_due, &shared).await;
    let submit_elapsed = started.elapsed();

    // Drain: wait until every accepted transaction is committed, or the drain period ends.
    let drain_end = Instant::now() + cfg.drain;
    let mut last_progress = Instant::now();
    loop {
        let (accepted, committed) = {
            let s = lock(&shared);
            (s.submitted_at.len() as u64, s.committed)
        };
        if committed >= accepted || Instant::now() >= drain_end || watcher.is_finished() {
            break;
        }
        if last_progress.elapsed() >= Duration::from_secs(1) {
            eprintln!("draining: {committed}/{accepted} committed");
            last_progress = Instant::now();
        }
        tokio::time::sleep(POLL).await;
    }
    watcher.abort();
    if let Ok(Err(e)) = watcher.await {
        eprintln!(
            "warning: stopped watching commits: {}",
            output::escape(&format!("{e:#}"))
        );
    }

    let s = lock(&shared);
    let report = report(&s, started);
    if let Some(failure) = &s.first_failure {
        eprintln!(
            "warning: some submissions failed; first failure: {}",
            output::escape(failure)
        );
    }
    let achieved = s.sent as f64 / submit_elapsed.as_secs_f64().max(1e-9);
    if achieved < cfg.rate * 0.95 {
        eprintln!(
            "warning: submitted at {achieved:.0} tx/s, below the target {:.0} tx/s",
            cfg.rate
        );
    }
    let pending = s.submitted_at.len() as u64 - s.committed;
    if pending > 0 {
        eprintln!(
            "warning: {pending} accepted transactions not seen committed within the {:?} drain",
            cfg.drain
        );
    }
    drop(s);
    print_report(&report, cfg.format);
    Ok(())
}

/// Submit `total` transactions at `cfg.rate`, waiting for every request to finish.
async fn submit_all(cfg: &LoadConfig, total: u64, shared: &Arc<Mutex<Shared>>) {
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let value_fill = "x".repeat(cfg.size);
    let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let mut requests = JoinSet::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut made: u64 = 0;
    let mut next_node = 0usize;
    let mut last_progress = Instant::now();
    while made < total {
        ticker.tick().await;
        let due = ((cfg.rate * started.elapsed().as_secs_f64()) as u64).min(total);
        while made < due {
            let n = (due - made).min(cfg.batch.max(1) as u64);
            let txs: Vec<TxRequest> = (made..made + n)
                .map(|seq| TxRequest::Put {
                    key: format!("load-{run_id:x}-{seq}"),
                    value: value_fill.clone(),
                    nonce: seq,
                })
                .collect();
            made += n;
            let node = cfg.nodes[next_node % cfg.nodes.len()].clone();
            next_node += 1;
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let shared = shared.clone();
            requests.spawn(async move {
                send_batch(&node, txs, &shared).await;
                drop(permit);
            });
        }
        while requests.try_join_next().is_some() {}
        if last_progress.elapsed() >= Duration::from_secs(1) {
            let s = lock(shared);
            eprintln!(
                "t={:.0}s submitted={} committed={} rejected={}",
                started.elapsed().as_secs_f64(),
                s.sent,
                s.committed,
                s.rejected
            );
            last_progress = Instant::now();
        }
    }
    while requests.join_next().await.is_some() {}
}

/// One `POST /txs`; records accepted hashes and counts rejections.
async fn send_batch(node: &Client, txs: Vec<TxRequest>, shared: &Mutex<Shared>) {
    let sent_at = Instant::now();
    let n = txs.len() as u64;
    lock(shared).sent += n;
    let answer: anyhow::Result<BatchResponse> = node.post(&["txs"], &BatchRequest { txs }).await;
    let mut s = lock(shared);
    match answer {
        Ok(b) => {
            let refused = n.saturating_sub(b.hashes.len() as u64);
            s.rejected += refused.max(b.errors.len() as u64);
            for hash in b.hashes {
                s.accepted(hash, sent_at);
            }
        }
        Err(e) => {
            s.rejected += n;
            if s.first_failure.is_none() {
                s.first_failure = Some(format!("{e:#}"));
            }
        }
    }
}

/// Follow the committed height of `node` from `from`, recording when each block's transactions
/// were first seen committed. Returns only on a persistent error.
async fn watch(node: Client, from: u64, shared: Arc<Mutex<Shared>>) -> anyhow::Result<()> {
    let mut seen = from;
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(POLL).await;
        let tip = match node.get::<StatusResponse>(&["status"]).await {
            Ok(s) => s.committed_height,
            Err(e) => {
                failures += 1;
                if failures >= 50 {
                    return Err(e);
                }
                continue;
            }
        };
        failures = 0;
        let observed = Instant::now();
        while seen < tip {
            let height = (seen + 1).to_string();
            let block: BlockResponse = match node.get(&["blocks", &height]).await {
                Ok(block) => block,
                Err(e) => {
                    failures += 1;
                    if failures >= 50 {
                        return Err(e);
                    }
                    break;
                }
            };
            failures = 0;
            let mut s = lock(&shared);
            for hash in block.tx_hashes {
                s.committed(hash, observed);
            }
            seen = block.height.max(seen + 1);
        }
    }
}

/// The report from the shared state; `started` is when submission began.
fn report(s: &Shared, started: Instant) -> LoadReport {
    let mut latencies: Vec<f64> = s
        .submitted_at
        .iter()
        .filter_map(|(hash, sent)| {
            let at = s.committed_at.get(hash)?;
            Some(at.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let first_submit = s.submitted_at.values().min().copied().unwrap_or(started);
    let span = s.last_commit.map_or(0.0, |l| {
        l.saturating_duration_since(first_submit).as_secs_f64()
    });
    LoadReport {
        submitted: s.sent,
        committed: s.committed,
        committed_tps: if span > 0.0 {
            round2(s.committed as f64 / span)
        } else {
            0.0
        },
        latency_ms_p50: round2(percentile(&latencies, 50.0)),
        latency_ms_p99: round2(percentile(&latencies, 99.0)),
        rejected: s.rejected,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Nearest-rank percentile of sorted `values`; 0 for none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn print_report(report: &LoadReport, format: Format) {
    let value = serde_json::to_value(report).unwrap_or_default();
    match format {
        // Serialized from the struct, so the keys keep their declared order.
        Format::Json => crate::emit(
            &(serde_json::to_string_pretty(report).unwrap_or_else(|_| value.to_string()) + "\n"),
        ),
        Format::Table => crate::emit(&output::fields(
            &value,
            &[
                "submitted",
                "committed",
                "committed_tps",
                "latency_ms_p50",
                "latency_ms_p99",
                "rejected",
            ],
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn commits_count_in_either_order() {
        let t0 = Instant::now();
        let mut s = Shared::default();
        s.accepted("a".into(), t0);
        s.committed("a".into(), t0 + Duration::from_millis(10));
        // Seen committed before the submit answer arrived.
        s.committed("b".into(), t0 + Duration::from_millis(20));
        s.accepted("b".into(), t0);
        // Someone else's transaction, and a duplicate sighting.
        s.committed("z".into(), t0);
        s.committed("a".into(), t0 + Duration::from_millis(30));
        s.sent = 3;
        s.rejected = 1;
        assert_eq!(s.committed, 2);
        let r = report(&s, t0);
        assert_eq!(r.committed, 2);
        assert_eq!(r.latency_ms_p50, 10.0);
        assert_eq!(r.latency_ms_p99, 20.0);
        assert_eq!(r.committed_tps, 100.0);
        let json = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "committed",
                "committed_tps",
                "latency_ms_p50",
                "latency_ms_p99",
                "rejected",
                "submitted"
            ]
        );
    }
}
