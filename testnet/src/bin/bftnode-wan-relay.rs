//! `bftnode-wan-relay`: the user-space WAN between validators in separate network namespaces
//! (module `testnet::wan`). `testnet/netns.sh` runs it in the switch namespace.
//!
//! ```text
//! bftnode-wan-relay --node PUBLIC=REAL [--node PUBLIC=REAL …] [--delay-ms D] [--jitter-ms J]
//!                   [--loss P] [--seed S]
//! ```
//!
//! Runs until SIGTERM or SIGINT, printing its counters every 10 s and at exit on stderr.

use clap::Parser;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use testnet::wan::{self, RelayNode, RelayStats, WanConditions};

#[derive(Debug, Parser)]
#[command(
    name = "bftnode-wan-relay",
    about = "UDP relay adding delay, jitter and loss"
)]
struct Args {
    /// One validator: the address the others dial (bound here) = its QUIC listener.
    #[arg(long = "node", value_parser = parse_node, required = true)]
    nodes: Vec<RelayNode>,
    /// One-way delay, ms.
    #[arg(long, default_value_t = 0.0)]
    delay_ms: f64,
    /// Uniform jitter around the delay, ± ms.
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Loss probability per datagram, 0..1 (e.g. 0.01 for 1 %).
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Seed of the loss and jitter draws.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_node(s: &str) -> Result<RelayNode, String> {
    let (public, real) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected PUBLIC=REAL (two IP:port)"))?;
    let addr = |a: &str| {
        a.parse::<SocketAddr>()
            .map_err(|e| format!("{a:?} is not IP:port: {e}"))
    };
    Ok(RelayNode {
        public: addr(public)?,
        real: addr(real)?,
    })
}

fn ms(v: f64, what: &str) -> Result<Duration, String> {
    if v.is_finite() && (0.0..=60_000.0).contains(&v) {
        Ok(Duration::from_secs_f64(v / 1000.0))
    } else {
        Err(format!("--{what} must be between 0 and 60000 ms"))
    }
}

fn report(s: &RelayStats) {
    eprintln!(
        "wan-relay: forwarded {} dropped: loss {} unknown-source {} queue {}",
        s.forwarded.load(Ordering::Relaxed),
        s.dropped_loss.load(Ordering::Relaxed),
        s.dropped_unknown.load(Ordering::Relaxed),
        s.dropped_queue.load(Ordering::Relaxed),
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let cond = match (
        ms(args.delay_ms, "delay-ms"),
        ms(args.jitter_ms, "jitter-ms"),
    ) {
        (Ok(delay), Ok(jitter)) => WanConditions {
            delay,
            jitter,
            loss: args.loss,
        },
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let stats = Arc::new(RelayStats::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let relay = tokio::spawn(wan::run(
        args.nodes.clone(),
        cond,
        args.seed,
        stats.clone(),
        stop_rx,
    ));
    eprintln!(
        "wan-relay: {} nodes, delay {:?} ± {:?}, loss {}",
        args.nodes.len(),
        cond.delay,
        cond.jitter,
        cond.loss
    );
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot watch SIGTERM: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    let mut relay = relay;
    let result = loop {
        tokio::select! {
            r = &mut relay => break r,
            _ = term.recv() => { let _ = stop_tx.send(true); break relay.await; }
            _ = tokio::signal::ctrl_c() => { let _ = stop_tx.send(true); break relay.await; }
            _ = tick.tick() => report(&stats),
        }
    };
    report(&stats);
    match result {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: relay task failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
