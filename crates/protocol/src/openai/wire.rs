//! OpenAI wire types, as the API documents them. Optional fields stay
//! optional so that the many OpenAI-compatible hosts, which each omit
//! different fields, still decode.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireRole {
    System,
    /// OpenAI's newer name for system instructions.
    Developer,
    User,
    Assistant,
    Tool,
    /// Legacy function-result role; treated as `tool`.
    Function,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum WireContent {
    Text(String),
    Parts(Vec<WirePart>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WirePart {
    Text {
        text: String,
    },
    ImageUrl {
        image_url: WireImageUrl,
    },
    /// Assistant refusals replayed in history; kept as text.
    Refusal {
        refusal: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum WireImageUrl {
    Object {
        url: String,
        #[serde(default)]
        detail: Option<String>,
    },
    /// Some clients send the URL as a bare string.
    Bare(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireMessage {
    pub role: WireRole,
    #[serde(default)]
    pub content: Option<WireContent>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub reasoning_content: Option<String>,
}

/// `function.arguments` is a JSON string per the spec, but some hosts send
/// an object; both decode to the JSON text.
fn arguments_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
    })
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct WireFunctionCall {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(deserialize_with = "arguments_text")]
    pub arguments: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct WireToolCall {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub function: WireFunctionCall,
}

/// A tool offered to the model.
pub type WireTool = crate::wire::WireTool<WireFunctionDef>;

crate::wire::wire_function_def!(#[serde(default)]);

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum WireToolChoice {
    Mode(String),
    Named {
        #[serde(rename = "type", default)]
        kind: Option<String>,
        function: WireNamedFunction,
    },
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireNamedFunction {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum WireStop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: WireJsonSchema },
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireJsonSchema {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub schema: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct WireStreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

// ---- responses ----

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct WirePromptDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct WireCompletionDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default)]
pub struct WireUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<WirePromptDetails>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<WireCompletionDetails>,
    /// DeepSeek reports cache hits here.
    #[serde(skip_serializing)]
    pub prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct WireResponseMessage {
    pub content: Option<String>,
    pub reasoning_content: Option<String>,
    /// Some hosts (OpenRouter, vLLM) call it `reasoning`.
    pub reasoning: Option<String>,
    pub tool_calls: Option<Vec<WireToolCall>>,
    pub refusal: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct WireChoice {
    pub index: u32,
    pub message: WireResponseMessage,
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct WireResponse {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<WireChoice>,
    pub usage: Option<WireUsage>,
    pub system_fingerprint: Option<String>,
}

// The stream chunk types below give each field its own default: one
// `#[serde(default)]` on the struct would build a whole default value for
// every chunk decoded (about 2% more instructions per streamed chunk).

#[derive(Debug, Clone, Deserialize, Default)]
pub struct WireDelta {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub reasoning_content: Option<String>,
    #[serde(default)]
    pub reasoning: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireChunkChoice {
    #[serde(default)]
    pub index: u32,
    #[serde(default)]
    pub delta: WireDelta,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireChunk {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub created: Option<u64>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub choices: Vec<WireChunkChoice>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
    /// An error reported in-band by the upstream.
    #[serde(default)]
    pub error: Option<Value>,
}

// ---- embeddings ----

/// Declares an enum of the four shapes OpenAI takes for text to read: a
/// string, strings, one token array or token arrays. A type per field rather
/// than one shared type because serde names the type in the error a client
/// gets for a bad value (`data did not match any variant of untagged enum
/// WirePrompt`).
macro_rules! text_or_tokens {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(untagged)]
        pub enum $name {
            One(String),
            Many(Vec<String>),
            Tokens(Vec<u32>),
            ManyTokens(Vec<Vec<u32>>),
        }
    };
}

text_or_tokens!(
    /// `input` of an embeddings request.
    WireEmbeddingInput
);

text_or_tokens!(
    /// `prompt` of a legacy completions request.
    WirePrompt
);

#[derive(Debug, Clone, Deserialize)]
pub struct WireEmbeddingItem {
    #[serde(default)]
    pub index: usize,
    pub embedding: Vec<f32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireEmbeddingResponse {
    #[serde(default)]
    pub model: String,
    pub data: Vec<WireEmbeddingItem>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
}
