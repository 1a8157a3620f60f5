//! `HEAD` and `POST /api/blobs/{digest}`: uploads of model files, verified against their
//! digest before they are kept.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use futures_util::TryStreamExt;
use tokio_util::io::StreamReader;

use super::{ApiError, AppState};
use crate::sched::Backend;
use crate::store::Digest;

/// 200 when the blob is stored, 404 when not.
pub async fn head_blob<B: Backend>(
    State(state): State<AppState<B>>,
    Path(digest): Path<String>,
) -> Result<StatusCode, ApiError> {
    let digest = Digest::parse(&digest)?;
    Ok(if state.store.has_blob(&digest) {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    })
}

/// Streams the body into the store; 201 once its SHA-256 matched, 400 with both digests
/// when it did not (nothing is kept).
pub async fn post_blob<B: Backend>(
    State(state): State<AppState<B>>,
    Path(digest): Path<String>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let digest = Digest::parse(&digest)?;
    let store = Arc::clone(&state.store);
    let reader = StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    let bytes = store.write_blob(&digest, reader).await?;
    tracing::info!(%digest, bytes, "blob stored");
    Ok(StatusCode::CREATED)
}
