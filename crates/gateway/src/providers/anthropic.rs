//! The native Anthropic wire format: `x-api-key` + `anthropic-version`,
//! `/v1/messages` (JSON and SSE), `/v1/messages/count_tokens`, `/v1/models`;
//! [`super::adapter`] holds the plumbing every format shares.

use super::adapter::{self, Adapter, WireFormat};
use super::http::{self, Auth};
use super::Endpoint;
use crate::config::ProviderConfig;
use crate::error::ApiError;
use crate::presets::Wire;
use llm_link_protocol::anthropic::{self, stream::StreamDecoder};
use llm_link_protocol::ir::{ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse};
use llm_link_protocol::json::DecodeError;
use serde_json::Value;

/// `max_tokens` sent when a client from another format gave none (Anthropic
/// requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

pub type AnthropicProvider = Adapter<Anthropic>;

pub struct Anthropic;

impl WireFormat for Anthropic {
    const WIRE: Wire = Wire::Anthropic;
    const NAME: &'static str = "Anthropic";
    const PATHS: &'static [&'static str] =
        &["/v1/messages", "/v1/messages/count_tokens", "/v1/models"];
    const JOIN: fn(&str, &str) -> String = http::join_root;
    const FIXED_HEADERS: &'static [(&'static str, &'static str)] =
        &[("anthropic-version", anthropic::ANTHROPIC_VERSION)];
    /// Client request headers that are Anthropic request options.
    const FORWARDED_HEADERS: &'static [&'static str] = &["anthropic-beta", "anthropic-version"];
    const CHAT: Endpoint = Endpoint::Messages;
    const MODELS: &'static str = "/v1/models";
    type Decoder = StreamDecoder;
    type ModelsError = serde_json::Error;

    fn auth(cfg: &ProviderConfig) -> Auth<'_> {
        match &cfg.api_key {
            Some(key) => Auth::Header("x-api-key", key.expose()),
            None => Auth::None,
        }
    }

    fn encode_chat(_cfg: &ProviderConfig, req: &ChatRequest) -> Result<Value, DecodeError> {
        anthropic::encode_messages_request(req, DEFAULT_MAX_TOKENS)
    }

    fn decode_chat(body: &[u8]) -> Result<ChatResponse, DecodeError> {
        anthropic::decode_messages_response(body)
    }

    fn encode_embed(
        cfg: &ProviderConfig,
        _req: &EmbeddingRequest,
    ) -> Result<(Endpoint, Value), ApiError> {
        Err(ApiError::bad_request(format!(
            "provider `{}` is Anthropic, which has no embeddings API; route embedding models to an OpenAI-compatible or Ollama provider",
            cfg.name
        )))
    }

    /// Never reached: [`Self::encode_embed`] refuses every request.
    fn decode_embed(_body: &[u8]) -> Result<EmbeddingResponse, DecodeError> {
        Err(DecodeError::body("Anthropic has no embeddings API"))
    }

    fn decode_models(body: &[u8]) -> Result<Vec<String>, serde_json::Error> {
        adapter::data_ids(body)
    }
}
