//! The OpenAI surface: `/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, `/v1/models`.
//!
//! When the provider speaks OpenAI too, the body is forwarded byte for byte
//! with only the model name rewritten; otherwise it goes through the
//! internal model.

use super::body_rejection;
use crate::error::{ApiError, OpenAiError, Render};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use llm_link_gateway::lifecycle::{self, ChatCall, ChatOutcome, EmbedOutcome};
use llm_link_gateway::presets::Wire;
use llm_link_gateway::providers::{Endpoint, EventStream};
use llm_link_gateway::util::{new_id, now_secs};
use llm_link_protocol::ir::{StreamError, StreamEvent};
use llm_link_protocol::json::RawObject;
use llm_link_protocol::openai::{self, stream::ChunkEncoder};
use llm_link_protocol::passthrough;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

const SURFACE: super::Surface = super::Surface {
    error: ApiError::openai_response,
    inband_error,
    stream_type: "text/event-stream",
};

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .route_layer(super::ModelRoutes::new(state, SURFACE))
}

type Body_ = Result<Bytes, BytesRejection>;

async fn chat_completions(
    State(st): State<Arc<AppState>>,
    super::Headers(headers): super::Headers,
    body: Body_,
) -> Result<Response, OpenAiError> {
    let started = Instant::now();
    let body = body.map_err(|r| body_rejection(r, st.body_limit))?;
    let obj = RawObject::parse(&body)?;
    let model = obj.model()?;
    let rt = st.runtime();
    let plan = lifecycle::plan(st.app.as_deref(), &rt, &headers, &model)?;
    // Light checks always; the full decode only when some target translates.
    let f = passthrough::openai_chat(&obj)?;
    let ir = if lifecycle::needs_translation(&rt.router, &plan, Wire::OpenAi) {
        Some(openai::decode_chat_object(&obj)?)
    } else {
        None
    };
    let (include_usage, reasoning) = ir
        .as_ref()
        .map(|r| (r.include_usage, r.reasoning_output))
        .unwrap_or_default();
    let call = ChatCall {
        wire: Wire::OpenAi,
        endpoint: Endpoint::ChatCompletions,
        obj: &obj,
        body: &body,
        model: &model,
        stream: f.stream,
        ir: ir.as_ref(),
        headers: &headers,
    };
    let ran = lifecycle::chat(&rt, &st.usage, plan, call).await;
    let mut r = match ran.result {
        Err(e) => e.openai_response(),
        Ok(ChatOutcome::Forwarded(fwd)) => {
            super::forwarded_response(fwd, started, f.stream, SURFACE)
        }
        Ok(ChatOutcome::Response(mut resp)) => {
            if resp.id.is_empty() {
                resp.id = new_id("chatcmpl-");
            }
            if resp.model.is_empty() {
                resp.model = model.clone();
            }
            if resp.created == 0 {
                resp.created = now_secs();
            }
            let body = openai::encode_chat_response(&resp, reasoning);
            super::timed(super::json_response(&body), started, ran.upstream)
        }
        Ok(ChatOutcome::Stream(events)) => {
            let enc = ChunkEncoder::new(
                new_id("chatcmpl-"),
                now_secs(),
                model.clone(),
                include_usage,
                reasoning,
            );
            let body = Body::from_stream(encode_openai_stream(events, enc));
            let r = super::stream_response(body, "text/event-stream");
            super::timed(r, started, ran.upstream)
        }
    };
    ran.trail.settle(&mut r);
    Ok(r)
}

/// Encodes decoded events for an OpenAI client; an error after the start
/// becomes an in-band error event.
fn encode_openai_stream(
    events: EventStream,
    enc: ChunkEncoder,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
    futures_util::stream::unfold(
        (events, enc, false),
        |(mut events, mut enc, done)| async move {
            if done {
                return None;
            }
            loop {
                match events.next().await {
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
                            kind: e.openai_type().to_string(),
                        });
                        return Some((Ok(b), (events, enc, true)));
                    }
                }
            }
        },
    )
}

/// An in-band OpenAI error event for a forwarded stream that broke off.
pub(crate) fn inband_error(e: &ApiError) -> Bytes {
    let body = openai::error_body(&e.to_string(), e.openai_type(), Some(e.code()), None);
    llm_link_protocol::sse::data_event(body.to_string().as_bytes())
}

async fn completions(
    State(st): State<Arc<AppState>>,
    super::Headers(headers): super::Headers,
    body: Body_,
) -> Result<Response, OpenAiError> {
    let started = Instant::now();
    let body = body.map_err(|r| body_rejection(r, st.body_limit))?;
    let obj = RawObject::parse(&body)?;
    let model = openai::validate_completion_request(&obj)?;
    let stream = obj.get::<bool>("stream")?.unwrap_or(false);
    let rt = st.runtime();
    let plan = rt.router.plan(&model)?;
    let call = ChatCall {
        wire: Wire::OpenAi,
        endpoint: Endpoint::Completions,
        obj: &obj,
        body: &body,
        model: &model,
        stream,
        ir: None,
        headers: &headers,
    };
    let ran = lifecycle::forward_only(&rt, &st.usage, plan, call, |name, wire| {
        ApiError::bad_request(format!(
            "legacy /v1/completions needs an OpenAI-compatible provider; `{name}` speaks {}. Use /v1/chat/completions",
            wire.as_str()
        ))
    })
    .await;
    let mut r = match ran.result {
        Err(e) => e.openai_response(),
        Ok(fwd) => super::forwarded_response(fwd, started, stream, SURFACE),
    };
    ran.trail.settle(&mut r);
    Ok(r)
}

async fn embeddings(
    State(st): State<Arc<AppState>>,
    super::Headers(headers): super::Headers,
    body: Body_,
) -> Result<Response, OpenAiError> {
    let started = Instant::now();
    let body = body.map_err(|r| body_rejection(r, st.body_limit))?;
    // Validates every field before anything goes upstream.
    let req = openai::decode_embedding_request(&body)?;
    let rt = st.runtime();
    let plan = rt.router.plan(&req.model)?;
    let ran = lifecycle::embed(
        &rt,
        &st.usage,
        plan,
        Wire::OpenAi,
        Endpoint::Embeddings,
        &body,
        &req,
        &headers,
    )
    .await;
    let mut r = match ran.result {
        Err(e) => e.openai_response(),
        Ok(EmbedOutcome::Forwarded(fwd)) => super::forwarded_response(fwd, started, false, SURFACE),
        Ok(EmbedOutcome::Response(mut resp)) => {
            if resp.model.is_empty() {
                resp.model = req.model.clone();
            }
            let body = openai::encode_embedding_response(&resp);
            super::timed(super::json_response(&body), started, ran.upstream)
        }
    };
    ran.trail.settle(&mut r);
    Ok(r)
}

fn model_json(id: &str, owned_by: &str, created: u64) -> serde_json::Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": owned_by})
}

async fn list_models(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    // Anthropic clients list models at the same path; they send anthropic-version.
    if headers.contains_key("anthropic-version") {
        return super::anthropic::models_response(&st);
    }
    let rt = st.runtime();
    let created = now_secs().saturating_sub(st.started.elapsed().as_secs());
    let data: Vec<_> = rt
        .router
        .models()
        .iter()
        .map(|m| model_json(&m.id, &m.owned_by, created))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

async fn get_model(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, OpenAiError> {
    let rt = st.runtime();
    let created = now_secs().saturating_sub(st.started.elapsed().as_secs());
    match rt.router.find_model(&id) {
        Some(m) => Ok(Json(model_json(&m.id, &m.owned_by, created)).into_response()),
        None => Err(ApiError::ModelNotFound(format!(
            "The model `{id}` does not exist or is not served by this llm-link; list the available models with GET /v1/models"
        ))
        .into()),
    }
}

/// Unknown paths under `/v1/` answer in OpenAI's shape.
pub async fn not_found() -> Response {
    let mut r = ApiError::NotFound("unknown endpoint; llm-link serves /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models".into()).openai_response();
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}
