//! `eMailSmtpOAuth` kind "smtp" against a small SMTP server written here on tokio: it greets,
//! answers EHLO with its AUTH mechanisms, checks AUTH PLAIN or XOAUTH2, takes MAIL, RCPT (a
//! recipient at `bounce.test` gets `550 5.1.1 mailbox unavailable`) and DATA, and keeps every
//! message it received. With a TLS set-up it offers STARTTLS (and AUTH only after it), with a
//! certificate from a private CA the test hands the connector as `ca_file`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use whenever_connectors::ErrorKind;

use crate::support::{
    SLOW, TempFile, assert_no_secret, call, client_pair_settings, mutual_tls, private_ca, registry, try_registry,
    until_tls_files_are_checked,
};

const PASSWORD: &str = "smtp-Pa55word-Secret";
const TOKEN: &str = "ya29.a0AfH6SMBxOAuthAccessToken";
const USER: &str = "shop@retailmax.example";

/// One message the server accepted.
#[derive(Debug, Clone)]
struct Received {
    auth: String,
    tls: bool,
    from: String,
    to: Vec<String>,
    data: String,
}

#[derive(Clone, Default)]
struct SmtpServer {
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    /// The first this many connections are greeted with `421` (try later) and closed.
    busy_first: usize,
    /// Never greet (to test timeouts).
    silent: bool,
    /// Offer STARTTLS with this set-up (and AUTH only after it).
    tls: Option<TlsAcceptor>,
}

impl SmtpServer {
    async fn start(self) -> (u16, SmtpServer) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let _ = server.session(stream).await;
                });
            }
        });
        (port, self)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    async fn session(&self, stream: TcpStream) -> std::io::Result<()> {
        let n = self.connections.fetch_add(1, Ordering::SeqCst);
        let mut plain = BufReader::new(stream);
        if self.silent {
            tokio::time::sleep(SLOW).await;
            return Ok(());
        }
        if n < self.busy_first {
            plain
                .get_mut()
                .write_all(b"421 4.3.2 Service not available, try again later\r\n")
                .await?;
            return Ok(());
        }
        plain.get_mut().write_all(b"220 mail.test ESMTP ready\r\n").await?;
        if self.conversation(&mut plain, false).await?
            && let Some(acceptor) = &self.tls
        {
            let tls = acceptor.accept(plain.into_inner()).await?;
            self.conversation(&mut BufReader::new(tls), true).await?;
        }
        Ok(())
    }

    /// Answers commands until QUIT or the end; `true` when the client asked for STARTTLS.
    async fn conversation<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut BufReader<S>,
        secured: bool,
    ) -> std::io::Result<bool> {
        let offers_tls = self.tls.is_some() && !secured;
        let mut auth = String::new();
        let (mut from, mut to) = (String::new(), Vec::new());
        let mut line = String::new();
        loop {
            line.clear();
            if io.read_line(&mut line).await? == 0 {
                return Ok(false);
            }
            let command = line.trim_end().to_string();
            let upper = command.to_ascii_uppercase();
            let reply: String = if upper.starts_with("EHLO") {
                if offers_tls {
                    // Like real submission servers: AUTH only once the connection is encrypted.
                    "250-mail.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n".into()
                } else {
                    "250-mail.test\r\n250-AUTH PLAIN XOAUTH2\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".into()
                }
            } else if upper == "STARTTLS" && offers_tls {
                io.get_mut().write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
                return Ok(true);
            } else if upper.starts_with("AUTH ") && !offers_tls {
                let mut parts = command.split_whitespace().skip(1);
                let mechanism = parts.next().unwrap_or_default().to_ascii_uppercase();
                let mut initial = parts.next().map(str::to_string);
                if initial.is_none() {
                    io.get_mut().write_all(b"334 \r\n").await?;
                    let mut answer = String::new();
                    io.read_line(&mut answer).await?;
                    initial = Some(answer.trim().to_string());
                }
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(initial.unwrap_or_default())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default();
                let ok = match mechanism.as_str() {
                    "PLAIN" => decoded == format!("\0{USER}\0{PASSWORD}"),
                    "XOAUTH2" => decoded == format!("user={USER}\x01auth=Bearer {TOKEN}\x01\x01"),
                    _ => false,
                };
                if ok {
                    auth = mechanism;
                    "235 2.7.0 Authentication successful\r\n".into()
                } else {
                    "535 5.7.8 Authentication credentials invalid\r\n".into()
                }
            } else if upper.starts_with("MAIL FROM:") {
                from = command[10..].trim().to_string();
                "250 2.1.0 Ok\r\n".into()
            } else if upper.starts_with("RCPT TO:") {
                let rcpt = command[8..].trim().to_string();
                if rcpt.to_ascii_lowercase().contains("@bounce.test") {
                    "550 5.1.1 mailbox unavailable\r\n".into()
                } else {
                    to.push(rcpt);
                    "250 2.1.5 Ok\r\n".into()
                }
            } else if upper == "DATA" {
                io.get_mut()
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if io.read_line(&mut l).await? == 0 {
                        return Ok(false);
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').filter(|_| l.starts_with("..")).unwrap_or(&l));
                }
                self.received
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Received {
                        auth: auth.clone(),
                        tls: secured,
                        from: std::mem::take(&mut from),
                        to: std::mem::take(&mut to),
                        data,
                    });
                "250 2.0.0 Ok: queued as 4BqT0K\r\n".into()
            } else if upper == "RSET" {
                from.clear();
                to.clear();
                "250 2.0.0 Ok\r\n".into()
            } else if upper == "NOOP" {
                "250 2.0.0 Ok\r\n".into()
            } else if upper == "QUIT" {
                io.get_mut().write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(false);
            } else if offers_tls {
                "530 5.7.0 Must issue a STARTTLS command first\r\n".into()
            } else {
                "502 5.5.2 Error: command not recognized\r\n".into()
            };
            io.get_mut().write_all(reply.as_bytes()).await?;
        }
    }
}

fn config(port: u16, auth: &str, extra: &str) -> String {
    let secret = match auth {
        "xoauth2" => "token_env = \"SMTP_OAUTH_TOKEN\"",
        _ => "password_env = \"SMTP_PASSWORD\"",
    };
    format!(
        "[connectors.eMailSmtpOAuth]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         auth = \"{auth}\"\nusername = \"{USER}\"\n{secret}\nfrom = \"RetailMax <orders@retailmax.example>\"\n\
         hello_name = \"whenever.test\"\n{extra}\n"
    )
}

const ENV: &[(&str, &str)] = &[("SMTP_PASSWORD", PASSWORD), ("SMTP_OAUTH_TOKEN", TOKEN)];

fn order_mail(to: serde_json::Value) -> serde_json::Value {
    json!({"to": to, "subject": "Your order o-1 has shipped",
           "html": "<p>Thanks for shopping with RetailMax!</p>"})
}

#[tokio::test]
async fn smtp_auth_plain_delivers_the_message_with_subject_and_body() {
    let (port, server) = SmtpServer::default().start().await;
    let reg = registry(&config(port, "plain", ""), ENV);
    let r = call(
        &reg,
        "eMailSmtpOAuth",
        "sendEmail",
        order_mail(json!("ann@example.com")),
        "o-1/mail/1/0",
    )
    .await;
    let Ok(answer) = r else { panic!("{r:?}") };
    let message_id = answer["messageId"].as_str().unwrap_or_default().to_string();
    assert!(
        message_id.starts_with('<') && message_id.ends_with("@retailmax.example>"),
        "{message_id}"
    );
    let got = server.received();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.auth, "PLAIN");
    assert_eq!(m.from, "<orders@retailmax.example>");
    assert_eq!(m.to, vec!["<ann@example.com>".to_string()]);
    assert!(m.data.contains("Subject: Your order o-1 has shipped"), "{}", m.data);
    assert!(
        m.data.contains("<p>Thanks for shopping with RetailMax!</p>"),
        "{}",
        m.data
    );
    assert!(m.data.contains("Content-Type: text/html"), "{}", m.data);
    assert!(m.data.contains(&format!("Message-ID: {message_id}")), "{}", m.data);
    // Outbox and effects as with the simulator; the same key again sends nothing more.
    assert_eq!(reg.outbox().len(), 1);
    assert_eq!(reg.effects().count("eMailSmtpOAuth", "sendEmail"), 1);
    let again = call(
        &reg,
        "eMailSmtpOAuth",
        "sendEmail",
        order_mail(json!("ann@example.com")),
        "o-1/mail/1/0",
    )
    .await;
    assert_eq!(again, Ok(answer));
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn smtp_xoauth2_and_several_recipients() {
    let (port, server) = SmtpServer::default().start().await;
    let reg = registry(&config(port, "xoauth2", ""), ENV);
    let args = json!({"from": "Support <support@retailmax.example>", "to": ["a@example.com", "b@example.org"],
                      "subject": "Hello", "text": "plain body"});
    let r = call(&reg, "eMailSmtpOAuth", "sendEmail", args, "k").await;
    assert!(r.is_ok(), "{r:?}");
    let m = &server.received()[0];
    assert_eq!(m.auth, "XOAUTH2");
    assert_eq!(m.from, "<support@retailmax.example>");
    assert_eq!(m.to.len(), 2);
    assert!(
        m.data.contains("Content-Type: text/plain") && m.data.contains("plain body"),
        "{}",
        m.data
    );
}

#[tokio::test]
async fn smtp_550_on_a_recipient_is_failed_mailbox_unavailable() {
    let (port, server) = SmtpServer::default().start().await;
    let reg = registry(&config(port, "plain", ""), ENV);
    let r = call(
        &reg,
        "eMailSmtpOAuth",
        "sendEmail",
        order_mail(json!("bob@bounce.test")),
        "k",
    )
    .await;
    let Err(e) = r else { panic!("must bounce: {r:?}") };
    assert_eq!(e.kind, ErrorKind::Failed);
    assert!(e.message.contains("mailbox unavailable"), "{e}");
    assert!(server.received().is_empty());
    assert!(reg.outbox().is_empty() && reg.effects().is_empty());
}

#[tokio::test]
async fn smtp_wrong_password_is_failed_without_showing_it() {
    let (port, _server) = SmtpServer::default().start().await;
    let reg = registry(&config(port, "plain", ""), &[("SMTP_PASSWORD", "not-the-Pa55word")]);
    let r = call(
        &reg,
        "eMailSmtpOAuth",
        "sendEmail",
        order_mail(json!("ann@example.com")),
        "k",
    )
    .await;
    let Err(e) = r else { panic!("must fail: {r:?}") };
    assert_eq!(e.kind, ErrorKind::Failed);
    assert!(e.message.contains("Authentication credentials invalid"), "{e}");
    assert_no_secret(&format!("{e} {e:?}"), &["not-the-Pa55word"]);
}

#[tokio::test]
async fn smtp_busy_server_is_retried_then_delivers() {
    let server = SmtpServer {
        busy_first: 2,
        ..SmtpServer::default()
    };
    let (port, server) = server.start().await;
    let reg = registry(&config(port, "plain", "backoff_ms = 10"), ENV);
    let r = call(
        &reg,
        "eMailSmtpOAuth",
        "sendEmail",
        order_mail(json!("ann@example.com")),
        "k",
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(server.connections.load(Ordering::SeqCst), 3);
    assert_eq!(server.received().len(), 1);

    // Busy for longer than the retries: unavailable.
    let server = SmtpServer {
        busy_first: usize::MAX,
        ..SmtpServer::default()
    };
    let (port, _server) = server.start().await;
    let reg = registry(&config(port, "plain", "backoff_ms = 10\nretries = 1"), ENV);
    let r = call(
        &reg,
        "eMailSmtpOAuth",
        "sendEmail",
        order_mail(json!("ann@example.com")),
        "k",
    )
    .await;
    assert!(
        r.as_ref()
            .is_err_and(|e| e.kind == ErrorKind::Unavailable && e.message.contains("try again later")),
        "{r:?}"
    );
}

#[tokio::test]
async fn smtp_silent_server_is_a_timeout_and_nothing_listening_unavailable() {
    let server = SmtpServer {
        silent: true,
        ..SmtpServer::default()
    };
    let (port, _server) = server.start().await;
    let reg = registry(&config(port, "plain", "timeout_ms = 300"), ENV);
    let started = Instant::now();
    let r = call(
        &reg,
        "eMailSmtpOAuth",
        "sendEmail",
        order_mail(json!("ann@example.com")),
        "k",
    )
    .await;
    assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::Timeout));
    assert!(started.elapsed() < Duration::from_millis(2000));

    let closed = crate::support::closed_port_url().await;
    let port: u16 = closed.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(1);
    let reg = registry(&config(port, "plain", "backoff_ms = 100"), ENV);
    let started = Instant::now();
    let r = call(
        &reg,
        "eMailSmtpOAuth",
        "sendEmail",
        order_mail(json!("ann@example.com")),
        "k",
    )
    .await;
    assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::Unavailable));
    // A refused connection is retried: 100 ms, then 200 ms.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn smtp_bad_addresses_are_invalid_args() {
    let (port, server) = SmtpServer::default().start().await;
    let reg = registry(&config(port, "plain", ""), ENV);
    for (k, args) in [
        ("a", order_mail(json!("nobody"))),
        ("b", order_mail(json!([]))),
        (
            "c",
            json!({"to": "a@example.com", "from": "not an address", "html": "x"}),
        ),
    ] {
        let r = call(&reg, "eMailSmtpOAuth", "sendEmail", args, k).await;
        assert_eq!(r.err().map(|e| e.kind), Some(ErrorKind::InvalidArgs), "{k}");
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
}

#[test]
fn smtp_settings_are_checked() {
    for (text, needle) in [
        ("[connectors.eMailSmtpOAuth]\nkind = \"smtp\"\n", "`host`"),
        (
            "[connectors.eMailSmtpOAuth]\nkind = \"smtp\"\nhost = \"h\"\ntls = \"ssl\"\n",
            "`tls`",
        ),
        (
            "[connectors.eMailSmtpOAuth]\nkind = \"smtp\"\nhost = \"h\"\nauth = \"plain\"\npassword_env = \"SMTP_PASSWORD\"\n",
            "username",
        ),
        (
            "[connectors.eMailSmtpOAuth]\nkind = \"smtp\"\nhost = \"h\"\nusername = \"u\"\nauth = \"xoauth2\"\npassword_env = \"SMTP_PASSWORD\"\n",
            "`password_env`",
        ),
        (
            "[connectors.eMailSmtpOAuth]\nkind = \"smtp\"\nhost = \"h\"\ntls = \"none\"\nca_file = \"ca.pem\"\n",
            "`ca_file`",
        ),
        (
            "[connectors.eMailSmtpOAuth]\nkind = \"smtp\"\nhost = \"h\"\ntls = \"none\"\nclient_cert = \"c.pem\"\nclient_key = \"k.pem\"\n",
            "setting `client_cert` needs `tls",
        ),
        (
            "[connectors.eMailSmtpOAuth]\nkind = \"smtp\"\nhost = \"h\"\nclient_cert = \"c.pem\"\n",
            "`client_cert` needs `client_key`",
        ),
        (
            "[connectors.eMailSmtpOAuth]\nkind = \"smtp\"\nhost = \"h\"\nclient_cert = \"/nonexistent/c.pem\"\nclient_key = \"/nonexistent/k.pem\"\n",
            "cannot read `client_cert` /nonexistent/c.pem",
        ),
        (
            "[connectors.eMailSmtpOAuth]\nkind = \"smtp\"\nhost = \"h\"\nca_file = \"/nonexistent/ca.pem\"\n",
            "cannot read",
        ),
        (
            "[connectors.eMailSmtpOAuth]\nkind = \"smtp\"\nhost = \"h\"\nfrom = \"nope\"\n",
            "`from`",
        ),
    ] {
        let e = try_registry(text, ENV).err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.connector == "eMailSmtpOAuth" && e.message.contains(needle)),
            "{needle}: {e:?}"
        );
    }
}

fn starttls_config(port: u16, ca_file: Option<&std::path::Path>) -> String {
    let ca = ca_file
        .map(|p| format!("ca_file = {:?}", p.display().to_string()))
        .unwrap_or_default();
    format!(
        "[connectors.eMailSmtpOAuth]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"starttls\"\n\
         username = \"{USER}\"\npassword_env = \"SMTP_PASSWORD\"\nfrom = \"orders@retailmax.example\"\n\
         retries = 0\ntimeout_ms = 5000\n{ca}\n"
    )
}

#[tokio::test]
async fn smtp_starttls_with_a_private_ca_delivers_over_tls() {
    let (tls, ca_pem) = private_ca();
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let server = SmtpServer {
        tls: Some(acceptor),
        ..SmtpServer::default()
    };
    let (port, server) = server.start().await;
    let ca_file = std::env::temp_dir().join(format!("whenever-smtp-ca-{}-{port}.pem", std::process::id()));
    std::fs::write(&ca_file, ca_pem).expect("write the CA file");
    let reg = registry(&starttls_config(port, Some(&ca_file)), ENV);
    let r = call(
        &reg,
        "eMailSmtpOAuth",
        "sendEmail",
        order_mail(json!("ann@example.com")),
        "k",
    )
    .await;
    let _ = std::fs::remove_file(&ca_file);
    assert!(r.is_ok(), "{r:?}");
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls, "the message went over TLS");
    assert_eq!(got[0].auth, "PLAIN");
    assert!(got[0].data.contains("Subject: Your order o-1 has shipped"));
}

#[tokio::test]
async fn smtp_starttls_refuses_an_untrusted_certificate_and_a_server_without_tls() {
    // The server's certificate is not from a trusted CA (no `ca_file`): nothing is sent.
    let (tls, _ca_pem) = private_ca();
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let server = SmtpServer {
        tls: Some(acceptor),
        ..SmtpServer::default()
    };
    let (port, server) = server.start().await;
    let reg = registry(&starttls_config(port, None), ENV);
    let r = call(
        &reg,
        "eMailSmtpOAuth",
        "sendEmail",
        order_mail(json!("ann@example.com")),
        "k",
    )
    .await;
    assert!(
        r.as_ref()
            .is_err_and(|e| e.kind == ErrorKind::Failed && e.message.contains("certificate")),
        "{r:?}"
    );
    assert!(server.received().is_empty());
    // A server that offers no STARTTLS: no downgrade to plain text, the password is never sent.
    let (port, server) = SmtpServer::default().start().await;
    let reg = registry(&starttls_config(port, None), ENV);
    let r = call(
        &reg,
        "eMailSmtpOAuth",
        "sendEmail",
        order_mail(json!("ann@example.com")),
        "k",
    )
    .await;
    let Err(e) = r else {
        panic!("must refuse to go on without TLS")
    };
    assert!(e.kind == ErrorKind::Failed && e.message.contains("STARTTLS"), "{e}");
    assert_no_secret(&format!("{e} {e:?}"), &[PASSWORD]);
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn smtp_starttls_shows_the_connectors_certificate_and_follows_its_renewal() {
    let (tls, ca_pem, client_cert, client_key) = mutual_tls();
    // A pair from another CA, which the server does not accept: the one to be renewed.
    let (_, _, old_cert, old_key) = mutual_tls();
    let server = SmtpServer {
        tls: Some(TlsAcceptor::from(Arc::new(tls))),
        ..SmtpServer::default()
    };
    let (port, server) = server.start().await;
    let ca = TempFile::new(&format!("smtp-mtls-ca-{port}.pem"), &ca_pem);
    let cert = TempFile::new(&format!("smtp-client-{port}.pem"), &old_cert);
    let key = TempFile::new(&format!("smtp-client-key-{port}.pem"), &old_key);
    // Each with a key of its own: a repeated key is answered with the first call's result.
    let send = |reg: &whenever_connectors::Registry, key: &'static str| {
        let reg = reg.clone();
        async move {
            call(
                &reg,
                "eMailSmtpOAuth",
                "sendEmail",
                order_mail(json!("ann@example.com")),
                key,
            )
            .await
        }
    };
    // Without a certificate of its own: the server asks for one, nothing is sent.
    let reg = registry(&starttls_config(port, Some(&ca.0)), ENV);
    let e = send(&reg, "k-1")
        .await
        .expect_err("refused without a client certificate");
    assert!(
        e.kind == ErrorKind::Failed && e.message.contains("client certificate") && e.message.contains("`client_cert`"),
        "{e:?}"
    );
    let with_pair = format!(
        "{}{}",
        starttls_config(port, Some(&ca.0)),
        client_pair_settings(&cert, &key)
    );
    let reg = registry(&with_pair, ENV);
    let e = send(&reg, "k-2")
        .await
        .expect_err("another CA's certificate is refused");
    assert!(
        e.kind == ErrorKind::Failed && e.message.contains("client certificate"),
        "{e:?}"
    );
    assert_no_secret(&format!("{e} {e:?}"), &[PASSWORD]);
    assert!(server.received().is_empty());
    // Renewed in place: the next message after the check goes with the new pair.
    cert.renew(&client_cert);
    key.renew(&client_key);
    until_tls_files_are_checked().await;
    let r = send(&reg, "k-3").await;
    assert!(r.is_ok(), "{r:?}");
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].tls && got[0].auth == "PLAIN", "{got:?}");
}
