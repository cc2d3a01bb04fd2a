//! Issue 9 item 3 on real processes: a copy of one validator's key started beside the live
//! original (the failover mistake that gets validators slashed).
//!
//! Four `bftnode start` processes on 127.0.0.1 and load on the copied validator. Then a fifth process
//! with the copied validator's key, its own empty database, on 127.0.0.2 (same port: its genesis entry
//! points there; peers still dial the original):
//!
//! - **3a, double-sign check**: with the default configuration the copy signs nothing: it holds
//!   (PROTOCOL.md §4.10), then sees the original's signatures in certificates (§4.9), refuses
//!   with an error in its log and stays silent; no evidence appears and the chain commits on.
//! - **3c, both instances sign**: the copy restarted with both protections switched off
//!   (`double_sign_check_views = 0`, `double_sign_window = 0`). The two instances propose
//!   different blocks in the copied validator's views (only the original holds the load's
//!   transactions): every honest node detects the equivocation, commits the evidence and
//!   convicts the copied validator; the honest chains stay identical and keep committing.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bftnode");
const N: usize = 4;
/// The home whose key is copied (its validator index is read from its status).
const COPIED: usize = 3;
/// The copy's address: same port as the original, another loopback address.
const TWIN_IP: &str = "127.0.0.2";

/// A running `bftnode` process; killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn start(home: &Path, tag: &str) -> Proc {
        let log = home.join(format!("{tag}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .args(["start", "--home"])
            .arg(home)
            .env("NO_COLOR", "1")
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .expect("spawn bftnode");
        Proc { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A base port such that `base..base + count` is free for both UDP and TCP on 127.0.0.1.
fn free_base(count: u16, salt: u16) -> u16 {
    for attempt in 0..200u32 {
        let base = 20_000 + ((std::process::id() as u16 ^ salt) as u32 * 7 + attempt * 61) % 40_000;
        let base = base as u16;
        let free = (0..count).all(|k| {
            let a = SocketAddr::from(([127, 0, 0, 1], base + k));
            UdpSocket::bind(a).is_ok() && TcpListener::bind(a).is_ok()
        });
        if free {
            return base;
        }
    }
    panic!("no free port range");
}

fn bftnode(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run bftnode")
}

/// `bftnode <args> --rpc URL --output json`, parsed; `None` if the node did not answer.
fn query(rpc: &str, args: &[&str]) -> Option<Value> {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--rpc", rpc, "--output", "json", "--timeout", "5"]);
    let o = bftnode(&all);
    if !o.status.success() {
        return None;
    }
    serde_json::from_slice(&o.stdout).ok()
}

fn height(rpc: &str) -> Option<u64> {
    query(rpc, &["status"])?["committed_height"].as_u64()
}

/// Body of `GET path` on `addr` (plain HTTP/1.0).
fn http_get(addr: &str, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

/// The value of an unlabelled metric line `name value`.
fn metric(addr: &str, name: &str) -> Option<f64> {
    http_get(addr, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn wait_until(what: &str, secs: u64, mut ok: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if ok() {
            return t.elapsed();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {secs} s waiting for {what}");
}

/// Evidence items listed by the node at `rpc` against `offender`.
fn evidence_against(rpc: &str, offender: usize) -> Vec<Value> {
    query(rpc, &["evidence"])
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["offender"].as_u64() == Some(offender as u64))
        .collect()
}

fn validator(rpc: &str, index: usize) -> Option<Value> {
    query(rpc, &["validators"])?
        .as_array()?
        .iter()
        .find(|v| v["index"].as_u64() == Some(index as u64))
        .cloned()
}

fn block_id(rpc: &str, h: u64) -> Option<String> {
    Some(
        query(rpc, &["block", &h.to_string()])?["id"]
            .as_str()?
            .to_string(),
    )
}

/// Every honest node holds the same block at every height up to the lowest tip.
fn assert_chains_agree(rpcs: &[String]) -> u64 {
    let tip = rpcs.iter().filter_map(|r| height(r)).min().expect("tips");
    let step = (tip / 40).max(1);
    let mut h = 1;
    while h <= tip {
        let ids: Vec<_> = rpcs.iter().map(|r| block_id(r, h)).collect();
        assert!(
            ids.iter().all(|id| id.is_some() && *id == ids[0]),
            "honest chains differ at height {h}: {ids:?}"
        );
        h += step;
    }
    tip
}

fn set_line(text: &str, key: &str, value: &str) -> String {
    text.lines()
        .map(|l| {
            if l.split('=').next().map(str::trim) == Some(key) {
                format!("{key} = {value}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The copy's home: the copied validator's key, config and genesis, a fresh database, its own RPC port,
/// and QUIC on `TWIN_IP` with the same port (its genesis entry says so; the others' genesis
/// still points at the original).
fn twin_home(dir: &Path, original: &Path, rpc_port: u16, protections: bool) -> PathBuf {
    let home = dir.join(if protections { "twin" } else { "twin-raw" });
    std::fs::create_dir_all(&home).expect("twin home");
    std::fs::copy(original.join("key.json"), home.join("key.json")).expect("copy key");
    let config = std::fs::read_to_string(original.join("config.toml")).expect("config");
    let p2p: SocketAddr = config
        .lines()
        .find_map(|l| {
            l.strip_prefix("p2p_listen = ")?
                .trim_matches('"')
                .parse()
                .ok()
        })
        .expect("p2p_listen");
    let moved = format!("{TWIN_IP}:{}", p2p.port());
    let mut config = set_line(&config, "p2p_listen", &format!("\"{moved}\""));
    config = set_line(&config, "rpc_listen", &format!("\"127.0.0.1:{rpc_port}\""));
    if !protections {
        config = set_line(&config, "double_sign_check_views", "0");
        config = set_line(&config, "double_sign_window", "0");
    }
    std::fs::write(home.join("config.toml"), config).expect("write config");
    let genesis = std::fs::read_to_string(original.join("genesis.json")).expect("genesis");
    let genesis = genesis.replace(&format!("\"{p2p}\""), &format!("\"{moved}\""));
    std::fs::write(home.join("genesis.json"), genesis).expect("write genesis");
    home
}

#[test]
fn a_copy_of_a_validator_key_is_held_then_convicted_once_both_sign() {
    if UdpSocket::bind((TWIN_IP, 0)).is_err() {
        panic!("{TWIN_IP} is not usable on this machine's loopback");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    // TWIN_TEST_KEEP=1 keeps the homes and logs for a look after a failure.
    let (_cleanup, root) = if std::env::var_os("TWIN_TEST_KEEP").is_some() {
        let root = tmp.keep();
        eprintln!("keeping {}", root.display());
        (None, root)
    } else {
        let root = tmp.path().to_path_buf();
        (Some(tmp), root)
    };
    let dir = root.as_path();
    let p2p_base = free_base(N as u16, 1);
    let rpc_base = free_base(N as u16 + 2, 2);
    let out = dir.join("net");
    let o = bftnode(&[
        "testnet",
        "--validators",
        &N.to_string(),
        "--out",
        out.to_str().expect("utf-8 path"),
        "--base-p2p-port",
        &p2p_base.to_string(),
        "--base-rpc-port",
        &rpc_base.to_string(),
        "--chain-id",
        "twin-test",
    ]);
    assert!(
        o.status.success(),
        "testnet: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let homes: Vec<PathBuf> = (0..N).map(|i| out.join(format!("node{i}"))).collect();
    let addr = |i: u16| format!("127.0.0.1:{}", rpc_base + i);
    let rpcs: Vec<String> = (0..N as u16)
        .map(|i| format!("http://{}", addr(i)))
        .collect();
    let honest: Vec<String> = (0..N)
        .filter(|i| *i != COPIED)
        .map(|i| rpcs[i].clone())
        .collect();
    let mut procs: Vec<Proc> = homes.iter().map(|h| Proc::start(h, "node")).collect();
    let t = wait_until("the first commits on every node", 90, || {
        rpcs.iter().all(|r| height(r).is_some_and(|h| h >= 3))
    });
    eprintln!("4 nodes committing after {:.1} s", t.as_secs_f64());
    let offender = query(&rpcs[COPIED], &["status"]).expect("status")["validator_index"]
        .as_u64()
        .expect("validator_index") as usize;

    // Load on the original only: its proposals carry transactions, a copy's would not.
    let load = Command::new(BIN)
        .args([
            "load",
            "--rpc",
            &rpcs[COPIED],
            "--rate",
            "200",
            "--duration",
            "150",
        ])
        .args(["--size", "64", "--output", "json", "--drain", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let mut load = load.expect("spawn load");

    // --- 3a: the copy with default protections never signs -----------------------------------
    let twin_rpc_port = rpc_base + N as u16;
    let twin = Proc::start(&twin_home(dir, &homes[COPIED], twin_rpc_port, true), "twin");
    let twin_addr = format!("127.0.0.1:{twin_rpc_port}");
    let t = wait_until("the copy to see its key signing elsewhere", 60, || {
        metric(&twin_addr, "bftnode_own_signatures_elsewhere_total").is_some_and(|c| c >= 1.0)
    });
    eprintln!(
        "3a: the copy saw its key signing elsewhere after {:.1} s",
        t.as_secs_f64()
    );
    let start_h = height(&honest[0]).expect("height");
    wait_until("10 more commits beside the held copy", 60, || {
        height(&honest[0]).is_some_and(|h| h >= start_h + 10)
    });
    let status = query(&format!("http://{twin_addr}"), &["status"]).expect("copy status");
    let signing = status["signing"].as_str().unwrap_or_default().to_string();
    assert!(
        signing.starts_with("held") || signing.starts_with("suspended"),
        "the copy must not sign while its key signs elsewhere; signing = {signing:?}"
    );
    for (what, name) in [
        ("votes", "bftnode_votes_total"),
        ("timeouts", "bftnode_timeouts_total"),
        ("proposals", "bftnode_proposals_total"),
    ] {
        let sent = metric(&twin_addr, name).unwrap_or(0.0);
        assert_eq!(sent, 0.0, "the held copy signed {sent} {what}");
    }
    assert!(
        twin.log_text().contains("in use elsewhere"),
        "the copy explains in its log why it does not sign"
    );
    for r in &honest {
        assert!(
            evidence_against(r, offender).is_empty(),
            "no equivocation while the copy is held ({r})"
        );
    }
    eprintln!(
        "3a: copy status signing = {signing:?}; no evidence; chain at {}",
        height(&honest[0]).unwrap_or(0)
    );
    twin.stop();

    // --- 3c: both instances sign ----------------------------------------------------------------
    let raw_port = twin_rpc_port + 1;
    let twin = Proc::start(&twin_home(dir, &homes[COPIED], raw_port, false), "twin-raw");
    let started = Instant::now();
    let t = wait_until(
        "evidence against the copied validator on every honest node",
        120,
        || {
            honest
                .iter()
                .all(|r| !evidence_against(r, offender).is_empty())
        },
    );
    eprintln!(
        "3c: evidence on every honest node {:.1} s after the copy started",
        t.as_secs_f64()
    );
    let t = wait_until(
        "the copied validator convicted on every honest node",
        60,
        || {
            honest.iter().all(|r| {
                validator(r, offender).is_some_and(|v| v["convicted"].as_bool() == Some(true))
            })
        },
    );
    eprintln!(
        "3c: convicted on every honest node {:.1} s after the copy started",
        (started.elapsed()).as_secs_f64().max(t.as_secs_f64())
    );
    for r in &honest {
        for e in evidence_against(r, offender) {
            let kind = e["kind"].as_str().unwrap_or_default();
            assert!(
                [
                    "double_proposal",
                    "double_vote",
                    "conflicting_timeouts",
                    "lock_violation"
                ]
                .contains(&kind),
                "evidence kind {kind} at {r}"
            );
        }
    }
    // Liveness after the conviction, and one chain.
    let h0 = honest
        .iter()
        .filter_map(|r| height(r))
        .max()
        .expect("heights");
    wait_until("20 commits after the conviction", 60, || {
        honest
            .iter()
            .all(|r| height(r).is_some_and(|h| h >= h0 + 20))
    });
    let tip = assert_chains_agree(&honest);
    eprintln!("3c: honest chains agree up to height {tip}");
    twin.stop();
    let _ = load.kill();
    let _ = load.wait();
    for p in procs.drain(..) {
        p.stop();
    }
}
