//! The incremental parser all formats share: text in, content and complete calls out.
//! A format is a [`Syntax`] (its markers); the states below are the same for all.
//!
//! ```text
//!            marker or bare `{`              JSON closes, is calls
//!   Text ───────────────────────────▶ Call ───────────────────────▶ After
//!    ▲  ◀──────────────────────────── │                             │
//!    │     not a call: held text      │                             │ close marker,
//!    │     released as content        │                             │ separator, space:
//!    └────────────────────────────────┴──── other text ◀────────────┘ dropped
//! ```

use super::decode::{self, Names};
use super::scan::Scan;
use super::{Format, FunctionCall, Output, ToolCall};

/// The markers of one format.
#[derive(Debug)]
pub struct Syntax {
    /// Markers that open a call; the call's JSON (or name) follows.
    pub open: &'static [&'static str],
    /// Whether a JSON object in plain text may be a call. Its name must then be one of the
    /// request's tools, since it may as well be an answer written in JSON.
    pub bare: bool,
    /// The marker that ends a call, dropped when it follows the call's JSON.
    pub close: Option<&'static str>,
    /// What may separate consecutive calls (Llama's `;`), dropped.
    pub separator: Option<&'static str>,
    /// The marker between a call's name and its arguments when the name is written before
    /// the JSON (Mistral's `name[ARGS]{...}`).
    pub name_then: Option<&'static str>,
}

/// The first keys a JSON call object starts with; a bare object that starts otherwise is
/// released at once rather than held back to its end.
const FIRST_KEYS: [&str; 5] = ["name", "function", "type", "arguments", "parameters"];

/// The longest tool name accepted before `[ARGS]`.
const MAX_NAME: usize = 256;

/// Where the parser is.
#[derive(Debug)]
enum State {
    /// Ordinary text; the held text is at most the start of a marker.
    Text,
    /// Inside a possible call; the held text starts with what opened it.
    Call(Call),
    /// Just after a call: space, a close marker or a separator are held until the next
    /// text says whether they are dropped or content.
    After {
        /// The close marker was seen already.
        closed: bool,
    },
}

/// A possible call being read.
#[derive(Debug)]
struct Call {
    /// Bytes to release as content if this turns out not to be a call before its JSON
    /// ends: the marker, or the bare `{`.
    opener: usize,
    /// Opened by a marker (any name goes), not a bare `{` (a known tool's name only).
    tagged: bool,
    /// Where the name or JSON begins in the held text.
    body: usize,
    /// The name written before `[ARGS]`, once read.
    name: Option<String>,
    /// Where the JSON begins, once seen.
    json: Option<usize>,
    scan: Scan,
}

/// What a step did.
enum Step {
    /// Changed something: step again.
    Again,
    /// Needs more text.
    Wait,
}

/// Tool calls and content from generated text, fed piece by piece. See the module docs.
#[derive(Debug)]
pub struct ToolCallParser {
    syntax: &'static Syntax,
    tools: Vec<String>,
    held: String,
    state: State,
    out: Output,
}

impl ToolCallParser {
    /// A parser for `format`, for a request that offered `tools` (their names).
    pub fn new(format: Format, tools: Vec<String>) -> Self {
        let syntax = match format {
            Format::Hermes => &super::hermes::SYNTAX,
            Format::Llama3 => &super::llama3::SYNTAX,
            Format::Mistral => &super::mistral::SYNTAX,
            Format::Json => &super::json::SYNTAX,
        };
        Self {
            syntax,
            tools,
            held: String::new(),
            state: State::Text,
            out: Output::default(),
        }
    }

    /// Takes the next piece of generated text; returns the content it releases and the
    /// calls it completes (often nothing while a call is being written).
    pub fn feed(&mut self, text: &str) -> Output {
        self.held.push_str(text);
        while let Step::Again = self.step() {}
        std::mem::take(&mut self.out)
    }

    /// The end of the text. A call still unfinished (cut off by `num_predict`, or JSON
    /// that never closed) is released as content: it cannot be run without its whole
    /// arguments, and dropping it would hide from the client what the model wrote. A close
    /// marker cut short after a complete call is dropped.
    pub fn finish(mut self) -> Output {
        let rest = std::mem::take(&mut self.held);
        let drop = match self.state {
            State::After { .. } => {
                let trimmed = rest.trim_start();
                trimmed.is_empty()
                    || self.syntax.close.is_some_and(|c| c.starts_with(trimmed))
                    || self.syntax.open.iter().any(|m| m.starts_with(trimmed))
            }
            State::Text | State::Call(_) => false,
        };
        if !drop {
            self.out.content.push_str(&rest);
        }
        self.out
    }

    fn step(&mut self) -> Step {
        match std::mem::replace(&mut self.state, State::Text) {
            State::Text => self.text(),
            State::Call(call) => self.call(call),
            State::After { closed } => self.after(closed),
        }
    }

    /// Moves the first `n` held bytes to the content.
    fn release(&mut self, n: usize) {
        let n = n.min(self.held.len());
        self.out.content.push_str(&self.held[..n]);
        self.held.drain(..n);
    }

    fn text(&mut self) -> Step {
        let syntax = self.syntax;
        let marker = syntax
            .open
            .iter()
            .filter_map(|m| self.held.find(m).map(|at| (at, m.len(), true)));
        let bare = syntax
            .bare
            .then(|| self.held.find('{').map(|at| (at, 1, false)))
            .flatten();
        let Some((at, opener, tagged)) = marker.chain(bare).min_by_key(|&(at, ..)| at) else {
            let keep = partial_marker(&self.held, syntax.open);
            self.release(self.held.len() - keep);
            return Step::Wait;
        };
        self.release(at);
        let body = if tagged { opener } else { 0 };
        self.state = State::Call(Call {
            opener,
            tagged,
            body,
            name: None,
            json: None,
            scan: Scan::default(),
        });
        Step::Again
    }

    /// Releases the call's opener as content and reads on as text.
    fn not_a_call(&mut self, upto: usize) -> Step {
        self.release(upto);
        self.state = State::Text;
        Step::Again
    }

    fn call(&mut self, mut call: Call) -> Step {
        let json = match call.json {
            Some(json) => json,
            None => {
                let body = self.held.get(call.body..).unwrap_or_default();
                let trimmed = body.trim_start();
                let at = call.body + (body.len() - trimmed.len());
                match trimmed.bytes().next() {
                    None => {
                        self.state = State::Call(call);
                        return Step::Wait;
                    }
                    Some(b'{' | b'[') => at,
                    Some(_) => match self.named(&call, at) {
                        Named::Wait => {
                            self.state = State::Call(call);
                            return Step::Wait;
                        }
                        Named::No => return self.not_a_call(call.opener),
                        Named::Read(name, after) => {
                            call.name = Some(name);
                            call.body = after;
                            self.state = State::Call(call);
                            return Step::Again;
                        }
                    },
                }
            }
        };
        call.json = Some(json);
        let value = self.held.get(json..).unwrap_or_default();
        if !call.tagged && bare_start(value) == Some(false) {
            return self.not_a_call(call.opener);
        }
        let Some(len) = call.scan.advance(value) else {
            self.state = State::Call(call);
            return Step::Wait;
        };
        let text = &value[..len];
        let calls = match call.name {
            Some(name) => named_call(name, text).map(|c| vec![c]),
            None if call.tagged => decode::calls(text, Names::Any),
            None => decode::calls(text, Names::Known(&self.tools)),
        };
        match calls {
            Some(calls) => {
                self.out.calls.extend(calls);
                self.held.drain(..json + len);
                self.state = State::After { closed: false };
                Step::Again
            }
            None => self.not_a_call(json + len),
        }
    }

    /// Reads a name and the `[ARGS]` marker after it, at byte `at` of the held text.
    fn named(&self, call: &Call, at: usize) -> Named {
        let Some(marker) = self
            .syntax
            .name_then
            .filter(|_| call.tagged && call.name.is_none())
        else {
            return Named::No;
        };
        let text = self.held.get(at..).unwrap_or_default();
        let name_len = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_-.".contains(c)))
            .unwrap_or(text.len());
        let (name, rest) = text.split_at(name_len);
        if name.is_empty() || name.len() > MAX_NAME {
            return Named::No;
        }
        if rest.starts_with(marker) {
            Named::Read(name.to_owned(), at + name_len + marker.len())
        } else if marker.starts_with(rest) {
            Named::Wait
        } else {
            Named::No
        }
    }

    fn after(&mut self, closed: bool) -> Step {
        let syntax = self.syntax;
        let trimmed = self.held.trim_start();
        let space = self.held.len() - trimmed.len();
        if trimmed.is_empty() {
            self.state = State::After { closed };
            return Step::Wait;
        }
        if let Some(close) = syntax.close.filter(|_| !closed) {
            if trimmed.starts_with(close) {
                self.held.drain(..space + close.len());
                self.state = State::After { closed: true };
                return Step::Again;
            }
            if close.starts_with(trimmed) {
                self.state = State::After { closed };
                return Step::Wait;
            }
        }
        if let Some(separator) = syntax.separator.filter(|s| trimmed.starts_with(s)) {
            self.held.drain(..space + separator.len());
            self.state = State::After { closed };
            return Step::Again;
        }
        let opens = syntax.open.iter().any(|m| trimmed.starts_with(m))
            || (syntax.bare && trimmed.starts_with('{'));
        if opens {
            self.held.drain(..space);
        } else if syntax.open.iter().any(|m| m.starts_with(trimmed)) {
            self.state = State::After { closed };
            return Step::Wait;
        }
        Step::Again
    }
}

/// What reading `name[ARGS]` found.
enum Named {
    Wait,
    No,
    Read(String, usize),
}

/// A call written as `name[ARGS]{arguments}`.
fn named_call(name: String, arguments: &str) -> Option<ToolCall> {
    let arguments = decode::arguments_object(serde_json::from_str(arguments).ok()?)?;
    Some(ToolCall {
        function: FunctionCall { name, arguments },
    })
}

/// How many bytes at the end of `text` could begin one of `markers`.
fn partial_marker(text: &str, markers: &[&str]) -> usize {
    let longest = markers.iter().map(|m| m.len()).max().unwrap_or(0);
    (1..longest.min(text.len() + 1))
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start) && markers.iter().any(|m| m.starts_with(&text[start..]))
        })
        .unwrap_or(0)
}

/// Whether a bare JSON object (`text` starts with its `{`) begins as a call does, with one
/// of [`FIRST_KEYS`]: `None` until its first key has arrived.
fn bare_start(text: &str) -> Option<bool> {
    let Some(rest) = text.strip_prefix('{') else {
        return Some(true);
    };
    let rest = rest.trim_start();
    let Some(key) = rest.strip_prefix('"') else {
        return (!rest.is_empty()).then_some(false);
    };
    match key.find(['"', '\\']) {
        Some(end) => Some(key[end..].starts_with('"') && FIRST_KEYS.contains(&&key[..end])),
        None if FIRST_KEYS.iter().any(|k| k.starts_with(key)) => None,
        None => Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Format;
    use super::super::testing::parse;
    use super::{bare_start, partial_marker};

    /// Pieces of calls, markers and text that random texts are made of.
    const PARTS: [&str; 26] = [
        "<tool_call>",
        "</tool_call>",
        "[TOOL_CALLS]",
        "[ARGS]",
        "<|python_tag|>",
        "{",
        "}",
        "[",
        "]",
        "\"",
        "\\",
        ":",
        ",",
        ";",
        " ",
        "\n",
        "\"name\": ",
        "\"get_weather\"",
        "get_weather",
        "\"arguments\": ",
        "{\"city\": \"Paris\"}",
        "é",
        "日本",
        "<",
        "[TOOL",
        "text",
    ];

    #[test]
    fn any_text_parses_the_same_in_pieces_and_loses_nothing_when_no_call_is_found() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize
        };
        let formats = [
            Format::Hermes,
            Format::Llama3,
            Format::Mistral,
            Format::Json,
        ];
        for _ in 0..200 {
            let text: String = (0..next() % 24)
                .map(|_| PARTS[next() % PARTS.len()])
                .collect();
            for format in formats {
                let out = parse(format, &text);
                if out.calls.is_empty() {
                    assert_eq!(out.content, text, "{format:?}");
                }
            }
        }
    }

    #[test]
    fn a_marker_cut_at_the_end_is_held() {
        let markers = ["<tool_call>", "[TOOL_CALLS]"];
        assert_eq!(partial_marker("Sure <tool_", &markers), 6);
        assert_eq!(partial_marker("Sure [TOOL", &markers), 5);
        assert_eq!(partial_marker("Sure <b>", &markers), 0);
        assert_eq!(partial_marker("<", &markers), 1);
        assert_eq!(partial_marker("é", &markers), 0);
        assert_eq!(partial_marker("", &markers), 0);
    }

    #[test]
    fn a_bare_object_is_a_possible_call_by_its_first_key() {
        assert_eq!(bare_start("{"), None);
        assert_eq!(bare_start("{ \"na"), None);
        assert_eq!(bare_start("{\"name\""), Some(true));
        assert_eq!(bare_start("{\"type\": "), Some(true));
        assert_eq!(bare_start("{\"city\""), Some(false));
        assert_eq!(bare_start("{\"cit"), Some(false));
        assert_eq!(bare_start("{ x"), Some(false));
        assert_eq!(bare_start("{\"na\\"), Some(false));
    }
}
