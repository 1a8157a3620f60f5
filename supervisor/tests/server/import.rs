//! `create` from a Hugging Face directory: all-MiniLM-L6-v2's cached directory, converted
//! by `ollama-runner convert` as a child of `ollamad`, then served as an embedding model
//! next to a chat model, its vectors against `scripts/make-embedding-refs.py`'s.

use std::path::Path;

use e2e::TestModel;
use serde_json::{Value, json};

use crate::harness::Server;

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn a_model_directory_is_converted_at_create_and_embeds_beside_a_chat_model() {
    let dir = e2e::models_dir().join("all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "run scripts/fetch-models"
    );
    let server = Server::start(&[]);
    let (status, body) = server.post(
        "/api/create",
        json!({"model": "minilm", "from": dir.display().to_string(), "quantize": "q8_0", "stream": false}),
    );
    assert_eq!(status, 200, "{body}\n{}", server.log());
    let (_, show) = server.post("/api/show", json!({"model": "minilm"}));
    assert_eq!(show["capabilities"], json!(["embedding"]), "{show}");
    assert_eq!(show["details"]["family"], "bert", "{show}");

    let refs_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../runner/tests/data/embedding-refs-minilm.json");
    let refs: Value = serde_json::from_str(&std::fs::read_to_string(refs_path).unwrap()).unwrap();
    let sentences = refs["sentences"].as_array().unwrap();
    let inputs: Vec<&str> = sentences
        .iter()
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    let (status, embedded) = server.post("/api/embed", json!({"model": "minilm", "input": inputs}));
    assert_eq!(status, 200, "{embedded}");
    let vectors = embedded["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), sentences.len());
    let worst = (vectors.iter().zip(sentences))
        .map(|(v, s)| cosine(&floats(v), &floats(&s["embedding"])))
        .fold(1.0, f64::min);
    assert!(worst >= 0.99, "lowest cosine {worst}");

    let (status, refused) = server.post(
        "/api/generate",
        json!({"model": "minilm", "prompt": "Hi", "stream": false}),
    );
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("generate"),
        "{refused}"
    );

    // A chat model loads beside it, and both are listed.
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    let (status, _) = server.generate("smollm2", "Hello", 4);
    assert_eq!(status, 200);
    let (status, _) = server.post("/api/embed", json!({"model": "minilm", "input": "again"}));
    assert_eq!(status, 200);
    let names: Vec<String> = server
        .ps()
        .iter()
        .map(|m| m["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("minilm"))
            && names.iter().any(|n| n.starts_with("smollm2")),
        "{names:?}"
    );

    let (status, body) = server.post(
        "/api/create",
        json!({"model": "broken", "from": dir.join("1_Pooling").display().to_string(), "stream": false}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("config.json"),
        "{body}"
    );
}

#[test]
fn ollamactl_creates_from_a_modelfile_naming_a_directory() {
    let dir = e2e::models_dir().join("all-MiniLM-L6-v2");
    let server = Server::start(&[]);
    let work = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&dir, work.path().join("minilm")).unwrap();
    let modelfile = work.path().join("Modelfile");
    std::fs::write(&modelfile, "FROM ./minilm\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ollamactl"))
        .args(["create", "minilm", "-f"])
        .arg(&modelfile)
        .args(["-q", "f16"])
        .env("OLLAMA_HOST", server.base.trim_start_matches("http://"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created minilm"));
    let (_, show) = server.post("/api/show", json!({"model": "minilm"}));
    assert_eq!(show["capabilities"], json!(["embedding"]), "{show}");
    assert_eq!(show["details"]["quantization_level"], "F16", "{show}");
}

/// `quantize` of an uploaded GGUF: SmolLM2 dequantized to F32 is quantized to Q4_K_M at
/// create (streaming its progress in tensors), shown as Q4_K_M and generates; a model
/// created from that F32 GGUF is quantized by name into a new one that keeps its system
/// and parameters; the Q4_1 original, already quantized, is refused with the converter's
/// reason.
#[test]
fn an_f32_gguf_is_quantized_at_create_and_a_quantized_one_is_refused() {
    let server = Server::start(&[]);
    let blobs = server.models_dir.path().join("models/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let f32_path = server.models_dir.path().join("smollm2-f32.gguf");
    let out = std::process::Command::new(e2e::workspace_bin("ollama-runner"))
        .args(["dequantize", "--model"])
        .arg(TestModel::SmolLm2.path())
        .arg("--out")
        .arg(&f32_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hex = crate::architectures::sha256_of(&f32_path);
    std::fs::rename(&f32_path, blobs.join(format!("sha256-{hex}"))).unwrap();

    // Streamed: the conversion's status line with its progress in tensors, then the rest.
    let mut response = crate::harness::agent()
        .post(server.url("/api/create"))
        .send_json(json!({"model": "smollm2-q4km",
               "files": {"smollm2-f32.gguf": format!("sha256:{hex}")}, "quantize": "Q4_K_M"}))
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let text = response.body_mut().read_to_string().unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let progress: Vec<(u64, u64)> = (lines.iter())
        .filter(|l| l["status"] == "quantizing model to q4_k_m")
        .map(|l| {
            (
                l["completed"].as_u64().unwrap(),
                l["total"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(progress.len() >= 5, "{text}");
    assert!(progress.windows(2).all(|w| w[0].0 < w[1].0), "{text}");
    assert_eq!(progress.last(), Some(&(272, 272)), "{text}");
    assert_eq!(
        lines.last().unwrap()["status"],
        "success",
        "{text}\n{}",
        server.log()
    );
    let (_, show) = server.post("/api/show", json!({"model": "smollm2-q4km"}));
    assert_eq!(show["details"]["quantization_level"], "Q4_K_M", "{show}");
    let (status, answer) = server.generate("smollm2-q4km", "The capital of France is", 8);
    assert_eq!(status, 200, "{answer}");
    assert!(
        !answer["response"].as_str().unwrap_or_default().is_empty(),
        "{answer}"
    );

    // Another model's weights, by name (Ollama's `FROM smollm2-f32` + `--quantize`): the
    // new model gets the quantized weights and keeps the rest of the base.
    let (status, body) = server.post(
        "/api/create",
        json!({"model": "smollm2-f32", "files": {"smollm2-f32.gguf": format!("sha256:{hex}")},
               "system": "Answer in one word.", "parameters": {"top_k": 7}, "stream": false}),
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = server.post(
        "/api/create",
        json!({"model": "smollm2-q8", "from": "smollm2-f32", "quantize": "q8_0", "stream": false}),
    );
    assert_eq!(status, 200, "{body}\n{}", server.log());
    let (_, show) = server.post("/api/show", json!({"model": "smollm2-q8"}));
    assert_eq!(show["details"]["quantization_level"], "Q8_0", "{show}");
    assert_eq!(show["system"], "Answer in one word.", "{show}");
    assert!(
        show["parameters"]
            .as_str()
            .unwrap_or_default()
            .contains("top_k"),
        "{show}"
    );
    let (_, base) = server.post("/api/show", json!({"model": "smollm2-f32"}));
    assert_eq!(base["details"]["quantization_level"], "F32", "{base}");
    let (status, answer) = server.generate("smollm2-q8", "The capital of France is", 4);
    assert_eq!(status, 200, "{answer}");

    // Already quantized, whether named by digest or by model: refused with the reason.
    server.create("smollm2", TestModel::SmolLm2, json!({}));
    for from in [
        format!("sha256:{}", TestModel::SmolLm2.sha256()),
        "smollm2".into(),
    ] {
        let (status, body) = server.post(
            "/api/create",
            json!({"model": "twice", "from": from, "quantize": "q4_k_m", "stream": false}),
        );
        assert_eq!(status, 400, "{body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("quantize q4_k_m: ")
                && error.contains("already quantized")
                && error.contains("'token_embd.weight' is Q8_0"),
            "{body}"
        );
    }
}
