//! The HTTP API on a real model: blobs, create, tags, generate (streamed and not), chat,
//! embed, ps; the official Python and JavaScript clients.

use std::time::Duration;

use e2e::TestModel;
use serde_json::json;

use crate::harness::{Server, agent, stream_lines};

#[test]
fn upload_create_list_generate_and_ps() {
    let server = Server::start(&[]);

    let digest = format!("sha256:{}", TestModel::SmolLm2.sha256());
    let blob_url = server.url(&format!("/api/blobs/{digest}"));
    let head = agent().head(&blob_url).call().unwrap();
    assert_eq!(head.status(), 404, "not uploaded yet");
    let bytes = std::fs::read(TestModel::SmolLm2.path()).unwrap();
    let wrong = format!("sha256:{}", TestModel::Gemma3.sha256());
    let mut refused = agent()
        .post(server.url(&format!("/api/blobs/{wrong}")))
        .send(&bytes[..])
        .unwrap();
    assert_eq!(refused.status(), 400);
    let message = refused.body_mut().read_to_string().unwrap();
    assert!(message.contains(TestModel::SmolLm2.sha256()), "{message}");
    let uploaded = agent().post(&blob_url).send(&bytes[..]).unwrap();
    assert_eq!(uploaded.status(), 201);
    assert_eq!(agent().head(&blob_url).call().unwrap().status(), 200);

    let (status, body) = server.post(
        "/api/create",
        json!({"model": "smollm2", "files": {"model.gguf": digest}, "parameters": {"temperature": 0}}),
    );
    assert_eq!(status, 200, "{body}");
    let (_, tags) = server.get("/api/tags");
    let model = &tags["models"][0];
    assert_eq!(model["name"], "smollm2:latest");
    assert_eq!(model["details"]["family"], "llama");
    assert_eq!(model["details"]["quantization_level"], "Q4_1");

    // Not streamed: one object with the text and the final stats.
    let (status, body) = server.generate("smollm2", "What is the capital of France?", 12);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["done"], true);
    // Greedy SmolLM2 may end its answer (EOS, "stop") within the budget.
    let reason = body["done_reason"].as_str().unwrap();
    let generated = body["eval_count"].as_u64().unwrap();
    assert!(
        (reason == "length" && generated == 12) || (reason == "stop" && generated <= 12),
        "{body}"
    );
    assert!(body["prompt_eval_count"].as_u64().unwrap() > 5, "{body}");
    assert!(body["total_duration"].as_u64().unwrap() > 0);
    assert!(
        body["response"].as_str().unwrap().contains("Paris"),
        "{body}"
    );

    // Streamed: pieces, then the final object; the same greedy text.
    let lines: Vec<_> = stream_lines(
        &server,
        json!({"model": "smollm2", "prompt": "What is the capital of France?",
               "options": {"temperature": 0, "num_predict": 12}}),
    )
    .iter()
    .map(|(_, v)| v)
    .collect();
    let (last, pieces) = lines.split_last().unwrap();
    assert!(pieces.len() >= 2, "{lines:?}");
    assert!(pieces.iter().all(|p| p["done"] == false));
    assert_eq!(last["done"], true);
    let text: String = pieces
        .iter()
        .map(|p| p["response"].as_str().unwrap())
        .collect();
    assert_eq!(text, body["response"].as_str().unwrap());

    let ps = server.ps();
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0]["name"], "smollm2:latest");
    assert_eq!(ps[0]["state"], "ready");
    assert_eq!(ps[0]["context_length"], 512);
    assert_eq!(ps[0]["kv_cache_type_k"], "f16");
    // The harness runs ollamad with OLLAMA_NUMERICS=exact.
    assert_eq!(ps[0]["numerics"], "exact");
    assert!(ps[0]["pid"].as_u64().is_some());
    assert!(ps[0]["size"].as_u64().unwrap() > 90 << 20, "{}", ps[0]);
    let exact_pid = ps[0]["pid"].as_u64();

    // The numerics option reloads the model on the fast kernels, which still answer.
    let (status, fast) = server.post(
        "/api/generate",
        json!({"model": "smollm2", "prompt": "What is the capital of France?", "stream": false,
               "options": {"temperature": 0, "num_predict": 12, "numerics": "fast"}}),
    );
    assert_eq!(status, 200, "{fast}");
    assert!(
        fast["response"].as_str().is_some_and(|r| !r.is_empty()),
        "{fast}"
    );
    let ps = server.ps();
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0]["numerics"], "fast");
    assert_ne!(
        ps[0]["pid"].as_u64(),
        exact_pid,
        "a new runner for the other numerics"
    );
}

#[test]
fn bad_requests_get_clear_errors() {
    let server = Server::start(&[]);
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    let cases = [
        (json!({"model": "nope", "prompt": "hi"}), 404, "not found"),
        (
            json!({"model": "smollm2", "prompt": "hi", "options": {"num_ctx": "big"}}),
            400,
            "num_ctx",
        ),
        (
            json!({"model": "smollm2", "prompt": "hi", "options": {"top_p": 7}}),
            400,
            "top_p",
        ),
        (
            json!({"model": "smollm2", "prompt": "hi", "options": {"num_ctx": 0}}),
            400,
            "num_ctx",
        ),
        (
            json!({"model": "smollm2", "prompt": "hi", "options": {"numerics": "quick"}}),
            400,
            "numerics",
        ),
        (
            json!({"model": "smollm2", "prompt": "hi", "keep_alive": "soon"}),
            400,
            "keep_alive",
        ),
        (
            json!({"model": "smollm2", "prompt": "hi", "images": ["aGk="]}),
            400,
            "images",
        ),
        (
            json!({"model": "smollm2", "prompt": "hi", "options": {"kv_cache_type": "q3_k"}}),
            400,
            "q3_k",
        ),
        (json!({"prompt": "hi"}), 400, "model"),
        (
            json!({"model": "smollm2", "prompt": "word ".repeat(64), "options": {"num_ctx": 32}}),
            400,
            "32",
        ),
    ];
    for (body, status, needle) in cases {
        let (got, answer) = server.post("/api/generate", body.clone());
        assert_eq!(got, status, "{body} -> {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{body} -> {error}");
    }
    let (status, answer) = server.post(
        "/api/create",
        json!({"model": "x", "files": {"m.gguf": format!("sha256:{}", "0".repeat(64))}}),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("upload it first"),
        "{answer}"
    );
}

#[test]
fn a_model_too_large_for_memory_is_refused_with_numbers() {
    let server = Server::start(&[]);
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    // 32 slots of 128k positions at f32 is far beyond this machine.
    let (status, body) = server.post(
        "/api/generate",
        json!({"model": "smollm2", "prompt": "hi",
               "options": {"num_ctx": 131072, "num_parallel": 32, "kv_cache_type": "f32"}}),
    );
    assert_eq!(status, 500, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("required") && error.contains("available"),
        "{error}"
    );
    assert!(server.ps().is_empty(), "nothing was started");
}

#[test]
fn options_that_change_the_runner_reload_the_model() {
    let server = Server::start(&[]);
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    let (status, _) = server.generate("smollm2", "Hi", 2);
    assert_eq!(status, 200);
    let first = server.pid_of("smollm2:latest").unwrap();
    let (status, body) = server.post(
        "/api/generate",
        json!({"model": "smollm2", "prompt": "Hi", "stream": false,
               "options": {"num_predict": 2, "num_ctx": 1024, "kv_cache_type_v": "q8_0"}}),
    );
    assert_eq!(status, 200, "{body}");
    let ps = server.ps();
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0]["context_length"], 1024);
    assert_eq!(ps[0]["kv_cache_type_v"], "q8_0");
    assert_ne!(ps[0]["pid"].as_u64().unwrap() as u32, first);
    assert!(crate::harness::eventually(Duration::from_secs(5), || {
        !crate::harness::alive(first)
    }));
}

#[test]
fn chat_and_embed_on_the_real_model() {
    let server = Server::start(&[]);
    server.create("smollm2", TestModel::SmolLm2, json!({"temperature": 0}));
    let messages = json!([{"role": "user", "content": "What is the capital of France?"}]);
    let (status, chat) = server.post(
        "/api/chat",
        json!({"model": "smollm2", "messages": messages, "stream": false,
               "options": {"num_predict": 12}}),
    );
    assert_eq!(status, 200, "{chat}");
    assert_eq!(chat["message"]["role"], "assistant");
    let text = chat["message"]["content"].as_str().unwrap();
    assert!(text.contains("Paris"), "{chat}");
    let generated = chat["eval_count"].as_u64().unwrap();
    assert!(generated > 0 && generated <= 12, "{chat}");

    // Several inputs in one call; SmolLM2 declares no pooling: mean, unit length.
    let (status, body) = server.post(
        "/api/embed",
        json!({"model": "smollm2", "input": ["a cat", "a dog", "a cat"]}),
    );
    assert_eq!(status, 200, "{body}");
    let vectors: Vec<Vec<f32>> = serde_json::from_value(body["embeddings"].clone()).unwrap();
    assert_eq!(vectors.len(), 3);
    assert_eq!(vectors[0].len(), 576, "SmolLM2's hidden size");
    let norm: f32 = vectors[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    assert_eq!(vectors[0], vectors[2]);
    assert_ne!(vectors[0], vectors[1]);

    // Longer than the context: cut by default, refused with truncate false.
    let long = "word ".repeat(100);
    let small = json!({"num_ctx": 32});
    let (status, body) = server.post(
        "/api/embed",
        json!({"model": "smollm2", "input": long, "options": small}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["prompt_eval_count"], 32);
    let (status, body) = server.post(
        "/api/embed",
        json!({"model": "smollm2", "input": long, "options": small, "truncate": false}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("32"), "{body}");
}

#[test]
fn the_official_python_client_works() {
    let server = Server::start(&[]);
    let template = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/qwen2.5-tools-chat-template.jinja"
    );
    let (smollm2, gemma3) = (TestModel::SmolLm2.path(), TestModel::Gemma3.path());
    let args = [smollm2.as_os_str(), gemma3.as_os_str(), template.as_ref()];
    server.run_python("ollama_client.py", &args);
}

/// The official JavaScript library (`ollama` on npm, pinned in `tests/server/js`): create,
/// list, show, generate and chat (whole and streamed), abort, and a 404, under node.
#[test]
fn the_official_javascript_client_works() {
    let js = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/server/js");
    let install = "install Node.js 18 or newer with npm (Debian: apt-get install nodejs npm), \
                   then run npm ci --prefix supervisor/tests/server/js";
    assert!(
        std::path::Path::new(js)
            .join("node_modules/ollama/package.json")
            .exists(),
        "the ollama npm package is not installed in {js}: {install}"
    );
    let server = Server::start(&[]);
    let out = std::process::Command::new("node")
        .current_dir(js)
        .arg("ollama_client.mjs")
        .arg(&server.base)
        .arg(TestModel::SmolLm2.path())
        .output()
        .unwrap_or_else(|e| panic!("node does not run ({e}): {install}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "OK",
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let server = Server::start(&[("OLLAMA_MAX_QUEUE", "1"), ("OLLAMA_NUM_PARALLEL", "1")]);
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    assert_eq!(server.generate("smollm2", "Hi", 1).0, 200);
    let busy = stream_lines(
        &server,
        json!({"model": "smollm2", "prompt": "Tell me a story.", "options": {"num_predict": 200}}),
    );
    busy.recv_timeout(Duration::from_secs(60))
        .expect("the slot is taken");
    let queued = stream_lines(
        &server,
        json!({"model": "smollm2", "prompt": "Hi", "options": {"num_predict": 2}}),
    );
    assert!(crate::harness::eventually(Duration::from_secs(5), || {
        server
            .ps()
            .first()
            .is_some_and(|m| m["requests_waiting"] == 1)
    }));
    let mut refused = agent()
        .post(server.url("/api/generate"))
        .send_json(json!({"model": "smollm2", "prompt": "Hi"}))
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().get("retry-after").is_some());
    let body = refused.body_mut().read_to_string().unwrap();
    assert!(body.contains("OLLAMA_MAX_QUEUE"), "{body}");
    assert_eq!(busy.iter().last().unwrap().1["done"], true);
    assert_eq!(
        queued.iter().last().unwrap().1["done"],
        true,
        "the queued request is served"
    );
}
