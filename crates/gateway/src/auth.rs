//! Client authentication on model endpoints: `Authorization: Bearer <key>`
//! or `x-api-key: <key>`, compared in constant time.

use crate::config::Secret;
use crate::error::ApiError;
use ::http::HeaderMap;

/// The key a client presented, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    presented(headers, "x-api-key")
}

/// A token presented in header `name`, else as `Authorization: Bearer`
/// (the admin API reads `x-admin-token`, model endpoints `x-api-key`).
pub fn presented<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if !v.is_empty() {
            return Some(v);
        }
    }
    let auth = headers
        .get(::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Passes when no keys are configured or a configured key was presented.
pub fn check(headers: &HeaderMap, keys: &[Secret]) -> Result<(), ApiError> {
    if keys.is_empty() {
        return Ok(());
    }
    let Some(given) = presented_key(headers) else {
        return Err(ApiError::Unauthorized(
            "missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`".into(),
        ));
    };
    let mut ok = false;
    for k in keys {
        ok |= ct_eq(given.as_bytes(), k.expose().as_bytes());
    }
    if ok {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("invalid API key".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_x_api_key() {
        let keys = vec![Secret::new("k1"), Secret::new("k2")];
        let mut h = HeaderMap::new();
        assert!(check(&h, &keys).is_err());
        assert!(check(&h, &[]).is_ok());
        h.insert(
            "authorization",
            "Bearer k2".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(check(&h, &keys).is_ok());
        h.insert(
            "authorization",
            "Bearer nope".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(check(&h, &keys).is_err());
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "k1".parse().unwrap_or_else(|_| unreachable!()));
        assert!(check(&h, &keys).is_ok());
    }
}
