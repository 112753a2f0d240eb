//! The native Anthropic adapter: `x-api-key` + `anthropic-version`,
//! `/v1/messages` (JSON and SSE), `/v1/messages/count_tokens`, `/v1/models`.

use super::http::{self, MAX_UPSTREAM_BODY};
use super::{BoxFuture, Endpoint, EventStream, Forwarded, Provider};
use crate::config::ProviderConfig;
use crate::error::ApiError;
use crate::presets::Wire;
use ::http::HeaderMap;
use bytes::Bytes;
use llm_link_protocol::anthropic::{self, stream::StreamDecoder};
use llm_link_protocol::ir::{ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse};

/// `max_tokens` sent when a client from another format gave none (Anthropic
/// requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Client request headers that are Anthropic request options.
const FORWARDED_HEADERS: &[&str] = &["anthropic-beta", "anthropic-version"];

pub struct AnthropicProvider {
    cfg: ProviderConfig,
    client: super::http::Clients,
    urls: http::Urls,
}

impl AnthropicProvider {
    pub fn new(cfg: ProviderConfig) -> Result<AnthropicProvider, String> {
        let auth = match &cfg.api_key {
            Some(key) => http::Auth::Header("x-api-key", key.expose()),
            None => http::Auth::None,
        };
        let (client, urls) = http::setup(
            &cfg,
            auth,
            &[("anthropic-version", anthropic::ANTHROPIC_VERSION)],
            &["/v1/messages", "/v1/messages/count_tokens", "/v1/models"],
            http::join_root,
        )?;
        Ok(AnthropicProvider { cfg, client, urls })
    }

    fn post(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        client_headers: Option<&HeaderMap>,
    ) -> Result<http::UpRequest, ApiError> {
        let mut rb =
            http::UpRequest::new(::http::Method::POST, self.urls.get(endpoint.path())?).body(body);
        if let Some(ch) = client_headers {
            for name in FORWARDED_HEADERS {
                if let Some(v) = ch.get(*name) {
                    rb = rb.header(::http::HeaderName::from_static(name), v.clone());
                }
            }
        }
        Ok(rb)
    }

    fn encode(&self, req: &ChatRequest) -> Result<Bytes, ApiError> {
        let v = anthropic::encode_messages_request(req, DEFAULT_MAX_TOKENS)?;
        Ok(super::json_bytes(&v))
    }
}

impl Provider for AnthropicProvider {
    fn config(&self) -> &ProviderConfig {
        &self.cfg
    }

    fn forward(
        &self,
        endpoint: Endpoint,
        body: Bytes,
        stream: bool,
        client_headers: &HeaderMap,
    ) -> BoxFuture<'_, Result<Forwarded, ApiError>> {
        let req = (endpoint.wire() == Wire::Anthropic)
            .then(|| self.post(endpoint, body, Some(client_headers)));
        Box::pin(async move {
            match req {
                Some(req) => http::forward(&self.cfg, &self.client, req?, stream).await,
                None => Err(ApiError::Internal(format!(
                    "{endpoint:?} cannot be forwarded to an Anthropic provider"
                ))),
            }
        })
    }

    fn chat(&self, mut req: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ApiError>> {
        Box::pin(async move {
            req.stream = false;
            let body = self.encode(&req)?;
            let resp = http::send(
                &self.cfg,
                &self.client,
                self.post(Endpoint::Messages, body, None)?,
            )
            .await?;
            let bytes = http::read_limited(&self.cfg, resp, MAX_UPSTREAM_BODY).await?;
            anthropic::decode_messages_response(&bytes)
                .map_err(|e| http::malformed(&self.cfg, "response", e))
        })
    }

    fn chat_stream(&self, mut req: ChatRequest) -> BoxFuture<'_, Result<EventStream, ApiError>> {
        Box::pin(async move {
            req.stream = true;
            let body = self.encode(&req)?;
            let resp = http::send(
                &self.cfg,
                &self.client,
                self.post(Endpoint::Messages, body, None)?,
            )
            .await?;
            Ok(super::stream::decode_events(
                http::idle_stream(&self.cfg, resp),
                StreamDecoder::new(),
                self.cfg.name.clone(),
            ))
        })
    }

    fn embed(&self, _req: EmbeddingRequest) -> BoxFuture<'_, Result<EmbeddingResponse, ApiError>> {
        let name = self.cfg.name.clone();
        Box::pin(async move {
            Err(ApiError::bad_request(format!(
                "provider `{name}` is Anthropic, which has no embeddings API; route embedding models to an OpenAI-compatible or Ollama provider"
            )))
        })
    }

    fn list_models(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>> {
        Box::pin(async move {
            let req = http::UpRequest::new(::http::Method::GET, self.urls.get("/v1/models")?);
            let resp = http::send(&self.cfg, &self.client, req).await?;
            let bytes = http::read_limited(&self.cfg, resp, 16 * 1024 * 1024).await?;
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| http::malformed(&self.cfg, "model list", e))?;
            Ok(v.get("data")
                .and_then(|d| d.as_array())
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|m| m.get("id").and_then(|i| i.as_str()).map(str::to_string))
                        .collect()
                })
                .unwrap_or_default())
        })
    }
}
