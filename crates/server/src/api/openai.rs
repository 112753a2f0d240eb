//! The OpenAI surface: `/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`, `/v1/models`.
//!
//! When the provider speaks OpenAI too, the body is forwarded byte for byte
//! with only the model name rewritten; otherwise it goes through the
//! internal model.

use crate::error::{ApiError, OpenAi, OpenAiError, Shape};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use llm_link_gateway::lifecycle::{self, ChatCall};
use llm_link_gateway::presets::Wire;
use llm_link_gateway::providers::Endpoint;
use llm_link_gateway::util::{new_id, now_secs};
use llm_link_protocol::ir::{ChatChunk, ChatResponse, EmbeddingResponse, StreamError};
use llm_link_protocol::openai::{self, stream::ChunkEncoder};
use llm_link_protocol::passthrough;
use serde_json::json;
use std::sync::Arc;

pub(crate) const SURFACE: super::Surface = super::Surface {
    error: OpenAi::render,
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

type Body_ = super::ReqBody<OpenAiError>;

const CHAT: super::ChatReader = super::ChatReader {
    wire: Wire::OpenAi,
    endpoint: Endpoint::ChatCompletions,
    surface: SURFACE,
    plan: lifecycle::plan,
    check: passthrough::openai_chat,
    decode: |obj, _| openai::decode_chat_object(obj),
};

pub(crate) async fn chat_completions(
    State(st): State<Arc<AppState>>,
    super::Headers(headers, who): super::Headers,
    body: Body_,
) -> Result<Response, OpenAiError> {
    let obj = body.parse()?;
    let model = obj.model()?;
    let req = super::ChatBody::new(&body, &obj, &model);
    let whole = |mut resp: ChatResponse, t: &super::Translated<'_>| {
        let reasoning = t.ir.map(|r| r.reasoning_output).unwrap_or_default();
        if resp.id.is_empty() {
            resp.id = new_id("chatcmpl-");
        }
        if resp.model.is_empty() {
            resp.model = t.model.to_string();
        }
        if resp.created == 0 {
            resp.created = now_secs();
        }
        t.json(&openai::encode_chat_response(&resp, reasoning))
    };
    let streamed = |events, t: &super::Translated<'_>| {
        let (include_usage, reasoning) =
            t.ir.map(|r| (r.include_usage, r.reasoning_output))
                .unwrap_or_default();
        let enc = ChunkEncoder::new(
            new_id("chatcmpl-"),
            now_secs(),
            t.model.to_string(),
            include_usage,
            reasoning,
        );
        t.stream(super::encode_events(events, enc), "text/event-stream")
    };
    Ok(super::serve_chat(&st, (&headers, &who), req, &CHAT, whole, streamed).await?)
}

impl super::EventEncoder for ChunkEncoder {
    fn chunk(&mut self, c: &ChatChunk) -> Option<Bytes> {
        self.encode(c)
    }
    fn finish(&mut self) -> Bytes {
        ChunkEncoder::finish(self)
    }
    fn error(&mut self, e: &StreamError) -> Bytes {
        ChunkEncoder::error(self, e)
    }
    /// An error after the start becomes an in-band error event.
    fn failed(&mut self, e: &ApiError) -> Bytes {
        ChunkEncoder::error(
            self,
            &StreamError {
                message: e.to_string(),
                kind: e.openai_type().to_string(),
            },
        )
    }
}

/// An in-band OpenAI error event for a forwarded stream that broke off.
pub(crate) fn inband_error(e: &ApiError) -> Bytes {
    let body = openai::error_body(&e.to_string(), e.openai_type(), Some(e.code()), None);
    llm_link_protocol::sse::data_event(body.to_string().as_bytes())
}

async fn completions(
    State(st): State<Arc<AppState>>,
    super::Headers(headers, who): super::Headers,
    body: Body_,
) -> Result<Response, OpenAiError> {
    let (started, obj) = (body.started, body.parse()?);
    let model = openai::validate_completion_request(&obj)?;
    let stream = obj.get::<bool>("stream")?.unwrap_or(false);
    let rt = st.runtime();
    let plan = rt.router.plan(&model)?;
    let max_out = || lifecycle::requested_max_output(&obj);
    let adm =
        match lifecycle::admit(&st.governor, &who, &rt, &model, body.bytes.len(), max_out).await {
            Ok(a) => a,
            Err(e) => return Ok(super::refused(SURFACE, &e, &model, stream)),
        };
    let call = ChatCall {
        wire: Wire::OpenAi,
        endpoint: Endpoint::Completions,
        obj: &obj,
        body: &body.bytes,
        model: &model,
        stream,
        ir: None,
        headers: &headers,
        want_usage: adm.needs_usage(),
    };
    let ran = lifecycle::forward_only(&rt, &st.usage, plan, call, |name, wire| {
        ApiError::bad_request(format!(
            "legacy /v1/completions needs an OpenAI-compatible provider; `{name}` speaks {}. Use /v1/chat/completions",
            wire.as_str()
        ))
    })
    .await;
    let mut r = match ran.result {
        Err(e) => OpenAi::render(&e),
        Ok(fwd) => super::forwarded_response(fwd, started, stream, SURFACE),
    };
    let mut trail = ran.trail;
    trail.hold(adm);
    trail.settle(&mut r);
    Ok(r)
}

async fn embeddings(
    State(st): State<Arc<AppState>>,
    super::Headers(headers, who): super::Headers,
    body: Body_,
) -> Result<Response, OpenAiError> {
    let (started, body) = (body.started, body.bytes);
    // Validates every field before anything goes upstream.
    let req = openai::decode_embedding_request(&body)?;
    let whole = |mut resp: EmbeddingResponse, upstream| {
        if resp.model.is_empty() {
            resp.model = req.model.clone();
        }
        let body = openai::encode_embedding_response(&resp);
        super::timed(super::json_response(&body), started, upstream)
    };
    let r = super::serve_embed(&st, (&headers, &who), (&body, &req), &EMBED, started, whole);
    Ok(r.await?)
}

const EMBED: super::EmbedReader = super::EmbedReader {
    wire: Wire::OpenAi,
    endpoint: Endpoint::Embeddings,
    surface: SURFACE,
    plan: |rt, model| rt.router.plan(model),
};

fn model_json(id: &str, owned_by: &str, created: u64) -> serde_json::Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": owned_by})
}

async fn list_models(
    State(st): State<Arc<AppState>>,
    super::Headers(headers, who): super::Headers,
) -> Response {
    // Anthropic clients list models at the same path; they send anthropic-version.
    if headers.contains_key("anthropic-version") {
        return super::anthropic::models_response(&st, &who);
    }
    let rt = st.runtime();
    let created = now_secs().saturating_sub(st.started.elapsed().as_secs());
    let data: Vec<_> = rt
        .router
        .models()
        .iter()
        .filter(|m| who.may_use(&m.id))
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
    let mut r = OpenAi::render(&ApiError::NotFound("unknown endpoint; llm-link serves /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models".into()));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}
