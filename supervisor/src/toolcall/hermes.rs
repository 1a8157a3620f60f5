//! Hermes and Qwen: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, one
//! call per tag, several tags for parallel calls.

use super::parser::Syntax;

/// The markers of [`super::Format::Hermes`].
pub static SYNTAX: Syntax = Syntax {
    open: &["<tool_call>"],
    bare: false,
    close: Some("</tool_call>"),
    separator: None,
    name_then: None,
};

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::Format::Hermes;
    use super::super::testing::{assert_plain, call, calls, fed, parse};

    /// Qwen2.5-7B-Instruct, asked for the weather in Paris.
    const QWEN_ONE: &str = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \
        {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>";

    /// Qwen2.5, two cities at once, after a sentence.
    const QWEN_TWO: &str = "I'll check both cities.\n<tool_call>\n{\"name\": \"get_weather\", \
        \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \
        \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}\n</tool_call>";

    /// Hermes-2-Pro-Llama-3-8B writes the arguments first.
    const HERMES_2_PRO: &str = "<tool_call>\n{\"arguments\": {\"zone\": \"Europe/Paris\"}, \
        \"name\": \"get_time\"}\n</tool_call>";

    #[test]
    fn calls_are_read_from_tags_and_the_tags_dropped() {
        let out = parse(Hermes, QWEN_ONE);
        assert_eq!(out.content, "");
        let paris = json!({"city": "Paris", "unit": "celsius"});
        assert_eq!(calls(&out), json!([call("get_weather", paris)]));

        let out = parse(Hermes, HERMES_2_PRO);
        let zone = json!({"zone": "Europe/Paris"});
        assert_eq!(calls(&out), json!([call("get_time", zone)]));
    }

    #[test]
    fn text_before_calls_is_kept_and_space_between_them_dropped() {
        let out = parse(Hermes, QWEN_TWO);
        assert_eq!(out.content, "I'll check both cities.\n");
        assert_eq!(
            calls(&out),
            json!([
                call("get_weather", json!({"city": "Paris"})),
                call("get_weather", json!({"city": "Zürich"})),
            ])
        );
        let after = format!("{QWEN_ONE}\n\nLet me know if you need more.");
        assert_eq!(
            parse(Hermes, &after).content,
            "\n\nLet me know if you need more."
        );
    }

    #[test]
    fn a_call_is_held_back_until_it_is_complete() {
        let (text, rest) = QWEN_TWO.split_at(QWEN_TWO.find("Paris").unwrap_or(0));
        let mut parser = super::super::ToolCallParser::new(Hermes, vec![]);
        let first = parser.feed(text);
        assert_eq!(first.content, "I'll check both cities.\n");
        assert!(first.calls.is_empty());
        let (call_end, last) = rest.split_at(rest.find("\n<tool_call>").unwrap_or(0));
        let second = parser.feed(call_end);
        assert_eq!((second.content.as_str(), second.calls.len()), ("", 1));
        assert_eq!(parser.feed(last).calls.len(), 1);
        assert!(parser.finish().is_empty());
    }

    #[test]
    fn what_is_not_a_whole_call_is_content() {
        assert_plain(Hermes, "The weather in Paris is {\"sunny\"} <b>today</b>.");
        assert_plain(Hermes, "<tool_call>\nI cannot call tools.\n</tool_call>");
        assert_plain(
            Hermes,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": [1]}",
        );
        // Cut off by num_predict: released as written.
        let cut = &QWEN_ONE[..QWEN_ONE.find("celsius").unwrap_or(0)];
        assert_plain(Hermes, cut);
        assert_plain(Hermes, "Almost a call: <tool_ca");
    }

    #[test]
    fn a_close_tag_cut_short_after_a_whole_call_is_dropped() {
        let cut = &QWEN_ONE[..QWEN_ONE.len() - 4];
        let out = fed(Hermes, &[cut]);
        assert_eq!((out.content.as_str(), out.calls.len()), ("", 1));
    }
}
