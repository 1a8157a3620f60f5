//! `/api/chat` through `Router::oneshot` over fake runners: the prompt the template
//! renders from every role, tool calls and tools, streamed and whole answers, load-only
//! requests and the 400s and 404s.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::handlers::{App, app};
use crate::sched::tests::eventually;
use crate::sched::tests::fake::{done, piece};

/// A template that shows tools, roles, tool calls and tool names, so a test can read the
/// rendered context.
const TOOLS_TEMPLATE: &str = r#"{% if tools %}<|tools|>{% for t in tools %}{{ t.function.name }};{% endfor %}{% endif %}{% for m in messages %}<|{{ m.role }}|>{% if m.tool_name %}[{{ m.tool_name }}]{% endif %}{% for c in m.tool_calls or [] %}<call>{{ c.function.name }}{{ c.function.arguments | tojson }}</call>{% endfor %}{{ m.content }}
{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"#;

/// The app with model `tools` (the template above) and `tiny` (the GGUF's template).
async fn chat_app() -> App {
    let app = app();
    app.create("tiny").await;
    app.create_with("tools", json!({"template": TOOLS_TEMPLATE}))
        .await;
    app
}

fn prompts(app: &App) -> Vec<String> {
    let sent = app.backend().requests.lock().unwrap();
    sent.iter().map(|r| r.prompt.clone()).collect()
}

fn contents(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn chat_renders_every_role_with_tools_and_streams_message_pieces() {
    let app = chat_app().await;
    let body = json!({
        "model": "tools",
        "messages": [
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
            ]},
            {"role": "tool", "content": "22 C", "tool_name": "get_weather"},
            {"role": "user", "content": "Thanks"},
        ],
        "tools": [{"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }}],
    });
    let answer = app.post("/api/chat", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.error());
    assert_eq!(answer.content_type, "application/x-ndjson");
    let lines = answer.lines();
    assert_eq!(contents(&lines), ["Hello", " world", ""]);
    assert!(lines.iter().all(|l| l["message"]["role"] == "assistant"));
    assert!(lines[..2].iter().all(|l| l["done"] == false));
    let last = lines.last().unwrap();
    assert_eq!(
        (&last["done"], &last["done_reason"]),
        (&json!(true), &json!("stop"))
    );
    assert_eq!(last["prompt_eval_count"], 5);
    assert_eq!(last["eval_count"], 2);
    assert_eq!(last["eval_duration"], 2_000_000);
    assert!(last["total_duration"].as_u64().is_some());
    assert!(last["load_duration"].as_u64().is_some());
    assert_eq!(
        prompts(&app),
        ["<|tools|>get_weather;<|system|>Be brief\n\
          <|user|>Weather in Paris?\n\
          <|assistant|><call>get_weather{\"city\": \"Paris\"}</call>\n\
          <|tool|>[get_weather]22 C\n\
          <|user|>Thanks\n\
          <|assistant|>"]
    );
}

#[tokio::test(start_paused = true)]
async fn chat_without_streaming_answers_one_message() {
    let app = chat_app().await;
    let answer = app
        .post(
            "/api/chat",
            json!({"model": "tiny", "stream": false, "options": {"temperature": 0},
                   "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.error());
    assert_eq!(answer.content_type, "application/json");
    let body = answer.json();
    assert_eq!(
        body["message"],
        json!({"role": "assistant", "content": "Hello world"})
    );
    assert_eq!(
        (&body["done"], &body["model"]),
        (&json!(true), &json!("tiny"))
    );
    assert_eq!(body["prompt_eval_count"], 5);
    assert_eq!(prompts(&app), ["<|user|>Hi\n<|assistant|>"]);
    let sent = app.backend().requests.lock().unwrap();
    assert_eq!(sent[0].sampling.unwrap().temperature, Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn the_stored_system_message_is_used_when_the_conversation_has_none() {
    let app = app();
    app.create_with("kind", json!({"system": "Be kind"})).await;
    let user = json!({"role": "user", "content": "Hi"});
    let own = json!({"role": "system", "content": "Be terse"});
    for messages in [json!([user]), json!([own, user])] {
        let body = json!({"model": "kind", "stream": false, "messages": messages});
        let answer = app.post("/api/chat", body).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.error());
    }
    assert_eq!(
        prompts(&app),
        [
            "<|system|>Be kind\n<|user|>Hi\n<|assistant|>",
            "<|system|>Be terse\n<|user|>Hi\n<|assistant|>",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn chat_without_messages_loads_or_unloads_the_model() {
    let app = chat_app().await;
    let load = app.post("/api/chat", json!({"model": "tiny"})).await.json();
    assert_eq!(load["done_reason"], "load");
    assert_eq!(load["message"], json!({"role": "assistant", "content": ""}));
    assert_eq!(app.state.sched.snapshot().await.len(), 1);
    let unload = app
        .post(
            "/api/chat",
            json!({"model": "tiny", "messages": [], "keep_alive": 0}),
        )
        .await
        .json();
    assert_eq!(unload["done_reason"], "unload");
    eventually!(
        "the model unloaded",
        app.state.sched.snapshot().await.is_empty()
    );
    assert!(prompts(&app).is_empty(), "nothing was generated");
}

#[tokio::test(start_paused = true)]
async fn chat_refuses_bad_requests_with_400_or_404() {
    let app = chat_app().await;
    let hi = json!([{"role": "user", "content": "Hi"}]);
    let cases = [
        (
            json!({"model": "", "messages": hi}),
            StatusCode::BAD_REQUEST,
            "model is required",
        ),
        (
            json!({"model": "absent", "messages": hi}),
            StatusCode::NOT_FOUND,
            "absent",
        ),
        (
            json!({"model": "tiny", "messages": [{"role": "user", "content": "Hi", "images": ["aGk="]}]}),
            StatusCode::BAD_REQUEST,
            "messages[0].images",
        ),
        (
            json!({"model": "tiny", "messages": [{"role": "robot", "content": "Hi"}]}),
            StatusCode::BAD_REQUEST,
            "unknown role \"robot\"",
        ),
        (
            json!({"model": "tiny", "messages": hi, "format": "yaml"}),
            StatusCode::BAD_REQUEST,
            "format",
        ),
        (
            json!({"model": "tiny", "messages": hi, "think": true}),
            StatusCode::BAD_REQUEST,
            "think",
        ),
        (
            json!({"model": "tiny", "messages": hi, "tools": {"name": "f"}}),
            StatusCode::BAD_REQUEST,
            "tools",
        ),
        (
            json!({"model": "tiny", "messages": [{"content": "Hi"}]}),
            StatusCode::BAD_REQUEST,
            "role",
        ),
    ];
    for (body, status, says) in cases {
        let answer = app.post("/api/chat", body.clone()).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.error());
        assert!(answer.error().contains(says), "{body}: {}", answer.error());
    }
    // Accepted as Ollama's clients send them: think false, format "" and null tools.
    let body = json!({"model": "tiny", "messages": hi, "think": false, "format": "",
                      "tools": null, "stream": false});
    let answer = app.post("/api/chat", body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.error());
    assert_eq!(
        prompts(&app).len(),
        1,
        "only the last request reached a runner"
    );
}

/// Qwen 2.5's chat template: tools in the system turn, calls in `<tool_call>` tags.
const QWEN_TEMPLATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/qwen2.5-tools-chat-template.jinja"
));

/// A sentence, then a call in Qwen's tags, cut where a runner's tokens might cut it.
pub(super) const QWEN_PIECES: [&str; 6] = [
    "Let me check",
    " the weather.\n",
    "<tool",
    "_call>\n{\"name\": \"get_weather\", ",
    "\"arguments\": {\"city\": \"Paris\"}}",
    "\n</tool_call>",
];

/// The app with model `qwen` (Qwen's template), answering [`QWEN_PIECES`].
pub(super) async fn qwen_app(pieces: &'static [&'static str]) -> App {
    let app = chat_app().await;
    app.create_with("qwen", json!({"template": QWEN_TEMPLATE}))
        .await;
    app.backend().script(move |_| {
        let mut stream: Vec<_> = pieces.iter().map(|p| piece(p)).collect();
        stream.push(done(40, pieces.len() as u32));
        Ok(stream)
    });
    app
}

pub(super) fn weather_chat(stream: bool) -> Value {
    json!({
        "model": "qwen", "stream": stream,
        "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }}],
    })
}

fn paris_call() -> Value {
    json!([{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}])
}

#[tokio::test(start_paused = true)]
async fn streamed_tool_calls_come_parsed_and_the_text_before_them_kept() {
    let app = qwen_app(&QWEN_PIECES).await;
    let answer = app.post("/api/chat", weather_chat(true)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.error());
    let lines = answer.lines();
    // The tag and the JSON never reach the client as text.
    assert_eq!(
        contents(&lines),
        ["Let me check", " the weather.\n", "", ""]
    );
    assert_eq!(lines[2]["message"]["tool_calls"], paris_call());
    let with_calls = lines
        .iter()
        .filter(|l| l["message"].get("tool_calls").is_some());
    assert_eq!(with_calls.count(), 1, "{lines:?}");
    assert_eq!(lines[3]["done"], true);
    // The tool reached the template (its keys in the order the body was written, which
    // `json!` sorts or not depending on serde_json's features in this build).
    let prompt = &prompts(&app)[0];
    assert!(
        prompt.contains("<tools>\n{\"")
            && prompt.contains("\"description\": \"The weather in a city\""),
        "{prompt}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_whole_answer_has_its_content_and_its_tool_calls() {
    let app = qwen_app(&QWEN_PIECES).await;
    let body = app.post("/api/chat", weather_chat(false)).await.json();
    assert_eq!(
        body["message"],
        json!({"role": "assistant", "content": "Let me check the weather.\n",
               "tool_calls": paris_call()})
    );
}

#[tokio::test(start_paused = true)]
async fn without_tools_in_the_request_the_text_is_content() {
    let app = qwen_app(&QWEN_PIECES).await;
    let mut request = weather_chat(false);
    request["tools"] = Value::Null;
    let body = app.post("/api/chat", request).await.json();
    assert_eq!(
        body["message"],
        json!({"role": "assistant", "content": QWEN_PIECES.concat()})
    );
}

#[tokio::test(start_paused = true)]
async fn an_unfinished_call_is_released_as_content_at_the_end() {
    const CUT: [&str; 2] = [
        "<tool_call>\n{\"name\": \"get_weather\", ",
        "\"arguments\": {\"ci",
    ];
    let app = qwen_app(&CUT).await;
    let lines = app.post("/api/chat", weather_chat(true)).await.lines();
    assert_eq!(lines.len(), 1, "held back until the end: {lines:?}");
    assert_eq!(lines[0]["message"]["content"], CUT.concat());
    assert_eq!(lines[0]["done"], true);
    assert!(lines[0]["message"].get("tool_calls").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_template_without_call_syntax_gets_calls_as_json_objects() {
    const JSON_CALL: [&str; 2] = [
        "{\"name\": \"get_weather\", ",
        "\"arguments\": {\"city\": \"Paris\"}}",
    ];
    let app = qwen_app(&JSON_CALL).await;
    let mut request = weather_chat(false);
    request["model"] = json!("tools");
    let body = app.post("/api/chat", request).await.json();
    assert_eq!(
        body["message"],
        json!({"role": "assistant", "content": "", "tool_calls": paris_call()})
    );
}
