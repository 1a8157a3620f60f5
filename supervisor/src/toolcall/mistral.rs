//! Mistral: `[TOOL_CALLS]` then a JSON list of calls (v3 tokenizers, Mistral 7B v0.3,
//! Nemo), or `[TOOL_CALLS]name[ARGS]{...}` once per call (v11 and later: Mistral Small
//! 3.1, Devstral, Magistral).

use super::parser::Syntax;

/// The markers of [`super::Format::Mistral`].
pub static SYNTAX: Syntax = Syntax {
    open: &["[TOOL_CALLS]"],
    bare: false,
    close: None,
    separator: None,
    name_then: Some("[ARGS]"),
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::Format::Mistral;
    use super::super::testing::{assert_plain, call, calls, parse};

    /// Mistral-7B-Instruct-v0.3, two calls in one list.
    const V3: &str = "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \
        \"Paris\", \"unit\": \"celsius\"}}, {\"name\": \"get_time\", \"arguments\": {\"zone\": \
        \"Europe/Paris\"}}]";

    /// Mistral-Small-3.1, after a sentence.
    const V11: &str = "Sure, checking.[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}\
        [TOOL_CALLS]get_time[ARGS]{\"zone\": \"Europe/Paris\"}";

    #[test]
    fn lists_of_calls_are_read() {
        let out = parse(Mistral, V3);
        assert_eq!(out.content, "");
        assert_eq!(
            calls(&out),
            json!([
                call("get_weather", json!({"city": "Paris", "unit": "celsius"})),
                call("get_time", json!({"zone": "Europe/Paris"})),
            ])
        );
    }

    #[test]
    fn named_calls_are_read_and_text_before_them_kept() {
        let out = parse(Mistral, V11);
        assert_eq!(out.content, "Sure, checking.");
        assert_eq!(
            calls(&out),
            json!([
                call("get_weather", json!({"city": "Paris"})),
                call("get_time", json!({"zone": "Europe/Paris"})),
            ])
        );
    }

    #[test]
    fn what_is_not_a_whole_call_is_content() {
        assert_plain(Mistral, "Lists look like [1, 2] and {\"a\": [3]}.");
        assert_plain(Mistral, "[TOOL_CALLS] I will not call anything.");
        assert_plain(Mistral, "[TOOL_CALLS]get weather[ARGS]{}");
        assert_plain(Mistral, "[TOOL_CALLS]get_weather[ARGS][1]");
        assert_plain(Mistral, &V3[..V3.len() - 3]);
        assert_plain(Mistral, "[TOOL_CALLS]get_weather[AR");
    }
}
