//! The HTTP API: Ollama's routes and JSON shapes, so Ollama's clients work unchanged.
//!
//! Each handler parses and checks its request, then hands the work to the store, the
//! template renderer or the scheduler; none of them runs model code.

mod blobs;
mod cors;
mod create;
mod error;
mod generate;
mod keep_alive;
mod models;
mod ps;
mod runner_options;
mod stream;

pub use error::ApiError;
pub use models::Models;
pub use ps::{PsModel, PsResponse, ps_table};

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, head, post};

use crate::config::Config;
use crate::sched::{RunnerBackend, Scheduler};
use crate::store::Store;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The scheduler of runners.
    pub sched: Scheduler<RunnerBackend>,
    /// The model store.
    pub store: Arc<Store>,
    /// Resolved models with their templates, cached by manifest digest.
    pub models: Arc<Models>,
}

/// The router for every route of the API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(root).head(root))
        .route("/api/version", get(version))
        .route(
            "/api/blobs/{digest}",
            head(blobs::head_blob).post(blobs::post_blob),
        )
        .route("/api/create", post(create::create))
        .route("/api/tags", get(models::tags))
        .route("/api/generate", post(generate::generate))
        .route("/api/ps", get(ps::ps))
        // Blobs are model files: no body limit on uploads.
        .layer(DefaultBodyLimit::disable())
        .layer(cors::layer(state.config.origins.clone()))
        .with_state(state)
}

async fn root() -> &'static str {
    "Ollama is running"
}

async fn version() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }))
}
