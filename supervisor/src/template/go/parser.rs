//! Builds the tree of a Go template from its tokens: text, actions, `if` / `else if` /
//! `else`, `range`, `with`, `break`, `continue`, pipelines with variables.
//! `define`, `template` and `block` are refused: no Ollama template uses them.

use super::GoTemplateError;
use super::lexer::{Tok, Token};
use super::value::Value;

/// How deep blocks and parentheses may nest; deeper input is refused, not recursed into.
const MAX_DEPTH: usize = 64;

/// A node of the template.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// Text written as it is.
    Text(String),
    /// `{{ pipeline }}`: prints the value unless the pipeline declares variables.
    Action(Pipeline),
    /// `{{ if }}`, `{{ with }}` or `{{ range }}` with its branches.
    Block(Box<Block>),
    /// `{{ break }}` inside a range.
    Break(usize),
    /// `{{ continue }}` inside a range.
    Continue(usize),
}

/// Which block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// `if`: the body when the pipeline is true.
    If,
    /// `with`: the body with dot set to the pipeline's value when it is true.
    With,
    /// `range`: the body once per element.
    Range,
}

/// A block and its `else`.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    /// Which block.
    pub kind: BlockKind,
    /// The condition or the ranged value.
    pub pipeline: Pipeline,
    /// The body.
    pub body: Vec<Node>,
    /// The `else` branch (an `else if` is a nested `if` here, as in Go).
    pub otherwise: Option<Vec<Node>>,
}

/// `$x := cmd | cmd arg ...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// Its line.
    pub line: usize,
    /// The variables declared (`:=`) or assigned (`=`).
    pub variables: Vec<String>,
    /// Whether they are assigned rather than declared.
    pub assign: bool,
    /// The commands; each one's result is the last argument of the next.
    pub commands: Vec<Command>,
}

/// One command of a pipeline: a function call or a single operand.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The function or operand, then the arguments.
    pub args: Vec<Operand>,
}

/// An operand.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// `.A.B`: fields of dot (empty: dot itself).
    Field(Vec<String>),
    /// `$x.A.B`.
    Variable(String, Vec<String>),
    /// `(pipeline).A.B`.
    Nested(Box<Pipeline>, Vec<String>),
    /// A function name.
    Function(String),
    /// A literal.
    Literal(Value),
}

/// Parses tokens into the template's nodes.
pub fn parse(tokens: Vec<Token>) -> Result<Vec<Node>, GoTemplateError> {
    let mut parser = Parser { tokens, at: 0 };
    let (nodes, end) = parser.list(0)?;
    match end {
        End::Eof => Ok(nodes),
        End::Closed(line) => Err(syntax(line, "unexpected {{end}}")),
        End::Else(line, _) => Err(syntax(line, "unexpected {{else}}")),
    }
}

fn syntax(line: usize, message: impl Into<String>) -> GoTemplateError {
    GoTemplateError::Syntax {
        line,
        message: message.into(),
    }
}

/// What ended a list of nodes.
enum End {
    /// The end of the template.
    Eof,
    /// `{{ end }}` on this line.
    Closed(usize),
    /// `{{ else }}`, or `{{ else if ... }}` / `{{ else with ... }}` with its keyword.
    Else(usize, Option<BlockKind>),
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn line(&self) -> usize {
        self.peek()
            .or_else(|| self.tokens.last())
            .map_or(1, |t| t.line)
    }

    fn expect_close(&mut self, what: &str) -> Result<(), GoTemplateError> {
        match self.next() {
            Some(Token {
                tok: Tok::Close, ..
            }) => Ok(()),
            Some(t) => Err(syntax(t.line, format!("unexpected {:?} in {what}", t.tok))),
            None => Err(syntax(self.line(), format!("unclosed {what}"))),
        }
    }

    /// Nodes up to `{{ end }}`, `{{ else }}` or the end of input.
    fn list(&mut self, depth: usize) -> Result<(Vec<Node>, End), GoTemplateError> {
        if depth > MAX_DEPTH {
            return Err(syntax(self.line(), "blocks nest too deeply"));
        }
        let mut nodes = Vec::new();
        while let Some(token) = self.next() {
            match token.tok {
                Tok::Text(text) => nodes.push(Node::Text(text)),
                Tok::Open => {
                    let line = token.line;
                    let keyword = match self.peek() {
                        Some(Token {
                            tok: Tok::Ident(word),
                            ..
                        }) => Some(word.clone()),
                        _ => None,
                    };
                    match keyword.as_deref() {
                        Some("end") => {
                            self.at += 1;
                            self.expect_close("end")?;
                            return Ok((nodes, End::Closed(line)));
                        }
                        Some("else") => {
                            self.at += 1;
                            let chained = match self.peek().map(|t| &t.tok) {
                                Some(Tok::Ident(w)) if w == "if" => Some(BlockKind::If),
                                Some(Tok::Ident(w)) if w == "with" => Some(BlockKind::With),
                                _ => None,
                            };
                            if chained.is_some() {
                                self.at += 1;
                            } else {
                                self.expect_close("else")?;
                            }
                            return Ok((nodes, End::Else(line, chained)));
                        }
                        Some(word @ ("if" | "with" | "range")) => {
                            let kind = match word {
                                "if" => BlockKind::If,
                                "with" => BlockKind::With,
                                _ => BlockKind::Range,
                            };
                            self.at += 1;
                            nodes.push(self.block(kind, depth)?);
                        }
                        Some(word @ ("break" | "continue")) => {
                            let node = if word == "break" {
                                Node::Break(line)
                            } else {
                                Node::Continue(line)
                            };
                            self.at += 1;
                            self.expect_close(word)?;
                            nodes.push(node);
                        }
                        Some(word @ ("define" | "template" | "block")) => {
                            return Err(syntax(
                                line,
                                format!(
                                    "{{{{{word}}}}} is not supported (no Ollama template uses it)"
                                ),
                            ));
                        }
                        _ => {
                            let pipeline = self.pipeline(line, depth, true)?;
                            self.expect_close("action")?;
                            nodes.push(Node::Action(pipeline));
                        }
                    }
                }
                other => return Err(syntax(token.line, format!("unexpected {other:?}"))),
            }
        }
        Ok((nodes, End::Eof))
    }

    /// The rest of a block after its keyword, through its `{{ end }}`.
    fn block(&mut self, kind: BlockKind, depth: usize) -> Result<Node, GoTemplateError> {
        let line = self.line();
        let pipeline = self.pipeline(line, depth, true)?;
        self.expect_close("block")?;
        let (body, end) = self.list(depth + 1)?;
        let otherwise = match end {
            End::Eof => return Err(syntax(line, "unexpected end of template: missing {{end}}")),
            End::Closed(_) => None,
            // `else if` / `else with`: a nested block whose {{end}} ends this one too.
            End::Else(_, Some(chained)) => Some(vec![self.block(chained, depth + 1)?]),
            End::Else(else_line, None) => match self.list(depth + 1)? {
                (nodes, End::Closed(_)) => Some(nodes),
                (_, End::Else(l, _)) => return Err(syntax(l, "expected {{end}}; found {{else}}")),
                (_, End::Eof) => {
                    return Err(syntax(
                        else_line,
                        "unexpected end of template: missing {{end}}",
                    ));
                }
            },
        };
        Ok(Node::Block(Box::new(Block {
            kind,
            pipeline,
            body,
            otherwise,
        })))
    }

    /// `[$a[, $b] :=|=] command [| command]...`, up to `}}` or `)` (not consumed).
    fn pipeline(
        &mut self,
        line: usize,
        depth: usize,
        allow_variables: bool,
    ) -> Result<Pipeline, GoTemplateError> {
        if depth > MAX_DEPTH {
            return Err(syntax(line, "parentheses nest too deeply"));
        }
        let mut variables = Vec::new();
        let mut assign = false;
        if allow_variables {
            let save = self.at;
            let mut names = Vec::new();
            while let Some(Token {
                tok: Tok::Var(name),
                ..
            }) = self.peek().cloned()
            {
                self.at += 1;
                names.push(name);
                match self.peek().map(|t| &t.tok) {
                    Some(Tok::Comma) if names.len() == 1 => self.at += 1,
                    Some(Tok::Declare) => {
                        self.at += 1;
                        variables = std::mem::take(&mut names);
                        break;
                    }
                    Some(Tok::Assign) => {
                        self.at += 1;
                        variables = std::mem::take(&mut names);
                        assign = true;
                        break;
                    }
                    _ => break,
                }
            }
            if variables.is_empty() {
                self.at = save;
            }
        }
        let mut commands = vec![self.command(line, depth)?];
        while let Some(Token { tok: Tok::Pipe, .. }) = self.peek() {
            self.at += 1;
            commands.push(self.command(line, depth)?);
        }
        Ok(Pipeline {
            line,
            variables,
            assign,
            commands,
        })
    }

    fn command(&mut self, line: usize, depth: usize) -> Result<Command, GoTemplateError> {
        let mut args = Vec::new();
        loop {
            let Some(token) = self.peek().cloned() else {
                return Err(syntax(line, "unclosed action"));
            };
            let operand = match token.tok {
                Tok::Close | Tok::RParen | Tok::Pipe => break,
                Tok::Field(name) => {
                    self.at += 1;
                    let mut chain = vec![name];
                    chain.extend(self.chain());
                    Operand::Field(chain)
                }
                Tok::Dot => {
                    self.at += 1;
                    Operand::Field(Vec::new())
                }
                Tok::Var(name) => {
                    self.at += 1;
                    Operand::Variable(name, self.chain())
                }
                Tok::LParen => {
                    self.at += 1;
                    let inner = self.pipeline(token.line, depth + 1, false)?;
                    match self.next() {
                        Some(Token {
                            tok: Tok::RParen, ..
                        }) => {}
                        _ => return Err(syntax(token.line, "unclosed left paren")),
                    }
                    Operand::Nested(Box::new(inner), self.chain())
                }
                Tok::Ident(word) => {
                    self.at += 1;
                    match word.as_str() {
                        "true" => Operand::Literal(Value::Bool(true)),
                        "false" => Operand::Literal(Value::Bool(false)),
                        "nil" => Operand::Literal(Value::Nil),
                        _ => Operand::Function(word),
                    }
                }
                Tok::Str(s) => {
                    self.at += 1;
                    Operand::Literal(Value::str(s))
                }
                Tok::Int(i) => {
                    self.at += 1;
                    Operand::Literal(Value::Int(i))
                }
                Tok::Float(f) => {
                    self.at += 1;
                    Operand::Literal(Value::Float(f))
                }
                other => {
                    return Err(syntax(
                        token.line,
                        format!("unexpected {other:?} in command"),
                    ));
                }
            };
            if !args.is_empty() && !token.spaced && !matches!(operand, Operand::Nested(..)) {
                return Err(syntax(token.line, "missing space between arguments"));
            }
            args.push(operand);
        }
        if args.is_empty() {
            return Err(syntax(line, "missing value for command"));
        }
        Ok(Command { args })
    }

    /// Field names written right after an operand (`.A.B`), without space between.
    fn chain(&mut self) -> Vec<String> {
        let mut names = Vec::new();
        while let Some(Token {
            tok: Tok::Field(name),
            spaced: false,
            ..
        }) = self.peek().cloned()
        {
            self.at += 1;
            names.push(name);
        }
        names
    }
}
