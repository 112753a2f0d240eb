//! Client-facing handlers, one module per protocol.

pub mod anthropic;
pub mod health;
pub mod ollama;
pub mod openai;
pub mod responses;
pub mod team;

use crate::error::ApiError;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use llm_link_gateway::govern::Principal;
use llm_link_gateway::lifecycle::{self, ChatCall, ChatOutcome, Credential, EmbedOutcome};
use llm_link_gateway::presets::Wire;
use llm_link_gateway::providers::{Endpoint, EventStream};
use llm_link_gateway::routing::Plan;
use llm_link_gateway::snapshot::Runtime;
use llm_link_protocol::ir::{
    ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, StreamError,
    StreamEvent,
};
use llm_link_protocol::json::{DecodeError, RawObject};
use llm_link_protocol::passthrough::Forwardable;
use std::time::{Duration, Instant};

/// The request's headers, moved out of the request rather than cloned
/// (axum's `HeaderMap` extractor copies every header), and who is calling
/// (the model-route layer authenticated it). For handlers whose later
/// extractors read only the body: the body limit lives in the request's
/// extensions, not its headers. The key check and metering saw the headers
/// before the handler ran.
pub struct Headers(pub axum::http::HeaderMap, pub Principal);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Headers {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Headers, Self::Rejection> {
        let who = parts.extensions.remove::<Principal>().unwrap_or_default();
        Ok(Headers(std::mem::take(&mut parts.headers), who))
    }
}

/// The request body, read within the body limit, and the time the handler
/// started; a body that cannot be read (too large, broken) is an error in
/// the surface's shape `E`.
pub struct ReqBody<E> {
    pub bytes: bytes::Bytes,
    pub started: Instant,
    shape: std::marker::PhantomData<fn() -> E>,
}

impl<E> ReqBody<E> {
    /// The body's JSON top level (fields decoded on demand).
    pub fn parse(&self) -> Result<RawObject<'_>, ApiError> {
        Ok(RawObject::parse(&self.bytes)?)
    }
}

impl<E> axum::extract::FromRequest<std::sync::Arc<crate::state::AppState>> for ReqBody<E>
where
    E: From<ApiError> + axum::response::IntoResponse,
{
    type Rejection = E;

    async fn from_request(
        req: axum::extract::Request,
        st: &std::sync::Arc<crate::state::AppState>,
    ) -> Result<ReqBody<E>, E> {
        let bytes = bytes::Bytes::from_request(req, st)
            .await
            .map_err(|r| E::from(body_rejection(r, st.body_limit)))?;
        Ok(ReqBody {
            bytes,
            started: Instant::now(),
            shape: std::marker::PhantomData,
        })
    }
}

/// Maps a body that could not be read (too large, broken) to an error.
fn body_rejection(r: BytesRejection, limit: usize) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!(
            "request body is larger than the limit of {limit} bytes (raise it with --body-limit)"
        ))
    } else {
        ApiError::bad_request(format!(
            "could not read the request body: {}",
            r.body_text()
        ))
    }
}

/// `Server-Timing` with llm-link's own time and the upstream's.
pub fn server_timing(total: Duration, upstream: Duration) -> Option<HeaderValue> {
    // Milliseconds with three decimals, from whole microseconds (integer
    // formatting without `fmt`, which showed in profiles).
    fn millis(s: &mut Vec<u8>, micros: u128) {
        let mut b = itoa::Buffer::new();
        s.extend_from_slice(b.format(micros / 1000).as_bytes());
        s.push(b'.');
        let frac = (micros % 1000) as u16;
        s.extend_from_slice(&[
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }
    let own = total.saturating_sub(upstream).as_micros();
    let mut s = Vec::with_capacity(64);
    s.extend_from_slice(b"gateway;dur=");
    millis(&mut s, own);
    s.extend_from_slice(b", upstream;dur=");
    millis(&mut s, upstream.as_micros());
    HeaderValue::from_maybe_shared(bytes::Bytes::from(s)).ok()
}

/// `response` with `Server-Timing` for an answer that took `upstream` of
/// the time since `started` at the provider.
pub fn timed(mut response: Response, started: Instant, upstream: Duration) -> Response {
    if let Some(v) = server_timing(started.elapsed(), upstream) {
        response.headers_mut().insert("server-timing", v);
    }
    response
}

/// What differs between the three client surfaces when answering.
#[derive(Clone, Copy)]
pub struct Surface {
    /// The error in this surface's shape.
    pub error: fn(&ApiError) -> axum::response::Response,
    /// An in-band error for a stream that already started.
    pub inband_error: fn(&ApiError) -> bytes::Bytes,
    /// Content type of this surface's streams.
    pub stream_type: &'static str,
}

/// A JSON answer built as a `Value` (a translated answer), written as
/// axum's `Json` would write it but with text escaped a word at a time.
pub fn json_response(v: &serde_json::Value) -> axum::response::Response {
    use axum::http::header;
    let mut r = axum::response::Response::new(axum::body::Body::from(
        llm_link_protocol::json::value_bytes(v),
    ));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A streamed response: the content type, and no caching or proxy buffering.
pub fn stream_response(
    body: axum::body::Body,
    content_type: &'static str,
) -> axum::response::Response {
    use axum::http::header;
    let mut r = axum::response::Response::new(body);
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    r
}

/// The client response for a forwarded upstream answer: status and content
/// type as the upstream sent them, a stream that broke off ending with the
/// surface's in-band error, and `Server-Timing`.
pub fn forwarded_response(
    fwd: llm_link_gateway::providers::Forwarded,
    started: std::time::Instant,
    stream: bool,
    surface: Surface,
) -> axum::response::Response {
    use axum::http::header;
    use futures_util::StreamExt;
    use llm_link_gateway::providers::ForwardBody;
    let timing = server_timing(started.elapsed(), fwd.upstream_time);
    let mut r = match fwd.body {
        ForwardBody::Full(b) => axum::response::Response::new(axum::body::Body::from(b)),
        ForwardBody::Stream(s) => {
            let inband = surface.inband_error;
            let s = s.map(move |item| {
                Ok::<_, std::convert::Infallible>(match item {
                    Ok(b) => b,
                    Err(e) => inband(&e),
                })
            });
            stream_response(axum::body::Body::from_stream(s), surface.stream_type)
        }
    };
    *r.status_mut() = fwd.status;
    let default = if stream {
        surface.stream_type
    } else {
        "application/json"
    };
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        fwd.content_type
            .unwrap_or_else(|| HeaderValue::from_static(default)),
    );
    if let Some(v) = timing {
        r.headers_mut().insert("server-timing", v);
    }
    r
}

/// How one surface reads a chat-like request.
pub struct ChatReader {
    pub wire: Wire,
    pub endpoint: Endpoint,
    pub surface: Surface,
    /// The model's plan (`lifecycle::plan`, or a surface's lookup around it).
    pub plan: fn(Option<&str>, &Runtime, &HeaderMap, &str) -> Result<Plan, ApiError>,
    /// The light checks every body gets (a same-format target receives it
    /// as it is); says whether the client wants a stream.
    pub check: fn(&RawObject<'_>) -> Result<Forwardable, DecodeError>,
    /// The full decode into the internal model, only when some target of
    /// the plan translates.
    pub decode: fn(&RawObject<'_>, &Bytes) -> Result<ChatRequest, DecodeError>,
}

/// What a surface's encoders get with a translated answer.
pub struct Translated<'a> {
    /// The model the client asked for.
    pub model: &'a str,
    /// The decoded request (its output options: usage chunks, reasoning).
    pub ir: Option<&'a ChatRequest>,
    pub started: Instant,
    pub upstream: Duration,
}

/// A parsed chat-like body and the model it names.
#[derive(Clone, Copy)]
pub struct ChatBody<'a> {
    pub obj: &'a RawObject<'a>,
    pub body: &'a Bytes,
    pub model: &'a str,
    pub started: Instant,
}

impl<'a> ChatBody<'a> {
    pub fn new<E>(body: &'a ReqBody<E>, obj: &'a RawObject<'a>, model: &'a str) -> ChatBody<'a> {
        ChatBody {
            obj,
            body: &body.bytes,
            model,
            started: body.started,
        }
    }
}

impl Translated<'_> {
    /// A whole translated answer, with `Server-Timing`.
    pub fn json(&self, v: &serde_json::Value) -> Response {
        timed(json_response(v), self.started, self.upstream)
    }

    /// A translated stream of `content_type`, with `Server-Timing`.
    pub fn stream<S>(&self, events: S, content_type: &'static str) -> Response
    where
        S: futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
    {
        let r = stream_response(axum::body::Body::from_stream(events), content_type);
        timed(r, self.started, self.upstream)
    }
}

/// Steps 4–8 of the request lifecycle (`llm_link_gateway::lifecycle`) for
/// a chat-like request: plans, checks and (when needed) decodes the body,
/// runs the plan, and answers in the surface's shape — a forwarded answer
/// as it came, a translated one through `whole` or `streamed`.
///
/// Not an `async fn` of its own: it hands back [`serve_chat_with`]'s
/// future, so the request path carries one future less (each layer is a
/// copy of the state below it).
pub fn serve_chat<'a>(
    st: &'a crate::state::AppState,
    hw: (&'a HeaderMap, &'a Principal),
    req: ChatBody<'a>,
    reader: &'a ChatReader,
    whole: impl FnOnce(ChatResponse, &Translated<'_>) -> Response + 'a,
    streamed: impl FnOnce(EventStream, &Translated<'_>) -> Response + 'a,
) -> impl std::future::Future<Output = Result<Response, ApiError>> + 'a {
    let decode = move || (reader.decode)(req.obj, req.body);
    serve_chat_with(st, hw, req, reader, decode, whole, streamed)
}

/// As [`serve_chat`], with the full decode given as `decode` (a surface
/// that has decoded the body already, for state of its own, hands over
/// its result); it runs only when some target translates.
pub async fn serve_chat_with(
    st: &crate::state::AppState,
    (headers, who): (&HeaderMap, &Principal),
    req: ChatBody<'_>,
    reader: &ChatReader,
    decode: impl FnOnce() -> Result<ChatRequest, DecodeError>,
    whole: impl FnOnce(ChatResponse, &Translated<'_>) -> Response,
    streamed: impl FnOnce(EventStream, &Translated<'_>) -> Response,
) -> Result<Response, ApiError> {
    let (started, surface) = (req.started, reader.surface);
    let rt = st.runtime();
    let plan = (reader.plan)(st.app.as_deref(), &rt, headers, req.model)?;
    let f = (reader.check)(req.obj)?;
    let max_out = || lifecycle::requested_max_output(req.obj);
    let adm =
        match lifecycle::admit(&st.governor, who, &rt, req.model, req.body.len(), max_out).await {
            Ok(a) => a,
            Err(e) => return Ok(refused(surface, &e, req.model, f.stream)),
        };
    let ir = if lifecycle::needs_translation(&rt.router, &plan, reader.wire) {
        Some(decode()?)
    } else {
        None
    };
    let call = ChatCall {
        wire: reader.wire,
        endpoint: reader.endpoint,
        obj: req.obj,
        body: req.body,
        model: req.model,
        stream: f.stream,
        ir: ir.as_ref(),
        headers,
        want_usage: adm.needs_usage(),
    };
    let ran = lifecycle::chat(&rt, &st.usage, plan, call).await;
    let t = Translated {
        model: req.model,
        ir: ir.as_ref(),
        started,
        upstream: ran.upstream,
    };
    let mut r = match ran.result {
        Err(e) => (surface.error)(&e),
        Ok(ChatOutcome::Forwarded(fwd)) => forwarded_response(fwd, started, f.stream, surface),
        Ok(ChatOutcome::Response(resp)) => whole(resp, &t),
        Ok(ChatOutcome::Stream(events)) => streamed(events, &t),
    };
    let mut trail = ran.trail;
    trail.hold(adm);
    trail.settle(&mut r);
    Ok(r)
}

/// A request refused at admission (scope, limit, budget), in the surface's
/// shape; its usage row names the model.
pub fn refused(surface: Surface, e: &ApiError, model: &str, stream: bool) -> Response {
    let mut r = (surface.error)(e);
    r.extensions_mut()
        .insert(llm_link_gateway::meter::RequestedModel {
            model: model.to_string(),
            stream,
        });
    r
}

/// How one surface serves an embeddings request.
pub struct EmbedReader {
    pub wire: Wire,
    pub endpoint: Endpoint,
    pub surface: Surface,
    /// The model's plan.
    pub plan: fn(&Runtime, &str) -> Result<Plan, ApiError>,
}

/// Steps 4–8 for an embeddings request the surface has decoded in full:
/// a forwarded answer as it came, a translated one through `whole` (given
/// the time spent upstream).
pub async fn serve_embed(
    st: &crate::state::AppState,
    (headers, who): (&HeaderMap, &Principal),
    (body, req): (&Bytes, &EmbeddingRequest),
    reader: &EmbedReader,
    started: Instant,
    whole: impl FnOnce(EmbeddingResponse, Duration) -> Response,
) -> Result<Response, ApiError> {
    let rt = st.runtime();
    let plan = (reader.plan)(&rt, &req.model)?;
    let adm =
        match lifecycle::admit(&st.governor, who, &rt, &req.model, body.len(), || Some(0)).await {
            Ok(a) => a,
            Err(e) => return Ok(refused(reader.surface, &e, &req.model, false)),
        };
    let (wire, endpoint) = (reader.wire, reader.endpoint);
    let ran = lifecycle::embed(&rt, &st.usage, plan, wire, endpoint, body, req, headers).await;
    let mut r = match ran.result {
        Err(e) => (reader.surface.error)(&e),
        Ok(EmbedOutcome::Forwarded(fwd)) => forwarded_response(fwd, started, false, reader.surface),
        Ok(EmbedOutcome::Response(resp)) => whole(resp, ran.upstream),
    };
    let mut trail = ran.trail;
    trail.hold(adm);
    trail.settle(&mut r);
    Ok(r)
}

/// A surface's encoder for a translated stream: how each event of the
/// internal model is written in the client's wire format.
pub trait EventEncoder: Send + 'static {
    /// Written at once, before the upstream's first event.
    fn start(&mut self) -> Option<Bytes> {
        None
    }
    /// A chunk; `None` when it writes nothing by itself.
    fn chunk(&mut self, c: &ChatChunk) -> Option<Bytes>;
    /// The end of a stream that completed.
    fn finish(&mut self) -> Bytes;
    /// An error event the upstream sent inside its stream.
    fn error(&mut self, e: &StreamError) -> Bytes;
    /// The upstream failed after the stream had started.
    fn failed(&mut self, e: &ApiError) -> Bytes;
    /// How long the upstream may be quiet before [`EventEncoder::ping`]
    /// is written (`None`: never).
    fn keepalive(&self) -> Option<Duration> {
        None
    }
    /// A keep-alive event.
    fn ping(&mut self) -> Bytes {
        Bytes::new()
    }
}

/// A translated stream encoded for the client; it ends after the encoder's
/// end or error event.
pub fn encode_events<E: EventEncoder>(
    events: EventStream,
    mut enc: E,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send {
    use futures_util::StreamExt;
    let head = enc.start();
    futures_util::stream::unfold(
        (events, enc, head, false),
        |(mut events, mut enc, head, done)| async move {
            if let Some(b) = head {
                return Some((Ok(b), (events, enc, None, false)));
            }
            if done {
                return None;
            }
            loop {
                let next = match enc.keepalive() {
                    None => events.next().await,
                    Some(every) => match tokio::time::timeout(every, events.next()).await {
                        Err(_) => return Some((Ok(enc.ping()), (events, enc, None, false))),
                        Ok(n) => n,
                    },
                };
                let last = match next {
                    Some(Ok(StreamEvent::Chunk(c))) => match enc.chunk(&c) {
                        Some(b) => return Some((Ok(b), (events, enc, None, false))),
                        None => continue,
                    },
                    Some(Ok(StreamEvent::Done)) | None => enc.finish(),
                    Some(Ok(StreamEvent::Error(e))) => enc.error(&e),
                    Some(Err(e)) => enc.failed(&e),
                };
                return Some((Ok(last), (events, enc, None, true)));
            }
        },
    )
}

/// The layer on the model routes of every surface: the client-key check
/// (the rejection in the surface's error shape), then usage metering.
///
/// A hand-written service rather than two `middleware::from_fn` layers:
/// those clone and box the inner route and box a future per layer per
/// request, about a tenth of llm-link's CPU per proxied request in the
/// saturated benchmark.
#[derive(Clone)]
pub struct ModelRoutes {
    st: std::sync::Arc<crate::state::AppState>,
    surface: Surface,
}

impl ModelRoutes {
    pub fn new(st: std::sync::Arc<crate::state::AppState>, surface: Surface) -> ModelRoutes {
        ModelRoutes { st, surface }
    }
}

impl<S> tower::Layer<S> for ModelRoutes {
    type Service = ModelRoute<S>;
    fn layer(&self, inner: S) -> ModelRoute<S> {
        ModelRoute {
            inner,
            st: self.st.clone(),
            surface: self.surface,
        }
    }
}

#[derive(Clone)]
pub struct ModelRoute<S> {
    inner: S,
    st: std::sync::Arc<crate::state::AppState>,
    surface: Surface,
}

type RouteFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<axum::response::Response, std::convert::Infallible>>
            + Send,
    >,
>;

impl<S> tower::Service<axum::extract::Request> for ModelRoute<S>
where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = RouteFuture;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: axum::extract::Request) -> RouteFuture {
        let reject = |surface: Surface, e: &ApiError| {
            // The body was not read: say the connection closes, so a client
            // does not reuse it and see a disconnect on its next request.
            let mut r = (surface.error)(e);
            r.headers_mut().insert(
                axum::http::header::CONNECTION,
                HeaderValue::from_static("close"),
            );
            r
        };
        let session = {
            let ids = self.st.identities.load();
            match lifecycle::authenticate(req.headers(), &self.st.peek_runtime(), &ids) {
                Err(e) => return Box::pin(std::future::ready(Ok(reject(self.surface, &e)))),
                Ok(Credential::Open) => None,
                Ok(Credential::Principal(p)) => {
                    req.extensions_mut().insert(p);
                    None
                }
                Ok(Credential::Session(token)) => Some(token.to_string()),
            }
        };
        let Some(token) = session else {
            let pending = lifecycle::open(
                &self.st.usage,
                self.st.app.as_deref(),
                req.extensions().get::<Principal>(),
                &req,
            );
            let fut = self.inner.call(req);
            return match pending {
                None => Box::pin(fut),
                Some(p) => Box::pin(async move {
                    let resp = fut.await?;
                    Ok(lifecycle::close(p, resp))
                }),
            };
        };
        // A session token: checked against the session store first.
        let st = self.st.clone();
        let surface = self.surface;
        let inner = self.inner.clone();
        Box::pin(async move {
            let who = match crate::sessions::principal(&st, &token).await {
                Ok(w) => w,
                Err(e) => return Ok(reject(surface, &ApiError::Unauthorized(e.to_string()))),
            };
            let pending = lifecycle::open(&st.usage, st.app.as_deref(), Some(&who), &req);
            req.extensions_mut().insert(who);
            let resp = tower::ServiceExt::oneshot(inner, req).await?;
            Ok(match pending {
                None => resp,
                Some(p) => lifecycle::close(p, resp),
            })
        })
    }
}

#[cfg(test)]
mod timing_tests {
    use super::server_timing;
    use std::time::Duration;

    #[test]
    fn server_timing_in_milliseconds_with_three_decimals() {
        let v = server_timing(
            Duration::from_micros(1_234_567),
            Duration::from_micros(1_200_005),
        );
        assert_eq!(
            v.unwrap().to_str().unwrap(),
            "gateway;dur=34.562, upstream;dur=1200.005"
        );
        // Upstream longer than total (clock granularity) never underflows.
        let v = server_timing(Duration::from_micros(5), Duration::from_micros(9));
        assert_eq!(
            v.unwrap().to_str().unwrap(),
            "gateway;dur=0.000, upstream;dur=0.009"
        );
    }
}
