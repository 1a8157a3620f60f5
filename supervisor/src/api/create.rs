//! `POST /api/create`: a model from an uploaded GGUF blob, with parameters, a template and
//! a system message (what `ollama create` sends for a Modelfile with `FROM ./file.gguf`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::generate::parse_body;
use super::models::parse_name;
use super::{ApiError, AppState};
use crate::options::Options;
use crate::sched::Backend;
use crate::store::{CreateSpec, Digest};
use crate::template::ChatTemplate;

/// The request body, in Ollama's field names.
#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    model: String,
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    template: Option<String>,
    system: Option<String>,
    stream: Option<bool>,
    from: Option<String>,
    modelfile: Option<String>,
    quantize: Option<String>,
    #[serde(default)]
    adapters: Map<String, Value>,
    #[serde(default)]
    messages: Vec<Value>,
    license: Option<Value>,
}

fn refuse_unsupported(r: &CreateRequest) -> Result<(), ApiError> {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let unsupported = [
        (
            set(&r.from),
            "from: creating from another model is not supported yet; upload the GGUF file \
             and name it in \"files\"",
        ),
        (
            set(&r.modelfile),
            "modelfile: send the Modelfile's contents as files, parameters, template and \
             system (current Ollama clients do)",
        ),
        (
            set(&r.quantize),
            "quantize: quantizing models is not supported",
        ),
        (
            !r.adapters.is_empty(),
            "adapters: LoRA adapters are not supported",
        ),
        (
            !r.messages.is_empty(),
            "messages: stored conversations are not supported yet",
        ),
        (
            r.license.as_ref().is_some_and(|l| !l.is_null()),
            "license: licenses are not stored yet",
        ),
        (
            r.files.is_empty(),
            "files: name the uploaded GGUF file, as {\"model.gguf\": \"sha256:<digest>\"}",
        ),
    ];
    match unsupported.iter().find(|(is_set, _)| *is_set) {
        Some((_, what)) => Err(ApiError::bad_request(*what)),
        None => Ok(()),
    }
}

/// The handler: checks everything before writing anything, then answers with Ollama's
/// status lines (streamed by default).
pub async fn create<B: Backend>(
    State(state): State<AppState<B>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r: CreateRequest = parse_body(&body)?;
    refuse_unsupported(&r)?;
    let name = parse_name(&r.model)?;
    Options::from_map(&r.parameters)?;
    if let Some(template) = r.template.as_deref().filter(|t| !t.is_empty()) {
        ChatTemplate::with_tokens(template, Default::default())?;
    }
    let files = r
        .files
        .iter()
        .map(|(file, digest)| Ok((file.clone(), Digest::parse(digest)?)))
        .collect::<Result<BTreeMap<_, _>, ApiError>>()?;
    let mut statuses: Vec<String> = files
        .values()
        .map(|digest| format!("using existing layer {digest}"))
        .collect();
    let spec = CreateSpec {
        files,
        parameters: r.parameters,
        template: r.template,
        system: r.system,
    };
    let store = Arc::clone(&state.store);
    let created_name = name.clone();
    let entry = tokio::task::spawn_blocking(move || store.create(&created_name, spec))
        .await
        .map_err(|e| ApiError::internal(format!("create failed: {e}")))??;
    tracing::info!(model = %name, digest = %entry.digest, "model created");
    statuses.push("writing manifest".into());
    statuses.push("success".into());
    if !r.stream.unwrap_or(true) {
        return Ok(axum::Json(json!({ "status": "success" })).into_response());
    }
    let body: String = statuses
        .iter()
        .map(|status| format!("{}\n", json!({ "status": status })))
        .collect();
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
