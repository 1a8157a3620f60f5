//! Every architecture the engine runs, through `ollamad`: each synthetic model of
//! `scripts/make-synthetic-models.py` is uploaded as a blob, created, described by
//! `/api/show` and chatted with, as a user would with a real model of the family.

use std::io::Read;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::harness::{Server, agent};

/// `(general.architecture, file type)`: the smallest file of each.
const MODELS: [(&str, &str); 6] = [
    ("llama", "Q4_0"),
    ("qwen2", "Q4_0"),
    ("qwen3", "Q4_0"),
    ("qwen3moe", "Q4_0"),
    ("gemma2", "Q4_0"),
    ("phi3", "Q4_0"),
];

pub fn sha256_of(path: &std::path::Path) -> String {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    format!("{:x}", hasher.finalize())
}

#[test]
fn each_architecture_is_created_shown_and_chats_through_ollamad() {
    let server = Server::start(&[]);
    for (arch, ty) in MODELS {
        let path = e2e::synthetic_model(arch, ty);
        let digest = format!("sha256:{}", sha256_of(&path));
        let upload = agent()
            .post(server.url(&format!("/api/blobs/{digest}")))
            .send(std::fs::File::open(&path).unwrap())
            .unwrap();
        assert_eq!(upload.status().as_u16(), 201, "{arch}: blob upload");

        let name = format!("synthetic-{arch}");
        let (status, body) = server.post(
            "/api/create",
            json!({"model": name, "files": {"model.gguf": digest}, "stream": false}),
        );
        assert_eq!(status, 200, "{arch}: create {body}\n{}", server.log());

        let (status, show) = server.post("/api/show", json!({"model": name}));
        assert_eq!(status, 200, "{arch}: show {show}");
        assert_eq!(show["model_info"]["general.architecture"], arch, "{show}");
        assert_eq!(show["details"]["family"], arch, "{show}");
        let caps = show["capabilities"].as_array().unwrap();
        assert!(caps.contains(&json!("completion")), "{arch}: {caps:?}");

        let (status, chat) = server.post(
            "/api/chat",
            json!({
                "model": name,
                "messages": [{"role": "user", "content": "Name three colours."}],
                "stream": false,
                "options": {"temperature": 0, "num_predict": 6}
            }),
        );
        assert_eq!(status, 200, "{arch}: chat {chat}\n{}", server.log());
        assert_eq!(chat["message"]["role"], "assistant", "{chat}");
        let evaluated = chat["eval_count"].as_u64().unwrap_or(0);
        assert!(
            (1..=6).contains(&evaluated),
            "{arch}: {evaluated} tokens generated: {chat}"
        );
        assert!(
            chat["prompt_eval_count"].as_u64().unwrap_or(0) > 5,
            "{chat}"
        );

        // Unloaded before the next, so each loads alone within the test's memory.
        let (status, _) = server.post("/api/generate", json!({"model": name, "keep_alive": 0}));
        assert_eq!(status, 200);
    }
}

/// nomic-bert (nomic-embed-text's encoder), synthetic: created from its GGUF, shown as an
/// embedding model, embedding as llama.cpp's `llama-embedding` does on the same file
/// (`runner/tests/data/embedding-refs-nomic-synthetic.json`), and refusing generate.
#[test]
fn nomic_bert_is_an_embedding_model_through_ollamad() {
    let server = Server::start(&[]);
    let path = e2e::synthetic_model("nomic-bert", "Q8_0");
    let digest = format!("sha256:{}", sha256_of(&path));
    let upload = agent()
        .post(server.url(&format!("/api/blobs/{digest}")))
        .send(std::fs::File::open(&path).unwrap())
        .unwrap();
    assert_eq!(upload.status().as_u16(), 201, "blob upload");
    let (status, body) = server.post(
        "/api/create",
        json!({"model": "nomic", "files": {"model.gguf": digest}, "stream": false}),
    );
    assert_eq!(status, 200, "create {body}\n{}", server.log());
    let (_, show) = server.post("/api/show", json!({"model": "nomic"}));
    assert_eq!(show["capabilities"], json!(["embedding"]), "{show}");
    assert_eq!(show["details"]["family"], "nomic-bert", "{show}");

    let refs_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../runner/tests/data/embedding-refs-nomic-synthetic.json");
    let refs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(refs_path).unwrap()).unwrap();
    let sentences = refs["types"]["Q8_0"]["sentences"].as_array().unwrap();
    let inputs: Vec<&str> = (sentences.iter())
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    let (status, embedded) = server.post("/api/embed", json!({"model": "nomic", "input": inputs}));
    assert_eq!(status, 200, "{embedded}\n{}", server.log());
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        (v.as_array().unwrap().iter())
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let vectors = embedded["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), sentences.len());
    for (v, s) in vectors.iter().zip(sentences) {
        let (a, b) = (floats(v), floats(&s["embedding"]));
        let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let cosine = dot / (norm(&a) * norm(&b));
        assert!(cosine >= 0.99, "{}: cosine {cosine}", s["text"]);
    }

    let (status, refused) = server.post(
        "/api/generate",
        json!({"model": "nomic", "prompt": "Hi", "stream": false}),
    );
    assert_eq!(status, 400, "{refused}");
}
