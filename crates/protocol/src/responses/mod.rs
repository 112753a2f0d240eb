//! The OpenAI Responses API (`POST /v1/responses`) as a client format.
//!
//! A Responses client (the OpenAI SDKs' `responses.create`, Codex) talks to
//! llm-link; its request is decoded into a [`ChatRequest`] for whatever
//! upstream the route picks, and the answer is encoded back as a `response`
//! object or its event stream.
//!
//! # API
//! - [`decode_request`] / [`decode_request_object`] → [`ResponsesRequest`]:
//!   the chat request, plus what the server keeps for the stateful parts of
//!   the API (`previous_response_id`, `store`, the input as items, the
//!   fields the answer echoes).
//! - [`ResponsesRequest::apply_history`] rebuilds the conversation when the
//!   request continues a stored response: stored input and output items
//!   decode with [`decode_items`], as new input does.
//! - [`encode_response`] writes the `response` object of a whole answer;
//!   [`output_items`] its `output` alone (for storage).
//! - [`stream::StreamEncoder`] writes the event stream (`response.created`
//!   … `response.completed`), and keeps the final object for storage.
//! - [`error_body`]: errors take OpenAI's error body.
//! - Usage of a Responses answer forwarded as is is read by the usage
//!   module's scanner with `Format::Responses` (it depends on this module,
//!   not the other way round).
//!
//! # Mapping rules
//! - `instructions` becomes a leading system message; `developer` and
//!   `system` input messages become system messages.
//! - Consecutive `function_call` items (and an assistant message just
//!   before them) become one assistant message with tool calls;
//!   `function_call_output` becomes a tool message.
//! - `reasoning` items: their summary text (or, without one, their
//!   `content` text) becomes the next assistant message's reasoning;
//!   `encrypted_content` only an OpenAI model can read and is dropped. A
//!   reasoning item followed by no message or call is dropped.
//! - `custom` (free-form) tools, which Codex sends for `apply_patch`, become
//!   function tools taking one string argument, `input`
//!   ([`CUSTOM_TOOL_ARGUMENT`]); `custom_tool_call` items replay as calls
//!   with arguments `{"input": …}`, and an answer's call of such a tool is
//!   sent back as a `custom_tool_call` item with that `input`.
//! - Tools that run on OpenAI's side or need a model trained for them
//!   ([`DROPPED_TOOL_TYPES`]: web search, image generation, tool search,
//!   `local_shell`) are dropped, not refused: Codex offers them by default,
//!   and a model behind a chat upstream cannot call them anyway. Other
//!   built-in tools (file search, code interpreter, computer use, MCP, …)
//!   need configuration a client chose deliberately, and are refused with
//!   a 400 naming `tools[i].type`.
//! - Items of such tools replayed as history (`web_search_call`,
//!   `compaction`, …, [`SKIPPED_ITEM_TYPES`]) are skipped;
//!   `item_reference` items are refused (llm-link would have to look the
//!   item up); `local_shell_call` replays as a call of `local_shell`.
//! - `reasoning.effort` is carried as `reasoning_effort` in
//!   `ChatRequest::extra` (with `extra_wire` `openai`), which the OpenAI
//!   encoder forwards as Chat Completions' own `reasoning_effort`; no other
//!   Responses-only field goes upstream.

pub mod stream;
pub mod wire;

use crate::anthropic::wire::from_value;
use crate::ir::*;
use crate::json::{DecodeError, RawObject};
use serde_json::{json, Map, Value};
use wire::*;

/// Tool types dropped from a request (see the module's mapping rules).
pub const DROPPED_TOOL_TYPES: &[&str] = &[
    "web_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "web_search_2025_08_26",
    "image_generation",
    "tool_search",
    "local_shell",
];

/// Input item types skipped when replayed as history: calls of tools that
/// ran on OpenAI's side, and state only OpenAI can read.
pub const SKIPPED_ITEM_TYPES: &[&str] = &[
    "web_search_call",
    "file_search_call",
    "image_generation_call",
    "code_interpreter_call",
    "tool_search_call",
    "tool_search_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "compaction",
];

/// The one argument of a function tool made from a `custom` tool.
pub const CUSTOM_TOOL_ARGUMENT: &str = "input";

/// The name `local_shell_call` items replay as.
pub const LOCAL_SHELL_TOOL: &str = "local_shell";

/// A decoded `POST /v1/responses` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesRequest {
    /// The request for the upstream: `instructions` and `input` as messages.
    pub chat: ChatRequest,
    /// The stored response this one continues.
    pub previous_response_id: Option<String>,
    /// Whether the response is to be stored (the API's default: true).
    pub store: bool,
    /// The input as item objects, as the client sent them (a string input
    /// becomes one user `message` item): what `GET …/input_items` lists and
    /// what a later request's history starts with.
    pub input_items: Vec<Value>,
    /// The request fields the `response` object echoes, with the API's
    /// defaults for those not given.
    pub echo: Map<String, Value>,
    /// Types of the tools dropped from `tools` (see [`DROPPED_TOOL_TYPES`]),
    /// in order, for logging.
    pub dropped_tools: Vec<String>,
}

impl ResponsesRequest {
    /// Rebuilds the conversation of a request that continues a stored
    /// response: `instructions` (the request's own; earlier ones are not
    /// carried over, as in the API), then `history` (the stored input and
    /// output items of every earlier response, oldest first), then this
    /// request's input.
    pub fn apply_history(&mut self, history: &[Value]) -> Result<(), DecodeError> {
        let mut messages = Vec::new();
        if let Some(Value::String(s)) = self.echo.get("instructions") {
            if !s.is_empty() {
                messages.push(Message::text(Role::System, s.clone()));
            }
        }
        let mut items = Vec::with_capacity(history.len() + self.input_items.len());
        items.extend_from_slice(history);
        items.extend_from_slice(&self.input_items);
        decode_items_at("input", &items, &mut messages)?;
        self.chat.messages = messages;
        Ok(())
    }

    /// The custom tools' names, which answers send back as
    /// `custom_tool_call` items.
    pub fn custom_tools(&self) -> CallNames {
        custom_tool_names(&self.echo)
    }
}

/// Top-level request fields this codec reads; others are ignored.
pub const REQUEST_FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_output_tokens",
    "max_tool_calls",
    "temperature",
    "top_p",
    "top_logprobs",
    "text",
    "reasoning",
    "metadata",
    "store",
    "stream",
    "stream_options",
    "user",
    "safety_identifier",
    "include",
    "prompt_cache_key",
    "prompt_cache_retention",
    "client_metadata",
    "service_tier",
    "truncation",
    "previous_response_id",
    "background",
];

/// Decodes a client's `POST /v1/responses` body, validating every field
/// this codec reads and naming the first bad one.
pub fn decode_request(body: &[u8]) -> Result<ResponsesRequest, DecodeError> {
    let obj = RawObject::parse(body)?;
    decode_request_object(&obj)
}

/// As [`decode_request`], for an already parsed top level.
pub fn decode_request_object(obj: &RawObject<'_>) -> Result<ResponsesRequest, DecodeError> {
    let model = obj.require_model()?;
    let previous_response_id: Option<String> = obj.get("previous_response_id")?;
    let input_items = match obj.get::<Value>("input")? {
        None if previous_response_id.is_some() => Vec::new(),
        None => return Err(DecodeError::new("input", "this field is required")),
        Some(Value::String(s)) => vec![json!({
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": s}],
        })],
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(DecodeError::new(
                "input",
                "expected a string or an array of input items",
            ))
        }
    };
    if input_items.is_empty() && previous_response_id.is_none() {
        return Err(DecodeError::new("input", "must contain at least one item"));
    }
    let instructions: Option<String> = obj.get("instructions")?;
    let mut messages = Vec::with_capacity(input_items.len() + 1);
    if let Some(s) = instructions.as_deref().filter(|s| !s.is_empty()) {
        messages.push(Message::text(Role::System, s));
    }
    decode_items_at("input", &input_items, &mut messages)?;

    let raw_tools: Option<Vec<Value>> = obj.get("tools")?;
    let mut tools = Vec::new();
    let mut dropped_tools = Vec::new();
    for (i, t) in raw_tools.iter().flatten().enumerate() {
        match tool_to_ir(i, t)? {
            ToolDecoded::Tool(tool) => tools.push(tool),
            ToolDecoded::Many(many) => tools.extend(many),
            ToolDecoded::Dropped(kind) => dropped_tools.push(kind),
        }
    }

    let tool_choice = match obj.get::<WireToolChoice>("tool_choice")? {
        None => None,
        Some(WireToolChoice::Mode(m)) => Some(match m.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(DecodeError::new(
                    "tool_choice",
                    format!(
                        "unknown value `{other}`; expected `auto`, `none`, `required` or an object"
                    ),
                ))
            }
        }),
        Some(WireToolChoice::Object(o)) => Some(match o.kind.as_str() {
            "function" | "custom" => match o.name.filter(|n| !n.is_empty()) {
                Some(name) => ToolChoice::Function(name),
                None => {
                    return Err(DecodeError::new(
                        "tool_choice.name",
                        "this field is required",
                    ))
                }
            },
            // The allowed subset is not kept: the model sees every tool.
            "allowed_tools" => match o.mode.as_deref() {
                Some("required") => ToolChoice::Required,
                _ => ToolChoice::Auto,
            },
            other => {
                return Err(DecodeError::new(
                    "tool_choice.type",
                    format!(
                    "unsupported value `{other}`; expected `function`, `custom` or `allowed_tools`"
                ),
                ))
            }
        }),
    };

    let max_tokens: Option<u32> = obj.get("max_output_tokens")?;
    if max_tokens == Some(0) {
        return Err(DecodeError::new("max_output_tokens", "must be at least 1"));
    }
    let temperature: Option<f64> = obj.get("temperature")?;
    if temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
        return Err(DecodeError::new("temperature", "must be between 0 and 2"));
    }
    let top_p: Option<f64> = obj.get("top_p")?;
    if top_p.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
        return Err(DecodeError::new("top_p", "must be between 0 and 1"));
    }
    let text: Option<WireText> = obj.get("text")?;
    let response_format = text.and_then(|t| t.format).map(|f| match f {
        WireTextFormat::Text => ResponseFormat::Text,
        WireTextFormat::JsonObject => ResponseFormat::JsonObject,
        WireTextFormat::JsonSchema {
            name,
            schema,
            description,
            strict,
        } => ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
            description,
        },
    });
    let reasoning: Option<WireReasoningConfig> = obj.get("reasoning")?;
    let mut extra = Map::new();
    if let Some(effort) = reasoning.and_then(|r| r.effort) {
        extra.insert("reasoning_effort".into(), Value::String(effort));
    }
    obj.check_object("metadata")?;
    let store = obj.get::<bool>("store")?.unwrap_or(true);
    let stream = obj.get::<bool>("stream")?.unwrap_or(false);
    let user: Option<String> = obj.get("user")?;
    // Read for their errors only: accepted, nothing upstream takes them.
    let _: Option<Vec<String>> = obj.get("include")?;
    let _: Option<String> = obj.get("prompt_cache_key")?;
    let _: Option<String> = obj.get("safety_identifier")?;
    let _: Option<String> = obj.get("service_tier")?;
    let _: Option<String> = obj.get("truncation")?;
    let _: Option<u32> = obj.get("max_tool_calls")?;
    if obj.get::<bool>("background")? == Some(true) {
        return Err(DecodeError::new(
            "background",
            "background responses are not supported",
        ));
    }
    for field in ["conversation", "prompt"] {
        if obj.get::<Value>(field)?.is_some() {
            return Err(DecodeError::new(
                field,
                "not supported: send the input itself, or use previous_response_id",
            ));
        }
    }

    let echo = echo_fields(obj, instructions, store, previous_response_id.clone())?;
    let chat = ChatRequest {
        model,
        messages,
        tools,
        tool_choice,
        parallel_tool_calls: obj.get("parallel_tool_calls")?,
        temperature,
        top_p,
        max_tokens,
        user,
        response_format,
        stream,
        // Usage is always wanted: the answer reports it.
        include_usage: stream,
        reasoning_output: ReasoningOutput::Separate,
        extra,
        extra_wire: Some("openai"),
        ..ChatRequest::default()
    };
    Ok(ResponsesRequest {
        chat,
        previous_response_id,
        store,
        input_items,
        echo,
        dropped_tools,
    })
}

/// The request fields a `response` object echoes, with the API's defaults.
fn echo_fields(
    obj: &RawObject<'_>,
    instructions: Option<String>,
    store: bool,
    previous_response_id: Option<String>,
) -> Result<Map<String, Value>, DecodeError> {
    let mut echo = Map::new();
    let mut put = |k: &str, v: Option<Value>, default: Value| {
        echo.insert(k.into(), v.unwrap_or(default));
    };
    put("instructions", instructions.map(Value::String), Value::Null);
    put("tools", obj.get("tools")?, json!([]));
    put("tool_choice", obj.get("tool_choice")?, json!("auto"));
    put(
        "parallel_tool_calls",
        obj.get("parallel_tool_calls")?,
        json!(true),
    );
    put("temperature", obj.get("temperature")?, json!(1.0));
    put("top_p", obj.get("top_p")?, json!(1.0));
    put("top_logprobs", obj.get("top_logprobs")?, json!(0));
    put(
        "max_output_tokens",
        obj.get("max_output_tokens")?,
        Value::Null,
    );
    put("max_tool_calls", obj.get("max_tool_calls")?, Value::Null);
    put("metadata", obj.get("metadata")?, json!({}));
    let mut text = match obj.get::<Value>("text")? {
        Some(Value::Object(t)) => t,
        _ => Map::new(),
    };
    text.entry("format")
        .or_insert_with(|| json!({"type": "text"}));
    text.entry("verbosity").or_insert_with(|| json!("medium"));
    put("text", Some(Value::Object(text)), Value::Null);
    put(
        "reasoning",
        obj.get("reasoning")?,
        json!({"effort": null, "summary": null}),
    );
    put("store", Some(Value::Bool(store)), Value::Null);
    put("truncation", obj.get("truncation")?, json!("disabled"));
    put("user", obj.get("user")?, Value::Null);
    put(
        "previous_response_id",
        previous_response_id.map(Value::String),
        Value::Null,
    );
    put(
        "prompt_cache_key",
        obj.get("prompt_cache_key")?,
        Value::Null,
    );
    put(
        "safety_identifier",
        obj.get("safety_identifier")?,
        Value::Null,
    );
    put("service_tier", obj.get("service_tier")?, json!("default"));
    put("background", None, json!(false));
    Ok(echo)
}

enum ToolDecoded {
    Tool(Tool),
    /// A `namespace` of tools, flattened.
    Many(Vec<Tool>),
    Dropped(String),
}

fn tool_to_ir(i: usize, t: &Value) -> Result<ToolDecoded, DecodeError> {
    let at = format!("tools[{i}]");
    let kind = match t.get("type") {
        Some(Value::String(k)) => k.as_str(),
        Some(_) => return Err(DecodeError::new(format!("{at}.type"), "expected a string")),
        None if t.is_object() => {
            return Err(DecodeError::new(
                format!("{at}.type"),
                "this field is required",
            ))
        }
        None => return Err(DecodeError::new(at, "expected a tool object")),
    };
    let tool = match kind {
        "function" => {
            let f: WireFunctionTool = from_value(&at, t.clone())?;
            Tool {
                name: f.name,
                description: f.description,
                parameters: f
                    .parameters
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                strict: f.strict,
            }
        }
        "custom" => {
            let c: WireCustomTool = from_value(&at, t.clone())?;
            let mut description = c.description.unwrap_or_default();
            if let Some(grammar) = c.format.as_ref().and_then(grammar_note) {
                if !description.is_empty() {
                    description.push_str("\n\n");
                }
                description.push_str(&grammar);
            }
            Tool {
                name: c.name,
                description: (!description.is_empty()).then_some(description),
                parameters: json!({
                    "type": "object",
                    "properties": {CUSTOM_TOOL_ARGUMENT: {"type": "string"}},
                    "required": [CUSTOM_TOOL_ARGUMENT],
                    "additionalProperties": false,
                }),
                strict: None,
            }
        }
        // Codex groups tools (its sub-agent tools) in a namespace; a chat
        // upstream gets each as a function named `ns__name`.
        "namespace" => {
            let ns: WireNamespaceTool = from_value(&at, t.clone())?;
            if ns.name.is_empty() {
                return Err(DecodeError::new(format!("{at}.name"), "must not be empty"));
            }
            let mut many = Vec::with_capacity(ns.tools.len());
            for (j, inner) in ns.tools.iter().enumerate() {
                match tool_to_ir(j, inner) {
                    Ok(ToolDecoded::Tool(mut tool)) => {
                        tool.name = namespaced_name(&ns.name, &tool.name);
                        many.push(tool);
                    }
                    Ok(_) => {
                        return Err(DecodeError::new(
                            format!("{at}.tools[{j}].type"),
                            "a namespace may only hold `function` and `custom` tools",
                        ))
                    }
                    Err(e) => {
                        return Err(DecodeError::new(
                            format!("{at}.{}", e.field),
                            e.message,
                        ))
                    }
                }
            }
            return Ok(ToolDecoded::Many(many));
        }
        k if DROPPED_TOOL_TYPES.contains(&k) => return Ok(ToolDecoded::Dropped(k.to_string())),
        other => {
            return Err(DecodeError::new(
                format!("{at}.type"),
                format!(
                    "unsupported tool type `{other}`; only `function` and `custom` tools can be used through llm-link"
                ),
            ))
        }
    };
    if tool.name.is_empty() {
        return Err(DecodeError::new(format!("{at}.name"), "must not be empty"));
    }
    Ok(ToolDecoded::Tool(tool))
}

/// What a custom tool's grammar `format` tells the model, as text.
fn grammar_note(format: &Value) -> Option<String> {
    if format.get("type").and_then(Value::as_str) != Some("grammar") {
        return None;
    }
    let definition = format.get("definition").and_then(Value::as_str)?;
    let syntax = format
        .get("syntax")
        .and_then(Value::as_str)
        .unwrap_or("lark");
    Some(format!(
        "The `{CUSTOM_TOOL_ARGUMENT}` argument must match this {syntax} grammar:\n{definition}"
    ))
}

/// The names of the `custom` tools among echoed `tools`.
pub(crate) fn custom_tool_names(echo: &Map<String, Value>) -> CallNames {
    let mut names = CallNames::default();
    let tools = echo
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for t in tools {
        let name = t.get("name").and_then(Value::as_str);
        match (t.get("type").and_then(Value::as_str), name) {
            (Some("custom"), Some(n)) => names.custom.push(n.to_string()),
            (Some("namespace"), Some(ns)) => {
                let inner = t
                    .get("tools")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten();
                for f in inner {
                    if let Some(n) = f.get("name").and_then(Value::as_str) {
                        names.namespaced.push((
                            namespaced_name(ns, n),
                            ns.to_string(),
                            n.to_string(),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    names
}

/// How an answer's tool calls are written back: which names were `custom`
/// tools, and which flat names stand for a tool of a `namespace`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallNames {
    custom: Vec<String>,
    /// (flat name, namespace, name).
    namespaced: Vec<(String, String, String)>,
}

impl CallNames {
    pub fn is_custom(&self, name: &str) -> bool {
        self.custom.iter().any(|c| c == name)
    }

    /// The namespace and name a flat tool name stands for.
    pub fn split(&self, flat: &str) -> Option<(&str, &str)> {
        self.namespaced
            .iter()
            .find(|(f, _, _)| f == flat)
            .map(|(_, ns, n)| (ns.as_str(), n.as_str()))
    }
}

/// The flat name a chat upstream sees for tool `name` of namespace `ns`
/// (Codex's own flattening: `ns__name`, stray underscores at the join
/// trimmed).
pub fn namespaced_name(ns: &str, name: &str) -> String {
    format!(
        "{}__{}",
        ns.trim_end_matches('_'),
        name.trim_start_matches('_')
    )
}

/// Decodes input items (a request's `input`, or stored input and output
/// items, oldest first) into messages appended to `out`. Output items of a
/// response (`message`, `function_call`, `reasoning`, `custom_tool_call`)
/// decode as input does, so a stored conversation replays. Errors name
/// `input[i]…`.
pub fn decode_items(items: &[Value], out: &mut Vec<Message>) -> Result<(), DecodeError> {
    decode_items_at("input", items, out)
}

fn decode_items_at(
    field: &str,
    items: &[Value],
    out: &mut Vec<Message>,
) -> Result<(), DecodeError> {
    // The assistant message being built: reasoning, text and calls from
    // consecutive items.
    let mut pending: Option<Message> = None;
    for (i, item) in items.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Some(o) = item.as_object() else {
            return Err(DecodeError::new(at, "expected an input item object"));
        };
        let kind = match o.get("type") {
            Some(Value::String(k)) => k.as_str(),
            None | Some(Value::Null) if o.contains_key("role") => "message",
            None | Some(Value::Null) => {
                return Err(DecodeError::new(
                    format!("{at}.type"),
                    "this field is required",
                ))
            }
            Some(_) => return Err(DecodeError::new(format!("{at}.type"), "expected a string")),
        };
        match kind {
            "message" => {
                let m: WireMessageItem = from_value(&at, item.clone())?;
                let role = match m.role.as_str() {
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    "system" | "developer" => Role::System,
                    other => {
                        return Err(DecodeError::new(
                            format!("{at}.role"),
                            format!("unknown role `{other}`; expected `user`, `assistant`, `system` or `developer`"),
                        ))
                    }
                };
                let content = content_to_ir(&format!("{at}.content"), &m.content)?;
                if role != Role::User {
                    if let Some(j) = content
                        .iter()
                        .position(|p| matches!(p, ContentPart::Image(_)))
                    {
                        return Err(DecodeError::new(
                            format!("{at}.content[{j}]"),
                            "image parts are only allowed in `user` messages",
                        ));
                    }
                }
                if role == Role::Assistant {
                    match pending.as_mut() {
                        Some(p) if p.content.is_empty() && p.tool_calls.is_empty() => {
                            p.content = content;
                        }
                        _ => {
                            flush(&mut pending, out);
                            pending = Some(Message::new(Role::Assistant, content));
                        }
                    }
                } else {
                    flush(&mut pending, out);
                    out.push(Message::new(role, content));
                }
            }
            "function_call" => {
                let c: WireFunctionCall = from_value(&at, item.clone())?;
                let name = match c.namespace.as_deref().filter(|n| !n.is_empty()) {
                    Some(ns) => namespaced_name(ns, &c.name),
                    None => c.name,
                };
                push_call(&at, &mut pending, c.call_id, name, c.arguments)?;
            }
            "custom_tool_call" => {
                let c: WireCustomToolCall = from_value(&at, item.clone())?;
                let arguments = json!({CUSTOM_TOOL_ARGUMENT: c.input}).to_string();
                push_call(&at, &mut pending, c.call_id, c.name, arguments)?;
            }
            "local_shell_call" => {
                let c: WireLocalShellCall = from_value(&at, item.clone())?;
                let Some(id) = c.call_id.or(c.id).filter(|s| !s.is_empty()) else {
                    return Err(DecodeError::new(
                        format!("{at}.call_id"),
                        "this field is required",
                    ));
                };
                let arguments = json!({"action": c.action}).to_string();
                push_call(&at, &mut pending, id, LOCAL_SHELL_TOOL.into(), arguments)?;
            }
            "function_call_output" | "custom_tool_call_output" => {
                let r: WireFunctionCallOutput = from_value(&at, item.clone())?;
                flush(&mut pending, out);
                out.push(tool_result(&at, r.call_id, &r.output)?);
            }
            "local_shell_call_output" => {
                let r: WireLocalShellCallOutput = from_value(&at, item.clone())?;
                flush(&mut pending, out);
                out.push(tool_result(&at, r.id, &r.output)?);
            }
            "reasoning" => {
                let r: WireReasoning = from_value(&at, item.clone())?;
                let mut texts: Vec<String> = r.summary.into_iter().map(|s| s.text).collect();
                if texts.iter().all(String::is_empty) {
                    texts = r.content.into_iter().flatten().map(|c| c.text).collect();
                }
                texts.retain(|t| !t.is_empty());
                if texts.is_empty() {
                    continue;
                }
                let text = texts.join("\n\n");
                match pending.as_mut() {
                    Some(p)
                        if p.content.is_empty()
                            && p.tool_calls.is_empty()
                            && p.reasoning.is_none() =>
                    {
                        p.reasoning = Some(text);
                    }
                    _ => {
                        flush(&mut pending, out);
                        let mut m = Message::new(Role::Assistant, Vec::new());
                        m.reasoning = Some(text);
                        pending = Some(m);
                    }
                }
            }
            "item_reference" => {
                return Err(DecodeError::new(
                    at,
                    "`item_reference` items are not supported; send the item itself, or use previous_response_id",
                ))
            }
            k if SKIPPED_ITEM_TYPES.contains(&k) => {}
            other => {
                return Err(DecodeError::new(
                    format!("{at}.type"),
                    format!("unsupported input item type `{other}`"),
                ))
            }
        }
    }
    flush(&mut pending, out);
    Ok(())
}

/// Adds a call to the assistant message being built (starting one).
fn push_call(
    at: &str,
    pending: &mut Option<Message>,
    id: String,
    name: String,
    arguments: String,
) -> Result<(), DecodeError> {
    if id.is_empty() {
        return Err(DecodeError::new(
            format!("{at}.call_id"),
            "must not be empty",
        ));
    }
    if name.is_empty() {
        return Err(DecodeError::new(format!("{at}.name"), "must not be empty"));
    }
    pending
        .get_or_insert_with(|| Message::new(Role::Assistant, Vec::new()))
        .tool_calls
        .push(ToolCall {
            id,
            name,
            arguments,
        });
    Ok(())
}

/// Ends the assistant message being built. One with reasoning only (no
/// text, no call) is dropped: upstreams refuse an empty assistant turn.
fn flush(pending: &mut Option<Message>, out: &mut Vec<Message>) {
    if let Some(m) = pending.take() {
        if !m.content.is_empty() || !m.tool_calls.is_empty() {
            out.push(m);
        }
    }
}

fn tool_result(at: &str, call_id: String, output: &Value) -> Result<Message, DecodeError> {
    if call_id.is_empty() {
        return Err(DecodeError::new(
            format!("{at}.call_id"),
            "must not be empty",
        ));
    }
    let content = content_to_ir(&format!("{at}.output"), output)?;
    let mut m = Message::new(Role::Tool, content);
    m.tool_call_id = Some(call_id);
    Ok(m)
}

/// A message's `content` (or a call output's `output`): a string or an
/// array of parts.
fn content_to_ir(at: &str, content: &Value) -> Result<Vec<ContentPart>, DecodeError> {
    let parts = match content {
        Value::String(s) => return Ok(vec![ContentPart::Text(s.clone())]),
        Value::Array(parts) => parts,
        _ => {
            return Err(DecodeError::new(
                at,
                "expected a string or an array of content parts",
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let pat = format!("{at}[{j}]");
        let kind = match part.get("type") {
            Some(Value::String(k)) => k.as_str(),
            _ if !part.is_object() => {
                return Err(DecodeError::new(pat, "expected a content part object"))
            }
            _ => {
                return Err(DecodeError::new(
                    format!("{pat}.type"),
                    "this field is required",
                ))
            }
        };
        out.push(match kind {
            "input_text" | "output_text" | "summary_text" | "reasoning_text" => {
                let t: WireTextPart = from_value(&pat, part.clone())?;
                ContentPart::Text(t.text)
            }
            "refusal" => {
                let r: WireRefusalPart = from_value(&pat, part.clone())?;
                ContentPart::Text(r.refusal)
            }
            "input_image" => {
                let img: WireImagePart = from_value(&pat, part.clone())?;
                match (img.image_url, img.file_id) {
                    (Some(url), _) if !url.is_empty() => ContentPart::Image(Image {
                        source: ImageSource::from_url(&url),
                        detail: img.detail.filter(|d| d != "auto"),
                    }),
                    (_, Some(_)) => {
                        return Err(DecodeError::new(
                            format!("{pat}.file_id"),
                            "uploaded files are not supported; send the image as `image_url` (a URL or a data: URI)",
                        ))
                    }
                    _ => {
                        return Err(DecodeError::new(
                            format!("{pat}.image_url"),
                            "this field is required",
                        ))
                    }
                }
            }
            "input_file" => {
                return Err(DecodeError::new(
                    format!("{pat}.type"),
                    "`input_file` parts are not supported",
                ))
            }
            other => {
                return Err(DecodeError::new(
                    format!("{pat}.type"),
                    format!("unsupported content part type `{other}`"),
                ))
            }
        });
    }
    Ok(out)
}

// ---- answers ----

/// Whether an answer that stopped for `reason` is `incomplete`, and why.
pub(crate) fn incomplete_reason(reason: Option<&FinishReason>) -> Option<&'static str> {
    match reason {
        Some(FinishReason::Length) => Some("max_output_tokens"),
        Some(FinishReason::ContentFilter) => Some("content_filter"),
        _ => None,
    }
}

/// The id of output item `index` of response `id` (`resp_x` → `msg_x_1`):
/// derived, so a stream and a stored copy agree.
pub(crate) fn item_id(prefix: &str, response_id: &str, index: usize) -> String {
    let base = response_id.strip_prefix("resp_").unwrap_or(response_id);
    format!("{prefix}_{base}_{index}")
}

pub(crate) fn reasoning_item(id: &str, text: &str) -> Value {
    json!({
        "id": id,
        "type": "reasoning",
        "summary": if text.is_empty() { json!([]) } else { json!([{"type": "summary_text", "text": text}]) },
    })
}

pub(crate) fn output_text_part(text: &str) -> Value {
    json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text})
}

pub(crate) fn message_item(id: &str, text: Option<&str>, status: &str) -> Value {
    json!({
        "id": id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": match text {
            Some(t) => json!([output_text_part(t)]),
            None => json!([]),
        },
    })
}

/// The id of call item `index`: `fc_…`, or `ctc_…` for a custom tool's.
pub(crate) fn call_item_id(response_id: &str, index: usize, custom: bool) -> String {
    item_id(if custom { "ctc" } else { "fc" }, response_id, index)
}

/// Call item `index` of response `response_id`: `function_call`, or
/// `custom_tool_call` (its `input` taken out of the arguments) for a tool
/// that was `custom` in the request.
pub(crate) fn call_item(
    response_id: &str,
    index: usize,
    call: &ToolCall,
    status: &str,
    custom_tools: &CallNames,
) -> Value {
    let custom = custom_tools.is_custom(&call.name);
    let id = call_item_id(response_id, index, custom);
    if custom {
        return json!({
            "id": id,
            "type": "custom_tool_call",
            "status": status,
            "call_id": call.id,
            "name": call.name,
            "input": custom_input(&call.arguments),
        });
    }
    if let Some((ns, name)) = custom_tools.split(&call.name) {
        return json!({
            "id": id,
            "type": "function_call",
            "status": status,
            "arguments": call.arguments,
            "call_id": call.id,
            "name": name,
            "namespace": ns,
        });
    }
    json!({
        "id": id,
        "type": "function_call",
        "status": status,
        "arguments": call.arguments,
        "call_id": call.id,
        "name": call.name,
    })
}

/// A custom tool's input from the arguments the model wrote for the
/// function it was offered as: the `input` string, or the text itself
/// when the model did not write that object.
pub(crate) fn custom_input(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(mut o)) => match o.remove(CUSTOM_TOOL_ARGUMENT) {
            Some(Value::String(s)) => s,
            _ => arguments.to_string(),
        },
        _ => arguments.to_string(),
    }
}

/// The `output` items of an answer (its first choice): a `reasoning` item
/// when it reasoned, a `message` item when it has text, then one call item
/// per tool call. The last item of an incomplete answer is `incomplete`.
pub fn output_items(resp: &ChatResponse, id: &str, custom_tools: &CallNames) -> Vec<Value> {
    let Some(choice) = resp.choices.first() else {
        return Vec::new();
    };
    let m = &choice.message;
    let text = m.text_content();
    let reasoning = m.reasoning.as_deref().filter(|r| !r.is_empty());
    let count =
        usize::from(reasoning.is_some()) + usize::from(!text.is_empty()) + m.tool_calls.len();
    let incomplete = incomplete_reason(choice.finish_reason.as_ref()).is_some();
    let status = |index: usize| {
        if incomplete && index + 1 == count {
            "incomplete"
        } else {
            "completed"
        }
    };
    let mut items = Vec::with_capacity(count);
    if let Some(r) = reasoning {
        items.push(reasoning_item(&item_id("rs", id, items.len()), r));
    }
    if !text.is_empty() {
        let index = items.len();
        items.push(message_item(
            &item_id("msg", id, index),
            Some(&text),
            status(index),
        ));
    }
    for call in &m.tool_calls {
        let index = items.len();
        items.push(call_item(id, index, call, status(index), custom_tools));
    }
    items
}

/// The `usage` object of a response.
pub fn usage_to_wire(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens.unwrap_or(0)},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens.unwrap_or(0)},
        "total_tokens": u.total_tokens(),
    })
}

pub(crate) fn usage_from_wire(u: &WireUsage) -> Usage {
    Usage {
        prompt_tokens: u.input_tokens,
        completion_tokens: u.output_tokens,
        cached_tokens: u.input_tokens_details.and_then(|d| d.cached_tokens),
        reasoning_tokens: u.output_tokens_details.and_then(|d| d.reasoning_tokens),
    }
}

/// The parts of a `response` object that change as it is generated.
pub(crate) struct ResponseState<'a> {
    pub id: &'a str,
    pub created_at: u64,
    pub model: &'a str,
    /// `in_progress`, `completed`, `incomplete` or `failed`.
    pub status: &'a str,
    pub output: Vec<Value>,
    pub usage: Option<&'a Usage>,
    pub incomplete_reason: Option<&'a str>,
    /// `{code, message}` of a failed response.
    pub error: Option<Value>,
}

/// A `response` object: the state, then the echoed request fields.
pub(crate) fn response_object(s: ResponseState<'_>, echo: &Map<String, Value>) -> Value {
    let mut o = Map::with_capacity(echo.len() + 10);
    o.insert("id".into(), json!(s.id));
    o.insert("object".into(), json!("response"));
    o.insert("created_at".into(), json!(s.created_at));
    o.insert("status".into(), json!(s.status));
    o.insert("error".into(), s.error.unwrap_or(Value::Null));
    o.insert(
        "incomplete_details".into(),
        match s.incomplete_reason {
            Some(r) => json!({"reason": r}),
            None => Value::Null,
        },
    );
    o.insert("model".into(), json!(s.model));
    o.insert("output".into(), Value::Array(s.output));
    o.insert(
        "usage".into(),
        s.usage.map(usage_to_wire).unwrap_or(Value::Null),
    );
    for (k, v) in echo {
        o.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Value::Object(o)
}

/// Encodes a whole answer as a `response` object with id `id` (`resp_…`,
/// the caller's) created at `created_at` (Unix seconds), echoing `echo`
/// ([`ResponsesRequest::echo`]). Status is `completed`, or `incomplete`
/// (with `incomplete_details.reason`) when the answer stopped at the token
/// limit or a content filter. The API sends no `output_text`: that is a
/// property the SDKs compute.
pub fn encode_response(
    resp: &ChatResponse,
    id: &str,
    created_at: u64,
    echo: &Map<String, Value>,
) -> Value {
    let reason = incomplete_reason(resp.choices.first().and_then(|c| c.finish_reason.as_ref()));
    let custom_tools = custom_tool_names(echo);
    response_object(
        ResponseState {
            id,
            created_at,
            model: &resp.model,
            status: if reason.is_some() {
                "incomplete"
            } else {
                "completed"
            },
            output: output_items(resp, id, &custom_tools),
            usage: resp.usage.as_ref(),
            incomplete_reason: reason,
            error: None,
        },
        echo,
    )
}

/// The JSON key whose string value a Responses host encrypted for itself.
const ENCRYPTED_KEY: &[u8] = b"\"encrypted_content\"";

/// A fingerprint of the first `encrypted_content` string in `bytes` (a
/// request body, or an answer), or `None` when it holds none. A
/// conversation replays its reasoning items oldest first, so the first one
/// names the answer that started the replayed history: the key by which
/// llm-link remembers which provider key can read it.
pub fn first_encrypted(bytes: &[u8]) -> Option<u64> {
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&bytes[from..], ENCRYPTED_KEY) {
        let after = from + i + ENCRYPTED_KEY.len();
        if let Some(s) = string_after_colon(&bytes[after..]) {
            return Some(fingerprint(s));
        }
        from = after;
    }
    None
}

/// The raw bytes of a JSON string that follows `: ` at the start of `rest`
/// (escapes kept as written), when it is complete.
fn string_after_colon(rest: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    while rest.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    if rest.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    while rest.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    if rest.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let mut j = start;
    while j < rest.len() {
        match rest[j] {
            b'\\' => j += 2,
            b'"' => return (j > start).then(|| &rest[start..j]),
            _ => j += 1,
        }
    }
    None
}

/// FNV-1a, 64 bits: stable across runs and replicas, and cheap.
fn fingerprint(s: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Finds [`first_encrypted`] in an answer that arrives in pieces, holding
/// back at most what one encrypted string needs (bounded).
#[derive(Debug, Default)]
pub struct EncryptedScanner {
    held: Vec<u8>,
    found: Option<u64>,
    gave_up: bool,
}

/// The most bytes an [`EncryptedScanner`] holds while a string is open.
const MAX_HELD: usize = 4 * 1024 * 1024;

impl EncryptedScanner {
    /// Feeds the next piece; the fingerprint once found.
    pub fn feed(&mut self, piece: &[u8]) -> Option<u64> {
        if self.found.is_some() || self.gave_up {
            return self.found;
        }
        self.held.extend_from_slice(piece);
        if let Some(h) = first_encrypted(&self.held) {
            self.found = Some(h);
            self.held = Vec::new();
            return self.found;
        }
        // Keep from an unfinished key-and-string on, else a tail that may
        // hold the start of the key.
        let keep_from = match memchr::memmem::rfind(&self.held, ENCRYPTED_KEY) {
            Some(i) => i,
            None => self.held.len().saturating_sub(ENCRYPTED_KEY.len()),
        };
        self.held.drain(..keep_from);
        if self.held.len() > MAX_HELD {
            self.gave_up = true;
            self.held = Vec::new();
        }
        None
    }

    pub fn found(&self) -> Option<u64> {
        self.found
    }
}

/// The body without the `encrypted_content` of its input's reasoning items,
/// for a provider key that cannot read them (another organisation's
/// encryption fails the whole request); `None` when there is none to drop
/// or the body is not a JSON object.
pub fn strip_encrypted(body: &[u8]) -> Option<Vec<u8>> {
    memchr::memmem::find(body, ENCRYPTED_KEY)?;
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let items = v.get_mut("input")?.as_array_mut()?;
    let mut dropped = 0;
    for item in items.iter_mut() {
        if let Some(o) = item.as_object_mut() {
            if o.remove("encrypted_content").is_some() {
                dropped += 1;
            }
        }
    }
    (dropped > 0).then(|| crate::json::value_bytes(&v))
}

/// An error body in OpenAI's shape, which the Responses API shares.
pub fn error_body(message: &str, kind: &str, code: Option<&str>, param: Option<&str>) -> Value {
    crate::openai::error_body(message, kind, code, param)
}

#[cfg(test)]
mod tests;
