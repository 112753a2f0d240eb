//! Errors on the request path. Each variant maps to one HTTP status, one
//! OpenAI error type/code and one low-cardinality label for metrics; the
//! client-facing message never carries internal details or secrets.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use llm_link_protocol::json::DecodeError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The client sent something we cannot accept.
    #[error("{message}")]
    BadRequest {
        message: String,
        param: Option<String>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    ModelNotFound(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The upstream (or a limit) said slow down.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Option<String>,
    },
    /// The upstream refused llm-link's own key for it.
    #[error("{0}")]
    UpstreamAuth(String),
    /// The upstream rejected the request as invalid (its 4xx other than auth
    /// and rate limits), passed on with its status.
    #[error("{message}")]
    UpstreamRejected { status: u16, message: String },
    /// The upstream failed (5xx, reset, malformed answer).
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
}

/// The error's [`ApiError::code`], attached to every error response (the
/// usage finalizer records it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub &'static str);

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            param: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::ModelNotFound(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UpstreamAuth(_) | ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::UpstreamRejected { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST)
            }
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `error.type`.
    pub fn openai_type(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. }
            | ApiError::ModelNotFound(_)
            | ApiError::NotFound(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::UpstreamRejected { .. } => "invalid_request_error",
            ApiError::Unauthorized(_) => "authentication_error",
            ApiError::RateLimited { .. } => "rate_limit_error",
            ApiError::UpstreamAuth(_)
            | ApiError::BadGateway(_)
            | ApiError::Unavailable(_)
            | ApiError::Timeout(_) => "upstream_error",
            ApiError::Internal(_) => "server_error",
        }
    }

    /// A stable code; also the metric label.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "invalid_request",
            ApiError::Unauthorized(_) => "invalid_api_key",
            ApiError::ModelNotFound(_) => "model_not_found",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge(_) => "request_too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::UpstreamAuth(_) => "upstream_auth_failed",
            ApiError::UpstreamRejected { .. } => "upstream_rejected",
            ApiError::BadGateway(_) => "upstream_failed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Timeout(_) => "upstream_timeout",
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn param(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { param, .. } => param.as_deref(),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<&str> {
        match self {
            ApiError::RateLimited { retry_after, .. } => retry_after.as_deref(),
            _ => None,
        }
    }

    /// The error in OpenAI's shape.
    pub fn openai_response(&self) -> Response {
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
}

impl ApiError {
    /// The error in Anthropic's shape: `{"type":"error","error":{"type","message"}}`.
    pub fn anthropic_response(&self) -> Response {
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
    pub fn ollama_response(&self) -> Response {
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

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> ApiError {
        ApiError::BadRequest {
            message: e.to_string(),
            param: (!e.field.is_empty()).then_some(e.field),
        }
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
    fn statuses() {
        assert_eq!(ApiError::bad_request("x").status(), 400);
        assert_eq!(ApiError::UpstreamAuth("x".into()).status(), 502);
        assert_eq!(ApiError::Timeout("x".into()).status(), 504);
        assert_eq!(
            ApiError::UpstreamRejected {
                status: 422,
                message: "x".into()
            }
            .status(),
            422
        );
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
