//! Llama 3.1-3.3: the call is the message, a JSON object with `parameters`
//! (`{"name": ..., "parameters": {...}}`, 3.2 adds `"type": "function"`), sometimes after
//! `<|python_tag|>`, several joined by `;`. Untagged JSON counts as a call only when it
//! names one of the request's tools.

use super::parser::Syntax;

/// The markers of [`super::Format::Llama3`].
pub static SYNTAX: Syntax = Syntax {
    open: &["<|python_tag|>"],
    bare: true,
    close: None,
    separator: Some(";"),
    name_then: None,
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::Format::Llama3;
    use super::super::testing::{assert_plain, call, calls, parse};

    /// Llama-3.1-8B-Instruct with tools in the user turn.
    const LLAMA_31: &str = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \
        \"unit\": \"celsius\"}}";

    /// Llama-3.2-3B-Instruct.
    const LLAMA_32: &str = "{\"type\": \"function\", \"name\": \"get_time\", \"parameters\": \
        {\"zone\": \"Europe/Paris\"}}";

    /// Llama 3.1 with its python tag, two calls.
    const TAGGED_TWO: &str = "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": \
        {\"city\": \"Paris\"}}; {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}";

    #[test]
    fn json_calls_are_read_with_or_without_the_python_tag() {
        let out = parse(Llama3, LLAMA_31);
        assert_eq!(out.content, "");
        let paris = json!({"city": "Paris", "unit": "celsius"});
        assert_eq!(calls(&out), json!([call("get_weather", paris)]));

        let out = parse(Llama3, LLAMA_32);
        let zone = json!({"zone": "Europe/Paris"});
        assert_eq!(calls(&out), json!([call("get_time", zone)]));

        let out = parse(Llama3, TAGGED_TWO);
        assert_eq!(out.content, "");
        assert_eq!(
            calls(&out),
            json!([
                call("get_weather", json!({"city": "Paris"})),
                call("get_weather", json!({"city": "Rome"})),
            ])
        );
    }

    #[test]
    fn text_before_a_call_is_kept() {
        let out = parse(Llama3, &format!("Let me check.\n\n{LLAMA_31}"));
        assert_eq!(out.content, "Let me check.\n\n");
        assert_eq!(out.calls.len(), 1);
    }

    #[test]
    fn json_that_names_no_tool_is_content() {
        assert_plain(Llama3, "{\"name\": \"Paris\", \"country\": \"France\"}");
        assert_plain(
            Llama3,
            "Here is the data: {\"city\": \"Paris\", \"temp\": 22}.",
        );
        assert_plain(Llama3, "Sets use braces: {1, 2}; maps {\"a\": 1}; x = {");
        assert_plain(
            Llama3,
            "<|python_tag|>brave_search.call(query=\"weather in Paris\")",
        );
        assert_plain(Llama3, &LLAMA_31[..LLAMA_31.len() - 2]);
    }
}
