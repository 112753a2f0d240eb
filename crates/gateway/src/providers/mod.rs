//! Upstream providers: the [`Provider`] trait, its one implementation
//! ([`adapter::Adapter`]) with the plumbing every upstream shares, one module
//! per wire format with what differs, and [`build`], which picks the format
//! a provider's preset names.

pub mod adapter;
pub mod anthropic;
pub mod client;
pub mod h1;
pub mod http;
pub mod idle;
pub mod ollama;
pub mod openai;
pub mod stream;

use crate::config::ProviderConfig;
use crate::error::ApiError;
use crate::presets::Wire;
use ::http::{HeaderMap, HeaderValue, StatusCode};
use bytes::Bytes;
use futures_util::Stream;
use llm_link_protocol::ir::{
    ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, StreamEvent,
};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// Upstream body bytes; an `Err` ends the stream (timeout, reset).
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, ApiError>> + Send>>;
/// Decoded stream events; an `Err` ends the stream.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ApiError>> + Send>>;

/// A same-format endpoint that can be forwarded byte for byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Messages,
    CountTokens,
    OllamaChat,
    OllamaGenerate,
    OllamaEmbed,
    OllamaEmbeddings,
    /// The Responses API, forwarded to a host that serves it.
    Responses,
}

impl Endpoint {
    /// The path: relative to an OpenAI-style base URL (ending in `/v1` or
    /// the vendor's equivalent) for OpenAI endpoints, relative to the host
    /// root for Anthropic and Ollama ones.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Messages => "/v1/messages",
            Endpoint::CountTokens => "/v1/messages/count_tokens",
            Endpoint::OllamaChat => "/api/chat",
            Endpoint::OllamaGenerate => "/api/generate",
            Endpoint::OllamaEmbed => "/api/embed",
            Endpoint::OllamaEmbeddings => "/api/embeddings",
            Endpoint::Responses => "/responses",
        }
    }

    pub fn wire(self) -> Wire {
        match self {
            Endpoint::ChatCompletions | Endpoint::Completions | Endpoint::Embeddings => {
                Wire::OpenAi
            }
            Endpoint::Messages | Endpoint::CountTokens => Wire::Anthropic,
            Endpoint::Responses => Wire::Responses,
            _ => Wire::Ollama,
        }
    }
}

pub enum ForwardBody {
    Full(Bytes),
    Stream(ByteStream),
}

/// A successful upstream answer, forwarded without re-encoding.
pub struct Forwarded {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: ForwardBody,
    /// Time spent waiting on the upstream (to the full body when not streamed,
    /// to the headers when streamed).
    pub upstream_time: Duration,
}

/// One upstream. Implementations map every upstream failure to an
/// [`ApiError`] whose message is safe to show a client.
pub trait Provider: Send + Sync + 'static {
    fn config(&self) -> &ProviderConfig;

    fn name(&self) -> &str {
        &self.config().name
    }

    fn preset_kind(&self) -> &'static str {
        self.config().preset.kind
    }

    fn wire(&self) -> Wire {
        self.config().preset.wire
    }

    /// Whether a client of wire format `wire` can be forwarded byte for byte.
    fn passthrough_for(&self, wire: Wire) -> bool {
        let c = self.config();
        match wire {
            Wire::Responses => {
                self.wire() == Wire::OpenAi
                    && c.passthrough
                    && c.meta.responses.unwrap_or(c.preset.responses_api)
            }
            _ => self.wire() == wire && c.passthrough,
        }
    }

    /// Forwards a same-format body (model already rewritten). `client_headers`
    /// are the client's request headers; adapters copy only the ones their
    /// API defines as request options (e.g. `anthropic-beta`).
    fn forward(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        stream: bool,
        client_headers: &HeaderMap,
    ) -> BoxFuture<'_, Result<Forwarded, ApiError>>;

    fn chat(&self, req: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ApiError>>;

    fn chat_stream(&self, req: ChatRequest) -> BoxFuture<'_, Result<EventStream, ApiError>>;

    fn embed(&self, req: EmbeddingRequest) -> BoxFuture<'_, Result<EmbeddingResponse, ApiError>>;

    /// Model ids the upstream reports.
    fn list_models(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>>;
}

/// Builds the adapter for a provider's wire format.
pub fn build(cfg: ProviderConfig) -> Result<Arc<dyn Provider>, String> {
    match cfg.preset.wire {
        Wire::OpenAi => Ok(Arc::new(openai::OpenAiProvider::new(cfg)?)),
        Wire::Anthropic => Ok(Arc::new(anthropic::AnthropicProvider::new(cfg)?)),
        Wire::Ollama => Ok(Arc::new(ollama::OllamaProvider::new(cfg)?)),
        Wire::Responses => Err("the Responses API is a client format, not a provider's".into()),
    }
}

/// A JSON request body, as serde_json would write it but with text escaped
/// a word at a time (`Value`'s `Display` costs several times as much).
pub(crate) fn json_bytes(v: &serde_json::Value) -> Bytes {
    Bytes::from(llm_link_protocol::json::value_bytes(v))
}
