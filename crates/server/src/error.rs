//! Errors of the request path rendered in each client protocol's shape,
//! with the right status, `Retry-After`, and the [`ErrorCode`] the usage
//! finaliser records. The errors themselves live in the engine
//! (`llm_link_gateway::error`).

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
pub use llm_link_gateway::error::{ApiError, ErrorCode};

/// An [`ApiError`] as a response of one client surface.
pub trait Render {
    /// The error in OpenAI's shape.
    fn openai_response(&self) -> Response;
    /// The error in Anthropic's shape: `{"type":"error","error":{"type","message"}}`.
    fn anthropic_response(&self) -> Response;
    /// The error in Ollama's shape: `{"error":"…"}`.
    fn ollama_response(&self) -> Response;
}

impl Render for ApiError {
    /// The error in OpenAI's shape.
    fn openai_response(&self) -> Response {
        let body = llm_link_protocol::openai::error_body(
            &self.to_string(),
            self.openai_type(),
            Some(self.code()),
            self.param(),
        );
        let mut resp = (self.status(), axum::Json(body)).into_response();
        if let Some(ra) = self.retry_after() {
            if let Ok(v) = HeaderValue::from_str(ra) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp.extensions_mut().insert(ErrorCode(self.code()));
        resp
    }

    /// The error in Anthropic's shape: `{"type":"error","error":{"type","message"}}`.
    fn anthropic_response(&self) -> Response {
        let status = self.status();
        let kind = match self {
            ApiError::UpstreamAuth(_) | ApiError::BadGateway(_) | ApiError::Timeout(_) => {
                "api_error"
            }
            ApiError::Unavailable(_) => "overloaded_error",
            ApiError::ModelNotFound(_) | ApiError::NotFound(_) => "not_found_error",
            _ => llm_link_protocol::anthropic::error_type_for_status(status.as_u16()),
        };
        let body = llm_link_protocol::anthropic::error_body(kind, &self.to_string());
        let mut resp = (status, axum::Json(body)).into_response();
        if let Some(ra) = self.retry_after() {
            if let Ok(v) = HeaderValue::from_str(ra) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp.extensions_mut().insert(ErrorCode(self.code()));
        resp
    }

    /// The error in Ollama's shape: `{"error":"…"}`.
    fn ollama_response(&self) -> Response {
        let body = llm_link_protocol::ollama::error_body(&self.to_string());
        let mut resp = (self.status(), axum::Json(body)).into_response();
        if let Some(ra) = self.retry_after() {
            if let Ok(v) = HeaderValue::from_str(ra) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp.extensions_mut().insert(ErrorCode(self.code()));
        resp
    }
}

/// Handlers of the Anthropic surface return this.
pub struct AnthropicError(pub ApiError);

impl<E: Into<ApiError>> From<E> for AnthropicError {
    fn from(e: E) -> Self {
        AnthropicError(e.into())
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        self.0.anthropic_response()
    }
}

/// Handlers of the Ollama surface return this.
pub struct OllamaError(pub ApiError);

impl<E: Into<ApiError>> From<E> for OllamaError {
    fn from(e: E) -> Self {
        OllamaError(e.into())
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        self.0.ollama_response()
    }
}

/// Handlers of the OpenAI surface return this so errors render in its shape.
pub struct OpenAiError(pub ApiError);

impl<E: Into<ApiError>> From<E> for OpenAiError {
    fn from(e: E) -> Self {
        OpenAiError(e.into())
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        self.0.openai_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_carry_retry_after() {
        let r = ApiError::RateLimited {
            message: "slow".into(),
            retry_after: Some("7".into()),
        }
        .openai_response();
        assert_eq!(r.status(), 429);
        assert_eq!(
            r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            Some("7")
        );
    }
}
