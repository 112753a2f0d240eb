//! `POST /api/auth/login`, `POST /api/auth/logout`, `GET /api/auth/me`:
//! users log in with a username and password and get a session token (an
//! HS256 JWT naming a session row; see [`crate::sessions`]), also set as an
//! HttpOnly cookie for the console.
//!
//! Wrong usernames and wrong passwords get the same answer, and an unknown
//! username still costs one argon2 check, so neither the text nor the timing
//! tells which usernames exist. Five failures in a row lock an account for
//! five minutes. Every outcome is in the audit log (never the password).

use super::rest::{self, body, AdminError, AdminResult};
use crate::sessions::{self, SessionError, COOKIE, LIFETIME_SECS};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use llm_link_gateway::identity::{jwt, Role};
use llm_link_store::identity::{SessionRow, UserRow};
use llm_link_store::{now_ms, rfc3339, users, Store};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/me", get(me))
}

const INVALID: &str = "invalid username or password";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

impl std::fmt::Debug for LoginBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBody")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

fn invalid() -> AdminError {
    AdminError::unauthorized(INVALID)
}

fn busy() -> AdminError {
    AdminError::too_busy("too many logins are being checked at once; retry shortly")
}

/// A user as the API shows it: never the password hash.
pub fn user_json(u: &UserRow) -> Value {
    let budget = u
        .budget_amount
        .map(|a| json!({"amount": a, "period": u.budget_period.as_deref().unwrap_or("total")}));
    json!({
        "id": u.id,
        "username": u.username,
        "role": u.role,
        "disabled": u.disabled,
        "rpm": u.rpm,
        "tpm": u.tpm,
        "max_concurrency": u.max_concurrency,
        "budget": budget,
        "locked_until": u.locked_until.map(rfc3339),
        "last_login_at": u.last_login_at.map(rfc3339),
        "created_at": rfc3339(u.created_at),
        "updated_at": rfc3339(u.updated_at),
    })
}

fn permissions(role: Role) -> Vec<&'static str> {
    role.permissions().iter().map(|p| p.as_str()).collect()
}

/// Whether the request came over HTTPS (as a proxy in front says).
fn https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .next()
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
        })
}

fn cookie(value: &str, max_age: i64, secure: bool) -> Option<HeaderValue> {
    let mut c = format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}");
    if secure {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).ok()
}

async fn audit(store: &Store, actor: &str, action: &str, target: &str, details: Value) {
    let res = async {
        let mut tx = store.db.begin().await?;
        tx.audit(actor, action, target, &details).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = res {
        tracing::warn!("cannot write the audit row for {action}: {e}");
    }
}

async fn login(State(st): State<Arc<AppState>>, headers: HeaderMap, raw: Bytes) -> AdminResult {
    let store = rest::store(&st)?;
    let b: LoginBody = body(&raw)?;
    if b.username.is_empty() {
        return Err(AdminError::invalid("username", "must not be empty"));
    }
    if b.password.chars().count() > users::PASSWORD_MAX {
        return Err(AdminError::invalid(
            "password",
            format!("must be at most {} characters", users::PASSWORD_MAX),
        ));
    }
    let ip = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').next().unwrap_or("").trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 64);
    let target = format!("user {}", b.username.chars().take(64).collect::<String>());
    let mut tx = store.db.begin_read().await?;
    let user = tx.user_by_name(&b.username).await?;
    tx.rollback().await?;

    if let Some(u) = &user {
        if let Some(secs) = users::locked_for(u.locked_until, now_ms()) {
            let mut r = AdminError {
                status: StatusCode::TOO_MANY_REQUESTS,
                kind: "locked",
                message: format!(
                    "the account is locked after {} failed logins; retry in {secs} s",
                    users::LOCK_AFTER
                ),
                field: None,
            }
            .into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return Ok(r);
        }
    }
    // The password moves to the check: no second copy of it stays around.
    let ok = users::verify_async(user.as_ref().map(|u| u.password_hash.clone()), b.password)
        .await
        .map_err(|_| busy())?;
    let Some(u) = user else {
        audit(
            store,
            "anonymous",
            "auth.login_failed",
            &target,
            json!({"reason": "unknown user", "ip": ip}),
        )
        .await;
        return Err(invalid());
    };
    if !ok {
        // Count the failure against the state as it is now (another login
        // may have counted one meanwhile).
        let now = now_ms();
        let mut tx = store.db.begin().await?;
        let current = tx.user(u.id).await?;
        let failed = current
            .as_ref()
            .map_or(u.failed_logins, |c| c.failed_logins);
        let (n, until) = users::after_failure(failed, now);
        tx.set_login_state(u.id, n, until, None).await?;
        tx.audit(
            "anonymous",
            "auth.login_failed",
            &target,
            &json!({"reason": "wrong password", "ip": ip}),
        )
        .await?;
        if let Some(t) = until {
            tx.audit(
                "llm-link",
                "auth.locked",
                &target,
                &json!({"failed_logins": users::LOCK_AFTER, "locked_until": rfc3339(t)}),
            )
            .await?;
        }
        tx.commit().await?;
        return Err(invalid());
    }
    if u.disabled {
        audit(
            store,
            "anonymous",
            "auth.login_failed",
            &target,
            json!({"reason": "disabled", "ip": ip}),
        )
        .await;
        return Err(invalid());
    }

    // A session row, then its token.
    let now = now_ms();
    let sid = hex::encode(llm_link_store::crypto::random_bytes::<16>());
    let expires_ms = now + LIFETIME_SECS * 1000;
    let claims = jwt::Claims {
        sub: u.id.to_string(),
        sid: sid.clone(),
        role: u.role.clone(),
        iat: now / 1000,
        exp: expires_ms / 1000,
        iss: jwt::ISSUER.into(),
    };
    let token = jwt::issue(&store.secrets.jwt, &claims).map_err(|e| {
        tracing::error!("cannot sign a session token: {e}");
        AdminError::internal("cannot issue a session token; see the llm-link log")
    })?;
    let mut tx = store.db.begin().await?;
    tx.insert_session(&SessionRow {
        id: sid,
        user_id: u.id,
        created_at: now,
        expires_at: expires_ms,
        revoked_at: None,
    })
    .await?;
    tx.set_login_state(u.id, 0, None, Some(now)).await?;
    // Housekeeping: sessions that ended a day ago are of no use to anyone.
    tx.purge_sessions(now - 86_400_000).await?;
    tx.audit(
        &format!("user:{}", u.username),
        "auth.login",
        &target,
        &json!({"ip": ip}),
    )
    .await?;
    let fresh = tx.user(u.id).await?.unwrap_or(u);
    tx.commit().await?;

    let mut resp = Json(json!({
        "token": token,
        "expires_at": rfc3339(expires_ms),
        "user": user_json(&fresh),
    }))
    .into_response();
    if let Some(c) = cookie(&token, LIFETIME_SECS, https(&headers)) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(resp)
}

fn session_error(e: SessionError) -> AdminError {
    match e {
        SessionError::Store | SessionError::NoStore => AdminError::unavailable(e.to_string()),
        _ => AdminError::unauthorized(e.to_string()),
    }
}

fn no_session() -> AdminError {
    AdminError::unauthorized(
        "no session: send `Authorization: Bearer <session token>` or the session cookie from POST /api/auth/login",
    )
}

async fn logout(State(st): State<Arc<AppState>>, headers: HeaderMap) -> AdminResult {
    let store = rest::store(&st)?;
    let token = sessions::presented(&headers).ok_or_else(no_session)?;
    let s = sessions::session(&st, token).await.map_err(session_error)?;
    let mut tx = store.db.begin().await?;
    tx.revoke_session(&s.claims.sid).await?;
    tx.audit(
        &format!("user:{}", s.user.username),
        "auth.logout",
        &format!("user {}", s.user.username),
        &json!({}),
    )
    .await?;
    tx.commit().await?;
    st.sessions.forget(&s.claims.sid).await;
    let mut resp = Json(json!({"status": "ok"})).into_response();
    if let Some(c) = cookie("", 0, https(&headers)) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(resp)
}

async fn me(State(st): State<Arc<AppState>>, headers: HeaderMap) -> AdminResult {
    let store = rest::store(&st)?;
    let token = sessions::presented(&headers).ok_or_else(no_session)?;
    let s = sessions::session(&st, token).await.map_err(session_error)?;
    let mut tx = store.db.begin_read().await?;
    let row = tx.user(s.user.id).await?;
    tx.rollback().await?;
    let Some(row) = row else {
        return Err(session_error(SessionError::UserUnavailable));
    };
    let mut v = user_json(&row);
    // The role in force is the one the request path sees.
    v["role"] = Value::String(s.user.role.as_str().into());
    v["permissions"] = json!(permissions(s.user.role));
    v["session_expires_at"] = Value::String(rfc3339(s.claims.exp.saturating_mul(1000)));
    Ok(Json(v).into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cookie_attributes() {
        let c = cookie("eyJ.a.b", LIFETIME_SECS, false).unwrap();
        assert_eq!(
            c.to_str().unwrap(),
            "llm_link_session=eyJ.a.b; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200"
        );
        let c = cookie("", 0, true).unwrap();
        assert!(c.to_str().unwrap().ends_with("Max-Age=0; Secure"));
        let mut h = HeaderMap::new();
        assert!(!https(&h));
        h.insert("x-forwarded-proto", HeaderValue::from_static("HTTPS, http"));
        assert!(https(&h));
    }
}
