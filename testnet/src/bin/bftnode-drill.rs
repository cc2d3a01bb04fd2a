//! `bftnode-drill`: an attack drill on real `bftnode` processes, with figures (issue 9 item 2).
//!
//! ```text
//! bftnode-drill MODE [--runs K] [--output table|json] [--short] [--validators N] [--rate TX_S]
//!               [--during SECS]
//! ```
//!
//! Brings up a local testnet of `N` (default 4) `bftnode start` processes on 127.0.0.1 under
//! client load (`bftnode load`, 512-byte transactions to every honest node), runs three phases
//! — before, during, after the fault (10, 20, 10 s; `--short` 4, 10, 4 s; `--during` sets the
//! second) — and prints, measured on the processes through their RPC:
//!
//! | key | meaning |
//! |---|---|
//! | `detection_s` | first misbehaving message → evidence against the offender on every honest node |
//! | `isolation_s` | fault → the offender has election weight 0 (leads no view) on every honest node |
//! | `next_commit_s` | fault → every honest node committed a height past what the pipeline finishes without a leader (height at the fault + 3) |
//! | `recovery_s` | fault → every honest node committed [`RECOVERY_HEIGHTS`] heights above its height at the fault (the pipeline alone finishes ~2) |
//! | `verify_ms` | `fault::verify` of the first evidence item (decoded from `GET /evidence/{id}`), median of 100 |
//! | `tps_before/during/after` | committed transactions per second, per phase: at node 0 before, at the first honest majority node after the fault |
//! | `chains_agree` | every honest node holds the same block at every sampled height |
//! | `merge_s` | partitions: heal → every minority node at the majority's height at heal |
//! | `evidence` | the evidence list of one honest node: `kind:offender:view` |
//! | `kills` | kill-loop: how many kill -9 the during phase made |
//! | `tps_ratio` | kill-loop: `tps_during / tps_before` |
//!
//! MODE is `crash-leader` (kill -9 the current leader), `kill-loop` (through the during phase,
//! every [`KILL_EVERY`] kill -9 a random validator other than node 0 and restart it
//! [`DOWN_FOR`] later: one node down at a time, as in issue 10, the restarted one given the
//! rest of the period to rejoin before the next kill; `BFTNODE_DRILL_BACK_TO_BACK=1` restarts
//! it only at the next kill, so a node still starting up and a dead one overlap), `partition A|B` (e.g. `0,1|2,3`; UDP
//! between the groups' QUIC ports dropped with iptables on `lo`, healed after the during phase;
//! needs root), or any `bftnode-adversary --list-modes` mode: the last validator is restarted
//! from its own home as `bftnode-adversary --mode MODE` (its database and safety record kept).
//! A figure that does not apply, or was not reached within the phase, is `null`.
//!
//! `BFTNODE_DRILL_KEEP=1` keeps each run's homes and logs (the path is printed).
//!
//! Binaries are taken from the directory of this executable (`target/release`); run through
//! `testnet/drill.sh`, which builds them.

use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Heights every honest node must commit past its height at the fault for `recovery_s`: more
/// than the two a pipelined chain finishes anyway after losing its leader (issue 10 measures
/// "five new heights committed elsewhere").
const RECOVERY_HEIGHTS: u64 = 5;
/// kill-loop: the period between two kills (issue 10: 33 kills in 150 s).
const KILL_EVERY: Duration = Duration::from_millis(4_500);
/// kill-loop: how long a killed node stays down.
const DOWN_FOR: Duration = Duration::from_millis(3_000);
/// Poll period of the measurements.
const POLL: Duration = Duration::from_millis(50);
/// Comment on our iptables rules (plus our pid), so a killed drill's rules can be found.
const RULE_TAG: &str = "bftnode-drill-";

type Res<T> = Result<T, String>;

struct Opts {
    mode: String,
    partition: Option<(Vec<usize>, Vec<usize>)>,
    runs: usize,
    json: bool,
    short: bool,
    n: usize,
    rate: u64,
    /// Length of the during phase, when given (`--during SECS`).
    during: Option<Duration>,
}

fn usage() -> String {
    "usage: bftnode-drill MODE [--runs K] [--output table|json] [--short] [--validators N] \
     [--rate TX_S] [--during SECS]\n  MODE: crash-leader | kill-loop | partition A|B (e.g. '0,1|2,3') | an adversary mode \
     (bftnode-adversary --list-modes)"
        .to_string()
}

fn parse_group(s: &str, n: usize) -> Res<Vec<usize>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse::<usize>()
                .ok()
                .filter(|i| *i < n)
                .ok_or_else(|| format!("bad node {x:?} in partition group (0..{n})"))
        })
        .collect()
}

fn parse_args() -> Res<Opts> {
    let mut args = std::env::args().skip(1);
    let mut o = Opts {
        mode: String::new(),
        partition: None,
        runs: 1,
        json: false,
        short: false,
        n: 4,
        rate: 300,
        during: None,
    };
    let mut positional = Vec::new();
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--runs" => o.runs = value("--runs")?.parse().map_err(|_| "bad --runs")?,
            "--output" => o.json = value("--output")? == "json",
            "--short" => o.short = true,
            "--validators" => {
                o.n = value("--validators")?
                    .parse()
                    .map_err(|_| "bad --validators")?
            }
            "--rate" => o.rate = value("--rate")?.parse().map_err(|_| "bad --rate")?,
            "--during" => {
                let secs: u64 = value("--during")?.parse().map_err(|_| "bad --during")?;
                o.during = Some(Duration::from_secs(secs));
            }
            "-h" | "--help" => return Err(usage()),
            _ if a.starts_with("--") => return Err(format!("unknown option {a}\n{}", usage())),
            _ => positional.push(a),
        }
    }
    if o.n < 4 || o.runs == 0 {
        return Err("need --validators ≥ 4 and --runs ≥ 1".into());
    }
    match positional.as_slice() {
        [m] if m == "partition" => {
            return Err("partition needs groups, e.g. partition '0,1|2,3'".into());
        }
        [m, groups] if m == "partition" => {
            let (a, b) = groups.split_once('|').ok_or("partition groups are A|B")?;
            o.partition = Some((parse_group(a, o.n)?, parse_group(b, o.n)?));
            o.mode = format!("partition {groups}");
        }
        [m] => o.mode = m.clone(),
        _ => return Err(usage()),
    }
    Ok(o)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Body of `GET path` on `addr`, or `None` on any failure or non-200 status.
fn get(addr: &SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.0 200").then(|| body.to_string()))
}

fn get_json(addr: &SocketAddr, path: &str) -> Option<Value> {
    serde_json::from_str(&get(addr, path)?).ok()
}

fn metric(addr: &SocketAddr, name: &str) -> Option<f64> {
    get(addr, "/metrics")?
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn height(addr: &SocketAddr) -> Option<u64> {
    get_json(addr, "/status")?["committed_height"].as_u64()
}

/// A base port such that `base..base + count` is free for UDP and TCP on 127.0.0.1.
fn free_base(count: u16) -> Res<u16> {
    for attempt in 0..500u32 {
        let base = (21_000 + (std::process::id() * 13 + attempt * 97) % 38_000) as u16;
        if (0..count).all(|k| {
            let a = SocketAddr::from(([127, 0, 0, 1], base + k));
            UdpSocket::bind(a).is_ok() && TcpListener::bind(a).is_ok()
        }) {
            return Ok(base);
        }
    }
    Err("no free port range".into())
}

/// One validator process of the drill's testnet.
struct Node {
    home: PathBuf,
    rpc: SocketAddr,
    p2p_port: u16,
    index: u64,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self, bin: &Path, args: &[&str], log: &str) -> Res<()> {
        // Appended to: a node restarted by kill-loop keeps its earlier lives' logs.
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join(log))
            .map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .args(args)
            .arg("--home")
            .arg(&self.home)
            .env("NO_COLOR", "1")
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// iptables rules dropping UDP between two groups of QUIC ports on `lo`; removed on drop.
struct Partition {
    rules: Vec<Vec<String>>,
}

impl Partition {
    fn cut(a: &[u16], b: &[u16]) -> Res<Partition> {
        let tag = format!("{RULE_TAG}{}", std::process::id());
        let mut p = Partition { rules: Vec::new() };
        for (x, y) in a.iter().flat_map(|x| b.iter().map(move |y| (*x, *y))) {
            for (s, d) in [(x, y), (y, x)] {
                let rule: Vec<String> = format!(
                    "INPUT -i lo -p udp --sport {s} --dport {d} -m comment --comment {tag} -j DROP"
                )
                .split_whitespace()
                .map(String::from)
                .collect();
                let mut args = vec!["-w".to_string(), "-I".to_string()];
                args.extend(rule.iter().cloned());
                let ok = Command::new("iptables")
                    .args(&args)
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    return Err("iptables refused a rule (the partition mode needs root)".into());
                }
                p.rules.push(rule);
            }
        }
        Ok(p)
    }

    fn heal(&mut self) {
        for rule in self.rules.drain(..) {
            let _ = Command::new("iptables")
                .arg("-w")
                .arg("-D")
                .args(&rule)
                .status();
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.heal();
    }
}

/// Committed transactions per second at `addr` over `window` (from `bftnode_committed_txs_total`).
fn tps(addr: &SocketAddr, window: Duration) -> Option<f64> {
    let a = metric(addr, "bftnode_committed_txs_total")?;
    let t = Instant::now();
    std::thread::sleep(window);
    let b = metric(addr, "bftnode_committed_txs_total")?;
    Some((b - a) / t.elapsed().as_secs_f64())
}

fn secs(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| {
        json!((d.as_secs_f64() * 1000.0).round() / 1000.0)
    })
}

/// Evidence items at `addr` against validator `offender`.
fn evidence_against(addr: &SocketAddr, offender: u64) -> Vec<Value> {
    get_json(addr, "/evidence")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["offender"].as_u64() == Some(offender))
        .collect()
}

fn weight_of(addr: &SocketAddr, index: u64) -> Option<u64> {
    get_json(addr, "/validators")?
        .as_array()?
        .iter()
        .find(|v| v["index"].as_u64() == Some(index))?["weight"]
        .as_u64()
}

/// The median of 100 verifications (`fault::verify`) of evidence item `id` as served by `addr`
/// (`GET /evidence/{id}`, rebuilt from its JSON proof) against the genesis, in ms.
fn verify_ms(addr: &SocketAddr, id: &str, genesis: &Path) -> Option<f64> {
    let proof: node::proof::EvidenceProof =
        serde_json::from_value(get_json(addr, &format!("/evidence/{id}"))?).ok()?;
    let ev = proof.evidence.to_evidence().ok()?;
    let vs = node::config::Genesis::load(genesis)
        .ok()?
        .validator_set()
        .ok()?;
    let mut times = Vec::with_capacity(100);
    for _ in 0..100 {
        let t = Instant::now();
        fault::verify(&ev, &vs).ok()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Some(times[50])
}

/// Every honest node's block id at sampled heights up to the lowest tip agree.
fn chains_agree(nodes: &[&Node]) -> bool {
    let Some(tip) = nodes
        .iter()
        .map(|n| height(&n.rpc))
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let tip = tip.into_iter().min().unwrap_or(0);
    let step = (tip / 50).max(1);
    let mut h = 1;
    while h <= tip {
        let ids: Vec<Option<String>> = nodes
            .iter()
            .map(|n| {
                get_json(&n.rpc, &format!("/blocks/{h}"))
                    .and_then(|b| b["id"].as_str().map(String::from))
            })
            .collect();
        if ids.iter().any(|i| i.is_none() || *i != ids[0]) {
            return false;
        }
        h += step;
    }
    true
}

/// The unix time (ms) the adversary logged its first misbehaving message at, if it did.
fn first_misbehaviour_ms(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .find(|l| l.contains("first misbehaving message"))?
        .split_whitespace()
        .find_map(|w| w.strip_prefix("unix_ms=")?.parse().ok())
}

fn run_once(o: &Opts, bin_dir: &Path, run: usize) -> Res<Value> {
    let (before, during, after) = if o.short {
        (
            Duration::from_secs(4),
            Duration::from_secs(10),
            Duration::from_secs(4),
        )
    } else {
        (
            Duration::from_secs(10),
            Duration::from_secs(20),
            Duration::from_secs(10),
        )
    };
    let during = o.during.unwrap_or(during);
    let n = o.n;
    let bftnode = bin_dir.join("bftnode");
    let dir = std::env::temp_dir().join(format!("bftnode-drill-{}-{run}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let p2p = free_base(n as u16)?;
    let rpc = free_base(n as u16)?;
    let st = Command::new(&bftnode)
        .args([
            "testnet",
            "--validators",
            &n.to_string(),
            "--chain-id",
            "drill",
        ])
        .arg("--out")
        .arg(&dir)
        .args([
            "--base-p2p-port",
            &p2p.to_string(),
            "--base-rpc-port",
            &rpc.to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| e.to_string())?;
    if !st.success() {
        return Err("bftnode testnet failed".into());
    }
    let mut nodes: Vec<Node> = (0..n)
        .map(|i| Node {
            home: dir.join(format!("node{i}")),
            rpc: SocketAddr::from(([127, 0, 0, 1], rpc + i as u16)),
            p2p_port: p2p + i as u16,
            index: 0,
            child: None,
        })
        .collect();
    for nd in nodes.iter_mut() {
        nd.start(&bftnode, &["start"], "node.log")?;
    }
    let t = Instant::now();
    while !nodes
        .iter()
        .all(|nd| height(&nd.rpc).is_some_and(|h| h >= 2))
    {
        if t.elapsed() > Duration::from_secs(60) {
            return Err("the testnet did not commit within 60 s".into());
        }
        std::thread::sleep(POLL);
    }
    for nd in nodes.iter_mut() {
        nd.index = get_json(&nd.rpc, "/status")
            .and_then(|s| s["validator_index"].as_u64())
            .ok_or("no validator index")?;
    }

    // Who is faulty, and which nodes are honest (measured).
    let kill_loop = o.mode == "kill-loop";
    let adversary = o.partition.is_none() && o.mode != "crash-leader" && !kill_loop;
    let load_secs = (before + during + after).as_secs() + 5;
    let load_targets: Vec<String> = nodes
        .iter()
        .take(if adversary { n - 1 } else { n })
        .map(|nd| format!("http://{}", nd.rpc))
        .collect();
    let mut load = Command::new(&bftnode)
        .args(["load", "--rate", &o.rate.to_string(), "--size", "512"])
        .args(["--duration", &load_secs.to_string(), "--drain", "1"])
        .arg("--rpc")
        .arg(load_targets.join(","))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let watch = nodes[0].rpc;
    let tps_before = tps(&watch, before);

    // --- the fault ---------------------------------------------------------------------------
    let mut offender: Option<usize> = None;
    let mut partition = None;
    let mut minority: Vec<usize> = Vec::new();
    let fault_at;
    let fault_unix_ms;
    if let Some((a, b)) = &o.partition {
        let ports = |g: &[usize]| g.iter().map(|i| nodes[*i].p2p_port).collect::<Vec<_>>();
        minority = if a.len() * 3 > 2 * n {
            b.clone()
        } else {
            a.clone()
        };
        fault_unix_ms = unix_ms();
        fault_at = Instant::now();
        partition = Some(Partition::cut(&ports(a), &ports(b))?);
    } else if o.mode == "crash-leader" {
        let leader = get_json(&watch, "/status")
            .and_then(|s| s["leader"].as_u64())
            .ok_or("no leader")?;
        let i = nodes
            .iter()
            .position(|nd| nd.index == leader)
            .ok_or("leader not found")?;
        fault_unix_ms = unix_ms();
        fault_at = Instant::now();
        nodes[i].kill();
        offender = Some(i);
    } else if kill_loop {
        fault_unix_ms = unix_ms();
        fault_at = Instant::now();
    } else {
        let i = n - 1;
        nodes[i].kill();
        fault_unix_ms = unix_ms();
        fault_at = Instant::now();
        nodes[i].start(
            &bin_dir.join("bftnode-adversary"),
            &["--mode", &o.mode],
            "adversary.log",
        )?;
        offender = Some(i);
    }
    // kill-loop: every node but node 0 goes down in turn, so only node 0 is measured.
    let honest: Vec<usize> = (0..n)
        .filter(|i| Some(*i) != offender && !minority.contains(i))
        .filter(|i| !kill_loop || *i == 0)
        .collect();
    let off_index = offender.map(|i| nodes[i].index);
    // From the fault on, figures come from the first honest node of the majority (node 0 may
    // be the crashed leader or in the minority).
    let watch = honest.first().map_or(watch, |i| nodes[*i].rpc);
    let h_fault: Vec<u64> = honest
        .iter()
        .map(|i| height(&nodes[*i].rpc).unwrap_or(0))
        .collect();
    let txs0 = metric(&watch, "bftnode_committed_txs_total");
    let mut detected = None;
    let mut isolated = None;
    let mut recovered = None;
    let mut next_commit = None;
    let mut minority_halted = true;
    let mut kills = 0u64;
    let mut down: Option<usize> = None;
    let down_for = if std::env::var_os("BFTNODE_DRILL_BACK_TO_BACK").is_some() {
        KILL_EVERY
    } else {
        DOWN_FOR
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ unix_ms() ^ run as u64);
    let minority_h0: Vec<u64> = minority
        .iter()
        .map(|i| height(&nodes[*i].rpc).unwrap_or(0))
        .collect();
    while fault_at.elapsed() < during {
        let now = fault_at.elapsed();
        if kill_loop
            && kills > 0
            && now >= KILL_EVERY * (kills as u32 - 1) + down_for
            && let Some(j) = down.take()
        {
            nodes[j].start(&bftnode, &["start"], "node.log")?;
        }
        if kill_loop && now >= KILL_EVERY * kills as u32 {
            if let Some(j) = down.take() {
                nodes[j].start(&bftnode, &["start"], "node.log")?;
            }
            let j = 1 + (rng.next() % (n as u64 - 1)) as usize;
            nodes[j].kill();
            down = Some(j);
            kills += 1;
        }
        if next_commit.is_none()
            && honest
                .iter()
                .zip(&h_fault)
                .all(|(i, h0)| height(&nodes[*i].rpc).is_some_and(|h| h >= h0 + 3))
        {
            next_commit = Some(now);
        }
        if recovered.is_none()
            && honest
                .iter()
                .zip(&h_fault)
                .all(|(i, h0)| height(&nodes[*i].rpc).is_some_and(|h| h >= h0 + RECOVERY_HEIGHTS))
        {
            recovered = Some(now);
        }
        if let Some(off) = off_index {
            if detected.is_none()
                && honest
                    .iter()
                    .all(|i| !evidence_against(&nodes[*i].rpc, off).is_empty())
            {
                detected = Some(now);
            }
            if isolated.is_none()
                && honest
                    .iter()
                    .all(|i| weight_of(&nodes[*i].rpc, off) == Some(0))
            {
                isolated = Some(now);
            }
        }
        std::thread::sleep(POLL);
    }
    let txs1 = metric(&watch, "bftnode_committed_txs_total");
    if let Some(j) = down.take() {
        nodes[j].start(&bftnode, &["start"], "node.log")?;
    }
    let tps_during = txs0
        .zip(txs1)
        .map(|(a, b)| (b - a) / fault_at.elapsed().as_secs_f64());
    for (i, h0) in minority.iter().zip(&minority_h0) {
        // The minority may finish the height it was committing at the cut, nothing more.
        if height(&nodes[*i].rpc).is_some_and(|h| h > h0 + 1) {
            minority_halted = false;
        }
    }
    // --- heal (partitions) and the after phase ------------------------------------------------
    let mut merge = None;
    if let Some(mut p) = partition.take() {
        let target = height(&watch).unwrap_or(0);
        p.heal();
        let healed = Instant::now();
        while healed.elapsed() < after.max(Duration::from_secs(30)) {
            if minority
                .iter()
                .all(|i| height(&nodes[*i].rpc).is_some_and(|h| h >= target))
            {
                merge = Some(healed.elapsed());
                break;
            }
            std::thread::sleep(POLL);
        }
    }
    let tps_after = tps(&watch, after);
    // The offender's first misbehaving message, when the adversary logs it.
    let first_ms = offender
        .filter(|_| adversary)
        .and_then(|i| first_misbehaviour_ms(&nodes[i].home.join("adversary.log")));
    let detection = detected.map(|d| {
        let shift = first_ms.map_or(0, |f| f.saturating_sub(fault_unix_ms));
        d.saturating_sub(Duration::from_millis(shift))
    });
    let all_honest: Vec<usize> = (0..n).filter(|i| Some(*i) != offender).collect();
    let agree = chains_agree(&all_honest.iter().map(|i| &nodes[*i]).collect::<Vec<_>>());
    let evidence: Vec<Value> = get_json(&watch, "/evidence")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    let verify = evidence.first().and_then(|e| {
        verify_ms(
            &watch,
            e["id"].as_str()?,
            &nodes[0].home.join("genesis.json"),
        )
    });
    let _ = load.kill();
    let _ = load.wait();
    for nd in nodes.iter_mut() {
        nd.kill();
    }
    if std::env::var_os("BFTNODE_DRILL_KEEP").is_some() {
        eprintln!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let mut out = json!({
        "mode": o.mode,
        "detection_s": secs(detection),
        "isolation_s": secs(isolated),
        "next_commit_s": secs(next_commit),
        "recovery_s": secs(recovered),
        "verify_ms": verify.map(|v| (v * 1000.0).round() / 1000.0),
        "tps_before": tps_before.map(f64::round),
        "tps_during": tps_during.map(f64::round),
        "tps_after": tps_after.map(f64::round),
        "chains_agree": agree,
        "evidence": evidence.iter().map(|e| format!(
            "{}:{}:{}", e["kind"].as_str().unwrap_or("?"), e["offender"], e["view"]
        )).collect::<Vec<_>>(),
    });
    if kill_loop {
        out["kills"] = json!(kills);
        out["tps_ratio"] = json!(
            tps_before
                .zip(tps_during)
                .filter(|(b, _)| *b > 0.0)
                .map(|(b, d)| (d / b * 100.0).round() / 100.0)
        );
    }
    if o.partition.is_some() {
        out["merge_s"] = secs(merge);
        out["minority_halted"] = json!(minority_halted);
    }
    Ok(out)
}

/// xorshift64: which node kill-loop kills next (seeded from the clock and the run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The median of the numbers at `key` over `runs` (nulls skipped).
fn median(runs: &[Value], key: &str) -> Value {
    let mut v: Vec<f64> = runs.iter().filter_map(|r| r[key].as_f64()).collect();
    if v.is_empty() {
        return Value::Null;
    }
    v.sort_by(f64::total_cmp);
    json!(v[v.len() / 2])
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/release"));
    let mut runs = Vec::new();
    for r in 0..o.runs {
        match run_once(&o, &bin_dir, r) {
            Ok(v) => {
                if !o.json {
                    eprintln!("run {}: {v}", r + 1);
                }
                runs.push(v);
            }
            Err(e) => {
                eprintln!("bftnode-drill: run {}: {e}", r + 1);
                std::process::exit(1);
            }
        }
    }
    let mut summary = runs.last().cloned().unwrap_or(Value::Null);
    for key in [
        "detection_s",
        "isolation_s",
        "next_commit_s",
        "recovery_s",
        "verify_ms",
        "tps_before",
        "tps_during",
        "tps_after",
        "tps_ratio",
        "merge_s",
    ] {
        if summary.get(key).is_some() {
            summary[key] = median(&runs, key);
        }
    }
    summary["chains_agree"] = json!(runs.iter().all(|r| r["chains_agree"] == json!(true)));
    summary["runs"] = json!(runs.len());
    if o.json {
        println!("{summary}");
    } else {
        println!("drill {} (median of {} run(s))", o.mode, runs.len());
        if let Some(m) = summary.as_object() {
            for (k, v) in m {
                println!("  {k:<16} {v}");
            }
        }
    }
}
