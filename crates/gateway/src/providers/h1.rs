//! A lean HTTP/1.1 client for plain-`http` upstreams (Ollama, llama.cpp,
//! vLLM and other local or in-cluster servers).
//!
//! hyper's pooled client drives every connection from a task of its own:
//! each request crosses a channel to that task, a oneshot back, and the
//! answer's body comes through another hand-over. On a loopback upstream
//! those hops were the largest share of llm-link's CPU per proxied request.
//! Here the request's own task writes the request and reads the answer on a
//! pooled connection; the answer's body reads straight from the socket and
//! puts the connection back in the pool when the message ends.
//!
//! What it does (RFC 9112): one write per request (head and body together);
//! answers framed by `Content-Length`, `Transfer-Encoding: chunked`
//! (extensions ignored, trailers read and dropped) or the connection's end;
//! interim 1xx answers skipped; keep-alive unless either side says
//! `Connection: close` or the answer is HTTP/1.0 without `keep-alive`.
//! A connection whose answer was not read to its end is closed, never
//! reused. A request on a reused connection that fails before a single byte
//! of answer (the upstream closed the idle connection just as it was taken)
//! is sent again once on a new connection, as browsers do; any other
//! failure is reported.

use crate::http1::Span;
use ::http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri, Version};
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Largest answer head (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Most headers in one answer.
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line or trailer line.
const MAX_LINE: usize = 8 * 1024;
/// Idle connections older than this are closed instead of reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per pool.
const MAX_IDLE: usize = 256;
/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;

/// Why an exchange failed.
#[derive(Debug)]
pub enum Error {
    /// No connection could be opened.
    Connect(io::Error),
    /// Opening a connection took longer than the connect timeout.
    ConnectTimeout,
    /// Writing the request or reading the answer failed.
    Io(io::Error),
    /// The upstream closed the connection before the answer was complete.
    Closed,
    /// The request was written whole and the connection ended without a
    /// byte of an answer.
    Unanswered,
    /// The answer is not valid HTTP/1.
    Malformed(&'static str),
}

impl Error {
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_) | Error::ConnectTimeout)
    }

    pub fn is_timeout(&self) -> bool {
        match self {
            Error::ConnectTimeout => true,
            Error::Connect(e) | Error::Io(e) => e.kind() == io::ErrorKind::TimedOut,
            _ => false,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Connect(e) => write!(f, "connect failed: {e}"),
            Error::ConnectTimeout => f.write_str("connect timed out"),
            Error::Io(e) => write!(f, "connection error: {e}"),
            Error::Closed => f.write_str("connection closed before the answer was complete"),
            Error::Unanswered => {
                f.write_str("connection closed without an answer to a request written whole")
            }
            Error::Malformed(what) => write!(f, "malformed HTTP answer: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// An open connection and its read buffer.
struct Conn {
    io: TcpStream,
    buf: BytesMut,
    /// Where the last answer head's headers sit (reused per answer).
    spans: Vec<Span>,
    /// The `host:port` it is connected to (the pool's key).
    authority: Arc<str>,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

struct Inner {
    connect_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

/// Pooled keep-alive connections to the `http` upstreams of one provider.
#[derive(Clone)]
pub struct Pool(Arc<Inner>);

impl Pool {
    pub fn new(connect_timeout: Duration) -> Pool {
        Pool(Arc::new(Inner {
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        }))
    }

    /// Sends one request: `fixed` headers first (a same-named header in
    /// `extra` replaces one), then `extra`, `Host` and the body's length.
    pub async fn send(
        &self,
        method: &Method,
        uri: &Uri,
        fixed: &HeaderMap,
        extra: &[(HeaderName, HeaderValue)],
        body: &Bytes,
    ) -> Result<Response<ResponseBody>, Error> {
        let authority = match uri.authority() {
            Some(a) => a.as_str(),
            None => return Err(Error::Connect(io::Error::other("URL without a host"))),
        };
        let wire = Wire::new(method, uri, authority, fixed, extra, body);
        // A reused connection may have been closed by the upstream just as
        // it was taken: a request that could not be written goes out again
        // on a new connection. One written whole and left unanswered is an
        // error ([`Error::Unanswered`]); the route's retry policy decides
        // whether it is sent again, as a counted attempt.
        let mut idle = self.checkout(authority);
        loop {
            let (mut conn, reused) = match idle.take() {
                Some(c) => (c, true),
                None => (self.connect(authority).await?, false),
            };
            match exchange(&mut conn, &wire).await {
                Ok(parsed) => return Ok(self.response(conn, parsed)),
                Err(Failure::Unwritten(e)) if reused => {
                    tracing::debug!(error = %e, "reused upstream connection was closed; writing the request on a new one");
                    continue;
                }
                Err(Failure::BeforeAnswer(e)) => {
                    tracing::debug!(error = %e, reused, "upstream closed the connection without answering a request written whole");
                    return Err(Error::Unanswered);
                }
                Err(Failure::Unwritten(e) | Failure::Other(e)) => return Err(e),
            }
        }
    }

    fn response(&self, conn: Conn, head: Head) -> Response<ResponseBody> {
        let mut resp = Response::new(ResponseBody {
            conn: Some(conn),
            framing: head.framing,
            keep_alive: head.keep_alive,
            pool: Some(self.clone()),
        });
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = head.headers;
        // An answer without a body hands its connection back at once.
        resp.body_mut().release_if_done();
        resp
    }

    fn checkout(&self, authority: &str) -> Option<Conn> {
        let mut idle = self.0.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(pos) = idle.iter().rposition(|i| &*i.conn.authority == authority) {
            let entry = idle.swap_remove(pos);
            if entry.since.elapsed() < IDLE_TIMEOUT && still_open(&entry.conn.io) {
                return Some(entry.conn);
            }
        }
        None
    }

    fn put(&self, mut conn: Conn) {
        conn.buf.clear();
        let mut idle = self.0.idle.lock().unwrap_or_else(|p| p.into_inner());
        // The oldest entry sits first; drop it when it has expired or the
        // pool is full.
        if idle
            .first()
            .is_some_and(|i| i.since.elapsed() >= IDLE_TIMEOUT)
            || idle.len() >= MAX_IDLE
        {
            idle.remove(0);
        }
        idle.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    async fn connect(&self, authority: &str) -> Result<Conn, Error> {
        let open = async {
            let mut last = None;
            for addr in tokio::net::lookup_host(authority)
                .await
                .map_err(Error::Connect)?
            {
                match TcpStream::connect(addr).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = Some(e),
                }
            }
            Err(Error::Connect(last.unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "the host name has no address")
            })))
        };
        let io = tokio::time::timeout(self.0.connect_timeout, open)
            .await
            .map_err(|_| Error::ConnectTimeout)??;
        let _ = io.set_nodelay(true);
        let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(30));
        let _ = socket2::SockRef::from(&io).set_tcp_keepalive(&keepalive);
        Ok(Conn {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            spans: Vec::with_capacity(16),
            authority: authority.into(),
        })
    }
}

/// An idle connection is reusable when reading from it would block: no
/// end of stream and no stray bytes arrived while it sat in the pool.
fn still_open(io: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// A request as written: the head, with the body appended when it is small
/// (one write, one packet), else the body apart (a vectored write, no copy).
struct Wire<'a> {
    bytes: Vec<u8>,
    body: Option<&'a Bytes>,
}

/// Bodies up to this size are copied behind the head.
const INLINE_BODY: usize = 16 * 1024;

impl<'a> Wire<'a> {
    fn new(
        method: &Method,
        uri: &Uri,
        authority: &str,
        fixed: &HeaderMap,
        extra: &[(HeaderName, HeaderValue)],
        body: &'a Bytes,
    ) -> Wire<'a> {
        // Framing and connection management are ours alone.
        fn ours(name: &HeaderName) -> bool {
            use ::http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
            name == CONTENT_LENGTH || name == TRANSFER_ENCODING || name == CONNECTION
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let inline = body.len() <= INLINE_BODY;
        let mut head = Vec::with_capacity(
            256 + path.len()
                + 64 * (fixed.len() + extra.len())
                + if inline { body.len() } else { 0 },
        );
        head.extend_from_slice(method.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        let mut has_host = false;
        let mut line = |name: &HeaderName, value: &HeaderValue| {
            has_host |= name == ::http::header::HOST;
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        };
        for (name, value) in fixed {
            if !ours(name) && !extra.iter().any(|(n, _)| n == name) {
                line(name, value);
            }
        }
        for (name, value) in extra {
            if !ours(name) {
                line(name, value);
            }
        }
        if !has_host {
            head.extend_from_slice(b"host: ");
            head.extend_from_slice(authority.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if !body.is_empty() || !matches!(*method, Method::GET | Method::HEAD) {
            head.extend_from_slice(b"content-length: ");
            head.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        if inline {
            head.extend_from_slice(body);
        }
        Wire {
            bytes: head,
            body: (!inline).then_some(body),
        }
    }
}

enum Failure {
    /// The request could not be written whole: the upstream cannot have
    /// acted on it, so it may go out again on another connection.
    Unwritten(Error),
    /// The request was written whole and nothing of an answer arrived: the
    /// upstream may have acted on it, so only the route's retry policy may
    /// send it again (RFC 9110 §9.2.2; a POST is not idempotent).
    BeforeAnswer(Error),
    Other(Error),
}

/// How the answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one; how many
    /// were read.
    Trailers(usize),
}

/// Most trailer lines after a chunked body (they are read and dropped).
const MAX_TRAILERS: usize = 32;

struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

/// Writes the request and reads the answer's head into `conn.buf`'s front.
async fn exchange(conn: &mut Conn, wire: &Wire<'_>) -> Result<Head, Failure> {
    write_request(&mut conn.io, wire)
        .await
        .map_err(|e| Failure::Unwritten(Error::Io(e)))?;
    conn.buf.clear();
    let mut got_any = false;
    loop {
        if !conn.buf.is_empty() {
            match parse_head(&conn.buf, &mut conn.spans).map_err(Failure::Other)? {
                Parsed::Complete(len, mut head) => {
                    // Header values share the head's bytes (no copy each).
                    let raw = conn.buf.split_to(len).freeze();
                    head.headers = crate::http1::header_map(&raw, &conn.spans)
                        .ok_or(Failure::Other(Error::Malformed("bad header name or value")))?;
                    return Ok(head);
                }
                Parsed::Interim(len) => {
                    conn.buf.advance(len);
                    continue;
                }
                Parsed::Partial if conn.buf.len() >= MAX_HEAD => {
                    return Err(Failure::Other(Error::Malformed("answer head too large")));
                }
                Parsed::Partial => {}
            }
        }
        conn.buf.reserve(READ_CHUNK);
        let n = match tokio::io::AsyncReadExt::read_buf(&mut conn.io, &mut conn.buf).await {
            Ok(n) => n,
            Err(e) if !got_any => return Err(Failure::BeforeAnswer(Error::Io(e))),
            Err(e) => return Err(Failure::Other(Error::Io(e))),
        };
        if n == 0 {
            return Err(if got_any {
                Failure::Other(Error::Closed)
            } else {
                Failure::BeforeAnswer(Error::Closed)
            });
        }
        got_any = true;
    }
}

async fn write_request(io: &mut TcpStream, wire: &Wire<'_>) -> io::Result<()> {
    match wire.body {
        None => io.write_all(&wire.bytes).await,
        Some(body) => crate::http1::write_two(io, &wire.bytes, body).await,
    }
}

enum Parsed {
    Complete(usize, Head),
    /// A 1xx answer of this length, to skip.
    Interim(usize),
    Partial,
}

/// Parses an answer head. On `Complete`, `spans` holds where its headers
/// are and the head's `headers` is left empty for [`crate::http1::header_map`].
fn parse_head(buf: &[u8], spans: &mut Vec<Span>) -> Result<Parsed, Error> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(Error::Malformed("too many headers")),
        Err(_) => return Err(Error::Malformed("bad status line or header")),
    };
    let code = resp.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| Error::Malformed("status code out of range"))?;
    if status.is_informational() {
        if code == 101 {
            return Err(Error::Malformed("unexpected protocol switch"));
        }
        return Ok(Parsed::Interim(len));
    }
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut chunked = false;
    let mut has_te = false;
    let mut length: Option<u64> = None;
    let mut close = false;
    let mut keep_alive_token = false;
    spans.clear();
    for h in resp.headers.iter() {
        spans.push(Span::of(buf, h));
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if resp.version == Some(0) {
                // HTTP/1.0 has no transfer codings (RFC 9112 §6.1): a
                // message that claims one cannot be framed safely.
                return Err(Error::Malformed("Transfer-Encoding on an HTTP/1.0 answer"));
            }
            has_te = true;
            // Chunked counts only as the last coding.
            chunked = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(Error::Malformed("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::Malformed("conflicting Content-Length"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|b| *b == b',') {
                let t = token.trim_ascii();
                close |= t.eq_ignore_ascii_case(b"close");
                keep_alive_token |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let framing = if code == 204 || code == 304 {
        Framing::Done
    } else if has_te {
        if chunked {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::UntilClose
        }
    } else {
        match length {
            Some(0) => Framing::Done,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    let keep_alive = !close
        && framing != Framing::UntilClose
        && (version == Version::HTTP_11 || keep_alive_token);
    Ok(Parsed::Complete(
        len,
        Head {
            status,
            version,
            headers: HeaderMap::new(),
            framing,
            keep_alive,
        },
    ))
}

/// An answer's body, read from the connection as the caller polls it.
pub struct ResponseBody {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    pool: Option<Pool>,
}

enum Step {
    Data(Bytes),
    NeedMore,
    End,
}

impl ResponseBody {
    /// Once the message has ended, the connection goes back to the pool
    /// (when both sides keep it alive and nothing follows the message).
    fn release_if_done(&mut self) {
        if self.framing != Framing::Done {
            return;
        }
        let Some(conn) = self.conn.take() else { return };
        if self.keep_alive && conn.buf.is_empty() {
            if let Some(pool) = self.pool.take() {
                pool.put(conn);
            }
        }
    }

    /// Takes what the buffer holds of the body.
    fn step(framing: &mut Framing, buf: &mut BytesMut) -> Result<Step, Error> {
        loop {
            match framing {
                Framing::Done => return Ok(Step::End),
                Framing::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = (*left).min(buf.len() as u64) as usize;
                    *left -= n as u64;
                    if *left == 0 {
                        *framing = Framing::Done;
                    }
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                Framing::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    return Ok(Step::Data(buf.split().freeze()));
                }
                Framing::Chunked(state) => match *state {
                    Chunk::Size => {
                        let Some(line) = take_line(buf)? else {
                            return Ok(Step::NeedMore);
                        };
                        let size = parse_chunk_size(&line)?;
                        *state = if size == 0 {
                            Chunk::Trailers(0)
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Chunk::Data(left) => {
                        if buf.is_empty() {
                            return Ok(Step::NeedMore);
                        }
                        let n = left.min(buf.len() as u64) as usize;
                        let data = buf.split_to(n).freeze();
                        *state = if left == n as u64 {
                            Chunk::DataEnd
                        } else {
                            Chunk::Data(left - n as u64)
                        };
                        return Ok(Step::Data(data));
                    }
                    Chunk::DataEnd => {
                        let Some(line) = take_line(buf)? else {
                            return Ok(Step::NeedMore);
                        };
                        if !line.is_empty() {
                            return Err(Error::Malformed("chunk data longer than its size"));
                        }
                        *state = Chunk::Size;
                    }
                    Chunk::Trailers(n) => {
                        let Some(line) = take_line(buf)? else {
                            return Ok(Step::NeedMore);
                        };
                        if line.is_empty() {
                            *framing = Framing::Done;
                        } else if n + 1 > MAX_TRAILERS {
                            return Err(Error::Malformed("too many trailer lines"));
                        } else {
                            *state = Chunk::Trailers(n + 1);
                        }
                    }
                },
            }
        }
    }
}

/// Removes one CRLF-terminated line (without its CRLF) from the buffer;
/// a bare LF, or a line longer than [`MAX_LINE`], is malformed (chunk
/// framing requires CRLF, RFC 9112 §7.1).
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, Error> {
    match buf.iter().position(|b| *b == b'\n') {
        Some(i) if i > MAX_LINE => Err(Error::Malformed("chunk line too long")),
        Some(i) => {
            if i == 0 || buf[i - 1] != b'\r' {
                return Err(Error::Malformed("chunk line not ended by CRLF"));
            }
            let mut line = buf.split_to(i + 1);
            line.truncate(i - 1);
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(Error::Malformed("chunk line too long")),
        None => Ok(None),
    }
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, Error> {
    let digits = line
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(Error::Malformed("bad chunk size"));
    }
    let mut n: u64 = 0;
    for d in digits {
        let v = (*d as char)
            .to_digit(16)
            .ok_or(Error::Malformed("bad chunk size"))?;
        n = n * 16 + u64::from(v);
    }
    Ok(n)
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match ResponseBody::step(&mut this.framing, &mut conn.buf) {
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(Step::Data(data)) => {
                    this.release_if_done();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::End) => {
                    this.release_if_done();
                    return Poll::Ready(None);
                }
                Ok(Step::NeedMore) => {}
            }
            conn.buf.reserve(READ_CHUNK);
            let n = match ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut conn.io),
                cx,
                &mut conn.buf
            )) {
                Ok(n) => n,
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(Error::Io(e))));
                }
            };
            if n == 0 {
                let ended_by_close = this.framing == Framing::UntilClose;
                this.conn = None;
                return Poll::Ready(if ended_by_close {
                    None
                } else {
                    Some(Err(Error::Closed))
                });
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.framing == Framing::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Done => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
#[path = "h1_tests.rs"]
mod tests;
