//! TLS for the PostgreSQL store's connections, as libpq reads a URL's `sslmode` and `sslrootcert`,
//! so that a URL means what it means to `psql`:
//!
//! - `disable`: no TLS.
//! - `prefer` (the default): TLS when the server offers it, its certificate not checked.
//! - `require`: TLS or no connection; the certificate is not checked, unless `sslrootcert` names
//!   a file, when it is checked as `verify-ca` does (as libpq does when it finds a root file).
//! - `verify-ca`: the certificate must chain to `sslrootcert` (or, without it, to the public
//!   roots); any host name.
//! - `verify-full`: that, and the certificate must name the host connected to.
//!
//! With `sslcert` and `sslkey` (PEM files, both or neither) the connection presents that client
//! certificate, for a server that authenticates clients by certificate (`cert` in pg_hba.conf, or
//! `clientcert=verify-full`). Unlike libpq, nothing is read from `~/.postgresql/` by default.
//!
//! tokio-postgres knows none of `verify-ca`, `verify-full`, `sslrootcert`, `sslcert` and `sslkey`:
//! [`TlsSettings::from_url`] takes them out of the URL before it is parsed. rustls with ring, as
//! the API's HTTPS.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// What a URL's `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No TLS.
    Disable,
    /// TLS when offered, unchecked.
    Prefer,
    /// TLS, unchecked (checked as [`Mode::VerifyCa`] with a root file).
    Require,
    /// TLS, the chain checked.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

/// The TLS a URL asks for: its mode and the root certificates' file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode` (default [`Mode::Prefer`]).
    pub mode: Mode,
    /// `sslrootcert`: the PEM file of the certificates to trust.
    pub root_cert: Option<PathBuf>,
    /// `sslcert`: the PEM file of the client certificate (and its chain) to present.
    pub client_cert: Option<PathBuf>,
    /// `sslkey`: the PEM file of that certificate's private key.
    pub client_key: Option<PathBuf>,
}

/// What connecting to `url` takes: its connection settings (without libpq's TLS parameters,
/// which tokio-postgres does not know) and the TLS they ask for. The one way the store, the
/// scratch schemas and the cluster bench read a URL.
pub fn connection(url: &str) -> Result<(tokio_postgres::Config, PostgresTls), String> {
    let (settings, url_left) = TlsSettings::from_url(url)?;
    let tls = settings.connector()?;
    let config = url_left.parse().map_err(|e: tokio_postgres::Error| e.to_string())?;
    Ok((config, tls))
}

impl TlsSettings {
    /// Takes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of `url`'s query: the settings,
    /// and the URL left for
    /// tokio-postgres, with the `sslmode` it knows in their place (`verify-*` are `require` to it;
    /// the checks are [`TlsSettings::connector`]'s). libpq's `allow` is taken as `prefer`.
    pub fn from_url(url: &str) -> Result<(TlsSettings, String), String> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut settings = TlsSettings {
            mode: Mode::Prefer,
            root_cert: None,
            client_cert: None,
            client_key: None,
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            // Percent-decoded as tokio-postgres decodes the rest (a `+` stays a `+`).
            let decoded = || {
                percent_encoding::percent_decode_str(value)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            match key {
                "sslmode" => {
                    settings.mode = match decoded().as_str() {
                        "disable" => Mode::Disable,
                        "allow" | "prefer" => Mode::Prefer,
                        "require" => Mode::Require,
                        "verify-ca" => Mode::VerifyCa,
                        "verify-full" => Mode::VerifyFull,
                        other => {
                            return Err(format!(
                                "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                            ));
                        }
                    }
                }
                "sslrootcert" => settings.root_cert = Some(PathBuf::from(decoded())),
                "sslcert" => settings.client_cert = Some(PathBuf::from(decoded())),
                "sslkey" => settings.client_key = Some(PathBuf::from(decoded())),
                _ => kept.push(pair),
            }
        }
        if settings.client_cert.is_some() != settings.client_key.is_some() {
            return Err("sslcert and sslkey go together: name both files, or neither".into());
        }
        kept.push(match settings.mode {
            Mode::Disable => "sslmode=disable",
            Mode::Prefer => "sslmode=prefer",
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => "sslmode=require",
        });
        Ok((settings, format!("{base}?{}", kept.join("&"))))
    }

    /// The connector every connection of the store is made with: the root file read and the
    /// checks the mode asks for set up. An unreadable root file is an error, named.
    pub fn connector(&self) -> Result<PostgresTls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let check = match (self.mode, &self.root_cert) {
            (Mode::Disable | Mode::Prefer, _) | (Mode::Require, None) => Check::Nothing,
            (Mode::Require | Mode::VerifyCa, _) => Check::Chain,
            (Mode::VerifyFull, _) => Check::ChainAndName,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match check {
            Check::Nothing => Arc::new(Lenient {
                chain: None,
                provider: provider.clone(),
            }),
            Check::Chain | Check::ChainAndName => {
                let mut roots = rustls::RootCertStore::empty();
                match &self.root_cert {
                    Some(path) => {
                        let pem = std::fs::read(path)
                            .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
                        let certificates = CertificateDer::pem_slice_iter(&pem)
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| format!("sslrootcert {}: not PEM certificates ({e})", path.display()))?;
                        let (added, _) = roots.add_parsable_certificates(certificates);
                        if added == 0 {
                            return Err(format!("sslrootcert {} holds no usable certificate", path.display()));
                        }
                    }
                    None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
                }
                let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("cannot check the server's certificate: {e}"))?;
                match check {
                    Check::ChainAndName => chain,
                    _ => Arc::new(Lenient {
                        chain: Some(chain),
                        provider: provider.clone(),
                    }),
                }
            }
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("sslcert {}: cannot read PEM certificates ({e})", cert.display()))?;
                if chain.is_empty() {
                    return Err(format!("sslcert {} holds no certificate", cert.display()));
                }
                let private = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("sslkey {}: cannot read a PEM private key ({e})", key.display()))?;
                builder.with_client_auth_cert(chain, private).map_err(|e| {
                    format!(
                        "sslcert {} and sslkey {} do not go together: {e}",
                        cert.display(),
                        key.display()
                    )
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(PostgresTls {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }
}

/// How much of the server's certificate is checked.
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// The checks short of `verify-full`: the chain alone against the roots (`verify-ca`, and
/// `require` with a root file), or nothing at all (`prefer`, and `require` without one, as
/// libpq: encrypted, but not against a server in the middle). Either way the handshake's
/// signatures are checked, so the certificate at least belongs to whoever answers.
#[derive(Debug)]
struct Lenient {
    /// The chain's verifier (`None`: no check).
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Makes the store's connections TLS ones when the mode says so (see the module docs); cloned
/// into every pool and listener.
#[derive(Clone)]
pub struct PostgresTls {
    connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for PostgresTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresTls").finish_non_exhaustive()
    }
}

impl<S> MakeTlsConnect<S> for PostgresTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PostgresTlsStream<S>;
    type TlsConnect = PostgresTlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    fn make_tls_connect(&mut self, host: &str) -> Result<PostgresTlsConnect, Self::Error> {
        Ok(PostgresTlsConnect {
            connector: self.connector.clone(),
            name: ServerName::try_from(host.to_string())?,
        })
    }
}

/// One connection's handshake, for the host it connects to.
pub struct PostgresTlsConnect {
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for PostgresTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = PostgresTlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PostgresTlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let stream = self.connector.connect(self.name, stream).await?;
            Ok(PostgresTlsStream(stream))
        })
    }
}

/// A TLS connection to the server.
pub struct PostgresTlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for PostgresTlsStream<S> {
    /// None: SCRAM authenticates without channel binding (binding needs the hash the server's
    /// certificate was signed with, and a wrong one would fail a good password).
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PostgresTlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PostgresTlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_certificate_is_both_files_readable_and_matching() {
        let (settings, url) = TlsSettings::from_url(
            "postgres://u@h/db?sslcert=%2Fc%2Fclient.crt&sslkey=/c/client.key&sslmode=verify-full",
        )
        .expect("valid");
        assert_eq!(settings.client_cert, Some(PathBuf::from("/c/client.crt")));
        assert_eq!(settings.client_key, Some(PathBuf::from("/c/client.key")));
        assert_eq!(url, "postgres://u@h/db?sslmode=require");
        let alone = TlsSettings::from_url("postgres://u@h/db?sslcert=/c/client.crt").expect_err("refused");
        assert!(alone.contains("sslcert and sslkey go together"), "{alone}");

        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("written");
            path
        };
        let key = rcgen::KeyPair::generate().expect("key");
        let other = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["client".to_string()])
            .and_then(|params| params.self_signed(&key))
            .expect("certificate");
        let settings = |cert: &std::path::Path, key: &std::path::Path| TlsSettings {
            mode: Mode::Require,
            root_cert: None,
            client_cert: Some(cert.to_path_buf()),
            client_key: Some(key.to_path_buf()),
        };
        let (cert_file, key_file) = (write("c.pem", &cert.pem()), write("k.pem", &key.serialize_pem()));
        assert!(settings(&cert_file, &key_file).connector().is_ok());
        let wrong = write("other.pem", &other.serialize_pem());
        let refused = settings(&cert_file, &wrong).connector().expect_err("refused");
        assert!(refused.contains("do not go together"), "{refused}");
        let missing = dir.path().join("missing.pem");
        let refused = settings(&missing, &key_file).connector().expect_err("refused");
        assert!(refused.contains("missing.pem"), "{refused}");
        let refused = settings(&key_file, &key_file).connector().expect_err("refused");
        assert!(refused.contains("holds no certificate"), "{refused}");
    }

    #[test]
    fn libpq_s_parameters_are_taken_out_of_the_url_and_the_rest_kept() {
        let (settings, url) = TlsSettings::from_url(
            "postgres://u:p@db.example:5432/app?options=-csearch_path%3Dx&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20file.pem",
        )
        .expect("valid");
        assert_eq!(
            settings,
            TlsSettings {
                mode: Mode::VerifyFull,
                root_cert: Some(PathBuf::from("/etc/ca file.pem")),
                client_cert: None,
                client_key: None,
            }
        );
        assert_eq!(
            url,
            "postgres://u:p@db.example:5432/app?options=-csearch_path%3Dx&sslmode=require"
        );

        let (settings, url) = TlsSettings::from_url("postgres://u@h/db").expect("valid");
        assert_eq!(settings.mode, Mode::Prefer, "libpq's default");
        assert_eq!(url, "postgres://u@h/db?sslmode=prefer");

        let (settings, url) =
            TlsSettings::from_url("postgres://u@h/db?sslmode=disable&sslrootcert=a+b.pem").expect("valid");
        assert_eq!(settings.mode, Mode::Disable);
        assert_eq!(settings.root_cert, Some(PathBuf::from("a+b.pem")), "a + is not a space");
        assert_eq!(url, "postgres://u@h/db?sslmode=disable");

        let error = TlsSettings::from_url("postgres://u@h/db?sslmode=always").expect_err("refused");
        assert!(error.contains("sslmode=always"), "{error}");
    }

    /// `base` with `extra` added to its query.
    fn with(base: &str, extra: &str) -> String {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}{extra}")
    }

    /// Connects to `url` as the store does; whether the session is encrypted, or why it failed
    /// (with the causes, where the certificate's fault is told).
    async fn encrypted(url: &str) -> Result<bool, String> {
        let (config, tls) = connection(url)?;
        let (client, connection) = config
            .connect(tls)
            .await
            .map_err(|e| whenever_connectors::error::with_causes(&e))?;
        tokio::spawn(connection);
        let row = client
            .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.get(0))
    }

    /// The test server's `ssl` setting and certificate file, or `None` (with a message) when no
    /// server answers or it has TLS off.
    async fn server_with_tls(base: &str) -> Option<String> {
        let (client, connection) =
            match tokio_postgres::connect(&with(base, "sslmode=disable"), tokio_postgres::NoTls).await {
                Ok(connected) => connected,
                Err(e) => {
                    eprintln!("skipped: no PostgreSQL at the test URL: {e}");
                    return None;
                }
            };
        tokio::spawn(connection);
        let ssl: String = client.query_one("SHOW ssl", &[]).await.ok()?.get(0);
        if ssl != "on" {
            eprintln!("skipped: the test server has ssl = {ssl}");
            return None;
        }
        let file: String = client.query_one("SHOW ssl_cert_file", &[]).await.ok()?.get(0);
        Some(file)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_are_encrypted_and_certificates_checked_as_sslmode_says() {
        let base = crate::store::postgres::tests::test_url();
        let Some(server_cert) = server_with_tls(&base).await else {
            return;
        };
        assert_eq!(encrypted(&with(&base, "sslmode=disable")).await, Ok(false));
        assert_eq!(
            encrypted(&base).await,
            Ok(true),
            "prefer, the default, takes the TLS offered"
        );
        assert_eq!(encrypted(&with(&base, "sslmode=require")).await, Ok(true));

        // The server's own (self-signed) certificate as the root: the chain holds at any name;
        // the full check needs the name the certificate gives (Debian's: localhost).
        let root = format!("sslrootcert={}", server_cert.replace('/', "%2F"));
        let at_ip = base.replacen("@localhost", "@127.0.0.1", 1);
        assert_eq!(
            encrypted(&with(&at_ip, &format!("sslmode=verify-ca&{root}"))).await,
            Ok(true)
        );
        assert_eq!(
            encrypted(&with(&at_ip, &format!("sslmode=require&{root}"))).await,
            Ok(true),
            "require with a root file checks the chain"
        );
        let wrong_name = encrypted(&with(&at_ip, &format!("sslmode=verify-full&{root}"))).await;
        assert!(
            wrong_name.as_ref().is_err_and(|e| e.contains("not valid for name")),
            "{wrong_name:?}"
        );
        let by_name = at_ip.replacen("@127.0.0.1", "@localhost", 1);
        assert_eq!(
            encrypted(&with(&by_name, &format!("sslmode=verify-full&{root}"))).await,
            Ok(true)
        );

        // A root the server's certificate does not chain to: refused, whatever the name.
        let dir = tempfile::tempdir().expect("tempdir");
        let stranger = dir.path().join("stranger.pem");
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        std::fs::write(&stranger, params.self_signed(&ca_key).expect("CA").pem()).expect("written");
        let foreign = format!("sslmode=verify-ca&sslrootcert={}", stranger.display());
        let refused = encrypted(&with(&at_ip, &foreign)).await;
        assert!(
            refused.as_ref().is_err_and(|e| e.contains("UnknownIssuer")),
            "{refused:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_store_s_connections_are_all_encrypted_when_the_url_requires_it() {
        let base = crate::store::postgres::tests::test_url();
        if server_with_tls(&base).await.is_none() {
            return;
        }
        let name = format!("whenever_tls_{}", std::process::id());
        let url = with(&base, &format!("sslmode=require&application_name={name}"));
        let schema = crate::store::scratch_schema::ScratchSchema::create(&url, "t_tls")
            .await
            .expect("schema");
        let store = crate::store::postgres::PostgresStore::connect(schema.url())
            .await
            .expect("the store connects over TLS");
        let tasks = crate::store::Store::list_tasks(&store, &Default::default()).await;
        assert!(tasks.is_ok(), "{tasks:?}");
        let row = schema
            .admin()
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
                 JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = $1",
                &[&name],
            )
            .await
            .expect("counted");
        let (sessions, encrypted): (i64, i64) = (row.get(0), row.get(1));
        assert!(sessions >= 2, "the schema's and the store's sessions: {sessions}");
        assert_eq!(encrypted, sessions, "every session encrypted");
        drop(store);
        schema.drop_schema().await;
    }

    #[test]
    fn a_root_file_that_is_missing_or_holds_no_certificate_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let settings = |root: &std::path::Path| TlsSettings {
            mode: Mode::VerifyFull,
            root_cert: Some(root.to_path_buf()),
            client_cert: None,
            client_key: None,
        };
        let error = settings(&missing).connector().expect_err("refused");
        assert!(
            error.contains("cannot read sslrootcert") && error.contains("missing.pem"),
            "{error}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").expect("written");
        let error = settings(&empty).connector().expect_err("refused");
        assert!(error.contains("holds no usable certificate"), "{error}");
    }
}
