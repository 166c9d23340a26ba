//! `eMailSmtpOAuth`: sends e-mail. Kind `smtp` is real SMTP ([`SmtpMailer`], through
//! `lettre`): STARTTLS, implicit TLS or plain, AUTH PLAIN or XOAUTH2.

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;

use chrono::Utc;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Identity, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::args::{Args, unknown_method};
use crate::config::{self, BuildContext, CallOptions, ConnectorConfig, HTTP, SIMULATOR, SMTP, Settings};
use crate::http::backoff;
use crate::idempotency::key_hash;
use crate::secret::{Secret, redact};
use crate::tls_files::{self, Following, TlsFiles};
use crate::{CallContext, ConfigError, Connector, ConnectorError, Effects, Outbox, OutboxMessage};

/// The name steps call this connector by.
pub const NAME: &str = "eMailSmtpOAuth";

/// The methods the connector answers.
pub const METHODS: &[&str] = &["sendEmail"];

/// Recipients in this domain bounce: the call fails with `mailbox unavailable`.
pub const BOUNCE_DOMAIN: &str = "bounce.test";

/// Builds the implementation `config.kind` selects.
pub fn build(config: &ConnectorConfig, cx: &BuildContext) -> Result<Arc<dyn Connector>, ConfigError> {
    match config.kind.as_str() {
        SIMULATOR => {
            config::check_settings(NAME, config, &[])?;
            Ok(Arc::new(EmailSimulator::new(cx)))
        }
        SMTP => Ok(Arc::new(SmtpMailer::new(config, cx)?)),
        HTTP => crate::http_service::build(NAME, config, cx),
        other => Err(config::unknown_kind(NAME, other, &[SIMULATOR, SMTP, HTTP])),
    }
}

/// The settings of kind `smtp`, besides `timeout_ms`, `retries` and `backoff_ms`.
pub const SETTINGS: &[&str] = &[
    "host",
    "port",
    "tls",
    "auth",
    "username",
    "username_env",
    "password_env",
    "token_env",
    "from",
    "hello_name",
    "ca_file",
    "client_cert",
    "client_key",
];

/// The recipients of a `sendEmail` call: `to` as one address, a comma-separated list, or a
/// list of addresses, trimmed; an error when none or not a string/list.
fn recipients<'a>(a: &Args<'a>) -> Result<Vec<&'a str>, ConnectorError> {
    let list: Vec<&str> = match a.get("to") {
        Some(Value::String(s)) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).collect(),
        Some(Value::Array(_)) => a.opt_str_list("to")?.into_iter().map(str::trim).collect(),
        Some(_) => return Err(a.error("`to` must be an address or a list of addresses")),
        None => return Err(a.error("`to` is required")),
    };
    if list.is_empty() {
        return Err(a.error("`to` names no recipient"));
    }
    Ok(list)
}

/// Whether an SMTP error comes from a TLS handshake that failed (a certificate refused, ...):
/// `lettre` reports those as connection errors, over an I/O error of kind `InvalidData`.
fn is_tls_failure(error: &lettre::transport::smtp::Error) -> bool {
    let mut source = error.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::InvalidData;
        }
        source = s.source();
    }
    false
}

/// The real mail sender: SMTP through `lettre` (rustls).
///
/// `sendEmail {from?, to, subject?, html? | text?}` builds a message (`from` defaults to the
/// `from` setting; `to` is an address, a comma-separated list or a list; the body is HTML when
/// `html` is given, else plain `text`) with a `Message-ID` derived from the call's idempotency
/// key (`<hash@from-domain>`, so a receiver can recognise a repeat) and sends it: one
/// connection per message, `tls = "starttls"` (default, port 587) or `"tls"` (implicit TLS,
/// port 465) or `"none"` (plain, for local testing; port 25), `auth = "plain"` (username and
/// password) or `"xoauth2"` (username and OAuth2 access token) or `"none"`.
///
/// Answers: sent → `{messageId}`; a permanent `5xx` reply (e.g. a recipient refused with
/// `550`) → `failed` with the server's message (e.g. "mailbox unavailable"); a transient
/// `4xx` reply or a refused connection → retried, then `unavailable`; a connection lost
/// mid-way → `unavailable` (not retried: the server may have taken the message); no answer in
/// time → `timeout`. Sent messages go into the outbox, like the simulator's.
pub struct SmtpMailer {
    /// Built again when its TLS files change ([`crate::tls_files`]).
    transport: Following<AsyncSmtpTransport<Tokio1Executor>>,
    /// The server and how the transport reaches it (shared with the transport's builder).
    server: Arc<Transport>,
    auth: &'static str,
    secret: Option<Secret>,
    default_from: Option<Mailbox>,
    options: CallOptions,
    outbox: Outbox,
    effects: Effects,
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("host", &self.server.host)
            .field("port", &self.server.port)
            .field("tls", &self.server.tls)
            .field("auth", &self.auth)
            .field("secret", &self.secret)
            .field("from", &self.default_from.as_ref().map(ToString::to_string))
            .field("options", &self.options)
            .finish()
    }
}

/// What an SMTP transport is built from besides the TLS files.
struct Transport {
    host: String,
    port: u16,
    /// `starttls`, `tls` or `none`.
    tls: &'static str,
    timeout: std::time::Duration,
    hello_name: Option<String>,
    credentials: Option<(Credentials, Mechanism)>,
}

impl Transport {
    /// A transport to the server, over TLS unless `tls = "none"`, trusting the web PKI roots and
    /// `files.ca_file`, showing `files.client` to a server that asks for a certificate.
    fn build(&self, files: &TlsFiles) -> Result<AsyncSmtpTransport<Tokio1Executor>, ConfigError> {
        let error = |message: String| ConfigError::new(NAME, message);
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.host.as_str())
            .port(self.port)
            .timeout(Some(self.timeout));
        if let Some(name) = &self.hello_name {
            builder = builder.hello_name(ClientId::Domain(name.clone()));
        }
        if self.tls != "none" {
            let mut params = TlsParameters::builder(self.host.clone());
            if let Some(path) = &files.ca_file {
                let pem = config::read_setting_file(NAME, "ca_file", path)?;
                let cert = Certificate::from_pem(&pem).map_err(|e| tls_files::not_a_ca(NAME, path, e))?;
                params = params.add_root_certificate(cert);
            }
            if let Some((cert, key)) = &files.client {
                let (cert_pem, key_pem) = tls_files::read_client_pair(NAME, cert, key)?;
                let not_a_pair = |detail: String| tls_files::not_a_client_pair(NAME, cert, key, detail);
                // lettre (0.11) takes the certificate as DER under the name `pem`, and one
                // certificate only: the chain's first, the connector's own.
                let leaf = CertificateDer::pem_slice_iter(&cert_pem)
                    .next()
                    .ok_or_else(|| not_a_pair("`client_cert` holds no `BEGIN CERTIFICATE` block".into()))?
                    .map_err(|e| not_a_pair(e.to_string()))?;
                let identity =
                    Identity::from_pem(&leaf, &key_pem).map_err(|e| not_a_pair(crate::error::with_causes(&e)))?;
                params = params.identify_with(identity);
            }
            let params = params
                .build_rustls()
                .map_err(|e| error(format!("cannot set up TLS: {e}")))?;
            builder = builder.tls(if self.tls == "tls" {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            });
        }
        if let Some((credentials, mechanism)) = &self.credentials {
            builder = builder
                .credentials(credentials.clone())
                .authentication(vec![*mechanism]);
        }
        Ok(builder.build())
    }
}

impl SmtpMailer {
    /// Reads the settings of kind `smtp`; the password or token comes from the environment
    /// variable `password_env` or `token_env` names.
    pub fn new(config: &ConnectorConfig, cx: &BuildContext) -> Result<Self, ConfigError> {
        let s = Settings::new(NAME, config, cx, SETTINGS)?;
        let host = s.str("host")?.trim().to_string();
        let tls = s.one_of("tls", &["starttls", "tls", "none"], "starttls")?;
        let default_port = match tls {
            "tls" => 465,
            "none" => 25,
            _ => 587,
        };
        let port = s.opt_u64("port", 1, 65_535)?.unwrap_or(default_port);
        let port = u16::try_from(port).map_err(|_| s.error("setting `port` is out of range"))?;
        let has_user = s.has("username") || s.has("username_env");
        let auth = s.one_of(
            "auth",
            &["plain", "xoauth2", "none"],
            if has_user { "plain" } else { "none" },
        )?;
        let username = match (s.opt_str("username")?, s.opt_secret("username_env")?) {
            (Some(_), Some(_)) => {
                return Err(s.error("give `username` or `username_env`, not both"));
            }
            (Some(u), None) => Some(u.to_string()),
            (None, Some(u)) => Some(u.expose().to_string()),
            (None, None) => None,
        };
        let (secret_key, other_key) = match auth {
            "plain" => ("password_env", "token_env"),
            "xoauth2" => ("token_env", "password_env"),
            _ => ("", ""),
        };
        if auth == "none" {
            if let Some(k) = ["username", "username_env", "password_env", "token_env"]
                .into_iter()
                .find(|k| s.has(k))
            {
                return Err(s.error(format!("setting `{k}` needs `auth = \"plain\"` or `\"xoauth2\"`")));
            }
        } else if s.has(other_key) {
            return Err(s.error(format!(
                "setting `{other_key}` does not apply to `auth = \"{auth}\"` (use `{secret_key}`)"
            )));
        }
        let secret = if auth == "none" {
            None
        } else {
            Some(s.secret(secret_key)?)
        };
        let default_from = s
            .opt_str("from")?
            .map(|f| {
                f.parse::<Mailbox>()
                    .map_err(|e| s.error(format!("setting `from` is not an address: {e}")))
            })
            .transpose()?;
        let options = s.call_options()?;

        let files = TlsFiles::from_settings(&s)?;
        if tls == "none"
            && let Some(key) = ["ca_file", "client_cert", "client_key"].into_iter().find(|k| s.has(k))
        {
            return Err(s.error(format!("setting `{key}` needs `tls = \"starttls\"` or `\"tls\"`")));
        }
        let credentials = match &secret {
            None => None,
            Some(secret) => {
                let Some(user) = username else {
                    return Err(s.error(format!("`auth = \"{auth}\"` needs `username` or `username_env`")));
                };
                let mechanism = if auth == "xoauth2" {
                    Mechanism::Xoauth2
                } else {
                    Mechanism::Plain
                };
                Some((Credentials::new(user, secret.expose().to_string()), mechanism))
            }
        };
        let server = Arc::new(Transport {
            host,
            port,
            tls,
            timeout: options.timeout,
            hello_name: s.opt_str("hello_name")?.map(str::to_string),
            credentials,
        });
        let builds = server.clone();
        let transport = Following::new(NAME, files, move |files: &TlsFiles| builds.build(files))?;
        Ok(SmtpMailer {
            transport,
            server,
            auth,
            secret,
            default_from,
            options,
            outbox: cx.outbox.clone(),
            effects: cx.effects.clone(),
        })
    }

    fn redact(&self, text: &str) -> String {
        redact(text, &self.secret.iter().collect::<Vec<_>>())
    }

    async fn send_email(&self, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let a = Args::new("eMailSmtpOAuth.sendEmail", args)?;
        let to = recipients(&a)?;
        let from = match a.opt_str("from")? {
            Some(f) => f
                .parse::<Mailbox>()
                .map_err(|e| a.error(format!("`from` is not an address: {e}")))?,
            None => self
                .default_from
                .clone()
                .ok_or_else(|| a.error("`from` is required (no `from` setting)"))?,
        };
        let subject = a.opt_str("subject")?.unwrap_or_default();
        let (body, content_type) = match a.opt_str("html")? {
            Some(html) => (html, ContentType::TEXT_HTML),
            None => (a.opt_str("text")?.unwrap_or_default(), ContentType::TEXT_PLAIN),
        };
        let digest = hex::encode(Sha256::digest(ctx.idempotency_key.as_bytes()));
        let message_id = format!("<{}@{}>", &digest[..32], from.email.domain());
        let mut builder = Message::builder()
            .from(from)
            .subject(subject)
            .message_id(Some(message_id.clone()))
            .header(content_type);
        for r in &to {
            let mailbox = r
                .parse::<Mailbox>()
                .map_err(|e| a.error(format!("`{r}` is not an e-mail address: {e}")))?;
            builder = builder.to(mailbox);
        }
        let message = builder
            .body(body.to_string())
            .map_err(|e| a.error(format!("cannot build the message: {e}")))?;

        let mut attempt = 0u32;
        loop {
            let sent = tokio::time::timeout(self.options.timeout, self.transport.current().send(message.clone())).await;
            let error = match sent {
                Ok(Ok(_)) => break,
                Err(_) => return Err(self.timed_out()),
                Ok(Err(e)) => e,
            };
            if error.is_timeout() {
                return Err(self.timed_out());
            }
            // The server's own words (e.g. "mailbox unavailable"), without lettre's prefix.
            let server_text = error
                .source()
                .map(ToString::to_string)
                .unwrap_or_else(|| error.to_string());
            if error.is_permanent() {
                return Err(ConnectorError::failed(self.redact(&server_text)));
            }
            if error.is_client() || error.is_tls() || is_tls_failure(&error) {
                // A refused certificate, no STARTTLS offered, no common AUTH mechanism: trying
                // again will not help.
                let refused = tls_files::refused_certificate(&error)
                    .map(|refused| format!("{}: ", refused.explain()))
                    .unwrap_or_default();
                return Err(ConnectorError::failed(self.redact(&format!(
                    "{NAME}: {}:{}: {refused}{server_text}",
                    self.server.host, self.server.port
                ))));
            }
            let connect_failed = !(error.is_response() || error.is_transient() || error.is_transport_shutdown())
                && error.to_string().starts_with("Connection error");
            let retry = error.is_transient() || connect_failed;
            if !retry || attempt >= self.options.retries {
                let what = if error.is_transient() {
                    format!("{NAME}: the server refused for now: {server_text}")
                } else {
                    format!(
                        "{NAME}: cannot reach {}:{}: {server_text}",
                        self.server.host, self.server.port
                    )
                };
                return Err(ConnectorError::unavailable(self.redact(&what)));
            }
            tokio::time::sleep(backoff(self.options.backoff, attempt)).await;
            attempt += 1;
        }
        self.outbox.push(OutboxMessage {
            task_id: ctx.task_id.clone(),
            connector: NAME.to_string(),
            to: to.join(", "),
            subject: Some(subject.to_string()),
            body: body.to_string(),
            at: Utc::now(),
        });
        self.effects.record(ctx, NAME, "sendEmail", &message_id);
        Ok(json!({"messageId": message_id}))
    }

    fn timed_out(&self) -> ConnectorError {
        ConnectorError::timeout(format!(
            "{NAME}: {}:{} did not answer within {} ms",
            self.server.host,
            self.server.port,
            self.options.timeout.as_millis()
        ))
    }
}

#[async_trait::async_trait]
impl Connector for SmtpMailer {
    async fn call(&self, method: &str, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        match method {
            "sendEmail" => self.send_email(args, ctx).await,
            _ => Err(unknown_method(NAME, method)),
        }
    }

    fn methods(&self) -> &[&str] {
        METHODS
    }
}

/// The deterministic mail server: records each e-mail in the outbox and answers
/// `messageId` `msg_<hash of the idempotency key>`; recipients at [`BOUNCE_DOMAIN`] fail.
#[derive(Debug, Clone)]
pub struct EmailSimulator {
    outbox: Outbox,
    effects: Effects,
}

impl EmailSimulator {
    /// A simulator sending into `cx.outbox` and recording in `cx.effects`.
    pub fn new(cx: &BuildContext) -> Self {
        EmailSimulator {
            outbox: cx.outbox.clone(),
            effects: cx.effects.clone(),
        }
    }

    fn send_email(&self, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        let a = Args::new("eMailSmtpOAuth.sendEmail", args)?;
        let recipients = recipients(&a)?;
        let mut domains = Vec::with_capacity(recipients.len());
        for r in &recipients {
            match r.rsplit_once('@') {
                Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                    domains.push(domain.to_ascii_lowercase())
                }
                _ => return Err(a.error(format!("`{r}` is not an e-mail address"))),
            }
        }
        a.opt_str("from")?;
        let subject = a.opt_str("subject")?;
        let body = match a.opt_str("html")? {
            Some(html) => html,
            None => a.opt_str("text")?.unwrap_or_default(),
        };
        if domains.iter().any(|d| d == BOUNCE_DOMAIN) {
            return Err(ConnectorError::failed("mailbox unavailable"));
        }
        let message_id = format!("msg_{}", key_hash(&ctx.idempotency_key));
        self.outbox.push(OutboxMessage {
            task_id: ctx.task_id.clone(),
            connector: NAME.to_string(),
            to: recipients.join(", "),
            subject: Some(subject.unwrap_or_default().to_string()),
            body: body.to_string(),
            at: Utc::now(),
        });
        self.effects.record(ctx, NAME, "sendEmail", &message_id);
        Ok(json!({"messageId": message_id}))
    }
}

#[async_trait::async_trait]
impl Connector for EmailSimulator {
    async fn call(&self, method: &str, args: &Value, ctx: &CallContext) -> Result<Value, ConnectorError> {
        match method {
            "sendEmail" => self.send_email(args, ctx),
            _ => Err(unknown_method(NAME, method)),
        }
    }

    fn methods(&self) -> &[&str] {
        METHODS
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::test_support::call;
    use crate::{ErrorKind, Registry};

    use super::*;

    fn mail(to: Value) -> Value {
        json!({"from": "shop@example.com", "to": to, "subject": "Your order", "html": "<p>Thanks!</p>"})
    }

    #[tokio::test]
    async fn sends_into_the_outbox_once_per_key() {
        let reg = Registry::simulators();
        let a = call(&reg, NAME, "sendEmail", mail(json!("ann@example.com")), "k").await;
        assert_eq!(a, Ok(json!({"messageId": format!("msg_{}", key_hash("k"))})));
        assert_eq!(
            call(&reg, NAME, "sendEmail", mail(json!("ann@example.com")), "k").await,
            a
        );
        let sent = reg.outbox().messages();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].task_id, "task-1");
        assert_eq!(sent[0].connector, NAME);
        assert_eq!(sent[0].to, "ann@example.com");
        assert_eq!(sent[0].subject.as_deref(), Some("Your order"));
        assert_eq!(sent[0].body, "<p>Thanks!</p>");
        assert_eq!(reg.effects().count(NAME, "sendEmail"), 1);
        assert!(
            call(&reg, NAME, "sendEmail", mail(json!(["a@x.com", "b@y.com"])), "k2")
                .await
                .is_ok()
        );
        assert_eq!(reg.outbox().messages()[1].to, "a@x.com, b@y.com");
        assert_eq!(reg.outbox().len(), 2);
    }

    #[tokio::test]
    async fn bounce_domain_fails_without_sending() {
        let reg = Registry::simulators();
        for (k, to) in [
            ("a", json!("bob@bounce.test")),
            ("b", json!(["ok@example.com", "bob@BOUNCE.test"])),
        ] {
            let r = call(&reg, NAME, "sendEmail", mail(to), k).await;
            assert_eq!(r, Err(ConnectorError::failed("mailbox unavailable")));
        }
        // Only the domain itself bounces.
        assert!(
            call(&reg, NAME, "sendEmail", mail(json!("bob@notbounce.test")), "c")
                .await
                .is_ok()
        );
        assert_eq!(reg.outbox().len(), 1);
        assert_eq!(reg.effects().len(), 1);
    }

    #[tokio::test]
    async fn bad_recipients_are_invalid_args() {
        let reg = Registry::simulators();
        for (k, to) in [
            ("a", json!(null)),
            ("b", json!("nobody")),
            ("c", json!(5)),
            ("d", json!([])),
            ("e", json!(" , ")),
        ] {
            let r = call(&reg, NAME, "sendEmail", mail(to), k).await;
            assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs), "{k}");
        }
        assert!(reg.outbox().is_empty());
    }
}
