//! `/v1/completions`, `/v1/embeddings` and `/v1/models` through `Router::oneshot` over
//! fake runners.

use axum::body::Body;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::handlers::app;
use super::openai::events;
use crate::runners::RunnerError;
use crate::sched::tests::fake::piece;

#[tokio::test(start_paused = true)]
async fn a_completion_whole_and_streamed() {
    let app = app();
    app.create("tiny").await;
    let body = json!({"model": "tiny", "prompt": "Once", "max_tokens": 4, "temperature": 0});
    let answer = app.post("/v1/completions", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
    let body = answer.json();
    assert_eq!(body["object"], "text_completion");
    assert!(body["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(body["choices"][0]["text"], "Hello world");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["completion_tokens"], 2);
    let sent = app.backend().requests.lock().unwrap().clone();
    assert_eq!(
        sent[0].prompt, "<|user|>Once\n<|assistant|>",
        "templated, as in Ollama"
    );
    assert_eq!(sent[0].num_predict, Some(4));

    let body = json!({"model": "tiny", "prompt": ["Once"], "stream": true, "raw": true,
                      "stream_options": {"include_usage": true}});
    let (chunks, done) = events(&app.post("/v1/completions", body).await);
    assert!(done);
    let texts: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["text"]).collect();
    assert_eq!(texts[..3], [&json!("Hello"), &json!(" world"), &json!("")]);
    assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[3]["choices"], json!([]));
    assert_eq!(chunks[3]["usage"]["prompt_tokens"], 5);
    assert_eq!(app.backend().requests.lock().unwrap()[1].prompt, "Once");

    for (body, param) in [
        (json!({"model": "tiny", "prompt": ["a", "b"]}), "prompt"),
        (json!({"model": "tiny", "prompt": ""}), "prompt"),
        (
            json!({"model": "tiny", "prompt": "a", "echo": true}),
            "echo",
        ),
        (json!({"model": "tiny", "prompt": "a", "n": 3}), "n"),
    ] {
        let answer = app.post("/v1/completions", body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.json()["error"]["param"], param, "{body}");
    }
}

#[tokio::test(start_paused = true)]
async fn embeddings_as_floats_or_base64() {
    let app = app();
    app.create("tiny").await;
    let body = json!({"model": "tiny", "input": ["ab", "abc"]});
    let answer = app.post("/v1/embeddings", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
    let body = answer.json();
    assert_eq!(body["object"], "list");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 5})
    );
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(
        (&data[1]["object"], &data[1]["index"]),
        (&json!("embedding"), &json!(1))
    );
    let floats: Vec<f32> = serde_json::from_value(data[0]["embedding"].clone()).unwrap();
    assert_eq!(floats.len(), 4);

    let body =
        json!({"model": "tiny", "input": "ab", "encoding_format": "base64", "dimensions": 2});
    let answer = app.post("/v1/embeddings", body).await.json();
    let encoded = answer["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(encoded.len(), 12, "two f32s: 8 bytes, 12 base64 characters");

    for body in [
        json!({"model": "tiny"}),
        json!({"model": "tiny", "input": []}),
        json!({"model": "tiny", "input": [1, 2, 3]}),
        json!({"model": "tiny", "input": "a", "encoding_format": "int8"}),
    ] {
        let answer = app.post("/v1/embeddings", body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.json()["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test(start_paused = true)]
async fn models_are_listed_and_found_as_openai_describes_them() {
    let app = app();
    app.create("tiny").await;
    let list = app.call("GET", "/v1/models", Body::empty()).await.json();
    assert_eq!(list["object"], "list");
    let model = &list["data"][0];
    assert_eq!(model["id"], "tiny:latest");
    assert_eq!(model["object"], "model");
    assert_eq!(model["owned_by"], "library");
    assert!(model["created"].as_i64().unwrap() > 1_600_000_000);

    let one = app.call("GET", "/v1/models/tiny", Body::empty()).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(&one.json(), model);
    let missing = app
        .call("GET", "/v1/models/library/absent:7b", Body::empty())
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["error"]["code"], "model_not_found");
}

#[tokio::test(start_paused = true)]
async fn the_http_layers_own_errors_under_v1_take_openais_shape() {
    let app = app();
    let unknown = app.call("POST", "/v1/responses", "{}").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let error = &unknown.json()["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(
        error["code"],
        Value::Null,
        "an unknown route is not an unknown model"
    );
    let method = app.call("GET", "/v1/chat/completions", Body::empty()).await;
    assert_eq!(method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(method.json()["error"]["type"], "invalid_request_error");
    // Ollama's routes keep Ollama's shape.
    let ollama = app.call("POST", "/api/nothing", "{}").await;
    assert!(ollama.json()["error"].is_string());
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_breaks_ends_with_an_error_event_and_no_done() {
    let app = app();
    app.create("tiny").await;
    app.backend().script(|_| {
        Ok(vec![
            piece("Once"),
            Err(RunnerError::Failed {
                model: "tiny:latest".into(),
                message: "the engine failed: NaN in the logits".into(),
            }),
        ])
    });
    let body = json!({"model": "tiny", "stream": true,
                      "messages": [{"role": "user", "content": "Hi"}]});
    let (chunks, done) = events(&app.post("/v1/chat/completions", body).await);
    assert!(!done, "a failed stream does not end with [DONE]");
    assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Once");
    let error = &chunks.last().unwrap()["error"];
    assert_eq!(error["type"], "api_error");
    assert!(
        error["message"].as_str().unwrap().contains("NaN"),
        "{error}"
    );
    let whole = json!({"model": "tiny", "prompt": "Hi"});
    let answer = app.post("/v1/completions", whole).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(answer.json()["error"]["type"], "api_error");
}
