//! Client-facing handlers, one module per protocol.

pub mod anthropic;
pub mod dispatch;
pub mod health;
pub mod ollama;
pub mod openai;

use crate::error::ApiError;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Maps a body that could not be read (too large, broken) to an error.
pub fn body_rejection(r: BytesRejection, limit: usize) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!(
            "request body is larger than the limit of {limit} bytes (raise it with --body-limit)"
        ))
    } else {
        ApiError::bad_request(format!(
            "could not read the request body: {}",
            r.body_text()
        ))
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random id with a prefix (`chatcmpl-…`).
pub fn new_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut s = String::with_capacity(prefix.len() + 25);
    s.push_str(prefix);
    for _ in 0..24 {
        s.push(ALPHABET[fastrand::usize(..ALPHABET.len())] as char);
    }
    s
}

/// `Server-Timing` with llm-link's own time and the upstream's.
pub fn server_timing(total: Duration, upstream: Duration) -> Option<HeaderValue> {
    let own = total.saturating_sub(upstream);
    HeaderValue::from_str(&format!(
        "gateway;dur={:.3}, upstream;dur={:.3}",
        own.as_secs_f64() * 1000.0,
        upstream.as_secs_f64() * 1000.0
    ))
    .ok()
}
