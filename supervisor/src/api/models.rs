//! Models as the API uses them: resolved from the store with their parameters and chat
//! template, cached by manifest digest so a request does not re-read the GGUF header.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use gguf::GgufFile;
use serde_json::json;

use super::fim::Fim;
use super::{ApiError, AppState};
use crate::options::Options;
use crate::sched::Backend;
use crate::store::{ModelName, ResolvedModel, Store};
use crate::template::ChatTemplate;

/// A model ready to be scheduled.
pub struct Model {
    /// What the store holds.
    pub resolved: ResolvedModel,
    /// Its stored parameters, checked.
    pub options: Options,
    /// Its chat template: the stored TEMPLATE (Jinja or Ollama's Go syntax, the GGUF's
    /// behind a Go one), else the GGUF's; `None` when it has neither.
    pub template: Option<ChatTemplate>,
    /// Its fill-in-the-middle tokens, when it was trained for FIM (`suffix`).
    pub fim: Option<Fim>,
}

/// The cache of resolved models.
#[derive(Default)]
pub struct Models {
    by_digest: Mutex<HashMap<String, Arc<Model>>>,
}

impl Models {
    /// Model `name` from `store`, reading its GGUF header only the first time a manifest
    /// is seen. Blocking: call it from `spawn_blocking`.
    pub fn get(&self, store: &Store, name: &ModelName) -> Result<Arc<Model>, ApiError> {
        let resolved = store.resolve(name)?;
        let digest = resolved.entry.digest.clone();
        if let Some(model) = self.lock().get(&digest) {
            return Ok(Arc::clone(model));
        }
        let options = Options::from_map(&resolved.parameters).map_err(|e| {
            ApiError::internal(format!("the stored parameters of {name} are invalid: {e}"))
        })?;
        let file = GgufFile::open(&resolved.model_path).map_err(|e| {
            ApiError::internal(format!(
                "cannot read the model file of {name} ({}): {e}",
                resolved.model_path.display()
            ))
        })?;
        let from_file = ChatTemplate::from_gguf(&file).map_err(|e| {
            ApiError::internal(format!("the chat template of {name} is unusable: {e}"))
        })?;
        let template = match &resolved.template {
            Some(source) => {
                Some(ChatTemplate::with_fallback(&name.to_string(), source, from_file)?.0)
            }
            None => from_file,
        };
        let fim = Fim::from_metadata(file.metadata()).map_err(|e| {
            ApiError::internal(format!("the tokenizer metadata of {name} is unusable: {e}"))
        })?;
        let model = Arc::new(Model {
            resolved,
            options,
            template,
            fim,
        });
        self.lock().insert(digest, Arc::clone(&model));
        Ok(model)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Model>>> {
        self.by_digest.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Parses a model name from a request.
pub fn parse_name(name: &str) -> Result<ModelName, ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    Ok(ModelName::parse(name)?)
}

/// Resolves `name` off the async threads.
pub async fn resolve<B: Backend>(
    state: &AppState<B>,
    name: &ModelName,
) -> Result<Arc<Model>, ApiError> {
    let (store, models, name) = (
        Arc::clone(&state.store),
        Arc::clone(&state.models),
        name.clone(),
    );
    tokio::task::spawn_blocking(move || models.get(&store, &name))
        .await
        .map_err(|e| ApiError::internal(format!("model lookup failed: {e}")))?
}

/// `GET /api/tags`: the models in the store.
pub async fn tags<B: Backend>(
    State(state): State<AppState<B>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let store = Arc::clone(&state.store);
    let models = tokio::task::spawn_blocking(move || store.list())
        .await
        .map_err(|e| ApiError::internal(format!("listing models failed: {e}")))??;
    Ok(Json(json!({ "models": models })))
}
