//! The lean client against a scripted upstream on an ephemeral port: each
//! accepted connection answers the requests it reads with the next scripted
//! answers, so framing, reuse and failure handling are checked byte by byte.

use super::*;
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// What one connection of the scripted upstream does.
#[derive(Clone)]
enum Script {
    /// Answers each request with the next answer (raw bytes), then keeps
    /// the connection open until the client closes it.
    Answers(Vec<&'static [u8]>),
    /// Answers each request with the next answer, then closes.
    AnswersThenClose(Vec<&'static [u8]>),
}

struct Upstream {
    authority: String,
    accepted: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Connection `i` follows `scripts[i]` (the last one for later ones).
async fn upstream(scripts: Vec<Script>) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (acc, reqs) = (accepted.clone(), requests.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let i = acc.fetch_add(1, Ordering::SeqCst);
            let script = scripts[i.min(scripts.len() - 1)].clone();
            let reqs = reqs.clone();
            tokio::spawn(async move {
                let (answers, close) = match script {
                    Script::Answers(a) => (a, false),
                    Script::AnswersThenClose(a) => (a, true),
                };
                for answer in answers {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    reqs.lock().unwrap().push(req);
                    if sock.write_all(answer).await.is_err() {
                        return;
                    }
                }
                if !close {
                    let mut rest = Vec::new();
                    let _ = sock.read_to_end(&mut rest).await;
                }
            });
        }
    });
    Upstream {
        authority,
        accepted,
        requests,
    }
}

/// Reads one request (head plus a Content-Length body).
async fn read_request(sock: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                return Some(buf);
            }
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn pool() -> Pool {
    Pool::new(Duration::from_secs(5))
}

fn uri(up: &Upstream, path: &str) -> Uri {
    format!("http://{}{path}", up.authority).parse().unwrap()
}

async fn post(pool: &Pool, up: &Upstream, body: &'static str) -> Result<(u16, Bytes), Error> {
    let resp = pool
        .send(
            &Method::POST,
            &uri(up, "/v1/chat/completions"),
            &HeaderMap::new(),
            &[],
            &Bytes::from_static(body.as_bytes()),
        )
        .await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

const OK_HELLO: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 5\r\n\r\nhello";

#[tokio::test]
async fn content_length_answers_reuse_one_connection() {
    let up = upstream(vec![Script::Answers(vec![OK_HELLO, OK_HELLO, OK_HELLO])]).await;
    let pool = pool();
    for _ in 0..3 {
        let (status, body) = post(&pool, &up, "{}").await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"hello"[..]));
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
    let reqs = up.requests.lock().unwrap();
    let first = String::from_utf8_lossy(&reqs[0]);
    assert!(
        first.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
        "{first}"
    );
    assert!(
        first.contains(&format!("host: {}\r\n", up.authority)),
        "{first}"
    );
    assert!(first.ends_with("content-length: 2\r\n\r\n{}"), "{first}");
}

#[tokio::test]
async fn headers_are_written_once_with_request_headers_winning() {
    let up = upstream(vec![Script::Answers(vec![OK_HELLO])]).await;
    let mut fixed = HeaderMap::new();
    fixed.insert("authorization", HeaderValue::from_static("Bearer k"));
    fixed.insert("x-team", HeaderValue::from_static("a"));
    // Framing headers from configuration never reach the wire.
    fixed.insert("content-length", HeaderValue::from_static("999"));
    fixed.insert("connection", HeaderValue::from_static("close"));
    let extra = [(
        HeaderName::from_static("x-team"),
        HeaderValue::from_static("b"),
    )];
    let resp = pool()
        .send(
            &Method::POST,
            &uri(&up, "/x?y=1"),
            &fixed,
            &extra,
            &Bytes::from_static(b"abc"),
        )
        .await
        .unwrap();
    resp.into_body().collect().await.unwrap();
    let req = String::from_utf8(up.requests.lock().unwrap()[0].clone()).unwrap();
    assert!(req.starts_with("POST /x?y=1 HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("authorization: Bearer k\r\n"), "{req}");
    assert!(
        req.contains("x-team: b\r\n") && !req.contains("x-team: a"),
        "{req}"
    );
    assert!(!req.contains("999") && !req.contains("connection"), "{req}");
    assert!(req.ends_with("content-length: 3\r\n\r\nabc"), "{req}");
}

#[tokio::test]
async fn chunked_answers_with_extensions_and_trailers_decode() {
    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nx-trailer: t\r\n\r\n";
    let up = upstream(vec![Script::Answers(vec![CHUNKED, OK_HELLO])]).await;
    let pool = pool();
    let (_, body) = post(&pool, &up, "{}").await.unwrap();
    assert_eq!(&body[..], b"hello 0123456789");
    // The connection was clean at the end of the message: reused.
    let (_, body) = post(&pool, &up, "{}").await.unwrap();
    assert_eq!(&body[..], b"hello");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn chunked_errors_are_reported() {
    for bad in [
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"[..],
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabc\r\n"[..],
        // Bare LF line ends in chunk framing (RFC 9112 §7.1 wants CRLF).
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n"[..],
        // Endless trailers.
        Box::leak(
            [
                &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n"[..],
                &b"x-t: 1\r\n".repeat(40),
                b"\r\n",
            ]
            .concat()
            .into_boxed_slice(),
        ),
        // Transfer-Encoding on an HTTP/1.0 answer cannot be framed.
        &b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
    ] {
        let leaked: &'static [u8] = Box::leak(bad.to_vec().into_boxed_slice());
        let up = upstream(vec![Script::AnswersThenClose(vec![leaked])]).await;
        let err = post(&pool(), &up, "{}").await.unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{err}");
    }
}

#[tokio::test]
async fn close_delimited_answers_end_at_eof_and_are_not_reused() {
    const UNTIL_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it";
    let up = upstream(vec![Script::AnswersThenClose(vec![UNTIL_CLOSE])]).await;
    let pool = pool();
    let (_, body) = post(&pool, &up, "{}").await.unwrap();
    assert_eq!(&body[..], b"all of it");
    let (_, body) = post(&pool, &up, "{}").await.unwrap();
    assert_eq!(&body[..], b"all of it");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connection_close_and_http10_are_not_reused() {
    const CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nhello";
    const OLD: &[u8] = b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nhello";
    let up = upstream(vec![
        Script::Answers(vec![CLOSE]),
        Script::Answers(vec![OLD]),
        Script::Answers(vec![OK_HELLO]),
    ])
    .await;
    let pool = pool();
    for _ in 0..3 {
        assert_eq!(post(&pool, &up, "{}").await.unwrap().1, "hello");
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn interim_answers_are_skipped_and_204_has_no_body() {
    const INTERIM: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
    let up = upstream(vec![Script::Answers(vec![INTERIM, OK_HELLO])]).await;
    let pool = pool();
    let (status, body) = post(&pool, &up, "{}").await.unwrap();
    assert_eq!((status, body.len()), (204, 0));
    assert_eq!(post(&pool, &up, "{}").await.unwrap().1, "hello");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_idle_connection_closed_by_the_upstream_is_replaced() {
    // The first connection answers once and closes, as a server with a
    // short keep-alive timeout does; the next request must still succeed.
    let up = upstream(vec![
        Script::AnswersThenClose(vec![OK_HELLO]),
        Script::Answers(vec![OK_HELLO]),
    ])
    .await;
    let pool = pool();
    assert_eq!(post(&pool, &up, "{}").await.unwrap().1, "hello");
    assert_eq!(post(&pool, &up, "{}").await.unwrap().1, "hello");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_request_written_whole_and_unanswered_is_not_sent_again() {
    // The pooled connection looks open (no FIN yet) but the upstream drops
    // the second request without a byte. It may have acted on it, so the
    // client does not send it again by itself (RFC 9110 §9.2.2): the error
    // goes to the route's retry policy, and the next request uses a new
    // connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        // First connection: one answer, then reads the next request and
        // closes without answering.
        let (mut a, _) = listener.accept().await.unwrap();
        read_request(&mut a).await.unwrap();
        a.write_all(OK_HELLO).await.unwrap();
        read_request(&mut a).await.unwrap();
        drop(a);
        let (mut b, _) = listener.accept().await.unwrap();
        read_request(&mut b).await.unwrap();
        b.write_all(OK_HELLO).await.unwrap();
        let _ = b.read_to_end(&mut Vec::new()).await;
    });
    let up = Upstream {
        authority,
        accepted: Arc::new(AtomicUsize::new(0)),
        requests: Arc::new(Mutex::new(Vec::new())),
    };
    let pool = pool();
    assert_eq!(post(&pool, &up, "{}").await.unwrap().1, "hello");
    let err = post(&pool, &up, "{}").await.unwrap_err();
    assert!(matches!(err, Error::Unanswered), "{err}");
    assert_eq!(post(&pool, &up, "{}").await.unwrap().1, "hello");
}

#[tokio::test]
async fn a_new_connection_that_dies_before_answering_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let acc = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            acc.fetch_add(1, Ordering::SeqCst);
            let _ = read_request(&mut s).await;
        }
    });
    let up = Upstream {
        authority,
        accepted: accepted.clone(),
        requests: Arc::new(Mutex::new(Vec::new())),
    };
    let err = post(&pool(), &up, "{}").await.unwrap_err();
    assert!(matches!(err, Error::Unanswered), "{err}");
    // Never sent twice on fresh connections.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_and_the_connection_is_dropped() {
    const SHORT: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello";
    let up = upstream(vec![
        Script::AnswersThenClose(vec![SHORT]),
        Script::Answers(vec![OK_HELLO]),
    ])
    .await;
    let pool = pool();
    let err = post(&pool, &up, "{}").await.unwrap_err();
    assert!(matches!(err, Error::Closed), "{err}");
    assert_eq!(post(&pool, &up, "{}").await.unwrap().1, "hello");
}

#[tokio::test]
async fn an_answer_dropped_unread_closes_its_connection() {
    let up = upstream(vec![Script::Answers(vec![OK_HELLO, OK_HELLO])]).await;
    let pool = pool();
    let resp = pool
        .send(
            &Method::GET,
            &uri(&up, "/v1/models"),
            &HeaderMap::new(),
            &[],
            &Bytes::new(),
        )
        .await
        .unwrap();
    drop(resp);
    assert_eq!(post(&pool, &up, "{}").await.unwrap().1, "hello");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    // A GET without a body carries no Content-Length.
    let first = String::from_utf8(up.requests.lock().unwrap()[0].clone()).unwrap();
    assert!(first.starts_with("GET /v1/models HTTP/1.1\r\n"), "{first}");
    assert!(!first.contains("content-length"), "{first}");
}

#[tokio::test]
async fn malformed_heads_are_errors() {
    for bad in [
        &b"NOT HTTP\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello"[..],
        &b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n"[..],
        &b"HTTP/1.1 101 Switching Protocols\r\n\r\n"[..],
    ] {
        let leaked: &'static [u8] = Box::leak(bad.to_vec().into_boxed_slice());
        let up = upstream(vec![Script::AnswersThenClose(vec![leaked])]).await;
        let err = post(&pool(), &up, "{}").await.unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{err}");
    }
}

#[tokio::test]
async fn an_endless_head_is_refused() {
    let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
    while huge.len() <= MAX_HEAD {
        huge.extend_from_slice(b"x-filler: 0123456789012345678901234567890123456789\r\n");
    }
    let leaked: &'static [u8] = Box::leak(huge.into_boxed_slice());
    let up = upstream(vec![Script::AnswersThenClose(vec![leaked])]).await;
    let err = post(&pool(), &up, "{}").await.unwrap_err();
    assert!(matches!(err, Error::Malformed(_)), "{err}");
}

#[tokio::test]
async fn a_large_body_is_written_whole() {
    let up = upstream(vec![Script::Answers(vec![OK_HELLO])]).await;
    let body = Bytes::from(vec![b'a'; 300 * 1024]);
    let resp = pool()
        .send(
            &Method::POST,
            &uri(&up, "/big"),
            &HeaderMap::new(),
            &[],
            &body,
        )
        .await
        .unwrap();
    resp.into_body().collect().await.unwrap();
    let req = up.requests.lock().unwrap()[0].clone();
    assert!(req.ends_with(&body));
    assert!(String::from_utf8_lossy(&req[..200]).contains("content-length: 307200\r\n"));
}

#[tokio::test]
async fn refused_connections_are_connect_errors() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let uri: Uri = format!("http://{addr}/v1").parse().unwrap();
    let Err(err) = pool()
        .send(&Method::GET, &uri, &HeaderMap::new(), &[], &Bytes::new())
        .await
    else {
        panic!("connected to a closed port");
    };
    assert!(err.is_connect() && !err.is_timeout(), "{err}");
}

#[test]
fn chunk_sizes_parse() {
    assert_eq!(parse_chunk_size(b"1a").unwrap(), 26);
    assert_eq!(parse_chunk_size(b"FF ; name=value").unwrap(), 255);
    assert!(parse_chunk_size(b"").is_err());
    assert!(parse_chunk_size(b"0x10").is_err());
    assert!(parse_chunk_size(b"ffffffffffffffffff").is_err());
}

mod framing_props {
    //! The chunk decoder against a reference encoder: any body, cut into
    //! any chunks and delivered in any pieces, decodes to itself; any
    //! bytes at all never panic and never grow the buffer past its bound.
    use super::super::*;
    use proptest::prelude::*;

    fn encode(body: &[u8], sizes: &[usize], ext: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        let mut k = 0;
        while !rest.is_empty() {
            let n = sizes
                .get(k)
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            k += 1;
            out.extend_from_slice(format!("{n:x}").as_bytes());
            if ext {
                out.extend_from_slice(b";name=value");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        out.extend_from_slice(b"0\r\nx-trailer: t\r\n\r\n");
        out
    }

    /// Feeds `wire` in pieces of the given sizes; the body, or the error.
    fn decode(wire: &[u8], cuts: &[usize]) -> Result<Vec<u8>, Error> {
        let mut framing = Framing::Chunked(Chunk::Size);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut k = 0;
        loop {
            match ResponseBody::step(&mut framing, &mut buf)? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::End => return Ok(out),
                Step::NeedMore => {
                    if pos == wire.len() {
                        return Err(Error::Malformed("ended early"));
                    }
                    let n = cuts.get(k).copied().unwrap_or(7).clamp(1, wire.len() - pos);
                    k += 1;
                    buf.extend_from_slice(&wire[pos..pos + n]);
                    pos += n;
                    assert!(
                        buf.len() <= MAX_LINE + 64 * 1024,
                        "the buffer grew past its bound"
                    );
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_chunking_decodes_to_the_body(
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            sizes in proptest::collection::vec(1usize..300, 0..20),
            cuts in proptest::collection::vec(1usize..64, 0..80),
            ext in any::<bool>(),
        ) {
            let wire = encode(&body, &sizes, ext);
            prop_assert_eq!(decode(&wire, &cuts).ok(), Some(body));
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            wire in proptest::collection::vec(any::<u8>(), 0..4096),
            cuts in proptest::collection::vec(1usize..64, 0..80),
        ) {
            let _ = decode(&wire, &cuts);
        }

        #[test]
        fn answer_heads_agree_with_httparse(
            status in 200u16..600,
            length in proptest::option::of(0u64..100_000),
            extra in proptest::collection::vec(("[a-z]{1,10}", "[ -~]{0,20}"), 0..10),
        ) {
            let mut head = format!("HTTP/1.1 {status} X\r\n");
            for (k, v) in &extra {
                head.push_str(&format!("x-{k}: {}\r\n", v.trim()));
            }
            if let Some(n) = length {
                head.push_str(&format!("content-length: {n}\r\n"));
            }
            head.push_str("\r\n");
            let mut spans = Vec::new();
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut reference = httparse::Response::new(&mut slots);
            let want = reference.parse(head.as_bytes());
            match (parse_head(head.as_bytes(), &mut spans), want) {
                (Ok(Parsed::Complete(n, h)), Ok(httparse::Status::Complete(m))) => {
                    prop_assert_eq!(n, m);
                    prop_assert_eq!(h.status.as_u16(), status);
                    prop_assert_eq!(spans.len(), reference.headers.len());
                }
                (got, want) => prop_assert!(false, "{:?} vs {:?}", got.is_ok(), want),
            }
        }
    }
}
