//! The Anthropic Messages wire format: decode and encode both ways.
//!
//! Client side (an Anthropic SDK talks to llm-link): [`decode_messages_request`],
//! [`decode_count_tokens_request`], [`encode_messages_response`] and
//! [`stream::StreamEncoder`]. Provider side (llm-link talks to Anthropic):
//! [`encode_messages_request`], [`decode_messages_response`] and
//! [`stream::StreamDecoder`].
//!
//! Mapping choices that lose or reshape information are listed on the
//! functions that make them and collected in [`IGNORED_OPENAI_FIELDS`].

pub mod stream;
pub mod wire;

use crate::ir::*;
use crate::json::{arguments_object, ArgumentsError, DecodeError, RawObject};
use serde_json::{json, Map, Value};
use wire::*;

/// The `anthropic-version` header value llm-link speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Top-level Messages request fields this codec understands; everything else
/// (`thinking`, `service_tier`, `container`, `mcp_servers`, …) is carried in
/// `ChatRequest::extra`, which only a same-format passthrough forwards.
pub const MESSAGES_FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "max_tokens",
    "tools",
    "tool_choice",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "metadata",
    "stream",
];

/// Request fields the internal model carries that [`encode_messages_request`]
/// does not send to Anthropic, because the Messages API has no counterpart
/// and they only tune sampling or presentation. Clients (OpenAI SDKs, editors)
/// send several of them by default, so refusing them would break ordinary
/// requests; they are ignored instead, and listed here so the README can say so.
///
/// Fields that change what the answer *is* are refused with a 400 instead:
/// `n` > 1 and a `response_format` of `json_object` / `json_schema`.
/// Unknown top-level fields of another format (`ChatRequest::extra`, e.g.
/// `logit_bias`, `logprobs`) are never forwarded to Anthropic.
pub const IGNORED_OPENAI_FIELDS: &[&str] = &[
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "messages[].name",
    "messages[].content[].image_url.detail",
    "tools[].function.strict",
    "stream_options",
];

/// Text that marks a tool result as an error once it has left the Anthropic
/// format (OpenAI and Ollama tool messages have no `is_error`).
///
/// Decoding a `tool_result` with `is_error: true` prefixes its text with this
/// (unless it already starts with it); encoding a tool message whose text
/// starts with it sets `is_error: true`. The text itself is kept either way,
/// so decode → encode → decode is stable.
pub const TOOL_ERROR_PREFIX: &str = "Error: ";

/// Decodes a client's `POST /v1/messages` body, validating every field this
/// model knows and naming the first bad one. `max_tokens` is required, as
/// the Messages API requires it.
pub fn decode_messages_request(body: &[u8]) -> Result<ChatRequest, DecodeError> {
    let obj = RawObject::parse(body)?;
    decode_request_object(&obj, true)
}

/// Decodes a client's `POST /v1/messages/count_tokens` body: the same shape
/// as a Messages request, but `max_tokens` is optional.
pub fn decode_count_tokens_request(body: &[u8]) -> Result<ChatRequest, DecodeError> {
    let obj = RawObject::parse(body)?;
    decode_request_object(&obj, false)
}

/// As [`decode_messages_request`] (or [`decode_count_tokens_request`] when
/// `require_max_tokens` is false), for an already parsed top level.
pub fn decode_request_object(
    obj: &RawObject<'_>,
    require_max_tokens: bool,
) -> Result<ChatRequest, DecodeError> {
    let model = obj.require_model()?;
    let max_tokens: Option<u32> = obj.get("max_tokens")?;
    if require_max_tokens && max_tokens.is_none() {
        return Err(DecodeError::new(
            "max_tokens",
            "this field is required: the Messages API needs the most tokens to generate",
        ));
    }
    if max_tokens == Some(0) {
        return Err(DecodeError::new("max_tokens", "must be at least 1"));
    }

    let mut messages = Vec::new();
    if let Some(system) = obj.get::<Value>("system")? {
        let text = system_text("system", system)?;
        if !text.is_empty() {
            messages.push(Message::text(Role::System, text));
        }
    }
    let wire_messages: Vec<WireMessage> = obj.require_messages()?;
    for (i, m) in wire_messages.into_iter().enumerate() {
        message_to_ir(i, m, &mut messages)?;
    }

    let mut tools = Vec::new();
    if let Some(raw_tools) = obj.get::<Vec<Value>>("tools")? {
        for (i, t) in raw_tools.into_iter().enumerate() {
            tools.push(tool_to_ir(i, t)?);
        }
    }

    let mut parallel_tool_calls = None;
    let tool_choice = match obj.get::<WireToolChoice>("tool_choice")? {
        None => None,
        Some(tc) => {
            if tc.disable_parallel_tool_use == Some(true) {
                parallel_tool_calls = Some(false);
            }
            Some(match tc.kind.as_str() {
                "auto" => ToolChoice::Auto,
                "any" => ToolChoice::Required,
                "none" => ToolChoice::None,
                "tool" => match tc.name.filter(|n| !n.is_empty()) {
                    Some(name) => ToolChoice::Function(name),
                    None => {
                        return Err(DecodeError::new(
                            "tool_choice.name",
                            "this field is required when `type` is `tool`",
                        ))
                    }
                },
                other => {
                    return Err(DecodeError::new(
                        "tool_choice.type",
                        format!(
                            "unknown value `{other}`; expected `auto`, `any`, `tool` or `none`"
                        ),
                    ))
                }
            })
        }
    };

    let temperature: Option<f64> = obj.get("temperature")?;
    if let Some(t) = temperature {
        if !(0.0..=1.0).contains(&t) {
            return Err(DecodeError::new("temperature", "must be between 0 and 1"));
        }
    }
    let top_p: Option<f64> = obj.get("top_p")?;
    if let Some(p) = top_p {
        if !(0.0..=1.0).contains(&p) {
            return Err(DecodeError::new("top_p", "must be between 0 and 1"));
        }
    }
    let metadata: Option<WireMetadata> = obj.get("metadata")?;

    Ok(ChatRequest {
        model,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls,
        temperature,
        top_p,
        top_k: obj.get("top_k")?,
        max_tokens,
        max_tokens_field: MaxTokensField::default(),
        stop: obj.get("stop_sequences")?.unwrap_or_default(),
        seed: None,
        presence_penalty: None,
        frequency_penalty: None,
        n: None,
        user: metadata.and_then(|m| m.user_id),
        response_format: None,
        stream: obj.get("stream")?.unwrap_or(false),
        include_usage: false,
        reasoning_output: ReasoningOutput::Separate,
        extra: obj.rest(MESSAGES_FIELDS),
        extra_wire: Some("anthropic"),
    })
}

/// `system` as a string or an array of text blocks, joined with a blank line.
/// The text of a `system` value at `at` (the top-level field, or a
/// `system` message's content): a string or an array of text blocks,
/// joined by blank lines.
fn system_text(at: &str, system: Value) -> Result<String, DecodeError> {
    match system {
        Value::String(s) => Ok(s),
        Value::Array(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (k, b) in blocks.into_iter().enumerate() {
                let path = format!("{at}[{k}]");
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => {}
                    Some(other) => {
                        return Err(DecodeError::new(
                            format!("{path}.type"),
                            format!("`{other}` blocks are not allowed in system text; only `text`"),
                        ))
                    }
                    None => {
                        return Err(DecodeError::new(
                            format!("{path}.type"),
                            "this field is required",
                        ))
                    }
                }
                let block: WireTextBlock = from_value(&path, b)?;
                parts.push(block.text);
            }
            Ok(parts.join("\n\n"))
        }
        _ => Err(DecodeError::new(
            at,
            "must be a string or an array of text blocks",
        )),
    }
}

/// One decoded request content block.
enum InBlock {
    Text(String),
    Image(Image),
    ToolUse(ToolCall),
    ToolResult {
        id: String,
        content: Vec<ContentPart>,
    },
    Thinking(String),
    /// Accepted and left out (`redacted_thinking`: encrypted, no text).
    Skip,
}

fn message_to_ir(i: usize, m: WireMessage, out: &mut Vec<Message>) -> Result<(), DecodeError> {
    let role = match m.role.as_str() {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        // Claude Code sends reminders as `system` messages between turns:
        // kept in place, as a system message of the internal model.
        "system" => {
            let text = system_text(&format!("messages[{i}].content"), m.content)?;
            if !text.is_empty() {
                out.push(Message::text(Role::System, text));
            }
            return Ok(());
        }
        other => {
            return Err(DecodeError::new(
                format!("messages[{i}].role"),
                format!("unknown role `{other}`; expected `user`, `assistant` or `system`"),
            ))
        }
    };
    let blocks = match m.content {
        Value::String(s) => vec![InBlock::Text(s)],
        Value::Array(items) => {
            if items.is_empty() {
                return Err(DecodeError::new(
                    format!("messages[{i}].content"),
                    "must not be empty",
                ));
            }
            let mut blocks = Vec::with_capacity(items.len());
            for (j, b) in items.into_iter().enumerate() {
                blocks.push(decode_block(&format!("messages[{i}].content[{j}]"), b)?);
            }
            blocks
        }
        Value::Null => {
            return Err(DecodeError::new(
                format!("messages[{i}].content"),
                "this field is required",
            ))
        }
        _ => {
            return Err(DecodeError::new(
                format!("messages[{i}].content"),
                "must be a string or an array of content blocks",
            ))
        }
    };

    let misplaced = |j: usize, what: &str, belongs: &str| {
        DecodeError::new(
            format!("messages[{i}].content[{j}].type"),
            format!("`{what}` blocks belong in `{belongs}` messages"),
        )
    };
    match role {
        Role::User => {
            let mut rest = Vec::new();
            let mut had_results = false;
            for (j, b) in blocks.into_iter().enumerate() {
                match b {
                    InBlock::Text(t) => rest.push(ContentPart::Text(t)),
                    InBlock::Image(img) => rest.push(ContentPart::Image(img)),
                    InBlock::ToolResult { id, content } => {
                        let mut msg = Message::new(Role::Tool, content);
                        msg.tool_call_id = Some(id);
                        out.push(msg);
                        had_results = true;
                    }
                    InBlock::ToolUse(_) => return Err(misplaced(j, "tool_use", "assistant")),
                    InBlock::Thinking(_) => return Err(misplaced(j, "thinking", "assistant")),
                    InBlock::Skip => {}
                }
            }
            if !rest.is_empty() || !had_results {
                out.push(Message::new(Role::User, rest));
            }
        }
        _ => {
            let mut msg = Message::new(Role::Assistant, Vec::new());
            let mut reasoning = String::new();
            for (j, b) in blocks.into_iter().enumerate() {
                match b {
                    InBlock::Text(t) => msg.content.push(ContentPart::Text(t)),
                    InBlock::ToolUse(call) => msg.tool_calls.push(call),
                    InBlock::Thinking(t) => reasoning.push_str(&t),
                    InBlock::Image(_) => {
                        return Err(DecodeError::new(
                            format!("messages[{i}].content[{j}].type"),
                            "`image` blocks are only allowed in `user` messages",
                        ))
                    }
                    InBlock::ToolResult { .. } => return Err(misplaced(j, "tool_result", "user")),
                    InBlock::Skip => {}
                }
            }
            if !reasoning.is_empty() {
                msg.reasoning = Some(reasoning);
            }
            out.push(msg);
        }
    }
    Ok(())
}

fn decode_block(path: &str, b: Value) -> Result<InBlock, DecodeError> {
    let kind = match b.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(DecodeError::new(format!("{path}.type"), "must be a string")),
        None => {
            return Err(DecodeError::new(
                format!("{path}.type"),
                "this field is required",
            ))
        }
    };
    Ok(match kind.as_str() {
        "text" => InBlock::Text(from_value::<WireTextBlock>(path, b)?.text),
        "image" => InBlock::Image(decode_image(path, b)?),
        "tool_use" => {
            let t: WireToolUseBlock = from_value(path, b)?;
            if t.name.is_empty() {
                return Err(DecodeError::new(
                    format!("{path}.name"),
                    "must not be empty",
                ));
            }
            InBlock::ToolUse(ToolCall {
                id: t.id,
                name: t.name,
                arguments: match t.input {
                    Value::Null => "{}".to_string(),
                    v => v.to_string(),
                },
            })
        }
        "tool_result" => {
            let t: WireToolResultBlock = from_value(path, b)?;
            let mut content = match t.content {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(s)) => vec![ContentPart::Text(s)],
                Some(Value::Array(items)) => {
                    let mut parts = Vec::with_capacity(items.len());
                    for (k, item) in items.into_iter().enumerate() {
                        let p = format!("{path}.content[{k}]");
                        match decode_block(&p, item)? {
                            InBlock::Text(t) => parts.push(ContentPart::Text(t)),
                            InBlock::Image(img) => parts.push(ContentPart::Image(img)),
                            _ => {
                                return Err(DecodeError::new(
                                    format!("{p}.type"),
                                    "a tool result may only contain `text` and `image` blocks",
                                ))
                            }
                        }
                    }
                    parts
                }
                Some(_) => {
                    return Err(DecodeError::new(
                        format!("{path}.content"),
                        "must be a string or an array of content blocks",
                    ))
                }
            };
            if t.is_error == Some(true) {
                mark_error(&mut content);
            }
            InBlock::ToolResult {
                id: t.tool_use_id,
                content,
            }
        }
        "thinking" => InBlock::Thinking(from_value::<WireThinkingBlock>(path, b)?.thinking),
        "redacted_thinking" => InBlock::Skip,
        "document" => {
            let d: WireDocumentBlock = from_value(path, b)?;
            match d.source.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let s: WireTextSource = from_value(&format!("{path}.source"), d.source)?;
                    InBlock::Text(s.data)
                }
                other => {
                    return Err(DecodeError::new(
                        format!("{path}.source.type"),
                        format!(
                            "document source `{}` cannot be translated for this provider; only plain-text documents (`text`) are supported",
                            other.unwrap_or("?")
                        ),
                    ))
                }
            }
        }
        other => {
            return Err(DecodeError::new(
                format!("{path}.type"),
                format!(
                    "unsupported content block type `{other}`; supported: `text`, `image`, `tool_use`, `tool_result`, `thinking`, `redacted_thinking`, text `document`"
                ),
            ))
        }
    })
}

/// Whether a tool result's text carries the error marker.
fn is_marked_error(content: &[ContentPart]) -> bool {
    match content.first() {
        Some(ContentPart::Text(t)) => t.starts_with(TOOL_ERROR_PREFIX.trim_end()),
        _ => false,
    }
}

/// Prefixes a failed tool result's text with [`TOOL_ERROR_PREFIX`].
fn mark_error(content: &mut Vec<ContentPart>) {
    if is_marked_error(content) {
        return;
    }
    match content.first_mut() {
        Some(ContentPart::Text(t)) => t.insert_str(0, TOOL_ERROR_PREFIX),
        _ => content.insert(
            0,
            ContentPart::Text(TOOL_ERROR_PREFIX.trim_end().to_string()),
        ),
    }
}

fn decode_image(path: &str, b: Value) -> Result<Image, DecodeError> {
    let block: WireImageBlock = from_value(path, b)?;
    let spath = format!("{path}.source");
    let source = match block.source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let s: WireBase64Source = from_value(&spath, block.source)?;
            ImageSource::Base64 {
                media_type: s.media_type,
                data: s.data,
            }
        }
        Some("url") => ImageSource::Url(from_value::<WireUrlSource>(&spath, block.source)?.url),
        Some(other) => {
            return Err(DecodeError::new(
                format!("{spath}.type"),
                format!("image source `{other}` cannot be translated; use `base64` or `url`"),
            ))
        }
        None => {
            return Err(DecodeError::new(
                format!("{spath}.type"),
                "this field is required",
            ))
        }
    };
    Ok(Image {
        source,
        detail: None,
    })
}

fn tool_to_ir(i: usize, t: Value) -> Result<Tool, DecodeError> {
    let path = format!("tools[{i}]");
    match t.get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "custom" => {}
        Some(Value::String(other)) => {
            return Err(DecodeError::new(
                format!("{path}.type"),
                format!(
                    "server tool `{other}` runs inside Anthropic's API and cannot be translated; only custom tools (`name`, `description`, `input_schema`) are supported"
                ),
            ))
        }
        Some(_) => return Err(DecodeError::new(format!("{path}.type"), "must be a string")),
    }
    let w: WireTool = from_value(&path, t)?;
    if w.name.is_empty() {
        return Err(DecodeError::new(
            format!("{path}.name"),
            "must not be empty",
        ));
    }
    if !w.input_schema.is_object() {
        return Err(DecodeError::new(
            format!("{path}.input_schema"),
            "must be a JSON Schema object",
        ));
    }
    Ok(Tool {
        name: w.name,
        description: w.description,
        parameters: w.input_schema,
        strict: None,
    })
}

/// Tokens charged per image by [`estimate_input_tokens`].
pub const ESTIMATE_IMAGE_TOKENS: u64 = 1_600;
/// Tokens charged once when tools are present by [`estimate_input_tokens`].
pub const ESTIMATE_TOOLS_OVERHEAD: u64 = 350;

/// A heuristic count of a request's input tokens, for `count_tokens` when the
/// upstream is not Anthropic (an Anthropic upstream answers exactly).
///
/// The heuristic, which errs on the high side for English and code:
/// - text (system, messages, reasoning, tool-call names and arguments): one
///   token per 4 ASCII characters (rounded up) plus one token per non-ASCII
///   character (CJK text is roughly a token per character);
/// - 4 tokens of framing per message;
/// - [`ESTIMATE_IMAGE_TOKENS`] (1,600) per image, the cost of a full-size
///   image (≈1.15 megapixels at width × height / 750);
/// - when tools are present, [`ESTIMATE_TOOLS_OVERHEAD`] (350) for the
///   tool-use system prompt plus, per tool, the text estimate of its name,
///   description and JSON schema.
pub fn estimate_input_tokens(req: &ChatRequest) -> u64 {
    let mut total = 0u64;
    for m in &req.messages {
        total += 4;
        for part in &m.content {
            total += match part {
                ContentPart::Text(t) => text_tokens(t),
                ContentPart::Image(_) => ESTIMATE_IMAGE_TOKENS,
            };
        }
        if let Some(r) = &m.reasoning {
            total += text_tokens(r);
        }
        for c in &m.tool_calls {
            total += 4 + text_tokens(&c.name) + text_tokens(&c.arguments);
        }
    }
    if !req.tools.is_empty() {
        total += ESTIMATE_TOOLS_OVERHEAD;
        for t in &req.tools {
            total += text_tokens(&t.name)
                + t.description.as_deref().map(text_tokens).unwrap_or(0)
                + text_tokens(&t.parameters.to_string());
        }
    }
    total
}

fn text_tokens(s: &str) -> u64 {
    let (mut ascii, mut other) = (0u64, 0u64);
    for c in s.chars() {
        if c.is_ascii() {
            ascii += 1;
        } else {
            other += 1;
        }
    }
    ascii.div_ceil(4) + other
}

/// Tokens charged per PDF (or other binary) document at least by
/// [`estimate_count_tokens`]; Anthropic documents 1,500–3,000 per page.
pub const ESTIMATE_DOCUMENT_TOKENS: u64 = 1_500;

/// The heuristic of [`estimate_input_tokens`] over a `count_tokens` body as
/// sent, so that every block type counts, including ones llm-link cannot
/// translate or does not know:
/// - `system` text, each message's text, tool-use input, tool-result content
///   (recursively), `thinking` text and the tools' JSON as in
///   [`estimate_input_tokens`];
/// - `image` blocks [`ESTIMATE_IMAGE_TOKENS`] each;
/// - `document` blocks: a text source by its text, a binary source (PDF) at
///   one token per 5 bytes of its decoded data and at least
///   [`ESTIMATE_DOCUMENT_TOKENS`], a URL or file source
///   [`ESTIMATE_DOCUMENT_TOKENS`];
/// - `redacted_thinking` by its opaque data, any other block by its JSON
///   text.
///
/// Only the shape routing needs is checked (`model`, `messages` an array);
/// the rest is counted as it comes, never refused.
pub fn estimate_count_tokens(obj: &RawObject<'_>) -> Result<u64, DecodeError> {
    obj.require_model()?;
    let messages: Vec<Value> = obj.require_messages()?;
    let mut total = 0u64;
    if let Some(system) = obj.get::<Value>("system")? {
        total += 4 + block_value_tokens(&system);
    }
    for m in &messages {
        total += 4;
        if let Some(c) = m.get("content") {
            total += block_value_tokens(c);
        }
    }
    if let Some(tools) = obj.get::<Vec<Value>>("tools")? {
        if !tools.is_empty() {
            total += ESTIMATE_TOOLS_OVERHEAD;
        }
        for t in &tools {
            total += text_tokens(&t.to_string());
        }
    }
    Ok(total)
}

/// Tokens of a content value: a string, a block, or an array of blocks.
fn block_value_tokens(v: &Value) -> u64 {
    match v {
        Value::String(s) => text_tokens(s),
        Value::Array(items) => items.iter().map(block_value_tokens).sum(),
        Value::Object(o) => {
            let str_of = |k: &str| o.get(k).and_then(Value::as_str);
            match str_of("type").unwrap_or("") {
                "text" => str_of("text").map(text_tokens).unwrap_or(0),
                "image" => ESTIMATE_IMAGE_TOKENS,
                "thinking" => str_of("thinking").map(text_tokens).unwrap_or(0),
                "redacted_thinking" => str_of("data").map(text_tokens).unwrap_or(0),
                "tool_use" | "server_tool_use" => {
                    4 + str_of("name").map(text_tokens).unwrap_or(0)
                        + o.get("input")
                            .map(|i| text_tokens(&i.to_string()))
                            .unwrap_or(0)
                }
                "tool_result" => 4 + o.get("content").map(block_value_tokens).unwrap_or(0),
                "document" => document_tokens(o.get("source")),
                _ => text_tokens(&v.to_string()),
            }
        }
        _ => 0,
    }
}

fn document_tokens(source: Option<&Value>) -> u64 {
    let Some(src) = source else {
        return ESTIMATE_DOCUMENT_TOKENS;
    };
    match src.get("type").and_then(Value::as_str) {
        Some("text") => src
            .get("data")
            .and_then(Value::as_str)
            .map(text_tokens)
            .unwrap_or(0),
        Some("content") => src.get("content").map(block_value_tokens).unwrap_or(0),
        Some("base64") => {
            let b64 = src.get("data").and_then(Value::as_str).map_or(0, str::len) as u64;
            (b64 * 3 / 4 / 5).max(ESTIMATE_DOCUMENT_TOKENS)
        }
        _ => ESTIMATE_DOCUMENT_TOKENS,
    }
}

/// The `count_tokens` answer: `{"input_tokens": n}`.
pub fn encode_count_tokens_response(input_tokens: u64) -> Value {
    json!({ "input_tokens": input_tokens })
}

/// Reads an upstream `count_tokens` answer.
pub fn decode_count_tokens_response(body: &[u8]) -> Result<u64, DecodeError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| DecodeError::body(format!("count_tokens response: {e}")))?;
    v.get("input_tokens")
        .and_then(Value::as_u64)
        .ok_or_else(|| DecodeError::new("input_tokens", "missing from count_tokens response"))
}

// ---- provider side: requests ----

/// Rejects what the Messages API cannot express (see [`IGNORED_OPENAI_FIELDS`]
/// for what is ignored instead).
fn check_expressible(req: &ChatRequest) -> Result<(), DecodeError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(DecodeError::new(
            "n",
            "Anthropic returns one answer per request; `n` greater than 1 is not supported by this provider",
        ));
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            return Err(DecodeError::new(
                "response_format",
                "Anthropic has no JSON mode; `json_object` is not supported by this provider",
            ))
        }
        Some(ResponseFormat::JsonSchema { .. }) => {
            return Err(DecodeError::new(
                "response_format",
                "Anthropic has no structured-output mode here; `json_schema` is not supported by this provider",
            ))
        }
    }
    if let Some(t) = req.temperature {
        if !(0.0..=1.0).contains(&t) {
            return Err(DecodeError::new(
                "temperature",
                format!("{t} is out of range: Anthropic accepts 0–1"),
            ));
        }
    }
    Ok(())
}

/// Makes an id acceptable as a `tool_use` id (`[A-Za-z0-9_-]+`): other
/// characters become `_`. Deterministic, so a call and its result still match.
pub fn sanitize_tool_id(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "toolu_".to_string()
    } else {
        s
    }
}

fn image_to_wire(img: &Image) -> Value {
    let source = match &img.source {
        ImageSource::Base64 { media_type, data } => {
            json!({"type": "base64", "media_type": media_type, "data": data})
        }
        ImageSource::Url(url) => json!({"type": "url", "url": url}),
    };
    json!({"type": "image", "source": source})
}

fn parse_arguments(i: usize, j: usize, args: &str) -> Result<Value, DecodeError> {
    arguments_object(args).map(Value::Object).map_err(|e| {
        let field = format!("messages[{i}].tool_calls[{j}].function.arguments");
        match e {
            ArgumentsError::NotAnObject => DecodeError::new(
                field,
                "must be a JSON object (Anthropic tool inputs are objects)",
            ),
            ArgumentsError::Invalid(e) => {
                DecodeError::new(field, format!("is not valid JSON: {e}"))
            }
        }
    })
}

/// Converts the messages: system text apart, the rest as alternating
/// user/assistant messages of content blocks.
fn encode_messages(messages: &[Message]) -> Result<(Vec<String>, Vec<Value>), DecodeError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let mut blocks = Vec::new();
        let role = match m.role {
            Role::System => {
                if m.has_images() {
                    return Err(DecodeError::new(
                        format!("messages[{i}].content"),
                        "images are not allowed in system messages",
                    ));
                }
                let t = m.text_content();
                if !t.is_empty() {
                    system.push(t);
                }
                continue;
            }
            Role::User => {
                for p in &m.content {
                    match p {
                        ContentPart::Text(t) if t.is_empty() => {}
                        ContentPart::Text(t) => blocks.push(json!({"type": "text", "text": t})),
                        ContentPart::Image(img) => blocks.push(image_to_wire(img)),
                    }
                }
                "user"
            }
            Role::Assistant => {
                if m.has_images() {
                    return Err(DecodeError::new(
                        format!("messages[{i}].content"),
                        "images are only allowed in user and tool messages",
                    ));
                }
                let t = m.text_content();
                if !t.is_empty() {
                    blocks.push(json!({"type": "text", "text": t}));
                }
                for (j, c) in m.tool_calls.iter().enumerate() {
                    blocks.push(json!({
                        "type": "tool_use",
                        "id": sanitize_tool_id(&c.id),
                        "name": c.name,
                        "input": parse_arguments(i, j, &c.arguments)?,
                    }));
                }
                "assistant"
            }
            Role::Tool => {
                let Some(id) = m.tool_call_id.as_deref() else {
                    return Err(DecodeError::new(
                        format!("messages[{i}].tool_call_id"),
                        "Anthropic needs to know which tool call a result answers",
                    ));
                };
                let mut block = Map::new();
                block.insert("type".into(), json!("tool_result"));
                block.insert("tool_use_id".into(), json!(sanitize_tool_id(id)));
                if m.has_images() {
                    let parts: Vec<Value> = m
                        .content
                        .iter()
                        .filter_map(|p| match p {
                            ContentPart::Text(t) if t.is_empty() => None,
                            ContentPart::Text(t) => Some(json!({"type": "text", "text": t})),
                            ContentPart::Image(img) => Some(image_to_wire(img)),
                        })
                        .collect();
                    block.insert("content".into(), Value::Array(parts));
                } else {
                    let t = m.text_content();
                    if !t.is_empty() {
                        block.insert("content".into(), Value::String(t));
                    }
                }
                if is_marked_error(&m.content) {
                    block.insert("is_error".into(), json!(true));
                }
                blocks.push(Value::Object(block));
                "user"
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((r, b)) if *r == role => b.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let out = turns
        .into_iter()
        .map(|(role, mut blocks)| {
            if role == "user" {
                // Tool results must open the user turn that carries them.
                let (mut results, rest): (Vec<Value>, Vec<Value>) = blocks
                    .into_iter()
                    .partition(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"));
                results.extend(rest);
                blocks = results;
            }
            json!({"role": role, "content": blocks})
        })
        .collect();
    Ok((system, out))
}

fn tools_to_wire(req: &ChatRequest, o: &mut Map<String, Value>) {
    if req.tools.is_empty() {
        // Anthropic refuses `tool_choice` without tools; OpenAI clients
        // sometimes send one anyway.
        return;
    }
    let tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| {
            let mut w = Map::new();
            w.insert("name".into(), json!(t.name));
            if let Some(d) = &t.description {
                w.insert("description".into(), json!(d));
            }
            w.insert("input_schema".into(), t.parameters.clone());
            Value::Object(w)
        })
        .collect();
    o.insert("tools".into(), Value::Array(tools));
    let no_parallel = req.parallel_tool_calls == Some(false);
    let mut choice = match &req.tool_choice {
        None if no_parallel => json!({"type": "auto"}),
        None => return,
        Some(ToolChoice::Auto) => json!({"type": "auto"}),
        Some(ToolChoice::Required) => json!({"type": "any"}),
        Some(ToolChoice::Function(name)) => json!({"type": "tool", "name": name}),
        Some(ToolChoice::None) => {
            o.insert("tool_choice".into(), json!({"type": "none"}));
            return;
        }
    };
    if no_parallel {
        if let Some(c) = choice.as_object_mut() {
            c.insert("disable_parallel_tool_use".into(), json!(true));
        }
    }
    o.insert("tool_choice".into(), choice);
}

/// Encodes a request for the Anthropic Messages API (`POST /v1/messages`).
///
/// - every `System` message goes to the top-level `system` string (joined
///   with a blank line, wherever it stood);
/// - consecutive messages of the same Anthropic role are merged, so the
///   conversation alternates: tool results become `tool_result` blocks of a
///   `user` message, consecutive results share one message, and user content
///   that follows them joins that message after them;
/// - assistant `tool_calls` become `tool_use` blocks whose `input` is the
///   parsed `arguments` (empty → `{}`; invalid JSON → an error naming
///   `messages[i].tool_calls[j].function.arguments`); tool ids are made
///   Anthropic-safe with [`sanitize_tool_id`];
/// - assistant reasoning is not sent back (Anthropic only accepts thinking
///   blocks it signed); empty text parts and messages left empty are skipped;
/// - `max_tokens` is the request's or `default_max_tokens`;
/// - `n` > 1, JSON response formats and a temperature above 1 are refused;
///   [`IGNORED_OPENAI_FIELDS`] are ignored; `extra` is not forwarded.
pub fn encode_messages_request(
    req: &ChatRequest,
    default_max_tokens: u32,
) -> Result<Value, DecodeError> {
    check_expressible(req)?;
    let mut o = Map::new();
    o.insert("model".into(), json!(req.model));
    let (system, messages) = encode_messages(&req.messages)?;
    if messages.is_empty() {
        return Err(DecodeError::new(
            "messages",
            "nothing to send: Anthropic needs at least one non-empty user or assistant message",
        ));
    }
    if !system.is_empty() {
        o.insert("system".into(), json!(system.join("\n\n")));
    }
    o.insert("messages".into(), Value::Array(messages));
    o.insert(
        "max_tokens".into(),
        json!(req.max_tokens.unwrap_or(default_max_tokens)),
    );
    tools_to_wire(req, &mut o);
    if !req.stop.is_empty() {
        o.insert("stop_sequences".into(), json!(req.stop));
    }
    if let Some(t) = req.temperature {
        o.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        o.insert("top_p".into(), json!(p));
    }
    if let Some(k) = req.top_k {
        o.insert("top_k".into(), json!(k));
    }
    if let Some(u) = &req.user {
        o.insert("metadata".into(), json!({"user_id": u}));
    }
    if req.stream {
        o.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(o))
}

/// Encodes a `POST /v1/messages/count_tokens` body: model, system, messages,
/// tools and tool choice only (the endpoint refuses generation settings).
pub fn encode_count_tokens_request(req: &ChatRequest) -> Result<Value, DecodeError> {
    let mut v = encode_messages_request(req, 1)?;
    if let Some(o) = v.as_object_mut() {
        o.retain(|k, _| {
            matches!(
                k.as_str(),
                "model" | "system" | "messages" | "tools" | "tool_choice"
            )
        });
    }
    Ok(v)
}

// ---- responses ----

/// Maps an Anthropic `stop_reason` into the model: `end_turn`,
/// `stop_sequence` and `pause_turn` → `Stop`; `max_tokens` and
/// `model_context_window_exceeded` → `Length`; `tool_use` → `ToolCalls`;
/// `refusal` → `ContentFilter`; anything else is kept as `Other`.
pub fn finish_reason_from_stop_reason(s: &str) -> FinishReason {
    match s {
        "end_turn" | "stop_sequence" | "pause_turn" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_string()),
    }
}

/// Maps a finish reason to Anthropic's `stop_reason`: `Stop` → `end_turn`,
/// `Length` → `max_tokens`, `ToolCalls` → `tool_use`, `ContentFilter` →
/// `refusal`, `Other` → `end_turn`. When the answer carries tool calls, a
/// `Stop` (or missing) reason becomes `tool_use`: some OpenAI-compatible
/// hosts say `stop` after tool calls, and Anthropic clients only run tools
/// on `tool_use`.
pub fn stop_reason_for(reason: Option<&FinishReason>, has_tool_calls: bool) -> &'static str {
    match reason {
        Some(FinishReason::Length) => "max_tokens",
        Some(FinishReason::ContentFilter) => "refusal",
        Some(FinishReason::ToolCalls) => "tool_use",
        _ if has_tool_calls => "tool_use",
        _ => "end_turn",
    }
}

/// Anthropic usage → model usage: `prompt_tokens` = `input_tokens` +
/// `cache_read_input_tokens` + `cache_creation_input_tokens` (Anthropic's
/// `input_tokens` excludes both), `cached_tokens` = `cache_read_input_tokens`.
pub(crate) fn usage_from_wire(u: &WireUsage) -> Usage {
    Usage {
        // Saturating: the counts are whatever numbers the upstream sent.
        prompt_tokens: u
            .input_tokens
            .unwrap_or(0)
            .saturating_add(u.cache_read_input_tokens.unwrap_or(0))
            .saturating_add(u.cache_creation_input_tokens.unwrap_or(0)),
        completion_tokens: u.output_tokens.unwrap_or(0),
        cached_tokens: u.cache_read_input_tokens,
        reasoning_tokens: None,
    }
}

/// Model usage → Anthropic usage fields: `input_tokens` = prompt − cached,
/// `cache_read_input_tokens` = cached (when known), `output_tokens`.
pub(crate) fn usage_to_wire(u: &Usage, o: &mut Map<String, Value>) {
    let cached = u.cached_tokens.unwrap_or(0);
    o.insert(
        "input_tokens".into(),
        json!(u.prompt_tokens.saturating_sub(cached)),
    );
    if let Some(c) = u.cached_tokens {
        o.insert("cache_read_input_tokens".into(), json!(c));
    }
    o.insert("output_tokens".into(), json!(u.completion_tokens));
}

/// Decodes an upstream's non-streamed Messages response: text blocks → text
/// parts, `tool_use` → tool calls (arguments = `input` as JSON text),
/// `thinking` → reasoning; `redacted_thinking` and server-tool blocks are
/// left out. `created` is 0 (Anthropic sends no timestamp; the caller stamps
/// it).
pub fn decode_messages_response(body: &[u8]) -> Result<ChatResponse, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|_| DecodeError::body("response is not UTF-8"))?;
    let wire: WireResponse = crate::json::decode_field("response", text)?;
    if wire.kind.as_deref() == Some("error") {
        let e = wire.error.unwrap_or_default();
        return Err(DecodeError::body(format!(
            "upstream returned an error ({}): {}",
            e.kind, e.message
        )));
    }
    let mut message = Message::new(Role::Assistant, Vec::new());
    let mut reasoning = String::new();
    for block in wire.content {
        match block {
            WireResponseBlock::Text { text } => {
                if !text.is_empty() {
                    message.content.push(ContentPart::Text(text));
                }
            }
            WireResponseBlock::ToolUse { id, name, input } => message.tool_calls.push(ToolCall {
                id,
                name,
                arguments: match input {
                    Value::Null => "{}".to_string(),
                    v => v.to_string(),
                },
            }),
            WireResponseBlock::Thinking { thinking } => reasoning.push_str(&thinking),
            WireResponseBlock::Other => {}
        }
    }
    if !reasoning.is_empty() {
        message.reasoning = Some(reasoning);
    }
    Ok(ChatResponse {
        id: wire.id,
        model: wire.model,
        created: 0,
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: wire
                .stop_reason
                .as_deref()
                .map(finish_reason_from_stop_reason),
        }],
        usage: wire.usage.as_ref().map(usage_from_wire),
        system_fingerprint: None,
    })
}

/// The message id shown to an Anthropic client: `id` when it already starts
/// with `msg_`, else `msg_` + `id` (upstream ids such as `chatcmpl-…`).
pub fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_string()
    } else {
        format!("msg_{id}")
    }
}

/// A tool call's `arguments` as an Anthropic `input` object. Empty → `{}`;
/// text that is not a JSON object is kept, not dropped, as
/// `{"_raw": "<text>"}` so the client can see what the model produced.
pub fn tool_input(arguments: &str) -> Value {
    arguments_object(arguments)
        .map(Value::Object)
        .unwrap_or_else(|_| json!({ "_raw": arguments }))
}

/// Encodes a response for an Anthropic client: the first choice as
/// `{id, type, role, model, content, stop_reason, stop_sequence, usage}`.
/// Content is `[thinking?, text?, tool_use…]`; reasoning becomes a `thinking`
/// block with an empty `signature` (`Separate`), a `<think>…</think>` prefix
/// of the text (`Inline`), or nothing (`Drop`). `stop_sequence` is always
/// null (the model does not keep which sequence matched). See
/// [`stop_reason_for`] and [`tool_input`].
pub fn encode_messages_response(
    resp: &ChatResponse,
    model: &str,
    reasoning: ReasoningOutput,
) -> Value {
    let choice = resp.choices.first();
    let mut content = Vec::new();
    let mut has_tools = false;
    if let Some(c) = choice {
        let m = &c.message;
        let mut text = m.text_content();
        match (m.reasoning.as_deref(), reasoning) {
            (Some(r), ReasoningOutput::Separate) if !r.is_empty() => {
                content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
            }
            (Some(r), ReasoningOutput::Inline) if !r.is_empty() => {
                text = format!("<think>{r}</think>\n\n{text}");
            }
            _ => {}
        }
        if !text.is_empty() {
            content.push(json!({"type": "text", "text": text}));
        }
        for tc in &m.tool_calls {
            has_tools = true;
            content.push(json!({
                "type": "tool_use",
                "id": tc.id,
                "name": tc.name,
                "input": tool_input(&tc.arguments),
            }));
        }
    }
    let mut usage = Map::new();
    usage_to_wire(&resp.usage.unwrap_or_default(), &mut usage);
    json!({
        "id": message_id(&resp.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason_for(choice.and_then(|c| c.finish_reason.as_ref()), has_tools),
        "stop_sequence": null,
        "usage": usage,
    })
}

// ---- errors ----

/// Every error `type` Anthropic documents.
pub const ERROR_TYPES: &[&str] = &[
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "timeout_error",
    "overloaded_error",
];

/// An error body in Anthropic's shape: `{"type":"error","error":{"type","message"}}`.
pub fn error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// Anthropic's error `type` for an HTTP status: 400 `invalid_request_error`,
/// 401 `authentication_error`, 402 `billing_error`, 403 `permission_error`,
/// 404 `not_found_error`, 413 `request_too_large`, 429 `rate_limit_error`,
/// 503 and 529 `overloaded_error`, 504 `timeout_error`, other 5xx
/// `api_error`, other 4xx `invalid_request_error`.
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// Extracts a human-readable message from an upstream's error body: the
/// Anthropic shape `{"type":"error","error":{"message"}}` and the other
/// common shapes (`{"error":"…"}`, `{"message":"…"}`).
pub fn upstream_error_message(body: &[u8]) -> Option<String> {
    crate::openai::upstream_error_message(body)
}

/// The `error.type` of an Anthropic error body, when there is one.
pub fn upstream_error_type(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("error")?.get("type")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests;
