//! `/api/generate`'s fields beyond the prompt: `context`, `logprobs`, `suffix`, `raw`'s
//! limits and the nulls Ollama's Go client sends.

use axum::http::StatusCode;
use ollama_proto::runner as pb;
use serde_json::json;

use super::handlers::{TEMPLATE, app};
use crate::store::Digest;

/// A piece of `text` made by one token with its log-probability and one alternative.
pub(super) fn scored(
    text: &str,
    logprob: f32,
) -> Result<pb::GenerateResponse, crate::runners::RunnerError> {
    Ok(pb::GenerateResponse {
        event: Some(pb::generate_response::Event::Piece(pb::Piece {
            text: text.into(),
            tokens: vec![pb::TokenInfo {
                id: 7,
                text: text.into(),
                logprob: Some(logprob),
                top_logprobs: vec![pb::TopLogprob {
                    id: 8,
                    text: "else".into(),
                    logprob: logprob - 1.0,
                }],
            }],
        })),
    })
}

/// The end of a generation that reports `context`.
fn done_with(context: Vec<u32>) -> Result<pb::GenerateResponse, crate::runners::RunnerError> {
    Ok(pb::GenerateResponse {
        event: Some(pb::generate_response::Event::Done(pb::Done {
            reason: pb::DoneReason::Stop as i32,
            timings: Some(pb::Timings::default()),
            context,
        })),
    })
}

#[tokio::test(start_paused = true)]
async fn the_nulls_of_ollamas_go_client_are_accepted() {
    let app = app();
    app.create("tiny").await;
    let body = json!({"model": "tiny", "prompt": "Hi", "options": null, "format": "",
                      "images": null, "context": null, "stream": false});
    let answer = app.post("/api/generate", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.error());
    assert_eq!(answer.json()["response"], "Hello world");
}

#[tokio::test(start_paused = true)]
async fn raw_refuses_what_it_would_ignore() {
    let app = app();
    app.create("tiny").await;
    for extra in [
        json!({"system": "Be brief"}),
        json!({"template": "{{ messages }}"}),
        json!({"context": [1, 2]}),
    ] {
        let mut body = json!({"model": "tiny", "prompt": "Hi", "raw": true});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let answer = app.post("/api/generate", body).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{extra}");
        assert_eq!(
            answer.error(),
            "raw mode does not support template, system, or context"
        );
    }
    assert!(app.backend().requests.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn context_goes_to_the_runner_and_comes_back_at_the_end() {
    let app = app();
    app.create("tiny").await;
    app.backend().script(|r| {
        Ok(vec![
            scored("Hi", -0.5),
            done_with([&r.context[..], &[9]].concat()),
        ])
    });
    let body = json!({"model": "tiny", "prompt": "again", "context": [3, 4], "stream": false});
    let answer = app.post("/api/generate", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.error());
    assert_eq!(answer.json()["context"], json!([3, 4, 9]));
    let sent = app.backend().requests.lock().unwrap()[0].clone();
    assert_eq!((sent.context, sent.return_context), (vec![3, 4], true));
    assert!(
        answer.json().get("logprobs").is_none(),
        "not asked for, not sent"
    );

    // A raw prompt is not a conversation to continue: Ollama returns no context then.
    let body = json!({"model": "tiny", "prompt": "x", "raw": true, "stream": false});
    let answer = app.post("/api/generate", body).await;
    assert!(answer.json().get("context").is_none());
    assert!(!app.backend().requests.lock().unwrap()[1].return_context);

    let bad = json!({"model": "tiny", "prompt": "x", "context": [-1]});
    let answer = app.post("/api/generate", bad).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.error().contains("context"), "{}", answer.error());
}

#[tokio::test(start_paused = true)]
async fn logprobs_are_reported_per_token_streamed_and_whole() {
    let app = app();
    app.create("tiny").await;
    app.backend().script(|_| {
        Ok(vec![
            scored("a", -0.25),
            scored("b", -2.0),
            done_with(vec![]),
        ])
    });
    let body = json!({"model": "tiny", "prompt": "Hi", "logprobs": true, "top_logprobs": 1});
    let lines = app.post("/api/generate", body).await.lines();
    assert_eq!(
        lines[0]["logprobs"],
        json!([{"token": "a", "logprob": -0.25,
                "top_logprobs": [{"token": "else", "logprob": -1.25}]}])
    );
    assert_eq!(lines[1]["logprobs"][0]["logprob"], -2.0);
    let sent = app.backend().requests.lock().unwrap()[0].clone();
    assert_eq!((sent.logprobs, sent.top_logprobs), (true, 1));

    let body = json!({"model": "tiny", "prompt": "Hi", "logprobs": true, "stream": false});
    let whole = app.post("/api/generate", body).await.json();
    let tokens: Vec<_> = whole["logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn suffix_needs_fim_tokens() {
    let app = app();
    app.create("tiny").await;
    let body = json!({"model": "tiny", "prompt": "def f(", "suffix": "):"});
    let answer = app.post("/api/generate", body).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.error().contains("tiny does not support insert"),
        "{}",
        answer.error()
    );

    // A code model's vocabulary with FIM tokens: the prompt is prefix-suffix-middle.
    let mut writer = gguf::GgufWriter::new();
    writer.set("general.architecture", "llama");
    writer.set("tokenizer.chat_template", TEMPLATE);
    writer.set(
        "tokenizer.ggml.tokens",
        vec!["<s>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"],
    );
    writer
        .add_tensor("w", &[64], gguf::GgmlType::F32, vec![0u8; 64 * 4])
        .unwrap();
    let bytes = writer.to_bytes().unwrap();
    let digest = Digest::of_bytes(&bytes);
    let coder = digest.to_string();
    app.call("POST", &format!("/api/blobs/{digest}"), bytes)
        .await;
    let create =
        json!({"model": "coder", "files": {"c.gguf": digest.to_string()}, "stream": false});
    assert_eq!(app.post("/api/create", create).await.status, StatusCode::OK);
    let body = json!({"model": "coder", "prompt": "def f(", "suffix": "):", "stream": false});
    let answer = app.post("/api/generate", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.error());
    assert_eq!(
        app.backend().requests.lock().unwrap()[0].prompt,
        "<fim_prefix>def f(<fim_suffix>):<fim_middle>"
    );

    // A Go template that takes `.Suffix` writes the prompt itself, as Code Llama's does.
    let create = json!({"model": "codellama", "files": {"c.gguf": coder}, "stream": false,
                        "template": "<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>"});
    assert_eq!(app.post("/api/create", create).await.status, StatusCode::OK);
    let body = json!({"model": "codellama", "prompt": "def f(", "suffix": "):", "stream": false});
    let answer = app.post("/api/generate", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.error());
    assert_eq!(
        app.backend().requests.lock().unwrap()[1].prompt,
        "<PRE> def f( <SUF>): <MID>"
    );
}
