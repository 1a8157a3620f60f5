//! Reading one option's JSON value as the type its name asks for.

use serde_json::Value;

use super::OptionsError;

/// The JSON type an option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A whole number; integral floats (`4096.0`, as Go clients send) are accepted.
    Integer,
    /// A number.
    Float,
    /// `true` or `false`.
    Bool,
    /// A string.
    Str,
    /// A string or an array of strings.
    Strings,
}

impl Kind {
    /// How the type is named in error messages.
    pub(super) fn expected(self) -> &'static str {
        match self {
            Kind::Integer => "a whole number",
            Kind::Float => "a number",
            Kind::Bool => "a boolean (true or false)",
            Kind::Str => "a string",
            Kind::Strings => "a string or an array of strings",
        }
    }
}

/// `value` as JSON text for an error message, shortened when long.
pub(super) fn shown(value: &Value) -> String {
    const MAX: usize = 60;
    let text = value.to_string();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn wrong_type(name: &str, value: &Value, kind: Kind) -> OptionsError {
    OptionsError::WrongType {
        name: name.to_owned(),
        value: shown(value),
        expected: kind.expected(),
    }
}

fn out_of_range(name: &str, value: &Value, accepted: impl Into<String>) -> OptionsError {
    OptionsError::OutOfRange {
        name: name.to_owned(),
        value: shown(value),
        accepted: accepted.into(),
    }
}

/// An integer in `min..=max`; `accepted` says what the range means.
pub(super) fn integer(
    name: &str,
    value: &Value,
    min: i64,
    max: i64,
    accepted: &str,
) -> Result<i64, OptionsError> {
    let Value::Number(n) = value else {
        return Err(wrong_type(name, value, Kind::Integer));
    };
    let n = if let Some(i) = n.as_i64() {
        i
    } else if n.is_u64() {
        return Err(out_of_range(name, value, accepted));
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        if f.fract() != 0.0 || !f.is_finite() {
            return Err(wrong_type(name, value, Kind::Integer));
        }
        // 2^63 is exact in f64; anything from there on does not fit.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if !(-LIMIT..LIMIT).contains(&f) {
            return Err(out_of_range(name, value, accepted));
        }
        f as i64
    };
    if n < min || n > max {
        return Err(out_of_range(name, value, accepted));
    }
    Ok(n)
}

/// An `i32` in `min..=max`.
pub(super) fn int32(
    name: &str,
    value: &Value,
    min: i32,
    accepted: &str,
) -> Result<i32, OptionsError> {
    let n = integer(name, value, min.into(), i32::MAX.into(), accepted)?;
    Ok(i32::try_from(n).unwrap_or(i32::MAX))
}

/// A `u32` at least `min`.
pub(super) fn uint32(
    name: &str,
    value: &Value,
    min: u32,
    accepted: &str,
) -> Result<u32, OptionsError> {
    let n = integer(name, value, min.into(), u32::MAX.into(), accepted)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// A finite `f32` for which `ok` holds.
pub(super) fn float(
    name: &str,
    value: &Value,
    ok: impl Fn(f32) -> bool,
    accepted: &str,
) -> Result<f32, OptionsError> {
    let Some(f) = value.as_f64() else {
        return Err(wrong_type(name, value, Kind::Float));
    };
    let f = f as f32;
    if !f.is_finite() || !ok(f) {
        return Err(out_of_range(name, value, accepted));
    }
    Ok(f)
}

/// A boolean.
pub(super) fn boolean(name: &str, value: &Value) -> Result<bool, OptionsError> {
    value
        .as_bool()
        .ok_or_else(|| wrong_type(name, value, Kind::Bool))
}

/// A string.
pub(super) fn string<'a>(name: &str, value: &'a Value) -> Result<&'a str, OptionsError> {
    value
        .as_str()
        .ok_or_else(|| wrong_type(name, value, Kind::Str))
}

/// A string or an array of strings, none of them empty.
pub(super) fn strings(name: &str, value: &Value) -> Result<Vec<String>, OptionsError> {
    let list = match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| wrong_type(name, value, Kind::Strings))?,
        _ => return Err(wrong_type(name, value, Kind::Strings)),
    };
    if list.iter().any(String::is_empty) {
        return Err(out_of_range(name, value, "non-empty strings"));
    }
    Ok(list)
}

/// A value for an option of `kind` written as text (a Modelfile `PARAMETER` line), as
/// JSON, or `None` when the text is not of that kind.
pub(super) fn from_text(kind: Kind, text: &str) -> Option<Value> {
    let text = text.trim();
    match kind {
        Kind::Integer => match text.parse::<i64>() {
            Ok(i) => Some(Value::from(i)),
            Err(_) => finite(text),
        },
        Kind::Float => finite(text),
        // Go's strconv.ParseBool, which Ollama uses for Modelfiles.
        Kind::Bool => match text {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(Value::Bool(true)),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(Value::Bool(false)),
            _ => None,
        },
        Kind::Str | Kind::Strings => Some(Value::from(text)),
    }
}

fn finite(text: &str) -> Option<Value> {
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Value::from)
}
