//! The operator's view (issue 9 items 5 and 6) on four in-process validators over real QUIC and
//! RocksDB: chain-wide fault parameters from the genesis and a local `[fault]` knob reach the
//! running policy (`GET /faults` reports them); evidence stored before a start is restored,
//! proposed, committed and convicts its offender, and `GET /faults`, `GET /validators` and
//! `GET /evidence/{id}` show it; the proof verifies offline against the genesis and a tampered
//! one does not; network drop and ban counters are on `/metrics`.

mod common;

use common::*;
use consensus::{Evidence, Height, SigKind, SignedVote, ValidatorIndex, View, VoteData};
use node::config::{self, ConfigOverrides, Genesis, NodeConfig};
use node::proof::{EvidenceProof, verify_proof};
use node::rpc_types::*;
use reqwest::StatusCode;
use std::path::{Path, PathBuf};

/// Set the chain-wide `fault` parameters of every home's genesis (the same file everywhere).
fn set_genesis_params(homes: &[PathBuf], edit: impl Fn(&mut Genesis)) -> Genesis {
    let path = homes[0].join(config::GENESIS_FILE);
    let mut g = Genesis::load(&path).unwrap();
    edit(&mut g);
    for h in homes {
        g.save(&h.join(config::GENESIS_FILE)).unwrap();
    }
    g
}

/// E1 by the validator of `home`: two votes of `view` for different blocks, signed under the
/// chain's domain (chain-wide parameters included). Returns it and the offender's index.
fn double_vote_of(home: &Path, view: u64) -> (Evidence, ValidatorIndex) {
    let loaded = config::load_home(home, &ConfigOverrides::default()).unwrap();
    let vs = &loaded.validators;
    let vote = |b: u8| {
        let data = VoteData {
            view: View(view),
            block_id: consensus::Digest([b; 32]),
            height: Height(view),
            parent_id: consensus::Digest([0; 32]),
            parent_view: View(view - 1),
        };
        let sig = loaded
            .key
            .sign(vs.domain(), SigKind::Vote, &consensus::encode(&data));
        SignedVote { data, sig }
    };
    let ev = Evidence::DoubleVote {
        offender: loaded.index,
        a: vote(1),
        b: vote(2),
    };
    ev.verify(vs).unwrap();
    (ev, loaded.index)
}

/// Store `ev` in the database of `home` before its node starts (the node restores stored
/// evidence into its pool and proposes it).
fn store_evidence(home: &Path, ev: Evidence) {
    use storage::Store as _;
    let cfg = NodeConfig::load(home).unwrap();
    let mut store = storage::RocksStore::open(
        config::resolve(home, &cfg.db_path),
        storage::RocksOptions::default(),
    )
    .unwrap();
    store
        .write(storage::WriteBatch {
            sync: true,
            ops: vec![storage::Op::PutEvidence(Box::new(ev))],
        })
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_evidence_proofs_and_parameters_over_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let homes = testnet(dir.path(), 4);
    // Chain-wide: a non-default lag and rotation period, in every genesis copy.
    let genesis = set_genesis_params(&homes, |g| {
        g.fault.exclusion_lag = 5;
        g.fault.round_robin_every = 7;
    });
    // Local: node 0 keeps a smaller evidence pool.
    let mut cfg0 = NodeConfig::load(&homes[0]).unwrap();
    cfg0.fault.max_evidence = 77;
    std::fs::write(homes[0].join(config::CONFIG_FILE), cfg0.to_toml().unwrap()).unwrap();

    let (ev, offender) = double_vote_of(&homes[3], 3);
    let id = ev.id().to_hex();
    store_evidence(&homes[0], ev);

    let mut nodes = Vec::new();
    for h in &homes {
        nodes.push(node::spawn(h, fast()).await.unwrap());
    }
    let c = client();
    let addrs: Vec<_> = nodes.iter().map(|n| n.rpc_addr()).collect();

    // The parameters reached each node's policy.
    let f0: FaultsResponse = get_json(&c, addrs[0], "/faults").await.unwrap();
    let f1: FaultsResponse = get_json(&c, addrs[1], "/faults").await.unwrap();
    for f in [&f0, &f1] {
        assert_eq!(f.params.exclusion_lag, 5);
        assert_eq!(f.params.round_robin_every, 7);
        assert_eq!(f.domain_chain_id, genesis.domain_chain_id());
        assert!(
            f.domain_chain_id.starts_with("it-chain/fault:"),
            "{}",
            f.domain_chain_id
        );
        assert_eq!((f.validators, f.total_power, f.f, f.quorum), (4, 4, 1, 3));
    }
    assert_eq!(f0.params.max_evidence, 77);
    assert_eq!(f1.params.max_evidence, 1024);

    // The stored evidence is proposed by node 0 and committed: every node convicts and then
    // isolates the offender.
    for &a in &addrs {
        let ok = wait_until(60, || async {
            let f: Option<FaultsResponse> = get_json(&c, a, "/faults").await;
            f.is_some_and(|f| {
                f.convicted.iter().any(|e| e.index == offender.0)
                    && f.isolated.iter().any(|e| e.index == offender.0)
            })
        })
        .await;
        assert!(
            ok,
            "node at {a} did not convict and isolate validator {}",
            offender.0
        );
    }
    let f: FaultsResponse = get_json(&c, addrs[1], "/faults").await.unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&f).unwrap());
    let conv = f.convicted.iter().find(|e| e.index == offender.0).unwrap();
    assert!(
        conv.reason.contains("double_vote") && conv.reason.contains(&id),
        "{}",
        conv.reason
    );
    assert_eq!(conv.since_view, Some(3));
    let h = conv.since_height.expect("conviction height");
    assert!(h >= 1 && h <= f.committed_height, "{h}");
    let iso = f.isolated.iter().find(|e| e.index == offender.0).unwrap();
    assert!(iso.reason.contains("convicted"), "{}", iso.reason);
    assert!(iso.since_height.is_some_and(|s| s >= h), "{iso:?}");
    assert!(f.faulty_power >= 1);
    assert_eq!(f.tolerance_margin, f.f as i64 - f.faulty_power as i64);
    // The conviction height is committed data: the same on every node.
    for &a in &addrs {
        let g: FaultsResponse = get_json(&c, a, "/faults").await.unwrap();
        let e = g.convicted.iter().find(|e| e.index == offender.0).unwrap();
        assert_eq!(e.since_height, Some(h));
    }

    // /validators: the conflicting signed messages seen from it.
    let vs: Vec<ValidatorResponse> = get_json(&c, addrs[2], "/validators").await.unwrap();
    for v in &vs {
        let expect = u64::from(v.index == offender.0);
        assert_eq!(v.conflicting_messages, expect, "validator {}", v.index);
        assert_eq!(v.duplicate_key_suspected, 0);
    }

    // The proof: fetched from a node that did not produce it, verified offline.
    let proof: EvidenceProof = get_json(&c, addrs[2], &format!("/evidence/{id}"))
        .await
        .unwrap();
    assert!(proof.committed);
    assert_eq!(
        (proof.offender, proof.view, proof.kind.as_str()),
        (offender.0, 3, "double_vote")
    );
    let verdict = verify_proof(&proof, &genesis).unwrap();
    assert!(verdict.valid && verdict.safety);
    eprintln!("evidence verification: {:.3} ms", verdict.verify_ms);
    // One signature byte flipped: refused.
    let mut tampered = proof.clone();
    if let node::proof::EvidenceJson::DoubleVote { b, .. } = &mut tampered.evidence {
        let mut bytes = hex::decode(&b.signature).unwrap();
        bytes[10] ^= 1;
        b.signature = hex::encode(bytes);
    }
    let e = format!("{:#}", verify_proof(&tampered, &genesis).unwrap_err());
    assert!(e.contains("signature does not verify"), "{e}");
    // Without the chain's parameters the signing domain differs: the same proof is refused.
    let plain = Genesis {
        fault: Default::default(),
        ..genesis.clone()
    };
    let e = format!("{:#}", verify_proof(&proof, &plain).unwrap_err());
    assert!(e.contains("signature does not verify"), "{e}");

    let r = c.get(url(addrs[0], "/evidence/xyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .get(url(addrs[0], &format!("/evidence/{}", "ab".repeat(32))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Network drop and ban counters are exported.
    let m = metrics_text(&c, addrs[0]).await;
    for name in [
        "bftnode_net_bans_total",
        "bftnode_net_rate_limited_dropped_total",
        "bftnode_net_oversized_dropped_total",
        "bftnode_net_send_dropped_total",
        "bftnode_net_duplicate_key_suspected_total",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }

    // The offender's node stops: it is down as well, and still counted once.
    let mut nodes = nodes;
    let gone = nodes.pop().unwrap();
    let gone_index = gone.index();
    assert_eq!(gone_index, offender.0);
    gone.stop().await.unwrap();
    let down = wait_until(30, || async {
        let f: Option<FaultsResponse> = get_json(&c, addrs[1], "/faults").await;
        f.is_some_and(|f| {
            f.down
                .iter()
                .any(|e| e.index == gone_index && e.since_view.is_some())
                && f.faulty_power == 1
                && f.tolerance_margin == 0
        })
    })
    .await;
    assert!(
        down,
        "the stopped validator is not listed down, counted once"
    );
    for n in nodes {
        n.stop().await.unwrap();
    }
}

#[test]
fn bad_fault_knobs_are_refused_with_the_key_unit_and_range() {
    let dir = tempfile::tempdir().unwrap();
    let homes = config::generate_testnet_with(dir.path(), 1, "c", |_| Some((1, 2))).unwrap();
    let home = &homes[0];
    let err = || match config::load_home(home, &ConfigOverrides::default()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    };
    // config.toml [fault]
    let cfg_path = home.join(config::CONFIG_FILE);
    let good_cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let with_fault = |key: &str, value: i64| {
        let mut t: toml::Table = good_cfg.parse().unwrap();
        let section = t.entry("fault").or_insert(toml::Table::new().into());
        section
            .as_table_mut()
            .unwrap()
            .insert(key.to_string(), value.into());
        std::fs::write(&cfg_path, toml::to_string(&t).unwrap()).unwrap();
    };
    with_fault("suspect_missed", 0);
    let e = err();
    assert!(
        e.contains("config.toml")
            && e.contains("`fault.suspect_missed`: 0 is out of range: must be between 1 and 1000000 missed proposals (default 2)"),
        "{e}"
    );
    with_fault("exclusion_lag", 3);
    let e = err();
    assert!(
        e.contains("exclusion_lag"),
        "a chain-wide knob is not local: {e}"
    );
    std::fs::write(&cfg_path, &good_cfg).unwrap();

    // genesis.json "fault"
    let g_path = home.join(config::GENESIS_FILE);
    let good_g = std::fs::read_to_string(&g_path).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&good_g).unwrap();
    v["fault"] = serde_json::json!({"window": 5000});
    std::fs::write(&g_path, v.to_string()).unwrap();
    let e = err();
    assert!(
        e.contains("genesis.json")
            && e.contains("`fault.window`: 5000 is out of range: must be between 1 and 1000 committed blocks, or null (default null)"),
        "{e}"
    );
    v["fault"] = serde_json::json!({"max_evidence": 10});
    std::fs::write(&g_path, v.to_string()).unwrap();
    assert!(
        err().contains("max_evidence"),
        "a local knob is not chain-wide"
    );
    // A genesis without the object (older files) loads with the defaults and the plain domain.
    v.as_object_mut().unwrap().remove("fault");
    std::fs::write(&g_path, v.to_string()).unwrap();
    let l = config::load_home(home, &ConfigOverrides::default()).unwrap();
    assert_eq!(l.genesis.fault, Default::default());
    assert_eq!(l.validators.domain().chain_id(), "c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_is_refused_under_other_chain_wide_parameters() {
    // The chain-wide parameters are bound into the signing domain, so into the genesis block
    // id: a node restarted with a genesis whose parameters changed refuses its database
    // instead of electing other leaders than its peers.
    let dir = tempfile::tempdir().unwrap();
    let homes = testnet(dir.path(), 1);
    let n = node::spawn(&homes[0], fast()).await.unwrap();
    n.stop().await.unwrap();
    set_genesis_params(&homes, |g| g.fault.failure_threshold_pct = 50);
    let e = match node::spawn(&homes[0], fast()).await {
        Ok(_) => panic!("a database created under other parameters was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("different genesis"), "{e}");
    // Back to the original parameters: the database is accepted again.
    set_genesis_params(&homes, |g| g.fault = Default::default());
    node::spawn(&homes[0], fast())
        .await
        .unwrap()
        .stop()
        .await
        .unwrap();
}
