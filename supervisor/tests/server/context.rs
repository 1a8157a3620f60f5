//! A chat longer than the context on the real model: the oldest messages are dropped by
//! the runner's own token counts, and the answer says how many.

use e2e::TestModel;
use serde_json::{Value, json};

use crate::harness::Server;

#[test]
fn a_chat_longer_than_the_context_is_cut_and_says_so() {
    let server = Server::start(&[]);
    server.create("smollm2", TestModel::SmolLm2, json!({"temperature": 0}));
    let mut messages = vec![json!({"role": "system", "content": "You are terse."})];
    for i in 0..30 {
        messages.push(json!({"role": "user",
            "content": format!("Tell me fact number {i} about the history of Paris.")}));
        messages.push(json!({"role": "assistant",
            "content": format!("Fact {i}: Paris was a Roman town called Lutetia long ago.")}));
    }
    messages.push(json!({"role": "user", "content": "What is the capital of France?"}));
    let body = json!({"model": "smollm2", "messages": messages, "stream": false,
                      "options": {"num_predict": 8}});
    let (status, answer) = server.post("/api/chat", body.clone());
    assert_eq!(status, 200, "{answer}");
    let truncated = &answer["truncated"];
    let dropped = truncated["messages"].as_u64().unwrap();
    assert!((1..=60).contains(&dropped), "{answer}");
    assert!(truncated["tokens"].as_u64().unwrap() > 0, "{answer}");
    let prompt = answer["prompt_eval_count"].as_u64().unwrap();
    assert!(
        prompt <= 512,
        "the prompt fits the test server's context: {answer}"
    );

    let mut strict: Value = body;
    strict["truncate"] = json!(false);
    let (status, refused) = server.post("/api/chat", strict);
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("context holds 512"),
        "{refused}"
    );
}
