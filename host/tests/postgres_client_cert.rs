//! The PostgreSQL store presents a client certificate (`sslcert`, `sslkey` in the URL) to a
//! server that authenticates clients by certificate alone (`hostssl … cert` in pg_hba.conf).
//!
//! The machine's shared server is not reconfigured for this: the test starts a private one,
//! made with `initdb` and run as the `postgres` user, on a free port, with certificates from the
//! test's own CA. It needs root (to run it as `postgres`) and the PostgreSQL server binaries;
//! without them it prints "skipped: …" and passes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::json;
use whenever::store::postgres::PostgresStore;
use whenever::store::{Store, StoreError};
use whenever::task::Task;

/// The newest PostgreSQL server's binaries, if installed where Debian puts them.
fn server_binaries() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file() && bin.join("postgres").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

/// The `postgres` user's uid and gid, from /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?))
}

/// A private PostgreSQL server, stopped when dropped.
struct PrivateServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CA's certificate, and the client's certificate and key, as files.
struct ClientFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// A certificate for the same user from another CA, with its key.
    foreign_cert: PathBuf,
    foreign_key: PathBuf,
}

fn ca(name: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let certificate = params.self_signed(&key).expect("CA certificate");
    (certificate, Issuer::new(params, key))
}

/// A certificate for `names` with common name `common`, signed by `issuer`: (PEM, key PEM).
fn signed(issuer: &Issuer<'static, KeyPair>, names: &[&str], common: &str) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("params");
    params.distinguished_name.push(DnType::CommonName, common);
    (
        params.signed_by(&key, issuer).expect("certificate").pem(),
        key.serialize_pem(),
    )
}

/// Writes `text` to `path`, readable by its owner alone, owned by `owner` if given.
fn private_file(path: &Path, text: &str, owner: Option<(u32, u32)>) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).expect("written");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    }
}

/// Starts a server that takes TLS connections from 127.0.0.1 authenticated by a certificate of
/// its CA alone; `None` (and why, printed) where that cannot be done here.
fn start_server() -> Option<(PrivateServer, ClientFiles)> {
    let skip = |why: &str| {
        eprintln!("skipped: {why}");
        None
    };
    let Some(bin) = server_binaries() else {
        return skip("no PostgreSQL server binaries under /usr/lib/postgresql");
    };
    let Some(owner) = postgres_user() else {
        return skip("no postgres user");
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return skip("not root: the private server runs as the postgres user");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::chown(dir.path(), Some(owner.0), Some(owner.1)).expect("chown");
    let data = dir.path().join("data");
    let as_postgres = |program: &Path| {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    };
    let made = as_postgres(&bin.join("initdb"))
        .args(["--no-sync", "-A", "trust", "-U", "postgres", "-D"])
        .arg(&data)
        .stdout(Stdio::null())
        .output();
    let made = match made {
        Ok(made) => made,
        Err(e) => return skip(&format!("cannot run initdb as postgres through runuser: {e}")),
    };
    if !made.status.success() {
        return skip(&format!("initdb failed: {}", String::from_utf8_lossy(&made.stderr)));
    }

    let (ca_cert, ca_issuer) = ca("whenever test CA");
    let (server_cert, server_key) = signed(&ca_issuer, &["localhost", "127.0.0.1"], "localhost");
    let (client_cert, client_key) = signed(&ca_issuer, &[], "postgres");
    let (_, foreign_issuer) = ca("another CA");
    let (foreign_cert, foreign_key) = signed(&foreign_issuer, &[], "postgres");
    let file = |name: &str| dir.path().join(name);
    private_file(&file("server.crt"), &server_cert, Some(owner));
    private_file(&file("server.key"), &server_key, Some(owner));
    private_file(&file("ca.crt"), &ca_cert.pem(), Some(owner));
    private_file(&file("client.crt"), &client_cert, None);
    private_file(&file("client.key"), &client_key, None);
    private_file(&file("foreign.crt"), &foreign_cert, None);
    private_file(&file("foreign.key"), &foreign_key, None);
    // TLS with a certificate of the CA, whose common name is the user: nothing else gets in.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 cert\n",
    )
    .expect("pg_hba.conf");

    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let setting = |name: &str, value: &Path| format!("{name}={}", value.display());
    let child = as_postgres(&bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(dir.path())
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "ssl=on",
            "-c",
            "fsync=off",
            "-c",
        ])
        .arg(setting("ssl_cert_file", &file("server.crt")))
        .arg("-c")
        .arg(setting("ssl_key_file", &file("server.key")))
        .arg("-c")
        .arg(setting("ssl_ca_file", &file("ca.crt")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("postgres starts");
    let files = ClientFiles {
        ca: file("ca.crt"),
        cert: file("client.crt"),
        key: file("client.key"),
        foreign_cert: file("foreign.crt"),
        foreign_key: file("foreign.key"),
    };
    let server = PrivateServer { child, port, _dir: dir };
    Some((server, files))
}

/// A URL of the private server's database `postgres`, checking its certificate in full.
fn url(server: &PrivateServer, files: &ClientFiles, client: Option<(&Path, &Path)>) -> String {
    let mut url = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        server.port,
        files.ca.display()
    );
    if let Some((cert, key)) = client {
        url.push_str(&format!("&sslcert={}&sslkey={}", cert.display(), key.display()));
    }
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_authenticates_clients_by_certificate_takes_the_store_with_its_certificate() {
    let Some((server, files)) = start_server() else {
        return;
    };
    let with_cert = url(&server, &files, Some((&files.cert, &files.key)));
    // The server takes a moment to start.
    let deadline = Instant::now() + Duration::from_secs(30);
    let store = loop {
        match PostgresStore::connect(&with_cert).await {
            Ok(store) => break store,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("the store never connected with its certificate: {e}"),
        }
    };
    let task = Task::new(json!({"order": {"id": "CERT-1"}}));
    store.create_task(&task).await.expect("created");
    let stored = store.get_task(&task.id).await.expect("read").expect("stored");
    assert_eq!(stored.task.data, task.data);

    // Without a certificate, or with one of another CA, the server lets nobody in.
    let refused = |result: Result<PostgresStore, StoreError>| match result {
        Ok(_) => panic!("connected without a certificate of the server's CA"),
        Err(e) => e.to_string(),
    };
    let without = refused(PostgresStore::connect(&url(&server, &files, None)).await);
    assert!(
        without.contains("connection requires a valid client certificate"),
        "{without}"
    );
    let foreign = url(&server, &files, Some((&files.foreign_cert, &files.foreign_key)));
    let foreign = refused(PostgresStore::connect(&foreign).await);
    // The server refuses the handshake: its alert is named.
    assert!(foreign.contains("UnknownCA"), "{foreign}");
}
