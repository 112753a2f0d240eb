//! Upstream providers: the [`Provider`] trait, one module per wire format,
//! and the preset table of every kind.

pub mod http;
pub mod openai;
pub mod presets;

use crate::config::ProviderConfig;
use crate::error::ApiError;
use axum::http::{HeaderValue, StatusCode};
use bytes::Bytes;
use futures_util::Stream;
use llm_link_protocol::ir::{
    ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse, StreamEvent,
};
use presets::Wire;
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
}

impl Endpoint {
    /// Path relative to an OpenAI-style base URL (which ends in `/v1` or
    /// the vendor's equivalent).
    pub fn openai_path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
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

    fn wire(&self) -> Wire {
        self.config().preset.wire
    }

    /// Whether a client of wire format `wire` can be forwarded byte for byte.
    fn passthrough_for(&self, wire: Wire) -> bool {
        self.wire() == wire && self.config().passthrough
    }

    /// Forwards a same-format body (model already rewritten).
    fn forward(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        stream: bool,
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
        other => Err(format!(
            "provider `{}`: the {} wire format is not supported by this build",
            cfg.name,
            other.as_str()
        )),
    }
}
