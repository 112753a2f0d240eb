//! The OpenAI Responses surface: `POST /v1/responses` (JSON and SSE),
//! `GET` / `DELETE /v1/responses/{id}` and
//! `GET /v1/responses/{id}/input_items`.
//!
//! A request goes through the internal model to any upstream
//! (`llm_link_protocol::responses`), or byte for byte to an OpenAI provider
//! that serves the Responses API itself (`Wire::Responses`). Translated
//! answers stored with `store: true` (the API's default) are kept in a
//! bounded memory cache and in the database for `--responses-ttl`, so that
//! `previous_response_id` continues them and the read endpoints find them;
//! `store: false` keeps nothing. A stored response is only visible to the
//! caller that created it (the same user, or the same key when it has no
//! user); callers without an identity (desktop mode) share them.
//!
//! Answers forwarded to a provider that speaks Responses are stored by that
//! provider, not here.

use crate::error::{ApiError, OpenAi, OpenAiError, Shape};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use llm_link_gateway::govern::Principal;
use llm_link_gateway::lifecycle;
use llm_link_gateway::presets::Wire;
use llm_link_gateway::providers::Endpoint;
use llm_link_gateway::util::{new_id, now_ms, now_secs};
use llm_link_protocol::ir::{ChatChunk, ChatResponse, StreamError};
use llm_link_protocol::json::DecodeError;
use llm_link_protocol::passthrough::Forwardable;
use llm_link_protocol::responses::{self, stream::StreamEncoder, ResponsesRequest};
use llm_link_store::responses::ResponseRow;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The most stored responses a `previous_response_id` chain walks back.
const MAX_CHAIN: usize = 256;

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/responses", post(create).get(websocket))
        .route("/v1/responses/{id}", get(retrieve).delete(delete))
        .route("/v1/responses/{id}/input_items", get(input_items))
        .route_layer(super::ModelRoutes::new(state, SURFACE))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Response with id '{id}' not found."))
}

/// The stored input and output items of the chain ending at `id`, oldest
/// first.
async fn history(st: &AppState, who: &Principal, id: &str) -> Result<Vec<Value>, ApiError> {
    let mut chain = Vec::new();
    let mut next = Some(id.to_string());
    while let Some(cur) = next.take() {
        if chain.len() == MAX_CHAIN {
            return Err(DecodeError::new(
                "previous_response_id",
                format!("the conversation is longer than {MAX_CHAIN} stored responses"),
            )
            .into());
        }
        let Some(row) = st.responses.load(who, &cur).await? else {
            return Err(DecodeError::new(
                "previous_response_id",
                format!("Previous response with id '{cur}' not found."),
            )
            .into());
        };
        next = row.previous_response_id.clone();
        chain.push(row);
    }
    let mut items = Vec::new();
    for row in chain.iter().rev() {
        let input: Vec<Value> = serde_json::from_str(&row.input_items).unwrap_or_default();
        items.extend(input);
        let resp: Value = serde_json::from_str(&row.response).unwrap_or_default();
        if let Some(Value::Array(out)) = resp.get("output") {
            items.extend(out.iter().cloned());
        }
    }
    Ok(items)
}

/// What is needed to store a response once its answer is complete.
struct ToStore {
    st: Arc<AppState>,
    owner: Option<String>,
    model: String,
    previous: Option<String>,
    input_items: Vec<Value>,
}

impl ToStore {
    fn row(self, response: &Value) -> ResponseRow {
        let id = response
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // Input items in the API's shape, with ids, for `input_items`.
        let items: Vec<Value> = self
            .input_items
            .into_iter()
            .enumerate()
            .map(|(i, mut item)| {
                normalise_item(&mut item);
                if let Value::Object(o) = &mut item {
                    if !o.contains_key("id") {
                        o.insert(
                            "id".into(),
                            json!(format!("in_{}_{i}", id.trim_start_matches("resp_"))),
                        );
                    }
                }
                item
            })
            .collect();
        let now = now_ms();
        let ttl = i64::try_from(self.st.responses.ttl.as_millis()).unwrap_or(i64::MAX);
        ResponseRow {
            id,
            owner: self.owner,
            model: self.model,
            previous_response_id: self.previous,
            affinity: None,
            input_items: Value::Array(items).to_string(),
            response: response.to_string(),
            created_at: now,
            expires_at: now.saturating_add(ttl),
        }
    }

    fn save(self, response: &Value) {
        let st = self.st.clone();
        st.responses.save(self.row(response));
    }
}

/// An input item as the API lists it: an "easy" message (`{role,
/// content}` with string content) becomes a `message` item whose content is
/// one `input_text` part (`output_text` for an assistant).
fn normalise_item(item: &mut Value) {
    let Value::Object(o) = item else { return };
    if o.get("type").is_none() && o.contains_key("role") {
        o.insert("type".into(), json!("message"));
    }
    if o.get("type").and_then(Value::as_str) != Some("message") {
        return;
    }
    if let Some(Value::String(text)) = o.get("content") {
        let kind = if o.get("role").and_then(Value::as_str) == Some("assistant") {
            "output_text"
        } else {
            "input_text"
        };
        let part = if kind == "output_text" {
            json!([{"type": kind, "text": text, "annotations": []}])
        } else {
            json!([{"type": kind, "text": text}])
        };
        o.insert("content".into(), part);
    }
    if !o.contains_key("status") {
        o.insert("status".into(), json!("completed"));
    }
}

/// The light check of a body forwarded to a provider that serves the
/// Responses API (the full decode has already run).
fn check(obj: &llm_link_protocol::json::RawObject<'_>) -> Result<Forwardable, DecodeError> {
    Ok(Forwardable {
        model: obj.require_model()?,
        stream: obj.get::<bool>("stream")?.unwrap_or(false),
    })
}

/// The OpenAI surface, with errors that name the Responses field a client
/// sent where the internal model's name differs.
const SURFACE: super::Surface = super::Surface {
    error: render,
    ..super::openai::SURFACE
};

/// Internal-model field names in errors, as a Responses client knows them.
const FIELD_NAMES: &[(&str, &str)] = &[
    ("response_format", "text.format"),
    ("max_completion_tokens", "max_output_tokens"),
    ("max_tokens", "max_output_tokens"),
    ("messages", "input"),
];

fn render(e: &ApiError) -> Response {
    if let ApiError::BadRequest { message, param } = e {
        let rename = |s: &str| {
            let mut s = s.to_string();
            for (internal, client) in FIELD_NAMES {
                s = s.replace(&format!("`{internal}"), &format!("`{client}"));
            }
            s
        };
        let param = param.as_deref().map(|p| {
            FIELD_NAMES
                .iter()
                .find(|(internal, _)| {
                    p == *internal
                        || p.starts_with(&format!("{internal}["))
                        || p.starts_with(&format!("{internal}."))
                })
                .map(|(internal, client)| format!("{client}{}", &p[internal.len()..]))
                .unwrap_or_else(|| p.to_string())
        });
        return OpenAi::render(&ApiError::BadRequest {
            message: rename(message),
            param,
        });
    }
    OpenAi::render(e)
}

const RESPONSES: super::ChatReader = super::ChatReader {
    wire: Wire::Responses,
    endpoint: Endpoint::Responses,
    surface: SURFACE,
    plan: lifecycle::plan,
    check,
    decode: |obj, _| responses::decode_request_object(obj).map(|r| r.chat),
};

async fn create(
    State(st): State<Arc<AppState>>,
    super::Headers(headers, who): super::Headers,
    body: super::ReqBody<OpenAiError>,
) -> Result<Response, OpenAiError> {
    let obj = body.parse()?;
    let model = obj.model()?;
    // Decoded in full whatever the route: bad input is a 400 naming the
    // field before anything else happens.
    let mut rr: ResponsesRequest = responses::decode_request_object(&obj)?;
    if !rr.dropped_tools.is_empty() {
        tracing::debug!(tools = ?rr.dropped_tools, "built-in tools a chat upstream cannot run were left out");
    }
    if let Some(prev) = rr.previous_response_id.clone() {
        // A provider that serves the API keeps its own responses: when
        // every target forwards, the id is its to resolve.
        let rt = st.runtime();
        let plan = lifecycle::plan(st.app.as_deref(), &rt, &headers, &model)?;
        if lifecycle::needs_translation(&rt.router, &plan, Wire::Responses) {
            let items = history(&st, &who, &prev).await?;
            rr.apply_history(&items)?;
        }
    }
    let id = new_id("resp_");
    let created = now_secs();
    let encrypted = rr
        .input_items
        .iter()
        .filter(|i| i.get("encrypted_content").is_some_and(Value::is_string))
        .count();
    let ResponsesRequest {
        chat,
        store,
        previous_response_id,
        input_items,
        echo,
        ..
    } = rr;
    let keep = store.then(|| ToStore {
        st: st.clone(),
        owner: crate::stored::owner_of(&who),
        model: model.clone(),
        previous: previous_response_id,
        input_items,
    });
    // Exactly one of the two answers below runs: they share what it needs
    // instead of each holding a copy.
    let once = std::sync::Mutex::new(Some((id, echo, keep)));
    let req = super::ChatBody::new(&body, &obj, &model);
    let whole = |mut resp: ChatResponse, t: &super::Translated<'_>| {
        let (id, echo, keep) = take(&once);
        if resp.model.is_empty() {
            resp.model = t.model.to_string();
        }
        let v = responses::encode_response(&resp, &id, created, &echo);
        if let Some(k) = keep {
            k.save(&v);
        }
        t.json(&v)
    };
    let streamed = |events, t: &super::Translated<'_>| {
        let (id, echo, keep) = take(&once);
        let enc = Encoder {
            inner: StreamEncoder::new(id, t.model.to_string(), created, echo),
            keep,
        };
        t.stream(super::encode_events(events, enc), "text/event-stream")
    };
    // Runs only when a target translates: reasoning a Responses host
    // encrypted for itself cannot go with it.
    let decode = move || {
        if encrypted > 0 {
            tracing::info!(
                items = encrypted,
                "reasoning items with encrypted_content dropped: the target does not serve the Responses API"
            );
        }
        Ok(chat)
    };
    let r = super::serve_chat_with(
        &st,
        (&headers, &who),
        req,
        &RESPONSES,
        decode,
        whole,
        streamed,
    );
    Ok(r.await?)
}

/// What `m` holds, taken (the default once taken).
fn take<T: Default>(m: &std::sync::Mutex<Option<T>>) -> T {
    m.lock().ok().and_then(|mut g| g.take()).unwrap_or_default()
}

/// The Responses event stream, which stores the final object when the
/// stream ends (completed, incomplete or failed) if asked to.
struct Encoder {
    inner: StreamEncoder,
    keep: Option<ToStore>,
}

impl Encoder {
    fn store(&mut self) {
        if let Some(k) = self.keep.take() {
            k.save(&self.inner.response());
        }
    }
}

impl super::EventEncoder for Encoder {
    fn start(&mut self) -> Option<Bytes> {
        Some(self.inner.start())
    }
    fn chunk(&mut self, c: &ChatChunk) -> Option<Bytes> {
        self.inner.encode(c)
    }
    fn finish(&mut self) -> Bytes {
        let b = self.inner.finish();
        self.store();
        b
    }
    fn error(&mut self, e: &StreamError) -> Bytes {
        let b = self.inner.error(e);
        self.store();
        b
    }
    fn failed(&mut self, e: &ApiError) -> Bytes {
        let b = self.inner.error(&StreamError {
            message: e.to_string(),
            kind: e.openai_type().to_string(),
        });
        self.store();
        b
    }
}

/// `GET /v1/responses`, Codex's WebSocket transport (a provider with
/// `supports_websockets = true`): refused with 426, on which Codex falls
/// back to HTTP for the whole session at once (a 404 it would retry with
/// backoff first).
async fn websocket() -> Response {
    let body = responses::error_body(
        "llm-link serves the Responses API over HTTP (JSON and SSE), not WebSocket; POST /v1/responses",
        "invalid_request_error",
        Some("websocket_not_supported"),
        None,
    );
    (StatusCode::UPGRADE_REQUIRED, axum::Json(body)).into_response()
}

async fn retrieve(
    State(st): State<Arc<AppState>>,
    super::Headers(_, who): super::Headers,
    Path(id): Path<String>,
) -> Result<Response, OpenAiError> {
    let row = st
        .responses
        .load(&who, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let mut r = Response::new(axum::body::Body::from(row.response.clone()));
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

async fn delete(
    State(st): State<Arc<AppState>>,
    super::Headers(_, who): super::Headers,
    Path(id): Path<String>,
) -> Result<Response, OpenAiError> {
    st.responses
        .load(&who, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    st.responses.delete(&id).await?;
    Ok(axum::Json(json!({"id": id, "object": "response", "deleted": true})).into_response())
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    order: Option<String>,
    after: Option<String>,
    before: Option<String>,
}

async fn input_items(
    State(st): State<Arc<AppState>>,
    super::Headers(_, who): super::Headers,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, OpenAiError> {
    let limit = match q.limit.as_deref() {
        None => 20,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::from(DecodeError::new(
                    "limit",
                    "must be an integer between 1 and 100",
                ))
            })?,
    };
    let desc = match q.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => {
            return Err(ApiError::from(DecodeError::new("order", "must be `asc` or `desc`")).into())
        }
    };
    let row = st
        .responses
        .load(&who, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    let mut items: Vec<Value> = serde_json::from_str(&row.input_items).unwrap_or_default();
    if desc {
        items.reverse();
    }
    let id_of = |v: &Value| v.get("id").and_then(Value::as_str).map(str::to_string);
    if let Some(after) = &q.after {
        if let Some(i) = items
            .iter()
            .position(|v| id_of(v).as_deref() == Some(after))
        {
            items.drain(..=i);
        }
    }
    if let Some(before) = &q.before {
        if let Some(i) = items
            .iter()
            .position(|v| id_of(v).as_deref() == Some(before))
        {
            items.truncate(i);
        }
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    let first = items.first().and_then(id_of);
    let last = items.last().and_then(id_of);
    let mut o = Map::new();
    o.insert("object".into(), json!("list"));
    o.insert("data".into(), Value::Array(items));
    o.insert("first_id".into(), json!(first));
    o.insert("last_id".into(), json!(last));
    o.insert("has_more".into(), json!(has_more));
    Ok((StatusCode::OK, axum::Json(Value::Object(o))).into_response())
}
