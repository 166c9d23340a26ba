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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Certificate, Client, Identity, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::config::CallOptions;
use crate::secret::{Secret, redact};
use crate::{ConfigError, ConnectorError};

/// The largest answer body a connector reads; a longer one fails the call.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// The longest `Retry-After` honoured between two attempts.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// The longest computed backoff between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How much of a non-JSON answer goes into an error message.
const MAX_MESSAGE_CHARS: usize = 300;

/// How often a connector's TLS files are looked at for a change: at the first call after this
/// long since they last were.
pub const TLS_FILES_CHECK: Duration = Duration::from_secs(1);

/// What, besides the bundled web PKI roots, a connector's TLS uses: a private CA to trust
/// (`ca_file`), and a certificate of its own for services that ask for one (mutual TLS:
/// `client_cert` and `client_key`). Connectors with the same settings share a client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct TlsFiles {
    /// PEM: one or more CA certificates.
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM: the connector's certificate chain and its private key.
    pub(crate) client: Option<(PathBuf, PathBuf)>,
}

impl TlsFiles {
    /// The files, in a fixed order.
    fn paths(&self) -> impl Iterator<Item = &Path> {
        let client = self
            .client
            .iter()
            .flat_map(|(cert, key)| [cert.as_path(), key.as_path()]);
        self.ca_file.as_deref().into_iter().chain(client)
    }

    /// What tells a change of the files: each one's modification time and length (`None` while
    /// it cannot be read).
    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        self.paths()
            .map(|path| {
                std::fs::metadata(path)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }
}

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
        let client = if *tls == TlsFiles::default() {
            TlsClient::Fixed(build(connector, tls)?)
        } else {
            let stamps = tls.stamps();
            TlsClient::Watched(Arc::new(Mutex::new(Watched {
                connector: connector.to_string(),
                client: build(connector, tls)?,
                files: tls.clone(),
                stamps,
                checked: Instant::now(),
            })))
        };
        clients.insert(tls.clone(), client.clone());
        Ok(client)
    }
}

/// A connector's HTTP client. One built from TLS files follows them: a renewed client
/// certificate or CA bundle is used from the first call at most [`TLS_FILES_CHECK`] after it
/// was written, without a restart, as the server's own certificate is. Files that do not load
/// (a renewal half written, a key that does not fit) are reported on stderr and the client
/// built from the files before stays; they are tried again at their next change.
#[derive(Clone)]
pub(crate) enum TlsClient {
    /// The bundled web PKI roots alone: nothing to follow.
    Fixed(Client),
    /// Built from files, and rebuilt when they change.
    Watched(Arc<Mutex<Watched>>),
}

/// A client built from TLS files, and what tells when to build it again.
pub(crate) struct Watched {
    /// The connector that first asked for it, as messages name it.
    connector: String,
    client: Client,
    files: TlsFiles,
    /// The files' stamps when they were last read.
    stamps: Vec<Option<(SystemTime, u64)>>,
    /// When the stamps were last compared.
    checked: Instant,
}

impl TlsClient {
    /// A `POST` to `url` through the client the files now call for.
    pub(crate) fn post(&self, url: &str) -> RequestBuilder {
        self.current().post(url)
    }

    /// The client to send with now: for a watched one, rebuilt first if its files changed.
    fn current(&self) -> Client {
        match self {
            TlsClient::Fixed(client) => client.clone(),
            TlsClient::Watched(watched) => watched.lock().unwrap_or_else(PoisonError::into_inner).current(),
        }
    }
}

impl Watched {
    fn current(&mut self) -> Client {
        if self.checked.elapsed() >= TLS_FILES_CHECK {
            self.checked = Instant::now();
            let stamps = self.files.stamps();
            if stamps != self.stamps {
                self.stamps = stamps;
                let files = self
                    .files
                    .paths()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                match build(&self.connector, &self.files) {
                    Ok(client) => {
                        self.client = client;
                        eprintln!(
                            "whenever: connector `{}`: TLS files read again ({files})",
                            self.connector
                        );
                    }
                    Err(e) => eprintln!("whenever: {e}; the TLS files loaded before stay in use"),
                }
            }
        }
        self.client.clone()
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
    let not_pem = |detail: String| {
        ConfigError::new(
            connector,
            format!("`ca_file` {} is not a PEM certificate: {detail}", path.display()),
        )
    };
    let certificates = Certificate::from_pem_bundle(&pem).map_err(|e| not_pem(e.to_string()))?;
    if certificates.is_empty() {
        return Err(not_pem("it holds no `BEGIN CERTIFICATE` block".into()));
    }
    Ok(certificates)
}

/// `connector`'s own certificate chain and key, from the PEM files `client_cert` and
/// `client_key`.
fn client_identity(connector: &str, cert: &Path, key: &Path) -> Result<Identity, ConfigError> {
    let mut pem = crate::config::read_setting_file(connector, "client_cert", cert)?;
    pem.push(b'\n');
    pem.extend(crate::config::read_setting_file(connector, "client_key", key)?);
    Identity::from_pem(&pem).map_err(|e| {
        ConfigError::new(
            connector,
            format!(
                "`client_cert` {} and `client_key` {} are not a PEM certificate and its private key: {}",
                cert.display(),
                key.display(),
                crate::error::with_causes(&e)
            ),
        )
    })
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

/// Which certificate TLS refused, when a connection failed over one: not transient, so not
/// retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RefusedCertificate {
    /// The service's: unknown issuer, expired, for another name, ...
    Service,
    /// The connector's own, or none where the service asks for one (mutual TLS): the service
    /// said so with an alert.
    Connector,
}

impl RefusedCertificate {
    /// What a step and an operator need to know, and where to fix it.
    fn explain(self) -> &'static str {
        match self {
            RefusedCertificate::Service => {
                "the service's TLS certificate is not trusted (a private CA goes in the connector's `ca_file`)"
            }
            RefusedCertificate::Connector => {
                "the service refused the connector's TLS client certificate, or asked for one it was not \
                 given (`client_cert` and `client_key`)"
            }
        }
    }
}

/// The alerts by which a service refuses the connector's client certificate, or says it wants
/// one. `DecryptError` is what it says when a signature does not verify: a certificate issued
/// under a CA's name but not by the key the service trusts (a private CA whose key was renewed
/// under the same name, say), or a key that does not sign for the certificate.
const CLIENT_CERTIFICATE_ALERTS: [rustls::AlertDescription; 8] = [
    rustls::AlertDescription::CertificateRequired,
    rustls::AlertDescription::BadCertificate,
    rustls::AlertDescription::UnsupportedCertificate,
    rustls::AlertDescription::CertificateRevoked,
    rustls::AlertDescription::CertificateExpired,
    rustls::AlertDescription::CertificateUnknown,
    rustls::AlertDescription::UnknownCA,
    rustls::AlertDescription::DecryptError,
];

/// Which certificate, if any, made TLS refuse the connection `error` reports.
fn refused_certificate(error: &reqwest::Error) -> Option<RefusedCertificate> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        match e.downcast_ref::<rustls::Error>() {
            Some(rustls::Error::InvalidCertificate(_)) => return Some(RefusedCertificate::Service),
            Some(rustls::Error::AlertReceived(alert)) if CLIENT_CERTIFICATE_ALERTS.contains(alert) => {
                return Some(RefusedCertificate::Connector);
            }
            Some(_) => {}
            // An alert that comes after the handshake (TLS 1.3 checks the client's certificate
            // then) reaches hyper as rustls's message alone, so it is known by rustls's wording.
            None => {
                let said = e.to_string();
                let alert = |alert: &rustls::AlertDescription| said == rustls::Error::AlertReceived(*alert).to_string();
                if CLIENT_CERTIFICATE_ALERTS.iter().any(alert) {
                    return Some(RefusedCertificate::Connector);
                }
            }
        }
        // rustls's error reaches hyper inside `io::Error`s (one in another), whose `source()`
        // skips what they hold.
        cause = match e.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            Some(inner) => Some(inner),
            None => e.source(),
        };
    }
    None
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
