//! Anthropic Messages wire types, as the API documents them.
//!
//! Request content blocks are decoded one by one from `serde_json::Value`
//! (see `super::decode_block`) so that an unsupported block type gets its own
//! clear message naming `messages[i].content[j].type`; the typed structs here
//! are the shapes of each block once its type is known. Response and stream
//! types are lenient: unknown block, delta and event types decode to `Other`
//! (the API may add new ones at any time).

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::json::DecodeError;

// ---- requests ----

#[derive(Debug, Clone, Deserialize)]
pub struct WireMessage {
    pub role: String,
    /// A string or an array of content blocks; checked by the decoder.
    pub content: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireTextBlock {
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireImageBlock {
    pub source: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireBase64Source {
    pub media_type: String,
    pub data: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireUrlSource {
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireToolUseBlock {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub input: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireToolResultBlock {
    pub tool_use_id: String,
    #[serde(default)]
    pub content: Option<Value>,
    #[serde(default)]
    pub is_error: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireThinkingBlock {
    #[serde(default)]
    pub thinking: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireDocumentBlock {
    pub source: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireTextSource {
    pub data: String,
}

/// A custom (client-executed) tool. Server tools have a versioned `type` and
/// are refused before this is decoded.
#[derive(Debug, Clone, Deserialize)]
pub struct WireTool {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub input_schema: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireToolChoice {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub disable_parallel_tool_use: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireMetadata {
    #[serde(default)]
    pub user_id: Option<String>,
}

// ---- responses ----

/// `usage` of a message, of `message_start` and (all optional, cumulative)
/// of `message_delta`.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(default)]
pub struct WireUsage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_creation_input_tokens: Option<u64>,
    pub cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    /// Fields present in `later` win; the rest keep their earlier values.
    pub fn merge(self, later: WireUsage) -> WireUsage {
        WireUsage {
            input_tokens: later.input_tokens.or(self.input_tokens),
            output_tokens: later.output_tokens.or(self.output_tokens),
            cache_creation_input_tokens: later
                .cache_creation_input_tokens
                .or(self.cache_creation_input_tokens),
            cache_read_input_tokens: later
                .cache_read_input_tokens
                .or(self.cache_read_input_tokens),
        }
    }
}

/// A content block of a response (or of `content_block_start`).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireResponseBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        input: Value,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
    },
    /// `redacted_thinking`, server tool blocks and anything newer.
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct WireResponse {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub model: String,
    pub content: Vec<WireResponseBlock>,
    pub stop_reason: Option<String>,
    pub usage: Option<WireUsage>,
    /// Present when the body is an error (`"type": "error"`).
    pub error: Option<WireError>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct WireError {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

// ---- streams ----

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct WireStreamMessage {
    pub id: String,
    pub model: String,
    pub usage: Option<WireUsage>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireDelta {
    TextDelta {
        #[serde(default)]
        text: String,
    },
    InputJsonDelta {
        #[serde(default)]
        partial_json: String,
    },
    ThinkingDelta {
        #[serde(default)]
        thinking: String,
    },
    /// `signature_delta`, `citations_delta` and anything newer.
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct WireMessageDelta {
    #[serde(default)]
    pub stop_reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WireStreamEvent {
    MessageStart {
        message: WireStreamMessage,
    },
    ContentBlockStart {
        index: u32,
        content_block: WireResponseBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: WireDelta,
    },
    ContentBlockStop {
        #[allow(dead_code)]
        index: u32,
    },
    MessageDelta {
        #[serde(default)]
        delta: WireMessageDelta,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Ping,
    Error {
        #[serde(default)]
        error: WireError,
    },
    /// Event types added after this was written.
    #[serde(other)]
    Other,
}

/// Decodes `value` as `T`, naming `path` plus the inner path in errors (the
/// `Value` counterpart of [`crate::json::decode_field`]).
pub fn from_value<T: DeserializeOwned>(path: &str, value: Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| crate::json::path_error(path, e))
}
