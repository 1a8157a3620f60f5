//! Ollama's `format` field (in `/api/generate` and `/api/chat`): what the output must be.
//!
//! `"json"` asks for any JSON object, a JSON object is a JSON schema the output must
//! validate against, and an absent, `null` or `""` format (Ollama's Go client sends `""`)
//! is free text. The runner turns the schema into a grammar that constrains sampling, and
//! refuses a schema it cannot compile with a message this server answers as a 400; here
//! only the shape of the field is checked.
//!
//! The field is read raw and a schema is passed on as the client wrote it: the model
//! writes an object's properties in the schema's order, which a parsed `Value` (sorted
//! keys) would lose.

use serde_json::Value;
use serde_json::value::RawValue;

use super::ApiError;

/// The request field: raw JSON, so that a schema keeps its key order.
pub type FormatField = Option<Box<RawValue>>;

/// The schema `format: "json"` stands for: any JSON object, as in Ollama (whose JSON
/// grammar's root is an object).
const ANY_JSON_OBJECT: &str = r#"{"type":"object"}"#;

/// The JSON schema (JSON text) for the runner's `GenerateRequest.json_schema`, `None`
/// for free text, or a 400 for a format that is neither `"json"` nor a schema.
pub fn json_schema(format: Option<&RawValue>) -> Result<Option<String>, ApiError> {
    let Some(raw) = format else {
        return Ok(None);
    };
    let value: Value = serde_json::from_str(raw.get())
        .map_err(|e| ApiError::bad_request(format!("invalid format: {e}")))?;
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) if s == "json" => Ok(Some(ANY_JSON_OBJECT.to_owned())),
        Value::Object(_) => Ok(Some(raw.get().trim().to_owned())),
        other => Err(ApiError::bad_request(format!(
            "invalid format {}: use \"json\" or a JSON schema object",
            truncated(&other.to_string())
        ))),
    }
}

/// At most 80 characters of `text`, for an error message.
fn truncated(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    use super::*;

    /// The schema sent for a request body's `format` written as `format`.
    fn parse(format: &str) -> Result<Option<String>, ApiError> {
        #[derive(serde::Deserialize)]
        struct Body {
            format: FormatField,
        }
        let body = format!(r#"{{"format": {format}}}"#);
        let body: Body = serde_json::from_str(&body).unwrap();
        json_schema(body.format.as_deref())
    }

    #[test]
    fn absent_null_and_empty_are_free_text() {
        assert_eq!(json_schema(None).unwrap(), None);
        for format in ["null", r#""""#] {
            assert_eq!(parse(format).unwrap(), None, "{format}");
        }
    }

    #[test]
    fn json_is_any_object_and_an_object_is_the_schema_as_written() {
        assert_eq!(
            parse(r#""json""#).unwrap().as_deref(),
            Some(r#"{"type":"object"}"#)
        );
        let schema = r#"{"type": "object", "properties": {"zebra": {}, "apple": {}}}"#;
        assert_eq!(parse(schema).unwrap().as_deref(), Some(schema));
    }

    #[test]
    fn anything_else_is_a_400_that_shows_it() {
        for format in [r#""yaml""#, "3", r#"[{"type":"object"}]"#, "true"] {
            let e = parse(format).unwrap_err();
            assert!(e.message().contains(format), "{}", e.message());
            assert_eq!(e.into_response().status(), StatusCode::BAD_REQUEST);
        }
        let long = format!("\"{}\"", "x".repeat(500));
        let e = parse(&long).unwrap_err();
        assert!(e.message().len() < 200, "{}", e.message());
    }
}
