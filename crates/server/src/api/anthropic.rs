//! The Anthropic surface: `POST /v1/messages`, `POST /v1/messages/count_tokens`
//! (also under `/anthropic/v1/…`), and `GET /v1/models` in Anthropic's shape
//! when the request carries `anthropic-version`.

use super::body_rejection;
use crate::error::{AnthropicError, ApiError, Render};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use llm_link_gateway::lifecycle::{self, ChatCall, ChatOutcome};
use llm_link_gateway::presets::Wire;
use llm_link_gateway::providers::{Endpoint, EventStream, ForwardBody};
use llm_link_gateway::util::new_id;
use llm_link_protocol::anthropic::{self, stream::StreamEncoder};
use llm_link_protocol::ir::{ReasoningOutput, StreamError, StreamEvent};
use llm_link_protocol::json::RawObject;
use llm_link_protocol::passthrough;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Interval of `ping` events on a translated stream while the upstream is quiet.
const PING_EVERY: Duration = Duration::from_secs(10);

const SURFACE: super::Surface = super::Surface {
    error: ApiError::anthropic_response,
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

async fn messages(
    State(st): State<Arc<AppState>>,
    super::Headers(headers): super::Headers,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AnthropicError> {
    let started = Instant::now();
    let body = body.map_err(|r| body_rejection(r, st.body_limit))?;
    let obj = RawObject::parse(&body)?;
    let model = obj.model()?;
    let rt = st.runtime();
    let plan = lifecycle::plan(st.app.as_deref(), &rt, &headers, &model)?;
    // Light checks always, so extended thinking, server tools, documents and
    // cache_control reach an Anthropic upstream untouched; the full decode
    // only when some target translates.
    let f = passthrough::anthropic_messages(&obj, true)?;
    let ir = if lifecycle::needs_translation(&rt.router, &plan, Wire::Anthropic) {
        Some(anthropic::decode_request_object(&obj, true)?)
    } else {
        None
    };
    let call = ChatCall {
        wire: Wire::Anthropic,
        endpoint: Endpoint::Messages,
        obj: &obj,
        body: &body,
        model: &model,
        stream: f.stream,
        ir: ir.as_ref(),
        headers: &headers,
    };
    let ran = lifecycle::chat(&rt, &st.usage, plan, call).await;
    let mut r = match ran.result {
        Err(e) => e.anthropic_response(),
        Ok(ChatOutcome::Forwarded(fwd)) => {
            super::forwarded_response(fwd, started, f.stream, SURFACE)
        }
        Ok(ChatOutcome::Response(mut resp)) => {
            if resp.id.is_empty() {
                resp.id = new_id("msg_");
            }
            let body =
                anthropic::encode_messages_response(&resp, &model, ReasoningOutput::Separate);
            super::timed(super::json_response(&body), started, ran.upstream)
        }
        Ok(ChatOutcome::Stream(events)) => {
            let enc = StreamEncoder::new(new_id("msg_"), model.clone(), ReasoningOutput::Separate);
            let body = Body::from_stream(encode_stream(events, enc));
            let r = super::stream_response(body, "text/event-stream");
            super::timed(r, started, ran.upstream)
        }
    };
    ran.trail.settle(&mut r);
    Ok(r)
}

/// Encodes decoded events as Anthropic SSE: `message_start` and a `ping`
/// at once, pings while the upstream is quiet, an in-band `error` event when
/// the upstream fails after the start.
fn encode_stream(
    events: EventStream,
    mut enc: StreamEncoder,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
    // message_start (with its ping) at once, before the upstream's first token.
    let head = enc.start().to_vec();
    let head = futures_util::stream::once(async move { Ok::<_, Infallible>(Bytes::from(head)) });
    let body = futures_util::stream::unfold(
        (events, enc, false),
        |(mut events, mut enc, done)| async move {
            if done {
                return None;
            }
            loop {
                let next = match tokio::time::timeout(PING_EVERY, events.next()).await {
                    Err(_) => return Some((Ok(StreamEncoder::ping()), (events, enc, false))),
                    Ok(n) => n,
                };
                match next {
                    Some(Ok(StreamEvent::Chunk(c))) => {
                        if let Some(b) = enc.encode(&c) {
                            return Some((Ok(b), (events, enc, false)));
                        }
                    }
                    Some(Ok(StreamEvent::Done)) | None => {
                        let b = enc.finish();
                        return Some((Ok(b), (events, enc, true)));
                    }
                    Some(Ok(StreamEvent::Error(e))) => {
                        let b = enc.error(&e);
                        return Some((Ok(b), (events, enc, true)));
                    }
                    Some(Err(e)) => {
                        let b = enc.error(&StreamError {
                            message: e.to_string(),
                            kind: "api_error".into(),
                        });
                        return Some((Ok(b), (events, enc, true)));
                    }
                }
            }
        },
    );
    head.chain(body)
}

async fn count_tokens(
    State(st): State<Arc<AppState>>,
    super::Headers(headers): super::Headers,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AnthropicError> {
    let body = body.map_err(|r| body_rejection(r, st.body_limit))?;
    let obj = RawObject::parse(&body)?;
    let model = obj.model()?;
    let target = st.runtime().router.resolve(&model)?;
    if target.provider.wire() == Wire::Anthropic {
        // Exact: ask Anthropic.
        let req = passthrough::anthropic_messages(&obj, false)?;
        let out = lifecycle::rewrite_model_in(&obj, &body, &req.model, &target.upstream_model);
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
    // Other providers have no counting endpoint: a documented estimate.
    let req = anthropic::decode_request_object(&obj, false)?;
    let n = anthropic::estimate_input_tokens(&req);
    let mut r = Json(json!({"input_tokens": n})).into_response();
    r.headers_mut().insert(
        "x-llm-link-token-count",
        HeaderValue::from_static("estimate"),
    );
    Ok(r)
}

async fn list_models(State(st): State<Arc<AppState>>) -> Response {
    models_response(&st)
}

/// Unknown paths under `/anthropic/` answer in Anthropic's shape.
pub async fn not_found() -> Response {
    ApiError::NotFound(
        "unknown endpoint; llm-link serves /anthropic/v1/messages, /anthropic/v1/messages/count_tokens and /anthropic/v1/models".into(),
    )
    .anthropic_response()
}

/// `GET /v1/models` in Anthropic's shape.
pub fn models_response(st: &AppState) -> Response {
    let rt = st.runtime();
    let created = crate::api::ollama::rfc3339_secs(
        llm_link_gateway::util::now_secs().saturating_sub(st.started.elapsed().as_secs()),
    );
    let data: Vec<_> = rt
        .router
        .models()
        .iter()
        .map(|m| json!({"type": "model", "id": m.id, "display_name": m.id, "created_at": created}))
        .collect();
    let first = data.first().and_then(|m| m.get("id")).cloned();
    let last = data.last().and_then(|m| m.get("id")).cloned();
    Json(json!({"data": data, "has_more": false, "first_id": first, "last_id": last}))
        .into_response()
}
