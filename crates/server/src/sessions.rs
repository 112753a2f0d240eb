//! Session tokens, checked the same way everywhere (admin API, `/api/auth`,
//! and model endpoints that accept a user's JWT).
//!
//! A session token is an HS256 JWT ([`llm_link_gateway::identity::jwt`])
//! signed with the install's session key; its `sid` names a row in
//! `sessions` that logout (or a password change, or disabling the user)
//! revokes. [`session_user`] accepts a token when
//! 1. the signature, issuer and expiry hold;
//! 2. its session row exists, is not revoked, has not expired and belongs to
//!    the token's user — this check is cached in memory for at most
//!    [`CACHE_TTL`] (positive and negative answers alike), so a busy client
//!    costs one database read per 5 s, and logout in this process takes
//!    effect at once ([`Sessions::forget`]); other replicas see a
//!    revocation within [`CACHE_TTL`];
//! 3. the user exists in the in-memory identities and is not disabled (so a
//!    deleted or disabled user is refused at once, with no database read).
//!
//! The role comes from the identities, not from the token, so a demotion
//! applies to tokens already issued.

use crate::state::{AppState, RowCheck};
use llm_link_gateway::identity::{jwt, UserEntry};
use std::sync::Arc;

/// The cookie carrying the session token.
pub const COOKIE: &str = "llm_link_session";
/// How long a session lasts.
pub const LIFETIME_SECS: i64 = 12 * 3600;
/// The per-process cache of session-row checks (`AppState::sessions`).
pub use crate::state::SessionCache as Sessions;
/// How long a session-row check is remembered.
pub use crate::state::SESSION_CHECK_TTL as CACHE_TTL;

/// Why a token was refused (never says more than a client needs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Bad signature, wrong issuer, expired, or not a JWT.
    #[error("invalid or expired session token")]
    Invalid,
    /// Logged out or revoked (password change, user disabled).
    #[error("the session has ended; log in again")]
    Revoked,
    /// The user is gone or disabled.
    #[error("the user of this session is disabled or no longer exists")]
    UserUnavailable,
    /// Without a database there are no sessions.
    #[error("llm-link runs without a database; there are no user sessions")]
    NoStore,
    /// The session row could not be read.
    #[error("cannot check the session right now; retry")]
    Store,
}

/// A checked session.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: Arc<UserEntry>,
    pub claims: jwt::Claims,
}

/// The user a session token belongs to; see the module docs for what is
/// checked. Cheap on the hot path: a signature check, a cache lookup and a
/// map lookup; a database read at most once per session per [`CACHE_TTL`].
pub async fn session_user(st: &AppState, token: &str) -> Result<Arc<UserEntry>, SessionError> {
    session(st, token).await.map(|s| s.user)
}

/// Who calls with a session token, as the model endpoints and the team API
/// see it: the user, with no key.
pub async fn principal(
    st: &AppState,
    token: &str,
) -> Result<llm_link_gateway::govern::Principal, SessionError> {
    Ok(llm_link_gateway::govern::Principal {
        key: None,
        user: Some(session_user(st, token).await?),
    })
}

/// [`session_user`] with the token's claims (logout needs the `sid`).
pub async fn session(st: &AppState, token: &str) -> Result<Session, SessionError> {
    let store = st.store.as_ref().ok_or(SessionError::NoStore)?;
    if !jwt::looks_like(token) {
        return Err(SessionError::Invalid);
    }
    let claims = jwt::verify(&store.secrets.jwt, token).map_err(|_| SessionError::Invalid)?;
    let uid: i64 = claims.sub.parse().map_err(|_| SessionError::Invalid)?;
    if claims.sid.is_empty() || claims.sid.len() > 128 {
        return Err(SessionError::Invalid);
    }
    // Concurrent misses for one session share a single database read.
    let row = st
        .sessions
        .rows
        .try_get_with_by_ref(claims.sid.as_str(), read_row(store, &claims.sid))
        .await
        .map_err(|e| (*e).clone())?;
    let now = llm_link_gateway::util::now_ms();
    match row {
        Some((owner, expires)) if owner == uid && expires > now => {}
        _ => return Err(SessionError::Revoked),
    }
    let user = st
        .identities
        .load()
        .user(uid)
        .cloned()
        .ok_or(SessionError::UserUnavailable)?;
    if user.disabled {
        return Err(SessionError::UserUnavailable);
    }
    Ok(Session { user, claims })
}

async fn read_row(store: &llm_link_store::Store, sid: &str) -> Result<RowCheck, SessionError> {
    let fail = |e: llm_link_store::StoreError| {
        tracing::warn!("cannot read a session row: {e}");
        SessionError::Store
    };
    let mut tx = store.db.begin_read().await.map_err(fail)?;
    let row = tx.session(sid).await.map_err(fail)?;
    let _ = tx.rollback().await;
    Ok(row
        .filter(|r| r.revoked_at.is_none())
        .map(|r| (r.user_id, r.expires_at)))
}

/// The session cookie's value in a `Cookie` header, if any.
pub fn cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == COOKIE)
                .then(|| v.trim())
                .filter(|v| !v.is_empty())
        })
}

/// A session token presented as `Authorization: Bearer` (only one that looks
/// like a JWT), else in the cookie.
pub fn presented(headers: &axum::http::HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| jwt::looks_like(t));
    bearer.or_else(|| cookie(headers))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn cookie_and_bearer() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert(
            "cookie",
            "a=b; llm_link_session=eyJx.y.z; c=d".parse().unwrap(),
        );
        assert_eq!(cookie(&h), Some("eyJx.y.z"));
        assert_eq!(presented(&h), Some("eyJx.y.z"));
        // A bearer JWT wins; a bearer that is not a JWT (an admin token) is
        // not a session token.
        h.insert("authorization", "Bearer eyJa.b.c".parse().unwrap());
        assert_eq!(presented(&h), Some("eyJa.b.c"));
        h.insert("authorization", "Bearer lla_token".parse().unwrap());
        assert_eq!(presented(&h), Some("eyJx.y.z"));
        let mut h = HeaderMap::new();
        h.insert(
            "cookie",
            "llm_link_session_x=1; llm_link_session=".parse().unwrap(),
        );
        assert_eq!(cookie(&h), None);
    }
}
