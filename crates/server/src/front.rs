//! The HTTP/1.1 front of every client connection.
//!
//! Plain keep-alive HTTP/1.1 requests with a `Content-Length` body (what
//! the OpenAI, Anthropic and Ollama SDKs send) are parsed here and handed
//! to the router directly; the answer is written back with one write for
//! its head and first bytes. Under hyper's server each such request went
//! through a dispatcher, a body channel and several layers of futures,
//! which measured about half of llm-link's own CPU per proxied request.
//!
//! Anything else — HTTP/2 (prior knowledge), HTTP/1.0, `Transfer-Encoding`
//! request bodies, `Expect: 100-continue`, upgrades, `HEAD`, bodies over
//! [`MAX_FAST_BODY`], heads that do not parse or exceed [`MAX_HEAD`] —
//! hands the connection, with the bytes already read, to hyper, which
//! serves it from then on. So every HTTP feature keeps hyper's handling
//! and errors; only the common case is short.
//!
//! A body that did not arrive with its head streams to the handler as it
//! comes, so an answer that needs no body (a 401 from the key check) goes
//! out at once; the connection then closes, since what is left of that
//! body would otherwise be read as the next request. Like hyper's default,
//! a client that closes its side while its request is being served
//! cancels that request (the upstream call is dropped).

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{header, Method, Request, Response, Uri};
use axum::Router;
use bytes::{Buf, Bytes, BytesMut};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use llm_link_gateway::config::ClientLimits;
use llm_link_gateway::http1::{header_map, offsets, write_two, Span};
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Largest request head served here (hyper takes larger ones).
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest request body served here (hyper takes larger ones, and applies
/// the body limit while reading).
pub const MAX_FAST_BODY: usize = 1024 * 1024;
/// Most request headers served here.
const MAX_HEADERS: usize = 64;
/// Response bodies up to this size are copied behind the head (one write).
const INLINE: usize = 16 * 1024;
/// Body frames that are ready together are joined into writes of about
/// this size at most.
const COALESCE: usize = 64 * 1024;

/// Serves one client connection until it closes, `shutdown` finds it idle,
/// a deadline of `limits` passes, or it is handed to hyper (then until
/// hyper is done with it).
///
/// Deadlines: the first head must be complete `head_timeout` after the
/// connection was accepted; between requests the connection may idle
/// `idle_timeout`, and once a head's first byte arrives it must be
/// complete `head_timeout` later; a body that came apart from its head
/// must make progress every `body_timeout` (else 408). A head longer than
/// [`MAX_HEAD`] is answered 431.
pub async fn serve(
    mut io: TcpStream,
    peer: SocketAddr,
    mut router: Router,
    shutdown: CancellationToken,
    graceful: Watcher,
    limits: ClientLimits,
) {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut out: Vec<u8> = Vec::with_capacity(4 * 1024);
    let mut spans: Vec<Span> = Vec::with_capacity(16);
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    // The connection's deadline, `due`, and one timer that is moved only
    // when it fires before `due` or must fire sooner: moving a tokio timer
    // on every request showed as ~4% of the proxied request's instructions.
    let mut due = Instant::now() + limits.head_timeout;
    let timer = tokio::time::sleep_until(due);
    tokio::pin!(timer);
    macro_rules! arm {
        ($at:expr) => {{
            due = $at;
            if due < timer.deadline() {
                timer.as_mut().reset(due);
            }
        }};
    }
    // Waiting for a request with nothing of it read yet (after the first).
    let mut idle = false;
    loop {
        // One request head, or the hand-over.
        let head = loop {
            if !buf.is_empty() {
                match parse_request(&buf, &mut spans) {
                    Parse::Ready(head) => break head,
                    Parse::Partial if buf.len() < MAX_HEAD => {
                        // A head begun: its deadline runs from now.
                        if idle {
                            idle = false;
                            arm!(Instant::now() + limits.head_timeout);
                        }
                    }
                    Parse::Partial => {
                        let _ = io.write_all(HEAD_TOO_LARGE).await;
                        return;
                    }
                    Parse::Other => {
                        return handoff(io, buf, peer, router, graceful, limits).await;
                    }
                }
            }
            buf.reserve(8 * 1024);
            let read = tokio::select! {
                biased;
                r = io.read_buf(&mut buf) => r,
                _ = &mut cancelled, if buf.is_empty() => return,
                _ = &mut timer => {
                    if Instant::now() < due {
                        timer.as_mut().reset(due);
                        continue;
                    }
                    if !buf.is_empty() {
                        let _ = io.write_all(HEAD_TIMEOUT).await;
                    }
                    return;
                }
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        // Its body: whole when it came with the head (the usual case), else
        // streamed to the handler as it arrives, so an answer that needs no
        // body (a 401) goes out without waiting for it.
        let total = head.len + head.body_len;
        let raw = buf.split_to(head.len.max(total.min(buf.len()))).freeze();
        let mut remaining = total.saturating_sub(raw.len());
        let mut feed = None;
        let body = if remaining == 0 {
            Body::from(raw.slice(head.len..))
        } else {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<io::Result<Bytes>>();
            if raw.len() > head.len {
                let _ = tx.send(Ok(raw.slice(head.len..)));
            }
            feed = Some(tx);
            Body::from_stream(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
        };
        let Some(req) = build_request(head.method, &raw, head.path, &spans, body, peer) else {
            // Something hyper rejects with a proper 400; let it.
            let mut all = BytesMut::from(&raw[..]);
            all.extend_from_slice(&buf);
            return handoff(io, all, peer, router, graceful, limits).await;
        };
        // Serve it; a client that goes away meanwhile cancels it, and a
        // body that stops arriving is answered 408.
        let call = tower::Service::call(&mut router, req);
        tokio::pin!(call);
        let mut watch = true;
        if remaining > 0 {
            arm!(Instant::now() + limits.body_timeout);
        }
        let resp = loop {
            tokio::select! {
                biased;
                r = &mut call => break r,
                r = io.read_buf(&mut buf), if watch => match r {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if remaining > 0 {
                            let part = buf.split_to(remaining.min(buf.len())).freeze();
                            remaining -= part.len();
                            if let Some(tx) = &feed {
                                let _ = tx.send(Ok(part));
                            }
                            if remaining == 0 {
                                feed = None;
                            } else {
                                due = Instant::now() + limits.body_timeout;
                            }
                        }
                        // Pipelined bytes wait in the buffer; stop watching
                        // once it holds a full head's worth.
                        watch = buf.len() < MAX_HEAD;
                    }
                },
                _ = &mut timer, if remaining > 0 => {
                    if Instant::now() < due {
                        timer.as_mut().reset(due);
                        continue;
                    }
                    let _ = io.write_all(BODY_TIMEOUT).await;
                    return;
                }
            }
        };
        drop(feed);
        // An answer given before the whole body arrived ends the connection
        // (the rest of the body would be read as the next request).
        let close = head.close || remaining > 0;
        let resp = match resp {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let keep = match write_response(&mut io, &mut out, resp, close).await {
            Ok(keep) => keep,
            Err(_) => return,
        };
        if !keep || shutdown.is_cancelled() {
            let _ = io.shutdown().await;
            return;
        }
        idle = true;
        arm!(Instant::now() + limits.idle_timeout);
    }
}

/// Written when a head is not complete in time, then the connection closes.
const HEAD_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: 48\r\n\r\nthe request head did not arrive within the limit";
/// Written when a body stops arriving, then the connection closes.
const BODY_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: 50\r\n\r\nthe request body stopped arriving within the limit";
/// Written for a head longer than [`MAX_HEAD`], then the connection closes.
const HEAD_TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: 38\r\n\r\nthe request head is larger than 64 KiB";

/// A parsed request head that this front serves.
struct Head {
    method: Method,
    /// Where the path sits in the head bytes.
    path: (usize, usize),
    len: usize,
    body_len: usize,
    close: bool,
}

enum Parse {
    Ready(Head),
    Partial,
    /// Valid or not, hyper's to serve.
    Other,
}

/// Parses a request head; on `Ready`, `spans` holds where its headers are.
fn parse_request(buf: &[u8], spans: &mut Vec<Span>) -> Parse {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::Other,
    };
    if req.version != Some(1) {
        return Parse::Other;
    }
    let method = match req.method {
        Some("POST") => Method::POST,
        Some("GET") => Method::GET,
        Some("PUT") => Method::PUT,
        Some("DELETE") => Method::DELETE,
        Some("PATCH") => Method::PATCH,
        Some("OPTIONS") => Method::OPTIONS,
        _ => return Parse::Other,
    };
    let Some(path) = req.path else {
        return Parse::Other;
    };
    if !path.starts_with('/') {
        return Parse::Other;
    }
    let mut body_len: Option<usize> = None;
    let mut close = false;
    let mut hosts = 0;
    spans.clear();
    for h in req.headers.iter() {
        spans.push(Span::of(buf, h));
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<usize>().ok());
            match (n, body_len) {
                (Some(n), None) if n <= MAX_FAST_BODY => body_len = Some(n),
                _ => return Parse::Other,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"expect")
            || name.eq_ignore_ascii_case(b"upgrade")
        {
            return Parse::Other;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|b| *b == b',') {
                let t = token.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if t.eq_ignore_ascii_case(b"upgrade") {
                    return Parse::Other;
                }
            }
        }
    }
    if hosts != 1 {
        // No Host or two: hyper's side answers the 400 (`host_problem`).
        return Parse::Other;
    }
    Parse::Ready(Head {
        method,
        path: offsets(buf, path.as_bytes()),
        len,
        body_len: body_len.unwrap_or(0),
        close,
    })
}

/// The request for the router. Header bytes are shared with the head, not
/// copied. `None` when something in it is not valid for `http` types.
fn build_request(
    method: Method,
    raw: &Bytes,
    path: (usize, usize),
    spans: &[Span],
    body: Body,
    peer: SocketAddr,
) -> Option<Request<Body>> {
    let uri = Uri::from_maybe_shared(raw.slice(path.0..path.1)).ok()?;
    let headers = header_map(raw, spans)?;
    let mut req = Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    req.extensions_mut().insert(ConnectInfo(peer));
    Some(req)
}

/// Writes a response; `Ok(true)` when the connection stays open.
async fn write_response(
    io: &mut TcpStream,
    out: &mut Vec<u8>,
    resp: Response<Body>,
    client_close: bool,
) -> io::Result<bool> {
    let (parts, mut body) = resp.into_parts();
    let status = parts.status;
    let bodyless = status.is_informational() || status.as_u16() == 204 || status.as_u16() == 304;
    let length = if bodyless {
        None
    } else {
        body.size_hint().exact().or_else(|| {
            parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        })
    };
    let server_close = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let close = client_close || server_close;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_date = false;
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        has_date |= name == header::DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        date::append(out);
        out.extend_from_slice(b"\r\n");
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    match length {
        _ if bodyless => {}
        Some(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        None => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    if bodyless {
        io.write_all(out).await?;
        return Ok(!close);
    }

    let chunked = length.is_none();
    let mut sent: u64 = 0;
    // Bytes wait in `out` (the head first) while more frames are ready at
    // once, so a burst of frames (a translated stream yields one per
    // event) leaves in one write; before waiting for a frame that is not
    // ready, what is pending goes out.
    loop {
        let frame = match futures_util::FutureExt::now_or_never(body.frame()) {
            Some(f) => f,
            None => {
                if !out.is_empty() {
                    io.write_all(out).await?;
                    out.clear();
                }
                body.frame().await
            }
        };
        let data = match frame {
            None => break,
            Some(Err(_)) => return Err(io::Error::other("response body failed")),
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue, // trailers are not sent
            },
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if length.is_some_and(|n| sent > n) {
            return Err(io::Error::other("response body longer than its length"));
        }
        if chunked {
            let _ = write!(out, "{:x}\r\n", data.len());
        }
        if data.len() > INLINE {
            // Large: written without copying it behind what is pending.
            write_two(io, out, &data).await?;
            out.clear();
            if chunked {
                out.extend_from_slice(b"\r\n");
            }
        } else {
            out.extend_from_slice(&data);
            if chunked {
                out.extend_from_slice(b"\r\n");
            }
            if out.len() >= COALESCE {
                io.write_all(out).await?;
                out.clear();
            }
        }
    }
    if let Some(n) = length {
        if sent != n {
            return Err(io::Error::other("response body shorter than its length"));
        }
    }
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    if !out.is_empty() {
        io.write_all(out).await?;
        out.clear();
    }
    Ok(!close)
}

/// Hands the connection, with what was read of it, to hyper: with a timer,
/// the head deadline on every head (hyper starts it when it waits for a
/// head, so it bounds idle keep-alive time too), at most [`MAX_HEAD`] of
/// head buffered, and the body deadline on every body. (A head is handed
/// over only once it parsed, so its own deadline had not passed.)
async fn handoff(
    io: TcpStream,
    read: BytesMut,
    peer: SocketAddr,
    router: Router,
    graceful: Watcher,
    limits: ClientLimits,
) {
    let body_timeout = limits.body_timeout;
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let problem = host_problem(req.version(), req.headers());
        let mut router = router.clone();
        async move {
            if let Some(why) = problem {
                let mut r = axum::response::Response::new(Body::from(why));
                *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
                r.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
                return Ok(r);
            }
            let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let req = req.map(|incoming| {
                Body::new(Stalled {
                    inner: Box::pin(tower_http::timeout::TimeoutBody::new(
                        body_timeout,
                        incoming,
                    )),
                    flag: stalled.clone(),
                })
            });
            let resp = tower::Service::call(&mut router, req).await;
            // Whatever the handler made of a body that stopped arriving,
            // the client gets 408 and the connection closes.
            if stalled.load(std::sync::atomic::Ordering::Relaxed) {
                let mut r = axum::response::Response::new(Body::from(
                    &BODY_TIMEOUT[BODY_TIMEOUT.len() - 50..],
                ));
                *r.status_mut() = axum::http::StatusCode::REQUEST_TIMEOUT;
                r.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
                return Ok(r);
            }
            resp
        }
    });
    let io = Prefixed {
        read: read.freeze(),
        io,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_buf_size(MAX_HEAD);
    builder.http2().timer(hyper_util::rt::TokioTimer::new());
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), svc)
        .into_owned();
    let _ = graceful.watch(conn).await;
}

/// How long a connection beyond the cap may take to send its request.
const OVERFLOW_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// Most connections beyond the cap held at once (for that second); more
/// are closed at once.
pub const OVERFLOW_MAX: usize = 64;
/// The answer to a request on a connection beyond the cap.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-type: text/plain\r\ncontent-length: 42\r\n\r\ntoo many open connections; try again later";

/// Serves a connection accepted beyond the connection cap: it has
/// [`OVERFLOW_WAIT`] to send a request head; `GET /health` and
/// `GET /api/health` are answered as usual (so monitoring still sees the
/// instance), anything else gets 503 with `Retry-After`, and the
/// connection closes.
pub async fn serve_overflow(mut io: TcpStream, peer: SocketAddr, mut router: Router) {
    let mut buf = BytesMut::with_capacity(4 * 1024);
    let mut spans: Vec<Span> = Vec::with_capacity(16);
    let read = tokio::time::timeout(OVERFLOW_WAIT, async {
        loop {
            match parse_request(&buf, &mut spans) {
                Parse::Partial if buf.len() < 8 * 1024 => {}
                other => return Some(other),
            }
            match io.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await;
    let head = match read {
        Ok(Some(Parse::Ready(head))) => head,
        Ok(None) => return,
        _ => {
            let _ = io.write_all(BUSY).await;
            return;
        }
    };
    let path = &buf[head.path.0..head.path.1];
    let health = head.method == Method::GET && (path == b"/health" || path == b"/api/health");
    if !health {
        let _ = io.write_all(BUSY).await;
        return;
    }
    let raw = buf.split_to(head.len).freeze();
    let Some(req) = build_request(head.method, &raw, head.path, &spans, Body::empty(), peer) else {
        let _ = io.write_all(BUSY).await;
        return;
    };
    let resp = match tower::Service::call(&mut router, req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let mut out = Vec::with_capacity(1024);
    let _ = write_response(&mut io, &mut out, resp, true).await;
    let _ = io.shutdown().await;
}

/// Runs [`serve_overflow`] for a connection beyond the cap, unless
/// [`OVERFLOW_MAX`] already run (then it is closed at once); `running`
/// counts them.
pub fn spawn_overflow(
    running: &std::sync::Arc<std::sync::atomic::AtomicUsize>,
    io: TcpStream,
    peer: SocketAddr,
    router: Router,
) {
    use std::sync::atomic::Ordering;
    if running.fetch_add(1, Ordering::Relaxed) >= OVERFLOW_MAX {
        running.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    let running = running.clone();
    tokio::spawn(async move {
        serve_overflow(io, peer, router).await;
        running.fetch_sub(1, Ordering::Relaxed);
    });
}

/// A request body on hyper's side that notes when it stopped arriving
/// within the body deadline.
struct Stalled {
    inner: Pin<Box<tower_http::timeout::TimeoutBody<hyper::body::Incoming>>>,
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let r = this.inner.as_mut().poll_frame(cx);
        if let Poll::Ready(Some(Err(e))) = &r {
            if e.is::<tower_http::timeout::TimeoutError>() {
                this.flag.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Why an HTTP/1.1 request must be refused for its `Host` (RFC 9112 §3.2:
/// exactly one, or 400); HTTP/1.0 may omit it and HTTP/2 names the
/// authority in the request line.
pub fn host_problem(
    version: axum::http::Version,
    headers: &axum::http::HeaderMap,
) -> Option<&'static str> {
    if version != axum::http::Version::HTTP_11 {
        return None;
    }
    match headers.get_all(axum::http::header::HOST).iter().count() {
        1 => None,
        0 => Some("400 Bad Request: an HTTP/1.1 request needs a Host header\n"),
        _ => Some("400 Bad Request: a request may carry only one Host header\n"),
    }
}

/// The next connection from `listener`, or `None` once `shutdown` is
/// cancelled. A failed accept (EMFILE and friends) is logged and retried
/// after a short pause, so open connections keep being served and the loop
/// does not spin.
pub async fn accept(
    listener: &tokio::net::TcpListener,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            res = listener.accept() => match res {
                Ok(c) => return Some(c),
                Err(e) => {
                    // Out of file descriptors this repeats every pause: one
                    // warning every 10 s at most, with how many were not shown.
                    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                    static QUIET: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                    let now = llm_link_gateway::util::now_secs();
                    let last = LAST.load(std::sync::atomic::Ordering::Relaxed);
                    if now >= last + 10
                        && LAST
                            .compare_exchange(last, now, std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed)
                            .is_ok()
                    {
                        let quiet = QUIET.swap(0, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(suppressed = quiet, "accept failed: {e}");
                    } else {
                        QUIET.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            },
        }
    }
}

/// The open connections of one serving loop, so that shutdown can wait
/// until each has finished.
#[derive(Clone)]
pub struct Connections {
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    closed: std::sync::Arc<tokio::sync::Notify>,
}

impl Connections {
    /// Counts into `open`, which others may read (the acceptor balances on it).
    pub fn new(open: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Connections {
        Connections {
            open,
            closed: std::sync::Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Runs a connection; `counted` when whoever accepted it already
    /// added it to the count.
    pub fn spawn(
        &self,
        conn: impl std::future::Future<Output = ()> + Send + 'static,
        counted: bool,
    ) {
        use std::sync::atomic::Ordering;
        if !counted {
            self.open.fetch_add(1, Ordering::Relaxed);
        }
        let this = self.clone();
        tokio::spawn(async move {
            conn.await;
            this.open.fetch_sub(1, Ordering::Relaxed);
            this.closed.notify_one();
        });
    }

    /// How many are open.
    pub fn open(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Returns once no connection is open.
    pub async fn drained(&self) {
        while self.open.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            self.closed.notified().await;
        }
    }
}

/// A connection whose first bytes were already read.
struct Prefixed {
    read: Bytes,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
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

/// The `Date` header's value, formatted once per second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
    }

    pub fn append(out: &mut Vec<u8>) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs || c.1.is_empty() {
                *c = (secs, httpdate::fmt_http_date(now));
            }
            out.extend_from_slice(c.1.as_bytes());
        });
    }
}

#[cfg(test)]
#[path = "front_tests.rs"]
mod tests;
