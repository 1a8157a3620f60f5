//! `format` in `/api/generate` and `/api/chat`: what reaches the runner, and the 400s.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::handlers::{App, app};
use crate::runners::RunnerError;

/// The `json_schema` of every request a runner received, in order.
fn schemas(app: &App) -> Vec<Option<String>> {
    let sent = app.backend().requests.lock().unwrap();
    sent.iter().map(|r| r.json_schema.clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn json_and_schemas_reach_the_runner_with_their_key_order() {
    let app = app();
    app.create("tiny").await;
    let schema =
        r#"{"type":"object","properties":{"zebra":{"type":"string"},"apple":{"type":"integer"}}}"#;
    let schema_value: Value = serde_json::from_str(schema).unwrap();
    let hi = json!([{"role": "user", "content": "Hi"}]);
    for (route, mut body) in [
        (
            "/api/generate",
            json!({"model": "tiny", "prompt": "Hi", "stream": false}),
        ),
        (
            "/api/chat",
            json!({"model": "tiny", "messages": hi, "stream": false}),
        ),
    ] {
        for format in [json!("json"), schema_value.clone(), json!(""), json!(null)] {
            body["format"] = format;
            // serde_json::Value sorts keys: write the schema's text into the body.
            let text = body
                .to_string()
                .replace(&serde_json::to_string(&schema_value).unwrap(), schema);
            let answer = app.call("POST", route, text).await;
            assert_eq!(answer.status, StatusCode::OK, "{route}: {}", answer.error());
        }
    }
    let expected = [
        Some(r#"{"type":"object"}"#.to_owned()),
        Some(schema.to_owned()),
        None,
        None,
    ];
    let sent = schemas(&app);
    assert_eq!(sent[..4], expected);
    assert_eq!(sent[4..], expected);
}

#[tokio::test(start_paused = true)]
async fn a_bad_format_or_a_schema_the_runner_refuses_is_a_400() {
    let app = app();
    app.create("tiny").await;
    for format in [json!("yaml"), json!(42), json!(["json"])] {
        let body = json!({"model": "tiny", "prompt": "Hi", "format": format});
        let answer = app.post("/api/generate", body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert!(answer.error().contains("format"), "{}", answer.error());
    }
    assert!(schemas(&app).is_empty(), "refused before any runner");
    let message = "format: the JSON schema cannot be used: Unimplemented keys: [\"uniqueItems\"]";
    app.backend().script(move |_| {
        Err(RunnerError::Invalid {
            model: "tiny".into(),
            message: message.into(),
        })
    });
    let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "Hi"}],
                      "format": {"type": "array", "uniqueItems": true}});
    let answer = app.post("/api/chat", body).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error(), message);
}
