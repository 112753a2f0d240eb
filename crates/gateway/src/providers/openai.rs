//! The one adapter for every OpenAI-compatible provider (OpenAI, Zhipu,
//! Aliyun, Volcengine, Tencent, DeepSeek, Moonshot, MiniMax, any
//! compatible endpoint); the preset table supplies the differences.

use super::http::{self, MAX_UPSTREAM_BODY};
use super::{BoxFuture, Endpoint, EventStream, Forwarded, Provider};
use crate::config::ProviderConfig;
use crate::error::ApiError;
use crate::presets::KeyStyle;
use ::http::HeaderMap;
use bytes::Bytes;
use llm_link_protocol::ir::{ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse};
use llm_link_protocol::openai::{self, stream::ChunkDecoder, RequestOptions};

pub struct OpenAiProvider {
    cfg: ProviderConfig,
    client: super::http::Clients,
    urls: http::Urls,
}

impl OpenAiProvider {
    pub fn new(cfg: ProviderConfig) -> Result<OpenAiProvider, String> {
        let auth = match (&cfg.api_key, cfg.preset.key_style) {
            (Some(key), KeyStyle::Bearer) => http::Auth::Bearer(key.expose()),
            _ => http::Auth::None,
        };
        let (client, urls) = http::setup(
            &cfg,
            auth,
            &[],
            &[
                "/chat/completions",
                "/completions",
                "/embeddings",
                "/models",
            ],
            http::join_url,
        )?;
        Ok(OpenAiProvider { cfg, client, urls })
    }

    fn post(&self, endpoint: Endpoint, body: Bytes) -> Result<http::UpRequest, ApiError> {
        Ok(http::UpRequest::new(::http::Method::POST, self.urls.get(endpoint.path())?).body(body))
    }

    fn encode(&self, req: &ChatRequest) -> Bytes {
        let wire = openai::encode_chat_request(
            req,
            RequestOptions {
                legacy_max_tokens: !self.cfg.preset.max_completion_tokens,
                forward_extra: true,
                top_k: self.cfg.preset.kind != "openai",
            },
        );
        super::json_bytes(&wire)
    }
}

impl Provider for OpenAiProvider {
    fn config(&self) -> &ProviderConfig {
        &self.cfg
    }

    fn forward(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        stream: bool,
        _client_headers: &HeaderMap,
    ) -> BoxFuture<'_, Result<Forwarded, ApiError>> {
        let req =
            (endpoint.wire() == crate::presets::Wire::OpenAi).then(|| self.post(endpoint, body));
        Box::pin(async move {
            match req {
                Some(req) => http::forward(&self.cfg, &self.client, req?, stream).await,
                None => Err(ApiError::Internal(format!(
                    "{endpoint:?} cannot be forwarded to an OpenAI provider"
                ))),
            }
        })
    }

    fn chat(&self, mut req: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ApiError>> {
        Box::pin(async move {
            req.stream = false;
            let rb = self.post(Endpoint::ChatCompletions, self.encode(&req))?;
            let resp = http::send(&self.cfg, &self.client, rb).await?;
            let bytes = http::read_limited(&self.cfg, resp, MAX_UPSTREAM_BODY).await?;
            openai::decode_chat_response(&bytes)
                .map_err(|e| http::malformed(&self.cfg, "response", e))
        })
    }

    fn chat_stream(&self, mut req: ChatRequest) -> BoxFuture<'_, Result<EventStream, ApiError>> {
        Box::pin(async move {
            req.stream = true;
            let rb = self.post(Endpoint::ChatCompletions, self.encode(&req))?;
            let resp = http::send(&self.cfg, &self.client, rb).await?;
            let bytes = http::idle_stream(&self.cfg, resp);
            Ok(super::stream::decode_events(
                bytes,
                ChunkDecoder::new(),
                self.cfg.name.clone(),
            ))
        })
    }

    fn embed(&self, req: EmbeddingRequest) -> BoxFuture<'_, Result<EmbeddingResponse, ApiError>> {
        Box::pin(async move {
            let body = super::json_bytes(&openai::encode_embedding_request(&req));
            let resp = http::send(
                &self.cfg,
                &self.client,
                self.post(Endpoint::Embeddings, body)?,
            )
            .await?;
            let bytes = http::read_limited(&self.cfg, resp, MAX_UPSTREAM_BODY).await?;
            openai::decode_embedding_response(&bytes)
                .map_err(|e| http::malformed(&self.cfg, "embedding response", e))
        })
    }

    fn list_models(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>> {
        Box::pin(async move {
            let req = http::UpRequest::new(::http::Method::GET, self.urls.get("/models")?);
            let resp = http::send(&self.cfg, &self.client, req).await?;
            let bytes = http::read_limited(&self.cfg, resp, 16 * 1024 * 1024).await?;
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| http::malformed(&self.cfg, "model list", e))?;
            let ids = v
                .get("data")
                .and_then(|d| d.as_array())
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|m| m.get("id").and_then(|i| i.as_str()).map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            Ok(ids)
        })
    }
}
