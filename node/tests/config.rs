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
    config::init_home(dir.path(), "test-chain", 0, 0).unwrap();
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
    assert!(config::init_home(dir.path(), "test-chain", 0, 0).is_err());
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

#[test]
fn unknown_and_bad_fields_are_named() {
    let cfg = NodeConfig::new(
        "c",
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    );
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
    config::init_home(c.path(), "other-chain", 0, 0).unwrap();
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
    let cfg = NodeConfig::new(
        "c",
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    );
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
