//! `whenever serve [--listen ADDR] [--db PATH] [--steps DIR]... [--config FILE]`: the service and
//! its HTTP API. The bearer token comes from `WHENEVER_TOKEN`; it is required when the address is
//! not a loopback one. The `--steps` folders are watched: a step dropped there is deployed live.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::{EXIT_BAD_INPUT, EXIT_COMPLETED, EXIT_INTERNAL};
use crate::api::{self, ApiOptions};
use crate::service::{Service, ServiceError, ServiceOptions};

/// Arguments of `whenever serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on. Beyond loopback, `WHENEVER_TOKEN` must be set.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The SQLite database file (created if missing), or a PostgreSQL database shared by several
    /// hosts: a value starting with `postgres://` or `postgresql://`.
    #[arg(long, default_value = "whenever.db")]
    pub db: PathBuf,
    /// A folder of steps (`NAME.wasm` with `NAME.toml`) deployed at start when new or changed,
    /// then watched: a file added or changed there is deployed live; repeatable. Default: the
    /// bundled RetailMax steps.
    #[arg(long = "steps")]
    pub steps: Vec<PathBuf>,
    /// The config file (connectors, scheduler, runtime, server, store, hooks).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Runs the service until Ctrl-C.
pub(crate) async fn run(args: ServeArgs) -> u8 {
    let token = std::env::var("WHENEVER_TOKEN").ok().filter(|t| !t.is_empty());
    if !args.listen.ip().is_loopback() && token.is_none() {
        eprintln!(
            "whenever serve: listening on {} needs a bearer token: set WHENEVER_TOKEN",
            args.listen
        );
        return EXIT_BAD_INPUT;
    }
    let options = ServiceOptions {
        db: args.db.clone(),
        steps: args.steps.clone(),
        no_steps: false,
        config: args.config,
    };
    let service = match Service::start(&options).await {
        Ok(service) => service,
        Err(e) => {
            eprintln!("whenever serve: {e}");
            let bad_input = match &e {
                ServiceError::Setup(setup) => setup.is_bad_input(),
                ServiceError::Store(_) => false,
                _ => true,
            };
            return if bad_input { EXIT_BAD_INPUT } else { EXIT_INTERNAL };
        }
    };
    let api_options = match ApiOptions::from_service(&service, token) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("whenever serve: {message}");
            return EXIT_BAD_INPUT;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("whenever serve: cannot listen on {}: {e}", args.listen);
            return EXIT_INTERNAL;
        }
    };
    if !args.steps.is_empty() {
        // Dropped into a watched folder, a new or changed step is deployed live.
        service.watch_steps(args.steps.clone(), std::time::Duration::from_secs(1));
    }
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
    eprintln!(
        "whenever serve: listening on http://{} (database {}, {} steps: {})",
        listener.local_addr().unwrap_or(args.listen),
        db,
        steps.len(),
        steps.join(", ")
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match api::serve_on_own_thread(listener, service, api_options, shutdown).await {
        Ok(()) => EXIT_COMPLETED,
        Err(e) => {
            eprintln!("whenever serve: {e}");
            EXIT_INTERNAL
        }
    }
}
