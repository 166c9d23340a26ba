//! What the HTTP connectors share: one client per registry (rustls, no redirects), the attempt
//! and retry loop, and turning transport failures into connector errors the step can act on.
//!
//! Retried (with the same request, hence the same idempotency key): failures to connect or to
//! get an answer other than a timeout, `5xx` and `429` answers. The delay before retry *n*
//! (from 0) is `backoff · 2ⁿ`, or the answer's `Retry-After` seconds when longer (at most
//! [`MAX_RETRY_AFTER`]). Not retried: timeouts (error kind `timeout`: the step decides), and
//! every other answer, which the connector maps itself. When retries run out a `5xx`, `429` or
//! connection failure is error kind `unavailable`.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Certificate, Client, Identity, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::config::CallOptions;
use crate::secret::{Secret, redact};
use crate::tls_files::{self, Following, TlsFiles, refused_certificate};
use crate::{ConfigError, ConnectorError};

/// The largest answer body a connector reads; a longer one fails the call.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// The longest `Retry-After` honoured between two attempts.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The longest computed backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How much of a non-JSON answer goes into an error message.
const MAX_MESSAGE_CHARS: usize = 300;

/// The HTTP clients the connectors of one registry share: one for the connectors that trust the
/// bundled web PKI roots alone and show no certificate, and one per other [`TlsFiles`] (built
/// on first use; clones share them). A client keeps its connections alive, so connectors that
/// share one share its connections too.
#[derive(Clone, Default)]
pub struct HttpClient(Arc<Mutex<HashMap<TlsFiles, TlsClient>>>);

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpClient")
    }
}

impl HttpClient {
    /// The client for `connector` (see [`build`]). A file that cannot be read or does not hold
    /// what it should is an error naming the connector, the setting and the file.
    pub(crate) fn get(&self, connector: &str, tls: &TlsFiles) -> Result<TlsClient, ConfigError> {
        let mut clients = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = clients.get(tls) {
            return Ok(c.clone());
        }
        let client = if tls.is_empty() {
            TlsClient::Fixed(build(connector, tls)?)
        } else {
            let owner = connector.to_string();
            let following = Following::new(connector, tls.clone(), move |files: &TlsFiles| build(&owner, files))?;
            TlsClient::Following(Arc::new(following))
        };
        clients.insert(tls.clone(), client.clone());
        Ok(client)
    }
}

/// A connector's HTTP client. One built from TLS files follows them
/// ([`crate::tls_files`]): a renewed file is used from the first call a second after it was
/// written, through new connections.
#[derive(Clone)]
pub(crate) enum TlsClient {
    /// The bundled web PKI roots alone: nothing to follow.
    Fixed(Client),
    /// Built from files, and rebuilt when they change.
    Following(Arc<Following<Client>>),
}

impl TlsClient {
    /// A `POST` to `url` through the client the files now call for.
    pub(crate) fn post(&self, url: &str) -> RequestBuilder {
        match self {
            TlsClient::Fixed(client) => client.post(url),
            TlsClient::Following(following) => following.current().post(url),
        }
    }
}

/// A client with rustls and the bundled web PKI roots, plus what `tls` names; HTTP/2 where the
/// service offers it by ALPN, else HTTP/1.1; no redirects followed (an API does not redirect,
/// and a redirect must not carry credentials elsewhere).
fn build(connector: &str, tls: &TlsFiles) -> Result<Client, ConfigError> {
    let mut builder = Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("whenever/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &tls.ca_file {
        for certificate in private_roots(connector, path)? {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if let Some((cert, key)) = &tls.client {
        builder = builder.identity(client_identity(connector, cert, key)?);
    }
    builder
        .build()
        .map_err(|e| ConfigError::new(connector, format!("cannot set up the HTTP client: {e}")))
}

/// The CA certificates in the PEM file at `path`, for `connector`'s `ca_file`.
fn private_roots(connector: &str, path: &Path) -> Result<Vec<Certificate>, ConfigError> {
    let pem = crate::config::read_setting_file(connector, "ca_file", path)?;
    let certificates = Certificate::from_pem_bundle(&pem).map_err(|e| tls_files::not_a_ca(connector, path, e))?;
    if certificates.is_empty() {
        return Err(tls_files::not_a_ca(
            connector,
            path,
            "it holds no `BEGIN CERTIFICATE` block",
        ));
    }
    Ok(certificates)
}

/// `connector`'s own certificate chain and key, from the PEM files `client_cert` and
/// `client_key`.
fn client_identity(connector: &str, cert: &Path, key: &Path) -> Result<Identity, ConfigError> {
    let (mut pem, key_pem) = tls_files::read_client_pair(connector, cert, key)?;
    pem.push(b'\n');
    pem.extend(key_pem);
    Identity::from_pem(&pem)
        .map_err(|e| tls_files::not_a_client_pair(connector, cert, key, crate::error::with_causes(&e)))
}

/// One answer: status, headers and (at most [`MAX_BODY_BYTES`] of) body.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// The body as JSON, if it is JSON.
    pub(crate) fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The start of the body as text, trimmed.
    pub(crate) fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text = text.trim();
        match text.char_indices().nth(MAX_MESSAGE_CHARS) {
            Some((i, _)) => format!("{}…", &text[..i]),
            None => text.to_string(),
        }
    }

    /// The service's own error message, from the usual JSON shapes (`error.message`,
    /// `error` as a string, `message`, `error_description`, `detail`), else the body's text.
    pub(crate) fn message(&self) -> String {
        if let Some(v) = self.json() {
            let candidates = [
                v.pointer("/error/message"),
                v.get("error").filter(|e| e.is_string()),
                v.get("message"),
                v.get("error_description"),
                v.get("detail"),
            ];
            if let Some(m) = candidates.into_iter().flatten().find_map(Value::as_str) {
                return m.to_string();
            }
        }
        self.text()
    }
}

/// Who is calling and how: used to label and scrub messages and to pace retries.
pub(crate) struct Caller<'a> {
    /// The connector's name, as messages show it.
    pub(crate) connector: &'a str,
    /// Timeout, retries and backoff.
    pub(crate) options: &'a CallOptions,
    /// Secrets to scrub from every message.
    pub(crate) secrets: Vec<&'a Secret>,
}

impl Caller<'_> {
    /// `text` without any of this caller's secrets.
    pub(crate) fn redact(&self, text: &str) -> String {
        redact(text, &self.secrets)
    }

    /// A `failed` error with the service's (scrubbed) message.
    pub(crate) fn failed(&self, message: &str) -> ConnectorError {
        ConnectorError::failed(self.redact(message))
    }

    /// An `invalid-args` error with the service's (scrubbed) message.
    pub(crate) fn invalid(&self, message: &str) -> ConnectorError {
        ConnectorError::invalid_args(self.redact(message))
    }

    /// Sends the request `make` builds, retrying transient failures (see the module docs);
    /// any answer that is not `5xx` or `429` is returned for the connector to map.
    pub(crate) async fn send(&self, make: impl Fn() -> RequestBuilder) -> Result<Reply, ConnectorError> {
        let mut attempt: u32 = 0;
        loop {
            let (error, retry_after) = match self.attempt(make()).await? {
                Ok(reply) if is_transient(reply.status) => {
                    let detail = reply.message();
                    let error = ConnectorError::unavailable(self.redact(&format!(
                        "{}: the service answered {}{}",
                        self.connector,
                        reply.status,
                        if detail.is_empty() {
                            String::new()
                        } else {
                            format!(": {detail}")
                        }
                    )));
                    (error, retry_after(&reply.headers))
                }
                Ok(reply) => return Ok(reply),
                Err(error) => (error, None),
            };
            if attempt >= self.options.retries {
                return Err(error);
            }
            let delay = backoff(self.options.backoff, attempt).max(retry_after.unwrap_or_default());
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One attempt. The outer error ends the call at once (a timeout, an oversized answer);
    /// the inner one may be retried (cannot connect, connection lost).
    async fn attempt(&self, request: RequestBuilder) -> Result<Result<Reply, ConnectorError>, ConnectorError> {
        let timeout_ms = self.options.timeout.as_millis();
        let timed_out = || ConnectorError::timeout(format!("{}: no answer within {timeout_ms} ms", self.connector));
        let mut response = match request.timeout(self.options.timeout).send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Err(timed_out()),
            Err(e) if let Some(refused) = refused_certificate(&e) => {
                return Err(ConnectorError::failed(self.redact(&format!(
                    "{}: {}: {}",
                    self.connector,
                    refused.explain(),
                    describe(e)
                ))));
            }
            Err(e) => {
                return Ok(Err(ConnectorError::unavailable(self.redact(&format!(
                    "{}: cannot reach the service: {}",
                    self.connector,
                    describe(e)
                )))));
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(ConnectorError::failed(format!(
                            "{}: the answer is larger than {} MiB",
                            self.connector,
                            MAX_BODY_BYTES >> 20
                        )));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(timed_out()),
                Err(e) => {
                    return Ok(Err(ConnectorError::unavailable(self.redact(&format!(
                        "{}: the answer was cut off: {}",
                        self.connector,
                        describe(e)
                    )))));
                }
            }
        }
        Ok(Ok(Reply { status, headers, body }))
    }
}

/// Whether an answer with this status is worth retrying.
fn is_transient(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// The delay before retry `attempt` (from 0): `base · 2^attempt`, at most [`MAX_BACKOFF`].
pub(crate) fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF)
}

/// A `Retry-After` in seconds, at most [`MAX_RETRY_AFTER`] (HTTP dates are ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// A transport error and its causes, without the URL (which may hold a secret, such as an
/// incoming-webhook URL).
fn describe(e: reqwest::Error) -> String {
    crate::error::with_causes(&e.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Duration::from_millis(200);
        assert_eq!(backoff(b, 0), Duration::from_millis(200));
        assert_eq!(backoff(b, 1), Duration::from_millis(400));
        assert_eq!(backoff(b, 3), Duration::from_millis(1600));
        assert_eq!(backoff(b, 40), MAX_BACKOFF);
        assert_eq!(backoff(Duration::ZERO, 5), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_seconds_and_capped() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, reqwest::header::HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(RETRY_AFTER, reqwest::header::HeaderValue::from_static("3600"));
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(
            RETRY_AFTER,
            reqwest::header::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn reply_message_finds_the_usual_shapes() {
        let reply = |body: &str| Reply {
            status: StatusCode::BAD_REQUEST,
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(reply(r#"{"error":{"message":"a"}}"#).message(), "a");
        assert_eq!(reply(r#"{"error":"b"}"#).message(), "b");
        assert_eq!(reply(r#"{"message":"c"}"#).message(), "c");
        assert_eq!(reply(r#"{"error":"x","error_description":"d"}"#).message(), "x");
        assert_eq!(reply("  plain text \n").message(), "plain text");
        let long = "x".repeat(1000);
        assert_eq!(reply(&long).message().chars().count(), MAX_MESSAGE_CHARS + 1);
    }
}
