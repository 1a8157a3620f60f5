//! The HTTP API: Ollama's routes and JSON shapes, so Ollama's clients work unchanged.
//!
//! Each handler parses and checks its request, then hands the work to the store, the
//! template renderer or the scheduler; none of them runs model code.

mod blobs;
mod chat;
mod cors;
mod create;
mod embed;
mod error;
mod fim;
mod fit;
mod format;
mod generate;
mod grpc;
mod import;
mod keep_alive;
mod manage;
mod models;
mod openai;
mod ps;
mod reply;
mod runner_options;
mod show;
mod stream;

pub use error::ApiError;
pub use models::Models;
pub use ps::{PsModel, PsResponse};

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, head, post};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::sched::{Backend, RunnerBackend, Scheduler};
use crate::store::Store;

/// What every handler shares. Generic over the scheduler's backend so that handlers are
/// tested with fake runners (`Router::oneshot`, no process); the server uses real ones.
pub struct AppState<B: Backend = RunnerBackend> {
    /// The effective configuration.
    pub config: Arc<Config>,
    /// The scheduler of runners.
    pub sched: Scheduler<B>,
    /// The model store.
    pub store: Arc<Store>,
    /// Resolved models with their templates, cached by manifest digest.
    pub models: Arc<Models>,
}

impl<B: Backend> Clone for AppState<B> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
            sched: self.sched.clone(),
            store: Arc::clone(&self.store),
            models: Arc::clone(&self.models),
        }
    }
}

/// The largest JSON body a route takes. A chat at a 128k context is under 1 MiB of text;
/// the limit keeps a runaway client from making the server buffer gigabytes. Blob
/// uploads (model files) have none.
pub const MAX_JSON_BODY: usize = 32 << 20;

/// The router for every route of the API.
pub fn router<B: Backend>(state: AppState<B>) -> Router {
    let blobs = Router::new()
        .route(
            "/api/blobs/{digest}",
            head(blobs::head_blob::<B>).post(blobs::post_blob::<B>),
        )
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .route("/", get(root).head(root))
        .route("/api/version", get(version))
        .route("/api/create", post(create::create::<B>))
        .route("/api/tags", get(models::tags::<B>))
        .route("/api/show", post(show::show::<B>))
        .route("/api/copy", post(manage::copy::<B>))
        .route("/api/delete", delete(manage::delete::<B>))
        .route("/api/generate", post(generate::generate::<B>))
        .route("/api/chat", post(chat::chat::<B>))
        .route("/api/embed", post(embed::embed::<B>))
        .route("/api/embeddings", post(embed::embeddings::<B>))
        .route("/api/ps", get(ps::ps::<B>))
        .route("/v1/chat/completions", post(openai::chat_completions::<B>))
        .route("/v1/completions", post(openai::completions::<B>))
        .route("/v1/embeddings", post(openai::embeddings::<B>))
        .route("/v1/models", get(openai::list_models::<B>))
        .route("/v1/models/{*id}", get(openai::get_model::<B>))
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .merge(blobs)
        .layer(axum::middleware::map_response(error::json_rejection))
        .layer(cors::layer(state.config.origins.clone()))
        .with_state(state)
}

/// What `ollamad` serves on its one port: the HTTP routes, and the public gRPC API for
/// requests whose content-type is `application/grpc`. Its long gRPC streams (`Watch`)
/// end when `stopping` is cancelled.
pub fn app<B: Backend>(state: AppState<B>, stopping: CancellationToken) -> Router {
    let grpc = grpc::routes(state.clone(), stopping);
    router(state).layer(axum::middleware::from_fn_with_state(grpc, grpc::split))
}

#[cfg(test)]
mod tests;

async fn root() -> &'static str {
    "Ollama is running"
}

/// The Ollama version whose API this server follows, reported as `version` by
/// `GET /api/version`. Clients gate features on it (VS Code's Ollama provider refuses
/// anything below 0.6.4; others check for tools or thinking by version), so it names
/// the Ollama release whose routes and JSON shapes we implement, not our own version.
pub const OLLAMA_API_VERSION: &str = "0.12.0";

/// `GET /api/version`: the Ollama API version, and this server's own version in
/// `ollamad_version`.
async fn version() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "version": OLLAMA_API_VERSION,
        "ollamad_version": env!("CARGO_PKG_VERSION"),
    }))
}
