//! HTTPS for the API: the certificate chain and key named by `[server] tls_cert` and `tls_key`,
//! served with rustls, and read again whenever either file changes, so that a renewed
//! certificate is served without a restart (and a broken renewal leaves the old one serving).
//!
//! Why built in: beyond loopback the API requires a bearer token, and over plain HTTP that token
//! (and every task's data) crosses the network readable by anyone on the path.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::file_stamp::{FileStamp, file_stamp};
use crate::service::Metrics;

pub mod validity;

/// How long a client has to finish its TLS handshake before its connection is closed: a client
/// that connects and sends nothing holds no more than this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the certificate's files are checked for a change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Why the certificate and key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS's explanation.
        source: std::io::Error,
    },
    /// A file is not PEM, or holds no object of the kind expected.
    #[error("{}: {problem}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The key and the certificate do not go together, or the key cannot be used.
    #[error("the key in {} does not fit the certificate in {}: {problem}", key.display(), cert.display())]
    Unusable {
        /// The certificate's file.
        cert: PathBuf,
        /// The key's file.
        key: PathBuf,
        /// rustls's explanation.
        problem: String,
    },
    /// The certificate is not valid now: expired, or not valid yet.
    #[error("the certificate in {} is not valid now: {problem}", path.display())]
    NotValidNow {
        /// The certificate's file.
        path: PathBuf,
        /// Since or until when.
        problem: String,
    },
    /// rustls refused the settings (not expected with its own defaults).
    #[error("cannot set up TLS: {0}")]
    Setup(rustls::Error),
}

/// The HTTPS side of the API: the certificate it serves and the files it comes from. Cloning
/// shares the certificate, so a reload reaches every listener made from it.
#[derive(Clone)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    serving: Arc<ServingCertificate>,
    acceptor: TlsAcceptor,
    provider: Arc<CryptoProvider>,
}

impl Tls {
    /// Loads the certificate chain (PEM, the server's own certificate first) and its private key
    /// (PEM: PKCS#8, PKCS#1 or SEC1), checking that the key belongs to the certificate.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certified = read_pair(cert, key, &provider)?;
        let serving = Arc::new(ServingCertificate {
            current: RwLock::new(Arc::new(certified)),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(serving.clone());
        // HTTP/2 for a client that offers it, else HTTP/1.1 (the connection's first bytes tell the
        // server which: `connections`).
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            serving,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            provider,
        })
    }

    /// The same certificate (reloads included), offering only `http/1.1` by ALPN, for a server
    /// with HTTP/2 off.
    pub fn http1_only(&self) -> Tls {
        let mut config = rustls::ServerConfig::clone(self.acceptor.config());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            ..self.clone()
        }
    }

    /// The key's file.
    pub fn key_file(&self) -> &Path {
        &self.key
    }

    /// Whether the key file may be read by users other than its owner (a private key should
    /// not: `chmod 600`). `whenever serve` warns at start, as ssh does for its keys.
    pub fn key_readable_by_others(&self) -> bool {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(&self.key).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }

    /// When the certificate serving now stops being valid (its `notAfter`), if it can be read.
    pub fn not_after(&self) -> Option<DateTime<Utc>> {
        let current = self.serving.current.read().unwrap_or_else(|p| p.into_inner()).clone();
        let leaf = current.end_entity_cert().ok()?;
        validity::validity(leaf).map(|(_, not_after)| not_after)
    }

    /// A listener that hands axum connections once their handshake succeeds; handshakes run
    /// side by side, so a slow client does not hold up the others. Failed handshakes are counted
    /// in `metrics`.
    pub fn listener(&self, tcp: TcpListener, metrics: Metrics) -> TlsListener {
        TlsListener {
            tcp,
            acceptor: self.acceptor.clone(),
            handshakes: JoinSet::new(),
            metrics,
        }
    }

    /// Checks the two files every `interval` and, when either changed, serves the pair they now
    /// hold. A pair that does not load (a renewal half written, a key that does not fit, a
    /// certificate not valid now) is reported on stderr and the certificate serving stays; it is
    /// tried again at the next change. The date the serving one expires is kept in `metrics`.
    /// Runs until dropped.
    pub async fn reload_on_change(self, interval: Duration, metrics: Metrics) {
        metrics.tls_certificate_expires(self.not_after());
        let mut seen = self.stamps();
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let now = self.stamps();
            if now == seen {
                continue;
            }
            seen = now;
            let (cert, key) = (self.cert.clone(), self.key.clone());
            let provider = self.provider.clone();
            let loaded = tokio::task::spawn_blocking(move || read_pair(&cert, &key, &provider)).await;
            match loaded {
                Ok(Ok(certified)) => {
                    self.serving.replace(certified);
                    metrics.tls_certificate_expires(self.not_after());
                    eprintln!(
                        "whenever serve: serving the renewed certificate from {}",
                        self.cert.display()
                    );
                }
                Ok(Err(e)) => eprintln!("whenever serve: the certificate was not renewed: {e}; the one serving stays"),
                Err(e) => eprintln!("whenever serve: the certificate was not renewed: {e}"),
            }
        }
    }

    /// What tells a change of the files: each one's stamp.
    fn stamps(&self) -> [Option<FileStamp>; 2] {
        [&self.cert, &self.key].map(|path| file_stamp(path))
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Reads and checks a certificate chain and its key.
fn read_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let pem_error = |path: &Path, problem: String| TlsError::Pem {
        path: path.to_path_buf(),
        problem,
    };
    let chain = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, format!("not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(pem_error(cert, "holds no PEM certificate (BEGIN CERTIFICATE)".into()));
    }
    let private = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| {
        pem_error(
            key,
            format!("holds no PEM private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY): {e}"),
        )
    })?;
    if let Some((not_before, not_after)) = validity::validity(&chain[0]) {
        let now = Utc::now();
        let problem = if now > not_after {
            Some(format!("it expired on {}", not_after.to_rfc3339()))
        } else if now < not_before {
            Some(format!("it is valid only from {}", not_before.to_rfc3339()))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(TlsError::NotValidNow {
                path: cert.to_path_buf(),
                problem,
            });
        }
    }
    CertifiedKey::from_der(chain, private, provider).map_err(|e| TlsError::Unusable {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        problem: e.to_string(),
    })
}

/// The certificate every handshake presents, swapped whole on a reload.
#[derive(Debug)]
struct ServingCertificate {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServingCertificate {
    fn replace(&self, certified: CertifiedKey) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certified);
    }
}

impl ResolvesServerCert for ServingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// The API's listener over HTTPS (see [`Tls::listener`]).
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
    metrics: Metrics,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                (tcp, from) = axum::serve::Listener::accept(&mut self.tcp) => {
                    // TLS writes a record per flush: without this, a small answer can wait for
                    // the client's delayed ACK.
                    let _ = tcp.set_nodelay(true);
                    let acceptor = self.acceptor.clone();
                    self.handshakes.spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => Some((stream, from)),
                            _ => None,
                        }
                    });
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    match done {
                        Ok(Some(connection)) => return connection,
                        _ => self.metrics.tls_handshake_failed(),
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
