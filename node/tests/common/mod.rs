//! Helpers shared by the in-process node tests.
#![allow(dead_code)]

pub mod cluster;

use node::ConfigOverrides;
use node::rpc_types::*;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Ports the OS says are free right now (UDP), distinct.
pub fn free_udp_ports(n: usize) -> Vec<u16> {
    let socks: Vec<UdpSocket> = (0..n)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

/// `n` homes with free loopback QUIC ports.
pub fn testnet(dir: &Path, n: usize) -> Vec<PathBuf> {
    let ports = free_udp_ports(n);
    node::config::generate_testnet_with(dir, n, "it-chain", |i| Some((ports[i], 0))).unwrap()
}

/// Fast timings, RPC on an ephemeral port.
pub fn fast() -> ConfigOverrides {
    if std::env::var("NODE_TEST_LOG").is_ok() {
        node::init_logging(node::config::LogFormat::Text, "info");
    }
    ConfigOverrides {
        rpc_listen: Some("127.0.0.1:0".parse().unwrap()),
        delta_ms: Some(20),
        timeout_base_ms: Some(400),
        timeout_max_ms: Some(2_000),
        resend_ms: Some(200),
        ..Default::default()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// `GET path` on the node's RPC, decoded as JSON; `None` on any error.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    c: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
) -> Option<T> {
    c.get(url(addr, path)).send().await.ok()?.json().await.ok()
}

/// The node's `/metrics` text (Prometheus exposition format); empty if unreachable.
pub async fn metrics_text(c: &reqwest::Client, addr: SocketAddr) -> String {
    match c.get(url(addr, "/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The value of `series` (a name, or a name with labels such as
/// `bftnode_submitted_txs_total{outcome="ok"}`) in a `/metrics` text; 0 if absent.
pub fn sample(text: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

pub async fn status(c: &reqwest::Client, addr: SocketAddr) -> Option<StatusResponse> {
    get_json(c, addr, "/status").await
}

pub async fn block(c: &reqwest::Client, addr: SocketAddr, h: u64) -> Option<BlockResponse> {
    let r = c
        .get(url(addr, &format!("/blocks/{h}")))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

pub async fn kv(c: &reqwest::Client, addr: SocketAddr, key: &str) -> Option<KvResponse> {
    c.get(url(addr, &format!("/kv/{key}")))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// `POST /txs` with `n` puts `{prefix}{i} = v{i}`.
pub async fn submit_batch(
    c: &reqwest::Client,
    addr: SocketAddr,
    prefix: &str,
    n: usize,
) -> BatchResponse {
    try_submit_values(c, addr, prefix, n, |i| format!("v{i}"))
        .await
        .unwrap_or_else(|e| panic!("POST /txs to {addr}: {e}"))
}

/// `POST /txs` with `n` puts `{prefix}{i} = value(i)`, or the HTTP error.
pub async fn try_submit_values(
    c: &reqwest::Client,
    addr: SocketAddr,
    prefix: &str,
    n: usize,
    value: impl Fn(usize) -> String,
) -> reqwest::Result<BatchResponse> {
    let txs: Vec<TxRequest> = (0..n)
        .map(|i| TxRequest::Put {
            key: format!("{prefix}{i}"),
            value: value(i),
            nonce: i as u64,
            expires_at: None,
        })
        .collect();
    c.post(url(addr, "/txs"))
        .json(&BatchRequest { txs })
        .send()
        .await?
        .json()
        .await
}

/// Poll `f` every 100 ms until it returns true or `secs` elapse.
pub async fn wait_until<F, Fut>(secs: u64, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
