//! The functions a template can call: Go's `text/template` builtins that Ollama's
//! templates use, and Ollama's `json`. Errors are Go's wording where it has one.

use std::cmp::Ordering;
use std::sync::Arc;

use super::value::Value;

/// Calls function `name` with `args` (any piped value last). `and` and `or` are
/// evaluated lazily by the caller and are not here.
pub fn call(name: &str, args: &[Value]) -> Result<Value, String> {
    match name {
        "not" => {
            let [v] = args else {
                return Err(arity(1, args));
            };
            Ok(Value::Bool(!v.truthy()))
        }
        "len" => {
            let [v] = args else {
                return Err(arity(1, args));
            };
            let n = match v {
                Value::Str(s) => s.len(),
                Value::List(l) => l.len(),
                Value::Object(o) if !o.is_struct => o.fields.len(),
                other => return Err(format!("len of type {}", other.type_name())),
            };
            Ok(Value::Int(n as i64))
        }
        "index" => index(args),
        "slice" => slice(args),
        "eq" => {
            let [first, rest @ ..] = args else {
                return Err(arity(1, args));
            };
            if rest.is_empty() {
                return Err("missing argument for comparison".into());
            }
            for other in rest {
                if equal(first, other)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" => {
            let [a, b] = args else {
                return Err(arity(2, args));
            };
            Ok(Value::Bool(!equal(a, b)?))
        }
        "lt" | "le" | "gt" | "ge" => {
            let [a, b] = args else {
                return Err(arity(2, args));
            };
            let order = compare(a, b)?;
            Ok(Value::Bool(match name {
                "lt" => order == Ordering::Less,
                "le" => order != Ordering::Greater,
                "gt" => order == Ordering::Greater,
                _ => order != Ordering::Less,
            }))
        }
        "json" => {
            let [v] = args else {
                return Err(arity(1, args));
            };
            let mut out = String::new();
            v.write_json(&mut out);
            Ok(Value::str(out))
        }
        "print" => Ok(Value::str(sprint(args))),
        "println" => {
            let words: Vec<String> = args.iter().map(Value::to_text).collect();
            Ok(Value::str(words.join(" ") + "\n"))
        }
        "printf" => {
            let [format, rest @ ..] = args else {
                return Err(arity(1, args));
            };
            let Value::Str(format) = format else {
                return Err("printf's format must be a string".into());
            };
            Ok(Value::str(printf(format, rest)))
        }
        // Newer Ollama's: today's and yesterday's date (arguments ignored, as there).
        "currentDate" => Ok(Value::str(date(0))),
        "yesterdayDate" => Ok(Value::str(date(1))),
        "toTypeScriptType" => {
            let [v] = args else {
                return Err(arity(1, args));
            };
            Ok(Value::str(typescript_type(v)))
        }
        other => Err(format!("function {other:?} not defined")),
    }
}

fn arity(want: usize, got: &[Value]) -> String {
    format!("wrong number of args: want {want} got {}", got.len())
}

/// `index x 1 2`: an element of a list (by position) or a map (by key), nested.
fn index(args: &[Value]) -> Result<Value, String> {
    let [item, keys @ ..] = args else {
        return Err(arity(1, args));
    };
    let mut current = item.clone();
    for key in keys {
        current = match (&current, key) {
            (Value::List(items), key) => {
                let i = as_int(key)?;
                usize::try_from(i)
                    .ok()
                    .and_then(|i| items.get(i))
                    .cloned()
                    .ok_or_else(|| format!("index out of range: {i}"))?
            }
            (Value::Str(s), key) => {
                let i = as_int(key)?;
                let byte = usize::try_from(i).ok().and_then(|i| s.as_bytes().get(i));
                Value::Int(i64::from(
                    *byte.ok_or_else(|| format!("index out of range: {i}"))?,
                ))
            }
            (Value::Object(o), Value::Str(k)) => o.get(k).cloned().unwrap_or(Value::Nil),
            (Value::Nil, _) => return Err("index of untyped nil".into()),
            (other, key) => {
                return Err(format!(
                    "can't index item of type {} with {}",
                    other.type_name(),
                    key.type_name()
                ));
            }
        };
    }
    Ok(current)
}

/// `slice x 1 2`: a part of a list or string (by bytes, as Go's strings are).
fn slice(args: &[Value]) -> Result<Value, String> {
    let [item, bounds @ ..] = args else {
        return Err(arity(1, args));
    };
    if bounds.len() > 2 {
        return Err("too many slice indexes".into());
    }
    let len = match item {
        Value::List(l) => l.len(),
        Value::Str(s) => s.len(),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    let bound = |i: usize, default: usize| -> Result<usize, String> {
        match bounds.get(i) {
            None => Ok(default),
            Some(v) => {
                let n = as_int(v)?;
                usize::try_from(n)
                    .ok()
                    .filter(|&n| n <= len)
                    .ok_or_else(|| format!("index out of range: {n}"))
            }
        }
    };
    let (start, end) = (bound(0, 0)?, bound(1, len)?);
    if start > end {
        return Err(format!("invalid slice index: {start} > {end}"));
    }
    match item {
        Value::List(l) => Ok(Value::List(Arc::new(l[start..end].to_vec()))),
        Value::Str(s) => s
            .get(start..end)
            .map(Value::str)
            .ok_or_else(|| "slice cuts a character in two".to_owned()),
        _ => Err("can't slice".into()),
    }
}

fn as_int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(format!(
            "cannot index slice/array with type {}",
            other.type_name()
        )),
    }
}

/// Go's `eq` on basic values; numbers compare by value whatever their kind.
fn equal(a: &Value, b: &Value) -> Result<bool, String> {
    Ok(match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Nil, _) | (_, Value::Nil) => false,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            compare(a, b)? == Ordering::Equal
        }
        (x, y) if x.type_name() == y.type_name() => {
            return Err(format!("non-comparable type {}", x.type_name()));
        }
        _ => return Err("incompatible types for comparison".into()),
    })
}

fn compare(a: &Value, b: &Value) -> Result<Ordering, String> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            let (x, y) = (number(a), number(b));
            x.partial_cmp(&y)
                .ok_or_else(|| "NaN is not ordered".to_owned())
        }
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        _ => Err(format!(
            "incompatible types for comparison: {} and {}",
            a.type_name(),
            b.type_name()
        )),
    }
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        _ => f64::NAN,
    }
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, arg) in args.iter().enumerate() {
        let is_str = |v: &Value| matches!(v, Value::Str(_));
        if i > 0 && !is_str(arg) && !is_str(&args[i - 1]) {
            out.push(' ');
        }
        arg.print(&mut out);
    }
    out
}

/// A small `fmt.Sprintf`: `%v %s %d %t %q %f %%`; flags and widths are ignored.
fn printf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // Skip flags, width and precision.
        let mut verb = chars.next();
        while let Some(v) = verb.filter(|v| "+-# 0123456789.".contains(*v)) {
            let _ = v;
            verb = chars.next();
        }
        match verb {
            Some('%') => out.push('%'),
            Some(verb) => match args.next() {
                Some(arg) => match verb {
                    'q' => arg.write_json(&mut out),
                    'f' => out.push_str(&format!("{:.6}", number(arg))),
                    _ => arg.print(&mut out),
                },
                None => out.push_str(&format!("%!{verb}(MISSING)")),
            },
            None => out.push_str("%!(NOVERB)"),
        }
    }
    out
}

/// The local date `days_ago` days back, as `2006-01-02`.
fn date(days_ago: i64) -> String {
    let day = chrono::Local::now() - chrono::Duration::days(days_ago);
    day.format("%Y-%m-%d").to_string()
}

/// A tool property's TypeScript type, as Ollama's `ToolProperty.ToTypeScriptType`:
/// `anyOf` joined by ` | `, else each JSON type mapped; `any` for anything else.
fn typescript_type(property: &Value) -> String {
    let Value::Object(o) = property else {
        return "any".into();
    };
    if let Some(Value::List(any_of)) = o.get("AnyOf").filter(|v| v.truthy()) {
        return any_of
            .iter()
            .map(typescript_type)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    let types: Vec<&str> = match o.get("Type") {
        Some(Value::Str(t)) => vec![t],
        Some(Value::List(ts)) => ts
            .iter()
            .filter_map(|t| match t {
                Value::Str(t) => Some(&**t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if types.is_empty() {
        return "any".into();
    }
    let map = |t: &str| match t {
        "string" => "string",
        "number" | "integer" => "number",
        "boolean" => "boolean",
        "array" => "any[]",
        "object" => "Record<string, any>",
        "null" => "null",
        _ => "any",
    };
    types.into_iter().map(map).collect::<Vec<_>>().join(" | ")
}
