//! Runs a parsed Go template over a value, as `text/template`'s `Execute` does with
//! Ollama's options (`missingkey=zero`, the `json` function).

use super::GoTemplateError;
use super::funcs;
use super::parser::{Block, BlockKind, Command, Node, Operand, Pipeline};
use super::value::Value;

/// The most output one execution may write; a template that loops past it is stopped.
const MAX_OUTPUT: usize = 64 << 20;

/// What a list of nodes ended with.
enum Flow {
    Normal,
    Break,
    Continue,
}

/// One execution's state.
struct Exec<'a> {
    out: String,
    /// Variables in scope, innermost last; `$` is the first.
    variables: Vec<(String, Value)>,
    root: &'a Value,
}

/// Writes `nodes` executed with `data` as dot and `$`.
pub fn execute(nodes: &[Node], data: &Value) -> Result<String, GoTemplateError> {
    let mut exec = Exec {
        out: String::new(),
        variables: vec![("$".to_owned(), data.clone())],
        root: data,
    };
    match exec.walk(nodes, data)? {
        Flow::Normal => Ok(exec.out),
        Flow::Break | Flow::Continue => Err(GoTemplateError::Render {
            line: 0,
            message: "break or continue outside a range".into(),
        }),
    }
}

fn error(line: usize, message: impl Into<String>) -> GoTemplateError {
    GoTemplateError::Render {
        line,
        message: message.into(),
    }
}

impl Exec<'_> {
    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, GoTemplateError> {
        for node in nodes {
            match node {
                Node::Text(text) => self.out.push_str(text),
                Node::Action(pipeline) => {
                    let value = self.pipeline(pipeline, dot)?;
                    if pipeline.variables.is_empty() {
                        value.print(&mut self.out);
                    }
                }
                Node::Block(block) => {
                    let flow = self.block(block, dot)?;
                    if !matches!(flow, Flow::Normal) {
                        return Ok(flow);
                    }
                }
                Node::Break(_) => return Ok(Flow::Break),
                Node::Continue(_) => return Ok(Flow::Continue),
            }
            if self.out.len() > MAX_OUTPUT {
                return Err(error(0, "the template wrote more than 64 MiB"));
            }
        }
        Ok(Flow::Normal)
    }

    /// Runs `nodes` in a new variable scope.
    fn scoped(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow, GoTemplateError> {
        let depth = self.variables.len();
        let flow = self.walk(nodes, dot);
        self.variables.truncate(depth);
        flow
    }

    fn block(&mut self, block: &Block, dot: &Value) -> Result<Flow, GoTemplateError> {
        let depth = self.variables.len();
        let result = self.block_in_scope(block, dot);
        self.variables.truncate(depth);
        result
    }

    fn block_in_scope(&mut self, block: &Block, dot: &Value) -> Result<Flow, GoTemplateError> {
        let line = block.pipeline.line;
        if block.kind == BlockKind::Range {
            let value = self.pipeline_value(&block.pipeline, dot)?;
            return self.range(block, &value, dot, line);
        }
        let value = self.pipeline(&block.pipeline, dot)?;
        let otherwise = block.otherwise.as_deref().unwrap_or(&[]);
        match (value.truthy(), block.kind) {
            (true, BlockKind::With) => self.scoped(&block.body, &value),
            (true, _) => self.scoped(&block.body, dot),
            (false, _) => self.scoped(otherwise, dot),
        }
    }

    fn range(
        &mut self,
        block: &Block,
        value: &Value,
        dot: &Value,
        line: usize,
    ) -> Result<Flow, GoTemplateError> {
        let items: Vec<(Value, Value)> = match value {
            Value::Nil => Vec::new(),
            Value::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (Value::Int(i as i64), v.clone()))
                .collect(),
            Value::Object(o) => o
                .entries()
                .into_iter()
                .map(|(k, v)| (Value::str(k), v.clone()))
                .collect(),
            Value::Int(n) => (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
            other => {
                return Err(error(
                    line,
                    format!("range can't iterate over {}", other.type_name()),
                ));
            }
        };
        if items.is_empty() {
            let otherwise = block.otherwise.as_deref().unwrap_or(&[]);
            return self.scoped(otherwise, dot);
        }
        let names = &block.pipeline.variables;
        let depth = self.variables.len();
        for (key, element) in items {
            self.variables.truncate(depth);
            match names.as_slice() {
                [] => {}
                [one] => self.variables.push((one.clone(), element.clone())),
                [first, second, ..] => {
                    self.variables.push((first.clone(), key));
                    self.variables.push((second.clone(), element.clone()));
                }
            }
            match self.scoped(&block.body, &element)? {
                Flow::Break => break,
                Flow::Normal | Flow::Continue => {}
            }
        }
        self.variables.truncate(depth);
        Ok(Flow::Normal)
    }

    /// A range's pipeline: its value, with the variables left for the loop to bind.
    fn pipeline_value(
        &mut self,
        pipeline: &Pipeline,
        dot: &Value,
    ) -> Result<Value, GoTemplateError> {
        self.commands(pipeline, dot)
    }

    /// Evaluates a pipeline and binds its variables.
    fn pipeline(&mut self, pipeline: &Pipeline, dot: &Value) -> Result<Value, GoTemplateError> {
        let value = self.commands(pipeline, dot)?;
        for name in &pipeline.variables {
            if pipeline.assign {
                match self.variables.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = value.clone(),
                    None => {
                        return Err(error(pipeline.line, format!("undefined variable: {name}")));
                    }
                }
            } else {
                self.variables.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn commands(&mut self, pipeline: &Pipeline, dot: &Value) -> Result<Value, GoTemplateError> {
        let mut piped: Option<Value> = None;
        for command in &pipeline.commands {
            piped = Some(self.command(command, dot, piped, pipeline.line)?);
        }
        Ok(piped.unwrap_or(Value::Nil))
    }

    fn command(
        &mut self,
        command: &Command,
        dot: &Value,
        piped: Option<Value>,
        line: usize,
    ) -> Result<Value, GoTemplateError> {
        let Some((first, rest)) = command.args.split_first() else {
            return Err(error(line, "empty command"));
        };
        let Operand::Function(name) = first else {
            if !rest.is_empty() || piped.is_some() {
                return Err(error(line, "can't give argument to non-function"));
            }
            return self.operand(first, dot, line);
        };
        // `and` and `or` stop at the first argument that decides them, as Go 1.18+.
        if name == "and" || name == "or" {
            let mut last = Value::Nil;
            let count = rest.len() + usize::from(piped.is_some());
            if count == 0 {
                return Err(error(
                    line,
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                ));
            }
            for arg in rest {
                last = self.operand(arg, dot, line)?;
                if last.truthy() == (name == "or") {
                    return Ok(last);
                }
            }
            if let Some(value) = piped {
                last = value;
            }
            return Ok(last);
        }
        let mut args = Vec::with_capacity(rest.len() + 1);
        for arg in rest {
            args.push(self.operand(arg, dot, line)?);
        }
        args.extend(piped);
        funcs::call(name, &args)
            .map_err(|message| error(line, format!("error calling {name}: {message}")))
    }

    fn operand(
        &mut self,
        operand: &Operand,
        dot: &Value,
        line: usize,
    ) -> Result<Value, GoTemplateError> {
        match operand {
            Operand::Literal(v) => Ok(v.clone()),
            Operand::Field(chain) => fields(dot, chain, line),
            Operand::Variable(name, chain) => {
                let value = if name == "$" {
                    self.root.clone()
                } else {
                    match self.variables.iter().rev().find(|(n, _)| n == name) {
                        Some((_, v)) => v.clone(),
                        None => return Err(error(line, format!("undefined variable: {name}"))),
                    }
                };
                fields(&value, chain, line)
            }
            Operand::Nested(pipeline, chain) => {
                let value = self.commands(pipeline, dot)?;
                fields(&value, chain, line)
            }
            Operand::Function(name) => funcs::call(name, &[])
                .map_err(|message| error(line, format!("error calling {name}: {message}"))),
        }
    }
}

/// Follows `.A.B` from `value`. A missing map key or struct field, or a field of nil,
/// is nil (Ollama runs templates with `missingkey=zero`).
fn fields(value: &Value, chain: &[String], line: usize) -> Result<Value, GoTemplateError> {
    let mut current = value.clone();
    for name in chain {
        current = match &current {
            Value::Object(o) => o.get(name).cloned().unwrap_or(Value::Nil),
            Value::Nil => Value::Nil,
            other => {
                return Err(error(
                    line,
                    format!("can't evaluate field {name} in type {}", other.type_name()),
                ));
            }
        };
    }
    Ok(current)
}
