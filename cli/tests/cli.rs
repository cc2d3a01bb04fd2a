//! Runs the built `bftnode` binary: argument errors, unreachable and misbehaving nodes, home
//! generation and key display, and the query, transaction and load commands against a small
//! in-process mock of the RPC server; and one run of four real `bftnode start` processes for the
//! operator's fault view (`faults`, `evidence show`, `evidence verify`). Other end-to-end runs
//! against real nodes live in `node`.

use serde_json::{Value, json};
use std::{
    collections::HashSet,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Command, Output},
    sync::{Arc, Mutex},
    thread,
};

fn bftnode(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bftnode"))
        .args(args)
        .env_remove("BFTNODE_RPC")
        .output()
        .expect("run bftnode")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failed run printed exactly one line, `error: …`, and no panic.
fn assert_one_line_error(o: &Output, code: i32) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    assert!(!err.contains("panicked"), "{err:?}");
    err
}

fn json_stdout(o: &Output) -> Value {
    assert!(o.status.success(), "stderr: {}", stderr(o));
    serde_json::from_slice(&o.stdout).expect("stdout is JSON")
}

/// A port on which nothing listens (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `--version` names the crate version and the git commit built (`node/build.rs`).
#[test]
fn version_names_the_commit() {
    let o = bftnode(&["--version"]);
    let v = stdout(&o);
    let want = format!("bftnode {} (", env!("CARGO_PKG_VERSION"));
    assert!(o.status.success() && v.starts_with(&want), "{v}");
    assert!(v.trim_end().ends_with(')'), "{v}");
}

/// `bftnode completions SHELL` prints a completion script that knows the subcommands.
#[test]
fn completions_know_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let o = bftnode(&["completions", shell]);
        let script = stdout(&o);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        assert!(
            script.contains("why-stalled") && script.contains("set-peers"),
            "{shell}"
        );
    }
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["status", "--output", "yaml"],
        &["status", "--rpc", "https://127.0.0.1:1"],
        &["block", "minus-one"],
        &["testnet", "--validators", "0", "--out", "x"],
        &["tx", "put", "only-key"],
        &["load", "--rate", "0", "--size", "10", "--duration", "1"],
        &["keys", "show"],
    ] {
        let o = bftnode(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
    }
    assert_eq!(bftnode(&["--help"]).status.code(), Some(0));
}

#[test]
fn unreachable_node_exits_1_with_one_line() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    for args in [
        &["status"][..],
        &["block", "3"],
        &["tx", "put", "k", "v"],
        &["health"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--rpc", &url]);
        let err = assert_one_line_error(&bftnode(&args), 1);
        assert_eq!(
            err.trim_end(),
            format!("error: node unreachable at {url}: connection refused")
        );
    }
    // The environment variable is honoured too.
    let o = Command::new(env!("CARGO_BIN_EXE_bftnode"))
        .arg("status")
        .env("BFTNODE_RPC", &url)
        .output()
        .unwrap();
    assert!(assert_one_line_error(&o, 1).contains(&url));
}

fn keys_show(home: &Path) -> Value {
    json_stdout(&bftnode(&[
        "keys",
        "show",
        "--home",
        home.to_str().unwrap(),
        "--output",
        "json",
    ]))
}

#[test]
fn testnet_creates_homes_with_distinct_ports_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("net");
    let o = bftnode(&[
        "testnet",
        "--validators",
        "4",
        "--out",
        out.to_str().unwrap(),
        "--base-p2p-port",
        "31000",
        "--base-rpc-port",
        "32000",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("http://127.0.0.1:32003"),
        "{}",
        stdout(&o)
    );

    let (mut ports, mut keys, mut indices) = (HashSet::new(), HashSet::new(), HashSet::new());
    let genesis0 = std::fs::read(out.join("node0/genesis.json")).unwrap();
    for i in 0..4 {
        let home = out.join(format!("node{i}"));
        let cfg = node::config::NodeConfig::load(&home).unwrap();
        assert!(ports.insert(cfg.p2p_listen.port()));
        assert!(ports.insert(cfg.rpc_listen.port()));
        assert_eq!(std::fs::read(home.join("genesis.json")).unwrap(), genesis0);
        let k = keys_show(&home);
        assert_eq!(k["validators"], 4);
        assert!(keys.insert(k["public_key"].as_str().unwrap().to_string()));
        assert!(indices.insert(k["validator_index"].as_u64().unwrap()));
    }
    assert_eq!(ports.len(), 8);
    assert_eq!(indices, HashSet::from([0, 1, 2, 3]));
    // Generating over existing homes is refused.
    let o = bftnode(&[
        "testnet",
        "--validators",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, 1);
}

#[test]
fn init_then_keys_show() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("v0");
    let h = home.to_str().unwrap();
    let o = bftnode(&["init", "--home", h, "--chain-id", "test-chain"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Before a genesis exists, the key has no index.
    assert_eq!(keys_show(&home)["validator_index"], Value::Null);
    let vf = home.join("validator.json");
    let genesis = home.join("genesis.json");
    let o = bftnode(&[
        "genesis",
        "build",
        "--out",
        genesis.to_str().unwrap(),
        vf.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("persistent_peers = ["),
        "{}",
        stdout(&o)
    );
    let k = keys_show(&home);
    let key_file: Value =
        serde_json::from_slice(&std::fs::read(home.join("key.json")).unwrap()).unwrap();
    assert_eq!(k["public_key"], key_file["public_key"]);
    assert_eq!(k["public_key"].as_str().unwrap().len(), 64);
    assert_eq!(k["chain_id"], "test-chain");
    assert_eq!(k["validator_index"], 0);
    assert!(
        !stdout(&bftnode(&["keys", "show", "--home", h]))
            .contains(key_file["secret_seed"].as_str().unwrap())
    );
    let table = stdout(&bftnode(&["keys", "show", "--home", h]));
    assert!(table.starts_with("public_key "), "{table}");
    // A second init of the same home is refused; so is a second genesis over the first.
    assert_one_line_error(&bftnode(&["init", "--home", h]), 1);
    let again = [
        "genesis",
        "build",
        "--out",
        genesis.to_str().unwrap(),
        vf.to_str().unwrap(),
    ];
    assert!(assert_one_line_error(&bftnode(&again), 1).contains("already exists"));
}

/// `bftnode reset` keeps the key, says what it kept, logs to reset.log; dropping the safety
/// record needs a reason (exit 2 without one). The reset itself is tested on a running chain
/// in `node/tests/cluster.rs`.
#[test]
fn reset_keeps_the_key_and_wants_a_reason_to_drop_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("v0");
    let h = home.to_str().unwrap();
    assert!(bftnode(&["init", "--home", h]).status.success());
    let key = std::fs::read(home.join("key.json")).unwrap();
    let o = bftnode(&["reset", "--home", h]);
    assert!(
        stdout(&o).contains("kept the key (there was no safety record)"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert_eq!(std::fs::read(home.join("key.json")).unwrap(), key);
    assert!(
        std::fs::read_to_string(home.join("reset.log"))
            .unwrap()
            .contains("reset")
    );
    let o = bftnode(&["reset", "--home", h, "--drop-safety-record"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = bftnode(&[
        "reset",
        "--home",
        h,
        "--drop-safety-record",
        "--reason",
        "  ",
    ]);
    assert!(assert_one_line_error(&o, 1).contains("needs a reason"));
}

#[test]
fn keys_show_of_a_missing_home_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let o = bftnode(&[
        "keys",
        "show",
        "--home",
        dir.path().join("none").to_str().unwrap(),
    ]);
    assert!(assert_one_line_error(&o, 1).contains("config.toml"));
}

// ---------------------------------------------------------------------------------------------
// A mock RPC server: just enough HTTP/1.1 for reqwest, one request per connection.

/// A request as the mock saw it: method, decoded path, body.
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;
/// Answers a request: (method, path, body) → (status, JSON body).
type Handler = dyn Fn(&str, &str, &Value) -> (u16, Value) + Send + Sync;

fn mock(handler: Arc<Handler>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            let log = log.clone();
            thread::spawn(move || serve(stream, &*handler, &log));
        }
    });
    (url, seen)
}

fn serve(stream: TcpStream, handler: &Handler, log: &Seen) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or(""),
        );
        let path = percent_decode(path);
        let mut length = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        log.lock()
            .unwrap()
            .push((method.clone(), path.clone(), body.clone()));
        let (status, answer) = handler(&method, &path, &body);
        let text = answer.to_string();
        let _ = write!(
            out,
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn status_body(height: u64) -> Value {
    json!({
        "chain_id": "mock", "validator_index": 2, "peer_id": "12D3Koo", "view": 41, "leader": 1,
        "committed_height": height, "last_commit_id": "ab".repeat(32), "high_qc_view": 40,
        "high_qc_block": "cd".repeat(32), "high_tc_view": null, "health": "Normal",
        "sync_state": "synced", "mempool_txs": 0, "mempool_bytes": 0, "peers_connected": 3
    })
}

fn static_node() -> (String, Seen) {
    mock(Arc::new(|method: &str, path: &str, _body: &Value| {
        match (method, path) {
            ("GET", "/status") => (200, status_body(17)),
            ("GET", "/blocks/99") => (404, json!({"error": "no committed block at height 99"})),
            ("GET", "/blocks/latest") => (
                200,
                json!({"height": 17, "id": "ee".repeat(32), "view": 40, "parent": "dd".repeat(32),
                   "proposer": 1, "justify_view": 39, "tx_count": 2, "tx_hashes": ["h1", "h2"],
                   "evidence_count": 0, "payload_bytes": 90}),
            ),
            ("POST", "/tx") => (200, json!({"hash": "feed"})),
            ("GET", "/tx/feed") => (
                200,
                json!({"hash": "feed", "status": "committed", "height": 18, "block_id": "aa", "index": 0}),
            ),
            ("GET", "/kv/a/b c") => (200, json!({"key": "a/b c", "found": true, "value": "v"})),
            ("GET", "/health") => (503, json!({"health": "Partitioned", "ok": false})),
            ("GET", "/validators") => (
                200,
                json!([{"index": 0, "public_key": "aa", "power": 1, "state": "Active"},
                   {"index": 1, "public_key": "bb", "power": 1, "state": "Isolated"}]),
            ),
            ("GET", "/evidence") => (200, json!([])),
            _ => (404, json!({"error": "no route"})),
        }
    }))
}

#[test]
fn queries_print_tables_and_json() {
    let (url, seen) = static_node();
    let o = bftnode(&["status", "--rpc", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(table.starts_with("chain_id          mock\n"), "{table}");
    assert!(table.contains("committed_height  17\n"), "{table}");
    assert!(table.contains("high_tc_view      -\n"), "{table}");

    let v = json_stdout(&bftnode(&["status", "--rpc", &url, "--output", "json"]));
    assert_eq!(v, status_body(17));

    let table = stdout(&bftnode(&["block", "--rpc", &url]));
    assert!(table.contains("tx_hashes\n  h1\n  h2\n"), "{table}");

    let table = stdout(&bftnode(&["validators", "--rpc", &url]));
    assert!(
        table.starts_with("INDEX  PUBLIC_KEY  POWER  STATE\n0      aa"),
        "{table}"
    );
    assert_eq!(
        stdout(&bftnode(&["evidence", "--rpc", &url])),
        "no evidence\n"
    );

    let v = json_stdout(&bftnode(&[
        "tx", "get", "a/b c", "--rpc", &url, "--output", "json",
    ]));
    assert_eq!(v["value"], "v");
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|(_, p, _)| p == "/kv/a/b c")
    );
}

#[test]
fn node_errors_exit_3() {
    let (url, _) = static_node();
    let err = assert_one_line_error(&bftnode(&["block", "99", "--rpc", &url]), 3);
    assert!(
        err.contains("404") && err.contains("no committed block at height 99"),
        "{err}"
    );
    let o = bftnode(&["health", "--rpc", &url]);
    let err = assert_one_line_error(&o, 3);
    assert!(err.contains("Partitioned"), "{err}");
    assert!(stdout(&o).contains("Partitioned"));
}

#[test]
fn tx_put_waits_for_commit() {
    let (url, seen) = static_node();
    let v = json_stdout(&bftnode(&[
        "tx",
        "put",
        "k",
        "v",
        "--nonce",
        "9",
        "--expires-at",
        "500",
        "--wait",
        "--rpc",
        &url,
        "--output",
        "json",
    ]));
    assert_eq!(v["status"], "committed");
    assert_eq!(v["height"], 18);
    let seen = seen.lock().unwrap();
    let post = seen.iter().find(|(m, _, _)| m == "POST").unwrap();
    assert_eq!(
        post.2,
        json!({"op": "put", "key": "k", "value": "v", "nonce": 9, "expires_at": 500})
    );
}

/// Whether `text` is safe for a terminal: no control character but line breaks, no bidi
/// override or isolate.
fn terminal_safe(text: &str) -> bool {
    text.chars().all(|c| {
        c == '\n'
            || !(c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
    })
}

/// Issue 8 finding 8: strings a node returns (stored keys and values, peer-provided fields,
/// field names, error messages) hold whatever a client stored or a peer sent. None reaches the
/// terminal raw: tables and errors show them escaped, JSON output escapes them as JSON and
/// still decodes to the exact strings.
#[test]
fn stored_strings_cannot_drive_the_terminal() {
    // ESC sequences (set title, clear screen, colours), BEL, C1 CSI, DEL, CR/LF (a fake row),
    // a right-to-left override.
    const NASTY: &str =
        "v\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\u{7f}\r\nfake-row  1\u{202e}txt.exe";
    let (url, _) = mock(Arc::new(|method: &str, path: &str, _body: &Value| {
        match (method, path) {
            ("GET", "/kv/k") => (
                200,
                json!({"key": "k\u{1b}[8m", "found": true, "value": NASTY}),
            ),
            ("GET", "/peers") => (
                200,
                json!([{"index": 0, "peer_id": NASTY, "agent\u{1b}[5m": NASTY, "connected": true}]),
            ),
            ("GET", "/status") => {
                let mut s = status_body(3);
                s["chain_id"] = json!(NASTY);
                (200, s)
            }
            ("POST", "/txs") => (503, json!({"error": NASTY})),
            // Not an event stream: the load generator stops watching, with a warning.
            ("GET", "/events") => (200, json!(NASTY)),
            _ => (404, json!({"error": NASTY})),
        }
    }));

    for args in [
        &["tx", "get", "k"][..],
        &["peers"],
        &["status"],
        &["tx", "get", "k", "--output", "json"],
        &["peers", "--output", "json"],
    ] {
        let o = bftnode(&[args, &["--rpc", &url]].concat());
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(terminal_safe(&out), "{args:?}: {out:?}");
        if args.contains(&"json") {
            let v: Value = serde_json::from_str(&out).unwrap();
            let shown = if args[0] == "peers" {
                &v[0]["agent\u{1b}[5m"]
            } else {
                &v["value"]
            };
            assert_eq!(shown, NASTY, "JSON output must stay lossless");
        } else {
            assert!(
                out.contains(r"\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\u{7f}\r\nfake-row"),
                "{out}"
            );
            assert!(!out.lines().any(|l| l.starts_with("fake-row")), "{out}");
        }
    }
    let table = stdout(&bftnode(&["peers", "--rpc", &url]));
    assert!(table.contains(r"AGENT\u{1b}[5M"), "{table}");

    // Error messages from the node: one escaped line on stderr.
    let o = bftnode(&["block", "7", "--rpc", &url]);
    let err = assert_one_line_error(&o, 3);
    assert!(terminal_safe(&err), "{err:?}");
    assert!(err.contains(r"\u{1b}]0;owned\u{7}"), "{err}");

    // The load generator's warnings quote the node's errors.
    let o = bftnode(&[
        "load",
        "--rpc",
        &url,
        "--rate",
        "20",
        "--size",
        "8",
        "--duration",
        "0.2",
        "--drain",
        "0",
    ]);
    let err = stderr(&o);
    assert!(err.contains("first failure"), "{err}");
    assert!(terminal_safe(&err), "{err:?}");
    assert!(terminal_safe(&stdout(&o)));
}

// ---------------------------------------------------------------------------------------------
// Real `bftnode start` processes.

/// Child processes killed (and reaped) when dropped, so a failed assertion leaves none behind.
struct Processes(Vec<std::process::Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Homes of a 4-validator chain `chain_id` under `dir`, on free loopback ports; returns the
/// homes and their RPC ports.
fn real_homes(dir: &Path, chain_id: &str) -> (Vec<std::path::PathBuf>, Vec<u16>) {
    let (udp, tcp) = free_ports(4);
    let homes =
        node::config::generate_testnet_with(dir, 4, chain_id, |i| Some((udp[i], tcp[i]))).unwrap();
    (homes, tcp)
}

/// Free loopback ports: `n` UDP and `n` TCP.
fn free_ports(n: usize) -> (Vec<u16>, Vec<u16>) {
    let udp: Vec<_> = (0..n)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let tcp: Vec<_> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    (
        udp.iter().map(|s| s.local_addr().unwrap().port()).collect(),
        tcp.iter().map(|s| s.local_addr().unwrap().port()).collect(),
    )
}

/// The addresses one host gives `bftnode init`.
struct HostAddrs {
    p2p_listen: String,
    p2p_external: String,
    rpc_listen: String,
}

/// The key ceremony through the CLI, as separate hosts would run it: each host `bftnode init`s
/// its own home under `dir` (`run(i, args)` runs the CLI on host `i`), `bftnode genesis build`
/// joins the public validator files, and each home gets the genesis and `bftnode config
/// set-peers`. Between the two, host 0's `start` refuses with one line naming the validators
/// it has no address for. Returns the homes and the public keys (hex).
fn ceremony(
    dir: &Path,
    chain_id: &str,
    hosts: &[HostAddrs],
    run: impl Fn(usize, &[&str]) -> Output,
) -> (Vec<std::path::PathBuf>, Vec<String>) {
    let homes: Vec<_> = (0..hosts.len())
        .map(|i| dir.join(format!("host{i}")))
        .collect();
    let mut keys = Vec::new();
    for (i, (home, h)) in homes.iter().zip(hosts).enumerate() {
        let name = format!("v{i}");
        let v = json_stdout(&run(
            i,
            &[
                "init",
                "--home",
                home.to_str().unwrap(),
                "--chain-id",
                chain_id,
                "--p2p-listen",
                &h.p2p_listen,
                "--p2p-external",
                &h.p2p_external,
                "--rpc-listen",
                &h.rpc_listen,
                "--name",
                &name,
                "--output",
                "json",
            ],
        ));
        assert_eq!(v["p2p_external"], h.p2p_external.as_str(), "{v}");
        keys.push(v["public_key"].as_str().unwrap().to_string());
    }
    let files: Vec<String> = homes
        .iter()
        .map(|h| h.join("validator.json").display().to_string())
        .collect();
    let genesis = dir.join("genesis.json");
    let mut args = vec!["genesis", "build", "--output", "json", "--out"];
    args.push(genesis.to_str().unwrap());
    args.extend(files.iter().map(String::as_str));
    let v = json_stdout(&bftnode(&args));
    assert_eq!(v["chain_id"], chain_id);
    let peers: Vec<&str> = v["persistent_peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for (k, h) in keys.iter().zip(hosts) {
        let entry = format!("{k}@{}", h.p2p_external);
        assert!(peers.contains(&entry.as_str()), "{v}");
    }
    for home in &homes {
        std::fs::copy(&genesis, home.join("genesis.json")).unwrap();
    }
    let e = assert_one_line_error(&run(0, &["start", "--home", homes[0].to_str().unwrap()]), 1);
    assert!(e.contains("no address for validator"), "{e}");
    for home in &homes {
        let mut args = vec!["config", "set-peers", "--home", home.to_str().unwrap()];
        args.extend(files.iter().map(String::as_str));
        let o = bftnode(&args);
        assert!(
            stdout(&o).contains("persistent_peers has 3 entries"),
            "{}",
            stderr(&o)
        );
    }
    (homes, keys)
}

/// Issue 11 item 1 on real processes, through the CLI only: the key ceremony
/// ([`ceremony`]) for four validators listening on every address, then the four `bftnode
/// start` processes commit a transaction submitted to one and read back from another.
#[test]
fn key_ceremony_on_real_processes_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (udp, tcp) = free_ports(4);
    let hosts: Vec<HostAddrs> = (0..4)
        .map(|i| HostAddrs {
            p2p_listen: format!("0.0.0.0:{}", udp[i]),
            p2p_external: format!("127.0.0.1:{}", udp[i]),
            rpc_listen: format!("127.0.0.1:{}", tcp[i]),
        })
        .collect();
    let (homes, _) = ceremony(dir.path(), "ceremony", &hosts, |_, args| bftnode(args));
    let _nodes = start_nodes(&homes);
    let rpcs = up_at(&tcp);
    let o = bftnode(&[
        "tx",
        "put",
        "ceremony",
        "done",
        "--wait",
        "--wait-timeout",
        "60",
        "--rpc",
        &rpcs[2],
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let o = bftnode(&[
            "tx", "get", "ceremony", "--rpc", &rpcs[3], "--output", "json",
        ]);
        if o.status.success() && stdout(&o).contains("done") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", stderr(&o));
        thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// `bftnode why-stalled --output json` on `rpc` until `done` holds of it (at most 30 s).
fn why_stalled_until(rpc: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let v = json_stdout(&bftnode(&["why-stalled", "--rpc", rpc, "--output", "json"]));
        if done(&v) {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Issue 11 item 6 on real processes: four validators commit, two are killed (kill -9), and
/// `bftnode why-stalled` on a survivor says the chain stalled for want of a quorum and names
/// the two dead validators as not connected and silent; its table lists them.
#[test]
fn why_stalled_names_the_missing_validators() {
    let dir = tempfile::tempdir().unwrap();
    let (homes, tcp) = real_homes(dir.path(), "stall-chain");
    let mut nodes = start_nodes(&homes);
    let rpcs = up_at(&tcp);
    let v = why_stalled_until(&rpcs[0], |v| v["committed_height"].as_u64().unwrap() >= 3);
    assert_eq!(v["quorum_power"], 3, "{v}");
    assert_eq!(v["stalled"], false, "{v}");
    let dead: Vec<u64> = homes[2..]
        .iter()
        .map(|h| keys_show(h)["validator_index"].as_u64().unwrap())
        .collect();
    for c in &mut nodes.0[2..] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let v = why_stalled_until(&rpcs[0], |v| {
        v["stalled"] == true && v["connected_power"] == 2
    });
    let text: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let text = text.join("\n");
    assert!(text.contains("no commit for"), "{text}");
    let mut names = dead.clone();
    names.sort_unstable();
    let named = format!("not connected: validators {}, {}", names[0], names[1]);
    assert!(
        text.contains("no quorum connected: 2 of 4") && text.contains(&named),
        "{text}"
    );
    for d in &dead {
        let row = &v["validators"][*d as usize];
        assert_eq!(row["connected"], false, "{v}");
        assert!(!row["timed_out_this_view"].as_bool().unwrap(), "{v}");
    }
    let table = stdout(&bftnode(&["why-stalled", "--rpc", &rpcs[0]]));
    eprintln!("{table}");
    assert!(table.starts_with("- no commit for"), "{table}");
    assert!(table.contains("TIMED_OUT_THIS_VIEW"), "{table}");
}

/// Whether this process may create network namespaces: root, with `ip` (iproute2).
fn can_make_namespaces() -> bool {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    root && Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Issue 11 item 2: four hosts for real on one machine. Each validator runs in its own network
/// namespace with its own IP; their keys come from the key ceremony, each `bftnode init` run
/// inside its host's namespace; every QUIC datagram between them crosses the user-space WAN
/// relay (`testnet::wan`, in a fifth namespace) with 50 ms one-way delay. The chain commits
/// every transaction of a `bftnode load` run from inside host 0, and the commit latency shows
/// the delay: a commit takes at least three one-way delays (HotStuff-2: proposal, votes, the
/// next proposal with the QC, …), so p50 ≥ 150 ms — 0.5–30 ms on loopback.
#[test]
fn four_namespaces_with_50ms_links_commit() {
    if !can_make_namespaces() {
        eprintln!("SKIPPED: network namespaces need root and iproute2 (.ci/deps.sh installs it)");
        return;
    }
    use testnet::netns::Namespaces;
    use testnet::wan::{self, RelayNode, WanConditions};
    const BIN: &str = env!("CARGO_BIN_EXE_bftnode");
    let ns = Namespaces::create(&format!("bft{}", std::process::id() % 100_000), 4)
        .expect("create the namespaces");
    let dir = tempfile::tempdir().unwrap();
    let hosts: Vec<HostAddrs> = (0..4)
        .map(|i| HostAddrs {
            p2p_listen: "0.0.0.0:26600".into(),
            p2p_external: format!("{}:26600", Namespaces::relay_ip(i)),
            rpc_listen: "0.0.0.0:26700".into(),
        })
        .collect();
    let in_host = |i: usize, args: &[&str]| {
        ns.command(i, BIN)
            .args(args)
            .env_remove("BFTNODE_RPC")
            .output()
            .expect("run bftnode in a namespace")
    };
    let (homes, _) = ceremony(dir.path(), "wan", &hosts, in_host);
    let nodes: Vec<RelayNode> = (0..4)
        .map(|i| RelayNode {
            public: format!("{}:26600", Namespaces::relay_ip(i))
                .parse()
                .unwrap(),
            real: format!("{}:26600", Namespaces::node_ip(i)).parse().unwrap(),
        })
        .collect();
    let cond = WanConditions {
        delay: std::time::Duration::from_millis(50),
        jitter: std::time::Duration::ZERO,
        loss: 0.0,
    };
    let relay = wan::spawn(Some(ns.switch()), nodes, cond, 1).expect("start the relay");
    let _nodes = Processes(
        homes
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let log = std::fs::File::create(h.join("node.log")).unwrap();
                ns.command(i, BIN)
                    .args(["start", "--home", h.to_str().unwrap()])
                    .stdout(std::process::Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("start bftnode in a namespace")
            })
            .collect(),
    );
    let rpcs: Vec<String> = (0..4)
        .map(|i| format!("http://{}:26700", Namespaces::node_ip(i)))
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !rpcs
        .iter()
        .all(|r| in_host(0, &["status", "--rpc", r]).status.success())
    {
        assert!(std::time::Instant::now() < deadline, "nodes not up in 60 s");
        thread::sleep(std::time::Duration::from_millis(200));
    }
    let v = json_stdout(&in_host(
        0,
        &[
            "load",
            "--rpc",
            &rpcs.join(","),
            "--rate",
            "200",
            "--size",
            "512",
            "--duration",
            "10",
            "--drain",
            "30",
            "--output",
            "json",
        ],
    ));
    let stats = &relay.stats;
    eprintln!(
        "50 ms WAN: {v}\nrelay: forwarded {} unknown {}",
        stats.forwarded.load(std::sync::atomic::Ordering::Relaxed),
        stats
            .dropped_unknown
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(v["submitted"], 2000, "{v}");
    assert_eq!(v["rejected"], 0, "{v}");
    assert_eq!(v["committed"], 2000, "every transaction committed: {v}");
    let p50 = v["latency_ms_p50"].as_f64().unwrap();
    assert!(
        p50 >= 150.0,
        "p50 {p50} ms: the relay's delay is not on the path: {v}"
    );
    assert!(stats.forwarded.load(std::sync::atomic::Ordering::Relaxed) > 1000);
}

/// The RPC URLs of the loopback nodes on TCP `ports`, once every one answers `status` (at
/// most 30 s).
fn up_at(ports: &[u16]) -> Vec<String> {
    let rpcs: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !rpcs
        .iter()
        .all(|r| bftnode(&["status", "--rpc", r]).status.success())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "nodes not up within 30 s"
        );
        thread::sleep(std::time::Duration::from_millis(100));
    }
    rpcs
}

/// `bftnode start` on every home, its log in `<home>/node.log`.
fn start_nodes(homes: &[std::path::PathBuf]) -> Processes {
    Processes(
        homes
            .iter()
            .map(|h| {
                let log = std::fs::File::create(h.join("node.log")).unwrap();
                Command::new(env!("CARGO_BIN_EXE_bftnode"))
                    .args([
                        "start",
                        "--home",
                        h.to_str().unwrap(),
                        "--log-level",
                        "info",
                    ])
                    .stdout(std::process::Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("start bftnode")
            })
            .collect(),
    )
}

/// `bftnode load` against four real validators, watching commits through `GET /events`: every
/// accepted transaction is seen committed, none is both, the stream missed no block, and the
/// steady-state figures are there. A node that does not answer stops it before any load; a
/// node killed during the load has its share of requests re-sent to the others.
#[test]
fn load_reports_committed_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let (homes, tcp) = real_homes(dir.path(), "load-chain");
    let mut nodes = start_nodes(&homes);
    let rpcs = up_at(&tcp);
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let o = bftnode(&[
        "load",
        "--rpc",
        &format!("{},{dead}", rpcs[0]),
        "--rate",
        "100",
        "--size",
        "32",
        "--duration",
        "1",
    ]);
    assert_one_line_error(&o, 1);

    let o = bftnode(&[
        "load",
        "--rpc",
        &rpcs.join(","),
        "--rate",
        "500",
        "--size",
        "32",
        "--duration",
        "3",
        "--batch",
        "7",
        "--drain",
        "20",
        "--output",
        "json",
    ]);
    let v = json_stdout(&o);
    eprintln!("{v}");
    let keys: HashSet<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        HashSet::from([
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
        ])
    );
    assert_eq!(v["failovers"], 0, "{v}");
    assert_eq!(v["submitted"], 1500, "{v}");
    assert_eq!(v["missed_blocks"], 0, "{v}");
    let (committed, rejected) = (
        v["committed"].as_u64().unwrap(),
        v["rejected"].as_u64().unwrap(),
    );
    assert_eq!(
        committed + rejected,
        1500,
        "every transaction committed or refused: {v}"
    );
    assert!(committed > 1000, "{v}");
    assert!(v["committed_tps"].as_f64().unwrap() > 100.0, "{v}");
    let (p50, p99) = (
        v["latency_ms_p50"].as_f64().unwrap(),
        v["latency_ms_p99"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99, "{v}");

    // Node 3 crashes (kill -9) during a load: its requests go to the three others (quorum
    // intact), and nothing is lost.
    let load = Command::new(env!("CARGO_BIN_EXE_bftnode"))
        .args([
            "load",
            "--rpc",
            &rpcs.join(","),
            "--rate",
            "200",
            "--size",
            "32",
        ])
        .args(["--duration", "3", "--drain", "20", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start bftnode load");
    thread::sleep(std::time::Duration::from_millis(1000));
    let _ = nodes.0[3].kill();
    let _ = nodes.0[3].wait();
    let v = json_stdout(&load.wait_with_output().expect("load ends"));
    eprintln!("{v}");
    assert_eq!(v["submitted"], 600, "{v}");
    assert!(v["failovers"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["rejected"], 0, "no request lost to the dead node: {v}");
    // Node 3 may take a transaction or two with it: accepted in its last gossip interval
    // (5 ms), never sent on (a crashed node's mempool is gone).
    assert!(v["committed"].as_u64().unwrap() >= 595, "{v}");
}

/// Evidence against the validator of `home`: two votes of `view` for different blocks, signed
/// with its key under the chain's signing domain.
fn double_vote_of(home: &Path, view: u64) -> (consensus::Evidence, u16) {
    use consensus::{Digest, Height, SigKind, SignedVote, View, VoteData};
    let loaded = node::config::load_home(home, &node::config::ConfigOverrides::default()).unwrap();
    let vote = |b: u8| {
        let data = VoteData {
            view: View(view),
            block_id: Digest([b; 32]),
            height: Height(view),
            parent_id: Digest([0; 32]),
            parent_view: View(view - 1),
        };
        let body = consensus::encode(&data);
        let sig = loaded
            .key
            .sign(loaded.validators.domain(), SigKind::Vote, &body);
        SignedVote { data, sig }
    };
    let ev = consensus::Evidence::DoubleVote {
        offender: loaded.index,
        a: vote(1),
        b: vote(2),
    };
    (ev, loaded.index.0)
}

/// Issue 9 item 6 on real processes: four `bftnode start` validators; evidence against one
/// of them, stored in node 0's database before it starts, is proposed and committed. Then
/// `faults` shows the conviction with its reason, `evidence` (bare, the old form) and
/// `evidence list` list it, `evidence show` writes the proof, and `evidence verify` accepts it
/// offline against the genesis — and refuses it, exit 4, with one signature byte flipped. The
/// chain-wide parameter set in the genesis reaches the running policy.
#[test]
fn real_nodes_faults_evidence_show_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (homes, tcp) = real_homes(dir.path(), "cli-chain");
    // A chain-wide parameter, in every copy of the genesis.
    let genesis_path = homes[0].join("genesis.json");
    let mut genesis = node::config::Genesis::load(&genesis_path).unwrap();
    genesis.fault.round_robin_every = 9;
    for h in &homes {
        genesis.save(&h.join("genesis.json")).unwrap();
    }
    let (ev, offender) = double_vote_of(&homes[3], 2);
    let id = ev.id().to_hex();
    {
        use storage::Store as _;
        let mut store =
            storage::RocksStore::open(homes[0].join("data"), storage::RocksOptions::default())
                .unwrap();
        store
            .write(storage::WriteBatch {
                sync: true,
                ops: vec![storage::Op::PutEvidence(Box::new(ev))],
            })
            .unwrap();
    }

    let started = std::time::Instant::now();
    let _nodes = start_nodes(&homes);
    let rpc = format!("http://127.0.0.1:{}", tcp[1]);
    let faults = || {
        let o = bftnode(&["faults", "--rpc", &rpc, "--output", "json"]);
        o.status
            .success()
            .then(|| serde_json::from_slice::<Value>(&o.stdout).unwrap())
    };
    let convicted = |f: &Value| {
        f["convicted"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["index"] == offender)
    };
    let deadline = started + std::time::Duration::from_secs(60);
    let f = loop {
        if let Some(f) = faults()
            && convicted(&f)
        {
            break f;
        }
        if std::time::Instant::now() >= deadline {
            for (i, h) in homes.iter().enumerate() {
                let rpc = format!("http://127.0.0.1:{}", tcp[i]);
                let status = bftnode(&["status", "--rpc", &rpc, "--output", "json"]);
                let log = std::fs::read_to_string(h.join("node.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!(
                    "--- node {i}: status {} {}\n--- last log lines (newest first):\n{}",
                    stdout(&status),
                    stderr(&status),
                    tail.join("\n")
                );
            }
            panic!("no conviction within 60 s (node states and logs above)");
        }
        thread::sleep(std::time::Duration::from_millis(200));
    };
    eprintln!(
        "conviction visible on node 1 after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(f["params"]["round_robin_every"], 9, "{f}");
    assert_eq!(
        (&f["validators"], &f["f"], &f["quorum"]),
        (&json!(4), &json!(1), &json!(3))
    );
    let table = stdout(&bftnode(&["faults", "--rpc", &rpc]));
    assert!(table.starts_with("validators "), "{table}");
    assert!(table.contains("tolerance_margin "), "{table}");
    assert!(
        table.contains("convicted:\nINDEX  POWER  SINCE_VIEW"),
        "{table}"
    );
    assert!(
        table.contains("committed double_vote evidence at view 2"),
        "{table}"
    );

    // The old form and the new one list the same evidence.
    let old = stdout(&bftnode(&["evidence", "--rpc", &rpc]));
    let new = stdout(&bftnode(&["evidence", "list", "--rpc", &rpc]));
    assert_eq!(old, new);
    assert!(old.contains(&id) && old.contains("double_vote"), "{old}");
    let table = stdout(&bftnode(&["validators", "--rpc", &rpc]));
    assert!(table.contains("CONFLICTING_MESSAGES"), "{table}");

    // show → file → verify offline (the nodes could be gone: nothing but the files is read).
    let o = bftnode(&["evidence", "show", &id, "--rpc", &rpc]);
    let proof = json_stdout(&o);
    assert_eq!(proof["offender"], offender);
    assert_eq!(proof["evidence"]["kind"], "double_vote");
    let proof_path = dir.path().join("proof.json");
    std::fs::write(&proof_path, &o.stdout).unwrap();
    let g = genesis_path.to_str().unwrap();
    let p = proof_path.to_str().unwrap();
    let o = bftnode(&["evidence", "verify", p, "--genesis", g]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("valid "), "{}", stdout(&o));
    let verdict = json_stdout(&bftnode(&[
        "evidence",
        "verify",
        p,
        "--genesis",
        g,
        "--output",
        "json",
    ]));
    assert_eq!(verdict["valid"], true);
    assert_eq!(verdict["offender"], offender);
    eprintln!(
        "evidence verify: {} ms in fault::verify",
        verdict["verify_ms"]
    );

    // One byte of a signature flipped (its first hex digit): exit 4, the reason on one line.
    let mut tampered = proof.clone();
    let sig = tampered["evidence"]["a"]["signature"]
        .as_str()
        .unwrap()
        .to_string();
    let first = u8::from_str_radix(&sig[..2], 16).unwrap() ^ 0x01;
    tampered["evidence"]["a"]["signature"] = json!(format!("{first:02x}{}", &sig[2..]));
    let bad_path = dir.path().join("tampered.json");
    std::fs::write(&bad_path, tampered.to_string()).unwrap();
    let o = bftnode(&[
        "evidence",
        "verify",
        bad_path.to_str().unwrap(),
        "--genesis",
        g,
    ]);
    let err = assert_one_line_error(&o, 4);
    assert!(err.contains("signature does not verify"), "{err}");
    // A file that is not a proof is an input error (exit 1), not a verdict.
    let o = bftnode(&["evidence", "verify", g, "--genesis", g]);
    assert!(assert_one_line_error(&o, 1).contains("not an evidence proof"));
    eprintln!(
        "real-process test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
