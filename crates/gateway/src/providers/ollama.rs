//! The native Ollama wire format: `/api/chat` (JSON and NDJSON),
//! `/api/generate`, `/api/embed`, `/api/tags`. No key unless one is
//! configured (then Bearer, for Ollama behind an authenticating proxy).
//! [`super::adapter`] holds the plumbing every format shares.

use super::adapter::{Adapter, WireFormat};
use super::http::{self, Auth};
use super::Endpoint;
use crate::config::ProviderConfig;
use crate::error::ApiError;
use crate::presets::Wire;
use llm_link_protocol::ir::{ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse};
use llm_link_protocol::json::DecodeError;
use llm_link_protocol::ollama::{self, stream::NdjsonDecoder};
use serde_json::Value;

pub type OllamaProvider = Adapter<Ollama>;

pub struct Ollama;

impl WireFormat for Ollama {
    const WIRE: Wire = Wire::Ollama;
    const NAME: &'static str = "Ollama";
    const PATHS: &'static [&'static str] = &[
        "/api/chat",
        "/api/generate",
        "/api/embed",
        "/api/embeddings",
        "/api/tags",
    ];
    const JOIN: fn(&str, &str) -> String = http::join_root;
    const CHAT: Endpoint = Endpoint::OllamaChat;
    const MODELS: &'static str = "/api/tags";
    type Decoder = NdjsonDecoder;
    type ModelsError = DecodeError;

    fn auth(cfg: &ProviderConfig) -> Auth<'_> {
        // No key by default; one configured is sent as a Bearer token (for
        // an Ollama behind an authenticating proxy).
        match &cfg.api_key {
            Some(key) => Auth::Bearer(key.expose()),
            None => Auth::None,
        }
    }

    fn encode_chat(_cfg: &ProviderConfig, req: &ChatRequest) -> Result<Value, DecodeError> {
        ollama::encode_chat_request(req)
    }

    fn decode_chat(body: &[u8]) -> Result<ChatResponse, DecodeError> {
        ollama::decode_chat_response(body)
    }

    fn encode_embed(
        _cfg: &ProviderConfig,
        req: &EmbeddingRequest,
    ) -> Result<(Endpoint, Value), ApiError> {
        ollama::validate_embed_request(req)?;
        Ok((Endpoint::OllamaEmbed, ollama::encode_embed_request(req)))
    }

    fn decode_embed(body: &[u8]) -> Result<EmbeddingResponse, DecodeError> {
        ollama::decode_embed_response(body)
    }

    fn decode_models(body: &[u8]) -> Result<Vec<String>, DecodeError> {
        ollama::decode_tags_response(body)
    }
}
