//! The OpenAI Chat Completions wire format: decode and encode both ways.
//!
//! Client side: [`decode_chat_request`] and [`encode_chat_response`] /
//! [`stream::ChunkEncoder`]. Provider side: [`encode_chat_request`] and
//! [`decode_chat_response`] / [`stream::ChunkDecoder`].

pub mod stream;
pub mod wire;

use crate::ir::*;
use crate::json::{DecodeError, RawObject};
use crate::think::assistant_message;
use crate::wire::{embedding_request_head, tools_to_ir};
use serde_json::{json, Map, Value};
use wire::*;

/// Top-level chat request fields this codec understands; everything else is
/// carried in `ChatRequest::extra`.
pub const CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "user",
    "response_format",
    "stream",
    "stream_options",
    "functions",
    "function_call",
];

/// Decodes a client's `/v1/chat/completions` body, validating every field
/// this model knows and naming the first bad one.
pub fn decode_chat_request(body: &[u8]) -> Result<ChatRequest, DecodeError> {
    let obj = RawObject::parse(body)?;
    decode_chat_object(&obj)
}

/// As [`decode_chat_request`], for an already parsed top level.
pub fn decode_chat_object(obj: &RawObject<'_>) -> Result<ChatRequest, DecodeError> {
    let model = obj.require_model()?;
    let wire_messages: Vec<WireMessage> = obj.require_messages()?;
    let mut messages = Vec::with_capacity(wire_messages.len());
    for (i, m) in wire_messages.into_iter().enumerate() {
        messages.push(message_to_ir(i, m)?);
    }

    let tools = match obj.get::<Vec<WireTool>>("tools")? {
        Some(wire_tools) => tools_to_ir(wire_tools)?,
        None => Vec::new(),
    };

    let tool_choice = match obj.get::<WireToolChoice>("tool_choice")? {
        None => None,
        Some(WireToolChoice::Mode(m)) => Some(match m.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" | "any" => ToolChoice::Required,
            other => {
                return Err(DecodeError::new(
                    "tool_choice",
                    format!("unknown value `{other}`; expected `auto`, `none`, `required` or a named function"),
                ))
            }
        }),
        Some(WireToolChoice::Named { function, .. }) => Some(ToolChoice::Function(function.name)),
    };

    let max_tokens: Option<u32> = obj.get("max_tokens")?;
    let max_completion_tokens: Option<u32> = obj.get("max_completion_tokens")?;
    let (max_tokens, max_tokens_field) = match (max_completion_tokens, max_tokens) {
        (Some(m), _) => (Some(m), MaxTokensField::MaxCompletionTokens),
        (None, m) => (m, MaxTokensField::MaxTokens),
    };

    let stop = match obj.get::<WireStop>("stop")? {
        None => Vec::new(),
        Some(WireStop::One(s)) => vec![s],
        Some(WireStop::Many(v)) => v,
    };

    let response_format = match obj.get::<WireResponseFormat>("response_format")? {
        None => None,
        Some(WireResponseFormat::Text) => Some(ResponseFormat::Text),
        Some(WireResponseFormat::JsonObject) => Some(ResponseFormat::JsonObject),
        Some(WireResponseFormat::JsonSchema { json_schema }) => Some(ResponseFormat::JsonSchema {
            name: json_schema.name,
            schema: json_schema.schema.unwrap_or_else(|| json!({})),
            strict: json_schema.strict,
            description: json_schema.description,
        }),
    };

    let temperature: Option<f64> = obj.get("temperature")?;
    if let Some(t) = temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(DecodeError::new("temperature", "must be between 0 and 2"));
        }
    }
    let top_p: Option<f64> = obj.get("top_p")?;
    if let Some(p) = top_p {
        if !(0.0..=1.0).contains(&p) {
            return Err(DecodeError::new("top_p", "must be between 0 and 1"));
        }
    }
    let n: Option<u32> = obj.get("n")?;
    if n == Some(0) {
        return Err(DecodeError::new("n", "must be at least 1"));
    }
    let stream_options: Option<WireStreamOptions> = obj.get("stream_options")?;

    Ok(ChatRequest {
        model,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: obj.get("parallel_tool_calls")?,
        temperature,
        top_p,
        top_k: obj.get("top_k")?,
        max_tokens,
        max_tokens_field,
        stop,
        seed: obj.get("seed")?,
        presence_penalty: obj.get("presence_penalty")?,
        frequency_penalty: obj.get("frequency_penalty")?,
        n,
        user: obj.get("user")?,
        response_format,
        stream: obj.get("stream")?.unwrap_or(false),
        include_usage: stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        reasoning_output: ReasoningOutput::Separate,
        extra: obj.rest(CHAT_FIELDS),
        extra_wire: Some("openai"),
    })
}

fn message_to_ir(i: usize, m: WireMessage) -> Result<Message, DecodeError> {
    let role = match m.role {
        WireRole::System | WireRole::Developer => Role::System,
        WireRole::User => Role::User,
        WireRole::Assistant => Role::Assistant,
        WireRole::Tool | WireRole::Function => Role::Tool,
    };
    let mut content = Vec::new();
    match m.content {
        None => {}
        Some(WireContent::Text(t)) => content.push(ContentPart::Text(t)),
        Some(WireContent::Parts(parts)) => {
            for part in parts {
                content.push(match part {
                    WirePart::Text { text } => ContentPart::Text(text),
                    WirePart::Refusal { refusal } => ContentPart::Text(refusal),
                    WirePart::ImageUrl { image_url } => {
                        let (url, detail) = match image_url {
                            WireImageUrl::Object { url, detail } => (url, detail),
                            WireImageUrl::Bare(url) => (url, None),
                        };
                        ContentPart::Image(Image {
                            source: ImageSource::from_url(&url),
                            detail,
                        })
                    }
                });
            }
        }
    }
    let tool_calls = m
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(j, tc)| {
            let name = tc.function.name.unwrap_or_default();
            if name.is_empty() {
                return Err(DecodeError::new(
                    format!("messages[{i}].tool_calls[{j}].function.name"),
                    "this field is required",
                ));
            }
            Ok(ToolCall {
                id: tc.id.unwrap_or_else(|| format!("call_{i}_{j}")),
                name,
                arguments: tc.function.arguments,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    match role {
        Role::Tool if m.tool_call_id.is_none() && m.role == WireRole::Tool => {
            return Err(DecodeError::new(
                format!("messages[{i}].tool_call_id"),
                "a `tool` message must say which call it answers",
            ));
        }
        Role::User | Role::System if content.is_empty() => {
            return Err(DecodeError::new(
                format!("messages[{i}].content"),
                "this field is required",
            ));
        }
        _ => {}
    }
    if role != Role::User && content.iter().any(|p| matches!(p, ContentPart::Image(_))) {
        return Err(DecodeError::new(
            format!("messages[{i}].content"),
            "image parts are only allowed in `user` messages",
        ));
    }
    Ok(Message {
        role,
        content,
        name: m.name,
        tool_calls,
        tool_call_id: m.tool_call_id,
        reasoning: m.reasoning_content,
    })
}

fn content_to_wire(content: &[ContentPart]) -> Value {
    match content {
        [] => Value::Null,
        [ContentPart::Text(t)] => Value::String(t.clone()),
        parts if parts.iter().all(|p| matches!(p, ContentPart::Text(_))) => {
            let mut s = String::new();
            for p in parts {
                if let ContentPart::Text(t) = p {
                    s.push_str(t);
                }
            }
            Value::String(s)
        }
        parts => Value::Array(
            parts
                .iter()
                .map(|p| match p {
                    ContentPart::Text(t) => json!({"type": "text", "text": t}),
                    ContentPart::Image(img) => {
                        let mut url = Map::new();
                        url.insert("url".into(), Value::String(img.source.to_url()));
                        if let Some(d) = &img.detail {
                            url.insert("detail".into(), Value::String(d.clone()));
                        }
                        json!({"type": "image_url", "image_url": url})
                    }
                })
                .collect(),
        ),
    }
}

fn tool_calls_to_wire(calls: &[ToolCall]) -> Value {
    Value::Array(
        calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                })
            })
            .collect(),
    )
}

/// Options for encoding a request to an OpenAI-compatible upstream.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestOptions {
    /// Send `max_tokens` even when the client used `max_completion_tokens`
    /// (most compatible hosts only know the older name).
    pub legacy_max_tokens: bool,
    /// Forward fields the model did not recognise.
    pub forward_extra: bool,
    /// Send `top_k` (vLLM and most compatible hosts take it; api.openai.com
    /// refuses it).
    pub top_k: bool,
}

/// Encodes a request for an OpenAI-compatible upstream.
pub fn encode_chat_request(req: &ChatRequest, opts: RequestOptions) -> Value {
    let mut o = Map::new();
    // Unknown fields go only to their own format: Anthropic's `thinking` or
    // Ollama's `keep_alive` would make an OpenAI-compatible host answer 400.
    if opts.forward_extra && matches!(req.extra_wire, Some("openai") | None) {
        for (k, v) in &req.extra {
            o.insert(k.clone(), v.clone());
        }
    }
    o.insert("model".into(), Value::String(req.model.clone()));
    let mut messages: Vec<Value> = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        // OpenAI tool messages carry text only: images a tool returned (an
        // Anthropic tool_result can hold them) follow in a user message.
        let (content, moved_images): (Vec<ContentPart>, Vec<ContentPart>) = if m.role == Role::Tool
        {
            m.content
                .iter()
                .cloned()
                .partition(|p| matches!(p, ContentPart::Text(_)))
        } else {
            (m.content.clone(), Vec::new())
        };
        let mut mo = Map::new();
        mo.insert("role".into(), Value::String(m.role.as_str().into()));
        let content = content_to_wire(&content);
        if content.is_null() && m.role != Role::Assistant {
            let placeholder = if moved_images.is_empty() {
                ""
            } else {
                "(image attached below)"
            };
            mo.insert("content".into(), Value::String(placeholder.into()));
        } else {
            mo.insert("content".into(), content);
        }
        if let Some(n) = &m.name {
            mo.insert("name".into(), Value::String(n.clone()));
        }
        if !m.tool_calls.is_empty() {
            mo.insert("tool_calls".into(), tool_calls_to_wire(&m.tool_calls));
        }
        if let Some(id) = &m.tool_call_id {
            mo.insert("tool_call_id".into(), Value::String(id.clone()));
        }
        messages.push(Value::Object(mo));
        if !moved_images.is_empty() {
            let mut parts = vec![ContentPart::Text(format!(
                "Image(s) returned by tool call {}:",
                m.tool_call_id.as_deref().unwrap_or("")
            ))];
            parts.extend(moved_images);
            messages.push(json!({"role": "user", "content": content_to_wire(&parts)}));
        }
    }
    o.insert("messages".into(), Value::Array(messages));
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut f = Map::new();
                f.insert("name".into(), Value::String(t.name.clone()));
                if let Some(d) = &t.description {
                    f.insert("description".into(), Value::String(d.clone()));
                }
                f.insert("parameters".into(), t.parameters.clone());
                if let Some(s) = t.strict {
                    f.insert("strict".into(), Value::Bool(s));
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        o.insert("tools".into(), Value::Array(tools));
    }
    if let Some(tc) = &req.tool_choice {
        o.insert(
            "tool_choice".into(),
            match tc {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Function(name) => {
                    json!({"type": "function", "function": {"name": name}})
                }
            },
        );
    }
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            o.insert(k.into(), v);
        }
    };
    put(
        "parallel_tool_calls",
        req.parallel_tool_calls.map(Value::Bool),
    );
    put("temperature", req.temperature.map(|v| json!(v)));
    put("top_p", req.top_p.map(|v| json!(v)));
    if opts.top_k {
        put("top_k", req.top_k.map(|v| json!(v)));
    }
    let max_key =
        if req.max_tokens_field == MaxTokensField::MaxCompletionTokens && !opts.legacy_max_tokens {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
    put(max_key, req.max_tokens.map(|v| json!(v)));
    put("stop", (!req.stop.is_empty()).then(|| json!(req.stop)));
    put("seed", req.seed.map(|v| json!(v)));
    put("presence_penalty", req.presence_penalty.map(|v| json!(v)));
    put("frequency_penalty", req.frequency_penalty.map(|v| json!(v)));
    put("n", req.n.map(|v| json!(v)));
    put("user", req.user.clone().map(Value::String));
    put(
        "response_format",
        req.response_format.as_ref().map(|rf| match rf {
            ResponseFormat::Text => json!({"type": "text"}),
            ResponseFormat::JsonObject => json!({"type": "json_object"}),
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
                description,
            } => {
                let mut js = Map::new();
                js.insert("name".into(), json!(name));
                js.insert("schema".into(), schema.clone());
                if let Some(s) = strict {
                    js.insert("strict".into(), json!(s));
                }
                if let Some(d) = description {
                    js.insert("description".into(), json!(d));
                }
                json!({"type": "json_schema", "json_schema": js})
            }
        }),
    );
    if req.stream {
        put("stream", Some(Value::Bool(true)));
        // Always ask for usage so it can be metered, whatever the client wants.
        put("stream_options", Some(json!({"include_usage": true})));
    }
    Value::Object(o)
}

pub(crate) fn usage_from_wire(u: &WireUsage) -> Usage {
    Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
        cached_tokens: u
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .or(u.prompt_cache_hit_tokens),
        reasoning_tokens: u
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens),
    }
}

pub fn usage_to_wire(u: &Usage) -> Value {
    let mut o = Map::new();
    o.insert("prompt_tokens".into(), json!(u.prompt_tokens));
    o.insert("completion_tokens".into(), json!(u.completion_tokens));
    o.insert("total_tokens".into(), json!(u.total_tokens()));
    if let Some(c) = u.cached_tokens {
        o.insert("prompt_tokens_details".into(), json!({"cached_tokens": c}));
    }
    if let Some(r) = u.reasoning_tokens {
        o.insert(
            "completion_tokens_details".into(),
            json!({"reasoning_tokens": r}),
        );
    }
    Value::Object(o)
}

fn tool_calls_from_wire(calls: Option<Vec<WireToolCall>>) -> Vec<ToolCall> {
    calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, c)| ToolCall {
            id: c.id.unwrap_or_else(|| format!("call_{i}")),
            name: c.function.name.unwrap_or_default(),
            arguments: c.function.arguments,
        })
        .collect()
}

/// Decodes an upstream's non-streamed chat response. `<think>` blocks at the
/// start of the content are moved to the reasoning channel.
pub fn decode_chat_response(body: &[u8]) -> Result<ChatResponse, DecodeError> {
    let wire: WireResponse = crate::json::decode_field(
        "response",
        std::str::from_utf8(body).map_err(|_| DecodeError::body("response is not UTF-8"))?,
    )?;
    let choices = wire
        .choices
        .into_iter()
        .map(|c| {
            let mut message = assistant_message(
                c.message.content.or(c.message.refusal).unwrap_or_default(),
                c.message.reasoning_content.or(c.message.reasoning),
            );
            message.tool_calls = tool_calls_from_wire(c.message.tool_calls);
            Choice {
                index: c.index,
                message,
                finish_reason: c.finish_reason.as_deref().map(FinishReason::from_openai),
            }
        })
        .collect();
    Ok(ChatResponse {
        id: wire.id,
        model: wire.model,
        created: wire.created,
        choices,
        usage: wire.usage.as_ref().map(usage_from_wire),
        system_fingerprint: wire.system_fingerprint,
    })
}

/// Encodes a response for an OpenAI client.
pub fn encode_chat_response(resp: &ChatResponse, reasoning: ReasoningOutput) -> Value {
    let choices: Vec<Value> = resp
        .choices
        .iter()
        .map(|c| {
            let mut m = Map::new();
            m.insert("role".into(), json!("assistant"));
            let mut text = c.message.text_content();
            match (&c.message.reasoning, reasoning) {
                (Some(r), ReasoningOutput::Separate) => {
                    m.insert("reasoning_content".into(), json!(r));
                }
                (Some(r), ReasoningOutput::Inline) => {
                    text = format!("<think>{r}</think>\n\n{text}");
                }
                _ => {}
            }
            if text.is_empty() && !c.message.tool_calls.is_empty() {
                m.insert("content".into(), Value::Null);
            } else {
                m.insert("content".into(), Value::String(text));
            }
            if !c.message.tool_calls.is_empty() {
                m.insert(
                    "tool_calls".into(),
                    tool_calls_to_wire(&c.message.tool_calls),
                );
            }
            json!({
                "index": c.index,
                "message": m,
                "logprobs": null,
                "finish_reason": c.finish_reason.as_ref().map(|f| f.as_openai().to_string()),
            })
        })
        .collect();
    let mut o = Map::new();
    o.insert("id".into(), json!(resp.id));
    o.insert("object".into(), json!("chat.completion"));
    o.insert("created".into(), json!(resp.created));
    o.insert("model".into(), json!(resp.model));
    o.insert("choices".into(), Value::Array(choices));
    if let Some(u) = &resp.usage {
        o.insert("usage".into(), usage_to_wire(u));
    }
    if let Some(fp) = &resp.system_fingerprint {
        o.insert("system_fingerprint".into(), json!(fp));
    }
    Value::Object(o)
}

/// An error body in OpenAI's shape.
pub fn error_body(message: &str, kind: &str, code: Option<&str>, param: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// Extracts a human-readable message from an upstream's error body, whatever
/// its shape (`{"error":{"message"}}`, `{"error":"…"}`, `{"message":"…"}`).
pub fn upstream_error_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("error")
        .and_then(error_value_message)
        .or_else(|| error_value_message(&v))
}

/// The message of one error value: the string itself, or an object's
/// `message` (or `msg`).
pub(crate) fn error_value_message(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o
            .get("message")
            .or_else(|| o.get("msg"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// Decodes an embeddings request (validation and translation).
pub fn decode_embedding_request(body: &[u8]) -> Result<EmbeddingRequest, DecodeError> {
    let obj = RawObject::parse(body)?;
    let model = obj.require_model()?;
    let input = match obj.require::<WireEmbeddingInput>("input")? {
        WireEmbeddingInput::One(s) => EmbeddingInput::Text(vec![s]),
        WireEmbeddingInput::Many(v) => EmbeddingInput::Text(v),
        WireEmbeddingInput::Tokens(t) => EmbeddingInput::Tokens(vec![t]),
        WireEmbeddingInput::ManyTokens(t) => EmbeddingInput::Tokens(t),
    };
    let empty = match &input {
        EmbeddingInput::Text(v) => v.is_empty(),
        EmbeddingInput::Tokens(v) => v.is_empty(),
    };
    if empty {
        return Err(DecodeError::new("input", "must not be empty"));
    }
    Ok(EmbeddingRequest {
        model,
        input,
        dimensions: obj.get("dimensions")?,
        encoding_format: obj.get("encoding_format")?,
        user: obj.get("user")?,
        extra: obj.rest(&["model", "input", "dimensions", "encoding_format", "user"]),
    })
}

pub fn encode_embedding_request(req: &EmbeddingRequest) -> Value {
    let mut o = embedding_request_head(req);
    if let Some(u) = &req.user {
        o.insert("user".into(), json!(u));
    }
    Value::Object(o)
}

pub fn decode_embedding_response(body: &[u8]) -> Result<EmbeddingResponse, DecodeError> {
    let mut wire: WireEmbeddingResponse = serde_json::from_slice(body)
        .map_err(|e| DecodeError::body(format!("embedding response: {e}")))?;
    wire.data.sort_by_key(|d| d.index);
    Ok(EmbeddingResponse {
        model: wire.model,
        data: wire.data.into_iter().map(|d| d.embedding).collect(),
        usage: wire.usage.as_ref().map(usage_from_wire).unwrap_or_default(),
    })
}

pub fn encode_embedding_response(resp: &EmbeddingResponse) -> Value {
    json!({
        "object": "list",
        "data": resp.data.iter().enumerate().map(|(i, e)| json!({
            "object": "embedding", "index": i, "embedding": e,
        })).collect::<Vec<_>>(),
        "model": resp.model,
        "usage": {"prompt_tokens": resp.usage.prompt_tokens, "total_tokens": resp.usage.prompt_tokens},
    })
}

/// Validates a legacy `/v1/completions` body; returns the model name.
pub fn validate_completion_request(obj: &RawObject<'_>) -> Result<String, DecodeError> {
    let model = obj.require_model()?;
    let _prompt: WirePrompt = obj.require("prompt")?;
    let _max: Option<u32> = obj.get("max_tokens")?;
    let _stream: Option<bool> = obj.get("stream")?;
    let _t: Option<f64> = obj.get("temperature")?;
    Ok(model)
}

#[cfg(test)]
mod tests;
