//! The answers of `/v1/chat/completions`: one `chat.completion` object, or server-sent
//! `chat.completion.chunk` events (a first chunk with the role, content and tool-call
//! deltas, a last chunk with the finish reason, the usage chunk when asked, then
//! `[DONE]`). Both read the same [`Said`] events the Ollama route encodes as NDJSON.

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::OpenAiError;
use super::response::{FINGERPRINT, chat_logprobs, created, finish_reason, random_id, usage};
use super::sse::{self, EVENT_STREAM};
use crate::api::reply::{Reply, Said};
use crate::sched::Backend;
use crate::toolcall::ToolCall;

/// What every object of one answer shares.
pub struct Answer {
    id: String,
    model: String,
    created: i64,
    logprobs: bool,
}

/// `calls` in OpenAI's shape, numbered from `first`: `arguments` as a JSON string and a
/// fresh `call_` id each.
fn tool_calls(calls: &[ToolCall], first: usize) -> Vec<Value> {
    calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            json!({
                "index": first + i,
                "id": random_id("call_"),
                "type": "function",
                "function": {
                    "name": call.function.name,
                    "arguments": Value::Object(call.function.arguments.clone()).to_string(),
                },
            })
        })
        .collect()
}

impl Answer {
    /// An answer from `model` (the name the client sent); `logprobs` when they were asked.
    pub fn new(model: String, logprobs: bool) -> Self {
        Self {
            id: random_id("chatcmpl-"),
            model,
            created: created(),
            logprobs,
        }
    }

    /// One object with the whole message.
    pub async fn whole<B: Backend>(self, mut reply: Reply<B>) -> Result<Response, OpenAiError> {
        let (said, tokens, done) = reply.gather().await?;
        let called = !said.calls.is_empty();
        let mut message = json!({"role": "assistant", "content": said.content});
        if called {
            if said.content.is_empty() {
                message["content"] = Value::Null;
            }
            let mut calls = tool_calls(&said.calls, 0);
            calls.iter_mut().for_each(|c| {
                c.as_object_mut().map(|o| o.remove("index"));
            });
            message["tool_calls"] = calls.into();
        }
        let logprobs = match self.logprobs {
            true => chat_logprobs(&tokens),
            false => Value::Null,
        };
        let body = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": finish_reason(&done, called),
            }],
            "usage": usage(&done),
        });
        Ok(axum::Json(body).into_response())
    }

    /// A chunk with `choices`; with `usage` on, every chunk has a `usage` (null but in the
    /// last), as OpenAI sends them.
    fn chunk(&self, choices: Value, usage: Option<Value>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": FINGERPRINT,
            "choices": choices,
        });
        if let Some(usage) = usage {
            chunk["usage"] = usage;
        }
        chunk
    }

    /// A chunk whose one choice has `delta`.
    fn delta(&self, delta: Value, logprobs: Value, finish: Option<&str>, usage: bool) -> Value {
        let choice = json!({
            "index": 0,
            "delta": delta,
            "logprobs": logprobs,
            "finish_reason": finish,
        });
        self.chunk(json!([choice]), usage.then_some(Value::Null))
    }

    /// The answer as server-sent events; `include_usage` adds the usage chunk.
    pub fn streamed<B: Backend>(self, reply: Reply<B>, include_usage: bool) -> Response {
        let mut calls_sent = 0;
        let mut first = true;
        reply.stream_as(EVENT_STREAM, move |_, said| {
            let mut out = Vec::new();
            if first {
                first = false;
                let role = json!({"role": "assistant", "content": ""});
                sse::push(&mut out, &self.delta(role, Value::Null, None, include_usage));
            }
            let (output, tokens, done) = match said {
                Said::Piece { output, tokens } => (output, tokens, None),
                Said::Done { output, done } => (output, Vec::new(), Some(done)),
                Said::Failed(error) => {
                    tracing::warn!(model = %self.model, message = %error.message(), "generation failed");
                    sse::push(&mut out, &OpenAiError::from(error).body());
                    return Some(out);
                }
            };
            let with_logprobs = self.logprobs && !tokens.is_empty();
            if !output.is_empty() || with_logprobs {
                let mut delta = json!({"content": output.content});
                if !output.calls.is_empty() {
                    if output.content.is_empty() {
                        delta["content"] = Value::Null;
                    }
                    delta["tool_calls"] = tool_calls(&output.calls, calls_sent).into();
                    calls_sent += output.calls.len();
                }
                let logprobs = match with_logprobs {
                    true => chat_logprobs(&tokens),
                    false => Value::Null,
                };
                sse::push(&mut out, &self.delta(delta, logprobs, None, include_usage));
            }
            if let Some(done) = done {
                let reason = finish_reason(&done, calls_sent > 0);
                let last = self.delta(json!({}), Value::Null, Some(reason), include_usage);
                sse::push(&mut out, &last);
                if include_usage {
                    sse::push(&mut out, &self.chunk(json!([]), Some(usage(&done))));
                }
                out.extend_from_slice(sse::DONE);
            }
            (!out.is_empty()).then_some(out)
        })
    }
}
