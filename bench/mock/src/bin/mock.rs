//! A tiny, fast OpenAI-shaped mock upstream for llm-link's benchmark harness.
//!
//! It shares no code with llm-link. Every response body is built once at
//! start-up and only reference-counted per request, so the mock costs as
//! little CPU as possible and the numbers measure the gateway, not the mock.
//!
//! Routes:
//! - `POST /v1/chat/completions`: parses the JSON body (enough to see
//!   `stream` and `stream_options.include_usage`) and answers either a
//!   `chat.completion` of `--body-bytes` bytes or an SSE stream of
//!   `--chunks` content chunks, a finish chunk, an optional usage chunk and
//!   `data: [DONE]`, with `--chunk-delay-ms` between chunks.
//! - `POST /v1/messages`: the same as an Anthropic upstream: a Messages
//!   JSON answer of about `--body-bytes` bytes, or for `"stream": true` the
//!   exact Anthropic event sequence (`message_start`, `content_block_start`,
//!   `--chunks` `content_block_delta`s, `content_block_stop`,
//!   `message_delta`, `message_stop`), with `--chunk-delay-ms` between
//!   content deltas.
//! - `GET /v1/models`, `GET /health`, `GET /stats` (`{"chat_requests": n}`:
//!   chat and messages requests answered so far, for the harness to check
//!   what a gateway forwarded).
//!
//! Prints `mock listening on http://HOST:PORT` once bound (`--port 0` picks
//! a free port).

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

const USAGE: &str = "usage: mock [--host 127.0.0.1] [--port 0] [--body-bytes 1024] [--chunks 100] \
[--chunk-delay-ms 0] [--threads N] [--model mock-model]";

struct Config {
    host: String,
    port: u16,
    body_bytes: usize,
    chunks: usize,
    chunk_delay: Option<Duration>,
    threads: usize,
    model: String,
}

fn parse_args() -> Result<Config, String> {
    let mut c = Config {
        host: "127.0.0.1".into(),
        port: 0,
        body_bytes: 1024,
        chunks: 100,
        chunk_delay: None,
        threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        model: "mock-model".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let val = it.next().ok_or_else(|| format!("{flag}: missing value"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--host" => c.host = val,
            "--port" => c.port = num(&val)? as u16,
            "--body-bytes" => c.body_bytes = num(&val)? as usize,
            "--chunks" => c.chunks = num(&val)? as usize,
            "--chunk-delay-ms" => {
                let ms = num(&val)?;
                c.chunk_delay = (ms > 0).then(|| Duration::from_millis(ms));
            }
            "--threads" => c.threads = (num(&val)? as usize).max(1),
            "--model" => c.model = val,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(c)
}

/// Everything a request may be answered with, prepared once.
struct Canned {
    completion: Bytes,
    /// Content chunks followed by the finish chunk.
    chunks: Arc<[Bytes]>,
    usage_chunk: Bytes,
    done: Bytes,
    models: Bytes,
    /// Anthropic Messages answer.
    message: Bytes,
    /// Anthropic SSE: `message_start` + `content_block_start` as one frame,
    /// then one frame per delta, then the closing events as one frame.
    message_events: Arc<[Bytes]>,
    chunk_delay: Option<Duration>,
    /// Chat and messages requests answered.
    chat_requests: AtomicU64,
}

const CREATED: u64 = 1_700_000_000;
const WORDS: &str = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor ";

fn build(c: &Config) -> Canned {
    let model = serde_json::to_string(&c.model).unwrap_or_else(|_| "\"mock-model\"".into());
    let completion_with = |content: &str, tokens: usize| {
        format!(
            concat!(
                r#"{{"id":"chatcmpl-mock","object":"chat.completion","created":{},"model":{},"#,
                r#""choices":[{{"index":0,"message":{{"role":"assistant","content":"{}"}},"#,
                r#""finish_reason":"stop"}}],"usage":{{"prompt_tokens":9,"completion_tokens":{},"total_tokens":{}}}}}"#
            ),
            CREATED,
            model,
            content,
            tokens,
            tokens + 9
        )
    };
    // Pad the content so the whole body is about --body-bytes long.
    // (The token count's digits change the length, so adjust a few times.)
    let mut pad = c.body_bytes.saturating_sub(completion_with("", 0).len()).max(1);
    let mut text = String::new();
    for _ in 0..4 {
        let content: String = WORDS.chars().cycle().take(pad).collect();
        text = completion_with(&content, pad.div_ceil(4));
        if text.len() == c.body_bytes {
            break;
        }
        let diff = c.body_bytes as i64 - text.len() as i64;
        pad = (pad as i64 + diff).max(1) as usize;
    }
    let completion = Bytes::from(text);

    let chunk = |delta: &str, finish: &str| {
        Bytes::from(format!(
            concat!(
                r#"data: {{"id":"chatcmpl-mock","object":"chat.completion.chunk","created":{},"model":{},"#,
                r#""choices":[{{"index":0,"delta":{},"finish_reason":{}}}]}}"#,
                "\n\n"
            ),
            CREATED, model, delta, finish
        ))
    };
    let mut chunks = Vec::with_capacity(c.chunks + 1);
    for i in 0..c.chunks {
        let delta = if i == 0 {
            format!(r#"{{"role":"assistant","content":"tok{i} "}}"#)
        } else {
            format!(r#"{{"content":"tok{i} "}}"#)
        };
        chunks.push(chunk(&delta, "null"));
    }
    chunks.push(chunk("{}", "\"stop\""));
    let usage_chunk = Bytes::from(format!(
        concat!(
            r#"data: {{"id":"chatcmpl-mock","object":"chat.completion.chunk","created":{},"model":{},"choices":[],"#,
            r#""usage":{{"prompt_tokens":9,"completion_tokens":{},"total_tokens":{}}}}}"#,
            "\n\n"
        ),
        CREATED,
        model,
        c.chunks,
        c.chunks + 9
    ));
    let models = Bytes::from(format!(
        r#"{{"object":"list","data":[{{"id":{model},"object":"model","created":{CREATED},"owned_by":"mock"}}]}}"#
    ));
    let (message, message_events) = build_anthropic(c, &model);
    Canned {
        message,
        message_events,
        completion,
        chunks: chunks.into(),
        usage_chunk,
        done: Bytes::from_static(b"data: [DONE]\n\n"),
        models,
        chunk_delay: c.chunk_delay,
        chat_requests: AtomicU64::new(0),
    }
}

fn build_anthropic(c: &Config, model: &str) -> (Bytes, Arc<[Bytes]>) {
    let message_with = |content: &str, tokens: usize| {
        format!(
            concat!(
                r#"{{"id":"msg_mock","type":"message","role":"assistant","model":{},"#,
                r#""content":[{{"type":"text","text":"{}"}}],"stop_reason":"end_turn","stop_sequence":null,"#,
                r#""usage":{{"input_tokens":9,"output_tokens":{}}}}}"#
            ),
            model, content, tokens
        )
    };
    let pad = c.body_bytes.saturating_sub(message_with("", 0).len()).max(1);
    let content: String = WORDS.chars().cycle().take(pad).collect();
    let message = Bytes::from(message_with(&content, pad.div_ceil(4)));

    let event = |name: &str, data: String| format!("event: {name}\ndata: {data}\n\n");
    let mut frames = Vec::with_capacity(c.chunks + 2);
    let mut head = event(
        "message_start",
        format!(
            concat!(
                r#"{{"type":"message_start","message":{{"id":"msg_mock","type":"message","role":"assistant","#,
                r#""model":{},"content":[],"stop_reason":null,"stop_sequence":null,"#,
                r#""usage":{{"input_tokens":9,"output_tokens":1}}}}}}"#
            ),
            model
        ),
    );
    head.push_str(&event(
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#.into(),
    ));
    // The first delta goes with the head, so a client's first bytes carry text.
    for i in 0..c.chunks {
        let delta = event(
            "content_block_delta",
            format!(r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"tok{i} "}}}}"#),
        );
        if i == 0 {
            head.push_str(&delta);
            frames.push(Bytes::from(std::mem::take(&mut head)));
        } else {
            frames.push(Bytes::from(delta));
        }
    }
    if !head.is_empty() {
        frames.push(Bytes::from(head));
    }
    let mut tail = event("content_block_stop", r#"{"type":"content_block_stop","index":0}"#.into());
    tail.push_str(&event(
        "message_delta",
        format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{}}}}}"#,
            c.chunks
        ),
    ));
    tail.push_str(&event("message_stop", r#"{"type":"message_stop"}"#.into()));
    frames.push(Bytes::from(tail));
    (message, frames.into())
}

/// A response body: a list of pre-built frames, optionally with a delay
/// between them (no delay before the first).
struct MockBody {
    frames: Vec<Bytes>,
    next: usize,
    delay: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    exact: bool,
}

impl MockBody {
    fn full(b: Bytes) -> Self {
        MockBody {
            frames: vec![b],
            next: 0,
            delay: None,
            sleep: None,
            exact: true,
        }
    }
    fn stream(frames: Vec<Bytes>, delay: Option<Duration>) -> Self {
        MockBody {
            frames,
            next: 0,
            delay,
            sleep: None,
            exact: false,
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.next >= this.frames.len() {
            return Poll::Ready(None);
        }
        if let (Some(d), true) = (this.delay, this.next > 0) {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        let b = std::mem::take(&mut this.frames[this.next]);
        this.next += 1;
        Poll::Ready(Some(Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.next >= self.frames.len()
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            let n: usize = self.frames[self.next..].iter().map(Bytes::len).sum();
            SizeHint::with_exact(n as u64)
        } else {
            SizeHint::default()
        }
    }
}

#[derive(Deserialize, Default)]
struct ChatReq {
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

fn json(status: StatusCode, b: Bytes) -> Response<MockBody> {
    let mut r = Response::new(MockBody::full(b));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, msg: &'static str) -> Response<MockBody> {
    let body = format!(r#"{{"error":{{"message":"{msg}","type":"invalid_request_error","code":null}}}}"#);
    json(status, Bytes::from(body))
}

async fn handle(req: Request<Incoming>, canned: Arc<Canned>) -> Result<Response<MockBody>, Infallible> {
    let path = req.uri().path();
    if req.method() == Method::POST && (path == "/v1/chat/completions" || path == "/v1/messages") {
        canned.chat_requests.fetch_add(1, Ordering::Relaxed);
    }
    let resp = match (req.method(), path) {
        (&Method::POST, "/v1/chat/completions") => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return Ok(error(StatusCode::BAD_REQUEST, "cannot read body")),
            };
            let parsed: ChatReq = match serde_json::from_slice(&body) {
                Ok(p) => p,
                Err(_) => return Ok(error(StatusCode::BAD_REQUEST, "body is not valid JSON")),
            };
            if parsed.stream {
                let usage = parsed.stream_options.is_some_and(|o| o.include_usage);
                let mut frames = Vec::with_capacity(canned.chunks.len() + 2);
                frames.extend(canned.chunks.iter().cloned());
                if usage {
                    frames.push(canned.usage_chunk.clone());
                }
                frames.push(canned.done.clone());
                let mut r = Response::new(MockBody::stream(frames, canned.chunk_delay));
                let h = r.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                r
            } else {
                json(StatusCode::OK, canned.completion.clone())
            }
        }
        (&Method::POST, "/v1/messages") => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return Ok(error(StatusCode::BAD_REQUEST, "cannot read body")),
            };
            let parsed: ChatReq = match serde_json::from_slice(&body) {
                Ok(p) => p,
                Err(_) => return Ok(error(StatusCode::BAD_REQUEST, "body is not valid JSON")),
            };
            if parsed.stream {
                let frames = canned.message_events.to_vec();
                let mut r = Response::new(MockBody::stream(frames, canned.chunk_delay));
                let h = r.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                r
            } else {
                json(StatusCode::OK, canned.message.clone())
            }
        }
        (&Method::GET, "/v1/models") => json(StatusCode::OK, canned.models.clone()),
        (&Method::GET, "/health") => json(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#)),
        (&Method::GET, "/stats") => {
            let n = canned.chat_requests.load(Ordering::Relaxed);
            json(StatusCode::OK, Bytes::from(format!(r#"{{"chat_requests":{n}}}"#)))
        }
        _ => error(StatusCode::NOT_FOUND, "no such route on the mock"),
    };
    Ok(resp)
}

/// Binds with a deep accept queue: `TcpListener::bind` uses a backlog of
/// 128, which overflows (and costs a 1 s SYN retry) when 1,000 clients
/// connect at once.
async fn listen(host: &str, port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host((host, port)).await? {
        let sock = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        sock.set_reuseaddr(true)?;
        match sock.bind(addr).and_then(|_| sock.listen(4096)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
}

fn main() {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mock: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mock: cannot start runtime: {e}");
            std::process::exit(1);
        }
    };
    let canned = Arc::new(build(&cfg));
    rt.block_on(async move {
        let listener = match listen(&cfg.host, cfg.port).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("mock: cannot listen on {}:{}: {e}", cfg.host, cfg.port);
                std::process::exit(2);
            }
        };
        let addr = match listener.local_addr() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("mock: {e}");
                std::process::exit(1);
            }
        };
        println!(
            "mock listening on http://{addr} (body {} B, {} chunks, {} ms between chunks, {} threads)",
            canned.completion.len(),
            canned.chunks.len().saturating_sub(1),
            cfg.chunk_delay.map_or(0, |d| d.as_millis()),
            cfg.threads
        );
        let _ = std::io::stdout().flush();
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // e.g. EMFILE: back off instead of spinning.
                    eprintln!("mock: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let canned = canned.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(req, canned.clone()));
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
}
