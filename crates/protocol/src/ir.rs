//! The internal model every wire format is decoded into and encoded from.
//!
//! Client codecs decode their requests into [`ChatRequest`] and encode
//! [`ChatResponse`] / [`ChatChunk`] back; provider codecs do the reverse.
//! Nothing here knows about HTTP.

use serde_json::{Map, Value};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// An `http(s)://` address the provider fetches itself.
    Url(String),
    /// Inline bytes, base64-encoded, with their media type (`image/png`, …).
    Base64 { media_type: String, data: String },
}

impl ImageSource {
    /// Parses an OpenAI-style `image_url.url`, which is either a plain URL or
    /// a `data:<media type>;base64,<data>` URI.
    pub fn from_url(url: &str) -> ImageSource {
        if let Some(rest) = url.strip_prefix("data:") {
            if let Some((meta, data)) = rest.split_once(',') {
                if let Some(media_type) = meta.strip_suffix(";base64") {
                    return ImageSource::Base64 {
                        media_type: media_type.to_string(),
                        data: data.to_string(),
                    };
                }
            }
        }
        ImageSource::Url(url.to_string())
    }

    /// The OpenAI-style URL form (`data:` URI for inline bytes).
    pub fn to_url(&self) -> String {
        match self {
            ImageSource::Url(u) => u.clone(),
            ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub source: ImageSource,
    /// OpenAI's `detail` hint (`low`, `high`, `auto`), when given.
    pub detail: Option<String>,
}

/// One part of a message's content.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentPart {
    Text(String),
    Image(Image),
}

/// A function the model asked to call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the JSON text the model produced.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentPart>,
    /// Optional participant name (OpenAI `name`).
    pub name: Option<String>,
    /// Calls requested by an assistant message.
    pub tool_calls: Vec<ToolCall>,
    /// For `Role::Tool`: the call this message answers.
    pub tool_call_id: Option<String>,
    /// Reasoning text an assistant produced, kept apart from `content`.
    pub reasoning: Option<String>,
}

impl Message {
    pub fn new(role: Role, content: Vec<ContentPart>) -> Message {
        Message {
            role,
            content,
            name: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            reasoning: None,
        }
    }

    pub fn text(role: Role, text: impl Into<String>) -> Message {
        Message::new(role, vec![ContentPart::Text(text.into())])
    }

    /// All text parts joined, images left out.
    pub fn text_content(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let ContentPart::Text(t) = part {
                out.push_str(t);
            }
        }
        out
    }

    pub fn has_images(&self) -> bool {
        self.content
            .iter()
            .any(|p| matches!(p, ContentPart::Image(_)))
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
    pub strict: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    Auto,
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this tool.
    Function(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        strict: Option<bool>,
        description: Option<String>,
    },
}

/// Which of OpenAI's two names the client used for the output limit, so a
/// same-format encoder can answer in kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxTokensField {
    #[default]
    MaxTokens,
    MaxCompletionTokens,
}

/// How reasoning text reaches a client that did not ask for it separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReasoningOutput {
    /// In its own field (`reasoning_content`, thinking blocks, …). Default.
    #[default]
    Separate,
    /// Inline in the content, wrapped in `<think>…</think>`.
    Inline,
    /// Not sent at all.
    Drop,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub parallel_tool_calls: Option<bool>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub max_tokens: Option<u32>,
    pub max_tokens_field: MaxTokensField,
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub n: Option<u32>,
    pub user: Option<String>,
    pub response_format: Option<ResponseFormat>,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`: the client wants a final usage chunk.
    pub include_usage: bool,
    /// Where the client wants reasoning text.
    pub reasoning_output: ReasoningOutput,
    /// Fields this model does not know, kept so a same-format encoder can
    /// forward them unchanged.
    pub extra: Map<String, Value>,
    /// The wire format `extra` came from (`openai`, `anthropic`, `ollama`):
    /// an encoder forwards `extra` only to its own format.
    pub extra_wire: Option<&'static str>,
}

/// Token accounting for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens served from the provider's cache (a subset of `prompt_tokens`).
    pub cached_tokens: Option<u64>,
    /// Completion tokens spent on reasoning (a subset of `completion_tokens`).
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        // Saturating: both counts are whatever number the upstream sent.
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    /// A provider-specific reason passed along as is.
    Other(String),
}

impl FinishReason {
    /// Parses OpenAI's spelling (also accepts the legacy `function_call`).
    pub fn from_openai(s: &str) -> FinishReason {
        match s {
            "stop" => FinishReason::Stop,
            "length" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            other => FinishReason::Other(other.to_string()),
        }
    }

    pub fn as_openai(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(s) => s,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub index: u32,
    pub message: Message,
    pub finish_reason: Option<FinishReason>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub id: String,
    pub model: String,
    /// Unix seconds.
    pub created: u64,
    pub choices: Vec<Choice>,
    pub usage: Option<Usage>,
    pub system_fingerprint: Option<String>,
}

/// A fragment of a tool call in a stream. The first fragment of a call
/// carries `id` and `name`; later ones carry more `arguments` text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolCallDelta {
    /// Position of the call within the message.
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChoiceDelta {
    pub index: u32,
    pub role: Option<Role>,
    pub content: Option<String>,
    pub reasoning: Option<String>,
    pub tool_calls: Vec<ToolCallDelta>,
    pub finish_reason: Option<FinishReason>,
}

impl ChoiceDelta {
    pub fn is_empty(&self) -> bool {
        self.role.is_none()
            && self.content.as_deref().is_none_or(str::is_empty)
            && self.reasoning.as_deref().is_none_or(str::is_empty)
            && self.tool_calls.is_empty()
            && self.finish_reason.is_none()
    }
}

/// One event of a streamed answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatChunk {
    /// The upstream's id for the whole stream, when it sent one.
    pub id: Option<String>,
    pub model: Option<String>,
    pub created: Option<u64>,
    pub choices: Vec<ChoiceDelta>,
    /// Usage, usually only on the last chunk.
    pub usage: Option<Usage>,
}

/// An error reported inside a stream that had already started.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamError {
    pub message: String,
    pub kind: String,
}

/// What a stream decoder yields.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Chunk(ChatChunk),
    Error(StreamError),
    /// The upstream said the stream is complete.
    Done,
}

/// Input to an embedding model.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingInput {
    Text(Vec<String>),
    /// Pre-tokenised input (OpenAI accepts arrays of token ids).
    Tokens(Vec<Vec<u32>>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRequest {
    pub model: String,
    pub input: EmbeddingInput,
    pub dimensions: Option<u32>,
    pub encoding_format: Option<String>,
    pub user: Option<String>,
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingResponse {
    pub model: String,
    pub data: Vec<Vec<f32>>,
    pub usage: Usage,
}
