//! Refusals given without reading the request's body (401, 403, 404, 405, 413: auth, an unknown
//! route or method, a body over the limit) close the connection, and first read what is left of
//! a large body (as nginx's lingering close does).
//!
//! - **Close.** The server does not read an unread body of any size to its end, so a client that
//!   reused the connection for its next request would find it closed under that request (a 403
//!   to a component upload did so in CI); `Connection: close` tells the client not to.
//! - **Linger.** A socket closed with unread bytes in its receive buffer is reset, and a client
//!   still sending its body then gets "broken pipe" and loses the answer already sent to it: a
//!   `whenever create` of an 8 MB task was told it could not reach the server, where it had been
//!   refused with 413 (seen under load). So the rest of a large body is read and dropped, up to
//!   [`LINGER_BYTES`] within [`LINGER_TIME`], before the answer goes out.
//!
//! HTTP/2 has neither problem (the unread body's stream alone is reset).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::StreamExt as _;
use http_body::{Frame, SizeHint};

/// Bodies up to this size are kept whole in the connection's buffers and need no lingering read.
const SMALL_BODY: u64 = 64 << 10;

/// The most of a refused body read and dropped before the answer.
pub(crate) const LINGER_BYTES: usize = 64 << 20;

/// The longest a refusal waits for the rest of the body.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(5);

/// The middleware (see the module's docs).
pub(super) async fn close_after_refusal(request: Request, next: Next) -> Response {
    let headers = request.headers();
    if request.version() >= axum::http::Version::HTTP_2 {
        return next.run(request).await;
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    let has_body = length.is_some_and(|length| length > 0) || chunked;
    if !has_body {
        return next.run(request).await;
    }
    // A large body is read through a handle this middleware keeps, so that what the handler
    // leaves unread can be read after it.
    let (request, rest) = if chunked || length.is_some_and(|length| length > SMALL_BODY) {
        let (parts, body) = request.into_parts();
        let shared = Arc::new(Mutex::new(body));
        let request = Request::from_parts(parts, Body::new(SharedBody(shared.clone())));
        (request, Some(shared))
    } else {
        (request, None)
    };
    let mut response = next.run(request).await;
    if matches!(response.status().as_u16(), 401 | 403 | 404 | 405 | 413) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        if let Some(rest) = rest {
            let body = std::mem::take(&mut *rest.lock().unwrap_or_else(|p| p.into_inner()));
            let _ = tokio::time::timeout(LINGER_TIME, drop_up_to(body, LINGER_BYTES)).await;
        }
    }
    response
}

/// Reads `body` and drops it, until its end or `most` bytes.
async fn drop_up_to(body: Body, most: usize) {
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        read = read.saturating_add(chunk.len());
        if read >= most {
            break;
        }
    }
}

/// A request body read through a shared handle: what its reader leaves, the handle still holds.
struct SharedBody(Arc<Mutex<Body>>);

impl http_body::Body for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut body = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Pin::new(&mut *body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).size_hint()
    }
}
