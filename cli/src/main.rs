//! `bftnode`: run a HotStuff-2 validator and talk to one.
//!
//! Lifecycle commands work on a home directory: `init` (one validator's key and config),
//! `genesis build` and `config set-peers` (the key ceremony), `testnet` (N local homes sharing
//! a genesis), `start`, `keys show`. Query commands talk HTTP to a node's RPC
//! (`--rpc URL`, or `BFTNODE_RPC`): `status`, `block`, `tx …`, `validators`, `peers`,
//! `evidence [list]`, `evidence show ID`, `faults`, `health`, `why-stalled`, `penalties`, and the load
//! generator `load`. Queries print aligned tables, or the node's JSON with `--output json`.
//! `evidence verify FILE --genesis PATH` checks a proof offline, with no node.
//!
//! Exit codes: 0 success; 1 an RPC or IO failure (node unreachable, timeout, bad file);
//! 2 bad arguments; 3 the node answered with an error (including `health` of an unhealthy node);
//! 4 `evidence verify`: the proof does not verify.
//! Every error is one line on stderr, `error: …`.

mod client;
mod evidence;
mod lifecycle;
mod load;
mod output;
mod query;

/// The process allocator: jemalloc instead of the C library's `malloc`.
///
/// A validator allocates and frees a buffer per frame, per decoded transaction and per storage
/// op, from several threads at once. Under 40,000 offered tx/s on the 4-validator testnet,
/// glibc's `malloc`, `free` and their chunk coalescing took 13 % of a node's CPU samples; with
/// jemalloc the allocator takes 5.5 % (perf, issue 10 note). jemalloc is what TiKV and Aptos
/// validators run with. RocksDB's C++ allocates from the same jemalloc (the `rocksdb` crate's
/// `jemalloc` feature makes it the process's `malloc`): with the C library's, RocksDB's share of
/// a node's memory grew steadily beyond its bounded memtables and block cache in a 10-minute soak
/// at 10,000 tx/s (fragmented arenas that were never returned), and with jemalloc it did not
/// (issue 10 note).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use client::{Client, NodeAnswered};
use node::{
    config::{ConfigOverrides, LogFormat},
    rpc_types::{MAX_BATCH_TXS, TxRequest},
};
use output::Format;
use reqwest::Url;
use std::{io::Write as _, net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

/// Default RPC endpoint: node0 of `bftnode testnet` / `testnet/up.sh`.
const DEFAULT_RPC: &str = "http://127.0.0.1:26700";
/// Default chain id of `init` and `testnet`.
const DEFAULT_CHAIN_ID: &str = "bftnode-local";

/// Exit code of an RPC or IO failure.
const EXIT_FAILURE: u8 = 1;
/// Exit code when the node answered with an error.
const EXIT_NODE_ERROR: u8 = 3;
/// Exit code of `evidence verify` when the proof does not verify.
const EXIT_INVALID_PROOF: u8 = 4;

#[derive(Debug, Parser)]
#[command(name = "bftnode", version = node::build_info::LONG_VERSION, about = "HotStuff-2 BFT validator node", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a validator's home on this host: a fresh key (mode 0600, never printed),
    /// config.toml and the public validator.json for the genesis ceremony.
    Init(InitArgs),
    /// The key ceremony's second step: build the chain's genesis.json from the validators'
    /// validator.json files.
    #[command(subcommand)]
    Genesis(GenesisCommand),
    /// Edit a home's config.toml.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Create the homes of an N-validator local network sharing one genesis.
    Testnet {
        /// Number of validators.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        validators: u16,
        /// Directory to create node0 … node{N-1} in.
        #[arg(long)]
        out: PathBuf,
        /// UDP port of node0; node i uses base + i.
        #[arg(long, default_value_t = 26600)]
        base_p2p_port: u16,
        /// RPC port of node0; node i uses base + i.
        #[arg(long, default_value_t = 26700)]
        base_rpc_port: u16,
        /// Chain id.
        #[arg(long, default_value = DEFAULT_CHAIN_ID)]
        chain_id: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Run a validator until interrupted (SIGINT/SIGTERM).
    Start(StartArgs),
    /// Wipe a stopped validator's database (blocks, state, index, evidence), keeping its key
    /// and, unless told why not, its safety record; the node then catches up from genesis.
    Reset {
        /// Home directory of the stopped validator.
        #[arg(long)]
        home: PathBuf,
        /// Drop the safety record too (it stops a restarted validator from signing twice):
        /// only for a chain restarted from genesis. Needs --reason.
        #[arg(long, requires = "reason")]
        drop_safety_record: bool,
        /// Why the safety record is dropped; written to <home>/reset.log.
        #[arg(long, requires = "drop_safety_record")]
        reason: Option<String>,
    },
    /// The node's consensus and sync status.
    Status(RpcOpts),
    /// A committed block: the latest, or the one at HEIGHT.
    Block {
        /// Height of the block; the latest committed block if omitted.
        height: Option<u64>,
        #[command(flatten)]
        rpc: RpcOpts,
    },
    /// Submit transactions and read the key-value store.
    #[command(subcommand)]
    Tx(TxCommand),
    /// The validator set with each validator's state and reputation.
    Validators(RpcOpts),
    /// The node's validator peers and their connections.
    Peers(RpcOpts),
    /// Evidence of misbehaviour: list what the node holds (the default), show one proof,
    /// verify a proof offline.
    Evidence(EvidenceArgs),
    /// Fault tolerance at a glance: n, f, quorum, the tolerance margin, who is convicted,
    /// isolated, suspected or down and why, and health with its reason.
    Faults(RpcOpts),
    /// The node's health; exits 3 if the node reports itself unhealthy.
    Health(RpcOpts),
    /// Why the chain is not committing, in plain words: quorum connectivity, who is missing
    /// from the latest QC and the current view's timeouts, who is silent or in older views,
    /// the leader, timeout and backoff, a block fetch in flight.
    WhyStalled(RpcOpts),
    /// Committed accountability: each validator's standing (good, quarantined, isolated,
    /// rehabilitated) and the penalty entries the application recorded; one validator's
    /// entries with VALIDATOR.
    Penalties {
        /// Validator index; every validator's summary if omitted.
        validator: Option<u16>,
        #[command(flatten)]
        rpc: RpcOpts,
    },
    /// Validator keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Generate transaction load and report committed throughput and latency.
    Load(LoadArgs),
    /// Print a shell completion script, e.g. `bftnode completions bash >
    /// /etc/bash_completion.d/bftnode`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Options of `init`.
#[derive(Debug, Args)]
struct InitArgs {
    /// Home directory to create.
    #[arg(long)]
    home: PathBuf,
    /// Chain id the validator means to join.
    #[arg(long, default_value = DEFAULT_CHAIN_ID)]
    chain_id: String,
    /// UDP address of the QUIC listener, e.g. 0.0.0.0:26600 to listen on every interface.
    #[arg(long, default_value = "127.0.0.1:26600")]
    p2p_listen: SocketAddr,
    /// IP:port at which the other validators reach the QUIC listener (required when
    /// --p2p-listen is 0.0.0.0 or [::]).
    #[arg(long)]
    p2p_external: Option<SocketAddr>,
    /// TCP address of the RPC server.
    #[arg(long, default_value = "127.0.0.1:26700")]
    rpc_listen: SocketAddr,
    /// Voting power asked for in the genesis.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    power: u64,
    /// A name for humans, recorded in validator.json and the genesis.
    #[arg(long)]
    name: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    output: Format,
}

#[derive(Debug, Subcommand)]
enum GenesisCommand {
    /// Join validator.json files into a genesis.json, and print the persistent_peers list
    /// every validator's config needs.
    Build {
        /// The validators' validator.json files.
        #[arg(required = true)]
        validators: Vec<PathBuf>,
        /// Chain id (default: the one the files name, which must agree).
        #[arg(long)]
        chain_id: Option<String>,
        /// Where to write the genesis.
        #[arg(long, default_value = "genesis.json")]
        out: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Set persistent_peers in HOME's config.toml from the validators' validator.json files
    /// (its own is left out).
    SetPeers {
        /// Home directory.
        #[arg(long)]
        home: PathBuf,
        /// The validators' validator.json files.
        #[arg(required = true)]
        validators: Vec<PathBuf>,
    },
}

/// Options of `start`.
#[derive(Debug, Args)]
struct StartArgs {
    /// Home directory (created by `init` or `testnet`).
    #[arg(long)]
    home: PathBuf,
    /// Log format (overrides config.toml).
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Log filter in RUST_LOG syntax, e.g. `info` or `node=debug,info` (overrides config.toml).
    #[arg(long)]
    log_level: Option<String>,
    /// RPC listen address, e.g. 127.0.0.1:26700 (overrides config.toml).
    #[arg(long)]
    rpc_listen: Option<SocketAddr>,
    /// QUIC (UDP) listen address, e.g. 127.0.0.1:26600 (overrides config.toml).
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

/// How to reach a node and how to print its answer.
#[derive(Debug, Args)]
struct RpcOpts {
    /// RPC URL of the node.
    #[arg(long, env = "BFTNODE_RPC", default_value = DEFAULT_RPC, value_parser = parse_rpc_url)]
    rpc: Url,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    timeout: f64,
}

impl RpcOpts {
    fn client(&self) -> anyhow::Result<Client> {
        Client::new(self.rpc.clone(), Duration::from_secs_f64(self.timeout))
    }
}

#[derive(Debug, Subcommand)]
enum TxCommand {
    /// Submit a put of KEY = VALUE.
    Put {
        /// Key (UTF-8).
        key: String,
        /// Value (UTF-8).
        value: String,
        #[command(flatten)]
        submit: SubmitOpts,
    },
    /// Submit a delete of KEY.
    Delete {
        /// Key (UTF-8).
        key: String,
        #[command(flatten)]
        submit: SubmitOpts,
    },
    /// Read KEY's committed value.
    Get {
        /// Key (UTF-8).
        key: String,
        #[command(flatten)]
        rpc: RpcOpts,
    },
    /// Where a transaction is: pending, committed (at which height) or unknown.
    Status {
        /// Transaction hash (hex).
        hash: String,
        #[command(flatten)]
        rpc: RpcOpts,
    },
}

/// Options of a transaction submission.
#[derive(Debug, Args)]
struct SubmitOpts {
    /// Nonce; distinguishes otherwise identical transactions (default: the clock in ns).
    #[arg(long)]
    nonce: Option<u64>,
    /// The last height the transaction may commit at, at most 20,000 above the chain's
    /// (default: the node's committed height + 10,000).
    #[arg(long)]
    expires_at: Option<u64>,
    /// Wait until the transaction is committed and print its height.
    #[arg(long)]
    wait: bool,
    /// Seconds `--wait` waits before giving up.
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds, requires = "wait")]
    wait_timeout: f64,
    #[command(flatten)]
    rpc: RpcOpts,
}

/// `evidence`: a subcommand, or none for `list` (so `bftnode evidence --rpc URL` still lists).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct EvidenceArgs {
    #[command(subcommand)]
    command: Option<EvidenceCommand>,
    #[command(flatten)]
    rpc: RpcOpts,
}

#[derive(Debug, Subcommand)]
enum EvidenceCommand {
    /// Evidence of misbehaviour the node holds (the default).
    List(RpcOpts),
    /// The full proof of one evidence item as JSON: the signed messages, signatures, offender,
    /// kind and view (what `evidence verify` reads).
    Show {
        /// Evidence id (64 hex characters, from `evidence list`).
        id: String,
        #[command(flatten)]
        rpc: RpcOpts,
    },
    /// Verify a proof written by `evidence show` against a genesis, offline (no node needed).
    /// Exits 0 with the verdict, or 4 with the reason when it does not verify.
    Verify {
        /// The proof file (JSON, from `evidence show`); `-` reads standard input.
        file: PathBuf,
        /// The chain's genesis.json (validator keys, chain id, epoch, chain-wide parameters).
        #[arg(long)]
        genesis: PathBuf,
        /// Output format of the verdict.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// The validator's public key and index, read from its home directory.
    Show {
        /// Home directory.
        #[arg(long)]
        home: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
}

/// Options of `load`.
#[derive(Debug, Args)]
struct LoadArgs {
    /// RPC URLs of the nodes to submit to, comma-separated; the first is watched for commits.
    #[arg(long, env = "BFTNODE_RPC", default_value = DEFAULT_RPC, value_delimiter = ',',
          value_parser = parse_rpc_url)]
    rpc: Vec<Url>,
    /// Target submission rate, transactions per second.
    #[arg(long, value_parser = parse_rate)]
    rate: f64,
    /// Size of each transaction's value, bytes.
    #[arg(long)]
    size: usize,
    /// Write only this many distinct keys, round-robin (a workload of updates: the
    /// application's state stops growing); default: a new key per transaction.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    keys: Option<u64>,
    /// Seconds to submit for.
    #[arg(long, value_parser = parse_seconds)]
    duration: f64,
    /// Most transactions per POST /txs.
    #[arg(long, default_value_t = 500,
          value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH_TXS as i64))]
    batch: u32,
    /// Most submission requests in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,
    /// Seconds to wait for commits after submission ends.
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    drain: f64,
    /// Output format of the report.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    timeout: f64,
}

/// An RPC URL; `host:port` alone means `http://host:port`.
fn parse_rpc_url(s: &str) -> Result<Url, String> {
    let with_scheme = if s.contains("://") {
        s.to_string()
    } else {
        format!("http://{s}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| format!("not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err(format!(
            "scheme {:?} not supported: the RPC is plain HTTP",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".to_string());
    }
    Ok(url)
}

/// A non-negative, finite number of seconds.
fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1e7).contains(&v) => Ok(v),
        _ => Err("expected a number of seconds ≥ 0".to_string()),
    }
}

/// A positive, finite rate.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e7 => Ok(v),
        _ => Err("expected a positive number of transactions per second".to_string()),
    }
}

/// Write a command's output to stdout, control characters escaped ([`output::escape_lines`]:
/// a last guard, the renderers escape already). A closed pipe (`bftnode block | head -1`) is
/// not an error worth a panic, so write failures are ignored.
pub fn emit(text: &str) {
    let text = output::escape_lines(text);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init(a) => {
            let opts = node::config::InitOptions {
                chain_id: a.chain_id,
                p2p_listen: a.p2p_listen,
                p2p_external: a.p2p_external,
                rpc_listen: a.rpc_listen,
                power: a.power,
                name: a.name,
            };
            lifecycle::init(&a.home, &opts, a.output)
        }
        Command::Genesis(GenesisCommand::Build {
            validators,
            chain_id,
            out,
            output,
        }) => lifecycle::genesis_build(&validators, chain_id.as_deref(), &out, output),
        Command::Config(ConfigCommand::SetPeers { home, validators }) => {
            lifecycle::set_peers(&home, &validators)
        }
        Command::Testnet {
            validators,
            out,
            base_p2p_port,
            base_rpc_port,
            chain_id,
            output,
        } => lifecycle::testnet(
            &out,
            usize::from(validators),
            base_p2p_port,
            base_rpc_port,
            &chain_id,
            output,
        ),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "bftnode", &mut out);
            std::io::stdout()
                .write_all(&out)
                .map_err(|e| anyhow::anyhow!("writing the script: {e}"))
        }
        Command::Reset {
            home,
            drop_safety_record,
            reason,
        } => lifecycle::reset(&home, drop_safety_record, reason),
        Command::Start(args) => {
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
            lifecycle::start(&args.home, overrides).await
        }
        Command::Status(rpc) => query::status(&rpc.client()?, rpc.output).await,
        Command::Block { height, rpc } => query::block(&rpc.client()?, height, rpc.output).await,
        Command::Tx(tx) => run_tx(tx).await,
        Command::Validators(rpc) => {
            query::list(&rpc.client()?, query::Listing::Validators, rpc.output).await
        }
        Command::Peers(rpc) => query::list(&rpc.client()?, query::Listing::Peers, rpc.output).await,
        Command::Evidence(EvidenceArgs { command, rpc }) => match command {
            None => query::list(&rpc.client()?, query::Listing::Evidence, rpc.output).await,
            Some(EvidenceCommand::List(rpc)) => {
                query::list(&rpc.client()?, query::Listing::Evidence, rpc.output).await
            }
            Some(EvidenceCommand::Show { id, rpc }) => evidence::show(&rpc.client()?, &id).await,
            Some(EvidenceCommand::Verify {
                file,
                genesis,
                output,
            }) => evidence::verify(&file, &genesis, output),
        },
        Command::Faults(rpc) => evidence::faults(&rpc.client()?, rpc.output).await,
        Command::Health(rpc) => query::health(&rpc.client()?, rpc.output).await,
        Command::WhyStalled(rpc) => query::why_stalled(&rpc.client()?, rpc.output).await,
        Command::Penalties { validator, rpc } => {
            query::penalties(&rpc.client()?, validator, rpc.output).await
        }
        Command::Keys(KeysCommand::Show { home, output }) => lifecycle::keys_show(&home, output),
        Command::Load(args) => {
            let timeout = Duration::from_secs_f64(args.timeout);
            let nodes = args
                .rpc
                .into_iter()
                .map(|url| Client::new(url, timeout))
                .collect::<anyhow::Result<Vec<_>>>()?;
            load::run(load::LoadConfig {
                nodes,
                rate: args.rate,
                size: args.size,
                keys: args.keys,
                duration: Duration::from_secs_f64(args.duration),
                batch: args.batch as usize,
                concurrency: args.concurrency as usize,
                drain: Duration::from_secs_f64(args.drain),
                format: args.output,
            })
            .await
        }
    }
}

async fn run_tx(tx: TxCommand) -> anyhow::Result<()> {
    let (request, submit) = match tx {
        TxCommand::Get { key, rpc } => {
            return query::kv_get(&rpc.client()?, &key, rpc.output).await;
        }
        TxCommand::Status { hash, rpc } => {
            return query::tx_status(&rpc.client()?, &hash, rpc.output).await;
        }
        TxCommand::Put { key, value, submit } => {
            let nonce = submit.nonce.unwrap_or_else(query::fresh_nonce);
            let expires_at = submit.expires_at;
            let request = TxRequest::Put {
                key,
                value,
                nonce,
                expires_at,
            };
            (request, submit)
        }
        TxCommand::Delete { key, submit } => {
            let nonce = submit.nonce.unwrap_or_else(query::fresh_nonce);
            let expires_at = submit.expires_at;
            let request = TxRequest::Delete {
                key,
                nonce,
                expires_at,
            };
            (request, submit)
        }
    };
    let wait = submit
        .wait
        .then(|| Duration::from_secs_f64(submit.wait_timeout));
    let client = submit.rpc.client()?;
    query::submit(&client, &request, wait, submit.rpc.output).await
}

/// The exit code for a failed command.
fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<evidence::ProofRejected>()) {
        EXIT_INVALID_PROOF
    } else if e.chain().any(|c| c.is::<NodeAnswered>()) {
        EXIT_NODE_ERROR
    } else {
        EXIT_FAILURE
    }
}

fn main() -> ExitCode {
    // Exits with 2 (and usage on stderr) on bad arguments; 0 for --help/--version.
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = format!("{e:#}").replace(['\n', '\r'], " ");
            eprintln!("error: {}", output::escape(&message));
            ExitCode::from(exit_code(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rpc_urls() {
        assert_eq!(
            parse_rpc_url("127.0.0.1:26701").unwrap().as_str(),
            "http://127.0.0.1:26701/"
        );
        assert!(parse_rpc_url("https://x:1").is_err());
        assert!(parse_rpc_url("http://").is_err());
    }

    #[test]
    fn node_errors_exit_3() {
        let answered: anyhow::Error = NodeAnswered {
            url: "http://x/status".into(),
            status: reqwest::StatusCode::NOT_FOUND,
            message: "no".into(),
        }
        .into();
        assert_eq!(exit_code(&answered.context("while querying")), 3);
        assert_eq!(exit_code(&anyhow::anyhow!("node unreachable")), 1);
    }
}
