//! What OpenAI's answers share: ids, creation times, usage, finish reasons and the
//! log-probabilities of the chat route.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use ollama_proto::runner as pb;
use serde_json::{Value, json};

/// What OpenAI's `system_fingerprint` says here: the backend, not a configuration hash.
pub const FINGERPRINT: &str = "fp_ollamad";

/// A fresh id: `prefix` and 24 letters and digits. Unique, not secret: built from std's
/// randomly keyed hasher over a counter, so no random number crate is needed.
pub fn random_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = String::from(prefix);
    for half in 0..2u64 {
        let mut bits = RandomState::new().hash_one((n, half));
        for _ in 0..12 {
            id.push(char::from(ALPHABET[(bits % 62) as usize]));
            bits /= 62;
        }
    }
    id
}

/// The time now in Unix seconds, OpenAI's `created`.
pub fn created() -> i64 {
    chrono::Utc::now().timestamp()
}

/// OpenAI's `usage` from the runner's counts.
pub fn usage(done: &pb::Done) -> Value {
    let t = done.timings.unwrap_or_default();
    json!({
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.generated_tokens,
        "total_tokens": u64::from(t.prompt_tokens) + u64::from(t.generated_tokens),
    })
}

/// OpenAI's `finish_reason`: `tool_calls` when the answer called tools, `length` when the
/// token limit or the context ended it, else `stop`.
pub fn finish_reason(done: &pb::Done, called: bool) -> &'static str {
    if called {
        return "tool_calls";
    }
    match pb::DoneReason::try_from(done.reason) {
        Ok(pb::DoneReason::Length) => "length",
        _ => "stop",
    }
}

/// The chat route's `logprobs.content` entries: `{token, logprob, bytes, top_logprobs}`.
pub fn chat_logprobs(tokens: &[pb::TokenInfo]) -> Value {
    let entry = |text: &str, logprob: f32| json!({"token": text, "logprob": logprob, "bytes": text.as_bytes()});
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let mut e = entry(&t.text, t.logprob.unwrap_or(0.0));
            e["top_logprobs"] = t
                .top_logprobs
                .iter()
                .map(|c| entry(&c.text, c.logprob))
                .collect();
            e
        })
        .collect();
    json!({ "content": content })
}

/// The legacy completions route's `logprobs`: parallel lists of tokens, their
/// log-probabilities, the alternatives as `{token: logprob}` and each token's offset in
/// the text; `offset` is where these tokens' text starts.
pub fn completion_logprobs(tokens: &[pb::TokenInfo], offset: usize) -> Value {
    let mut at = offset;
    let mut offsets = Vec::with_capacity(tokens.len());
    for t in tokens {
        offsets.push(at);
        at += t.text.len();
    }
    let top: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let pairs = t.top_logprobs.iter();
            Value::Object(pairs.map(|c| (c.text.clone(), json!(c.logprob))).collect())
        })
        .collect();
    json!({
        "tokens": tokens.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| t.logprob.unwrap_or(0.0)).collect::<Vec<_>>(),
        "top_logprobs": top,
        "text_offset": offsets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_alphanumeric() {
        let (a, b) = (random_id("call_"), random_id("call_"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 5 + 24);
        assert!(a[5..].chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
    }
}
