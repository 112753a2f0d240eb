//! Liveness and identity: `GET /health` and `GET /api/health`.

use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// What a desktop host reads to confirm which instance, provider and model
/// are live.
pub async fn api_health(State(st): State<Arc<AppState>>) -> Json<Value> {
    let rt = st.runtime();
    let first = rt.router.providers().first().map(|p| p.config());
    Json(json!({
        "status": "ok",
        "instance_id": st.instance_id,
        "pid": st.pid,
        "provider": first.map(|c| c.preset.kind).unwrap_or(""),
        "model": first.and_then(|c| c.default_model.as_deref()).unwrap_or(""),
        "providers": rt.router.providers().len(),
        "version": env!("CARGO_PKG_VERSION"),
        "app": st.app,
        "uptime_seconds": st.started.elapsed().as_secs(),
    }))
}
