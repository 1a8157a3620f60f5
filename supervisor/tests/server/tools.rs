//! Tool calling end to end: SmolLM2 with Qwen 2.5's tool template (stored as test data),
//! asked for the weather with a tool. Greedy sampling after two worked examples makes the
//! tiny model write `<tool_call>{...}</tool_call>`; the server must answer with it parsed
//! into `message.tool_calls`, streamed and not, and never as text.

use std::io::{BufRead, BufReader};

use e2e::TestModel;
use serde_json::{Value, json};

use crate::harness::{Server, agent};

/// Qwen 2.5's chat template: tools in the system turn, calls in `<tool_call>` tags. SmolLM2
/// uses the same `<|im_start|>` turns.
const QWEN_TEMPLATE: &str = include_str!("../data/qwen2.5-tools-chat-template.jinja");

fn tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city"}},
            "required": ["city"],
        },
    }}])
}

/// Two questions answered with calls, then the one to answer.
fn messages() -> Value {
    let call = |city: &str| {
        json!({"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": city}}}
        ]})
    };
    json!([
        {"role": "user", "content": "Weather in London?"}, call("London"),
        {"role": "user", "content": "Weather in Berlin?"}, call("Berlin"),
        {"role": "user", "content": "Weather in Paris?"},
    ])
}

fn request(with_tools: bool, stream: bool) -> Value {
    let mut body = json!({
        "model": "smol-tools", "messages": messages(), "stream": stream,
        "options": {"temperature": 0, "num_predict": 40},
    });
    if with_tools {
        body["tools"] = tools();
    }
    body
}

/// The NDJSON objects of a streamed chat.
fn stream(server: &Server, body: Value) -> Vec<Value> {
    let response = agent()
        .post(server.url("/api/chat"))
        .send_json(&body)
        .unwrap();
    assert_eq!(response.status(), 200);
    BufReader::new(response.into_body().into_reader())
        .lines()
        .map(|line| serde_json::from_str(&line.unwrap()).unwrap())
        .collect()
}

#[test]
fn a_chat_with_a_tool_answers_with_the_parsed_call() {
    let server = Server::start(&[]);
    // Links the test model into the store's blobs; the second create adds the template.
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    let digest = format!("sha256:{}", TestModel::SmolLm2.sha256());
    let (status, body) = server.post(
        "/api/create",
        json!({"model": "smol-tools", "files": {"smol.gguf": digest},
               "template": QWEN_TEMPLATE, "stream": false}),
    );
    assert_eq!(status, 200, "{body}");

    // The template got the tool: the prompt is longer by its description.
    let (status, plain) = server.post("/api/chat", request(false, false));
    assert_eq!(status, 200, "{plain}");
    let (status, whole) = server.post("/api/chat", request(true, false));
    assert_eq!(status, 200, "{whole}");
    let (with, without) = (&whole["prompt_eval_count"], &plain["prompt_eval_count"]);
    assert!(with.as_u64() > without.as_u64(), "{with} vs {without}");

    // Without tools the model's text is content; with them, a parsed call.
    let expected = json!([{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]);
    // Without tools the model still copies the examples' tags, and they stay text.
    let text = plain["message"]["content"].as_str().unwrap_or_default();
    assert!(plain["message"].get("tool_calls").is_none(), "{plain}");
    assert!(text.contains("<tool_call>"), "{plain}");
    assert_eq!(whole["message"]["tool_calls"], expected, "{whole}\n{text}");
    assert_eq!(whole["message"]["content"], "", "{whole}");

    let lines = stream(&server, request(true, true));
    let calls: Vec<&Value> = lines
        .iter()
        .filter_map(|l| l["message"].get("tool_calls"))
        .collect();
    assert_eq!(calls, [&expected], "{lines:?}");
    let streamed: String = lines
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect();
    assert_eq!(streamed, "", "{lines:?}");
    assert_eq!(lines.last().map(|l| &l["done"]), Some(&json!(true)));
}
