//! The Ollama surface, as Ollama clients (Zed, the ollama SDKs) expect it:
//! `/api/chat`, `/api/generate`, `/api/embed`, `/api/embeddings`,
//! `/api/tags`, `/api/show`, `/api/ps`, `/api/version`; `/api/delete`,
//! `/api/pull` and friends answer a clear error.

use crate::error::{ApiError, Ollama, OllamaError, Shape};
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use llm_link_gateway::govern::Principal;
use llm_link_gateway::lifecycle;
use llm_link_gateway::presets::Wire;
use llm_link_gateway::providers::Endpoint;
use llm_link_gateway::routing::{Plan, Target};
use llm_link_gateway::snapshot::Runtime;
use llm_link_gateway::util::now_secs;
use llm_link_protocol::ir::{
    ChatChunk, ChatResponse, EmbeddingRequest, EmbeddingResponse, StreamError,
};
use llm_link_protocol::json::RawObject;
use llm_link_protocol::ollama::{self, stream::ChatStreamEncoder, Timings};
use llm_link_protocol::passthrough;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The Ollama API version llm-link answers as (`GET /api/version`): the
/// surface matches Ollama's API of this version, tools and images included.
pub const OLLAMA_API_VERSION: &str = "0.9.0";

fn inband_error(e: &ApiError) -> Bytes {
    error_line(&e.to_string())
}

const SURFACE: super::Surface = super::Surface {
    error: Ollama::render,
    inband_error,
    stream_type: "application/x-ndjson",
};

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/chat", post(chat))
        .route("/api/generate", post(generate))
        .route("/api/embed", post(embed))
        .route("/api/embeddings", post(embeddings_legacy))
        .route("/api/tags", get(tags))
        .route("/api/show", post(show))
        .route("/api/ps", get(ps))
        .route("/api/delete", delete(unsupported))
        .route("/api/pull", post(unsupported))
        .route("/api/push", post(unsupported))
        .route("/api/create", post(unsupported))
        .route("/api/copy", post(unsupported))
        .route_layer(super::ModelRoutes::new(state, SURFACE))
        .route("/api/version", get(version))
        .route("/", get(root).head(root))
}

async fn root() -> &'static str {
    "Ollama is running"
}

async fn version() -> Json<Value> {
    Json(json!({"version": OLLAMA_API_VERSION}))
}

/// Unknown paths under `/api/` answer in Ollama's shape.
pub async fn unknown_path() -> Response {
    Ollama::render(&ApiError::NotFound("unknown endpoint".into()))
}

async fn unsupported() -> Response {
    Ollama::render(&ApiError::bad_request(
        "llm-link does not manage model files: its models come from the providers it is configured with (GET /api/tags lists them); configure providers with --provider or --config instead",
    ))
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

pub fn rfc3339_secs(secs: u64) -> String {
    ollama::rfc3339_from_unix_nanos(u128::from(secs) * 1_000_000_000)
}

fn now_rfc3339() -> String {
    ollama::rfc3339_from_unix_nanos(unix_nanos())
}

/// Resolves an Ollama model name; a `:latest` tag that is not part of a
/// declared name is ignored, as Ollama clients add it on their own.
fn resolve(rt: &Runtime, model: &str) -> Result<Target, ApiError> {
    by_ollama_name(model, |m| rt.router.resolve(m))
}

/// Looks a model up by `model`, then without a `:latest` tag that Ollama
/// clients add on their own; "not found" in Ollama's words.
fn by_ollama_name<T>(
    model: &str,
    find: impl Fn(&str) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    match find(model) {
        Err(ApiError::ModelNotFound(_)) if model.ends_with(":latest") => {
            find(model.trim_end_matches(":latest")).map_err(|_| not_found(model))
        }
        Err(ApiError::ModelNotFound(_)) => Err(not_found(model)),
        other => other,
    }
}

fn not_found(model: &str) -> ApiError {
    ApiError::ModelNotFound(format!(
        "model '{model}' not found; GET /api/tags lists the models llm-link serves"
    ))
}

fn error_line(msg: &str) -> Bytes {
    let mut v = ollama::error_body(msg).to_string().into_bytes();
    v.push(b'\n');
    Bytes::from(v)
}

fn timings(started: Instant, first: Option<Instant>) -> Timings {
    let total = started.elapsed();
    let prompt = first.map(|f| f.duration_since(started)).unwrap_or(total);
    Timings {
        total_ns: total.as_nanos() as u64,
        load_ns: 0,
        prompt_eval_ns: prompt.as_nanos() as u64,
        eval_ns: total.saturating_sub(prompt).as_nanos() as u64,
    }
}

const CHAT: super::ChatReader = super::ChatReader {
    wire: Wire::Ollama,
    endpoint: Endpoint::OllamaChat,
    surface: SURFACE,
    plan: ollama_plan,
    check: passthrough::ollama_chat,
    decode: |_, body| ollama::decode_chat_request(body),
};

const GENERATE: super::ChatReader = super::ChatReader {
    wire: Wire::Ollama,
    endpoint: Endpoint::OllamaGenerate,
    surface: SURFACE,
    plan: ollama_plan,
    check: passthrough::ollama_generate,
    decode: |_, body| ollama::decode_generate_request(body),
};

/// The plan for an Ollama model name (a `:latest` tag the clients add is
/// ignored when it is not part of a declared name).
fn ollama_plan(
    app: Option<&str>,
    rt: &Runtime,
    headers: &HeaderMap,
    model: &str,
) -> Result<Plan, ApiError> {
    by_ollama_name(model, |m| lifecycle::plan(app, rt, headers, m))
}

/// A request that only loads or unloads its model: the `done_reason`, and
/// the endpoint's answer field with its empty value.
struct Load {
    reason: &'static str,
    field: &'static str,
    value: Value,
}

/// Ollama's answer to a request that only loads (or unloads) a model,
/// which must exist.
fn loaded(st: &AppState, model: &str, load: Load) -> Result<Response, ApiError> {
    resolve(&st.runtime(), model)?;
    let mut v = json!({
        "model": model,
        "created_at": now_rfc3339(),
        "done_reason": load.reason,
        "done": true,
    });
    v[load.field] = load.value;
    Ok(Json(v).into_response())
}

/// Shared by `/api/chat` and `/api/generate` once the request is read.
async fn answer(
    st: &AppState,
    headers: (&HeaderMap, &Principal),
    req: super::ChatBody<'_>,
    reader: &super::ChatReader,
) -> Result<Response, ApiError> {
    let generate = reader.endpoint == Endpoint::OllamaGenerate;
    let whole = |resp: ChatResponse, t: &super::Translated<'_>| {
        let reasoning = t.ir.map(|r| r.reasoning_output).unwrap_or_default();
        let (at, timing) = (now_rfc3339(), timings(t.started, None));
        let v = if generate {
            ollama::encode_generate_response(&resp, t.model, &at, timing, reasoning)
        } else {
            ollama::encode_chat_response(&resp, t.model, &at, timing, reasoning)
        };
        super::timed(super::json_response(&v), t.started, t.started.elapsed())
    };
    let streamed = |events, t: &super::Translated<'_>| {
        let reasoning = t.ir.map(|r| r.reasoning_output).unwrap_or_default();
        let enc = NdjsonEncoder {
            enc: ChatStreamEncoder::new(t.model.to_string(), now_rfc3339(), reasoning, generate),
            started: t.started,
            first: None,
        };
        super::stream_response(
            Body::from_stream(super::encode_events(events, enc)),
            "application/x-ndjson",
        )
    };
    super::serve_chat(st, headers, req, reader, whole, streamed).await
}

/// Ollama's NDJSON stream, whose last line carries the timings (from the
/// request's start and its first chunk).
struct NdjsonEncoder {
    enc: ChatStreamEncoder,
    started: Instant,
    first: Option<Instant>,
}

impl super::EventEncoder for NdjsonEncoder {
    fn chunk(&mut self, c: &ChatChunk) -> Option<Bytes> {
        self.first.get_or_insert_with(Instant::now);
        self.enc.encode(c)
    }
    fn finish(&mut self) -> Bytes {
        self.enc
            .finish(timings(self.started, self.first), now_rfc3339())
    }
    fn error(&mut self, e: &StreamError) -> Bytes {
        self.enc.error(&e.message)
    }
    fn failed(&mut self, e: &ApiError) -> Bytes {
        self.enc.error(&e.to_string())
    }
}

async fn chat(
    State(st): State<Arc<AppState>>,
    super::Headers(headers, who): super::Headers,
    body: super::ReqBody<OllamaError>,
) -> Result<Response, OllamaError> {
    chat_like(&st, (&headers, &who), body, &CHAT).await
}

async fn generate(
    State(st): State<Arc<AppState>>,
    super::Headers(headers, who): super::Headers,
    body: super::ReqBody<OllamaError>,
) -> Result<Response, OllamaError> {
    chat_like(&st, (&headers, &who), body, &GENERATE).await
}

/// `/api/chat` and `/api/generate`: a request with nothing to answer only
/// loads (or unloads) its model, as in Ollama; any other is served.
async fn chat_like(
    st: &AppState,
    headers: (&HeaderMap, &Principal),
    body: super::ReqBody<OllamaError>,
    reader: &super::ChatReader,
) -> Result<Response, OllamaError> {
    let obj = body.parse()?;
    let model = obj.model()?;
    if let Some(load) = only_loads(&obj, reader.endpoint)? {
        return Ok(loaded(st, &model, load)?);
    }
    let req = super::ChatBody::new(&body, &obj, &model);
    Ok(answer(st, headers, req, reader).await?)
}

/// Whether a request only loads or unloads its model. An empty `messages` loads (or,
/// with `keep_alive` 0, unloads) a model in Ollama; so does a `generate`
/// without prompt or images.
fn only_loads(obj: &RawObject<'_>, endpoint: Endpoint) -> Result<Option<Load>, ApiError> {
    if endpoint == Endpoint::OllamaGenerate {
        let prompt: Option<String> = obj.get("prompt")?;
        let empty = prompt.as_deref().is_none_or(str::is_empty) && !obj.has("images");
        return Ok(empty.then(|| Load {
            reason: "load",
            field: "response",
            value: json!(""),
        }));
    }
    let messages: Option<Vec<Value>> = obj.get("messages")?;
    if messages.as_ref().is_some_and(|m| !m.is_empty()) {
        return Ok(None);
    }
    let unload = obj
        .get::<Value>("keep_alive")?
        .is_some_and(|k| k == json!(0) || k == json!("0"));
    Ok(Some(Load {
        reason: if unload { "unload" } else { "load" },
        field: "message",
        value: json!({"role": "assistant", "content": ""}),
    }))
}

/// `/api/embed` and the legacy `/api/embeddings`, once decoded.
async fn embed_common(
    st: &AppState,
    headers: (&HeaderMap, &Principal),
    body: &Bytes,
    req: EmbeddingRequest,
    reader: &super::EmbedReader,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let legacy = reader.endpoint == Endpoint::OllamaEmbeddings;
    let whole = |mut resp: EmbeddingResponse, _| {
        resp.model = req.model.clone();
        if legacy {
            super::json_response(&ollama::encode_embeddings_legacy_response(&resp))
        } else {
            let ns = started.elapsed().as_nanos() as u64;
            super::json_response(&ollama::encode_embed_response(&resp, ns))
        }
    };
    super::serve_embed(st, headers, (body, &req), reader, started, whole).await
}

const EMBED: super::EmbedReader = super::EmbedReader {
    wire: Wire::Ollama,
    endpoint: Endpoint::OllamaEmbed,
    surface: SURFACE,
    plan: |rt, model| by_ollama_name(model, |m| rt.router.plan(m)),
};

const EMBEDDINGS: super::EmbedReader = super::EmbedReader {
    endpoint: Endpoint::OllamaEmbeddings,
    ..EMBED
};

async fn embed(
    State(st): State<Arc<AppState>>,
    super::Headers(headers, who): super::Headers,
    body: super::ReqBody<OllamaError>,
) -> Result<Response, OllamaError> {
    let body = body.bytes;
    let req = ollama::decode_embed_request(&body)?;
    Ok(embed_common(&st, (&headers, &who), &body, req, &EMBED).await?)
}

async fn embeddings_legacy(
    State(st): State<Arc<AppState>>,
    super::Headers(headers, who): super::Headers,
    body: super::ReqBody<OllamaError>,
) -> Result<Response, OllamaError> {
    let body = body.bytes;
    let req = ollama::decode_embeddings_legacy_request(&body)?;
    Ok(embed_common(&st, (&headers, &who), &body, req, &EMBEDDINGS).await?)
}

/// What a model can do, in Ollama's capability words.
pub fn capabilities(model: &str, force: bool) -> Vec<&'static str> {
    let m = model.to_ascii_lowercase();
    if m.contains("embed") {
        return vec!["embedding"];
    }
    let mut caps = vec!["completion", "tools"];
    let vision = [
        "4o",
        "4.1",
        "vision",
        "-vl",
        "4v",
        "claude-3",
        "claude-sonnet",
        "claude-opus",
        "llava",
        "gemini",
    ];
    if force || vision.iter().any(|v| m.contains(v)) {
        caps.push("vision");
    }
    if ["reasoner", "-r1", "qwq", "o3", "thinking"]
        .iter()
        .any(|v| m.contains(v))
    {
        caps.push("thinking");
    }
    caps
}

fn force_caps(st: &AppState) -> bool {
    st.app
        .as_deref()
        .and_then(llm_link_gateway::apps::find)
        .is_some_and(|a| a.force_capabilities)
}

async fn tags(
    State(st): State<Arc<AppState>>,
    super::Headers(_, who): super::Headers,
) -> Json<Value> {
    let rt = st.runtime();
    let modified = rfc3339_secs(now_secs().saturating_sub(st.started.elapsed().as_secs()));
    let force = force_caps(&st);
    let models: Vec<Value> = rt
        .router
        .models()
        .iter()
        .filter(|m| who.may_use(&m.id))
        .map(|m| {
            let family = family_of(&rt, &m.id);
            let mut entry = ollama::tag_entry(&m.id, &modified, &family, "");
            if let Value::Object(o) = &mut entry {
                o.insert("capabilities".into(), json!(capabilities(&m.id, force)));
            }
            entry
        })
        .collect();
    Json(json!({"models": models}))
}

fn family_of(rt: &Runtime, model: &str) -> String {
    rt.router
        .resolve(model)
        .map(|t| t.provider.config().preset.kind.replace('-', "_"))
        .unwrap_or_else(|_| "llm_link".into())
}

async fn show(
    State(st): State<Arc<AppState>>,
    body: super::ReqBody<OllamaError>,
) -> Result<Response, OllamaError> {
    let body = body.bytes;
    let obj = RawObject::parse(&body)?;
    let model: String = match obj.get::<String>("model")? {
        Some(m) => m,
        None => obj.require("name")?,
    };
    let rt = st.runtime();
    let target = resolve(&rt, &model)?;
    let family = target.provider.config().preset.kind.replace('-', "_");
    let ctx = llm_link_gateway::presets::context_window(&target.upstream_model);
    let caps = capabilities(&model, force_caps(&st));
    let mut info = serde_json::Map::new();
    info.insert("general.architecture".into(), json!(family));
    info.insert("general.basename".into(), json!(model));
    info.insert("general.parameter_count".into(), json!(0));
    info.insert(format!("{family}.context_length"), json!(ctx));
    Ok(Json(json!({
        "license": "",
        "modelfile": format!("# served by llm-link from provider `{}` as `{}`\nFROM {model}\n", target.provider.name(), target.upstream_model),
        "parameters": format!("num_ctx {ctx}"),
        "template": "{{ .Prompt }}",
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": "",
            "quantization_level": "",
        },
        "model_info": info,
        "capabilities": caps,
        "modified_at": rfc3339_secs(now_secs().saturating_sub(st.started.elapsed().as_secs())),
    }))
    .into_response())
}

async fn ps() -> Json<Value> {
    // Cloud providers keep nothing loaded here; managed local models come later.
    Json(json!({"models": []}))
}
