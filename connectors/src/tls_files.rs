//! A connector's TLS files (`ca_file`, `client_cert`, `client_key`) and what is built from them
//! (an HTTP client, an SMTP transport), followed as they change: a renewed client certificate or
//! CA bundle is used from the first call at most [`TLS_FILES_CHECK`] after it was written,
//! without a restart, as the server's own certificate is. Files that do not load (a renewal half
//! written, a key that does not fit) are reported on stderr and what was built from the files
//! before stays in use; they are tried again at their next change.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::ConfigError;
use crate::config::Settings;

/// How often a connector's TLS files are looked at for a change: at the first call after this
/// long since they last were.
pub const TLS_FILES_CHECK: Duration = Duration::from_secs(1);

/// What, besides the bundled web PKI roots, a connector's TLS uses: a private CA to trust
/// (`ca_file`), and a certificate of its own for services that ask for one (mutual TLS:
/// `client_cert` and `client_key`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct TlsFiles {
    /// PEM: one or more CA certificates.
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM: the connector's certificate chain and its private key.
    pub(crate) client: Option<(PathBuf, PathBuf)>,
}

/// One file's stamp: its modification time and length, `None` while it cannot be read.
type Stamp = Option<(SystemTime, u64)>;

impl TlsFiles {
    /// The three settings, resolved against the config file's folder; `client_cert` and
    /// `client_key` both or neither.
    pub(crate) fn from_settings(s: &Settings<'_>) -> Result<TlsFiles, ConfigError> {
        let client = match (s.opt_path("client_cert")?, s.opt_path("client_key")?) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => return Err(s.error("setting `client_cert` needs `client_key`, its private key")),
            (None, Some(_)) => return Err(s.error("setting `client_key` needs `client_cert`, its certificate")),
        };
        Ok(TlsFiles {
            ca_file: s.opt_path("ca_file")?,
            client,
        })
    }

    /// Whether no file is named: the web PKI roots alone, no certificate of its own.
    pub(crate) fn is_empty(&self) -> bool {
        *self == TlsFiles::default()
    }

    /// The files, in a fixed order.
    fn paths(&self) -> impl Iterator<Item = &Path> {
        let client = self
            .client
            .iter()
            .flat_map(|(cert, key)| [cert.as_path(), key.as_path()]);
        self.ca_file.as_deref().into_iter().chain(client)
    }

    /// What tells a change of the files.
    fn stamps(&self) -> Vec<Stamp> {
        self.paths()
            .map(|path| {
                std::fs::metadata(path)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }
}

/// The PEM texts of `client_cert` and `client_key`.
pub(crate) fn read_client_pair(connector: &str, cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), ConfigError> {
    Ok((
        crate::config::read_setting_file(connector, "client_cert", cert)?,
        crate::config::read_setting_file(connector, "client_key", key)?,
    ))
}

/// `ca_file` at `path` holds no CA certificate TLS can use.
pub(crate) fn not_a_ca(connector: &str, path: &Path, detail: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(
        connector,
        format!("`ca_file` {} is not a PEM certificate: {detail}", path.display()),
    )
}

/// `client_cert` and `client_key` are not a certificate chain and the key that fits it.
pub(crate) fn not_a_client_pair(
    connector: &str,
    cert: &Path,
    key: &Path,
    detail: impl std::fmt::Display,
) -> ConfigError {
    ConfigError::new(
        connector,
        format!(
            "`client_cert` {} and `client_key` {} are not a PEM certificate and its private key: {detail}",
            cert.display(),
            key.display()
        ),
    )
}

/// How a connector builds what it sends with from its TLS files.
type Build<T> = Box<dyn Fn(&TlsFiles) -> Result<T, ConfigError> + Send + Sync>;

/// What a connector sends with (`T`: an HTTP client, an SMTP transport), built from its TLS
/// files and built again when they change (see the module docs).
pub(crate) struct Following<T> {
    /// The connector that asked for it, as messages name it.
    connector: String,
    files: TlsFiles,
    build: Build<T>,
    /// How long after a look at the files the next is due.
    check: Duration,
    now: Mutex<Built<T>>,
}

/// What was last built, and from which files.
struct Built<T> {
    value: T,
    /// The files' stamps when they were last read.
    stamps: Vec<Stamp>,
    /// When the stamps were last compared.
    checked: Instant,
}

impl<T: Clone> Following<T> {
    /// Builds from `files` now; an error (a file missing or not holding what it should) names
    /// `connector`, the setting and the file, and stops the registry's set-up.
    pub(crate) fn new(
        connector: &str,
        files: TlsFiles,
        build: impl Fn(&TlsFiles) -> Result<T, ConfigError> + Send + Sync + 'static,
    ) -> Result<Following<T>, ConfigError> {
        let stamps = files.stamps();
        let value = build(&files)?;
        Ok(Following {
            connector: connector.to_string(),
            files,
            build: Box::new(build),
            check: TLS_FILES_CHECK,
            now: Mutex::new(Built {
                value,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// What to send with now: built again first when the files changed since they were read,
    /// if [`TLS_FILES_CHECK`] has passed since they were last looked at.
    pub(crate) fn current(&self) -> T {
        let mut built = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        if built.checked.elapsed() >= self.check {
            built.checked = Instant::now();
            let stamps = self.files.stamps();
            if stamps != built.stamps {
                built.stamps = stamps;
                match (self.build)(&self.files) {
                    Ok(value) => {
                        built.value = value;
                        let files: Vec<String> = self.files.paths().map(|p| p.display().to_string()).collect();
                        eprintln!(
                            "whenever: connector `{}`: TLS files read again ({})",
                            self.connector,
                            files.join(", ")
                        );
                    }
                    Err(e) => eprintln!("whenever: {e}; the TLS files loaded before stay in use"),
                }
            }
        }
        built.value.clone()
    }
}

/// Which certificate TLS refused, when a connection failed over one: not transient, so not
/// retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefusedCertificate {
    /// The service's: unknown issuer, expired, for another name, ...
    Service,
    /// The connector's own, or none where the service asks for one (mutual TLS): the service
    /// said so with an alert.
    Connector,
}

impl RefusedCertificate {
    /// What a step and an operator need to know, and where to fix it.
    pub(crate) fn explain(self) -> &'static str {
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
pub(crate) fn refused_certificate(error: &(dyn std::error::Error + 'static)) -> Option<RefusedCertificate> {
    let mut cause = Some(error);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A `ca_file` whose whole text is the value built, or an error when it is not a number.
    fn following(path: &Path) -> Following<u32> {
        let files = TlsFiles {
            ca_file: Some(path.to_path_buf()),
            client: None,
        };
        let mut following = Following::new("probe", files, |files: &TlsFiles| {
            let path = files.ca_file.as_deref().unwrap_or(Path::new(""));
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::new("probe", e.to_string()))?;
            text.trim()
                .parse()
                .map_err(|_| ConfigError::new("probe", format!("not a number: {text}")))
        })
        .expect("built");
        following.check = Duration::ZERO;
        following
    }

    #[test]
    fn a_change_is_built_and_one_that_does_not_build_leaves_the_value_before() {
        let path = std::env::temp_dir().join(format!("whenever-following-{}", std::process::id()));
        std::fs::write(&path, "1").expect("write");
        let following = following(&path);
        assert_eq!(following.current(), 1);
        std::fs::write(&path, "22").expect("write");
        assert_eq!(following.current(), 22, "changed: built again");
        std::fs::write(&path, "half").expect("write");
        assert_eq!(following.current(), 22, "does not build: the value before stays");
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(following.current(), 22, "gone: the value before stays");
        std::fs::write(&path, "333").expect("write");
        assert_eq!(following.current(), 333, "back: built again");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_files_are_not_looked_at_again_before_the_check_is_due() {
        let path = std::env::temp_dir().join(format!("whenever-following-due-{}", std::process::id()));
        std::fs::write(&path, "1").expect("write");
        let mut following = following(&path);
        following.check = Duration::from_secs(3600);
        std::fs::write(&path, "22").expect("write");
        assert_eq!(following.current(), 1);
        let _ = std::fs::remove_file(&path);
    }
}
