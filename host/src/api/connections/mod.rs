//! Serving the API's connections, HTTP/1.1 and HTTP/2, each request's headers due within a
//! deadline.
//!
//! Why not `axum::serve`: it gives hyper no timer, so a client that connects and sends nothing,
//! or sends its headers a byte at a time (slowloris), keeps its connection (a file descriptor and
//! a task) for as long as it likes; enough such clients use up the process's descriptors and
//! lock everyone else out. Here a request's headers must have arrived within
//! `[server] header_timeout_ms` (30 s by default) of the connection being ready for them, or the
//! connection is closed. That also closes a kept-alive connection idle for as long, as web
//! servers do (nginx: 75 s).
//!
//! Both protocols are served on the same port: HTTP/2 in clear to a client that starts with
//! its preface (h2c with prior knowledge, as gRPC clients and proxies such as Envoy do), and
//! over TLS to one that chose `h2` by ALPN (the `preface` module); everything else is
//! HTTP/1.1. An HTTP/2 connection that answers no request for the header timeout is closed too
//! (the `activity` module). With HTTP/2 off ([`Http2::enabled`]), a client that opens with the
//! preface is told HTTP/1.1 is required, and over TLS `h2` is not offered.
//!
//! And however many connections a flood opens within that time, at most
//! [`super::ApiOptions::max_connections`] are served at once: past it, new ones wait in the
//! kernel's queue until one closes, instead of being accepted until the process runs out of
//! file descriptors (and the store and the connectors with it).

mod activity;
mod preface;

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper::service::Service as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::service::Metrics;
use activity::Activity;
use preface::Protocol;

/// How long a client has to send a request's headers when [`super::ApiOptions::header_timeout`]
/// does not say.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How many connections are served at once when `[server] max_connections` does not say: three
/// quarters of the file descriptors the process may open (`RLIMIT_NOFILE`, which `whenever serve`
/// raises to its hard limit at start), leaving the rest to the store and the connectors; at
/// least 64.
pub fn default_max_connections() -> usize {
    #[cfg(unix)]
    if let Some(limit) = open_files_limit() {
        let open_files = usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX);
        return (open_files / 4 * 3).max(64);
    }
    10_000
}

/// This process's limit of open files (`RLIMIT_NOFILE`), soft and hard.
#[cfg(unix)]
fn open_files_limit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes the limit into the struct it is given, nothing else.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// Raises this process's soft limit of open files (`RLIMIT_NOFILE`) to its hard limit (at most
/// 1,048,576), as servers do: the soft limit is often 1,024, a few hundred clients. A raise the
/// system refuses leaves the limit as it was.
pub fn raise_open_files_limit() {
    #[cfg(unix)]
    if let Some(limit) = open_files_limit() {
        let wanted = limit.rlim_max.min(1 << 20);
        if wanted > limit.rlim_cur {
            let raised = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: limit.rlim_max,
            };
            // SAFETY: `setrlimit` reads the struct it is given, nothing else; a refused raise
            // leaves the limit as it was.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
        }
    }
}

/// Whether HTTP/2 is served beside HTTP/1.1, and how many requests one HTTP/2 connection may
/// have under way at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2 {
    /// Off: HTTP/1.1 only; a client that opens with HTTP/2's preface gets a GOAWAY saying
    /// `HTTP_1_1_REQUIRED`, and over TLS `h2` is not offered.
    pub enabled: bool,
    /// The connection's `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub max_streams: u32,
    /// How often the connection is pinged, and how long the client has to answer before it is
    /// closed (`None`: no pings).
    pub keepalive: Option<Duration>,
}

impl Default for Http2 {
    fn default() -> Self {
        Http2 {
            enabled: true,
            max_streams: crate::config::DEFAULT_HTTP2_MAX_STREAMS,
            keepalive: Some(Duration::from_millis(crate::config::DEFAULT_HTTP2_KEEPALIVE_MS)),
        }
    }
}

/// What bounds the connections [`serve`] serves.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// How long a client has to send a request's headers, and a connection may sit idle.
    pub(super) header_timeout: Duration,
    /// How many connections are served at once (`None`: no limit).
    pub(super) max_connections: Option<usize>,
    /// HTTP/2 on or off, and its streams per connection.
    pub(super) http2: Http2,
}

/// Serves `router` on the connections `listener` accepts, at most `limits.max_connections` at
/// once, until `shutdown` resolves, then stops accepting, lets each connection finish the
/// requests it is answering (an idle one is closed), and returns once all are closed. `metrics`
/// counts the connections, and the times the limit held new ones back.
pub(super) async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: Limits,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    let protocols = Arc::new(Protocols::new(limits.header_timeout, limits.http2));
    let max_connections = limits.max_connections.map(|max| max.max(1));
    metrics.connections_limited_to(max_connections);
    let slots = max_connections.map(|max| Arc::new(Semaphore::new(max)));
    // Stopping is announced to every connection; each holds a sender of `open`, so the
    // receiver hears nothing more once the last has closed.
    let (stopping, stop) = watch::channel(false);
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let mut shutdown = pin!(shutdown);
    loop {
        // A slot first: at the limit, new connections wait in the kernel's queue.
        let slot = match &slots {
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    metrics.connections_held_back();
                    tokio::select! {
                        slot = slots.clone().acquire_owned() => slot.ok(),
                        () = &mut shutdown => break,
                    }
                }
            },
            None => None,
        };
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let open_now = metrics.connection_opened();
        let (protocols, router, metrics, stop, open) = (
            protocols.clone(),
            router.clone(),
            metrics.clone(),
            stop.clone(),
            open.clone(),
        );
        tokio::spawn(async move {
            // An error here is the client's (it went away, sent garbage or nothing in time);
            // hyper answered what it could. The slot is free once the connection is closed.
            protocols.serve(io, router, &metrics, stop).await;
            drop(open_now);
            drop(slot);
            drop(open);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    drop(open);
    let _ = all_closed.recv().await;
    Ok(())
}

/// How both protocols serve a connection.
struct Protocols {
    http1: http1::Builder,
    /// `None`: HTTP/2 is off.
    http2: Option<http2::Builder<TokioExecutor>>,
    header_timeout: Duration,
}

impl Protocols {
    fn new(header_timeout: Duration, settings: Http2) -> Protocols {
        let mut http1 = http1::Builder::new();
        http1.timer(TokioTimer::new()).header_read_timeout(header_timeout);
        let http2 = settings.enabled.then(|| {
            let mut http2 = http2::Builder::new(TokioExecutor::new());
            http2
                .timer(TokioTimer::new())
                .max_concurrent_streams(settings.max_streams)
                .keep_alive_interval(settings.keepalive);
            if let Some(keepalive) = settings.keepalive {
                http2.keep_alive_timeout(keepalive);
            }
            http2
        });
        Protocols {
            http1,
            http2,
            header_timeout,
        }
    }

    /// Serves one connection in the protocol its first bytes name, until it closes, its client
    /// is silent for the header timeout, or `stop` says the server stops (then gracefully).
    async fn serve<I>(&self, io: I, router: Router, metrics: &Metrics, mut stop: watch::Receiver<bool>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let told = tokio::select! {
            told = tokio::time::timeout(self.header_timeout, preface::read_protocol(io)) => told,
            _ = stop.wait_for(|stopping| *stopping) => return,
        };
        // Nothing, or too little to tell, within the header timeout: closed like a silent client.
        let Ok(Ok((protocol, io))) = told else { return };
        let service = TowerToHyperService::new(router);
        match protocol {
            Protocol::Http1 => {
                let connection = self.http1.serve_connection(TokioIo::new(io), service);
                // hyper's own header timer closes an idle HTTP/1.1 connection.
                let idle = std::future::pending();
                until_closed(pin!(connection), |c| c.graceful_shutdown(), idle, stop).await;
            }
            Protocol::Http2 => {
                let Some(http2) = &self.http2 else {
                    return refuse_http2(io).await;
                };
                metrics.http2_connection_opened();
                let activity = Activity::new();
                let counted = activity.clone();
                let service = hyper::service::service_fn(move |request| {
                    let answering = counted.answering();
                    let answer = service.call(request);
                    async move {
                        let answer = answer.await;
                        drop(answering);
                        answer
                    }
                });
                let connection = http2.serve_connection(TokioIo::new(io), service);
                let idle = activity.idle_for(self.header_timeout);
                until_closed(pin!(connection), |c| c.graceful_shutdown(), idle, stop).await;
            }
        }
    }
}

/// Answers a client that opened with HTTP/2's preface while HTTP/2 is off: the server's (empty)
/// SETTINGS, then a GOAWAY with error `HTTP_1_1_REQUIRED` (RFC 9113 §7: "the endpoint requires
/// that HTTP/1.1 be used instead of HTTP/2"), so the client says why rather than "connection
/// closed"; then closes.
async fn refuse_http2<I: AsyncWrite + Unpin>(mut io: I) {
    use tokio::io::AsyncWriteExt as _;
    const SETTINGS: [u8; 9] = [0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    const HTTP_1_1_REQUIRED: u8 = 0xd;
    const GOAWAY: [u8; 17] = [0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, HTTP_1_1_REQUIRED];
    let _ = io.write_all(&[SETTINGS.as_slice(), GOAWAY.as_slice()].concat()).await;
    let _ = io.shutdown().await;
}

/// Drives `connection` until it closes; once `idle` resolves (an HTTP/2 connection without a
/// request for the header timeout) or the server stops, it is shut down gracefully (requests
/// under way are answered, then it closes) and driven to its end.
async fn until_closed<C, E>(
    mut connection: Pin<&mut C>,
    shut_down: fn(Pin<&mut C>),
    idle: impl Future<Output = ()>,
    mut stop: watch::Receiver<bool>,
) where
    C: Future<Output = Result<(), E>>,
{
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stop.wait_for(|stopping| *stopping) => {}
        () = idle => {}
    }
    shut_down(connection.as_mut());
    let _ = connection.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_one_and_three_quarters_of_it_are_for_connections() {
        let before = open_files_limit().expect("the limit");
        raise_open_files_limit();
        let wanted = before.rlim_max.min(1 << 20).max(before.rlim_cur);
        assert_eq!(open_files_limit().expect("the limit").rlim_cur, wanted);
        let expected = (usize::try_from(wanted).unwrap_or(usize::MAX) / 4 * 3).max(64);
        assert_eq!(default_max_connections(), expected);
    }
}
