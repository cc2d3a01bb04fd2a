//! Configuration loading: every error names the file/field and the reason.

use node::config::{self, CONFIG_FILE, ConfigOverrides, GENESIS_FILE, KEY_FILE, NodeConfig};
use std::path::Path;

fn err_of(home: &Path) -> String {
    match config::load_home(home, &ConfigOverrides::default()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

fn fresh() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    config::init_single(dir.path(), "test-chain", 0, 0).unwrap();
    dir
}

#[test]
fn init_home_loads() {
    let dir = fresh();
    let l = config::load_home(dir.path(), &ConfigOverrides::default()).unwrap();
    assert_eq!(l.config.chain_id, "test-chain");
    assert_eq!(l.validators.len(), 1);
    assert_eq!(l.index.0, 0);
    assert!(l.config.rpc_listen.ip().is_loopback());
    // A second init refuses to overwrite.
    assert!(config::init_single(dir.path(), "test-chain", 0, 0).is_err());
}

#[cfg(unix)]
#[test]
fn key_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = fresh();
    let mode = std::fs::metadata(dir.path().join(KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    std::fs::set_permissions(
        dir.path().join(KEY_FILE),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let e = err_of(dir.path());
    assert!(e.contains("chmod 600"), "{e}");
}

#[test]
fn corrupt_toml_names_the_file() {
    let dir = fresh();
    std::fs::write(
        dir.path().join(CONFIG_FILE),
        "chain_id = \"x\"\np2p_listen = [",
    )
    .unwrap();
    let e = err_of(dir.path());
    assert!(e.contains("config.toml"), "{e}");
}

/// A configuration with defaults, listening on 127.0.0.1:1 (p2p) and :2 (RPC).
fn sample_config() -> NodeConfig {
    NodeConfig::new(
        "c",
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    )
}

#[test]
fn unknown_and_bad_fields_are_named() {
    let cfg = sample_config();
    let text = cfg.to_toml().unwrap();
    let e = format!(
        "{:#}",
        NodeConfig::from_toml(&format!("{text}\nbogus_field = 1\n"), "cfg").unwrap_err()
    );
    assert!(e.contains("bogus_field"), "{e}");

    let bad = text.replace("delta_ms = 100", "delta_ms = 0");
    let e = format!("{:#}", NodeConfig::from_toml(&bad, "cfg").unwrap_err());
    assert!(e.contains("consensus.delta_ms"), "{e}");

    let bad = text.replace("p2p_listen = \"127.0.0.1:1\"", "p2p_listen = \"nonsense\"");
    let e = format!("{:#}", NodeConfig::from_toml(&bad, "cfg").unwrap_err());
    assert!(e.contains("p2p_listen"), "{e}");

    // Pruning: 0 keeps everything (the default); otherwise at least the minimum.
    assert!(text.contains("retain_heights = 0"), "{text}");
    let retain = |n: u64| text.replace("retain_heights = 0", &format!("retain_heights = {n}"));
    let e = format!(
        "{:#}",
        NodeConfig::from_toml(&retain(100), "cfg").unwrap_err()
    );
    assert!(
        e.contains("storage.retain_heights") && e.contains("10000"),
        "{e}"
    );
    let min = node::pruner::MIN_RETAIN_HEIGHTS;
    let ok = NodeConfig::from_toml(&retain(min), "cfg").unwrap();
    assert_eq!(ok.storage.retain_heights, min);

    // RocksDB's memory bounds: written out with their defaults, below the minimum named, and
    // passed to the store as bytes.
    assert!(text.contains("block_cache_mb = 64"), "{text}");
    assert!(text.contains("memtable_mb = 256"), "{text}");
    for (line, name, min) in [
        ("block_cache_mb = 64", "storage.block_cache_mb", 8),
        ("memtable_mb = 256", "storage.memtable_mb", 16),
    ] {
        let bad = text.replace(line, &format!("{} = 1", name.rsplit('.').next().unwrap()));
        let e = format!("{:#}", NodeConfig::from_toml(&bad, "cfg").unwrap_err());
        assert!(
            e.contains(name) && e.contains(&format!("between {min} ")),
            "{e}"
        );
    }
    let ok = NodeConfig::from_toml(
        &text.replace("block_cache_mb = 64", "block_cache_mb = 8"),
        "cfg",
    )
    .unwrap();
    let rocks = ok.storage.rocks_options();
    assert_eq!(
        (rocks.block_cache_bytes, rocks.memtable_budget_bytes),
        (8 << 20, 256 << 20)
    );

    // Blob garbage collection for the application's values: off unless asked, a percentage.
    assert!(text.contains("app_blob_gc_percent = 0"), "{text}");
    assert_eq!(rocks.app_blob_gc_percent, 0);
    let on = NodeConfig::from_toml(
        &text.replace("app_blob_gc_percent = 0", "app_blob_gc_percent = 25"),
        "cfg",
    )
    .unwrap();
    assert_eq!(on.storage.rocks_options().app_blob_gc_percent, 25);
    let bad = text.replace("app_blob_gc_percent = 0", "app_blob_gc_percent = 101");
    let e = format!("{:#}", NodeConfig::from_toml(&bad, "cfg").unwrap_err());
    assert!(e.contains("storage.app_blob_gc_percent"), "{e}");
}

#[test]
fn missing_key_file() {
    let dir = fresh();
    std::fs::remove_file(dir.path().join(KEY_FILE)).unwrap();
    let e = err_of(dir.path());
    assert!(
        e.contains("cannot read key file") && e.contains(KEY_FILE),
        "{e}"
    );
}

#[test]
fn corrupt_key_file() {
    let dir = fresh();
    let p = dir.path().join(KEY_FILE);
    std::fs::write(&p, "zz-not-hex").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let e = err_of(dir.path());
    assert!(e.contains("secret_seed"), "{e}");
}

#[test]
fn bad_genesis() {
    let dir = fresh();
    let p = dir.path().join(GENESIS_FILE);
    std::fs::write(&p, "{ not json").unwrap();
    let e = err_of(dir.path());
    assert!(e.contains("invalid genesis file"), "{e}");

    let mut g = config::Genesis::load(&fresh().path().join(GENESIS_FILE)).unwrap();
    g.validators[0].power = 0;
    g.chain_id = "test-chain".into();
    g.save(&p).unwrap();
    let e = err_of(dir.path());
    assert!(e.contains("validators") && e.contains("power"), "{e}");

    let text = std::fs::read_to_string(&p).unwrap();
    let pk = hex::encode(g.validators[0].public_key.0);
    std::fs::write(&p, text.replace(&pk, "abcd")).unwrap();
    let e = err_of(dir.path());
    assert!(e.contains("public key"), "{e}");
}

#[test]
fn key_not_in_genesis_and_chain_mismatch() {
    let a = fresh();
    let b = fresh();
    std::fs::copy(b.path().join(GENESIS_FILE), a.path().join(GENESIS_FILE)).unwrap();
    let e = err_of(a.path());
    assert!(e.contains("not a validator"), "{e}");

    let c = tempfile::tempdir().unwrap();
    config::init_single(c.path(), "other-chain", 0, 0).unwrap();
    std::fs::copy(c.path().join(GENESIS_FILE), a.path().join(GENESIS_FILE)).unwrap();
    let e = err_of(a.path());
    assert!(e.contains("chain_id"), "{e}");
}

#[test]
fn overrides_apply() {
    let dir = fresh();
    let o = ConfigOverrides {
        rpc_listen: Some("127.0.0.1:9999".parse().unwrap()),
        delta_ms: Some(7),
        ..Default::default()
    };
    let l = config::load_home(dir.path(), &o).unwrap();
    assert_eq!(l.config.rpc_listen.port(), 9999);
    assert_eq!(l.config.consensus.delta_ms, 7);
    let bad = ConfigOverrides {
        max_block_bytes: Some(10),
        ..Default::default()
    };
    let e = format!("{:#}", config::load_home(dir.path(), &bad).unwrap_err());
    assert!(e.contains("block.max_block_bytes"), "{e}");
}

#[test]
fn testnet_homes_share_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let homes = config::generate_testnet(dir.path(), 4, 26000, 27000, "tn").unwrap();
    assert_eq!(homes.len(), 4);
    let g0 = std::fs::read(homes[0].join(GENESIS_FILE)).unwrap();
    let mut indices = Vec::new();
    for (i, h) in homes.iter().enumerate() {
        assert!(h.ends_with(format!("node{i}")));
        assert_eq!(std::fs::read(h.join(GENESIS_FILE)).unwrap(), g0);
        let l = config::load_home(h, &ConfigOverrides::default()).unwrap();
        assert_eq!(l.config.p2p_listen.port(), 26000 + i as u16);
        assert_eq!(l.config.rpc_listen.port(), 27000 + i as u16);
        indices.push(l.index.0);
    }
    indices.sort();
    assert_eq!(indices, vec![0, 1, 2, 3]);
}

/// Found by the `config_toml` fuzz target: a field-value filter in `log_level` was compiled as
/// a regex into a DFA exponential in the pattern (k = 16: 4.6 s; k = 24: minutes and GiB), at
/// every start. Field values now match literally; validation of k = 24 takes microseconds. The
/// bound below is three orders of magnitude above the fixed cost and far below the bug's.
#[test]
fn a_pathological_log_filter_is_checked_without_compiling_a_regex() {
    let cfg = sample_config();
    let text = cfg.to_toml().unwrap();
    let level = format!("[{{f=(a|b)*a{}}}]", "(a|b)".repeat(24));
    let line = text
        .lines()
        .find(|l| l.starts_with("log_level"))
        .expect("log_level is written")
        .to_string();
    let bad = text.replace(&line, &format!("log_level = \"{level}\""));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(
            NodeConfig::from_toml(&bad, "cfg")
                .map(|_| ())
                .map_err(|e| e.to_string()),
        );
    });
    let outcome = rx.recv_timeout(std::time::Duration::from_secs(30));
    assert!(
        outcome.is_ok(),
        "validating the log filter did not finish in 30 s"
    );
}

/// Set the top-level `key = value` of `home`'s config.toml (edited as a TOML table).
fn set_config(home: &Path, key: &str, value: &str) {
    let path = home.join(CONFIG_FILE);
    let mut doc: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    doc.insert(key.to_string(), toml::Value::String(value.to_string()));
    std::fs::write(&path, doc.to_string()).unwrap();
}

/// Set `home`'s `persistent_peers` (edited as a TOML table).
fn set_peers_raw(home: &Path, peers: &[String]) {
    let path = home.join(CONFIG_FILE);
    let mut doc: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let list = peers.iter().cloned().map(toml::Value::String).collect();
    doc.insert("persistent_peers".to_string(), toml::Value::Array(list));
    std::fs::write(&path, doc.to_string()).unwrap();
}

/// Issue 8 finding 8, now in `persistent_peers`: two validators at one address (a copy-paste
/// slip) would leave one unreachable, so the list is refused naming both entries; so is one
/// key listed twice, and a key that is not a validator of the chain.
#[test]
fn bad_peer_lists_are_refused_naming_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let homes = config::generate_testnet(dir.path(), 3, 26100, 27100, "tn").unwrap();
    let l = config::load_home(&homes[1], &ConfigOverrides::default()).unwrap();
    let entries: Vec<String> = l
        .config
        .persistent_peers
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(
        entries.len(),
        2,
        "node1's own entry is left out: {entries:?}"
    );
    let (k0, a0) = entries[0].split_once('@').unwrap();
    let (k2, _) = entries[1].split_once('@').unwrap();

    set_peers_raw(&homes[1], &[entries[0].clone(), format!("{k2}@{a0}")]);
    let e = err_of(&homes[1]);
    assert!(
        e.contains("same address") && e.contains(k0) && e.contains(k2),
        "{e}"
    );

    set_peers_raw(
        &homes[1],
        &[entries[0].clone(), format!("{k0}@127.0.0.1:26199")],
    );
    let e = err_of(&homes[1]);
    assert!(e.contains("same public key"), "{e}");

    let stranger = format!("{}@127.0.0.1:26198", "ab".repeat(32));
    set_peers_raw(
        &homes[1],
        &[entries[0].clone(), entries[1].clone(), stranger.clone()],
    );
    let e = err_of(&homes[1]);
    assert!(
        e.contains(&stranger) && e.contains("not a validator"),
        "{e}"
    );

    set_peers_raw(&homes[1], &[format!("{k0}@127.0.0.1")]);
    let e = err_of(&homes[1]);
    assert!(
        e.contains("persistent_peers") && e.contains("not an IP address and port"),
        "{e}"
    );

    // Distinct ports on one IP are fine (the generated testnet itself).
    config::load_home(&homes[0], &ConfigOverrides::default()).unwrap();
}

/// Issue 8 finding 8: the others dial the address our own `persistent_peers` entry gives; a
/// `p2p_listen` (from config.toml or `--p2p-listen`) elsewhere would leave us unreachable, so
/// it is refused. An unspecified IP listens everywhere and matches any IP with the same port.
#[test]
fn p2p_listen_must_match_our_own_peer_entry() {
    let dir = tempfile::tempdir().unwrap();
    let pk = config::init_single(dir.path(), "test-chain", 26200, 0).unwrap();
    set_peers_raw(
        dir.path(),
        &[format!("{}@127.0.0.1:26200", hex::encode(pk.0))],
    );
    for (listen, ok) in [
        ("127.0.0.1:26201", false),
        ("0.0.0.0:26201", false),
        ("127.0.0.2:26200", false),
        ("[::1]:26200", false),
        ("127.0.0.1:26200", true),
        ("0.0.0.0:26200", true),
        ("[::]:26200", true),
        ("[::ffff:127.0.0.1]:26200", true),
    ] {
        set_config(dir.path(), "p2p_listen", listen);
        match config::load_home(dir.path(), &ConfigOverrides::default()) {
            Ok(_) => assert!(ok, "{listen} accepted"),
            Err(e) => {
                let e = format!("{e:#}");
                assert!(!ok, "{listen} refused: {e}");
                assert!(
                    e.contains("p2p_listen") && e.contains(listen) && e.contains("127.0.0.1:26200"),
                    "{listen}: {e}"
                );
            }
        }
    }
    let o = ConfigOverrides {
        p2p_listen: Some("127.0.0.1:26299".parse().unwrap()),
        ..Default::default()
    };
    let e = format!("{:#}", config::load_home(dir.path(), &o).unwrap_err());
    assert!(e.contains("p2p_listen") && e.contains("26299"), "{e}");
}

/// Issue 11 item 1, the key ceremony through the library: four validators each `init` their
/// own home (listening on every address, announcing an external one); their validator files
/// make one genesis; a home with the genesis but without the others' addresses refuses to
/// start, naming every validator it cannot dial; with `set_peers` it loads and dials each
/// validator at the address its own file announced.
#[test]
fn key_ceremony_builds_a_genesis_no_key_left_its_home_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let mut homes = Vec::new();
    for i in 0..4u8 {
        let home = dir.path().join(format!("host{i}"));
        let mut opts = config::InitOptions::loopback("ceremony", 26600, 26700);
        opts.p2p_listen = "0.0.0.0:26600".parse().unwrap();
        opts.p2p_external = Some(format!("10.0.0.{}:26600", i + 1).parse().unwrap());
        let v = config::init_home(&home, &opts).unwrap();
        assert!(!home.join(GENESIS_FILE).exists(), "init writes no genesis");
        let loaded = config::ValidatorFile::load(&home.join(config::VALIDATOR_FILE)).unwrap();
        assert_eq!(loaded, v);
        let text = std::fs::read_to_string(home.join(config::VALIDATOR_FILE)).unwrap();
        let seed = std::fs::read_to_string(home.join(KEY_FILE)).unwrap();
        let seed: serde_json::Value = serde_json::from_str(&seed).unwrap();
        assert!(!text.contains(seed["secret_seed"].as_str().unwrap()));
        files.push((format!("host{i}/validator.json"), v));
        homes.push(home);
    }
    let genesis = config::build_genesis(None, &files, 1).unwrap();
    assert_eq!(genesis.chain_id, "ceremony");
    assert_eq!(genesis.validators.len(), 4);

    // What the ceremony refuses, naming the files.
    let mut other = files.clone();
    other[2].1.chain_id = "elsewhere".into();
    let e = config::build_genesis(None, &other, 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("host2/validator.json") && e.contains("elsewhere"),
        "{e}"
    );
    let e = config::build_genesis(Some("x"), &files, 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("host0/validator.json") && e.contains("\"x\""),
        "{e}"
    );
    let mut twice = files.clone();
    twice[3] = (twice[3].0.clone(), twice[1].1.clone());
    let e = config::build_genesis(None, &twice, 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("host1/validator.json") && e.contains("host3") && e.contains("public key"),
        "{e}"
    );
    let mut same_addr = files.clone();
    same_addr[3].1.p2p_addr = same_addr[0].1.p2p_addr;
    let e = config::build_genesis(None, &same_addr, 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("host0/validator.json") && e.contains("10.0.0.1:26600"),
        "{e}"
    );
    assert!(config::build_genesis(None, &[], 1).is_err());

    for h in &homes {
        genesis.save(&h.join(GENESIS_FILE)).unwrap();
    }
    let e = err_of(&homes[0]);
    assert!(e.contains("no address for validator"), "{e}");
    for (_, f) in &files[1..] {
        assert!(e.contains(&hex::encode(f.public_key.0)), "{e}");
    }
    assert!(!e.contains(&hex::encode(files[0].1.public_key.0)), "{e}");

    let peers: Vec<_> = files.iter().map(|(_, f)| f.peer()).collect();
    for (h, (_, own)) in homes.iter().zip(&files) {
        assert_eq!(config::set_peers(h, &peers).unwrap(), 3);
        let l = config::load_home(h, &ConfigOverrides::default()).unwrap();
        assert_eq!(l.key.public(), own.public_key);
        assert_eq!(l.peers.len(), 4);
        for p in &l.peers {
            let f = &files
                .iter()
                .find(|(_, f)| f.public_key.0 == p.public_key)
                .unwrap()
                .1;
            let want = if f.public_key == own.public_key {
                "0.0.0.0:26600".parse().unwrap()
            } else {
                f.p2p_addr
            };
            assert_eq!(p.addr, want);
        }
    }
}

/// `init` listening on every address without saying where it is reached refuses, and leaves
/// no key behind.
#[test]
fn init_on_an_unspecified_address_needs_the_external_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = config::InitOptions::loopback("c", 26600, 26700);
    opts.p2p_listen = "0.0.0.0:26600".parse().unwrap();
    let e = config::init_home(dir.path(), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--p2p-external"), "{e}");
    assert!(!dir.path().join(KEY_FILE).exists());
    assert!(!dir.path().join(CONFIG_FILE).exists());
}

fn assert_zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}

/// Issue 8 finding 8: the secret seed never shows in `Debug` output (logs, panics, error
/// chains) of the key file, the loaded home or the network configuration, and the types that
/// hold it are zeroed when dropped.
#[test]
fn secrets_stay_out_of_debug_output() {
    let dir = fresh();
    let text = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
    let kf: config::KeyFile = serde_json::from_str(&text).unwrap();
    let seed_hex = kf.secret_seed.clone();
    let seed: [u8; 32] = hex::decode(&seed_hex).unwrap().try_into().unwrap();

    let shown = format!("{kf:?} {kf:#?}");
    assert!(!shown.contains(&seed_hex), "{shown}");
    assert!(
        shown.contains("<redacted>") && shown.contains(&kf.public_key),
        "{shown}"
    );

    let loaded = config::load_home(dir.path(), &ConfigOverrides::default()).unwrap();
    let shown = format!("{loaded:?}");
    assert!(!shown.contains(&seed_hex), "{shown}");

    let net = network::NetworkConfig::new(seed, "127.0.0.1:1".parse().unwrap(), Vec::new());
    let shown = format!("{net:?} {net:#?}");
    assert!(!shown.contains(&format!("{seed:?}")), "{shown}");
    assert!(!shown.contains("secret_key: ["), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert_eq!(net.secret_key.expose(), &seed);

    assert_zeroized_on_drop::<config::KeyFile>();
    assert_zeroized_on_drop::<network::SecretSeed>();
}

/// The `[rpc]` section: defaults when absent, every bad value named.
#[test]
fn rpc_section_is_validated() {
    let cfg = sample_config();
    let text = cfg.to_toml().unwrap();
    let without: String = text.split("[rpc]").next().unwrap().to_string();
    let parsed = NodeConfig::from_toml(&without, "cfg").unwrap();
    assert_eq!(parsed.rpc, config::RpcSection::default());
    assert_eq!(parsed.rpc.request_timeout_ms, 10_000);
    for (line, field) in [
        ("max_connections = 0", "rpc.max_connections"),
        ("max_concurrent_requests = 0", "rpc.max_concurrent_requests"),
        ("request_timeout_ms = 0", "rpc.request_timeout_ms"),
        (
            "header_read_timeout_ms = 99999999999",
            "rpc.header_read_timeout_ms",
        ),
        (
            r#"allowed_hosts = ["node.example:80"]"#,
            "rpc.allowed_hosts",
        ),
        (r#"allowed_hosts = ["a b"]"#, "rpc.allowed_hosts"),
        (r#"allowed_hosts = [""]"#, "rpc.allowed_hosts"),
        ("bogus = 1", "bogus"),
    ] {
        let bad = format!("{without}\n[rpc]\n{line}\n");
        let e = format!("{:#}", NodeConfig::from_toml(&bad, "cfg").unwrap_err());
        assert!(e.contains(field), "{line}: {e}");
    }
    let good = format!(
        "{without}\n[rpc]\nallowed_hosts = [\"node.example\", \"10.0.0.5\", \"[fe80::1]\", \"*\"]\n"
    );
    NodeConfig::from_toml(&good, "cfg").unwrap();
}

#[test]
fn network_section_is_applied_and_validated() {
    let cfg = sample_config();
    let text = cfg.to_toml().unwrap();
    assert!(text.contains("[network]"), "{text}");
    let without: String = text.split("[network]").next().unwrap().to_string();
    let parsed = NodeConfig::from_toml(&without, "cfg").unwrap();
    assert_eq!(parsed.network, config::NetworkSection::default());
    // Defaults are the network crate's own.
    let any = "127.0.0.1:1".parse().unwrap();
    let defaults = network::NetworkConfig::new([0; 32], any, Vec::new());
    assert_eq!(parsed.network.max_strangers, defaults.max_strangers);
    assert_eq!(
        parsed.network.gossip_bytes_per_sec,
        defaults.gossip_bytes_per_sec
    );
    // A value set in the file reaches the network configuration.
    let tuned = format!("{without}\n[network]\nmax_strangers = 3\nredial_max_ms = 9000\n");
    let parsed = NodeConfig::from_toml(&tuned, "cfg").unwrap();
    let mut net = network::NetworkConfig::new([0; 32], any, Vec::new());
    parsed.network.apply_to(&mut net);
    assert_eq!((net.max_strangers, net.redial_max_ms), (3, 9000));
    assert_eq!(net.max_strangers_per_ip, defaults.max_strangers_per_ip);
    for (line, why) in [
        ("redial_min_ms = 0", "redial_min_ms"),
        ("ban_score = 0", "ban_score"),
        ("gossip_bytes_per_sec = 0", "gossip_bytes_per_sec"),
        ("event_queue_bytes = 1000", "event_queue_bytes"),
        (
            "max_inflight_bytes_per_peer = 10",
            "max_inflight_bytes_per_peer",
        ),
        ("max_frame_bytes = 10", "max_frame_bytes"),
        ("bogus = 1", "bogus"),
    ] {
        let bad = format!("{without}\n[network]\n{line}\n");
        let e = format!("{:#}", NodeConfig::from_toml(&bad, "cfg").unwrap_err());
        assert!(e.contains(why), "{line}: {e}");
    }
}
