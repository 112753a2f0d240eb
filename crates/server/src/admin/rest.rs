//! Shared pieces of the admin API (`/api/providers`, `/api/apps`,
//! `/api/v1/llm-models`, `/api/audit`, `/api/v1/llm/usage`): the
//! admin-token guard, the error body `{"error":{"message","field","type"}}`,
//! body parsing that names the bad field, and the field validators. The
//! CRUD cycles themselves are in [`super::resource`].

use crate::apply::FinishError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use llm_link_gateway::auth;
use llm_link_gateway::config::ConfigError;
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

/// Argon2 checks of unknown admin tokens allowed at once, and how long a
/// request waits for its turn before it is told to retry.
static ADMIN_VERIFICATIONS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
const VERIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

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

    fn forbidden(message: impl Into<String>) -> AdminError {
        AdminError {
            status: StatusCode::UNAUTHORIZED,
            kind: "unauthorized",
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

/// The admin token guard: `Authorization: Bearer <token>` or
/// `x-admin-token: <token>`. The token is `--admin-token` /
/// `LLM_LINK_ADMIN_TOKEN` when set, otherwise the one stored (hashed) in
/// the database.
pub async fn require_admin(
    State(st): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let hashed = st.store.as_ref().filter(|s| s.admin.has_hash());
    if st.admin_token.is_none() && hashed.is_none() {
        return AdminError::unavailable(
            "no admin token is configured: set LLM_LINK_ADMIN_TOKEN (or --admin-token)",
        )
        .into_response();
    }
    let Some(given) = auth::presented(req.headers(), "x-admin-token").map(str::to_string) else {
        return AdminError::forbidden(
            "the admin API needs the admin token: send `Authorization: Bearer <token>` or `x-admin-token: <token>`",
        )
        .into_response();
    };
    let ok = match (&st.admin_token, hashed) {
        (Some(t), _) => auth::ct_eq(given.as_bytes(), t.expose().as_bytes()),
        (None, Some(store)) => {
            if store.admin.quick_check(&given) {
                true
            } else {
                // Each check of an unknown token is an argon2 run (~19 MiB,
                // tens of ms); at most a few at once, so a flood of wrong
                // tokens cannot tie up the blocking pool or its memory.
                let permit = tokio::time::timeout(VERIFY_WAIT, ADMIN_VERIFICATIONS.acquire()).await;
                let Ok(Ok(_permit)) = permit else {
                    return AdminError::too_busy(
                        "too many admin token checks at once; retry shortly",
                    )
                    .into_response();
                };
                let s = store.clone();
                tokio::task::spawn_blocking(move || s.admin.verify(&given))
                    .await
                    .unwrap_or(false)
            }
        }
        (None, None) => false,
    };
    if !ok {
        return AdminError::forbidden("invalid admin token").into_response();
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip().to_string())
        .unwrap_or_else(|| "local".into());
    req.extensions_mut().insert(Actor(format!("admin@{ip}")));
    req.extensions_mut()
        .insert(super::caller::Caller::admin_token(format!("admin@{ip}")));
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
