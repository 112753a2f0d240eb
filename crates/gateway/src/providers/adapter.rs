//! The one [`Provider`] implementation, [`Adapter`], behind every wire
//! format: building requests, sending them, reading or streaming the answer,
//! forwarding, listing models and reporting malformed answers are written
//! here once. A wire module ([`super::openai`], [`super::anthropic`],
//! [`super::ollama`]) supplies only what differs, as a [`WireFormat`]: its
//! paths, how it presents the key, and which protocol codec encodes and
//! decodes. Everything is resolved at compile time per format: no dynamic
//! dispatch beyond the `dyn Provider` call itself.

use super::http::{self, Auth, Clients, UpRequest, Urls};
use super::stream::{decode_events, EventDecoder};
use super::{json_bytes, BoxFuture, Endpoint, EventStream, Forwarded, Provider};
use crate::config::ProviderConfig;
use crate::error::ApiError;
use crate::presets::Wire;
use ::http::{HeaderMap, HeaderName, Method};
use bytes::Bytes;
use llm_link_protocol::ir::{ChatRequest, ChatResponse, EmbeddingRequest, EmbeddingResponse};
use llm_link_protocol::json::DecodeError;
use serde_json::Value;
use std::fmt::Display;
use std::marker::PhantomData;

/// Largest model list read into memory.
const MAX_MODEL_LIST: usize = 16 * 1024 * 1024;

/// What one upstream wire format does differently.
pub trait WireFormat: Send + Sync + 'static {
    /// The client format whose endpoints can be forwarded byte for byte.
    const WIRE: Wire;
    /// The format's name in messages (`… cannot be forwarded to an {NAME}
    /// provider`).
    const NAME: &'static str;
    /// Every endpoint path, parsed once against the base URL with `JOIN`.
    const PATHS: &'static [&'static str];
    /// Joins the base URL and a path ([`http::join_url`] or
    /// [`http::join_root`]).
    const JOIN: fn(&str, &str) -> String;
    /// Headers sent on every request besides the key (a protocol version).
    const FIXED_HEADERS: &'static [(&'static str, &'static str)] = &[];
    /// Client request headers that are request options of this API, copied
    /// onto forwarded requests.
    const FORWARDED_HEADERS: &'static [&'static str] = &[];
    /// Where translated chat requests go.
    const CHAT: Endpoint;
    /// The model list path (one of `PATHS`).
    const MODELS: &'static str;
    /// The decoder of the chat stream.
    type Decoder: EventDecoder + Default;
    /// Why a model list did not decode.
    type ModelsError: Display;

    /// How the configured key, if any, is presented.
    fn auth(cfg: &ProviderConfig) -> Auth<'_>;
    /// The chat request body.
    fn encode_chat(cfg: &ProviderConfig, req: &ChatRequest) -> Result<Value, DecodeError>;
    fn decode_chat(body: &[u8]) -> Result<ChatResponse, DecodeError>;
    /// The embeddings endpoint and request body, or why this request (or
    /// this format) cannot be embedded.
    fn encode_embed(
        cfg: &ProviderConfig,
        req: &EmbeddingRequest,
    ) -> Result<(Endpoint, Value), ApiError>;
    fn decode_embed(body: &[u8]) -> Result<EmbeddingResponse, DecodeError>;
    /// The model ids of a model list answer.
    fn decode_models(body: &[u8]) -> Result<Vec<String>, Self::ModelsError>;
}

/// The ids of an OpenAI-style model list (`{"data": [{"id": …}, …]}`), which
/// Anthropic's `/v1/models` also follows; entries without an id are skipped.
pub fn data_ids(body: &[u8]) -> Result<Vec<String>, serde_json::Error> {
    let v: Value = serde_json::from_slice(body)?;
    Ok(v.get("data")
        .and_then(|d| d.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|m| m.get("id").and_then(|i| i.as_str()).map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// One upstream of wire format `W`.
pub struct Adapter<W> {
    cfg: ProviderConfig,
    client: Clients,
    urls: Urls,
    wire: PhantomData<fn() -> W>,
}

impl<W: WireFormat> Adapter<W> {
    pub fn new(cfg: ProviderConfig) -> Result<Adapter<W>, String> {
        let (client, urls) = http::setup(&cfg, W::auth(&cfg), W::FIXED_HEADERS, W::PATHS, W::JOIN)?;
        Ok(Adapter {
            cfg,
            client,
            urls,
            wire: PhantomData,
        })
    }

    fn post(&self, endpoint: Endpoint, body: Bytes) -> Result<UpRequest, ApiError> {
        Ok(UpRequest::new(Method::POST, self.urls.get(endpoint.path())?).body(body))
    }

    /// A translated chat request, streamed or not.
    fn chat_request(&self, mut req: ChatRequest, stream: bool) -> Result<UpRequest, ApiError> {
        req.stream = stream;
        let body = json_bytes(&W::encode_chat(&self.cfg, &req)?);
        self.post(W::CHAT, body)
    }

    /// Sends `req` and decodes the whole answer (at most `limit` bytes); one
    /// that does not decode is reported as a malformed `what`.
    async fn call<T, E: Display>(
        &self,
        req: UpRequest,
        limit: usize,
        what: &str,
        decode: impl FnOnce(&[u8]) -> Result<T, E>,
    ) -> Result<T, ApiError> {
        let resp = http::send(&self.cfg, &self.client, req).await?;
        let bytes = http::read_limited(&self.cfg, resp, limit).await?;
        decode(&bytes).map_err(|e| http::malformed(&self.cfg, what, e))
    }
}

impl<W: WireFormat> Provider for Adapter<W> {
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
        // Built before the future, which cannot borrow `client_headers`.
        let same = endpoint.wire() == W::WIRE
            || (endpoint == Endpoint::Responses && self.passthrough_for(Wire::Responses));
        let req = same.then(|| {
            let mut rb = self.post(endpoint, body)?;
            for name in W::FORWARDED_HEADERS {
                if let Some(v) = client_headers.get(*name) {
                    rb = rb.header(HeaderName::from_static(name), v.clone());
                }
            }
            Ok::<_, ApiError>(rb)
        });
        Box::pin(async move {
            match req {
                Some(req) => http::forward(&self.cfg, &self.client, req?, stream).await,
                None => Err(ApiError::Internal(format!(
                    "{endpoint:?} cannot be forwarded to an {} provider",
                    W::NAME
                ))),
            }
        })
    }

    fn chat(&self, req: ChatRequest) -> BoxFuture<'_, Result<ChatResponse, ApiError>> {
        Box::pin(async move {
            let req = self.chat_request(req, false)?;
            self.call(req, self.cfg.meta.max_answer, "response", W::decode_chat)
                .await
        })
    }

    fn chat_stream(&self, req: ChatRequest) -> BoxFuture<'_, Result<EventStream, ApiError>> {
        Box::pin(async move {
            let req = self.chat_request(req, true)?;
            let resp = http::send(&self.cfg, &self.client, req).await?;
            Ok(decode_events(
                http::idle_stream(&self.cfg, resp),
                W::Decoder::default(),
                self.cfg.name.clone(),
            ))
        })
    }

    fn embed(&self, req: EmbeddingRequest) -> BoxFuture<'_, Result<EmbeddingResponse, ApiError>> {
        Box::pin(async move {
            let (endpoint, body) = W::encode_embed(&self.cfg, &req)?;
            let req = self.post(endpoint, json_bytes(&body))?;
            self.call(
                req,
                self.cfg.meta.max_answer,
                "embedding response",
                W::decode_embed,
            )
            .await
        })
    }

    fn list_models(&self) -> BoxFuture<'_, Result<Vec<String>, ApiError>> {
        Box::pin(async move {
            let req = UpRequest::new(Method::GET, self.urls.get(W::MODELS)?);
            self.call(req, MAX_MODEL_LIST, "model list", W::decode_models)
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Origin, Secret, Timeouts};
    use crate::presets;
    use ::http::HeaderValue;
    use llm_link_protocol::ir::EmbeddingInput;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn cfg(kind: &str, base_url: &str) -> ProviderConfig {
        ProviderConfig {
            name: "up".into(),
            preset: presets::find(kind).unwrap(),
            base_url: base_url.into(),
            api_key: Some(Secret::new("sk-test-1234")),
            models: vec![],
            default_model: None,
            forward_any_model: true,
            passthrough: true,
            timeouts: Timeouts::default(),
            headers: vec![],
            origin: Origin::File,
            meta: Default::default(),
        }
    }

    /// An upstream that answers one request with an empty JSON object and
    /// hands back that request's head.
    async fn one_request_upstream() -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let end = loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end;
                }
                let n = sock.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the request ended inside its head");
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8(buf[..end].to_vec()).unwrap();
            sock.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
            )
            .await
            .unwrap();
            head
        });
        (base, task)
    }

    fn client_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("anthropic-beta", HeaderValue::from_static("tools-2024"));
        h.insert("anthropic-version", HeaderValue::from_static("2099-01-01"));
        h.insert("x-client-only", HeaderValue::from_static("1"));
        h
    }

    fn has_header(head: &str, name: &str) -> bool {
        head.lines()
            .any(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
    }

    #[tokio::test]
    async fn forward_copies_only_the_formats_request_option_headers() {
        let (base, upstream) = one_request_upstream().await;
        let p =
            crate::providers::anthropic::AnthropicProvider::new(cfg("anthropic", &base)).unwrap();
        let fwd = p
            .forward(
                Endpoint::Messages,
                Bytes::from_static(b"{}"),
                false,
                &client_headers(),
            )
            .await
            .unwrap();
        assert_eq!(fwd.status, 200);
        let head = upstream.await.unwrap();
        assert!(head.starts_with("POST /v1/messages "), "{head}");
        assert!(head.contains("anthropic-beta: tools-2024"), "{head}");
        // The client's `anthropic-version` replaces llm-link's own, once.
        let versions: Vec<&str> = head
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("anthropic-version:"))
            .collect();
        assert_eq!(versions, ["anthropic-version: 2099-01-01"], "{head}");
        assert!(has_header(&head, "x-api-key"), "{head}");
        assert!(!has_header(&head, "x-client-only"), "{head}");

        let (base, upstream) = one_request_upstream().await;
        let p = crate::providers::openai::OpenAiProvider::new(cfg("openai", &base)).unwrap();
        p.forward(
            Endpoint::ChatCompletions,
            Bytes::from_static(b"{}"),
            false,
            &client_headers(),
        )
        .await
        .unwrap();
        let head = upstream.await.unwrap();
        assert!(head.starts_with("POST /v1/chat/completions "), "{head}");
        assert!(!has_header(&head, "anthropic-beta"), "{head}");
        assert!(!has_header(&head, "x-client-only"), "{head}");
    }

    #[tokio::test]
    async fn forward_refuses_another_formats_endpoint() {
        // Refused before any connection is tried (nothing listens on port 9).
        let p = crate::providers::ollama::OllamaProvider::new(cfg("ollama", "http://127.0.0.1:9"))
            .unwrap();
        let err = p
            .forward(Endpoint::Messages, Bytes::new(), false, &HeaderMap::new())
            .await
            .err()
            .unwrap();
        match err {
            ApiError::Internal(m) => {
                assert_eq!(m, "Messages cannot be forwarded to an Ollama provider")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn anthropic_refuses_embeddings_without_calling_upstream() {
        let p = crate::providers::anthropic::AnthropicProvider::new(cfg(
            "anthropic",
            "http://127.0.0.1:9",
        ))
        .unwrap();
        let req = EmbeddingRequest {
            model: "m".into(),
            input: EmbeddingInput::Text(vec!["hi".into()]),
            dimensions: None,
            encoding_format: None,
            user: None,
            extra: Default::default(),
        };
        match p.embed(req).await.err().unwrap() {
            ApiError::BadRequest { message, .. } => {
                assert!(
                    message.starts_with("provider `up` is Anthropic, which has no embeddings API"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn data_ids_lists_the_ids() {
        let body = br#"{"object":"list","data":[{"id":"a","object":"model"},{"object":"model"},{"id":7},{"id":"b"}]}"#;
        assert_eq!(data_ids(body).ok(), Some(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn data_ids_without_data_is_empty() {
        assert_eq!(data_ids(br#"{"models":[]}"#).ok(), Some(vec![]));
        assert_eq!(data_ids(br#"{"data":{}}"#).ok(), Some(vec![]));
    }

    #[test]
    fn data_ids_rejects_what_is_not_json() {
        assert!(data_ids(b"<html>").is_err());
    }
}
