//! The seeds' team API (seed 004), answered with a user's session token or
//! a virtual key like every model endpoint:
//!
//! * `POST /api/v1/llm/chat`: an OpenAI chat body, JSON or SSE, served
//!   exactly as `/v1/chat/completions` (scope, limits, budget, usage);
//! * `GET /api/v1/llm/models`: the models this caller may use, with the
//!   catalog's fields (`name`, `model_id`, `provider`, `type`,
//!   `description`, `supports_vision`, `max_tokens`, `context_window`,
//!   prices); without a catalog, the models the router serves;
//! * `GET /api/v1/llm/usage`: the caller's own usage (`admin::usage`).

use crate::error::OpenAiError;
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/llm/chat", post(super::openai::chat_completions))
        .route("/api/v1/llm/models", get(models))
        .route_layer(super::ModelRoutes::new(state, super::openai::SURFACE))
}

async fn models(
    State(st): State<Arc<AppState>>,
    super::Headers(_, who): super::Headers,
) -> Result<Response, OpenAiError> {
    let mut data: Vec<Value> = Vec::new();
    let rows = match &st.store {
        Some(store) => {
            let read = async {
                let mut tx = store.db.begin_read().await?;
                let rows = tx.models().await?;
                tx.rollback().await?;
                Ok::<_, llm_link_store::StoreError>(rows)
            };
            read.await.map_err(|e| {
                tracing::error!("team API: cannot read the model catalog: {e}");
                crate::error::ApiError::Internal("cannot read the model catalog".into())
            })?
        }
        None => Vec::new(),
    };
    for m in rows.iter().filter(|m| m.status == "enabled") {
        if !who.may_use(&m.model_id) {
            continue;
        }
        data.push(crate::admin::models::public_json(m));
    }
    if rows.is_empty() {
        // No catalog: what the router serves, with what it knows.
        let rt = st.runtime();
        for m in rt.router.models() {
            if !who.may_use(&m.id) {
                continue;
            }
            data.push(json!({
                "id": null,
                "name": m.id,
                "model_id": m.id,
                "provider": m.owned_by,
                "type": "chat",
                "description": "",
                "supports_vision": null,
                "supports_tools": null,
                "max_tokens": null,
                "context_window": llm_link_gateway::presets::context_window(&m.id),
                "input_price": null,
                "output_price": null,
                "rpm_limit": null,
                "tpm_limit": null,
            }));
        }
    }
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}
