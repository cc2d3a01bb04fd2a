//! A small HTTP client for a node's RPC, with one-line errors.
//!
//! Every failure is an [`anyhow::Error`] whose alternate rendering (`{:#}`) fits on one line.
//! Two classes are kept apart so `main` can choose the exit code:
//! - transport failures (node unreachable, timed out, an answer that is not the expected JSON):
//!   plain errors, exit code 1;
//! - the node answered with an HTTP error status: a [`NodeAnswered`] somewhere in the chain,
//!   exit code 3.

use anyhow::{Context as _, anyhow};
use reqwest::{StatusCode, Url};
use serde::{Serialize, de::DeserializeOwned};
use std::{error::Error as StdError, fmt, io, time::Duration};

/// The node answered a request with an HTTP error status (4xx/5xx).
#[derive(Debug)]
pub struct NodeAnswered {
    /// The URL that was requested.
    pub url: String,
    /// The HTTP status the node returned.
    pub status: StatusCode,
    /// The node's message: the `error`/`message` field of a JSON body, else the body's first line.
    pub message: String,
}

impl fmt::Display for NodeAnswered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node answered {} for {}", self.status, self.url)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl StdError for NodeAnswered {}

/// A client for one node's RPC endpoint.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    timeout: Duration,
}

impl Client {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:26700`); each request gives up
    /// after `timeout`.
    pub fn new(base: Url, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(64)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client {
            http,
            base,
            timeout,
        })
    }

    /// The URL of `segments` below the base; each segment is percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `GET` the path and decode a 2xx JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> anyhow::Result<T> {
        let url = self.url(segments);
        let response = self.http.get(url.clone()).send().await;
        self.decode(url, response, &[]).await.map(|(_, v)| v)
    }

    /// `GET` the path and decode the JSON answer when its status is 2xx or one of `also_ok`;
    /// returns the status with the value.
    pub async fn get_with_status<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        also_ok: &[StatusCode],
    ) -> anyhow::Result<(StatusCode, T)> {
        let url = self.url(segments);
        let response = self.http.get(url.clone()).send().await;
        self.decode(url, response, also_ok).await
    }

    /// `POST` `body` as JSON to the path and decode a 2xx JSON answer.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> anyhow::Result<T> {
        let url = self.url(segments);
        let response = self.http.post(url.clone()).json(body).send().await;
        self.decode(url, response, &[]).await.map(|(_, v)| v)
    }

    /// `GET` a long-lived stream (server-sent events): the 2xx response, its body still
    /// unread. The client's request timeout covers only the response headers; the body may
    /// last as long as the caller reads it.
    pub async fn stream(&self, segments: &[&str]) -> anyhow::Result<reqwest::Response> {
        let url = self.url(segments);
        let response = tokio::time::timeout(self.timeout, async {
            self.http
                .get(url.clone())
                .timeout(Duration::from_secs(365 * 24 * 3600))
                .send()
                .await
        })
        .await
        .map_err(|_| {
            anyhow!(
                "node at {} did not answer within {:?}",
                self.base.as_str().trim_end_matches('/'),
                self.timeout
            )
        })?
        .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Err(NodeAnswered {
                url: url.to_string(),
                status,
                message: error_message(&body),
            }
            .into());
        }
        Ok(response)
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        url: Url,
        response: reqwest::Result<reqwest::Response>,
        also_ok: &[StatusCode],
    ) -> anyhow::Result<(StatusCode, T)> {
        let response = response.map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        if !status.is_success() && !also_ok.contains(&status) {
            return Err(NodeAnswered {
                url: url.to_string(),
                status,
                message: error_message(&body),
            }
            .into());
        }
        let value = serde_json::from_slice(&body).map_err(|e| {
            anyhow!(
                "unexpected answer from {url} ({status}): {e}; body starts {:?}",
                preview(&body)
            )
        })?;
        Ok((status, value))
    }

    /// A one-line description of a failed request.
    fn transport_error(&self, e: &reqwest::Error) -> anyhow::Error {
        let base = self.base.as_str().trim_end_matches('/');
        if e.is_timeout() {
            anyhow!("node at {base} did not answer within {:?}", self.timeout)
        } else if e.is_connect() {
            anyhow!("node unreachable at {base}: {}", root_cause(e))
        } else {
            anyhow!("request to {base} failed: {}", root_cause(e))
        }
    }
}

/// The innermost cause of `e`, phrased briefly (`connection refused` rather than
/// `Connection refused (os error 111)`).
fn root_cause(e: &(dyn StdError + 'static)) -> String {
    let mut current: &(dyn StdError + 'static) = e;
    loop {
        if let Some(io) = current.downcast_ref::<io::Error>() {
            let brief = match io.kind() {
                io::ErrorKind::ConnectionRefused => Some("connection refused"),
                io::ErrorKind::ConnectionReset => Some("connection reset"),
                io::ErrorKind::TimedOut => Some("timed out"),
                io::ErrorKind::AddrNotAvailable => Some("address not available"),
                io::ErrorKind::HostUnreachable => Some("host unreachable"),
                io::ErrorKind::NetworkUnreachable => Some("network unreachable"),
                _ => None,
            };
            if let Some(brief) = brief {
                return brief.to_string();
            }
        }
        match current.source() {
            Some(next) => current = next,
            None => return one_line(&current.to_string()),
        }
    }
}

/// The node's error message from an error body: the `error` or `message` field of a JSON
/// object, else the first line of the text.
fn error_message(body: &[u8]) -> String {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(body) {
        for field in ["error", "message", "health"] {
            match map.get(field) {
                Some(serde_json::Value::String(s)) => return one_line(s),
                Some(v) if !v.is_null() => return one_line(&v.to_string()),
                _ => {}
            }
        }
        return one_line(&serde_json::Value::Object(map).to_string());
    }
    preview(body)
}

/// The first line of `body`, at most 200 characters.
fn preview(body: &[u8]) -> String {
    one_line(&String::from_utf8_lossy(body))
}

/// `s` cut to its first non-empty line and at most 200 characters, so errors stay on one line.
pub fn one_line(s: &str) -> String {
    let line = s
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut out: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_segments_are_encoded_and_joined() {
        let c = Client::new(
            Url::parse("http://127.0.0.1:1/").unwrap(),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            c.url(&["kv", "a/b c?"]).as_str(),
            "http://127.0.0.1:1/kv/a%2Fb%20c%3F"
        );
        let c = Client::new(
            Url::parse("http://h:2/prefix").unwrap(),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(c.url(&["status"]).as_str(), "http://h:2/prefix/status");
    }

    #[test]
    fn error_messages_fit_one_line() {
        assert_eq!(
            error_message(br#"{"error":"mempool full"}"#),
            "mempool full"
        );
        assert_eq!(error_message(br#"{"health":"partitioned"}"#), "partitioned");
        assert_eq!(error_message(b"\n  not found\nmore"), "not found");
        let long = "x".repeat(500);
        assert_eq!(one_line(&long).chars().count(), 201);
    }
}
