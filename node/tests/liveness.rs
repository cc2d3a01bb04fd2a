//! Liveness under one crashed or partitioned validator (issue 6: "one crashed validator must
//! not stall the chain"), with four in-process validators over real QUIC on 127.0.0.1 and real
//! RocksDB in tempdirs, at the **default** consensus timing (τ_base = 1 s, Δ = 100 ms; only the
//! RPC listener is moved to an ephemeral port), under a 200 tx/s trickle of transactions.
//!
//! * `crash_of_a_non_leader_keeps_commits_flowing`, `crash_of_the_leader_keeps_commits_flowing`:
//!   measure the committed-height rate over 10 s, crash one validator and keep it down for 20 s.
//!   Where iptables is usable the crash is silent, as `kill -9` is for the peers: the node's
//!   UDP port is dropped first, then it is stopped (a clean stop alone closes its QUIC
//!   connections, which the peers notice at once). The target is that commits resume
//!   within 2·τ_base and continue; the tests print the measured figures next to that target and
//!   assert bounds wide enough for a noisy shared 2-core machine that the old behaviour still
//!   fails: longest gap between commits < 5 s, rate ≥ 30 % of the healthy rate. (Before the
//!   fix: 35–45 s without a commit on the testnet; here gaps of 8–20 s and 0–14 % of the
//!   healthy rate. After it: gaps of 1–2 s and ~90 %.)
//! * `partition_3_1_majority_commits_minority_catches_up`: drop all UDP to and from the
//!   leader's QUIC port on `lo` with iptables for 30 s; the majority keeps committing (longest
//!   gap < 10 s, rate ≥ 30 % of healthy; before the fix 7–15 s and 11–13 %), the minority
//!   never commits beyond the majority nor forks, and after the heal it catches up (≤ 60 s)
//!   and all four chains match. Skipped, with a loud `SKIPPED: iptables unavailable` line,
//!   where iptables is missing or not permitted.
//!
//! These are progress assertions with wide bounds, not speed measurements; the exact figures
//! are printed (`--nocapture`). Each test's iptables rules name only its own cluster's ports,
//! carry the comment `bftnode-test-<pid>`, and are removed by a drop guard (also on panic);
//! rules of a killed earlier run are removed at the next run. `testnet/liveness.sh` measures
//! the same on a real `testnet/up.sh` testnet with `kill -9`.

mod common;

use common::*;
use node::ConfigOverrides;
use node::NodeHandle;
use node::rpc_types::{BatchRequest, BatchResponse, TxRequest, ValidatorResponse};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How often each node's `/status` is sampled.
const POLL: Duration = Duration::from_millis(100);
/// Window before the fault over which the healthy commit rate is measured, after a warm-up
/// with the load and the samplers running.
const HEALTHY: Duration = Duration::from_secs(10);
const WARMUP: Duration = Duration::from_secs(2);
/// How long a crashed validator stays down while the survivors are measured.
const CRASH_HOLD: Duration = Duration::from_secs(20);
/// How long the 3|1 partition lasts.
const PARTITION_HOLD: Duration = Duration::from_secs(30);
/// Transactions per batch and batches per second of the background load (200 tx/s, the load
/// of the report).
const LOAD_BATCH: usize = 20;
const LOAD_PERIOD: Duration = Duration::from_millis(100);

/// Asserted bounds (generous: a shared, noisy 2-core CI machine; the old code had 35–40 s
/// without any commit). The issue's own target (2·τ_base) is printed next to the measurement.
const CRASH_MAX_GAP: Duration = Duration::from_secs(5);
const CRASH_MIN_RATE_RATIO: f64 = 0.30;
/// For the partition (the cut-off validator keeps running, and both sides keep redialling) the
/// gap bound is looser.
const PARTITION_MAX_GAP: Duration = Duration::from_secs(10);
const PARTITION_MIN_RATE_RATIO: f64 = 0.30;
/// The healed minority must reach the majority's height (at the heal) within this long
/// (redial backoff ≤ 5 s + QUIC handshake + block sync).
const CATCH_UP: Duration = Duration::from_secs(60);

/// Default timing, RPC on an ephemeral port.
fn defaults() -> ConfigOverrides {
    if std::env::var("NODE_TEST_LOG").is_ok() {
        node::init_logging(node::config::LogFormat::Text, "info");
    }
    ConfigOverrides {
        rpc_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// ---- cluster --------------------------------------------------------------------------------

/// Nodes are numbered by home (0..n); validator indices follow public-key order and differ.
struct Cluster {
    _dir: tempfile::TempDir,
    nodes: Vec<Option<NodeHandle>>,
    /// RPC address of each node (kept after it stops, for the samplers).
    addrs: Vec<SocketAddr>,
    /// Validator index of each home.
    vindex: Vec<u16>,
    /// QUIC (UDP) port of each home.
    p2p_ports: Vec<u16>,
    /// Consensus timing in force (from the homes' config with our overrides).
    tau_base_ms: u64,
    delta_ms: u64,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let homes: Vec<PathBuf> = testnet(dir.path(), n);
        let loaded = node::config::load_home(&homes[0], &defaults()).unwrap();
        let (tau_base_ms, delta_ms) = (
            loaded.config.consensus.timeout_base_ms,
            loaded.config.consensus.delta_ms,
        );
        let mut cl = Cluster {
            _dir: dir,
            nodes: Vec::new(),
            addrs: Vec::new(),
            vindex: Vec::new(),
            p2p_ports: Vec::new(),
            tau_base_ms,
            delta_ms,
        };
        for h in &homes {
            let port = node::config::load_home(h, &defaults())
                .unwrap()
                .config
                .p2p_listen
                .port();
            let n = node::spawn(h, defaults()).await.unwrap();
            cl.addrs.push(n.rpc_addr());
            cl.vindex.push(n.index());
            cl.p2p_ports.push(port);
            cl.nodes.push(Some(n));
        }
        cl
    }

    fn home_of(&self, index: u16) -> usize {
        self.vindex.iter().position(|&v| v == index).unwrap()
    }

    fn tau_base(&self) -> Duration {
        Duration::from_millis(self.tau_base_ms)
    }

    /// Crash node `i` (it is not restarted); returns how long that took and, where iptables
    /// is usable, the rules that keep its port silent. An in-process node can only be stopped
    /// cleanly, which closes its QUIC connections and tells the peers at once; `kill -9` tells
    /// them nothing (the connections go quiet until QUIC's idle timeout). So when iptables is
    /// usable, all UDP to and from the node's port is dropped first, and the stop is silent.
    async fn crash(&mut self, i: usize) -> (Duration, Option<Blackhole>) {
        let t = Instant::now();
        let silence = iptables_usable().then(|| Blackhole::cut(self.p2p_ports[i]));
        let n = self.nodes[i].take().expect("node is running");
        n.stop().await.unwrap();
        (t.elapsed(), silence)
    }

    /// The node leading the highest view any node reports right now, and that view.
    async fn current_leader(&self, c: &reqwest::Client) -> (usize, u64) {
        let mut best: Option<(u64, u16)> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            if n.is_some()
                && let Some(s) = status(c, self.addrs[i]).await
                && best.is_none_or(|(v, _)| s.view > v)
            {
                best = Some((s.view, s.leader));
            }
        }
        let (view, leader) = best.expect("no node answers /status");
        (self.home_of(leader), view)
    }

    async fn shutdown(self) {
        for n in self.nodes.into_iter().flatten() {
            n.stop().await.unwrap();
        }
    }
}

async fn height(c: &reqwest::Client, addr: SocketAddr) -> u64 {
    status(c, addr).await.map_or(0, |s| s.committed_height)
}

async fn wait_all_at(c: &reqwest::Client, cl: &Cluster, idx: &[usize], target: u64, secs: u64) {
    for &i in idx {
        let a = cl.addrs[i];
        let ok = wait_until(secs, || async { height(c, a).await >= target }).await;
        let h = height(c, a).await;
        assert!(ok, "node {i} stuck at height {h}, wanted {target}");
    }
}

/// Committed chains of `idx` agree block by block on heights `1..=up_to`.
async fn assert_chains_match(c: &reqwest::Client, cl: &Cluster, idx: &[usize], up_to: u64) {
    for h in 1..=up_to {
        let reference = block(c, cl.addrs[idx[0]], h)
            .await
            .unwrap_or_else(|| panic!("node {} lacks height {h}", idx[0]));
        for &i in &idx[1..] {
            let b = block(c, cl.addrs[i], h)
                .await
                .unwrap_or_else(|| panic!("node {i} lacks height {h}"));
            assert_eq!(
                b.id, reference.id,
                "node {i} differs from node {} at {h}",
                idx[0]
            );
        }
    }
}

/// Transactions in the committed blocks `(from, to]` of the node at `addr`.
async fn txs_committed(c: &reqwest::Client, addr: SocketAddr, from: u64, to: u64) -> usize {
    let mut n = 0;
    for h in from + 1..=to {
        n += block(c, addr, h).await.map_or(0, |b| b.tx_count);
    }
    n
}

// ---- height sampling ------------------------------------------------------------------------

/// `(when, committed height)` samples of one node.
type Samples = Arc<Mutex<Vec<(Instant, u64)>>>;

/// Polls every node's `/status` every [`POLL`] in the background and keeps `(when, committed
/// height)` per node. A stopped or unreachable node simply has no samples.
struct Sampler {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    samples: Vec<Samples>,
}

impl Sampler {
    fn start(addrs: &[SocketAddr]) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let c = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let mut tasks = Vec::new();
        let mut samples = Vec::new();
        for &a in addrs {
            let out = Arc::new(Mutex::new(Vec::new()));
            let (stop, out2, c) = (stop.clone(), out.clone(), c.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(s) = status(&c, a).await {
                        out2.lock()
                            .unwrap()
                            .push((Instant::now(), s.committed_height));
                    }
                    tokio::time::sleep(POLL).await;
                }
            }));
            samples.push(out);
        }
        Sampler {
            stop,
            tasks,
            samples,
        }
    }

    /// The commits seen on any of `nodes`: the instants at which their highest committed
    /// height rose, with the new height.
    fn timeline(&self, nodes: &[usize]) -> Timeline {
        let mut all: Vec<(Instant, u64)> = nodes
            .iter()
            .flat_map(|&i| self.samples[i].lock().unwrap().clone())
            .collect();
        all.sort();
        let mut events: Vec<(Instant, u64)> = Vec::new();
        for (t, h) in all {
            if events.last().is_none_or(|&(_, m)| h > m) {
                events.push((t, h));
            }
        }
        Timeline { events }
    }

    /// Highest height node `i` was ever seen at within `[a, b]`.
    fn max_in(&self, i: usize, a: Instant, b: Instant) -> Option<u64> {
        self.samples[i]
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t >= a && *t <= b)
            .map(|&(_, h)| h)
            .max()
    }

    /// Stop sampling; what was sampled stays readable.
    async fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in std::mem::take(&mut self.tasks) {
            t.await.unwrap();
        }
    }
}

/// Commit instants of a set of nodes (their highest committed height over time).
struct Timeline {
    events: Vec<(Instant, u64)>,
}

/// What a timeline shows over one window.
#[derive(Debug)]
struct Window {
    len: Duration,
    heights: u64,
    /// Heights per second.
    rate: f64,
    /// Time from the window's start to the first commit in it.
    first_commit: Option<Duration>,
    /// Longest interval without a commit, counting from the window's start and up to its end.
    longest_gap: Duration,
    /// Where that interval starts, from the window's start.
    longest_gap_from: Duration,
}

impl Timeline {
    /// Highest height seen at or before `t`.
    fn height_at(&self, t: Instant) -> u64 {
        self.events
            .iter()
            .take_while(|(e, _)| *e <= t)
            .last()
            .expect("no sample before the window starts")
            .1
    }

    fn window(&self, a: Instant, b: Instant) -> Window {
        let inside: Vec<Instant> = self
            .events
            .iter()
            .filter(|(t, _)| *t > a && *t <= b)
            .map(|&(t, _)| t)
            .collect();
        let (mut longest_gap, mut longest_gap_from) = (Duration::ZERO, Duration::ZERO);
        let mut prev = a;
        for &t in inside.iter().chain(std::iter::once(&b)) {
            if t - prev > longest_gap {
                (longest_gap, longest_gap_from) = (t - prev, prev - a);
            }
            prev = t;
        }
        let heights = self.height_at(b) - self.height_at(a);
        let len = b - a;
        Window {
            len,
            heights,
            rate: heights as f64 / secs(len),
            first_commit: inside.first().map(|&t| t - a),
            longest_gap,
            longest_gap_from,
        }
    }
}

// ---- background transaction load ------------------------------------------------------------

/// Submits [`LOAD_BATCH`] unique puts every [`LOAD_PERIOD`], round-robin over `targets`.
struct Load {
    stop: Arc<AtomicBool>,
    targets: Arc<Mutex<Vec<SocketAddr>>>,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Load {
    fn start(tag: &'static str, targets: Vec<SocketAddr>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(Mutex::new(targets));
        let accepted = Arc::new(AtomicU64::new(0));
        let c = client();
        let task = {
            let (stop, targets, accepted) = (stop.clone(), targets.clone(), accepted.clone());
            tokio::spawn(async move {
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let to = {
                        let t = targets.lock().unwrap();
                        t[round as usize % t.len()]
                    };
                    let txs = (0..LOAD_BATCH as u64)
                        .map(|i| TxRequest::Put {
                            key: format!("{tag}-{round}-{i}"),
                            value: format!("v{round}"),
                            nonce: round * LOAD_BATCH as u64 + i,
                            expires_at: None,
                        })
                        .collect();
                    if let Ok(r) = c
                        .post(url(to, "/txs"))
                        .json(&BatchRequest { txs })
                        .send()
                        .await
                        && let Ok(b) = r.json::<BatchResponse>().await
                    {
                        accepted.fetch_add(b.accepted as u64, Ordering::Relaxed);
                    }
                    round += 1;
                    tokio::time::sleep(LOAD_PERIOD).await;
                }
            })
        };
        Load {
            stop,
            targets,
            accepted,
            task,
        }
    }

    /// Send to `addrs` only from now on (before a node is crashed or cut off).
    fn retarget(&self, addrs: Vec<SocketAddr>) {
        *self.targets.lock().unwrap() = addrs;
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.accepted.load(Ordering::Relaxed)
    }
}

// ---- exclusion of the faulty validator ------------------------------------------------------

/// Polls `/validators` on `addr` every 250 ms and notes when validator `index` first has
/// election weight 0 (excluded from leadership), and the last entry seen.
struct ExclusionWatch {
    stop: Arc<AtomicBool>,
    task: JoinHandle<(Option<Duration>, Option<ValidatorResponse>)>,
}

impl ExclusionWatch {
    fn start(addr: SocketAddr, index: u16, since: Instant) -> ExclusionWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let c = client();
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut excluded, mut last) = (None, None);
                while !stop.load(Ordering::Relaxed) {
                    let vs: Option<Vec<ValidatorResponse>> =
                        get_json(&c, addr, "/validators").await;
                    if let Some(v) = vs.and_then(|vs| vs.into_iter().find(|v| v.index == index)) {
                        if excluded.is_none() && v.weight == 0 {
                            excluded = Some(since.elapsed());
                        }
                        last = Some(v);
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                (excluded, last)
            })
        };
        ExclusionWatch { stop, task }
    }

    async fn finish(self) -> (Option<Duration>, Option<ValidatorResponse>) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

fn describe_exclusion(
    excluded: Option<Duration>,
    last: &Option<ValidatorResponse>,
    hold: Duration,
) -> String {
    let when = match excluded {
        Some(d) => format!(
            "weight 0 (excluded from leadership) {:.1} s after the fault",
            secs(d)
        ),
        None => format!("never weight 0 within {:.0} s", secs(hold)),
    };
    match last {
        Some(v) => format!(
            "{when}; last seen: state {}, weight {}, failed {}, proposed {}",
            v.state, v.weight, v.failed, v.proposed
        ),
        None => when,
    }
}

// ---- the crash tests ------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Victim {
    NonLeader,
    Leader,
}

async fn crash_keeps_commits_flowing(victim: Victim) {
    let what = match victim {
        Victim::NonLeader => "non-leader crash",
        Victim::Leader => "leader crash",
    };
    let mut cl = Cluster::start(4).await;
    let c = client();
    wait_all_at(&c, &cl, &[0, 1, 2, 3], 2, 60).await;
    let mut sampler = Sampler::start(&cl.addrs);
    let load = Load::start(
        match victim {
            Victim::NonLeader => "crash-nonleader",
            Victim::Leader => "crash-leader",
        },
        cl.addrs.clone(),
    );
    tokio::time::sleep(WARMUP + HEALTHY).await;

    let (leader, view) = cl.current_leader(&c).await;
    let dead = match victim {
        Victim::Leader => leader,
        // The node after the leader (in home order) that is not the leader.
        Victim::NonLeader => (leader + 1) % 4,
    };
    let survivors: Vec<usize> = (0..4).filter(|&i| i != dead).collect();
    load.retarget(survivors.iter().map(|&i| cl.addrs[i]).collect());
    let t_kill = Instant::now();
    let (stop_took, silence) = cl.crash(dead).await;
    let watch = ExclusionWatch::start(cl.addrs[survivors[0]], cl.vindex[dead], t_kill);
    eprintln!(
        "[{what}] τ_base {} ms, Δ {} ms (defaults); load {} tx/s; crashed node {dead} \
         (validator {}) while validator {} (node {leader}) led view {view}, {}; took {:.2} s",
        cl.tau_base_ms,
        cl.delta_ms,
        LOAD_BATCH as u128 * 1000 / LOAD_PERIOD.as_millis(),
        cl.vindex[dead],
        cl.vindex[leader],
        if silence.is_some() {
            "silently like kill -9 (its UDP port dropped by iptables, then stopped)"
        } else {
            "by a clean stop (iptables unavailable: the peers see its connections close)"
        },
        secs(stop_took)
    );

    tokio::time::sleep(CRASH_HOLD).await;
    let t_end = Instant::now();
    let (excluded, last_entry) = watch.finish().await;
    let accepted = load.finish().await;
    sampler.halt().await;

    let tl = sampler.timeline(&survivors);
    let healthy = tl.window(t_kill - HEALTHY, t_kill);
    let fault = tl.window(t_kill, t_end);
    let ratio = fault.rate / healthy.rate.max(1e-9);
    let (h_kill, h_end) = (tl.height_at(t_kill), tl.height_at(t_end));
    let tx_fault = txs_committed(&c, cl.addrs[survivors[0]], h_kill, h_end).await;
    let target = 2 * cl.tau_base();
    eprintln!(
        "[{what}] healthy, {:.0} s before the crash: {} heights = {:.2} heights/s",
        secs(healthy.len),
        healthy.heights,
        healthy.rate
    );
    eprintln!(
        "[{what}] {:.0} s after the crash: first commit after {} (issue target ≤ 2·τ_base = \
         {:.1} s), longest gap {:.2} s from +{:.2} s (issue target ≤ {:.1} s; asserted < {:.0} \
         s), {} heights = {:.2} heights/s = {:.0} % of healthy (asserted ≥ {:.0} %), {tx_fault} \
         txs committed ({accepted} accepted over the whole run)",
        secs(fault.len),
        fault
            .first_commit
            .map_or("never".to_string(), |d| format!("{:.2} s", secs(d))),
        secs(target),
        secs(fault.longest_gap),
        secs(fault.longest_gap_from),
        secs(target),
        secs(CRASH_MAX_GAP),
        fault.heights,
        fault.rate,
        ratio * 100.0,
        CRASH_MIN_RATE_RATIO * 100.0
    );
    eprintln!(
        "[{what}] crashed validator {}: {}",
        cl.vindex[dead],
        describe_exclusion(excluded, &last_entry, CRASH_HOLD)
    );

    assert!(
        healthy.heights > 0,
        "no commit before the crash: {healthy:?}"
    );
    assert!(
        fault.longest_gap < CRASH_MAX_GAP,
        "{what}: {:.1} s without a commit (bound {:.0} s; issue target {:.1} s): {fault:?}",
        secs(fault.longest_gap),
        secs(CRASH_MAX_GAP),
        secs(target)
    );
    assert!(
        ratio >= CRASH_MIN_RATE_RATIO,
        "{what}: {:.2} heights/s after the crash vs {:.2} before ({:.0} % < {:.0} %)",
        fault.rate,
        healthy.rate,
        ratio * 100.0,
        CRASH_MIN_RATE_RATIO * 100.0
    );
    assert!(
        tx_fault > 0,
        "{what}: no transaction committed while the validator was down"
    );
    // The survivors agree on everything they committed.
    let mut min = u64::MAX;
    for &i in &survivors {
        min = min.min(height(&c, cl.addrs[i]).await);
    }
    assert_chains_match(&c, &cl, &survivors, min).await;
    cl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_of_a_non_leader_keeps_commits_flowing() {
    crash_keeps_commits_flowing(Victim::NonLeader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_of_the_leader_keeps_commits_flowing() {
    crash_keeps_commits_flowing(Victim::Leader).await;
}

// ---- iptables (the partition, and silent crashes) --------------------------------------------

/// Tag of our iptables rules; the suffix is the test process id.
const RULE_TAG: &str = "bftnode-test-";

/// Whether iptables is installed and permitted here: `iptables -w -L -n` succeeds and a
/// tagged rule like ours (UDP to port 9, discard, on `lo`) can be inserted and deleted. Asked
/// once; then rules a killed earlier run left behind are removed.
fn iptables_usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| {
        if !iptables(&["-L", "-n"]) {
            return false;
        }
        let tag = format!("{RULE_TAG}{}", std::process::id());
        let probe = [
            "INPUT", "-i", "lo", "-p", "udp", "--dport", "9", "-m", "comment",
        ];
        let probe = [&probe[..], &["--comment", &tag, "-j", "DROP"]].concat();
        if !iptables(&[&["-I"], &probe[..]].concat()) {
            return false;
        }
        let usable = iptables(&[&["-D"], &probe[..]].concat());
        remove_stale_rules();
        usable
    })
}

fn iptables(args: &[&str]) -> bool {
    Command::new("iptables")
        .arg("-w")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Remove rules a killed earlier run left behind (tagged with a process id that is gone).
fn remove_stale_rules() {
    let Ok(out) = Command::new("iptables")
        .args(["-w", "-S", "INPUT"])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(pid) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(RULE_TAG))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let del = line.replacen("-A ", "-D ", 1);
            let args: Vec<&str> = del.split_whitespace().collect();
            let ok = iptables(&args);
            eprintln!("removed a stale rule of process {pid} ({line}): {ok}");
        }
    }
}

/// Drops all UDP to and from one QUIC port on `lo` until healed or dropped (also on panic).
struct Blackhole {
    rules: Vec<Vec<String>>,
}

impl Blackhole {
    fn cut(port: u16) -> Blackhole {
        let tag = format!("{RULE_TAG}{}", std::process::id());
        let mut b = Blackhole { rules: Vec::new() };
        for dir in ["--dport", "--sport"] {
            let spec: Vec<String> =
                format!("INPUT -i lo -p udp {dir} {port} -m comment --comment {tag} -j DROP")
                    .split_whitespace()
                    .map(String::from)
                    .collect();
            let mut args = vec!["-I"];
            args.extend(spec.iter().map(String::as_str));
            assert!(iptables(&args), "iptables {} failed", args.join(" "));
            b.rules.push(spec);
        }
        b
    }

    fn heal(&mut self) {
        for spec in self.rules.drain(..) {
            let mut args = vec!["-D"];
            args.extend(spec.iter().map(String::as_str));
            if !iptables(&args) {
                eprintln!(
                    "WARNING: could not remove the iptables rule; run: iptables -w {}",
                    args.join(" ")
                );
            }
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.heal();
    }
}

// ---- the partition test ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partition_3_1_majority_commits_minority_catches_up() {
    if !iptables_usable() {
        eprintln!(
            "\n=========================================================================\n\
             SKIPPED: iptables unavailable (`iptables -w -L -n` failed: not installed or \
             not permitted); the 3|1 partition test did not run\n\
             ========================================================================="
        );
        return;
    }
    let what = "3|1 partition";
    let cl = Cluster::start(4).await;
    let c = client();
    wait_all_at(&c, &cl, &[0, 1, 2, 3], 2, 60).await;
    let mut sampler = Sampler::start(&cl.addrs);
    let load = Load::start("partition", cl.addrs.clone());
    tokio::time::sleep(WARMUP + HEALTHY).await;

    // Cut off whoever leads right now: the harshest moment for the majority.
    let (minority, view) = cl.current_leader(&c).await;
    let majority: Vec<usize> = (0..4).filter(|&i| i != minority).collect();
    load.retarget(majority.iter().map(|&i| cl.addrs[i]).collect());
    let port = cl.p2p_ports[minority];
    let t_cut = Instant::now();
    let mut hole = Blackhole::cut(port);
    let watch = ExclusionWatch::start(cl.addrs[majority[0]], cl.vindex[minority], t_cut);
    let h_min_cut = height(&c, cl.addrs[minority]).await;
    eprintln!(
        "[{what}] τ_base {} ms, Δ {} ms (defaults); load {} tx/s to the majority; cut off node \
         {minority} (validator {}, leader of view {view}): UDP port {port} dropped both ways \
         on lo for {:.0} s",
        cl.tau_base_ms,
        cl.delta_ms,
        LOAD_BATCH as u128 * 1000 / LOAD_PERIOD.as_millis(),
        cl.vindex[minority],
        secs(PARTITION_HOLD)
    );
    tokio::time::sleep(PARTITION_HOLD).await;

    // Still partitioned: every block the minority committed is the majority's block.
    let t_check = Instant::now();
    // The minority's RPC stays up; one sample may be slow on a loaded machine (4 nodes, synced
    // writes on one disk), so ask for up to 30 s before giving up.
    let mut minority_status = None;
    let mut misses = 0;
    while minority_status.is_none() && t_check.elapsed() < Duration::from_secs(30) {
        minority_status = status(&c, cl.addrs[minority]).await;
        if minority_status.is_none() {
            misses += 1;
        }
    }
    if misses > 0 {
        eprintln!(
            "[{what}] the minority's status needed {} attempts",
            misses + 1
        );
    }
    let minority_status = minority_status.expect("minority status");
    let h_min = minority_status.committed_height;
    let mut reference = majority[0];
    for &i in &majority {
        if height(&c, cl.addrs[i]).await > height(&c, cl.addrs[reference]).await {
            reference = i;
        }
    }
    for h in 1..=h_min {
        let mine = block(&c, cl.addrs[minority], h)
            .await
            .unwrap_or_else(|| panic!("minority node {minority} lacks its height {h}"));
        let theirs = block(&c, cl.addrs[reference], h).await.unwrap_or_else(|| {
            panic!("the minority committed height {h}, which the majority has not committed")
        });
        assert_eq!(
            mine.id, theirs.id,
            "the minority forked from the majority at height {h}"
        );
    }
    let h_maj_heal = height(&c, cl.addrs[reference]).await;
    let t_heal = Instant::now();
    hole.heal();
    let partition_len = t_heal - t_cut;
    eprintln!(
        "[{what}] healed after {:.1} s (the minority check took {:.1} s)",
        secs(partition_len),
        secs(t_heal - t_check)
    );

    // The healed minority catches up with the majority's height at the heal.
    let a = cl.addrs[minority];
    let caught_up = wait_until(CATCH_UP.as_secs(), || async {
        height(&c, a).await >= h_maj_heal
    })
    .await;
    let catch_up = t_heal.elapsed();
    let (excluded, last_entry) = watch.finish().await;
    let accepted = load.finish().await;
    sampler.halt().await;

    let maj = sampler.timeline(&majority);
    let healthy = maj.window(t_cut - HEALTHY, t_cut);
    let during = maj.window(t_cut, t_heal);
    let ratio = during.rate / healthy.rate.max(1e-9);
    let min_max = sampler.max_in(minority, t_cut, t_heal).unwrap_or(h_min_cut);
    let target = 2 * cl.tau_base();
    eprintln!(
        "[{what}] majority healthy, {:.0} s before the cut: {} heights = {:.2} heights/s",
        secs(healthy.len),
        healthy.heights,
        healthy.rate
    );
    eprintln!(
        "[{what}] majority during the partition ({:.1} s): first commit after {}, longest gap \
         {:.2} s from +{:.2} s (issue target ≤ 2·τ_base = {:.1} s; asserted < {:.0} s), {} \
         heights = {:.2} heights/s = {:.0} % of healthy (asserted ≥ {:.0} %)",
        secs(during.len),
        during
            .first_commit
            .map_or("never".to_string(), |d| format!("{:.2} s", secs(d))),
        secs(during.longest_gap),
        secs(during.longest_gap_from),
        secs(target),
        secs(PARTITION_MAX_GAP),
        during.heights,
        during.rate,
        ratio * 100.0,
        PARTITION_MIN_RATE_RATIO * 100.0
    );
    eprintln!(
        "[{what}] minority: height {h_min_cut} at the cut, at most {min_max} while cut off, \
         {h_min} at the check (health {}, view {}), all of it on the majority's chain; caught \
         up with the majority's height {h_maj_heal} {} after the heal (asserted ≤ {:.0} s); \
         {accepted} txs accepted",
        minority_status.health,
        minority_status.view,
        if caught_up {
            format!("{:.1} s", secs(catch_up))
        } else {
            "NOT".to_string()
        },
        secs(CATCH_UP)
    );
    eprintln!(
        "[{what}] cut-off validator {}: {}",
        cl.vindex[minority],
        describe_exclusion(excluded, &last_entry, PARTITION_HOLD)
    );

    assert!(healthy.heights > 0, "no commit before the cut: {healthy:?}");
    assert!(
        during.heights > 0 && during.longest_gap < PARTITION_MAX_GAP,
        "{what}: the majority went {:.1} s without a commit (bound {:.0} s): {during:?}",
        secs(during.longest_gap),
        secs(PARTITION_MAX_GAP)
    );
    assert!(
        ratio >= PARTITION_MIN_RATE_RATIO,
        "{what}: majority at {:.2} heights/s during the partition vs {:.2} before ({:.0} % < \
         {:.0} %)",
        during.rate,
        healthy.rate,
        ratio * 100.0,
        PARTITION_MIN_RATE_RATIO * 100.0
    );
    assert!(
        min_max <= h_maj_heal,
        "the minority reached height {min_max} while cut off; the majority had {h_maj_heal}"
    );
    assert!(
        caught_up,
        "{what}: the minority is at {} {:.0} s after the heal; the majority was at {h_maj_heal}",
        height(&c, a).await,
        secs(CATCH_UP)
    );

    // All four agree block by block on everything they have all committed.
    let mut min = u64::MAX;
    for i in 0..4 {
        min = min.min(height(&c, cl.addrs[i]).await);
    }
    assert_chains_match(
        &c,
        &cl,
        &[minority, majority[0], majority[1], majority[2]],
        min,
    )
    .await;
    eprintln!("[{what}] all four chains match up to height {min}");
    drop(hole);
    cl.shutdown().await;
}
