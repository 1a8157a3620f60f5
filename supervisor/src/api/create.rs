//! `POST /api/create`: a model from an uploaded GGUF blob (`files`, or `from` a digest;
//! with `quantize`, a GGUF of F32, F16 or BF16 weights is quantized first, one that is
//! already quantized refused), from a Hugging Face directory on this machine (`from` its
//! path, converted by [`super::import`], with `quantize` one of the converter's types,
//! f32 to q6_k) or from
//! another model (`from` a name), with parameters, a template, a system message,
//! licenses and messages; or from the older `modelfile` body, parsed by
//! [`crate::modelfile`]. Everything is checked before anything is written; the answer is
//! Ollama's status lines (streamed NDJSON by default, one object with `stream: false`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::generate::parse_body;
use super::import;
use super::models::parse_name;
use super::{ApiError, AppState};
use crate::modelfile::Modelfile;
use crate::options::Options;
use crate::sched::Backend;
use crate::store::{CreateSpec, Digest, ModelName, Store, StoredMessage};
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

/// Roles a stored message may have.
const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// The uploaded GGUF that a `quantize` applies to, for a source other than a model
/// directory: `from` a digest or an uploaded file, or the one `.gguf` of `files`.
/// Another model's weights are refused. Blocking (a path is hashed).
fn quantize_source(
    store: &Store,
    from: Option<&str>,
    files: &BTreeMap<String, String>,
) -> Result<Digest, ApiError> {
    let digest = match from {
        Some(from) => match source(store, from)? {
            Source::Blob(digest) => digest,
            Source::Model(name) => Err(ApiError::bad_request(format!(
                "quantize: quantizing the weights of another model ({name}) is not supported; \
                 create from its F16 or F32 GGUF (from \"sha256:<digest>\") instead"
            )))?,
        },
        None => {
            let ggufs: Vec<&String> = (files.iter())
                .filter(|(name, _)| name.ends_with(".gguf"))
                .map(|(_, digest)| digest)
                .collect();
            match ggufs.as_slice() {
                [one] => Digest::parse(one)?,
                _ => Err(ApiError::bad_request(
                    "quantize: name exactly one .gguf file in files (or the GGUF in from)",
                ))?,
            }
        }
    };
    if !store.has_blob(&digest) {
        return Err(ApiError::bad_request(format!(
            "quantize: blob {digest} has not been uploaded; upload it first with \
             POST /api/blobs/{digest}"
        )));
    }
    Ok(digest)
}

/// Replaces the GGUF of `plan` (its `from`, or its one `.gguf` file) with `digest`.
fn replace_source(plan: &mut Plan, digest: &Digest) {
    if plan.from.is_some() {
        plan.from = Some(digest.to_string());
    } else if let Some(slot) = (plan.files.iter_mut())
        .find(|(name, _)| name.ends_with(".gguf"))
        .map(|(_, d)| d)
    {
        *slot = digest.to_string();
    }
}

fn refuse_unsupported(r: &CreateRequest) -> Result<(), ApiError> {
    if !r.adapters.is_empty() {
        return Err(ApiError::bad_request(
            "adapters: LoRA adapters are not supported; merge the adapter into the weights \
             (llama.cpp's export-lora) and create the model from the merged GGUF",
        ));
    }
    Ok(())
}

/// What the request asks for, with the Modelfile's commands filled in where the
/// request's own fields are absent.
struct Plan {
    from: Option<String>,
    files: BTreeMap<String, String>,
    parameters: Map<String, Value>,
    template: Option<String>,
    system: Option<String>,
    license: Vec<String>,
    messages: Vec<StoredMessage>,
}

fn plan(r: CreateRequest) -> Result<Plan, ApiError> {
    Options::from_map(&r.parameters)?;
    let mut plan = Plan {
        from: r.from.filter(|f| !f.is_empty()),
        files: r.files,
        parameters: r.parameters,
        template: r.template,
        system: r.system,
        license: licenses(r.license)?,
        messages: messages(r.messages)?,
    };
    let Some(text) = r.modelfile.filter(|m| !m.trim().is_empty()) else {
        return Ok(plan);
    };
    let file = Modelfile::parse(&text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if plan.from.is_none() && plan.files.is_empty() {
        plan.from = file.from().map(str::to_owned);
    }
    if plan.parameters.is_empty() {
        plan.parameters = file.options.to_map();
    }
    plan.template = plan.template.or_else(|| file.template());
    plan.system = plan.system.or_else(|| file.system());
    if plan.license.is_empty() {
        plan.license = file.licenses();
    }
    if plan.messages.is_empty() {
        plan.messages = file
            .messages()
            .into_iter()
            .map(|(role, content)| StoredMessage { role, content })
            .collect();
    }
    Ok(plan)
}

/// `license` as Ollama takes it: a string or a list of strings.
fn licenses(license: Option<Value>) -> Result<Vec<String>, ApiError> {
    let bad = || ApiError::bad_request("license must be a string or a list of strings");
    match license {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(bad()),
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

fn messages(messages: Vec<Value>) -> Result<Vec<StoredMessage>, ApiError> {
    messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let m: StoredMessage = serde_json::from_value(m).map_err(|e| {
                ApiError::bad_request(format!(
                    "messages[{i}] must be {{\"role\": ..., \"content\": \"...\"}}: {e}"
                ))
            })?;
            if !ROLES.contains(&m.role.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "messages[{i}]: unknown role {:?}: use system, user, assistant or tool",
                    m.role
                )));
            }
            Ok(m)
        })
        .collect()
}

/// Where the weights come from, once `from` is understood.
enum Source {
    /// An uploaded blob (`sha256:...`, `@sha256:...`, or a file on this machine that
    /// has been uploaded).
    Blob(Digest),
    /// Another model's layers.
    Model(ModelName),
}

/// Reads `from`: a digest, a path to a GGUF file whose blob is uploaded, or a model
/// name. Blocking (a path is hashed).
fn source(store: &Store, from: &str) -> Result<Source, ApiError> {
    let digest_text = from.strip_prefix('@').unwrap_or(from);
    if digest_text.starts_with("sha256") {
        return Ok(Source::Blob(Digest::parse(digest_text)?));
    }
    let looks_like_path = from.starts_with(['.', '/', '~']) || from.ends_with(".gguf");
    if !looks_like_path {
        return Ok(Source::Model(parse_name(from)?));
    }
    let path = expand_home(from);
    let digest = hash_file(&path).map_err(|e| {
        ApiError::bad_request(format!(
            "from {from:?}: cannot read that file on the server ({e}); upload it with \
             POST /api/blobs/sha256:<digest> and create from \"sha256:<digest>\""
        ))
    })?;
    if !store.has_blob(&digest) {
        return Err(ApiError::bad_request(format!(
            "from {from:?}: the file has not been uploaded; upload it first with \
             POST /api/blobs/{digest}"
        )));
    }
    Ok(Source::Blob(digest))
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

fn hash_file(path: &Path) -> std::io::Result<Digest> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(Digest::from_hasher(hasher));
        }
        hasher.update(&buffer[..n]);
    }
}

/// The store's spec and Ollama's status lines for a plan. Blocking.
fn spec(store: &Store, plan: Plan) -> Result<(CreateSpec, Vec<String>), ApiError> {
    let mut statuses = Vec::new();
    let mut files = plan
        .files
        .iter()
        .map(|(file, digest)| Ok((file.clone(), Digest::parse(digest)?)))
        .collect::<Result<BTreeMap<_, _>, ApiError>>()?;
    let mut base = None;
    match plan.from.as_deref().map(|f| source(store, f)).transpose()? {
        Some(Source::Blob(digest)) => {
            files.insert("model.gguf".to_owned(), digest);
        }
        Some(Source::Model(name)) => {
            store.resolve(&name)?;
            statuses.push(format!("using model {name}"));
            base = Some(name);
        }
        None if files.is_empty() => {
            return Err(ApiError::bad_request(
                "neither from nor files: name a model or an uploaded GGUF blob in \"from\", \
                 or the uploaded file in \"files\" as {\"model.gguf\": \"sha256:<digest>\"}",
            ));
        }
        None => {}
    }
    statuses.extend(files.values().map(|d| format!("using existing layer {d}")));
    if let Some(template) = plan.template.as_deref().filter(|t| !t.is_empty()) {
        ChatTemplate::with_tokens(template, Default::default())?;
        statuses.push("creating template layer".into());
    }
    let layers = [
        (
            plan.system.as_deref().is_some_and(|s| !s.is_empty()),
            "system",
        ),
        (!plan.parameters.is_empty(), "parameters"),
        (!plan.license.is_empty(), "license"),
        (!plan.messages.is_empty(), "messages"),
    ];
    for (_, kind) in layers.iter().filter(|(made, _)| *made) {
        statuses.push(format!("creating {kind} layer"));
    }
    let spec = CreateSpec {
        files,
        base,
        parameters: plan.parameters,
        template: plan.template,
        system: plan.system,
        license: plan.license,
        messages: plan.messages,
    };
    Ok((spec, statuses))
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
    let stream = r.stream.unwrap_or(true);
    let parsing = r.modelfile.as_deref().is_some_and(|m| !m.trim().is_empty());
    let quantize = r.quantize.clone();
    let mut plan = plan(r)?;
    let mut converted = None;
    match plan.from.as_deref().and_then(import::model_dir) {
        Some(dir) => {
            let ty = import::out_type(quantize.as_deref())?;
            let runner = crate::server::runner_binary(&state.config);
            let what = format!("FROM {}", dir.display());
            let digest = import::convert(&runner, &state.store, &dir, ty, &what).await?;
            tracing::info!(dir = %dir.display(), %digest, ty, "model directory converted");
            converted = Some(format!("converting model to {ty}"));
            plan.from = Some(digest.to_string());
        }
        None if quantize.as_deref().is_some_and(|q| !q.is_empty()) => {
            let ty = import::gguf_type(quantize.as_deref())?;
            let store = Arc::clone(&state.store);
            let (from, files) = (plan.from.clone(), plan.files.clone());
            let source = tokio::task::spawn_blocking(move || {
                quantize_source(&store, from.as_deref(), &files)
            })
            .await
            .map_err(|e| ApiError::internal(format!("create failed: {e}")))??;
            let blob = state.store.blob_path(&source);
            let runner = crate::server::runner_binary(&state.config);
            let what = format!("quantize {ty}");
            let digest = import::convert(&runner, &state.store, &blob, ty, &what).await?;
            tracing::info!(%digest, ty, "model quantized");
            converted = Some(format!("quantizing model to {ty}"));
            replace_source(&mut plan, &digest);
        }
        None => {}
    }
    let store = Arc::clone(&state.store);
    let created_name = name.clone();
    let (entry, mut statuses) = tokio::task::spawn_blocking(move || {
        let (spec, statuses) = spec(&store, plan)?;
        Ok::<_, ApiError>((store.create(&created_name, spec)?, statuses))
    })
    .await
    .map_err(|e| ApiError::internal(format!("create failed: {e}")))??;
    tracing::info!(model = %name, digest = %entry.digest, "model created");
    if let Some(converted) = converted {
        statuses.insert(0, converted);
    }
    if parsing {
        statuses.insert(0, "parsing modelfile".into());
    }
    statuses.push("writing manifest".into());
    statuses.push("success".into());
    if !stream {
        return Ok(axum::Json(json!({ "status": "success" })).into_response());
    }
    let body: String = statuses
        .iter()
        .map(|status| format!("{}\n", json!({ "status": status })))
        .collect();
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
