//! `whenever serve [--listen ADDR] [--db PATH] [--steps DIR]... [--retailmax] [--config FILE]`: the
//! service and its HTTP API. The bearer token comes from `WHENEVER_TOKEN`, or from the file
//! `WHENEVER_TOKEN_FILE` names (read again when it changes); it is required when the address is
//! not a loopback one. With `[server] tls_cert` and `tls_key` in the config the API speaks HTTPS
//! only. The `--steps` folders are watched: a step dropped there is deployed live.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::{EXIT_BAD_INPUT, EXIT_COMPLETED, EXIT_INTERNAL};
use crate::api::{self, ApiOptions};
use crate::service::{Service, ServiceError, ServiceOptions, StepsSeen};
use crate::store::StoreError;
use crate::task::TaskStatus;

/// At start, a certificate that expires within this many days is warned about.
const CERTIFICATE_WARNING_DAYS: i64 = 14;

/// Arguments of `whenever serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on (`127.0.0.1:8080`, `[::1]:8080`, or a host name and port such as
    /// `localhost:8080`, resolved to its first IPv4 address, else its first). Beyond loopback,
    /// `WHENEVER_TOKEN` must be set.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = listen_address)]
    pub listen: SocketAddr,
    /// The SQLite database file (created if missing), or a PostgreSQL database shared by several
    /// hosts: a value starting with `postgres://` or `postgresql://`.
    #[arg(long, default_value = "whenever.db")]
    pub db: PathBuf,
    /// A folder of steps (`NAME.wasm` with `NAME.toml`), or one `NAME.wasm`, deployed at start
    /// when new or changed, then watched: a file added or changed there is deployed live;
    /// repeatable. Default: the bundled RetailMax steps.
    #[arg(long = "steps")]
    pub steps: Vec<PathBuf>,
    /// The bundled RetailMax steps too, with `--steps` (a step there of the same name serves
    /// instead of the bundled one).
    #[arg(long)]
    pub retailmax: bool,
    /// The config file (connectors, scheduler, runtime, server, store, hooks).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `--listen`'s address: written as one, or a host name and port resolved to its first IPv4
/// address (else its first).
fn listen_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(address) = text.parse() {
        return Ok(address);
    }
    let resolved: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(text)
        .map_err(|e| format!("{e} (give an address and port, such as 127.0.0.1:8080 or localhost:8080)"))?
        .collect();
    // IPv4 first: `localhost` resolves to `::1` first on many systems, and a server bound there
    // alone is out of reach of the clients that ask 127.0.0.1 (the CLI's default among them).
    resolved
        .iter()
        .find(|address| address.is_ipv4())
        .or(resolved.first())
        .copied()
        .ok_or_else(|| format!("{text} resolves to no address"))
}

/// Runs the service until SIGTERM or Ctrl-C, then stops gracefully (see [`stop`]).
pub(crate) async fn run(args: ServeArgs) -> u8 {
    let token = std::env::var("WHENEVER_TOKEN").ok().filter(|t| !t.is_empty());
    let token_file = std::env::var_os("WHENEVER_TOKEN_FILE")
        .filter(|f| !f.is_empty())
        .map(PathBuf::from);
    if !args.listen.ip().is_loopback() && token.is_none() && token_file.is_none() {
        eprintln!(
            "whenever serve: listening on {} needs a bearer token: set WHENEVER_TOKEN (or \
             WHENEVER_TOKEN_FILE)",
            args.listen
        );
        return EXIT_BAD_INPUT;
    }
    let options = ServiceOptions {
        db: args.db.clone(),
        steps: args.steps.clone(),
        with_bundled: args.retailmax,
        no_steps: false,
        config: args.config,
    };
    // Before the start-up deploy reads the folders: a file written meanwhile is then seen as
    // changed by the watcher, and deployed.
    let seen = StepsSeen::now(&args.steps);
    for warning in crate::catalog::stray_manifest_warnings(&args.steps) {
        eprintln!("whenever serve: warning: {warning}");
    }
    // The port first: a host that cannot listen makes no database and resumes no task.
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("whenever serve: cannot listen on {}: {e}", args.listen);
            return EXIT_INTERNAL;
        }
    };
    // A mistyped path makes a new, empty database: the start-up line says so.
    let new_database = !crate::store::postgres::is_postgres_url(&args.db.to_string_lossy()) && !args.db.exists();
    let service = match Service::start(&options).await {
        Ok(service) => service,
        Err(e) => {
            eprintln!("whenever serve: {e}");
            let bad_input = match &e {
                ServiceError::Setup(setup) => setup.is_bad_input(),
                // Another host has the SQLite file, or a newer one wrote it: the operator's to fix.
                ServiceError::Store(StoreError::Unusable(_)) => true,
                ServiceError::Store(_) => false,
                _ => true,
            };
            return if bad_input { EXIT_BAD_INPUT } else { EXIT_INTERNAL };
        }
    };
    let api_options = match ApiOptions::from_service(&service, token, token_file.as_deref()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("whenever serve: {message}");
            service.unregister_host().await;
            return EXIT_BAD_INPUT;
        }
    };
    if !args.steps.is_empty() {
        // Dropped into a watched folder, a new or changed step is deployed live.
        service.watch_steps(args.steps.clone(), std::time::Duration::from_secs(1), seen);
    }
    let mut signals = StopSignals::catch();
    let steps: Vec<String> = service
        .scheduler()
        .catalog()
        .snapshot()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let db = crate::store::postgres::redact(&args.db.to_string_lossy());
    if let Some(host) = service.host_id() {
        eprintln!(
            "whenever serve: host {host} shares database {db} (lease {} ms)",
            service.config().cluster.lease_ms
        );
    }
    let scheme = if api_options.tls.is_some() { "https" } else { "http" };
    if let Some(tls) = api_options.tls.as_ref().filter(|tls| tls.key_readable_by_others()) {
        eprintln!(
            "whenever serve: warning: the TLS key {} can be read by other users of this machine; \
             chmod 600 it",
            tls.key_file().display()
        );
    }
    if let Some(not_after) = api_options.tls.as_ref().and_then(|tls| tls.not_after()) {
        let left = not_after - chrono::Utc::now();
        if left < chrono::Duration::days(CERTIFICATE_WARNING_DAYS) {
            eprintln!(
                "whenever serve: warning: the HTTPS certificate expires on {} (in {} days); renew it \
                 (its files are read again when they change)",
                not_after.to_rfc3339(),
                left.num_days()
            );
        }
    }
    if api_options.tls.is_none() && !args.listen.ip().is_loopback() {
        eprintln!(
            "whenever serve: warning: plain HTTP beyond loopback: the bearer token and the tasks' data \
             cross the network unencrypted; set [server] tls_cert and tls_key, or serve behind a TLS proxy"
        );
    }
    for unknown in service.config().steps.keys().filter(|name| !steps.contains(name)) {
        eprintln!(
            "whenever serve: warning: the config's [steps.{unknown}] names no step this host serves \
             (it has {}); it applies to a step of that name deployed later",
            if steps.is_empty() {
                "none".to_string()
            } else {
                steps.join(", ")
            }
        );
    }
    let simulated = whenever_connectors::registry::simulated_names(&service.config().connectors);
    if !simulated.is_empty() {
        eprintln!(
            "whenever serve: simulated connectors (nothing they are asked reaches a real service; \
             a [connectors.NAME] section with the service's kind replaces one): {}",
            simulated.join(", ")
        );
    }
    eprintln!(
        "whenever serve: listening on {scheme}://{} ({}database {}, {})",
        listener.local_addr().unwrap_or(args.listen),
        if new_database { "new " } else { "" },
        db,
        serving(&steps)
    );
    let (stop_api, api_stopping) = tokio::sync::oneshot::channel::<()>();
    let api_stopped = async {
        let _ = api_stopping.await;
    };
    let mut api = tokio::spawn(api::serve_on_own_thread(
        listener,
        service.clone(),
        api_options,
        api_stopped,
    ));
    let signal = tokio::select! {
        served = &mut api => {
            eprintln!("whenever serve: the API stopped: {}", api_failure(served));
            service.unregister_host().await;
            return EXIT_INTERNAL;
        }
        signal = signals.next() => signal,
    };
    stop(service, signal, signals, stop_api, api).await
}

/// Stops gracefully after `signal`: first, with `[server] drain_ms`, the host serves on for that
/// long with `/readyz` answering 503 (a signal meanwhile ends the drain); then the API takes no
/// new connections, the drives under way get `[server] shutdown_grace_ms` to finish, the API
/// answers its last requests; a signal then stops at once. Tasks left running resume at the next
/// start.
async fn stop(
    service: Service,
    signal: &'static str,
    mut signals: StopSignals,
    stop_api: tokio::sync::oneshot::Sender<()>,
    api: tokio::task::JoinHandle<std::io::Result<()>>,
) -> u8 {
    let grace = std::time::Duration::from_millis(service.config().server.shutdown_grace_ms);
    let clustered = service.host_id().is_some();
    let drain = std::time::Duration::from_millis(service.config().server.drain_ms);
    if !drain.is_zero() {
        service.leave_rotation();
        eprintln!(
            "whenever serve: {signal}: draining for {} ms (/readyz answers 503, all else goes on; a \
             second signal stops draining)",
            drain.as_millis()
        );
        tokio::select! {
            _ = tokio::time::sleep(drain) => {}
            again = signals.next() => eprintln!("whenever serve: {again}: draining stopped"),
        }
    }
    eprintln!(
        "whenever serve: {signal}: stopping (drives under way: {}; they get up to {} ms to \
         finish; a second signal stops at once)",
        service.drives_under_way(),
        grace.as_millis()
    );
    let _ = stop_api.send(());
    let stopped = tokio::select! {
        stopped = service.stop(grace) => stopped,
        again = signals.next() => {
            eprintln!(
                "whenever serve: {again}: stopped at once (tasks left running: {}; {})",
                service.drives_under_way(),
                if clustered {
                    "another host takes them over once their leases expire"
                } else {
                    "they resume at the next start"
                }
            );
            return EXIT_COMPLETED;
        }
    };
    // The API's last requests are answered (a waiting one as its task is now), briefly.
    match tokio::time::timeout(std::time::Duration::from_secs(2), api).await {
        Ok(Ok(Ok(()))) | Err(_) => {}
        Ok(served) => eprintln!("whenever serve: the API stopped: {}", api_failure(served)),
    }
    let where_next = if clustered {
        "another host takes them over"
    } else {
        "they resume at the next start"
    };
    // A host of its own leaves every task still running in the store to its next start: those
    // whose drives the grace cut short, and those that were queued for a worker (more than
    // `max_concurrent_tasks`) and never started. A cluster's hosts claim only what they drive.
    let left = if clustered {
        None
    } else {
        service.store().count_tasks().await.ok()
    };
    let left = left.map_or(stopped.interrupted as u64, |counts| {
        counts.get(&TaskStatus::Running).copied().unwrap_or(0)
    });
    eprintln!(
        "whenever serve: stopped (drives under way: {}, finished: {}; tasks left running: {left}; \
         {where_next})",
        stopped.under_way,
        stopped.under_way.saturating_sub(stopped.interrupted),
    );
    EXIT_COMPLETED
}

/// The steps serving, as the start-up line names them.
fn serving(steps: &[String]) -> String {
    match steps {
        [] => "no steps yet: deploy them with `whenever deploy`, or into the steps folder".to_string(),
        [one] => format!("1 step: {one}"),
        many => format!("{} steps: {}", many.len(), many.join(", ")),
    }
}

/// Why the API's thread ended.
fn api_failure(served: Result<std::io::Result<()>, tokio::task::JoinError>) -> String {
    match served {
        Ok(Ok(())) => "it ended without being told to".to_string(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

/// The signals that stop the service, SIGTERM (what supervisors send) and SIGINT (Ctrl-C),
/// caught from the moment this is made (so one sent right after the service says it listens
/// is not the default action, which kills).
struct StopSignals {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn catch() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            StopSignals {
                terminate: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Resolves with the signal's name when one arrives.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            async fn one(signal: &mut Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! {
                _ = one(&mut self.terminate) => "SIGTERM",
                _ = one(&mut self.interrupt) => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_an_address_or_a_host_name_and_port() {
        assert_eq!(
            listen_address("127.0.0.1:8080"),
            Ok("127.0.0.1:8080".parse().expect("address"))
        );
        assert_eq!(listen_address("[::1]:0"), Ok("[::1]:0".parse().expect("address")));
        let local = listen_address("localhost:8080").expect("localhost resolves");
        assert_eq!(local, "127.0.0.1:8080".parse().expect("address"), "IPv4 first");
        let refused = listen_address("localhost").expect_err("no port");
        assert!(refused.contains("give an address and port"), "{refused}");
    }

    #[test]
    fn the_start_up_line_names_the_steps_or_says_there_are_none() {
        assert_eq!(
            serving(&[]),
            "no steps yet: deploy them with `whenever deploy`, or into the steps folder"
        );
        assert_eq!(serving(&["a".into()]), "1 step: a");
        assert_eq!(serving(&["a".into(), "b".into()]), "2 steps: a, b");
    }
}
