//! Administrative surfaces: the hot-update API for desktop hosts, and the
//! admin API over the store (providers, keys, model catalog, app mappings,
//! audit log, users), which takes the admin token or a user's session with
//! the route's permission; and `/api/auth/*` (login, logout, me).

pub mod apps;
pub mod auth;
pub mod caller;
pub mod hotupdate;
pub mod keys;
pub mod models;
pub mod providers;
pub mod resource;
pub mod rest;
pub mod routing;
pub mod usage;
pub mod users;
pub mod vkeys;

use crate::state::AppState;
use axum::Router;
use std::sync::Arc;

/// `/api/providers`, `/api/apps`, `/api/v1/llm-models`, `/api/audit`,
/// `/api/v1/llm/usage`, `/api/users`, `/api/keys`, behind the admin guard
/// (admin token or session; permission per route, see [`rest::needed`]).
pub fn store_routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .merge(providers::routes())
        .merge(models::routes())
        .merge(apps::routes())
        .merge(crate::admin::usage::routes())
        .merge(vkeys::routes())
        .merge(users::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            rest::require_admin,
        ))
}

use axum::http::{HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// CORS for the admin endpoints: none unless origins are configured.
pub fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                axum::http::header::CONTENT_TYPE,
                axum::http::header::AUTHORIZATION,
            ]),
    )
}
