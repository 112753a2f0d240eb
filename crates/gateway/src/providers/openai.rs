//! The one wire format of every OpenAI-compatible provider (OpenAI, Zhipu,
//! Aliyun, Volcengine, Tencent, DeepSeek, Moonshot, MiniMax, any
//! compatible endpoint); the preset table supplies the differences between
//! vendors, [`super::adapter`] the plumbing every format shares.

use super::adapter::{self, Adapter, WireFormat};
use super::http::{self, Auth};
use super::Endpoint;
use crate::config::ProviderConfig;
use crate::error::ApiError;
use crate::presets::{KeyStyle, Wire};
use llm_link_protocol::ir::{ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse};
use llm_link_protocol::json::DecodeError;
use llm_link_protocol::openai::{self, stream::ChunkDecoder, RequestOptions};
use serde_json::Value;

pub type OpenAiProvider = Adapter<OpenAi>;

/// `Authorization: Bearer` (when the preset says so), `/chat/completions`,
/// `/completions`, `/embeddings`, `/models` (and `/responses` for a host
/// that serves the Responses API) under an OpenAI-style base URL.
pub struct OpenAi;

impl WireFormat for OpenAi {
    const WIRE: Wire = Wire::OpenAi;
    const NAME: &'static str = "OpenAI";
    const PATHS: &'static [&'static str] = &[
        "/chat/completions",
        "/completions",
        "/embeddings",
        "/models",
        "/responses",
    ];
    const JOIN: fn(&str, &str) -> String = http::join_url;
    const CHAT: Endpoint = Endpoint::ChatCompletions;
    const MODELS: &'static str = "/models";
    type Decoder = ChunkDecoder;
    type ModelsError = serde_json::Error;

    fn auth(cfg: &ProviderConfig) -> Auth<'_> {
        match (&cfg.api_key, cfg.preset.key_style) {
            (Some(key), KeyStyle::Bearer) => Auth::Bearer(key.expose()),
            _ => Auth::None,
        }
    }

    fn encode_chat(cfg: &ProviderConfig, req: &ChatRequest) -> Result<Value, DecodeError> {
        Ok(openai::encode_chat_request(
            req,
            RequestOptions {
                legacy_max_tokens: !cfg.preset.max_completion_tokens,
                forward_extra: true,
                top_k: cfg.preset.kind != "openai",
            },
        ))
    }

    fn decode_chat(body: &[u8]) -> Result<ChatResponse, DecodeError> {
        openai::decode_chat_response(body)
    }

    fn encode_embed(
        _cfg: &ProviderConfig,
        req: &EmbeddingRequest,
    ) -> Result<(Endpoint, Value), ApiError> {
        Ok((Endpoint::Embeddings, openai::encode_embedding_request(req)))
    }

    fn decode_embed(body: &[u8]) -> Result<EmbeddingResponse, DecodeError> {
        openai::decode_embedding_response(body)
    }

    fn decode_models(body: &[u8]) -> Result<Vec<String>, serde_json::Error> {
        adapter::data_ids(body)
    }
}
