//! `POST /api/create`: a model from an uploaded GGUF blob (`files`, or `from` a digest;
//! with `quantize`, a GGUF of F32, F16 or BF16 weights is quantized first, one that is
//! already quantized refused), from a Hugging Face directory on this machine (`from` its
//! path, converted by [`super::import`], with `quantize` one of the converter's types,
//! f32 to q6_k) or from another model (`from` a name; with `quantize`, its weights are
//! quantized into the new model), with parameters, a template, a system message,
//! licenses and messages; or from the older `modelfile` body, parsed by
//! [`crate::modelfile`]. Everything is checked before anything is written; the answer is
//! Ollama's status lines (streamed NDJSON by default, one object with `stream: false`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::{Body, Bytes};
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

/// The GGUF file a `quantize` applies to, for a source other than a model directory:
/// `from` a digest, an uploaded file or another model (its weights), or the one `.gguf` of
/// `files`. Blocking (a path is hashed).
fn quantize_source(
    store: &Store,
    from: Option<&str>,
    files: &BTreeMap<String, String>,
) -> Result<QuantizeSource, ApiError> {
    let digest = match from {
        Some(from) => match source(store, from)? {
            Source::Blob(digest) => digest,
            Source::Model(name) => {
                return Ok(QuantizeSource {
                    path: store.resolve(&name)?.model_path,
                    over_base: true,
                });
            }
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
    Ok(QuantizeSource {
        path: store.blob_path(&digest),
        over_base: false,
    })
}

/// Where [`quantize_source`] found the weights to quantize.
struct QuantizeSource {
    /// The GGUF file.
    path: PathBuf,
    /// They are another model's (`from` names it): the result replaces only its weights,
    /// and the new model keeps its template, system, parameters and the rest.
    over_base: bool,
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

/// A conversion a create runs before storing: a model directory into a GGUF, or an
/// uploaded GGUF quantized.
struct Conversion {
    /// What the converter reads: the directory, or the blob's file.
    source: PathBuf,
    /// The converter's `--type`.
    ty: &'static str,
    /// The status line, also the label of the progress lines.
    status: String,
    /// What an error of the converter is put after (`FROM <dir>`, `quantize <type>`).
    what: String,
    /// The result becomes the weights of `from`, another model (see [`QuantizeSource`]).
    over_base: bool,
}

/// The conversion `plan` needs, if any, checked (the type, the uploaded blob) before
/// anything runs.
async fn conversion<B: Backend>(
    state: &AppState<B>,
    plan: &Plan,
    quantize: Option<&str>,
) -> Result<Option<Conversion>, ApiError> {
    if let Some(dir) = plan.from.as_deref().and_then(import::model_dir) {
        let ty = import::out_type(quantize)?;
        return Ok(Some(Conversion {
            what: format!("FROM {}", dir.display()),
            source: dir,
            ty,
            status: format!("converting model to {ty}"),
            over_base: false,
        }));
    }
    if quantize.is_none_or(|q| q.is_empty()) {
        return Ok(None);
    }
    let ty = import::gguf_type(quantize)?;
    let store = Arc::clone(&state.store);
    let (from, files) = (plan.from.clone(), plan.files.clone());
    let found =
        tokio::task::spawn_blocking(move || quantize_source(&store, from.as_deref(), &files))
            .await
            .map_err(|e| ApiError::internal(format!("create failed: {e}")))??;
    Ok(Some(Conversion {
        source: found.path,
        over_base: found.over_base,
        ty,
        status: format!("quantizing model to {ty}"),
        what: format!("quantize {ty}"),
    }))
}

/// Runs `conv` and points `plan` at its result; `progress` hears of each step.
async fn run_conversion<B: Backend>(
    state: &AppState<B>,
    conv: &Conversion,
    plan: &mut Plan,
    progress: Option<&import::Progress>,
) -> Result<(), ApiError> {
    let runner = crate::server::runner_binary(&state.config);
    let (source, ty, what) = (&conv.source, conv.ty, &conv.what);
    let digest = import::convert(&runner, &state.store, source, ty, what, progress).await?;
    tracing::info!(source = %source.display(), %digest, ty, "model converted");
    if conv.over_base {
        plan.files = BTreeMap::from([("model.gguf".to_owned(), digest.to_string())]);
    } else if plan.from.as_deref().and_then(import::model_dir).is_some() {
        plan.from = Some(digest.to_string());
    } else {
        replace_source(plan, &digest);
    }
    Ok(())
}

/// Stores the model `plan` describes and returns Ollama's status lines after those
/// already said (`first`).
async fn store_model<B: Backend>(
    state: &AppState<B>,
    name: &ModelName,
    plan: Plan,
    first: Vec<String>,
) -> Result<Vec<String>, ApiError> {
    let store = Arc::clone(&state.store);
    let created_name = name.clone();
    let (entry, statuses) = tokio::task::spawn_blocking(move || {
        let (spec, statuses) = spec(&store, plan)?;
        Ok::<_, ApiError>((store.create(&created_name, spec)?, statuses))
    })
    .await
    .map_err(|e| ApiError::internal(format!("create failed: {e}")))??;
    tracing::info!(model = %name, digest = %entry.digest, "model created");
    let mut all = first;
    all.extend(statuses);
    all.push("writing manifest".into());
    all.push("success".into());
    Ok(all)
}

/// The handler: checks everything before writing anything, then answers with Ollama's
/// status lines (streamed by default). A conversion streams as it goes: its status line
/// with `total` and `completed` tensors, then the rest, or an `{"error": ...}` line.
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
    let conv = conversion(&state, &plan, quantize.as_deref()).await?;
    let mut first: Vec<String> = parsing
        .then(|| "parsing modelfile".to_owned())
        .into_iter()
        .collect();
    match conv {
        Some(conv) if stream => {
            return Ok(streamed_conversion(state, name, plan, conv, first));
        }
        Some(conv) => {
            run_conversion(&state, &conv, &mut plan, None).await?;
            first.push(conv.status);
        }
        None => {}
    }
    let statuses = store_model(&state, &name, plan, first).await?;
    if !stream {
        return Ok(axum::Json(json!({ "status": "success" })).into_response());
    }
    let body: String = statuses
        .iter()
        .map(|status| format!("{}\n", json!({ "status": status })))
        .collect();
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// The NDJSON answer of a create with a conversion: progress lines while the converter
/// runs, then the other status lines (or an error line). The client going away stops
/// the converter.
fn streamed_conversion<B: Backend>(
    state: AppState<B>,
    name: ModelName,
    mut plan: Plan,
    conv: Conversion,
    mut first: Vec<String>,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let line = |v: Value| Ok(Bytes::from(format!("{v}\n")));
    tokio::spawn(async move {
        for status in &first {
            let _ = tx.send(line(json!({ "status": status }))).await;
        }
        let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel();
        let work = async {
            run_conversion(&state, &conv, &mut plan, Some(&ptx)).await?;
            first.push(conv.status.clone());
            store_model(&state, &name, plan, first).await
        };
        tokio::pin!(work);
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                Some((completed, total)) = prx.recv() => {
                    let said = json!({ "status": conv.status, "total": total, "completed": completed });
                    if tx.send(line(said)).await.is_err() {
                        return;
                    }
                }
                () = tx.closed() => return,
            }
        };
        match result {
            // The conversion's own line has been said with its progress.
            Ok(statuses) => {
                for status in statuses.iter().filter(|s| **s != conv.status) {
                    let _ = tx.send(line(json!({ "status": status }))).await;
                }
            }
            Err(e) => {
                let _ = tx.send(line(json!({ "error": e.message() }))).await;
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}
