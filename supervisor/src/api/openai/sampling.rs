//! The sampling fields every OpenAI generation request shares, translated into Ollama's
//! `options`, and the extensions this server takes on `/v1` (`options`, `keep_alive`).
//!
//! Only the fields the request sets are written, over the request's own `options`: a
//! model's stored parameters stay in force for everything else (Ollama overrides them
//! with OpenAI's defaults: its issue #18575).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::OpenAiError;
use crate::api::generate::null_as_default;

/// The fields, read from the body beside the route's own (serde ignores the rest).
#[derive(Debug, Deserialize)]
pub struct Sampling {
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<i64>,
    /// OpenAI's newer name for `max_tokens`; it wins when both are set.
    max_completion_tokens: Option<i64>,
    stop: Option<Stop>,
    seed: Option<i64>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    n: Option<i64>,
    /// Ollama's options (the extension): `num_ctx`, `kv_cache_type`, ...
    #[serde(default, deserialize_with = "null_as_default")]
    options: Map<String, Value>,
    /// Ollama's `keep_alive` (an extension).
    keep_alive: Option<Value>,
}

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Sampling {
    /// Ollama's options map: the body's `options`, under the OpenAI fields it sets. One
    /// choice only: `n` above 1 is a 400.
    pub fn options(&self) -> Result<Map<String, Value>, OpenAiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(OpenAiError::invalid(
                "n",
                "n must be 1: this server generates one choice per request",
            ));
        }
        let mut options = self.options.clone();
        let mut set = |name: &str, value: Option<Value>| {
            if let Some(value) = value {
                options.insert(name.to_owned(), value);
            }
        };
        set("temperature", self.temperature.map(Value::from));
        set("top_p", self.top_p.map(Value::from));
        let limit = self.max_completion_tokens.or(self.max_tokens);
        set("num_predict", limit.map(Value::from));
        set("seed", self.seed.map(Value::from));
        set("frequency_penalty", self.frequency_penalty.map(Value::from));
        set("presence_penalty", self.presence_penalty.map(Value::from));
        let stop = self.stop.as_ref().map(|stop| match stop {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(list) => list.clone(),
        });
        set("stop", stop.map(Value::from));
        Ok(options)
    }

    /// The request's `keep_alive`, if it had one.
    pub fn keep_alive(&self) -> Option<Value> {
        self.keep_alive.clone()
    }
}

/// The most alternatives per token OpenAI allows (and the runner reports).
const MAX_TOP_LOGPROBS: u32 = 20;

/// The alternatives per token the request asks for in `param`, checked here so that the
/// 400 names OpenAI's field (the runner's refusal would name its own).
pub fn top_logprobs(param: &'static str, asked: Option<u32>) -> Result<u32, OpenAiError> {
    let n = asked.unwrap_or(0);
    if n > MAX_TOP_LOGPROBS {
        return Err(OpenAiError::invalid(
            param,
            format!("{param} must be between 0 and {MAX_TOP_LOGPROBS}"),
        ));
    }
    Ok(n)
}
