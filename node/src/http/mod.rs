//! The HTTP API: JSON over HTTP/1.1, served by axum on a small tokio runtime in a helper thread.
//! Handlers decode and check the request, hand it to the core that owns its partition, and
//! encode the reply; they never touch a ledger themselves. See `openapi.json` for the contract.

mod errors;
mod handlers;
pub mod json;
pub mod metrics;
mod request_body;
mod server;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::service::Service;

pub use errors::ApiError;
pub use server::{bind, serve, HttpLimits};

/// Largest request body accepted: a full batch of 8189 records in JSON fits with room.
pub const REQUEST_BODY_SIZE_MAX: usize = 16 * 1024 * 1024;

/// The OpenAPI document of this API, served at `/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// What every handler reaches.
pub struct Api {
    pub service: Service,
    pub limits: HttpLimits,
    /// How the node spends its memory bound, for `/metrics`.
    pub memory: metrics::NodeMemory,
}

/// The API's routes.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/health", get(handlers::health))
        .route("/ready", get(handlers::ready))
        .route("/openapi.json", get(handlers::openapi))
        .route("/metrics", get(metrics::metrics))
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
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(api)
}
