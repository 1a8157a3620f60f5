//! The Jinja environment chat templates run in, set up as transformers sets up its
//! (`ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)` with
//! `loopcontrols`, `raise_exception`, `strftime_now` and a `json.dumps` `tojson`), plus
//! Python's string, dict and list methods and Python's spelling of `True`, `False` and
//! `None` in output.

use std::fmt::Write as _;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State};

use super::Message;

/// The message a template passed to `raise_exception`, carried as the error's source.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// A fresh environment with everything HF chat templates use.
pub(super) fn new() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(python_formatter);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", super::tojson::tojson);
    env
}

/// The message `raise_exception` was called with, if that is what ended the render.
pub(super) fn raised(e: &Error) -> Option<&str> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(Raised(message)) = err.downcast_ref::<Raised>() {
            return Some(message);
        }
        source = err.source();
    }
    None
}

fn raise_exception(message: Value) -> Result<Value, Error> {
    let message = match message.as_str() {
        Some(s) => s.to_owned(),
        None => message.to_string(),
    };
    Err(
        Error::new(ErrorKind::InvalidOperation, "raise_exception was called")
            .with_source(Raised(message)),
    )
}

/// The local time formatted by a C `strftime` format, as Python's `datetime.strftime`.
fn strftime_now(format: &str) -> Result<Value, Error> {
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: {format:?} is not a valid strftime format"),
        )
    })?;
    Ok(Value::from(out))
}

/// Prints values as Python's jinja2 does where minijinja differs: `True`, `False`, `None`.
fn python_formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    let text = match value.kind() {
        ValueKind::Bool if value.is_true() => "True",
        ValueKind::Bool => "False",
        ValueKind::None => "None",
        _ => return minijinja::escape_formatter(out, state, value),
    };
    out.write_str(text).map_err(Error::from)
}

/// The messages as the template sees them: maps whose keys keep the order of Ollama's
/// JSON (`role`, then `content`), so that `tojson` prints them as Python would.
pub(super) fn messages_value(messages: &[Message]) -> Value {
    messages
        .iter()
        .map(|m| Value::from_object(MessageValue(m.clone())))
        .collect()
}

#[derive(Debug)]
struct MessageValue(Message);

impl Object for MessageValue {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "role" => Some(Value::from(self.0.role.as_str())),
            "content" => Some(Value::from(self.0.content.as_str())),
            "tool_calls" => self.0.tool_calls.clone(),
            "tool_name" => self.0.tool_name.as_deref().map(Value::from),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match (&self.0.tool_calls, &self.0.tool_name) {
            (None, None) => Enumerator::Str(&["role", "content"]),
            (Some(_), None) => Enumerator::Str(&["role", "content", "tool_calls"]),
            (None, Some(_)) => Enumerator::Str(&["role", "content", "tool_name"]),
            (Some(_), Some(_)) => Enumerator::Str(&["role", "content", "tool_calls", "tool_name"]),
        }
    }
}
