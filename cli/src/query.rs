//! Queries and transactions over a node's RPC: `status`, `block`, `tx …`, `validators`,
//! `peers`, `evidence`, `health`, `penalties`.

use crate::{
    client::{Client, NodeAnswered},
    emit,
    output::{self, Format},
};
use anyhow::{anyhow, bail};
use node::rpc_types::{SubmitResponse, TxRequest, TxResponse, TxStatus};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Field order of `status` tables.
const STATUS_FIELDS: &[&str] = &[
    "chain_id",
    "validator_index",
    "peer_id",
    "health",
    "sync_state",
    "view",
    "leader",
    "committed_height",
    "retained_from",
    "last_commit_age_ms",
    "last_commit_id",
    "high_qc_view",
    "high_qc_block",
    "high_tc_view",
    "peers_connected",
    "signing",
    "mempool_txs",
    "mempool_bytes",
    "version",
    "git_commit",
];

/// Field order of `block` tables (`tx_hashes` is printed below the table).
const BLOCK_FIELDS: &[&str] = &[
    "height",
    "id",
    "view",
    "parent",
    "proposer",
    "justify_view",
    "tx_count",
    "payload_bytes",
    "evidence_count",
];

/// Field order of `tx status` tables.
const TX_FIELDS: &[&str] = &["hash", "status", "height", "block_id", "index"];

/// At most this many transaction hashes are listed under a block table.
const BLOCK_TX_LIST: usize = 20;

/// `bftnode status`.
pub async fn status(client: &Client, format: Format) -> anyhow::Result<()> {
    let v: Value = client.get(&["status"]).await?;
    match format {
        Format::Json => emit(&output::json(&v)),
        Format::Table => emit(&output::fields(&v, STATUS_FIELDS)),
    }
    Ok(())
}

/// `bftnode block [HEIGHT]`: the block at `height`, or the latest committed one.
pub async fn block(client: &Client, height: Option<u64>, format: Format) -> anyhow::Result<()> {
    let which = height.map_or_else(|| "latest".to_string(), |h| h.to_string());
    let v: Value = client.get(&["blocks", &which]).await?;
    match format {
        Format::Json => emit(&output::json(&v)),
        Format::Table => {
            let mut shown = v.clone();
            let hashes = shown
                .as_object_mut()
                .and_then(|m| m.remove("tx_hashes"))
                .unwrap_or(Value::Null);
            let mut text = output::fields(&shown, BLOCK_FIELDS);
            if let Value::Array(hashes) = hashes
                && !hashes.is_empty()
            {
                text.push_str("tx_hashes\n");
                for h in hashes.iter().take(BLOCK_TX_LIST) {
                    text.push_str(&format!("  {}\n", output::cell(h)));
                }
                if hashes.len() > BLOCK_TX_LIST {
                    text.push_str(&format!(
                        "  … {} more (use --output json for all)\n",
                        hashes.len() - BLOCK_TX_LIST
                    ));
                }
            }
            emit(&text);
        }
    }
    Ok(())
}

/// A nonce for a transaction submitted without `--nonce`: the wall clock in nanoseconds, so
/// that repeating a command submits a new transaction rather than a duplicate.
pub fn fresh_nonce() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// `bftnode tx put` / `tx delete`: submit one transaction; with `wait`, poll until it is
/// committed (or `timeout` passes) and print where.
pub async fn submit(
    client: &Client,
    tx: &TxRequest,
    wait: Option<Duration>,
    format: Format,
) -> anyhow::Result<()> {
    let submitted: SubmitResponse = client.post(&["tx"], tx).await?;
    let Some(timeout) = wait else {
        match format {
            Format::Json => emit(&output::json(
                &serde_json::json!({ "hash": submitted.hash }),
            )),
            Format::Table => emit(&output::fields(
                &serde_json::json!({ "hash": submitted.hash, "status": "submitted" }),
                TX_FIELDS,
            )),
        }
        return Ok(());
    };
    let v = wait_committed(client, &submitted.hash, timeout).await?;
    match format {
        Format::Json => emit(&output::json(&v)),
        Format::Table => emit(&output::fields(&v, TX_FIELDS)),
    }
    Ok(())
}

/// Poll `GET /tx/{hash}` until the node reports it committed; its answer, or an error after
/// `timeout`.
async fn wait_committed(client: &Client, hash: &str, timeout: Duration) -> anyhow::Result<Value> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        let v: Value = client.get(&["tx", hash]).await?;
        let status: TxResponse = serde_json::from_value(v.clone())
            .map_err(|e| anyhow!("unexpected answer from {}: {e}", client.url(&["tx", hash])))?;
        if status.status == TxStatus::Committed {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            let state = match status.status {
                TxStatus::Pending => "pending",
                TxStatus::Unknown => "unknown to the node",
                TxStatus::Committed => "committed",
            };
            bail!("transaction {hash} not committed within {timeout:?} (still {state})");
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// `bftnode tx get KEY`: the key's committed value.
pub async fn kv_get(client: &Client, key: &str, format: Format) -> anyhow::Result<()> {
    let v: Value = client.get(&["kv", key]).await?;
    match format {
        Format::Json => emit(&output::json(&v)),
        Format::Table => emit(&output::fields(&v, &["key", "found", "value", "value_hex"])),
    }
    Ok(())
}

/// `bftnode tx status HASH`.
pub async fn tx_status(client: &Client, hash: &str, format: Format) -> anyhow::Result<()> {
    let v: Value = client.get(&["tx", hash]).await?;
    match format {
        Format::Json => emit(&output::json(&v)),
        Format::Table => emit(&output::fields(&v, TX_FIELDS)),
    }
    Ok(())
}

/// A list endpoint (`validators`, `peers`, `evidence`) and how to print it.
#[derive(Clone, Copy, Debug)]
pub enum Listing {
    /// `GET /validators`.
    Validators,
    /// `GET /peers`.
    Peers,
    /// `GET /evidence`.
    Evidence,
}

impl Listing {
    fn path(self) -> &'static str {
        match self {
            Listing::Validators => "validators",
            Listing::Peers => "peers",
            Listing::Evidence => "evidence",
        }
    }
    fn columns(self) -> &'static [&'static str] {
        match self {
            Listing::Validators => &[
                "index",
                "public_key",
                "power",
                "state",
                "is_leader",
                "weight",
                "proposed",
                "failed",
                "voted",
                "invalid_messages",
                "evidence",
                "convicted",
                "conflicting_messages",
                "duplicate_key_suspected",
                "p2p_addr",
                "peer_id",
            ],
            Listing::Peers => &[
                "index",
                "peer_id",
                "address",
                "connected",
                "banned",
                "score",
                "rtt_ms",
                "msgs_in",
                "msgs_out",
                "dropped",
                "duplicate_key_suspected",
                "agent",
            ],
            Listing::Evidence => &["id", "kind", "offender", "view", "committed"],
        }
    }
    fn empty(self) -> &'static str {
        match self {
            Listing::Validators => "no validators",
            Listing::Peers => "no peers",
            Listing::Evidence => "no evidence",
        }
    }
}

/// `bftnode validators` / `peers` / `evidence`.
pub async fn list(client: &Client, listing: Listing, format: Format) -> anyhow::Result<()> {
    let v: Value = client.get(&[listing.path()]).await?;
    match format {
        Format::Json => emit(&output::json(&v)),
        Format::Table => emit(&output::rows(&v, listing.columns(), listing.empty())),
    }
    Ok(())
}

/// `bftnode health`: prints the node's health; an unhealthy node (HTTP 503, or `"ok": false`)
/// is an error, so scripts can test the exit code.
pub async fn health(client: &Client, format: Format) -> anyhow::Result<()> {
    let (code, v): (StatusCode, Value) = client
        .get_with_status(&["health"], &[StatusCode::SERVICE_UNAVAILABLE])
        .await?;
    match format {
        Format::Json => emit(&output::json(&v)),
        Format::Table => emit(&output::fields(
            &v,
            &["health", "ok", "reason", "halted", "last_commit_age_ms"],
        )),
    }
    let reported_ok = v.get("ok").and_then(Value::as_bool).unwrap_or(true);
    if code.is_success() && reported_ok {
        return Ok(());
    }
    Err(NodeAnswered {
        url: client.url(&["health"]).to_string(),
        status: code,
        message: match v.get("reason").and_then(Value::as_str) {
            Some(r) if !r.is_empty() => format!("unhealthy: {}", output::cell(&Value::from(r))),
            _ => format!("unhealthy: {}", output::cell(v.get("health").unwrap_or(&v))),
        },
    }
    .into())
}

/// `bftnode why-stalled`: the node's findings, one per line, then its view of each validator.
pub async fn why_stalled(client: &Client, format: Format) -> anyhow::Result<()> {
    let v: Value = client.get(&["why-stalled"]).await?;
    match format {
        Format::Json => emit(&output::json(&v)),
        Format::Table => {
            let mut text = String::new();
            for f in v["findings"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                text.push_str(&format!("- {}\n", output::cell(f)));
            }
            let cols = [
                "index",
                "connected",
                "silent_ms",
                "in_latest_qc",
                "timed_out_this_view",
                "latest_timeout_view",
            ];
            let rows: Vec<Vec<String>> = v["validators"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .map(|r| cols.iter().map(|c| output::cell(&r[*c])).collect())
                .collect();
            let header: Vec<String> = cols.iter().map(|c| c.to_uppercase()).collect();
            text.push_str(&output::aligned(&header, &rows));
            emit(&text);
        }
    }
    Ok(())
}

/// Columns of the `penalties` summary table.
const PENALTY_SUMMARY: &[&str] = &[
    "validator",
    "standing",
    "since_height",
    "convicted",
    "strikes",
    "downtime_records",
    "evidence_committed",
    "total_penalties",
];

/// Columns of the entry table of `penalties VALIDATOR`.
const PENALTY_ENTRIES: &[&str] = &[
    "height",
    "block_view",
    "kind",
    "standing",
    "evidence_id",
    "evidence_view",
    "window_start",
    "window_end",
    "signed",
    "eligible",
    "proposed",
    "missed_slots",
];

/// `bftnode penalties [VALIDATOR]`: the committed standing and penalty entries of every
/// validator (`GET /penalties`), or of one with its entries (`GET /penalties/{validator}`).
pub async fn penalties(
    client: &Client,
    validator: Option<u16>,
    format: Format,
) -> anyhow::Result<()> {
    let v: Value = match validator {
        None => client.get(&["penalties"]).await?,
        Some(i) => client.get(&["penalties", &i.to_string()]).await?,
    };
    match format {
        Format::Json => emit(&output::json(&v)),
        Format::Table => {
            // Entries are printed as their own table, never as a JSON cell.
            let strip = |mut x: Value| {
                let entries = x.as_object_mut().and_then(|m| m.remove("entries"));
                (x, entries.unwrap_or(Value::Null))
            };
            let text = match v {
                Value::Array(items) => output::rows(
                    &Value::Array(items.into_iter().map(|x| strip(x).0).collect()),
                    PENALTY_SUMMARY,
                    "no accountability state yet (nothing committed)",
                ),
                one => {
                    let (summary, entries) = strip(one);
                    let mut text = output::fields(&summary, PENALTY_SUMMARY);
                    text.push('\n');
                    text.push_str(&output::rows(
                        &entries,
                        PENALTY_ENTRIES,
                        "no penalty entries",
                    ));
                    text
                }
            };
            emit(&text);
        }
    }
    Ok(())
}
