//! The part every client surface shares once a request is decoded: run the
//! routing plan, forwarding bytes to same-format targets and translating for
//! the others; a stream counts as started (and can no longer fail over) only
//! once its first chunk has arrived.

use crate::error::ApiError;
use crate::presets::Wire;
use crate::providers::{Endpoint, EventStream, ForwardBody, Forwarded};
use crate::routing::exec::{self, RouteLog};
use crate::routing::upstream::InflightGuard;
use crate::routing::{ModelRouter, Plan};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue};
use llm_link_protocol::ir::{
    ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, StreamEvent,
};
use llm_link_protocol::json::RawObject;

pub enum ChatOutcome {
    /// A same-format answer, bytes as the upstream sent them.
    Forwarded(Forwarded),
    Response(ChatResponse),
    Stream(EventStream),
}

pub enum EmbedOutcome {
    Forwarded(Forwarded),
    Response(EmbeddingResponse),
}

/// The plan for a request: the app mapping of the calling app when it has
/// one (the app is named by an `x-llm-link-app` header, else by this
/// instance's `--app`), otherwise the model's own routes.
pub fn plan(
    instance_app: Option<&str>,
    rt: &crate::snapshot::Runtime,
    headers: &HeaderMap,
    model: &str,
) -> Result<Plan, ApiError> {
    let app = headers
        .get("x-llm-link-app")
        .and_then(|v| v.to_str().ok())
        .or(instance_app);
    if let Some(m) = app.and_then(|a| rt.catalog.app(a)) {
        return rt.router.plan_app(m, model);
    }
    rt.router.plan(model)
}

/// Whether any target of the plan needs the request in the internal model.
pub fn needs_translation(router: &ModelRouter, plan: &Plan, wire: Wire) -> bool {
    let ups = router.upstreams();
    plan.chain
        .iter()
        .flat_map(|r| r.targets.iter())
        .any(|t| !ups[t.upstream].primary().passthrough_for(wire))
}

/// The body with only `model` changed (every other byte kept), from its
/// already parsed top level.
pub fn rewrite_model_in(
    obj: &RawObject<'_>,
    body: &Bytes,
    requested: &str,
    upstream: &str,
) -> Bytes {
    if requested == upstream {
        return body.clone();
    }
    let quoted = serde_json::Value::String(upstream.to_string()).to_string();
    Bytes::from(obj.with_field("model", &quoted))
}

/// As [`rewrite_model_in`], for a body not parsed as a top level yet.
pub fn rewrite_model(body: &Bytes, requested: &str, upstream: &str) -> Result<Bytes, ApiError> {
    if requested == upstream {
        return Ok(body.clone());
    }
    Ok(rewrite_model_in(
        &RawObject::parse(body)?,
        body,
        requested,
        upstream,
    ))
}

/// Waits for a stream's first item: a failure before it is an ordinary
/// (retryable) error; after it the stream is the client's. `first` may turn
/// the first item into an error too (an in-band upstream error event). The
/// guard lives as long as the body.
async fn peek<T: Send + 'static>(
    mut s: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<T, ApiError>> + Send>>,
    guard: InflightGuard,
    first: fn(T) -> Result<T, ApiError>,
) -> Result<std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<T, ApiError>> + Send>>, ApiError>
{
    let head = match s.next().await {
        Some(item) => first(item?)?,
        None => {
            return Err(ApiError::BadGateway(
                "the provider closed the stream without sending anything".into(),
            ))
        }
    };
    let rest = s.map(move |item| {
        let _held = &guard;
        item
    });
    Ok(Box::pin(
        futures_util::stream::once(async move { Ok(head) }).chain(rest),
    ))
}

fn bytes_start(b: Bytes) -> Result<Bytes, ApiError> {
    Ok(b)
}

fn event_start(ev: StreamEvent) -> Result<StreamEvent, ApiError> {
    match ev {
        StreamEvent::Error(e) => Err(ApiError::BadGateway(e.message)),
        ev => Ok(ev),
    }
}

/// Runs a chat-like request (`/v1/chat/completions`, `/v1/messages`,
/// `/api/chat`, `/api/generate`) through the plan.
#[allow(clippy::too_many_arguments)]
pub async fn chat(
    router: &ModelRouter,
    plan: &Plan,
    client_wire: Wire,
    endpoint: Endpoint,
    (obj, body): (&RawObject<'_>, &Bytes),
    model: &str,
    stream: bool,
    ir: Option<&ChatRequest>,
    headers: &HeaderMap,
) -> (Result<ChatOutcome, ApiError>, RouteLog) {
    let est = (body.len() / 4) as u64;
    exec::execute(router, plan, est, |a| async move {
        if a.provider.passthrough_for(client_wire) {
            let out = rewrite_model_in(obj, body, model, &a.upstream_model);
            let mut fwd = a.provider.forward(endpoint, out, stream, headers).await?;
            fwd.body = match fwd.body {
                ForwardBody::Stream(s) => ForwardBody::Stream(peek(s, a.guard, bytes_start).await?),
                full => full,
            };
            return Ok(ChatOutcome::Forwarded(fwd));
        }
        let mut req = ir
            .cloned()
            .ok_or_else(|| ApiError::Internal("request was not decoded for translation".into()))?;
        req.model = a.upstream_model.clone();
        if stream {
            let events = a.provider.chat_stream(req).await?;
            Ok(ChatOutcome::Stream(
                peek(events, a.guard, event_start).await?,
            ))
        } else {
            Ok(ChatOutcome::Response(a.provider.chat(req).await?))
        }
    })
    .await
}

/// Runs an embeddings request through the plan.
#[allow(clippy::too_many_arguments)]
pub async fn embed(
    router: &ModelRouter,
    plan: &Plan,
    client_wire: Wire,
    endpoint: Endpoint,
    body: &Bytes,
    model: &str,
    ir: &EmbeddingRequest,
    headers: &HeaderMap,
) -> (Result<EmbedOutcome, ApiError>, RouteLog) {
    exec::execute(router, plan, (body.len() / 4) as u64, |a| async move {
        if a.provider.passthrough_for(client_wire) {
            let out = rewrite_model(body, model, &a.upstream_model)?;
            let fwd = a.provider.forward(endpoint, out, false, headers).await?;
            return Ok(EmbedOutcome::Forwarded(fwd));
        }
        let mut req = ir.clone();
        req.model = a.upstream_model.clone();
        Ok(EmbedOutcome::Response(a.provider.embed(req).await?))
    })
    .await
}

/// Adds what routing decided to a response: the route taken and, for a
/// deprecated model, a warning (and the sunset date).
pub fn annotate<B>(resp: &mut http::Response<B>, plan: &Plan, log: &RouteLog) {
    let h = resp.headers_mut();
    if !log.steps.is_empty() {
        if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(log.header())) {
            h.insert("x-llm-link-route", v);
        }
    }
    if let Some(d) = &plan.deprecation {
        let text = if d.mapped {
            format!(
                "model {} was retired on {}; this request was served by {}",
                d.model, d.sunset, d.replacement
            )
        } else {
            format!(
                "model {} is deprecated and will be replaced by {} on {}",
                d.model, d.replacement, d.sunset
            )
        };
        tracing::warn!(model = %d.model, replacement = %d.replacement, sunset = %d.sunset, mapped = d.mapped, "deprecated model requested");
        if let Ok(v) = HeaderValue::from_str(&text) {
            h.insert("x-llm-link-deprecation", v);
        }
        if let Ok(v) = HeaderValue::from_str(&d.sunset) {
            h.insert("sunset", v);
        }
    }
}
