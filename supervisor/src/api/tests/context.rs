//! A chat longer than the context: the oldest messages go and the answer says so, or,
//! with `truncate: false`, a 400 with both counts. (The fake runner counts one token per
//! character of the rendered prompt.)

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::handlers::app;

/// A conversation of `turns` user/assistant pairs of 20-character messages, then a
/// question.
fn long_chat(turns: usize) -> Vec<Value> {
    let mut messages = vec![json!({"role": "system", "content": "Be brief."})];
    for i in 0..turns {
        messages.push(json!({"role": "user", "content": format!("question number {i:>4}")}));
        messages.push(json!({"role": "assistant", "content": format!("answer number {i:>6}")}));
    }
    messages.push(json!({"role": "user", "content": "And now?"}));
    messages
}

#[tokio::test(start_paused = true)]
async fn a_chat_longer_than_the_context_says_what_was_dropped() {
    let app = app();
    app.create("tiny").await;
    let body = json!({"model": "tiny", "messages": long_chat(10), "stream": false,
                      "options": {"num_ctx": 150}});
    let answer = app.post("/api/chat", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.error());
    let truncated = &answer.json()["truncated"];
    let sent = app.backend().requests.lock().unwrap()[0].prompt.clone();
    assert!(sent.chars().count() <= 150, "{sent}");
    assert!(
        sent.starts_with("<|system|>Be brief.\n") && sent.contains("<|user|>And now?"),
        "the system message and the question stay: {sent}"
    );
    let kept = sent.matches("number").count();
    assert_eq!(truncated["messages"], 20 - kept, "{truncated}");
    assert!(truncated["tokens"].as_u64().unwrap() > 0, "{truncated}");

    // A chat that fits says nothing.
    let body = json!({"model": "tiny", "messages": long_chat(1), "stream": false,
                      "options": {"num_ctx": 150}});
    let answer = app.post("/api/chat", body).await;
    assert!(answer.json().get("truncated").is_none());
}

#[tokio::test(start_paused = true)]
async fn truncate_false_refuses_a_chat_that_does_not_fit() {
    let app = app();
    app.create("tiny").await;
    let body = json!({"model": "tiny", "messages": long_chat(10), "truncate": false,
                      "options": {"num_ctx": 150}});
    let answer = app.post("/api/chat", body).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.error().contains("but the context holds 150"),
        "{}",
        answer.error()
    );
    assert!(app.backend().requests.lock().unwrap().is_empty());
}
