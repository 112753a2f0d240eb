//! Responses API wire types, as the API documents them (openai-python's
//! `types/responses`). Input items and content parts are told apart by
//! their `type` in [`super`] first, so that an error names the exact item;
//! the structs here decode one known item each.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `arguments` (and a custom tool's `input`) are JSON text per the API;
/// some clients send an object, kept as its JSON text.
fn text_or_json<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    })
}

/// A `message` item (also an item with a `role` and no `type`).
#[derive(Debug, Clone, Deserialize)]
pub struct WireMessageItem {
    pub role: String,
    /// A string or an array of content parts.
    pub content: Value,
}

/// A `function_call` item: a call the model made, replayed as history.
#[derive(Debug, Clone, Deserialize)]
pub struct WireFunctionCall {
    pub call_id: String,
    pub name: String,
    /// The namespace of a tool offered in a `namespace` tool.
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default, deserialize_with = "text_or_json")]
    pub arguments: String,
}

/// A `function_call_output` item: the result of a call. `output` is a
/// string or an array of `input_text` / `input_image` parts.
#[derive(Debug, Clone, Deserialize)]
pub struct WireFunctionCallOutput {
    pub call_id: String,
    pub output: Value,
}

/// A `custom_tool_call` item (a free-form tool's call, e.g. Codex's
/// `apply_patch`).
#[derive(Debug, Clone, Deserialize)]
pub struct WireCustomToolCall {
    pub call_id: String,
    pub name: String,
    #[serde(default, deserialize_with = "text_or_json")]
    pub input: String,
}

/// A `local_shell_call` item (Codex's `local_shell` tool).
#[derive(Debug, Clone, Deserialize)]
pub struct WireLocalShellCall {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub call_id: Option<String>,
    #[serde(default)]
    pub action: Value,
}

/// A `local_shell_call_output` item; `id` is the call's id.
#[derive(Debug, Clone, Deserialize)]
pub struct WireLocalShellCallOutput {
    #[serde(alias = "call_id")]
    pub id: String,
    pub output: Value,
}

/// A text in a reasoning item's `summary` or `content`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireReasoningText {
    #[serde(default)]
    pub text: String,
}

/// A `reasoning` item. `encrypted_content` (only an OpenAI model can read
/// it) is not kept.
#[derive(Debug, Clone, Deserialize)]
pub struct WireReasoning {
    #[serde(default)]
    pub summary: Vec<WireReasoningText>,
    #[serde(default)]
    pub content: Option<Vec<WireReasoningText>>,
}

/// An `input_text`, `output_text` part.
#[derive(Debug, Clone, Deserialize)]
pub struct WireTextPart {
    pub text: String,
}

/// A `refusal` part.
#[derive(Debug, Clone, Deserialize)]
pub struct WireRefusalPart {
    pub refusal: String,
}

/// An `input_image` part: `image_url` (a URL or a `data:` URI) or a
/// `file_id` of an uploaded file.
#[derive(Debug, Clone, Deserialize)]
pub struct WireImagePart {
    #[serde(default)]
    pub image_url: Option<String>,
    #[serde(default)]
    pub file_id: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

/// A `function` tool, in the flat Responses shape (no `function` wrapper).
#[derive(Debug, Clone, Deserialize)]
pub struct WireFunctionTool {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

/// A `custom` (free-form) tool: the model writes plain text, optionally
/// constrained by a grammar (`format`).
#[derive(Debug, Clone, Deserialize)]
pub struct WireCustomTool {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub format: Option<Value>,
}

/// `tool_choice` as an object.
#[derive(Debug, Clone, Deserialize)]
pub struct WireToolChoiceObject {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `allowed_tools`: `auto` or `required`.
    #[serde(default)]
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum WireToolChoice {
    Mode(String),
    Object(WireToolChoiceObject),
}

/// `text.format`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireTextFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        strict: Option<bool>,
    },
}

/// `text`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireText {
    #[serde(default)]
    pub format: Option<WireTextFormat>,
    #[serde(default)]
    pub verbosity: Option<String>,
}

/// `reasoning`.
#[derive(Debug, Clone, Deserialize)]
pub struct WireReasoningConfig {
    #[serde(default)]
    pub effort: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, Default, PartialEq, Eq)]
pub struct WireInputDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, Default, PartialEq, Eq)]
pub struct WireOutputDetails {
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

/// `usage` of a response.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct WireUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub input_tokens_details: Option<WireInputDetails>,
    pub output_tokens_details: Option<WireOutputDetails>,
}

/// A `namespace` tool: a named group of function tools (Codex's sub-agent
/// tools).
#[derive(Debug, Clone, Deserialize)]
pub struct WireNamespaceTool {
    pub name: String,
    #[serde(default)]
    pub tools: Vec<serde_json::Value>,
}
