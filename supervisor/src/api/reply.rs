//! What `/api/generate` and `/api/chat` share: the request's model, options and keep-alive
//! turned into a load spec, the load-only answer, and [`Reply`], a generation streamed as
//! NDJSON or gathered into one object with Ollama's final statistics.
//!
//! The two routes differ only in where the text goes: generate's `response`, chat's
//! `message: {role: "assistant", content}` ([`Shape`]).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::fit::Dropped;
use super::keep_alive;
use super::models::{Model, parse_name, resolve};
use super::runner_options::load_settings;
use super::stream::{Event, next_event};
use super::{ApiError, AppState};
use crate::config::KeepAlive;
use crate::options::Options;
use crate::sched::{Acquire, Backend, Generation, Lease, LoadSpec, RunnerHandle};
use crate::toolcall::{Output, ToolCall, ToolCallParser};
use ollama_proto::runner as pb;

/// A request's model resolved, with its options and the runner it needs.
pub struct Target {
    /// The model as the store resolved it.
    pub model: Arc<Model>,
    /// The model's parameters overlaid with the request's `options`.
    pub options: Options,
    /// The runner to acquire: the model's file and the settings from `options`.
    pub spec: LoadSpec,
    /// The request's `keep_alive`, if it had one.
    pub keep_alive: Option<KeepAlive>,
}

impl Target {
    /// Resolves `model` (400 for an empty or bad name, 404 for one not in the store) and
    /// reads `options` and `keep_alive` (400 naming a bad value).
    pub async fn resolve<B: Backend>(
        state: &AppState<B>,
        model: &str,
        options: &Map<String, Value>,
        keep_alive: Option<&Value>,
    ) -> Result<Self, ApiError> {
        let name = parse_name(model)?;
        let model = resolve(state, &name).await?;
        let options = model.options.overlay(&Options::from_map(options)?);
        let keep_alive = keep_alive::parse(keep_alive)?;
        let spec = LoadSpec {
            name: name.to_string(),
            model_path: model.resolved.model_path.clone(),
            settings: load_settings(&state.config, &options)?,
        };
        Ok(Self {
            model,
            options,
            spec,
            keep_alive,
        })
    }

    /// The scheduler's request for this target's runner.
    pub fn acquire(&self) -> Acquire {
        Acquire {
            spec: self.spec.clone(),
            keep_alive: self.keep_alive,
        }
    }
}

/// Where a route puts the generated text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `/api/generate`: `"response": text`.
    Generate,
    /// `/api/chat`: `"message": {"role": "assistant", "content": text}`.
    Chat,
}

impl Shape {
    /// The field that carries `text`, with its value.
    fn text(self, text: &str) -> (&'static str, Value) {
        match self {
            Self::Generate => ("response", Value::from(text)),
            Self::Chat => ("message", json!({ "role": "assistant", "content": text })),
        }
    }
}

/// The time now as Ollama writes `created_at`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Loads `target`'s model, or unloads it when the request's keep-alive is zero; returns
/// `load` or `unload`, the `done_reason` of the answer. Both APIs' load-only requests.
pub async fn load_or_unload<B: Backend>(
    state: &AppState<B>,
    target: &Target,
) -> Result<&'static str, ApiError> {
    if target.keep_alive == Some(KeepAlive::For(std::time::Duration::ZERO)) {
        state.sched.expire(&target.spec.name).await;
        Ok("unload")
    } else {
        drop(state.sched.acquire(target.acquire()).await?);
        Ok("load")
    }
}

/// A request with nothing to generate loads the model (or, with `keep_alive: 0`, unloads
/// it) and answers at once, as in Ollama.
pub async fn load_only<B: Backend>(
    state: &AppState<B>,
    model: &str,
    target: Target,
    shape: Shape,
) -> Result<Response, ApiError> {
    let reason = load_or_unload(state, &target).await?;
    let (field, text) = shape.text("");
    let body = json!({
        "model": model,
        "created_at": now_rfc3339(),
        field: text,
        "done": true,
        "done_reason": reason,
    });
    Ok(axum::Json(body).into_response())
}

/// A request under way: a model to load only (nothing to generate), or a reply. What
/// the Ollama handlers and the OpenAI ones share, before each answers in its own shape.
pub enum Started<B: Backend> {
    /// Nothing to generate: the model is loaded (or unloaded) only.
    LoadOnly(Target),
    /// The generation, started on the model's runner.
    Reply(Reply<B>),
}

/// A generation in progress, holding its runner slot until it ends or the client leaves.
pub struct Reply<B: Backend> {
    model: String,
    shape: Shape,
    started: Instant,
    lease: Lease<B>,
    stream: Generation,
    /// The job asked for log-probabilities: each object carries its tokens'.
    logprobs: bool,
    /// The job asked for its tokens back: the final object carries `context`.
    context: bool,
    /// Options the request set that this server does not implement.
    ignored: Vec<String>,
    /// What was dropped from the conversation to fit the context.
    dropped: Option<Dropped>,
    /// For a chat with tools: what reads the calls out of the text.
    tool_calls: Option<ToolCallParser>,
}

/// Ollama's `logprobs` entries for `tokens`: `{token, logprob, top_logprobs}` each.
fn logprobs(tokens: &[pb::TokenInfo]) -> Vec<Value> {
    tokens
        .iter()
        .map(|t| {
            let mut entry = json!({ "token": t.text, "logprob": t.logprob.unwrap_or(0.0) });
            if !t.top_logprobs.is_empty() {
                entry["top_logprobs"] = t
                    .top_logprobs
                    .iter()
                    .map(|c| json!({ "token": c.text, "logprob": c.logprob }))
                    .collect();
            }
            entry
        })
        .collect()
}

impl<B: Backend> Reply<B> {
    /// Acquires `target`'s runner and starts `job` on it; `model` is the name the client
    /// sent (echoed in every object) and `started` when the request arrived.
    pub async fn start(
        state: &AppState<B>,
        model: &str,
        target: &Target,
        job: pb::GenerateRequest,
        shape: Shape,
        started: Instant,
    ) -> Result<Self, ApiError> {
        let lease = state.sched.acquire(target.acquire()).await?;
        Self::on(lease, model, target, job, shape, started).await
    }

    /// As [`Reply::start`], on a runner already acquired (a chat counts its prompt's
    /// tokens on it first).
    pub async fn on(
        lease: Lease<B>,
        model: &str,
        target: &Target,
        job: pb::GenerateRequest,
        shape: Shape,
        started: Instant,
    ) -> Result<Self, ApiError> {
        let (logprobs, context) = (job.logprobs, job.return_context);
        let stream = match lease.runner().generate(job).await {
            Ok(stream) => stream,
            Err(error) => return Err(super::stream::broken(&lease, error).await),
        };
        Ok(Self {
            model: model.to_owned(),
            shape,
            started,
            lease,
            stream,
            logprobs,
            context,
            ignored: target.options.ignored.clone(),
            tool_calls: None,
            dropped: None,
        })
    }

    /// Reports in the final object what was dropped to fit the context.
    pub fn with_dropped(mut self, dropped: Option<Dropped>) -> Self {
        self.dropped = dropped;
        self
    }

    /// Reads the model's tool calls out of the text into `message.tool_calls` (a chat that
    /// offered tools); held-back text makes no streamed object.
    pub fn with_tool_calls(mut self, parser: ToolCallParser) -> Self {
        self.tool_calls = Some(parser);
        self
    }

    /// What generated `text` says: content and complete calls (all content without tools).
    fn said(&mut self, text: &str) -> Output {
        match &mut self.tool_calls {
            Some(parser) => parser.feed(text),
            None => Output {
                content: text.to_owned(),
                calls: Vec::new(),
            },
        }
    }

    /// What the tool call parser still holds at the end of the text.
    fn said_last(&mut self) -> Output {
        self.tool_calls
            .take()
            .map(ToolCallParser::finish)
            .unwrap_or_default()
    }

    /// The answer: NDJSON when `stream` (Ollama's default), else one object.
    pub async fn respond(self, stream: bool) -> Result<Response, ApiError> {
        if stream {
            Ok(self.streamed())
        } else {
            self.whole().await
        }
    }

    /// What the generation says next, with tool calls read out of its text. Both APIs
    /// consume a reply through this: Ollama's NDJSON and OpenAI's server-sent events are
    /// two encodings of the same events.
    pub async fn next(&mut self) -> Said {
        match next_event(&self.lease, &mut self.stream).await {
            Event::Piece(piece) => Said::Piece {
                output: self.said(&piece.text),
                tokens: piece.tokens,
            },
            Event::Done(done) => Said::Done {
                output: self.said_last(),
                done,
            },
            Event::Failed(error) => Said::Failed(error),
        }
    }

    /// Every event to the end: the content and calls, the tokens when log-probabilities
    /// were asked for, and the runner's final message.
    pub async fn gather(&mut self) -> Result<(Output, Vec<pb::TokenInfo>, pb::Done), ApiError> {
        let mut said = Output::default();
        let mut all = Vec::new();
        loop {
            match self.next().await {
                Said::Piece { output, tokens } => {
                    said.append(output);
                    if self.logprobs {
                        all.extend(tokens);
                    }
                }
                Said::Done { output, done } => {
                    said.append(output);
                    return Ok((said, all, done));
                }
                Said::Failed(error) => return Err(error),
            }
        }
    }

    fn piece(&self, text: &str, tokens: &[pb::TokenInfo]) -> Value {
        let (field, text) = self.shape.text(text);
        let mut line = json!({
            "model": self.model,
            "created_at": now_rfc3339(),
            field: text,
            "done": false,
        });
        if self.logprobs {
            line["logprobs"] = logprobs(tokens).into();
        }
        line
    }

    /// What the generation reports besides its text, from the runner's final message:
    /// what Ollama's final object and the gRPC API's `Stats` both carry.
    pub fn summary(&self, done: &pb::Done) -> Summary {
        let t = done.timings.unwrap_or_default();
        let reason = match pb::DoneReason::try_from(done.reason) {
            Ok(pb::DoneReason::Length) => "length",
            _ => "stop",
        };
        Summary {
            reason,
            total_ns: self.started.elapsed().as_nanos() as u64,
            load_ns: self
                .lease
                .load_duration()
                .unwrap_or(self.lease.waited())
                .as_nanos() as u64,
            prompt_tokens: t.prompt_tokens,
            prompt_ns: t.prompt_duration_ns,
            generated_tokens: t.generated_tokens,
            generation_ns: t.generation_duration_ns,
            ignored: self.ignored.clone(),
            dropped: self.dropped,
            context: self.context.then(|| done.context.clone()),
        }
    }

    /// Whether the job asked for log-probabilities (each piece carries its tokens').
    pub fn logprobs(&self) -> bool {
        self.logprobs
    }

    /// The final object; `text` and `tokens` are what the whole answer carries (empty
    /// when streamed: the pieces carried them).
    fn done(&self, done: &pb::Done, text: &str, tokens: &[pb::TokenInfo]) -> Value {
        let summary = self.summary(done);
        let (field, text) = self.shape.text(text);
        let mut line = json!({
            "model": self.model,
            "created_at": now_rfc3339(),
            field: text,
            "done": true,
            "done_reason": summary.reason,
            "total_duration": summary.total_ns,
            "load_duration": summary.load_ns,
            "prompt_eval_count": summary.prompt_tokens,
            "prompt_eval_duration": summary.prompt_ns,
            "eval_count": summary.generated_tokens,
            "eval_duration": summary.generation_ns,
        });
        if self.logprobs && !tokens.is_empty() {
            line["logprobs"] = logprobs(tokens).into();
        }
        if let Some(context) = summary.context {
            line["context"] = context.into();
        }
        if !summary.ignored.is_empty() {
            line["ignored_options"] = summary.ignored.into();
        }
        if let Some(dropped) = summary.dropped {
            line["truncated"] = json!(dropped);
        }
        line
    }

    /// A streamed answer of `content_type`: every event encoded by `encode` (`None`: nothing
    /// to send for it), until the end or a failure. The client may leave while nothing is
    /// written (a long prompt is being evaluated): its closed connection drops the
    /// receiver, and dropping the reply then cancels the runner's work and releases the
    /// slot at once.
    pub fn stream_as(
        mut self,
        content_type: &'static str,
        mut encode: impl FnMut(&Self, Said) -> Option<Vec<u8>> + Send + 'static,
    ) -> Response {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(16);
        tokio::spawn(async move {
            loop {
                let said = tokio::select! {
                    said = self.next() => said,
                    () = tx.closed() => return,
                };
                let last = !matches!(said, Said::Piece { .. });
                if let Some(bytes) = encode(&self, said)
                    && tx.send(Ok(Bytes::from(bytes))).await.is_err()
                {
                    return;
                }
                if last {
                    return;
                }
            }
        });
        Response::builder()
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from_stream(ReceiverStream::new(rx)))
            .unwrap_or_else(|e| ApiError::internal(e.to_string()).into_response())
    }

    /// NDJSON, one object per piece, then the final object (or an error object).
    fn streamed(self) -> Response {
        self.stream_as("application/x-ndjson", |reply, said| {
            let line = match said {
                Said::Piece { output, tokens } => {
                    if output.is_empty() && !reply.logprobs {
                        return None;
                    }
                    with_calls(reply.piece(&output.content, &tokens), &output.calls)
                }
                Said::Done { output, done } => {
                    with_calls(reply.done(&done, &output.content, &[]), &output.calls)
                }
                Said::Failed(error) => {
                    let message = error.message();
                    tracing::warn!(model = %reply.model, %message, "generation failed");
                    json!({ "error": message })
                }
            };
            let mut bytes = line.to_string().into_bytes();
            bytes.push(b'\n');
            Some(bytes)
        })
    }

    /// One object with the whole text.
    async fn whole(mut self) -> Result<Response, ApiError> {
        let (said, tokens, done) = self.gather().await?;
        let line = self.done(&done, &said.content, &tokens);
        Ok(axum::Json(with_calls(line, &said.calls)).into_response())
    }
}

/// A finished generation's reason, timings and notes ([`Reply::summary`]).
#[derive(Debug, Clone)]
pub struct Summary {
    /// `stop` or `length`.
    pub reason: &'static str,
    /// Nanoseconds since the request arrived.
    pub total_ns: u64,
    /// Nanoseconds loading the model, or waiting for a runner.
    pub load_ns: u64,
    /// Prompt tokens evaluated.
    pub prompt_tokens: u32,
    /// Nanoseconds on them.
    pub prompt_ns: u64,
    /// Tokens generated.
    pub generated_tokens: u32,
    /// Nanoseconds on them.
    pub generation_ns: u64,
    /// Options set that this server does not implement.
    pub ignored: Vec<String>,
    /// What was dropped from the conversation to fit the context.
    pub dropped: Option<Dropped>,
    /// The token ids of prompt and answer, when the job asked for them.
    pub context: Option<Vec<u32>>,
}

/// What a generation said, as [`Reply::next`] reads it.
pub enum Said {
    /// Generated text: its content (empty while a possible tool call is held back), the
    /// calls completed in it, and the tokens that made it.
    Piece {
        /// Content and calls.
        output: Output,
        /// The sampled tokens, with log-probabilities when asked.
        tokens: Vec<pb::TokenInfo>,
    },
    /// The end: what the tool call reader still held, and the runner's reason and timings.
    Done {
        /// Content and calls released at the end.
        output: Output,
        /// The runner's final message.
        done: pb::Done,
    },
    /// The generation failed; the error is for the user.
    Failed(ApiError),
}

/// `line` (a chat object) with `calls` in its message, when there are any.
fn with_calls(mut line: Value, calls: &[ToolCall]) -> Value {
    if !calls.is_empty()
        && let Some(message) = line.get_mut("message").and_then(Value::as_object_mut)
    {
        message.insert("tool_calls".into(), json!(calls));
    }
    line
}

impl<B: Backend> super::fit::Counter for Lease<B> {
    async fn count(&self, text: &str) -> Result<usize, ApiError> {
        match self.runner().count_tokens(text).await {
            Ok(n) => Ok(n),
            Err(error) => Err(super::stream::broken(self, error).await),
        }
    }
}
