//! Shared pieces of the admin API (`/api/providers`, `/api/apps`,
//! `/api/v1/llm-models`, `/api/audit`, `/api/v1/llm/usage`, `/api/users`):
//! the credential check and permission guard, the error body `{"error":{"message","field","type"}}`,
//! body parsing that names the bad field, and the field validators. The
//! CRUD cycles themselves are in [`super::resource`].

use super::caller::Caller;
use crate::apply::FinishError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use llm_link_gateway::auth;
use llm_link_gateway::config::ConfigError;
use llm_link_gateway::identity::{jwt, Permission};
use llm_link_store::{Store, StoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

/// An admin API failure; its message never carries a secret.
#[derive(Debug)]
pub struct AdminError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl AdminError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> AdminError {
        AdminError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn not_found(message: impl Into<String>) -> AdminError {
        AdminError {
            status: StatusCode::NOT_FOUND,
            kind: "not_found",
            message: message.into(),
            field: None,
        }
    }

    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> AdminError {
        AdminError {
            status: StatusCode::CONFLICT,
            kind: "conflict",
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn read_only(message: impl Into<String>) -> AdminError {
        AdminError {
            status: StatusCode::CONFLICT,
            kind: "read_only",
            message: message.into(),
            field: None,
        }
    }

    pub fn too_busy(message: impl Into<String>) -> AdminError {
        AdminError {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "rate_limited",
            message: message.into(),
            field: None,
        }
    }

    pub fn unavailable(message: impl Into<String>) -> AdminError {
        AdminError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "unavailable",
            message: message.into(),
            field: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> AdminError {
        AdminError {
            status: StatusCode::UNAUTHORIZED,
            kind: "unauthorized",
            message: message.into(),
            field: None,
        }
    }

    pub fn forbidden(message: impl Into<String>) -> AdminError {
        AdminError {
            status: StatusCode::FORBIDDEN,
            kind: "forbidden",
            message: message.into(),
            field: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> AdminError {
        AdminError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal_error",
            message: message.into(),
            field: None,
        }
    }

    /// A configuration the change would produce is invalid.
    pub fn from_config(e: ConfigError) -> AdminError {
        let field = e.field.clone();
        AdminError::invalid(
            field,
            format!("the change would make the configuration invalid: {e}"),
        )
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> AdminError {
        if e.is_conflict() {
            return AdminError::conflict("", "conflicts with an existing entry");
        }
        // Details go to the log; sqlx errors never hold bound values (secrets
        // are bound, never spliced), but the client needs none of it.
        tracing::error!("admin API database error: {e}");
        AdminError::internal("database error; see the llm-link log")
    }
}

impl From<FinishError> for AdminError {
    fn from(e: FinishError) -> AdminError {
        match e {
            FinishError::Store(e) => e.into(),
            FinishError::Invalid(e) => AdminError::from_config(e),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut err = json!({"message": self.message, "type": self.kind});
        if let Some(f) = self.field.filter(|f| !f.is_empty()) {
            err["field"] = Value::String(f);
        }
        (self.status, Json(json!({ "error": err }))).into_response()
    }
}

pub type AdminResult<T = Response> = Result<T, AdminError>;

/// The store, or 503 when llm-link runs without a database.
pub fn store(st: &AppState) -> AdminResult<&Arc<Store>> {
    st.store.as_ref().ok_or_else(|| {
        AdminError::unavailable(
            "llm-link runs without a database (--database none); restart with a database to manage providers through the API",
        )
    })
}

/// Decodes a JSON body into `T`, naming the bad field on error.
pub fn body<T: DeserializeOwned>(bytes: &[u8]) -> AdminResult<T> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| AdminError::invalid("body", "the body is not UTF-8"))?;
    let text = if text.trim().is_empty() { "{}" } else { text };
    if !text.trim_start().starts_with('{') {
        return Err(AdminError::invalid(
            "body",
            "the body must be a JSON object",
        ));
    }
    let decoded = llm_link_protocol::json::decode_field::<T>("", text).map_err(|e| {
        let mut field = e.field.trim_start_matches('.').to_string();
        let mut message = e.message.clone();
        // serde names an unknown field in its message; the path may not.
        if let Some(rest) = e.message.strip_prefix("unknown field `") {
            if let Some(name) = rest.split('`').next() {
                if field.is_empty() {
                    field = name.to_string();
                } else if field != name && !field.ends_with(&format!(".{name}")) {
                    field = format!("{field}.{name}");
                }
                message = format!("unknown field `{name}`");
            }
        }
        if field.is_empty() {
            field = "body".into();
        }
        AdminError::invalid(field, message)
    })?;
    // PostgreSQL text cannot hold a NUL (it would be a 500 at insert time);
    // in JSON one can only come as the escape `\u0000`.
    if text.contains("\\u0000") {
        if let Some(field) = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| nul_at(&v, String::new()))
        {
            return Err(AdminError::invalid(
                field,
                "must not contain a NUL character",
            ));
        }
    }
    Ok(decoded)
}

/// The path of the first string (or object key) holding a NUL.
fn nul_at(v: &Value, at: String) -> Option<String> {
    match v {
        Value::String(s) => s.contains('\0').then_some(at),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_at(x, format!("{at}[{i}]"))),
        Value::Object(m) => m.iter().find_map(|(k, x)| {
            let at = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if k.contains('\0') {
                Some(at)
            } else {
                nul_at(x, at)
            }
        }),
        _ => None,
    }
}

/// `Some(None)` for an explicit `null`, `None` when absent (with `#[serde(default)]`).
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Who made a change, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// The caller's address for the audit log (`local` without one).
pub fn caller_ip(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip().to_string())
        .unwrap_or_else(|| "local".into())
}

/// Whether an admin token exists at all (`--admin-token` or a stored one).
pub fn admin_token_configured(st: &AppState) -> bool {
    st.admin_token.is_some() || st.store.as_ref().is_some_and(|s| s.admin.has_hash())
}

/// The one credential check of the admin surfaces: the admin token
/// (`--admin-token`, else the stored keyed hash; break-glass, every
/// permission), or a user's session token as `Authorization: Bearer`, or the
/// `llm_link_session` cookie. `Ok(None)` when nothing was presented.
pub async fn authenticate(
    st: &AppState,
    headers: &HeaderMap,
    ip: &str,
) -> AdminResult<Option<Caller>> {
    let given = auth::presented(headers, "x-admin-token");
    if let Some(given) = given {
        if let Some(t) = &st.admin_token {
            if auth::ct_eq(given.as_bytes(), t.expose().as_bytes()) {
                return Ok(Some(Caller::admin_token(format!("admin@{ip}"))));
            }
        }
        if jwt::looks_like(given) {
            return user_caller(st, given).await.map(Some);
        }
        if !admin_token_configured(st) {
            return Err(AdminError::unavailable(
                "no admin token is configured: set LLM_LINK_ADMIN_TOKEN (or --admin-token), or log in as a user",
            ));
        }
        if stored_admin_token(st, given).await? {
            return Ok(Some(Caller::admin_token(format!("admin@{ip}"))));
        }
        return Err(AdminError::unauthorized("invalid admin token"));
    }
    match crate::sessions::cookie(headers) {
        Some(token) => user_caller(st, token).await.map(Some),
        None => Ok(None),
    }
}

async fn user_caller(st: &AppState, token: &str) -> AdminResult<Caller> {
    use crate::sessions::SessionError;
    match crate::sessions::session_user(st, token).await {
        Ok(user) => Ok(Caller {
            role: user.role,
            actor: format!("user:{}", user.username),
            user: Some(user),
        }),
        Err(SessionError::Store) => Err(AdminError::unavailable(SessionError::Store.to_string())),
        Err(e) => Err(AdminError::unauthorized(e.to_string())),
    }
}

/// Checks `given` against the stored admin token hash. A keyed hash is a
/// constant-time compare; a legacy argon2 hash is one argon2 run (limited
/// to a few at once) and, on success, is replaced by the keyed hash.
async fn stored_admin_token(st: &AppState, given: &str) -> AdminResult<bool> {
    let Some(store) = st.store.as_ref().filter(|s| s.admin.has_hash()) else {
        return Ok(false);
    };
    if store.admin.quick_check(given) {
        return Ok(true);
    }
    if !store.admin.is_legacy() {
        return Ok(false);
    }
    let legacy = store.admin.current();
    let s = store.clone();
    let token = given.to_string();
    let ok = llm_link_store::users::limited(move || s.admin.verify(&token))
        .await
        .map_err(|_| AdminError::too_busy("too many admin token checks at once; retry shortly"))?;
    if ok {
        if let Some(legacy) = legacy {
            match llm_link_store::token::upgrade(&store.db, &legacy, &store.admin.keyed(given))
                .await
            {
                Ok(now) => store.admin.set_hash(now),
                Err(e) => tracing::warn!("cannot replace the legacy admin token hash: {e}"),
            }
        }
    }
    Ok(ok)
}

/// The permission a request to the admin API needs.
pub fn needed(method: &Method, path: &str) -> Permission {
    let under = |p: &str| path == p || path.starts_with(&format!("{p}/"));
    if under("/api/users") {
        Permission::ManageUsers
    } else if under("/api/keys") {
        Permission::ManageKeys
    } else if under("/api/v1/llm/usage") || under("/api/usage") {
        Permission::ViewMetrics
    } else if method == Method::GET || method == Method::HEAD {
        Permission::ViewProviders
    } else {
        Permission::EditProviders
    }
}

/// The admin API's guard: authenticates ([`authenticate`]), checks the
/// route's permission ([`needed`]) and puts the [`Caller`] and its
/// [`Actor`] in the request. 401 without a valid credential, 403 when the
/// caller's role lacks the permission.
pub async fn require_admin(
    State(st): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let ip = caller_ip(&req);
    let caller = match authenticate(&st, req.headers(), &ip).await {
        Ok(Some(c)) => c,
        Ok(None) if !admin_token_configured(&st) && st.store.is_none() => {
            return AdminError::unavailable(
                "no admin token is configured: set LLM_LINK_ADMIN_TOKEN (or --admin-token)",
            )
            .into_response()
        }
        Ok(None) => {
            return AdminError::unauthorized(
                "the admin API needs a credential: send `Authorization: Bearer <admin token or session token>`, `x-admin-token: <token>`, or the session cookie from POST /api/auth/login",
            )
            .into_response()
        }
        Err(e) => return e.into_response(),
    };
    let perm = needed(req.method(), req.uri().path());
    if !caller.can(perm) {
        return AdminError::forbidden(format!(
            "{} {} needs the {} permission",
            req.method(),
            req.uri().path(),
            perm.as_str()
        ))
        .into_response();
    }
    req.extensions_mut().insert(Actor(caller.actor.clone()));
    req.extensions_mut().insert(caller);
    next.run(req).await
}

pub fn actor(req_actor: Option<axum::Extension<Actor>>) -> String {
    req_actor.map(|a| a.0 .0).unwrap_or_else(|| "admin".into())
}

/// `10s`, `1500ms`: the shortest exact form of a duration in milliseconds.
pub fn duration_text(ms: i64) -> String {
    if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A duration given as `"30s"` / `"500ms"` or a number of seconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DurationIn {
    Seconds(f64),
    Text(String),
}

impl DurationIn {
    pub fn millis(&self, field: &str) -> AdminResult<i64> {
        let d = match self {
            DurationIn::Seconds(s) => llm_link_gateway::config::parse_duration(&format!("{s}")),
            DurationIn::Text(t) => llm_link_gateway::config::parse_duration(t),
        }
        .map_err(|m| AdminError::invalid(field, m))?;
        Ok(d.as_millis().min(i64::MAX as u128) as i64)
    }
}

/// Checks a name used in `name/model` and URLs: non-empty, no spaces or `/`.
pub fn check_name(field: &str, name: &str) -> AdminResult<()> {
    if name.trim().is_empty()
        || name.len() > 100
        || name.contains('/')
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(AdminError::invalid(
            field,
            "must be 1-100 characters, without spaces or `/`",
        ));
    }
    Ok(())
}

/// Rejects a number outside `lo..=hi`.
pub fn check_range(field: &str, v: i64, lo: i64, hi: i64) -> AdminResult<i64> {
    if v < lo || v > hi {
        return Err(AdminError::invalid(
            field,
            format!("must be between {lo} and {hi}"),
        ));
    }
    Ok(v)
}

/// Refuses a value not in `allowed`, saying `message`.
pub fn one_of(field: &str, v: &str, allowed: &[&str], message: &str) -> AdminResult<String> {
    if !allowed.contains(&v) {
        return Err(AdminError::invalid(field, message));
    }
    Ok(v.to_string())
}
