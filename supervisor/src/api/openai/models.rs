//! `GET /v1/models` and `GET /v1/models/{id}`: the store's models as OpenAI lists them
//! (`{"object": "model", "id", "created", "owned_by"}`); an unknown model is a 404 with
//! code `model_not_found`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::error::OpenAiError;
use crate::api::models::{parse_name, resolve};
use crate::api::{ApiError, AppState};
use crate::sched::Backend;
use crate::store::ModelEntry;

/// A model as OpenAI describes one: its name, when it was created, its namespace.
fn model(entry: &ModelEntry) -> Value {
    json!({
        "id": entry.name.to_string(),
        "object": "model",
        "created": entry.modified_at.timestamp(),
        "owned_by": entry.name.namespace(),
    })
}

/// `GET /v1/models`.
pub async fn list<B: Backend>(
    State(state): State<AppState<B>>,
) -> Result<Json<Value>, OpenAiError> {
    let store = Arc::clone(&state.store);
    let entries = tokio::task::spawn_blocking(move || store.list())
        .await
        .map_err(|e| ApiError::internal(format!("listing models failed: {e}")))?
        .map_err(ApiError::from)?;
    let data: Vec<Value> = entries.iter().map(model).collect();
    Ok(Json(json!({"object": "list", "data": data})))
}

/// `GET /v1/models/{id}`.
pub async fn get<B: Backend>(
    State(state): State<AppState<B>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    let name = parse_name(&id)?;
    let found = resolve(&state, &name).await?;
    Ok(Json(model(&found.resolved.entry)))
}
