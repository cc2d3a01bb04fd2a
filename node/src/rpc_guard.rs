//! The RPC server's defences (issue 8, finding 7): who may talk to it, what a submission must
//! look like, and how much of the node one client can hold. Settings come from the `[rpc]`
//! section of `config.toml` ([`RpcSection`]).
//!
//! Per request, outermost first (every refusal is a JSON [`ErrorResponse`]):
//! 1. **Host check** against DNS rebinding: the `Host` header (and an absolute request URI's
//!    authority) must name a loopback name or address (`localhost`, `127.0.0.0/8`, `[::1]`), the
//!    IP of `rpc_listen` (any IP address when `rpc_listen` is unspecified: an address literal
//!    cannot be rebound) or an entry of `rpc.allowed_hosts`; the port is not compared. Another
//!    host gets **403**, a malformed or repeated `Host` header **400**. A request without `Host`
//!    (HTTP/1.0) is served: browsers always send one, so its absence is no rebinding attempt.
//! 2. **Load shedding**: at most `rpc.max_concurrent_requests` requests are handled at once; one
//!    more gets **503** with `Retry-After: 1` at once rather than queueing.
//! 3. **Timeout**: a request not answered within `rpc.request_timeout_ms`, reading its body
//!    included, gets **408** and its handler is dropped.
//! 4. On routes that take a body ([`json_body`]): a `Content-Type` other than
//!    `application/json` (parameters allowed; a `charset` must be UTF-8) gets **415** before the
//!    body is read. A web page can send a cross-origin `text/plain` POST without asking first;
//!    an `application/json` one needs a CORS preflight, which this server never grants: it sends
//!    no CORS headers at all.
//!
//! Per connection ([`RpcGuard::serve`]): at most `rpc.max_connections` are open; further ones
//! wait in the kernel's accept queue. A connection must deliver each request's headers within
//! `rpc.header_read_timeout_ms`, which also closes idle keep-alive connections, so a client that
//! opens connections and sends nothing cannot keep the slots. The body-size cap
//! ([`crate::rpc::MAX_BODY_BYTES`], 413) stays in the router.

use crate::config::RpcSection;
use crate::rpc_types::ErrorResponse;
use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::http::uri::Authority;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{BoxError, ServiceBuilder};
use tower_http::validate_request::{ValidateRequest, ValidateRequestHeaderLayer};
use tracing::{debug, warn};

/// What the RPC server enforces, built from `[rpc]` and the RPC listen address.
#[derive(Clone, Debug)]
pub struct RpcGuard {
    hosts: Arc<HostPolicy>,
    request_timeout: Duration,
    header_read_timeout: Duration,
    max_concurrent_requests: usize,
    max_connections: usize,
}

impl RpcGuard {
    /// The guard for a server listening on `listen` with the (validated) settings `rpc`.
    pub fn new(rpc: &RpcSection, listen: SocketAddr) -> Self {
        RpcGuard {
            hosts: Arc::new(HostPolicy::new(&rpc.allowed_hosts, listen.ip())),
            request_timeout: Duration::from_millis(rpc.request_timeout_ms),
            header_read_timeout: Duration::from_millis(rpc.header_read_timeout_ms),
            max_concurrent_requests: rpc.max_concurrent_requests.max(1),
            max_connections: rpc.max_connections.max(1),
        }
    }

    /// `router` behind the per-request defences 1–3 of the module docs (Host check, load
    /// shedding, timeout).
    pub fn protect<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        let hosts = self.hosts.clone();
        let timeout_ms = self.request_timeout.as_millis();
        let limit = self.max_concurrent_requests;
        router.layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |e: BoxError| async move {
                    layer_error(&e, timeout_ms, limit)
                }))
                .layer(ValidateRequestHeaderLayer::custom(HostCheck(hosts)))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(limit))
                .timeout(self.request_timeout),
        )
    }

    /// Serve `app` on `listener` until `shutdown` turns true (or its sender is dropped), then
    /// let every open connection finish its request in flight and return once all are closed.
    /// At most `max_connections` connections are open at once; each must send a request's
    /// headers within `header_read_timeout` (also the idle keep-alive limit). HTTP/1.1 only.
    pub async fn serve(
        self,
        listener: TcpListener,
        app: Router,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let slots = Arc::new(Semaphore::new(self.max_connections));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout);
        loop {
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
                () = stopped(&mut shutdown) => break,
            };
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) if is_connection_error(&e) => continue,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        warn!(error = %e, "RPC server cannot accept connections; retrying in 1 s");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                            () = stopped(&mut shutdown) => break,
                        }
                    }
                },
                () = stopped(&mut shutdown) => break,
            };
            let _ = stream.set_nodelay(true);
            let conn =
                http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut conn = std::pin::pin!(conn);
                let result = tokio::select! {
                    r = conn.as_mut() => r,
                    () = stopped(&mut shutdown) => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    debug!(%peer, error = %e, "RPC connection ended with an error");
                }
                drop(slot);
            });
        }
        drop(listener);
        // Every slot back means every connection closed.
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        let _ = slots.acquire_many(all).await;
    }
}

/// Resolves once `shutdown` is true or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Accept errors that concern one connection only (retry at once).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// A JSON error reply.
fn refuse(status: StatusCode, message: String) -> Response {
    (status, axum::Json(ErrorResponse { error: message })).into_response()
}

/// Why a request is refused before it reaches a handler: the status and the message.
type Refusal = (StatusCode, String);

/// The Host check as a [`ValidateRequest`] of tower-http.
#[derive(Clone, Debug)]
struct HostCheck(Arc<HostPolicy>);

impl<B> ValidateRequest<B> for HostCheck {
    type ResponseBody = Body;
    fn validate(&mut self, req: &mut Request<B>) -> Result<(), Response> {
        self.0
            .check(req)
            .map_err(|(status, why)| refuse(status, why))
    }
}

/// The reply for an error of the timeout or load-shedding layer.
fn layer_error(e: &BoxError, timeout_ms: u128, limit: usize) -> Response {
    if e.is::<tower::timeout::error::Elapsed>() {
        refuse(
            StatusCode::REQUEST_TIMEOUT,
            format!("request not completed within {timeout_ms} ms (rpc.request_timeout_ms)"),
        )
    } else if e.is::<tower::load_shed::error::Overloaded>() {
        let mut r = refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "server busy: {limit} requests in flight (rpc.max_concurrent_requests); retry later"
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    } else {
        refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )
    }
}

/// The hosts a request may name (see the module docs).
#[derive(Debug)]
struct HostPolicy {
    /// `*` was listed: no check.
    any: bool,
    /// Listed names, lower case, without a trailing dot.
    names: Vec<String>,
    /// Listed addresses.
    ips: Vec<IpAddr>,
    /// The IP the server listens on.
    listen: IpAddr,
}

impl HostPolicy {
    fn new(allowed: &[String], listen: IpAddr) -> Self {
        let mut policy = HostPolicy {
            any: false,
            names: Vec::new(),
            ips: Vec::new(),
            listen: listen.to_canonical(),
        };
        for entry in allowed {
            if entry == "*" {
                policy.any = true;
            } else if let Some(ip) = ip_literal(entry) {
                policy.ips.push(ip);
            } else {
                policy.names.push(normalize(entry));
            }
        }
        policy
    }

    /// Whether `host` (an authority's host part, without port) is allowed.
    fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        match ip_literal(host) {
            Some(ip) => {
                ip.is_loopback()
                    || self.listen.is_unspecified()
                    || ip == self.listen
                    || self.ips.contains(&ip)
            }
            None => {
                let name = normalize(host);
                name == "localhost" || self.names.contains(&name)
            }
        }
    }

    /// The Host check of a request: `Err` is the 400/403 reply.
    fn check<B>(&self, req: &Request<B>) -> Result<(), Refusal> {
        let mut values = req.headers().get_all(header::HOST).iter();
        let value = values.next();
        if values.next().is_some() {
            return Err((
                StatusCode::BAD_REQUEST,
                "more than one Host header".to_string(),
            ));
        }
        let named = match value {
            Some(v) if !v.is_empty() => Some(
                v.to_str()
                    .ok()
                    .and_then(|s| s.parse::<Authority>().ok())
                    .filter(|a| !a.as_str().contains('@'))
                    .ok_or_else(|| (StatusCode::BAD_REQUEST, "invalid Host header".to_string()))?,
            ),
            _ => None,
        };
        for authority in named.iter().chain(req.uri().authority()) {
            if !self.allows(authority.host()) {
                return Err((
                    StatusCode::FORBIDDEN,
                    format!(
                        "host {:?} is not allowed; add it to rpc.allowed_hosts in config.toml",
                        authority.host()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `host` as an IP address: dotted IPv4 or bracketed IPv6, canonical (an IPv4-mapped IPv6
/// address becomes IPv4).
fn ip_literal(host: &str) -> Option<IpAddr> {
    let trimmed = host.strip_suffix('.').unwrap_or(host);
    let ip = match trimmed.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => IpAddr::V6(v6.parse().ok()?),
        None => IpAddr::V4(trimmed.parse().ok()?),
    };
    Some(ip.to_canonical())
}

/// A host name in lower case without a trailing dot (`LocalHost.` → `localhost`).
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The route layer of an endpoint that reads a JSON body: 415 unless `Content-Type` is
/// `application/json` (case-insensitive; parameters allowed, but a `charset` must be UTF-8).
/// Runs before the body is read.
pub fn json_body() -> ValidateRequestHeaderLayer<JsonOnly> {
    ValidateRequestHeaderLayer::custom(JsonOnly)
}

/// The validator of [`json_body`].
#[derive(Clone, Copy, Debug)]
pub struct JsonOnly;

impl<B> ValidateRequest<B> for JsonOnly {
    type ResponseBody = Body;
    fn validate(&mut self, req: &mut Request<B>) -> Result<(), Response> {
        let mut values = req.headers().get_all(header::CONTENT_TYPE).iter();
        let verdict = match (values.next(), values.next()) {
            (None, _) => Err("no Content-Type given".to_string()),
            (Some(_), Some(_)) => Err("more than one Content-Type header".to_string()),
            (Some(v), None) => json_content_type(v),
        };
        verdict.map_err(|why| {
            refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type must be application/json: {why}"),
            )
        })
    }
}

/// Whether `value` is `application/json` with at most a UTF-8 charset; `Err` says why not.
fn json_content_type(value: &HeaderValue) -> Result<(), String> {
    let text = value
        .to_str()
        .map_err(|_| "Content-Type is not ASCII".to_string())?;
    let mime: mime::Mime = text
        .parse()
        .map_err(|_| format!("cannot parse Content-Type {text:?}"))?;
    if mime.essence_str() != mime::APPLICATION_JSON.essence_str() {
        return Err(format!("got {:?}", mime.essence_str()));
    }
    match mime.get_param(mime::CHARSET) {
        Some(charset) if charset != mime::UTF_8 => Err(format!(
            "charset {:?} is not supported, only utf-8",
            charset.as_str()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str], listen: &str) -> HostPolicy {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        HostPolicy::new(&allowed, listen.parse().unwrap())
    }

    #[test]
    fn loopback_listen_and_listed_hosts_pass() {
        let p = policy(&["Node.Example", "10.1.2.3", "[fe80::1]"], "127.0.0.1");
        for ok in [
            "localhost",
            "LOCALHOST.",
            "127.0.0.1",
            "127.9.9.9",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "node.example",
            "node.example.",
            "10.1.2.3",
            "[FE80:0::1]",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "10.1.2.4",
            "[::2]",
            "0.0.0.0",
        ] {
            assert!(!p.allows(bad), "{bad}");
        }
    }

    #[test]
    fn listen_address_and_wildcards() {
        let p = policy(&[], "192.0.2.7");
        assert!(p.allows("192.0.2.7"));
        assert!(!p.allows("192.0.2.8"));
        // Listening on every interface: any address literal, still no foreign name.
        let p = policy(&[], "0.0.0.0");
        assert!(p.allows("192.0.2.8") && p.allows("[2001:db8::1]"));
        assert!(!p.allows("evil.example"));
        assert!(policy(&["*"], "127.0.0.1").allows("evil.example"));
    }

    #[test]
    fn content_types() {
        let ok = |s: &'static str| json_content_type(&HeaderValue::from_static(s));
        assert!(ok("application/json").is_ok());
        assert!(ok("Application/JSON; charset=UTF-8").is_ok());
        assert!(ok("application/json;charset=\"utf-8\"").is_ok());
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "application/json; charset=utf-16",
            "",
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
    }
}
