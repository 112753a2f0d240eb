//! Errors on the request path. Each variant maps to one HTTP status, one
//! OpenAI error type/code and one low-cardinality label for metrics; the
//! client-facing message never carries internal details or secrets.

use http::StatusCode;
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
    /// The credential is valid but may not do this (a model outside a
    /// virtual key's scope).
    #[error("{0}")]
    Forbidden(String),
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
    /// A budget the request would exceed (refused before any upstream call).
    #[error("{message}")]
    QuotaExceeded {
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
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
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
            ApiError::Forbidden(_) => "permission_error",
            ApiError::RateLimited { .. } => "rate_limit_error",
            ApiError::QuotaExceeded { .. } => "insufficient_quota",
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
            ApiError::Forbidden(_) => "model_not_allowed",
            ApiError::QuotaExceeded { .. } => "insufficient_quota",
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

    /// The request field an invalid-request error is about.
    pub fn param(&self) -> Option<&str> {
        match self {
            ApiError::BadRequest { param, .. } => param.as_deref(),
            _ => None,
        }
    }

    /// How long a rate-limited caller should wait.
    pub fn retry_after(&self) -> Option<&str> {
        match self {
            ApiError::RateLimited { retry_after, .. }
            | ApiError::QuotaExceeded { retry_after, .. } => retry_after.as_deref(),
            _ => None,
        }
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
        };
        assert_eq!(r.status(), 429);
        assert_eq!(r.retry_after(), Some("7"));
    }
}
