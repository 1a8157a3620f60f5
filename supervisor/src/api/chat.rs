//! `POST /api/chat`: the next assistant message of a conversation, rendered through the
//! model's chat template, streamed as NDJSON or answered in one object.
//!
//! The template gets `messages` (with `tool_calls` and `tool_name` as the client sent
//! them) and `tools`. With tools, the calls the model writes are read out of its text into
//! `message.tool_calls`, in the syntax its template teaches (`crate::toolcall`). `format`
//! constrains the output to JSON (`api::format`). Thinking is not implemented yet:
//! `think: true` is refused, never ignored.

use tokio::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use minijinja::value::ValueKind;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::fit::fit;
use super::format::{self, FormatField};
use super::generate::{null_as_default, parse_body};
use super::models::Model;
use super::reply::{Reply, Shape, Started, Target, load_only};
use super::runner_options::generate_request;
use super::{ApiError, AppState};
use crate::sched::Backend;
use crate::template::{ChatTemplate, Message, OrderedJson};
use crate::toolcall::{Format, ToolCallParser};

/// The roles a message may have.
const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// The request body, in Ollama's field names.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub(super) model: String,
    #[serde(default)]
    pub(super) messages: Vec<ChatMessage>,
    pub(super) tools: Option<OrderedJson>,
    pub(super) stream: Option<bool>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub(super) options: Map<String, Value>,
    pub(super) keep_alive: Option<Value>,
    pub(super) format: FormatField,
    pub(super) think: Option<Value>,
    #[serde(default)]
    pub(super) logprobs: bool,
    #[serde(default)]
    pub(super) top_logprobs: u32,
    /// Drop the oldest messages when the conversation does not fit (default); false
    /// refuses it instead.
    pub(super) truncate: Option<bool>,
}

/// One message as Ollama's clients send it.
#[derive(Debug, Deserialize)]
pub(super) struct ChatMessage {
    pub(super) role: String,
    #[serde(default)]
    pub(super) content: String,
    #[serde(default)]
    pub(super) images: Vec<String>,
    pub(super) tool_calls: Option<OrderedJson>,
    pub(super) tool_name: Option<String>,
}

/// Fields Ollama has that this server does not implement yet, and messages no template
/// can take: refused with what to change.
fn check(r: &ChatRequest) -> Result<(), ApiError> {
    if r.think
        .as_ref()
        .is_some_and(|t| t != &Value::Bool(false) && !t.is_null())
    {
        return Err(ApiError::bad_request(
            "think: this model does not support thinking",
        ));
    }
    if r.tools
        .as_ref()
        .is_some_and(|t| !t.is_none() && t.kind() != ValueKind::Seq)
    {
        return Err(ApiError::bad_request(
            "tools must be a list of tool definitions",
        ));
    }
    for (i, m) in r.messages.iter().enumerate() {
        if !ROLES.contains(&m.role.as_str()) {
            return Err(ApiError::bad_request(format!(
                "messages[{i}]: unknown role {:?}: use system, user, assistant or tool",
                m.role
            )));
        }
        if !m.images.is_empty() {
            return Err(ApiError::bad_request(format!(
                "messages[{i}].images: this model cannot read images"
            )));
        }
    }
    Ok(())
}

/// The model's chat template, or a 400 saying how to get one.
fn template<'m>(model: &'m Model, name: &str) -> Result<&'m ChatTemplate, ApiError> {
    model.template.as_ref().ok_or_else(|| {
        ApiError::bad_request(format!(
            "{name} has no chat template: create it with a TEMPLATE, or send a raw prompt \
             to /api/generate"
        ))
    })
}

/// The conversation the template gets: the model's stored system message when the
/// conversation has none, the stored messages, then the request's.
fn conversation(model: &Model, r: &ChatRequest) -> Vec<Message> {
    let mut messages = Vec::with_capacity(r.messages.len() + 1);
    let has_system = r.messages.iter().any(|m| m.role == "system");
    let stored = model.resolved.system.as_ref().filter(|s| !s.is_empty());
    if let Some(system) = stored.filter(|_| !has_system) {
        messages.push(Message::new("system", system.clone()));
    }
    // The conversation stored with the model (Modelfile MESSAGE) comes first, as in Ollama.
    let history = model.resolved.messages.iter();
    messages.extend(history.map(|m| Message::new(m.role.clone(), m.content.clone())));
    messages.extend(r.messages.iter().map(|m| Message {
        role: m.role.clone(),
        content: m.content.clone(),
        tool_calls: m.tool_calls.clone().filter(|c| !c.is_none()),
        tool_name: m.tool_name.clone().filter(|n| !n.is_empty()),
    }));
    messages
}

/// The prompt for `messages` with the request's tools.
fn render(
    template: &ChatTemplate,
    r: &ChatRequest,
    messages: &[Message],
) -> Result<String, ApiError> {
    let tools = r
        .tools
        .as_ref()
        .filter(|t| t.kind() == ValueKind::Seq && t.len().is_some_and(|n| n > 0));
    Ok(template.render_with_tools(messages, tools, true)?)
}

/// The reader of the model's tool calls, for a request that offers tools: in the format
/// the model's template teaches, knowing the tools' names.
fn tool_calls(model: &Model, r: &ChatRequest) -> Option<ToolCallParser> {
    let tools = r
        .tools
        .as_ref()
        .filter(|t| t.len().is_some_and(|n| n > 0))?;
    let template = model.template.as_ref()?;
    let names = tools
        .try_iter()
        .ok()?
        .filter_map(|tool| {
            let name = tool.get_attr("function").ok()?.get_attr("name").ok()?;
            name.as_str().map(str::to_owned)
        })
        .collect();
    let format = Format::from_template(template.source());
    Some(ToolCallParser::new(format, names))
}

/// Checks `r`, renders its conversation through the model's template, fits it to the
/// context and starts the generation: everything `/api/chat` and `/v1/chat/completions`
/// share. `started` is when the request arrived.
pub(super) async fn start<B: Backend>(
    state: &AppState<B>,
    r: &ChatRequest,
    started: Instant,
) -> Result<Started<B>, ApiError> {
    check(r)?;
    let json_schema = format::json_schema(r.format.as_deref())?;
    let target = Target::resolve(state, &r.model, &r.options, r.keep_alive.as_ref()).await?;
    if r.messages.is_empty() {
        return Ok(Started::LoadOnly(target));
    }
    let template = template(&target.model, &r.model)?;
    let lease = state.sched.acquire(target.acquire()).await?;
    let (prompt, dropped) = fit(
        &conversation(&target.model, r),
        target.spec.settings.num_ctx as usize,
        r.truncate.unwrap_or(true),
        |messages| render(template, r, messages),
        &lease,
    )
    .await?;
    let mut job = generate_request(prompt, &target.options);
    job.logprobs = r.logprobs || r.top_logprobs > 0;
    job.top_logprobs = r.top_logprobs;
    job.json_schema = json_schema;
    let mut reply = Reply::on(lease, &r.model, &target, job, Shape::Chat, started)
        .await?
        .with_dropped(dropped);
    if let Some(parser) = tool_calls(&target.model, r) {
        reply = reply.with_tool_calls(parser);
    }
    Ok(Started::Reply(reply))
}

/// The handler.
pub async fn chat<B: Backend>(
    State(state): State<AppState<B>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let r: ChatRequest = parse_body(&body)?;
    match start(&state, &r, started).await? {
        Started::LoadOnly(target) => load_only(&state, &r.model, target, Shape::Chat).await,
        Started::Reply(reply) => reply.respond(r.stream.unwrap_or(true)).await,
    }
}
