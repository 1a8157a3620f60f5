//! The values a Go template sees: what Ollama's Go structs and maps look like through
//! `text/template`, and how they print (`{{ . }}`) and encode (`json`).

use std::sync::Arc;

/// One value in a template's data.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Go's nil, and what a missing map key gives (`missingkey=zero`).
    Nil,
    /// A bool.
    Bool(bool),
    /// An integer (Go's `int`).
    Int(i64),
    /// A float (Go's `float64`, what JSON numbers with a fraction decode to).
    Float(f64),
    /// A string.
    Str(Arc<str>),
    /// A slice.
    List(Arc<Vec<Value>>),
    /// A struct or a map, see [`Object`].
    Object(Arc<Object>),
}

/// A Go struct (fields reached by their Go names, `.Role`) or map (keys reached as
/// written, `.location`). Both keep their JSON names for `json` and printing.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// `(JSON name, value)`, in the order `json` writes them.
    pub fields: Vec<(String, Value)>,
    /// A struct: `.Name` finds the field whose JSON name is `name`. A map: keys are
    /// found as written.
    pub is_struct: bool,
    /// A Go map, whose keys `range` and `json` sort; otherwise the fields keep their
    /// order (a struct's, or the ordered maps Ollama keeps tool properties and call
    /// arguments in, as the client sent them).
    pub sorted: bool,
}

impl Object {
    /// The value under `name`: a struct's field by its Go name, a map's key as written.
    pub fn get(&self, name: &str) -> Option<&Value> {
        if self.is_struct {
            self.fields
                .iter()
                .find(|(key, _)| go_name_matches(key, name))
                .map(|(_, v)| v)
        } else {
            self.fields
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, v)| v)
        }
    }

    /// The entries in `range` order: a map's sorted by key, as Go ranges over maps.
    pub fn entries(&self) -> Vec<(&str, &Value)> {
        let mut entries: Vec<(&str, &Value)> =
            self.fields.iter().map(|(k, v)| (k.as_str(), v)).collect();
        if self.sorted {
            entries.sort_by(|a, b| a.0.cmp(b.0));
        }
        entries
    }
}

/// Whether a field written `json_name` in JSON is the Go field `go_name`: the same word
/// with its first letter upper case (`role` is `Role`, `tool_calls` is `ToolCalls`,
/// `$defs` is `Defs`).
fn go_name_matches(json_name: &str, go_name: &str) -> bool {
    let words = json_name.trim_start_matches('$').split('_');
    let mut joined = String::with_capacity(json_name.len());
    for word in words {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            joined.extend(first.to_uppercase());
            joined.push_str(chars.as_str());
        }
    }
    joined == go_name
}

impl Value {
    /// A string value.
    pub fn str(s: impl Into<Arc<str>>) -> Self {
        Value::Str(s.into())
    }

    /// A struct with these fields, in this order.
    pub fn structure(fields: Vec<(&str, Value)>) -> Self {
        Value::Object(Arc::new(Object {
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            is_struct: true,
            sorted: false,
        }))
    }

    /// Go's truth: false, 0, nil and empty strings, slices and maps are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Object(o) => o.is_struct || !o.fields.is_empty(),
        }
    }

    /// The Go type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "slice",
            Value::Object(o) if o.is_struct => "struct",
            Value::Object(_) => "map",
        }
    }

    /// The value as `{{ . }}` prints it. Structs and maps print as JSON, as every one
    /// Ollama gives a template does (`api.Tool`, `ToolCallFunctionArguments`, ... have a
    /// JSON `String` method); nil prints nothing where Go prints `<no value>`.
    pub fn print(&self, out: &mut String) {
        match self {
            Value::Nil => {}
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) => out.push_str(&go_float(*f)),
            Value::Str(s) => out.push_str(s),
            // A list of structs is `api.Tools` or a list of tool calls: JSON in Ollama.
            Value::List(items) if items.iter().any(|i| matches!(i, Value::Object(_))) => {
                self.write_json(out)
            }
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    item.print(out);
                }
                out.push(']');
            }
            Value::Object(_) => self.write_json(out),
        }
    }

    /// The value as Go's `json.Marshal` writes it: compact, map keys sorted, `<`, `>`
    /// and `&` escaped (what Ollama's `json` template function gives).
    pub fn write_json(&self, out: &mut String) {
        match self {
            Value::Nil => out.push_str("null"),
            Value::Bool(_) | Value::Int(_) => self.print(out),
            Value::Float(f) if f.is_finite() => out.push_str(&json_float(*f)),
            Value::Float(_) => out.push_str("null"),
            Value::Str(s) => json_string(s, out),
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Value::Object(o) => {
                out.push('{');
                for (i, (key, value)) in o.entries().into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_string(key, out);
                    out.push(':');
                    value.write_json(out);
                }
                out.push('}');
            }
        }
    }

    /// The value as printed text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.print(&mut out);
        out
    }
}

/// A float as Go's `%v` prints it (`strconv` 'g' with the shortest digits).
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e21).contains(&abs) {
        return exponent_form(f);
    }
    format!("{f}")
}

/// A float as Go's JSON encoder writes it: plain digits between 1e-6 and 1e21.
fn json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        return exponent_form(f);
    }
    format!("{f}")
}

/// `1e+21`, `1.5e-07`: Go's exponent form (sign and at least two exponent digits).
fn exponent_form(f: f64) -> String {
    let text = format!("{f:e}");
    match text.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => text,
    }
}

/// A JSON string as Go's encoder writes it, with its HTML-safe escapes.
fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Where a JSON object sits in Ollama's request types (current Ollama's `api` package),
/// which decides whether it is a struct (field order fixed by Go, unknown keys kept
/// after), an ordered map, or a plain Go map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `api.Tool`: `type`, `items`, `function`.
    Tool,
    /// `api.ToolFunction`: `name`, `description`, `parameters`.
    Function,
    /// `api.ToolFunctionParameters`: `type`, `$defs`, `items`, `required`, `properties`.
    Parameters,
    /// The `properties` of parameter name to property, in the client's order.
    Properties,
    /// `api.ToolProperty`: `anyOf`, `type`, `items`, `description`, `enum`,
    /// `properties`, `required`.
    Property,
    /// `api.ToolCall`: `id`, `function`.
    ToolCall,
    /// `api.ToolCallFunction`: `index`, `name`, `arguments`.
    CallFunction,
    /// A call's `arguments`, in the order the model wrote them.
    Arguments,
    /// Any JSON below (`$defs`, an argument's value, ...): Go maps all the way down.
    Any,
}

impl Shape {
    /// Go's field order for a struct; `None` for a map.
    fn fields(self) -> Option<&'static [&'static str]> {
        match self {
            Shape::Tool => Some(&["type", "items", "function"]),
            Shape::Function => Some(&["name", "description", "parameters"]),
            Shape::Parameters => Some(&["type", "$defs", "items", "required", "properties"]),
            Shape::Property => Some(&[
                "anyOf",
                "type",
                "items",
                "description",
                "enum",
                "properties",
                "required",
            ]),
            Shape::ToolCall => Some(&["id", "function"]),
            Shape::CallFunction => Some(&["index", "name", "arguments"]),
            Shape::Properties | Shape::Arguments | Shape::Any => None,
        }
    }

    /// The shape of the value under `key` of an object of this shape.
    fn child(self, key: &str) -> Shape {
        match (self, key) {
            (Shape::Tool, "function") => Shape::Function,
            (Shape::Function, "parameters") => Shape::Parameters,
            (Shape::Parameters | Shape::Property, "properties") => Shape::Properties,
            (Shape::Property, "anyOf") | (Shape::Properties, _) => Shape::Property,
            (Shape::ToolCall, "function") => Shape::CallFunction,
            (Shape::CallFunction, "arguments") => Shape::Arguments,
            _ => Shape::Any,
        }
    }
}

/// Converts JSON as the client sent it (keys in its order) to a template value of the
/// given shape; lists keep the shape for their elements.
pub fn from_json(json: &minijinja::Value, shape: Shape) -> Value {
    use minijinja::value::ValueKind;
    match json.kind() {
        ValueKind::Undefined | ValueKind::None => Value::Nil,
        ValueKind::Bool => Value::Bool(json.is_true()),
        ValueKind::Number => match i64::try_from(json.clone()) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(f64::try_from(json.clone()).unwrap_or(0.0)),
        },
        ValueKind::String => Value::str(json.as_str().unwrap_or_default()),
        ValueKind::Map => {
            let keys: Vec<minijinja::Value> =
                json.try_iter().map(Iterator::collect).unwrap_or_default();
            let mut fields: Vec<(String, Value)> = keys
                .iter()
                .map(|key| {
                    let name = key.as_str().map_or_else(|| key.to_string(), str::to_owned);
                    let value = json.get_item(key).unwrap_or_default();
                    let child = from_json(&value, shape.child(&name));
                    (name, child)
                })
                .collect();
            let order = shape.fields();
            if let Some(order) = order {
                let rank = |key: &str| order.iter().position(|k| *k == key).unwrap_or(order.len());
                fields.sort_by_key(|(k, _)| rank(k));
            }
            Value::Object(Arc::new(Object {
                fields,
                is_struct: order.is_some(),
                sorted: shape == Shape::Any,
            }))
        }
        ValueKind::Seq | ValueKind::Iterable => Value::List(Arc::new(
            json.try_iter()
                .map(|items| items.map(|item| from_json(&item, shape)).collect())
                .unwrap_or_default(),
        )),
        _ => Value::str(json.to_string()),
    }
}
