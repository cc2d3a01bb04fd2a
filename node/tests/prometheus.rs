//! Issue 11 item 4: monitoring with real tools. A real Prometheus server (Debian's
//! `prometheus`, installed by `.ci/deps.sh`) runs the scrape configuration we ship
//! (`deploy/prometheus.yml`, its targets pointed at four in-process validators), every target
//! is up, and every query of the Grafana dashboard we ship
//! (`deploy/grafana/bftnode-dashboard.json`) returns at least one series.

mod common;

use common::cluster::*;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `deploy/prometheus.yml` with its targets replaced by `targets` and a 1 s scrape interval.
fn scrape_config(targets: &[String]) -> String {
    let shipped = repo_file("deploy/prometheus.yml");
    let mut out = String::new();
    let mut replaced = false;
    for line in shipped.lines() {
        if line.trim_start().starts_with("- 127.0.0.1:") {
            if !replaced {
                let indent = &line[..line.len() - line.trim_start().len()];
                for t in targets {
                    out.push_str(&format!("{indent}- {t}\n"));
                }
                replaced = true;
            }
            continue;
        }
        out.push_str(&line.replace("scrape_interval: 5s", "scrape_interval: 1s"));
        out.push('\n');
    }
    assert!(replaced, "no target lines in deploy/prometheus.yml");
    out
}

/// Every `expr` of the dashboard's panels.
fn dashboard_queries() -> Vec<String> {
    let d: Value = serde_json::from_str(&repo_file("deploy/grafana/bftnode-dashboard.json"))
        .expect("the dashboard is JSON");
    d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("expr").to_string())
        .collect()
}

async fn api(c: &reqwest::Client, base: &str, path: &str, query: &[(&str, &str)]) -> Option<Value> {
    let mut u = reqwest::Url::parse(&format!("{base}{path}")).ok()?;
    for (k, v) in query {
        u.query_pairs_mut().append_pair(k, v);
    }
    c.get(u).send().await.ok()?.json().await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prometheus_scrapes_and_every_dashboard_query_has_series() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: no prometheus binary (.ci/deps.sh installs Debian's `prometheus`)");
        return;
    }
    let cl = Cluster::start(4).await;
    let c = reqwest::Client::new();
    wait_all_at(&c, &cl, &[0, 1, 2, 3], 2, 60).await;
    let targets: Vec<String> = (0..4).map(|i| cl.addr(i).to_string()).collect();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(&cfg, scrape_config(&targets)).unwrap();
    if let Ok(o) = Command::new("promtool")
        .args(["check", "config"])
        .arg(&cfg)
        .output()
    {
        assert!(
            o.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _server = Server(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    // Transactions, so that the latency histograms have observations.
    for i in 0..4 {
        submit_batch(&c, cl.addr(i), &format!("p{i}-"), 20).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = api(&c, &base, "/api/v1/targets", &[]).await.map_or(0, |v| {
            v["data"]["activeTargets"]
                .as_array()
                .map_or(0, |a| a.iter().filter(|t| t["health"] == "up").count())
        });
        if up == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "targets up: {up}; log: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A few scrapes, so that rates over a range have two samples or more.
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{queries:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missing: Vec<String> = queries.clone();
    while !missing.is_empty() {
        let mut still = Vec::new();
        for q in &missing {
            let v = api(&c, &base, "/api/v1/query", &[("query", q)]).await;
            let ok = v.as_ref().is_some_and(|v| v["status"] == "success");
            let n = v
                .as_ref()
                .and_then(|v| v["data"]["result"].as_array().map(Vec::len))
                .unwrap_or(0);
            assert!(ok || v.is_none(), "query {q}: {v:?}");
            if n == 0 {
                still.push(q.clone());
            }
        }
        missing = still;
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "queries without series: {missing:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    cl.shutdown().await;
}
