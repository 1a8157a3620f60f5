//! The formats' tests share this: a recorded output parsed whole, cut in two at every
//! character boundary, and fed in pieces of every size up to 8 bytes, must give the same
//! content and calls every time.

use serde_json::{Value, json};

use super::{Format, Output, ToolCallParser};

/// The tools a test request offers.
pub const TOOLS: [&str; 2] = ["get_weather", "get_time"];

fn parser(format: Format) -> ToolCallParser {
    ToolCallParser::new(format, TOOLS.iter().map(|t| t.to_string()).collect())
}

/// `pieces` fed one by one, then the end.
pub fn fed(format: Format, pieces: &[&str]) -> Output {
    let mut parser = parser(format);
    let mut out = Output::default();
    for piece in pieces {
        out.append(parser.feed(piece));
    }
    out.append(parser.finish());
    out
}

/// Pieces of at most `size` bytes, cut on character boundaries.
fn chunks(text: &str, size: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + size).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        pieces.push(&text[start..end]);
        start = end;
    }
    pieces
}

/// `text` parsed as [`Format`] `format`, checked to parse the same in every cut.
pub fn parse(format: Format, text: &str) -> Output {
    let whole = fed(format, &[text]);
    for cut in (0..=text.len()).filter(|&c| text.is_char_boundary(c)) {
        let (a, b) = text.split_at(cut);
        assert_eq!(fed(format, &[a, b]), whole, "cut at byte {cut} of {text:?}");
    }
    for size in 1..=8 {
        assert_eq!(
            fed(format, &chunks(text, size)),
            whole,
            "pieces of {size} bytes of {text:?}"
        );
    }
    whole
}

/// The calls as the API sends them.
pub fn calls(out: &Output) -> Value {
    serde_json::to_value(&out.calls).unwrap_or(Value::Null)
}

/// One call in the API's shape.
pub fn call(name: &str, arguments: Value) -> Value {
    json!({"function": {"name": name, "arguments": arguments}})
}

/// Checks that `text` is content only: nothing parsed, nothing lost.
pub fn assert_plain(format: Format, text: &str) {
    let out = parse(format, text);
    assert_eq!(out.content, text, "{format:?}");
    assert!(out.calls.is_empty(), "{format:?}: {:?}", out.calls);
}
