//! The Ollama wire format (`/api/chat`, `/api/generate`, `/api/embed`,
//! `/api/embeddings`, `/api/tags`): decode and encode both ways.
//!
//! Client side: [`decode_chat_request`], [`decode_generate_request`],
//! [`encode_chat_response`] / [`encode_generate_response`] and
//! [`stream::ChatStreamEncoder`]. Provider side: [`encode_chat_request`],
//! [`decode_chat_response`] and [`stream::NdjsonDecoder`].
//!
//! Ollama differs from OpenAI in ways that shape this codec:
//! - `stream` defaults to `true`; streams are NDJSON (one JSON object per
//!   line), the last one with `done: true`, `done_reason` and metrics;
//! - tool calls carry no ids and their `arguments` are JSON objects, not
//!   JSON text; a tool result names the function (`tool_name`), not the call;
//! - images are bare base64 strings in a message's `images`;
//! - sampling settings live in `options` (`num_predict` is the output limit);
//! - timestamps are RFC 3339 strings and durations are nanoseconds.
//!
//! This crate has no clock: callers pass timestamps and durations in.

pub mod stream;
pub mod wire;

use crate::ir::*;
use crate::json::{arguments_object, decode_field, ArgumentsError, DecodeError, RawObject};
use crate::think::assistant_message;
use crate::wire::{embedding_request_head, tools_to_ir};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use wire::*;

// ---------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------

/// Formats unix time in nanoseconds as RFC 3339 in UTC, the way Go (and so
/// Ollama) does: fractional seconds only when non-zero, trailing zeros
/// trimmed (`2024-07-22T20:33:28.123456789Z`, `1970-01-01T00:00:00Z`).
pub fn rfc3339_from_unix_nanos(nanos: u128) -> String {
    let secs = nanos / 1_000_000_000;
    let frac = (nanos % 1_000_000_000) as u32;
    // Far beyond year 9999 the output is meaningless anyway; keep the
    // arithmetic below clear of overflow.
    let days = i64::try_from(secs / 86_400)
        .unwrap_or(i64::MAX)
        .min(1_000_000_000_000);
    let sod = (secs % 86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
    if frac > 0 {
        let digits = format!("{frac:09}");
        s.push('.');
        s.push_str(digits.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Parses an RFC 3339 timestamp (`Z` or `±HH:MM` offset, optional
/// fraction) into unix seconds; `None` when it is not one or is before 1970.
pub fn unix_secs_from_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let part = s.get(from..to)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let sep_ok = b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !sep_ok {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (h, mi, se) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(r) = rest.strip_prefix('.') {
        let n = r.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &r[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || rb[3] != b':' {
                return None;
            }
            let sign = match rb[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset;
    u64::try_from(secs).ok()
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400; // [0, 399]
    let mp = i64::from((m + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// ---------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------

/// Decodes up to `max` bytes from the start of base64 text (standard or
/// URL-safe alphabet, whitespace skipped); stops at padding or junk.
fn base64_prefix(b64: &str, max: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(max);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in b64.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => break,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
            if out.len() >= max {
                break;
            }
        }
    }
    out
}

/// The media type of base64-encoded image bytes, from their magic number:
/// PNG, JPEG, GIF or WebP; `image/png` when unknown.
pub fn sniff_image_media_type(b64: &str) -> &'static str {
    let head = base64_prefix(b64, 12);
    if head.starts_with(&[0x89, b'P', b'N', b'G']) {
        "image/png"
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        "image/gif"
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        "image/webp"
    } else {
        "image/png"
    }
}

/// One entry of a message's `images`. The real API takes bare base64; a
/// `data:` URI or an `http(s)` URL is accepted too, as a convenience.
fn image_from_wire(s: &str) -> ContentPart {
    let source = if s.starts_with("data:") || s.starts_with("http://") || s.starts_with("https://")
    {
        ImageSource::from_url(s)
    } else {
        ImageSource::Base64 {
            media_type: sniff_image_media_type(s).to_string(),
            data: s.to_string(),
        }
    };
    ContentPart::Image(Image {
        source,
        detail: None,
    })
}

// ---------------------------------------------------------------------------
// Requests, client side
// ---------------------------------------------------------------------------

/// Top-level `/api/chat` fields mapped into the model. Everything else
/// (`options`, `keep_alive`, `think` and unknown fields) is also kept in
/// `ChatRequest::extra`, so an Ollama upstream gets them back verbatim.
pub const CHAT_FIELDS: &[&str] = &["model", "messages", "tools", "stream", "format"];

/// Top-level `/api/generate` fields mapped into the model; the rest
/// (`options`, `keep_alive`, `think`, `raw`, `suffix`, `template`,
/// `context`, …) is kept in `ChatRequest::extra`.
pub const GENERATE_FIELDS: &[&str] = &["model", "prompt", "system", "images", "stream", "format"];

/// `options` keys that map to fields of [`ChatRequest`]; the model's value
/// wins over `extra.options` when encoding for an Ollama upstream.
const SAMPLING_OPTIONS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "num_predict",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
];

/// The sampling settings found in `options`.
#[derive(Debug, Default)]
struct Sampling {
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u32>,
    max_tokens: Option<u32>,
    stop: Vec<String>,
    seed: Option<i64>,
    presence_penalty: Option<f64>,
    frequency_penalty: Option<f64>,
}

fn option_number(opts: &Map<String, Value>, key: &str) -> Result<Option<f64>, DecodeError> {
    match opts.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(DecodeError::new(
            format!("options.{key}"),
            "must be a number",
        )),
    }
}

fn option_integer(opts: &Map<String, Value>, key: &str) -> Result<Option<i64>, DecodeError> {
    let bad = || DecodeError::new(format!("options.{key}"), "must be an integer");
    match opts.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            // Ollama's own decoder reads every number as a float; accept
            // integral floats such as `40.0`.
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
                _ => Err(bad()),
            }
        }
        Some(_) => Err(bad()),
    }
}

fn decode_sampling(obj: &RawObject<'_>) -> Result<Sampling, DecodeError> {
    let Some(opts) = obj.get::<Map<String, Value>>("options")? else {
        return Ok(Sampling::default());
    };
    let temperature = option_number(&opts, "temperature")?;
    if temperature.is_some_and(|t| t < 0.0) {
        return Err(DecodeError::new(
            "options.temperature",
            "must not be negative",
        ));
    }
    let top_p = option_number(&opts, "top_p")?;
    if top_p.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
        return Err(DecodeError::new("options.top_p", "must be between 0 and 1"));
    }
    let top_k = match option_integer(&opts, "top_k")? {
        None => None,
        Some(k) => Some(
            u32::try_from(k)
                .map_err(|_| DecodeError::new("options.top_k", "must be a non-negative integer"))?,
        ),
    };
    let max_tokens = match option_integer(&opts, "num_predict")? {
        None | Some(-1) | Some(-2) => None,
        Some(n) => Some(u32::try_from(n).map_err(|_| {
            DecodeError::new(
                "options.num_predict",
                "must be a token count, -1 (no limit) or -2 (fill the context)",
            )
        })?),
    };
    let stop = match opts.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    DecodeError::new(format!("options.stop[{i}]"), "must be a string")
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(DecodeError::new(
                "options.stop",
                "must be an array of strings",
            ))
        }
    };
    Ok(Sampling {
        temperature,
        top_p,
        top_k,
        max_tokens,
        stop,
        seed: option_integer(&opts, "seed")?,
        presence_penalty: option_number(&opts, "presence_penalty")?,
        frequency_penalty: option_number(&opts, "frequency_penalty")?,
    })
}

/// `format`: `"json"`, a JSON schema object, or absent/empty.
fn decode_format(obj: &RawObject<'_>) -> Result<Option<ResponseFormat>, DecodeError> {
    match obj.get::<Value>("format")? {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(ResponseFormat::JsonObject)),
        Some(Value::Object(schema)) => Ok(Some(ResponseFormat::JsonSchema {
            name: "response".to_string(),
            schema: Value::Object(schema),
            strict: None,
            description: None,
        })),
        Some(_) => Err(DecodeError::new(
            "format",
            "must be \"json\" or a JSON schema object",
        )),
    }
}

/// `think`: `true` or an effort level asks for reasoning (kept separate);
/// `false` turns it off.
fn decode_think(obj: &RawObject<'_>) -> Result<ReasoningOutput, DecodeError> {
    match obj.get::<Value>("think")? {
        None | Some(Value::Bool(true)) => Ok(ReasoningOutput::Separate),
        Some(Value::Bool(false)) => Ok(ReasoningOutput::Drop),
        Some(Value::String(s)) if matches!(s.as_str(), "low" | "medium" | "high") => {
            Ok(ReasoningOutput::Separate)
        }
        Some(_) => Err(DecodeError::new(
            "think",
            "must be true, false, \"low\", \"medium\" or \"high\"",
        )),
    }
}

fn decode_tools(obj: &RawObject<'_>) -> Result<Vec<Tool>, DecodeError> {
    match obj.get::<Vec<WireTool>>("tools")? {
        Some(wire_tools) => tools_to_ir(wire_tools),
        None => Ok(Vec::new()),
    }
}

/// Fields kept for forwarding, without JSON nulls.
fn extra_fields(obj: &RawObject<'_>, known: &[&str]) -> Map<String, Value> {
    let mut extra = obj.rest(known);
    extra.retain(|_, v| !v.is_null());
    extra
}

/// Turns Ollama messages into the model, giving every tool call an id
/// (`call_<message index>_<call index>` unless the client sent one) and
/// every tool result the id of the call it answers.
fn messages_to_ir(wire: Vec<WireMessage>) -> Result<Vec<Message>, DecodeError> {
    let mut out = Vec::with_capacity(wire.len());
    // Calls of the latest assistant turn that made any: (id, name, answered).
    let mut open: Vec<(String, String, bool)> = Vec::new();
    // Every call seen so far, oldest first.
    let mut history: Vec<(String, String)> = Vec::new();
    for (i, m) in wire.into_iter().enumerate() {
        let role = match m.role {
            WireRole::System => Role::System,
            WireRole::User => Role::User,
            WireRole::Assistant => Role::Assistant,
            WireRole::Tool => Role::Tool,
        };
        let mut content = Vec::new();
        for (k, img) in m.images.unwrap_or_default().iter().enumerate() {
            if img.trim().is_empty() {
                return Err(DecodeError::new(
                    format!("messages[{i}].images[{k}]"),
                    "must be base64-encoded image data",
                ));
            }
            content.push(image_from_wire(img.trim()));
        }
        let mut tool_calls = Vec::new();
        if role == Role::Assistant {
            for (j, tc) in m.tool_calls.unwrap_or_default().into_iter().enumerate() {
                let field = format!("messages[{i}].tool_calls[{j}].function");
                if tc.function.name.is_empty() {
                    return Err(DecodeError::new(
                        format!("{field}.name"),
                        "this field is required",
                    ));
                }
                let arguments = match tc.function.arguments {
                    Value::Null => "{}".to_string(),
                    Value::Object(o) => Value::Object(o).to_string(),
                    // Some clients send OpenAI-style JSON text.
                    Value::String(s) if serde_json::from_str::<Map<String, Value>>(&s).is_ok() => s,
                    _ => {
                        return Err(DecodeError::new(
                            format!("{field}.arguments"),
                            "must be a JSON object",
                        ))
                    }
                };
                tool_calls.push(ToolCall {
                    id: tc
                        .id
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| format!("call_{i}_{j}")),
                    name: tc.function.name,
                    arguments,
                });
            }
        } else if m.tool_calls.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(DecodeError::new(
                format!("messages[{i}].tool_calls"),
                "only `assistant` messages can carry tool calls",
            ));
        }
        let text = m.content.unwrap_or_default();
        if !text.is_empty() || (content.is_empty() && tool_calls.is_empty()) {
            content.push(ContentPart::Text(text));
        }
        let mut message = Message::new(role, content);
        message.reasoning = m.thinking.filter(|t| !t.is_empty());
        if !tool_calls.is_empty() {
            open = tool_calls
                .iter()
                .map(|c| (c.id.clone(), c.name.clone(), false))
                .collect();
            history.extend(tool_calls.iter().map(|c| (c.id.clone(), c.name.clone())));
            message.tool_calls = tool_calls;
        }
        if role == Role::Tool {
            let tool_name = m.tool_name.filter(|n| !n.is_empty());
            let id = match (m.tool_call_id.filter(|s| !s.is_empty()), &tool_name) {
                (Some(id), _) => {
                    if let Some(slot) = open.iter_mut().find(|c| c.0 == id) {
                        slot.2 = true;
                    }
                    Some(id)
                }
                (None, Some(name)) => {
                    if let Some(slot) = open.iter_mut().find(|c| !c.2 && &c.1 == name) {
                        slot.2 = true;
                        Some(slot.0.clone())
                    } else {
                        history
                            .iter()
                            .rev()
                            .find(|c| &c.1 == name)
                            .map(|c| c.0.clone())
                    }
                }
                (None, None) => open.iter_mut().find(|c| !c.2).map(|slot| {
                    slot.2 = true;
                    slot.0.clone()
                }),
            };
            match id {
                Some(id) => message.tool_call_id = Some(id),
                None => {
                    // A result no call asked for: keep it, under an id of its
                    // own and with the function name, rather than drop it.
                    message.tool_call_id = Some(format!("call_{i}"));
                    message.name = tool_name;
                }
            }
        }
        out.push(message);
    }
    Ok(out)
}

/// Decodes a client's `/api/chat` body, naming the first bad field.
///
/// An empty `messages` array (Ollama's way to preload a model) is refused
/// here; a server that wants to honour it checks for it first.
pub fn decode_chat_request(body: &[u8]) -> Result<ChatRequest, DecodeError> {
    let obj = RawObject::parse(body)?;
    let model = obj.require_model()?;
    let wire_messages: Vec<WireMessage> = obj.require_messages()?;
    let messages = messages_to_ir(wire_messages)?;
    let tools = decode_tools(&obj)?;
    build_request(&obj, model, messages, tools, CHAT_FIELDS)
}

/// Decodes a client's `/api/generate` body into a chat: `system` becomes a
/// system message, `prompt` (with `images`) a user message. `raw`,
/// `suffix`, `template` and `context` have no equivalent and are only kept
/// in `extra`.
pub fn decode_generate_request(body: &[u8]) -> Result<ChatRequest, DecodeError> {
    let obj = RawObject::parse(body)?;
    let model = obj.require_model()?;
    let prompt: String = obj.get("prompt")?.unwrap_or_default();
    let images: Vec<String> = obj.get("images")?.unwrap_or_default();
    if prompt.is_empty() && images.is_empty() {
        return Err(DecodeError::new(
            "prompt",
            "must not be empty (an empty prompt only loads the model)",
        ));
    }
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = obj.get::<String>("system")?.filter(|s| !s.is_empty()) {
        messages.push(Message::text(Role::System, system));
    }
    let mut content = Vec::with_capacity(images.len() + 1);
    for (k, img) in images.iter().enumerate() {
        if img.trim().is_empty() {
            return Err(DecodeError::new(
                format!("images[{k}]"),
                "must be base64-encoded image data",
            ));
        }
        content.push(image_from_wire(img.trim()));
    }
    if !prompt.is_empty() {
        content.push(ContentPart::Text(prompt));
    }
    messages.push(Message::new(Role::User, content));
    build_request(&obj, model, messages, Vec::new(), GENERATE_FIELDS)
}

fn build_request(
    obj: &RawObject<'_>,
    model: String,
    messages: Vec<Message>,
    tools: Vec<Tool>,
    known: &[&str],
) -> Result<ChatRequest, DecodeError> {
    let response_format = decode_format(obj)?;
    let sampling = decode_sampling(obj)?;
    let reasoning_output = decode_think(obj)?;
    // Validate the shape of what is only forwarded.
    if let Some(v) = obj.get::<Value>("keep_alive")? {
        if !(v.is_string() || v.is_number()) {
            return Err(DecodeError::new(
                "keep_alive",
                "must be a duration such as \"5m\" or a number of seconds",
            ));
        }
    }
    let stream = obj.get::<bool>("stream")?.unwrap_or(true);
    Ok(ChatRequest {
        model,
        messages,
        tools,
        tool_choice: None,
        parallel_tool_calls: None,
        temperature: sampling.temperature,
        top_p: sampling.top_p,
        top_k: sampling.top_k,
        max_tokens: sampling.max_tokens,
        max_tokens_field: MaxTokensField::MaxTokens,
        stop: sampling.stop,
        seed: sampling.seed,
        presence_penalty: sampling.presence_penalty,
        frequency_penalty: sampling.frequency_penalty,
        n: None,
        user: None,
        response_format,
        stream,
        // Ollama's last stream line always carries the token counts.
        include_usage: stream,
        reasoning_output,
        extra: extra_fields(obj, known),
        extra_wire: Some("ollama"),
    })
}

// ---------------------------------------------------------------------------
// Requests, provider side
// ---------------------------------------------------------------------------

/// Tool-call arguments for an Ollama client: the parsed JSON value when
/// the text is valid JSON (`{}` when empty), otherwise the text itself as
/// a JSON string so nothing is lost.
pub(crate) fn arguments_value(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Object(Map::new());
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn tool_calls_to_wire(calls: &[ToolCall]) -> Value {
    Value::Array(
        calls
            .iter()
            .map(|c| json!({"function": {"name": c.name, "arguments": arguments_value(&c.arguments)}}))
            .collect(),
    )
}

/// Encodes a request for an Ollama upstream's `/api/chat`.
///
/// Fails (naming the field) on what Ollama cannot express: `n > 1`, a
/// forced tool choice, images given by URL, tool-call arguments that are
/// not a JSON object.
pub fn encode_chat_request(req: &ChatRequest) -> Result<Value, DecodeError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(DecodeError::new(
            "n",
            "Ollama returns a single choice; `n` must be 1",
        ));
    }
    let offer_tools = match &req.tool_choice {
        None | Some(ToolChoice::Auto) => true,
        Some(ToolChoice::None) => false,
        Some(ToolChoice::Required) | Some(ToolChoice::Function(_)) => {
            return Err(DecodeError::new(
                "tool_choice",
                "Ollama cannot force a tool call; use `auto` or `none`",
            ))
        }
    };
    let mut names_by_id: HashMap<&str, &str> = HashMap::new();
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.iter().enumerate() {
        let mut mo = Map::new();
        mo.insert("role".into(), json!(m.role.as_str()));
        mo.insert("content".into(), json!(m.text_content()));
        let mut images = Vec::new();
        for part in &m.content {
            if let ContentPart::Image(img) = part {
                match &img.source {
                    ImageSource::Base64 { data, .. } => images.push(json!(data)),
                    ImageSource::Url(_) => {
                        return Err(DecodeError::new(
                            format!("messages[{i}].content"),
                            "Ollama needs inline (base64) images; an image given by URL cannot be sent to it",
                        ))
                    }
                }
            }
        }
        if !images.is_empty() {
            mo.insert("images".into(), Value::Array(images));
        }
        if m.role == Role::Assistant {
            if let Some(r) = m.reasoning.as_deref().filter(|r| !r.is_empty()) {
                mo.insert("thinking".into(), json!(r));
            }
        }
        if !m.tool_calls.is_empty() {
            let mut calls = Vec::with_capacity(m.tool_calls.len());
            for (j, c) in m.tool_calls.iter().enumerate() {
                let args = arguments_object(&c.arguments).map_err(|e| {
                    DecodeError::new(
                        format!("messages[{i}].tool_calls[{j}].function.arguments"),
                        match e {
                            ArgumentsError::NotAnObject => "must be a JSON object".to_string(),
                            ArgumentsError::Invalid(e) => format!("is not valid JSON: {e}"),
                        },
                    )
                })?;
                names_by_id.insert(&c.id, &c.name);
                calls.push(json!({"function": {"name": c.name, "arguments": args}}));
            }
            mo.insert("tool_calls".into(), Value::Array(calls));
        }
        if m.role == Role::Tool {
            let name = m
                .tool_call_id
                .as_deref()
                .and_then(|id| names_by_id.get(id).copied())
                .or(m.name.as_deref());
            if let Some(name) = name {
                mo.insert("tool_name".into(), json!(name));
            }
        }
        messages.push(Value::Object(mo));
    }

    let mut o = Map::new();
    o.insert("model".into(), json!(req.model));
    o.insert("messages".into(), Value::Array(messages));
    if offer_tools && !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut f = Map::new();
                f.insert("name".into(), json!(t.name));
                if let Some(d) = &t.description {
                    f.insert("description".into(), json!(d));
                }
                f.insert("parameters".into(), t.parameters.clone());
                json!({"type": "function", "function": f})
            })
            .collect();
        o.insert("tools".into(), Value::Array(tools));
    }
    match &req.response_format {
        Some(ResponseFormat::JsonObject) => {
            o.insert("format".into(), json!("json"));
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            o.insert("format".into(), schema.clone());
        }
        Some(ResponseFormat::Text) | None => {}
    }
    let options = encode_options(req);
    if !options.is_empty() {
        o.insert("options".into(), Value::Object(options));
    }
    o.insert("stream".into(), Value::Bool(req.stream));
    if req.extra_wire == Some("ollama") {
        for key in ["keep_alive", "think"] {
            if let Some(v) = req.extra.get(key).filter(|v| !v.is_null()) {
                o.insert(key.into(), v.clone());
            }
        }
    }
    Ok(Value::Object(o))
}

/// `options` for an upstream: the client's original `options` (when it was
/// an Ollama client) with the sampling keys taken from the model.
fn encode_options(req: &ChatRequest) -> Map<String, Value> {
    let mut opts = match req.extra.get("options") {
        Some(Value::Object(m)) if req.extra_wire == Some("ollama") => m.clone(),
        _ => Map::new(),
    };
    let original_num_predict = opts.get("num_predict").and_then(Value::as_i64);
    for k in SAMPLING_OPTIONS {
        opts.remove(*k);
    }
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            opts.insert(k.into(), v);
        }
    };
    put("temperature", req.temperature.map(|v| json!(v)));
    put("top_p", req.top_p.map(|v| json!(v)));
    put("top_k", req.top_k.map(|v| json!(v)));
    put(
        "num_predict",
        match req.max_tokens {
            Some(m) => Some(json!(m)),
            // Keep an explicit "no limit" (-1) or "fill the context" (-2).
            None => original_num_predict.filter(|n| *n < 0).map(|n| json!(n)),
        },
    );
    put("stop", (!req.stop.is_empty()).then(|| json!(req.stop)));
    put("seed", req.seed.map(|v| json!(v)));
    put("presence_penalty", req.presence_penalty.map(|v| json!(v)));
    put("frequency_penalty", req.frequency_penalty.map(|v| json!(v)));
    opts
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// Ollama's `done_reason` to a finish reason.
pub(crate) fn finish_from_done_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        None | Some("") | Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some(other) => FinishReason::Other(other.to_string()),
    }
}

/// A finish reason as Ollama's `done_reason`. Ollama reports `stop` after
/// tool calls too, and has no words for the other reasons.
pub fn done_reason(finish: Option<&FinishReason>) -> &'static str {
    match finish {
        Some(FinishReason::Length) => "length",
        _ => "stop",
    }
}

/// Token counts from an Ollama answer.
pub(crate) fn usage_from_counts(prompt: Option<u64>, eval: Option<u64>) -> Usage {
    Usage {
        prompt_tokens: prompt.unwrap_or(0),
        completion_tokens: eval.unwrap_or(0),
        cached_tokens: None,
        reasoning_tokens: None,
    }
}

/// An error body's message, whether `{"error":"…"}` or `{"error":{"message":"…"}}`.
pub(crate) fn error_message(err: &Value) -> String {
    match err {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string()),
        other => other.to_string(),
    }
}

/// Tool calls of an Ollama answer, with ids `call_<j>` unless it sent some.
pub(crate) fn tool_call_from_wire(tc: WireToolCall, fallback_id: String) -> ToolCall {
    ToolCall {
        id: tc.id.filter(|s| !s.is_empty()).unwrap_or(fallback_id),
        name: tc.function.name,
        arguments: match tc.function.arguments {
            Value::Null => "{}".to_string(),
            Value::String(s) => s,
            other => other.to_string(),
        },
    }
}

/// Decodes an Ollama upstream's non-streamed `/api/chat` answer. The id is
/// left empty for the server to fill; `created` comes from `created_at`.
pub fn decode_chat_response(body: &[u8]) -> Result<ChatResponse, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|_| DecodeError::body("response is not UTF-8"))?;
    let wire: WireChatResponse = decode_field("response", text)?;
    if let Some(err) = &wire.error {
        return Err(DecodeError::body(format!(
            "upstream reported an error: {}",
            error_message(err)
        )));
    }
    let msg = wire.message.unwrap_or_default();
    let mut message = assistant_message(
        msg.content.or(wire.response).unwrap_or_default(),
        msg.thinking.or(wire.thinking),
    );
    message.tool_calls = msg
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(j, tc)| tool_call_from_wire(tc, format!("call_{j}")))
        .collect();
    let finish_reason = if !message.tool_calls.is_empty() {
        Some(FinishReason::ToolCalls)
    } else if wire.done || wire.done_reason.is_some() {
        Some(finish_from_done_reason(wire.done_reason.as_deref()))
    } else {
        None
    };
    let has_counts = wire.prompt_eval_count.is_some() || wire.eval_count.is_some();
    Ok(ChatResponse {
        id: String::new(),
        model: wire.model,
        created: wire
            .created_at
            .as_deref()
            .and_then(unix_secs_from_rfc3339)
            .unwrap_or(0),
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason,
        }],
        usage: (has_counts || wire.done)
            .then(|| usage_from_counts(wire.prompt_eval_count, wire.eval_count)),
        system_fingerprint: None,
    })
}

/// Durations (nanoseconds) for the metrics on Ollama's last object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timings {
    pub total_ns: u64,
    pub load_ns: u64,
    pub prompt_eval_ns: u64,
    pub eval_ns: u64,
}

/// Adds `total_duration` … `eval_duration` to a final object.
pub(crate) fn put_metrics(o: &mut Map<String, Value>, timings: Timings, usage: Option<Usage>) {
    let u = usage.unwrap_or_default();
    o.insert("total_duration".into(), json!(timings.total_ns));
    o.insert("load_duration".into(), json!(timings.load_ns));
    o.insert("prompt_eval_count".into(), json!(u.prompt_tokens));
    o.insert("prompt_eval_duration".into(), json!(timings.prompt_eval_ns));
    o.insert("eval_count".into(), json!(u.completion_tokens));
    o.insert("eval_duration".into(), json!(timings.eval_ns));
}

/// The answer's text and reasoning, placed as the client asked.
fn text_and_thinking(message: &Message, reasoning: ReasoningOutput) -> (String, Option<String>) {
    let text = message.text_content();
    match (
        message.reasoning.as_deref().filter(|r| !r.is_empty()),
        reasoning,
    ) {
        (Some(r), ReasoningOutput::Separate) => (text, Some(r.to_string())),
        (Some(r), ReasoningOutput::Inline) => (format!("<think>{r}</think>\n\n{text}"), None),
        _ => (text, None),
    }
}

/// The first choice of a whole answer (an empty message when there is
/// none), with its `done_reason`.
fn first_choice(resp: &ChatResponse) -> (Option<&Message>, &'static str) {
    let choice = resp.choices.first();
    (
        choice.map(|c| &c.message),
        done_reason(choice.and_then(|c| c.finish_reason.as_ref())),
    )
}

/// The fields that end a whole answer: `done_reason`, `done` and metrics.
fn put_done(o: &mut Map<String, Value>, reason: &str, resp: &ChatResponse, timings: Timings) {
    o.insert("done_reason".into(), json!(reason));
    o.insert("done".into(), Value::Bool(true));
    put_metrics(o, timings, resp.usage);
}

/// Encodes a non-streamed `/api/chat` answer for an Ollama client.
pub fn encode_chat_response(
    resp: &ChatResponse,
    model: &str,
    created_at: &str,
    timings: Timings,
    reasoning: ReasoningOutput,
) -> Value {
    encode_answer(resp, model, created_at, timings, reasoning, false)
}

/// Encodes a non-streamed `/api/generate` answer: the text in `response`,
/// reasoning in `thinking` when kept separate, no `context`.
pub fn encode_generate_response(
    resp: &ChatResponse,
    model: &str,
    created_at: &str,
    timings: Timings,
    reasoning: ReasoningOutput,
) -> Value {
    encode_answer(resp, model, created_at, timings, reasoning, true)
}

/// A whole answer: with `generate` as `/api/generate` gives it (text and
/// reasoning at the top, no tool calls), else as `/api/chat` does (in
/// `message`).
fn encode_answer(
    resp: &ChatResponse,
    model: &str,
    created_at: &str,
    timings: Timings,
    reasoning: ReasoningOutput,
    generate: bool,
) -> Value {
    let (message, reason) = first_choice(resp);
    let (text, thinking) =
        message.map_or((String::new(), None), |m| text_and_thinking(m, reasoning));
    let mut o = answer_head(model, created_at);
    if generate {
        o.insert("response".into(), json!(text));
        if let Some(t) = thinking {
            o.insert("thinking".into(), json!(t));
        }
    } else {
        let mut m = Map::new();
        m.insert("role".into(), json!("assistant"));
        m.insert("content".into(), json!(text));
        if let Some(t) = thinking {
            m.insert("thinking".into(), json!(t));
        }
        if let Some(calls) = message.map(|m| &m.tool_calls).filter(|c| !c.is_empty()) {
            m.insert("tool_calls".into(), tool_calls_to_wire(calls));
        }
        o.insert("message".into(), Value::Object(m));
    }
    put_done(&mut o, reason, resp, timings);
    Value::Object(o)
}

/// `model` and `created_at`, which open every answer object (whole or
/// streamed).
pub(crate) fn answer_head(model: &str, created_at: &str) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("model".into(), json!(model));
    o.insert("created_at".into(), json!(created_at));
    o
}

/// An error body in Ollama's shape.
pub fn error_body(message: &str) -> Value {
    json!({ "error": message })
}

// ---------------------------------------------------------------------------
// Embeddings
// ---------------------------------------------------------------------------

/// Decodes a client's `/api/embed` body. `truncate`, `options` and
/// `keep_alive` are kept in `extra`.
pub fn decode_embed_request(body: &[u8]) -> Result<EmbeddingRequest, DecodeError> {
    let obj = RawObject::parse(body)?;
    let model = obj.require_model()?;
    let input = match obj.require::<Value>("input")? {
        Value::String(s) => vec![s],
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                _ => Err(DecodeError::new(format!("input[{i}]"), "must be a string")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(DecodeError::new(
                "input",
                "must be a string or an array of strings",
            ))
        }
    };
    if input.is_empty() {
        return Err(DecodeError::new("input", "must not be empty"));
    }
    let _truncate: Option<bool> = obj.get("truncate")?;
    let _options: Option<Map<String, Value>> = obj.get("options")?;
    Ok(EmbeddingRequest {
        model,
        input: EmbeddingInput::Text(input),
        dimensions: obj.get("dimensions")?,
        encoding_format: None,
        user: None,
        extra: extra_fields(&obj, &["model", "input", "dimensions"]),
    })
}

/// Decodes a client's legacy `/api/embeddings` body (`prompt`, one text).
pub fn decode_embeddings_legacy_request(body: &[u8]) -> Result<EmbeddingRequest, DecodeError> {
    let obj = RawObject::parse(body)?;
    let model = obj.require_model()?;
    let prompt: String = obj.require("prompt")?;
    if prompt.is_empty() {
        return Err(DecodeError::new(
            "prompt",
            "must not be empty (an empty prompt only loads the model)",
        ));
    }
    let _options: Option<Map<String, Value>> = obj.get("options")?;
    Ok(EmbeddingRequest {
        model,
        input: EmbeddingInput::Text(vec![prompt]),
        dimensions: None,
        encoding_format: None,
        user: None,
        extra: extra_fields(&obj, &["model", "prompt"]),
    })
}

/// Encodes an `/api/embed` answer for an Ollama client.
pub fn encode_embed_response(resp: &EmbeddingResponse, total_ns: u64) -> Value {
    json!({
        "model": resp.model,
        "embeddings": resp.data,
        "total_duration": total_ns,
        "load_duration": 0,
        "prompt_eval_count": resp.usage.prompt_tokens,
    })
}

/// Encodes a legacy `/api/embeddings` answer: the first vector only.
pub fn encode_embeddings_legacy_response(resp: &EmbeddingResponse) -> Value {
    json!({ "embedding": resp.data.first().cloned().unwrap_or_default() })
}

/// Whether an Ollama upstream can take this request: it embeds text only,
/// not pre-tokenised input.
pub fn validate_embed_request(req: &EmbeddingRequest) -> Result<(), DecodeError> {
    match req.input {
        EmbeddingInput::Text(_) => Ok(()),
        EmbeddingInput::Tokens(_) => Err(DecodeError::new(
            "input",
            "Ollama embeds text only; token-id input cannot be sent to it",
        )),
    }
}

/// Encodes an `/api/embed` request for an Ollama upstream. `truncate`,
/// `options` and `keep_alive` come from `extra` when an Ollama client sent
/// them. Token-id input is passed as is (Ollama will refuse it); call
/// [`validate_embed_request`] first to refuse it with a clear field.
pub fn encode_embed_request(req: &EmbeddingRequest) -> Value {
    let mut o = embedding_request_head(req);
    for key in ["truncate", "options", "keep_alive"] {
        if let Some(v) = req.extra.get(key).filter(|v| !v.is_null()) {
            o.insert(key.into(), v.clone());
        }
    }
    Value::Object(o)
}

/// Decodes an Ollama upstream's `/api/embed` answer (the legacy
/// `/api/embeddings` shape is accepted too).
pub fn decode_embed_response(body: &[u8]) -> Result<EmbeddingResponse, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|_| DecodeError::body("response is not UTF-8"))?;
    let wire: WireEmbedResponse = decode_field("response", text)?;
    let data = match (wire.embeddings, wire.embedding) {
        (Some(e), _) => e,
        (None, Some(one)) => vec![one],
        (None, None) => {
            return Err(DecodeError::new(
                "embeddings",
                "the embedding response has no vectors",
            ))
        }
    };
    Ok(EmbeddingResponse {
        model: wire.model,
        data,
        usage: usage_from_counts(wire.prompt_eval_count, None),
    })
}

// ---------------------------------------------------------------------------
// Model listing
// ---------------------------------------------------------------------------

/// Model names from an Ollama `/api/tags` answer.
pub fn decode_tags_response(body: &[u8]) -> Result<Vec<String>, DecodeError> {
    let text = std::str::from_utf8(body).map_err(|_| DecodeError::body("response is not UTF-8"))?;
    let wire: WireTags = decode_field("response", text)?;
    Ok(wire
        .models
        .into_iter()
        .filter_map(|m| m.name.filter(|n| !n.is_empty()).or(m.model))
        .filter(|n| !n.is_empty())
        .collect())
}

/// A stable 64-hex-digit digest for a model name (FNV-1a, four lanes). Not
/// a content hash: llm-link has no blobs to hash, clients only compare it.
fn digest_for(name: &str) -> String {
    let mut out = String::with_capacity(64);
    for lane in 0u64..4 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ lane.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Final avalanche so that similar names differ everywhere.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        let _ = write!(out, "{h:016x}");
    }
    out
}

/// A plausible file size for a `parameter_size` such as `7B`, `3.2B` or
/// `270M`, at Q4_K_M (about 0.6 bytes per weight); 0 when unknown.
fn size_for(parameter_size: &str) -> u64 {
    let s = parameter_size.trim();
    let (num, unit) = s.split_at(s.len() - s.chars().last().map_or(0, char::len_utf8));
    let scale = match unit {
        "T" | "t" => 1e12,
        "B" | "b" => 1e9,
        "M" | "m" => 1e6,
        "K" | "k" => 1e3,
        _ => return 0,
    };
    match num.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 => (n * scale * 0.6).round() as u64,
        _ => 0,
    }
}

/// One model entry of an `/api/tags` answer, in the shape Ollama's clients
/// (Zed, the SDKs) read: name, model, modified_at, size, digest, details.
pub fn tag_entry(name: &str, modified_at: &str, family: &str, parameter_size: &str) -> Value {
    let families = if family.is_empty() {
        Value::Null
    } else {
        json!([family])
    };
    json!({
        "name": name,
        "model": name,
        "modified_at": modified_at,
        "size": size_for(parameter_size),
        "digest": digest_for(name),
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": families,
            "parameter_size": parameter_size,
            "quantization_level": "Q4_K_M",
        },
    })
}

#[cfg(test)]
mod tests;
