//! `bftnode reset`: wipe a stopped validator's database (blocks, application state,
//! transaction index, evidence) and keep its key (issue 11 item 8).
//!
//! The safety record (last voted view, lock, high TC: PROTOCOL.md §4.1) is what stops a
//! restarted validator from signing twice in a view. A reset keeps it by default: the new
//! database starts from genesis, holding only the chain id and that record, and the node
//! catches up from its peers while signing nothing at or below the views it already signed
//! in. Dropping it too (CometBFT's `unsafe-reset-all`, its most-regretted command) needs
//! [`ResetMode::DropSafetyRecord`] with a reason; every reset appends a line to
//! `<home>/reset.log` saying what was dropped, when and why.

use crate::config::{self, NodeConfig};
use anyhow::{Context, Result, bail};
use consensus::SafetyData;
use std::io::Write as _;
use std::path::Path;
use storage::{Op, RocksOptions, RocksStore, Store, WriteBatch};

/// The audit file a reset appends to, inside the home.
pub const RESET_LOG: &str = "reset.log";

/// What a reset keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResetMode {
    /// Keep the safety record (the default).
    KeepSafetyRecord,
    /// Drop it too: only for a key that will never sign on this chain again from an older
    /// record, or a chain being restarted from genesis. The reason goes into `reset.log`.
    DropSafetyRecord {
        /// Why (non-empty).
        reason: String,
    },
}

/// What a reset did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetOutcome {
    /// The database directory wiped.
    pub db_path: std::path::PathBuf,
    /// The safety record carried into the fresh database (`None`: dropped, or there was none).
    pub kept: Option<SafetyData>,
}

/// Reset the database of the validator in `home` (which must not be running: RocksDB's lock
/// refuses a running node's database, and this fails with that error). Reads the config, the
/// key file (it must be there and readable: a reset never touches it) and the safety record
/// before deleting anything.
///
/// Errors: a missing or invalid config or key; a database of another chain; an empty reason
/// for [`ResetMode::DropSafetyRecord`]; any IO or store error.
pub fn reset(home: &Path, mode: &ResetMode) -> Result<ResetOutcome> {
    if let ResetMode::DropSafetyRecord { reason } = mode
        && reason.trim().is_empty()
    {
        bail!("dropping the safety record needs a reason");
    }
    let cfg = NodeConfig::load(home)?;
    config::load_key(&config::resolve(home, &cfg.key_file))
        .context("the key stays, so it must be readable before anything is wiped")?;
    let db_path = config::resolve(home, &cfg.db_path);
    let safety = if db_path.exists() {
        let mut store = RocksStore::open(&db_path, RocksOptions::default()).with_context(|| {
            format!(
                "opening database {} (is the node running?)",
                db_path.display()
            )
        })?;
        store
            .check_chain_id(&cfg.chain_id)
            .with_context(|| format!("database {}", db_path.display()))?;
        store.load_safety()?
    } else {
        None
    };
    let kept = match mode {
        ResetMode::KeepSafetyRecord => safety.clone(),
        ResetMode::DropSafetyRecord { .. } => None,
    };
    let line = match (mode, &safety) {
        (_, None) => "reset: there was no safety record".to_string(),
        (ResetMode::KeepSafetyRecord, Some(s)) => format!(
            "reset keeping the safety record (last voted view {})",
            s.last_voted_view.0
        ),
        (ResetMode::DropSafetyRecord { reason }, Some(s)) => format!(
            "reset DROPPING the safety record (last voted view {}): {}",
            s.last_voted_view.0,
            reason.replace('\n', " ")
        ),
    };
    if db_path.exists() {
        std::fs::remove_dir_all(&db_path)
            .with_context(|| format!("deleting {}", db_path.display()))?;
    }
    if let Some(s) = &kept {
        let mut store = RocksStore::open(&db_path, RocksOptions::default())
            .with_context(|| format!("creating database {}", db_path.display()))?;
        store.check_chain_id(&cfg.chain_id)?;
        store.write(WriteBatch {
            sync: true,
            ops: vec![Op::PutSafety(Box::new(s.clone()))],
        })?;
    }
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.join(RESET_LOG))
        .with_context(|| format!("opening {}", home.join(RESET_LOG).display()))?;
    writeln!(log, "{} {line}", config::now_unix_ms())?;
    Ok(ResetOutcome { db_path, kept })
}
