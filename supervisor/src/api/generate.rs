//! `POST /api/generate`: a completion for a prompt, rendered through the model's chat
//! template unless `raw`, streamed as NDJSON or answered in one object.

use tokio::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::format::{self, FormatField};
use super::models::Model;
use super::reply::{Reply, Shape, Started, Target, load_only};
use super::runner_options::generate_request;
use super::{ApiError, AppState};
use crate::sched::Backend;
use crate::template::Message;

/// The request body, in Ollama's field names.
#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    pub(super) model: String,
    #[serde(default)]
    pub(super) prompt: String,
    #[serde(default)]
    pub(super) suffix: String,
    pub(super) system: Option<String>,
    pub(super) template: Option<String>,
    #[serde(default)]
    pub(super) raw: bool,
    pub(super) stream: Option<bool>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) options: Map<String, Value>,
    pub(super) keep_alive: Option<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) context: Vec<u32>,
    pub(super) format: FormatField,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) images: Vec<String>,
    pub(super) think: Option<Value>,
    #[serde(default)]
    pub(super) logprobs: bool,
    #[serde(default)]
    pub(super) top_logprobs: u32,
}

/// Reads `null` as the field's default: Ollama's Go client sends `"options": null`.
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Parses a JSON body with a 400 that says what is wrong and where (`context[0]: ...`;
/// axum's own answer is a 422 in plain text, which Ollama's clients do not expect).
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::bad_request(format!("invalid request: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid request: {path}: {inner}"))
        }
    })
}

/// Fields Ollama has that this server does not implement yet: refused, never ignored.
fn refuse_unsupported(r: &GenerateRequest) -> Result<(), ApiError> {
    let unsupported = [
        (
            !r.images.is_empty(),
            "images: this model cannot read images",
        ),
        (
            r.raw
                && (r.system.as_ref().is_some_and(|s| !s.is_empty())
                    || r.template.as_ref().is_some_and(|t| !t.is_empty())
                    || !r.context.is_empty()),
            "raw mode does not support template, system, or context",
        ),
        (
            r.think
                .as_ref()
                .is_some_and(|t| t != &Value::Bool(false) && !t.is_null()),
            "think: this model does not support thinking",
        ),
    ];
    match unsupported.iter().find(|(set, _)| *set) {
        Some((_, what)) => Err(ApiError::bad_request(*what)),
        None => Ok(()),
    }
}

/// The prompt the runner sees: raw, or rendered with the model's (or the request's)
/// template, with the request's (or the model's) system message.
fn render(model: &Model, name: &str, r: &GenerateRequest) -> Result<String, ApiError> {
    if !r.suffix.is_empty() {
        // A Go template that takes `.Suffix` writes the FIM prompt itself, as in Ollama.
        let inserted = model.template.as_ref().filter(|_| !r.raw);
        if let Some(rendered) = inserted.and_then(|t| t.render_insert(&r.prompt, &r.suffix)) {
            return Ok(rendered?);
        }
        return match &model.fim {
            Some(fim) => Ok(fim.prompt(&r.prompt, &r.suffix)),
            None => Err(ApiError::bad_request(format!(
                "{name} does not support insert: suffix needs a model trained for \
                 fill-in-the-middle (its vocabulary has no FIM tokens)"
            ))),
        };
    }
    if r.raw {
        return Ok(r.prompt.clone());
    }
    let template = match &r.template {
        Some(source) if !source.is_empty() => {
            let tokens = model
                .template
                .as_ref()
                .map(|t| t.tokens().clone())
                .unwrap_or_default();
            Some(crate::template::ChatTemplate::with_tokens(source, tokens)?)
        }
        _ => None,
    };
    let Some(template) = template.as_ref().or(model.template.as_ref()) else {
        return Ok(r.prompt.clone());
    };
    let system = r.system.as_ref().or(model.resolved.system.as_ref());
    let mut messages = Vec::new();
    if let Some(system) = system.filter(|s| !s.is_empty()) {
        messages.push(Message::new("system", system.clone()));
    }
    messages.push(Message::new("user", r.prompt.clone()));
    Ok(template.render(&messages, true)?)
}

/// Checks `r`, renders its prompt and starts the generation: what `/api/generate` and
/// `/v1/completions` share. `started` is when the request arrived.
pub(super) async fn start<B: Backend>(
    state: &AppState<B>,
    r: GenerateRequest,
    started: Instant,
) -> Result<Started<B>, ApiError> {
    refuse_unsupported(&r)?;
    let json_schema = format::json_schema(r.format.as_deref())?;
    let target = Target::resolve(state, &r.model, &r.options, r.keep_alive.as_ref()).await?;
    if r.prompt.is_empty() {
        return Ok(Started::LoadOnly(target));
    }
    let prompt = render(&target.model, &r.model, &r)?;
    let mut job = generate_request(prompt, &target.options);
    job.logprobs = r.logprobs || r.top_logprobs > 0;
    job.top_logprobs = r.top_logprobs;
    job.context = r.context;
    job.return_context = !r.raw;
    job.json_schema = json_schema;
    let reply = Reply::start(state, &r.model, &target, job, Shape::Generate, started).await?;
    Ok(Started::Reply(reply))
}

/// The handler.
pub async fn generate<B: Backend>(
    State(state): State<AppState<B>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let r: GenerateRequest = parse_body(&body)?;
    let (model, stream) = (r.model.clone(), r.stream.unwrap_or(true));
    match start(&state, r, started).await? {
        Started::LoadOnly(target) => load_only(&state, &model, target, Shape::Generate).await,
        Started::Reply(reply) => reply.respond(stream).await,
    }
}
