//! A plain JSON object naming a tool, for templates that list tools but teach no call
//! syntax of their own (and for models that answer so anyway): `{"name": ...,
//! "arguments": {...}}`, also with `parameters`. Only a request's own tool names count,
//! so an answer written in JSON stays content.

use super::parser::Syntax;

/// The markers of [`super::Format::Json`]: none.
pub static SYNTAX: Syntax = Syntax {
    open: &[],
    bare: true,
    close: None,
    separator: None,
    name_then: None,
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::Format::Json;
    use super::super::testing::{assert_plain, call, calls, parse};

    /// Gemma 3 with tools described in its system prompt.
    const GEMMA: &str = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}";

    /// Phi-4-mini writes the arguments as a JSON string, between two sentences.
    const STRING_ARGUMENTS: &str = "I'll look it up. {\"name\": \"get_time\", \"arguments\": \
        \"{\\\"zone\\\": \\\"Europe/Paris\\\"}\"} One moment.";

    #[test]
    fn an_object_naming_a_tool_is_a_call() {
        let out = parse(Json, GEMMA);
        assert_eq!(out.content, "");
        let paris = json!({"city": "Paris"});
        assert_eq!(calls(&out), json!([call("get_weather", paris)]));

        let out = parse(Json, STRING_ARGUMENTS);
        assert_eq!(out.content, "I'll look it up.  One moment.");
        let zone = json!({"zone": "Europe/Paris"});
        assert_eq!(calls(&out), json!([call("get_time", zone)]));
    }

    #[test]
    fn other_json_is_content() {
        assert_plain(Json, "{\"city\": \"Paris\", \"temperature\": 22}");
        assert_plain(Json, "{\"name\": \"Ada Lovelace\", \"born\": 1815}");
        assert_plain(
            Json,
            "Use {braces} and \"quotes\" freely: {\"name\" is a key}.",
        );
        assert_plain(Json, &GEMMA[..20]);
        assert_plain(Json, "");
    }
}
