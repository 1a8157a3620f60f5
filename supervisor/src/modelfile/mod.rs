//! The Modelfile, as `ollama create` reads it and older clients still send it in the
//! `modelfile` field of `POST /api/create`:
//!
//! ```text
//! # a comment
//! FROM llama3.2            (a model name, a blob digest sha256:..., or a file path)
//! PARAMETER temperature 0.7
//! PARAMETER stop "<|im_end|>"
//! TEMPLATE """{{ .Prompt }}"""
//! SYSTEM You are terse.
//! LICENSE """..."""
//! MESSAGE user Hello
//! ```
//!
//! Commands are case-insensitive. A value runs to the end of its line, or is quoted:
//! `"..."` or `"""..."""`, either of which may span lines and ends at a closing quote
//! followed by whitespace or the end of input, as in Ollama's parser. `PARAMETER`
//! values are checked through [`Options::from_parameters`], so every option (K/V cache
//! types and flash attention included) is validated as the API validates it.
//! `ADAPTER` is refused: LoRA adapters are not supported. `REQUIRES` is accepted and
//! ignored. Every error names its line.

#[cfg(test)]
mod tests;

use thiserror::Error;

use crate::options::{Options, OptionsError};

/// A Modelfile error, with the 1-based line it is on.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("Modelfile line {line}: {kind}")]
pub struct ModelfileError {
    /// Where.
    pub line: usize,
    /// What.
    pub kind: ModelfileErrorKind,
}

/// What is wrong with a Modelfile.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ModelfileErrorKind {
    /// A command that is not one of Ollama's.
    #[error("unknown command {0:?}: use FROM, PARAMETER, TEMPLATE, SYSTEM, LICENSE or MESSAGE")]
    UnknownCommand(String),
    /// A command Ollama has that this server does not support.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A command without what it needs (`PARAMETER` without a name, `FROM` empty, ...).
    #[error("{0}")]
    Missing(&'static str),
    /// A quoted value whose closing quote never comes.
    #[error("the value opened with {0} is never closed")]
    Unclosed(&'static str),
    /// Text after a closing quote on the same line.
    #[error("unexpected text after the closing quote: {0:?}")]
    AfterQuote(String),
    /// `MESSAGE` with a role other than system, user or assistant.
    #[error("message role must be one of \"system\", \"user\", or \"assistant\", not {0:?}")]
    Role(String),
    /// A `PARAMETER` that is not a valid option value.
    #[error(transparent)]
    Parameter(OptionsError),
    /// No `FROM` line at all.
    #[error("no FROM line: name the model or GGUF file to build on")]
    NoFrom,
}

/// One command of a Modelfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `FROM`: a model name, a blob digest or a file path.
    From(String),
    /// `PARAMETER name value`, the value as written.
    Parameter {
        /// The option's name.
        name: String,
        /// Its value, as text.
        value: String,
    },
    /// `TEMPLATE`.
    Template(String),
    /// `SYSTEM`.
    System(String),
    /// `LICENSE`; a Modelfile may have several.
    License(String),
    /// `MESSAGE role content`: a turn of conversation stored with the model.
    Message {
        /// `system`, `user` or `assistant`.
        role: String,
        /// The text.
        content: String,
    },
}

/// A parsed Modelfile: its commands in order, with their lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Modelfile {
    /// `(line, command)` in the order written.
    pub commands: Vec<(usize, Command)>,
    /// The `PARAMETER` lines, checked and typed.
    pub options: Options,
}

impl Modelfile {
    /// Parses and checks a Modelfile.
    pub fn parse(text: &str) -> Result<Self, ModelfileError> {
        let commands = parse_commands(text)?;
        if !commands.iter().any(|(_, c)| matches!(c, Command::From(_))) {
            return Err(ModelfileError {
                line: text.lines().count().max(1),
                kind: ModelfileErrorKind::NoFrom,
            });
        }
        let mut parameters = Vec::new();
        for (line, command) in &commands {
            if let Command::Parameter { name, value } = command {
                // Checked one by one so that an error names its line.
                Options::from_parameters([(name.as_str(), value.as_str())]).map_err(|e| {
                    ModelfileError {
                        line: *line,
                        kind: ModelfileErrorKind::Parameter(e),
                    }
                })?;
                parameters.push((name.as_str(), value.as_str()));
            }
        }
        let options = Options::from_parameters(parameters).map_err(|e| ModelfileError {
            line: 1,
            kind: ModelfileErrorKind::Parameter(e),
        })?;
        Ok(Self { commands, options })
    }

    /// The last `FROM` (Ollama uses the last one too).
    pub fn from(&self) -> Option<&str> {
        self.commands.iter().rev().find_map(|(_, c)| match c {
            Command::From(from) => Some(from.as_str()),
            _ => None,
        })
    }

    /// The text of the last command that `pick` accepts.
    fn last(&self, pick: impl Fn(&Command) -> Option<&String>) -> Option<String> {
        self.commands
            .iter()
            .rev()
            .find_map(|(_, c)| pick(c))
            .cloned()
    }

    /// The last `TEMPLATE`.
    pub fn template(&self) -> Option<String> {
        self.last(|c| match c {
            Command::Template(t) => Some(t),
            _ => None,
        })
    }

    /// The last `SYSTEM`.
    pub fn system(&self) -> Option<String> {
        self.last(|c| match c {
            Command::System(t) => Some(t),
            _ => None,
        })
    }

    /// Every `LICENSE`, in order.
    pub fn licenses(&self) -> Vec<String> {
        self.commands
            .iter()
            .filter_map(|(_, c)| match c {
                Command::License(t) => Some(t.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every `MESSAGE` as `(role, content)`, in order.
    pub fn messages(&self) -> Vec<(String, String)> {
        self.commands
            .iter()
            .filter_map(|(_, c)| match c {
                Command::Message { role, content } => Some((role.clone(), content.clone())),
                _ => None,
            })
            .collect()
    }
}

/// A cursor over the text that counts lines.
struct Cursor<'a> {
    rest: &'a str,
    line: usize,
}

impl<'a> Cursor<'a> {
    fn error(&self, kind: ModelfileErrorKind) -> ModelfileError {
        ModelfileError {
            line: self.line,
            kind,
        }
    }

    /// Moves past `n` bytes, counting the newlines in them.
    fn advance(&mut self, n: usize) -> &'a str {
        let n = n.min(self.rest.len());
        let taken = self.rest.get(..n).unwrap_or(self.rest);
        self.line += taken.matches('\n').count();
        self.rest = &self.rest[taken.len()..];
        taken
    }

    /// Takes the characters that `keep` accepts.
    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let n = self
            .rest
            .char_indices()
            .find(|&(_, c)| !keep(c))
            .map_or(self.rest.len(), |(i, _)| i);
        self.advance(n)
    }

    fn skip_blanks(&mut self) {
        self.take_while(|c| c == ' ' || c == '\t');
    }

    /// The rest of the current line (without its line break), and moves past the break.
    fn rest_of_line(&mut self) -> &'a str {
        let text = self.take_while(|c| c != '\n');
        self.advance(1);
        text.strip_suffix('\r').unwrap_or(text)
    }
}

fn parse_commands(text: &str) -> Result<Vec<(usize, Command)>, ModelfileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut cursor = Cursor {
        rest: text,
        line: 1,
    };
    let mut commands = Vec::new();
    loop {
        cursor.take_while(char::is_whitespace);
        if cursor.rest.is_empty() {
            return Ok(commands);
        }
        if cursor.rest.starts_with('#') {
            cursor.rest_of_line();
            continue;
        }
        let line = cursor.line;
        let word = cursor.take_while(|c| c.is_ascii_alphabetic());
        let next = cursor.rest.chars().next();
        if word.is_empty() || next.is_some_and(|c| c != ' ' && c != '\t' && c != '\r' && c != '\n')
        {
            let shown: String = cursor.rest_of_line().chars().take(40).collect();
            return Err(ModelfileError {
                line,
                kind: ModelfileErrorKind::UnknownCommand(format!("{word}{shown}")),
            });
        }
        let command = match word.to_ascii_lowercase().as_str() {
            "from" => Command::From(required(
                &mut cursor,
                "FROM needs a model name, a blob digest or a file",
            )?),
            "template" => Command::Template(value(&mut cursor)?),
            "system" => Command::System(value(&mut cursor)?),
            "license" => Command::License(value(&mut cursor)?),
            "parameter" => {
                cursor.skip_blanks();
                let name = cursor.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
                if name.is_empty() {
                    return Err(cursor.error(ModelfileErrorKind::Missing(
                        "PARAMETER needs a name and a value, as in PARAMETER temperature 0.7",
                    )));
                }
                let value = required(&mut cursor, "PARAMETER needs a value after its name")?;
                Command::Parameter {
                    name: name.to_owned(),
                    value,
                }
            }
            "message" => {
                cursor.skip_blanks();
                let role = cursor.take_while(|c| c.is_ascii_alphabetic());
                if !matches!(role, "system" | "user" | "assistant") {
                    return Err(cursor.error(ModelfileErrorKind::Role(role.to_owned())));
                }
                Command::Message {
                    role: role.to_owned(),
                    content: value(&mut cursor)?,
                }
            }
            "adapter" => {
                return Err(cursor.error(ModelfileErrorKind::Unsupported(
                    "ADAPTER: LoRA adapters are not supported; merge the adapter into the \
                     weights (llama.cpp's export-lora) and use the merged GGUF in FROM",
                )));
            }
            "renderer" | "parser" => {
                return Err(cursor.error(ModelfileErrorKind::Unsupported(
                    "RENDERER and PARSER name Ollama's built-in Go renderers, which this \
                     server does not have; give a TEMPLATE instead",
                )));
            }
            "requires" => {
                // The Ollama version a model needs: nothing to check here.
                value(&mut cursor)?;
                continue;
            }
            _ => {
                return Err(ModelfileError {
                    line,
                    kind: ModelfileErrorKind::UnknownCommand(word.to_owned()),
                });
            }
        };
        commands.push((line, command));
    }
}

/// A value that must not be empty.
fn required(cursor: &mut Cursor, missing: &'static str) -> Result<String, ModelfileError> {
    let line = cursor.line;
    let text = value(cursor)?;
    if text.is_empty() {
        return Err(ModelfileError {
            line,
            kind: ModelfileErrorKind::Missing(missing),
        });
    }
    Ok(text)
}

/// A command's value: quoted (`"""..."""` or `"..."`, possibly over several lines) or
/// the rest of the line, trimmed.
fn value(cursor: &mut Cursor) -> Result<String, ModelfileError> {
    cursor.skip_blanks();
    for quote in ["\"\"\"", "\""] {
        if !cursor.rest.starts_with(quote) {
            continue;
        }
        let opened = cursor.line;
        let inner = &cursor.rest[quote.len()..];
        // The closing quote is one followed by whitespace or the end of input.
        let close = inner.match_indices(quote).map(|(i, _)| i).find(|&i| {
            inner[i + quote.len()..]
                .chars()
                .next()
                .is_none_or(char::is_whitespace)
        });
        let Some(close) = close else {
            return Err(ModelfileError {
                line: opened,
                kind: ModelfileErrorKind::Unclosed(if quote.len() == 3 { "\"\"\"" } else { "\"" }),
            });
        };
        cursor.advance(quote.len());
        let text = cursor.advance(close).to_owned();
        cursor.advance(quote.len());
        let closed = cursor.line;
        let after = cursor.rest_of_line().trim();
        if !after.is_empty() {
            return Err(ModelfileError {
                line: closed,
                kind: ModelfileErrorKind::AfterQuote(after.to_owned()),
            });
        }
        return Ok(text);
    }
    Ok(cursor.rest_of_line().trim().to_owned())
}
