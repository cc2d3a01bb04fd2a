//! `bftnode-adversary`: a real bftnode validator (QUIC, RocksDB, RPC, exactly as
//! `bftnode start --home DIR`) whose consensus traffic is rewritten by one of the simulator's
//! Byzantine behaviours (`testnet::adversary`). For local testnets and drills only; the
//! production `bftnode` binary has no such code path.
//!
//! ```text
//! bftnode-adversary --home DIR --mode MODE [--seed N] [--late-margin-ms MS] [--targets I,J]
//!                   [--release-ms MS] [--flood-per-burst N] [--flood-period-ms MS]
//!                   [--gossip-txs N] [--gossip-period-ms MS]
//!                   [--log-format text|json] [--log-level FILTER] [--rpc-listen ADDR] [--p2p-listen ADDR]
//! bftnode-adversary --list-modes
//! ```

use clap::{Parser, ValueEnum};
use consensus::PrivateKey;
use node::config::{self, LogFormat};
use node::{ConfigOverrides, Interceptor};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use testnet::adversary::{Adversary, MODES, Mode, Params};

/// A bftnode validator that misbehaves on purpose (local testnets and drills only).
#[derive(Debug, Parser)]
#[command(name = "bftnode-adversary", version)]
struct Args {
    /// Home directory (created by `bftnode init` or `bftnode testnet`).
    #[arg(long, required_unless_present = "list_modes")]
    home: Option<PathBuf>,
    /// The behaviour (see --list-modes).
    #[arg(long, required_unless_present = "list_modes")]
    mode: Option<String>,
    /// Print the mode names and exit.
    #[arg(long)]
    list_modes: bool,
    /// Seed of the behaviour's ChaCha8 RNG (default: derived from the validator index).
    #[arg(long)]
    seed: Option<u64>,
    /// late-leader: release the proposal this many ms before the view timeout τ_base
    /// (default τ_base / 5).
    #[arg(long)]
    late_margin_ms: Option<u64>,
    /// selective-sender: validators that receive its proposals and votes (default: the next
    /// index); lock-hider: the first is the victim (default: the next index).
    #[arg(long, value_delimiter = ',')]
    targets: Vec<u16>,
    /// lock-hider: delay before the hidden vote reaches the victim (ms; default 3/5 τ_base).
    #[arg(long)]
    release_ms: Option<u64>,
    /// flood: signed far-future messages per burst.
    #[arg(long, default_value_t = 4)]
    flood_per_burst: usize,
    /// flood: ms between bursts.
    #[arg(long, default_value_t = 200)]
    flood_period_ms: u64,
    /// gossip-flood: junk transactions per gossip message.
    #[arg(long, default_value_t = 512)]
    gossip_txs: usize,
    /// gossip-flood: ms between gossip messages.
    #[arg(long, default_value_t = 50)]
    gossip_period_ms: u64,
    /// Log format (overrides config.toml).
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Log filter in RUST_LOG syntax (overrides config.toml).
    #[arg(long)]
    log_level: Option<String>,
    /// RPC listen address (overrides config.toml).
    #[arg(long)]
    rpc_listen: Option<SocketAddr>,
    /// QUIC (UDP) listen address (overrides config.toml).
    #[arg(long)]
    p2p_listen: Option<SocketAddr>,
}

/// `--log-format` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list_modes {
        for m in MODES {
            println!("{m}");
        }
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let (Some(home), Some(mode)) = (args.home, args.mode) else {
        return Err("--home and --mode are required".into());
    };
    let overrides = ConfigOverrides {
        p2p_listen: args.p2p_listen,
        rpc_listen: args.rpc_listen,
        log_format: args.log_format.map(|f| match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }),
        log_level: args.log_level,
        ..ConfigOverrides::default()
    };
    let loaded = config::load_home(&home, &overrides).map_err(|e| format!("{e:#}"))?;
    let mut params = Params::new(loaded.config.consensus.timeout_base_ms);
    if let Some(m) = args.late_margin_ms {
        params.late_margin_ms = m;
    }
    params.targets = args.targets;
    params.release_ms = args.release_ms;
    params.flood.per_burst = args.flood_per_burst;
    params.flood.period_ms = args.flood_period_ms.max(1);
    params.gossip.txs = args.gossip_txs;
    params.gossip.period_ms = args.gossip_period_ms.max(1);
    let me = loaded.index;
    let parsed = Mode::parse(&mode, me, &loaded.validators, &params).map_err(|e| e.to_string())?;
    let seed = args.seed.unwrap_or_else(|| Adversary::default_seed(me));
    let key = PrivateKey::from_seed(loaded.key.seed());
    let adversary = Adversary::new(parsed, &params, key, loaded.validators.clone(), me, seed);
    eprintln!(
        "bftnode-adversary: validator {} runs mode {mode} ({parsed:?}), seed {seed}",
        me.0
    );
    let interceptor: Box<dyn Interceptor> = Box::new(adversary);
    node::run_loaded_with(loaded, Some(interceptor))
        .await
        .map_err(|e| format!("{e:#}"))
}
