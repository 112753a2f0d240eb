//! The native Ollama adapter: `/api/chat` (JSON and NDJSON), `/api/generate`,
//! `/api/embed`, `/api/tags`. No key unless one is configured (then Bearer,
//! for Ollama behind an authenticating proxy).

use super::http::{self, MAX_UPSTREAM_BODY};
use super::{BoxFuture, Endpoint, EventStream, Forwarded, Provider};
use crate::config::ProviderConfig;
use crate::error::ApiError;
use crate::presets::Wire;
use ::http::HeaderMap;
use bytes::Bytes;
use llm_link_protocol::ir::{ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse};
use llm_link_protocol::ollama::{self, stream::NdjsonDecoder};

pub struct OllamaProvider {
    cfg: ProviderConfig,
    client: super::http::Clients,
    urls: http::Urls,
}

impl OllamaProvider {
    pub fn new(cfg: ProviderConfig) -> Result<OllamaProvider, String> {
        // No key by default; one configured is sent as a Bearer token (for
        // an Ollama behind an authenticating proxy).
        let auth = match &cfg.api_key {
            Some(key) => http::Auth::Bearer(key.expose()),
            None => http::Auth::None,
        };
        let (client, urls) = http::setup(
            &cfg,
            auth,
            &[],
            &[
                "/api/chat",
                "/api/generate",
                "/api/embed",
                "/api/embeddings",
                "/api/tags",
            ],
            http::join_root,
        )?;
        Ok(OllamaProvider { cfg, client, urls })
    }

    fn post(&self, endpoint: Endpoint, body: Bytes) -> Result<http::UpRequest, ApiError> {
        Ok(http::UpRequest::new(::http::Method::POST, self.urls.get(endpoint.path())?).body(body))
    }
}

impl Provider for OllamaProvider {
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
        let req = (endpoint.wire() == Wire::Ollama).then(|| self.post(endpoint, body));
        Box::pin(async move {
            match req {
                Some(req) => http::forward(&self.cfg, &self.client, req?, stream).await,
                None => Err(ApiError::Internal(format!(
                    "{endpoint:?} cannot be forwarded to an Ollama provider"
                ))),
            }
        })
    }

    fn chat(&self, mut req: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ApiError>> {
        Box::pin(async move {
            req.stream = false;
            let body = super::json_bytes(&ollama::encode_chat_request(&req)?);
            let resp = http::send(
                &self.cfg,
                &self.client,
                self.post(Endpoint::OllamaChat, body)?,
            )
            .await?;
            let bytes = http::read_limited(&self.cfg, resp, MAX_UPSTREAM_BODY).await?;
            ollama::decode_chat_response(&bytes)
                .map_err(|e| http::malformed(&self.cfg, "response", e))
        })
    }

    fn chat_stream(&self, mut req: ChatRequest) -> BoxFuture<'_, Result<EventStream, ApiError>> {
        Box::pin(async move {
            req.stream = true;
            let body = super::json_bytes(&ollama::encode_chat_request(&req)?);
            let resp = http::send(
                &self.cfg,
                &self.client,
                self.post(Endpoint::OllamaChat, body)?,
            )
            .await?;
            Ok(super::stream::decode_events(
                http::idle_stream(&self.cfg, resp),
                NdjsonDecoder::new(),
                self.cfg.name.clone(),
            ))
        })
    }

    fn embed(&self, req: EmbeddingRequest) -> BoxFuture<'_, Result<EmbeddingResponse, ApiError>> {
        Box::pin(async move {
            ollama::validate_embed_request(&req)?;
            let body = super::json_bytes(&ollama::encode_embed_request(&req));
            let resp = http::send(
                &self.cfg,
                &self.client,
                self.post(Endpoint::OllamaEmbed, body)?,
            )
            .await?;
            let bytes = http::read_limited(&self.cfg, resp, MAX_UPSTREAM_BODY).await?;
            ollama::decode_embed_response(&bytes)
                .map_err(|e| http::malformed(&self.cfg, "embedding response", e))
        })
    }

    fn list_models(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>> {
        Box::pin(async move {
            let req = http::UpRequest::new(::http::Method::GET, self.urls.get("/api/tags")?);
            let resp = http::send(&self.cfg, &self.client, req).await?;
            let bytes = http::read_limited(&self.cfg, resp, 16 * 1024 * 1024).await?;
            ollama::decode_tags_response(&bytes)
                .map_err(|e| http::malformed(&self.cfg, "model list", e))
        })
    }
}
