//! llm-link's HTTP front: the three client surfaces, the hot-update and
//! admin APIs, the shared state, and the serving threads.
//!
//! [`app`] builds the whole HTTP surface from an [`AppState`]; tests drive it
//! directly. The binary (`llm-link`) parses the command line and starts it.

pub mod admin;
pub mod api;
pub mod apply;
pub mod error;
pub mod front;
pub mod sessions;
pub mod state;
pub mod stored;
pub mod watch;
pub mod workers;

pub use state::AppState;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// The complete router.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(api::openai::routes(state.clone()))
        .merge(api::responses::routes(state.clone()))
        .merge(api::anthropic::routes(state.clone()))
        .merge(api::ollama::routes(state.clone()))
        .merge(api::team::routes(state.clone()))
        .merge(admin::hotupdate::routes(state.clone()))
        .merge(admin::routing::routes(state.clone()))
        .merge(admin::store_routes(state.clone()))
        .merge(admin::usage::team_routes(state.clone()))
        .merge(admin::auth::routes())
        .route("/v1/{*rest}", axum::routing::any(api::openai::not_found))
        .route(
            "/anthropic/{*rest}",
            axum::routing::any(api::anthropic::not_found),
        )
        .route(
            "/api/{*rest}",
            axum::routing::any(api::ollama::unknown_path),
        )
        .route("/health", get(api::health::health))
        .route("/api/health", get(api::health::api_health))
        .layer(DefaultBodyLimit::max(state.body_limit))
        .with_state(state)
}

/// Serves the router on a bound listener until the state's shutdown token is
/// cancelled, then lets open connections finish their requests; callers'
/// addresses are available to handlers (loopback checks). Connections go
/// through the same front as the binary's ([`front::serve`]), on whatever
/// runtime calls this.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
) -> std::io::Result<()> {
    let token = state.shutdown.clone();
    let limits = state.client;
    let router = app(state);
    let overflow = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let conns = front::Connections::new(Arc::default());
    while let Some((stream, peer)) = front::accept(&listener, &token).await {
        let _ = stream.set_nodelay(true);
        if conns.open() >= limits.max_connections {
            front::spawn_overflow(&overflow, stream, peer, router.clone());
            continue;
        }
        let conn = front::serve(
            stream,
            peer,
            router.clone(),
            token.clone(),
            graceful.watcher(),
            limits,
        );
        conns.spawn(conn, false);
    }
    drop(listener);
    graceful.shutdown().await;
    conns.drained().await;
    Ok(())
}
