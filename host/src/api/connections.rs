//! Serving the API's connections (HTTP/1.1), each request's headers due within a deadline.
//!
//! Why not `axum::serve`: it gives hyper no timer, so a client that connects and sends nothing,
//! or sends its headers a byte at a time (slowloris), keeps its connection (a file descriptor and
//! a task) for as long as it likes; enough such clients use up the process's descriptors and
//! lock everyone else out. Here a request's headers must have arrived within
//! `[server] header_timeout_ms` (30 s by default) of the connection being ready for them, or the
//! connection is closed. That also closes a kept-alive connection idle for as long, as web
//! servers do (nginx: 75 s).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

/// How long a client has to send a request's headers when [`super::ApiOptions::header_timeout`]
/// does not say.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on the connections `listener` accepts until `shutdown` resolves, then stops
/// accepting, lets each connection finish the request it is answering (an idle one is closed),
/// and returns once all are closed.
pub(super) async fn serve<L>(
    mut listener: L,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let open = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let connection = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(router.clone()));
        // An error here is the client's (it went away, sent garbage or nothing in time); hyper
        // answered what it could.
        tokio::spawn(open.watch(connection));
    }
    drop(listener);
    open.shutdown().await;
    Ok(())
}
