//! A complete JSON value read as tool calls, in the shapes models write them:
//! `{"name", "arguments"}` (Hermes, Mistral), `{"name", "parameters"}` (Llama 3, sometimes
//! with `"type": "function"`), `{"function": {...}}` (OpenAI's and Ollama's own), and a
//! list of these. Arguments written as a JSON string are decoded into the object.

use serde_json::{Map, Value};

use super::{FunctionCall, ToolCall};

/// Which names a call may have.
#[derive(Debug, Clone, Copy)]
pub enum Names<'a> {
    /// Any: the text was marked as a call (`<tool_call>`, `[TOOL_CALLS]`).
    Any,
    /// Only these tools': the JSON stood in plain text and might be an answer, not a call.
    Known(&'a [String]),
}

impl Names<'_> {
    fn allow(self, name: &str) -> bool {
        match self {
            Names::Any => !name.is_empty(),
            Names::Known(tools) => tools.iter().any(|t| t == name),
        }
    }
}

/// The calls `text` (one JSON object or list) holds, or `None` when it is not valid JSON
/// or not entirely calls.
pub fn calls(text: &str, names: Names<'_>) -> Option<Vec<ToolCall>> {
    let value: Value = serde_json::from_str(text).ok()?;
    match value {
        Value::Array(items) if !items.is_empty() => items
            .into_iter()
            .map(|item| match item {
                Value::Object(object) => call(object, names),
                _ => None,
            })
            .collect(),
        Value::Object(object) => call(object, names).map(|c| vec![c]),
        _ => None,
    }
}

/// One call from an object: its `name` and its `arguments` (or `parameters`), missing
/// arguments read as none.
fn call(mut object: Map<String, Value>, names: Names<'_>) -> Option<ToolCall> {
    if let Some(Value::Object(function)) = object.remove("function") {
        return call(function, names);
    }
    let Some(Value::String(name)) = object.remove("name") else {
        return None;
    };
    if !names.allow(&name) {
        return None;
    }
    let arguments = object
        .remove("arguments")
        .or_else(|| object.remove("parameters"));
    let arguments = match arguments {
        None | Some(Value::Null) => Map::new(),
        Some(value) => arguments_object(value)?,
    };
    Some(ToolCall {
        function: FunctionCall { name, arguments },
    })
}

/// Arguments as an object: the object itself, or a string holding one.
pub fn arguments_object(value: Value) -> Option<Map<String, Value>> {
    match value {
        Value::Object(arguments) => Some(arguments),
        Value::String(text) => match serde_json::from_str(&text).ok()? {
            Value::Object(arguments) => Some(arguments),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Names, calls};

    fn one(text: &str, names: Names<'_>) -> Option<serde_json::Value> {
        calls(text, names).map(|c| serde_json::to_value(c).unwrap())
    }

    #[test]
    fn the_shapes_models_write_are_read_as_calls() {
        let expected = json!([{"function": {"name": "f", "arguments": {"x": 1}}}]);
        for text in [
            r#"{"name": "f", "arguments": {"x": 1}}"#,
            r#"{"arguments": {"x": 1}, "name": "f"}"#,
            r#"{"type": "function", "name": "f", "parameters": {"x": 1}}"#,
            r#"{"name": "f", "arguments": "{\"x\": 1}"}"#,
            r#"{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}"#,
            r#"[{"name": "f", "arguments": {"x": 1}}]"#,
        ] {
            assert_eq!(one(text, Names::Any), Some(expected.clone()), "{text}");
        }
        assert_eq!(
            one(r#"{"name": "f"}"#, Names::Any),
            Some(json!([{"function": {"name": "f", "arguments": {}}}]))
        );
    }

    #[test]
    fn anything_else_is_not_a_call() {
        let known = ["f".to_string()];
        for text in [
            r#"{"name": "g", "arguments": {}}"#,
            r#"{"name": 3}"#,
            r#"{"city": "Paris"}"#,
            r#"{"name": "f", "arguments": [1]}"#,
            r#"{"name": "f", "arguments": "not json"}"#,
            r#"[]"#,
            r#"[{"name": "f"}, 2]"#,
            r#"{"name": "f", "#,
            r#"{"name": "f"} trailing"#,
        ] {
            assert_eq!(one(text, Names::Known(&known)), None, "{text}");
        }
        assert_eq!(one(r#"{"name": ""}"#, Names::Any), None);
    }
}
