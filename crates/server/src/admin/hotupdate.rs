//! The hot-update API desktop hosts use to switch provider and model:
//! `/api/config/{current,update,switch,validate,pid,shutdown}`.
//!
//! Two flows: the restart flow (`update` returns the env vars and CLI args to
//! restart with; the host watches `instance_id` change on `/api/health`) and
//! the in-process switch (`switch`, or `update` with `"apply": true`), which
//! swaps the runtime snapshot atomically: requests in flight finish on the
//! old provider, new ones use the new one.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use llm_link_gateway::config::{self, CliInput, ConfigError};
use llm_link_gateway::identity::Permission;
use llm_link_gateway::presets;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long `validate` waits for the upstream's model list.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(15);

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let state_origins = state.cors_origins.clone();
    let mutating = Router::new()
        .route("/api/config/update", post(update))
        .route("/api/config/switch", post(switch))
        .route("/api/config/validate", post(validate))
        .route("/api/config/shutdown", post(shutdown))
        .route_layer(middleware::from_fn_with_state(state, local_or_admin));
    let mut r = Router::new()
        .route("/api/config/current", get(current))
        .route("/api/config/pid", get(pid))
        .merge(mutating);
    if let Some(cors) = crate::admin::cors_layer(&state_origins) {
        r = r.route_layer(cors);
    }
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"status": "error", "message": message.into()})),
    )
        .into_response()
}

/// Only loopback callers, or callers presenting a credential (the admin
/// token, or a user's session token or cookie) whose role has the
/// SystemConfig permission. The credential check is the admin API's
/// ([`super::rest::authenticate`]).
pub async fn local_or_admin(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    local_or(&st, req, next, Permission::SystemConfig).await
}

/// Loopback callers, or callers whose credential carries `perm`.
pub async fn local_or(st: &AppState, req: Request, next: Next, perm: Permission) -> Response {
    let loopback = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip().is_loopback())
        .unwrap_or(false);
    if loopback {
        return next.run(req).await;
    }
    let ip = super::rest::caller_ip(&req);
    match super::rest::authenticate(st, req.headers(), &ip).await {
        Ok(Some(c)) if c.can(perm) => next.run(req).await,
        Ok(Some(_)) => error(
            StatusCode::FORBIDDEN,
            format!("this endpoint needs the {} permission", perm.as_str()),
        ),
        _ => error(
            StatusCode::FORBIDDEN,
            "this endpoint answers loopback callers only, unless the admin token or a session token is presented",
        ),
    }
}

async fn current(State(st): State<Arc<AppState>>) -> Json<Value> {
    let rt = st.runtime();
    let first = rt.router.providers().first().map(|p| p.config());
    Json(json!({
        "provider": first.map(|c| c.preset.kind).unwrap_or(""),
        "model": first.and_then(|c| c.default_model.as_deref()).unwrap_or(""),
        "has_api_key": first.is_some_and(|c| c.api_key.is_some()),
        "has_base_url": first.is_some_and(|c| !c.base_url.is_empty()),
    }))
}

async fn pid(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "pid": st.pid,
        "message": "Use this PID to restart the service",
    }))
}

async fn shutdown(State(st): State<Arc<AppState>>) -> Json<Value> {
    tracing::info!("shutdown requested through /api/config/shutdown");
    st.shutdown.cancel();
    Json(json!({
        "status": "success",
        "message": "Shutdown signal sent. Please restart with new configuration.",
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    provider: String,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    apply: bool,
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Box<Response>> {
    let text = std::str::from_utf8(body)
        .map_err(|_| Box::new(error(StatusCode::BAD_REQUEST, "body is not UTF-8")))?;
    llm_link_protocol::json::decode_field::<T>("body", text)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, e.to_string())))
}

/// The single-provider configuration a request describes, validated like
/// the command line would be.
fn describe(st: &AppState, b: &UpdateBody) -> Result<config::Config, ConfigError> {
    let preset = presets::find(&b.provider).ok_or_else(|| {
        ConfigError::new(
            "provider",
            format!(
                "unknown provider `{}`; known kinds: {}",
                b.provider,
                presets::kinds()
            ),
        )
    })?;
    let input = CliInput {
        host: Some(st.listen.host.clone()),
        port: Some(st.listen.port),
        provider: Some(preset.kind.to_string()),
        model: b.model.clone().filter(|m| !m.trim().is_empty()),
        api_key: b.api_key.clone().filter(|k| !k.is_empty()),
        base_url: b.base_url.clone().filter(|u| !u.trim().is_empty()),
        ..CliInput::default()
    };
    config::build(&input, None, &|k| std::env::var(k).ok()).map_err(|e| {
        // Name the JSON fields, not the command-line flags.
        let field = e.field.trim_start_matches("--").replace('-', "_");
        let mut message = e.message;
        for (flag, json) in [
            ("--base-url", "base_url"),
            ("--api-key", "api_key"),
            ("--model", "model"),
            ("--provider", "provider"),
        ] {
            message = message.replace(flag, json);
        }
        ConfigError::new(field, message)
    })
}

fn prepared(st: &AppState, b: &UpdateBody, cfg: &config::Config, applied: bool) -> Value {
    let p = &cfg.providers[0];
    let mut env_vars = Map::new();
    if let (Some(var), Some(key)) = (
        p.preset.key_env,
        b.api_key.as_ref().filter(|k| !k.is_empty()),
    ) {
        env_vars.insert(var.to_string(), Value::String(key.clone()));
    }
    let mut cli_args = Map::new();
    cli_args.insert("provider".into(), json!(p.preset.kind));
    cli_args.insert(
        "model".into(),
        json!(p.default_model.clone().unwrap_or_default()),
    );
    if b.base_url.as_deref().is_some_and(|u| !u.trim().is_empty()) {
        cli_args.insert("base_url".into(), json!(p.base_url));
    }
    if let Some(app) = &st.app {
        cli_args.insert("app".into(), json!(app));
    }
    json!({
        "status": "success",
        "message": if applied {
            format!("Switched to provider: {} (model {})", p.preset.kind, p.default_model.as_deref().unwrap_or(""))
        } else {
            format!("Config prepared for provider: {}", p.preset.kind)
        },
        "restart_required": !applied,
        "current_instance_id": st.instance_id,
        "env_vars": env_vars,
        "cli_args": cli_args,
    })
}

fn apply(st: &AppState, cfg: &config::Config) -> Result<(), String> {
    // Replaces the file/command-line providers; client auth stays as it was
    // (switching providers must not open the door) and so do database providers.
    st.switch_providers(cfg)?;
    let p = &cfg.providers[0];
    tracing::info!(
        provider = p.preset.kind,
        model = p.default_model.as_deref().unwrap_or(""),
        "switched provider in process"
    );
    Ok(())
}

async fn update(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let b: UpdateBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    change(&st, b, false)
}

async fn switch(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let b: UpdateBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    change(&st, b, true)
}

fn change(st: &AppState, b: UpdateBody, force_apply: bool) -> Response {
    let cfg = match describe(st, &b) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let applied = force_apply || b.apply;
    if applied {
        if let Err(e) = apply(st, &cfg) {
            return error(StatusCode::BAD_REQUEST, e);
        }
    }
    Json(prepared(st, &b, &cfg, applied)).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidateBody {
    provider: String,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    model: Option<String>,
}

async fn validate(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let b: ValidateBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if presets::find(&b.provider).is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown provider `{}`; known kinds: {}",
                b.provider,
                presets::kinds()
            ),
        );
    }
    let invalid = |message: String| {
        Json(json!({"status": "invalid", "message": message, "models": []})).into_response()
    };
    let ub = UpdateBody {
        provider: b.provider.clone(),
        api_key: b.api_key.clone(),
        // The model does not matter for a key check; any placeholder satisfies kinds that need one.
        model: b.model.clone().or_else(|| Some("validate".into())),
        base_url: b.base_url.clone(),
        apply: false,
    };
    let cfg = match describe(&st, &ub) {
        Ok(c) => c,
        Err(e) => return invalid(e.to_string()),
    };
    let provider = match llm_link_gateway::providers::build(cfg.providers[0].clone()) {
        Ok(p) => p,
        Err(e) => return invalid(e),
    };
    match tokio::time::timeout(VALIDATE_TIMEOUT, provider.list_models()).await {
        Err(_) => invalid(format!(
            "provider `{}` did not answer within {}s",
            provider.name(),
            VALIDATE_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => invalid(match e {
            ApiError::UpstreamAuth(_) => format!(
                "provider `{}` rejected this API key (its model listing answered 401/403)",
                provider.preset_kind()
            ),
            other => other.to_string(),
        }),
        Ok(Ok(models)) => Json(json!({
            "status": "valid",
            "message": "API key is valid",
            "models": models,
        }))
        .into_response(),
    }
}
