//! `Generate`, `Chat` and `Embed`: the HTTP routes' requests, started by the same code
//! (`generate::start`, `chat::start`, `embed::embed_inputs`), answered as messages.
//!
//! A streamed reply runs in a task that feeds the call's stream; when the client
//! cancels the call, tonic drops the stream, the task sees its channel closed and drops
//! the reply, which cancels the runner's work at its next step.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Response, Status};

use super::ResponseStream;
use super::convert::{self, HttpMessage, HttpTool};
use crate::api::AppState;
use crate::api::chat::{self, ChatRequest};
use crate::api::embed::{self, EmbedRequest};
use crate::api::generate::{self, GenerateRequest};
use crate::api::reply::{Reply, Said, Started, Summary, load_or_unload};
use crate::sched::Backend;
use ollama_proto::ollama as pb;

/// `/api/generate`'s body for a gRPC request.
#[derive(Serialize)]
struct HttpGenerate<'a> {
    model: &'a str,
    prompt: &'a str,
    suffix: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    template: Option<&'a str>,
    raw: bool,
    options: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<Value>,
    context: &'a [u32],
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<Box<RawValue>>,
    logprobs: bool,
    top_logprobs: u32,
}

/// `/api/chat`'s body for a gRPC request.
#[derive(Serialize)]
struct HttpChat<'a> {
    model: &'a str,
    messages: Vec<HttpMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<HttpTool>,
    options: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<Box<RawValue>>,
    logprobs: bool,
    top_logprobs: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    truncate: Option<bool>,
}

/// `/api/embed`'s body for a gRPC request.
#[derive(Serialize)]
struct HttpEmbed<'a> {
    model: &'a str,
    input: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    truncate: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<u32>,
    options: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_alive: Option<Value>,
}

/// The final statistics of a reply.
fn stats(summary: Summary) -> pb::Stats {
    pb::Stats {
        done_reason: summary.reason.to_owned(),
        total_duration_ns: summary.total_ns,
        load_duration_ns: summary.load_ns,
        prompt_eval_count: summary.prompt_tokens,
        prompt_eval_duration_ns: summary.prompt_ns,
        eval_count: summary.generated_tokens,
        eval_duration_ns: summary.generation_ns,
        ignored_options: summary.ignored,
        truncated: summary.dropped.map(|d| pb::Truncated {
            messages: d.messages as u32,
            tokens: d.tokens as u32,
        }),
    }
}

/// The statistics of a request that only loaded or unloaded its model.
fn load_stats(reason: &str, started: Instant) -> pb::Stats {
    let elapsed = started.elapsed().as_nanos() as u64;
    pb::Stats {
        done_reason: reason.to_owned(),
        total_duration_ns: elapsed,
        load_duration_ns: elapsed,
        ..Default::default()
    }
}

/// A one-message stream.
fn single<T: Send + 'static>(message: T) -> Response<ResponseStream<T>> {
    Response::new(Box::pin(tokio_stream::once(Ok(message))))
}

/// Streams `reply` as messages made by `encode` (`None`: nothing to send for that
/// event); the last is the done one, or the failure as a status.
fn stream<B: Backend, T: Send + 'static>(
    mut reply: Reply<B>,
    mut encode: impl FnMut(&Reply<B>, Said) -> Option<T> + Send + 'static,
) -> Response<ResponseStream<T>> {
    let (tx, rx) = mpsc::channel::<Result<T, Status>>(16);
    tokio::spawn(async move {
        loop {
            let said = tokio::select! {
                said = reply.next() => said,
                () = tx.closed() => return,
            };
            let (message, last) = match said {
                Said::Failed(error) => (Err(Status::from(error)), true),
                said @ Said::Done { .. } => match encode(&reply, said) {
                    Some(message) => (Ok(message), true),
                    None => return,
                },
                said => match encode(&reply, said) {
                    Some(message) => (Ok(message), false),
                    None => continue,
                },
            };
            if tx.send(message).await.is_err() || last {
                return;
            }
        }
    });
    Response::new(Box::pin(ReceiverStream::new(rx)))
}

/// `Generate`.
pub async fn generate<B: Backend>(
    state: &AppState<B>,
    r: pb::GenerateRequest,
) -> Result<Response<ResponseStream<pb::GenerateResponse>>, Status> {
    let started = Instant::now();
    let body = HttpGenerate {
        model: &r.model,
        prompt: &r.prompt,
        suffix: &r.suffix,
        system: r.system.as_deref(),
        template: r.template.as_deref(),
        raw: r.raw,
        options: convert::options(r.options.as_ref()),
        keep_alive: convert::keep_alive(r.keep_alive.as_ref()),
        context: &r.context,
        format: convert::format(&r.format)?,
        logprobs: r.logprobs,
        top_logprobs: r.top_logprobs,
    };
    let http: GenerateRequest = convert::http_request(&body)?;
    let model = r.model.clone();
    match generate::start(state, http, started).await? {
        Started::LoadOnly(target) => {
            let reason = load_or_unload(state, &target).await?;
            Ok(single(pb::GenerateResponse {
                model,
                done: true,
                stats: Some(load_stats(reason, started)),
                ..Default::default()
            }))
        }
        Started::Reply(reply) => Ok(stream(reply, move |reply, said| {
            Some(match said {
                Said::Piece { output, tokens } => {
                    if output.content.is_empty() && !reply.logprobs() {
                        return None;
                    }
                    pb::GenerateResponse {
                        model: model.clone(),
                        response: output.content,
                        logprobs: convert::logprobs(&tokens),
                        ..Default::default()
                    }
                }
                Said::Done { output, done } => {
                    let summary = reply.summary(&done);
                    pb::GenerateResponse {
                        model: model.clone(),
                        response: output.content,
                        done: true,
                        context: summary.context.clone().unwrap_or_default(),
                        stats: Some(stats(summary)),
                        logprobs: Vec::new(),
                    }
                }
                Said::Failed(_) => return None,
            })
        })),
    }
}

/// The assistant's message of one chat piece.
fn assistant(content: String, calls: &[crate::toolcall::ToolCall]) -> Option<pb::Message> {
    Some(pb::Message {
        role: "assistant".to_owned(),
        content,
        tool_calls: convert::tool_calls(calls),
        tool_name: String::new(),
    })
}

/// `Chat`.
pub async fn chat<B: Backend>(
    state: &AppState<B>,
    r: pb::ChatRequest,
) -> Result<Response<ResponseStream<pb::ChatResponse>>, Status> {
    let started = Instant::now();
    let body = HttpChat {
        model: &r.model,
        messages: convert::messages(&r.messages)?,
        tools: convert::tools(&r.tools)?,
        options: convert::options(r.options.as_ref()),
        keep_alive: convert::keep_alive(r.keep_alive.as_ref()),
        format: convert::format(&r.format)?,
        logprobs: r.logprobs,
        top_logprobs: r.top_logprobs,
        truncate: r.truncate,
    };
    let http: ChatRequest = convert::http_request(&body)?;
    let model = r.model.clone();
    match chat::start(state, &http, started).await? {
        Started::LoadOnly(target) => {
            let reason = load_or_unload(state, &target).await?;
            Ok(single(pb::ChatResponse {
                model,
                message: assistant(String::new(), &[]),
                done: true,
                stats: Some(load_stats(reason, started)),
                ..Default::default()
            }))
        }
        Started::Reply(reply) => Ok(stream(reply, move |reply, said| {
            Some(match said {
                Said::Piece { output, tokens } => {
                    if output.is_empty() && !reply.logprobs() {
                        return None;
                    }
                    pb::ChatResponse {
                        model: model.clone(),
                        message: assistant(output.content, &output.calls),
                        logprobs: convert::logprobs(&tokens),
                        ..Default::default()
                    }
                }
                Said::Done { output, done } => pb::ChatResponse {
                    model: model.clone(),
                    message: assistant(output.content, &output.calls),
                    done: true,
                    stats: Some(stats(reply.summary(&done))),
                    logprobs: Vec::new(),
                },
                Said::Failed(_) => return None,
            })
        })),
    }
}

/// `Embed`.
pub async fn embed<B: Backend>(
    state: &AppState<B>,
    r: pb::EmbedRequest,
) -> Result<Response<pb::EmbedResponse>, Status> {
    let started = Instant::now();
    let body = HttpEmbed {
        model: &r.model,
        input: &r.input,
        truncate: r.truncate,
        dimensions: (r.dimensions > 0).then_some(r.dimensions),
        options: convert::options(r.options.as_ref()),
        keep_alive: convert::keep_alive(r.keep_alive.as_ref()),
    };
    let http: EmbedRequest = convert::http_request(&body)?;
    let embedded = embed::embed_inputs(state, http).await?;
    Ok(Response::new(pb::EmbedResponse {
        model: r.model,
        embeddings: embedded
            .embeddings
            .into_iter()
            .map(|values| pb::Embedding { values })
            .collect(),
        total_duration_ns: started.elapsed().as_nanos() as u64,
        load_duration_ns: embedded.load.as_nanos() as u64,
        prompt_eval_count: embedded.prompt_tokens,
    }))
}
