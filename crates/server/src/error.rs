//! Errors of the request path rendered in each client protocol's shape,
//! with the right status, `Retry-After`, and the [`ErrorCode`] the usage
//! finaliser records. The errors themselves live in the engine
//! (`llm_link_gateway::error`).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
pub use llm_link_gateway::error::{ApiError, ErrorCode};
use std::marker::PhantomData;

/// A client protocol's error shape.
pub trait Shape {
    /// The error as this protocol's response.
    fn render(e: &ApiError) -> Response;
}

/// What handlers of surface `S` return, so errors render in its shape.
pub struct Shaped<S: Shape>(pub ApiError, PhantomData<S>);

impl<S: Shape, E: Into<ApiError>> From<E> for Shaped<S> {
    fn from(e: E) -> Self {
        Shaped(e.into(), PhantomData)
    }
}

impl<S: Shape> IntoResponse for Shaped<S> {
    fn into_response(self) -> Response {
        S::render(&self.0)
    }
}

/// OpenAI's `{"error":{"message","type","code"}}`.
pub enum OpenAi {}
/// Anthropic's `{"type":"error","error":{"type","message"}}`.
pub enum Anthropic {}
/// Ollama's `{"error":"…"}`.
pub enum Ollama {}

impl Shape for OpenAi {
    fn render(e: &ApiError) -> Response {
        let body = llm_link_protocol::openai::error_body(
            &e.to_string(),
            e.openai_type(),
            Some(e.code()),
            e.param(),
        );
        respond(e, e.status(), body)
    }
}

impl Shape for Anthropic {
    fn render(e: &ApiError) -> Response {
        let status = e.status();
        let kind = match e {
            ApiError::UpstreamAuth(_) | ApiError::BadGateway(_) | ApiError::Timeout(_) => {
                "api_error"
            }
            ApiError::Unavailable(_) => "overloaded_error",
            ApiError::Forbidden(_) => "permission_error",
            ApiError::QuotaExceeded { .. } => "rate_limit_error",
            ApiError::ModelNotFound(_) | ApiError::NotFound(_) => "not_found_error",
            _ => llm_link_protocol::anthropic::error_type_for_status(status.as_u16()),
        };
        let body = llm_link_protocol::anthropic::error_body(kind, &e.to_string());
        respond(e, status, body)
    }
}

impl Shape for Ollama {
    fn render(e: &ApiError) -> Response {
        let body = llm_link_protocol::ollama::error_body(&e.to_string());
        respond(e, e.status(), body)
    }
}

/// The error body with its status, `Retry-After` for a limit, and the
/// [`ErrorCode`] the usage finaliser records.
fn respond(e: &ApiError, status: StatusCode, body: serde_json::Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(ra) = e.retry_after() {
        if let Ok(v) = HeaderValue::from_str(ra) {
            resp.headers_mut().insert("retry-after", v);
        }
    }
    resp.extensions_mut().insert(ErrorCode(e.code()));
    resp
}

/// Handlers of the OpenAI surface return this.
pub type OpenAiError = Shaped<OpenAi>;
/// Handlers of the Anthropic surface return this.
pub type AnthropicError = Shaped<Anthropic>;
/// Handlers of the Ollama surface return this.
pub type OllamaError = Shaped<Ollama>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_carry_retry_after() {
        let r = ApiError::RateLimited {
            message: "slow".into(),
            retry_after: Some("7".into()),
        };
        let r = OpenAi::render(&r);
        assert_eq!(r.status(), 429);
        assert_eq!(
            r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            Some("7")
        );
    }
}
