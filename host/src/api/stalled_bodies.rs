//! A request body that stops arriving is given up on: the client may pause between two pieces of
//! its body for at most the header timeout (`[server] header_timeout_ms`), as it may before its
//! headers, and is then answered 408 (over HTTP/1.1 on a closed connection; over HTTP/2 the
//! stream ends).
//!
//! hyper's own timer covers only the headers: a client that sent `Content-Length: 1000` and then
//! nothing would hold its connection, and a place under `max_connections`, for ever (a signed
//! hook reads its body before it checks the signature, so no token was needed for that). The
//! limit is on each pause, not on the whole body: a large component sent over a slow link
//! arrives in time as long as it keeps arriving.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::BoxError;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::{AppState, connections};

/// Why a request body was given up on: nothing of it arrived for `0`.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body stopped arriving: nothing of it came for {} ms ([server] header_timeout_ms)",
    .0.as_millis()
)]
pub struct BodyStalled(pub Duration);

/// The middleware: every request's body is read with [`StallLimited`], and an answer 408 closes
/// the connection (what is left of the body would otherwise be read as the next request).
pub(super) async fn limit_pauses(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let pause = state
        .options
        .header_timeout
        .unwrap_or(connections::DEFAULT_HEADER_TIMEOUT);
    let request = request.map(|body| Body::new(StallLimited::new(body, pause)));
    let mut response = next.run(request).await;
    if response.status() == axum::http::StatusCode::REQUEST_TIMEOUT {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The [`BodyStalled`] among the causes of `error`, if it is one.
pub(crate) fn stalled<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyStalled> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(stalled) = error.downcast_ref::<BodyStalled>() {
            return Some(stalled);
        }
        cause = error.source();
    }
    None
}

/// A body that fails with [`BodyStalled`] once nothing of it arrived for `pause`.
pub(crate) struct StallLimited {
    inner: Body,
    pause: Duration,
    /// Armed at the first wait (a body already in the connection's buffers never waits), and
    /// set again at each wait that follows a piece.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Whether the deadline is set for the wait under way: a wait begins at the first poll that
    /// finds nothing after a piece (not when the piece arrived: a reader may take its time
    /// between two reads).
    waiting: bool,
}

impl StallLimited {
    /// `inner`, waited on for at most `pause` at a time.
    pub(crate) fn new(inner: Body, pause: Duration) -> StallLimited {
        StallLimited {
            inner,
            pause,
            deadline: None,
            waiting: false,
        }
    }
}

impl http_body::Body for StallLimited {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|frame| frame.map_err(BoxError::from)))
            }
            Poll::Pending => {
                let pause = this.pause;
                let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
                if !this.waiting {
                    deadline.as_mut().reset(Instant::now() + pause);
                    this.waiting = true;
                }
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(BodyStalled(pause).into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::FromRequest;
    use futures_util::StreamExt as _;

    use super::*;

    /// A body of `pieces`, each sent after `gap`, that then never ends.
    fn dribbled(pieces: usize, gap: Duration) -> Body {
        let stream = futures_util::stream::iter(0..pieces)
            .then(move |_| async move {
                tokio::time::sleep(gap).await;
                Ok::<_, std::io::Error>(Bytes::from_static(b"x"))
            })
            .chain(futures_util::stream::pending());
        Body::from_stream(stream)
    }

    async fn read(body: Body, pause: Duration) -> Result<Bytes, axum::extract::rejection::BytesRejection> {
        let request = Request::new(Body::new(StallLimited::new(body, pause)));
        Bytes::from_request(request, &()).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_fails_naming_the_pause_and_one_that_keeps_arriving_does_not() {
        let pause = Duration::from_millis(500);
        // Five pieces 400 ms apart, two seconds in all, then nothing: given up on 500 ms after
        // the last, not before.
        let started = Instant::now();
        let rejection = read(dribbled(5, Duration::from_millis(400)), pause)
            .await
            .expect_err("stalled");
        assert!(
            started.elapsed() >= Duration::from_millis(2500),
            "{:?}",
            started.elapsed()
        );
        let stalled = stalled(&rejection).expect("the rejection's cause");
        assert_eq!(stalled.0, pause);
        assert_eq!(
            stalled.to_string(),
            "the request body stopped arriving: nothing of it came for 500 ms ([server] header_timeout_ms)"
        );
        // A whole body, however slow its start, is read.
        let whole = Body::from_stream(futures_util::stream::once(async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok::<_, std::io::Error>(Bytes::from_static(b"{}"))
        }));
        assert_eq!(read(whole, pause).await.expect("read"), Bytes::from_static(b"{}"));
    }
}
