//! HTTP/2 beside HTTP/1.1 on the API's one port: a client that opens with HTTP/2's preface (h2c
//! with prior knowledge) is served the same API, bad input included, many requests over one
//! connection; an HTTP/2 connection that asks nothing is closed after the header timeout, as an
//! HTTP/1.1 one is, while a long answer keeps it open; one whose client answers no ping is
//! closed; and one that breaks the protocol gets a GOAWAY naming its error, while the server
//! serves on.

use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use whenever_step_artifacts::testing::*;

use whenever::api::ApiOptions;
use whenever::api::connections::Http2;

use crate::service::{db_in, error_message, metric, options, read_until_closed, start, start_impatient};

/// A client that speaks HTTP/2 from its first byte (no TLS, no upgrade).
fn http2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client")
}

/// The status, HTTP version and JSON body of `request`'s answer.
async fn answer(request: reqwest::RequestBuilder) -> (u16, reqwest::Version, Value) {
    let answer = request.send().await.expect("answered");
    let (status, version) = (answer.status().as_u16(), answer.version());
    let text = answer.text().await.expect("body");
    (
        status,
        version,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_served_on_the_same_port_as_http1_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[COMPLETES, WRITE_A], options()).await;
    let client = http2_client();
    let url = |path: &str| format!("{}{path}", server.base());

    let (status, version, health) = answer(client.get(url("/healthz"))).await;
    assert_eq!((status, version), (200, reqwest::Version::HTTP_2), "{health}");

    // 24 tasks at once, multiplexed over that one connection, each answered once completed.
    let mut creating = tokio::task::JoinSet::new();
    for n in 0..24 {
        let request = client
            .post(url("/v1/tasks?wait=20000"))
            .body(json!({"finish": true, "n": n}).to_string());
        creating.spawn(answer(request));
    }
    while let Some(created) = creating.join_next().await {
        let (status, version, task) = created.expect("joined");
        assert_eq!(version, reqwest::Version::HTTP_2);
        assert_eq!((status, &task["status"]), (201, &json!("completed")), "{task}");
    }

    // Bad input gets the same answers as over HTTP/1.1.
    let (status, _, error) = answer(client.post(url("/v1/tasks")).body("{\"start\": tru")).await;
    assert_eq!(status, 400, "{error}");
    assert!(error_message(&error).contains("malformed JSON"), "{error}");
    let big = json!({"blob": "x".repeat(70 << 10)}).to_string();
    let (status, _, error) = answer(client.post(url("/v1/tasks")).body(big)).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (status, _, error) = answer(client.get(url("/v1/tasks/t_nope"))).await;
    assert_eq!((status, error["error"]["code"].as_str()), (404, Some("not_found")));
    // The connection outlived the refusals.
    let (status, _, _) = answer(client.get(url("/healthz"))).await;
    assert_eq!(status, 200);

    // An HTTP/1.1 client on the same port, which sees the HTTP/2 connection counted.
    let metrics = server.http().get(url("/metrics")).send().await.expect("answered");
    assert_eq!(metrics.version(), reqwest::Version::HTTP_11);
    let text = metrics.text().await.expect("text");
    assert_eq!(metric(&text, "whenever_http2_connections_total"), 1, "{text}");
    assert!(metric(&text, "whenever_http_connections_total") >= 2, "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_connections_that_ask_nothing_are_closed_and_long_answers_keep_them() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_impatient(&dir).await;
    let address = server.address();
    let limit = Duration::from_secs(10);

    // Half of HTTP/2's preface, then nothing: closed like a silent HTTP/1.1 client.
    let mut half = tokio::net::TcpStream::connect(&address).await.expect("connected");
    half.write_all(b"PRI * HTTP/2.0\r\n").await.expect("sent");
    assert!(
        read_until_closed(&mut half, limit).await.is_some(),
        "half a preface is closed"
    );

    // A task that waits, for a long poll over HTTP/2 that lasts three times the header timeout.
    let (status, task) = server.post("/v1/tasks?wait=20000", &json!({"start": true})).await;
    assert_eq!((status, &task["status"]), (201, &json!("waiting")), "{task}");
    let id = task["id"].as_str().expect("id");
    let etag = format!("\"{}\"", task["revision"]);

    let tcp = tokio::net::TcpStream::connect(&address).await.expect("connected");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .expect("HTTP/2 handshake");
    let mut connection = tokio::spawn(connection);
    let get = |path: &str| {
        hyper::Request::get(format!("{}{path}", server.base()))
            .body(Empty::<Bytes>::new())
            .expect("request")
    };
    let mut long_poll = get(&format!("/v1/tasks/{id}?wait=1500"));
    long_poll
        .headers_mut()
        .insert("if-none-match", etag.parse().expect("header"));
    let started = std::time::Instant::now();
    let answered = sender.send_request(long_poll).await.expect("answered");
    assert_eq!(answered.status().as_u16(), 304);
    assert!(started.elapsed() >= Duration::from_millis(1500), "it waited");
    // The connection stayed open through the long answer: it takes another request.
    let answered = sender.send_request(get("/healthz")).await.expect("answered");
    assert_eq!(answered.status().as_u16(), 200);

    // Then, asked nothing more, it is closed by the server.
    let closed = tokio::time::timeout(limit, &mut connection).await;
    assert!(closed.is_ok(), "an idle HTTP/2 connection is closed");
    assert!(
        sender.send_request(get("/healthz")).await.is_err(),
        "a closed connection takes no request"
    );
    server.stop().await;
}

/// The whole HTTP/2 frames in `read` from a server: each one's type, flags and payload.
fn frames(read: &[u8]) -> Vec<(u8, u8, &[u8])> {
    let mut frames = Vec::new();
    let mut rest = read;
    while rest.len() >= 9 {
        let length = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        let Some(payload) = rest.get(9..9 + length) else {
            break;
        };
        frames.push((rest[3], rest[4], payload));
        rest = &rest[9 + length..];
    }
    frames
}

/// The error code of the first GOAWAY frame among HTTP/2 frames `read` from a server (after any
/// frames before it), if there is one.
fn goaway_error(read: &[u8]) -> Option<u32> {
    const GOAWAY: u8 = 0x7;
    let (_, _, payload) = frames(read).into_iter().find(|(kind, _, _)| *kind == GOAWAY)?;
    // Last stream id (4 bytes), then the error code.
    Some(u32::from_be_bytes(payload.get(4..8)?.try_into().ok()?))
}

/// A client gone without closing its connection (a machine switched off, a NAT that forgot the
/// connection) answers no ping: the server pings every `http2_keepalive_ms` and closes the
/// connection when a ping is not answered within as long. A client that answers (hyper's does,
/// as every HTTP/2 client must) keeps its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_answers_no_ping_is_closed_and_one_that_answers_keeps_its_connection() {
    const PING: u8 = 0x6;
    const ACK: u8 = 0x1;
    let keepalive = Duration::from_millis(300);
    let dir = tempfile::tempdir().expect("tempdir");
    let options = ApiOptions {
        http2: Http2 {
            keepalive: Some(keepalive),
            ..Http2::default()
        },
        ..options()
    };
    let server = start(&db_in(&dir), &[], options).await;

    // Opened, then silent: no ping answered (nor the server's SETTINGS). Closed long before the
    // 30 s an idle connection is given.
    let mut silent = opened_in_http2(&server).await;
    let started = std::time::Instant::now();
    let read = read_until_closed(&mut silent, Duration::from_secs(10))
        .await
        .expect("closed within 10 s");
    let pings: Vec<_> = frames(&read)
        .into_iter()
        .filter(|(kind, flags, _)| *kind == PING && flags & ACK == 0)
        .collect();
    assert!(!pings.is_empty(), "pinged before being closed: {read:?}");
    assert!(started.elapsed() >= keepalive, "not before a ping went unanswered");

    // hyper's client answers pings: its connection, left idle four times as long, still serves.
    let tcp = tokio::net::TcpStream::connect(server.address())
        .await
        .expect("connected");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .expect("HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    tokio::time::sleep(keepalive * 4).await;
    let healthz = hyper::Request::get(format!("{}/healthz", server.base()))
        .body(Empty::<Bytes>::new())
        .expect("request");
    let answered = sender
        .send_request(healthz)
        .await
        .expect("answered on the same connection");
    assert_eq!(answered.status().as_u16(), 200);
    assert!(!connection.is_finished());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http2_is_refused_with_the_error_the_protocol_names_and_the_server_serves_on() {
    use tokio::io::AsyncWriteExt;
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const PROTOCOL_ERROR: u32 = 0x1;
    const FRAME_SIZE_ERROR: u32 = 0x6;
    const SETTINGS: &[u8] = &[0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(&db_in(&dir), &[], options()).await;
    let address = server.address();
    let limit = Duration::from_secs(10);
    let refused = [
        // A DATA frame where the client's SETTINGS must come first (RFC 9113 §3.4).
        ([PREFACE, &[0, 0, 0, 0x0, 0, 0, 0, 0, 1]].concat(), PROTOCOL_ERROR),
        // A frame of 64 KiB, over the 16 KiB the server allows (§4.2).
        (
            [PREFACE, SETTINGS, &[1, 0, 0, 0x0, 0, 0, 0, 0, 1]].concat(),
            FRAME_SIZE_ERROR,
        ),
        // A HEADERS frame whose field block does not decode: an index past HPACK's tables
        // (RFC 7541 §2.3.3). RFC 9113 §4.3 names that COMPRESSION_ERROR; hyper's h2 (0.4)
        // answers PROTOCOL_ERROR, and closes the connection either way.
        (
            [PREFACE, SETTINGS, &[0, 0, 2, 0x1, 0x5, 0, 0, 0, 1, 0xff, 0x7f]].concat(),
            PROTOCOL_ERROR,
        ),
    ];
    for (sent, expected) in refused {
        let mut client = tokio::net::TcpStream::connect(&address).await.expect("connected");
        client.write_all(&sent).await.expect("sent");
        let read = read_until_closed(&mut client, limit)
            .await
            .expect("the server closes it");
        assert_eq!(goaway_error(&read), Some(expected), "{read:?}");
    }
    let (status, health) = server.get("/healthz").await;
    assert_eq!(status, 200, "{health}");
    server.stop().await;
}

/// What every HTTP/2 connection opens with, and an empty SETTINGS frame (RFC 9113 §3.4).
const PREFACE_AND_SETTINGS: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_http2_off_an_http2_client_is_told_http1_is_required_and_http1_is_served() {
    const HTTP_1_1_REQUIRED: u32 = 0xd;
    let dir = tempfile::tempdir().expect("tempdir");
    let http1_only = ApiOptions {
        http2: Http2 {
            enabled: false,
            ..Http2::default()
        },
        ..options()
    };
    let server = start(&db_in(&dir), &[], http1_only).await;
    let mut client = opened_in_http2(&server).await;
    let read = read_until_closed(&mut client, Duration::from_secs(10))
        .await
        .expect("the server closes it");
    assert_eq!(goaway_error(&read), Some(HTTP_1_1_REQUIRED), "{read:?}");
    // A client that speaks HTTP/2 from its first byte fails; HTTP/1.1 is served.
    let failed = http2_client().get(format!("{}/healthz", server.base())).send().await;
    assert!(failed.is_err(), "{failed:?}");
    let (status, health) = server.get("/healthz").await;
    assert_eq!(status, 200, "{health}");
    let metrics = server.http().get(format!("{}/metrics", server.base())).send().await;
    let text = metrics.expect("answered").text().await.expect("text");
    assert_eq!(metric(&text, "whenever_http2_connections_total"), 0, "{text}");
    server.stop().await;
}

/// A connection to `server` that opened in HTTP/2 by hand: the preface and an empty SETTINGS
/// sent, nothing read yet.
async fn opened_in_http2(server: &crate::service::Server) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut client = tokio::net::TcpStream::connect(server.address())
        .await
        .expect("connected");
    client.write_all(PREFACE_AND_SETTINGS).await.expect("sent");
    client
}

/// The value of setting `id` in the server's first SETTINGS frame, read from a connection that
/// sent [`PREFACE_AND_SETTINGS`]; `None` if the frame does not carry it.
async fn server_setting(client: &mut tokio::net::TcpStream, id: u16) -> Option<u32> {
    use tokio::io::AsyncReadExt;
    let mut read = Vec::new();
    loop {
        if read.len() >= 9 {
            let length = usize::from(read[0]) << 16 | usize::from(read[1]) << 8 | usize::from(read[2]);
            assert_eq!(read[3], 0x4, "the server opens with SETTINGS: {read:?}");
            if let Some(payload) = read.get(9..9 + length) {
                return payload
                    .chunks_exact(6)
                    .find(|entry| u16::from_be_bytes([entry[0], entry[1]]) == id)
                    .map(|entry| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]));
            }
        }
        let mut buffer = [0u8; 1024];
        let count = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buffer))
            .await
            .expect("the server's SETTINGS in time")
            .expect("read");
        assert!(count > 0, "the server closed before its SETTINGS: {read:?}");
        read.extend_from_slice(&buffer[..count]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_may_have_the_configured_number_of_requests_under_way() {
    const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    let dir = tempfile::tempdir().expect("tempdir");
    for (max_streams, options) in [
        (whenever::config::DEFAULT_HTTP2_MAX_STREAMS, options()),
        (
            3,
            ApiOptions {
                http2: Http2 {
                    max_streams: 3,
                    ..Http2::default()
                },
                ..options()
            },
        ),
    ] {
        let server = start(&db_in(&dir), &[], options).await;
        let mut client = opened_in_http2(&server).await;
        assert_eq!(
            server_setting(&mut client, MAX_CONCURRENT_STREAMS).await,
            Some(max_streams)
        );
        drop(client);
        server.stop().await;
    }
}
