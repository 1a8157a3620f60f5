//! Splits a Go template into text and the tokens of its actions (`{{ ... }}`), with
//! the whitespace trimming of `{{-` and `-}}` applied and comments dropped, as Go's
//! `text/template/parse` lexer does.

use super::GoTemplateError;

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// Text outside actions, already trimmed.
    Text(String),
    /// `{{`.
    Open,
    /// `}}`.
    Close,
    /// A keyword or function name: `if`, `range`, `eq`, `json`, ...
    Ident(String),
    /// `.Name` (the name without its dot).
    Field(String),
    /// `$` or `$name` (with the `$`).
    Var(String),
    /// `.` alone.
    Dot,
    /// A string literal, unescaped.
    Str(String),
    /// An integer literal.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// `|`.
    Pipe,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `,`.
    Comma,
    /// `:=`.
    Declare,
    /// `=`.
    Assign,
}

/// A token with where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Its 1-based line.
    pub line: usize,
    /// Whether space came before it inside an action (`.A .B` is two arguments,
    /// `.A.B` one field chain).
    pub spaced: bool,
}

/// Tokenizes `source`.
pub fn lex(source: &str) -> Result<Vec<Token>, GoTemplateError> {
    let mut tokens = Vec::new();
    let mut rest = source;
    let mut line = 1;
    let mut trim_next_text = false;
    while !rest.is_empty() {
        let at = rest.find("{{");
        let raw = &rest[..at.unwrap_or(rest.len())];
        let skipped = if trim_next_text {
            raw.len() - raw.trim_start_matches(is_space).len()
        } else {
            0
        };
        let mut text = &raw[skipped..];
        let text_line = line + raw[..skipped].matches('\n').count();
        line += raw.matches('\n').count();
        let Some(at) = at else {
            push_text(&mut tokens, text, text_line);
            break;
        };
        let body = &rest[at + 2..];
        let trim_left = body.starts_with('-') && body[1..].starts_with(is_space);
        if trim_left {
            text = text.trim_end_matches(is_space);
        }
        push_text(&mut tokens, text, text_line);
        let body = if trim_left { &body[1..] } else { body };
        let (consumed, trim_right) = lex_action(body, &mut line, &mut tokens)?;
        trim_next_text = trim_right;
        rest = &body[consumed..];
    }
    Ok(tokens)
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn push_text(tokens: &mut Vec<Token>, text: &str, line: usize) {
    if !text.is_empty() {
        tokens.push(Token {
            tok: Tok::Text(text.to_owned()),
            line,
            spaced: false,
        });
    }
}

/// Lexes one action's inside (after `{{` and any `-`) up to and including `}}`.
/// Returns the bytes consumed and whether it ended with `-}}`.
fn lex_action(
    body: &str,
    line: &mut usize,
    tokens: &mut Vec<Token>,
) -> Result<(usize, bool), GoTemplateError> {
    let start_line = *line;
    let error = |line: usize, message: String| GoTemplateError::Syntax { line, message };
    // A comment is the whole action: {{/* ... */}}, with optional trim markers.
    let trimmed = body.trim_start_matches(is_space);
    if trimmed.starts_with("/*") {
        let skipped = body.len() - trimmed.len();
        let Some(end) = trimmed.find("*/") else {
            return Err(error(start_line, "unclosed comment".into()));
        };
        *line += body[..skipped + end].matches('\n').count();
        let after = &trimmed[end + 2..];
        let (close, trim_right) = if after.starts_with(" -}}") {
            (4, true)
        } else if after.starts_with("}}") {
            (2, false)
        } else {
            return Err(error(*line, "comment ends before closing delimiter".into()));
        };
        return Ok((skipped + end + 2 + close, trim_right));
    }
    tokens.push(Token {
        tok: Tok::Open,
        line: start_line,
        spaced: false,
    });
    let bytes = body.as_bytes();
    let mut i = 0;
    let mut spaced = true;
    loop {
        let Some(&b) = bytes.get(i) else {
            return Err(error(start_line, "unclosed action".into()));
        };
        let here = *line;
        let mut push = |tok: Tok, spaced: bool| {
            tokens.push(Token {
                tok,
                line: here,
                spaced,
            })
        };
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                let ahead = body[i..].trim_start_matches(is_space);
                if ahead.starts_with("-}}") {
                    let dash = body.len() - ahead.len();
                    *line += body[i..dash].matches('\n').count();
                    push(Tok::Close, false);
                    return Ok((dash + 3, true));
                }
                if b == b'\n' {
                    *line += 1;
                }
                i += 1;
                spaced = true;
                continue;
            }
            b'}' if body[i..].starts_with("}}") => {
                push(Tok::Close, false);
                return Ok((i + 2, false));
            }
            b'|' => push(Tok::Pipe, spaced),
            b'(' => push(Tok::LParen, spaced),
            b')' => push(Tok::RParen, spaced),
            b',' => push(Tok::Comma, spaced),
            b'=' => push(Tok::Assign, spaced),
            b':' if bytes.get(i + 1) == Some(&b'=') => {
                push(Tok::Declare, spaced);
                i += 1;
            }
            b'"' | b'`' | b'\'' => {
                let (tok, len) = quoted(&body[i..]).map_err(|m| error(here, m))?;
                *line += body[i..i + len].matches('\n').count();
                push(tok, spaced);
                i += len;
                spaced = false;
                continue;
            }
            b'$' => {
                let len = 1 + ident_len(&body[i + 1..]);
                push(Tok::Var(body[i..i + len].to_owned()), spaced);
                i += len;
                spaced = false;
                continue;
            }
            b'.' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let (tok, len) = number(&body[i..]).map_err(|m| error(here, m))?;
                push(tok, spaced);
                i += len;
                spaced = false;
                continue;
            }
            b'.' => {
                let len = ident_len(&body[i + 1..]);
                if len == 0 {
                    push(Tok::Dot, spaced);
                } else {
                    push(Tok::Field(body[i + 1..i + 1 + len].to_owned()), spaced);
                }
                i += 1 + len;
                spaced = false;
                continue;
            }
            b'0'..=b'9' | b'-' | b'+' => {
                let (tok, len) = number(&body[i..]).map_err(|m| error(here, m))?;
                push(tok, spaced);
                i += len;
                spaced = false;
                continue;
            }
            _ => {
                let len = ident_len(&body[i..]);
                if len == 0 {
                    let c = body[i..].chars().next().unwrap_or('?');
                    return Err(error(here, format!("unexpected {c:?} in action")));
                }
                push(Tok::Ident(body[i..i + len].to_owned()), spaced);
                i += len;
                spaced = false;
                continue;
            }
        }
        i += 1;
        spaced = false;
    }
}

/// The length of the identifier (letters, digits, `_`) at the start of `s`.
fn ident_len(s: &str) -> usize {
    s.char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
        .map_or(s.len(), |(i, _)| i)
}

/// A number literal at the start of `s`: decimal, hex, octal or binary integers, and
/// floats with a fraction or exponent.
fn number(s: &str) -> Result<(Tok, usize), String> {
    let len = s
        .char_indices()
        .find(|&(i, c)| {
            let sign_ok = (c == '-' || c == '+')
                && (i == 0 || matches!(s.as_bytes().get(i - 1), Some(b'e' | b'E' | b'p' | b'P')));
            !(c.is_ascii_alphanumeric() || c == '.' || c == '_' || sign_ok)
        })
        .map_or(s.len(), |(i, _)| i);
    let text = &s[..len];
    let clean = text.replace('_', "");
    let (negative, digits) = match clean.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean)),
    };
    let radix = |prefix: &[&str], radix: u32| {
        prefix
            .iter()
            .find_map(|p| digits.strip_prefix(p))
            .and_then(|d| i64::from_str_radix(d, radix).ok())
    };
    let int = radix(&["0x", "0X"], 16)
        .or_else(|| radix(&["0b", "0B"], 2))
        .or_else(|| radix(&["0o", "0O"], 8))
        .or_else(|| digits.parse::<i64>().ok());
    if let Some(i) = int {
        return Ok((Tok::Int(if negative { -i } else { i }), len));
    }
    match digits.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok((Tok::Float(if negative { -f } else { f }), len)),
        _ => Err(format!("bad number syntax: {text:?}")),
    }
}

/// A string (`"..."` with Go escapes, or raw `` `...` ``) or a character (`'a'`, an
/// integer as in Go) at the start of `s`.
fn quoted(s: &str) -> Result<(Tok, usize), String> {
    let mut chars = s.char_indices();
    let quote = chars.next().map(|(_, c)| c).unwrap_or('"');
    if quote == '`' {
        return match s[1..].find('`') {
            Some(end) => Ok((Tok::Str(s[1..1 + end].to_owned()), end + 2)),
            None => Err("unterminated raw quoted string".into()),
        };
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\n' => break,
            c if c == quote => {
                if quote == '\'' {
                    let mut it = out.chars();
                    return match (it.next(), it.next()) {
                        (Some(ch), None) => Ok((Tok::Int(ch as i64), i + 1)),
                        _ => Err(format!("malformed character constant: {}", &s[..=i])),
                    };
                }
                return Ok((Tok::Str(out), i + 1));
            }
            '\\' => {
                let Some((_, e)) = chars.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    '0' => out.push('\0'),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n)
                            .filter_map(|_| chars.next().map(|(_, c)| c))
                            .collect();
                        let ch = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                        match ch {
                            Some(ch) if hex.len() == n => out.push(ch),
                            _ => return Err(format!("bad escape \\{e}{hex}")),
                        }
                    }
                    other => return Err(format!("unknown escape sequence \\{other}")),
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated quoted string".into())
}
