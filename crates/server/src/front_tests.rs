//! The front against raw bytes on a real socket: what it serves itself,
//! what it hands to hyper (mid-connection too), pipelining, streaming,
//! cancellation and shutdown.

use super::*;
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Dropped when the handler future is dropped (cancelled).
struct Guard(Arc<Notify>);
impl Drop for Guard {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

struct Front {
    addr: SocketAddr,
    shutdown: CancellationToken,
    cancelled: Arc<Notify>,
}

async fn front() -> Front {
    front_with(ClientLimits::default()).await
}

/// Small deadlines, so the tests of them take a fraction of a second.
fn quick() -> ClientLimits {
    ClientLimits {
        head_timeout: std::time::Duration::from_millis(300),
        idle_timeout: std::time::Duration::from_millis(300),
        body_timeout: std::time::Duration::from_millis(300),
        max_connections: 1000,
    }
}

async fn front_with(limits: ClientLimits) -> Front {
    let cancelled = Arc::new(Notify::new());
    let c2 = cancelled.clone();
    let router = Router::new()
        .route(
            "/echo",
            post(|body: Bytes| async move {
                format!(
                    "got {} bytes: {}",
                    body.len(),
                    String::from_utf8_lossy(&body[..body.len().min(20)])
                )
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(p): ConnectInfo<SocketAddr>| async move { p.ip().to_string() }),
        )
        .route(
            "/stream",
            get(|| async {
                let parts = futures_util::stream::iter(
                    ["one ", "two ", "three"]
                        .map(|s| Ok::<_, std::convert::Infallible>(Bytes::from(s))),
                );
                Body::from_stream(parts)
            }),
        )
        .route(
            "/hang",
            post(move || {
                let guard = Guard(c2.clone());
                async move {
                    let _g = guard;
                    std::future::pending::<()>().await;
                    "never"
                }
            }),
        )
        .route(
            "/burst",
            get(|| async {
                // Small frames ready together, a large one among them, and
                // one that is not ready at once.
                let frames = futures_util::stream::unfold(0usize, |i| async move {
                    let data = match i {
                        0..=299 => format!("x{i} "),
                        300 => "L".repeat(40 * 1024),
                        301..=310 => format!("y{i} "),
                        311 => {
                            tokio::task::yield_now().await;
                            "late".to_string()
                        }
                        _ => return None,
                    };
                    Some((Ok::<_, std::convert::Infallible>(Bytes::from(data)), i + 1))
                });
                Body::from_stream(frames)
            }),
        )
        .route("/early", post(|| async { "early" }))
        .route(
            "/close",
            get(|| async { ([(header::CONNECTION, "close")], "bye") }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        while let Ok((s, peer)) = listener.accept().await {
            tokio::spawn(serve(
                s,
                peer,
                router.clone(),
                token.clone(),
                graceful.watcher(),
                limits,
            ));
        }
    });
    Front {
        addr,
        shutdown,
        cancelled,
    }
}

/// Reads until `n` complete answers (head plus Content-Length body, or a
/// chunked body up to its last chunk) have arrived, or EOF.
async fn read_answers(s: &mut TcpStream, n: usize) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if count_answers(&text) >= n {
            return text;
        }
        let k = s.read(&mut chunk).await.unwrap();
        if k == 0 {
            return text;
        }
        got.extend_from_slice(&chunk[..k]);
    }
}

fn count_answers(text: &str) -> usize {
    let mut rest = text;
    let mut count = 0;
    while let Some(end) = rest.find("\r\n\r\n") {
        let head = rest[..end].to_ascii_lowercase();
        let after = &rest[end + 4..];
        if head.starts_with("http/1.1 100") {
            rest = after;
            continue;
        }
        if let Some(len) = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
        {
            let len: usize = len.trim().parse().unwrap();
            if after.len() < len {
                return count;
            }
            rest = &after[len..];
        } else if head.contains("transfer-encoding: chunked") {
            match after.find("0\r\n\r\n") {
                Some(i) => rest = &after[i + 5..],
                None => return count,
            }
        } else {
            return count;
        }
        count += 1;
    }
    count
}

async fn connect(f: &Front) -> TcpStream {
    TcpStream::connect(f.addr).await.unwrap()
}

const ECHO: &[u8] = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhello";

#[tokio::test]
async fn keep_alive_requests_share_a_connection() {
    let f = front().await;
    let mut s = connect(&f).await;
    for _ in 0..3 {
        s.write_all(ECHO).await.unwrap();
        let a = read_answers(&mut s, 1).await;
        assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
        assert!(a.contains("content-length: 18\r\n"), "{a}");
        assert!(a.contains("date: "), "{a}");
        assert!(a.ends_with("got 5 bytes: hello"), "{a}");
    }
}

#[tokio::test]
async fn pipelined_and_split_requests_are_answered_in_order() {
    let f = front().await;
    let mut s = connect(&f).await;
    let mut two = ECHO.to_vec();
    two.extend_from_slice(b"GET /peer HTTP/1.1\r\nhost: x\r\n\r\n");
    s.write_all(&two).await.unwrap();
    let a = read_answers(&mut s, 2).await;
    let first = a.find("got 5 bytes").unwrap();
    let second = a.find("127.0.0.1").unwrap();
    assert!(first < second, "{a}");
    // A request arriving a few bytes at a time.
    for part in ECHO.chunks(7) {
        s.write_all(part).await.unwrap();
        tokio::task::yield_now().await;
    }
    let a = read_answers(&mut s, 1).await;
    assert!(a.ends_with("got 5 bytes: hello"), "{a}");
}

#[tokio::test]
async fn streamed_bodies_are_chunked() {
    let f = front().await;
    let mut s = connect(&f).await;
    s.write_all(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let a = read_answers(&mut s, 1).await;
    assert!(a.contains("transfer-encoding: chunked\r\n"), "{a}");
    let body = &a[a.find("\r\n\r\n").unwrap() + 4..];
    assert_eq!(body, "4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n");
}

/// The payload of a chunked body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size, 16).unwrap();
        if n == 0 {
            assert_eq!(rest, "\r\n", "nothing after the last chunk");
            return out;
        }
        out.push_str(&rest[..n]);
        assert_eq!(&rest[n..n + 2], "\r\n");
        body = &rest[n + 2..];
    }
}

#[tokio::test]
async fn frames_ready_together_are_joined_and_keep_their_order() {
    let f = front().await;
    let mut s = connect(&f).await;
    for _ in 0..2 {
        s.write_all(b"GET /burst HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let a = read_answers(&mut s, 1).await;
        let body = &a[a.find("\r\n\r\n").unwrap() + 4..];
        let mut want = String::new();
        for i in 0..300 {
            want.push_str(&format!("x{i} "));
        }
        want.push_str(&"L".repeat(40 * 1024));
        for i in 301..=310 {
            want.push_str(&format!("y{i} "));
        }
        want.push_str("late");
        assert_eq!(dechunk(body), want);
    }
}

#[tokio::test]
async fn unusual_requests_go_to_hyper_even_mid_connection() {
    let f = front().await;
    let mut s = connect(&f).await;
    s.write_all(ECHO).await.unwrap();
    assert!(read_answers(&mut s, 1).await.ends_with("hello"));
    // A chunked request body: hyper's from here on.
    s.write_all(
        b"POST /echo HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let a = read_answers(&mut s, 1).await;
    assert!(a.ends_with("got 5 bytes: abcde"), "{a}");
    // The connection still works.
    s.write_all(ECHO).await.unwrap();
    assert!(read_answers(&mut s, 1).await.ends_with("hello"));

    // Expect: 100-continue.
    let mut s = connect(&f).await;
    s.write_all(
        b"POST /echo HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 100 Continue"),
        "{:?}",
        &buf[..n]
    );
    s.write_all(b"hi").await.unwrap();
    assert!(read_answers(&mut s, 1).await.ends_with("got 2 bytes: hi"));

    // HTTP/1.0 and HEAD.
    let mut s = connect(&f).await;
    s.write_all(b"GET /peer HTTP/1.0\r\n\r\n").await.unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).await.unwrap();
    assert!(
        all.starts_with("HTTP/1.0 200 OK") && all.ends_with("127.0.0.1"),
        "{all}"
    );
    let mut s = connect(&f).await;
    s.write_all(b"HEAD /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).await.unwrap();
    assert!(
        all.starts_with("HTTP/1.1 200 OK") && all.ends_with("\r\n\r\n"),
        "{all}"
    );
}

/// RFC 9112 §3.2: an HTTP/1.1 request with no Host, or with two, is a 400
/// and the connection closes, on the fast path and hyper's alike; HTTP/1.0
/// may omit it.
#[tokio::test]
async fn host_must_be_there_once() {
    let f = front().await;
    for req in [
        &b"GET /peer HTTP/1.1\r\n\r\n"[..],
        b"GET /peer HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
        // A chunked upload goes to hyper anyway.
        b"POST /echo HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ] {
        let mut s = connect(&f).await;
        s.write_all(req).await.unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        assert!(text.contains("Host"), "{text}");
    }
    let mut s = connect(&f).await;
    s.write_all(b"GET /peer HTTP/1.0\r\n\r\n").await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
}

#[tokio::test]
async fn large_and_malformed_requests_get_hypers_answers() {
    let f = front().await;
    // A body over the front's limit is read by hyper.
    let mut s = connect(&f).await;
    let big = vec![b'z'; MAX_FAST_BODY + 10];
    s.write_all(
        format!(
            "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
            big.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s.write_all(&big).await.unwrap();
    let a = read_answers(&mut s, 1).await;
    assert!(a.contains(&format!("got {} bytes", big.len())), "{a}");
    // A header value the `http` types refuse.
    let mut s = connect(&f).await;
    s.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nx-bad: a\x7fb\r\n\r\n")
        .await
        .unwrap();
    let mut all = String::new();
    let _ = s.read_to_string(&mut all).await;
    assert!(all.starts_with("HTTP/1.1 400"), "{all}");
    // Two different lengths.
    let mut s = connect(&f).await;
    s.write_all(
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
    )
    .await
    .unwrap();
    let mut all = String::new();
    let _ = s.read_to_string(&mut all).await;
    assert!(all.starts_with("HTTP/1.1 400"), "{all}");
}

#[tokio::test]
async fn bodies_arriving_after_the_head_stream_to_the_handler() {
    let f = front().await;
    let mut s = connect(&f).await;
    let (head, body) = ECHO.split_at(ECHO.len() - 5);
    s.write_all(head).await.unwrap();
    tokio::task::yield_now().await;
    s.write_all(&body[..2]).await.unwrap();
    tokio::task::yield_now().await;
    s.write_all(&body[2..]).await.unwrap();
    let a = read_answers(&mut s, 1).await;
    assert!(
        a.ends_with("got 5 bytes: hello") && !a.contains("connection: close"),
        "{a}"
    );
    // The connection goes on.
    s.write_all(ECHO).await.unwrap();
    assert!(read_answers(&mut s, 1).await.ends_with("hello"));
}

#[tokio::test]
async fn an_answer_before_the_body_closes_the_connection() {
    // A handler that answers without reading the body (as the key check
    // does) answers at once; the connection then closes, since the rest of
    // the body would otherwise be read as a request.
    let f = front().await;
    let mut s = connect(&f).await;
    s.write_all(b"POST /early HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\n")
        .await
        .unwrap();
    let a = read_answers(&mut s, 1).await;
    assert!(
        a.contains("connection: close\r\n") && a.ends_with("early"),
        "{a}"
    );
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).await.unwrap(), 0);
}

#[tokio::test]
async fn connection_close_is_honoured_both_ways() {
    let f = front().await;
    let mut s = connect(&f).await;
    s.write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).await.unwrap();
    assert!(
        all.contains("connection: close\r\n") && all.ends_with("127.0.0.1"),
        "{all}"
    );
    let mut s = connect(&f).await;
    s.write_all(b"GET /close HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).await.unwrap();
    assert!(
        all.contains("connection: close\r\n") && all.ends_with("bye"),
        "{all}"
    );
}

#[tokio::test]
async fn a_client_that_leaves_cancels_its_request() {
    let f = front().await;
    let mut s = connect(&f).await;
    s.write_all(b"POST /hang HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    // Let the handler start, then leave.
    tokio::task::yield_now().await;
    drop(s);
    f.cancelled.notified().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections() {
    let f = front().await;
    let mut s = connect(&f).await;
    s.write_all(ECHO).await.unwrap();
    assert!(read_answers(&mut s, 1).await.ends_with("hello"));
    f.shutdown.cancel();
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).await.unwrap(), 0);
}

#[test]
fn request_heads_parse() {
    let mut spans = Vec::new();
    let Parse::Ready(h) = parse_request(ECHO, &mut spans) else {
        panic!("not ready")
    };
    assert_eq!((h.method, h.body_len, h.close), (Method::POST, 5, false));
    assert_eq!(&ECHO[h.path.0..h.path.1], b"/echo");
    assert!(matches!(
        parse_request(&ECHO[..20], &mut spans),
        Parse::Partial
    ));
    for other in [
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        b"GET / HTTP/1.0\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: +5\r\n\r\n",
        b"GET http://x/ HTTP/1.1\r\nhost: x\r\n\r\n",
        // No Host, or two: hyper's side refuses it.
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
    ] {
        assert!(
            matches!(parse_request(other, &mut spans), Parse::Other),
            "{}",
            String::from_utf8_lossy(other)
        );
    }
}

/// Reads until the peer closes (or 5 s pass, a failure); what arrived.
async fn until_closed(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the connection stayed open: {}",
        String::from_utf8_lossy(&got)
    );
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn a_head_that_trickles_in_is_cut_off_at_the_deadline() {
    let f = front_with(quick()).await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The rest never comes: 408 and closed.
    let got = until_closed(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    // A connection that never sends a byte is closed without an answer.
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    assert_eq!(until_closed(&mut s).await, "");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let f = front_with(quick()).await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_answers(&mut s, 1).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    // Nothing more is sent: the connection closes after the idle timeout.
    assert_eq!(until_closed(&mut s).await, "");
}

#[tokio::test]
async fn a_stalled_body_is_answered_408() {
    let f = front_with(quick()).await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    let got = until_closed(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("body"), "{got}");
    // The same on hyper's side (a chunked body is served there).
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
    )
    .await
    .unwrap();
    let got = until_closed(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
}

#[tokio::test]
async fn a_head_over_64_kib_is_refused_and_hyper_never_buffers_it() {
    let f = front_with(quick()).await;
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    let mut head = b"GET /peer HTTP/1.1\r\nHost: x\r\n".to_vec();
    while head.len() <= MAX_HEAD {
        head.extend_from_slice(
            b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
        );
    }
    // Partial (no blank line): the front stops at its limit.
    let _ = s.write_all(&head).await;
    let got = until_closed(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");
    // An HTTP/1.0 head goes to hyper, which stops at the same limit.
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    head[15..18].copy_from_slice(b"1.0");
    let _ = s.write_all(&head).await;
    let got = until_closed(&mut s).await;
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 431"), "{got}");
}

#[tokio::test]
async fn hyper_closes_an_idle_or_slow_head_at_the_head_deadline() {
    let f = front_with(quick()).await;
    // An HTTP/1.0 keep-alive request is hyper's; after it, silence.
    let mut s = TcpStream::connect(f.addr).await.unwrap();
    s.write_all(b"GET /peer HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let got = until_closed(&mut s).await;
    assert!(got.starts_with("HTTP/1.0 200"), "{got}");
}

#[tokio::test]
async fn beyond_the_cap_health_answers_and_the_rest_get_503() {
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/peer", get(|| async { "peer" }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let overflow = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let limits = ClientLimits {
        max_connections: 2,
        ..quick()
    };
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let conns = Connections::new(open);
    let token = CancellationToken::new();
    tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        while let Ok((s, peer)) = listener.accept().await {
            if conns.open() >= limits.max_connections {
                spawn_overflow(&overflow, s, peer, router.clone());
                continue;
            }
            let conn = serve(
                s,
                peer,
                router.clone(),
                token.clone(),
                graceful.watcher(),
                limits,
            );
            conns.spawn(conn, false);
        }
    });
    // Two silent connections fill the cap (until their head deadline).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /pe").await.unwrap();
        held.push(s);
    }
    // Let the acceptor count them: a request that gets through proves it.
    let mut answered_503 = false;
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let got = until_closed(&mut s).await;
        if got.starts_with("HTTP/1.1 503") {
            assert!(got.to_ascii_lowercase().contains("retry-after: 1"), "{got}");
            answered_503 = true;
            break;
        }
    }
    assert!(answered_503, "a connection beyond the cap was served");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = until_closed(&mut s).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert!(got.ends_with("ok"), "{got}");
    drop(held);
}

mod head_props {
    //! The front's request-head parser against httparse: on any valid head
    //! the same length and headers, a body length equal to Content-Length,
    //! and hyper's side for anything it does not serve itself; any bytes
    //! at all never panic.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn valid_heads_agree_with_httparse(
            method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
            path in "/[a-z0-9/._-]{0,30}",
            headers in proptest::collection::vec(("[a-z][a-z-]{0,12}", "[!-~][ -~]{0,30}"), 0..12),
            length in proptest::option::of(0usize..2_000_000),
            hosts in 0usize..3,
        ) {
            let mut head = format!("{method} {path} HTTP/1.1\r\n");
            for _ in 0..hosts {
                head.push_str("Host: x\r\n");
            }
            for (k, v) in &headers {
                head.push_str(&format!("x-{k}: {}\r\n", v.trim_end()));
            }
            if let Some(n) = length {
                head.push_str(&format!("Content-Length: {n}\r\n"));
            }
            head.push_str("\r\n");
            let mut slots = [httparse::EMPTY_HEADER; 80];
            let mut reference = httparse::Request::new(&mut slots);
            let want = reference.parse(head.as_bytes());
            let mut spans = Vec::new();
            match parse_request(head.as_bytes(), &mut spans) {
                Parse::Ready(h) => {
                    prop_assert_eq!(want.ok(), Some(httparse::Status::Complete(h.len)));
                    prop_assert_eq!(spans.len(), reference.headers.len());
                    prop_assert_eq!(h.body_len, length.unwrap_or(0));
                    prop_assert_eq!(hosts, 1);
                    prop_assert!(method != "HEAD");
                    prop_assert!(length.unwrap_or(0) <= MAX_FAST_BODY);
                }
                // Served by hyper: no Host or two, HEAD, a large body.
                Parse::Other => prop_assert!(
                    hosts != 1 || method == "HEAD" || length.unwrap_or(0) > MAX_FAST_BODY || want.is_err()
                ),
                Parse::Partial => prop_assert!(false, "a complete head read as partial"),
            }
            // Every prefix is partial (or already decided), never a panic.
            for cut in 0..head.len() {
                let _ = parse_request(&head.as_bytes()[..cut], &mut spans);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let mut spans = Vec::new();
            let _ = parse_request(&bytes, &mut spans);
        }
    }
}
