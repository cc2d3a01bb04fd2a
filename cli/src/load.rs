//! `bftnode load`: an open-loop load generator.
//!
//! ```text
//!  pacer thread ──► batches of due txs ──► POST /txs, round-robin over --rpc nodes
//!                                           (≤ --concurrency requests in flight; a node
//!                                           that does not answer is passed over for 1 s
//!                                           and the batch goes to the next one)
//!                                           records hash → intended send instant
//!  watcher ──► GET /events on the first node (server-sent events, subscribed before the
//!              first submission): hash → instant its block's commit event arrived
//! ```
//!
//! Transactions are unique puts (`load-<run>-<seq>`, a value of `--size` bytes). Submission is
//! open loop: transaction `seq` is due at `start + seq / rate`, so a slow request delays later
//! batches but does not lower the total. A dedicated thread ([`pace`]) keeps the time: it sleeps
//! until the next transaction's intended instant (the OS timer, ~0.1 ms late; tokio's timer
//! wheel rounds every sleep up to its 1 ms tick) and hands what is due to the async side, at
//! most once per [`MIN_GAP`], so a request carries one transaction at low rates and
//! `rate × MIN_GAP` at high ones; what falls due while `--concurrency` requests are in flight
//! leaves merged, up to `--batch` per request ([`coalesce`]). After `--duration` the generator
//! stops submitting and drains: it waits up to `--drain` seconds for every accepted
//! transaction to commit.
//!
//! Latency is measured from each transaction's **intended** send instant (not from when its
//! request left, which a saturated node or a busy concurrency limit delays: the correction
//! HdrHistogram calls coordinated omission), to the arrival of the commit event that carries
//! it. Throughput is taken over the middle half of the submission period (steady state: the
//! pipeline is full, no drain), next to the whole-run figure.

use crate::{
    client::{Client, NodeAnswered},
    output::{self, Format},
};
use anyhow::{Context as _, bail};
use eventsource_stream::Eventsource as _;
use futures::StreamExt as _;
use node::app::DEFAULT_TX_LIFETIME;
use node::rpc_types::{BatchRequest, BatchResponse, CommitEvent, StatusResponse, TxRequest};
use serde::Serialize;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};
use tokio::{sync::Semaphore, task::JoinSet};

/// Least time between two wakes of the pacer: bounds the request rate (at most 2,000
/// `POST /txs` a second over all nodes) and the pacer's wakes at high rates. Each wake's
/// batch is still capped by `--batch`.
const MIN_GAP: Duration = Duration::from_micros(500);
/// How often the drain loop checks for completion.
const POLL: Duration = Duration::from_millis(20);
/// How long a node that did not answer is passed over (it is still tried when every
/// node is).
const DOWN_FOR: Duration = Duration::from_secs(1);

/// What to generate.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Nodes to submit to, round-robin; the first one is also watched for commits.
    pub nodes: Vec<Client>,
    /// Target submission rate, transactions per second.
    pub rate: f64,
    /// Size of each value, bytes.
    pub size: usize,
    /// Distinct keys written, round-robin and shared by every run (`None`: a new key per
    /// transaction, unique to the run).
    pub keys: Option<u64>,
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
    /// Steady state: our transactions committed during the middle half of the submission
    /// period, per second of it (the whole run's span when it is under 2 s).
    pub committed_tps: f64,
    /// `committed / (last commit seen − first intended send)`, per second: includes pipeline
    /// fill and drain.
    pub committed_tps_overall: f64,
    /// Median intended-send → commit-event latency, ms.
    pub latency_ms_p50: f64,
    /// 99th percentile intended-send → commit-event latency, ms.
    pub latency_ms_p99: f64,
    /// 99th percentile of how late requests left against their first transaction's intended
    /// instant, ms (the generator's or the node's backlog; part of the latencies above).
    pub send_lag_ms_p99: f64,
    /// Median intended-send → answer of the transaction's `POST /txs`, ms: the part of the
    /// latency spent before the node accepted it (the pacer's lateness and the RPC round
    /// trip); the rest is the node's, from acceptance to the commit event.
    pub accept_ms_p50: f64,
    /// Transactions the node refused (mempool full, …) or whose request failed.
    pub rejected: u64,
    /// Requests re-sent to another node because the first did not answer (a crashed node:
    /// what a client with several endpoints does; a transaction commits at most once).
    pub failovers: u64,
    /// Committed blocks the event stream skipped because this client fell behind (their
    /// transactions count as not committed).
    pub missed_blocks: u64,
}

/// State shared by the submitter, its requests and the watcher.
#[derive(Default)]
struct Shared {
    /// Accepted transaction → its intended send instant.
    submitted_at: HashMap<String, Instant>,
    /// Committed transaction → when its commit event arrived.
    committed_at: HashMap<String, Instant>,
    /// Accepted transactions also seen committed (either order of arrival).
    committed: u64,
    /// Transactions sent.
    sent: u64,
    /// Transactions refused or lost with a failed request.
    rejected: u64,
    /// Per request: how late it left against its first transaction's intended instant (ms).
    send_lags_ms: Vec<f64>,
    /// Per accepted transaction: intended send instant → its request's answer (ms).
    accept_ms: Vec<f64>,
    /// Blocks the event stream skipped (`lagged` events).
    missed_blocks: u64,
    /// Requests re-sent to another node after one did not answer.
    failovers: u64,
    /// First request failure, for the final warning.
    first_failure: Option<String>,
    /// When the last of our transactions was seen committed.
    last_commit: Option<Instant>,
    /// Highest committed height seen (the watched node's status, then its commit events):
    /// each request's transactions expire [`DEFAULT_TX_LIFETIME`] heights above it, one expiry
    /// for every node a request may be re-sent to.
    height: u64,
}

impl Shared {
    fn accepted(&mut self, hash: String, intended: Instant) {
        if let Some(&seen) = self.committed_at.get(&hash) {
            self.committed += 1;
            self.last_commit = Some(self.last_commit.map_or(seen, |l| l.max(seen)));
        }
        self.submitted_at.insert(hash, intended);
    }

    fn committed(&mut self, hash: String, at: Instant) {
        if self.submitted_at.contains_key(&hash) && !self.committed_at.contains_key(&hash) {
            self.committed += 1;
            self.last_commit = Some(self.last_commit.map_or(at, |l| l.max(at)));
        }
        self.committed_at.entry(hash).or_insert(at);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The nodes submitted to: request `k` goes to node `k mod n` first; a node that did not
/// answer is tried last for [`DOWN_FOR`].
struct Targets {
    nodes: Vec<Client>,
    /// Per node: until when it counts as down.
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl Targets {
    fn new(nodes: Vec<Client>) -> Self {
        let down_until = Mutex::new(vec![None; nodes.len()]);
        Targets { nodes, down_until }
    }

    /// Node indices in the order request `k` tries them: round-robin from `k`, the nodes
    /// that are down moved to the end.
    fn order(&self, k: usize) -> Vec<usize> {
        let n = self.nodes.len();
        let now = Instant::now();
        let down = lock(&self.down_until);
        let (mut up, gone): (Vec<usize>, Vec<usize>) = (0..n)
            .map(|j| (k + j) % n)
            .partition(|i| down[*i].is_none_or(|t| t <= now));
        up.extend(gone);
        up
    }

    fn mark_down(&self, i: usize) {
        lock(&self.down_until)[i] = Some(Instant::now() + DOWN_FOR);
    }
}

/// Run the load and print the report.
pub async fn run(cfg: LoadConfig) -> anyhow::Result<()> {
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        bail!("--rate must be a positive number of transactions per second");
    }
    let watched = cfg.nodes.first().context("no --rpc node given")?.clone();
    // Every node must answer before we start.
    let mut height = 0;
    for node in &cfg.nodes {
        let status: StatusResponse = node.get(&["status"]).await?;
        height = height.max(status.committed_height);
    }
    let shared = Arc::new(Mutex::new(Shared {
        height,
        ..Shared::default()
    }));
    // Subscribed before the first submission, so no commit of ours can be missed.
    let events = watched
        .stream(&["events"])
        .await
        .context("subscribing to the commit stream (GET /events)")?;
    let watcher = tokio::spawn(watch(events, shared.clone()));

    let started = Instant::now();
    let total_due = (cfg.rate * cfg.duration.as_secs_f64()).round() as u64;
    submit_all(&cfg, total_due, started, &shared).await?;
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
    let report = report(&s, started, cfg.duration);
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

/// The instant transaction `seq` is due: `started + seq / rate`.
fn intended(started: Instant, seq: u64, rate: f64) -> Instant {
    started + Duration::from_secs_f64(seq as f64 / rate)
}

/// How many of `total` transactions are due `elapsed` after the start at `rate`: those whose
/// [`intended`] instant has come, `0 ..= ⌊rate × elapsed⌋` (transaction 0 at once). Counting
/// only ⌊rate × elapsed⌋ would send each one 1/rate late (10 ms at 100 tx/s), a delay the
/// latency figures would charge to the node.
fn due_by(elapsed: Duration, rate: f64, total: u64) -> u64 {
    ((rate * elapsed.as_secs_f64()) as u64)
        .saturating_add(1)
        .min(total)
}

/// The pacer: from `started`, hands `(first seq, count)` runs of due transactions to `out`,
/// each at most `batch` long, until `total` are handed or `out` is closed. Wakes at the next
/// transaction's intended instant, but never sooner than [`MIN_GAP`] after the last wake.
/// Blocks its thread: run it on one of its own.
fn pace(
    started: Instant,
    rate: f64,
    total: u64,
    batch: u64,
    out: &tokio::sync::mpsc::UnboundedSender<(u64, u64)>,
) {
    let mut made = 0u64;
    while made < total {
        let woke = Instant::now();
        let due = due_by(woke.saturating_duration_since(started), rate, total);
        while made < due {
            let n = (due - made).min(batch.max(1));
            if out.send((made, n)).is_err() {
                return;
            }
            made += n;
        }
        if made < total {
            let next = intended(started, made, rate).max(woke + MIN_GAP);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
    }
}

/// One request's transactions: `run` (`(first seq, count)`, as [`pace`] hands them) extended
/// by the runs already waiting in `due`, up to `batch` transactions; returns it and the part
/// of a waiting run that did not fit. The runs are contiguous, so the result is too. When
/// requests are quick every run goes alone (one transaction each at low rates); when the
/// concurrency limit held the submitter back, what fell due meanwhile leaves in as few
/// requests as `batch` allows, instead of one small request per pacer wake (at 30,000 tx/s and
/// [`MIN_GAP`], 2,000 requests a second).
fn coalesce(
    run: (u64, u64),
    due: &mut tokio::sync::mpsc::UnboundedReceiver<(u64, u64)>,
    batch: u64,
) -> ((u64, u64), Option<(u64, u64)>) {
    let (first, mut n) = run;
    let batch = batch.max(1);
    while n < batch {
        let Ok((next, m)) = due.try_recv() else {
            break;
        };
        debug_assert_eq!(next, first + n, "the pacer hands contiguous runs");
        let take = m.min(batch - n);
        n += take;
        if take < m {
            return ((first, n), Some((next + take, m - take)));
        }
    }
    ((first, n), None)
}

/// Submit `total` transactions at `cfg.rate` from `started` ([`pace`]), waiting for every
/// request to finish. Fails only if the pacing thread cannot be started.
async fn submit_all(
    cfg: &LoadConfig,
    total: u64,
    started: Instant,
    shared: &Arc<Mutex<Shared>>,
) -> anyhow::Result<()> {
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let value_fill = "x".repeat(cfg.size);
    let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let mut requests = JoinSet::new();
    let (tx, mut due) = tokio::sync::mpsc::unbounded_channel();
    let (rate, batch) = (cfg.rate, cfg.batch as u64);
    std::thread::Builder::new()
        .name("load-pacer".into())
        .spawn(move || pace(started, rate, total, batch, &tx))
        .context("starting the pacing thread")?;
    let targets = Arc::new(Targets::new(cfg.nodes.clone()));
    let mut next_node = 0usize;
    let mut last_progress = Instant::now();
    let mut carry = None;
    loop {
        let run = match carry.take() {
            Some(run) => run,
            None => match due.recv().await {
                Some(run) => run,
                None => break,
            },
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let ((first, n), rest) = coalesce(run, &mut due, batch);
        carry = rest;
        let expires_at = Some(lock(shared).height + DEFAULT_TX_LIFETIME);
        let txs: Vec<TxRequest> = (first..first + n)
            .map(|seq| TxRequest::Put {
                key: match cfg.keys {
                    Some(keys) => format!("load-{}", seq % keys),
                    None => format!("load-{run_id:x}-{seq}"),
                },
                value: value_fill.clone(),
                nonce: run_id.wrapping_add(seq),
                expires_at,
            })
            .collect();
        let due_at: Vec<Instant> = (first..first + n)
            .map(|seq| intended(started, seq, cfg.rate))
            .collect();
        let order = targets.order(next_node);
        next_node += 1;
        let (to_record, targets) = (shared.clone(), targets.clone());
        requests.spawn(async move {
            send_batch(&targets, &order, txs, &due_at, &to_record).await;
            drop(permit);
        });
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
    Ok(())
}

/// One `POST /txs` of `txs`, due at `due_at` (one instant each), to the first node of `order`
/// that answers; records the accepted hashes with their intended instants and
/// counts rejections.
async fn send_batch(
    targets: &Targets,
    order: &[usize],
    txs: Vec<TxRequest>,
    due_at: &[Instant],
    shared: &Mutex<Shared>,
) {
    let n = txs.len() as u64;
    {
        let mut s = lock(shared);
        s.sent += n;
        if let Some(first) = due_at.first() {
            let lag = Instant::now().saturating_duration_since(*first);
            s.send_lags_ms.push(lag.as_secs_f64() * 1000.0);
        }
    }
    let body = BatchRequest { txs };
    let mut answer: anyhow::Result<BatchResponse> = Err(anyhow::anyhow!("no --rpc node given"));
    for (tried, &i) in order.iter().enumerate() {
        if tried > 0 {
            lock(shared).failovers += 1;
        }
        answer = targets.nodes[i].post(&["txs"], &body).await;
        match &answer {
            // Not answered (refused, reset, timed out): maybe not delivered. Re-sending is
            // safe, a transaction commits at most once (its hash is the replay key).
            Err(e) if !e.is::<NodeAnswered>() => targets.mark_down(i),
            _ => break,
        }
    }
    let answered = Instant::now();
    let mut s = lock(shared);
    match answer {
        Ok(b) => {
            let refused = n.saturating_sub(b.hashes.len() as u64);
            s.rejected += refused.max(b.errors.len() as u64);
            // `hashes` lists the accepted transactions in request order: the positions not
            // named in `errors`.
            let rejected: std::collections::HashSet<usize> =
                b.errors.iter().map(|e| e.index).collect();
            let accepted_at = (0..due_at.len())
                .filter(|i| !rejected.contains(i))
                .map(|i| due_at[i]);
            for (hash, at) in b.hashes.into_iter().zip(accepted_at) {
                let waited = answered.saturating_duration_since(at);
                s.accept_ms.push(waited.as_secs_f64() * 1000.0);
                s.accepted(hash, at);
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

/// Read the commit stream `events` (`GET /events`), recording when each block's transactions
/// arrived. Returns only when the stream ends or breaks.
async fn watch(events: reqwest::Response, shared: Arc<Mutex<Shared>>) -> anyhow::Result<()> {
    let mut stream = events.bytes_stream().eventsource();
    while let Some(item) = stream.next().await {
        let event = item.context("reading the commit stream")?;
        let at = Instant::now();
        match event.event.as_str() {
            "commit" => {
                let block: CommitEvent = serde_json::from_str(&event.data)
                    .context("a commit event that is not a block")?;
                let mut s = lock(&shared);
                s.height = s.height.max(block.height);
                for hash in block.txs {
                    s.committed(hash, at);
                }
            }
            "lagged" => {
                let skipped = serde_json::from_str::<serde_json::Value>(&event.data)
                    .ok()
                    .and_then(|v| v["skipped"].as_u64())
                    .unwrap_or(0);
                eprintln!("warning: the commit stream skipped {skipped} blocks (client too slow)");
                lock(&shared).missed_blocks += skipped;
            }
            _ => {}
        }
    }
    bail!("the node closed the commit stream")
}

/// The report from the shared state; submission began at `started` and lasted `duration`.
fn report(s: &Shared, started: Instant, duration: Duration) -> LoadReport {
    let mut latencies: Vec<f64> = s
        .submitted_at
        .iter()
        .filter_map(|(hash, sent)| {
            let at = s.committed_at.get(hash)?;
            Some(at.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let mut lags = s.send_lags_ms.clone();
    lags.sort_by(f64::total_cmp);
    let mut accept = s.accept_ms.clone();
    accept.sort_by(f64::total_cmp);
    let first_submit = s.submitted_at.values().min().copied().unwrap_or(started);
    let span = s.last_commit.map_or(0.0, |l| {
        l.saturating_duration_since(first_submit).as_secs_f64()
    });
    let overall = if span > 0.0 {
        s.committed as f64 / span
    } else {
        0.0
    };
    // The middle half of the submission period.
    let steady = if duration >= Duration::from_secs(2) {
        let (from, to) = (started + duration / 4, started + duration * 3 / 4);
        let in_window = s
            .submitted_at
            .keys()
            .filter_map(|h| s.committed_at.get(h))
            .filter(|at| **at >= from && **at < to)
            .count();
        in_window as f64 / (to - from).as_secs_f64()
    } else {
        overall
    };
    LoadReport {
        submitted: s.sent,
        committed: s.committed,
        failovers: s.failovers,
        committed_tps: round2(steady),
        committed_tps_overall: round2(overall),
        latency_ms_p50: round2(percentile(&latencies, 50.0)),
        latency_ms_p99: round2(percentile(&latencies, 99.0)),
        send_lag_ms_p99: round2(percentile(&lags, 99.0)),
        accept_ms_p50: round2(percentile(&accept, 50.0)),
        rejected: s.rejected,
        missed_blocks: s.missed_blocks,
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
                "committed_tps_overall",
                "latency_ms_p50",
                "latency_ms_p99",
                "send_lag_ms_p99",
                "accept_ms_p50",
                "rejected",
                "failovers",
                "missed_blocks",
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
    fn a_node_that_refused_a_connection_is_tried_last_for_a_while() {
        let client = |port: u16| {
            let url = format!("http://127.0.0.1:{port}").parse().expect("url");
            Client::new(url, Duration::from_secs(1)).expect("client")
        };
        let t = Targets::new(vec![client(1), client(2), client(3)]);
        assert_eq!(t.order(0), vec![0, 1, 2]);
        assert_eq!(t.order(4), vec![1, 2, 0]);
        t.mark_down(1);
        assert_eq!(t.order(0), vec![0, 2, 1]);
        assert_eq!(t.order(1), vec![2, 0, 1]);
        lock(&t.down_until)[1] = Some(Instant::now() - Duration::from_millis(1));
        assert_eq!(t.order(1), vec![1, 2, 0]);
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
        let r = report(&s, t0, Duration::from_secs(1));
        assert_eq!(r.committed, 2);
        assert_eq!(r.latency_ms_p50, 10.0);
        assert_eq!(r.latency_ms_p99, 20.0);
        assert_eq!(r.committed_tps, 100.0, "under 2 s: the whole run");
        assert_eq!(r.committed_tps_overall, 100.0);
        let json = serde_json::to_value(&r).unwrap();
        let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "accept_ms_p50",
                "committed",
                "committed_tps",
                "committed_tps_overall",
                "failovers",
                "latency_ms_p50",
                "latency_ms_p99",
                "missed_blocks",
                "rejected",
                "send_lag_ms_p99",
                "submitted"
            ]
        );
    }

    /// Steady-state throughput counts only commits inside the middle half of the submission
    /// period; latency runs from the intended instant, however late the request left.
    #[test]
    fn steady_state_and_intended_start() {
        let t0 = Instant::now();
        let mut s = Shared::default();
        // 4 s run at 10 tx/s: tx i due at i × 100 ms, committed 50 ms after it was due,
        // except that the first 10 sit in a backlog and commit at 1.5 s.
        for i in 0..40u64 {
            let due = intended(t0, i, 10.0);
            let at = if i < 10 {
                t0 + Duration::from_millis(1500)
            } else {
                due + Duration::from_millis(50)
            };
            s.accepted(format!("t{i}"), due);
            s.committed(format!("t{i}"), at);
        }
        let r = report(&s, t0, Duration::from_secs(4));
        // Window [1 s, 3 s): the backlog's 10 at 1.5 s and txs 10..=29 (committed 1.05–2.95 s).
        assert_eq!(r.committed_tps, 15.0);
        assert_eq!(
            r.latency_ms_p99, 1500.0,
            "tx 0: due at 0, committed at 1.5 s"
        );
        assert_eq!(r.latency_ms_p50, 50.0);
    }

    /// The pacer hands every transaction exactly once, in order, in runs of at most `batch`.
    #[test]
    fn pacer_hands_each_transaction_once_in_order() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        pace(Instant::now(), 200_000.0, 1_000, 7, &tx);
        drop(tx);
        let mut next = 0;
        while let Ok((first, n)) = rx.try_recv() {
            assert_eq!(first, next, "contiguous");
            assert!((1..=7).contains(&n), "{n}");
            next += n;
        }
        assert_eq!(next, 1_000);
    }

    /// Runs waiting behind a request are merged into it up to `batch`, in order, each
    /// transaction once.
    #[test]
    fn waiting_runs_are_merged_up_to_the_batch() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        assert_eq!(
            coalesce((0, 3), &mut rx, 10),
            ((0, 3), None),
            "nothing waits"
        );
        for run in [(3, 4), (7, 5), (12, 1)] {
            tx.send(run).unwrap();
        }
        assert_eq!(
            coalesce((0, 3), &mut rx, 10),
            ((0, 10), Some((10, 2))),
            "3 + 4 + 3 of the next run; its last 2 carry over"
        );
        assert_eq!(coalesce((10, 2), &mut rx, 10), ((10, 3), None));
        assert_eq!(
            coalesce((13, 20), &mut rx, 10),
            ((13, 20), None),
            "a run is never split"
        );
    }

    /// A transaction is sent once its intended instant has come, not one interval later:
    /// transaction 0 at the start, transaction k at k / rate.
    #[test]
    fn due_from_the_intended_instant() {
        let ms = Duration::from_millis;
        assert_eq!(due_by(ms(0), 100.0, 50), 1, "tx 0 is due at once");
        assert_eq!(due_by(ms(9), 100.0, 50), 1);
        assert_eq!(due_by(ms(10), 100.0, 50), 2, "tx 1 is due at 10 ms");
        assert_eq!(due_by(ms(495), 100.0, 50), 50, "tx 49 is due at 490 ms");
        assert_eq!(
            due_by(ms(10_000), 100.0, 50),
            50,
            "never more than the total"
        );
    }
}
