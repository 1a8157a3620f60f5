//! What Ollama gives a Go template and how it runs one (its `template.Execute`):
//!
//! - A template that names `.Messages` anywhere is run once with `System` (every system
//!   message joined by blank lines), `Messages` (consecutive messages of one role merged),
//!   `Tools` and an empty `Response`.
//! - Any other template is the legacy form: run once per exchange with `System`,
//!   `Prompt` and `Response`, the last run cut just before its first `.Response`, so
//!   the prompt ends where the model's answer starts.
//! - With a `suffix` (fill in the middle) it is run once with `Prompt` and `Suffix`.
//! - A template that names neither `.Messages` nor `.Response` gets `{{ .Response }}`
//!   appended when parsed (see [`super::GoTemplate::parse`]).

use std::collections::BTreeSet;
use std::sync::Arc;

use super::parser::{Block, Node, Operand, Pipeline};
use super::value::{Object, Shape, Value, from_json};
use super::{GoTemplate, GoTemplateError};
use crate::template::{Message, OrderedJson};

/// Renders `messages` (and `tools`, JSON as the client sent them) as Ollama does.
pub fn render(
    template: &GoTemplate,
    messages: &[Message],
    tools: Option<&OrderedJson>,
) -> Result<String, GoTemplateError> {
    let (system, collated) = collate(messages);
    if template.uses("messages") {
        let messages = collated.iter().map(message_value).collect();
        let tools = match tools {
            Some(tools) => from_json(tools, Shape::Tool),
            None => Value::Nil,
        };
        let data = root(vec![
            ("System", Value::str(system)),
            ("Messages", Value::List(Arc::new(messages))),
            ("Tools", tools),
            ("Response", Value::str("")),
        ]);
        return template.execute(&data);
    }
    let mut out = String::new();
    let (mut system, mut prompt, mut response) = (String::new(), String::new(), String::new());
    let mut turn = |system: &mut String,
                    prompt: &mut String,
                    response: &mut String|
     -> Result<(), GoTemplateError> {
        out.push_str(&template.execute(&legacy_data(system, prompt, response))?);
        system.clear();
        prompt.clear();
        response.clear();
        Ok(())
    };
    for m in &collated {
        match m.role.as_str() {
            "system" => {
                if !prompt.is_empty() || !response.is_empty() {
                    turn(&mut system, &mut prompt, &mut response)?;
                }
                system = m.content.clone();
            }
            "user" => {
                if !response.is_empty() {
                    turn(&mut system, &mut prompt, &mut response)?;
                }
                prompt = m.content.clone();
            }
            "assistant" => response = m.content.clone(),
            _ => {}
        }
    }
    let last = cut_at_response(&template.nodes, &mut false);
    let data = legacy_data(&system, &prompt, &response);
    out.push_str(&super::eval::execute(&last, &data)?);
    Ok(out)
}

/// Fill-in-the-middle: the template run once with `Prompt`, `Suffix` and an empty
/// `Response`, as Ollama does when a generate request has a `suffix`.
pub fn render_insert(
    template: &GoTemplate,
    prompt: &str,
    suffix: &str,
) -> Result<String, GoTemplateError> {
    template.execute(&root(vec![
        ("Prompt", Value::str(prompt)),
        ("Suffix", Value::str(suffix)),
        ("Response", Value::str("")),
    ]))
}

/// The root value: a map, so a name it lacks is nil (Ollama's `missingkey=zero`).
fn root(fields: Vec<(&str, Value)>) -> Value {
    Value::Object(Arc::new(Object {
        fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        is_struct: false,
        sorted: true,
    }))
}

fn legacy_data(system: &str, prompt: &str, response: &str) -> Value {
    root(vec![
        ("System", Value::str(system)),
        ("Prompt", Value::str(prompt)),
        ("Response", Value::str(response)),
    ])
}

/// Every system message's text joined by blank lines, and the messages with
/// consecutive ones of the same role merged (blank line between), as Ollama's `collate`.
fn collate(messages: &[Message]) -> (String, Vec<Message>) {
    let mut system = Vec::new();
    let mut collated: Vec<Message> = Vec::new();
    for m in messages {
        if m.role == "system" {
            system.push(m.content.as_str());
        }
        match collated.last_mut() {
            Some(last) if last.role == m.role => {
                last.content.push_str("\n\n");
                last.content.push_str(&m.content);
            }
            _ => collated.push(m.clone()),
        }
    }
    (system.join("\n\n"), collated)
}

/// A message as Ollama's `api.Message` struct: `.Role`, `.Content`, `.ToolCalls`
/// (`.Function.Name`, `.Function.Arguments`), `.ToolName`, and an empty `.Thinking`.
fn message_value(m: &Message) -> Value {
    let tool_calls = m
        .tool_calls
        .as_ref()
        .map_or(Value::Nil, |calls| from_json(calls, Shape::ToolCall));
    Value::structure(vec![
        ("role", Value::str(m.role.as_str())),
        ("content", Value::str(m.content.as_str())),
        ("thinking", Value::str("")),
        ("tool_calls", tool_calls),
        (
            "tool_name",
            Value::str(m.tool_name.as_deref().unwrap_or_default()),
        ),
    ])
}

/// The template up to and including its first `.Response` field (in reading order,
/// not counting block conditions), as Ollama's `deleteNode` leaves it for the last
/// legacy turn.
fn cut_at_response(nodes: &[Node], cut: &mut bool) -> Vec<Node> {
    let mut kept = Vec::new();
    for node in nodes {
        if *cut {
            break;
        }
        match node {
            Node::Action(pipeline) => {
                kept.push(node.clone());
                *cut = names_response(pipeline);
            }
            Node::Block(block) => {
                let body = cut_at_response(&block.body, cut);
                let otherwise = match &block.otherwise {
                    Some(nodes) if !*cut => Some(cut_at_response(nodes, cut)),
                    _ => None,
                };
                kept.push(Node::Block(Box::new(Block {
                    kind: block.kind,
                    pipeline: block.pipeline.clone(),
                    body,
                    otherwise,
                })));
            }
            _ => kept.push(node.clone()),
        }
    }
    kept
}

/// Whether a pipeline has a `.Response` field (not `$.Response`, as in Ollama).
fn names_response(pipeline: &Pipeline) -> bool {
    pipeline
        .commands
        .iter()
        .flat_map(|c| &c.args)
        .any(|arg| match arg {
            Operand::Field(chain) => chain.iter().any(|n| n == "Response"),
            Operand::Nested(inner, chain) if chain.is_empty() => names_response(inner),
            _ => false,
        })
}

/// The identifiers a template names, lower case, as Ollama's `Template.Vars`: fields,
/// variables and what follows them, in actions and block conditions.
pub fn identifiers(nodes: &[Node]) -> BTreeSet<String> {
    fn pipeline(p: &Pipeline, names: &mut BTreeSet<String>) {
        for arg in p.commands.iter().flat_map(|c| &c.args) {
            match arg {
                Operand::Field(chain) => names.extend(chain.iter().map(|n| n.to_lowercase())),
                Operand::Variable(name, chain) => {
                    names.insert(name.to_lowercase());
                    names.extend(chain.iter().map(|n| n.to_lowercase()));
                }
                Operand::Nested(inner, chain) if chain.is_empty() => pipeline(inner, names),
                _ => {}
            }
        }
    }
    fn walk(nodes: &[Node], names: &mut BTreeSet<String>) {
        for node in nodes {
            match node {
                Node::Action(p) => pipeline(p, names),
                Node::Block(b) => {
                    pipeline(&b.pipeline, names);
                    walk(&b.body, names);
                    walk(b.otherwise.as_deref().unwrap_or(&[]), names);
                }
                _ => {}
            }
        }
    }
    let mut names = BTreeSet::new();
    walk(nodes, &mut names);
    names
}
