//! `POST /api/generate`: a completion for a prompt, rendered through the model's chat
//! template unless `raw`, streamed as NDJSON or answered in one object.

use std::convert::Infallible;
use tokio::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio_stream::wrappers::ReceiverStream;

use super::keep_alive;
use super::models::{Model, parse_name, resolve};
use super::runner_options::{generate_request, load_settings};
use super::stream::{Event, next_event};
use super::{ApiError, AppState};
use crate::config::KeepAlive;
use crate::options::Options;
use crate::sched::{Acquire, Backend, Generation, Lease, LoadSpec, RunnerHandle};
use crate::template::Message;
use ollama_proto::runner as pb;

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
    format: Option<Value>,
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
            r.format.as_ref().is_some_and(|f| !f.is_null() && f != ""),
            "format: structured output is not supported yet",
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

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The handler.
pub async fn generate<B: Backend>(
    State(state): State<AppState<B>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let r: GenerateRequest = parse_body(&body)?;
    refuse_unsupported(&r)?;
    let name = parse_name(&r.model)?;
    let model = resolve(&state, &name).await?;
    let options = model.options.overlay(&Options::from_map(&r.options)?);
    let keep_alive = keep_alive::parse(r.keep_alive.as_ref())?;
    let spec = LoadSpec {
        name: name.to_string(),
        model_path: model.resolved.model_path.clone(),
        settings: load_settings(&state.config, &options)?,
    };
    if r.prompt.is_empty() {
        return load_only(&state, &r.model, spec, keep_alive).await;
    }
    let prompt = render(&model, &r)?;
    let lease = state.sched.acquire(Acquire { spec, keep_alive }).await?;
    let job = generate_request(prompt, &options);
    let stream = match lease.runner().generate(job).await {
        Ok(stream) => stream,
        Err(error) => return Err(super::stream::broken(&lease, error).await),
    };
    let reply = Reply {
        model: r.model.clone(),
        started,
        lease,
        stream,
    };
    if r.stream.unwrap_or(true) {
        Ok(reply.streamed())
    } else {
        reply.whole().await
    }
}

/// A request without a prompt loads the model (or, with `keep_alive: 0`, unloads it) and
/// answers at once, as in Ollama.
async fn load_only<B: Backend>(
    state: &AppState<B>,
    model: &str,
    spec: LoadSpec,
    keep_alive: Option<KeepAlive>,
) -> Result<Response, ApiError> {
    let reason = if keep_alive == Some(KeepAlive::For(std::time::Duration::ZERO)) {
        state.sched.expire(&spec.name).await;
        "unload"
    } else {
        drop(state.sched.acquire(Acquire { spec, keep_alive }).await?);
        "load"
    };
    let body = json!({
        "model": model,
        "created_at": now_rfc3339(),
        "response": "",
        "done": true,
        "done_reason": reason,
    });
    Ok(axum::Json(body).into_response())
}

/// A generation in progress, holding its runner slot until it ends or the client leaves.
struct Reply<B: Backend> {
    model: String,
    started: Instant,
    lease: Lease<B>,
    stream: Generation,
}

impl<B: Backend> Reply<B> {
    fn piece(&self, text: &str) -> Value {
        json!({
            "model": self.model,
            "created_at": now_rfc3339(),
            "response": text,
            "done": false,
        })
    }

    fn done(&self, done: &pb::Done, response: &str) -> Value {
        let t = done.timings.unwrap_or_default();
        let reason = match pb::DoneReason::try_from(done.reason) {
            Ok(pb::DoneReason::Length) => "length",
            _ => "stop",
        };
        let load = self
            .lease
            .load_duration()
            .unwrap_or(self.lease.waited())
            .as_nanos() as u64;
        json!({
            "model": self.model,
            "created_at": now_rfc3339(),
            "response": response,
            "done": true,
            "done_reason": reason,
            "total_duration": self.started.elapsed().as_nanos() as u64,
            "load_duration": load,
            "prompt_eval_count": t.prompt_tokens,
            "prompt_eval_duration": t.prompt_duration_ns,
            "eval_count": t.generated_tokens,
            "eval_duration": t.generation_duration_ns,
        })
    }

    /// NDJSON, one object per piece, then the final object (or an error object).
    fn streamed(mut self) -> Response {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(16);
        tokio::spawn(async move {
            loop {
                let (line, last) = match next_event(&self.lease, &mut self.stream).await {
                    Event::Piece(text) => (self.piece(&text), false),
                    Event::Done(done) => (self.done(&done, ""), true),
                    Event::Failed(error) => {
                        let message = error.message();
                        tracing::warn!(model = %self.model, %message, "generation failed");
                        (json!({ "error": message }), true)
                    }
                };
                let mut bytes = line.to_string().into_bytes();
                bytes.push(b'\n');
                // A closed channel means the client left: dropping `self` cancels the
                // runner's work and releases the slot.
                if tx.send(Ok(Bytes::from(bytes))).await.is_err() || last {
                    return;
                }
            }
        });
        Response::builder()
            .header(header::CONTENT_TYPE, "application/x-ndjson")
            .body(Body::from_stream(ReceiverStream::new(rx)))
            .unwrap_or_else(|e| ApiError::internal(e.to_string()).into_response())
    }

    /// One object with the whole response.
    async fn whole(mut self) -> Result<Response, ApiError> {
        let mut text = String::new();
        loop {
            match next_event(&self.lease, &mut self.stream).await {
                Event::Piece(piece) => text.push_str(&piece),
                Event::Done(done) => return Ok(axum::Json(self.done(&done, &text)).into_response()),
                Event::Failed(error) => return Err(error),
            }
        }
    }
}
