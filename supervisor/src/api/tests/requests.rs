//! Requests the server cannot take: too large, malformed, badly named, or naming a model
//! that is not there. Each gets its status with a JSON `{"error": ...}` body, and nothing
//! reaches a runner or the store.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::handlers::app;
use crate::api::MAX_JSON_BODY;

/// The routes that take a model name, with a body naming `name`.
fn named(name: &str) -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "POST",
            "/api/generate",
            json!({"model": name, "prompt": "Hi"}),
        ),
        (
            "POST",
            "/api/chat",
            json!({"model": name, "messages": [{"role": "user", "content": "Hi"}]}),
        ),
        ("POST", "/api/embed", json!({"model": name, "input": "Hi"})),
        ("POST", "/api/show", json!({"model": name})),
        (
            "POST",
            "/api/copy",
            json!({"source": name, "destination": "copy"}),
        ),
        ("DELETE", "/api/delete", json!({"model": name})),
    ]
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_is_413_with_a_json_error() {
    let app = app();
    let huge = format!(
        "{{\"model\": \"tiny\", \"prompt\": \"{}\"}}",
        "a".repeat(MAX_JSON_BODY + 1)
    );
    let answer = app.call("POST", "/api/generate", huge).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answer.content_type.starts_with("application/json"));
    assert!(answer.error().contains("32 MiB"), "{}", answer.error());
}

#[tokio::test(start_paused = true)]
async fn bad_names_are_400_and_absent_ones_404_on_every_route() {
    let app = app();
    app.create("tiny").await;
    let long = "a".repeat(10_000);
    for name in [
        "..",
        "../etc/passwd",
        "a/../b",
        "nul\0name",
        "x y",
        long.as_str(),
    ] {
        for (method, path, body) in named(name) {
            let answer = app.call(method, path, body.to_string()).await;
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{method} {path} {:?}: {}",
                &name[..name.len().min(20)],
                answer.error()
            );
            assert!(
                answer.error().contains("invalid") || answer.error().contains("not allowed"),
                "{path}: {}",
                answer.error()
            );
        }
    }
    for (method, path, body) in named("absent") {
        let answer = app.call(method, path, body.to_string()).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            answer.error()
        );
        assert!(
            answer.error().contains("absent"),
            "{path}: {}",
            answer.error()
        );
    }
    assert!(app.backend().requests.lock().unwrap().is_empty());
    let models = app.call("GET", "/api/tags", "").await.json();
    assert_eq!(models["models"].as_array().unwrap().len(), 1, "only tiny");
}

#[tokio::test(start_paused = true)]
async fn malformed_bodies_and_wrong_types_are_400() {
    let app = app();
    app.create("tiny").await;
    let cases = [
        ("/api/generate", "{\"model\": \"tiny\", "),
        ("/api/generate", "{\"model\": 7, \"prompt\": \"Hi\"}"),
        ("/api/generate", "{\"model\": \"tiny\", \"prompt\": [1]}"),
        ("/api/chat", "{\"model\": \"tiny\", \"messages\": \"Hi\"}"),
        ("/api/embed", "{\"model\": \"tiny\", \"input\": 5}"),
        ("/api/show", "[]"),
    ];
    for (path, body) in cases {
        let answer = app.call("POST", path, body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert!(!answer.error().is_empty(), "{path} {body}");
    }
}

#[tokio::test(start_paused = true)]
async fn unknown_routes_and_methods_answer_in_json_too() {
    let app = app();
    let answer = app.call("GET", "/api/nothing", "").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.error(), "not found");
    let answer = app.call("GET", "/api/generate", "").await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(!answer.error().is_empty());
}
