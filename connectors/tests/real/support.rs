//! Shared by the real-connector tests: local servers on 127.0.0.1:0 that record every request,
//! registries built from TOML the way the host builds them, and call helpers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Version};
use axum::middleware::{self, Next};
use axum::response::Response;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use whenever_connectors::{CallContext, ConfigError, ConnectorError, ConnectorsConfig, Env, Registry};

/// One request a local server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub version: Version,
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// A header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    /// The body as form pairs, in order.
    pub fn form(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_bytes(&self.body).expect("a form body")
    }

    /// One form field's value.
    pub fn form_value(&self, key: &str) -> Option<String> {
        self.form().into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// Every request a server received, shared with its handlers.
#[derive(Debug, Clone, Default)]
pub struct Log(Arc<Mutex<Vec<Seen>>>);

impl Log {
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// The requests to `path`.
    pub fn to(&self, path: &str) -> Vec<Seen> {
        self.all().into_iter().filter(|s| s.path == path).collect()
    }

    fn push(&self, seen: Seen) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push(seen);
    }
}

async fn record(State(log): State<Log>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    log.push(Seen {
        version: parts.version,
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        headers: parts.headers.clone(),
        body: bytes.clone(),
    });
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// `router` recording every request in a new log, and a listener on 127.0.0.1 (a free port) to
/// serve it on.
async fn recorded_on_a_free_port(router: Router) -> (Router, Log, tokio::net::TcpListener, std::net::SocketAddr) {
    let log = Log::default();
    let router = router.layer(middleware::from_fn_with_state(log.clone(), record));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    (router, log, listener, addr)
}

/// Serves `router` on 127.0.0.1 (a free port), recording every request in the returned log;
/// answers `http://127.0.0.1:PORT`.
pub async fn serve(router: Router) -> (String, Log) {
    let (router, log, listener, addr) = recorded_on_a_free_port(router).await;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://{addr}"), log)
}

/// A private CA: what issues the test's certificates, and its own certificate.
struct PrivateCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    certificate: rcgen::Certificate,
}

impl PrivateCa {
    fn new() -> PrivateCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let certificate = params.self_signed(&key).expect("CA certificate");
        PrivateCa {
            issuer: Issuer::new(params, key),
            certificate,
        }
    }

    /// A certificate it issues for `names`, and its key.
    fn issue(&self, names: &[&str]) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &self.issuer)
            .expect("certificate");
        (cert, key)
    }

    /// A server set-up with a certificate it issued for `localhost` and `127.0.0.1`, asking
    /// every client for one of its certificates when `clients` says so.
    fn server(&self, clients: bool) -> ServerConfig {
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let (cert, key) = self.issue(&["localhost", "127.0.0.1"]);
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if clients {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from(self.certificate.der().to_vec()))
                .expect("the CA as a root");
            let verifier =
                tokio_rustls::rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        builder
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server TLS config")
    }
}

/// A private CA and a TLS set-up with a certificate it issued for `localhost` and `127.0.0.1`:
/// the server's side, and the CA's PEM for the client's `ca_file`.
pub fn private_ca() -> (ServerConfig, String) {
    let ca = PrivateCa::new();
    (ca.server(false), ca.certificate.pem())
}

/// Mutual TLS: a server set-up (as [`private_ca`]'s) that asks every client for a certificate
/// from the same private CA, the CA's PEM, and a client certificate it issued with its key
/// (PEM).
pub fn mutual_tls() -> (ServerConfig, String, String, String) {
    let ca = PrivateCa::new();
    let (client, key) = ca.issue(&["whenever-connector"]);
    (ca.server(true), ca.certificate.pem(), client.pem(), key.serialize_pem())
}

/// A local HTTPS server: its base URL, the requests it answered, and how many connections it
/// accepted (TLS handshakes tried, refused ones included).
pub struct TlsServer {
    pub url: String,
    pub log: Log,
    pub connections: Arc<AtomicUsize>,
}

/// Serves `router` over TLS with `config` on 127.0.0.1 (a free port), offering HTTP/2 and
/// HTTP/1.1 by ALPN and speaking the one the client chose, recording every request.
pub async fn serve_tls(router: Router, mut config: ServerConfig) -> TlsServer {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (router, log, listener, addr) = recorded_on_a_free_port(router).await;
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                let (io, service) = (TokioIo::new(tls), TowerToHyperService::new(router));
                let _ = if h2 {
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await
                } else {
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                };
            });
        }
    });
    TlsServer {
        url: format!("https://{addr}"),
        log,
        connections,
    }
}

/// A local address nothing listens on.
pub async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    format!("http://{addr}")
}

/// Parses `[connectors.*]` sections the way the host parses its config file.
pub fn parse(toml_text: &str) -> ConnectorsConfig {
    #[derive(serde::Deserialize)]
    struct File {
        connectors: ConnectorsConfig,
    }
    let file: File = toml::from_str(toml_text).expect("valid config TOML");
    file.connectors
}

/// The registry a config file and these environment variables give.
pub fn try_registry(toml_text: &str, env: &[(&str, &str)]) -> Result<Registry, ConfigError> {
    Registry::from_config_with_env(&parse(toml_text), Path::new(""), Env::from_vars(env.iter().copied()))
}

/// Like [`try_registry`], for configs that must build.
pub fn registry(toml_text: &str, env: &[(&str, &str)]) -> Registry {
    match try_registry(toml_text, env) {
        Ok(r) => r,
        Err(e) => panic!("config does not build: {e}"),
    }
}

/// Calls as task `task-1`, step `step`, with this idempotency key.
pub async fn call(
    reg: &Registry,
    connector: &str,
    method: &str,
    args: Value,
    key: &str,
) -> Result<Value, ConnectorError> {
    reg.call(connector, method, &args, &CallContext::new("task-1", "step", key))
        .await
}

/// How long a test server's slow answer takes (well above the timeouts tests configure).
pub const SLOW: Duration = Duration::from_secs(3);

/// Asserts none of `secrets` appears in `text`.
pub fn assert_no_secret(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!text.contains(s), "a secret leaked into: {text}");
    }
}

/// A file of the test's own in the temporary folder, removed when dropped.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("whenever-tls-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write a temporary file");
        TempFile(path)
    }

    /// Writes `text` over the file, as a renewal does.
    pub fn renew(&self, text: &str) {
        std::fs::write(&self.0, text).expect("rewrite a temporary file");
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The `client_cert` and `client_key` settings naming `cert` and `key`, a line each.
pub fn client_pair_settings(cert: &TempFile, key: &TempFile) -> String {
    format!(
        "client_cert = {:?}\nclient_key = {:?}\n",
        cert.0.display().to_string(),
        key.0.display().to_string()
    )
}

/// Waits until a connector looks at its TLS files again at its next call.
pub async fn until_tls_files_are_checked() {
    tokio::time::sleep(whenever_connectors::tls_files::TLS_FILES_CHECK + Duration::from_millis(100)).await;
}
