//! Usage metering, the request lifecycle's one finaliser: one row per
//! chat/embeddings request, on success and failure alike, written in
//! batches through the [`Recorder`].
//!
//! One finaliser for every surface, armed by the model-route layer
//! ([`begin`], through `lifecycle::open`) before the handler runs. Handlers
//! only attach a [`Note`] to their response (what routing chose, the usage
//! of a whole answer, and for a stream a shared [`Tally`] the stream fills
//! in as it passes); [`finish`] wraps the response body, and the row is
//! settled when that body ends or is dropped (a client that disconnects
//! mid-stream included), then pushed into the [`Recorder`]'s queue.
//! Nothing on the request path waits on the database.
//!
//! The client key is never stored: only the first 8 hex digits of its
//! SHA-256 (`key_id`).

use crate::error::{ApiError, ErrorCode};
use crate::govern::{Admission, Principal};
use crate::presets::Wire;
use crate::providers::{ByteStream, EventStream, ForwardBody, Forwarded};
use crate::routing::exec::RouteLog;
use crate::snapshot::Runtime;
use crate::usage::{Recorder, UsageRow};
use axum_core::body::Body;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::HeaderValue;
use http_body::Body as HttpBody;
use llm_link_protocol::ir::{StreamEvent, Usage};
use llm_link_protocol::json::RawObject;
use llm_link_protocol::usage::{Format, UsageScanner};
use sha2::{Digest, Sha256};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

/// Error label of a request whose client went away before the answer ended.
pub const CLIENT_DISCONNECTED: &str = "client_disconnected";
/// Error label of an in-band error event inside a stream that had started.
pub const STREAM_ERROR: &str = "stream_error";
/// Status recorded for a client that went away before any answer (nginx's 499).
pub const STATUS_CLIENT_CLOSED: u16 = 499;

/// The metered endpoints, by path: (protocol, endpoint).
pub fn endpoint_of(path: &str) -> Option<(&'static str, &'static str)> {
    let p = path.strip_prefix("/anthropic").unwrap_or(path);
    Some(match p {
        "/v1/chat/completions" => ("openai", "chat/completions"),
        "/api/v1/llm/chat" => ("openai", "llm/chat"),
        "/v1/completions" => ("openai", "completions"),
        "/v1/embeddings" => ("openai", "embeddings"),
        "/v1/messages" => ("anthropic", "messages"),
        "/api/chat" => ("ollama", "chat"),
        "/api/generate" => ("ollama", "generate"),
        "/api/embed" => ("ollama", "embed"),
        "/api/embeddings" => ("ollama", "embeddings"),
        _ => return None,
    })
}

/// The non-secret identifier of a client key: the first 8 hex digits of
/// its SHA-256 (`printf %s KEY | sha256sum | cut -c1-8`).
pub fn key_id(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = Sha256::digest(key.as_bytes());
    let mut s = String::with_capacity(8);
    for b in &d[..4] {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

fn format_of(wire: Wire) -> Format {
    match wire {
        Wire::OpenAi => Format::OpenAi,
        Wire::Anthropic => Format::Anthropic,
        Wire::Ollama => Format::Ollama,
        Wire::Responses => Format::Responses,
    }
}

/// What a stream reports while it passes: its latest usage and the first
/// error inside it.
#[derive(Debug, Default)]
pub struct Tally {
    inner: Mutex<(Option<Usage>, Option<&'static str>)>,
}

impl Tally {
    fn set_usage(&self, u: Usage) {
        self.lock().0 = Some(u);
    }

    fn error(&self, code: &'static str) {
        self.lock().1.get_or_insert(code);
    }

    fn get(&self) -> (Option<Usage>, Option<&'static str>) {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<Usage>, Option<&'static str>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The model a request named, on an answer refused before routing ran (a
/// scope, limit or budget refusal), so its usage row still names it.
#[derive(Debug, Clone)]
pub struct RequestedModel {
    pub model: String,
    pub stream: bool,
}

/// A catalog model's prices, per million tokens; an unset price is 0,
/// except the cached one, which falls back to `input`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Price {
    input: Option<f64>,
    output: Option<f64>,
    cached_input: Option<f64>,
}

impl Price {
    fn of(m: &crate::config::catalog::CatalogModel) -> Price {
        Price {
            input: m.input_price,
            output: m.output_price,
            cached_input: m.cached_input_price,
        }
    }

    /// `(prompt − cached) × input + cached × (cached_input, else input) +
    /// completion × output`, per million tokens.
    ///
    /// `prompt_tokens` counts the cached tokens too, whatever the wire
    /// format: OpenAI's `prompt_tokens` includes
    /// `prompt_tokens_details.cached_tokens`, and the protocol crate adds
    /// Anthropic's `cache_read_input_tokens` and
    /// `cache_creation_input_tokens` to `input_tokens` (`cached_tokens` is
    /// the cache reads alone, so cache writes are billed at `input`). A
    /// cached count above the prompt's (an odd upstream) is capped at it.
    fn cost(&self, u: &Usage) -> f64 {
        let input = self.input.unwrap_or(0.0);
        let cached = u.cached_tokens.unwrap_or(0).min(u.prompt_tokens);
        let fresh = u.prompt_tokens - cached;
        (fresh as f64 * input
            + cached as f64 * self.cached_input.unwrap_or(input)
            + u.completion_tokens as f64 * self.output.unwrap_or(0.0))
            / 1_000_000.0
    }
}

/// What a handler knows about its request, attached to the response for
/// [`finish`].
#[derive(Debug, Clone, Default)]
pub struct Note {
    model: String,
    provider: Option<String>,
    upstream_model: Option<String>,
    attempts: u32,
    stream: bool,
    usage: Option<Usage>,
    error: Option<&'static str>,
    /// The catalog model's prices, when it has any.
    price: Option<Price>,
    tally: Option<Arc<Tally>>,
    /// The request's limits and budget reservation, settled with the cost.
    admission: Option<Arc<Mutex<Option<Admission>>>>,
    /// Usage is not recorded (no database): every method does nothing.
    off: bool,
}

impl Note {
    /// The requested model and what routing did: the provider and upstream
    /// model of the last attempt (the one that answered, on success).
    pub fn new(rec: &Recorder, rt: &Runtime, model: &str, log: &RouteLog, stream: bool) -> Note {
        if !rec.enabled() {
            return Note {
                off: true,
                ..Note::default()
            };
        }
        let last = log.steps.iter().rev().find(|s| s.key.is_some());
        let provider = last.map(|s| s.provider.to_string());
        let upstream_model = last.map(|s| s.model.clone());
        let price = match (&provider, &upstream_model) {
            (Some(p), Some(up)) if !rt.catalog.models.is_empty() => rt
                .catalog
                .models
                .iter()
                .find(|m| m.served_by == *p && (m.model_id == model || m.model_id == *up))
                .map(Price::of)
                .filter(|p| *p != Price::default()),
            _ => None,
        };
        Note {
            model: model.to_string(),
            provider,
            upstream_model,
            attempts: log.attempts() as u32,
            stream,
            price,
            ..Note::default()
        }
    }

    /// Records the error a request ended with.
    pub fn failed(&mut self, e: &ApiError) {
        if !self.off {
            self.error = Some(e.code());
        }
    }

    /// Records the usage of a whole (translated) answer.
    pub fn answered(&mut self, usage: Option<Usage>) {
        if !self.off {
            self.usage = usage;
        }
    }

    /// Wraps a translated stream so it reports its usage and in-band
    /// errors as it passes.
    pub fn watch(&mut self, events: &mut EventStream) {
        if self.off {
            return;
        }
        let tally = self.tally();
        let inner = std::mem::replace(events, Box::pin(futures_util::stream::empty()));
        *events = watch_events(inner, tally);
    }

    /// Reads usage from a forwarded answer of the client's own format.
    pub fn forwarded(&mut self, fwd: &mut Forwarded, wire: Wire) {
        if self.off {
            return;
        }
        let format = format_of(wire);
        match &mut fwd.body {
            ForwardBody::Full(b) => self.usage = llm_link_protocol::usage::from_body(format, b),
            ForwardBody::Stream(s) => {
                let tally = self.tally();
                let inner: ByteStream =
                    std::mem::replace(s, Box::pin(futures_util::stream::empty()));
                *s = Box::pin(Scanned {
                    inner,
                    scanner: UsageScanner::new(format),
                    tally,
                    ended: false,
                });
            }
        }
    }

    fn tally(&mut self) -> Arc<Tally> {
        self.tally.get_or_insert_with(Arc::default).clone()
    }

    /// Keeps the request's admission until the row is settled.
    pub fn hold(&mut self, adm: Admission) {
        if !adm.is_empty() {
            self.admission = Some(Arc::new(Mutex::new(Some(adm))));
        }
    }

    /// Hands the note to [`finish`].
    pub fn attach(self, resp: &mut http::Response<Body>) {
        if self.off {
            return;
        }
        resp.extensions_mut().insert(self);
    }
}

fn watch_events(events: EventStream, tally: Arc<Tally>) -> EventStream {
    Box::pin(events.map(move |item| {
        match &item {
            Ok(StreamEvent::Chunk(c)) => {
                if let Some(u) = c.usage {
                    tally.set_usage(u);
                }
            }
            Ok(StreamEvent::Error(_)) => tally.error(STREAM_ERROR),
            Ok(StreamEvent::Done) => {}
            Err(e) => tally.error(e.code()),
        }
        item
    }))
}

/// A forwarded byte stream watched for usage; the bytes pass unchanged.
struct Scanned {
    inner: ByteStream,
    scanner: UsageScanner,
    tally: Arc<Tally>,
    ended: bool,
}

impl Scanned {
    fn report(&self) {
        if let Some(u) = self.scanner.usage() {
            self.tally.set_usage(u);
        }
        if self.scanner.saw_error() {
            self.tally.error(STREAM_ERROR);
        }
    }
}

impl Stream for Scanned {
    type Item = Result<Bytes, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let item = this.inner.as_mut().poll_next(cx);
        match &item {
            Poll::Ready(Some(Ok(b))) if this.scanner.feed(b) => this.report(),
            Poll::Ready(Some(Err(e))) => this.tally.error(e.code()),
            Poll::Ready(None) if !this.ended => {
                this.ended = true;
                if this.scanner.finish() {
                    this.report();
                }
            }
            _ => {}
        }
        item
    }
}

/// What the middleware knows before the handler runs.
struct Draft {
    rec: Recorder,
    started: Instant,
    row: UsageRow,
}

impl Draft {
    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

/// A metered request between [`begin`] and [`finish`]. Records the request
/// as abandoned when the client goes away before the handler answered (the
/// handler's future is dropped with this).
pub struct Pending(Option<Draft>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let latency_ms = d.elapsed_ms();
            let mut row = d.row;
            row.status = STATUS_CLIENT_CLOSED;
            row.error = Some(CLIENT_DISCONNECTED);
            row.latency_ms = latency_ms;
            d.rec.record(row);
        }
    }
}

fn header_text(h: &http::HeaderMap, name: &str) -> Option<String> {
    let v = h.get(name)?.to_str().ok()?.trim();
    (!v.is_empty() && v.len() <= 128).then(|| v.to_string())
}

/// Usage metering of the model routes, first half: what is known before
/// the handler runs. `None` when nothing is recorded (no database, or not a
/// model call). Runs inside client auth, so a rejected key records nothing
/// (see the server's `api::ModelRoutes`).
pub fn begin(
    rec: &Recorder,
    app: Option<&str>,
    who: Option<&Principal>,
    req: &http::Request<Body>,
) -> Option<Pending> {
    if !rec.enabled() {
        return None;
    }
    let (protocol, endpoint) = endpoint_of(req.uri().path())?;
    let h = req.headers();
    let row = UsageRow {
        ts: crate::util::now_ms(),
        request_id: header_text(h, "x-request-id").unwrap_or_default(),
        protocol,
        endpoint,
        app: header_text(h, "x-llm-link-app").or_else(|| app.map(str::to_string)),
        key_id: crate::auth::presented_key(h).map(key_id),
        user_id: who.and_then(Principal::user_id),
        virtual_key_id: who.and_then(Principal::key_id),
        ..UsageRow::default()
    };
    Some(Pending(Some(Draft {
        rec: rec.clone(),
        started: Instant::now(),
        row,
    })))
}

/// Usage metering, second half: settles the row from the handler's answer,
/// or wraps a body still to come so the row is settled when it ends.
pub fn finish(mut pending: Pending, mut resp: http::Response<Body>) -> http::Response<Body> {
    let Some(draft) = pending.0.take() else {
        return resp;
    };
    let note = resp.extensions_mut().remove::<Note>();
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    if note.is_none() && code.is_none() {
        // Not a model call (an Ollama load/unload answer).
        return resp;
    }
    let Draft {
        rec,
        started,
        mut row,
    } = draft;
    if let Some(id) = header_text(resp.headers(), "x-request-id") {
        row.request_id = id;
    } else {
        if row.request_id.is_empty() {
            row.request_id = crate::util::new_id("req_");
        }
        if let Ok(v) = HeaderValue::from_str(&row.request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
    }
    row.status = resp.status().as_u16();
    let mut note = note.unwrap_or_default();
    // Moved, not copied: the note keeps only what settles the row.
    row.model = std::mem::take(&mut note.model);
    row.provider = note.provider.take();
    row.upstream_model = note.upstream_model.take();
    row.attempts = note.attempts;
    row.stream = note.stream;
    if let Some(m) = resp.extensions_mut().remove::<RequestedModel>() {
        if row.model.is_empty() {
            row.model = m.model;
            row.stream = m.stream;
        }
    }
    row.error = code.or(note.error);
    if row.error.is_none() && row.status >= 400 {
        row.error = Some("http_error");
    }
    let finish = Finish {
        rec,
        started,
        row,
        note,
    };
    let (parts, body) = resp.into_parts();
    http::Response::from_parts(
        parts,
        Body::new(Metered {
            inner: body,
            finish: Some(finish),
            ttfb_ms: None,
        }),
    )
}

/// Settles the row once the body is done.
struct Finish {
    rec: Recorder,
    started: Instant,
    row: UsageRow,
    note: Note,
}

impl Finish {
    fn done(self, ttfb_ms: Option<u64>, complete: bool) {
        let Finish {
            rec,
            started,
            mut row,
            note,
        } = self;
        row.latency_ms = started.elapsed().as_millis() as u64;
        row.ttfb_ms = ttfb_ms;
        let (streamed, inband) = note.tally.as_ref().map(|t| t.get()).unwrap_or_default();
        if row.error.is_none() {
            row.error = inband.or((!complete).then_some(CLIENT_DISCONNECTED));
        }
        if let Some(u) = streamed.or(note.usage) {
            row.input_tokens = Some(u.prompt_tokens);
            row.output_tokens = Some(u.completion_tokens);
            row.cached_tokens = u.cached_tokens;
            row.reasoning_tokens = u.reasoning_tokens;
            row.cost = note.price.map(|p| p.cost(&u));
        }
        if let Some(adm) = note
            .admission
            .as_ref()
            .and_then(|a| a.lock().unwrap_or_else(|p| p.into_inner()).take())
        {
            let tokens = row.input_tokens.map(|i| i + row.output_tokens.unwrap_or(0));
            if tokens.is_none() && row.status < 400 {
                // Answered, but the usage never came (a stream cut short
                // before its usage chunk): the reserved worst case is
                // charged, so an answer is never free.
                adm.settle_worst();
            } else {
                adm.settle(row.cost, tokens);
            }
        }
        rec.record(row);
    }
}

/// The response body, watched for its first byte and its end (or drop).
struct Metered {
    inner: Body,
    finish: Option<Finish>,
    ttfb_ms: Option<u64>,
}

impl Metered {
    fn settle(&mut self, complete: bool) {
        if let Some(f) = self.finish.take() {
            f.done(self.ttfb_ms, complete);
        }
    }
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = axum_core::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum_core::Error>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if this.ttfb_ms.is_none() && f.is_data() {
                    if let Some(fin) = &this.finish {
                        this.ttfb_ms = Some(fin.started.elapsed().as_millis() as u64);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(f) = &mut this.finish {
                    f.row.error.get_or_insert(STREAM_ERROR);
                }
                this.settle(false);
            }
            Poll::Ready(None) => this.settle(true),
            Poll::Pending => {}
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

impl Drop for Metered {
    fn drop(&mut self) {
        // A whole body whose one frame was sent ends without a last poll.
        let complete = self.inner.is_end_stream();
        self.settle(complete);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn usage(prompt: u64, cached: Option<u64>, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: cached,
            reasoning_tokens: None,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn cost_without_cached_tokens() {
        let p = Price {
            input: Some(2.0),
            output: Some(8.0),
            cached_input: Some(0.5),
        };
        // 1000 × 2 + 500 × 8 = 6000 per million.
        assert!(close(p.cost(&usage(1000, None, 500)), 0.006));
        assert!(close(p.cost(&usage(1000, Some(0), 500)), 0.006));
    }

    #[test]
    fn cost_with_cached_tokens_and_a_cached_price() {
        let p = Price {
            input: Some(2.0),
            output: Some(8.0),
            cached_input: Some(0.5),
        };
        // (1000 − 400) × 2 + 400 × 0.5 + 500 × 8 = 1200 + 200 + 4000.
        assert!(close(p.cost(&usage(1000, Some(400), 500)), 0.0054));
        // A cached count above the prompt's is capped at it.
        assert!(close(p.cost(&usage(100, Some(999), 0)), 0.00005));
    }

    #[test]
    fn cost_with_cached_tokens_and_no_cached_price() {
        let p = Price {
            input: Some(2.0),
            output: Some(8.0),
            cached_input: None,
        };
        // Cached tokens are billed at the input price.
        assert!(close(p.cost(&usage(1000, Some(400), 500)), 0.006));
        // Only a cached price: the other tokens are free.
        let p = Price {
            cached_input: Some(1.0),
            ..Price::default()
        };
        assert!(close(p.cost(&usage(1000, Some(400), 500)), 0.0004));
        // Only an output price.
        let p = Price {
            output: Some(10.0),
            ..Price::default()
        };
        assert!(close(p.cost(&usage(1000, Some(400), 500)), 0.005));
    }

    #[test]
    fn key_ids_are_short_hashes() {
        // printf %s sk-test | sha256sum
        assert_eq!(key_id("sk-test"), "f3abf2a6");
        assert_eq!(key_id("sk-test").len(), 8);
        assert_ne!(key_id("a"), key_id("b"));
    }

    #[test]
    fn metered_paths() {
        assert_eq!(
            endpoint_of("/v1/chat/completions"),
            Some(("openai", "chat/completions"))
        );
        assert_eq!(
            endpoint_of("/anthropic/v1/messages"),
            Some(("anthropic", "messages"))
        );
        assert_eq!(endpoint_of("/api/generate"), Some(("ollama", "generate")));
        assert_eq!(endpoint_of("/v1/models"), None);
        assert_eq!(endpoint_of("/v1/messages/count_tokens"), None);
    }
}

/// Whether an OpenAI stream request already asks for its usage
/// (`stream_options.include_usage`).
pub fn asks_usage(obj: &RawObject<'_>) -> bool {
    #[derive(serde::Deserialize)]
    struct StreamOptions {
        include_usage: Option<bool>,
    }
    obj.get::<StreamOptions>("stream_options")
        .ok()
        .flatten()
        .and_then(|o| o.include_usage)
        .unwrap_or(false)
}

/// The body with `stream_options.include_usage: true` (other stream options
/// and every other byte kept): a governed OpenAI stream must report its
/// usage to be charged. [`HideUsage`] takes the extra chunk out again.
pub fn ask_usage(body: &Bytes) -> Bytes {
    let Ok(obj) = RawObject::parse(body) else {
        return body.clone();
    };
    let mut opts: serde_json::Map<String, serde_json::Value> =
        obj.get("stream_options").ok().flatten().unwrap_or_default();
    opts.insert("include_usage".into(), serde_json::Value::Bool(true));
    Bytes::from(obj.with_field(
        "stream_options",
        &serde_json::Value::Object(opts).to_string(),
    ))
}

/// The longest event [`HideUsage`] holds back while looking for its end;
/// a longer one passes unexamined.
const HIDE_MAX_EVENT: usize = 1 << 20;

/// An OpenAI SSE stream without the usage-only chunk (`"choices":[]` and a
/// `usage`) that [`ask_usage`] made the upstream send: a client that did
/// not ask for it gets exactly the events it would have got. Every other
/// byte passes unchanged; complete events pass at once.
pub struct HideUsage {
    inner: ByteStream,
    /// The start of an event not complete yet.
    held: Vec<u8>,
    /// Gave up looking (an event beyond [`HIDE_MAX_EVENT`]).
    off: bool,
}

impl HideUsage {
    pub fn new(inner: ByteStream) -> HideUsage {
        HideUsage {
            inner,
            held: Vec::new(),
            off: false,
        }
    }

    /// Complete events of `held` (minus usage-only ones), keeping the rest.
    fn take_events(&mut self) -> Bytes {
        let mut out = Vec::with_capacity(self.held.len());
        let mut start = 0;
        while let Some(end) = event_end(&self.held[start..]) {
            let ev = &self.held[start..start + end];
            if !is_usage_only(ev) {
                out.extend_from_slice(ev);
            }
            start += end;
        }
        self.held.drain(..start);
        Bytes::from(out)
    }
}

/// The length of the first complete event (up to and including the blank
/// line that ends it), if there is one.
fn event_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < b.len() {
        let nl = match b[i] {
            b'\n' => 1,
            b'\r' if b.get(i + 1) == Some(&b'\n') => 2,
            b'\r' if i + 1 < b.len() => 1,
            // A lone `\r` at the end may be the first half of `\r\n`.
            b'\r' => return None,
            _ => {
                i += 1;
                continue;
            }
        };
        let j = i + nl;
        // A line end right after a line end: the blank line.
        match b.get(j) {
            Some(b'\n') => return Some(j + 1),
            Some(b'\r') if b.get(j + 1) == Some(&b'\n') => return Some(j + 2),
            Some(b'\r') if j + 1 < b.len() => return Some(j + 1),
            Some(b'\r') | None => return None,
            _ => i = j,
        }
    }
    None
}

fn is_usage_only(ev: &[u8]) -> bool {
    // Cheap test first: most events say nothing about usage.
    if !ev.windows(7).any(|w| w == b"\"usage\"") {
        return false;
    }
    let text = String::from_utf8_lossy(ev);
    let data: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect::<Vec<_>>()
        .join("\n");
    match serde_json::from_str::<serde_json::Value>(&data) {
        Ok(v) => {
            v.get("choices")
                .and_then(|c| c.as_array())
                .is_some_and(|c| c.is_empty())
                && v.get("usage").is_some_and(|u| !u.is_null())
        }
        Err(_) => false,
    }
}

impl Stream for HideUsage {
    type Item = Result<Bytes, ApiError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.off {
                return this.inner.as_mut().poll_next(cx);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(b))) => {
                    this.held.extend_from_slice(&b);
                    let out = this.take_events();
                    if this.held.len() > HIDE_MAX_EVENT {
                        // Not an SSE stream we understand: pass it all on.
                        this.off = true;
                        let mut all = out.to_vec();
                        all.append(&mut this.held);
                        return Poll::Ready(Some(Ok(Bytes::from(all))));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(None) => {
                    if this.held.is_empty() {
                        return Poll::Ready(None);
                    }
                    // An unterminated last event goes out as it came.
                    let rest = std::mem::take(&mut this.held);
                    this.off = true;
                    return Poll::Ready(Some(Ok(Bytes::from(rest))));
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod hide_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CHUNK: &str =
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n";
    const USAGE: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    fn run(parts: Vec<Vec<u8>>) -> Vec<u8> {
        let s: ByteStream = Box::pin(futures_util::stream::iter(
            parts.into_iter().map(|p| Ok(Bytes::from(p))),
        ));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let out: Vec<Result<Bytes, ApiError>> = rt.block_on(HideUsage::new(s).collect::<Vec<_>>());
        out.into_iter().flat_map(|b| b.unwrap().to_vec()).collect()
    }

    /// Every way of cutting the stream into two or three pieces gives the
    /// same bytes: the stream without its usage-only chunk.
    #[test]
    fn the_usage_chunk_goes_and_nothing_else_changes_however_it_is_cut() {
        for nl in ["\n", "\r\n"] {
            let fix = |s: &str| s.replace('\n', nl);
            let whole = fix(&format!("{CHUNK}{CHUNK}{USAGE}{DONE}"));
            let want = fix(&format!("{CHUNK}{CHUNK}{DONE}")).into_bytes();
            let b = whole.as_bytes();
            for i in 0..=b.len() {
                assert_eq!(
                    run(vec![b[..i].to_vec(), b[i..].to_vec()]),
                    want,
                    "cut at {i}"
                );
                for j in (i..=b.len()).step_by(7) {
                    let parts = vec![b[..i].to_vec(), b[i..j].to_vec(), b[j..].to_vec()];
                    assert_eq!(run(parts), want, "cut at {i}, {j}");
                }
            }
        }
    }

    #[test]
    fn usage_on_a_chunk_with_choices_stays_and_odd_streams_pass() {
        let with_choices =
            "data: {\"choices\":[{\"index\":0,\"delta\":{}}],\"usage\":{\"total_tokens\":1}}\n\n";
        assert_eq!(run(vec![with_choices.into()]), with_choices.as_bytes());
        // No terminating blank line: passed on at the end as it came.
        assert_eq!(run(vec![b"data: {\"x\":1}".to_vec()]), b"data: {\"x\":1}");
        // Not JSON: kept.
        let odd = "data: \"usage\" {\n\n";
        assert_eq!(run(vec![odd.into()]), odd.as_bytes());
    }

    #[test]
    fn usage_is_asked_for_and_other_options_kept() {
        let b = Bytes::from_static(br#"{"model":"m","stream":true,"stream_options":{"x":1}}"#);
        let out = ask_usage(&b);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"x": 1, "include_usage": true})
        );
        let b = Bytes::from_static(br#"{"model":"m","stream":true}"#);
        let v: serde_json::Value = serde_json::from_slice(&ask_usage(&b)).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert!(asks_usage(&RawObject::parse(&ask_usage(&b)).unwrap()));
        assert!(!asks_usage(&RawObject::parse(&b).unwrap()));
    }
}
