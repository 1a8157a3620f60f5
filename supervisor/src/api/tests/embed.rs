//! `/api/embed` and `/api/embeddings` through `Router::oneshot` over fake runners: one
//! `Embed` call per request whatever the number of inputs, `dimensions`, `truncate`, and
//! the legacy route.

use axum::http::StatusCode;
use ollama_proto::runner as pb;
use serde_json::{Value, json};

use super::handlers::{App, app};
use crate::runners::RunnerError;

async fn embed_app() -> App {
    let app = app();
    app.create("tiny").await;
    app
}

fn sent(app: &App) -> Vec<pb::EmbedRequest> {
    app.backend().embed_requests.lock().unwrap().clone()
}

fn vectors(body: &Value) -> Vec<Vec<f64>> {
    serde_json::from_value(body["embeddings"].clone()).unwrap()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

#[tokio::test(start_paused = true)]
async fn one_input_gives_one_unit_vector_with_the_statistics() {
    let app = embed_app().await;
    let answer = app
        .post("/api/embed", json!({"model": "tiny", "input": "hello"}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.error());
    let body = answer.json();
    assert_eq!(body["model"], "tiny");
    let v = vectors(&body);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].len(), 4);
    assert!((norm(&v[0]) - 1.0).abs() < 1e-6);
    assert_eq!(body["prompt_eval_count"], 5);
    assert!(body["total_duration"].as_u64().is_some());
    assert!(body["load_duration"].as_u64().is_some());
    assert_eq!(
        sent(&app),
        [pb::EmbedRequest {
            inputs: vec!["hello".into()],
            normalize: Some(true),
            truncate: true,
        }]
    );
}

#[tokio::test(start_paused = true)]
async fn several_inputs_go_to_the_runner_in_one_call_and_keep_their_order() {
    let app = embed_app().await;
    let input = json!(["a", "bb", "a"]);
    let body = app
        .post("/api/embed", json!({"model": "tiny", "input": input}))
        .await
        .json();
    let v = vectors(&body);
    assert_eq!(v.len(), 3);
    assert_ne!(v[0], v[1]);
    assert_ne!(v[0], v[2], "the fake tells inputs apart by their index");
    assert_eq!(body["prompt_eval_count"], 4);
    let calls = sent(&app);
    assert_eq!(calls.len(), 1, "one Embed call for every input");
    assert_eq!(calls[0].inputs, ["a", "bb", "a"]);
}

#[tokio::test(start_paused = true)]
async fn dimensions_keep_the_first_values_scaled_to_unit_length() {
    let app = embed_app().await;
    let body = app
        .post(
            "/api/embed",
            json!({"model": "tiny", "input": "hello", "dimensions": 2}),
        )
        .await
        .json();
    let v = &vectors(&body)[0];
    // The fake's vector is [5, 1, 1, 0] scaled: its first two are [5, 1] scaled.
    let expected = [5.0 / 26f64.sqrt(), 1.0 / 26f64.sqrt()];
    assert_eq!(v.len(), 2);
    assert!(
        v.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-6),
        "{v:?}"
    );
    for (dimensions, says) in [(json!(5), "have 4 values"), (json!(-1), "positive")] {
        let answer = app
            .post(
                "/api/embed",
                json!({"model": "tiny", "input": "hello", "dimensions": dimensions}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert!(answer.error().contains(says), "{}", answer.error());
    }
}

#[tokio::test(start_paused = true)]
async fn truncate_false_lets_the_runner_refuse_an_input_longer_than_the_context() {
    let app = embed_app().await;
    app.backend().script_embed(|r| {
        if !r.truncate && r.inputs.iter().any(|i| i.len() > 8) {
            return Err(RunnerError::TooLong {
                model: "tiny:latest".into(),
                message: "an input has 12 tokens but num_ctx is 8".into(),
            });
        }
        Ok(pb::EmbedResponse {
            embeddings: vec![pb::Embedding { values: vec![1.0] }; r.inputs.len()],
            prompt_tokens: 8,
            duration_ns: 1,
        })
    });
    let long = "twelve chars";
    let refused = app
        .post(
            "/api/embed",
            json!({"model": "tiny", "input": [long], "truncate": false}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.error().contains("num_ctx is 8"),
        "{}",
        refused.error()
    );
    let cut = app
        .post("/api/embed", json!({"model": "tiny", "input": [long]}))
        .await;
    assert_eq!(cut.status, StatusCode::OK, "{}", cut.error());
    let truncates: Vec<bool> = sent(&app).iter().map(|r| r.truncate).collect();
    assert_eq!(truncates, [false, true]);
}

#[tokio::test(start_paused = true)]
async fn no_input_loads_the_model_and_embeds_nothing() {
    let app = embed_app().await;
    for input in [json!(null), json!(""), json!([])] {
        let answer = app
            .post("/api/embed", json!({"model": "tiny", "input": input}))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.error());
        assert_eq!(answer.json()["embeddings"], json!([]));
    }
    assert_eq!(app.state.sched.snapshot().await.len(), 1);
    assert!(sent(&app).is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_legacy_route_answers_one_unnormalized_vector() {
    let app = embed_app().await;
    let body = app
        .post("/api/embeddings", json!({"model": "tiny", "prompt": "hi"}))
        .await
        .json();
    assert_eq!(body["embedding"].as_array().unwrap().len(), 4);
    assert_eq!(
        sent(&app),
        [pb::EmbedRequest {
            inputs: vec!["hi".into()],
            normalize: Some(false),
            truncate: true,
        }]
    );
    let empty = app
        .post("/api/embeddings", json!({"model": "tiny"}))
        .await
        .json();
    assert_eq!(empty, json!({"embedding": []}));
}

#[tokio::test(start_paused = true)]
async fn unknown_models_and_bad_bodies_are_refused() {
    let app = embed_app().await;
    for path in ["/api/embed", "/api/embeddings"] {
        let absent = app
            .post(
                path,
                json!({"model": "absent", "input": "x", "prompt": "x"}),
            )
            .await;
        assert_eq!(absent.status, StatusCode::NOT_FOUND, "{}", absent.error());
        let unnamed = app.post(path, json!({"input": "x"})).await;
        assert_eq!(unnamed.status, StatusCode::BAD_REQUEST);
    }
    let wrong = app
        .post("/api/embed", json!({"model": "tiny", "input": 7}))
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(sent(&app).is_empty());
}
