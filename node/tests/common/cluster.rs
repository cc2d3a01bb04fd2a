//! A cluster of in-process validators over real QUIC on 127.0.0.1 with real RocksDB in
//! tempdirs, and raw network services that impersonate one of them with its own key.

use super::*;
use network::{NetworkConfig, NetworkHandle, ValidatorPeer};
use node::NodeHandle;
use node::rpc_types::PeerResponse;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Nodes are numbered by home (0..n); validator indices follow public-key order and differ.
pub struct Cluster {
    _dir: tempfile::TempDir,
    pub homes: Vec<PathBuf>,
    pub nodes: Vec<Option<NodeHandle>>,
    /// Validator index of each home.
    pub vindex: Vec<u16>,
}

impl Cluster {
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, None).await
    }

    /// Like [`Cluster::start`], with the chain-wide fault parameters `params` in every home's
    /// genesis (`None`: the defaults).
    pub async fn start_with(n: usize, params: Option<node::config::ChainFaultParams>) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let homes = testnet(dir.path(), n);
        if let Some(p) = params {
            for h in &homes {
                let path = h.join(node::config::GENESIS_FILE);
                let mut g = node::Genesis::load(&path).unwrap();
                g.fault = p.clone();
                g.save(&path).unwrap();
            }
        }
        let mut nodes = Vec::new();
        let mut vindex = Vec::new();
        for h in &homes {
            let n = node::spawn(h, fast()).await.unwrap();
            vindex.push(n.index());
            nodes.push(Some(n));
        }
        Cluster {
            _dir: dir,
            homes,
            nodes,
            vindex,
        }
    }

    /// The home (node number) of validator `index`.
    pub fn home_of(&self, index: u16) -> usize {
        self.vindex.iter().position(|&v| v == index).unwrap()
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].as_ref().expect("node is running").rpc_addr()
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    pub async fn stop(&mut self, i: usize) {
        let n = self.nodes[i].take().expect("node is running");
        n.stop().await.unwrap();
    }

    /// Restart node `i` from its home, retrying while its UDP port is still bound
    /// ([`PORT_RELEASE_WAIT`]).
    pub async fn restart(&mut self, i: usize) {
        self.restart_with(i, |_| {}).await;
    }

    /// Restart node `i` keeping only `retain` heights of block bodies (`[storage]
    /// retain_heights`, set on the loaded config: below the operator minimum, which only the
    /// config file check enforces).
    pub async fn restart_pruning(&mut self, i: usize, retain: u64) {
        self.restart_with(i, |loaded| loaded.config.storage.retain_heights = retain)
            .await;
    }

    /// [`Cluster::restart`] with `tweak` applied to the loaded home before each try.
    async fn restart_with(&mut self, i: usize, tweak: impl Fn(&mut node::config::Loaded)) {
        let what = format!("node {i}");
        let n = until_bound(&what, || {
            let mut loaded = node::config::load_home(&self.homes[i], &fast()).unwrap();
            tweak(&mut loaded);
            node::spawn_loaded(loaded)
        })
        .await;
        self.nodes[i] = Some(n);
    }

    pub async fn shutdown(self) {
        for n in self.nodes.into_iter().flatten() {
            n.stop().await.unwrap();
        }
    }
}

pub async fn height(c: &reqwest::Client, addr: SocketAddr) -> u64 {
    status(c, addr).await.map_or(0, |s| s.committed_height)
}

/// Highest committed height among `idx`.
pub async fn max_height(c: &reqwest::Client, cl: &Cluster, idx: &[usize]) -> u64 {
    let mut m = 0;
    for &i in idx {
        m = m.max(height(c, cl.addr(i)).await);
    }
    m
}

/// Wait until every node in `idx` committed at least `target`.
pub async fn wait_all_at(c: &reqwest::Client, cl: &Cluster, idx: &[usize], target: u64, secs: u64) {
    for &i in idx {
        let a = cl.addr(i);
        let ok = wait_until(secs, || async { height(c, a).await >= target }).await;
        let h = height(c, a).await;
        assert!(ok, "node {i} stuck at height {h}, wanted {target}");
    }
}

/// A sample of the node's `/metrics` (0 if absent or unreachable).
pub async fn metric(c: &reqwest::Client, addr: SocketAddr, name: &str) -> f64 {
    sample(&metrics_text(c, addr).await, name)
}

pub async fn peer_entry(c: &reqwest::Client, addr: SocketAddr, index: u16) -> Option<PeerResponse> {
    let peers: Vec<PeerResponse> = get_json(c, addr, "/peers").await?;
    peers.into_iter().find(|p| p.index == index)
}

/// Genesis validators as the network layer wants them, plus the validator's secret seed and
/// p2p address, read from its home.
pub fn network_view(home: &Path) -> (Vec<ValidatorPeer>, [u8; 32], SocketAddr) {
    let loaded = node::config::load_home(home, &fast()).unwrap();
    let peers = loaded.peers.clone();
    (peers, loaded.key.seed(), loaded.config.p2p_listen)
}

/// Start a raw network service with `seed` on `listen` (the default config, adjusted by
/// `configure`) on the current tokio runtime, retrying while the port of a just-stopped
/// validator is still bound ([`PORT_RELEASE_WAIT`]).
pub async fn raw_swarm(
    seed: [u8; 32],
    listen: SocketAddr,
    peers: Vec<ValidatorPeer>,
    configure: impl Fn(&mut NetworkConfig),
) -> (NetworkHandle, network::EventReceiver) {
    until_bound(&format!("a raw swarm on {listen}"), || {
        let mut cfg = NetworkConfig::new(seed, listen, peers.clone());
        configure(&mut cfg);
        network::start(cfg)
    })
    .await
}

/// How long the UDP port of a validator stopped in this process may stay bound. `stop` returns
/// once the node's tasks and database are gone, but quinn keeps the socket until the last of
/// the endpoint's connections has drained, three probe timeouts after it closed (RFC 9000
/// §10.2): about 3 s for a handshake still at quinn's initial 333 ms RTT estimate (strangers
/// redialling), longer when a starved machine measured RTTs of seconds. A process exiting
/// releases it at once; only in-process restarts wait.
pub const PORT_RELEASE_WAIT: Duration = Duration::from_secs(60);

/// Calls `start` every 250 ms until it succeeds or [`PORT_RELEASE_WAIT`] has passed (then
/// panics with `what` and the last error).
pub async fn until_bound<T, E: std::fmt::Debug, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut start: impl FnMut() -> F,
) -> T {
    let deadline = std::time::Instant::now() + PORT_RELEASE_WAIT;
    loop {
        match start().await {
            Ok(x) => return x,
            Err(e) if std::time::Instant::now() >= deadline => {
                panic!("{what} did not start within {PORT_RELEASE_WAIT:?}: {e:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Wait until the raw swarm is connected to every validator in `to`.
pub async fn wait_connected(net: &NetworkHandle, to: &[u16], secs: u64) -> bool {
    wait_until(secs, || async {
        let peers = net.peers().await;
        to.iter()
            .all(|i| peers.iter().any(|p| p.index == *i && p.connected))
    })
    .await
}

/// Committed chains of `idx` agree block by block on heights `0..=up_to`.
pub async fn assert_chains_match(c: &reqwest::Client, cl: &Cluster, idx: &[usize], up_to: u64) {
    for h in 0..=up_to {
        let reference = block(c, cl.addr(idx[0]), h)
            .await
            .unwrap_or_else(|| panic!("node {} lacks height {h}", idx[0]));
        for &i in &idx[1..] {
            let b = block(c, cl.addr(i), h)
                .await
                .unwrap_or_else(|| panic!("node {i} lacks height {h}"));
            assert_eq!(b.id, reference.id, "node {i} differs at height {h}");
            assert_eq!(b.tx_hashes, reference.tx_hashes, "txs differ at {h}");
        }
    }
}
