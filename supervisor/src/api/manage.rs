//! `POST /api/copy` and `DELETE /api/delete`: a model under a second name, and a model
//! removed with the blobs no other model uses. Both answer 200 with an empty body, as
//! Ollama does, and 404 with a JSON error for a model that is not in the store.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::generate::parse_body;
use super::{ApiError, AppState};
use crate::sched::Backend;
use crate::store::ModelName;

/// The copy request, in Ollama's field names.
#[derive(Debug, Deserialize)]
pub struct CopyRequest {
    #[serde(default)]
    source: String,
    #[serde(default)]
    destination: String,
}

/// The delete request: `model`, or `name` as clients before Ollama 0.1.32 send it.
#[derive(Debug, Deserialize)]
pub struct DeleteRequest {
    #[serde(default)]
    model: String,
    #[serde(default)]
    name: String,
}

/// A name from the field `field` of a request; empty is a 400 naming the field.
fn required_name(field: &str, value: &str) -> Result<ModelName, ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::bad_request(format!("{field} is required")));
    }
    Ok(ModelName::parse(value)?)
}

/// `POST /api/copy`.
pub async fn copy<B: Backend>(
    State(state): State<AppState<B>>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let r: CopyRequest = parse_body(&body)?;
    let source = required_name("source", &r.source)?;
    let destination = required_name("destination", &r.destination)?;
    let store = Arc::clone(&state.store);
    let entry = tokio::task::spawn_blocking(move || store.copy(&source, &destination))
        .await
        .map_err(|e| ApiError::internal(format!("copying the model failed: {e}")))??;
    tracing::info!(source = %r.source, destination = %entry.name, "model copied");
    Ok(StatusCode::OK)
}

/// `DELETE /api/delete`. A model that is loaded is unloaded once its requests finish.
pub async fn delete<B: Backend>(
    State(state): State<AppState<B>>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let r: DeleteRequest = parse_body(&body)?;
    let given = if r.model.is_empty() {
        &r.name
    } else {
        &r.model
    };
    let name = required_name("model", given)?;
    let store = Arc::clone(&state.store);
    let target = name.clone();
    let deleted = tokio::task::spawn_blocking(move || store.delete(&target))
        .await
        .map_err(|e| ApiError::internal(format!("deleting the model failed: {e}")))??;
    let unloaded = state.sched.expire(&name.to_string()).await;
    tracing::info!(
        model = %name,
        blobs = deleted.blobs,
        bytes = deleted.bytes,
        unloaded,
        "model deleted"
    );
    Ok(StatusCode::OK)
}
