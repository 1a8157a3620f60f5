//! Templates in Go's `text/template` syntax, as every model in a models directory that
//! Ollama wrote carries in its template layer (`{{ range .Messages }}...{{ end }}`).
//!
//! Our own small interpreter (lexer, parser, evaluator) rather than a crate: `gtmpl`
//! lacks Go's `Stringer` printing that Ollama's tool templates rely on
//! (`{{ .Function.Arguments }}` prints JSON) and reports no lines. It covers what
//! Ollama's library templates use: fields, `$` variables (`:=`, `=`, `$.` root),
//! pipelines, `if` / `else if` / `else`, `range` (with `$i, $v :=`, `break`,
//! `continue`), `with`, whitespace trimming (`{{-`, `-}}`), comments, and the functions
//! `and or not len index slice eq ne lt le gt ge print printf println json`, and newer
//! Ollama's `currentDate`, `yesterdayDate` and `toTypeScriptType`.
//! `define`, `template` and `block` are refused.
//!
//! Deviations, on purpose: nil prints nothing (Go prints `<no value>`), and every struct
//! or map prints as JSON (in Ollama each one a template can print has a JSON `String`).
//! Tool properties and call arguments keep the client's key order, as current Ollama's
//! ordered maps do.

mod eval;
mod funcs;
mod lexer;
mod ollama;
mod parser;
mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use thiserror::Error;

pub use value::Value;

use crate::template::{Message, OrderedJson};

/// Why a Go template could not be parsed or run; the line is 1-based.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum GoTemplateError {
    /// The text is not a template this interpreter accepts.
    #[error("line {line}: {message}")]
    Syntax {
        /// Where.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Running it failed (a function's error, a field of a string, ...).
    #[error("line {line}: {message}")]
    Render {
        /// Where (0 when no line applies).
        line: usize,
        /// What went wrong.
        message: String,
    },
}

/// A parsed Go template.
#[derive(Debug, Clone)]
pub struct GoTemplate {
    nodes: Vec<parser::Node>,
    identifiers: BTreeSet<String>,
}

impl GoTemplate {
    /// Parses `source`. As Ollama does, a template that names neither `.Messages` nor
    /// `.Response` gets `{{ .Response }}` appended.
    pub fn parse(source: &str) -> Result<Self, GoTemplateError> {
        let mut nodes = parser::parse(lexer::lex(source)?)?;
        let mut identifiers = ollama::identifiers(&nodes);
        if !identifiers.contains("messages") && !identifiers.contains("response") {
            identifiers.insert("response".into());
            nodes.push(parser::Node::Action(parser::Pipeline {
                line: source.lines().count().max(1),
                variables: Vec::new(),
                assign: false,
                commands: vec![parser::Command {
                    args: vec![parser::Operand::Field(vec!["Response".into()])],
                }],
            }));
        }
        Ok(Self { nodes, identifiers })
    }

    /// Whether the template names `name` (lower case) as a field or variable.
    pub fn uses(&self, name: &str) -> bool {
        self.identifiers.contains(name)
    }

    /// Runs the template with `data` as dot.
    pub fn execute(&self, data: &Value) -> Result<String, GoTemplateError> {
        eval::execute(&self.nodes, data)
    }

    /// The prompt for a conversation, as Ollama renders it (see `ollama.rs`).
    pub fn render(
        &self,
        messages: &[Message],
        tools: Option<&OrderedJson>,
    ) -> Result<String, GoTemplateError> {
        ollama::render(self, messages, tools)
    }

    /// The prompt for filling in between `prompt` and `suffix`, when the template takes
    /// a suffix (`.Suffix`, as Ollama's code model templates do); `None` otherwise.
    pub fn render_insert(
        &self,
        prompt: &str,
        suffix: &str,
    ) -> Option<Result<String, GoTemplateError>> {
        self.uses("suffix")
            .then(|| ollama::render_insert(self, prompt, suffix))
    }
}

/// Why the Go template `source` cannot be used: it does not parse, or fails on a short
/// conversation (a system and a user message). `None` when it renders or is not Go.
pub fn problem(source: &str) -> Option<GoTemplateError> {
    if !looks_like_go(source) {
        return None;
    }
    let sample = [
        Message::new("system", "You are a helpful assistant."),
        Message::new("user", "Hello"),
    ];
    GoTemplate::parse(source)
        .and_then(|t| t.render(&sample, None))
        .err()
}

/// Whether `source` is written in Go's template syntax rather than Jinja: it has no
/// Jinja statement (`{%`) and an action that starts as only Go's do (a field `.X`, a
/// variable `$`, `end`, `range`, `if`, `with`, `else`, a comment `/*`).
pub fn looks_like_go(source: &str) -> bool {
    if source.contains("{%") {
        return false;
    }
    source.split("{{").skip(1).any(|action| {
        let action = action.strip_prefix('-').unwrap_or(action).trim_start();
        let word: String = action
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        action.starts_with('.')
            || action.starts_with('$')
            || action.starts_with("/*")
            || matches!(
                word.as_str(),
                "end" | "range" | "if" | "with" | "else" | "json"
            )
    })
}
