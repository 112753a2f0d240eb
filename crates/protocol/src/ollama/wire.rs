//! Ollama wire types, as the API documents them (`/api/chat`,
//! `/api/generate`, `/api/embed`, `/api/embeddings`, `/api/tags`).
//!
//! Request types are strict where Ollama itself is strict (roles, content
//! as a string) so errors name the field; response types default every
//! field so older and newer Ollama versions both decode.

use serde::Deserialize;
use serde_json::Value;
use std::fmt;

/// A message role. Ollama lowercases roles before matching, so `User`
/// and `USER` are accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum WireRole {
    System,
    User,
    Assistant,
    Tool,
}

/// Why a role string was refused.
#[derive(Debug)]
pub struct UnknownRole(String);

impl fmt::Display for UnknownRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown role `{}`; expected `system`, `user`, `assistant` or `tool`",
            self.0
        )
    }
}

impl TryFrom<String> for WireRole {
    type Error = UnknownRole;

    fn try_from(s: String) -> Result<WireRole, UnknownRole> {
        match s.to_ascii_lowercase().as_str() {
            "system" => Ok(WireRole::System),
            "user" => Ok(WireRole::User),
            "assistant" => Ok(WireRole::Assistant),
            "tool" => Ok(WireRole::Tool),
            _ => Err(UnknownRole(s)),
        }
    }
}

/// `tool_calls[].function`. `arguments` is a JSON object on the wire;
/// anything else is kept as given and dealt with by the codec.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct WireFunctionCall {
    /// Position of the call (newer Ollama versions send it).
    pub index: Option<u32>,
    pub name: String,
    pub arguments: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WireToolCall {
    /// Newer Ollama versions (and some clients) give calls an id.
    #[serde(default)]
    pub id: Option<String>,
    pub function: WireFunctionCall,
}

/// One message of an `/api/chat` request.
#[derive(Debug, Clone, Deserialize)]
pub struct WireMessage {
    pub role: WireRole,
    #[serde(default)]
    pub content: Option<String>,
    /// Base64-encoded images (no `data:` prefix on the real API).
    #[serde(default)]
    pub images: Option<Vec<String>>,
    /// Reasoning text of an assistant turn replayed in history.
    #[serde(default)]
    pub thinking: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<WireToolCall>>,
    /// For `tool` messages: the function whose result this is.
    #[serde(default)]
    pub tool_name: Option<String>,
    /// For `tool` messages, when the client knows the call id.
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

// Ollama's tool definitions have no `strict` flag.
crate::wire::wire_function_def!(#[serde(skip)]);

/// A tool offered to the model (same shape as OpenAI's).
pub type WireTool = crate::wire::WireTool<WireFunctionDef>;

// ---- responses ----

// A streamed answer decodes these two for every line, so each field has its
// own default: one `#[serde(default)]` on the struct would build a whole
// default value per line (measurably slower).

#[derive(Debug, Clone, Deserialize, Default)]
pub struct WireResponseMessage {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub thinking: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<WireToolCall>>,
}

/// A non-streamed `/api/chat` (or `/api/generate`) answer, and also one
/// line of a streamed one.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct WireChatResponse {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub message: Option<WireResponseMessage>,
    /// `/api/generate` puts the text here instead of `message.content`.
    #[serde(default)]
    pub response: Option<String>,
    /// `/api/generate` puts reasoning here.
    #[serde(default)]
    pub thinking: Option<String>,
    #[serde(default)]
    pub done: bool,
    #[serde(default)]
    pub done_reason: Option<String>,
    #[serde(default)]
    pub prompt_eval_count: Option<u64>,
    #[serde(default)]
    pub eval_count: Option<u64>,
    /// An error reported in-band.
    #[serde(default)]
    pub error: Option<Value>,
}

// ---- embeddings ----

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct WireEmbedResponse {
    pub model: String,
    /// `/api/embed`.
    pub embeddings: Option<Vec<Vec<f32>>>,
    /// Legacy `/api/embeddings`.
    pub embedding: Option<Vec<f32>>,
    pub prompt_eval_count: Option<u64>,
}

// ---- model listing ----

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct WireTagEntry {
    pub name: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct WireTags {
    #[serde(default)]
    pub models: Vec<WireTagEntry>,
}
