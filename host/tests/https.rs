//! `whenever serve` over HTTPS (`[server] tls_cert` and `tls_key`), with certificates made by the
//! test's own CA: the API answers clients that trust the CA and refuses the handshake of those
//! that do not (and of plain HTTP), counting the failures in `/metrics`; a renewed certificate is
//! served without a restart while a broken renewal leaves the old one serving; a certificate near
//! its expiry is warned about and every certificate's expiry shown in `/metrics`; a certificate
//! or key that does not load (or has expired) stops the server from starting with a message
//! naming the file; and the client commands trust a CA given with `--ca-cert` or
//! `WHENEVER_CA_CERT`.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::json;
use support::{ServeProcess, steps_and_config, whenever_binary};

/// A test CA and a server certificate it signed for `localhost` and `127.0.0.1`, as PEM.
struct Certificates {
    ca: String,
    server: String,
    server_key: String,
}

/// A day as rcgen takes it, and as Unix seconds (midnight UTC).
#[derive(Clone, Copy)]
struct Day(chrono::NaiveDate);

impl Day {
    fn from_today(days: i64) -> Day {
        Day(chrono::Utc::now().date_naive() + chrono::Duration::days(days))
    }

    fn ymd(y: i32, m: u32, d: u32) -> Day {
        Day(chrono::NaiveDate::from_ymd_opt(y, m, d).expect("a date"))
    }

    /// Year, month and day, as `rcgen::date_time_ymd` takes them.
    fn ymd_parts(self) -> (i32, u8, u8) {
        use chrono::Datelike;
        (self.0.year(), self.0.month() as u8, self.0.day() as u8)
    }

    fn unix_seconds(self) -> i64 {
        self.0.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp()
    }
}

impl Certificates {
    /// Valid from yesterday for ten years.
    fn new(name: &str) -> Certificates {
        Certificates::valid(name, Day::from_today(-1), Day::from_today(3650))
    }

    fn valid(name: &str, from: Day, until: Day) -> Certificates {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("whenever test CA {name}"));
        let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("server params");
        let ((fy, fm, fd), (uy, um, ud)) = (from.ymd_parts(), until.ymd_parts());
        params.not_before = rcgen::date_time_ymd(fy, fm, fd);
        params.not_after = rcgen::date_time_ymd(uy, um, ud);
        let server = params.signed_by(&key, &issuer).expect("server certificate");
        Certificates {
            ca: ca.pem(),
            server: server.pem(),
            server_key: key.serialize_pem(),
        }
    }

    /// Writes the server's certificate and key where the config names them, the key readable
    /// by its owner alone.
    fn install(&self, dir: &Path) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(dir.join("cert.pem"), &self.server).expect("cert written");
        let key = dir.join("key.pem");
        std::fs::write(&key, &self.server_key).expect("key written");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
    }

    /// A client that trusts this CA and no other, on a connection of its own (no pooled
    /// connection from an earlier handshake).
    fn client(&self) -> reqwest::Client {
        self.client_from(reqwest::Client::builder())
    }

    /// [`Certificates::client`] from `builder`'s other settings.
    fn client_from(&self, builder: reqwest::ClientBuilder) -> reqwest::Client {
        builder
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca.as_bytes()).expect("CA PEM"))
            .build()
            .expect("client")
    }
}

/// The config naming `cert.pem` and `key.pem` beside it (relative paths, resolved against the
/// config file's folder, not the server's working directory).
const TLS_CONFIG: &str = "[server]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n";

/// Starts `whenever serve` in `dir` with no steps and the TLS config.
fn serve_https(dir: &Path) -> ServeProcess {
    let args = steps_and_config(dir, &[], TLS_CONFIG);
    ServeProcess::start(&dir.join("whenever.db"), &args)
}

/// Whether `error`, or what caused it, mentions `text`.
fn caused_by(error: &reqwest::Error, text: &str) -> bool {
    whenever_connectors::error::with_causes(error).contains(text)
}

async fn healthz(client: &reqwest::Client, base: &str) -> Result<u16, reqwest::Error> {
    Ok(client.get(format!("{base}/healthz")).send().await?.status().as_u16())
}

/// The certificate's expiry as `/metrics` shows it.
async fn expiry_shown(server: &ServeProcess) -> i64 {
    server.metric("whenever_tls_certificate_expiry_timestamp_seconds").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_over_https_only_to_clients_that_trust_its_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certificates = Certificates::new("one");
    certificates.install(dir.path());
    let mut server = serve_https(dir.path());
    assert!(server.base.starts_with("https://127.0.0.1:"), "{}", server.base);
    server.http = certificates.client();
    assert!(
        !server.stderr().contains("can be read by other users"),
        "{}",
        server.stderr()
    );

    // A client that trusts the CA: the whole API.
    let (status, created) = server.post("/v1/tasks", &json!({"order": 1})).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("task id");
    let (status, shown) = server.get(&format!("/v1/tasks/{id}")).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["data"]["order"], 1, "{shown}");

    // Over HTTP/2, which the client offered and the server chose by ALPN; a client that offers
    // only HTTP/1.1 gets that.
    let answer = |client: reqwest::Client| {
        let url = format!("{}/healthz", server.base);
        async move { client.get(url).send().await.expect("answered") }
    };
    let http2 = answer(certificates.client()).await;
    assert_eq!(
        (http2.status().as_u16(), http2.version()),
        (200, reqwest::Version::HTTP_2)
    );
    let http1 = answer(certificates.client_from(reqwest::Client::builder().http1_only())).await;
    assert_eq!(
        (http1.status().as_u16(), http1.version()),
        (200, reqwest::Version::HTTP_11)
    );
    assert!(server.metric("whenever_http2_connections_total").await >= 1);

    // A client that does not trust it: the handshake fails on the certificate.
    let stranger = Certificates::new("stranger").client();
    let refused = healthz(&stranger, &server.base)
        .await
        .expect_err("an untrusted certificate");
    assert!(caused_by(&refused, "certificate"), "{refused:?}");

    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = server.base.replacen("https://", "http://", 1);
    let answered = healthz(&reqwest::Client::new(), &plain).await;
    assert!(answered.is_err(), "plain HTTP was answered: {answered:?}");

    // Both failed handshakes are counted (the server counts after the client gave up: poll).
    server
        .until("two failed handshakes in /metrics", Duration::from_secs(10), || async {
            server.metric("whenever_tls_handshake_failures_total").await >= 2
        })
        .await;
    // And the server still answers the client that trusts it.
    assert_eq!(
        healthz(&certificates.client(), &server.base).await.expect("answered"),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_http2_off_the_api_offers_only_http1_by_alpn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certificates = Certificates::new("one");
    certificates.install(dir.path());
    let args = steps_and_config(dir.path(), &[], &format!("{TLS_CONFIG}http2 = false\n"));
    let mut server = ServeProcess::start(&dir.path().join("whenever.db"), &args);
    server.http = certificates.client();
    // The client offers `h2` first; the server chooses HTTP/1.1, the only protocol it offers.
    let answer = certificates
        .client()
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("answered");
    assert_eq!(
        (answer.status().as_u16(), answer.version()),
        (200, reqwest::Version::HTTP_11)
    );
    assert_eq!(server.metric("whenever_http2_connections_total").await, 0);
}

#[test]
fn a_key_other_users_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    Certificates::new("one").install(dir.path());
    let key = dir.path().join("key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod 644");
    let server = serve_https(dir.path());
    let warning = format!("warning: the TLS key {} can be read by other users", key.display());
    assert!(server.stderr().contains(&warning), "{}", server.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_about_to_expire_is_warned_about_and_its_expiry_shown_in_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let soon = Day::from_today(5);
    let certificates = Certificates::valid("soon", Day::from_today(-1), soon);
    certificates.install(dir.path());
    let mut server = serve_https(dir.path());
    server.http = certificates.client();
    server.until_logged("warning: the HTTPS certificate expires on");
    assert_eq!(expiry_shown(&server).await, soon.unix_seconds());

    // Renewed: the new date is shown.
    let later = Day::from_today(400);
    let renewed = Certificates::valid("later", Day::from_today(-1), later);
    renewed.install(dir.path());
    server.until_logged("serving the renewed certificate");
    server.http = renewed.client();
    assert_eq!(expiry_shown(&server).await, later.unix_seconds());

    // A "renewal" with an expired certificate is refused; the one serving stays, and its date.
    Certificates::valid("expired", Day::ymd(2020, 1, 1), Day::ymd(2021, 1, 1)).install(dir.path());
    server.until_logged("it expired on 2021-01-01");
    assert_eq!(
        healthz(&renewed.client(), &server.base).await.expect("still served"),
        200
    );
    assert_eq!(expiry_shown(&server).await, later.unix_seconds());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Certificates::new("first");
    first.install(dir.path());
    let server = serve_https(dir.path());
    assert_eq!(healthz(&first.client(), &server.base).await.expect("first"), 200);

    // A renewal half done: a new key beside the old certificate. Refused; the old pair serves.
    let second = Certificates::new("second");
    std::fs::write(dir.path().join("key.pem"), &second.server_key).expect("key written");
    server.until_logged("the certificate was not renewed");
    assert!(
        server.stderr().contains("does not fit the certificate"),
        "{}",
        server.stderr()
    );
    assert_eq!(
        healthz(&first.client(), &server.base).await.expect("still the first"),
        200
    );

    // The renewal completed: the new certificate serves, the old CA is no longer enough.
    std::fs::write(dir.path().join("cert.pem"), &second.server).expect("cert written");
    server.until_logged("serving the renewed certificate");
    assert_eq!(healthz(&second.client(), &server.base).await.expect("second"), 200);
    let old = healthz(&first.client(), &server.base).await.expect_err("the first CA");
    assert!(caused_by(&old, "certificate"), "{old:?}");
}

/// Runs `whenever serve` in `dir` with `config` and no steps, expecting it to refuse to start.
fn refused_to_serve(dir: &Path, config: &str) -> Output {
    let args = steps_and_config(dir, &[], config);
    let output = Command::new(whenever_binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("whenever.db"))
        .args(&args)
        .env_remove("WHENEVER_TOKEN")
        .output()
        .expect("whenever serve runs");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    output
}

fn stderr_says(output: &Output, text: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(text), "stderr should say {text:?}: {stderr}");
}

#[test]
fn a_certificate_or_key_that_does_not_load_stops_the_server_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certificates = Certificates::new("one");

    // Half a TLS config.
    let output = refused_to_serve(dir.path(), "[server]\ntls_cert = \"cert.pem\"\n");
    stderr_says(&output, "tls_cert is set without tls_key");

    // A key file that is missing.
    std::fs::write(dir.path().join("cert.pem"), &certificates.server).expect("cert written");
    let output = refused_to_serve(dir.path(), TLS_CONFIG);
    let key = dir.path().join("key.pem");
    stderr_says(&output, &format!("cannot read {}", key.display()));

    // A certificate file that holds a key, not a certificate.
    std::fs::write(dir.path().join("cert.pem"), &certificates.server_key).expect("cert written");
    std::fs::write(&key, &certificates.server_key).expect("key written");
    let output = refused_to_serve(dir.path(), TLS_CONFIG);
    stderr_says(&output, "holds no PEM certificate");

    // A certificate that expired.
    Certificates::valid("expired", Day::ymd(2020, 1, 1), Day::ymd(2021, 1, 1)).install(dir.path());
    let output = refused_to_serve(dir.path(), TLS_CONFIG);
    stderr_says(&output, "is not valid now: it expired on 2021-01-01");

    // A key that belongs to another certificate.
    std::fs::write(dir.path().join("cert.pem"), &certificates.server).expect("cert written");
    std::fs::write(&key, Certificates::new("other").server_key).expect("key written");
    let output = refused_to_serve(dir.path(), TLS_CONFIG);
    stderr_says(&output, "does not fit the certificate");
}

/// Runs `whenever tasks --json --server BASE ARGS` with `WHENEVER_CA_CERT` set to `env_ca` (or unset).
fn tasks_command(base: &str, args: &[&str], env_ca: Option<&Path>) -> Output {
    let mut command = Command::new(whenever_binary());
    command
        .args(["tasks", "--json", "--server", base])
        .args(args)
        .env_remove("WHENEVER_TOKEN")
        .env_remove("WHENEVER_CA_CERT");
    if let Some(path) = env_ca {
        command.env("WHENEVER_CA_CERT", path);
    }
    command.output().expect("whenever runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_commands_trust_the_ca_given_by_flag_or_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certificates = Certificates::new("one");
    certificates.install(dir.path());
    let server = serve_https(dir.path());
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &certificates.ca).expect("CA written");
    let ca_arg = ca.display().to_string();

    let by_flag = tasks_command(&server.base, &["--ca-cert", &ca_arg], None);
    assert_eq!(by_flag.status.code(), Some(0), "{by_flag:?}");
    let listed: serde_json::Value = serde_json::from_slice(&by_flag.stdout).expect("JSON");
    assert!(listed["tasks"].is_array(), "{listed}");

    let by_environment = tasks_command(&server.base, &[], Some(&ca));
    assert_eq!(by_environment.status.code(), Some(0), "{by_environment:?}");

    // Without the CA the server's certificate is not trusted: unreachable, exit 1.
    let untrusted = tasks_command(&server.base, &[], None);
    assert_eq!(untrusted.status.code(), Some(1), "{untrusted:?}");
    stderr_says(&untrusted, "cannot reach the server");
    stderr_says(&untrusted, "certificate");
    stderr_says(&untrusted, "with --ca-cert FILE or WHENEVER_CA_CERT");
    // Spoken to in plain HTTP, the server's TLS is named as the likely cause.
    let plain = tasks_command(&server.base.replacen("https://", "http://", 1), &[], None);
    assert_eq!(plain.status.code(), Some(1), "{plain:?}");
    stderr_says(&plain, "the server may speak HTTPS: try https://");
    // A server that is no URL is bad input, named.
    let no_url = tasks_command("notaurl", &[], None);
    assert_eq!(no_url.status.code(), Some(2), "{no_url:?}");
    stderr_says(
        &no_url,
        "the server \"notaurl\" (--server, or WHENEVER_SERVER) is no http:// or https:// URL",
    );

    // A CA file that is not a certificate is bad input, exit 2.
    let key = dir.path().join("key.pem").display().to_string();
    let not_a_ca = tasks_command(&server.base, &["--ca-cert", &key], None);
    assert_eq!(not_a_ca.status.code(), Some(2), "{not_a_ca:?}");
    stderr_says(&not_a_ca, "holds no PEM certificate");
}
