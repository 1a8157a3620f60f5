//! Tool calls parsed out of the text a model generates, so `/api/chat` answers with
//! `message.tool_calls` (`[{"function": {"name", "arguments": {...}}}]`) as Ollama does.
//!
//! Models write their calls as text in a format their chat template taught them:
//!
//! | format | the model writes | chosen when the template has |
//! | --- | --- | --- |
//! | [`Format::Hermes`] (Hermes, Qwen 2.5/3) | `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` | `<tool_call>` |
//! | [`Format::Mistral`] | `[TOOL_CALLS] [{"name": ..., "arguments": {...}}]`, or `[TOOL_CALLS]name[ARGS]{...}` | `[TOOL_CALLS]` |
//! | [`Format::Llama3`] | `{"name": ..., "parameters": {...}}`, maybe after `<\|python_tag\|>`, several joined by `;` | `<\|python_tag\|>`, or Llama 3 headers with `parameters` |
//! | [`Format::Json`] | a bare JSON object naming a tool | none of these |
//!
//! [`ToolCallParser`] is fed the text as it streams and says, for every piece, which text
//! is the answer's content and which calls are complete; a possible call is held back until
//! it is known to be one or not. Text before a call stays content (Ollama drops it: its
//! issue #7014). The parser is pure: no I/O, no clock, the same result however the text is
//! cut into pieces.

mod decode;
mod hermes;
mod json;
mod llama3;
mod mistral;
mod parser;
mod scan;

#[cfg(test)]
mod testing;

pub use parser::ToolCallParser;

use serde::Serialize;
use serde_json::{Map, Value};

/// How a model writes its tool calls; chosen from its chat template with
/// [`Format::from_template`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `<tool_call>{json}</tool_call>`: NousResearch's Hermes, Qwen 2.5 and 3.
    Hermes,
    /// Llama 3.1-3.3: a JSON object with `parameters`, maybe after `<|python_tag|>`.
    Llama3,
    /// Mistral: `[TOOL_CALLS]` then a JSON list of calls, or `name[ARGS]{json}`.
    Mistral,
    /// A JSON object naming a tool, for templates with no call syntax of their own.
    Json,
}

impl Format {
    /// The format `source` (a chat template, Jinja or Go) teaches its model: recognised by
    /// the markers it writes for calls, else [`Format::Json`].
    pub fn from_template(source: &str) -> Self {
        if source.contains("<tool_call>") {
            Self::Hermes
        } else if source.contains("[TOOL_CALLS]") {
            Self::Mistral
        } else if source.contains("<|python_tag|>")
            || (source.contains("<|start_header_id|>") && source.contains("parameters"))
        {
            Self::Llama3
        } else {
            Self::Json
        }
    }
}

/// One call a model made, serialized in Ollama's shape: `{"function": {"name", "arguments"}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolCall {
    /// The function called.
    pub function: FunctionCall,
}

/// The function of a [`ToolCall`]: which tool, with what arguments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionCall {
    /// The tool's name as the model wrote it.
    pub name: String,
    /// The arguments, always a JSON object (a model's string-encoded arguments are decoded).
    pub arguments: Map<String, Value>,
}

/// What a piece of generated text turned out to be: content to pass on, and the calls
/// completed in it, in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// Text for `message.content`.
    pub content: String,
    /// Calls for `message.tool_calls`.
    pub calls: Vec<ToolCall>,
}

impl Output {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.content.is_empty() && self.calls.is_empty()
    }

    /// Appends `other` (the output of later text) to this one.
    pub fn append(&mut self, other: Output) {
        self.content.push_str(&other.content);
        self.calls.extend(other.calls);
    }
}

#[cfg(test)]
mod tests {
    use super::Format;

    #[test]
    fn the_format_is_read_from_the_template() {
        let cases = [
            (
                "{% for tool in tools %}<tool_call>{{ tool | tojson }}</tool_call>{% endfor %}",
                Format::Hermes,
            ),
            (
                "{{- '[AVAILABLE_TOOLS] ' + tools|tojson + '[/AVAILABLE_TOOLS]' }}[TOOL_CALLS] ",
                Format::Mistral,
            ),
            (
                "{{- '<|python_tag|>' + tool_call.name + '.call(' }}",
                Format::Llama3,
            ),
            (
                "<|start_header_id|>user<|end_header_id|>\n\n{\"name\": function name, \
                 \"parameters\": dictionary of argument name and its value}",
                Format::Llama3,
            ),
            (
                "{{ if .ToolCalls }}<tool_call>\n{\"name\": \"{{ .Function.Name }}\"}\n</tool_call>{{ end }}",
                Format::Hermes,
            ),
            (
                "<|start_header_id|>user<|end_header_id|>{{ content }}",
                Format::Json,
            ),
            (
                "{% for m in messages %}{{ m.content }}{% endfor %}",
                Format::Json,
            ),
        ];
        for (template, format) in cases {
            assert_eq!(Format::from_template(template), format, "{template}");
        }
    }
}
