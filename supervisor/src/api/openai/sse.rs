//! Server-sent events as OpenAI streams them: one `data: {json}` event per chunk, a blank
//! line after each, and `data: [DONE]` at the end.

use serde_json::Value;

/// The content type of an event stream.
pub const EVENT_STREAM: &str = "text/event-stream";

/// The event that ends a successful stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// `chunk` as one event, appended to `out`.
pub fn push(out: &mut Vec<u8>, chunk: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(chunk.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}
