//! Shared upstream HTTP plumbing: the pooled client, URL joining, timeouts
//! on the first byte and between chunks, and the mapping of upstream
//! failures to client-safe errors.

pub use super::client::UpRequest;
use super::client::{Options, Target, UpBody, UpClient, UpError};
use super::ByteStream;
use crate::config::{ProviderConfig, Secret};
use crate::error::ApiError;
use ::http::{HeaderMap, Response, StatusCode};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

/// Largest upstream body read into memory (non-streamed answers, errors).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// One provider's upstream clients, one per serving thread
/// ([`crate::workers`]): a pooled upstream connection is then always driven
/// by the thread whose request uses it, so no request wakes another thread.
#[derive(Clone)]
pub struct Clients(std::sync::Arc<[UpClient]>);

impl Clients {
    /// The client of the calling serving thread.
    pub fn get(&self) -> &UpClient {
        let i = crate::workers::index() % self.0.len().max(1);
        &self.0[i]
    }
}

/// The clients for one provider; `headers` (auth, version) go on every
/// request without being copied per request.
pub fn client(cfg: &ProviderConfig, headers: HeaderMap) -> Result<Clients, String> {
    let base = Target::parse(cfg.base_url.trim_end_matches('/'))
        .map_err(|e| format!("provider `{}`: {e}", cfg.name))?;
    let opts = Options {
        connect_timeout: cfg.timeouts.connect,
        headers,
    };
    let n = crate::workers::count();
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        all.push(
            UpClient::new(&base.uri, &opts).map_err(|e| format!("provider `{}`: {e}", cfg.name))?,
        );
    }
    Ok(Clients(all.into()))
}

/// Joins a base URL and an endpoint path exactly once: a base that already
/// ends with the path is used as is, a trailing slash is dropped, and a bare
/// host (`http://localhost:8000`) gets OpenAI's `/v1`.
pub fn join_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.ends_with(path) {
        return base.to_string();
    }
    let has_path = base
        .split_once("://")
        .map(|(_, rest)| rest.contains('/'))
        .unwrap_or(false);
    if has_path {
        format!("{base}{path}")
    } else {
        format!("{base}/v1{path}")
    }
}

/// How an adapter presents its key.
pub enum Auth<'a> {
    None,
    /// `Authorization: Bearer <key>`.
    Bearer(&'a str),
    /// The key as the value of this header (Anthropic's `x-api-key`).
    Header(&'static str, &'a str),
}

/// The pooled client and parsed endpoint URLs of one provider: JSON content
/// type, the key (marked sensitive, so it never shows in debug output),
/// fixed protocol headers and the provider's configured extra headers.
pub fn setup(
    cfg: &ProviderConfig,
    auth: Auth<'_>,
    fixed: &[(&'static str, &'static str)],
    paths: &[&'static str],
    join: fn(&str, &str) -> String,
) -> Result<(Clients, Urls), String> {
    use ::http::{HeaderName, HeaderValue};
    let mut headers = HeaderMap::new();
    headers.insert(
        ::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (k, v) in fixed {
        headers.insert(*k, HeaderValue::from_static(v));
    }
    let key = match auth {
        Auth::None => None,
        Auth::Bearer(k) => Some((::http::header::AUTHORIZATION, format!("Bearer {k}"))),
        Auth::Header(name, k) => Some((HeaderName::from_static(name), k.to_string())),
    };
    if let Some((name, value)) = key {
        let mut v = HeaderValue::from_str(&value).map_err(|_| {
            format!(
                "provider `{}`: the API key has characters not allowed in a header",
                cfg.name
            )
        })?;
        v.set_sensitive(true);
        headers.insert(name, v);
    }
    for (k, v) in &cfg.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("provider `{}`: bad header name `{k}`", cfg.name))?;
        let value = HeaderValue::from_str(v)
            .map_err(|_| format!("provider `{}`: bad value for header `{k}`", cfg.name))?;
        headers.insert(name, value);
    }
    Ok((
        client(cfg, headers)?,
        Urls::new(&cfg.base_url, paths, join)?,
    ))
}

/// Every endpoint URL of one provider, parsed once (parsing a URL per request
/// showed up in profiles).
#[derive(Debug, Clone, Default)]
pub struct Urls(std::collections::HashMap<&'static str, Target>);

impl Urls {
    /// `paths` are joined with `join` (OpenAI-style or root-style).
    pub fn new(
        base: &str,
        paths: &[&'static str],
        join: fn(&str, &str) -> String,
    ) -> Result<Urls, String> {
        let mut map = std::collections::HashMap::new();
        for p in paths {
            let full = join(base, p);
            map.insert(*p, Target::parse(&full)?);
        }
        Ok(Urls(map))
    }

    pub fn get(&self, path: &str) -> Result<&Target, ApiError> {
        self.0
            .get(path)
            .ok_or_else(|| ApiError::Internal(format!("no URL for {path}")))
    }
}

/// Joins a host-root base URL (Anthropic, Ollama) and a root path such as
/// `/v1/messages` or `/api/chat` exactly once, tolerating a base that already
/// ends in `/v1` or `/api`.
pub fn join_root(base: &str, path: &str) -> String {
    let mut base = base.trim_end_matches('/');
    if base.ends_with(path) {
        return base.to_string();
    }
    for suffix in ["/v1", "/api"] {
        if let Some(stripped) = base.strip_suffix(suffix) {
            if path.starts_with(suffix) || suffix == "/v1" {
                base = stripped;
                break;
            }
        }
    }
    format!("{base}{path}")
}

/// The data frames of a response body (trailers are dropped).
fn body_stream(
    resp: Response<UpBody>,
) -> impl futures_util::Stream<Item = Result<Bytes, UpError>> + Send + Unpin {
    http_body_util::BodyDataStream::new(resp.into_body())
}

/// Sends a same-format request and wraps the answer for forwarding.
pub async fn forward(
    cfg: &ProviderConfig,
    clients: &Clients,
    req: UpRequest,
    stream: bool,
) -> Result<super::Forwarded, ApiError> {
    let started = std::time::Instant::now();
    let resp = send(cfg, clients, req).await?;
    let status = resp.status();
    let content_type = resp.headers().get(::http::header::CONTENT_TYPE).cloned();
    if stream {
        return Ok(super::Forwarded {
            status,
            content_type,
            upstream_time: started.elapsed(),
            body: super::ForwardBody::Stream(idle_stream(cfg, resp)),
        });
    }
    let bytes = read_limited(cfg, resp, cfg.meta.max_answer).await?;
    Ok(super::Forwarded {
        status,
        content_type,
        upstream_time: started.elapsed(),
        body: super::ForwardBody::Full(bytes),
    })
}

/// An upstream answer that did not decode: logged in full, reported to the
/// client without the details.
pub fn malformed(cfg: &ProviderConfig, what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(provider = %cfg.name, error = %e, "malformed upstream {what}");
    ApiError::BadGateway(format!("provider `{}` sent a malformed {what}", cfg.name))
}

/// Removes a secret from upstream text before it can reach a client or log.
pub fn scrub(text: &str, key: Option<&Secret>) -> String {
    let mut t: String = text.chars().take(500).collect();
    if let Some(k) = key {
        let k = k.expose();
        if k.len() >= 4 {
            t = t.replace(k, "****");
        }
    }
    t
}

fn classify_send_error(provider: &str, e: &UpError) -> ApiError {
    if e.is_timeout() {
        ApiError::Timeout(format!("provider `{provider}` did not answer in time"))
    } else if e.is_connect() {
        ApiError::BadGateway(format!("could not connect to provider `{provider}`"))
    } else {
        ApiError::BadGateway(format!("provider `{provider}` connection failed"))
    }
}

/// Sends a request, waiting at most the first-byte timeout for headers, and
/// maps non-2xx answers to errors.
pub async fn send(
    cfg: &ProviderConfig,
    clients: &Clients,
    req: UpRequest,
) -> Result<Response<UpBody>, ApiError> {
    let resp = match tokio::time::timeout(cfg.timeouts.first_byte, clients.get().send(req)).await {
        Err(_) => {
            return Err(ApiError::Timeout(format!(
                "provider `{}` did not start answering within {}s",
                cfg.name,
                cfg.timeouts.first_byte.as_secs_f64()
            )))
        }
        Ok(Err(e)) => {
            tracing::warn!(provider = %cfg.name, error = %e, "upstream request failed");
            return Err(classify_send_error(&cfg.name, &e));
        }
        Ok(Ok(r)) => r,
    };
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = read_limited(cfg, resp, MAX_ERROR_BODY)
        .await
        .unwrap_or_default();
    Err(map_status(cfg, status, &headers, &body))
}

/// Maps an upstream's error answer to the error the client sees.
pub fn map_status(
    cfg: &ProviderConfig,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiError {
    let name = &cfg.name;
    let detail = llm_link_protocol::openai::upstream_error_message(body)
        .map(|m| scrub(&m, cfg.api_key.as_ref()))
        .filter(|m| !m.trim().is_empty());
    let with = |prefix: String| match &detail {
        Some(d) => format!("{prefix}: {d}"),
        None => prefix,
    };
    tracing::warn!(provider = %name, status = status.as_u16(), detail = detail.as_deref().unwrap_or(""), "upstream error");
    match status.as_u16() {
        401 | 403 => {
            let hint = cfg
                .preset
                .key_env
                .map(|v| format!(" (set with --api-key, {v} or the config file)"))
                .unwrap_or_default();
            ApiError::UpstreamAuth(with(format!(
                "provider `{name}` rejected the API key llm-link uses for it (HTTP {}); check that key{hint}",
                status.as_u16()
            )))
        }
        429 => ApiError::RateLimited {
            message: with(format!("provider `{name}` is rate limiting requests")),
            retry_after: headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        },
        408 => ApiError::Timeout(with(format!("provider `{name}` timed out"))),
        400..=499 => ApiError::UpstreamRejected {
            status: status.as_u16(),
            message: with(format!(
                "provider `{name}` rejected the request (HTTP {})",
                status.as_u16()
            )),
        },
        _ => ApiError::BadGateway(with(format!(
            "provider `{name}` failed (HTTP {})",
            status.as_u16()
        ))),
    }
}

/// Reads a whole body, with the idle timeout between chunks and a size cap.
pub async fn read_limited(
    cfg: &ProviderConfig,
    resp: Response<UpBody>,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let mut stream = body_stream(resp);
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let until = tokio::time::Instant::now() + cfg.timeouts.total;
    loop {
        // One timer per read: the sooner of the idle and total deadlines.
        let idle_at = tokio::time::Instant::now() + cfg.timeouts.idle;
        match tokio::time::timeout_at(idle_at.min(until), stream.next()).await {
            Err(_) if idle_at >= until => {
                return Err(ApiError::Timeout(format!(
                    "provider `{}` did not finish its answer within {}s",
                    cfg.name,
                    cfg.timeouts.total.as_secs_f64()
                )))
            }
            Err(_) => {
                return Err(ApiError::Timeout(format!(
                    "provider `{}` stalled while sending its answer",
                    cfg.name
                )))
            }
            Ok(None) => {
                // A body that came in one piece is passed on without a copy.
                return Ok(match first {
                    Some(b) if buf.is_empty() => b,
                    Some(b) => {
                        let mut all = BytesMut::with_capacity(b.len() + buf.len());
                        all.extend_from_slice(&b);
                        all.extend_from_slice(&buf);
                        all.freeze()
                    }
                    None => buf.freeze(),
                });
            }
            Ok(Some(Err(e))) => {
                tracing::warn!(provider = %cfg.name, error = %e, "upstream body failed");
                return Err(ApiError::BadGateway(format!(
                    "provider `{}` broke off its answer",
                    cfg.name
                )));
            }
            Ok(Some(Ok(chunk))) => {
                let have = buf.len() + first.as_ref().map_or(0, Bytes::len);
                if have + chunk.len() > limit {
                    return Err(ApiError::BadGateway(format!(
                        "provider `{}` sent an answer larger than the limit of {limit} bytes (the provider's `max_answer`)",
                        cfg.name
                    )));
                }
                if first.is_none() && buf.is_empty() {
                    first = Some(chunk);
                } else {
                    buf.extend_from_slice(&chunk);
                }
            }
        }
    }
}

/// The body as a stream that fails when the upstream goes quiet for longer
/// than the idle timeout, joining what arrives together ([`super::idle`]).
/// Dropping it closes the upstream connection.
pub fn idle_stream(cfg: &ProviderConfig, resp: Response<UpBody>) -> ByteStream {
    Box::pin(super::idle::IdleStream::new(
        body_stream(resp),
        cfg.timeouts.idle,
        cfg.timeouts.total,
        std::sync::Arc::from(cfg.name.as_str()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_exactly_once() {
        let p = "/chat/completions";
        assert_eq!(
            join_url("https://api.openai.com/v1", p),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            join_url("https://api.openai.com/v1/", p),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            join_url("https://x/v1/chat/completions", p),
            "https://x/v1/chat/completions"
        );
        assert_eq!(
            join_url("http://localhost:8000", p),
            "http://localhost:8000/v1/chat/completions"
        );
        assert_eq!(
            join_url("http://localhost:8000/", p),
            "http://localhost:8000/v1/chat/completions"
        );
        assert_eq!(
            join_url("https://open.bigmodel.cn/api/paas/v4", p),
            "https://open.bigmodel.cn/api/paas/v4/chat/completions"
        );
        assert!(!join_url("https://api.openai.com/v1", "/models").contains("/v1/v1"));
    }

    #[test]
    fn root_joins_exactly_once() {
        assert_eq!(
            join_root("https://api.anthropic.com", "/v1/messages"),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(
            join_root("https://api.anthropic.com/v1/", "/v1/messages"),
            "https://api.anthropic.com/v1/messages"
        );
        assert_eq!(
            join_root("http://localhost:11434", "/api/chat"),
            "http://localhost:11434/api/chat"
        );
        assert_eq!(
            join_root("http://localhost:11434/api", "/api/chat"),
            "http://localhost:11434/api/chat"
        );
        assert_eq!(
            join_root("http://localhost:11434/v1", "/api/chat"),
            "http://localhost:11434/api/chat"
        );
        assert_eq!(
            join_root("http://proxy/anthropic", "/v1/messages"),
            "http://proxy/anthropic/v1/messages"
        );
    }

    #[test]
    fn scrub_hides_the_key() {
        let k = Secret::new("sk-supersecret-1234");
        assert_eq!(
            scrub("bad key sk-supersecret-1234!", Some(&k)),
            "bad key ****!"
        );
    }
}
