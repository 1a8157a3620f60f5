//! gRPC requests turned into the HTTP routes' requests, so that both run through the
//! same parsing and checks.
//!
//! The translation writes the HTTP route's JSON body and parses it with the route's own
//! parser: a bad value gets the HTTP API's error message, naming the field as in
//! Ollama's JSON. Schemas and tool arguments stay raw JSON text all the way, so their
//! key order reaches the template and the constrained sampler as the client wrote it.

use axum::body::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use tonic::Status;

use super::status::invalid;
use crate::api::generate::parse_body;
use crate::toolcall::ToolCall;
use ollama_proto::ollama as pb;
use ollama_proto::runner as runner_pb;

/// The `options` object of an HTTP request.
pub fn options(options: Option<&pb::Options>) -> Map<String, Value> {
    let mut map = Map::new();
    let Some(o) = options else {
        return map;
    };
    macro_rules! put {
        ($($field:ident),* $(,)?) => {
            $(if let Some(value) = &o.$field {
                map.insert(stringify!($field).to_owned(), json!(value));
            })*
        };
    }
    put!(
        num_ctx,
        num_batch,
        num_thread,
        num_keep,
        use_mmap,
        num_gpu,
        main_gpu,
        num_parallel,
        flash_attention,
        kv_cache_type,
        kv_cache_type_k,
        kv_cache_type_v,
        numerics,
        num_predict,
        temperature,
        top_k,
        top_p,
        min_p,
        typical_p,
        repeat_last_n,
        repeat_penalty,
        presence_penalty,
        frequency_penalty,
        seed,
    );
    if !o.stop.is_empty() {
        map.insert("stop".to_owned(), json!(o.stop));
    }
    map
}

/// The `keep_alive` value of an HTTP request: seconds, or -1 for ever.
pub fn keep_alive(keep_alive: Option<&pb::KeepAlive>) -> Option<Value> {
    match keep_alive?.keep_alive? {
        pb::keep_alive::KeepAlive::Seconds(seconds) => Some(json!(seconds)),
        pb::keep_alive::KeepAlive::Forever(true) => Some(json!(-1)),
        pb::keep_alive::KeepAlive::Forever(false) => None,
    }
}

/// `text`, which a field says is JSON, as raw JSON; INVALID_ARGUMENT naming `field`.
pub fn raw_json(field: &str, text: &str) -> Result<Box<RawValue>, Status> {
    RawValue::from_string(text.to_owned())
        .map_err(|e| invalid(format!("{field} is not valid JSON: {e}")))
}

/// `format` as the HTTP field: absent, the string "json", or a schema.
pub fn format(format: &str) -> Result<Option<Box<RawValue>>, Status> {
    match format.trim() {
        "" => Ok(None),
        "json" => Ok(Some(raw_json("format", "\"json\"")?)),
        schema => raw_json("format (\"json\" or a JSON schema)", schema).map(Some),
    }
}

/// Parses `body` (an HTTP request built by this module) as the route's request type.
pub fn http_request<T: DeserializeOwned>(body: &impl Serialize) -> Result<T, Status> {
    let text =
        serde_json::to_vec(body).map_err(|e| Status::internal(format!("encoding failed: {e}")))?;
    Ok(parse_body(&Bytes::from(text))?)
}

/// A tool for the chat template: `{"type": "function", "function": {...}}`.
#[derive(Serialize)]
pub struct HttpTool {
    #[serde(rename = "type")]
    kind: &'static str,
    function: HttpFunction,
}

/// A tool's function, its schema raw.
#[derive(Serialize)]
struct HttpFunction {
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Box<RawValue>>,
}

/// The request's tools in the HTTP shape.
pub fn tools(tools: &[pb::Tool]) -> Result<Vec<HttpTool>, Status> {
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let f = tool
                .function
                .as_ref()
                .ok_or_else(|| invalid(format!("tools[{i}].function is required")))?;
            if f.name.trim().is_empty() {
                return Err(invalid(format!("tools[{i}].function.name is required")));
            }
            let parameters = match f.parameters.trim() {
                "" => None,
                text => Some(raw_json(&format!("tools[{i}].function.parameters"), text)?),
            };
            Ok(HttpTool {
                kind: "function",
                function: HttpFunction {
                    name: f.name.clone(),
                    description: f.description.clone(),
                    parameters,
                },
            })
        })
        .collect()
}

/// A message in the HTTP shape, its calls' arguments raw.
#[derive(Serialize)]
pub struct HttpMessage<'a> {
    role: &'a str,
    content: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<Value>,
    #[serde(skip_serializing_if = "str::is_empty")]
    tool_name: &'a str,
}

/// The conversation in the HTTP shape.
pub fn messages(messages: &[pb::Message]) -> Result<Vec<HttpMessage<'_>>, Status> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let tool_calls = m
                .tool_calls
                .iter()
                .enumerate()
                .map(|(j, call)| {
                    let field = format!("messages[{i}].tool_calls[{j}].arguments");
                    let arguments = match call.arguments.trim() {
                        "" => Value::Object(Map::new()),
                        text => serde_json::from_str(text)
                            .map_err(|e| invalid(format!("{field} is not valid JSON: {e}")))?,
                    };
                    Ok(json!({ "function": { "name": call.name, "arguments": arguments } }))
                })
                .collect::<Result<Vec<_>, Status>>()?;
            Ok(HttpMessage {
                role: &m.role,
                content: &m.content,
                tool_calls,
                tool_name: &m.tool_name,
            })
        })
        .collect()
}

/// The model's calls as the gRPC API returns them.
pub fn tool_calls(calls: &[ToolCall]) -> Vec<pb::ToolCall> {
    calls
        .iter()
        .map(|call| pb::ToolCall {
            name: call.function.name.clone(),
            arguments: Value::Object(call.function.arguments.clone()).to_string(),
        })
        .collect()
}

/// The runner's per-token log-probabilities as the gRPC API returns them.
pub fn logprobs(tokens: &[runner_pb::TokenInfo]) -> Vec<pb::TokenLogprob> {
    tokens
        .iter()
        .map(|t| pb::TokenLogprob {
            token: t.text.clone(),
            logprob: f64::from(t.logprob.unwrap_or(0.0)),
            top_logprobs: t
                .top_logprobs
                .iter()
                .map(|c| pb::TokenAlternative {
                    token: c.text.clone(),
                    logprob: f64::from(c.logprob),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_keep_only_what_is_set() {
        let o = pb::Options {
            num_ctx: Some(4096),
            kv_cache_type: Some("q8_0".into()),
            temperature: Some(0.5),
            stop: vec!["\n".into()],
            ..Default::default()
        };
        let map = options(Some(&o));
        assert_eq!(
            Value::Object(map),
            json!({"num_ctx": 4096, "kv_cache_type": "q8_0", "temperature": 0.5, "stop": ["\n"]})
        );
        assert!(options(None).is_empty());
    }

    #[test]
    fn keep_alive_seconds_forever_and_default() {
        let ka = |k| pb::KeepAlive { keep_alive: k };
        use pb::keep_alive::KeepAlive as K;
        assert_eq!(
            keep_alive(Some(&ka(Some(K::Seconds(0.0))))),
            Some(json!(0.0))
        );
        assert_eq!(
            keep_alive(Some(&ka(Some(K::Forever(true))))),
            Some(json!(-1))
        );
        assert_eq!(keep_alive(Some(&ka(None))), None);
        assert_eq!(keep_alive(None), None);
    }

    #[test]
    fn format_keeps_schemas_raw_and_refuses_bad_json() {
        assert!(format("").unwrap().is_none());
        assert_eq!(format("json").unwrap().unwrap().get(), "\"json\"");
        let schema = r#"{"type":"object","properties":{"b":{},"a":{}}}"#;
        assert_eq!(format(schema).unwrap().unwrap().get(), schema);
        let error = format("{not json").unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(error.message().contains("format"), "{}", error.message());
    }

    #[test]
    fn tool_arguments_must_be_json() {
        let message = pb::Message {
            role: "assistant".into(),
            tool_calls: vec![pb::ToolCall {
                name: "f".into(),
                arguments: "{oops".into(),
            }],
            ..Default::default()
        };
        let error = messages(std::slice::from_ref(&message)).err().unwrap();
        assert!(
            error
                .message()
                .contains("messages[0].tool_calls[0].arguments"),
            "{}",
            error.message()
        );
    }
}
