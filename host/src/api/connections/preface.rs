//! Telling an HTTP/2 connection from an HTTP/1.1 one by its first bytes.
//!
//! An HTTP/2 client without TLS (h2c "with prior knowledge", RFC 9113 §3.3) and one that chose
//! `h2` by ALPN over TLS both open with the same 24-byte preface, which no HTTP/1.1 request starts
//! with. So the server reads until the bytes either differ from the preface (an HTTP/1.1 request
//! differs at its first or second byte) or are all of it, then hands the connection, with those
//! bytes put back, to the protocol they named. The read is bounded by the caller's deadline: a
//! client that sends nothing is closed like one that sends no headers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};

/// What every HTTP/2 connection starts with (RFC 9113 §3.4).
pub(super) const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection's first bytes name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    /// Anything that is not HTTP/2's preface (hyper's HTTP/1.1 parser judges the rest).
    Http1,
    /// HTTP/2, in clear or over TLS.
    Http2,
}

/// Reads `io`'s first bytes until they tell the protocol, and returns it with the connection,
/// the bytes read put back in front. An error if the client closes before they tell.
pub(super) async fn read_protocol<I>(mut io: I) -> io::Result<(Protocol, Rewound<I>)>
where
    I: AsyncRead + Unpin,
{
    let mut seen = [0; HTTP2_PREFACE.len()];
    let mut len = 0;
    let protocol = loop {
        let read = io.read(&mut seen[len..]).await?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed before its first request",
            ));
        }
        len += read;
        if seen[..len] != HTTP2_PREFACE[..len] {
            break Protocol::Http1;
        }
        if len == HTTP2_PREFACE.len() {
            break Protocol::Http2;
        }
    };
    Ok((
        protocol,
        Rewound {
            seen,
            len,
            given: 0,
            io,
        },
    ))
}

/// A connection with the bytes [`read_protocol`] read put back: reads give those first, then
/// the connection's own; writes go straight to it.
#[derive(Debug)]
pub(super) struct Rewound<I> {
    seen: [u8; HTTP2_PREFACE.len()],
    len: usize,
    given: usize,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewound<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.given < this.len {
            let rest = &this.seen[this.given..this.len];
            let count = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..count]);
            this.given += count;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewound<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt as _;

    use super::*;

    /// What `read_protocol` makes of `sent`, written in pieces of `piece` bytes, and every byte
    /// read back through the rewound connection.
    async fn protocol_of(sent: &[u8], piece: usize) -> (Protocol, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(64);
        let sent = sent.to_vec();
        let writing = tokio::spawn(async move {
            for chunk in sent.chunks(piece) {
                client.write_all(chunk).await.expect("write");
                tokio::task::yield_now().await;
            }
        });
        let (protocol, mut rewound) = read_protocol(server).await.expect("a protocol");
        writing.await.expect("the writer");
        let mut back = Vec::new();
        rewound.read_to_end(&mut back).await.expect("read back");
        (protocol, back)
    }

    #[tokio::test]
    async fn http1_requests_are_told_at_once_and_read_back_whole() {
        for request in [
            &b"GET /healthz HTTP/1.1\r\n\r\n"[..],
            b"POST /v1/tasks HTTP/1.1\r\n\r\n",
            b"PATCH / HTTP/1.1\r\n\r\n",
        ] {
            for piece in [1, 3, 100] {
                let (protocol, back) = protocol_of(request, piece).await;
                assert_eq!(protocol, Protocol::Http1, "{}", String::from_utf8_lossy(request));
                assert_eq!(back, request, "every byte comes back, in order");
            }
        }
    }

    #[tokio::test]
    async fn http2_is_told_by_its_whole_preface_however_it_arrives() {
        let mut opening = HTTP2_PREFACE.to_vec();
        opening.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        for piece in [1, 5, 24, 100] {
            let (protocol, back) = protocol_of(&opening, piece).await;
            assert_eq!(protocol, Protocol::Http2);
            assert_eq!(back, opening);
        }
    }

    #[tokio::test]
    async fn a_connection_closed_early_tells_nothing() {
        let (client, server) = tokio::io::duplex(64);
        drop(client);
        let error = read_protocol(server).await.expect_err("nothing was sent");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(&HTTP2_PREFACE[..10]).await.expect("write");
        drop(client);
        assert!(read_protocol(server).await.is_err(), "half a preface tells nothing");
    }
}
