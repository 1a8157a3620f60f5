//! `ollama-runner inspect` on the real models and on broken files.

use std::path::Path;
use std::process::{Command, Output};

use e2e::TestModel;
use serde_json::{Value, json};

fn inspect(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ollama-runner"))
        .arg("inspect")
        .args(args)
        .output()
        .expect("ollama-runner runs")
}

fn inspect_json(path: &Path) -> Value {
    let output = inspect(&["--model".as_ref(), path.as_os_str(), "--json".as_ref()]);
    assert!(
        output.status.success(),
        "inspect failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON object")
}

#[test]
fn smollm2_counts_and_hyper_parameters() {
    let report = inspect_json(&TestModel::SmolLm2.path());
    assert_eq!(report["architecture"], "llama");
    assert_eq!(report["tensor_count"], 272);
    assert_eq!(
        report["tensor_types"],
        json!({"q4_1": 210, "f32": 61, "q8_0": 1})
    );
    // The sum of element counts as the `gguf` Python package computes it.
    assert_eq!(report["parameter_count"], 134_515_008);
    assert_eq!(report["file_type"], "Q4_1");
    assert_eq!(report["context_length"], 8192);
    assert_eq!(report["block_count"], 30);
    assert_eq!(report["embedding_length"], 576);
    assert_eq!(report["feed_forward_length"], 1536);
    assert_eq!(report["head_count"], 9);
    assert_eq!(report["head_count_kv"], 3);
    assert_eq!(report["head_size"], 64);
    assert_eq!(report["rope_freq_base"], 100_000.0);
    assert_eq!(report["sliding_window"], Value::Null);
    assert_eq!(report["tokenizer_model"], "gpt2");
    assert_eq!(report["tokenizer_pre"], "smollm");
    assert_eq!(report["vocab_size"], 49152);
    assert_eq!(report["bos_token_id"], 1);
    assert_eq!(report["eos_token_id"], 2);
    assert_eq!(report["has_chat_template"], true);
    assert_eq!(report["metadata_count"], 33);
    assert_eq!(report["warnings"], json!([]));
}

#[test]
fn gemma3_counts_and_hyper_parameters() {
    let report = inspect_json(&TestModel::Gemma3.path());
    assert_eq!(report["architecture"], "gemma3");
    assert_eq!(report["tensor_count"], 236);
    // Per-type counts as the `gguf` Python package reports them.
    assert_eq!(
        report["tensor_types"],
        json!({"f32": 109, "q5_0": 81, "q4_K": 27, "q8_0": 10, "q6_K": 9})
    );
    assert_eq!(report["parameter_count"], 268_098_176);
    assert_eq!(report["file_type"], "Q4_K_M");
    assert_eq!(report["context_length"], 32768);
    assert_eq!(report["block_count"], 18);
    assert_eq!(report["embedding_length"], 640);
    assert_eq!(report["head_count"], 4);
    assert_eq!(report["head_count_kv"], 1);
    assert_eq!(report["head_size"], 256);
    assert_eq!(report["sliding_window"], 512);
    assert_eq!(report["tokenizer_model"], "llama");
    assert_eq!(report["vocab_size"], 262_144);
    assert_eq!(report["has_chat_template"], false);
    assert_eq!(report["warnings"], json!([]));
}

#[test]
fn the_table_is_readable() {
    let path = TestModel::SmolLm2.path();
    let output = inspect(&["--model".as_ref(), path.as_os_str()]);
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).unwrap();
    for line in [
        "architecture         llama\n",
        "parameters           134.52M (134515008)\n",
        "file type            Q4_1\n",
        "layers               30\n",
        "vocabulary size      49152\n",
        "chat template        yes\n",
        "tensors              272 (",
        "  q4_1               210\n",
        "  f32                61\n",
        "  q8_0               1\n",
    ] {
        assert!(table.contains(line), "missing {line:?} in\n{table}");
    }
}

#[test]
fn broken_files_exit_non_zero_with_path_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let model = std::fs::read(TestModel::SmolLm2.path()).unwrap();

    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &model[..1 << 20]).unwrap();
    let output = inspect(&["--model".as_ref(), truncated.as_os_str()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&truncated.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("at offset "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let wrong_magic = dir.path().join("magic.gguf");
    let mut bytes = model[..4096].to_vec();
    bytes[..4].copy_from_slice(b"GGJT");
    std::fs::write(&wrong_magic, bytes).unwrap();
    let output = inspect(&[
        "--model".as_ref(),
        wrong_magic.as_os_str(),
        "--json".as_ref(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at offset 0: bad magic"), "{stderr}");
    assert!(output.stdout.is_empty(), "no JSON for a broken file");

    let missing = dir.path().join("missing.gguf");
    let output = inspect(&["--model".as_ref(), missing.as_os_str()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot read GGUF file"), "{stderr}");
}
