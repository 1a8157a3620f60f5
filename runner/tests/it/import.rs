//! `ollama-runner convert`: a Hugging Face directory into a GGUF that the `gguf` PyPI
//! package (llama.cpp's reader) accepts with llama.cpp's converter's names and keys, and
//! clear refusals of what the import cannot handle.

use std::path::{Path, PathBuf};
use std::process::Command;

use runner::import::{self, OutType};
use serde_json::{Value, json};

use crate::bert::minilm_dir;

fn runner(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .args(args)
        .output()
        .expect("ollama-runner runs")
}

/// `scripts/check-gguf.py FILE`'s JSON: what llama.cpp's Python reader sees.
fn python_view(path: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/check-gguf.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "check-gguf.py failed (pip install -r scripts/requirements.txt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_cli_writes_a_gguf_that_llama_cpp_s_reader_and_inspect_accept() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("minilm.gguf");
    let (src, dst) = (
        minilm_dir().display().to_string(),
        out.display().to_string(),
    );
    let run = runner(&["convert", &src, &dst, "--type", "q8_0"]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("bert") && stdout.contains("101 tensors"),
        "{stdout}"
    );

    let view = python_view(&out);
    let meta: std::collections::HashMap<&str, &Value> =
        (view["metadata"].as_array().unwrap().iter())
            .map(|m| (m["key"].as_str().unwrap(), &m["value"]))
            .collect();
    for (key, want) in [
        ("general.architecture", json!("bert")),
        ("bert.block_count", json!(6)),
        ("bert.embedding_length", json!(384)),
        ("bert.attention.head_count", json!(12)),
        ("bert.attention.causal", json!(false)),
        ("bert.pooling_type", json!(1)),
        ("tokenizer.ggml.model", json!("bert")),
        ("tokenizer.ggml.token_type_count", json!(2)),
        ("tokenizer.ggml.bos_token_id", json!(101)),
        ("tokenizer.ggml.seperator_token_id", json!(102)),
        ("tokenizer.ggml.unknown_token_id", json!(100)),
        ("tokenizer.ggml.padding_token_id", json!(0)),
        ("tokenizer.ggml.mask_token_id", json!(103)),
        ("general.file_type", json!(7)),
    ] {
        assert_eq!(meta.get(key).copied(), Some(&want), "{key}");
    }
    let tokens = meta["tokenizer.ggml.tokens"].as_array().unwrap();
    assert_eq!(
        (tokens[101].as_str(), tokens[7592].as_str()),
        (Some("[CLS]"), Some("\u{2581}hello"))
    );
    let types: std::collections::HashMap<&str, &str> = (view["tensors"].as_array().unwrap().iter())
        .map(|t| (t["name"].as_str().unwrap(), t["type"].as_str().unwrap()))
        .collect();
    assert_eq!(types.len(), 101);
    for (name, ty) in [
        ("token_embd.weight", "Q8_0"),
        ("position_embd.weight", "F32"),
        ("token_types.weight", "F32"),
        ("token_embd_norm.bias", "F32"),
        ("blk.5.attn_q.weight", "Q8_0"),
        ("blk.5.ffn_down.weight", "Q8_0"),
        ("blk.5.ffn_up.bias", "F32"),
        ("blk.5.layer_output_norm.weight", "F32"),
        ("blk.0.attn_output_norm.weight", "F32"),
    ] {
        assert_eq!(types.get(name).copied(), Some(ty), "{name}");
    }

    let inspect = runner(&["inspect", "--model", &dst, "--json"]);
    assert!(inspect.status.success());
    let inspect: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspect["architecture"], "bert", "{inspect}");
}

/// A copy of MiniLM's directory (links to its files) with `config.json` changed by
/// `edit` and the files named in `drop` left out.
fn variant(dir: &Path, edit: impl FnOnce(&mut Value), drop: &[&str]) -> PathBuf {
    let src = minilm_dir();
    let dst = dir.join("model");
    std::fs::create_dir_all(&dst).unwrap();
    for name in [
        "model.safetensors",
        "tokenizer.json",
        "vocab.txt",
        "tokenizer_config.json",
    ] {
        if !drop.contains(&name) {
            std::os::unix::fs::symlink(src.join(name), dst.join(name)).unwrap();
        }
    }
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(dst.join("config.json"), config.to_string()).unwrap();
    dst
}

fn refusal(dir: &Path) -> String {
    let out = dir.parent().unwrap().join("out.gguf");
    let err = import::convert(dir, &out, OutType::F16, &mut |_, _, _| {}).unwrap_err();
    assert!(!out.exists(), "nothing is written on refusal");
    err.to_string()
}

#[test]
fn unknown_architectures_missing_tokenizers_and_dtypes_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = variant(
        dir.path(),
        |c| c["architectures"] = json!(["MambaForCausalLM"]),
        &[],
    );
    let err = refusal(&unknown);
    assert!(
        err.contains("'MambaForCausalLM'") && err.contains("BertModel"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let no_tokenizer = variant(dir.path(), |_| {}, &["tokenizer.json", "vocab.txt"]);
    let err = refusal(&no_tokenizer);
    assert!(
        err.contains("has no tokenizer (tokenizer.json or vocab.txt)"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let act = variant(dir.path(), |c| c["hidden_act"] = json!("relu"), &[]);
    let err = refusal(&act);
    assert!(err.contains("hidden_act") && err.contains("relu"), "{err}");

    // A checkpoint holding an I32 tensor where a weight should be.
    let dir = tempfile::tempdir().unwrap();
    let ints = variant(dir.path(), |_| {}, &["model.safetensors"]);
    let header = json!({"embeddings.word_embeddings.weight": {"dtype": "I32", "shape": [2], "data_offsets": [0, 8]}});
    let mut header = header.to_string().into_bytes();
    while !header.len().is_multiple_of(8) {
        header.push(b' ');
    }
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(&header);
    bytes.extend([0u8; 8]);
    std::fs::write(ints.join("model.safetensors"), bytes).unwrap();
    let err = refusal(&ints);
    assert!(
        err.contains("embeddings.word_embeddings.weight") && err.contains("I32"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let no_weights = variant(dir.path(), |_| {}, &["model.safetensors"]);
    let err = refusal(&no_weights);
    assert!(err.contains("model.safetensors"), "{err}");
}
