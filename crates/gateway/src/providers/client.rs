//! The upstream HTTP client.
//!
//! Direct connections to `http` upstreams use llm-link's own lean HTTP/1.1
//! client ([`super::h1`]); `https` ones go through hyper's pooled client
//! (rustls, HTTP/2 by ALPN). When the environment names a proxy for the
//! provider's address (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, minus
//! `NO_PROXY`), requests go through reqwest instead, which implements
//! CONNECT tunnels and proxy credentials. Both answer with the same
//! response type, so adapters do not care which one carried a request.
//!
//! The direct path exists for speed: reqwest re-parses every URL twice per
//! request and stacks several service layers (redirects, retries) that a
//! gateway never uses; in profiles that was a sizeable share of
//! llm-link's own CPU per proxied request.

use ::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::Duration;

/// An upstream response body, whichever client carried it.
pub type UpBody = UnsyncBoxBody<Bytes, UpError>;

/// A direct client: TLS for an `https` provider, plain TCP for `http` (no
/// TLS set-up at all for local upstreams such as Ollama or llama.cpp).
#[derive(Clone)]
pub enum Direct {
    Tls(Box<Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>>),
    Plain(super::h1::Pool),
}

fn pooled<C>(connector: C) -> Client<C, Full<Bytes>>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// Why an upstream exchange failed below HTTP.
#[derive(Debug)]
pub enum UpError {
    Direct(hyper_util::client::legacy::Error),
    Body(hyper::Error),
    Plain(super::h1::Error),
    Proxied(reqwest::Error),
}

impl UpError {
    pub fn is_connect(&self) -> bool {
        match self {
            UpError::Direct(e) => e.is_connect(),
            UpError::Body(_) => false,
            UpError::Plain(e) => e.is_connect(),
            UpError::Proxied(e) => e.is_connect(),
        }
    }

    pub fn is_timeout(&self) -> bool {
        match self {
            UpError::Proxied(e) => e.is_timeout(),
            UpError::Direct(e) => {
                let mut src: Option<&(dyn std::error::Error + 'static)> =
                    std::error::Error::source(e);
                while let Some(s) = src {
                    if let Some(io) = s.downcast_ref::<std::io::Error>() {
                        if io.kind() == std::io::ErrorKind::TimedOut {
                            return true;
                        }
                    }
                    src = s.source();
                }
                false
            }
            UpError::Body(_) => false,
            UpError::Plain(e) => e.is_timeout(),
        }
    }
}

impl std::fmt::Display for UpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The chain of causes, as reqwest and hyper keep the useful part
        // (connection refused, reset) in a source.
        let (top, mut src): (String, Option<&(dyn std::error::Error + 'static)>) = match self {
            UpError::Direct(e) => (e.to_string(), std::error::Error::source(e)),
            UpError::Body(e) => (e.to_string(), std::error::Error::source(e)),
            UpError::Plain(e) => (e.to_string(), None),
            UpError::Proxied(e) => (e.to_string(), std::error::Error::source(e)),
        };
        f.write_str(&top)?;
        while let Some(s) = src {
            write!(f, ": {s}")?;
            src = s.source();
        }
        Ok(())
    }
}

impl std::error::Error for UpError {}

/// Connection settings of one provider.
pub struct Options {
    pub connect_timeout: Duration,
    /// Sent on every request (content type, key, protocol version, the
    /// provider's configured headers).
    pub headers: HeaderMap,
}

/// One provider's client on one serving thread.
#[derive(Clone)]
pub enum UpClient {
    Direct {
        client: Box<Direct>,
        headers: Arc<HeaderMap>,
    },
    Proxied(reqwest::Client),
}

const USER_AGENT: &str = concat!("llm-link/", env!("CARGO_PKG_VERSION"));

impl UpClient {
    /// A client for `base` (the provider's base URL): direct unless the
    /// environment routes that address through a proxy.
    pub fn new(base: &::http::Uri, opts: &Options) -> Result<UpClient, String> {
        if proxy_for(base) {
            return proxied(opts).map(UpClient::Proxied);
        }
        let client = if base.scheme_str() == Some("http") {
            Direct::Plain(super::h1::Pool::new(opts.connect_timeout))
        } else {
            let mut http = HttpConnector::new();
            http.set_nodelay(true);
            http.set_keepalive(Some(Duration::from_secs(30)));
            http.set_connect_timeout(Some(opts.connect_timeout));
            http.enforce_http(false);
            Direct::Tls(Box::new(pooled(
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls_config()?)
                    .https_only()
                    .enable_http1()
                    .enable_http2()
                    .wrap_connector(http),
            )))
        };
        let mut headers = opts.headers.clone();
        headers.insert(
            ::http::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
        Ok(UpClient::Direct {
            client: Box::new(client),
            headers: Arc::new(headers),
        })
    }

    /// Sends a request; the answer's body is read by the caller.
    pub async fn send(&self, req: UpRequest) -> Result<Response<UpBody>, UpError> {
        match self {
            UpClient::Direct { client, headers } => {
                let tls = match &**client {
                    Direct::Plain(pool) => {
                        let resp = pool
                            .send(
                                &req.method,
                                &req.target.uri,
                                headers,
                                &req.headers,
                                &req.body,
                            )
                            .await
                            .map_err(UpError::Plain)?;
                        return Ok(resp.map(|b| b.map_err(UpError::Plain).boxed_unsync()));
                    }
                    Direct::Tls(c) => c,
                };
                let mut r = Request::new(Full::new(req.body));
                *r.method_mut() = req.method;
                *r.uri_mut() = req.target.uri.clone();
                let h = r.headers_mut();
                h.reserve(headers.len() + req.headers.len());
                for (k, v) in headers.iter() {
                    h.insert(k, v.clone());
                }
                for (k, v) in req.headers {
                    h.insert(k, v);
                }
                let resp = tls.request(r).await.map_err(UpError::Direct)?;
                Ok(resp.map(|b| b.map_err(UpError::Body).boxed_unsync()))
            }
            UpClient::Proxied(client) => {
                let mut rb = client
                    .request(req.method, req.target.url.clone())
                    .body(req.body);
                for (k, v) in req.headers {
                    rb = rb.header(k, v);
                }
                // reqwest's errors print the request URL, which may hold
                // credentials (`user:pass@`); logs get the error without it.
                let resp = rb
                    .send()
                    .await
                    .map_err(|e| UpError::Proxied(e.without_url()))?;
                let resp: Response<reqwest::Body> = resp.into();
                Ok(resp.map(|b| {
                    b.map_err(|e| UpError::Proxied(e.without_url()))
                        .boxed_unsync()
                }))
            }
        }
    }
}

/// An endpoint URL, parsed once for both clients.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: reqwest::Url,
    pub uri: ::http::Uri,
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        let url = reqwest::Url::parse(s).map_err(|e| format!("`{s}` is not a valid URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("`{s}` is not an http:// or https:// URL"));
        }
        let uri = url
            .as_str()
            .parse::<::http::Uri>()
            .map_err(|e| format!("`{s}` is not a valid URL: {e}"))?;
        Ok(Target { url, uri })
    }
}

/// A request to an upstream, built by an adapter.
pub struct UpRequest {
    method: Method,
    target: Target,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl UpRequest {
    pub fn new(method: Method, target: &Target) -> UpRequest {
        UpRequest {
            method,
            target: target.clone(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn body(mut self, body: Bytes) -> UpRequest {
        self.body = body;
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> UpRequest {
        self.headers.push((name, value));
        self
    }
}

fn proxy_for(base: &::http::Uri) -> bool {
    hyper_util::client::proxy::matcher::Matcher::from_env()
        .intercept(base)
        .is_some()
}

fn proxied(opts: &Options) -> Result<reqwest::Client, String> {
    // The same trusted roots as the direct path, with ALPN for HTTP/2.
    let mut tls = tls_config()?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .default_headers(opts.headers.clone())
        .connect_timeout(opts.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(30))
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// One TLS configuration for every direct client (building it per client
/// would parse the roots each time). Trusted: Mozilla's roots (built in)
/// plus the system's store, which honours `SSL_CERT_FILE`/`SSL_CERT_DIR`,
/// so a company proxy's CA installed on the machine works as it does for
/// curl.
fn tls_config() -> Result<rustls::ClientConfig, String> {
    static CONFIG: std::sync::OnceLock<Result<rustls::ClientConfig, String>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let native = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(
                system_roots = added,
                errors = native.errors.len(),
                "TLS roots loaded"
            );
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map(|b| b.with_root_certificates(roots).with_no_client_auth())
            .map_err(|e| format!("cannot set up TLS: {e}"))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_once_for_both_clients() {
        let t = Target::parse("http://127.0.0.1:8080/v1/chat/completions").unwrap();
        assert_eq!(t.uri.path(), "/v1/chat/completions");
        assert_eq!(t.url.path(), "/v1/chat/completions");
        assert!(Target::parse("ftp://x/y").is_err());
        assert!(Target::parse("not a url").is_err());
    }

    #[test]
    fn tls_config_builds() {
        assert!(tls_config().is_ok());
    }
}
