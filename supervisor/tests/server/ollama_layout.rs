//! A models directory laid out as Ollama writes it (its documented layout: manifests
//! under `manifests/registry.ollama.ai/library/<name>/<tag>`, blobs under
//! `blobs/sha256-<hex>`, a config blob, and params, system, license and Go template
//! layers in the form Ollama's library uses), pointed to by `OLLAMA_MODELS`: the real
//! server lists, shows and runs its model with the Go template applied.

use std::path::Path;

use e2e::TestModel;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::harness::Server;

/// Qwen 2.5's template from Ollama's library (ChatML, as SmolLM2 was trained on).
const TEMPLATE: &str = include_str!("../data/ollama/qwen2.5.gotmpl");
const SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// Writes `bytes` as a blob and returns its layer descriptor.
fn blob(blobs: &Path, media_type: &str, bytes: &[u8]) -> Value {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(blobs.join(format!("sha256-{hex}")), bytes).unwrap();
    json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
}

/// Builds `models/` in `root` with one model, `smollm2:135m`, the way `ollama pull`
/// leaves it; returns the models directory.
fn ollama_models_dir(root: &Path) -> std::path::PathBuf {
    let models = root.join("models");
    let blobs = models.join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let weights = TestModel::SmolLm2.path();
    let model_blob = blobs.join(format!("sha256-{}", TestModel::SmolLm2.sha256()));
    if std::fs::hard_link(&weights, &model_blob).is_err() {
        std::fs::copy(&weights, &model_blob).unwrap();
    }
    let size = std::fs::metadata(&weights).unwrap().len();
    let layers = vec![
        json!({
            "mediaType": "application/vnd.ollama.image.model",
            "digest": format!("sha256:{}", TestModel::SmolLm2.sha256()),
            "size": size,
        }),
        blob(
            &blobs,
            "application/vnd.ollama.image.template",
            TEMPLATE.as_bytes(),
        ),
        blob(
            &blobs,
            "application/vnd.ollama.image.system",
            SYSTEM.as_bytes(),
        ),
        blob(
            &blobs,
            "application/vnd.ollama.image.license",
            b"Apache License 2.0",
        ),
        blob(
            &blobs,
            "application/vnd.ollama.image.params",
            br#"{"stop":["<|im_start|>","<|im_end|>"]}"#,
        ),
    ];
    let config = json!({
        "model_format": "gguf", "model_family": "llama", "model_families": ["llama"],
        "model_type": "134.52M", "file_type": "Q4_1",
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l["digest"].clone()).collect::<Vec<_>>()},
    });
    let config = blob(
        &blobs,
        "application/vnd.docker.container.image.v1+json",
        config.to_string().as_bytes(),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": config,
        "layers": layers,
    });
    let dir = models.join("manifests/registry.ollama.ai/library/smollm2");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("135m"), manifest.to_string()).unwrap();
    models
}

#[test]
fn a_models_directory_written_by_ollama_lists_shows_and_runs_with_its_go_template() {
    let root = tempfile::Builder::new()
        .prefix("ollama-layout-")
        .tempdir_in(e2e::models_dir())
        .unwrap();
    let models = ollama_models_dir(root.path());
    let server = Server::start(&[("OLLAMA_MODELS", models.to_str().unwrap())]);

    let (status, tags) = server.get("/api/tags");
    assert_eq!(status, 200, "{tags}");
    let listed = &tags["models"][0];
    assert_eq!(listed["name"], "smollm2:135m", "{tags}");
    assert_eq!(listed["details"]["family"], "llama");
    assert_eq!(listed["details"]["quantization_level"], "Q4_1");

    let (status, shown) = server.post("/api/show", json!({"model": "smollm2:135m"}));
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["template"], TEMPLATE);
    assert_eq!(shown["system"], SYSTEM);
    assert_eq!(shown["license"], "Apache License 2.0");
    assert!(
        shown["parameters"].as_str().unwrap().contains("<|im_end|>"),
        "{shown}"
    );
    assert!(shown.get("template_fallback").is_none(), "{shown}");
    assert!(
        shown["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("tools"))
    );

    // The Go template renders this prompt (Ollama's ChatML with the stored system);
    // the same text sent raw must give the same greedy answer from the same tokens.
    let question = "What is the capital of France?";
    let expected = format!(
        "<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    );
    let options = json!({"temperature": 0, "num_predict": 12});
    let generate = |prompt: &str, raw: bool| {
        let body = json!({"model": "smollm2:135m", "prompt": prompt, "raw": raw, "stream": false, "options": options});
        let (status, answer) = server.post("/api/generate", body);
        assert_eq!(status, 200, "{answer}\n{}", server.log());
        answer
    };
    let templated = generate(question, false);
    let raw = generate(&expected, true);
    assert!(
        !templated["response"].as_str().unwrap().is_empty(),
        "{templated}"
    );
    assert_eq!(templated["response"], raw["response"]);
    assert_eq!(templated["prompt_eval_count"], raw["prompt_eval_count"]);

    let chat = json!({
        "model": "smollm2:135m", "stream": false, "options": options,
        "messages": [{"role": "user", "content": question}],
    });
    let (status, chatted) = server.post("/api/chat", chat);
    assert_eq!(status, 200, "{chatted}\n{}", server.log());
    assert_eq!(chatted["message"]["content"], raw["response"], "{chatted}");
    assert_eq!(chatted["prompt_eval_count"], raw["prompt_eval_count"]);
    assert!(!server.log().contains("not valid Jinja"));
}
