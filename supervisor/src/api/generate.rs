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
use super::reply::{Reply, Shape, Target, load_only};
use super::runner_options::generate_request;
use super::{ApiError, AppState};
use crate::sched::Backend;
use crate::template::Message;

/// The request body, in Ollama's field names.
#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    model: String,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    suffix: String,
    system: Option<String>,
    template: Option<String>,
    #[serde(default)]
    raw: bool,
    stream: Option<bool>,
    #[serde(default)]
    options: Map<String, Value>,
    keep_alive: Option<Value>,
    #[serde(default)]
    context: Vec<i64>,
    format: FormatField,
    #[serde(default)]
    images: Vec<String>,
    think: Option<Value>,
}

/// Parses a JSON body with a 400 that says what is wrong (axum's own answer is a 422 in
/// plain text, which Ollama's clients do not expect).
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))
}

/// Fields Ollama has that this server does not implement yet: refused, never ignored.
fn refuse_unsupported(r: &GenerateRequest) -> Result<(), ApiError> {
    let unsupported = [
        (
            !r.images.is_empty(),
            "images: this model cannot read images",
        ),
        (
            !r.suffix.is_empty(),
            "suffix: fill-in-the-middle is not supported",
        ),
        (
            !r.context.is_empty(),
            "context: continuing from token ids is not supported; send the conversation to \
             /api/chat or resend the text",
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
fn render(model: &Model, r: &GenerateRequest) -> Result<String, ApiError> {
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

/// The handler.
pub async fn generate<B: Backend>(
    State(state): State<AppState<B>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let r: GenerateRequest = parse_body(&body)?;
    refuse_unsupported(&r)?;
    let json_schema = format::json_schema(r.format.as_deref())?;
    let target = Target::resolve(&state, &r.model, &r.options, r.keep_alive.as_ref()).await?;
    if r.prompt.is_empty() {
        return load_only(&state, &r.model, target, Shape::Generate).await;
    }
    let prompt = render(&target.model, &r)?;
    let mut job = generate_request(prompt, &target.options);
    job.json_schema = json_schema;
    let reply = Reply::start(&state, &r.model, &target, job, Shape::Generate, started).await?;
    reply.respond(r.stream.unwrap_or(true)).await
}
