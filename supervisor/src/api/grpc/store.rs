//! `List`, `Show`, `Copy`, `Delete` and `Create`: the store's routes, called with the
//! HTTP body a gRPC request stands for, their answers re-encoded as messages.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_util::io::StreamReader;
use tonic::{Response, Status, Streaming};

use super::status::invalid;
use crate::api::models::parse_name;
use crate::api::{ApiError, AppState, create as create_route, manage, show as show_route};
use crate::modelfile::Modelfile;
use crate::sched::Backend;
use crate::store::{Digest, ModelDetails, ModelEntry};
use ollama_proto::ollama as pb;

/// A model's details as the API returns them.
fn details(d: &ModelDetails) -> pb::ModelDetails {
    pb::ModelDetails {
        format: d.format.clone(),
        family: d.family.clone(),
        families: d.families.clone(),
        parameter_size: d.parameter_size.clone(),
        quantization_level: d.quantization_level.clone(),
    }
}

/// Ollama's details object (from `/api/show`) as the API returns them.
fn details_json(d: &Value) -> pb::ModelDetails {
    serde_json::from_value::<ModelDetails>(d.clone())
        .map(|d| details(&d))
        .unwrap_or_default()
}

fn summary(entry: &ModelEntry) -> pb::ModelSummary {
    pb::ModelSummary {
        name: entry.name.to_string(),
        size: entry.size,
        digest: entry.digest.clone(),
        modified_at: entry
            .modified_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        details: Some(details(&entry.details)),
    }
}

/// `List`.
pub async fn list<B: Backend>(state: &AppState<B>) -> Result<Response<pb::ListResponse>, Status> {
    let store = Arc::clone(&state.store);
    let models = tokio::task::spawn_blocking(move || store.list())
        .await
        .map_err(|e| Status::internal(format!("listing models failed: {e}")))?
        .map_err(ApiError::from)?;
    Ok(Response::new(pb::ListResponse {
        models: models.iter().map(summary).collect(),
    }))
}

/// `Show`: `/api/show`'s answer, field by field.
pub async fn show<B: Backend>(
    state: &AppState<B>,
    r: pb::ShowRequest,
) -> Result<Response<pb::ShowResponse>, Status> {
    let body = json!({ "model": r.model }).to_string();
    let answer = show_route::show(State(state.clone()), Bytes::from(body))
        .await?
        .0;
    let text = |field: &str| {
        answer
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Ok(Response::new(pb::ShowResponse {
        modelfile: text("modelfile"),
        parameters: text("parameters"),
        template: text("template"),
        system: text("system"),
        license: text("license"),
        details: answer.get("details").map(details_json),
        model_info: answer
            .get("model_info")
            .map(Value::to_string)
            .unwrap_or_default(),
        capabilities: answer
            .get("capabilities")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        modified_at: text("modified_at"),
    }))
}

/// `Copy`.
pub async fn copy<B: Backend>(
    state: &AppState<B>,
    r: pb::CopyRequest,
) -> Result<Response<pb::CopyResponse>, Status> {
    let body = json!({ "source": r.source, "destination": r.destination }).to_string();
    manage::copy(State(state.clone()), Bytes::from(body)).await?;
    Ok(Response::new(pb::CopyResponse {}))
}

/// `Delete`.
pub async fn delete<B: Backend>(
    state: &AppState<B>,
    r: pb::DeleteRequest,
) -> Result<Response<pb::DeleteResponse>, Status> {
    let body = json!({ "model": r.model }).to_string();
    manage::delete(State(state.clone()), Bytes::from(body)).await?;
    Ok(Response::new(pb::DeleteResponse {}))
}

/// Stores the chunks that follow the header as a blob, checked against `upload`.
async fn receive<B: Backend>(
    state: &AppState<B>,
    upload: &pb::Upload,
    stream: Streaming<pb::CreateRequest>,
) -> Result<Digest, Status> {
    let expected = match upload.sha256.trim() {
        "" => None,
        hex => Some(
            Digest::parse(&format!("sha256:{}", hex.trim_start_matches("sha256:")))
                .map_err(ApiError::from)?,
        ),
    };
    let chunks = stream.map(|message| match message {
        Ok(pb::CreateRequest {
            part: Some(pb::create_request::Part::Chunk(bytes)),
        }) => Ok(Bytes::from(bytes)),
        Ok(_) => Err(std::io::Error::other(
            "only chunks may follow the header of a Create call",
        )),
        Err(status) => Err(std::io::Error::other(status.message().to_owned())),
    });
    let (digest, bytes) = state
        .store
        .write_upload(
            expected.as_ref(),
            Some(upload.size),
            StreamReader::new(chunks),
        )
        .await
        .map_err(ApiError::from)?;
    tracing::info!(%digest, bytes, file = %upload.file_name, "upload stored");
    Ok(digest)
}

/// `Create`: a header, then the uploaded file's chunks if any; the model is created by
/// `/api/create`'s handler from the Modelfile, with the upload as its weights.
pub async fn create<B: Backend>(
    state: &AppState<B>,
    mut stream: Streaming<pb::CreateRequest>,
) -> Result<Response<pb::CreateResponse>, Status> {
    let header = match stream.message().await? {
        Some(pb::CreateRequest {
            part: Some(pb::create_request::Part::Header(header)),
        }) => header,
        _ => {
            return Err(invalid(
                "the first message of a Create call must be its header",
            ));
        }
    };
    let name = parse_name(&header.name)?;
    let mut files = BTreeMap::new();
    let mut upload_digest = String::new();
    if let Some(upload) = &header.upload {
        if !header.modelfile.trim().is_empty() {
            let modelfile = Modelfile::parse(&header.modelfile)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            if let Some(from) = modelfile.from().filter(|f| *f != upload.file_name) {
                return Err(invalid(format!(
                    "the Modelfile says FROM {from}, but the upload is {:?}: name the \
                     uploaded file in FROM, or upload the file FROM names",
                    upload.file_name
                )));
            }
        }
        let digest = receive(state, upload, stream).await?;
        upload_digest = digest.hex().to_owned();
        files.insert("model.gguf".to_owned(), digest.to_string());
    }
    let mut body = json!({ "model": header.name, "stream": false });
    if !header.modelfile.trim().is_empty() {
        body["modelfile"] = json!(header.modelfile);
    }
    if !header.quantize.is_empty() {
        body["quantize"] = json!(header.quantize);
    }
    if !files.is_empty() {
        body["files"] = json!(files);
    }
    create_route::create(State(state.clone()), Bytes::from(body.to_string())).await?;
    let store = Arc::clone(&state.store);
    let created = name.clone();
    let resolved = tokio::task::spawn_blocking(move || store.resolve(&created))
        .await
        .map_err(|e| Status::internal(format!("reading the new model failed: {e}")))?
        .map_err(ApiError::from)?;
    Ok(Response::new(pb::CreateResponse {
        name: name.to_string(),
        digest: resolved.entry.digest,
        upload_digest,
    }))
}
