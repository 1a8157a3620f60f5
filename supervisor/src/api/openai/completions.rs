//! `POST /v1/completions`: OpenAI's legacy text completion, translated into the request
//! `/api/generate` serves. As in Ollama, the prompt goes through the model's template
//! (`raw: true`, an extension, sends it as written), and `suffix` asks for the text
//! between the two. One prompt per request; `echo` is not supported.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::chat::StreamOptions;
use super::error::OpenAiError;
use super::response::{FINGERPRINT, completion_logprobs, created, finish_reason, random_id, usage};
use super::sampling::{self, Sampling};
use super::sse::{self, EVENT_STREAM};
use crate::api::AppState;
use crate::api::generate::{GenerateRequest, parse_body, start};
use crate::api::reply::{Reply, Said, Started};
use crate::sched::Backend;

/// The route's own fields (the sampling ones are read apart: [`Sampling`]).
#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: String,
    prompt: Option<Prompt>,
    #[serde(default)]
    suffix: Option<String>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    echo: bool,
    /// How many alternatives per token to report (0: only the sampled token's).
    logprobs: Option<u32>,
    /// Ours: send the prompt as written, without the template.
    #[serde(default)]
    raw: bool,
}

/// `prompt`: a string, or a list of one.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Prompt {
    One(String),
    Many(Vec<String>),
}

/// The one prompt of the request, or a 400.
fn prompt(p: Option<Prompt>) -> Result<String, OpenAiError> {
    let text = match p {
        Some(Prompt::One(text)) => text,
        Some(Prompt::Many(mut list)) if list.len() == 1 => list.remove(0),
        Some(Prompt::Many(_)) => {
            return Err(OpenAiError::invalid(
                "prompt",
                "prompt must be one string: send one request per prompt",
            ));
        }
        None => String::new(),
    };
    if text.is_empty() {
        return Err(OpenAiError::invalid("prompt", "prompt is required"));
    }
    Ok(text)
}

/// What every object of one answer shares.
struct Answer {
    id: String,
    model: String,
    created: i64,
    logprobs: bool,
}

impl Answer {
    /// An object with one choice of `text`.
    fn object(&self, text: &str, logprobs: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{
                "text": text,
                "index": 0,
                "logprobs": logprobs,
                "finish_reason": finish,
            }],
        })
    }

    async fn whole<B: Backend>(self, mut reply: Reply<B>) -> Result<Response, OpenAiError> {
        let (said, tokens, done) = reply.gather().await?;
        let logprobs = match self.logprobs {
            true => completion_logprobs(&tokens, 0),
            false => Value::Null,
        };
        let mut body = self.object(&said.content, logprobs, Some(finish_reason(&done, false)));
        body["usage"] = usage(&done);
        Ok(axum::Json(body).into_response())
    }

    fn streamed<B: Backend>(self, reply: Reply<B>, include_usage: bool) -> Response {
        let mut offset = 0;
        reply.stream_as(EVENT_STREAM, move |_, said| {
            let mut out = Vec::new();
            match said {
                Said::Piece { output, tokens } => {
                    let scored = self.logprobs && !tokens.is_empty();
                    if output.content.is_empty() && !scored {
                        return None;
                    }
                    let logprobs = match self.logprobs {
                        true => completion_logprobs(&tokens, offset),
                        false => Value::Null,
                    };
                    offset += output.content.len();
                    sse::push(&mut out, &self.object(&output.content, logprobs, None));
                }
                Said::Done { output, done } => {
                    let reason = finish_reason(&done, false);
                    let last = self.object(&output.content, Value::Null, Some(reason));
                    sse::push(&mut out, &last);
                    if include_usage {
                        let mut chunk = self.object("", Value::Null, None);
                        chunk["choices"] = json!([]);
                        chunk["usage"] = usage(&done);
                        sse::push(&mut out, &chunk);
                    }
                    out.extend_from_slice(sse::DONE);
                }
                Said::Failed(error) => {
                    tracing::warn!(model = %self.model, message = %error.message(), "generation failed");
                    sse::push(&mut out, &OpenAiError::from(error).body());
                }
            }
            Some(out)
        })
    }
}

/// The handler.
pub async fn completions<B: Backend>(
    State(state): State<AppState<B>>,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let started = Instant::now();
    let r: CompletionRequest = parse_body(&body)?;
    let sampling: Sampling = parse_body(&body)?;
    if r.echo {
        return Err(OpenAiError::invalid("echo", "echo is not supported"));
    }
    let top_logprobs = sampling::top_logprobs("logprobs", r.logprobs)?;
    let request = GenerateRequest {
        model: r.model.clone(),
        prompt: prompt(r.prompt)?,
        suffix: r.suffix.unwrap_or_default(),
        system: None,
        template: None,
        raw: r.raw,
        stream: r.stream,
        options: sampling.options()?,
        keep_alive: sampling.keep_alive(),
        context: Vec::new(),
        format: None,
        images: Vec::new(),
        think: None,
        logprobs: r.logprobs.is_some(),
        top_logprobs,
    };
    let reply = match start(&state, request, started).await? {
        Started::Reply(reply) => reply,
        // Not reached: the prompt was checked above.
        Started::LoadOnly(_) => return Err(OpenAiError::invalid("prompt", "prompt is required")),
    };
    let answer = Answer {
        id: random_id("cmpl-"),
        model: r.model,
        created: created(),
        logprobs: r.logprobs.is_some(),
    };
    if r.stream.unwrap_or(false) {
        let usage = r.stream_options.unwrap_or_default().include_usage;
        Ok(answer.streamed(reply, usage))
    } else {
        answer.whole(reply).await
    }
}
