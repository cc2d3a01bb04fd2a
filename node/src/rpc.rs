//! The HTTP/JSON RPC server (axum). Bodies are the structs of [`crate::rpc_types`].
//!
//! Reads of committed data (blocks, transactions, keys) go straight to the store, on tokio's
//! blocking pool ([`read_store`]: never on an async worker, never behind the driver's writes;
//! a failed read is this request's 500, counted in `bftnode_store_read_errors_total{path="rpc"}`);
//! everything
//! about live state (status, validators, evidence, health, submissions) is a [`Command`] to
//! the driver task with a oneshot reply. Every error is a JSON [`ErrorResponse`]: 400 for bad
//! input, 404 for unknown items, 405 for a wrong method, 409 for a duplicate transaction, 413
//! for bodies over [`MAX_BODY_BYTES`], 429 (`mempool full: …`) when the mempool is at its limit
//! (counted in `bftnode_submitted_txs{outcome="mempool_full"}`), 503 when the node is stopping. The server's own defences
//! ([`crate::rpc_guard`]) add 403 (a `Host` that is not allowed), 408 (request timeout), 415
//! (a submission that is not `application/json`) and 503 (too many requests in flight). No
//! CORS headers are ever sent.

use crate::app;
use crate::driver::{Command, HealthReport, SharedStore};
use crate::events::CommitEvents;
use crate::mempool::MempoolError;
use crate::metrics::Metrics;
use crate::rpc_guard::{self, RpcGuard};
use crate::rpc_types::*;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use consensus::{Block, BlockId, Digest, Health};
use network::NetworkHandle;
use std::sync::Arc;
use storage::{RocksStore, Store as _, StoreError};
use tokio::sync::{mpsc, oneshot};

/// Largest request body accepted, in bytes.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// What the handlers share.
pub struct RpcState {
    /// The store (read-only use here).
    pub store: SharedStore,
    /// Commands to the driver.
    pub cmd: mpsc::Sender<Command>,
    /// The network (peer list).
    pub net: NetworkHandle,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// The commit stream (`GET /events`).
    pub events: CommitEvents,
    /// Turns `true` when the node stops: every open `GET /events` stream then ends, so the
    /// server's graceful shutdown is not held up by them.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// `[rpc] health_max_commit_age_ms`: `GET /health` is unhealthy when the last commit is
    /// older; zero turns the check off.
    pub health_max_commit_age: std::time::Duration,
}

type St = State<Arc<RpcState>>;

/// An error reply.
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
    fn not_found(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, msg.into())
    }
    fn gone(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::GONE, msg.into())
    }
    fn internal(msg: impl std::fmt::Display) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, msg.to_string())
    }
    fn stopped() -> Self {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, "node is stopping".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, axum::Json(ErrorResponse { error: self.1 })).into_response()
    }
}

type ApiResult<T> = Result<axum::Json<T>, ApiError>;

/// The router with every route, behind `guard`'s per-request defences (Host check, load
/// shedding, timeout; see [`crate::rpc_guard`]). `POST /tx` and `POST /txs` take only
/// `application/json` bodies (415 otherwise).
pub fn router(state: Arc<RpcState>, guard: &RpcGuard) -> Router {
    let routes = Router::new()
        .route("/", get(dashboard))
        .route("/status", get(status))
        .route("/blocks/latest", get(block_latest))
        .route("/blocks/{height}", get(block_at))
        .route("/tx/{hash}", get(tx_get))
        .route("/tx", post(tx_post).route_layer(rpc_guard::json_body()))
        .route("/txs", post(txs_post).route_layer(rpc_guard::json_body()))
        .route("/kv/{key}", get(kv_get))
        .route("/validators", get(validators))
        .route("/peers", get(peers))
        .route("/evidence", get(evidence))
        .route("/evidence/{id}", get(evidence_proof))
        .route("/faults", get(faults))
        .route("/penalties", get(penalties_all))
        .route("/penalties/{validator}", get(penalties_one))
        .route("/health", get(health))
        .route("/why-stalled", get(why_stalled))
        .route("/metrics", get(metrics))
        .route("/events", get(events))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError(StatusCode::METHOD_NOT_ALLOWED, "method not allowed".into())
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    guard.protect(routes).with_state(state)
}

/// `GET /events`: server-sent events, one `commit` event per committed block
/// ([`CommitEvent`] as JSON) from the moment of subscribing, a `lagged` event
/// (`{"skipped": n}`) when this client fell more than [`crate::events::EVENTS_CAPACITY`] blocks
/// behind, and a keep-alive comment every 15 s. The stream ends when the node stops.
async fn events(
    State(st): St,
) -> Sse<impl futures::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    use tokio::sync::broadcast::error::RecvError;
    let state = (st.events.subscribe(), st.shutdown.clone());
    let stream = futures::stream::unfold(state, |(mut rx, mut shutdown)| async move {
        loop {
            if *shutdown.borrow() {
                return None;
            }
            let event = tokio::select! {
                r = rx.recv() => match r {
                    Ok(c) => match SseEvent::default().event("commit").json_data(&*c) {
                        Ok(e) => e,
                        Err(_) => continue,
                    },
                    Err(RecvError::Lagged(n)) => SseEvent::default()
                        .event("lagged")
                        .data(format!("{{\"skipped\":{n}}}")),
                    Err(RecvError::Closed) => return None,
                },
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    continue;
                }
            };
            return Some((Ok(event), (rx, shutdown)));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn ask<T>(
    st: &RpcState,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    st.cmd
        .send(make(tx))
        .await
        .map_err(|_| ApiError::stopped())?;
    rx.await.map_err(|_| ApiError::stopped())
}

async fn status(State(st): St) -> ApiResult<StatusResponse> {
    Ok(axum::Json(ask(&st, Command::Status).await?))
}

/// The driver's answer, with each validator's duplicate-key count from the network.
async fn validators(State(st): St) -> ApiResult<Vec<ValidatorResponse>> {
    let mut vs = ask(&st, Command::Validators).await?;
    let peers = st.net.peers().await;
    for v in &mut vs {
        if let Some(p) = peers.iter().find(|p| p.index == v.index) {
            v.duplicate_key_suspected = p.duplicate_key_suspected;
        }
    }
    Ok(axum::Json(vs))
}

/// `GET /faults`: the driver's report ([`crate::faults`]) plus the network's suspicion of a
/// validator key connecting from two addresses.
async fn faults(State(st): St) -> ApiResult<FaultsResponse> {
    let mut r = ask(&st, Command::Faults).await?;
    for p in st.net.peers().await {
        if p.duplicate_key_suspected == 0 {
            continue;
        }
        let why = format!(
            "its key connected from a second address while connected from another ({} times): \
             two instances with one key risk double signing",
            p.duplicate_key_suspected
        );
        match r.suspected.iter_mut().find(|e| e.index == p.index) {
            Some(e) => e.reason = format!("{}; {why}", e.reason),
            None => {
                let key = ask(&st, Command::Validators)
                    .await?
                    .into_iter()
                    .find(|v| v.index == p.index);
                r.suspected.push(FaultEntry {
                    index: p.index,
                    public_key: key
                        .as_ref()
                        .map(|v| v.public_key.clone())
                        .unwrap_or_default(),
                    power: key.map_or(0, |v| v.power),
                    reason: why,
                    since_view: None,
                    since_height: None,
                });
            }
        }
    }
    r.suspected.sort_by_key(|e| e.index);
    Ok(axum::Json(r))
}

/// `GET /evidence/{id}`: the full proof ([`crate::proof::EvidenceProof`]); 400 for a malformed
/// id, 404 for an unknown one.
async fn evidence_proof(
    State(st): St,
    Path(id): Path<String>,
) -> ApiResult<crate::proof::EvidenceProof> {
    let id = Digest::from_hex(&id)
        .ok_or_else(|| ApiError::bad("evidence id must be 64 hex characters"))?;
    match ask(&st, |reply| Command::EvidenceProof { id, reply }).await? {
        Some(p) => Ok(axum::Json(p)),
        None => Err(ApiError::not_found(format!("no evidence with id {id}"))),
    }
}

async fn evidence(State(st): St) -> ApiResult<Vec<EvidenceResponse>> {
    Ok(axum::Json(ask(&st, Command::Evidence).await?))
}

/// Why `h` is unhealthy under a commit-age limit `max` (zero: no limit), in words; empty when
/// healthy. The one rule behind `GET /health` and the `bftnode_healthy` gauge.
fn unhealthy_reason(h: &HealthReport, max: std::time::Duration) -> String {
    if h.halted {
        "halted: the node signs and commits nothing more (see its log)".to_string()
    } else if !max.is_zero() && h.last_commit_age > max {
        format!(
            "no commit for {:.0} s (limit {:.0} s): `bftnode faults` and `bftnode peers` say who is missing",
            h.last_commit_age.as_secs_f64(),
            max.as_secs_f64()
        )
    } else if h.health != Health::Normal {
        format!("health {:?}", h.health)
    } else {
        String::new()
    }
}

async fn health(State(st): St) -> Result<Response, ApiError> {
    let h = ask(&st, Command::Health).await?;
    let reason = unhealthy_reason(&h, st.health_max_commit_age);
    let ok = reason.is_empty();
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = HealthResponse {
        health: format!("{:?}", h.health),
        ok,
        reason,
        halted: h.halted,
        last_commit_age_ms: h.last_commit_age.as_millis() as u64,
    };
    Ok((code, axum::Json(body)).into_response())
}

/// The live dashboard page (`node/src/dashboard.html`): one self-contained HTML file that polls
/// `/status`, `/validators`, `/peers`, `/health` and `/metrics` every second and follows
/// `/events`. Nothing is loaded from elsewhere (the CSP says so).
async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        include_str!("dashboard.html"),
    )
        .into_response()
}

async fn why_stalled(State(st): St) -> ApiResult<WhyStalledResponse> {
    Ok(axum::Json(ask(&st, Command::WhyStalled).await?))
}

async fn metrics(State(st): St) -> Response {
    st.metrics.sync_network(&st.net.metrics().await);
    st.metrics.storage.sync(&st.store.engine_stats());
    // A driver that does not answer (stopping) leaves the last values.
    if let Ok(validators) = ask(&st, Command::Validators).await {
        st.metrics.sync_validators(&validators);
    }
    if let Ok(h) = ask(&st, Command::Health).await {
        let ok = unhealthy_reason(&h, st.health_max_commit_age).is_empty();
        st.metrics
            .sync_health(&format!("{:?}", h.health), ok, h.syncing);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}

async fn peers(State(st): St) -> ApiResult<Vec<PeerResponse>> {
    let peers = st.net.peers().await;
    Ok(axum::Json(
        peers
            .into_iter()
            .map(|p| PeerResponse {
                index: p.index,
                peer_id: p.peer_id.to_string(),
                connected: p.connected,
                address: p.address.to_string(),
                score: p.score,
                banned: p.banned,
                msgs_in: p.msgs_in,
                msgs_out: p.msgs_out,
                dropped: p.dropped,
                rtt_ms: p.rtt_ms,
                agent: p.agent,
                duplicate_key_suspected: p.duplicate_key_suspected,
            })
            .collect(),
    ))
}

fn block_json(id: BlockId, b: &Block) -> BlockResponse {
    let s = app::summarize(&b.payload, app::PAYLOAD_DECODE_LIMIT);
    BlockResponse {
        height: b.height.0,
        id: id.to_hex(),
        view: b.view.0,
        parent: b.parent.to_hex(),
        proposer: b.proposer.0,
        justify_view: b.justify.view().0,
        tx_count: s.tx_hashes.len(),
        tx_hashes: s.tx_hashes.iter().map(Digest::to_hex).collect(),
        evidence_count: b.evidence.len(),
        payload_bytes: b.payload.len(),
        payload_invalid: s.invalid,
    }
}

/// Run the store read `read` on tokio's blocking pool. A failed read (or a panicked read task)
/// fails this request only: 500, counted in `store_read_errors{path="rpc"}`.
async fn read_store<T: Send + 'static>(
    st: &RpcState,
    read: impl FnOnce(&RocksStore) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = st.store.clone();
    let r = tokio::task::spawn_blocking(move || read(&store))
        .await
        .map_err(ApiError::internal)?;
    r.map_err(|e| {
        st.metrics.count_store_read_error("rpc");
        tracing::warn!(error = %e, "RPC: store read failed");
        ApiError::internal(e)
    })
}

async fn committed_block(st: &RpcState, height: Option<u64>) -> Result<BlockResponse, ApiError> {
    let found = read_store(st, move |store| {
        let id = match height {
            None => store.committed_tip()?.map(|(_, id)| id),
            Some(h) => store.committed_id(consensus::Height(h))?,
        };
        match id {
            Some(id) => Ok(Some((id, store.block(&id)?, store.retained_from()?))),
            None => Ok(None),
        }
    })
    .await?;
    let Some((id, block, floor)) = found else {
        return Err(ApiError::not_found(match height {
            Some(h) => format!("no committed block at height {h}"),
            None => "no committed block".to_string(),
        }));
    };
    match block {
        Some(block) => Ok(block_json(id, &block)),
        None if height.is_some_and(|h| h > 0 && h < floor.0) => Err(ApiError::gone(format!(
            "block {id} at height {} was pruned: this node keeps heights ≥ {} \
             ([storage] retain_heights); ask an archive node",
            height.unwrap_or_default(),
            floor.0
        ))),
        None => Err(ApiError::internal(format!(
            "committed block {id} missing from store"
        ))),
    }
}

async fn block_latest(State(st): St) -> ApiResult<BlockResponse> {
    Ok(axum::Json(committed_block(&st, None).await?))
}

async fn block_at(State(st): St, Path(height): Path<String>) -> ApiResult<BlockResponse> {
    let h: u64 = height.parse().map_err(|_| {
        ApiError::bad(format!(
            "height must be a non-negative integer, got {height:?}"
        ))
    })?;
    Ok(axum::Json(committed_block(&st, Some(h)).await?))
}

async fn tx_get(State(st): St, Path(hash): Path<String>) -> ApiResult<TxResponse> {
    let h =
        Digest::from_hex(&hash).ok_or_else(|| ApiError::bad("hash must be 64 hex characters"))?;
    let loc = read_store(&st, move |store| store.tx_location(&h)).await?;
    let mut r = TxResponse {
        hash: h.to_hex(),
        status: TxStatus::Unknown,
        height: None,
        block_id: None,
        index: None,
    };
    if let Some(loc) = loc {
        r.status = TxStatus::Committed;
        r.height = Some(loc.height.0);
        r.block_id = Some(loc.block_id.to_hex());
        r.index = Some(loc.index);
    } else if ask(&st, |tx| Command::IsPending(h, tx)).await? {
        r.status = TxStatus::Pending;
    }
    Ok(axum::Json(r))
}

async fn kv_get(State(st): St, Path(key): Path<String>) -> ApiResult<KvResponse> {
    let k = key.clone().into_bytes();
    let v = read_store(&st, move |store| store.app_get(&k)).await?;
    let (value, value_hex) = match v {
        None => (None, false),
        Some(v) => match String::from_utf8(v) {
            Ok(s) => (Some(s), false),
            Err(e) => (Some(hex::encode(e.into_bytes())), true),
        },
    };
    Ok(axum::Json(KvResponse {
        key,
        found: value.is_some(),
        value,
        value_hex,
    }))
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|r| {
        let code = r.status();
        let msg = if code == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body exceeds {MAX_BODY_BYTES} bytes")
        } else {
            r.body_text()
        };
        ApiError(code, msg)
    })
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}

/// The HTTP status of a refused submission: a full or congested mempool is back-pressure
/// (429, retry later), a duplicate a conflict (409), anything else bad input (400).
fn mempool_status(e: &MempoolError) -> StatusCode {
    match e {
        MempoolError::Full { .. }
        | MempoolError::OverQuota { .. }
        | MempoolError::Congested { .. } => StatusCode::TOO_MANY_REQUESTS,
        MempoolError::AlreadyPending { .. } | MempoolError::AlreadyCommitted { .. } => {
            StatusCode::CONFLICT
        }
        MempoolError::Invalid(_) => StatusCode::BAD_REQUEST,
    }
}

/// The `outcome` label of `bftnode_submitted_txs` for a submission's result.
fn submit_outcome(r: &Result<consensus::Digest, MempoolError>) -> &'static str {
    match r {
        Ok(_) => "accepted",
        Err(MempoolError::Full { .. } | MempoolError::OverQuota { .. }) => "mempool_full",
        Err(MempoolError::Congested { .. }) => "congested",
        Err(MempoolError::AlreadyPending { .. } | MempoolError::AlreadyCommitted { .. }) => {
            "duplicate"
        }
        Err(MempoolError::Invalid(_)) => "invalid",
    }
}

async fn tx_post(State(st): St, body: Result<Bytes, BytesRejection>) -> ApiResult<SubmitResponse> {
    let bytes = body_bytes(body)?;
    let req: TxRequest = parse_json(&bytes)?;
    let tx = req
        .into_transaction(st.metrics.committed())
        .map_err(ApiError::bad)?;
    let mut results = ask(&st, |reply| Command::Submit {
        txs: vec![tx],
        reply,
    })
    .await?;
    if let Some(r) = results.last() {
        st.metrics.count_submitted_txs(submit_outcome(r), 1);
    }
    match results.pop() {
        Some(Ok(hash)) => Ok(axum::Json(SubmitResponse {
            hash: hash.to_hex(),
        })),
        Some(Err(e)) => Err(ApiError(mempool_status(&e), e.to_string())),
        None => Err(ApiError::stopped()),
    }
}

async fn txs_post(
    State(st): St,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let bytes = body_bytes(body)?;
    let req: BatchRequest = parse_json(&bytes)?;
    if req.txs.len() > MAX_BATCH_TXS {
        return Err(ApiError::bad(format!(
            "batch of {} transactions exceeds {MAX_BATCH_TXS}",
            req.txs.len()
        )));
    }
    let mut errors = Vec::new();
    let mut valid = Vec::new();
    let mut positions = Vec::new();
    let committed = st.metrics.committed();
    for (index, r) in req.txs.into_iter().enumerate() {
        match r.into_transaction(committed) {
            Ok(tx) => {
                valid.push(tx);
                positions.push(index);
            }
            Err(error) => errors.push(BatchError { index, error }),
        }
    }
    let results = if valid.is_empty() {
        Vec::new()
    } else {
        ask(&st, |reply| Command::Submit { txs: valid, reply }).await?
    };
    let mut hashes = Vec::new();
    let mut all_full = !results.is_empty();
    st.metrics
        .count_submitted_txs("invalid", errors.len() as u64);
    for (index, r) in positions.into_iter().zip(results) {
        st.metrics.count_submitted_txs(submit_outcome(&r), 1);
        match r {
            Ok(h) => {
                all_full = false;
                hashes.push(h.to_hex());
            }
            Err(e) => {
                if !matches!(
                    e,
                    MempoolError::Full { .. } | MempoolError::Congested { .. }
                ) {
                    all_full = false;
                }
                errors.push(BatchError {
                    index,
                    error: e.to_string(),
                });
            }
        }
    }
    errors.sort_by_key(|e| e.index);
    let body = BatchResponse {
        accepted: hashes.len(),
        hashes,
        errors,
    };
    let code = if all_full {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::OK
    };
    Ok((code, axum::Json(body)).into_response())
}

/// Read the accountability state and the penalty records of `which` (every validator if `None`)
/// from the store: empty before the first commit.
async fn read_penalties(
    st: &RpcState,
    which: Option<u16>,
) -> Result<Vec<PenaltiesResponse>, ApiError> {
    let read = read_store(st, move |store| {
        let Some(bytes) = store.app_get(app::ACCOUNTING_KEY)? else {
            return Ok(None);
        };
        let state = fault::AccountingState::decode(&bytes);
        let n = state.as_ref().map_or(0, |s| s.accounts.len());
        let mut records = Vec::new();
        for i in (0..n).filter(|&i| which.is_none_or(|w| usize::from(w) == i)) {
            let v = consensus::ValidatorIndex(i as u16);
            records.push((v, store.app_get(&app::penalty_key(v))?));
        }
        Ok(Some((state, records)))
    })
    .await?;
    let Some((state, records)) = read else {
        return Ok(Vec::new());
    };
    let state = state.map_err(ApiError::internal)?;
    let mut out = Vec::with_capacity(records.len());
    for (v, bytes) in records {
        let record = bytes
            .map(|b| app::PenaltyRecord::decode(&b))
            .transpose()
            .map_err(ApiError::internal)?;
        let acc = &state.accounts[v.as_usize()];
        out.push(app::penalties_json(v.0, acc, state.last_height, record));
    }
    Ok(out)
}

async fn penalties_all(State(st): St) -> ApiResult<Vec<PenaltiesResponse>> {
    Ok(axum::Json(read_penalties(&st, None).await?))
}

async fn penalties_one(State(st): St, Path(v): Path<String>) -> ApiResult<PenaltiesResponse> {
    let v: u16 = v
        .parse()
        .map_err(|_| ApiError::bad(format!("validator must be an index (0..65535), got {v:?}")))?;
    read_penalties(&st, Some(v))
        .await?
        .into_iter()
        .next()
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("no validator {v} in the accounting state")))
}
