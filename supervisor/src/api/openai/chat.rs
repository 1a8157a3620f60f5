//! `POST /v1/chat/completions`: an OpenAI chat request translated into the request
//! `/api/chat` serves (the same checks, template, context fit, tool-call reader and
//! constrained sampler), answered as a `chat.completion` or a stream of
//! `chat.completion.chunk` events (`chat_answer.rs`).
//!
//! What is translated:
//! - messages: `developer` is `system`; content may be a list of text parts; an
//!   assistant's `tool_calls` carry `function.arguments` as a JSON string, decoded for the
//!   template; a `tool` message's `tool_call_id` names the tool it answers;
//! - `tool_choice`: `none` offers no tools, `auto` and `required` offer them all, a named
//!   function offers only that one. The model is never forced to call one;
//! - `response_format`: `json_object` is Ollama's `"json"`, `json_schema` its schema.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::chat_answer;
use super::error::OpenAiError;
use super::sampling::{self, Sampling};
use crate::api::AppState;
use crate::api::chat::{ChatMessage, ChatRequest, start};
use crate::api::generate::parse_body;
use crate::api::reply::Started;
use crate::sched::Backend;
use crate::template::OrderedJson;

/// The route's own fields (the sampling ones are read apart: [`Sampling`]).
#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: String,
    #[serde(default)]
    messages: Vec<OpenAiMessage>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    tools: Option<OrderedJson>,
    tool_choice: Option<Value>,
    response_format: Option<ResponseFormat>,
    logprobs: Option<bool>,
    top_logprobs: Option<u32>,
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct StreamOptions {
    /// Send a last chunk with the usage and no choices.
    #[serde(default)]
    pub(super) include_usage: bool,
}

/// A message in OpenAI's shape.
#[derive(Debug, Deserialize)]
struct OpenAiMessage {
    role: String,
    content: Option<Content>,
    tool_calls: Option<Vec<CallIn>>,
    tool_call_id: Option<String>,
    name: Option<String>,
}

/// `content`: text, or a list of parts of which only text ones are read.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

/// One part of a message's content.
#[derive(Debug, Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

/// A call an assistant made, as the client sends it back.
#[derive(Debug, Deserialize)]
struct CallIn {
    id: Option<String>,
    function: FunctionIn,
}

/// A call's function: `arguments` is a JSON string per OpenAI (an object is taken too).
#[derive(Debug, Deserialize)]
struct FunctionIn {
    name: String,
    arguments: Option<Box<RawValue>>,
}

/// `response_format`.
#[derive(Debug, Deserialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: String,
    json_schema: Option<JsonSchema>,
}

/// `response_format.json_schema`: the schema is kept raw, in the client's key order.
#[derive(Debug, Deserialize)]
struct JsonSchema {
    schema: Option<Box<RawValue>>,
}

/// The text of `content`; an image or audio part is a 400.
fn text(content: Option<Content>, i: usize) -> Result<String, OpenAiError> {
    match content {
        None => Ok(String::new()),
        Some(Content::Text(text)) => Ok(text),
        Some(Content::Parts(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for part in parts {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(text)) => texts.push(text),
                    (kind, _) => {
                        return Err(OpenAiError::invalid(
                            "messages",
                            format!(
                                "messages[{i}]: content parts of type {kind:?} are not supported: send text"
                            ),
                        ));
                    }
                }
            }
            Ok(texts.join("\n"))
        }
    }
}

/// The arguments as the template gets them: the decoded object in the client's order; a
/// string that is not JSON stays a string.
fn arguments(raw: Option<&RawValue>) -> Result<OrderedJson, serde_json::Error> {
    let Some(raw) = raw else {
        return Ok(std::iter::empty::<(String, OrderedJson)>().collect());
    };
    if raw.get().trim_start().starts_with('"') {
        let text: String = serde_json::from_str(raw.get())?;
        return Ok(serde_json::from_str(&text).unwrap_or_else(|_| OrderedJson::from(text)));
    }
    serde_json::from_str(raw.get())
}

/// The calls in Ollama's shape (`[{"id", "function": {"name", "arguments": {...}}}]`),
/// recording each id's tool name for the tool messages that answer them.
fn calls(
    calls: Vec<CallIn>,
    i: usize,
    names: &mut HashMap<String, String>,
) -> Result<OrderedJson, OpenAiError> {
    let mut out = Vec::with_capacity(calls.len());
    for call in calls {
        let args = arguments(call.function.arguments.as_deref()).map_err(|e| {
            OpenAiError::invalid(
                "messages",
                format!("messages[{i}].tool_calls: arguments are not JSON: {e}"),
            )
        })?;
        let function: OrderedJson = [
            ("name", OrderedJson::from(call.function.name.clone())),
            ("arguments", args),
        ]
        .into_iter()
        .collect();
        let mut entry = Vec::with_capacity(2);
        if let Some(id) = call.id {
            entry.push(("id", OrderedJson::from(id.clone())));
            names.insert(id, call.function.name);
        }
        entry.push(("function", function));
        out.push(entry.into_iter().collect::<OrderedJson>());
    }
    Ok(OrderedJson::from(out))
}

/// The conversation in Ollama's shape.
fn messages(messages: Vec<OpenAiMessage>) -> Result<Vec<ChatMessage>, OpenAiError> {
    let mut names = HashMap::new();
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "developer" => "system".to_owned(),
            _ => m.role,
        };
        let tool_calls = match m.tool_calls {
            Some(list) if !list.is_empty() => Some(calls(list, i, &mut names)?),
            _ => None,
        };
        let tool_name = m
            .tool_call_id
            .as_ref()
            .and_then(|id| names.get(id).cloned())
            .or(m.name.filter(|_| role == "tool"));
        out.push(ChatMessage {
            role,
            content: text(m.content, i)?,
            images: Vec::new(),
            tool_calls,
            tool_name,
        });
    }
    Ok(out)
}

/// The tools to offer for `tool_choice`.
fn offered(
    tools: Option<OrderedJson>,
    choice: Option<&Value>,
) -> Result<Option<OrderedJson>, OpenAiError> {
    let name_of = |tool: &OrderedJson| {
        let name = tool.get_attr("function").ok()?.get_attr("name").ok()?;
        name.as_str().map(str::to_owned)
    };
    match choice {
        None | Some(Value::Null) => Ok(tools),
        Some(Value::String(s)) if s == "auto" || s == "required" => Ok(tools),
        Some(Value::String(s)) if s == "none" => Ok(None),
        Some(Value::Object(o)) => {
            let wanted = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    OpenAiError::invalid("tool_choice", "tool_choice.function.name is required")
                })?;
            let list = tools.as_ref().and_then(|t| t.try_iter().ok());
            let chosen: Vec<OrderedJson> = list
                .into_iter()
                .flatten()
                .filter(|tool| name_of(tool).as_deref() == Some(wanted))
                .collect();
            if chosen.is_empty() {
                return Err(OpenAiError::invalid(
                    "tool_choice",
                    format!("tool_choice names {wanted:?}, which is not in tools"),
                ));
            }
            Ok(Some(OrderedJson::from(chosen)))
        }
        Some(other) => Err(OpenAiError::invalid(
            "tool_choice",
            format!("tool_choice {other} is not one of none, auto, required or a function"),
        )),
    }
}

/// Ollama's `format` for `response_format`.
fn format(rf: Option<ResponseFormat>) -> Result<Option<Box<RawValue>>, OpenAiError> {
    let Some(rf) = rf else { return Ok(None) };
    let bad = |message: &str| OpenAiError::invalid("response_format", message);
    match rf.kind.as_str() {
        "text" => Ok(None),
        "json_object" => RawValue::from_string("\"json\"".to_owned())
            .map(Some)
            .map_err(|e| bad(&e.to_string())),
        "json_schema" => match rf.json_schema.and_then(|s| s.schema) {
            Some(schema) => Ok(Some(schema)),
            None => Err(bad("response_format json_schema needs json_schema.schema")),
        },
        other => Err(bad(&format!(
            "response_format type {other:?} is not one of text, json_object or json_schema"
        ))),
    }
}

/// The handler.
pub async fn chat_completions<B: Backend>(
    State(state): State<AppState<B>>,
    body: Bytes,
) -> Result<Response, OpenAiError> {
    let started = Instant::now();
    let r: CompletionRequest = parse_body(&body)?;
    let sampling: Sampling = parse_body(&body)?;
    if r.messages.is_empty() {
        return Err(OpenAiError::invalid(
            "messages",
            "messages must not be empty",
        ));
    }
    let top_logprobs = sampling::top_logprobs("top_logprobs", r.top_logprobs)?;
    let request = ChatRequest {
        model: r.model,
        messages: messages(r.messages)?,
        tools: offered(r.tools, r.tool_choice.as_ref())?,
        stream: r.stream,
        options: sampling.options()?,
        keep_alive: sampling.keep_alive(),
        format: format(r.response_format)?,
        think: None,
        logprobs: r.logprobs.unwrap_or(false),
        top_logprobs,
        truncate: None,
    };
    let reply = match start(&state, &request, started).await? {
        Started::Reply(reply) => reply,
        // Not reached: the messages were checked above.
        Started::LoadOnly(_) => {
            return Err(OpenAiError::invalid(
                "messages",
                "messages must not be empty",
            ));
        }
    };
    let answer = chat_answer::Answer::new(request.model, request.logprobs || top_logprobs > 0);
    if r.stream.unwrap_or(false) {
        let usage = r.stream_options.unwrap_or_default().include_usage;
        Ok(answer.streamed(reply, usage))
    } else {
        answer.whole(reply).await
    }
}
