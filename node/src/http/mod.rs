//! The HTTP API: JSON over HTTP/1.1, served by axum on a small tokio runtime in a helper thread.
//! Handlers decode and check the request, hand it to the core that owns its partition, and
//! encode the reply; they never touch a ledger themselves. See `openapi.json` for the contract.

mod errors;
mod handlers;
pub mod json;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::service::Service;

pub use errors::ApiError;

/// Largest request body accepted: a full batch of 8189 records in JSON fits with room.
pub const REQUEST_BODY_SIZE_MAX: usize = 16 * 1024 * 1024;

/// The OpenAPI document of this API, served at `/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// What every handler reaches.
pub struct Api {
    pub service: Service,
}

/// The API's routes.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/health", get(handlers::health))
        .route("/ready", get(handlers::ready))
        .route("/openapi.json", get(handlers::openapi))
        .route("/v1/accounts", post(handlers::create_accounts))
        .route("/v1/transfers", post(handlers::create_transfers))
        .route("/v1/accounts/query", post(handlers::query_accounts))
        .route("/v1/transfers/query", post(handlers::query_transfers))
        .route("/v1/accounts/{id}", get(handlers::get_account))
        .route("/v1/transfers/{id}", get(handlers::get_transfer))
        .route(
            "/v1/accounts/{id}/transfers",
            get(handlers::get_account_transfers),
        )
        .route(
            "/v1/accounts/{id}/balances",
            get(handlers::get_account_balances),
        )
        .fallback(handlers::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(REQUEST_BODY_SIZE_MAX))
        .with_state(api)
}

/// Serves the API on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Arc<Api>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(api))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds the API's address, reporting the address in the error.
pub async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener, crate::NodeError> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| crate::NodeError::Start(format!("HTTP listen on {address}: {error}")))
}
