//! `POST /api/show`: what a model is, as Ollama shows it: a Modelfile rebuilt from the
//! manifest, the stored parameters, template, system message and license, the details,
//! the GGUF metadata (`model_info`), the capabilities, and with `verbose` the tensors
//! and the large metadata arrays.
//!
//! This reads the store and the GGUF header directly rather than through the resolved
//! model cache: that cache compiles the chat template, and a model whose template does
//! not compile must still be shown (that is how a user finds out what it holds).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use chrono::SecondsFormat;
use gguf::{GgufFile, MetadataArray, MetadataValue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::fim::Fim;
use super::generate::parse_body;
use super::models::parse_name;
use super::{ApiError, AppState};
use crate::sched::Backend;
use crate::store::{ModelDetails, ResolvedModel};

/// Without `verbose`, metadata arrays longer than this are `null`, as Ollama shows the
/// vocabulary (`tokenizer.ggml.tokens`, `.scores`, `.merges`). Ollama nulls every
/// non-empty array; short ones (per-layer head counts, rope sections) are shown here
/// because they are cheap and say something about the model.
const MAX_ARRAY_WITHOUT_VERBOSE: usize = 16;

/// The width Ollama pads parameter names to in `parameters`.
const PARAMETER_NAME_WIDTH: usize = 30;

/// The request body, in Ollama's field names.
#[derive(Debug, Deserialize)]
pub struct ShowRequest {
    #[serde(default)]
    model: String,
    /// The field's name before Ollama 0.1.32; still sent by some clients.
    #[serde(default)]
    name: String,
    #[serde(default)]
    verbose: bool,
    /// Overrides the stored system message in the answer, as in Ollama.
    #[serde(default)]
    system: String,
}

/// The answer, in Ollama's `ShowResponse` field names; empty text fields are left out
/// as Ollama's `omitempty` does.
#[derive(Debug, Serialize)]
struct ShowResponse {
    #[serde(skip_serializing_if = "String::is_empty")]
    license: String,
    modelfile: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    parameters: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    template: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    system: String,
    details: ModelDetails,
    model_info: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tensors: Option<Vec<Tensor>>,
    capabilities: Vec<&'static str>,
    modified_at: String,
    /// The conversation stored with the model (Modelfile `MESSAGE`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    messages: Vec<crate::store::StoredMessage>,
    /// Ours: set when the stored Go template cannot be rendered and the GGUF's own
    /// Jinja template is used instead, saying why.
    #[serde(skip_serializing_if = "Option::is_none")]
    template_fallback: Option<String>,
}

/// One tensor as Ollama lists it.
#[derive(Debug, Serialize)]
struct Tensor {
    name: String,
    /// ggml's type name in Ollama's spelling: `Q4_K`, `F32`.
    #[serde(rename = "type")]
    kind: String,
    shape: Vec<u64>,
}

/// The handler.
pub async fn show<B: Backend>(
    State(state): State<AppState<B>>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let r: ShowRequest = parse_body(&body)?;
    let given = if r.model.is_empty() {
        &r.name
    } else {
        &r.model
    };
    let name = parse_name(given)?;
    let store = Arc::clone(&state.store);
    let answer = tokio::task::spawn_blocking(move || {
        let resolved = store.resolve(&name)?;
        let file = GgufFile::open(&resolved.model_path).map_err(|e| {
            ApiError::internal(format!(
                "cannot read the model file of {name} ({}): {e}",
                resolved.model_path.display()
            ))
        })?;
        Ok::<_, ApiError>(describe(&resolved, &file, &r))
    })
    .await
    .map_err(|e| ApiError::internal(format!("reading the model failed: {e}")))??;
    let json = serde_json::to_value(answer)
        .map_err(|e| ApiError::internal(format!("cannot encode the answer: {e}")))?;
    Ok(Json(json))
}

/// The answer for a resolved model and its open GGUF file.
fn describe(model: &ResolvedModel, file: &GgufFile, r: &ShowRequest) -> ShowResponse {
    let metadata = file.header().metadata();
    let template = model
        .template
        .clone()
        .or_else(|| metadata.chat_template().ok().flatten().map(str::to_owned))
        .unwrap_or_default();
    let template_fallback = model
        .template
        .as_deref()
        .and_then(crate::template::go::problem)
        .filter(|_| metadata.chat_template().ok().flatten().is_some())
        .map(|e| crate::template::fallback_note(&e));
    let system = if r.system.is_empty() {
        model.system.clone().unwrap_or_default()
    } else {
        r.system.clone()
    };
    let tensors = r.verbose.then(|| {
        file.header()
            .tensors()
            .iter()
            .map(|t| Tensor {
                name: t.name().to_owned(),
                kind: t.ggml_type().name().to_uppercase(),
                shape: t.dims().to_vec(),
            })
            .collect()
    });
    ShowResponse {
        license: model.license.join("\n"),
        modelfile: modelfile(model, &template, &system),
        parameters: parameters_text(&model.parameters),
        capabilities: capabilities(metadata, &template),
        template,
        system,
        details: model.entry.details.clone(),
        model_info: model_info(file.header(), r.verbose),
        tensors,
        modified_at: model
            .entry
            .modified_at
            .to_rfc3339_opts(SecondsFormat::AutoSi, true),
        template_fallback,
        messages: model.messages.clone(),
    }
}

/// The stored parameters as Ollama's `parameters` text: one `name value` line per value
/// (a list gives a line per element), the name padded to 30 columns, strings quoted.
/// Sorted by name, where Ollama's order is random.
pub(crate) fn parameters_text(parameters: &Map<String, Value>) -> String {
    each_parameter(parameters)
        .map(|(name, value)| {
            format!(
                "{name:<PARAMETER_NAME_WIDTH$} {}",
                serde_json::to_string(value).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every (name, value) pair, a list expanded into one pair per element, sorted by name.
fn each_parameter(parameters: &Map<String, Value>) -> impl Iterator<Item = (&str, &Value)> {
    let mut names: Vec<&String> = parameters.keys().collect();
    names.sort();
    names.into_iter().flat_map(move |name| {
        let values: Vec<&Value> = match &parameters[name] {
            Value::Array(values) => values.iter().collect(),
            value => vec![value],
        };
        values.into_iter().map(move |v| (name.as_str(), v))
    })
}

/// The Modelfile that recreates the model, in the form `ollama show --modelfile`
/// prints: a header naming the model, then FROM (the weights blob), TEMPLATE, SYSTEM,
/// PARAMETER, LICENSE and MESSAGE lines, quoted as Ollama's Modelfile parser (and
/// `crate::modelfile`) reads them back.
pub(crate) fn modelfile(model: &ResolvedModel, template: &str, system: &str) -> String {
    let mut lines = vec![
        "# Modelfile generated by \"ollama show\"".to_owned(),
        "# To build a new Modelfile based on this, replace FROM with:".to_owned(),
        format!("# FROM {}", model.entry.name),
        String::new(),
        format!("FROM {}", model.model_path.display()),
    ];
    if !template.is_empty() {
        lines.push(format!("TEMPLATE {}", quote(template)));
    }
    if !system.is_empty() {
        lines.push(format!("SYSTEM {}", quote(system)));
    }
    for (name, value) in each_parameter(&model.parameters) {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        lines.push(format!("PARAMETER {name} {}", quote(&text)));
    }
    for license in &model.license {
        lines.push(format!("LICENSE {}", quote(license)));
    }
    for message in &model.messages {
        lines.push(format!(
            "MESSAGE {} {}",
            message.role,
            quote(&message.content)
        ));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// Quotes a Modelfile argument as Ollama's parser needs it: text with a newline, or a
/// space at either end, goes in quotes (triple quotes when it holds a quote); other
/// text is written as it is.
fn quote(text: &str) -> String {
    if text.contains('\n') || text.starts_with(' ') || text.ends_with(' ') {
        if text.contains('"') {
            format!("\"\"\"{text}\"\"\"")
        } else {
            format!("\"{text}\"")
        }
    } else {
        text.to_owned()
    }
}

/// The GGUF metadata as Ollama's `model_info`: every key as the file names it, plus
/// `general.parameter_count` counted from the tensors; without `general.name` and the
/// chat template (shown as `template`), as Ollama leaves them out. Long arrays are
/// `null` unless `verbose`.
pub(crate) fn model_info(header: &gguf::GgufHeader, verbose: bool) -> Map<String, Value> {
    let mut info = Map::new();
    for (key, value) in header.metadata().iter() {
        if key == gguf::keys::GENERAL_NAME || key == gguf::keys::TOKENIZER_CHAT_TEMPLATE {
            continue;
        }
        info.insert(key.to_owned(), json_value(value, verbose));
    }
    info.insert(
        "general.parameter_count".to_owned(),
        Value::from(header.parameter_count()),
    );
    info
}

fn json_value(value: &MetadataValue, verbose: bool) -> Value {
    match value {
        MetadataValue::U8(v) => Value::from(*v),
        MetadataValue::I8(v) => Value::from(*v),
        MetadataValue::U16(v) => Value::from(*v),
        MetadataValue::I16(v) => Value::from(*v),
        MetadataValue::U32(v) => Value::from(*v),
        MetadataValue::I32(v) => Value::from(*v),
        MetadataValue::U64(v) => Value::from(*v),
        MetadataValue::I64(v) => Value::from(*v),
        MetadataValue::F32(v) => f32_value(*v),
        MetadataValue::F64(v) => Value::from(*v),
        MetadataValue::Bool(v) => Value::from(*v),
        MetadataValue::String(v) => Value::from(v.as_str()),
        MetadataValue::Array(array) => {
            if !verbose && array.len() > MAX_ARRAY_WITHOUT_VERBOSE {
                Value::Null
            } else {
                array_value(array, verbose)
            }
        }
    }
}

/// An `f32` printed with its own shortest digits (`1e-5`, not `9.999999747378752e-6`),
/// as Ollama's JSON encoder writes a `float32`; NaN and infinities are `null`.
fn f32_value(v: f32) -> Value {
    v.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

fn array_value(array: &MetadataArray, verbose: bool) -> Value {
    fn all<T: Clone + Into<Value>>(values: &[T]) -> Value {
        Value::Array(values.iter().cloned().map(Into::into).collect())
    }
    match array {
        MetadataArray::U8(v) => all(v),
        MetadataArray::I8(v) => all(v),
        MetadataArray::U16(v) => all(v),
        MetadataArray::I16(v) => all(v),
        MetadataArray::U32(v) => all(v),
        MetadataArray::I32(v) => all(v),
        MetadataArray::U64(v) => all(v),
        MetadataArray::I64(v) => all(v),
        MetadataArray::F32(v) => Value::Array(v.iter().map(|f| f32_value(*f)).collect()),
        MetadataArray::F64(v) => all(v),
        MetadataArray::Bool(v) => all(v),
        MetadataArray::String(v) => all(v),
        MetadataArray::Array(v) => Value::Array(
            v.iter()
                .map(|inner| json_value(&MetadataValue::Array(inner.clone()), verbose))
                .collect(),
        ),
    }
}

/// What the model can do, in Ollama's names and order:
/// - `completion`, or `embedding` when the GGUF declares a pooling type
///   (`<arch>.pooling_type`, as Ollama decides);
/// - `tools` when the template mentions tools (`tools`, `.Tools`, `tool_call`);
/// - `insert` when `/api/generate` can fill in the middle: a Go template takes `.Suffix`
///   (it writes the FIM prompt), or the vocabulary has FIM tokens (see [`Fim`]);
/// - `thinking` when the template handles `<think>`...`</think>`.
pub(crate) fn capabilities(metadata: &gguf::Metadata, template: &str) -> Vec<&'static str> {
    let mut found = Vec::new();
    let pooling = metadata
        .architecture()
        .ok()
        .is_some_and(|arch| metadata.contains(&format!("{arch}.pooling_type")));
    found.push(if pooling { "embedding" } else { "completion" });
    let lower = template.to_lowercase();
    if lower.contains("tools") || lower.contains("tool_call") {
        found.push("tools");
    }
    if template.contains(".Suffix") || Fim::from_metadata(metadata).ok().flatten().is_some() {
        found.push("insert");
    }
    let splits_think =
        template.contains("split('</think>')") || template.contains("split(\"</think>\")");
    if (template.contains("<think>") && template.contains("</think>")) || splits_think {
        found.push("thinking");
    }
    found
}
