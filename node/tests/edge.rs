//! The network edge under attack (issue 8), four in-process validators over real QUIC on
//! 127.0.0.0/8 with real RocksDB: an outsider and a validator flooding transaction gossip, and a
//! crowd of strangers holding every stranger slot while validators restart and a 2|2 split
//! heals. Each scenario prints the honest validators' commit rate under attack against quiet.

mod common;

use common::cluster::*;
use common::*;
use network::{NetworkConfig, NetworkHandle, Topic, ValidatorPeer};
use node::app::{Op, Transaction};
use node::rpc_types::{BatchRequest, BatchResponse, PeerResponse, TxRequest};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Client transactions offered per second during every phase.
const CLIENT_TX_PER_SEC: usize = 200;
/// Length of one measured phase.
const PHASE: Duration = Duration::from_secs(10);

/// One batch of puts to `addr`: the keys accepted, and the submission latency.
async fn submit(
    c: reqwest::Client,
    addr: SocketAddr,
    names: Vec<String>,
) -> (Vec<String>, Duration) {
    let t = Instant::now();
    let txs = names
        .iter()
        .map(|key| TxRequest::Put {
            key: key.clone(),
            value: "v".into(),
            nonce: 0,
            expires_at: None,
        })
        .collect();
    let reply = c
        .post(url(addr, "/txs"))
        .json(&BatchRequest { txs })
        .send()
        .await;
    let accepted = match reply {
        Ok(r) => match r.json::<BatchResponse>().await {
            Ok(b) => {
                let refused: Vec<usize> = b.errors.iter().map(|e| e.index).collect();
                names
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| !refused.contains(i))
                    .map(|(_, n)| n)
                    .collect()
            }
            Err(_) => Vec::new(),
        },
        Err(_) => Vec::new(),
    };
    (accepted, t.elapsed())
}

/// Offers `CLIENT_TX_PER_SEC` puts to `addr` for `PHASE`, open loop (a batch every 100 ms
/// whatever the node's latency); returns the keys offered and accepted, and prints the worst
/// submission latency.
async fn offer_load(c: &reqwest::Client, addr: SocketAddr, tag: &str) -> (usize, Vec<String>) {
    let batch = CLIENT_TX_PER_SEC / 10;
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let start = Instant::now();
    let mut k = 0;
    while start.elapsed() < PHASE {
        tick.tick().await;
        let names: Vec<String> = (k..k + batch).map(|i| format!("{tag}-{i}")).collect();
        k += batch;
        tasks.push(tokio::spawn(submit(c.clone(), addr, names)));
    }
    let mut keys = Vec::new();
    let mut worst = Duration::ZERO;
    for t in tasks {
        let (accepted, latency) = t.await.unwrap();
        keys.extend(accepted);
        worst = worst.max(latency);
    }
    eprintln!(
        "phase {tag}: worst submission latency {} ms",
        worst.as_millis()
    );
    (k, keys)
}

/// How many of `keys` are committed at `addr`, after a grace period for the last ones.
async fn committed(c: &reqwest::Client, addr: SocketAddr, keys: &[String]) -> usize {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut n = 0;
    for k in keys {
        if kv(c, addr, k).await.is_some_and(|r| r.found) {
            n += 1;
        }
    }
    n
}

/// Client transactions committed per second over one phase of load at `addr`.
async fn phase_rate(c: &reqwest::Client, addr: SocketAddr, tag: &str) -> f64 {
    let (offered, keys) = offer_load(c, addr, tag).await;
    let n = committed(c, addr, &keys).await;
    let rate = n as f64 / PHASE.as_secs_f64();
    eprintln!(
        "phase {tag}: {offered} offered, {} accepted, {n} committed: {rate:.1} tx/s",
        keys.len()
    );
    rate
}

/// The attack payload: well-formed one-byte-key deletes filling a gossip message
/// (45,000 of 22 bytes, ~990 KB encoded; the 70,000 were 14 bytes each before
/// transactions carried an expiry), admissible until height `TX_VALIDITY_WINDOW`.
fn flood_message(salt: u64) -> Vec<u8> {
    let txs: Vec<Transaction> = (0..45_000u64)
        .map(|i| Transaction {
            op: Op::Delete {
                key: vec![(i % 251) as u8 + 1],
            },
            nonce: salt * 100_000 + i,
            expires_at: consensus::Height(node::app::TX_VALIDITY_WINDOW),
        })
        .collect();
    consensus::encode(&txs)
}

/// Publishes 10 flood messages per second from `net` until `stop`.
fn flood(net: NetworkHandle, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            net.publish(Topic::Transactions, flood_message(sent));
            sent += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        sent
    })
}

/// The edge tests run one at a time: the flood test compares a client's commit rate with and
/// without a flood, which another 4-node cluster on the same 2 cores would distort (a CI run
/// measured 0.39 instead of ~1.0 with the stranger test beside it).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_floods_by_an_outsider_or_a_validator_do_not_starve_clients() {
    let _serial = SERIAL.lock().await;
    let mut cl = Cluster::start(4).await;
    let c = client();
    let (peers, seed3, p2p3) = network_view(&cl.homes[3]);
    // Node 3's key is the Byzantine validator's below; the real node 3 stays down throughout,
    // so every phase runs on the same three honest validators.
    cl.stop(3).await;
    let target = cl.addr(0);
    assert!(
        wait_until(60, || async {
            status(&c, target)
                .await
                .is_some_and(|s| s.committed_height >= 3)
        })
        .await,
        "the three validators do not commit"
    );
    let quiet = phase_rate(&c, target, "quiet").await;
    assert!(quiet > 0.0, "nothing committed without an attack");

    // (a) An outsider (fresh identity, no validator key) publishing the flood.
    let port = free_udp_ports(1)[0];
    let (outsider, _orx) = raw_swarm(
        rand::random(),
        format!("127.0.0.1:{port}").parse().unwrap(),
        peers.clone(),
        |_| {},
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flood(outsider.clone(), stop.clone());
    let outsider_rate = phase_rate(&c, target, "outsider").await;
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.await.unwrap();
    let om = outsider.metrics().await;
    eprintln!(
        "outsider: {sent} flood messages, {} published: {om:?}",
        om.gossip_out
    );
    outsider.shutdown();
    for i in 0..3 {
        let gossip_in = metric(&c, cl.addr(i), "bftnode_net_gossip_in_total").await;
        eprintln!("node {i}: gossip accepted {gossip_in}");
    }

    // (b) A genesis validator's key publishing the same flood: within its per-author budget
    // the gossip is delivered, and it must still not crowd the clients out.
    let (byz, _brx) = raw_swarm(seed3, p2p3, peers, |_| {}).await;
    let stop = Arc::new(AtomicBool::new(false));
    let flooder = flood(byz.clone(), stop.clone());
    let validator_rate = phase_rate(&c, target, "validator").await;
    stop.store(true, Ordering::Relaxed);
    let sent = flooder.await.unwrap();
    let bm = byz.metrics().await;
    eprintln!(
        "byzantine validator: {sent} flood messages, {} published",
        bm.gossip_out
    );
    for i in 0..3 {
        let a = cl.addr(i);
        eprintln!(
            "node {i}: gossip accepted {}, rejected {}, dropped at the queue {}",
            metric(&c, a, "bftnode_net_gossip_in_total").await,
            metric(&c, a, "bftnode_net_gossip_rejected_total").await,
            metric(&c, a, "bftnode_net_gossip_events_dropped_total").await,
        );
    }
    byz.shutdown();

    let (ro, rv) = (outsider_rate / quiet, validator_rate / quiet);
    eprintln!(
        "client commit rate: quiet {quiet:.1} tx/s, outsider flood {outsider_rate:.1} ({ro:.2}), \
         validator flood {validator_rate:.1} ({rv:.2}); target >= 0.80"
    );
    // The target is 0.8 (printed above); the assertions leave room for a loaded CI machine.
    assert!(
        ro >= 0.5,
        "an outsider's gossip flood starved the clients: {ro:.2}"
    );
    assert!(
        rv >= 0.5,
        "a validator's gossip flood starved the clients: {rv:.2}"
    );
    cl.shutdown().await;
}

/// Starts `count` strangers, `per_ip` per loopback address from 127.0.0.10 up, each dialling
/// every validator; they redial whenever closed or refused.
async fn strangers(
    peers: &[ValidatorPeer],
    count: usize,
    per_ip: usize,
) -> Vec<(NetworkHandle, network::EventReceiver)> {
    let mut out = Vec::new();
    for k in 0..count {
        let ip = format!("127.0.0.{}", 10 + k / per_ip);
        let sock = std::net::UdpSocket::bind(format!("{ip}:0")).unwrap();
        let listen = sock.local_addr().unwrap();
        drop(sock);
        let mut cfg = NetworkConfig::new(rand::random(), listen, peers.to_vec());
        cfg.redial_min_ms = 200;
        cfg.redial_max_ms = 1_000;
        out.push(network::start(cfg).await.unwrap());
    }
    out
}

/// Validators node `i` sees connected, from its `/peers`.
async fn connected_peers(c: &reqwest::Client, addr: SocketAddr) -> usize {
    let peers: Vec<PeerResponse> = get_json(c, addr, "/peers").await.unwrap_or_default();
    peers.iter().filter(|p| p.connected).count()
}

/// Seconds until node `i` sees all 3 other validators connected (panics after 60 s).
async fn reconnect_secs(c: &reqwest::Client, cl: &Cluster, i: usize, since: Instant) -> f64 {
    let a = cl.addr(i);
    let ok = wait_until(60, || async { connected_peers(c, a).await == 3 }).await;
    assert!(ok, "node {i} did not reconnect to every validator");
    since.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_holding_every_slot_cannot_keep_validators_out() {
    let _serial = SERIAL.lock().await;
    let mut cl = Cluster::start(4).await;
    let c = client();
    let (peers, _, _) = network_view(&cl.homes[0]);
    assert!(
        wait_until(60, || async {
            status(&c, cl.addr(0))
                .await
                .is_some_and(|s| s.committed_height >= 3)
        })
        .await
    );
    // 80 strangers, 4 per IP over 20 addresses: more than every node's 32 stranger slots, and
    // more than the 2n + 64 = 72 inbound slots strangers and validators used to share.
    let crowd = strangers(&peers, 80, 4).await;
    let full = wait_until(30, || async {
        let mut all = true;
        for i in 0..4 {
            all &= metric(&c, cl.addr(i), "bftnode_net_connections_refused_total").await > 0.0;
        }
        all
    })
    .await;
    assert!(full, "the strangers never filled the stranger slots");

    // A validator restarts into the crowd.
    cl.stop(3).await;
    let t = Instant::now();
    cl.restart(3).await;
    let up = t.elapsed().as_secs_f64();
    let secs = reconnect_secs(&c, &cl, 3, t).await;
    eprintln!(
        "restarted validator: process up after {up:.1} s, connected to all 3 peers after {secs:.1} s"
    );

    // A 2|2 split heals: both halves restart, so every connection is dialled into nodes whose
    // stranger slots are full.
    cl.stop(2).await;
    cl.stop(3).await;
    let t = Instant::now();
    cl.restart(2).await;
    cl.restart(3).await;
    let up = t.elapsed().as_secs_f64();
    eprintln!("2|2 heal: both restarted after {up:.1} s");
    let mut heal = 0.0f64;
    for i in 0..4 {
        heal = heal.max(reconnect_secs(&c, &cl, i, t).await);
    }
    eprintln!("2|2 heal: every validator connected to every other in {heal:.1} s");
    let h = status(&c, cl.addr(0)).await.unwrap().committed_height;
    let ok = wait_until(60, || async {
        let mut all = true;
        for i in 0..4 {
            all &= status(&c, cl.addr(i))
                .await
                .is_some_and(|s| s.committed_height >= h + 5);
        }
        all
    })
    .await;
    assert!(ok, "commits did not continue after the heal");
    for i in 0..4 {
        let a = cl.addr(i);
        eprintln!(
            "node {i}: refused {} connections, closed {} idle strangers",
            metric(&c, a, "bftnode_net_connections_refused_total").await,
            metric(&c, a, "bftnode_net_strangers_closed_idle_total").await
        );
    }
    for (net, _) in &crowd {
        net.shutdown();
    }
    cl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_section_of_config_toml_reaches_the_network() {
    let _serial = SERIAL.lock().await;
    // `[network] max_strangers = 0` in a validator's config.toml: a stranger is refused.
    let dir = tempfile::tempdir().unwrap();
    let homes = testnet(dir.path(), 1);
    let path = homes[0].join(node::config::CONFIG_FILE);
    let mut cfg = node::config::NodeConfig::load(&homes[0]).unwrap();
    cfg.network.max_strangers = 0;
    std::fs::write(&path, cfg.to_toml().unwrap()).unwrap();
    let node = node::spawn(&homes[0], fast()).await.unwrap();
    let (peers, _, _) = network_view(&homes[0]);
    let port = free_udp_ports(1)[0];
    let (stranger, _rx) = raw_swarm(
        rand::random(),
        format!("127.0.0.1:{port}").parse().unwrap(),
        peers,
        |_| {},
    )
    .await;
    let c = client();
    let a = node.rpc_addr();
    let refused = wait_until(30, || async {
        metric(&c, a, "bftnode_net_connections_refused_total").await >= 1.0
    })
    .await;
    assert!(refused, "a stranger got in although max_strangers = 0");
    stranger.shutdown();
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_of_a_validator_key_is_noticed_and_suspended() {
    let _serial = SERIAL.lock().await;
    // Issue 9 §3: the classic failover mistake. A second process is started with validator
    // 3's key (another p2p address, an empty database) while the original runs. The honest
    // nodes notice the key connecting from two addresses; whichever instance sees a certificate
    // with its signature for a view it never signed in suspends its signatures (PROTOCOL.md
    // §4.9); the chain stays live and the honest chains agree.
    let cl = Cluster::start(4).await;
    let c = client();
    let all = [0usize, 1, 2, 3];
    wait_all_at(&c, &cl, &all, 5, 60).await;
    let mut loaded = node::config::load_home(&cl.homes[3], &fast()).unwrap();
    let twin_dir = tempfile::tempdir().unwrap();
    let port = free_udp_ports(1)[0];
    loaded.config.p2p_listen = format!("127.0.0.1:{port}").parse().unwrap();
    loaded.db_path = twin_dir.path().join("db");
    let twin = node::spawn_loaded(loaded).await.unwrap();
    let t = twin.rpc_addr();

    let honest = [0usize, 1, 2];
    let seen = wait_until(60, || async {
        let mut n = 0.0;
        for &i in &honest {
            n += metric(&c, cl.addr(i), "bftnode_net_duplicate_key_suspected_total").await;
        }
        n >= 1.0
    })
    .await;
    assert!(
        seen,
        "no honest node noticed one key connecting from two addresses"
    );
    // The operator sees it: `/validators` counts it and `/faults` lists the key as suspected.
    let twin_index = cl.vindex[3];
    let shown = wait_until(30, || async {
        for &i in &honest {
            let vs: Option<Vec<node::rpc_types::ValidatorResponse>> =
                get_json(&c, cl.addr(i), "/validators").await;
            let f: Option<node::rpc_types::FaultsResponse> =
                get_json(&c, cl.addr(i), "/faults").await;
            let counted = vs.is_some_and(|vs| {
                vs.iter()
                    .any(|v| v.index == twin_index && v.duplicate_key_suspected >= 1)
            });
            let listed = f.is_some_and(|f| {
                f.suspected
                    .iter()
                    .any(|e| e.index == twin_index && e.reason.contains("second address"))
            });
            if counted && listed {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        shown,
        "no honest node shows the duplicate key in /validators and /faults"
    );
    let suspended = wait_until(60, || async {
        metric(&c, t, "bftnode_own_signatures_elsewhere_total").await
            + metric(&c, cl.addr(3), "bftnode_own_signatures_elsewhere_total").await
            >= 1.0
    })
    .await;
    let twin_seen = metric(&c, t, "bftnode_own_signatures_elsewhere_total").await;
    let orig_seen = metric(&c, cl.addr(3), "bftnode_own_signatures_elsewhere_total").await;
    eprintln!(
        "own signatures seen elsewhere: twin {twin_seen}, original {orig_seen}; twin signed {} \
         votes, {} timeouts",
        metric(&c, t, "bftnode_votes_total").await,
        metric(&c, t, "bftnode_timeouts_total").await
    );
    assert!(
        suspended,
        "neither instance noticed its key signing elsewhere"
    );

    let h = max_height(&c, &cl, &honest).await;
    wait_all_at(&c, &cl, &honest, h + 5, 60).await;
    twin.stop().await.unwrap();
    let min = {
        let mut m = u64::MAX;
        for &i in &honest {
            m = m.min(height(&c, cl.addr(i)).await);
        }
        m
    };
    assert_chains_match(&c, &cl, &honest, min).await;
    for &i in &honest {
        let vs: Vec<node::rpc_types::ValidatorResponse> =
            get_json(&c, cl.addr(i), "/validators").await.unwrap();
        for v in vs.iter().filter(|v| v.index != cl.vindex[3]) {
            assert_eq!(
                v.evidence, 0,
                "node {i} accuses honest validator {}",
                v.index
            );
        }
    }
    cl.shutdown().await;
}
