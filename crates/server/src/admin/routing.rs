//! `GET /api/routing`: the live state routing decides with — circuit
//! breakers, key pools (masked), requests in flight, latency — per provider.

use crate::state::AppState;
use axum::extract::State;
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/routing", get(status))
        .route_layer(middleware::from_fn_with_state(state, local_or_viewer))
}

/// Loopback callers, or a credential with the ViewProviders permission.
async fn local_or_viewer(
    State(st): State<Arc<AppState>>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    super::hotupdate::local_or(
        &st,
        req,
        next,
        llm_link_gateway::identity::Permission::ViewProviders,
    )
    .await
}

async fn status(State(st): State<Arc<AppState>>) -> Json<Value> {
    let rt = st.runtime();
    let providers: Vec<Value> = rt
        .router
        .upstreams()
        .iter()
        .map(|u| {
            let (breaker, opened) = u.breaker.state();
            let keys: Vec<Value> = u
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let (status, reason) = k.status();
                    json!({
                        "index": i,
                        "key": k.masked,
                        "status": status,
                        "reason": reason,
                        "used": k.used.load(Ordering::Relaxed),
                        "breaker": k.breaker.state().0,
                    })
                })
                .collect();
            json!({
                "name": &*u.name,
                "kind": u.cfg.preset.kind,
                "breaker": breaker,
                "breaker_opened": opened,
                "in_flight": u.inflight.load(Ordering::Relaxed),
                "latency_ewma_ms": u.ewma_us.load(Ordering::Relaxed) as f64 / 1000.0,
                "priority": u.cfg.meta.priority,
                "weight": u.cfg.meta.weight,
                "key_strategy": u.cfg.meta.key_usage,
                "keys": keys,
            })
        })
        .collect();
    Json(json!({"providers": providers}))
}
