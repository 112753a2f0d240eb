//! The Anthropic surface: `POST /v1/messages`, `POST /v1/messages/count_tokens`
//! (also under `/anthropic/v1/…`), and `GET /v1/models` in Anthropic's shape
//! when the request carries `anthropic-version`.

use crate::error::{Anthropic, AnthropicError, ApiError, Shape};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use llm_link_gateway::govern::Principal;
use llm_link_gateway::lifecycle;
use llm_link_gateway::presets::Wire;
use llm_link_gateway::providers::{Endpoint, ForwardBody};
use llm_link_gateway::util::new_id;
use llm_link_protocol::anthropic::{self, stream::StreamEncoder};
use llm_link_protocol::ir::{ChatChunk, ChatResponse, ReasoningOutput, StreamError};
use llm_link_protocol::passthrough;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Interval of `ping` events on a translated stream while the upstream is quiet.
const PING_EVERY: Duration = Duration::from_secs(10);

const SURFACE: super::Surface = super::Surface {
    error: Anthropic::render,
    inband_error,
    stream_type: "text/event-stream",
};

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/anthropic/v1/messages", post(messages))
        .route("/anthropic/v1/messages/count_tokens", post(count_tokens))
        .route("/anthropic/v1/models", axum::routing::get(list_models))
        .route_layer(super::ModelRoutes::new(state, SURFACE))
}

/// An in-band Anthropic `error` event for a forwarded stream that broke off.
fn inband_error(e: &ApiError) -> Bytes {
    let body = anthropic::error_body("api_error", &e.to_string());
    llm_link_protocol::sse::named_event("error", body.to_string().as_bytes())
}

const MESSAGES: super::ChatReader = super::ChatReader {
    wire: Wire::Anthropic,
    endpoint: Endpoint::Messages,
    surface: SURFACE,
    plan: lifecycle::plan,
    // Light checks always, so extended thinking, server tools, documents
    // and cache_control reach an Anthropic upstream untouched; the full
    // decode only when some target translates.
    check: |obj| passthrough::anthropic_messages(obj, true),
    decode: |obj, _| anthropic::decode_request_object(obj, true),
};

async fn messages(
    State(st): State<Arc<AppState>>,
    super::Headers(headers, who): super::Headers,
    body: super::ReqBody<AnthropicError>,
) -> Result<Response, AnthropicError> {
    let obj = body.parse()?;
    let model = obj.model()?;
    let req = super::ChatBody::new(&body, &obj, &model);
    let whole = |mut resp: ChatResponse, t: &super::Translated<'_>| {
        if resp.id.is_empty() {
            resp.id = new_id("msg_");
        }
        t.json(&anthropic::encode_messages_response(
            &resp,
            t.model,
            ReasoningOutput::Separate,
        ))
    };
    let streamed = |events, t: &super::Translated<'_>| {
        let enc = StreamEncoder::new(
            new_id("msg_"),
            t.model.to_string(),
            ReasoningOutput::Separate,
        );
        t.stream(super::encode_events(events, enc), "text/event-stream")
    };
    Ok(super::serve_chat(&st, (&headers, &who), req, &MESSAGES, whole, streamed).await?)
}

/// Anthropic SSE: `message_start` and a `ping` at once, pings while the
/// upstream is quiet, an in-band `error` event when the upstream fails
/// after the start.
impl super::EventEncoder for StreamEncoder {
    fn start(&mut self) -> Option<Bytes> {
        Some(StreamEncoder::start(self))
    }
    fn chunk(&mut self, c: &ChatChunk) -> Option<Bytes> {
        self.encode(c)
    }
    fn finish(&mut self) -> Bytes {
        StreamEncoder::finish(self)
    }
    fn error(&mut self, e: &StreamError) -> Bytes {
        StreamEncoder::error(self, e)
    }
    fn failed(&mut self, e: &ApiError) -> Bytes {
        StreamEncoder::error(
            self,
            &StreamError {
                message: e.to_string(),
                kind: "api_error".into(),
            },
        )
    }
    fn keepalive(&self) -> Option<Duration> {
        Some(PING_EVERY)
    }
    fn ping(&mut self) -> Bytes {
        StreamEncoder::ping()
    }
}

async fn count_tokens(
    State(st): State<Arc<AppState>>,
    super::Headers(headers, who): super::Headers,
    body: super::ReqBody<AnthropicError>,
) -> Result<Response, AnthropicError> {
    let obj = body.parse()?;
    let body = &body.bytes;
    let model = obj.model()?;
    if let Some(k) = who.key.as_ref().filter(|k| !k.allows(&model)) {
        return Err(ApiError::Forbidden(format!(
            "the API key `{}` may not use model `{model}`",
            k.name
        ))
        .into());
    }
    let target = st.runtime().router.resolve(&model)?;
    if target.provider.wire() == Wire::Anthropic {
        // Exact: ask Anthropic.
        let req = passthrough::anthropic_messages(&obj, false)?;
        let out = lifecycle::rewrite_model_in(&obj, body, &req.model, &target.upstream_model);
        let fwd = target
            .provider
            .forward(Endpoint::CountTokens, out, false, &headers)
            .await?;
        let mut r = match fwd.body {
            ForwardBody::Full(b) => Response::new(Body::from(b)),
            ForwardBody::Stream(s) => Response::new(Body::from_stream(s)),
        };
        *r.status_mut() = fwd.status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(r);
    }
    // Other providers have no counting endpoint: a documented estimate
    // over the body as sent, so every block type counts (also ones that
    // cannot be translated) and none is refused.
    let n = anthropic::estimate_count_tokens(&obj)?;
    let mut r = Json(json!({"input_tokens": n})).into_response();
    r.headers_mut().insert(
        "x-llm-link-token-count",
        HeaderValue::from_static("estimate"),
    );
    Ok(r)
}

async fn list_models(
    State(st): State<Arc<AppState>>,
    super::Headers(_, who): super::Headers,
) -> Response {
    models_response(&st, &who)
}

/// Unknown paths under `/anthropic/` answer in Anthropic's shape.
pub async fn not_found() -> Response {
    Anthropic::render(&ApiError::NotFound(
        "unknown endpoint; llm-link serves /anthropic/v1/messages, /anthropic/v1/messages/count_tokens and /anthropic/v1/models".into(),
    ))
}

/// `GET /v1/models` in Anthropic's shape.
/// The models this caller may use (a virtual key's scope), Anthropic's shape.
pub fn models_response(st: &AppState, who: &Principal) -> Response {
    let rt = st.runtime();
    let created = crate::api::ollama::rfc3339_secs(
        llm_link_gateway::util::now_secs().saturating_sub(st.started.elapsed().as_secs()),
    );
    let data: Vec<_> = rt
        .router
        .models()
        .iter()
        .filter(|m| who.may_use(&m.id))
        .map(|m| json!({"type": "model", "id": m.id, "display_name": m.id, "created_at": created}))
        .collect();
    let first = data.first().and_then(|m| m.get("id")).cloned();
    let last = data.last().and_then(|m| m.get("id")).cloned();
    Json(json!({"data": data, "has_more": false, "first_id": first, "last_id": last}))
        .into_response()
}
