//! `/v1/chat/completions` through `Router::oneshot` over fake runners: the whole and the
//! streamed answer with usage, the sampling fields and Ollama's `options` as the runner
//! gets them, tools and tool calls both ways, logprobs, `response_format`, and errors in
//! OpenAI's shape.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::chat::{QWEN_PIECES, qwen_app, weather_chat};
use super::generate::scored;
use super::handlers::{Answer, app};
use crate::sched::tests::fake::done;

/// The JSON of every `data:` event of a server-sent stream, and whether it ended with
/// `[DONE]`.
pub(super) fn events(answer: &Answer) -> (Vec<Value>, bool) {
    assert_eq!(answer.content_type, "text/event-stream");
    let text = std::str::from_utf8(&answer.body).unwrap();
    assert!(
        text.ends_with("\n\n"),
        "every event ends with a blank line: {text}"
    );
    let mut done = false;
    let mut chunks = Vec::new();
    for event in text.split("\n\n").filter(|e| !e.is_empty()) {
        let data = event.strip_prefix("data: ").expect(event);
        assert!(!done, "nothing after [DONE]: {text}");
        if data == "[DONE]" {
            done = true;
        } else {
            chunks.push(serde_json::from_str(data).unwrap());
        }
    }
    (chunks, done)
}

fn hi(extra: Value) -> Value {
    let mut body = json!({"model": "tiny", "messages": [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
    ]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

#[tokio::test(start_paused = true)]
async fn a_whole_chat_completion_with_usage() {
    let app = app();
    app.create_with("tiny", json!({"parameters": {"temperature": 0.3}}))
        .await;
    let answer = app.post("/v1/chat/completions", hi(json!({}))).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.content_type, "application/json");
    let body = answer.json();
    assert_eq!(body["object"], "chat.completion");
    assert!(
        body["id"].as_str().unwrap().starts_with("chatcmpl-"),
        "{body}"
    );
    assert!(body["created"].as_i64().unwrap() > 1_600_000_000);
    assert_eq!(body["model"], "tiny");
    let choice = &body["choices"][0];
    assert_eq!(
        choice["message"],
        json!({"role": "assistant", "content": "Hello world"})
    );
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7})
    );
    let sent = app.backend().requests.lock().unwrap().clone();
    assert_eq!(
        sent[0].prompt,
        "<|system|>Be brief\n<|user|>Hi\n<|assistant|>"
    );
    // Nothing set by the request: the model's stored parameters stay.
    let sampling = sent[0].sampling.unwrap();
    assert_eq!(sampling.temperature, Some(0.3));
    assert_eq!((sampling.top_p, sent[0].num_predict), (None, None));
}

#[tokio::test(start_paused = true)]
async fn the_openai_fields_and_ollamas_options_reach_the_runner() {
    let app = app();
    app.create("tiny").await;
    let body = hi(json!({
        "temperature": 0.5, "top_p": 0.9, "max_tokens": 7, "max_completion_tokens": 9,
        "stop": "END", "seed": 42, "frequency_penalty": 0.25, "presence_penalty": 0.5,
        "options": {"num_ctx": 1024, "temperature": 1.5, "top_k": 3},
        "user": "someone", "parallel_tool_calls": false,
    }));
    let answer = app.post("/v1/chat/completions", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
    let sent = app.backend().requests.lock().unwrap().clone();
    let s = sent[0].sampling.unwrap();
    assert_eq!(
        s.temperature,
        Some(0.5),
        "the OpenAI field wins over options"
    );
    assert_eq!((s.top_p, s.top_k), (Some(0.9), Some(3)));
    assert_eq!(
        (s.frequency_penalty, s.presence_penalty),
        (Some(0.25), Some(0.5))
    );
    assert_eq!(sent[0].num_predict, Some(9), "max_completion_tokens wins");
    assert_eq!(
        (sent[0].stop.clone(), sent[0].seed),
        (vec!["END".to_owned()], Some(42))
    );
    let loaded = app.state.sched.snapshot().await;
    assert_eq!(loaded[0].settings.as_ref().map(|s| s.num_ctx), Some(1024));

    let list = hi(json!({"stop": ["a", "b"], "max_tokens": 3}));
    app.post("/v1/chat/completions", list).await;
    let sent = app.backend().requests.lock().unwrap().clone();
    assert_eq!(sent[1].stop, ["a", "b"]);
    assert_eq!(sent[1].num_predict, Some(3));
}

#[tokio::test(start_paused = true)]
async fn a_streamed_chat_is_server_sent_chunks_with_usage_and_done() {
    let app = app();
    app.create("tiny").await;
    let body = hi(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let answer = app.post("/v1/chat/completions", body).await;
    assert_eq!(answer.status, StatusCode::OK);
    let (chunks, done) = events(&answer);
    assert!(done);
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let id = &chunks[0]["id"];
    assert!(
        chunks.iter().all(|c| &c["id"] == id),
        "one id for the stream"
    );
    let deltas: Vec<&Value> = chunks[..4]
        .iter()
        .map(|c| &c["choices"][0]["delta"])
        .collect();
    assert_eq!(
        deltas,
        [
            &json!({"role": "assistant", "content": ""}),
            &json!({"content": "Hello"}),
            &json!({"content": " world"}),
            &json!({}),
        ]
    );
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    assert!(chunks[..4].iter().all(|c| c["usage"].is_null()));
    let last = &chunks[4];
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["total_tokens"], 7);
    assert_eq!(chunks.len(), 5);

    // Without include_usage: no usage chunk, no usage field.
    let answer = app
        .post("/v1/chat/completions", hi(json!({"stream": true})))
        .await;
    let (chunks, done) = events(&answer);
    assert!(done && chunks.len() == 4, "{chunks:?}");
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
}

#[tokio::test(start_paused = true)]
async fn errors_take_openais_shape() {
    let app = app();
    app.create("tiny").await;
    let answer = app
        .post(
            "/v1/chat/completions",
            json!({"model": "absent", "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let error = &answer.json()["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["param"], "model");
    assert!(
        error["message"].as_str().unwrap().contains("absent"),
        "{error}"
    );

    let cases = [
        (hi(json!({"n": 2})), Some("n")),
        (json!({"model": "tiny", "messages": []}), Some("messages")),
        (
            hi(json!({"response_format": {"type": "yaml"}})),
            Some("response_format"),
        ),
        (
            hi(json!({"tool_choice": {"type": "function", "function": {"name": "f"}}})),
            Some("tool_choice"),
        ),
        (hi(json!({"top_logprobs": 21})), Some("top_logprobs")),
        (hi(json!({"temperature": -1})), None),
        (
            hi(json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})),
            Some("messages"),
        ),
        (
            hi(json!({"messages": [{"role": "robot", "content": "Hi"}]})),
            None,
        ),
        (hi(json!({"messages": "Hi"})), None),
    ];
    for (body, param) in cases {
        let answer = app.post("/v1/chat/completions", body.clone()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        let error = &answer.json()["error"];
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert_eq!(error["param"].as_str(), param, "{body}: {error}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    let garbled = app.call("POST", "/v1/chat/completions", "{not json").await;
    assert_eq!(garbled.status, StatusCode::BAD_REQUEST);
    assert_eq!(garbled.json()["error"]["type"], "invalid_request_error");
    assert!(
        app.backend().requests.lock().unwrap().is_empty(),
        "no runner was asked"
    );
}

#[tokio::test(start_paused = true)]
async fn tool_calls_whole_and_streamed() {
    let app = qwen_app(&QWEN_PIECES).await;
    let body = app
        .post("/v1/chat/completions", weather_chat(false))
        .await
        .json();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let message = &choice["message"];
    assert_eq!(message["content"], "Let me check the weather.\n");
    let call = &message["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_"), "{call}");
    assert_eq!(call["type"], "function");
    assert_eq!(
        call["function"],
        json!({"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"})
    );

    let (chunks, done) = events(&app.post("/v1/chat/completions", weather_chat(true)).await);
    assert!(done);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
        .collect();
    assert_eq!(calls.len(), 1, "{chunks:?}");
    let with_call = chunks
        .iter()
        .find(|c| c["choices"][0]["delta"].get("tool_calls").is_some());
    assert_eq!(
        with_call.unwrap()["choices"][0]["delta"]["content"],
        Value::Null
    );
    assert_eq!(calls[0][0]["index"], 0);
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    assert_eq!(calls[0][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Let me check the weather.\n");
    let last = &chunks[chunks.len() - 1]["choices"][0];
    assert_eq!(last["finish_reason"], "tool_calls");
}

#[tokio::test(start_paused = true)]
async fn a_conversation_with_calls_and_results_reaches_the_template() {
    let app = qwen_app(&["Sunny."]).await;
    let mut body = weather_chat(false);
    body["messages"] = json!([
        {"role": "developer", "content": "Be brief"},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"zone\": \"eu\", \"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "22 C"},
    ]);
    let answer = app.post("/v1/chat/completions", body).await.json();
    assert_eq!(answer["choices"][0]["message"]["content"], "Sunny.");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    let prompt = app.backend().requests.lock().unwrap()[0].prompt.clone();
    assert!(
        prompt.starts_with("<|im_start|>system\nBe brief"),
        "{prompt}"
    );
    assert!(
        prompt.contains(
            "{\"name\": \"get_weather\", \"arguments\": {\"zone\": \"eu\", \"city\": \"Paris\"}}"
        ),
        "the arguments decoded, in the client's order: {prompt}"
    );
    assert!(
        prompt.contains("<tool_response>\n22 C\n</tool_response>"),
        "{prompt}"
    );

    // tool_choice none: no tools offered, the text is content.
    let mut none = weather_chat(false);
    none["tool_choice"] = json!("none");
    let answer = app.post("/v1/chat/completions", none).await.json();
    assert!(answer["choices"][0]["message"].get("tool_calls").is_none());
    let prompt = app.backend().requests.lock().unwrap()[1].prompt.clone();
    assert!(!prompt.contains("<tools>"), "{prompt}");
}

#[tokio::test(start_paused = true)]
async fn logprobs_come_in_openais_shape() {
    let app = app();
    app.create("tiny").await;
    app.backend()
        .script(|_| Ok(vec![scored("a", -0.25), scored("b", -0.5), done(3, 2)]));
    let body = hi(json!({"logprobs": true, "top_logprobs": 1}));
    let answer = app.post("/v1/chat/completions", body).await.json();
    let content = &answer["choices"][0]["logprobs"]["content"];
    assert_eq!(
        content[0],
        json!({"token": "a", "logprob": -0.25, "bytes": [97],
               "top_logprobs": [{"token": "else", "logprob": -1.25, "bytes": [101, 108, 115, 101]}]})
    );
    assert_eq!(content.as_array().unwrap().len(), 2);
    let sent = app.backend().requests.lock().unwrap().clone();
    assert!(sent[0].logprobs && sent[0].top_logprobs == 1);

    let streamed = app
        .post(
            "/v1/chat/completions",
            hi(json!({"logprobs": true, "stream": true})),
        )
        .await;
    let (chunks, _) = events(&streamed);
    assert_eq!(
        chunks[1]["choices"][0]["logprobs"]["content"][0]["token"],
        "a"
    );
}

#[tokio::test(start_paused = true)]
async fn response_format_goes_to_the_constrained_sampler() {
    let app = app();
    app.create("tiny").await;
    let schema =
        r#"{"type":"object","properties":{"zebra":{"type":"string"},"apple":{"type":"integer"}}}"#;
    let body = format!(
        r#"{{"model":"tiny","messages":[{{"role":"user","content":"Hi"}}],
            "response_format":{{"type":"json_schema","json_schema":{{"name":"x","strict":true,"schema":{schema}}}}}}}"#
    );
    let answer = app.call("POST", "/v1/chat/completions", body).await;
    assert_eq!(answer.status, StatusCode::OK);
    app.post(
        "/v1/chat/completions",
        hi(json!({"response_format": {"type": "json_object"}})),
    )
    .await;
    app.post(
        "/v1/chat/completions",
        hi(json!({"response_format": {"type": "text"}})),
    )
    .await;
    let sent = app.backend().requests.lock().unwrap().clone();
    assert_eq!(
        sent[0].json_schema.as_deref(),
        Some(schema),
        "the client's key order"
    );
    assert_eq!(sent[1].json_schema.as_deref(), Some(r#"{"type":"object"}"#));
    assert_eq!(sent[2].json_schema, None);
}
