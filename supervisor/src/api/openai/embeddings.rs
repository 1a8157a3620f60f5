//! `POST /v1/embeddings`: OpenAI's embedding request translated into the one `/api/embed`
//! serves (unit vectors, `dimensions` cut and rescaled). Vectors come as lists of floats,
//! or with `encoding_format: "base64"` (what OpenAI's Python client asks for by default)
//! as base64 of their little-endian f32 bytes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::OpenAiError;
use crate::api::AppState;
use crate::api::embed::{EmbedRequest, Input, embed_inputs};
use crate::api::generate::parse_body;
use crate::sched::Backend;

/// The request body.
#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: Option<Value>,
    dimensions: Option<i64>,
    encoding_format: Option<String>,
    /// Ours: Ollama's options.
    #[serde(default, deserialize_with = "crate::api::generate::null_as_default")]
    options: Map<String, Value>,
    /// Ours: Ollama's keep_alive.
    keep_alive: Option<Value>,
}

/// The texts of `input`: a string or a list of strings (token arrays are refused).
fn texts(input: Option<Value>) -> Result<Vec<String>, OpenAiError> {
    let bad = || {
        OpenAiError::invalid(
            "input",
            "input must be a non-empty string or a list of non-empty strings",
        )
    };
    let texts = match input {
        Some(Value::String(text)) => vec![text],
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(bad()),
    };
    if texts.is_empty() || texts.iter().any(String::is_empty) {
        return Err(bad());
    }
    Ok(texts)
}

/// Standard base64 (with padding) of `bytes`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The handler.
pub async fn embeddings<B: Backend>(
    State(state): State<AppState<B>>,
    body: Bytes,
) -> Result<Json<Value>, OpenAiError> {
    let r: EmbeddingsRequest = parse_body(&body)?;
    let as_base64 = match r.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(OpenAiError::invalid(
                "encoding_format",
                format!("encoding_format {other:?} is not float or base64"),
            ));
        }
    };
    let request = EmbedRequest {
        model: r.model.clone(),
        input: Input::Many(texts(r.input)?),
        truncate: None,
        dimensions: r.dimensions,
        options: r.options,
        keep_alive: r.keep_alive,
    };
    let embedded = embed_inputs(&state, request).await?;
    let data: Vec<Value> = embedded
        .embeddings
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = match as_base64 {
                true => {
                    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                    Value::from(base64(&bytes))
                }
                false => json!(vector),
            };
            json!({"object": "embedding", "embedding": embedding, "index": index})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": r.model,
        "usage": {
            "prompt_tokens": embedded.prompt_tokens,
            "total_tokens": embedded.prompt_tokens,
        },
    })))
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_pads_as_the_standard_says() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&1.0f32.to_le_bytes()), "AACAPw==");
    }
}
