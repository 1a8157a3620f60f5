//! Which models stay loaded and what the store keeps: LRU eviction, keep-alive,
//! `ollamactl`, pruning at start.

use std::process::Command;
use std::time::Duration;

use e2e::TestModel;
use serde_json::json;
use sha2::Digest as _;

use crate::harness::{Server, alive, eventually};

#[test]
fn with_two_loaded_at_most_the_least_recently_used_idle_model_is_unloaded() {
    let server = Server::start(&[("OLLAMA_MAX_LOADED_MODELS", "2")]);
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    server.create("gemma3", TestModel::Gemma3, json!({}));
    server.create("tiny", TestModel::SmolLm2, json!({"temperature": 0.1}));
    for name in ["smollm2", "gemma3"] {
        let (status, body) = server.generate(name, "Hi", 2);
        assert_eq!(status, 200, "{body}");
    }
    let smollm2 = server.pid_of("smollm2:latest").unwrap();
    let gemma3 = server.pid_of("gemma3:latest").unwrap();
    let (status, body) = server.generate("tiny", "Hi", 2);
    assert_eq!(status, 200, "{body}");
    assert!(
        eventually(Duration::from_secs(5), || !alive(smollm2)),
        "the least recently used runner's process is gone"
    );
    assert!(alive(gemma3));
    let mut names: Vec<String> = server
        .ps()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["gemma3:latest", "tiny:latest"]);
}

#[test]
fn keep_alive_zero_unloads_after_the_request_and_ollamactl_reports_and_stops() {
    let server = Server::start(&[]);
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    let (status, _) = server.post(
        "/api/generate",
        json!({"model": "smollm2", "prompt": "Hi", "stream": false, "keep_alive": 0,
               "options": {"num_predict": 2}}),
    );
    assert_eq!(status, 200);
    assert!(eventually(Duration::from_secs(5), || server
        .ps()
        .is_empty()));

    // An empty prompt loads; keep_alive -1 keeps it forever.
    let (status, body) = server.post(
        "/api/generate",
        json!({"model": "smollm2", "keep_alive": -1}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["done_reason"], "load");
    let pid = server.pid_of("smollm2:latest").unwrap();

    let ctl = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ollamactl"))
            .args(args)
            .env("OLLAMA_HOST", server.base.trim_start_matches("http://"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = ctl(&["ps"]);
    let row = table
        .lines()
        .find(|l| l.starts_with("smollm2:latest"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains(&pid.to_string()), "{table}");
    assert!(
        row.contains("ready") && row.contains("f16/f16") && row.contains("Forever"),
        "{table}"
    );

    ctl(&["stop", "smollm2"]);
    assert!(eventually(Duration::from_secs(5), || !alive(pid)));
    assert!(server.ps().is_empty());
}

#[test]
fn ollamactl_says_when_the_server_is_not_running() {
    let out = Command::new(env!("CARGO_BIN_EXE_ollamactl"))
        .args(["ps"])
        .env("OLLAMA_HOST", "127.0.0.1:9")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach ollamad at 127.0.0.1:9"), "{err}");
}

#[test]
fn a_restart_prunes_blobs_no_model_uses_unless_noprune_is_set() {
    let server = Server::start(&[]);
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    let stray = b"an upload never used in a create";
    let digest = format!("{:x}", sha2::Sha256::digest(stray));
    let upload = |server: &Server| {
        let response = crate::harness::agent()
            .post(server.url(&format!("/api/blobs/sha256:{digest}")))
            .send(&stray[..])
            .unwrap();
        assert_eq!(response.status(), 201);
    };
    let blob = |server: &Server| {
        server
            .models_dir
            .path()
            .join(format!("models/blobs/sha256-{digest}"))
    };
    upload(&server);

    let server = server.restart(&[("OLLAMA_NOPRUNE", "1")]);
    assert!(blob(&server).exists(), "OLLAMA_NOPRUNE keeps it");

    let server = server.restart(&[]);
    assert!(!blob(&server).exists(), "pruned at start");
    let (status, body) = server.generate("smollm2", "Hi", 2);
    assert_eq!(status, 200, "the model's own blobs are kept: {body}");
}
